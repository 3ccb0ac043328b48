/* listen.h - a listening address as an operator writes it: "127.0.0.1:9464",
 * "[::1]:9464", "0.0.0.0:9464". Numeric only: a host name would make the
 * address depend on DNS at start-up, and what a daemon binds should not.
 * Port 0 asks the kernel for a free port (the daemon logs which).
 */
#ifndef NSC_LISTEN_H
#define NSC_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct listen_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int any;               /* 0.0.0.0 or [::]: every interface */
} listen_addr;

/* 0, or -1 with err saying what is wrong and what is expected. */
int listen_parse(const char *text, listen_addr *out, char *err, size_t errlen);

/* "127.0.0.1:9464" / "[::1]:9464" of a bound socket address. */
void listen_format(const struct sockaddr *sa, char *out, size_t outlen);

#endif
