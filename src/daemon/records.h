/* records.h - turn one Netskope API page into NDJSON-ready records.
 *
 * A page is {"ok":..., "result":[{...},{...}], "wait_time":N, ...} (a dataexport
 * page also "timestamp_hwm":T), possibly
 * pretty-printed. ns_page_parse() reads it once as strict JSON, checks its
 * shape, and yields each element of "result" with insignificant whitespace
 * removed and nothing else changed: numbers such as 9007199254740993 or
 * 46.949800000000003 and escapes such as "\/" or "\u00e9" stay byte for
 * byte as received. Each record gets its dedupe key: the 128-bit hash
 * (SHA-256, truncated) of its "_id" value's bytes, or of the whole minified
 * record when it has no "_id".
 *
 * Errors (the page is then unusable; the caller must not move a cursor):
 * not JSON, truncated, "result" missing or not an array, an element that is
 * not an object, nesting deeper than RECORDS_MAX_DEPTH, more tokens than the
 * configured cap.
 * A page parser belongs to one thread and owns its copies (pg->out); the
 * records point into the body or into those copies, so they are valid only
 * until the next parse and while the body is unchanged.
 */
#ifndef NSC_RECORDS_H
#define NSC_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define RECORDS_KEY_LEN 16
#define RECORDS_MAX_DEPTH 64

typedef struct ns_record {
    const char *data;                     /* the minified record is data[0, len): in the */
    size_t len;                           /* body itself when the record has no whitespace
                                             outside strings, else in pg->out */
    unsigned char key[RECORDS_KEY_LEN];   /* dedupe key */
    int has_id;                           /* the key is of "_id": another record with this
                                             key may differ in its other bytes */
    int64_t event_time;                   /* "timestamp", or -1 when absent/not an integer */
    int64_t insertion_time;               /* "_insertion_epoch_timestamp", or -1 */
} ns_record;

typedef struct ns_page {
    buf out;               /* minified copies, back to back, of the records that needed them */
    ns_record *recs;       /* nrecs entries, valid until the next parse and while
                              the body passed to it is unchanged */
    size_t nrecs, recs_cap;
    int64_t wait_time;     /* body's "wait_time" in seconds, or -1 when absent */
    int ok;                /* body's "ok": 1 when it is the number 1, 0 when it is
                              anything else (0, "1", true...), -1 when absent. A page
                              with ok 0 parses, but is Netskope saying the request
                              failed: the caller must treat it as an error */
    int64_t hwm;           /* body's "timestamp_hwm" (dataexport: how far the iterator's
                              data goes), an integer, or -1 when absent */
    unsigned max_tokens;   /* cap on tokens per page (hostile input) */
    size_t feed_min;       /* a streamed page: bytes gathered before the lexer runs
                              (0: 256 KiB; tests set 1 to cut tokens everywhere) */
    struct ns_stream *stream;  /* a streamed page's state (ns_page_begin) */
} ns_page;

/* Set up a page parser; max_tokens 0 means the default (16 million). */
void ns_page_init(ns_page *pg, unsigned max_tokens);
void ns_page_release(ns_page *pg);

/* Parse body[0, len). Returns 0 and fills pg->recs / pg->out, or -1 with a
 * short reason in err ("result is not an array", "truncated JSON at byte N"). */
int ns_page_parse(ns_page *pg, const char *body, size_t len, char *err, size_t errlen);

/* A page as it arrives, for a body of any size in little memory:
 * ns_page_begin(), ns_page_feed() with each piece of the body in order,
 * ns_page_end(). Whenever the lexer runs (once about 256 KiB more have
 * come, and at the end) the records it completed are handed to
 * emit(ud, recs, n) in one call, in order, and the body bytes before them
 * are dropped: recs and their data are valid only during the call. The
 * checks and the errors are ns_page_parse()'s, byte positions counted from
 * the start of the body, but a page found malformed late may already have
 * handed out the records before the fault. After the end pg->nrecs (all
 * handed out), ok, wait_time and hwm are the page's; during it pg->ok is
 * what the page said so far. Each returns 0, -1 when the page is malformed
 * or memory is short (err says which), -2 when emit returned nonzero;
 * after an error the page is done and later calls return the same.
 * ns_page_parse() may be used on the same ns_page between streamed pages. */
typedef int (*ns_emit_fn)(void *ud, const ns_record *recs, size_t n);
int ns_page_begin(ns_page *pg, ns_emit_fn emit, void *ud);
int ns_page_feed(ns_page *pg, const void *p, size_t n, char *err, size_t errlen);
int ns_page_end(ns_page *pg, char *err, size_t errlen);

/* Minify one JSON value: copy src[0, len) to out without whitespace outside
 * strings. The input must be valid JSON (as ns_page_parse() checks it). */
int records_minify(buf *out, const char *src, size_t len);

/* The dedupe key of arbitrary bytes (domain-separated SHA-256, truncated). */
void records_hash(const char *domain, const void *p, size_t len,
                  unsigned char key[RECORDS_KEY_LEN]);

/* A checksum of a record's bytes, kept beside its key to tell a record met
 * again with the same "_id" and other bytes (a conflict): Poly1305 under a
 * fixed key, 62 of its bits, always in [RECORDS_DIGEST_MIN, 2^63); -1 when
 * OpenSSL cannot compute it (no digest is kept then). Digests stored
 * before 2026-12-07 were zlib's crc32, below 2^32: not comparable, and not
 * compared (outbox.c). */
#define RECORDS_DIGEST_MIN (INT64_C(1) << 62)
int64_t records_digest(const void *p, size_t len);

#endif
