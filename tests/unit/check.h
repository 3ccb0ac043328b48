/* check.h - the unit tests' whole framework: numbered checks, expected
 * value beside the input, a failure prints file:line and what differed. */
#ifndef NSC_CHECK_H
#define NSC_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond) do { check_count++; if (!(cond)) { check_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)

#define CHECK_INT(got, want) do { long long g_ = (long long)(got), w_ = (long long)(want); \
    check_count++; if (g_ != w_) { check_failures++; \
    fprintf(stderr, "%s:%d: %s = %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); } } while (0)

#define CHECK_STR(got, want) do { const char *g_ = (got), *w_ = (want); check_count++; \
    if (!g_ || strcmp(g_, w_) != 0) { check_failures++; \
    fprintf(stderr, "%s:%d: %s = \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got, g_ ? g_ : "(null)", w_); } } while (0)

#define CHECK_MEM(got, glen, want) do { const char *w_ = (want); size_t wl_ = strlen(w_); \
    check_count++; if ((size_t)(glen) != wl_ || memcmp((got), w_, wl_) != 0) { check_failures++; \
    fprintf(stderr, "%s:%d: %s = \"%.*s\", want \"%s\"\n", __FILE__, __LINE__, #got, (int)(glen), (const char *)(got), w_); } } while (0)

/* Substring check for error messages. */
#define CHECK_HAS(hay, needle) do { const char *h_ = (hay), *n_ = (needle); check_count++; \
    if (!h_ || !strstr(h_, n_)) { check_failures++; \
    fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, h_ ? h_ : "(null)", n_); } } while (0)

#define CHECK_DONE() do { printf("%s: %d checks, %d failed\n", __FILE__, check_count, check_failures); \
    return check_failures ? 1 : 0; } while (0)

#endif
