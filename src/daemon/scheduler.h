/* scheduler.h - the daemon: a scheduler, N fetch workers, M upload workers.
 *
 * The calling thread becomes the scheduler. Every tick it queues one fetch
 * job per enabled tenant that is due and has no job in flight (FIFO, so a
 * tenant with a backlog takes its turn like everyone else). Fetch workers
 * run jobs (fetch.h); upload workers deliver outbox batches (upload.h).
 * Tenants added or changed with the CLI are seen at the next tick.
 * SIGHUP re-reads the config file (see reload_config in scheduler.c).
 * SIGTERM/SIGINT stop the intake; work in flight finishes its current
 * page or upload and uncommitted work is abandoned; then it returns.
 */
#ifndef NSC_SCHEDULER_H
#define NSC_SCHEDULER_H

#include "base/config.h"
#include "daemon/secret.h"
#include "daemon/shard.h"

typedef struct run_opts {
    int once;             /* one pass over the enabled tenants, deliver, return */
    int fetch_workers;
    int fetch_workers_set; /* given as --fetch-workers: a reload keeps it */
    int upload_workers;
    shard shard;          /* fetch only the tenants of this shard (n 0: all); the
                             batches of any tenant still here are delivered */
} run_opts;

/* Returns the process exit status: 0 all good; 1 a tenant could not
 * complete its window or a batch could not be delivered (in a one-shot
 * pass); 2 could not start (err says why). */
int scheduler_run(const nsc_config *cfg, const char *db_path, const secret_key *key,
                  const run_opts *opts, char *err, size_t errlen);

#endif
