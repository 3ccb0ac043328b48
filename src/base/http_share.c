/* http_share.c - see http_share.h. */
#include "base/http_share.h"

#include "base/shutdown.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <stdlib.h>

struct http_share {
    CURLSH *sh;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
};

static void lock_cb(CURL *h, curl_lock_data data, curl_lock_access access, void *ptr)
{
    (void)h;
    (void)access;
    pthread_mutex_lock(&((http_share *)ptr)->locks[data]);
}

static void unlock_cb(CURL *h, curl_lock_data data, void *ptr)
{
    (void)h;
    pthread_mutex_unlock(&((http_share *)ptr)->locks[data]);
}

http_share *http_share_new(void)
{
    http_share *s = calloc(1, sizeof *s);
    if (!s || !(s->sh = curl_share_init())) {
        free(s);
        return NULL;
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&s->locks[i], NULL);
    curl_share_setopt(s->sh, CURLSHOPT_LOCKFUNC, lock_cb);
    curl_share_setopt(s->sh, CURLSHOPT_UNLOCKFUNC, unlock_cb);
    curl_share_setopt(s->sh, CURLSHOPT_USERDATA, s);
    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    return s;
}

void http_share_free(http_share *s)
{
    if (!s)
        return;
    curl_share_cleanup(s->sh);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&s->locks[i]);
    free(s);
}

void *http_share_handle(http_share *s)
{
    return s ? s->sh : NULL;
}

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)p, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return shutdown_requested();
}

void http_abort_on_shutdown(void *h)
{
    curl_easy_setopt((CURL *)h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt((CURL *)h, CURLOPT_NOPROGRESS, 0L);
}

int http_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char v6[64];
    size_t n = strlen(host);
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (n < 3 || n - 2 >= sizeof v6 || host[0] != '[' || host[n - 1] != ']')
        return 0;
    memcpy(v6, host + 1, n - 2);
    v6[n - 2] = '\0';
    return inet_pton(AF_INET6, v6, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int http_url_check(const char *url, int *loopback, char *err, size_t errlen)
{
    int rc = -1;
    char *scheme = NULL, *host = NULL;
    CURLU *u = curl_url();
    if (loopback)
        *loopback = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        seterr(err, errlen, "'%s' is not a valid URL", url);
        goto out;
    }
    int lo = http_host_is_loopback(host);
    if (loopback)
        *loopback = lo;
    if (strcmp(scheme, "https") != 0 && !(strcmp(scheme, "http") == 0 && lo)) {
        seterr(err, errlen, "'%s' must be https:// (http:// only for loopback hosts)", url);
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}
