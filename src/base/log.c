/* log.c - see log.h. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"

/* Atomic: a SIGHUP reload changes them while workers log. */
static _Atomic int min_level = LOG_INFO;
static _Atomic int line_format = LOG_FORMAT_KV;
static _Atomic(log_sink_fn) line_sink;

static const char *level_names[] = {"debug", "info", "warn", "error"};
static const char *severity_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

void log_setup(enum log_level level, enum log_format format)
{
    min_level = level;
    line_format = format;
}

void log_set_sink(log_sink_fn fn)
{
    line_sink = fn;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int log_enabled(enum log_level level)
{
    return (int)level >= min_level;
}

char *log_escape(char *out, size_t outlen, const char *s)
{
    size_t o = 0;
    if (!outlen)
        return out;
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        size_t need = c == '"' || c == '\\' ? 2 : c < 0x20 || c == 0x7f ? 4 : 1;
        if (o + need >= outlen)
            break;
        if (need == 2) {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (need == 4) {
            snprintf(out + o, outlen - o, "\\x%02x", c);
            o += 4;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/* JSON string escaping for the message field. */
static void append_json_string(buf *b, const char *s)
{
    buf_append_char(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            buf_printf(b, "\\u%04x", c);
        else
            buf_append_char(b, (char)c);
    }
    buf_append_char(b, '"');
}

void log_write(enum log_level level, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    buf line;
    buf_init(&line, 0);
    if (line_format == LOG_FORMAT_JSON) {
        buf_printf(&line, "{\"time\":\"%s.%03ldZ\",\"severity\":\"%s\",\"message\":",
                   when, ts.tv_nsec / 1000000, severity_names[level]);
        append_json_string(&line, msg);
        buf_append_str(&line, "}\n");
    } else {
        buf_printf(&line, "%s.%03ldZ level=%s %s\n", when, ts.tv_nsec / 1000000,
                   level_names[level], msg);
    }
    log_sink_fn sink = line_sink;
    if (line.data && sink)
        sink(line.data, line.len);
    else if (line.data) {
        ssize_t w = write(STDERR_FILENO, line.data, line.len);
        (void)w;
    }
    buf_release(&line);
}
