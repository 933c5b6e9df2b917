/*
 * fuzz_allow: libFuzzer driver for the allow-list matcher (src/identity.c):
 * identity_add, identity_match, identity_describe with arbitrary names and
 * patterns.
 *
 * Input: records [tag][len][len bytes] until the data ends (a short last
 * record takes what is left).  tag % 12:
 *   0..4   a certificate name of kind tag (cn, ou, dns, uri, email), bytes as
 *          they come (NULs included) -> identity_add
 *   5..9   an allow pattern of kind tag-5, up to its first NUL (patterns come
 *          from the configuration as C strings); at most 16 per kind
 *   10     an spki_sha256 pin (32 bytes, zero-padded)
 *   11     the certificate's SPKI hash (32 bytes, zero-padded)
 * The first byte also picks the size of the rule buffer.
 *
 * Beyond memory safety (ASan, UBSan), the driver checks identity_match
 * against a reference written from the documented rules, for the patterns
 * that the configuration loader accepts; that rule and description buffers
 * are never overrun and always terminated; and identity_utf8_ok() on every
 * record's bytes against the well-formed byte sequences of Unicode's table
 * 3-7.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"

#define MAX_PATS 16
#define NKINDS 5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const kind_word[NKINDS] = {
	"cn", "ou", "dns", "uri", "email",
};

static void
fail(const char *what, const char *pat, const char *name)
{
	fprintf(stderr, "fuzz_allow: %s (pattern \"%s\", name \"%s\")\n", what,
	    pat ? pat : "-", name ? name : "-");
	abort();
}

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive (ASCII) equality of ${a} and ${n} bytes of ${b}. */
static bool
ieq(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i;

	if (alen != blen)
		return false;
	for (i = 0; i < alen; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

/* Well-formed UTF-8 per Unicode table 3-7, and no NUL. */
static bool
ref_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t b = s[i];
		uint8_t lo = 0x80, hi = 0xbf;
		size_t need, k;

		if (b == 0)
			return false;
		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf)
			need = 1;
		else if (b == 0xe0) {
			need = 2;
			lo = 0xa0;
		} else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef)
			need = 2;
		else if (b == 0xed) {
			need = 2;
			hi = 0x9f;
		} else if (b == 0xf0) {
			need = 3;
			lo = 0x90;
		} else if (b >= 0xf1 && b <= 0xf3)
			need = 3;
		else if (b == 0xf4) {
			need = 3;
			hi = 0x8f;
		} else
			return false;
		if (len - i - 1 < need)
			return false;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (k = 2; k <= need; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return false;
		i += need + 1;
	}
	return true;
}

/* The configuration loader's checks (src/config.c), restated. */
static bool
pattern_valid(int kind, const char *p)
{
	const char *star = strchr(p, '*');

	if (p[0] == '\0')
		return false;
	switch (kind) {
	case IDENTITY_DNS:
		return star == NULL || (star == p && p[1] == '.' &&
		    p[2] != '\0' && strchr(p + 1, '*') == NULL);
	case IDENTITY_URI:
		if (star != NULL && star[1] != '\0')
			return false;
		return strstr(p, "://") != NULL || strncmp(p, "urn:", 4) == 0;
	case IDENTITY_EMAIL:
		return strchr(p, '@') != NULL;
	default:
		return true;
	}
}

/* The documented matching rules (src/identity.h), written independently. */
static bool
ref_match(int kind, const char *p, const char *n)
{
	size_t pl = strlen(p), nl = strlen(n), i;

	switch (kind) {
	case IDENTITY_CN:
	case IDENTITY_OU:
		return pl == nl && memcmp(p, n, pl) == 0;
	case IDENTITY_DNS:
		if (p[0] == '*') {
			/* "*.rest": one non-empty label, then ".rest". */
			size_t sl = pl - 1, ll;

			if (nl <= sl || !ieq(p + 1, sl, n + nl - sl, sl))
				return false;
			ll = nl - sl;
			for (i = 0; i < ll; i++)
				if (n[i] == '.')
					return false;
			return ll > 0;
		}
		return ieq(p, pl, n, nl);
	case IDENTITY_URI:
		if (pl > 0 && p[pl - 1] == '*')
			return nl >= pl - 1 && memcmp(p, n, pl - 1) == 0;
		return pl == nl && memcmp(p, n, pl) == 0;
	case IDENTITY_EMAIL:
		if (p[0] == '@') {
			const char *at = strrchr(n, '@');

			return at != NULL && at > n &&
			    ieq(p, pl, at, nl - (size_t)(at - n));
		}
		return ieq(p, pl, n, nl);
	}
	return false;
}

static char *const *
id_names(const struct identity *id, int kind, size_t *n)
{
	switch (kind) {
	case IDENTITY_CN: *n = id->ncn; return id->cn;
	case IDENTITY_OU: *n = id->nou; return id->ou;
	case IDENTITY_DNS: *n = id->ndns; return id->dns;
	case IDENTITY_URI: *n = id->nuri; return id->uri;
	default: *n = id->nemail; return id->email;
	}
}

/* identity_match with a guarded rule buffer of ${len} bytes. */
static bool
match_guarded(const struct identity_allow *a, const struct identity *id,
    size_t len)
{
	char rule[200];
	bool m;
	size_t i;

	memset(rule, 0x7e, sizeof(rule));
	m = identity_match(a, id, rule, len);
	for (i = len; i < sizeof(rule); i++)
		if (rule[i] != 0x7e)
			fail("rule buffer overrun", NULL, NULL);
	if (m && len > 0) {
		if (memchr(rule, '\0', len) == NULL)
			fail("rule not terminated", NULL, NULL);
		if (len > 6) {
			bool known = strncmp(rule, "spki_sha256 #", len - 1 <
			    13 ? len - 1 : 13) == 0;

			for (i = 0; i < NKINDS && !known; i++)
				known = strncmp(rule, kind_word[i],
				    strlen(kind_word[i])) == 0;
			if (!known)
				fail("rule names no kind", rule, NULL);
		}
	}
	return m;
}

static void
describe_guarded(const struct identity *id, size_t len)
{
	char buf[300];
	size_t i;

	memset(buf, 0x7e, sizeof(buf));
	identity_describe(id, buf, len);
	for (i = len; i < sizeof(buf); i++)
		if (buf[i] != 0x7e)
			fail("describe overran its buffer", NULL, NULL);
	if (len > 0 && memchr(buf, '\0', len) == NULL)
		fail("describe result not terminated", NULL, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *pats[NKINDS][MAX_PATS], *valid[NKINDS][MAX_PATS];
	size_t npats[NKINDS] = { 0 }, nvalid[NKINDS] = { 0 };
	uint8_t pins[8][IDENTITY_SPKI_LEN];
	struct identity_allow all, ok;
	struct identity id;
	size_t off = 0, npins = 0, rulelen, k, i, j, n;
	bool want = false, got;

	memset(&id, 0, sizeof(id));
	memset(pats, 0, sizeof(pats));
	memset(valid, 0, sizeof(valid));
	rulelen = size > 0 ? data[0] % 200 : 160;
	while (off + 2 <= size) {
		unsigned tag = data[off] % 12;
		size_t len = data[off + 1];
		const char *p = (const char *)data + off + 2;

		off += 2;
		if (len > size - off)
			len = size - off;
		off += len;
		if (identity_utf8_ok(p, len) != ref_utf8((const uint8_t *)p, len))
			fail("identity_utf8_ok disagrees with table 3-7", NULL,
			    NULL);
		if (tag < 5) {
			size_t before;

			(void)id_names(&id, (int)tag, &before);
			if (identity_add(&id, (enum identity_kind)tag, p,
			    len) == 0) {
				if (memchr(p, '\0', len) != NULL)
					fail("a name with a NUL was kept",
					    NULL, NULL);
			} else {
				(void)id_names(&id, (int)tag, &n);
				if (n != before || !id.truncated)
					fail("a refused name changed the "
					    "identity", NULL, NULL);
			}
		} else if (tag < 10) {
			unsigned kind = tag - 5;
			size_t pl = strnlen(p, len);
			char *s;

			if (npats[kind] == MAX_PATS || (s = malloc(pl + 1)) ==
			    NULL)
				continue;
			memcpy(s, p, pl);
			s[pl] = '\0';
			pats[kind][npats[kind]++] = s;
			if (pattern_valid((int)kind, s))
				valid[kind][nvalid[kind]++] = s;
		} else if (tag == 10) {
			if (npins == 8)
				continue;
			memset(pins[npins], 0, IDENTITY_SPKI_LEN);
			memcpy(pins[npins], p, len < IDENTITY_SPKI_LEN ? len :
			    IDENTITY_SPKI_LEN);
			npins++;
		} else {
			memset(id.spki_sha256, 0, IDENTITY_SPKI_LEN);
			memcpy(id.spki_sha256, p, len < IDENTITY_SPKI_LEN ?
			    len : IDENTITY_SPKI_LEN);
			id.has_spki = true;
		}
	}
	if (id.ncn > IDENTITY_MAX_NAMES || id.nou > IDENTITY_MAX_NAMES ||
	    id.ndns > IDENTITY_MAX_NAMES || id.nuri > IDENTITY_MAX_NAMES ||
	    id.nemail > IDENTITY_MAX_NAMES)
		fail("more names than IDENTITY_MAX_NAMES", NULL, NULL);

	memset(&all, 0, sizeof(all));
	memset(&ok, 0, sizeof(ok));
	all.cn = pats[IDENTITY_CN];
	all.ncn = npats[IDENTITY_CN];
	all.ou = pats[IDENTITY_OU];
	all.nou = npats[IDENTITY_OU];
	all.dns = pats[IDENTITY_DNS];
	all.ndns = npats[IDENTITY_DNS];
	all.uri = pats[IDENTITY_URI];
	all.nuri = npats[IDENTITY_URI];
	all.email = pats[IDENTITY_EMAIL];
	all.nemail = npats[IDENTITY_EMAIL];
	ok.cn = valid[IDENTITY_CN];
	ok.ncn = nvalid[IDENTITY_CN];
	ok.ou = valid[IDENTITY_OU];
	ok.nou = nvalid[IDENTITY_OU];
	ok.dns = valid[IDENTITY_DNS];
	ok.ndns = nvalid[IDENTITY_DNS];
	ok.uri = valid[IDENTITY_URI];
	ok.nuri = nvalid[IDENTITY_URI];
	ok.email = valid[IDENTITY_EMAIL];
	ok.nemail = nvalid[IDENTITY_EMAIL];
	all.spki = ok.spki = (const uint8_t (*)[IDENTITY_SPKI_LEN])pins;
	all.nspki = ok.nspki = npins;

	/* Any pattern, even one the loader refuses: memory safety only. */
	(void)match_guarded(&all, &id, rulelen);
	(void)identity_allow_empty(&all);

	/* Loader-valid patterns: the verdict must follow the rules. */
	for (k = 0; k < NKINDS && !want; k++) {
		char *const *names = id_names(&id, (int)k, &n);

		for (i = 0; i < nvalid[k] && !want; i++)
			for (j = 0; j < n && !want; j++)
				want = ref_match((int)k, valid[k][i], names[j]);
	}
	for (i = 0; i < npins && !want && id.has_spki; i++)
		want = memcmp(pins[i], id.spki_sha256, IDENTITY_SPKI_LEN) == 0;
	got = match_guarded(&ok, &id, 160);
	if (got != want) {
		for (k = 0; k < NKINDS; k++) {
			char *const *names = id_names(&id, (int)k, &n);

			for (i = 0; i < nvalid[k]; i++)
				for (j = 0; j < n; j++)
					fprintf(stderr, "%s: \"%s\" vs \"%s\": "
					    "reference %d\n", kind_word[k],
					    valid[k][i], names[j],
					    ref_match((int)k, valid[k][i],
					    names[j]));
		}
		fail(got ? "identity_match admits what the rules refuse" :
		    "identity_match refuses what the rules admit", NULL, NULL);
	}

	describe_guarded(&id, 0);
	describe_guarded(&id, 1);
	describe_guarded(&id, rulelen);
	describe_guarded(&id, 300);

	identity_clear(&id);
	if (id.ncn + id.nou + id.ndns + id.nuri + id.nemail != 0 ||
	    id.truncated || id.has_spki)
		fail("identity_clear left something", NULL, NULL);
	for (k = 0; k < NKINDS; k++)
		for (i = 0; i < npats[k]; i++)
			free(pats[k][i]);
	return 0;
}
