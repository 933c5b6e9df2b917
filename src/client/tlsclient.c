/*
 * tlsclient: the mbedTLS side of tls-echo.  See tlsclient.h.
 */
#include "tlsclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

struct tlsclient {
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt ca;
	mbedtls_x509_crt own;
	mbedtls_pk_context key;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
	char *server_name;
	int has_own;
	int fd;
	int last_ret;
	/* The chain as the verify callback saw it, by depth. */
	struct tlsc_cert seen[TLSC_CHAIN_MAX];
	size_t nseen;
};

static char version_buf[32];

const char *
tlsclient_library_version(void)
{
	mbedtls_version_get_string(version_buf);
	return version_buf;
}

/* --- socket callbacks ----------------------------------------------------- */

static int
bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct tlsclient *t = ctx;
	ssize_t n;

	do
		n = send(t->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	if (errno == ECONNRESET || errno == EPIPE)
		return MBEDTLS_ERR_NET_CONN_RESET;
	return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int
bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct tlsclient *t = ctx;
	ssize_t n;

	do
		n = recv(t->fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (errno == ECONNRESET)
		return MBEDTLS_ERR_NET_CONN_RESET;
	return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* --- certificates --------------------------------------------------------- */

static int64_t
x509_time_epoch(const mbedtls_x509_time *x)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = x->year - 1900;
	tm.tm_mon = x->mon - 1;
	tm.tm_mday = x->day;
	tm.tm_hour = x->hour;
	tm.tm_min = x->min;
	tm.tm_sec = x->sec;
	return (int64_t)timegm(&tm);
}

static unsigned
map_flags(uint32_t f)
{
	unsigned out = 0;

	if (f & MBEDTLS_X509_BADCERT_EXPIRED)
		out |= TLSC_BAD_EXPIRED;
	if (f & MBEDTLS_X509_BADCERT_FUTURE)
		out |= TLSC_BAD_FUTURE;
	if (f & MBEDTLS_X509_BADCERT_CN_MISMATCH)
		out |= TLSC_BAD_NAME;
	if (f & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
		out |= TLSC_BAD_UNTRUSTED;
	if (f & ~(uint32_t)(MBEDTLS_X509_BADCERT_EXPIRED |
	    MBEDTLS_X509_BADCERT_FUTURE | MBEDTLS_X509_BADCERT_CN_MISMATCH |
	    MBEDTLS_X509_BADCERT_NOT_TRUSTED))
		out |= TLSC_BAD_OTHER;
	return out;
}

static void
describe_crt(const mbedtls_x509_crt *crt, struct tlsc_cert *c)
{
	memset(c, 0, sizeof(*c));
	if (mbedtls_x509_dn_gets(c->subject, sizeof(c->subject),
	    &crt->subject) < 0)
		snprintf(c->subject, sizeof(c->subject), "(unreadable)");
	if (mbedtls_x509_dn_gets(c->issuer, sizeof(c->issuer),
	    &crt->issuer) < 0)
		snprintf(c->issuer, sizeof(c->issuer), "(unreadable)");
	c->not_before = x509_time_epoch(&crt->valid_from);
	c->not_after = x509_time_epoch(&crt->valid_to);
}

/* Called by mbedTLS for every certificate of the chain it built, from the
 * top (the anchor, when one was found) down to the leaf at depth 0. */
static int
verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tlsclient *t = ctx;

	if (depth < 0 || depth >= TLSC_CHAIN_MAX)
		return 0;
	describe_crt(crt, &t->seen[depth]);
	t->seen[depth].flags = map_flags(*flags);
	if ((size_t)depth + 1 > t->nseen)
		t->nseen = (size_t)depth + 1;
	return 0;
}

/* --- life cycle ------------------------------------------------------------ */

struct tlsclient *
tlsclient_new(const struct tlsc_opts *o, char *err, size_t errlen)
{
	struct tlsclient *t;
	char msg[200];
	int ret;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto err0;
	}
	t->fd = -1;
	mbedtls_entropy_init(&t->entropy);
	mbedtls_ctr_drbg_init(&t->drbg);
	mbedtls_x509_crt_init(&t->ca);
	mbedtls_x509_crt_init(&t->own);
	mbedtls_pk_init(&t->key);
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_ssl_init(&t->ssl);

	/* TLS 1.3 runs on PSA whatever MBEDTLS_USE_PSA_CRYPTO says. */
	if (psa_crypto_init() != PSA_SUCCESS) {
		snprintf(err, errlen, "PSA crypto initialisation failed");
		goto err1;
	}
	if ((ret = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func,
	    &t->entropy, (const unsigned char *)"tls-echo", 8)) != 0) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "cannot seed the random generator: %s",
		    msg);
		goto err1;
	}

	/* A bundle with a few certificates mbedTLS cannot parse is still
	 * usable (ret > 0); none at all is not. */
	ret = mbedtls_x509_crt_parse_file(&t->ca, o->ca);
	if (ret < 0 || t->ca.version == 0) {
		if (ret < 0)
			mbedtls_strerror(ret, msg, sizeof(msg));
		else
			snprintf(msg, sizeof(msg), "no certificate in it");
		snprintf(err, errlen, "--ca %s: %s", o->ca, msg);
		goto err1;
	}
	if (o->cert != NULL) {
		if ((ret = mbedtls_x509_crt_parse_file(&t->own, o->cert)) != 0) {
			if (ret < 0)
				mbedtls_strerror(ret, msg, sizeof(msg));
			else
				snprintf(msg, sizeof(msg), "%d certificate(s) "
				    "could not be parsed", ret);
			snprintf(err, errlen, "--cert %s: %s", o->cert, msg);
			goto err1;
		}
		if ((ret = mbedtls_pk_parse_keyfile(&t->key, o->key, NULL,
		    mbedtls_ctr_drbg_random, &t->drbg)) != 0) {
			mbedtls_strerror(ret, msg, sizeof(msg));
			snprintf(err, errlen, "--key %s: %s", o->key, msg);
			goto err1;
		}
		if (mbedtls_pk_check_pair(&t->own.pk, &t->key,
		    mbedtls_ctr_drbg_random, &t->drbg) != 0) {
			snprintf(err, errlen, "--key %s does not match the "
			    "certificate in --cert %s", o->key, o->cert);
			goto err1;
		}
		t->has_own = 1;
	}

	if ((ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "TLS configuration: %s", msg);
		goto err1;
	}
	mbedtls_ssl_conf_min_tls_version(&t->conf, o->min_version == 13 ?
	    MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_max_tls_version(&t->conf, o->max_version == 12 ?
	    MBEDTLS_SSL_VERSION_TLS1_2 : MBEDTLS_SSL_VERSION_TLS1_3);
	/*
	 * Required: a server that does not verify gets nothing more from us,
	 * not even our certificate (with "optional" the handshake would go
	 * on and hand our identity to whoever is in the middle).  verify_cb
	 * records the chain and its flags, so the caller can still name the
	 * problem and an expired certificate's date.
	 */
	mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
	mbedtls_ssl_conf_verify(&t->conf, verify_cb, t);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
	mbedtls_ssl_conf_renegotiation(&t->conf,
	    MBEDTLS_SSL_RENEGOTIATION_DISABLED);
	if (t->has_own &&
	    (ret = mbedtls_ssl_conf_own_cert(&t->conf, &t->own, &t->key)) != 0) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "--cert %s: %s", o->cert, msg);
		goto err1;
	}
	if ((ret = mbedtls_ssl_setup(&t->ssl, &t->conf)) != 0) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "TLS setup: %s", msg);
		goto err1;
	}
	if ((t->server_name = strdup(o->server_name)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto err1;
	}
	return t;

err1:
	tlsclient_free(t);
err0:
	return NULL;
}

void
tlsclient_free(struct tlsclient *t)
{
	if (t == NULL)
		return;
	mbedtls_ssl_free(&t->ssl);
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_pk_free(&t->key); /* zeroizes the key */
	mbedtls_x509_crt_free(&t->own);
	mbedtls_x509_crt_free(&t->ca);
	mbedtls_ctr_drbg_free(&t->drbg);
	mbedtls_entropy_free(&t->entropy);
	free(t->server_name);
	mbedtls_platform_zeroize(t, sizeof(*t));
	free(t);
}

char *
tlsclient_own_subject(const struct tlsclient *t, char *buf, size_t len)
{
	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (t->has_own && mbedtls_x509_dn_gets(buf, len, &t->own.subject) < 0)
		buf[0] = '\0';
	return buf;
}

int
tlsclient_start(struct tlsclient *t, int fd, char *err, size_t errlen)
{
	char msg[200];
	int ret;

	if ((ret = mbedtls_ssl_session_reset(&t->ssl)) != 0) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "TLS session reset: %s", msg);
		return -1;
	}
	/* Every session: with a CA, mbedTLS 3.6 refuses to verify without
	 * a name, and a reset may forget it. */
	if ((ret = mbedtls_ssl_set_hostname(&t->ssl, t->server_name)) != 0) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "server name \"%s\": %s",
		    t->server_name, msg);
		return -1;
	}
	t->fd = fd;
	t->last_ret = 0;
	t->nseen = 0;
	memset(t->seen, 0, sizeof(t->seen));
	mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
	return 0;
}

/* Map an mbedTLS result to ours, remembering failures. */
static int
result(struct tlsclient *t, int ret)
{
	if (ret >= 0)
		return ret;
	if (ret == MBEDTLS_ERR_SSL_WANT_READ)
		return TLSC_WANT_READ;
	if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
		return TLSC_WANT_WRITE;
	t->last_ret = ret;
	return TLSC_FAIL;
}

int
tlsclient_handshake(struct tlsclient *t)
{
	return result(t, mbedtls_ssl_handshake(&t->ssl));
}

/* "TLS1-3-AES-256-GCM-SHA384" -> "TLS_AES_256_GCM_SHA384",
 * "TLS-ECDHE-ECDSA-WITH-..." -> "TLS_ECDHE_ECDSA_WITH_...": the names
 * the daemon logs (IANA's). */
static void
iana_suite(const char *name, char *buf, size_t len)
{
	size_t i;

	if (strncmp(name, "TLS1-3-", 7) == 0)
		snprintf(buf, len, "TLS_%s", name + 7);
	else
		snprintf(buf, len, "%s", name);
	for (i = 0; buf[i] != '\0'; i++)
		if (buf[i] == '-')
			buf[i] = '_';
}

void
tlsclient_info(const struct tlsclient *t, struct tlsc_info *info)
{
	uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
	const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
	size_t i;

	const char *suite = mbedtls_ssl_get_ciphersuite(&t->ssl);

	memset(info, 0, sizeof(*info));
	snprintf(info->version, sizeof(info->version), "%s",
	    mbedtls_ssl_get_version(&t->ssl));
	/* None yet when the handshake stopped at the server's certificate
	 * (mbedTLS 3.6 names the suite only once the session is set up). */
	iana_suite(suite != NULL ? suite : "(none)", info->cipher,
	    sizeof(info->cipher));
	if (flags == UINT32_MAX) /* no verification happened */
		flags = MBEDTLS_X509_BADCERT_SKIP_VERIFY;
	info->verify_flags = map_flags(flags);
	if (flags != 0 && mbedtls_x509_crt_verify_info(info->verify_text,
	    sizeof(info->verify_text), "", flags) < 0)
		info->verify_text[0] = '\0';
	for (i = strlen(info->verify_text); i > 0 &&
	    info->verify_text[i - 1] == '\n'; i--)
		info->verify_text[i - 1] = '\0';
	for (i = 0; info->verify_text[i] != '\0'; i++)
		if (info->verify_text[i] == '\n')
			info->verify_text[i] = ';';

	if (t->nseen > 0) {
		for (i = 0; i < t->nseen; i++)
			info->chain[i] = t->seen[i];
		info->nchain = t->nseen;
		/* Without NOT_TRUSTED the top was an anchor from --ca. */
		if (!(info->verify_flags & TLSC_BAD_UNTRUSTED))
			info->chain[t->nseen - 1].from_ca_file = 1;
		return;
	}
	/* No verification ran: show what the server sent. */
	for (; peer != NULL && info->nchain < TLSC_CHAIN_MAX;
	    peer = peer->next) {
		describe_crt(peer, &info->chain[info->nchain]);
		info->chain[info->nchain++].flags = info->verify_flags;
	}
}

ssize_t
tlsclient_read(struct tlsclient *t, void *buf, size_t len)
{
	int ret;

	for (;;) {
		ret = mbedtls_ssl_read(&t->ssl, buf, len);
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
		/* A TLS 1.3 ticket: we do not resume; read on. */
		if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
			continue;
#endif
		break;
	}
	if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return 0;
	if (ret == 0) {
		/* EOF without close_notify: the reply may be cut short. */
		t->last_ret = MBEDTLS_ERR_SSL_CONN_EOF;
		return TLSC_FAIL;
	}
	return result(t, ret);
}

int
tlsclient_pending(const struct tlsclient *t)
{
	return mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 ||
	    mbedtls_ssl_check_pending(&t->ssl);
}

ssize_t
tlsclient_write(struct tlsclient *t, const void *buf, size_t len)
{
	return result(t, mbedtls_ssl_write(&t->ssl, buf, len));
}

int
tlsclient_close_notify(struct tlsclient *t)
{
	return result(t, mbedtls_ssl_close_notify(&t->ssl));
}

static const char *
alert_name(int a)
{
	switch (a) {
	case 0: return "close_notify";
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 22: return "record_overflow";
	case 40: return "handshake_failure";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 49: return "access_denied";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 70: return "protocol_version";
	case 71: return "insufficient_security";
	case 80: return "internal_error";
	case 86: return "inappropriate_fallback";
	case 90: return "user_canceled";
	case 109: return "missing_extension";
	case 110: return "unsupported_extension";
	case 112: return "unrecognized_name";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	default: return "unknown alert";
	}
}

void
tlsclient_failure(const struct tlsclient *t, struct tlsc_failure *f)
{
	memset(f, 0, sizeof(*f));
	if (t->last_ret == 0) {
		f->kind = TLSC_F_NONE;
		return;
	}
	mbedtls_strerror(t->last_ret, f->text, sizeof(f->text));
	switch (t->last_ret) {
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
		f->kind = TLSC_F_ALERT;
		/*
		 * mbedTLS has no accessor for the alert it received; the
		 * record is still in its input buffer: level, description.
		 */
		if (t->ssl.MBEDTLS_PRIVATE(in_msg) != NULL)
			f->alert = t->ssl.MBEDTLS_PRIVATE(in_msg)[1];
		f->alert_name = alert_name(f->alert);
		break;
	case MBEDTLS_ERR_SSL_CONN_EOF:
		f->kind = TLSC_F_CLOSED;
		break;
	case MBEDTLS_ERR_NET_CONN_RESET:
		f->kind = TLSC_F_RESET;
		break;
	case MBEDTLS_ERR_SSL_INVALID_MAC:
		f->kind = TLSC_F_BAD_MAC;
		break;
	case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
		f->kind = TLSC_F_VERSION;
		break;
	case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE:
		f->kind = TLSC_F_HANDSHAKE;
		break;
	case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
		f->kind = TLSC_F_UNVERIFIED;
		break;
	default:
		f->kind = TLSC_F_OTHER;
		break;
	}
}
