/* sink_impl.h - what sink.c expects of a backend (file, gcs). Private to
 * the sink files; the rest of nscollect sees only sink.h. */
#ifndef NSC_SINK_IMPL_H
#define NSC_SINK_IMPL_H

#include "sink.h"

typedef struct sink_ops {
    const char *scheme;                                   /* "file", "gs" */
    /* Validate the part after "scheme://". 0 or -1 with err. */
    int (*check)(const char *rest, char *err, size_t errlen);
    /* Open; the returned pointer is the backend's own state. */
    void *(*open)(const char *rest, const char *credentials, const nsc_config *cfg,
                  char *err, size_t errlen);
    sink_result (*put)(void *state, const char *name, const void *data, size_t len,
                       char *err, size_t errlen);
    void (*describe)(const void *state, const char *name, char *out, size_t outlen);
    void (*close)(void *state);
} sink_ops;

extern const sink_ops sink_file_ops;   /* sink_file.c */
extern const sink_ops sink_gcs_ops;    /* sink_gcs.c */

#endif
