/* iterator.c - see iterator.h. */
#include "daemon/iterator.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon/db.h"

static const char *const state_names[] = {"new", "starting", "pending", "clean"};

const char *iterator_state_name(iterator_state s)
{
    return (unsigned)s <= ITER_CLEAN ? state_names[s] : "?";
}

static iterator_state state_of(const char *name)
{
    for (int i = 0; i <= ITER_CLEAN; i++)
        if (name && strcmp(name, state_names[i]) == 0)
            return (iterator_state)i;
    return ITER_PENDING;          /* unknown: the safe choice (CHECK forbids it anyway) */
}

/* 1 loaded, 0 no row, -1 error. */
static int iterator_read(sqlite3 *db, int64_t stream_id, iterator *it, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT index_name, start_epoch, state, pages, resends "
                               "FROM iterator WHERE stream_id = ?1", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, stream_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(it, 0, sizeof *it);
        it->stream_id = stream_id;
        snprintf(it->index_name, sizeof it->index_name, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        it->start_epoch = sqlite3_column_int64(st, 1);
        it->state = state_of((const char *)sqlite3_column_text(st, 2));
        it->pages = sqlite3_column_int64(st, 3);
        it->resends = sqlite3_column_int64(st, 4);
    } else if (rc != SQLITE_DONE)
        snprintf(err, errlen, "cannot read the iterator of stream %lld: %s",
                 (long long)stream_id, sqlite3_errmsg(db));
    db_stmt_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int iterator_create(sqlite3 *db, int64_t stream_id, int64_t start_epoch, char *err,
                           size_t errlen)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO iterator (stream_id, index_name, start_epoch, "
                               "updated_at) VALUES (?1, printf('nscollect_%d_%s', ?1, "
                               "lower(hex(randomblob(8)))), ?2, ?3)", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, stream_id);
    sqlite3_bind_int64(st, 2, start_epoch);
    sqlite3_bind_int64(st, 3, db_now());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "cannot create the iterator of stream %lld: %s",
                 (long long)stream_id, sqlite3_errmsg(db));
    db_stmt_done(st);
    return rc;
}

int iterator_load(sqlite3 *db, int64_t stream_id, int64_t start_epoch, iterator *it,
                  char *err, size_t errlen)
{
    int found = iterator_read(db, stream_id, it, err, errlen);
    if (found == 0 && iterator_create(db, stream_id, start_epoch, err, errlen) == 0)
        found = iterator_read(db, stream_id, it, err, errlen);
    if (found == 0)
        snprintf(err, errlen, "the iterator of stream %lld vanished", (long long)stream_id);
    return found == 1 ? 0 : -1;
}

const char *iterator_op(const iterator *it, char *buf, size_t buflen)
{
    switch (it->state) {
    case ITER_NEW:
    case ITER_STARTING:
        snprintf(buf, buflen, "%" PRId64, it->start_epoch);
        return buf;
    case ITER_CLEAN:
        return "next";
    default:
        return "resend";
    }
}

/* Write state (and count a resend) with the WAL synced at the commit. */
static int write_synced(sqlite3 *db, const iterator *it, iterator_state to, int resend,
                        char *err, size_t errlen)
{
    if (db_exec(db, "PRAGMA synchronous=FULL", err, errlen) < 0)
        return -1;
    int rc = -1;
    sqlite3_stmt *st = db_stmt(db, "UPDATE iterator SET state = ?2, resends = resends + ?3, "
                               "updated_at = ?4 WHERE stream_id = ?1", err, errlen);
    if (st) {
        sqlite3_bind_int64(st, 1, it->stream_id);
        sqlite3_bind_text(st, 2, state_names[to], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, resend);
        sqlite3_bind_int64(st, 4, db_now());
        rc = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(db) == 1 ? 0 : -1;
        if (rc < 0)
            snprintf(err, errlen, "cannot note the iterator request of stream %lld: %s",
                     (long long)it->stream_id, sqlite3_errmsg(db));
        db_stmt_done(st);
    }
    db_exec(db, "PRAGMA synchronous=NORMAL", NULL, 0);
    return rc;
}

int iterator_begin(sqlite3 *db, iterator *it, char *err, size_t errlen)
{
    iterator_state to = it->state == ITER_NEW ? ITER_STARTING
                      : it->state == ITER_CLEAN ? ITER_PENDING : it->state;
    int resend = it->state == ITER_PENDING;
    if (to == it->state && !resend)
        return 0;
    if (write_synced(db, it, to, resend, err, errlen) < 0)
        return -1;
    it->state = to;
    it->resends += resend;
    return 0;
}

void iterator_committed(iterator *it)
{
    it->state = ITER_CLEAN;
    it->pages++;
}

int iterator_forget_tenant(sqlite3 *db, int64_t tenant_id, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_stmt(db, "DELETE FROM iterator WHERE stream_id IN "
                               "(SELECT id FROM stream WHERE tenant_id = ?1)", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, tenant_id);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "cannot forget the iterators: %s", sqlite3_errmsg(db));
    db_stmt_done(st);
    return rc;
}
