/*
 * fuzz_http: libFuzzer driver for the metrics endpoint's request reader
 * (src/http.c): http_parse on whatever a client may send, whole and in
 * parts as it would arrive, and http_head into buffers of every size.
 *
 * Input: the bytes a client sends (NULs included).  The first byte also
 * picks where the bytes are split into an earlier read.
 *
 * Each parse reads a heap copy of exactly the bytes given (ASan sees any
 * read past them).  Invariants: the result is 0, 1 or a refusal status
 * (400, 414, 431, 501, 505); 0 only below HTTP_HEAD_MAX bytes; a request
 * read whole has a head that ends with an empty line within the bytes
 * given and at most HTTP_HEAD_MAX long, a path that starts with '/', holds
 * no '?' and only visible ASCII, at most HTTP_PATH_MAX bytes; and what an
 * earlier part decided (a request, or a refusal other than 431, which
 * depends on the length) stays decided when more bytes come.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
parse_copy(const uint8_t *data, size_t n, struct http_req *req)
{
	char *copy = malloc(n ? n : 1);
	int r;

	if (copy == NULL)
		abort();
	memcpy(copy, data, n);
	r = http_parse(copy, n, req);
	free(copy);
	return r;
}

static void
check_result(const uint8_t *data, size_t n, int r, const struct http_req *q)
{
	size_t i, plen;

	if (r != 0 && r != 1 && r != 400 && r != 414 && r != 431 &&
	    r != 501 && r != 505)
		abort();
	if (r == 0 && n >= HTTP_HEAD_MAX)
		abort();
	if (r != 1)
		return;
	if (q->head_len < 4 || q->head_len > n || q->head_len > HTTP_HEAD_MAX ||
	    memcmp(data + q->head_len - 4, "\r\n\r\n", 4) != 0)
		abort();
	plen = strnlen(q->path, sizeof(q->path));
	if (plen == 0 || plen > HTTP_PATH_MAX || q->path[0] != '/')
		abort();
	for (i = 0; i < plen; i++)
		if (q->path[i] <= 0x20 || q->path[i] >= 0x7f ||
		    q->path[i] == '?')
			abort();
	if (q->method != HTTP_GET && q->method != HTTP_HEAD &&
	    q->method != HTTP_OTHER)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_req whole, part;
	size_t split, len;
	int r, rp;
	char head[512];

	if (size > 2 * HTTP_HEAD_MAX)
		size = 2 * HTTP_HEAD_MAX;
	r = parse_copy(data, size, &whole);
	check_result(data, size, r, &whole);
	split = size ? (size_t)data[0] * size / 256 : 0;
	rp = parse_copy(data, split, &part);
	check_result(data, split, rp, &part);
	if (rp == 1 && (r != 1 || part.head_len != whole.head_len ||
	    strcmp(part.path, whole.path) != 0))
		abort();
	if (rp != 0 && rp != 1 && rp != 431 && r != rp)
		abort();

	/* Heads: never past the buffer, 0 exactly when it does not fit. */
	len = size ? data[size - 1] % sizeof(head) : 0;
	{
		size_t full = http_head(head, sizeof(head), r > 1 ? r : 200,
		    "text/plain", size, size % 2 ? "GET, HEAD" : NULL);
		char *small = malloc(len ? len : 1);
		size_t got;

		if (small == NULL || full == 0)
			abort();
		got = http_head(small, len, r > 1 ? r : 200, "text/plain",
		    size, size % 2 ? "GET, HEAD" : NULL);
		if ((got != 0) != (full < len) ||
		    (got != 0 && memcmp(small, head, full) != 0))
			abort();
		free(small);
	}
	return 0;
}
