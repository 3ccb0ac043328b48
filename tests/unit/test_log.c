/* test_log.c - log_escape(): what may stand inside a kv value's quotes. */
#include "check.h"
#include "base/log.h"

int main(void)
{
    char out[64], tiny[6];
    CHECK_STR(log_escape(out, sizeof out, "plain text"), "plain text");
    CHECK_STR(log_escape(out, sizeof out, "q\" injected=1 status=\"ok"),
              "q\\\" injected=1 status=\\\"ok");
    CHECK_STR(log_escape(out, sizeof out, "back\\slash"), "back\\\\slash");
    CHECK_STR(log_escape(out, sizeof out, "a\nb\x1b[2J\x7f"), "a\\x0ab\\x1b[2J\\x7f");
    CHECK_STR(log_escape(out, sizeof out, "caf\xc3\xa9"), "caf\xc3\xa9");
    CHECK_STR(log_escape(out, sizeof out, ""), "");
    CHECK_STR(log_escape(out, sizeof out, NULL), "");
    /* cut to fit, whole escapes only */
    CHECK_STR(log_escape(tiny, sizeof tiny, "ab\"cd"), "ab\\\"c");
    CHECK_STR(log_escape(tiny, sizeof tiny, "abcd\"e"), "abcd");
    CHECK_STR(log_escape(tiny, sizeof tiny, "abc\n"), "abc");
    CHECK_DONE();
}
