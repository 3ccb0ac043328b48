/* budget.c - see budget.h. */
#include "base/budget.h"

void budget_init(budget *b, size_t max)
{
    b->max = max;
    atomic_init(&b->used, 0);
}

int budget_take(budget *b, size_t n)
{
    size_t used = atomic_load(&b->used);
    do {
        if (b->max && (n > b->max || used > b->max - n))
            return -1;
    } while (!atomic_compare_exchange_weak(&b->used, &used, used + n));
    return 0;
}

void budget_give(budget *b, size_t n)
{
    atomic_fetch_sub(&b->used, n);
}

size_t budget_used(budget *b)
{
    return atomic_load(&b->used);
}
