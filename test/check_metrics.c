/*
 * check_metrics: the master's /metrics, /healthz and /readyz against the
 * real daemon.
 *
 * Counters are checked against traffic the test made (echo connections in
 * TLS 1.3 and 1.2, a resumption, refusals of known reasons, bytes), stay
 * monotonic across reloads, a failed reload and killed workers; /readyz
 * goes 503 while a reload waits for the old workers, while no worker of
 * the current generation serves, while stopping and once a server
 * certificate expired; the HTTP reader refuses what it should and survives
 * garbage, slow clients and floods; the socket (TCP or unix, mode 0660) is
 * the master's alone and kept across reloads; promtool accepts the output
 * (skipped, with the reason, where promtool is missing).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "harness.h"

#define IO_MS 10000
#define SETTLE_MS 10000 /* bound for counters to reach what the test made */
#define BODY_MAX (1u << 20)

static void
fx_setup(void)
{
	h_setup();
}

static void
fx_teardown(void)
{
	h_teardown();
}

/* --- HTTP from the test's side -------------------------------------------- */

static int
unix_connect(const char *path)
{
	struct sockaddr_un un;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&un, sizeof(un)) != 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Where the metrics server is: a loopback port, or a unix socket. */
struct ep {
	int port;
	const char *path;
};

static int
ep_connect(const struct ep *e)
{
	return e->path != NULL ? unix_connect(e->path) :
	    h_tcp_connect(e->port, IO_MS);
}

/*
 * Send ${req} on a fresh connection and read the answer to EOF into
 * ${buf}: its status, or -1.  ${*body} points past the head.
 */
static int
http_raw(const struct ep *e, const char *req, size_t reqlen, char *buf,
    size_t len, const char **body)
{
	int fd = ep_connect(e), status = -1;
	const char *b;

	buf[0] = '\0';
	if (body != NULL)
		*body = buf;
	if (fd < 0)
		return -1;
	if (h_fd_write_all(fd, req, reqlen, IO_MS) == 0) {
		(void)h_fd_read_until(fd, buf, len, NULL, IO_MS);
		if (sscanf(buf, "HTTP/1.1 %d ", &status) != 1)
			status = -1;
		if (body != NULL && (b = strstr(buf, "\r\n\r\n")) != NULL)
			*body = b + 4;
	}
	close(fd);
	return status;
}

/* GET ${path} (HTTP/1.1, Host given): the status, body in ${buf}. */
static int
http_get(const struct ep *e, const char *path, char *buf, size_t len,
    const char **body)
{
	char req[512];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: "
	    "localhost\r\nUser-Agent: check_metrics\r\n\r\n", path);

	return http_raw(e, req, (size_t)n, buf, len, body);
}

/* A scrape into a heap buffer the caller frees; fails the test on error. */
static char *
scrape(const struct ep *e)
{
	char *buf = malloc(BODY_MAX);
	const char *body;
	int st;

	ck_assert_ptr_nonnull(buf);
	st = http_get(e, "/metrics", buf, BODY_MAX, &body);
	ck_assert_msg(st == 200, "GET /metrics: status %d: %.300s", st, buf);
	ck_assert_msg(strstr(buf, "Content-Type: text/plain; version=0.0.4") !=
	    NULL, "not the 0.0.4 text format: %.300s", buf);
	memmove(buf, body, strlen(body) + 1);
	return buf;
}

/* The value of sample ${series} ("name{labels}"), or -1 if absent. */
static double
mval(const char *body, const char *series)
{
	size_t n = strlen(series);
	const char *p = body;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static double
metric_now(const struct ep *e, const char *series)
{
	char *b = scrape(e);
	double v = mval(b, series);

	free(b);
	return v;
}

/*
 * Scrape until ${series} equals ${want} (workers count as connections
 * close) or SETTLE_MS pass; fail the test with the last body otherwise.
 */
static void
expect_metric(const struct ep *e, const char *series, double want)
{
	int64_t deadline = h_now_ms() + SETTLE_MS;
	double v;
	char *b;

	for (;;) {
		b = scrape(e);
		v = mval(b, series);
		if (v == want || h_now_ms() > deadline)
			break;
		free(b);
		usleep(50000);
	}
	ck_assert_msg(v == want, "%s = %.0f, want %.0f; scrape:\n%.4000s",
	    series, v, want, b);
	free(b);
}

/* Status of GET ${path}, retried until ${want} or ${ms} pass. */
static int
wait_status(const struct ep *e, const char *path, int want, int ms)
{
	int64_t deadline = h_now_ms() + ms;
	char buf[2048];
	int st;

	do {
		st = http_get(e, path, buf, sizeof(buf), NULL);
		if (st == want)
			break;
		usleep(20000);
	} while (h_now_ms() < deadline);
	return st;
}

/* --- the daemon --------------------------------------------------------- */

/* Globals with a metrics port of our own (and ${extra}). */
static const char *
globals_with(struct ep *e, const char *extra)
{
	static char g[512];

	e->port = h_free_port();
	e->path = NULL;
	snprintf(g, sizeof(g), "metrics = \"127.0.0.1:%d\"; %s", e->port,
	    extra != NULL ? extra : "");
	return g;
}

/* A TLS echo round trip of ${len} bytes on a new connection. */
static void
echo_once(const struct h_daemon *d, int version, size_t len,
    SSL_SESSION *resume, SSL_SESSION **ret_session, bool want_resumed)
{
	struct h_tls_opts o = h_client_opts("client", version);
	unsigned char data[4096], back[4096];
	struct h_tls c;

	ck_assert_uint_le(len, sizeof(data));
	o.session = resume;
	h_fill_pattern(data, len, len);
	ck_assert_msg(h_tls_connect(&c, d->port, &o) == 0, "connect: %s",
	    c.err);
	ck_assert_msg(h_tls_write_all(&c, data, len, IO_MS) == 0, "write: %s",
	    c.err);
	ck_assert_msg(h_tls_read_exact(&c, back, len, IO_MS) == 0, "read: %s",
	    c.err);
	ck_assert(memcmp(data, back, len) == 0);
	ck_assert_msg(h_tls_reused(&c) == want_resumed, "resumed: %d",
	    h_tls_reused(&c));
	if (ret_session != NULL)
		*ret_session = h_tls_session(&c);
	h_tls_close(&c);
}

/* A client without a certificate (TLS 1.2: refused in the handshake). */
static void
refused_no_cert(const struct h_daemon *d)
{
	struct h_tls_opts o = h_client_opts(NULL, TLS1_2_VERSION);
	struct h_tls c;

	ck_assert_msg(h_tls_connect(&c, d->port, &o) != 0,
	    "admitted without a certificate");
	h_tls_close(&c);
}

/* Plain text to the TLS port: not-tls. */
static void
refused_not_tls(const struct h_daemon *d)
{
	int fd = h_tcp_connect(d->port, IO_MS);

	ck_assert_int_ge(fd, 0);
	ck_assert(h_fd_write_all(fd, "GET / HTTP/1.0\r\n\r\n", 18, IO_MS) == 0);
	ck_assert(h_fd_wait_closed(fd, IO_MS) == 0);
	close(fd);
}

/* --- counters ------------------------------------------------------------- */

START_TEST(metrics_count_the_traffic_the_test_made)
{
	struct h_daemon d;
	struct ep e;
	SSL_SESSION *s12 = NULL;
	char series[200], *b;
	int i;

	H_DAEMON_UP(&d, "metrics-count", globals_with(&e, "workers = 2;"),
	    NULL);
	b = scrape(&e);
	ck_assert_msg(mval(b, "tls_echod_connections_total{listener=\"echo\"}")
	    == 0, "a fresh daemon counted something:\n%.2000s", b);
	free(b);
	for (i = 0; i < 5; i++)
		echo_once(&d, TLS1_3_VERSION, 100, NULL, NULL, false);
	echo_once(&d, TLS1_2_VERSION, 1000, NULL, &s12, false);
	ck_assert_ptr_nonnull(s12);
	echo_once(&d, TLS1_2_VERSION, 10, s12, NULL, true);
	SSL_SESSION_free(s12);
	for (i = 0; i < 3; i++)
		refused_no_cert(&d);
	for (i = 0; i < 2; i++)
		refused_not_tls(&d);

	/* 5 + 2 echoes, 3 + 2 refusals. */
	expect_metric(&e, "tls_echod_connections_total{listener=\"echo\"}", 12);
	expect_metric(&e, "tls_echod_connections_active{listener=\"echo\"}", 0);
	expect_metric(&e, "tls_echod_handshakes_total{listener=\"echo\","
	    "version=\"TLSv1.3\",resumed=\"no\"}", 5);
	expect_metric(&e, "tls_echod_handshakes_total{listener=\"echo\","
	    "version=\"TLSv1.2\",resumed=\"no\"}", 1);
	expect_metric(&e, "tls_echod_handshakes_total{listener=\"echo\","
	    "version=\"TLSv1.2\",resumed=\"yes\"}", 1);
	expect_metric(&e, "tls_echod_handshakes_total{listener=\"echo\","
	    "version=\"TLSv1.3\",resumed=\"yes\"}", 0);
	expect_metric(&e, "tls_echod_refusals_total{listener=\"echo\","
	    "reason=\"no-client-cert\"}", 3);
	expect_metric(&e, "tls_echod_refusals_total{listener=\"echo\","
	    "reason=\"not-tls\"}", 2);
	expect_metric(&e, "tls_echod_refusals_total{listener=\"echo\","
	    "reason=\"unknown-ca\"}", 0);
	expect_metric(&e, "tls_echod_bytes_total{listener=\"echo\","
	    "direction=\"in\"}", 5 * 100 + 1000 + 10);
	expect_metric(&e, "tls_echod_bytes_total{listener=\"echo\","
	    "direction=\"out\"}", 5 * 100 + 1000 + 10);
	expect_metric(&e, "tls_echod_handshake_seconds_count{listener="
	    "\"echo\"}", 7);
	expect_metric(&e, "tls_echod_handshake_seconds_bucket{listener="
	    "\"echo\",le=\"+Inf\"}", 7);
	expect_metric(&e, "tls_echod_backend_connect_seconds_count{listener="
	    "\"echo\"}", 0);
	expect_metric(&e, "tls_echod_reloads_total{result=\"success\"}", 0);
	expect_metric(&e, "tls_echod_worker_restarts_total", 0);
	expect_metric(&e, "tls_echod_generation", 1);
	expect_metric(&e, "tls_echod_workers{state=\"current\"}", 2);
	/* The server certificate's date is the one in the file. */
	snprintf(series, sizeof(series), "tls_echod_certificate_expiry_"
	    "timestamp_seconds{listener=\"echo\",kind=\"server\","
	    "subject=\"CN=localhost\"}");
	ck_assert_double_gt(metric_now(&e, series), (double)time(NULL));
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(relay_counts_backend_connects_and_failures)
{
	struct h_daemon d;
	struct h_daemon_opts o;
	struct h_tls_opts to = h_client_opts("client", 0);
	struct h_tls c;
	struct ep e;
	char config[2048], buf[8];
	int dead = h_free_port(), lfd;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	/* A backend that accepts (the kernel's backlog does) and one that
	 * refuses (nothing listens on ${dead}). */
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	ck_assert(listen(lfd, 16) == 0);
	ck_assert(getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
	e.port = h_free_port();
	e.path = NULL;
	snprintf(config, sizeof(config), "log = \"stderr\"; workers = 1; "
	    "shutdown_timeout = 1; metrics = \"127.0.0.1:%d\";\n"
	    "listeners = (\n"
	    "{ name = \"up\"; listen = \"127.0.0.1:@PORT@\"; mode = \"relay\";"
	    " backend = { address = \"127.0.0.1:%d\"; };"
	    " tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";"
	    " ca = \"@PKI@/ca.crt\"; }; },\n"
	    "{ name = \"down\"; listen = \"127.0.0.1:%d\"; mode = \"relay\";"
	    " backend = { address = \"127.0.0.1:%d\"; };"
	    " tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";"
	    " ca = \"@PKI@/ca.crt\"; }; });\n", e.port, ntohs(sa.sin_port),
	    h_free_port(), dead);
	memset(&o, 0, sizeof(o));
	o.label = "metrics-relay";
	o.config = config;
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "start: %s", d.err);
	ck_assert_msg(h_tls_connect(&c, d.port, &to) == 0, "%s", c.err);
	ck_assert(h_tls_write_all(&c, "x", 1, IO_MS) == 0);
	expect_metric(&e, "tls_echod_backend_connect_seconds_count{listener="
	    "\"up\"}", 1);
	h_tls_close(&c);
	{
		/* The "down" listener's port, from the config we wrote. */
		const char *p = strstr(config, "\"down\"; listen = \"127.0.0.1:");
		int port = atoi(p + strlen("\"down\"; listen = \"127.0.0.1:"));

		ck_assert_msg(h_tls_connect(&c, port, &to) == 0, "%s", c.err);
		(void)h_tls_read_exact(&c, buf, 1, IO_MS);
		h_tls_close(&c);
	}
	expect_metric(&e, "tls_echod_backend_failures_total{listener=\"down\","
	    "reason=\"backend-refused\"}", 1);
	expect_metric(&e, "tls_echod_backend_failures_total{listener=\"up\","
	    "reason=\"backend-refused\"}", 0);
	expect_metric(&e, "tls_echod_backend_connect_seconds_count{listener="
	    "\"down\"}", 0);
	close(lfd);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* Write the harness's configuration again with ${text} instead. */
static void
rewrite_config(const struct h_daemon *d, const char *text)
{
	FILE *f = fopen(d->conf_path, "we");

	ck_assert_ptr_nonnull(f);
	ck_assert(fputs(text, f) >= 0);
	ck_assert(fclose(f) == 0);
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = calloc(1, 65536);

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(buf);
	if (fread(buf, 1, 65535, f) == 0)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

START_TEST(counters_never_go_backwards_across_reloads_and_killed_workers)
{
	struct h_daemon d;
	struct ep e;
	char line[1024], *good;
	pid_t w[4], w2[4];
	double t0;
	int n, i;
	const char *total = "tls_echod_connections_total{listener=\"echo\"}";

	H_DAEMON_UP(&d, "metrics-monotonic", globals_with(&e, "workers = 2;"),
	    NULL);
	for (i = 0; i < 4; i++)
		echo_once(&d, TLS1_3_VERSION, 50, NULL, NULL, false);
	refused_not_tls(&d);
	expect_metric(&e, total, 5);
	t0 = metric_now(&e, "tls_echod_last_reload_success_timestamp_seconds");
	ck_assert_double_gt(t0, 0);

	/* A reload: the old workers' counts stay in the totals. */
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, "reloaded: generation 2 serving");
	expect_metric(&e, "tls_echod_reloads_total{result=\"success\"}", 1);
	expect_metric(&e, total, 5);
	expect_metric(&e, "tls_echod_refusals_total{listener=\"echo\","
	    "reason=\"not-tls\"}", 1);
	expect_metric(&e, "tls_echod_generation", 2);
	ck_assert_double_ge(metric_now(&e, "tls_echod_last_reload_success_"
	    "timestamp_seconds"), t0);
	for (i = 0; i < 3; i++)
		echo_once(&d, TLS1_3_VERSION, 50, NULL, NULL, false);
	expect_metric(&e, total, 8);
	expect_metric(&e, "tls_echod_bytes_total{listener=\"echo\","
	    "direction=\"in\"}", 7 * 50);

	/* A failed reload counts as one and changes nothing else. */
	good = read_file(d.conf_path);
	rewrite_config(&d, "workers = ;\n");
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, "reload failed");
	expect_metric(&e, "tls_echod_reloads_total{result=\"failure\"}", 1);
	expect_metric(&e, "tls_echod_reloads_total{result=\"success\"}", 1);
	rewrite_config(&d, good);
	free(good);

	/* A worker killed: what it counted stays; it is restarted. */
	n = h_daemon_workers(&d, w, 4, 2, IO_MS);
	ck_assert_int_eq(n, 2);
	ck_assert(kill(w[0], SIGKILL) == 0);
	H_LOG_EXPECT(&d, line, "killed by signal 9", "restarting in");
	expect_metric(&e, "tls_echod_worker_restarts_total", 1);
	expect_metric(&e, total, 8);
	ck_assert_int_eq(h_daemon_workers(&d, w2, 4, 2, IO_MS), 2);
	for (i = 0; i < 4; i++)
		echo_once(&d, TLS1_2_VERSION, 50, NULL, NULL, false);
	expect_metric(&e, total, 12);
	expect_metric(&e, "tls_echod_handshakes_total{listener=\"echo\","
	    "version=\"TLSv1.3\",resumed=\"no\"}", 7);
	expect_metric(&e, "tls_echod_handshakes_total{listener=\"echo\","
	    "version=\"TLSv1.2\",resumed=\"no\"}", 4);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(metrics_pass_promtool_check)
{
	struct h_daemon d;
	struct ep e;
	char path[4096], log[4096], cmd[8400], err[256], *b;
	const char *argv[] = { "sh", "-c", cmd, NULL };
	FILE *f;
	int st;

	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		printf("metrics_pass_promtool_check: skipped: promtool is not "
		    "installed (Debian package prometheus; scripts/install-deps.sh "
		    "installs it)\n");
		return;
	}
	H_DAEMON_UP(&d, "metrics-promtool", globals_with(&e, "workers = 2;"),
	    NULL);
	echo_once(&d, TLS1_3_VERSION, 10, NULL, NULL, false);
	refused_no_cert(&d);
	expect_metric(&e, "tls_echod_connections_total{listener=\"echo\"}", 2);
	b = scrape(&e);
	snprintf(path, sizeof(path), "%s", h_tmp("metrics-promtool.txt"));
	snprintf(log, sizeof(log), "%s", h_tmp("metrics-promtool.log"));
	f = fopen(path, "we");
	ck_assert_ptr_nonnull(f);
	ck_assert(fputs(b, f) >= 0);
	ck_assert(fclose(f) == 0);
	free(b);
	(void)unlink(log);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
	st = h_run(argv, log, 60000, err, sizeof(err));
	b = read_file(log);
	ck_assert_msg(st == 0 && b[0] == '\0', "promtool check metrics: "
	    "status %d %s:\n%s", st, err, b);
	free(b);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* --- readiness ------------------------------------------------------------- */

START_TEST(readyz_is_503_while_a_reload_waits_for_the_old_workers)
{
	struct h_daemon d;
	struct ep e;
	char buf[2048], line[1024];
	pid_t w[4];
	int n, i, st;
	const char *body;

	H_DAEMON_UP(&d, "metrics-ready-reload",
	    globals_with(&e, "workers = 2;"), NULL);
	ck_assert_int_eq(wait_status(&e, "/readyz", 200, IO_MS), 200);
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), &body),
	    200);
	ck_assert_str_eq(body, "ok\n");
	/* Old workers that cannot answer RETIRE hold the reload open (for
	 * 2 s at most: then the master goes ready anyway). */
	n = h_daemon_workers(&d, w, 4, 2, IO_MS);
	ck_assert_int_eq(n, 2);
	for (i = 0; i < n; i++)
		ck_assert(kill(w[i], SIGSTOP) == 0);
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	st = wait_status(&e, "/readyz", 503, 5000);
	for (i = 0; i < n; i++)
		(void)kill(w[i], SIGCONT);
	ck_assert_msg(st == 503, "/readyz stayed %d during the reload", st);
	H_LOG_EXPECT(&d, line, "reloaded: generation 2 serving");
	ck_assert_int_eq(wait_status(&e, "/readyz", 200, IO_MS), 200);
	ck_assert_int_eq(http_get(&e, "/readyz", buf, sizeof(buf), &body),
	    200);
	ck_assert_str_eq(body, "ready\n");
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(readyz_is_503_while_no_worker_of_the_generation_serves)
{
	struct h_daemon d;
	struct ep e;
	char buf[2048];
	const char *body;
	pid_t w[2], prev = 0;
	bool seen = false;
	int kills = 0;

	H_DAEMON_UP(&d, "metrics-ready-start", globals_with(&e, "workers = 1;"),
	    NULL);
	ck_assert_int_eq(wait_status(&e, "/readyz", 200, IO_MS), 200);
	/* Each quick death doubles the restart back-off (100 ms, 200, ...):
	 * the window without a worker grows until a probe sees it. */
	while (!seen && kills < 7) {
		int64_t deadline = h_now_ms() + IO_MS;

		do
			ck_assert_int_eq(h_daemon_workers(&d, w, 2, 1, IO_MS), 1);
		while (w[0] == prev && h_now_ms() < deadline);
		ck_assert(w[0] != prev);
		prev = w[0];
		ck_assert(kill(w[0], SIGKILL) == 0);
		kills++;
		seen = wait_status(&e, "/readyz", 503, 300) == 503;
	}
	ck_assert_msg(seen, "/readyz never said 503 after %d worker deaths",
	    kills);
	ck_assert_int_eq(wait_status(&e, "/readyz", 200, 20000), 200);
	/* Liveness is the master's: it stayed 200 throughout. */
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), &body),
	    200);
	expect_metric(&e, "tls_echod_worker_restarts_total", kills);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(readyz_is_503_while_stopping_and_healthz_stays_200)
{
	struct h_daemon d;
	struct ep e;
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_tls c;
	char buf[2048];
	const char *body;
	int st;

	H_DAEMON_UP(&d, "metrics-ready-stop",
	    globals_with(&e, "workers = 1; shutdown_timeout = 30;"), NULL);
	ck_assert_int_eq(wait_status(&e, "/readyz", 200, IO_MS), 200);
	/* A live connection keeps the daemon draining. */
	ck_assert_msg(h_tls_connect(&c, d.port, &o) == 0, "%s", c.err);
	ck_assert(h_tls_roundtrip(&c, "hi", 2, IO_MS) == 0);
	ck_assert(h_daemon_signal(&d, SIGTERM) == 0);
	st = wait_status(&e, "/readyz", 503, IO_MS);
	ck_assert_msg(st == 503, "/readyz said %d while stopping", st);
	ck_assert_int_eq(http_get(&e, "/readyz", buf, sizeof(buf), &body),
	    503);
	ck_assert_str_eq(body, "not ready: stopping\n");
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), &body),
	    200);
	h_tls_close(&c);
	ck_assert_int_eq(h_daemon_wait_exit(&d, IO_MS), 0);
}
END_TEST

/*
 * A certificate for the PKI's server key, CN and SAN localhost, signed by
 * the PKI's CA, valid until ${secs} seconds from now; written to ${out}.
 */
static void
issue_server_cert(const char *out, long secs)
{
	X509 *ca, *x = X509_new();
	EVP_PKEY *cakey, *key;
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX ctx;
	FILE *f;
	const char *ext[][2] = {
		{ "basicConstraints", "critical,CA:FALSE" },
		{ "keyUsage", "critical,digitalSignature" },
		{ "extendedKeyUsage", "serverAuth" },
		{ "subjectAltName", "DNS:localhost,IP:127.0.0.1" },
	};
	size_t i;

	f = fopen(h_pki("ca.crt"), "re");
	ck_assert_ptr_nonnull(f);
	ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	f = fopen(h_pki("ca.key"), "re");
	ck_assert_ptr_nonnull(f);
	cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	f = fopen(h_pki("server.key"), "re");
	ck_assert_ptr_nonnull(f);
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert(ca != NULL && cakey != NULL && key != NULL && x != NULL &&
	    n != NULL);
	ck_assert(X509_set_version(x, 2) == 1);
	ck_assert(ASN1_INTEGER_set(X509_get_serialNumber(x),
	    (long)time(NULL)) == 1);
	ck_assert(X509_gmtime_adj(X509_getm_notBefore(x), -86400L) != NULL);
	ck_assert(X509_gmtime_adj(X509_getm_notAfter(x), secs) != NULL);
	ck_assert(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
	    (const unsigned char *)"localhost", -1, -1, 0) == 1);
	ck_assert(X509_set_subject_name(x, n) == 1);
	ck_assert(X509_set_issuer_name(x, X509_get_subject_name(ca)) == 1);
	ck_assert(X509_set_pubkey(x, key) == 1);
	X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
	for (i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		X509_EXTENSION *xe = X509V3_EXT_conf(NULL, &ctx, ext[i][0],
		    ext[i][1]);

		ck_assert_ptr_nonnull(xe);
		ck_assert(X509_add_ext(x, xe, -1) == 1);
		X509_EXTENSION_free(xe);
	}
	ck_assert(X509_sign(x, cakey, EVP_sha256()) > 0);
	f = fopen(out, "we");
	ck_assert_ptr_nonnull(f);
	ck_assert(PEM_write_X509(f, x) == 1);
	ck_assert(fclose(f) == 0);
	X509_NAME_free(n);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
}

START_TEST(readyz_is_503_once_a_server_certificate_expired)
{
	struct h_daemon d;
	struct h_daemon_opts o;
	struct ep e;
	char config[6200], crt[4096], buf[2048], series[256];
	const char *body;
	int st;
	time_t until;
	long life = getenv("TEST_VALGRIND") != NULL ? 30 : 4;

	/* Valid for a few seconds: the daemon loads it, then it expires
	 * (valgrind starts the daemon slower: longer there). */
	snprintf(crt, sizeof(crt), "%s", h_tmp("metrics-short-lived.crt"));
	until = time(NULL) + life;
	issue_server_cert(crt, life);
	e.port = h_free_port();
	e.path = NULL;
	snprintf(config, sizeof(config), "log = \"stderr\"; workers = 1; "
	    "metrics = \"127.0.0.1:%d\";\nlisteners = ({ name = \"echo\"; "
	    "listen = \"127.0.0.1:@PORT@\"; tls = { cert = \"%s\"; "
	    "key = \"@PKI@/server.key\"; ca = \"@PKI@/ca.crt\"; }; });\n",
	    e.port, crt);
	memset(&o, 0, sizeof(o));
	o.label = "metrics-expired";
	o.config = config;
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "start: %s", d.err);
	snprintf(series, sizeof(series), "tls_echod_certificate_expiry_"
	    "timestamp_seconds{listener=\"echo\",kind=\"server\","
	    "subject=\"CN=localhost\"}");
	ck_assert_double_le(metric_now(&e, series) - (double)until, 1);
	ck_assert_double_ge(metric_now(&e, series) - (double)until, -1);
	if (time(NULL) < until - 2)
		ck_assert_int_eq(wait_status(&e, "/readyz", 200, 1000), 200);
	st = wait_status(&e, "/readyz", 503, (int)life * 1000 + 15000);
	ck_assert_msg(st == 503, "/readyz said %d after the certificate "
	    "expired", st);
	ck_assert_int_eq(http_get(&e, "/readyz", buf, sizeof(buf), &body),
	    503);
	ck_assert_str_eq(body, "not ready: listener echo: its server "
	    "certificate expired\n");
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), NULL),
	    200);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* --- HTTP: strict, bounded, and hard to hurt -------------------------------- */

START_TEST(http_answers_405_404_400_505_414_431_and_head_has_no_body)
{
	static const struct { const char *req; int status; } v[] = {
		{ "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405 },
		{ "DELETE /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 405 },
		{ "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404 },
		{ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404 },
		{ "GET /metrics HTTP/1.1\r\n\r\n", 400 },
		{ "GET /metrics HTTP/1.1\nHost: x\n\n", 400 },
		{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400 },
		{ "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
		{ "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
		    "chunked\r\n\r\n", 501 },
	};
	struct h_daemon d;
	struct ep e;
	char *buf = malloc(BODY_MAX), big[8192];
	const char *body;
	size_t i, n;
	int st;

	ck_assert_ptr_nonnull(buf);
	H_DAEMON_UP(&d, "metrics-http", globals_with(&e, "workers = 1;"),
	    NULL);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		st = http_raw(&e, v[i].req, strlen(v[i].req), buf, BODY_MAX,
		    NULL);
		ck_assert_msg(st == v[i].status, "request %zu: %d, want %d",
		    i, st, v[i].status);
		ck_assert_msg(strstr(buf, "Connection: close\r\n") != NULL,
		    "request %zu: no Connection: close", i);
	}
	st = http_raw(&e, v[0].req, strlen(v[0].req), buf, BODY_MAX, NULL);
	ck_assert_ptr_nonnull(strstr(buf, "Allow: GET, HEAD\r\n"));
	/* A target too long, a head too long. */
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', 1000);
	ck_assert_int_eq(http_raw(&e, big, n + 1000, buf, BODY_MAX, NULL), 414);
	n = (size_t)snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\n"
	    "Host: x\r\nX-Big: ");
	memset(big + n, 'b', sizeof(big) - n);
	ck_assert_int_eq(http_raw(&e, big, sizeof(big), buf, BODY_MAX, NULL),
	    431);
	/* HEAD: the head of GET, no body. */
	st = http_raw(&e, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35, buf,
	    BODY_MAX, &body);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(body, "");
	ck_assert_ptr_nonnull(strstr(buf, "Content-Length: "));
	ck_assert_int_eq(http_raw(&e, "GET /healthz HTTP/1.0\r\n\r\n", 25, buf,
	    BODY_MAX, NULL), 200);
	/* A query is not part of the path. */
	ck_assert_int_eq(wait_status(&e, "/readyz?verbose", 200, IO_MS), 200);
	free(buf);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* The master's open fds, once down to ${want} at most (or not). */
static int
master_fds(const struct h_daemon *d, int want)
{
	int64_t deadline = h_now_ms() + IO_MS;
	int n;

	do {
		n = h_proc_fd_count(d->pid);
		if (n <= want)
			break;
		usleep(50000);
	} while (h_now_ms() < deadline);
	return n;
}

START_TEST(slow_and_garbage_http_clients_do_not_harm_the_master)
{
	enum { SLOW = 40, JUNK = 200 };
	struct h_daemon d;
	struct ep e;
	char buf[4096], junk[1024];
	int slow[SLOW], i, fds0, st, closed = 0;
	int64_t t;
	unsigned seed = 15;

	H_DAEMON_UP(&d, "metrics-hostile", globals_with(&e, "workers = 1;"),
	    NULL);
	ck_assert_int_eq(wait_status(&e, "/readyz", 200, IO_MS), 200);
	/* The probe's connection may linger a moment in the master. */
	fds0 = h_proc_fd_count(d.pid);
	ck_assert_int_gt(fds0, 0);
	fds0 = master_fds(&d, fds0 - 1) < fds0 ? fds0 - 1 : fds0;
	/* Slowloris: more half-sent requests than the server has room for. */
	for (i = 0; i < SLOW; i++) {
		slow[i] = h_tcp_connect(e.port, IO_MS);
		ck_assert_int_ge(slow[i], 0);
		ck_assert(h_fd_write_all(slow[i], "GET /metr", 9, IO_MS) == 0);
	}
	/* A scrape still gets through: the oldest waiting reader makes room. */
	t = h_now_ms();
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), NULL),
	    200);
	free(scrape(&e));
	printf("slow_and_garbage: a scrape among %d slow clients took %lld "
	    "ms\n", SLOW, (long long)(h_now_ms() - t));
	/* Each slow client is closed (408 or evicted) within its 5 s. */
	for (i = 0; i < SLOW; i++) {
		closed += h_fd_wait_closed(slow[i], IO_MS) == 0;
		close(slow[i]);
	}
	ck_assert_int_eq(closed, SLOW);
	/* Garbage of every length, one connection each. */
	for (i = 0; i < JUNK; i++) {
		size_t n = (size_t)(rand_r(&seed) % (int)sizeof(junk)) + 1, k;

		for (k = 0; k < n; k++)
			junk[k] = (char)rand_r(&seed);
		st = http_raw(&e, junk, n, buf, sizeof(buf), NULL);
		ck_assert_msg(st == -1 || (st >= 400 && st < 600),
		    "junk %d answered %d", i, st);
	}
	/* Clients that send nothing and leave, or reset. */
	for (i = 0; i < 20; i++) {
		int fd = h_tcp_connect(e.port, IO_MS);
		struct linger lg = { 1, 0 };

		ck_assert_int_ge(fd, 0);
		if (i % 2)
			(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg,
			    sizeof(lg));
		close(fd);
	}
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), NULL),
	    200);
	ck_assert_int_le(master_fds(&d, fds0), fds0);
	/* And the TLS side never noticed. */
	echo_once(&d, TLS1_3_VERSION, 100, NULL, NULL, false);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* --- the socket ------------------------------------------------------------- */

/*
 * The inode of the listening unix socket bound to ${path} (/proc/net/unix:
 * flags __SO_ACCEPTCON; accepted sockets show the path too), or 0.
 */
static unsigned long
unix_inode(const char *path)
{
	FILE *f = fopen("/proc/net/unix", "re");
	char line[1024];
	unsigned long ino = 0;

	if (f == NULL)
		return 0;
	while (ino == 0 && fgets(line, sizeof(line), f) != NULL) {
		char p[512] = "", flags[16] = "";
		unsigned long i;

		if (sscanf(line, "%*s %*s %*s %15s %*s %*s %lu %511s", flags,
		    &i, p) == 3 && strcmp(p, path) == 0 &&
		    strcmp(flags, "00010000") == 0)
			ino = i;
	}
	fclose(f);
	return ino;
}

/* True if process ${pid} has a file descriptor on socket inode ${ino}. */
static bool
has_socket(pid_t pid, unsigned long ino)
{
	char want[64], link[128], path[64];
	int fd;

	snprintf(want, sizeof(want), "socket:[%lu]", ino);
	for (fd = 0; fd < 1024; fd++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/%ld/fd/%d", (long)pid, fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, want) == 0)
			return true;
	}
	return false;
}

/*
 * True once no process in ${pids} holds socket ${ino}: a worker inherits
 * every fd at fork and closes the master's right after, before it serves.
 */
static bool
none_holds(const pid_t *pids, int n, unsigned long ino)
{
	int64_t deadline = h_now_ms() + IO_MS;
	bool any;
	int i;

	do {
		any = false;
		for (i = 0; i < n; i++)
			any |= has_socket(pids[i], ino);
		if (!any)
			return true;
		usleep(20000);
	} while (h_now_ms() < deadline);
	return false;
}

START_TEST(unix_socket_is_0660_the_masters_alone_and_kept_across_reloads)
{
	struct h_daemon d;
	struct ep e;
	char globals[600], line[1024], buf[2048], path[256], path2[256];
	char *conf;
	struct stat st;
	unsigned long ino, ino2;
	pid_t w[4];
	int n;

	snprintf(path, sizeof(path), "%s", h_tmp("m.sock"));
	snprintf(path2, sizeof(path2), "%s", h_tmp("m2.sock"));
	(void)unlink(path2);
	/* A stale socket file from a daemon that died is replaced. */
	{
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		(void)unlink(path);
		ck_assert_uint_lt(strlen(path), sizeof(un.sun_path));
		memcpy(un.sun_path, path, strlen(path) + 1);
		ck_assert(bind(fd, (struct sockaddr *)&un, sizeof(un)) == 0);
		close(fd);
	}
	e.port = 0;
	e.path = path;
	snprintf(globals, sizeof(globals), "workers = 2; metrics = "
	    "\"unix:%s\";", path);
	H_DAEMON_UP(&d, "metrics-unix", globals, NULL);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_msg((st.st_mode & 07777) == 0660, "mode %04o",
	    (unsigned)(st.st_mode & 07777));
	ck_assert_int_eq(wait_status(&e, "/readyz", 200, IO_MS), 200);
	ino = unix_inode(path);
	ck_assert_uint_ne(ino, 0);
	ck_assert(has_socket(d.pid, ino));
	n = h_daemon_workers(&d, w, 4, 2, IO_MS);
	ck_assert_int_eq(n, 2);
	ck_assert_msg(none_holds(w, n, ino), "a worker holds the metrics "
	    "socket");

	/* Same address: same socket. */
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, "reloaded: generation 2 serving");
	ck_assert_uint_eq(unix_inode(path), ino);
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), NULL),
	    200);
	n = h_daemon_workers(&d, w, 4, 2, IO_MS);
	ck_assert_msg(none_holds(w, n, ino), "a worker of generation 2 holds "
	    "the metrics socket");

	/* Another address: the old file goes, the new one answers. */
	conf = read_file(d.conf_path);
	{
		char *p = strstr(conf, path), *out = malloc(70000);

		ck_assert_ptr_nonnull(p);
		ck_assert_ptr_nonnull(out);
		snprintf(out, 70000, "%.*s%s%s", (int)(p - conf), conf, path2,
		    p + strlen(path));
		rewrite_config(&d, out);
		free(out);
	}
	free(conf);
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, "reloaded: generation 3 serving");
	ck_assert_int_ne(access(path, F_OK), 0);
	e.path = path2;
	ck_assert_int_eq(http_get(&e, "/healthz", buf, sizeof(buf), NULL),
	    200);
	ino2 = unix_inode(path2);
	ck_assert_uint_ne(ino2, 0);
	ck_assert(has_socket(d.pid, ino2));
	H_DAEMON_DOWN(&d);
	/* Stopped: the master removed its socket file. */
	ck_assert_int_ne(access(path2, F_OK), 0);
}
END_TEST

START_TEST(tcp_socket_is_kept_across_reloads_and_absent_from_workers)
{
	struct h_daemon d;
	struct ep e;
	char line[1024], buf[2048];
	pid_t w[4];
	int fd, n, i;

	H_DAEMON_UP(&d, "metrics-tcp", globals_with(&e, "workers = 2;"),
	    NULL);
	/* A connection made before the reload is answered after it. */
	fd = h_tcp_connect(e.port, IO_MS);
	ck_assert_int_ge(fd, 0);
	ck_assert(h_fd_write_all(fd, "GET /healthz HTTP/1.1\r\n", 23,
	    IO_MS) == 0);
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, "reloaded: generation 2 serving");
	ck_assert(h_fd_write_all(fd, "Host: x\r\n\r\n", 11, IO_MS) == 0);
	(void)h_fd_read_until(fd, buf, sizeof(buf), NULL, IO_MS);
	close(fd);
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%.200s", buf);
	ck_assert_int_eq(h_log_count(&d, "metrics: /metrics, /healthz and "
	    "/readyz on", NULL), 1);
	/* The workers hold no socket bound to the metrics port (ss lists
	 * every process holding it; a fresh worker closes the master's fds
	 * right after its fork).  Retired workers may still be draining:
	 * they never had it either. */
	n = h_daemon_workers(&d, w, 4, 2, IO_MS);
	ck_assert_int_ge(n, 2);
	if (n > 4)
		n = 4;
	for (i = 0; i < n; i++) {
		char cmd[256], err[128];
		const char *argv[] = { "sh", "-c", cmd, NULL };
		int64_t deadline = h_now_ms() + IO_MS;
		int st;

		snprintf(cmd, sizeof(cmd), "ss -Htlnp 'sport = :%d' | grep -q "
		    "'pid=%ld,'", e.port, (long)w[i]);
		while ((st = h_run(argv, h_tmp("metrics-ss.log"), IO_MS, err,
		    sizeof(err))) == 0 && h_now_ms() < deadline)
			usleep(50000);
		ck_assert_msg(st == 1, "worker %ld has the metrics socket "
		    "(grep: %d %s)", (long)w[i], st, err);
	}
	snprintf(line, sizeof(line), "ss -Htlnp 'sport = :%d' | grep -q "
	    "'pid=%ld,'", e.port, (long)d.pid);
	{
		const char *argv[] = { "sh", "-c", line, NULL };
		char err[128];

		ck_assert_int_eq(h_run(argv, h_tmp("metrics-ss.log"), IO_MS,
		    err, sizeof(err)), 0);
	}
	H_DAEMON_DOWN(&d);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, metrics_count_the_traffic_the_test_made);
	tcase_add_test(tc, relay_counts_backend_connects_and_failures);
	tcase_add_test(tc,
	    counters_never_go_backwards_across_reloads_and_killed_workers);
	tcase_add_test(tc, metrics_pass_promtool_check);
	tcase_add_test(tc, readyz_is_503_while_a_reload_waits_for_the_old_workers);
	tcase_add_test(tc, readyz_is_503_while_no_worker_of_the_generation_serves);
	tcase_add_test(tc, readyz_is_503_while_stopping_and_healthz_stays_200);
	tcase_add_test(tc, readyz_is_503_once_a_server_certificate_expired);
	tcase_add_test(tc,
	    http_answers_405_404_400_505_414_431_and_head_has_no_body);
	tcase_add_test(tc, slow_and_garbage_http_clients_do_not_harm_the_master);
	tcase_add_test(tc,
	    unix_socket_is_0660_the_masters_alone_and_kept_across_reloads);
	tcase_add_test(tc,
	    tcp_socket_is_kept_across_reloads_and_absent_from_workers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	char why[256];
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_metrics: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(metrics_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
