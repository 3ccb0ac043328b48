/* shutdown.c - see shutdown.h. */
#include "base/shutdown.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static atomic_int stopping;

void shutdown_request(void)
{
    pthread_mutex_lock(&lock);
    atomic_store(&stopping, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
}

int shutdown_requested(void)
{
    return atomic_load(&stopping);
}

int shutdown_sleep_ms(long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lock);
    int rc = 0;
    while (!atomic_load(&stopping) && rc == 0)
        rc = pthread_cond_timedwait(&wake, &lock, &until);
    pthread_mutex_unlock(&lock);
    return atomic_load(&stopping);
}
