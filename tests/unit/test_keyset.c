/* test_keyset.c - keyset: new and repeated keys, the cap, the order hash,
 * reset, the table growing, the generation wrapping. */
#include "check.h"
#include "daemon/keyset.h"

static void key_of(unsigned i, unsigned char k[RECORDS_KEY_LEN])
{
    records_hash("t", &i, sizeof i, k);
}

/* A key whose slot would be home (its first 8 bytes), told apart by id. */
static void key_at(uint64_t home, unsigned id, unsigned char k[RECORDS_KEY_LEN])
{
    memset(k, 0, RECORDS_KEY_LEN);
    memcpy(k, &home, sizeof home);
    memcpy(k + 8, &id, sizeof id);
}

/* 1 when k is in the set, without changing it. */
static int has(keyset *ks, const unsigned char *k)
{
    uint64_t seq = ks->seq;
    int r = keyset_add(ks, k);
    if (r == 1)
        keyset_remove(ks, k);
    ks->seq = seq;
    return r == 0;
}

/* 7. keys taken out of runs that collide and wrap round the table's end:
 * the others are all still found, the removed ones not, and the count
 * follows. */
static void test_remove(void)
{
    keyset ks;
    unsigned char k[RECORDS_KEY_LEN];
    CHECK_INT(keyset_init(&ks, 400), 0);
    size_t n = ks.nslots;            /* 1024: no growth below 512 keys */
    /* 300 keys with 30 homes, some in the last slots: runs wrap to slot 0 */
    for (unsigned id = 0; id < 300; id++) {
        key_at(id % 3 == 0 ? n - 1 - id % 7 : id % 23, id, k);
        CHECK_INT(keyset_add(&ks, k), 1);
    }
    CHECK(ks.nslots == n);
    unsigned removed = 0;
    for (unsigned id = 0; id < 300; id += 1 + id % 4) {   /* an uneven pick */
        key_at(id % 3 == 0 ? n - 1 - id % 7 : id % 23, id, k);
        CHECK_INT(keyset_remove(&ks, k), 1);
        CHECK_INT(keyset_remove(&ks, k), 0);
        removed++;
    }
    CHECK_INT(ks.n, 300 - removed);
    unsigned found = 0, gone = 0;
    for (unsigned id = 0; id < 300; id++) {
        key_at(id % 3 == 0 ? n - 1 - id % 7 : id % 23, id, k);
        int in = has(&ks, k);
        found += in;
        gone += !in;
    }
    CHECK_INT(found, 300 - removed);
    CHECK_INT(gone, removed);
    /* every key added back is new once more, and found after */
    for (unsigned id = 0; id < 300; id++) {
        key_at(id % 3 == 0 ? n - 1 - id % 7 : id % 23, id, k);
        keyset_add(&ks, k);
    }
    CHECK_INT(ks.n, 300);
    keyset_release(&ks);
}

int main(void)
{
    keyset ks;
    unsigned char k[RECORDS_KEY_LEN], zero[RECORDS_KEY_LEN] = {0};
    CHECK_INT(keyset_init(&ks, 1000), 0);
    /* 1. new, then repeated */
    for (unsigned i = 0; i < 1000; i++) {
        key_of(i, k);
        CHECK_INT(keyset_add(&ks, k), 1);
    }
    key_of(7, k);
    CHECK_INT(keyset_add(&ks, k), 0);
    /* 2. full: a new key is refused, a known one still found */
    key_of(5000, k);
    CHECK_INT(keyset_add(&ks, k), -1);
    key_of(999, k);
    CHECK_INT(keyset_add(&ks, k), 0);
    /* 3. the all-zero key is a key like any other */
    keyset_reset(&ks);
    CHECK_INT(keyset_add(&ks, zero), 1);
    CHECK_INT(keyset_add(&ks, zero), 0);
    /* 4. the order hash: same keys, same order, same hash; another order differs */
    uint64_t h[3];
    for (int run = 0; run < 3; run++) {
        keyset_reset(&ks);
        for (unsigned i = 0; i < 10; i++) {
            key_of(run == 2 ? 9 - i : i, k);
            CHECK_INT(keyset_add(&ks, k), 1);
        }
        h[run] = ks.seq;
    }
    CHECK(h[0] == h[1]);
    CHECK(h[0] != h[2]);
    keyset_release(&ks);

    /* 5. a read far past the first table: every key new once, then found;
     * a reset forgets them all, however big the table grew */
    CHECK_INT(keyset_init(&ks, 60000), 0);
    CHECK(ks.nslots == KEYSET_MIN_SLOTS);
    for (unsigned i = 0; i < 60000; i++) {
        key_of(i, k);
        CHECK_INT(keyset_add(&ks, k), 1);
    }
    CHECK(ks.nslots >= 2 * 60000 && ks.nslots <= 4 * 60000);
    int found = 0;
    for (unsigned i = 0; i < 60000; i++) {
        key_of(i, k);
        found += keyset_add(&ks, k) == 0;
    }
    CHECK_INT(found, 60000);
    key_of(60000, k);
    CHECK_INT(keyset_add(&ks, k), -1);
    keyset_reset(&ks);
    key_of(123, k);
    CHECK_INT(keyset_add(&ks, k), 1);
    /* 6. the generation wrapping round clears the table instead */
    ks.gen = UINT32_MAX;
    key_of(7, k);
    CHECK_INT(keyset_add(&ks, k), 1);
    keyset_reset(&ks);
    CHECK_INT((int)ks.gen, 1);
    CHECK_INT(keyset_add(&ks, k), 1);
    key_of(123, k);
    CHECK_INT(keyset_add(&ks, k), 1);
    keyset_release(&ks);
    test_remove();
    CHECK_DONE();
}
