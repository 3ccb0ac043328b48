/* upload.c - see upload.h. */
#include "daemon/upload.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/db.h"
#include "base/log.h"
#include "daemon/outbox.h"
#include "base/shutdown.h"
#include "sink/sink.h"
#include "daemon/tenant.h"
#include "base/util.h"

#define SINK_CACHE 16          /* destinations kept open per worker */
#define ONCE_ATTEMPTS 4        /* tries of one batch in a one-shot pass */
#define PERMANENT_RETRY_S 300  /* an operator problem: look again in 5 minutes */

struct upload_queue {
    pthread_mutex_t lock;
    int once;
    int64_t after;             /* highest id handed out in this sweep */
    int64_t busy[64];          /* batches being uploaded now: one per worker at most */
    int nbusy;
};

typedef struct open_sink {
    sink_dest dest;
    sink *s;
} open_sink;

struct uploader {
    const nsc_config *cfg;
    sqlite3 *db;
    outbox *ob;
    outbox_row row;
    open_sink sinks[SINK_CACHE];
    unsigned next_evict;
};

upload_queue *upload_queue_new(int once)
{
    upload_queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    q->once = once;
    return q;
}

void upload_queue_free(upload_queue *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static int queue_is_busy(const upload_queue *q, int64_t id)
{
    for (int i = 0; i < q->nbusy; i++)
        if (q->busy[i] == id)
            return 1;
    return 0;
}

/* The next batch id for this worker, or 0. Ids are handed out in order,
 * never one that another worker is uploading; a daemon wraps around to
 * pick up batches that became due again. */
static int64_t queue_take(upload_queue *q, outbox *ob)
{
    int64_t id = 0, from;
    int wrapped = 0, found;
    pthread_mutex_lock(&q->lock);
    from = q->after;
    for (;;) {
        found = outbox_next(ob, from, db_now(), q->once, &id);
        if (found == 1 && queue_is_busy(q, id)) {
            from = id;                             /* another worker has it: look further */
            continue;
        }
        if (found == 0 && !q->once && !wrapped && q->after > 0) {
            wrapped = 1;
            from = 0;
            continue;
        }
        break;
    }
    if (found == 1 && q->nbusy < (int)(sizeof q->busy / sizeof *q->busy)) {
        q->after = id;
        q->busy[q->nbusy++] = id;
    } else {
        id = 0;
    }
    pthread_mutex_unlock(&q->lock);
    return id;
}

/* The worker is done with batch id (delivered, failed or gone). */
static void queue_done(upload_queue *q, int64_t id)
{
    pthread_mutex_lock(&q->lock);
    for (int i = 0; i < q->nbusy; i++)
        if (q->busy[i] == id) {
            q->busy[i] = q->busy[--q->nbusy];
            break;
        }
    pthread_mutex_unlock(&q->lock);
}

uploader *uploader_new(const nsc_config *cfg, const char *db_path, char *err, size_t errlen)
{
    uploader *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->cfg = cfg;
    buf_init(&u->row.body, 0);
    u->db = db_open(db_path, 0, err, errlen);
    if (!u->db || !(u->ob = outbox_open(u->db, err, errlen))) {
        uploader_free(u);
        return NULL;
    }
    return u;
}

void uploader_free(uploader *u)
{
    if (!u)
        return;
    for (int i = 0; i < SINK_CACHE; i++)
        sink_free(u->sinks[i].s);
    outbox_free(u->ob);
    db_close(u->db);
    buf_release(&u->row.body);
    free(u);
}

long upload_backoff_ms(int attempt)
{
    return backoff_ms(attempt - 1, (unsigned)random());
}

static int dest_equal(const sink_dest *a, const sink_dest *b)
{
    return strcmp(a->url, b->url) == 0 && strcmp(a->credentials, b->credentials) == 0 &&
           a->gzip == b->gzip;
}

/* The open sink for destination d, opening it on first use. */
static sink *sink_for(uploader *u, const sink_dest *d, char *err, size_t errlen)
{
    for (int i = 0; i < SINK_CACHE; i++) {
        open_sink *o = &u->sinks[i];
        if (o->s && dest_equal(&o->dest, d))
            return o->s;
    }
    open_sink *o = &u->sinks[u->next_evict++ % SINK_CACHE];
    sink_free(o->s);
    o->s = sink_open(d, u->cfg, err, errlen);
    o->dest = *d;
    return o->s;
}

/* Where the loaded row goes: its pin, or (first attempt, or a pin that was
 * refused outright) the tenant's sink now, pinned before anything is sent.
 * -1 when the pin cannot be written: then nothing is sent. */
static int row_dest(uploader *u, const tenant *t, sink_dest *d)
{
    if (u->row.pinned) {
        *d = u->row.dest;
        return 0;
    }
    tenant_sink_dest(t, u->cfg, d);
    return outbox_pin(u->ob, u->row.id, d);
}

/* Say so when a batch goes to a pin that is no longer the tenant's sink:
 * the operator changed it, and this batch still goes where it first went. */
static void note_pin(uploader *u, const tenant *t, const sink_dest *pin)
{
    sink_dest now;
    tenant_sink_dest(t, u->cfg, &now);
    if (dest_equal(pin, &now))
        return;
    char esc[LOG_ESCAPE_MAX];
    log_info("tenant=%s batch=%lld event=pinned to=\"%s\" gzip=%d why=\"%s\"", t->name,
             (long long)u->row.id, log_escape(esc, sizeof esc, pin->url), pin->gzip,
             u->row.maybe_stored ? "an earlier attempt there may have stored it"
                                 : "its first attempt went there");
}

/* sink_progress's save and ambiguous, on the loaded row. */
static int progress_save(void *ctx, int64_t sent, int in_flight)
{
    uploader *u = ctx;
    u->row.sent_bytes = sent;
    u->row.in_flight = in_flight;
    return outbox_sent(u->ob, u->row.id, sent, in_flight);
}

static void progress_ambiguous(void *ctx)
{
    uploader *u = ctx;
    if (outbox_ambiguous(u->ob, u->row.id) < 0) {
        char esc[LOG_ESCAPE_MAX];
        log_error("batch=%lld event=count_failed error=\"%s\"", (long long)u->row.id,
                  log_escape(esc, sizeof esc, sqlite3_errmsg(u->db)));
    }
    log_warn("batch=%lld event=ambiguous_retry from_byte=%lld why=\"a request of this batch "
             "got no answer: sent again, its records may arrive twice\"", (long long)u->row.id,
             (long long)u->row.sent_bytes);
}

/* Put the loaded row; in once mode retry transient failures a little. */
static sink_result put_row(uploader *u, upload_queue *q, sink *s, char *err, size_t errlen)
{
    sink_result r;
    for (int attempt = 1;; attempt++) {
        sink_progress p = {u->row.sent_bytes, u->row.in_flight, progress_save,
                           progress_ambiguous, u};
        sink_track(s, &p);
        if (u->row.spool_path[0])
            r = sink_put_file(s, u->row.object_name, u->row.spool_path, err, errlen);
        else
            r = sink_put(s, u->row.object_name, u->row.body.data, u->row.body.len, err, errlen);
        if (r != SINK_RETRY || !q->once || attempt >= ONCE_ATTEMPTS)
            return r;
        if (shutdown_sleep_ms(upload_backoff_ms(attempt)))
            return r;
    }
}

static upload_status deliver(uploader *u, upload_queue *q, const tenant *t)
{
    char err[512] = "", where[1024];
    sink_dest dest;
    /* The batch's commit (and its cursor's) on disk before it leaves: else
     * a power loss could take them back after the delivery, and the next
     * run fetch and deliver its records again under another name. One
     * sync serves every batch committed before it: batch ids are
     * AUTOINCREMENT, in commit order (one writer at a time). */
    if (db_sync_through(u->db, "SELECT coalesce(max(id), 0) FROM outbox", u->row.id, err,
                        sizeof err) < 0) {
        char esc[LOG_ESCAPE_MAX];
        log_error("batch=%lld event=sync_failed error=\"%s\"", (long long)u->row.id,
                  log_escape(esc, sizeof esc, err));
        return UPLOAD_FAILED;
    }
    if (row_dest(u, t, &dest) < 0) {
        char esc[LOG_ESCAPE_MAX];
        log_error("batch=%lld event=pin_failed error=\"%s\"", (long long)u->row.id,
                  log_escape(esc, sizeof esc, sqlite3_errmsg(u->db)));
        return UPLOAD_FAILED;
    }
    if (u->row.pinned)
        note_pin(u, t, &dest);
    sink *s = sink_for(u, &dest, err, sizeof err);
    sink_result r = s ? put_row(u, q, s, err, sizeof err) : SINK_PERMANENT;
    if (r == SINK_OK || r == SINK_EXISTS) {
        sink_describe(s, u->row.object_name, where, sizeof where);
        if (outbox_delivered(u->ob, &u->row, where, r == SINK_EXISTS) < 0) {
            char esc[LOG_ESCAPE_MAX];
            log_error("batch=%lld event=deliver_record_failed error=\"%s\"",
                      (long long)u->row.id, log_escape(esc, sizeof esc, sqlite3_errmsg(u->db)));
            return UPLOAD_FAILED;
        }
        log_info("tenant=%s batch=%lld event=delivered records=%lld bytes=%lld to=%s%s", t->name,
                 (long long)u->row.id, (long long)u->row.records, (long long)u->row.bytes, where,
                 r == SINK_EXISTS ? " existed=1" : "");
        return UPLOAD_DONE;
    }
    if (shutdown_requested())
        return UPLOAD_IDLE;            /* cut short by SIGTERM: the batch simply stays */
    int attempt = (int)u->row.attempts + 1;
    long wait_ms = r == SINK_PERMANENT ? PERMANENT_RETRY_S * 1000L : upload_backoff_ms(attempt);
    /* A batch part-delivered (sink_progress) has records there already: its pin
     * stays as after an answer that never came. */
    int maybe_stored = r == SINK_RETRY || u->row.sent_bytes > 0 || u->row.in_flight;
    outbox_failed(u->ob, u->row.id, db_now() + (wait_ms + 999) / 1000, err, maybe_stored);
    char esc[LOG_ESCAPE_MAX];
    log_warn("tenant=%s batch=%lld event=upload_failed attempt=%d error=\"%s\"", t->name,
             (long long)u->row.id, attempt, log_escape(esc, sizeof esc, err));
    return UPLOAD_FAILED;
}

upload_status uploader_step(uploader *u, upload_queue *q)
{
    char err[512];
    tenant t;
    upload_status st = UPLOAD_IDLE;
    int64_t id = queue_take(q, u->ob);
    if (id == 0)
        return UPLOAD_IDLE;
    if (outbox_load(u->ob, id, &u->row) == 1 &&          /* else removed with its tenant */
        tenant_get(u->db, u->row.tenant_id, &t, err, sizeof err) == 0)
        st = deliver(u, q, &t);
    queue_done(q, id);
    return st;
}
