/* listen.c - see listen.h. getaddrinfo parses the numbers. */
#include "base/listen.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECTED "expected ADDRESS:PORT such as \"127.0.0.1:9464\" or \"[::1]:9464\""

int listen_parse(const char *text, listen_addr *out, char *err, size_t errlen)
{
    char host[64];
    const char *port;
    size_t n;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "'%s': an IPv6 address needs [ADDRESS]:PORT; " EXPECTED, text);
            return -1;
        }
        n = (size_t)(close - text - 1);
        port = close + 2;
        text++;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || strchr(text, ':') != colon) {
            snprintf(err, errlen, "'%s': no port%s; " EXPECTED, text,
                     colon ? " (write an IPv6 address in brackets)" : "");
            return -1;
        }
        n = (size_t)(colon - text);
        port = colon + 1;
    }
    if (n == 0 || n >= sizeof host) {
        snprintf(err, errlen, "'%s': no address before the port; " EXPECTED, text);
        return -1;
    }
    memcpy(host, text, n);
    host[n] = '\0';
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen || atoi(port) > 65535) {
        snprintf(err, errlen, "port '%s' is not a number from 0 to 65535", port);
        return -1;
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "'%s' is not a numeric IPv4 or IPv6 address (%s); " EXPECTED,
                 host, gai_strerror(rc));
        return -1;
    }
    memset(out, 0, sizeof *out);
    memcpy(&out->ss, ai->ai_addr, ai->ai_addrlen);
    out->len = ai->ai_addrlen;
    if (ai->ai_family == AF_INET)
        out->any = ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr == htonl(INADDR_ANY);
    else
        out->any = IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    freeaddrinfo(ai);
    return 0;
}

void listen_format(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, ntohs(s4->sin_port));
    }
}
