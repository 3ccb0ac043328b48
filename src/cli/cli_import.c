/* cli_import.c - `nscollect tenant import-env NAME [--state FILE]`: move one
 * tenant over from Google's Cloud Run recipe (reference/netskope-alerts-to-
 * secops-guide.txt) by reading the function's own environment variables,
 * and optionally its state.json so the first run resumes where it stopped.
 *
 * Reading order: the variables (each validated, errors name the variable),
 * the state file (jsmn, then a number or an ISO 8601 time), the two inserts,
 * the summary, and the entry point. Nothing touches the database until
 * everything has been validated; the tenant is inserted disabled, gets its
 * cursor, and only then is enabled, so a daemon running at the same time
 * never starts it from the lookback, and a failure leaves no tenant behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "base/buf.h"
#include "cli/cli.h"
#include "daemon/db.h"
#include "daemon/netskope.h"
#include "daemon/secret.h"
#include "sink/sink.h"
#include "daemon/tenant.h"

#define IMPORT_TOKEN_MAX 8192
#define STATE_FILE_MAX (64 * 1024)       /* the recipe writes ~40 bytes */
#define STATE_TOKENS_MAX 512
#define RECIPE_PREFIX_DEFAULT "netskope/alerts"
#define EPOCH_2000 946684800LL           /* older is not a Netskope alert time */
#define FUTURE_SLACK (86400LL)           /* clock skew tolerated in a state file */

/* What the recipe's variables said, beside the tenant they become. */
typedef struct recipe {
    tenant t;
    buf token;
    long long lookback_hours;
    int has_bucket;
    const char *state_key;              /* STATE_KEY, for a hint; may be NULL */
} recipe;

/* ---- The variables ------------------------------------------------------- */

static const char *env_required(const char *var)
{
    const char *v = getenv(var);
    if (v && v[0])
        return v;
    cli_error("%s is %s: import-env reads the Cloud Run function's variables "
              "(see `nscollect tenant --help`)", var, v ? "empty" : "not set");
    return NULL;
}

/* An optional whole-number variable in [lo, hi], dflt when unset. */
static int env_number(const char *var, long long dflt, long long lo, long long hi,
                      long long *out)
{
    const char *v = getenv(var);
    char *end;
    if (!v) {
        *out = dflt;
        return 0;
    }
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        cli_error("%s='%.40s': expected a whole number from %lld to %lld", var, v, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

static int recipe_url(recipe *r)
{
    char err[512];
    const char *v = env_required("NETSKOPE_TENANT");
    if (!v)
        return -1;
    if (strlen(v) >= sizeof r->t.url)
        return cli_error("NETSKOPE_TENANT is longer than %zu bytes", sizeof r->t.url - 1), -1;
    snprintf(r->t.url, sizeof r->t.url, "%s", v);
    size_t n = strlen(r->t.url);
    while (n > 0 && r->t.url[n - 1] == '/')    /* the recipe does tenant.rstrip('/') */
        r->t.url[--n] = '\0';
    if (ns_url_check(r->t.url, err, sizeof err) < 0)
        return cli_error("NETSKOPE_TENANT: %s", err), -1;
    return 0;
}

/* The token, trimmed of a trailing newline; printable ASCII, no spaces. */
static int recipe_token(recipe *r)
{
    const char *v = env_required("NETSKOPE_API_TOKEN");
    if (!v)
        return -1;
    if (buf_append_str(&r->token, v) < 0) {
        cli_error("NETSKOPE_API_TOKEN is longer than %d bytes: is it the token?", IMPORT_TOKEN_MAX);
        return -1;
    }
    while (r->token.len && strchr("\r\n\t ", r->token.data[r->token.len - 1]))
        r->token.data[--r->token.len] = '\0';
    for (size_t i = 0; i < r->token.len; i++) {
        unsigned char c = (unsigned char)r->token.data[i];
        if (c <= 0x20 || c >= 0x7f) {
            cli_error("NETSKOPE_API_TOKEN contains a space, control or non-ASCII character: "
                      "is it the token?");
            return -1;
        }
    }
    if (r->token.len == 0)
        return cli_error("NETSKOPE_API_TOKEN is empty"), -1;
    return 0;
}

/* gs://GCS_BUCKET/GCS_PREFIX when GCS_BUCKET is set, else the file sink. */
static int recipe_sink(recipe *r)
{
    char err[512];
    const char *bucket = getenv("GCS_BUCKET"), *prefix = getenv("GCS_PREFIX");
    if (!bucket || !bucket[0])
        return 0;
    if (!prefix)
        prefix = RECIPE_PREFIX_DEFAULT;
    prefix += strspn(prefix, "/");
    size_t plen = strlen(prefix);
    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    int n = snprintf(r->t.sink, sizeof r->t.sink, "gs://%s%s%.*s", bucket, plen ? "/" : "",
                     (int)plen, prefix);
    if (n < 0 || (size_t)n >= sizeof r->t.sink) {
        cli_error("GCS_BUCKET and GCS_PREFIX make a sink URL longer than %zu bytes",
                  sizeof r->t.sink - 1);
        return -1;
    }
    if (sink_url_check(r->t.sink, err, sizeof err) < 0) {
        cli_error("GCS_BUCKET, GCS_PREFIX: %s", err);
        return -1;
    }
    r->has_bucket = 1;
    return 0;
}

static int recipe_numbers(recipe *r)
{
    long long page, max;
    if (env_number("PAGE_SIZE", 1000, 1, 10000, &page) < 0 ||
        env_number("MAX_RECORDS", 5000, 0, 1000000000, &max) < 0 ||
        env_number("LOOKBACK_HOURS", 24, 1, 31 * 24, &r->lookback_hours) < 0)
        return -1;
    r->t.page_size = (int)page;
    r->t.max_records = max;
    r->t.lookback_s = (int)(r->lookback_hours * 3600);
    return 0;
}

/* Every variable into r (over the config's tenant defaults). */
static int recipe_read(recipe *r, const nsc_config *cfg, const char *name)
{
    tenant_init(&r->t, cfg);
    snprintf(r->t.name, sizeof r->t.name, "%s", name);
    r->t.window_event = 1;              /* the recipe filters on event time */
    r->state_key = getenv("STATE_KEY");
    if (recipe_url(r) < 0 || recipe_token(r) < 0 || recipe_sink(r) < 0 ||
        recipe_numbers(r) < 0)
        return -1;
    return 0;
}

/* ---- The state file ------------------------------------------------------ */

/* Read path (a regular file of at most STATE_FILE_MAX bytes) into b. */
static int state_load(const char *path, buf *b, char *why, size_t whylen)
{
    struct stat sb;
    char chunk[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), rc = -1;
    if (fd < 0) {
        snprintf(why, whylen, "cannot read it: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, whylen, "it is not a regular file");
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(why, whylen, "cannot read it: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (buf_append(b, chunk, (size_t)n) < 0) {
            snprintf(why, whylen, "it is larger than %d KiB: is it the recipe's state.json?",
                     STATE_FILE_MAX / 1024);
            goto out;
        }
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

/* Index just past the value that starts at token i. */
static int json_skip(const jsmntok_t *t, int n, int i)
{
    int pending = 1;
    while (pending > 0 && i < n) {
        pending += t[i].size - 1;
        i++;
    }
    return i;
}

/* Token index of the top-level "last_event_time" value (the last one, as
 * Python's json does with duplicates), or -1. */
static int json_find_time(const char *js, const jsmntok_t *t, int n)
{
    static const char key[] = "last_event_time";
    int found = -1, i = 1;
    for (int c = 0; c < t[0].size && i + 1 < n; c++) {
        if (t[i].type == JSMN_STRING && t[i].end - t[i].start == (int)sizeof key - 1 &&
            memcmp(js + t[i].start, key, sizeof key - 1) == 0)
            found = i + 1;
        i = json_skip(t, n, i + 1);
    }
    return found;
}

/* Two ASCII digits as a number, or -1. */
static int two_digits(const char *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* "+05:30", "-0800", "+01", "Z" or "" (UTC, as the recipe assumes) into
 * seconds east of UTC. -1 when it is none of those. */
static int iso_offset(const char *s, long *off)
{
    int hh, mm = 0;
    *off = 0;
    if (s[0] == '\0' || ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0'))
        return 0;
    if ((s[0] != '+' && s[0] != '-') || (hh = two_digits(s + 1)) < 0)
        return -1;
    const char *p = s + 3;
    if (*p == ':')
        p++;
    if (*p && ((mm = two_digits(p)) < 0 || p[2] != '\0'))
        return -1;
    if (hh > 23 || mm > 59 || (p > s + 3 && !*p))
        return -1;
    *off = (s[0] == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
    return 0;
}

/* "2025-01-01T00:00:00Z" and the other forms Python's
 * datetime.fromisoformat() reads for the recipe: 'T' or ' ' between date
 * and time, optional seconds and fraction, Z or a numeric offset or none. */
static int iso_time(const char *s, int64_t *out)
{
    struct tm tm, check;
    long off;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    if (!p || s[0] < '0' || s[0] > '9')
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        if (!(p = strptime(p + 1, "%H:%M", &tm)))
            return -1;
        if (*p == ':' && !(p = strptime(p + 1, "%S", &tm)))
            return -1;
        if (*p == '.' || *p == ',')     /* the fraction: the cursor keeps whole seconds */
            for (p++; *p >= '0' && *p <= '9'; p++)
                ;
    }
    if (iso_offset(p, &off) < 0)
        return -1;
    int year = tm.tm_year, mon = tm.tm_mon, mday = tm.tm_mday;
    time_t v = timegm(&tm);
    if (v == (time_t)-1 || !gmtime_r(&v, &check) || check.tm_year != year ||
        check.tm_mon != mon || check.tm_mday != mday)
        return -1;                      /* 2025-02-30 and the like */
    *out = (int64_t)v - off;
    return 0;
}

/* Epoch seconds written as an integer or a float: whole seconds, rounded
 * down so the window never starts late. */
static int epoch_number(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    if (strpbrk(s, ".eE")) {
        double d = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(d) || d < -9e15 || d > 9e15)
            return -1;
        *out = (int64_t)d;
        if ((double)*out > d)               /* round down, not toward zero */
            (*out)--;
        return 0;
    }
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* A parsed time must look like one the recipe wrote. */
static int time_plausible(int64_t v, char *why, size_t whylen)
{
    int64_t now = db_now();
    if (v > 100000000000LL)
        snprintf(why, whylen, "last_event_time %lld looks like milliseconds; the recipe "
                 "stores epoch seconds", (long long)v);
    else if (v < EPOCH_2000)
        snprintf(why, whylen, "last_event_time %lld is before the year 2000", (long long)v);
    else if (v > now + FUTURE_SLACK)
        snprintf(why, whylen, "last_event_time %lld is more than a day in the future",
                 (long long)v);
    else
        return 0;
    return -1;
}

/* The value token v of last_event_time into *out. */
static int state_value(const char *js, const jsmntok_t *v, int64_t *out, char *why, size_t whylen)
{
    char text[80];
    int len = v->end - v->start;
    if (v->type != JSMN_STRING && v->type != JSMN_PRIMITIVE) {
        snprintf(why, whylen, "last_event_time is not a number or a time string");
        return -1;
    }
    if (v->type == JSMN_PRIMITIVE && (js[v->start] == 'n' || js[v->start] == 't' ||
                                      js[v->start] == 'f')) {
        snprintf(why, whylen, "last_event_time is %.*s, not a time (omit --state to start "
                 "from LOOKBACK_HOURS, as the recipe would)", len, js + v->start);
        return -1;
    }
    if (len <= 0 || len >= (int)sizeof text) {
        snprintf(why, whylen, "last_event_time is %s", len <= 0 ? "empty" : "too long for a time");
        return -1;
    }
    memcpy(text, js + v->start, (size_t)len);
    text[len] = '\0';
    if (epoch_number(text, out) < 0 && (v->type != JSMN_STRING || iso_time(text, out) < 0)) {
        snprintf(why, whylen, "last_event_time '%s' is neither epoch seconds nor an ISO 8601 "
                 "time such as 2025-01-01T00:00:00Z", text);
        return -1;
    }
    return time_plausible(*out, why, whylen);
}

/* Tokenize the whole file: one JSON object and nothing after it. */
static int state_tokens(const buf *b, jsmntok_t *t, int *n, char *why, size_t whylen)
{
    jsmn_parser p;
    jsmn_init(&p);
    *n = jsmn_parse(&p, b->data, b->len, t, STATE_TOKENS_MAX);
    if (*n == JSMN_ERROR_NOMEM)
        snprintf(why, whylen, "it has more than %d JSON values: is it the recipe's state.json?",
                 STATE_TOKENS_MAX);
    else if (*n < 0)
        snprintf(why, whylen, "it is not valid JSON%s", *n == JSMN_ERROR_PART ? " (truncated?)" : "");
    else if (*n == 0 || t[0].type != JSMN_OBJECT)
        snprintf(why, whylen, "it is not a JSON object like {\"last_event_time\": 1735689600}");
    else if (b->data[t[0].end + strspn(b->data + t[0].end, " \t\r\n")] != '\0')
        snprintf(why, whylen, "it has text after the JSON object");
    else
        return 0;
    return -1;
}

/* Parse the recipe's state file into *cursor. -1 after printing an error
 * that names the file and what is wrong with it. */
static int state_read(const char *path, int64_t *cursor)
{
    char why[512];
    jsmntok_t *t = calloc(STATE_TOKENS_MAX, sizeof *t);
    buf b;
    int n, rc = -1;
    buf_init(&b, STATE_FILE_MAX);
    if (!t) {
        snprintf(why, sizeof why, "out of memory");
        goto out;
    }
    if (state_load(path, &b, why, sizeof why) < 0)
        goto out;
    if (b.len == 0 || b.len != strlen(b.data)) {
        snprintf(why, sizeof why, b.len ? "it contains a NUL byte" : "it is empty");
        goto out;
    }
    if (state_tokens(&b, t, &n, why, sizeof why) < 0)
        goto out;
    int v = json_find_time(b.data, t, n);
    if (v < 0) {
        snprintf(why, sizeof why, "it has no \"last_event_time\" (omit --state to start "
                 "from LOOKBACK_HOURS, as the recipe would)");
        goto out;
    }
    rc = state_value(b.data, &t[v], cursor, why, sizeof why);
out:
    if (rc < 0)
        cli_error("state file '%s': %s", path, why);
    free(t);
    buf_release(&b);
    return rc;
}

/* ---- The database -------------------------------------------------------- */

static int cursor_insert(sqlite3 *db, int64_t tenant_id, int64_t position,
                         char *err, size_t errlen)
{
    /* the recipe collects alerts: the tenant's alert stream's cursor */
    sqlite3_stmt *st = db_prepare(db, "INSERT INTO cursor (stream_id, position, updated_at) "
                                      "SELECT id, ?2, ?3 FROM stream WHERE tenant_id = ?1 "
                                      "AND name = 'alert'", err, errlen);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, tenant_id);
    sqlite3_bind_int64(st, 2, position);
    sqlite3_bind_int64(st, 3, db_now());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* Insert r->t (disabled), its cursor when has_cursor, then enable it.
 * On failure nothing is left: the tenant is removed again. */
static int import_store(sqlite3 *db, const secret_key *key, recipe *r, int has_cursor,
                        int64_t cursor)
{
    char err[1024], why[512];
    r->t.enabled = 0;
    if (tenant_insert(db, key, &r->t, r->token.data, r->token.len, err, sizeof err) < 0)
        return cli_error("%s", err), -1;
    if (has_cursor && cursor_insert(db, r->t.id, cursor, err, sizeof err) < 0) {
        cli_error("cannot set the cursor of tenant '%s': %s", r->t.name, err);
        goto undo;
    }
    r->t.enabled = 1;
    if (tenant_update(db, NULL, &r->t, NULL, 0, err, sizeof err) < 0) {
        cli_error("cannot enable tenant '%s': %s", r->t.name, err);
        goto undo;
    }
    return 0;
undo:
    if (tenant_remove(db, r->t.id, why, sizeof why) < 0)
        cli_error("could not remove the half-imported tenant '%s' (%s): run "
                  "`nscollect tenant remove %s`", r->t.name, why, r->t.name);
    return -1;
}

/* ---- What was imported --------------------------------------------------- */

static void format_utc(int64_t v, char *out, size_t n)
{
    struct tm tm;
    time_t tv = (time_t)v;
    if (!gmtime_r(&tv, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, n, "?");
}

static void print_summary(const recipe *r, const char *state_file, int64_t cursor)
{
    char fp[32], when[32], from[32];
    const tenant *t = &r->t;
    secret_fingerprint(r->token.data, r->token.len, fp, sizeof fp);
    printf("tenant '%s' imported from the Cloud Run function's variables (enabled)\n", t->name);
    printf("  url:          %s  (NETSKOPE_TENANT)\n", t->url);
    printf("  token:        %s  (NETSKOPE_API_TOKEN, stored encrypted)\n", fp);
    printf("  sink:         %s\n", r->has_bucket ? t->sink
           : "default file sink under output_dir  (GCS_BUCKET not set)");
    printf("  page size:    %d  (PAGE_SIZE)\n", t->page_size);
    printf("  max records:  %lld%s  (MAX_RECORDS)\n", (long long)t->max_records,
           t->max_records ? " per run" : " (no cap)");
    printf("  lookback:     %d s  (LOOKBACK_HOURS=%lld)\n", t->lookback_s, r->lookback_hours);
    printf("  interval:     %d s  (tenant_defaults.interval; the guide's job ran hourly)\n",
           t->interval_s);
    printf("  window:       event time  (as the recipe)\n");
    if (state_file) {
        format_utc(cursor, when, sizeof when);
        format_utc(cursor - t->overlap_s, from, sizeof from);
        printf("  cursor:       %lld = %s  (last_event_time in %s)\n", (long long)cursor, when,
               state_file);
        printf("  first run:    from %s (cursor - overlap %d s)\n", from, t->overlap_s);
    } else {
        printf("  cursor:       none: the first run reads the last %lld h\n", r->lookback_hours);
    }
}

/* Chatter for the operator, on stderr. */
static void print_notes(const recipe *r, const char *state_file)
{
    const char *n = r->t.name;
    fprintf(stderr, "note: the recipe filters on event time, so '%s' does too; "
            "`nscollect tenant set %s --window insertion` switches to insertion time, "
            "which also catches alerts Netskope stores late.\n", n, n);
    if (state_file)
        fprintf(stderr, "note: the first run re-reads the %d s overlap before last_event_time; "
                "alerts in it that the Cloud Run function already delivered are sent once "
                "more (nscollect has not seen them yet). After that nothing is sent twice.\n",
                r->t.overlap_s);
    else
        fprintf(stderr, "note: without --state the first run re-sends what the function "
                "delivered in the last %lld h; to resume where it stopped instead, fetch "
                "gs://BUCKET/%s, `nscollect tenant remove %s` and import again with "
                "--state FILE.\n", r->lookback_hours,
                r->state_key ? r->state_key : "netskope/alerts/state.json", n);
    if (r->has_bucket)
        fprintf(stderr, "note: objects go to %s/%s/alerts_*.ndjson (one folder per tenant); "
                "make sure the SecOps feed's bucket URL covers it, and give nscollect GCS "
                "credentials (gcs.credentials, GOOGLE_APPLICATION_CREDENTIALS, the metadata "
                "server, or `tenant set %s --sink-credentials FILE`).\n", r->t.sink, n, n);
    else
        fprintf(stderr, "note: GCS_BUCKET is not set, so alerts go to files under output_dir; "
                "`nscollect tenant set %s --sink gs://BUCKET/PREFIX` sends them to GCS.\n", n);
    fprintf(stderr, "note: stop the Cloud Scheduler job that triggers the function before "
            "`nscollect run`, or both will deliver.\n");
}

/* ---- Entry --------------------------------------------------------------- */

int tenant_import_env(cli_ctx *ctx, const char *name, const char *state_file)
{
    char err[1024];
    secret_key key = {{0}};
    sqlite3 *db = NULL;
    int64_t cursor = 0;
    int rc = EXIT_USAGE;
    recipe *r = calloc(1, sizeof *r);
    if (!r)
        return cli_error("tenant import-env: out of memory");
    buf_init(&r->token, IMPORT_TOKEN_MAX);
    if (!name) {
        cli_error("tenant import-env: NAME is missing (usage: nscollect tenant import-env "
                  "NAME [--state FILE])");
        goto out;
    }
    if (tenant_name_check(name, err, sizeof err) < 0) {
        cli_error("%s", err);
        goto out;
    }
    if (recipe_read(r, &ctx->cfg, name) < 0 || (state_file && state_read(state_file, &cursor) < 0))
        goto out;
    if (!(db = cli_open_db(ctx)))
        goto out;
    if (cli_load_key(ctx, db, &key) != 0 || import_store(db, &key, r, state_file != NULL, cursor) < 0)
        goto out;
    print_summary(r, state_file, cursor);
    print_notes(r, state_file);
    rc = 0;
out:
    if (r->token.data)
        secret_wipe(r->token.data, r->token.cap);
    buf_release(&r->token);
    free(r);
    secret_wipe(&key, sizeof key);
    db_close(db);
    return rc;
}
