/*
 * echo-backend: a tiny plaintext TCP echo server for the benchmarks.
 *
 * The backend that tls-echod (mode relay), stunnel and haproxy relay to.
 * One thread, epoll, non-blocking sockets, a 64 KiB buffer per connection:
 * a connection reads only while its buffer is empty, so a client that does
 * not read stops being read (back-pressure, bounded memory).
 *
 * usage: echo-backend [--listen HOST:PORT] [--seconds S]
 * Prints "port=N" on stdout once listening (PORT 0 picks a free one) and
 * exits after --seconds (default 3600) or on SIGTERM/SIGINT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

struct econn {
	int fd;
	uint32_t events;
	size_t off, len;
	unsigned char buf[BUF];
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
econn_free(int epfd, struct econn *c)
{
	(void)epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Echo as much as possible; -1 when the connection is finished. */
static int
econn_step(int epfd, struct econn *c)
{
	for (;;) {
		if (c->off < c->len) {
			ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off,
			    MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (n < 0)
				return -1;
			c->off += (size_t)n;
			continue;
		}
		c->off = c->len = 0;
		ssize_t n = recv(c->fd, c->buf, BUF, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0)
			return -1;
		c->len = (size_t)n;
	}
	uint32_t want = c->off < c->len ? EPOLLOUT : EPOLLIN;
	if (want != c->events) {
		struct epoll_event ev = { .events = want, .data.ptr = c };
		if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
			return -1;
		c->events = want;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *listen_at = "127.0.0.1:0";
	double seconds = 3600;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sin);
	int lfd, epfd, one = 1;
	struct rlimit rl;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen_at = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: echo-backend [--listen HOST:PORT] "
			    "[--seconds S]\n");
			return 2;
		}
	}
	char host[64];
	const char *colon = strrchr(listen_at, ':');
	if (colon == NULL || (size_t)(colon - listen_at) >= sizeof(host) ||
	    !(seconds > 0)) {
		fprintf(stderr, "echo-backend: bad --listen or --seconds\n");
		return 2;
	}
	memcpy(host, listen_at, (size_t)(colon - listen_at));
	host[colon - listen_at] = '\0';
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
		fprintf(stderr, "echo-backend: %s: IPv4 address expected\n", host);
		return 2;
	}
	sin.sin_port = htons((uint16_t)atoi(colon + 1));
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) != 0 || bind(lfd, (struct sockaddr *)&sin,
	    sizeof(sin)) != 0 || listen(lfd, 4096) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &slen) != 0) {
		fprintf(stderr, "echo-backend: %s: %s\n", listen_at, strerror(errno));
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) != 0) {
		fprintf(stderr, "echo-backend: epoll: %s\n", strerror(errno));
		return 1;
	}
	printf("port=%u\n", ntohs(sin.sin_port));
	fflush(stdout);

	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double end = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + seconds;
	while (!stop) {
		struct epoll_event ev[256];
		int n = epoll_wait(epfd, ev, 256, 500);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9 > end)
			break;
		for (int i = 0; i < n; i++) {
			struct econn *c = ev[i].data.ptr;
			if (c == NULL) {
				for (int k = 0; k < 64; k++) {
					int fd = accept4(lfd, NULL, NULL,
					    SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0)
						break;
					(void)setsockopt(fd, IPPROTO_TCP,
					    TCP_NODELAY, &one, sizeof(one));
					struct econn *nc = malloc(sizeof(*nc));
					if (nc == NULL) {
						close(fd);
						continue;
					}
					nc->fd = fd;
					nc->off = nc->len = 0;
					nc->events = EPOLLIN;
					struct epoll_event e = { .events = EPOLLIN,
						.data.ptr = nc };
					if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
						close(fd);
						free(nc);
					}
				}
				continue;
			}
			if (econn_step(epfd, c) != 0)
				econn_free(epfd, c);
		}
	}
	return 0;
}
