/* test_window.c - the window and slicing rules of DESIGN.md. */
#include "check.h"
#include "daemon/window.h"

#define NOW 1800000000LL

int main(void)
{
    window w;

    /* 1.x new tenant: starts lookback ago, slices of slice_s */
    w = window_next(0, 0, NOW, 86400, 120, 3600);
    CHECK_INT(w.start, NOW - 86400);
    CHECK_INT(w.end, NOW - 86400 + 3600);
    w = window_next(0, 0, NOW, 600, 120, 3600);     /* lookback shorter than a slice */
    CHECK_INT(w.start, NOW - 600);
    CHECK_INT(w.end, NOW);

    /* 2.x with a cursor: re-read overlap seconds before it */
    w = window_next(1, NOW - 300, NOW, 86400, 120, 3600);
    CHECK_INT(w.start, NOW - 420);
    CHECK_INT(w.end, NOW);
    w = window_next(1, NOW - 10000, NOW, 86400, 120, 3600);   /* an outage: sliced */
    CHECK_INT(w.start, NOW - 10000 - 120);
    CHECK_INT(w.end, NOW - 10000 + 3600);
    w = window_next(1, NOW - 10000, NOW, 86400, 0, 3600);     /* overlap 0 */
    CHECK_INT(w.start, NOW - 10000);

    /* 3.x caught up: only the overlap is read again, the end never passes now */
    w = window_next(1, NOW, NOW, 86400, 120, 3600);
    CHECK_INT(w.start, NOW - 120);
    CHECK_INT(w.end, NOW);
    /* 3.2 a cursor in the future (clock stepped back): nothing to read until
     * the clock passes it again, the cursor must not move back */
    w = window_next(1, NOW + 500, NOW, 86400, 120, 3600);
    CHECK(w.start >= w.end);
    CHECK_INT(w.end, NOW + 500);

    /* 4.x consecutive slices of a 24 h backfill cover it without gaps */
    long long cursor = 0, covered_to = NOW - 86400;
    int has = 0, slices = 0;
    for (;;) {
        w = window_next(has, cursor, NOW, 86400, 120, 3600);
        CHECK(w.start <= covered_to);                 /* no gap */
        covered_to = w.end;
        has = 1;
        cursor = w.end;
        slices++;
        if (cursor >= NOW)
            break;
    }
    CHECK_INT(slices, 24);
    CHECK_INT(covered_to, NOW);

    /* 5.x pruning keeps overlap + margin behind the cursor */
    CHECK_INT(window_prune_before(NOW, 120, 3600), NOW - 3720);
    CHECK_DONE();
}
