/* records.c - see records.h.
 *
 * One page goes through four steps, each linear in the body:
 *   1. page_validate() reads it once as strict JSON (RFC 8259: every
 *      separator, every number and literal, every escape) and rejects what
 *      NDJSON or jsmn cannot take: NUL bytes, raw control characters in
 *      strings (they would split a line), nesting deeper than
 *      RECORDS_MAX_DEPTH (jsmn's cost per closing bracket is the depth).
 *      jsmn's strict mode alone accepts [1 2], {"a":1,}, tru and 01.
 *   2. jsmn tokenizes the now valid page (parent links, so that closing a
 *      container is O(depth), not O(tokens)); the token array grows on
 *      JSMN_ERROR_NOMEM and jsmn resumes where it stopped.
 *   3. page_envelope() finds "result" and "wait_time" among the tokens.
 *   4. page_records() yields each element of "result" without its
 *      whitespace and computes its dedupe key. When page_validate() saw no
 *      whitespace inside any record (Netskope's pages are compact), a
 *      record's bytes in the body are already minified and are used where
 *      they are; otherwise each record is copied into pg->out without it.
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

/* ---- 1. validating ---- */

/* A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number_ok(const char *p, size_t n)
{
    size_t i = (n && p[0] == '-'), d;
    if (i < n && p[i] == '0')
        i++;
    else if (i < n && is_digit(p[i]))
        while (i < n && is_digit(p[i]))
            i++;
    else
        return 0;
    if (i < n && p[i] == '.') {
        for (d = ++i; i < n && is_digit(p[i]); i++)
            ;
        if (i == d)
            return 0;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        for (d = i; i < n && is_digit(p[i]); i++)
            ;
        if (i == d)
            return 0;
    }
    return i == n;
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

typedef struct lexer {
    const char *js;
    size_t len;
    int depth;
    unsigned char in_object[RECORDS_MAX_DEPTH];
    int ws_in_records;  /* whitespace outside strings at depth >= 3 */
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
static int lex_primitive(const lexer *lx, size_t *i)
{
    size_t s = *i, e = s + 1;
    while (e < lx->len && !primitive_end[(unsigned char)lx->js[e]])
        e++;
    if (e == lx->len && lx->depth > 0)
        return lex_truncated(lx);
    if (!primitive_ok(lx->js + s, e - s))
        return seterr(lx->err, lx->errlen, "invalid JSON value '%.*s' at byte %zu",
                      e - s > 24 ? 24 : (int)(e - s), lx->js + s, s);
    *i = e - 1;
    return 0;
}

static enum expect after_value(const lexer *lx)
{
    return lx->depth ? X_COMMA_OR_CLOSE : X_END;
}

static int lex_open(lexer *lx, size_t i, enum expect *x)
{
    if (lx->depth == RECORDS_MAX_DEPTH)
        return seterr(lx->err, lx->errlen, "JSON nested deeper than %d levels at byte %zu",
                      RECORDS_MAX_DEPTH, i);
    int obj = lx->js[i] == '{';
    lx->in_object[lx->depth++] = (unsigned char)obj;
    *x = obj ? X_KEY_OR_CLOSE : X_VALUE_OR_CLOSE;
    return 0;
}

/* A closing bracket is allowed right after its opening one or after a
 * value, and must match. */
static int lex_close(lexer *lx, size_t i, enum expect *x)
{
    int obj = lx->js[i] == '}';
    int empty = *x == (obj ? X_KEY_OR_CLOSE : X_VALUE_OR_CLOSE);
    if (!lx->depth || lx->in_object[lx->depth - 1] != obj ||
        !(empty || *x == X_COMMA_OR_CLOSE))
        return lex_bad(lx, i);
    lx->depth--;
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
    if (*x == X_END)
        return lex_trailing(lx, *i);
    switch (c) {
    case '"':
        if (!want_value && *x != X_KEY && *x != X_KEY_OR_CLOSE)
            return lex_bad(lx, *i);
        if (lex_string(lx, i) < 0)
            return -1;
        *x = want_value ? after_value(lx) : X_COLON;
        return 0;
    case '{': case '[':
        return want_value ? lex_open(lx, *i, x) : lex_bad(lx, *i);
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
        if (lex_primitive(lx, i) < 0)
            return -1;
        *x = after_value(lx);
        return 0;
    case '\0':
        return lex_bad_byte(lx, *i);
    default:
        return lex_bad(lx, *i);
    }
}

/* Step 1. *ws_in_records: whitespace outside strings inside an element of
 * "result" (or as deep elsewhere in the envelope, which only costs the
 * copies). */
static int page_validate(const char *js, size_t len, int *ws_in_records, char *err,
                         size_t errlen)
{
    lexer lx = { .js = js, .len = len, .err = err, .errlen = errlen };
    enum expect x = X_VALUE;
    int seen = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_ws(js[i])) {
            lx.ws_in_records |= lx.depth >= 3;
            continue;
        }
        seen = 1;
        if (lex_token(&lx, &i, &x) < 0)
            return -1;
    }
    if (!seen)
        return seterr(err, errlen, "empty body");
    if (x != X_END)
        return lex_truncated(&lx);
    *ws_in_records = lx.ws_in_records;
    return 0;
}

/* ---- 2. tokenizing ---- */

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

static int tokenize_error(int r, const jsmn_parser *p, size_t len, char *err,
                          size_t errlen)
{
    if (r == JSMN_ERROR_PART)
        return seterr(err, errlen, "truncated JSON at byte %zu", len);
    return seterr(err, errlen, "invalid JSON at byte %u", p->pos);
}

/* Tokenize body into pg->toks; *ntoks gets the token count. */
static int page_tokenize(ns_page *pg, const char *body, size_t len,
                         unsigned *ntoks, char *err, size_t errlen)
{
    jsmn_parser p;
    int r;
    size_t guess = len / 16 > MIN_TOKENS ? len / 16 : MIN_TOKENS;
    if (toks_grow(pg, guess) < 0)
        return seterr(err, errlen, "out of memory for %zu JSON tokens", guess);
    jsmn_init(&p);
    while ((r = jsmn_parse(&p, body, len, pg->toks, pg->ntoks_cap)) ==
           JSMN_ERROR_NOMEM) {
        if (pg->ntoks_cap >= pg->max_tokens)
            return seterr(err, errlen, "page has more than %u JSON tokens",
                        pg->max_tokens);
        if (toks_grow(pg, (size_t)pg->ntoks_cap * 2) < 0)
            return seterr(err, errlen, "out of memory for %u JSON tokens",
                        pg->ntoks_cap);
    }
    if (r < 0)
        return tokenize_error(r, &p, len, err, errlen);
    *ntoks = p.toknext;
    return 0;
}

/* ---- 3. the envelope ---- */

/* The index of the token after t[i] and everything inside it. */
static unsigned tok_next(const tok *t, unsigned n, unsigned i)
{
    unsigned j = i + 1;
    if (t[i].type == JSMN_OBJECT || t[i].type == JSMN_ARRAY)
        while (j < n && t[j].start < t[i].end)
            j++;
    return j;
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

/* Find "result" (returned in *res) and "wait_time" in the top object. */
static int page_envelope(ns_page *pg, const char *js, const tok *t, unsigned n,
                         unsigned *res, char *err, size_t errlen)
{
    unsigned j = 1;
    *res = 0;
    if (t[0].type != JSMN_OBJECT)
        return seterr(err, errlen, "top level is not an object");
    for (int k = 0; k < t[0].size; k++) {
        unsigned v = j + 1;
        if (KEY_IS(js, &t[j], "result")) {
            if (*res)
                return seterr(err, errlen, "\"result\" appears twice");
            *res = v;
        } else if (KEY_IS(js, &t[j], "wait_time")) {
            pg->wait_time = wait_value(js, &t[v]);
        }
        j = tok_next(t, n, v);
    }
    if (!*res)
        return seterr(err, errlen, "\"result\" is missing");
    if (t[*res].type != JSMN_ARRAY)
        return seterr(err, errlen, "\"result\" is not an array");
    return 0;
}

/* ---- 4. records ---- */

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

/* Add the object t[i] as a record, in place in the body when the page is
 * compact (copy 0), else as a copy appended to pg->out whose data pointer
 * page_records() sets once pg->out has stopped growing. *next gets the
 * token after it. */
static int record_add(ns_page *pg, const char *js, const tok *t, unsigned n,
                      unsigned i, int copy, unsigned *next)
{
    const tok *id = NULL, *ts = NULL, *ins = NULL;
    unsigned j = i + 1;
    for (int k = 0; k < t[i].size; k++) {
        const tok *key = &t[j], *val = &t[j + 1];
        if (!id && KEY_IS(js, key, "_id"))
            id = val;
        else if (!ts && KEY_IS(js, key, "timestamp"))
            ts = val;
        else if (!ins && KEY_IS(js, key, "_insertion_epoch_timestamp"))
            ins = val;
        j = tok_next(t, n, j + 1);
    }
    *next = j;
    ns_record *r = &pg->recs[pg->nrecs];
    const char *rec = js + t[i].start;
    r->data = NULL;
    r->len = (size_t)(t[i].end - t[i].start);
    if (copy) {
        size_t off = pg->out.len;
        if (record_copy(pg, js, t, i, j) < 0)
            return -1;
        rec = pg->out.data + off;
        r->len = pg->out.len - off;
    } else
        r->data = rec;
    r->event_time = ts ? int_value(js, ts) : -1;
    r->insertion_time = ins ? int_value(js, ins) : -1;
    if (record_key(pg, js, id, rec, r) < 0)
        return -1;
    pg->nrecs++;
    return 0;
}

static int page_records(ns_page *pg, const char *js, const tok *t, unsigned n,
                        unsigned res, int copy, char *err, size_t errlen)
{
    const tok *a = &t[res];
    unsigned j = res + 1;
    if (recs_reserve(pg, (size_t)a->size) < 0 ||
        (copy && buf_reserve(&pg->out, (size_t)(a->end - a->start)) < 0))
        return seterr(err, errlen, "out of memory for %d records", a->size);
    for (int k = 0; k < a->size; k++) {
        if (t[j].type != JSMN_OBJECT)
            return seterr(err, errlen, "result[%d] is not an object", k);
        if (record_add(pg, js, t, n, j, copy, &j) < 0)
            return seterr(err, errlen, "out of memory at result[%d]", k);
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
    unsigned ntoks = 0, res = 0;
    int copy = 0;
    if (len > INT_MAX)
        return seterr(err, errlen, "body of %zu bytes is larger than %d", len, INT_MAX);
    if (page_validate(body, len, &copy, err, errlen) < 0)
        return -1;
    if (page_tokenize(pg, body, len, &ntoks, err, errlen) < 0)
        return -1;
    if (page_envelope(pg, body, pg->toks, ntoks, &res, err, errlen) < 0)
        return -1;
    return page_records(pg, body, pg->toks, ntoks, res, copy, err, errlen);
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
