/* oauth.c - see oauth.h. */
#include "google/oauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "base/buf.h"
#include "base/http_share.h"
#include "base/json.h"
#include "base/util.h"
#include "google/jwt.h"

#define REPLY_MAX (64 * 1024)
#define DEFAULT_EXPIRES_IN 300   /* when a token reply has no expires_in */

static long positive_or(long v, long dflt)
{
    return v > 0 ? v : dflt;
}

int oauth_net_init(oauth_net *n, const nsc_config *cfg)
{
    n->connect_s = positive_or(cfg ? cfg->connect_timeout_s : 0, 10);
    n->low_speed_s = positive_or(cfg ? cfg->low_speed_time_s : 0, 30);
    n->total_s = positive_or(cfg ? cfg->total_timeout_s : 0, 300);
    n->ca_bundle = strdup(cfg ? cfg->ca_bundle : "");
    n->proxy = strdup(cfg ? cfg->proxy : "");
    if (n->ca_bundle && n->proxy)
        return 0;
    oauth_net_clear(n);
    return -1;
}

void oauth_net_clear(oauth_net *n)
{
    free(n->ca_bundle);
    free(n->proxy);
    n->ca_bundle = n->proxy = NULL;
}


static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

static void http_setup(const oauth_net *net, int metadata, CURL *h, const char *url, buf *resp)
{
    int loopback = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    http_abort_on_shutdown(h);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, net->connect_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, net->total_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, net->low_speed_s);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (net->ca_bundle[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, net->ca_bundle);
    http_url_check(url, &loopback, NULL, 0);
    if (metadata || loopback)
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    else if (net->proxy[0])
        curl_easy_setopt(h, CURLOPT_PROXY, net->proxy);
}

static oauth_result classify_status(long status)
{
    if (status == 408 || status == 429 || status >= 500)
        return OAUTH_RETRY;
    return OAUTH_FATAL;
}

/* "invalid_grant: Invalid JWT Signature." from an error reply, printable
 * ASCII only and short, or "" when the body says nothing usable. */
static void reply_reason(const buf *resp, char *out, size_t outlen)
{
    char *e = NULL, *desc = NULL;
    out[0] = '\0';
    if (!resp->len)
        return;
    e = json_string(resp->data, resp->len, "error", NULL);
    if (e)
        desc = json_string(resp->data, resp->len, "error_description", NULL);
    else
        e = json_string(resp->data, resp->len, "error", "message");
    if (e)
        snprintf(out, outlen, ": %.100s%s%.200s", e, desc ? ": " : "", desc ? desc : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    free(e);
    free(desc);
}

/* Perform the request; fills *status (0 when no HTTP reply came). */
static oauth_result http_do(const oauth_net *net, int metadata, const char *url, const char *post,
                            struct curl_slist *hdrs, buf *resp, long *status,
                            char *err, size_t errlen)
{
    oauth_result rc = OAUTH_RETRY;
    CURL *h = curl_easy_init();
    *status = 0;
    if (!h) {
        seterr(err, errlen, "cannot start libcurl");
        return OAUTH_RETRY;
    }
    http_setup(net, metadata, h, url, resp);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (post)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        rc = OAUTH_OK;
    } else if (cc == CURLE_COULDNT_RESOLVE_HOST && metadata) {
        seterr(err, errlen, "no Google credentials: no key file is configured, "
             "GOOGLE_APPLICATION_CREDENTIALS is unset, and the metadata server cannot be "
             "resolved (%s): not running on Google Cloud?", curl_easy_strerror(cc));
        rc = OAUTH_FATAL;
    } else {
        seterr(err, errlen, "token request to '%s' failed: %s", url, curl_easy_strerror(cc));
    }
    curl_easy_cleanup(h);
    return rc;
}

/* Take access_token and expires_in from a 200 reply. */
static oauth_result token_parse(const buf *resp, const char *url, char *tok, size_t toklen,
                                long *expires_in, char *err, size_t errlen)
{
    oauth_result rc = OAUTH_RETRY;
    json_doc d = {0};
    char *t = NULL;
    if (json_parse(&d, resp->data ? resp->data : "", resp->len) < 0 ||
        !(t = json_get_string(&d, 0, "access_token")) || !*t) {
        seterr(err, errlen, "token reply from '%s' has no access_token", url);
        goto out;
    }
    if (strlen(t) >= toklen || strlen(t) >= OAUTH_TOKEN_MAX) {
        seterr(err, errlen, "token reply from '%s': access_token longer than %d bytes",
             url, OAUTH_TOKEN_MAX - 1);
        rc = OAUTH_FATAL;
        goto out;
    }
    if (json_get_long(&d, 0, "expires_in", expires_in) < 0 || *expires_in <= 0)
        *expires_in = DEFAULT_EXPIRES_IN;
    snprintf(tok, toklen, "%s", t);
    rc = OAUTH_OK;
out:
    free_secret(t);
    json_release(&d);
    return rc;
}

/* Turn a finished exchange into a token or a message naming the source. */
static oauth_result token_reply(const char *who, const char *url, const buf *resp, long status,
                                char *tok, size_t toklen, long *expires_in,
                                char *err, size_t errlen)
{
    char why[384];
    if (status == 200)
        return token_parse(resp, url, tok, toklen, expires_in, err, errlen);
    reply_reason(resp, why, sizeof why);
    seterr(err, errlen, "token request to '%s' for %s failed (HTTP %ld)%s", url, who,
         status, why);
    return classify_status(status);
}

oauth_result oauth_key_token(const oauth_net *net, const sa_key *key, const char *scope,
                             const char *who, char *tok, size_t toklen, long *expires_in,
                             char *err, size_t errlen)
{
    oauth_result rc = OAUTH_FATAL;
    char *jwt = NULL;
    buf form, resp;
    long status = 0;
    struct curl_slist *hdrs = NULL;
    buf_init(&form, 0);
    buf_init(&resp, REPLY_MAX);
    if (jwt_sign(key->pkey, key->kid, key->email, scope, key->token_uri, (long long)time(NULL),
                 &jwt, err, errlen) < 0)
        goto out;
    if (buf_printf(&form, "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer"
                   "&assertion=%s", jwt) < 0 ||
        !(hdrs = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded"))) {
        seterr(err, errlen, "cannot build the token request: out of memory");
        goto out;
    }
    rc = http_do(net, 0, key->token_uri, form.data, hdrs, &resp, &status, err, errlen);
    if (rc == OAUTH_OK)
        rc = token_reply(who, key->token_uri, &resp, status, tok, toklen, expires_in, err, errlen);
out:
    curl_slist_free_all(hdrs);
    free_secret(jwt);
    buf_wipe(&form);
    buf_wipe(&resp);
    return rc;
}

oauth_result oauth_metadata_token(const oauth_net *net, const char *url, const char *who,
                                  char *tok, size_t toklen, long *expires_in,
                                  char *err, size_t errlen)
{
    oauth_result rc = OAUTH_RETRY;
    buf resp;
    long status = 0;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Metadata-Flavor: Google");
    buf_init(&resp, REPLY_MAX);
    if (!hdrs) {
        seterr(err, errlen, "cannot build the token request: out of memory");
        goto out;
    }
    rc = http_do(net, 1, url, NULL, hdrs, &resp, &status, err, errlen);
    if (rc == OAUTH_OK)
        rc = token_reply(who, url, &resp, status, tok, toklen, expires_in, err, errlen);
out:
    curl_slist_free_all(hdrs);
    buf_wipe(&resp);
    return rc;
}
