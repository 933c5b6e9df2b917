/*
 * ctl: the control messages between the master and one worker.
 */
#include "ctl.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

int
ctl_pair(int fds[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0, fds);
}

int
ctl_send(int fd, enum ctl_type type, uint32_t arg)
{
	struct ctl_msg m = { .type = (uint32_t)type, .arg = arg };
	ssize_t n;

	do
		n = send(fd, &m, sizeof(m), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(m))
		return 0;
	if (n >= 0)
		errno = EMSGSIZE;
	return -1;
}

int
ctl_recv(int fd, struct ctl_msg *m)
{
	unsigned char buf[sizeof(*m) + 1];
	ssize_t n;

	do
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n < 0)
		return -1;
	/* One byte more than a message fits: a longer one shows as such. */
	if ((size_t)n != sizeof(*m))
		return -2;
	memcpy(m, buf, sizeof(*m));
	return 1;
}
