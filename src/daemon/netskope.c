/* netskope.c - see netskope.h.
 *
 * Reading order: the client (one reused CURL easy handle and a capped body
 * buffer), ns_fetch_page() and the helpers that build the request and
 * classify the reply, then ns_url_check().
 *
 * Secrets: the token only ever lives in the header list built for one call;
 * both the formatted header and libcurl's copy of it are wiped before they
 * are freed. Error texts are built from the tenant URL without a query
 * string, never from the full request URL or the headers.
 */
#include "daemon/netskope.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "base/budget.h"
#include "base/buf.h"
#include "base/http_share.h"

#define NS_ALERT_PATH "/api/v2/events/data/alert"
#define NS_USER_AGENT "nscollect/0.1"
#define NS_RECV_BUFFER (128L * 1024)
#define NS_URL_SHOW_MAX 120
#define NS_ERRBODY_MAX 4096      /* bytes of an error body kept for its message */
#define NS_ERROR_TEXT_MAX 200    /* bytes of Netskope's words kept in an error */
#define NS_BODY_KEEP (16L << 20) /* body storage an idle client keeps; above, freed */

struct ns_client {
    CURL *curl;
    buf body;               /* the reply body, capped at max_body_bytes */
    buf errbody;            /* a non-200 reply's body, its first NS_ERRBODY_MAX bytes */
    size_t max_body;
    budget *bodies;         /* the process-wide budget body is counted in, or NULL */
    size_t held;            /* bytes of body taken from it */
    int overflow;           /* the write callback refused data: 1 past max_body,
                               2 past the process-wide budget, 3 the reader stopped it */
    int (*reader)(void *ud, const char *p, size_t n);  /* ns_query.on_body of this request */
    void *reader_ud;
    size_t streamed;        /* bytes of this reply's body given to the reader */
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- small helpers ---------------------------------------------------- */

static void set_err(ns_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(ns_reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

static void reply_init(ns_reply *r)
{
    r->status = NS_FAIL;
    r->http_code = 0;
    r->retry_after_s = -1;
    r->timed_out = 0;
    r->pause_s = -1;
    r->body = NULL;
    r->body_len = 0;
    r->stopped = 0;
    r->err[0] = '\0';
}

/* Seconds in a header value: digits with an optional fraction (rounded up),
 * surrounded by optional blanks. Returns -1 for anything else. */
static int parse_seconds(const char *v)
{
    long long n = 0;
    const char *p = v;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++)
        if (n < INT_MAX)
            n = n * 10 + (*p - '0');
    if (*p == '.') {
        int frac = 0;
        for (p++; isdigit((unsigned char)*p); p++)
            frac |= *p != '0';
        n += frac;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return -1;
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* ---- what an error body says ------------------------------------------ */

/* Append the UTF-8 sequence starting at p (at most n bytes) to out when it
 * is valid and printable, else '?'. Returns the bytes consumed. */
static size_t put_char(buf *out, const unsigned char *p, size_t n)
{
    if (p[0] < 0x20 || p[0] == 0x7f) {
        buf_append_char(out, ' ');
        return 1;
    }
    if (p[0] < 0x80) {
        buf_append_char(out, (char)p[0]);
        return 1;
    }
    size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    if (p[0] >= 0xf5)
        len = 0;
    for (size_t k = 1; k < len; k++)
        if (k >= n || (p[k] & 0xc0) != 0x80)
            len = 0;
    if (!len) {
        buf_append_char(out, '?');
        return 1;
    }
    buf_append(out, p, len);
    return len;
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v * 16 + (unsigned)d;
    }
    return 0;
}

/* A JSON string's content p[0, n) (jsmn checked it) with its escapes
 * decoded; \u escapes of controls become ' ', others outside ASCII '?'. */
static void put_json_string(buf *out, const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (p[i] != '\\' || i + 1 >= n) {
            i += put_char(out, (const unsigned char *)p + i, n - i);
            continue;
        }
        char e = p[i + 1];
        unsigned u;
        if (e == 'u' && i + 5 < n && hex4(p + i + 2, &u) == 0) {
            unsigned char c = u >= 0x20 && u < 0x7f ? (unsigned char)u
                            : u < 0x20 || u == 0x7f ? (unsigned char)' ' : (unsigned char)'?';
            put_char(out, &c, 1);
            i += 6;
            continue;
        }
        buf_append_char(out, e == 'n' || e == 't' || e == 'r' || e == 'b' || e == 'f' ? ' ' : e);
        i += 2;
    }
}

/* The index of the value of top-level key name in the object t[0], or -1. */
static int json_member(const char *js, const jsmntok_t *t, int n, const char *name)
{
    size_t len = strlen(name);
    for (int i = 1; i + 1 < n; i++) {
        if (t[i].parent != 0 || t[i].type != JSMN_STRING)
            continue;
        if ((size_t)(t[i].end - t[i].start) == len && memcmp(js + t[i].start, name, len) == 0)
            return i + 1;
    }
    return -1;
}

/* The words of the body's message/errors/reason/error member: a string,
 * or the strings of an array joined by "; ". 0 when none says anything. */
static int json_words(const char *js, const jsmntok_t *t, int n, buf *out)
{
    static const char *keys[] = {"message", "errors", "reason", "error", "errorCode", "status"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        int v = json_member(js, t, n, keys[k]);
        if (v < 0)
            continue;
        if (t[v].type == JSMN_STRING && t[v].end > t[v].start) {
            put_json_string(out, js + t[v].start, (size_t)(t[v].end - t[v].start));
            return 1;
        }
        if (t[v].type != JSMN_ARRAY)
            continue;
        for (int i = v + 1; i < n && t[i].start < t[v].end; i++)
            if (t[i].parent == v && t[i].type == JSMN_STRING) {
                if (out->len)
                    buf_append_str(out, "; ");
                put_json_string(out, js + t[i].start, (size_t)(t[i].end - t[i].start));
            }
        if (out->len)
            return 1;
    }
    return 0;
}

/* Collapse runs of blanks, trim, cut to max bytes at a character boundary
 * (marking the cut with "..."), into out[outlen]. */
static size_t tidy(const buf *in, char *out, size_t outlen, size_t max)
{
    const unsigned char *s = (const unsigned char *)(in->data ? in->data : "");
    size_t o = 0, i = 0, cap = max < outlen - 1 ? max : outlen - 1;
    int cut = 0;
    for (; i < in->len; i++) {
        if (s[i] == ' ' && (o == 0 || out[o - 1] == ' '))
            continue;
        if (o == cap) {
            cut = 1;
            break;
        }
        out[o++] = (char)s[i];
    }
    if (cut && (s[i] & 0xc0) == 0x80) {     /* do not split a character */
        while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
            o--;
        if (o > 0)
            o--;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    if (cut) {
        if (o + 4 > outlen)
            o = outlen >= 4 ? outlen - 4 : 0;
        while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80)
            o--;
        if (outlen >= 4) {
            memcpy(out + o, "...", 3);
            o += 3;
        }
    }
    out[o] = '\0';
    return o;
}

size_t ns_error_text(const char *body, size_t len, char *out, size_t outlen)
{
    jsmntok_t t[256];
    jsmn_parser p;
    buf words;
    if (!outlen)
        return 0;
    out[0] = '\0';
    if (!body || !len)
        return 0;
    buf_init(&words, 0);
    jsmn_init(&p);
    int n = jsmn_parse(&p, body, len, t, sizeof t / sizeof t[0]);
    if (n > 0 && t[0].type == JSMN_OBJECT)
        json_words(body, t, n, &words);       /* an object that says nothing: "" */
    else {
        for (size_t i = 0; i < len && words.len < 4 * NS_ERROR_TEXT_MAX;)
            i += put_char(&words, (const unsigned char *)body + i, len - i);
    }
    size_t r = tidy(&words, out, outlen, NS_ERROR_TEXT_MAX);
    buf_release(&words);
    return r;
}

/* ---- the client -------------------------------------------------------- */

/* The last reply's body is no longer used: its bytes go back to the
 * budget. Its storage stays for the job's next page, which a backlog fills
 * to the same size again: released here, a body above NS_BODY_KEEP (a page
 * of 10000 2 KB events is 20 MB) would be faulted in anew page after page. */
static void forget_body(ns_client *c)
{
    if (c->bodies)
        budget_give(c->bodies, c->held);
    c->held = 0;
    buf_reset(&c->body);
}

/* The job ended: a big body's storage goes back to the system too, so that
 * an idle worker holds none (the budget bounds memory, not only bytes in
 * use). */
void ns_client_done(ns_client *c)
{
    forget_body(c);
    if (c->body.cap > (size_t)NS_BODY_KEEP) {
        buf_release(&c->body);
        buf_init(&c->body, c->max_body);
    }
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    ns_client *c = ud;
    long code = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {          /* keep the start of an error body for its message */
        size_t room = NS_ERRBODY_MAX - c->errbody.len;
        buf_append(&c->errbody, p, n < room ? n : room);
        return n;
    }
    if (c->body.len + c->streamed + n > c->max_body) {
        c->overflow = 1;        /* too big alone, whatever the others hold */
        return 0;
    }
    if (c->reader) {            /* read as it arrives: nothing held, nothing budgeted */
        size_t room = NS_ERRBODY_MAX - c->errbody.len;  /* but its start, for an "ok":0 */
        buf_append(&c->errbody, p, n < room ? n : room);
        c->streamed += n;
        if (c->reader(c->reader_ud, p, n) != 0) {
            c->overflow = 3;
            return 0;
        }
        return n;
    }
    if (c->bodies && budget_take(c->bodies, n) < 0) {
        c->overflow = 2;
        return 0;               /* CURLE_WRITE_ERROR */
    }
    if (buf_append(&c->body, p, n) < 0) {
        if (c->bodies)
            budget_give(c->bodies, n);
        c->overflow = 1;
        return 0;
    }
    c->held += c->bodies ? n : 0;
    (void)size;                 /* always 1 for write callbacks */
    return n;
}

static int set_protocols(CURL *h)
{
#if LIBCURL_VERSION_NUM >= 0x075500
    return curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
    return curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK;
#endif
}

static int set_timeouts(CURL *h, const ns_http_opts *o)
{
    int bad = 0;
    if (o->connect_timeout_s > 0)
        bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_s) != CURLE_OK;
    if (o->low_speed_time_s > 0) {
        bad |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->low_speed_time_s) != CURLE_OK;
    }
    if (o->total_timeout_s > 0)
        bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT, o->total_timeout_s) != CURLE_OK;
    return bad;
}

static int set_transport(CURL *h, const ns_http_opts *o)
{
    int bad = 0;
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    if (o->ca_bundle && *o->ca_bundle)
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_bundle) != CURLE_OK;
    if (o->proxy && *o->proxy)
        bad |= curl_easy_setopt(h, CURLOPT_PROXY, o->proxy) != CURLE_OK;
    /* Our headers (the token) go to the origin only, never in a CONNECT. */
    bad |= curl_easy_setopt(h, CURLOPT_HEADEROPT, (long)CURLHEADER_SEPARATE) != CURLE_OK;
    if (o->share)
        bad |= curl_easy_setopt(h, CURLOPT_SHARE, (CURLSH *)o->share) != CURLE_OK;
    return bad;
}

/* The options that never change between calls. Non-zero on failure. */
static int client_setup(ns_client *c, const ns_http_opts *o)
{
    CURL *h = c->curl;
    int bad = 0;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    http_abort_on_shutdown(h);
    bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_VERBOSE, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, NS_USER_AGENT) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_BUFFERSIZE, NS_RECV_BUFFER) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, c) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
    bad |= set_protocols(h);
    bad |= set_timeouts(h, o);
    bad |= set_transport(h, o);
    return bad;
}

ns_client *ns_client_new(const ns_http_opts *opts)
{
    ns_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->max_body = opts->max_body_bytes;
    c->bodies = opts->bodies;
    buf_init(&c->body, opts->max_body_bytes);
    buf_init(&c->errbody, NS_ERRBODY_MAX + 1);
    c->curl = curl_easy_init();
    if (!c->curl || client_setup(c, opts)) {
        ns_client_free(c);
        return NULL;
    }
    return c;
}

void ns_client_free(ns_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    forget_body(c);
    buf_release(&c->body);
    buf_release(&c->errbody);
    free(c);
}

/* ---- one request ------------------------------------------------------- */

/* ?index=...&operation=... of an iterator request, escaped by libcurl. */
static int iterator_query(buf *url, const ns_query *q)
{
    char *index = curl_easy_escape(NULL, q->index ? q->index : "", 0);
    char *op = curl_easy_escape(NULL, q->op, 0);
    int rc = index && op ? buf_printf(url, "?index=%s&operation=%s", index, op) : -1;
    curl_free(index);
    curl_free(op);
    return rc;
}

/* Build the request URL in url; *where_len is the length of its part before
 * the query string (the only part that may appear in an error). */
static int build_url(buf *url, const ns_query *q, int *where_len)
{
    size_t n = strlen(q->base_url);
    while (n > 0 && q->base_url[n - 1] == '/')
        n--;
    const char *s = q->window_event ? "starttime" : "insertionstarttime";
    const char *e = q->window_event ? "endtime" : "insertionendtime";
    if (buf_printf(url, "%.*s%s", (int)n, q->base_url, q->path ? q->path : NS_ALERT_PATH) < 0)
        return -1;
    *where_len = (int)url->len;
    if (q->op)
        return iterator_query(url, q);
    return buf_printf(url, "?%s=%" PRId64 "&%s=%" PRId64 "&limit=%ld&offset=%" PRId64,
                      s, q->start, e, q->end, q->limit, q->offset);
}

/* Refuse a token that could not be a header value (a stray newline from a
 * token file would otherwise inject headers). */
static const char *token_problem(const char *token)
{
    if (!token || !*token)
        return "no API token is stored";
    for (const unsigned char *p = (const unsigned char *)token; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return "the API token contains control characters (a newline from the token file?)";
    return NULL;
}

/* Wipe libcurl's copies of our header lines, then free them. */
static void headers_free(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p; p = p->next)
        OPENSSL_cleanse(p->data, strlen(p->data));
    curl_slist_free_all(h);
}

static struct curl_slist *headers_new(const char *token)
{
    buf line;
    struct curl_slist *h = NULL, *t;
    buf_init(&line, 0);
    if (buf_printf(&line, "Netskope-Api-Token: %s", token) < 0)
        goto fail;
    if (!(t = curl_slist_append(h, line.data)))
        goto fail;
    h = t;
    if (!(t = curl_slist_append(h, "Accept: application/json")))
        goto fail;
    h = t;
    OPENSSL_cleanse(line.data, line.len);
    buf_release(&line);
    return h;
fail:
    if (line.data)
        OPENSSL_cleanse(line.data, line.len);
    buf_release(&line);
    headers_free(h);
    return NULL;
}

/* A header of the last reply as whole seconds, or -1. Retry-After may
 * also be an HTTP date. */
static int header_seconds(CURL *h, const char *name)
{
    struct curl_header *hd;
    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
        return -1;
    int s = parse_seconds(hd->value);
    if (s >= 0 || strcasecmp(name, "Retry-After") != 0)
        return s;
    time_t when = curl_getdate(hd->value, NULL);
    if (when == (time_t)-1)
        return -1;
    time_t now = time(NULL);
    return when <= now ? 0 : when - now > INT_MAX ? INT_MAX : (int)(when - now);
}

/* Mask every copy of the token in s (a server may echo what it was sent). */
static void mask_token(char *s, const char *token)
{
    size_t n = token ? strlen(token) : 0;
    char *p;
    if (n < 4)
        return;
    while ((p = strstr(s, token))) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
    }
}

/* Netskope's own words from the error body, for err; "" when it said none. */
static void error_words(ns_client *c, const char *token, char *out, size_t outlen)
{
    ns_error_text(c->errbody.data, c->errbody.len, out, outlen);
    mask_token(out, token);
}

/* ratelimit-remaining: 0 on any reply: no request before ratelimit-reset
 * (1 s when it is missing or unreadable). */
static void read_ratelimit(ns_client *c, ns_reply *r)
{
    struct curl_header *hd;
    if (curl_easy_header(c->curl, "ratelimit-remaining", 0, CURLH_HEADER, -1, &hd) != CURLHE_OK ||
        parse_seconds(hd->value) != 0)
        return;
    int reset = header_seconds(c->curl, "ratelimit-reset");
    r->pause_s = reset > 0 ? reset : 1;
}

static void classify_http(ns_client *c, ns_reply *r, const char *where, int wlen,
                          const char *token)
{
    long code = r->http_code;
    char said[NS_ERROR_TEXT_MAX + 8];
    read_ratelimit(c, r);
    if (code == 200) {
        const buf *b = c->reader ? &c->errbody : &c->body;
        r->status = NS_OK;
        r->body = b->data ? b->data : "";
        r->body_len = b->len;
        return;
    }
    error_words(c, token, said, sizeof said);
    const char *sep = said[0] ? ": " : "";
    if (code == 401 || code == 403) {
        r->status = NS_AUTH;
        set_err(r, "token rejected (HTTP %ld%s%s): create a new REST API v2 token with read "
                "access to " NS_ALERT_PATH " and run `nscollect tenant set NAME "
                "--token-file FILE`", code, sep, said);
        return;
    }
    /* 429 is Netskope's documented rate limit. 409 is not documented for
     * this endpoint and no source calls it a rate limit: a plain failure. */
    if (code == 429 || code == 408 || (code >= 500 && code <= 599)) {
        r->status = NS_RETRY;
        r->retry_after_s = header_seconds(c->curl, "Retry-After");
        if (r->retry_after_s < 0 && code == 429)
            r->retry_after_s = header_seconds(c->curl, "ratelimit-reset");
        set_err(r, "HTTP %ld from %.*s%s%s%s", code, wlen, where,
                code == 429 ? " (rate limited)" : "", sep, said);
        return;
    }
    r->status = NS_FAIL;
    set_err(r, "HTTP %ld from %.*s%s%s", code, wlen, where, sep, said);
}

/* Transport errors that a later attempt may not meet again. */
static int curl_transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static void classify_curl(ns_client *c, CURLcode rc, ns_reply *r, const char *where, int wlen)
{
    if (rc == CURLE_WRITE_ERROR && c->overflow == 2) {
        r->status = NS_RETRY;   /* other workers' bodies fill the budget: later */
        set_err(r, "reply bodies in flight would pass http.max_body_total (%zu bytes) reading "
                "%.*s: retried later; raise http.max_body_total or lower workers.fetch or "
                "--page-size", c->bodies->max, wlen, where);
        return;
    }
    if (rc == CURLE_WRITE_ERROR && c->overflow == 3) {
        r->status = NS_FAIL;
        r->stopped = 1;
        set_err(r, "reading the page from %.*s was stopped by its reader", wlen, where);
        return;
    }
    if (rc == CURLE_WRITE_ERROR && c->overflow) {
        r->status = NS_FAIL;
        set_err(r, "response body larger than %zu bytes from %.*s (raise http.max_body)",
                c->max_body, wlen, where);
        return;
    }
    r->status = curl_transient(rc) ? NS_RETRY : NS_FAIL;
    r->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    set_err(r, "cannot fetch %.*s: %s", wlen, where,
            c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
}

static void perform(ns_client *c, const char *url, const char *where, int wlen,
                    struct curl_slist *hdrs, const char *token, ns_reply *r)
{
    c->overflow = 0;
    c->streamed = 0;
    c->errbuf[0] = '\0';
    forget_body(c);
    buf_reset(&c->errbody);
    /* A failed CURLOPT_URL would leave the previous page's URL in place. */
    if (curl_easy_setopt(c->curl, CURLOPT_URL, url) != CURLE_OK) {
        set_err(r, "out of memory building the request");
        return;
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->http_code);
    if (rc == CURLE_OK)
        classify_http(c, r, where, wlen, token);
    else
        classify_curl(c, rc, r, where, wlen);
}

ns_status ns_fetch_page(ns_client *c, const ns_query *q, ns_reply *r)
{
    buf url;
    int wlen = 0;
    const char *problem;
    struct curl_slist *hdrs = NULL;

    reply_init(r);
    buf_init(&url, 0);
    if (ns_url_check(q->base_url, r->err, sizeof r->err) < 0)
        goto out;
    if ((problem = token_problem(q->token))) {
        r->status = NS_AUTH;
        set_err(r, "%s: run `nscollect tenant set NAME --token-file FILE`", problem);
        goto out;
    }
    if (build_url(&url, q, &wlen) < 0 || !(hdrs = headers_new(q->token))) {
        set_err(r, "out of memory building the request");
        goto out;
    }
    /* libcurl sends a request again by itself when a reused connection
     * closes before any reply byte: for operation=next that would ask for
     * the page after one handed out and lost. A new connection is never
     * retried so. */
    curl_easy_setopt(c->curl, CURLOPT_FRESH_CONNECT, (long)(q->op && strcmp(q->op, "next") == 0));
    c->reader = q->on_body;
    c->reader_ud = q->body_ud;
    perform(c, url.data, url.data, wlen, hdrs, q->token, r);
    c->reader = NULL;
out:
    headers_free(hdrs);
    buf_release(&url);
    return r->status;
}

/* ---- tenant URL check -------------------------------------------------- */

/* A copy of url that is safe to print: no user info, no query or fragment
 * (an operator may paste a v1 URL with ?token=...), at most about
 * NS_URL_SHOW_MAX bytes; "..." marks what was left out. */
static void show_url(const char *url, char *out, size_t outlen)
{
    size_t keep = strcspn(url, "?#"), pre = 0;
    const char *auth = strstr(url, "://");
    const char *rest = url;
    if (auth && (size_t)(auth - url) < keep) {
        const char *at = NULL;
        for (const char *p = auth + 3; p < url + keep; p++)
            if (*p == '@')
                at = p;
        if (at) {
            pre = (size_t)(auth + 3 - url);
            rest = at;
        }
    }
    size_t restlen = (size_t)(url + keep - rest);
    int cut = url[keep] != '\0';
    if (pre > NS_URL_SHOW_MAX)
        pre = NS_URL_SHOW_MAX;
    if (restlen > NS_URL_SHOW_MAX) {
        restlen = NS_URL_SHOW_MAX;
        cut = 1;
    }
    snprintf(out, outlen, "%.*s%s%.*s%s", (int)pre, url, pre ? "***" : "",
             (int)restlen, rest, cut ? "..." : "");
}

/* Non-zero when part is present in h (even when empty). */
static int url_has(CURLU *h, CURLUPart part)
{
    char *v = NULL;
    CURLUcode rc = curl_url_get(h, part, &v, 0);
    curl_free(v);
    return rc == CURLUE_OK;
}

static int url_port_zero(CURLU *h)
{
    char *port = NULL;
    int zero = curl_url_get(h, CURLUPART_PORT, &port, 0) == CURLUE_OK && strtol(port, NULL, 10) == 0;
    curl_free(port);
    return zero;
}

/* The checks on a parsed URL; the message is completed by the caller with
 * the printable URL. */
static const char *url_problem(CURLU *h, const char *raw, char **scheme, char **host)
{
    char *path = NULL;
    const char *why = NULL;
    if (curl_url_get(h, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
        (strcmp(*scheme, "https") != 0 && strcmp(*scheme, "http") != 0))
        why = "must start with https://";
    else if (curl_url_get(h, CURLUPART_HOST, host, 0) != CURLUE_OK || !**host)
        why = "has no host name";
    else if (url_has(h, CURLUPART_USER) || url_has(h, CURLUPART_PASSWORD))
        why = "must not contain a user name or password (the token is set with --token-file)";
    else if (url_has(h, CURLUPART_QUERY) || url_has(h, CURLUPART_FRAGMENT) || strpbrk(raw, "?#"))
        why = "must not have a query string or fragment; give only https://HOST[:PORT]";
    else if (url_port_zero(h))
        why = "has port 0";
    else if (curl_url_get(h, CURLUPART_PATH, &path, 0) != CURLUE_OK || strcmp(path, "/") != 0)
        why = "must not have a path; give only https://HOST[:PORT] (nscollect adds " NS_ALERT_PATH ")";
    curl_free(path);
    return why;
}

/* The 1-based position of the first byte that is not printable ASCII, or 0.
 * Such a URL would later make `list --json` invalid UTF-8 JSON. */
static size_t url_bad_byte(const char *url)
{
    for (size_t i = 0; url[i]; i++)
        if ((unsigned char)url[i] < 0x21 || (unsigned char)url[i] > 0x7e)
            return i + 1;
    return 0;
}

int ns_url_check(const char *url, char *err, size_t errlen)
{
    char shown[2 * NS_URL_SHOW_MAX + 8];
    char *scheme = NULL, *host = NULL;
    const char *why = NULL;
    int rc = -1;
    CURLU *h = NULL;
    CURLUcode uc;

    if (!url || !*url) {
        snprintf(err, errlen, "tenant URL is empty; give https://HOST[:PORT]");
        return -1;
    }
    size_t bad = url_bad_byte(url);
    if (bad) {                       /* not shown: the byte would garble the message */
        snprintf(err, errlen, "tenant URL is not a valid URL: a space, control or non-ASCII "
                 "byte at position %zu; write the host in its punycode form (xn--...) and "
                 "percent-encode the rest", bad);
        return -1;
    }
    show_url(url, shown, sizeof shown);
    if (!strchr(url, ':') && !strchr(url, '/')) {
        snprintf(err, errlen, "tenant URL '%s' has no scheme; write https://%s", shown, shown);
        return -1;
    }
    if (!strstr(url, "://")) {
        snprintf(err, errlen, "tenant URL '%s' is not a valid URL; give https://HOST[:PORT]", shown);
        return -1;
    }
    if (!(h = curl_url())) {
        snprintf(err, errlen, "out of memory checking tenant URL '%s'", shown);
        return -1;
    }
    uc = curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
    if (uc != CURLUE_OK) {
        snprintf(err, errlen, "tenant URL '%s' is not a valid URL (%s); give https://HOST[:PORT]",
                 shown, curl_url_strerror(uc));
        goto out;
    }
    if ((why = url_problem(h, url, &scheme, &host))) {
        snprintf(err, errlen, "tenant URL '%s' %s", shown, why);
        goto out;
    }
    if (strcmp(scheme, "https") != 0 && !http_host_is_loopback(host)) {
        snprintf(err, errlen, "tenant URL must use https:// (http:// is only allowed for "
                 "loopback hosts): '%s'", shown);
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(h);
    return rc;
}
