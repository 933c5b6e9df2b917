/*
 * tlssess: one non-blocking TLS server session over a socket.
 */
#include "tlssess.h"
#include "tlsctx_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>

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
	int leaf_issuer_known; /* issuer DN equals one of our CAs' subjects */
	char leaf_subject[512];
	char leaf_issuer[512];
	char leaf_from[32];
	char leaf_to[32];
};

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

static int
sess_recv(void *p, unsigned char *buf, size_t len)
{
	struct tlssess *s = p;
	ssize_t n = recv(s->fd, buf, len, 0);

	if (n > 0) {
		if (s->bytes_rx == 0)
			s->first_byte = buf[0];
		s->bytes_rx += (uint64_t)n;
		return (int)n;
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

static void
x509_time_str(const mbedtls_x509_time *t, char *buf, size_t len)
{
	snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d UTC", t->year, t->mon,
	    t->day, t->hour, t->min, t->sec);
}

/* Remember the client's leaf certificate for refusal messages. */
static int
sess_verify(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tlssess *s = p;
	const mbedtls_x509_crt *ca;

	(void)flags; /* mbedTLS decides; we only take notes */
	if (depth != 0)
		return 0;
	s->leaf_seen = 1;
	tlssess_dn(&crt->subject, s->leaf_subject, sizeof(s->leaf_subject));
	tlssess_dn(&crt->issuer, s->leaf_issuer, sizeof(s->leaf_issuer));
	x509_time_str(&crt->valid_from, s->leaf_from, sizeof(s->leaf_from));
	x509_time_str(&crt->valid_to, s->leaf_to, sizeof(s->leaf_to));
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
			    "does not hold the name \"%s\"", s->leaf_subject,
			    s->ctx->bname);
		else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
			snprintf(buf, len, "backend certificate issued by "
			    "\"%.200s\", not by a CA in %s", s->leaf_issuer,
			    s->ctx->bca_path);
		else if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
			snprintf(buf, len, "backend certificate expired (%s)",
			    s->leaf_to);
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

enum tls_io
tlssess_handshake(struct tlssess *s)
{
	int ret = mbedtls_ssl_handshake(&s->ssl);

	if (ret == 0)
		return TLS_IO_OK;
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
	int ret = mbedtls_ssl_read(&s->ssl, buf, len);

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
	int ret = mbedtls_ssl_write(&s->ssl, buf, len);

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

int
tlssess_pending(const struct tlssess *s)
{
	return mbedtls_ssl_check_pending(&s->ssl);
}

enum tls_io
tlssess_close_notify(struct tlssess *s)
{
	int ret = mbedtls_ssl_close_notify(&s->ssl);

	if (ret == 0)
		return TLS_IO_OK;
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
	if (flags & MBEDTLS_X509_BADCERT_MISSING) {
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
		    s->leaf_issuer, s->ctx->ca_path);
	} else if (flags & MBEDTLS_X509_BADCERT_REVOKED) {
		refuse(r, "cert-revoked", "client certificate revoked");
	} else if (flags & MBEDTLS_X509_BADCERT_EXPIRED) {
		refuse(r, "cert-expired", "client certificate expired");
		snprintf(r->detail, sizeof(r->detail), "valid until %s",
		    s->leaf_to);
	} else if (flags & MBEDTLS_X509_BADCERT_FUTURE) {
		refuse(r, "cert-not-yet-valid", "client certificate not yet "
		    "valid");
		snprintf(r->detail, sizeof(r->detail), "valid from %s",
		    s->leaf_from);
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
		snprintf(r->subject, sizeof(r->subject), "%s", s->leaf_subject);
		snprintf(r->issuer, sizeof(r->issuer), "%s", s->leaf_issuer);
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
	const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&s->ssl);

	buf[0] = '\0';
	if (crt != NULL)
		tlssess_dn(&crt->subject, buf, len);
}

void
tlssess_peer_cn(const struct tlssess *s, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&s->ssl);
	const mbedtls_x509_name *n;

	buf[0] = '\0';
	if (crt == NULL || len == 0)
		return;
	for (n = &crt->subject; n != NULL; n = n->next)
		if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
			size_t k = n->val.len < len - 1 ? n->val.len : len - 1;

			memcpy(buf, n->val.p, k);
			buf[k] = '\0';
			return;
		}
}

void
tlssess_peer_uri(const struct tlssess *s, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&s->ssl);
	const mbedtls_x509_sequence *san;

	buf[0] = '\0';
	if (crt == NULL || len == 0)
		return;
	for (san = &crt->subject_alt_names; san != NULL && san->buf.p != NULL;
	    san = san->next) {
		mbedtls_x509_subject_alternative_name name;

		if (mbedtls_x509_parse_subject_alt_name(&san->buf, &name) != 0)
			continue;
		if (name.type == MBEDTLS_X509_SAN_UNIFORM_RESOURCE_IDENTIFIER) {
			size_t k = name.san.unstructured_name.len < len - 1 ?
			    name.san.unstructured_name.len : len - 1;

			memcpy(buf, name.san.unstructured_name.p, k);
			buf[k] = '\0';
			mbedtls_x509_free_subject_alt_name(&name);
			return;
		}
		mbedtls_x509_free_subject_alt_name(&name);
	}
}
