/* gauth.h - Google OAuth2 access tokens for the GCS sink, shared by threads.
 *
 * A gauth object stands for one credentials source, chosen in this order
 * (Application Default Credentials, as Google's client libraries do):
 *   0. $STORAGE_EMULATOR_HOST set: no credentials at all; gauth_token()
 *      hands out an empty token and the caller sends no Authorization.
 *   1. the given service-account key file, else cfg->gcs_credentials,
 *      else $GOOGLE_APPLICATION_CREDENTIALS: a signed RS256 JWT is
 *      exchanged at the key's own token_uri;
 *   2. the metadata server (Cloud Run, GCE; $GCE_METADATA_HOST overrides
 *      metadata.google.internal), reached without a proxy.
 * The key file is read and its private key parsed when the object is
 * created, so a bad file is reported at open time, not at the first upload.
 * No network traffic happens until the first gauth_token().
 *
 * Tokens are cached with their expiry behind a mutex and refreshed when
 * fewer than 225 s remain (capped at half the token's lifetime for very
 * short-lived tokens). One thread refreshes at a time; the others wait and
 * reuse its result, including its error. Tokens, JWTs and private keys are
 * never logged, never put in error messages and wiped when freed.
 */
#ifndef NSC_GAUTH_H
#define NSC_GAUTH_H

#include <stddef.h>

#include "base/config.h"

/* Longest access token accepted (Google's are a few hundred bytes). */
#define GAUTH_TOKEN_MAX 4096
/* The OAuth2 scope requested for key-file tokens. */
#define GAUTH_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
/* Refresh this long before a token expires (google-auth's 3 min 45 s). */
#define GAUTH_REFRESH_MARGIN_S 225

typedef struct gauth gauth;

typedef enum gauth_result {
    GAUTH_OK = 0,
    GAUTH_RETRY,       /* token endpoint unreachable, 5xx, 429, timeout */
    GAUTH_FATAL,       /* credentials refused or misconfigured: needs an operator */
} gauth_result;

/* ---- lifecycle ---- */

/* Create a credentials source (order above). key_file may be NULL or "".
 * Copies what it needs from cfg (timeouts, CA bundle, proxy). NULL with err
 * naming the file on failure: missing or unreadable, not JSON, a type other
 * than service_account, client_email or private_key missing, a private key
 * that is not valid PEM. A key file readable by group or others is only a
 * warning in the log. */
gauth *gauth_new(const char *key_file, const nsc_config *cfg, char *err, size_t errlen);
/* Free g and wipe the token and key it holds. NULL is ignored. */
void gauth_free(gauth *g);

/* Process-wide registry: sinks with the same credentials source share one
 * gauth (one token cache for all threads). gauth_acquire() resolves the
 * source as gauth_new() does, returns the existing object for it with its
 * reference count raised, or creates one. Every successful acquire is
 * paired with one gauth_release(); the last release frees the object. */
gauth *gauth_acquire(const char *key_file, const nsc_config *cfg, char *err, size_t errlen);
void gauth_release(gauth *g);

/* ---- tokens ---- */

/* Copy a valid access token into out[outlen] (GAUTH_TOKEN_MAX is enough),
 * refreshing it first when needed. An emulator source copies "". The
 * caller wipes its copy when done (OPENSSL_cleanse). On GAUTH_RETRY or
 * GAUTH_FATAL, out is "" and err says what failed and where. */
gauth_result gauth_token(gauth *g, char *out, size_t outlen, char *err, size_t errlen);

/* The server refused token (HTTP 401): drop it so that the next
 * gauth_token() fetches a new one. Ignored when the cache already holds a
 * different token (another thread refreshed it), so N threads that all saw
 * the same 401 cause one refresh, not N. */
void gauth_invalidate(gauth *g, const char *token);

/* Nonzero when g sends no credentials ($STORAGE_EMULATOR_HOST). */
int gauth_is_anonymous(const gauth *g);

/* A short description of the source for error messages, never secret:
 * "service account 'x@p.iam.gserviceaccount.com' (key file '/k.json')",
 * "the metadata server's default service account", "no credentials (emulator)". */
const char *gauth_describe(const gauth *g);

/* ---- pieces exposed for tests and for sink_gcs.c ---- */

/* Build a signed RS256 JWT for the token exchange: header
 * {"alg":"RS256","typ":"JWT","kid":kid} (kid omitted when NULL or ""),
 * claims {"iss":iss,"scope":GAUTH_SCOPE,"aud":aud,"iat":iat,"exp":iat+3600}.
 * pem is a PEM private key (PKCS#8 or traditional RSA). *jwt is malloc'd;
 * the caller wipes and frees it. 0, or -1 with err. */
int gauth_jwt_make(const char *pem, const char *kid, const char *iss, const char *aud,
                   long long iat, char **jwt, char *err, size_t errlen);

/* Unpadded base64url of in[0, n) into out (at least 4*ceil(n/3)+1 bytes),
 * NUL-terminated. Returns the length written. */
size_t gauth_b64url(const unsigned char *in, size_t n, char *out);

/* The string at js.key1 (or js.key1.key2 when key2 is not NULL) of the
 * JSON text js[0, len), with its escapes decoded (\n, \", \uXXXX as UTF-8).
 * malloc'd, or NULL when the text is not a JSON object, the key is absent
 * or its value is not a string. */
char *gauth_json_string(const char *js, size_t len, const char *key1, const char *key2);

/* 0 when url may carry credentials or data: https://, or http:// to a
 * loopback host (127.0.0.0/8, ::1, localhost). -1 with err otherwise.
 * *loopback (if not NULL) is set when the host is a loopback host. */
int gauth_url_check(const char *url, int *loopback, char *err, size_t errlen);

/* Back-off before retry number attempt (0-based) with Google's documented
 * strategy: ceiling 1 s, doubled per attempt, capped at 60 s, and full
 * jitter: rnd mapped uniformly onto [0, ceiling] milliseconds. */
unsigned gcs_backoff_ms(int attempt, unsigned rnd);

#endif
