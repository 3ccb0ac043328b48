/* secret.h - API tokens encrypted at rest.
 *
 * Tokens are sealed with AES-256-GCM (OpenSSL EVP) under a 32-byte key held
 * in a separate key file (mode 0600), a fresh random 12-byte nonce per value,
 * and the tenant id as associated data, so a ciphertext copied to another
 * tenant's row does not open. Stored form: "v1" || nonce || ciphertext || tag.
 * Plaintext tokens live only in memory that the caller wipes with
 * secret_wipe() when done.
 */
#ifndef NSC_SECRET_H
#define NSC_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define SECRET_KEY_LEN 32

typedef struct secret_key {
    unsigned char k[SECRET_KEY_LEN];
} secret_key;

/* Create a new random key file at path (mode 0600, refuses to overwrite).
 * 0, or -1 with err naming the file. */
int secret_key_create(const char *path, char *err, size_t errlen);
/* Load a key file; -1 with err naming the file when missing, unreadable or
 * not a key. A key file readable by group/others is only a logged warning. */
int secret_key_load(secret_key *key, const char *path, char *err, size_t errlen);
/* Generate a new key in memory (rekey). */
int secret_key_generate(secret_key *key);
/* Write key to path atomically (temp, fsync, rename), mode 0600. */
int secret_key_save(const secret_key *key, const char *path, char *err, size_t errlen);

/* Seal plaintext for tenant_id. *out is malloc'd (caller frees). 0 or -1. */
int secret_seal(const secret_key *key, int64_t tenant_id, const char *plain,
                size_t plain_len, unsigned char **out, size_t *out_len);
/* Open a sealed value. *plain is malloc'd, NUL-terminated; the caller
 * secret_wipe()s and frees it. -1 with err when the key is wrong or the
 * value was tampered with ("cannot decrypt the stored token (wrong key file?)"). */
int secret_open(const secret_key *key, int64_t tenant_id, const unsigned char *sealed,
                size_t sealed_len, char **plain, size_t *plain_len, char *err, size_t errlen);

/* Zero memory in a way the compiler cannot drop (OPENSSL_cleanse). */
void secret_wipe(void *p, size_t n);
/* Short, safe fingerprint of a token for display: "sha256:1a2b3c4d". */
void secret_fingerprint(const char *token, size_t len, char *out, size_t outlen);

#endif
