/* iterator.h - a stream's dataexport iterator: which request comes next.
 *
 * In `--api dataexport` a stream reads
 * /api/v2/events/dataexport/events/{type}?index=NAME&operation=OP, where
 * Netskope keeps the index's position. Only the last page handed out can
 * be asked again (operation=resend), so a page must be committed before
 * the next one is asked for, and what the database says was committed
 * decides the next operation (migration 010 has the states):
 *
 *   new      -> write 'starting', ask OP=<start epoch>
 *   starting -> ask OP=<start epoch> again (its page was never committed)
 *   clean    -> write 'pending', ask OP=next
 *   pending  -> ask OP=resend (a page may have been handed out, not stored)
 *
 * iterator_begin() makes that write durable (synchronous=FULL) before the
 * request goes: a kill or power loss after it leaves 'pending', never a
 * 'clean' that would skip a page. The page's records and the move back to
 * 'clean' are committed together by outbox_commit() (outbox.h: iterator).
 * Dedupe keys drop what a resend or a restarted start repeats.
 *
 * The index name is made once per stream, "nscollect_<stream id>_<16 hex>":
 * the random part keeps two databases (or a re-created stream) off each
 * other's index; Netskope warns that two readers of one index both miss
 * data. All functions run on the caller's connection, outside a
 * transaction.
 */
#ifndef NSC_ITERATOR_H
#define NSC_ITERATOR_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define ITERATOR_INDEX_MAX 64

typedef enum iterator_state {
    ITER_NEW, ITER_STARTING, ITER_PENDING, ITER_CLEAN
} iterator_state;

typedef struct iterator {
    int64_t stream_id;
    char index_name[ITERATOR_INDEX_MAX];
    int64_t start_epoch;
    iterator_state state;
    int64_t pages, resends;
} iterator;

/* Load the stream's iterator, creating it (state new, starting from
 * start_epoch) when it has none. 0, or -1 with err. */
int iterator_load(sqlite3 *db, int64_t stream_id, int64_t start_epoch, iterator *it,
                  char *err, size_t errlen);

/* The operation the next request carries, by it->state: the start epoch
 * (in buf), "next" or "resend". */
const char *iterator_op(const iterator *it, char *buf, size_t buflen);

/* Before a request: write (synced) what a kill after it must find:
 * 'starting' for new, 'pending' for clean; the other states stay, and a
 * resend is counted. Updates it->state. 0, or -1 with err. */
int iterator_begin(sqlite3 *db, iterator *it, char *err, size_t errlen);

/* After the commit that stored the page (outbox_commit with iterator set):
 * the in-memory copy follows the database. */
void iterator_committed(iterator *it);

/* Forget the stream's iterator (the tenant left dataexport mode): a later
 * switch back starts a new index from the cursor. 0, or -1 with err. */
int iterator_forget_tenant(sqlite3 *db, int64_t tenant_id, char *err, size_t errlen);

const char *iterator_state_name(iterator_state s);

#endif
