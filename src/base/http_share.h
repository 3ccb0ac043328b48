/* http_share.h - one libcurl share for all workers of the process.
 *
 * DNS answers, TLS sessions and open connections are shared, so a
 * thousand tenants on the same Netskope POP, or many uploads to one GCS
 * endpoint, reuse a handful of connections instead of re-handshaking.
 * libcurl asks for a lock around each shared part; each gets a mutex.
 * The process owns one share: made before the workers start, freed after
 * they have all stopped; NULL from the constructor means no memory (the
 * caller then runs without sharing, slower but correct).
 */
#ifndef NSC_HTTP_SHARE_H
#define NSC_HTTP_SHARE_H

#include <stddef.h>

typedef struct http_share http_share;

/* NULL when libcurl cannot make a share (callers then go without). */
http_share *http_share_new(void);
void http_share_free(http_share *s);
/* The CURLSH* to give CURLOPT_SHARE (void * so callers need not include curl.h). */
void *http_share_handle(http_share *s);

/* 1 when host (as libcurl's URL API returns it: "localhost", "127.0.0.5",
 * "[::1]") is a loopback host, the only kind that may be spoken to over
 * plain http:// (tests, demos, emulators). */
int http_host_is_loopback(const char *host);

/* 0 when url may carry credentials or data: https://, or http:// to a
 * loopback host. -1 with err ("'URL' must be https://...") otherwise.
 * *loopback (if not NULL) is set when the host is a loopback host. */
int http_url_check(const char *url, int *loopback, char *err, size_t errlen);

/* Make the easy handle h (a CURL *) give up its transfer as soon as a
 * shutdown is requested (shutdown.h), so SIGTERM never waits out a slow
 * or hanging server. The transfer then fails with CURLE_ABORTED_BY_CALLBACK. */
void http_abort_on_shutdown(void *h);

#endif
