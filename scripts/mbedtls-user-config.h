/*
 * tls-echod's adjustments to mbedTLS 3.6's default configuration.
 *
 * Used only by the bundled build (scripts/build-mbedtls.sh): it is compiled
 * into the library as MBEDTLS_USER_CONFIG_FILE and installed next to the
 * headers as <prefix>/include/tls_echod_mbedtls_config.h, and mk/mbedtls.mk
 * passes the same -DMBEDTLS_USER_CONFIG_FILE to every file that includes an
 * mbedTLS header, so the library and tls-echod always agree on struct layouts.
 *
 * mbedTLS reads this after include/mbedtls/mbedtls_config.h and before its own
 * consistency adjustments and check_config.h, so it only states differences
 * from the defaults (and re-states, for the reader, defaults we rely on).
 * Editing this file makes the next `make` rebuild the library.
 */
#ifndef TLS_ECHOD_MBEDTLS_CONFIG_H
#define TLS_ECHOD_MBEDTLS_CONFIG_H

/* Marker so code (and the build's self-check) can tell this config is in use. */
#define TLS_ECHOD_MBEDTLS_USER_CONFIG 1

/* Formally verified, constant-time X25519 (Project Everest, Apache-2.0 only)
 * for the legacy ECDH API, i.e. TLS 1.2 ECDHE key exchange over X25519.
 * TLS 1.3 key exchange always goes through PSA and keeps using the built-in
 * Curve25519 code; this changes nothing there. */
#define MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED

/* Everest replaces the legacy ECDH context, which restartable ECC needs;
 * we never do restartable (non-blocking) ECC, so keep it off explicitly. */
#undef MBEDTLS_ECP_RESTARTABLE

/* p256-m stays off: the default ECP code already serves P-256 and one
 * implementation of the curve is less code to trust and to update. */
#undef MBEDTLS_PSA_P256M_DRIVER_ENABLED

/* TLS 1.2 keeps its classic (non-PSA) crypto path, which is the one Everest
 * plugs into; TLS 1.3 uses PSA regardless, so psa_crypto_init() is still
 * required before the first handshake. */
#undef MBEDTLS_USE_PSA_CRYPTO

/* Protocol versions we serve: TLS 1.3 preferred, TLS 1.2 for older clients
 * (both are defaults; stated so a trimmed default config cannot drop one). */
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_SSL_PROTO_TLS1_3

/* TLS 1.3 certificate handshakes need the (EC)DHE key exchange mode (default). */
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED

/* Session resumption by tickets (default): cheaper reconnects for clients. */
#define MBEDTLS_SSL_SESSION_TICKETS

/* Mutual TLS: the client's certificate stays available after the handshake
 * (mbedtls_ssl_get_peer_cert) for identity checks (default). */
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE

/*
 * Memory per connection.  Two 16 KiB record buffers are ~89 % of an idle
 * connection.  With variable buffer length, mbedTLS shrinks them when the
 * handshake ends to what the session may carry: input stays at 16 KiB
 * (clients may send full records; mbedTLS never caps a server's input),
 * output follows mbedtls_ssl_conf_max_frag_len(), which tlsctx sets from
 * tls.record_size (default 4096).  OUT_CONTENT_LEN itself stays at 16 KiB:
 * a smaller one breaks clients sending 16 KiB records (upstream #4485) and
 * certificate chains over 4 KiB.
 */
#define MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH

/*
 * TLS 1.3 tickets carry their creation time and a resuming server compares
 * it with the client's idea of the ticket's age (6 s of tolerance).
 * mbedTLS's own clock is CLOCK_BOOTTIME, which differs between hosts: a
 * ticket from one host would never resume on another sharing
 * ticket_key_file.  tls-echod supplies mbedtls_ms_time() on the wall clock
 * (src/tlsclock.c), which synchronised hosts agree on.
 */
#define MBEDTLS_PLATFORM_MS_TIME_ALT

#endif /* TLS_ECHOD_MBEDTLS_CONFIG_H */
