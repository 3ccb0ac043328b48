/* progress.h - `run --once` on a terminal: one line per tenant stream that
 * fetches in this pass (furthest behind first, as many as the terminal has
 * rows), redrawn in place every second: the window covered so far, the
 * records stored, their rate and the time left. Log lines go on printing
 * above the lines. When stderr is not a terminal nothing changes: the
 * plain log lines are the output.
 *
 * A thread of its own reads the database through its own read-only
 * connection (WAL lets it read while the workers write; it never takes a
 * write lock): the run rows of this pass, the cursor, stream.first_start,
 * and the records of outbox + delivered. It touches no daemon structure,
 * so the fetch and upload paths are unchanged.
 */
#ifndef NSC_PROGRESS_H
#define NSC_PROGRESS_H

typedef struct progress progress;

/* Start the display for database db_path when stderr is a terminal (and
 * $TERM is not "dumb"); NULL when it is not, or when the thread or the
 * connection cannot be had (then the plain log lines are all there is).
 * The thread starts with every signal blocked, so the daemon's signal
 * thread still receives them. */
progress *progress_start(const char *db_path);

/* Draw the last frame (it stays on the screen as the pass's summary), stop
 * the thread, send log lines to stderr again, free p. NULL does nothing. */
void progress_stop(progress *p);

#endif
