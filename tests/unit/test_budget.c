/* test_budget.c - the process-wide byte budget: takes that fit, takes that
 * do not (nothing counted), and many threads taking and giving at once
 * never passing the maximum nor losing a byte. */
#include <pthread.h>

#include "check.h"
#include "base/budget.h"

#define THREADS 4
#define ROUNDS 20000

static budget shared;
static atomic_int over;          /* a thread saw more in use than the maximum */

static void *churn(void *arg)
{
    size_t n = (size_t)(long)arg;
    for (int i = 0; i < ROUNDS; i++) {
        if (budget_take(&shared, n) < 0)
            continue;
        if (budget_used(&shared) > shared.max)
            atomic_store(&over, 1);
        budget_give(&shared, n);
    }
    return NULL;
}

int main(void)
{
    budget b;
    budget_init(&b, 100);
    CHECK_INT(budget_take(&b, 60), 0);
    CHECK_INT(budget_take(&b, 41), -1);          /* would pass 100: nothing counted */
    CHECK_INT(budget_used(&b), 60);
    CHECK_INT(budget_take(&b, 40), 0);           /* exactly full */
    CHECK_INT(budget_take(&b, 1), -1);
    budget_give(&b, 60);
    CHECK_INT(budget_used(&b), 40);
    CHECK_INT(budget_take(&b, (size_t)-1), -1);  /* no wrap-around */
    CHECK_INT(budget_used(&b), 40);

    budget_init(&b, 0);                          /* no limit, still counted */
    CHECK_INT(budget_take(&b, 1u << 30), 0);
    CHECK_INT(budget_used(&b), 1u << 30);

    budget_init(&shared, 10);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, churn, (void *)(i + 3));    /* 3..6: two fit at most */
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(atomic_load(&over), 0);
    CHECK_INT(budget_used(&shared), 0);
    CHECK_DONE();
}
