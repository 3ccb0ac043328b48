/* test_sink_gcs.c - the gs:// backend: URL rules, names, and uploads to
 * tests/fake_gcs.py (started here on a free port) through a key file:
 * 200, 412, injected 503 and lost replies, a revoked token (401, one
 * refresh), 403, 404, gzip, and an unreachable endpoint. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/buf.h"
#include "check.h"
#include "base/config.h"
#include "google/gauth.h"
#include "sink/sink_impl.h"

#define EMAIL "up@p.iam.gserviceaccount.com"

static char dir[] = "/tmp/nsc_test_sink_gcs_XXXXXX";
static int port;
static pid_t fake_pid;
static nsc_config cfg;

/* ---- helpers ---- */

static void path_in_dir(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
}

static int read_text(const char *path, buf *b)
{
    char chunk[4096];
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(b, chunk, n);
    fclose(f);
    return 0;
}

/* Append s as the body of a JSON string (newlines and quotes escaped). */
static void append_json_body(buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            buf_append_str(b, "\\n");
        else if (*s == '"' || *s == '\\')
            buf_printf(b, "\\%c", *s);
        else
            buf_append_char(b, *s);
    }
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    buf_append(ud, p, size * n);
    return size * n;
}

/* POST (json != NULL) or GET an admin path of the fake; reply in out. */
static int admin(const char *path, const char *json, buf *out)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (json)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return cc == CURLE_OK && status == 200 ? 0 : -1;
}

static void admin_post(const char *path, const char *json)
{
    buf out;
    buf_init(&out, 0);
    if (admin(path, json, &out) < 0)
        fprintf(stderr, "admin %s failed: %s\n", path, out.data ? out.data : "");
    buf_release(&out);
}

/* A counter from /_admin/stats, or -1. */
static long stat_of(const char *key)
{
    buf out;
    char pat[64];
    long v = -1;
    buf_init(&out, 0);
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    if (admin("/_admin/stats", NULL, &out) == 0 && strstr(out.data, pat))
        v = strtol(strstr(out.data, pat) + strlen(pat), NULL, 10);
    buf_release(&out);
    return v;
}

/* ---- the fake and the account ---- */

static int start_fake(void)
{
    char port_file[512], parent[32];
    path_in_dir(port_file, sizeof port_file, "port");
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    fake_pid = fork();
    if (fake_pid == 0) {
        execlp("python3", "python3", "tests/fake_gcs.py", "--port", "0", "--port-file",
               port_file, "--bucket", "up-bucket", "--parent", parent, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && fake_pid > 0; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &port) == 1;
            fclose(f);
            if (ok)
                return 0;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void stop_fake(void)
{
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        waitpid(fake_pid, NULL, 0);
    }
}

/* Make a key pair, register its public half, write the key file. */
static int make_account(char *key_file, size_t key_file_len)
{
    char cmd[2048], priv[512], pub[512];
    buf pem, json;
    int rc = -1;
    path_in_dir(priv, sizeof priv, "k.pem");
    path_in_dir(pub, sizeof pub, "k.pub");
    path_in_dir(key_file, key_file_len, "key.json");
    snprintf(cmd, sizeof cmd, "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
             "-out '%s' 2>/dev/null && openssl pkey -in '%s' -pubout -out '%s'", priv, priv, pub);
    buf_init(&pem, 0);
    buf_init(&json, 0);
    if (system(cmd) != 0 || read_text(pub, &pem) < 0)
        goto out;
    buf_append_str(&json, "{\"email\":\"" EMAIL "\",\"key_id\":\"k1\",\"public_key_pem\":\"");
    append_json_body(&json, pem.data);
    buf_append_str(&json, "\"}");
    admin_post("/_admin/account", json.data);
    buf_reset(&pem);
    buf_reset(&json);
    if (read_text(priv, &pem) < 0)
        goto out;
    buf_printf(&json, "{\"type\":\"service_account\",\"client_email\":\"" EMAIL "\","
               "\"private_key_id\":\"k1\",\"token_uri\":\"http://127.0.0.1:%d/token\","
               "\"private_key\":\"", port);
    append_json_body(&json, pem.data);
    buf_append_str(&json, "\"}\n");
    int fd = open(key_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0 && write(fd, json.data, json.len) == (ssize_t)json.len)
        rc = 0;
    if (fd >= 0)
        close(fd);
out:
    buf_release(&pem);
    buf_release(&json);
    return rc;
}

/* ---- tests ---- */

static void bucket_bad(const char *rest, const char *want)
{
    char err[512] = "";
    CHECK_INT(sink_gcs_ops.check(rest, err, sizeof err), -1);
    CHECK_HAS(err, want);
}

/* 1.x: bucket and prefix rules. */
static void test_check(void)
{
    char err[512];
    CHECK_INT(sink_gcs_ops.check("my-bucket", err, sizeof err), 0);
    CHECK_INT(sink_gcs_ops.check("my.bucket_1/a/b", err, sizeof err), 0);
    CHECK_INT(sink_gcs_ops.check("my-bucket/a/b/", err, sizeof err), 0);
    CHECK_INT(sink_gcs_ops.check("bucket//a//b/", err, sizeof err), 0);   /* normalized */
    CHECK_INT(sink_gcs_ops.check("abc", err, sizeof err), 0);
    CHECK_INT(sink_gcs_ops.check("1.2.3.4.5", err, sizeof err), 0);      /* not an address */
    CHECK_INT(sink_gcs_ops.check("300.1.1.1", err, sizeof err), 0);
    CHECK_INT(sink_gcs_ops.check("my-goog", err, sizeof err), 0);        /* "goog" inside */
    CHECK_INT(sink_gcs_ops.check("go-ogle", err, sizeof err), 0);
    bucket_bad("ab", "bucket name 'ab' is not valid: it must be 3-63 characters long");
    bucket_bad("My-Bucket", "bucket name 'My-Bucket' is not valid: it may hold only lowercase "
                            "letters, digits, '-', '_' and '.' (GCS bucket naming rules)");
    bucket_bad("-bucket", "it must start and end with a letter or digit");
    bucket_bad("bucket_", "it must start and end with a letter or digit");
    bucket_bad("a..b", "it may not hold two dots in a row");
    bucket_bad("192.168.5.4", "it may not be an IP address");
    bucket_bad("goog-alerts", "it may not begin with \"goog\"");
    bucket_bad("my-google-bucket", "it may not contain \"google\"");
    bucket_bad("acme-g00gle", "close misspelling");
    bucket_bad("acmego0gle", "close misspelling");
    bucket_bad("/pre", "no bucket name");
    bucket_bad("bucket/a/../b", "may not contain '.' or '..'");
    bucket_bad("bucket/a\nb", "control characters");
    /* 63 without dots; 222 with dots, parts of at most 63 */
    char b[300];
    memset(b, 'a', 63);
    b[63] = '\0';
    CHECK_INT(sink_gcs_ops.check(b, err, sizeof err), 0);
    b[63] = 'a';
    b[64] = '\0';
    bucket_bad(b, "up to 222 with dots, each dot-separated part at most 63");
    for (int i = 0; i < 222; i++)
        b[i] = i % 50 == 49 ? '.' : 'a';
    b[222] = '\0';
    CHECK_INT(sink_gcs_ops.check(b, err, sizeof err), 0);
    b[222] = 'a';
    b[223] = '\0';
    bucket_bad(b, "3-63 characters long");
    memset(b, 'a', 64);
    memcpy(b + 64, ".abc", 5);
    bucket_bad(b, "each dot-separated part at most 63");
}

/* 2.x: describe, endpoint rules, put errors that need no server. */
/* Open the GCS backend on gs://rest as the uploader would, gzip from cfg. */
static void *open_gcs(const char *rest, const char *credentials, char *err, size_t errlen)
{
    sink_dest d = {.gzip = cfg.gcs_gzip};
    snprintf(d.url, sizeof d.url, "gs://%s", rest);
    snprintf(d.credentials, sizeof d.credentials, "%s", credentials ? credentials : "");
    return sink_gcs_ops.open(rest, &d, &cfg, err, errlen);
}

static void test_offline(void)
{
    char err[512], where[512];
    setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1", 1);
    /* the emulator takes no credentials: a key file is not even read */
    void *s = open_gcs("bkt/pre", "/nonexistent/key.json", err, sizeof err);
    CHECK(s != NULL);
    if (s) {
        sink_gcs_ops.describe(s, "acme/a.ndjson", where, sizeof where);
        CHECK_STR(where, "gs://bkt/pre/acme/a.ndjson");
        CHECK_INT(sink_gcs_ops.put(s, "acme/a.ndjson", "{}\n", 3, err, sizeof err), SINK_RETRY);
        CHECK_HAS(err, "upload of gs://bkt/pre/acme/a.ndjson failed");
        CHECK_INT(sink_gcs_ops.put(s, "a\nb", "{}\n", 3, err, sizeof err), SINK_PERMANENT);
        CHECK_HAS(err, "is not valid");
        sink_gcs_ops.close(s);
    }
    /* a cleartext emulator is for loopback only, like every endpoint */
    setenv("STORAGE_EMULATOR_HOST", "http://10.1.2.3:9199", 1);
    CHECK(open_gcs("bkt", NULL, err, sizeof err) == NULL);
    CHECK_HAS(err, "STORAGE_EMULATOR_HOST 'http://10.1.2.3:9199' must be https:// "
                   "(http:// only for loopback hosts)");
    setenv("STORAGE_EMULATOR_HOST", "storage.example.com:9199", 1);   /* http:// implied */
    CHECK(open_gcs("bkt", NULL, err, sizeof err) == NULL);
    CHECK_HAS(err, "STORAGE_EMULATOR_HOST 'http://storage.example.com:9199' must be https://");
    setenv("STORAGE_EMULATOR_HOST", "http://localhost:1", 1);
    s = open_gcs("bkt", NULL, err, sizeof err);
    CHECK(s != NULL);
    if (s)
        sink_gcs_ops.close(s);
    unsetenv("STORAGE_EMULATOR_HOST");
    snprintf(cfg.gcs_endpoint, sizeof cfg.gcs_endpoint, "http://storage.example.com");
    CHECK(open_gcs("bkt", NULL, err, sizeof err) == NULL);
    CHECK_HAS(err, "GCS endpoint 'http://storage.example.com' must be https://");
    snprintf(cfg.gcs_endpoint, sizeof cfg.gcs_endpoint, "https://storage.googleapis.com");
    CHECK(open_gcs("bkt", "/nonexistent/key.json", err, sizeof err) == NULL);
    CHECK_HAS(err, "cannot read key file '/nonexistent/key.json'");
}

static sink_result put_str(void *s, const char *name, const char *data, char *err, size_t errlen)
{
    err[0] = '\0';
    return sink_gcs_ops.put(s, name, data, strlen(data), err, errlen);
}

/* 3.x: uploads with a key file: stored once, never overwritten. */
static void test_uploads(void *s)
{
    char err[512];
    long tokens = stat_of("tokens_issued");
    CHECK_INT(put_str(s, "acme/a.ndjson", "{\"x\":1}\n", err, sizeof err), SINK_OK);
    CHECK_INT(put_str(s, "acme/a.ndjson", "{\"x\":1}\n", err, sizeof err), SINK_EXISTS);
    admin_post("/_admin/faults", "{\"fail_uploads\":1}");
    CHECK_INT(put_str(s, "acme/b.ndjson", "{}\n", err, sizeof err), SINK_RETRY);
    CHECK_HAS(err, "HTTP 503");
    CHECK_INT(put_str(s, "acme/b.ndjson", "{}\n", err, sizeof err), SINK_OK);
    admin_post("/_admin/faults", "{\"lost_replies\":1}");
    CHECK_INT(put_str(s, "acme/c.ndjson", "{}\n", err, sizeof err), SINK_RETRY);
    CHECK_INT(put_str(s, "acme/c.ndjson", "{}\n", err, sizeof err), SINK_EXISTS);
    CHECK_INT(stat_of("tokens_issued") - tokens, 1);
    CHECK_INT(stat_of("overwrites"), 0);

    /* 3.6: a revoked token: one 401, one refresh, stored. */
    admin_post("/_admin/revoke", "{}");
    long u401 = stat_of("uploads_401");
    CHECK_INT(put_str(s, "acme/d.ndjson", "{}\n", err, sizeof err), SINK_OK);
    CHECK_INT(stat_of("uploads_401") - u401, 1);
    CHECK_INT(stat_of("tokens_issued") - tokens, 2);

    /* 3.7: the fresh token is refused too: no third try, a permanent
     * failure that says why (it was SINK_RETRY with an empty error, every
     * few seconds, two token exchanges each time, forever). */
    admin_post("/_admin/faults", "{\"fail_uploads\":2,\"fail_status\":401}");
    long up = stat_of("upload_requests");
    err[0] = '\0';
    CHECK_INT(put_str(s, "acme/e.ndjson", "{}\n", err, sizeof err), SINK_PERMANENT);
    CHECK_HAS(err, "credentials rejected by GCS (HTTP 401)");
    CHECK_INT(stat_of("upload_requests") - up, 2);
    CHECK_INT(stat_of("tokens_issued") - tokens, 3);
    admin_post("/_admin/faults", "{\"fail_status\":503}");

    buf objs;
    buf_init(&objs, 0);
    CHECK_INT(admin("/_admin/objects?bucket=up-bucket", NULL, &objs), 0);
    CHECK_HAS(objs.data, "\"name\": \"pre/acme/a.ndjson\"");
    CHECK_HAS(objs.data, "\"content_type\": \"application/x-ndjson\"");
    CHECK_HAS(objs.data, "\"text\": \"{\\\"x\\\":1}\\n\"");
    buf_release(&objs);
}

/* 4.x: 403, 404, gzip names. */
static void test_refusals(const char *key_file)
{
    char err[512], where[512];
    admin_post("/_admin/bucket", "{\"name\":\"locked\",\"allow_email\":\"else@p\"}");
    void *s = open_gcs("locked", key_file, err, sizeof err);
    CHECK_INT(put_str(s, "x.ndjson", "{}\n", err, sizeof err), SINK_PERMANENT);
    CHECK_HAS(err, "lacks storage.objects.create on bucket 'locked' (HTTP 403)");
    sink_gcs_ops.close(s);
    s = open_gcs("missing-bucket", key_file, err, sizeof err);
    CHECK_INT(put_str(s, "x.ndjson", "{}\n", err, sizeof err), SINK_PERMANENT);
    CHECK_HAS(err, "bucket 'missing-bucket' not found (HTTP 404)");
    CHECK_HAS(err, "create it, or fix the tenant's --sink gs:// URL");
    sink_gcs_ops.close(s);

    cfg.gcs_gzip = 1;
    s = open_gcs("up-bucket/gz", key_file, err, sizeof err);
    sink_gcs_ops.describe(s, "acme/z.ndjson", where, sizeof where);
    CHECK_STR(where, "gs://up-bucket/gz/acme/z.ndjson.gz");
    CHECK_INT(put_str(s, "acme/z.ndjson", "{\"z\":1}\n", err, sizeof err), SINK_OK);
    buf objs;
    buf_init(&objs, 0);
    admin("/_admin/objects?bucket=up-bucket", NULL, &objs);
    CHECK_HAS(objs.data, "\"name\": \"gz/acme/z.ndjson.gz\"");
    CHECK_HAS(objs.data, "\"base64\": \"H4sI");   /* gzip magic 1f 8b 08 */
    buf_release(&objs);
    sink_gcs_ops.close(s);
    cfg.gcs_gzip = 0;
}

static void test_with_fake(void)
{
    char err[512], key_file[512];
    if (access("tests/fake_gcs.py", R_OK) != 0 || start_fake() < 0) {
        fprintf(stderr, "test_sink_gcs: tests/fake_gcs.py did not start; run from the "
                "repository root\n");
        CHECK(0);
        return;
    }
    snprintf(cfg.gcs_endpoint, sizeof cfg.gcs_endpoint, "http://127.0.0.1:%d", port);
    CHECK_INT(make_account(key_file, sizeof key_file), 0);
    void *s = open_gcs("up-bucket/pre/", key_file, err, sizeof err);
    CHECK(s != NULL);
    if (s) {
        test_uploads(s);
        sink_gcs_ops.close(s);
    }
    test_refusals(key_file);
    stop_fake();
}

int main(void)
{
    unsetenv("STORAGE_EMULATOR_HOST");
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&cfg, 0, sizeof cfg);
    cfg.connect_timeout_s = 5;
    cfg.total_timeout_s = 30;
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_check();
    test_offline();
    test_with_fake();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    curl_global_cleanup();
    CHECK_DONE();
}
