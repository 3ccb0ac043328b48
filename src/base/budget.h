/* budget.h - a byte budget shared by threads: how much of something the
 * whole process may hold at once.
 *
 * Used for the reply bodies in flight: http.max_body caps one body, but
 * every fetch worker holds up to two, so the process-wide total needs a
 * cap of its own (http.max_body_total). A taker asks before it grows and
 * gives back what it held when done; nothing blocks: a take that does
 * not fit fails at once and the caller backs off. Lock-free (C11 atomics);
 * the budget is owned by whoever declared it and must outlive its users.
 */
#ifndef NSC_BUDGET_H
#define NSC_BUDGET_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct budget {
    size_t max;              /* 0: no limit (counted all the same) */
    atomic_size_t used;
} budget;

void budget_init(budget *b, size_t max);
/* 0 and n counted as held, or -1 (nothing counted) when it would pass max. */
int budget_take(budget *b, size_t n);
/* Give back n bytes taken before. */
void budget_give(budget *b, size_t n);
size_t budget_used(budget *b);

#endif
