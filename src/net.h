/*
 * net: sockets and addresses.  Never logs: errors go to the caller's buffer.
 */
#ifndef TLS_ECHOD_NET_H
#define TLS_ECHOD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define NET_ADDRSTRLEN 64 /* "[v6%scope]:port" and NUL */

/**
 * net_listen(addr, addrlen, backlog, err, errlen):
 * A non-blocking, close-on-exec TCP socket listening on ${addr}, or -1 with a
 * message in ${err}.  A wildcard IPv6 address also accepts IPv4.
 */
int net_listen(const struct sockaddr_storage *addr, socklen_t addrlen,
    int backlog, char *err, size_t errlen);

/**
 * net_addr_str(sa, len, buf, buflen):
 * Write "1.2.3.4:port" or "[v6]:port" for ${sa} into ${buf}; returns ${buf}.
 */
char *net_addr_str(const struct sockaddr *sa, socklen_t len, char *buf,
    size_t buflen);

/**
 * net_fd_addr_str(fd, buf, buflen):
 * The local address ${fd} is bound to, as net_addr_str writes it.
 */
char *net_fd_addr_str(int fd, char *buf, size_t buflen);

/**
 * net_fd_matches(fd, addr, addrlen):
 * True if ${fd} is a listening TCP stream socket bound to ${addr} (port 0 in
 * ${addr} matches any port).
 */
bool net_fd_matches(int fd, const struct sockaddr_storage *addr,
    socklen_t addrlen);

/**
 * net_set_nonblock(fd, err, errlen):
 * Make ${fd} non-blocking and close-on-exec; 0, or -1 with a message.
 */
int net_set_nonblock(int fd, char *err, size_t errlen);

#endif
