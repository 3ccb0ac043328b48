/* slowsync.c - an LD_PRELOAD shim for benchmarks (make bench-slowdisk):
 * every fsync() and fdatasync() returns SLOWSYNC_US microseconds (default
 * 2000) after the real call, as on a disk whose cache flush takes that long
 * (a cloud persistent disk: 1-5 ms; this VM's: 0.1-0.3 ms). Only the
 * calls' latency changes; what they do does not. Not a test tool: timing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void flush_latency(void)
{
    static long us = -1;
    if (us < 0) {
        const char *e = getenv("SLOWSYNC_US");
        us = e ? atol(e) : 2000;
    }
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&t, &t) != 0)
        ;
}

/* The real call by name, then the flush's latency. */
static int slowed(int (**real)(int), const char *name, int fd)
{
    if (!*real)
        *real = (int (*)(int))dlsym(RTLD_NEXT, name);
    int rc = (*real)(fd);
    flush_latency();
    return rc;
}

int fsync(int fd)
{
    static int (*real)(int);
    return slowed(&real, "fsync", fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    return slowed(&real, "fdatasync", fd);
}
