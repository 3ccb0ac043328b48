/* tenant.h - tenant definitions in the tenant table.
 *
 * A tenant is one customer's Netskope instance: its URL, its API token
 * (sealed with secret.h before it touches the database), its sink, and its
 * window settings. The plaintext token is only held in memory by a caller
 * that asked for it (tenant_load_token) and wiped by tenant_release().
 * Functions run on the caller's connection and thread (inside its
 * transaction when there is one); errors are -1 with the reason in err,
 * worded for an operator (the CLI prints it as is and exits 2).
 */
#ifndef NSC_TENANT_H
#define NSC_TENANT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "daemon/secret.h"
#include "sink/sink.h"

#define TENANT_NAME_MAX 64
#define TENANT_URL_MAX 512
#define TENANT_ERR_MAX 512

typedef struct tenant {
    int64_t id;                         /* 0 until inserted */
    char name[TENANT_NAME_MAX];
    char url[TENANT_URL_MAX];
    char token_fp[32];
    char sink[CONFIG_PATH_MAX];         /* "" = file sink under output_dir */
    char sink_credentials[CONFIG_PATH_MAX];
    int interval_s, lookback_s, overlap_s, page_size;
    int64_t max_records;
    double requests_per_s;              /* this tenant's rate; 0 = fetch.requests_per_second */
    int window_event;                   /* 0 insertion time, 1 event time */
    int api_export;                     /* 0 the data API (/api/v2/events/data/{type}),
                                           1 the dataexport iterator (iterator.h) */
    int enabled;
    int64_t next_run_at, not_before, fail_count, last_ok_at;
    char last_error[TENANT_ERR_MAX];
    unsigned streams;                   /* stream.h mask: loaded with the tenant; for insert
                                           0 = alert only, for update 0 = unchanged */
    int streams_force;                  /* update: give up a removed stream's batches */

    char *token;                        /* plaintext, only after tenant_load_token */
    size_t token_len;
} tenant;

/* NAME is [a-z0-9][a-z0-9_-]{0,62}. 0, or -1 with err quoting the name. */
int tenant_name_check(const char *name, char *err, size_t errlen);

/* A new tenant with the config's tenant_defaults. */
void tenant_init(tenant *t, const nsc_config *cfg);
/* Wipe and free the plaintext token, if any. */
void tenant_release(tenant *t);

/* Insert t (sets t->id) with token sealed under key, and its streams
 * (t->streams, 'alert' alone when 0). -1 with err
 * ("tenant 'acme' already exists") on failure. Runs in its own transaction. */
int tenant_insert(sqlite3 *db, const secret_key *key, tenant *t,
                  const char *token, size_t token_len, char *err, size_t errlen);
/* Write every setting of t back; a non-NULL token replaces the stored one.
 * A non-zero t->streams becomes the tenant's set of streams (stream_set:
 * a removed stream with undelivered batches is refused unless
 * t->streams_force, and then nothing is written).
 * Every update (`tenant set`, enable, disable) clears the back-off of each
 * of the tenant's streams and any wait a server asked for, so it runs again soon. */
int tenant_update(sqlite3 *db, const secret_key *key, const tenant *t,
                  const char *token, size_t token_len, char *err, size_t errlen);
/* Load by name or id: 0 found, 1 not found (err says so), -1 error. */
int tenant_find(sqlite3 *db, const char *name, tenant *t, char *err, size_t errlen);
int tenant_get(sqlite3 *db, int64_t id, tenant *t, char *err, size_t errlen);
/* Decrypt the stored token into t->token. 0 or -1 with err. */
int tenant_load_token(sqlite3 *db, const secret_key *key, tenant *t, char *err, size_t errlen);
/* Delete the tenant and everything it owns. */
int tenant_remove(sqlite3 *db, int64_t id, char *err, size_t errlen);

/* The sink URL actually used: t->sink, or file://<abs output_dir>. */
void tenant_sink_url(const tenant *t, const nsc_config *cfg, char *out, size_t outlen);
/* t's requests per second (its own, or the config's), and the gap between
 * two of its requests. */
double tenant_rate(const tenant *t, const nsc_config *cfg);
int64_t tenant_request_gap_us(const tenant *t, const nsc_config *cfg);
/* Where t's next new batch goes: its sink URL, credentials and gzip. */
void tenant_sink_dest(const tenant *t, const nsc_config *cfg, sink_dest *d);

#endif
