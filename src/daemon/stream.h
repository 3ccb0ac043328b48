/* stream.h - a tenant's streams: which Netskope records it collects.
 *
 * A stream is one (tenant, type) pair: 'alert' (every alert type, from
 * /api/v2/events/data/alert) or one of Netskope's event types (page,
 * application, network, audit, infrastructure, incident, endpoint, from
 * /api/v2/events/data/{type}). It owns the cursor, the dedupe keys, the
 * schedule, back-off and health, the run rows and the batches; the tenant
 * keeps the URL, token, sink, window settings and request pacing, shared
 * by its streams. Migration 007 gave every older tenant one 'alert' stream
 * whose id is the tenant's id.
 *
 * A set of streams is a bit mask over the types (bit 1 << type). The
 * functions taking a sqlite3 handle run inside the caller's transaction
 * when there is one.
 */
#ifndef NSC_STREAM_H
#define NSC_STREAM_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

typedef enum stream_type {
    STREAM_ALERT = 0, STREAM_PAGE, STREAM_APPLICATION, STREAM_NETWORK, STREAM_AUDIT,
    STREAM_INFRASTRUCTURE, STREAM_INCIDENT, STREAM_ENDPOINT, STREAM_TYPES
} stream_type;

#define STREAM_MASK(type) (1u << (type))
#define STREAM_ERR_MAX 512
#define STREAM_LIST_MAX 128          /* room for every name, comma-separated */

typedef struct stream {
    int64_t id, tenant_id;
    stream_type type;
    int64_t next_run_at, not_before, fail_count, last_ok_at;
    char last_error[STREAM_ERR_MAX];
} stream;

/* "alert", "page", ...; NULL for a type out of range. */
const char *stream_name(stream_type type);
/* The type named name, or -1. */
int stream_type_of(const char *name);
/* The data API path of a type: "/api/v2/events/data/alert", ... */
const char *stream_data_path(stream_type type);
/* The dataexport iterator path of a type: "/api/v2/events/dataexport/events/alert"
 * (every alert type in one iterator), ".../events/page", ... */
const char *stream_export_path(stream_type type);

/* Parse "alert,page,network" (no blanks, no repeats, not empty) into a
 * mask. 0, or -1 with err naming the bad name and listing the valid ones. */
int stream_list_parse(const char *list, unsigned *mask, char *err, size_t errlen);
/* The mask's names, comma-separated, in type order. */
void stream_list_format(unsigned mask, char *out, size_t outlen);

/* Load stream id: 0 found, 1 not found, -1 error (err says why). */
int stream_get(sqlite3 *db, int64_t id, stream *s, char *err, size_t errlen);
/* The tenant's streams as a mask; 0 when it has none or on error. */
unsigned stream_mask_of(sqlite3 *db, int64_t tenant_id);

/* Give the tenant exactly the streams in mask: missing ones are created
 * (no cursor: their first window goes back the tenant's lookback), ones
 * not in mask are removed with their cursor and keys. A stream with
 * undelivered batches is not removed unless force (its batches are then
 * given up); without force that is -1 with err naming the stream and the
 * count. Call inside a transaction: on -1 the caller rolls back. */
int stream_set(sqlite3 *db, int64_t tenant_id, unsigned mask, int force, char *err,
               size_t errlen);

#endif
