/*
 * metricsd: the master's small HTTP server for /metrics, /healthz and
 * /readyz, driven by the master's poll loop.
 *
 * Plain HTTP on loopback TCP or a unix socket, never on a TLS listener,
 * never in a worker.  Everything is bounded: METRICSD_CONNS connections at
 * once (when full, the oldest one still sending its request makes room),
 * HTTP_HEAD_MAX bytes of request head, METRICSD_TIMEOUT_MS per connection
 * from accept to the last byte of the answer, one request per connection
 * ("Connection: close").  The request is read by the leaf http.c; what a
 * path answers is the master's handler's business (routing, bodies).
 * Nothing here blocks; nothing here logs.
 */
#ifndef TLS_ECHOD_METRICSD_H
#define TLS_ECHOD_METRICSD_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define METRICSD_CONNS 16
#define METRICSD_TIMEOUT_MS 5000
#define METRICSD_POLLFDS (1 + METRICSD_CONNS)

struct metricsd;

/* An answer: status, Content-Type and a malloc'ed body (NULL: empty). */
struct metricsd_reply {
	int status;
	const char *type;
	char *body; /* ownership moves to the server */
	size_t len;
};

/*
 * The master's side: the answer to a GET (or HEAD: the body is dropped)
 * of ${path} (without its query).  Sets ${r}.
 */
typedef void metricsd_handler(void *cookie, const char *path,
    struct metricsd_reply *r);

/**
 * metricsd_new(handler, cookie):
 * A server with no socket yet, answering through ${handler}; NULL (out of
 * memory).
 */
struct metricsd *metricsd_new(metricsd_handler *handler, void *cookie);

/**
 * metricsd_listen(addr, addrlen, err, errlen):
 * A non-blocking, close-on-exec listening socket on ${addr}: TCP, or a
 * unix socket made with mode 0660 (a stale socket file left by a dead
 * daemon is replaced; a live one is not).  The fd, or -1 with a message.
 */
int metricsd_listen(const struct sockaddr_storage *addr, socklen_t addrlen,
    char *err, size_t errlen);

/**
 * metricsd_same(s, addr):
 * True if ${s} listens on ${addr} already (a reload keeps its socket).
 */
bool metricsd_same(const struct metricsd *s,
    const struct sockaddr_storage *addr);

/**
 * metricsd_set_listener(s, fd, addr, addrlen):
 * Listen on ${fd} (ownership moves to ${s}; -1: no more listening),
 * bound to ${addr}.  The previous socket is closed (its unix socket file
 * removed); connections already accepted finish.
 */
void metricsd_set_listener(struct metricsd *s, int fd,
    const struct sockaddr_storage *addr, socklen_t addrlen);

/**
 * metricsd_poll_fill(s, pfd, max):
 * Put ${s}'s sockets in ${pfd} (at most ${max}); how many.
 */
size_t metricsd_poll_fill(struct metricsd *s, struct pollfd *pfd, size_t max);

/**
 * metricsd_poll_done(s, pfd, n, now_ms):
 * Serve what the ${n} entries filled by the last metricsd_poll_fill
 * report, then close connections past their time.
 */
void metricsd_poll_done(struct metricsd *s, const struct pollfd *pfd,
    size_t n, uint64_t now_ms);

/**
 * metricsd_next_deadline(s):
 * The nearest connection deadline (ms), 0 if none.
 */
uint64_t metricsd_next_deadline(const struct metricsd *s);

/**
 * metricsd_close_fds(s):
 * In a worker: close every socket of the master's ${s} (the socket file
 * stays).  The memory is the master's copy: free it with metricsd_free_copy.
 */
void metricsd_close_fds(struct metricsd *s);

/**
 * metricsd_free_copy(s):
 * Free ${s} without touching sockets or files (after metricsd_close_fds).
 */
void metricsd_free_copy(struct metricsd *s);

/**
 * metricsd_free(s):
 * Close everything, remove a unix socket file we made, free.  NULL: no-op.
 */
void metricsd_free(struct metricsd *s);

#endif
