/* json.c - see json.h. jsmn is compiled here once, in strict mode, for
 * every part that includes json.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define JSMN_STRICT
#include <jsmn.h>

#include "base/json.h"

int json_parse(json_doc *d, const char *js, size_t len)
{
    jsmn_parser p;
    d->js = js;
    d->t = NULL;
    jsmn_init(&p);
    d->n = jsmn_parse(&p, js, len, NULL, 0);
    if (d->n <= 0 || d->n > JSON_MAX_TOKENS)
        return -1;
    d->t = calloc((size_t)d->n, sizeof *d->t);
    if (!d->t)
        return -1;
    jsmn_init(&p);
    if (jsmn_parse(&p, js, len, d->t, (unsigned)d->n) != d->n || d->t[0].type != JSMN_OBJECT) {
        free(d->t);
        d->t = NULL;
        return -1;
    }
    return 0;
}

void json_release(json_doc *d)
{
    free(d->t);
    d->t = NULL;
}

/* Index just past the value that starts at token i. */
static int json_skip(const json_doc *d, int i)
{
    int pending = 1;
    while (pending > 0 && i < d->n) {
        pending += d->t[i].size - 1;
        i++;
    }
    return i;
}

/* Index of the value of key in the object at token obj, or -1. */
int json_find(const json_doc *d, int obj, const char *key)
{
    if (obj < 0 || obj >= d->n || d->t[obj].type != JSMN_OBJECT)
        return -1;
    size_t klen = strlen(key);
    int i = obj + 1;
    for (int c = 0; c < d->t[obj].size && i + 1 < d->n; c++) {
        const jsmntok_t *k = &d->t[i];
        if (k->type == JSMN_STRING && (size_t)(k->end - k->start) == klen &&
            memcmp(d->js + k->start, key, klen) == 0)
            return i + 1;
        i = json_skip(d, i);
    }
    return -1;
}

static int hex4(const char *s, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int x = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (x < 0)
            return -1;
        *v = *v << 4 | (unsigned)x;
    }
    return 0;
}

static size_t utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode a \uXXXX escape (and its low surrogate) at s[*i] (just past the
 * 'u'); -1 for a lone surrogate or U+0000. */
static int unescape_u(const char *s, size_t n, size_t *i, unsigned *cp)
{
    if (*i + 4 > n || hex4(s + *i, cp) < 0)
        return -1;
    *i += 4;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF)
        return -1;
    if (*cp >= 0xD800 && *cp <= 0xDBFF) {
        unsigned lo;
        if (*i + 6 > n || s[*i] != '\\' || s[*i + 1] != 'u' || hex4(s + *i + 2, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return -1;
        *i += 6;
        *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    return *cp == 0 ? -1 : 0;
}

/* One escape at s[*i] (just past the backslash) into o; bytes written or -1. */
static int unescape_one(const char *s, size_t n, size_t *i, char *o)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (*i >= n)
        return -1;
    char c = s[(*i)++];
    const char *p = strchr(from, c);
    if (c && p) {
        *o = to[p - from];
        return 1;
    }
    unsigned cp;
    if (c != 'u' || unescape_u(s, n, i, &cp) < 0)
        return -1;
    return (int)utf8_put(o, cp);
}

/* Decoded copy of the JSON string body s[0, n); malloc'd, or NULL. The
 * result is never longer than the input. */
static char *json_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        i++;
        int w = unescape_one(s, n, &i, out + o);
        if (w < 0) {
            OPENSSL_cleanse(out, n + 1);
            free(out);
            return NULL;
        }
        o += (size_t)w;
    }
    out[o] = '\0';
    return out;
}

/* The decoded string value of key in the object at obj; malloc'd or NULL. */
char *json_get_string(const json_doc *d, int obj, const char *key)
{
    int v = json_find(d, obj, key);
    if (v < 0 || d->t[v].type != JSMN_STRING)
        return NULL;
    return json_unescape(d->js + d->t[v].start, (size_t)(d->t[v].end - d->t[v].start));
}

/* The integer value of key in the object at obj; 0, or -1 when absent. */
int json_get_long(const json_doc *d, int obj, const char *key, long *out)
{
    int v = json_find(d, obj, key);
    if (v < 0 || d->t[v].type != JSMN_PRIMITIVE)
        return -1;
    char num[32];
    int len = d->t[v].end - d->t[v].start;
    if (len <= 0 || len >= (int)sizeof num)
        return -1;
    memcpy(num, d->js + d->t[v].start, (size_t)len);
    num[len] = '\0';
    char *end;
    errno = 0;
    *out = strtol(num, &end, 10);
    return errno || (*end && *end != '.') ? -1 : 0;
}

char *json_string(const char *js, size_t len, const char *key1, const char *key2)
{
    json_doc d;
    if (json_parse(&d, js, len) < 0)
        return NULL;
    char *s = NULL;
    if (!key2)
        s = json_get_string(&d, 0, key1);
    else
        s = json_get_string(&d, json_find(&d, 0, key1), key2);
    json_release(&d);
    return s;
}
