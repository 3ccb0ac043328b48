/* idtable.c - see idtable.h. */
#include "base/idtable.h"

#include <stdlib.h>
#include <string.h>

static int64_t id_at(const unsigned char *slots, size_t elem, size_t i)
{
    int64_t id;
    memcpy(&id, slots + i * elem, sizeof id);
    return id;
}

/* id's slot, or the free slot where it belongs. */
static size_t slot_of(const unsigned char *slots, size_t elem, size_t cap, int64_t id)
{
    size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
    for (int64_t at; (at = id_at(slots, elem, i)) != 0 && at != id; i = (i + 1) & (cap - 1))
        ;
    return i;
}

static int grow(idtable *t)
{
    size_t cap = t->cap ? t->cap * 2 : t->first_cap;
    unsigned char *slots = calloc(cap, t->elem);
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        int64_t id = id_at(t->slots, t->elem, i);
        if (id)
            memcpy(slots + slot_of(slots, t->elem, cap, id) * t->elem,
                   t->slots + i * t->elem, t->elem);
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

void *idtable_get(idtable *t, int64_t id)
{
    if (id == 0 || (2 * (t->used + 1) > t->cap && grow(t) < 0))
        return NULL;
    unsigned char *e = t->slots + slot_of(t->slots, t->elem, t->cap, id) * t->elem;
    if (id_at(e, t->elem, 0) == 0) {
        memcpy(e, &id, sizeof id);
        t->used++;
    }
    return e;
}

void idtable_each(const idtable *t, void (*fn)(void *arg, const void *entry), void *arg)
{
    for (size_t i = 0; i < t->cap; i++)
        if (id_at(t->slots, t->elem, i))
            fn(arg, t->slots + i * t->elem);
}

size_t idtable_count(const idtable *t)
{
    return t->used;
}

void idtable_free(idtable *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->used = 0;
}
