/* stream.c - see stream.h. */
#include "daemon/stream.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "daemon/db.h"

static const char *const names[STREAM_TYPES] = {
    "alert", "page", "application", "network", "audit", "infrastructure", "incident",
    "endpoint",
};

static const char *const paths[STREAM_TYPES] = {
    "/api/v2/events/data/alert", "/api/v2/events/data/page",
    "/api/v2/events/data/application", "/api/v2/events/data/network",
    "/api/v2/events/data/audit", "/api/v2/events/data/infrastructure",
    "/api/v2/events/data/incident", "/api/v2/events/data/endpoint",
};

static const char *const export_paths[STREAM_TYPES] = {
    "/api/v2/events/dataexport/events/alert", "/api/v2/events/dataexport/events/page",
    "/api/v2/events/dataexport/events/application", "/api/v2/events/dataexport/events/network",
    "/api/v2/events/dataexport/events/audit", "/api/v2/events/dataexport/events/infrastructure",
    "/api/v2/events/dataexport/events/incident", "/api/v2/events/dataexport/events/endpoint",
};

const char *stream_name(stream_type type)
{
    return (unsigned)type < STREAM_TYPES ? names[type] : NULL;
}

int stream_type_of(const char *name)
{
    for (int i = 0; i < STREAM_TYPES; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *stream_data_path(stream_type type)
{
    return (unsigned)type < STREAM_TYPES ? paths[type] : paths[STREAM_ALERT];
}

const char *stream_export_path(stream_type type)
{
    return (unsigned)type < STREAM_TYPES ? export_paths[type] : export_paths[STREAM_ALERT];
}

void stream_list_format(unsigned mask, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < STREAM_TYPES; i++)
        if (mask & STREAM_MASK(i)) {
            int w = snprintf(out + n, n < outlen ? outlen - n : 0, "%s%s", n ? "," : "",
                             names[i]);
            if (w > 0)
                n += (size_t)w;
        }
}

static int bad_name(const char *name, size_t len, const char *why, char *err, size_t errlen)
{
    char cut[64], shown[LOG_ESCAPE_MAX], valid[STREAM_LIST_MAX];
    snprintf(cut, sizeof cut, "%.*s", (int)(len < 48 ? len : 48), name);
    stream_list_format((1u << STREAM_TYPES) - 1, valid, sizeof valid);
    snprintf(err, errlen, "--streams: %s '%s'; valid streams: %s", why,
             log_escape(shown, sizeof shown, cut), valid);
    return -1;
}

int stream_list_parse(const char *list, unsigned *mask, char *err, size_t errlen)
{
    unsigned m = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[32];
        int type = -1;
        if (len > 0 && len < sizeof name) {
            memcpy(name, p, len);
            name[len] = '\0';
            type = stream_type_of(name);
        }
        if (type < 0)
            return bad_name(p, len, len ? "unknown stream" : "empty stream name in", err,
                            errlen);
        if (m & STREAM_MASK(type))
            return bad_name(p, len, "stream named twice", err, errlen);
        m |= STREAM_MASK(type);
        if (!end)
            break;
        p = end + 1;
    }
    *mask = m;
    return 0;
}

int stream_get(sqlite3 *db, int64_t id, stream *s, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT id, tenant_id, name, next_run_at, not_before, "
                               "fail_count, coalesce(last_ok_at, 0), coalesce(last_error, '') "
                               "FROM stream WHERE id = ?1", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(s, 0, sizeof *s);
        s->id = sqlite3_column_int64(st, 0);
        s->tenant_id = sqlite3_column_int64(st, 1);
        s->type = (stream_type)stream_type_of((const char *)sqlite3_column_text(st, 2));
        s->next_run_at = sqlite3_column_int64(st, 3);
        s->not_before = sqlite3_column_int64(st, 4);
        s->fail_count = sqlite3_column_int64(st, 5);
        s->last_ok_at = sqlite3_column_int64(st, 6);
        snprintf(s->last_error, sizeof s->last_error, "%s",
                 (const char *)sqlite3_column_text(st, 7));
        rc = (int)s->type < 0 ? -1 : 0;
        if (rc < 0)
            snprintf(err, errlen, "stream %lld has an unknown type", (long long)id);
    } else if (rc == SQLITE_DONE) {
        snprintf(err, errlen, "no stream with id %lld", (long long)id);
        rc = 1;
    } else {
        snprintf(err, errlen, "cannot read stream: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    db_stmt_done(st);
    return rc;
}

unsigned stream_mask_of(sqlite3 *db, int64_t tenant_id)
{
    char err[256];
    unsigned m = 0;
    sqlite3_stmt *st = db_stmt(db, "SELECT name FROM stream WHERE tenant_id = ?1", err,
                               sizeof err);
    if (!st)
        return 0;
    sqlite3_bind_int64(st, 1, tenant_id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int type = stream_type_of((const char *)sqlite3_column_text(st, 0));
        if (type >= 0)
            m |= STREAM_MASK(type);
    }
    db_stmt_done(st);
    return m;
}

/* Run sql with ?1 tenant and ?2 a stream name; -1 with err on failure. */
static int run_named(sqlite3 *db, const char *sql, int64_t tenant_id, const char *name,
                     char *err, size_t errlen)
{
    sqlite3_stmt *st = db_prepare(db, sql, err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, tenant_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, db_now());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "cannot change stream '%s': %s", name, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* Undelivered batches of the tenant's stream name, or -1. */
static int64_t pending_of(sqlite3 *db, int64_t tenant_id, const char *name)
{
    char err[256];
    int64_t n = -1;
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*) FROM outbox o JOIN stream s ON "
                                  "s.id = o.stream_id WHERE s.tenant_id = ?1 AND s.name = ?2",
                                  err, sizeof err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, tenant_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int remove_one(sqlite3 *db, int64_t tenant_id, const char *name, int force, char *err,
                      size_t errlen)
{
    int64_t pending = pending_of(db, tenant_id, name);
    if (pending < 0) {
        snprintf(err, errlen, "cannot count the batches of stream '%s': %s", name,
                 sqlite3_errmsg(db));
        return -1;
    }
    if (pending > 0 && !force) {
        snprintf(err, errlen, "stream '%s' still has %lld undelivered batch%s; deliver them "
                 "first (`nscollect run --once`) or add --force to give them up; nothing was "
                 "changed", name, (long long)pending, pending == 1 ? "" : "es");
        return -1;
    }
    if (run_named(db, "DELETE FROM outbox WHERE stream_id = (SELECT id FROM stream WHERE "
                  "tenant_id = ?1 AND name = ?2) AND ?3 IS NOT NULL", tenant_id, name, err,
                  errlen) < 0)
        return -1;
    return run_named(db, "DELETE FROM stream WHERE tenant_id = ?1 AND name = ?2 AND "
                     "?3 IS NOT NULL", tenant_id, name, err, errlen);
}

int stream_set(sqlite3 *db, int64_t tenant_id, unsigned mask, int force, char *err,
               size_t errlen)
{
    unsigned have = stream_mask_of(db, tenant_id);
    for (int i = 0; i < STREAM_TYPES; i++) {
        unsigned bit = STREAM_MASK(i);
        if ((mask & bit) && !(have & bit) &&
            run_named(db, "INSERT INTO stream (tenant_id, name, created_at) "
                      "VALUES (?1, ?2, ?3)", tenant_id, names[i], err, errlen) < 0)
            return -1;
        if (!(mask & bit) && (have & bit) &&
            remove_one(db, tenant_id, names[i], force, err, errlen) < 0)
            return -1;
    }
    return 0;
}
