/*
 * loadgen: mutual-TLS load generator for tls-echod and its peers.
 *
 * One thread, one epoll loop, many non-blocking OpenSSL client connections
 * (OpenSSL so that the client is never the bottleneck: its handshake costs a
 * fraction of an mbedTLS server's).  The run script pins it to one CPU.
 *
 * Modes (every mode ends at --seconds or at its --count cap, whichever comes
 * first; see usage()):
 *   full     each connection: full mTLS handshake, one 64-byte echo round
 *            trip, close_notify, close; --conns in parallel; handshakes/s
 *   resume   the same with session tickets: every slot first makes one full
 *            handshake (not counted), then resumes with the newest ticket it
 *            got; resumed handshakes/s and the ratio really resumed
 *   latency  --conns established connections doing 64-byte echo round trips
 *            back to back; round trips/s and p50/p99/p999
 *   bulk     --conns connections writing 16 KiB blocks of a known pattern and
 *            reading the echo concurrently, verifying every byte; MB/s
 *   idle     open --conns connections (one echo round trip each), hold them;
 *            with --rss-pid, the RSS of that process and its descendants at
 *            --idle-base connections and at --conns gives the cost of one
 *   mixed    latency on --conns established connections while full
 *            handshakes arrive at --rate per second
 *
 * Results: one key=value per line on stdout (machine-readable); a readable
 * summary on stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define ECHO_LEN 64
#define BULK_BLOCK 16384
#define PATTERN_PERIOD 65521u /* prime: blocks never line up with it */
#define MAX_CONNS 60000
#define MAX_EVENTS 256
#define DEFAULT_COUNT_CAP 50000000ull
#define LAT_SAMPLES_CAP 20000000u
#define ABORT_ERRORS 1000 /* give up after this many failures with no success */

enum mode { M_FULL, M_RESUME, M_LATENCY, M_BULK, M_IDLE, M_MIXED };
static const char *const mode_names[] = { "full", "resume", "latency", "bulk",
	"idle", "mixed" };

enum st {
	ST_FREE,
	ST_HANDSHAKE,
	ST_WRITE,   /* sending the 64-byte probe */
	ST_READ,    /* waiting for its echo */
	ST_BULK,
	ST_IDLE,
};

/* What a connection does once its handshake is over. */
enum role {
	R_ONESHOT, /* one round trip then close (full, resume, mixed arrivals) */
	R_LOOP,    /* round trips until the end (latency, mixed) */
	R_BULK,
	R_HOLD,    /* one round trip then hold (idle) */
};

struct conn {
	int fd;
	SSL *ssl;
	enum st st;
	enum role role;
	int slot;           /* resume: index into sessions[] */
	bool counted;       /* resume: slot already has its first session */
	uint32_t events;    /* currently armed */
	size_t off;         /* bytes of the probe written / echo read */
	uint64_t t0;        /* handshake start or probe sent, ns */
	uint64_t wr, rd;    /* bulk: bytes written, bytes read and verified */
	unsigned char rbuf[ECHO_LEN];
};

struct opts {
	enum mode mode;
	const char *host, *port, *cert, *key, *ca, *cipher, *groups, *sni;
	int tls; /* 0 any, 12, 13 */
	bool psk_ke;
	bool no_tickets;
	int conns;
	double seconds;
	uint64_t count;
	double rate;
	int idle_base;
	int rss_pid;
	double hold;
};

static struct opts o = {
	.mode = M_FULL, .host = "127.0.0.1", .port = "8443", .sni = "localhost",
	.conns = 16, .seconds = 5, .count = DEFAULT_COUNT_CAP, .rate = 100,
	.rss_pid = 0, .hold = 0,
};

static SSL_CTX *ctx;
static int epfd;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static struct conn *conns;
static SSL_SESSION **sessions;
static unsigned char pattern[PATTERN_PERIOD + BULK_BLOCK];
static unsigned char probe[ECHO_LEN];
static volatile sig_atomic_t interrupted;

/* results */
static uint64_t n_hs, n_reused, n_err, n_err_hs, n_verify_fail, n_rt, n_dropped;
static uint64_t n_launched, n_primed;
static uint32_t *lat;
static size_t nlat, latcap;
static char neg_version[32], neg_cipher[64], neg_group[32];

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: loadgen MODE [options]\n"
	    "  MODE: full | resume | latency | bulk | idle | mixed\n"
	    "  --host H --port P        server (default 127.0.0.1:8443)\n"
	    "  --cert F --key F --ca F  client certificate, its key, the server's CA\n"
	    "  --sni NAME               server name sent (default localhost)\n"
	    "  --tls1.2 | --tls1.3      only this version (default: both offered)\n"
	    "  --cipher LIST            TLS 1.2 cipher list or TLS 1.3 suites\n"
	    "  --groups LIST            key exchange groups (e.g. X25519:P-256)\n"
	    "  --psk-ke                 TLS 1.3: also offer psk_ke resumption\n"
	    "  --no-tickets             do not ask for session tickets (full)\n"
	    "  --conns N                parallel connections (default 16)\n"
	    "  --seconds S              measuring time (default 5)\n"
	    "  --count N                cap: handshakes, round trips or bulk MiB\n"
	    "  --rate R                 mixed: full handshakes per second (default 100)\n"
	    "  --idle-base N            idle: first RSS reading at N connections (default 0)\n"
	    "  --rss-pid PID            idle: sum RSS over PID and its descendants\n"
	    "  --hold S                 idle: keep the connections S seconds after measuring\n");
}

/* --- RSS of a process tree ------------------------------------------------ */

static long
ppid_of(int pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	long ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
		(void)sscanf(p + 2, "%*c %ld", &ppid);
	fclose(f);
	return ppid;
}

static uint64_t
rss_of(int pid)
{
	char path[64];
	unsigned long size, res;
	FILE *f;
	uint64_t r = 0;

	snprintf(path, sizeof(path), "/proc/%d/statm", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) == 2)
		r = (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
	fclose(f);
	return r;
}

/* RSS of root and all its descendants, in bytes; *nprocs gets their count. */
static uint64_t
tree_rss(int root, int *nprocs)
{
	int pids[4096], parents[4096], n = 0, in[4096];
	DIR *d = opendir("/proc");
	struct dirent *e;
	uint64_t sum = 0;
	bool grew = true;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < 4096) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		pids[n] = (int)pid;
		parents[n] = (int)ppid_of((int)pid);
		in[n] = pid == root;
		n++;
	}
	closedir(d);
	while (grew) {
		grew = false;
		for (int i = 0; i < n; i++) {
			if (in[i])
				continue;
			for (int j = 0; j < n; j++)
				if (in[j] && parents[i] == pids[j]) {
					in[i] = 1;
					grew = true;
					break;
				}
		}
	}
	*nprocs = 0;
	for (int i = 0; i < n; i++)
		if (in[i]) {
			sum += rss_of(pids[i]);
			(*nprocs)++;
		}
	return sum;
}

/* --- connections ---------------------------------------------------------- */

static void
arm(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (ev == c->events)
		return;
	if (epoll_ctl(epfd, c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
	    c->fd, &e) != 0)
		die("epoll_ctl: %s", strerror(errno));
	c->events = ev;
}

static void
conn_close(struct conn *c, bool clean)
{
	if (c->ssl != NULL) {
		if (clean)
			(void)SSL_shutdown(c->ssl); /* close_notify, no wait */
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		if (c->events != 0)
			(void)epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->events = 0;
	c->st = ST_FREE;
}

static void
conn_fail(struct conn *c, const char *what)
{
	unsigned long e = ERR_peek_error();

	if (n_err < 5) {
		char buf[256] = "";
		if (e != 0)
			ERR_error_string_n(e, buf, sizeof(buf));
		fprintf(stderr, "loadgen: connection failed in %s: %s %s\n", what,
		    buf, errno != 0 ? strerror(errno) : "");
	}
	ERR_clear_error();
	n_err++;
	if (c->st == ST_HANDSHAKE)
		n_err_hs++;
	conn_close(c, false);
}

/* Start a new connection in slot c; false if it could not even start. */
static bool
conn_start(struct conn *c, enum role role)
{
	int fd, one = 1;

	fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		n_err++;
		return false;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&addr, addrlen) != 0 &&
	    errno != EINPROGRESS) {
		if (n_err < 5)
			fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
		close(fd);
		n_err++;
		return false;
	}
	c->fd = fd;
	c->events = 0;
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1)
		die("SSL_new");
	SSL_set_tlsext_host_name(c->ssl, o.sni);
	if (o.mode == M_RESUME && sessions[c->slot] != NULL)
		SSL_set_session(c->ssl, sessions[c->slot]);
	SSL_set_connect_state(c->ssl);
	c->st = ST_HANDSHAKE;
	c->role = role;
	c->off = 0;
	c->wr = c->rd = 0;
	c->t0 = now_ns();
	n_launched++;
	arm(c, EPOLLOUT);
	return true;
}

static void
lat_add(uint64_t ns)
{
	if (nlat == latcap) {
		if (latcap >= LAT_SAMPLES_CAP)
			return;
		latcap = latcap ? latcap * 2 : 65536;
		if ((lat = realloc(lat, latcap * sizeof(*lat))) == NULL)
			die("out of memory");
	}
	lat[nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static void
note_negotiated(SSL *ssl)
{
	if (neg_version[0] != '\0')
		return;
	snprintf(neg_version, sizeof(neg_version), "%s", SSL_get_version(ssl));
	snprintf(neg_cipher, sizeof(neg_cipher), "%s",
	    SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
	int g = SSL_get_negotiated_group(ssl);
	const char *gn = g != 0 ? SSL_group_to_name(ssl, g) : NULL;
	snprintf(neg_group, sizeof(neg_group), "%s", gn != NULL ? gn : "none");
}

/* Drive one connection as far as it goes without blocking. */
static void
conn_step(struct conn *c, bool measuring)
{
	int r, e;

	for (;;) {
		switch (c->st) {
		case ST_FREE:
			return;
		case ST_HANDSHAKE:
			ERR_clear_error();
			errno = 0;
			r = SSL_do_handshake(c->ssl);
			if (r != 1) {
				e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ) {
					arm(c, EPOLLIN);
					return;
				}
				if (e == SSL_ERROR_WANT_WRITE) {
					arm(c, EPOLLOUT);
					return;
				}
				conn_fail(c, "handshake");
				return;
			}
			note_negotiated(c->ssl);
			if (c->role == R_BULK) {
				c->st = ST_BULK;
				arm(c, EPOLLIN | EPOLLOUT);
				return;
			}
			c->st = ST_WRITE;
			c->off = 0;
			c->t0 = now_ns();
			break;
		case ST_WRITE:
			ERR_clear_error();
			r = SSL_write(c->ssl, probe, ECHO_LEN);
			if (r <= 0) {
				e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE) {
					arm(c, EPOLLOUT);
					return;
				}
				if (e == SSL_ERROR_WANT_READ) {
					arm(c, EPOLLIN);
					return;
				}
				conn_fail(c, "write");
				return;
			}
			c->st = ST_READ;
			c->off = 0;
			break;
		case ST_READ:
			ERR_clear_error();
			r = SSL_read(c->ssl, c->rbuf + c->off, (int)(ECHO_LEN - c->off));
			if (r <= 0) {
				e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ) {
					arm(c, EPOLLIN);
					return;
				}
				if (e == SSL_ERROR_WANT_WRITE) {
					arm(c, EPOLLOUT);
					return;
				}
				conn_fail(c, "read");
				return;
			}
			c->off += (size_t)r;
			if (c->off < ECHO_LEN)
				break;
			if (memcmp(c->rbuf, probe, ECHO_LEN) != 0) {
				n_verify_fail++;
				conn_fail(c, "echo verify");
				return;
			}
			if (c->role == R_LOOP) {
				if (measuring) {
					lat_add(now_ns() - c->t0);
					n_rt++;
				}
				c->st = ST_WRITE;
				c->t0 = now_ns();
				break;
			}
			if (c->role == R_HOLD) {
				c->st = ST_IDLE;
				n_hs++;
				arm(c, EPOLLIN);
				return;
			}
			/* R_ONESHOT */
			if (o.mode == M_RESUME) {
				SSL_SESSION *s = SSL_get1_session(c->ssl);
				if (s != NULL) {
					if (sessions[c->slot] != NULL)
						SSL_SESSION_free(sessions[c->slot]);
					sessions[c->slot] = s;
				}
				if (!c->counted) {
					c->counted = true; /* priming handshake */
					n_primed++;
					conn_close(c, true);
					return;
				}
			}
			if (measuring) {
				n_hs++;
				if (SSL_session_reused(c->ssl))
					n_reused++;
			}
			conn_close(c, true);
			return;
		case ST_IDLE: {
			char sink[256];
			ERR_clear_error();
			r = SSL_read(c->ssl, sink, sizeof(sink));
			if (r > 0)
				break; /* a late ticket or such: keep holding */
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				return;
			n_dropped++;
			conn_close(c, false);
			return;
		}
		case ST_BULK: {
			bool progress = false;
			/* read everything available, verifying it */
			for (;;) {
				unsigned char buf[BULK_BLOCK];
				ERR_clear_error();
				r = SSL_read(c->ssl, buf, sizeof(buf));
				if (r <= 0) {
					e = SSL_get_error(c->ssl, r);
					if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
						break;
					conn_fail(c, "bulk read");
					return;
				}
				if (memcmp(buf, pattern + c->rd % PATTERN_PERIOD,
				    (size_t)r) != 0) {
					n_verify_fail++;
					conn_fail(c, "bulk verify");
					return;
				}
				c->rd += (uint64_t)r;
				progress = true;
			}
			/* write while the socket takes it, keeping at most 256 KiB
			 * in flight so the echo path, not our buffers, is measured */
			while (c->wr - c->rd < 256u * 1024u) {
				ERR_clear_error();
				r = SSL_write(c->ssl, pattern + c->wr % PATTERN_PERIOD,
				    BULK_BLOCK);
				if (r <= 0) {
					e = SSL_get_error(c->ssl, r);
					if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
						break;
					conn_fail(c, "bulk write");
					return;
				}
				c->wr += (uint64_t)r;
				progress = true;
			}
			arm(c, c->wr - c->rd < 256u * 1024u ? EPOLLIN | EPOLLOUT :
			    EPOLLIN);
			if (!progress || SSL_pending(c->ssl) == 0)
				return;
			break;
		}
		}
	}
}

/* --- setup ---------------------------------------------------------------- */

static void
setup_ctx(void)
{
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, o.tls == 13 ? TLS1_3_VERSION :
	    TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, o.tls == 12 ? TLS1_2_VERSION :
	    TLS1_3_VERSION);
	if (o.cert != NULL &&
	    SSL_CTX_use_certificate_chain_file(ctx, o.cert) != 1)
		die("cannot load %s", o.cert);
	if (o.key != NULL &&
	    SSL_CTX_use_PrivateKey_file(ctx, o.key, SSL_FILETYPE_PEM) != 1)
		die("cannot load %s", o.key);
	if (o.ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, o.ca, NULL) != 1)
			die("cannot load %s", o.ca);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (o.cipher != NULL) {
		/* A TLS 1.3 suite name starts with TLS_. */
		if (strncmp(o.cipher, "TLS_", 4) == 0) {
			if (SSL_CTX_set_ciphersuites(ctx, o.cipher) != 1)
				die("bad TLS 1.3 suites %s", o.cipher);
		} else if (SSL_CTX_set_cipher_list(ctx, o.cipher) != 1)
			die("bad cipher list %s", o.cipher);
	}
	if (o.groups != NULL && SSL_CTX_set1_groups_list(ctx, o.groups) != 1)
		die("bad groups %s", o.groups);
	if (o.psk_ke)
		SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
	if (o.no_tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* sessions are kept per slot by hand, not in OpenSSL's cache */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
}

static void
resolve(void)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int r = getaddrinfo(o.host, o.port, &hints, &ai);

	if (r != 0)
		die("%s:%s: %s", o.host, o.port, gai_strerror(r));
	memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
	addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double
pct(double p)
{
	if (nlat == 0)
		return 0;
	size_t i = (size_t)(p * (double)(nlat - 1) + 0.5);
	return lat[i] / 1000.0; /* µs */
}

/* --- the event loop ------------------------------------------------------- */

static int
poll_once(int timeout_ms, bool measuring)
{
	struct epoll_event ev[MAX_EVENTS];
	int n = epoll_wait(epfd, ev, MAX_EVENTS, timeout_ms);

	if (n < 0 && errno != EINTR)
		die("epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++)
		conn_step(ev[i].data.ptr, measuring);
	return n < 0 ? 0 : n;
}

static bool
too_many_errors(void)
{
	return n_err >= ABORT_ERRORS && n_hs + n_rt + n_primed == 0;
}

/* Open every slot as a connection in this role and run until all of them
 * are past their first echo (or failed), at most max_s seconds. */
static int
establish(int first, int last, enum role role, double max_s)
{
	uint64_t end = now_ns() + (uint64_t)(max_s * 1e9);
	int inflight_cap = 64, next = first, done;

	for (;;) {
		int busy = 0;
		done = 0;
		for (int i = first; i < next; i++) {
			struct conn *c = &conns[i];
			if (c->st == ST_HANDSHAKE || c->st == ST_WRITE ||
			    (c->st == ST_READ && role != R_LOOP))
				busy++;
			else if (c->st != ST_FREE)
				done++;
		}
		/* R_LOOP conns are "done" once they have completed a round trip */
		while (next < last && busy < inflight_cap) {
			if (!conn_start(&conns[next], role))
				break;
			next++;
			busy++;
		}
		if (next == last && busy == 0)
			break;
		if (now_ns() > end || interrupted || too_many_errors())
			break;
		poll_once(10, false);
	}
	return done;
}

/* full, resume: keep --conns one-shot connections going. */
static void
run_oneshot(void)
{
	uint64_t t_start, t_end, deadline;

	if (o.mode == M_RESUME) {
		/* prime: one full handshake per slot, not counted */
		for (int i = 0; i < o.conns; i++)
			conns[i].slot = i;
		(void)establish(0, o.conns, R_ONESHOT, 10);
		for (int i = 0; i < o.conns; i++)
			if (conns[i].st != ST_FREE)
				conn_close(&conns[i], false);
		if (n_primed == 0)
			die("resume: no priming handshake completed (%" PRIu64
			    " errors)", n_err);
		for (int i = 0; i < o.conns; i++)
			conns[i].counted = true;
	}
	t_start = now_ns();
	deadline = t_start + (uint64_t)(o.seconds * 1e9);
	for (;;) {
		bool stop = now_ns() >= deadline || n_hs >= o.count ||
		    interrupted || too_many_errors();
		for (int i = 0; i < o.conns; i++) {
			if (conns[i].st == ST_FREE && !stop)
				(void)conn_start(&conns[i], R_ONESHOT);
		}
		if (stop)
			break;
		poll_once(50, true);
	}
	t_end = now_ns();
	for (int i = 0; i < o.conns; i++)
		if (conns[i].st != ST_FREE)
			conn_close(&conns[i], false);
	double secs = (double)(t_end - t_start) / 1e9;
	printf("handshakes=%" PRIu64 "\n", n_hs);
	printf("seconds=%.3f\n", secs);
	printf("hs_per_s=%.1f\n", (double)n_hs / secs);
	if (o.mode == M_RESUME) {
		printf("resumed=%" PRIu64 "\n", n_reused);
		printf("resumption_ratio=%.4f\n", n_hs ? (double)n_reused /
		    (double)n_hs : 0.0);
		printf("resumed_per_s=%.1f\n", (double)n_reused / secs);
	}
	fprintf(stderr, "%s: %" PRIu64 " handshakes in %.2f s = %.1f/s",
	    mode_names[o.mode], n_hs, secs, (double)n_hs / secs);
	if (o.mode == M_RESUME)
		fprintf(stderr, ", %.1f %% resumed", n_hs ? 100.0 *
		    (double)n_reused / (double)n_hs : 0.0);
	fprintf(stderr, "\n");
}

/* latency, mixed: --conns looping connections (slots 0..conns-1); mixed
 * also launches one-shot full handshakes at --rate in slots conns.. */
static void
run_latency(void)
{
	int hs_slots = o.mode == M_MIXED ? 256 : 0;
	uint64_t t_start, t_end, deadline;
	uint64_t hs_due_launched = 0, hs_missed = 0;

	(void)establish(0, o.conns, R_LOOP, 30);
	int live = 0;
	for (int i = 0; i < o.conns; i++)
		live += conns[i].st != ST_FREE;
	if (live == 0)
		die("%s: no connection established (%" PRIu64 " errors)",
		    mode_names[o.mode], n_err);
	t_start = now_ns();
	deadline = t_start + (uint64_t)(o.seconds * 1e9);
	for (;;) {
		uint64_t t = now_ns();
		if (t >= deadline || n_rt >= o.count || interrupted)
			break;
		if (hs_slots > 0) {
			uint64_t due = (uint64_t)((double)(t - t_start) / 1e9 * o.rate);
			while (hs_due_launched < due) {
				int i;
				for (i = o.conns; i < o.conns + hs_slots; i++)
					if (conns[i].st == ST_FREE)
						break;
				hs_due_launched++;
				if (i == o.conns + hs_slots) {
					hs_missed++; /* all arrival slots busy */
					continue;
				}
				(void)conn_start(&conns[i], R_ONESHOT);
			}
		}
		poll_once(hs_slots > 0 ? 1 : 50, true);
	}
	t_end = now_ns();
	double secs = (double)(t_end - t_start) / 1e9;
	qsort(lat, nlat, sizeof(*lat), cmp_u32);
	printf("round_trips=%" PRIu64 "\n", n_rt);
	printf("seconds=%.3f\n", secs);
	printf("rt_per_s=%.1f\n", (double)n_rt / secs);
	printf("p50_us=%.1f\n", pct(0.50));
	printf("p99_us=%.1f\n", pct(0.99));
	printf("p999_us=%.1f\n", pct(0.999));
	printf("max_us=%.1f\n", nlat ? lat[nlat - 1] / 1000.0 : 0.0);
	printf("live_conns=%d\n", live);
	if (o.mode == M_MIXED) {
		printf("hs_rate_target=%.1f\n", o.rate);
		printf("handshakes=%" PRIu64 "\n", n_hs);
		printf("hs_per_s=%.1f\n", (double)n_hs / secs);
		printf("hs_missed=%" PRIu64 "\n", hs_missed);
	}
	fprintf(stderr, "%s: %d conns, %" PRIu64 " round trips in %.2f s = %.0f/s, "
	    "p50 %.0f us, p99 %.0f us, p999 %.0f us", mode_names[o.mode], live,
	    n_rt, secs, (double)n_rt / secs, pct(0.5), pct(0.99), pct(0.999));
	if (o.mode == M_MIXED)
		fprintf(stderr, "; %.1f full handshakes/s arriving (target %.1f)",
		    (double)n_hs / secs, o.rate);
	fprintf(stderr, "\n");
	for (int i = 0; i < o.conns + hs_slots; i++)
		if (conns[i].st != ST_FREE)
			conn_close(&conns[i], true);
}

static void
run_bulk(void)
{
	uint64_t t_start, t_end, deadline, cap = o.count * 1048576ull;
	uint64_t wr0 = 0, rd0 = 0, wr = 0, rd = 0;

	/* handshakes first, not timed */
	for (int i = 0; i < o.conns; i++)
		(void)conn_start(&conns[i], R_BULK);
	uint64_t hs_end = now_ns() + 30000000000ull;
	for (;;) {
		int pending = 0;
		for (int i = 0; i < o.conns; i++)
			pending += conns[i].st == ST_HANDSHAKE;
		if (pending == 0 || now_ns() > hs_end || interrupted)
			break;
		poll_once(10, false);
	}
	for (int i = 0; i < o.conns; i++) {
		wr0 += conns[i].wr;
		rd0 += conns[i].rd;
	}
	t_start = now_ns();
	deadline = t_start + (uint64_t)(o.seconds * 1e9);
	for (;;) {
		rd = 0;
		int live = 0;
		for (int i = 0; i < o.conns; i++) {
			rd += conns[i].rd;
			live += conns[i].st == ST_BULK;
		}
		if (now_ns() >= deadline || rd - rd0 >= cap || interrupted || live == 0)
			break;
		poll_once(50, true);
	}
	t_end = now_ns();
	wr = rd = 0;
	for (int i = 0; i < o.conns; i++) {
		wr += conns[i].wr;
		rd += conns[i].rd;
	}
	double secs = (double)(t_end - t_start) / 1e9;
	double mbw = (double)(wr - wr0) / 1e6 / secs, mbr = (double)(rd - rd0) / 1e6 / secs;
	printf("bytes_written=%" PRIu64 "\n", wr - wr0);
	printf("bytes_echoed=%" PRIu64 "\n", rd - rd0);
	printf("seconds=%.3f\n", secs);
	printf("mb_per_s_out=%.1f\n", mbw);
	printf("mb_per_s=%.1f\n", mbr);
	fprintf(stderr, "bulk: %d conns, %.1f MB/s sent, %.1f MB/s echoed and "
	    "verified\n", o.conns, mbw, mbr);
	for (int i = 0; i < o.conns; i++)
		if (conns[i].st != ST_FREE)
			conn_close(&conns[i], true);
}

static int
count_live(void)
{
	int n = 0;
	for (int i = 0; i < o.conns; i++)
		n += conns[i].st == ST_IDLE;
	return n;
}

static void
settle(double s)
{
	uint64_t end = now_ns() + (uint64_t)(s * 1e9);
	while (now_ns() < end && !interrupted)
		poll_once(50, false);
}

static void
run_idle(void)
{
	uint64_t rss0 = 0, rssb = 0, rssn = 0;
	int np = 0, base = o.idle_base < o.conns ? o.idle_base : 0;
	int live_b = 0, live_n;
	uint64_t t0 = now_ns();
	double budget = o.seconds > 0 ? o.seconds : 60;

	if (o.rss_pid > 0)
		rss0 = tree_rss(o.rss_pid, &np);
	if (base > 0) {
		(void)establish(0, base, R_HOLD, budget);
		settle(0.3);
		live_b = count_live();
		if (o.rss_pid > 0)
			rssb = tree_rss(o.rss_pid, &np);
	} else {
		rssb = rss0;
	}
	double left = budget - (double)(now_ns() - t0) / 1e9;
	(void)establish(base, o.conns, R_HOLD, left > 1 ? left : 1);
	settle(0.3);
	live_n = count_live();
	if (o.rss_pid > 0)
		rssn = tree_rss(o.rss_pid, &np);
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("idle_conns=%d\n", live_n);
	printf("idle_base=%d\n", live_b);
	printf("open_seconds=%.3f\n", secs);
	if (o.rss_pid > 0) {
		double per = live_n > live_b ? ((double)rssn - (double)rssb) /
		    (double)(live_n - live_b) : 0;
		double per0 = live_n > 0 ? ((double)rssn - (double)rss0) /
		    (double)live_n : 0;
		printf("rss_procs=%d\n", np);
		printf("rss0_kb=%.0f\n", (double)rss0 / 1024.0);
		printf("rss_base_kb=%.0f\n", (double)rssb / 1024.0);
		printf("rss_n_kb=%.0f\n", (double)rssn / 1024.0);
		printf("rss_per_conn_kb=%.2f\n", per / 1024.0);
		printf("rss_per_conn_from0_kb=%.2f\n", per0 / 1024.0);
		fprintf(stderr, "idle: %d connections held (%d at base); RSS of %d "
		    "process(es) %.0f -> %.0f -> %.0f KiB: %.1f KiB per connection "
		    "(%.1f from 0)\n", live_n, live_b, np, rss0 / 1024.0,
		    rssb / 1024.0, rssn / 1024.0, per / 1024.0, per0 / 1024.0);
	} else {
		fprintf(stderr, "idle: %d connections held\n", live_n);
	}
	fflush(stdout);
	if (o.hold > 0)
		settle(o.hold);
	printf("idle_dropped=%" PRIu64 "\n", n_dropped);
	for (int i = 0; i < o.conns; i++)
		if (conns[i].st != ST_FREE)
			conn_close(&conns[i], true);
}

int
main(int argc, char **argv)
{
	enum { O_HOST = 256, O_PORT, O_CERT, O_KEY, O_CA, O_T12, O_T13, O_CIPHER,
		O_GROUPS, O_CONNS, O_SECONDS, O_COUNT, O_RATE, O_BASE, O_RSS,
		O_HOLD, O_PSKKE, O_SNI, O_NOTICKET };
	static const struct option lo[] = {
		{ "host", 1, NULL, O_HOST }, { "port", 1, NULL, O_PORT },
		{ "cert", 1, NULL, O_CERT }, { "key", 1, NULL, O_KEY },
		{ "ca", 1, NULL, O_CA }, { "tls1.2", 0, NULL, O_T12 },
		{ "tls1.3", 0, NULL, O_T13 }, { "cipher", 1, NULL, O_CIPHER },
		{ "groups", 1, NULL, O_GROUPS }, { "conns", 1, NULL, O_CONNS },
		{ "seconds", 1, NULL, O_SECONDS }, { "count", 1, NULL, O_COUNT },
		{ "rate", 1, NULL, O_RATE }, { "idle-base", 1, NULL, O_BASE },
		{ "rss-pid", 1, NULL, O_RSS }, { "hold", 1, NULL, O_HOLD },
		{ "psk-ke", 0, NULL, O_PSKKE }, { "sni", 1, NULL, O_SNI },
		{ "no-tickets", 0, NULL, O_NOTICKET },
		{ "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c, i;

	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && strcmp(argv[1], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		usage(stderr);
		return 2;
	}
	for (i = 0; i < 6; i++)
		if (strcmp(argv[1], mode_names[i]) == 0)
			break;
	if (i == 6) {
		usage(stderr);
		return 2;
	}
	o.mode = (enum mode)i;
	if (o.mode == M_LATENCY || o.mode == M_MIXED)
		o.conns = 32;
	if (o.mode == M_BULK)
		o.conns = 4;
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_HOST: o.host = optarg; break;
		case O_PORT: o.port = optarg; break;
		case O_CERT: o.cert = optarg; break;
		case O_KEY: o.key = optarg; break;
		case O_CA: o.ca = optarg; break;
		case O_T12: o.tls = 12; break;
		case O_T13: o.tls = 13; break;
		case O_CIPHER: o.cipher = optarg; break;
		case O_GROUPS: o.groups = optarg; break;
		case O_CONNS: o.conns = atoi(optarg); break;
		case O_SECONDS: o.seconds = atof(optarg); break;
		case O_COUNT: o.count = strtoull(optarg, NULL, 10); break;
		case O_RATE: o.rate = atof(optarg); break;
		case O_BASE: o.idle_base = atoi(optarg); break;
		case O_RSS: o.rss_pid = atoi(optarg); break;
		case O_HOLD: o.hold = atof(optarg); break;
		case O_PSKKE: o.psk_ke = true; break;
		case O_SNI: o.sni = optarg; break;
		case O_NOTICKET: o.no_tickets = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || o.conns < 1 || o.conns > MAX_CONNS ||
	    !(o.seconds > 0 && o.seconds <= 3600) || o.count == 0 ||
	    !(o.rate > 0) || o.hold < 0 || o.hold > 3600) {
		usage(stderr);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	raise_nofile();
	resolve();
	setup_ctx();
	for (size_t k = 0; k < sizeof(pattern); k++)
		pattern[k] = (unsigned char)((k % PATTERN_PERIOD) * 2654435761u >> 13);
	for (size_t k = 0; k < ECHO_LEN; k++)
		probe[k] = (unsigned char)('a' + k % 26);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	int nslots = o.conns + (o.mode == M_MIXED ? 256 : 0);
	if ((conns = calloc((size_t)nslots, sizeof(*conns))) == NULL ||
	    (sessions = calloc((size_t)nslots, sizeof(*sessions))) == NULL)
		die("out of memory");
	for (i = 0; i < nslots; i++) {
		conns[i].fd = -1;
		conns[i].slot = i;
	}

	printf("mode=%s\n", mode_names[o.mode]);
	printf("conns=%d\n", o.conns);
	switch (o.mode) {
	case M_FULL:
	case M_RESUME: run_oneshot(); break;
	case M_LATENCY:
	case M_MIXED: run_latency(); break;
	case M_BULK: run_bulk(); break;
	case M_IDLE: run_idle(); break;
	}
	printf("tls_version=%s\n", neg_version[0] ? neg_version : "none");
	printf("cipher=%s\n", neg_cipher[0] ? neg_cipher : "none");
	printf("group=%s\n", neg_group[0] ? neg_group : "none");
	printf("errors=%" PRIu64 "\n", n_err);
	printf("handshake_errors=%" PRIu64 "\n", n_err_hs);
	printf("verify_failures=%" PRIu64 "\n", n_verify_fail);
	fprintf(stderr, "negotiated %s %s %s; %" PRIu64 " errors\n",
	    neg_version[0] ? neg_version : "-", neg_cipher[0] ? neg_cipher : "-",
	    neg_group[0] ? neg_group : "-", n_err);
	fflush(stdout);
	for (i = 0; i < nslots; i++)
		if (sessions[i] != NULL)
			SSL_SESSION_free(sessions[i]);
	free(sessions);
	free(conns);
	free(lat);
	SSL_CTX_free(ctx);
	close(epfd);
	return n_verify_fail > 0 ? 1 : 0;
}
