/*
 * tlsctx: mbedTLS set-up shared by all connections of a listener.
 *
 * Loads and checks a listener's certificate chain, private key and client CA
 * in the master, builds the server configuration (our TLS policy) and owns
 * the random generator.  With tlssess, the only files that call mbedTLS.
 * Never logs: errors come back as "file:line: setting: problem".
 */
#ifndef TLS_ECHOD_TLSCTX_H
#define TLS_ECHOD_TLSCTX_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct tlsctx;

/**
 * tlsctx_global_init(err, errlen):
 * Start the crypto library (PSA) and the master's random generator.  Call
 * once before any other tlsctx function; 0, or -1 with a message.
 */
int tlsctx_global_init(char *err, size_t errlen);

/**
 * tlsctx_worker_init(err, errlen):
 * In a freshly forked worker: restart PSA and re-seed the random generator
 * from fresh entropy and the pid, so no two workers (nor the master) ever
 * share a random stream.  0, or -1 with a message.
 */
int tlsctx_worker_init(char *err, size_t errlen);

/**
 * tlsctx_global_free():
 * Free the random generator and PSA state (for leak checkers).
 */
void tlsctx_global_free(void);

/**
 * tlsctx_new(c, li, err, errlen):
 * Load and check listener ${li}'s TLS material (${c} names the file for
 * messages) and build its server configuration.  NULL with a message on any
 * problem: unreadable or unparsable file, key not matching the certificate,
 * expired or not yet valid certificate or CA, a CA file without a CA.
 */
struct tlsctx *tlsctx_new(const struct cfg *c, const struct cfg_listener *li,
    char *err, size_t errlen);

/**
 * tlsctx_free(t):
 * Free ${t}; the private key is wiped.  NULL is a no-op.
 */
void tlsctx_free(struct tlsctx *t);

/**
 * tlsctx_cert_summary(t, buf, len):
 * "CN=..., expires YYYY-MM-DD" for the server certificate, for startup logs.
 */
void tlsctx_cert_summary(const struct tlsctx *t, char *buf, size_t len);

/* A date an operator must watch: an expiry or a CRL's next update. */
struct tlsctx_date {
	const char *what;  /* "server certificate", "CA", "CRL", "backend CA" */
	char name[256];    /* subject, or a CRL's issuer */
	const char *path;  /* the file it came from */
	int64_t when;      /* Unix time */
};

/**
 * tlsctx_dates(t, out, max):
 * The dates of ${t}'s material: server certificate, CAs, CRL next updates,
 * backend CA and certificate.  Returns how many were written to ${out}.
 */
size_t tlsctx_dates(const struct tlsctx *t, struct tlsctx_date *out,
    size_t max);

/* A CA of tls.ca, and whether tls.crl revokes on its behalf. */
struct tlsctx_ca_crl {
	char name[256]; /* subject */
	int has_crl;    /* a CRL of tls.crl names it as issuer */
};

/**
 * tlsctx_ca_crls(t, out, max):
 * For each CA certificate of ${t}'s tls.ca, in file order (at most ${max}
 * written to ${out}): its subject and whether tls.crl holds a CRL in its
 * name.  Returns how many CAs tls.ca holds.
 */
size_t tlsctx_ca_crls(const struct tlsctx *t, struct tlsctx_ca_crl *out,
    size_t max);

/**
 * tlsctx_key_mode(t):
 * The permission bits the private key file had when loaded (e.g. 0600).
 */
unsigned tlsctx_key_mode(const struct tlsctx *t);

/**
 * tlsctx_library_version():
 * The mbedTLS version string compiled against, e.g. "3.6.6".
 */
const char *tlsctx_library_version(void);

/**
 * tlsctx_ticket_clock():
 * The clock TLS 1.3 tickets are aged with, in words: the wall clock (hosts
 * sharing ticket_key_file resume each other's sessions) or mbedTLS's boot
 * time clock (only the issuing host resumes them).
 */
const char *tlsctx_ticket_clock(void);

#endif
