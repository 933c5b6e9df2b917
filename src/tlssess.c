/*
 * tlssess: one non-blocking TLS server session over a socket.
 */
#include "tlssess.h"
#include "tlsctx_int.h"
#include "identity.h"
#include "json.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <time.h>
#include <mbedtls/platform_util.h>

/* The client's leaf certificate in words, for refusal messages only. */
struct leaf_text {
	char subject[512];
	char issuer[512];
	char from[32];
	char to[32];
};

/* A field of ${s}'s leaf_text, "" if there is none. */
#define LEAF(s, f) ((s)->leaf != NULL ? (s)->leaf->f : "")

/* Certificates in a verified chain we keep track of: the leaf, up to 8
 * intermediates (MBEDTLS_X509_MAX_INTERMEDIATE_CA) and the CA. */
#define TLSSESS_CHAIN_MAX 12

/*
 * A client as one of our tickets describes it: the verified chain (leaf
 * first, the CA itself left out unless the leaf is the CA) and the
 * SHA-256 of the CA it chained to.  auth 0: no certificate.
 */
struct ticket_peer {
	mbedtls_x509_crt chain;
	uint8_t anchor[32];
	uint64_t auth_time; /* Unix time of the client's full handshake */
	int auth;
	int crl_stale;  /* a CRL past its nextUpdate was consulted */
};

static void
ticket_peer_free(struct ticket_peer *p)
{
	if (p == NULL)
		return;
	mbedtls_x509_crt_free(&p->chain);
	free(p);
}

/* Bytes one small read may fetch ahead: a 64-byte message's record and
 * its header come in one recv(); a 16 KiB record costs no more calls. */
#define TLSSESS_READAHEAD 256

struct tlssess {
	mbedtls_ssl_context ssl;
	struct tlsctx *ctx; /* not owned */
	const mbedtls_x509_crt *trusted; /* CAs the peer must chain to */
	int fd;             /* not owned */
	int last_ret;       /* last mbedTLS error, 0 if none */
	int first_byte;     /* first byte the client sent, -1 before it */
	int saw_eof;        /* the client's FIN arrived */
	uint64_t bytes_rx;  /* raw TCP bytes read, for refusal messages */
	/* The client's leaf certificate as the verify callback saw it. */
	int leaf_seen;
	int depth_exceeded;    /* longer chain than verify_depth allows */
	int write_pending;     /* a record waits in mbedTLS's output buffer */
	int notified;          /* our close_notify is out */
	int server;            /* a client's session (not one to a backend) */
	/*
	 * Admission comes before tickets: the handshake stops once the
	 * client has proven itself (its Finished verified) and before we
	 * send any ticket, until conn has decided (AUTHN_DECIDING); only an
	 * admitted client's handshake goes on to issue them.
	 */
	enum { AUTHN_HANDSHAKE, AUTHN_DECIDING, AUTHN_ADMITTED } authn;
	int full_hs;           /* we sent our certificate: not a resumption */
	/* The chain the verify callback saw, leaf first: pointers into the
	 * session's peer certificates and our CAs, valid while ssl lives. */
	const mbedtls_x509_crt *vchain[TLSSESS_CHAIN_MAX];
	unsigned vlen;
	int vchain_bad;        /* longer than TLSSESS_CHAIN_MAX */
	struct ticket_peer *pending; /* the last ticket our parse callback
	                                accepted, until mbedTLS resumes it */
	struct ticket_peer *resumed_peer; /* what the resumed ticket carried;
	                                     non-NULL iff mbedTLS resumed */
	const mbedtls_x509_crt *peer; /* the authenticated client's
	                                 certificate; NULL: none */
	int crl_stale;         /* a CRL past its nextUpdate was consulted */
	int leaf_issuer_known; /* issuer DN equals one of our CAs' subjects */
	struct leaf_text *leaf; /* for refusal messages; freed on admission */
	/* Read-ahead: mbedTLS asks for a record's 5-byte header, then its
	 * body; for small records one recv() gets both (and often the next). */
	uint16_t ra_off, ra_len;
	int rx_drained; /* the last recv() came back short: the socket is
	                   empty, no need to ask it again before epoll */
	unsigned char ra[TLSSESS_READAHEAD];
};

/*
 * The session mbedTLS is working on right now.  Ticket callbacks get only
 * an mbedtls_ssl_session; they find the connection's certificate here.
 * Workers are single-threaded and every mbedTLS call on a session goes
 * through tlssess_handshake/read/write, which set it.
 */
static struct tlssess *current;

/*
 * The authenticated client certificate: verified in this handshake, or
 * carried by the ticket it resumed (and checked again then); NULL before
 * the handshake has settled who the client is, or if it has none.
 */
static const mbedtls_x509_crt *
tlssess_peer_crt(const struct tlssess *s)
{
	return s->peer;
}

static int
sess_send(void *p, const unsigned char *buf, size_t len)
{
	struct tlssess *s = p;
	ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);

	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN || errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	if (errno == EPIPE || errno == ECONNRESET)
		return MBEDTLS_ERR_NET_CONN_RESET;
	return MBEDTLS_ERR_NET_SEND_FAILED;
}

/*
 * mbedTLS's receive callback.  Small requests (a record header) read up to
 * TLSSESS_READAHEAD bytes and keep the rest for the next call; large ones
 * (a record body) go straight into mbedTLS's buffer.  A short read means
 * the socket is empty: the next call answers WANT_READ without a system
 * call (level-triggered epoll wakes us when more arrives).
 */
static int
sess_recv(void *p, unsigned char *buf, size_t len)
{
	struct tlssess *s = p;
	ssize_t n;
	size_t want;

	if (s->ra_off < s->ra_len) {
		n = (ssize_t)(s->ra_len - s->ra_off);
		if ((size_t)n > len)
			n = (ssize_t)len;
		memcpy(buf, s->ra + s->ra_off, (size_t)n);
		s->ra_off = (uint16_t)(s->ra_off + n);
		return (int)n;
	}
	if (s->rx_drained) {
		s->rx_drained = 0;
		return MBEDTLS_ERR_SSL_WANT_READ;
	}
	want = len < sizeof(s->ra) ? sizeof(s->ra) : len;
	n = recv(s->fd, len < sizeof(s->ra) ? s->ra : buf, want, 0);
	if (n > 0) {
		const unsigned char *got = len < sizeof(s->ra) ? s->ra : buf;

		if (s->bytes_rx == 0)
			s->first_byte = got[0];
		s->bytes_rx += (uint64_t)n;
		s->rx_drained = (size_t)n < want;
		if (got == buf)
			return (int)n;
		s->ra_off = 0;
		s->ra_len = (uint16_t)n;
		return sess_recv(s, buf, len);
	}
	if (n == 0) {
		s->saw_eof = 1;
		return 0; /* mbedTLS: MBEDTLS_ERR_SSL_CONN_EOF */
	}
	if (errno == EAGAIN || errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (errno == ECONNRESET)
		return MBEDTLS_ERR_NET_CONN_RESET;
	return MBEDTLS_ERR_NET_RECV_FAILED;
}

/*
 * A DN as text for logs.  mbedTLS writes '?' for non-printable bytes; a DN
 * too long for ${len} is cut with a marker rather than dropped.
 */
static void
tlssess_dn(const mbedtls_x509_name *dn, char *buf, size_t len)
{
	static const char cut[] = "...(truncated)";

	if (mbedtls_x509_dn_gets(buf, len, dn) >= 0)
		return;
	buf[len - 1] = '\0';
	if (strlen(buf) > len - sizeof(cut))
		buf[len - sizeof(cut)] = '\0';
	strcat(buf, cut);
}

/* Remember the client's leaf certificate for refusal messages. */
static int
sess_verify(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tlssess *s = p;
	const mbedtls_x509_crt *ca;

	/* Our policy on top of mbedTLS's verdict; otherwise we take notes. */
	if (depth > (int)s->ctx->verify_depth + 1) {
		*flags |= MBEDTLS_X509_BADCERT_OTHER;
		s->depth_exceeded = 1;
	}
	if (*flags & MBEDTLS_X509_BADCRL_EXPIRED) {
		s->crl_stale = 1;
		if (!s->ctx->crl_stale_refuse)
			*flags &= ~(uint32_t)MBEDTLS_X509_BADCRL_EXPIRED;
	}
	/* mbedTLS calls us once per certificate of the chain it built, CA
	 * first; a ticket carries that chain. */
	if (depth >= 0 && depth < TLSSESS_CHAIN_MAX) {
		s->vchain[depth] = crt;
		if ((unsigned)depth >= s->vlen)
			s->vlen = (unsigned)depth + 1;
	} else
		s->vchain_bad = 1;
	if (depth != 0)
		return 0;
	s->leaf_seen = 1;
	/* Out of memory only costs the words of a refusal message. */
	if (s->leaf == NULL)
		s->leaf = calloc(1, sizeof(*s->leaf));
	if (s->leaf != NULL) {
		struct leaf_text *t = s->leaf;

		tlssess_dn(&crt->subject, t->subject, sizeof(t->subject));
		tlssess_dn(&crt->issuer, t->issuer, sizeof(t->issuer));
		tlsctx_time_str(&crt->valid_from, t->from, sizeof(t->from));
		tlsctx_time_str(&crt->valid_to, t->to, sizeof(t->to));
	}
	s->leaf_issuer_known = 0;
	for (ca = s->trusted; ca != NULL && ca->raw.len > 0; ca = ca->next)
		if (ca->subject_raw.len == crt->issuer_raw.len &&
		    memcmp(ca->subject_raw.p, crt->issuer_raw.p,
		    crt->issuer_raw.len) == 0)
			s->leaf_issuer_known = 1;
	return 0;
}

struct tlssess *
tlssess_new(struct tlsctx *t, int fd)
{
	struct tlssess *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->ctx = t;
	s->trusted = &t->ca;
	s->fd = fd;
	s->first_byte = -1;
	s->server = 1;
	s->authn = AUTHN_HANDSHAKE;
	mbedtls_ssl_init(&s->ssl);
	if (mbedtls_ssl_setup(&s->ssl, &t->conf) != 0) {
		mbedtls_ssl_free(&s->ssl);
		free(s);
		return NULL;
	}
	mbedtls_ssl_set_bio(&s->ssl, s, sess_send, sess_recv, NULL);
	mbedtls_ssl_set_verify(&s->ssl, sess_verify, s);
	return s;
}

struct tlssess *
tlssess_new_client(struct tlsctx *t, int fd)
{
	struct tlssess *s;

	if (!t->has_backend || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->ctx = t;
	s->trusted = &t->bca;
	s->fd = fd;
	s->first_byte = -1;
	s->authn = AUTHN_ADMITTED; /* we are the client: nothing to decide */
	mbedtls_ssl_init(&s->ssl);
	if (mbedtls_ssl_setup(&s->ssl, &t->bconf) != 0 ||
	    mbedtls_ssl_set_hostname(&s->ssl, t->bname) != 0) {
		mbedtls_ssl_free(&s->ssl);
		free(s);
		return NULL;
	}
	mbedtls_ssl_set_bio(&s->ssl, s, sess_send, sess_recv, NULL);
	mbedtls_ssl_set_verify(&s->ssl, sess_verify, s);
	return s;
}

void
tlssess_backend_error(const struct tlssess *s, char *buf, size_t len)
{
	uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
	char m[160];

	if (s->last_ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED &&
	    flags != 0 && flags != UINT32_MAX) {
		if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
			snprintf(buf, len, "backend certificate \"%.200s\" "
			    "does not hold the name \"%s\"", LEAF(s, subject),
			    s->ctx->bname);
		else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
			snprintf(buf, len, "backend certificate issued by "
			    "\"%.200s\", not by a CA in %s", LEAF(s, issuer),
			    s->ctx->bca_path);
		else if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
			snprintf(buf, len, "backend certificate expired (%s)",
			    LEAF(s, to));
		else {
			if (mbedtls_x509_crt_verify_info(m, sizeof(m), "",
			    flags) < 0)
				m[0] = '\0';
			m[strcspn(m, "\n")] = '\0';
			snprintf(buf, len, "backend certificate refused: %s", m);
		}
		return;
	}
	if (s->last_ret == MBEDTLS_ERR_SSL_CONN_EOF ||
	    s->last_ret == MBEDTLS_ERR_NET_CONN_RESET) {
		snprintf(buf, len, "backend closed the connection during the "
		    "TLS handshake (does it speak TLS? does it want a client "
		    "certificate?)");
		return;
	}
	if (s->last_ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
		snprintf(buf, len, "backend refused the TLS handshake with an "
		    "alert (client certificate required or not trusted?)");
		return;
	}
	mbedtls_strerror(s->last_ret, m, sizeof(m));
	snprintf(buf, len, "TLS to backend failed: %s", m);
}

void
tlssess_free(struct tlssess *s)
{
	if (s == NULL)
		return;
	mbedtls_ssl_free(&s->ssl); /* zeroizes session keys */
	ticket_peer_free(s->pending);
	ticket_peer_free(s->resumed_peer);
	free(s->leaf);
	if (current == s)
		current = NULL;
	mbedtls_platform_zeroize(s, sizeof(*s));
	free(s);
}

/* Map an mbedTLS return to tls_io, remembering errors. */
static enum tls_io
io_result(struct tlssess *s, int ret)
{
	switch (ret) {
	case MBEDTLS_ERR_SSL_WANT_READ:
		return TLS_IO_WANT_READ;
	case MBEDTLS_ERR_SSL_WANT_WRITE:
		return TLS_IO_WANT_WRITE;
	case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
	case MBEDTLS_ERR_SSL_CONN_EOF:
		return TLS_IO_EOF;
	default:
		s->last_ret = ret;
		return TLS_IO_ERROR;
	}
}

/*
 * Handshake steps run in slices: the expensive ones (ECDHE with signing,
 * verifying the client's chain, verifying its CertificateVerify) are
 * ~0.2-0.7 ms each; mbedtls_ssl_handshake() would run them back to back
 * for up to ~1.5 ms while the worker's other connections wait.
 */
#define TLSSESS_SLICE_US 200
/* handshake_slice's results besides 0 (over) and mbedTLS's errors (< 0). */
#define SLICE_YIELD 1   /* used its time; more to do */
#define SLICE_DECIDE 2  /* the client is authenticated: admit or refuse */

/*
 * The client has proven itself: settle who it is.  mbedTLS resumed a
 * session if and only if we did not send our certificate; it resumed the
 * last ticket our parse callback accepted (it tries a client's tickets in
 * order and stops at the first it accepts).  Only now does a ticket's
 * identity take effect: one that mbedTLS turned down (on age, key exchange
 * mode, ...) leaves a full handshake that stands on its own.
 */
static int
settle(struct tlssess *s)
{
	if (!s->full_hs) {
		if (s->pending == NULL)
			return MBEDTLS_ERR_SSL_INTERNAL_ERROR; /* no such path */
		s->resumed_peer = s->pending; /* ownership moves */
		s->pending = NULL;
		s->peer = s->resumed_peer->auth ? &s->resumed_peer->chain : NULL;
		s->crl_stale = s->resumed_peer->crl_stale;
		return 0;
	}
	ticket_peer_free(s->pending);
	s->pending = NULL;
	if (s->vlen > 0 && s->vchain[0] != NULL &&
	    mbedtls_ssl_get_verify_result(&s->ssl) == 0)
		s->peer = s->vchain[0];
	return 0;
}

/*
 * Run handshake steps until the handshake is over (0), it waits for the
 * socket (an mbedTLS WANT_*), it has used a slice of time (SLICE_YIELD) or
 * the client is authenticated and admission must be decided before any
 * ticket goes out (SLICE_DECIDE).  mbedTLS's state is read directly: no
 * public API tells which step comes next, and the states are part of its
 * public enum.
 */
static int
handshake_slice(struct tlssess *s)
{
	struct timespec t0, t;
	int ret, state;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		state = s->ssl.MBEDTLS_PRIVATE(state);
		if (s->authn == AUTHN_DECIDING)
			return SLICE_DECIDE;
		if (state == MBEDTLS_SSL_HANDSHAKE_OVER)
			return 0;
		if (state == MBEDTLS_SSL_SERVER_CERTIFICATE)
			s->full_hs = 1;
		if ((ret = mbedtls_ssl_handshake_step(&s->ssl)) != 0)
			return ret;
		/*
		 * The decision point.  TLS 1.2: after the client's Finished,
		 * before our NewSessionTicket (and our ChangeCipherSpec and
		 * Finished) in a full handshake, before the wrap-up in a
		 * resumed one.  TLS 1.3: after the wrap-up that follows the
		 * client's Finished (application keys in place, so an alert
		 * is one the client can read), before NewSessionTickets.
		 */
		if (s->authn == AUTHN_HANDSHAKE &&
		    s->ssl.MBEDTLS_PRIVATE(state) != state &&
		    state == (mbedtls_ssl_get_version_number(&s->ssl) ==
		    MBEDTLS_SSL_VERSION_TLS1_3 ? MBEDTLS_SSL_HANDSHAKE_WRAPUP :
		    MBEDTLS_SSL_CLIENT_FINISHED)) {
			if ((ret = settle(s)) != 0)
				return ret;
			s->authn = AUTHN_DECIDING;
			return SLICE_DECIDE;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000000L +
		    (t.tv_nsec - t0.tv_nsec) / 1000 >= TLSSESS_SLICE_US)
			return SLICE_YIELD;
	}
}

enum tls_io
tlssess_handshake(struct tlssess *s)
{
	int ret;

	current = s;
	ret = handshake_slice(s);
	current = NULL;
	if (ret == 0)
		return TLS_IO_OK;
	if (ret == SLICE_YIELD)
		return TLS_IO_YIELD;
	if (ret == SLICE_DECIDE)
		return TLS_IO_AUTHENTICATED;
	if (ret == MBEDTLS_ERR_SSL_CONN_EOF ||
	    ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
		s->last_ret = ret; /* during a handshake, EOF is a refusal */
		return TLS_IO_ERROR;
	}
	/*
	 * mbedTLS 3.6 refuses a TLS 1.2 client without a certificate
	 * silently; tell the client why it is refused (RFC 5246 7.4.6).
	 */
	if (ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE &&
	    mbedtls_ssl_get_version_number(&s->ssl) ==
	    MBEDTLS_SSL_VERSION_TLS1_2)
		(void)mbedtls_ssl_send_alert_message(&s->ssl,
		    MBEDTLS_SSL_ALERT_LEVEL_FATAL,
		    MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
	return io_result(s, ret);
}

enum tls_io
tlssess_read(struct tlssess *s, void *buf, size_t len, size_t *ret_n)
{
	int ret;

	if (s->authn != AUTHN_ADMITTED) { /* a caller's bug: fail closed */
		s->last_ret = MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
		return TLS_IO_ERROR;
	}
	current = s;
	ret = mbedtls_ssl_read(&s->ssl, buf, len);
	current = NULL;

	if (ret > 0) {
		*ret_n = (size_t)ret;
		return TLS_IO_OK;
	}
	if (ret == 0)
		return TLS_IO_EOF;
	return io_result(s, ret);
}

enum tls_io
tlssess_write(struct tlssess *s, const void *buf, size_t len, size_t *ret_n)
{
	int ret;

	if (s->authn != AUTHN_ADMITTED) { /* a caller's bug: fail closed */
		s->last_ret = MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
		return TLS_IO_ERROR;
	}
	current = s;
	ret = mbedtls_ssl_write(&s->ssl, buf, len);
	current = NULL;

	s->write_pending = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
	if (ret > 0) {
		*ret_n = (size_t)ret;
		return TLS_IO_OK;
	}
	if (ret == 0) { /* only for len == 0, which callers never ask */
		s->last_ret = MBEDTLS_ERR_SSL_INTERNAL_ERROR;
		return TLS_IO_ERROR;
	}
	return io_result(s, ret);
}

void
tlssess_admitted(struct tlssess *s)
{
	free(s->leaf);
	s->leaf = NULL;
	if (s->authn == AUTHN_DECIDING)
		s->authn = AUTHN_ADMITTED;
}

void
tlssess_readable(struct tlssess *s)
{
	s->rx_drained = 0;
}

int
tlssess_pending(const struct tlssess *s)
{
	return mbedtls_ssl_check_pending(&s->ssl) || s->ra_off < s->ra_len;
}

enum tls_io
tlssess_close_notify(struct tlssess *s)
{
	int ret;

	if (s->notified)
		return TLS_IO_OK;
	/*
	 * With a record still unsent, mbedtls_ssl_close_notify() only flushes
	 * it and returns 0 without the alert: let it flush, then call it again
	 * for the alert.  (An alert itself half sent is flushed by the next
	 * call the same way, and not sent twice.)
	 */
	if (s->write_pending) {
		ret = mbedtls_ssl_close_notify(&s->ssl);
		if (ret != 0)
			return io_result(s, ret);
		s->write_pending = 0;
	}
	ret = mbedtls_ssl_close_notify(&s->ssl);
	if (ret == 0) {
		s->notified = 1;
		return TLS_IO_OK;
	}
	return io_result(s, ret);
}

static void
refuse(struct tls_refusal *r, const char *token, const char *words)
{
	r->token = token;
	r->words = words;
}

/* Refusal from certificate verification flags. */
static void
refusal_from_flags(const struct tlssess *s, uint32_t flags,
    struct tls_refusal *r)
{
	if (s->depth_exceeded) {
		refuse(r, "chain-too-long", "client certificate chain too long");
		snprintf(r->detail, sizeof(r->detail), "more than %u "
		    "intermediate CA(s) between the certificate and a CA in %s "
		    "(tls.verify_depth)", s->ctx->verify_depth,
		    s->ctx->ca_path);
	} else if (flags & MBEDTLS_X509_BADCERT_MISSING) {
		refuse(r, "no-client-cert", "no client certificate");
		snprintf(r->detail, sizeof(r->detail), "the client sent no "
		    "certificate; this listener requires one issued by %s",
		    s->ctx->ca_path);
	} else if ((flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) &&
	    s->leaf_issuer_known) {
		refuse(r, "bad-signature", "client certificate signature does "
		    "not verify (bad signature)");
		snprintf(r->detail, sizeof(r->detail), "its issuer name "
		    "matches a CA in %s but the CA's key did not sign it: "
		    "forged, corrupted, or from another CA with the same name",
		    s->ctx->ca_path);
	} else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
		refuse(r, "unknown-ca", "client certificate issued by an "
		    "unknown CA");
		snprintf(r->detail, sizeof(r->detail), "issuer \"%.300s\" is not "
		    "a CA in %s (or an intermediate is missing)",
		    LEAF(s, issuer), s->ctx->ca_path);
	} else if (flags & MBEDTLS_X509_BADCERT_REVOKED) {
		refuse(r, "cert-revoked", "client certificate revoked");
		snprintf(r->detail, sizeof(r->detail), "listed in a CRL of "
		    "this listener (tls.crl)");
	} else if (flags & MBEDTLS_X509_BADCRL_EXPIRED) {
		refuse(r, "crl-stale", "CRL is stale");
		snprintf(r->detail, sizeof(r->detail), "the CRL for this "
		    "client's CA is past its nextUpdate and tls.crl_stale = "
		    "\"refuse\": publish a fresh CRL and reload");
	} else if (flags & MBEDTLS_X509_BADCRL_NOT_TRUSTED) {
		refuse(r, "crl-untrusted", "CRL signature does not verify");
	} else if (flags & MBEDTLS_X509_BADCERT_EXPIRED) {
		refuse(r, "cert-expired", "client certificate expired");
		snprintf(r->detail, sizeof(r->detail), "valid until %s",
		    LEAF(s, to));
	} else if (flags & MBEDTLS_X509_BADCERT_FUTURE) {
		refuse(r, "cert-not-yet-valid", "client certificate not yet "
		    "valid");
		snprintf(r->detail, sizeof(r->detail), "valid from %s",
		    LEAF(s, from));
	} else if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE |
	    MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
	    MBEDTLS_X509_BADCERT_NS_CERT_TYPE)) {
		refuse(r, "cert-usage", "client certificate not allowed for "
		    "client authentication (key usage)");
	} else if (flags & (MBEDTLS_X509_BADCERT_BAD_MD |
	    MBEDTLS_X509_BADCERT_BAD_PK | MBEDTLS_X509_BADCERT_BAD_KEY)) {
		refuse(r, "cert-weak", "client certificate uses a hash, key "
		    "type or key size the policy refuses");
	} else {
		char info[200];

		refuse(r, "cert-invalid", "client certificate invalid");
		if (mbedtls_x509_crt_verify_info(info, sizeof(info), "",
		    flags) < 0)
			info[0] = '\0';
		info[strcspn(info, "\n")] = '\0';
		snprintf(r->detail, sizeof(r->detail), "%s", info);
	}
}

void
tlssess_refusal(const struct tlssess *s, struct tls_refusal *r)
{
	uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
	int ret = s->last_ret;

	memset(r, 0, sizeof(*r));
	if (s->leaf_seen) {
		snprintf(r->subject, sizeof(r->subject), "%s", LEAF(s, subject));
		snprintf(r->issuer, sizeof(r->issuer), "%s", LEAF(s, issuer));
	}
	if (s->first_byte >= 0 && s->first_byte != 0x16 &&
	    s->first_byte != 0x15) {
		if (s->first_byte & 0x80) {
			refuse(r, "protocol-version", "protocol version not "
			    "supported");
			snprintf(r->detail, sizeof(r->detail), "the client "
			    "sent an SSLv2-format hello (an SSL 3.0/TLS 1.0 "
			    "era client); TLS 1.2 or 1.3 is required");
		} else {
			refuse(r, "not-tls", "client did not speak TLS");
			snprintf(r->detail, sizeof(r->detail), "first byte "
			    "0x%02x%s; plaintext sent to a TLS port?",
			    s->first_byte, s->first_byte >= 0x20 &&
			    s->first_byte < 0x7f ? " (printable text)" : "");
		}
		return;
	}
	if (ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE) {
		refusal_from_flags(s, MBEDTLS_X509_BADCERT_MISSING, r);
		return;
	}
	if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED ||
	    ret == MBEDTLS_ERR_SSL_BAD_CERTIFICATE) {
		if (flags != 0 && flags != UINT32_MAX) {
			refusal_from_flags(s, flags, r);
			return;
		}
		refuse(r, "cert-invalid", "client certificate invalid");
		return;
	}
	switch (ret) {
	case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
		refuse(r, "protocol-version", "protocol version not supported");
		snprintf(r->detail, sizeof(r->detail), "the client offers no "
		    "version this server accepts (TLS 1.2 or 1.3)");
		return;
	case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE:
		refuse(r, "no-shared-cipher", "no shared cipher");
		snprintf(r->detail, sizeof(r->detail), "no cipher suite, key "
		    "exchange group or signature algorithm in common (the "
		    "server allows ECDHE with AES-GCM or ChaCha20-Poly1305)");
		return;
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
		refuse(r, "client-alert", "client aborted the handshake");
		snprintf(r->detail, sizeof(r->detail), "the client sent a "
		    "fatal alert; it may not trust the server certificate "
		    "or name");
		return;
	case MBEDTLS_ERR_SSL_CONN_EOF:
	case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
		refuse(r, "peer-closed", s->bytes_rx == 0 ?
		    "client closed the connection before sending anything" :
		    "client closed the connection during the handshake");
		return;
	case MBEDTLS_ERR_NET_CONN_RESET:
		refuse(r, "peer-reset", "client reset the connection during "
		    "the handshake");
		return;
	case MBEDTLS_ERR_SSL_INVALID_RECORD:
	case MBEDTLS_ERR_SSL_DECODE_ERROR:
	case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
	case MBEDTLS_ERR_SSL_ILLEGAL_PARAMETER:
	case MBEDTLS_ERR_SSL_UNSUPPORTED_EXTENSION:
	case MBEDTLS_ERR_SSL_BAD_INPUT_DATA:
		refuse(r, "malformed", "malformed TLS handshake");
		break;
	default:
		refuse(r, "tls-error", "TLS handshake failed");
		break;
	}
	mbedtls_strerror(ret, r->detail, sizeof(r->detail));
}

int
tlssess_peer_gone(const struct tlssess *s)
{
	return s->last_ret == MBEDTLS_ERR_NET_CONN_RESET;
}

void
tlssess_error(const struct tlssess *s, char *buf, size_t len)
{
	if (s->last_ret == 0)
		snprintf(buf, len, "no error");
	else
		mbedtls_strerror(s->last_ret, buf, len);
}

const char *
tlssess_version(const struct tlssess *s)
{
	return mbedtls_ssl_get_version(&s->ssl);
}

const char *
tlssess_cipher(const struct tlssess *s)
{
	/* IANA names, which is what operators and other tools print. */
	switch (mbedtls_ssl_get_ciphersuite_id_from_ssl(&s->ssl)) {
	case MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256:
		return "TLS_CHACHA20_POLY1305_SHA256";
	case MBEDTLS_TLS1_3_AES_128_GCM_SHA256:
		return "TLS_AES_128_GCM_SHA256";
	case MBEDTLS_TLS1_3_AES_256_GCM_SHA384:
		return "TLS_AES_256_GCM_SHA384";
	case MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";
	case MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
		return "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
	case MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:
		return "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384";
	case MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";
	case MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		return "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";
	case MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384";
	default:
		return mbedtls_ssl_get_ciphersuite(&s->ssl);
	}
}

void
tlssess_peer_subject(const struct tlssess *s, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = tlssess_peer_crt(s);

	buf[0] = '\0';
	if (crt != NULL)
		tlssess_dn(&crt->subject, buf, len);
}

int
tlssess_peer_cn(const struct tlssess *s, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = tlssess_peer_crt(s);
	const mbedtls_x509_name *n;
	size_t i;

	if (len > 0)
		buf[0] = '\0';
	if (crt == NULL)
		return 0;
	for (n = &crt->subject; n != NULL; n = n->next) {
		if (n->oid.p == NULL ||
		    MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0)
			continue;
		/* Whole and as it is, or not at all: a CN cut short, with a
		 * control byte or not in UTF-8 (a BMPString, say) could read
		 * as another name. */
		if (n->val.len >= len || !identity_utf8_ok((const char *)
		    n->val.p, n->val.len))
			return -1;
		for (i = 0; i < n->val.len; i++)
			if (n->val.p[i] < 0x20 || n->val.p[i] == 0x7f)
				return -1;
		memcpy(buf, n->val.p, n->val.len);
		buf[n->val.len] = '\0';
		return 1;
	}
	return 0;
}

int
tlssess_peer_uri(const struct tlssess *s, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = tlssess_peer_crt(s);
	const mbedtls_x509_sequence *san;
	int ret = 0;

	if (len > 0)
		buf[0] = '\0';
	if (crt == NULL)
		return 0;
	for (san = &crt->subject_alt_names; san != NULL && san->buf.p != NULL;
	    san = san->next) {
		mbedtls_x509_subject_alternative_name name;

		if (mbedtls_x509_parse_subject_alt_name(&san->buf, &name) != 0)
			continue;
		if (name.type == MBEDTLS_X509_SAN_UNIFORM_RESOURCE_IDENTIFIER) {
			const unsigned char *u = name.san.unstructured_name.p;
			size_t k = name.san.unstructured_name.len, i;

			/* A URI is printable ASCII without spaces (RFC 3986):
			 * one with a NUL or a control byte, or too long to
			 * give whole, is no identity to pass on (cut at the
			 * NUL, "spiffe://a\0..." would read "spiffe://a"). */
			for (i = 0; i < k && u[i] > 0x20 && u[i] < 0x7f; i++)
				;
			ret = -1;
			if (i == k && k < len) {
				memcpy(buf, u, k);
				buf[k] = '\0';
				ret = 1;
			}
			mbedtls_x509_free_subject_alt_name(&name);
			return ret;
		}
		mbedtls_x509_free_subject_alt_name(&name);
	}
	return 0;
}

int
tlssess_client_verified(const struct tlssess *s, struct tls_refusal *r)
{
	uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);

	/* Resumed: verified when the ticket was made, re-checked when read;
	 * a ticket without a certificate resumes an unauthenticated client. */
	if (s->resumed_peer != NULL)
		return s->peer != NULL ? 1 : 0;
	if (flags == 0)
		return 1;
	if (flags == MBEDTLS_X509_BADCERT_MISSING)
		return 0;
	/* Optional verification let a bad certificate through: refuse it
	 * with the reason a required one would have had. */
	memset(r, 0, sizeof(*r));
	if (s->leaf_seen) {
		snprintf(r->subject, sizeof(r->subject), "%s", LEAF(s, subject));
		snprintf(r->issuer, sizeof(r->issuer), "%s", LEAF(s, issuer));
	}
	refusal_from_flags(s, flags, r);
	return -1;
}

int
tlssess_crl_stale(const struct tlssess *s)
{
	return s->crl_stale;
}

void
tlssess_peer_identity(const struct tlssess *s, struct identity *id)
{
	tlssess_crt_identity(tlssess_peer_crt(s), id);
}

void
tlssess_crt_identity(const struct mbedtls_x509_crt *crt, struct identity *id)
{
	const mbedtls_x509_name *n;
	const mbedtls_x509_sequence *san;

	memset(id, 0, sizeof(*id));
	if (crt == NULL)
		return;
	for (n = &crt->subject; n != NULL; n = n->next) {
		if (n->oid.p == NULL)
			continue;
		if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
			(void)identity_add(id, IDENTITY_CN,
			    (const char *)n->val.p, n->val.len);
		else if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORG_UNIT, &n->oid) == 0)
			(void)identity_add(id, IDENTITY_OU,
			    (const char *)n->val.p, n->val.len);
	}
	/* mbedTLS parses every SAN type we match on (DNS, URI, email). */
	for (san = &crt->subject_alt_names; san != NULL && san->buf.p != NULL;
	    san = san->next) {
		mbedtls_x509_subject_alternative_name name;
		enum identity_kind kind;

		if (mbedtls_x509_parse_subject_alt_name(&san->buf, &name) != 0)
			continue;
		switch (name.type) {
		case MBEDTLS_X509_SAN_DNS_NAME:
			kind = IDENTITY_DNS;
			break;
		case MBEDTLS_X509_SAN_UNIFORM_RESOURCE_IDENTIFIER:
			kind = IDENTITY_URI;
			break;
		case MBEDTLS_X509_SAN_RFC822_NAME:
			kind = IDENTITY_EMAIL;
			break;
		default:
			mbedtls_x509_free_subject_alt_name(&name);
			continue;
		}
		(void)identity_add(id, kind,
		    (const char *)name.san.unstructured_name.p,
		    name.san.unstructured_name.len);
		mbedtls_x509_free_subject_alt_name(&name);
	}
	if (mbedtls_sha256(crt->pk_raw.p, crt->pk_raw.len, id->spki_sha256,
	    0) == 0)
		id->has_spki = true;
}

static void
json_list(char *buf, size_t len, size_t *off, const char *key,
    char *const *v, size_t n)
{
	size_t i;

	json_put_raw(buf, len, off, ",");
	json_put_str(buf, len, off, key);
	json_put_raw(buf, len, off, ":[");
	for (i = 0; i < n; i++) {
		if (i > 0)
			json_put_raw(buf, len, off, ",");
		json_put_str(buf, len, off, v[i]);
	}
	json_put_raw(buf, len, off, "]");
}

size_t
tlssess_whoami_json(const struct tlssess *s, const struct identity *id,
    char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = tlssess_peer_crt(s);
	char subject[512], serial[128], when[40];
	size_t off = 0;

	if (len < 64)
		return 0;
	tlssess_peer_subject(s, subject, sizeof(subject));
	json_put_raw(buf, len, &off, "{\"verified\":");
	json_put_raw(buf, len, &off, crt != NULL ? "true" : "false");
	json_put_raw(buf, len, &off, ",\"subject\":");
	json_put_str(buf, len, &off, subject);
	json_list(buf, len, &off, "cn", id->cn, id->ncn);
	json_list(buf, len, &off, "ou", id->ou, id->nou);
	json_list(buf, len, &off, "dns", id->dns, id->ndns);
	json_list(buf, len, &off, "uri", id->uri, id->nuri);
	json_list(buf, len, &off, "email", id->email, id->nemail);
	if (crt != NULL) {
		char issuer[512];

		if (mbedtls_x509_serial_gets(serial, sizeof(serial),
		    &crt->serial) < 0)
			serial[0] = '\0';
		tlssess_dn(&crt->issuer, issuer, sizeof(issuer));
		snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02dZ",
		    crt->valid_to.year, crt->valid_to.mon, crt->valid_to.day,
		    crt->valid_to.hour, crt->valid_to.min, crt->valid_to.sec);
		json_put_raw(buf, len, &off, ",\"issuer\":");
		json_put_str(buf, len, &off, issuer);
		json_put_raw(buf, len, &off, ",\"serial\":");
		json_put_str(buf, len, &off, serial);
		json_put_raw(buf, len, &off, ",\"not_after\":");
		json_put_str(buf, len, &off, when);
	}
	if (id->has_spki) {
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
		    "klmnopqrstuvwxyz0123456789+/";
		char spki[48];
		size_t i, k = 0;

		for (i = 0; i + 3 <= 30; i += 3) {
			uint32_t v = (uint32_t)id->spki_sha256[i] << 16 |
			    (uint32_t)id->spki_sha256[i + 1] << 8 |
			    id->spki_sha256[i + 2];

			spki[k++] = b64[v >> 18 & 63];
			spki[k++] = b64[v >> 12 & 63];
			spki[k++] = b64[v >> 6 & 63];
			spki[k++] = b64[v & 63];
		}
		{	/* the last 2 bytes: 3 characters and one '=' */
			uint32_t v = (uint32_t)id->spki_sha256[30] << 16 |
			    (uint32_t)id->spki_sha256[31] << 8;

			spki[k++] = b64[v >> 18 & 63];
			spki[k++] = b64[v >> 12 & 63];
			spki[k++] = b64[v >> 6 & 63];
			spki[k++] = '=';
		}
		spki[k] = '\0';
		json_put_raw(buf, len, &off, ",\"spki_sha256\":");
		json_put_str(buf, len, &off, spki);
	}
	json_put_raw(buf, len, &off, ",\"tls_version\":");
	json_put_str(buf, len, &off, tlssess_version(s));
	json_put_raw(buf, len, &off, ",\"cipher\":");
	json_put_str(buf, len, &off, tlssess_cipher(s));
	json_put_raw(buf, len, &off, ",\"resumed\":");
	json_put_raw(buf, len, &off, tlssess_resumed(s) ? "true" : "false");
	json_put_raw(buf, len, &off, "}\n");
	return off;
}

int
tlssess_resumed(const struct tlssess *s)
{
	return s->resumed_peer != NULL;
}

void
tlssess_deny(struct tlssess *s, const char *token)
{
	unsigned char alert = strncmp(token, "cert-", 5) == 0 ?
	    MBEDTLS_SSL_ALERT_MSG_BAD_CERT : MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED;

	(void)mbedtls_ssl_send_alert_message(&s->ssl,
	    MBEDTLS_SSL_ALERT_LEVEL_FATAL, alert);
}

/*
 * Session tickets.  A ticket is
 *   header: version (1) | TLS minor version (1) | period (4) | nonce (12)
 *   AES-256-GCM(state) | tag (16), the header as additional data
 * where state = len (2) | mbedTLS session | flags (1) | time of the
 * client's full handshake (8) and, for a client with a certificate (flag
 * TICKET_AUTH): the SHA-256 of the CA its chain ended at (32) | count (1) |
 * count x (len (2) | DER), the verified chain leaf first, without the CA
 * (unless the leaf is the CA).  TLS 1.3 renews a ticket at every
 * resumption; the time of the full handshake travels on, so ticket_max_age
 * bounds how long a client lives on tickets, however often it returns.
 *
 * The key of a period is HMAC-SHA256(secret, "tls-echod ticket v2" | len
 * (2) | listener name | trust policy digest | period): every worker (and
 * host, with ticket_key_file) derives the same keys with no coordination;
 * a ticket opens only on the listener that issued it, under the same CAs,
 * verify_client, verify_depth and min_version; it is accepted in the
 * period it was made and the next.  The header binds the protocol version:
 * a TLS 1.3 session never resumes as TLS 1.2 or the other way round.
 *
 * On resumption, what can change under the same trust policy is checked
 * again as a full handshake would: expiry of every certificate of the
 * chain and of the CA, and every CRL of every issuer in the chain (with
 * tls.crl_stale); the allow-list and identity limit follow in conn, as for
 * everyone.  Signatures are not verified again: the CA set that verified
 * them is bound into the key.
 */
#define TICKET_VERSION 2
#define TICKET_HDR (1 + 1 + 4 + 12)
#define TICKET_IV 6
#define TICKET_TAG 16
#define TICKET_AUTH 0x01

static uint32_t
ticket_period(const struct tlsctx *t)
{
	return (uint32_t)((uint64_t)time(NULL) / t->ticket_lifetime);
}

static int
ticket_key(const struct tlsctx *t, uint32_t period, unsigned char key[32])
{
	static const char label[] = "tls-echod ticket v2";
	size_t n = strlen(t->ticket_name);
	unsigned char len[2] = { (unsigned char)(n >> 8), (unsigned char)n };
	unsigned char per[4] = { (unsigned char)(period >> 24),
	    (unsigned char)(period >> 16), (unsigned char)(period >> 8),
	    (unsigned char)period };
	mbedtls_md_context_t md;
	int ret;

	/* Listener names are short (config bounds them); the whole name goes
	 * in, length first, so no two names derive the same keys. */
	if (n > 0xffff)
		return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
	mbedtls_md_init(&md);
	if ((ret = mbedtls_md_setup(&md,
	    mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1)) == 0 &&
	    (ret = mbedtls_md_hmac_starts(&md, t->ticket_secret,
	    sizeof(t->ticket_secret))) == 0 &&
	    (ret = mbedtls_md_hmac_update(&md, (const unsigned char *)label,
	    sizeof(label))) == 0 &&
	    (ret = mbedtls_md_hmac_update(&md, len, sizeof(len))) == 0 &&
	    (ret = mbedtls_md_hmac_update(&md,
	    (const unsigned char *)t->ticket_name, n)) == 0 &&
	    (ret = mbedtls_md_hmac_update(&md, t->policy,
	    sizeof(t->policy))) == 0 &&
	    (ret = mbedtls_md_hmac_update(&md, per, sizeof(per))) == 0)
		ret = mbedtls_md_hmac_finish(&md, key);
	mbedtls_md_free(&md);
	return ret;
}

/* The cipher of ${period}, derived once per period and process. */
static mbedtls_gcm_context *
ticket_cipher(struct tlsctx *t, uint32_t period)
{
	unsigned char key[32];
	int i, ret;

	for (i = 0; i < 2; i++)
		if (t->tkey[i].ready && t->tkey[i].period == period)
			return &t->tkey[i].gcm;
	/* Replace the older (or an empty) one: periods only move on. */
	i = !t->tkey[0].ready ? 0 : !t->tkey[1].ready ? 1 :
	    t->tkey[0].period < t->tkey[1].period ? 0 : 1;
	t->tkey[i].ready = 0;
	if (ticket_key(t, period, key) != 0)
		return NULL;
	ret = mbedtls_gcm_setkey(&t->tkey[i].gcm, MBEDTLS_CIPHER_ID_AES, key,
	    256);
	mbedtls_platform_zeroize(key, sizeof(key));
	if (ret != 0)
		return NULL;
	t->tkey[i].period = period;
	t->tkey[i].ready = 1;
	return &t->tkey[i].gcm;
}

static int
ticket_gcm(struct tlsctx *t, uint32_t period, int encrypt,
    const unsigned char *hdr, unsigned char *data, size_t len,
    unsigned char *tag)
{
	mbedtls_gcm_context *gcm = ticket_cipher(t, period);

	if (gcm == NULL)
		return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
	if (encrypt)
		return mbedtls_gcm_crypt_and_tag(gcm, MBEDTLS_GCM_ENCRYPT, len,
		    hdr + TICKET_IV, 12, hdr, TICKET_HDR, data, data,
		    TICKET_TAG, tag);
	return mbedtls_gcm_auth_decrypt(gcm, len, hdr + TICKET_IV, 12, hdr,
	    TICKET_HDR, tag, TICKET_TAG, data, data);
}

/* The low byte of the session's protocol version: 3 (TLS 1.2), 4 (1.3). */
static unsigned char
ticket_tls(const struct tlssess *s)
{
	return (unsigned char)(mbedtls_ssl_get_version_number(&s->ssl) & 0xff);
}

/*
 * The client a ticket of ${s} will describe: its certificates (leaf first)
 * in ${certs}, their count in ${*n}, the CA's hash in ${anchor}.  ${*n} = 0:
 * no certificate.  -1 if the chain cannot be described (the ticket is then
 * not issued).
 */
static int
ticket_client(const struct tlssess *s, const mbedtls_x509_crt **certs,
    size_t *n, uint8_t anchor[32])
{
	const mbedtls_x509_crt *crt;
	size_t i, k = 0;

	if (s->peer == NULL) {
		*n = 0;
		return 0;
	}
	if (s->resumed_peer != NULL) {
		for (crt = &s->resumed_peer->chain; crt != NULL &&
		    crt->raw.len > 0 && k < TLSSESS_CHAIN_MAX; crt = crt->next)
			certs[k++] = crt;
		memcpy(anchor, s->resumed_peer->anchor, 32);
		*n = k;
		return 0;
	}
	if (s->vchain_bad || s->vlen == 0)
		return -1;
	for (i = 0; i < s->vlen; i++)
		if (s->vchain[i] == NULL)
			return -1;
	crt = s->vchain[s->vlen - 1];
	if (mbedtls_sha256(crt->raw.p, crt->raw.len, anchor, 0) != 0 ||
	    tlsctx_ca_by_hash(s->ctx, anchor) == NULL)
		return -1;
	k = s->vlen == 1 ? 1 : s->vlen - 1;
	for (i = 0; i < k; i++)
		certs[i] = s->vchain[i];
	*n = k;
	return 0;
}

/* The time of the full handshake a ticket of ${s} vouches for. */
static uint64_t
ticket_auth_time(const struct tlssess *s)
{
	return s->resumed_peer != NULL ? s->resumed_peer->auth_time :
	    (uint64_t)time(NULL);
}

/*
 * A ticket nothing accepts (version 0) and a lifetime of 0 ("discard it"):
 * for an admitted client whose ticket cannot be made.  TLS 1.3 takes an
 * error from the write callback as fatal for the connection; the client
 * was admitted and must not lose it over a ticket.
 */
static int
ticket_dud(unsigned char *start, const unsigned char *end, size_t *tlen,
    uint32_t *lifetime)
{
	if (end - start < 1 + 16)
		return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
	start[0] = 0;
	if (tlsctx_random(start + 1, 16) != 0)
		memset(start + 1, 0, 16);
	*tlen = 1 + 16;
	*lifetime = 0;
	return 0;
}

/* The ticket itself; an mbedTLS error if it cannot be made. */
static int
ticket_make(struct tlsctx *t, const struct tlssess *s,
    const mbedtls_ssl_session *session, unsigned char *start,
    const unsigned char *end, size_t *tlen)
{
	const mbedtls_x509_crt *certs[TLSSESS_CHAIN_MAX];
	uint8_t anchor[32];
	size_t ncerts, extra = 1 + 8, i, slen = 0, plen;
	unsigned char *p = start + TICKET_HDR, *q;
	uint32_t period = ticket_period(t);
	uint64_t when = ticket_auth_time(s);
	int ret;

	if (ticket_client(s, certs, &ncerts, anchor) != 0)
		return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
	if (ncerts > 0) {
		extra += 32 + 1;
		for (i = 0; i < ncerts; i++) {
			if (certs[i]->raw.len > 0xffff)
				return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
			extra += 2 + certs[i]->raw.len;
		}
	}
	if ((size_t)(end - start) < TICKET_HDR + 2 + extra + TICKET_TAG)
		return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
	ret = mbedtls_ssl_session_save(session, p + 2, (size_t)(end - start) -
	    TICKET_HDR - 2 - extra - TICKET_TAG, &slen);
	if (ret != 0)
		return ret;
	if (slen > 0xffff)
		return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
	p[0] = (unsigned char)(slen >> 8);
	p[1] = (unsigned char)slen;
	q = p + 2 + slen;
	*q++ = ncerts > 0 ? TICKET_AUTH : 0;
	for (i = 0; i < 8; i++)
		*q++ = (unsigned char)(when >> (56 - 8 * i));
	if (ncerts > 0) {
		memcpy(q, anchor, 32);
		q += 32;
		*q++ = (unsigned char)ncerts;
		for (i = 0; i < ncerts; i++) {
			*q++ = (unsigned char)(certs[i]->raw.len >> 8);
			*q++ = (unsigned char)certs[i]->raw.len;
			memcpy(q, certs[i]->raw.p, certs[i]->raw.len);
			q += certs[i]->raw.len;
		}
	}
	plen = (size_t)(q - p);
	start[0] = TICKET_VERSION;
	start[1] = ticket_tls(s);
	start[2] = (unsigned char)(period >> 24);
	start[3] = (unsigned char)(period >> 16);
	start[4] = (unsigned char)(period >> 8);
	start[5] = (unsigned char)period;
	if ((ret = tlsctx_random(start + TICKET_IV, 12)) != 0 ||
	    (ret = ticket_gcm(t, period, 1, start, p, plen, p + plen)) != 0)
		return ret;
	*tlen = TICKET_HDR + plen + TICKET_TAG;
	return 0;
}

int
tlssess_ticket_write(void *p_ticket, const mbedtls_ssl_session *session,
    unsigned char *start, const unsigned char *end, size_t *tlen,
    uint32_t *lifetime)
{
	struct tlsctx *t = p_ticket;
	const struct tlssess *s = current;

	/* Only an admitted client gets a ticket: a refused one has none. */
	if (s == NULL || !s->server || s->authn != AUTHN_ADMITTED)
		return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
	if (ticket_make(t, s, session, start, end, tlen) != 0)
		return ticket_dud(start, end, tlen, lifetime);
	*lifetime = t->ticket_lifetime;
	return 0;
}

/* Within validity dates now, as chain verification requires of each. */
static int
crt_current(const mbedtls_x509_crt *crt)
{
	return !mbedtls_x509_time_is_past(&crt->valid_to) &&
	    !mbedtls_x509_time_is_future(&crt->valid_from);
}

/*
 * Would a full handshake accept ${p}'s chain now?  The CA must still be
 * one of ours, every certificate (the CA too) within its dates, and no
 * certificate revoked by a CRL of its issuer (its next one in the chain,
 * the CA for the last), tls.crl_stale applied.  0 if so.
 */
static int
ticket_chain_ok(struct tlsctx *t, struct ticket_peer *p)
{
	mbedtls_x509_crt *ca = tlsctx_ca_by_hash(t, p->anchor);
	mbedtls_x509_crt *crt, *parent;

	if (ca == NULL || !crt_current(ca))
		return -1;
	/* A leaf that is itself one of our CAs: trusted as it is, no CRL. */
	if (p->chain.next == NULL && p->chain.raw.len == ca->raw.len &&
	    memcmp(p->chain.raw.p, ca->raw.p, ca->raw.len) == 0)
		return 0;
	for (crt = &p->chain; crt != NULL && crt->raw.len > 0; crt = crt->next) {
		parent = crt->next != NULL && crt->next->raw.len > 0 ?
		    crt->next : ca;
		if (!crt_current(crt) || tlsctx_crl_check(t, crt, parent,
		    &p->crl_stale) != TLSCTX_CRL_OK)
			return -1;
	}
	return 0;
}

/*
 * The client part of a decrypted ticket state at ${q}, ${n} bytes, as a
 * ticket_peer (NULL: malformed, out of memory, or no longer acceptable).
 */
static struct ticket_peer *
ticket_peer_read(struct tlsctx *t, const unsigned char *q, size_t n)
{
	uint64_t now = (uint64_t)time(NULL);
	struct ticket_peer *p;
	size_t i, count, len;

	if (n < 1 || (q[0] & ~TICKET_AUTH) != 0 ||
	    (p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	mbedtls_x509_crt_init(&p->chain);
	p->auth = q[0] & TICKET_AUTH;
	q++;
	n--;
	if (n < 8)
		goto err;
	for (i = 0; i < 8; i++)
		p->auth_time = p->auth_time << 8 | q[i];
	q += 8;
	n -= 8;
	/* However often it resumed, the client's full handshake is at most
	 * ticket_max_age old (and not from the future: 60 s of clock skew
	 * between hosts sharing ticket_key_file). */
	if (p->auth_time > now + 60 || now - p->auth_time > t->ticket_max_age)
		goto err;
	if (!p->auth) {
		/* No certificate: only where one is optional (the policy
		 * digest says so too). */
		if (n != 0 || !t->verify_optional)
			goto err;
		return p;
	}
	if (n < 33)
		goto err;
	memcpy(p->anchor, q, 32);
	count = q[32];
	q += 33;
	n -= 33;
	if (count == 0 || count > TLSSESS_CHAIN_MAX)
		goto err;
	for (i = 0; i < count; i++) {
		if (n < 2 || (len = (size_t)q[0] << 8 | q[1]) > n - 2 ||
		    mbedtls_x509_crt_parse_der(&p->chain, q + 2, len) != 0)
			goto err;
		q += 2 + len;
		n -= 2 + len;
	}
	if (n != 0 || ticket_chain_ok(t, p) != 0)
		goto err;
	return p;

err:
	ticket_peer_free(p);
	return NULL;
}

int
tlssess_ticket_parse(void *p_ticket, mbedtls_ssl_session *session,
    unsigned char *buf, size_t len)
{
	struct tlsctx *t = p_ticket;
	struct tlssess *s = current;
	uint32_t period, now = ticket_period(t);
	unsigned char *p = buf + TICKET_HDR;
	struct ticket_peer *peer = NULL;
	size_t plen, slen;
	int ret;

	if (s == NULL || !s->server)
		return MBEDTLS_ERR_SSL_INVALID_MAC;
	/* mbedTLS tries a client's tickets in turn: only the one it goes on
	 * with counts (see settle()). */
	ticket_peer_free(s->pending);
	s->pending = NULL;
	/* Another protocol version's ticket does not open here. */
	if (len < TICKET_HDR + 3 + TICKET_TAG || buf[0] != TICKET_VERSION ||
	    buf[1] != ticket_tls(s))
		return MBEDTLS_ERR_SSL_INVALID_MAC;
	period = (uint32_t)buf[2] << 24 | (uint32_t)buf[3] << 16 |
	    (uint32_t)buf[4] << 8 | buf[5];
	if (period != now && period + 1 != now)
		return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
	plen = len - TICKET_HDR - TICKET_TAG;
	if (ticket_gcm(t, period, 0, buf, p, plen, p + plen) != 0)
		return MBEDTLS_ERR_SSL_INVALID_MAC;
	slen = (size_t)p[0] << 8 | p[1];
	if (slen + 3 > plen) {
		ret = MBEDTLS_ERR_SSL_INVALID_MAC;
		goto out;
	}
	if ((peer = ticket_peer_read(t, p + 2 + slen, plen - 2 - slen)) ==
	    NULL) {
		/* Expired, revoked, CA gone: a full handshake decides. */
		ret = MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
		goto out;
	}
	if ((ret = mbedtls_ssl_session_load(session, p + 2, slen)) != 0)
		goto out;
	s->pending = peer; /* ownership moves; takes effect in settle() */
	peer = NULL;
out:
	ticket_peer_free(peer);
	mbedtls_platform_zeroize(p, plen);
	return ret;
}
