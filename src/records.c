/* records.c - see records.h.
 *
 * One page goes through two steps:
 *   1. page_validate() reads it once, byte by byte, as strict JSON (RFC
 *      8259: every separator, every number and literal, every escape) and
 *      rejects what NDJSON cannot take: NUL bytes, raw control characters
 *      in strings (they would split a line), nesting deeper than
 *      RECORDS_MAX_DEPTH, more tokens than the page's cap. On the way it
 *      notes the envelope ("result", "wait_time") and where each element
 *      of "result" begins and ends.
 *   2. page_records() gives each element, now known to be valid JSON, to
 *      jsmn (strict, parent links) and takes from its tokens the record's
 *      "_id", times and, when needed, its minified copy. One record's
 *      tokens at a time: the token array stays the size of the largest
 *      record, not of the page, and in cache.
 * When no whitespace was seen inside a record (Netskope's pages are
 * compact), a record's bytes in the body are already minified and are used
 * where they are; otherwise each record is copied into pg->out without it.
 */
#include "records.h"
#include "util.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#define JSMN_STATIC
#include <jsmn.h>

#define DEFAULT_MAX_TOKENS (16u * 1024 * 1024)
#define MIN_TOKENS 256u

typedef jsmntok_t tok;

static inline int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The bytes a token covers, quotes included for strings. */
static size_t span_start(const tok *t)
{
    return (size_t)t->start - (t->type == JSMN_STRING);
}

static size_t span_end(const tok *t)
{
    return (size_t)t->end + (t->type == JSMN_STRING);
}

/* ---- JSON values ---- */

/* The end of the JSON number at p[s] (RFC 8259:
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?), or s when there is none;
 * what follows it is the caller's to check. */
static size_t number_end(const char *p, size_t s, size_t len)
{
    size_t i = s + (p[s] == '-'), d;
    if (i < len && p[i] == '0')
        i++;
    else if (i < len && is_digit(p[i]))
        while (++i < len && is_digit(p[i]))
            ;
    else
        return s;
    if (i < len && p[i] == '.') {
        for (d = ++i; i < len && is_digit(p[i]); i++)
            ;
        if (i == d)
            return s;
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        if (++i < len && (p[i] == '+' || p[i] == '-'))
            i++;
        for (d = i; i < len && is_digit(p[i]); i++)
            ;
        if (i == d)
            return s;
    }
    return i;
}

static int number_ok(const char *p, size_t n)
{
    return n > 0 && number_end(p, 0, n) == n;
}

static int primitive_ok(const char *p, size_t n)
{
    switch (p[0]) {
    case 't': return n == 4 && memcmp(p, "true", 4) == 0;
    case 'f': return n == 5 && memcmp(p, "false", 5) == 0;
    case 'n': return n == 4 && memcmp(p, "null", 4) == 0;
    default:  return number_ok(p, n);
    }
}

static int key_is(const char *js, const tok *t, const char *name, size_t n)
{
    return (size_t)(t->end - t->start) == n && js[t->start] == name[0] &&
           memcmp(js + t->start, name, n) == 0;
}

#define KEY_IS(js, t, lit) key_is((js), (t), (lit), sizeof(lit) - 1)

/* An integer primitive that fits int64_t: 0 and *out, else -1. */
static int int_parse(const char *js, const tok *t, int64_t *out)
{
    if (t->type != JSMN_PRIMITIVE)
        return -1;
    const char *p = js + t->start, *e = js + t->end;
    int neg = *p == '-';
    uint64_t v = 0;
    p += neg;
    if (p == e)
        return -1;
    for (; p < e; p++) {
        if (!is_digit(*p) || v > ((uint64_t)INT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static int64_t int_value(const char *js, const tok *t)
{
    int64_t v;
    return int_parse(js, t, &v) == 0 ? v : -1;
}

/* "wait_time": a number's integer part, clamped to [0, INT64_MAX]; -1 if
 * it is not a number. */
static int64_t wait_value(const char *js, const tok *t)
{
    char tmp[64];
    size_t n = (size_t)(t->end - t->start);
    int64_t v;
    if (t->type != JSMN_PRIMITIVE || !(js[t->start] == '-' || is_digit(js[t->start])))
        return -1;
    if (int_parse(js, t, &v) == 0)
        return v < 0 ? 0 : v;
    if (n >= sizeof(tmp))
        return -1;
    memcpy(tmp, js + t->start, n);
    tmp[n] = '\0';
    double d = strtod(tmp, NULL);
    if (!(d > 0))
        return 0;
    return d >= 9.2e18 ? INT64_MAX : (int64_t)d;
}

/* ---- buffers that grow and are reused ---- */

static int toks_grow(ns_page *pg, size_t want)
{
    if (want > pg->max_tokens)
        want = pg->max_tokens;
    if (want <= pg->ntoks_cap)
        return 0;
    tok *t = realloc(pg->toks, want * sizeof(tok));
    if (!t)
        return -1;
    pg->toks = t;
    pg->ntoks_cap = (unsigned)want;
    return 0;
}

static int recs_reserve(ns_page *pg, size_t need)
{
    if (need <= pg->recs_cap)
        return 0;
    size_t cap = pg->recs_cap ? pg->recs_cap : 64;
    while (cap < need)
        cap *= 2;
    ns_record *r = realloc(pg->recs, cap * sizeof(*r));
    if (!r)
        return -1;
    pg->recs = r;
    pg->recs_cap = cap;
    return 0;
}

/* ---- 1. validating ---- */

/* What may come next. */
enum expect {
    X_VALUE,            /* after ':' or ',' in an array, and at the start */
    X_VALUE_OR_CLOSE,   /* after '[' */
    X_KEY,              /* after ',' in an object */
    X_KEY_OR_CLOSE,     /* after '{' */
    X_COLON,            /* after a key */
    X_COMMA_OR_CLOSE,   /* after a value inside a container */
    X_END               /* after the top-level value: only whitespace */
};

/* The top-level keys that matter, as the lexer meets them. */
enum envelope_key { K_OTHER, K_RESULT, K_WAIT_TIME };

typedef struct lexer {
    const char *js;
    size_t len;
    ns_page *pg;
    int depth;
    unsigned char in_object[RECORDS_MAX_DEPTH];
    unsigned ntoks;            /* tokens so far, counted as jsmn counts them */
    /* the envelope */
    int top_is_object;
    enum envelope_key key;     /* the top-level key whose value comes next */
    int results;               /* "result" keys seen */
    int result_is_array;       /* the first one's value */
    int in_result;             /* inside that array: its elements are at depth 2 */
    long not_object;           /* index of the first element that is not an object, or -1 */
    size_t elements;
    int ws_in_records;         /* whitespace outside strings inside an element */
    char *err;
    size_t errlen;
} lexer;

static int lex_bad(const lexer *lx, size_t i)
{
    return seterr(lx->err, lx->errlen, "invalid JSON at byte %zu", i);
}

static int lex_truncated(const lexer *lx)
{
    return seterr(lx->err, lx->errlen, "truncated JSON at byte %zu", lx->len);
}

static int lex_bad_byte(const lexer *lx, size_t i)
{
    if (lx->js[i] == '\0')
        return seterr(lx->err, lx->errlen, "NUL byte in body at byte %zu", i);
    return seterr(lx->err, lx->errlen, "control character in string at byte %zu", i);
}

/* 1 for the bytes a string's fast loop must stop at: controls, '"', '\\'. */
static const unsigned char string_stop[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

static int is_hex(unsigned char c)
{
    return is_digit((char)c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* One escape; *i is at the backslash, left at its last byte. */
static int lex_escape(const lexer *lx, size_t *i)
{
    const unsigned char *p = (const unsigned char *)lx->js;
    size_t k = *i + 1;
    if (k >= lx->len)
        return lex_truncated(lx);
    switch (p[k]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        break;
    case 'u':
        for (int h = 0; h < 4; h++) {
            if (++k >= lx->len)
                return lex_truncated(lx);
            if (!is_hex(p[k]))
                return p[k] < 0x20 ? lex_bad_byte(lx, k) : lex_bad(lx, k);
        }
        break;
    default:
        return p[k] < 0x20 ? lex_bad_byte(lx, k) : lex_bad(lx, k);
    }
    *i = k;
    return 0;
}

/* The first byte at or after k that a string must stop at (or len).
 * Most of a page's bytes are inside strings: with SSE2 (every x86-64)
 * 16 of them are looked at in a few instructions. */
static size_t string_skip(const unsigned char *p, size_t k, size_t len)
{
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    for (; k + 16 <= len; k += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + k));
        __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash));
        stop = _mm_or_si128(stop, _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));  /* v <= 0x1f */
        unsigned bits = (unsigned)_mm_movemask_epi8(stop);
        if (bits)
            return k + (size_t)__builtin_ctz(bits);
    }
#endif
    while (k < len && !string_stop[p[k]])
        k++;
    return k;
}

/* *i is at the opening quote; leave it at the closing one. */
static int lex_string(const lexer *lx, size_t *i)
{
    const unsigned char *p = (const unsigned char *)lx->js;
    size_t len = lx->len;
    for (size_t k = string_skip(p, *i + 1, len); k < len; k = string_skip(p, k + 1, len)) {
        if (p[k] == '"') {
            *i = k;
            return 0;
        }
        if (p[k] != '\\')
            return lex_bad_byte(lx, k);
        if (lex_escape(lx, &k) < 0)
            return -1;
    }
    return lex_truncated(lx);
}

/* 1 for the bytes that end a literal or number (and NUL). */
static const unsigned char primitive_end[256] = {
    [' '] = 1, ['\n'] = 1, ['\r'] = 1, ['\t'] = 1, [','] = 1, [']'] = 1, ['}'] = 1,
    [':'] = 1, ['"'] = 1, ['['] = 1, ['{'] = 1, [0] = 1,
};

/* A literal or number at *i, left at its last byte. At the end of the
 * body inside a container it may be cut short: truncated, not invalid. */
static int lex_primitive(lexer *lx, size_t *i)
{
    size_t s = *i, e = lx->js[s] == '-' || is_digit(lx->js[s]) ? number_end(lx->js, s, lx->len) : s;
    int number = e > s && (e == lx->len || primitive_end[(unsigned char)lx->js[e]]);
    if (!number)                        /* a literal, or junk: up to its end */
        for (e = s + 1; e < lx->len && !primitive_end[(unsigned char)lx->js[e]]; e++)
            ;
    if (e == lx->len && lx->depth > 0)
        return lex_truncated(lx);
    if (!number && !primitive_ok(lx->js + s, e - s))
        return seterr(lx->err, lx->errlen, "invalid JSON value '%.*s' at byte %zu",
                      e - s > 24 ? 24 : (int)(e - s), lx->js + s, s);
    if (lx->depth == 1 && lx->key == K_WAIT_TIME) {
        tok t = { .type = JSMN_PRIMITIVE, .start = (int)s, .end = (int)e };
        lx->pg->wait_time = wait_value(lx->js, &t);
    }
    *i = e - 1;
    return 0;
}

static enum expect after_value(const lexer *lx)
{
    return lx->depth ? X_COMMA_OR_CLOSE : X_END;
}

/* Count a token against the page's cap. */
static int lex_count(lexer *lx)
{
    if (++lx->ntoks > lx->pg->max_tokens)
        return seterr(lx->err, lx->errlen, "page has more than %u JSON tokens",
                      lx->pg->max_tokens);
    return 0;
}

/* A top-level key: which one it is decides what its value is for. */
static void lex_key(lexer *lx, size_t open_quote, size_t close_quote)
{
    tok k = { .type = JSMN_STRING, .start = (int)open_quote + 1, .end = (int)close_quote };
    lx->key = KEY_IS(lx->js, &k, "result")      ? K_RESULT
            : KEY_IS(lx->js, &k, "wait_time")   ? K_WAIT_TIME
            : K_OTHER;
}

/* A value begins at byte i: note what the envelope needs. */
static int lex_value(lexer *lx, size_t i)
{
    char c = lx->js[i];
    if (lx->depth > 2)
        return 0;                        /* inside a record: most values */
    if (lx->ntoks == 1)
        lx->top_is_object = c == '{';
    if (lx->depth == 1 && lx->key == K_RESULT && ++lx->results == 1)
        lx->result_is_array = c == '[';
    else if (lx->depth == 1 && lx->key == K_WAIT_TIME)
        lx->pg->wait_time = -1;          /* a primitive sets it in lex_primitive */
    if (lx->depth != 2 || !lx->in_result)
        return 0;
    if (c != '{') {
        if (lx->not_object < 0)
            lx->not_object = (long)lx->elements;
    } else {
        if (recs_reserve(lx->pg, lx->pg->nrecs + 1) < 0)
            return seterr(lx->err, lx->errlen, "out of memory for %zu records",
                          lx->pg->nrecs + 1);
        lx->pg->recs[lx->pg->nrecs].data = lx->js + i;
    }
    lx->elements++;
    return 0;
}

static int lex_open(lexer *lx, size_t i, enum expect *x)
{
    if (lx->depth == RECORDS_MAX_DEPTH)
        return seterr(lx->err, lx->errlen, "JSON nested deeper than %d levels at byte %zu",
                      RECORDS_MAX_DEPTH, i);
    int obj = lx->js[i] == '{';
    if (lx->depth == 1 && lx->key == K_RESULT && lx->results == 1 && !obj)
        lx->in_result = 1;
    lx->in_object[lx->depth++] = (unsigned char)obj;
    *x = obj ? X_KEY_OR_CLOSE : X_VALUE_OR_CLOSE;
    return 0;
}

/* A closing bracket is allowed right after its opening one or after a
 * value, and must match. Closing an element of "result" ends a record. */
static int lex_close(lexer *lx, size_t i, enum expect *x)
{
    int obj = lx->js[i] == '}';
    int empty = *x == (obj ? X_KEY_OR_CLOSE : X_VALUE_OR_CLOSE);
    if (!lx->depth || lx->in_object[lx->depth - 1] != obj ||
        !(empty || *x == X_COMMA_OR_CLOSE))
        return lex_bad(lx, i);
    lx->depth--;
    if (lx->in_result && lx->depth == 2 && obj) {
        ns_record *r = &lx->pg->recs[lx->pg->nrecs++];
        r->len = (size_t)(lx->js + i + 1 - r->data);
    } else if (lx->in_result && lx->depth == 1)
        lx->in_result = 0;
    *x = after_value(lx);
    return 0;
}

/* After the top-level value: a byte that could start more JSON is
 * trailing data, anything else is not JSON. */
static int lex_trailing(const lexer *lx, size_t i)
{
    char c = lx->js[i];
    if (c == '\0')
        return lex_bad_byte(lx, i);
    if (strchr("{[\":,-0123456789tfn", c))
        return seterr(lx->err, lx->errlen, "trailing data after JSON at byte %zu", i);
    return lex_bad(lx, i);
}

static int lex_token(lexer *lx, size_t *i, enum expect *x)
{
    char c = lx->js[*i];
    int want_value = *x == X_VALUE || *x == X_VALUE_OR_CLOSE;
    size_t at = *i;
    if (*x == X_END)
        return lex_trailing(lx, *i);
    switch (c) {
    case '"':
        if (!want_value && *x != X_KEY && *x != X_KEY_OR_CLOSE)
            return lex_bad(lx, *i);
        if (lex_count(lx) < 0 || (want_value && lex_value(lx, at) < 0) ||
            lex_string(lx, i) < 0)
            return -1;
        if (!want_value && lx->depth == 1)
            lex_key(lx, at, *i);
        *x = want_value ? after_value(lx) : X_COLON;
        return 0;
    case '{': case '[':
        if (!want_value)
            return lex_bad(lx, *i);
        if (lex_count(lx) < 0 || lex_value(lx, at) < 0)
            return -1;
        return lex_open(lx, *i, x);
    case '}': case ']':
        return lex_close(lx, *i, x);
    case ':':
        if (*x != X_COLON)
            return lex_bad(lx, *i);
        *x = X_VALUE;
        return 0;
    case ',':
        if (*x != X_COMMA_OR_CLOSE)
            return lex_bad(lx, *i);
        *x = lx->in_object[lx->depth - 1] ? X_KEY : X_VALUE;
        return 0;
    case '-': case 't': case 'f': case 'n':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        if (!want_value)
            return lex_bad(lx, *i);
        if (lex_count(lx) < 0 || lex_value(lx, at) < 0 || lex_primitive(lx, i) < 0)
            return -1;
        *x = after_value(lx);
        return 0;
    case '\0':
        return lex_bad_byte(lx, *i);
    default:
        return lex_bad(lx, *i);
    }
}

/* What a valid page must also be: an object with one "result", an array
 * of objects. */
static int envelope_check(const lexer *lx)
{
    if (!lx->top_is_object)
        return seterr(lx->err, lx->errlen, "top level is not an object");
    if (lx->results > 1)
        return seterr(lx->err, lx->errlen, "\"result\" appears twice");
    if (!lx->results)
        return seterr(lx->err, lx->errlen, "\"result\" is missing");
    if (!lx->result_is_array)
        return seterr(lx->err, lx->errlen, "\"result\" is not an array");
    if (lx->not_object >= 0)
        return seterr(lx->err, lx->errlen, "result[%ld] is not an object", lx->not_object);
    return 0;
}

/* Step 1: fills pg->recs with the elements' spans and pg->wait_time.
 * *ws_in_records: whitespace outside strings inside an element. */
static int page_validate(ns_page *pg, const char *js, size_t len, int *ws_in_records,
                         char *err, size_t errlen)
{
    lexer lx = { .js = js, .len = len, .pg = pg, .not_object = -1, .err = err,
                 .errlen = errlen };
    enum expect x = X_VALUE;
    for (size_t i = 0; i < len; i++) {
        if (is_ws(js[i])) {
            lx.ws_in_records |= lx.in_result && lx.depth >= 3;
            continue;
        }
        if (lex_token(&lx, &i, &x) < 0)
            return -1;
    }
    if (!lx.ntoks)
        return seterr(err, errlen, "empty body");
    if (x != X_END)
        return lex_truncated(&lx);
    *ws_in_records = lx.ws_in_records;
    return envelope_check(&lx);
}

/* ---- 2. records ---- */

/* Tokenize one record (valid JSON: jsmn can only run out of tokens, and
 * then resumes where it stopped once the array has grown). */
static int record_tokenize(ns_page *pg, const char *rec, size_t len, unsigned *ntoks)
{
    jsmn_parser p;
    int r;
    if (toks_grow(pg, MIN_TOKENS) < 0)
        return -1;
    jsmn_init(&p);
    while ((r = jsmn_parse(&p, rec, len, pg->toks, pg->ntoks_cap)) == JSMN_ERROR_NOMEM)
        if (pg->ntoks_cap >= pg->max_tokens || toks_grow(pg, (size_t)pg->ntoks_cap * 2) < 0)
            return -1;
    if (r < 1)
        return -1;
    *ntoks = p.toknext;
    return 0;
}

/* The index of the token after t[i] and everything inside it. */
static unsigned tok_next(const tok *t, unsigned n, unsigned i)
{
    unsigned j = i + 1;
    if (t[i].type == JSMN_OBJECT || t[i].type == JSMN_ARRAY)
        while (j < n && t[j].start < t[i].end)
            j++;
    return j;
}

/* The dedupe key: of the "_id" value (t_id) when there is one, else of
 * the minified record. A container _id is minified past the end of
 * pg->out and then dropped again. */
static int record_key(ns_page *pg, const char *js, const tok *t_id, const char *rec,
                      ns_record *r)
{
    if (!t_id) {
        records_hash("rec", rec, r->len, r->key);
        return 0;
    }
    size_t s = span_start(t_id), e = span_end(t_id), mark = pg->out.len;
    if (t_id->type == JSMN_STRING || t_id->type == JSMN_PRIMITIVE) {
        records_hash("id", js + s, e - s, r->key);
        return 0;
    }
    if (records_minify(&pg->out, js + s, e - s) < 0)
        return -1;
    records_hash("id", pg->out.data + mark, pg->out.len - mark, r->key);
    pg->out.len = mark;
    pg->out.data[mark] = '\0';
    return 0;
}

/* Copy the non-whitespace bytes of [p, e): the short gaps between tokens. */
static char *copy_gap(char *d, const char *p, const char *e)
{
    for (; p < e; p++)
        if (!is_ws(*p))
            *d++ = *p;
    return d;
}

/* Minify the checked record t[i] (tokens i to end-1) into pg->out:
 * strings and primitives are copied whole, only the gaps between them
 * (brackets, separators, whitespace) are looked at byte by byte. */
static int record_copy(ns_page *pg, const char *js, const tok *t, unsigned i,
                       unsigned end)
{
    size_t pos = (size_t)t[i].start;
    if (buf_reserve(&pg->out, (size_t)t[i].end - pos) < 0)
        return -1;
    char *d = pg->out.data + pg->out.len;
    for (unsigned j = i + 1; j < end; j++) {
        if (t[j].type == JSMN_OBJECT || t[j].type == JSMN_ARRAY)
            continue;
        size_t s = span_start(&t[j]), e = span_end(&t[j]);
        d = copy_gap(d, js + pos, js + s);
        memcpy(d, js + s, e - s);
        d += e - s;
        pos = e;
    }
    d = copy_gap(d, js + pos, js + t[i].end);
    pg->out.len = (size_t)(d - pg->out.data);
    pg->out.data[pg->out.len] = '\0';
    return 0;
}

/* Record r, whose bytes are rec[0, r->len) in the body, tokenized in t:
 * its times, its key, and its minified copy when the page needs copies
 * (r->data is then set by page_records(), once pg->out has stopped
 * growing). */
static int record_take(ns_page *pg, ns_record *r, const tok *t, unsigned n, int copy)
{
    const char *rec = r->data;
    const tok *id = NULL, *ts = NULL, *ins = NULL;
    unsigned j = 1;
    for (int k = 0; k < t[0].size; k++) {
        const tok *key = &t[j], *val = &t[j + 1];
        if (!id && KEY_IS(rec, key, "_id"))
            id = val;
        else if (!ts && KEY_IS(rec, key, "timestamp"))
            ts = val;
        else if (!ins && KEY_IS(rec, key, "_insertion_epoch_timestamp"))
            ins = val;
        j = tok_next(t, n, j + 1);
    }
    const char *min = rec;
    if (copy) {
        size_t off = pg->out.len;
        if (record_copy(pg, rec, t, 0, n) < 0)
            return -1;
        min = pg->out.data + off;
        r->len = pg->out.len - off;
        r->data = NULL;
    }
    r->event_time = ts ? int_value(rec, ts) : -1;
    r->insertion_time = ins ? int_value(rec, ins) : -1;
    return record_key(pg, rec, id, min, r);
}

static int page_records(ns_page *pg, int copy, char *err, size_t errlen)
{
    for (size_t k = 0; k < pg->nrecs; k++) {
        ns_record *r = &pg->recs[k];
        unsigned n;
        if (record_tokenize(pg, r->data, r->len, &n) < 0)
            return seterr(err, errlen, "cannot tokenize result[%zu] (out of memory?)", k);
        if (record_take(pg, r, pg->toks, n, copy) < 0)
            return seterr(err, errlen, "out of memory at result[%zu]", k);
    }
    for (size_t k = 0, at = 0; copy && k < pg->nrecs; k++) {
        pg->recs[k].data = pg->out.data + at;        /* copies lie back to back */
        at += pg->recs[k].len;
    }
    return 0;
}

/* ---- the interface ---- */

void ns_page_init(ns_page *pg, unsigned max_tokens)
{
    memset(pg, 0, sizeof(*pg));
    buf_init(&pg->out, 0);
    pg->wait_time = -1;
    pg->max_tokens = max_tokens ? max_tokens : DEFAULT_MAX_TOKENS;
}

void ns_page_release(ns_page *pg)
{
    buf_release(&pg->out);
    free(pg->recs);
    free(pg->toks);
    ns_page_init(pg, pg->max_tokens);
}

static int page_parse(ns_page *pg, const char *body, size_t len, char *err,
                      size_t errlen)
{
    int copy = 0;
    if (len > INT_MAX)
        return seterr(err, errlen, "body of %zu bytes is larger than %d", len, INT_MAX);
    if (page_validate(pg, body, len, &copy, err, errlen) < 0)
        return -1;
    if (copy && buf_reserve(&pg->out, len) < 0)
        return seterr(err, errlen, "out of memory for a copy of %zu bytes", len);
    return page_records(pg, copy, err, errlen);
}

int ns_page_parse(ns_page *pg, const char *body, size_t len, char *err, size_t errlen)
{
    pg->nrecs = 0;
    pg->wait_time = -1;
    buf_reset(&pg->out);
    if (err && errlen)
        err[0] = '\0';
    if (page_parse(pg, body, len, err, errlen) == 0)
        return 0;
    pg->nrecs = 0;
    pg->wait_time = -1;
    buf_reset(&pg->out);
    return -1;
}

int records_minify(buf *out, const char *src, size_t len)
{
    if (buf_reserve(out, len) < 0)
        return -1;
    char *d = out->data + out->len;
    const char *s = src, *e = src + len;
    while (s < e) {
        char c = *s++;
        if (is_ws(c))
            continue;
        *d++ = c;
        if (c != '"')
            continue;
        while (s < e) {              /* a string: copy up to its end quote */
            c = *s++;
            *d++ = c;
            if (c == '"')
                break;
            if (c == '\\' && s < e)
                *d++ = *s++;
        }
    }
    out->len = (size_t)(d - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* ---- hashing: one EVP_MD_CTX per thread, reused ---- */

static pthread_once_t hash_once = PTHREAD_ONCE_INIT;
static pthread_key_t hash_key;
static const EVP_MD *hash_md;

static void hash_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void hash_setup(void)
{
    if (pthread_key_create(&hash_key, hash_ctx_free) != 0)
        abort();
    hash_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!hash_md)
        hash_md = EVP_sha256();
}

static EVP_MD_CTX *hash_ctx(void)
{
    pthread_once(&hash_once, hash_setup);
    EVP_MD_CTX *c = pthread_getspecific(hash_key);
    if (!c && (c = EVP_MD_CTX_new()) != NULL && pthread_setspecific(hash_key, c) != 0) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    return c;
}

void records_hash(const char *domain, const void *p, size_t len,
                  unsigned char key[RECORDS_KEY_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    EVP_MD_CTX *c = hash_ctx();
    /* A wrong key would silently drop records as duplicates: a digest
     * that cannot be computed (out of memory) is fatal. */
    if (!c || !hash_md || !EVP_DigestInit_ex2(c, hash_md, NULL) ||
        !EVP_DigestUpdate(c, domain, strlen(domain) + 1) ||
        !EVP_DigestUpdate(c, p, len) || !EVP_DigestFinal_ex(c, md, NULL)) {
        fputs("nscollect: SHA-256 failed (out of memory?)\n", stderr);
        abort();
    }
    memcpy(key, md, RECORDS_KEY_LEN);
}
