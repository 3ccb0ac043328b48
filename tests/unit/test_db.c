/* test_db.c - db_stmt(): statements that stay prepared on a connection;
 * db_sync(): the WAL synced once for the commits before it. */
#include "check.h"
#include "daemon/db.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* fdatasync() of this binary (db.c's calls land here): counts the syncs of
 * a file whose name ends in "-wal", and fails the next one when asked. */
static int wal_syncs, fail_next_sync;

int fdatasync(int fd)
{
    char link[64], target[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 4 && memcmp(target + n - 4, "-wal", 4) == 0) {
        wal_syncs++;
        if (fail_next_sync) {
            fail_next_sync = 0;
            errno = EIO;
            return -1;
        }
    }
    return (int)syscall(SYS_fdatasync, fd);
}

static int insert_row(sqlite3 *db, int v)
{
    char err[256], sql[64];
    snprintf(sql, sizeof sql, "INSERT INTO t VALUES (%d)", v);
    return db_begin(db, err, sizeof err) == 0 && db_exec(db, sql, err, sizeof err) == 0 &&
           db_commit(db, err, sizeof err) == 0 ? 0 : -1;
}

static void test_sync(sqlite3 *db, const char *path)
{
    char err[256] = "";
    sqlite3 *other = db_open(path, 0, err, sizeof err);
    CHECK(other != NULL);
    if (!other)
        return;
    CHECK_INT(db_exec(db, "CREATE TABLE t (v)", err, sizeof err), 0);
    int before = wal_syncs;
    /* the first sync of a process syncs: an earlier one's commits may not be on disk */
    CHECK_INT(db_sync(db, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 1);
    /* nothing committed since (the CREATE above ran before that sync) */
    CHECK_INT(db_sync(db, err, sizeof err), 0);
    CHECK_INT(db_sync(other, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 1);
    /* a commit on one connection is synced through the other: one file */
    CHECK_INT(insert_row(other, 1), 0);
    CHECK_INT(db_sync(db, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 2);
    CHECK_INT(db_sync(other, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 2);
    /* a failed sync says which file, and the next call syncs again */
    CHECK_INT(insert_row(db, 2), 0);
    fail_next_sync = 1;
    CHECK_INT(db_sync(db, err, sizeof err), -1);
    CHECK_HAS(err, "-wal");
    CHECK_HAS(err, "Input/output error");
    CHECK_INT(db_sync(other, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 4);
    CHECK_INT(db_sync(other, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 4);
    db_close(other);
}

/* db_sync_through(): one sync for every row up to the mark it read. */
static void test_sync_through(sqlite3 *db)
{
    char err[256] = "";
    const char *mark = "SELECT coalesce(max(id), 0) FROM q";
    CHECK_INT(db_exec(db, "CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, v)", err,
                      sizeof err), 0);
    CHECK_INT(db_exec(db, "INSERT INTO q (v) VALUES (1), (2), (3)", err, sizeof err), 0);
    int before = wal_syncs;
    CHECK_INT(db_sync_through(db, mark, 2, err, sizeof err), 0);     /* reads 3, syncs */
    CHECK_INT(wal_syncs - before, 1);
    CHECK_INT(db_sync_through(db, mark, 3, err, sizeof err), 0);     /* 3 was read before it */
    CHECK_INT(db_sync_through(db, mark, 1, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 1);
    CHECK_INT(db_exec(db, "INSERT INTO q (v) VALUES (4)", err, sizeof err), 0);
    CHECK_INT(db_sync_through(db, mark, 3, err, sizeof err), 0);     /* still covered */
    CHECK_INT(wal_syncs - before, 1);
    CHECK_INT(db_sync_through(db, mark, 4, err, sizeof err), 0);     /* past the mark */
    CHECK_INT(wal_syncs - before, 2);
    /* a failed sync raises no mark */
    CHECK_INT(db_exec(db, "INSERT INTO q (v) VALUES (5)", err, sizeof err), 0);
    fail_next_sync = 1;
    CHECK_INT(db_sync_through(db, mark, 5, err, sizeof err), -1);
    CHECK_INT(db_sync_through(db, mark, 5, err, sizeof err), 0);
    CHECK_INT(wal_syncs - before, 4);
}

/* rows enough that one step leaves the statement running */
static const char *sql = "SELECT value FROM json_each('[1,2,3]') WHERE value > ?1";

static void test_reuse(sqlite3 *db)
{
    char err[256] = "";
    sqlite3_stmt *a = db_stmt(db, sql, err, sizeof err);
    CHECK(a != NULL);
    if (!a) {
        fprintf(stderr, "db_stmt: %s\n", err);
        return;
    }
    sqlite3_bind_int(a, 1, 0);
    CHECK_INT(sqlite3_step(a), SQLITE_ROW);
    /* a is running: the same text gets a second statement */
    sqlite3_stmt *b = db_stmt(db, sql, err, sizeof err);
    CHECK(b != NULL && b != a);
    db_stmt_done(a);
    db_stmt_done(b);
    /* done: the first one is handed out again, bindings cleared */
    sqlite3_stmt *c = db_stmt(db, sql, err, sizeof err);
    CHECK(c == a || c == b);
    CHECK(sqlite3_bind_parameter_count(c) == 1 && !sqlite3_stmt_busy(c));
    db_stmt_done(c);
    CHECK(db_stmt(db, "SELECT value FROM json_each('[1]')", err, sizeof err) != a);
    CHECK(db_stmt(db, "SELEC 1", err, sizeof err) == NULL);
    CHECK_HAS(err, "syntax error");
    /* db_int() goes through db_stmt(): run twice, one statement */
    CHECK_INT(db_int(db, "SELECT 40 + ?1", 2, -1), 42);
    CHECK_INT(db_int(db, "SELECT 40 + ?1", 3, -1), 43);
    int n = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
        n += strcmp(sqlite3_sql(st), "SELECT 40 + ?1") == 0;
    CHECK_INT(n, 1);
}

int main(void)
{
    char dir[] = "/tmp/nscollect-test-db-XXXXXX", path[64], err[256] = "";
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/t.db", dir);
    sqlite3 *db = db_open(path, 1, err, sizeof err);
    CHECK(db != NULL);
    if (db) {
        test_reuse(db);
        test_sync(db, path);
        test_sync_through(db);
        db_close(db);           /* finalizes what db_stmt() kept: ASan/valgrind see no leak */
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
    CHECK_DONE();
}
