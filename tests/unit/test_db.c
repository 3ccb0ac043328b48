/* test_db.c - db_stmt(): statements that stay prepared on a connection. */
#include "check.h"
#include "daemon/db.h"

#include <stdlib.h>
#include <unistd.h>

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
        db_close(db);           /* finalizes what db_stmt() kept: ASan/valgrind see no leak */
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
    CHECK_DONE();
}
