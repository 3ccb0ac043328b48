/* oauth.h - one OAuth2 access token from Google, over HTTP.
 *
 * Two ways to get one: exchange a signed service-account assertion at the
 * key's token_uri (RFC 7523 jwt-bearer grant), or ask the metadata server
 * of the machine it runs on (Cloud Run, GCE, GKE Workload Identity). Each
 * call is one blocking request on its own CURL handle: thread-safe, no
 * shared state, no cache (gauth.h caches). The metadata server is reached
 * without a proxy; so is any loopback host.
 *
 * Results say whether to try again: OAUTH_RETRY for what passes (no
 * answer, 408, 429, 5xx, a reply without a token), OAUTH_FATAL for what
 * needs an operator (credentials refused, no metadata server). err names
 * the URL, the source and Google's own reason ("invalid_grant: ..."),
 * never a token, an assertion or a key.
 */
#ifndef NSC_OAUTH_H
#define NSC_OAUTH_H

#include <stddef.h>

#include "base/config.h"
#include "google/sa_key.h"

/* Longest access token accepted (Google's are a few hundred bytes). */
#define OAUTH_TOKEN_MAX 4096

typedef enum oauth_result {
    OAUTH_OK = 0,
    OAUTH_RETRY,       /* token endpoint unreachable, 5xx, 429, timeout */
    OAUTH_FATAL,       /* credentials refused or misconfigured: needs an operator */
} oauth_result;

/* How to reach token endpoints: copied from the config's http settings. */
typedef struct oauth_net {
    char *ca_bundle, *proxy;   /* "" when unset */
    long connect_s, low_speed_s, total_s;
} oauth_net;

/* Fill n from cfg (NULL: defaults 10 s connect, 30 s stalled, 300 s total).
 * 0, or -1 when out of memory (n then holds nothing). */
int oauth_net_init(oauth_net *n, const nsc_config *cfg);
void oauth_net_clear(oauth_net *n);

/* A token for key with the given scope (space-separated scopes). who
 * describes the source in errors. The token goes to tok[toklen] and its
 * lifetime in seconds to *expires_in (300 when the reply names none). */
oauth_result oauth_key_token(const oauth_net *n, const sa_key *key, const char *scope,
                             const char *who, char *tok, size_t toklen, long *expires_in,
                             char *err, size_t errlen);

/* A token from the metadata server at url (the full token URL; its scopes
 * are those of the machine's service account). As oauth_key_token(). */
oauth_result oauth_metadata_token(const oauth_net *n, const char *url, const char *who,
                                  char *tok, size_t toklen, long *expires_in,
                                  char *err, size_t errlen);

#endif
