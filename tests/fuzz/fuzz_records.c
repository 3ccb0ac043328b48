/* fuzz_records.c - libFuzzer target for ns_page_parse() (src/records.c).
 *
 * Each input is one page body. The first byte picks the parser: a page with
 * a small token cap when it is JSON white space (so the body stays valid
 * JSON), else the default page. Pages are set up once and reused across
 * inputs, as the fetch workers reuse theirs.
 *
 * After a successful parse every record must satisfy the contract in
 * records.h; a violation is __builtin_trap(), which libFuzzer reports as a
 * crash with the input saved:
 *   - it lies in the body, or in pg->out where copies sit back to back;
 *   - it starts with '{' and ends with '}';
 *   - no white space outside strings;
 *   - records_minify() of the record is the identity;
 *   - {"result":[<record>]} parses to the same bytes, key and times.
 * A failed parse must leave a reason in err.
 * The same body is then streamed (ns_page_begin/feed/end) in pieces whose
 * size comes from the input's last byte, lexed at every chance: it must
 * hand out the same records in order and end the same way, with the same
 * error text.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "daemon/records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* The first byte of the body -> token cap of the page that parses it:
 * caps that small pages reach, and the default. */
static const struct { char lead; unsigned cap; } caps[] = {
    {' ', 8}, {'\t', 64}, {'\n', 257}, {'\r', 1024},
};
#define NCAPS (sizeof caps / sizeof caps[0])

static ns_page pages[NCAPS + 1];   /* [NCAPS]: the default cap */
static ns_page again;              /* re-parses single records */
static ns_page streamed;           /* the same body, streamed */
static buf scratch, wrapped;
static int ready;

static void setup(void)
{
    for (size_t i = 0; i < NCAPS; i++)
        ns_page_init(&pages[i], caps[i].cap);
    ns_page_init(&pages[NCAPS], 0);
    ns_page_init(&again, 0);
    ns_page_init(&streamed, 0);
    buf_init(&scratch, 0);
    buf_init(&wrapped, 0);
    ready = 1;
}

static ns_page *page_for(const uint8_t *data, size_t size)
{
    for (size_t i = 0; size && i < NCAPS; i++)
        if ((char)data[0] == caps[i].lead)
            return &pages[i];
    return &pages[NCAPS];
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 when p[0, n) has no white space outside strings and every string
 * is closed. */
static int minified(const char *p, size_t n)
{
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (is_ws(c)) {
            return 0;
        }
    }
    return !in_str;
}

/* records_minify() of an already minified record changes nothing. */
static void check_reminify(const char *p, size_t n)
{
    buf_reset(&scratch);
    CHECK(records_minify(&scratch, p, n) == 0);
    CHECK(scratch.len == n);
    CHECK(memcmp(scratch.data, p, n) == 0);
}

/* The record alone in a page parses to itself: it is valid JSON, and its
 * key and times depend only on its own bytes. */
static void check_reparse(const ns_record *r, const char *p)
{
    char err[256];
    buf_reset(&wrapped);
    CHECK(buf_append_str(&wrapped, "{\"result\":[") == 0);
    CHECK(buf_append(&wrapped, p, r->len) == 0);
    CHECK(buf_append_str(&wrapped, "]}") == 0);
    CHECK(ns_page_parse(&again, wrapped.data, wrapped.len, err, sizeof err) == 0);
    CHECK(again.nrecs == 1);
    const ns_record *a = &again.recs[0];
    CHECK(a->len == r->len && memcmp(a->data, p, r->len) == 0);
    CHECK(memcmp(a->key, r->key, RECORDS_KEY_LEN) == 0);
    CHECK(a->event_time == r->event_time);
    CHECK(a->insertion_time == r->insertion_time);
}

/* Each record lies in the body (a compact page) or in pg->out, the copies
 * back to back. */
static void check_page(const ns_page *pg, const char *body, size_t len)
{
    size_t at = 0;
    CHECK(pg->wait_time >= -1);
    CHECK(pg->nrecs <= pg->recs_cap || pg->nrecs == 0);
    for (size_t i = 0; i < pg->nrecs; i++) {
        const ns_record *r = &pg->recs[i];
        const char *p = r->data;
        if (p >= body && p < body + len) {
            CHECK(r->len <= len - (size_t)(p - body));
        } else {
            CHECK(p == pg->out.data + at && r->len <= pg->out.len - at);
            at += r->len;
        }
        CHECK(r->len >= 2 && p[0] == '{' && p[r->len - 1] == '}');
        CHECK(minified(p, r->len));
        check_reminify(p, r->len);
        check_reparse(r, p);
    }
    CHECK(at == pg->out.len);
}

/* What the streamed page handed out, checked against the whole parse. */
typedef struct handed {
    const ns_page *whole;      /* NULL when the whole parse failed */
    const char *body;
    size_t next;               /* records handed out so far */
} handed;

static int compare_records(void *ud, const ns_record *recs, size_t n)
{
    handed *h = ud;
    CHECK(n > 0);
    for (size_t i = 0; i < n; i++) {
        const ns_record *r = &recs[i];
        if (!h->whole) {
            h->next++;
            continue;
        }
        CHECK(h->next < h->whole->nrecs);
        const ns_record *w = &h->whole->recs[h->next];
        CHECK(r->len == w->len && memcmp(r->data, w->data, r->len) == 0);
        CHECK(memcmp(r->key, w->key, RECORDS_KEY_LEN) == 0);
        CHECK(r->event_time == w->event_time && r->insertion_time == w->insertion_time);
        CHECK(r->has_id == w->has_id);
        h->next++;
    }
    return 0;
}

static void check_streamed(const ns_page *pg, int whole_rc, const char *whole_err,
                           const uint8_t *data, size_t size)
{
    char err[256];
    handed h = { whole_rc == 0 ? pg : NULL, (const char *)data, 0 };
    size_t piece = size ? (size_t)data[size - 1] % 64 + 1 : 1;
    streamed.max_tokens = pg->max_tokens;
    streamed.feed_min = 1;
    CHECK(ns_page_begin(&streamed, compare_records, &h) == 0);
    int rc = 0;
    for (size_t at = 0; at < size && rc == 0; at += piece)
        rc = ns_page_feed(&streamed, data + at, size - at < piece ? size - at : piece, err,
                          sizeof err);
    if (rc == 0)
        rc = ns_page_end(&streamed, err, sizeof err);
    CHECK((rc == 0) == (whole_rc == 0));
    if (rc == 0) {
        CHECK(h.next == pg->nrecs && streamed.nrecs == pg->nrecs);
        CHECK(streamed.ok == pg->ok && streamed.wait_time == pg->wait_time);
        CHECK(streamed.hwm == pg->hwm);
    } else {
        CHECK(strcmp(err, whole_err) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (!ready)
        setup();
    ns_page *pg = page_for(data, size);
    memset(err, 0, sizeof err);
    int rc = ns_page_parse(pg, (const char *)data, size, err, sizeof err);
    if (rc == 0)
        check_page(pg, (const char *)data, size);
    else
        CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
    check_streamed(pg, rc, err, data, size);
    return 0;
}
