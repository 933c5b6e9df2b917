/*
 * conn: one client connection, from accept to close.
 *
 * States: HANDSHAKE -> ECHO, or HANDSHAKE -> CONNECTING [-> BACKEND_TLS] ->
 * RELAY; then CLOSING (close_notify) -> DONE.  Bytes move in "directions":
 * echo has one (client -> client), relay two (client -> backend, backend ->
 * client).  A direction holds at most one buffer of data and reads its
 * source only once that buffer has been written out: a sink that stops
 * reading stops its source being read (back-pressure), and memory per
 * connection is bounded whatever the peers do.  A source's end (FIN or
 * close_notify) is passed on to its sink once the buffer is empty, so
 * half-closes propagate and nothing in flight is lost.
 */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "census.h"
#include "log.h"
#include "net.h"
#include "proxy.h"
#include "tlssess.h"

/*
 * One TLS record's worth per direction, taken from the worker's pool while
 * bytes are in flight and given back when the direction is empty: an idle
 * connection holds no copy buffer.
 */
#define CONN_BUF 16384
#define CLOSE_MS 2000 /* for close_notify to a peer that may not read */
/*
 * After refusing a handshake, read and drop what the client still sends for
 * this long (or this much) before closing: closing with unread input makes
 * the kernel send a reset, which can destroy the alert that says why.
 */
#define REFUSED_LINGER_MS 1000
#define REFUSED_DISCARD_MAX (64 * 1024)
/* Records moved per direction and wakeup: one busy peer cannot starve the
 * other connections of its worker. */
#define PUMP_BUDGET 8

enum conn_state {
	CONN_HANDSHAKE,   /* until the client is verified */
	CONN_ECHO,        /* banner, then bytes back as they come */
	CONN_CONNECTING,  /* relay: TCP connect to the backend */
	CONN_PROXY,       /* relay: PROXY header, in the clear, before TLS */
	CONN_BACKEND_TLS, /* relay: TLS handshake with the backend */
	CONN_RELAY,       /* relay: bytes both ways */
	CONN_CLOSING,     /* sending close_notify to the client */
	CONN_REFUSED,     /* alert sent: discarding the client's rest */
	CONN_DONE,        /* to be freed */
};

/* A socket of the connection; also its epoll cookie (see conn.h). */
struct side {
	int kind; /* CONN_EV_KIND: first */
	struct conn *c;
	int fd;                /* -1: none */
	struct tlssess *tls;   /* NULL: plain */
	uint32_t armed;        /* events registered; 0: not in epoll at all */
	bool want_in, want_out; /* computed by each step */
	int err;               /* errno of a plain I/O failure */
};

/* Bytes from one side to another. */
struct dir {
	struct side *src, *dst;
	unsigned char *buf;
	size_t off, len;   /* pending output is buf[off..len) */
	bool eof;          /* the source ended */
	bool shut;         /* ... and the sink was told */
	bool drop;         /* the sink is gone: read the source, discard */
	uint64_t bytes;    /* read from src */
	uint64_t written;  /* written to dst (PROXY header and banner too) */
};

struct conn {
	struct side client;  /* first: a struct conn * is a cookie too */
	struct side backend;
	enum conn_state state;
	struct conn_listener *l;
	struct conn *prev, *next; /* in the worker's set */
	struct dir dirs[2];
	size_t ndirs;
	struct timerq_entry timer; /* the state's deadline */
	uint64_t start_ms, last_ms;
	uint64_t connect_start_ms, connect_ms;
	bool backend_gone;        /* hang-up or error seen on the backend */
	bool relaying;            /* the backend was reached (connect_ms set) */
	const char *first_eof;    /* "client" or "backend": who ended first */
	size_t discarded;         /* CONN_REFUSED: bytes dropped */
	bool admitted;            /* admit() let the client in */
	bool unauthenticated;     /* verify_client optional, no certificate */
	char allowed_by[160];     /* the allow rule that admitted the client */
	uint64_t id_key;          /* census key, 0: not counted */
	uint64_t start_us, connect_start_us; /* for the histograms */
	uint64_t counted_in, counted_out; /* bytes already in the stats */
	char peer[NET_ADDRSTRLEN];
	struct sockaddr_storage peer_sa;
	socklen_t peer_len;
};

void
conn_listener_init(struct conn_listener *cl, const struct cfg_listener *cfg,
    struct tlsctx *tls, unsigned refusals_per_s, struct stats_block *stats)
{
	const struct cfg_allow *a = &cfg->allow;

	memset(cl, 0, sizeof(*cl));
	cl->cfg = cfg;
	cl->tls = tls;
	cl->stats = stats;
	lograte_init(&cl->refusals, refusals_per_s);
	cl->allow.cn = a->cn.v;
	cl->allow.ncn = a->cn.n;
	cl->allow.ou = a->ou.v;
	cl->allow.nou = a->ou.n;
	cl->allow.dns = a->dns.v;
	cl->allow.ndns = a->dns.n;
	cl->allow.uri = a->uri.v;
	cl->allow.nuri = a->uri.n;
	cl->allow.email = a->email.v;
	cl->allow.nemail = a->email.n;
	cl->allow.spki = (const uint8_t (*)[IDENTITY_SPKI_LEN])a->spki;
	cl->allow.nspki = a->nspki;
}

void
conn_set_init(struct conn_set *set, int epfd, struct census *census,
    unsigned worker)
{
	set->head = NULL;
	set->dead = NULL;
	set->n = 0;
	set->epfd = epfd;
	timerq_init(&set->timers);
	set->census = census;
	set->worker = worker;
	set->npool = 0;
}

void
conn_set_free(struct conn_set *set)
{
	while (set->npool > 0)
		free(set->pool[--set->npool]);
	timerq_free(&set->timers);
}

static void
set_deadline(struct conn_set *set, struct conn *c, uint64_t ms)
{
	timerq_set(&set->timers, &c->timer, ms);
}

/* The monotonic clock in microseconds, for the histograms. */
static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Bytes moved since the last call go to the listener's counters. */
static void
count_bytes(struct conn *c)
{
	const struct dir *down = c->ndirs > 1 ? &c->dirs[1] : &c->dirs[0];

	if (c->dirs[0].bytes != c->counted_in) {
		stats_add(c->l->stats, STATS_BYTES_IN, c->dirs[0].bytes -
		    c->counted_in);
		c->counted_in = c->dirs[0].bytes;
	}
	if (down->written != c->counted_out) {
		stats_add(c->l->stats, STATS_BYTES_OUT, down->written -
		    c->counted_out);
		c->counted_out = down->written;
	}
}

/* A copy buffer for ${d}, if it has none.  False: out of memory. */
static bool
buf_take(struct conn_set *set, struct dir *d)
{
	if (d->buf != NULL)
		return true;
	d->buf = set->npool > 0 ? set->pool[--set->npool] : malloc(CONN_BUF);
	return d->buf != NULL;
}

/* ${d}'s buffer back to the pool, if it holds nothing to write. */
static void
buf_give(struct conn_set *set, struct dir *d)
{
	if (d->buf == NULL || d->off < d->len)
		return;
	if (set->npool < CONN_POOL_MAX)
		set->pool[set->npool++] = d->buf;
	else
		free(d->buf);
	d->buf = NULL;
	d->off = d->len = 0;
}

/* Register interest in ${want}, touching epoll only on change. */
static int
arm(struct conn_set *set, struct side *s, uint32_t want)
{
	struct epoll_event ev = { .events = want, .data.ptr = s };

	if (s->fd < 0 || want == s->armed)
		return 0;
	/*
	 * Waiting for nothing means leaving epoll: it reports hang-ups and
	 * errors even for an empty mask, level-triggered, and a side we are
	 * not serving (say a backend that closed while the client reads
	 * slowly) would wake us in a loop.  Its state waits in the socket
	 * for our next read or write.
	 */
	if (want == 0) {
		if (epoll_ctl(set->epfd, EPOLL_CTL_DEL, s->fd, NULL) != 0)
			return -1;
	} else if (epoll_ctl(set->epfd, s->armed == 0 ? EPOLL_CTL_ADD :
	    EPOLL_CTL_MOD, s->fd, &ev) != 0)
		return -1;
	s->armed = want;
	return 0;
}

static int
arm_wants(struct conn_set *set, struct side *s)
{
	return arm(set, s, (s->want_in ? EPOLLIN : 0u) |
	    (s->want_out ? EPOLLOUT : 0u));
}

static void
want(struct side *s, enum tls_io r)
{
	if (r == TLS_IO_WANT_WRITE)
		s->want_out = true;
	else
		s->want_in = true;
}

/* --- endpoints: a TLS session or a plain socket ------------------------ */

static enum tls_io
ep_read(struct side *s, void *buf, size_t len, size_t *n)
{
	ssize_t r;

	if (s->tls != NULL)
		return tlssess_read(s->tls, buf, len, n);
	r = recv(s->fd, buf, len, 0);
	if (r > 0) {
		*n = (size_t)r;
		return TLS_IO_OK;
	}
	if (r == 0)
		return TLS_IO_EOF;
	if (errno == EAGAIN || errno == EINTR)
		return TLS_IO_WANT_READ;
	s->err = errno;
	return TLS_IO_ERROR;
}

static enum tls_io
ep_write(struct side *s, const void *buf, size_t len, size_t *n)
{
	ssize_t r;

	if (s->tls != NULL)
		return tlssess_write(s->tls, buf, len, n);
	r = send(s->fd, buf, len, MSG_NOSIGNAL);
	if (r >= 0) {
		*n = (size_t)r;
		return TLS_IO_OK;
	}
	if (errno == EAGAIN || errno == EINTR)
		return TLS_IO_WANT_WRITE;
	s->err = errno;
	return TLS_IO_ERROR;
}

/* Tell the peer we send no more: close_notify (TLS), then FIN. */
static enum tls_io
ep_shutdown(struct side *s)
{
	if (s->tls != NULL) {
		enum tls_io r = tlssess_close_notify(s->tls);

		if (r != TLS_IO_OK)
			return r;
	}
	(void)shutdown(s->fd, SHUT_WR);
	return TLS_IO_OK;
}

/* The last failure on ${s} was its peer resetting or closing under us. */
static bool
ep_gone(const struct side *s)
{
	if (s->tls != NULL)
		return tlssess_peer_gone(s->tls) != 0;
	return s->err == EPIPE || s->err == ECONNRESET;
}

static void
ep_error(const struct side *s, char *buf, size_t len)
{
	if (s->tls != NULL)
		tlssess_error(s->tls, buf, len);
	else
		snprintf(buf, len, "%s", strerror(s->err ? s->err : EIO));
}

/* --- logging ------------------------------------------------------------ */

static void
log_close(const struct conn *c, uint64_t now_ms, const char *reason,
    const char *words)
{
	char subject[512], in[24], out[24], dur[24], bin[24], bout[24];
	char cms[24], baddr[NET_ADDRSTRLEN + 8];
	bool relay = c->l->cfg->mode == CFG_MODE_RELAY;
	const struct dir *up = &c->dirs[0];
	const struct dir *down = relay ? &c->dirs[1] : &c->dirs[0];
	struct log_field f[] = {
		{ "LISTENER", c->l->cfg->name },
		{ "PEER_ADDR", c->peer },
		{ "CLIENT_SUBJECT", subject },
		{ "TLS_VERSION", tlssess_version(c->client.tls) },
		{ "TLS_CIPHER", tlssess_cipher(c->client.tls) },
		{ "BYTES_IN", in },
		{ "BYTES_OUT", out },
		{ "DURATION_MS", dur },
		{ "CLOSE_REASON", reason },
		{ "CLIENT_AUTH", c->unauthenticated ? "none" : "certificate" },
		{ "TLS_RESUMED", tlssess_resumed(c->client.tls) ? "yes" : "no" },
		{ "ALLOW_RULE", c->allowed_by[0] ? c->allowed_by : NULL },
		{ "BACKEND_ADDR", relay ? baddr : NULL },
		{ "BACKEND_CONNECT_MS", relay && c->relaying ? cms : NULL },
		{ "BACKEND_BYTES_OUT", relay ? bout : NULL },
		{ "BACKEND_BYTES_IN", relay ? bin : NULL },
	};

	tlssess_peer_subject(c->client.tls, subject, sizeof(subject));
	snprintf(in, sizeof(in), "%" PRIu64, up->bytes);
	snprintf(out, sizeof(out), "%" PRIu64, down->written);
	snprintf(dur, sizeof(dur), "%" PRIu64, now_ms - c->start_ms);
	snprintf(baddr, sizeof(baddr), "%s", c->l->cfg->backend.address ?
	    c->l->cfg->backend.address : "");
	snprintf(cms, sizeof(cms), "%" PRIu64, c->connect_ms);
	snprintf(bout, sizeof(bout), "%" PRIu64, up->written);
	snprintf(bin, sizeof(bin), "%" PRIu64, down->bytes);
	int backend_failure = stats_backend_index(reason);

	if (backend_failure >= 0)
		stats_add(c->l->stats, (enum stats_counter)(STATS_BACKEND +
		    backend_failure), 1);
	/* A backend that fails us is the operator's problem: say it louder. */
	int prio = strncmp(reason, "backend-", 8) == 0 &&
	    strcmp(reason, "backend-closed") != 0 ? LOG_WARNING : LOG_INFO;

	log_event(prio, LOG_ID_CONN_CLOSE, f, sizeof(f) / sizeof(f[0]),
	    "connection closed: %s", words);
}

/* A bare connect-and-close is a health check or a port scan. */
static int
refusal_prio(const char *token)
{
	return strcmp(token, "peer-closed") == 0 ? LOG_INFO : LOG_WARNING;
}

/*
 * One line per refusal, unless this listener already logged its share of
 * this reason in the current second (log_refusals_per_second): then it is
 * counted, and conn_listener_log_suppressed() says how many.  A flood of
 * junk would otherwise push journald into its own rate limit, which drops
 * records silently, the ones an operator needs included.
 */
static void
log_refusal(const struct conn *c, uint64_t now_ms, const struct tls_refusal *r)
{
	char dur[24];
	struct log_field f[] = {
		{ "LISTENER", c->l->cfg->name },
		{ "PEER_ADDR", c->peer },
		{ "CLOSE_REASON", r->token },
		{ "REASON_DETAIL", r->detail[0] ? r->detail : NULL },
		{ "CLIENT_SUBJECT", r->subject[0] ? r->subject : NULL },
		{ "CLIENT_ISSUER", r->issuer[0] ? r->issuer : NULL },
		{ "DURATION_MS", dur },
	};

	/* Counted whether or not it is logged one by one. */
	stats_add(c->l->stats, (enum stats_counter)(STATS_REFUSAL +
	    stats_refusal_index(r->token)), 1);
	if (!lograte_admit(&c->l->refusals, r->token, now_ms))
		return;
	snprintf(dur, sizeof(dur), "%" PRIu64, now_ms - c->start_ms);
	log_event(refusal_prio(r->token), LOG_ID_REFUSED, f,
	    sizeof(f) / sizeof(f[0]), "handshake refused: %s", r->words);
}

/* ${n} with thousands separated by commas ("2,345"), for people. */
static const char *
group_digits(uint64_t n, char *buf, size_t len)
{
	char digits[24];
	size_t nd, i, o = 0;

	nd = (size_t)snprintf(digits, sizeof(digits), "%" PRIu64, n);
	for (i = 0; i < nd && o + 2 < len; i++) {
		if (i > 0 && (nd - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}

void
conn_listener_log_suppressed(struct conn_listener *cl, uint64_t now_ms,
    bool all)
{
	struct lograte_summary sum;

	while (lograte_due(&cl->refusals, now_ms, all, &sum)) {
		char n[24], span[24], words[32], ago[32];
		struct log_field f[] = {
			{ "LISTENER", cl->cfg->name },
			{ "CLOSE_REASON", sum.token },
			{ "SUPPRESSED", n },
			{ "INTERVAL_MS", span },
		};

		snprintf(n, sizeof(n), "%" PRIu64, sum.suppressed);
		snprintf(span, sizeof(span), "%" PRIu64, sum.span_ms);
		/* Under a second only when a stopping worker flushes. */
		if (sum.span_ms < 1000)
			snprintf(ago, sizeof(ago), "%" PRIu64 " ms", sum.span_ms);
		else
			snprintf(ago, sizeof(ago), "%.1f s",
			    (double)sum.span_ms / 1000.0);
		log_event(refusal_prio(sum.token), LOG_ID_REFUSED_SUPPRESSED, f,
		    sizeof(f) / sizeof(f[0]), "listener %s: %s more refusal%s "
		    "(%s) in the last %s not logged one by one", cl->cfg->name,
		    group_digits(sum.suppressed, words, sizeof(words)),
		    sum.suppressed == 1 ? "" : "s", sum.token, ago);
	}
}

/* --- life cycle --------------------------------------------------------- */

static void
side_close(struct conn_set *set, struct side *s)
{
	if (s->fd < 0)
		return;
	(void)epoll_ctl(set->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	tlssess_free(s->tls);
	s->tls = NULL;
}

/*
 * The connection is over: close its sockets and move it to the dead list.
 * Its memory stays until conn_set_reap(): the current epoll batch may hold
 * an event for its other socket, whose cookie points into it.
 */
static void
conn_free(struct conn_set *set, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		set->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	set->n--;
	c->l->active--;
	count_bytes(c);
	stats_set(c->l->stats, STATS_ACTIVE, c->l->active);
	set_deadline(set, c, 0);
	if (set->census != NULL) {
		if (c->id_key != 0)
			census_id_del(set->census, set->worker, c->id_key);
		census_conns_set(set->census, set->worker, set->n);
	}
	side_close(set, &c->backend);
	side_close(set, &c->client);
	c->state = CONN_DONE;
	c->prev = NULL;
	c->next = set->dead;
	set->dead = c;
}

void
conn_set_reap(struct conn_set *set)
{
	struct conn *c, *next;
	size_t i;

	for (c = set->dead; c != NULL; c = next) {
		next = c->next;
		for (i = 0; i < c->ndirs; i++) {
			/* Whatever it held is undeliverable now. */
			c->dirs[i].off = c->dirs[i].len;
			buf_give(set, &c->dirs[i]);
		}
		free(c);
	}
	set->dead = NULL;
}

/*
 * Start ending the connection: log once, close the backend, send
 * close_notify to the client (bounded), then DONE.
 */
static void
begin_closing(struct conn_set *set, struct conn *c, uint64_t now_ms,
    const char *reason, const char *words)
{
	log_close(c, now_ms, reason, words);
	side_close(set, &c->backend);
	c->state = CONN_CLOSING;
	set_deadline(set, c, now_ms + CLOSE_MS);
}

static void enter_refused(struct conn_set *set, struct conn *c,
    uint64_t now_ms);

static void
step_closing(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	enum tls_io r = ep_shutdown(&c->client);

	if (r == TLS_IO_WANT_WRITE || r == TLS_IO_WANT_READ) {
		c->client.want_in = c->client.want_out = false;
		want(&c->client, r);
		if (arm_wants(set, &c->client) == 0)
			return;
	}
	if (r == TLS_IO_OK) {
		/* Read off what the client still sends before closing, or
		 * the kernel's reset may destroy our close_notify. */
		enter_refused(set, c, now_ms);
		return;
	}
	c->state = CONN_DONE;
}

/* Finish at once: log and drop (the peer is gone or broken). */
static void
finish(struct conn *c, uint64_t now_ms, const char *reason, const char *words)
{
	log_close(c, now_ms, reason, words);
	c->state = CONN_DONE;
}

static void
fail_side(struct conn *c, const struct side *s, uint64_t now_ms)
{
	char msg[160], words[220];

	ep_error(s, msg, sizeof(msg));
	if (s == &c->client) {
		snprintf(words, sizeof(words), "client error: %s", msg);
		finish(c, now_ms, "client-error", words);
	} else {
		snprintf(words, sizeof(words), "backend error: %s", msg);
		finish(c, now_ms, "backend-error", words);
	}
}

/* --- moving bytes ------------------------------------------------------- */

/* Advance direction ${d} as far as it goes; false if the connection died. */
static bool
pump_some(struct conn_set *set, struct conn *c, struct dir *d,
    uint64_t now_ms)
{
	unsigned budget = PUMP_BUDGET;

	for (;;) {
		enum tls_io r;
		size_t n = 0;

		if (d->off < d->len) {
			r = ep_write(d->dst, d->buf + d->off, d->len - d->off,
			    &n);
			if (r == TLS_IO_OK) {
				d->off += n;
				d->written += n;
				c->last_ms = now_ms;
				continue;
			}
			if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
				want(d->dst, r);
				return true;
			}
			if (d->dst == &c->backend && ep_gone(d->dst)) {
				/*
				 * The backend closed while the client still
				 * sends.  What it said before still goes to
				 * the client (the other direction); from the
				 * client we now only read and discard, so it
				 * is not blocked and not reset.
				 */
				d->drop = true;
				d->off = d->len = 0;
				if (c->first_eof == NULL)
					c->first_eof = "backend";
				continue;
			}
			fail_side(c, d->dst, now_ms);
			return false;
		}
		d->off = d->len = 0;
		if (d->shut)
			return true;
		if (d->drop) {
			if (!buf_take(set, d)) {
				finish(c, now_ms, "io-error", "out of memory");
				return false;
			}
			r = ep_read(d->src, d->buf, CONN_BUF, &n);
			if (r == TLS_IO_OK) {
				d->bytes += n;
				c->last_ms = now_ms;
				if (budget-- > 0)
					continue;
				d->src->want_in = true;
				if (d->src->tls != NULL &&
				    tlssess_pending(d->src->tls))
					d->src->want_out = true;
				return true;
			}
			if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
				want(d->src, r);
				return true;
			}
			if (r == TLS_IO_EOF) {
				d->eof = d->shut = true;
				return true;
			}
			fail_side(c, d->src, now_ms);
			return false;
		}
		if (d->eof) {
			r = ep_shutdown(d->dst);
			if (r == TLS_IO_OK) {
				d->shut = true;
				return true;
			}
			if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
				want(d->dst, r);
				return true;
			}
			fail_side(c, d->dst, now_ms);
			return false;
		}
		if (budget-- == 0) {
			/*
			 * Yield.  Level-triggered EPOLLIN brings us back;
			 * input already inside mbedTLS is announced by no
			 * socket: ask for EPOLLOUT, which a socket with room
			 * reports at once.
			 */
			d->src->want_in = true;
			if (d->src->tls != NULL && tlssess_pending(d->src->tls))
				d->src->want_out = true;
			return true;
		}
		if (!buf_take(set, d)) {
			finish(c, now_ms, "io-error", "out of memory");
			return false;
		}
		r = ep_read(d->src, d->buf, CONN_BUF, &n);
		if (r == TLS_IO_OK) {
			d->off = 0;
			d->len = n;
			d->bytes += n;
			c->last_ms = now_ms;
			continue;
		}
		if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
			want(d->src, r);
			return true;
		}
		if (r == TLS_IO_EOF ||
		    (d->src == &c->backend && ep_gone(d->src))) {
			/* A backend reset after its data ends it like a FIN:
			 * what it sent is delivered, then close_notify. */
			d->eof = true;
			if (c->first_eof == NULL)
				c->first_eof = d->src == &c->client ?
				    "client" : "backend";
			continue;
		}
		fail_side(c, d->src, now_ms);
		return false;
	}
}

static bool
pump(struct conn_set *set, struct conn *c, struct dir *d, uint64_t now_ms)
{
	bool alive = pump_some(set, c, d, now_ms);

	/* Between wakeups an empty direction holds no buffer. */
	buf_give(set, d);
	return alive;
}

static void
update_deadline(struct conn_set *set, struct conn *c)
{
	const struct cfg_listener *lc = c->l->cfg;
	size_t i;
	bool half = false;

	/* Half-closed: a direction ended, or its sink is gone. */
	for (i = 0; i < c->ndirs; i++)
		half |= c->dirs[i].shut || c->dirs[i].eof || c->dirs[i].drop ||
		    c->backend_gone;
	if (half && c->ndirs > 1)
		set_deadline(set, c, c->last_ms + lc->linger_timeout_ms);
	else if (lc->idle_timeout_ms > 0)
		set_deadline(set, c, c->last_ms + lc->idle_timeout_ms);
	else
		set_deadline(set, c, 0);
}

static void
step_data(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	size_t i;
	bool done = true;

	c->client.want_in = c->client.want_out = false;
	c->backend.want_in = c->backend.want_out = false;
	for (i = 0; i < c->ndirs; i++)
		if (!pump(set, c, &c->dirs[i], now_ms))
			return;
	for (i = 0; i < c->ndirs; i++)
		done &= c->dirs[i].shut;
	if (done) {
		const char *who = c->first_eof ? c->first_eof : "client";

		/* Every byte was passed on and both ends said so. */
		log_close(c, now_ms, strcmp(who, "client") == 0 ?
		    "client-closed" : "backend-closed",
		    strcmp(who, "client") == 0 ? "client closed the "
		    "connection" : "backend closed the connection");
		c->state = CONN_DONE;
		return;
	}
	if (arm_wants(set, &c->client) != 0 ||
	    arm(set, &c->backend, (c->backend.want_in ? EPOLLIN : 0u) |
	    (c->backend.want_out ? EPOLLOUT : 0u) |
	    (c->ndirs > 1 && !c->backend_gone ? EPOLLRDHUP : 0u)) != 0) {
		finish(c, now_ms, "io-error", "epoll failed");
		return;
	}
	update_deadline(set, c);
}

static bool
enter_echo(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	const struct cfg_listener *lc = c->l->cfg;
	struct dir *d = &c->dirs[0];

	c->state = CONN_ECHO;
	c->last_ms = now_ms;
	d->src = d->dst = &c->client;
	if ((lc->mode == CFG_MODE_WHOAMI || lc->banner != NULL) &&
	    !buf_take(set, d))
		return false;
	if (lc->mode == CFG_MODE_WHOAMI) {
		struct identity id;

		/* Who the server thinks you are, then the echo. */
		tlssess_peer_identity(c->client.tls, &id);
		d->len = tlssess_whoami_json(c->client.tls, &id,
		    (char *)d->buf, CONN_BUF);
		identity_clear(&id);
	} else if (lc->banner != NULL) {
		/* CFG_BANNER_MAX < CONN_BUF: config guarantees it fits. */
		memcpy(d->buf, lc->banner, lc->banner_len);
		d->len = lc->banner_len;
	}
	return true;
}

/*
 * The PROXY header goes first in the client -> backend direction.  False
 * if it cannot be built (out of memory, or a name it cannot carry): the
 * backend then gets nothing, never the client's bytes without the header.
 */
static bool
queue_proxy_header(struct conn_set *set, struct conn *c)
{
	const struct cfg_backend *b = &c->l->cfg->backend;
	struct dir *up = &c->dirs[0];
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	char cn[1024], uri[1024];
	struct proxy_tls t;

	if (b->proxy == CFG_PROXY_OFF)
		return true;
	if (!buf_take(set, up))
		return false;
	if (getsockname(c->client.fd, (struct sockaddr *)&local, &llen) != 0)
		memset(&local, 0, sizeof(local));
	if (b->proxy == CFG_PROXY_V1) {
		up->len = proxy_v1((struct sockaddr *)&c->peer_sa,
		    (struct sockaddr *)&local, (char *)up->buf, CONN_BUF);
		return up->len > 0;
	}
	/* A name that cannot go whole makes no header: the backend must
	 * not mistake a name cut short, or none, for the client's. */
	if (tlssess_peer_cn(c->client.tls, cn, sizeof(cn)) < 0 ||
	    tlssess_peer_uri(c->client.tls, uri, sizeof(uri)) < 0)
		return false;
	t.version = tlssess_version(c->client.tls);
	t.cipher = tlssess_cipher(c->client.tls);
	t.cn = cn[0] ? cn : NULL;
	t.uri = uri[0] ? uri : NULL;
	t.cert_verified = !c->unauthenticated;
	t.resumed = tlssess_resumed(c->client.tls) != 0;
	up->len = proxy_v2((struct sockaddr *)&c->peer_sa,
	    (struct sockaddr *)&local, &t, up->buf, CONN_BUF);
	return up->len > 0;
}

static void
enter_relay(struct conn *c, uint64_t now_ms)
{
	c->state = CONN_RELAY;
	c->last_ms = now_ms;
	c->connect_ms = now_ms - c->connect_start_ms;
	stats_observe(c->l->stats, STATS_BE_BUCKET, STATS_BE_SUM_US,
	    now_us() - c->connect_start_us);
	c->relaying = true; /* 0 ms is a real figure on loopback */
	c->dirs[0].src = &c->client;
	c->dirs[0].dst = &c->backend;
	c->dirs[1].src = &c->backend;
	c->dirs[1].dst = &c->client;
}

static void
backend_failed(struct conn_set *set, struct conn *c, uint64_t now_ms,
    const char *reason, const char *what)
{
	char words[400];

	snprintf(words, sizeof(words), "backend %s: %s",
	    c->l->cfg->backend.address, what);
	begin_closing(set, c, now_ms, reason, words);
}

static void
start_connect(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	const struct cfg_backend *b = &c->l->cfg->backend;
	struct epoll_event ev;
	char err[200];
	int fd;

	c->state = CONN_CONNECTING;
	c->connect_start_ms = now_ms;
	c->connect_start_us = now_us();
	set_deadline(set, c, now_ms + b->connect_timeout_ms);
	/* The client waits: its bytes stay in the kernel until we relay. */
	if (arm(set, &c->client, 0) != 0) {
		finish(c, now_ms, "io-error", "epoll failed");
		return;
	}
	fd = net_connect(&b->addr, b->addrlen, err, sizeof(err));
	if (fd < 0) {
		/* A unix socket refuses at once; TCP tells us later. */
		backend_failed(set, c, now_ms, errno == ECONNREFUSED ?
		    "backend-refused" : "backend-unreachable", err);
		return;
	}
	c->backend.fd = fd;
	ev.events = c->backend.armed = EPOLLOUT;
	ev.data.ptr = &c->backend;
	if (epoll_ctl(set->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		c->backend.fd = -1;
		finish(c, now_ms, "io-error", "epoll failed");
	}
}

static void
step_backend_tls(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	enum tls_io r = tlssess_handshake(c->backend.tls);
	char why[300];

	if (r == TLS_IO_OK) {
		enter_relay(c, now_ms);
		step_data(set, c, now_ms);
		return;
	}
	if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE ||
	    r == TLS_IO_YIELD) {
		if (arm(set, &c->backend, r == TLS_IO_WANT_READ ? EPOLLIN :
		    EPOLLOUT) == 0)
			return;
		finish(c, now_ms, "io-error", "epoll failed");
		return;
	}
	tlssess_backend_error(c->backend.tls, why, sizeof(why));
	backend_failed(set, c, now_ms, "backend-tls", why);
}

static void step_proxy(struct conn_set *set, struct conn *c, uint64_t now_ms);

static void
step_connecting(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	int e = net_connect_result(c->backend.fd);

	if (e == EINPROGRESS || e == EALREADY)
		return;
	if (e != 0) {
		backend_failed(set, c, now_ms, e == ECONNREFUSED ?
		    "backend-refused" : "backend-unreachable", strerror(e));
		return;
	}
	net_keepalive(c->backend.fd);
	if (!queue_proxy_header(set, c)) {
		finish(c, now_ms, "io-error", "cannot build the PROXY header "
		    "(out of memory, or a client name it cannot carry)");
		return;
	}
	c->state = CONN_PROXY;
	step_proxy(set, c, now_ms);
}

/*
 * The PROXY header goes first on the backend's TCP stream, in the clear
 * even when TLS follows: that is where HAProxy, nginx and stunnel read it.
 */
static void
step_proxy(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	struct dir *up = &c->dirs[0];

	while (up->off < up->len) {
		ssize_t n = send(c->backend.fd, up->buf + up->off,
		    up->len - up->off, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN) {
			if (arm(set, &c->backend, EPOLLOUT) != 0)
				finish(c, now_ms, "io-error", "epoll failed");
			return;
		}
		if (n < 0) {
			backend_failed(set, c, now_ms, "backend-error",
			    strerror(errno));
			return;
		}
		up->off += (size_t)n;
		up->written += (size_t)n;
	}
	buf_give(set, up);
	if (c->l->cfg->backend.tls) {
		c->backend.tls = tlssess_new_client(c->l->tls, c->backend.fd);
		if (c->backend.tls == NULL) {
			finish(c, now_ms, "io-error", "out of memory");
			return;
		}
		c->state = CONN_BACKEND_TLS;
		step_backend_tls(set, c, now_ms);
		return;
	}
	enter_relay(c, now_ms);
	step_data(set, c, now_ms);
}

/* Drop what the client sends until it closes or the bound is reached. */
static void
step_refused(struct conn *c)
{
	for (;;) {
		unsigned char sink[4096];
		ssize_t n = recv(c->client.fd, sink, sizeof(sink), 0);

		if (n > 0) {
			c->discarded += (size_t)n;
			if (c->discarded < REFUSED_DISCARD_MAX)
				continue;
		} else if (n < 0 && errno == EAGAIN)
			return;
		c->state = CONN_DONE;
		return;
	}
}

static void
enter_refused(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	(void)shutdown(c->client.fd, SHUT_WR); /* after the queued alert */
	c->state = CONN_REFUSED;
	set_deadline(set, c, now_ms + REFUSED_LINGER_MS);
	if (arm(set, &c->client, EPOLLIN) != 0)
		c->state = CONN_DONE;
	else
		step_refused(c);
}

/*
 * max_connections_per_identity: count the client under its SPIFFE ID (its
 * first URI name) or else its subject, across all workers.  False with
 * ${why} filled if it already holds its share.
 */
static bool
admit_identity(struct conn_set *set, struct conn *c, struct tls_refusal *why)
{
	const struct cfg_listener *lc = c->l->cfg;
	char ident[512];
	uint64_t key;
	unsigned held;

	if (lc->max_per_identity == 0 || c->unauthenticated ||
	    set->census == NULL)
		return true;
	if (tlssess_peer_uri(c->client.tls, ident, sizeof(ident)) <= 0)
		tlssess_peer_subject(c->client.tls, ident, sizeof(ident));
	key = census_id_key(set->census, lc->name, ident);
	held = census_id_count(set->census, key);
	if (held < lc->max_per_identity &&
	    census_id_add(set->census, set->worker, key) == 0) {
		c->id_key = key;
		return true;
	}
	memset(why, 0, sizeof(*why));
	why->token = "identity-limit";
	why->words = "too many connections for this client identity";
	if (held < lc->max_per_identity)
		snprintf(why->detail, sizeof(why->detail), "%.300s: this "
		    "worker's identity table is full", ident);
	else
		snprintf(why->detail, sizeof(why->detail), "%.300s already "
		    "holds %u connection(s) (max_connections_per_identity = "
		    "%u)", ident, held, lc->max_per_identity);
	tlssess_peer_subject(c->client.tls, why->subject,
	    sizeof(why->subject));
	return false;
}

/*
 * The handshake succeeded; does the client get in?  Optional verification
 * may have let a bad certificate through; the allow-list decides between
 * verified clients, then the per-identity limit.  False with ${why} filled
 * if refused.
 */
static bool
admit(struct conn_set *set, struct conn *c, uint64_t now_ms,
    struct tls_refusal *why)
{
	struct conn_listener *l = c->l;
	struct identity id;
	char rule[160], names[400];
	int v = 1;

	if (l->cfg->verify_optional) {
		v = tlssess_client_verified(c->client.tls, why);
		if (v < 0)
			return false;
		c->unauthenticated = v == 0;
	}
	if (tlssess_crl_stale(c->client.tls) &&
	    (l->crl_warned_ms == 0 || now_ms - l->crl_warned_ms >= 60000)) {
		const struct log_field f[] = { { "LISTENER", l->cfg->name } };

		log_event(LOG_WARNING, LOG_ID_CRL, f, 1, "listener %s: a CRL "
		    "is past its nextUpdate; admitting clients anyway "
		    "(tls.crl_stale = \"warn\"): publish a fresh CRL and "
		    "reload", l->cfg->name);
		l->crl_warned_ms = now_ms;
	}
	if (v == 0 || identity_allow_empty(&l->allow))
		return admit_identity(set, c, why);
	tlssess_peer_identity(c->client.tls, &id);
	if (identity_match(&l->allow, &id, rule, sizeof(rule))) {
		snprintf(c->allowed_by, sizeof(c->allowed_by), "%s", rule);
		identity_clear(&id);
		return admit_identity(set, c, why);
	}
	memset(why, 0, sizeof(*why));
	why->token = "identity-not-allowed";
	why->words = "identity not allowed";
	identity_describe(&id, names, sizeof(names));
	snprintf(why->detail, sizeof(why->detail), "%s%s: no allow rule "
	    "matched", names, id.truncated ? " (and names that could not be "
	    "read)" : "");
	tlssess_peer_subject(c->client.tls, why->subject,
	    sizeof(why->subject));
	identity_clear(&id);
	return false;
}

static void
step_handshake(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	enum tls_io r = tlssess_handshake(c->client.tls);
	struct tls_refusal why;

	/*
	 * Admission comes before the session tickets: a client refused for
	 * any reason leaves without anything that resumes.  The rest of the
	 * handshake (tickets, and our Finished in a full TLS 1.2 handshake)
	 * follows only for an admitted client.
	 */
	if (r == TLS_IO_AUTHENTICATED && !c->admitted) {
		if (!admit(set, c, now_ms, &why)) {
			log_refusal(c, now_ms, &why);
			tlssess_deny(c->client.tls, why.token);
			enter_refused(set, c, now_ms);
			return;
		}
		c->admitted = true;
		tlssess_admitted(c->client.tls);
		r = tlssess_handshake(c->client.tls);
	}
	switch (r) {
	case TLS_IO_OK:
		if (!c->admitted) { /* tlssess always asks first */
			finish(c, now_ms, "tls-error", "handshake ended "
			    "without an admission decision");
			return;
		}
		stats_add(c->l->stats, (enum stats_counter)(STATS_HS +
		    2 * (strcmp(tlssess_version(c->client.tls), "TLSv1.3") ==
		    0) + (tlssess_resumed(c->client.tls) != 0)), 1);
		stats_observe(c->l->stats, STATS_HS_BUCKET, STATS_HS_SUM_US,
		    now_us() - c->start_us);
		c->ndirs = c->l->cfg->mode == CFG_MODE_RELAY ? 2 : 1;
		if (c->l->cfg->mode == CFG_MODE_RELAY) {
			start_connect(set, c, now_ms);
			return;
		}
		if (!enter_echo(set, c, now_ms)) {
			finish(c, now_ms, "io-error", "out of memory");
			return;
		}
		step_data(set, c, now_ms);
		return;
	case TLS_IO_WANT_READ:
	case TLS_IO_WANT_WRITE:
	case TLS_IO_YIELD:
		/* Yield: a socket with room reports EPOLLOUT at once, after
		 * the other connections ready in this round. */
		if (arm(set, &c->client, r == TLS_IO_WANT_READ ? EPOLLIN :
		    EPOLLOUT) == 0)
			return;
		break;
	case TLS_IO_AUTHENTICATED: /* only once: a second time is a bug */
	case TLS_IO_EOF:
	case TLS_IO_ERROR:
		break;
	}
	if (c->admitted) {
		/* Admitted, then lost while we finished the handshake. */
		fail_side(c, &c->client, now_ms);
		return;
	}
	tlssess_refusal(c->client.tls, &why);
	log_refusal(c, now_ms, &why);
	if (strcmp(why.token, "peer-closed") == 0 ||
	    strcmp(why.token, "peer-reset") == 0)
		c->state = CONN_DONE;
	else
		enter_refused(set, c, now_ms);
}

static void
step(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	switch (c->state) {
	case CONN_HANDSHAKE:
		step_handshake(set, c, now_ms);
		break;
	case CONN_CONNECTING:
		step_connecting(set, c, now_ms);
		break;
	case CONN_PROXY:
		step_proxy(set, c, now_ms);
		break;
	case CONN_BACKEND_TLS:
		step_backend_tls(set, c, now_ms);
		break;
	case CONN_ECHO:
	case CONN_RELAY:
		step_data(set, c, now_ms);
		break;
	case CONN_REFUSED:
		step_refused(c);
		break;
	case CONN_CLOSING:
	case CONN_DONE:
		break;
	}
	count_bytes(c);
	if (c->state == CONN_CLOSING)
		step_closing(set, c, now_ms);
	if (c->state == CONN_DONE)
		conn_free(set, c);
}

int
conn_new(struct conn_set *set, struct conn_listener *l, int fd,
    const struct sockaddr *peer, socklen_t peerlen, uint64_t now_ms)
{
	struct epoll_event ev;
	struct conn *c;
	char a[NET_ADDRSTRLEN];

	if (timerq_reserve(&set->timers, set->n + 1) != 0 ||
	    (c = calloc(1, sizeof(*c))) == NULL)
		goto err0;
	c->client.kind = c->backend.kind = CONN_EV_KIND;
	c->client.c = c->backend.c = c;
	c->client.fd = fd;
	c->backend.fd = -1;
	c->l = l;
	c->start_ms = c->last_ms = now_ms;
	c->start_us = now_us();
	if (peerlen <= sizeof(c->peer_sa)) {
		memcpy(&c->peer_sa, peer, peerlen);
		c->peer_len = peerlen;
	}
	net_addr_str(peer, peerlen, c->peer, sizeof(c->peer));
	if ((c->client.tls = tlssess_new(l->tls, fd)) == NULL)
		goto err1;
	ev.events = c->client.armed = EPOLLIN;
	ev.data.ptr = &c->client;
	if (epoll_ctl(set->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		goto err2;
	c->next = set->head;
	if (set->head != NULL)
		set->head->prev = c;
	set->head = c;
	set->n++;
	l->active++;
	stats_add(l->stats, STATS_CONNS, 1);
	stats_set(l->stats, STATS_ACTIVE, l->active);
	set_deadline(set, c, now_ms + l->cfg->handshake_timeout_ms);
	if (set->census != NULL)
		census_conns_set(set->census, set->worker, set->n);
	/* The ClientHello is usually here already: start without a wakeup. */
	step(set, c, now_ms);
	return 0;

err2:
	tlssess_free(c->client.tls);
err1:
	free(c);
err0:
	log_msg(LOG_ERR, "cannot take connection from %s: %s",
	    net_addr_str(peer, peerlen, a, sizeof(a)),
	    strerror(errno ? errno : ENOMEM));
	close(fd);
	return -1;
}

void
conn_event(struct conn_set *set, void *cookie, uint32_t events,
    uint64_t now_ms)
{
	struct side *s = cookie;

	if (s->c->state == CONN_DONE)
		return; /* finished earlier in this batch, via its other socket */
	if (s->tls != NULL &&
	    (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
		tlssess_readable(s->tls);
	if (s == &s->c->backend && s->c->state == CONN_RELAY &&
	    (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
		s->c->backend_gone = true;
	if (s->c->state == CONN_CLOSING) {
		step_closing(set, s->c, now_ms);
		if (s->c->state == CONN_DONE)
			conn_free(set, s->c);
		return;
	}
	step(set, s->c, now_ms);
}

static void
expire(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	struct tls_refusal why;
	char words[160];

	switch (c->state) {
	case CONN_HANDSHAKE:
		memset(&why, 0, sizeof(why));
		why.token = "handshake-timeout";
		why.words = "handshake timeout";
		snprintf(why.detail, sizeof(why.detail), "no complete "
		    "handshake within %.1f s", c->l->cfg->handshake_timeout_ms /
		    1000.0);
		log_refusal(c, now_ms, &why);
		c->state = CONN_DONE;
		break;
	case CONN_CONNECTING:
	case CONN_PROXY:
	case CONN_BACKEND_TLS:
		snprintf(words, sizeof(words), "no %s within %.1f s",
		    c->state == CONN_BACKEND_TLS ? "TLS handshake" :
		    "connection", c->l->cfg->backend.connect_timeout_ms /
		    1000.0);
		backend_failed(set, c, now_ms, "backend-timeout", words);
		break;
	case CONN_ECHO:
	case CONN_RELAY:
		if (c->ndirs > 1 && (c->dirs[0].shut || c->dirs[1].shut ||
		    c->dirs[0].eof || c->dirs[1].eof || c->dirs[0].drop ||
		    c->dirs[1].drop || c->backend_gone)) {
			snprintf(words, sizeof(words), "half-closed and idle "
			    "for %.1f s", c->l->cfg->linger_timeout_ms / 1000.0);
			begin_closing(set, c, now_ms, "linger-timeout", words);
		} else {
			snprintf(words, sizeof(words), "idle for %.1f s",
			    c->l->cfg->idle_timeout_ms / 1000.0);
			begin_closing(set, c, now_ms, "idle-timeout", words);
		}
		break;
	case CONN_CLOSING:
	case CONN_REFUSED:
	case CONN_DONE:
		c->state = CONN_DONE;
		break;
	}
	/* One try at close_notify: the peer already had its time. */
	if (c->state == CONN_CLOSING)
		step_closing(set, c, now_ms);
	/* A timeout close still gets CLOSE_MS for its close_notify. */
	if (c->state == CONN_CLOSING || c->state == CONN_REFUSED)
		return;
	conn_free(set, c);
}

void
conn_set_expire(struct conn_set *set, uint64_t now_ms)
{
	struct timerq_entry *e;

	while ((e = timerq_pop(&set->timers, now_ms)) != NULL) {
		struct conn *c = (struct conn *)(void *)((char *)e -
		    offsetof(struct conn, timer));

		expire(set, c, now_ms);
	}
}

uint64_t
conn_set_next_deadline(const struct conn_set *set)
{
	return timerq_next(&set->timers);
}

void
conn_set_close_all(struct conn_set *set, const char *reason, uint64_t now_ms)
{
	struct conn *c, *next;
	struct tls_refusal why;

	for (c = set->head; c != NULL; c = next) {
		next = c->next;
		switch (c->state) {
		case CONN_HANDSHAKE:
			memset(&why, 0, sizeof(why));
			why.token = reason;
			why.words = "server shutting down";
			log_refusal(c, now_ms, &why);
			break;
		case CONN_CONNECTING:
		case CONN_PROXY:
		case CONN_BACKEND_TLS:
		case CONN_ECHO:
		case CONN_RELAY:
			begin_closing(set, c, now_ms, reason,
			    "server shutting down");
			step_closing(set, c, now_ms);
			break;
		case CONN_CLOSING:
		case CONN_REFUSED:
		case CONN_DONE:
			break;
		}
		conn_free(set, c);
	}
}
