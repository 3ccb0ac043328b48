/* buf.h - a growable byte buffer with a hard maximum.
 *
 * Every buffer that grows with network input has a cap (curl's dynbuf idea):
 * exceeding it is an error the caller reports, never an out-of-memory crash.
 * The bytes are always NUL-terminated so text can be used as a C string.
 * A buf is owned by whoever declared it; buf_release() frees its storage.
 */
#ifndef NSC_BUF_H
#define NSC_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data;     /* NULL until the first append; then NUL-terminated */
    size_t len;     /* bytes used, not counting the NUL */
    size_t cap;     /* bytes allocated */
    size_t max;     /* largest len allowed; 0 means no limit */
} buf;

/* Set up an empty buffer that may hold at most max bytes (0 = unlimited). */
void buf_init(buf *b, size_t max);
/* The same, with storage for all max bytes allocated at once at an address
 * aligned to align (a power of two), so that it never moves while it stays
 * within max. Only the pages written become resident. Falls back to
 * buf_init() when the memory cannot be had. */
void buf_init_aligned(buf *b, size_t max, size_t align);
/* Free the storage; the buf may be reused after buf_init(). */
void buf_release(buf *b);
/* buf_release() after overwriting every allocated byte: for buffers that
 * held a token, a key or a signed assertion. */
void buf_wipe(buf *b);
/* Forget the contents but keep the storage for reuse. */
void buf_reset(buf *b);
/* Append n bytes. Returns 0, or -1 when the cap would be exceeded or
 * memory is short (the buffer is then unchanged). */
int buf_append(buf *b, const void *p, size_t n);
int buf_append_str(buf *b, const char *s);
int buf_append_char(buf *b, char c);
/* printf-style append; same errors as buf_append. */
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Make room for n more bytes without changing len; -1 past the cap. */
int buf_reserve(buf *b, size_t n);
/* Hand the storage to the caller (who must free() it) and reset b. */
char *buf_detach(buf *b, size_t *len);

#endif
