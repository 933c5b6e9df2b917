/*
 * check_limits: the daemon's limits and timers, against the real tls-echod
 * on loopback.
 *
 * max_connections_per_identity (counted over all workers, by SPIFFE ID or
 * else subject; refusal identity-limit with access_denied), worker_connections
 * (a full worker stops accepting: the next client waits in the backlog),
 * tls.record_size (the records the server sends, seen on the wire through
 * OpenSSL's message callback), `-t` messages (record_size, idle_timeout = 0),
 * connection counts in STATUS=, and timers to the millisecond (handshake and
 * idle timeouts from the deadline heap, idle deadlines pushed later).
 *
 * Connections are steered to a worker with SIGSTOP: a stopped worker is not
 * waiting in epoll_wait, so EPOLLEXCLUSIVE hands a new connection to the
 * other one.  Every daemon is socket-activated with its own log
 * (test/harness.c); a client's lines are found by its PEER_ADDR.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"

#define IO_MS 10000  /* bound for one client operation */
#define LOG_MS 5000  /* bound for a log line to appear */
#define RUN_MS 20000 /* bound for one tls-echod -t */
#define AEAD_SLACK 256 /* record overhead allowed over the plaintext */

#define ME "spiffe://test.example/client" /* client.crt's identity key */

static const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
static const char *const version_names[] = { "TLSv1.3", "TLSv1.2" };

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

/* --- helpers -------------------------------------------------------------- */

/* One listener "echo"; every string may be NULL. */
struct spec {
	unsigned workers;           /* 0: 1 */
	const char *globals;        /* e.g. "worker_connections = 3;" */
	const char *listener_extra; /* e.g. "idle_timeout = 1;" */
	const char *tls_extra;      /* inside tls = { } */
};

/* The configuration text for ${port} and PKI folder ${pki} (caller frees). */
static char *
spec_text(const struct spec *s, const char *port, const char *pki)
{
	char *t;
	int n = asprintf(&t,
	    "log = \"stderr\";\n"
	    "workers = %u;\n"
	    "%s\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"echo\";\n"
	    "    listen = \"127.0.0.1:%s\";\n"
	    "    mode = \"echo\";\n"
	    "    %s\n"
	    "    tls = {\n"
	    "      cert = \"%s/server.crt\";\n"
	    "      key = \"%s/server.key\";\n"
	    "      ca = \"%s/ca.crt\";\n"
	    "      %s\n"
	    "    };\n"
	    "  }\n"
	    ");\n",
	    s->workers ? s->workers : 1, s->globals ? s->globals : "", port,
	    s->listener_extra ? s->listener_extra : "", pki, pki, pki,
	    s->tls_extra ? s->tls_extra : "");

	ck_assert_msg(n >= 0, "asprintf failed");
	return t;
}

/* Start a socket-activated daemon with ${s}; fails the test on error. */
static void
daemon_up(struct h_daemon *d, const char *label, const struct spec *s)
{
	char *text = spec_text(s, "@PORT@", "@PKI@");
	struct h_daemon_opts o = {
		.label = label,
		.config = text,
		.activation = true,
	};
	int r = h_daemon_start(d, &o);

	free(text);
	ck_assert_msg(r == 0, "daemon did not start: %s", d->err);
}

/* SIGTERM the daemon and require a clean exit 0. */
static void
daemon_down(struct h_daemon *d)
{
	int st = h_daemon_stop(d, 10000);
	char tail[600];

	ck_assert_msg(st == 0, "daemon exit status %d after SIGTERM (%s); log "
	    "ends:\n%s", st, d->err, h_log_tail(d, tail, sizeof(tail)));
	h_daemon_kill(d);
}

/* Wait for a log line holding all the needles; fail with the log tail. */
#define LOG_EXPECT(d, line, ...) do { \
	char tail_[1500]; \
	ck_assert_msg(h_log_wait((d), LOG_MS, (line), sizeof(line), \
	    __VA_ARGS__, NULL) == 0, "no log line with all of [%s] within " \
	    "%d ms; log ends:\n%s", #__VA_ARGS__, LOG_MS, \
	    h_log_tail((d), tail_, sizeof(tail_))); \
} while (0)

/* The result of one `tls-echod -t -c PATH`. */
struct check_run {
	char path[PATH_MAX]; /* the configuration file */
	char *text;          /* its text */
	char out[8192];      /* stdout and stderr */
	int status;
};

static void
run_check(struct check_run *r, const char *label, const struct spec *s)
{
	const char *bin = getenv("TLS_ECHOD_BIN");
	const char *argv[] = { bin, "-t", "-c", r->path, NULL };
	char log[PATH_MAX + 8], err[256];
	FILE *f;
	size_t n;

	snprintf(r->path, sizeof(r->path), "%s.conf", h_tmp(label));
	snprintf(log, sizeof(log), "%s.out", r->path);
	r->text = spec_text(s, "8443", getenv("TEST_PKI"));
	f = fopen(r->path, "we");
	ck_assert_msg(f != NULL, "%s: %s", r->path, strerror(errno));
	ck_assert(fputs(r->text, f) >= 0);
	ck_assert(fclose(f) == 0);
	(void)unlink(log);
	r->status = h_run(argv, log, RUN_MS, err, sizeof(err));
	ck_assert_msg(r->status >= 0, "tls-echod -t: %s", err);
	f = fopen(log, "re");
	ck_assert_msg(f != NULL, "%s: %s", log, strerror(errno));
	n = fread(r->out, 1, sizeof(r->out) - 1, f);
	r->out[n] = '\0';
	fclose(f);
}

/* The 1-based line of ${text} holding ${needle} first (0: none). */
static int
line_of(const char *text, const char *needle)
{
	const char *p = strstr(text, needle), *q;
	int line = 1;

	if (p == NULL)
		return 0;
	for (q = text; q < p; q++)
		line += *q == '\n';
	return line;
}

/* A client with PKI certificate NAME.crt and key NAME.key. */
struct client {
	char cert[PATH_MAX], key[PATH_MAX];
	struct h_tls_opts o;
};

static void
client_init(struct client *cl, const char *name, int version)
{
	snprintf(cl->cert, sizeof(cl->cert), "%s/%s.crt", getenv("TEST_PKI"),
	    name);
	snprintf(cl->key, sizeof(cl->key), "%s/%s.key", getenv("TEST_PKI"),
	    name);
	memset(&cl->o, 0, sizeof(cl->o));
	cl->o.cert = cl->cert;
	cl->o.key = cl->key;
	cl->o.min_version = cl->o.max_version = version;
}

/* ${c} connects with ${o} and gets one line echoed; it stays open. */
static void
open_admitted(struct h_daemon *d, struct h_tls *c, const struct h_tls_opts *o,
    const char *what)
{
	char msg[128], tail[1500];

	ck_assert_msg(h_tls_connect(c, d->port, o) == 0, "%s: TLS connect: %s; "
	    "log ends:\n%s", what, c->err, h_log_tail(d, tail, sizeof(tail)));
	snprintf(msg, sizeof(msg), "%s on %s\n", what, c->peer_tag);
	ck_assert_msg(h_tls_roundtrip(c, msg, strlen(msg), IO_MS) == 0, "%s: no "
	    "echo: %s; log ends:\n%s", what, c->err, h_log_tail(d, tail,
	    sizeof(tail)));
}

/*
 * One try with ${o}: true if it got in (a line came back; ${c} stays open),
 * false if not (${c} is closed; its peer_tag stays for the log).
 */
static bool
try_admit(struct h_daemon *d, struct h_tls *c, const struct h_tls_opts *o)
{
	if (h_tls_connect(c, d->port, o) == 0 &&
	    h_tls_roundtrip(c, "knock\n", 6, IO_MS) == 0)
		return true;
	h_tls_close(c);
	return false;
}

/*
 * The client with ${o} is refused for its identity: its handshake fails or
 * its first round-trip gets an alert or EOF, and over TLS 1.2 it is told
 * access_denied.  The server logs one identity-limit line for it whose
 * REASON_DETAIL says ${ident} already holds ${held}.  Returns the pid of
 * the worker that refused it.
 */
static pid_t
expect_identity_refusal(struct h_daemon *d, const struct h_tls_opts *o,
    const char *ident, unsigned held)
{
	char detail[400], line[4096], tail[1500];
	struct h_tls c;

	if (h_tls_connect(&c, d->port, o) == 0) {
		int r = h_tls_refused(&c, IO_MS);

		ck_assert_msg(r == 1, "%s: the handshake succeeded and then %s "
		    "(%s)", ident, r == 0 ? "the server echoed: not refused" :
		    "nothing happened", c.err);
	}
	ck_assert_msg(c.peer_tag[0] != '\0', "no TCP connection: %s", c.err);
	if (o->max_version == TLS1_2_VERSION)
		ck_assert_msg(strstr(c.err, "access denied") != NULL, "TLS 1.2 "
		    "client saw \"%s\", not an access_denied alert", c.err);
	snprintf(detail, sizeof(detail), "REASON_DETAIL=\"%s already holds %u "
	    "connection(s)", ident, held);
	ck_assert_msg(h_log_wait(d, LOG_MS, line, sizeof(line), c.peer_tag,
	    ": handshake refused: too many connections for this client "
	    "identity LISTENER=echo ", "CLOSE_REASON=identity-limit ", detail,
	    NULL) == 0, "client failed (%s) but no identity-limit line with "
	    "[%s] for %s; log ends:\n%s", c.err, detail, c.peer_tag,
	    h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(h_log_count(d, c.peer_tag, NULL) == 1, "more than one "
	    "log line for %s", c.peer_tag);
	h_tls_close(&c);
	return h_log_line_pid(line);
}

/* The daemon's ${n} workers into ${w}. */
static void
workers_of(const struct h_daemon *d, pid_t *w, int n)
{
	ck_assert_int_eq(h_daemon_workers(d, w, n, n, LOG_MS), n);
}

/*
 * SIGSTOP worker ${pid} and wait until it is stopped: it no longer waits
 * in epoll_wait, so new connections go to the other workers.
 */
static void
worker_pause(pid_t pid)
{
	int64_t end = h_now_ms() + 2000;
	char st = '?';

	ck_assert(kill(pid, SIGSTOP) == 0);
	while (h_proc_ppid(pid, &st) > 0 && st != 'T' && h_now_ms() < end)
		usleep(2000);
	ck_assert_msg(st == 'T', "worker %d did not stop (state %c)", (int)pid,
	    st);
}

static void
worker_resume(pid_t pid)
{
	ck_assert(kill(pid, SIGCONT) == 0);
}

/* ------------------------------------------------------------------------- */
/* max_connections_per_identity                                              */
/* ------------------------------------------------------------------------- */

/*
 * Six tries of one identity, alternating between the two workers (the
 * other one stopped): exactly the first two get in, each later one is
 * refused by the worker it reached, which holds only one of the two.
 */
START_TEST(test_identity_limit_2_admits_exactly_2_of_6_tries_alternating_workers)
{
	struct spec s = { .workers = 2, .listener_extra =
	    "max_connections_per_identity = 2;" };
	struct client me;
	struct h_daemon d;
	struct h_tls c[6];
	pid_t w[2];
	char line[4096];
	int i, admitted = 0;

	client_init(&me, "client", 0);
	daemon_up(&d, "idlimit-6", &s);
	workers_of(&d, w, 2);
	for (i = 0; i < 6; i++) {
		pid_t on = w[i % 2], off = w[(i + 1) % 2];

		worker_resume(on);
		worker_pause(off);
		if (try_admit(&d, &c[i], &me.o)) {
			admitted++;
			ck_assert_msg(i < 2, "try %d (worker %d) got in: the limit "
			    "of 2 is not held across workers", i, (int)on);
			continue;
		}
		ck_assert_msg(i >= 2, "try %d refused: %s", i, c[i].err);
		LOG_EXPECT(&d, line, c[i].peer_tag, "CLOSE_REASON=identity-limit ",
		    "REASON_DETAIL=\"" ME " already holds 2 connection(s)");
		ck_assert_msg(h_log_line_pid(line) == on, "try %d refused by pid "
		    "%d, but only worker %d was running: %s", i,
		    (int)h_log_line_pid(line), (int)on, line);
	}
	worker_resume(w[0]);
	worker_resume(w[1]);
	ck_assert_int_eq(admitted, 2);
	ck_assert_int_eq(h_log_count(&d, "CLOSE_REASON=identity-limit ", NULL),
	    4);
	/* The two held connections still echo. */
	for (i = 0; i < 2; i++) {
		ck_assert_msg(h_tls_roundtrip(&c[i], "still here\n", 11, IO_MS) ==
		    0, "held connection %d: %s", i, c[i].err);
		h_tls_close(&c[i]);
	}
	daemon_down(&d);
}
END_TEST

/*
 * Loop: TLS 1.3, TLS 1.2.  A third connection of test-client is refused
 * (identity-limit, access_denied over TLS 1.2), another identity still gets
 * in, and closing one of the two lets test-client in again.
 */
START_TEST(test_identity_limit_refuses_third_admits_other_identity_and_frees_on_close)
{
	int v = _i;
	struct spec s = { .workers = 2, .listener_extra =
	    "max_connections_per_identity = 2;" };
	struct client me, other;
	struct h_daemon d;
	struct h_tls held[2], x, again;
	int64_t end;
	bool in = false;
	char tail[1500];

	client_init(&me, "client", versions[v]);
	client_init(&other, "client-uri-web", versions[v]);
	daemon_up(&d, "idlimit", &s);
	open_admitted(&d, &held[0], &me.o, "first");
	open_admitted(&d, &held[1], &me.o, "second");
	(void)expect_identity_refusal(&d, &me.o, ME, 2);
	open_admitted(&d, &x, &other.o, "another identity");
	(void)expect_identity_refusal(&d, &me.o, ME, 2);

	/* The server sees the close a moment later: retry briefly. */
	h_tls_close(&held[0]);
	for (end = h_now_ms() + 3000; !in && h_now_ms() < end;) {
		in = try_admit(&d, &again, &me.o);
		if (!in)
			usleep(50000);
	}
	ck_assert_msg(in, "%s: test-client not admitted again within 3 s of "
	    "closing one of its two connections: %s; log ends:\n%s",
	    version_names[v], again.err, h_log_tail(&d, tail, sizeof(tail)));
	ck_assert_msg(h_tls_roundtrip(&held[1], "held\n", 5, IO_MS) == 0, "%s",
	    held[1].err);
	ck_assert_msg(h_tls_roundtrip(&x, "other\n", 6, IO_MS) == 0, "%s",
	    x.err);
	h_tls_close(&again);
	h_tls_close(&held[1]);
	h_tls_close(&x);
	daemon_down(&d);
}
END_TEST

/* No URI name: client-dns-a is counted as its subject, CN=dns-a. */
START_TEST(test_identity_limit_counts_client_without_uri_by_subject)
{
	struct spec s = { .listener_extra = "max_connections_per_identity = 1;" };
	struct client dns, me;
	struct h_daemon d;
	struct h_tls a, b;

	client_init(&dns, "client-dns-a", TLS1_2_VERSION);
	client_init(&me, "client", TLS1_2_VERSION);
	daemon_up(&d, "idlimit-subject", &s);
	open_admitted(&d, &a, &dns.o, "dns-a");
	(void)expect_identity_refusal(&d, &dns.o, "CN=dns-a", 1);
	open_admitted(&d, &b, &me.o, "test-client");
	h_tls_close(&a);
	h_tls_close(&b);
	daemon_down(&d);
}
END_TEST

START_TEST(test_identity_limit_is_off_by_default_5_of_one_identity_admitted)
{
	struct spec s = { .workers = 2 };
	struct client me;
	struct h_daemon d;
	struct h_tls c[5];
	char what[32];
	int i;

	client_init(&me, "client", 0);
	daemon_up(&d, "idlimit-off", &s);
	for (i = 0; i < 5; i++) {
		snprintf(what, sizeof(what), "connection %d", i);
		open_admitted(&d, &c[i], &me.o, what);
	}
	for (i = 0; i < 5; i++) {
		ck_assert_msg(h_tls_roundtrip(&c[i], "x\n", 2, IO_MS) == 0, "%d: "
		    "%s", i, c[i].err);
		h_tls_close(&c[i]);
	}
	ck_assert_int_eq(h_log_count(&d, "CLOSE_REASON=identity-limit ", NULL),
	    0);
	daemon_down(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* worker_connections                                                        */
/* ------------------------------------------------------------------------- */

/*
 * A TLS client on the already connected ${c->fd}, its handshake stepped by
 * hand (handshake_step): like h_tls_connect, minus the TCP connect.
 */
static void
manual_client(struct h_tls *c, const struct client *cl)
{
	char ca[PATH_MAX];

	snprintf(ca, sizeof(ca), "%s/ca.crt", getenv("TEST_PKI"));
	c->ctx = SSL_CTX_new(TLS_client_method());
	ck_assert(c->ctx != NULL);
	ck_assert(SSL_CTX_use_certificate_chain_file(c->ctx, cl->cert) == 1);
	ck_assert(SSL_CTX_use_PrivateKey_file(c->ctx, cl->key,
	    SSL_FILETYPE_PEM) == 1);
	ck_assert(SSL_CTX_load_verify_locations(c->ctx, ca, NULL) == 1);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	c->ssl = SSL_new(c->ctx);
	ck_assert(c->ssl != NULL);
	ck_assert(SSL_set_fd(c->ssl, c->fd) == 1);
	ck_assert(SSL_set1_host(c->ssl, "localhost") == 1);
	SSL_set_connect_state(c->ssl);
}

/* Step ${c}'s handshake: 1 done, 0 still going after ${ms}, -1 failed. */
static int
handshake_step(struct h_tls *c, int ms)
{
	int64_t end = h_now_ms() + ms;

	for (;;) {
		struct pollfd p = { .fd = c->fd };
		int r, e;
		int64_t left;

		ERR_clear_error();
		r = SSL_connect(c->ssl);
		if (r == 1)
			return 1;
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			snprintf(c->err, sizeof(c->err), "handshake: SSL error "
			    "%d: %s", e, ERR_error_string(ERR_get_error(),
			    NULL));
			return -1;
		}
		if ((left = end - h_now_ms()) <= 0)
			return 0;
		p.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		(void)poll(&p, 1, (int)left);
	}
}

/*
 * worker_connections = 3 with one worker: a fourth client's TCP connect
 * completes (the kernel's backlog) but its handshake waits until one of
 * the three closes; the pause is logged.
 */
START_TEST(test_worker_connections_3_holds_fourth_in_backlog_until_one_closes)
{
	struct spec s = { .globals = "worker_connections = 3;" };
	struct client me;
	struct h_daemon d;
	struct h_tls c[3], fourth;
	char what[32], line[4096], tail[1500];
	int i, r;

	client_init(&me, "client", 0);
	daemon_up(&d, "workerconns", &s);
	for (i = 0; i < 3; i++) {
		snprintf(what, sizeof(what), "idle %d", i);
		open_admitted(&d, &c[i], &me.o, what);
	}
	memset(&fourth, 0, sizeof(fourth));
	fourth.fd = h_tcp_connect(d.port, IO_MS);
	ck_assert_msg(fourth.fd >= 0, "the fourth TCP connect failed: %s",
	    strerror(errno));
	h_peer_tag(fourth.fd, fourth.peer_tag, sizeof(fourth.peer_tag));
	manual_client(&fourth, &me);
	r = handshake_step(&fourth, 1000);
	ck_assert_msg(r == 0, "the fourth handshake %s while 3 connections are "
	    "open with worker_connections = 3 (%s); log ends:\n%s", r == 1 ?
	    "completed" : "failed", fourth.err, h_log_tail(&d, tail,
	    sizeof(tail)));
	LOG_EXPECT(&d, line, "worker 0 is at worker_connections (3)");
	ck_assert_int_eq(h_log_count(&d, fourth.peer_tag, NULL), 0);

	h_tls_close(&c[0]);
	r = handshake_step(&fourth, 5000);
	ck_assert_msg(r == 1, "the fourth handshake did not complete within "
	    "5 s of a close: %s; log ends:\n%s", r == 0 ? "no progress" :
	    fourth.err, h_log_tail(&d, tail, sizeof(tail)));
	ck_assert_msg(h_tls_roundtrip(&fourth, "fourth\n", 7, IO_MS) == 0, "%s",
	    fourth.err);
	for (i = 1; i < 3; i++) {
		ck_assert_msg(h_tls_roundtrip(&c[i], "x\n", 2, IO_MS) == 0, "%s",
		    c[i].err);
		h_tls_close(&c[i]);
	}
	h_tls_close(&fourth);
	daemon_down(&d);
}
END_TEST

/*
 * A full worker must not take the wakeup for a new connection: with
 * EPOLLEXCLUSIVE the kernel wakes one worker, and a full one that wakes
 * pauses again and leaves the connection queued while the other worker has
 * room.  worker_connections = 1, two workers: A fills one worker, B comes
 * and goes on the other; C must then be served by the one with room.
 */
START_TEST(test_full_worker_does_not_strand_a_connection_another_could_take)
{
	struct spec s = { .workers = 2, .globals = "worker_connections = 1;" };
	struct client me;
	struct h_daemon d;
	struct h_tls a, b, c;
	char tail[1500];
	pid_t w[2];
	int r;

	client_init(&me, "client", 0);
	daemon_up(&d, "fullworker", &s);
	workers_of(&d, w, 2);
	worker_pause(w[1]);
	open_admitted(&d, &a, &me.o, "A on the first worker");
	usleep(400 * 1000); /* the full worker's paused listener ticks */
	worker_resume(w[1]);
	worker_pause(w[0]);
	open_admitted(&d, &b, &me.o, "B on the second worker");
	worker_resume(w[0]);
	usleep(400 * 1000);
	h_tls_close(&b);
	usleep(400 * 1000);
	memset(&c, 0, sizeof(c));
	c.fd = h_tcp_connect(d.port, IO_MS);
	ck_assert_msg(c.fd >= 0, "C: TCP connect failed: %s", strerror(errno));
	manual_client(&c, &me);
	r = handshake_step(&c, 3000);
	ck_assert_msg(r == 1, "C's handshake %s within 3 s although the second "
	    "worker has room (%s); log ends:\n%s", r == 0 ? "made no progress" :
	    "failed", c.err, h_log_tail(&d, tail, sizeof(tail)));
	ck_assert_msg(h_tls_roundtrip(&c, "C\n", 2, IO_MS) == 0, "%s", c.err);
	h_tls_close(&c);
	h_tls_close(&a);
	daemon_down(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* tls.record_size                                                           */
/* ------------------------------------------------------------------------- */

/* Application-data record lengths seen by the client (ciphertext). */
struct records {
	size_t in_max, in_n; /* from the server */
	size_t out_max;      /* ours */
};

static void
on_record(int write_p, int version, int content_type, const void *buf,
    size_t len, SSL *ssl, void *arg)
{
	struct records *st = arg;
	const unsigned char *h = buf;
	size_t n;

	(void)version;
	(void)ssl;
	if (content_type != SSL3_RT_HEADER || len < 5 ||
	    h[0] != SSL3_RT_APPLICATION_DATA)
		return;
	n = (size_t)h[3] << 8 | h[4];
	if (write_p) {
		if (n > st->out_max)
			st->out_max = n;
	} else {
		st->in_n++;
		if (n > st->in_max)
			st->in_max = n;
	}
}

#define BULK (64 * 1024)

/*
 * Echo 64 KiB (16 KiB SSL_write calls: full records) through a daemon
 * with ${tls_extra} over TLS ${version}; the record lengths in ${st}.
 */
static void
echo_bulk(const char *label, const char *tls_extra, int version,
    struct records *st)
{
	struct spec s = { .tls_extra = tls_extra };
	static unsigned char data[BULK], out[BULK];
	struct client me;
	struct h_daemon d;
	struct h_tls c;
	size_t woff = 0, roff = 0;

	client_init(&me, "client", version);
	daemon_up(&d, label, &s);
	/* The callback goes in before the handshake: OpenSSL 3.2 and later
	 * (Debian 13) hand it to a record layer when the layer is made, at
	 * each key change, and one set after the handshake sees no records. */
	memset(&c, 0, sizeof(c));
	c.fd = h_tcp_connect(d.port, IO_MS);
	ck_assert_msg(c.fd >= 0, "bulk: TCP connect failed: %s",
	    strerror(errno));
	manual_client(&c, &me);
	ck_assert(SSL_set_min_proto_version(c.ssl, version) == 1 &&
	    SSL_set_max_proto_version(c.ssl, version) == 1);
	SSL_set_msg_callback(c.ssl, on_record);
	SSL_set_msg_callback_arg(c.ssl, st);
	ck_assert_msg(handshake_step(&c, IO_MS) == 1, "bulk: handshake: %s",
	    c.err);
	ck_assert_msg(h_tls_roundtrip(&c, "bulk\n", 5, IO_MS) == 0,
	    "bulk: no echo: %s", c.err);
	/* Only the bulk echo's records count. */
	memset(st, 0, sizeof(*st));
	h_fill_pattern(data, sizeof(data), 42);
	ck_assert_msg(h_tls_pump(&c, data, sizeof(data), &woff, out, &roff,
	    IO_MS) == 0, "%s", c.err);
	ck_assert_msg(h_first_diff(data, out, sizeof(data)) == sizeof(data),
	    "echo differs at byte %zu", h_first_diff(data, out, sizeof(data)));
	h_tls_close(&c);
	daemon_down(&d);
	/* The client itself sent full 16 KiB records: they were accepted. */
	ck_assert_msg(st->out_max > 16384, "the client's largest record was "
	    "%zu bytes: not a full one", st->out_max);
}

/* Loop: TLS 1.3, TLS 1.2; record_size unset (4096) and 1024. */
START_TEST(test_record_size_caps_server_records_and_accepts_16k_from_client)
{
	static const char *const extra[] = { NULL, "record_size = 1024;" };
	static const size_t size[] = { 4096, 1024 };
	int v = _i % 2, k = _i / 2;
	struct records st;

	echo_bulk("record", extra[k], versions[v], &st);
	ck_assert_msg(st.in_max <= size[k] + AEAD_SLACK, "%s, record_size %zu: "
	    "the server sent a %zu-byte record", version_names[v], size[k],
	    st.in_max);
	ck_assert_msg(st.in_n >= BULK / size[k], "%s: only %zu records for "
	    "%d bytes", version_names[v], st.in_n, BULK);
}
END_TEST

START_TEST(test_record_size_16384_lets_server_send_full_records)
{
	int v = _i;
	struct records st;

	echo_bulk("record-16k", "record_size = 16384;", versions[v], &st);
	ck_assert_msg(st.in_max > 4096 + AEAD_SLACK, "%s: the server's largest "
	    "record was %zu bytes with record_size = 16384", version_names[v],
	    st.in_max);
}
END_TEST

START_TEST(test_check_refuses_record_size_3000_with_file_line_and_sizes)
{
	struct spec s = { .tls_extra = "record_size = 3000;" };
	struct check_run r;
	char where[PATH_MAX + 64];

	run_check(&r, "record-3000", &s);
	ck_assert_msg(r.status == 1, "tls-echod -t exit status %d, want 1; "
	    "output:\n%s", r.status, r.out);
	snprintf(where, sizeof(where), "%s:%d: listeners[0].tls.record_size: ",
	    r.path, line_of(r.text, "record_size ="));
	ck_assert_msg(strstr(r.out, where) != NULL, "output \"%s\" lacks "
	    "\"%s\"", r.out, where);
	ck_assert_msg(strstr(r.out, "512, 1024, 2048, 4096 or 16384") != NULL,
	    "output does not list the sizes: %s", r.out);
	free(r.text);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* -t warnings, STATUS=                                                      */
/* ------------------------------------------------------------------------- */

START_TEST(test_check_warns_about_idle_timeout_0_and_not_about_1)
{
	struct spec zero = { .listener_extra = "idle_timeout = 0;" };
	struct spec one = { .listener_extra = "idle_timeout = 1;" };
	struct check_run r;

	run_check(&r, "idle-0", &zero);
	ck_assert_msg(r.status == 0, "tls-echod -t exit status %d; output:\n%s",
	    r.status, r.out);
	ck_assert_msg(strstr(r.out, "warning: listener echo: idle_timeout = 0")
	    != NULL, "no idle_timeout = 0 warning in:\n%s", r.out);
	free(r.text);
	run_check(&r, "idle-1", &one);
	ck_assert_msg(r.status == 0, "tls-echod -t exit status %d; output:\n%s",
	    r.status, r.out);
	ck_assert_msg(strstr(r.out, "idle_timeout") == NULL, "warning about "
	    "idle_timeout = 1:\n%s", r.out);
	free(r.text);
}
END_TEST

/* The index of the first notify message from ${from} on holding ${needle}
 * within ${ms}, or -1. */
static int
notify_wait_from(struct h_daemon *d, int from, const char *needle, int ms)
{
	int64_t end = h_now_ms() + ms;

	for (;;) {
		int i;

		(void)h_notify_wait(d, "\001", 0); /* take what is queued */
		for (i = from; i < d->nnotify; i++)
			if (strstr(d->notify[i].text, needle) != NULL)
				return i;
		if (h_now_ms() >= end)
			return -1;
		usleep(50000);
	}
}

/* Two workers (one connection steered to the second): STATUS= sums them. */
START_TEST(test_status_counts_connections_of_all_workers)
{
	struct spec s = { .workers = 2 };
	struct client me;
	struct h_daemon d;
	struct h_tls c[3];
	pid_t w[2];
	int i, at;

	client_init(&me, "client", 0);
	daemon_up(&d, "status", &s);
	workers_of(&d, w, 2);
	worker_pause(w[1]);
	open_admitted(&d, &c[0], &me.o, "on worker 0");
	open_admitted(&d, &c[1], &me.o, "on worker 0 too");
	worker_resume(w[1]);
	worker_pause(w[0]);
	open_admitted(&d, &c[2], &me.o, "on worker 1");
	worker_resume(w[0]);
	at = notify_wait_from(&d, 0, ": 3 connection(s), ", 5000);
	ck_assert_msg(at >= 0, "no STATUS= with 3 connection(s) within 5 s; "
	    "last of %d: %s", d.nnotify, d.nnotify ? d.notify[d.nnotify - 1].text
	    : "none");
	for (i = 0; i < 3; i++)
		h_tls_close(&c[i]);
	ck_assert_msg(notify_wait_from(&d, at + 1, ": 0 connection(s), ", 5000)
	    >= 0, "no STATUS= with 0 connection(s) within 5 s of closing; last "
	    "of %d: %s", d.nnotify, d.notify[d.nnotify - 1].text);
	daemon_down(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* timers                                                                    */
/* ------------------------------------------------------------------------- */

/* The DURATION_MS= value of log line ${line}, or -1. */
static long
duration_ms(const char *line)
{
	const char *p = strstr(line, " DURATION_MS=");

	return p != NULL ? strtol(p + 13, NULL, 10) : -1;
}

/*
 * handshake_timeout = 0.5: silent clients are refused after 0.5 s, each to
 * the millisecond (the server's DURATION_MS at most 100 ms late): four
 * clients 60 ms apart could not all be that close on a 250 ms tick.
 */
START_TEST(test_handshake_timeout_half_second_closes_silent_clients_on_time)
{
	struct spec s = { .listener_extra = "handshake_timeout = 0.5;" };
	struct h_daemon d;
	char tag[4][48], line[4096];
	int64_t t0[4], took;
	int fd[4], i;
	long ms;

	daemon_up(&d, "hs-timeout", &s);
	for (i = 0; i < 4; i++) {
		if (i > 0)
			usleep(60000);
		t0[i] = h_now_ms();
		fd[i] = h_tcp_connect(d.port, IO_MS);
		ck_assert(fd[i] >= 0);
		h_peer_tag(fd[i], tag[i], sizeof(tag[i]));
	}
	for (i = 0; i < 4; i++) {
		ck_assert_msg(h_fd_wait_closed(fd[i], 3000) == 0, "silent client "
		    "%d still connected after 3 s", i);
		took = h_now_ms() - t0[i];
		close(fd[i]);
		ck_assert_msg(took >= 450 && took <= 1200, "silent client %d "
		    "closed after %lld ms, not about 500", i, (long long)took);
	}
	for (i = 0; i < 4; i++) {
		LOG_EXPECT(&d, line, tag[i], "CLOSE_REASON=handshake-timeout ",
		    "handshake refused: handshake timeout");
		ms = duration_ms(line);
		ck_assert_msg(ms >= 500 && ms <= 600, "silent client %d refused "
		    "at DURATION_MS=%ld, not 500 to the tick: %s", i, ms, line);
	}
	daemon_down(&d);
}
END_TEST

/*
 * idle_timeout = 1: an idle client is closed after about 1 s; one sending
 * a byte every 300 ms for 3 s stays (its deadline moved later each time:
 * the heap must re-file, not fire the first one), and is closed about 1 s
 * after it stops.
 */
START_TEST(test_idle_timeout_1_closes_idle_client_and_spares_active_one)
{
	struct spec s = { .listener_extra = "idle_timeout = 1;" };
	struct client me;
	struct h_daemon d;
	struct h_tls idle, busy;
	char line[4096];
	int64_t t0, took;
	int i, r;

	client_init(&me, "client", 0);
	daemon_up(&d, "idle-timeout", &s);
	open_admitted(&d, &idle, &me.o, "idle");
	t0 = h_now_ms();
	r = h_tls_wait_eof(&idle, 3000);
	took = h_now_ms() - t0;
	ck_assert_msg(r == 0 || r == 2, "idle client not closed: %s", idle.err);
	ck_assert_msg(took >= 900 && took <= 2000, "idle client closed after "
	    "%lld ms, not about 1000", (long long)took);
	LOG_EXPECT(&d, line, idle.peer_tag, "CLOSE_REASON=idle-timeout ");
	h_tls_close(&idle);

	open_admitted(&d, &busy, &me.o, "busy");
	for (i = 0; i < 10; i++) {
		usleep(300000);
		ck_assert_msg(h_tls_roundtrip(&busy, "b", 1, IO_MS) == 0, "busy "
		    "client lost after %d bytes (%d ms apart): %s", i, 300,
		    busy.err);
	}
	ck_assert_int_eq(h_log_count(&d, busy.peer_tag, NULL), 0);
	t0 = h_now_ms();
	r = h_tls_wait_eof(&busy, 3000);
	took = h_now_ms() - t0;
	ck_assert_msg(r == 0 || r == 2, "client idle again not closed: %s",
	    busy.err);
	ck_assert_msg(took >= 900 && took <= 2000, "client idle again closed "
	    "after %lld ms, not about 1000", (long long)took);
	LOG_EXPECT(&d, line, busy.peer_tag, "CLOSE_REASON=idle-timeout ");
	h_tls_close(&busy);
	daemon_down(&d);
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
limits_suite(void)
{
	Suite *s = suite_create("limits");
	TCase *tc;

	tc = tcase(s, "identity", 30);
	tcase_add_test(tc,
	    test_identity_limit_2_admits_exactly_2_of_6_tries_alternating_workers);
	tcase_add_loop_test(tc,
	    test_identity_limit_refuses_third_admits_other_identity_and_frees_on_close,
	    0, 2);
	tcase_add_test(tc, test_identity_limit_counts_client_without_uri_by_subject);
	tcase_add_test(tc,
	    test_identity_limit_is_off_by_default_5_of_one_identity_admitted);

	tc = tcase(s, "worker_connections", 30);
	tcase_add_test(tc,
	    test_worker_connections_3_holds_fourth_in_backlog_until_one_closes);
	tcase_add_test(tc,
	    test_full_worker_does_not_strand_a_connection_another_could_take);

	tc = tcase(s, "record_size", 30);
	tcase_add_loop_test(tc,
	    test_record_size_caps_server_records_and_accepts_16k_from_client, 0, 4);
	tcase_add_loop_test(tc, test_record_size_16384_lets_server_send_full_records,
	    0, 2);
	tcase_add_test(tc, test_check_refuses_record_size_3000_with_file_line_and_sizes);

	tc = tcase(s, "status", 30);
	tcase_add_test(tc, test_check_warns_about_idle_timeout_0_and_not_about_1);
	tcase_add_test(tc, test_status_counts_connections_of_all_workers);

	tc = tcase(s, "timers", 30);
	tcase_add_test(tc,
	    test_handshake_timeout_half_second_closes_silent_clients_on_time);
	tcase_add_test(tc, test_idle_timeout_1_closes_idle_client_and_spares_active_one);
	return s;
}

int
main(void)
{
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_limits: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(limits_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
