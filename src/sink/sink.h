/* sink.h - where delivered batches go: file:///dir, gs://bucket/prefix, or
 * secops://REGION/PROJECT/CUSTOMER_ID (sink_secops.c: straight into SecOps,
 * several requests per batch, see sink_progress).
 *
 * A sink stores one object per outbox batch under a deterministic name
 * "<tenant>/alerts_<yyyymmdd_HHMMSS>_<db id>_<batch id>.ndjson" below its
 * own root or prefix. Puts never overwrite: an object that already exists
 * with the same bytes is an earlier try that succeeded, reported as
 * SINK_EXISTS and counted as delivered (GCS: ifGenerationMatch=0 -> 412,
 * then md5Hash compared; file: link(2) -> EEXIST, then the bytes); other
 * bytes there are SINK_PERMANENT.
 * A sink is used by one thread at a time; open one per upload worker.
 */
#ifndef NSC_SINK_H
#define NSC_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

typedef struct sink sink;

typedef enum sink_result {
    SINK_OK = 0,       /* stored */
    SINK_EXISTS,       /* already there: delivered by an earlier try */
    SINK_RETRY,        /* transient (5xx, 429, timeout, disk full): try again later */
    SINK_PERMANENT,    /* needs an operator (bucket missing, permission): keep the batch */
} sink_result;

/* Check a sink URL without opening it: "file:///abs/dir",
 * "gs://bucket[/prefix]" or "secops://REGION/PROJECT/CUSTOMER_ID[?...]".
 * Returns 0 or -1 with the reason in err. */
int sink_url_check(const char *url, char *err, size_t errlen);

/* Where a batch goes: everything that decides the object it becomes. A
 * batch's destination is pinned (in its outbox row) at its first upload
 * attempt, so a retry goes where the first try went. */
typedef struct sink_dest {
    char url[CONFIG_PATH_MAX];          /* file:///dir, gs://bucket[/prefix], secops://... */
    char credentials[CONFIG_PATH_MAX];  /* "" = the default chain (GCS: config,
                                           environment, metadata server) */
    int gzip;                           /* GCS: ".gz" objects; file sinks ignore it */
} sink_dest;

/* Open the sink for d. NULL with err on failure. */
sink *sink_open(const sink_dest *d, const nsc_config *cfg, char *err, size_t errlen);
void sink_free(sink *s);

/* Store data under name (relative to the sink's root; ".gz" is appended and
 * the data compressed when the sink gzips). err explains any result other
 * than SINK_OK/SINK_EXISTS in words an operator can act on. */
sink_result sink_put(sink *s, const char *name, const void *data, size_t len,
                     char *err, size_t errlen);

/* Store the contents of the file at path under name, like sink_put. A
 * file sink on the same filesystem hard-links the file into place (the
 * caller may unlink path afterwards); otherwise the file is mapped and
 * sent. A missing file is SINK_PERMANENT. */
sink_result sink_put_file(sink *s, const char *name, const char *path, char *err,
                          size_t errlen);

/* Delivery in parts. A backend that sends one batch as several requests
 * that cannot be undone nor made conditional (SecOps' logs.import) says
 * how far it got through this, so that the next attempt - after a failure
 * or a kill - resumes after the last accepted request instead of at the
 * first. The caller fills sent and in_flight from what it stored and
 * sets save and ambiguous; the backend calls
 *   save(ctx, sent, 1) before each request (sent = its first byte), and
 *   save(ctx, sent, 0) when a request was definitely refused;
 *   ambiguous(ctx) when it sends again a request that was in flight when
 *     an earlier attempt ended without an answer (it may be a double).
 * save must be durable when it returns 0. After SINK_OK, sent == len. */
typedef struct sink_progress {
    int64_t sent;              /* bytes of the batch accepted: resume here */
    int in_flight;             /* a request from `sent` was under way, no answer seen */
    int (*save)(void *ctx, int64_t sent, int in_flight);
    void (*ambiguous)(void *ctx);
    void *ctx;
} sink_progress;

/* Use p for the next put only (backends that deliver in one request ignore
 * it; p stays untouched then). */
void sink_track(sink *s, sink_progress *p);

/* Whether records of stream (alert, page, ...) can go to url: the SecOps
 * sink needs a log type for each stream. 0, or -1 with err. */
int sink_stream_check(const char *url, const char *stream, char *err, size_t errlen);

/* A human-readable location of the object for logs: "/dir/acme/x.ndjson",
 * "gs://bucket/prefix/acme/x.ndjson". */
void sink_describe(const sink *s, const char *name, char *out, size_t outlen);

#endif
