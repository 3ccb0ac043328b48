/* sink_secops.c - secops://REGION/PROJECT/CUSTOMER_ID[?log_type=T&STREAM=T...]:
 * records straight into Google SecOps with the Chronicle API's logs.import
 *
 *   POST {endpoint}/v1/projects/P/locations/REGION/instances/CUSTOMER_ID
 *        /logTypes/T/logs:import
 *   {"inlineSource":{"logs":[{"data":"<base64 of the record>",
 *     "logEntryTime":"<the record's timestamp>","collectionTime":"<now>"}]}}
 *
 * The endpoint is https://chronicle.REGION.rep.googleapis.com unless
 * secops.endpoint says otherwise; the token has the cloud-platform scope.
 *
 * A batch (one NDJSON body) goes as as many requests as secops.max_entries
 * and secops.max_request_bytes need, in order, each starting at a record.
 * The API has no create-if-absent, so what was accepted is remembered by
 * the caller (sink_progress): before each request its start is saved as
 * in flight, and an attempt resumes after the last accepted request. A
 * request whose answer never came although its whole body went (a reset,
 * a timeout, a 500/502/504) may have been accepted: it is sent again and
 * counted as an ambiguous retry - the one way this sink can double a
 * record. 429 and 503 are Google saying "not now" before doing anything:
 * retried, not counted; 4xx other than those are refusals that keep the
 * batch (SINK_PERMANENT) with err naming what to grant or fix.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/buf.h"
#include "base/util.h"
#include "google/gapi.h"
#include "google/gauth.h"
#include "sink/sink_impl.h"

#define LOG_TYPE_MAX 64
#define PROJECT_MAX 64
#define CUSTOMER_ID_LEN 36
#define DEFAULT_ALERT_LOG_TYPE "NETSKOPE_ALERT"
#define URL_FORM "secops://REGION/PROJECT/CUSTOMER_ID[?log_type=TYPE&STREAM=TYPE]"
#define REQUEST_HEAD "{\"inlineSource\":{\"logs\":["
#define REQUEST_TAIL "]}}"

/* Where logs.import is served (its reference's location list, 2026-12). */
static const char *const regions[] = {
    "us", "eu", "africa-south1", "asia-northeast1", "asia-south1", "asia-southeast1",
    "asia-southeast2", "australia-southeast1", "europe-central2", "europe-west12",
    "europe-west2", "europe-west3", "europe-west6", "europe-west9", "me-central1",
    "me-central2", "me-west1", "northamerica-northeast2", "southamerica-east1",
};

/* The streams of daemon/stream.c: a query key names one of them. */
static const char *const streams[] = {
    "alert", "page", "application", "network", "audit", "infrastructure", "incident",
    "endpoint",
};
#define NSTREAMS (sizeof streams / sizeof streams[0])

typedef struct secops_url {
    char region[32];
    char project[PROJECT_MAX + 1];
    char customer[CUSTOMER_ID_LEN + 1];
    char log_type[NSTREAMS][LOG_TYPE_MAX + 1];   /* "" = none given */
} secops_url;

typedef struct secops_sink {
    secops_url u;
    char endpoint[CONFIG_PATH_MAX];              /* no trailing '/' */
    size_t max_bytes, max_entries;
    gauth *auth;
    gapi api;
    buf req;                                     /* the request being built */
    sink_progress *progress;                     /* of the next put, or NULL */
} secops_sink;

/* ---- the URL ---- */

static int stream_index(const char *name, size_t n)
{
    for (size_t i = 0; i < NSTREAMS; i++)
        if (strlen(streams[i]) == n && memcmp(streams[i], name, n) == 0)
            return (int)i;
    return -1;
}

static int region_known(const char *r, size_t n)
{
    for (size_t i = 0; i < sizeof regions / sizeof regions[0]; i++)
        if (strlen(regions[i]) == n && memcmp(regions[i], r, n) == 0)
            return 1;
    return 0;
}

static void region_list(char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof regions / sizeof regions[0] && o < outlen; i++)
        o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", regions[i]);
}

/* A project id (6-30 of [a-z0-9-], starting with a letter), a project
 * number, or a domain-scoped id ("example.com:proj"): the characters of
 * all three, checked loosely; Google answers 404/403 for one that is not. */
static int project_ok(const char *p, size_t n)
{
    if (n == 0 || n > PROJECT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)p[i]) && !isdigit((unsigned char)p[i]) &&
            !strchr("-.:", p[i]))
            return 0;
    return 1;
}

/* A SecOps customer id is a UUID: 8-4-4-4-12 hexadecimal digits. */
static int customer_ok(const char *c, size_t n)
{
    if (n != CUSTOMER_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c[i] != '-' : !isxdigit((unsigned char)c[i]))
            return 0;
    }
    return 1;
}

/* SecOps log types are upper-case identifiers: NETSKOPE_ALERT, WORKSPACE_ACTIVITY. */
static int log_type_ok(const char *t, size_t n)
{
    if (n == 0 || n > LOG_TYPE_MAX || !isupper((unsigned char)t[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)t[i]) && !isdigit((unsigned char)t[i]) && t[i] != '_')
            return 0;
    return 1;
}

/* One "key=value" of the query. */
static int query_pair(secops_url *u, const char *p, size_t n, char *err, size_t errlen)
{
    const char *eq = memchr(p, '=', n);
    if (!eq)
        return seterr(err, errlen, "query part '%.*s' is not key=value; expected " URL_FORM,
                      (int)n, p);
    size_t kn = (size_t)(eq - p), vn = n - kn - 1;
    const char *v = eq + 1;
    int i = kn == 8 && memcmp(p, "log_type", 8) == 0 ? 0 : stream_index(p, kn);
    if (i < 0)
        return seterr(err, errlen, "unknown query key '%.*s': expected log_type= (the alert "
                      "stream's log type) or a stream name (page=, network=...)", (int)kn, p);
    if (!log_type_ok(v, vn))
        return seterr(err, errlen, "log type '%.*s' for %s is not valid: SecOps log types are "
                      "upper-case letters, digits and '_', up to %d (e.g. NETSKOPE_ALERT)",
                      (int)(vn > 80 ? 80 : vn), v, streams[i], LOG_TYPE_MAX);
    memcpy(u->log_type[i], v, vn);
    u->log_type[i][vn] = '\0';
    return 0;
}

static int parse_query(secops_url *u, const char *q, char *err, size_t errlen)
{
    while (*q) {
        size_t n = strcspn(q, "&");
        if (n && query_pair(u, q, n, err, errlen) < 0)
            return -1;
        q += n + (q[n] == '&');
    }
    return 0;
}

/* Split "REGION/PROJECT/CUSTOMER_ID[?query]" into u, checking each part. */
static int parse_rest(const char *rest, secops_url *u, char *err, size_t errlen)
{
    char list[512];
    const char *part[3];
    size_t len[3], pathlen = strcspn(rest, "?");
    const char *p = rest, *end = rest + pathlen;
    memset(u, 0, sizeof *u);
    for (int i = 0; i < 3; i++) {
        part[i] = p;
        len[i] = strcspn(p, "/?");
        if (len[i] == 0 || p + len[i] > end)
            return seterr(err, errlen, "expected " URL_FORM);
        p += len[i];
        if (i < 2 && *p++ != '/')
            return seterr(err, errlen, "expected " URL_FORM);
    }
    if (p != end)
        return seterr(err, errlen, "unexpected '%.*s' after the customer id; expected " URL_FORM,
                      (int)(end - p > 60 ? 60 : end - p), p);
    if (!region_known(part[0], len[0])) {
        region_list(list, sizeof list);
        return seterr(err, errlen, "unknown SecOps region '%.*s': one of %s", (int)(len[0] > 40
                      ? 40 : len[0]), part[0], list);
    }
    if (!project_ok(part[1], len[1]))
        return seterr(err, errlen, "project '%.*s' is not a Google Cloud project id or number "
                      "(the project the SecOps instance is bound to)",
                      (int)(len[1] > 80 ? 80 : len[1]), part[1]);
    if (!customer_ok(part[2], len[2]))
        return seterr(err, errlen, "customer id '%.*s' is not a UUID (SecOps: SIEM Settings > "
                      "Profile > Customer ID)", (int)(len[2] > 80 ? 80 : len[2]), part[2]);
    memcpy(u->region, part[0], len[0]);
    memcpy(u->project, part[1], len[1]);
    memcpy(u->customer, part[2], len[2]);
    snprintf(u->log_type[0], sizeof u->log_type[0], "%s", DEFAULT_ALERT_LOG_TYPE);
    return *end == '?' ? parse_query(u, end + 1, err, errlen) : 0;
}

static int secops_check(const char *rest, char *err, size_t errlen)
{
    secops_url u;
    return parse_rest(rest, &u, err, errlen);
}

static int secops_stream_check(const char *rest, const char *stream, char *err, size_t errlen)
{
    secops_url u;
    if (parse_rest(rest, &u, err, errlen) < 0)
        return -1;
    int i = stream_index(stream, strlen(stream));
    if (i >= 0 && u.log_type[i][0])
        return 0;
    return seterr(err, errlen, "stream '%s' has no SecOps log type: Google documents no "
                  "parser for Netskope %s records; name one with %s=LOG_TYPE in the secops:// "
                  "URL (a custom parser's log type), or deliver this stream through gs://",
                  stream, stream, stream);
}

/* ---- open, describe, close ---- */

/* secops.endpoint, else the region's host; http:// only for loopback. */
static int endpoint_resolve(secops_sink *s, const nsc_config *cfg, int *loopback,
                            char *err, size_t errlen)
{
    char host[128];
    snprintf(host, sizeof host, "https://chronicle.%s.rep.googleapis.com", s->u.region);
    return gapi_endpoint(s->endpoint, sizeof s->endpoint, "",
                         cfg && cfg->secops_endpoint[0] ? cfg->secops_endpoint : host,
                         "SecOps endpoint", loopback, err, errlen);
}

static void secops_close(void *state)
{
    secops_sink *s = state;
    if (!s)
        return;
    gauth_release(s->auth);
    gapi_release(&s->api);
    buf_release(&s->req);
    free(s);
}

static void *secops_open(const char *rest, const sink_dest *d, const nsc_config *cfg,
                         char *err, size_t errlen)
{
    int loopback = 0;
    secops_sink *s = calloc(1, sizeof *s);
    if (!s) {
        seterr(err, errlen, "secops://%s: out of memory", rest);
        return NULL;
    }
    buf_init(&s->req, 0);
    s->max_bytes = cfg ? (size_t)cfg->secops_max_request_bytes : 1000000;
    s->max_entries = cfg ? (size_t)cfg->secops_max_entries : 1000;
    if (parse_rest(rest, &s->u, err, errlen) < 0 ||
        endpoint_resolve(s, cfg, &loopback, err, errlen) < 0)
        goto fail_out;
    s->auth = gauth_acquire(d->credentials[0] ? d->credentials : NULL, GAUTH_SCOPE_SECOPS, cfg,
                            err, errlen);
    if (!s->auth)
        goto fail_out;
    /* A new connection per request: libcurl resends a POST on its own when a
     * kept-alive connection turns out closed, and this POST may have been
     * accepted before the close - that resend would be an uncounted double. */
    if (gapi_init(&s->api, cfg, loopback, 1) < 0) {
        seterr(err, errlen, "secops://%s: cannot start libcurl", rest);
        goto fail_out;
    }
    return s;
fail_out:
    secops_close(s);
    return NULL;
}

/* The stream of an object name: "<tenant>/alerts_*" is alert,
 * "<tenant>/<stream>/<stream>_*" that stream (outbox.h's names). */
static int name_stream(const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    size_t n = strcspn(base, "_");
    if (n == 6 && memcmp(base, "alerts", 6) == 0)
        return 0;
    return stream_index(base, n);
}

static void secops_describe(const void *state, const char *name, char *out, size_t outlen)
{
    const secops_sink *s = state;
    int i = name_stream(name);
    snprintf(out, outlen, "secops://%s/%s/%s/%s (%s)", s->u.region, s->u.project,
             s->u.customer, i >= 0 && s->u.log_type[i][0] ? s->u.log_type[i] : "?", name);
}

static void secops_track(void *state, sink_progress *p)
{
    ((secops_sink *)state)->progress = p;
}

/* ---- building a request ---- */

/* The record's top-level "timestamp" (epoch seconds), or -1. Records are
 * minified valid JSON (records.h), so a walk that skips strings and
 * counts depth finds the key without a parse. */
static int64_t record_time(const char *r, size_t n)
{
    static const char key[] = "\"timestamp\":";
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = r[i];
        if (c == '"') {
            if (depth == 1 && i > 0 && r[i - 1] != ':' && n - i > sizeof key - 1 &&
                memcmp(r + i, key, sizeof key - 1) == 0) {
                char *end;
                const char *v = r + i + sizeof key - 1;
                long long t = strtoll(v, &end, 10);
                return end > v && end < r + n && strchr(",}", *end) ? t : -1;
            }
            for (i++; i < n && r[i] != '"'; i++)
                i += r[i] == '\\';
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return -1;
}

static void rfc3339(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t < 0 || !gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

/* Bytes one record adds to a request. */
static size_t entry_size(size_t len)
{
    return 4 * ((len + 2) / 3) + sizeof "{\"data\":\"\",\"logEntryTime\":\"\","
           "\"collectionTime\":\"\"}," + 2 * 20;
}

/* Append one record's entry to the request. */
static int entry_append(secops_sink *s, const char *r, size_t len, const char *collected)
{
    char when[32];
    int64_t t = record_time(r, len);
    size_t b64 = 4 * ((len + 2) / 3);
    if (s->req.len > sizeof REQUEST_HEAD - 1 && buf_append_char(&s->req, ',') < 0)
        return -1;
    if (buf_append_str(&s->req, "{\"data\":\"") < 0 || buf_reserve(&s->req, b64 + 1) < 0)
        return -1;
    EVP_EncodeBlock((unsigned char *)s->req.data + s->req.len, (const unsigned char *)r,
                    (int)len);
    s->req.len += b64;
    rfc3339(t >= 0 ? t : (int64_t)time(NULL), when);
    return buf_printf(&s->req, "\",\"logEntryTime\":\"%s\",\"collectionTime\":\"%s\"}", when,
                      collected);
}

/* Build the request of the records in data[from, len) that fit the limits;
 * *next is where the next request starts. 0, or -1 with err when the first
 * record alone is past max_request_bytes or memory is short. */
static int request_build(secops_sink *s, const char *data, size_t len, size_t from,
                         size_t *next, char *err, size_t errlen)
{
    char collected[32];
    size_t entries = 0, at = from, fixed = sizeof REQUEST_HEAD + sizeof REQUEST_TAIL;
    size_t size = fixed;
    rfc3339((int64_t)time(NULL), collected);
    buf_reset(&s->req);
    buf_append_str(&s->req, REQUEST_HEAD);
    while (at < len && entries < s->max_entries) {
        const char *nl = memchr(data + at, '\n', len - at);
        size_t rlen = (nl ? (size_t)(nl - data) : len) - at;
        if (rlen == 0) {                       /* an empty line carries no record */
            at += 1;
            continue;
        }
        if (size + entry_size(rlen) > s->max_bytes) {
            if (entries)
                break;
            return seterr(err, errlen, "a record of %zu bytes does not fit in one logs.import "
                          "request of secops.max_request_bytes = %zu: raise that setting",
                          rlen, s->max_bytes);
        }
        if (entry_append(s, data + at, rlen, collected) < 0)
            return seterr(err, errlen, "cannot build a logs.import request: out of memory");
        size += entry_size(rlen);
        entries++;
        at += rlen + (nl != NULL);
    }
    *next = at;
    if (buf_append_str(&s->req, REQUEST_TAIL) < 0)
        return seterr(err, errlen, "cannot build a logs.import request: out of memory");
    return 0;
}

/* ---- sending ---- */

static char *import_url(const secops_sink *s, const char *log_type)
{
    buf url;
    buf_init(&url, 0);
    if (buf_printf(&url, "%s/v1/projects/%s/locations/%s/instances/%s/logTypes/%s/logs:import",
                   s->endpoint, s->u.project, s->u.region, s->u.customer, log_type) < 0)
        buf_release(&url);
    return url.data;
}

typedef enum outcome {
    SENT_OK,            /* accepted */
    SENT_UNKNOWN,       /* the whole body went and no definite answer came: maybe accepted */
    SENT_NOT,           /* definitely not accepted: r says how to go on */
} outcome;

/* What a transport failure means: the body went whole (maybe accepted)
 * or not (the server cannot have parsed a request it did not get). */
static outcome transport_outcome(const secops_sink *s, CURLcode cc, size_t len,
                                 sink_result *r, const char *where, char *err, size_t errlen)
{
    curl_off_t up = 0;
    int tls, permanent = gapi_transport_permanent(cc, &tls);
    curl_easy_getinfo(s->api.curl, CURLINFO_SIZE_UPLOAD_T, &up);
    int whole = up >= (curl_off_t)len;
    seterr(err, errlen, "logs.import to %s failed: %s%s", where, gapi_transport_error(&s->api, cc),
           tls ? " (check http.ca_bundle)" : permanent ? "" : whole
           ? " (the request was sent: will resend it, counted as an ambiguous retry)"
           : " (will retry)");
    *r = permanent ? SINK_PERMANENT : SINK_RETRY;
    return whole && !permanent ? SENT_UNKNOWN : SENT_NOT;
}

static outcome status_outcome(const secops_sink *s, long st, sink_result *r, const char *where,
                              const char *log_type, char *err, size_t errlen)
{
    char msg[320];
    if (st >= 200 && st < 300)
        return SENT_OK;
    gapi_reply_message(&s->api, msg, sizeof msg);
    *r = SINK_PERMANENT;
    if (st == 401) {
        seterr(err, errlen, "credentials rejected by SecOps (HTTP 401): %s", gauth_describe(s->auth));
    } else if (st == 403) {
        seterr(err, errlen, "%s may not import logs into %s (HTTP 403)%s: grant it Chronicle API "
               "Editor (roles/chronicle.editor, which holds chronicle.logs.import) on project "
               "'%s'; a metadata-server account also needs the cloud-platform access scope",
               gauth_describe(s->auth), where, msg, s->u.project);
    } else if (st == 404) {
        seterr(err, errlen, "SecOps instance or log type not found at %s (HTTP 404)%s: check "
               "the region, project and customer id of the secops:// URL, and that log type "
               "%s exists", where, msg, log_type);
    } else if (st == 429 || st == 503 || st == 408) {
        *r = SINK_RETRY;
        seterr(err, errlen, "SecOps answered HTTP %ld for %s (will retry)%s", st, where, msg);
    } else if (st >= 500) {
        *r = SINK_RETRY;
        seterr(err, errlen, "SecOps answered HTTP %ld for %s%s (the request may have been "
               "accepted: will resend it, counted as an ambiguous retry)", st, where, msg);
        return SENT_UNKNOWN;
    } else {
        seterr(err, errlen, "SecOps refused a logs.import request for %s (HTTP %ld)%s", where,
               st, msg);
    }
    return SENT_NOT;
}

/* One request with a current token; one more after a 401 with a new one. */
static outcome send_request(secops_sink *s, const char *url, const char *where,
                            const char *log_type, sink_result *r, char *err, size_t errlen)
{
    char tok[GAUTH_TOKEN_MAX];
    outcome o = SENT_NOT;
    for (int tries = 0; tries < 2; tries++) {
        long st = 0;
        oauth_result ar = gauth_token(s->auth, tok, sizeof tok, err, errlen);
        if (ar != OAUTH_OK) {
            *r = ar == OAUTH_RETRY ? SINK_RETRY : SINK_PERMANENT;
            return SENT_NOT;
        }
        CURLcode cc = gapi_request(&s->api, url, tok, "application/json", s->req.data,
                                   s->req.len, &st);
        if (cc != CURLE_OK)
            o = transport_outcome(s, cc, s->req.len, r, where, err, errlen);
        else
            o = status_outcome(s, st, r, where, log_type, err, errlen);
        if (cc != CURLE_OK || st != 401 || tries)
            break;
        gauth_invalidate(s->auth, tok);
    }
    OPENSSL_cleanse(tok, sizeof tok);
    return o;
}

static int progress_save(secops_sink *s, size_t sent, int in_flight, char *err, size_t errlen)
{
    sink_progress *p = s->progress;
    if (!p)
        return 0;
    p->sent = (int64_t)sent;
    p->in_flight = in_flight;
    if (p->save(p->ctx, p->sent, in_flight) < 0)
        return seterr(err, errlen, "cannot record the progress of a SecOps batch in the database");
    return 0;
}

static sink_result secops_put(void *state, const char *name, const void *data, size_t len,
                              char *err, size_t errlen)
{
    secops_sink *s = state;
    sink_progress *p = s->progress;
    sink_result r = SINK_OK;
    char where[512];
    int i = name_stream(name);
    if (i < 0 || !s->u.log_type[i][0]) {
        seterr(err, errlen, "no SecOps log type for batch %s: add %s=LOG_TYPE to the tenant's "
               "secops:// URL", name, i < 0 ? "STREAM" : streams[i]);
        return SINK_PERMANENT;
    }
    char *url = import_url(s, s->u.log_type[i]);
    if (!url)
        return seterr(err, errlen, "out of memory"), SINK_RETRY;
    snprintf(where, sizeof where, "secops://%s/%s/%s/%s", s->u.region, s->u.project,
             s->u.customer, s->u.log_type[i]);
    size_t at = p && p->sent > 0 && (size_t)p->sent <= len ? (size_t)p->sent : 0, next = 0;
    int resent = p && p->in_flight;
    while (at < len) {
        if (request_build(s, data, len, at, &next, err, errlen) < 0) {
            /* the request before this one was accepted: say so, or the next
             * attempt would resend it as if it were still in flight */
            r = progress_save(s, at, 0, err, errlen) < 0 ? SINK_RETRY : SINK_PERMANENT;
            break;
        }
        if (progress_save(s, at, 1, err, errlen) < 0) {
            r = SINK_RETRY;
            break;
        }
        if (resent && p->ambiguous)
            p->ambiguous(p->ctx);
        resent = 0;
        outcome o = send_request(s, url, where, s->u.log_type[i], &r, err, errlen);
        if (o != SENT_OK) {
            if (o == SENT_NOT && progress_save(s, at, 0, err, errlen) < 0)
                r = SINK_RETRY;
            break;
        }
        at = next;
    }
    if (r == SINK_OK && p)             /* the caller commits the delivery; this is for it */
        p->sent = (int64_t)len, p->in_flight = 0;
    free(url);
    return r;
}

const sink_ops sink_secops_ops = {
    .scheme = "secops",
    .check = secops_check,
    .stream_check = secops_stream_check,
    .open = secops_open,
    .put = secops_put,
    .track = secops_track,
    .describe = secops_describe,
    .close = secops_close,
};
