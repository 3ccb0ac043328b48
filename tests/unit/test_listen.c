/* test_listen.c - metrics.listen addresses (base/listen.h). */
#include "check.h"

#include <netinet/in.h>
#include <string.h>

#include "base/listen.h"

static void parses(const char *text, int family, int any, const char *back)
{
    listen_addr la;
    char err[256] = "", out[80];
    CHECK_INT(listen_parse(text, &la, err, sizeof err), 0);
    CHECK_INT(la.ss.ss_family, family);
    CHECK_INT(la.any, any);
    listen_format((struct sockaddr *)&la.ss, out, sizeof out);
    CHECK_STR(out, back);
}

static void refuses(const char *text, const char *words)
{
    listen_addr la;
    char err[256] = "";
    CHECK_INT(listen_parse(text, &la, err, sizeof err), -1);
    CHECK_HAS(err, words);
}

int main(void)
{
    parses("127.0.0.1:9464", AF_INET, 0, "127.0.0.1:9464");
    parses("0.0.0.0:9464", AF_INET, 1, "0.0.0.0:9464");
    parses("[::1]:9464", AF_INET6, 0, "[::1]:9464");
    parses("[::]:0", AF_INET6, 1, "[::]:0");
    refuses("127.0.0.1", "no port");
    refuses("::1:9464", "write an IPv6 address in brackets");
    refuses("[::1]9464", "needs [ADDRESS]:PORT");
    refuses("127.0.0.1:65536", "not a number from 0 to 65535");
    refuses("127.0.0.1:-1", "not a number");
    refuses("127.0.0.1:", "not a number");
    refuses(":9464", "no address before the port");
    refuses("localhost:9464", "not a numeric IPv4 or IPv6 address");
    refuses("300.1.1.1:80", "not a numeric IPv4 or IPv6 address");
    CHECK_DONE();
}
