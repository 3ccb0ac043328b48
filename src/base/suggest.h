/* suggest.h - "did you mean": the distance between a mistyped name and a
 * known one, shared by the command table (main.c) and the config loader.
 *
 * Pure functions, no allocation, safe from any thread.
 */
#ifndef NSC_SUGGEST_H
#define NSC_SUGGEST_H

#include <stddef.h>

/* Longest name suggest_distance() compares; longer ones are never close. */
#define SUGGEST_NAME_MAX 256

/* Levenshtein distance between a and b (insert, delete, substitute: 1
 * each), or (size_t)-1 when either is longer than SUGGEST_NAME_MAX. */
size_t suggest_distance(const char *a, const char *b);

#endif
