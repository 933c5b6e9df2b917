/*
 * net: sockets and addresses.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/un.h>
#include <string.h>
#include <unistd.h>

int
net_listen(const struct sockaddr_storage *addr, socklen_t addrlen,
    int backlog, char *err, size_t errlen)
{
	char a[NET_ADDRSTRLEN];
	int fd, one = 1, zero = 0;

	fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    IPPROTO_TCP);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto err0;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
		snprintf(err, errlen, "SO_REUSEADDR: %s", strerror(errno));
		goto err1;
	}
	if (addr->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(
	    &((const struct sockaddr_in6 *)addr)->sin6_addr) &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
	    sizeof(zero)) != 0) {
		snprintf(err, errlen, "IPV6_V6ONLY: %s", strerror(errno));
		goto err1;
	}
	if (bind(fd, (const struct sockaddr *)addr, addrlen) != 0) {
		snprintf(err, errlen, "cannot bind %s: %s",
		    net_addr_str((const struct sockaddr *)addr, addrlen, a,
		    sizeof(a)), strerror(errno));
		goto err1;
	}
	if (listen(fd, backlog) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s",
		    net_addr_str((const struct sockaddr *)addr, addrlen, a,
		    sizeof(a)), strerror(errno));
		goto err1;
	}
	return fd;

err1:
	close(fd);
err0:
	return -1;
}

char *
net_addr_str(const struct sockaddr *sa, socklen_t len, char *buf,
    size_t buflen)
{
	char h[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &a->sin_addr, h, sizeof(h));
		snprintf(buf, buflen, "%s:%u", h, ntohs(a->sin_port));
	} else if (sa->sa_family == AF_INET6 &&
	    len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof(h));
		snprintf(buf, buflen, "[%s]:%u", h, ntohs(a->sin6_port));
	} else if (sa->sa_family == AF_UNIX) {
		const struct sockaddr_un *u = (const struct sockaddr_un *)sa;

		if (len > offsetof(struct sockaddr_un, sun_path) &&
		    u->sun_path[0] != '\0')
			snprintf(buf, buflen, "unix:%.*s",
			    (int)(len - offsetof(struct sockaddr_un, sun_path)),
			    u->sun_path);
		else
			snprintf(buf, buflen, "unix");
	}
	else
		snprintf(buf, buflen, "unknown");
	return buf;
}

char *
net_fd_addr_str(int fd, char *buf, size_t buflen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		snprintf(buf, buflen, "unknown");
		return buf;
	}
	return net_addr_str((struct sockaddr *)&ss, len, buf, buflen);
}

bool
net_fd_matches(int fd, const struct sockaddr_storage *addr, socklen_t addrlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type, acc;
	socklen_t olen = sizeof(type);

	(void)addrlen;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) != 0 ||
	    type != SOCK_STREAM)
		return false;
	olen = sizeof(acc);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &olen) != 0 || !acc)
		return false;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    ss.ss_family != addr->ss_family)
		return false;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		const struct sockaddr_in *b = (const struct sockaddr_in *)addr;

		return a->sin_addr.s_addr == b->sin_addr.s_addr &&
		    (b->sin_port == 0 || a->sin_port == b->sin_port);
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)addr;

		return memcmp(&a->sin6_addr, &b->sin6_addr,
		    sizeof(a->sin6_addr)) == 0 &&
		    (b->sin6_port == 0 || a->sin6_port == b->sin6_port);
	}
	return false;
}

bool
net_addr_same(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)a;
		const struct sockaddr_in *y = (const struct sockaddr_in *)b;

		return x->sin_port != 0 && x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;

		return x->sin6_port != 0 && x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr,
		    sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

int
net_connect(const struct sockaddr_storage *addr, socklen_t addrlen, char *err,
    size_t errlen)
{
	int fd, one = 1;

	fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (addr->ss_family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	if (connect(fd, (const struct sockaddr *)addr, addrlen) != 0 &&
	    errno != EINPROGRESS) {
		int e = errno;

		snprintf(err, errlen, "%s", strerror(e));
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int
net_connect_result(int fd)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
		return errno;
	return e;
}

void
net_keepalive(int fd)
{
	int one = 1, idle = 60, intvl = 10, cnt = 6;

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

void
net_tune_listener(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	net_keepalive(fd);
}

int
net_set_nonblock(int fd, char *err, size_t errlen)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		return -1;
	}
	return 0;
}
