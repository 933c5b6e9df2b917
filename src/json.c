/*
 * json: JSON text for the few places that write it.
 */
#include "json.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "identity.h"

/* Bytes of the UTF-8 sequence that starts with ${c} (valid text given). */
static size_t
seq_len(unsigned char c)
{
	return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

void
json_put_str(char *buf, size_t len, size_t *off, const char *v)
{
	const unsigned char *p = (const unsigned char *)v;
	bool utf8 = identity_utf8_ok(v, strlen(v));

	/* Room for the quotes and the NUL. */
	if (len < 3 || *off > len - 3)
		return;
	buf[(*off)++] = '"';
	while (*p != '\0') {
		size_t room = len - *off - 2; /* closing quote and NUL */

		if (*p == '"' || *p == '\\') {
			if (room < 2)
				break;
			buf[(*off)++] = '\\';
			buf[(*off)++] = (char)*p++;
		} else if (*p >= 0x80 && utf8) {
			size_t n = seq_len(*p);

			if (room < n)
				break;
			memcpy(buf + *off, p, n);
			*off += n;
			p += n;
		} else if (*p < 0x20 || *p >= 0x7f) {
			if (room < 6)
				break;
			snprintf(buf + *off, 7, "\\u%04x", *p++);
			*off += 6;
		} else {
			if (room < 1)
				break;
			buf[(*off)++] = (char)*p++;
		}
	}
	buf[(*off)++] = '"';
	buf[*off] = '\0';
}

void
json_put_raw(char *buf, size_t len, size_t *off, const char *v)
{
	size_t n = strlen(v);

	if (len == 0 || *off >= len - 1)
		return;
	if (n > len - 1 - *off)
		n = len - 1 - *off;
	memcpy(buf + *off, v, n);
	*off += n;
	buf[*off] = '\0';
}
