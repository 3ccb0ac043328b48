/* log.h - one line per event, key=value (default) or JSON lines.
 *
 * Every line carries a level and a message; callers add context as
 * key=value pairs in the message itself ("tenant=acme run=12 records=40").
 * In JSON mode the line is {"severity":"INFO","message":"...","time":...}
 * so Cloud Logging and journald parse it. Lines go to stderr, written with
 * one write(2) each so threads never interleave within a line.
 * Never pass a secret to these functions.
 */
#ifndef NSC_LOG_H
#define NSC_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_KV, LOG_FORMAT_JSON };

/* Set the lowest level printed and the line format (process-wide). */
void log_setup(enum log_level level, enum log_format format);
/* Parse "debug", "info", "warn", "error"; -1 if unknown. */
int log_level_parse(const char *s);
int log_enabled(enum log_level level);
void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hand every line to fn instead of writing it to stderr (NULL: stderr
 * again). fn is called from any thread, once per whole line (len bytes,
 * ending in '\n'), and writes it itself. `run --once`'s progress display
 * (cli/progress.c) uses it to print log lines above its redrawn lines. */
typedef void (*log_sink_fn)(const char *line, size_t len);
void log_set_sink(log_sink_fn fn);

/* s made safe inside a kv value's quotes (key="...") or a quoted name in a
 * message: '"' and '\\' get a backslash, control characters become \xNN,
 * so text from a server or an operator cannot end the value and forge
 * fields (q" injected=1), nor move the terminal's cursor. Cut (whole
 * escapes only) to fit out[outlen]; returns out. */
char *log_escape(char *out, size_t outlen, const char *s);
#define LOG_ESCAPE_MAX 1024          /* a buffer for one escaped value */

/* The level is checked before the arguments are evaluated. */
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_enabled(LOG_INFO))  log_write(LOG_INFO, __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_enabled(LOG_WARN))  log_write(LOG_WARN, __VA_ARGS__); } while (0)
#define log_error(...) do { if (log_enabled(LOG_ERROR)) log_write(LOG_ERROR, __VA_ARGS__); } while (0)

#endif
