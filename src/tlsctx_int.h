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
	/* Relay to a TLS backend: our client side, when configured. */
	int has_backend;
	mbedtls_ssl_config bconf;
	mbedtls_x509_crt bca;   /* trusted issuers of the backend's cert */
	mbedtls_x509_crt bcert; /* our client certificate, if any */
	mbedtls_pk_context bkey;
	char *bname;            /* name the backend certificate must hold */
	char *bca_path;
};

#endif
