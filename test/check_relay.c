/*
 * check_relay: integration tests of relay mode (mode = "relay") on loopback.
 *
 * Every test starts its own daemon (test/harness.c) and its own backends:
 * small servers on threads of this process (poll loops with deadlines, so a
 * stuck relay fails the test instead of hanging it), or child processes
 * (redis-server, python3, openssl).  Backend threads never call Check: they
 * record what they saw in their struct and the test asserts after joining
 * them.  Client-side assertions are pinned to one client by its PEER_ADDR in
 * the daemon's log, as in check_daemon.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "harness.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define IO_MS 10000   /* bound for one client operation */
#define LOG_MS 5000   /* bound for a log line to appear */
#define BE_MS 20000   /* default budget of a backend thread */

/* ------------------------------------------------------------------------- */
/* small tools                                                               */
/* ------------------------------------------------------------------------- */

static void
fx_setup(void)
{
	h_setup();
}

static void
fx_teardown(void)
{
	h_teardown();
}

static void
msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Milliseconds left until ${deadline}, at least 1. */
static int
left(int64_t deadline)
{
	int64_t l = deadline - h_now_ms();

	return l < 1 ? 1 : l > 600000 ? 600000 : (int)l;
}

/* Wait for ${ev} on ${fd}: 0 when something is reported, -1 at the deadline. */
static int
poll_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = ev };
		int64_t l = deadline - h_now_ms();
		int r;

		if (l <= 0)
			return -1;
		r = poll(&p, 1, l > 1000 ? 1000 : (int)l);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* The number after " ${key}=" in a log line, or -1. */
static long
field_num(const char *line, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), " %s=", key);
	p = strstr(line, k);
	return p != NULL ? strtol(p + strlen(k), NULL, 10) : -1;
}

/*
 * Send our close_notify (SSL_shutdown once: the first call only sends it;
 * OpenSSL keeps reading application data until the peer's close_notify).
 */
static int
tls_close_notify(struct h_tls *c, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		int r, e;

		ERR_clear_error();
		r = SSL_shutdown(c->ssl);
		if (r >= 0)
			return 0;
		e = SSL_get_error(c->ssl, r);
		if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
		    poll_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		    deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "SSL_shutdown: ret %d, "
			    "SSL_get_error %d", r, e);
			return -1;
		}
	}
}

/* ------------------------------------------------------------------------- */
/* the daemon                                                                */
/* ------------------------------------------------------------------------- */

struct relay_spec {
	const char *label;
	const char *globals;  /* NULL: "workers = 1;" */
	const char *extra;    /* more settings of the relay listener */
	const char *backend;  /* inside "backend = { ... };" */
	/*
	 * Add an echo listener "echo" on the activated port; the relay
	 * listener then binds a port of its own.
	 */
	bool with_echo;
	int sndbuf, rcvbuf;   /* of the activated socket; 0: kernel default */
};

struct relay_daemon {
	struct h_daemon d;
	int relay_port;
	int echo_port; /* 0 without an echo listener */
	char config[8192];
};

#define TLS_BLOCK "tls = { cert = \"@PKI@/server.crt\"; " \
	"key = \"@PKI@/server.key\"; ca = \"@PKI@/ca.crt\"; };"

static void
relay_up(struct relay_daemon *r, const struct relay_spec *s)
{
	struct h_daemon_opts o;
	char relay_listen[32], echo[512];
	int n;

	memset(r, 0, sizeof(*r));
	echo[0] = '\0';
	if (s->with_echo) {
		r->relay_port = h_free_port();
		ck_assert_msg(r->relay_port > 0, "no free port");
		snprintf(relay_listen, sizeof(relay_listen), "%d",
		    r->relay_port);
		snprintf(echo, sizeof(echo), ",\n  { name = \"echo\"; "
		    "listen = \"127.0.0.1:@PORT@\"; mode = \"echo\";\n    "
		    TLS_BLOCK " }");
	} else
		snprintf(relay_listen, sizeof(relay_listen), "@PORT@");
	n = snprintf(r->config, sizeof(r->config),
	    "log = \"stderr\";\n"
	    "%s\n"
	    "shutdown_timeout = 1;\n"
	    "listeners = (\n"
	    "  { name = \"relay\"; listen = \"127.0.0.1:%s\"; "
	    "mode = \"relay\";\n"
	    "    %s\n"
	    "    " TLS_BLOCK "\n"
	    "    backend = { %s };\n"
	    "  }%s\n"
	    ");\n", s->globals != NULL ? s->globals : "workers = 1;",
	    relay_listen, s->extra != NULL ? s->extra : "", s->backend, echo);
	ck_assert(n > 0 && (size_t)n < sizeof(r->config));
	memset(&o, 0, sizeof(o));
	o.label = s->label;
	o.config = r->config;
	o.activation = true;
	o.fdname = s->with_echo ? "echo" : "relay";
	o.listen_sndbuf = s->sndbuf;
	o.listen_rcvbuf = s->rcvbuf;
	ck_assert_msg(h_daemon_start(&r->d, &o) == 0, "daemon did not start: "
	    "%s\nconfiguration:\n%s", r->d.err, r->config);
	if (s->with_echo)
		r->echo_port = r->d.port;
	else
		r->relay_port = r->d.port;
}

/* SIGTERM the daemon and require a clean exit 0 within 10 s. */
static void
relay_down(struct relay_daemon *r)
{
	int st = h_daemon_stop(&r->d, 10000);
	char tail[800];

	ck_assert_msg(st == 0, "daemon exit status %d after SIGTERM (%s); log "
	    "ends:\n%s", st, r->d.err, h_log_tail(&r->d, tail, sizeof(tail)));
	h_daemon_kill(&r->d);
}

static void
connect_ok(struct h_tls *c, const struct relay_daemon *r, int port)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	char tail[800];

	ck_assert_msg(h_tls_connect(c, port, &o) == 0, "TLS connect to "
	    "127.0.0.1:%d: %s; daemon log ends:\n%s", port, c->err,
	    h_log_tail(&r->d, tail, sizeof(tail)));
}

/* ------------------------------------------------------------------------- */
/* backends on threads                                                       */
/* ------------------------------------------------------------------------- */

/* A listening socket and the thread that serves it (one connection). */
struct be {
	int lfd;
	int port;             /* TCP */
	char path[108];       /* AF_UNIX */
	char addr[200];       /* as a config writes it */
	int timeout_ms;       /* the thread's whole budget */
	pthread_t thread;
	bool started;
	char err[512];        /* empty: everything went as planned */
};

static void be_fail(struct be *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Record the first failure of a backend thread. */
static void
be_fail(struct be *b, const char *fmt, ...)
{
	va_list ap;

	if (b->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(b->err, sizeof(b->err), fmt, ap);
	va_end(ap);
}

/*
 * Listen on 127.0.0.1:0 (AF_INET), [::1]:0 (AF_INET6) or the unix socket
 * ${name} in TEST_TMPDIR (AF_UNIX), with ${backlog}; ${buf} > 0 sets
 * SO_SNDBUF/SO_RCVBUF, which accepted sockets inherit.
 */
static void
be_listen(struct be *b, int family, int backlog, int buf, const char *name)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	memset(b, 0, sizeof(*b));
	b->timeout_ms = BE_MS;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;

		snprintf(b->path, sizeof(b->path), "%s", h_tmp(name));
		ck_assert_msg(strlen(b->path) < sizeof(un->sun_path), "unix "
		    "socket path too long: %s", b->path);
		(void)unlink(b->path);
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, b->path, strlen(b->path) + 1);
		sl = sizeof(*un);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		a6->sin6_family = AF_INET6;
		a6->sin6_addr = in6addr_loopback;
		sl = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		a4->sin_family = AF_INET;
		a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*a4);
	}
	b->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_msg(b->lfd >= 0, "socket: %s", strerror(errno));
	if (family != AF_UNIX)
		(void)setsockopt(b->lfd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one));
	if (buf > 0) {
		(void)setsockopt(b->lfd, SOL_SOCKET, SO_SNDBUF, &buf,
		    sizeof(buf));
		(void)setsockopt(b->lfd, SOL_SOCKET, SO_RCVBUF, &buf,
		    sizeof(buf));
	}
	ck_assert_msg(bind(b->lfd, (struct sockaddr *)&ss, sl) == 0,
	    "backend bind (family %d): %s", family, strerror(errno));
	ck_assert_msg(listen(b->lfd, backlog) == 0, "listen: %s",
	    strerror(errno));
	if (family == AF_UNIX) {
		/* Workers connect as an unprivileged user (the default when
		 * the tests run as root): like any backend socket, this one
		 * must be writable by them. */
		ck_assert_msg(chmod(b->path, 0666) == 0, "chmod %s: %s",
		    b->path, strerror(errno));
		snprintf(b->addr, sizeof(b->addr), "unix:%s", b->path);
		return;
	}
	sl = sizeof(ss);
	ck_assert(getsockname(b->lfd, (struct sockaddr *)&ss, &sl) == 0);
	if (family == AF_INET6) {
		b->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(b->addr, sizeof(b->addr), "[::1]:%d", b->port);
	} else {
		b->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(b->addr, sizeof(b->addr), "127.0.0.1:%d", b->port);
	}
}

/* Accept one connection (non-blocking) before ${deadline}, or -1. */
static int
be_accept(struct be *b, int64_t deadline)
{
	int fd;

	if (poll_fd(b->lfd, POLLIN, deadline) != 0) {
		be_fail(b, "no connection from the relay within %d ms",
		    b->timeout_ms);
		return -1;
	}
	fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		be_fail(b, "accept: %s", strerror(errno));
	return fd;
}

static void
be_start(struct be *b, void *(*fn)(void *), void *arg)
{
	ck_assert(pthread_create(&b->thread, NULL, fn, arg) == 0);
	b->started = true;
}

/* Join the thread within its budget (plus slack); fail if it is stuck. */
static void
be_join(struct be *b)
{
	struct timespec ts;
	int r;

	if (!b->started)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += b->timeout_ms / 1000 + 5;
	r = pthread_timedjoin_np(b->thread, NULL, &ts);
	ck_assert_msg(r == 0, "backend thread (%s) still running past its "
	    "budget of %d ms", b->addr, b->timeout_ms);
	b->started = false;
}

static void
be_end(struct be *b)
{
	be_join(b);
	if (b->lfd >= 0)
		close(b->lfd);
	b->lfd = -1;
	if (b->path[0] != '\0')
		(void)unlink(b->path);
}

/*
 * Read up to ${cap} bytes into ${buf} until EOF: 0 at EOF, -1 on error,
 * overflow or deadline; ${*got} counts what arrived either way.
 */
static int
fd_read_eof(int fd, void *buf, size_t cap, size_t *got, int64_t deadline)
{
	unsigned char *p = buf, spill;

	for (;;) {
		ssize_t n = read(fd, *got < cap ? p + *got : &spill,
		    *got < cap ? cap - *got : 1);

		if (n > 0) {
			if (*got >= cap)
				return -1;
			*got += (size_t)n;
			continue;
		}
		if (n == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		if (poll_fd(fd, POLLIN, deadline) != 0)
			return -1;
	}
}

/* Read exactly ${len} bytes: 0, or -1 (EOF, error, deadline). */
static int
fd_read_full(int fd, void *buf, size_t len, int64_t deadline)
{
	unsigned char *p = buf;
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, p + off, len - off);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return -1;
		if (poll_fd(fd, POLLIN, deadline) != 0)
			return -1;
	}
	return 0;
}

/* --- echo: back what comes, one 64 KiB buffer, until EOF ---------------- */

struct echo_be {
	struct be be;
	uint64_t echoed;
	bool eof;
	int phase; /* for failure messages: 1 reading, 2 writing */
};

static void *
echo_be_main(void *arg)
{
	struct echo_be *e = arg;
	int64_t deadline = h_now_ms() + e->be.timeout_ms;
	unsigned char *buf = malloc(64 * KiB);
	int fd = be_accept(&e->be, deadline);

	while (fd >= 0 && buf != NULL) {
		ssize_t n;

		__atomic_store_n(&e->phase, 1, __ATOMIC_RELAXED);
		n = read(fd, buf, 64 * KiB);
		if (n > 0) {
			__atomic_store_n(&e->phase, 2, __ATOMIC_RELAXED);
			if (h_fd_write_all(fd, buf, (size_t)n, left(deadline))
			    != 0) {
				be_fail(&e->be, "echo write after %" PRIu64
				    " bytes: %s", e->echoed, strerror(errno));
				break;
			}
			__atomic_add_fetch(&e->echoed, (uint64_t)n,
			    __ATOMIC_RELAXED);
			continue;
		}
		if (n == 0) {
			e->eof = true;
			(void)shutdown(fd, SHUT_WR);
			break;
		}
		if (errno != EAGAIN && errno != EINTR) {
			be_fail(&e->be, "echo read after %" PRIu64 " bytes: %s",
			    e->echoed, strerror(errno));
			break;
		}
		if (poll_fd(fd, POLLIN, deadline) != 0) {
			be_fail(&e->be, "echo: no EOF within %d ms (%" PRIu64
			    " bytes echoed)", e->be.timeout_ms, e->echoed);
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* 1. bulk                                                                   */
/* ------------------------------------------------------------------------- */

/* Kernel queues of socket ${fd}, for failure messages. */
static void
socket_state(int fd, char *buf, size_t len)
{
	int in = -1, out = -1;

	(void)ioctl(fd, SIOCINQ, &in);
	(void)ioctl(fd, SIOCOUTQ, &out);
	snprintf(buf, len, "kernel queues in %d out %d", in, out);
}

/* "ss" on the two ports into bulk-sockets.txt, for failure analysis. */
static void
dump_sockets(int port_a, int port_b)
{
	char filter[128], err[128];
	const char *argv[] = { "ss", "-tnoi", filter, NULL };

	snprintf(filter, sizeof(filter), "( sport = :%d or dport = :%d or "
	    "sport = :%d or dport = :%d )", port_a, port_a, port_b, port_b);
	(void)unlink(h_tmp("bulk-sockets.txt"));
	(void)h_run(argv, h_tmp("bulk-sockets.txt"), 5000, err, sizeof(err));
}

#define BULK (64u * MiB)
#define BULK_STALLS 4                 /* the client stops reading 4 times */
#define SLOW_READ 4096                /* bytes per SSL_read */
#define SLOW_PAUSE_EVERY (512u * KiB) /* ... with a pause this often */
#define SLOW_PAUSE_MS 2
#define RELAY_RSS_GROWTH_MAX_KB (32L * 1024)

START_TEST(test_relay_carries_64_MiB_each_way_intact_to_a_slow_reader_in_bounded_memory)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "bulk", .sndbuf = 256 * KiB,
	    .rcvbuf = 256 * KiB };
	struct h_tls_opts o = h_client_opts("client", 0);
	struct echo_be e;
	struct h_tls c;
	unsigned char *data = malloc(BULK), rb[SLOW_READ];
	char backend[256], line[4096], n_in[48], n_out[48], b_in[48], b_out[48];
	char baddr[240];
	size_t woff = 0, roff = 0, next_pause = SLOW_PAUSE_EVERY;
	size_t next_stall = BULK / (BULK_STALLS + 1);
	int64_t t0, deadline;
	long base, rss, peak = 0;
	int stalls = 0, blocked = 0, st;
	pid_t w[2];

	ck_assert(data != NULL);
	h_fill_pattern(data, BULK, 0xb01cu);
	memset(&e, 0, sizeof(e));
	be_listen(&e.be, AF_INET, 8, 256 * KiB, NULL);
	e.be.timeout_ms = 60000;
	snprintf(backend, sizeof(backend), "address = \"%s\";", e.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	ck_assert_int_eq(h_daemon_workers(&r.d, w, 2, 1, 2000), 1);
	base = h_proc_rss_kb(w[0]);
	ck_assert_msg(base > 0, "no VmRSS for worker %ld", (long)w[0]);
	be_start(&e.be, echo_be_main, &e);

	o.sndbuf = o.rcvbuf = 256 * KiB;
	ck_assert_msg(h_tls_connect(&c, r.relay_port, &o) == 0, "connect: %s",
	    c.err);
	t0 = h_now_ms();
	deadline = t0 + 60000;
	/*
	 * Write as fast as the relay takes it; read slowly: small reads, a
	 * pause every 512 KiB, and BULK_STALLS times no reading at all until
	 * our writes block, which proves the relay stopped reading us (a relay
	 * that buffered without bound would take all 64 MiB).
	 */
	while (roff < BULK) {
		short ev = 0;
		bool moved = false;
		int n, err;

		if (woff < BULK) {
			ERR_clear_error();
			n = SSL_write(c.ssl, data + woff, (int)(BULK - woff >
			    16 * KiB ? 16 * KiB : BULK - woff));
			if (n > 0) {
				woff += (size_t)n;
				moved = true;
			} else {
				err = SSL_get_error(c.ssl, n);
				ck_assert_msg(err == SSL_ERROR_WANT_READ ||
				    err == SSL_ERROR_WANT_WRITE, "write after "
				    "%zu bytes: SSL error %d", woff, err);
				ev |= err == SSL_ERROR_WANT_READ ? POLLIN :
				    POLLOUT;
			}
		}
		ERR_clear_error();
		n = SSL_read(c.ssl, rb, (int)(BULK - roff > SLOW_READ ?
		    SLOW_READ : BULK - roff));
		if (n > 0) {
			size_t d = h_first_diff(data + roff, rb, (size_t)n);

			ck_assert_msg(d == (size_t)n, "relayed byte %zu differs "
			    "from what was sent", roff + d);
			roff += (size_t)n;
			moved = true;
			if (roff >= next_pause) {
				msleep(SLOW_PAUSE_MS);
				next_pause += SLOW_PAUSE_EVERY;
			}
		} else {
			err = SSL_get_error(c.ssl, n);
			ck_assert_msg(err == SSL_ERROR_WANT_READ ||
			    err == SSL_ERROR_WANT_WRITE, "read after %zu of "
			    "%u bytes: SSL error %d (%s)", roff, BULK, err,
			    err == SSL_ERROR_ZERO_RETURN ? "close_notify" :
			    "connection broken");
			ev |= err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		}
		if (stalls < BULK_STALLS && roff >= next_stall) {
			int b = h_tls_write_until_blocked(&c, data, BULK, &woff,
			    300, 15000);

			ck_assert_msg(b >= 0, "stall %d: %s", stalls, c.err);
			ck_assert_msg(b == 0 || woff == BULK, "stall %d: writes "
			    "never blocked", stalls);
			blocked += b == 0;
			rss = h_proc_rss_kb(w[0]);
			peak = rss > peak ? rss : peak;
			fprintf(stderr, "bulk: stall %d: %zu read, %zu written, "
			    "%zu in flight%s, worker VmRSS %ld kB (was %ld)\n",
			    stalls, roff, woff, woff - roff, b == 0 ?
			    " (writes blocked)" : "", rss, base);
			ck_assert_msg(rss > 0 && rss - base <
			    RELAY_RSS_GROWTH_MAX_KB, "worker VmRSS %ld kB, was "
			    "%ld kB before the transfer: the relay buffers what "
			    "the client does not read", rss, base);
			stalls++;
			next_stall += BULK / (BULK_STALLS + 1);
			continue;
		}
		if (moved)
			continue;
		if (poll_fd(c.fd, ev, h_now_ms() + IO_MS < deadline ?
		    h_now_ms() + IO_MS : deadline) != 0) {
			char ssl_state[300];

			socket_state(c.fd, ssl_state, sizeof(ssl_state));
			dump_sockets(e.be.port, r.relay_port);
			ck_abort_msg("transfer stuck: %zu written, %zu read of "
			    "%u after %" PRId64 " ms; client waits for 0x%x; "
			    "client %s, SSL_pending %d; backend %s, echoed %"
			    PRIu64 "; sockets in %s", woff, roff, BULK,
			    h_now_ms() - t0, (unsigned)ev, ssl_state,
			    SSL_pending(c.ssl), __atomic_load_n(&e.phase,
			    __ATOMIC_RELAXED) == 2 ? "writing" : "reading",
			    __atomic_load_n(&e.echoed, __ATOMIC_RELAXED),
			    h_tmp("bulk-sockets.txt"));
		}
	}
	ck_assert_msg(blocked > 0, "a client that stopped reading never had "
	    "its writes blocked: no back-pressure through the relay");
	/* All back: end it cleanly from our side; the backend's EOF follows. */
	ck_assert_msg(tls_close_notify(&c, IO_MS) == 0, "%s", c.err);
	st = h_tls_wait_eof(&c, IO_MS);
	ck_assert_msg(st == 0, "after our close_notify the relay ended with "
	    "%d, not close_notify (%s)", st, c.err);
	fprintf(stderr, "bulk: %u bytes each way in %" PRId64 " ms, worker "
	    "VmRSS peak %ld kB (was %ld)\n", BULK, h_now_ms() - t0, peak, base);
	h_tls_close(&c);
	be_join(&e.be);
	ck_assert_msg(e.be.err[0] == '\0', "echo backend: %s", e.be.err);
	ck_assert_msg(e.eof, "the backend never saw EOF");
	ck_assert_msg(e.echoed == BULK, "the backend echoed %" PRIu64 " bytes",
	    e.echoed);
	rss = h_proc_rss_kb(w[0]);
	ck_assert_msg(rss > 0 && rss - base < RELAY_RSS_GROWTH_MAX_KB,
	    "worker VmRSS %ld kB after the transfer, was %ld kB", rss, base);

	snprintf(n_in, sizeof(n_in), "BYTES_IN=%u ", BULK);
	snprintf(n_out, sizeof(n_out), "BYTES_OUT=%u ", BULK);
	snprintf(b_in, sizeof(b_in), "BACKEND_BYTES_IN=%u ", BULK);
	snprintf(b_out, sizeof(b_out), "BACKEND_BYTES_OUT=%u ", BULK);
	snprintf(baddr, sizeof(baddr), "BACKEND_ADDR=%s ", e.be.addr);
	H_LOG_EXPECT(&r.d, line, c.peer_tag,
	    ": connection closed: client closed the connection ",
	    "LISTENER=relay ", "CLOSE_REASON=client-closed ", n_in, n_out,
	    b_in, b_out, baddr, "BACKEND_CONNECT_MS=",
	    "CLIENT_SUBJECT=\"OU=ops, CN=test-client\" ");
	relay_down(&r);
	be_end(&e.be);
	free(data);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 2. half-close                                                             */
/* ------------------------------------------------------------------------- */

#define HC_REQ (100u * KiB)
#define HC_REPLY (2u * MiB)

/* Reads everything until EOF, then replies and closes. */
struct reply_be {
	struct be be;
	unsigned char *got;
	size_t cap, ngot;
	bool eof;
	const unsigned char *reply;
	size_t reply_len;
	bool replied;
};

static void *
reply_be_main(void *arg)
{
	struct reply_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms;
	int fd = be_accept(&b->be, deadline);

	if (fd < 0)
		return NULL;
	if (fd_read_eof(fd, b->got, b->cap, &b->ngot, deadline) != 0)
		be_fail(&b->be, "no EOF after %zu bytes", b->ngot);
	else {
		b->eof = true;
		if (h_fd_write_all(fd, b->reply, b->reply_len,
		    left(deadline)) != 0)
			be_fail(&b->be, "reply write: %s", strerror(errno));
		else
			b->replied = true;
	}
	close(fd);
	return NULL;
}

START_TEST(test_client_close_notify_reaches_backend_as_eof_and_reply_still_arrives)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "hc-client" };
	struct reply_be b;
	struct h_tls c;
	unsigned char *req = malloc(HC_REQ), *reply = malloc(HC_REPLY);
	unsigned char *back = malloc(HC_REPLY);
	char backend[256], line[4096], want_in[48], want_out[48];
	size_t d;
	int st;

	ck_assert(req != NULL && reply != NULL && back != NULL);
	h_fill_pattern(req, HC_REQ, 0x4ec1u);
	h_fill_pattern(reply, HC_REPLY, 0x4ec2u);
	/* Over IPv6 on the inside: the "[::1]:port" backend form. */
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET6, 8, 0, NULL);
	b.got = malloc(HC_REQ + 1);
	b.cap = HC_REQ + 1;
	b.reply = reply;
	b.reply_len = HC_REPLY;
	ck_assert(b.got != NULL);
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.be, reply_be_main, &b);

	connect_ok(&c, &r, r.relay_port);
	ck_assert_msg(h_tls_write_all(&c, req, HC_REQ, IO_MS) == 0, "%s",
	    c.err);
	ck_assert_msg(tls_close_notify(&c, IO_MS) == 0, "%s", c.err);
	/* Our write side is closed; the reply must still come, all of it. */
	ck_assert_msg(h_tls_read_exact(&c, back, HC_REPLY, IO_MS) == 0,
	    "reading the reply after our close_notify: %s (backend: %s)",
	    c.err, b.be.err[0] ? b.be.err : "fine");
	d = h_first_diff(reply, back, HC_REPLY);
	ck_assert_msg(d == HC_REPLY, "reply differs at byte %zu", d);
	st = h_tls_wait_eof(&c, IO_MS);
	ck_assert_msg(st == 0, "after the reply the relay ended with %d, not "
	    "close_notify (%s)", st, c.err);
	h_tls_close(&c);
	be_join(&b.be);
	ck_assert_msg(b.be.err[0] == '\0', "backend: %s", b.be.err);
	ck_assert_msg(b.eof && b.ngot == HC_REQ, "the backend got %zu of %u "
	    "request bytes before EOF", b.ngot, HC_REQ);
	d = h_first_diff(req, b.got, HC_REQ);
	ck_assert_msg(d == HC_REQ, "request differs at byte %zu", d);

	snprintf(want_in, sizeof(want_in), "BYTES_IN=%u ", HC_REQ);
	snprintf(want_out, sizeof(want_out), "BYTES_OUT=%u ", HC_REPLY);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "CLOSE_REASON=client-closed ",
	    ": connection closed: client closed the connection ", want_in,
	    want_out);
	relay_down(&r);
	be_end(&b.be);
	free(b.got);
	free(req);
	free(reply);
	free(back);
}
END_TEST

#define BF_REPLY (96u * KiB)

/*
 * Waits for the client's first bytes, replies, half-closes, waits until
 * the kernel has every reply byte acknowledged by the relay's host, then
 * closes for good (and says so on ${closed_fd}) while the client is still
 * sending.
 */
struct close_be {
	struct be be;
	const unsigned char *reply;
	size_t reply_len;
	int closed_fd;      /* we write one byte here after close() */
	uint64_t discarded; /* client bytes read and dropped */
};

static void *
close_be_main(void *arg)
{
	struct close_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms;
	unsigned char sink[16384];
	int fd = be_accept(&b->be, deadline), outq = -1;

	if (fd < 0)
		goto out;
	while (b->discarded == 0) {
		ssize_t n = read(fd, sink, sizeof(sink));

		if (n > 0)
			b->discarded += (uint64_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR) ||
		    poll_fd(fd, POLLIN, deadline) != 0) {
			be_fail(&b->be, "the client's first bytes never came");
			goto out;
		}
	}
	if (h_fd_write_all(fd, b->reply, b->reply_len, left(deadline)) != 0) {
		be_fail(&b->be, "reply write: %s", strerror(errno));
		goto out;
	}
	(void)shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n;

		if (ioctl(fd, SIOCOUTQ, &outq) != 0) {
			be_fail(&b->be, "SIOCOUTQ: %s", strerror(errno));
			goto out;
		}
		if (outq == 0)
			break;
		while ((n = read(fd, sink, sizeof(sink))) > 0)
			b->discarded += (uint64_t)n;
		if (h_now_ms() >= deadline) {
			be_fail(&b->be, "%d reply bytes never acknowledged",
			    outq);
			goto out;
		}
		msleep(2);
	}
out:
	if (fd >= 0)
		close(fd);
	if (write(b->closed_fd, "x", 1) != 1)
		be_fail(&b->be, "cannot signal the close");
	return NULL;
}

START_TEST(test_backend_that_closes_while_client_sends_still_delivers_every_byte)
{
	struct relay_daemon r;
	/*
	 * Small socket buffers towards the client, which does not read at
	 * first: part of the reply must still be in the relay's host (its
	 * buffer or its backend socket) when the backend closes.
	 */
	struct relay_spec s = { .label = "hc-backend-close",
	    .sndbuf = 16 * KiB, .rcvbuf = 16 * KiB };
	struct h_tls_opts o = h_client_opts("client", 0);
	struct close_be b;
	struct h_tls c;
	unsigned char *reply = malloc(BF_REPLY), *back = malloc(BF_REPLY + 1);
	unsigned char chunk[1024];
	char backend[256], line[4096], tail[1500], want[48];
	size_t got = 0, d;
	int sig[2], st = -1, i;
	int64_t deadline;

	ck_assert(reply != NULL && back != NULL);
	h_fill_pattern(reply, BF_REPLY, 0xbf01u);
	memset(chunk, 'c', sizeof(chunk));
	ck_assert(pipe2(sig, O_CLOEXEC | O_NONBLOCK) == 0);
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.reply = reply;
	b.reply_len = BF_REPLY;
	b.closed_fd = sig[1];
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.be, close_be_main, &b);

	o.sndbuf = o.rcvbuf = 16 * KiB;
	ck_assert_msg(h_tls_connect(&c, r.relay_port, &o) == 0, "connect: %s",
	    c.err);
	/*
	 * Keep sending, without reading, until the backend has replied and
	 * closed; then send a little more (the relay now writes into a closed
	 * socket); only then read.  The reply sits in the relay's host the
	 * whole time: every byte of it was acknowledged before the close.
	 */
	deadline = h_now_ms() + IO_MS;
	for (;;) {
		ck_assert_msg(h_tls_write_all(&c, chunk, sizeof(chunk),
		    IO_MS) == 0, "client write before the backend closed: %s",
		    c.err);
		if (poll_fd(sig[0], POLLIN, h_now_ms() + 10) == 0)
			break;
		ck_assert_msg(h_now_ms() < deadline, "the backend did not "
		    "close within %d ms (%s)", IO_MS, b.be.err);
	}
	for (i = 0; i < 5; i++) {
		/* Errors are fine here: the relay may be done with us. */
		(void)h_tls_write_all(&c, chunk, sizeof(chunk), 1000);
		msleep(20);
	}
	be_join(&b.be);
	ck_assert_msg(b.be.err[0] == '\0', "backend: %s", b.be.err);
	for (;;) {
		int n, e;

		ERR_clear_error();
		n = SSL_read(c.ssl, back + got, (int)(BF_REPLY + 1 - got));
		if (n > 0) {
			got += (size_t)n;
			if (got <= BF_REPLY)
				continue;
			break;
		}
		e = SSL_get_error(c.ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN) {
			st = 0;
			break;
		}
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			st = 2;
			break;
		}
		if (poll_fd(c.fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		    h_now_ms() + IO_MS) != 0)
			break;
	}
	ck_assert_msg(got == BF_REPLY, "the client got %zu of the %u bytes the "
	    "backend sent before closing, then %s; daemon log ends:\n%s", got,
	    BF_REPLY, st == 0 ? "close_notify" : st == 2 ? "the connection "
	    "broke without close_notify" : "nothing", h_log_tail(&r.d, tail,
	    sizeof(tail)));
	d = h_first_diff(reply, back, BF_REPLY);
	ck_assert_msg(d == BF_REPLY, "reply differs at byte %zu", d);
	ck_assert_msg(st == 0, "after the reply the relay ended with %s, not "
	    "close_notify", st == 2 ? "a broken connection" : "nothing");
	h_tls_close(&c);
	snprintf(want, sizeof(want), "BACKEND_BYTES_IN=%u ", BF_REPLY);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "connection closed:", want,
	    "CLOSE_REASON=backend-closed ");
	relay_down(&r);
	be_end(&b.be);
	close(sig[0]);
	close(sig[1]);
	free(reply);
	free(back);
}
END_TEST

#define SW_REQ "request: send me the data, I keep talking\n"
#define SW_REPLY (32u * KiB)
#define SW_LATE (100u * KiB)

/* Reads the request, replies, SHUT_WR, then reads everything until EOF. */
struct shutwr_be {
	struct be be;
	size_t req_len;
	const unsigned char *reply;
	size_t reply_len;
	unsigned char *got;
	size_t cap, ngot;
	bool eof;
};

static void *
shutwr_be_main(void *arg)
{
	struct shutwr_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms;
	int fd = be_accept(&b->be, deadline);

	if (fd < 0)
		return NULL;
	if (fd_read_full(fd, b->got, b->req_len, deadline) != 0)
		be_fail(&b->be, "the request never came whole");
	else if (h_fd_write_all(fd, b->reply, b->reply_len,
	    left(deadline)) != 0)
		be_fail(&b->be, "reply write: %s", strerror(errno));
	else {
		b->ngot = b->req_len;
		(void)shutdown(fd, SHUT_WR);
		if (fd_read_eof(fd, b->got, b->cap, &b->ngot, deadline) == 0)
			b->eof = true;
		else
			be_fail(&b->be, "no EOF after %zu bytes", b->ngot);
	}
	close(fd);
	return NULL;
}

START_TEST(test_backend_half_close_lets_client_keep_sending_to_backend)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "hc-backend-shutwr" };
	struct shutwr_be b;
	struct h_tls c;
	size_t req_len = strlen(SW_REQ), d;
	unsigned char *reply = malloc(SW_REPLY), *back = malloc(SW_REPLY);
	unsigned char *late = malloc(SW_LATE);
	char backend[256], line[4096], want_in[48], want_out[48], b_out[48];
	int st;

	ck_assert(reply != NULL && back != NULL && late != NULL);
	h_fill_pattern(reply, SW_REPLY, 0x5e01u);
	h_fill_pattern(late, SW_LATE, 0x5e02u);
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.req_len = req_len;
	b.reply = reply;
	b.reply_len = SW_REPLY;
	b.cap = req_len + SW_LATE + 1;
	b.got = malloc(b.cap);
	ck_assert(b.got != NULL);
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.be, shutwr_be_main, &b);

	connect_ok(&c, &r, r.relay_port);
	ck_assert_msg(h_tls_write_all(&c, SW_REQ, req_len, IO_MS) == 0, "%s",
	    c.err);
	ck_assert_msg(h_tls_read_exact(&c, back, SW_REPLY, IO_MS) == 0,
	    "reply: %s", c.err);
	d = h_first_diff(reply, back, SW_REPLY);
	ck_assert_msg(d == SW_REPLY, "reply differs at byte %zu", d);
	/* The backend's FIN comes through as close_notify ... */
	st = h_tls_wait_eof(&c, IO_MS);
	ck_assert_msg(st == 0, "after the backend's FIN the relay ended with "
	    "%d, not close_notify (%s)", st, c.err);
	/* ... and we may still talk: the backend reads on. */
	ck_assert_msg(h_tls_write_all(&c, late, SW_LATE, IO_MS) == 0,
	    "writing after the backend half-closed: %s", c.err);
	ck_assert_msg(tls_close_notify(&c, IO_MS) == 0, "%s", c.err);
	be_join(&b.be);
	ck_assert_msg(b.be.err[0] == '\0', "backend: %s (it got %zu bytes)",
	    b.be.err, b.ngot);
	ck_assert_msg(b.eof && b.ngot == req_len + SW_LATE, "the backend got "
	    "%zu bytes before EOF, want %zu", b.ngot, req_len + SW_LATE);
	d = h_first_diff(late, b.got + req_len, SW_LATE);
	ck_assert_msg(d == SW_LATE, "bytes sent after the backend's FIN differ "
	    "at byte %zu", d);
	ck_assert_msg(h_fd_wait_closed(c.fd, IO_MS) == 0, "the relay kept the "
	    "connection open after both sides ended");
	h_tls_close(&c);

	snprintf(want_in, sizeof(want_in), "BYTES_IN=%zu ", req_len + SW_LATE);
	snprintf(b_out, sizeof(b_out), "BACKEND_BYTES_OUT=%zu ",
	    req_len + SW_LATE);
	snprintf(want_out, sizeof(want_out), "BYTES_OUT=%u ", SW_REPLY);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "CLOSE_REASON=backend-closed ",
	    ": connection closed: backend closed the connection ", want_in,
	    want_out, b_out);
	relay_down(&r);
	be_end(&b.be);
	free(b.got);
	free(reply);
	free(back);
	free(late);
}
END_TEST

#define LINGER_TICKS 5
#define LINGER_TICK_MS 200

/* After the client's EOF: one byte every 200 ms, then silence (open). */
struct trickle_be {
	struct be be;
	int done_fd; /* readable when the test is done with us */
	int sent;
};

static void *
trickle_be_main(void *arg)
{
	struct trickle_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms;
	unsigned char sink[256];
	size_t got = 0;
	int fd = be_accept(&b->be, deadline);

	if (fd < 0)
		return NULL;
	if (fd_read_eof(fd, sink, sizeof(sink), &got, deadline) != 0)
		be_fail(&b->be, "no EOF from the client");
	else
		for (b->sent = 0; b->sent < LINGER_TICKS; b->sent++) {
			char ch = (char)('1' + b->sent);

			msleep(LINGER_TICK_MS);
			if (write(fd, &ch, 1) != 1) {
				be_fail(&b->be, "tick %d: %s", b->sent,
				    strerror(errno));
				break;
			}
		}
	(void)poll_fd(b->done_fd, POLLIN, deadline);
	close(fd);
	return NULL;
}

START_TEST(test_half_closed_connection_lingers_while_data_flows_then_times_out)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "linger",
	    .extra = "linger_timeout = 0.5;" };
	struct trickle_be b;
	struct h_tls c;
	char backend[256], line[4096], got[LINGER_TICKS + 1] = "";
	int64_t t_last, waited;
	long dur;
	int done[2], st, i;

	ck_assert(pipe2(done, O_CLOEXEC) == 0);
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.done_fd = done[0];
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.be, trickle_be_main, &b);

	connect_ok(&c, &r, r.relay_port);
	ck_assert(h_tls_write_all(&c, "bye\n", 4, IO_MS) == 0);
	ck_assert_msg(tls_close_notify(&c, IO_MS) == 0, "%s", c.err);
	/* Half-closed for 1 s, but never idle for the 0.5 s linger bound. */
	for (i = 0; i < LINGER_TICKS; i++)
		ck_assert_msg(h_tls_read_exact(&c, got + i, 1, IO_MS) == 0,
		    "byte %d of %d sent while half-closed: %s", i + 1,
		    LINGER_TICKS, c.err);
	t_last = h_now_ms();
	ck_assert_str_eq(got, "12345");
	st = h_tls_wait_eof(&c, 3000);
	waited = h_now_ms() - t_last;
	ck_assert_msg(st == 0, "half-closed and idle: the relay ended with %d, "
	    "not close_notify (%s)", st, c.err);
	ck_assert_msg(waited >= 350 && waited <= 1500, "closed %" PRId64 " ms "
	    "after the last byte; linger_timeout is 500 ms", waited);
	h_tls_close(&c);
	ck_assert(write(done[1], "x", 1) == 1);
	be_join(&b.be);
	ck_assert_msg(b.be.err[0] == '\0', "backend: %s", b.be.err);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "CLOSE_REASON=linger-timeout ",
	    "connection closed: half-closed and idle");
	dur = field_num(line, "DURATION_MS");
	ck_assert_msg(dur >= LINGER_TICKS * LINGER_TICK_MS + 450, "DURATION_MS "
	    "%ld: the linger bound did not wait for the data: %s", dur, line);
	relay_down(&r);
	be_end(&b.be);
	close(done[0]);
	close(done[1]);
}
END_TEST

#define BOTH_HELLO "hello\n"
#define BOTH_REPLY "reply from the backend, then its FIN\n"

/*
 * Reads the client's hello (so the relay is relaying), says so on
 * ${ready_fd}, waits for a byte on ${go_fd}, then sends its reply and FIN
 * and reads until EOF.
 */
struct both_be {
	struct be be;
	int ready_fd, go_fd;
	bool eof;
};

static void *
both_be_main(void *arg)
{
	struct both_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms;
	char hello[sizeof(BOTH_HELLO) - 1], sink[256];
	size_t got = 0;
	int fd = be_accept(&b->be, deadline);

	if (fd < 0)
		return NULL;
	if (fd_read_full(fd, hello, sizeof(hello), deadline) != 0)
		be_fail(&b->be, "no hello from the client");
	else if (write(b->ready_fd, "r", 1) != 1 ||
	    poll_fd(b->go_fd, POLLIN, deadline) != 0 ||
	    read(b->go_fd, sink, 1) != 1)
		be_fail(&b->be, "no go from the test");
	else if (h_fd_write_all(fd, BOTH_REPLY, strlen(BOTH_REPLY),
	    left(deadline)) != 0)
		be_fail(&b->be, "reply write: %s", strerror(errno));
	else {
		(void)shutdown(fd, SHUT_WR);
		if (fd_read_eof(fd, sink, sizeof(sink), &got, deadline) == 0 &&
		    got == 0)
			b->eof = true;
		else
			be_fail(&b->be, "no clean EOF (%zu bytes)", got);
	}
	close(fd);
	return NULL;
}

/* Wait until ${pid} is stopped (state 'T'). */
static bool
wait_stopped(pid_t pid, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		char st = '?';

		if (h_proc_ppid(pid, &st) < 0)
			return false;
		if (st == 'T')
			return true;
		if (h_now_ms() >= deadline)
			return false;
		msleep(5);
	}
}

/*
 * The client's close_notify and the backend's reply + FIN reach the worker
 * while it is stopped, so one epoll_wait returns both sockets of the
 * connection: the first event finishes the connection, and the second must
 * not touch it (it is freed).  Three rounds on one worker.
 */
START_TEST(test_both_sides_ending_in_one_event_batch_leave_the_worker_alive)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "both-end" };
	struct both_be b;
	struct h_tls c;
	char backend[256], line[4096], tail[1500], back[sizeof(BOTH_REPLY)];
	char out[48], ch;
	int ready[2], go[2], round, st;
	pid_t w[2];

	ck_assert(pipe2(ready, O_CLOEXEC) == 0 && pipe2(go, O_CLOEXEC) == 0);
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.ready_fd = ready[1];
	b.go_fd = go[0];
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	ck_assert_int_eq(h_daemon_workers(&r.d, w, 2, 1, 2000), 1);
	for (round = 0; round < 3; round++) {
		b.eof = false;
		be_start(&b.be, both_be_main, &b);
		connect_ok(&c, &r, r.relay_port);
		ck_assert(h_tls_write_all(&c, BOTH_HELLO, strlen(BOTH_HELLO),
		    IO_MS) == 0);
		ck_assert_msg(poll_fd(ready[0], POLLIN, h_now_ms() + IO_MS) == 0
		    && read(ready[0], &ch, 1) == 1, "round %d: the hello never "
		    "reached the backend (%s)", round, b.be.err);

		ck_assert(kill(w[0], SIGSTOP) == 0);
		ck_assert_msg(wait_stopped(w[0], 2000), "worker %ld "
		    "did not stop", (long)w[0]);
		ck_assert_msg(tls_close_notify(&c, IO_MS) == 0, "%s", c.err);
		ck_assert(write(go[1], "g", 1) == 1);
		msleep(100); /* both ends' bytes are in the worker's sockets */
		ck_assert(kill(w[0], SIGCONT) == 0);
		msleep(200); /* a worker that crashed is reported by now */
		ck_assert_msg(h_log_count(&r.d, "restarting in", NULL) == 0 &&
		    !h_pid_gone(w[0]) && h_proc_ppid(w[0], NULL) == r.d.pid,
		    "round %d: the worker died handling a connection whose two "
		    "sides ended in one event batch; log ends:\n%s", round,
		    h_log_tail(&r.d, tail, sizeof(tail)));

		memset(back, 0, sizeof(back));
		ck_assert_msg(h_tls_read_exact(&c, back, strlen(BOTH_REPLY),
		    IO_MS) == 0, "round %d: reply: %s; log ends:\n%s", round,
		    c.err, h_log_tail(&r.d, tail, sizeof(tail)));
		ck_assert_str_eq(back, BOTH_REPLY);
		st = h_tls_wait_eof(&c, IO_MS);
		ck_assert_msg(st == 0, "round %d: ended with %d, not "
		    "close_notify (%s)", round, st, c.err);
		h_tls_close(&c);
		be_join(&b.be);
		ck_assert_msg(b.be.err[0] == '\0' && b.eof, "round %d: backend: "
		    "%s", round, b.be.err[0] ? b.be.err : "no EOF");
		snprintf(out, sizeof(out), "BYTES_OUT=%zu ", strlen(BOTH_REPLY));
		H_LOG_EXPECT(&r.d, line, c.peer_tag, "connection closed:",
		    "BYTES_IN=6 ", out);
		ck_assert_int_eq(h_log_count(&r.d, c.peer_tag, NULL), 1);
	}
	relay_down(&r);
	be_end(&b.be);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 3. a real backend: redis-server + redis-cli                               */
/* ------------------------------------------------------------------------- */

/* Send ${cmd} to 127.0.0.1:${port} over plain TCP; its reply in ${out}. */
static size_t
raw_command(int port, const char *cmd, const char *until, char *out,
    size_t len, int timeout_ms)
{
	int fd = h_tcp_connect(port, timeout_ms);
	size_t n = 0;

	out[0] = '\0';
	if (fd < 0)
		return 0;
	if (h_fd_write_all(fd, cmd, strlen(cmd), timeout_ms) == 0)
		n = h_fd_read_until(fd, out, len, until, timeout_ms);
	close(fd);
	return n;
}

/* Run redis-cli through the relay; its output (stdout + stderr) in ${out}. */
static int
redis_cli(int port, const char *const *cmd, const char *log, char *out,
    size_t len)
{
	char p[16], err[256];
	const char *argv[32];
	int n = 0, st;
	FILE *f;
	size_t k;

	snprintf(p, sizeof(p), "%d", port);
	argv[n++] = "redis-cli";
	argv[n++] = "-h";
	argv[n++] = "127.0.0.1";
	argv[n++] = "-p";
	argv[n++] = p;
	argv[n++] = "--tls";
	argv[n++] = "--cert";
	argv[n++] = h_pki("client.crt");
	argv[n++] = "--key";
	argv[n++] = h_pki("client.key");
	argv[n++] = "--cacert";
	argv[n++] = h_pki("ca.crt");
	argv[n++] = "--sni";
	argv[n++] = "localhost";
	for (; *cmd != NULL; cmd++)
		argv[n++] = *cmd;
	argv[n] = NULL;
	(void)unlink(log);
	st = h_run(argv, log, IO_MS, err, sizeof(err));
	out[0] = '\0';
	if ((f = fopen(log, "re")) != NULL) {
		k = fread(out, 1, len - 1, f);
		out[k] = '\0';
		fclose(f);
	}
	ck_assert_msg(st >= 0, "redis-cli: %s", err);
	return st;
}

START_TEST(test_redis_cli_sets_then_gets_through_relay_to_real_redis_server)
{
	static const char *const set[] = { "SET", "k", "v", NULL };
	static const char *const get[] = { "GET", "k", NULL };
	const char *help[] = { "redis-cli", "--help", NULL };
	struct relay_daemon r;
	struct relay_spec s = { .label = "redis" };
	char port[16], backend[256], out[4096], err[256], line[4096];
	char baddr[64], rlog[512], elog[512];
	const char *argv[20];
	int rport = h_free_port(), to = -1, from = -1, st, n;
	int64_t deadline;
	pid_t pid;

	/* --help prints its usage and exits 0; look for --tls in it. */
	(void)unlink(h_tmp("redis-cli-help.out"));
	(void)h_run(help, h_tmp("redis-cli-help.out"), IO_MS, err,
	    sizeof(err));
	{
		FILE *f = fopen(h_tmp("redis-cli-help.out"), "re");
		size_t k = f != NULL ? fread(out, 1, sizeof(out) - 1, f) : 0;

		out[k] = '\0';
		if (f != NULL)
			fclose(f);
		if (strstr(out, "--tls") == NULL) {
			fprintf(stderr, "redis: SKIPPED: this redis-cli has no "
			    "--tls (built without TLS); install one that has "
			    "it (Debian's redis-tools does)\n");
			return;
		}
	}
	ck_assert(rport > 0);
	snprintf(port, sizeof(port), "%d", rport);
	snprintf(rlog, sizeof(rlog), "%s", h_tmp("redis-server.log"));
	snprintf(elog, sizeof(elog), "%s", h_tmp("redis-server.err"));
	n = 0;
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = port;
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	argv[n++] = "--logfile";
	argv[n++] = rlog;
	argv[n++] = "--dir";
	argv[n++] = getenv("TEST_TMPDIR");
	argv[n] = NULL;
	pid = h_spawn(argv, &to, &from, elog);
	ck_assert_msg(pid > 0, "cannot start redis-server");
	deadline = h_now_ms() + 5000;
	while (raw_command(rport, "PING\r\n", "+PONG\r\n", out, sizeof(out),
	    500) == 0 || strstr(out, "+PONG\r\n") == NULL) {
		ck_assert_msg(h_now_ms() < deadline, "redis-server on port %d "
		    "did not answer PING within 5 s (see %s, %s)", rport, rlog,
		    elog);
		msleep(20);
	}

	snprintf(backend, sizeof(backend), "address = \"127.0.0.1:%d\";",
	    rport);
	s.backend = backend;
	relay_up(&r, &s);
	st = redis_cli(r.relay_port, set, h_tmp("redis-cli-set.out"), out,
	    sizeof(out));
	ck_assert_msg(st == 0 && strcmp(out, "OK\n") == 0, "redis-cli SET k v "
	    "through the relay: exit %d, output \"%s\"", st, out);
	st = redis_cli(r.relay_port, get, h_tmp("redis-cli-get.out"), out,
	    sizeof(out));
	ck_assert_msg(st == 0 && strcmp(out, "v\n") == 0, "redis-cli GET k "
	    "through the relay: exit %d, output \"%s\"", st, out);
	/* The value is really in that redis, not in something else. */
	(void)raw_command(rport, "GET k\r\n", "v\r\n", out, sizeof(out), 2000);
	ck_assert_msg(strcmp(out, "$1\r\nv\r\n") == 0, "redis-server itself "
	    "answers GET k with \"%s\"", out);

	snprintf(baddr, sizeof(baddr), "BACKEND_ADDR=127.0.0.1:%d ", rport);
	ck_assert_msg(h_log_wait_count(&r.d, 2, LOG_MS, "connection closed:",
	    "LISTENER=relay ", baddr, "CLIENT_SUBJECT=\"OU=ops, "
	    "CN=test-client\" ", NULL) == 2, "no two close lines naming %s; "
	    "log ends:\n%s", baddr, h_log_tail(&r.d, line, sizeof(line)));
	relay_down(&r);
	(void)kill(pid, SIGTERM);
	st = h_wait_pid(pid, 5000);
	ck_assert_msg(st == 0, "redis-server exit status %d after SIGTERM",
	    st);
	close(to);
	close(from);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 4. backend down, silent, black-holed                                      */
/* ------------------------------------------------------------------------- */

/* The echo listener of ${r} answers, quickly: nothing blocks the worker. */
static void
echo_listener_serves(const struct relay_daemon *r, const char *when)
{
	struct h_tls c;
	char msg[128];
	int64_t t0 = h_now_ms(), ms;

	connect_ok(&c, r, r->echo_port);
	snprintf(msg, sizeof(msg), "echo %s\n", when);
	ck_assert_msg(h_tls_roundtrip(&c, msg, strlen(msg), IO_MS) == 0,
	    "echo listener %s: %s", when, c.err);
	ms = h_now_ms() - t0;
	h_tls_close(&c);
	ck_assert_msg(ms < 900, "echo listener %s took %" PRId64 " ms", when,
	    ms);
}

/*
 * Loop 0: TCP port held by a bound socket that does not listen.
 * Loop 1: unix socket file with no listener behind it.
 * Both: connect(2) fails with ECONNREFUSED.
 */
START_TEST(test_refused_backend_closes_client_cleanly_and_logs_backend_refused)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "refused", .with_echo = true };
	struct h_tls c;
	char backend[256], addr[200], line[4096], words[300], baddr[240];
	int fd, st;
	int64_t t0, ms;

	if (_i == 0) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert(fd >= 0);
		ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		ck_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
		snprintf(addr, sizeof(addr), "127.0.0.1:%d",
		    ntohs(sa.sin_port));
	} else {
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		const char *path = h_tmp("relay-dead.sock");

		(void)unlink(path);
		snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert(fd >= 0);
		ck_assert(bind(fd, (struct sockaddr *)&un, sizeof(un)) == 0);
		/* Writable by the workers' user, so the connect is refused
		 * for want of a listener, not for want of permission. */
		ck_assert(chmod(path, 0666) == 0);
		close(fd); /* the file stays; nobody listens */
		fd = -1;
		snprintf(addr, sizeof(addr), "unix:%s", path);
	}
	snprintf(backend, sizeof(backend), "address = \"%s\";", addr);
	s.backend = backend;
	relay_up(&r, &s);

	connect_ok(&c, &r, r.relay_port);
	t0 = h_now_ms();
	st = h_tls_wait_eof(&c, 3000);
	ms = h_now_ms() - t0;
	ck_assert_msg(st == 0, "backend %s refused: the client's session ended "
	    "with %d, not close_notify (%s)", addr, st, c.err);
	ck_assert_msg(ms < 1500, "closed only after %" PRId64 " ms", ms);
	h_tls_close(&c);
	snprintf(words, sizeof(words), ": connection closed: backend %s: ",
	    addr);
	snprintf(baddr, sizeof(baddr), "BACKEND_ADDR=%s ", addr);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, words, baddr,
	    "LISTENER=relay ");
	ck_assert_msg(strstr(line, "CLOSE_REASON=backend-refused ") != NULL &&
	    strstr(line, "refused") != NULL, "%s backend: want "
	    "CLOSE_REASON=backend-refused: %s", _i == 0 ? "TCP" : "unix",
	    line);
	ck_assert_msg(strstr(line, ": warning: ") != NULL, "a failing backend "
	    "is logged as a warning: %s", line);
	echo_listener_serves(&r, "after a refused backend");
	relay_down(&r);
	if (fd >= 0)
		close(fd);
}
END_TEST

START_TEST(test_silent_backend_is_closed_by_idle_timeout_while_echo_listener_serves)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "silent", .with_echo = true,
	    .extra = "idle_timeout = 1;" };
	struct be b;
	struct h_tls c;
	char backend[256], line[4096], baddr[240];
	int st;
	long dur;

	/* Listens, never accepts, never answers: connect(2) still succeeds. */
	be_listen(&b, AF_INET, 16, 0, NULL);
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.addr);
	s.backend = backend;
	relay_up(&r, &s);

	connect_ok(&c, &r, r.relay_port);
	ck_assert(h_tls_write_all(&c, "anyone there?\n", 14, IO_MS) == 0);
	echo_listener_serves(&r, "while a relay waits on a silent backend");
	st = h_tls_wait_eof(&c, 4000);
	ck_assert_msg(st == 0, "silent backend: the client's session ended "
	    "with %d, not close_notify (%s)", st, c.err);
	h_tls_close(&c);
	snprintf(baddr, sizeof(baddr), "BACKEND_ADDR=%s ", b.addr);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "CLOSE_REASON=idle-timeout ",
	    baddr, "connection closed: idle for 1.0 s",
	    "BACKEND_BYTES_OUT=14 ", "BACKEND_BYTES_IN=0 ");
	dur = field_num(line, "DURATION_MS");
	ck_assert_msg(dur >= 1000 && dur <= 2500, "DURATION_MS %ld with "
	    "idle_timeout = 1: %s", dur, line);
	echo_listener_serves(&r, "after the idle timeout");
	relay_down(&r);
	be_end(&b);
}
END_TEST

/*
 * A backend whose connect(2) never completes: listen(fd, 0) takes one
 * connection into its accept queue; once that is full the kernel drops
 * further SYNs.  ${fill} keeps the queue full.  False (and nothing left
 * open) if this kernel completes our own probe connect anyway.
 */
static bool
blackhole_listen(struct be *b, int fill[3])
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int probe, i;

	be_listen(b, AF_INET, 0, 0, NULL);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)b->port);
	for (i = 0; i < 3; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		ck_assert(fill[i] >= 0);
		(void)connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	msleep(50);
	probe = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert(probe >= 0);
	if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
	    poll_fd(probe, POLLOUT, h_now_ms() + 300) == 0) {
		fprintf(stderr, "blackhole: SKIPPED: a connect to a listener "
		    "with a full accept queue completed here (the kernel does "
		    "not drop the SYN), so there is no way to black-hole a "
		    "loopback connect\n");
		close(probe);
		for (i = 0; i < 3; i++)
			close(fill[i]);
		be_end(b);
		return false;
	}
	close(probe);
	return true;
}

static void
blackhole_end(struct be *b, int fill[3])
{
	int i;

	for (i = 0; i < 3; i++)
		close(fill[i]);
	be_end(b);
}

START_TEST(test_blackholed_backend_connect_times_out_while_echo_listener_serves)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "blackhole", .with_echo = true };
	struct be b;
	struct h_tls c;
	char backend[256], line[4096], baddr[240];
	int fill[3], st;
	long dur;

	if (!blackhole_listen(&b, fill))
		return;
	snprintf(backend, sizeof(backend), "address = \"%s\"; "
	    "connect_timeout = 1;", b.addr);
	s.backend = backend;
	relay_up(&r, &s);
	connect_ok(&c, &r, r.relay_port);
	ck_assert(h_tls_write_all(&c, "hello?\n", 7, IO_MS) == 0);
	echo_listener_serves(&r, "while a relay connect hangs");
	st = h_tls_wait_eof(&c, 4000);
	ck_assert_msg(st == 0, "black-holed backend: the client's session ended "
	    "with %d, not close_notify (%s)", st, c.err);
	h_tls_close(&c);
	snprintf(baddr, sizeof(baddr), "BACKEND_ADDR=%s ", b.addr);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "CLOSE_REASON=backend-timeout ",
	    baddr, ": connection closed: backend ", "no connection within 1.0 s");
	dur = field_num(line, "DURATION_MS");
	ck_assert_msg(dur >= 1000 && dur <= 2500, "DURATION_MS %ld with "
	    "connect_timeout = 1: %s", dur, line);
	echo_listener_serves(&r, "after the connect timeout");
	relay_down(&r);
	blackhole_end(&b, fill);
}
END_TEST

/* CPU time (user + system) ${pid} used so far, in milliseconds, or -1. */
static long
proc_cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After "(comm) ": state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2, "%*c %*d %*d %*d "
	    "%*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

/*
 * A client that resets its connection while the relay still waits for the
 * backend's connect: the worker must not spin on the dead socket (epoll
 * reports EPOLLERR/EPOLLHUP even for a socket registered for no events).
 */
START_TEST(test_client_reset_during_backend_connect_costs_no_cpu)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "reset-connecting",
	    .with_echo = true };
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct be b;
	struct h_tls c;
	char backend[256], line[4096], tag[48];
	int fill[3];
	long cpu0, cpu1;
	int64_t t0, wall;
	pid_t w[2];

	if (h_skip_under_valgrind(__func__,
	    "measures CPU time"))
		return;
	if (!blackhole_listen(&b, fill))
		return;
	snprintf(backend, sizeof(backend), "address = \"%s\"; "
	    "connect_timeout = 1.5;", b.addr);
	s.backend = backend;
	relay_up(&r, &s);
	ck_assert_int_eq(h_daemon_workers(&r.d, w, 2, 1, 2000), 1);
	connect_ok(&c, &r, r.relay_port);
	snprintf(tag, sizeof(tag), "%s", c.peer_tag);
	msleep(100); /* the relay is in its backend connect now */
	(void)setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c.fd); /* RST */
	c.fd = -1;
	h_tls_close(&c);
	t0 = h_now_ms();
	cpu0 = proc_cpu_ms(w[0]);
	msleep(1000);
	cpu1 = proc_cpu_ms(w[0]);
	wall = h_now_ms() - t0;
	ck_assert(cpu0 >= 0 && cpu1 >= 0);
	fprintf(stderr, "reset while connecting: worker used %ld ms of CPU in "
	    "%" PRId64 " ms\n", cpu1 - cpu0, wall);
	ck_assert_msg(cpu1 - cpu0 < wall / 4, "the worker used %ld ms of CPU in "
	    "%" PRId64 " ms with one reset client waiting for a backend "
	    "connect: it spins on the dead socket", cpu1 - cpu0, wall);
	H_LOG_EXPECT(&r.d, line, tag, "connection closed:");
	echo_listener_serves(&r, "after a reset client");
	relay_down(&r);
	blackhole_end(&b, fill);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 5. PROXY protocol                                                         */
/* ------------------------------------------------------------------------- */

/*
 * An independent PROXY v2 reader (HAProxy's proxy-protocol.txt, section
 * 2.2), run as "python3 -c": header bytes on stdin, one line of
 * key=value pairs on stdout in a fixed key order, or "error: ..." and
 * exit 1.
 */
static const char proxy_v2_parser[] =
    "import socket, struct, sys\n"
    "d = sys.stdin.buffer.read()\n"
    "def fail(m):\n"
    "    print('error: ' + m)\n"
    "    sys.exit(1)\n"
    "if len(d) < 16:\n"
    "    fail('%d bytes: shorter than the fixed 16' % len(d))\n"
    "if d[:12] != bytes.fromhex('0d0a0d0a000d0a515549540a'):\n"
    "    fail('bad signature ' + d[:12].hex())\n"
    "if d[12] != 0x21:\n"
    "    fail('version/command 0x%02x, want 0x21' % d[12])\n"
    "n = struct.unpack('!H', d[14:16])[0]\n"
    "if len(d) != 16 + n:\n"
    "    fail('length field %d but %d bytes follow' % (n, len(d) - 16))\n"
    "b = d[16:]\n"
    "f = {}\n"
    "if d[13] == 0x11:\n"
    "    alen, af = 4, socket.AF_INET\n"
    "elif d[13] == 0x21:\n"
    "    alen, af = 16, socket.AF_INET6\n"
    "else:\n"
    "    fail('family/protocol 0x%02x' % d[13])\n"
    "if n < 2 * alen + 4:\n"
    "    fail('address block of %d bytes is too short' % n)\n"
    "sp, dp = struct.unpack('!HH', b[2 * alen:2 * alen + 4])\n"
    "f['src'] = '%s:%d' % (socket.inet_ntop(af, b[:alen]), sp)\n"
    "f['dst'] = '%s:%d' % (socket.inet_ntop(af, b[alen:2 * alen]), dp)\n"
    "def tlvs(t, what):\n"
    "    i = 0\n"
    "    while i < len(t):\n"
    "        if len(t) - i < 3:\n"
    "            fail(what + ': truncated TLV header')\n"
    "        k = t[i]\n"
    "        m = struct.unpack('!H', t[i + 1:i + 3])[0]\n"
    "        if i + 3 + m > len(t):\n"
    "            fail(what + ': TLV 0x%02x overruns its container' % k)\n"
    "        yield k, t[i + 3:i + 3 + m]\n"
    "        i += 3 + m\n"
    "def put(k, v):\n"
    "    if k in f:\n"
    "        fail('duplicate ' + k)\n"
    "    f[k] = v\n"
    "sub = {0x21: 'ssl.version', 0x22: 'ssl.cn', 0x23: 'ssl.cipher',\n"
    "       0x24: 'ssl.sig_alg', 0x25: 'ssl.key_alg'}\n"
    "for k, v in tlvs(b[2 * alen + 4:], 'header'):\n"
    "    if k == 0x20:\n"
    "        if len(v) < 5:\n"
    "            fail('PP2_TYPE_SSL value shorter than 5 bytes')\n"
    "        bits = ((1, 'ssl'), (2, 'cert_conn'), (4, 'cert_sess'))\n"
    "        put('ssl.client', ','.join(w for m, w in bits if v[0] & m))\n"
    "        put('verify', str(struct.unpack('!I', v[1:5])[0]))\n"
    "        for s, w in tlvs(v[5:], 'PP2_TYPE_SSL'):\n"
    "            put(sub.get(s, 'ssl.0x%02x' % s), w.decode('utf-8'))\n"
    "    elif k == 0xE0:\n"
    "        put('uri', v.decode('utf-8'))\n"
    "    else:\n"
    "        put('tlv.0x%02x' % k, v.hex())\n"
    "order = ['src', 'dst', 'ssl.client', 'verify', 'ssl.version',\n"
    "         'ssl.cipher', 'ssl.cn', 'uri']\n"
    "keys = [k for k in order if k in f]\n"
    "keys += sorted(k for k in f if k not in order)\n"
    "print(' '.join('%s=%s' % (k, f[k]) for k in keys))\n";

#define PX_PAYLOAD "payload after the PROXY header\n"

/* Reads a PROXY header (v1 line or v2 block), then the payload, echoes it. */
struct proxy_be {
	struct be be;
	int version;
	unsigned char hdr[1200];
	size_t hdr_len;
	char payload[128];
	size_t payload_len; /* to read */
};

static void *
proxy_be_main(void *arg)
{
	struct proxy_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms;
	unsigned char sink[256];
	size_t got = 0;
	int fd = be_accept(&b->be, deadline);

	if (fd < 0)
		return NULL;
	if (b->version == 2) {
		size_t n;

		if (fd_read_full(fd, b->hdr, 16, deadline) != 0) {
			be_fail(&b->be, "no 16-byte v2 header start");
			goto out;
		}
		n = (size_t)b->hdr[14] << 8 | b->hdr[15];
		if (16 + n > sizeof(b->hdr)) {
			be_fail(&b->be, "v2 length field %zu is absurd", n);
			goto out;
		}
		if (fd_read_full(fd, b->hdr + 16, n, deadline) != 0) {
			be_fail(&b->be, "v2 header shorter than its %zu", n);
			goto out;
		}
		b->hdr_len = 16 + n;
	} else {
		/* One byte at a time: the payload may follow in the segment. */
		while (b->hdr_len < 108 && (b->hdr_len < 2 ||
		    memcmp(b->hdr + b->hdr_len - 2, "\r\n", 2) != 0)) {
			if (fd_read_full(fd, b->hdr + b->hdr_len, 1,
			    deadline) != 0) {
				be_fail(&b->be, "v1 line cut after %zu bytes",
				    b->hdr_len);
				goto out;
			}
			b->hdr_len++;
		}
	}
	if (fd_read_full(fd, b->payload, b->payload_len, deadline) != 0) {
		be_fail(&b->be, "payload did not follow the header");
		goto out;
	}
	if (h_fd_write_all(fd, b->payload, b->payload_len,
	    left(deadline)) != 0) {
		be_fail(&b->be, "echo: %s", strerror(errno));
		goto out;
	}
	if (fd_read_eof(fd, sink, sizeof(sink), &got, deadline) != 0 ||
	    got != 0)
		be_fail(&b->be, "%zu unexpected bytes after the payload", got);
out:
	close(fd);
	return NULL;
}

/* Feed ${hdr} to the python parser; its stdout line in ${out}. */
static int
parse_v2(const unsigned char *hdr, size_t len, char *out, size_t outlen)
{
	const char *argv[] = { "python3", "-c", proxy_v2_parser, NULL };
	int to, from, st;
	pid_t pid;

	pid = h_spawn(argv, &to, &from, h_tmp("proxy-v2-parse.err"));
	ck_assert_msg(pid > 0, "cannot start python3");
	ck_assert_msg(h_fd_write_all(to, hdr, len, IO_MS) == 0, "cannot feed "
	    "the parser: %s", strerror(errno));
	close(to);
	(void)h_fd_read_until(from, out, outlen, NULL, IO_MS);
	close(from);
	st = h_wait_pid(pid, IO_MS);
	return st;
}

/* Run ${b}'s backend behind a relay with proxy_protocol = v${b->version}. */
static void
proxy_run(struct relay_daemon *r, struct proxy_be *b, struct h_tls *c,
    const char *label)
{
	struct relay_spec s = { .label = label };
	char backend[300], back[sizeof(PX_PAYLOAD)];

	snprintf(b->payload, sizeof(b->payload), "%s", PX_PAYLOAD);
	b->payload_len = strlen(PX_PAYLOAD);
	b->hdr_len = 0;
	snprintf(backend, sizeof(backend), "address = \"%s\"; "
	    "proxy_protocol = \"v%d\";", b->be.addr, b->version);
	s.backend = backend;
	relay_up(r, &s);
	be_start(&b->be, proxy_be_main, b);
	connect_ok(c, r, r->relay_port);
	memset(back, 0, sizeof(back));
	ck_assert_msg(h_tls_write_all(c, PX_PAYLOAD, b->payload_len,
	    IO_MS) == 0, "%s", c->err);
	ck_assert_msg(h_tls_read_exact(c, back, b->payload_len, IO_MS) == 0,
	    "payload echo: %s (backend: %s)", c->err, b->be.err);
	ck_assert_str_eq(back, PX_PAYLOAD);
	ck_assert_msg(tls_close_notify(c, IO_MS) == 0, "%s", c->err);
	be_join(&b->be);
	ck_assert_msg(b->be.err[0] == '\0', "backend: %s", b->be.err);
}

START_TEST(test_proxy_v2_header_parsed_independently_names_client_then_payload_intact)
{
	struct relay_daemon r;
	struct proxy_be b;
	struct h_tls c;
	char out[1024], want[1024], want_sess[1024], line[4096], bout[48];
	const char *cipher;
	int st;

	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.version = 2;
	proxy_run(&r, &b, &c, "proxy-v2");
	cipher = SSL_CIPHER_standard_name(SSL_get_current_cipher(c.ssl));
	ck_assert(cipher != NULL);
	st = parse_v2(b.hdr, b.hdr_len, out, sizeof(out));
	ck_assert_msg(st == 0, "the parser refused the header (exit %d): %s",
	    st, out);
	/* cert_sess (HAProxy sets it too) is allowed, not required. */
	snprintf(want, sizeof(want), "src=127.0.0.1:%d dst=127.0.0.1:%d "
	    "ssl.client=ssl,cert_conn verify=0 ssl.version=%s ssl.cipher=%s "
	    "ssl.cn=test-client uri=spiffe://test.example/client\n",
	    c.local_port, r.relay_port, h_tls_version(&c), cipher);
	snprintf(want_sess, sizeof(want_sess), "src=127.0.0.1:%d "
	    "dst=127.0.0.1:%d ssl.client=ssl,cert_conn,cert_sess verify=0 "
	    "ssl.version=%s ssl.cipher=%s ssl.cn=test-client "
	    "uri=spiffe://test.example/client\n", c.local_port, r.relay_port,
	    h_tls_version(&c), cipher);
	ck_assert_msg(strcmp(out, want) == 0 || strcmp(out, want_sess) == 0,
	    "PROXY v2 header says\n  %s want\n  %s", out, want);
	h_tls_close(&c);
	/* The header counts as bytes sent to the backend, not from the client. */
	snprintf(bout, sizeof(bout), "BACKEND_BYTES_OUT=%zu ", b.hdr_len +
	    strlen(PX_PAYLOAD));
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "connection closed:", bout,
	    "CLOSE_REASON=client-closed ");
	ck_assert_msg(field_num(line, "BYTES_IN") == (long)strlen(PX_PAYLOAD),
	    "BYTES_IN counts the header: %s", line);
	relay_down(&r);
	be_end(&b.be);
}
END_TEST

START_TEST(test_proxy_v1_line_is_exact_then_payload_intact)
{
	struct relay_daemon r;
	struct proxy_be b;
	struct h_tls c;
	char want[128], line[4096];

	/* Through a unix socket: the "unix:/path" backend form. */
	be_listen(&b.be, AF_UNIX, 8, 0, "relay-proxy-v1.sock");
	b.version = 1;
	proxy_run(&r, &b, &c, "proxy-v1");
	snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n",
	    c.local_port, r.relay_port);
	ck_assert_msg(b.hdr_len == strlen(want) &&
	    memcmp(b.hdr, want, b.hdr_len) == 0, "PROXY v1 line is \"%.*s\", "
	    "want \"%s\"", (int)b.hdr_len, (const char *)b.hdr, want);
	h_tls_close(&c);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "connection closed:",
	    "CLOSE_REASON=client-closed ");
	relay_down(&r);
	be_end(&b.be);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 6. TLS to the backend                                                     */
/* ------------------------------------------------------------------------- */

/* An OpenSSL echo server that requires a client certificate from ca.crt. */
struct tls_be {
	struct be be;
	const char *cert, *key; /* its server certificate */
	bool handshake_ok;
	char peer_cn[128];      /* CN of the client certificate it verified */
	char version[16];
	uint64_t echoed;
	bool close_notify;      /* the relay ended with close_notify */
};

/* Drive one SSL call to completion before ${deadline}; its result. */
static int
ssl_wait(SSL *ssl, int fd, int r, int64_t deadline)
{
	int e = SSL_get_error(ssl, r);

	if (e == SSL_ERROR_WANT_READ)
		return poll_fd(fd, POLLIN, deadline) == 0 ? 1 : -1;
	if (e == SSL_ERROR_WANT_WRITE)
		return poll_fd(fd, POLLOUT, deadline) == 0 ? 1 : -1;
	return -1;
}

static void tls_be_serve(struct tls_be *b, int fd, int64_t deadline);

static void *
tls_be_main(void *arg)
{
	struct tls_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms;
	int fd = be_accept(&b->be, deadline);

	if (fd >= 0)
		tls_be_serve(b, fd, deadline);
	return NULL;
}

/*
 * Loop 0: server_name = "localhost"; loop 1: no server_name, so the
 * certificate must hold the address's IP (127.0.0.1, which server.crt has).
 */
START_TEST(test_tls_backend_is_verified_and_sees_our_client_certificate)
{
	static const char msg[] = "over TLS on both sides\n";
	struct relay_daemon r;
	struct relay_spec s = { .label = "tls-backend" };
	struct tls_be b;
	struct h_tls c;
	char backend[1024], line[4096];

	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.cert = h_pki("server.crt");
	b.key = h_pki("server.key");
	snprintf(backend, sizeof(backend), "address = \"%s\"; tls = { "
	    "ca = \"@PKI@/ca.crt\"; cert = \"@PKI@/client.crt\"; "
	    "key = \"@PKI@/client.key\"; %s };", b.be.addr, _i == 0 ?
	    "server_name = \"localhost\";" : "");
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.be, tls_be_main, &b);

	connect_ok(&c, &r, r.relay_port);
	ck_assert_msg(h_tls_roundtrip(&c, msg, strlen(msg), IO_MS) == 0,
	    "round-trip through a TLS backend: %s; backend: %s; log ends:\n%s",
	    c.err, b.be.err, h_log_tail(&r.d, line, sizeof(line)));
	ck_assert_msg(tls_close_notify(&c, IO_MS) == 0, "%s", c.err);
	ck_assert_msg(h_tls_wait_eof(&c, IO_MS) == 0, "no close_notify back: "
	    "%s", c.err);
	h_tls_close(&c);
	be_join(&b.be);
	ck_assert_msg(b.be.err[0] == '\0', "TLS backend: %s", b.be.err);
	ck_assert(b.handshake_ok);
	ck_assert_msg(strcmp(b.peer_cn, "test-client") == 0, "the backend "
	    "verified a client certificate with CN \"%s\"", b.peer_cn);
	ck_assert_msg(b.echoed == strlen(msg), "backend echoed %" PRIu64
	    " bytes", b.echoed);
	ck_assert_msg(b.close_notify, "the relay did not pass our "
	    "close_notify on as close_notify to the backend");
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "connection closed:",
	    "CLOSE_REASON=client-closed ", "BYTES_IN=23 ", "BYTES_OUT=23 ");
	fprintf(stderr, "tls backend (%s): %s with the backend\n", _i == 0 ?
	    "server_name localhost" : "IP from address", b.version);
	relay_down(&r);
	be_end(&b.be);
}
END_TEST

/* A server certificate for localhost/127.0.0.1 issued by other-ca. */
static void
make_other_ca_server_cert(char *crt, char *key, size_t len)
{
	char csr[512], ext[512], log[512], err[256];
	FILE *f;

	snprintf(crt, len, "%s", h_tmp("relay-otherca-server.crt"));
	snprintf(key, len, "%s", h_tmp("relay-otherca-server.key"));
	snprintf(csr, sizeof(csr), "%s", h_tmp("relay-otherca-server.csr"));
	snprintf(ext, sizeof(ext), "%s", h_tmp("relay-otherca-server.ext"));
	snprintf(log, sizeof(log), "%s", h_tmp("relay-otherca-openssl.log"));
	f = fopen(ext, "we");
	ck_assert(f != NULL);
	fprintf(f, "[v3]\nbasicConstraints = critical, CA:FALSE\n"
	    "keyUsage = critical, digitalSignature\n"
	    "extendedKeyUsage = serverAuth\n"
	    "subjectAltName = DNS:localhost, IP:127.0.0.1\n");
	ck_assert(fclose(f) == 0);
	{
		const char *req[] = { "openssl", "req", "-new", "-newkey", "ec",
		    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
		    key, "-out", csr, "-subj", "/CN=localhost", NULL };
		const char *sign[] = { "openssl", "x509", "-req", "-in", csr,
		    "-CA", h_pki("other-ca.crt"), "-CAkey",
		    h_pki("other-ca.key"), "-set_serial", "4343", "-days", "2",
		    "-sha256", "-extfile", ext, "-extensions", "v3", "-out", crt,
		    NULL };

		ck_assert_msg(h_run(req, log, 20000, err, sizeof(err)) == 0,
		    "openssl req failed (%s); see %s", err, log);
		ck_assert_msg(h_run(sign, log, 20000, err, sizeof(err)) == 0,
		    "openssl x509 -req failed (%s); see %s", err, log);
	}
}

/* The relay must refuse ${b}'s backend: client closed, backend-tls logged. */
static void
expect_backend_tls_refused(struct relay_daemon *r, struct tls_be *b,
    const char *server_name, char *line, size_t linelen)
{
	struct relay_spec s = { .label = "tls-backend-bad" };
	char backend[1024], tail[1500], words[300];
	struct h_tls c;
	int st;

	snprintf(backend, sizeof(backend), "address = \"%s\"; tls = { "
	    "ca = \"@PKI@/ca.crt\"; cert = \"@PKI@/client.crt\"; "
	    "key = \"@PKI@/client.key\"; server_name = \"%s\"; };", b->be.addr,
	    server_name);
	s.backend = backend;
	relay_up(r, &s);
	be_start(&b->be, tls_be_main, b);
	connect_ok(&c, r, r->relay_port);
	st = h_tls_wait_eof(&c, IO_MS);
	ck_assert_msg(st == 0, "refused backend: the client's session ended "
	    "with %d, not close_notify (%s)", st, c.err);
	h_tls_close(&c);
	be_join(&b->be);
	ck_assert_msg(!b->handshake_ok, "the relay completed a TLS handshake "
	    "with a backend it must refuse");
	snprintf(words, sizeof(words), ": connection closed: backend %s: ",
	    b->be.addr);
	ck_assert_msg(h_log_wait(&r->d, LOG_MS, line, linelen, c.peer_tag,
	    "CLOSE_REASON=backend-tls ", words, NULL) == 0, "no backend-tls "
	    "close line for %s; log ends:\n%s", c.peer_tag,
	    h_log_tail(&r->d, tail, sizeof(tail)));
}

START_TEST(test_tls_backend_with_certificate_from_other_ca_is_refused)
{
	struct relay_daemon r;
	struct tls_be b;
	char crt[512], key[512], line[4096], ca[600];

	make_other_ca_server_cert(crt, key, sizeof(crt));
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.cert = crt;
	b.key = key;
	expect_backend_tls_refused(&r, &b, "localhost", line, sizeof(line));
	/* other-ca has ca's very name: only the CA file tells them apart. */
	snprintf(ca, sizeof(ca), "not by a CA in %s", h_pki("ca.crt"));
	ck_assert_msg(strstr(line, "backend certificate issued by ") != NULL &&
	    strstr(line, "tls-echod test CA") != NULL &&
	    strstr(line, ca) != NULL, "the log does not name the issuer and "
	    "the CA file: %s", line);
	relay_down(&r);
	be_end(&b.be);
}
END_TEST

START_TEST(test_tls_backend_without_the_configured_name_is_refused)
{
	struct relay_daemon r;
	struct tls_be b;
	char line[4096];

	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, 0, NULL);
	b.cert = h_pki("server.crt");
	b.key = h_pki("server.key");
	expect_backend_tls_refused(&r, &b, "wrong.example", line,
	    sizeof(line));
	ck_assert_msg(strstr(line, "wrong.example") != NULL &&
	    strstr(line, "CN=localhost") != NULL, "the log does not name the "
	    "wanted name and the certificate: %s", line);
	relay_down(&r);
	be_end(&b.be);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 7. configuration                                                          */
/* ------------------------------------------------------------------------- */

/* Run "tls-echod -t -c FILE" on ${body}; exit status, output in ${out}. */
static int
config_test(const char *name, const char *body, char *out, size_t len,
    char *path, size_t pathlen)
{
	const char *argv[] = { getenv("TLS_ECHOD_BIN"), "-t", "-c", path,
	    NULL };
	char log[600], err[256];
	FILE *f;
	size_t k;
	int st;

	snprintf(path, pathlen, "%s", h_tmp(name));
	snprintf(log, sizeof(log), "%s.out", path);
	f = fopen(path, "we");
	ck_assert(f != NULL);
	fputs(body, f);
	ck_assert(fclose(f) == 0);
	(void)unlink(log);
	st = h_run(argv, log, IO_MS, err, sizeof(err));
	ck_assert_msg(st >= 0, "tls-echod -t: %s", err);
	out[0] = '\0';
	if ((f = fopen(log, "re")) != NULL) {
		k = fread(out, 1, len - 1, f);
		out[k] = '\0';
		fclose(f);
	}
	return st;
}

START_TEST(test_config_check_refuses_relay_without_backend_and_echo_with_backend)
{
	char body[2048], out[2048], path[600], want[700];
	const char *pki = getenv("TEST_PKI");
	int st;

	/* Line 5 holds the mode that asks for a backend. */
	snprintf(body, sizeof(body), "log = \"stderr\";\n"
	    "listeners = (\n"
	    "  { name = \"r\";\n"
	    "    listen = \"127.0.0.1:1\";\n"
	    "    mode = \"relay\";\n"
	    "    tls = { cert = \"%s/server.crt\"; key = \"%s/server.key\"; "
	    "ca = \"%s/ca.crt\"; };\n"
	    "  }\n"
	    ");\n", pki, pki, pki);
	st = config_test("relay-nobackend.conf", body, out, sizeof(out), path,
	    sizeof(path));
	snprintf(want, sizeof(want), "%s:5: listeners[0].mode: ", path);
	ck_assert_msg(st == 1, "-t on a relay without backend: exit %d: %s",
	    st, out);
	ck_assert_msg(strstr(out, want) != NULL &&
	    strstr(out, "needs a backend") != NULL, "-t message does not say "
	    "\"%s... needs a backend\": %s", want, out);

	/* Line 6 holds the backend an echo listener must not have. */
	snprintf(body, sizeof(body), "log = \"stderr\";\n"
	    "listeners = (\n"
	    "  { name = \"e\";\n"
	    "    listen = \"127.0.0.1:1\";\n"
	    "    mode = \"echo\";\n"
	    "    backend = { address = \"127.0.0.1:2\"; };\n"
	    "    tls = { cert = \"%s/server.crt\"; key = \"%s/server.key\"; "
	    "ca = \"%s/ca.crt\"; };\n"
	    "  }\n"
	    ");\n", pki, pki, pki);
	st = config_test("echo-backend.conf", body, out, sizeof(out), path,
	    sizeof(path));
	snprintf(want, sizeof(want), "%s:6: listeners[0].backend: only for "
	    "mode", path);
	ck_assert_msg(st == 1, "-t on an echo listener with a backend: exit "
	    "%d: %s", st, out);
	ck_assert_msg(strstr(out, want) != NULL, "-t message does not say "
	    "\"%s\": %s", want, out);

	/* And the good one passes. */
	snprintf(body, sizeof(body), "log = \"stderr\";\n"
	    "listeners = (\n"
	    "  { name = \"r\"; listen = \"127.0.0.1:1\"; mode = \"relay\";\n"
	    "    backend = { address = \"127.0.0.1:2\"; proxy_protocol = "
	    "\"v2\"; connect_timeout = 1; };\n"
	    "    tls = { cert = \"%s/server.crt\"; key = \"%s/server.key\"; "
	    "ca = \"%s/ca.crt\"; };\n"
	    "  }\n"
	    ");\n", pki, pki, pki);
	st = config_test("relay-good.conf", body, out, sizeof(out), path,
	    sizeof(path));
	ck_assert_msg(st == 0, "-t on a good relay listener: exit %d: %s", st,
	    out);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 8. regressions: PROXY before backend TLS, close_notify behind pending     */
/*    output, a dead backend under idle_timeout = 0                          */
/* ------------------------------------------------------------------------- */

/*
 * Read a PROXY header (v${version}) from plain socket ${fd}: exactly its
 * bytes and no more, so TLS can follow on the same socket.  0, or -1 with
 * the reason recorded in ${b}.
 */
static int
be_read_proxy_header(struct be *b, int fd, int version, unsigned char *hdr,
    size_t cap, size_t *len, int64_t deadline)
{
	static const unsigned char sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
	    0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	size_t n;

	*len = 0;
	if (version == 2) {
		if (fd_read_full(fd, hdr, 16, deadline) != 0) {
			be_fail(b, "no 16-byte PROXY v2 header start");
			return -1;
		}
		*len = 16;
		if (memcmp(hdr, sig, sizeof(sig)) != 0) {
			be_fail(b, "the backend's TCP stream starts with %02x %02x "
			    "%02x %02x, not the PROXY v2 signature%s", hdr[0],
			    hdr[1], hdr[2], hdr[3], hdr[0] == 0x16 ? " but with "
			    "a TLS handshake record: the header was not sent in "
			    "the clear before TLS" : "");
			return -1;
		}
		if (hdr[12] != 0x21 || hdr[13] != 0x11) {
			be_fail(b, "PROXY v2 version/command 0x%02x, family 0x%02x;"
			    " want 0x21 (v2, PROXY) and 0x11 (TCP over IPv4)",
			    hdr[12], hdr[13]);
			return -1;
		}
		n = (size_t)hdr[14] << 8 | hdr[15];
		if (16 + n > cap) {
			be_fail(b, "PROXY v2 length field %zu is absurd", n);
			return -1;
		}
		if (fd_read_full(fd, hdr + 16, n, deadline) != 0) {
			be_fail(b, "PROXY v2 header shorter than its %zu", n);
			return -1;
		}
		*len = 16 + n;
		return 0;
	}
	/* v1: one byte at a time up to CRLF (107 bytes at most). */
	while (*len < 107 && *len < cap &&
	    (*len < 2 || memcmp(hdr + *len - 2, "\r\n", 2) != 0)) {
		if (fd_read_full(fd, hdr + *len, 1, deadline) != 0) {
			be_fail(b, "PROXY v1 line cut after %zu bytes", *len);
			return -1;
		}
		(*len)++;
		if (*len == 6 && memcmp(hdr, "PROXY ", 6) != 0) {
			be_fail(b, "the backend's TCP stream starts with %02x %02x "
			    "%02x %02x, not \"PROXY \"%s", hdr[0], hdr[1], hdr[2],
			    hdr[3], hdr[0] == 0x16 ? " but with a TLS handshake "
			    "record: the header was not sent in the clear before "
			    "TLS" : "");
			return -1;
		}
	}
	if (*len < 2 || memcmp(hdr + *len - 2, "\r\n", 2) != 0) {
		be_fail(b, "PROXY v1 line without CRLF in %zu bytes", *len);
		return -1;
	}
	return 0;
}

/*
 * A TLS server (server certificate, client certificate from ca.crt
 * required) on accepted socket ${fd}, echoing until close_notify: the TLS
 * backend of tls_be_main, and of proxy_tls_be_main after its PROXY header.
 * Closes ${fd}.
 */
static void
tls_be_serve(struct tls_be *b, int fd, int64_t deadline)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *ssl = NULL;
	unsigned char buf[16384];
	int r;

	if (ctx == NULL ||
	    SSL_CTX_use_certificate_chain_file(ctx, b->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, b->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, h_pki("ca.crt"), NULL) != 1) {
		be_fail(&b->be, "server set-up: %s",
		    ERR_error_string(ERR_get_error(), NULL));
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
		be_fail(&b->be, "SSL_new failed");
		goto out;
	}
	SSL_set_accept_state(ssl);
	while ((r = SSL_accept(ssl)) != 1)
		if (ssl_wait(ssl, fd, r, deadline) < 0) {
			be_fail(&b->be, "TLS handshake: %s",
			    ERR_error_string(ERR_get_error(), NULL));
			goto out;
		}
	b->handshake_ok = true;
	snprintf(b->version, sizeof(b->version), "%s", SSL_get_version(ssl));
	{
		X509 *peer = SSL_get1_peer_certificate(ssl);

		if (peer != NULL) {
			if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
			    NID_commonName, b->peer_cn,
			    (int)sizeof(b->peer_cn)) < 0)
				b->peer_cn[0] = '\0';
			X509_free(peer);
		}
	}
	for (;;) {
		int n = SSL_read(ssl, buf, sizeof(buf)), off = 0;

		if (n <= 0) {
			if (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN) {
				b->close_notify = true;
				break;
			}
			if (ssl_wait(ssl, fd, n, deadline) < 0) {
				be_fail(&b->be, "read after %" PRIu64 " bytes: "
				    "SSL error %d", b->echoed,
				    SSL_get_error(ssl, n));
				break;
			}
			continue;
		}
		while (off < n) {
			int w = SSL_write(ssl, buf + off, n - off);

			if (w > 0)
				off += w;
			else if (ssl_wait(ssl, fd, w, deadline) < 0) {
				be_fail(&b->be, "echo write failed");
				goto out;
			}
		}
		b->echoed += (uint64_t)n;
	}
	(void)SSL_shutdown(ssl);
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	ERR_clear_error();
}

/* HAProxy's "accept-proxy ssl": the PROXY header in the clear, then TLS. */
struct proxy_tls_be {
	struct tls_be t;
	int version;
	unsigned char hdr[1200];
	size_t hdr_len;
};

static void *
proxy_tls_be_main(void *arg)
{
	struct proxy_tls_be *b = arg;
	int64_t deadline = h_now_ms() + b->t.be.timeout_ms;
	int fd = be_accept(&b->t.be, deadline);

	if (fd < 0)
		return NULL;
	if (be_read_proxy_header(&b->t.be, fd, b->version, b->hdr,
	    sizeof(b->hdr), &b->hdr_len, deadline) != 0) {
		close(fd);
		return NULL;
	}
	tls_be_serve(&b->t, fd, deadline);
	return NULL;
}

/*
 * Loop 0: proxy_protocol = "v2"; loop 1: "v1".  With backend TLS the PROXY
 * header must come first on the TCP stream, in the clear (where HAProxy,
 * nginx and stunnel read it), and the TLS handshake after it.
 */
START_TEST(test_proxy_header_goes_in_the_clear_before_the_backend_tls_handshake)
{
	static const char msg[] = "through a PROXY header and TLS to the "
	    "backend\n";
	int version = _i == 0 ? 2 : 1;
	struct relay_daemon r;
	struct relay_spec s = { .label = version == 2 ? "proxy-v2-tls" :
	    "proxy-v1-tls" };
	struct proxy_tls_be b;
	struct h_tls c;
	char backend[1024], line[4096], out[1024], want[256], tail[1500];
	char bout[48], bin[48];
	int st;

	memset(&b, 0, sizeof(b));
	be_listen(&b.t.be, AF_INET, 8, 0, NULL);
	b.t.be.timeout_ms = 10000;
	b.t.cert = h_pki("server.crt");
	b.t.key = h_pki("server.key");
	b.version = version;
	snprintf(backend, sizeof(backend), "address = \"%s\"; proxy_protocol "
	    "= \"v%d\"; tls = { ca = \"@PKI@/ca.crt\"; cert = "
	    "\"@PKI@/client.crt\"; key = \"@PKI@/client.key\"; server_name = "
	    "\"localhost\"; };", b.t.be.addr, version);
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.t.be, proxy_tls_be_main, &b);

	connect_ok(&c, &r, r.relay_port);
	ck_assert_msg(h_tls_roundtrip(&c, msg, strlen(msg), IO_MS) == 0,
	    "round-trip through PROXY v%d and a TLS backend: %s; backend: %s; "
	    "log ends:\n%s", version, c.err, b.t.be.err[0] ? b.t.be.err :
	    "fine", h_log_tail(&r.d, tail, sizeof(tail)));
	ck_assert_msg(tls_close_notify(&c, IO_MS) == 0, "%s", c.err);
	st = h_tls_wait_eof(&c, IO_MS);
	ck_assert_msg(st == 0, "after our close_notify the relay ended with "
	    "%d, not close_notify (%s)", st, c.err);
	h_tls_close(&c);
	be_join(&b.t.be);
	ck_assert_msg(b.t.be.err[0] == '\0', "PROXY v%d + TLS backend: %s",
	    version, b.t.be.err);
	ck_assert(b.t.handshake_ok);
	ck_assert_msg(strcmp(b.t.peer_cn, "test-client") == 0, "the backend "
	    "verified a client certificate with CN \"%s\"", b.t.peer_cn);
	ck_assert_msg(b.t.echoed == strlen(msg), "the backend echoed %" PRIu64
	    " bytes", b.t.echoed);
	ck_assert_msg(b.t.close_notify, "the relay did not pass our "
	    "close_notify on to the TLS backend");
	if (version == 2) {
		/* The independent parser: signature, family, addresses. */
		st = parse_v2(b.hdr, b.hdr_len, out, sizeof(out));
		ck_assert_msg(st == 0, "the parser refused the header (exit %d): "
		    "%s", st, out);
		snprintf(want, sizeof(want), "src=127.0.0.1:%d dst=127.0.0.1:%d "
		    "ssl.client=ssl,cert_conn", c.local_port, r.relay_port);
		ck_assert_msg(strncmp(out, want, strlen(want)) == 0 &&
		    strstr(out, " ssl.cn=test-client ") != NULL, "PROXY v2 "
		    "header before TLS says\n  %s want it to start with\n  %s\n"
		    "and name ssl.cn=test-client", out, want);
	} else {
		snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 "
		    "%d %d\r\n", c.local_port, r.relay_port);
		ck_assert_msg(b.hdr_len == strlen(want) &&
		    memcmp(b.hdr, want, b.hdr_len) == 0, "PROXY v1 line before "
		    "TLS is \"%.*s\", want \"%s\"", (int)b.hdr_len,
		    (const char *)b.hdr, want);
	}
	/* The header counts towards the backend, not from the client. */
	snprintf(bout, sizeof(bout), "BACKEND_BYTES_OUT=%zu ", b.hdr_len +
	    strlen(msg));
	snprintf(bin, sizeof(bin), "BYTES_IN=%zu ", strlen(msg));
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "connection closed:",
	    "CLOSE_REASON=client-closed ", bin, bout);
	relay_down(&r);
	be_end(&b.t.be);
}
END_TEST

/*
 * Sends ${len} bytes as fast as the relay takes them.  With ${stall_ms}
 * > 0 it stops once its writes made no progress for that long, says so on
 * ${stalled_fd}, and (with ${reset}) resets the connection at once;
 * otherwise it stops when all is sent or the relay is gone.  Then it stays
 * silent, connection open, until ${done_fd} is readable.
 */
struct flood_be {
	struct be be;
	const unsigned char *data;
	size_t len;
	size_t sent;     /* taken by our kernel */
	int stall_ms;
	bool reset;
	int stalled_fd;
	int done_fd;
	int write_errno; /* why writing ended early, 0: it did not */
};

static void *
flood_be_main(void *arg)
{
	struct flood_be *b = arg;
	int64_t deadline = h_now_ms() + b->be.timeout_ms, last = h_now_ms();
	int fd = be_accept(&b->be, deadline);

	if (fd < 0)
		goto out;
	while (b->sent < b->len) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLOUT },
		    { .fd = b->done_fd, .events = POLLIN } };
		ssize_t n = send(fd, b->data + b->sent, b->len - b->sent,
		    MSG_NOSIGNAL);

		if (n > 0) {
			b->sent += (size_t)n;
			last = h_now_ms();
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			b->write_errno = errno;
			break;
		}
		if (b->stall_ms > 0 && h_now_ms() - last >= b->stall_ms)
			break;
		if (h_now_ms() >= deadline) {
			be_fail(&b->be, "flood: deadline after %zu bytes",
			    b->sent);
			break;
		}
		(void)poll(p, 2, 20);
		if (p[1].revents != 0)
			break;
	}
	if (b->stall_ms > 0) {
		if (b->reset) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg,
			    sizeof(lg));
			close(fd); /* RST */
			fd = -1;
		}
		if (write(b->stalled_fd, "s", 1) != 1)
			be_fail(&b->be, "cannot signal the stall");
	}
	(void)poll_fd(b->done_fd, POLLIN, deadline);
out:
	if (fd >= 0)
		close(fd);
	return NULL;
}

#define PEND_FLOOD (4u * MiB)
#define PEND_BUF (64 * KiB)

/*
 * An idle timeout while the client does not read: the relay's last record
 * is half in mbedTLS, the sockets are full.  When the client reads again it
 * must get every byte the relay wrote and then close_notify, not a cut
 * record and a bare EOF.  The relay's socket to the client has a small
 * send buffer (4 KiB): what the kernel frees there while the client does
 * not read never holds the rest of a 16 KiB record, so at the timeout that
 * rest is always still unsent (with a larger buffer it is sometimes, by
 * luck, not).
 */
START_TEST(test_idle_timeout_with_output_pending_to_the_client_still_ends_with_close_notify)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = "pending-close",
	    .extra = "idle_timeout = 1;", .sndbuf = 4 * KiB };
	struct h_tls_opts o = h_client_opts("client", 0);
	struct flood_be b;
	struct h_tls c;
	unsigned char *data = malloc(PEND_FLOOD), buf[16384];
	char backend[256], line[4096], tail[1500], why[300] = "";
	size_t got = 0, d;
	long out;
	int done[2], end = -1;
	int64_t t0, deadline;

	ck_assert(data != NULL);
	h_fill_pattern(data, PEND_FLOOD, 0x9e4du);
	ck_assert(pipe2(done, O_CLOEXEC) == 0);
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, PEND_BUF, NULL);
	b.be.timeout_ms = 15000;
	b.data = data;
	b.len = PEND_FLOOD;
	b.done_fd = done[0];
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.be, flood_be_main, &b);

	o.rcvbuf = o.sndbuf = PEND_BUF;
	ck_assert_msg(h_tls_connect(&c, r.relay_port, &o) == 0, "connect: %s",
	    c.err);
	t0 = h_now_ms();
	/* Not reading: the relay's writes block, then its idle timer fires. */
	msleep(1500);
	deadline = h_now_ms() + IO_MS;
	for (;;) {
		int n, e;
		unsigned long q;

		ERR_clear_error();
		errno = 0;
		n = SSL_read(c.ssl, buf, sizeof(buf));
		if (n > 0) {
			ck_assert_msg(got + (size_t)n <= PEND_FLOOD, "more bytes "
			    "than the backend sent");
			d = h_first_diff(data + got, buf, (size_t)n);
			ck_assert_msg(d == (size_t)n, "relayed byte %zu differs",
			    got + d);
			got += (size_t)n;
			continue;
		}
		e = SSL_get_error(c.ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN) {
			end = 0;
			break;
		}
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (poll_fd(c.fd, e == SSL_ERROR_WANT_READ ? POLLIN :
			    POLLOUT, deadline) != 0) {
				snprintf(why, sizeof(why), "nothing within %d ms",
				    IO_MS);
				break;
			}
			continue;
		}
		q = ERR_peek_error();
		end = 2;
		snprintf(why, sizeof(why), "SSL error %d, errno %d (%s), %s", e,
		    errno, strerror(errno), q != 0 ?
		    ERR_error_string(q, NULL) : "no OpenSSL error queued");
		break;
	}
	ck_assert_msg(write(done[1], "x", 1) == 1, "pipe");
	be_join(&b.be);
	ck_assert_msg(b.be.err[0] == '\0', "backend: %s", b.be.err);
	H_LOG_EXPECT(&r.d, line, c.peer_tag, "connection closed:",
	    "CLOSE_REASON=idle-timeout ");
	out = field_num(line, "BYTES_OUT");
	fprintf(stderr, "pending-close: backend sent %zu, relay logged "
	    "BYTES_OUT=%ld, client got %zu in %" PRId64 " ms, then %s\n",
	    b.sent, out, got, h_now_ms() - t0, end == 0 ? "close_notify" :
	    why);
	ck_assert_msg(out > 0 && got >= (size_t)out, "the client got %zu "
	    "bytes, the relay says it wrote %ld: %s", got, out, line);
	ck_assert_msg(end == 0, "after %zu bytes (BYTES_OUT=%ld) the session "
	    "ended without close_notify: %s; log ends:\n%s", got, out, why,
	    h_log_tail(&r.d, tail, sizeof(tail)));
	h_tls_close(&c);
	relay_down(&r);
	be_end(&b.be);
	close(done[0]);
	close(done[1]);
	free(data);
}
END_TEST

#define DEAD_FLOOD (8u * MiB)

/*
 * idle_timeout = 0, linger_timeout = 1: the backend floods, then resets the
 * connection while the client reads nothing and the relay holds data for
 * it.  The dead backend makes the connection half-closed: it must end
 * after linger_timeout, not never.  ${client_writes}: the client sends a
 * line after the reset (the relay's write to the backend fails); else it
 * stays silent (only the backend's reset tells).  ${closed} gets the
 * connection's close line.
 */
static void
dead_backend_run(bool client_writes, char *closed, size_t closedlen)
{
	struct relay_daemon r;
	struct relay_spec s = { .label = client_writes ? "dead-backend-write" :
	    "dead-backend-silent", .extra = "idle_timeout = 0; "
	    "linger_timeout = 1;", .sndbuf = PEND_BUF, .rcvbuf = PEND_BUF };
	struct h_tls_opts o = h_client_opts("client", 0);
	struct flood_be b;
	struct h_tls c;
	unsigned char *data = malloc(DEAD_FLOOD);
	char backend[256], line[4096], tail[1500], ch;
	int done[2], stalled[2], found;
	int64_t t_reset, waited, deadline;

	ck_assert(data != NULL);
	h_fill_pattern(data, DEAD_FLOOD, 0xdeadu);
	ck_assert(pipe2(done, O_CLOEXEC) == 0);
	ck_assert(pipe2(stalled, O_CLOEXEC) == 0);
	memset(&b, 0, sizeof(b));
	be_listen(&b.be, AF_INET, 8, PEND_BUF, NULL);
	b.be.timeout_ms = 15000;
	b.data = data;
	b.len = DEAD_FLOOD;
	b.stall_ms = 300;
	b.reset = true;
	b.stalled_fd = stalled[1];
	b.done_fd = done[0];
	snprintf(backend, sizeof(backend), "address = \"%s\";", b.be.addr);
	s.backend = backend;
	relay_up(&r, &s);
	be_start(&b.be, flood_be_main, &b);

	o.rcvbuf = o.sndbuf = PEND_BUF;
	ck_assert_msg(h_tls_connect(&c, r.relay_port, &o) == 0, "connect: %s",
	    c.err);
	ck_assert_msg(poll_fd(stalled[0], POLLIN, h_now_ms() + IO_MS) == 0 &&
	    read(stalled[0], &ch, 1) == 1, "the backend's writes never "
	    "stalled (%zu bytes sent; %s)", b.sent, b.be.err);
	ck_assert_msg(b.sent < DEAD_FLOOD, "the relay took all %u bytes "
	    "without the client reading", DEAD_FLOOD);
	if (client_writes)
		ck_assert_msg(h_tls_write_all(&c, "still there?\n", 13, IO_MS) ==
		    0, "client write after the backend's reset: %s", c.err);
	t_reset = h_now_ms();
	found = h_log_wait(&r.d, 4000, closed, closedlen, c.peer_tag,
	    "connection closed:", NULL);
	waited = h_now_ms() - t_reset;
	ck_assert_msg(found == 0, "backend reset after %zu bytes, client not "
	    "reading%s, idle_timeout = 0, linger_timeout = 1: the connection "
	    "is still open after %" PRId64 " ms; log ends:\n%s", b.sent,
	    client_writes ? " but writing" : " nor writing", waited,
	    h_log_tail(&r.d, tail, sizeof(tail)));
	fprintf(stderr, "dead backend (%s): closed %" PRId64 " ms after the "
	    "reset: %s\n", client_writes ? "client wrote" : "client silent",
	    waited, closed);
	ck_assert_msg(waited <= 3000, "closed only %" PRId64 " ms after the "
	    "reset (linger_timeout 1 s)", waited);
	/*
	 * The worker lets the connection go: at once, or once its
	 * close_notify had its chance (2 s for a client that does not read).
	 */
	deadline = h_now_ms() + 3500;
	for (;;) {
		ck_assert(h_daemon_signal(&r.d, SIGUSR1) == 0);
		if (h_log_wait(&r.d, 250, line, sizeof(line), "status: worker 0 "
		    "(generation 1): 0 connection(s)", NULL) == 0)
			break;
		ck_assert_msg(h_now_ms() < deadline, "the worker still holds "
		    "the connection 3.5 s after its close line; log ends:\n%s",
		    h_log_tail(&r.d, tail, sizeof(tail)));
	}
	h_tls_close(&c);
	ck_assert(write(done[1], "x", 1) == 1);
	be_join(&b.be);
	ck_assert_msg(b.be.err[0] == '\0', "backend: %s", b.be.err);
	relay_down(&r);
	be_end(&b.be);
	close(done[0]);
	close(done[1]);
	close(stalled[0]);
	close(stalled[1]);
	free(data);
}

/* Loop 0: the client writes after the reset; loop 1: it stays silent. */
START_TEST(test_backend_reset_while_client_does_not_read_ends_after_linger_with_idle_timeout_0)
{
	char closed[4096];

	dead_backend_run(_i == 0, closed, sizeof(closed));
}
END_TEST

/* ... and the close line says why: linger_timeout, not an idle timeout. */
START_TEST(test_connection_ended_by_linger_after_backend_reset_is_logged_as_linger_timeout)
{
	char closed[4096];

	dead_backend_run(true, closed, sizeof(closed));
	ck_assert_msg(strstr(closed, "CLOSE_REASON=linger-timeout ") != NULL &&
	    strstr(closed, "connection closed: half-closed and idle for "
	    "1.0 s") != NULL, "a connection whose backend is gone ends by "
	    "linger_timeout (idle_timeout is 0), but the log says: %s",
	    closed);
}
END_TEST

/* ------------------------------------------------------------------------- */

static TCase *
tcase(Suite *s, const char *name, int timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *
relay_suite(void)
{
	Suite *s = suite_create("relay");
	TCase *tc;

	tc = tcase(s, "bulk", 90);
	tcase_add_test(tc, test_relay_carries_64_MiB_each_way_intact_to_a_slow_reader_in_bounded_memory);

	tc = tcase(s, "half-close", 60);
	tcase_add_test(tc, test_client_close_notify_reaches_backend_as_eof_and_reply_still_arrives);
	tcase_add_test(tc, test_backend_that_closes_while_client_sends_still_delivers_every_byte);
	tcase_add_test(tc, test_backend_half_close_lets_client_keep_sending_to_backend);
	tcase_add_test(tc, test_half_closed_connection_lingers_while_data_flows_then_times_out);
	tcase_add_test(tc, test_both_sides_ending_in_one_event_batch_leave_the_worker_alive);

	tc = tcase(s, "redis", 60);
	tcase_add_test(tc, test_redis_cli_sets_then_gets_through_relay_to_real_redis_server);

	tc = tcase(s, "backend-failures", 60);
	tcase_add_loop_test(tc, test_refused_backend_closes_client_cleanly_and_logs_backend_refused,
	    0, 2);
	tcase_add_test(tc, test_silent_backend_is_closed_by_idle_timeout_while_echo_listener_serves);
	tcase_add_test(tc, test_blackholed_backend_connect_times_out_while_echo_listener_serves);
	tcase_add_test(tc, test_client_reset_during_backend_connect_costs_no_cpu);

	tc = tcase(s, "proxy-protocol", 60);
	tcase_add_test(tc, test_proxy_v2_header_parsed_independently_names_client_then_payload_intact);
	tcase_add_test(tc, test_proxy_v1_line_is_exact_then_payload_intact);

	tc = tcase(s, "backend-tls", 60);
	tcase_add_loop_test(tc, test_tls_backend_is_verified_and_sees_our_client_certificate,
	    0, 2);
	tcase_add_test(tc, test_tls_backend_with_certificate_from_other_ca_is_refused);
	tcase_add_test(tc, test_tls_backend_without_the_configured_name_is_refused);

	tc = tcase(s, "config", 30);
	tcase_add_test(tc, test_config_check_refuses_relay_without_backend_and_echo_with_backend);

	tc = tcase(s, "regressions", 30);
	tcase_add_loop_test(tc, test_proxy_header_goes_in_the_clear_before_the_backend_tls_handshake,
	    0, 2);
	tcase_add_test(tc, test_idle_timeout_with_output_pending_to_the_client_still_ends_with_close_notify);
	tcase_add_loop_test(tc, test_backend_reset_while_client_does_not_read_ends_after_linger_with_idle_timeout_0,
	    0, 2);
	tcase_add_test(tc, test_connection_ended_by_linger_after_backend_reset_is_logged_as_linger_timeout);
	return s;
}

int
main(void)
{
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_relay: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(relay_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
