/* shard.c - tenant name -> shard: SHA-256, then jump consistent hash. */
#include "daemon/shard.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/util.h"

int shard_parse(const char *text, shard *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long k = strtol(text, &end, 10);
    int ok = end != text && *end == '/' && errno == 0;
    const char *ns = ok ? end + 1 : "";
    long n = ok ? strtol(ns, &end, 10) : 0;
    ok = ok && end != ns && *end == '\0' && errno == 0 && text[0] != '-' && ns[0] != '-';
    if (!ok || n < 1 || n > SHARD_MAX || k < 0 || k >= n)
        return seterr(err, errlen, "'%.40s' is not a shard K/N with 0 <= K < N <= %d "
                      "(e.g. 0/3 for the first of three)", text, SHARD_MAX);
    out->k = (int)k;
    out->n = (int)n;
    return 0;
}

/* Lamping and Veach's jump consistent hash: the bucket key lands in when
 * it jumps forward through 0..n-1 by a pseudo-random sequence seeded by key. */
static int jump_hash(uint64_t key, int n)
{
    int64_t b = -1, j = 0;
    while (j < n) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
    }
    return (int)b;
}

int shard_of(const char *name, int n)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)name, strlen(name), md);
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = h << 8 | md[i];
    return jump_hash(h, n);
}

int shard_owns(const shard *s, const char *name)
{
    return s->n == 0 || shard_of(name, s->n) == s->k;
}
