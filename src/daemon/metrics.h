/* metrics.h - /metrics, /healthz and /readyz over HTTP (metrics.listen).
 *
 * libmicrohttpd serves them from one thread of its own, so a scrape never
 * takes a fetch or upload worker. /metrics reads the database through a
 * read-only connection of that thread (WAL: a reader never holds the
 * write lock and never waits for it) plus the in-memory counts of
 * base/counters.h and what the scheduler says of its threads (the
 * metrics_pool callback, which must only take the scheduler's lock
 * briefly). Names, labels and cardinality: README "Metrics".
 *
 * Limits against slow or hostile clients: at most METRICS_MAX_CONN
 * connections (more are closed at once), METRICS_IDLE_S seconds of
 * silence before a connection is dropped, a small per-connection memory
 * cap (an oversized request gets an error, not more memory), GET and
 * HEAD only. A /metrics reply is built at most once per
 * METRICS_CACHE_MS and shared by every client in that time, so many
 * concurrent scrapers cost one reply's memory, not one each.
 */
#ifndef NSC_METRICS_H
#define NSC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_CONN 64
#define METRICS_IDLE_S 5
#define METRICS_CACHE_MS 1000

typedef struct metrics_pool_view {
    int starting;          /* threads still opening their connections */
    int stopping;          /* SIGTERM/SIGINT seen, or the pass is over */
    int64_t last_tick_ms;  /* mono_ms() of the scheduler's last tick */
    int fetch_busy, fetch_idle;
    int upload_busy, upload_idle;
    int fetch_queued;      /* jobs waiting for a fetch worker */
} metrics_pool_view;

typedef void (*metrics_pool_fn)(void *arg, metrics_pool_view *out);

typedef struct metrics_opts {
    const char *listen;            /* metrics.listen, already checked by the config loader */
    const char *db_path;
    int64_t outbox_limit_bytes;
    metrics_pool_fn pool;
    void *pool_arg;
} metrics_opts;

typedef struct metrics metrics;

/* Binds and starts serving. NULL with err naming metrics.listen and why
 * (address in use, permission) when it cannot. */
metrics *metrics_start(const metrics_opts *o, char *err, size_t errlen);
/* "127.0.0.1:PORT": where it listens, a port 0 resolved. */
const char *metrics_address(const metrics *m);
void metrics_stop(metrics *m);

#endif
