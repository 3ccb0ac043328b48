/* outbox.c - see outbox.h. */
#include "daemon/outbox.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/db.h"
#include "daemon/tenant.h"
#include "base/util.h"

#define SPOOL_ALIGN 4096     /* O_DIRECT: buffer, offset and length in whole blocks */

/* Keys newer than every stored one go in SEEN_ROWS to a statement: most of
 * what a key costs is its statement's step, not the row (keep_new_records).
 * 16 -> 64 (and the rows in key order, add_new_keys): 4 % fewer
 * instructions per stored alert (callgrind, 50k alerts). */
#define SEEN_ROWS OUTBOX_KEY_ROWS
#define SEEN_ROW "(?, ?, ?, ?, ?)"
#define SEEN_ROW4 SEEN_ROW ", " SEEN_ROW ", " SEEN_ROW ", " SEEN_ROW
#define SEEN_ROW16 SEEN_ROW4 ", " SEEN_ROW4 ", " SEEN_ROW4 ", " SEEN_ROW4
#define SEEN_ROW64 SEEN_ROW16 ", " SEEN_ROW16 ", " SEEN_ROW16 ", " SEEN_ROW16
/* The statement's rows and the rows bound must agree: a row short would
 * leave keys unstored (their records delivered twice later), unnoticed. */
_Static_assert(sizeof(SEEN_ROW64) == SEEN_ROWS * (sizeof(SEEN_ROW) + 1) - 1,
               "seen_add_many must have SEEN_ROWS rows");

/* Keys that go by when they were stored are deleted by a pass over their
 * stream's keys (migration 017), not more often than this. */
#define KEYS_SCAN_EVERY_S 300

/* Every statement this part runs, prepared once per connection. */
#define OUTBOX_STATEMENTS(X) \
    X(seen_add, "INSERT OR IGNORE INTO seen (stream_id, key, at, stored_at, digest) " \
                "VALUES (?1, ?2, ?3, ?4, ?5)") \
    /* No OR IGNORE: a key already there fails the statement, and undoes \
     * it, instead of being left out unnoticed. */ \
    X(seen_add_many, "INSERT INTO seen (stream_id, key, at, stored_at, digest) " \
                     "VALUES " SEEN_ROW64) \
    X(seen_top, "SELECT max(at) FROM seen WHERE stream_id = ?1") \
    X(seen_digest, "SELECT digest FROM seen WHERE stream_id = ?1 AND at = ?2 AND key = ?3") \
    X(seen_counted, "UPDATE seen SET digest = NULL WHERE stream_id = ?1 AND at = ?2 AND key = ?3") \
    X(conflicts_add, "UPDATE stream SET conflicts = conflicts + ?2 WHERE id = ?1") \
    X(batch_add, "INSERT INTO outbox (tenant_id, object_name, created_at, records, bytes, " \
                 "newest_at, body, spooled, stream_id) " \
                 "VALUES (?1, 'pending:' || hex(randomblob(8)), ?2, ?3, ?4, ?5, ?6, ?7, ?8)") \
    X(batch_name, "UPDATE outbox SET object_name = printf('%s_%s_%s_%d.ndjson', ?1, " \
                  "strftime('%Y%m%d_%H%M%S', created_at, 'unixepoch'), " \
                  "(SELECT db_id FROM identity), id) WHERE id = ?2") \
    X(cursor_set, "INSERT INTO cursor (stream_id, position, updated_at) VALUES (?1, ?2, ?3) " \
                  "ON CONFLICT (stream_id) DO UPDATE SET " \
                  "position = max(position, excluded.position), " /* never back */ \
                  "updated_at = excluded.updated_at") \
    X(cursor_get, "SELECT position FROM cursor WHERE stream_id = ?1") \
    X(first_start, "UPDATE stream SET first_start = coalesce(first_start, ?2) " \
                   "WHERE id = ?1 RETURNING first_start") \
    X(iter_clean, "UPDATE iterator SET state = 'clean', pages = pages + 1, updated_at = ?2 " \
                  "WHERE stream_id = ?1") \
    X(batch_exists, "SELECT 1 FROM outbox WHERE id = ?1") \
    X(by_stored, "SELECT api = 'dataexport' FROM tenant WHERE id = ?1") \
    X(seen_prune, "DELETE FROM seen WHERE stream_id = ?1 AND at >= 0 AND at < ?2") \
    X(seen_prune_stored, "DELETE FROM seen WHERE stream_id = ?1 AND stored_at > 0 " \
                         "AND stored_at < ?2") /* a pass over the stream's keys (017) */ \
    X(keys_stored, "UPDATE stream SET keys_stored_oldest = " \
                   "min(coalesce(keys_stored_oldest, ?2), ?2) WHERE id = ?1") \
    X(keys_due, "SELECT keys_stored_oldest, keys_scanned_at FROM stream WHERE id = ?1") \
    X(keys_oldest, "UPDATE stream SET keys_stored_oldest = (SELECT min(stored_at) FROM seen " \
                   "WHERE stream_id = ?1 AND stored_at > 0), " \
                   "keys_scanned_at = coalesce(?2, keys_scanned_at) WHERE id = ?1") \
    X(run_add, "UPDATE run SET pages = pages + ?2, fetched = fetched + ?3, stored = stored + ?4, " \
               "window_end = coalesce(?5, window_end) WHERE id = ?1") \
    X(run_start, "INSERT INTO run (tenant_id, started_at, status, window_start, stream_id) " \
                 "VALUES ((SELECT tenant_id FROM stream WHERE id = ?1), ?2, 'running', ?3, ?1)") \
    X(run_finish, "UPDATE run SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1") \
    X(stream_ok, "UPDATE stream SET fail_count = 0, last_error = NULL, last_ok_at = ?2, " \
                 "next_run_at = ?3, not_before = ?4 WHERE id = ?1") \
    X(stream_fail, "UPDATE stream SET fail_count = fail_count + 1, last_error = ?2, " \
                   "last_error_at = ?5, next_run_at = ?3, not_before = ?4 WHERE id = ?1") \
    X(tenant_sum, "UPDATE tenant SET " /* a summary of its streams, for older scripts */ \
                  "fail_count = (SELECT max(fail_count) FROM stream WHERE tenant_id = tenant.id), " \
                  "last_error = (SELECT last_error FROM stream WHERE tenant_id = tenant.id " \
                  "AND last_error IS NOT NULL ORDER BY fail_count DESC, id LIMIT 1), " \
                  "last_error_at = (SELECT max(last_error_at) FROM stream " \
                  "WHERE tenant_id = tenant.id), " \
                  "last_ok_at = (SELECT max(last_ok_at) FROM stream WHERE tenant_id = tenant.id), " \
                  "next_run_at = (SELECT min(next_run_at) FROM stream WHERE tenant_id = tenant.id), " \
                  "not_before = (SELECT min(not_before) FROM stream WHERE tenant_id = tenant.id) " \
                  "WHERE id = (SELECT tenant_id FROM stream WHERE id = ?1)") \
    X(next_due, "SELECT id FROM outbox WHERE id > ?1 AND (?3 OR next_attempt_at <= ?2) " \
                "AND NOT EXISTS (SELECT 1 FROM tenant t WHERE t.id = outbox.tenant_id " \
                "AND t.moved_at IS NOT NULL) ORDER BY id LIMIT 1") \
    /* Not a moved tenant's batch (left in its export). NOT EXISTS looks up \
     * the batch's one tenant; NOT IN built the list of every tenant at each \
     * call: with 10,000 tenants, 100 million rows read per pass. */ \
    X(load, "SELECT tenant_id, object_name, records, attempts, bytes, spooled, " \
            "sink_url, sink_credentials, sink_gzip, sink_maybe, sent_bytes, in_flight " \
            "FROM outbox WHERE id = ?1") \
    X(sent, "UPDATE outbox SET sent_bytes = ?2, in_flight = ?3 WHERE id = ?1") \
    X(ambiguous, "UPDATE stream SET ambiguous_retries = ambiguous_retries + 1 " \
                 "WHERE id = (SELECT stream_id FROM outbox WHERE id = ?1)") \
    X(pin, "UPDATE outbox SET sink_url = ?2, sink_credentials = ?3, sink_gzip = ?4 " \
           "WHERE id = ?1 AND sink_url IS NULL") \
    X(spooled, "SELECT 1 FROM outbox WHERE id = ?1 AND spooled") \
    X(tenant_spooled, "SELECT id FROM outbox WHERE tenant_id = ?1 AND spooled") \
    X(deliver, "INSERT INTO delivered (id, tenant_id, object_name, location, created_at, " \
               "delivered_at, records, bytes, newest_at, attempts, existed, stream_id) " \
               "SELECT id, tenant_id, object_name, ?2, created_at, ?3, records, bytes, " \
               "newest_at, attempts + 1, ?4, stream_id FROM outbox WHERE id = ?1") \
    X(remove, "DELETE FROM outbox WHERE id = ?1") \
    X(fail, "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, " \
            "sink_maybe = (sink_maybe OR ?4), " /* a refusal drops a pin nothing can be under */ \
            "sink_url = CASE WHEN sink_maybe OR ?4 THEN sink_url END, " \
            "sink_credentials = CASE WHEN sink_maybe OR ?4 THEN sink_credentials END, " \
            "sink_gzip = CASE WHEN sink_maybe OR ?4 THEN sink_gzip END WHERE id = ?1")

enum {
#define X(name, sql) ST_##name,
    OUTBOX_STATEMENTS(X)
#undef X
    ST_COUNT
};

struct outbox {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char spool_dir[OUTBOX_PATH_MAX - 32];   /* <database>.spool; room for "/<id>.ndjson" */
    int spool_fd;                      /* that directory, opened on first use; -1 */
};

static const char *const statement_sql[] = {
#define X(name, sql) sql,
    OUTBOX_STATEMENTS(X)
#undef X
};

outbox *outbox_open(sqlite3 *db, char *err, size_t errlen)
{
    outbox *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->db = db;
    o->spool_fd = -1;
    const char *file = sqlite3_db_filename(db, "main");
    if (!file || !file[0] ||
        snprintf(o->spool_dir, sizeof o->spool_dir, "%s.spool", file) >= (int)sizeof o->spool_dir) {
        snprintf(err, errlen, "no room for the spool directory beside the database "
                 "(its path is too long, or it is not a file)");
        free(o);
        return NULL;
    }
    for (size_t i = 0; i < ST_COUNT; i++) {
        o->st[i] = db_prepare(db, statement_sql[i], err, errlen);
        if (!o->st[i]) {
            outbox_free(o);
            return NULL;
        }
    }
    return o;
}

void outbox_free(outbox *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(o->st[i]);
    if (o->spool_fd >= 0)
        close(o->spool_fd);
    free(o);
}

/* Step a statement that returns no rows, then make it reusable. */
static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

void outbox_batch_init(outbox_batch *b, size_t max_bytes)
{
    memset(b, 0, sizeof *b);
    /* Aligned for O_DIRECT (spool_write_body). */
    buf_init_aligned(&b->data, max_bytes, SPOOL_ALIGN);
}

void outbox_batch_release(outbox_batch *b)
{
    buf_release(&b->data);
    free(b->items);
    b->items = NULL;
    b->n = b->cap = 0;
}

void outbox_batch_reset(outbox_batch *b)
{
    buf_reset(&b->data);
    b->n = 0;
}

int outbox_batch_add(outbox_batch *b, const char *rec, size_t len,
                     const unsigned char key[RECORDS_KEY_LEN], int64_t at, int64_t event_time,
                     int keep_digest)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        outbox_item *p = realloc(b->items, cap * sizeof *p);
        if (!p)
            return -1;
        b->items = p;
        b->cap = cap;
    }
    size_t off = b->data.len;
    if (buf_reserve(&b->data, len + 1) < 0)
        return -1;
    buf_append(&b->data, rec, len);
    buf_append_char(&b->data, '\n');
    outbox_item *it = &b->items[b->n++];
    it->off = off;
    it->len = len;
    memcpy(it->key, key, RECORDS_KEY_LEN);
    it->at = at;
    it->event_time = event_time;
    it->digest = keep_digest ? records_digest(rec, len) : -1;
    return 0;
}

static void bind_seen_key(sqlite3_stmt *st, int64_t stream_id, const outbox_item *it)
{
    sqlite3_bind_int64(st, 1, stream_id);
    sqlite3_bind_int64(st, 2, it->at);
    sqlite3_bind_blob(st, 3, it->key, RECORDS_KEY_LEN, SQLITE_STATIC);
}

/* The stored key row of it, looked up by its primary key: 1 when there is
 * one (a repeat), 0 when there is none, -1 on error. A repeat whose digest
 * differs from the stored one (the same "_id", other bytes) is a conflict,
 * added to *conflicts when both digests were kept. A conflict is counted
 * once per stored record: its digest is then forgotten, so that the next
 * reads of the overlap (and the repeated reads of one slice) that meet the
 * other version again do not count it again. */
static int seen_lookup(outbox *o, int64_t stream_id, const outbox_item *it, int64_t *conflicts)
{
    sqlite3_stmt *st = o->st[ST_seen_digest];
    bind_seen_key(st, stream_id, it);
    int rc = sqlite3_step(st);
    /* a crc32 stored by an older release (below RECORDS_DIGEST_MIN) says nothing */
    int conflict = rc == SQLITE_ROW && it->digest >= 0 &&
                   sqlite3_column_type(st, 0) != SQLITE_NULL &&
                   sqlite3_column_int64(st, 0) >= RECORDS_DIGEST_MIN &&
                   sqlite3_column_int64(st, 0) != it->digest;
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return -1;
    if (!conflict)
        return 1;
    bind_seen_key(o->st[ST_seen_counted], stream_id, it);
    if (step_done(o->st[ST_seen_counted]) < 0)
        return -1;
    ++*conflicts;
    return 1;
}

/* Whether the key of it goes by when it is stored (stored_at = now) rather
 * than by its window time (stored_at = 0): every key of a stream that
 * reads the iterator, and those without a time or with one in the future. */
static int goes_by_stored(const outbox_item *it, int by_stored, int64_t now)
{
    return by_stored || it->at < 0 || it->at > now;
}

/* Bind one key row at parameter base+1..base+5 of seen_add or seen_add_many. */
static void bind_key_row(sqlite3_stmt *st, int base, int64_t stream_id, const outbox_item *it,
                         int by_stored, int64_t now)
{
    sqlite3_bind_int64(st, base + 1, stream_id);
    sqlite3_bind_blob(st, base + 2, it->key, RECORDS_KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, base + 3, it->at);
    sqlite3_bind_int64(st, base + 4, goes_by_stored(it, by_stored, now) ? now : 0);
    if (it->digest >= 0)
        sqlite3_bind_int64(st, base + 5, it->digest);
    else
        sqlite3_bind_null(st, base + 5);
}

/* Store one record's key: 1 when it is new, 0 when it was committed
 * already (the overlap; a conflict is counted in n), -1 on error. A key
 * no newer than every stored one (top) is most likely a repeat, the
 * overlap read again: one look by primary key tells, digest and all,
 * where an insert that did nothing had to be followed by that same look
 * (100k repeats: 2 statements each -> 1). */
static int add_key(outbox *o, int64_t stream_id, const outbox_item *it, int by_stored,
                   int64_t now, int64_t top, outbox_counts *n)
{
    if (it->at <= top) {
        int seen = seen_lookup(o, stream_id, it, &n->conflicts);
        if (seen != 0)
            return seen < 0 ? -1 : 0;
    }
    sqlite3_stmt *st = o->st[ST_seen_add];
    bind_key_row(st, 0, stream_id, it, by_stored, now);
    if (step_done(st) < 0)
        return -1;
    if (sqlite3_changes(o->db) > 0)
        return 1;
    /* two copies of a record in one batch: the first one's key was just stored */
    if (it->digest >= 0 && seen_lookup(o, stream_id, it, &n->conflicts) < 0)
        return -1;
    return 0;
}

/* Whether a's key row sorts before b's in seen's primary key (stream_id,
 * at, key), for rows of one stream: the blob compares as memcmp. */
static int key_row_before(const outbox_item *a, const outbox_item *b)
{
    if (a->at != b->at)
        return a->at < b->at;
    /* A backlog's rows share their second 150 at a time: sorting them was
     * a thousand memcmp calls a statement, 2 % of the CPU. Eight bytes
     * read big-endian order as memcmp does, and decide nearly always. */
    uint64_t ha, hb;
    memcpy(&ha, a->key, sizeof ha);
    memcpy(&hb, b->key, sizeof hb);
    if (ha != hb)
        return be64toh(ha) < be64toh(hb);
    return memcmp(a->key + sizeof ha, b->key + sizeof hb, RECORDS_KEY_LEN - sizeof ha) < 0;
}

/* Store the keys of SEEN_ROWS records in one statement: 1 when all were
 * new, 0 when one of them was there already (the statement is undone, the
 * transaction goes on: the caller takes them one at a time), -1 on error. */
static int add_new_keys(outbox *o, int64_t stream_id, const outbox_item *its, int by_stored,
                        int64_t now)
{
    sqlite3_stmt *st = o->st[ST_seen_add_many];
    const outbox_item *row[SEEN_ROWS];
    /* In the primary key's order: after the first row SQLite's cursor
     * stays on the last cell of the table when these are the newest keys
     * in it (a backlog, one tenant's stream), and each later row is put
     * there without a search from the root. */
    for (int i = 0; i < SEEN_ROWS; i++) {
        int k = i;
        for (; k > 0 && key_row_before(&its[i], row[k - 1]); k--)
            row[k] = row[k - 1];
        row[k] = &its[i];
    }
    for (int i = 0; i < SEEN_ROWS; i++)
        bind_key_row(st, 5 * i, stream_id, row[i], by_stored, now);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 1;
    return (rc & 0xff) == SQLITE_CONSTRAINT ? 0 : -1;
}

/* The newest window time among the stream's stored keys (INT64_MIN when
 * none): a record with a later one cannot have been stored. -1 on error. */
static int seen_top(outbox *o, int64_t stream_id, int64_t *top)
{
    sqlite3_stmt *st = o->st[ST_seen_top];
    sqlite3_bind_int64(st, 1, stream_id);
    int rc = sqlite3_step(st);
    *top = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL
               ? sqlite3_column_int64(st, 0) : INT64_MIN;
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Whether the SEEN_ROWS records from i on all have a window time past
 * every stored key: worth one statement for them all. */
static int fresh_run(const outbox_batch *b, size_t i, int64_t top)
{
    if (b->n - i < SEEN_ROWS)
        return 0;
    for (size_t k = i; k < i + SEEN_ROWS; k++)
        if (b->items[k].at <= top)
            return 0;
    return 1;
}

/* Keys that go by their stored time were stored now: the stream's oldest
 * such time is now unless an older one is known (prune_by_stored()). */
static int note_stored_keys(outbox *o, int64_t stream_id, int64_t now)
{
    sqlite3_bind_int64(o->st[ST_keys_stored], 1, stream_id);
    sqlite3_bind_int64(o->st[ST_keys_stored], 2, now);
    return step_done(o->st[ST_keys_stored]);
}

/* Keep the records whose key is new: b->data is compacted in place to just
 * their lines (a record only ever moves towards the start, so memmove is
 * safe, and nothing is copied while every record is new, the usual case).
 * The batch is then only good for storing; the caller resets it.
 *
 * A record read for the first time - in a backlog and in each job past
 * the overlap, nearly all of them - has a window time past every stored
 * key, and such records' keys go in SEEN_ROWS at a time (1M alerts: 0.9
 * -> 0.6 us a key). The statement's primary key, not that guess, says
 * whether they were new: if one of them was there (two copies of a record
 * in one batch), the statement is undone and each is taken alone. */
static int keep_new_records(outbox *o, outbox_batch *b, int64_t stream_id, int by_stored,
                            outbox_counts *n, int64_t *newest)
{
    size_t w = 0;
    int64_t now = db_now(), top;
    int by_stored_keys = 0;
    *newest = -1;
    if (seen_top(o, stream_id, &top) < 0)
        return -1;
    for (size_t i = 0; i < b->n;) {
        int tried = fresh_run(b, i, top);
        int all_new = tried ? add_new_keys(o, stream_id, &b->items[i], by_stored, now) : 0;
        if (all_new < 0)
            return -1;
        /* a run that failed is taken one at a time whole, not tried again
         * from each of its records */
        for (size_t end = i + (tried ? SEEN_ROWS : 1); i < end; i++) {
            const outbox_item *it = &b->items[i];
            int added = all_new ? 1 : add_key(o, stream_id, it, by_stored, now, top, n);
            if (added < 0)
                return -1;
            if (!added)
                continue;
            if (w != it->off)
                memmove(b->data.data + w, b->data.data + it->off, it->len + 1);
            w += it->len + 1;
            n->stored++;
            by_stored_keys |= goes_by_stored(it, by_stored, now);
            if (it->event_time > *newest)
                *newest = it->event_time;
        }
    }
    b->data.len = w;
    return by_stored_keys ? note_stored_keys(o, stream_id, now) : 0;
}

static int insert_batch(outbox *o, outbox_batch *b, const outbox_commit_args *a,
                        int64_t stored, int64_t newest, int spooled, int64_t *id)
{
    sqlite3_bind_int64(o->st[ST_batch_add], 1, a->tenant_id);
    sqlite3_bind_int64(o->st[ST_batch_add], 2, db_now());
    sqlite3_bind_int64(o->st[ST_batch_add], 3, stored);
    sqlite3_bind_int64(o->st[ST_batch_add], 4, (sqlite3_int64)b->data.len);
    if (newest >= 0)
        sqlite3_bind_int64(o->st[ST_batch_add], 5, newest);
    sqlite3_bind_blob64(o->st[ST_batch_add], 6, b->data.data, spooled ? 0 : b->data.len,
                        SQLITE_STATIC);
    sqlite3_bind_int(o->st[ST_batch_add], 7, spooled);
    sqlite3_bind_int64(o->st[ST_batch_add], 8, a->stream_id);
    if (step_done(o->st[ST_batch_add]) < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(o->db);
    sqlite3_bind_text(o->st[ST_batch_name], 1, a->object_prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int64(o->st[ST_batch_name], 2, *id);
    return step_done(o->st[ST_batch_name]);
}

/* ---- spool files ---- */

static void spool_name(int64_t id, char *out, size_t outlen)
{
    snprintf(out, outlen, "%" PRId64 ".ndjson", id);
}

/* The spool directory, created (0700) on first use. */
static int spool_open(outbox *o)
{
    if (o->spool_fd >= 0)
        return 0;
    if (mkdir(o->spool_dir, 0700) == 0) {
        if (fsync_parent(o->spool_dir) < 0)
            return -1;
    } else if (errno != EEXIST)
        return -1;
    o->spool_fd = open(o->spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return o->spool_fd < 0 ? -1 : 0;
}

/* Write the body for a spool file. The whole blocks go with O_DIRECT,
 * from our buffer to the disk without a copy into the page cache (which
 * was a quarter of a large backlog's CPU): the file is fsynced at once and
 * never read back here, a file sink links it. The tail, a buffer that is
 * not aligned, and filesystems without O_DIRECT go through the page cache. */
static int spool_write_body(int fd, const char *p, size_t len)
{
    size_t direct = (uintptr_t)p % SPOOL_ALIGN ? 0 : len / SPOOL_ALIGN * SPOOL_ALIGN;
    if (direct && fcntl(fd, F_SETFL, O_DIRECT) == 0) {
        int rc = write_full(fd, p, direct);
        fcntl(fd, F_SETFL, 0);
        if (rc < 0 && (lseek(fd, 0, SEEK_SET) < 0 || ftruncate(fd, 0) < 0))
            return -1;
        if (rc < 0)
            direct = 0;                 /* EINVAL and friends: the page cache then */
    } else
        direct = 0;
    return write_full(fd, p + direct, len - direct);
}

/* Write the batch to <spool>/<id>.ndjson and make it durable before the
 * transaction that names it commits. A file left there by a rolled-back or
 * killed try with the same id is overwritten: no committed row names it. */
static int spool_write(outbox *o, int64_t id, const buf *body, char *err, size_t errlen)
{
    char name[32];
    spool_name(id, name, sizeof name);
    if (spool_open(o) < 0)
        return seterr(err, errlen, "cannot open the spool directory %s: %s", o->spool_dir,
                      strerror(errno));
    int fd = openat(o->spool_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return seterr(err, errlen, "cannot create %s/%s: %s", o->spool_dir, name, strerror(errno));
    int rc = spool_write_body(fd, body->data, body->len);
    if (rc == 0)
        rc = fdatasync(fd);
    int e = errno;
    close(fd);
    if (rc == 0 && fsync(o->spool_fd) < 0) {
        rc = -1;
        e = errno;
    }
    if (rc < 0) {
        unlinkat(o->spool_fd, name, 0);
        return seterr(err, errlen, "cannot write %s/%s: %s", o->spool_dir, name, strerror(e));
    }
    return 0;
}

static void spool_remove(outbox *o, int64_t id)
{
    char name[32];
    spool_name(id, name, sizeof name);
    if (spool_open(o) == 0)
        unlinkat(o->spool_fd, name, 0);
}

/* The spool file of batch id, whose commit failed. The rollback gave the
 * id back and let go of the write lock: another connection may already
 * have stored its own batch under that id, with a spool file of the same
 * name. So look for the row while holding the write lock, and remove the
 * file only when no row names it. When even that fails the file stays:
 * the next batch with this id overwrites it, the start-up sweep removes it. */
static void spool_abandon(outbox *o, int64_t id)
{
    char err[128];
    if (db_begin(o->db, err, sizeof err) < 0)
        return;
    sqlite3_stmt *st = o->st[ST_batch_exists];
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        spool_remove(o, id);
    db_rollback(o->db);
}

int outbox_remove_tenant(outbox *o, int64_t tenant_id, char *err, size_t errlen)
{
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc;
    char why[256];
    if (db_begin(o->db, err, errlen) < 0)
        return -1;
    sqlite3_stmt *st = o->st[ST_tenant_spooled];
    sqlite3_bind_int64(st, 1, tenant_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            int64_t *p = realloc(ids, cap * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            ids = p;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        seterr(err, errlen, "cannot list the tenant's batches: %s", sqlite3_errstr(rc));
        goto fail;
    }
    if (tenant_remove(o->db, tenant_id, err, errlen) < 0 || db_commit(o->db, err, errlen) < 0)
        goto fail;
    /* The files go only once the removal is on disk: else a power loss
     * could bring back rows whose spool files are gone. Not synced, they
     * are orphans the daemon's next start sweeps. */
    if (db_sync(o->db, why, sizeof why) == 0)
        for (size_t i = 0; i < n; i++)
            spool_remove(o, ids[i]);
    free(ids);
    return 0;
fail:
    db_rollback(o->db);
    free(ids);
    return -1;
}

int outbox_spool_sweep(outbox *o, char *err, size_t errlen)
{
    DIR *d = opendir(o->spool_dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return seterr(err, errlen, "cannot read the spool directory %s: %s", o->spool_dir,
                      strerror(errno));
    }
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char want[32];
        long long id = strtoll(de->d_name, NULL, 10);
        spool_name(id, want, sizeof want);
        if (id <= 0 || strcmp(want, de->d_name) != 0)
            continue;                   /* not ours: left alone */
        sqlite3_bind_int64(o->st[ST_spooled], 1, id);
        int rc = sqlite3_step(o->st[ST_spooled]);
        sqlite3_reset(o->st[ST_spooled]);
        if (rc == SQLITE_DONE && unlinkat(dirfd(d), de->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

/* Whatever time a record claims (none, the far future), it was in a window
 * that ended by when its key was stored: keys that go by that time are
 * deleted once it is before a->prune_before. They have no index (each
 * entry cost a write and a delete: migration 017), so they are found by one
 * pass over the stream's keys: only when the oldest of them is due, and
 * not again within KEYS_SCAN_EVERY_S. Not known yet (0: a stream from
 * before 017, or imported), the oldest is looked up first. */
static int prune_by_stored(outbox *o, const outbox_commit_args *a)
{
    sqlite3_stmt *st = o->st[ST_keys_due];
    int64_t oldest = 0, scanned = 0, now = db_now();
    sqlite3_bind_int64(st, 1, a->stream_id);
    int rc = sqlite3_step(st), none = 1;
    if (rc == SQLITE_ROW) {
        none = sqlite3_column_type(st, 0) == SQLITE_NULL;
        oldest = sqlite3_column_int64(st, 0);
        scanned = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : -1;
    if (none)
        return 0;                       /* no key goes by its stored time */
    int look_up = oldest == 0;          /* not known: found, without a pass */
    if (!look_up && (oldest >= a->prune_before || now - scanned < KEYS_SCAN_EVERY_S))
        return 0;
    if (!look_up) {
        sqlite3_bind_int64(o->st[ST_seen_prune_stored], 1, a->stream_id);
        sqlite3_bind_int64(o->st[ST_seen_prune_stored], 2, a->prune_before);
        if (step_done(o->st[ST_seen_prune_stored]) < 0)
            return -1;
        sqlite3_bind_int64(o->st[ST_keys_oldest], 2, now);  /* else NULL: kept */
    }
    sqlite3_bind_int64(o->st[ST_keys_oldest], 1, a->stream_id);
    return step_done(o->st[ST_keys_oldest]);
}

static int move_cursor(outbox *o, const outbox_commit_args *a)
{
    sqlite3_bind_int64(o->st[ST_cursor_set], 1, a->stream_id);
    sqlite3_bind_int64(o->st[ST_cursor_set], 2, a->cursor);
    sqlite3_bind_int64(o->st[ST_cursor_set], 3, db_now());
    if (step_done(o->st[ST_cursor_set]) < 0)
        return -1;
    if (a->iterator) {             /* the page is stored: the next request is 'next' */
        sqlite3_bind_int64(o->st[ST_iter_clean], 1, a->stream_id);
        sqlite3_bind_int64(o->st[ST_iter_clean], 2, db_now());
        if (step_done(o->st[ST_iter_clean]) < 0 || sqlite3_changes(o->db) != 1)
            return -1;
    }
    sqlite3_bind_int64(o->st[ST_seen_prune], 1, a->stream_id);
    /* An iterator's records come in insertion order, not by window: only
     * the time they were stored says they cannot come again. */
    sqlite3_bind_int64(o->st[ST_seen_prune], 2, a->iterator ? 0 : a->prune_before);
    if (step_done(o->st[ST_seen_prune]) < 0)
        return -1;
    return prune_by_stored(o, a);
}

static int count_run(outbox *o, const outbox_commit_args *a, int64_t stored)
{
    sqlite3_bind_int64(o->st[ST_run_add], 1, a->run_id);
    sqlite3_bind_int64(o->st[ST_run_add], 2, a->pages);
    sqlite3_bind_int64(o->st[ST_run_add], 3, a->fetched);
    sqlite3_bind_int64(o->st[ST_run_add], 4, stored);
    if (a->cursor >= 0)
        sqlite3_bind_int64(o->st[ST_run_add], 5, a->cursor);
    return step_done(o->st[ST_run_add]);
}

/* Whether the tenant reads the dataexport iterator, whose keys are pruned
 * only by when they were stored, as the database says inside the commit's
 * transaction: a `tenant set --api dataexport` that gave the data API's
 * keys a stored time (tenant.c) either came before it, and is seen here, or
 * after it, and converts the keys it stores. 1, 0, or -1 on error. */
static int keys_by_stored(outbox *o, int64_t tenant_id)
{
    sqlite3_stmt *st = o->st[ST_by_stored];
    sqlite3_bind_int64(st, 1, tenant_id);
    int rc = sqlite3_step(st);
    int yes = rc == SQLITE_ROW && sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? yes : -1;
}

static int count_conflicts(outbox *o, int64_t stream_id, int64_t conflicts)
{
    if (conflicts == 0)
        return 0;
    sqlite3_bind_int64(o->st[ST_conflicts_add], 1, stream_id);
    sqlite3_bind_int64(o->st[ST_conflicts_add], 2, conflicts);
    return step_done(o->st[ST_conflicts_add]);
}

int outbox_commit(outbox *o, outbox_batch *b, const outbox_commit_args *a,
                  outbox_counts *n, char *err, size_t errlen)
{
    int64_t newest, id = 0;
    int spooled = 0;
    *n = (outbox_counts){0, 0};
    if (db_begin(o->db, err, errlen) < 0)      /* NORMAL: the uploader syncs (upload.c) */
        return -1;
    int by_stored = keys_by_stored(o, a->tenant_id);
    if (by_stored < 0 || keep_new_records(o, b, a->stream_id, by_stored, n, &newest) < 0 ||
        count_conflicts(o, a->stream_id, n->conflicts) < 0)
        goto sql_fail;
    spooled = n->stored > 0 && (int64_t)b->data.len >= a->spool_min_bytes;
    if (n->stored > 0 && insert_batch(o, b, a, n->stored, newest, spooled, &id) < 0)
        goto sql_fail;
    if (spooled && spool_write(o, id, &b->data, err, errlen) < 0) {
        spooled = 0;                   /* nothing left behind to remove */
        goto fail;
    }
    if ((a->cursor >= 0 && move_cursor(o, a) < 0) || count_run(o, a, n->stored) < 0)
        goto sql_fail;
    if (db_commit(o->db, err, errlen) < 0)
        goto fail;
    outbox_batch_reset(b);
    return 0;
sql_fail:
    snprintf(err, errlen, "cannot store batch: %s", sqlite3_errmsg(o->db));
fail:
    db_rollback(o->db);
    if (spooled)
        spool_abandon(o, id);
    *n = (outbox_counts){0, 0};
    return -1;
}

int outbox_cursor(outbox *o, int64_t stream_id, int64_t *pos)
{
    sqlite3_bind_int64(o->st[ST_cursor_get], 1, stream_id);
    int rc = sqlite3_step(o->st[ST_cursor_get]);
    int found = rc == SQLITE_ROW;
    if (found)
        *pos = sqlite3_column_int64(o->st[ST_cursor_get], 0);
    sqlite3_reset(o->st[ST_cursor_get]);
    return found ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int outbox_first_start(outbox *o, int64_t stream_id, int64_t proposed, int64_t *start)
{
    sqlite3_stmt *st = o->st[ST_first_start];
    sqlite3_bind_int64(st, 1, stream_id);
    sqlite3_bind_int64(st, 2, proposed);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *start = sqlite3_column_int64(st, 0);
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st);     /* RETURNING: the write is done once stepped to the end */
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int64_t outbox_run_start(outbox *o, int64_t stream_id, int64_t window_start)
{
    sqlite3_bind_int64(o->st[ST_run_start], 1, stream_id);
    sqlite3_bind_int64(o->st[ST_run_start], 2, db_now());
    sqlite3_bind_int64(o->st[ST_run_start], 3, window_start);
    if (step_done(o->st[ST_run_start]) < 0)
        return -1;
    return sqlite3_last_insert_rowid(o->db);
}

int outbox_run_finish(outbox *o, int64_t run_id, const char *status, const char *error)
{
    sqlite3_bind_int64(o->st[ST_run_finish], 1, run_id);
    sqlite3_bind_text(o->st[ST_run_finish], 2, status, -1, SQLITE_STATIC);
    if (error)
        sqlite3_bind_text(o->st[ST_run_finish], 3, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(o->st[ST_run_finish], 4, db_now());
    return step_done(o->st[ST_run_finish]);
}

int outbox_stream_result(outbox *o, int64_t stream_id, int ok, const char *error,
                         int64_t next_run_at, int64_t not_before)
{
    sqlite3_stmt *st = ok ? o->st[ST_stream_ok] : o->st[ST_stream_fail];
    sqlite3_bind_int64(st, 1, stream_id);
    if (ok)
        sqlite3_bind_int64(st, 2, db_now());
    else
        sqlite3_bind_text(st, 2, error ? error : "failed", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, next_run_at);
    sqlite3_bind_int64(st, 4, not_before);
    if (!ok)
        sqlite3_bind_int64(st, 5, db_now());
    if (step_done(st) < 0)
        return -1;
    sqlite3_bind_int64(o->st[ST_tenant_sum], 1, stream_id);
    return step_done(o->st[ST_tenant_sum]);
}

int outbox_next(outbox *o, int64_t after, int64_t now, int ignore_time, int64_t *id)
{
    sqlite3_bind_int64(o->st[ST_next_due], 1, after);
    sqlite3_bind_int64(o->st[ST_next_due], 2, now);
    sqlite3_bind_int(o->st[ST_next_due], 3, ignore_time);
    int rc = sqlite3_step(o->st[ST_next_due]);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(o->st[ST_next_due], 0);
    sqlite3_reset(o->st[ST_next_due]);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Read row id's body straight into the caller's (reused) buffer with the
 * incremental blob API: a column read would have SQLite copy up to
 * fetch.batch_max_bytes into its own memory first. */
static int body_read(outbox *o, int64_t id, buf *body)
{
    sqlite3_blob *blob = NULL;
    if (sqlite3_blob_open(o->db, "main", "outbox", "body", id, 0, &blob) != SQLITE_OK) {
        sqlite3_blob_close(blob);
        return -1;
    }
    int n = sqlite3_blob_bytes(blob);
    int rc = buf_reserve(body, (size_t)n) < 0 ? -1
           : sqlite3_blob_read(blob, body->data, n, 0) != SQLITE_OK ? -1 : 0;
    if (rc == 0) {
        body->len = (size_t)n;
        body->data[n] = '\0';
    }
    sqlite3_blob_close(blob);
    return rc;
}

static void load_pin(sqlite3_stmt *st, outbox_row *row)
{
    row->pinned = sqlite3_column_type(st, 6) != SQLITE_NULL;
    row->maybe_stored = sqlite3_column_int(st, 9);
    memset(&row->dest, 0, sizeof row->dest);
    if (!row->pinned)
        return;
    const char *cred = (const char *)sqlite3_column_text(st, 7);
    snprintf(row->dest.url, sizeof row->dest.url, "%s", (const char *)sqlite3_column_text(st, 6));
    snprintf(row->dest.credentials, sizeof row->dest.credentials, "%s", cred ? cred : "");
    row->dest.gzip = sqlite3_column_int(st, 8);
}

static void load_progress(sqlite3_stmt *st, outbox_row *row)
{
    row->sent_bytes = sqlite3_column_int64(st, 10);
    row->in_flight = sqlite3_column_int(st, 11);
}

int outbox_load(outbox *o, int64_t id, outbox_row *row)
{
    sqlite3_stmt *st = o->st[ST_load];
    int spooled = 0;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row->id = id;
        row->tenant_id = sqlite3_column_int64(st, 0);
        snprintf(row->object_name, sizeof row->object_name, "%s",
                 (const char *)sqlite3_column_text(st, 1));
        row->records = sqlite3_column_int64(st, 2);
        row->attempts = sqlite3_column_int64(st, 3);
        row->bytes = sqlite3_column_int64(st, 4);
        spooled = sqlite3_column_int(st, 5);
        load_pin(st, row);
        load_progress(st, row);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : -1;
    row->spool_path[0] = '\0';
    buf_reset(&row->body);
    if (spooled) {
        char name[32];
        spool_name(id, name, sizeof name);
        snprintf(row->spool_path, sizeof row->spool_path, "%s/%s", o->spool_dir, name);
        return 1;
    }
    return body_read(o, id, &row->body) < 0 ? -1 : 1;
}

int outbox_pin(outbox *o, int64_t id, const sink_dest *d)
{
    sqlite3_stmt *st = o->st[ST_pin];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, d->url, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, d->credentials, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, d->gzip);
    return step_done(st);
}

int outbox_delivered(outbox *o, const outbox_row *row, const char *location, int existed)
{
    char err[256];
    if (db_begin(o->db, err, sizeof err) < 0)
        return -1;
    sqlite3_bind_int64(o->st[ST_deliver], 1, row->id);
    sqlite3_bind_text(o->st[ST_deliver], 2, location, -1, SQLITE_STATIC);
    sqlite3_bind_int64(o->st[ST_deliver], 3, db_now());
    sqlite3_bind_int(o->st[ST_deliver], 4, existed);
    sqlite3_bind_int64(o->st[ST_remove], 1, row->id);
    if (step_done(o->st[ST_deliver]) < 0 || step_done(o->st[ST_remove]) < 0) {
        db_rollback(o->db);
        return -1;
    }
    if (db_commit(o->db, err, sizeof err) < 0)
        return -1;
    /* The file goes only once the delivery is on disk; killed before, or
     * the sync failing, it is an orphan the next run's sweep removes. */
    if (row->spool_path[0] && db_sync(o->db, err, sizeof err) == 0)
        spool_remove(o, row->id);
    return 0;
}

int outbox_sent(outbox *o, int64_t id, int64_t sent_bytes, int in_flight)
{
    sqlite3_bind_int64(o->st[ST_sent], 1, id);
    sqlite3_bind_int64(o->st[ST_sent], 2, sent_bytes);
    sqlite3_bind_int(o->st[ST_sent], 3, in_flight);
    return step_done(o->st[ST_sent]);
}

int outbox_ambiguous(outbox *o, int64_t id)
{
    sqlite3_bind_int64(o->st[ST_ambiguous], 1, id);
    return step_done(o->st[ST_ambiguous]);
}

int outbox_failed(outbox *o, int64_t id, int64_t next_attempt_at, const char *error,
                  int maybe_stored)
{
    sqlite3_bind_int(o->st[ST_fail], 4, maybe_stored);
    sqlite3_bind_int64(o->st[ST_fail], 1, id);
    sqlite3_bind_int64(o->st[ST_fail], 2, next_attempt_at);
    sqlite3_bind_text(o->st[ST_fail], 3, error, -1, SQLITE_STATIC);
    return step_done(o->st[ST_fail]);
}
