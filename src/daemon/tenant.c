/* tenant.c - see tenant.h. */
#include "daemon/tenant.h"
#include "base/log.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/db.h"
#include "daemon/iterator.h"
#include "daemon/stream.h"

#define TENANT_COLUMNS \
    "id, name, url, token_fp, coalesce(sink, ''), coalesce(sink_credentials, ''), " \
    "interval_s, lookback_s, overlap_s, page_size, max_records, window, enabled, " \
    "next_run_at, not_before, fail_count, coalesce(last_ok_at, 0), coalesce(last_error, ''), " \
    "coalesce(requests_per_second, 0), api"

int tenant_name_check(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    int ok = n >= 1 && n <= 63 && (islower((unsigned char)name[0]) || isdigit((unsigned char)name[0]));
    for (size_t i = 1; ok && i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        ok = islower(c) || isdigit(c) || c == '_' || c == '-';
    }
    if (ok)
        return 0;
    char shown[4 * 80 + 1];
    char cut[81];
    snprintf(cut, sizeof cut, "%s", name);       /* the first 80 bytes, escaped */
    snprintf(err, errlen, "invalid tenant name '%s': use 1-63 characters a-z, 0-9, '_' "
             "and '-', starting with a letter or digit", log_escape(shown, sizeof shown, cut));
    return -1;
}

void tenant_init(tenant *t, const nsc_config *cfg)
{
    memset(t, 0, sizeof *t);
    t->interval_s = cfg->interval_s;
    t->lookback_s = cfg->lookback_s;
    t->overlap_s = cfg->overlap_s;
    t->page_size = cfg->page_size;
    t->max_records = cfg->max_records;
    t->window_event = cfg->window_event;
    t->enabled = 1;
}

void tenant_release(tenant *t)
{
    if (t->token) {
        secret_wipe(t->token, t->token_len);
        free(t->token);
    }
    t->token = NULL;
    t->token_len = 0;
}

static void copy_text(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", s ? (const char *)s : "");
}

static void tenant_from_row(tenant *t, sqlite3_stmt *st)
{
    t->id = sqlite3_column_int64(st, 0);
    copy_text(t->name, sizeof t->name, st, 1);
    copy_text(t->url, sizeof t->url, st, 2);
    copy_text(t->token_fp, sizeof t->token_fp, st, 3);
    copy_text(t->sink, sizeof t->sink, st, 4);
    copy_text(t->sink_credentials, sizeof t->sink_credentials, st, 5);
    t->interval_s = sqlite3_column_int(st, 6);
    t->lookback_s = sqlite3_column_int(st, 7);
    t->overlap_s = sqlite3_column_int(st, 8);
    t->page_size = sqlite3_column_int(st, 9);
    t->max_records = sqlite3_column_int64(st, 10);
    t->window_event = strcmp((const char *)sqlite3_column_text(st, 11), "event") == 0;
    t->enabled = sqlite3_column_int(st, 12);
    t->next_run_at = sqlite3_column_int64(st, 13);
    t->not_before = sqlite3_column_int64(st, 14);
    t->fail_count = sqlite3_column_int64(st, 15);
    t->last_ok_at = sqlite3_column_int64(st, 16);
    copy_text(t->last_error, sizeof t->last_error, st, 17);
    t->requests_per_s = sqlite3_column_double(st, 18);
    t->api_export = strcmp((const char *)sqlite3_column_text(st, 19), "dataexport") == 0;
}

static int tenant_select(sqlite3 *db, const char *where, const char *name, int64_t id,
                         tenant *t, char *err, size_t errlen)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT " TENANT_COLUMNS " FROM tenant WHERE %s", where);
    sqlite3_stmt *st = db_stmt(db, sql, err, errlen);
    if (!st)
        return -1;
    if (name)
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        tenant_from_row(t, st);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        char shown[LOG_ESCAPE_MAX];
        if (name)
            snprintf(err, errlen, "no tenant named '%s' (see `nscollect tenant list`)",
                     log_escape(shown, sizeof shown, name));
        else
            snprintf(err, errlen, "no tenant with id %lld", (long long)id);
        rc = 1;
    } else {
        snprintf(err, errlen, "cannot read tenant: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    db_stmt_done(st);
    if (rc == 0)
        t->streams = stream_mask_of(db, t->id);
    return rc;
}

int tenant_find(sqlite3 *db, const char *name, tenant *t, char *err, size_t errlen)
{
    return tenant_select(db, "name = ?1", name, 0, t, err, errlen);
}

int tenant_get(sqlite3 *db, int64_t id, tenant *t, char *err, size_t errlen)
{
    return tenant_select(db, "id = ?1", NULL, id, t, err, errlen);
}

/* Whether key opens the other tenants' tokens (inside the transaction
 * that stores a new one): a rekey that committed after this command loaded
 * its key would otherwise leave the new token sealed with a key nobody has
 * any more. 0 when it does or there is no other token, else -1 with err. */
static int key_is_current(sqlite3 *db, const secret_key *key, int64_t id, char *err,
                          size_t errlen)
{
    char why[256];
    sqlite3_stmt *st = db_stmt(db, "SELECT id, token FROM tenant WHERE id != ?1 AND "
                               "length(token) > 0 LIMIT 1", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        char *plain = NULL;
        size_t plain_len = 0;
        rc = secret_open(key, sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
                         (size_t)sqlite3_column_bytes(st, 1), &plain, &plain_len, why, sizeof why);
        if (plain) {
            secret_wipe(plain, plain_len);
            free(plain);
        }
        if (rc < 0)
            snprintf(err, errlen, "the other tokens are not sealed with this key file (%s): "
                     "if a rekey ran meanwhile, run this command again; nothing was written",
                     why);
    }
    db_stmt_done(st);
    return rc;
}

/* Seal token for t->id and store it with its fingerprint. */
static int store_token(sqlite3 *db, const secret_key *key, int64_t id, const char *token,
                       size_t token_len, char *err, size_t errlen)
{
    unsigned char *sealed = NULL;
    size_t sealed_len = 0;
    char fp[32];
    int rc = -1;
    if (key_is_current(db, key, id, err, errlen) < 0)
        return -1;
    if (secret_seal(key, id, token, token_len, &sealed, &sealed_len) < 0) {
        snprintf(err, errlen, "cannot encrypt the token");
        return -1;
    }
    secret_fingerprint(token, token_len, fp, sizeof fp);
    sqlite3_stmt *st = db_prepare(db, "UPDATE tenant SET token = ?1, token_fp = ?2 WHERE id = ?3",
                                  err, errlen);
    if (!st)
        goto out;
    sqlite3_bind_blob(st, 1, sealed, (int)sealed_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, fp, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        snprintf(err, errlen, "cannot store the token: %s", sqlite3_errmsg(db));
    else
        rc = 0;
out:
    sqlite3_finalize(st);
    free(sealed);
    return rc;
}

static void bind_settings(sqlite3_stmt *st, const tenant *t)
{
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->url, -1, SQLITE_STATIC);
    if (t->sink[0])
        sqlite3_bind_text(st, 3, t->sink, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    if (t->sink_credentials[0])
        sqlite3_bind_text(st, 4, t->sink_credentials, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int(st, 5, t->interval_s);
    sqlite3_bind_int(st, 6, t->lookback_s);
    sqlite3_bind_int(st, 7, t->overlap_s);
    sqlite3_bind_int(st, 8, t->page_size);
    sqlite3_bind_int64(st, 9, t->max_records);
    sqlite3_bind_text(st, 10, t->window_event ? "event" : "insertion", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 11, t->enabled);
    sqlite3_bind_int64(st, 12, db_now());
    if (t->requests_per_s > 0)
        sqlite3_bind_double(st, 14, t->requests_per_s);
    else
        sqlite3_bind_null(st, 14);
    sqlite3_bind_text(st, 15, t->api_export ? "dataexport" : "data", -1, SQLITE_STATIC);
}

/* Run sql with ?1 bound to id. */
static int run_for_id(sqlite3 *db, const char *sql, int64_t id, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_prepare(db, sql, err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* A new lookback is a new first window for the streams that have not
 * committed one yet: the start their first attempt fixed is forgotten. */
static int lookback_changed(sqlite3 *db, const tenant *t, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_prepare(db,
        "UPDATE stream SET first_start = NULL WHERE tenant_id = ?1 "
        "AND (SELECT lookback_s FROM tenant WHERE id = ?1) <> ?2 "
        "AND NOT EXISTS (SELECT 1 FROM cursor c WHERE c.stream_id = stream.id)", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int(st, 2, t->lookback_s);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

static int write_settings(sqlite3 *db, const char *sql, const tenant *t, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_prepare(db, sql, err, errlen);
    if (!st)
        return -1;
    bind_settings(st, t);
    if (t->id)
        sqlite3_bind_int64(st, 13, t->id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) {
        snprintf(err, errlen, "tenant '%s' already exists (use `nscollect tenant set %s ...` "
                 "to change it)", t->name, t->name);
        return -1;
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot write tenant '%s': %s", t->name, sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

int tenant_insert(sqlite3 *db, const secret_key *key, tenant *t,
                  const char *token, size_t token_len, char *err, size_t errlen)
{
    static const char *sql =
        "INSERT INTO tenant (name, url, sink, sink_credentials, interval_s, lookback_s, "
        "overlap_s, page_size, max_records, window, enabled, created_at, updated_at, "
        "token, token_fp, requests_per_second, api) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, x'', '', ?14, ?15)";
    if (db_begin(db, err, errlen) < 0)
        return -1;
    t->id = 0;
    if (write_settings(db, sql, t, err, errlen) < 0)
        goto fail;
    t->id = sqlite3_last_insert_rowid(db);
    if (store_token(db, key, t->id, token, token_len, err, errlen) < 0 ||
        stream_set(db, t->id, t->streams ? t->streams : STREAM_MASK(STREAM_ALERT), 0, err,
                   errlen) < 0)
        goto fail;
    return db_commit(db, err, errlen);
fail:
    db_rollback(db);
    t->id = 0;
    return -1;
}

int tenant_update(sqlite3 *db, const secret_key *key, const tenant *t,
                  const char *token, size_t token_len, char *err, size_t errlen)
{
    static const char *sql =
        "UPDATE tenant SET name = ?1, url = ?2, sink = ?3, sink_credentials = ?4, "
        "interval_s = ?5, lookback_s = ?6, overlap_s = ?7, page_size = ?8, max_records = ?9, "
        "window = ?10, enabled = ?11, updated_at = ?12, requests_per_second = ?14, api = ?15 "
        "WHERE id = ?13";
    if (db_begin(db, err, errlen) < 0)
        return -1;
    if (lookback_changed(db, t, err, errlen) < 0 || write_settings(db, sql, t, err, errlen) < 0)
        goto fail;
    if (token && store_token(db, key, t->id, token, token_len, err, errlen) < 0)
        goto fail;
    if (t->streams && stream_set(db, t->id, t->streams, t->streams_force, err, errlen) < 0)
        goto fail;
    /* Back to the data API: a later switch to dataexport starts a new index
     * from the cursor, not an old index's stale position. */
    if (!t->api_export && iterator_forget_tenant(db, t->id, err, errlen) < 0)
        goto fail;
    /* To dataexport: the iterator prunes keys only by when they were
     * stored, so the data API's keys stored without that time (0, pruned
     * by their window time: migration 016) are given the switch's time,
     * which their stream then knows as its oldest (migration 017). */
    if (t->api_export &&
        (run_for_id(db, "UPDATE seen SET stored_at = unixepoch() WHERE stored_at = 0 AND "
                    "stream_id IN (SELECT id FROM stream WHERE tenant_id = ?1)",
                    t->id, err, errlen) < 0 ||
         run_for_id(db, "UPDATE stream SET keys_stored_oldest = "
                    "min(coalesce(keys_stored_oldest, unixepoch()), unixepoch()) "
                    "WHERE tenant_id = ?1", t->id, err, errlen) < 0))
        goto fail;
    /* A changed (or re-enabled) tenant deserves a prompt try: forget the
     * back-off and any wait a server asked for. */
    if (run_for_id(db, "UPDATE tenant SET not_before = 0, next_run_at = 0 WHERE id = ?1",
                   t->id, err, errlen) < 0 ||
        run_for_id(db, "UPDATE stream SET not_before = 0, next_run_at = 0 WHERE tenant_id = ?1",
                   t->id, err, errlen) < 0)
        goto fail;
    return db_commit(db, err, errlen);
fail:
    db_rollback(db);
    return -1;
}

int tenant_load_token(sqlite3 *db, const secret_key *key, tenant *t, char *err, size_t errlen)
{
    char why[256];
    int rc = -1;
    tenant_release(t);
    sqlite3_stmt *st = db_stmt(db, "SELECT token FROM tenant WHERE id = ?1", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, t->id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, errlen, "tenant '%s' has no stored token", t->name);
        goto out;
    }
    if (secret_open(key, t->id, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                    &t->token, &t->token_len, why, sizeof why) < 0) {
        snprintf(err, errlen, "tenant '%s': %s", t->name, why);
        goto out;
    }
    rc = 0;
out:
    db_stmt_done(st);
    return rc;
}

int tenant_remove(sqlite3 *db, int64_t id, char *err, size_t errlen)
{
    return run_for_id(db, "DELETE FROM tenant WHERE id = ?1", id, err, errlen);
}

double tenant_rate(const tenant *t, const nsc_config *cfg)
{
    return t->requests_per_s > 0 ? t->requests_per_s : cfg->requests_per_s;
}

int64_t tenant_request_gap_us(const tenant *t, const nsc_config *cfg)
{
    return (int64_t)(1e6 / tenant_rate(t, cfg));
}

void tenant_sink_dest(const tenant *t, const nsc_config *cfg, sink_dest *d)
{
    tenant_sink_url(t, cfg, d->url, sizeof d->url);
    snprintf(d->credentials, sizeof d->credentials, "%s", t->sink_credentials);
    d->gzip = cfg->gcs_gzip;
}

void tenant_sink_url(const tenant *t, const nsc_config *cfg, char *out, size_t outlen)
{
    char abs[PATH_MAX];
    if (t->sink[0]) {
        snprintf(out, outlen, "%s", t->sink);
        return;
    }
    if (cfg->output_dir[0] == '/' || !getcwd(abs, sizeof abs))
        snprintf(out, outlen, "file://%s", cfg->output_dir);
    else
        snprintf(out, outlen, "file://%s/%s", abs, cfg->output_dir);
}
