/* gauth.h - Google access tokens for the sinks, cached and shared by threads.
 *
 * A gauth stands for one credentials source and one OAuth2 scope. The
 * source is chosen as Google's client libraries choose it (Application
 * Default Credentials):
 *   1. the given service-account key file, else cfg->gcs_credentials, else
 *      $GOOGLE_APPLICATION_CREDENTIALS: a signed assertion (jwt.h) for the
 *      key (sa_key.h) is exchanged at the key's token_uri (oauth.h);
 *   2. the metadata server (Cloud Run, GCE; $GCE_METADATA_HOST overrides
 *      metadata.google.internal), reached without a proxy.
 * The key file is read and its private key parsed when the object is
 * created, so a bad file is reported at open time, not at the first upload.
 * No network traffic happens until the first gauth_token(). (The GCS
 * emulator needs no credentials: sink_gcs.c then opens no gauth at all.)
 *
 * Threads: tokens are cached with their expiry behind a mutex and refreshed
 * when fewer than 225 s remain (at most half the lifetime of short-lived
 * tokens). One thread refreshes at a time; the others wait and reuse its
 * result, including its error. Ownership: gauth_acquire() hands out a
 * shared reference, released with gauth_release(). Secrets: tokens,
 * assertions and keys are never logged nor put in errors, and are wiped
 * when freed.
 */
#ifndef NSC_GAUTH_H
#define NSC_GAUTH_H

#include <stddef.h>

#include "base/config.h"
#include "google/oauth.h"

#define GAUTH_TOKEN_MAX OAUTH_TOKEN_MAX
/* The scope the GCS sink asks for. */
#define GAUTH_SCOPE_GCS "https://www.googleapis.com/auth/devstorage.read_write"
/* The scope logs.import asks for (Chronicle API reference). */
#define GAUTH_SCOPE_SECOPS "https://www.googleapis.com/auth/cloud-platform"
/* Refresh this long before a token expires (google-auth's 3 min 45 s). */
#define GAUTH_REFRESH_MARGIN_S 225

typedef struct gauth gauth;

/* Create a credentials source for scope (order above). key_file may be
 * NULL or "". Copies what it needs from cfg (timeouts, CA bundle, proxy).
 * NULL with err naming the file on failure (see sa_key_load()). */
gauth *gauth_new(const char *key_file, const char *scope, const nsc_config *cfg,
                 char *err, size_t errlen);
/* Free g and wipe the token and key it holds. NULL is ignored. */
void gauth_free(gauth *g);

/* Process-wide registry: sinks with the same source and scope share one
 * gauth (one token cache for all threads). gauth_acquire() resolves the
 * source as gauth_new() does and returns the existing object with its
 * reference count raised, or creates one. Every successful acquire is
 * paired with one gauth_release(); the last release frees the object. */
gauth *gauth_acquire(const char *key_file, const char *scope, const nsc_config *cfg,
                     char *err, size_t errlen);
void gauth_release(gauth *g);

/* Copy a valid access token into out[outlen] (GAUTH_TOKEN_MAX is enough),
 * refreshing it first when needed. The caller wipes its copy when done
 * (OPENSSL_cleanse). On OAUTH_RETRY or OAUTH_FATAL, out is "" and err says
 * what failed and where. */
oauth_result gauth_token(gauth *g, char *out, size_t outlen, char *err, size_t errlen);

/* The server refused token (HTTP 401): drop it so that the next
 * gauth_token() fetches a new one. Ignored when the cache already holds a
 * different token (another thread refreshed it), so N threads that all saw
 * the same 401 cause one refresh, not N. */
void gauth_invalidate(gauth *g, const char *token);

/* A short description of the source for error messages, never secret:
 * "service account 'x@p.iam.gserviceaccount.com' (key file '/k.json')" or
 * "the default service account of the metadata server 'HOST'". */
const char *gauth_describe(const gauth *g);

#endif
