/*
 * tls-echo: a mutual-TLS client and certificate probe for tls-echod (and
 * any TLS server).  Connects with a client certificate, verifies the
 * server against --ca and the name, then either sends a message (or stdin)
 * and prints what comes back, prints the server's chain (--info), or checks
 * how long the server's certificates stay valid (--expect-days, Nagios
 * exit codes).  The command line and the output live here; every mbedTLS
 * call is in tlsclient.c, sockets come from ../net.c.
 *
 * Exit status (Nagios plugin convention): 0 OK, 1 WARNING (--expect-days:
 * a certificate expires within N days), 2 CRITICAL (cannot connect,
 * handshake or verification failed, certificate expired, server refused
 * us, timeout), 3 UNKNOWN (usage, unreadable local files).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../net.h"
#include "../version.h"
#include "tlsclient.h"

#define EXIT_OK       0
#define EXIT_WARNING  1
#define EXIT_CRITICAL 2
#define EXIT_UNKNOWN  3

#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"
#define DEFAULT_RETRIES 10
#define IO_BUF 16384

struct opts {
	const char *target;
	char host[256];
	char port[16];
	const char *cert, *key, *ca, *name;
	const char *message;
	bool info;
	bool expect;
	long expect_days;
	int timeout_ms;
	int retry_ms;      /* 0: no retries */
	long retries;
	int min_version, max_version;
};

static bool nagios; /* --expect-days: one "TLS-ECHO STATE - ..." line */

static const char *const state_names[] = {
	"OK", "WARNING", "CRITICAL", "UNKNOWN",
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: tls-echo [options] HOST:PORT      (IPv6: [ADDR]:PORT)\n"
	    "       tls-echo -V | -h\n"
	    "\n"
	    "Connect with a client certificate, verify the server, send a\n"
	    "message (or stdin), end our side with close_notify and print what\n"
	    "comes back until the server closes.  See tls-echo(1).\n"
	    "\n"
	    "  -c, --cert FILE       our certificate (chain), PEM or DER\n"
	    "  -k, --key FILE        its private key (default: the --cert file)\n"
	    "  -C, --ca FILE         CA certificates to verify the server\n"
	    "                        (default " DEFAULT_CA ")\n"
	    "  -n, --name NAME       name the server certificate must hold\n"
	    "                        (default: HOST)\n"
	    "  -m, --message TEXT    send TEXT instead of reading stdin\n"
	    "  -i, --info            print the server's chain, TLS version,\n"
	    "                        cipher suite and handshake time; sends\n"
	    "                        nothing unless --message is given\n"
	    "  -e, --expect-days N   check only: exit 0 if every certificate\n"
	    "                        of the server's chain is valid for N more\n"
	    "                        days, 1 if one expires sooner, 2 if one\n"
	    "                        expired or the check failed (one line of\n"
	    "                        Nagios plugin output)\n"
	    "  -t, --timeout SEC     limit for the connect, the handshake and\n"
	    "                        each wait for data (default 10)\n"
	    "  -r, --retry SEC       if the connection fails, try again after\n"
	    "                        SEC seconds (up to --retries times)\n"
	    "  -R, --reconnect       same as --retry 1\n"
	    "  -N, --retries N       attempts after the first (default %d)\n"
	    "      --tls1.2          TLS 1.2 only\n"
	    "      --tls1.3          TLS 1.3 only\n"
	    "  -V, --version         print the version and the mbedTLS in use\n"
	    "  -h, --help            print this help\n"
	    "\n"
	    "Exit status: 0 OK, 1 WARNING (--expect-days), 2 CRITICAL (connect,\n"
	    "TLS or verification failure, expired certificate, refused,\n"
	    "timeout), 3 UNKNOWN (usage, unreadable local files).\n",
	    DEFAULT_RETRIES);
}

/* Report a final problem: the Nagios line, or "tls-echo: ..." on stderr. */
static int
report(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
report(int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (nagios)
		printf("TLS-ECHO %s - %s\n", state_names[code], msg);
	else
		fprintf(stderr, "tls-echo: %s%s\n", code == EXIT_OK ? "" :
		    code == EXIT_WARNING ? "warning: " : "error: ", msg);
	return code;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
now_ms_precise(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Seconds (decimals allowed) in [min, max] to milliseconds; -1 if bad. */
static int
parse_seconds(const char *s, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
		return -1;
	return (int)(v * 1000.0 + 0.5);
}

static long
parse_long(const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	return v;
}

/* "host:port" or "[v6]:port" into o->host and o->port; 0 or -1. */
static int
parse_target(struct opts *o, const char *t)
{
	const char *colon, *host = t;
	size_t hlen;

	if (t[0] == '[') {
		const char *close = strchr(t, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		host = t + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(t, ':');
		if (colon == NULL || memchr(t, ':', (size_t)(colon - t)) != NULL)
			return -1; /* none, or an IPv6 address without [] */
		hlen = (size_t)(colon - t);
	}
	if (hlen == 0 || hlen >= sizeof(o->host) ||
	    parse_long(colon + 1, 1, 65535) < 0)
		return -1;
	memcpy(o->host, host, hlen);
	o->host[hlen] = '\0';
	snprintf(o->port, sizeof(o->port), "%s", colon + 1);
	return 0;
}

/* Wait for ${events} on ${fd} until ${deadline}: > 0 ready, 0 timeout. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t left;
	int n;

	for (;;) {
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n >= 0 || errno != EINTR)
			return n < 0 ? 1 : n; /* let the I/O call report */
	}
}

enum conn_fail { CF_NONE, CF_RESOLVE, CF_REFUSED, CF_OTHER };

/*
 * Connect to o->host:o->port within ${timeout_ms}, trying each address.
 * The socket (non-blocking), or -1 with ${*why} and a message.
 */
static int
tcp_connect(const struct opts *o, int timeout_ms, char *addr, size_t alen,
    enum conn_fail *why, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int64_t deadline = now_ms() + timeout_ms;
	int fd = -1, rc, e;

	rc = getaddrinfo(o->host, o->port, &hints, &res);
	if (rc != 0) {
		*why = CF_RESOLVE;
		snprintf(err, errlen, "cannot resolve %s: %s", o->host,
		    gai_strerror(rc));
		return -1;
	}
	*why = CF_OTHER;
	snprintf(err, errlen, "cannot connect to %s: no address", o->target);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		char msg[200];

		if (ai->ai_addrlen > sizeof(ss))
			continue;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		net_addr_str(ai->ai_addr, ai->ai_addrlen, addr, alen);
		fd = net_connect(&ss, ai->ai_addrlen, msg, sizeof(msg));
		if (fd < 0) {
			e = errno;
			goto next;
		}
		if (wait_fd(fd, POLLOUT, deadline) == 0) {
			e = ETIMEDOUT;
			snprintf(msg, sizeof(msg), "timed out after %.1f s",
			    timeout_ms / 1000.0);
		} else if ((e = net_connect_result(fd)) == 0)
			break;
		else
			snprintf(msg, sizeof(msg), "%s", strerror(e));
		close(fd);
		fd = -1;
next:
		*why = e == ECONNREFUSED ? CF_REFUSED : CF_OTHER;
		snprintf(err, errlen, "cannot connect to %s (%s): %s",
		    o->target, addr, msg);
		if (now_ms() >= deadline)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

/* --- reporting ------------------------------------------------------------- */

static void
fmt_date(int64_t t, char *buf, size_t len, bool with_time)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, with_time ? "%Y-%m-%d %H:%M:%S UTC" : "%Y-%m-%d",
	    &tm);
}

/* Whole days from now to ${t}, rounded towards zero. */
static long long
days_from_now(int64_t t)
{
	return (long long)((t - (int64_t)time(NULL)) / 86400);
}

static const char *
cert_role(const struct tlsc_info *in, size_t i)
{
	if (i == 0)
		return "server certificate";
	if (in->chain[i].from_ca_file)
		return "CA certificate";
	return "intermediate CA certificate";
}

static void
print_info(const struct opts *o, const struct tlsclient *t,
    const struct tlsc_info *in, const char *addr, double connect_ms,
    double hs_ms)
{
	char own[TLSC_NAME_MAX], date[40];
	size_t i;

	printf("server: %s (%s), name checked: %s\n", o->target, addr,
	    o->name);
	printf("TLS version: %s\n", in->version);
	printf("cipher suite: %s\n", in->cipher);
	printf("handshake: %.1f ms (TCP connect %.1f ms)\n", hs_ms,
	    connect_ms);
	printf("verification: %s%s\n", in->verify_flags == 0 ? "OK" :
	    "FAILED: ", in->verify_flags == 0 ? "" : in->verify_text);
	printf("server chain:\n");
	for (i = 0; i < in->nchain; i++) {
		const struct tlsc_cert *c = &in->chain[i];
		long long d = days_from_now(c->not_after);

		fmt_date(c->not_after, date, sizeof(date), true);
		printf("  %zu %s%s\n", i, c->subject, i == 0 ? "" :
		    c->from_ca_file ? " (CA from --ca)" : " (intermediate)");
		printf("    issuer: %s\n", c->issuer);
		if (c->not_after < (int64_t)time(NULL))
			printf("    not after: %s (expired %lld day(s) ago)\n",
			    date, -d);
		else
			printf("    not after: %s (%lld day(s) left)\n", date, d);
	}
	tlsclient_own_subject(t, own, sizeof(own));
	printf("our certificate: %s\n", own[0] ? own : "none");
	fflush(stdout);
}

/*
 * A finished handshake whose verification failed: say why, naming the
 * certificate.  Always CRITICAL.
 */
static int
report_unverified(const struct opts *o, const struct tlsc_info *in)
{
	const struct tlsc_cert *leaf = &in->chain[0];
	char date[40];
	size_t i;

	if (in->nchain == 0)
		return report(EXIT_CRITICAL, "server sent no certificate "
		    "(%s)", in->verify_text);
	if (in->verify_flags & TLSC_BAD_UNTRUSTED)
		return report(EXIT_CRITICAL, "server certificate %s is not "
		    "issued by a CA in %s (unknown CA; its issuer: %s)",
		    leaf->subject, o->ca, in->chain[in->nchain - 1].issuer);
	if (in->verify_flags & TLSC_BAD_NAME)
		return report(EXIT_CRITICAL, "server certificate %s does not "
		    "hold the name \"%s\" (name mismatch; use --name to "
		    "check another)", leaf->subject, o->name);
	for (i = 0; i < in->nchain; i++) {
		const struct tlsc_cert *c = &in->chain[i];

		if (c->flags & TLSC_BAD_EXPIRED) {
			fmt_date(c->not_after, date, sizeof(date), false);
			return report(EXIT_CRITICAL, "%s %s expired %lld "
			    "day(s) ago (%s)", cert_role(in, i), c->subject,
			    -days_from_now(c->not_after), date);
		}
		if (c->flags & TLSC_BAD_FUTURE) {
			fmt_date(c->not_before, date, sizeof(date), false);
			return report(EXIT_CRITICAL, "%s %s is not valid "
			    "before %s (check the clocks)", cert_role(in, i),
			    c->subject, date);
		}
	}
	return report(EXIT_CRITICAL, "server certificate %s does not verify: "
	    "%s", leaf->subject, in->verify_text);
}

/* --expect-days: the verdict on a verified chain. */
static int
report_expiry(const struct opts *o, const struct tlsc_info *in)
{
	int64_t now = (int64_t)time(NULL);
	size_t i, soon = 0;
	char date[40];

	for (i = 1; i < in->nchain; i++)
		if (in->chain[i].not_after < in->chain[soon].not_after)
			soon = i;
	fmt_date(in->chain[soon].not_after, date, sizeof(date), false);
	if (in->chain[soon].not_after - now < (int64_t)o->expect_days * 86400)
		return report(EXIT_WARNING, "%s %s expires in %lld day(s) "
		    "(%s), within %ld day(s)", cert_role(in, soon),
		    in->chain[soon].subject,
		    days_from_now(in->chain[soon].not_after), date,
		    o->expect_days);
	return report(EXIT_OK, "%s %s expires in %lld day(s) (%s)",
	    cert_role(in, soon), in->chain[soon].subject,
	    days_from_now(in->chain[soon].not_after), date);
}

/* The server ended the session with a failure: explain it. */
static int
report_failure(const struct opts *o, const struct tlsclient *t,
    bool handshake_done, bool sent_data)
{
	struct tlsc_failure f;
	const char *when = handshake_done ? "after the handshake" :
	    "during the handshake";

	tlsclient_failure(t, &f);
	switch (f.kind) {
	case TLSC_F_ALERT:
		switch (f.alert) {
		case 116: /* certificate_required */
			return report(EXIT_CRITICAL, "server requires a client "
			    "certificate (alert certificate_required): give "
			    "--cert and --key");
		case 40: /* handshake_failure */
			if (o->cert == NULL)
				return report(EXIT_CRITICAL, "server requires "
				    "a client certificate (alert "
				    "handshake_failure; none given: use --cert "
				    "and --key)");
			return report(EXIT_CRITICAL, "server refused the "
			    "handshake: alert handshake_failure (no common "
			    "cipher suite or group, or it did not accept our "
			    "certificate)");
		case 42: case 43: case 44: case 45: case 46: case 48: case 49:
			return report(EXIT_CRITICAL, "server refused our "
			    "certificate: alert %s (%s)", f.alert_name,
			    f.alert == 44 ? "revoked" :
			    f.alert == 45 ? "our certificate expired or is not "
			    "yet valid" :
			    f.alert == 48 ? "not issued by a CA the server "
			    "trusts, or an intermediate is missing from --cert" :
			    f.alert == 49 ? "valid, but not allowed in by the "
			    "server's allow-list" :
			    "the server's log says why");
		case 70:
			return report(EXIT_CRITICAL, "server refused the TLS "
			    "version we offered (alert protocol_version)");
		default:
			return report(EXIT_CRITICAL, "server ended the "
			    "connection %s: alert %s (%d)", when, f.alert_name,
			    f.alert);
		}
	case TLSC_F_BAD_MAC:
		/*
		 * mbedTLS 3.6 servers (tls-echod among them) encrypt a TLS
		 * 1.3 refusal alert with the wrong keys (Mbed-TLS/mbedtls
		 * #10877): the client sees a record that does not decrypt.
		 */
		if (handshake_done)
			return report(EXIT_CRITICAL, "server ended the "
			    "connection %s with a record that does not "
			    "decrypt: that is how a TLS 1.3 mbedTLS server "
			    "such as tls-echod refuses %s (its log says why; "
			    "--tls1.2 shows the alert)", when,
			    o->cert == NULL ? "a client without a "
			    "certificate: the server requires a client "
			    "certificate, use --cert and --key" :
			    "our certificate");
		return report(EXIT_CRITICAL, "bad record MAC %s", when);
	case TLSC_F_CLOSED:
	case TLSC_F_RESET:
		if (handshake_done && !sent_data && o->cert == NULL)
			return report(EXIT_CRITICAL, "server closed the "
			    "connection right after the handshake: it "
			    "probably requires a client certificate (use "
			    "--cert and --key)");
		return report(EXIT_CRITICAL, "server %s the connection %s%s",
		    f.kind == TLSC_F_RESET ? "reset" : "closed", when,
		    handshake_done ? " without close_notify (the reply may "
		    "be cut short)" : "");
	case TLSC_F_VERSION:
		return report(EXIT_CRITICAL, "no TLS version in common with "
		    "the server (%s)", f.text);
	case TLSC_F_HANDSHAKE:
		return report(EXIT_CRITICAL, "handshake failed: no cipher "
		    "suite, group or signature algorithm in common (%s)",
		    f.text);
	case TLSC_F_NONE:
	case TLSC_F_OTHER:
	default:
		return report(EXIT_CRITICAL, "TLS %s: %s", when, f.text);
	}
}

/* --- one session ----------------------------------------------------------- */

/* Run a non-blocking TLS step to completion (or timeout): 0, TLSC_FAIL,
 * or 1 on timeout. */
static int
drive(int fd, int (*step)(struct tlsclient *), struct tlsclient *t,
    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int r;

	for (;;) {
		r = step(t);
		if (r == 0 || r == TLSC_FAIL)
			return r;
		if (wait_fd(fd, r == TLSC_WANT_READ ? POLLIN : POLLOUT,
		    deadline) == 0)
			return 1;
	}
}

/*
 * End a session we send nothing more on: close_notify, then read (and
 * drop) until the server's close_notify, briefly.  Closing with unread
 * input (a TLS 1.3 ticket) would make the kernel reset the connection and
 * the server log an error instead of a clean close.
 */
static void
finish_quietly(struct tlsclient *t, int fd)
{
	static char sink[IO_BUF];
	int64_t deadline = now_ms() + 2000;
	ssize_t n;

	if (drive(fd, tlsclient_close_notify, t, 1000) != 0)
		return;
	for (;;) {
		n = tlsclient_read(t, sink, sizeof(sink));
		if (n == 0 || n == TLSC_FAIL)
			return;
		if (n < 0 && wait_fd(fd, n == TLSC_WANT_READ ? POLLIN : POLLOUT,
		    deadline) == 0)
			return;
	}
}

static int
write_all_stdout(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Send the message (or stdin), then close_notify, and copy what comes back
 * to stdout until the server's close_notify.  Reads and writes interleave
 * so that an echo larger than the buffers on the way cannot deadlock.
 */
static int
exchange(const struct opts *o, struct tlsclient *t, int fd)
{
	static char out[IO_BUF], in[IO_BUF];
	size_t olen = 0, ooff = 0, msg_off = 0;
	size_t msg_len = o->message ? strlen(o->message) : 0;
	bool src_eof = false, notified = false, sent = false;
	int64_t deadline = now_ms() + o->timeout_ms;

	for (;;) {
		struct pollfd p[2];
		bool want_in = true, want_out = false;
		nfds_t np = 1;
		ssize_t n;
		int64_t left;

		/* Refill the outgoing buffer. */
		if (ooff == olen && !src_eof) {
			ooff = olen = 0;
			if (o->message != NULL) {
				olen = msg_len - msg_off;
				if (olen > sizeof(out))
					olen = sizeof(out);
				memcpy(out, o->message + msg_off, olen);
				msg_off += olen;
				src_eof = msg_off == msg_len;
			}
		}
		/* Write what we have. */
		while (ooff < olen) {
			n = tlsclient_write(t, out + ooff, olen - ooff);
			if (n == TLSC_FAIL)
				return report_failure(o, t, true, sent);
			if (n < 0) {
				want_out = n == TLSC_WANT_WRITE;
				want_in |= n == TLSC_WANT_READ;
				break;
			}
			ooff += (size_t)n;
			sent = true;
			deadline = now_ms() + o->timeout_ms;
		}
		if (ooff == olen && src_eof && !notified) {
			int r = tlsclient_close_notify(t);

			if (r == TLSC_FAIL)
				return report_failure(o, t, true, sent);
			if (r == 0)
				notified = true;
			else
				want_out = r == TLSC_WANT_WRITE;
		}
		/* Read what the server sends. */
		do {
			n = tlsclient_read(t, in, sizeof(in));
			if (n > 0) {
				if (write_all_stdout(in, (size_t)n) != 0)
					return report(EXIT_UNKNOWN, "cannot "
					    "write to stdout: %s",
					    strerror(errno));
				deadline = now_ms() + o->timeout_ms;
			} else if (n == 0) {
				if (!notified)
					return report(EXIT_CRITICAL, "server "
					    "closed the connection before we "
					    "finished sending");
				return EXIT_OK;
			} else if (n == TLSC_FAIL)
				return report_failure(o, t, true, sent);
			else if (n == TLSC_WANT_WRITE)
				want_out = true;
		} while (n > 0 && tlsclient_pending(t));

		p[0].fd = fd;
		p[0].events = (short)((want_in ? POLLIN : 0) |
		    (want_out ? POLLOUT : 0));
		p[0].revents = 0;
		/* Read stdin only when the last chunk has gone out. */
		if (o->message == NULL && !src_eof && ooff == olen) {
			p[1].fd = STDIN_FILENO;
			p[1].events = POLLIN;
			p[1].revents = 0;
			np = 2;
		}
		left = deadline - now_ms();
		if (left <= 0)
			return report(EXIT_CRITICAL, "timed out after %.1f s "
			    "waiting for the server%s", o->timeout_ms / 1000.0,
			    notified ? " to finish and close" : "");
		if (poll(p, np, left > INT_MAX ? INT_MAX : (int)left) < 0 &&
		    errno != EINTR)
			return report(EXIT_UNKNOWN, "poll: %s", strerror(errno));
		if (np == 2 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			n = read(STDIN_FILENO, out, sizeof(out));
			if (n < 0 && errno != EINTR && errno != EAGAIN)
				return report(EXIT_UNKNOWN, "cannot read "
				    "stdin: %s", strerror(errno));
			if (n == 0)
				src_eof = true;
			else if (n > 0) {
				ooff = 0;
				olen = (size_t)n;
			}
			deadline = now_ms() + o->timeout_ms;
		}
	}
}

/*
 * Connect (with retries), handshake, and do what the options ask.  The
 * exit status.
 */
static int
run(const struct opts *o, struct tlsclient *t)
{
	char addr[NET_ADDRSTRLEN] = "", err[512];
	struct tlsc_info info;
	enum conn_fail why;
	double t0, t1, t2;
	long attempt = 0;
	int fd, r, code;

	for (;;) {
		t0 = now_ms_precise();
		fd = tcp_connect(o, o->timeout_ms, addr, sizeof(addr), &why,
		    err, sizeof(err));
		if (fd >= 0)
			break;
		if (o->retry_ms == 0 || attempt >= o->retries ||
		    why == CF_RESOLVE)
			return report(EXIT_CRITICAL, "%s%s", err,
			    attempt > 0 ? " (after retries)" : "");
		attempt++;
		if (!nagios)
			fprintf(stderr, "tls-echo: %s; retry %ld of %ld in "
			    "%.1f s\n", err, attempt, o->retries,
			    o->retry_ms / 1000.0);
		(void)poll(NULL, 0, o->retry_ms);
	}
	t1 = now_ms_precise();
	if (tlsclient_start(t, fd, err, sizeof(err)) != 0) {
		code = report(EXIT_UNKNOWN, "%s", err);
		goto out;
	}
	r = drive(fd, tlsclient_handshake, t, o->timeout_ms);
	if (r == 1) {
		code = report(EXIT_CRITICAL, "TLS handshake with %s timed out "
		    "after %.1f s", o->target, o->timeout_ms / 1000.0);
		goto out;
	}
	if (r != 0) {
		struct tlsc_failure f;

		tlsclient_failure(t, &f);
		if (f.kind != TLSC_F_UNVERIFIED) {
			code = report_failure(o, t, false, false);
			goto out;
		}
		/* The handshake stopped at the server's certificate: nothing
		 * of ours went out; say what is wrong with it. */
		t2 = now_ms_precise();
		tlsclient_info(t, &info);
		if (o->info)
			print_info(o, t, &info, addr, t1 - t0, t2 - t1);
		code = report_unverified(o, &info);
		goto out;
	}
	t2 = now_ms_precise();
	tlsclient_info(t, &info);
	if (o->info)
		print_info(o, t, &info, addr, t1 - t0, t2 - t1);
	if (info.verify_flags != 0) {
		/* Never send anything to a server we could not verify. */
		finish_quietly(t, fd);
		code = report_unverified(o, &info);
		goto out;
	}
	if (o->expect) {
		finish_quietly(t, fd);
		code = report_expiry(o, &info);
		goto out;
	}
	if (o->info && o->message == NULL) {
		finish_quietly(t, fd);
		code = EXIT_OK;
		goto out;
	}
	code = exchange(o, t, fd);
out:
	close(fd);
	return code;
}

/* An option whose value is the next argument (for the Nagios-mode scan). */
static bool
takes_value(const char *a)
{
	static const char *const opts[] = {
		"-c", "-k", "-C", "-n", "-m", "-t", "-r", "-N", "--cert",
		"--key", "--ca", "--name", "--message", "--timeout", "--retry",
		"--retries", NULL,
	};
	size_t i;

	for (i = 0; opts[i] != NULL; i++)
		if (strcmp(a, opts[i]) == 0)
			return true;
	return false;
}

int
main(int argc, char **argv)
{
	enum { OPT_TLS12 = 256, OPT_TLS13 };
	static const struct option longopts[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'C' },
		{ "name", required_argument, NULL, 'n' },
		{ "message", required_argument, NULL, 'm' },
		{ "info", no_argument, NULL, 'i' },
		{ "expect-days", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ "retry", required_argument, NULL, 'r' },
		{ "reconnect", no_argument, NULL, 'R' },
		{ "retries", required_argument, NULL, 'N' },
		{ "tls1.2", no_argument, NULL, OPT_TLS12 },
		{ "tls1.3", no_argument, NULL, OPT_TLS13 },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = {
		.ca = DEFAULT_CA, .timeout_ms = 10000,
		.retries = DEFAULT_RETRIES,
	};
	struct tlsc_opts to;
	struct tlsclient *t;
	char err[1024];
	int opt, code;

	/* Nagios mode decides how usage errors look: find it first. */
	for (opt = 1; opt < argc; opt++) {
		const char *a = argv[opt];

		if (strcmp(a, "--") == 0)
			break;
		if (strncmp(a, "--expect-days", 13) == 0 ||
		    strncmp(a, "-e", 2) == 0)
			nagios = true;
		else if (takes_value(a))
			opt++; /* its value, say a --message starting "-e" */
	}

	while ((opt = getopt_long(argc, argv, "c:k:C:n:m:ie:t:r:RN:Vh",
	    longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'C': o.ca = optarg; break;
		case 'n': o.name = optarg; break;
		case 'm': o.message = optarg; break;
		case 'i': o.info = true; break;
		case 'e':
			o.expect = true;
			if ((o.expect_days = parse_long(optarg, 0, 100000)) < 0)
				return report(EXIT_UNKNOWN, "--expect-days: "
				    "\"%s\" is not a number of days (0-100000)",
				    optarg);
			break;
		case 't':
			if ((o.timeout_ms = parse_seconds(optarg, 0.001,
			    86400)) < 0)
				return report(EXIT_UNKNOWN, "--timeout: \"%s\" "
				    "is not a number of seconds (up to 86400)",
				    optarg);
			break;
		case 'r':
			if ((o.retry_ms = parse_seconds(optarg, 0.001,
			    3600)) < 0)
				return report(EXIT_UNKNOWN, "--retry: \"%s\" "
				    "is not a number of seconds (up to 3600)",
				    optarg);
			break;
		case 'R':
			if (o.retry_ms == 0)
				o.retry_ms = 1000;
			break;
		case 'N':
			if ((o.retries = parse_long(optarg, 0, 100000)) < 0)
				return report(EXIT_UNKNOWN, "--retries: \"%s\" "
				    "is not a count (0-100000)", optarg);
			break;
		case OPT_TLS12: o.min_version = o.max_version = 12; break;
		case OPT_TLS13: o.min_version = o.max_version = 13; break;
		case 'V':
			printf("tls-echo %s\nmbedTLS %s (%s)\n",
			    TLS_ECHOD_VERSION, tlsclient_library_version(),
			    TLS_ECHOD_MBEDTLS_ORIGIN);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			if (!nagios)
				usage(stderr);
			return report(EXIT_UNKNOWN, "bad usage (see -h)");
		}
	}
	if (optind != argc - 1) {
		if (!nagios)
			usage(stderr);
		return report(EXIT_UNKNOWN, optind == argc ? "missing "
		    "HOST:PORT" : "more than one HOST:PORT");
	}
	o.target = argv[optind];
	if (parse_target(&o, o.target) != 0)
		return report(EXIT_UNKNOWN, "\"%s\": expected HOST:PORT or "
		    "[IPV6]:PORT with a port 1-65535", o.target);
	if (o.key != NULL && o.cert == NULL)
		return report(EXIT_UNKNOWN, "--key needs --cert");
	if (o.key == NULL)
		o.key = o.cert;
	if (o.name == NULL)
		o.name = o.host;
	if (o.expect && o.message != NULL)
		return report(EXIT_UNKNOWN, "--expect-days only checks: it "
		    "sends nothing, so --message makes no sense with it");

	memset(&to, 0, sizeof(to));
	to.cert = o.cert;
	to.key = o.key;
	to.ca = o.ca;
	to.server_name = o.name;
	to.min_version = o.min_version;
	to.max_version = o.max_version;
	if ((t = tlsclient_new(&to, err, sizeof(err))) == NULL)
		return report(EXIT_UNKNOWN, "%s", err);
	code = run(&o, t);
	tlsclient_free(t);
	return code;
}
