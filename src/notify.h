/*
 * notify: the service manager protocol (sd_notify).  Every call is a no-op
 * when NOTIFY_SOCKET is unset, so the daemon runs the same outside systemd.
 */
#ifndef TLS_ECHOD_NOTIFY_H
#define TLS_ECHOD_NOTIFY_H

#include <stdint.h>

/** notify_ready(status): READY=1 with a STATUS= line. */
void notify_ready(const char *status);

/** notify_status(fmt, ...): STATUS= line for "systemctl status". */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** notify_reloading(): RELOADING=1 with MONOTONIC_USEC (systemd 253+). */
void notify_reloading(void);

/** notify_stopping(status): STOPPING=1 with a STATUS= line. */
void notify_stopping(const char *status);

/** notify_watchdog_usec(): the watchdog interval in µs, 0 if none. */
uint64_t notify_watchdog_usec(void);

/** notify_watchdog(): WATCHDOG=1. */
void notify_watchdog(void);

/**
 * notify_retry():
 * Send again a state change (READY=1, RELOADING=1, STOPPING=1) the
 * manager's full queue refused.  True while one is still waiting.
 */
int notify_retry(void);

#endif
