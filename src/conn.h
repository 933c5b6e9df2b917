/*
 * conn: one client connection, from accept to close.
 *
 * An explicit state machine (handshake -> echo, or handshake -> backend
 * connect -> relay; then closing) driven by socket readiness and a
 * deadline.  Every state has a timeout, every buffer a bound, and a
 * connection never blocks: it tells epoll what it waits for.  Each
 * connection ends with exactly one log line, a refusal or a close, except
 * refusals beyond log_refusals_per_second: those are counted, and one
 * summary line a second says how many (conn_listener_log_suppressed).
 */
#ifndef TLS_ECHOD_CONN_H
#define TLS_ECHOD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "identity.h"
#include "lograte.h"
#include "stats.h"
#include "timerq.h"

struct tlsctx;
struct conn;
struct census;

/*
 * epoll cookies: a connection's cookies start with an int equal to
 * CONN_EV_KIND, so the worker can tell them from its own cookies (which
 * start with an int too).
 */
#define CONN_EV_KIND 1

/* What a worker knows about a listener; owned by the worker. */
struct conn_listener {
	const struct cfg_listener *cfg;
	struct tlsctx *tls;
	struct identity_allow allow; /* from cfg->allow; empty: any client */
	unsigned active; /* connections of this listener in this worker */
	uint64_t crl_warned_ms; /* last "stale CRL" warning, to rate-limit */
	struct lograte refusals; /* which refusals are logged one by one */
	struct stats_block *stats; /* this listener's counters, or NULL */
};

/**
 * conn_listener_init(cl, cfg, tls, refusals_per_s, stats):
 * Fill ${cl} for listener ${cfg} with TLS context ${tls} (not owned),
 * logging at most ${refusals_per_s} refusals per reason and second one by
 * one (log_refusals_per_second) and counting the rest, and counting its
 * connections in ${stats} (the worker's block for it; NULL: not counted).
 */
void conn_listener_init(struct conn_listener *cl,
    const struct cfg_listener *cfg, struct tlsctx *tls,
    unsigned refusals_per_s, struct stats_block *stats);

/**
 * conn_listener_log_suppressed(cl, now_ms, all):
 * Log one summary (SUPPRESSED=count) per reason whose refusals ${cl}
 * counted instead of logging them, once their second is over; with ${all},
 * every pending count now (a worker that stops).  Call it at least every
 * second or so.
 */
void conn_listener_log_suppressed(struct conn_listener *cl, uint64_t now_ms,
    bool all);

/* Spare copy buffers a worker keeps for its next busy connection. */
#define CONN_POOL_MAX 64

/* All connections of a worker; owned by the worker. */
struct conn_set {
	struct conn *head; /* live connections */
	size_t n;
	struct conn *dead; /* finished: freed by conn_set_reap() */
	int epfd;
	struct timerq timers;   /* every connection's one deadline */
	struct census *census;  /* shared counts; NULL: none */
	unsigned worker;        /* our part of the census */
	void *pool[CONN_POOL_MAX]; /* free copy buffers */
	size_t npool;
};

/**
 * conn_set_init(set, epfd, census, worker):
 * An empty set whose connections register with epoll instance ${epfd} and
 * are counted as worker ${worker}'s in ${census} (NULL: not counted).
 */
void conn_set_init(struct conn_set *set, int epfd, struct census *census,
    unsigned worker);

/**
 * conn_set_free(set):
 * Free what an empty set holds (after conn_set_close_all and _reap).
 */
void conn_set_free(struct conn_set *set);

/**
 * conn_new(set, l, fd, peer, peerlen, now_ms):
 * Take ownership of accepted socket ${fd} and start its handshake.  Returns
 * 0, or -1 (out of memory, epoll failure: ${fd} closed, logged).
 */
int conn_new(struct conn_set *set, struct conn_listener *l, int fd,
    const struct sockaddr *peer, socklen_t peerlen, uint64_t now_ms);

/**
 * conn_event(set, cookie, events, now_ms):
 * Handle epoll ${events} for ${cookie} (the data.ptr of a connection's
 * socket); frees the connection if it is finished.
 */
void conn_event(struct conn_set *set, void *cookie, uint32_t events,
    uint64_t now_ms);

/**
 * conn_set_reap(set):
 * Free the connections that finished.  Call it between epoll batches only:
 * a batch may still hold events for them (a connection has two sockets).
 */
void conn_set_reap(struct conn_set *set);

/**
 * conn_set_expire(set, now_ms):
 * Expire connections whose deadline passed (handshake, idle, linger,
 * backend connect, close).
 */
void conn_set_expire(struct conn_set *set, uint64_t now_ms);

/**
 * conn_set_next_deadline(set):
 * A time (ms) at or before the nearest deadline, 0 if there is none.
 */
uint64_t conn_set_next_deadline(const struct conn_set *set);

/**
 * conn_set_close_all(set, reason, now_ms):
 * Close every connection now, with close_notify where the socket takes it,
 * logging ${reason} (e.g. "shutdown").
 */
void conn_set_close_all(struct conn_set *set, const char *reason,
    uint64_t now_ms);

#endif
