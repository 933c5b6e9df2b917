/*
 * conn: one client connection, from accept to close.
 */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "tlssess.h"

/* One TLS record's worth: the echo never holds more than this per client. */
#define CONN_BUF 16384
/*
 * After refusing a handshake, read and drop what the client still sends for
 * this long (or this much) before closing: closing with unread input makes
 * the kernel send a reset, which can destroy the alert that says why.
 */
#define REFUSED_LINGER_MS 1000
#define REFUSED_DISCARD_MAX (64 * 1024)
/* Records echoed per wakeup, so one busy client cannot starve the others. */
#define ECHO_BUDGET 8

enum conn_state {
	CONN_HANDSHAKE, /* until the client is verified */
	CONN_ECHO,      /* banner, then bytes back as they come */
	CONN_CLOSING,   /* sending close_notify */
	CONN_REFUSED,   /* alert sent: discarding the client's rest */
	CONN_DONE,      /* to be freed */
};

struct conn {
	int kind; /* CONN_EV_KIND: first, see conn.h */
	enum conn_state state;
	int fd;
	struct conn_listener *l;
	struct tlssess *tls;
	struct conn *prev, *next; /* in the worker's set */
	uint32_t armed;           /* epoll events registered */
	uint64_t start_ms;
	uint64_t deadline_ms;     /* of the current state; 0: none */
	uint64_t bytes_in, bytes_out;
	size_t discarded;         /* CONN_REFUSED: bytes dropped */
	const char *close_reason; /* token for CLOSE_REASON= */
	char peer[NET_ADDRSTRLEN];
	size_t off, len; /* pending output is buf[off..len) */
	unsigned char *buf; /* CONN_BUF bytes, only once the client is in */
};

void
conn_set_init(struct conn_set *set, int epfd)
{
	set->head = NULL;
	set->n = 0;
	set->epfd = epfd;
}

/* Register interest in ${want}, touching epoll only on change. */
static int
arm(struct conn_set *set, struct conn *c, uint32_t want)
{
	struct epoll_event ev = { .events = want, .data.ptr = c };

	if (want == c->armed)
		return 0;
	if (epoll_ctl(set->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
		return -1;
	c->armed = want;
	return 0;
}

static uint32_t
io_events(enum tls_io r)
{
	return r == TLS_IO_WANT_WRITE ? EPOLLOUT : EPOLLIN;
}

static void
log_close(const struct conn *c, uint64_t now_ms, const char *words)
{
	char subject[512], in[24], out[24], dur[24];
	struct log_field f[] = {
		{ "LISTENER", c->l->cfg->name },
		{ "PEER_ADDR", c->peer },
		{ "CLIENT_SUBJECT", subject },
		{ "TLS_VERSION", tlssess_version(c->tls) },
		{ "TLS_CIPHER", tlssess_cipher(c->tls) },
		{ "BYTES_IN", in },
		{ "BYTES_OUT", out },
		{ "DURATION_MS", dur },
		{ "CLOSE_REASON", c->close_reason },
	};

	tlssess_peer_subject(c->tls, subject, sizeof(subject));
	snprintf(in, sizeof(in), "%" PRIu64, c->bytes_in);
	snprintf(out, sizeof(out), "%" PRIu64, c->bytes_out);
	snprintf(dur, sizeof(dur), "%" PRIu64, now_ms - c->start_ms);
	log_event(LOG_INFO, LOG_ID_CONN_CLOSE, f, sizeof(f) / sizeof(f[0]),
	    "connection closed: %s", words);
}

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
	/* A bare connect-and-close is a health check or a port scan. */
	int prio = strcmp(r->token, "peer-closed") == 0 ? LOG_INFO :
	    LOG_WARNING;

	snprintf(dur, sizeof(dur), "%" PRIu64, now_ms - c->start_ms);
	log_event(prio, LOG_ID_REFUSED, f, sizeof(f) / sizeof(f[0]),
	    "handshake refused: %s", r->words);
}

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
	(void)epoll_ctl(set->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	tlssess_free(c->tls);
	free(c->buf);
	free(c);
}

/* Finish: log why and mark for freeing. */
static void
finish(struct conn *c, uint64_t now_ms, const char *token, const char *words)
{
	c->close_reason = token;
	log_close(c, now_ms, words);
	c->state = CONN_DONE;
}

static void
finish_error(struct conn *c, uint64_t now_ms)
{
	char msg[160], words[200];

	tlssess_error(c->tls, msg, sizeof(msg));
	snprintf(words, sizeof(words), "TLS error: %s", msg);
	finish(c, now_ms, "tls-error", words);
}

/* Send close_notify, then the connection is done. */
static void
step_closing(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	enum tls_io r = tlssess_close_notify(c->tls);

	if (r == TLS_IO_WANT_WRITE || r == TLS_IO_WANT_READ) {
		if (arm(set, c, io_events(r)) == 0)
			return;
	}
	(void)shutdown(c->fd, SHUT_WR);
	c->state = CONN_DONE;
	(void)now_ms;
}

static void
begin_closing(struct conn_set *set, struct conn *c, uint64_t now_ms,
    const char *token, const char *words)
{
	c->close_reason = token;
	log_close(c, now_ms, words);
	c->state = CONN_CLOSING;
	/* A peer that never reads must not hold us: a short, fixed bound. */
	c->deadline_ms = now_ms + 2000;
	step_closing(set, c, now_ms);
}

/*
 * Echo: write out what we hold, and read more only once all of it is gone.
 * A client that stops reading thus stops being read (back-pressure), and we
 * never call mbedTLS read while a write is half done.
 */
static void
step_echo(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	unsigned budget = ECHO_BUDGET;

	for (;;) {
		enum tls_io r;
		size_t n = 0;

		while (c->off < c->len) {
			r = tlssess_write(c->tls, c->buf + c->off,
			    c->len - c->off, &n);
			if (r == TLS_IO_OK) {
				c->off += n;
				c->bytes_out += n;
				continue;
			}
			if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
				if (arm(set, c, io_events(r)) != 0)
					finish(c, now_ms, "io-error",
					    "epoll failed");
				return;
			}
			if (r == TLS_IO_EOF)
				finish(c, now_ms, "client-closed", "client "
				    "closed before reading all data");
			else
				finish_error(c, now_ms);
			return;
		}
		c->off = c->len = 0;
		if (budget-- == 0) {
			/*
			 * Yield to the other ready connections.  Level-triggered
			 * EPOLLIN brings us back; input already inside mbedTLS
			 * is announced by no socket: ask for EPOLLOUT, which a
			 * socket with room reports at once.
			 */
			if (arm(set, c, tlssess_pending(c->tls) ?
			    EPOLLIN | EPOLLOUT : EPOLLIN) != 0)
				finish(c, now_ms, "io-error", "epoll failed");
			return;
		}

		r = tlssess_read(c->tls, c->buf, CONN_BUF, &n);
		if (r == TLS_IO_OK) {
			c->len = n;
			c->bytes_in += n;
			if (c->l->cfg->idle_timeout_ms > 0)
				c->deadline_ms = now_ms +
				    c->l->cfg->idle_timeout_ms;
			continue;
		}
		if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
			if (arm(set, c, io_events(r)) != 0)
				finish(c, now_ms, "io-error", "epoll failed");
			return;
		}
		if (r == TLS_IO_EOF)
			begin_closing(set, c, now_ms, "client-closed",
			    "client closed the connection");
		else
			finish_error(c, now_ms);
		return;
	}
}

/*
 * The client is in: now it gets its buffer (an unauthenticated peer holds
 * only what mbedTLS needs for the handshake).  False if out of memory.
 */
static bool
enter_echo(struct conn *c, uint64_t now_ms)
{
	const struct cfg_listener *lc = c->l->cfg;

	if ((c->buf = malloc(CONN_BUF)) == NULL)
		return false;
	c->state = CONN_ECHO;
	c->deadline_ms = lc->idle_timeout_ms ? now_ms + lc->idle_timeout_ms : 0;
	if (lc->banner != NULL) {
		/* CFG_BANNER_MAX < CONN_BUF: config guarantees it fits. */
		memcpy(c->buf, lc->banner, lc->banner_len);
		c->off = 0;
		c->len = lc->banner_len;
	}
	return true;
}

/* Drop what the client sends until it closes or the bound is reached. */
static void
step_refused(struct conn *c)
{
	for (;;) {
		unsigned char sink[4096];
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);

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
	(void)shutdown(c->fd, SHUT_WR); /* after the alert mbedTLS queued */
	c->state = CONN_REFUSED;
	c->deadline_ms = now_ms + REFUSED_LINGER_MS;
	if (arm(set, c, EPOLLIN) != 0)
		c->state = CONN_DONE;
	else
		step_refused(c);
}

static void
step_handshake(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	enum tls_io r = tlssess_handshake(c->tls);
	struct tls_refusal why;

	switch (r) {
	case TLS_IO_OK:
		if (!enter_echo(c, now_ms)) {
			finish(c, now_ms, "io-error", "out of memory");
			return;
		}
		step_echo(set, c, now_ms);
		return;
	case TLS_IO_WANT_READ:
	case TLS_IO_WANT_WRITE:
		if (arm(set, c, io_events(r)) == 0)
			return;
		break;
	case TLS_IO_EOF:
	case TLS_IO_ERROR:
		break;
	}
	tlssess_refusal(c->tls, &why);
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
	case CONN_ECHO:
		step_echo(set, c, now_ms);
		break;
	case CONN_CLOSING:
		step_closing(set, c, now_ms);
		break;
	case CONN_REFUSED:
		step_refused(c);
		break;
	case CONN_DONE:
		break;
	}
	if (c->state == CONN_DONE)
		conn_free(set, c);
}

int
conn_new(struct conn_set *set, struct conn_listener *l, int fd,
    const struct sockaddr *peer, socklen_t peerlen, uint64_t now_ms)
{
	struct epoll_event ev;
	struct conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto err0;
	c->kind = CONN_EV_KIND;
	c->fd = fd;
	c->l = l;
	c->start_ms = now_ms;
	c->deadline_ms = now_ms + l->cfg->handshake_timeout_ms;
	net_addr_str(peer, peerlen, c->peer, sizeof(c->peer));
	if ((c->tls = tlssess_new(l->tls, fd)) == NULL)
		goto err1;
	ev.events = c->armed = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(set->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		goto err2;
	c->next = set->head;
	if (set->head != NULL)
		set->head->prev = c;
	set->head = c;
	set->n++;
	l->active++;
	/* The ClientHello is usually here already: start without a wakeup. */
	step(set, c, now_ms);
	return 0;

err2:
	tlssess_free(c->tls);
err1:
	free(c);
err0:
	log_msg(LOG_ERR, "cannot take connection from %s: %s",
	    net_addr_str(peer, peerlen, (char[NET_ADDRSTRLEN]){ 0 },
	    NET_ADDRSTRLEN), strerror(errno ? errno : ENOMEM));
	close(fd);
	return -1;
}

void
conn_event(struct conn_set *set, struct conn *c, uint32_t events,
    uint64_t now_ms)
{
	(void)events; /* errors and hang-ups surface through the next call */
	step(set, c, now_ms);
}

static void
expire(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
	struct tls_refusal why;
	char words[128];

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
	case CONN_ECHO:
		snprintf(words, sizeof(words), "idle for %.1f s",
		    c->l->cfg->idle_timeout_ms / 1000.0);
		begin_closing(set, c, now_ms, "idle-timeout", words);
		/* One try only: the peer already had its time. */
		c->state = CONN_DONE;
		break;
	case CONN_CLOSING:
	case CONN_REFUSED:
	case CONN_DONE:
		c->state = CONN_DONE;
		break;
	}
	conn_free(set, c);
}

void
conn_set_tick(struct conn_set *set, uint64_t now_ms)
{
	struct conn *c, *next;

	for (c = set->head; c != NULL; c = next) {
		next = c->next;
		if (c->deadline_ms != 0 && now_ms >= c->deadline_ms)
			expire(set, c, now_ms);
	}
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
		case CONN_ECHO:
			begin_closing(set, c, now_ms, reason,
			    "server shutting down");
			break;
		case CONN_CLOSING:
		case CONN_REFUSED:
		case CONN_DONE:
			break;
		}
		conn_free(set, c);
	}
}
