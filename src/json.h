/*
 * json: JSON text for the few places that write it (the whoami line, JSON
 * log records).  Leaf module: no I/O, no logging.
 */
#ifndef TLS_ECHOD_JSON_H
#define TLS_ECHOD_JSON_H

#include <stddef.h>

/**
 * json_put_str(buf, len, off, v):
 * Append ${v} as a JSON string, quotes included, at ${buf} + ${*off} and
 * advance ${*off}; ${buf} stays NUL-terminated.  Text in UTF-8 goes out as
 * it is; a string that is not UTF-8 has its bytes above 0x7f written as the
 * Latin-1 characters they would be (\u00XX), so any certificate name gives
 * valid JSON.  A value too long for the room left is cut (never inside a
 * UTF-8 sequence or an escape) and still closed.
 */
void json_put_str(char *buf, size_t len, size_t *off, const char *v);

/**
 * json_put_raw(buf, len, off, v):
 * Append ${v} as it is (numbers, punctuation), cut to the room left.
 */
void json_put_raw(char *buf, size_t len, size_t *off, const char *v);

#endif
