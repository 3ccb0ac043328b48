/* pacing.c - see pacing.h. */
#include "daemon/pacing.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/idtable.h"
#include "base/shutdown.h"
#include "base/util.h"

typedef struct entry {
    int64_t id;             /* 0 = empty slot (tenant ids start at 1) */
    int64_t next_us;        /* monotonic time (us) before which no request may go */
    int64_t held_us;        /* the part of it a server asked for (pacing_defer) */
    int slice_s;            /* 0 = not adapted yet */
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static idtable table = IDTABLE_INIT(entry, 1024);

/* The tenant's entry, created on first use; NULL when memory is short
 * (pacing then falls back to no memory: each job paces itself). Lock held. */
static entry *find(int64_t id)
{
    return idtable_get(&table, id);
}

int pacing_wait(int64_t tenant_id, int64_t gap_us)
{
    pthread_mutex_lock(&lock);
    int64_t now = mono_us(), wait = 0;
    entry *e = find(tenant_id);
    if (e) {
        if (e->next_us > now)
            wait = e->next_us - now;
        e->next_us = now + wait + gap_us;     /* claim the slot */
    }
    pthread_mutex_unlock(&lock);
    /* Round up: a sleep cut to whole ms must not send early. */
    if (wait > 0 && shutdown_sleep_ms((long)((wait + 999) / 1000)))
        return 1;
    return shutdown_requested();
}

void pacing_defer(int64_t tenant_id, int64_t until_us)
{
    pthread_mutex_lock(&lock);
    entry *e = find(tenant_id);
    if (e && e->next_us < until_us)
        e->next_us = until_us;
    if (e && e->held_us < until_us)
        e->held_us = until_us;
    pthread_mutex_unlock(&lock);
}

int64_t pacing_held_us(int64_t tenant_id)
{
    pthread_mutex_lock(&lock);
    entry *e = find(tenant_id);
    int64_t left = e ? e->held_us - mono_us() : 0;
    pthread_mutex_unlock(&lock);
    return left > 0 ? left : 0;
}

int pacing_slice(int64_t tenant_id, int max_s)
{
    pthread_mutex_lock(&lock);
    entry *e = find(tenant_id);
    int s = e && e->slice_s ? e->slice_s : max_s;
    pthread_mutex_unlock(&lock);
    return s < max_s ? s : max_s;
}

/* The next length of a slice of s seconds whose read met records: scaled
 * so that the next holds about PACING_FILL of the ceiling at the same
 * density, at most doubled, never shrunk. */
static int slice_grown(int s, int64_t records, int64_t records_max, int max_s)
{
    int64_t target = records_max * PACING_FILL_NUM / PACING_FILL_DEN;
    int64_t next = records > 0 ? (int64_t)s * target / records : 2 * (int64_t)s;
    if (next > 2 * (int64_t)s)
        next = 2 * (int64_t)s;
    if (next > max_s)
        next = max_s;
    return next > s ? (int)next : s;
}

void pacing_slice_done(int64_t tenant_id, int slice_s, const pacing_slice_use *u, int max_s)
{
    pthread_mutex_lock(&lock);
    entry *e = find(tenant_id);
    if (e) {
        int s = slice_s;
        if (u->pages * 2 > u->budget_pages && s / 2 >= PACING_MIN_SLICE_S)
            s /= 2;
        else if (u->pages * 8 < u->budget_pages && s < max_s)
            s = slice_grown(s, u->records, u->records_max, max_s);
        e->slice_s = s;
    }
    pthread_mutex_unlock(&lock);
}

void pacing_slice_shrink(int64_t tenant_id, int slice_s, int64_t fit_s)
{
    int64_t s = slice_s / 2;
    if (fit_s > 0 && fit_s < s)
        s = fit_s;
    pthread_mutex_lock(&lock);
    entry *e = find(tenant_id);
    if (e)
        e->slice_s = s > 1 ? (int)s : 1;
    pthread_mutex_unlock(&lock);
}
