/* gauth.c - see gauth.h. The key, the assertion and the HTTP exchange live
 * in sa_key.c, jwt.c and oauth.c; this file chooses the source, caches its
 * token and shares one cache per (source, scope) across the process. */
#include "google/gauth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/counters.h"
#include "base/log.h"
#include "base/util.h"
#include "google/sa_key.h"

#define METADATA_HOST "metadata.google.internal"
#define METADATA_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define SCOPE_MAX 512

enum source_kind { SRC_KEY_FILE, SRC_METADATA };

typedef struct source {
    enum source_kind kind;
    char where[CONFIG_PATH_MAX];   /* key file path, or metadata host */
    char scope[SCOPE_MAX];
} source;

struct gauth {
    source src;
    sa_key key;                    /* SRC_KEY_FILE */
    char *metadata_url;            /* SRC_METADATA */
    oauth_net net;
    char describe[CONFIG_PATH_MAX + 256];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char token[GAUTH_TOKEN_MAX];   /* "" when none */
    int64_t stale_at;              /* mono_ms() when a refresh is due */
    int refreshing;
    unsigned long refresh_seq;     /* bumped when a refresh ends */
    oauth_result last_rc;
    char last_err[512];
};

/* ---- sources and lifecycle ---- */

static void source_resolve(const char *key_file, const char *scope, const nsc_config *cfg,
                           source *s)
{
    const char *env;
    s->where[0] = '\0';
    snprintf(s->scope, sizeof s->scope, "%s", scope ? scope : "");
    if (key_file && *key_file) {
        s->kind = SRC_KEY_FILE;
        snprintf(s->where, sizeof s->where, "%s", key_file);
    } else if (cfg && cfg->gcs_credentials[0]) {
        s->kind = SRC_KEY_FILE;
        snprintf(s->where, sizeof s->where, "%s", cfg->gcs_credentials);
    } else if ((env = getenv("GOOGLE_APPLICATION_CREDENTIALS")) && *env) {
        s->kind = SRC_KEY_FILE;
        snprintf(s->where, sizeof s->where, "%s", env);
    } else {
        s->kind = SRC_METADATA;
        env = getenv("GCE_METADATA_HOST");
        snprintf(s->where, sizeof s->where, "%s", env && *env ? env : METADATA_HOST);
    }
}

static int metadata_setup(gauth *g, const char *host)
{
    size_t n = strlen(host) + sizeof "http://" + sizeof METADATA_PATH;
    g->metadata_url = malloc(n);
    if (!g->metadata_url)
        return -1;
    snprintf(g->metadata_url, n, "http://%s%s", host, METADATA_PATH);
    snprintf(g->describe, sizeof g->describe,
             "the default service account of the metadata server '%s'", host);
    return 0;
}

static gauth *gauth_create(const source *s, const nsc_config *cfg, char *err, size_t errlen)
{
    gauth *g = calloc(1, sizeof *g);
    if (!g) {
        seterr(err, errlen, "cannot set up Google credentials: out of memory");
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->src = *s;
    if (oauth_net_init(&g->net, cfg) < 0)
        goto oom;
    if (s->kind == SRC_METADATA) {
        if (metadata_setup(g, s->where) < 0)
            goto oom;
    } else {
        if (sa_key_load(&g->key, s->where, err, errlen) < 0)
            goto fail_out;
        snprintf(g->describe, sizeof g->describe, "service account '%s' (key file '%s')",
                 g->key.email, s->where);
    }
    return g;
oom:
    seterr(err, errlen, "cannot set up Google credentials: out of memory");
fail_out:
    gauth_free(g);
    return NULL;
}

gauth *gauth_new(const char *key_file, const char *scope, const nsc_config *cfg,
                 char *err, size_t errlen)
{
    source s;
    source_resolve(key_file, scope, cfg, &s);
    return gauth_create(&s, cfg, err, errlen);
}

void gauth_free(gauth *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    OPENSSL_cleanse(g->token, sizeof g->token);
    sa_key_clear(&g->key);
    free(g->metadata_url);
    oauth_net_clear(&g->net);
    free(g);
}

const char *gauth_describe(const gauth *g)
{
    return g->describe;
}

/* ---- the token cache ---- */

static int token_fresh(const gauth *g)
{
    return g->token[0] && mono_ms() < g->stale_at;
}

static int token_copy(const gauth *g, char *out, size_t outlen, char *err, size_t errlen)
{
    if (strlen(g->token) >= outlen) {
        out[0] = '\0';
        return seterr(err, errlen, "access token does not fit the caller's buffer");
    }
    memcpy(out, g->token, strlen(g->token) + 1);
    return 0;
}

static oauth_result fetch_token(const gauth *g, char *tok, size_t toklen, long *expires_in,
                                char *err, size_t errlen)
{
    if (g->src.kind == SRC_KEY_FILE)
        return oauth_key_token(&g->net, &g->key, g->src.scope, g->describe, tok, toklen,
                               expires_in, err, errlen);
    return oauth_metadata_token(&g->net, g->metadata_url, g->describe, tok, toklen,
                                expires_in, err, errlen);
}

/* Called with g->mu held; drops it while the network request runs. */
static oauth_result refresh_locked(gauth *g, char *err, size_t errlen)
{
    char tok[GAUTH_TOKEN_MAX];
    long expires_in = 0;
    g->refreshing = 1;
    pthread_mutex_unlock(&g->mu);
    oauth_result rc = fetch_token(g, tok, sizeof tok, &expires_in, err, errlen);
    pthread_mutex_lock(&g->mu);
    if (rc == OAUTH_OK) {
        counters_token_refresh();
        long long life_ms = expires_in * 1000LL, margin_ms = GAUTH_REFRESH_MARGIN_S * 1000LL;
        if (margin_ms > life_ms / 2)
            margin_ms = life_ms / 2;
        OPENSSL_cleanse(g->token, sizeof g->token);
        memcpy(g->token, tok, strlen(tok) + 1);
        g->stale_at = mono_ms() + life_ms - margin_ms;
        log_debug("google credentials refreshed: %s expires_in=%ld", g->describe, expires_in);
    }
    OPENSSL_cleanse(tok, sizeof tok);
    g->last_rc = rc;
    snprintf(g->last_err, sizeof g->last_err, "%s", rc == OAUTH_OK ? "" : err);
    g->refreshing = 0;
    g->refresh_seq++;
    pthread_cond_broadcast(&g->cv);
    return rc;
}

static oauth_result token_locked(gauth *g, char *out, size_t outlen, char *err, size_t errlen)
{
    unsigned long seen = g->refresh_seq;
    for (;;) {
        if (token_fresh(g))
            return token_copy(g, out, outlen, err, errlen) == 0 ? OAUTH_OK : OAUTH_FATAL;
        if (!g->refreshing) {
            oauth_result rc = refresh_locked(g, err, errlen);
            if (rc != OAUTH_OK)
                return rc;
            return token_copy(g, out, outlen, err, errlen) == 0 ? OAUTH_OK : OAUTH_FATAL;
        }
        pthread_cond_wait(&g->cv, &g->mu);
        if (g->refresh_seq != seen && !g->refreshing && !token_fresh(g) && g->last_rc != OAUTH_OK) {
            seterr(err, errlen, "%s", g->last_err);
            return g->last_rc;
        }
    }
}

oauth_result gauth_token(gauth *g, char *out, size_t outlen, char *err, size_t errlen)
{
    if (outlen)
        out[0] = '\0';
    pthread_mutex_lock(&g->mu);
    oauth_result rc = token_locked(g, out, outlen, err, errlen);
    pthread_mutex_unlock(&g->mu);
    return rc;
}

void gauth_invalidate(gauth *g, const char *token)
{
    if (!token)
        return;
    pthread_mutex_lock(&g->mu);
    if (g->token[0] && strcmp(g->token, token) == 0)
        g->stale_at = 0;
    pthread_mutex_unlock(&g->mu);
}

/* ---- the process-wide registry ---- */

typedef struct reg_entry {
    struct reg_entry *next;
    int refs;
    gauth *g;
} reg_entry;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg_head;

static reg_entry *reg_find(const source *s)
{
    for (reg_entry *e = reg_head; e; e = e->next)
        if (e->g->src.kind == s->kind && strcmp(e->g->src.where, s->where) == 0 &&
            strcmp(e->g->src.scope, s->scope) == 0)
            return e;
    return NULL;
}

gauth *gauth_acquire(const char *key_file, const char *scope, const nsc_config *cfg,
                     char *err, size_t errlen)
{
    source s;
    gauth *g = NULL;
    source_resolve(key_file, scope, cfg, &s);
    pthread_mutex_lock(&reg_mu);
    reg_entry *e = reg_find(&s);
    if (e) {
        e->refs++;
        g = e->g;
    } else if ((e = calloc(1, sizeof *e)) == NULL) {
        seterr(err, errlen, "cannot set up Google credentials: out of memory");
    } else if ((g = gauth_create(&s, cfg, err, errlen)) == NULL) {
        free(e);
    } else {
        e->refs = 1;
        e->g = g;
        e->next = reg_head;
        reg_head = e;
    }
    pthread_mutex_unlock(&reg_mu);
    return g;
}

void gauth_release(gauth *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&reg_mu);
    for (reg_entry **pp = &reg_head; *pp; pp = &(*pp)->next) {
        reg_entry *e = *pp;
        if (e->g != g)
            continue;
        if (--e->refs == 0) {
            *pp = e->next;
            gauth_free(e->g);
            free(e);
        }
        break;
    }
    pthread_mutex_unlock(&reg_mu);
}
