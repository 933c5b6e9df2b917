/*
 * identity: who a verified client certificate says it is, and whether a
 * listener's allow-list admits it.
 */
#include "identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char **
slot(struct identity *id, enum identity_kind kind, size_t **n)
{
	switch (kind) {
	case IDENTITY_CN: *n = &id->ncn; return id->cn;
	case IDENTITY_OU: *n = &id->nou; return id->ou;
	case IDENTITY_DNS: *n = &id->ndns; return id->dns;
	case IDENTITY_URI: *n = &id->nuri; return id->uri;
	case IDENTITY_EMAIL: *n = &id->nemail; return id->email;
	}
	*n = NULL;
	return NULL;
}

int
identity_add(struct identity *id, enum identity_kind kind, const char *s,
    size_t len)
{
	size_t *n;
	char **v = slot(id, kind, &n);
	char *d;

	if (v == NULL || *n == IDENTITY_MAX_NAMES || memchr(s, '\0', len) != NULL)
		goto bad;
	if ((d = malloc(len + 1)) == NULL)
		goto bad;
	memcpy(d, s, len);
	d[len] = '\0';
	v[(*n)++] = d;
	return 0;
bad:
	id->truncated = true;
	return -1;
}

void
identity_clear(struct identity *id)
{
	enum identity_kind k;

	for (k = IDENTITY_CN; k <= IDENTITY_EMAIL; k++) {
		size_t *n, i;
		char **v = slot(id, k, &n);

		for (i = 0; i < *n; i++)
			free(v[i]);
	}
	memset(id, 0, sizeof(*id));
}

bool
identity_allow_empty(const struct identity_allow *a)
{
	return a->ncn + a->nou + a->ndns + a->nuri + a->nemail + a->nspki == 0;
}

/* "*.example.com" admits "a.example.com", not "a.b.example.com". */
static bool
dns_match(const char *pat, const char *name)
{
	const char *dot;

	if (pat[0] != '*')
		return strcasecmp(pat, name) == 0;
	dot = strchr(name, '.');
	if (dot == NULL || dot == name)
		return false;
	return strcasecmp(pat + 1, dot) == 0;
}

static bool
uri_match(const char *pat, const char *uri)
{
	size_t n = strlen(pat);

	if (n > 0 && pat[n - 1] == '*')
		return strncmp(pat, uri, n - 1) == 0;
	return strcmp(pat, uri) == 0;
}

/* "@example.com" admits any address at that domain. */
static bool
email_match(const char *pat, const char *addr)
{
	const char *at;

	if (pat[0] != '@')
		return strcasecmp(pat, addr) == 0;
	at = strrchr(addr, '@');
	return at != NULL && at != addr && strcasecmp(pat, at) == 0;
}

typedef bool (*matcher)(const char *, const char *);

static bool
exact(const char *pat, const char *v)
{
	return strcmp(pat, v) == 0;
}

static bool
match_kind(char *const *pats, size_t npats, char *const *vals, size_t nvals,
    matcher m, const char *kind, char *rule, size_t rulelen)
{
	size_t i, j;

	for (i = 0; i < npats; i++)
		for (j = 0; j < nvals; j++)
			if (m(pats[i], vals[j])) {
				snprintf(rule, rulelen, "%s %s", kind, pats[i]);
				return true;
			}
	return false;
}

bool
identity_match(const struct identity_allow *a, const struct identity *id,
    char *rule, size_t rulelen)
{
	size_t i;

	if (match_kind(a->cn, a->ncn, id->cn, id->ncn, exact, "cn", rule,
	    rulelen) ||
	    match_kind(a->ou, a->nou, id->ou, id->nou, exact, "ou", rule,
	    rulelen) ||
	    match_kind(a->dns, a->ndns, id->dns, id->ndns, dns_match, "dns",
	    rule, rulelen) ||
	    match_kind(a->uri, a->nuri, id->uri, id->nuri, uri_match, "uri",
	    rule, rulelen) ||
	    match_kind(a->email, a->nemail, id->email, id->nemail, email_match,
	    "email", rule, rulelen))
		return true;
	for (i = 0; id->has_spki && i < a->nspki; i++)
		if (memcmp(a->spki[i], id->spki_sha256, IDENTITY_SPKI_LEN) == 0) {
			snprintf(rule, rulelen, "spki_sha256 #%zu", i + 1);
			return true;
		}
	return false;
}

static size_t
put_names(char *buf, size_t off, size_t len, const char *label,
    char *const *v, size_t n)
{
	size_t i;

	for (i = 0; i < n && off < len; i++) {
		int w = snprintf(buf + off, len - off, "%s%s=%s",
		    off ? ", " : "", label, v[i]);

		if (w < 0)
			break;
		off += (size_t)w;
	}
	return off < len ? off : len - 1;
}

void
identity_describe(const struct identity *id, char *buf, size_t len)
{
	size_t off = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	off = put_names(buf, off, len, "CN", id->cn, id->ncn);
	off = put_names(buf, off, len, "OU", id->ou, id->nou);
	off = put_names(buf, off, len, "DNS", id->dns, id->ndns);
	off = put_names(buf, off, len, "URI", id->uri, id->nuri);
	off = put_names(buf, off, len, "email", id->email, id->nemail);
	if (off == 0)
		snprintf(buf, len, "(no names)");
}

bool
identity_utf8_ok(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i], need, cp, k;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else
			return false;
		if (len - i - 1 < need)
			return false;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 &&
		    cp <= 0xdfff))) || (need == 3 && (cp < 0x10000 ||
		    cp > 0x10ffff)))
			return false;
		i += need + 1;
	}
	return true;
}
