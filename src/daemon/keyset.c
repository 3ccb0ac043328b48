/* keyset.c - see keyset.h. Open addressing, linear probing; the keys are
 * already uniform (truncated SHA-256), so their first bytes are the hash. */
#include "daemon/keyset.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char zero[RECORDS_KEY_LEN];

int keyset_init(keyset *ks, size_t max)
{
    memset(ks, 0, sizeof *ks);
    size_t n = 16;
    while (n < 2 * max)
        n *= 2;
    ks->slot = calloc(n, RECORDS_KEY_LEN);
    if (!ks->slot)
        return -1;
    ks->nslots = n;
    ks->max = max;
    return 0;
}

void keyset_release(keyset *ks)
{
    free(ks->slot);
    memset(ks, 0, sizeof *ks);
}

void keyset_reset(keyset *ks)
{
    if (ks->n)
        memset(ks->slot, 0, ks->nslots * RECORDS_KEY_LEN);
    ks->n = 0;
    ks->has_zero = 0;
    ks->seq = 0;
}

static uint64_t first64(const unsigned char *k)
{
    uint64_t v;
    memcpy(&v, k, sizeof v);
    return v;
}

int keyset_add(keyset *ks, const unsigned char key[RECORDS_KEY_LEN])
{
    uint64_t h = first64(key);
    ks->seq = (ks->seq ^ h) * 0x100000001b3ull + 0x9E3779B97F4A7C15ull;
    if (memcmp(key, zero, RECORDS_KEY_LEN) == 0) {
        int fresh = !ks->has_zero;
        ks->has_zero = 1;
        return fresh;
    }
    size_t i = (size_t)h & (ks->nslots - 1);
    while (memcmp(ks->slot[i], zero, RECORDS_KEY_LEN) != 0) {
        if (memcmp(ks->slot[i], key, RECORDS_KEY_LEN) == 0)
            return 0;
        i = (i + 1) & (ks->nslots - 1);
    }
    if (ks->n >= ks->max)
        return -1;
    memcpy(ks->slot[i], key, RECORDS_KEY_LEN);
    ks->n++;
    return 1;
}
