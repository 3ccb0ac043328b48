/* jwt.h - RS256 JSON Web Tokens for Google's service-account token exchange.
 *
 * Pure computation over OpenSSL: no I/O, no shared state, safe from any
 * thread. The signed assertion is a bearer credential for up to an hour:
 * the caller wipes (OPENSSL_cleanse) and frees it. Errors are returned
 * with a message that never contains key material.
 */
#ifndef NSC_JWT_H
#define NSC_JWT_H

#include <stddef.h>

#include <openssl/evp.h>

/* Lifetime of an assertion: Google accepts at most one hour. */
#define JWT_LIFETIME_S 3600

/* Parse a PEM RSA private key (PKCS#8 or traditional; never prompts for a
 * passphrase). NULL when pem is not one. The caller frees it (EVP_PKEY_free). */
EVP_PKEY *jwt_pem_key(const char *pem);

/* Build the signed JWT: header {"alg":"RS256","typ":"JWT","kid":kid} (kid
 * omitted when NULL or ""), claims {"iss":iss,"scope":scope,"aud":aud,
 * "iat":iat,"exp":iat+JWT_LIFETIME_S}. *jwt is malloc'd. 0, or -1 with err. */
int jwt_sign(EVP_PKEY *key, const char *kid, const char *iss, const char *scope,
             const char *aud, long long iat, char **jwt, char *err, size_t errlen);

/* jwt_sign() with the key given as PEM text (for tests and tools). */
int jwt_make(const char *pem, const char *kid, const char *iss, const char *scope,
             const char *aud, long long iat, char **jwt, char *err, size_t errlen);

/* Unpadded base64url of in[0, n) into out (at least 4*ceil(n/3)+1 bytes),
 * NUL-terminated. Returns the length written. */
size_t jwt_b64url(const unsigned char *in, size_t n, char *out);

#endif
