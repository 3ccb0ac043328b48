/* test_secret.c - sealing round trips, tampering, key files, fingerprints. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "base/log.h"
#include "daemon/secret.h"

static char dir[] = "/tmp/nsc_test_secret_XXXXXX";

static void path_in_dir(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        perror(path);
    if (fd >= 0)
        close(fd);
    chmod(path, mode);
}

static void read_file(const char *path, char *out, size_t outlen)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* 1.x: seal then open gives the same bytes back. */
static void test_round_trip(const secret_key *key)
{
    const char *token = "abc123-the-netskope-token";
    unsigned char *sealed = NULL;
    size_t sealed_len = 0;
    char *plain = NULL;
    size_t plain_len = 0;
    char err[256] = "";

    CHECK_INT(secret_seal(key, 7, token, strlen(token), &sealed, &sealed_len), 0);
    CHECK_INT(sealed_len, 2 + 12 + strlen(token) + 16);
    CHECK(memcmp(sealed, "v1", 2) == 0);
    CHECK(memmem(sealed, sealed_len, token, strlen(token)) == NULL);
    CHECK_INT(secret_open(key, 7, sealed, sealed_len, &plain, &plain_len, err, sizeof err), 0);
    CHECK_INT(plain_len, strlen(token));
    CHECK_STR(plain, token);
    secret_wipe(plain, plain_len);
    free(plain);
    free(sealed);

    /* 1.2: an empty token survives too. */
    CHECK_INT(secret_seal(key, 7, "", 0, &sealed, &sealed_len), 0);
    CHECK_INT(secret_open(key, 7, sealed, sealed_len, &plain, &plain_len, err, sizeof err), 0);
    CHECK_INT(plain_len, 0);
    CHECK_STR(plain, "");
    free(plain);
    free(sealed);
}

/* 2.x: two seals of one token differ (fresh nonce), both open. */
static void test_nonce_differs(const secret_key *key)
{
    unsigned char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    CHECK_INT(secret_seal(key, 1, "same", 4, &a, &alen), 0);
    CHECK_INT(secret_seal(key, 1, "same", 4, &b, &blen), 0);
    CHECK_INT(alen, blen);
    CHECK(memcmp(a + 2, b + 2, 12) != 0);
    CHECK(memcmp(a, b, alen) != 0);
    free(a);
    free(b);
}

/* Open sealed with key/tenant and expect the "wrong key" failure. */
static void expect_open_fails(const secret_key *key, int64_t tenant, const unsigned char *sealed,
                              size_t len, const char *want)
{
    char *plain = (char *)"untouched";
    size_t plain_len = 99;
    char err[256] = "";
    CHECK_INT(secret_open(key, tenant, sealed, len, &plain, &plain_len, err, sizeof err), -1);
    CHECK(plain == NULL);
    CHECK_INT(plain_len, 0);
    CHECK_HAS(err, want);
}

/* 3.x: wrong tenant, wrong key, tampered bytes, truncated value all fail. */
static void test_open_failures(const secret_key *key)
{
    const char *wrong = "cannot decrypt the stored token (wrong key file?)";
    unsigned char *sealed = NULL;
    size_t len = 0;
    secret_key other;
    CHECK_INT(secret_seal(key, 42, "tok", 3, &sealed, &len), 0);

    expect_open_fails(key, 43, sealed, len, wrong);
    expect_open_fails(key, -42, sealed, len, wrong);
    CHECK_INT(secret_key_generate(&other), 0);
    expect_open_fails(&other, 42, sealed, len, wrong);

    for (size_t i = 2; i < len; i++) {      /* every byte of nonce, ciphertext, tag */
        sealed[i] ^= 0x01;
        expect_open_fails(key, 42, sealed, len, wrong);
        sealed[i] ^= 0x01;
    }
    sealed[0] = 'v';
    sealed[1] = '2';
    expect_open_fails(key, 42, sealed, len, "not a sealed v1 value");
    expect_open_fails(key, 42, sealed, 10, "not a sealed v1 value");
    expect_open_fails(key, 42, NULL, 0, "not a sealed v1 value");
    free(sealed);
}

/* 4.x: create makes a 0600 file of 64 hex + newline, refuses to overwrite. */
static void test_key_create(void)
{
    char path[512], text[256], err[512] = "";
    struct stat st;
    secret_key a, b;
    path_in_dir(path, sizeof path, "new.key");

    CHECK_INT(secret_key_create(path, err, sizeof err), 0);
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    CHECK_INT(st.st_size, 65);
    read_file(path, text, sizeof text);
    CHECK_INT(strspn(text, "0123456789abcdef"), 64);
    CHECK_INT(text[64], '\n');

    CHECK_INT(secret_key_create(path, err, sizeof err), -1);
    CHECK_HAS(err, path);
    CHECK_HAS(err, "already exists");
    char again[256];
    read_file(path, again, sizeof again);
    CHECK_STR(again, text);

    CHECK_INT(secret_key_load(&a, path, err, sizeof err), 0);
    CHECK_INT(secret_key_load(&b, path, err, sizeof err), 0);
    CHECK(memcmp(a.k, b.k, sizeof a.k) == 0);

    char nodir[512];
    path_in_dir(nodir, sizeof nodir, "missing/sub/x.key");
    CHECK_INT(secret_key_create(nodir, err, sizeof err), -1);
    CHECK_HAS(err, nodir);
}

/* Load path and expect a failure whose message contains want and the path. */
static void expect_load_fails(const char *path, const char *want)
{
    secret_key key;
    char err[512] = "";
    CHECK_INT(secret_key_load(&key, path, err, sizeof err), -1);
    CHECK_HAS(err, path);
    CHECK_HAS(err, want);
}

/* 5.x: load errors name the file and what is wrong. */
static void test_key_load_errors(void)
{
    char path[512], msg[640];
    const char *invalid = "is not a valid nscollect key (expected 64 hex characters)";

    path_in_dir(path, sizeof path, "absent.key");
    expect_load_fails(path, "does not exist: `nscollect init` made it");

    expect_load_fails(dir, "is a directory");

    path_in_dir(path, sizeof path, "short.key");
    write_file(path, "abcdef\n", 0600);
    expect_load_fails(path, invalid);
    snprintf(msg, sizeof msg, "key file '%s' %s", path, invalid);
    expect_load_fails(path, msg);

    path_in_dir(path, sizeof path, "nothex.key");
    write_file(path, "zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 0600);
    expect_load_fails(path, invalid);

    path_in_dir(path, sizeof path, "long.key");
    write_file(path, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef00\n", 0600);
    expect_load_fails(path, invalid);

    path_in_dir(path, sizeof path, "empty.key");
    write_file(path, "", 0600);
    expect_load_fails(path, invalid);
}

/* Load path with stderr sent to a file; the log output lands in logged. */
static int load_logged(secret_key *key, const char *path, char *logged, size_t cap)
{
    char logpath[512], err[512] = "";
    path_in_dir(logpath, sizeof logpath, "stderr.log");
    int saved = dup(STDERR_FILENO);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, STDERR_FILENO);
    close(fd);
    log_setup(LOG_WARN, LOG_FORMAT_KV);
    int rc = secret_key_load(key, path, err, sizeof err);
    log_setup(LOG_ERROR, LOG_FORMAT_KV);
    dup2(saved, STDERR_FILENO);
    close(saved);
    read_file(logpath, logged, cap);
    return rc;
}

/* 6.x: a hand-written key (upper case, CRLF) loads; group-readable only warns. */
static void test_key_load_lenient(void)
{
    char path[512], logged[1024];
    secret_key key;
    path_in_dir(path, sizeof path, "upper.key");
    write_file(path, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\r\n", 0644);
    CHECK_INT(load_logged(&key, path, logged, sizeof logged), 0);
    CHECK_INT(key.k[0], 0x00);
    CHECK_INT(key.k[10], 0x0a);
    CHECK_INT(key.k[31], 0x1f);
    CHECK_HAS(logged, "level=warn");
    CHECK_HAS(logged, path);
    CHECK_HAS(logged, "accessible by group or others (mode 0644)");
    CHECK(strstr(logged, "0a0b0c") == NULL && strstr(logged, "0A0B0C") == NULL);

    chmod(path, 0600);
    CHECK_INT(load_logged(&key, path, logged, sizeof logged), 0);
    CHECK_STR(logged, "");
}

/* 7.x: save replaces atomically with mode 0600 and loads back the same key. */
static void test_key_save(const secret_key *key)
{
    char path[512], err[512] = "";
    struct stat st;
    secret_key back;
    path_in_dir(path, sizeof path, "saved.key");
    write_file(path, "old content\n", 0644);

    CHECK_INT(secret_key_save(key, path, err, sizeof err), 0);
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    CHECK_INT(secret_key_load(&back, path, err, sizeof err), 0);
    CHECK(memcmp(back.k, key->k, sizeof back.k) == 0);

    char nodir[512];
    path_in_dir(nodir, sizeof nodir, "missing/x.key");
    CHECK_INT(secret_key_save(key, nodir, err, sizeof err), -1);
    CHECK_HAS(err, nodir);
}

/* 8.x: fingerprint is "sha256:" + the first 8 hex digits of SHA-256. */
static void test_fingerprint(void)
{
    char fp[32];
    secret_fingerprint("abc", 3, fp, sizeof fp);       /* sha256("abc") = ba7816bf... */
    CHECK_STR(fp, "sha256:ba7816bf");
    secret_fingerprint("", 0, fp, sizeof fp);          /* sha256("") = e3b0c442... */
    CHECK_STR(fp, "sha256:e3b0c442");
    char small[8];
    secret_fingerprint("abc", 3, small, sizeof small);
    CHECK_STR(small, "sha256:");
}

/* 9.x: secret_wipe zeroes. */
static void test_wipe(void)
{
    char b[8] = "secret!";
    secret_wipe(b, sizeof b);
    for (size_t i = 0; i < sizeof b; i++)
        CHECK_INT(b[i], 0);
    secret_wipe(NULL, 0);
}

int main(void)
{
    secret_key key;
    log_setup(LOG_ERROR, LOG_FORMAT_KV);     /* warnings are captured where a test wants them */
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    CHECK_INT(secret_key_generate(&key), 0);
    test_round_trip(&key);
    test_nonce_differs(&key);
    test_open_failures(&key);
    test_key_create();
    test_key_load_errors();
    test_key_load_lenient();
    test_key_save(&key);
    test_fingerprint();
    test_wipe();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    CHECK_DONE();
}
