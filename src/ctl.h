/*
 * ctl: the control messages between the master and one worker.
 *
 * Each worker has its own socket pair with the master (AF_UNIX,
 * SOCK_SEQPACKET: message boundaries kept, EOF when the other side is
 * gone).  A message is two 32-bit numbers, a type and an argument.  A
 * worker says CTL_SERVING once it serves its listeners; the master sends
 * CTL_RETIRE, and a worker answers CTL_LEFT.  The worker's end reaching
 * EOF means the master died.  Leaf module: no logging.
 *
 * A worker is the untrusted side: the master accepts from it exactly these
 * two message types, of exactly this size, each only when it is due, and
 * does nothing with their argument.
 */
#ifndef TLS_ECHOD_CTL_H
#define TLS_ECHOD_CTL_H

#include <stdint.h>

enum ctl_type {
	CTL_RETIRE = 1, /* master -> worker: stop accepting, drain for
	                   arg ms (the new configuration's drain_timeout) */
	CTL_LEFT = 2,   /* worker -> master: I closed my listening sockets */
	CTL_SERVING = 3, /* worker -> master: set up, serving (for /readyz) */
};

struct ctl_msg {
	uint32_t type;
	uint32_t arg;
};

/**
 * ctl_pair(fds):
 * A non-blocking, close-on-exec socket pair: ${fds[0]} for the master,
 * ${fds[1]} for the worker.  0, or -1 with errno set.
 */
int ctl_pair(int fds[2]);

/**
 * ctl_send(fd, type, arg):
 * Send one message.  0, or -1 with errno set (EAGAIN: the peer's queue is
 * full).
 */
int ctl_send(int fd, enum ctl_type type, uint32_t arg);

/**
 * ctl_recv(fd, m):
 * Receive one message into ${m}: 1 if one came, 0 at EOF (the other side
 * closed or died), -1 if none is waiting (or on an error, errno set), -2
 * if what came is not a message of ours (wrong size: dropped).
 */
int ctl_recv(int fd, struct ctl_msg *m);

#endif
