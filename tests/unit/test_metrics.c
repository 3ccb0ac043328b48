/* test_metrics.c - the HTTP side of daemon/metrics.h over loopback: the
 * states /healthz and /readyz report for a pool whose state the test sets
 * (starting, stopping, a scheduler that stopped ticking), the text of
 * /metrics from a real database file, label escaping, and what other
 * paths and methods get. */
#include "check.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/counters.h"
#include "base/util.h"
#include "daemon/db.h"
#include "daemon/metrics.h"

/* Set by the test, read by the server's thread: under a lock, as the
 * scheduler's pool is (a socket is no happens-before edge to TSan). */
static metrics_pool_view state;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;

static void set_state(metrics_pool_view v)
{
    pthread_mutex_lock(&state_lock);
    state = v;
    pthread_mutex_unlock(&state_lock);
}

static void pool(void *arg, metrics_pool_view *v)
{
    (void)arg;
    pthread_mutex_lock(&state_lock);
    *v = state;
    pthread_mutex_unlock(&state_lock);
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    buf_append(arg, p, size * n);
    return size * n;
}

/* The status of METHOD http://addr/path; its body in out. */
static long fetch(const metrics *m, const char *method, const char *path, buf *out)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", metrics_address(m), path);
    CURL *c = curl_easy_init();
    long code = 0;
    buf_reset(out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    buf_append_char(out, '\0');
    return code;
}

static void make_db(const char *path)
{
    char err[512];
    sqlite3 *db = db_open(path, 1, err, sizeof err);
    CHECK(db != NULL && db_migrate(db, path, err, sizeof err) == 0);
    /* Two tenants, one with a name that needs escaping in a label value. */
    CHECK_INT(sqlite3_exec(db,
        "INSERT INTO tenant (id, name, url, token, token_fp, interval_s, lookback_s, overlap_s,"
        " page_size, max_records, window, created_at, updated_at, fail_count) VALUES"
        " (1, 'acme', 'http://x', x'00', 'fp', 300, 3600, 120, 100, 0, 'insertion', 0, 0, 0),"
        " (2, 'we\"ird\\', 'http://x', x'00', 'fp', 60, 3600, 120, 100, 0, 'insertion', 0, 0, 2);"
        "INSERT INTO stream (id, tenant_id, name, created_at, fail_count) VALUES"
        " (1, 1, 'alert', 0, 0), (2, 2, 'alert', 0, 2), (3, 1, 'page', 0, 0);"
        "INSERT INTO cursor (stream_id, position, updated_at) VALUES (1, unixepoch() - 42, 0);"
        "INSERT INTO run (tenant_id, stream_id, started_at, status, window_start)"
        " VALUES (1, 1, 0, 'running', 0);"
        "UPDATE run SET fetched = fetched + 10, stored = stored + 7;"
        "UPDATE stream SET conflicts = 1 WHERE id = 1;", NULL, NULL, NULL), SQLITE_OK);
    db_close(db);
}

static void test_health_states(metrics *m, buf *b)
{
    set_state((metrics_pool_view){.starting = 2, .last_tick_ms = mono_ms()});
    CHECK_INT(fetch(m, "GET", "/readyz", b), 503);
    CHECK_STR(b->data, "starting: 2 threads have no connection yet\n");
    CHECK_INT(fetch(m, "GET", "/healthz", b), 200);
    set_state((metrics_pool_view){.last_tick_ms = mono_ms()});
    CHECK_INT(fetch(m, "GET", "/readyz", b), 200);
    CHECK_STR(b->data, "ready\n");
    set_state((metrics_pool_view){.stopping = 1, .last_tick_ms = mono_ms()});
    CHECK_INT(fetch(m, "GET", "/readyz", b), 503);
    CHECK_STR(b->data, "stopping\n");
    CHECK_INT(fetch(m, "GET", "/healthz", b), 200);
    set_state((metrics_pool_view){.last_tick_ms = mono_ms() - 45000});
    CHECK_INT(fetch(m, "GET", "/healthz", b), 503);
    CHECK_STR(b->data, "the scheduler has not ticked for 45 s\n");
    CHECK_INT(fetch(m, "GET", "/readyz", b), 503);
    set_state((metrics_pool_view){.last_tick_ms = mono_ms()});
}

static void test_text(metrics *m, buf *b)
{
    set_state((metrics_pool_view){.last_tick_ms = mono_ms(), .fetch_busy = 1, .fetch_idle = 3,
                                  .upload_idle = 2, .fetch_queued = 5});
    counters_request(1, REQ_OK);
    counters_request(1, REQ_OK);
    counters_request(2, REQ_5XX);
    counters_request(99, REQ_429);           /* a stream no longer in the database */
    int64_t t0 = mono_ms();
    CHECK_INT(fetch(m, "GET", "/metrics", b), 200);
    const char *t = b->data;
    CHECK_HAS(t, "# TYPE nscollect_records_fetched_total counter\n"
                 "nscollect_records_fetched_total{tenant=\"acme\",stream=\"alert\"} 10\n"
                 "nscollect_records_fetched_total{tenant=\"acme\",stream=\"page\"} 0\n"
                 "nscollect_records_fetched_total{tenant=\"we\\\"ird\\\\\",stream=\"alert\"} 0\n");
    CHECK_HAS(t, "nscollect_records_stored_total{tenant=\"acme\",stream=\"alert\"} 7\n");
    CHECK_HAS(t, "nscollect_records_duplicate_total{tenant=\"acme\",stream=\"alert\"} 2\n");
    CHECK_HAS(t, "nscollect_records_conflict_total{tenant=\"acme\",stream=\"alert\"} 1\n");
    CHECK_HAS(t, "nscollect_requests_total{tenant=\"acme\",stream=\"alert\",outcome=\"ok\"} 2\n");
    CHECK_HAS(t, "nscollect_requests_total{tenant=\"we\\\"ird\\\\\",stream=\"alert\","
                 "outcome=\"5xx\"} 1\n");
    CHECK(strstr(t, "outcome=\"429\"") == NULL);
    CHECK_HAS(t, "nscollect_cursor_lag_seconds{tenant=\"acme\",stream=\"alert\"} 4");
    CHECK(strstr(t, "nscollect_cursor_lag_seconds{tenant=\"acme\",stream=\"page\"}") == NULL);
    CHECK_HAS(t, "nscollect_stream_interval_seconds{tenant=\"we\\\"ird\\\\\",stream=\"alert\"} 60\n");
    CHECK_HAS(t, "nscollect_stream_failing{tenant=\"we\\\"ird\\\\\",stream=\"alert\"} 1\n");
    CHECK_HAS(t, "nscollect_stream_failing{tenant=\"acme\",stream=\"alert\"} 0\n");
    CHECK_HAS(t, "nscollect_workers{pool=\"fetch\",state=\"idle\"} 3\n");
    CHECK_HAS(t, "nscollect_queue_depth{queue=\"fetch\"} 5\n");
    CHECK_HAS(t, "nscollect_build_info{version=\"" NSCOLLECT_VERSION "\"} 1\n");
    CHECK_HAS(t, "nscollect_sqlite_commit_seconds_bucket{le=\"+Inf\"} ");
    /* Built at most once a second: a second scrape within it is the same
     * text, though a counter moved (checked when the machine is quick
     * enough to ask within the second). */
    char *first = strdup(t);
    counters_request(1, REQ_OK);
    CHECK_INT(fetch(m, "GET", "/metrics", b), 200);
    if (mono_ms() - t0 < METRICS_CACHE_MS - 100)
        CHECK_STR(b->data, first);
    free(first);
}

int main(void)
{
    char dir[] = "/tmp/nsc-metrics-XXXXXX", path[256], err[512] = "";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/m.db", dir);
    make_db(path);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    metrics_opts o = {.listen = "127.0.0.1:0", .db_path = path,
                      .outbox_limit_bytes = 1 << 30, .pool = pool};
    metrics *m = metrics_start(&o, err, sizeof err);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "%s\n", err);
        CHECK_DONE();
    }
    buf b;
    buf_init(&b, 1 << 24);
    test_health_states(m, &b);
    test_text(m, &b);
    CHECK_INT(fetch(m, "GET", "/nope", &b), 404);
    CHECK_INT(fetch(m, "POST", "/metrics", &b), 405);
    CHECK_INT(fetch(m, "DELETE", "/healthz", &b), 405);

    /* The same address twice: the second cannot bind, and says so. */
    o.listen = metrics_address(m);
    CHECK(metrics_start(&o, err, sizeof err) == NULL);
    CHECK_HAS(err, "metrics.listen: cannot listen on 127.0.0.1:");
    CHECK_HAS(err, "Address already in use");

    metrics_stop(m);
    buf_release(&b);
    counters_reset();
    curl_global_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    CHECK_DONE();
}
