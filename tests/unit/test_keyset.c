/* test_keyset.c - keyset: new and repeated keys, the cap, the order hash,
 * reset, the table growing, the generation wrapping. */
#include "check.h"
#include "daemon/keyset.h"

static void key_of(unsigned i, unsigned char k[RECORDS_KEY_LEN])
{
    records_hash("t", &i, sizeof i, k);
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
    CHECK_DONE();
}
