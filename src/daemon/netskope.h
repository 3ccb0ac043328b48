/* netskope.h - the Netskope REST API v2 alert endpoint, over libcurl.
 *
 * One ns_client per worker thread; it keeps its CURL easy handle (so the
 * connection stays alive between pages and runs) and its body buffer.
 * ns_fetch_page() performs GET {url}/api/v2/events/data/{alert,page,...} with the
 * Netskope-Api-Token header and classifies the reply so the caller can
 * decide: use the page, wait and retry, stop for the token, or fail the run.
 * The token is never logged and never appears in err.
 */
#ifndef NSC_NETSKOPE_H
#define NSC_NETSKOPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ns_client ns_client;

typedef struct ns_http_opts {
    long connect_timeout_s;
    long low_speed_time_s;   /* abort when < 1 byte/s for this long */
    long total_timeout_s;
    size_t max_body_bytes;
    const char *ca_bundle;   /* NULL or "" = system store */
    const char *proxy;       /* NULL or "" = libcurl's environment handling */
    void *share;             /* optional CURLSH* shared by clients, or NULL */
    struct budget *bodies;   /* bytes of reply bodies the process may hold at once
                                (http.max_body_total), shared by clients; or NULL */
} ns_http_opts;

typedef enum ns_status {
    NS_OK = 0,       /* 200 with a body: parse it */
    NS_RETRY,        /* 429, 408, 5xx, timeout, dropped connection: wait retry_after_s then retry */
    NS_AUTH,         /* 401/403: token rejected; do not retry soon */
    NS_FAIL,         /* anything else (400, 404, 409, bad URL, body over the cap): fail the run;
                        a body that does not fit the process-wide budget is NS_RETRY */
} ns_status;

typedef struct ns_reply {
    ns_status status;
    long http_code;          /* 0 when no HTTP reply arrived */
    int retry_after_s;       /* from Retry-After (or a 429's ratelimit-reset), else -1;
                                as the server sent it: the caller caps it */
    int pause_s;             /* any reply with ratelimit-remaining: 0: seconds until its
                                ratelimit-reset (1 when missing), else -1. No request of
                                this tenant may go before then */
    int timed_out;           /* NS_RETRY because no reply came in time (http.low_speed_time,
                                http.total_timeout): the server may hang again */
    const char *body;        /* NS_OK: the body, owned by the client, valid until the next call;
                                with an on_body reader only its first 4 KiB (what an
                                "ok":0 page says) */
    size_t body_len;
    int stopped;             /* NS_FAIL because on_body returned nonzero (the reader's
                                own error, not the server's) */
    char err[512];           /* human-readable reason when status != NS_OK, with what
                                Netskope's error body said (ns_error_text) */
} ns_reply;

typedef struct ns_query {
    const char *base_url;    /* tenant URL, e.g. https://acme.goskope.com (no trailing path) */
    const char *path;        /* "/api/v2/events/data/page" (stream_data_path); NULL: alert */
    const char *token;
    int window_event;        /* 0: insertionstarttime/insertionendtime; 1: starttime/endtime */
    int64_t start, end;      /* epoch seconds, [start, end) */
    long limit;
    int64_t offset;
    const char *op;          /* non-NULL: a dataexport iterator request, path
                                ?index=INDEX&operation=OP (both URL-escaped);
                                the window, limit and offset are not sent */
    const char *index;
    /* Non-NULL: a 200's body is handed to on_body(body_ud, p, n) piece by
     * piece as it arrives instead of being held (http.max_body still caps
     * it; http.max_body_total does not count it). A nonzero return ends
     * the transfer: NS_FAIL with reply.stopped. A reply that then fails
     * (cut short: NS_RETRY) may already have handed out part of its body. */
    int (*on_body)(void *ud, const char *p, size_t n);
    void *body_ud;
} ns_query;

/* Returns NULL only when out of memory or libcurl cannot start. */
ns_client *ns_client_new(const ns_http_opts *opts);
void ns_client_free(ns_client *c);
/* The last reply's body is no longer needed (a job ended): its bytes go
 * back to the budget (ns_http_opts.bodies) and a big body's storage to the
 * system, so that an idle worker holds none of either. */
void ns_client_done(ns_client *c);

/* Fetch one page. Always fills *reply; returns reply->status. */
ns_status ns_fetch_page(ns_client *c, const ns_query *q, ns_reply *reply);

/* What a Netskope error body says, cleaned for a log line or a status
 * column: in a JSON object, the value of "message", "errors" (strings
 * joined by "; "), "reason", "error", "errorCode" or "status", the first
 * present; else the body itself as text. Escapes are decoded, control
 * characters become spaces, invalid UTF-8 '?', runs of blanks one space,
 * and the text is cut to 200 bytes at a character boundary ("..." marks
 * the cut). Writes a NUL-terminated string to out; returns its length
 * (0 when the body says nothing). */
size_t ns_error_text(const char *body, size_t len, char *out, size_t outlen);

/* Check a tenant URL: http(s)://host[:port] with an optional trailing '/',
 * https required except for loopback hosts (127.0.0.0/8, ::1, localhost).
 * Returns 0, or -1 with the reason in err. */
int ns_url_check(const char *url, char *err, size_t errlen);

#endif
