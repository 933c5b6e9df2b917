/*
 * proxy: PROXY protocol v1 and v2 headers (HAProxy's proxy-protocol.txt),
 * telling a relay backend who the client is.  Pure: no I/O, no logging.
 */
#ifndef TLS_ECHOD_PROXY_H
#define TLS_ECHOD_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_V1_MAX 108   /* the spec's bound for a v1 line */
#define PROXY_V2_MAX 1024  /* our bound: addresses plus the TLVs we send */

/* v2 TLV types we send. */
#define PROXY_PP2_TYPE_SSL 0x20
#define PROXY_PP2_SUBTYPE_SSL_VERSION 0x21
#define PROXY_PP2_SUBTYPE_SSL_CN 0x22
#define PROXY_PP2_SUBTYPE_SSL_CIPHER 0x23
#define PROXY_PP2_CLIENT_SSL 0x01
#define PROXY_PP2_CLIENT_CERT_CONN 0x02
#define PROXY_PP2_CLIENT_CERT_SESS 0x04
/* First URI SAN of the client certificate (e.g. a SPIFFE ID): a custom type
 * from the range the spec reserves for applications (0xE0-0xEF). */
#define PROXY_PP2_TYPE_CLIENT_URI 0xE0

/* What the backend learns about the client's TLS session (v2 only). */
struct proxy_tls {
	const char *version; /* "TLSv1.3"; NULL: no SSL TLV at all */
	const char *cipher;  /* IANA name, or NULL */
	const char *cn;      /* client certificate CN, or NULL */
	const char *uri;     /* first URI SAN, or NULL */
	int cert_verified;   /* a client certificate was presented and verified */
	int resumed;         /* ... in the session this connection resumed */
};

/**
 * proxy_v1(src, dst, buf, len):
 * Write the v1 line ("PROXY TCP4 ...\r\n", or "PROXY UNKNOWN\r\n" for other
 * families) into ${buf}.  Returns its length, or 0 if ${len} is too small.
 */
size_t proxy_v1(const struct sockaddr *src, const struct sockaddr *dst,
    char *buf, size_t len);

/**
 * proxy_v2(src, dst, tls, buf, len):
 * Write a v2 PROXY header with ${tls}'s TLVs (${tls} may be NULL) into
 * ${buf}.  Unknown address families are sent as UNSPEC.  Returns its length,
 * or 0 if ${len} is too small, a string is too long for a TLV, or a string
 * holds a control byte (NUL included): a backend never gets a name cut
 * short or carrying something else.
 */
size_t proxy_v2(const struct sockaddr *src, const struct sockaddr *dst,
    const struct proxy_tls *tls, uint8_t *buf, size_t len);

#endif
