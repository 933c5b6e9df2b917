/*
 * metricsd: the master's small HTTP server for /metrics, /healthz and
 * /readyz, driven by the master's poll loop.
 *
 * A connection: READ (request head, parsed again as each part comes) ->
 * WRITE (head and body in one buffer) -> LINGER (our side shut; read and
 * drop what the client still sends, so that closing with unread input
 * does not reset the connection under the answer) -> closed.  One
 * deadline covers all of it.
 */
#include "metricsd.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http.h"

#define LISTEN_BACKLOG 64
#define LINGER_MAX (64 * 1024) /* bytes dropped after the answer */
#define ACCEPTS 8              /* per wakeup */

enum mstate { M_FREE, M_READ, M_WRITE, M_LINGER };

struct mconn {
	enum mstate st;
	int fd;
	uint64_t since_ms;   /* accepted */
	uint64_t deadline;
	char in[HTTP_HEAD_MAX];
	size_t inlen;
	char *out;           /* head and body */
	size_t outlen, outoff;
	size_t dropped;      /* LINGER */
};

struct metricsd {
	metricsd_handler *handler;
	void *cookie;
	int lfd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	dev_t dev;          /* the unix socket file we made */
	ino_t ino;
	struct mconn c[METRICSD_CONNS];
	int slot[METRICSD_POLLFDS]; /* poll entry -> connection, -1: listener */
	size_t nslot;
};

struct metricsd *
metricsd_new(metricsd_handler *handler, void *cookie)
{
	struct metricsd *s = calloc(1, sizeof(*s));
	size_t i;

	if (s == NULL)
		return NULL;
	s->handler = handler;
	s->cookie = cookie;
	s->lfd = -1;
	for (i = 0; i < METRICSD_CONNS; i++)
		s->c[i].fd = -1;
	return s;
}

/* A stale socket file (nobody accepts on it) may go; anything else stays. */
static int
unix_prepare(const struct sockaddr_un *un, socklen_t len, char *err,
    size_t errlen)
{
	struct stat st;
	int fd, r;

	if (lstat(un->sun_path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket",
		    un->sun_path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	r = connect(fd, (const struct sockaddr *)un, len);
	close(fd);
	if (r == 0) {
		snprintf(err, errlen, "%s is in use by another process",
		    un->sun_path);
		return -1;
	}
	(void)unlink(un->sun_path);
	return 0;
}

int
metricsd_listen(const struct sockaddr_storage *addr, socklen_t addrlen,
    char *err, size_t errlen)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
	bool unix_sock = addr->ss_family == AF_UNIX;
	mode_t old = 0;
	int fd, one = 1, r;

	if (unix_sock && unix_prepare(un, addrlen, err, errlen) != 0)
		return -1;
	fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (!unix_sock && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) != 0) {
		snprintf(err, errlen, "SO_REUSEADDR: %s", strerror(errno));
		goto err;
	}
	/* The file is made 0660 from the start: no moment of wider access. */
	if (unix_sock)
		old = umask(007);
	r = bind(fd, (const struct sockaddr *)addr, addrlen);
	if (unix_sock)
		(void)umask(old);
	if (r != 0) {
		snprintf(err, errlen, "cannot bind: %s", strerror(errno));
		goto err;
	}
	if (unix_sock && chmod(un->sun_path, 0660) != 0) {
		snprintf(err, errlen, "chmod 0660 %s: %s", un->sun_path,
		    strerror(errno));
		(void)unlink(un->sun_path);
		goto err;
	}
	if (listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(err, errlen, "cannot listen: %s", strerror(errno));
		if (unix_sock)
			(void)unlink(un->sun_path);
		goto err;
	}
	return fd;

err:
	close(fd);
	return -1;
}

static bool
addr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_UNIX)
		return strncmp(((const struct sockaddr_un *)a)->sun_path,
		    ((const struct sockaddr_un *)b)->sun_path,
		    sizeof(((const struct sockaddr_un *)a)->sun_path)) == 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)a;
		const struct sockaddr_in *y = (const struct sockaddr_in *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;

		return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr,
		    &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

bool
metricsd_same(const struct metricsd *s, const struct sockaddr_storage *addr)
{
	return s->lfd >= 0 && addr_same(&s->addr, addr);
}

/* Close the listening socket; remove its file if it is still the one we
 * made. */
static void
listener_close(struct metricsd *s)
{
	struct stat st;

	if (s->lfd < 0)
		return;
	close(s->lfd);
	s->lfd = -1;
	if (s->addr.ss_family == AF_UNIX) {
		const char *path = ((struct sockaddr_un *)&s->addr)->sun_path;

		if (lstat(path, &st) == 0 && st.st_dev == s->dev &&
		    st.st_ino == s->ino)
			(void)unlink(path);
	}
}

void
metricsd_set_listener(struct metricsd *s, int fd,
    const struct sockaddr_storage *addr, socklen_t addrlen)
{
	struct stat st;

	listener_close(s);
	s->lfd = fd;
	memset(&s->addr, 0, sizeof(s->addr));
	s->addrlen = 0;
	if (fd < 0 || addr == NULL)
		return;
	memcpy(&s->addr, addr, sizeof(s->addr));
	s->addrlen = addrlen;
	s->dev = 0;
	s->ino = 0;
	if (addr->ss_family == AF_UNIX &&
	    lstat(((const struct sockaddr_un *)addr)->sun_path, &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
}

static void
conn_close(struct mconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->out);
	c->fd = -1;
	c->out = NULL;
	c->st = M_FREE;
}

/* A free slot, or the oldest connection still sending its request. */
static struct mconn *
slot_for_new(struct metricsd *s)
{
	struct mconn *oldest = NULL;
	size_t i;

	for (i = 0; i < METRICSD_CONNS; i++) {
		if (s->c[i].st == M_FREE)
			return &s->c[i];
		if (s->c[i].st == M_READ && (oldest == NULL ||
		    s->c[i].since_ms < oldest->since_ms))
			oldest = &s->c[i];
	}
	if (oldest != NULL)
		conn_close(oldest);
	return oldest;
}

/* Room for one more: a free slot, or a reader to close for it. */
static bool
has_room(const struct metricsd *s)
{
	size_t i;

	for (i = 0; i < METRICSD_CONNS; i++)
		if (s->c[i].st == M_FREE || s->c[i].st == M_READ)
			return true;
	return false;
}

static void
accept_some(struct metricsd *s, uint64_t now)
{
	int i;

	for (i = 0; i < ACCEPTS && s->lfd >= 0 && has_room(s); i++) {
		struct mconn *c;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK |
		    SOCK_CLOEXEC);

		if (fd < 0)
			return; /* EAGAIN, or out of fds: try next round */
		if ((c = slot_for_new(s)) == NULL) {
			close(fd); /* has_room said there was: cannot happen */
			return;
		}
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->st = M_READ;
		c->since_ms = now;
		c->deadline = now + METRICSD_TIMEOUT_MS;
	}
}

/* Queue the answer: head and (but for HEAD) body, in one buffer. */
static void
answer(struct mconn *c, int status, const char *type, const char *body,
    size_t blen, bool head_only, const char *allow)
{
	char head[512];
	size_t hlen = http_head(head, sizeof(head), status, type, blen, allow);
	size_t n = hlen + (head_only ? 0 : blen);

	c->out = malloc(n ? n : 1);
	if (c->out == NULL || hlen == 0) {
		conn_close(c);
		return;
	}
	memcpy(c->out, head, hlen);
	if (!head_only && blen > 0)
		memcpy(c->out + hlen, body, blen);
	c->outlen = n;
	c->outoff = 0;
	c->st = M_WRITE;
}

/* A short plain-text answer for an error. */
static void
answer_error(struct mconn *c, int status, bool head_only, const char *allow)
{
	char body[96];
	int n = snprintf(body, sizeof(body), "%d %s\n", status,
	    http_reason(status));

	answer(c, status, "text/plain; charset=utf-8", body,
	    n > 0 ? (size_t)n : 0, head_only, allow);
}

static void
dispatch(struct metricsd *s, struct mconn *c, const struct http_req *req)
{
	struct metricsd_reply r = { .status = 500,
	    .type = "text/plain; charset=utf-8" };
	bool head_only = req->method == HTTP_HEAD;

	if (req->method == HTTP_OTHER) {
		answer_error(c, 405, false, "GET, HEAD");
		return;
	}
	s->handler(s->cookie, req->path, &r);
	if (r.status == 500 && r.body == NULL)
		answer_error(c, 500, head_only, NULL);
	else
		answer(c, r.status, r.type, r.body, r.len, head_only, NULL);
	free(r.body);
}

static void
on_read(struct metricsd *s, struct mconn *c)
{
	struct http_req req;
	ssize_t n;
	int r;

	n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c); /* gone before asking anything whole */
		return;
	}
	c->inlen += (size_t)n;
	r = http_parse(c->in, c->inlen, &req);
	if (r == 0)
		return;
	if (r == 1)
		dispatch(s, c, &req);
	else
		answer_error(c, r, false, NULL);
}

static void
on_write(struct mconn *c, uint64_t now)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff,
		    c->outlen - c->outoff, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	(void)shutdown(c->fd, SHUT_WR);
	c->st = M_LINGER;
	/* The answer is out: a second at most for the client to close. */
	if (now + 1000 < c->deadline)
		c->deadline = now + 1000;
}

static void
on_linger(struct mconn *c)
{
	char sink[4096];

	for (;;) {
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0 || (c->dropped += (size_t)n) >= LINGER_MAX) {
			conn_close(c);
			return;
		}
	}
}

size_t
metricsd_poll_fill(struct metricsd *s, struct pollfd *pfd, size_t max)
{
	size_t n = 0, i;

	s->nslot = 0;
	/* Every slot writing an answer: newcomers wait in the backlog until
	 * one is done (by its deadline at the latest). */
	if (s->lfd >= 0 && n < max && has_room(s)) {
		pfd[n].fd = s->lfd;
		pfd[n].events = POLLIN;
		pfd[n].revents = 0;
		s->slot[n++] = -1;
	}
	for (i = 0; i < METRICSD_CONNS && n < max; i++) {
		if (s->c[i].st == M_FREE)
			continue;
		pfd[n].fd = s->c[i].fd;
		pfd[n].events = s->c[i].st == M_WRITE ? POLLOUT : POLLIN;
		pfd[n].revents = 0;
		s->slot[n++] = (int)i;
	}
	s->nslot = n;
	return n;
}

void
metricsd_poll_done(struct metricsd *s, const struct pollfd *pfd, size_t n,
    uint64_t now_ms)
{
	bool accept_ready = false;
	size_t i;

	for (i = 0; i < n && i < s->nslot; i++) {
		struct mconn *c;

		if (pfd[i].revents == 0)
			continue;
		if (s->slot[i] < 0) {
			accept_ready = pfd[i].fd == s->lfd;
			continue;
		}
		c = &s->c[s->slot[i]];
		if (c->fd != pfd[i].fd)
			continue; /* closed and reused in this round */
		if (c->st == M_READ)
			on_read(s, c);
		if (c->st == M_WRITE)
			on_write(c, now_ms);
		else if (c->st == M_LINGER)
			on_linger(c);
	}
	/* After the others: making room closes a waiting reader. */
	if (accept_ready)
		accept_some(s, now_ms);
	for (i = 0; i < METRICSD_CONNS; i++) {
		struct mconn *c = &s->c[i];

		if (c->st == M_READ && now_ms >= c->deadline) {
			/* Too slow to ask: say so, if the socket takes it. */
			answer_error(c, 408, false, NULL);
			if (c->st == M_WRITE)
				on_write(c, now_ms);
			if (c->st != M_FREE)
				c->deadline = now_ms + 1000;
		} else if (c->st != M_FREE && now_ms >= c->deadline)
			conn_close(c);
	}
}

uint64_t
metricsd_next_deadline(const struct metricsd *s)
{
	uint64_t d = 0;
	size_t i;

	for (i = 0; i < METRICSD_CONNS; i++)
		if (s->c[i].st != M_FREE && (d == 0 || s->c[i].deadline < d))
			d = s->c[i].deadline;
	return d;
}

void
metricsd_close_fds(struct metricsd *s)
{
	size_t i;

	if (s == NULL)
		return;
	if (s->lfd >= 0)
		close(s->lfd);
	s->lfd = -1;
	for (i = 0; i < METRICSD_CONNS; i++)
		if (s->c[i].fd >= 0) {
			close(s->c[i].fd);
			s->c[i].fd = -1;
		}
}

void
metricsd_free_copy(struct metricsd *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < METRICSD_CONNS; i++)
		free(s->c[i].out);
	free(s);
}

void
metricsd_free(struct metricsd *s)
{
	size_t i;

	if (s == NULL)
		return;
	listener_close(s);
	for (i = 0; i < METRICSD_CONNS; i++)
		conn_close(&s->c[i]);
	free(s);
}
