/* config.h - the libconfig file: every key, its type, default and bounds.
 *
 * One table in config.c lists each key (dotted path, type, default, bounds,
 * field); the loader walks it, so defaults, validation and the example file
 * cannot drift. An unknown key, a wrong type or a bad value is an error that
 * names the file, the line and the key.
 */
#ifndef NSC_CONFIG_H
#define NSC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_PATH_MAX 1024

typedef struct nsc_config {
    char source[CONFIG_PATH_MAX];     /* file it came from, "" for built-in defaults */

    char database[CONFIG_PATH_MAX];   /* "database", default "nscollect.db" */
    char key_file[CONFIG_PATH_MAX];   /* "key_file", default "" = <database>.key */
    char output_dir[CONFIG_PATH_MAX]; /* "output_dir", default "nscollect-out": root of the default file sink */
    char shard[CONFIG_PATH_MAX];      /* "shard", "K/N" or "" (not sharded): daemon/shard.h */
    int log_level;                    /* "log.level": enum log_level, default info */
    int log_format;                   /* "log.format": "kv" | "json" */

    int fetch_workers;                /* "workers.fetch": jobs working at once, default 4 */
    int upload_workers;               /* "workers.upload", default 2 */
    int fetch_spare;                  /* "workers.fetch_spare": extra fetch threads for jobs
                                         waiting on the network, default 4 */

    /* Defaults for new tenants ("tenant_defaults.*"). */
    int interval_s;                   /* interval, default 300 */
    int lookback_s;                   /* lookback, default 86400 */
    int overlap_s;                    /* overlap, default 120 */
    int page_size;                    /* page_size, default 1000, 1..10000 */
    int64_t max_records;              /* max_records, default 0 = no cap */
    int window_event;                 /* window: "insertion" (0, default) | "event" (1) */

    int slice_s;                      /* "fetch.slice", default 3600 */
    int64_t batch_max_bytes;          /* "fetch.batch_max_bytes", default 8 MiB */
    int retry_wait_max_s;             /* "fetch.retry_wait_max": longest wait sat out inside a job, default 5 */
    int prune_margin_s;               /* "fetch.prune_margin": kept in seen beyond the overlap, default 3600 */
    int job_budget_s;                 /* "fetch.job_budget": a job yields its worker after this, default 10 */
    int requests_per_s;               /* "fetch.requests_per_second" per tenant, default 4 (Netskope's documented limit) */
    int prefetch;                     /* "fetch.prefetch": next page in flight while one is stored */
    int offset_max;                   /* "fetch.offset_max": deepest offset before a slice is read smaller, default 50000 */

    int connect_timeout_s;            /* "http.connect_timeout", default 10 */
    int low_speed_time_s;             /* "http.low_speed_time", default 30 */
    int total_timeout_s;              /* "http.total_timeout", default 300 */
    int64_t max_body_bytes;           /* "http.max_body", default 128 MiB: one reply body */
    int64_t max_body_total;           /* "http.max_body_total", default 512 MiB: all the
                                         bodies the process holds at once */
    char ca_bundle[CONFIG_PATH_MAX];  /* "http.ca_bundle", default "" = system store */
    char proxy[CONFIG_PATH_MAX];      /* "http.proxy", default "" = environment */

    char gcs_endpoint[CONFIG_PATH_MAX];    /* "gcs.endpoint", default https://storage.googleapis.com */
    char gcs_credentials[CONFIG_PATH_MAX]; /* "gcs.credentials", default "" */
    char secops_endpoint[CONFIG_PATH_MAX]; /* "secops.endpoint", default "" = the region's
                                              https://chronicle.REGION.rep.googleapis.com */
    int64_t secops_max_request_bytes;      /* "secops.max_request_bytes", default 1,000,000 */
    int secops_max_entries;                /* "secops.max_entries": logs per request, default 1000 */
    char metrics_listen[CONFIG_PATH_MAX];         /* "metrics.listen", default "" = no /metrics (base/listen.h) */
    int gcs_gzip;                          /* "gcs.gzip", default false */
    int64_t outbox_limit_bytes;            /* "outbox.limit_bytes" per tenant, default 1 GiB */
    int64_t spool_min_bytes;               /* "outbox.spool_min_bytes": batches this large go to
                                              <database>.spool/ files, default 1 MiB */
} nsc_config;

/* Fill cfg with the built-in defaults. */
void config_defaults(nsc_config *cfg);

/* Load path over the defaults. Returns 0, or -1 with a message naming the
 * file, line and key in err ("nscollect.conf:12: workers.fetch: expected an
 * integer"). An unreadable, empty, oversized or binary file is an error. */
int config_load(nsc_config *cfg, const char *path, char *err, size_t errlen);

/* Resolve the effective config: path if given, else $NSCOLLECT_CONFIG,
 * else defaults. Same errors as config_load. */
int config_resolve(nsc_config *cfg, const char *path, char *err, size_t errlen);

/* The key table, for tests that check etc/nscollect.conf.example
 * documents every key: number of keys, and the dotted name of key i. */
size_t config_key_count(void);
const char *config_key_name(size_t i);

#endif
