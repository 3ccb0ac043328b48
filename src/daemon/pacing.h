/* pacing.h - per-tenant state that outlives one fetch job.
 *
 * Shared by all fetch workers (one mutex): when a tenant's last request
 * went out, so its requests per second (fetch.requests_per_second, 4 by
 * default: Netskope's documented limit) hold across jobs and workers (a tenant
 * that yields and is picked up again at once must still wait its turn),
 * and its slice length, adapted so that one slice fits in a job's budget:
 * a dense tenant gets shorter slices, so it yields often and cannot starve
 * the others; a quiet one grows back to the configured length.
 * Memory: a few dozen bytes per tenant that has run.
 */
#ifndef NSC_PACING_H
#define NSC_PACING_H

#include <stdint.h>

#define PACING_MIN_SLICE_S 60

/* Requests are paced per tenant (one token, one budget: pass the tenant
 * id); slice lengths adapt per stream (an alert stream and a page stream
 * of one tenant differ by orders of magnitude): the slice functions take
 * PACING_STREAM_KEY(stream id), negative, so the two never collide. */
#define PACING_STREAM_KEY(stream_id) (-(int64_t)(stream_id))

/* Wait until tenant_id may send its next request and claim that slot; the
 * slot after it opens gap_us microseconds later. Returns 1 when a shutdown
 * was requested while waiting. */
int pacing_wait(int64_t tenant_id, int64_t gap_us);

/* No request of tenant_id before until_us (mono_us() time): how a reply
 * with ratelimit-remaining: 0 holds back the tenant's next request, on
 * whichever worker or job sends it. Never brings a slot forward. */
void pacing_defer(int64_t tenant_id, int64_t until_us);

/* Microseconds left of the hold pacing_defer() put on tenant_id (0 when
 * none is left); the ordinary gap between requests does not count. */
int64_t pacing_held_us(int64_t tenant_id);

/* The slice length to use for tenant_id: its adapted length, at most max_s. */
int pacing_slice(int64_t tenant_id, int max_s);

/* What one slice's read cost, for pacing_slice_done(). */
typedef struct pacing_slice_use {
    int64_t pages, budget_pages;    /* requests made; what a job may spend */
    int64_t records, records_max;   /* records read (its depth); fetch.offset_max */
} pacing_slice_use;

/* A slice of slice_s seconds was read whole. Halves the stream's slice when
 * it used more than half the budget; when it used less than an eighth,
 * lengthens it (at most doubled, up to max_s) so that the next slice holds
 * about PACING_FILL (3/4) of the offset ceiling at the density just read.
 * (Doubling on the budget alone, a dense backlog's slice went past the
 * ceiling every other time, and each of those reads was done twice; grown
 * only while under a quarter of the ceiling, a backlog's slices stayed at
 * the half a too-deep read fits them to: 3 pages for 2.5 pages of records,
 * where 3/4 gives 4 for 3.75.) */
#define PACING_FILL_NUM 3
#define PACING_FILL_DEN 4
void pacing_slice_done(int64_t tenant_id, int slice_s, const pacing_slice_use *u, int max_s);

/* A slice of slice_s seconds was given up because it went deeper than the
 * offset ceiling or past the job's budget. fit_s is how long a slice the
 * records read before that suggest (0: unknown): the next slices are the
 * shorter of fit_s and half of slice_s, down to 1 s. */
void pacing_slice_shrink(int64_t tenant_id, int slice_s, int64_t fit_s);

#endif
