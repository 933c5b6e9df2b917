/*
 * check_hostile: the real tls-echod against hostile peers and load.
 *
 * Slowloris, a client that never reads, garbage and malformed TLS, a
 * ClientHello stuffed to the record limit, fd exhaustion of a worker,
 * thousands of idle mTLS connections on one worker, a mixed-traffic soak
 * with reloads, and a junk flood whose refusals are logged one by one only
 * up to log_refusals_per_second (the rest counted in summaries, none
 * lost).  Every test asserts that nobody else's service suffered and
 * that no worker died, and prints what it measured on stderr ("hostile:"
 * lines).  Sizes and durations are short for `make check`; `make soak` runs
 * the long forms through these environment variables:
 *
 *   HOSTILE_IDLE_CONNS   idle mTLS connections on one worker (1000)
 *   HOSTILE_IDLE_TLS     their versions: "1.2", "1.3" or "mix" (mix)
 *   HOSTILE_SLOW_CONNS   silent slowloris connections (500)
 *   SOAK_SECONDS         mixed-traffic soak length (8)
 *   SOAK_RELOAD_SECONDS  SIGHUP period during the soak (3)
 *   TEST_SANITIZED=1     skip the memory bounds (ASan build, valgrind)
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define IO_MS 10000 /* bound for one client operation */

/* What a worker death looks like in the master's log (src/master.c). */
#define WORKER_DIED "; restarting in "

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
sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
	    .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Positive integer from the environment, or ${def}. */
static long
env_num(const char *name, long def)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL || v[0] == '\0')
		return def;
	n = strtol(v, &end, 10);
	return *end == '\0' && n > 0 ? n : def;
}

static bool
sanitized(void)
{
	const char *v = getenv("TEST_SANITIZED");

	return v != NULL && strcmp(v, "1") == 0;
}

/* The one worker of ${d}, or fail. */
static pid_t
one_worker(const struct h_daemon *d)
{
	pid_t w[4];
	int n = h_daemon_workers(d, w, 4, 1, 5000);

	ck_assert_msg(n == 1, "%d workers, want 1", n);
	return w[0];
}

/* A fresh mTLS client must get its echo within ${limit_ms}; returns ms. */
static int64_t
served_within(const struct h_daemon *d, int limit_ms, const char *when)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	char msg[128], tail[1500];
	struct h_tls c;
	int64_t t0 = h_now_ms(), took;

	o.timeout_ms = limit_ms;
	ck_assert_msg(h_tls_connect(&c, d->port, &o) == 0, "%s: a normal "
	    "client could not connect: %s; log ends:\n%s", when, c.err,
	    h_log_tail(d, tail, sizeof(tail)));
	snprintf(msg, sizeof(msg), "normal client %s on %s\n", when,
	    c.peer_tag);
	ck_assert_msg(h_tls_roundtrip(&c, msg, strlen(msg), limit_ms) == 0,
	    "%s: a normal client got no echo: %s", when, c.err);
	took = h_now_ms() - t0;
	h_tls_close(&c);
	ck_assert_msg(took < limit_ms, "%s: a normal client took %lld ms "
	    "(limit %d ms)", when, (long long)took, limit_ms);
	/* Gone from the daemon too, so fd counts taken next don't see it. */
	ck_assert_msg(h_log_wait(d, H_LOG_MS, NULL, 0, c.peer_tag,
	    ": connection closed: ", NULL) == 0, "%s: no close line for the "
	    "normal client %s", when, c.peer_tag);
	sleep_ms(10);
	return took;
}

/* No worker died: same worker pids as ${before}, no respawn logged. */
static void
assert_workers_intact(const struct h_daemon *d, const pid_t *before, int n,
    const char *when)
{
	pid_t now[8];
	int m = h_children_of(d->pid, now, 8), i, j;
	char tail[1500];

	ck_assert_msg(h_log_count(d, WORKER_DIED, NULL) == 0, "%s: a worker "
	    "died; log ends:\n%s", when, h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(m == n, "%s: %d workers, were %d", when, m, n);
	for (i = 0; i < n; i++) {
		for (j = 0; j < m && now[j] != before[i]; j++)
			;
		ck_assert_msg(j < m, "%s: worker %ld is gone (respawned?)",
		    when, (long)before[i]);
	}
}

/* recv() once without blocking: 1 if the peer closed (EOF, reset). */
static int
peer_closed_now(int fd)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n == 0)
			return 1;
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		return 1; /* ECONNRESET and friends */
	}
}

/*
 * Take the master's queued notify datagrams, as systemd would.  A test that
 * runs long must call this now and then: the master refreshes STATUS= while
 * connections come and go, and once the queue is full
 * (net.unix.max_dgram_qlen, often 10) its sd_notify blocks, and so does it.
 */
static void
notify_drain(struct h_daemon *d)
{
	(void)h_notify_wait(d, "\x01", 0);
}

/*
 * The refusal records of ${d}'s log so far, for reason ${token}: beyond
 * log_refusals_per_second (per listener, reason and worker) they are
 * counted, and a summary line says how many (SUPPRESSED=).
 */
struct refusal_count {
	long full;        /* "handshake refused:" lines of the reason */
	long suppressed;  /* the sum of its summaries' SUPPRESSED= */
	long summaries;   /* its summary lines */
	long other;       /* refusals and summaries of other reasons */
	long last_summary_at; /* line number of the last summary, 0: none */
	long stopping_at; /* line number of the first "stopping" line */
};

static void
count_refusals(const struct h_daemon *d, const char *token,
    struct refusal_count *rc)
{
	FILE *fp = fopen(d->log_path, "r");
	char want[64], *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long no = 0;

	memset(rc, 0, sizeof(*rc));
	ck_assert_msg(fp != NULL, "%s: %s", d->log_path, strerror(errno));
	snprintf(want, sizeof(want), "CLOSE_REASON=%s ", token);
	while ((len = getline(&line, &cap, fp)) > 0) {
		const char *sup;

		if (line[len - 1] != '\n')
			break; /* being written: the next count sees it */
		line[len - 1] = ' '; /* "KEY=value " matches at the end too */
		no++;
		if (rc->stopping_at == 0 && strstr(line, ") stopping (") != NULL)
			rc->stopping_at = no;
		sup = strstr(line, " SUPPRESSED=");
		if (sup == NULL && strstr(line, ": handshake refused: ") == NULL)
			continue;
		if (strstr(line, want) == NULL)
			rc->other++;
		else if (sup == NULL)
			rc->full++;
		else {
			rc->summaries++;
			rc->suppressed += strtol(sup + 12, NULL, 10);
			rc->last_summary_at = no;
		}
	}
	free(line);
	fclose(fp);
}

/* ------------------------------------------------------------------------- */
/* 1. slowloris                                                              */
/* ------------------------------------------------------------------------- */

#define SLOW_HS_MS 2000   /* handshake_timeout = 2 */
#define SLOW_DRIBBLERS 20 /* connections sending one byte per DRIBBLE_MS */
#define DRIBBLE_MS 300
#define SLOW_SLACK_MS 1500 /* tick (250 ms) and scheduling */
#define SLOW_PROBE_MAX_MS 1000

struct slow_conn {
	int fd;
	bool dribbler;
	size_t sent;        /* bytes of the ClientHello sent so far */
	int64_t opened_ms;
	int64_t closed_ms;  /* 0: still open */
};

START_TEST(test_slowloris_connections_close_at_handshake_timeout_others_served)
{
	int nsilent = (int)env_num("HOSTILE_SLOW_CONNS", 500);
	int n = nsilent + SLOW_DRIBBLERS, i, open_n, probes = 0;
	struct slow_conn *s = calloc((size_t)n, sizeof(*s));
	struct h_tls_opts ho = h_client_opts("client", 0);
	unsigned char hello[2048];
	size_t hello_len = h_client_hello(hello, sizeof(hello), &ho);
	int64_t t_open, t_end, next_dribble, worst_probe = 0;
	int64_t min_life = INT64_MAX, max_life = 0;
	struct refusal_count rc;
	struct h_daemon d;
	int64_t deadline;
	pid_t w;

	ck_assert(s != NULL);
	ck_assert_msg(hello_len > 100, "no ClientHello captured");
	H_DAEMON_UP(&d, "slowloris", "workers = 1; handshake_timeout = 2; "
	    "max_connections = 20000;", NULL);
	w = one_worker(&d);

	t_open = h_now_ms();
	for (i = 0; i < n; i++) {
		s[i].fd = h_tcp_connect(d.port, 5000);
		ck_assert_msg(s[i].fd >= 0, "connection %d of %d: %s", i, n,
		    strerror(errno));
		s[i].dribbler = i >= nsilent;
		s[i].opened_ms = h_now_ms();
	}
	fprintf(stderr, "hostile: slowloris: %d silent + %d dribbling "
	    "connections opened in %lld ms\n", nsilent, SLOW_DRIBBLERS,
	    (long long)(h_now_ms() - t_open));

	/*
	 * Until every stalled connection is gone: dribble, probe with a
	 * normal client, and note when each connection sees its end.
	 */
	t_end = s[n - 1].opened_ms + SLOW_HS_MS + SLOW_SLACK_MS;
	next_dribble = h_now_ms();
	open_n = n;
	while (open_n > 0 && h_now_ms() < t_end) {
		int64_t now = h_now_ms();

		if (now >= next_dribble) {
			for (i = nsilent; i < n; i++) {
				if (s[i].closed_ms != 0 ||
				    s[i].sent >= hello_len - 1)
					continue;
				if (send(s[i].fd, hello + s[i].sent, 1,
				    MSG_NOSIGNAL) == 1)
					s[i].sent++;
			}
			next_dribble = now + DRIBBLE_MS;
		}
		/* The normal client's turn, while the stalled ones hold on. */
		if (open_n > n / 2) {
			int64_t took = served_within(&d, SLOW_PROBE_MAX_MS,
			    "beside slowloris connections");

			if (took > worst_probe)
				worst_probe = took;
			probes++;
		}
		for (i = 0; i < n; i++) {
			if (s[i].closed_ms != 0 || !peer_closed_now(s[i].fd))
				continue;
			s[i].closed_ms = h_now_ms();
			open_n--;
		}
		notify_drain(&d);
		sleep_ms(20);
	}
	for (i = 0; i < n; i++) {
		int64_t life;

		ck_assert_msg(s[i].closed_ms != 0, "%s connection %d (of %d) "
		    "still open %lld ms after it was opened, handshake_timeout "
		    "is %d ms", s[i].dribbler ? "dribbling" : "silent", i, n,
		    (long long)(h_now_ms() - s[i].opened_ms), SLOW_HS_MS);
		life = s[i].closed_ms - s[i].opened_ms;
		if (life < min_life)
			min_life = life;
		if (life > max_life)
			max_life = life;
		close(s[i].fd);
	}
	fprintf(stderr, "hostile: slowloris: all %d closed %lld..%lld ms "
	    "after opening (handshake_timeout %d ms); %d normal clients "
	    "served beside them, slowest %lld ms\n", n, (long long)min_life,
	    (long long)max_life, SLOW_HS_MS, probes, (long long)worst_probe);
	ck_assert_msg(min_life >= SLOW_HS_MS - 300, "a stalled connection "
	    "was closed after %lld ms, before handshake_timeout (%d ms)",
	    (long long)min_life, SLOW_HS_MS);
	ck_assert_msg(probes >= 3, "only %d normal clients ran meanwhile",
	    probes);
	/* One by one up to log_refusals_per_second, the rest in summaries
	 * (within a second and a tick). */
	deadline = h_now_ms() + H_LOG_MS;
	do {
		count_refusals(&d, "handshake-timeout", &rc);
		sleep_ms(100);
	} while (rc.full + rc.suppressed < n && h_now_ms() < deadline);
	sleep_ms(1500);
	count_refusals(&d, "handshake-timeout", &rc);
	ck_assert_msg(rc.full + rc.suppressed == n && rc.other == 0, "%ld "
	    "handshake-timeouts logged (%ld in full, %ld in %ld summaries) "
	    "and %ld other refusals for %d stalled connections",
	    rc.full + rc.suppressed, rc.full, rc.suppressed, rc.summaries,
	    rc.other, n);
	ck_assert_int_eq(h_log_count(&d, ": handshake refused: handshake "
	    "timeout ", "CLOSE_REASON=handshake-timeout ",
	    "REASON_DETAIL=\"no complete handshake within 2.0 s\"", NULL),
	    rc.full);
	served_within(&d, SLOW_PROBE_MAX_MS, "after the slowloris");
	assert_workers_intact(&d, &w, 1, "after the slowloris");
	H_DAEMON_DOWN(&d);
	free(s);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 2. a client that never reads                                              */
/* ------------------------------------------------------------------------- */

#define NR_TOTAL (8 * MiB)
#define NR_RSS_GROWTH_MAX_KB (8L * 1024)
#define NR_IDLE_S 2

/*
 * Loop 0: the never-reader is left alone, and idle_timeout (2 s) ends it;
 * loop 1: it goes away without a word (close with unread data: a reset).
 * Either way the worker's memory stays flat, another client is served at
 * once, and the worker's fds return to what they were.
 */
START_TEST(test_never_reading_client_bounded_memory_others_served_cleaned_up)
{
	struct h_tls_opts so = h_client_opts("client", 0);
	unsigned char *data = malloc(NR_TOTAL);
	struct h_daemon_opts dopts = { .label = "never-reads",
	    .globals = _i == 0 ? "workers = 1; idle_timeout = 2;" :
	    "workers = 1;", .activation = true,
	    .listen_sndbuf = 64 * KiB, .listen_rcvbuf = 64 * KiB };
	char line[4096], tail[1500];
	long base_rss, rss;
	int base_fds, fds, r;
	size_t woff = 0;
	struct h_daemon d;
	struct h_tls slow;
	int64_t t_connect, t_stall, t_gone;
	pid_t w;

	ck_assert(data != NULL);
	h_fill_pattern(data, NR_TOTAL, 0x9e7e4u);
	ck_assert_msg(h_daemon_start(&d, &dopts) == 0, "%s", d.err);
	w = one_worker(&d);
	served_within(&d, 1000, "before the never-reader"); /* warm up */
	base_rss = h_proc_rss_kb(w);
	base_fds = h_proc_fd_count(w);
	ck_assert(base_rss > 0 && base_fds > 0);

	so.sndbuf = so.rcvbuf = 64 * KiB;
	t_connect = h_now_ms();
	ck_assert_msg(h_tls_connect(&slow, d.port, &so) == 0, "%s", slow.err);
	r = h_tls_write_until_blocked(&slow, data, NR_TOTAL, &woff, 500,
	    15000);
	ck_assert_msg(r == 0, "a client that never reads wrote %zu of %u "
	    "bytes without blocking (%s): the daemon did not stop reading",
	    woff, NR_TOTAL, r < 0 ? slow.err : "all written");
	t_stall = h_now_ms();
	rss = h_proc_rss_kb(w);
	fprintf(stderr, "hostile: never-reader: blocked after %zu bytes; "
	    "worker VmRSS %ld -> %ld KiB\n", woff, base_rss, rss);
	ck_assert_msg(rss > 0 && rss - base_rss < NR_RSS_GROWTH_MAX_KB,
	    "worker VmRSS grew from %ld to %ld KiB for one never-reading "
	    "client", base_rss, rss);
	served_within(&d, 1000, "beside a never-reader");

	if (_i == 0) {
		/* idle_timeout: no byte moved for 2 s. */
		H_LOG_EXPECT(&d, line, slow.peer_tag, ": connection closed: "
		    "idle for 2.0 s ", "CLOSE_REASON=idle-timeout ");
		ck_assert_msg(h_fd_wait_closed(slow.fd, 2000 + 2000) == 0,
		    "the daemon logged the idle timeout but the socket is "
		    "still open");
		t_gone = h_now_ms();
		fprintf(stderr, "hostile: never-reader: closed %lld ms after "
		    "its writes blocked (idle_timeout %d s)\n",
		    (long long)(t_gone - t_stall), NR_IDLE_S);
		/*
		 * Not before idle_timeout: the daemon's last read came after
		 * the client connected, so the close cannot come sooner than
		 * idle_timeout after that.  (Measured from the client's stall
		 * it can: the kernel buffers took the client's last writes
		 * after the daemon had stopped reading, by up to a second on
		 * a loaded machine with OpenSSL 3.5.)
		 */
		ck_assert_msg(t_gone - t_connect >= NR_IDLE_S * 1000,
		    "closed %lld ms after the connect, before idle_timeout",
		    (long long)(t_gone - t_connect));
		h_tls_close(&slow);
	} else {
		/* Vanish: close with unread data, the daemon sees a reset. */
		h_tls_close(&slow);
		H_LOG_EXPECT(&d, line, slow.peer_tag, ": connection closed: ");
		fprintf(stderr, "hostile: never-reader vanished: %s\n",
		    strstr(line, "CLOSE_REASON=") ? strstr(line,
		    "CLOSE_REASON=") : line);
	}
	ck_assert_int_eq(h_log_count(&d, slow.peer_tag, NULL), 1);
	/* Cleaned up: the worker holds the fds it held before. */
	for (r = 0; r < 100 && (fds = h_proc_fd_count(w)) != base_fds; r++)
		sleep_ms(20);
	ck_assert_msg(fds == base_fds, "worker has %d fds, had %d before the "
	    "never-reader; log ends:\n%s", fds, base_fds, h_log_tail(&d, tail,
	    sizeof(tail)));
	served_within(&d, 1000, "after the never-reader");
	assert_workers_intact(&d, &w, 1, "after the never-reader");
	H_DAEMON_DOWN(&d);
	free(data);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 3. garbage                                                                */
/* ------------------------------------------------------------------------- */

#define GARBAGE_HS_S 3 /* handshake_timeout: a refusal must come sooner */

struct garbage {
	const char *name;
	unsigned char bytes[4200];
	size_t len;
	bool shut_after;     /* send FIN after the bytes */
	const char *expect;  /* CLOSE_REASON wanted; NULL: any refusal */
	/* results */
	int fd;
	char tag[48];
	int64_t closed_after_ms; /* -1: not closed in time */
};

static void
garbage_set(struct garbage *g, const char *name, const void *b, size_t len,
    bool shut_after, const char *expect)
{
	ck_assert(len <= sizeof(g->bytes));
	g->name = name;
	memcpy(g->bytes, b, len);
	g->len = len;
	g->shut_after = shut_after;
	g->expect = expect;
}

START_TEST(test_garbage_is_refused_and_logged_without_crash)
{
	static const unsigned char oversized[] = { 0x16, 0x03, 0x01, 0xff,
	    0xff };
	static const unsigned char zero_rec[] = { 0x16, 0x03, 0x01, 0x00,
	    0x00 };
	static const unsigned char zero_body[] = { 0x16, 0x03, 0x01, 0x00,
	    0x04, 0x01, 0x00, 0x00, 0x00 };
	static const unsigned char sslv2[] = { 0x80, 0x2e, 0x01, 0x00, 0x02,
	    0x00, 0x15, 0x00, 0x00, 0x00, 0x10, 0x07, 0x00, 0xc0, 0x05, 0x00,
	    0x80, 0x03, 0x00, 0x80, 0x01, 0x00, 0x80, 0x06, 0x00, 0x40, 0x04,
	    0x00, 0x80, 0x02, 0x00, 0x80, 0x9c, 0x2f, 0x5d, 0x6a, 0x10, 0x42,
	    0x77, 0x31, 0xe8, 0x1c, 0x0a, 0x5f, 0x3d, 0x2b, 0x61, 0x94 };
	static const unsigned char alert_first[] = { 0x15, 0x03, 0x03, 0x00,
	    0x02, 0x02, 0x28 };
	static const unsigned char appdata_first[] = { 0x17, 0x03, 0x03, 0x00,
	    0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	struct h_tls_opts ho = h_client_opts("client", 0);
	unsigned char hello[2048], buf[4200];
	size_t hello_len = h_client_hello(hello, sizeof(hello), &ho);
	struct garbage *g = calloc(16, sizeof(*g));
	struct h_daemon d;
	char line[4096], tail[1500];
	int ng = 0, i, nnotify;
	int64_t t0;
	pid_t w[2];

	ck_assert(g != NULL && hello_len > 100);
	h_fill_pattern(buf, 4096, 0x6a7b0001u);
	buf[0] = 0x42; /* pinned: the seed's first byte decides the token */
	garbage_set(&g[ng++], "4 KiB of random bytes", buf, 4096, false,
	    "not-tls");
	h_fill_pattern(buf, 4096, 0x6a7b0002u);
	buf[0] = 0x16;
	garbage_set(&g[ng++], "0x16 then random bytes", buf, 4096, false,
	    NULL);
	memcpy(buf, oversized, sizeof(oversized));
	memset(buf + sizeof(oversized), 0x41, 4000);
	garbage_set(&g[ng++], "record header claiming 0xFFFF bytes", buf,
	    sizeof(oversized) + 4000, false, NULL);
	/* A record header promising 512 bytes, 100 of them, then FIN. */
	memcpy(buf, hello, 100);
	buf[3] = 0x02;
	buf[4] = 0x00;
	garbage_set(&g[ng++], "truncated record, then close", buf, 100, true,
	    "peer-closed");
	garbage_set(&g[ng++], "half a real ClientHello, then close", hello,
	    hello_len / 2, true, "peer-closed");
	garbage_set(&g[ng++], "handshake record of length 0", zero_rec,
	    sizeof(zero_rec), false, NULL);
	garbage_set(&g[ng++], "ClientHello with a zero-length body",
	    zero_body, sizeof(zero_body), false, NULL);
	garbage_set(&g[ng++], "SSLv2-format hello", sslv2, sizeof(sslv2),
	    false, "protocol-version");
	garbage_set(&g[ng++], "HTTP GET", http, sizeof(http) - 1, false,
	    "not-tls");
	garbage_set(&g[ng++], "alert before any hello", alert_first,
	    sizeof(alert_first), false, NULL);
	garbage_set(&g[ng++], "application data before any hello",
	    appdata_first, sizeof(appdata_first), false, NULL);

	H_DAEMON_UP(&d, "garbage", "workers = 2; handshake_timeout = 3;",
	    NULL);
	ck_assert_int_eq(h_daemon_workers(&d, w, 2, 2, 5000), 2);
	(void)h_notify_wait(&d, "READY=1", 0);
	nnotify = d.nnotify;

	t0 = h_now_ms();
	for (i = 0; i < ng; i++) {
		g[i].fd = h_tcp_connect(d.port, 5000);
		ck_assert_msg(g[i].fd >= 0, "%s: connect: %s", g[i].name,
		    strerror(errno));
		h_peer_tag(g[i].fd, g[i].tag, sizeof(g[i].tag));
		/* The daemon may close early: a short write is fine. */
		(void)h_fd_write_all(g[i].fd, g[i].bytes, g[i].len, 2000);
		if (g[i].shut_after)
			(void)shutdown(g[i].fd, SHUT_WR);
	}
	for (i = 0; i < ng; i++) {
		int left = (int)(t0 + GARBAGE_HS_S * 1000 + 2500 - h_now_ms());

		g[i].closed_after_ms = h_fd_wait_closed(g[i].fd, left > 0 ?
		    left : 0) == 0 ? h_now_ms() - t0 : -1;
	}
	for (i = 0; i < ng; i++) {
		const char *reason;
		char want[64];

		ck_assert_msg(g[i].closed_after_ms >= 0, "%s: the daemon did "
		    "not close the connection within handshake_timeout + "
		    "2.5 s", g[i].name);
		ck_assert_msg(h_log_wait(&d, H_LOG_MS, line, sizeof(line),
		    g[i].tag, ": handshake refused: ", "CLOSE_REASON=",
		    NULL) == 0, "%s: no refusal logged for %s; log ends:\n%s",
		    g[i].name, g[i].tag, h_log_tail(&d, tail, sizeof(tail)));
		reason = strstr(line, "CLOSE_REASON=");
		fprintf(stderr, "hostile: garbage: %-36s closed after %4lld ms;"
		    " %.*s\n", g[i].name, (long long)g[i].closed_after_ms,
		    (int)strcspn(reason, " "), reason);
		if (g[i].expect != NULL) {
			snprintf(want, sizeof(want), "CLOSE_REASON=%s ",
			    g[i].expect);
			ck_assert_msg(h_log_count(&d, g[i].tag, want,
			    NULL) == 1, "%s: want %s, logged: %s", g[i].name,
			    want, line);
		}
		ck_assert_int_eq(h_log_count(&d, g[i].tag, NULL), 1);
		close(g[i].fd);
	}
	served_within(&d, 1000, "after the garbage");
	assert_workers_intact(&d, w, 2, "after the garbage");
	/* Nothing but STATUS= refreshes of generation 1 (connection counts). */
	notify_drain(&d);
	for (i = nnotify; i < d.nnotify; i++)
		ck_assert_msg(strncmp(d.notify[i].text, "STATUS=generation 1: ",
		    21) == 0 && strchr(d.notify[i].text, '\n') == NULL,
		    "the master sent \"%s\" meanwhile", d.notify[i].text);
	H_DAEMON_DOWN(&d);
	free(g);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 4. a ClientHello stuffed with unknown extensions                          */
/* ------------------------------------------------------------------------- */

#define TLS_MAX_PLAINTEXT 16384

struct wbuf {
	unsigned char *p;
	size_t len, cap;
};

static void
put(struct wbuf *b, const void *d, size_t n)
{
	ck_assert(b->len + n <= b->cap);
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void
put8(struct wbuf *b, unsigned v)
{
	unsigned char c = (unsigned char)v;

	put(b, &c, 1);
}

static void
put16(struct wbuf *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v & 0xff);
}

static void
put24(struct wbuf *b, size_t v)
{
	put8(b, (unsigned)(v >> 16) & 0xff);
	put16(b, (unsigned)v & 0xffff);
}

/* Back-patch a big-endian length of ${bytes} bytes at ${at}. */
static void
patch_len(struct wbuf *b, size_t at, size_t bytes, size_t v)
{
	size_t i;

	for (i = 0; i < bytes; i++)
		b->p[at + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

/*
 * A ClientHello handshake message (header included) offering TLS 1.3 and
 * 1.2: TLS_AES_128_GCM_SHA256, ECDHE-ECDSA/RSA-AES128-GCM-SHA256, X25519
 * and P-256, an X25519 key share, then unknown extensions (types 0xfa00
 * up) until the message is ${total} bytes long (0: none).  Returns its
 * length.
 */
static size_t
build_client_hello(unsigned char *out, size_t cap, size_t total)
{
	struct wbuf b = { .p = out, .cap = cap };
	unsigned char rnd[32];
	size_t body_at, ext_at;
	unsigned type = 0xfa00;

	put8(&b, 1);            /* client_hello */
	body_at = b.len;
	put24(&b, 0);
	put16(&b, 0x0303);      /* legacy_version */
	h_fill_pattern(rnd, 32, 0xc1e0u);
	put(&b, rnd, 32);       /* random */
	put8(&b, 32);           /* legacy_session_id */
	h_fill_pattern(rnd, 32, 0x5e55u);
	put(&b, rnd, 32);
	put16(&b, 6);           /* cipher_suites */
	put16(&b, 0x1301);
	put16(&b, 0xc02b);
	put16(&b, 0xc02f);
	put8(&b, 1);            /* compression: null */
	put8(&b, 0);
	ext_at = b.len;
	put16(&b, 0);
	put16(&b, 0x002b);      /* supported_versions */
	put16(&b, 5);
	put8(&b, 4);
	put16(&b, 0x0304);
	put16(&b, 0x0303);
	put16(&b, 0x000a);      /* supported_groups */
	put16(&b, 6);
	put16(&b, 4);
	put16(&b, 0x001d);
	put16(&b, 0x0017);
	put16(&b, 0x000b);      /* ec_point_formats: uncompressed */
	put16(&b, 2);
	put8(&b, 1);
	put8(&b, 0);
	put16(&b, 0x000d);      /* signature_algorithms */
	put16(&b, 10);
	put16(&b, 8);
	put16(&b, 0x0403);      /* ecdsa_secp256r1_sha256 */
	put16(&b, 0x0804);      /* rsa_pss_rsae_sha256 */
	put16(&b, 0x0401);      /* rsa_pkcs1_sha256 */
	put16(&b, 0x0503);      /* ecdsa_secp384r1_sha384 */
	put16(&b, 0x0033);      /* key_share: X25519 (any 32 bytes do) */
	put16(&b, 2 + 4 + 32);
	put16(&b, 4 + 32);
	put16(&b, 0x001d);
	put16(&b, 32);
	h_fill_pattern(rnd, 32, 0x25519u);
	put(&b, rnd, 32);
	while (total > 0 && b.len + 4 <= total) {
		size_t n = total - b.len - 4;

		if (n > 1000)
			n = 1000;
		put16(&b, type++);
		put16(&b, (unsigned)n);
		memset(b.p + b.len, 0xa5, n);
		ck_assert(b.len + n <= b.cap);
		b.len += n;
	}
	ck_assert_msg(total == 0 || b.len == total, "ClientHello of %zu "
	    "bytes, wanted %zu", b.len, total);
	patch_len(&b, ext_at, 2, b.len - ext_at - 2);
	patch_len(&b, body_at, 3, b.len - body_at - 3);
	return b.len;
}

/* ${msg} as handshake records of at most ${rec_max} bytes each. */
static size_t
frame_records(const unsigned char *msg, size_t len, size_t rec_max,
    unsigned char *out, size_t cap)
{
	struct wbuf b = { .p = out, .cap = cap };
	size_t off = 0;

	while (off < len) {
		size_t n = len - off < rec_max ? len - off : rec_max;

		put8(&b, 0x16);
		put16(&b, 0x0301);
		put16(&b, (unsigned)n);
		put(&b, msg + off, n);
		off += n;
	}
	return b.len;
}

struct stuffed {
	const char *name;
	size_t total;    /* handshake message length (0: plain) */
	size_t rec_max;  /* record payload limit */
	bool must_serve; /* a plain, legal hello: ServerHello required */
};

static const struct stuffed stuffed[] = {
	{ "plain ClientHello (the builder works)", 0, TLS_MAX_PLAINTEXT,
	    true },
	{ "16384-byte ClientHello in one record", TLS_MAX_PLAINTEXT,
	    TLS_MAX_PLAINTEXT, false },
	{ "16384-byte ClientHello over 5 records", TLS_MAX_PLAINTEXT, 4000,
	    false },
	{ "16896-byte record (over the limit)", TLS_MAX_PLAINTEXT + 512,
	    TLS_MAX_PLAINTEXT + 512, false },
	{ "40000-byte ClientHello over 3 records", 40000, TLS_MAX_PLAINTEXT,
	    false },
};

/*
 * What came back for a hand-made hello: the server's first record, read
 * until it is there, the connection ends, or 3 s pass.
 */
static const char *
first_answer(int fd)
{
	unsigned char buf[8];
	size_t got = 0;
	int64_t deadline = h_now_ms() + 3000;

	while (got < sizeof(buf) && h_now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		(void)poll(&p, 1, 50);
		n = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
	}
	if (got >= 6 && buf[0] == 0x16 && buf[5] == 0x02)
		return "ServerHello";
	if (got >= 1 && buf[0] == 0x15)
		return "alert";
	if (got == 0)
		return h_now_ms() < deadline ? "closed" : "nothing";
	return "other bytes";
}

START_TEST(test_client_hello_stuffed_with_unknown_extensions_is_handled)
{
	size_t cap = 64 * KiB, mlen, rlen;
	unsigned char *msg = malloc(cap), *rec = malloc(cap + 64 * 5);
	struct h_daemon d;
	char line[4096], tag[48], tail[1500];
	const char *answer, *reason;
	size_t k;
	pid_t w[2];
	int fd;

	ck_assert(msg != NULL && rec != NULL);
	H_DAEMON_UP(&d, "stuffed", "workers = 2; handshake_timeout = 3;",
	    NULL);
	ck_assert_int_eq(h_daemon_workers(&d, w, 2, 2, 5000), 2);
	for (k = 0; k < sizeof(stuffed) / sizeof(stuffed[0]); k++) {
		const struct stuffed *v = &stuffed[k];

		mlen = build_client_hello(msg, cap, v->total);
		rlen = frame_records(msg, mlen, v->rec_max, rec,
		    cap + 64 * 5);
		fd = h_tcp_connect(d.port, 5000);
		ck_assert_msg(fd >= 0, "connect: %s", strerror(errno));
		h_peer_tag(fd, tag, sizeof(tag));
		(void)h_fd_write_all(fd, rec, rlen, 3000);
		answer = first_answer(fd);
		close(fd);
		ck_assert_msg(h_log_wait(&d, 3000 + H_LOG_MS, line,
		    sizeof(line), tag, ": handshake refused: ", NULL) == 0,
		    "%s: no log line for %s; log ends:\n%s", v->name, tag,
		    h_log_tail(&d, tail, sizeof(tail)));
		reason = strstr(line, "CLOSE_REASON=");
		ck_assert(reason != NULL);
		fprintf(stderr, "hostile: stuffed: %-40s -> %s; %.*s\n",
		    v->name, answer, (int)strcspn(reason, " "), reason);
		ck_assert_msg(strcmp(answer, "nothing") != 0, "%s: no answer "
		    "and no close within 3 s: %s", v->name, line);
		if (v->must_serve)
			ck_assert_msg(strcmp(answer, "ServerHello") == 0,
			    "%s: got %s, not a ServerHello: %s", v->name,
			    answer, line);
		/* Refused on the spot, never left to time out. */
		ck_assert_msg(strstr(line, "CLOSE_REASON=handshake-timeout ")
		    == NULL, "%s: the daemon waited for the timeout: %s",
		    v->name, line);
	}
	served_within(&d, 1000, "after the stuffed hellos");
	assert_workers_intact(&d, w, 2, "after the stuffed hellos");
	H_DAEMON_DOWN(&d);
	free(msg);
	free(rec);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 5. fd exhaustion                                                          */
/* ------------------------------------------------------------------------- */

#define FD_ROOM 16       /* fds the worker may still open */
#define FD_FLOOD 48      /* connections we open: more than FD_ROOM */
#define FD_EXHAUST_MS 3500
#define EMFILE_LINE "listener echo: cannot accept: Too many open files; " \
	"pausing accepts for "

/* The first id of the "Uid:" or "Gid:" line of /proc/${pid}/status, or -1. */
static long
proc_id(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long id = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, klen) == 0) {
			id = strtol(line + klen, NULL, 10);
			break;
		}
	fclose(f);
	return id;
}

/*
 * prlimit(${pid}, ${res}, ${rl}) from a child that takes ${pid}'s user and
 * group first: workers run unprivileged (the default under root), and
 * changing another user's limits takes CAP_SYS_RESOURCE, which root in a
 * container may lack; the owner may always lower them.  0, or an errno.
 */
static int
prlimit_as_owner(pid_t pid, int res, const struct rlimit *rl)
{
	long uid = proc_id(pid, "Uid:"), gid = proc_id(pid, "Gid:");
	pid_t c;
	int st;

	if (uid < 0 || gid < 0)
		return ESRCH;
	if ((c = fork()) < 0)
		return errno;
	if (c == 0) {
		if ((uid != (long)geteuid() || gid != (long)getegid()) &&
		    (setgroups(0, NULL) != 0 ||
		    setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0 ||
		    setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0))
			_exit(errno & 0x7f);
		_exit(prlimit(pid, (enum __rlimit_resource)res, rl, NULL) == 0 ?
		    0 : errno & 0x7f);
	}
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st))
		return ECHILD;
	return WEXITSTATUS(st);
}

START_TEST(test_fd_exhaustion_pauses_accepts_logs_once_per_second_recovers)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	int fds[FD_FLOOD], base, i, lines, lines_max, nfd;
	struct rlimit rl;
	struct h_daemon d;
	struct h_tls live, probe;
	char line[4096], tail[1500];
	int64_t t_first, t_end, t_freed, took = -1;
	pid_t w;

	H_DAEMON_UP(&d, "emfile", "workers = 1; handshake_timeout = 30;",
	    NULL);
	w = one_worker(&d);
	/* A session made before: it must keep working throughout. */
	ck_assert_msg(h_tls_connect(&live, d.port, &o) == 0, "%s", live.err);
	ck_assert_msg(h_tls_roundtrip(&live, "before\n", 7, IO_MS) == 0, "%s",
	    live.err);
	base = h_proc_fd_count(w);
	ck_assert(base > 0);
	rl.rlim_cur = rl.rlim_max = (rlim_t)(base + FD_ROOM);
	i = prlimit_as_owner(w, RLIMIT_NOFILE, &rl);
	ck_assert_msg(i == 0, "prlimit on worker %ld: %s", (long)w,
	    strerror(i));

	for (i = 0; i < FD_FLOOD; i++) {
		fds[i] = h_tcp_connect(d.port, 5000);
		ck_assert_msg(fds[i] >= 0, "connection %d: %s", i,
		    strerror(errno));
	}
	H_LOG_EXPECT(&d, line, EMFILE_LINE);
	t_first = h_now_ms();
	nfd = h_proc_fd_count(w);
	fprintf(stderr, "hostile: emfile: worker holds %d fds, RLIMIT_NOFILE "
	    "%d\n", nfd, base + FD_ROOM);
	/* No new client gets in; the live one is still served. */
	o.timeout_ms = 1000;
	ck_assert_msg(h_tls_connect(&probe, d.port, &o) != 0, "a new client "
	    "was served with the worker out of fds");
	h_tls_close(&probe);
	ck_assert_msg(h_tls_roundtrip(&live, "during\n", 7, IO_MS) == 0,
	    "the live session stopped echoing while accepts failed: %s",
	    live.err);
	sleep_ms((int)(FD_EXHAUST_MS - (h_now_ms() - t_first)));
	/* The limit still holds: the daemon kept trying, at most 1/s. */
	t_end = h_now_ms();
	lines = h_log_count(&d, EMFILE_LINE, NULL);
	lines_max = (int)((t_end - t_first + 250) / 1000) + 1;
	fprintf(stderr, "hostile: emfile: %d \"cannot accept\" line(s) in "
	    "%lld ms of exhaustion\n", lines, (long long)(t_end - t_first));
	ck_assert_msg(lines <= lines_max, "%d \"cannot accept\" lines in %lld "
	    "ms: more than one per second", lines,
	    (long long)(t_end - t_first));
	ck_assert_msg(lines >= 2, "only %d \"cannot accept\" line in %lld ms: "
	    "the daemon stopped retrying", lines, (long long)(t_end -
	    t_first));

	for (i = 0; i < FD_FLOOD; i++)
		close(fds[i]);
	t_freed = h_now_ms();
	o.timeout_ms = 2000;
	while (h_now_ms() - t_freed < 5000) {
		if (h_tls_connect(&probe, d.port, &o) == 0 &&
		    h_tls_roundtrip(&probe, "after\n", 6, 2000) == 0) {
			took = h_now_ms() - t_freed;
			h_tls_close(&probe);
			break;
		}
		h_tls_close(&probe);
	}
	fprintf(stderr, "hostile: emfile: a new client served %lld ms after "
	    "the fds were freed\n", (long long)took);
	ck_assert_msg(took >= 0 && took < 3000, "no new client served within "
	    "5 s after fds were freed (took %lld); log ends:\n%s",
	    (long long)took, h_log_tail(&d, tail, sizeof(tail)));
	ck_assert_msg(h_tls_roundtrip(&live, "after\n", 6, IO_MS) == 0, "%s",
	    live.err);
	h_tls_close(&live);
	assert_workers_intact(&d, &w, 1, "after fd exhaustion");
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 6. many idle mTLS connections on one worker                               */
/* ------------------------------------------------------------------------- */

#define IDLE_WINDOW 64          /* handshakes in flight at once */
#define IDLE_KIB_TLS12_MAX 40.0
#define IDLE_KIB_TLS13_MAX 48.0
#define IDLE_HOLD_MS 1000

static SSL_CTX *
idle_ctx(int version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	ck_assert(ctx != NULL);
	ck_assert(SSL_CTX_set_min_proto_version(ctx, version) == 1 &&
	    SSL_CTX_set_max_proto_version(ctx, version) == 1);
	ck_assert(SSL_CTX_load_verify_locations(ctx, h_pki("ca.crt"),
	    NULL) == 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ck_assert(SSL_CTX_use_certificate_chain_file(ctx,
	    h_pki("client.crt")) == 1);
	ck_assert(SSL_CTX_use_PrivateKey_file(ctx, h_pki("client.key"),
	    SSL_FILETYPE_PEM) == 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

/*
 * Establish ${n} mTLS sessions in ${c} (TLS 1.3 and 1.2 alternating), at
 * most IDLE_WINDOW handshakes at a time, multiplexed with poll.  Each
 * h_tls borrows its SSL_CTX (c->ctx stays NULL: h_tls_close frees only
 * what it owns).  Returns how many succeeded; the first failure in ${err}.
 */
static int
idle_connect_all(struct h_tls *c, int n, struct h_daemon *d, SSL_CTX *ctx[2],
    char *err, size_t errlen, int timeout_ms)
{
	int win[IDLE_WINDOW], nwin = 0, started = 0, ok = 0, i;
	short want[IDLE_WINDOW];
	struct pollfd p[IDLE_WINDOW];
	int64_t deadline = h_now_ms() + timeout_ms;

	err[0] = '\0';
	while ((started < n || nwin > 0) && h_now_ms() < deadline) {
		while (nwin < IDLE_WINDOW && started < n) {
			struct h_tls *t = &c[started];

			memset(t, 0, sizeof(*t));
			t->fd = h_tcp_connect(d->port, 5000);
			if (t->fd < 0 || (t->ssl = SSL_new(ctx[started %
			    2])) == NULL || !SSL_set_fd(t->ssl, t->fd)) {
				snprintf(err, errlen, "connection %d: set-up: "
				    "%s", started, strerror(errno));
				return ok;
			}
			h_peer_tag(t->fd, t->peer_tag, sizeof(t->peer_tag));
			SSL_set_connect_state(t->ssl);
			want[nwin] = POLLOUT;
			win[nwin++] = started++;
		}
		for (i = 0; i < nwin; i++)
			p[i] = (struct pollfd){ .fd = c[win[i]].fd,
			    .events = want[i] };
		notify_drain(d);
		if (poll(p, (nfds_t)nwin, 100) < 0 && errno != EINTR)
			break;
		for (i = 0; i < nwin; i++) {
			struct h_tls *t = &c[win[i]];
			int r, e;

			if (p[i].revents == 0)
				continue;
			ERR_clear_error();
			r = SSL_do_handshake(t->ssl);
			if (r == 1) {
				ok++;
			} else {
				e = SSL_get_error(t->ssl, r);
				if (e == SSL_ERROR_WANT_READ ||
				    e == SSL_ERROR_WANT_WRITE) {
					want[i] = e == SSL_ERROR_WANT_READ ?
					    POLLIN : POLLOUT;
					continue;
				}
				if (err[0] == '\0')
					snprintf(err, errlen, "connection %d: "
					    "handshake: SSL error %d: %s",
					    win[i], e, ERR_error_string(
					    ERR_get_error(), NULL));
			}
			/* Done with it (either way): leave the window. */
			win[i] = win[nwin - 1];
			want[i] = want[nwin - 1];
			p[i] = p[nwin - 1];
			nwin--;
			i--;
		}
	}
	if (ok < n && err[0] == '\0')
		snprintf(err, errlen, "%d of %d handshakes after %d ms", ok, n,
		    timeout_ms);
	return ok;
}

START_TEST(test_many_idle_mtls_connections_held_on_one_worker)
{
	int n = (int)env_num("HOSTILE_IDLE_CONNS", 1000), ok, i, v13 = 0;
	int timeout_ms = 20000 + n * 10;
	struct h_tls *c = calloc((size_t)n, sizeof(*c));
	const char *vs = getenv("HOSTILE_IDLE_TLS");
	SSL_CTX *ctx[2] = {
		idle_ctx(vs != NULL && strcmp(vs, "1.2") == 0 ?
		    TLS1_2_VERSION : TLS1_3_VERSION),
		idle_ctx(vs != NULL && strcmp(vs, "1.3") == 0 ?
		    TLS1_3_VERSION : TLS1_2_VERSION),
	};
	char err[512], msg[96], globals[160], tail[1500];
	long base_rss, rss, held_rss;
	int base_fds, fds;
	double per_conn;
	struct h_daemon d;
	int64_t t0, t_hs;
	pid_t w;

	ck_assert(c != NULL);
	for (i = 0; i < n; i++)
		c[i].fd = -1; /* h_tls_close() on one never started */
	snprintf(globals, sizeof(globals), "workers = 1; max_connections = "
	    "%d;", n + 100);
	H_DAEMON_UP(&d, "idle", globals, NULL);
	w = one_worker(&d);
	served_within(&d, 1000, "before the idle connections"); /* warm up */
	base_rss = h_proc_rss_kb(w);
	base_fds = h_proc_fd_count(w);

	t0 = h_now_ms();
	ok = idle_connect_all(c, n, &d, ctx, err, sizeof(err), timeout_ms);
	t_hs = h_now_ms() - t0;
	ck_assert_msg(ok == n, "%d of %d mTLS connections established: %s; "
	    "log ends:\n%s", ok, n, err, h_log_tail(&d, tail, sizeof(tail)));
	/* Every one echoes once: the server finished every handshake. */
	for (i = 0; i < n; i++) {
		snprintf(msg, sizeof(msg), "idle %d %s\n", i, c[i].peer_tag);
		ck_assert_msg(h_tls_roundtrip(&c[i], msg, strlen(msg),
		    IO_MS) == 0, "connection %d (%s): %s", i,
		    h_tls_version(&c[i]), c[i].err);
		v13 += strcmp(h_tls_version(&c[i]), "TLSv1.3") == 0;
		if (i % 256 == 0)
			notify_drain(&d);
	}
	rss = h_proc_rss_kb(w);
	fds = h_proc_fd_count(w);
	per_conn = (double)(rss - base_rss) / n;
	fprintf(stderr, "hostile: idle: %d mTLS connections (%d TLS 1.3, %d "
	    "TLS 1.2) on one worker, handshakes %lld ms (%.0f/s); worker "
	    "VmRSS %ld -> %ld KiB: %.1f KiB per idle connection; fds %d -> "
	    "%d\n", n, v13, n - v13, (long long)t_hs, n * 1000.0 /
	    (double)(t_hs > 0 ? t_hs : 1), base_rss, rss, per_conn, base_fds,
	    fds);
	ck_assert_msg(fds >= base_fds + n, "the worker holds %d fds, %d "
	    "before %d connections", fds, base_fds, n);

	/* Held: all still open after a while, a sample still echoes. */
	sleep_ms(IDLE_HOLD_MS);
	for (i = 0; i < n; i++)
		ck_assert_msg(h_fd_is_open(c[i].fd), "connection %d was closed "
		    "while idle", i);
	for (i = 0; i < n; i += n / 50 > 0 ? n / 50 : 1) {
		snprintf(msg, sizeof(msg), "still here %d\n", i);
		ck_assert_msg(h_tls_roundtrip(&c[i], msg, strlen(msg),
		    IO_MS) == 0, "connection %d after %d ms idle: %s", i,
		    IDLE_HOLD_MS, c[i].err);
	}
	held_rss = h_proc_rss_kb(w);
	served_within(&d, 1000, "beside the idle connections");
	/* The memory targets (bench/RESULTS.md): 40 KiB per TLS 1.2, 48 KiB
	 * per TLS 1.3 idle connection, weighted by the versions held. */
	if (!sanitized()) {
		double bound = (v13 * IDLE_KIB_TLS13_MAX + (n - v13) *
		    IDLE_KIB_TLS12_MAX) / (double)n;

		ck_assert_msg(per_conn < bound, "%.1f KiB per idle mTLS "
		    "connection (%d TLS 1.3, %d TLS 1.2: bound %.1f KiB)",
		    per_conn, v13, n - v13, bound);
	}
	notify_drain(&d);
	for (i = 0; i < n; i++)
		h_tls_close(&c[i]);
	/* All gone again: the worker's fds are back where they were. */
	for (i = 0; i < 250 && (fds = h_proc_fd_count(w)) != base_fds; i++) {
		notify_drain(&d);
		sleep_ms(20);
	}
	fprintf(stderr, "hostile: idle: after %d ms held VmRSS %ld KiB; all "
	    "closed: fds %d, VmRSS %ld KiB\n", IDLE_HOLD_MS, held_rss, fds,
	    h_proc_rss_kb(w));
	ck_assert_msg(fds == base_fds, "worker has %d fds after all %d closed, "
	    "%d before", fds, n, base_fds);
	assert_workers_intact(&d, &w, 1, "after the idle connections");
	H_DAEMON_DOWN(&d);
	SSL_CTX_free(ctx[0]);
	SSL_CTX_free(ctx[1]);
	free(c);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 7. mixed-traffic soak with reloads                                        */
/* ------------------------------------------------------------------------- */

#define SOAK_ECHOERS 3
#define SOAK_MAX_PAYLOAD (256 * KiB)
#define SOAK_RSS_GROWTH_MAX_KB (8L * 1024)
#define SOAK_WORKERS 2

struct soaker {
	const struct h_daemon *d;
	unsigned seed;
	bool churn;         /* short sessions: handshakes come and go */
	atomic_bool *stop;
	uint64_t sent, echoed, sessions, roundtrips;
	char err[H_ERR_MAX];
};

static unsigned
xorshift(unsigned *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *
soak_thread(void *arg)
{
	struct soaker *k = arg;
	unsigned char *data = malloc(SOAK_MAX_PAYLOAD);
	unsigned char *back = malloc(SOAK_MAX_PAYLOAD);

	if (data == NULL || back == NULL) {
		snprintf(k->err, sizeof(k->err), "out of memory");
		goto out;
	}
	while (!atomic_load(k->stop)) {
		struct h_tls_opts o = h_client_opts("client",
		    xorshift(&k->seed) % 2 ? TLS1_3_VERSION : TLS1_2_VERSION);
		unsigned rounds = k->churn ? 1 : 1 + xorshift(&k->seed) % 6, r;
		struct h_tls c;

		if (h_tls_connect(&c, k->d->port, &o) != 0) {
			snprintf(k->err, sizeof(k->err), "connect: %.900s",
			    c.err);
			h_tls_close(&c);
			goto out;
		}
		k->sessions++;
		for (r = 0; r < rounds; r++) {
			size_t len = k->churn ? 1 + xorshift(&k->seed) % 64 :
			    1 + xorshift(&k->seed) % SOAK_MAX_PAYLOAD;
			size_t woff = 0, roff = 0, diff;

			h_fill_pattern(data, len, xorshift(&k->seed));
			k->sent += len;
			if (h_tls_pump(&c, data, len, &woff, back, &roff,
			    IO_MS) != 0) {
				snprintf(k->err, sizeof(k->err), "%s: %zu of "
				    "%zu bytes echoed: %.900s", c.peer_tag,
				    roff, len, c.err);
				h_tls_close(&c);
				goto out;
			}
			diff = h_first_diff(data, back, len);
			if (diff != len) {
				snprintf(k->err, sizeof(k->err), "%s: echo "
				    "differs at byte %zu of %zu", c.peer_tag,
				    diff, len);
				h_tls_close(&c);
				goto out;
			}
			k->echoed += len;
			k->roundtrips++;
		}
		h_tls_close(&c);
	}
out:
	free(data);
	free(back);
	return NULL;
}

/* Sum of the fd counts and VmRSS of the master's current workers. */
static void
workers_measure(const struct h_daemon *d, int *fds, long *rss)
{
	pid_t w[8];
	int n = h_daemon_workers(d, w, 8, SOAK_WORKERS, 5000), i;

	ck_assert_msg(n == SOAK_WORKERS, "%d workers, want %d", n,
	    SOAK_WORKERS);
	*fds = 0;
	*rss = 0;
	for (i = 0; i < n; i++) {
		*fds += h_proc_fd_count(w[i]);
		*rss += h_proc_rss_kb(w[i]);
	}
}

START_TEST(test_soak_mixed_traffic_with_reloads_loses_nothing_leaks_nothing)
{
	long secs = env_num("SOAK_SECONDS", 8);
	long reload_s = env_num("SOAK_RELOAD_SECONDS", 3);
	struct soaker k[SOAK_ECHOERS + 1];
	pthread_t th[SOAK_ECHOERS + 1];
	atomic_bool stop;
	struct h_daemon d;
	char line[4096], gen[64], tail[1500], series[1024];
	int mfds0, mfds1, wfds0, wfds1, i, reloads = 0, nw;
	long mrss0, mrss1, wrss0, wrss1;
	uint64_t sent = 0, echoed = 0, sessions = 0, rts = 0;
	int64_t t0, next_reload;
	size_t soff = 0;
	pid_t w[8];

	snprintf(gen, sizeof(gen), "workers = %d; drain_timeout = 30;",
	    SOAK_WORKERS);
	H_DAEMON_UP(&d, "soak", gen, NULL);
	served_within(&d, 1000, "before the soak"); /* warm up */
	mfds0 = h_proc_fd_count(d.pid);
	mrss0 = h_proc_rss_kb(d.pid);
	workers_measure(&d, &wfds0, &wrss0);
	series[0] = '\0';

	atomic_init(&stop, false);
	memset(k, 0, sizeof(k));
	for (i = 0; i <= SOAK_ECHOERS; i++) {
		k[i].d = &d;
		k[i].seed = 0x50a4u + (unsigned)i * 7919u;
		k[i].churn = i == SOAK_ECHOERS;
		k[i].stop = &stop;
		ck_assert(pthread_create(&th[i], NULL, soak_thread,
		    &k[i]) == 0);
	}
	t0 = h_now_ms();
	next_reload = t0 + reload_s * 1000;
	while (h_now_ms() - t0 < secs * 1000) {
		if (h_now_ms() >= next_reload) {
			reloads++;
			ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
			snprintf(gen, sizeof(gen), ": reloaded: generation "
			    "%d ", reloads + 1);
			H_LOG_EXPECT(&d, line, gen);
			if (soff < sizeof(series) - 32)
				soff += (size_t)snprintf(series + soff,
				    sizeof(series) - soff, " %ld",
				    h_proc_rss_kb(d.pid));
			next_reload += reload_s * 1000;
		}
		notify_drain(&d);
		for (i = 0; i <= SOAK_ECHOERS; i++)
			if (k[i].err[0] != '\0')
				break;
		if (i <= SOAK_ECHOERS)
			break;
		sleep_ms(50);
	}
	atomic_store(&stop, true);
	for (i = 0; i <= SOAK_ECHOERS; i++) {
		pthread_join(th[i], NULL);
		sent += k[i].sent;
		echoed += k[i].echoed;
		sessions += k[i].sessions;
		rts += k[i].roundtrips;
	}
	for (i = 0; i <= SOAK_ECHOERS; i++)
		ck_assert_msg(k[i].err[0] == '\0', "%s client %d: %s; log "
		    "ends:\n%s", k[i].churn ? "churn" : "echo", i, k[i].err,
		    h_log_tail(&d, tail, sizeof(tail)));
	ck_assert_msg(reloads >= 1 || secs < reload_s, "no reload happened");
	/* Retired generations finish draining once their clients are gone. */
	for (i = 0; i < 500; i++) {
		nw = h_children_of(d.pid, w, 8);
		if (nw == SOAK_WORKERS)
			break;
		sleep_ms(20);
	}
	ck_assert_msg(nw == SOAK_WORKERS, "%d workers still there 10 s after "
	    "the soak, want %d", nw, SOAK_WORKERS);
	/* ... and the last sessions' closes are processed. */
	for (i = 0; i < 250; i++) {
		workers_measure(&d, &wfds1, &wrss1);
		if (wfds1 == wfds0)
			break;
		sleep_ms(20);
	}
	mfds1 = h_proc_fd_count(d.pid);
	mrss1 = h_proc_rss_kb(d.pid);
	fprintf(stderr, "hostile: soak: %lld s, %d reload(s), %" PRIu64
	    " sessions, %" PRIu64 " round-trips, %" PRIu64 " bytes sent, %"
	    PRIu64 " echoed intact, %" PRIu64 " lost\n", (long long)secs,
	    reloads, sessions, rts, sent, echoed, sent - echoed);
	fprintf(stderr, "hostile: soak: master fds %d -> %d, VmRSS %ld -> %ld "
	    "KiB (after each reload:%s); workers' fds %d -> %d, VmRSS %ld -> "
	    "%ld KiB\n", mfds0, mfds1, mrss0, mrss1, series, wfds0, wfds1,
	    wrss0, wrss1);
	ck_assert_msg(sent == echoed, "%" PRIu64 " bytes lost", sent - echoed);
	ck_assert_msg(mfds1 == mfds0, "the master holds %d fds, %d before the "
	    "soak", mfds1, mfds0);
	ck_assert_msg(wfds1 == wfds0, "the workers hold %d fds, %d before the "
	    "soak", wfds1, wfds0);
	/* ASan's quarantine and shadow memory grow by design. */
	if (!sanitized()) {
		ck_assert_msg(mrss1 - mrss0 < SOAK_RSS_GROWTH_MAX_KB, "master "
		    "VmRSS %ld -> %ld KiB", mrss0, mrss1);
		ck_assert_msg(wrss1 - wrss0 < SOAK_RSS_GROWTH_MAX_KB, "workers' "
		    "VmRSS %ld -> %ld KiB", wrss0, wrss1);
	}
	ck_assert_msg(h_log_count(&d, WORKER_DIED, NULL) == 0, "a worker died; "
	    "log ends:\n%s", h_log_tail(&d, tail, sizeof(tail)));
	ck_assert_int_eq(h_log_count(&d, "retired worker", NULL), 0);
	ck_assert_int_eq(h_log_count(&d, "reload failed", NULL), 0);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 8. a junk flood: refusals logged one by one up to a rate, the rest counted */
/* ------------------------------------------------------------------------- */

#define FLOOD_CONNS 3000
#define FLOOD_SPREAD_MS 3000
#define FLOOD_INFLIGHT 64     /* junk connections open at once */
#define FLOOD_CONN_MS 10000   /* bound for one junk connection */
#define FLOOD_PROBE_MS 500    /* a normal client this often meanwhile */
#define FLOOD_PROBE_LIMIT_MS 3000
#define FLOOD_LINES_MAX 300   /* "at most a few hundred lines" */

static const char junk_request[] = "GET / HTTP/1.0\r\n\r\n";

/* One plaintext client: connect, send junk_request, wait for the close. */
struct junk {
	int fd; /* -1: slot free */
	bool sent;
	int64_t deadline;
};

/*
 * What became of a flood's connections.  Only the daemon can close a
 * connection after our request (we wait for its end before closing ours):
 * those it saw.  A connection the kernel refused never reached it.
 */
struct flood {
	int seen;    /* request sent, then EOF: the daemon refused it */
	int unsure;  /* request sent (or not), then a reset or no end */
	int refused; /* connect failed: the daemon never saw it */
	int probes;  /* normal clients served meanwhile */
	int64_t took_ms;
};

enum { JUNK_BUSY, JUNK_SEEN, JUNK_UNSURE, JUNK_REFUSED };

static int
junk_open(struct junk *j, int port, int64_t now)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	j->sent = false;
	j->deadline = now + FLOOD_CONN_MS;
	j->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_msg(j->fd >= 0, "socket: %s", strerror(errno));
	if (connect(j->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
	    errno == EINPROGRESS)
		return 0;
	close(j->fd);
	j->fd = -1;
	return -1;
}

/* Advance ${j} after poll() said ${revents}: JUNK_BUSY or how it ended. */
static int
junk_step(struct junk *j, short revents, int64_t now)
{
	int r = JUNK_BUSY;

	if (!j->sent && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		int e = 0;
		socklen_t elen = sizeof(e);

		if (getsockopt(j->fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0 ||
		    e != 0)
			r = JUNK_REFUSED;
		else if (send(j->fd, junk_request, sizeof(junk_request) - 1,
		    MSG_NOSIGNAL) == (ssize_t)sizeof(junk_request) - 1)
			j->sent = true;
		else
			r = JUNK_UNSURE;
	} else if (j->sent && (revents & (POLLIN | POLLERR | POLLHUP))) {
		char buf[512];

		for (;;) {
			ssize_t n = recv(j->fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (n > 0)
				continue; /* an alert, if any: dropped */
			if (n == 0)
				r = JUNK_SEEN;
			else if (errno != EAGAIN && errno != EINTR)
				r = JUNK_UNSURE;
			break;
		}
	}
	if (r == JUNK_BUSY && now >= j->deadline)
		r = JUNK_UNSURE;
	if (r != JUNK_BUSY) {
		close(j->fd);
		j->fd = -1;
	}
	return r;
}

/*
 * ${n} plaintext junk connections to ${d}, started evenly over ${spread_ms}
 * (0: as fast as they go), at most FLOOD_INFLIGHT at once; every
 * ${probe_ms} (0: never) a normal mTLS client must be served meanwhile.
 */
static void
junk_flood(struct h_daemon *d, int n, int spread_ms, int probe_ms,
    struct flood *f)
{
	struct junk j[FLOOD_INFLIGHT];
	struct pollfd p[FLOOD_INFLIGHT];
	int started = 0, open_n = 0, k;
	int64_t t0 = h_now_ms(), next_probe = t0 + probe_ms;
	int64_t end = t0 + spread_ms + FLOOD_CONN_MS + 20000;

	memset(f, 0, sizeof(*f));
	memset(j, 0, sizeof(j));
	for (k = 0; k < FLOOD_INFLIGHT; k++)
		j[k].fd = -1;
	while ((started < n || open_n > 0) && h_now_ms() < end) {
		int64_t now = h_now_ms();

		for (k = 0; k < FLOOD_INFLIGHT && started < n; k++) {
			if (j[k].fd >= 0)
				continue;
			if (now < t0 + (int64_t)started * spread_ms / n)
				break;
			started++;
			if (junk_open(&j[k], d->port, now) == 0)
				open_n++;
			else
				f->refused++;
		}
		if (probe_ms > 0 && started < n && now >= next_probe) {
			served_within(d, FLOOD_PROBE_LIMIT_MS, "during the "
			    "junk flood");
			f->probes++;
			next_probe = h_now_ms() + probe_ms;
		}
		for (k = 0; k < FLOOD_INFLIGHT; k++) {
			p[k].fd = j[k].fd; /* poll() skips negative fds */
			p[k].events = j[k].sent ? POLLIN : POLLOUT;
			p[k].revents = 0;
		}
		(void)poll(p, FLOOD_INFLIGHT, 5);
		now = h_now_ms();
		for (k = 0; k < FLOOD_INFLIGHT; k++) {
			if (j[k].fd < 0)
				continue;
			switch (junk_step(&j[k], p[k].revents, now)) {
			case JUNK_SEEN:
				f->seen++;
				open_n--;
				break;
			case JUNK_UNSURE:
				f->unsure++;
				open_n--;
				break;
			case JUNK_REFUSED:
				f->refused++;
				open_n--;
				break;
			default:
				break;
			}
		}
		notify_drain(d);
	}
	f->took_ms = h_now_ms() - t0;
	for (k = 0; k < FLOOD_INFLIGHT; k++)
		if (j[k].fd >= 0)
			close(j[k].fd);
	ck_assert_msg(started == n && open_n == 0, "junk flood: %d of %d "
	    "started, %d still open after %lld ms", started, n, open_n,
	    (long long)f->took_ms);
}

/*
 * Everything the daemon saw is accounted for: logged one by one or counted
 * in a summary, exactly (a connection we are unsure of may or may not have
 * reached it).
 */
static void
assert_all_counted(const struct h_daemon *d, const struct flood *f,
    const struct refusal_count *rc, const char *when)
{
	char tail[1500];

	ck_assert_msg(rc->full + rc->suppressed >= f->seen &&
	    rc->full + rc->suppressed <= f->seen + f->unsure, "%s: %ld "
	    "not-tls refusals logged (%ld in full + %ld in %ld summaries) "
	    "for %d connections the daemon refused (and %d unsure); log "
	    "ends:\n%s", when, rc->full + rc->suppressed, rc->full,
	    rc->suppressed, rc->summaries, f->seen, f->unsure,
	    h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(rc->other == 0, "%s: %ld refusal records of another "
	    "reason", when, rc->other);
}

START_TEST(test_junk_flood_logs_a_few_hundred_lines_and_counts_every_refusal)
{
	struct refusal_count rc;
	struct h_daemon d;
	struct flood f;
	char line[4096];
	int64_t deadline;
	pid_t w[2];

	/* The default log_refusals_per_second (10), two workers. */
	H_DAEMON_UP(&d, "junk-flood", "workers = 2;", NULL);
	ck_assert_int_eq(h_daemon_workers(&d, w, 2, 2, 5000), 2);
	junk_flood(&d, FLOOD_CONNS, FLOOD_SPREAD_MS, FLOOD_PROBE_MS, &f);
	/* The last summaries come within a second and a tick (250 ms). */
	deadline = h_now_ms() + 5000;
	do {
		sleep_ms(100);
		notify_drain(&d);
		count_refusals(&d, "not-tls", &rc);
	} while (rc.full + rc.suppressed < f.seen && h_now_ms() < deadline);
	sleep_ms(1500); /* and nothing after them */
	notify_drain(&d);
	count_refusals(&d, "not-tls", &rc);
	fprintf(stderr, "hostile: junk flood: %d connections in %lld ms "
	    "(%d refused by the daemon, %d unsure, %d never connected), %d "
	    "normal clients served meanwhile; logged %ld refusals in full "
	    "and %ld in %ld summaries: %ld lines for %ld refusals\n",
	    FLOOD_CONNS, (long long)f.took_ms, f.seen, f.unsure, f.refused,
	    f.probes, rc.full, rc.suppressed, rc.summaries,
	    rc.full + rc.summaries, rc.full + rc.suppressed);
	ck_assert_msg(f.seen >= FLOOD_CONNS * 9 / 10, "only %d of %d junk "
	    "connections reached the daemon", f.seen, FLOOD_CONNS);
	assert_all_counted(&d, &f, &rc, "after the junk flood");
	ck_assert_msg(rc.full + rc.summaries <= FLOOD_LINES_MAX, "%ld "
	    "refusal lines for %d connections (limit %d)", rc.full +
	    rc.summaries, f.seen, FLOOD_LINES_MAX);
	ck_assert_msg(rc.summaries >= 2, "%ld summaries", rc.summaries);
	ck_assert_msg(f.probes >= 3, "only %d normal clients ran meanwhile",
	    f.probes);
	H_LOG_EXPECT(&d, line, ": warning: listener echo: ",
	    " more refusals (not-tls) in the last ",
	    " not logged one by one LISTENER=echo CLOSE_REASON=not-tls "
	    "SUPPRESSED=", " INTERVAL_MS=");
	served_within(&d, FLOOD_PROBE_LIMIT_MS, "after the junk flood");
	assert_workers_intact(&d, w, 2, "after the junk flood");
	H_DAEMON_DOWN(&d);
	/* Nothing was pending at stop: no summary more. */
	count_refusals(&d, "not-tls", &rc);
	assert_all_counted(&d, &f, &rc, "after the stop");
}
END_TEST

START_TEST(test_refusals_counted_at_stop_are_summarised_before_exit)
{
	struct refusal_count rc;
	struct h_daemon d;
	struct flood f;

	H_DAEMON_UP(&d, "junk-stop", "workers = 1; "
	    "log_refusals_per_second = 5;", NULL);
	(void)one_worker(&d);
	/* As fast as it goes: far less than a second, then stop at once. */
	junk_flood(&d, 200, 0, 0, &f);
	H_DAEMON_DOWN(&d);
	count_refusals(&d, "not-tls", &rc);
	fprintf(stderr, "hostile: junk then stop: %d connections in %lld ms "
	    "(%d refused by the daemon, %d unsure, %d never connected); "
	    "logged %ld in full and %ld in %ld summaries\n", 200,
	    (long long)f.took_ms, f.seen, f.unsure, f.refused, rc.full,
	    rc.suppressed, rc.summaries);
	ck_assert_int_ge(f.seen, 180);
	assert_all_counted(&d, &f, &rc, "after the stop");
	ck_assert_msg(rc.stopping_at > 0 && rc.last_summary_at >
	    rc.stopping_at, "no summary after the worker's stopping line "
	    "(line %ld; last summary at line %ld)", rc.stopping_at,
	    rc.last_summary_at);
}
END_TEST

/* ------------------------------------------------------------------------- */

static TCase *
tcase(Suite *s, const char *name, double timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *
hostile_suite(void)
{
	Suite *s = suite_create("hostile");
	TCase *tc;

	tc = tcase(s, "slowloris", 30 + (double)env_num("HOSTILE_SLOW_CONNS",
	    500) / 50);
	tcase_add_test(tc,
	    test_slowloris_connections_close_at_handshake_timeout_others_served);

	tc = tcase(s, "never-reads", 30);
	tcase_add_loop_test(tc,
	    test_never_reading_client_bounded_memory_others_served_cleaned_up,
	    0, 2);

	tc = tcase(s, "garbage", 30);
	tcase_add_test(tc, test_garbage_is_refused_and_logged_without_crash);
	tcase_add_test(tc,
	    test_client_hello_stuffed_with_unknown_extensions_is_handled);

	tc = tcase(s, "emfile", 30);
	tcase_add_test(tc,
	    test_fd_exhaustion_pauses_accepts_logs_once_per_second_recovers);

	tc = tcase(s, "idle", 40 + (double)env_num("HOSTILE_IDLE_CONNS",
	    1000) / 50);
	tcase_add_test(tc, test_many_idle_mtls_connections_held_on_one_worker);

	tc = tcase(s, "junk-flood", 60);
	tcase_add_test(tc,
	    test_junk_flood_logs_a_few_hundred_lines_and_counts_every_refusal);
	tcase_add_test(tc, test_refusals_counted_at_stop_are_summarised_before_exit);

	tc = tcase(s, "soak", 40 + (double)env_num("SOAK_SECONDS", 8));
	tcase_add_test(tc,
	    test_soak_mixed_traffic_with_reloads_loses_nothing_leaks_nothing);
	return s;
}

int
main(void)
{
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_hostile: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(hostile_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
