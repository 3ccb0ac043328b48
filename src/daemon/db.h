/* db.h - the SQLite file: open, tune, migrate.
 *
 * Every thread opens its own connection with db_open(). The schema lives in
 * migrations/NNN_*.sql, compiled into the binary; db_migrate() applies the
 * missing steps in order, each in one transaction that also sets
 * PRAGMA user_version, and refuses a database newer than the binary.
 * A connection belongs to the thread that opened it and is closed by it.
 * Errors: -1 (or NULL) with a sentence in the caller's err buffer that
 * names the file; nothing is left half-migrated (each step rolls back).
 */
#ifndef NSC_DB_H
#define NSC_DB_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* What is wrong with opening path, in words an operator acts on (a
 * missing directory, not a database, a directory, read-only file or
 * directory), before SQLite touches anything: -1 with err, else 0. Nothing
 * is created. It opens and closes the file to read its header, which drops
 * this process's POSIX locks on it: call it only while the process has no
 * connection to that database (the CLI, before its first db_open()). */
int db_open_problem(const char *path, int create, char *err, size_t errlen);

/* Open path (which must exist unless create is set) and apply the
 * connection settings (WAL, busy timeout, foreign keys). NULL with err
 * naming the file on failure, including "not a database". */
sqlite3 *db_open(const char *path, int create, char *err, size_t errlen);
void db_close(sqlite3 *db);

/* The schema version this binary knows (number of migrations). */
int db_schema_version(void);
/* Bring db to the newest schema. 0, or -1 with err. */
int db_migrate(sqlite3 *db, const char *path, char *err, size_t errlen);
/* Check that db is at exactly the binary's version: -1 with a message
 * telling to run `nscollect init` (older) or upgrade nscollect (newer). */
int db_check_version(sqlite3 *db, const char *path, char *err, size_t errlen);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. 0 or -1 (SQLite's message in err). */
int db_begin(sqlite3 *db, char *err, size_t errlen);
int db_commit(sqlite3 *db, char *err, size_t errlen);
void db_rollback(sqlite3 *db);

/* Make every commit this process made on db's file before the call, and
 * any an earlier process left, durable: the WAL's fdatasync, one for all
 * the threads that ask meanwhile, none when no commit ended since the
 * last. Call it before anything outside the database acts on a commit
 * (commits are synchronous=NORMAL: db.c). 0, or -1 with err. */
int db_sync(sqlite3 *db, char *err, size_t errlen);
/* db_sync() for a caller that needs only the commits up to a mark: a
 * number that commits only raise, read by mark_sql (one integer: the
 * largest id of an AUTOINCREMENT table, whose ids follow commit order).
 * None when need is at most the mark a sync read before it began; a
 * sync it makes reads the mark first. 0, or -1 with err. */
int db_sync_through(sqlite3 *db, const char *mark_sql, int64_t need, char *err, size_t errlen);

/* Run SQL with no results. 0 or -1 with err. */
int db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* Prepare, or NULL with err. The statement belongs to the caller. */
sqlite3_stmt *db_prepare(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* A statement for sql that stays prepared on db: one db prepared before
 * for the same text and is not running (SQLite lists a connection's
 * statements), else a new one; NULL with err. For queries run once per
 * job or batch. Give it back with db_stmt_done(), never finalize it:
 * db_close() finalizes what is left. */
sqlite3_stmt *db_stmt(sqlite3 *db, const char *sql, char *err, size_t errlen);
void db_stmt_done(sqlite3_stmt *st);
/* Run a single-integer query with one optional int64 parameter;
 * returns dflt when there is no row. */
int64_t db_int(sqlite3 *db, const char *sql, int64_t param, int64_t dflt);

/* One daemon (or rekey) per database: an advisory flock on the file.
 * Returns the lock's fd, or -1 with err when another process holds it. */
int db_lock(const char *path, char *err, size_t errlen);
void db_unlock(int fd);

/* Current time in epoch seconds. */
int64_t db_now(void);

#endif
