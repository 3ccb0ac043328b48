/* secret.c - see secret.h. AES-256-GCM through OpenSSL EVP; key files are
 * 64 hex characters and a newline so an operator can back them up as text. */
#include "daemon/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "base/log.h"
#include "base/util.h"

#define SEAL_MAGIC "v1"
#define SEAL_MAGIC_LEN 2
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_OVERHEAD (SEAL_MAGIC_LEN + SEAL_NONCE_LEN + SEAL_TAG_LEN)
#define KEY_HEX_LEN (2 * SECRET_KEY_LEN)
/* Largest key file content we look at: 64 hex digits plus some whitespace. */
#define KEY_FILE_MAX 128

static const char hex_digits[] = "0123456789abcdef";

/* printf into err and return -1, so error paths are one line. */
void secret_wipe(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

/* ---- hex ---- */

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 0x0f];
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode exactly 2*n hex characters into out; -1 on any non-hex character. */
static int hex_decode(const char *in, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(in[2 * i]), lo = hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* ---- key files ---- */

int secret_key_generate(secret_key *key)
{
    return RAND_bytes(key->k, SECRET_KEY_LEN) == 1 ? 0 : -1;
}

/* Write key as hex + newline to fd and fsync it. errno is kept on failure. */
static int write_key_fd(int fd, const secret_key *key)
{
    char text[KEY_HEX_LEN + 1];
    hex_encode(key->k, SECRET_KEY_LEN, text);
    text[KEY_HEX_LEN] = '\n';
    int rc = write_full(fd, text, sizeof text);
    if (rc == 0)
        rc = fsync(fd);
    int saved = errno;
    secret_wipe(text, sizeof text);
    errno = saved;
    return rc;
}

/* Write key into a file that open(path, flags, 0600) creates. On failure the
 * new file is removed, err names path. */
static int write_new_key_file(const secret_key *key, const char *path, int flags,
                              const char *what, char *err, size_t errlen)
{
    int fd = open(path, flags | O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        return seterr(err, errlen, "%s '%s' already exists; refusing to overwrite it", what, path);
    if (fd < 0)
        return seterr(err, errlen, "cannot create %s '%s': %s", what, path, strerror(errno));
    int rc = write_key_fd(fd, key);
    int saved = errno;
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc < 0) {
        unlink(path);
        return seterr(err, errlen, "cannot write %s '%s': %s", what, path, strerror(saved));
    }
    return 0;
}

int secret_key_create(const char *path, char *err, size_t errlen)
{
    secret_key key;
    int rc = -1;
    if (secret_key_generate(&key) < 0) {
        seterr(err, errlen, "cannot create key file '%s': no random bytes from OpenSSL", path);
        goto out;
    }
    if (write_new_key_file(&key, path, O_EXCL, "key file", err, errlen) < 0)
        goto out;
    (void)fsync_parent(path);
    rc = 0;
out:
    secret_wipe(&key, sizeof key);
    return rc;
}

int secret_key_save(const secret_key *key, const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    unsigned int r = 0;
    (void)RAND_bytes((unsigned char *)&r, sizeof r);
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%08x", path, (long)getpid(), r) >= (int)sizeof tmp)
        return seterr(err, errlen, "key file path '%s' is too long", path);
    if (write_new_key_file(key, tmp, O_EXCL, "temporary key file", err, errlen) < 0)
        return -1;
    if (rename(tmp, path) < 0) {
        int saved = errno;
        unlink(tmp);
        return seterr(err, errlen, "cannot replace key file '%s': %s", path, strerror(saved));
    }
    (void)fsync_parent(path);
    return 0;
}

/* Read at most cap-1 bytes of fd into text (NUL-terminated); the length, or -1. */
static ssize_t read_small(int fd, char *text, size_t cap)
{
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t r = read(fd, text + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    text[n] = '\0';
    return (ssize_t)n;
}

/* Parse key file content: 64 hex digits, optional trailing whitespace. */
static int parse_key_text(secret_key *key, char *text, size_t n)
{
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' ||
                     text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    if (n != KEY_HEX_LEN)
        return -1;
    return hex_decode(text, key->k, SECRET_KEY_LEN);
}

/* Check an open key file is a regular file; warn when others may read it. */
static int check_key_stat(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return seterr(err, errlen, "cannot read key file '%s': %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return seterr(err, errlen, "key file '%s' is a directory, not a key file", path);
    if (!S_ISREG(st.st_mode))
        return seterr(err, errlen, "key file '%s' is not a regular file", path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        log_warn("key file '%s' is accessible by group or others (mode %04o); "
                 "run chmod 600 '%s'", path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

int secret_key_load(secret_key *key, const char *path, char *err, size_t errlen)
{
    char text[KEY_FILE_MAX];
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        seterr(err, errlen, "key file '%s' does not exist: `nscollect init` made it beside the "
               "database; restore it from your backup (the stored tokens cannot be decrypted "
               "without it) or set key_file in the config if it lives elsewhere", path);
        goto out;
    }
    if (fd < 0) {
        seterr(err, errlen, "cannot open key file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (check_key_stat(fd, path, err, errlen) < 0)
        goto out;
    ssize_t n = read_small(fd, text, sizeof text);
    if (n < 0) {
        seterr(err, errlen, "cannot read key file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (parse_key_text(key, text, (size_t)n) < 0) {
        secret_wipe(key, sizeof *key);
        seterr(err, errlen, "key file '%s' is not a valid nscollect key "
             "(expected %d hex characters)", path, KEY_HEX_LEN);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    secret_wipe(text, sizeof text);
    return rc;
}

/* ---- sealing ---- */

/* The associated data: tenant id as 8 bytes, big-endian. */
static void tenant_aad(int64_t tenant_id, unsigned char aad[8])
{
    uint64_t v = (uint64_t)tenant_id;
    for (int i = 7; i >= 0; i--) {
        aad[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* Set up ctx for GCM with key, nonce and the tenant's AAD; enc 1 or 0. */
static int gcm_init(EVP_CIPHER_CTX *ctx, int enc, const secret_key *key,
                    const unsigned char *nonce, int64_t tenant_id)
{
    unsigned char aad[8];
    int outl = 0;
    tenant_aad(tenant_id, aad);
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, key->k, nonce, enc) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &outl, aad, sizeof aad) != 1)
        return -1;
    return 0;
}

/* Run len bytes of in through ctx into out, then finish; out gets len bytes
 * (GCM is a stream mode). */
static int gcm_run(EVP_CIPHER_CTX *ctx, const unsigned char *in, size_t len, unsigned char *out)
{
    int outl = 0, finl = 0;
    if (len > 0 && EVP_CipherUpdate(ctx, out, &outl, in, (int)len) != 1)
        return -1;
    if (EVP_CipherFinal_ex(ctx, out + outl, &finl) != 1)
        return -1;
    return (size_t)outl + (size_t)finl == len ? 0 : -1;
}

int secret_seal(const secret_key *key, int64_t tenant_id, const char *plain,
                size_t plain_len, unsigned char **out, size_t *out_len)
{
    int rc = -1;
    *out = NULL;
    *out_len = 0;
    if (plain_len > (size_t)INT_MAX - SEAL_OVERHEAD)
        return -1;
    size_t total = plain_len + SEAL_OVERHEAD;
    unsigned char *sealed = malloc(total);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!sealed || !ctx)
        goto out;
    unsigned char *nonce = sealed + SEAL_MAGIC_LEN;
    unsigned char *ct = nonce + SEAL_NONCE_LEN;
    memcpy(sealed, SEAL_MAGIC, SEAL_MAGIC_LEN);
    if (RAND_bytes(nonce, SEAL_NONCE_LEN) != 1 || gcm_init(ctx, 1, key, nonce, tenant_id) < 0 ||
        gcm_run(ctx, (const unsigned char *)plain, plain_len, ct) < 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, ct + plain_len) != 1)
        goto out;
    *out = sealed;
    *out_len = total;
    sealed = NULL;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    free(sealed);
    return rc;
}

/* Decrypt and authenticate; plain has room for ct_len bytes. */
static int gcm_open(const secret_key *key, int64_t tenant_id, const unsigned char *sealed,
                    size_t ct_len, unsigned char *plain)
{
    const unsigned char *nonce = sealed + SEAL_MAGIC_LEN;
    const unsigned char *ct = nonce + SEAL_NONCE_LEN;
    unsigned char tag[SEAL_TAG_LEN];
    int rc = -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    memcpy(tag, ct + ct_len, SEAL_TAG_LEN);
    if (!ctx || gcm_init(ctx, 0, key, nonce, tenant_id) < 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1 ||
        gcm_run(ctx, ct, ct_len, plain) < 0)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int secret_open(const secret_key *key, int64_t tenant_id, const unsigned char *sealed,
                size_t sealed_len, char **plain, size_t *plain_len, char *err, size_t errlen)
{
    *plain = NULL;
    *plain_len = 0;
    if (!sealed || sealed_len < SEAL_OVERHEAD || sealed_len > (size_t)INT_MAX ||
        memcmp(sealed, SEAL_MAGIC, SEAL_MAGIC_LEN) != 0)
        return seterr(err, errlen, "cannot decrypt the stored token "
                    "(not a sealed v1 value; damaged database?)");
    size_t ct_len = sealed_len - SEAL_OVERHEAD;
    unsigned char *p = malloc(ct_len + 1);
    if (!p)
        return seterr(err, errlen, "cannot decrypt the stored token: out of memory");
    if (gcm_open(key, tenant_id, sealed, ct_len, p) < 0) {
        secret_wipe(p, ct_len + 1);
        free(p);
        return seterr(err, errlen, "cannot decrypt the stored token (wrong key file?)");
    }
    p[ct_len] = '\0';
    *plain = (char *)p;
    *plain_len = ct_len;
    return 0;
}

void secret_fingerprint(const char *token, size_t len, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[9];
    if (!out || outlen == 0)
        return;
    if (EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 4) {
        snprintf(out, outlen, "sha256:?");
        return;
    }
    hex_encode(md, 4, hex);
    hex[8] = '\0';
    snprintf(out, outlen, "sha256:%s", hex);
    secret_wipe(md, sizeof md);
}
