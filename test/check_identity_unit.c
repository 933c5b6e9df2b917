/*
 * check_identity_unit: the allow-list matcher (src/identity.c) and the name
 * extraction of tlssess_crt_identity() on real certificates.
 *
 * Suite "identity": identity_add / identity_match / identity_describe on
 * hand-built identities, one behaviour per test (exact and case rules per
 * kind, one-label DNS wildcards, URI prefixes, "@domain" e-mail rules,
 * SPKI pins, names refused for NULs or overflow, bounded descriptions,
 * the UTF-8 check that decides how names go out as text).
 *
 * Suite "crt_identity": tlssess_crt_identity() on the test PKI's client
 * certificates ($TEST_PKI, test/gen-test-pki.sh) and on certificates made
 * here with the openssl CLI in $TEST_TMPDIR; the SPKI hash is compared with
 * the openssl pipeline that src/config.c tells operators to use.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/x509_crt.h>

#include "identity.h"
#include "tlssess.h"

/* A string literal where the API wants char * (it never writes). */
#define S(lit) ((char *)(uintptr_t)(lit))

static const char *pki;    /* $TEST_PKI */
static const char *tmpdir; /* $TEST_TMPDIR */

/* --- helpers ------------------------------------------------------------ */

/* An identity holding the NUL-terminated ${names} of ${kind}. */
static void
id_of(struct identity *id, enum identity_kind kind, const char *const *names)
{
	memset(id, 0, sizeof(*id));
	for (; *names != NULL; names++)
		ck_assert_int_eq(identity_add(id, kind, *names,
		    strlen(*names)), 0);
}

/* An allow-list with the NULL-ended ${pats} as rules of ${kind} only. */
struct allow_buf {
	struct identity_allow a;
	char *pats[16];
};

static void
allow_of(struct allow_buf *b, enum identity_kind kind, const char *const *pats)
{
	size_t n = 0;

	memset(b, 0, sizeof(*b));
	for (; *pats != NULL && n < 16; pats++)
		b->pats[n++] = (char *)(uintptr_t)*pats;
	switch (kind) {
	case IDENTITY_CN: b->a.cn = b->pats; b->a.ncn = n; break;
	case IDENTITY_OU: b->a.ou = b->pats; b->a.nou = n; break;
	case IDENTITY_DNS: b->a.dns = b->pats; b->a.ndns = n; break;
	case IDENTITY_URI: b->a.uri = b->pats; b->a.nuri = n; break;
	case IDENTITY_EMAIL: b->a.email = b->pats; b->a.nemail = n; break;
	}
}

/* Does pattern ${pat} of ${kind} admit an identity with the one name ${name}? */
static bool
admits(enum identity_kind kind, const char *pat, const char *name)
{
	const char *pats[] = { pat, NULL }, *names[] = { name, NULL };
	struct allow_buf b;
	struct identity id;
	char rule[160];
	bool m;

	allow_of(&b, kind, pats);
	id_of(&id, kind, names);
	m = identity_match(&b.a, &id, rule, sizeof(rule));
	identity_clear(&id);
	return m;
}

#define ADMITS(kind, pat, name) \
	ck_assert_msg(admits((kind), (pat), (name)), "pattern \"%s\" should " \
	    "admit \"%s\"", (pat), (name))
#define REFUSES(kind, pat, name) \
	ck_assert_msg(!admits((kind), (pat), (name)), "pattern \"%s\" must " \
	    "not admit \"%s\"", (pat), (name))

/* --- cn, ou ---------------------------------------------------------------- */

START_TEST(cn_matches_exactly_and_case_sensitively)
{
	ADMITS(IDENTITY_CN, "test-client", "test-client");
	REFUSES(IDENTITY_CN, "test-client", "Test-Client");
	REFUSES(IDENTITY_CN, "test-client", "test-client2");
	REFUSES(IDENTITY_CN, "test-client", "test-clien");
	REFUSES(IDENTITY_CN, "test-client", "test-client ");
	/* No pattern syntax for cn: a star is a star. */
	REFUSES(IDENTITY_CN, "test-*", "test-client");
	ADMITS(IDENTITY_CN, "test-*", "test-*");
}
END_TEST

START_TEST(ou_matches_exactly_and_case_sensitively)
{
	ADMITS(IDENTITY_OU, "ops", "ops");
	REFUSES(IDENTITY_OU, "ops", "OPS");
	REFUSES(IDENTITY_OU, "ops", "ops-team");
	REFUSES(IDENTITY_OU, "ops", "");
}
END_TEST

START_TEST(cn_rule_does_not_match_an_ou_of_the_same_value)
{
	const char *pats[] = { "ops", NULL }, *names[] = { "ops", NULL };
	struct allow_buf b;
	struct identity id;
	char rule[160];

	allow_of(&b, IDENTITY_CN, pats);
	id_of(&id, IDENTITY_OU, names);
	ck_assert(!identity_match(&b.a, &id, rule, sizeof(rule)));
	identity_clear(&id);
}
END_TEST

/* --- dns ------------------------------------------------------------------- */

START_TEST(dns_exact_is_case_insensitive)
{
	ADMITS(IDENTITY_DNS, "a.svc.example", "a.svc.example");
	ADMITS(IDENTITY_DNS, "a.svc.example", "A.SVC.Example");
	ADMITS(IDENTITY_DNS, "A.Svc.EXAMPLE", "a.svc.example");
	REFUSES(IDENTITY_DNS, "a.svc.example", "b.svc.example");
	REFUSES(IDENTITY_DNS, "a.svc.example", "x.a.svc.example");
	REFUSES(IDENTITY_DNS, "a.svc.example", "a.svc.example.evil");
	/* An exact rule never treats a wildcard certificate as a match. */
	REFUSES(IDENTITY_DNS, "a.svc.example", "*.svc.example");
}
END_TEST

START_TEST(dns_wildcard_matches_exactly_one_more_label)
{
	ADMITS(IDENTITY_DNS, "*.example.com", "a.example.com");
	ADMITS(IDENTITY_DNS, "*.example.com", "web-01.example.com");
	ADMITS(IDENTITY_DNS, "*.example.com", "A.EXAMPLE.COM");
	REFUSES(IDENTITY_DNS, "*.example.com", "a.b.example.com");
	REFUSES(IDENTITY_DNS, "*.svc.example", "x.y.svc.example");
	REFUSES(IDENTITY_DNS, "*.example.com", "a.example.org");
	REFUSES(IDENTITY_DNS, "*.example.com", "aexample.com");
}
END_TEST

START_TEST(dns_wildcard_refuses_the_bare_domain_and_empty_labels)
{
	REFUSES(IDENTITY_DNS, "*.example.com", "example.com");
	REFUSES(IDENTITY_DNS, "*.example.com", ".example.com");
	REFUSES(IDENTITY_DNS, "*.example.com", "a..example.com");
	REFUSES(IDENTITY_DNS, "*.example.com", "..example.com");
	REFUSES(IDENTITY_DNS, "*.example.com", "");
	REFUSES(IDENTITY_DNS, "*.example.com", "com");
}
END_TEST

/* --- uri ------------------------------------------------------------------- */

START_TEST(uri_exact_matches_only_the_same_uri)
{
	ADMITS(IDENTITY_URI, "spiffe://prod/ns/web/sa/api",
	    "spiffe://prod/ns/web/sa/api");
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/sa/api",
	    "spiffe://prod/ns/web/sa/api2");
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/sa/api",
	    "spiffe://prod/ns/web/sa/ap");
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/sa/api",
	    "spiffe://prod/ns/web/sa/api/x");
	/* SPIFFE IDs are compared byte for byte. */
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/sa/api",
	    "spiffe://prod/ns/web/sa/API");
}
END_TEST

START_TEST(uri_trailing_star_matches_that_prefix)
{
	ADMITS(IDENTITY_URI, "spiffe://prod/ns/web/*",
	    "spiffe://prod/ns/web/sa/api");
	ADMITS(IDENTITY_URI, "spiffe://prod/ns/web/*",
	    "spiffe://prod/ns/web/sa/other");
	ADMITS(IDENTITY_URI, "spiffe://prod/ns/web/*", "spiffe://prod/ns/web/");
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/*", "spiffe://prod/ns/web");
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/*",
	    "spiffe://prod/ns/webx/sa/api");
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/*",
	    "spiffe://prod/ns/db/sa/x");
	REFUSES(IDENTITY_URI, "spiffe://prod/ns/web/*",
	    "spiffe://staging/ns/web/sa/api");
}
END_TEST

/* --- email ----------------------------------------------------------------- */

START_TEST(email_exact_is_case_insensitive)
{
	ADMITS(IDENTITY_EMAIL, "ops@example.com", "ops@example.com");
	ADMITS(IDENTITY_EMAIL, "ops@example.com", "OPS@Example.COM");
	REFUSES(IDENTITY_EMAIL, "ops@example.com", "ops2@example.com");
	REFUSES(IDENTITY_EMAIL, "ops@example.com", "ops@example.com.evil");
	REFUSES(IDENTITY_EMAIL, "ops@example.com", "xops@example.com");
}
END_TEST

START_TEST(email_at_domain_admits_the_whole_domain_only)
{
	ADMITS(IDENTITY_EMAIL, "@example.com", "ops@example.com");
	ADMITS(IDENTITY_EMAIL, "@example.com", "test-client@EXAMPLE.com");
	REFUSES(IDENTITY_EMAIL, "@example.com", "user@sub.example.com");
	REFUSES(IDENTITY_EMAIL, "@example.com", "ops@example.com.evil");
	REFUSES(IDENTITY_EMAIL, "@example.com", "ops@notexample.com");
	REFUSES(IDENTITY_EMAIL, "@example.com", "example.com");
}
END_TEST

START_TEST(email_at_domain_refuses_an_empty_local_part)
{
	REFUSES(IDENTITY_EMAIL, "@example.com", "@example.com");
	REFUSES(IDENTITY_EMAIL, "@example.com", "");
}
END_TEST

/* --- spki ------------------------------------------------------------------ */

START_TEST(spki_pin_matches_the_hash_and_says_which_pin)
{
	uint8_t pins[2][IDENTITY_SPKI_LEN];
	struct identity_allow a;
	struct identity id;
	char rule[160];

	memset(pins[0], 0x11, IDENTITY_SPKI_LEN);
	memset(pins[1], 0x22, IDENTITY_SPKI_LEN);
	memset(&a, 0, sizeof(a));
	a.spki = (const uint8_t (*)[IDENTITY_SPKI_LEN])pins;
	a.nspki = 2;
	memset(&id, 0, sizeof(id));
	memset(id.spki_sha256, 0x22, IDENTITY_SPKI_LEN);
	id.has_spki = true;
	ck_assert(identity_match(&a, &id, rule, sizeof(rule)));
	ck_assert_str_eq(rule, "spki_sha256 #2");
	id.spki_sha256[IDENTITY_SPKI_LEN - 1] ^= 1;
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
}
END_TEST

START_TEST(spki_pin_never_matches_an_identity_without_a_key_hash)
{
	uint8_t pin[1][IDENTITY_SPKI_LEN];
	struct identity_allow a;
	struct identity id;
	char rule[160];

	memset(pin, 0, sizeof(pin));
	memset(&a, 0, sizeof(a));
	a.spki = (const uint8_t (*)[IDENTITY_SPKI_LEN])pin;
	a.nspki = 1;
	memset(&id, 0, sizeof(id)); /* all-zero hash, but has_spki false */
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
}
END_TEST

/* --- several rules --------------------------------------------------------- */

START_TEST(any_matching_rule_admits_and_is_named)
{
	char *cn[] = { S("someone-else") }, *dns[] = { S("*.svc.example") };
	char *uri[] = { S("spiffe://prod/ns/db/*"), S("spiffe://prod/ns/web/*") };
	struct identity_allow a = {
		.cn = cn, .ncn = 1, .dns = dns, .ndns = 1, .uri = uri,
		.nuri = 2,
	};
	const char *names[] = { "spiffe://prod/ns/web/sa/api", NULL };
	struct identity id;
	char rule[160];

	id_of(&id, IDENTITY_URI, names);
	ck_assert(identity_add(&id, IDENTITY_CN, "api", 3) == 0);
	ck_assert(identity_match(&a, &id, rule, sizeof(rule)));
	ck_assert_str_eq(rule, "uri spiffe://prod/ns/web/*");
	identity_clear(&id);

	id_of(&id, IDENTITY_CN, (const char *[]){ "someone-else", NULL });
	ck_assert(identity_match(&a, &id, rule, sizeof(rule)));
	ck_assert_str_eq(rule, "cn someone-else");
	identity_clear(&id);

	id_of(&id, IDENTITY_DNS, (const char *[]){ "x.y.svc.example", NULL });
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
	identity_clear(&id);
}
END_TEST

START_TEST(empty_allow_list_is_reported_empty_and_matches_nothing)
{
	struct identity_allow a;
	struct identity id;
	char rule[160];

	memset(&a, 0, sizeof(a));
	ck_assert(identity_allow_empty(&a));
	id_of(&id, IDENTITY_CN, (const char *[]){ "test-client", NULL });
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
	identity_clear(&id);
	a.nspki = 1;
	ck_assert(!identity_allow_empty(&a));
}
END_TEST

START_TEST(rule_text_is_cut_to_its_buffer)
{
	char *cn[] = { S("a-rather-long-common-name") };
	struct identity_allow a = { .cn = cn, .ncn = 1 };
	struct identity id;
	char rule[8];

	memset(rule, 'X', sizeof(rule));
	id_of(&id, IDENTITY_CN, (const char *[]){ cn[0], NULL });
	ck_assert(identity_match(&a, &id, rule, 6));
	ck_assert_str_eq(rule, "cn a-");
	ck_assert_int_eq(rule[6], 'X');
	ck_assert(identity_match(&a, &id, rule, 0)); /* no buffer at all */
	identity_clear(&id);
}
END_TEST

/* --- identity_add ---------------------------------------------------------- */

START_TEST(add_refuses_embedded_nul_and_flags_truncation)
{
	static const char evil[] = "a.svc.example\0.evil";
	struct identity id;

	memset(&id, 0, sizeof(id));
	ck_assert_int_eq(identity_add(&id, IDENTITY_DNS, evil,
	    sizeof(evil) - 1), -1);
	ck_assert_uint_eq(id.ndns, 0);
	ck_assert(id.truncated);
	ck_assert_int_eq(identity_add(&id, IDENTITY_CN, "x\0", 2), -1);
	ck_assert_uint_eq(id.ncn, 0);
	identity_clear(&id);
}
END_TEST

START_TEST(nul_name_never_matches_its_visible_prefix)
{
	static const char evil[] = "a.svc.example\0.evil";
	char *dns[] = { S("a.svc.example") };
	struct identity_allow a = { .dns = dns, .ndns = 1 };
	struct identity id;
	char rule[160];

	memset(&id, 0, sizeof(id));
	(void)identity_add(&id, IDENTITY_DNS, evil, sizeof(evil) - 1);
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
	identity_clear(&id);
}
END_TEST

START_TEST(add_keeps_names_that_are_not_nul_terminated)
{
	static const char buf[] = "test-clientXXXX";
	char *cn[] = { S("test-client") };
	struct identity_allow a = { .cn = cn, .ncn = 1 };
	struct identity id;
	char rule[160];

	memset(&id, 0, sizeof(id));
	ck_assert_int_eq(identity_add(&id, IDENTITY_CN, buf, 11), 0);
	ck_assert_str_eq(id.cn[0], "test-client");
	ck_assert(!id.truncated);
	ck_assert(identity_match(&a, &id, rule, sizeof(rule)));
	/* The empty name is a name (it matches no sensible rule). */
	ck_assert_int_eq(identity_add(&id, IDENTITY_OU, buf, 0), 0);
	ck_assert_str_eq(id.ou[0], "");
	identity_clear(&id);
}
END_TEST

START_TEST(add_beyond_max_names_is_refused_flagged_and_never_matches)
{
	struct identity id;
	char name[32], rule[160], last[32];
	char *pat[] = { last };
	struct identity_allow a = { .dns = pat, .ndns = 1 };
	int k;

	memset(&id, 0, sizeof(id));
	for (k = 0; k < IDENTITY_MAX_NAMES; k++) {
		snprintf(name, sizeof(name), "n%d.example", k);
		ck_assert_int_eq(identity_add(&id, IDENTITY_DNS, name,
		    strlen(name)), 0);
	}
	ck_assert(!id.truncated);
	snprintf(last, sizeof(last), "n%d.example", IDENTITY_MAX_NAMES);
	ck_assert_int_eq(identity_add(&id, IDENTITY_DNS, last, strlen(last)),
	    -1);
	ck_assert(id.truncated);
	ck_assert_uint_eq(id.ndns, IDENTITY_MAX_NAMES);
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
	/* The kept ones still match; other kinds still have room. */
	snprintf(last, sizeof(last), "n%d.example", IDENTITY_MAX_NAMES - 1);
	ck_assert(identity_match(&a, &id, rule, sizeof(rule)));
	ck_assert_int_eq(identity_add(&id, IDENTITY_URI, "urn:x", 5), 0);
	identity_clear(&id);
	ck_assert_uint_eq(id.ndns, 0);
	ck_assert(!id.truncated);
}
END_TEST

/* --- identity_describe ----------------------------------------------------- */

static void
full_identity(struct identity *id)
{
	memset(id, 0, sizeof(*id));
	ck_assert(identity_add(id, IDENTITY_CN, "test-client", 11) == 0);
	ck_assert(identity_add(id, IDENTITY_OU, "ops", 3) == 0);
	ck_assert(identity_add(id, IDENTITY_DNS, "client.test.example", 19) ==
	    0);
	ck_assert(identity_add(id, IDENTITY_URI,
	    "spiffe://test.example/client", 28) == 0);
	ck_assert(identity_add(id, IDENTITY_EMAIL, "test-client@example.com",
	    23) == 0);
	ck_assert(identity_add(id, IDENTITY_DNS, "b.example", 9) == 0);
}

START_TEST(describe_lists_every_name_by_kind)
{
	struct identity id;
	char buf[400];

	full_identity(&id);
	identity_describe(&id, buf, sizeof(buf));
	ck_assert_str_eq(buf, "CN=test-client, OU=ops, DNS=client.test.example, "
	    "DNS=b.example, URI=spiffe://test.example/client, "
	    "email=test-client@example.com");
	identity_clear(&id);
	memset(&id, 0, sizeof(id));
	identity_describe(&id, buf, sizeof(buf));
	ck_assert_str_eq(buf, "(no names)");
}
END_TEST

START_TEST(describe_never_writes_past_its_buffer)
{
	struct identity id;
	char full[400], buf[420];
	size_t len, i;

	full_identity(&id);
	identity_describe(&id, full, sizeof(full));
	for (len = 0; len <= strlen(full) + 2; len++) {
		memset(buf, 0x5a, sizeof(buf));
		identity_describe(&id, buf, len);
		for (i = len; i < sizeof(buf); i++)
			ck_assert_msg((unsigned char)buf[i] == 0x5a, "len %zu: "
			    "byte %zu written", len, i);
		if (len == 0)
			continue;
		ck_assert_msg(memchr(buf, '\0', len) != NULL, "len %zu: not "
		    "terminated", len);
		ck_assert_msg(strncmp(buf, full, strlen(buf)) == 0, "len %zu: "
		    "\"%s\" is not a prefix of the full text", len, buf);
	}
	identity_clear(&id);
}
END_TEST

/* --- identity_utf8_ok ------------------------------------------------------ */

#define UTF8_OK(lit) ck_assert_msg(identity_utf8_ok((lit), sizeof(lit) - 1), \
	"%s should be well-formed UTF-8", #lit)
#define UTF8_BAD(lit) ck_assert_msg(!identity_utf8_ok((lit), sizeof(lit) - 1), \
	"%s must not pass as UTF-8", #lit)

START_TEST(utf8_accepts_ascii_and_every_sequence_length)
{
	UTF8_OK("");
	UTF8_OK("test-client");
	UTF8_OK("J\xc3\xbcrgen");            /* U+00FC */
	UTF8_OK("\xc2\x80");                 /* U+0080, smallest 2-byte */
	UTF8_OK("\xe0\xa0\x80");             /* U+0800 */
	UTF8_OK("\xe2\x82\xac");             /* U+20AC euro */
	UTF8_OK("\xed\x9f\xbf");             /* U+D7FF, below surrogates */
	UTF8_OK("\xee\x80\x80");             /* U+E000, above surrogates */
	UTF8_OK("\xef\xbf\xbf");             /* U+FFFF */
	UTF8_OK("\xf0\x90\x80\x80");         /* U+10000 */
	UTF8_OK("\xf4\x8f\xbf\xbf");         /* U+10FFFF, the last */
}
END_TEST

START_TEST(utf8_refuses_overlongs_surrogates_and_beyond_unicode)
{
	UTF8_BAD("\xc0\x80");                /* overlong NUL */
	UTF8_BAD("\xc1\xbf");                /* overlong 0x7F */
	UTF8_BAD("\xe0\x9f\xbf");            /* overlong U+07FF */
	UTF8_BAD("\xf0\x8f\xbf\xbf");        /* overlong U+FFFF */
	UTF8_BAD("\xed\xa0\x80");            /* U+D800 */
	UTF8_BAD("\xed\xbf\xbf");            /* U+DFFF */
	UTF8_BAD("\xf4\x90\x80\x80");        /* U+110000 */
	UTF8_BAD("\xf5\x80\x80\x80");
	UTF8_BAD("\xff");
}
END_TEST

START_TEST(utf8_refuses_truncated_and_stray_bytes_and_nul)
{
	UTF8_BAD("\xc3");                    /* lead byte at the end */
	UTF8_BAD("\xe2\x82");
	UTF8_BAD("\xf0\x90\x80");
	UTF8_BAD("a\x80" "b");               /* stray continuation */
	UTF8_BAD("\xc3\x28");                /* lead then ASCII */
	UTF8_BAD("a\0b");                    /* NUL inside */
	/* The length is what counts, not a terminator. */
	ck_assert(!identity_utf8_ok("J\xc3\xbc", 2));
	ck_assert(identity_utf8_ok("J\xc3\xbc", 1));
}
END_TEST

/* --- tlssess_crt_identity on certificates ----------------------------------- */

static void
parse_pki(mbedtls_x509_crt *crt, const char *name)
{
	char path[4096];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", pki, name);
	mbedtls_x509_crt_init(crt);
	ret = mbedtls_x509_crt_parse_file(crt, path);
	ck_assert_msg(ret == 0, "%s: mbedtls_x509_crt_parse_file: -0x%04x",
	    path, (unsigned)-ret);
}

/* Base64 SHA-256 of ${certpath}'s SubjectPublicKeyInfo, by the openssl CLI
 * pipeline of src/config.c's spki_sha256 message. */
static void
openssl_spki(const char *certpath, char *out, size_t len)
{
	char cmd[8192];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -pubkey -noout | "
	    "openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | "
	    "base64", certpath);
	p = popen(cmd, "r");
	ck_assert_msg(p != NULL, "popen");
	ck_assert_msg(fgets(out, (int)len, p) != NULL, "no output from: %s",
	    cmd);
	ck_assert_int_eq(pclose(p), 0);
	out[strcspn(out, "\n")] = '\0';
}

static void
b64(const uint8_t *h, char *out, size_t len)
{
	size_t olen;

	ck_assert_int_eq(mbedtls_base64_encode((unsigned char *)out, len, &olen,
	    h, IDENTITY_SPKI_LEN), 0);
}

static void
assert_list(char *const *v, size_t n, const char *const *want,
    const char *what)
{
	size_t i, k;

	for (k = 0; want[k] != NULL; k++)
		;
	ck_assert_msg(n == k, "%s: %zu name(s), want %zu", what, n, k);
	for (i = 0; i < n; i++)
		ck_assert_msg(strcmp(v[i], want[i]) == 0, "%s[%zu] = \"%s\", "
		    "want \"%s\"", what, i, v[i], want[i]);
}

#define NONE ((const char *[]){ NULL })
#define NAMES(...) ((const char *[]){ __VA_ARGS__, NULL })

START_TEST(crt_identity_of_test_client_has_every_name_and_spki)
{
	mbedtls_x509_crt crt;
	struct identity id;
	char want[128], got[128], path[4096];

	parse_pki(&crt, "client.crt");
	tlssess_crt_identity(&crt, &id);
	assert_list(id.cn, id.ncn, NAMES("test-client"), "cn");
	assert_list(id.ou, id.nou, NAMES("ops"), "ou");
	assert_list(id.dns, id.ndns, NAMES("client.test.example"), "dns");
	assert_list(id.uri, id.nuri, NAMES("spiffe://test.example/client"),
	    "uri");
	assert_list(id.email, id.nemail, NAMES("test-client@example.com"),
	    "email");
	ck_assert(!id.truncated);
	ck_assert(id.has_spki);
	snprintf(path, sizeof(path), "%s/client.crt", pki);
	openssl_spki(path, want, sizeof(want));
	b64(id.spki_sha256, got, sizeof(got));
	ck_assert_str_eq(got, want);
	identity_clear(&id);
	mbedtls_x509_crt_free(&crt);
}
END_TEST

/* Loop over the allow-list test clients of gen-test-pki.sh. */
static const struct {
	const char *file;
	const char *const *cn, *const *ou, *const *dns, *const *uri,
	    *const *email;
} pki_clients[] = {
	{ "client-dns-a.crt", NAMES("dns-a"), NONE, NAMES("a.svc.example"),
	  NONE, NONE },
	{ "client-dns-xy.crt", NAMES("dns-xy"), NONE,
	  NAMES("x.y.svc.example"), NONE, NAMES("ops@sub.example.com") },
	{ "client-uri-web.crt", NAMES("uri-web"), NONE, NONE,
	  NAMES("spiffe://prod/ns/web/sa/api"), NONE },
	{ "client-uri-db.crt", NAMES("uri-db"), NONE, NONE,
	  NAMES("spiffe://prod/ns/db/sa/x"), NONE },
	{ "client-email.crt", NAMES("email-ops"), NAMES("dev"), NONE, NONE,
	  NAMES("ops@example.com") },
	{ "client-int.crt", NAMES("test-client-int"), NAMES("ops"), NONE,
	  NAMES("spiffe://test.example/client-int"), NONE },
	{ "client-rsa.crt", NAMES("test-client-rsa"), NONE, NONE,
	  NAMES("spiffe://test.example/client-rsa"), NONE },
};

START_TEST(crt_identity_of_pki_clients_matches_their_sans_and_openssl_spki)
{
	mbedtls_x509_crt crt;
	struct identity id;
	char want[128], got[128], path[4096];

	parse_pki(&crt, pki_clients[_i].file);
	tlssess_crt_identity(&crt, &id);
	assert_list(id.cn, id.ncn, pki_clients[_i].cn, pki_clients[_i].file);
	assert_list(id.ou, id.nou, pki_clients[_i].ou, pki_clients[_i].file);
	assert_list(id.dns, id.ndns, pki_clients[_i].dns,
	    pki_clients[_i].file);
	assert_list(id.uri, id.nuri, pki_clients[_i].uri,
	    pki_clients[_i].file);
	assert_list(id.email, id.nemail, pki_clients[_i].email,
	    pki_clients[_i].file);
	ck_assert(!id.truncated);
	snprintf(path, sizeof(path), "%s/%s", pki, pki_clients[_i].file);
	openssl_spki(path, want, sizeof(want));
	b64(id.spki_sha256, got, sizeof(got));
	ck_assert_msg(strcmp(got, want) == 0, "%s: spki %s, openssl says %s",
	    pki_clients[_i].file, got, want);
	identity_clear(&id);
	mbedtls_x509_crt_free(&crt);
}
END_TEST

START_TEST(crt_identity_of_no_certificate_is_empty)
{
	struct identity id;

	memset(&id, 0x5a, sizeof(id));
	tlssess_crt_identity(NULL, &id);
	ck_assert_uint_eq(id.ncn + id.nou + id.ndns + id.nuri + id.nemail, 0);
	ck_assert(!id.has_spki);
	ck_assert(!id.truncated);
	identity_clear(&id);
}
END_TEST

/* Run ${cmd} (sh -c) and require exit 0. */
static void
sh(const char *cmd)
{
	int st = system(cmd);

	ck_assert_msg(st == 0, "exit status %d: %s", st, cmd);
}

/* A self-signed certificate made here: ${subj}, ${san} (openssl -addext). */
static void
make_cert(const char *name, const char *subj, const char *san,
    char *path, size_t len)
{
	char cmd[16384];

	snprintf(path, len, "%s/unit-%ld-%s.crt", tmpdir, (long)getpid(),
	    name);
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -keyout '%s.key' -out '%s' "
	    "-days 1 -subj '%s' %s%s%s 2>/dev/null", path, path, subj,
	    san ? "-addext 'subjectAltName=" : "", san ? san : "",
	    san ? "'" : "");
	sh(cmd);
}

START_TEST(crt_identity_keeps_every_cn_and_ou_rdn_in_order)
{
	mbedtls_x509_crt crt;
	struct identity id;
	char path[4096];

	make_cert("multi", "/OU=ops/OU=dev/CN=first/CN=second", NULL, path,
	    sizeof(path));
	mbedtls_x509_crt_init(&crt);
	ck_assert_int_eq(mbedtls_x509_crt_parse_file(&crt, path), 0);
	tlssess_crt_identity(&crt, &id);
	assert_list(id.cn, id.ncn, NAMES("first", "second"), "cn");
	assert_list(id.ou, id.nou, NAMES("ops", "dev"), "ou");
	ck_assert_uint_eq(id.ndns + id.nuri + id.nemail, 0);
	identity_clear(&id);
	mbedtls_x509_crt_free(&crt);
}
END_TEST

START_TEST(crt_identity_ignores_san_types_it_does_not_match_on)
{
	mbedtls_x509_crt crt;
	struct identity id;
	char path[4096];

	make_cert("ipsan", "/CN=ip", "IP:127.0.0.1,DNS:d.example,"
	    "otherName:1.2.3.4;UTF8:x,RID:1.2.3.4,email:e@example.com", path,
	    sizeof(path));
	mbedtls_x509_crt_init(&crt);
	ck_assert_int_eq(mbedtls_x509_crt_parse_file(&crt, path), 0);
	tlssess_crt_identity(&crt, &id);
	assert_list(id.dns, id.ndns, NAMES("d.example"), "dns");
	assert_list(id.email, id.nemail, NAMES("e@example.com"), "email");
	ck_assert_uint_eq(id.nuri, 0);
	ck_assert(!id.truncated);
	identity_clear(&id);
	mbedtls_x509_crt_free(&crt);
}
END_TEST

START_TEST(crt_identity_with_40_dns_names_keeps_32_and_flags_the_rest)
{
	mbedtls_x509_crt crt;
	struct identity id;
	char path[4096], san[4096], rule[160], *pat[] = { S("n35.example") };
	struct identity_allow a = { .dns = pat, .ndns = 1 };
	size_t off = 0;
	int k;

	for (k = 0; k < 40; k++)
		off += (size_t)snprintf(san + off, sizeof(san) - off,
		    "%sDNS:n%d.example", k ? "," : "", k);
	make_cert("many", "/CN=many", san, path, sizeof(path));
	mbedtls_x509_crt_init(&crt);
	ck_assert_int_eq(mbedtls_x509_crt_parse_file(&crt, path), 0);
	tlssess_crt_identity(&crt, &id);
	ck_assert_uint_eq(id.ndns, IDENTITY_MAX_NAMES);
	ck_assert_str_eq(id.dns[0], "n0.example");
	ck_assert_str_eq(id.dns[IDENTITY_MAX_NAMES - 1], "n31.example");
	ck_assert(id.truncated);
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
	identity_clear(&id);
	mbedtls_x509_crt_free(&crt);
}
END_TEST

/*
 * A DNS SAN "evil.svc.example" whose first '.' is patched to a NUL byte in
 * the DER (the signature no longer verifies, which parsing does not check):
 * the name is refused, flagged, and never admitted as "evil".
 */
START_TEST(crt_identity_refuses_a_san_with_an_embedded_nul)
{
	static const char marker[] = "evil.svc.example";
	mbedtls_x509_crt crt;
	struct identity id;
	char path[4096], der[4200], cmd[9000], rule[160];
	char *pat[] = { S("evil") }, *wild[] = { S("*.svc.example") };
	struct identity_allow a = { .dns = pat, .ndns = 1 };
	unsigned char buf[4096], *p;
	size_t n;
	FILE *f;

	make_cert("nul", "/CN=nul", "DNS:evil.svc.example,DNS:ok.svc.example",
	    path, sizeof(path));
	snprintf(der, sizeof(der), "%s.der", path);
	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -outform DER -out "
	    "'%s'", path, der);
	sh(cmd);
	f = fopen(der, "rb");
	ck_assert(f != NULL);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	p = memmem(buf, n, marker, sizeof(marker) - 1);
	ck_assert_msg(p != NULL, "marker not in the DER");
	p[4] = '\0';
	mbedtls_x509_crt_init(&crt);
	ck_assert_int_eq(mbedtls_x509_crt_parse_der(&crt, buf, n), 0);
	tlssess_crt_identity(&crt, &id);
	assert_list(id.dns, id.ndns, NAMES("ok.svc.example"), "dns");
	ck_assert(id.truncated);
	ck_assert(!identity_match(&a, &id, rule, sizeof(rule)));
	a.dns = wild;
	ck_assert(identity_match(&a, &id, rule, sizeof(rule)));
	identity_clear(&id);
	mbedtls_x509_crt_free(&crt);
}
END_TEST

/* ------------------------------------------------------------------------- */

static Suite *
identity_suite(void)
{
	Suite *s = suite_create("identity");
	TCase *tc;

	tc = tcase_create("match");
	tcase_add_test(tc, cn_matches_exactly_and_case_sensitively);
	tcase_add_test(tc, ou_matches_exactly_and_case_sensitively);
	tcase_add_test(tc, cn_rule_does_not_match_an_ou_of_the_same_value);
	tcase_add_test(tc, dns_exact_is_case_insensitive);
	tcase_add_test(tc, dns_wildcard_matches_exactly_one_more_label);
	tcase_add_test(tc, dns_wildcard_refuses_the_bare_domain_and_empty_labels);
	tcase_add_test(tc, uri_exact_matches_only_the_same_uri);
	tcase_add_test(tc, uri_trailing_star_matches_that_prefix);
	tcase_add_test(tc, email_exact_is_case_insensitive);
	tcase_add_test(tc, email_at_domain_admits_the_whole_domain_only);
	tcase_add_test(tc, email_at_domain_refuses_an_empty_local_part);
	tcase_add_test(tc, spki_pin_matches_the_hash_and_says_which_pin);
	tcase_add_test(tc, spki_pin_never_matches_an_identity_without_a_key_hash);
	tcase_add_test(tc, any_matching_rule_admits_and_is_named);
	tcase_add_test(tc, empty_allow_list_is_reported_empty_and_matches_nothing);
	tcase_add_test(tc, rule_text_is_cut_to_its_buffer);
	suite_add_tcase(s, tc);

	tc = tcase_create("add");
	tcase_add_test(tc, add_refuses_embedded_nul_and_flags_truncation);
	tcase_add_test(tc, nul_name_never_matches_its_visible_prefix);
	tcase_add_test(tc, add_keeps_names_that_are_not_nul_terminated);
	tcase_add_test(tc, add_beyond_max_names_is_refused_flagged_and_never_matches);
	suite_add_tcase(s, tc);

	tc = tcase_create("utf8");
	tcase_add_test(tc, utf8_accepts_ascii_and_every_sequence_length);
	tcase_add_test(tc, utf8_refuses_overlongs_surrogates_and_beyond_unicode);
	tcase_add_test(tc, utf8_refuses_truncated_and_stray_bytes_and_nul);
	suite_add_tcase(s, tc);

	tc = tcase_create("describe");
	tcase_add_test(tc, describe_lists_every_name_by_kind);
	tcase_add_test(tc, describe_never_writes_past_its_buffer);
	suite_add_tcase(s, tc);

	tc = tcase_create("crt_identity");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, crt_identity_of_test_client_has_every_name_and_spki);
	tcase_add_loop_test(tc,
	    crt_identity_of_pki_clients_matches_their_sans_and_openssl_spki, 0,
	    (int)(sizeof(pki_clients) / sizeof(pki_clients[0])));
	tcase_add_test(tc, crt_identity_of_no_certificate_is_empty);
	tcase_add_test(tc, crt_identity_keeps_every_cn_and_ou_rdn_in_order);
	tcase_add_test(tc, crt_identity_ignores_san_types_it_does_not_match_on);
	tcase_add_test(tc, crt_identity_with_40_dns_names_keeps_32_and_flags_the_rest);
	tcase_add_test(tc, crt_identity_refuses_a_san_with_an_embedded_nul);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	pki = getenv("TEST_PKI");
	tmpdir = getenv("TEST_TMPDIR");
	if (pki == NULL || pki[0] == '\0' || tmpdir == NULL ||
	    tmpdir[0] == '\0') {
		fprintf(stderr, "check_identity_unit: skipped: TEST_PKI and "
		    "TEST_TMPDIR must be set (run through `make check-run`)\n");
		return 77;
	}
	sr = srunner_create(identity_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
