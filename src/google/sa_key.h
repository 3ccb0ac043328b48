/* sa_key.h - a Google service-account key file, read and checked.
 *
 * The file is the JSON `gcloud iam service-accounts keys create` writes
 * (type "service_account", client_email, private_key as PEM with \n
 * escapes, private_key_id, token_uri, and fields not used here). It is read
 * once, its private key parsed at load, so a bad file is reported when a
 * tenant is added or the daemon starts, never at the first upload.
 *
 * An sa_key owns its strings and key; sa_key_clear() frees them and wipes
 * what was secret. Loading is thread-safe; a loaded key is read-only, so
 * threads may share it. Errors name the file and the field, never a value.
 */
#ifndef NSC_SA_KEY_H
#define NSC_SA_KEY_H

#include <stddef.h>

#include <openssl/evp.h>

/* Google's token endpoint, when a key file names none. */
#define SA_KEY_DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"

typedef struct sa_key {
    char *email;        /* client_email: the JWT's iss */
    char *kid;          /* private_key_id, or NULL */
    char *token_uri;    /* https:// (or loopback http://) */
    EVP_PKEY *pkey;     /* the RSA private key */
} sa_key;

/* Read path into *k (which the caller zeroed). -1 with err when the file is
 * missing or unreadable, larger than 64 KiB, not JSON, of a type other than
 * service_account, without client_email or private_key, with a private key
 * that is not PEM RSA, or with a cleartext token_uri. A file readable by
 * group or others is only a warning in the log. On error *k holds nothing. */
int sa_key_load(sa_key *k, const char *path, char *err, size_t errlen);
void sa_key_clear(sa_key *k);

#endif
