/* sa_key.c - see sa_key.h. */
#include "google/sa_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/http_share.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "google/jwt.h"

#define KEY_FILE_MAX (64 * 1024)


static int key_file_read(const char *path, char **text, size_t *n, char *err, size_t errlen)
{
    int rc = -1, fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *text = NULL;
    if (fd < 0 || fstat(fd, &st) < 0) {
        seterr(err, errlen, "cannot read key file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
        seterr(err, errlen, "key file '%s' is not a regular file of at most %d bytes",
             path, KEY_FILE_MAX);
        goto out;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH))
        log_warn("key file '%s' is readable by group or others; run: chmod 600 '%s'", path, path);
    if (!(*text = malloc((size_t)st.st_size + 1))) {
        seterr(err, errlen, "cannot read key file '%s': out of memory", path);
        goto out;
    }
    *n = 0;
    for (ssize_t got = 1; got > 0 && *n < (size_t)st.st_size; *n += (size_t)got) {
        got = read(fd, *text + *n, (size_t)st.st_size - *n);
        if (got < 0) {
            seterr(err, errlen, "cannot read key file '%s': %s", path, strerror(errno));
            goto out;
        }
    }
    (*text)[*n] = '\0';
    rc = 0;
out:
    if (rc < 0 && *text) {
        OPENSSL_cleanse(*text, *n);
        free(*text);
        *text = NULL;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Copy a required string field of the key file into *out. */
static int key_field(const json_doc *d, const char *path, const char *key, char **out,
                     char *err, size_t errlen)
{
    *out = json_get_string(d, 0, key);
    if (!*out || !**out)
        return seterr(err, errlen, "key file '%s' has no '%s' string", path, key);
    return 0;
}

static int key_type_check(const json_doc *d, const char *path, char *err, size_t errlen)
{
    char *type = json_get_string(d, 0, "type");
    int rc = 0;
    if (!type)
        rc = seterr(err, errlen, "key file '%s' has no 'type': expected a service account key", path);
    else if (strcmp(type, "service_account") != 0)
        rc = seterr(err, errlen, "key file '%s' has type '%.64s': only service_account keys "
                  "are supported", path, type);
    free(type);
    return rc;
}

static int key_token_uri(sa_key *k, const json_doc *d, const char *path, char *err, size_t errlen)
{
    char why[512];
    k->token_uri = json_get_string(d, 0, "token_uri");
    if (!k->token_uri)
        k->token_uri = strdup(SA_KEY_DEFAULT_TOKEN_URI);
    if (!k->token_uri)
        return seterr(err, errlen, "out of memory");
    if (http_url_check(k->token_uri, NULL, why, sizeof why) < 0)
        return seterr(err, errlen, "key file '%s': token_uri %s", path, why);
    return 0;
}

static int key_private_key(sa_key *k, const json_doc *d, const char *path, char *err,
                           size_t errlen)
{
    char *pem = NULL;
    if (key_field(d, path, "private_key", &pem, err, errlen) < 0) {
        free_secret(pem);
        return -1;
    }
    k->pkey = jwt_pem_key(pem);
    free_secret(pem);
    if (!k->pkey)
        return seterr(err, errlen, "key file '%s': private_key is not a valid PEM RSA private key",
                    path);
    return 0;
}

int sa_key_load(sa_key *k, const char *path, char *err, size_t errlen)
{
    int rc = -1;
    char *text = NULL;
    size_t n = 0;
    json_doc d = {0};
    if (key_file_read(path, &text, &n, err, errlen) < 0)
        goto out;
    if (json_parse(&d, text, n) < 0) {
        seterr(err, errlen, "key file '%s' is not a JSON object", path);
        goto out;
    }
    if (key_type_check(&d, path, err, errlen) < 0 ||
        key_field(&d, path, "client_email", &k->email, err, errlen) < 0 ||
        key_private_key(k, &d, path, err, errlen) < 0 ||
        key_token_uri(k, &d, path, err, errlen) < 0)
        goto out;
    k->kid = json_get_string(&d, 0, "private_key_id");
    rc = 0;
out:
    if (rc < 0)
        sa_key_clear(k);
    json_release(&d);
    if (text) {
        OPENSSL_cleanse(text, n);
        free(text);
    }
    return rc;
}

void sa_key_clear(sa_key *k)
{
    EVP_PKEY_free(k->pkey);
    free(k->email);
    free(k->kid);
    free(k->token_uri);
    *k = (sa_key){0};
}
