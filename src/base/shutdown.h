/* shutdown.h - the process-wide "stop now" flag and interruptible sleeps.
 *
 * The signal thread calls shutdown_request(); every worker checks
 * shutdown_requested() between pages and uploads, and sleeps only through
 * shutdown_sleep_ms(), which returns early when a stop is requested. No
 * work happens in a signal handler.
 */
#ifndef NSC_SHUTDOWN_H
#define NSC_SHUTDOWN_H

void shutdown_request(void);
int shutdown_requested(void);
/* Sleep up to ms milliseconds; returns 1 if woken by a stop request. */
int shutdown_sleep_ms(long ms);

#endif
