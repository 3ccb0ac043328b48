/* test_shard.c - shard_parse() and the properties operators rely on:
 * balanced shards, and N -> N + 1 moving about 1/(N + 1) of the tenants,
 * all to the new shard. (That the hash is the documented one is
 * test_shard.py's: it recomputes it in Python.) */
#include "check.h"
#include "daemon/shard.h"

#include <stdio.h>
#include <string.h>

static void test_parse(void)
{
    char err[256];
    shard s;
    CHECK_INT(shard_parse("0/3", &s, err, sizeof err), 0);
    CHECK_INT(s.k, 0);
    CHECK_INT(s.n, 3);
    CHECK_INT(shard_parse("1023/1024", &s, err, sizeof err), 0);
    const char *bad[] = {"3/3", "-1/3", "0/0", "1/-2", "a/3", "1/", "/3", "1/3x", "0/1025",
                         "", "1 /3", "99999999999999999999/3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        CHECK_INT(shard_parse(bad[i], &s, err, sizeof err), -1);
        CHECK(strstr(err, "is not a shard K/N") != NULL);
    }
    shard none = {0, 0};
    CHECK(shard_owns(&none, "anyone"));
}

static void test_balance_and_growth(void)
{
    enum { NAMES = 12000 };
    int count[4] = {0}, moved = 0, moved_elsewhere = 0;
    char name[32];
    for (int i = 0; i < NAMES; i++) {
        snprintf(name, sizeof name, "tenant-%d", i);
        int a = shard_of(name, 3), b = shard_of(name, 4);
        CHECK(a >= 0 && a < 3);
        count[a]++;
        CHECK_INT(shard_of(name, 1), 0);
        if (a != b) {
            moved++;
            moved_elsewhere += b != 3;
        }
    }
    for (int k = 0; k < 3; k++)
        CHECK(count[k] > NAMES / 3 * 95 / 100 && count[k] < NAMES / 3 * 105 / 100);
    CHECK_INT(moved_elsewhere, 0);           /* 3 -> 4: only to the new shard */
    CHECK(moved > NAMES / 4 * 90 / 100 && moved < NAMES / 4 * 110 / 100);
}

int main(void)
{
    test_parse();
    test_balance_and_growth();
    CHECK_DONE();
}
