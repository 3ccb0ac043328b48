/* keyset.c - see keyset.h. Open addressing, linear probing; the keys are
 * already uniform (truncated SHA-256), so their first bytes are the hash. */
#include "daemon/keyset.h"

#include <stdlib.h>
#include <string.h>

/* The most slots a set of max keys needs: a power of two >= 2 x max. */
static size_t slots_for(size_t max)
{
    size_t n = KEYSET_MIN_SLOTS;
    while (n < 2 * max)
        n *= 2;
    return n;
}

int keyset_init(keyset *ks, size_t max)
{
    memset(ks, 0, sizeof *ks);
    size_t n = KEYSET_MIN_SLOTS;      /* grown by keyset_add() as a read needs it */
    ks->slot = calloc(n, sizeof *ks->slot);
    if (!ks->slot)
        return -1;
    ks->nslots = n;
    ks->max = max;
    ks->gen = 1;
    return 0;
}

void keyset_release(keyset *ks)
{
    free(ks->slot);
    memset(ks, 0, sizeof *ks);
}

void keyset_reset(keyset *ks)
{
    if (ks->n && ++ks->gen == 0) {    /* after 2^32 reads: clear once, start over */
        memset(ks->slot, 0, ks->nslots * sizeof *ks->slot);
        ks->gen = 1;
    }
    ks->n = 0;
    ks->seq = 0;
}

static uint64_t first64(const unsigned char *k)
{
    uint64_t v;
    memcpy(&v, k, sizeof v);
    return v;
}

/* The slot that holds key, or the free slot where it belongs. */
static keyset_slot *probe(keyset_slot *slot, size_t nslots, uint32_t gen,
                          const unsigned char *key)
{
    size_t i = (size_t)first64(key) & (nslots - 1);
    while (slot[i].gen == gen && memcmp(slot[i].key, key, RECORDS_KEY_LEN) != 0)
        i = (i + 1) & (nslots - 1);
    return &slot[i];
}

/* Double the table, moving this read's keys. On failure the set keeps its
 * table, fuller than half: still correct, only slower. */
static void grow(keyset *ks)
{
    size_t n = ks->nslots * 2;
    keyset_slot *s = calloc(n, sizeof *s);
    if (!s)
        return;
    for (size_t i = 0; i < ks->nslots; i++) {
        if (ks->slot[i].gen != ks->gen)
            continue;
        keyset_slot *to = probe(s, n, 1, ks->slot[i].key);
        memcpy(to->key, ks->slot[i].key, RECORDS_KEY_LEN);
        to->gen = 1;
    }
    free(ks->slot);
    ks->slot = s;
    ks->nslots = n;
    ks->gen = 1;
}

int keyset_add(keyset *ks, const unsigned char key[RECORDS_KEY_LEN])
{
    ks->seq = (ks->seq ^ first64(key)) * 0x100000001b3ull + 0x9E3779B97F4A7C15ull;
    keyset_slot *s = probe(ks->slot, ks->nslots, ks->gen, key);
    if (s->gen == ks->gen)
        return 0;
    if (ks->n >= ks->max || ks->n + 1 >= ks->nslots)   /* (the second: a grow failed) */
        return -1;
    if (2 * (ks->n + 1) > ks->nslots && ks->nslots < slots_for(ks->max)) {
        grow(ks);
        s = probe(ks->slot, ks->nslots, ks->gen, key);
    }
    memcpy(s->key, key, RECORDS_KEY_LEN);
    s->gen = ks->gen;
    ks->n++;
    return 1;
}

/* Linear probing's backward shift: each later key of the run that could
 * sit in the freed slot moves into it, so no probe stops early at a hole.
 * (Generation 0 is never a set's: keyset_reset() skips it.) */
int keyset_remove(keyset *ks, const unsigned char key[RECORDS_KEY_LEN])
{
    size_t mask = ks->nslots - 1;
    keyset_slot *s = probe(ks->slot, ks->nslots, ks->gen, key);
    if (s->gen != ks->gen)
        return 0;
    size_t hole = (size_t)(s - ks->slot);
    for (size_t j = (hole + 1) & mask; ks->slot[j].gen == ks->gen; j = (j + 1) & mask) {
        size_t home = (size_t)first64(ks->slot[j].key) & mask;
        int stays = hole < j ? home > hole && home <= j : home > hole || home <= j;
        if (stays)
            continue;
        ks->slot[hole] = ks->slot[j];
        hole = j;
    }
    ks->slot[hole].gen = 0;
    ks->n--;
    return 1;
}
