/* gapi.h - one HTTPS request to a Google JSON API with a bearer token, as
 * the GCS and SecOps sinks make them.
 *
 * A gapi owns one CURL handle set up the same way for every Google API
 * (timeouts from the config, CA bundle, proxy unless the host is a
 * loopback one, no redirects, abort on shutdown) and keeps the first
 * GAPI_REPLY_KEEP bytes of each reply for error messages. It is used by
 * one thread at a time. The token is put in one header only, wiped after
 * the request; nothing here logs.
 */
#ifndef NSC_GAPI_H
#define NSC_GAPI_H

#include <stddef.h>

#include <curl/curl.h>

#include "base/buf.h"
#include "base/config.h"

#define GAPI_REPLY_KEEP (16 * 1024)

typedef struct gapi {
    CURL *curl;
    char curl_err[CURL_ERROR_SIZE];
    buf reply;                  /* the last reply's first GAPI_REPLY_KEEP bytes */
} gapi;

/* Set up g (zeroed by the caller). loopback: the endpoint is a loopback
 * host, reached without a proxy. forbid_reuse: a new connection for every
 * request - for a POST that must not be resent by libcurl on a kept-alive
 * connection the server closed (it may have been accepted). 0 or -1. */
int gapi_init(gapi *g, const nsc_config *cfg, int loopback, int forbid_reuse);
void gapi_release(gapi *g);

/* Copy the endpoint "%s%s" (prefix, url) into out without trailing '/'
 * and check it: https://, or http:// to a loopback host (*loopback set).
 * 0, or -1 with err saying what is wrong after what ("GCS endpoint ..."). */
int gapi_endpoint(char *out, size_t outlen, const char *prefix, const char *url,
                  const char *what, int *loopback, char *err, size_t errlen);

/* One request: a POST of data[0, len) with content_type when data is not
 * NULL, else a GET. token "" sends no Authorization header. Returns the
 * CURLcode; *status is the HTTP code (0 when no reply came). */
CURLcode gapi_request(gapi *g, const char *url, const char *token, const char *content_type,
                      const void *data, size_t len, long *status);

/* The reply's own words, {"error":{"message":...}}: ": <message>",
 * printable ASCII and short, or "" when there are none. */
void gapi_reply_message(const gapi *g, char *out, size_t outlen);

/* What went wrong with the transport, libcurl's words. */
const char *gapi_transport_error(const gapi *g, CURLcode cc);

/* A transport failure that retrying will not cure (TLS verification, a
 * bad URL): 1 then, and *tls says whether it was certificate checking. */
int gapi_transport_permanent(CURLcode cc, int *tls);

#endif
