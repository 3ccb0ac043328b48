/* cli.c - what every command shares: the error line, opening the database
 * and the key file (see cli.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "daemon/db.h"
#include "daemon/secret.h"

int cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("nscollect: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

sqlite3 *cli_open_db(const cli_ctx *ctx)
{
    char err[1024];
    sqlite3 *db = NULL;
    if (db_open_problem(ctx->db_path, 0, err, sizeof err) < 0) {
        cli_error("%s", err);
        return NULL;
    }
    db = db_open(ctx->db_path, 0, err, sizeof err);
    /* An operator's commit is synced before it is seen (synchronous=FULL):
     * a running daemon may act on it at once (an imported batch delivered,
     * a moved tenant's file handed on), and its db_sync() cannot know of
     * another process's commits. A command commits a few times: no cost. */
    if (!db || db_check_version(db, ctx->db_path, err, sizeof err) < 0 ||
        db_exec(db, "PRAGMA synchronous=FULL", err, sizeof err) < 0) {
        cli_error("%s", err);
        db_close(db);
        return NULL;
    }
    return db;
}

/* The first stored token must open with key: a wrong key file would
 * otherwise seal new tokens under another key than the old ones. */
static int key_opens_tokens(sqlite3 *db, const cli_ctx *ctx, const secret_key *key)
{
    char why[256], name[128] = "";
    char *plain = NULL;
    size_t plain_len = 0;
    int rc = 0;
    sqlite3_stmt *st = db_prepare(db, "SELECT id, name, token FROM tenant WHERE length(token) > 0 "
                                  "ORDER BY id LIMIT 1", why, sizeof why);
    if (!st)
        return cli_error("cannot read database '%s': %s", ctx->db_path, why);
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(name, sizeof name, "%s", (const char *)sqlite3_column_text(st, 1));
        if (secret_open(key, sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 2),
                        (size_t)sqlite3_column_bytes(st, 2), &plain, &plain_len, why,
                        sizeof why) < 0)
            rc = cli_error("key file '%s' is not the key the tokens in database '%s' were "
                           "sealed with (tenant '%s' cannot be decrypted): put the right key "
                           "file back or set key_file; nothing was changed", ctx->key_path,
                           ctx->db_path, name);
        if (plain) {
            secret_wipe(plain, plain_len);
            free(plain);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int cli_load_key(const cli_ctx *ctx, sqlite3 *db, secret_key *key)
{
    char err[1024];
    if (secret_key_load(key, ctx->key_path, err, sizeof err) < 0)
        return cli_error("%s", err);
    if (db && key_opens_tokens(db, ctx, key) != 0) {
        secret_wipe(key, sizeof *key);
        return EXIT_USAGE;
    }
    return 0;
}

int cli_shard(const cli_ctx *ctx, const char *arg, shard *out)
{
    char err[256];
    const char *env = getenv("NSCOLLECT_SHARD");
    int from_env = !arg && env && env[0];
    const char *text = arg ? arg : from_env ? env : ctx->cfg.shard;
    *out = (shard){0, 0};
    if (!arg && !text[0])
        return 0;
    if (shard_parse(text, out, err, sizeof err) == 0)
        return 0;
    if (arg)
        return cli_error("--shard %s", err);
    if (from_env)
        return cli_error("$NSCOLLECT_SHARD: %s", err);
    return cli_error("config key 'shard': %s; fix it in the config file, or remove it when "
                     "this instance is not one of several", err);
}

int cli_check_shard(const cli_ctx *ctx, const char *cmd, const char *name, int any_shard)
{
    shard s;
    if (cli_shard(ctx, NULL, &s) != 0)
        return EXIT_USAGE;
    if (any_shard || shard_owns(&s, name))
        return 0;
    return cli_error("%s %s: the tenant belongs to shard %d/%d, and this instance is shard "
                     "%d/%d (config key 'shard' or $NSCOLLECT_SHARD): add it on that shard, or pass --any-shard "
                     "to keep it here (staging a reshard: a run with --shard fetches a tenant only "
                     "on the shard it belongs to)",
                     cmd, name, shard_of(name, s.n), s.n, s.k, s.n);
}
