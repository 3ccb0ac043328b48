/* cli_run.c - `init`, `run` and `rekey`: the commands that own the
 * database file and the key file. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "daemon/db.h"
#include "daemon/scheduler.h"
#include "daemon/secret.h"
#include "base/util.h"

int cmd_init(cli_ctx *ctx, int argc, char **argv)
{
    char err[1024];
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        puts("usage: nscollect [-d DB] init\n\nCreate the database and its key file, or bring "
             "an existing database to this\nversion's schema. Safe to run again.");
        return 0;
    }
    if (argc > 1)
        return cli_error("init takes no arguments (usage: nscollect [-d DB] init)");
    if (db_open_problem(ctx->db_path, 1, err, sizeof err) < 0)
        return cli_error("%s", err);
    sqlite3 *db = db_open(ctx->db_path, 1, err, sizeof err);
    if (!db || db_migrate(db, ctx->db_path, err, sizeof err) < 0) {
        db_close(db);
        return cli_error("%s", err);
    }
    int64_t sealed = db_int(db, "SELECT count(*) FROM tenant WHERE length(token) > 0", 0, 0);
    db_close(db);
    if (access(ctx->key_path, F_OK) != 0 && sealed > 0)
        return cli_error("key file '%s' does not exist, and database '%s' holds %lld tokens "
                         "sealed with it: restore it from your backup (or set key_file); "
                         "`init` does not make a new one, which could not decrypt them",
                         ctx->key_path, ctx->db_path, (long long)sealed);
    if (access(ctx->key_path, F_OK) != 0 &&
        secret_key_create(ctx->key_path, err, sizeof err) < 0)
        return cli_error("%s", err);
    printf("database %s is at schema version %d; tokens are encrypted with key file %s\n",
           ctx->db_path, db_schema_version(), ctx->key_path);
    return 0;
}

static int parse_workers(const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > 64)
        return cli_error("--%s '%s': expected a whole number from 1 to 64", opt, s);
    *out = (int)v;
    return 0;
}

int cmd_run(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"once", no_argument, NULL, 'o'},
        {"fetch-workers", required_argument, NULL, 'f'},
        {"upload-workers", required_argument, NULL, 'u'},
        {"shard", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char usage[] =
        "usage: nscollect run [--once] [--fetch-workers N] [--upload-workers N] [--shard K/N]";
    run_opts ro = {.fetch_workers = ctx->cfg.fetch_workers,
                   .upload_workers = ctx->cfg.upload_workers};
    char err[1024];
    const char *shard_arg = NULL;
    secret_key key;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 'o')
            ro.once = 1;
        else if (c == 'f' || c == 'u') {
            if (parse_workers(c == 'f' ? "fetch-workers" : "upload-workers", optarg,
                              c == 'f' ? &ro.fetch_workers : &ro.upload_workers) != 0)
                return EXIT_USAGE;
            ro.fetch_workers_set |= c == 'f';
        } else if (c == 's')
            shard_arg = optarg;
        else if (c == 'h') {
            puts(usage);
            return 0;
        } else
            return cli_error("run: unknown option or missing value '%s'\n%s", argv[optind - 1], usage);
    }
    if (optind < argc)
        return cli_error("run: unexpected argument '%s'\n%s", argv[optind], usage);
    if (cli_shard(ctx, shard_arg, &ro.shard) != 0)
        return EXIT_USAGE;
    /* The daemon holds every tenant's token in memory: no core files, and
     * not dumpable, so a same-uid gcore or ptrace cannot read them either. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sqlite3 *db = cli_open_db(ctx);
    int bad = !db || cli_load_key(ctx, db, &key) != 0;
    db_close(db);
    if (bad)
        return EXIT_USAGE;
    /* --once on a terminal: progress lines under the log (progress.h) */
    progress *pg = ro.once ? progress_start(ctx->db_path) : NULL;
    int rc = scheduler_run(&ctx->cfg, ctx->db_path, &key, &ro, err, sizeof err);
    progress_stop(pg);
    if (rc == EXIT_USAGE)
        cli_error("%s", err);
    secret_wipe(&key, sizeof key);
    return rc;
}

/* Re-seal every token under new_key inside the open transaction. */
static int reseal_all(sqlite3 *db, const secret_key *old_key, const secret_key *new_key,
                      char *err, size_t errlen)
{
    sqlite3_stmt *sel = db_prepare(db, "SELECT id, token FROM tenant", err, errlen);
    sqlite3_stmt *upd = db_prepare(db, "UPDATE tenant SET token = ?2 WHERE id = ?1", err, errlen);
    int rc = sel && upd ? 0 : -1, step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(sel, 0);
        char *plain = NULL;
        size_t plain_len = 0, sealed_len = 0;
        unsigned char *sealed = NULL;
        if (secret_open(old_key, id, sqlite3_column_blob(sel, 1),
                        (size_t)sqlite3_column_bytes(sel, 1), &plain, &plain_len, err, errlen) < 0 ||
            secret_seal(new_key, id, plain, plain_len, &sealed, &sealed_len) < 0) {
            rc = -1;
        } else {
            sqlite3_bind_int64(upd, 1, id);
            sqlite3_bind_blob(upd, 2, sealed, (int)sealed_len, SQLITE_STATIC);
            rc = sqlite3_step(upd) == SQLITE_DONE ? 0 : -1;
            sqlite3_reset(upd);
        }
        if (plain) {
            secret_wipe(plain, plain_len);
            free(plain);
        }
        free(sealed);
    }
    if (rc == 0 && step != SQLITE_DONE)     /* else a partial rekey would commit */
        rc = seterr(err, errlen, "cannot read the stored tokens: %s", sqlite3_errmsg(db));
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

/* Tokens re-sealed under a new key in one transaction; the new key saved
 * to KEY.new before that commits, and renamed over KEY after. Interrupted
 * between commit and rename, KEY.new is the key that opens the tokens: so
 * KEY.new is only written once the tokens have opened with KEY (a rekey
 * run again in that state must not overwrite it, then delete it). */
/* A rekey that committed but stopped before its rename leaves the tokens
 * sealed with KEY.new: say so, since that file is then the working key. */
static void interrupted_rekey_hint(const cli_ctx *ctx, const char *next_path)
{
    if (access(next_path, F_OK) == 0)
        cli_error("rekey: nothing changed. %s exists: if an earlier rekey stopped before "
                  "replacing %s, the tokens are sealed with it; move it over %s, then run "
                  "rekey again", next_path, ctx->key_path, ctx->key_path);
}

int cmd_rekey(cli_ctx *ctx, int argc, char **argv)
{
    char err[1024], next_path[CONFIG_PATH_MAX + 8];
    secret_key old_key, new_key;
    int rc = EXIT_USAGE;
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        puts("usage: nscollect rekey\n\nRe-encrypt every stored token under a new key in one "
             "transaction, then\nreplace the key file. Stop the daemon first.");
        return 0;
    }
    if (argc > 1)
        return cli_error("rekey takes no arguments (usage: nscollect rekey)");
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    int lockfd = db_lock(ctx->db_path, err, sizeof err);
    if (lockfd < 0) {
        db_close(db);
        return cli_error("%s", err);
    }
    snprintf(next_path, sizeof next_path, "%s.new", ctx->key_path);
    if (cli_load_key(ctx, db, &old_key) != 0) {
        interrupted_rekey_hint(ctx, next_path);
        goto out;
    }
    if (secret_key_generate(&new_key) < 0)
        goto out;
    if (db_begin(db, err, sizeof err) < 0 || reseal_all(db, &old_key, &new_key, err, sizeof err) < 0) {
        db_rollback(db);
        cli_error("rekey failed, nothing changed: %s", err);
        interrupted_rekey_hint(ctx, next_path);
        goto out;
    }
    if (secret_key_save(&new_key, next_path, err, sizeof err) < 0 ||
        db_commit(db, err, sizeof err) < 0) {
        db_rollback(db);
        unlink(next_path);
        cli_error("rekey failed, nothing changed: %s", err);
        goto out;
    }
    if (rename(next_path, ctx->key_path) < 0) {
        cli_error("tokens are now sealed with %s but it could not replace %s (%s): "
                  "move it there by hand", next_path, ctx->key_path, strerror(errno));
        goto out;
    }
    printf("rekeyed %lld tokens; new key in %s\n",
           (long long)db_int(db, "SELECT count(*) FROM tenant", 0, 0), ctx->key_path);
    rc = 0;
out:
    secret_wipe(&old_key, sizeof old_key);
    secret_wipe(&new_key, sizeof new_key);
    db_unlock(lockfd);
    db_close(db);
    return rc;
}
