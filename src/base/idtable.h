/* idtable.h - fixed-size entries keyed by a non-zero int64 id (a tenant's,
 * a stream's, or a negated one: pacing keys a stream by -id): open addressing with linear probing, doubled when half
 * full, never shrunk (ids are few: one per tenant or stream).
 *
 * Every entry type starts with `int64_t id` (0 marks a free slot). The
 * table has no lock of its own: its owner holds one around every call.
 * Memory: the table owns its slots; idtable_free releases them.
 */
#ifndef NSC_IDTABLE_H
#define NSC_IDTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct idtable {
    unsigned char *slots;
    size_t elem;             /* sizeof the entry type */
    size_t first_cap;        /* slots on first use (a power of two) */
    size_t cap, used;
} idtable;

#define IDTABLE_INIT(type, first) {NULL, sizeof(type), (first), 0, 0}

/* id's entry (any id but 0), zero-filled with its id set when new; NULL when
 * memory is short. Valid until the next idtable_get (which may move it). */
void *idtable_get(idtable *t, int64_t id);

/* Calls fn on every entry, in no particular order. */
void idtable_each(const idtable *t, void (*fn)(void *arg, const void *entry), void *arg);

size_t idtable_count(const idtable *t);

void idtable_free(idtable *t);

#endif
