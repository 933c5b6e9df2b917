/*
 * fuzz_proxy: libFuzzer driver for the PROXY protocol header encoder
 * (src/proxy.c): proxy_v1 and proxy_v2 with fuzzed addresses, families, TLS
 * fields and output buffer sizes.
 *
 * Input, read front to back (missing bytes read as zero):
 *   2 bytes   family selectors of source and destination (% 5: AF_INET,
 *             AF_INET6, AF_UNIX, AF_UNSPEC, or the raw byte as a family)
 *   36 bytes  source then destination: 16 address bytes, 2 port bytes
 *   1 byte    flags: 0x01 tls given, 0x02 version, 0x04 cipher, 0x08 cn,
 *             0x10 uri, 0x20 cert_verified, 0x40 make one string long
 *             (near 65535 bytes, to cross the TLV length limit),
 *             0x80 resumed
 *   4 bytes   output sizes for v1 and v2 (16 bits each; taken modulo the
 *             full header length plus 8, so the boundaries get hit)
 *   rest      the TLS strings, split at bytes 0xff (a NUL ends a string
 *             early, as it would a C string)
 *
 * Each header goes into a heap buffer of exactly the fuzzed size (ASan sees
 * any write past it).  Invariants: the result is never longer than the
 * buffer; 0 exactly when the full header does not fit (or, for v2, a string
 * is too long for a TLV or holds a control byte); a header that fits is the same bytes as with a
 * large buffer.  v1 is NUL-terminated, starts "PROXY ", ends with CRLF, is
 * at most 107 bytes, and parses back to the addresses and ports given (or is
 * "PROXY UNKNOWN\r\n").  v2 has the signature, version/command 0x21, the
 * family byte for the addresses, a length field equal to the bytes after
 * the 16-byte preamble, the addresses and ports given, and TLVs that parse
 * exactly to its end and carry the TLS strings given.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LONG_STR 65536 /* room for a string one past the TLV limit */
#define BIG_BUF (16 + 36 + 3 + 5 + 4 * (3 + LONG_STR))

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t
take(struct in *in)
{
	uint8_t b = 0;

	if (in->n > 0) {
		b = *in->p++;
		in->n--;
	}
	return b;
}

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_proxy: invariant broken: %s\n", what);
	abort();
}

static void
check(bool ok, const char *what)
{
	if (!ok)
		fail(what);
}

/* Build a sockaddr of the family ${sel} picks from 18 input bytes. */
static void
make_addr(uint8_t sel, const uint8_t b[18], struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	switch (sel % 5) {
	case 0: {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, b, 4);
		memcpy(&a->sin_port, b + 16, 2);
		break;
	}
	case 1: {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, b, 16);
		memcpy(&a->sin6_port, b + 16, 2);
		break;
	}
	case 2: {
		struct sockaddr_un *a = (struct sockaddr_un *)ss;

		a->sun_family = AF_UNIX;
		memcpy(a->sun_path, b, 16);
		break;
	}
	case 3:
		ss->ss_family = AF_UNSPEC;
		break;
	default:
		ss->ss_family = sel;
		break;
	}
}

/* Next string: up to a 0xff byte (or the end); a NUL cuts it short. */
static char *
take_str(struct in *in)
{
	size_t n = 0;
	char *s;

	while (n < in->n && in->p[n] != 0xff)
		n++;
	if ((s = malloc(n + 1)) == NULL)
		abort();
	memcpy(s, in->p, n);
	s[n] = '\0';
	in->p += n;
	in->n -= n;
	if (in->n > 0) { /* the separator */
		in->p++;
		in->n--;
	}
	return s;
}

/* A string of ${len} bytes 'x'. */
static char *
long_str(size_t len)
{
	char *s = malloc(len + 1);

	if (s == NULL)
		abort();
	memset(s, 'x', len);
	s[len] = '\0';
	return s;
}

static void
check_v1(const struct sockaddr *src, const struct sockaddr *dst,
    const char *h, size_t n)
{
	char s[64], d[64], line[256];
	unsigned sp, dp;
	int fam;

	check(n <= 107, "v1 longer than 107 bytes");
	check(h[n] == '\0', "v1 not NUL-terminated");
	check(strlen(h) == n, "v1 length differs from strlen");
	check(n >= 8 && memcmp(h, "PROXY ", 6) == 0, "v1 without \"PROXY \"");
	check(h[n - 2] == '\r' && h[n - 1] == '\n', "v1 without CRLF");
	check(memchr(h, '\r', n - 2) == NULL && memchr(h, '\n', n - 2) == NULL,
	    "v1 with CR or LF before its end");
	if (src->sa_family != dst->sa_family ||
	    (src->sa_family != AF_INET && src->sa_family != AF_INET6)) {
		check(strcmp(h, "PROXY UNKNOWN\r\n") == 0,
		    "v1 other families: not PROXY UNKNOWN");
		return;
	}
	fam = src->sa_family;
	check(sscanf(h, "PROXY TCP%*1[46] %63s %63s %u %u", s, d, &sp,
	    &dp) == 4, "v1 does not parse");
	/* Exactly one space between fields, nothing else: rebuild it. */
	snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
	    fam == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
	check(strcmp(line, h) == 0, "v1 not in the spec's form");
	if (fam == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)src;
		const struct sockaddr_in *b = (const struct sockaddr_in *)dst;
		struct in_addr x, y;

		check(inet_pton(AF_INET, s, &x) == 1 &&
		    inet_pton(AF_INET, d, &y) == 1, "v1 IPv4 addresses");
		check(x.s_addr == a->sin_addr.s_addr &&
		    y.s_addr == b->sin_addr.s_addr, "v1 IPv4 address changed");
		check(sp == ntohs(a->sin_port) && dp == ntohs(b->sin_port),
		    "v1 IPv4 ports");
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)src;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)dst;
		struct in6_addr x, y;

		check(inet_pton(AF_INET6, s, &x) == 1 &&
		    inet_pton(AF_INET6, d, &y) == 1, "v1 IPv6 addresses");
		check(memcmp(&x, &a->sin6_addr, 16) == 0 &&
		    memcmp(&y, &b->sin6_addr, 16) == 0,
		    "v1 IPv6 address changed");
		check(sp == ntohs(a->sin6_port) && dp == ntohs(b->sin6_port),
		    "v1 IPv6 ports");
	}
}

static unsigned
u16at(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* The TLV at ${*off} in [${p}, ${end}): its type and value; advances. */
static void
tlv(const uint8_t *p, size_t end, size_t *off, uint8_t *type,
    const uint8_t **val, size_t *len)
{
	check(end - *off >= 3, "v2 TLV header cut off");
	*type = p[*off];
	*len = u16at(p + *off + 1);
	check(end - *off - 3 >= *len, "v2 TLV runs past its container");
	*val = p + *off + 3;
	*off += 3 + *len;
}

static void
expect_str(const uint8_t *val, size_t len, const char *s, const char *what)
{
	check(len == strlen(s) && memcmp(val, s, len) == 0, what);
}

static void
check_v2(const struct sockaddr *src, const struct sockaddr *dst,
    const struct proxy_tls *t, const uint8_t *h, size_t n)
{
	size_t off, addrlen;
	uint8_t fam, type;
	const uint8_t *val;
	size_t len;

	check(n >= 16, "v2 shorter than its preamble");
	check(memcmp(h, v2_sig, 12) == 0, "v2 signature");
	check(h[12] == 0x21, "v2 version/command");
	check(u16at(h + 14) == n - 16, "v2 length field");
	if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)src;
		const struct sockaddr_in *b = (const struct sockaddr_in *)dst;

		fam = 0x11;
		addrlen = 12;
		check(n >= 16 + addrlen, "v2 IPv4 block cut off");
		check(memcmp(h + 16, &a->sin_addr, 4) == 0 &&
		    memcmp(h + 20, &b->sin_addr, 4) == 0 &&
		    memcmp(h + 24, &a->sin_port, 2) == 0 &&
		    memcmp(h + 26, &b->sin_port, 2) == 0, "v2 IPv4 block");
	} else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)src;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)dst;

		fam = 0x21;
		addrlen = 36;
		check(n >= 16 + addrlen, "v2 IPv6 block cut off");
		check(memcmp(h + 16, &a->sin6_addr, 16) == 0 &&
		    memcmp(h + 32, &b->sin6_addr, 16) == 0 &&
		    memcmp(h + 48, &a->sin6_port, 2) == 0 &&
		    memcmp(h + 50, &b->sin6_port, 2) == 0, "v2 IPv6 block");
	} else {
		fam = 0x00;
		addrlen = 0;
	}
	check(h[13] == fam, "v2 family byte");
	off = 16 + addrlen;
	if (t == NULL || t->version == NULL) {
		check(off == n, "v2 TLVs without TLS fields");
		return;
	}
	tlv(h, n, &off, &type, &val, &len);
	check(type == PROXY_PP2_TYPE_SSL, "v2 first TLV not PP2_TYPE_SSL");
	{
		const uint8_t *ssl = val, *sv;
		size_t slen = len, sub = 5, svlen;
		uint8_t want = PROXY_PP2_CLIENT_SSL, st;

		if (t->cert_verified)
			want |= t->resumed ? PROXY_PP2_CLIENT_CERT_SESS :
			    PROXY_PP2_CLIENT_CERT_CONN |
			    PROXY_PP2_CLIENT_CERT_SESS;
		check(slen >= 5, "v2 SSL TLV too short");
		check(ssl[0] == want, "v2 SSL client byte");
		check(ssl[1] == 0 && ssl[2] == 0 && ssl[3] == 0 &&
		    ssl[4] == (t->cert_verified ? 0 : 1), "v2 SSL verify");
		tlv(ssl, slen, &sub, &st, &sv, &svlen);
		check(st == PROXY_PP2_SUBTYPE_SSL_VERSION, "v2 version TLV");
		expect_str(sv, svlen, t->version, "v2 version string");
		if (t->cipher != NULL) {
			tlv(ssl, slen, &sub, &st, &sv, &svlen);
			check(st == PROXY_PP2_SUBTYPE_SSL_CIPHER,
			    "v2 cipher TLV");
			expect_str(sv, svlen, t->cipher, "v2 cipher string");
		}
		if (t->cn != NULL) {
			tlv(ssl, slen, &sub, &st, &sv, &svlen);
			check(st == PROXY_PP2_SUBTYPE_SSL_CN, "v2 CN TLV");
			expect_str(sv, svlen, t->cn, "v2 CN string");
		}
		check(sub == slen, "v2 SSL TLV: bytes after its sub-TLVs");
	}
	if (t->uri != NULL) {
		tlv(h, n, &off, &type, &val, &len);
		check(type == PROXY_PP2_TYPE_CLIENT_URI, "v2 URI TLV");
		expect_str(val, len, t->uri, "v2 URI string");
	}
	check(off == n, "v2: bytes after the last TLV");
}

/* ${s} (NULL: absent) holds a byte a TLV string must not carry. */
static bool
has_ctl(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return true;
	return false;
}

/* A v2 header fits in 16 bits of length after the preamble, and its
 * strings carry no control bytes. */
static bool
v2_fits_u16(const struct proxy_tls *t, size_t addrlen)
{
	size_t ssl, total;

	if (t == NULL || t->version == NULL)
		return true;
	if (has_ctl(t->version) || has_ctl(t->cipher) || has_ctl(t->cn) ||
	    has_ctl(t->uri))
		return false;
	ssl = 5 + 3 + strlen(t->version) +
	    (t->cipher ? 3 + strlen(t->cipher) : 0) +
	    (t->cn ? 3 + strlen(t->cn) : 0);
	total = addrlen + 3 + ssl + (t->uri ? 3 + strlen(t->uri) : 0);
	return ssl <= 0xffff && total <= 0xffff &&
	    (t->uri == NULL || strlen(t->uri) <= 0xffff);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t big[BIG_BUF];
	struct in in = { data, size };
	struct sockaddr_storage src, dst;
	struct proxy_tls tls = { 0 };
	char *strs[4] = { NULL, NULL, NULL, NULL };
	uint8_t sel[2], ab[2][18], flags, *v2;
	char v1full[256], *v1;
	size_t v1len, v2len, n1, full1, n2, full2, i, addrlen;
	unsigned sz1, sz2;

	sel[0] = take(&in);
	sel[1] = take(&in);
	for (i = 0; i < 36; i++)
		ab[i / 18][i % 18] = take(&in);
	flags = take(&in);
	sz1 = (unsigned)take(&in) << 8;
	sz1 |= take(&in);
	sz2 = (unsigned)take(&in) << 8;
	sz2 |= take(&in);
	make_addr(sel[0], ab[0], &src);
	make_addr(sel[1], ab[1], &dst);
	for (i = 0; i < 4; i++)
		strs[i] = take_str(&in);
	if (flags & 0x40) {
		/* One string (picked by the size bytes) near the TLV limit. */
		i = sz2 % 4;
		free(strs[i]);
		strs[i] = long_str(0xffff - 32 + sz1 % 64);
	}
	tls.version = flags & 0x02 ? strs[0] : NULL;
	tls.cipher = flags & 0x04 ? strs[1] : NULL;
	tls.cn = flags & 0x08 ? strs[2] : NULL;
	tls.uri = flags & 0x10 ? strs[3] : NULL;
	tls.cert_verified = (flags & 0x20) != 0;
	tls.resumed = (flags & 0x80) != 0;

	/* v1: the full line, then into a buffer of the fuzzed size. */
	full1 = proxy_v1((struct sockaddr *)&src, (struct sockaddr *)&dst,
	    v1full, sizeof(v1full));
	check(full1 > 0, "v1 does not fit 256 bytes");
	check_v1((struct sockaddr *)&src, (struct sockaddr *)&dst, v1full,
	    full1);
	v1len = sz1 % (full1 + 8);
	if ((v1 = malloc(v1len ? v1len : 1)) == NULL)
		abort();
	n1 = proxy_v1((struct sockaddr *)&src, (struct sockaddr *)&dst, v1,
	    v1len);
	if (v1len > full1) {
		check(n1 == full1 && memcmp(v1, v1full, full1 + 1) == 0,
		    "v1 differs with a smaller buffer that fits");
	} else
		check(n1 == 0, "v1 not 0 when it does not fit (with its NUL)");
	free(v1);

	/* v2 likewise, with and without the TLS fields. */
	addrlen = src.ss_family == dst.ss_family ? (src.ss_family == AF_INET ?
	    12 : src.ss_family == AF_INET6 ? 36 : 0) : 0;
	full2 = proxy_v2((struct sockaddr *)&src, (struct sockaddr *)&dst,
	    flags & 0x01 ? &tls : NULL, big, sizeof(big));
	if (full2 == 0)
		check((flags & 0x01) && !v2_fits_u16(&tls, addrlen),
		    "v2 refused although it fits and is clean");
	else {
		check((flags & 0x01) == 0 || v2_fits_u16(&tls, addrlen),
		    "v2 accepted although a length exceeds 16 bits or a "
		    "string holds a control byte");
		check_v2((struct sockaddr *)&src, (struct sockaddr *)&dst,
		    flags & 0x01 ? &tls : NULL, big, full2);
	}
	v2len = sz2 % (full2 + 8);
	if ((v2 = malloc(v2len ? v2len : 1)) == NULL)
		abort();
	n2 = proxy_v2((struct sockaddr *)&src, (struct sockaddr *)&dst,
	    flags & 0x01 ? &tls : NULL, v2, v2len);
	check(n2 <= v2len, "v2 longer than its buffer");
	if (full2 > 0 && v2len >= full2)
		check(n2 == full2 && memcmp(v2, big, full2) == 0,
		    "v2 differs with a smaller buffer that fits");
	else
		check(n2 == 0, "v2 not 0 when it does not fit");
	free(v2);

	for (i = 0; i < 4; i++)
		free(strs[i]);
	return 0;
}
