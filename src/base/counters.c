/* counters.c - see counters.h. */
#include "base/counters.h"
#include "base/idtable.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static const char *const outcome_names[REQ_OUTCOMES] = {
    "ok", "429", "4xx", "5xx", "timeout", "malformed", "error",
};

const char *req_outcome_name(req_outcome o)
{
    return (unsigned)o < REQ_OUTCOMES ? outcome_names[o] : "error";
}

/* Per stream, keyed by stream id. */
typedef struct req_entry {
    int64_t stream_id;
    uint64_t counts[REQ_OUTCOMES];
} req_entry;

static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
static idtable req_table = IDTABLE_INIT(req_entry, 64);

void counters_request(int64_t stream_id, req_outcome o)
{
    if ((unsigned)o >= REQ_OUTCOMES)
        return;
    pthread_mutex_lock(&req_lock);
    req_entry *e = idtable_get(&req_table, stream_id);
    if (e)                           /* NULL: out of memory, this count is lost */
        e->counts[o]++;
    pthread_mutex_unlock(&req_lock);
}

typedef struct req_copy {
    req_entry *rows;
    size_t n;
} req_copy;

static void copy_one(void *arg, const void *entry)
{
    req_copy *c = arg;
    c->rows[c->n++] = *(const req_entry *)entry;
}

void counters_requests_each(void (*fn)(void *arg, int64_t stream_id, const uint64_t *counts),
                            void *arg)
{
    /* Copied first, so fn (which formats text) runs without the lock. */
    pthread_mutex_lock(&req_lock);
    size_t n = idtable_count(&req_table);
    req_copy c = {n ? malloc(n * sizeof *c.rows) : NULL, 0};
    if (c.rows)
        idtable_each(&req_table, copy_one, &c);
    pthread_mutex_unlock(&req_lock);
    for (size_t i = 0; i < c.n; i++)
        fn(arg, c.rows[i].stream_id, c.rows[i].counts);
    free(c.rows);
}

void counters_reset(void)
{
    pthread_mutex_lock(&req_lock);
    idtable_free(&req_table);
    pthread_mutex_unlock(&req_lock);
}

static atomic_uint_fast64_t token_refreshes;

void counters_token_refresh(void)
{
    atomic_fetch_add_explicit(&token_refreshes, 1, memory_order_relaxed);
}

uint64_t counters_token_refreshes(void)
{
    return atomic_load_explicit(&token_refreshes, memory_order_relaxed);
}

/* A COMMIT is an fsync or two: from well under a millisecond on a fast
 * disk to seconds on a loaded one. */
const double commit_bucket_le[COMMIT_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
};

static atomic_uint_fast64_t commit_hits[COMMIT_BUCKETS + 1];  /* last: over every bound */
static atomic_uint_fast64_t commit_sum_us;

void counters_commit_observe(int64_t micros)
{
    if (micros < 0)
        micros = 0;
    int b = 0;
    while (b < COMMIT_BUCKETS && (double)micros > commit_bucket_le[b] * 1e6)
        b++;
    atomic_fetch_add_explicit(&commit_hits[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&commit_sum_us, (uint64_t)micros, memory_order_relaxed);
}

void counters_commit_read(uint64_t cumulative[COMMIT_BUCKETS], uint64_t *count, double *sum_s)
{
    uint64_t run = 0;
    for (int b = 0; b < COMMIT_BUCKETS; b++) {
        run += atomic_load_explicit(&commit_hits[b], memory_order_relaxed);
        cumulative[b] = run;
    }
    *count = run + atomic_load_explicit(&commit_hits[COMMIT_BUCKETS], memory_order_relaxed);
    *sum_s = (double)atomic_load_explicit(&commit_sum_us, memory_order_relaxed) / 1e6;
}
