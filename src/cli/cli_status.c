/* cli_status.c - read-only views for operators: `status`, `tenant list`,
 * `tenant show`. JSON output is produced by SQLite's JSON functions, so
 * every string is escaped correctly without hand-written code. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "daemon/db.h"
#include "daemon/stream.h"
#include "daemon/tenant.h"

/* Print the single text value a query returns (JSON documents). */
static int print_scalar(sqlite3 *db, const char *sql, const char *param)
{
    char err[512];
    sqlite3_stmt *st = db_prepare(db, sql, err, sizeof err);
    if (!st)
        return cli_error("cannot query the database: %s", err);
    if (param)
        sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        printf("%s\n", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : cli_error("cannot query the database: %s", sqlite3_errmsg(db));
}

/* The text the query (?1 = id) returns, "" when none. */
static void query_text(sqlite3 *db, const char *sql, int64_t id, char *out, size_t n)
{
    char err[256];
    out[0] = '\0';
    sqlite3_stmt *st = db_prepare(db, sql, err, sizeof err);
    if (!st)
        return;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* "3m", "2h05m", "4d" - a lag or age an operator reads at a glance. */
static void format_age(sqlite3_stmt *st, int col, char *out, size_t n)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        snprintf(out, n, "-");
        return;
    }
    long long s = sqlite3_column_int64(st, col);
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(out, n, "%llds", s);
    else if (s < 7200)
        snprintf(out, n, "%lldm", s / 60);
    else if (s < 172800)
        snprintf(out, n, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else
        snprintf(out, n, "%lldd", s / 86400);
}

static const char status_sql[] =
    "SELECT name, state, lag_s, alerts_1h, alerts_24h, pending_batches, pending_bytes, "
    "next_run_at - unixepoch(), coalesce(last_error, ''), newest_alert_age_s, conflicts, "
    "ambiguous_retries "
    "FROM tenant_status "
    "ORDER BY CASE state WHEN 'failing' THEN 0 WHEN 'lagging' THEN 1 WHEN 'ok' THEN 2 ELSE 3 END, name";

static const char status_json_sql[] =
    "SELECT json_group_array(json_object('name', name, 'state', state, 'cursor', cursor, "
    "'lag_s', lag_s, 'newest_alert_age_s', newest_alert_age_s, "
    "'alerts_1h', alerts_1h, 'alerts_24h', alerts_24h, "
    "'pending_batches', pending_batches, 'pending_bytes', pending_bytes, "
    "'last_delivery_at', last_delivery_at, 'last_ok_at', last_ok_at, "
    "'next_run_at', next_run_at, 'fail_count', fail_count, 'last_error', last_error, "
    "'conflicts', conflicts, 'ambiguous_retries', ambiguous_retries, "
    "'streams', json((SELECT json_group_array(json_object('stream', ss.stream, 'state', ss.state, "
    "'cursor', ss.cursor, 'lag_s', ss.lag_s, 'records_1h', ss.records_1h, "
    "'records_24h', ss.records_24h, 'pending_batches', ss.pending_batches, "
    "'pending_bytes', ss.pending_bytes, 'next_run_at', ss.next_run_at, "
    "'fail_count', ss.fail_count, 'last_error', ss.last_error, 'conflicts', ss.conflicts, "
    "'ambiguous_retries', ss.ambiguous_retries, "
    "'iterator', (SELECT json_object('index', i.index_name, 'start_epoch', i.start_epoch, "
    "'state', i.state, 'pages', i.pages, 'resends', i.resends) FROM iterator i "
    "WHERE i.stream_id = ss.stream_id))) "
    "FROM (SELECT * FROM stream_status x WHERE x.tenant = ts.name ORDER BY stream_id) ss)))) "
    "FROM (SELECT * FROM tenant_status ORDER BY CASE state WHEN 'failing' THEN 0 "
    "WHEN 'lagging' THEN 1 WHEN 'ok' THEN 2 ELSE 3 END, name) ts";

static void print_stream_lines(sqlite3 *db, const char *tenant_name, const char *indent);

/* Records dropped because their "_id" was stored before with other bytes,
 * and SecOps requests sent again after no answer (maybe delivered twice):
 * said only when there are some, so that the usual output stays as it was. */
static void print_counts(sqlite3_stmt *st, int col, const char *indent)
{
    int64_t conflicts = sqlite3_column_int64(st, col);
    int64_t ambiguous = sqlite3_column_int64(st, col + 1);
    if (conflicts > 0)
        printf("%sconflicts %lld: records whose _id was stored before with other bytes "
               "(dropped, the first kept; README: Conflicts)\n", indent, (long long)conflicts);
    if (ambiguous > 0)
        printf("%sambiguous_retries %lld: SecOps requests sent again after no answer; their "
               "records may be in SecOps twice (README: Exactly once, honestly)\n", indent,
               (long long)ambiguous);
}

/* Whether the tenant has a stream other than alert alone (then `status`
 * shows a line per stream under its own). */
static int has_streams(sqlite3 *db, const char *tenant_name)
{
    char err[256];
    int rc = 0;
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*) > 1 OR max(stream) != 'alert' "
                                  "FROM stream_status WHERE tenant = ?1", err, sizeof err);
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, tenant_name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc;
}

static int print_status_table(sqlite3 *db)
{
    char err[512], lag[32], next[32], newest[32];
    sqlite3_stmt *st = db_prepare(db, status_sql, err, sizeof err);
    if (!st)
        return cli_error("cannot query the database: %s", err);
    printf("%-24s %-9s %7s %7s %9s %10s %7s %10s %7s  %s\n", "TENANT", "STATE", "LAG", "NEWEST",
           "ALERTS/1H", "ALERTS/24H", "PENDING", "BYTES", "NEXT", "LAST ERROR");
    while (sqlite3_step(st) == SQLITE_ROW) {
        format_age(st, 2, lag, sizeof lag);
        format_age(st, 7, next, sizeof next);
        format_age(st, 9, newest, sizeof newest);
        printf("%-24s %-9s %7s %7s %9lld %10lld %7lld %10lld %7s  %.70s\n",
               sqlite3_column_text(st, 0), sqlite3_column_text(st, 1), lag, newest,
               sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
               sqlite3_column_int64(st, 5), sqlite3_column_int64(st, 6), next,
               sqlite3_column_text(st, 8));
        const char *name = (const char *)sqlite3_column_text(st, 0);
        print_counts(st, 10, "  ");
        if (has_streams(db, name))
            print_stream_lines(db, name, "  ");
    }
    sqlite3_finalize(st);
    return 0;
}

/* `--watch [S]`: S seconds between frames, a number from 0.1 to 86400;
 * 0 and EXIT_USAGE after printing what is wrong. */
static int parse_watch(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0.1 || v > 86400)
        return cli_error("status: --watch '%s': expected seconds between frames, a number from "
                         "0.1 to 86400 (usage: nscollect status [--json] [--watch [S]])", s);
    *out = v;
    return 0;
}

/* One frame: on a terminal the screen is cleared first; every frame of the
 * table starts with a heading line (a script reading a pipe can split the
 * frames there); JSON frames are one document per line. */
static int print_frame(sqlite3 *db, int json, double every, int tty)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    if (tty)
        fputs("\033[H\033[2J", stdout);
    if (!json)
        printf("nscollect status every %gs, %s UTC (Ctrl-C to stop)\n\n", every, when);
    int rc = json ? print_scalar(db, status_json_sql, NULL) : print_status_table(db);
    fflush(stdout);
    return rc;
}

/* Redraw until SIGINT or SIGTERM (exit 0): the signals are blocked and
 * waited for with a timeout, so there is no handler and no race between a
 * frame and a signal. A frame that cannot be read is said and retried. */
static int watch_status(sqlite3 *db, int json, double every)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int tty = isatty(STDOUT_FILENO);
    struct timespec ts = {(time_t)every, (long)((every - (double)(time_t)every) * 1e9)};
    for (;;) {
        print_frame(db, json, every, tty);
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            return 0;
        if (sig < 0 && errno != EAGAIN && errno != EINTR)
            return cli_error("status --watch: cannot wait for signals: %s", strerror(errno));
    }
}

int cmd_status(cli_ctx *ctx, int argc, char **argv)
{
    int json = 0, watch = 0;
    double every = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--watch") == 0) {
            watch = 1;
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0 &&
                parse_watch(argv[++i], &every) != 0)
                return EXIT_USAGE;
        } else if (strncmp(argv[i], "--watch=", 8) == 0) {
            watch = 1;
            if (parse_watch(argv[i] + 8, &every) != 0)
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--help") == 0) {
            puts("usage: nscollect status [--json] [--watch [S]]\n\nOne row per tenant, "
                 "problems first. Exit status 1 when an enabled tenant is failing.\n"
                 "--watch redraws it every S seconds (default 2) until Ctrl-C or SIGTERM "
                 "(exit status 0).");
            return 0;
        } else
            return cli_error("status: unknown argument '%s' (usage: nscollect status [--json] "
                             "[--watch [S]])", argv[i]);
    }
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    int rc;
    if (watch)
        rc = watch_status(db, json, every);
    else {
        rc = json ? print_scalar(db, status_json_sql, NULL) : print_status_table(db);
        if (rc == 0 && db_int(db, "SELECT count(*) FROM tenant_status WHERE state = 'failing'", 0, 0))
            rc = EXIT_FAILED;
    }
    db_close(db);
    return rc;
}

static const char list_json_sql[] =
    "SELECT json_group_array(json_object('name', name, 'enabled', json(CASE enabled WHEN 1 "
    "THEN 'true' ELSE 'false' END), 'url', url, 'sink', sink, 'interval_s', interval_s, "
    "'window', window)) FROM (SELECT * FROM tenant ORDER BY name)";

int tenant_print_list(sqlite3 *db, const cli_ctx *ctx, int json)
{
    char err[512], sink_url[CONFIG_PATH_MAX];
    if (json)
        return print_scalar(db, list_json_sql, NULL);
    sqlite3_stmt *st = db_prepare(db, "SELECT id FROM tenant ORDER BY name", err, sizeof err);
    if (!st)
        return cli_error("cannot query the database: %s", err);
    printf("%-24s %-8s %-40s %s\n", "TENANT", "ENABLED", "URL", "SINK");
    while (sqlite3_step(st) == SQLITE_ROW) {
        tenant t;
        if (tenant_get(db, sqlite3_column_int64(st, 0), &t, err, sizeof err) != 0)
            continue;
        tenant_sink_url(&t, &ctx->cfg, sink_url, sizeof sink_url);
        printf("%-24s %-8s %-40s %s\n", t.name, t.enabled ? "yes" : "no", t.url, sink_url);
    }
    sqlite3_finalize(st);
    return 0;
}

static const char show_json_sql[] =
    "SELECT json_object('name', t.name, 'enabled', json(CASE t.enabled WHEN 1 THEN 'true' "
    "ELSE 'false' END), 'url', t.url, 'token', t.token_fp, 'sink', t.sink, "
    "'sink_credentials', t.sink_credentials, 'interval_s', t.interval_s, "
    "'lookback_s', t.lookback_s, 'overlap_s', t.overlap_s, 'page_size', t.page_size, "
    "'max_records', t.max_records, 'requests_per_second', t.requests_per_second, "
    "'window', t.window, 'api', t.api, 'cursor', s.cursor, 'state', s.state, "
    "'lag_s', s.lag_s, 'pending_batches', s.pending_batches, 'last_error', s.last_error, "
    "'conflicts', s.conflicts, 'ambiguous_retries', s.ambiguous_retries, "
    "'streams', json((SELECT json_group_array(json_object('stream', ss.stream, 'state', ss.state, "
    "'cursor', ss.cursor, 'lag_s', ss.lag_s, 'records_1h', ss.records_1h, "
    "'records_24h', ss.records_24h, 'pending_batches', ss.pending_batches, "
    "'pending_bytes', ss.pending_bytes, 'next_run_at', ss.next_run_at, "
    "'fail_count', ss.fail_count, 'last_error', ss.last_error, 'conflicts', ss.conflicts, "
    "'ambiguous_retries', ss.ambiguous_retries, "
    "'iterator', (SELECT json_object('index', i.index_name, 'start_epoch', i.start_epoch, "
    "'state', i.state, 'pages', i.pages, 'resends', i.resends) FROM iterator i "
    "WHERE i.stream_id = ss.stream_id))) "
    "FROM (SELECT * FROM stream_status WHERE tenant_id = t.id ORDER BY stream_id) ss))) "
    "FROM tenant t JOIN tenant_status s ON s.name = t.name WHERE t.name = ?1";

/* One line per stream of the tenant: `tenant show` and `status`. */
static void print_stream_lines(sqlite3 *db, const char *tenant_name, const char *indent)
{
    char err[512], lag[32];
    sqlite3_stmt *st = db_prepare(db, "SELECT stream, state, lag_s, records_1h, records_24h, "
                                  "pending_batches, coalesce(last_error, '-'), cursor, "
                                  "conflicts, ambiguous_retries FROM stream_status WHERE tenant = ?1 "
                                  "ORDER BY stream_id",
                                  err, sizeof err);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, tenant_name, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        format_age(st, 2, lag, sizeof lag);
        printf("%sstream %-14s %-8s cursor %-10s lag %-6s 1h %lld 24h %lld pending %lld  "
               "last error: %.70s\n", indent, sqlite3_column_text(st, 0),
               sqlite3_column_text(st, 1),
               sqlite3_column_type(st, 7) == SQLITE_NULL ? "none"
                                                         : (const char *)sqlite3_column_text(st, 7),
               lag, sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
               sqlite3_column_int64(st, 5), sqlite3_column_text(st, 6));
        print_counts(st, 8, indent[0] ? "    " : "  ");
    }
    sqlite3_finalize(st);
}

/* The dataexport iterator of each stream that has one. */
static void print_iterator_lines(sqlite3 *db, int64_t tenant_id)
{
    char err[512];
    sqlite3_stmt *st = db_prepare(db, "SELECT s.name, i.index_name, i.state, i.pages, i.resends "
                                  "FROM iterator i JOIN stream s ON s.id = i.stream_id "
                                  "WHERE s.tenant_id = ?1 ORDER BY s.id", err, sizeof err);
    if (!st)
        return;
    sqlite3_bind_int64(st, 1, tenant_id);
    while (sqlite3_step(st) == SQLITE_ROW)
        printf("  iterator %-12s index %s  %s  pages %lld  resends %lld\n",
               sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
               sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3),
               sqlite3_column_int64(st, 4));
    sqlite3_finalize(st);
}

int tenant_print_show(sqlite3 *db, const cli_ctx *ctx, const char *name, int json)
{
    char err[512], sink_url[CONFIG_PATH_MAX];
    tenant t;
    if (!name)
        return cli_error("tenant show: NAME is missing (usage: nscollect tenant show NAME [--json])");
    if (tenant_find(db, name, &t, err, sizeof err) != 0)
        return cli_error("%s", err);
    if (json)
        return print_scalar(db, show_json_sql, name);
    tenant_sink_url(&t, &ctx->cfg, sink_url, sizeof sink_url);
    /* the furthest-behind stream's (tenant_status) */
    int64_t cursor = db_int(db, "SELECT coalesce((SELECT s.cursor FROM tenant_status s JOIN "
                            "tenant t ON t.name = s.name WHERE t.id = ?1), -1)", t.id, -1);
    char last_error[TENANT_ERR_MAX], streams[STREAM_LIST_MAX];
    query_text(db, "SELECT last_error FROM tenant_status s JOIN tenant t ON t.name = s.name "
            "WHERE t.id = ?1", t.id, last_error, sizeof last_error);
    stream_list_format(t.streams, streams, sizeof streams);
    printf("name:          %s\nenabled:       %s\nurl:           %s\ntoken:         %s\n"
           "sink:          %s%s\nsink creds:    %s\ninterval:      %d s\nlookback:      %d s\n"
           "overlap:       %d s\npage size:     %d\nmax records:   %lld%s\nwindow:        %s time\n",
           t.name, t.enabled ? "yes" : "no", t.url, t.token_fp, sink_url,
           t.sink[0] ? "" : " (default)", t.sink_credentials[0] ? t.sink_credentials : "-",
           t.interval_s, t.lookback_s, t.overlap_s, t.page_size, (long long)t.max_records,
           t.max_records ? "" : " (no cap)", t.window_event ? "event" : "insertion");
    printf("requests/s:    %g%s\n", tenant_rate(&t, &ctx->cfg),
           t.requests_per_s > 0 ? "" : " (fetch.requests_per_second)");
    if (cursor >= 0)
        printf("cursor:        %lld (%lld s ago)\n", (long long)cursor,
               (long long)(db_now() - cursor));
    else
        printf("cursor:        none yet (first run reads the last %d s)\n", t.lookback_s);
    printf("last error:    %s\n", last_error[0] ? last_error : "-");
    printf("api:           %s\n", t.api_export ? "dataexport (iterator)" : "data (time windows)");
    printf("streams:       %s\n", streams);
    print_stream_lines(db, t.name, "  ");
    print_iterator_lines(db, t.id);
    return 0;
}
