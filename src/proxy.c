/*
 * proxy: PROXY protocol v1 and v2 headers.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

size_t
proxy_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf,
    size_t len)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	unsigned sp, dp;
	const char *fam;
	int n;

	if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)src;
		const struct sockaddr_in *b = (const struct sockaddr_in *)dst;

		inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
		inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
		sp = ntohs(a->sin_port);
		dp = ntohs(b->sin_port);
		fam = "TCP4";
	} else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)src;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)dst;

		inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
		inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
		sp = ntohs(a->sin6_port);
		dp = ntohs(b->sin6_port);
		fam = "TCP6";
	} else {
		n = snprintf(buf, len, "PROXY UNKNOWN\r\n");
		return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
	}
	n = snprintf(buf, len, "PROXY %s %s %s %u %u\r\n", fam, s, d, sp, dp);
	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

/* Bounds-checked writer: once it overflows it stays failed. */
struct out {
	uint8_t *p;
	size_t len, off;
	int bad;
};

static void
put(struct out *o, const void *v, size_t n)
{
	if (o->bad || n > o->len - o->off) {
		o->bad = 1;
		return;
	}
	memcpy(o->p + o->off, v, n);
	o->off += n;
}

static void
put_u8(struct out *o, uint8_t v)
{
	put(o, &v, 1);
}

static void
put_u16(struct out *o, size_t v)
{
	const uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	if (v > 0xffff)
		o->bad = 1;
	put(o, b, 2);
}

static void
put_tlv(struct out *o, uint8_t type, const char *s)
{
	size_t n = strlen(s), i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			o->bad = 1;
	put_u8(o, type);
	put_u16(o, n);
	put(o, s, n);
}

/* Overwrite the big-endian u16 at ${at}. */
static void
patch_u16(struct out *o, size_t at, size_t v)
{
	if (o->bad || v > 0xffff)
		o->bad = 1;
	else {
		o->p[at] = (uint8_t)(v >> 8);
		o->p[at + 1] = (uint8_t)v;
	}
}

static void
put_ssl_tlv(struct out *o, const struct proxy_tls *t)
{
	size_t lenpos, start;
	uint8_t client = PROXY_PP2_CLIENT_SSL;
	/* verify: 0 when the client presented a certificate that verified */
	uint8_t verify[4] = { 0, 0, 0, t->cert_verified ? 0 : 1 };

	/* A full handshake: presented on this connection, and so in its
	 * session (both, as HAProxy sends); a resumed one: in the session
	 * only (the client proved its key when the session was made). */
	if (t->cert_verified)
		client |= t->resumed ? PROXY_PP2_CLIENT_CERT_SESS :
		    PROXY_PP2_CLIENT_CERT_CONN | PROXY_PP2_CLIENT_CERT_SESS;
	put_u8(o, PROXY_PP2_TYPE_SSL);
	lenpos = o->off;
	put_u16(o, 0);
	start = o->off;
	put_u8(o, client);
	put(o, verify, sizeof(verify));
	put_tlv(o, PROXY_PP2_SUBTYPE_SSL_VERSION, t->version);
	if (t->cipher != NULL)
		put_tlv(o, PROXY_PP2_SUBTYPE_SSL_CIPHER, t->cipher);
	if (t->cn != NULL)
		put_tlv(o, PROXY_PP2_SUBTYPE_SSL_CN, t->cn);
	patch_u16(o, lenpos, o->off - start);
}

size_t
proxy_v2(const struct sockaddr *src, const struct sockaddr *dst,
    const struct proxy_tls *tls, uint8_t *buf, size_t len)
{
	struct out o = { .p = buf, .len = len };
	size_t lenpos, start;

	put(&o, v2_sig, sizeof(v2_sig));
	put_u8(&o, 0x21); /* version 2, PROXY */
	if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)src;
		const struct sockaddr_in *b = (const struct sockaddr_in *)dst;

		put_u8(&o, 0x11); /* TCP over IPv4 */
		lenpos = o.off;
		put_u16(&o, 0);
		start = o.off;
		put(&o, &a->sin_addr, 4);
		put(&o, &b->sin_addr, 4);
		put(&o, &a->sin_port, 2); /* already network order */
		put(&o, &b->sin_port, 2);
	} else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)src;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)dst;

		put_u8(&o, 0x21); /* TCP over IPv6 */
		lenpos = o.off;
		put_u16(&o, 0);
		start = o.off;
		put(&o, &a->sin6_addr, 16);
		put(&o, &b->sin6_addr, 16);
		put(&o, &a->sin6_port, 2);
		put(&o, &b->sin6_port, 2);
	} else {
		put_u8(&o, 0x00); /* UNSPEC: the backend ignores addresses */
		lenpos = o.off;
		put_u16(&o, 0);
		start = o.off;
	}
	if (tls != NULL && tls->version != NULL) {
		put_ssl_tlv(&o, tls);
		if (tls->uri != NULL)
			put_tlv(&o, PROXY_PP2_TYPE_CLIENT_URI, tls->uri);
	}
	patch_u16(&o, lenpos, o.off - start);
	return o.bad ? 0 : o.off;
}
