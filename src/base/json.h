/* json.h - reading a few fields out of a small JSON object (jsmn).
 *
 * For replies and files whose shape is an object of strings and numbers:
 * service-account key files, OAuth token replies, Google error bodies.
 * Records themselves are never parsed here (records.h keeps their bytes).
 *
 * A json_doc borrows the text it was parsed from (the caller keeps it alive
 * until json_release) and owns only its token array. Strings handed out are
 * malloc'd and decoded (escapes, \uXXXX as UTF-8); the caller frees them,
 * wiping them first when they may be secret. No errors beyond "absent":
 * every getter returns NULL or -1 when the key is missing, of another type,
 * or its value is not valid JSON. Thread-safe: no shared state.
 */
#ifndef NSC_JSON_H
#define NSC_JSON_H

#include <stddef.h>

#define JSMN_HEADER
#include <jsmn.h>

/* Largest token count accepted: these documents are small. */
#define JSON_MAX_TOKENS 4096

typedef struct json_doc {
    const char *js;     /* borrowed */
    jsmntok_t *t;       /* owned */
    int n;
} json_doc;

/* Tokenize js[0, len): 0 when it is one JSON object, else -1 (d holds
 * nothing to release then, but json_release is harmless). */
int json_parse(json_doc *d, const char *js, size_t len);
void json_release(json_doc *d);

/* Token index of the value of key in the object at token obj (0 is the
 * top-level object), or -1. */
int json_find(const json_doc *d, int obj, const char *key);
/* The decoded string value of key in the object at obj; malloc'd or NULL. */
char *json_get_string(const json_doc *d, int obj, const char *key);
/* The integer value of key in the object at obj: 0, or -1 when absent or
 * not an integer (a fraction is cut, as JSON numbers like 3599.0 appear). */
int json_get_long(const json_doc *d, int obj, const char *key, long *out);

/* One-shot: the string at key1 (or key1.key2 when key2 is not NULL) of the
 * object js[0, len); malloc'd and decoded, or NULL. */
char *json_string(const char *js, size_t len, const char *key1, const char *key2);

#endif
