/*
 * log: one place that writes log records, to journald or to stderr.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

#include <sys/socket.h>
#include <sys/un.h>

#define MAX_FIELDS 32
#define MSG_MAX 1024

static enum log_target target = LOG_TARGET_STDERR;
/*
 * journald's socket, connected once (in the master, before any worker is
 * forked; workers inherit it): records go out with send(2) on it, so a
 * worker's seccomp filter needs neither socket(2) nor sendmsg(2), which
 * would let it send datagrams (and descriptors) anywhere.  -1: not open.
 */
static int journal_fd = -1;
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static void
journal_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (journal_fd >= 0)
		return;
	memcpy(sa.sun_path, JOURNAL_SOCKET, sizeof(JOURNAL_SOCKET));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return;
	}
	journal_fd = fd;
}

/* True if stderr is the journal stream systemd gave us (JOURNAL_STREAM). */
static int
stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_open(enum log_target t, int force)
{
	if (force)
		target = t;
	else
		target = stderr_is_journal() ? LOG_TARGET_JOURNAL :
		    LOG_TARGET_STDERR;
	if (target == LOG_TARGET_JOURNAL)
		journal_connect();
}

enum log_target
log_target(void)
{
	return target;
}

const char *
log_target_name(void)
{
	return target == LOG_TARGET_JOURNAL ? "journal" :
	    target == LOG_TARGET_JSON ? "stderr (JSON lines)" : "stderr";
}

static const char *
prio_name(int prio)
{
	switch (prio) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT: return "critical";
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warning";
	case LOG_NOTICE: return "notice";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

/* Append ${v} to ${out}, quoted when it holds spaces, quotes or controls. */
static size_t
put_value(char *out, size_t off, size_t len, const char *v)
{
	int quote = v[0] == '\0' || strpbrk(v, " \"\\=\t") != NULL;
	const char *p;

	if (quote && off < len)
		out[off++] = '"';
	for (p = v; *p != '\0' && off + 4 < len; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			out[off++] = '\\';
			out[off++] = (char)c;
		} else if (c < 0x20 || c == 0x7f)
			off += (size_t)snprintf(out + off, len - off, "\\x%02x", c);
		else
			out[off++] = (char)c;
	}
	if (quote && off < len)
		out[off++] = '"';
	return off;
}

static void
write_stderr(int prio, const char *msg, const struct log_field *f, size_t n)
{
	char line[4096];
	size_t off, i;
	int w;

	w = snprintf(line, sizeof(line), "tls-echod[%ld]: %s: %s",
	    (long)getpid(), prio_name(prio), msg);
	off = w < 0 ? 0 : (size_t)w;
	if (off >= sizeof(line))
		off = sizeof(line) - 1;
	for (i = 0; i < n && off + 8 < sizeof(line); i++) {
		if (f[i].value == NULL)
			continue;
		w = snprintf(line + off, sizeof(line) - off, " %s=", f[i].key);
		if (w < 0 || (size_t)w >= sizeof(line) - off)
			break;
		off += (size_t)w;
		off = put_value(line, off, sizeof(line) - 1, f[i].value);
	}
	if (off >= sizeof(line) - 1)
		off = sizeof(line) - 2;
	line[off++] = '\n';
	/* One write per record so workers' lines never interleave. */
	while (write(STDERR_FILENO, line, off) < 0 && errno == EINTR)
		;
}

/*
 * One JSON object per line on stderr, with the fields journald would get
 * (all values strings, as `journalctl -o json` gives them) and a
 * TIMESTAMP (RFC 3339, UTC, microseconds) for collectors.
 */
static void
write_json(int prio, const char *msgid, const char *msg,
    const struct log_field *f, size_t n)
{
	char line[8192], ts[32], num[24];
	struct timespec now;
	struct tm tm;
	size_t off = 0, i;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, 20, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + 19, sizeof(ts) - 19, ".%06uZ",
	    (unsigned)(now.tv_nsec / 1000) % 1000000u);
	/* Room is kept for the closing brace and newline. */
	json_put_raw(line, sizeof(line) - 2, &off, "{\"TIMESTAMP\":");
	json_put_str(line, sizeof(line) - 2, &off, ts);
	json_put_raw(line, sizeof(line) - 2, &off, ",\"PRIORITY\":");
	snprintf(num, sizeof(num), "%d", prio);
	json_put_str(line, sizeof(line) - 2, &off, num);
	json_put_raw(line, sizeof(line) - 2, &off,
	    ",\"SYSLOG_IDENTIFIER\":\"tls-echod\",\"PID\":");
	snprintf(num, sizeof(num), "%ld", (long)getpid());
	json_put_str(line, sizeof(line) - 2, &off, num);
	if (msgid != NULL) {
		json_put_raw(line, sizeof(line) - 2, &off,
		    ",\"MESSAGE_ID\":");
		json_put_str(line, sizeof(line) - 2, &off, msgid);
	}
	json_put_raw(line, sizeof(line) - 2, &off, ",\"MESSAGE\":");
	json_put_str(line, sizeof(line) - 2, &off, msg);
	for (i = 0; i < n; i++) {
		if (f[i].value == NULL)
			continue;
		json_put_raw(line, sizeof(line) - 2, &off, ",");
		json_put_str(line, sizeof(line) - 2, &off, f[i].key);
		json_put_raw(line, sizeof(line) - 2, &off, ":");
		json_put_str(line, sizeof(line) - 2, &off, f[i].value);
	}
	line[off++] = '}';
	line[off++] = '\n';
	/* One write per record so workers' lines never interleave. */
	while (write(STDERR_FILENO, line, off) < 0 && errno == EINTR)
		;
}

/*
 * Append journald native-protocol field ${key}=${value} at ${buf}+${*off}:
 * "KEY=value\n", or for a value holding a newline "KEY\n", its length as
 * 64-bit little-endian, the value, "\n".  False if it does not fit.
 */
static bool
journal_field(char *buf, size_t len, size_t *off, const char *key,
    const char *value)
{
	size_t k = strlen(key), v = strlen(value), i;

	if (memchr(value, '\n', v) == NULL) {
		if (k + 1 + v + 1 > len - *off)
			return false;
		memcpy(buf + *off, key, k);
		buf[*off + k] = '=';
		memcpy(buf + *off + k + 1, value, v);
		buf[*off + k + 1 + v] = '\n';
		*off += k + 1 + v + 1;
		return true;
	}
	if (k + 1 + 8 + v + 1 > len - *off)
		return false;
	memcpy(buf + *off, key, k);
	buf[*off + k] = '\n';
	*off += k + 1;
	for (i = 0; i < 8; i++)
		buf[(*off)++] = (char)(unsigned char)((uint64_t)v >> (8 * i));
	memcpy(buf + *off, value, v);
	*off += v;
	buf[(*off)++] = '\n';
	return true;
}

static void
write_journal(int prio, const char *msgid, const char *msg,
    const struct log_field *f, size_t n)
{
	char buf[16384], num[16];
	size_t off = 0, i;
	bool ok;
	ssize_t w;

	snprintf(num, sizeof(num), "%d", prio);
	ok = journal_fd >= 0 &&
	    journal_field(buf, sizeof(buf), &off, "MESSAGE", msg) &&
	    journal_field(buf, sizeof(buf), &off, "PRIORITY", num) &&
	    journal_field(buf, sizeof(buf), &off, "SYSLOG_IDENTIFIER",
	    "tls-echod") &&
	    (msgid == NULL || journal_field(buf, sizeof(buf), &off,
	    "MESSAGE_ID", msgid));
	for (i = 0; ok && i < n && i < MAX_FIELDS; i++)
		if (f[i].value != NULL)
			ok = journal_field(buf, sizeof(buf), &off, f[i].key,
			    f[i].value);
	if (ok) {
		do
			w = send(journal_fd, buf, off, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		ok = w == (ssize_t)off;
	}
	if (!ok)
		write_stderr(prio, msg, f, n); /* journald gone: keep the line */
}

static void __attribute__((format(printf, 5, 0)))
vlog_event(int prio, const char *msgid, const struct log_field *f, size_t n,
    const char *fmt, va_list ap)
{
	char msg[MSG_MAX];
	int saved = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (target == LOG_TARGET_JOURNAL)
		write_journal(prio, msgid, msg, f, n);
	else if (target == LOG_TARGET_JSON)
		write_json(prio, msgid, msg, f, n);
	else
		write_stderr(prio, msg, f, n);
	errno = saved;
}

void
log_event(int prio, const char *msgid, const struct log_field *f, size_t n,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_event(prio, msgid, f, n, fmt, ap);
	va_end(ap);
}

void
log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_event(prio, NULL, NULL, 0, fmt, ap);
	va_end(ap);
}
