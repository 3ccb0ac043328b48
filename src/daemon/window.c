/* window.c - see window.h. */
#include "daemon/window.h"

window window_next(int has_cursor, int64_t cursor, int64_t now, int lookback_s,
                   int overlap_s, int slice_s)
{
    window w;
    int64_t resume = has_cursor ? cursor : now - lookback_s;
    if (resume > now) {        /* the clock went back past the cursor: wait for it */
        w.start = w.end = resume;
        return w;
    }
    w.start = has_cursor ? resume - overlap_s : resume;
    w.end = resume + slice_s;
    if (w.end > now)
        w.end = now;
    return w;
}

int64_t window_prune_before(int64_t cursor, int overlap_s, int margin_s)
{
    return cursor - overlap_s - margin_s;
}
