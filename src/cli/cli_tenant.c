/* cli_tenant.c - `nscollect tenant ...`: add, set, list, show, enable,
 * disable, remove. Tokens come from a file, an environment variable or
 * stdin, never from argv. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "base/buf.h"
#include "cli/cli.h"
#include "daemon/db.h"
#include "daemon/netskope.h"
#include "daemon/outbox.h"
#include "daemon/secret.h"
#include "sink/sink.h"
#include "daemon/stream.h"
#include "daemon/tenant.h"

#define TOKEN_MAX 8192

/* Options of `tenant add` and `tenant set`, as given (NULL = not given). */
typedef struct tenant_opts {
    const char *url, *token_file, *token_env, *sink, *sink_credentials, *window, *state;
    const char *streams, *api;
    const char *interval, *lookback, *overlap, *page_size, *max_records, *rate;
    int disabled, json, force, any_shard;
    unsigned given;             /* OPT_BIT of each option given */
} tenant_opts;

enum { OPT_URL = 256, OPT_TOKEN_FILE, OPT_TOKEN_ENV, OPT_SINK, OPT_SINK_CRED, OPT_WINDOW,
       OPT_INTERVAL, OPT_LOOKBACK, OPT_OVERLAP, OPT_PAGE_SIZE, OPT_MAX_RECORDS, OPT_RATE,
       OPT_DISABLED, OPT_JSON, OPT_FORCE, OPT_HELP, OPT_STATE, OPT_STREAMS, OPT_API,
       OPT_ANY_SHARD };
#define OPT_BIT(opt) (1u << ((opt) - OPT_URL))
/* The options of add and set: every setting of a tenant. */
#define SETTINGS (OPT_BIT(OPT_STATE) - 1 - OPT_BIT(OPT_JSON) - OPT_BIT(OPT_FORCE) - \
                  OPT_BIT(OPT_HELP))

static const struct option long_options[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"token-env", required_argument, NULL, OPT_TOKEN_ENV},
    {"sink", required_argument, NULL, OPT_SINK},
    {"sink-credentials", required_argument, NULL, OPT_SINK_CRED},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"lookback", required_argument, NULL, OPT_LOOKBACK},
    {"overlap", required_argument, NULL, OPT_OVERLAP},
    {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
    {"max-records", required_argument, NULL, OPT_MAX_RECORDS},
    {"requests-per-second", required_argument, NULL, OPT_RATE},
    {"disabled", no_argument, NULL, OPT_DISABLED},
    {"json", no_argument, NULL, OPT_JSON},
    {"force", no_argument, NULL, OPT_FORCE},
    {"help", no_argument, NULL, OPT_HELP},
    {"state", required_argument, NULL, OPT_STATE},
    {"streams", required_argument, NULL, OPT_STREAMS},
    {"api", required_argument, NULL, OPT_API},
    {"any-shard", no_argument, NULL, OPT_ANY_SHARD},
    {NULL, 0, NULL, 0},
};

static const char tenant_usage[] =
    "usage: nscollect tenant add NAME --url URL [--token-file F | --token-env VAR]\n"
    "                 [--sink URL] [--sink-credentials FILE] [--interval S] [--lookback S]\n"
    "                 [--overlap S] [--page-size N] [--max-records N] [--window insertion|event]\n"
    "                 [--streams alert,page,...] [--requests-per-second R]\n"
    "                 [--api data|dataexport] [--disabled] [--any-shard]\n"
    "                                         (the token is read from stdin if no file/env)\n"
    "       nscollect tenant set NAME [any option of add] [--force]\n"
    "                 (--streams: alert (default), page, application, network, audit,\n"
    "                 infrastructure, incident, endpoint; --force gives up the undelivered\n"
    "                 batches of a stream that --streams removes)\n"
    "       nscollect tenant import-env NAME [--state FILE] [--any-shard]   (from Google's\n"
    "                 Cloud Run recipe's\n"
    "                 NETSKOPE_TENANT, NETSKOPE_API_TOKEN, GCS_BUCKET, GCS_PREFIX, MAX_RECORDS,\n"
    "                 PAGE_SIZE, LOOKBACK_HOURS; --state: its state.json as the starting cursor)\n"
    "       nscollect tenant list [--json]\n"
    "       nscollect tenant show NAME [--json]\n"
    "       nscollect tenant enable NAME | disable NAME\n"
    "       nscollect tenant remove NAME [--force]\n"
    "       nscollect tenant export NAME [--out FILE] [--passphrase-file F | --passphrase-env VAR]\n"
    "       nscollect tenant import FILE [--passphrase-file F | --passphrase-env VAR]\n"
    "                 (move a tenant to another database exactly once; the file is encrypted\n"
    "                 under the passphrase, default $NSCOLLECT_PASSPHRASE)\n";

static int tenant_usage_error(const char *fmt, const char *arg)
{
    fputs("nscollect: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    fputs(tenant_usage, stderr);
    return EXIT_USAGE;
}

/* The usage error for the option getopt_long just refused. Only its name
 * is shown, never a value: `--token=SECRET` must not echo the token. */
static int bad_option(char **argv)
{
    char opt[64];
    if (optopt > 0 && optopt < 256) {        /* a short option, perhaps "-xVALUE" */
        snprintf(opt, sizeof opt, "-%c", optopt);
    } else {                                 /* a long one; getopt moved past it */
        const char *a = argv[optind - 1];
        snprintf(opt, sizeof opt, "%.*s", (int)strcspn(a, "="), a);
    }
    return tenant_usage_error("unknown option or missing value: '%s'", opt);
}

/* A second positional argument is not shown: it may be a pasted token. */
static int extra_argument(int i)
{
    char word[16];
    snprintf(word, sizeof word, "%d", i);
    return tenant_usage_error("unexpected extra argument (word %s after the subcommand; not "
                              "shown, in case it is a secret): give one NAME, and the token "
                              "with --token-file", word);
}

/* Parse argv (argv[0] = subcommand) into o; the positional NAME into *name. */
static int parse_opts(int argc, char **argv, tenant_opts *o, const char **name)
{
    const char **slot[] = {
        [OPT_URL - OPT_URL] = &o->url, [OPT_TOKEN_FILE - OPT_URL] = &o->token_file,
        [OPT_TOKEN_ENV - OPT_URL] = &o->token_env, [OPT_SINK - OPT_URL] = &o->sink,
        [OPT_SINK_CRED - OPT_URL] = &o->sink_credentials, [OPT_WINDOW - OPT_URL] = &o->window,
        [OPT_INTERVAL - OPT_URL] = &o->interval, [OPT_LOOKBACK - OPT_URL] = &o->lookback,
        [OPT_OVERLAP - OPT_URL] = &o->overlap, [OPT_PAGE_SIZE - OPT_URL] = &o->page_size,
        [OPT_MAX_RECORDS - OPT_URL] = &o->max_records, [OPT_RATE - OPT_URL] = &o->rate,
    };
    memset(o, 0, sizeof *o);
    *name = NULL;
    optind = 0;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "+", long_options, NULL);
        if (c >= OPT_URL && c <= OPT_ANY_SHARD)
            o->given |= OPT_BIT(c);
        if (c == -1) {                       /* a positional argument, or the end */
            if (optind >= argc)
                return 0;
            if (*name)
                return extra_argument(optind);
            *name = argv[optind++];
        } else if (c >= OPT_URL && c <= OPT_RATE) {          /* options with a value */
            *slot[c - OPT_URL] = optarg;
        } else if (c == OPT_DISABLED) {
            o->disabled = 1;
        } else if (c == OPT_JSON) {
            o->json = 1;
        } else if (c == OPT_FORCE) {
            o->force = 1;
        } else if (c == OPT_ANY_SHARD) {
            o->any_shard = 1;
        } else if (c == OPT_STATE) {
            o->state = optarg;
        } else if (c == OPT_STREAMS) {
            o->streams = optarg;
        } else if (c == OPT_API) {
            o->api = optarg;
        } else if (c == OPT_HELP) {
            fputs(tenant_usage, stdout);
            return -1;
        } else {
            return bad_option(argv);
        }
    }
}

/* A whole number within [lo, hi] for option opt. */
static int parse_number(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_error("--%s '%s': expected a whole number from %lld to %lld", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* --sink-credentials must be a readable regular file: a directory passes
 * access(R_OK) but would only fail later, in the daemon. */
static int sink_credentials_check(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || access(path, R_OK) != 0)
        return cli_error("cannot read --sink-credentials '%s': %s", path, strerror(errno)), -1;
    if (!S_ISREG(sb.st_mode))
        return cli_error("--sink-credentials '%s' is not a regular file: give the service "
                         "account's JSON key file", path), -1;
    return 0;
}

/* Settings given on the command line, validated, over t. */
/* --requests-per-second R: this tenant's share of Netskope's per-token
 * limit (4/s), which the customer's other integrations also spend. */
static int parse_rate(const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double r = strtod(text, &end);
    if (errno || end == text || *end || !(r >= 0.01 && r <= 1000)) {
        cli_error("--requests-per-second '%s': expected a number from 0.01 to 1000 "
                  "(requests per second for this tenant; e.g. 1 to leave Netskope's 4/s "
                  "mostly to the customer's other integrations)", text);
        return -1;
    }
    if (r > 4)
        fprintf(stderr, "nscollect: warning: --requests-per-second %g is above 4, the rate "
                "Netskope documents per tenant token; expect 429 replies\n", r);
    *out = r;
    return 0;
}

/* Every stream of t must have somewhere to go in its sink (a secops://
 * sink needs a log type per stream): checked when either changes. */
static int sink_streams_check(const tenant *t)
{
    char err[512];
    unsigned mask = t->streams ? t->streams : STREAM_MASK(STREAM_ALERT);
    if (!t->sink[0])
        return 0;
    for (int type = 0; type < STREAM_TYPES; type++)
        if ((mask & STREAM_MASK(type)) &&
            sink_stream_check(t->sink, stream_name((stream_type)type), err, sizeof err) < 0)
            return cli_error("%s", err), -1;
    return 0;
}

static int apply_opts(tenant *t, const tenant_opts *o)
{
    char err[512];
    long long v;
    if (o->url) {
        if (strlen(o->url) >= sizeof t->url)         /* refuse, never store it cut */
            return cli_error("--url is %zu bytes long; a tenant URL is at most %zu bytes: "
                             "give only https://HOST[:PORT]", strlen(o->url),
                             sizeof t->url - 1), -1;
        if (ns_url_check(o->url, err, sizeof err) < 0)
            return cli_error("%s", err), -1;
        snprintf(t->url, sizeof t->url, "%s", o->url);
        size_t n = strlen(t->url);
        if (n > 0 && t->url[n - 1] == '/')
            t->url[n - 1] = '\0';
    }
    if (o->sink) {
        if (o->sink[0] && sink_url_check(o->sink, err, sizeof err) < 0)
            return cli_error("%s", err), -1;
        snprintf(t->sink, sizeof t->sink, "%s", o->sink);
    }
    if (o->sink_credentials) {
        if (o->sink_credentials[0] && sink_credentials_check(o->sink_credentials) < 0)
            return -1;
        /* absolute, so the daemon finds it whatever its working directory */
        char abs[PATH_MAX];
        const char *path = o->sink_credentials[0] && realpath(o->sink_credentials, abs)
                               ? abs : o->sink_credentials;
        if (strlen(path) >= sizeof t->sink_credentials)
            return cli_error("--sink-credentials '%s': path too long", path), -1;
        memcpy(t->sink_credentials, path, strlen(path) + 1);
    }
    if (o->window) {
        if (strcmp(o->window, "insertion") && strcmp(o->window, "event"))
            return cli_error("--window '%s': expected 'insertion' or 'event'", o->window), -1;
        t->window_event = strcmp(o->window, "event") == 0;
    }
    if (o->interval && parse_number("interval", o->interval, 1, 604800, &v) == 0)
        t->interval_s = (int)v;
    else if (o->interval)
        return -1;
    if (o->lookback && parse_number("lookback", o->lookback, 60, 31 * 86400, &v) == 0)
        t->lookback_s = (int)v;
    else if (o->lookback)
        return -1;
    if (o->overlap && parse_number("overlap", o->overlap, 0, 86400, &v) == 0)
        t->overlap_s = (int)v;
    else if (o->overlap)
        return -1;
    if (o->page_size && parse_number("page-size", o->page_size, 1, 10000, &v) == 0)
        t->page_size = (int)v;
    else if (o->page_size)
        return -1;
    if (o->page_size && v > 5000)
        fprintf(stderr, "nscollect: warning: --page-size %lld is above 5000, the most "
                "Netskope's API specification allows for limit; a server may refuse it\n",
                (long long)v);
    if (o->max_records && parse_number("max-records", o->max_records, 0, 1000000000, &v) == 0)
        t->max_records = v;
    else if (o->max_records)
        return -1;
    if (o->rate && parse_rate(o->rate, &t->requests_per_s) < 0)
        return -1;
    if (o->disabled)
        t->enabled = 0;
    if (o->api && strcmp(o->api, "data") && strcmp(o->api, "dataexport"))
        return cli_error("--api '%s': expected 'data' (the time-window endpoints, the default) "
                         "or 'dataexport' (Netskope's iterator)", o->api), -1;
    if (o->api)
        t->api_export = strcmp(o->api, "dataexport") == 0;
    if (o->streams && stream_list_parse(o->streams, &t->streams, err, sizeof err) < 0)
        return cli_error("%s", err), -1;
    t->streams_force = o->force;
    return sink_streams_check(t);
}

/* The token must be printable ASCII without spaces. */
static int token_check(const buf *b, const char *from)
{
    if (b->len == 0)
        return cli_error("the token from %s is empty", from), -1;
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if (c <= 0x20 || c >= 0x7f)
            return cli_error("the token from %s contains a space, control or non-ASCII "
                             "character: is it the right file?", from), -1;
    }
    return 0;
}

static void trim_newline(buf *b)
{
    while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r' ||
                      b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\t'))
        b->data[--b->len] = '\0';
}

/* Read fd to the end into b (at most TOKEN_MAX bytes). 0; -1 on a read
 * error (errno set); READ_TOO_BIG past b's cap (or out of memory). chunk
 * held token bytes, so it is wiped on every path. */
#define READ_TOO_BIG (-2)
static int read_all(int fd, buf *b)
{
    char chunk[1024];
    int rc;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n == 0 ? 0 : -1;
            break;
        }
        if (buf_append(b, chunk, (size_t)n) < 0) {
            rc = READ_TOO_BIG;
            break;
        }
    }
    secret_wipe(chunk, sizeof chunk);
    return rc;
}

static int token_from_file(const char *path, buf *b)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error("cannot read token file '%s': %s", path, strerror(errno)), -1;
    int rc = -1, got;
    if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode))
        cli_error("token file '%s' is a directory", path);
    else if ((got = read_all(fd, b)) == READ_TOO_BIG)
        cli_error("token file '%s' is larger than %d KiB: a Netskope API token is one short "
                  "line; is it the right file?", path, TOKEN_MAX / 1024);
    else if (got < 0)
        cli_error("cannot read token file '%s': %s", path, strerror(errno));
    else
        rc = 0;
    close(fd);
    return rc;
}

static int token_from_stdin(buf *b)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fputs("Netskope API token: ", stderr);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    int rc = 0;
    if (tty) {
        char line[TOKEN_MAX];
        if (!fgets(line, sizeof line, stdin) || buf_append_str(b, line) < 0)
            rc = -1;
        secret_wipe(line, sizeof line);
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
        fputc('\n', stderr);
    } else {
        rc = read_all(STDIN_FILENO, b);
    }
    if (rc == READ_TOO_BIG)
        cli_error("the token on stdin is larger than %d KiB: a Netskope API token is one "
                  "short line; was the right file piped in?", TOKEN_MAX / 1024);
    else if (rc < 0)
        cli_error("cannot read the token from stdin");
    return rc < 0 ? -1 : rc;
}

/* The token from --token-file, --token-env or (if allowed) stdin into b.
 * Returns 1 when a token was read, 0 when none was asked for, -1 error. */
static int read_token(const tenant_opts *o, int allow_stdin, buf *b)
{
    char from[CONFIG_PATH_MAX + 32];
    int rc;
    if (o->token_file && o->token_env)
        return cli_error("give either --token-file or --token-env, not both"), -1;
    if (o->token_file) {
        snprintf(from, sizeof from, "file '%s'", o->token_file);
        rc = token_from_file(o->token_file, b);
    } else if (o->token_env) {
        const char *v = getenv(o->token_env);
        snprintf(from, sizeof from, "environment variable %s", o->token_env);
        if (!v)
            return cli_error("environment variable %s is not set", o->token_env), -1;
        rc = buf_append_str(b, v);
    } else if (allow_stdin) {
        snprintf(from, sizeof from, "stdin");
        rc = token_from_stdin(b);
    } else {
        return 0;
    }
    if (rc < 0)
        return -1;
    trim_newline(b);
    return token_check(b, from) < 0 ? -1 : 1;
}

/* A buffer for a token, all of it allocated now: growing it would leave
 * copies of the token in freed memory, where nothing wipes them. */
static void token_init(buf *token)
{
    buf_init(token, TOKEN_MAX);
    (void)buf_reserve(token, TOKEN_MAX);  /* else it grows, and only loses that hygiene */
}

/* Wipe and free a token buffer. */
static void token_release(buf *token)
{
    if (token->data)
        secret_wipe(token->data, token->cap);
    buf_release(token);
}

/* A tenant that `tenant export` moved away is only shown or removed here. */
static int moved_refused(sqlite3 *db, const tenant *t)
{
    if (!db_int(db, "SELECT moved_at IS NOT NULL FROM tenant WHERE id = ?1", t->id, 0))
        return 0;
    return cli_error("tenant '%s' was moved to another database (tenant export): here it can "
                     "only be shown or removed", t->name);
}

static int tenant_add(cli_ctx *ctx, const tenant_opts *o, const char *name)
{
    char err[1024];
    tenant t;
    secret_key key = {{0}};
    buf token;
    int rc = EXIT_USAGE;
    if (!name)
        return tenant_usage_error("%s", "tenant add: NAME is missing");
    if (tenant_name_check(name, err, sizeof err) < 0)
        return cli_error("%s", err);
    if (!o->url)
        return tenant_usage_error("tenant add %s: --url is required", name);
    if (cli_check_shard(ctx, "tenant add", name, o->any_shard) != 0)
        return EXIT_USAGE;
    tenant_init(&t, &ctx->cfg);
    snprintf(t.name, sizeof t.name, "%s", name);
    if (apply_opts(&t, o) < 0)
        return EXIT_USAGE;
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    token_init(&token);
    if (cli_load_key(ctx, db, &key) != 0 || read_token(o, 1, &token) < 0)
        goto out;
    if (tenant_insert(db, &key, &t, token.data, token.len, err, sizeof err) < 0) {
        cli_error("%s", err);
        goto out;
    }
    printf("tenant '%s' added (%s)\n", t.name, t.enabled ? "enabled" : "disabled");
    rc = 0;
out:
    token_release(&token);
    secret_wipe(&key, sizeof key);
    db_close(db);
    return rc;
}

static int tenant_set(cli_ctx *ctx, const tenant_opts *o, const char *name)
{
    char err[1024];
    tenant t;
    secret_key key = {{0}};
    buf token;
    int rc = EXIT_USAGE, have_token;
    if (!name)
        return tenant_usage_error("%s", "tenant set: NAME is missing");
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    token_init(&token);
    if (tenant_find(db, name, &t, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto out;
    }
    if (moved_refused(db, &t) != 0)
        goto out;
    if (apply_opts(&t, o) < 0 || (have_token = read_token(o, 0, &token)) < 0)
        goto out;
    if (have_token && cli_load_key(ctx, db, &key) != 0)
        goto out;
    if (tenant_update(db, &key, &t, have_token ? token.data : NULL, token.len,
                      err, sizeof err) < 0) {
        cli_error("%s", err);
        goto out;
    }
    printf("tenant '%s' updated%s\n", t.name, have_token ? " (new token)" : "");
    rc = 0;
out:
    token_release(&token);
    secret_wipe(&key, sizeof key);
    db_close(db);
    return rc;
}

static int tenant_enable(cli_ctx *ctx, const char *name, int enable)
{
    char err[1024];
    tenant t;
    if (!name)
        return tenant_usage_error("tenant %s: NAME is missing", enable ? "enable" : "disable");
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    int rc = EXIT_USAGE;
    if (tenant_find(db, name, &t, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto out;
    }
    if (moved_refused(db, &t) != 0)
        goto out;
    t.enabled = enable;
    if (tenant_update(db, NULL, &t, NULL, 0, err, sizeof err) < 0) {
        cli_error("%s", err);
        goto out;
    }
    printf("tenant '%s' %s\n", name, enable ? "enabled" : "disabled");
    rc = 0;
out:
    db_close(db);
    return rc;
}

static int tenant_remove_cmd(cli_ctx *ctx, const tenant_opts *o, const char *name)
{
    char err[1024];
    tenant t;
    if (!name)
        return tenant_usage_error("%s", "tenant remove: NAME is missing");
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    int rc = EXIT_USAGE;
    if (tenant_find(db, name, &t, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto out;
    }
    int64_t pending = db_int(db, "SELECT count(*) FROM outbox WHERE tenant_id = ?1", t.id, 0);
    if (pending > 0 && !o->force) {
        cli_error("tenant '%s' has %lld undelivered batches: fix its sink and let `nscollect run` "
                  "deliver them, or remove it anyway with --force (they are then lost)",
                  name, (long long)pending);
        goto out;
    }
    outbox *ob = outbox_open(db, err, sizeof err);
    if (!ob || outbox_remove_tenant(ob, t.id, err, sizeof err) < 0) {
        cli_error("cannot remove tenant '%s': %s", name, err);
        outbox_free(ob);
        goto out;
    }
    outbox_free(ob);
    printf("tenant '%s' removed%s\n", name, pending ? " with its undelivered batches" : "");
    rc = 0;
out:
    db_close(db);
    return rc;
}

/* What each subcommand takes; an option or NAME it does not take is an
 * error, not silently ignored (`tenant enable acme --url X` changed nothing
 * and said "enabled"). */
static const struct subcommand {
    const char *name;
    unsigned options;
    int takes_name;
} subcommands[] = {
    {"add", SETTINGS | OPT_BIT(OPT_STREAMS) | OPT_BIT(OPT_API) | OPT_BIT(OPT_ANY_SHARD), 1},
    {"set", SETTINGS | OPT_BIT(OPT_STREAMS) | OPT_BIT(OPT_API) | OPT_BIT(OPT_FORCE), 1},
    {"import-env", OPT_BIT(OPT_STATE) | OPT_BIT(OPT_ANY_SHARD), 1},
    {"list", OPT_BIT(OPT_JSON), 0}, {"show", OPT_BIT(OPT_JSON), 1},
    {"enable", 0, 1},              {"disable", 0, 1},
    {"remove", OPT_BIT(OPT_FORCE), 1},
};

static int check_subcommand(const char *sub, const tenant_opts *o, const char *name)
{
    const struct subcommand *sc = NULL;
    for (size_t i = 0; i < sizeof subcommands / sizeof *subcommands; i++)
        if (strcmp(sub, subcommands[i].name) == 0)
            sc = &subcommands[i];
    if (!sc)
        return tenant_usage_error("tenant: unknown subcommand '%s'", sub);
    unsigned extra = o->given & ~sc->options;
    for (const struct option *lo = long_options; lo->name; lo++)
        if (lo->val >= OPT_URL && (extra & OPT_BIT(lo->val))) {
            fprintf(stderr, "nscollect: tenant %s does not take --%s (see nscollect tenant "
                    "--help)\n", sub, lo->name);
            return EXIT_USAGE;
        }
    if (name && !sc->takes_name)
        return tenant_usage_error("tenant %s takes no NAME (see nscollect tenant --help)", sub);
    return 0;
}

int cmd_tenant(cli_ctx *ctx, int argc, char **argv)
{
    tenant_opts o;
    const char *name;
    if (argc < 2)
        return tenant_usage_error("%s", "tenant: a subcommand is missing");
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        fputs(tenant_usage, stdout);
        return 0;
    }
    if (strcmp(sub, "export") == 0 || strcmp(sub, "import") == 0)
        return tenant_move_cmd(ctx, argc - 1, argv + 1);
    if (parse_opts(argc - 1, argv + 1, &o, &name) != 0)
        return strcmp(argv[argc - 1], "--help") == 0 ? 0 : EXIT_USAGE;
    if (check_subcommand(sub, &o, name) != 0)
        return EXIT_USAGE;
    if (strcmp(sub, "add") == 0)
        return tenant_add(ctx, &o, name);
    if (strcmp(sub, "set") == 0)
        return tenant_set(ctx, &o, name);
    if (strcmp(sub, "enable") == 0 || strcmp(sub, "disable") == 0)
        return tenant_enable(ctx, name, sub[0] == 'e');
    if (strcmp(sub, "import-env") == 0)
        return name && cli_check_shard(ctx, "tenant import-env", name, o.any_shard) != 0
                   ? EXIT_USAGE : tenant_import_env(ctx, name, o.state);
    if (strcmp(sub, "remove") == 0)
        return tenant_remove_cmd(ctx, &o, name);
    if (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0) {
        sqlite3 *db = cli_open_db(ctx);
        if (!db)
            return EXIT_USAGE;
        int rc = sub[0] == 'l' ? tenant_print_list(db, ctx, o.json)
                               : tenant_print_show(db, ctx, name, o.json);
        db_close(db);
        return rc;
    }
    return tenant_usage_error("tenant: unknown subcommand '%s'", sub);
}
