/* main.c - nscollect's entry: global options, config, command table. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "daemon/db.h"
#include "base/log.h"
#include "base/suggest.h"
#include "base/util.h"
#include "daemon/scheduler.h"


typedef struct command {
    const char *name;
    int (*run)(cli_ctx *ctx, int argc, char **argv);
    const char *usage;
} command;

static const command commands[] = {
    {"init", cmd_init, "init                      create or migrate the database (idempotent)"},
    {"tenant", cmd_tenant, "tenant SUBCOMMAND ...     add, set, list, show, enable, disable, remove"},
    {"status", cmd_status, "status [--json] [--watch] health, lag, counts, pending, last error"},
    {"run", cmd_run, "run [--once]              the daemon; --once: one pass, deliver, exit"},
    {"rekey", cmd_rekey, "rekey                     re-encrypt every stored token under a new key"},
    {"shard", cmd_shard, "shard plan N2 | of N NAME  which tenants move when N shards become N2"},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *f)
{
    fprintf(f, "usage: nscollect [-c FILE] [-d DB] COMMAND [ARGS]\n\n"
               "  -c FILE  libconfig file (else $NSCOLLECT_CONFIG, else built-in defaults)\n"
               "  -d DB    database path (else the config's `database`, else ./nscollect.db)\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %s\n", commands[i].usage);
    fprintf(f, "\n`nscollect COMMAND --help` describes a command. Exit status: 0 ok, 1 a tenant\n"
               "or delivery failed (see `nscollect status`), 2 bad usage, config or input.\n");
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    fprintf(stderr, "nscollect: '%s' is not a nscollect command. See 'nscollect --help'.\n", name);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (suggest_distance(name, commands[i].name) <= 2) {
            fprintf(stderr, "\nThe most similar command is\n\t%s\n", commands[i].name);
            break;
        }
    return EXIT_USAGE;
}

/* -c, -d and their effect: config loaded, database and key paths fixed. */
static int setup_context(cli_ctx *ctx, const char *config_path, const char *db_arg)
{
    char err[1024];
    if (config_resolve(&ctx->cfg, config_path, err, sizeof err) < 0)
        return cli_error("%s", err);
    snprintf(ctx->db_path, sizeof ctx->db_path, "%s", db_arg ? db_arg : ctx->cfg.database);
    const char *cfg_file = config_path ? config_path : getenv("NSCOLLECT_CONFIG");
    snprintf(ctx->config_path, sizeof ctx->config_path, "%s", cfg_file ? cfg_file : "");
    if (ctx->cfg.key_file[0])
        snprintf(ctx->key_path, sizeof ctx->key_path, "%s", ctx->cfg.key_file);
    else
        snprintf(ctx->key_path, sizeof ctx->key_path, "%.*s.key",
                 (int)sizeof ctx->key_path - 5, ctx->db_path);
    log_setup((enum log_level)ctx->cfg.log_level, (enum log_format)ctx->cfg.log_format);
    return 0;
}

int main(int argc, char **argv)
{
    static cli_ctx ctx;
    const char *config_path = NULL, *db_arg = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "-d") == 0) && i + 1 < argc) {
            *(argv[i][1] == 'c' ? &config_path : &db_arg) = argv[i + 1];
            i++;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("nscollect %s\n", NSCOLLECT_VERSION);
            return 0;
        } else {
            cli_error("unknown option '%s' (or it needs a value)", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i == argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        usage(stdout);
        return 0;
    }
    const command *cmd = find_command(argv[i]);
    if (!cmd)
        return unknown_command(argv[i]);
    umask(077);                         /* database, key file and spool: owner only */
    /* A full file-size limit must be an EFBIG error we report, not a kill;
     * a peer closing a socket must be an error curl reports (CURLOPT_NOSIGNAL
     * leaves SIGPIPE to us), not a kill. */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    if (setup_context(&ctx, config_path, db_arg) != 0)
        return EXIT_USAGE;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmd->run(&ctx, argc - i, argv + i);
    curl_global_cleanup();
    return rc;
}
