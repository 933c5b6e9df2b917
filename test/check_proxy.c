/*
 * Unit tests for the PROXY protocol encoder (src/proxy.c), against byte-exact
 * vectors: the v1 examples of HAProxy's proxy-protocol.txt (section 2.1) and
 * v2 headers laid out by hand from its section 2.2.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "proxy.h"

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

static struct sockaddr_in
v4(const char *ip, unsigned port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	ck_assert_int_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static struct sockaddr_in6
v6(const char *ip, unsigned port)
{
	struct sockaddr_in6 a;

	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_port = htons((uint16_t)port);
	ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return a;
}

START_TEST(v1_tcp4_matches_spec_examples)
{
	struct sockaddr_in s = v4("255.255.255.255", 65535);
	struct sockaddr_in d = v4("255.255.255.255", 65535);
	struct sockaddr_in s2 = v4("192.168.0.1", 56324);
	struct sockaddr_in d2 = v4("192.168.0.11", 443);
	char buf[PROXY_V1_MAX];
	size_t n;

	n = proxy_v1((struct sockaddr *)&s, (struct sockaddr *)&d, buf,
	    sizeof(buf));
	ck_assert_uint_eq(n, 56); /* the spec's worst case for TCP4 */
	ck_assert_mem_eq(buf, "PROXY TCP4 255.255.255.255 255.255.255.255 "
	    "65535 65535\r\n", n);
	n = proxy_v1((struct sockaddr *)&s2, (struct sockaddr *)&d2, buf,
	    sizeof(buf));
	ck_assert_str_eq(buf, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
	ck_assert_uint_eq(n, strlen(buf));
}
END_TEST

START_TEST(v1_tcp6_worst_case_is_104_bytes)
{
	struct sockaddr_in6 s = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	    65535);
	char buf[PROXY_V1_MAX];
	size_t n;

	n = proxy_v1((struct sockaddr *)&s, (struct sockaddr *)&s, buf,
	    sizeof(buf));
	ck_assert_uint_eq(n, 104); /* the spec's stated maximum */
	ck_assert_mem_eq(buf, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
	    "ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n", n);
}
END_TEST

START_TEST(v1_other_family_is_unknown)
{
	struct sockaddr_un u;
	char buf[PROXY_V1_MAX];

	memset(&u, 0, sizeof(u));
	u.sun_family = AF_UNIX;
	ck_assert_uint_eq(proxy_v1((struct sockaddr *)&u, (struct sockaddr *)&u,
	    buf, sizeof(buf)), 15);
	ck_assert_str_eq(buf, "PROXY UNKNOWN\r\n");
}
END_TEST

START_TEST(v1_refuses_short_buffer)
{
	struct sockaddr_in s = v4("192.168.0.1", 56324);
	char buf[20];

	ck_assert_uint_eq(proxy_v1((struct sockaddr *)&s, (struct sockaddr *)&s,
	    buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(v2_tcp4_without_tlvs_is_byte_exact)
{
	struct sockaddr_in s = v4("127.0.0.1", 40000);
	struct sockaddr_in d = v4("127.0.0.2", 8443);
	uint8_t want[28], buf[PROXY_V2_MAX];
	static const uint8_t tail[16] = {
		0x21,                   /* version 2, command PROXY */
		0x11,                   /* AF_INET, STREAM */
		0x00, 0x0c,             /* 12 address bytes follow */
		127, 0, 0, 1, 127, 0, 0, 2,
		0x9c, 0x40,             /* 40000 */
		0x20, 0xfb,             /* 8443 */
	};

	memcpy(want, sig, 12);
	memcpy(want + 12, tail, 16);
	ck_assert_uint_eq(proxy_v2((struct sockaddr *)&s, (struct sockaddr *)&d,
	    NULL, buf, sizeof(buf)), sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
}
END_TEST

START_TEST(v2_tcp6_without_tlvs_is_byte_exact)
{
	struct sockaddr_in6 s = v6("::1", 1);
	struct sockaddr_in6 d = v6("2001:db8::2", 65535);
	uint8_t buf[PROXY_V2_MAX];

	ck_assert_uint_eq(proxy_v2((struct sockaddr *)&s, (struct sockaddr *)&d,
	    NULL, buf, sizeof(buf)), 16 + 36);
	ck_assert_mem_eq(buf, sig, 12);
	ck_assert_uint_eq(buf[12], 0x21);
	ck_assert_uint_eq(buf[13], 0x21); /* AF_INET6, STREAM */
	ck_assert_uint_eq(buf[14], 0x00);
	ck_assert_uint_eq(buf[15], 36);
	ck_assert_mem_eq(buf + 16, &s.sin6_addr, 16);
	ck_assert_mem_eq(buf + 32, &d.sin6_addr, 16);
	ck_assert_uint_eq(buf[48], 0x00);
	ck_assert_uint_eq(buf[49], 0x01);
	ck_assert_uint_eq(buf[50], 0xff);
	ck_assert_uint_eq(buf[51], 0xff);
}
END_TEST

START_TEST(v2_ssl_tlv_carries_version_cipher_cn_and_uri)
{
	struct sockaddr_in s = v4("10.0.0.1", 1);
	struct sockaddr_in d = v4("10.0.0.2", 2);
	struct proxy_tls t = {
		.version = "TLSv1.3",
		.cipher = "TLS_AES_128_GCM_SHA256",
		.cn = "api",
		.uri = "spiffe://x/y",
		.cert_verified = 1,
	};
	uint8_t buf[PROXY_V2_MAX];
	static const uint8_t want[] = {
		0x21, 0x11,
		0x00, 12 + 3 + 5 + 3 + 7 + 3 + 22 + 3 + 3 + 3 + 12,
		10, 0, 0, 1, 10, 0, 0, 2, 0x00, 0x01, 0x00, 0x02,
		0x20, 0x00, 5 + 3 + 7 + 3 + 22 + 3 + 3, /* PP2_TYPE_SSL */
		0x07,                   /* PP2_CLIENT_SSL | _CERT_CONN | _CERT_SESS */
		0x00, 0x00, 0x00, 0x00, /* verify: 0 = success */
		0x21, 0x00, 7, 'T', 'L', 'S', 'v', '1', '.', '3',
		0x23, 0x00, 22, 'T', 'L', 'S', '_', 'A', 'E', 'S', '_', '1', '2',
		'8', '_', 'G', 'C', 'M', '_', 'S', 'H', 'A', '2', '5', '6',
		0x22, 0x00, 3, 'a', 'p', 'i',
		0xe0, 0x00, 12, 's', 'p', 'i', 'f', 'f', 'e', ':', '/', '/', 'x',
		'/', 'y',
	};
	size_t n = proxy_v2((struct sockaddr *)&s, (struct sockaddr *)&d, &t,
	    buf, sizeof(buf));

	ck_assert_uint_eq(n, 12 + sizeof(want));
	ck_assert_mem_eq(buf, sig, 12);
	ck_assert_mem_eq(buf + 12, want, sizeof(want));
}
END_TEST

START_TEST(v2_refuses_short_buffer_and_oversized_tlv)
{
	struct sockaddr_in s = v4("10.0.0.1", 1);
	struct proxy_tls t = { .version = "TLSv1.2", .cn = NULL };
	static char big[70000];
	uint8_t buf[PROXY_V2_MAX];
	size_t n, k;

	n = proxy_v2((struct sockaddr *)&s, (struct sockaddr *)&s, &t, buf,
	    sizeof(buf));
	ck_assert_uint_gt(n, 28);
	for (k = 0; k < n; k++)
		ck_assert_uint_eq(proxy_v2((struct sockaddr *)&s,
		    (struct sockaddr *)&s, &t, buf, k), 0);
	memset(big, 'a', sizeof(big) - 1);
	t.cn = big;
	ck_assert_uint_eq(proxy_v2((struct sockaddr *)&s, (struct sockaddr *)&s,
	    &t, buf, sizeof(buf)), 0);
}
END_TEST

/* The client byte of the PP2_TYPE_SSL TLV in a v2 header over IPv4. */
static uint8_t
ssl_client_byte(const struct proxy_tls *t)
{
	struct sockaddr_in s = v4("10.0.0.1", 1);
	uint8_t buf[PROXY_V2_MAX];

	ck_assert_uint_gt(proxy_v2((struct sockaddr *)&s,
	    (struct sockaddr *)&s, t, buf, sizeof(buf)), 16 + 12 + 4);
	ck_assert_uint_eq(buf[16 + 12], PROXY_PP2_TYPE_SSL);
	return buf[16 + 12 + 3];
}

START_TEST(v2_resumed_session_says_cert_in_session_not_connection)
{
	struct proxy_tls t = {
		.version = "TLSv1.3",
		.cn = "api",
		.cert_verified = 1,
	};

	ck_assert_uint_eq(ssl_client_byte(&t), PROXY_PP2_CLIENT_SSL |
	    PROXY_PP2_CLIENT_CERT_CONN | PROXY_PP2_CLIENT_CERT_SESS);
	t.resumed = 1;
	ck_assert_uint_eq(ssl_client_byte(&t), PROXY_PP2_CLIENT_SSL |
	    PROXY_PP2_CLIENT_CERT_SESS);
	t.cert_verified = 0;
	t.cn = NULL;
	ck_assert_uint_eq(ssl_client_byte(&t), PROXY_PP2_CLIENT_SSL);
}
END_TEST

START_TEST(v2_refuses_control_bytes_in_names)
{
	static const char *const bad[] = {
		"spiffe://x/y\n", "spiffe://x\x01/y", "\x7f", "a\rb", "\t",
	};
	struct sockaddr_in s = v4("10.0.0.1", 1);
	uint8_t buf[PROXY_V2_MAX];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct proxy_tls u = { .version = "TLSv1.3", .uri = bad[i] };
		struct proxy_tls c = { .version = "TLSv1.3", .cn = bad[i] };

		ck_assert_uint_eq(proxy_v2((struct sockaddr *)&s,
		    (struct sockaddr *)&s, &u, buf, sizeof(buf)), 0);
		ck_assert_uint_eq(proxy_v2((struct sockaddr *)&s,
		    (struct sockaddr *)&s, &c, buf, sizeof(buf)), 0);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("proxy");
	TCase *t1 = tcase_create("v1"), *t2 = tcase_create("v2");
	SRunner *r;
	int failed;

	tcase_add_test(t1, v1_tcp4_matches_spec_examples);
	tcase_add_test(t1, v1_tcp6_worst_case_is_104_bytes);
	tcase_add_test(t1, v1_other_family_is_unknown);
	tcase_add_test(t1, v1_refuses_short_buffer);
	tcase_add_test(t2, v2_tcp4_without_tlvs_is_byte_exact);
	tcase_add_test(t2, v2_tcp6_without_tlvs_is_byte_exact);
	tcase_add_test(t2, v2_ssl_tlv_carries_version_cipher_cn_and_uri);
	tcase_add_test(t2, v2_refuses_short_buffer_and_oversized_tlv);
	tcase_add_test(t2, v2_resumed_session_says_cert_in_session_not_connection);
	tcase_add_test(t2, v2_refuses_control_bytes_in_names);
	suite_add_tcase(s, t1);
	suite_add_tcase(s, t2);
	r = srunner_create(s);
	srunner_run_all(r, CK_ENV);
	failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed == 0 ? 0 : 1;
}
