/* util.h - small helpers several parts need, kept in one place.
 *
 * No state: every function is safe on any thread. Errors are -1 with errno
 * (I/O) or with the reason in the caller's err buffer (seterr). */
#ifndef NSC_UTIL_H
#define NSC_UTIL_H

#define NSCOLLECT_VERSION "0.1.0"   /* --version, nscollect_build_info */

#include <stddef.h>
#include <stdint.h>

/* printf into err (when err is not NULL) and return -1, so an error path
 * is one line: `return seterr(err, errlen, "cannot read '%s'", path);` */
int seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Write all n bytes to fd, retrying short writes and EINTR. 0 or -1 (errno). */
int write_full(int fd, const void *p, size_t n);

/* fsync a directory ("" is "/") so the names just made in it survive a
 * crash. 0 or -1 (errno). */
int fsync_dir(const char *dir);

/* fsync the directory that holds path ("." for a bare name), so a name
 * just made there survives a crash. 0 or -1 (errno). */
int fsync_parent(const char *path);

/* Overwrite the NUL-terminated secret s, then free it. NULL is ignored. */
void free_secret(char *s);

/* Back-off before retry number attempt (0-based), Google's documented
 * strategy for its APIs: ceiling 1 s, doubled per attempt, capped at 60 s,
 * with full jitter (rnd mapped uniformly onto [0, ceiling] milliseconds). */
unsigned backoff_ms(int attempt, unsigned rnd);

/* CLOCK_MONOTONIC: for intervals, deadlines and pacing (never wall time). */
int64_t mono_us(void);
int64_t mono_ms(void);

#endif
