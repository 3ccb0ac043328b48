/* cli.c - what every command shares: the error line, opening the database
 * and the key file (see cli.h). */
#include <stdarg.h>
#include <stdio.h>

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
    sqlite3 *db = db_open(ctx->db_path, 0, err, sizeof err);
    if (!db || db_check_version(db, ctx->db_path, err, sizeof err) < 0) {
        cli_error("%s", err);
        db_close(db);
        return NULL;
    }
    return db;
}

int cli_load_key(const cli_ctx *ctx, secret_key *key)
{
    char err[1024];
    if (secret_key_load(key, ctx->key_path, err, sizeof err) < 0)
        return cli_error("%s (the key file is created by `nscollect init`; set key_file in the "
                         "config if it lives elsewhere)", err);
    return 0;
}
