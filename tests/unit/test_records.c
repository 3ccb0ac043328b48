/* test_records.c - ns_page_parse(), records_minify(), records_hash(),
 * records_digest().
 * Run from the repository root (the samples are read by relative path). */
#include "check.h"
#include "daemon/records.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#define JSMN_STATIC
#include <jsmn.h>

#define SAMPLES "tests/unit/data/records/"

static ns_page pg;
static char err[256];
static buf joined;

/* ---- every parse here is also streamed (ns_page_begin/feed/end) ---------- */

/* What a streamed page handed out, as one string: each record's bytes,
 * key, times and has_id. */
static buf streamed;

static void describe_record(buf *b, const ns_record *r)
{
    buf_printf(b, "%zu:", r->len);
    buf_append(b, r->data, r->len);
    buf_printf(b, " %d %lld %lld ", r->has_id, (long long)r->event_time,
               (long long)r->insertion_time);
    buf_append(b, r->key, RECORDS_KEY_LEN);
    buf_append_char(b, '\n');
}

static int collect(void *ud, const ns_record *recs, size_t n)
{
    CHECK(n > 0);                      /* called only with records */
    for (size_t i = 0; i < n; i++)
        describe_record(ud, &recs[i]);
    return 0;
}

/* The same string for a page parsed whole. */
static void describe(buf *b, const ns_page *p)
{
    buf_reset(b);
    buf_append(b, "", 0);
    for (size_t i = 0; i < p->nrecs; i++)
        describe_record(b, &p->recs[i]);
    buf_printf(b, "ok %d wait %lld hwm %lld", p->ok, (long long)p->wait_time, (long long)p->hwm);
}

/* Stream body in pieces of chunk bytes; "!" and the error, or what came. */
static void stream_in(ns_page *sp, const char *body, size_t len, size_t chunk, size_t feed_min,
                      buf *out)
{
    char serr[256];
    int rc;
    buf_reset(out);
    buf_append(out, "", 0);
    sp->feed_min = feed_min;
    CHECK_INT(ns_page_begin(sp, collect, out), 0);
    rc = 0;
    for (size_t at = 0; at < len && rc == 0; at += chunk)
        rc = ns_page_feed(sp, body + at, len - at < chunk ? len - at : chunk, serr, sizeof serr);
    if (rc == 0)
        rc = ns_page_end(sp, serr, sizeof serr);
    if (rc < 0) {
        buf_reset(out);
        buf_printf(out, "!%s", serr);
        return;
    }
    buf_printf(out, "ok %d wait %lld hwm %lld", sp->ok, (long long)sp->wait_time,
               (long long)sp->hwm);
}

/* ns_page_parse(), and the same body streamed in pieces of 1, 3, 17, 4096
 * bytes and whole, lexed at every chance and at the default: the records
 * handed out and the envelope, or the error, must be the same. */
static int parse_both(ns_page *p, const char *body, size_t len, char *e, size_t elen)
{
    static const size_t chunks[] = { 1, 3, 17, 4096, 0 };
    static ns_page sp;
    static buf whole;
    int rc = (ns_page_parse)(p, body, len, e, elen);
    if (len > INT_MAX || !e || elen < 64)
        return rc;                     /* not streamed: the length case, tiny err buffers */
    if (!sp.max_tokens)
        ns_page_init(&sp, 0);
    sp.max_tokens = p->max_tokens;
    if (rc < 0) {
        buf_reset(&whole);
        buf_printf(&whole, "!%s", e);
    } else {
        describe(&whole, p);
    }
    for (int k = 0; k < 6; k++) {
        size_t chunk = k < 5 && chunks[k] ? chunks[k] : len ? len : 1;
        stream_in(&sp, body, len, chunk, k < 5 ? 1 : 0, &streamed);
        if (strcmp(streamed.data, whole.data) != 0) {
            fprintf(stderr, "streamed in %zu-byte pieces: %.300s\nwhole: %.300s\n", chunk,
                    streamed.data, whole.data);
            CHECK(0);
            break;
        }
    }
    return rc;
}
#define ns_page_parse parse_both

/* Parse body and describe the result: the records joined by '\n', or
 * "!" and the error message. */
static const char *run_len(const char *body, size_t len)
{
    buf_reset(&joined);
    if (ns_page_parse(&pg, body, len, err, sizeof(err)) < 0) {
        buf_printf(&joined, "!%s", err);
        return joined.data;
    }
    buf_append(&joined, "", 0);
    for (size_t i = 0; i < pg.nrecs; i++) {
        if (i)
            buf_append_char(&joined, '\n');
        buf_append(&joined, pg.recs[i].data, pg.recs[i].len);
    }
    return joined.data;
}

static const char *run(const char *body)
{
    return run_len(body, strlen(body));
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    buf b;
    char tmp[4096];
    size_t n;
    buf_init(&b, 0);
    if (!f) {
        fprintf(stderr, "cannot open '%s'\n", path);
        exit(1);
    }
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        buf_append(&b, tmp, n);
    fclose(f);
    return buf_detach(&b, len);
}

/* Each case: input, then the records joined by '\n' or "!" + a part of
 * the error message. */
struct tcase { const char *in, *want; };

static const struct tcase cases[] = {
    /* 1: shape */
    { "{\"result\":[]}", "" },
    { " {\n \"ok\" : 1 ,\n \"result\" : [ ]\n }\n ", "" },
    { "{\"result\":[{}]}", "{}" },
    { "{\"result\":[{\"a\":1},\n {\"b\":2} ]}", "{\"a\":1}\n{\"b\":2}" },
    { "{\"ok\":1}", "!\"result\" is missing" },
    { "{}", "!\"result\" is missing" },
    { "{\"result\":{}}", "!\"result\" is not an array" },
    { "{\"result\":null}", "!\"result\" is not an array" },
    { "{\"result\":\"[]\"}", "!\"result\" is not an array" },
    { "{\"result\":[{},{},{},1]}", "!result[3] is not an object" },
    { "{\"result\":[{},[]]}", "!result[1] is not an object" },
    { "{\"result\":[\"{}\"]}", "!result[0] is not an object" },
    { "{\"result\":[],\"result\":[]}", "!\"result\" appears twice" },
    { "[]", "!top level is not an object" },
    { "[{\"result\":[]}]", "!top level is not an object" },
    { "\"result\"", "!top level is not an object" },
    { "{\"x\":{\"result\":[{}]}}", "!\"result\" is missing" },
    { "{\"\\u0072esult\":[]}", "!\"result\" is missing" },
    /* 19: escapes and strings are copied byte for byte */
    { "{\"result\":[ { \"a\" : \"q\\\"b\\\\s\\/u\\u0000e\\ud83d\\ude00\" } ]}",
      "{\"a\":\"q\\\"b\\\\s\\/u\\u0000e\\ud83d\\ude00\"}" },
    { "{\"result\":[{ \"a b\" : \"  x  y  \" , \"c\":\" , : { [ \"}]}",
      "{\"a b\":\"  x  y  \",\"c\":\" , : { [ \"}" },
    { "{\"result\":[{\"\\\\\":\"\\\\\", \"\\\"\" : \" \\\" \"}]}",
      "{\"\\\\\":\"\\\\\",\"\\\"\":\" \\\" \"}" },
    { "{\"result\":[{\"u\" : \"caf\xc3\xa9 \\u00e9 \\b\\f\\n\\r\\t\"}]}",
      "{\"u\":\"caf\xc3\xa9 \\u00e9 \\b\\f\\n\\r\\t\"}" },
    /* 23: nesting and numbers */
    { "{\"result\":[{\"a\":[1, [2, {\"b\": [ ]}], {}], \"c\" : { \"d\" : null ,\r\n\t\"e\":true,\"f\":false}}]}",
      "{\"a\":[1,[2,{\"b\":[]}],{}],\"c\":{\"d\":null,\"e\":true,\"f\":false}}" },
    { "{\"result\":[{\"n\": 9007199254740993, \"f\": 46.949800000000003, \"g\": 1.50,"
      " \"e\": -0.5E+10, \"z\": 0, \"m\": -0, \"x\": 1e-7, \"big\": 123456789012345678901234567890}]}",
      "{\"n\":9007199254740993,\"f\":46.949800000000003,\"g\":1.50,\"e\":-0.5E+10,"
      "\"z\":0,\"m\":-0,\"x\":1e-7,\"big\":123456789012345678901234567890}" },
    /* 25: not JSON */
    { "{\"result\":[{\"a\":tru}]}", "!invalid JSON value 'tru'" },
    { "{\"result\":[{\"a\":01}]}", "!invalid JSON value '01'" },
    { "{\"result\":[{\"a\":nulll}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":truex}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":-}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":1.}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":1.2.3}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":1e}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":1e+}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":--1}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":-01}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":0x1F}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":fals}]}", "!invalid JSON value" },
    { "{\"result\":[{\"a\":.5}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":+1}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":'x'}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":1 \"b\":2}]}", "!invalid JSON" },
    { "{\"result\":[{} {}]}", "!invalid JSON at byte 14" },
    { "{\"result\":[{\"a\":1,}]}", "!invalid JSON" },
    { "{\"result\":[{},]}", "!invalid JSON" },
    { "{\"result\":[,{}]}", "!invalid JSON" },
    { "{\"result\":[{},,{}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\" 1}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\"}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\"::1}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":1:2}]}", "!invalid JSON" },
    { "{\"result\":[{1:2}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":[1:2]}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":[\"b\":2]}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":[[]:2]}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":{}:2}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\",\"b\"}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":1]}]}", "!invalid JSON" },
    { "{\"result\":[}]", "!invalid JSON" },
    { "{\"result\":[]}}", "!invalid JSON" },
    { "{\"result\":[{\"a\":\"\\x\"}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":\"\\u12G4\"}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":\"\\u12\"}]}", "!invalid JSON" },
    { "{\"result\":[{\"a\":\"x\ty\"}]}", "!control character in string at byte 18" },
    { "{\"result\":[{\"a\":\"x\ny\"}]}", "!control character in string" },
    { "{\"result\":[{\"a\x01\":1}]}", "!control character in string" },
    { "{\"result\":[{\"a\":\"x\x7fy\"}]}", "{\"a\":\"x\x7fy\"}" },
    { "{\"result\":[]}x", "!invalid JSON" },
    { "{\"result\":[]} {}", "!trailing data after JSON at byte 14" },
    { "{\"result\":[]} 1 ", "!trailing data" },
    { "{\"result\":[]} \"x\"", "!trailing data" },
    { "{\"result\":[]} :", "!trailing data" },
    { "{\"result\":[]} ,", "!trailing data" },
    { ":{\"result\":[]}", "!invalid JSON at byte 0" },
    { "\xef\xbb\xbf{\"result\":[]}", "!invalid JSON at byte 0" },
    { "", "!empty body" },
    { " \n\t", "!empty body" },
    { "{", "!truncated JSON at byte 1" },
    { "{\"result\":[{\"a\":1}]", "!truncated JSON" },
    /* 80: keys are compared on their raw bytes */
    { "{\"result\":[{\"_id\":{ \"x\" : [ 1 , 2 ] }, \"y\": 3}]}", "{\"_id\":{\"x\":[1,2]},\"y\":3}" },
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = run(cases[i].in);
        int ok = cases[i].want[0] == '!' ? strstr(got, cases[i].want) == got ||
                                               (got[0] == '!' && strstr(got, cases[i].want + 1))
                                         : strcmp(got, cases[i].want) == 0;
        if (!ok)
            fprintf(stderr, "case %zu: input %s\n", i + 1, cases[i].in);
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  got  %s\n  want %s\n", got, cases[i].want);
    }
}

/* Escapes at every position against the lexer's 16-byte steps (a short
 * escape is gone past inside the step; the escaped byte may open the next
 * one, and may itself be a quote or a backslash): valid ones are kept byte
 * for byte, a bad one or a control byte is reported at its own byte. */
static void test_escapes_at_every_offset(void)
{
    static const char *const good[] = {
        "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u00e9", "\\\\\\\"", "\\n\\n\\n\\n\\n\\n\\n\\n\\n",
        "\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\",
    };
    static const struct { const char *esc; size_t at; const char *msg; } bad[] = {
        {"\\x", 1, "invalid JSON at byte"}, {"\\u12G4", 4, "invalid JSON at byte"},
        {"\x01", 0, "control character in string at byte"},
        {"\\\\\x1f", 2, "control character in string at byte"},
    };
    char in[320], want[256], msg[96];
    const char *head = "{\"result\":[{\"a\":\"";
    for (size_t off = 0; off < 40; off++) {
        char pad[48];
        memset(pad, 'x', off);
        pad[off] = '\0';
        for (size_t g = 0; g < sizeof good / sizeof good[0]; g++) {
            for (int end = 0; end < 2; end++) {   /* the escape last in its string, or not */
                snprintf(want, sizeof want, "{\"a\":\"%s%s%s\",\"b\":1}", pad, good[g],
                         end ? "" : "yyyyyyyyyyyyyyyyyyyy");
                snprintf(in, sizeof in, "{\"result\":[%s]}", want);
                const char *got = run(in);
                if (strcmp(got, want) != 0)
                    fprintf(stderr, "escape %s at %zu: got %s\n", good[g], off, got);
                CHECK_STR(got, want);
            }
        }
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            snprintf(in, sizeof in, "%s%s%syyyyyyyyyyyyyyyyyyyy\"}]}", head, pad, bad[b].esc);
            snprintf(msg, sizeof msg, "!%s %zu", bad[b].msg, strlen(head) + off + bad[b].at);
            const char *got = run(in);
            if (strcmp(got, msg) != 0)
                fprintf(stderr, "bad escape %zu at %zu: got %s, want %s\n", b, off, got, msg);
            CHECK_STR(got, msg);
        }
    }
}

/* Numbers of every length from 1 to 40 digits at 20 offsets from a 16-byte
 * boundary, with fractions and exponents, last in their object or not, and
 * as a record's timestamp (its value read); then numbers that stop being
 * one after their digits (a letter, a dangling exponent, a leading zero).
 * The digit scan looks at 16 bytes at a time: it must stop at the first
 * byte that is not a digit, and never read past the body (parse_both
 * streams each body cut at every size). */
static void test_numbers_at_every_offset(void)
{
    static const char *const tails[] = {"a", "e", "e+", ".", ".e1", "x1"};
    char in[512], want[400], digits[48], msg[128], tok[64];
    const char *head = "{\"result\":[{\"";
    for (size_t off = 0; off < 20; off++) {
        char pad[24];
        memset(pad, 'x', off);
        pad[off] = '\0';
        for (size_t nd = 1; nd <= 40; nd++) {
            for (size_t k = 0; k < nd; k++)
                digits[k] = (char)('1' + k % 9);
            digits[nd] = '\0';
            snprintf(want, sizeof want, "{\"%s\":-%s.%s,\"b\":%sE-%s,\"c\":%s}", pad, digits,
                     digits, digits, digits, digits);
            snprintf(in, sizeof in, "{\"result\":[%s]}", want);
            const char *got = run(in);
            if (strcmp(got, want) != 0)
                fprintf(stderr, "%zu digits at %zu: got %s\n", nd, off, got);
            CHECK_STR(got, want);
            if (nd <= 18) {
                snprintf(want, sizeof want, "{\"%s\":1,\"timestamp\":%s}", pad, digits);
                snprintf(in, sizeof in, "{\"result\":[%s]}", want);
                CHECK_STR(run(in), want);
                CHECK(pg.nrecs == 1 && pg.recs[0].event_time == strtoll(digits, NULL, 10));
            }
            for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
                snprintf(in, sizeof in, "%s%s\":%s%s}]}", head, pad, digits, tails[t]);
                snprintf(tok, sizeof tok, "%s%s", digits, tails[t]);
                snprintf(msg, sizeof msg, "!invalid JSON value '%.24s' at byte %zu", tok,
                         strlen(head) + off + 2);
                got = run(in);
                if (strcmp(got, msg) != 0)
                    fprintf(stderr, "%zu digits then %s at %zu: got %s\n", nd, tails[t], off, got);
                CHECK_STR(got, msg);
            }
            snprintf(in, sizeof in, "%s%s\":0%s}]}", head, pad, digits);
            snprintf(msg, sizeof msg, "!invalid JSON value '0%.23s' at byte %zu", digits,
                     strlen(head) + off + 2);
            CHECK_STR(run(in), msg);
        }
    }
}

static void check_contains(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    int found = 0;
    for (size_t i = 0; !found && i + n <= len; i++)
        found = memcmp(hay + i, needle, n) == 0;
    if (!found)
        fprintf(stderr, "missing: %s\n", needle);
    CHECK(found);
}

static const char *rec(size_t i)
{
    return pg.recs[i].data;
}

static int has_ws_outside_strings(const char *s, size_t n)
{
    int in = 0;
    for (size_t i = 0; i < n; i++) {
        if (in && s[i] == '\\')
            i++;
        else if (s[i] == '"')
            in = !in;
        else if (!in && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
            return 1;
    }
    return 0;
}

static void test_raw_page(void)
{
    size_t len;
    char *body = slurp(SAMPLES "raw-page-v2.json", &len);
    unsigned char k[RECORDS_KEY_LEN];
    CHECK_INT(ns_page_parse(&pg, body, len, err, sizeof(err)), 0);
    CHECK_INT(pg.nrecs, 1);
    CHECK_INT(pg.wait_time, -1);
    CHECK_INT(pg.recs[0].event_time, 1642535887);
    CHECK_INT(pg.recs[0].insertion_time, 1642536191);
    CHECK(pg.recs[0].data == pg.out.data);     /* the sample is pretty: copied */
    CHECK_INT(pg.out.len, pg.recs[0].len);
    CHECK(strncmp(rec(0), "{\"_id\":\"f0e9b2cadd17402b59b3938b\","
                  "\"_insertion_epoch_timestamp\":1642536191,\"access_method\":\"Client\",", 88) == 0);
    check_contains(rec(0), pg.recs[0].len, "\"dst_latitude\":46.949800000000003,");
    check_contains(rec(0), pg.recs[0].len, "\"dst_longitude\":-123.02119999999999,");
    check_contains(rec(0), pg.recs[0].len, "\"dst_timezone\":\"America\\/Los_Angeles\",");
    check_contains(rec(0), pg.recs[0].len, "\"src_time\":\"Tue Jan 18 14:57:08 2022\",");
    check_contains(rec(0), pg.recs[0].len, "\"organization_unit\":\"\",");
    CHECK(rec(0)[pg.recs[0].len - 1] == '}');
    CHECK(memcmp(rec(0) + pg.recs[0].len - 30, "\"userkey\":\"test@go-xsoar.com\"}", 30) == 0);
    CHECK(!has_ws_outside_strings(rec(0), pg.recs[0].len));
    CHECK(!memchr(rec(0), '\n', pg.recs[0].len));
    records_hash("id", "\"f0e9b2cadd17402b59b3938b\"", 26, k);
    CHECK(memcmp(pg.recs[0].key, k, RECORDS_KEY_LEN) == 0);
    free(body);
}

static void test_alerts_uba(void)
{
    size_t len;
    char *file = slurp(SAMPLES "alerts-uba.json", &len);
    buf b;
    buf_init(&b, 0);
    buf_printf(&b, "{\"result\": %s, \"wait_time\": 3}", file);
    CHECK_INT(ns_page_parse(&pg, b.data, b.len, err, sizeof(err)), 0);
    CHECK_INT(pg.nrecs, 2);
    CHECK_INT(pg.wait_time, 3);
    CHECK_INT(pg.recs[0].event_time, 1657199079);
    CHECK_INT(pg.recs[0].insertion_time, 1657266143);
    CHECK_INT(pg.recs[1].event_time, 1656892798);
    CHECK_INT(pg.recs[1].insertion_time, 1656892803);
    CHECK(pg.recs[1].data == pg.recs[0].data + pg.recs[0].len);
    const char *r0[] = {
        "\"app_session_id\":2374445601068393555,", "\"browser_session_id\":8670355511135598888,",
        "\"connection_id\":6457472995493937298,", "\"incident_id\":1303665328656929400,",
        "\"request_id\":2350376668666855555,", "\"_category_tags\":[\"10079\",\"10027\"],",
        "\"_notify\":\"{\\\"interval\\\": \\\"-1\\\"}\",", "\"src_time\":\"Thu Jul  7 09:04:00 2022\",",
        "\"useragent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64)\",",
    };
    for (size_t i = 0; i < sizeof(r0) / sizeof(r0[0]); i++)
        check_contains(rec(0), pg.recs[0].len, r0[i]);
    check_contains(rec(1), pg.recs[1].len, "\"transaction_id\":5746134267615529876,");
    check_contains(rec(1), pg.recs[1].len, "\"incident_id\":5746134267615529769,");
    check_contains(rec(1), pg.recs[1].len, "\"dst_longitude\":-98.7654321,");
    CHECK(!has_ws_outside_strings(pg.out.data, pg.out.len));
    CHECK(memcmp(pg.recs[0].key, pg.recs[1].key, RECORDS_KEY_LEN) != 0);
    buf_release(&b);
    free(file);
}

static void key_of(const char *body, size_t i, unsigned char k[RECORDS_KEY_LEN])
{
    CHECK_INT(ns_page_parse(&pg, body, strlen(body), err, sizeof(err)), 0);
    CHECK(pg.nrecs > i);
    if (pg.nrecs > i)
        memcpy(k, pg.recs[i].key, RECORDS_KEY_LEN);
}

static void test_keys(void)
{
    unsigned char a[16], b[16], c[16], want[16];
    key_of("{\"result\":[{\"_id\":\"a\",\"x\":1}]}", 0, a);
    key_of("{\"result\":[ { \"x\" : 2 ,\n \"_id\" : \"a\" } ]}", 0, b);
    key_of("{\"result\":[{\"_id\":\"b\",\"x\":1}]}", 0, c);
    CHECK(memcmp(a, b, 16) == 0);
    CHECK(memcmp(a, c, 16) != 0);
    records_hash("id", "\"a\"", 3, want);
    CHECK(memcmp(a, want, 16) == 0);
    /* the first _id counts; one nested deeper does not */
    key_of("{\"result\":[{\"_id\":\"a\",\"_id\":\"z\"}]}", 0, b);
    CHECK(memcmp(a, b, 16) == 0);
    key_of("{\"result\":[{\"x\":{\"_id\":\"a\"}}]}", 0, b);
    records_hash("rec", "{\"x\":{\"_id\":\"a\"}}", 17, want);
    CHECK(memcmp(b, want, 16) == 0);
    /* _id string "1" and number 1 differ */
    key_of("{\"result\":[{\"_id\":1}]}", 0, b);
    key_of("{\"result\":[{\"_id\":\"1\"}]}", 0, c);
    CHECK(memcmp(b, c, 16) != 0);
    /* no _id: hash of the minified record, whitespace does not matter */
    key_of("{\"result\":[{\"x\":1,\"y\":\"a b\"}]}", 0, a);
    key_of("{\"result\":[{ \"x\" :\n1 , \"y\" : \"a b\" }]}", 0, b);
    key_of("{\"result\":[{\"x\":1,\"y\":\"a  b\"}]}", 0, c);
    CHECK(memcmp(a, b, 16) == 0);
    CHECK(memcmp(a, c, 16) != 0);
    records_hash("rec", "{\"x\":1,\"y\":\"a b\"}", 17, want);
    CHECK(memcmp(a, want, 16) == 0);
    /* an escaped key is not "_id" */
    key_of("{\"result\":[{\"\\u005fid\":\"a\"}]}", 0, b);
    records_hash("rec", "{\"\\u005fid\":\"a\"}", 16, want);
    CHECK(memcmp(b, want, 16) == 0);
    /* a container _id is hashed minified and leaves pg->out alone */
    key_of("{\"result\":[{\"_id\": { \"k\" : [1, 2] }}, {\"n\":1}]}", 0, a);
    records_hash("id", "{\"k\":[1,2]}", 11, want);
    CHECK(memcmp(a, want, 16) == 0);
    CHECK_MEM(pg.out.data, pg.out.len, "{\"_id\":{\"k\":[1,2]}}");
    CHECK_MEM(pg.recs[1].data, pg.recs[1].len, "{\"n\":1}");
}

static void hex(const unsigned char *k, char *out)
{
    for (int i = 0; i < RECORDS_KEY_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", k[i]);
}

static void test_hash(void)
{
    unsigned char k[16], k2[16];
    char h[33];
    /* printf 'id\0abc' | sha256sum; printf 'rec\0{}' | sha256sum */
    records_hash("id", "abc", 3, k);
    hex(k, h);
    CHECK_STR(h, "bdd6bd8634389c9038d6bd4d8f4f043a");
    records_hash("rec", "{}", 2, k);
    hex(k, h);
    CHECK_STR(h, "de2bb393c9b3a6f25191af39bb1d3cfc");
    records_hash("rec", "abc", 3, k2);
    records_hash("id", "abc", 3, k);
    CHECK(memcmp(k, k2, 16) != 0);
    records_hash("idabc", "", 0, k2);   /* the NUL separates domain and bytes */
    CHECK(memcmp(k, k2, 16) != 0);
}

/* The digest is the one stored beside keys: a release that computed it
 * otherwise would count every record of the overlap as a conflict. The
 * want value: Poly1305 of "abc" under the key, by `openssl mac -macopt
 * key:"nscollect: the bytes of a record" POLY1305` and Python's
 * cryptography (d2fdd16bdf382f97...), its first 8 bytes little-endian,
 * shifted right by 2, bit 62 set. */
static void test_digest(void)
{
    CHECK(records_digest("abc", 3) == INT64_C(7335183157394964340));
    char rec[1200];
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (char)('a' + i % 26);
    int64_t d = records_digest(rec, sizeof rec);
    CHECK(d >= RECORDS_DIGEST_MIN);
    CHECK(records_digest(rec, sizeof rec) == d);
    CHECK(records_digest(rec, sizeof rec - 1) != d);
    int same = 0, low = 0;
    for (size_t i = 0; i < sizeof rec; i++) {       /* one byte changed anywhere */
        rec[i] ^= 1;
        int64_t e = records_digest(rec, sizeof rec);
        same += e == d;
        low += e < RECORDS_DIGEST_MIN;
        rec[i] ^= 1;
    }
    CHECK_INT(same, 0);
    CHECK_INT(low, 0);
    CHECK(records_digest("", 0) >= RECORDS_DIGEST_MIN);
}

static void test_times(void)
{
    static const struct { const char *in; long long ev, ins; } t[] = {
        { "{\"timestamp\":123,\"_insertion_epoch_timestamp\":456}", 123, 456 },
        { "{\"timestamp\":\"123\"}", -1, -1 },
        { "{\"timestamp\":1.5}", -1, -1 },
        { "{\"timestamp\":1e3}", -1, -1 },
        { "{\"timestamp\":null,\"_insertion_epoch_timestamp\":true}", -1, -1 },
        { "{\"timestamp\":9223372036854775807}", INT64_MAX, -1 },
        { "{\"timestamp\":9223372036854775808}", -1, -1 },
        { "{\"timestamp\":99999999999999999999}", -1, -1 },
        { "{\"timestamp\":-5}", -5, -1 },
        { "{\"x\":{\"timestamp\":5},\"y\":[{\"timestamp\":6}]}", -1, -1 },
        { "{\"timestamp\":[7]}", -1, -1 },
        { "{\"timestamp\":7,\"timestamp\":8}", 7, -1 },
    };
    char body[256];
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(body, sizeof(body), "{\"result\":[%s]}", t[i].in);
        CHECK_INT(ns_page_parse(&pg, body, strlen(body), err, sizeof(err)), 0);
        CHECK_INT(pg.nrecs, 1);
        CHECK_INT(pg.recs[0].event_time, t[i].ev);
        CHECK_INT(pg.recs[0].insertion_time, t[i].ins);
    }
}

static void test_wait_time(void)
{
    static const struct { const char *in; long long want; } t[] = {
        { "{\"result\":[],\"wait_time\":5}", 5 },
        { "{\"wait_time\":0,\"result\":[]}", 0 },
        { "{\"result\":[],\"wait_time\":2.9}", 2 },
        { "{\"result\":[],\"wait_time\":1e2}", 100 },
        { "{\"result\":[],\"wait_time\":-3}", 0 },
        { "{\"result\":[],\"wait_time\":-0.5}", 0 },
        { "{\"result\":[],\"wait_time\":1e300}", INT64_MAX },
        { "{\"result\":[],\"wait_time\":99999999999999999999}", INT64_MAX },
        { "{\"result\":[],\"wait_time\":\"5\"}", -1 },
        { "{\"result\":[],\"wait_time\":null}", -1 },
        { "{\"result\":[],\"wait_time\":[5]}", -1 },
        { "{\"result\":[]}", -1 },
        { "{\"result\":[{\"wait_time\":5}]}", -1 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        CHECK_INT(ns_page_parse(&pg, t[i].in, strlen(t[i].in), err, sizeof(err)), 0);
        CHECK_INT(pg.wait_time, t[i].want);
    }
    CHECK_INT(ns_page_parse(&pg, "{\"wait_time\":5}", 15, err, sizeof(err)), -1);
    CHECK_INT(pg.wait_time, -1);
}

/* "ok": only the number 1 is ok; anything else is Netskope saying the
 * request failed (the spec's enum is [0, 1]), absent is -1. */
static void test_ok(void)
{
    static const struct { const char *in; int want; } t[] = {
        { "{\"ok\":1,\"result\":[]}", 1 },
        { "{\"ok\":0,\"result\":[]}", 0 },
        { "{\"result\":[{\"_id\":\"a\"}],\"ok\":0}", 0 },
        { "{ \"ok\" : 1 , \"result\" : [ ] }", 1 },
        { "{\"ok\":\"1\",\"result\":[]}", 0 },
        { "{\"ok\":true,\"result\":[]}", 0 },
        { "{\"ok\":1.0,\"result\":[]}", 0 },
        { "{\"ok\":10,\"result\":[]}", 0 },
        { "{\"ok\":null,\"result\":[]}", 0 },
        { "{\"ok\":[1],\"result\":[]}", 0 },
        { "{\"ok\":1,\"ok\":0,\"result\":[]}", 0 },
        { "{\"result\":[]}", -1 },
        { "{\"result\":[{\"ok\":0}],\"x\":{\"ok\":0}}", -1 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        CHECK_INT(ns_page_parse(&pg, t[i].in, strlen(t[i].in), err, sizeof(err)), 0);
        CHECK_INT(pg.ok, t[i].want);
    }
    CHECK_INT(ns_page_parse(&pg, "{\"ok\":1}", 8, err, sizeof(err)), -1);
    CHECK_INT(pg.ok, -1);
}

/* A body of depth levels: the page object, "result", the record, and
 * depth - 3 arrays inside the record. */
static char *deep(int depth)
{
    buf b;
    buf_init(&b, 0);
    buf_append_str(&b, "{\"result\":[{\"a\":");
    for (int i = 3; i < depth; i++)
        buf_append_char(&b, '[');
    buf_append_char(&b, '1');
    for (int i = 3; i < depth; i++)
        buf_append_char(&b, ']');
    buf_append_str(&b, "}]}");
    return buf_detach(&b, NULL);
}

static void test_depth(void)
{
    char *s = deep(RECORDS_MAX_DEPTH);
    CHECK_INT(ns_page_parse(&pg, s, strlen(s), err, sizeof(err)), 0);
    CHECK_INT(pg.nrecs, 1);
    free(s);
    s = deep(RECORDS_MAX_DEPTH + 1);
    CHECK_INT(ns_page_parse(&pg, s, strlen(s), err, sizeof(err)), -1);
    CHECK_STR(err, "JSON nested deeper than 64 levels at byte 77");
    free(s);
    s = deep(200000);
    CHECK_INT(ns_page_parse(&pg, s, strlen(s), err, sizeof(err)), -1);
    CHECK_HAS(err, "JSON nested deeper than 64 levels");
    free(s);
    s = deep(RECORDS_MAX_DEPTH);
    s[strlen(s) - 10] = '\0';   /* as deep as allowed, and truncated */
    CHECK_INT(ns_page_parse(&pg, s, strlen(s), err, sizeof(err)), -1);
    CHECK_STR(err, "truncated JSON at byte 132");
    free(s);
    /* brackets inside strings do not count; the first error in the body
     * is the one reported, even when deep nesting follows it */
    buf b;
    buf_init(&b, 0);
    buf_append_str(&b, "{\"result\":[{\"s\":\"");
    for (int i = 0; i < 1000; i++)
        buf_append_str(&b, "[{\\\"");
    buf_append_str(&b, "\"}]}");
    CHECK_INT(ns_page_parse(&pg, b.data, b.len, err, sizeof(err)), 0);
    CHECK_INT(pg.recs[0].len, b.len - 13);
    buf_reset(&b);
    buf_append_str(&b, "{\"result\":[{\"s\":1\"");
    for (int i = 0; i < 100; i++)
        buf_append_str(&b, " [");
    CHECK_INT(ns_page_parse(&pg, b.data, b.len, err, sizeof(err)), -1);
    CHECK_STR(err, "invalid JSON at byte 17");
    buf_release(&b);
}

static void test_truncated(void)
{
    const char *page = "{\"ok\":1,\"result\":[{\"_id\":\"x\\\"y\",\"n\":-1.5e+3,"
                       "\"a\":[true,false,null,{}],\"u\":\"\\u00e9\"},{}],\"wait_time\":0}";
    size_t len = strlen(page);
    char *copy = malloc(len);
    for (size_t n = 0; n < len; n++) {
        memcpy(copy, page, n);   /* exact length: ASan sees any over-read */
        int rc = ns_page_parse(&pg, copy, n, err, sizeof(err));
        if (rc == 0 || !strstr(err, n ? "truncated JSON" : "empty body"))
            fprintf(stderr, "prefix %zu: rc %d err %s\n", n, rc, err);
        CHECK(rc == -1 && strstr(err, n ? "truncated JSON" : "empty body"));
        CHECK_INT(pg.nrecs, 0);
    }
    memcpy(copy, page, len);
    CHECK_INT(ns_page_parse(&pg, copy, len, err, sizeof(err)), 0);
    CHECK_INT(pg.nrecs, 2);
    free(copy);
}

static void test_nul_and_size(void)
{
    static const char a[] = "{\"result\":[{\"a\":\"x\0y\"}]}";
    static const char b[] = "{\"result\":[]}\0garbage";
    CHECK_INT(ns_page_parse(&pg, a, sizeof(a) - 1, err, sizeof(err)), -1);
    CHECK_STR(err, "NUL byte in body at byte 18");
    CHECK_INT(ns_page_parse(&pg, b, sizeof(b) - 1, err, sizeof(err)), -1);
    CHECK_STR(err, "NUL byte in body at byte 13");
    /* the length is checked before the body is read */
    CHECK_INT(ns_page_parse(&pg, a, (size_t)INT_MAX + 1, err, sizeof(err)), -1);
    CHECK_HAS(err, "larger than 2147483647");
    /* a tiny error buffer is fine, and so is none */
    char small[8];
    CHECK_INT(ns_page_parse(&pg, "[]", 2, small, sizeof(small)), -1);
    CHECK_STR(small, "top lev");
    CHECK_INT(ns_page_parse(&pg, "[]", 2, NULL, 0), -1);
}

/* {"result":[{"a":[1,1,...]}]} with n ones: 6 + n tokens. */
static char *many(size_t n)
{
    buf b;
    buf_init(&b, 0);
    buf_append_str(&b, "{\"result\":[{\"a\":[");
    for (size_t i = 0; i < n; i++)
        buf_append_str(&b, i ? ",1" : "1");
    buf_append_str(&b, "]}]}");
    return buf_detach(&b, NULL);
}

static void test_token_cap(void)
{
    ns_page small;
    char *s = many(4);
    ns_page_init(&small, 10);
    CHECK_INT(ns_page_parse(&small, s, strlen(s), err, sizeof(err)), 0);
    CHECK_INT(small.nrecs, 1);
    free(s);
    s = many(5);
    CHECK_INT(ns_page_parse(&small, s, strlen(s), err, sizeof(err)), -1);
    CHECK_STR(err, "page has more than 10 JSON tokens");
    ns_page_release(&small);
    free(s);
    /* the cap is per page: one record of 300,000 tokens is fine */
    s = many(300000);
    CHECK_INT(ns_page_parse(&pg, s, strlen(s), err, sizeof(err)), 0);
    CHECK_INT(pg.nrecs, 1);
    CHECK(pg.recs[0].len == strlen(s) - 13 && memcmp(pg.recs[0].data, s + 11, pg.recs[0].len) == 0);
    free(s);
}

static void test_many_records_and_reuse(void)
{
    buf b;
    buf_init(&b, 0);
    buf_append_str(&b, "{\n  \"result\": [\n");
    for (int i = 0; i < 5000; i++)
        buf_printf(&b, "%s    { \"_id\" : \"%d\", \"timestamp\" : %d }", i ? ",\n" : "", i, i);
    buf_append_str(&b, "\n  ]\n}\n");
    CHECK_INT(ns_page_parse(&pg, b.data, b.len, err, sizeof(err)), 0);
    CHECK_INT(pg.nrecs, 5000);
    CHECK_INT(pg.recs[4999].event_time, 4999);
    CHECK_MEM(rec(4999), pg.recs[4999].len, "{\"_id\":\"4999\",\"timestamp\":4999}");
    CHECK(pg.recs[4999].data + pg.recs[4999].len == pg.out.data + pg.out.len);
    /* the next page starts afresh */
    CHECK_STR(run("{\"result\":[{\"b\":2}]}"), "{\"b\":2}");
    CHECK_INT(pg.nrecs, 1);
    CHECK_STR(run("{\"result\":[{\"b\":2},7]}"), "!result[1] is not an object");
    CHECK_INT(pg.nrecs, 0);
    CHECK_INT(pg.out.len, 0);
    buf_release(&b);
}

static void test_minify(void)
{
    buf b;
    buf_init(&b, 0);
    const char *in = " [ 1 ,\t\"a b\" ,\r\n{ } ] ";
    CHECK_INT(records_minify(&b, in, strlen(in)), 0);
    CHECK_STR(b.data, "[1,\"a b\",{}]");
    CHECK_INT(records_minify(&b, "\"\\\\\" ", 5), 0);
    CHECK_STR(b.data, "[1,\"a b\",{}]\"\\\\\"");
    buf_reset(&b);
    CHECK_INT(records_minify(&b, "\"a \\", 4), 0);   /* bad input stays in bounds */
    CHECK_STR(b.data, "\"a \\");
    buf_release(&b);
    buf_init(&b, 4);
    CHECK_INT(records_minify(&b, "[1, 2]", 6), -1);  /* the cap is the input length */
    buf_release(&b);
}

/* jsmn's second opinion on a parsed page: each record, tokenized by jsmn,
 * is one object spanning all its bytes, and its first top-level "_id",
 * "timestamp" and "_insertion_epoch_timestamp" give the key and the times
 * that the parser gave. 0 when every record agrees. */
static jsmntok_t *otoks;
static size_t otoks_cap;

static long long oracle_time(const char *js, const jsmntok_t *t)
{
    char tmp[32], *end;
    size_t n = (size_t)(t->end - t->start);
    if (t->type != JSMN_PRIMITIVE || n >= sizeof(tmp) || strcspn(js + t->start, ".eE") < n ||
        !(js[t->start] == '-' || isdigit((unsigned char)js[t->start])))
        return -1;
    memcpy(tmp, js + t->start, n);
    tmp[n] = '\0';
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    return errno || *end ? -1 : v;
}

static int oracle_record(const ns_record *r)
{
    jsmn_parser jp;
    int n;
    if (!otoks)
        otoks = malloc((otoks_cap = 256) * sizeof(*otoks));
    for (;;) {
        jsmn_init(&jp);
        n = jsmn_parse(&jp, r->data, r->len, otoks, (unsigned)otoks_cap);
        if (n != JSMN_ERROR_NOMEM)
            break;
        otoks_cap *= 2;
        otoks = realloc(otoks, otoks_cap * sizeof(*otoks));
    }
    if (n < 1 || otoks[0].type != JSMN_OBJECT || otoks[0].start != 0 ||
        (size_t)otoks[0].end != r->len)
        return 1;
    const jsmntok_t *id = NULL, *ts = NULL, *ins = NULL;
    for (int j = 1; j < n; j++) {
        if (otoks[j].parent != 0)
            continue;                                  /* only the record's own keys */
        const jsmntok_t *k = &otoks[j], *v = &otoks[j + 1];
        size_t kn = (size_t)(k->end - k->start);
        const char *kp = r->data + k->start;
        if (!id && kn == 3 && !memcmp(kp, "_id", 3))
            id = v;
        else if (!ts && kn == 9 && !memcmp(kp, "timestamp", 9))
            ts = v;
        else if (!ins && kn == 26 && !memcmp(kp, "_insertion_epoch_timestamp", 26))
            ins = v;
    }
    unsigned char want[RECORDS_KEY_LEN];
    if (!id)
        records_hash("rec", r->data, r->len, want);
    else {
        int q = id->type == JSMN_STRING;               /* the quotes belong to it */
        records_hash("id", r->data + id->start - q, (size_t)(id->end - id->start + 2 * q), want);
    }
    return memcmp(want, r->key, RECORDS_KEY_LEN) != 0 ||
           r->event_time != (ts ? oracle_time(r->data, ts) : -1) ||
           r->insertion_time != (ins ? oracle_time(r->data, ins) : -1);
}

static int oracle_disagrees(const ns_page *p)
{
    for (size_t i = 0; i < p->nrecs; i++)
        if (oracle_record(&p->recs[i]))
            return 1;
    return 0;
}

/* 20,000 records, with sp (whitespace or "") between their tokens: the
 * page's body into b, the records minified and joined by '\n' into want. */
static void dense_page(buf *b, buf *want, const char *sp)
{
    buf_reset(b);
    buf_reset(want);
    buf_append_str(b, "{\"result\":[");
    for (int i = 0; i < 20000; i++) {
        static const char *fmt = "{\"_id\":%s\"%d\",%s\"a\":[{\"b\":[%d,%s-1.5e3]}],"
                                 "\"timestamp\":%s%d,\"x\":{\"_id\":1,\"timestamp\":2},"
                                 "\"_insertion_epoch_timestamp\":%d%s}";
        int ins = i % 3 ? i : -i;
        buf_append_str(b, i ? "," : "");
        buf_printf(b, fmt, sp, i, sp, i, sp, sp, i * 7, ins, sp);
        buf_append_str(want, i ? "\n" : "");
        buf_printf(want, fmt, "", i, "", i, "", "", i * 7, ins, "");
    }
    buf_append_str(b, "]}");
}

/* A dense page and its pretty-printed twin: the same records, and each of
 * them as jsmn sees it. */
static void test_dense(void)
{
    ns_page p;
    buf b, want;
    unsigned char k[RECORDS_KEY_LEN];
    ns_page_init(&p, 0);
    buf_init(&b, 0);
    buf_init(&want, 0);
    for (int pretty = 0; pretty < 2; pretty++) {
        dense_page(&b, &want, pretty ? " \n\t" : "");
        CHECK_INT(ns_page_parse(&p, b.data, b.len, err, sizeof(err)), 0);
        CHECK_INT(p.nrecs, 20000);
        buf_reset(&joined);
        for (size_t i = 0; i < p.nrecs; i++) {
            buf_append(&joined, i ? "\n" : "", i ? 1 : 0);
            buf_append(&joined, p.recs[i].data, p.recs[i].len);
        }
        CHECK_MEM(joined.data, joined.len, want.data);
        CHECK_INT(p.recs[19999].event_time, 19999 * 7);
        CHECK_INT(p.recs[19998].insertion_time, -19998);
        CHECK_INT(p.out.len, pretty ? want.len - 19999 : 0);    /* copies only when needed */
        CHECK(!oracle_disagrees(&p));
    }
    p.recs[5].key[0] ^= 1;                          /* the oracle can disagree */
    CHECK(oracle_disagrees(&p));
    p.recs[5].key[0] ^= 1;
    p.recs[7].insertion_time++;
    CHECK(oracle_disagrees(&p));
    /* one record of 120,000 tokens */
    buf_reset(&b);
    buf_append_str(&b, "{\"result\":[{\"a\":[");
    for (int i = 0; i < 20000; i++)
        buf_printf(&b, "%s{\"b\":[%d,\"s\",null]}", i ? "," : "", i);
    buf_append_str(&b, "],\"_id\":\"x\"}]}");
    CHECK_INT(ns_page_parse(&p, b.data, b.len, err, sizeof(err)), 0);
    CHECK_INT(p.nrecs, 1);
    CHECK(p.recs[0].len == b.len - 13 && memcmp(p.recs[0].data, b.data + 11, b.len - 13) == 0);
    records_hash("id", "\"x\"", 3, k);
    CHECK(memcmp(p.recs[0].key, k, RECORDS_KEY_LEN) == 0);
    CHECK(!oracle_disagrees(&p));
    ns_page_release(&p);
    buf_release(&b);
    buf_release(&want);
}

/* records_hash() from several threads at once (one digest context each). */
static void *hash_thread(void *arg)
{
    unsigned char k[RECORDS_KEY_LEN], want[RECORDS_KEY_LEN];
    records_hash("id", "abc", 3, want);
    for (int i = 0; i < 20000; i++) {
        records_hash("id", "abc", 3, k);
        if (memcmp(k, want, sizeof(k)) != 0)
            return arg;
    }
    return NULL;
}

static void test_hash_threads(void)
{
    pthread_t th[4];
    void *rv;
    int bad = 0;
    for (int i = 0; i < 4; i++)
        CHECK_INT(pthread_create(&th[i], NULL, hash_thread, &bad), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], &rv);
        CHECK(rv == NULL);
    }
}

/* Random byte damage to a real page: errors or records, never a crash. */
static void test_mutations(void)
{
    size_t len;
    char *body = slurp(SAMPLES "raw-page-v2.json", &len);
    char *copy = malloc(len);
    static const char alphabet[] = "{}[]\":,\\ 0-e.tn\x01\xff";
    unsigned seed = 12345, ok = 0;
    for (int i = 0; i < 20000; i++) {
        memcpy(copy, body, len);
        for (int j = 0; j < 1 + i % 3; j++) {
            seed = seed * 1103515245u + 12345u;
            copy[(seed >> 8) % len] = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
        }
        if (ns_page_parse(&pg, copy, len, err, sizeof(err)) == 0) {
            ok++;
            for (size_t r = 0; r < pg.nrecs; r++)
                CHECK(!memchr(rec(r), '\n', pg.recs[r].len));
            CHECK(!oracle_disagrees(&pg));
        }
    }
    CHECK(ok > 0 && ok < 20000);
    free(copy);
    free(body);
}

/* A record without whitespace outside its strings (Netskope's pages are
 * compact) is used where it is: no copy. Whitespace between records or in
 * the envelope does not matter; a record with whitespace inside is a
 * minified copy in pg->out, and only that one. */
static void test_in_place(void)
{
    const char *compact = "{ \"ok\" : 1, \"result\" : [ {\"_id\":\"a\",\"s\":\"x y\"} ,\n"
                          "{\"_id\":\"b\",\"n\":[1,{\"k\":2}]} ] }";
    CHECK_STR(run(compact), "{\"_id\":\"a\",\"s\":\"x y\"}\n{\"_id\":\"b\",\"n\":[1,{\"k\":2}]}");
    CHECK_INT(pg.nrecs, 2);
    CHECK(pg.recs[0].data == strstr(compact, "{\"_id\":\"a\""));
    CHECK(pg.recs[1].data == strstr(compact, "{\"_id\":\"b\""));
    CHECK_INT(pg.out.len, 0);
    const char *spaced = "{\"result\":[{\"_id\":\"a\"},{\"_id\":\"b\",\"n\":[1, 2]},{\"_id\":\"c\"},"
                         "{ \"_id\":\"d\"}]}";
    CHECK_STR(run(spaced), "{\"_id\":\"a\"}\n{\"_id\":\"b\",\"n\":[1,2]}\n{\"_id\":\"c\"}\n{\"_id\":\"d\"}");
    CHECK_INT(pg.nrecs, 4);
    CHECK(pg.recs[0].data == strstr(spaced, "{\"_id\":\"a\""));
    CHECK(pg.recs[1].data == pg.out.data);
    CHECK(pg.recs[2].data == strstr(spaced, "{\"_id\":\"c\""));
    CHECK(pg.recs[3].data == pg.out.data + 21);
    CHECK_INT(pg.out.len, 32);
}

int main(void)
{
    ns_page_init(&pg, 0);
    buf_init(&joined, 0);
#ifdef TEST_KEYS_ONLY
    /* test_records_evp: the key hash's other path, and what it keys */
    test_raw_page();
    test_alerts_uba();
    test_keys();
    test_hash();
    test_hash_threads();
    ns_page_release(&pg);
    buf_release(&joined);
    CHECK_DONE();
#endif
    test_cases();
    test_escapes_at_every_offset();
    test_numbers_at_every_offset();
    test_raw_page();
    test_alerts_uba();
    test_keys();
    test_hash();
    test_digest();
    test_times();
    test_wait_time();
    test_ok();
    test_depth();
    test_truncated();
    test_nul_and_size();
    test_token_cap();
    test_many_records_and_reuse();
    test_minify();
    test_dense();
    test_hash_threads();
    test_mutations();
    test_in_place();
    ns_page_release(&pg);
    buf_release(&joined);
    free(otoks);
    CHECK_DONE();
}
