/* progress.c - the redrawn progress lines of `run --once` (progress.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/buf.h"
#include "base/log.h"
#include "cli/progress.h"

#define PROGRESS_LINE_MAX 512

struct progress {
    pthread_t thread;
    pthread_mutex_t lock;      /* the screen: frame, drawn, and every write to fd 2 */
    pthread_cond_t wake;
    int stop;                  /* under lock */
    sqlite3 *db;               /* the thread's own, read only */
    int64_t since;             /* runs started at or after this (this pass) */
    buf frame;                 /* the lines on screen now */
    int drawn;                 /* how many */
};

/* One progress at a time: the log sink has no argument. Set before the
 * sink and cleared after it, once the daemon's threads have ended. */
static progress *current;

static void write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Move to the first drawn line and erase to the end of the screen. */
static void erase_frame(progress *p)
{
    char esc[32];
    if (p->drawn > 0) {
        int n = snprintf(esc, sizeof esc, "\r\033[%dA\033[J", p->drawn);
        write_all(esc, (size_t)n);
    }
}

static void show_frame(progress *p)
{
    if (p->frame.len)
        write_all(p->frame.data, p->frame.len);
}

/* log.h's sink: the line above the progress lines, which are drawn again. */
static void log_above(const char *line, size_t len)
{
    progress *p = current;
    pthread_mutex_lock(&p->lock);
    erase_frame(p);
    write_all(line, len);
    show_frame(p);
    pthread_mutex_unlock(&p->lock);
}

static void terminal_size(int *rows, int *cols)
{
    struct winsize ws;
    *rows = 24;
    *cols = 80;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        *rows = ws.ws_row;
        *cols = ws.ws_col;
    }
}

/* "45s", "12m05s", "3h20m", "2d04h" */
static void format_span(int64_t s, char *out, size_t n)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(out, n, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(out, n, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(out, n, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
    else
        snprintf(out, n, "%lldd%02lldh", (long long)(s / 86400), (long long)(s / 3600 % 24));
}

static void format_time(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%m-%d %H:%M", &tm);
}

/* Every stream with a run in this pass: tenant, stream, the window's
 * start (the run's, else the stream's first_start), the cursor, whether a
 * run is still going or failed, when the first run started, and the
 * records stored since (outbox + delivered). Furthest behind first. */
static const char streams_sql[] =
    "SELECT t.name, s.name, coalesce(r.window_start, s.first_start), c.position, r.running, "
    "r.failed, r.started_at, "
    "(SELECT coalesce(sum(records), 0) FROM outbox o WHERE o.stream_id = s.id "
    "   AND o.created_at >= ?1) + "
    "(SELECT coalesce(sum(records), 0) FROM delivered d WHERE d.stream_id = s.id "
    "   AND d.created_at >= ?1), count(*) OVER () "
    "FROM (SELECT stream_id, min(window_start) AS window_start, min(started_at) AS started_at, "
    "      max(status = 'running') AS running, max(status = 'failed') AS failed "
    "      FROM run WHERE started_at >= ?1 AND stream_id IS NOT NULL GROUP BY stream_id) r "
    "JOIN stream s ON s.id = r.stream_id JOIN tenant t ON t.id = s.tenant_id "
    "LEFT JOIN cursor c ON c.stream_id = s.id "
    "ORDER BY r.running DESC, ?2 - coalesce(c.position, r.window_start) DESC, t.name, s.name "
    "LIMIT ?3";

/* One stream's line from a row of streams_sql, cut to cols - 1 columns
 * (a wrapped line would break the count of lines to erase). */
static void stream_line(sqlite3_stmt *st, int64_t now, int cols, buf *out)
{
    char line[PROGRESS_LINE_MAX], from[32], to[32], eta[32], name[160];
    int64_t start = sqlite3_column_int64(st, 2), started = sqlite3_column_int64(st, 6);
    int has_cursor = sqlite3_column_type(st, 3) != SQLITE_NULL;
    int64_t cursor = has_cursor ? sqlite3_column_int64(st, 3) : start;
    int64_t records = sqlite3_column_int64(st, 7), elapsed = now - started;
    if (cursor < start)
        cursor = start;
    double span = (double)(now - start), covered = (double)(cursor - start);
    double pct = span > 0 ? 100.0 * covered / span : 100.0;
    if (pct > 100)
        pct = 100;
    if (sqlite3_column_int(st, 4) == 0)
        snprintf(eta, sizeof eta, "%s", sqlite3_column_int(st, 5) ? "failed" : "done");
    else if (covered <= 0 || elapsed <= 0)
        snprintf(eta, sizeof eta, "ETA -");
    else {
        char span_s[24];
        format_span((int64_t)((double)(now - cursor) * (double)elapsed / covered), span_s,
                    sizeof span_s);
        snprintf(eta, sizeof eta, "ETA %s", span_s);
    }
    format_time(start, from, sizeof from);
    if (has_cursor)
        format_time(cursor, to, sizeof to);
    else
        snprintf(to, sizeof to, "(no slice yet)");
    snprintf(name, sizeof name, "%s/%s", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1));
    int n = snprintf(line, sizeof line, "%-22s %s -> %s %5.1f%%  %lld records  %.0f/s  %s",
                     name, from, to, pct, (long long)records,
                     elapsed > 0 ? (double)records / (double)elapsed : 0.0, eta);
    if (n >= cols)
        n = cols > 1 ? cols - 1 : 1;
    if (n >= (int)sizeof line)
        n = (int)sizeof line - 1;
    buf_append(out, line, (size_t)n);
    buf_append_str(out, "\n");
}

/* The lines of the streams of this pass, at most rows - 1 of them (with a
 * last "... and N more"); an empty frame before the first run row. */
static void build_frame(progress *p, buf *out)
{
    int rows, cols;
    terminal_size(&rows, &cols);
    int max = rows > 3 ? rows - 2 : 1, shown = 0;
    int64_t now = time(NULL), total = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(p->db, streams_sql, -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, p->since);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int(st, 3, max);
    while (sqlite3_step(st) == SQLITE_ROW) {
        stream_line(st, now, cols, out);
        total = sqlite3_column_int64(st, 8);
        shown++;
    }
    sqlite3_finalize(st);
    if (total > shown) {
        char more[64];
        snprintf(more, sizeof more, "... and %lld more streams\n", (long long)(total - shown));
        buf_append_str(out, more);
    }
}

/* Read, then redraw under the lock (the query runs outside it, so a log
 * line never waits for the database). */
static void redraw(progress *p)
{
    buf next;
    buf_init(&next, 1 << 20);            /* rows x PROGRESS_LINE_MAX at most */
    build_frame(p, &next);
    pthread_mutex_lock(&p->lock);
    erase_frame(p);
    buf_release(&p->frame);
    p->frame = next;
    p->drawn = 0;
    for (size_t i = 0; i < p->frame.len; i++)
        p->drawn += p->frame.data[i] == '\n';
    show_frame(p);
    pthread_mutex_unlock(&p->lock);
}

static void *progress_thread(void *arg)
{
    progress *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        pthread_mutex_unlock(&p->lock);
        redraw(p);
        pthread_mutex_lock(&p->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

progress *progress_start(const char *db_path)
{
    const char *term = getenv("TERM");
    if (!isatty(STDERR_FILENO) || (term && strcmp(term, "dumb") == 0))
        return NULL;
    progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (sqlite3_open_v2(db_path, &p->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(p->db);
        free(p);
        return NULL;
    }
    sqlite3_busy_timeout(p->db, 200);
    p->since = time(NULL);
    buf_init(&p->frame, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    current = p;
    log_set_sink(log_above);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, progress_thread, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_set_sink(NULL);
        current = NULL;
        sqlite3_close(p->db);
        free(p);
        return NULL;
    }
    return p;
}

void progress_stop(progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    redraw(p);                              /* the summary, left on screen */
    log_set_sink(NULL);
    current = NULL;
    sqlite3_close(p->db);
    buf_release(&p->frame);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
