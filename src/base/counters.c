/* counters.c - see counters.h. */
#include "base/counters.h"

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

/* Per stream: an open-addressing table keyed by stream id (never 0:
 * stream ids start at 1), doubled when half full. */
typedef struct req_entry {
    int64_t stream_id;
    uint64_t counts[REQ_OUTCOMES];
} req_entry;

static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
static req_entry *req_table;
static size_t req_cap, req_used;

static size_t slot_of(int64_t id, size_t cap)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (cap - 1);
}

static req_entry *find_or_add(req_entry *t, size_t cap, int64_t id)
{
    for (size_t i = slot_of(id, cap);; i = (i + 1) & (cap - 1))
        if (t[i].stream_id == id || t[i].stream_id == 0)
            return &t[i];
}

/* Lock held. -1 when out of memory (the count is lost, nothing else). */
static int grow_table(void)
{
    size_t cap = req_cap ? req_cap * 2 : 64;
    req_entry *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < req_cap; i++)
        if (req_table[i].stream_id)
            *find_or_add(t, cap, req_table[i].stream_id) = req_table[i];
    free(req_table);
    req_table = t;
    req_cap = cap;
    return 0;
}

void counters_request(int64_t stream_id, req_outcome o)
{
    if (stream_id <= 0 || (unsigned)o >= REQ_OUTCOMES)
        return;
    pthread_mutex_lock(&req_lock);
    if ((req_used + 1) * 2 > req_cap && grow_table() < 0) {
        pthread_mutex_unlock(&req_lock);
        return;
    }
    req_entry *e = find_or_add(req_table, req_cap, stream_id);
    if (e->stream_id == 0) {
        e->stream_id = stream_id;
        req_used++;
    }
    e->counts[o]++;
    pthread_mutex_unlock(&req_lock);
}

void counters_requests_each(void (*fn)(void *arg, int64_t stream_id, const uint64_t *counts),
                            void *arg)
{
    /* Copied first, so fn (which formats text) runs without the lock. */
    pthread_mutex_lock(&req_lock);
    size_t n = 0;
    req_entry *copy = req_used ? malloc(req_used * sizeof *copy) : NULL;
    for (size_t i = 0; copy && i < req_cap; i++)
        if (req_table[i].stream_id)
            copy[n++] = req_table[i];
    pthread_mutex_unlock(&req_lock);
    for (size_t i = 0; i < n; i++)
        fn(arg, copy[i].stream_id, copy[i].counts);
    free(copy);
}

void counters_reset(void)
{
    pthread_mutex_lock(&req_lock);
    free(req_table);
    req_table = NULL;
    req_cap = req_used = 0;
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
