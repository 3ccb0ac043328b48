/* jwt.c - see jwt.h. Base64 is OpenSSL's (EVP_EncodeBlock), mapped to the
 * URL alphabet; the signature is EVP_DigestSign with SHA-256. */
#include "google/jwt.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "base/buf.h"
#include "base/util.h"

size_t jwt_b64url(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return (size_t)len;
}

static int buf_append_b64url(buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, 4 * ((n + 2) / 3)) < 0)
        return -1;
    b->len += jwt_b64url(p, n, b->data + b->len);
    return 0;
}

/* Append s as a JSON string literal. */
static int buf_append_json_str(buf *b, const char *s)
{
    int rc = buf_append_char(b, '"');
    for (; *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            rc = buf_printf(b, "\\u%04x", c);
        else
            rc = buf_append_char(b, (char)c);
    }
    return rc ? rc : buf_append_char(b, '"');
}

static int jwt_header(buf *b, const char *kid)
{
    int rc = buf_append_str(b, "{\"alg\":\"RS256\",\"typ\":\"JWT\"");
    if (kid && *kid) {
        rc |= buf_append_str(b, ",\"kid\":");
        rc |= buf_append_json_str(b, kid);
    }
    return rc | buf_append_char(b, '}');
}

static int jwt_claims(buf *b, const char *iss, const char *scope, const char *aud,
                      long long iat)
{
    int rc = buf_append_str(b, "{\"iss\":");
    rc |= buf_append_json_str(b, iss);
    rc |= buf_append_str(b, ",\"scope\":");
    rc |= buf_append_json_str(b, scope);
    rc |= buf_append_str(b, ",\"aud\":");
    rc |= buf_append_json_str(b, aud);
    rc |= buf_printf(b, ",\"iat\":%lld,\"exp\":%lld}", iat, iat + JWT_LIFETIME_S);
    return rc;
}

/* RSA PKCS#1 v1.5 signature over SHA-256 of data; *sig malloc'd. */
static int rs256_sign(EVP_PKEY *pk, const char *data, size_t n, unsigned char **sig,
                      size_t *siglen)
{
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    *sig = NULL;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk) != 1 ||
        EVP_DigestSign(ctx, NULL, siglen, (const unsigned char *)data, n) != 1)
        goto out;
    *sig = malloc(*siglen);
    if (!*sig || EVP_DigestSign(ctx, *sig, siglen, (const unsigned char *)data, n) != 1)
        goto out;
    rc = 0;
out:
    if (rc < 0) {
        free(*sig);
        *sig = NULL;
        ERR_clear_error();
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

int jwt_sign(EVP_PKEY *pk, const char *kid, const char *iss, const char *scope,
             const char *aud, long long iat, char **jwt, char *err, size_t errlen)
{
    int rc = -1;
    const char *why = "out of memory";
    buf part, out;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    buf_init(&part, 0);
    buf_init(&out, 0);
    *jwt = NULL;
    if (jwt_header(&part, kid) || buf_append_b64url(&out, part.data, part.len) ||
        buf_append_char(&out, '.'))
        goto out;
    buf_reset(&part);
    if (jwt_claims(&part, iss, scope, aud, iat) || buf_append_b64url(&out, part.data, part.len))
        goto out;
    if (rs256_sign(pk, out.data, out.len, &sig, &siglen) < 0) {
        why = "the service account's key cannot sign";
        goto out;
    }
    if (buf_append_char(&out, '.') || buf_append_b64url(&out, sig, siglen))
        goto out;
    *jwt = buf_detach(&out, NULL);
    rc = 0;
out:
    if (rc < 0)
        seterr(err, errlen, "cannot build the token request: %s", why);
    free(sig);
    buf_release(&part);
    buf_wipe(&out);
    return rc;
}

/* Never prompt for a passphrase: an encrypted key is an error. */
static int no_passphrase(char *b, int size, int rwflag, void *u)
{
    (void)b, (void)size, (void)rwflag, (void)u;
    return 0;
}

EVP_PKEY *jwt_pem_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (pk && EVP_PKEY_base_id(pk) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    if (!pk)
        ERR_clear_error();
    return pk;
}

int jwt_make(const char *pem, const char *kid, const char *iss, const char *scope,
             const char *aud, long long iat, char **jwt, char *err, size_t errlen)
{
    EVP_PKEY *pk = jwt_pem_key(pem);
    if (!pk)
        return seterr(err, errlen, "private key is not a valid PEM RSA private key");
    int rc = jwt_sign(pk, kid, iss, scope, aud, iat, jwt, err, errlen);
    EVP_PKEY_free(pk);
    return rc;
}
