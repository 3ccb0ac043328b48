/* test_outbox.c - outbox_commit() when its commit fails, and what it counts
 * as a conflict. (That a batch is on disk before it is delivered is
 * test_spine.py's: it needs the syscalls.) */
#include "check.h"
#include "daemon/db.h"
#include "daemon/outbox.h"

#include <zlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct racer {
    outbox *other;            /* the second connection's outbox */
    int64_t stored;
    int rc, ran;
} racer;

static const outbox_commit_args args = {
    .tenant_id = 1, .stream_id = 1, .object_prefix = "t/alerts", .cursor = -1,
    .spool_min_bytes = 0,
};

/* A connection to the test database with its outbox; NULL (checked) when
 * either cannot be opened. */
static outbox *open_outbox(const char *path, sqlite3 **db)
{
    char err[256] = "";
    *db = db_open(path, 0, err, sizeof err);
    outbox *o = *db ? outbox_open(*db, err, sizeof err) : NULL;
    CHECK(o != NULL);
    if (!o)
        fprintf(stderr, "open: %s\n", err);
    return o;
}

/* Commit b under a, print why it failed, and release it. */
static int commit_batch(outbox *o, outbox_batch *b, const outbox_commit_args *a,
                        outbox_counts *c)
{
    char err[256] = "";
    int rc = outbox_commit(o, b, a, c, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "commit: %s\n", err);
    outbox_batch_release(b);
    return rc;
}

/* Commit records rec[0..n) (NULL-terminated), all under key tag, keeping
 * their digests when digest is set. */
static int commit_keyed(outbox *o, const char *const *rec, unsigned char tag, int digest,
                        outbox_counts *n)
{
    unsigned char key[RECORDS_KEY_LEN];
    outbox_batch b;
    memset(key, tag, sizeof key);
    outbox_batch_init(&b, 1 << 20);
    for (; *rec; rec++)
        outbox_batch_add(&b, *rec, strlen(*rec), key, 100, 100, digest);
    return commit_batch(o, &b, &args, n);
}

static int commit_one(outbox *o, const char *rec, unsigned char tag, int64_t *stored)
{
    const char *recs[] = {rec, NULL};
    outbox_counts n;
    int rc = commit_keyed(o, recs, tag, 1, &n);
    *stored = n.stored;
    return rc;
}

static int refuse_commit(void *unused)
{
    (void)unused;
    return 1;                 /* COMMIT becomes ROLLBACK */
}

/* Runs once the failed commit has rolled back (the write lock is free and
 * the batch id is free again): the other connection stores its batch. */
static void commit_meanwhile(void *arg)
{
    racer *r = arg;
    if (r->ran++)
        return;
    r->rc = commit_one(r->other, "{\"b\":2}", 'b', &r->stored);
}

static char *read_file(const char *path)
{
    static char text[16384];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* A commit that fails after writing its spool file must not remove the
 * file of the batch that took its id meanwhile (it did: that batch was
 * committed with no body, undeliverable, its cursor already moved). */
static void test_failed_commit_keeps_the_next_batch_file(const char *path)
{
    char err[256] = "", spool[128];
    sqlite3 *a = db_open(path, 0, err, sizeof err), *b = db_open(path, 0, err, sizeof err);
    outbox *oa = a ? outbox_open(a, err, sizeof err) : NULL;
    outbox *ob = b ? outbox_open(b, err, sizeof err) : NULL;
    CHECK(oa && ob);
    if (!oa || !ob) {
        fprintf(stderr, "open: %s\n", err);
        return;
    }
    racer r = {.other = ob};
    sqlite3_commit_hook(a, refuse_commit, NULL);
    sqlite3_rollback_hook(a, commit_meanwhile, &r);
    int64_t stored = -1;
    CHECK_INT(commit_one(oa, "{\"a\":1}", 'a', &stored), -1);
    CHECK_INT(stored, 0);
    CHECK(r.ran >= 1);          /* and again when the file's owner is looked up */
    CHECK_INT(r.rc, 0);
    CHECK_INT(r.stored, 1);
    int64_t id = db_int(b, "SELECT id FROM outbox WHERE spooled", 0, -1);
    CHECK_INT(db_int(b, "SELECT count(*) FROM outbox", 0, -1), 1);
    snprintf(spool, sizeof spool, "%s.spool/%lld.ndjson", path, (long long)id);
    const char *text = read_file(spool);
    CHECK(text != NULL);
    CHECK_STR(text ? text : "(no file)", "{\"b\":2}\n");
    outbox_free(oa);
    outbox_free(ob);
    db_close(a);
    db_close(b);
}

/* A record whose key was stored with other bytes is dropped and counted,
 * in the same commit or a later one, once per stored record; the same
 * bytes again, or a key stored without a digest (before migration 013, or
 * outside the overlap), are plain repeats. */
static void test_conflicts_are_counted(const char *path)
{
    sqlite3 *db;
    outbox *o = open_outbox(path, &db);
    if (!o)
        return;
    outbox_counts n;
    const char *first[] = {"{\"_id\":\"x\",\"v\":1}", "{\"_id\":\"x\",\"v\":2}",
                           "{\"_id\":\"x\",\"v\":2}", NULL};
    CHECK_INT(commit_keyed(o, first, 'x', 1, &n), 0);
    CHECK_INT(n.stored, 1);
    CHECK_INT(n.conflicts, 1);
    const char *again[] = {"{\"_id\":\"x\",\"v\":1}", "{\"_id\":\"x\",\"v\":3}", NULL};
    CHECK_INT(commit_keyed(o, again, 'x', 1, &n), 0);
    CHECK_INT(n.stored + n.conflicts, 0);
    const char *other[] = {"{\"_id\":\"z\",\"v\":1}", "{\"_id\":\"z\",\"v\":2}", NULL};
    CHECK_INT(commit_keyed(o, other, 'z', 1, &n), 0);
    CHECK_INT(n.conflicts, 1);
    CHECK_INT(db_int(db, "SELECT conflicts FROM stream WHERE id = 1", 0, -1), 2);
    CHECK_INT(db_int(db, "SELECT conflicts FROM stream_status WHERE stream_id = 1", 0, -1), 2);
    CHECK_INT(db_int(db, "SELECT conflicts FROM tenant_status WHERE name = 't'", 0, -1), 2);
    const char *undigested[] = {"{\"_id\":\"y\",\"v\":1}", NULL};
    const char *later[] = {"{\"_id\":\"y\",\"v\":2}", NULL};
    CHECK_INT(commit_keyed(o, undigested, 'y', 0, &n), 0);
    CHECK_INT(commit_keyed(o, later, 'y', 1, &n), 0);
    CHECK_INT(n.stored + n.conflicts, 0);
    CHECK_INT(db_int(db, "SELECT conflicts FROM stream WHERE id = 1", 0, -1), 2);
    outbox_free(o);
    db_close(db);
}

/* Keys stored before 2026-12-07 kept zlib's crc32 of their record (below
 * 2^32): another kind of checksum, never equal to today's. Met again, with
 * the same bytes or others, their record is a plain repeat, not a
 * conflict; a key stored now is compared as before. */
static void test_older_digests_are_not_compared(const char *path)
{
    sqlite3 *db;
    outbox *o = open_outbox(path, &db);
    if (!o)
        return;
    outbox_counts n;
    const char *v1[] = {"{\"_id\":\"c\",\"v\":1}", NULL};
    const char *v2[] = {"{\"_id\":\"c\",\"v\":2}", NULL};
    int64_t before = db_int(db, "SELECT conflicts FROM stream WHERE id = 1", 0, -1);
    CHECK_INT(commit_keyed(o, v1, 'c', 1, &n), 0);
    CHECK_INT(n.stored, 1);
    CHECK_INT(db_int(db, "SELECT count(*) FROM seen WHERE digest >= 4611686018427387904", 0,
                     -1), db_int(db, "SELECT count(*) FROM seen WHERE digest IS NOT NULL", 0, -1));
    /* what release 19 stored for v1: crc32('{"_id":"c","v":1}') */
    uLong crc = crc32(0, (const Bytef *)v1[0], (uInt)strlen(v1[0]));
    sqlite3_stmt *st = NULL;
    CHECK_INT(sqlite3_prepare_v2(db, "UPDATE seen SET digest = ?1 WHERE key = ?2", -1, &st, NULL),
              SQLITE_OK);
    unsigned char key[RECORDS_KEY_LEN];
    memset(key, 'c', sizeof key);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)crc);
    sqlite3_bind_blob(st, 2, key, sizeof key, SQLITE_STATIC);
    CHECK_INT(sqlite3_step(st), SQLITE_DONE);
    CHECK_INT(sqlite3_changes(db), 1);
    sqlite3_finalize(st);
    CHECK_INT(commit_keyed(o, v2, 'c', 1, &n), 0);
    CHECK_INT(n.stored + n.conflicts, 0);
    CHECK_INT(commit_keyed(o, v1, 'c', 1, &n), 0);
    CHECK_INT(n.stored + n.conflicts, 0);
    CHECK_INT(db_int(db, "SELECT conflicts FROM stream WHERE id = 1", 0, -1), before);
    outbox_free(o);
    db_close(db);
}

/* Commit n records "{\"_id\":\"<k>\",\"v\":<i>}" to stream 2, record i
 * under key ids[i] with window time 1000 + ids[i], each keeping its digest. */
static int commit_ids(outbox *o, const int *ids, size_t n, outbox_counts *c)
{
    static const outbox_commit_args a2 = {
        .tenant_id = 1, .stream_id = 2, .object_prefix = "t/page", .cursor = -1,
    };
    char rec[64];
    unsigned char key[RECORDS_KEY_LEN];
    outbox_batch b;
    outbox_batch_init(&b, 1 << 20);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(rec, sizeof rec, "{\"_id\":\"%d\",\"v\":%zu}", ids[i], i);
        memset(key, 0, sizeof key);
        memcpy(key, &ids[i], sizeof ids[i]);
        outbox_batch_add(&b, rec, (size_t)len, key, 1000 + ids[i], 1000 + ids[i], 1);
    }
    return commit_batch(o, &b, &a2, c);
}

/* Keys of records newer than every stored one go in many to a statement;
 * two copies of a record among them must still be one stored record and
 * one conflict (a statement that took both, or skipped the second
 * unnoticed, would store or count wrong), and the keys already stored
 * are repeats when the records come again. */
static void test_keys_many_at_a_time(const char *path)
{
    enum { K = OUTBOX_KEY_ROWS, N = 2 * K + 8 };
    char spool[128];
    sqlite3 *db;
    outbox *o = open_outbox(path, &db);
    if (!o)
        return;
    int ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = i;
    ids[K + 5] = K + 2;                /* a second copy, other bytes, in the second run of K */
    outbox_counts n;
    CHECK_INT(commit_ids(o, ids, N, &n), 0);
    CHECK_INT(n.stored, N - 1);
    CHECK_INT(n.conflicts, 1);
    CHECK_INT(db_int(db, "SELECT count(*) FROM seen WHERE stream_id = 2", 0, -1), N - 1);
    CHECK_INT(db_int(db, "SELECT count(DISTINCT digest) FROM seen WHERE stream_id = 2", 0, -1),
              N - 2);                  /* K + 2's digest is forgotten once its conflict is counted */
    int64_t id = db_int(db, "SELECT id FROM outbox WHERE stream_id = 2", 0, -1);
    snprintf(spool, sizeof spool, "%s.spool/%lld.ndjson", path, (long long)id);
    const char *text = read_file(spool);
    CHECK(text != NULL);
    static char want[16384];
    want[0] = '\0';
    for (int i = 0; i < N; i++)
        if (i != K + 5)
            snprintf(want + strlen(want), sizeof want - strlen(want),
                     "{\"_id\":\"%d\",\"v\":%d}\n", ids[i], i);
    CHECK_STR(text ? text : "(no file)", want);
    /* Again (K + 5 was never stored), with K newer ones behind: K + 1 stored. */
    int more[N + K];
    for (int i = 0; i < N + K; i++)
        more[i] = i;
    CHECK_INT(commit_ids(o, more, N + K, &n), 0);
    CHECK_INT(n.stored, K + 1);
    CHECK_INT(n.conflicts, 0);
    CHECK_INT(db_int(db, "SELECT count(*) FROM seen WHERE stream_id = 2", 0, -1), N + K);
    outbox_free(o);
    db_close(db);
}

/* Commit n records without a window time (their keys go by when they
 * were stored) to stream 3, moving its cursor; keys stored before
 * prune_before may then be pruned. */
static int commit_untimed(outbox *o, int n, int64_t prune_before)
{
    static int serial;
    outbox_commit_args a3 = {
        .tenant_id = 1, .stream_id = 3, .object_prefix = "t/audit", .cursor = 10,
        .prune_before = prune_before,
    };
    char rec[64];
    unsigned char key[RECORDS_KEY_LEN];
    outbox_batch b;
    outbox_counts c;
    outbox_batch_init(&b, 1 << 20);
    for (int i = 0; i < n; i++) {
        int len = snprintf(rec, sizeof rec, "{\"n\":%d}", ++serial);
        memset(key, 0, sizeof key);
        memcpy(key, &serial, sizeof serial);
        outbox_batch_add(&b, rec, (size_t)len, key, -1, -1, 0);
    }
    return commit_batch(o, &b, &a3, &c);
}

/* Keys that go by their stored time have no index (migration 017): a pass
 * over the stream's keys deletes them once the oldest is due, at most
 * every 300 s; the oldest is looked up first when not known, and that
 * look-up does not count as a pass (else a stream's first due keys would
 * wait 300 s more). */
static void test_keys_by_stored_time_are_pruned_by_a_pass(const char *path)
{
    sqlite3 *db;
    outbox *o = open_outbox(path, &db);
    if (!o)
        return;
    const char *count = "SELECT count(*) FROM seen WHERE stream_id = 3";
    const char *oldest = "SELECT keys_stored_oldest FROM stream WHERE id = 3";
    const char *scanned = "SELECT keys_scanned_at FROM stream WHERE id = 3";
    int64_t t0 = db_now();
    CHECK_INT(db_int(db, oldest, 0, -1), 0);           /* not known yet */
    CHECK_INT(commit_untimed(o, 3, t0 - 100), 0);
    CHECK_INT(db_int(db, count, 0, -1), 3);
    CHECK(db_int(db, oldest, 0, -1) >= t0 && db_int(db, oldest, 0, -1) <= db_now());
    CHECK_INT(db_int(db, scanned, 0, -1), 0);
    CHECK_INT(commit_untimed(o, 0, db_now() + 10), 0); /* due: the pass */
    CHECK_INT(db_int(db, count, 0, -1), 0);
    CHECK_INT(db_int(db, oldest, 0, -2), -2);          /* NULL: none left */
    CHECK(db_int(db, scanned, 0, -1) >= t0);
    CHECK_INT(commit_untimed(o, 2, db_now() + 10), 0); /* due, but a pass ran just now */
    CHECK_INT(db_int(db, count, 0, -1), 2);
    CHECK(db_int(db, oldest, 0, -1) >= t0);
    CHECK(db_exec(db, "UPDATE stream SET keys_scanned_at = keys_scanned_at - 300 WHERE id = 3",
                  NULL, 0) == 0);
    CHECK_INT(commit_untimed(o, 0, db_now() + 10), 0);
    CHECK_INT(db_int(db, count, 0, -1), 0);
    outbox_free(o);
    db_close(db);
}

int main(void)
{
    char dir[] = "/tmp/nscollect-test-outbox-XXXXXX", path[64], err[256] = "";
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/t.db", dir);
    sqlite3 *db = db_open(path, 1, err, sizeof err);
    CHECK(db != NULL && db_migrate(db, path, err, sizeof err) == 0);
    CHECK(db_exec(db, "INSERT INTO tenant (id, name, url, token, token_fp, interval_s, "
                      "lookback_s, overlap_s, page_size, max_records, window, created_at, "
                      "updated_at) VALUES (1, 't', 'http://127.0.0.1', x'00', 'fp', 60, 60, "
                      "0, 100, 0, 'insertion', 0, 0)", err, sizeof err) == 0);
    CHECK(db_exec(db, "INSERT INTO stream (id, tenant_id, name, created_at) "
                      "VALUES (1, 1, 'alert', 0), (2, 1, 'page', 0), (3, 1, 'audit', 0)", err, sizeof err) == 0);
    db_close(db);
    test_failed_commit_keeps_the_next_batch_file(path);
    test_conflicts_are_counted(path);
    test_older_digests_are_not_compared(path);
    test_keys_many_at_a_time(path);
    test_keys_by_stored_time_are_pruned_by_a_pass(path);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
    CHECK_DONE();
}
