/* test_gauth.c - JWTs checked by `openssl dgst -verify`, key-file errors,
 * JSON string decoding, URL rules, the back-off curve, the registry. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/buf.h"
#include "check.h"
#include "base/http_share.h"
#include "base/json.h"
#include "base/util.h"
#include "google/gauth.h"
#include "google/jwt.h"

static char dir[] = "/tmp/nsc_test_gauth_XXXXXX";
static char *pem;   /* the test's private key, PEM text */

static void path_in_dir(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
}

static void write_bytes(const char *path, const void *p, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, p, n) != (ssize_t)n)
        perror(path);
    if (fd >= 0)
        close(fd);
    chmod(path, mode);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = calloc(1, 1 << 16);
    size_t n = fread(s, 1, (1 << 16) - 1, f);
    s[n] = '\0';
    fclose(f);
    return s;
}

static int run(const char *fmt, const char *a, const char *b, const char *c)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b, c);
    return system(cmd);
}

/* Decode unpadded base64url; returns the length, out NUL-terminated. */
static size_t b64url_decode(const char *in, size_t n, unsigned char *out)
{
    char tmp[4096];
    size_t i;
    for (i = 0; i < n && i < sizeof tmp - 4; i++)
        tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    size_t pad = (4 - i % 4) % 4;
    for (size_t k = 0; k < pad; k++)
        tmp[i++] = '=';
    int len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)i);
    if (len < 0)
        return 0;
    out[len - pad] = '\0';
    return (size_t)len - pad;
}

/* JSON text of a service-account key with the PEM's newlines escaped. */
static void write_key_file(const char *name, const char *type, const char *email,
                           const char *key_pem, const char *token_uri, mode_t mode)
{
    char path[512];
    buf j;
    buf_init(&j, 0);
    buf_printf(&j, "{\n  \"type\": \"%s\",\n  \"project_id\": \"p\",\n", type);
    buf_append_str(&j, "  \"private_key_id\": \"abc123\",\n");
    if (key_pem) {
        buf_append_str(&j, "  \"private_key\": \"");
        for (const char *p = key_pem; *p; p++)
            buf_append_str(&j, *p == '\n' ? "\\n" : (char[]){*p, 0});
        buf_append_str(&j, "\",\n");
    }
    if (email)
        buf_printf(&j, "  \"client_email\": \"%s\",\n", email);
    if (token_uri)
        buf_printf(&j, "  \"token_uri\": \"%s\",\n", token_uri);
    buf_append_str(&j, "  \"universe_domain\": \"googleapis.com\"\n}\n");
    path_in_dir(path, sizeof path, name);
    write_bytes(path, j.data, j.len, mode);
    buf_release(&j);
}

static void setup_keys(void)
{
    char key[512], pub[512];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    path_in_dir(key, sizeof key, "key.pem");
    path_in_dir(pub, sizeof pub, "pub.pem");
    if (run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '%s' 2>/dev/null"
            " && openssl pkey -in '%s' -pubout -out '%s'", key, key, pub) != 0) {
        fprintf(stderr, "cannot generate a key pair with openssl\n");
        exit(1);
    }
    pem = read_all(key);
}

/* 1.x: a JWT decodes to the expected header/claims and verifies. */
static void test_jwt_verifies(void)
{
    char err[256] = "", *jwt = NULL, data[512], sig[512], pub[512];
    unsigned char part[4096];
    CHECK_INT(jwt_make(pem, "abc123", "svc@p.iam.gserviceaccount.com", GAUTH_SCOPE_GCS,
                             "https://oauth2.googleapis.com/token", 1700000000, &jwt,
                             err, sizeof err), 0);
    if (!jwt)
        return;
    CHECK(strpbrk(jwt, "+/= \n") == NULL);
    char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    CHECK(d1 && d2 && !strchr(d2 + 1, '.'));
    if (!d1 || !d2)
        goto out;
    b64url_decode(jwt, (size_t)(d1 - jwt), part);
    CHECK_STR((char *)part, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"abc123\"}");
    b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), part);
    CHECK_STR((char *)part, "{\"iss\":\"svc@p.iam.gserviceaccount.com\",\"scope\":"
              "\"https://www.googleapis.com/auth/devstorage.read_write\",\"aud\":"
              "\"https://oauth2.googleapis.com/token\",\"iat\":1700000000,\"exp\":1700003600}");

    /* 1.2: openssl accepts the signature over "header.claims". */
    path_in_dir(data, sizeof data, "data.txt");
    path_in_dir(sig, sizeof sig, "sig.bin");
    path_in_dir(pub, sizeof pub, "pub.pem");
    write_bytes(data, jwt, (size_t)(d2 - jwt), 0600);
    size_t slen = b64url_decode(d2 + 1, strlen(d2 + 1), part);
    CHECK_INT(slen, 256);
    write_bytes(sig, part, slen, 0600);
    CHECK_INT(run("openssl dgst -sha256 -verify '%s' -signature '%s' '%s' >/dev/null 2>&1",
                  pub, sig, data), 0);
    /* 1.3: and rejects it over other bytes (the check above is not vacuous). */
    write_bytes(data, jwt, (size_t)(d2 - jwt) - 1, 0600);
    CHECK(run("openssl dgst -sha256 -verify '%s' -signature '%s' '%s' >/dev/null 2>&1",
              pub, sig, data) != 0);
out:
    free(jwt);
}

/* 1.4-1.6: no kid when none is given; strings are JSON-escaped; bad PEM. */
static void test_jwt_details(void)
{
    char err[256] = "", *jwt = NULL;
    unsigned char part[4096];
    CHECK_INT(jwt_make(pem, NULL, "a\"b", "s\\c", "http://127.0.0.1:1/token", 5, &jwt,
                             err, sizeof err), 0);
    if (jwt) {
        char *d1 = strchr(jwt, '.'), *d2 = strchr(d1 + 1, '.');
        b64url_decode(jwt, (size_t)(d1 - jwt), part);
        CHECK_STR((char *)part, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
        b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), part);
        CHECK_HAS((char *)part, "\"iss\":\"a\\\"b\",\"scope\":\"s\\\\c\"");
        CHECK_HAS((char *)part, "\"iat\":5,\"exp\":3605}");
        free(jwt);
    }
    jwt = NULL;
    CHECK_INT(jwt_make("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                             "k", "i", "s", "a", 1, &jwt, err, sizeof err), -1);
    CHECK(jwt == NULL);
    CHECK_HAS(err, "not a valid PEM");
}

/* 2.x: base64url against RFC 4648 vectors, with - and _ and no padding. */
static void test_b64url(void)
{
    char out[64];
    CHECK_INT(jwt_b64url((const unsigned char *)"", 0, out), 0);
    CHECK_STR(out, "");
    jwt_b64url((const unsigned char *)"f", 1, out);
    CHECK_STR(out, "Zg");
    jwt_b64url((const unsigned char *)"fo", 2, out);
    CHECK_STR(out, "Zm8");
    jwt_b64url((const unsigned char *)"foobar", 6, out);
    CHECK_STR(out, "Zm9vYmFy");
    const unsigned char odd[] = {0xfb, 0xff, 0xbf};
    CHECK_INT(jwt_b64url(odd, 3, out), 4);
    CHECK_STR(out, "-_-_");
}

/* gauth_new() on a key file in the test directory; the error in err. */
static gauth *open_key(const char *name, char *err, size_t errlen)
{
    char path[512];
    path_in_dir(path, sizeof path, name);
    err[0] = '\0';
    return gauth_new(path, GAUTH_SCOPE_GCS, NULL, err, errlen);
}

/* 3.x: a good key file opens; each bad one names the file and the fault. */
static void test_key_files(void)
{
    char err[512], want[700];
    gauth *g;

    write_key_file("good.json", "service_account", "svc@p.iam.gserviceaccount.com", pem,
                   "http://127.0.0.1:9/token", 0600);
    g = open_key("good.json", err, sizeof err);
    CHECK(g != NULL);
    if (g) {
        CHECK_HAS(gauth_describe(g), "service account 'svc@p.iam.gserviceaccount.com'");
        CHECK_HAS(gauth_describe(g), "good.json");
        gauth_free(g);
    }

    write_key_file("ext.json", "external_account", "x@y", pem, NULL, 0600);
    CHECK(open_key("ext.json", err, sizeof err) == NULL);
    snprintf(want, sizeof want, "key file '%s/ext.json' has type 'external_account': only "
             "service_account keys are supported", dir);
    CHECK_STR(err, want);

    write_key_file("user.json", "authorized_user", NULL, NULL, NULL, 0600);
    CHECK(open_key("user.json", err, sizeof err) == NULL);
    CHECK_HAS(err, "has type 'authorized_user'");

    write_key_file("noemail.json", "service_account", NULL, pem, NULL, 0600);
    CHECK(open_key("noemail.json", err, sizeof err) == NULL);
    CHECK_HAS(err, "noemail.json' has no 'client_email'");

    write_key_file("nokey.json", "service_account", "x@y", NULL, NULL, 0600);
    CHECK(open_key("nokey.json", err, sizeof err) == NULL);
    CHECK_HAS(err, "nokey.json' has no 'private_key'");

    write_key_file("badpem.json", "service_account", "x@y",
                   "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
                   NULL, 0600);
    CHECK(open_key("badpem.json", err, sizeof err) == NULL);
    CHECK_HAS(err, "badpem.json': private_key is not a valid PEM RSA private key");

    CHECK(open_key("missing.json", err, sizeof err) == NULL);
    snprintf(want, sizeof want, "cannot read key file '%s/missing.json': No such file or "
             "directory", dir);
    CHECK_STR(err, want);

    char path[512];
    path_in_dir(path, sizeof path, "notjson.json");
    write_bytes(path, "type=service_account\n", 21, 0600);
    CHECK(open_key("notjson.json", err, sizeof err) == NULL);
    CHECK_HAS(err, "notjson.json' is not a JSON object");

    write_key_file("plainuri.json", "service_account", "x@y", pem,
                   "http://oauth.example.com/token", 0600);
    CHECK(open_key("plainuri.json", err, sizeof err) == NULL);
    CHECK_HAS(err, "token_uri 'http://oauth.example.com/token' must be https://");
}

/* 3.10: a key file readable by others opens, with a warning naming it. */
static void test_key_file_mode_warning(void)
{
    char err[256], log_path[512], *logged;
    write_key_file("open.json", "service_account", "x@y", pem, NULL, 0644);
    path_in_dir(log_path, sizeof log_path, "stderr.txt");
    fflush(stderr);
    int saved = dup(2), fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    gauth *g = open_key("open.json", err, sizeof err);
    dup2(saved, 2);
    close(fd);
    close(saved);
    CHECK(g != NULL);
    gauth_free(g);
    logged = read_all(log_path);
    CHECK_HAS(logged, "open.json' is readable by group or others");
    CHECK(!strstr(logged, "PRIVATE KEY"));
    free(logged);
}

/* 4.x: JSON strings come back decoded; anything odd gives NULL. */
static void test_json_string(void)
{
    const char *js = "{\"n\":1,\"a\":\"x\\n\\\"y\\/\\u00e9\\ud83d\\ude00\",\"o\":{\"k\":[1,{}],"
                     "\"message\":\"deep\"},\"lone\":\"\\ud800x\",\"nul\":\"a\\u0000\"}";
    char *s = json_string(js, strlen(js), "a", NULL);
    CHECK_STR(s, "x\n\"y/\xc3\xa9\xf0\x9f\x98\x80");
    free(s);
    s = json_string(js, strlen(js), "o", "message");
    CHECK_STR(s, "deep");
    free(s);
    CHECK(json_string(js, strlen(js), "n", NULL) == NULL);
    CHECK(json_string(js, strlen(js), "missing", NULL) == NULL);
    CHECK(json_string(js, strlen(js), "nul", NULL) == NULL);
    CHECK(json_string("{\"bad\":\"\\q\"}", 12, "bad", NULL) == NULL);
    CHECK(json_string(js, strlen(js), "lone", NULL) == NULL);
    CHECK(json_string("[\"a\"]", 5, "a", NULL) == NULL);
    CHECK(json_string("{\"a\":\"b\"", 8, "a", NULL) == NULL);
}

/* 5.x: http:// only to loopback hosts. */
static void test_url_check(void)
{
    char err[256];
    int lo = -1;
    CHECK_INT(http_url_check("https://storage.googleapis.com", &lo, err, sizeof err), 0);
    CHECK_INT(lo, 0);
    CHECK_INT(http_url_check("http://127.0.0.1:8080/token", &lo, err, sizeof err), 0);
    CHECK_INT(lo, 1);
    CHECK_INT(http_url_check("http://localhost", &lo, err, sizeof err), 0);
    CHECK_INT(http_url_check("http://[::1]:9/", &lo, err, sizeof err), 0);
    CHECK_INT(http_url_check("http://storage.example.com", &lo, err, sizeof err), -1);
    CHECK_HAS(err, "must be https://");
    CHECK_INT(http_url_check("ftp://127.0.0.1/", &lo, err, sizeof err), -1);
    CHECK_INT(http_url_check("not a url", &lo, err, sizeof err), -1);
    CHECK_HAS(err, "is not a valid URL");
}

/* 6.x: back-off ceiling 1 s, doubling, 60 s cap, full jitter. */
static void test_backoff(void)
{
    CHECK_INT(backoff_ms(0, 0), 0);
    CHECK_INT(backoff_ms(0, 1000), 1000);
    CHECK_INT(backoff_ms(0, 1001), 0);
    CHECK_INT(backoff_ms(1, 2000), 2000);
    CHECK_INT(backoff_ms(2, 4000), 4000);
    CHECK_INT(backoff_ms(5, 32000), 32000);
    CHECK_INT(backoff_ms(6, 60000), 60000);   /* 64 s capped at 60 s */
    CHECK_INT(backoff_ms(6, 60001), 0);
    int over = 0;
    for (int a = -3; a < 200; a++) {
        unsigned ceiling = a <= 0 ? 1000 : a >= 6 ? 60000 : 1000u << a;
        unsigned rnds[] = {0, 1, 999, 12345, 60000, 65535, UINT_MAX - 1, UINT_MAX};
        for (size_t i = 0; i < sizeof rnds / sizeof rnds[0]; i++)
            over += backoff_ms(a, rnds[i]) > ceiling;
    }
    CHECK_INT(over, 0);
    /* full jitter: values spread over the whole range */
    CHECK(backoff_ms(10, UINT_MAX) <= 60000);
    CHECK_INT(backoff_ms(10, 120002), 0);
}

/* 7.x: one gauth per source; the emulator has no credentials; an
 * unreachable metadata server is a transient error naming it. */
static void test_registry_and_sources(void)
{
    char err[512] = "", key[512], tok[GAUTH_TOKEN_MAX];
    path_in_dir(key, sizeof key, "good.json");
    gauth *a = gauth_acquire(key, GAUTH_SCOPE_GCS, NULL, err, sizeof err);
    gauth *b = gauth_acquire(key, GAUTH_SCOPE_GCS, NULL, err, sizeof err);
    gauth *m = gauth_acquire(NULL, GAUTH_SCOPE_GCS, NULL, err, sizeof err);
    CHECK(a != NULL && a == b);
    CHECK(m != NULL && m != a);
    if (m) {
        CHECK_HAS(gauth_describe(m), "metadata server '127.0.0.1:1'");
        CHECK_INT(gauth_token(m, tok, sizeof tok, err, sizeof err), OAUTH_RETRY);
        CHECK_STR(tok, "");
        CHECK_HAS(err, "http://127.0.0.1:1/computeMetadata/v1/instance/service-accounts/"
                  "default/token");
    }
    gauth_release(a);
    gauth_release(b);
    gauth_release(m);
    CHECK(gauth_acquire("/nonexistent/k.json", GAUTH_SCOPE_GCS, NULL, err, sizeof err) == NULL);

}

static void cleanup(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

int main(void)
{
    unsetenv("STORAGE_EMULATOR_HOST");
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);
    setup_keys();
    CHECK(pem != NULL && strstr(pem, "PRIVATE KEY"));
    if (pem) {
        test_jwt_verifies();
        test_jwt_details();
        test_key_files();
        test_key_file_mode_warning();
        test_registry_and_sources();
    }
    test_b64url();
    test_json_string();
    test_url_check();
    test_backoff();
    free(pem);
    cleanup();
    CHECK_DONE();
}
