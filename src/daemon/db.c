/* db.c - see db.h. */
#include "daemon/db.h"
#include "base/counters.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

extern const char *const db_migrations[]; /* build/migrations.c */

int db_schema_version(void)
{
    int n = 0;
    while (db_migrations[n])
        n++;
    return n;
}

/* Why each setting:
 * - WAL: the CLI and status readers never block the daemon's writers.
 * - synchronous=NORMAL: in WAL mode a commit survives a crash of the
 *   process (kill -9) without a sync; an OS crash or power loss can take
 *   back the last commits. That is harmless for commits nothing outside
 *   acts on (runs, tenant health: the next run redoes them), and before
 *   anything outside acts on a commit, db_sync() puts it on disk (an
 *   upload, a spool file's removal: outbox.c). A commit no longer holds
 *   the write lock through the WAL's sync, and one sync serves every
 *   commit before it. On a disk whose flush takes 2 ms (make
 *   bench-slowdisk), 10,000 tenants' one-shot run took 56.3 s with each
 *   batch's commit synchronous=FULL and takes 28.5 s so (2026-12-08).
 * - busy_timeout: writers from several threads and processes queue
 *   instead of failing; 30 s covers the longest batch commit.
 * - foreign_keys: removing a tenant removes its rows (its dedupe keys
 *   through a trigger instead: migration 005 says why).
 * - cache_size -1024: 1 MiB page cache per connection, bounded. The hot
 *   pages are few (dedupe keys are appended in time order and pruned from
 *   the front; large bodies live in spool files), and a larger cache only
 *   grew the daemon's memory with the size of a backlog: peak RSS from a
 *   10k to a 1M-alert backlog +15 % with 8 MiB, +11 % with 2 MiB (of 34
 *   MiB, once records were taken in place), +8.5 % with 1 MiB, for the
 *   same CPU (1M alerts: 4.8 s) and 10,000 tenants' time.
 * - page_size 4096 (new databases only; SQLite's default, said out loud):
 *   with large bodies spooled (outbox.c), 64 KiB pages no longer pay for
 *   themselves; 10,000 tenants' small commits took 20 s with them and
 *   11 s without, the 1M-alert backlog the same CPU either way. */
static const char *connection_settings =
    "PRAGMA page_size=4096;"
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA foreign_keys=ON;"
    "PRAGMA cache_size=-1024;";

/* Before SQLite initializes: no memory statistics (nscollect never reads
 * them), which SQLite kept under a global mutex taken on every allocation;
 * inserting a million dedupe keys took 7 % less CPU without. */
static void db_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* db_sync()'s state for one database file, shared by the process's
 * connections to it. A commit's frames are written between the two marks
 * db_commit() makes around it (inflight up, then down with dirty set); a
 * sync clears dirty as it begins. So when no sync runs, dirty is clear
 * and no commit is in flight, every commit a caller can see was written
 * before the last sync began, and that sync has ended: nothing is left. */
typedef struct wal_sync {
    char path[4096];           /* sqlite3_db_filename(); "" for a free slot */
    int inflight;              /* db_commit()s between their marks */
    int dirty;                 /* a commit ended since the last sync began; set at first */
    int syncing;               /* a thread is in fdatasync() now */
    int64_t durable_mark;      /* db_sync_through()'s mark read before the last sync */
} wal_sync;

static pthread_mutex_t syncs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t syncs_cv = PTHREAD_COND_INITIALIZER;
static wal_sync syncs[8];      /* databases one process opens: 1, 2 for a move */

/* db's slot, made on first use; NULL past 8 files (db_sync() then always
 * syncs). Under syncs_mu. */
static wal_sync *sync_slot(sqlite3 *db)
{
    const char *path = sqlite3_db_filename(db, "main");
    if (!path || !*path || strlen(path) >= sizeof syncs[0].path)
        return NULL;
    for (size_t i = 0; i < sizeof syncs / sizeof *syncs; i++)
        if (strcmp(syncs[i].path, path) == 0)
            return &syncs[i];
    for (size_t i = 0; i < sizeof syncs / sizeof *syncs; i++)
        if (!syncs[i].path[0]) {
            snprintf(syncs[i].path, sizeof syncs[i].path, "%s", path);
            syncs[i].dirty = 1;    /* an earlier process's commits may not be on disk */
            return &syncs[i];
        }
    return NULL;
}

static wal_sync *commit_mark_begin(sqlite3 *db)
{
    pthread_mutex_lock(&syncs_mu);
    wal_sync *w = sync_slot(db);
    if (w)
        w->inflight++;
    pthread_mutex_unlock(&syncs_mu);
    return w;
}

static void commit_mark_end(wal_sync *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&syncs_mu);
    w->inflight--;
    w->dirty = 1;
    pthread_mutex_unlock(&syncs_mu);
}

/* fdatasync the WAL through a descriptor of our own: a sync is of the file,
 * whichever descriptor wrote it. SQLite locks the database and its -shm,
 * never the -wal, so closing this one drops no lock of SQLite's. No WAL:
 * the last connection checkpointed it into the database, synced. */
static int wal_fdatasync(const char *db_path, char *err, size_t errlen)
{
    char wal[4096 + 8];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    int fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : seterr(err, errlen, "cannot open '%s' to sync it: %s",
                                            wal, strerror(errno));
    int rc = fdatasync(fd);
    int e = errno;
    close(fd);
    if (rc < 0)
        return seterr(err, errlen, "cannot sync '%s': %s", wal, strerror(e));
    return 0;
}

/* Whether w's state already covers what the caller needs: commits up to
 * the mark need (mark_sql), else every commit it can see. Under syncs_mu,
 * with no sync running. */
static int sync_covered(const wal_sync *w, const char *mark_sql, int64_t need)
{
    if (mark_sql)
        return need <= w->durable_mark;
    return !w->dirty && !w->inflight;
}

static int sync_wal(sqlite3 *db, const char *mark_sql, int64_t need, char *err, size_t errlen)
{
    const char *path = sqlite3_db_filename(db, "main");
    if (!path || !*path)
        return 0;                                   /* in memory: nothing on disk */
    pthread_mutex_lock(&syncs_mu);
    wal_sync *w = sync_slot(db);
    while (w && w->syncing)                         /* ride along, then look again */
        pthread_cond_wait(&syncs_cv, &syncs_mu);
    if (w && sync_covered(w, mark_sql, need)) {
        pthread_mutex_unlock(&syncs_mu);
        return 0;
    }
    if (w) {
        w->syncing = 1;
        w->dirty = 0;
    }
    pthread_mutex_unlock(&syncs_mu);
    /* read after dirty was cleared and before the sync: what it shows is
     * written, so the sync covers it */
    int64_t mark = mark_sql ? db_int(db, mark_sql, 0, -1) : -1;
    int rc = wal_fdatasync(path, err, errlen);
    if (w) {
        pthread_mutex_lock(&syncs_mu);
        w->syncing = 0;
        if (rc < 0)
            w->dirty = 1;
        else if (mark > w->durable_mark)
            w->durable_mark = mark;
        pthread_cond_broadcast(&syncs_cv);
        pthread_mutex_unlock(&syncs_mu);
    }
    return rc;
}

int db_sync(sqlite3 *db, char *err, size_t errlen)
{
    return sync_wal(db, NULL, 0, err, errlen);
}

int db_sync_through(sqlite3 *db, const char *mark_sql, int64_t need, char *err, size_t errlen)
{
    return sync_wal(db, mark_sql, need, err, errlen);
}

/* The directory that holds path ("." for a bare name) into dir. */
static void parent_dir(const char *path, char *dir, size_t dirlen)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, dirlen, ".");
    else if (slash == path)
        snprintf(dir, dirlen, "/");
    else
        snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
}

/* 1 when the file starts with SQLite's header (or is empty: SQLite makes
 * an empty file a database), 0 when it does not, -1 when unreadable. */
static int has_sqlite_header(const char *path)
{
    char head[16];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n == 0)
        return 1;
    return n == (ssize_t)sizeof head && memcmp(head, "SQLite format 3", 16) == 0;
}

int db_open_problem(const char *path, int create, char *err, size_t errlen)
{
    char dir[4096];
    struct stat st;
    parent_dir(path, dir, sizeof dir);
    if (stat(path, &st) != 0) {
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return seterr(err, errlen, "database '%s': its directory '%s' does not exist; "
                          "create it (mkdir -m 0700 '%s') or give another path with -d",
                          path, dir, dir);
        if (!create)
            return seterr(err, errlen, "database '%s' does not exist: run `nscollect -d %s "
                          "init` first", path, path);
        if (access(dir, W_OK | X_OK) != 0)
            return seterr(err, errlen, "cannot create database '%s': directory '%s' is not "
                          "writable by this user (%s)", path, dir, strerror(errno));
        return 0;
    }
    if (S_ISDIR(st.st_mode))
        return seterr(err, errlen, "database '%s' is a directory, not a database file: give "
                      "the file's path with -d (e.g. %s/nscollect.db)", path, path);
    int h = has_sqlite_header(path);
    if (h < 0)
        return seterr(err, errlen, "cannot read database '%s': %s", path, strerror(errno));
    if (h == 0)
        return seterr(err, errlen, "'%s' is not a database (it does not begin with SQLite's "
                      "header): check -d or the config's database; nothing was changed", path);
    if (access(path, R_OK | W_OK) != 0)
        return seterr(err, errlen, "database '%s' is read-only for this user (%s): nscollect "
                      "writes to it; fix its owner or mode (0600, owned by the user that runs "
                      "nscollect); nothing was changed", path, strerror(errno));
    if (access(dir, W_OK | X_OK) != 0)
        return seterr(err, errlen, "database '%s': its directory '%s' is not writable by this "
                      "user (%s), and SQLite must create '%s-wal' and '%s-shm' there; nothing "
                      "was changed", path, dir, strerror(errno), path, path);
    return 0;
}

/* 1 for a database someone else made: tables, but user_version 0. */
static int foreign_database(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int foreign = 0;
    if (sqlite3_prepare_v2(db, "SELECT (SELECT user_version FROM pragma_user_version) = 0 AND "
                           "EXISTS (SELECT 1 FROM sqlite_master)", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        foreign = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return foreign;
}

sqlite3 *db_open(const char *path, int create, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    sqlite3 *db = NULL;
    pthread_once(&once, db_setup);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (!create && access(path, F_OK) != 0) {
        snprintf(err, errlen, "database '%s' does not exist: run `nscollect -d %s init` first",
                 path, path);
        return NULL;
    }
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database '%s': %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(db, 30000);
    if (sqlite3_db_readonly(db, "main") == 1) {
        snprintf(err, errlen, "database '%s' is read-only (a read-only file or filesystem): "
                 "nscollect writes to it; nothing was changed", path);
        goto fail;
    }
    if (foreign_database(db)) {        /* before WAL mode rewrites its header */
        snprintf(err, errlen, "'%s' is an SQLite database but not nscollect's (it has tables "
                 "and no nscollect schema version): give another path with -d; nothing was "
                 "changed", path);
        goto fail;
    }
    if (sqlite3_exec(db, connection_settings, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot use database '%s': %s", path, sqlite3_errmsg(db));
        goto fail;
    }
    return db;
fail:
    sqlite3_close(db);
    return NULL;
}

void db_close(sqlite3 *db)
{
    sqlite3_stmt *st;
    while (db && (st = sqlite3_next_stmt(db, NULL)) != NULL)
        sqlite3_finalize(st);               /* db_stmt()'s, kept until now */
    sqlite3_close_v2(db);
}

int db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
}

sqlite3_stmt *db_prepare(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return NULL;
    }
    return st;
}

sqlite3_stmt *db_stmt(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
        if (!sqlite3_stmt_busy(st) && strcmp(sqlite3_sql(st), sql) == 0)
            return st;
    return db_prepare(db, sql, err, errlen);
}

void db_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int64_t db_int(sqlite3 *db, const char *sql, int64_t param, int64_t dflt)
{
    char err[256];
    int64_t v = dflt;
    sqlite3_stmt *st = db_stmt(db, sql, err, sizeof err);
    if (!st)
        return dflt;
    if (sqlite3_bind_parameter_count(st) > 0)
        sqlite3_bind_int64(st, 1, param);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    return v;
}

int db_begin(sqlite3 *db, char *err, size_t errlen)
{
    return db_exec(db, "BEGIN IMMEDIATE", err, errlen);
}

int db_commit(sqlite3 *db, char *err, size_t errlen)
{
    int64_t t0 = mono_us();
    wal_sync *w = commit_mark_begin(db);
    int rc = db_exec(db, "COMMIT", err, errlen);
    commit_mark_end(w);
    counters_commit_observe(mono_us() - t0);     /* nscollect_sqlite_commit_seconds */
    if (rc == 0)
        return 0;
    db_rollback(db);
    return -1;
}

void db_rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static int user_version(sqlite3 *db)
{
    return (int)db_int(db, "PRAGMA user_version", 0, -1);
}

/* One migration step: its SQL and the new user_version, atomically. */
static int migrate_step(sqlite3 *db, int to, char *err, size_t errlen)
{
    char pragma[64];
    if (db_begin(db, err, errlen) < 0)
        return -1;
    snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", to);
    if (db_exec(db, db_migrations[to - 1], err, errlen) < 0 ||
        db_exec(db, pragma, err, errlen) < 0) {
        db_rollback(db);
        return -1;
    }
    return db_commit(db, err, errlen);
}

int db_migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int have = user_version(db), want = db_schema_version();
    if (have < 0) {
        snprintf(err, errlen, "'%s' is not an nscollect database: %s", path, sqlite3_errmsg(db));
        return -1;
    }
    if (have > want) {
        snprintf(err, errlen,
                 "database '%s' has schema version %d, newer than this nscollect (%d): "
                 "use a newer nscollect binary", path, have, want);
        return -1;
    }
    for (int v = have + 1; v <= want; v++) {
        char why[512];
        if (migrate_step(db, v, why, sizeof why) < 0) {
            snprintf(err, errlen, "cannot migrate '%s' to schema version %d: %s", path, v, why);
            return -1;
        }
    }
    return 0;
}

int db_check_version(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int have = user_version(db), want = db_schema_version();
    if (have < 0) {
        snprintf(err, errlen, "'%s' is not an nscollect database (%s): check the -d path",
                 path, sqlite3_errmsg(db));
        return -1;
    }
    if (have < want) {
        snprintf(err, errlen, "database '%s' is at schema version %d, this nscollect needs %d: "
                 "run `nscollect -d %s init` to upgrade it", path, have, want, path);
        return -1;
    }
    if (have > want) {
        snprintf(err, errlen, "database '%s' has schema version %d, newer than this nscollect (%d): "
                 "use a newer nscollect binary", path, have, want);
        return -1;
    }
    return 0;
}

int64_t db_now(void)
{
    return (int64_t)time(NULL);
}

int db_lock(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open database '%s' to lock it: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "another `nscollect run` is using database '%s': stop it "
                     "first, or give this command another -d", path);
        else
            snprintf(err, errlen, "cannot lock database '%s': %s", path, strerror(e));
        return -1;
    }
    return fd;
}

void db_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}
