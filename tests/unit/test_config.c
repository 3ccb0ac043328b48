/* test_config.c - config.c: defaults, the example file, overrides and every
 * kind of error, each with the exact message (file, line, key). Run from the
 * repository root (the example file is read from etc/). */
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "base/config.h"
#include "base/log.h"

#define EXAMPLE "etc/nscollect.conf.example"

static char tmpdir[] = "/tmp/nsc_test_config.XXXXXX";
static char written[96][64];
static int nwritten;

/* Path of name inside the temp directory (rotating static buffers). */
static const char *tpath(const char *name)
{
    static char paths[4][1200];
    static int next;
    char *p = paths[next++ % 4];

    if (snprintf(p, sizeof paths[0], "%s/%s", tmpdir, name) >= (int)sizeof paths[0])
        exit(2);
    return p;
}

static const char *write_bytes(const char *name, const char *data, size_t len)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");

    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(2);
    }
    if (nwritten < 96)
        snprintf(written[nwritten++], sizeof written[0], "%s", name);
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    return write_bytes(name, text, strlen(text));
}

/* Load text written to name; return the error message ("" on success). */
static const char *load_err(const char *name, const char *text)
{
    static char err[1024];
    nsc_config cfg;

    err[0] = '\0';
    if (config_load(&cfg, write_text(name, text), err, sizeof err) == 0)
        snprintf(err, sizeof err, "(loaded)");
    return err;
}

/* "DIR/name:LINE: rest", the expected message. */
static const char *want(const char *name, int line, const char *rest)
{
    static char w[4][1400];
    static int next;
    char *p = w[next++ % 4];

    snprintf(p, sizeof w[0], "%s:%d: %s", tpath(name), line, rest);
    return p;
}

static int same_config(const nsc_config *a, const nsc_config *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

/* 1. Built-in defaults. */
static void test_defaults(void)
{
    nsc_config c;

    config_defaults(&c);
    CHECK_STR(c.source, "");
    CHECK_STR(c.database, "nscollect.db");
    CHECK_STR(c.key_file, "");
    CHECK_STR(c.output_dir, "nscollect-out");
    CHECK_INT(c.log_level, LOG_INFO);
    CHECK_INT(c.log_format, LOG_FORMAT_KV);
    CHECK_INT(c.fetch_workers, 4);
    CHECK_INT(c.upload_workers, 2);
    CHECK_INT(c.fetch_spare, 4);
    CHECK_INT(c.interval_s, 300);
    CHECK_INT(c.lookback_s, 86400);
    CHECK_INT(c.overlap_s, 120);
    CHECK_INT(c.page_size, 5000);
    CHECK_INT(c.max_records, 0);
    CHECK_INT(c.window_event, 0);
    CHECK_INT(c.slice_s, 3600);
    CHECK_INT(c.batch_max_bytes, 8 << 20);
    CHECK_INT(c.retry_wait_max_s, 5);
    CHECK_INT(c.prune_margin_s, 3600);
    CHECK_INT(c.job_budget_s, 10);
    CHECK_INT(c.requests_per_s, 4);
    CHECK_INT(c.connect_timeout_s, 10);
    CHECK_INT(c.low_speed_time_s, 30);
    CHECK_INT(c.total_timeout_s, 300);
    CHECK_INT(c.max_body_bytes, 128 << 20);
    CHECK_INT(c.max_body_total, 512 << 20);
    CHECK_STR(c.ca_bundle, "");
    CHECK_STR(c.proxy, "");
    CHECK_STR(c.gcs_endpoint, "https://storage.googleapis.com");
    CHECK_STR(c.gcs_credentials, "");
    CHECK_INT(c.gcs_gzip, 0);
    CHECK_STR(c.secops_endpoint, "");
    CHECK_INT(c.secops_max_request_bytes, 1000000);
    CHECK_INT(c.secops_max_entries, 1000);
    CHECK_INT(c.outbox_limit_bytes, 1LL << 30);
}

/* 2. The example file loads to exactly the defaults. */
static void test_example_is_defaults(void)
{
    nsc_config def, c;
    char err[512] = "";

    config_defaults(&def);
    CHECK_INT(config_load(&c, EXAMPLE, err, sizeof err), 0);
    CHECK_STR(err, "");
    CHECK_STR(c.source, EXAMPLE);
    memset(c.source, 0, sizeof c.source);
    CHECK(same_config(&c, &def));
}

/* 3. Every key in the table is set in the example file, in its group. */
static void test_example_documents_every_key(void)
{
    config_t cf;
    FILE *f = fopen(EXAMPLE, "r");
    char text[65536];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;

    if (f)
        fclose(f);
    text[n] = '\0';
    config_init(&cf);
    CHECK_INT(config_read_file(&cf, EXAMPLE), CONFIG_TRUE);
    CHECK_INT(config_key_count(), 39);
    CHECK(config_key_name(config_key_count()) == NULL);
    for (size_t i = 0; i < config_key_count(); i++) {
        const char *k = config_key_name(i), *dot = strrchr(k, '.');
        char assign[128];
        snprintf(assign, sizeof assign, "%s = ", dot ? dot + 1 : k);
        CHECK_HAS(text, assign);
        if (!config_lookup(&cf, k))
            fprintf(stderr, "example file does not set '%s'\n", k);
        CHECK(config_lookup(&cf, k) != NULL);
    }
    config_destroy(&cf);
}

/* 4. A file that overrides keys of every type. */
static void test_override(void)
{
    nsc_config c;
    char err[512] = "";
    const char *p = write_text("good.conf",
        "# comment\n"
        "database = \"/var/lib/nscollect/db\";\n"
        "output_dir = \"/srv/out\";\n"
        "log = { level = \"debug\"; format = \"json\"; };\n"
        "workers: { fetch = 8; upload = 64; };\n"
        "tenant_defaults = {\n"
        "  interval = 1; lookback = 2678400; overlap = 0;\n"
        "  page_size = 10000; max_records = 1000000000; window = \"event\";\n"
        "};\n"
        "fetch = { slice = 60; batch_max_bytes = 65536L; retry_wait_max = 0; prune_margin = 604800; };\n"
        "http = { connect_timeout = 300; max_body = 2147483647; max_body_total = 4294967296; proxy = \"http://127.0.0.1:3128\";\n"
        "         ca_bundle = \"/etc/ssl/x.pem\"; };\n"
        "gcs = { endpoint = \"http://127.0.0.1:4443\"; credentials = \"/k.json\"; gzip = true; };\n"
        "outbox = { limit_bytes = 1099511627776; };\n");

    CHECK_INT(config_load(&c, p, err, sizeof err), 0);
    CHECK_STR(err, "");
    CHECK_STR(c.source, p);
    CHECK_STR(c.database, "/var/lib/nscollect/db");
    CHECK_STR(c.key_file, "");
    CHECK_STR(c.output_dir, "/srv/out");
    CHECK_INT(c.log_level, LOG_DEBUG);
    CHECK_INT(c.log_format, LOG_FORMAT_JSON);
    CHECK_INT(c.fetch_workers, 8);
    CHECK_INT(c.upload_workers, 64);
    CHECK_INT(c.interval_s, 1);
    CHECK_INT(c.lookback_s, 2678400);
    CHECK_INT(c.overlap_s, 0);
    CHECK_INT(c.page_size, 10000);
    CHECK_INT(c.max_records, 1000000000);
    CHECK_INT(c.window_event, 1);
    CHECK_INT(c.slice_s, 60);
    CHECK_INT(c.batch_max_bytes, 65536);
    CHECK_INT(c.retry_wait_max_s, 0);
    CHECK_INT(c.prune_margin_s, 604800);
    CHECK_INT(c.connect_timeout_s, 300);
    CHECK_INT(c.low_speed_time_s, 30);
    CHECK_INT(c.max_body_bytes, 2147483647);
    CHECK_INT(c.max_body_total, 4294967296LL);
    CHECK_STR(c.proxy, "http://127.0.0.1:3128");
    CHECK_STR(c.ca_bundle, "/etc/ssl/x.pem");
    CHECK_STR(c.gcs_endpoint, "http://127.0.0.1:4443");
    CHECK_STR(c.gcs_credentials, "/k.json");
    CHECK_INT(c.gcs_gzip, 1);
    CHECK_INT(c.outbox_limit_bytes, 1LL << 40);
}

/* 5. Plain integers past 32 bits keep their value (libconfig 1.5 would
 * truncate them); strings and comments holding digits are left alone. */
static void test_big_integers(void)
{
    nsc_config c;
    char err[512] = "";
    const char *p = write_text("big.conf",
        "outbox = { limit_bytes = 4296015872; }; # 4 GiB + 1 MiB, 99999999999\n"
        "http = { max_body = 0x7fffffff; max_body_total = 0x80000000; proxy = \"http://h:1/4294967296\"; };\n"
        "/* 99999999999999999999999 */ fetch = { batch_max_bytes = 0x10000L; };\n");

    CHECK_INT(config_load(&c, p, err, sizeof err), 0);
    CHECK_STR(err, "");
    CHECK_INT(c.outbox_limit_bytes, 4296015872LL);
    CHECK_INT(c.max_body_bytes, 2147483647);
    CHECK_STR(c.proxy, "http://h:1/4294967296");
    CHECK_INT(c.batch_max_bytes, 65536);

    CHECK_STR(load_err("big2.conf", "workers = {\n  fetch = 4294967298;\n};\n"),
              want("big2.conf", 2, "workers.fetch: must be between 1 and 64"));
    CHECK_STR(load_err("big3.conf", "http = { max_body = 2147483648; };\n"),
              want("big3.conf", 1, "http.max_body: must be between 1048576 and 2147483647"));
    /* One body must fit the process-wide budget. */
    const char *small = write_text("small.conf", "http = { max_body = 8388608; max_body_total = 4194304; };\n");
    CHECK_INT(config_load(&c, small, err, sizeof err), -1);
    CHECK(strstr(err, "http.max_body_total (4194304) is smaller than http.max_body (8388608)") != NULL);
    CHECK_STR(load_err("big4.conf", "\noutbox = { limit_bytes = 99999999999999999999; };\n"),
              want("big4.conf", 2, "outbox.limit_bytes: must be between 1048576 and 1099511627776"));
    CHECK_STR(load_err("big5.conf", "fetch = {\n slice =\n -0xFFFFFFFFFFFFFFFFFFFFL; };\n"),
              want("big5.conf", 2, "fetch.slice: must be between 60 and 86400"));
    CHECK_STR(load_err("big6.conf", "fetch = { slice = 1e5; };\n"),
              want("big6.conf", 1, "fetch.slice: expected an integer"));
    CHECK_STR(load_err("neg.conf", "tenant_defaults = { overlap = -1; };\n"),
              want("neg.conf", 1, "tenant_defaults.overlap: must be between 0 and 86400"));
}

/* 6. Unknown keys name file, line and key, with a suggestion when close. */
static void test_unknown_keys(void)
{
    CHECK_STR(load_err("u1.conf", "workers = {\n  fetch = 2;\n  fecth = 4;\n};\n"),
              want("u1.conf", 3, "workers.fecth: unknown key, did you mean 'workers.fetch'?"));
    CHECK_STR(load_err("u2.conf", "databse = \"x.db\";\n"),
              want("u2.conf", 1, "databse: unknown key, did you mean 'database'?"));
    CHECK_STR(load_err("u3.conf", "# x\nhttp = {\n  colour = \"blue\";\n};\n"),
              want("u3.conf", 3, "http.colour: unknown key "
                   "(etc/nscollect.conf.example lists every key)"));
    CHECK_STR(load_err("u4.conf", "wrokers = { fetch = 2; };\n"),
              want("u4.conf", 1, "wrokers: unknown key, did you mean 'workers'?"));
    CHECK_STR(load_err("u5.conf", "interval = 60;\n"),
              want("u5.conf", 1, "interval: unknown key, did you mean 'tenant_defaults.interval'?"));
    CHECK_STR(load_err("u6.conf", "fetch = { slice = 60; upload = 3; };\n"),
              want("u6.conf", 1, "fetch.upload: unknown key, did you mean 'workers.upload'?"));
    CHECK_STR(load_err("u7.conf", "log = { level = { x = 1; }; };\n"),
              want("u7.conf", 1, "log.level: expected a string, one of: debug, info, warn, error"));
}

/* 7. Wrong types. */
static void test_wrong_types(void)
{
    CHECK_STR(load_err("t1.conf", "workers = {\n  fetch = \"4\";\n};\n"),
              want("t1.conf", 2, "workers.fetch: expected an integer"));
    CHECK_STR(load_err("t2.conf", "fetch = { slice = 60.5; };\n"),
              want("t2.conf", 1, "fetch.slice: expected an integer"));
    CHECK_STR(load_err("t3.conf", "gcs = { gzip = 1; };\n"),
              want("t3.conf", 1, "gcs.gzip: expected true or false"));
    CHECK_STR(load_err("t4.conf", "database = 5;\n"),
              want("t4.conf", 1, "database: expected a string"));
    CHECK_STR(load_err("t5.conf", "log = \"debug\";\n"),
              want("t5.conf", 1, "log: expected a group: log = { ... };"));
    CHECK_STR(load_err("t6.conf", "http = { proxy = [\"a\"]; };\n"),
              want("t6.conf", 1, "http.proxy: expected a string"));
}

/* 8. Values out of range, bad enums, bad strings. */
static void test_bad_values(void)
{
    char big[CONFIG_PATH_MAX + 64];

    CHECK_STR(load_err("r1.conf", "tenant_defaults = {\n  page_size = 20000;\n};\n"),
              want("r1.conf", 2, "tenant_defaults.page_size: must be between 1 and 10000"));
    CHECK_STR(load_err("r2.conf", "workers = { upload = 0; };\n"),
              want("r2.conf", 1, "workers.upload: must be between 1 and 64"));
    CHECK_STR(load_err("r3.conf", "fetch = { batch_max_bytes = 1024; };\n"),
              want("r3.conf", 1, "fetch.batch_max_bytes: must be between 65536 and 1073741824"));
    CHECK_STR(load_err("e1.conf", "\n\ntenant_defaults = { window = \"ingest\"; };\n"),
              want("e1.conf", 3, "tenant_defaults.window: must be one of: insertion, event"));
    CHECK_STR(load_err("e2.conf", "log = { level = \"INFO\"; };\n"),
              want("e2.conf", 1, "log.level: must be one of: debug, info, warn, error"));
    CHECK_STR(load_err("e3.conf", "log = { format = 1; };\n"),
              want("e3.conf", 1, "log.format: expected a string, one of: kv, json"));
    CHECK_STR(load_err("s1.conf", "database = \"\";\n"),
              want("s1.conf", 1, "database: must not be empty"));
    snprintf(big, sizeof big, "key_file = \"%0*d\";\n", CONFIG_PATH_MAX, 0);
    CHECK_STR(load_err("s2.conf", big), want("s2.conf", 1, "key_file: is longer than 1023 bytes"));
    snprintf(big, sizeof big, "key_file = \"%0*d\";\n", CONFIG_PATH_MAX - 1, 0);
    CHECK_STR(load_err("s3.conf", big), "(loaded)");
}

/* 9. Syntax errors come from libconfig with file and line. */
static void test_syntax_errors(void)
{
    CHECK_STR(load_err("x1.conf", "workers = { fetch = 2; };\nhttp = { proxy = ; };\n"),
              want("x1.conf", 2, "syntax error"));
    CHECK_STR(load_err("x2.conf", "database = \"a\";\n\ndatabase = \"b\";\n"),
              want("x2.conf", 3, "duplicate setting name"));
    CHECK_STR(load_err("x3.conf", "log { level = \"info\"; };\n"),
              want("x3.conf", 1, "syntax error"));
}

/* 10. The file itself: missing, a directory, empty, binary, too large. */
static void test_bad_files(void)
{
    char err[1024], w[1400];
    nsc_config c;
    char *huge;

    CHECK_INT(config_load(&c, tpath("missing.conf"), err, sizeof err), -1);
    snprintf(w, sizeof w, "cannot read config file '%s': No such file or directory", tpath("missing.conf"));
    CHECK_STR(err, w);

    CHECK_INT(config_load(&c, tmpdir, err, sizeof err), -1);
    snprintf(w, sizeof w, "cannot read config file '%s': Is a directory", tmpdir);
    CHECK_STR(err, w);

    snprintf(w, sizeof w, "config file '%s' is empty", tpath("empty.conf"));
    CHECK_STR(load_err("empty.conf", ""), w);
    snprintf(w, sizeof w, "config file '%s' is empty", tpath("blank.conf"));
    CHECK_STR(load_err("blank.conf", " \n\t\n"), w);
    CHECK_STR(load_err("comment.conf", "# only a comment\n"), "(loaded)");

    CHECK_INT(config_load(&c, write_bytes("bin.conf", "database = \"a\";\n\0\x01\x02", 19),
                          err, sizeof err), -1);
    snprintf(w, sizeof w, "config file '%s' is not a text file (byte 0x00 on line 2)", tpath("bin.conf"));
    CHECK_STR(err, w);

    huge = malloc((1 << 20) + 2);
    memset(huge, '#', (1 << 20) + 1);
    for (size_t i = 63; i < (1 << 20) + 1; i += 64)
        huge[i] = '\n';
    huge[(1 << 20) + 1] = '\0';
    snprintf(w, sizeof w, "config file '%s' is larger than 1 MiB", tpath("huge.conf"));
    CHECK_STR(load_err("huge.conf", huge), w);
    huge[1 << 20] = '\0';
    CHECK_STR(load_err("huge.conf", huge), "(loaded)");
    free(huge);
}

/* 11. A failed load leaves the caller's config as it was (SIGHUP reload). */
static void test_failure_keeps_config(void)
{
    nsc_config c, before;
    char err[512];

    config_defaults(&c);
    c.fetch_workers = 7;
    memcpy(&before, &c, sizeof c);
    CHECK_INT(config_load(&c, write_text("half.conf", "workers = { upload = 5; fetch = 0; };\n"),
                          err, sizeof err), -1);
    CHECK(same_config(&c, &before));
    CHECK_INT(config_load(&c, tpath("nope.conf"), NULL, 0), -1);
}

/* 12. @include is refused with file:line (libconfig 1.5 exits the whole
 * process when the included name is a directory: found by fuzz_config),
 * but "@include" inside a string or a comment is just text. */
static void test_include(void)
{
    nsc_config c;
    char err[512] = "", want[1024];

    config_defaults(&c);
    CHECK_INT(config_load(&c, write_text("inc.conf", "# settings\n@include \"\"\n"), err,
                          sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: @include is not supported: put every setting in this file",
             tpath("inc.conf"));
    CHECK_STR(err, want);
    CHECK_INT(config_load(&c, write_text("inc2.conf", "# @include \"x\"\n"
                                         "http = { proxy = \"@include\"; };\n"), err, sizeof err), 0);
    CHECK_STR(c.proxy, "@include");
}

/* 13. config_resolve: argument, then $NSCOLLECT_CONFIG, then defaults. */
static void test_resolve(void)
{
    nsc_config c, def;
    char err[512] = "", w[1400];
    const char *a = write_text("env-a.conf", "workers = { fetch = 3; };\n");
    const char *b = write_text("env-b.conf", "workers = { fetch = 4; };\n");
    char bpath[1200];

    snprintf(bpath, sizeof bpath, "%s", b);
    config_defaults(&def);
    unsetenv("NSCOLLECT_CONFIG");
    CHECK_INT(config_resolve(&c, NULL, err, sizeof err), 0);
    CHECK(same_config(&c, &def));
    setenv("NSCOLLECT_CONFIG", "", 1);
    CHECK_INT(config_resolve(&c, NULL, err, sizeof err), 0);
    CHECK_STR(c.source, "");
    setenv("NSCOLLECT_CONFIG", bpath, 1);
    CHECK_INT(config_resolve(&c, NULL, err, sizeof err), 0);
    CHECK_STR(c.source, bpath);
    CHECK_INT(c.fetch_workers, 4);
    CHECK_INT(config_resolve(&c, a, err, sizeof err), 0);
    CHECK_INT(c.fetch_workers, 3);
    CHECK_INT(config_resolve(&c, "", err, sizeof err), 0);
    CHECK_INT(c.fetch_workers, 4);
    setenv("NSCOLLECT_CONFIG", tpath("absent.conf"), 1);
    CHECK_INT(config_resolve(&c, NULL, err, sizeof err), -1);
    snprintf(w, sizeof w, "cannot read config file '%s': No such file or directory", tpath("absent.conf"));
    CHECK_STR(err, w);
    unsetenv("NSCOLLECT_CONFIG");
}

static void cleanup(void)
{
    for (int i = 0; i < nwritten; i++)
        unlink(tpath(written[i]));
    rmdir(tmpdir);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_defaults();
    test_example_is_defaults();
    test_example_documents_every_key();
    test_override();
    test_big_integers();
    test_unknown_keys();
    test_wrong_types();
    test_bad_values();
    test_syntax_errors();
    test_bad_files();
    test_failure_keeps_config();
    test_include();
    test_resolve();
    cleanup();
    CHECK_DONE();
}
