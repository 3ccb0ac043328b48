/* fetch.h - one fetch job: a tenant's window, slice by slice, into the outbox.
 *
 * A fetcher belongs to one worker thread: its own database connection,
 * HTTP client, page parser and batch buffer, all reused from job to job
 * (memory is bounded by page size + batch size, whatever the backlog).
 * fetcher_run() reads pages, drops records already committed, and commits
 * each slice with its cursor move in one transaction (outbox.h). A failure
 * leaves the cursor where the last committed slice put it.
 */
#ifndef NSC_FETCH_H
#define NSC_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "base/budget.h"
#include "base/config.h"
#include "daemon/secret.h"

typedef struct fetcher fetcher;

typedef enum fetch_status {
    FETCH_OK,        /* caught up to the job's start time */
    FETCH_MORE,      /* max_records reached after a committed slice; more to do */
    FETCH_YIELD,     /* fetch.job_budget used up after a committed slice; more to do */
    FETCH_WAIT,      /* told to wait (429, 5xx, wait_time): retry at wait_until */
    FETCH_AUTH,      /* token rejected */
    FETCH_FAILED,    /* bad page, bad reply, database error */
    FETCH_STOPPED,   /* shutdown requested; nothing uncommitted was kept */
    FETCH_SKIPPED,   /* tenant disabled or gone */
    FETCH_PAUSED,    /* undelivered batches above outbox.limit_bytes: not fetching */
} fetch_status;

typedef struct fetch_result {
    fetch_status status;
    int64_t wait_until;       /* FETCH_WAIT, FETCH_AUTH: not before this time */
    int told_to_wait;         /* FETCH_WAIT because Netskope said so (Retry-After,
                                 ratelimit-reset, wait_time), not a guessed back-off */
    int64_t stored;           /* new records committed by this job */
    int64_t run_id;
    char error[512];
} fetch_result;

/* NULL with err when the database cannot be opened. curl_share (a CURLSH*)
 * and bodies (the process-wide reply-body budget) may be NULL; both are
 * shared with the other fetchers and must outlive this one. */
fetcher *fetcher_new(const nsc_config *cfg, const char *db_path, const secret_key *key,
                     void *curl_share, budget *bodies, char *err, size_t errlen);
void fetcher_free(fetcher *f);
/* Use cfg (which must outlive the fetcher or the next call) for the next
 * jobs: how SIGHUP's reloaded fetch.* and outbox.* settings take effect.
 * HTTP settings stay those the fetcher was made with. */
void fetcher_reconfigure(fetcher *f, const nsc_config *cfg);

/* How a fetcher lends its worker out while the job waits (for a request,
 * its pacing slot, a retry's or wait_time's sleep): begin() before each
 * wait, end() after it, both on the job's thread. end() may block until a
 * worker is free again. Without them (the default) a job keeps its worker. */
typedef struct fetch_waits {
    void (*begin)(void *arg);
    void (*end)(void *arg);
    void *arg;
} fetch_waits;

void fetcher_set_waits(fetcher *f, const fetch_waits *w);

/* Run one job for stream stream_id (stream.h) and record its outcome (run
 * row, the stream's health and schedule). Fills *res. */
void fetcher_run(fetcher *f, int64_t stream_id, fetch_result *res);

const char *fetch_status_name(fetch_status s);

#endif
