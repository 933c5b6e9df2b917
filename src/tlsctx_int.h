/*
 * tlsctx internals shared with tlssess only (both are the TLS module).
 */
#ifndef TLS_ECHOD_TLSCTX_INT_H
#define TLS_ECHOD_TLSCTX_INT_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

struct tlsctx {
	mbedtls_ssl_config conf;
	mbedtls_x509_crt chain; /* server certificate first, then its chain */
	mbedtls_x509_crt ca;    /* trusted issuers of client certificates */
	mbedtls_pk_context key; /* wiped by mbedtls_pk_free */
	char *ca_path;          /* for refusal messages */
	char *cert_path, *crl_path; /* for tlsctx_dates */
	unsigned key_mode;      /* permission bits of the key file */
	mbedtls_x509_crl crl;   /* revoked client certificates; may be empty */
	int has_crl;
	int crl_stale_refuse;   /* tls.crl_stale = "refuse" */
	unsigned verify_depth;  /* intermediates allowed below a trusted CA */
	int verify_optional;
	int *suites;            /* owned: configured ciphersuites, 0-ended */
	uint16_t *groups;       /* owned: configured groups, 0-ended */
	/* Session tickets: keys derived from this secret and the time, so
	 * every worker (and, with ticket_key_file, every host) agrees. */
	int tickets;            /* resumption on */
	uint8_t ticket_secret[32]; /* wiped with the context */
	unsigned ticket_lifetime;  /* seconds: one key period */
	char ticket_label[80];     /* "tls-echod ticket <listener>" */
	/* Relay to a TLS backend: our client side, when configured. */
	int has_backend;
	mbedtls_ssl_config bconf;
	mbedtls_x509_crt bca;   /* trusted issuers of the backend's cert */
	mbedtls_x509_crt bcert; /* our client certificate, if any */
	mbedtls_pk_context bkey;
	char *bname;            /* name the backend certificate must hold */
	char *bca_path;
};

/* tlsctx.c: "YYYY-MM-DD hh:mm:ss UTC" for certificate dates in messages. */
void tlsctx_time_str(const mbedtls_x509_time *t, char *buf, size_t len);

/* tlsctx.c: random bytes from this process's generator. */
int tlsctx_random(unsigned char *buf, size_t len);

/* tlssess.c: the ticket callbacks tlsctx installs (p_ticket: tlsctx). */
int tlssess_ticket_write(void *p_ticket, const mbedtls_ssl_session *session,
    unsigned char *start, const unsigned char *end, size_t *tlen,
    uint32_t *lifetime);
int tlssess_ticket_parse(void *p_ticket, mbedtls_ssl_session *session,
    unsigned char *buf, size_t len);

#endif
