/*
 * check_daemon: integration tests of the real tls-echod on loopback.
 *
 * Every test starts its own daemon (test/harness.c) with its own log file,
 * so no assertion can match another test's line; refusals and closes are
 * further pinned to one client by its PEER_ADDR (the client's local port).
 * Each test asserts both what the client saw and what the server logged.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "harness.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define IO_MS 10000   /* bound for one client operation */
#define LOG_MS 5000   /* bound for a log line to appear */

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

static void
connect_ok(struct h_tls *c, const struct h_daemon *d,
    const struct h_tls_opts *o)
{
	char tail[600];

	ck_assert_msg(h_tls_connect(c, d->port, o) == 0, "TLS connect: %s; "
	    "daemon log ends:\n%s", c->err, h_log_tail(d, tail, sizeof(tail)));
}

static void
roundtrip_ok(struct h_tls *c, const char *what)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "round-trip %s on %s\n", what, c->peer_tag);
	ck_assert_msg(h_tls_roundtrip(c, msg, strlen(msg), IO_MS) == 0,
	    "echo %s failed: %s", what, c->err);
}

/*
 * The client with ${o} must be refused: its handshake fails, or (TLS 1.3,
 * where the client finishes first) its first round-trip gets an alert or
 * EOF instead of the echo.  The server must log exactly one refusal for this
 * client with CLOSE_REASON=${token} and message "handshake refused: ${words}".
 * The log line goes to ${line}.
 */
static void
expect_refusal(struct h_daemon *d, const struct h_tls_opts *o,
    const char *what, const char *token, const char *words, char *line,
    size_t linelen)
{
	char reason[64], msg[200], tail[1200];
	struct h_tls c;

	if (h_tls_connect(&c, d->port, o) == 0) {
		int r = h_tls_refused(&c, IO_MS);

		ck_assert_msg(r == 1, "%s: the handshake succeeded and then %s "
		    "(%s)", what, r == 0 ? "the server echoed: not refused" :
		    "nothing happened", c.err);
	}
	ck_assert_msg(c.peer_tag[0] != '\0', "%s: no TCP connection: %s",
	    what, c.err);
	snprintf(reason, sizeof(reason), "CLOSE_REASON=%s ", token);
	snprintf(msg, sizeof(msg), ": handshake refused: %s LISTENER=echo ",
	    words);
	ck_assert_msg(h_log_wait(d, LOG_MS, line, linelen, c.peer_tag, reason,
	    msg, NULL) == 0, "%s: the client failed (%s) but the server logged "
	    "no \"%s\" with %s for %s; log ends:\n%s", what, c.err, msg, reason,
	    c.peer_tag, h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(h_log_count(d, c.peer_tag, NULL) == 1, "%s: more than "
	    "one log line for %s", what, c.peer_tag);
	h_tls_close(&c);
}

/* ------------------------------------------------------------------------- */
/* echo                                                                      */
/* ------------------------------------------------------------------------- */

static const size_t echo_sizes[] = { 1, 64 * KiB, 16 * MiB };

/*
 * Loop 0..5: sizes 1 B, 64 KiB, 16 MiB, each over TLS 1.3 then TLS 1.2.
 * Writes and reads at once: the echo holds back what the client does not
 * read, so write-everything-then-read would deadlock.
 */
START_TEST(test_echo_returns_bytes_intact_and_logs_byte_counts)
{
	size_t len = echo_sizes[_i % 3], woff = 0, roff = 0, diff;
	int v = _i / 3;
	struct h_tls_opts o = h_client_opts("client", versions[v]);
	struct h_daemon d;
	struct h_tls c;
	unsigned char *data = malloc(len), *back = malloc(len);
	char line[4096], in[48], out[48], ver[48];
	int64_t t0;

	ck_assert(data != NULL && back != NULL);
	h_fill_pattern(data, len, 0x5eed0000u + (unsigned)_i);
	H_DAEMON_UP(&d, "echo", "workers = 2;", NULL);
	connect_ok(&c, &d, &o);
	ck_assert_str_eq(h_tls_version(&c), version_names[v]);
	t0 = h_now_ms();
	ck_assert_msg(h_tls_pump(&c, data, len, &woff, back, &roff, 60000) == 0,
	    "%zu bytes over %s: %s", len, version_names[v], c.err);
	diff = h_first_diff(data, back, len);
	ck_assert_msg(diff == len, "%zu bytes over %s: echo differs at byte "
	    "%zu", len, version_names[v], diff);
	h_tls_close(&c);

	snprintf(in, sizeof(in), "BYTES_IN=%zu ", len);
	snprintf(out, sizeof(out), "BYTES_OUT=%zu ", len);
	snprintf(ver, sizeof(ver), "TLS_VERSION=%s ", version_names[v]);
	H_LOG_EXPECT(&d, line, c.peer_tag,
	    ": connection closed: client closed the connection LISTENER=echo ",
	    ver, "TLS_CIPHER=TLS_", in, out, "CLOSE_REASON=client-closed ",
	    "CLIENT_SUBJECT=\"OU=ops, CN=test-client\" ");
	H_DAEMON_DOWN(&d);
	fprintf(stderr, "echo %zu bytes over %s: %" PRId64 " ms\n", len,
	    version_names[v], h_now_ms() - t0);
	free(data);
	free(back);
}
END_TEST

START_TEST(test_daemon_binds_its_own_listener_without_socket_activation)
{
	struct h_daemon_opts o = { .label = "ownbind", .activation = false };
	struct h_tls_opts co = h_client_opts("client", 0);
	struct h_daemon d;
	struct h_tls c;
	char line[4096], on[64];

	ck_assert_msg(h_daemon_start(&d, &o) == 0, "%s", d.err);
	snprintf(on, sizeof(on), "listener echo on 127.0.0.1:%d:", d.port);
	H_LOG_EXPECT(&d, line, on);
	connect_ok(&c, &d, &co);
	roundtrip_ok(&c, "through the daemon's own socket");
	h_tls_close(&c);
	ck_assert_int_eq(h_log_count(&d, "socket activation", NULL), 0);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_activation_matches_fd_by_address_when_name_differs)
{
	struct h_daemon_opts o = { .label = "byaddr", .activation = true,
	    .fdname = "not-a-listener-name" };
	struct h_tls_opts co = h_client_opts("client", 0);
	struct h_daemon d;
	struct h_tls c;
	char line[4096], on[64];

	/*
	 * The port is bound by the test: if the daemon ignored fd 3 and bound
	 * by itself, it would fail with "address in use".
	 */
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "%s", d.err);
	snprintf(on, sizeof(on), "listener echo on 127.0.0.1:%d:", d.port);
	H_LOG_EXPECT(&d, line, on);
	connect_ok(&c, &d, &co);
	roundtrip_ok(&c, "through the activated socket");
	h_tls_close(&c);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_banner_is_sent_after_handshake_before_echo)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	static const char msg[] = "after the banner\n";
	struct h_daemon d;
	struct h_tls c;
	char got[16] = "", line[4096], out[48], in[48];

	H_DAEMON_UP(&d, "banner", "workers = 1;", "banner = \"hello\\n\";");
	connect_ok(&c, &d, &o);
	/* Nothing sent yet: the first bytes must be the banner. */
	ck_assert_msg(h_tls_read_exact(&c, got, 6, IO_MS) == 0,
	    "no banner: %s", c.err);
	ck_assert_msg(memcmp(got, "hello\n", 6) == 0, "banner was \"%.6s\"",
	    got);
	ck_assert_msg(h_tls_roundtrip(&c, msg, strlen(msg), IO_MS) == 0,
	    "echo after the banner: %s", c.err);
	h_tls_close(&c);
	snprintf(in, sizeof(in), "BYTES_IN=%zu ", strlen(msg));
	snprintf(out, sizeof(out), "BYTES_OUT=%zu ", strlen(msg) + 6);
	H_LOG_EXPECT(&d, line, c.peer_tag, "connection closed:", in, out);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* load                                                                      */
/* ------------------------------------------------------------------------- */

#define NCLIENTS 200

START_TEST(test_200_concurrent_clients_all_get_their_own_echo)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_tls *c = calloc(NCLIENTS, sizeof(*c));
	char msg[64], back[64];
	struct h_daemon d;
	int i, n;

	ck_assert(c != NULL);
	H_DAEMON_UP(&d, "many", "workers = 2;", NULL);
	/* All established before anyone speaks. */
	for (i = 0; i < NCLIENTS; i++)
		ck_assert_msg(h_tls_connect(&c[i], d.port, &o) == 0,
		    "client %d of %d: %s", i, NCLIENTS, c[i].err);
	for (i = 0; i < NCLIENTS; i++) {
		snprintf(msg, sizeof(msg), "client %03d from port %05d\n", i,
		    c[i].local_port);
		ck_assert_msg(h_tls_write_all(&c[i], msg, strlen(msg),
		    IO_MS) == 0, "client %d write: %s", i, c[i].err);
	}
	for (i = 0; i < NCLIENTS; i++) {
		snprintf(msg, sizeof(msg), "client %03d from port %05d\n", i,
		    c[i].local_port);
		memset(back, 0, sizeof(back));
		ck_assert_msg(h_tls_read_exact(&c[i], back, strlen(msg),
		    IO_MS) == 0, "client %d read: %s", i, c[i].err);
		ck_assert_msg(memcmp(msg, back, strlen(msg)) == 0, "client %d "
		    "got \"%s\", sent \"%s\"", i, back, msg);
	}
	for (i = 0; i < NCLIENTS; i++)
		h_tls_close(&c[i]);
	/* Every one of them ended cleanly in the server's eyes too. */
	n = h_log_wait_count(&d, NCLIENTS, 10000, "connection closed:",
	    "CLOSE_REASON=client-closed ", NULL);
	ck_assert_msg(n == NCLIENTS, "%d of %d clean close lines", n,
	    NCLIENTS);
	ck_assert_int_eq(h_log_count(&d, "handshake refused", NULL), 0);
	H_DAEMON_DOWN(&d);
	free(c);
}
END_TEST

#define SLOW_TOTAL (8 * MiB)
#define RSS_GROWTH_MAX_KB (64L * 1024)

START_TEST(test_backpressure_stops_reading_bounds_memory_and_serves_others)
{
	struct h_tls_opts so = h_client_opts("client", 0);
	struct h_tls_opts fo = h_client_opts("client", 0);
	unsigned char *data = malloc(SLOW_TOTAL), *back = malloc(SLOW_TOTAL);
	long base[2], rss;
	size_t woff = 0, roff = 0, diff, stalled_at;
	struct h_daemon d;
	struct h_tls slow, fast;
	pid_t w[4];
	char line[4096], in[48];
	int i, r;

	/*
	 * Fixed socket buffers on both ends (the daemon's inherit them from
	 * the activated listener), so what the kernel can hold in flight
	 * (about 1.3 MiB) is far below 8 MiB on any machine: with autotuning
	 * the server's send buffer alone may grow to net.ipv4.tcp_wmem's max.
	 */
	struct h_daemon_opts dopts = { .label = "backpressure",
	    .globals = "workers = 2;", .activation = true,
	    .listen_sndbuf = 256 * KiB, .listen_rcvbuf = 256 * KiB };

	ck_assert(data != NULL && back != NULL);
	h_fill_pattern(data, SLOW_TOTAL, 0xbac4u);
	ck_assert_msg(h_daemon_start(&d, &dopts) == 0, "%s", d.err);
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 2, 2000), 2);
	for (i = 0; i < 2; i++) {
		base[i] = h_proc_rss_kb(w[i]);
		ck_assert_msg(base[i] > 0, "no VmRSS for worker %ld",
		    (long)w[i]);
	}
	so.sndbuf = so.rcvbuf = 64 * KiB;
	connect_ok(&slow, &d, &so);
	r = h_tls_write_until_blocked(&slow, data, SLOW_TOTAL, &woff, 500,
	    15000);
	ck_assert_msg(r == 0, "a client that never reads could write %zu of "
	    "%u bytes without blocking (%s): the daemon did not stop reading",
	    woff, SLOW_TOTAL, r < 0 ? slow.err : "all written");
	stalled_at = woff;
	fprintf(stderr, "back-pressure: writes blocked after %zu bytes\n",
	    stalled_at);
	for (i = 0; i < 2; i++) {
		rss = h_proc_rss_kb(w[i]);
		ck_assert_msg(rss > 0 && rss - base[i] < RSS_GROWTH_MAX_KB,
		    "worker %ld VmRSS %ld kB, was %ld kB", (long)w[i], rss,
		    base[i]);
	}
	/* The stalled client must not hold up anyone else. */
	connect_ok(&fast, &d, &fo);
	roundtrip_ok(&fast, "next to a stalled client");
	h_tls_close(&fast);
	/* Still blocked: the daemon really stopped, it was not just slow. */
	r = h_tls_write_until_blocked(&slow, data, SLOW_TOTAL, &woff, 300,
	    5000);
	ck_assert_msg(r == 0 && woff - stalled_at <= 64 * KiB, "the stalled "
	    "client's writes moved on by %zu bytes without reading",
	    woff - stalled_at);
	/* Now read: every byte comes back, in order. */
	ck_assert_msg(h_tls_pump(&slow, data, SLOW_TOTAL, &woff, back, &roff,
	    60000) == 0, "draining the slow client: %s", slow.err);
	diff = h_first_diff(data, back, SLOW_TOTAL);
	ck_assert_msg(diff == SLOW_TOTAL, "echo differs at byte %zu", diff);
	h_tls_close(&slow);
	snprintf(in, sizeof(in), "BYTES_IN=%u ", SLOW_TOTAL);
	H_LOG_EXPECT(&d, line, slow.peer_tag, in,
	    "CLOSE_REASON=client-closed ");
	H_DAEMON_DOWN(&d);
	free(data);
	free(back);
}
END_TEST

/* --- one busy client must not starve the others on its worker ---------- */

#define PROBES 3
#define PROBE_MAX_MS 2000

/*
 * A client that sends without pause and discards what comes back, as fast
 * as openssl can: its records are always waiting in the worker's socket.
 */
static pid_t
start_streamer(const struct h_daemon *d, char *tag, size_t taglen)
{
	char connect[64], local[64];
	int bport = h_free_port();
	pid_t pid;

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", d->port);
	snprintf(local, sizeof(local), "127.0.0.1:%d", bport);
	snprintf(tag, taglen, "PEER_ADDR=127.0.0.1:%d ", bport);
	pid = fork();
	if (pid == 0) {
		int in = open("/dev/zero", O_RDONLY);
		int out = open("/dev/null", O_WRONLY);

		if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
		    dup2(out, 2) < 0)
			_exit(127);
		execlp("openssl", "openssl", "s_client", "-connect", connect,
		    "-bind", local, "-cert", h_pki("client.crt"), "-key", h_pki("client.key"),
		    "-CAfile", h_pki("ca.crt"), "-quiet", (char *)NULL);
		_exit(127);
	}
	return pid;
}

START_TEST(test_streaming_client_does_not_starve_others_on_its_worker)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_daemon d;
	struct h_tls probe;
	char line[4096], tag[64];
	int64_t t0, took;
	pid_t streamer;
	int i;

	if (h_skip_under_valgrind(__func__,
	    "needs a streamer fast enough to fill its worker"))
		return;
	/* One worker: the streamer and the probes share its event loop. */
	H_DAEMON_UP(&d, "starve", "workers = 1;", NULL);
	streamer = start_streamer(&d, tag, sizeof(tag));
	ck_assert(streamer > 0);
	usleep(500000); /* let the stream get going */
	for (i = 0; i < PROBES; i++) {
		t0 = h_now_ms();
		connect_ok(&probe, &d, &o);
		roundtrip_ok(&probe, "beside a streaming client");
		took = h_now_ms() - t0;
		h_tls_close(&probe);
		ck_assert_msg(took < PROBE_MAX_MS, "probe %d took %lld ms next "
		    "to a streaming client (limit %d ms): the worker is "
		    "starved", i, (long long)took, PROBE_MAX_MS);
	}
	/* The stream was really flowing meanwhile: SIGTERM still works and
	 * its close line shows megabytes. */
	kill(streamer, SIGTERM);
	ck_assert_int_ge(h_wait_pid(streamer, 5000), 0);
	H_LOG_EXPECT(&d, line, tag, "connection closed:", "BYTES_IN=");
	{
		const char *p = strstr(line, "BYTES_IN=");
		unsigned long long in = p ? strtoull(p + 9, NULL, 10) : 0;

		fprintf(stderr, "starvation: %llu MiB streamed while %d probes "
		    "got through\n", in / MiB, PROBES);
		ck_assert_msg(in >= 1 * MiB, "the streamer moved only %llu "
		    "bytes: the test proves nothing", in);
	}
	H_DAEMON_DOWN(&d);
}
END_TEST

#define SEQ_CONNS 40
#define THREADS 4
#define PER_THREAD 6
#define ROUNDS 5
#define MAX_CONNS (SEQ_CONNS + ROUNDS * THREADS * PER_THREAD)

struct conn_record {
	unsigned char random[32];
	char peer_tag[48];
	char err[256];
	int ok;
};

struct burst {
	int port;
	const struct h_tls_opts *o;
	struct conn_record *rec; /* PER_THREAD of them */
};

/* One full connection: handshake, server random, one echo, close. */
static void
one_conn(int port, const struct h_tls_opts *o, struct conn_record *r)
{
	struct h_tls c;

	memset(r, 0, sizeof(*r));
	if (h_tls_connect(&c, port, o) == 0 &&
	    SSL_get_server_random(c.ssl, r->random, sizeof(r->random)) ==
	    sizeof(r->random) && h_tls_roundtrip(&c, "r\n", 2, IO_MS) == 0)
		r->ok = 1;
	snprintf(r->peer_tag, sizeof(r->peer_tag), "%s", c.peer_tag);
	snprintf(r->err, sizeof(r->err), "%.255s", c.err);
	h_tls_close(&c);
}

static void *
burst_thread(void *arg)
{
	struct burst *b = arg;
	int i;

	for (i = 0; i < PER_THREAD; i++)
		one_conn(b->port, b->o, &b->rec[i]);
	return NULL;
}

/* Distinct worker pids among the close lines of ${rec}[0..n). */
static int
serving_pids(const struct h_daemon *d, const struct conn_record *rec, int n,
    pid_t *pids, int max)
{
	char line[4096];
	int i, k, np = 0;

	for (i = 0; i < n; i++) {
		pid_t p;

		ck_assert_msg(h_log_wait(d, LOG_MS, line, sizeof(line),
		    rec[i].peer_tag, "connection closed:", NULL) == 0,
		    "no close line for %s", rec[i].peer_tag);
		p = h_log_line_pid(line);
		ck_assert_msg(p > 0, "no pid in \"%s\"", line);
		for (k = 0; k < np && pids[k] != p; k++)
			;
		if (k == np && np < max)
			pids[np++] = p;
	}
	return np;
}

START_TEST(test_workers_draw_distinct_server_randoms)
{
	struct h_tls_opts o = h_client_opts("client", TLS1_3_VERSION);
	struct conn_record *rec = calloc(MAX_CONNS, sizeof(*rec));
	pid_t pids[8], w[4];
	struct h_daemon d;
	int i, j, k, n = 0, np, round;

	ck_assert(rec != NULL);
	H_DAEMON_UP(&d, "random", "workers = 2;", NULL);
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 2, 2000), 2);
	for (i = 0; i < SEQ_CONNS; i++, n++) {
		one_conn(d.port, &o, &rec[n]);
		ck_assert_msg(rec[n].ok, "connection %d: %s", i, rec[n].err);
	}
	np = serving_pids(&d, rec, n, pids, 8);
	/*
	 * One worker may win every sequential accept.  Concurrent clients keep
	 * it busy, so the other worker gets woken too.
	 */
	for (round = 0; np < 2 && round < ROUNDS; round++) {
		struct burst b[THREADS];
		pthread_t t[THREADS];
		int first = n;

		for (k = 0; k < THREADS; k++) {
			b[k].port = d.port;
			b[k].o = &o;
			b[k].rec = &rec[n + k * PER_THREAD];
			ck_assert(pthread_create(&t[k], NULL, burst_thread,
			    &b[k]) == 0);
		}
		for (k = 0; k < THREADS; k++)
			pthread_join(t[k], NULL);
		n += THREADS * PER_THREAD;
		for (i = first; i < n; i++)
			ck_assert_msg(rec[i].ok, "concurrent connection: %s",
			    rec[i].err);
		np = serving_pids(&d, rec, n, pids, 8);
	}
	fprintf(stderr, "randoms: %d connections served by %d worker(s)\n", n,
	    np);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			ck_assert_msg(memcmp(rec[i].random, rec[j].random, 32) != 0,
			    "connections %d (%s) and %d (%s) got the same "
			    "server random: workers share a random stream", i,
			    rec[i].peer_tag, j, rec[j].peer_tag);
	ck_assert_msg(np >= 2, "all %d connections were served by worker %ld "
	    "alone, even with %d concurrent clients: cannot compare the "
	    "workers' random streams", n, (long)pids[0], THREADS);
	for (k = 0; k < np; k++)
		ck_assert_msg(pids[k] == w[0] || pids[k] == w[1], "pid %ld in "
		    "a close line is not a worker (%ld, %ld)", (long)pids[k],
		    (long)w[0], (long)w[1]);
	H_DAEMON_DOWN(&d);
	free(rec);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* refusals                                                                  */
/* ------------------------------------------------------------------------- */

#define SUBJECT "CLIENT_SUBJECT=\"OU=ops, CN=test-client\" "

static void
refusal_case(const char *label, const char *cert, const char *token,
    const char *words, const char *detail, int v)
{
	struct h_tls_opts o = h_client_opts(cert, versions[v]);
	struct h_daemon d;
	char line[4096], what[128];

	snprintf(what, sizeof(what), "%s over %s", cert ? cert : "no cert",
	    version_names[v]);
	H_DAEMON_UP(&d, label, "workers = 1;", NULL);
	expect_refusal(&d, &o, what, token, words, line, sizeof(line));
	if (cert != NULL)
		ck_assert_msg(strstr(line, SUBJECT) != NULL, "%s: no %s in "
		    "\"%s\"", what, SUBJECT, line);
	if (detail != NULL)
		ck_assert_msg(strstr(line, detail) != NULL, "%s: no \"%s\" in "
		    "\"%s\"", what, detail, line);
	/* A refusal costs the daemon nothing: a good client still works. */
	{
		struct h_tls_opts good = h_client_opts("client", versions[v]);
		struct h_tls c;

		connect_ok(&c, &d, &good);
		roundtrip_ok(&c, "after a refusal");
		h_tls_close(&c);
	}
	H_DAEMON_DOWN(&d);
}

START_TEST(test_refuses_client_without_certificate)
{
	refusal_case("nocert", NULL, "no-client-cert", "no client certificate",
	    "REASON_DETAIL=\"the client sent no certificate", _i);
}
END_TEST

START_TEST(test_refuses_cert_from_other_ca_with_same_name_as_bad_signature)
{
	refusal_case("otherca", "client-other", "bad-signature",
	    "client certificate signature does not verify (bad signature)",
	    "CLIENT_ISSUER=\"O=tls-echod tests, CN=tls-echod test CA\" ", _i);
}
END_TEST

START_TEST(test_refuses_expired_client_cert)
{
	refusal_case("expired", "client-expired", "cert-expired",
	    "client certificate expired", "REASON_DETAIL=\"valid until 2021-",
	    _i);
}
END_TEST

START_TEST(test_refuses_not_yet_valid_client_cert)
{
	refusal_case("future", "client-future", "cert-not-yet-valid",
	    "client certificate not yet valid",
	    "REASON_DETAIL=\"valid from 2099-", _i);
}
END_TEST

START_TEST(test_refuses_client_cert_with_corrupted_signature)
{
	refusal_case("badsig", "client-badsig", "bad-signature",
	    "client certificate signature does not verify (bad signature)",
	    NULL, _i);
}
END_TEST

/*
 * Loop over refused certificates: TLS 1.2 lets the server say why before
 * the client finishes, so the client must get a fatal alert (RFC 5246
 * 7.4.6 and 7.2.2), not a bare TCP reset or EOF that tells it nothing.
 * (TLS 1.3 is left out: mbedTLS 3.6 sends those alerts under the wrong
 * keys, Mbed-TLS/mbedtls#10877, and clients see "bad record mac".)
 */
static const char *const tls12_refused[] = { NULL, "client-other",
    "client-expired", "client-future", "client-badsig" };

START_TEST(test_tls12_refused_client_is_told_why_by_an_alert)
{
	const char *cert = tls12_refused[_i];
	struct h_tls_opts o = h_client_opts(cert, TLS1_2_VERSION);
	struct h_daemon d;
	struct h_tls c;
	char line[4096];
	int r;

	H_DAEMON_UP(&d, "alert12", "workers = 1;", NULL);
	r = h_tls_connect(&c, d.port, &o);
	ck_assert_msg(r != 0, "%s: TLS 1.2 handshake succeeded",
	    cert ? cert : "no certificate");
	H_LOG_EXPECT(&d, line, c.peer_tag, "handshake refused:");
	ck_assert_msg(strstr(c.err, " alert ") != NULL, "%s over TLS 1.2: the "
	    "server refused (%s) but the client got no alert: %s",
	    cert ? cert : "no certificate", strstr(line, "CLOSE_REASON="),
	    c.err);
	h_tls_close(&c);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * A CA with its own name, made here with the openssl CLI, and a client it
 * signed: ${dir}/unknown-ca.crt, ${dir}/unknown-client.{crt,key}.
 */
static void
make_unknown_ca_client(char *crt, char *key, size_t len)
{
	char p[5][512], err[256], tag[64];
	const char *log;
	FILE *f;
	int i;

	snprintf(tag, sizeof(tag), "unknown-%ld", (long)getpid());
	log = h_tmp("openssl-unknown-ca.log");
	{
		const char *names[5] = { "ca.key", "ca.crt", "client.key",
		    "client.csr", "ext.cnf" };

		for (i = 0; i < 5; i++)
			snprintf(p[i], sizeof(p[i]), "%s/%s-%s",
			    getenv("TEST_TMPDIR"), tag, names[i]);
	}
	snprintf(crt, len, "%s/%s-client.crt", getenv("TEST_TMPDIR"), tag);
	snprintf(key, len, "%s", p[2]);
	f = fopen(p[4], "w");
	ck_assert(f != NULL);
	fprintf(f, "[v3]\nbasicConstraints = critical, CA:FALSE\n"
	    "keyUsage = critical, digitalSignature\n"
	    "extendedKeyUsage = clientAuth\n");
	ck_assert(fclose(f) == 0);
	{
		const char *ca[] = { "openssl", "req", "-x509", "-newkey", "ec",
		    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
		    p[0], "-out", p[1], "-subj",
		    "/O=somewhere else/CN=unrelated test CA", "-days", "2",
		    "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
		    "keyUsage=critical,keyCertSign", NULL };
		const char *req[] = { "openssl", "req", "-new", "-newkey", "ec",
		    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
		    p[2], "-out", p[3], "-subj", "/OU=ops/CN=test-client",
		    NULL };
		const char *sign[] = { "openssl", "x509", "-req", "-in", p[3],
		    "-CA", p[1], "-CAkey", p[0], "-set_serial", "4242",
		    "-days", "2", "-sha256", "-extfile", p[4], "-extensions",
		    "v3", "-out", crt, NULL };

		ck_assert_msg(h_run(ca, log, 20000, err, sizeof(err)) == 0,
		    "openssl req -x509 failed (%s); see %s", err, log);
		ck_assert_msg(h_run(req, log, 20000, err, sizeof(err)) == 0,
		    "openssl req failed (%s); see %s", err, log);
		ck_assert_msg(h_run(sign, log, 20000, err, sizeof(err)) == 0,
		    "openssl x509 -req failed (%s); see %s", err, log);
	}
}

START_TEST(test_refuses_cert_from_unknown_ca)
{
	struct h_tls_opts o = h_client_opts(NULL, versions[_i]);
	char crt[512], key[512], line[4096], what[64];
	struct h_daemon d;

	make_unknown_ca_client(crt, key, sizeof(crt));
	o.cert = crt;
	o.key = key;
	snprintf(what, sizeof(what), "unknown CA over %s", version_names[_i]);
	H_DAEMON_UP(&d, "unknownca", "workers = 1;", NULL);
	expect_refusal(&d, &o, what, "unknown-ca",
	    "client certificate issued by an unknown CA", line, sizeof(line));
	ck_assert_msg(strstr(line, "CLIENT_ISSUER=\"O=somewhere else, "
	    "CN=unrelated test CA\" ") != NULL, "issuer missing: %s", line);
	ck_assert_msg(strstr(line, "REASON_DETAIL=\"issuer \\\"O=somewhere "
	    "else, CN=unrelated test CA\\\" is not a CA in") != NULL,
	    "detail missing: %s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * log = "json": one JSON object per line on stderr, with journald's fields
 * and a timestamp; certificate names with quotes, backslashes and
 * non-ASCII text still give valid JSON.  python3 parses every line.
 */
START_TEST(test_json_log_lines_parse_and_escape_any_name)
{
	static const char conf[] =
	    "log = \"json\";\nworkers = 1;\n"
	    "listeners = ( { name = \"echo\"; listen = \"127.0.0.1:@PORT@\";\n"
	    "  mode = \"echo\";\n"
	    "  tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";\n"
	    "          ca = \"@PKI@/ca.crt\"; }; } );\n";
	static const char check[] =
	    "import json, sys\n"
	    "recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]\n"
	    "assert all(isinstance(r, dict) and isinstance(r['MESSAGE'], str)\n"
	    "    and r['TIMESTAMP'].endswith('Z') and r['PRIORITY'].isdigit()\n"
	    "    for r in recs), 'a record lacks MESSAGE/TIMESTAMP/PRIORITY'\n"
	    "keys = {'MESSAGE_ID', 'LISTENER', 'PEER_ADDR', 'CLIENT_SUBJECT',\n"
	    "    'TLS_VERSION', 'TLS_CIPHER', 'BYTES_IN', 'BYTES_OUT',\n"
	    "    'DURATION_MS', 'CLOSE_REASON', 'CLIENT_AUTH', 'TLS_RESUMED'}\n"
	    "close = [r for r in recs if r.get('CLOSE_REASON') == 'client-closed']\n"
	    "assert close and keys <= close[0].keys(), close\n"
	    "assert close[0]['BYTES_IN'] == '6', close[0]\n"
	    "bad = [r for r in recs if r.get('CLOSE_REASON') == 'unknown-ca']\n"
	    "subj = bad[0]['CLIENT_SUBJECT'] if bad else ''\n"
	    "assert 'CN=q' in subj and '\"' in subj and chr(92) in subj, bad\n"
	    "print('json log: %d records parse' % len(recs))\n";
	struct h_daemon_opts o = { .label = "json", .config = conf,
	    .activation = true };
	struct h_tls_opts good = h_client_opts("client", TLS1_3_VERSION);
	struct h_tls_opts odd = h_client_opts(NULL, TLS1_3_VERSION);
	char crt[512], key[512], script[512], err[256], line[4096];
	const char *gen[] = { "openssl", "req", "-x509", "-newkey", "ec",
	    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
	    "-out", crt, "-utf8", "-subj", "/O=caf\xc3\xa9/CN=q\"b\\\\s", "-days",
	    "2", "-addext", "extendedKeyUsage=clientAuth", NULL };
	const char *py[] = { "python3", script, NULL, NULL };
	struct h_daemon d;
	struct h_tls c;
	FILE *f;

	snprintf(crt, sizeof(crt), "%s", h_tmp("json-odd.crt"));
	snprintf(key, sizeof(key), "%s", h_tmp("json-odd.key"));
	snprintf(script, sizeof(script), "%s", h_tmp("json-check.py"));
	ck_assert_msg(h_run(gen, h_tmp("json-openssl.log"), 10000, err,
	    sizeof(err)) == 0, "openssl req: %s", err);
	ck_assert((f = fopen(script, "w")) != NULL);
	fputs(check, f);
	ck_assert(fclose(f) == 0);
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "daemon: %s", d.err);
	connect_ok(&c, &d, &good);
	ck_assert_msg(h_tls_roundtrip(&c, "hello\n", 6, 10000) == 0, "%s",
	    c.err);
	h_tls_close(&c);
	H_LOG_EXPECT(&d, line, "\"CLOSE_REASON\":\"client-closed\"");
	odd.cert = crt;
	odd.key = key;
	(void)h_tls_connect(&c, d.port, &odd);
	(void)h_tls_refused(&c, 5000);
	h_tls_close(&c);
	H_LOG_EXPECT(&d, line, "\"CLOSE_REASON\":\"unknown-ca\"");
	py[2] = d.log_path;
	ck_assert_msg(h_run(py, h_tmp("json-check.log"), 20000, err,
	    sizeof(err)) == 0, "the log does not parse as JSON lines (%s); "
	    "see %s and %s", err, h_tmp("json-check.log"), d.log_path);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_refuses_tls11_client_as_protocol_version)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_daemon d;
	char line[4096];

	o.min_version = TLS1_VERSION;
	o.max_version = TLS1_1_VERSION;
	o.cipher_list = "DEFAULT:@SECLEVEL=0";
	o.set_security_level = true;
	o.security_level = 0;
	H_DAEMON_UP(&d, "tls11", "workers = 1;", NULL);
	expect_refusal(&d, &o, "TLS 1.1 client", "protocol-version",
	    "protocol version not supported", line, sizeof(line));
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_refuses_cbc_only_tls12_client_as_no_shared_cipher)
{
	struct h_tls_opts o = h_client_opts("client", TLS1_2_VERSION);
	struct h_daemon d;
	char line[4096];

	o.cipher_list = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256:"
	    "ECDHE-RSA-AES128-SHA";
	H_DAEMON_UP(&d, "cbc", "workers = 1;", NULL);
	expect_refusal(&d, &o, "CBC-only TLS 1.2 client", "no-shared-cipher",
	    "no shared cipher", line, sizeof(line));
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * With one worker, the established session and the bad connection share
 * the worker's loop: nothing the bad one does may stall it.
 */
START_TEST(test_plaintext_is_closed_as_not_tls_while_session_keeps_echoing)
{
	static const char http[] = "GET / HTTP/1.0\r\n\r\n";
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_daemon d;
	struct h_tls s;
	char tag[48], line[4096];
	int fd;

	H_DAEMON_UP(&d, "plaintext", "workers = 1;", NULL);
	connect_ok(&s, &d, &o);
	roundtrip_ok(&s, "before");
	fd = h_tcp_connect(d.port, IO_MS);
	ck_assert_msg(fd >= 0, "raw connect: %s", strerror(errno));
	h_peer_tag(fd, tag, sizeof(tag));
	ck_assert(h_fd_write_all(fd, http, strlen(http), IO_MS) == 0);
	roundtrip_ok(&s, "during");
	ck_assert_msg(h_fd_wait_closed(fd, IO_MS) == 0, "the daemon kept a "
	    "plaintext connection open");
	close(fd);
	H_LOG_EXPECT(&d, line, tag, "CLOSE_REASON=not-tls ",
	    ": handshake refused: client did not speak TLS LISTENER=echo ",
	    "REASON_DETAIL=\"first byte 0x47 (printable text)");
	roundtrip_ok(&s, "after");
	h_tls_close(&s);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_truncated_client_hello_times_out_while_session_keeps_echoing)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	unsigned char hello[4096];
	size_t hlen;
	struct h_daemon d;
	struct h_tls s;
	char tag[48], line[4096];
	int fd, during = 0;
	int64_t t0, closed_ms;

	if (h_skip_under_valgrind(__func__,
	    "measures when the handshake timeout fires"))
		return;
	hlen = h_client_hello(hello, sizeof(hello), &o);
	ck_assert_msg(hlen > 100 && hello[0] == 0x16, "captured ClientHello: "
	    "%zu bytes", hlen);
	H_DAEMON_UP(&d, "truncated", "workers = 1; handshake_timeout = 1;",
	    NULL);
	connect_ok(&s, &d, &o);
	roundtrip_ok(&s, "before");
	fd = h_tcp_connect(d.port, IO_MS);
	ck_assert_msg(fd >= 0, "raw connect: %s", strerror(errno));
	h_peer_tag(fd, tag, sizeof(tag));
	ck_assert(h_fd_write_all(fd, hello, 60, IO_MS) == 0);
	t0 = h_now_ms();
	/* Keep echoing for as long as the stalled handshake is pending. */
	while (h_fd_is_open(fd) && h_now_ms() - t0 < 5000) {
		struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

		roundtrip_ok(&s, "during the stalled handshake");
		during++;
		(void)poll(&p, 1, 50); /* paces the loop; wakes on the close */
	}
	ck_assert_msg(h_fd_wait_closed(fd, 5000) == 0, "a stalled handshake "
	    "was still open %" PRId64 " ms later (handshake_timeout = 1)",
	    h_now_ms() - t0);
	closed_ms = h_now_ms() - t0;
	close(fd);
	ck_assert_msg(closed_ms >= 900 && closed_ms <= 2500, "the stalled "
	    "handshake was closed after %" PRId64 " ms, expected about 1000",
	    closed_ms);
	ck_assert_msg(during >= 5, "only %d round-trips during the stall",
	    during);
	H_LOG_EXPECT(&d, line, tag, "CLOSE_REASON=handshake-timeout ",
	    ": handshake refused: handshake timeout LISTENER=echo ",
	    "REASON_DETAIL=\"no complete handshake within 1.0 s\" ");
	roundtrip_ok(&s, "after");
	h_tls_close(&s);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* lifecycle                                                                 */
/* ------------------------------------------------------------------------- */

START_TEST(test_sigterm_leaves_no_process_behind)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_daemon d;
	struct h_tls c;
	pid_t w[8], left[8];
	int n, i, st, nleft;

	H_DAEMON_UP(&d, "noleft", "workers = 2; shutdown_timeout = 2;", NULL);
	n = h_daemon_workers(&d, w, 8, 2, 2000);
	ck_assert_msg(n == 2, "%d workers, configured 2", n);
	connect_ok(&c, &d, &o);
	roundtrip_ok(&c, "before SIGTERM");
	h_tls_close(&c);
	st = h_daemon_stop(&d, 10000);
	ck_assert_msg(st == 0, "master exit status %d (%s)", st, d.err);
	/* Gone, not even a zombie: the master reaped them before exiting. */
	for (i = 0; i < n; i++) {
		char state = '?';
		pid_t pp = h_proc_ppid(w[i], &state);

		ck_assert_msg(h_pid_gone(w[i]), "worker %ld still exists after "
		    "the master exited (state %c, parent %ld%s)", (long)w[i],
		    state, (long)pp, pp == getpid() ? ": orphaned to the test" :
		    "");
	}
	nleft = h_children_of(d.pid, left, 8);
	ck_assert_msg(nleft == 0, "%d process(es) still have the master as "
	    "parent", nleft);
	/* We are the subreaper: anything orphaned would be our child now. */
	nleft = h_children_of(getpid(), left, 8);
	ck_assert_msg(nleft == 0, "%d orphan(s) re-parented to the test, "
	    "first pid %ld", nleft, (long)left[0]);
	h_daemon_kill(&d);
}
END_TEST

START_TEST(test_sigterm_closes_idle_session_at_shutdown_timeout)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_daemon d;
	struct h_tls c;
	char line[4096];
	int64_t t0, t_end, t_exit;
	int r, st;

	H_DAEMON_UP(&d, "drain", "workers = 1; shutdown_timeout = 1;", NULL);
	connect_ok(&c, &d, &o);
	roundtrip_ok(&c, "before SIGTERM");
	t0 = h_now_ms();
	ck_assert(h_daemon_signal(&d, SIGTERM) == 0);
	H_LOG_EXPECT(&d, line, "stopping (shutdown): 1 connection(s) get up "
	    "to 1.0 s");
	/* Draining: a live session keeps working until the timeout. */
	roundtrip_ok(&c, "while draining");
	r = h_tls_wait_eof(&c, 5000);
	t_end = h_now_ms() - t0;
	ck_assert_msg(r == 0 || r == 2, "the session was not ended by the "
	    "shutdown: %s", c.err);
	st = h_daemon_wait_exit(&d, 5000);
	t_exit = h_now_ms() - t0;
	ck_assert_msg(st == 0, "exit status %d", st);
	ck_assert_msg(t_end >= 900, "session ended %" PRId64 " ms after "
	    "SIGTERM, before shutdown_timeout = 1", t_end);
	ck_assert_msg(t_exit <= 2500, "daemon exited %" PRId64 " ms after "
	    "SIGTERM; shutdown_timeout = 1", t_exit);
	H_LOG_EXPECT(&d, line, c.peer_tag,
	    ": connection closed: server shutting down LISTENER=echo ",
	    "CLOSE_REASON=shutdown ");
	fprintf(stderr, "drain: session ended at %" PRId64 " ms (%s), exit at "
	    "%" PRId64 " ms\n", t_end, r == 0 ? "close_notify" : "plain EOF",
	    t_exit);
	h_tls_close(&c);
	h_daemon_kill(&d);
}
END_TEST

START_TEST(test_notify_ready_from_master_then_stopping_on_sigterm)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	const struct h_notify_msg *ready, *stopping;
	struct h_daemon d;
	struct h_tls c;
	const char *status;
	int i, st;

	H_DAEMON_UP(&d, "notify", "workers = 2;", NULL);
	ready = h_notify_wait(&d, "READY=1", 0);
	ck_assert_msg(ready != NULL, "no READY=1");
	ck_assert_msg(ready->pid == d.pid, "READY=1 came from pid %ld, the "
	    "master is %ld", (long)ready->pid, (long)d.pid);
	status = strstr(ready->text, "STATUS=");
	ck_assert_msg(status != NULL && status[7] != '\0' && status[7] != '\n',
	    "READY=1 without a STATUS= text: \"%s\"", ready->text);
	/* Ready means ready: a client is served at once. */
	connect_ok(&c, &d, &o);
	roundtrip_ok(&c, "right after READY=1");
	h_tls_close(&c);
	ck_assert(h_daemon_signal(&d, SIGTERM) == 0);
	stopping = h_notify_wait(&d, "STOPPING=1", 5000);
	ck_assert_msg(stopping != NULL, "no STOPPING=1 after SIGTERM");
	ck_assert_msg(stopping > ready, "STOPPING=1 before READY=1");
	ck_assert_msg(stopping->pid == d.pid, "STOPPING=1 came from pid %ld, "
	    "the master is %ld", (long)stopping->pid, (long)d.pid);
	st = h_daemon_wait_exit(&d, 10000);
	ck_assert_msg(st == 0, "exit status %d", st);
	(void)h_notify_wait(&d, "no such message", 0);
	for (i = 0; i < d.nnotify; i++)
		ck_assert_msg(d.notify[i].pid == d.pid, "notify message \"%s\" "
		    "from pid %ld, not the master", d.notify[i].text,
		    (long)d.notify[i].pid);
	h_daemon_kill(&d);
}
END_TEST

START_TEST(test_runs_without_notify_socket)
{
	struct h_daemon_opts o = { .label = "nonotify", .activation = true,
	    .no_notify = true, .globals = "workers = 1;" };
	struct h_tls_opts co = h_client_opts("client", 0);
	struct h_daemon d;
	struct h_tls c;

	/* Ready is known from the "ready:" log line instead. */
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "%s", d.err);
	connect_ok(&c, &d, &co);
	roundtrip_ok(&c, "without NOTIFY_SOCKET");
	h_tls_close(&c);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * Run "openssl s_client" (with client.crt or without a certificate) bound
 * to a known local port, so its log lines can be found (${tag} gets its
 * PEER_ADDR), send ${send}, collect its stdout into ${out} until ${until}
 * (NULL: until it exits), close its stdin; returns its exit status.
 */
static int
s_client(const struct h_daemon *d, bool with_cert, const char *send,
    char *out, size_t outlen, const char *until, char *tag, size_t taglen)
{
	char connect[64], local[64];
	const char *errlog = h_tmp(with_cert ? "s_client.err" :
	    "s_client-nocert.err");
	const char *cert = h_pki("client.crt"), *key = h_pki("client.key");
	const char *ca = h_pki("ca.crt");
	const char *argv[24];
	int n = 0, to, from, st, bport = h_free_port();
	pid_t pid;

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", d->port);
	snprintf(local, sizeof(local), "127.0.0.1:%d", bport);
	snprintf(tag, taglen, "PEER_ADDR=127.0.0.1:%d ", bport);
	argv[n++] = "openssl";
	argv[n++] = "s_client";
	argv[n++] = "-connect";
	argv[n++] = connect;
	argv[n++] = "-bind";
	argv[n++] = local;
	if (with_cert) {
		argv[n++] = "-cert";
		argv[n++] = cert;
		argv[n++] = "-key";
		argv[n++] = key;
	}
	argv[n++] = "-CAfile";
	argv[n++] = ca;
	argv[n++] = "-verify_return_error";
	argv[n++] = "-verify_hostname";
	argv[n++] = "localhost";
	argv[n++] = "-quiet";
	argv[n++] = "-no_ign_eof"; /* after -quiet, which turns ign_eof on */
	argv[n] = NULL;
	pid = h_spawn(argv, &to, &from, errlog);
	ck_assert_msg(pid > 0, "cannot start openssl s_client");
	/* Without a certificate s_client may be gone already: EPIPE is fine. */
	ck_assert_msg(h_fd_write_all(to, send, strlen(send), IO_MS) == 0 ||
	    !with_cert, "cannot write to s_client: %s", strerror(errno));
	(void)h_fd_read_until(from, out, outlen, until, IO_MS);
	close(to); /* EOF on stdin: s_client sends close_notify and exits */
	st = h_wait_pid(pid, IO_MS);
	close(from);
	return st;
}

START_TEST(test_openssl_s_client_gets_its_line_echoed)
{
	static const char msg[] = "hello from openssl s_client\n";
	struct h_daemon d;
	char out[256], tag[48], line[4096];
	int st;

	H_DAEMON_UP(&d, "s_client", "workers = 1;", NULL);
	st = s_client(&d, true, msg, out, sizeof(out), "\n", tag, sizeof(tag));
	ck_assert_msg(strcmp(out, msg) == 0, "s_client printed \"%s\", sent "
	    "\"%s\" (see %s)", out, msg, h_tmp("s_client.err"));
	ck_assert_msg(st == 0, "s_client exit status %d", st);
	H_LOG_EXPECT(&d, line, tag, "connection closed:",
	    "CLOSE_REASON=client-closed ", "BYTES_IN=28 ", "BYTES_OUT=28 ");
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_openssl_s_client_without_cert_is_refused)
{
	static const char msg[] = "let me in\n";
	struct h_daemon d;
	char out[256], tag[48], line[4096];
	int st;

	H_DAEMON_UP(&d, "s_client-nocert", "workers = 1;", NULL);
	st = s_client(&d, false, msg, out, sizeof(out), NULL, tag,
	    sizeof(tag));
	ck_assert_msg(strstr(out, "let me in") == NULL, "s_client without a "
	    "certificate got its line echoed");
	ck_assert_msg(st != 0, "s_client without a certificate exited 0");
	H_LOG_EXPECT(&d, line, tag, "CLOSE_REASON=no-client-cert ",
	    ": handshake refused: no client certificate LISTENER=echo ");
	H_DAEMON_DOWN(&d);
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
daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc;

	tc = tcase(s, "echo", 60);
	tcase_add_loop_test(tc, test_echo_returns_bytes_intact_and_logs_byte_counts,
	    0, 6);
	tcase_add_test(tc, test_daemon_binds_its_own_listener_without_socket_activation);
	tcase_add_test(tc, test_activation_matches_fd_by_address_when_name_differs);
	tcase_add_test(tc, test_banner_is_sent_after_handshake_before_echo);

	tc = tcase(s, "load", 60);
	tcase_add_test(tc, test_200_concurrent_clients_all_get_their_own_echo);
	tcase_add_test(tc, test_backpressure_stops_reading_bounds_memory_and_serves_others);
	tcase_add_test(tc, test_workers_draw_distinct_server_randoms);
	tcase_add_test(tc, test_streaming_client_does_not_starve_others_on_its_worker);

	tc = tcase(s, "refusals", 30);
	tcase_add_loop_test(tc, test_refuses_client_without_certificate, 0, 2);
	tcase_add_loop_test(tc, test_refuses_cert_from_other_ca_with_same_name_as_bad_signature,
	    0, 2);
	tcase_add_loop_test(tc, test_refuses_expired_client_cert, 0, 2);
	tcase_add_loop_test(tc, test_refuses_not_yet_valid_client_cert, 0, 2);
	tcase_add_loop_test(tc, test_refuses_client_cert_with_corrupted_signature,
	    0, 2);
	tcase_add_loop_test(tc, test_refuses_cert_from_unknown_ca, 0, 2);
	tcase_add_loop_test(tc, test_tls12_refused_client_is_told_why_by_an_alert,
	    0, 5);
	tcase_add_test(tc, test_refuses_tls11_client_as_protocol_version);
	tcase_add_test(tc, test_json_log_lines_parse_and_escape_any_name);
	tcase_add_test(tc, test_refuses_cbc_only_tls12_client_as_no_shared_cipher);
	tcase_add_test(tc, test_plaintext_is_closed_as_not_tls_while_session_keeps_echoing);
	tcase_add_test(tc, test_truncated_client_hello_times_out_while_session_keeps_echoing);

	tc = tcase(s, "lifecycle", 30);
	tcase_add_test(tc, test_sigterm_leaves_no_process_behind);
	tcase_add_test(tc, test_sigterm_closes_idle_session_at_shutdown_timeout);
	tcase_add_test(tc, test_notify_ready_from_master_then_stopping_on_sigterm);
	tcase_add_test(tc, test_runs_without_notify_socket);
	tcase_add_test(tc, test_openssl_s_client_gets_its_line_echoed);
	tcase_add_test(tc, test_openssl_s_client_without_cert_is_refused);
	return s;
}

int
main(void)
{
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_daemon: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(daemon_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
