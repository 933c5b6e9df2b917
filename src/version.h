/* version: set by the Makefile; defaults keep editors and analyzers happy. */
#ifndef TLS_ECHOD_VERSION_H
#define TLS_ECHOD_VERSION_H

#ifndef TLS_ECHOD_VERSION
#define TLS_ECHOD_VERSION "0.1.0"
#endif
#ifndef TLS_ECHOD_MBEDTLS_ORIGIN
#define TLS_ECHOD_MBEDTLS_ORIGIN "unknown origin"
#endif

#endif
