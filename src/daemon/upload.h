/* upload.h - upload workers' unit of work: deliver one outbox batch.
 *
 * An uploader belongs to one thread: its own database connection and the
 * sinks it has opened (one per distinct tenant destination). Batches are
 * handed out by a shared upload_queue so that two workers never hold the
 * same batch and, in a one-shot pass, every batch is tried once.
 * A failed delivery never loses the batch: its row stays, with the error
 * and the next attempt's time, and the sink's verdict (sink.h) decides
 * whether that is a retry or an operator's problem.
 */
#ifndef NSC_UPLOAD_H
#define NSC_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

typedef struct uploader uploader;
typedef struct upload_queue upload_queue;

/* once: hand out every batch once, due or not, in id order, then report
 * none left; otherwise cycle through due batches forever. */
upload_queue *upload_queue_new(int once);
void upload_queue_free(upload_queue *q);

uploader *uploader_new(const nsc_config *cfg, const char *db_path, char *err, size_t errlen);
void uploader_free(uploader *u);

typedef enum upload_status {
    UPLOAD_IDLE,       /* nothing to do right now */
    UPLOAD_DONE,       /* a batch was delivered (or found already there) */
    UPLOAD_FAILED,     /* a batch stays in the outbox; it will be retried later */
} upload_status;

/* Take the next batch from q and try to deliver it. In once mode a
 * transient failure is retried a few times with back-off before giving up. */
upload_status uploader_step(uploader *u, upload_queue *q);

/* Back-off before retry number attempt (1-based): full jitter over
 * 1 s doubling up to 60 s, as Google documents for GCS. Milliseconds. */
long upload_backoff_ms(int attempt);

#endif
