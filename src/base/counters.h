/* counters.h - process-wide counts for /metrics that live only in memory.
 *
 * What must survive a restart (records fetched, stored, delivered) is
 * counted in the database, in the transaction that did it (migration
 * 014). What is only about this process is counted here: requests by
 * outcome, Google token refreshes, SQLite commit latency. They start at 0
 * with the process, as any Prometheus counter may (rate() handles the
 * reset).
 *
 * Threads: every function may be called from any thread at any time; the
 * counts are atomics, the per-stream table is under one mutex (taken once
 * per HTTP request, which is paced at a few per second per tenant).
 * Memory: one small entry per stream that has made a request.
 */
#ifndef NSC_COUNTERS_H
#define NSC_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

/* How a request to Netskope ended, as counted in nscollect_requests_total. */
typedef enum req_outcome {
    REQ_OK,          /* 200 and a page that parsed */
    REQ_429,         /* told to slow down */
    REQ_4XX,         /* any other 4xx: a token, a URL, a parameter */
    REQ_5XX,
    REQ_TIMEOUT,     /* no reply in time */
    REQ_MALFORMED,   /* 200 but the page did not parse */
    REQ_ERROR,       /* no HTTP reply: refused, reset, DNS, TLS, over a body cap */
    REQ_OUTCOMES
} req_outcome;

const char *req_outcome_name(req_outcome o);

void counters_request(int64_t stream_id, req_outcome o);

/* Copies the per-stream request counts: calls fn once per stream seen,
 * with REQ_OUTCOMES counts, in no particular order. */
void counters_requests_each(void (*fn)(void *arg, int64_t stream_id, const uint64_t *counts),
                            void *arg);

void counters_token_refresh(void);
uint64_t counters_token_refreshes(void);

/* SQLite COMMIT latency: a histogram with fixed upper bounds in seconds. */
#define COMMIT_BUCKETS 12
extern const double commit_bucket_le[COMMIT_BUCKETS];   /* +Inf not included */
void counters_commit_observe(int64_t micros);
/* Cumulative counts per bucket (le), the total count and sum in seconds. */
void counters_commit_read(uint64_t cumulative[COMMIT_BUCKETS], uint64_t *count, double *sum_s);

/* Frees the per-stream table (tests; the process may just exit). */
void counters_reset(void);

#endif
