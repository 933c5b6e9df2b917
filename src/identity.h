/*
 * identity: who a verified client certificate says it is, and whether a
 * listener's allow-list admits it.  Pure: no mbedTLS, no I/O, no logging, so
 * the matcher can be fuzzed on its own (tlssess extracts the names).
 */
#ifndef TLS_ECHOD_IDENTITY_H
#define TLS_ECHOD_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_MAX_NAMES 32  /* per kind; more are ignored (and flagged) */
#define IDENTITY_SPKI_LEN 32   /* SHA-256 */

/* The names of one certificate; strings owned by the struct. */
struct identity {
	char *cn[IDENTITY_MAX_NAMES];
	size_t ncn;
	char *ou[IDENTITY_MAX_NAMES];
	size_t nou;
	char *dns[IDENTITY_MAX_NAMES];
	size_t ndns;
	char *uri[IDENTITY_MAX_NAMES];
	size_t nuri;
	char *email[IDENTITY_MAX_NAMES];
	size_t nemail;
	uint8_t spki_sha256[IDENTITY_SPKI_LEN];
	bool has_spki;
	bool truncated; /* some names did not fit */
};

enum identity_kind {
	IDENTITY_CN,
	IDENTITY_OU,
	IDENTITY_DNS,
	IDENTITY_URI,
	IDENTITY_EMAIL,
};

/* An allow-list: any rule that matches admits.  Strings not owned. */
struct identity_allow {
	char **cn, **ou, **dns, **uri, **email;
	size_t ncn, nou, ndns, nuri, nemail;
	const uint8_t (*spki)[IDENTITY_SPKI_LEN];
	size_t nspki;
};

/**
 * identity_add(id, kind, s, len):
 * Add name ${s} (${len} bytes, not NUL-terminated; embedded NULs refuse it)
 * of ${kind} to ${id}.  Returns 0, or -1 if it does not fit or has a NUL
 * (then id->truncated is set: a name we could not keep never matches).
 */
int identity_add(struct identity *id, enum identity_kind kind, const char *s,
    size_t len);

/**
 * identity_clear(id):
 * Free the names of ${id} and empty it.
 */
void identity_clear(struct identity *id);

/**
 * identity_allow_empty(a):
 * True if ${a} has no rule (then every verified certificate is admitted).
 */
bool identity_allow_empty(const struct identity_allow *a);

/**
 * identity_match(a, id, rule, rulelen):
 * True if a rule of ${a} admits ${id}; the rule is described in ${rule}
 * (e.g. "cn api-client").  Matching: cn, ou exact; dns
 * case-insensitive, a pattern "*.example.com" matches exactly one more
 * label; uri exact, or a pattern ending in "*" matches that prefix; email
 * case-insensitive exact, or "@example.com" for a whole domain; spki_sha256
 * the SHA-256 of the certificate's SubjectPublicKeyInfo.
 */
bool identity_match(const struct identity_allow *a, const struct identity *id,
    char *rule, size_t rulelen);

/**
 * identity_utf8_ok(s, len):
 * True if ${s} is well-formed UTF-8 (no overlongs, surrogates or code points
 * past U+10FFFF) without NUL; then it may go out as text as it is.
 */
bool identity_utf8_ok(const char *s, size_t len);

/**
 * identity_describe(id, buf, len):
 * "CN=a, OU=b, DNS=x, URI=y, email=z" for logs (truncated to ${len}).
 */
void identity_describe(const struct identity *id, char *buf, size_t len);

#endif
