/* test_idtable.c - the id-keyed table under pacing and the request counters. */
#include "check.h"

#include "base/idtable.h"

typedef struct item {
    int64_t id;
    int64_t value;
} item;

static void sum(void *arg, const void *entry)
{
    const item *it = entry;
    int64_t *acc = arg;
    acc[0] += it->id;
    acc[1] += it->value;
    acc[2]++;
}

int main(void)
{
    idtable t = IDTABLE_INIT(item, 4);
    CHECK(idtable_get(&t, 0) == NULL);          /* 0 marks a free slot */
    /* Negative ids are keys too (pacing keys a stream by -id, beside its
     * tenant's +id): both live, apart. */
    ((item *)idtable_get(&t, -5))->value = 50;
    ((item *)idtable_get(&t, 5))->value = 5;
    CHECK_INT(((item *)idtable_get(&t, -5))->value, 50);
    CHECK_INT(((item *)idtable_get(&t, 5))->value, 5);
    idtable_free(&t);
    /* 10,000 ids, some far apart and colliding, through many doublings. */
    for (int64_t i = 1; i <= 10000; i++) {
        item *it = idtable_get(&t, i * 4096);
        CHECK_INT(it->id, i * 4096);
        it->value += i;
    }
    CHECK_INT(idtable_count(&t), 10000);
    for (int64_t i = 1; i <= 10000; i += 999) {
        item *it = idtable_get(&t, i * 4096);
        CHECK_INT(it->value, i);                /* kept across the moves */
    }
    CHECK_INT(idtable_count(&t), 10000);        /* a second get adds nothing */
    item *fresh = idtable_get(&t, 7);
    CHECK_INT(fresh->value, 0);                 /* new entries start zeroed */
    int64_t acc[3] = {0, 0, 0};
    idtable_each(&t, sum, acc);
    CHECK_INT(acc[2], 10001);
    CHECK_INT(acc[0], 4096LL * 10000 * 10001 / 2 + 7);
    CHECK_INT(acc[1], 10000LL * 10001 / 2);
    idtable_free(&t);
    CHECK_INT(idtable_count(&t), 0);
    CHECK_INT(((item *)idtable_get(&t, 3))->id, 3);   /* usable again after free */
    idtable_free(&t);
    CHECK_DONE();
}
