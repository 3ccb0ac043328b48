/* fuzz_config.c - libFuzzer target for config_load() (src/config.c).
 *
 * Each input is written to one file in a private directory (made once per
 * process with mkdtemp, removed at exit) and loaded over the defaults.
 * Checked, with __builtin_trap() on violation:
 *   - a failed load leaves a NUL-terminated message in err that names the
 *     file;
 *   - a successful load names the file in cfg.source and every value lies
 *     within the bounds config.h and etc/nscollect.conf.example document.
 *
 * Found and fixed: an @include of a directory ("", ".", "/") made libconfig
 * 1.5's scanner call exit(2); config.c now refuses @include (reproducers in
 * tests/fuzz/regress/config/, replayed by run.sh before each run).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5 (Debian's) leaks the string of a string token its parser
 * discards on a syntax error: the 2-byte file `""` leaks 1 byte from
 * libconfig_yylex. Not ours to fix; config.c's own leaks still count. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define IN(v, lo, hi) ((v) >= (lo) && (v) <= (hi))

#define DAY 86400
#define MIB (1024LL * 1024)

static char dir[256], path[300];

static void cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/nscfuzz.XXXXXX",
             tmp && tmp[0] && strlen(tmp) < 200 ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/fuzz.conf", dir);
    atexit(cleanup);
}

static void write_input(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t done = 0;
    if (fd < 0)
        abort();
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            abort();
        done += (size_t)n;
    }
    close(fd);
}

static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_strings(const nsc_config *c)
{
    CHECK(terminated(c->database, CONFIG_PATH_MAX) && c->database[0]);
    CHECK(terminated(c->output_dir, CONFIG_PATH_MAX) && c->output_dir[0]);
    CHECK(terminated(c->gcs_endpoint, CONFIG_PATH_MAX) && c->gcs_endpoint[0]);
    CHECK(terminated(c->key_file, CONFIG_PATH_MAX));
    CHECK(terminated(c->ca_bundle, CONFIG_PATH_MAX));
    CHECK(terminated(c->proxy, CONFIG_PATH_MAX));
    CHECK(terminated(c->gcs_credentials, CONFIG_PATH_MAX));
    CHECK(strcmp(c->source, path) == 0);
}

static void check_bounds(const nsc_config *c)
{
    CHECK(IN(c->log_level, 0, 3) && IN(c->log_format, 0, 1));
    CHECK(IN(c->fetch_workers, 1, 64) && IN(c->upload_workers, 1, 64));
    CHECK(IN(c->interval_s, 1, DAY) && IN(c->lookback_s, 60, 31 * DAY));
    CHECK(IN(c->overlap_s, 0, DAY) && IN(c->page_size, 1, 10000));
    CHECK(IN(c->max_records, 0, 1000000000) && IN(c->window_event, 0, 1));
    CHECK(IN(c->slice_s, 60, DAY) && IN(c->batch_max_bytes, 64 * 1024, 1024 * MIB));
    CHECK(IN(c->retry_wait_max_s, 0, 3600) && IN(c->prune_margin_s, 0, 7 * DAY));
    CHECK(IN(c->connect_timeout_s, 1, 300) && IN(c->low_speed_time_s, 1, 3600));
    CHECK(IN(c->total_timeout_s, 1, DAY));
    CHECK(IN(c->max_body_bytes, MIB, 2048 * MIB - 1));
    CHECK(IN(c->outbox_limit_bytes, MIB, 1024 * 1024 * MIB) && IN(c->gcs_gzip, 0, 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static nsc_config cfg;
    char err[2048];
    if (!path[0])
        setup();
    write_input(data, size);
    memset(err, 'X', sizeof err);
    if (config_load(&cfg, path, err, sizeof err) == 0) {
        check_strings(&cfg);
        check_bounds(&cfg);
        return 0;
    }
    CHECK(terminated(err, sizeof err) && err[0]);
    CHECK(strstr(err, path) != NULL);
    return 0;
}
