/* gapi.c - see gapi.h. */
#include "google/gapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/http_share.h"
#include "base/json.h"
#include "google/gauth.h"

/* Keep the first GAPI_REPLY_KEEP bytes of a reply; drop the rest quietly. */
static size_t on_reply(char *p, size_t size, size_t n, void *ud)
{
    buf *b = ud;
    size_t total = size * n, room = GAPI_REPLY_KEEP - b->len;
    if (b->len < GAPI_REPLY_KEEP)
        buf_append(b, p, total < room ? total : room);
    return total;
}

static long positive_or(long v, long dflt)
{
    return v > 0 ? v : dflt;
}

int gapi_init(gapi *g, const nsc_config *cfg, int loopback, int forbid_reuse)
{
    buf_init(&g->reply, GAPI_REPLY_KEEP);
    CURL *h = g->curl = curl_easy_init();
    if (!h)
        return -1;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    http_abort_on_shutdown(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, g->curl_err);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, positive_or(cfg ? cfg->connect_timeout_s : 0, 10));
    curl_easy_setopt(h, CURLOPT_TIMEOUT, positive_or(cfg ? cfg->total_timeout_s : 0, 300));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, positive_or(cfg ? cfg->low_speed_time_s : 0, 30));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_reply);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &g->reply);
    if (forbid_reuse)
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    if (cfg && cfg->ca_bundle[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_bundle);
    if (loopback)
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    else if (cfg && cfg->proxy[0])
        curl_easy_setopt(h, CURLOPT_PROXY, cfg->proxy);
    return 0;
}

void gapi_release(gapi *g)
{
    if (g->curl)
        curl_easy_cleanup(g->curl);
    g->curl = NULL;
    buf_release(&g->reply);
}

int gapi_endpoint(char *out, size_t outlen, const char *prefix, const char *url,
                  const char *what, int *loopback, char *err, size_t errlen)
{
    char why[CONFIG_PATH_MAX + 128];
    snprintf(out, outlen, "%s%s", prefix, url);
    size_t n = strlen(out);
    while (n && out[n - 1] == '/')
        out[--n] = '\0';
    if (http_url_check(out, loopback, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "%s %s", what, why);
    return -1;
}

/* Free a header list after wiping it: one entry holds the token. */
static void headers_free(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p; p = p->next)
        OPENSSL_cleanse(p->data, strlen(p->data));
    curl_slist_free_all(h);
}

static struct curl_slist *headers_make(const char *token, const char *content_type)
{
    struct curl_slist *h = NULL, *t;
    char line[GAUTH_TOKEN_MAX + 64];
    if (content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", content_type);
        if (!(t = curl_slist_append(h, line)))
            goto fail_out;
        h = t;
    }
    if (!(t = curl_slist_append(h, "Expect:")))
        goto fail_out;
    h = t;
    if (token[0]) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        t = curl_slist_append(h, line);
        OPENSSL_cleanse(line, sizeof line);
        if (!t)
            goto fail_out;
        h = t;
    }
    return h;
fail_out:
    headers_free(h);
    return NULL;
}

CURLcode gapi_request(gapi *g, const char *url, const char *token, const char *content_type,
                      const void *data, size_t len, long *status)
{
    struct curl_slist *hdrs = headers_make(token, data ? content_type : NULL);
    *status = 0;
    if (!hdrs)
        return CURLE_OUT_OF_MEMORY;
    buf_reset(&g->reply);
    g->curl_err[0] = '\0';
    curl_easy_setopt(g->curl, CURLOPT_URL, url);
    curl_easy_setopt(g->curl, CURLOPT_HTTPHEADER, hdrs);
    if (data) {
        curl_easy_setopt(g->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(g->curl, CURLOPT_POSTFIELDS, len ? data : "");
        curl_easy_setopt(g->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(g->curl, CURLOPT_HTTPGET, 1L);
    }
    CURLcode cc = curl_easy_perform(g->curl);
    if (cc == CURLE_OK)
        curl_easy_getinfo(g->curl, CURLINFO_RESPONSE_CODE, status);
    curl_easy_setopt(g->curl, CURLOPT_HTTPHEADER, NULL);
    headers_free(hdrs);
    return cc;
}

void gapi_reply_message(const gapi *g, char *out, size_t outlen)
{
    char *m = g->reply.len ? json_string(g->reply.data, g->reply.len, "error", "message")
                           : NULL;
    out[0] = '\0';
    if (m && strlen(m) <= 300)
        snprintf(out, outlen, ": %s", m);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    free(m);
}

const char *gapi_transport_error(const gapi *g, CURLcode cc)
{
    return g->curl_err[0] ? g->curl_err : curl_easy_strerror(cc);
}

int gapi_transport_permanent(CURLcode cc, int *tls)
{
    *tls = cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE;
    return *tls || cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_URL_MALFORMAT;
}
