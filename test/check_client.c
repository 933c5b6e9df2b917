/*
 * check_client: the tls-echo client tool against the real tls-echod on
 * loopback (test/harness.c) with the test PKI.
 *
 * tls-echo is found next to TLS_ECHOD_BIN (or at TLS_ECHO_BIN).  Each test
 * asserts the exact exit status (Nagios codes: 0 OK, 1 WARNING, 2 CRITICAL,
 * 3 UNKNOWN) and a substring of what the tool printed.  tls-echod refuses
 * to start with an expired server certificate, so the expired-server test
 * uses a one-connection OpenSSL server thread instead (which also proves
 * the tool sends no data to a server it could not verify).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"

#define RUN_MS 20000

static char tool[PATH_MAX];

static void
fx_setup(void)
{
	const char *b = getenv("TLS_ECHO_BIN");

	h_setup();
	if (b != NULL && b[0] != '\0')
		snprintf(tool, sizeof(tool), "%s", b);
	else {
		const char *d = getenv("TLS_ECHOD_BIN");
		const char *slash = strrchr(d, '/');

		snprintf(tool, sizeof(tool), "%.*s/tls-echo",
		    (int)(slash - d), d);
	}
	ck_assert_msg(access(tool, X_OK) == 0, "%s: not executable", tool);
}

static void
fx_teardown(void)
{
	h_teardown();
}

static void
daemon_up(struct h_daemon *d, const char *label, const char *config)
{
	struct h_daemon_opts o = {
		.label = label,
		.config = config,
		.activation = config == NULL,
	};

	ck_assert_msg(h_daemon_start(d, &o) == 0, "daemon did not start: %s",
	    d->err);
}

struct run {
	int status;
	char out[16384]; /* stdout and stderr together */
};

/* Run tls-echo with ${args} (NULL-ended) against 127.0.0.1:${port}. */
static void
run_tool(struct run *r, const char *label, int port, ...)
{
	const char *argv[40];
	char target[32], log[PATH_MAX], err[512];
	size_t n = 0;
	va_list ap;
	const char *a;
	int fd;
	ssize_t got;

	argv[n++] = tool;
	va_start(ap, port);
	while ((a = va_arg(ap, const char *)) != NULL && n < 37)
		argv[n++] = a;
	va_end(ap);
	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	argv[n++] = target;
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s", h_tmp(label));
	(void)unlink(log);
	r->status = h_run(argv, log, RUN_MS, err, sizeof(err));
	ck_assert_msg(r->status >= 0, "%s: %s", label, err);
	memset(r->out, 0, sizeof(r->out));
	fd = open(log, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "%s: %s", log, strerror(errno));
	got = read(fd, r->out, sizeof(r->out) - 1);
	close(fd);
	ck_assert_int_ge(got, 0);
}

#define EXPECT(r, code, needle) do { \
	ck_assert_msg((r)->status == (code) && strstr((r)->out, (needle)), \
	    "expected exit %d with \"%s\"; got exit %d with:\n%s", (code), \
	    (needle), (r)->status, (r)->out); \
} while (0)

#define CERT "--cert", h_pki("client.crt"), "--key", h_pki("client.key")
#define CA "--ca", h_pki("ca.crt")

/* --- round trips ------------------------------------------------------------ */

START_TEST(message_comes_back)
{
	struct h_daemon d;
	struct run r;

	daemon_up(&d, "msg", NULL);
	run_tool(&r, "msg.out", d.port, CERT, CA, "--name", "localhost",
	    "--message", "hello, tls-echod\n", NULL);
	ck_assert_msg(r.status == 0 && strcmp(r.out, "hello, tls-echod\n") == 0,
	    "exit %d, output:\n%s", r.status, r.out);
	run_tool(&r, "msg12.out", d.port, CERT, CA, "--tls1.2", "-m", "v12",
	    NULL);
	ck_assert_msg(r.status == 0 && strcmp(r.out, "v12") == 0,
	    "TLS 1.2: exit %d, output:\n%s", r.status, r.out);
	ck_assert_int_ge(h_log_wait_count(&d, 2, 5000,
	    "CLOSE_REASON=client-closed", NULL), 2);
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

/* 256 KiB through stdin: more than the daemon and the sockets buffer, so
 * the tool must read the echo while it still writes. */
START_TEST(stdin_comes_back_whole)
{
	enum { LEN = 256 * 1024 };
	static unsigned char data[LEN], back[LEN + 1];
	struct h_daemon d;
	char target[32];
	const char *argv[12];
	size_t off = 0;
	int to, from, st;
	pid_t pid;
	int64_t end;

	daemon_up(&d, "stdin", NULL);
	h_fill_pattern(data, LEN, 7);
	snprintf(target, sizeof(target), "127.0.0.1:%d", d.port);
	argv[0] = tool;
	argv[1] = "--cert";
	argv[2] = h_pki("client.crt");
	argv[3] = "--key";
	argv[4] = h_pki("client.key");
	argv[5] = "--ca";
	argv[6] = h_pki("ca.crt");
	argv[7] = target;
	argv[8] = NULL;
	pid = h_spawn(argv, &to, &from, h_tmp("stdin.err"));
	ck_assert_int_gt(pid, 0);
	/* Feed and drain at once: a pipe holds 64 KiB. */
	end = h_now_ms() + RUN_MS;
	{
		size_t woff = 0;

		while ((woff < LEN || to >= 0) && h_now_ms() < end) {
			ssize_t n;

			if (woff < LEN) {
				n = write(to, data + woff, LEN - woff);
				if (n > 0)
					woff += (size_t)n;
			}
			if (woff == LEN && to >= 0) {
				close(to);
				to = -1;
			}
			n = read(from, back + off, LEN + 1 - off);
			if (n > 0)
				off += (size_t)n;
			else
				usleep(1000);
		}
	}
	off += h_fd_read_until(from, (char *)back + off, LEN + 1 - off, NULL,
	    RUN_MS);
	close(from);
	st = h_wait_pid(pid, RUN_MS);
	ck_assert_msg(st == 0, "tls-echo exit %d", st);
	ck_assert_msg(off == LEN && memcmp(back, data, LEN) == 0,
	    "got %zu of %d bytes back (or different ones)", off, LEN);
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

/* --- --info ----------------------------------------------------------------- */

START_TEST(info_shows_chain_version_and_us)
{
	struct h_daemon d;
	struct run r;

	daemon_up(&d, "info", NULL);
	run_tool(&r, "info13.out", d.port, CERT, CA, "--info", "--tls1.3",
	    NULL);
	EXPECT(&r, 0, "TLS version: TLSv1.3\n");
	EXPECT(&r, 0, "cipher suite: TLS_");
	EXPECT(&r, 0, "handshake: ");
	EXPECT(&r, 0, "verification: OK\n");
	EXPECT(&r, 0, "server chain:\n  0 CN=localhost\n"
	    "    issuer: O=tls-echod tests, CN=tls-echod test CA\n"
	    "    not after: ");
	EXPECT(&r, 0, "  1 O=tls-echod tests, CN=tls-echod test CA "
	    "(CA from --ca)\n");
	EXPECT(&r, 0, "day(s) left)\n");
	EXPECT(&r, 0, "our certificate: OU=ops, CN=test-client\n");
	run_tool(&r, "info12.out", d.port, CERT, CA, "--info", "--tls1.2",
	    NULL);
	EXPECT(&r, 0, "TLS version: TLSv1.2\n");
	EXPECT(&r, 0, "cipher suite: TLS_ECDHE_ECDSA_WITH_");
	/* Nothing was sent: the daemon logs a clean close with 0 bytes. */
	ck_assert_int_ge(h_log_wait_count(&d, 2, 5000,
	    "CLOSE_REASON=client-closed", "BYTES_IN=0 ", NULL), 2);
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

/* --- --expect-days ---------------------------------------------------------- */

START_TEST(expect_days_ok_and_warning)
{
	struct h_daemon d;
	struct run r;

	/* server.crt is valid for 30 days from the PKI's generation. */
	daemon_up(&d, "days", NULL);
	run_tool(&r, "days7.out", d.port, CERT, CA, "--expect-days", "7",
	    NULL);
	EXPECT(&r, 0, "TLS-ECHO OK - server certificate CN=localhost expires "
	    "in 29 day(s) (");
	run_tool(&r, "days29.out", d.port, CERT, CA, "--expect-days", "29",
	    NULL);
	EXPECT(&r, 0, "TLS-ECHO OK - ");
	run_tool(&r, "days31.out", d.port, CERT, CA, "--expect-days", "31",
	    NULL);
	EXPECT(&r, 1, "TLS-ECHO WARNING - server certificate CN=localhost "
	    "expires in 29 day(s) (");
	EXPECT(&r, 1, "within 31 day(s)");
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

START_TEST(expect_days_soon_server_cert)
{
	struct h_daemon d;
	struct run r;

	daemon_up(&d, "soon", "log = \"stderr\"; workers = 1;\n"
	    "listeners = ({ name = \"echo\"; listen = \"127.0.0.1:@PORT@\";\n"
	    "  tls = { cert = \"@PKI@/server-soon.crt\";\n"
	    "    key = \"@PKI@/server-soon.key\"; ca = \"@PKI@/ca.crt\"; }; });\n");
	run_tool(&r, "soon30.out", d.port, CERT, CA, "-e", "30", NULL);
	EXPECT(&r, 1, "TLS-ECHO WARNING - server certificate CN=localhost "
	    "expires in 4 day(s) (");
	run_tool(&r, "soon4.out", d.port, CERT, CA, "-e", "4", NULL);
	EXPECT(&r, 0, "TLS-ECHO OK - server certificate CN=localhost expires "
	    "in 4 day(s)");
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

/* A one-connection OpenSSL server presenting server-expired.crt. */
struct expired_srv {
	int lfd, port;
	long app_bytes;  /* application bytes the client sent */
	int handshake_ok;
};

static void *
expired_server(void *arg)
{
	struct expired_srv *s = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	struct timeval tv = { .tv_sec = 10 };
	SSL *ssl = NULL;
	char buf[4096];
	int fd, n;

	s->app_bytes = -1;
	if (ctx == NULL ||
	    SSL_CTX_use_certificate_file(ctx, h_pki("server-expired.crt"),
	    SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, h_pki("server-expired.key"),
	    SSL_FILETYPE_PEM) != 1)
		goto out;
	if ((fd = accept(s->lfd, NULL, NULL)) < 0)
		goto out;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) == 1) {
		s->handshake_ok = 1;
		s->app_bytes = 0;
		while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0)
			s->app_bytes += n;
		(void)SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	close(fd);
out:
	SSL_CTX_free(ctx);
	return NULL;
}

static void
expired_start(struct expired_srv *s, pthread_t *th)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 15 };
	socklen_t alen = sizeof(a);

	memset(s, 0, sizeof(*s));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	/* accept() gives up too if the tool never connects. */
	(void)setsockopt(s->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(s->lfd, 4), 0);
	ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
	s->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(th, NULL, expired_server, s), 0);
}

START_TEST(expired_server_is_critical_and_gets_no_data)
{
	struct expired_srv s;
	pthread_t th;
	struct run r;

	expired_start(&s, &th);
	run_tool(&r, "expired.out", s.port, CERT, CA, "--name", "localhost",
	    "--expect-days", "7", NULL);
	pthread_join(th, NULL);
	close(s.lfd);
	EXPECT(&r, 2, "TLS-ECHO CRITICAL - server certificate CN=localhost "
	    "expired ");
	EXPECT(&r, 2, " day(s) ago (2021-01-01)");
	/* It read the date from the certificate without finishing the
	 * handshake: our certificate never went to that server. */
	ck_assert_msg(!s.handshake_ok, "the tool finished a handshake with a "
	    "server whose certificate expired (it sent its own certificate "
	    "to a server it could not verify)");

	/* A message is never sent to a server that did not verify. */
	expired_start(&s, &th);
	run_tool(&r, "expired-msg.out", s.port, CERT, CA, "--name",
	    "localhost", "-m", "secret", NULL);
	pthread_join(th, NULL);
	close(s.lfd);
	EXPECT(&r, 2, "tls-echo: error: server certificate CN=localhost "
	    "expired ");
	ck_assert_msg(strstr(r.out, "secret") == NULL, "%s", r.out);
	/* -1: the handshake never completed, so not a byte could come. */
	ck_assert_msg(s.app_bytes <= 0 && !s.handshake_ok, "the server "
	    "received %ld application byte(s)", s.app_bytes);
}
END_TEST

START_TEST(unknown_ca_is_critical)
{
	struct h_daemon d;
	struct run r;

	daemon_up(&d, "unknownca", NULL);
	run_tool(&r, "unknownca.out", d.port, CERT, "--ca",
	    h_pki("other-ca.crt"), "--expect-days", "7", NULL);
	EXPECT(&r, 2, "TLS-ECHO CRITICAL - server certificate CN=localhost is "
	    "not issued by a CA in ");
	EXPECT(&r, 2, "(unknown CA;");
	run_tool(&r, "unknownca-msg.out", d.port, CERT, "--ca",
	    h_pki("other-ca.crt"), "-m", "secret", NULL);
	EXPECT(&r, 2, "tls-echo: error: server certificate CN=localhost is "
	    "not issued by a CA in ");
	ck_assert_msg(h_log_count(&d, "BYTES_IN=6 ", NULL) == 0,
	    "data reached an unverified server");
	/*
	 * Not even our certificate went out: the daemon refused both tries
	 * (the client's alert ended them), it never admitted one, and no
	 * log line names the client.
	 */
	ck_assert_int_ge(h_log_wait_count(&d, 2, 5000,
	    "handshake refused: ", NULL), 2);
	ck_assert_msg(h_log_count(&d, "connection closed", NULL) == 0,
	    "a client that could not verify the server was admitted");
	ck_assert_msg(h_log_count(&d, "CLIENT_SUBJECT=", NULL) == 0,
	    "the client sent its certificate to a server it did not verify");
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

START_TEST(name_mismatch_is_critical)
{
	struct h_daemon d;
	struct run r;

	daemon_up(&d, "name", NULL);
	run_tool(&r, "name.out", d.port, CERT, CA, "--name", "db.example",
	    "-m", "x", NULL);
	EXPECT(&r, 2, "does not hold the name \"db.example\" (name mismatch");
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

START_TEST(refused_connection_is_critical)
{
	struct run r;
	int port = h_free_port();

	run_tool(&r, "refused.out", port, CERT, CA, "--expect-days", "7",
	    NULL);
	EXPECT(&r, 2, "TLS-ECHO CRITICAL - cannot connect to 127.0.0.1:");
	EXPECT(&r, 2, "Connection refused");
	run_tool(&r, "refused-msg.out", port, CERT, CA, "-m", "x", NULL);
	EXPECT(&r, 2, "tls-echo: error: cannot connect to ");
}
END_TEST

START_TEST(bad_usage_is_unknown)
{
	struct run r;

	run_tool(&r, "usage1.out", 1, "--expect-days", "soon", NULL);
	EXPECT(&r, 3, "TLS-ECHO UNKNOWN - --expect-days: \"soon\"");
	run_tool(&r, "usage2.out", 1, "--no-such-option", NULL);
	EXPECT(&r, 3, "usage: tls-echo");
	run_tool(&r, "usage3.out", 1, "--cert", h_pki("no-such.crt"), CA,
	    NULL);
	EXPECT(&r, 3, "--cert ");
	run_tool(&r, "usage4.out", 1, "--cert", h_pki("client.crt"),
	    "--key", h_pki("mismatch.key"), CA, NULL);
	EXPECT(&r, 3, "does not match the certificate");
}
END_TEST

/* --- refusals by the server -------------------------------------------------- */

START_TEST(no_client_cert_is_named)
{
	struct h_daemon d;
	struct run r;

	daemon_up(&d, "nocert", NULL);
	run_tool(&r, "nocert12.out", d.port, CA, "--tls1.2", "-m", "x", NULL);
	EXPECT(&r, 2, "server requires a client certificate");
	run_tool(&r, "nocert13.out", d.port, CA, "--tls1.3", "-m", "x", NULL);
	EXPECT(&r, 2, "requires a client certificate");
	ck_assert_int_ge(h_log_wait_count(&d, 2, 5000,
	    "CLOSE_REASON=no-client-cert", NULL), 2);
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

START_TEST(refused_client_cert_names_the_alert)
{
	struct h_daemon d;
	struct run r;

	daemon_up(&d, "refusedcert", NULL);
	run_tool(&r, "expiredcert.out", d.port, "--cert",
	    h_pki("client-expired.crt"), "--key", h_pki("client-expired.key"),
	    CA, "--tls1.2", "-m", "x", NULL);
	EXPECT(&r, 2, "server refused our certificate: alert "
	    "certificate_expired");
	run_tool(&r, "othercert.out", d.port, "--cert",
	    h_pki("client-other.crt"), "--key", h_pki("client-other.key"),
	    CA, "--tls1.2", "-m", "x", NULL);
	EXPECT(&r, 2, "server refused our certificate: alert ");
	run_tool(&r, "expiredcert13.out", d.port, "--cert",
	    h_pki("client-expired.crt"), "--key", h_pki("client-expired.key"),
	    CA, "--tls1.3", "-m", "x", NULL);
	EXPECT(&r, 2, "refuses our certificate");
	ck_assert_int_ge(h_log_wait_count(&d, 2, 5000,
	    "CLOSE_REASON=cert-expired", NULL), 2);
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

/* --- --retry ---------------------------------------------------------------- */

START_TEST(retry_waits_for_the_daemon)
{
	struct h_daemon d;
	int port = h_free_port(), to, from, st;
	char target[32], config[1024], out[256];
	const char *argv[16];
	pid_t pid;
	size_t n;

	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	argv[0] = tool;
	argv[1] = "--cert";
	argv[2] = h_pki("client.crt");
	argv[3] = "--key";
	argv[4] = h_pki("client.key");
	argv[5] = "--ca";
	argv[6] = h_pki("ca.crt");
	argv[7] = "--retry";
	argv[8] = "0.2";
	argv[9] = "--retries";
	argv[10] = "100";
	argv[11] = "-m";
	argv[12] = "up at last";
	argv[13] = target;
	argv[14] = NULL;
	pid = h_spawn(argv, &to, &from, h_tmp("retry.err"));
	ck_assert_int_gt(pid, 0);
	close(to);
	usleep(700 * 1000);
	{
		char state = '?';

		ck_assert_msg(h_proc_ppid(pid, &state) == getpid() &&
		    state != 'Z', "tls-echo gave up before the daemon started");
	}

	snprintf(config, sizeof(config), "log = \"stderr\"; workers = 1;\n"
	    "listeners = ({ name = \"echo\"; listen = \"127.0.0.1:%d\";\n"
	    "  tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";\n"
	    "    ca = \"@PKI@/ca.crt\"; }; });\n", port);
	daemon_up(&d, "retry", config);
	n = h_fd_read_until(from, out, sizeof(out), NULL, RUN_MS);
	close(from);
	st = h_wait_pid(pid, RUN_MS);
	ck_assert_msg(st == 0 && n == 10 && strcmp(out, "up at last") == 0,
	    "exit %d, %zu byte(s) back: \"%s\"", st, n, out);
	ck_assert_int_eq(h_daemon_stop(&d, 10000), 0);
}
END_TEST

static Suite *
client_suite(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("tls-echo");

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, message_comes_back);
	tcase_add_test(tc, stdin_comes_back_whole);
	tcase_add_test(tc, info_shows_chain_version_and_us);
	tcase_add_test(tc, expect_days_ok_and_warning);
	tcase_add_test(tc, expect_days_soon_server_cert);
	tcase_add_test(tc, expired_server_is_critical_and_gets_no_data);
	tcase_add_test(tc, unknown_ca_is_critical);
	tcase_add_test(tc, name_mismatch_is_critical);
	tcase_add_test(tc, refused_connection_is_critical);
	tcase_add_test(tc, bad_usage_is_unknown);
	tcase_add_test(tc, no_client_cert_is_named);
	tcase_add_test(tc, refused_client_cert_names_the_alert);
	tcase_add_test(tc, retry_waits_for_the_daemon);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_client: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(client_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
