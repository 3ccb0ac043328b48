/* gauth.c - see gauth.h. JSON with jsmn, JWT with OpenSSL EVP, HTTP with
 * libcurl. Every buffer that held a token, a JWT or a private key is wiped
 * with OPENSSL_cleanse before it is freed. */
#include "google/gauth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "base/http_share.h"

#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define METADATA_HOST "metadata.google.internal"
#define METADATA_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define JWT_LIFETIME_S 3600
#define KEY_FILE_MAX (64 * 1024)
#define REPLY_MAX (64 * 1024)
#define JSON_MAX_TOKENS 4096
#define DEFAULT_EXPIRES_IN 300   /* when a token reply has no expires_in */

enum source_kind { SRC_NONE, SRC_KEY_FILE, SRC_METADATA };

typedef struct source {
    enum source_kind kind;
    char where[CONFIG_PATH_MAX];   /* key file path, or metadata host */
} source;

struct gauth {
    enum source_kind kind;
    char *key_path, *email, *kid, *token_uri, *metadata_url;
    EVP_PKEY *pkey;
    char describe[CONFIG_PATH_MAX + 256];

    char *ca_bundle, *proxy;
    long connect_s, low_speed_s, total_s;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char token[GAUTH_TOKEN_MAX];   /* "" when none */
    int64_t stale_at;              /* mono_ms() when a refresh is due */
    int refreshing;
    unsigned long refresh_seq;     /* bumped when a refresh ends */
    gauth_result last_rc;
    char last_err[512];
};

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void buf_wipe(buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap);
    buf_release(b);
}

/* ---- JSON (jsmn) ---- */

typedef struct json_doc {
    const char *js;
    jsmntok_t *t;
    int n;
} json_doc;

/* Tokenize js[0, len); 0 when it is a JSON object, else -1. */
static int json_parse(json_doc *d, const char *js, size_t len)
{
    jsmn_parser p;
    d->js = js;
    d->t = NULL;
    jsmn_init(&p);
    d->n = jsmn_parse(&p, js, len, NULL, 0);
    if (d->n <= 0 || d->n > JSON_MAX_TOKENS)
        return -1;
    d->t = calloc((size_t)d->n, sizeof *d->t);
    if (!d->t)
        return -1;
    jsmn_init(&p);
    if (jsmn_parse(&p, js, len, d->t, (unsigned)d->n) != d->n || d->t[0].type != JSMN_OBJECT) {
        free(d->t);
        d->t = NULL;
        return -1;
    }
    return 0;
}

static void json_release(json_doc *d)
{
    free(d->t);
    d->t = NULL;
}

/* Index just past the value that starts at token i. */
static int json_skip(const json_doc *d, int i)
{
    int pending = 1;
    while (pending > 0 && i < d->n) {
        pending += d->t[i].size - 1;
        i++;
    }
    return i;
}

/* Index of the value of key in the object at token obj, or -1. */
static int json_find(const json_doc *d, int obj, const char *key)
{
    if (obj < 0 || obj >= d->n || d->t[obj].type != JSMN_OBJECT)
        return -1;
    size_t klen = strlen(key);
    int i = obj + 1;
    for (int c = 0; c < d->t[obj].size && i + 1 < d->n; c++) {
        const jsmntok_t *k = &d->t[i];
        if (k->type == JSMN_STRING && (size_t)(k->end - k->start) == klen &&
            memcmp(d->js + k->start, key, klen) == 0)
            return i + 1;
        i = json_skip(d, i);
    }
    return -1;
}

static int hex4(const char *s, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int x = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (x < 0)
            return -1;
        *v = *v << 4 | (unsigned)x;
    }
    return 0;
}

static size_t utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode a \uXXXX escape (and its low surrogate) at s[*i] (just past the
 * 'u'); -1 for a lone surrogate or U+0000. */
static int unescape_u(const char *s, size_t n, size_t *i, unsigned *cp)
{
    if (*i + 4 > n || hex4(s + *i, cp) < 0)
        return -1;
    *i += 4;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF)
        return -1;
    if (*cp >= 0xD800 && *cp <= 0xDBFF) {
        unsigned lo;
        if (*i + 6 > n || s[*i] != '\\' || s[*i + 1] != 'u' || hex4(s + *i + 2, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return -1;
        *i += 6;
        *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    return *cp == 0 ? -1 : 0;
}

/* One escape at s[*i] (just past the backslash) into o; bytes written or -1. */
static int unescape_one(const char *s, size_t n, size_t *i, char *o)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (*i >= n)
        return -1;
    char c = s[(*i)++];
    const char *p = strchr(from, c);
    if (c && p) {
        *o = to[p - from];
        return 1;
    }
    unsigned cp;
    if (c != 'u' || unescape_u(s, n, i, &cp) < 0)
        return -1;
    return (int)utf8_put(o, cp);
}

/* Decoded copy of the JSON string body s[0, n); malloc'd, or NULL. The
 * result is never longer than the input. */
static char *json_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        i++;
        int w = unescape_one(s, n, &i, out + o);
        if (w < 0) {
            OPENSSL_cleanse(out, n + 1);
            free(out);
            return NULL;
        }
        o += (size_t)w;
    }
    out[o] = '\0';
    return out;
}

/* The decoded string value of key in the object at obj; malloc'd or NULL. */
static char *json_get_string(const json_doc *d, int obj, const char *key)
{
    int v = json_find(d, obj, key);
    if (v < 0 || d->t[v].type != JSMN_STRING)
        return NULL;
    return json_unescape(d->js + d->t[v].start, (size_t)(d->t[v].end - d->t[v].start));
}

/* The integer value of key in the object at obj; 0, or -1 when absent. */
static int json_get_long(const json_doc *d, int obj, const char *key, long *out)
{
    int v = json_find(d, obj, key);
    if (v < 0 || d->t[v].type != JSMN_PRIMITIVE)
        return -1;
    char num[32];
    int len = d->t[v].end - d->t[v].start;
    if (len <= 0 || len >= (int)sizeof num)
        return -1;
    memcpy(num, d->js + d->t[v].start, (size_t)len);
    num[len] = '\0';
    char *end;
    errno = 0;
    *out = strtol(num, &end, 10);
    return errno || (*end && *end != '.') ? -1 : 0;
}

char *gauth_json_string(const char *js, size_t len, const char *key1, const char *key2)
{
    json_doc d;
    if (json_parse(&d, js, len) < 0)
        return NULL;
    char *s = NULL;
    if (!key2)
        s = json_get_string(&d, 0, key1);
    else
        s = json_get_string(&d, json_find(&d, 0, key1), key2);
    json_release(&d);
    return s;
}

/* ---- base64url, JWT ---- */

size_t gauth_b64url(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return (size_t)len;
}

static int buf_append_b64url(buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, 4 * ((n + 2) / 3)) < 0)
        return -1;
    b->len += gauth_b64url(p, n, b->data + b->len);
    return 0;
}

/* Append s as a JSON string literal. */
static int buf_append_json_str(buf *b, const char *s)
{
    int rc = buf_append_char(b, '"');
    for (; *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            rc = buf_printf(b, "\\u%04x", c);
        else
            rc = buf_append_char(b, (char)c);
    }
    return rc ? rc : buf_append_char(b, '"');
}

static int jwt_header(buf *b, const char *kid)
{
    int rc = buf_append_str(b, "{\"alg\":\"RS256\",\"typ\":\"JWT\"");
    if (kid && *kid) {
        rc |= buf_append_str(b, ",\"kid\":");
        rc |= buf_append_json_str(b, kid);
    }
    return rc | buf_append_char(b, '}');
}

static int jwt_claims(buf *b, const char *iss, const char *aud, long long iat)
{
    int rc = buf_append_str(b, "{\"iss\":");
    rc |= buf_append_json_str(b, iss);
    rc |= buf_append_str(b, ",\"scope\":\"" GAUTH_SCOPE "\",\"aud\":");
    rc |= buf_append_json_str(b, aud);
    rc |= buf_printf(b, ",\"iat\":%lld,\"exp\":%lld}", iat, iat + JWT_LIFETIME_S);
    return rc;
}

/* RSA PKCS#1 v1.5 signature over SHA-256 of data; *sig malloc'd. */
static int rs256_sign(EVP_PKEY *pk, const char *data, size_t n, unsigned char **sig,
                      size_t *siglen)
{
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    *sig = NULL;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk) != 1 ||
        EVP_DigestSign(ctx, NULL, siglen, (const unsigned char *)data, n) != 1)
        goto out;
    *sig = malloc(*siglen);
    if (!*sig || EVP_DigestSign(ctx, *sig, siglen, (const unsigned char *)data, n) != 1)
        goto out;
    rc = 0;
out:
    if (rc < 0) {
        free(*sig);
        *sig = NULL;
        ERR_clear_error();
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int jwt_build(EVP_PKEY *pk, const char *kid, const char *iss, const char *aud,
                     long long iat, char **jwt, char *err, size_t errlen)
{
    int rc = -1;
    const char *why = "out of memory";
    buf part, out;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    buf_init(&part, 0);
    buf_init(&out, 0);
    *jwt = NULL;
    if (jwt_header(&part, kid) || buf_append_b64url(&out, part.data, part.len) ||
        buf_append_char(&out, '.'))
        goto out;
    buf_reset(&part);
    if (jwt_claims(&part, iss, aud, iat) || buf_append_b64url(&out, part.data, part.len))
        goto out;
    if (rs256_sign(pk, out.data, out.len, &sig, &siglen) < 0) {
        why = "the service account's key cannot sign";
        goto out;
    }
    if (buf_append_char(&out, '.') || buf_append_b64url(&out, sig, siglen))
        goto out;
    *jwt = buf_detach(&out, NULL);
    rc = 0;
out:
    if (rc < 0)
        seterr(err, errlen, "cannot build the token request: %s", why);
    free(sig);
    buf_release(&part);
    buf_wipe(&out);
    return rc;
}

/* Never prompt for a passphrase: an encrypted key is an error. */
static int no_passphrase(char *b, int size, int rwflag, void *u)
{
    (void)b, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* Parse a PEM RSA private key; NULL when it is not one. */
static EVP_PKEY *pem_private_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (pk && EVP_PKEY_base_id(pk) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    if (!pk)
        ERR_clear_error();
    return pk;
}

int gauth_jwt_make(const char *pem, const char *kid, const char *iss, const char *aud,
                   long long iat, char **jwt, char *err, size_t errlen)
{
    EVP_PKEY *pk = pem_private_key(pem);
    if (!pk)
        return seterr(err, errlen, "private key is not a valid PEM RSA private key");
    int rc = jwt_build(pk, kid, iss, aud, iat, jwt, err, errlen);
    EVP_PKEY_free(pk);
    return rc;
}

/* ---- URLs ---- */

int gauth_url_check(const char *url, int *loopback, char *err, size_t errlen)
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

unsigned gcs_backoff_ms(int attempt, unsigned rnd)
{
    unsigned ceiling = 1000;
    for (int i = 0; i < attempt && ceiling < 60000; i++)
        ceiling *= 2;
    if (ceiling > 60000)
        ceiling = 60000;
    return rnd % (ceiling + 1);
}

/* ---- key files ---- */

static int key_file_read(const char *path, char **text, size_t *n, char *err, size_t errlen)
{
    int rc = -1, fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *text = NULL;
    if (fd < 0 || fstat(fd, &st) < 0) {
        seterr(err, errlen, "cannot read key file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
        seterr(err, errlen, "key file '%s' is not a regular file of at most %d bytes",
             path, KEY_FILE_MAX);
        goto out;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH))
        log_warn("key file '%s' is readable by group or others; run: chmod 600 '%s'", path, path);
    if (!(*text = malloc((size_t)st.st_size + 1))) {
        seterr(err, errlen, "cannot read key file '%s': out of memory", path);
        goto out;
    }
    *n = 0;
    for (ssize_t got = 1; got > 0 && *n < (size_t)st.st_size; *n += (size_t)got) {
        got = read(fd, *text + *n, (size_t)st.st_size - *n);
        if (got < 0) {
            seterr(err, errlen, "cannot read key file '%s': %s", path, strerror(errno));
            goto out;
        }
    }
    (*text)[*n] = '\0';
    rc = 0;
out:
    if (rc < 0 && *text) {
        OPENSSL_cleanse(*text, *n);
        free(*text);
        *text = NULL;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Copy a required string field of the key file into *out. */
static int key_field(const json_doc *d, const char *path, const char *key, char **out,
                     char *err, size_t errlen)
{
    *out = json_get_string(d, 0, key);
    if (!*out || !**out)
        return seterr(err, errlen, "key file '%s' has no '%s' string", path, key);
    return 0;
}

static int key_type_check(const json_doc *d, const char *path, char *err, size_t errlen)
{
    char *type = json_get_string(d, 0, "type");
    int rc = 0;
    if (!type)
        rc = seterr(err, errlen, "key file '%s' has no 'type': expected a service account key", path);
    else if (strcmp(type, "service_account") != 0)
        rc = seterr(err, errlen, "key file '%s' has type '%.64s': only service_account keys "
                  "are supported", path, type);
    free(type);
    return rc;
}

static int key_token_uri(gauth *g, const json_doc *d, const char *path, char *err, size_t errlen)
{
    char why[512];
    g->token_uri = json_get_string(d, 0, "token_uri");
    if (!g->token_uri)
        g->token_uri = strdup(DEFAULT_TOKEN_URI);
    if (!g->token_uri)
        return seterr(err, errlen, "out of memory");
    if (gauth_url_check(g->token_uri, NULL, why, sizeof why) < 0)
        return seterr(err, errlen, "key file '%s': token_uri %s", path, why);
    return 0;
}

static int key_private_key(gauth *g, const json_doc *d, const char *path, char *err,
                           size_t errlen)
{
    char *pem = NULL;
    if (key_field(d, path, "private_key", &pem, err, errlen) < 0) {
        free_secret(pem);
        return -1;
    }
    g->pkey = pem_private_key(pem);
    free_secret(pem);
    if (!g->pkey)
        return seterr(err, errlen, "key file '%s': private_key is not a valid PEM RSA private key",
                    path);
    return 0;
}

static int key_file_load(gauth *g, const char *path, char *err, size_t errlen)
{
    int rc = -1;
    char *text = NULL;
    size_t n = 0;
    json_doc d = {0};
    if (key_file_read(path, &text, &n, err, errlen) < 0)
        goto out;
    if (json_parse(&d, text, n) < 0) {
        seterr(err, errlen, "key file '%s' is not a JSON object", path);
        goto out;
    }
    if (key_type_check(&d, path, err, errlen) < 0 ||
        key_field(&d, path, "client_email", &g->email, err, errlen) < 0 ||
        key_private_key(g, &d, path, err, errlen) < 0 ||
        key_token_uri(g, &d, path, err, errlen) < 0)
        goto out;
    g->kid = json_get_string(&d, 0, "private_key_id");
    rc = 0;
out:
    json_release(&d);
    if (text) {
        OPENSSL_cleanse(text, n);
        free(text);
    }
    return rc;
}

/* ---- sources and lifecycle ---- */

static void source_resolve(const char *key_file, const nsc_config *cfg, source *s)
{
    const char *env;
    s->where[0] = '\0';
    if ((env = getenv("STORAGE_EMULATOR_HOST")) && *env) {
        s->kind = SRC_NONE;
    } else if (key_file && *key_file) {
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

static long positive_or(long v, long dflt)
{
    return v > 0 ? v : dflt;
}

static int net_copy(gauth *g, const nsc_config *cfg)
{
    g->connect_s = positive_or(cfg ? cfg->connect_timeout_s : 0, 10);
    g->low_speed_s = positive_or(cfg ? cfg->low_speed_time_s : 0, 30);
    g->total_s = positive_or(cfg ? cfg->total_timeout_s : 0, 300);
    g->ca_bundle = strdup(cfg ? cfg->ca_bundle : "");
    g->proxy = strdup(cfg ? cfg->proxy : "");
    return g->ca_bundle && g->proxy ? 0 : -1;
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
        seterr(err, errlen, "cannot set up GCS credentials: out of memory");
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (net_copy(g, cfg) < 0)
        goto oom;
    g->kind = s->kind;
    if (s->kind == SRC_NONE) {
        snprintf(g->describe, sizeof g->describe, "no credentials (STORAGE_EMULATOR_HOST)");
    } else if (s->kind == SRC_METADATA) {
        if (metadata_setup(g, s->where) < 0)
            goto oom;
    } else {
        if (!(g->key_path = strdup(s->where)))
            goto oom;
        if (key_file_load(g, s->where, err, errlen) < 0)
            goto fail_out;
        snprintf(g->describe, sizeof g->describe, "service account '%s' (key file '%s')",
                 g->email, g->key_path);
    }
    return g;
oom:
    seterr(err, errlen, "cannot set up GCS credentials: out of memory");
fail_out:
    gauth_free(g);
    return NULL;
}

gauth *gauth_new(const char *key_file, const nsc_config *cfg, char *err, size_t errlen)
{
    source s;
    source_resolve(key_file, cfg, &s);
    return gauth_create(&s, cfg, err, errlen);
}

void gauth_free(gauth *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    OPENSSL_cleanse(g->token, sizeof g->token);
    EVP_PKEY_free(g->pkey);
    free(g->key_path);
    free(g->email);
    free(g->kid);
    free(g->token_uri);
    free(g->metadata_url);
    free(g->ca_bundle);
    free(g->proxy);
    free(g);
}

int gauth_is_anonymous(const gauth *g)
{
    return g->kind == SRC_NONE;
}

const char *gauth_describe(const gauth *g)
{
    return g->describe;
}

/* ---- HTTP to the token endpoints ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

static void http_setup(const gauth *g, CURL *h, const char *url, buf *resp)
{
    int loopback = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    http_abort_on_shutdown(h);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, g->connect_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, g->total_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, g->low_speed_s);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (g->ca_bundle[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, g->ca_bundle);
    gauth_url_check(url, &loopback, NULL, 0);
    if (g->kind == SRC_METADATA || loopback)
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    else if (g->proxy[0])
        curl_easy_setopt(h, CURLOPT_PROXY, g->proxy);
}

static gauth_result classify_status(long status)
{
    if (status == 408 || status == 429 || status >= 500)
        return GAUTH_RETRY;
    return GAUTH_FATAL;
}

/* "invalid_grant: Invalid JWT Signature." from an error reply, printable
 * ASCII only and short, or "" when the body says nothing usable. */
static void reply_reason(const buf *resp, char *out, size_t outlen)
{
    char *e = NULL, *desc = NULL;
    out[0] = '\0';
    if (!resp->len)
        return;
    e = gauth_json_string(resp->data, resp->len, "error", NULL);
    if (e)
        desc = gauth_json_string(resp->data, resp->len, "error_description", NULL);
    else
        e = gauth_json_string(resp->data, resp->len, "error", "message");
    if (e)
        snprintf(out, outlen, ": %.100s%s%.200s", e, desc ? ": " : "", desc ? desc : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    free(e);
    free(desc);
}

/* Perform the request; fills *status (0 when no HTTP reply came). */
static gauth_result http_do(const gauth *g, const char *url, const char *post,
                            struct curl_slist *hdrs, buf *resp, long *status,
                            char *err, size_t errlen)
{
    gauth_result rc = GAUTH_RETRY;
    CURL *h = curl_easy_init();
    *status = 0;
    if (!h) {
        seterr(err, errlen, "cannot start libcurl");
        return GAUTH_RETRY;
    }
    http_setup(g, h, url, resp);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (post)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        rc = GAUTH_OK;
    } else if (cc == CURLE_COULDNT_RESOLVE_HOST && g->kind == SRC_METADATA) {
        seterr(err, errlen, "no GCS credentials: no key file is configured, "
             "GOOGLE_APPLICATION_CREDENTIALS is unset, and the metadata server cannot be "
             "resolved (%s): not running on Google Cloud?", curl_easy_strerror(cc));
        rc = GAUTH_FATAL;
    } else {
        seterr(err, errlen, "token request to '%s' failed: %s", url, curl_easy_strerror(cc));
    }
    curl_easy_cleanup(h);
    return rc;
}

/* Take access_token and expires_in from a 200 reply. */
static gauth_result token_parse(const buf *resp, const char *url, char *tok, size_t toklen,
                                long *expires_in, char *err, size_t errlen)
{
    gauth_result rc = GAUTH_RETRY;
    json_doc d = {0};
    char *t = NULL;
    if (json_parse(&d, resp->data ? resp->data : "", resp->len) < 0 ||
        !(t = json_get_string(&d, 0, "access_token")) || !*t) {
        seterr(err, errlen, "token reply from '%s' has no access_token", url);
        goto out;
    }
    if (strlen(t) >= toklen || strlen(t) >= GAUTH_TOKEN_MAX) {
        seterr(err, errlen, "token reply from '%s': access_token longer than %d bytes",
             url, GAUTH_TOKEN_MAX - 1);
        rc = GAUTH_FATAL;
        goto out;
    }
    if (json_get_long(&d, 0, "expires_in", expires_in) < 0 || *expires_in <= 0)
        *expires_in = DEFAULT_EXPIRES_IN;
    snprintf(tok, toklen, "%s", t);
    rc = GAUTH_OK;
out:
    free_secret(t);
    json_release(&d);
    return rc;
}

/* Turn a finished exchange into a token or a message naming the source. */
static gauth_result token_reply(const gauth *g, const char *url, const buf *resp, long status,
                                char *tok, size_t toklen, long *expires_in,
                                char *err, size_t errlen)
{
    char why[384];
    if (status == 200)
        return token_parse(resp, url, tok, toklen, expires_in, err, errlen);
    reply_reason(resp, why, sizeof why);
    seterr(err, errlen, "token request to '%s' for %s failed (HTTP %ld)%s", url, g->describe,
         status, why);
    return classify_status(status);
}

static gauth_result fetch_key_token(const gauth *g, char *tok, size_t toklen, long *expires_in,
                                    char *err, size_t errlen)
{
    gauth_result rc = GAUTH_FATAL;
    char *jwt = NULL;
    buf form, resp;
    long status = 0;
    struct curl_slist *hdrs = NULL;
    buf_init(&form, 0);
    buf_init(&resp, REPLY_MAX);
    if (jwt_build(g->pkey, g->kid, g->email, g->token_uri, (long long)time(NULL), &jwt,
                  err, errlen) < 0)
        goto out;
    if (buf_printf(&form, "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer"
                   "&assertion=%s", jwt) < 0 ||
        !(hdrs = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded"))) {
        seterr(err, errlen, "cannot build the token request: out of memory");
        goto out;
    }
    rc = http_do(g, g->token_uri, form.data, hdrs, &resp, &status, err, errlen);
    if (rc == GAUTH_OK)
        rc = token_reply(g, g->token_uri, &resp, status, tok, toklen, expires_in, err, errlen);
out:
    curl_slist_free_all(hdrs);
    free_secret(jwt);
    buf_wipe(&form);
    buf_wipe(&resp);
    return rc;
}

static gauth_result fetch_metadata_token(const gauth *g, char *tok, size_t toklen,
                                         long *expires_in, char *err, size_t errlen)
{
    gauth_result rc = GAUTH_RETRY;
    buf resp;
    long status = 0;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Metadata-Flavor: Google");
    buf_init(&resp, REPLY_MAX);
    if (!hdrs) {
        seterr(err, errlen, "cannot build the token request: out of memory");
        goto out;
    }
    rc = http_do(g, g->metadata_url, NULL, hdrs, &resp, &status, err, errlen);
    if (rc == GAUTH_OK)
        rc = token_reply(g, g->metadata_url, &resp, status, tok, toklen, expires_in, err, errlen);
out:
    curl_slist_free_all(hdrs);
    buf_wipe(&resp);
    return rc;
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

/* Called with g->mu held; drops it while the network request runs. */
static gauth_result refresh_locked(gauth *g, char *err, size_t errlen)
{
    char tok[GAUTH_TOKEN_MAX];
    long expires_in = 0;
    gauth_result rc;
    g->refreshing = 1;
    pthread_mutex_unlock(&g->mu);
    if (g->kind == SRC_KEY_FILE)
        rc = fetch_key_token(g, tok, sizeof tok, &expires_in, err, errlen);
    else
        rc = fetch_metadata_token(g, tok, sizeof tok, &expires_in, err, errlen);
    pthread_mutex_lock(&g->mu);
    if (rc == GAUTH_OK) {
        long long life_ms = expires_in * 1000LL, margin_ms = GAUTH_REFRESH_MARGIN_S * 1000LL;
        if (margin_ms > life_ms / 2)
            margin_ms = life_ms / 2;
        OPENSSL_cleanse(g->token, sizeof g->token);
        memcpy(g->token, tok, strlen(tok) + 1);
        g->stale_at = mono_ms() + life_ms - margin_ms;
        log_debug("gcs credentials refreshed: %s expires_in=%ld", g->describe, expires_in);
    }
    OPENSSL_cleanse(tok, sizeof tok);
    g->last_rc = rc;
    snprintf(g->last_err, sizeof g->last_err, "%s", rc == GAUTH_OK ? "" : err);
    g->refreshing = 0;
    g->refresh_seq++;
    pthread_cond_broadcast(&g->cv);
    return rc;
}

static gauth_result token_locked(gauth *g, char *out, size_t outlen, char *err, size_t errlen)
{
    unsigned long seen = g->refresh_seq;
    for (;;) {
        if (token_fresh(g))
            return token_copy(g, out, outlen, err, errlen) == 0 ? GAUTH_OK : GAUTH_FATAL;
        if (!g->refreshing) {
            gauth_result rc = refresh_locked(g, err, errlen);
            if (rc != GAUTH_OK)
                return rc;
            return token_copy(g, out, outlen, err, errlen) == 0 ? GAUTH_OK : GAUTH_FATAL;
        }
        pthread_cond_wait(&g->cv, &g->mu);
        if (g->refresh_seq != seen && !g->refreshing && !token_fresh(g) && g->last_rc != GAUTH_OK) {
            seterr(err, errlen, "%s", g->last_err);
            return g->last_rc;
        }
    }
}

gauth_result gauth_token(gauth *g, char *out, size_t outlen, char *err, size_t errlen)
{
    if (outlen)
        out[0] = '\0';
    if (g->kind == SRC_NONE)
        return GAUTH_OK;
    pthread_mutex_lock(&g->mu);
    gauth_result rc = token_locked(g, out, outlen, err, errlen);
    pthread_mutex_unlock(&g->mu);
    return rc;
}

void gauth_invalidate(gauth *g, const char *token)
{
    if (g->kind == SRC_NONE || !token)
        return;
    pthread_mutex_lock(&g->mu);
    if (g->token[0] && strcmp(g->token, token) == 0)
        g->stale_at = 0;
    pthread_mutex_unlock(&g->mu);
}

/* ---- the process-wide registry ---- */

typedef struct reg_entry {
    struct reg_entry *next;
    source src;
    int refs;
    gauth *g;
} reg_entry;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg_head;

static reg_entry *reg_find(const source *s)
{
    for (reg_entry *e = reg_head; e; e = e->next)
        if (e->src.kind == s->kind && strcmp(e->src.where, s->where) == 0)
            return e;
    return NULL;
}

gauth *gauth_acquire(const char *key_file, const nsc_config *cfg, char *err, size_t errlen)
{
    source s;
    gauth *g = NULL;
    source_resolve(key_file, cfg, &s);
    pthread_mutex_lock(&reg_mu);
    reg_entry *e = reg_find(&s);
    if (e) {
        e->refs++;
        g = e->g;
    } else if ((e = calloc(1, sizeof *e)) == NULL) {
        seterr(err, errlen, "cannot set up GCS credentials: out of memory");
    } else if ((g = gauth_create(&s, cfg, err, errlen)) == NULL) {
        free(e);
    } else {
        e->src = s;
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
