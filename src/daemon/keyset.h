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
 * Memory: a fixed table of 2 x max keys, allocated at keyset_init(); the
 * caller bounds a read to max keys (the offset ceiling plus one page).
 * A keyset belongs to one fetcher (one thread); it is not locked.
 */
#ifndef NSC_KEYSET_H
#define NSC_KEYSET_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/records.h"

typedef struct keyset {
    unsigned char (*slot)[RECORDS_KEY_LEN];   /* all-zero = empty */
    size_t nslots, n, max;
    int has_zero;                              /* the all-zero key was added */
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

#endif
