/* sink_impl.h - what sink.c expects of a backend (file, gcs, secops). Private to
 * the sink files; the rest of nscollect (upload.c) sees only sink.h, so a
 * new backend is one file here, one sink_ops and one line in sink.c's
 * table, with upload.c untouched.
 *
 * What a backend promises:
 *   - never overwrite: a put of a name that exists stores nothing and
 *     returns SINK_EXISTS, which the caller counts delivered - so only when
 *     what is there is this batch: compare its bytes where the backend can
 *     (file: always; GCS: md5Hash when the account may read it), and
 *     return SINK_PERMANENT naming the object when they differ. Names are
 *     unique to one batch of one database (they carry its db id), which
 *     is what a backend that cannot compare relies on. A backend with no
 *     such check at all (SecOps) delivers in parts through sink_progress
 *     and counts each resend that may double (sink.h);
 *   - SINK_OK means durable: the object survives a crash of this host and
 *     of the backend's own (file: fsync of file and directory; GCS: 200);
 *   - classify every failure: SINK_RETRY for what passes by itself (5xx,
 *     429, timeouts, a full disk), SINK_PERMANENT for what needs an
 *     operator (missing bucket, denied permission, bad name), with err
 *     naming the destination and what to do, never a credential;
 *   - state from open() is used by one thread at a time and freed by close();
 *     check() needs no network and no state (it runs at `tenant add`).
 */
#ifndef NSC_SINK_IMPL_H
#define NSC_SINK_IMPL_H

#include "sink/sink.h"

typedef struct sink_ops {
    const char *scheme;                                   /* "file", "gs" */
    /* Validate the part after "scheme://". 0 or -1 with err. */
    int (*check)(const char *rest, char *err, size_t errlen);
    /* Optional: whether records of stream can go to rest (checked). */
    int (*stream_check)(const char *rest, const char *stream, char *err, size_t errlen);
    /* Open the destination d (rest: d->url after "scheme://", checked);
     * the returned pointer is the backend's own state. */
    void *(*open)(const char *rest, const sink_dest *d, const nsc_config *cfg,
                  char *err, size_t errlen);
    sink_result (*put)(void *state, const char *name, const void *data, size_t len,
                       char *err, size_t errlen);
    /* Optional: store the file at path under name without copying it.
     * Sets *fallback (and the result does not count) when it cannot, so
     * that sink.c maps the file and calls put instead. */
    sink_result (*link)(void *state, const char *name, const char *path, int *fallback,
                        char *err, size_t errlen);
    /* Optional: progress for the next put (sink_progress in sink.h). */
    void (*track)(void *state, sink_progress *p);
    void (*describe)(const void *state, const char *name, char *out, size_t outlen);
    void (*close)(void *state);
} sink_ops;

/* Checks every backend shares (sink.c). */
/* 1 when s holds a control character (below 0x20, or DEL). */
int sink_has_control(const char *s);
/* Copy path p into out as its components joined by single '/', without a
 * leading or trailing one. -1 on a "." or ".." component or no room. */
int sink_path_normalize(const char *p, char *out, size_t outlen);
/* An object name: a relative path of non-empty components, none "." or
 * "..", without control characters. 0, or -1 with the reason in err. */
int sink_name_check(const char *name, char *err, size_t errlen);

extern const sink_ops sink_file_ops;   /* sink_file.c */
extern const sink_ops sink_gcs_ops;    /* sink_gcs.c */
extern const sink_ops sink_secops_ops; /* sink_secops.c */

#endif
