/* records.c - see records.h.
 *
 * One page goes through five steps, each linear in the body:
 *   1. page_scan() lexes it the way jsmn will and rejects what jsmn would
 *      take or choke on: NUL bytes, raw control characters in strings
 *      (they would split an NDJSON line), nesting deeper than
 *      RECORDS_MAX_DEPTH (jsmn's cost per closing bracket is the depth).
 *   2. jsmn tokenizes it (strict mode; parent links so that closing a
 *      container is O(depth), not O(tokens)); the token array grows on
 *      JSMN_ERROR_NOMEM and jsmn resumes where it stopped.
 *   3. page_check() walks the tokens in document order and checks every
 *      byte jsmn does not: the separators between tokens (jsmn accepts
 *      [1 2], {"a":1,} and friends), primitives (jsmn accepts tru, 01),
 *      and trailing data.
 *   4. page_envelope() finds "result" and "wait_time".
 *   5. page_records() yields each element of "result" without its
 *      whitespace and computes its dedupe key. When page_scan() saw no
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

#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#define JSMN_STATIC
#include <jsmn.h>

#define DEFAULT_MAX_TOKENS (16u * 1024 * 1024)
#define MIN_TOKENS 256u
#define NO_ERROR ((size_t)-1)

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

/* ---- 1. tokenizing ---- */

/* jsmn closes a container by walking up from the last token, so its cost
 * per close is the nesting depth: [[[[...]]]] would make it quadratic.
 * This pass lexes the way jsmn does (strings, primitives up to their
 * delimiter) and, before jsmn runs, rejects deep nesting, NUL bytes, and
 * raw control characters in strings (jsmn takes them; they would split
 * an NDJSON line). It sees every byte of every string jsmn will see. */
typedef struct scan {
    const char *js;
    size_t len;
    char *err;
    size_t errlen;
} scan;

static int scan_bad_byte(const scan *sc, size_t i)
{
    if (sc->js[i] == '\0')
        return seterr(sc->err, sc->errlen, "NUL byte in body at byte %zu", i);
    return seterr(sc->err, sc->errlen, "control character in string at byte %zu", i);
}

/* 1 for the bytes scan_string must stop at: controls, '"' and '\\'. */
static const unsigned char string_stop[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

/* *i is at the opening quote; leave it at the closing one (or at len). */
static int scan_string(const scan *sc, size_t *i)
{
    const unsigned char *p = (const unsigned char *)sc->js;
    size_t k = *i + 1, len = sc->len;
    for (; k < len; k++) {
        unsigned char c = p[k];
        if (!string_stop[c])
            continue;
        if (c == '"')
            break;
        if (c == '\\' && ++k < len && p[k] != '\0')
            continue;
        if (k < len)
            return scan_bad_byte(sc, k);
    }
    *i = k < len ? k : len;
    return 0;
}

static size_t scan_primitive(const char *js, size_t len, size_t i)
{
    while (i + 1 < len && !is_ws(js[i + 1]) && js[i + 1] != ',' &&
           js[i + 1] != ']' && js[i + 1] != '}' && js[i + 1] != '\0')
        i++;
    return i;
}

/* *ws_in_records: whitespace outside strings at depth 3 or more, i.e.
 * inside an element of "result" (or deeper in the envelope: then only
 * the copies are made without need). */
static int page_scan(const char *js, size_t len, int *ws_in_records, char *err,
                     size_t errlen)
{
    scan sc = { js, len, err, errlen };
    int depth = 0;
    *ws_in_records = 0;
    for (size_t i = 0; i < len; i++) {
        switch (js[i]) {
        case ' ': case '\n': case '\r': case '\t':
            *ws_in_records |= depth >= 3;
            break;
        case '\0':
            return scan_bad_byte(&sc, i);
        case '"':
            if (scan_string(&sc, &i) < 0)
                return -1;
            break;
        case '{': case '[':
            if (++depth > RECORDS_MAX_DEPTH)
                return seterr(err, errlen, "JSON nested deeper than %d levels at byte %zu",
                            RECORDS_MAX_DEPTH, i);
            break;
        case '}': case ']':
            depth -= depth > 0;
            break;
        case '-': case 't': case 'f': case 'n':
        case '0': case '1': case '2': case '3': case '4':
        case '5': case '6': case '7': case '8': case '9':
            i = scan_primitive(js, len, i);
            break;
        }
    }
    return 0;
}

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

/* ---- 2. strict checks ---- */

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

/* Check that js[from, to) is whitespace around exactly one sep (or only
 * whitespace when sep is 0). Returns NO_ERROR or the offending offset. */
static size_t gap_check(const char *js, size_t from, size_t to, char sep)
{
    int seen = !sep;
    for (; from < to; from++) {
        char c = js[from];
        if (is_ws(c))
            continue;
        if (c != sep || seen)
            return from;
        seen = 1;
    }
    return seen ? NO_ERROR : to;
}

struct frame {
    size_t close;          /* offset of the closing bracket */
    int remaining;         /* children (keys for objects) still to come */
    unsigned char obj, want_value, first;
};

typedef struct walk {
    const char *js;
    size_t len, pos;       /* pos: first byte not yet checked */
    const tok *t;
    unsigned n, i;         /* tokens, next token */
    int depth;
    struct frame st[RECORDS_MAX_DEPTH];
    char *err;
    size_t errlen;
} walk;

static int walk_bad(walk *w, size_t at)
{
    return seterr(w->err, w->errlen, "invalid JSON at byte %zu", at);
}

/* The separator expected before the next token of frame f. */
static char walk_sep(const struct frame *f)
{
    if (!f)
        return 0;
    if (f->obj && f->want_value)
        return ':';
    return f->first ? 0 : ',';
}

static void frame_advance(struct frame *f, int is_key)
{
    if (is_key) {
        f->want_value = 1;
        return;
    }
    f->want_value = 0;
    f->first = 0;
    f->remaining--;
}

/* Control characters were rejected by page_scan(), escapes by jsmn. */
static int walk_string(walk *w, const tok *t)
{
    w->pos = span_end(t);
    return 0;
}

static int walk_primitive(walk *w, const tok *t)
{
    const char *p = w->js + t->start;
    size_t n = (size_t)(t->end - t->start);
    if (!primitive_ok(p, n))
        return seterr(w->err, w->errlen, "invalid JSON value '%.*s' at byte %d",
                    n > 24 ? 24 : (int)n, p, t->start);
    w->pos = (size_t)t->end;
    return 0;
}

static int walk_push(walk *w, const tok *t)
{
    if (w->depth == RECORDS_MAX_DEPTH)
        return seterr(w->err, w->errlen,
                    "JSON nested deeper than %d levels at byte %d",
                    RECORDS_MAX_DEPTH, t->start);
    struct frame *f = &w->st[w->depth++];
    f->close = (size_t)t->end - 1;
    f->remaining = t->size;
    f->obj = t->type == JSMN_OBJECT;
    f->want_value = 0;
    f->first = 1;
    w->pos = (size_t)t->start + 1;
    return 0;
}

/* Check the next token against its container and the bytes before it. */
static int walk_token(walk *w)
{
    struct frame *f = w->depth ? &w->st[w->depth - 1] : NULL;
    int is_key = f && f->obj && !f->want_value;
    if (w->i >= w->n)
        return walk_bad(w, w->pos);
    const tok *t = &w->t[w->i++];
    size_t s = span_start(t), at;
    if (s < w->pos || (f && span_end(t) > f->close))
        return walk_bad(w, w->pos);
    if ((at = gap_check(w->js, w->pos, s, walk_sep(f))) != NO_ERROR)
        return walk_bad(w, at);
    if (is_key ? (t->type != JSMN_STRING || t->size != 1)
               : (t->type >= JSMN_STRING && t->size != 0))
        return walk_bad(w, s);
    if (f)
        frame_advance(f, is_key);
    switch (t->type) {
    case JSMN_STRING:    return walk_string(w, t);
    case JSMN_PRIMITIVE: return walk_primitive(w, t);
    case JSMN_OBJECT:
    case JSMN_ARRAY:     return walk_push(w, t);
    default:             return walk_bad(w, s);
    }
}

static int walk_close(walk *w)
{
    struct frame *f = &w->st[w->depth - 1];
    size_t at = gap_check(w->js, w->pos, f->close, 0);
    if (at != NO_ERROR)
        return walk_bad(w, at);
    w->pos = f->close + 1;
    w->depth--;
    return 0;
}

/* Everything jsmn leaves unchecked; see the top of this file. */
static int page_check(walk *w)
{
    do {
        struct frame *f = w->depth ? &w->st[w->depth - 1] : NULL;
        int rc = (f && f->remaining <= 0 && !f->want_value) ? walk_close(w)
                                                            : walk_token(w);
        if (rc < 0)
            return -1;
    } while (w->depth > 0);
    size_t at = gap_check(w->js, w->pos, w->len, 0);
    if (at != NO_ERROR || w->i != w->n)
        return seterr(w->err, w->errlen, "trailing data after JSON at byte %zu",
                    at != NO_ERROR ? at : w->pos);
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
    return (size_t)(t->end - t->start) == n && memcmp(js + t->start, name, n) == 0;
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
    int copy;
    if (len > INT_MAX)
        return seterr(err, errlen, "body of %zu bytes is larger than %d", len, INT_MAX);
    if (page_scan(body, len, &copy, err, errlen) < 0)
        return -1;
    if (page_tokenize(pg, body, len, &ntoks, err, errlen) < 0)
        return -1;
    if (ntoks == 0)
        return seterr(err, errlen, "empty body");
    walk w = { .js = body, .len = len, .t = pg->toks, .n = ntoks,
               .err = err, .errlen = errlen };
    if (page_check(&w) < 0)
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
