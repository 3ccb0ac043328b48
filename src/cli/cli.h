/* cli.h - the admin commands (DESIGN.md "Command line").
 *
 * main.c parses the global options, loads the config and finds the
 * command in its table; each handler gets the shared context and its own
 * arguments (argv[0] is the command name). Handlers print results on
 * stdout, errors on stderr, and return the exit status: 0 ok, 1 a tenant
 * or delivery failed, 2 bad usage, config or input.
 */
#ifndef NSC_CLI_H
#define NSC_CLI_H

#include <stddef.h>

#include "base/config.h"
#include "daemon/secret.h"
#include "daemon/shard.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

typedef struct cli_ctx {
    nsc_config cfg;
    char db_path[CONFIG_PATH_MAX];
    char key_path[CONFIG_PATH_MAX];
    char config_path[CONFIG_PATH_MAX];  /* the file loaded (-c, $NSCOLLECT_CONFIG), "" = none */
} cli_ctx;

/* Print "nscollect: <message>" on stderr and return EXIT_USAGE. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Open ctx's database, which must exist at this binary's schema version;
 * NULL after printing the reason. The caller db_close()s it. */
#include <sqlite3.h>
sqlite3 *cli_open_db(const cli_ctx *ctx);
/* Load the key file named by ctx and, with db, check that it opens the
 * tokens already stored there; EXIT_USAGE after printing on failure
 * (missing, unreadable, not a key, not this database's key). */
int cli_load_key(const cli_ctx *ctx, sqlite3 *db, secret_key *key);

/* This instance's shard: from arg (a --shard option) when not NULL, else
 * $NSCOLLECT_SHARD when set (a StatefulSet's pod index), else the config's
 * `shard`, else not sharded (n 0). EXIT_USAGE after printing
 * what is wrong and where it came from. */
int cli_shard(const cli_ctx *ctx, const char *arg, shard *out);
/* A tenant that `tenant add` or `tenant import` would put in this
 * database: 0 when this shard owns it or any_shard is set, else EXIT_USAGE
 * after saying whose it is and what to do. */
int cli_check_shard(const cli_ctx *ctx, const char *cmd, const char *name, int any_shard);

/* `tenant list` and `tenant show` output (cli_status.c). */
#include <sqlite3.h>
int tenant_print_list(sqlite3 *db, const cli_ctx *ctx, int json);
int tenant_print_show(sqlite3 *db, const cli_ctx *ctx, const char *name, int json);

/* `tenant import-env NAME [--state FILE]` (cli_import.c). */
int tenant_import_env(cli_ctx *ctx, const char *name, const char *state_file);

/* `tenant export NAME ...` and `tenant import FILE ...` (cli_move.c);
 * argv[0] is "export" or "import". */
int tenant_move_cmd(cli_ctx *ctx, int argc, char **argv);

int cmd_init(cli_ctx *ctx, int argc, char **argv);
int cmd_tenant(cli_ctx *ctx, int argc, char **argv);
int cmd_status(cli_ctx *ctx, int argc, char **argv);
int cmd_run(cli_ctx *ctx, int argc, char **argv);
int cmd_rekey(cli_ctx *ctx, int argc, char **argv);
int cmd_shard(cli_ctx *ctx, int argc, char **argv);

#endif
