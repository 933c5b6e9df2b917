/*
 * Rotation without a signal (watch = "tls" by default): certificates and
 * CRLs replaced the ways operators and tools replace them are served by
 * themselves: rewritten in place, renamed over (certbot), swapped through
 * a Kubernetes Secret volume's ..data symlink, and half-written (the
 * reload fails, says so, keeps serving, and succeeds on the next change).
 * watch = "all" adds the configuration file; "off" leaves it to SIGHUP;
 * TLS_ECHOD_WATCH_POLL=1 shows the polling fallback does the same.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "harness.h"

#define SETTLE_MS 12000 /* a change is served within this */

static char dir[4096]; /* this test's files */

static void
fx_setup(void)
{
	h_setup();
	snprintf(dir, sizeof(dir), "%s/watch-%ld-%ld", getenv("TEST_TMPDIR"),
	    (long)getpid(), (long)h_now_ms());
	ck_assert_msg(mkdir(dir, 0700) == 0, "%s: %s", dir, strerror(errno));
}

static void
fx_teardown(void)
{
	h_teardown();
}

/* ${dir}/${name} */
static const char *
at(const char *name)
{
	static char buf[8][4200];
	static int k;

	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

/* Copy ${from} to ${to} in place (same inode: truncate, then write). */
static void
copy_in_place(const char *from, const char *to)
{
	FILE *in = fopen(from, "re"), *out;
	char buf[4096];
	size_t n;

	ck_assert_msg(in != NULL, "%s: %s", from, strerror(errno));
	out = fopen(to, "we");
	ck_assert_msg(out != NULL, "%s: %s", to, strerror(errno));
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert(fwrite(buf, 1, n, out) == n);
	fclose(in);
	ck_assert(fclose(out) == 0);
}

/* Copy ${from} to a temporary name beside ${to}, then rename it over. */
static void
copy_by_rename(const char *from, const char *to)
{
	char tmp[4300];

	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	copy_in_place(from, tmp);
	ck_assert_msg(rename(tmp, to) == 0, "rename %s: %s", to,
	    strerror(errno));
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	fputs(text, f);
	ck_assert(fclose(f) == 0);
}

/* Days until the server certificate the daemon serves now expires; -1 if
 * no handshake. */
static int
served_days(const struct h_daemon *d)
{
	struct h_tls_opts o = h_client_opts("client", TLS1_3_VERSION);
	struct h_tls c;
	int days = -1, secs;

	if (h_tls_connect(&c, d->port, &o) == 0) {
		X509 *x = SSL_get1_peer_certificate(c.ssl);

		if (x != NULL && ASN1_TIME_diff(&days, &secs, NULL,
		    X509_get0_notAfter(x)) != 1)
			days = -1;
		X509_free(x);
	}
	h_tls_close(&c);
	return days;
}

/* Wait (bounded) until the served certificate has ${lo}..${hi} days left. */
static int
wait_served(const struct h_daemon *d, int lo, int hi, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;
	int days;

	for (;;) {
		days = served_days(d);
		if ((days >= lo && days <= hi) || h_now_ms() >= end)
			return days;
		usleep(100 * 1000);
	}
}

/* The daemon on copies of the PKI's server certificate, key and CA. */
static void
up(struct h_daemon *d, const char *label, const char *globals,
    const char *cert, const char *key, const char *const *env)
{
	char conf[4096];
	struct h_daemon_opts o = {
		.label = label,
		.config = conf,
		.activation = true,
		.env = env,
	};

	copy_in_place(h_pki("ca.crt"), at("ca.crt"));
	snprintf(conf, sizeof(conf), "log = \"stderr\";\nworkers = 1;\n%s\n"
	    "listeners = ( { name = \"echo\"; listen = \"127.0.0.1:@PORT@\";\n"
	    "  mode = \"echo\";\n"
	    "  tls = { cert = \"%s\"; key = \"%s\"; ca = \"%s\"; }; } );\n",
	    globals, cert, key, at("ca.crt"));
	ck_assert_msg(h_daemon_start(d, &o) == 0, "daemon: %s", d->err);
}

/* The PKI's server certificate has ~30 days; server-soon 5. */
#define LONG_LO 25
#define LONG_HI 31
#define SOON_LO 3
#define SOON_HI 5

/* Loop 0: rewritten in place; 1: renamed over (certbot); 2: the same,
 * found by polling instead of inotify. */
START_TEST(test_certificate_replaced_on_disk_is_served_without_a_signal)
{
	static const char *const poll_env[] = { "TLS_ECHOD_WATCH_POLL=1",
	    NULL };
	struct h_daemon d;
	char line[4096];
	int days;

	copy_in_place(h_pki("server.crt"), at("tls.crt"));
	copy_in_place(h_pki("server.key"), at("tls.key"));
	up(&d, "watch-file", "", at("tls.crt"), at("tls.key"),
	    _i == 2 ? poll_env : NULL);
	ck_assert_int_ge(served_days(&d), LONG_LO);
	if (_i == 0) {
		copy_in_place(h_pki("server-soon.crt"), at("tls.crt"));
		copy_in_place(h_pki("server-soon.key"), at("tls.key"));
	} else {
		copy_by_rename(h_pki("server-soon.crt"), at("tls.crt"));
		copy_by_rename(h_pki("server-soon.key"), at("tls.key"));
	}
	days = wait_served(&d, SOON_LO, SOON_HI, SETTLE_MS);
	ck_assert_msg(days >= SOON_LO && days <= SOON_HI, "the new certificate "
	    "(%d-%d days left) is not served within %d ms: %d days",
	    SOON_LO, SOON_HI, SETTLE_MS, days);
	H_LOG_EXPECT(&d, line, "tls.", "changed: reloading");
	ck_assert(h_notify_wait(&d, "STATUS=generation 2:", SETTLE_MS) != NULL);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* A Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>;
 * kubelet swaps ..data with a rename. */
static void
secret_version(const char *version, const char *crt, const char *key)
{
	char vdir[4300], tmp[4400];

	snprintf(vdir, sizeof(vdir), "%s/%s", dir, version);
	ck_assert(mkdir(vdir, 0755) == 0);
	snprintf(tmp, sizeof(tmp), "%s/tls.crt", vdir);
	copy_in_place(crt, tmp);
	snprintf(tmp, sizeof(tmp), "%s/tls.key", vdir);
	copy_in_place(key, tmp);
	unlink(at("..data_tmp"));
	ck_assert(symlink(version, at("..data_tmp")) == 0);
	ck_assert(rename(at("..data_tmp"), at("..data")) == 0);
}

START_TEST(test_kubernetes_secret_symlink_swap_is_served_without_a_signal)
{
	struct h_daemon d;
	char rm[4400], err[256];
	int days;

	secret_version("..2026_12_07_a", h_pki("server.crt"),
	    h_pki("server.key"));
	ck_assert(symlink("..data/tls.crt", at("tls.crt")) == 0);
	ck_assert(symlink("..data/tls.key", at("tls.key")) == 0);
	up(&d, "watch-secret", "", at("tls.crt"), at("tls.key"), NULL);
	ck_assert_int_ge(served_days(&d), LONG_LO);
	secret_version("..2026_12_07_b", h_pki("server-soon.crt"),
	    h_pki("server-soon.key"));
	snprintf(rm, sizeof(rm), "%s", at("..2026_12_07_a"));
	{
		const char *argv[] = { "rm", "-rf", rm, NULL };

		ck_assert(h_run(argv, h_tmp("watch-rm.log"), 5000, err,
		    sizeof(err)) == 0);
	}
	days = wait_served(&d, SOON_LO, SOON_HI, SETTLE_MS);
	ck_assert_msg(days >= SOON_LO && days <= SOON_HI, "after the ..data "
	    "swap the new certificate is not served: %d days left", days);
	/* And back: a second swap is seen too (the watch followed). */
	secret_version("..2026_12_07_c", h_pki("server.crt"),
	    h_pki("server.key"));
	days = wait_served(&d, LONG_LO, LONG_HI, SETTLE_MS);
	ck_assert_msg(days >= LONG_LO, "after the second swap: %d days", days);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * Half-written: the reload that sees it fails, says which file, shows in
 * STATUS= and keeps serving; the next change (the file completed) reloads.
 */
START_TEST(test_half_written_certificate_fails_keeps_serving_then_succeeds)
{
	struct h_daemon d;
	char line[4096];
	int days;

	copy_in_place(h_pki("server.crt"), at("tls.crt"));
	copy_in_place(h_pki("server.key"), at("tls.key"));
	up(&d, "watch-half", "", at("tls.crt"), at("tls.key"), NULL);
	write_text(at("tls.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n");
	H_LOG_EXPECT(&d, line, "reload failed, still serving generation 1",
	    "tls.crt");
	ck_assert(h_notify_wait(&d, "STATUS=generation 1:", SETTLE_MS) !=
	    NULL);
	ck_assert_msg(strstr(line, "tls.crt") != NULL, "%s", line);
	ck_assert_int_ge(served_days(&d), LONG_LO);
	copy_in_place(h_pki("server-soon.crt"), at("tls.crt"));
	copy_in_place(h_pki("server-soon.key"), at("tls.key"));
	days = wait_served(&d, SOON_LO, SOON_HI, SETTLE_MS);
	ck_assert_msg(days >= SOON_LO && days <= SOON_HI, "the completed "
	    "certificate is not served: %d days left", days);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* A CA rotated on disk: its clients are refused without a signal. */
START_TEST(test_ca_replaced_on_disk_applies_without_a_signal)
{
	struct h_daemon d;
	struct h_tls_opts o = h_client_opts("client", TLS1_3_VERSION);
	struct h_tls c;
	char line[4096];

	copy_in_place(h_pki("server.crt"), at("tls.crt"));
	copy_in_place(h_pki("server.key"), at("tls.key"));
	up(&d, "watch-ca", "", at("tls.crt"), at("tls.key"), NULL);
	ck_assert(h_tls_connect(&c, d.port, &o) == 0);
	ck_assert_msg(h_tls_roundtrip(&c, "x\n", 2, 5000) == 0, "%s", c.err);
	h_tls_close(&c);
	/* Only the other CA (same name, another key) is trusted now. */
	copy_by_rename(h_pki("other-ca.crt"), at("ca.crt"));
	H_LOG_EXPECT(&d, line, "ca.crt changed: reloading");
	ck_assert(h_notify_wait(&d, "STATUS=generation 2:", SETTLE_MS) != NULL);
	ck_assert_msg(h_tls_connect(&c, d.port, &o) != 0 ||
	    h_tls_refused(&c, 5000) == 1, "a client of the CA removed on disk "
	    "is still admitted");
	h_tls_close(&c);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* watch = "off": a change waits for SIGHUP.  (Negative: a bounded wait.) */
START_TEST(test_watch_off_leaves_rotation_to_sighup)
{
	struct h_daemon d;
	int days;

	copy_in_place(h_pki("server.crt"), at("tls.crt"));
	copy_in_place(h_pki("server.key"), at("tls.key"));
	up(&d, "watch-off", "watch = \"off\";", at("tls.crt"), at("tls.key"),
	    NULL);
	copy_by_rename(h_pki("server-soon.crt"), at("tls.crt"));
	copy_by_rename(h_pki("server-soon.key"), at("tls.key"));
	days = wait_served(&d, SOON_LO, SOON_HI, 4000);
	ck_assert_msg(days >= LONG_LO, "watch = \"off\" reloaded by itself");
	ck_assert_int_eq(h_log_count(&d, "changed: reloading", NULL), 0);
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	days = wait_served(&d, SOON_LO, SOON_HI, SETTLE_MS);
	ck_assert_msg(days >= SOON_LO && days <= SOON_HI, "SIGHUP: %d", days);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* watch = "all" reloads on an edit of the configuration (and of an
 * @include); the default "tls" does not. */
START_TEST(test_watch_all_reloads_on_configuration_edits)
{
	struct h_daemon d;
	struct h_daemon_opts o = { .label = "watch-all", .activation = true };
	struct h_tls_opts co = h_client_opts("client", TLS1_3_VERSION);
	struct h_tls c;
	char conf[4096], line[4096], banner[16], inc[512];
	int all = _i == 1;

	/* libconfig reads @include relative to the file's folder only. */
	snprintf(inc, sizeof(inc), "%s/banner.inc", strrchr(dir, '/') + 1);
	write_text(at("banner.inc"), "banner = \"one\\n\";\n");
	snprintf(conf, sizeof(conf), "log = \"stderr\";\nworkers = 1;\n"
	    "watch = \"%s\";\n"
	    "listeners = ( { name = \"echo\"; listen = \"127.0.0.1:@PORT@\";\n"
	    "  mode = \"echo\";\n  @include \"%s\"\n"
	    "  tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";"
	    " ca = \"@PKI@/ca.crt\"; }; } );\n", all ? "all" : "tls", inc);
	o.config = conf;
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "daemon: %s", d.err);
	write_text(at("banner.inc"), "banner = \"two\\n\";\n");
	if (all) {
		H_LOG_EXPECT(&d, line, "banner.inc changed: reloading");
		ck_assert(h_notify_wait(&d, "STATUS=generation 2:",
		    SETTLE_MS) != NULL);
	} else {
		usleep(3000 * 1000);
		ck_assert_int_eq(h_log_count(&d, "changed: reloading", NULL),
		    0);
	}
	ck_assert(h_tls_connect(&c, d.port, &co) == 0);
	ck_assert(h_tls_read_exact(&c, banner, 4, 5000) == 0);
	ck_assert_msg(memcmp(banner, all ? "two\n" : "one\n", 4) == 0,
	    "banner \"%.4s\" with watch = \"%s\"", banner, all ? "all" :
	    "tls");
	h_tls_close(&c);
	H_DAEMON_DOWN(&d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("watch");
	TCase *tc = tcase_create("watch");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_loop_test(tc,
	    test_certificate_replaced_on_disk_is_served_without_a_signal, 0, 3);
	tcase_add_test(tc,
	    test_kubernetes_secret_symlink_swap_is_served_without_a_signal);
	tcase_add_test(tc,
	    test_half_written_certificate_fails_keeps_serving_then_succeeds);
	tcase_add_test(tc, test_ca_replaced_on_disk_applies_without_a_signal);
	tcase_add_test(tc, test_watch_off_leaves_rotation_to_sighup);
	tcase_add_loop_test(tc, test_watch_all_reloads_on_configuration_edits,
	    0, 2);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
