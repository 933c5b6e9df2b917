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
 * net_addr_same(a, b):
 * True if ${a} and ${b} are the same address and the same fixed port (port 0,
 * "any port", is never the same as anything).
 */
bool net_addr_same(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b);

/**
 * net_connect(addr, addrlen, err, errlen):
 * Start a non-blocking connect to ${addr} (TCP or AF_UNIX).  Returns the
 * socket (connected, or still connecting: wait for writability, then ask
 * net_connect_result), or -1 with a message and errno set.
 */
int net_connect(const struct sockaddr_storage *addr, socklen_t addrlen,
    char *err, size_t errlen);

/**
 * net_connect_result(fd):
 * 0 if the connect on ${fd} succeeded, else the errno it failed with.
 */
int net_connect_result(int fd);

/**
 * net_keepalive(fd):
 * TCP keep-alive on ${fd} after 60 s idle, every 10 s, 6 probes: a peer that
 * vanished without a word is noticed even with idle_timeout 0.  Best
 * effort: failures are ignored.
 */
void net_keepalive(int fd);

/**
 * net_tune_listener(fd):
 * Options every accepted connection inherits from listening socket ${fd}
 * (on Linux, so no per-connection system calls): TCP_NODELAY and
 * net_keepalive's settings.  Best effort: failures are ignored.
 */
void net_tune_listener(int fd);

/**
 * net_set_nonblock(fd, err, errlen):
 * Make ${fd} non-blocking and close-on-exec; 0, or -1 with a message.
 */
int net_set_nonblock(int fd, char *err, size_t errlen);

#endif
