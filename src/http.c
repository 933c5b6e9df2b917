/*
 * http: a strict reader of one HTTP/1.x request head, and response heads.
 */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define METHOD_MAX 16
#define MORE (-1) /* internal: ran out of bytes, valid so far */

/* The head being read: bytes [0, lim) of it are looked at. */
struct cur {
	const unsigned char *b;
	size_t lim; /* min(len, HTTP_HEAD_MAX) */
	size_t len; /* what the caller has */
	size_t i;
};

/* RFC 9110 tchar. */
static bool
is_tchar(int c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The byte at the cursor, or -1 past what we may look at. */
static int
peek(const struct cur *c)
{
	return c->i < c->lim ? c->b[c->i] : -1;
}

/*
 * Out of bytes while valid: read more, unless the head already fills
 * HTTP_HEAD_MAX.
 */
static int
short_head(const struct cur *c)
{
	return c->len >= HTTP_HEAD_MAX ? 431 : 0;
}

/* ${s} at the cursor: 1 matched (cursor after it), MORE, or 0 mismatch. */
static int
expect(struct cur *c, const char *s)
{
	size_t n = strlen(s), k;

	for (k = 0; k < n; k++) {
		int ch = peek(c);

		if (ch < 0)
			return MORE;
		if (ch != (unsigned char)s[k])
			return 0;
		c->i++;
	}
	return 1;
}

static int
request_line(struct cur *c, struct http_req *req)
{
	char method[METHOD_MAX + 1];
	size_t n = 0, p = 0;
	int ch, r;

	while ((ch = peek(c)) >= 0 && is_tchar(ch)) {
		if (n == METHOD_MAX)
			return 400;
		method[n++] = (char)ch;
		c->i++;
	}
	if (ch < 0)
		return MORE;
	if (ch != ' ' || n == 0)
		return 400;
	method[n] = '\0';
	req->method = strcmp(method, "GET") == 0 ? HTTP_GET :
	    strcmp(method, "HEAD") == 0 ? HTTP_HEAD : HTTP_OTHER;
	c->i++;
	/* origin-form only: what a scraper or a probe sends. */
	if ((ch = peek(c)) < 0)
		return MORE;
	if (ch != '/')
		return 400;
	while ((ch = peek(c)) > 0x20 && ch < 0x7f) {
		if (p == HTTP_PATH_MAX)
			return 414;
		req->path[p++] = (char)ch;
		c->i++;
	}
	if (ch < 0)
		return MORE;
	if (ch != ' ')
		return 400;
	req->path[p] = '\0';
	req->path[strcspn(req->path, "?")] = '\0';
	c->i++;
	if ((r = expect(c, "HTTP/")) != 1)
		return r == MORE ? MORE : 400;
	/* HTTP/DIGIT.DIGIT: 1.0 or 1.1 are ours, another is 505. */
	if ((ch = peek(c)) < 0)
		return MORE;
	if (ch < '0' || ch > '9')
		return 400;
	c->i++;
	if ((r = expect(c, ".")) != 1)
		return r == MORE ? MORE : 400;
	if ((ch = peek(c)) < 0)
		return MORE;
	if (ch < '0' || ch > '9')
		return 400;
	c->i++;
	if (c->b[c->i - 3] != '1' || (c->b[c->i - 1] != '0' &&
	    c->b[c->i - 1] != '1')) {
		/* Only once the line is whole: "HTTP/2.0x" is just bad. */
		if ((r = expect(c, "\r\n")) != 1)
			return r == MORE ? MORE : 400;
		return 505;
	}
	req->http10 = c->b[c->i - 1] == '0';
	if ((r = expect(c, "\r\n")) != 1)
		return r == MORE ? MORE : 400;
	return 1;
}

/* What the fields said that matters. */
struct fields {
	unsigned n;
	unsigned host;
	bool length_seen;
	bool body;     /* Content-Length other than 0 */
	bool chunked;  /* Transfer-Encoding, whatever its value */
};

/* Interpret field ${name} = ${v}[0, vlen) (whitespace trimmed). */
static int
field(struct fields *f, const char *name, const unsigned char *v,
    size_t vlen)
{
	size_t k;

	if (strcasecmp(name, "host") == 0)
		f->host++;
	else if (strcasecmp(name, "transfer-encoding") == 0)
		f->chunked = true;
	else if (strcasecmp(name, "content-length") == 0) {
		if (f->length_seen || vlen == 0)
			return 400; /* two lengths: a smuggling attempt */
		f->length_seen = true;
		for (k = 0; k < vlen; k++) {
			if (v[k] < '0' || v[k] > '9')
				return 400;
			if (v[k] != '0')
				f->body = true;
		}
	}
	return 0;
}

static int
fields(struct cur *c, struct fields *f)
{
	for (;;) {
		char name[64];
		size_t n = 0, v0, v1;
		int ch, r;

		if ((ch = peek(c)) < 0)
			return MORE;
		if (ch == '\r') {
			if ((r = expect(c, "\r\n")) != 1)
				return r == MORE ? MORE : 400;
			return 1; /* the empty line: end of the head */
		}
		if (++f->n > HTTP_FIELDS_MAX)
			return 431;
		/* A name, then ':' right after it (no obs-fold, no space). */
		while ((ch = peek(c)) >= 0 && is_tchar(ch)) {
			if (n + 1 < sizeof(name))
				name[n] = (char)ch;
			n++;
			c->i++;
		}
		if (ch < 0)
			return MORE;
		if (ch != ':' || n == 0)
			return 400;
		name[n < sizeof(name) ? n : sizeof(name) - 1] = '\0';
		c->i++;
		while ((ch = peek(c)) == ' ' || ch == '\t')
			c->i++;
		v0 = v1 = c->i;
		/* field-vchar, SP, HTAB; obs-text allowed, other CTLs not. */
		while ((ch = peek(c)) >= 0 && ch != '\r') {
			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return 400;
			c->i++;
			if (ch != ' ' && ch != '\t')
				v1 = c->i;
		}
		if (ch < 0)
			return MORE;
		if ((r = expect(c, "\r\n")) != 1)
			return r == MORE ? MORE : 400;
		if (n < sizeof(name) &&
		    (r = field(f, name, c->b + v0, v1 - v0)) != 0)
			return r;
	}
}

int
http_parse(const char *buf, size_t len, struct http_req *req)
{
	struct cur c = {
		.b = (const unsigned char *)buf,
		.lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX,
		.len = len,
	};
	struct fields f;
	int r;

	memset(req, 0, sizeof(*req));
	memset(&f, 0, sizeof(f));
	if ((r = request_line(&c, req)) != 1)
		return r == MORE ? short_head(&c) : r;
	if ((r = fields(&c, &f)) != 1)
		return r == MORE ? short_head(&c) : r;
	if (f.chunked)
		return 501;
	if (f.body)
		return 400; /* none of our resources takes a body */
	/* RFC 9112 3.2: exactly one Host in 1.1, at most one in 1.0. */
	if (f.host > 1 || (!req->http10 && f.host != 1))
		return 400;
	req->head_len = c.i;
	return 1;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

size_t
http_head(char *buf, size_t len, int status, const char *type,
    size_t body_len, const char *allow)
{
	int n = snprintf(buf, len, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n"
	    "Cache-Control: no-store\r\n%s%s%s\r\n", status,
	    http_reason(status), type, body_len, allow ? "Allow: " : "",
	    allow ? allow : "", allow ? "\r\n" : "");

	if (n < 0 || (size_t)n >= len)
		return 0;
	return (size_t)n;
}
