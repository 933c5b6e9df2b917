/*
 * notify: the service manager protocol (sd_notify).
 *
 * Messages go out on a non-blocking datagram socket: libsystemd's
 * sd_notify() blocks when the manager's queue is full (10 datagrams by
 * default), and a master stuck there stops supervising its workers and
 * handling signals.  A STATUS= or WATCHDOG=1 that does not fit is dropped
 * (the next refresh or ping repeats it); a state change (READY=1,
 * RELOADING=1, STOPPING=1) is kept and sent again by notify_retry() until
 * it goes out, a newer state replacing an older one.  NOTIFY_SOCKET forms
 * other than a path or an abstract name (vsock, systemd 254+) go through
 * sd_notify().
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

/* The last state change the manager has not taken yet ("" if none). */
static char pending[640];

/* 0 when sent (or nobody to send to), -1 when the manager's queue is full. */
static int
send_text(const char *text)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	size_t n;
	int fd;

	ssize_t r;

	if (e == NULL || e[0] == '\0')
		return 0;
	n = strlen(e);
	if ((e[0] != '/' && e[0] != '@') || n >= sizeof(sa.sun_path)) {
		(void)sd_notify(0, text);
		return 0;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, e, n);
	if (e[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	/* The manager learns our pid from the kernel (SO_PASSCRED). */
	r = sendto(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT,
	    (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un,
	    sun_path) + n + (e[0] == '/' ? 1 : 0)));
	close(fd);
	/* Only a full queue is worth trying again; no manager is not. */
	return r < 0 && (errno == EAGAIN || errno == ENOBUFS) ? -1 : 0;
}

/* A state change: sent now, or kept for notify_retry(). */
static void __attribute__((format(printf, 1, 2)))
send_state(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pending, sizeof(pending), fmt, ap);
	va_end(ap);
	if (send_text(pending) == 0)
		pending[0] = '\0';
}

int
notify_retry(void)
{
	if (pending[0] != '\0' && send_text(pending) == 0)
		pending[0] = '\0';
	return pending[0] != '\0';
}

void
notify_ready(const char *status)
{
	send_state("READY=1\nSTATUS=%s", status);
}

void
notify_status(const char *fmt, ...)
{
	char buf[512], line[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	(void)snprintf(line, sizeof(line), "STATUS=%s", buf);
	(void)send_text(line);
}

void
notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	send_state("RELOADING=1\nMONOTONIC_USEC=%llu\n"
	    "STATUS=reloading", (unsigned long long)ts.tv_sec * 1000000ull +
	    (unsigned long long)ts.tv_nsec / 1000ull);
}

void
notify_stopping(const char *status)
{
	send_state("STOPPING=1\nSTATUS=%s", status);
}

uint64_t
notify_watchdog_usec(void)
{
	uint64_t usec = 0;

	/* Leave WATCHDOG_* set: workers never call this. */
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec;
}

void
notify_watchdog(void)
{
	(void)send_text("WATCHDOG=1");
}
