/* shard.h - which instance serves a tenant when tenants are spread over N.
 *
 * A tenant belongs to shard jump(h, N), where h is the first 8 bytes (big
 * endian) of SHA-256 of its name and jump() is Lamping and Veach's jump
 * consistent hash ("A Fast, Minimal Memory, Consistent Hash Algorithm",
 * 2014). It depends on the name alone, never on the order tenants were
 * added, so every instance and `shard plan` agree without talking; and when
 * N grows to N + 1 only about 1/(N + 1) of the tenants move, all of them to
 * the new shard (a plain modulo would move most of them).
 * Pure functions: safe on any thread.
 */
#ifndef NSC_SHARD_H
#define NSC_SHARD_H

#include <stddef.h>

#define SHARD_MAX 1024

typedef struct shard {
    int k, n;             /* this instance is shard k of n; n == 0: not sharded */
} shard;

/* Parse "K/N" (0 <= K < N <= SHARD_MAX). 0, or -1 with the reason in err. */
int shard_parse(const char *text, shard *out, char *err, size_t errlen);

/* The shard (0..n-1) that the tenant name belongs to among n. */
int shard_of(const char *name, int n);

/* Whether this instance serves the tenant: always when not sharded. */
int shard_owns(const shard *s, const char *name);

#endif
