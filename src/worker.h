/*
 * worker: one process's event loop over its share of the connections.
 *
 * A worker inherits everything from the master by fork(): parsed config,
 * loaded TLS contexts and listening sockets.  It re-seeds its random
 * generator, drops privileges, and then serves until told to stop, then
 * drains its live connections: SIGTERM (shutdown) gives them shutdown_timeout;
 * CTL_RETIRE from the master (a reload retired this generation; answered
 * with CTL_LEFT once the listening sockets are closed) or the end of the
 * control socket (the master died) gives them drain_timeout.  SIGUSR1 logs
 * a status line.  Once set up (privileges dropped, sockets registered), it
 * loads its seccomp filter (sandbox.h) before the first accept.
 */
#ifndef TLS_ECHOD_WORKER_H
#define TLS_ECHOD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

struct tlsctx;
struct census;
struct stats;

struct worker_listener {
	int fd; /* listening socket, shared by all workers */
	const struct cfg_listener *cfg;
	struct tlsctx *tls;
};

/* Who the worker becomes; uid (uid_t)-1 means stay as we are. */
struct worker_creds {
	uid_t uid;
	gid_t gid;
	const char *user; /* for messages */
};

struct worker_args {
	const struct cfg *cfg;
	const struct worker_listener *listeners;
	size_t nlisteners;
	int master_fd; /* our end of the control socket pair (ctl.h): EOF =
	                  master gone */
	unsigned index;      /* 0..workers-1, for logs */
	unsigned generation; /* 1, then one more per successful reload */
	struct worker_creds creds;
	struct census *census; /* the generation's shared counts, or NULL */
	bool sandbox;          /* run under the seccomp filter (sandbox.h) */
	struct stats *stats;   /* this worker's counters (per listener), or
	                          NULL */
};

/**
 * worker_now_ms():
 * Milliseconds on the monotonic clock: the one time base of every deadline
 * (workers' and the master's).
 */
uint64_t worker_now_ms(void);

/**
 * worker_run(a):
 * Run a worker in this (freshly forked) process.  Returns the exit status:
 * 0 after a clean stop, non-zero if it could not start.
 */
int worker_run(const struct worker_args *a);

#endif
