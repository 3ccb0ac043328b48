/* outbox.h - the transactions that make delivery exactly-once.
 *
 * Fetch side: records are gathered in an outbox_batch; outbox_commit()
 * stores them in ONE transaction together with their dedupe keys and,
 * at a slice end, the cursor move and run counters. A record whose key is
 * already in `seen` is dropped there, inside the transaction, so the
 * overlap re-read and duplicates within a batch both vanish.
 *
 * Upload side: outbox rows are read by id, and a delivered batch is moved
 * to `delivered` (its row deleted) in one transaction.
 *
 * Spooling: a batch of at least spool_min_bytes keeps its NDJSON in a file,
 * <database>.spool/<batch id>.ndjson, instead of in the row (outbox.spooled
 * = 1, body empty). The file is written and fsynced inside the commit's
 * transaction, before it commits; it is removed after the delivery commits.
 * A large batch then costs one write instead of four (WAL, database,
 * read-back, sink) and a file sink can hard-link it into place. Files that
 * no row names (a kill between the two steps) are swept at daemon start.
 *
 * An outbox handle holds prepared statements for one connection; it is
 * used by one thread.
 */
#ifndef NSC_OUTBOX_H
#define NSC_OUTBOX_H

#include <limits.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "daemon/records.h"
#include "sink/sink.h"

typedef struct outbox outbox;

#define OUTBOX_PATH_MAX PATH_MAX

typedef struct outbox_item {
    size_t off, len;                       /* record bytes in batch->data, without its '\n' */
    unsigned char key[RECORDS_KEY_LEN];
    int64_t at;                            /* window time: part of the record's identity and
                                              what pruning goes by; -1 = none. Keys are also
                                              pruned by when they were stored (migration 006) */
    int64_t event_time;                    /* -1 when unknown */
    int64_t digest;                        /* records_digest() of the bytes, kept with the
                                              key so that a record met again with the same
                                              key and other bytes is counted as a conflict;
                                              -1 = not kept */
} outbox_item;

typedef struct outbox_batch {
    buf data;                              /* candidate records, one per line (NDJSON) */
    outbox_item *items;
    size_t n, cap;
} outbox_batch;

/* The keys of this many records newer than every stored key of their
 * stream go into seen in one statement (a commit's usual case). */
#define OUTBOX_KEY_ROWS 64

void outbox_batch_init(outbox_batch *b, size_t max_bytes);
void outbox_batch_release(outbox_batch *b);
void outbox_batch_reset(outbox_batch *b);
/* Append one record; -1 when the batch is full or memory is short. With
 * keep_digest the record's digest is stored beside its key (outbox_item.digest):
 * worth its cost only for records keyed by "_id" that a later read may meet
 * again (the overlap). */
int outbox_batch_add(outbox_batch *b, const char *rec, size_t len,
                     const unsigned char key[RECORDS_KEY_LEN], int64_t at, int64_t event_time,
                     int keep_digest);

/* What a commit does besides storing records. */
typedef struct outbox_commit_args {
    int64_t tenant_id;
    int64_t stream_id;         /* whose keys, cursor and batch */
    const char *object_prefix; /* object names are <prefix>_<yyyymmdd_HHMMSS>_<id>.ndjson:
                                  "acme/alerts" (alert), "acme/page/page" (events) */
    int64_t run_id;
    int64_t cursor;            /* new cursor, or -1 to leave it (mid-slice flush) */
    int64_t prune_before;      /* with a cursor move: drop seen rows whose time, or the
                                  time they were stored, is older than this */
    int64_t pages, fetched;    /* added to the run's counters */
    int64_t spool_min_bytes;   /* a body this large goes to a spool file; 0 = every one */
    int iterator;              /* with a cursor move: the commit ends a page of the stream's
                                  dataexport iterator (iterator.h), whose state becomes
                                  'clean' in this transaction; keys are then pruned only by
                                  when they were stored (before prune_before) */
} outbox_commit_args;

outbox *outbox_open(sqlite3 *db, char *err, size_t errlen);
void outbox_free(outbox *o);

/* What a commit kept and dropped. */
typedef struct outbox_counts {
    int64_t stored;            /* records that were new */
    int64_t conflicts;         /* dropped records whose key was stored before with a
                                  digest other than theirs (added to stream.conflicts) */
} outbox_counts;

/* Commit batch b (then reset it) and say what it kept in *n.
 * 0, or -1 with err; on error nothing was written. */
int outbox_commit(outbox *o, outbox_batch *b, const outbox_commit_args *a,
                  outbox_counts *n, char *err, size_t errlen);

/* The stream's cursor: 1 and *pos when it has one, 0 when new, -1 error. */
int outbox_cursor(outbox *o, int64_t stream_id, int64_t *pos);

/* Where a stream without a cursor starts reading: the start its first
 * attempt wrote, or proposed (now - lookback) written now when this is its
 * first attempt. Kept so that failed attempts do not slide the start
 * forward past records nobody has read. 0, or -1 on error. */
int outbox_first_start(outbox *o, int64_t stream_id, int64_t proposed, int64_t *start);

/* Run rows (of a stream). start returns the new run id or -1. */
int64_t outbox_run_start(outbox *o, int64_t stream_id, int64_t window_start);
/* status: "ok", "failed", "abandoned". error may be NULL. */
int outbox_run_finish(outbox *o, int64_t run_id, const char *status, const char *error);

/* Record the outcome of a fetch job on the stream row; the tenant row's
 * schedule and health columns are then set to a summary of its streams
 * (worst fail_count and its error, earliest next run), for scripts that
 * read them from before streams existed. */
int outbox_stream_result(outbox *o, int64_t stream_id, int ok, const char *error,
                         int64_t next_run_at, int64_t not_before);

/* --- upload side --- */
typedef struct outbox_row {
    int64_t id, tenant_id, attempts;
    char object_name[512];
    int64_t records, bytes;
    char spool_path[OUTBOX_PATH_MAX];  /* the body's spool file, or "" when it is in body */
    buf body;                  /* caller-owned: init before, release after; reused */
    int pinned;                /* dest holds where an earlier attempt went (migration 008) */
    int maybe_stored;          /* an attempt there ended without a definite answer */
    sink_dest dest;
    int64_t sent_bytes;        /* of the body, accepted by a sink that delivers in parts
                                  (sink_progress, migration 015) */
    int in_flight;             /* a request from sent_bytes went without an answer seen */
} outbox_row;

/* Smallest id > after whose next attempt is due at now (any row when
 * ignore_time). 1 found, 0 none, -1 error. */
int outbox_next(outbox *o, int64_t after, int64_t now, int ignore_time, int64_t *id);
/* Load row id with its body (read in place into row->body, whose storage
 * is kept between loads) or its spool path, and its pinned destination.
 * 1 found, 0 gone, -1 error. */
int outbox_load(outbox *o, int64_t id, outbox_row *row);
/* Pin where row id's first attempt goes, before it is made; a row already
 * pinned keeps its pin. 0 or -1. */
int outbox_pin(outbox *o, int64_t id, const sink_dest *d);
/* A batch delivered in parts: the first sent_bytes of row id's body are
 * accepted; in_flight: a request from there is under way. Autocommits, so
 * it is durable when it returns 0 (-1 on error). */
int outbox_sent(outbox *o, int64_t id, int64_t sent_bytes, int in_flight);
/* Count one resend of a request that may have been accepted on row id's
 * stream (stream.ambiguous_retries). 0 or -1. */
int outbox_ambiguous(outbox *o, int64_t id);
/* Move row to delivered. existed: an earlier try had stored it. */
int outbox_delivered(outbox *o, const outbox_row *row, const char *location, int existed);
/* Delete a tenant (its outbox, seen, cursor and run rows go with it, ON
 * DELETE CASCADE), then its batches' spool files. 0, or -1 with err and
 * nothing changed. */
int outbox_remove_tenant(outbox *o, int64_t tenant_id, char *err, size_t errlen);

/* Remove spool files that no outbox row names (left by a kill between
 * writing one and committing, or between a delivery and its removal).
 * Call with no other writer running. Number removed, or -1 with err. */
int outbox_spool_sweep(outbox *o, char *err, size_t errlen);
/* Note a failed attempt; retry not before next_attempt_at. maybe_stored:
 * the attempt ended without a definite answer (the object may exist), so
 * the pin stays for good; a definite refusal of a pin with no such attempt
 * behind it drops the pin, and the next attempt follows the tenant's
 * current sink. */
int outbox_failed(outbox *o, int64_t id, int64_t next_attempt_at, const char *error,
                  int maybe_stored);

#endif
