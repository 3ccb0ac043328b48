/* scheduler.c - see scheduler.h. */
#include "daemon/scheduler.h"

#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/db.h"
#include "daemon/fetch.h"
#include "daemon/metrics.h"
#include "base/http_share.h"
#include "base/log.h"
#include "daemon/outbox.h"
#include "base/shutdown.h"
#include "daemon/upload.h"
#include "base/util.h"

#define TICK_MS 1000
#define ONCE_WAIT_MAX_S 120   /* in a one-shot pass, waits up to this are sat out */

#define SPARE_PAUSE_MS 10000 /* after a spare thread could not start */
#define MAX_FETCH 128        /* workers.fetch (at most 64) + workers.fetch_spare (at most 64) */

typedef struct waiting {
    int64_t tenant_id, until;
} waiting;

struct pool;

/* One fetch thread's place. A spare thread (see worker_lend) uses a free
 * slot and gives it back when it retires; the scheduler joins it then. */
typedef struct fetch_slot {
    struct pool *p;
    pthread_t thread;
    enum { SLOT_FREE, SLOT_LIVE, SLOT_DONE } state;
    int late;                        /* a spare, or added by a reload: not at start-up */
} fetch_slot;

/* The work queue and everything the threads share, under one mutex. */
typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t changed;          /* a job ended, a thread retired, the pass is over */
    pthread_cond_t job_cv;           /* idle fetch threads: maybe a job to start */
    pthread_cond_t worker_cv;        /* reclaiming jobs: maybe a worker free */
    nsc_config cfg;                  /* the live config; SIGHUP replaces parts of it */
    const char *db_path;
    const secret_key *key;
    int once;
    shard shard;                     /* whose tenants this instance fetches */
    int64_t pass_start;
    int64_t *queue;                  /* FIFO of tenant ids: queue[head, tail) */
    size_t head, tail, cap;
    int64_t *busy;                   /* tenants queued or in flight */
    size_t nbusy, busy_cap;
    waiting *waits;                  /* once mode: tenants to retry later in the pass */
    size_t nwaits, waits_cap;
    int running;                     /* fetch jobs in flight (working or waiting) */
    int working;                     /* jobs holding a worker: at most nfetch */
    int reclaiming;                  /* jobs whose wait is over, waiting for a worker */
    int closing;                     /* the scheduler is joining threads: no new ones */
    int64_t no_spare_until_ms;       /* a spare could not start: none before this (mono_ms) */
    int fetch_done;                  /* once mode: no more fetch jobs will come */
    int failures;                    /* tenants or batches that did not make it */
    upload_queue *uploads;
    http_share *share;               /* DNS, TLS sessions, connections */
    budget bodies;                   /* reply bodies held by all workers (http.max_body_total) */
    fetch_slot slots[MAX_FETCH];
    int nlive;                       /* fetch threads running */
    int nfetch;                      /* workers (workers.fetch, --fetch-workers) */
    int nfetch_pinned;               /* set by --fetch-workers: a reload keeps it */
    int starting;                    /* start-up threads not yet ready (see thread_ready) */
    int nupload;                     /* upload threads started */
    atomic_int uploading;            /* upload threads inside a step (metrics) */
    atomic_llong last_tick_ms;       /* mono_ms() of the scheduler's last tick (/healthz) */
    char start_err[640];             /* why a start-up thread could not start, or "" */
} pool;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static void pass_on(pool *p);

static int is_busy(const pool *p, int64_t id)
{
    for (size_t i = 0; i < p->nbusy; i++)
        if (p->busy[i] == id)
            return 1;
    return 0;
}

static void unbusy(pool *p, int64_t id)
{
    for (size_t i = 0; i < p->nbusy; i++)
        if (p->busy[i] == id) {
            p->busy[i] = p->busy[--p->nbusy];
            return;
        }
}

/* Queue a job for id unless it already has one. Called with the lock held. */
static void enqueue(pool *p, int64_t id)
{
    if (is_busy(p, id))
        return;
    if (p->tail == p->cap && p->head > 0) {        /* slide down before growing */
        memmove(p->queue, p->queue + p->head, (p->tail - p->head) * sizeof *p->queue);
        p->tail -= p->head;
        p->head = 0;
    }
    if (grow((void **)&p->queue, &p->cap, p->tail + 1, sizeof *p->queue) < 0 ||
        grow((void **)&p->busy, &p->busy_cap, p->nbusy + 1, sizeof *p->busy) < 0)
        return;                                    /* out of memory: next tick retries */
    p->queue[p->tail++] = id;
    p->busy[p->nbusy++] = id;
    pass_on(p);
}

/* Sharded: say at start how many tenants here belong to other shards
 * (after N changed): they are not fetched until they are moved. */
static void log_foreign_tenants(const pool *p, sqlite3 *db)
{
    if (p->shard.n == 0)
        return;
    char err[256];
    long foreign = 0;
    sqlite3_stmt *st = db_prepare(db, "SELECT name FROM tenant WHERE moved_at IS NULL",
                                  err, sizeof err);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        foreign += !shard_owns(&p->shard, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    log_info("event=shard shard=%d/%d foreign_tenants=%ld", p->shard.k, p->shard.n, foreign);
    if (foreign > 0)
        log_warn("event=shard_foreign tenants=%ld reason=\"tenants of other shards are not "
                 "fetched here (their batches are still delivered): move them, see "
                 "nscollect shard plan %d\"", foreign, p->shard.n);
}

/* Queue every stream the database says is due (a job is one stream of
 * one tenant: its streams run side by side, paced as one tenant). */
static void queue_due(pool *p, sqlite3 *db)
{
    static const char *sql_daemon =
        "SELECT s.id, t.name FROM stream s JOIN tenant t ON t.id = s.tenant_id WHERE t.enabled "
        "AND max(s.next_run_at, s.not_before) <= ?1 "
        "ORDER BY max(s.next_run_at, s.not_before), s.id";
    static const char *sql_once = "SELECT s.id, t.name FROM stream s JOIN tenant t ON "
        "t.id = s.tenant_id WHERE t.enabled AND ?1 ORDER BY s.id";
    char err[256];
    sqlite3_stmt *st = db_prepare(db, p->once ? sql_once : sql_daemon, err, sizeof err);
    if (!st) {
        char q[LOG_ESCAPE_MAX];
        log_error("event=schedule_failed error=\"%s\"", log_escape(q, sizeof q, err));
        return;
    }
    sqlite3_bind_int64(st, 1, db_now());
    pthread_mutex_lock(&p->lock);
    while (sqlite3_step(st) == SQLITE_ROW)
        if (shard_owns(&p->shard, (const char *)sqlite3_column_text(st, 1)))
            enqueue(p, sqlite3_column_int64(st, 0));
    pthread_mutex_unlock(&p->lock);
    sqlite3_finalize(st);
}

/* Once mode: a job's outcome decides whether it is retried in this pass:
 * only a tenant that Netskope told to wait briefly is; a guessed back-off
 * after 5xx or timeouts ends the pass for that tenant as a failure. */
static void account_once(pool *p, int64_t id, const fetch_result *r)
{
    if (r->status == FETCH_OK || r->status == FETCH_MORE || r->status == FETCH_SKIPPED)
        return;
    if (r->status == FETCH_YIELD) {          /* its turn is over, not its pass */
        enqueue(p, id);
        return;
    }
    if (r->status == FETCH_WAIT && r->told_to_wait &&
        r->wait_until - p->pass_start <= ONCE_WAIT_MAX_S &&
        grow((void **)&p->waits, &p->waits_cap, p->nwaits + 1, sizeof *p->waits) == 0) {
        p->waits[p->nwaits++] = (waiting){id, r->wait_until};
        p->busy[p->nbusy++] = id;                  /* still owned by this pass */
        return;
    }
    if (r->status != FETCH_STOPPED)
        p->failures++;
}

static int fetch_thread_start(pool *p, int late);

/* A start-up thread has its database connection and clients: the last one
 * says the daemon is ready, with every file and socket it keeps open. */
static void thread_ready(pool *p)
{
    pthread_mutex_lock(&p->lock);
    if (--p->starting == 0)
        log_info("event=ready");
    pthread_mutex_unlock(&p->lock);
}

/* A thread may start the next job: one is queued and a worker is free. */
static int job_ready(const pool *p)
{
    return p->head != p->tail && p->working < p->nfetch && p->reclaiming == 0;
}

/* Start spare threads while queued jobs and free workers outnumber the
 * threads that can take them (idle or still starting), up to fetch +
 * fetch_spare threads: every thread may be lent out to a wait, and a job
 * queued then must not wait for the wait to end. Lock held. */
static void maybe_spare(pool *p)
{
    if (p->reclaiming > 0 || p->closing || shutdown_requested() ||
        mono_ms() < p->no_spare_until_ms)
        return;
    for (;;) {
        long queued = (long)(p->tail - p->head), free_workers = p->nfetch - p->working;
        long need = queued < free_workers ? queued : free_workers;
        if (p->nlive - p->running >= need || p->nlive >= p->nfetch + p->cfg.fetch_spare ||
            fetch_thread_start(p, 1) < 0)
            return;
        log_debug("event=spare_worker fetch_threads=%d waiting=%d queued=%zu", p->nlive,
                  p->running - p->working, p->tail - p->head);
    }
}

/* Wake the one thread that can use a free worker, if any: a job coming
 * back from its wait goes first. One at a time, so that a worker set free
 * does not wake every thread in the pool; each woken thread passes it on
 * (pass_on) when more is free. Called wherever a job or a free worker
 * appears, so it also starts the spares nobody idle could stand in for.
 * Lock held. */
static void pass_on(pool *p)
{
    if (p->working >= p->nfetch)
        return;
    if (p->reclaiming > 0) {
        pthread_cond_signal(&p->worker_cv);
    } else if (p->head != p->tail) {
        pthread_cond_signal(&p->job_cv);
        maybe_spare(p);
    }
}

/* A worker is the right to work on a job (parse, store, send a request),
 * not a thread: a job lends its worker out while it waits (on Netskope,
 * its pacing slot, a retry), so a tenant whose server hangs holds a thread
 * but no worker. The tenants queued behind it are served by the free
 * worker, on an idle thread or a spare one (maybe_spare), up to
 * workers.fetch_spare spares: fetch + fetch_spare threads is the cap on
 * concurrent Netskope requests. Spares retire when the queue is empty. */
static void worker_lend(void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->lock);
    p->working--;
    pass_on(p);
    pthread_mutex_unlock(&p->lock);
}

/* The wait is over: take a worker back before going on, ahead of any new
 * job (this one already holds a tenant and maybe a page). */
static void worker_reclaim(void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->lock);
    p->reclaiming++;
    while (p->working >= p->nfetch && !shutdown_requested())
        pthread_cond_wait(&p->worker_cv, &p->lock);
    p->reclaiming--;
    p->working++;
    pass_on(p);
    pthread_mutex_unlock(&p->lock);
}

/* A thread above the pool's size retires before taking a job: a spare
 * once nothing is queued, and any thread above fetch + fetch_spare (a
 * reload lowered them) even with jobs queued: the others take those. */
static int should_retire(const pool *p)
{
    return (p->head == p->tail && p->nlive > p->nfetch) ||
           p->nlive > p->nfetch + p->cfg.fetch_spare;
}

/* A start-up thread could not start: the run stops and exits 2 (see
 * scheduler_run). what names the thread, err why. */
static void start_failed(pool *p, const char *what, const char *err)
{
    char q[LOG_ESCAPE_MAX];
    log_error("event=%s_worker_failed error=\"%s\"", what, log_escape(q, sizeof q, err));
    pthread_mutex_lock(&p->lock);
    if (!p->start_err[0])
        snprintf(p->start_err, sizeof p->start_err, "cannot start %s worker: %s", what,
                 err);
    pthread_mutex_unlock(&p->lock);
    shutdown_request();
}

/* Everything that waits in the pool looks again (shutdown, end of pass). */
static void wake_all(pool *p)
{
    pthread_cond_broadcast(&p->changed);
    pthread_cond_broadcast(&p->job_cv);
    pthread_cond_broadcast(&p->worker_cv);
}

static void *fetch_worker(void *arg)
{
    fetch_slot *slot = arg;
    pool *p = slot->p;
    char err[512];
    nsc_config job_cfg;                            /* this worker's copy, renewed per job */
    pthread_mutex_lock(&p->lock);
    job_cfg = p->cfg;
    pthread_mutex_unlock(&p->lock);
    fetcher *f = fetcher_new(&job_cfg, p->db_path, p->key, http_share_handle(p->share),
                             &p->bodies, err, sizeof err);
    if (!f && slot->late) {           /* the others go on without it */
        char q[LOG_ESCAPE_MAX];
        log_warn("event=fetch_thread_failed error=\"%s\" note=\"no spare threads for %d s\"",
                 log_escape(q, sizeof q, err), SPARE_PAUSE_MS / 1000);
        pthread_mutex_lock(&p->lock);
        p->no_spare_until_ms = mono_ms() + SPARE_PAUSE_MS;
        pthread_mutex_unlock(&p->lock);
    } else if (!f) {
        start_failed(p, "fetch", err);
    } else {
        fetcher_set_waits(f, &(fetch_waits){worker_lend, worker_reclaim, p});
        if (!slot->late)
            thread_ready(p);
    }
    pthread_mutex_lock(&p->lock);
    while (f) {
        while (!job_ready(p) && !shutdown_requested() && !p->fetch_done && !should_retire(p))
            pthread_cond_wait(&p->job_cv, &p->lock);
        if (shutdown_requested() || p->fetch_done || should_retire(p)) {
            if (!shutdown_requested() && !p->fetch_done)
                log_debug("event=spare_retired fetch_threads=%d", p->nlive - 1);
            break;
        }
        int64_t id = p->queue[p->head++];
        p->running++;
        p->working++;
        if (p->head == p->tail && p->nlive > p->nfetch)
            pthread_cond_broadcast(&p->job_cv);    /* idle spares: retire */
        else
            pass_on(p);
        job_cfg = p->cfg;
        pthread_mutex_unlock(&p->lock);
        fetcher_reconfigure(f, &job_cfg);

        fetch_result r;
        fetcher_run(f, id, &r);

        pthread_mutex_lock(&p->lock);
        p->running--;
        p->working--;
        unbusy(p, id);
        if (p->once)
            account_once(p, id, &r);
        pass_on(p);
        pthread_cond_broadcast(&p->changed);
    }
    p->nlive--;
    slot->state = SLOT_DONE;
    pass_on(p);                                    /* a wake-up meant for this thread */
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    fetcher_free(f);
    return NULL;
}

/* Start a fetch thread in a free slot. Lock held. 0, or -1 when none is
 * free or the thread cannot start. */
static int fetch_thread_start(pool *p, int late)
{
    for (int i = 0; i < MAX_FETCH; i++) {
        fetch_slot *s = &p->slots[i];
        if (s->state != SLOT_FREE)
            continue;
        s->p = p;
        s->late = late;
        s->state = SLOT_LIVE;
        if (pthread_create(&s->thread, NULL, fetch_worker, s) != 0) {
            s->state = SLOT_FREE;
            return -1;
        }
        p->nlive++;
        return 0;
    }
    return -1;
}

/* Join the threads that have retired and free their slots. Called without
 * the lock: a retired thread needs no lock to finish. */
static void fetch_threads_reap(pool *p, int all)
{
    for (int i = 0; i < MAX_FETCH; i++) {
        fetch_slot *s = &p->slots[i];
        pthread_mutex_lock(&p->lock);
        int join = s->state == SLOT_DONE || (all && s->state == SLOT_LIVE);
        pthread_mutex_unlock(&p->lock);
        if (!join)
            continue;
        pthread_join(s->thread, NULL);
        pthread_mutex_lock(&p->lock);
        s->state = SLOT_FREE;
        pthread_mutex_unlock(&p->lock);
    }
}

static void *upload_worker(void *arg)
{
    pool *p = arg;
    char err[512];
    nsc_config up_cfg;                             /* sinks are opened with the start-up config */
    pthread_mutex_lock(&p->lock);
    up_cfg = p->cfg;
    pthread_mutex_unlock(&p->lock);
    uploader *u = uploader_new(&up_cfg, p->db_path, err, sizeof err);
    if (!u) {
        start_failed(p, "upload", err);
        return NULL;
    }
    thread_ready(p);
    while (!shutdown_requested()) {
        pthread_mutex_lock(&p->lock);
        int fetch_done = p->fetch_done;            /* read before looking for work */
        pthread_mutex_unlock(&p->lock);
        atomic_fetch_add(&p->uploading, 1);
        upload_status st = uploader_step(u, p->uploads);
        atomic_fetch_sub(&p->uploading, 1);
        if (st == UPLOAD_FAILED && p->once) {
            pthread_mutex_lock(&p->lock);
            p->failures++;
            pthread_mutex_unlock(&p->lock);
        }
        if (st != UPLOAD_IDLE)
            continue;
        if (fetch_done)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_mutex_lock(&p->lock);
        if (!p->fetch_done && !shutdown_requested())
            pthread_cond_timedwait(&p->changed, &p->lock, &until);
        pthread_mutex_unlock(&p->lock);
    }
    uploader_free(u);
    return NULL;
}

/* Settings that only take effect at the next start (threads, handles and
 * open sinks are built from them); a reload that changes them says so. */
static int needs_restart(const nsc_config *a, const nsc_config *b)
{
    return strcmp(a->database, b->database) || strcmp(a->key_file, b->key_file) ||
           strcmp(a->output_dir, b->output_dir) || a->upload_workers != b->upload_workers ||
           a->connect_timeout_s != b->connect_timeout_s ||
           a->low_speed_time_s != b->low_speed_time_s ||
           a->total_timeout_s != b->total_timeout_s || a->max_body_bytes != b->max_body_bytes ||
           a->max_body_total != b->max_body_total ||
           strcmp(a->ca_bundle, b->ca_bundle) || strcmp(a->proxy, b->proxy) ||
           strcmp(a->gcs_endpoint, b->gcs_endpoint) ||
           strcmp(a->gcs_credentials, b->gcs_credentials) || a->gcs_gzip != b->gcs_gzip ||
           strcmp(a->metrics_listen, b->metrics_listen);
}

/* A reload's workers.fetch and workers.fetch_spare: more workers start
 * threads at once; fewer wake the idle threads, so that those above the
 * new size retire now, and busy ones retire as their jobs end (a job is
 * never stopped for it). Lock held. */
static void set_workers(pool *p, int n, int spare)
{
    if (n < p->nfetch || spare < p->cfg.fetch_spare)
        pthread_cond_broadcast(&p->job_cv);
    p->nfetch = n;
    p->cfg.fetch_spare = spare;
    while (p->nlive < n && !p->closing && fetch_thread_start(p, 1) == 0)
        ;
    pass_on(p);
}

/* SIGHUP: read the config file again. A bad file changes nothing; a good
 * one replaces log, tenant-default, fetch and outbox settings, picked up by
 * each job as it starts, and the number of workers unless --fetch-workers
 * set it. */
static void reload_config(pool *p)
{
    char err[1024];
    nsc_config fresh;
    if (!p->cfg.source[0]) {
        log_warn("event=reload note=\"no config file to reload (started without -c or $NSCOLLECT_CONFIG)\"");
        return;
    }
    config_defaults(&fresh);
    if (config_load(&fresh, p->cfg.source, err, sizeof err) < 0) {
        char q[LOG_ESCAPE_MAX];
        log_error("event=reload_failed error=\"%s\" note=\"keeping the running configuration\"",
                  log_escape(q, sizeof q, err));
        return;
    }
    pthread_mutex_lock(&p->lock);
    int restart = needs_restart(&p->cfg, &fresh);
    int pinned = p->nfetch_pinned && fresh.fetch_workers != p->cfg.fetch_workers;
    int workers = p->nfetch_pinned ? p->nfetch : fresh.fetch_workers;
    set_workers(p, workers, fresh.fetch_spare);    /* compares with the old sizes first */
    p->cfg = fresh;
    pthread_mutex_unlock(&p->lock);
    log_setup((enum log_level)fresh.log_level, (enum log_format)fresh.log_format);
    log_info("event=reload config=%s fetch_workers=%d%s%s", fresh.source, workers,
             restart ? " note=\"database, key_file, output_dir, workers.upload, http.*, "
                       "gcs.* and metrics.listen changes take effect at the next start\"" : "",
             pinned ? " fetch_workers_note=\"workers.fetch not applied: --fetch-workers "
                      "was given\"" : "");
}

/* The one thread that receives SIGTERM, SIGINT and SIGHUP (reload) for
 * the whole process; handlers never run. */
static void *signal_thread(void *arg)
{
    pool *p = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1)            /* our own wake-up at the end of the run */
            return NULL;
        if (sig == SIGHUP) {
            reload_config(p);
            continue;
        }
        log_info("event=shutdown signal=%s", sig == SIGTERM ? "TERM" : "INT");
        shutdown_request();
        pthread_mutex_lock(&p->lock);
        wake_all(p);
        pthread_mutex_unlock(&p->lock);
        return NULL;
    }
}

/* Once mode: move waits whose time has come back to the queue; report
 * whether the fetch side of the pass is over. Lock held. */
static int once_progress(pool *p)
{
    int64_t now = db_now();
    for (size_t i = 0; i < p->nwaits;) {
        if (p->waits[i].until <= now) {
            int64_t id = p->waits[i].tenant_id;
            p->waits[i] = p->waits[--p->nwaits];
            unbusy(p, id);
            enqueue(p, id);
        } else {
            i++;
        }
    }
    return p->head == p->tail && p->running == 0 && p->nwaits == 0;
}

static void schedule(pool *p, sqlite3 *db)
{
    if (p->once)
        queue_due(p, db);
    while (!shutdown_requested()) {
        atomic_store(&p->last_tick_ms, mono_ms());
        if (!p->once)
            queue_due(p, db);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += TICK_MS / 1000;
        pthread_mutex_lock(&p->lock);
        if (p->once && once_progress(p)) {
            p->fetch_done = 1;
            wake_all(p);
            pthread_mutex_unlock(&p->lock);
            return;
        }
        pthread_cond_timedwait(&p->changed, &p->lock, &until);
        maybe_spare(p);                            /* a spare's failure pause may be over */
        pthread_mutex_unlock(&p->lock);
        fetch_threads_reap(p, 0);
    }
}

/* What /metrics, /healthz and /readyz say of the threads (metrics.h). */
static void pool_view(void *arg, metrics_pool_view *v)
{
    pool *p = arg;
    pthread_mutex_lock(&p->lock);
    v->starting = p->starting;
    v->stopping = shutdown_requested() || p->fetch_done || p->closing;
    v->fetch_busy = p->working;
    v->fetch_idle = p->nlive > p->working ? p->nlive - p->working : 0;
    v->fetch_queued = (int)(p->tail - p->head);
    v->upload_busy = atomic_load(&p->uploading);
    v->upload_idle = p->nupload > v->upload_busy ? p->nupload - v->upload_busy : 0;
    pthread_mutex_unlock(&p->lock);
    v->last_tick_ms = atomic_load(&p->last_tick_ms);
}

static metrics *start_metrics(pool *p, char *err, size_t errlen)
{
    metrics_opts mo = {.listen = p->cfg.metrics_listen, .db_path = p->db_path,
                       .outbox_limit_bytes = p->cfg.outbox_limit_bytes,
                       .pool = pool_view, .pool_arg = p};
    return metrics_start(&mo, err, errlen);
}

static int start_threads(pool *p, pthread_t *t, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, fn, p) != 0)
            return i;
    return n;
}

static void join_threads(pthread_t *t, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

/* Before any worker runs: remove spool files a kill left without a row. */
static void sweep_spool(sqlite3 *db)
{
    char err[512];
    outbox *ob = outbox_open(db, err, sizeof err);
    int n = ob ? outbox_spool_sweep(ob, err, sizeof err) : -1;
    char q[LOG_ESCAPE_MAX];
    if (n < 0)
        log_warn("event=spool_sweep_failed error=\"%s\"", log_escape(q, sizeof q, err));
    else if (n > 0)
        log_info("event=spool_sweep removed=%d note=\"spool files no outbox row names (left by a kill)\"", n);
    outbox_free(ob);
}

int scheduler_run(const nsc_config *cfg, const char *db_path, const secret_key *key,
                  const run_opts *opts, char *err, size_t errlen)
{
    pool p = {.cfg = *cfg, .db_path = db_path, .key = key, .once = opts->once,
              .shard = opts->shard,
              .pass_start = db_now()};
    pthread_t sig, uploaders[64];
    int nu = 0, lockfd, rc = 2;
    metrics *mx = NULL;
    sqlite3 *db = db_open(db_path, 0, err, errlen);
    if (!db || db_check_version(db, db_path, err, errlen) < 0)
        goto out_db;
    if ((lockfd = db_lock(db_path, err, errlen)) < 0)
        goto out_db;
    db_exec(db, "UPDATE run SET status = 'abandoned', finished_at = unixepoch() "
                "WHERE status = 'running'", err, errlen);
    sweep_spool(db);
    atomic_store(&p.last_tick_ms, mono_ms());
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.changed, NULL);
    pthread_cond_init(&p.job_cv, NULL);
    pthread_cond_init(&p.worker_cv, NULL);
    p.uploads = upload_queue_new(opts->once);
    p.share = http_share_new();
    budget_init(&p.bodies, (size_t)cfg->max_body_total);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);      /* before any thread starts */
    /* Before the first thread that reads them (the metrics server's
     * /readyz, a SIGHUP): set after it, a scrape could race the write and
     * see no worker starting (TSan saw it in test_metrics). */
    p.nfetch = opts->fetch_workers;
    p.nfetch_pinned = opts->fetch_workers_set;
    p.starting = p.nfetch + opts->upload_workers;
    if (cfg->metrics_listen[0] && !(mx = start_metrics(&p, err, errlen)))
        goto out_pool;                           /* exit 2: no worker has started */
    pthread_create(&sig, NULL, signal_thread, &p);

    log_info("event=start mode=%s fetch_workers=%d upload_workers=%d database=%s",
             opts->once ? "once" : "daemon", opts->fetch_workers, opts->upload_workers, db_path);
    log_foreign_tenants(&p, db);
    pthread_mutex_lock(&p.lock);
    for (int i = 0; i < p.nfetch; i++)
        fetch_thread_start(&p, 0);
    pthread_mutex_unlock(&p.lock);
    nu = start_threads(&p, uploaders, opts->upload_workers, upload_worker);
    pthread_mutex_lock(&p.lock);
    p.nupload = nu;
    pthread_mutex_unlock(&p.lock);
    schedule(&p, db);
    pthread_mutex_lock(&p.lock);
    p.closing = 1;                               /* no spare starts behind the reaper */
    wake_all(&p);
    pthread_mutex_unlock(&p.lock);
    fetch_threads_reap(&p, 1);
    join_threads(uploaders, nu);
    pthread_kill(sig, SIGUSR1);
    pthread_join(sig, NULL);

    rc = p.failures > 0 ? 1 : 0;
    if (!opts->once && shutdown_requested())
        rc = 0;
    if (p.start_err[0]) {
        snprintf(err, errlen, "%s", p.start_err);
        rc = 2;
    }
    metrics_stop(mx);
    log_info("event=stop failures=%d", p.failures);
out_pool:
    upload_queue_free(p.uploads);
    http_share_free(p.share);
    free(p.queue);
    free(p.busy);
    free(p.waits);
    pthread_cond_destroy(&p.changed);
    pthread_cond_destroy(&p.job_cv);
    pthread_cond_destroy(&p.worker_cv);
    pthread_mutex_destroy(&p.lock);
    db_unlock(lockfd);
out_db:
    db_close(db);
    return rc;
}
