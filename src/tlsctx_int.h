/*
 * tlsctx internals shared with tlssess only (both are the TLS module).
 */
#ifndef TLS_ECHOD_TLSCTX_INT_H
#define TLS_ECHOD_TLSCTX_INT_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/gcm.h>
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
	/* Session tickets: keys derived from this secret, the listener's
	 * name, its trust policy and the time, so every worker (and, with
	 * ticket_key_file, every host) agrees, and a ticket opens nowhere
	 * else: not on another listener, not after the trust changed. */
	int tickets;            /* resumption on */
	uint8_t ticket_secret[32]; /* wiped with the context, which is
	                              left out of core dumps */
	unsigned ticket_lifetime;  /* seconds: one key period */
	unsigned ticket_max_age;   /* seconds after the full handshake */
	char *ticket_name;         /* owned: the listener's name, whole */
	uint8_t policy[32];        /* SHA-256 of the trust settings */
	/* The ticket cipher of the two periods a ticket may come from, each
	 * process (worker) filling its own copy: key derivation and AES key
	 * expansion once a period, not per ticket (tlssess.c).  On the
	 * context's pages, left out of core dumps. */
	struct {
		uint32_t period;
		int ready;
		mbedtls_gcm_context gcm;
	} tkey[2];
	uint8_t (*ca_sha256)[32];  /* owned: SHA-256 of each cert in ca */
	size_t nca;
	/* For each CRL (list order) and each cert in ca (list order), as
	 * mbedTLS's chain verification would judge the pair: CRL_NA (the
	 * CRL names another issuer), CRL_TRUSTED, CRL_UNTRUSTED (same name,
	 * but that CA may not sign CRLs or did not sign this one). */
	uint8_t *crl_ca;           /* owned: ncrl * nca entries */
	size_t ncrl;
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

/* tlsctx.c: the certificate of ${t}'s ca list whose DER hashes to
 * ${sha256}, or NULL. */
mbedtls_x509_crt *tlsctx_ca_by_hash(struct tlsctx *t,
    const uint8_t sha256[32]);

/* Result of tlsctx_crl_check. */
enum tlsctx_crl {
	TLSCTX_CRL_OK,        /* not revoked (or no CRL of that issuer) */
	TLSCTX_CRL_REVOKED,   /* listed in a CRL of its issuer */
	TLSCTX_CRL_STALE,     /* a CRL of its issuer is past nextUpdate and
	                         tls.crl_stale = "refuse" */
	TLSCTX_CRL_UNTRUSTED, /* a CRL in the issuer's name does not verify,
	                         or is not yet valid */
};

/*
 * tlsctx.c: check ${child} against every CRL of ${t} issued by ${parent},
 * as mbedTLS's chain verification does, without signature checks where
 * they were made at load time.  ${*stale} is set if a CRL past its
 * nextUpdate was consulted and tls.crl_stale = "warn".
 */
enum tlsctx_crl tlsctx_crl_check(const struct tlsctx *t,
    const mbedtls_x509_crt *child, mbedtls_x509_crt *parent, int *stale);

/* tlssess.c: the ticket callbacks tlsctx installs (p_ticket: tlsctx). */
int tlssess_ticket_write(void *p_ticket, const mbedtls_ssl_session *session,
    unsigned char *start, const unsigned char *end, size_t *tlen,
    uint32_t *lifetime);
int tlssess_ticket_parse(void *p_ticket, mbedtls_ssl_session *session,
    unsigned char *buf, size_t len);

#endif
