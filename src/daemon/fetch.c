/* fetch.c - see fetch.h. */
#include "daemon/fetch.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/counters.h"
#include "daemon/db.h"
#include "daemon/iterator.h"
#include "daemon/keyset.h"
#include "base/log.h"
#include "daemon/netskope.h"
#include "daemon/outbox.h"
#include "daemon/pacing.h"
#include "daemon/records.h"
#include "base/shutdown.h"
#include "daemon/stream.h"
#include "daemon/tenant.h"
#include "base/util.h"
#include "daemon/window.h"

#define INLINE_ATTEMPTS 4        /* tries of one page before the job yields */
#define AUTH_BACKOFF_S 3600      /* a rejected token is not retried for an hour */
#define SERVER_WAIT_MAX_S 3600   /* no wait a server asks for is longer (nor the interval) */
#define NS_LIMIT_SPEC_MAX 5000   /* the spec's maximum for limit (events/alert.yaml) */
#define FETCH_OFFSET_HARD_MAX 1000000  /* no deeper offset even in a slice of 1 s (beyond
                                          fetch.offset_max, 50000 by default, Cortex
                                          XSOAR's collector's limit) */
#define FETCH_STALE_PAGES 3      /* full pages in a row with nothing new: no progress */
#define FETCH_SLICE_READS 3      /* reads of a slice whose page order keeps changing */

/* The next page, fetched and parsed by a short-lived thread while this
 * one stores the page before it: on two cores, receiving and parsing
 * overlap storing instead of following it. It is only started when the
 * sequential code would send the same request next (the page was full, no
 * wait_time), so requests, their order and their pacing are unchanged; the
 * job waits for it before it uses the page or leaves the slice. Off by
 * default (fetch.prefetch): at Netskope's 4 requests/s a page is stored
 * well within its 250 ms, and two whole pages (a page of 10000 2 KB
 * events is 20 MB) would be memory spent for nothing; without it each
 * page is read as it arrives (page_reader) and none is held whole. */
typedef struct prefetch {
    pthread_t thread;
    int active;                /* a thread was started and not yet joined */
    int stopped;               /* pacing_wait saw a shutdown: nothing sent */
    ns_client *http;           /* the client and page not holding the */
    ns_page *page;             /* page being stored */
    ns_query q;
    ns_reply rep;
    int parsed;                /* 1 not parsed, else ns_page_parse()'s result */
    char why[256];             /* its error */
    int64_t tenant_id, gap_us;
} prefetch;

/* A full batch committed by a short-lived thread while this one fills
 * the other (fetch.prefetch): the commit's disk writes (the spool file
 * and its fdatasync, the WAL; its fdatasync too until db_sync() took it
 * to the uploader) were half of a backlog page's time on the
 * job's thread, which the next page's records then waited for. One commit
 * at a time, in order: the next commit, the cursor's, and every way out of
 * a slice wait for it first (commit_join), so the database sees the same
 * commits in the same order as without it, and a cursor never moves past
 * a batch that has not committed. While it runs it alone uses the
 * fetcher's connection; the job's thread touches only the other batch. */
typedef struct committer {
    pthread_t thread;
    int pending;               /* a commit whose outcome the job has not taken */
    int threaded;              /* ... on a thread not yet joined */
    outbox_commit_args a;      /* for fetcher.spare, on fetcher.ob */
    outbox_counts n;
    int rc;                    /* outbox_commit()'s */
    char err[256];
} committer;

/* One read of a slice: where it is, and what it met. */
typedef struct pass {
    int64_t offset;            /* of the next page */
    int64_t repeats;           /* records whose key this read had met already */
    int stale;                 /* full pages in a row with nothing this read had not met */
    int64_t records;           /* records it read */
    int64_t oldest, newest;    /* their oldest and newest window times, -1 when none */
} pass;

/* A page read as it arrives (the iterator's, and the data API's without
 * fetch.prefetch): each record is noted and queued as soon as it is
 * complete, so the page is never held whole. A reply that breaks off is
 * asked for again; what it had handed out is taken back from the read's
 * keys (its records stay in the batch, whose commit drops repeats). */
typedef struct page_reader {
    struct job *j;
    pass *p;
    pass p0;                   /* *p before the page */
    uint64_t seq0;             /* the keys' order hash before the page */
    buf added;                 /* keys the page added to the read's keyset */
    int64_t fresh;             /* its records the read had not met */
    int keys;                  /* the records' keys go to the read's keyset (offset
                                  paging; the iterator has no use for them) */
    int refused;               /* 1 "ok" other than 1 came first, -1 a record could
                                  not be queued (the job's result says why) */
    char why[256];             /* why the page is malformed */
} page_reader;

struct fetcher {
    const nsc_config *cfg;
    const secret_key *key;
    sqlite3 *db;
    outbox *ob;
    ns_client *http[2];        /* two of each, so that a page and its body stay */
    ns_page page[2];           /* while the next one arrives */
    int cur;                   /* the client and page being stored */
    prefetch next;
    outbox_batch batch;        /* the records being taken */
    outbox_batch spare;        /* the full batch a committer commits, else empty */
    committer behind;
    keyset keys;               /* the keys one read of the current slice has met */
    page_reader rd;
    fetch_waits waits;
};

/* State of one job while it runs. */
typedef struct job {
    tenant t;
    stream s;                 /* the stream this job reads: cursor, keys, schedule */
    char who[TENANT_NAME_MAX + 32];  /* for log lines: "acme", or "acme stream=page" */
    char prefix[TENANT_NAME_MAX + 40];  /* object names: "acme/alerts", "acme/page/page" */
    int64_t started;          /* "now" of the job: the window never passes it */
    int64_t pages, fetched;   /* since the last commit */
    int64_t slice_pages;      /* requests made for the current slice */
    size_t page_most;         /* the most records one page of this job held */
    int slice_s;              /* the current slice's length (without the overlap) */
    int64_t window_start;     /* where this job's first slice began */
    int64_t t0_ms;            /* when the job began (mono_ms) */
    int iterator;             /* the tenant reads the dataexport iterator (iterator.h) */
    int64_t digest_from;      /* records keyed by "_id" with a window time from here on
                                 (or none) keep a digest: a later read may meet them
                                 again. An iterator may resend any page: INT64_MIN */
    long last_progress_ms;    /* when the last progress line was written */
    fetch_result *res;
} job;

#define PROGRESS_EVERY_MS 5000

fetcher *fetcher_new(const nsc_config *cfg, const char *db_path, const secret_key *key,
                     void *curl_share, budget *bodies, char *err, size_t errlen)
{
    fetcher *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->cfg = cfg;
    f->key = key;
    ns_page_init(&f->page[0], 0);
    ns_page_init(&f->page[1], 0);
    outbox_batch_init(&f->batch, (size_t)cfg->batch_max_bytes);
    outbox_batch_init(&f->spare, (size_t)cfg->batch_max_bytes);  /* only touched pages count */
    buf_init(&f->rd.added, 0);
    ns_http_opts opts = {
        .connect_timeout_s = cfg->connect_timeout_s,
        .low_speed_time_s = cfg->low_speed_time_s,
        .total_timeout_s = cfg->total_timeout_s,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .ca_bundle = cfg->ca_bundle,
        .proxy = cfg->proxy,
        .share = curl_share,
        .bodies = bodies,
    };
    if (keyset_init(&f->keys, (size_t)cfg->offset_max + 10000) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    f->db = db_open(db_path, 0, err, errlen);
    if (!f->db || !(f->ob = outbox_open(f->db, err, errlen)))
        goto fail;
    if (!(f->http[0] = ns_client_new(&opts)) || !(f->http[1] = ns_client_new(&opts))) {
        snprintf(err, errlen, "cannot start the HTTP client");
        goto fail;
    }
    return f;
fail:
    fetcher_free(f);
    return NULL;
}

void fetcher_free(fetcher *f)
{
    if (!f)
        return;
    ns_client_free(f->http[0]);
    ns_client_free(f->http[1]);
    outbox_free(f->ob);
    db_close(f->db);
    ns_page_release(&f->page[0]);
    ns_page_release(&f->page[1]);
    outbox_batch_release(&f->batch);
    outbox_batch_release(&f->spare);
    keyset_release(&f->keys);
    buf_release(&f->rd.added);
    free(f);
}

void fetcher_reconfigure(fetcher *f, const nsc_config *cfg)
{
    keyset k;
    if ((size_t)cfg->offset_max + 10000 > f->keys.max &&
        keyset_init(&k, (size_t)cfg->offset_max + 10000) == 0) {
        keyset_release(&f->keys);
        f->keys = k;
    }
    f->cfg = cfg;
    f->batch.data.max = f->spare.data.max = (size_t)cfg->batch_max_bytes;
}

void fetcher_set_waits(fetcher *f, const fetch_waits *w)
{
    f->waits = *w;
}

static void wait_begin(fetcher *f)
{
    if (f->waits.begin)
        f->waits.begin(f->waits.arg);
}

static void wait_end(fetcher *f)
{
    if (f->waits.end)
        f->waits.end(f->waits.arg);
}

/* Sleep with the worker lent out. 1 when a shutdown cut it short. */
static int idle_ms(fetcher *f, long ms)
{
    wait_begin(f);
    int stopped = shutdown_sleep_ms(ms);
    wait_end(f);
    return stopped;
}

const char *fetch_status_name(fetch_status s)
{
    static const char *names[] = {"ok", "more", "yield", "wait", "auth", "failed", "stopped",
                                  "skipped", "paused"};
    return names[s];
}

static long ms_since(int64_t t0_ms)
{
    return (long)(mono_ms() - t0_ms);
}

static void set_result(job *j, fetch_status st, int64_t wait_until, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_result(job *j, fetch_status st, int64_t wait_until, const char *fmt, ...)
{
    va_list ap;
    j->res->status = st;
    j->res->wait_until = wait_until;
    va_start(ap, fmt);
    vsnprintf(j->res->error, sizeof j->res->error, fmt, ap);
    va_end(ap);
}

/* What a commit of the batch is told; cursor -1 keeps the cursor. The
 * job's page and record counts go with it. */
static outbox_commit_args commit_args(fetcher *f, job *j, int64_t cursor)
{
    outbox_commit_args a = {
        .tenant_id = j->t.id, .stream_id = j->s.id, .object_prefix = j->prefix,
        .run_id = j->res->run_id,
        .cursor = cursor,
        .prune_before = window_prune_before(j->iterator ? db_now() : cursor, j->t.overlap_s,
                                            f->cfg->prune_margin_s),
        .iterator = j->iterator && cursor >= 0,
        .pages = j->pages, .fetched = j->fetched,
        .spool_min_bytes = f->cfg->spool_min_bytes,
    };
    j->pages = j->fetched = 0;
    return a;
}

/* A commit's outcome, for the job: -1 (the result set) when it failed. */
static int commit_done(job *j, int rc, const outbox_counts *n, const char *err)
{
    if (rc < 0) {
        set_result(j, FETCH_FAILED, 0, "%s", err);
        return -1;
    }
    if (n->conflicts > 0)
        log_warn("tenant=%s event=conflict records=%lld reason=\"records with the _id of a "
                 "record stored before but other bytes: dropped, the first one kept\"",
                 j->who, (long long)n->conflicts);
    j->res->stored += n->stored;
    return 0;
}

static void *committer_main(void *arg)
{
    fetcher *f = arg;
    committer *c = &f->behind;
    c->rc = outbox_commit(f->ob, &f->spare, &c->a, &c->n, c->err, sizeof c->err);
    return NULL;
}

/* Wait for the commit behind the job, if any: its outcome (commit_done). A
 * batch that failed to commit is dropped, as a failed commit drops it. */
static int commit_join(fetcher *f, job *j)
{
    committer *c = &f->behind;
    if (!c->pending)
        return 0;
    if (c->threaded)
        pthread_join(c->thread, NULL);
    c->pending = c->threaded = 0;
    outbox_batch_reset(&f->spare);
    return commit_done(j, c->rc, &c->n, c->err);
}

/* Commit what the batch holds; cursor -1 keeps the cursor (mid-slice).
 * The commit behind the job, if any, comes first. */
static int commit(fetcher *f, job *j, int64_t cursor)
{
    char err[256];
    outbox_counts n;
    if (commit_join(f, j) < 0)
        return -1;
    outbox_commit_args a = commit_args(f, j, cursor);
    int rc = outbox_commit(f->ob, &f->batch, &a, &n, err, sizeof err);
    return commit_done(j, rc, &n, err);
}

/* commit(), but with fetch.prefetch behind the job (committer): a full
 * batch mid-slice while the records that follow go to the other batch, a
 * slice's last batch and its cursor while the next slice's first page is
 * fetched. Here and now without prefetch, for the iterator, or when no
 * thread can be started. */
static int commit_behind(fetcher *f, job *j, int64_t cursor)
{
    committer *c = &f->behind;
    if (!f->cfg->prefetch || j->iterator)
        return commit(f, j, cursor);
    if (commit_join(f, j) < 0)
        return -1;
    outbox_batch full = f->batch;          /* the empty spare takes the records that follow */
    f->batch = f->spare;
    f->spare = full;
    c->a = commit_args(f, j, cursor);
    c->pending = 1;
    c->threaded = pthread_create(&c->thread, NULL, committer_main, f) == 0;
    if (c->threaded)
        return 0;
    committer_main(f);
    return commit_join(f, j);
}

/* Queue a record in the batch, committing (without a cursor move) first
 * when the batch is full. */
static int take_record(fetcher *f, job *j, const ns_record *r)
{
    /* -1 when the record lacks the time: pruned by when it was stored (outbox.h) */
    int64_t at = j->t.window_event ? r->event_time : r->insertion_time;
    int digest = r->has_id && (at < 0 || at >= j->digest_from);
    while (outbox_batch_add(&f->batch, r->data, r->len, r->key, at, r->event_time, digest) < 0) {
        if (f->batch.n == 0) {
            set_result(j, FETCH_FAILED, 0, "a record of %zu bytes is larger than "
                       "fetch.batch_max_bytes", r->len);
            return -1;
        }
        if (commit_behind(f, j, -1) < 0)
            return -1;
    }
    return 0;
}

/* The same for each of n records. */
static int take_records(fetcher *f, job *j, const ns_record *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (take_record(f, j, &recs[i]) < 0)
            return -1;
    return 0;
}

/* A wait the server asked for (Retry-After, ratelimit-reset, wait_time),
 * capped at the tenant's interval and SERVER_WAIT_MAX_S: a hostile or
 * broken server cannot park a tenant for years. The cut is logged. */
static int64_t cap_wait(const job *j, int64_t asked, const char *what)
{
    int64_t cap = j->t.interval_s < SERVER_WAIT_MAX_S ? j->t.interval_s : SERVER_WAIT_MAX_S;
    if (cap < 1)
        cap = 1;
    if (asked <= cap)
        return asked;
    log_warn("tenant=%s event=wait_capped source=%s asked_s=%lld wait_s=%lld", j->who, what,
             (long long)asked, (long long)cap);
    return cap;
}

/* How long to wait after a retryable reply, by attempt number. */
static int retry_wait_s(const job *j, const ns_reply *rep, int attempt)
{
    if (rep->retry_after_s >= 0)
        return (int)cap_wait(j, rep->retry_after_s, "retry_after");
    return 1 << (attempt < 6 ? attempt : 6);
}

/* A reply with ratelimit-remaining: 0 holds back the tenant's next request
 * (this job's or another's) until its ratelimit-reset. */
static void note_ratelimit(const job *j, const ns_reply *rep)
{
    if (rep->pause_s < 0)
        return;
    int64_t s = cap_wait(j, rep->pause_s, "ratelimit_reset");
    log_info("tenant=%s event=ratelimit_pause wait_s=%lld", j->who, (long long)s);
    pacing_defer(j->t.id, mono_us() + s * 1000000);
}

/* Before a request: a pause longer than fetch.retry_wait_max is not sat
 * out holding a thread; the job ends, told to wait (nothing of the slice
 * is committed, so it is re-read). 1 then, else 0. */
static int paused_too_long(fetcher *f, job *j)
{
    int64_t left_s = (pacing_held_us(j->t.id) + 999999) / 1000000;
    if (left_s <= f->cfg->retry_wait_max_s)
        return 0;
    set_result(j, FETCH_WAIT, db_now() + left_s, "Netskope's rate limit is used up "
               "(ratelimit-remaining: 0); next request in %lld s", (long long)left_s);
    j->res->told_to_wait = 1;
    return 1;
}

static void *prefetch_main(void *arg)
{
    prefetch *p = arg;
    p->stopped = pacing_wait(p->tenant_id, p->gap_us);
    if (p->stopped || ns_fetch_page(p->http, &p->q, &p->rep) != NS_OK)
        return NULL;
    p->parsed = ns_page_parse(p->page, p->rep.body, p->rep.body_len, p->why, sizeof p->why);
    return NULL;
}

/* The requests a job of this tenant may spend: its budget in seconds at
 * its rate (at least one). */
static int64_t budget_pages(const fetcher *f, const job *j)
{
    int64_t n = (int64_t)(f->cfg->job_budget_s * tenant_rate(&j->t, f->cfg));
    return n > 0 ? n : 1;
}

/* Send q from another thread on the client not holding the current page.
 * When no thread can be started the page is simply fetched in line. */
static void prefetch_start(fetcher *f, job *j, const ns_query *q)
{
    prefetch *p = &f->next;
    p->http = f->http[!f->cur];
    p->page = &f->page[!f->cur];
    p->q = *q;
    p->tenant_id = j->t.id;
    p->gap_us = tenant_request_gap_us(&j->t, f->cfg);
    p->stopped = 0;
    p->parsed = 1;
    p->active = pthread_create(&p->thread, NULL, prefetch_main, p) == 0;
    j->slice_pages += p->active;
}

/* Wait for the request in flight, if any. 1 when it brought a reply
 * (then on f->http[f->cur], parsed into f->page[f->cur] when NS_OK), 0
 * when there was none to wait for, -1 when a shutdown stopped it before
 * it was sent. */
static int prefetch_join(fetcher *f)
{
    prefetch *p = &f->next;
    if (!p->active)
        return 0;
    wait_begin(f);
    pthread_join(p->thread, NULL);
    wait_end(f);
    p->active = 0;
    if (p->stopped)
        return -1;
    f->cur = !f->cur;
    return 1;
}

static ns_query page_query(const job *j, const window *w, int64_t offset)
{
    ns_query q = {
        .base_url = j->t.url, .path = stream_data_path(j->s.type), .token = j->t.token,
        .window_event = j->t.window_event,
        .start = w->start, .end = w->end, .limit = j->t.page_size, .offset = offset,
    };
    return q;
}

/* A page that parsed but says "ok" is not 1 is Netskope reporting a
 * failed request (its spec: ok is 0 or 1): never an empty page that
 * would end the window and move the cursor. 0 when the page is usable. */
static int page_ok(fetcher *f, job *j, const ns_reply *rep, const ns_query *q)
{
    char said[256];
    int64_t offset = q->offset;
    if (q->op && f->page[f->cur].ok < 0) {
        set_result(j, FETCH_FAILED, 0, "Netskope's dataexport reply (operation=%s) has no "
                   "\"ok\" member: the page is not used and the iterator is asked to resend "
                   "it", q->op);
        return -1;
    }
    if (f->page[f->cur].ok != 0)
        return 0;
    if (q->op) {
        ns_error_text(rep->body, rep->body_len, said, sizeof said);
        set_result(j, FETCH_FAILED, 0, "Netskope answered \"ok\" other than 1 (a failed "
                   "request) to operation=%s%s%s", q->op, said[0] ? ": " : "", said);
        return -1;
    }
    ns_error_text(rep->body, rep->body_len, said, sizeof said);
    set_result(j, FETCH_FAILED, 0, "Netskope answered \"ok\" other than 1 (a failed request) "
               "at offset %lld%s%s", (long long)offset, said[0] ? ": " : "", said);
    return -1;
}

/* A page is full (another may follow) when it holds page_size records, or
 * the spec's maximum: a server that caps limit at 5000 must not end the
 * window with a page that only looks short. A page between the two is
 * full only while no earlier page of the job held more: a server that
 * gave more than n when it had them does not cap at n, and a page of
 * 5,091 after pages of 10,000 is the window's last (asking once more was
 * an empty request after every such page: 21 of a 1M backlog's 146).
 * Exactly 5000 stays full: a server may cap at the spec's maximum only
 * when it is busy. */
static int page_full(const job *j, size_t n)
{
    size_t spec = j->t.page_size < NS_LIMIT_SPEC_MAX ? (size_t)j->t.page_size : NS_LIMIT_SPEC_MAX;
    return n >= (size_t)j->t.page_size || n == spec || (n > spec && n >= j->page_most);
}

/* Count a record in the read, with its window time. */
static void note_time(const job *j, pass *p, const ns_record *rec)
{
    int64_t at = j->t.window_event ? rec->event_time : rec->insertion_time;
    p->newest = at > p->newest ? at : p->newest;
    p->oldest = at >= 0 && (p->oldest < 0 || at < p->oldest) ? at : p->oldest;
    p->records++;
}

/* ... and note its key in this read's keyset: keyset_add()'s answer (1
 * new, 0 met before, -1 the set is full, which never happens below the
 * ceiling and counts as new). */
static int note_key(fetcher *f, const job *j, pass *p, const ns_record *rec)
{
    int r = keyset_add(&f->keys, rec->key);
    p->repeats += r == 0;
    note_time(j, p, rec);
    return r;
}

/* The same for each record of a page read whole. The number the read
 * had not met. */
static int64_t note_keys(fetcher *f, const job *j, pass *p)
{
    const ns_page *pg = &f->page[f->cur];
    int64_t fresh = 0;
    for (size_t i = 0; i < pg->nrecs; i++)
        fresh += note_key(f, j, p, &pg->recs[i]) != 0;
    return fresh;
}

/* ---- a page read as it arrives (page_reader) ---- */

/* The records the lexer has completed so far, keyed and then queued, each
 * in one loop (a key lookup is a cache miss: one after another they
 * overlap). */
static int reader_records(void *ud, const ns_record *recs, size_t n)
{
    fetcher *f = ud;
    page_reader *rd = &f->rd;
    if (f->page[f->cur].ok == 0) {
        rd->refused = 1;           /* Netskope says the request failed: none of it is used */
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!rd->keys) {
            note_time(rd->j, rd->p, &recs[i]);
            continue;
        }
        int added = note_key(f, rd->j, rd->p, &recs[i]);
        rd->fresh += added != 0;
        if (added == 1 && buf_append(&rd->added, recs[i].key, RECORDS_KEY_LEN) < 0) {
            set_result(rd->j, FETCH_FAILED, 0, "out of memory noting the keys of a page");
            rd->refused = -1;
            return -1;
        }
    }
    if (take_records(f, rd->j, recs, n) < 0) {
        rd->refused = -1;
        return -1;
    }
    return 0;
}

static int reader_body(void *ud, const char *p, size_t n)
{
    fetcher *f = ud;
    return ns_page_feed(&f->page[f->cur], p, n, f->rd.why, sizeof f->rd.why) == 0 ? 0 : -1;
}

/* Before each try of the page. */
static void reader_begin(fetcher *f, job *j, pass *p, ns_query *q)
{
    page_reader *rd = &f->rd;
    rd->j = j;
    rd->p = p;
    rd->keys = !q->op;
    rd->p0 = *p;
    rd->seq0 = f->keys.seq;
    buf_reset(&rd->added);
    rd->fresh = 0;
    rd->refused = 0;
    rd->why[0] = '\0';
    q->on_body = reader_body;
    q->body_ud = f;
}

/* A try that failed: the read forgets what it handed out (the next try's
 * reader_begin() starts its own count). */
static void reader_undo(fetcher *f)
{
    page_reader *rd = &f->rd;
    for (size_t at = 0; at + RECORDS_KEY_LEN <= rd->added.len; at += RECORDS_KEY_LEN)
        keyset_remove(&f->keys, (const unsigned char *)rd->added.data + at);
    f->keys.seq = rd->seq0;
    *rd->p = rd->p0;
}

/* For nscollect_requests_total: parsed is 0 when a 200's page parsed. */
static req_outcome request_outcome(ns_status st, const ns_reply *rep, int parsed)
{
    if (st == NS_OK)
        return parsed == 0 ? REQ_OK : REQ_MALFORMED;
    if (rep->http_code == 429)
        return REQ_429;
    if (rep->timed_out)
        return REQ_TIMEOUT;
    if (rep->http_code >= 500)
        return REQ_5XX;
    if (rep->http_code >= 400)
        return REQ_4XX;
    return REQ_ERROR;
}

/* What one try of a page came to: 0 usable, 1 stop, -1 failed (res
 * set), 2 try again (after the wait, done here). */
static int page_reply(fetcher *f, job *j, ns_query *q, const ns_reply *rep, ns_status st,
                      int parsed, char *why, size_t whylen, int attempt, int64_t offset)
{
    if (shutdown_requested())
        return 1;                    /* cut short by SIGTERM: not the tenant's failure */
    note_ratelimit(j, rep);
    if (st == NS_OK && parsed == 1)
        parsed = ns_page_parse(&f->page[f->cur], rep->body, rep->body_len, why, whylen);
    counters_request(j->s.id, request_outcome(st, rep, parsed == -2 ? 0 : parsed));
    if (st == NS_OK) {
        if (parsed == 0)
            return page_ok(f, j, rep, q);
        if (parsed == -2)
            return -1;
        if (q->op)
            set_result(j, FETCH_FAILED, 0, "malformed dataexport page (operation=%s): %s",
                       q->op, why);
        else
            set_result(j, FETCH_FAILED, 0, "malformed page at offset %lld: %s",
                       (long long)offset, why);
        return -1;
    }
    if (st == NS_AUTH) {
        set_result(j, FETCH_AUTH, db_now() + AUTH_BACKOFF_S, "%s", rep->err);
        return -1;
    }
    if (st == NS_FAIL) {
        set_result(j, FETCH_FAILED, 0, "%s", rep->err);
        return -1;
    }
    if (rep->timed_out) {
        /* A server that did not answer in http.low_speed_time may well
         * hang again: trying it again here would hold a thread for as
         * long each time. The tenant backs off (record_outcome). */
        set_result(j, FETCH_FAILED, 0, "%s; not retried in this job", rep->err);
        return -1;
    }
    int wait = retry_wait_s(j, rep, attempt);
    if (attempt + 1 >= INLINE_ATTEMPTS || wait > f->cfg->retry_wait_max_s) {
        set_result(j, FETCH_WAIT, db_now() + wait, "%s; retrying in %d s", rep->err, wait);
        j->res->told_to_wait = rep->retry_after_s >= 0;
        return -1;
    }
    char esc[LOG_ESCAPE_MAX];
    log_info("tenant=%s event=retry attempt=%d wait_s=%d reason=\"%s\"",
             j->who, attempt + 1, wait, log_escape(esc, sizeof esc, rep->err));
    if (idle_ms(f, wait * 1000L))
        return 1;
    /* The iterator may have handed the page out with a reply that never
     * came: ask for it again, never for the one after (iterator.h). */
    if (q->op && strcmp(q->op, "next") == 0)
        q->op = "resend";
    return 2;
}

/* Send q once and read its page as it arrives (page_reader) into *into.
 * The reply, and in *parsed what ns_page_parse() would have said: 0
 * parsed, -1 malformed (why), 1 not a page; -2 when a record could not be
 * queued (the job's result says why). */
static ns_status fetch_streamed(fetcher *f, job *j, ns_query *q, pass *into, ns_reply *rep,
                                int *parsed, char *why, size_t whylen)
{
    ns_page *pg = &f->page[f->cur];
    reader_begin(f, j, into, q);
    *parsed = 1;
    if (ns_page_begin(pg, reader_records, f) < 0) {
        memset(rep, 0, sizeof *rep);
        rep->status = NS_FAIL;
        rep->retry_after_s = rep->pause_s = -1;
        snprintf(rep->err, sizeof rep->err, "out of memory for a page");
        return NS_FAIL;
    }
    ns_status st = ns_fetch_page(f->http[f->cur], q, rep);
    int end = st == NS_OK ? ns_page_end(pg, f->rd.why, sizeof f->rd.why) : 0;
    if (st == NS_OK || rep->stopped) {
        st = rep->status = NS_OK;      /* the server's reply was whole, or the reader stopped it */
        *parsed = f->rd.refused < 0 ? -2 : f->rd.refused > 0 ? 0 : rep->stopped || end ? -1 : 0;
    }
    snprintf(why, whylen, "%s", f->rd.why);
    return st;
}

/* Fetch one page (its first try may already be in flight, from
 * prefetch_start), waiting and retrying briefly on 429/5xx. With into it
 * is read as it arrives, its records noted in *into and queued (see
 * page_reader), else parsed whole into f->page[f->cur]. 0 when the page
 * is usable, 1 when the job must stop, -1 on failure; a streamed page not
 * used is taken back from the read (reader_undo). */
static int get_page(fetcher *f, job *j, ns_query *q, pass *into)
{
    int64_t offset = q->offset;
    ns_reply rep;
    char why[256];
    int sent = prefetch_join(f);
    if (sent < 0)
        return 1;
    for (int attempt = 0;; attempt++) {
        ns_status st;
        int parsed = 1;
        if (attempt == 0 && sent) {
            rep = f->next.rep;       /* counted in slice_pages when it was sent */
            st = rep.status;
            parsed = f->next.parsed;
            memcpy(why, f->next.why, sizeof why);
        } else {
            if (paused_too_long(f, j))
                return -1;
            j->slice_pages++;
            wait_begin(f);
            int stopped = pacing_wait(j->t.id, tenant_request_gap_us(&j->t, f->cfg));
            st = stopped ? NS_FAIL
               : into ? fetch_streamed(f, j, q, into, &rep, &parsed, why, sizeof why)
               : ns_fetch_page(f->http[f->cur], q, &rep);
            wait_end(f);
            if (stopped)
                return 1;
        }
        int rc = page_reply(f, j, q, &rep, st, parsed, why, sizeof why, attempt, offset);
        if (rc != 0 && into)
            reader_undo(f);
        if (rc != 2)
            return rc;
    }
}

/* Honour the body's wait_time before the next request. 0 go on, 1 stop,
 * -1 when the wait is too long to hold a worker (the job yields). */
static int honour_wait_time(fetcher *f, job *j)
{
    int64_t wt = f->page[f->cur].wait_time;
    if (wt <= 0)
        return 0;
    wt = cap_wait(j, wt, "wait_time");
    if (wt > f->cfg->retry_wait_max_s) {
        set_result(j, FETCH_WAIT, db_now() + wt, "Netskope asked to wait %lld s (wait_time)",
                   (long long)wt);
        j->res->told_to_wait = 1;
        return -1;
    }
    return idle_ms(f, (long)wt * 1000L);
}


/* After a full page: 2 when the slice must be given up and read smaller
 * (the next offset would pass fetch.offset_max, or the job's budget is
 * used and the slice can still shrink), -1 when the server makes no
 * progress, else 0. */
static int page_bounds(fetcher *f, job *j, const window *w, const pass *p)
{
    if (p->stale >= FETCH_STALE_PAGES) {
        set_result(j, FETCH_FAILED, 0, "Netskope answered %d full pages in a row with only "
                   "records already read (offset %lld of [%lld, %lld)): the slice is not "
                   "committed", FETCH_STALE_PAGES, (long long)p->offset,
                   (long long)w->start, (long long)w->end);
        return -1;
    }
    if (p->offset >= f->cfg->offset_max && j->slice_s > 1) {
        log_info("tenant=%s event=slice_too_deep offset=%lld slice_s=%d", j->who,
                 (long long)p->offset, j->slice_s);
        return 2;
    }
    if (p->offset >= FETCH_OFFSET_HARD_MAX) {
        set_result(j, FETCH_FAILED, 0, "more than %d records in one second of [%lld, %lld): "
                   "paging stopped at offset %lld; the slice is not committed",
                   FETCH_OFFSET_HARD_MAX, (long long)w->start, (long long)w->end,
                   (long long)p->offset);
        return -1;
    }
    if (ms_since(j->t0_ms) >= f->cfg->job_budget_s * 1000L && j->slice_s > PACING_MIN_SLICE_S) {
        log_info("tenant=%s event=slice_over_budget offset=%lld slice_s=%d", j->who,
                 (long long)p->offset, j->slice_s);
        return 2;
    }
    return 0;
}

/* Start the next page's request early (fetch.prefetch) when it is certain. */
static void maybe_prefetch(fetcher *f, job *j, const window *w, const pass *p, size_t n)
{
    const ns_page *pg = &f->page[f->cur];
    int64_t next = p->offset + (int64_t)n;
    if (f->cfg->prefetch && page_full(j, n) && pg->wait_time <= 0 && !shutdown_requested() &&
        pacing_held_us(j->t.id) == 0 && next < f->cfg->offset_max && p->stale + 1 < FETCH_STALE_PAGES) {
        ns_query q = page_query(j, w, next);
        prefetch_start(f, j, &q);
    }
}

/* One read of the pages of window w. A full page without wait_time means
 * the next request is certain: with fetch.prefetch it is sent
 * (prefetch_start) before this page is stored. 0 done, 1 stopping, -1
 * failed, 2 give the slice up and read it smaller. */
static int slice_pages(fetcher *f, job *j, const window *w, pass *p)
{
    int whole = f->cfg->prefetch;      /* else each page is read as it arrives */
    keyset_reset(&f->keys);
    for (;;) {
        ns_query q = page_query(j, w, p->offset);
        int rc = get_page(f, j, &q, whole ? NULL : p);
        if (rc != 0)
            return rc;
        size_t n = f->page[f->cur].nrecs;
        j->pages++;
        j->fetched += (int64_t)n;
        int64_t fresh = whole ? note_keys(f, j, p) : f->rd.fresh;
        p->stale = page_full(j, n) && fresh == 0 ? p->stale + 1 : 0;
        if (whole)
            maybe_prefetch(f, j, w, p, n);
        if (whole && take_records(f, j, f->page[f->cur].recs, n) < 0)
            return -1;
        int full = page_full(j, n);
        j->page_most = n > j->page_most ? n : j->page_most;
        if (!full)
            return 0;                                /* a short page ends the window */
        p->offset += (int64_t)n;
        if ((rc = page_bounds(f, j, w, p)) != 0 || (rc = honour_wait_time(f, j)) != 0)
            return rc;
    }
}

/* One slice: every page of window w, then the commit that moves the
 * cursor to w->end. A read that met a key twice may have skipped records
 * (the order changed between pages): the slice is read again, keeping
 * every read's records (the commit drops repeats), until a read meets no
 * key twice or two reads meet the same keys in the same order (records
 * that are really there twice), at most FETCH_SLICE_READS reads; then it
 * is read smaller (fewer pages, less for the order to move), down to 1 s.
 * 0 done, 1 stopping, -1 failed (res says why), 2 read it smaller (what
 * was read is committed without moving the cursor). *last is the last
 * read, what pacing learns from. */
static int read_slice(fetcher *f, job *j, const window *w, pass *last)
{
    uint64_t last_seq = 0;
    outbox_batch_reset(&f->batch);
    for (int read = 1;; read++) {
        pass *p = last;                /* each read starts afresh */
        *p = (pass){.oldest = -1, .newest = -1};
        int rc = slice_pages(f, j, w, p);
        prefetch_join(f);              /* a reply nobody will read: only wait for it */
        if (rc == 2)
            return commit(f, j, -1) < 0 ? -1 : 2;
        if (rc != 0)
            return rc;
        if (p->repeats == 0 || (read > 1 && f->keys.seq == last_seq))
            return commit_behind(f, j, w->end);
        if (read == FETCH_SLICE_READS && j->slice_s > 1) {
            log_warn("tenant=%s event=slice_unstable reads=%d slice_s=%d", j->who, read,
                     j->slice_s);
            return commit(f, j, -1) < 0 ? -1 : 2;       /* fewer pages, less to move */
        }
        if (read == FETCH_SLICE_READS) {
            set_result(j, FETCH_FAILED, 0, "Netskope's page order changed on each of %d reads "
                       "of [%lld, %lld) (%lld records met twice in the last): the slice is not "
                       "committed", read, (long long)w->start, (long long)w->end,
                       (long long)p->repeats);
            commit(f, j, -1);
            return -1;
        }
        log_warn("tenant=%s event=page_order_changed read=%d repeats=%lld window_start=%lld "
                 "window_end=%lld", j->who, read, (long long)p->repeats,
                 (long long)w->start, (long long)w->end);
        last_seq = f->keys.seq;
    }
}

/* read_slice(); unless it ended with its commit (which may still be
 * running behind the job: the next commit or the job's end waits for it),
 * the commit behind it done. */
static int fetch_slice(fetcher *f, job *j, const window *w, pass *last)
{
    int rc = read_slice(f, j, w, last);
    return rc != 0 && commit_join(f, j) < 0 ? -1 : rc;
}

/* A backfill or catch-up of several slices reports how far it got, what it
 * stored, its rate and the time left, every few seconds. */
static void progress(job *j, int64_t covered_to)
{
    long ms = ms_since(j->t0_ms);
    if (covered_to >= j->started || ms - j->last_progress_ms < PROGRESS_EVERY_MS)
        return;
    j->last_progress_ms = ms;
    double done = (double)(covered_to - j->window_start);
    double total = (double)(j->started - j->window_start);
    double secs = ms / 1000.0;
    log_info("tenant=%s run=%lld event=progress covered=%.0f%% window_end=%lld stored=%lld "
             "rate=%.0f/s eta_s=%.0f", j->who, (long long)j->res->run_id,
             100.0 * done / total, (long long)covered_to, (long long)j->res->stored,
             j->res->stored / (secs > 0 ? secs : 1), done > 0 ? secs * (total - done) / done : -1.0);
}

/* Where a stream without a cursor begins: fixed by its first attempt
 * (outbox_first_start), so a stream whose first attempts fail does not
 * start later each time and skip what lay between. -1 with the result set
 * when it cannot be read, or when the clock is behind it. */
static int first_window_start(fetcher *f, job *j, int64_t *start)
{
    if (outbox_first_start(f->ob, j->s.id, j->started - j->t.lookback_s, start) < 0) {
        set_result(j, FETCH_FAILED, 0, "cannot read the first window: %s", sqlite3_errmsg(f->db));
        return -1;
    }
    if (*start > j->started) {
        log_warn("tenant=%s event=clock_behind_first_window start=%lld now=%lld", j->who,
                 (long long)*start, (long long)j->started);
        set_result(j, FETCH_OK, 0, "%s", "");
        return -1;
    }
    return 0;
}

/* After a slice moved the cursor there: 1 (with the result set) when the
 * job ends - caught up, its record cap, shutdown, or its time budget used
 * (back of the queue: the others' turn) - else 0. */
static int job_ends_at(fetcher *f, job *j, int64_t cursor)
{
    if (cursor >= j->started)
        set_result(j, FETCH_OK, 0, "%s", "");
    else if (j->t.max_records > 0 && j->res->stored >= j->t.max_records)
        set_result(j, FETCH_MORE, 0, "%s", "");
    else if (shutdown_requested())
        set_result(j, FETCH_STOPPED, 0, "stopped by shutdown");
    else if (ms_since(j->t0_ms) >= f->cfg->job_budget_s * 1000L)
        set_result(j, FETCH_YIELD, 0, "%s", "");
    else
        return 0;
    return 1;
}

/* After read p of w went too deep: how long the next slices should be,
 * and where the slice read again from w's start should end (*reread_end,
 * inside w; 0 when none).
 * Netskope promises no order; when the records came oldest first (as they
 * do), half the time they covered holds half of what one read can, and a
 * dense backlog's slice fits at once instead of after halving from
 * fetch.slice, one too-deep read of offset_max records at each step. The
 * re-read also keeps the empty stretch before its oldest record (a
 * backlog's start): that costs no request. In any other order the records
 * span about all of w: plain halving. 0 when nothing was read. */
static int64_t fit_slice(const pass *p, const window *w, int64_t *reread_end)
{
    *reread_end = 0;
    if (p->oldest < 0 || p->newest < p->oldest)
        return 0;
    int64_t half = (p->newest - p->oldest) / 2;
    if (p->oldest + half > w->start && p->oldest + half < w->end)
        *reread_end = p->oldest + half;    /* a server's stray times stay outside */
    return half > 0 ? half : 1;
}

/* Slices from the cursor up to the job's start time. */
static void fetch_window(fetcher *f, job *j)
{
    int64_t cursor = 0;
    int has_cursor = outbox_cursor(f->ob, j->s.id, &cursor);
    if (has_cursor < 0) {
        set_result(j, FETCH_FAILED, 0, "cannot read cursor: %s", sqlite3_errmsg(f->db));
        return;
    }
    if (has_cursor && cursor > j->started) {
        /* The clock is behind the cursor (window_next() would give an empty
         * window): nothing is due until it passes it again. */
        log_warn("tenant=%s event=clock_behind_cursor cursor=%lld now=%lld", j->who,
                 (long long)cursor, (long long)j->started);
        set_result(j, FETCH_OK, 0, "%s", "");
        return;
    }
    int64_t first_start = 0;
    if (!has_cursor && first_window_start(f, j, &first_start) < 0)
        return;
    int64_t from = -1;             /* where the next slice starts, inside the overlap */
    int64_t reread_end = 0;        /* fit_slice()'s end for the slice read again */
    for (int first = 1, shrunk = 0;;) {
        /* Only a job's first slice re-reads the overlap: the later ones go
         * on from a cursor this same job committed moments ago. */
        int slice_s = pacing_slice(PACING_STREAM_KEY(j->s.id), f->cfg->slice_s);
        window w = window_next(has_cursor, cursor, j->started, (int)(j->started - first_start),
                               first ? j->t.overlap_s : 0, slice_s);
        if (from >= 0)
            w.start = from;
        if (shrunk && w.end > w.start + slice_s)
            w.end = w.start + slice_s;  /* read smaller: the overlap too is cut up */
        if (reread_end > w.end)
            w.end = reread_end;         /* and the empty lead with it */
        reread_end = 0;
        j->slice_pages = 0;
        j->slice_s = slice_s;
        /* what the next job re-reads after this slice's commit: its overlap */
        j->digest_from = window_prune_before(w.end, j->t.overlap_s, f->cfg->prune_margin_s);
        if (j->res->run_id == 0) {
            j->res->run_id = outbox_run_start(f->ob, j->s.id, w.start);
            j->window_start = w.start;
        }
        pass read;
        int rc = fetch_slice(f, j, &w, &read);
        if (rc == 2) {                 /* too deep or too long: the same start, shorter */
            pacing_slice_shrink(PACING_STREAM_KEY(j->s.id), slice_s,
                                fit_slice(&read, &w, &reread_end));
            shrunk = 1;
            if (ms_since(j->t0_ms) >= f->cfg->job_budget_s * 1000L) {
                set_result(j, FETCH_YIELD, 0, "%s", "");
                return;
            }
            continue;
        }
        if (rc == 1)
            set_result(j, FETCH_STOPPED, 0, "stopped by shutdown");
        if (rc != 0)
            return;
        pacing_slice_use use = {.pages = j->slice_pages, .budget_pages = budget_pages(f, j),
                                .records = read.records, .records_max = f->cfg->offset_max};
        pacing_slice_done(PACING_STREAM_KEY(j->s.id), slice_s, &use, f->cfg->slice_s);
        progress(j, w.end);
        if (has_cursor && w.end < cursor) {
            from = w.end;               /* a piece of the overlap: the cursor stays */
            continue;
        }
        first = 0;
        from = -1;
        has_cursor = 1;
        cursor = w.end;
        if (job_ends_at(f, j, cursor))
            return;
    }
}

/* ---- the dataexport iterator (iterator.h) ---- */

/* Where the stream stands after page pg: its timestamp_hwm, else the
 * newest window time of its records, else (an empty page: caught up) the
 * job's start; prev when none of them is known. */
static int64_t iter_position(const job *j, const ns_page *pg, const pass *p, int64_t prev)
{
    if (pg->hwm >= 0)
        return pg->hwm;
    return p->newest >= 0 ? p->newest : pg->nrecs == 0 ? j->started : prev;
}

/* One request of the iterator and the commit of its page, which also
 * makes the iterator 'clean'. 0 done, 1 stopping, -1 failed (res says
 * why; the state left in the database makes the next try a resend). */
static int iter_page(fetcher *f, job *j, iterator *it, int64_t *pos, int *resent)
{
    char opbuf[32], err[256];
    ns_query q = {              /* the operation is the state's before the request */
        .base_url = j->t.url, .path = stream_export_path(j->s.type), .token = j->t.token,
        .op = iterator_op(it, opbuf, sizeof opbuf), .index = it->index_name,
    };
    if (iterator_begin(f->db, it, err, sizeof err) < 0) {
        set_result(j, FETCH_FAILED, 0, "%s", err);
        return -1;
    }
    outbox_batch_reset(&f->batch);
    j->slice_pages = 1;
    pass p = {.oldest = -1, .newest = -1};
    int rc = get_page(f, j, &q, &p);      /* its records are queued as they arrive */
    if (rc != 0)
        return rc;
    *resent = strcmp(q.op, "resend") == 0;
    const ns_page *pg = &f->page[f->cur];
    j->pages++;
    j->fetched += (int64_t)pg->nrecs;
    *pos = iter_position(j, pg, &p, *pos);
    if (commit(f, j, *pos) < 0)
        return -1;
    iterator_committed(it);
    return 0;
}

/* 1 when the job ends after a committed page (res set), else 0. An
 * empty resend says nothing: the page resent may be an old empty one. */
static int iter_done(fetcher *f, job *j, size_t n, int64_t hwm, int resent)
{
    if (!resent && (n == 0 || hwm >= j->started))
        set_result(j, FETCH_OK, 0, "%s", "");        /* caught up */
    else if (j->t.max_records > 0 && j->res->stored >= j->t.max_records)
        set_result(j, FETCH_MORE, 0, "%s", "");
    else if (shutdown_requested())
        set_result(j, FETCH_STOPPED, 0, "stopped by shutdown");
    else if (ms_since(j->t0_ms) >= f->cfg->job_budget_s * 1000L)
        set_result(j, FETCH_YIELD, 0, "%s", "");
    else
        return 0;
    return 1;
}

/* Pages of the iterator, each committed before the next is asked for,
 * until it is caught up (an empty page, or timestamp_hwm past the job's
 * start), max_records, the job budget or a long wait_time. A new
 * iterator starts at the cursor minus the overlap (a stream that read the
 * data API before), else the lookback. */
static void fetch_iterator(fetcher *f, job *j)
{
    iterator it;
    char err[256];
    int64_t cursor = 0;
    int has_cursor = outbox_cursor(f->ob, j->s.id, &cursor);
    if (has_cursor < 0) {
        set_result(j, FETCH_FAILED, 0, "cannot read cursor: %s", sqlite3_errmsg(f->db));
        return;
    }
    int64_t start = has_cursor ? cursor - j->t.overlap_s : 0;
    if (!has_cursor && first_window_start(f, j, &start) < 0)
        return;
    if (iterator_load(f->db, j->s.id, start, &it, err, sizeof err) < 0) {
        set_result(j, FETCH_FAILED, 0, "%s", err);
        return;
    }
    j->window_start = has_cursor ? cursor : it.start_epoch;
    j->res->run_id = outbox_run_start(f->ob, j->s.id, j->window_start);
    int64_t pos = has_cursor ? cursor : it.start_epoch;
    for (;;) {
        int resent = 0;
        int rc = iter_page(f, j, &it, &pos, &resent);
        if (rc == 1)
            set_result(j, FETCH_STOPPED, 0, "stopped by shutdown");
        if (rc != 0)
            return;
        const ns_page *pg = &f->page[f->cur];
        if (iter_done(f, j, pg->nrecs, pg->hwm, resent))
            return;
        if ((rc = honour_wait_time(f, j)) != 0) {
            if (rc == 1)
                set_result(j, FETCH_STOPPED, 0, "stopped by shutdown");
            return;
        }
    }
}

/* A sink outage fills the outbox; past the limit the tenant stops
 * fetching (its cursor stays, so nothing is lost) until uploads drain it. */
static int outbox_full(fetcher *f, job *j)
{
    int64_t pending = db_int(f->db, "SELECT coalesce(sum(bytes), 0) FROM outbox "
                             "WHERE tenant_id = ?1", j->t.id, 0);
    if (pending < f->cfg->outbox_limit_bytes)
        return 0;
    set_result(j, FETCH_PAUSED, db_now() + 60, "paused: %lld bytes wait for delivery "
               "(outbox.limit_bytes is %lld); fetching resumes when the sink accepts them",
               (long long)pending, (long long)f->cfg->outbox_limit_bytes);
    return 1;
}

/* Write the job's outcome to its run row and the tenant's schedule. */
static void record_outcome(fetcher *f, job *j)
{
    fetch_result *r = j->res;
    int64_t now = db_now();
    int ok = r->status == FETCH_OK || r->status == FETCH_MORE || r->status == FETCH_YIELD;
    if (r->run_id > 0)
        outbox_run_finish(f->ob, r->run_id,
                          ok ? "ok" : r->status == FETCH_STOPPED ? "abandoned" : "failed",
                          ok ? NULL : r->error);
    if (r->status == FETCH_STOPPED)
        return;
    if (ok) {
        int64_t next = r->status == FETCH_OK ? now + j->t.interval_s : now;
        outbox_stream_result(f->ob, j->s.id, 1, NULL, next, 0);
        return;
    }
    if (r->wait_until == 0) {   /* a failure: back off 30 s, doubling, up to the interval */
        int64_t k = j->s.fail_count < 10 ? j->s.fail_count : 10, backoff = 30LL << k;
        r->wait_until = now + (backoff < j->t.interval_s ? backoff : j->t.interval_s);
    }
    outbox_stream_result(f->ob, j->s.id, 0, r->error, r->wait_until, r->wait_until);
}

/* Load the stream and its tenant into j, with the labels its log lines
 * and object names use. 0, 1 when there is nothing to run, -1 failed. */
static int job_load(fetcher *f, job *j, int64_t stream_id)
{
    fetch_result *res = j->res;
    int found = stream_get(f->db, stream_id, &j->s, res->error, sizeof res->error);
    if (found == 0)
        found = tenant_get(f->db, j->s.tenant_id, &j->t, res->error, sizeof res->error);
    if (found != 0 || !j->t.enabled) {
        res->status = found < 0 ? FETCH_FAILED : FETCH_SKIPPED;
        return found < 0 ? -1 : 1;
    }
    const char *sn = stream_name(j->s.type);
    if (j->s.type == STREAM_ALERT) {      /* today's names and log lines, unchanged */
        snprintf(j->who, sizeof j->who, "%s", j->t.name);
        snprintf(j->prefix, sizeof j->prefix, "%s/alerts", j->t.name);
    } else {
        snprintf(j->who, sizeof j->who, "%s stream=%s", j->t.name, sn);
        snprintf(j->prefix, sizeof j->prefix, "%s/%s/%s", j->t.name, sn, sn);
    }
    return 0;
}

void fetcher_run(fetcher *f, int64_t stream_id, fetch_result *res)
{
    job j = {.res = res};
    memset(res, 0, sizeof *res);
    if (job_load(f, &j, stream_id) != 0)
        return;
    if (tenant_load_token(f->db, f->key, &j.t, res->error, sizeof res->error) < 0) {
        res->status = FETCH_FAILED;
        res->wait_until = db_now() + AUTH_BACKOFF_S;
        record_outcome(f, &j);
        return;
    }
    if (outbox_full(f, &j)) {
        record_outcome(f, &j);
        tenant_release(&j.t);
        return;
    }
    j.started = db_now();
    j.t0_ms = mono_ms();
    if (j.t.page_size > NS_LIMIT_SPEC_MAX)
        log_warn("tenant=%s event=page_size_above_spec page_size=%d spec_max=%d", j.who,
                 j.t.page_size, NS_LIMIT_SPEC_MAX);
    j.iterator = j.t.api_export;
    j.digest_from = INT64_MIN;          /* fetch_window() narrows it per slice */
    if (j.iterator)
        fetch_iterator(f, &j);
    else
        fetch_window(f, &j);
    commit_join(f, &j);                /* its last commit may still be running */
    tenant_release(&j.t);
    record_outcome(f, &j);
    ns_client_done(f->http[0]);    /* an idle worker holds no body against the budget */
    ns_client_done(f->http[1]);
    char q[LOG_ESCAPE_MAX];
    log_info("tenant=%s run=%lld event=fetch_done status=%s window_start=%lld stored=%lld "
             "duration_ms=%ld%s%s%s", j.who, (long long)res->run_id,
             fetch_status_name(res->status), (long long)j.window_start, (long long)res->stored,
             ms_since(j.t0_ms), res->error[0] ? " error=\"" : "", log_escape(q, sizeof q, res->error),
             res->error[0] ? "\"" : "");
}
