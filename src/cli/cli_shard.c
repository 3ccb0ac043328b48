/* cli_shard.c - `nscollect shard plan N2` and `nscollect shard of N NAME...`.
 *
 * plan: which tenants of this database leave it when the instances go from
 * N shards to N2 (this one staying shard K), and the commands that move
 * them, one export here and one import on the receiving shard each. It
 * reads the database and writes nothing; the moving is done by the
 * printed commands (tenant export/import, exactly once). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "daemon/db.h"
#include "daemon/shard.h"

static const char shard_usage[] =
    "usage: nscollect shard plan N2 [--shard K/N] [--to-config PATTERN] [--dir DIR]\n"
    "       nscollect shard of N NAME...\n"
    "\n"
    "plan: the tenants of this database that belong to another shard once there are N2\n"
    "shards (this instance stays shard K: --shard, else the config key 'shard', else 0/1),\n"
    "and the tenant export / tenant import commands that move them. PATTERN names the\n"
    "receiving shard's config file, %d standing for its number (e.g.\n"
    "/etc/nscollect/shard-%d.conf); DIR is where the export files go (default .).\n"
    "Nothing is changed: run the printed commands, then restart every shard with N2.\n"
    "of: the shard (0..N-1) each NAME belongs to among N.\n";

/* Print s single-quoted for a POSIX shell. */
static void put_quoted(const char *s)
{
    putchar('\'');
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    putchar('\'');
}

static int parse_count(const char *what, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > SHARD_MAX)
        return cli_error("shard: %s '%s' is not a number of shards from 1 to %d", what, s,
                         SHARD_MAX);
    *out = (int)v;
    return 0;
}

static int shard_of_cmd(int argc, char **argv)
{
    int n;
    if (argc < 3)
        return cli_error("shard of: give N and at least one NAME\n%s", shard_usage);
    if (parse_count("N", argv[1], &n) != 0)
        return EXIT_USAGE;
    for (int i = 2; i < argc; i++)
        printf("%s %d\n", argv[i], shard_of(argv[i], n));
    return 0;
}

/* The export and import commands that move one tenant to shard `to`. */
static void print_move(const cli_ctx *ctx, const char *name, int to, const char *pattern,
                       const char *dir)
{
    char file[CONFIG_PATH_MAX + 80], conf[CONFIG_PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/%s.nscexport", dir, name);
    fputs("nscollect", stdout);
    if (ctx->config_path[0])
        fputs(" -c ", stdout), put_quoted(ctx->config_path);
    fputs(" -d ", stdout);
    put_quoted(ctx->db_path);
    printf(" tenant export %s --out ", name);
    put_quoted(file);
    putchar('\n');
    if (pattern)
        snprintf(conf, sizeof conf, pattern, to);   /* checked: one %d and no other % */
    else
        snprintf(conf, sizeof conf, "CONFIG-OF-SHARD-%d", to);
    fputs("nscollect -c ", stdout);
    put_quoted(conf);
    fputs(" tenant import ", stdout);
    put_quoted(file);
    putchar('\n');
}

/* A --to-config pattern may hold exactly one %d and no other conversion. */
static int pattern_ok(const char *p)
{
    int d = 0;
    for (const char *s = strchr(p, '%'); s; s = strchr(s + 2, '%')) {
        if (s[1] != 'd')
            return 0;
        d++;
    }
    return d == 1;
}

static int shard_plan(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option lo[] = {
        {"shard", required_argument, NULL, 's'}, {"to-config", required_argument, NULL, 't'},
        {"dir", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0}};
    const char *shard_arg = NULL, *pattern = NULL, *dir = ".";
    int c, n2;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == '?')
            return cli_error("shard plan: unknown option or missing value\n%s", shard_usage);
        *(c == 's' ? &shard_arg : c == 't' ? &pattern : &dir) = optarg;
    }
    if (optind + 1 != argc)
        return cli_error("shard plan: give the new number of shards N2\n%s", shard_usage);
    if (parse_count("N2", argv[optind], &n2) != 0)
        return EXIT_USAGE;
    if (pattern && !pattern_ok(pattern))
        return cli_error("shard plan: --to-config '%s' must hold %%d once (the receiving "
                         "shard's number) and no other %%", pattern);
    shard now;
    if (cli_shard(ctx, shard_arg, &now) != 0)
        return EXIT_USAGE;
    if (now.n == 0)
        now = (shard){0, 1};
    if (now.k >= n2)
        return cli_error("shard plan: this instance is shard %d, which does not exist among "
                         "%d shards; move all of its tenants away (plan them from the shards "
                         "that stay) before removing it", now.k, n2);
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    char err[256];
    sqlite3_stmt *st = db_prepare(db, "SELECT name FROM tenant WHERE moved_at IS NULL "
                                  "ORDER BY name", err, sizeof err);
    if (!st) {
        db_close(db);
        return cli_error("cannot read the tenants of '%s': %s", ctx->db_path, err);
    }
    long total = 0, moving = 0;
    printf("# shard %d/%d -> %d/%d: tenants that move (name, to shard)\n", now.k, now.n, now.k,
           n2);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int to = shard_of(name, n2);
        total++;
        if (to != now.k) {
            moving++;
            printf("move %s %d\n", name, to);
        }
    }
    sqlite3_reset(st);
    printf("# %ld of %ld tenants move\n", moving, total);
    if (moving > 0)
        printf("# commands (the passphrase from $NSCOLLECT_PASSPHRASE or --passphrase-file, "
               "never argv):\n");
    while (moving > 0 && sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int to = shard_of(name, n2);
        if (to != now.k)
            print_move(ctx, name, to, pattern, dir);
    }
    sqlite3_finalize(st);
    db_close(db);
    return 0;
}

int cmd_shard(cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(shard_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "plan") == 0)
        return shard_plan(ctx, argc - 1, argv + 1);
    if (strcmp(argv[1], "of") == 0)
        return shard_of_cmd(argc - 1, argv + 1);
    return cli_error("shard: unknown subcommand '%s' (plan, of)\n%s", argv[1], shard_usage);
}
