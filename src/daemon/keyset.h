/* keyset.h - the dedupe keys that one read of a slice has met, in memory.
 *
 * A fetch job reads a slice page by page with limit/offset. If Netskope's
 * order changes between two requests (or a server answers the same records
 * at every offset), a key comes back twice within one read: that is how
 * the job sees that offset paging may have skipped records (the read is
 * then repeated) or that it is making no progress (the slice is given up).
 * keyset_add() also folds each key, in order, into a hash of the read, so
 * two reads that met the same keys in the same order can be told apart
 * from two that did not.
 *
 * Memory: the table starts at KEYSET_MIN_SLOTS and doubles while a read
 * fills it past half, up to 2 x max keys; the caller bounds a read to max
 * keys (the offset ceiling plus one page). A reset costs nothing however
 * big the table grew: each slot carries the generation it was filled in,
 * and a reset starts a new one. (The table used to be its full 2 MiB from
 * the start and was cleared with memset at every read: with 16 fetchers
 * and 10,000 small tenants that was 32 MiB of RSS and 20 GB of memset.)
 * A keyset belongs to one fetcher (one thread); it is not locked.
 */
#ifndef NSC_KEYSET_H
#define NSC_KEYSET_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/records.h"

#define KEYSET_MIN_SLOTS 1024

typedef struct keyset_slot {
    unsigned char key[RECORDS_KEY_LEN];
    uint32_t gen;                              /* in use when it is the set's gen */
} keyset_slot;

typedef struct keyset {
    keyset_slot *slot;
    size_t nslots, n, max;
    uint32_t gen;                              /* the current read's generation, >= 1 */
    uint64_t seq;                              /* hash of the keys in order of adding */
} keyset;

/* Set up for at most max keys. 0, or -1 when memory is short. */
int keyset_init(keyset *ks, size_t max);
void keyset_release(keyset *ks);
/* Forget every key (and the order hash), keeping the table. */
void keyset_reset(keyset *ks);
/* Add key: 1 when it is new, 0 when it was there already, -1 when max
 * keys are held (the key is not added). */
int keyset_add(keyset *ks, const unsigned char key[RECORDS_KEY_LEN]);
/* Take a key back out (a page whose reply broke off half-way is asked for
 * again, and what it had handed out must not count as met twice): 1 when
 * it was there, else 0. The order hash is the caller's to put back. */
int keyset_remove(keyset *ks, const unsigned char key[RECORDS_KEY_LEN]);

#endif
