/* test_stream.c - stream names, lists and paths (stream.h). */
#include "check.h"
#include "daemon/stream.h"

int main(void)
{
    unsigned m = 0;
    char err[512] = "", list[STREAM_LIST_MAX];

    /* 1.x lists that parse, and their canonical form (type order) */
    CHECK_INT(stream_list_parse("alert", &m, err, sizeof err), 0);
    CHECK_INT(m, STREAM_MASK(STREAM_ALERT));
    CHECK_INT(stream_list_parse("network,alert,page", &m, err, sizeof err), 0);
    CHECK_INT(m, STREAM_MASK(STREAM_ALERT) | STREAM_MASK(STREAM_PAGE) | STREAM_MASK(STREAM_NETWORK));
    stream_list_format(m, list, sizeof list);
    CHECK_STR(list, "alert,page,network");
    CHECK_INT(stream_list_parse("alert,page,application,network,audit,infrastructure,incident,"
                                "endpoint", &m, err, sizeof err), 0);
    CHECK_INT(m, (1u << STREAM_TYPES) - 1);

    /* 2.x refused, the mask untouched, the valid list named */
    m = 77;
    CHECK_INT(stream_list_parse("alert,dns", &m, err, sizeof err), -1);
    CHECK_HAS(err, "unknown stream 'dns'");
    CHECK_HAS(err, "valid streams: alert,page,application,network,audit,infrastructure,"
                   "incident,endpoint");
    CHECK_INT(m, 77);
    CHECK_INT(stream_list_parse("", &m, err, sizeof err), -1);
    CHECK_HAS(err, "empty stream name");
    CHECK_INT(stream_list_parse("page,", &m, err, sizeof err), -1);
    CHECK_INT(stream_list_parse("page,page", &m, err, sizeof err), -1);
    CHECK_HAS(err, "stream named twice 'page'");
    CHECK_INT(stream_list_parse(" page", &m, err, sizeof err), -1);
    CHECK_INT(stream_list_parse("PAGE", &m, err, sizeof err), -1);
    CHECK_INT(stream_list_parse("alertx", &m, err, sizeof err), -1);
    CHECK_INT(stream_list_parse("pag\x1b[2J", &m, err, sizeof err), -1);
    CHECK(strchr(err, '\x1b') == NULL);               /* shown escaped */

    /* 3.x names and data paths */
    CHECK_STR(stream_name(STREAM_INFRASTRUCTURE), "infrastructure");
    CHECK(stream_name(STREAM_TYPES) == NULL);
    CHECK_INT(stream_type_of("endpoint"), STREAM_ENDPOINT);
    CHECK_INT(stream_type_of("alerts"), -1);
    CHECK_STR(stream_data_path(STREAM_ALERT), "/api/v2/events/data/alert");
    CHECK_STR(stream_data_path(STREAM_PAGE), "/api/v2/events/data/page");
    CHECK_DONE();
}
