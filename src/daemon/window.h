/* window.h - which time range a tenant's next slice covers.
 *
 * Pure arithmetic, no I/O, so the rules of DESIGN.md "Windows and cursors"
 * are tested in isolation:
 *   new tenant:   [now - lookback, ...) where "now" is its first attempt's
 *                 (the caller passes the lookback that gives it)
 *   with cursor:  [cursor - overlap, ...)
 * and a slice never covers more than slice_s seconds of new ground beyond
 * the point it resumes from, nor goes past now. The cursor moves to the
 * slice's end once the slice is committed. A cursor past now (the clock
 * was stepped back) gives an empty window: reading up to now instead would
 * move the cursor back over records whose dedupe keys may be pruned.
 */
#ifndef NSC_WINDOW_H
#define NSC_WINDOW_H

#include <stdint.h>

typedef struct window {
    int64_t start, end;   /* [start, end), epoch seconds; empty when start >= end */
} window;

/* The next slice. has_cursor selects between the cursor and the lookback. */
window window_next(int has_cursor, int64_t cursor, int64_t now, int lookback_s,
                   int overlap_s, int slice_s);

/* Oldest window time worth keeping in the dedupe table once the cursor is
 * at cursor: anything older can never be re-read. */
int64_t window_prune_before(int64_t cursor, int overlap_s, int margin_s);

#endif
