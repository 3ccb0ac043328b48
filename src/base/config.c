/* config.c - the key table and the libconfig loader (see config.h).
 *
 * Reading order: the key table, defaults, the file checks done before
 * libconfig sees the text, the 64-bit literal fix-up, the tree walk that
 * applies each setting through the table, and the public entry points.
 */
#include "base/config.h"
#include "base/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/suggest.h"

#define KIB (1024LL)
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)
#define TIB (1024LL * GIB)
#define DAY 86400LL
#define CONFIG_FILE_MAX (1024L * 1024) /* a config file larger than this is a mistake */
#define KEY_NAME_MAX 256              /* longest dotted name we build */
#define SUGGEST_DIST 2                /* "did you mean" edit-distance limit */

/* ---- The key table ------------------------------------------------------ */

enum key_type { KEY_INT, KEY_INT64, KEY_BOOL, KEY_STRING, KEY_ENUM };

struct key {
    const char *name;         /* dotted path, e.g. "workers.fetch" */
    enum key_type type;
    long long def;            /* default for int, int64, bool and enum (index) */
    const char *def_str;      /* default for string */
    long long min, max;       /* bounds; for strings, min/max length in bytes */
    size_t off;               /* offsetof(nsc_config, field) */
    const char *const *names; /* enum: value i is spelled names[i]; NULL-ended */
};

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug", [LOG_INFO] = "info", [LOG_WARN] = "warn", [LOG_ERROR] = "error", NULL,
};
static const char *const format_names[] = {
    [LOG_FORMAT_KV] = "kv", [LOG_FORMAT_JSON] = "json", NULL,
};
static const char *const window_names[] = {"insertion", "event", NULL};

/* offsetof, plus a compile-time check that the field has the size the
 * entry's type writes (a table typo cannot scribble over a neighbour). */
#define FIELD(f, sz) (offsetof(nsc_config, f) + \
    0 * sizeof(char[sizeof(((nsc_config *)0)->f) == (sz) ? 1 : -1]))
#define INT(n, f, d, lo, hi) {n, KEY_INT, d, NULL, lo, hi, FIELD(f, sizeof(int)), NULL}
#define I64(n, f, d, lo, hi) {n, KEY_INT64, d, NULL, lo, hi, FIELD(f, sizeof(int64_t)), NULL}
#define BOOL(n, f, d)        {n, KEY_BOOL, d, NULL, 0, 1, FIELD(f, sizeof(int)), NULL}
#define STR(n, f, d, minlen) {n, KEY_STRING, 0, d, minlen, CONFIG_PATH_MAX - 1, \
                              FIELD(f, CONFIG_PATH_MAX), NULL}
#define ENUM(n, f, d, names) {n, KEY_ENUM, d, NULL, 0, 0, FIELD(f, sizeof(int)), names}

static const struct key keys[] = {
    STR("database", database, "nscollect.db", 1),
    STR("key_file", key_file, "", 0),
    STR("output_dir", output_dir, "nscollect-out", 1),
    STR("shard", shard, "", 0),
    ENUM("log.level", log_level, LOG_INFO, level_names),
    ENUM("log.format", log_format, LOG_FORMAT_KV, format_names),

    INT("workers.fetch", fetch_workers, 4, 1, 64),
    INT("workers.upload", upload_workers, 2, 1, 64),
    INT("workers.fetch_spare", fetch_spare, 4, 0, 64),

    INT("tenant_defaults.interval", interval_s, 300, 1, DAY),
    INT("tenant_defaults.lookback", lookback_s, DAY, 60, 31 * DAY),
    INT("tenant_defaults.overlap", overlap_s, 120, 0, DAY),
    INT("tenant_defaults.page_size", page_size, 5000, 1, 10000),
    I64("tenant_defaults.max_records", max_records, 0, 0, 1000000000),
    ENUM("tenant_defaults.window", window_event, 0, window_names),

    INT("fetch.slice", slice_s, 3600, 60, DAY),
    I64("fetch.batch_max_bytes", batch_max_bytes, 8 * MIB, 64 * KIB, GIB),
    INT("fetch.retry_wait_max", retry_wait_max_s, 5, 0, 3600),
    INT("fetch.prune_margin", prune_margin_s, 3600, 0, 7 * DAY),
    INT("fetch.job_budget", job_budget_s, 10, 1, 3600),
    INT("fetch.requests_per_second", requests_per_s, 4, 1, 1000),
    BOOL("fetch.prefetch", prefetch, 0),
    INT("fetch.offset_max", offset_max, 50000, 100, 1000000),

    INT("http.connect_timeout", connect_timeout_s, 10, 1, 300),
    INT("http.low_speed_time", low_speed_time_s, 30, 1, 3600),
    INT("http.total_timeout", total_timeout_s, 300, 1, DAY),
    I64("http.max_body", max_body_bytes, 128 * MIB, MIB, 2 * GIB - 1),
    I64("http.max_body_total", max_body_total, 512 * MIB, MIB, 64 * GIB),
    STR("http.ca_bundle", ca_bundle, "", 0),
    STR("http.proxy", proxy, "", 0),

    STR("gcs.endpoint", gcs_endpoint, "https://storage.googleapis.com", 1),
    STR("gcs.credentials", gcs_credentials, "", 0),
    BOOL("gcs.gzip", gcs_gzip, 0),

    STR("secops.endpoint", secops_endpoint, "", 0),
    I64("secops.max_request_bytes", secops_max_request_bytes, 1000000, 4096, 64 * MIB),
    INT("secops.max_entries", secops_max_entries, 1000, 1, 100000),

    I64("outbox.limit_bytes", outbox_limit_bytes, GIB, MIB, TIB),
    I64("outbox.spool_min_bytes", spool_min_bytes, MIB, 0, GIB),

    STR("metrics.listen", metrics_listen, "", 0),
};

#define NKEYS (sizeof keys / sizeof keys[0])

size_t config_key_count(void)
{
    return NKEYS;
}

const char *config_key_name(size_t i)
{
    return i < NKEYS ? keys[i].name : NULL;
}

static const struct key *key_find(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* A group is any proper prefix of a key ending at a dot ("workers"). */
static int is_group(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < NKEYS; i++)
        if (strncmp(keys[i].name, name, n) == 0 && keys[i].name[n] == '.')
            return 1;
    return 0;
}

/* ---- Writing fields ----------------------------------------------------- */

static void set_string(nsc_config *cfg, const struct key *k, const char *s)
{
    char *dst = (char *)cfg + k->off;
    size_t n = strlen(s);

    memset(dst, 0, CONFIG_PATH_MAX);
    memcpy(dst, s, n < CONFIG_PATH_MAX ? n : CONFIG_PATH_MAX - 1);
}

static void set_number(nsc_config *cfg, const struct key *k, long long v)
{
    char *dst = (char *)cfg + k->off;

    if (k->type == KEY_INT64) {
        int64_t v64 = v;
        memcpy(dst, &v64, sizeof v64);
    } else {
        int vi = (int)v;
        memcpy(dst, &vi, sizeof vi);
    }
}

void config_defaults(nsc_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == KEY_STRING)
            set_string(cfg, &keys[i], keys[i].def_str);
        else
            set_number(cfg, &keys[i], keys[i].def);
    }
}

/* ---- Error messages ----------------------------------------------------- */

static int errorf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int errorf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* State of one load: where messages go and what they name. */
struct load {
    const char *path;
    nsc_config *cfg;
    char *err;
    size_t errlen;
};

/* "FILE:LINE: KEY: problem", returns -1. */
static int key_error(struct load *ld, const config_setting_t *s, const char *key,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int key_error(struct load *ld, const config_setting_t *s, const char *key,
                     const char *fmt, ...)
{
    const char *file = config_setting_source_file(s);
    char problem[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return errorf(ld->err, ld->errlen, "%s:%u: %s: %s", file ? file : ld->path,
                  config_setting_source_line(s), key, problem);
}

/* ---- The file before libconfig sees it ---------------------------------- */

static int read_fd(int fd, char *dst, size_t cap, size_t *len)
{
    *len = 0;
    while (*len < cap) {
        ssize_t n = read(fd, dst + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    return 0;
}

/* Open path and check it is a regular file of sane size. Returns the fd. */
static int open_checked(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0)
        return errorf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        errorf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        errorf(err, errlen, "cannot read config file '%s': %s", path, strerror(EISDIR));
    } else if (!S_ISREG(st.st_mode)) {
        errorf(err, errlen, "config file '%s' is not a regular file", path);
    } else if (st.st_size > CONFIG_FILE_MAX) {
        errorf(err, errlen, "config file '%s' is larger than 1 MiB", path);
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

/* The text must be text: no NUL or control bytes other than white space. */
static int check_text(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    size_t line = 1;
    int blank = 1;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n')
            line++;
        if (c == 0 || (c < 0x20 && !strchr("\t\n\v\f\r", c)))
            return errorf(err, errlen, "config file '%s' is not a text file (byte 0x%02x "
                          "on line %zu)", path, c, line);
        if (c != ' ' && (c < '\t' || c > '\r'))
            blank = 0;
    }
    if (blank)
        return errorf(err, errlen, "config file '%s' is empty", path);
    return 0;
}

/* Read the whole file into a NUL-terminated string the caller frees. */
static char *read_config_file(const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int fd = open_checked(path, err, errlen);

    if (fd < 0)
        return NULL;
    text = malloc(CONFIG_FILE_MAX + 2);
    if (!text) {
        errorf(err, errlen, "cannot read config file '%s': %s", path, strerror(ENOMEM));
    } else if (read_fd(fd, text, CONFIG_FILE_MAX + 1, &len) < 0) {
        errorf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
    } else if (len > CONFIG_FILE_MAX) {
        errorf(err, errlen, "config file '%s' is larger than 1 MiB", path);
    } else if (check_text(path, text, len, err, errlen) == 0) {
        text[len] = '\0';
        close(fd);
        return text;
    }
    free(text);
    close(fd);
    return NULL;
}

/* ---- Plain integers past 32 bits ---------------------------------------
 *
 * libconfig 1.5 (Debian's) silently truncates a plain integer literal that
 * does not fit in 32 bits: "limit_bytes = 4296015872;" reads as 1048576.
 * Later versions make such a literal 64-bit. To get the later behaviour,
 * a lexer that knows libconfig's comments, strings and names appends the
 * L suffix to every plain literal outside the 32-bit range before parsing.
 * A literal past 64 bits becomes INT64_MAX (or MIN), which every key's
 * range check rejects, naming the key. Line numbers do not change. */

struct lex {
    const char *s; /* input */
    size_t i;      /* position in s */
    char *out;     /* output, room for 2 * strlen(s) + 1 */
    size_t o;
};

static void lex_copy(struct lex *lx, size_t n)
{
    for (; n && lx->s[lx->i]; n--)
        lx->out[lx->o++] = lx->s[lx->i++];
}

/* Length of the comment or string at p, 0 if there is none. */
static size_t lex_skip_len(const char *p)
{
    const char *e = NULL;

    if (*p == '#' || (p[0] == '/' && p[1] == '/'))
        e = p + strcspn(p, "\n");
    else if (p[0] == '/' && p[1] == '*')
        e = strstr(p + 2, "*/") ? strstr(p + 2, "*/") + 2 : p + strlen(p);
    else if (*p == '"') {
        for (e = p + 1; *e && *e != '"'; e++)
            if (*e == '\\' && e[1])
                e++;
        if (*e)
            e++;
    }
    return e ? (size_t)(e - p) : 0;
}

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Length of the name at p (digits inside a name are not numbers). */
static size_t lex_name_len(const char *p)
{
    size_t n = 1;

    while (is_name_char(p[n]))
        n++;
    return n;
}

static int at_number(const char *p)
{
    if (*p == '-' || *p == '+')
        p++;
    return (*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9');
}

/* The number at the cursor: copied, with L added past 32 bits. */
static void lex_number(struct lex *lx)
{
    const char *p = lx->s + lx->i, *digits = p + (*p == '-' || *p == '+');
    int hex = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');
    char *end;
    long long v;

    errno = 0;
    v = strtoll(p, &end, hex ? 16 : 10);
    if (end == p || *end == '.' || *end == 'e' || *end == 'E') { /* a float */
        lex_copy(lx, (size_t)(end - p) + strspn(end, "+-0123456789.eE"));
        return;
    }
    if (errno == ERANGE) { /* 18+ bytes in, at most 21 out: out has room */
        lx->o += (size_t)snprintf(lx->out + lx->o, 24, "%lldL", v);
        lx->i += (size_t)(end - p) + (*end == 'L') + (*end == 'L' && end[1] == 'L');
        return;
    }
    lex_copy(lx, (size_t)(end - p));
    if (*end != 'L' && (v > 0x7fffffffLL || (!hex && v < -0x7fffffffLL - 1)))
        lx->out[lx->o++] = 'L';
}

/* Rewrite text into out, which has room for 2 * strlen(text) + 1 bytes.
 * Returns 0, or the line of an @include: not supported, because libconfig
 * 1.5 exits the process when the included name is a directory, and a
 * config that is one file is one thing to check and to back up. */
static int widen_integers(const char *text, char *out)
{
    struct lex lx = {.s = text, .out = out};
    int line = 1;

    while (text[lx.i]) {
        size_t skip = lex_skip_len(text + lx.i);
        for (size_t k = 0; k < skip; k++)
            line += text[lx.i + k] == '\n';
        if (text[lx.i] == '\n')
            line++;
        if (text[lx.i] == '@')
            return line;
        if (skip)
            lex_copy(&lx, skip);
        else if (is_name_start(text[lx.i]))
            lex_copy(&lx, lex_name_len(text + lx.i));
        else if (at_number(text + lx.i))
            lex_number(&lx);
        else
            lex_copy(&lx, 1);
    }
    out[lx.o] = '\0';
    return 0;
}

/* ---- Applying settings through the table -------------------------------- */

static int apply_integer(struct load *ld, const struct key *k, const config_setting_t *s)
{
    int t = config_setting_type(s);
    long long v;

    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return key_error(ld, s, k->name, "expected an integer");
    v = config_setting_get_int64(s);
    if (v < k->min || v > k->max)
        return key_error(ld, s, k->name, "must be between %lld and %lld", k->min, k->max);
    set_number(ld->cfg, k, v);
    return 0;
}

static int apply_bool(struct load *ld, const struct key *k, const config_setting_t *s)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return key_error(ld, s, k->name, "expected true or false");
    set_number(ld->cfg, k, config_setting_get_bool(s) ? 1 : 0);
    return 0;
}

static int apply_string(struct load *ld, const struct key *k, const config_setting_t *s)
{
    const char *v = config_setting_get_string(s);
    size_t n;

    if (config_setting_type(s) != CONFIG_TYPE_STRING || !v)
        return key_error(ld, s, k->name, "expected a string");
    n = strlen(v);
    if (n < (size_t)k->min)
        return key_error(ld, s, k->name, "must not be empty");
    if (n > (size_t)k->max)
        return key_error(ld, s, k->name, "is longer than %lld bytes", k->max);
    set_string(ld->cfg, k, v);
    return 0;
}

static void enum_list(const struct key *k, char *out, size_t outlen)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; k->names[i] && o < outlen; i++)
        o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", k->names[i]);
}

static int apply_enum(struct load *ld, const struct key *k, const config_setting_t *s)
{
    const char *v = config_setting_get_string(s);
    char list[256];

    for (size_t i = 0; v && config_setting_type(s) == CONFIG_TYPE_STRING && k->names[i]; i++) {
        if (strcmp(v, k->names[i]) == 0) {
            set_number(ld->cfg, k, (long long)i);
            return 0;
        }
    }
    enum_list(k, list, sizeof list);
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return key_error(ld, s, k->name, "expected a string, one of: %s", list);
    return key_error(ld, s, k->name, "must be one of: %s", list);
}

static int key_apply(struct load *ld, const struct key *k, const config_setting_t *s)
{
    switch (k->type) {
    case KEY_INT:
    case KEY_INT64:
        return apply_integer(ld, k, s);
    case KEY_BOOL:
        return apply_bool(ld, k, s);
    case KEY_STRING:
        return apply_string(ld, k, s);
    case KEY_ENUM:
        return apply_enum(ld, k, s);
    }
    return key_error(ld, s, k->name, "unsupported key type");
}

/* ---- Unknown keys and suggestions --------------------------------------- */

static const char *leaf(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

/* Copy the candidate's group ("workers" of "workers.fetch") into out. */
static void group_of(const char *name, char *out, size_t outlen)
{
    const char *dot = strchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : 0;

    snprintf(out, outlen, "%.*s", (int)n, name);
}

/* Keep cand in out if it is closer to name than the best so far. */
static void consider(const char *name, const char *cand, size_t *best, char *out, size_t outlen)
{
    size_t d = suggest_distance(name, cand);

    if (d < *best) {
        *best = d;
        snprintf(out, outlen, "%s", cand);
    }
}

/* The closest key or group name to name, or its leaf placed in the
 * wrong group ("interval" -> "tenant_defaults.interval"); NULL if none. */
static const char *suggest(const char *name, char *out, size_t outlen)
{
    size_t best = SUGGEST_DIST + 1;
    const char *same_leaf = NULL;
    char group[KEY_NAME_MAX];

    out[0] = '\0';
    for (size_t i = 0; i < NKEYS; i++) {
        consider(name, keys[i].name, &best, out, outlen);
        group_of(keys[i].name, group, sizeof group);
        if (group[0])
            consider(name, group, &best, out, outlen);
        if (!same_leaf && strcmp(leaf(name), leaf(keys[i].name)) == 0)
            same_leaf = keys[i].name;
    }
    if (!out[0] && same_leaf)
        snprintf(out, outlen, "%s", same_leaf);
    return out[0] ? out : NULL;
}

static int unknown_key(struct load *ld, const config_setting_t *s, const char *name)
{
    char hint[KEY_NAME_MAX];

    if (suggest(name, hint, sizeof hint))
        return key_error(ld, s, name, "unknown key, did you mean '%s'?", hint);
    return key_error(ld, s, name, "unknown key (etc/nscollect.conf.example lists every key)");
}

/* ---- The tree walk ------------------------------------------------------ */

static int walk_group(struct load *ld, const config_setting_t *group, const char *prefix);

static int walk_setting(struct load *ld, const config_setting_t *s, const char *name)
{
    const struct key *k = key_find(name);

    if (k)
        return key_apply(ld, k, s);
    if (!is_group(name))
        return unknown_key(ld, s, name);
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        return key_error(ld, s, name, "expected a group: %s = { ... };", name);
    return walk_group(ld, s, name);
}

static int walk_group(struct load *ld, const config_setting_t *group, const char *prefix)
{
    char name[KEY_NAME_MAX];

    for (int i = 0; i < config_setting_length(group); i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *leaf_name = config_setting_name(s);
        snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "",
                 leaf_name ? leaf_name : "?");
        if (walk_setting(ld, s, name) < 0)
            return -1;
    }
    return 0;
}

/* Parse text with libconfig and apply it. */
static int parse_and_apply(struct load *ld, const char *text)
{
    config_t cf;
    int rc;

    config_init(&cf);
    if (config_read_string(&cf, text) != CONFIG_TRUE) {
        const char *file = config_error_file(&cf);
        rc = errorf(ld->err, ld->errlen, "%s:%d: %s", file ? file : ld->path,
                    config_error_line(&cf), config_error_text(&cf));
    } else {
        rc = walk_group(ld, config_root_setting(&cf), "");
    }
    config_destroy(&cf);
    return rc;
}

/* ---- Entry points ------------------------------------------------------- */

int config_load(nsc_config *cfg, const char *path, char *err, size_t errlen)
{
    nsc_config *tmp = malloc(sizeof *tmp);
    struct load ld = {.path = path, .cfg = tmp, .err = err, .errlen = errlen};
    char *text = NULL, *wide = NULL;
    int rc = -1;

    if (!tmp)
        return errorf(err, errlen, "cannot load config file '%s': %s", path, strerror(ENOMEM));
    if (strlen(path) >= CONFIG_PATH_MAX) {
        errorf(err, errlen, "config file path is longer than %d bytes", CONFIG_PATH_MAX - 1);
        goto out;
    }
    if (!(text = read_config_file(path, err, errlen)))
        goto out;
    if (!(wide = malloc(2 * strlen(text) + 1))) {
        errorf(err, errlen, "cannot load config file '%s': %s", path, strerror(ENOMEM));
        goto out;
    }
    config_defaults(tmp);
    int include_line = widen_integers(text, wide);
    if (include_line) {
        errorf(err, errlen, "%s:%d: @include is not supported: put every setting in this file",
               path, include_line);
        goto out;
    }
    if (parse_and_apply(&ld, wide) < 0)
        goto out;
    if (tmp->max_body_total < tmp->max_body_bytes) {   /* one body must fit the whole budget */
        errorf(err, errlen, "%s: http.max_body_total (%lld) is smaller than http.max_body (%lld): "
               "raise http.max_body_total or lower http.max_body", path,
               (long long)tmp->max_body_total, (long long)tmp->max_body_bytes);
        goto out;
    }
    listen_addr la;
    char why[256];
    if (tmp->metrics_listen[0] && listen_parse(tmp->metrics_listen, &la, why, sizeof why) < 0) {
        errorf(err, errlen, "%s: metrics.listen: %s", path, why);
        goto out;
    }
    snprintf(tmp->source, sizeof tmp->source, "%s", path);
    memcpy(cfg, tmp, sizeof *cfg);
    rc = 0;
out:
    free(wide);
    free(text);
    free(tmp);
    return rc;
}

int config_resolve(nsc_config *cfg, const char *path, char *err, size_t errlen)
{
    const char *env = getenv("NSCOLLECT_CONFIG");

    if (path && path[0])
        return config_load(cfg, path, err, errlen);
    if (env && env[0])
        return config_load(cfg, env, err, errlen);
    config_defaults(cfg);
    return 0;
}
