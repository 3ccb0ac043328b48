/* sink_gcs.c - the gs://bucket[/prefix] sink: one JSON API media upload per
 * object, ifGenerationMatch=0 so a retried upload never overwrites (412 =
 * an earlier try stored it). One CURL handle per sink, kept alive between
 * puts; credentials come from a gauth shared by every sink with the same
 * source (see gauth.h). The caller retries SINK_RETRY with back-off
 * (backoff_ms in util.h); only a 401 is retried here, once, with a new token. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "base/buf.h"
#include "base/json.h"
#include "google/gapi.h"
#include "google/gauth.h"
#include "base/log.h"
#include "sink/sink_impl.h"
#include "base/util.h"

#define DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define BUCKET_MAX 222
#define OBJECT_NAME_MAX 1024
#define CONTENT_TYPE "application/x-ndjson"

typedef struct gcs_sink {
    char bucket[BUCKET_MAX + 1];
    char prefix[OBJECT_NAME_MAX + 1];   /* no leading or trailing '/'; may be "" */
    char endpoint[CONFIG_PATH_MAX];     /* no trailing '/' */
    int gzip;
    gauth *auth;
    gapi api;
} gcs_sink;

/* ---- URL parts ---- */

static int lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* 1 when b holds "google" with any 'o' written as '0' (g00gle, go0gle...). */
static int has_google(const char *b, size_t n)
{
    static const char want[] = "google";
    for (size_t i = 0; i + 6 <= n; i++) {
        size_t k = 0;
        while (k < 6 && (b[i + k] == want[k] || (want[k] == 'o' && b[i + k] == '0')))
            k++;
        if (k == 6)
            return 1;
    }
    return 0;
}

static int is_ipv4(const char *b, size_t n)
{
    char tmp[16];
    struct in_addr a;
    if (n >= sizeof tmp)
        return 0;
    memcpy(tmp, b, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET, tmp, &a) == 1;
}

/* The length rules: 3-63 characters; with dots up to 222, each
 * dot-separated part 1-63. NULL when they hold, else the rule. */
static const char *bucket_length_rule(const char *b, size_t n)
{
    static const char *rule = "it must be 3-63 characters long (up to 222 with dots, each "
                              "dot-separated part at most 63)";
    size_t part = 0;
    int dots = 0;
    if (n < 3 || n > BUCKET_MAX)
        return rule;
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '.' && part == 0)
            return "it may not hold two dots in a row";
        part = b[i] == '.' ? 0 : part + 1;
        dots += b[i] == '.';
        if (part > 63)
            return rule;
    }
    return dots || n <= 63 ? NULL : rule;
}

/* GCS's bucket naming rules (cloud.google.com/storage/docs/naming-buckets).
 * NULL when b[0, n) follows them, else the rule it breaks. */
static const char *bucket_rule_broken(const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!lower_alnum(b[i]) && b[i] != '-' && b[i] != '_' && b[i] != '.')
            return "it may hold only lowercase letters, digits, '-', '_' and '.'";
    if (n && (!lower_alnum(b[0]) || !lower_alnum(b[n - 1])))
        return "it must start and end with a letter or digit";
    const char *len = bucket_length_rule(b, n);
    if (len)
        return len;
    if (is_ipv4(b, n))
        return "it may not be an IP address";
    if (n >= 4 && memcmp(b, "goog", 4) == 0)
        return "it may not begin with \"goog\"";
    if (has_google(b, n))
        return "it may not contain \"google\" or a close misspelling such as \"g00gle\"";
    return NULL;
}

/* Split "bucket[/prefix]" into its parts, checking both; the prefix is
 * normalized (single '/' between parts, none leading or trailing). */
static int parse_rest(const char *rest, gcs_sink *s, char *err, size_t errlen)
{
    size_t blen = strcspn(rest, "/");
    if (blen == 0)
        return seterr(err, errlen, "no bucket name; expected gs://bucket[/prefix]");
    const char *rule = bucket_rule_broken(rest, blen);
    if (rule)
        return seterr(err, errlen, "bucket name '%.*s' is not valid: %s (GCS bucket naming "
                    "rules)", (int)(blen > BUCKET_MAX ? BUCKET_MAX : blen), rest, rule);
    memcpy(s->bucket, rest, blen);
    s->bucket[blen] = '\0';
    if (sink_path_normalize(rest + blen, s->prefix, OBJECT_NAME_MAX - 100) < 0)
        return seterr(err, errlen, "the prefix may not contain '.' or '..' path components and "
                    "is at most %d bytes; expected gs://bucket[/prefix]", OBJECT_NAME_MAX - 100);
    if (sink_has_control(s->prefix))
        return seterr(err, errlen, "the prefix may not contain control characters");
    return 0;
}

static int gcs_check(const char *rest, char *err, size_t errlen)
{
    gcs_sink s;
    return parse_rest(rest, &s, err, errlen);
}

/* $STORAGE_EMULATOR_HOST (http:// added when it has no scheme), else the
 * configured endpoint, else Google's; http:// only for loopback hosts,
 * the emulator's too (a cleartext emulator elsewhere is refused). */
static int endpoint_resolve(gcs_sink *s, const nsc_config *cfg, int *loopback,
                            char *err, size_t errlen)
{
    const char *emu = getenv("STORAGE_EMULATOR_HOST");
    const char *ep = cfg && cfg->gcs_endpoint[0] ? cfg->gcs_endpoint : DEFAULT_ENDPOINT;
    *loopback = 0;
    if (emu && *emu)
        return gapi_endpoint(s->endpoint, sizeof s->endpoint, strstr(emu, "://") ? "" : "http://",
                             emu, "STORAGE_EMULATOR_HOST", loopback, err, errlen);
    return gapi_endpoint(s->endpoint, sizeof s->endpoint, "", ep, "GCS endpoint", loopback,
                         err, errlen);
}

/* ---- open, describe, close ---- */

static void gcs_close(void *state)
{
    gcs_sink *s = state;
    if (!s)
        return;
    gauth_release(s->auth);
    gapi_release(&s->api);
    free(s);
}

/* The emulator takes no credentials: no gauth then, and no key file read. */
static int auth_open(gcs_sink *s, const char *credentials, const nsc_config *cfg,
                     char *err, size_t errlen)
{
    const char *emu = getenv("STORAGE_EMULATOR_HOST");
    if (emu && *emu)
        return 0;
    s->auth = gauth_acquire(credentials, GAUTH_SCOPE_GCS, cfg, err, errlen);
    return s->auth ? 0 : -1;
}

static void *gcs_open(const char *rest, const sink_dest *d, const nsc_config *cfg,
                      char *err, size_t errlen)
{
    int loopback = 0;
    gcs_sink *s = calloc(1, sizeof *s);
    if (!s) {
        seterr(err, errlen, "gs://%s: out of memory", rest);
        return NULL;
    }
    s->gzip = d->gzip;      /* pinned with the batch, not read from today's config */
    if (parse_rest(rest, s, err, errlen) < 0 ||
        endpoint_resolve(s, cfg, &loopback, err, errlen) < 0 ||
        auth_open(s, d->credentials[0] ? d->credentials : NULL, cfg, err, errlen) < 0)
        goto fail_out;
    if (gapi_init(&s->api, cfg, loopback, 0) < 0) {
        seterr(err, errlen, "gs://%s: cannot start libcurl", rest);
        goto fail_out;
    }
    return s;
fail_out:
    gcs_close(s);
    return NULL;
}

/* The full object name: prefix "/" name [".gz"]. */
static int object_name(const gcs_sink *s, const char *name, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s%s%s", s->prefix, s->prefix[0] ? "/" : "", name,
                     s->gzip ? ".gz" : "");
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static void gcs_describe(const void *state, const char *name, char *out, size_t outlen)
{
    const gcs_sink *s = state;
    char obj[OBJECT_NAME_MAX * 2];
    if (object_name(s, name, obj, sizeof obj) < 0)
        snprintf(obj, sizeof obj, "%s", name);
    snprintf(out, outlen, "gs://%s/%s", s->bucket, obj);
}

/* ---- put ---- */

/* gzip (RFC 1952) of in[0, n); *out malloc'd. */
static int gzip_data(const void *in, size_t n, unsigned char **out, size_t *outlen)
{
    int rc = -1;
    z_stream z;
    memset(&z, 0, sizeof z);
    *out = NULL;
    if (n > UINT_MAX ||
        deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong cap = deflateBound(&z, (uLong)n);
    if (!(*out = malloc(cap)))
        goto out;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = *out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        goto out;
    *outlen = z.total_out;
    rc = 0;
out:
    deflateEnd(&z);
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

static char *upload_url(const gcs_sink *s, const char *obj)
{
    char *esc = curl_easy_escape(s->api.curl, obj, 0);
    buf url;
    buf_init(&url, 0);
    if (!esc || buf_printf(&url, "%s/upload/storage/v1/b/%s/o?uploadType=media"
                           "&ifGenerationMatch=0&name=%s", s->endpoint, s->bucket, esc) < 0)
        buf_release(&url);
    curl_free(esc);
    return url.data;
}

static sink_result transport_result(const gcs_sink *s, const char *obj, CURLcode cc,
                                    char *err, size_t errlen)
{
    int tls, permanent = gapi_transport_permanent(cc, &tls);
    seterr(err, errlen, "upload of gs://%s/%s failed: %s%s", s->bucket, obj,
         gapi_transport_error(&s->api, cc),
         tls ? " (check http.ca_bundle)" : permanent ? "" : " (will retry)");
    return permanent ? SINK_PERMANENT : SINK_RETRY;
}

static const char *auth_describe(const gcs_sink *s)
{
    return s->auth ? gauth_describe(s->auth) : "no credentials (STORAGE_EMULATOR_HOST)";
}

static sink_result status_result(const gcs_sink *s, const char *obj, long st,
                                 char *err, size_t errlen)
{
    char msg[320];
    if (st >= 200 && st < 300)
        return SINK_OK;
    if (st == 412)
        return SINK_EXISTS;
    gapi_reply_message(&s->api, msg, sizeof msg);
    if (st == 401)
        seterr(err, errlen, "credentials rejected by GCS (HTTP 401): %s", auth_describe(s));
    else if (st == 403)
        seterr(err, errlen, "service account lacks storage.objects.create on bucket '%s' "
             "(HTTP 403): %s; grant it Storage Object Creator (roles/storage.objectCreator) "
             "on gs://%s%s", s->bucket, auth_describe(s), s->bucket, msg);
    else if (st == 404)
        seterr(err, errlen, "bucket '%s' not found (HTTP 404) at %s: create it, or fix the "
             "tenant's --sink gs:// URL%s", s->bucket, s->endpoint, msg);
    else if (st == 408 || st == 429 || st >= 500)
        seterr(err, errlen, "GCS answered HTTP %ld for gs://%s/%s (will retry)%s", st,
             s->bucket, obj, msg);
    else
        seterr(err, errlen, "GCS refused gs://%s/%s (HTTP %ld)%s", s->bucket, obj, st, msg);
    return st == 408 || st == 429 || st >= 500 ? SINK_RETRY : SINK_PERMANENT;
}

/* base64 of the MD5 of data[0, len), as GCS writes md5Hash. */
static void md5_base64(const void *data, size_t len, char out[32])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1)
        n = 0;
    EVP_EncodeBlock((unsigned char *)out, md, (int)n);
}

/* After a 412, the object under the name counts as this batch only if it
 * holds the same bytes: its md5Hash is read (storage.objects.get) and
 * compared with what was sent. A name is never another batch's by
 * accident (names carry the database id), so where the account may not
 * read objects (Storage Object Creator alone: 403) the name is trusted. */
static sink_result existing_check(gcs_sink *s, const char *obj, const char *tok,
                                  const void *sent, size_t len, char *err, size_t errlen)
{
    char want[32], *esc = curl_easy_escape(s->api.curl, obj, 0), *got = NULL;
    buf url;
    long st = 0;
    sink_result r = SINK_RETRY;
    buf_init(&url, 0);
    if (!esc || buf_printf(&url, "%s/storage/v1/b/%s/o/%s?fields=md5Hash", s->endpoint,
                           s->bucket, esc) < 0) {
        seterr(err, errlen, "cannot build the URL of gs://%s/%s: out of memory", s->bucket, obj);
        goto out;
    }
    CURLcode cc = gapi_request(&s->api, url.data, tok, NULL, NULL, 0, &st);
    if (cc != CURLE_OK || st == 404 || st == 408 || st == 429 || st >= 500) {
        seterr(err, errlen, "gs://%s/%s exists (412) but could not be read back to compare "
               "(%s): will retry", s->bucket, obj, cc != CURLE_OK ? curl_easy_strerror(cc)
               : st == 404 ? "gone again" : "GCS busy");
        goto out;
    }
    if (st == 401 || st == 403) {
        r = SINK_EXISTS;                /* may not read: trusted by its unique name */
        goto out;
    }
    md5_base64(sent, len, want);
    got = st == 200 ? json_string(s->api.reply.data, s->api.reply.len, "md5Hash", NULL) : NULL;
    if (got && strcmp(got, want) == 0) {
        r = SINK_EXISTS;
        goto out;
    }
    r = SINK_PERMANENT;
    seterr(err, errlen, "gs://%s/%s exists with other content (md5 %s, this batch %s): "
           "another writer uses this name; the batch is not counted delivered; move that "
           "object away to deliver it", s->bucket, obj, got ? got : "unknown", want);
out:
    free(got);
    curl_free(esc);
    buf_release(&url);
    return r;
}

/* One attempt with a current token. *again is set after a 401 when a
 * retry with a fresh token is allowed. */
static sink_result put_try(gcs_sink *s, const char *url, const char *obj, const void *data,
                           size_t len, int *again, char *err, size_t errlen)
{
    char tok[GAUTH_TOKEN_MAX];
    long st = 0;
    sink_result r;
    int may_retry = *again;
    *again = 0;
    oauth_result ar = s->auth ? gauth_token(s->auth, tok, sizeof tok, err, errlen) : OAUTH_OK;
    if (!s->auth)
        tok[0] = '\0';
    if (ar != OAUTH_OK)
        return ar == OAUTH_RETRY ? SINK_RETRY : SINK_PERMANENT;
    CURLcode cc = gapi_request(&s->api, url, tok, CONTENT_TYPE, data, len, &st);
    if (cc != CURLE_OK) {
        r = transport_result(s, obj, cc, err, errlen);
    } else if (st == 401 && may_retry && s->auth) {
        gauth_invalidate(s->auth, tok);
        *again = 1;
        r = SINK_RETRY;
    } else {
        r = status_result(s, obj, st, err, errlen);
    }
    if (r == SINK_EXISTS)
        r = existing_check(s, obj, tok, data, len, err, errlen);
    OPENSSL_cleanse(tok, sizeof tok);
    return r;
}

static sink_result gcs_put(void *state, const char *name, const void *data, size_t len,
                           char *err, size_t errlen)
{
    gcs_sink *s = state;
    sink_result r = SINK_PERMANENT;
    char obj[OBJECT_NAME_MAX + 1];
    unsigned char *gz = NULL;
    char *url = NULL;
    int again = 1;
    if (!name[0] || strpbrk(name, "\r\n") || object_name(s, name, obj, sizeof obj) < 0) {
        seterr(err, errlen, "object name '%.200s' is not valid for gs://%s (1-%d bytes, no CR/LF)",
             name, s->bucket, OBJECT_NAME_MAX);
        goto out;
    }
    if (s->gzip && gzip_data(data, len, &gz, &len) < 0) {
        r = SINK_RETRY;
        seterr(err, errlen, "cannot gzip gs://%s/%s: out of memory", s->bucket, obj);
        goto out;
    }
    if (!(url = upload_url(s, obj))) {
        r = SINK_RETRY;
        seterr(err, errlen, "cannot build the upload URL for gs://%s/%s: out of memory", s->bucket, obj);
        goto out;
    }
    r = put_try(s, url, obj, gz ? gz : data, len, &again, err, errlen);
    if (again) {                        /* once, with a fresh token; a second 401 is final */
        again = 0;
        r = put_try(s, url, obj, gz ? gz : data, len, &again, err, errlen);
    }
out:
    free(url);
    free(gz);
    return r;
}

const sink_ops sink_gcs_ops = {
    .scheme = "gs",
    .check = gcs_check,
    .open = gcs_open,
    .put = gcs_put,
    .describe = gcs_describe,
    .close = gcs_close,
};
