/*
 * tlsclient: the mbedTLS side of tls-echo (the only file of the client that
 * includes an mbedTLS header).  One configuration (our certificate and key,
 * the CA to verify the server, the name it must hold, the versions), one
 * session at a time over a non-blocking socket the caller owns.  Never
 * prints: errors go to the caller's buffer or a struct tlsc_failure.
 *
 * The server's certificate is verified with mbedTLS in "required" mode: a
 * server that does not verify ends the handshake before our certificate or
 * anything else goes to it (TLSC_F_UNVERIFIED); tlsclient_info() then
 * still describes its chain from the verify callback, so the caller can
 * say exactly why (and report an expired certificate's date).
 */
#ifndef TLS_ECHO_TLSCLIENT_H
#define TLS_ECHO_TLSCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Non-blocking results besides a byte count or 0. */
#define TLSC_FAIL       (-1) /* see tlsclient_failure() */
#define TLSC_WANT_READ  (-2) /* wait until the socket is readable */
#define TLSC_WANT_WRITE (-3) /* wait until the socket is writable */

#define TLSC_CHAIN_MAX 8
#define TLSC_NAME_MAX 256

/* Verification flags the caller interprets (mbedTLS's values, copied so
 * the caller needs no mbedTLS header). */
#define TLSC_BAD_EXPIRED      0x01u /* a certificate of the chain expired */
#define TLSC_BAD_FUTURE       0x02u /* ... is not valid yet */
#define TLSC_BAD_NAME         0x04u /* the leaf does not hold the name */
#define TLSC_BAD_UNTRUSTED    0x08u /* no chain to a CA of --ca */
#define TLSC_BAD_OTHER        0x10u /* anything else (usage, weak key...) */

struct tlsc_opts {
	const char *cert, *key; /* our certificate (chain) and key; NULL: none */
	const char *ca;         /* CA certificates to verify the server */
	const char *server_name; /* SNI and the name the server cert must hold */
	int min_version, max_version; /* 12 or 13; 0: 1.2 and 1.3 */
};

struct tlsc_cert {
	char subject[TLSC_NAME_MAX];
	char issuer[TLSC_NAME_MAX];
	int64_t not_before, not_after; /* seconds since the epoch (UTC) */
	unsigned flags;                /* TLSC_BAD_* of this certificate */
	int from_ca_file;              /* the trust anchor, from --ca */
};

struct tlsc_info {
	char version[16];   /* "TLSv1.3" */
	char cipher[96];    /* IANA name, e.g. "TLS_AES_256_GCM_SHA384" */
	unsigned verify_flags;       /* TLSC_BAD_*, 0: verified */
	char verify_text[512];       /* mbedTLS's words for the flags */
	/* Leaf first, then up to the anchor (if one was found). */
	struct tlsc_cert chain[TLSC_CHAIN_MAX];
	size_t nchain;
};

enum tlsc_failure_kind {
	TLSC_F_NONE,
	TLSC_F_ALERT,      /* the server sent a fatal alert: ${alert} */
	TLSC_F_CLOSED,     /* EOF without close_notify */
	TLSC_F_RESET,      /* connection reset */
	TLSC_F_BAD_MAC,    /* a record did not decrypt */
	TLSC_F_VERSION,    /* no common protocol version */
	TLSC_F_HANDSHAKE,  /* no common suite/group/signature algorithm */
	TLSC_F_UNVERIFIED, /* the server's certificate did not verify: see
	                      tlsclient_info()'s verify_flags and chain */
	TLSC_F_OTHER,      /* see ${text} */
};

struct tlsc_failure {
	enum tlsc_failure_kind kind;
	int alert;            /* TLS alert number with TLSC_F_ALERT */
	const char *alert_name; /* "certificate_unknown", ... */
	char text[256];       /* mbedTLS's message */
};

struct tlsclient;

/**
 * tlsclient_library_version():
 * "3.6.x", the mbedTLS linked.
 */
const char *tlsclient_library_version(void);

/**
 * tlsclient_new(o, err, errlen):
 * Seed the random generators and load ${o}'s files into a configuration.
 * The new client, or NULL with a message naming the file in ${err}.
 */
struct tlsclient *tlsclient_new(const struct tlsc_opts *o, char *err,
    size_t errlen);

/**
 * tlsclient_free(t):
 * Free ${t} and wipe its key.  NULL is a no-op.
 */
void tlsclient_free(struct tlsclient *t);

/**
 * tlsclient_own_subject(t, buf, len):
 * The subject of our certificate, or "" when we have none; returns ${buf}.
 */
char *tlsclient_own_subject(const struct tlsclient *t, char *buf, size_t len);

/**
 * tlsclient_start(t, fd, err, errlen):
 * Start a new session on connected non-blocking socket ${fd} (the caller
 * keeps owning it), ending any earlier one.  0, or -1 with a message.
 */
int tlsclient_start(struct tlsclient *t, int fd, char *err, size_t errlen);

/**
 * tlsclient_handshake(t):
 * Advance the handshake: 0 when done, TLSC_WANT_READ / TLSC_WANT_WRITE, or
 * TLSC_FAIL.  Done does not mean verified: see tlsclient_info().
 */
int tlsclient_handshake(struct tlsclient *t);

/**
 * tlsclient_info(t, info):
 * After the handshake: version, suite, the verified (or presented) chain
 * and the verification result.
 */
void tlsclient_info(const struct tlsclient *t, struct tlsc_info *info);

/**
 * tlsclient_read(t, buf, len):
 * Bytes read (> 0), 0 once the server sent close_notify, or TLSC_WANT_*,
 * TLSC_FAIL.
 */
ssize_t tlsclient_read(struct tlsclient *t, void *buf, size_t len);

/**
 * tlsclient_pending(t):
 * True if decrypted bytes wait to be read without touching the socket.
 */
int tlsclient_pending(const struct tlsclient *t);

/**
 * tlsclient_write(t, buf, len):
 * Bytes written (> 0), TLSC_WANT_* (then call again with the same
 * arguments), or TLSC_FAIL.
 */
ssize_t tlsclient_write(struct tlsclient *t, const void *buf, size_t len);

/**
 * tlsclient_close_notify(t):
 * Send close_notify (our half-close): 0 when sent, TLSC_WANT_*, TLSC_FAIL.
 */
int tlsclient_close_notify(struct tlsclient *t);

/**
 * tlsclient_failure(t, f):
 * Why the last call returned TLSC_FAIL.
 */
void tlsclient_failure(const struct tlsclient *t, struct tlsc_failure *f);

#endif
