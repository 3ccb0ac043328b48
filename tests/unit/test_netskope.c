/* test_netskope.c - ns_url_check() cases, and ns_fetch_page()'s request and
 * reply classification against a canned one-shot HTTP server on loopback
 * (the full HTTP path is exercised end to end against tests/fake_netskope.py). */
#include "check.h"
#include "daemon/netskope.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "tok-SECRET-0123456789abcdef"

/* ---- 1. ns_url_check ---------------------------------------------------- */

static int url_ok(const char *url)
{
    char err[256] = "";
    int rc = ns_url_check(url, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "  (url '%s' rejected: %s)\n", url, err);
    return rc == 0;
}

/* Check that url is rejected with a message containing want. */
static void url_bad(const char *url, const char *want, const char *secret)
{
    char err[256] = "";
    CHECK_INT(ns_url_check(url, err, sizeof err), -1);
    CHECK_HAS(err, want);
    if (secret)
        CHECK(strstr(err, secret) == NULL);
}

static void test_url_check(void)
{
    /* 1.1 accepted */
    CHECK(url_ok("https://acme.goskope.com"));
    CHECK(url_ok("https://acme.goskope.com/"));
    CHECK(url_ok("https://acme.eu.goskope.com:8443"));
    CHECK(url_ok("HTTPS://Acme.GoSkope.com/"));
    CHECK(url_ok("https://10.1.2.3"));
    CHECK(url_ok("https://[2001:db8::1]:443/"));
    /* 1.2 http only for loopback hosts */
    CHECK(url_ok("http://127.0.0.1:8080"));
    CHECK(url_ok("http://127.1.2.3:8080/"));
    CHECK(url_ok("http://localhost:1234"));
    CHECK(url_ok("http://LOCALHOST"));
    CHECK(url_ok("http://[::1]:9000"));
    url_bad("http://acme.goskope.com", "tenant URL must use https:// (http:// is only "
            "allowed for loopback hosts)", NULL);
    url_bad("http://acme.goskope.com", "'http://acme.goskope.com'", NULL);
    url_bad("http://128.0.0.1", "must use https://", NULL);
    url_bad("http://localhost.evil.example", "must use https://", NULL);
    url_bad("http://127.0.0.1.evil.example", "must use https://", NULL);
    url_bad("http://[::ffff:127.0.0.1]", "must use https://", NULL);
    url_bad("http://[::2]", "must use https://", NULL);
    /* 1.3 scheme */
    url_bad("ftp://acme.goskope.com", "'ftp://acme.goskope.com' must start with https://", NULL);
    url_bad("file:///etc/passwd", "tenant URL 'file:///etc/passwd'", NULL);
    url_bad("acme.goskope.com", "has no scheme; write https://acme.goskope.com", NULL);
    url_bad("https:/acme.goskope.com", "is not a valid URL", NULL);
    url_bad("https:acme.goskope.com", "is not a valid URL", NULL);
    url_bad("//acme.goskope.com", "is not a valid URL", NULL);
    /* 1.4 user info never echoed */
    url_bad("https://user:hunter2@acme.goskope.com", "must not contain a user name or password",
            "hunter2");
    url_bad("https://alice:hunter2@acme.goskope.com", "'https://***@acme.goskope.com'", "alice");
    url_bad("https://a@acme.goskope.com", "must not contain a user name", NULL);
    /* 1.5 no query, fragment or path; query text never echoed */
    url_bad("https://acme.goskope.com/api/v1/alerts?token=s3cr3t", "must not", "s3cr3t");
    url_bad("https://acme.goskope.com?token=s3cr3t", "must not have a query string", "s3cr3t");
    url_bad("https://acme.goskope.com/?", "must not have a query string", NULL);
    url_bad("https://acme.goskope.com/#x", "fragment", NULL);
    url_bad("https://caf\xe9.example.com", "non-ASCII byte at position 12", NULL);
    url_bad("https://caf\xc3\xa9.example.com", "punycode", NULL);
    url_bad("https://acme.goskope.com /", "at position 25", NULL);
    url_bad("https://acme\x7f.goskope.com", "at position 13", NULL);
    url_bad("https://acme.goskope.com/api/v2", "must not have a path", NULL);
    url_bad("https://acme.goskope.com//", "must not have a path", NULL);
    url_bad("https://acme.goskope.com/./", "must not have a path", NULL);
    /* 1.6 garbage */
    url_bad("", "tenant URL is empty", NULL);
    url_bad(NULL, "tenant URL is empty", NULL);
    url_bad("https://", "tenant URL 'https://'", NULL);
    url_bad("https://acme goskope.com", "is not a valid URL", NULL);
    url_bad("https://acme.goskope.com:99999", "is not a valid URL", NULL);
    url_bad("https://acme.goskope.com:0", "has port 0", NULL);
    url_bad("https://acme.goskope.com\r\nX: y", "tenant URL", NULL);
    /* 1.7 long URLs are shortened, small buffers are safe */
    char longurl[600];
    snprintf(longurl, sizeof longurl, "http://%0500d.example", 7);
    url_bad(longurl, "...", NULL);
    char tiny[8];
    CHECK_INT(ns_url_check("http://x.example", tiny, sizeof tiny), -1);
    CHECK_INT(strlen(tiny), 7);
    CHECK_INT(ns_url_check("http://x.example", NULL, 0), -1);
}

/* ---- 2. a canned HTTP server ------------------------------------------- */

#define MAX_CANNED 32

typedef struct canned {
    int lfd, port, n;
    const char *resp[MAX_CANNED];  /* NULL: read the request, never answer */
    char req[MAX_CANNED][2048];    /* requests as received */
    pthread_t th;
} canned;

static void read_request(int fd, char *out, size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    while (len + 1 < outlen && !strstr(out, "\r\n\r\n")) {
        ssize_t got = recv(fd, out + len, outlen - 1 - len, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
        out[len] = '\0';
    }
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t put = send(fd, p, n, MSG_NOSIGNAL);
        if (put <= 0)
            return;
        p += put;
        n -= (size_t)put;
    }
}

static void *canned_main(void *arg)
{
    canned *s = arg;
    for (int i = 0; i < s->n; i++) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            break;
        read_request(fd, s->req[i], sizeof s->req[i]);
        if (s->resp[i]) {
            send_all(fd, s->resp[i], strlen(s->resp[i]));
        } else {                   /* hang until the client gives up */
            char tmp[256];
            while (recv(fd, tmp, sizeof tmp, 0) > 0)
                ;
        }
        close(fd);
    }
    return NULL;
}

static int canned_start(canned *s)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(s->lfd, 8) < 0 || getsockname(s->lfd, (struct sockaddr *)&a, &alen) < 0)
        return -1;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->th, NULL, canned_main, s) == 0 ? 0 : -1;
}

static void canned_stop(canned *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* ---- 3. ns_fetch_page --------------------------------------------------- */

static const char *const responses[] = {
    /* 0 */ "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
            "{\"ok\":1,\"result\":[]}",
    /* 1 */ "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nratelimit-reset: 3\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n",
    /* 2 */ "HTTP/1.1 429 Too Many Requests\r\nRateLimit-Reset: 3\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n",
    /* 3 */ "HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    /* 4 */ "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!",
    /* 5 */ "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    /* 6 */ "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    /* 7 */ "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    /* 8 */ "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
            "0123456789012345678901234567890123456789012345678901234567890123456789",
    /* 9 */ "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"ok\":1,",
    /* 10 */ NULL,
    /* 11 */ "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    /* 12 */ "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:1/steal\r\n"
             "Content-Length: 0\r\nConnection: close\r\n\r\n",
    /* 13 */ "HTTP/1.1 500 Internal Server Error\r\nRetry-After: 2\r\n"
             "Content-Length: 0\r\nConnection: close\r\n\r\n",
    /* 14 */ "HTTP/1.1 400 Bad Request\r\nContent-Length: 48\r\nConnection: close\r\n\r\n"
             "{\"status\":400,\"message\":\"limit must be <= 5000\"}",
    /* 15 */ "HTTP/1.1 200 OK\r\nratelimit-limit: 4\r\nratelimit-remaining: 0\r\n"
             "ratelimit-reset: 9\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
             "{\"ok\":1,\"result\":[]}",
    /* 16 */ "HTTP/1.1 429 Too Many Requests\r\nratelimit-remaining: 0\r\n"
             "Content-Length: 0\r\nConnection: close\r\n\r\n",
    /* 17 */ "HTTP/1.1 200 OK\r\nratelimit-remaining: 3\r\nratelimit-reset: 9\r\n"
             "Content-Length: 20\r\nConnection: close\r\n\r\n{\"ok\":1,\"result\":[]}",
    /* 18 */ "HTTP/1.1 403 Forbidden\r\nContent-Length: 55\r\nConnection: close\r\n\r\n"
             "{\"message\":\"bad token tok-SECRET-0123456789abcdef\x1b[2J\"}",
};

static ns_client *client(long total_timeout, size_t max_body)
{
    ns_http_opts o = { .connect_timeout_s = 5, .low_speed_time_s = 5,
                       .total_timeout_s = total_timeout, .max_body_bytes = max_body };
    return ns_client_new(&o);
}

static void query_init(ns_query *q, const char *url)
{
    memset(q, 0, sizeof *q);
    q->base_url = url;
    q->token = TOKEN;
    q->window_event = 0;
    q->start = 1700000000;
    q->end = 1700003600;
    q->limit = 1000;
    q->offset = 2000;
}

/* The err of every non-OK reply: never the token, never a query string. */
static void check_err_clean(const ns_reply *r)
{
    CHECK(strstr(r->err, "SECRET") == NULL);
    CHECK(strstr(r->err, "offset=") == NULL);
}

static void fetch_expect(ns_client *c, ns_query *q, ns_status want, long code, int retry)
{
    ns_reply r;
    CHECK_INT(ns_fetch_page(c, q, &r), want);
    CHECK_INT(r.status, want);
    CHECK_INT(r.http_code, code);
    CHECK_INT(r.retry_after_s, retry);
    CHECK_INT(r.timed_out, 0);      /* a reply, or a transfer cut short: not a timeout */
    check_err_clean(&r);
}

static void test_fetch_replies(canned *s, const char *url)
{
    ns_client *c = client(2, 64), *big = client(2, 1 << 20);
    ns_query q;
    ns_reply r;
    query_init(&q, url);

    /* 3.1 a page: the request line, the headers, the body */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_OK);
    CHECK_INT(r.http_code, 200);
    CHECK_MEM(r.body, r.body_len, "{\"ok\":1,\"result\":[]}");
    CHECK_HAS(s->req[0], "GET /api/v2/events/data/alert?insertionstarttime=1700000000"
              "&insertionendtime=1700003600&limit=1000&offset=2000 HTTP/1.1\r\n");
    CHECK_HAS(s->req[0], "\r\nNetskope-Api-Token: " TOKEN "\r\n");
    CHECK_HAS(s->req[0], "\r\nAccept: application/json\r\n");
    CHECK_HAS(s->req[0], "\r\nUser-Agent: nscollect/0.1\r\n");
    CHECK_HAS(s->req[0], "\r\nAccept-Encoding: ");

    /* 3.2 rate limits and server errors: retry, with the wait */
    fetch_expect(c, &q, NS_RETRY, 429, 7);
    fetch_expect(c, &q, NS_RETRY, 429, 3);
    /* 409: no source documents it as a rate limit: a plain failure */
    fetch_expect(c, &q, NS_FAIL, 409, -1);
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_RETRY);      /* 503 */
    char want[160];
    snprintf(want, sizeof want, "HTTP 503 from %s/api/v2/events/data/alert: oops!", url);
    CHECK_STR(r.err, want);

    /* 3.3 the token is refused */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_AUTH);
    CHECK_INT(r.http_code, 401);
    CHECK_HAS(r.err, "token rejected (HTTP 401): create a new REST API v2 token with read "
              "access to /api/v2/events/data/alert and run `nscollect tenant set NAME "
              "--token-file FILE`");
    fetch_expect(c, &q, NS_AUTH, 403, -1);

    /* 3.4 anything else fails the run */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_FAIL);
    snprintf(want, sizeof want, "HTTP 404 from %s/api/v2/events/data/alert", url);
    CHECK_STR(r.err, want);

    /* 3.5 a body over the cap */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_FAIL);
    CHECK_HAS(r.err, "response body larger than 64 bytes");

    /* 3.6 a body cut short of its Content-Length, then a server that hangs */
    fetch_expect(big, &q, NS_RETRY, 200, -1);
    time_t t0 = time(NULL);
    CHECK_INT(ns_fetch_page(big, &q, &r), NS_RETRY);
    CHECK_HAS(r.err, "timed out");
    CHECK_INT(r.timed_out, 1);
    CHECK(time(NULL) - t0 <= 4);

    /* 3.7 event-time window; a trailing slash on the tenant URL */
    char slash[128];
    snprintf(slash, sizeof slash, "%s/", url);
    q.base_url = slash;
    q.window_event = 1;
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_OK);
    CHECK_HAS(s->req[11], "GET /api/v2/events/data/alert?starttime=1700000000"
              "&endtime=1700003600&limit=1000&offset=2000 HTTP/1.1\r\n");

    /* 3.8 redirects are not followed (the token stays with the tenant) */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_FAIL);
    CHECK_HAS(r.err, "HTTP 302 from");
    /* 3.9 Retry-After on a 5xx */
    fetch_expect(c, &q, NS_RETRY, 500, 2);

    /* 3.10 what Netskope said is kept in err */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_FAIL);
    CHECK_HAS(r.err, "HTTP 400 from ");
    CHECK_HAS(r.err, "/api/v2/events/data/alert: limit must be <= 5000");
    CHECK_INT(r.pause_s, -1);
    /* 3.11 ratelimit-remaining: 0 on any reply pauses until ratelimit-reset */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_OK);
    CHECK_INT(r.pause_s, 9);
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_RETRY);
    CHECK_INT(r.pause_s, 1);                            /* no reset given: 1 s */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_OK);
    CHECK_INT(r.pause_s, -1);                           /* requests remain */
    /* 3.12 an echoed token is masked, control characters replaced */
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_AUTH);
    CHECK_HAS(r.err, "(HTTP 403: bad token *** [2J)");
    CHECK(strchr(r.err, '\x1b') == NULL);

    ns_client_free(big);
    ns_client_free(c);
}

/* ---- 4b. a job's big pages reuse one body's storage ------------------- */

#define BIG_BODY (20u << 20)     /* a page of 10000 2 KB page events */

/* TSan faults in its shadow of every write anew: fault counts say nothing there. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* A body above the size kept between jobs (16 MiB) was once freed before
 * every request, so each page of a page-event backlog faulted its 20 MB in
 * again: a quarter of that stream's CPU. Within a job the storage stays;
 * the second page may fault in its few new pages, not 5,120. */
static void test_big_bodies_reuse_storage(void)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n"
                               "Connection: close\r\n\r\n";
    char *resp = malloc(sizeof head + 16 + BIG_BODY);
    CHECK(resp != NULL);
    int n = snprintf(resp, sizeof head + 16, head, BIG_BODY);
    memset(resp + n, 'x', BIG_BODY);
    resp[n + BIG_BODY] = '\0';
    canned s = { .n = 3, .resp = { resp, resp, resp } };
    CHECK_INT(canned_start(&s), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    ns_client *c = client(10, 64u << 20);
    ns_query q;
    ns_reply r;
    query_init(&q, url);

    CHECK_INT(ns_fetch_page(c, &q, &r), NS_OK);
    CHECK_INT((long long)r.body_len, BIG_BODY);
    long before = minor_faults();
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_OK);
    long faults = minor_faults() - before;
    CHECK_INT((long long)r.body_len, BIG_BODY);
#ifdef UNDER_TSAN
    (void)faults;
#else
    if (faults >= (long)(BIG_BODY / 4096) / 4)
        fprintf(stderr, "second big page: %ld page faults\n", faults);
    CHECK(faults < (long)(BIG_BODY / 4096) / 4);
#endif
    /* The job ends: its storage goes (an idle worker holds none); the
     * client still works. */
    ns_client_done(c);
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_OK);
    CHECK_INT((long long)r.body_len, BIG_BODY);
    ns_client_free(c);
    canned_stop(&s);
    free(resp);
}

/* ---- 5. ns_error_text ---------------------------------------------------- */

static void error_text_is(const char *body, const char *want)
{
    char out[256];
    size_t n = ns_error_text(body, strlen(body), out, sizeof out);
    CHECK_STR(out, want);
    CHECK_INT(n, strlen(want));
}

static void test_error_text(void)
{
    char out[256], big[2000];
    error_text_is("{\"message\":\"Invalid request: limit\"}", "Invalid request: limit");
    error_text_is("{\"status\":\"error\",\"errorCode\":\"General Error\","
                  "\"errors\":[\"a is bad\",\"b too\"]}", "a is bad; b too");
    error_text_is("{\"ok\":0,\"reason\":\"quota\\nexceeded\"}", "quota exceeded");
    error_text_is("{\"error\":\"q\\\" injected=1 \\u0041\\u00e9\"}", "q\" injected=1 A?");
    error_text_is("{}", "");
    error_text_is("{\"ok\":0,\"result\":[]}", "");
    error_text_is("", "");
    error_text_is("<html>\r\n<body>502   Bad\tGateway</body>\r\n</html>\r\n",
                  "<html> <body>502 Bad Gateway</body> </html>");
    error_text_is("caf\xc3\xa9 \xff\xfe ok", "caf\xc3\xa9 ?? ok");
    error_text_is("  \x1b[31mred\x07  ", "[31mred");
    /* cut to 200 bytes at a character boundary, marked */
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\0';
    CHECK_INT(ns_error_text(big, strlen(big), out, sizeof out), 203);
    CHECK(strcmp(out + 200, "...") == 0);
    for (int i = 0; i < 300; i++)
        memcpy(big + 2 * i, "\xc3\xa9", 2);
    big[199] = 'y';                               /* shift: byte 200 is inside a character */
    ns_error_text(big, 600, out, sizeof out);
    CHECK(strlen(out) <= 203);
    CHECK(strcmp(out + strlen(out) - 3, "...") == 0);
    CHECK(((unsigned char)out[strlen(out) - 4] & 0xc0) != 0xc0);   /* not a lone lead byte */
    /* a small buffer */
    char tiny[8];
    ns_error_text("{\"message\":\"abcdefghijkl\"}", 26, tiny, sizeof tiny);
    CHECK_STR(tiny, "abcd...");
}

static void test_fetch_local(void)
{
    ns_client *c = client(2, 1024);
    ns_query q;
    ns_reply r;

    /* 4.1 a bad URL or a bad token never reaches the network */
    query_init(&q, "http://acme.goskope.com");
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_FAIL);
    CHECK_HAS(r.err, "must use https://");
    query_init(&q, "http://127.0.0.1:1");
    q.token = "abc\r\nX-Evil: 1";
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_AUTH);
    CHECK_HAS(r.err, "control characters");
    q.token = "";
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_AUTH);

    /* 4.2 connection refused: retry */
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
          getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    close(fd);                      /* nothing listens there now */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    query_init(&q, url);
    CHECK_INT(ns_fetch_page(c, &q, &r), NS_RETRY);
    CHECK_INT(r.http_code, 0);
    CHECK_HAS(r.err, "cannot fetch http://127.0.0.1:");
    check_err_clean(&r);
    ns_client_free(c);
    ns_client_free(NULL);
}

int main(void)
{
    canned s = { .n = (int)(sizeof responses / sizeof responses[0]) };
    char url[64];

    test_url_check();
    test_error_text();
    test_fetch_local();
    for (int i = 0; i < s.n; i++)
        s.resp[i] = responses[i];
    CHECK_INT(canned_start(&s), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    test_fetch_replies(&s, url);
    canned_stop(&s);
    test_big_bodies_reuse_storage();
    CHECK_DONE();
}
