/*
 * tlssess: one non-blocking TLS server session over a socket.
 *
 * Wraps mbedTLS so conn never sees it: every call returns an enum tls_io
 * telling the caller whether to wait for the socket to become readable or
 * writable.  After a failed handshake, tlssess_refusal() explains why in an
 * operator's words.
 */
#ifndef TLS_ECHOD_TLSSESS_H
#define TLS_ECHOD_TLSSESS_H

#include <stddef.h>
#include <stdint.h>

struct identity;
struct tlsctx;
struct tlssess;

enum tls_io {
	TLS_IO_OK,         /* done (or some bytes moved) */
	TLS_IO_WANT_READ,  /* call again when the socket is readable */
	TLS_IO_WANT_WRITE, /* call again when the socket is writable */
	TLS_IO_EOF,        /* peer closed (close_notify or TCP FIN) */
	TLS_IO_ERROR,      /* fatal; see tlssess_error() */
	TLS_IO_YIELD,      /* handshake: more to do, no I/O needed; let
	                      other connections run first, then call again */
	TLS_IO_AUTHENTICATED, /* handshake: the client has proven who it is
	                      (or that it has no certificate) and nothing
	                      that resumes has been sent yet: admit it
	                      (tlssess_admitted, then tlssess_handshake
	                      again) or refuse it (tlssess_deny) */
};

/* Why a handshake was refused: a stable token and the operator's words. */
struct tls_refusal {
	const char *token;  /* e.g. "cert-expired"; for CLOSE_REASON= */
	const char *words;  /* e.g. "client certificate expired" */
	char detail[512];   /* specifics, e.g. "expired on 2021-01-01 ..." */
	char subject[512];  /* client certificate subject, "" if none seen */
	char issuer[512];   /* its issuer, "" if none seen */
};

/**
 * tlssess_new(t, fd):
 * A server session for accepted socket ${fd} (not owned) with ${t}'s policy,
 * or NULL if out of memory.
 */
struct tlssess *tlssess_new(struct tlsctx *t, int fd);

/**
 * tlssess_new_client(t, fd):
 * A client session towards ${t}'s TLS backend over connected socket ${fd}
 * (not owned), verifying the backend's certificate and name.  NULL if ${t}
 * has no backend TLS or out of memory.
 */
struct tlssess *tlssess_new_client(struct tlsctx *t, int fd);

/**
 * tlssess_backend_error(s, buf, len):
 * Why a backend handshake (client session) failed, in words.
 */
void tlssess_backend_error(const struct tlssess *s, char *buf, size_t len);

/**
 * tlssess_free(s):
 * Free ${s}, wiping its keys.  The socket is not closed.  NULL is a no-op.
 */
void tlssess_free(struct tlssess *s);

/**
 * tlssess_handshake(s):
 * Advance the handshake: TLS_IO_OK when complete.  A server session stops
 * once with TLS_IO_AUTHENTICATED when the client is authenticated (full
 * handshake or resumption) and before any session ticket is issued; the
 * peer_* functions then describe the client.  Returns TLS_IO_YIELD
 * after steps that used ~0.2 ms of CPU (a signature or a
 * certificate verification), so that a handshake never holds its worker
 * for more than about one public-key operation at a time.
 */
enum tls_io tlssess_handshake(struct tlssess *s);

/**
 * tlssess_read(s, buf, len, ret_n):
 * Read application data; on TLS_IO_OK ${*ret_n} > 0 bytes were read.
 */
enum tls_io tlssess_read(struct tlssess *s, void *buf, size_t len,
    size_t *ret_n);

/**
 * tlssess_write(s, buf, len, ret_n):
 * Write application data; on TLS_IO_OK ${*ret_n} > 0 bytes were taken.  After
 * TLS_IO_WANT_*, call again with the same ${buf} and ${len}.
 */
enum tls_io tlssess_write(struct tlssess *s, const void *buf, size_t len,
    size_t *ret_n);

/**
 * tlssess_admitted(s):
 * After TLS_IO_AUTHENTICATED, the client is admitted: the rest of the
 * handshake may issue it session tickets (only admitted clients get one).
 * Frees what only a refusal needed (the certificate's words).
 */
void tlssess_admitted(struct tlssess *s);

/**
 * tlssess_readable(s):
 * Epoll reported ${s}'s socket readable (or hung up): forget that the last
 * read found it empty.
 */
void tlssess_readable(struct tlssess *s);

/**
 * tlssess_pending(s):
 * True if decrypted or buffered input waits inside the session, which no
 * socket readiness will announce.
 */
int tlssess_pending(const struct tlssess *s);

/**
 * tlssess_close_notify(s):
 * Send close_notify: TLS_IO_OK when sent.
 */
enum tls_io tlssess_close_notify(struct tlssess *s);

/**
 * tlssess_refusal(s, r):
 * Fill ${r} with why the handshake failed, from the last error and what the
 * client sent.
 */
void tlssess_refusal(const struct tlssess *s, struct tls_refusal *r);

/**
 * tlssess_peer_gone(s):
 * True if the last error was the peer resetting or closing the connection
 * under us (EPIPE, ECONNRESET).
 */
int tlssess_peer_gone(const struct tlssess *s);

/**
 * tlssess_error(s, buf, len):
 * The last error as text, for failures after the handshake.
 */
void tlssess_error(const struct tlssess *s, char *buf, size_t len);

/** tlssess_version(s): "TLSv1.3" or "TLSv1.2". */
const char *tlssess_version(const struct tlssess *s);

/** tlssess_cipher(s): the negotiated suite's IANA name. */
const char *tlssess_cipher(const struct tlssess *s);

/**
 * tlssess_peer_subject(s, buf, len):
 * The verified client certificate's subject DN, "" if none.
 */
void tlssess_peer_subject(const struct tlssess *s, char *buf, size_t len);

/**
 * tlssess_peer_cn(s, buf, len):
 * The verified client certificate's first CN in ${buf}: 1 if there is one,
 * 0 if none (${buf} ""), -1 if it cannot be given whole and as it is (longer
 * than ${len} - 1, a control byte, not UTF-8; ${buf} "").
 */
int tlssess_peer_cn(const struct tlssess *s, char *buf, size_t len);

/**
 * tlssess_peer_uri(s, buf, len):
 * The verified client certificate's first URI SAN (e.g. a SPIFFE ID) in
 * ${buf}: 1, 0 if none, -1 if it cannot be given whole (longer than ${len}
 * - 1, or bytes a URI cannot hold: controls, spaces, non-ASCII).
 */
int tlssess_peer_uri(const struct tlssess *s, char *buf, size_t len);

/**
 * tlssess_deny(s, token):
 * Tell a client refused after its handshake why, as well as TLS can: a
 * fatal access_denied alert (bad_certificate for a certificate problem).
 */
void tlssess_deny(struct tlssess *s, const char *token);

/**
 * tlssess_client_verified(s, r):
 * After a handshake with verify_client = "optional": 1 if the client's
 * certificate verified, 0 if it sent none, -1 if it sent one that does not
 * verify (${r} says why; refuse the client).
 */
int tlssess_client_verified(const struct tlssess *s, struct tls_refusal *r);

/**
 * tlssess_crl_stale(s):
 * True if verification consulted a CRL past its nextUpdate (admitted only
 * because tls.crl_stale = "warn").
 */
int tlssess_crl_stale(const struct tlssess *s);

/**
 * tlssess_peer_identity(s, id):
 * Fill ${id} with the verified client certificate's names (CN, OU, SAN
 * DNS/URI/email) and SPKI hash; empty if there is no certificate.  Free
 * with identity_clear().
 */
void tlssess_peer_identity(const struct tlssess *s, struct identity *id);

struct mbedtls_x509_crt;

/**
 * tlssess_crt_identity(crt, id):
 * The names of certificate ${crt} (NULL: none), as tlssess_peer_identity
 * gives them; exported for the fuzz driver of this SAN walk.
 */
void tlssess_crt_identity(const struct mbedtls_x509_crt *crt,
    struct identity *id);

/**
 * tlssess_resumed(s):
 * True if this session was resumed from a ticket.
 */
int tlssess_resumed(const struct tlssess *s);

/**
 * tlssess_whoami_json(s, id, buf, len):
 * One JSON line (ending in \n) describing the client: subject, names,
 * issuer, serial, not_after, SPKI hash, TLS version, cipher, resumed.
 * Returns its length (0 if ${len} is too small to be useful).
 */
size_t tlssess_whoami_json(const struct tlssess *s, const struct identity *id,
    char *buf, size_t len);

#endif
