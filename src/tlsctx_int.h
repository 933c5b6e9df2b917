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
};

#endif
