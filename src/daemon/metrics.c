/* metrics.c - see metrics.h. The text format is Prometheus' exposition
 * format 0.0.4: per family a HELP and a TYPE line, then its samples. */
#include "daemon/metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/counters.h"
#include "base/listen.h"
#include "base/log.h"
#include "base/util.h"

#define HEALTH_STALE_MS 30000      /* a scheduler tick is due every second */
#define CONN_MEMORY 16384          /* request line and headers of a scrape fit easily */
#define REPLY_MAX ((size_t)1 << 30)

struct metrics {
    struct MHD_Daemon *d;
    int fd;
    sqlite3 *db;                   /* read-only; used by the MHD thread only */
    metrics_opts o;
    char db_path[4096];
    struct MHD_Response *cached;   /* the last /metrics reply, shared until stale */
    int64_t cached_ms;
    double process_start;
    char bound[80];                /* the address bound, port 0 resolved */
};

/* ---- The families ------------------------------------------------------- */

/* Per tenant stream, in the order of the query's columns from 3 on. */
enum fam {
    F_FETCHED, F_STORED, F_DUPLICATE, F_CONFLICT, F_DELIVERED, F_DELIVERED_BYTES,
    F_AMBIGUOUS, F_REQUESTS, F_LAG, F_INTERVAL, F_PENDING, F_PENDING_BYTES, F_LAST_OK, F_FAILING,
    F_ENABLED, NFAM
};

static const struct family {
    const char *name, *type, *help;
} families[NFAM] = {
    {"nscollect_records_fetched_total", "counter",
     "Records read from Netskope replies, duplicates included."},
    {"nscollect_records_stored_total", "counter", "New records committed to the outbox."},
    {"nscollect_records_duplicate_total", "counter",
     "Records dropped because the same record was already stored (re-read overlap, resend)."},
    {"nscollect_records_conflict_total", "counter",
     "Records dropped that share an _id with a stored record but not its bytes."},
    {"nscollect_records_delivered_total", "counter", "Records the sink accepted."},
    {"nscollect_delivered_bytes_total", "counter", "Bytes of NDJSON the sink accepted."},
    {"nscollect_ambiguous_retries_total", "counter",
     "SecOps requests sent again after no answer: their records may be delivered twice."},
    {"nscollect_requests_total", "counter",
     "Requests to Netskope by outcome, since this process started."},
    {"nscollect_cursor_lag_seconds", "gauge", "Seconds between now and the stream's cursor."},
    {"nscollect_stream_interval_seconds", "gauge", "The tenant's collection interval."},
    {"nscollect_pending_batches", "gauge", "Batches in the outbox not yet delivered."},
    {"nscollect_pending_bytes", "gauge", "Bytes in the outbox not yet delivered."},
    {"nscollect_last_success_timestamp_seconds", "gauge",
     "Unix time of the stream's last successful fetch."},
    {"nscollect_stream_failing", "gauge",
     "1 while the stream's fetch or a delivery of its batches is failing."},
    {"nscollect_stream_enabled", "gauge", "1 when the tenant is enabled and has not moved."},
};

static const char stream_sql[] =
    "SELECT t.name, s.name, s.id, t.enabled AND t.moved_at IS NULL, t.interval_s, "
    "       c.position, s.last_ok_at, s.fail_count, s.fetched_total, s.stored_total, "
    "       s.conflicts, s.delivered_records_total, s.delivered_bytes_total, "
    "       coalesce(o.n, 0), coalesce(o.bytes, 0), coalesce(o.failing, 0), "
    "       s.ambiguous_retries "
    "  FROM stream s JOIN tenant t ON t.id = s.tenant_id "
    "  LEFT JOIN cursor c ON c.stream_id = s.id "
    "  LEFT JOIN (SELECT stream_id, count(*) AS n, sum(bytes) AS bytes, "
    "                    max(attempts > 0 AND last_error IS NOT NULL) AS failing "
    "               FROM outbox GROUP BY stream_id) o ON o.stream_id = s.id "
    " ORDER BY t.name, s.name";

/* Label values: backslash, double quote and newline escaped. */
static void put_label_value(buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_append_char(b, '\\');
        if (*v == '\n') {
            buf_append_str(b, "\\n");
            continue;
        }
        buf_append_char(b, *v);
    }
}

static void put_header(buf *b, enum fam f)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
               families[f].name, families[f].type);
}

typedef struct req_row {
    int64_t stream_id;
    uint64_t counts[REQ_OUTCOMES];
} req_row;

typedef struct req_list {
    req_row *rows;
    size_t n, cap;
} req_list;

static void collect_request(void *arg, int64_t stream_id, const uint64_t *counts)
{
    req_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        req_row *r = realloc(l->rows, cap * sizeof *r);
        if (!r)
            return;
        l->rows = r;
        l->cap = cap;
    }
    l->rows[l->n].stream_id = stream_id;
    memcpy(l->rows[l->n].counts, counts, sizeof l->rows[l->n].counts);
    l->n++;
}

static int by_stream(const void *a, const void *b)
{
    int64_t x = ((const req_row *)a)->stream_id, y = ((const req_row *)b)->stream_id;
    return (x > y) - (x < y);
}

static const req_row *requests_of(const req_list *l, int64_t stream_id)
{
    req_row key = {.stream_id = stream_id};
    return l->n ? bsearch(&key, l->rows, l->n, sizeof *l->rows, by_stream) : NULL;
}

/* One stream's samples, each into its family's buffer. */
static void put_stream(buf fam[NFAM], sqlite3_stmt *st, const req_list *reqs, int64_t now)
{
    char labels[600];
    buf lb;
    buf_init(&lb, sizeof labels);
    buf_append_str(&lb, "tenant=\"");
    put_label_value(&lb, (const char *)sqlite3_column_text(st, 0));
    buf_append_str(&lb, "\",stream=\"");
    put_label_value(&lb, (const char *)sqlite3_column_text(st, 1));
    buf_append_char(&lb, '"');
    snprintf(labels, sizeof labels, "%.*s", (int)lb.len, lb.data);
    buf_release(&lb);

    int64_t fetched = sqlite3_column_int64(st, 8), stored = sqlite3_column_int64(st, 9);
    int64_t conflicts = sqlite3_column_int64(st, 10);
    int64_t dup = fetched - stored - conflicts;
    int enabled = sqlite3_column_int(st, 3);
    int64_t v[NFAM] = {
        [F_FETCHED] = fetched, [F_STORED] = stored, [F_DUPLICATE] = dup > 0 ? dup : 0,
        [F_CONFLICT] = conflicts, [F_DELIVERED] = sqlite3_column_int64(st, 11),
        [F_DELIVERED_BYTES] = sqlite3_column_int64(st, 12),
        [F_AMBIGUOUS] = sqlite3_column_int64(st, 16),
        [F_INTERVAL] = sqlite3_column_int64(st, 4),
        [F_PENDING] = sqlite3_column_int64(st, 13), [F_PENDING_BYTES] = sqlite3_column_int64(st, 14),
        [F_FAILING] = enabled && (sqlite3_column_int64(st, 7) > 0 || sqlite3_column_int(st, 15)),
        [F_ENABLED] = enabled,
    };
    for (int f = 0; f < NFAM; f++) {
        if (f == F_REQUESTS)
            continue;
        if (f == F_LAG) {
            if (sqlite3_column_type(st, 5) == SQLITE_NULL)
                continue;                          /* no cursor yet: no lag to speak of */
            v[f] = now - sqlite3_column_int64(st, 5);
        } else if (f == F_LAST_OK) {
            if (sqlite3_column_type(st, 6) == SQLITE_NULL)
                continue;
            v[f] = sqlite3_column_int64(st, 6);
        }
        buf_printf(&fam[f], "%s{%s} %lld\n", families[f].name, labels, (long long)v[f]);
    }
    const req_row *r = requests_of(reqs, sqlite3_column_int64(st, 2));
    for (int o = 0; r && o < REQ_OUTCOMES; o++)
        if (r->counts[o])
            buf_printf(&fam[F_REQUESTS], "%s{%s,outcome=\"%s\"} %llu\n",
                       families[F_REQUESTS].name, labels, req_outcome_name((req_outcome)o),
                       (unsigned long long)r->counts[o]);
}

/* The per tenant stream families; the batches pending in all into *upload_queued. */
static int put_streams(metrics *m, buf *out, int64_t *upload_queued, char *err, size_t errlen)
{
    req_list reqs = {0};
    counters_requests_each(collect_request, &reqs);
    if (reqs.n)
        qsort(reqs.rows, reqs.n, sizeof *reqs.rows, by_stream);
    buf fam[NFAM];
    for (int f = 0; f < NFAM; f++)
        buf_init(&fam[f], REPLY_MAX);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(m->db, stream_sql, -1, &st, NULL);
    int64_t now = time(NULL);
    *upload_queued = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        put_stream(fam, st, &reqs, now);
        *upload_queued += sqlite3_column_int64(st, 13);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE)
        snprintf(err, errlen, "cannot read the database: %s", sqlite3_errmsg(m->db));
    sqlite3_finalize(st);                          /* ends the read transaction */
    for (int f = 0; f < NFAM; f++) {
        put_header(out, (enum fam)f);
        buf_append(out, fam[f].data, fam[f].len);
        buf_release(&fam[f]);
    }
    free(reqs.rows);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void put_gauge(buf *b, const char *name, const char *help, const char *labels, double v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s%s%s%s %.17g\n", name, help, name, name,
               labels ? "{" : "", labels ? labels : "", labels ? "}" : "", v);
}

static void put_commit_histogram(buf *b)
{
    uint64_t cum[COMMIT_BUCKETS], count;
    double sum;
    counters_commit_read(cum, &count, &sum);
    const char *n = "nscollect_sqlite_commit_seconds";
    buf_printf(b, "# HELP %s Time a COMMIT of the database took, fsync included.\n"
                  "# TYPE %s histogram\n", n, n);
    for (int i = 0; i < COMMIT_BUCKETS; i++)
        buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", n, commit_bucket_le[i],
                   (unsigned long long)cum[i]);
    buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", n,
               (unsigned long long)count, n, sum, n, (unsigned long long)count);
}

static void put_process(metrics *m, buf *b, const metrics_pool_view *pv, int64_t upload_queued)
{
    put_gauge(b, "nscollect_build_info", "Always 1; the version is a label.",
              "version=\"" NSCOLLECT_VERSION "\"", 1);
    put_gauge(b, "nscollect_ready", "1 once every thread has its connection, 0 while "
              "starting or stopping.", NULL, pv->starting == 0 && !pv->stopping);
    put_gauge(b, "nscollect_outbox_limit_bytes", "outbox.limit_bytes: undelivered bytes a "
              "tenant may hold before its fetching pauses.", NULL,
              (double)m->o.outbox_limit_bytes);
    buf_printf(b, "# HELP nscollect_workers Worker threads by pool and state.\n"
                  "# TYPE nscollect_workers gauge\n"
                  "nscollect_workers{pool=\"fetch\",state=\"busy\"} %d\n"
                  "nscollect_workers{pool=\"fetch\",state=\"idle\"} %d\n"
                  "nscollect_workers{pool=\"upload\",state=\"busy\"} %d\n"
                  "nscollect_workers{pool=\"upload\",state=\"idle\"} %d\n",
               pv->fetch_busy, pv->fetch_idle, pv->upload_busy, pv->upload_idle);
    buf_printf(b, "# HELP nscollect_queue_depth Work waiting: fetch jobs for a worker, "
                  "batches for delivery.\n# TYPE nscollect_queue_depth gauge\n"
                  "nscollect_queue_depth{queue=\"fetch\"} %d\n"
                  "nscollect_queue_depth{queue=\"upload\"} %lld\n",
               pv->fetch_queued, (long long)upload_queued);
    buf_printf(b, "# HELP nscollect_gcs_token_refreshes_total Google OAuth2 access tokens "
                  "obtained (signed JWT exchange or metadata server).\n"
                  "# TYPE nscollect_gcs_token_refreshes_total counter\n"
                  "nscollect_gcs_token_refreshes_total %llu\n",
               (unsigned long long)counters_token_refreshes());
    put_commit_histogram(b);
    put_gauge(b, "process_start_time_seconds", "Start time of the process since unix epoch "
              "in seconds.", NULL, m->process_start);
}

/* The whole /metrics body, or NULL with err set. */
static char *render(metrics *m, size_t *len, char *err, size_t errlen)
{
    int64_t t0 = mono_us(), upload_queued = 0;
    metrics_pool_view pv = {0};
    m->o.pool(m->o.pool_arg, &pv);
    buf b;
    buf_init(&b, REPLY_MAX);
    if (put_streams(m, &b, &upload_queued, err, errlen) < 0) {
        buf_release(&b);
        return NULL;
    }
    put_process(m, &b, &pv, upload_queued);
    put_gauge(&b, "nscollect_scrape_duration_seconds", "How long building this reply took.",
              NULL, (double)(mono_us() - t0) / 1e6);
    return buf_detach(&b, len);
}

/* ---- HTTP --------------------------------------------------------------- */

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result serve_metrics(metrics *m, struct MHD_Connection *c)
{
    int64_t now = mono_ms();
    if (!m->cached || now - m->cached_ms >= METRICS_CACHE_MS) {
        char err[512];
        size_t len = 0;
        char *body = render(m, &len, err, sizeof err);
        if (!body) {
            log_warn("event=metrics_failed error=\"%s\"", err);
            return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot read the database\n");
        }
        struct MHD_Response *r = MHD_create_response_from_buffer(len, body,
                                                                 MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8");
        if (m->cached)
            MHD_destroy_response(m->cached);   /* freed once its last client has it */
        m->cached = r;
        m->cached_ms = now;
    }
    return MHD_queue_response(c, MHD_HTTP_OK, m->cached);
}

static enum MHD_Result serve_health(metrics *m, struct MHD_Connection *c, int ready_check)
{
    metrics_pool_view pv = {0};
    m->o.pool(m->o.pool_arg, &pv);
    char text[160];
    int64_t silent_ms = mono_ms() - pv.last_tick_ms;
    if (pv.last_tick_ms && silent_ms > HEALTH_STALE_MS) {
        snprintf(text, sizeof text, "the scheduler has not ticked for %lld s\n",
                 (long long)(silent_ms / 1000));
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
    }
    if (ready_check && pv.stopping)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping\n");
    if (ready_check && pv.starting) {
        snprintf(text, sizeof text, "starting: %d threads have no connection yet\n", pv.starting);
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
    }
    return reply_text(c, MHD_HTTP_OK, ready_check ? "ready\n" : "ok\n");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    metrics *m = cls;
    (void)version;
    (void)upload_data;
    (void)req_cls;
    if (*upload_data_size) {
        *upload_data_size = 0;     /* a body nobody asked for: read and dropped */
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(m, c);
    if (strcmp(url, "/healthz") == 0)
        return serve_health(m, c, 0);
    if (strcmp(url, "/readyz") == 0)
        return serve_health(m, c, 1);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n");
}

/* Bound here rather than by libmicrohttpd, so that the error says why. */
static int bind_listener(const char *text, char *bound, size_t boundlen, char *err,
                         size_t errlen)
{
    listen_addr la;
    char why[256];
    if (listen_parse(text, &la, why, sizeof why) < 0) {
        snprintf(err, errlen, "metrics.listen: %s", why);
        return -1;
    }
    int fd = socket(la.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&la.ss, la.len) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "metrics.listen: cannot listen on %s: %s", text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    listen_format((struct sockaddr *)&ss, bound, boundlen);
    if (la.any)
        log_warn("event=metrics_public listen=%s note=\"metrics.listen is every interface: "
                 "tenant names are visible to whoever reaches this port\"", bound);
    return fd;
}

metrics *metrics_start(const metrics_opts *o, char *err, size_t errlen)
{
    metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "metrics: out of memory");
        return NULL;
    }
    m->fd = -1;
    m->o = *o;
    m->process_start = (double)time(NULL);
    snprintf(m->db_path, sizeof m->db_path, "%s", o->db_path);
    m->o.db_path = m->db_path;
    if ((m->fd = bind_listener(o->listen, m->bound, sizeof m->bound, err, errlen)) < 0)
        goto fail;
    if (sqlite3_open_v2(m->db_path, &m->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "metrics: cannot open %s read-only: %s", m->db_path,
                 sqlite3_errmsg(m->db));
        goto fail;
    }
    sqlite3_busy_timeout(m->db, 1000);
    m->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, on_request, m,
                            MHD_OPTION_LISTEN_SOCKET, m->fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONN,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_S,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
                            MHD_OPTION_END);
    if (!m->d) {
        snprintf(err, errlen, "metrics.listen: cannot start the HTTP server on %s", m->bound);
        goto fail;
    }
    log_info("event=metrics_listen listen=%s paths=/metrics,/healthz,/readyz", m->bound);
    return m;
fail:
    if (m->fd >= 0)                /* not handed to a running server, which would close it */
        close(m->fd);
    sqlite3_close(m->db);
    free(m);
    return NULL;
}

const char *metrics_address(const metrics *m)
{
    return m->bound;
}

void metrics_stop(metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);         /* joins its thread and closes the listening socket */
    if (m->cached)
        MHD_destroy_response(m->cached);
    sqlite3_close(m->db);
    free(m);
}
