/*
 * http: a strict reader of one HTTP/1.x request head, and response heads.
 *
 * Just enough HTTP for /metrics, /healthz and /readyz (RFC 9112): a
 * request line "METHOD SP origin-form SP HTTP/1.1" (or 1.0), header
 * fields, an empty line; CRLF line ends only, no obsolete line folding,
 * no body (Content-Length other than 0 and Transfer-Encoding are
 * refused), HTTP/1.1 needs exactly one Host field.  The head is parsed
 * from its first byte every time more arrives (it is bounded, so that
 * costs little), and garbage is refused as soon as it shows: a TLS
 * ClientHello fails on its first byte.  Leaf module: no I/O, no logging,
 * no allocation.
 */
#ifndef TLS_ECHOD_HTTP_H
#define TLS_ECHOD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX 4096 /* request head bytes, request line included */
#define HTTP_PATH_MAX 256  /* request-target bytes */
#define HTTP_FIELDS_MAX 64 /* header fields */

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_OTHER };

struct http_req {
	enum http_method method;
	char path[HTTP_PATH_MAX + 1]; /* the target up to '?', NUL-ended */
	bool http10;                  /* HTTP/1.0 (else HTTP/1.1) */
	size_t head_len;              /* bytes of the head, final CRLF in */
};

/**
 * http_parse(buf, len, req):
 * Read the request head at the start of ${buf} (${len} bytes, not
 * NUL-terminated; may hold a NUL).  Returns 0 if it is incomplete so far
 * and valid (read more), 1 with ${req} filled when it is complete, or the
 * HTTP status that refuses it: 400 (malformed, or a Content-Length other
 * than 0), 414 (target too long), 431 (head too long or too many fields),
 * 501 (Transfer-Encoding), 505 (another HTTP version).  A method other
 * than GET and HEAD is not an error here: ${req->method} is HTTP_OTHER.
 */
int http_parse(const char *buf, size_t len, struct http_req *req);

/**
 * http_reason(status):
 * The reason phrase of ${status} ("Not Found"); "Error" if unknown.
 */
const char *http_reason(int status);

/**
 * http_head(buf, len, status, type, body_len, allow):
 * Write a response head for ${status} with Content-Type ${type},
 * Content-Length ${body_len}, "Connection: close", and "Allow: ${allow}"
 * when ${allow} is not NULL, into ${buf}.  Its length, or 0 if it does not
 * fit in ${len}.
 */
size_t http_head(char *buf, size_t len, int status, const char *type,
    size_t body_len, const char *allow);

#endif
