/*
 * check_sandbox: the workers' seccomp filter, against the real tls-echod on
 * loopback.
 *
 * Every worker runs in seccomp filter mode (/proc/PID/status "Seccomp: 2")
 * and with no_new_privs, the master does not; a forbidden call kills the
 * worker by SIGSYS, the master says so and starts a new one, which is
 * filtered as well and serves.  The forbidden calls come from the test
 * build of the daemon (TLS_ECHOD_HOOKS_BIN, built with
 * -DTLS_ECHOD_TEST_HOOKS): sigqueue(worker, SIGUSR1, n) makes it try call n
 * of src/sandbox.h.  The release binary has no such trigger.  With
 * `sandbox = false` or TLS_ECHOD_SANDBOX=0 the same calls pass, and the
 * master and `tls-echod -t` say the filter is off.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* The trigger numbers of src/sandbox.h (enum sandbox_test_call). */
enum {
	T_EXECVE = 1, T_OPENAT, T_PTRACE, T_PACKET, T_INET, T_MMAP_EXEC,
	T_FORK, T_ABORT, T_SHUT_RD, T_SCTP, T_ASAN = 100,
};

static const struct {
	int call;
	const char *name;
} forbidden[] = {
	{ T_EXECVE, "execve" },
	{ T_OPENAT, "openat" },
	{ T_PTRACE, "ptrace" },
	{ T_PACKET, "socket(AF_PACKET)" },
	{ T_INET, "socket(AF_INET) with no TCP backend" },
	{ T_MMAP_EXEC, "mmap(PROT_EXEC)" },
	{ T_FORK, "fork" },
	{ T_SHUT_RD, "shutdown(SHUT_RD) of the shared listening socket" },
};

#define IO_MS 10000
#define SIGSYS_NOTE "killed by signal 31 (Bad system call): its seccomp " \
	"sandbox stopped a system call it does not allow"

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

/* --- helpers -------------------------------------------------------------- */

/* Run the test build of the daemon from now on (this test's process). */
static bool
use_hooks(const char *test)
{
	const char *hooks = getenv("TLS_ECHOD_HOOKS_BIN");

	if (hooks == NULL || hooks[0] == '\0' || access(hooks, X_OK) != 0) {
		printf("%s: skipped: TLS_ECHOD_HOOKS_BIN (the daemon built "
		    "with -DTLS_ECHOD_TEST_HOOKS) is not set or not there\n",
		    test);
		return false;
	}
	ck_assert(setenv("TLS_ECHOD_BIN", hooks, 1) == 0);
	return true;
}

/* The value of field ${key} ("Seccomp") in /proc/${pid}/status, or -1. */
static int
proc_status_field(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	FILE *f;
	int v = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			v = atoi(line + klen + 1);
			break;
		}
	fclose(f);
	return v;
}

/* Seccomp mode 2 (filter) and no_new_privs, or fail naming ${what}. */
static void
expect_filtered(pid_t pid, const char *what)
{
	ck_assert_msg(proc_status_field(pid, "Seccomp") == 2, "%s (pid %ld): "
	    "Seccomp: %d, not 2 (filter)", what, (long)pid,
	    proc_status_field(pid, "Seccomp"));
	ck_assert_msg(proc_status_field(pid, "NoNewPrivs") == 1, "%s (pid "
	    "%ld): NoNewPrivs is not 1", what, (long)pid);
}

/*
 * The one worker of ${d}, once it has finished its set-up: the filter is
 * the last step before the loop, so wait for Seccomp to say 2 (or for
 * ${settle_ms} when it should stay 0).
 */
static pid_t
one_worker(struct h_daemon *d, int want_mode, int settle_ms)
{
	pid_t w[4];
	int64_t end = h_now_ms() + 5000;

	ck_assert_int_eq(h_daemon_workers(d, w, 4, 1, 5000), 1);
	while (want_mode == 2 && proc_status_field(w[0], "Seccomp") != 2 &&
	    h_now_ms() < end)
		usleep(5000);
	if (want_mode != 2)
		usleep((useconds_t)settle_ms * 1000);
	return w[0];
}

/* A worker of ${d} other than ${old}, within ${timeout_ms}, or -1. */
static pid_t
replacement(struct h_daemon *d, pid_t old, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;

	for (;;) {
		pid_t w[4];
		int n = h_children_of(d->pid, w, 4), i;

		for (i = 0; i < n && i < 4; i++) {
			char st;

			if (w[i] != old && h_proc_ppid(w[i], &st) == d->pid &&
			    st != 'Z' && proc_status_field(w[i], "Seccomp") >= 0)
				return w[i];
		}
		if (h_now_ms() >= end)
			return -1;
		usleep(5000);
	}
}

/* One echo round-trip with the test client certificate. */
static void
echo_ok(struct h_daemon *d, const char *when)
{
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_tls c;
	char tail[1500];

	ck_assert_msg(h_tls_connect(&c, d->port, &o) == 0, "%s: connect: %s; "
	    "log ends:\n%s", when, c.err, h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(h_tls_roundtrip(&c, "sandboxed\n", 10, IO_MS) == 0,
	    "%s: no echo: %s", when, c.err);
	h_tls_close(&c);
}

static void
trigger(pid_t pid, int call)
{
	union sigval v = { .sival_int = call };

	ck_assert_msg(sigqueue(pid, SIGUSR1, v) == 0, "sigqueue %ld: %s",
	    (long)pid, strerror(errno));
}

/*
 * Make worker ${w} of ${d} try ${call}; it must die by SIGSYS, the master
 * must say so and start a filtered replacement that serves (echoes, if
 * ${echo}).  Returns the replacement.
 */
static pid_t
expect_killed(struct h_daemon *d, pid_t w, int call, const char *name,
    bool echo)
{
	char line[4096], needle[160], tail[1500];
	pid_t repl;
	int64_t end;

	trigger(w, call);
	snprintf(needle, sizeof(needle), "worker 0 (pid %ld) " SIGSYS_NOTE,
	    (long)w);
	H_LOG_EXPECT(d, line, needle, "(the kernel log names it: audit "
	    "type=1326); restarting in ");
	end = h_now_ms() + 3000;
	while (!h_pid_gone(w) && h_proc_ppid(w, NULL) == d->pid &&
	    h_now_ms() < end)
		usleep(5000);
	snprintf(needle, sizeof(needle), "test call %d returned", call);
	ck_assert_msg(h_log_count(d, needle, NULL) == 0, "%s: the worker "
	    "made the call and lived:\n%s", name, h_log_tail(d, tail,
	    sizeof(tail)));
	repl = replacement(d, w, 5000);
	ck_assert_msg(repl > 0, "%s: no new worker within 5 s; log ends:\n%s",
	    name, h_log_tail(d, tail, sizeof(tail)));
	(void)one_worker(d, 2, 0);
	expect_filtered(repl, "the replacement worker");
	if (echo)
		echo_ok(d, "after the replacement");
	return repl;
}

/* --- tests ---------------------------------------------------------------- */

/*
 * The release binary: every worker filtered, of the first generation and
 * after a reload; the master unfiltered (it forks, reads key files on
 * reload, and talks to systemd).
 */
START_TEST(test_every_worker_runs_filtered_the_master_does_not)
{
	struct h_daemon d;
	pid_t w[4], w2[4];
	int n, i, j;
	int64_t end;
	char line[1024];

	H_DAEMON_UP(&d, "filtered", "workers = 2;", NULL);
	n = h_daemon_workers(&d, w, 4, 2, 5000);
	ck_assert_int_eq(n, 2);
	echo_ok(&d, "first generation");
	for (i = 0; i < 2; i++)
		expect_filtered(w[i], "worker of generation 1");
	ck_assert_msg(proc_status_field(d.pid, "Seccomp") == 0, "the master "
	    "is filtered (Seccomp: %d)", proc_status_field(d.pid, "Seccomp"));
	ck_assert_int_eq(h_log_count(&d, "without their seccomp filter",
	    NULL), 0);

	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, "reloaded: generation 2 serving");
	/* The retired pair leaves (no connections); the new pair stays. */
	end = h_now_ms() + 5000;
	for (;;) {
		bool fresh = true;

		n = h_daemon_workers(&d, w2, 4, 2, 1000);
		for (i = 0; i < n && i < 4; i++)
			for (j = 0; j < 2; j++)
				fresh = fresh && w2[i] != w[j];
		if (n == 2 && fresh)
			break;
		ck_assert_msg(h_now_ms() < end, "generation 1 still there");
		usleep(10000);
	}
	echo_ok(&d, "second generation");
	for (i = 0; i < 2; i++)
		expect_filtered(w2[i], "worker of generation 2");
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * Each forbidden call kills the worker at once (SIGSYS), the master logs
 * it as the sandbox's doing and restarts it with back-off; the new worker
 * is filtered and serves.  An echo-only configuration has no backend, so
 * even socket(AF_INET) is out.
 */
START_TEST(test_forbidden_call_kills_worker_by_sigsys_master_logs_and_respawns)
{
	struct h_daemon d;
	pid_t w;

	if (!use_hooks("test_forbidden_call_kills_worker"))
		return;
	H_DAEMON_UP(&d, "forbidden", "workers = 1;", NULL);
	w = one_worker(&d, 2, 0);
	expect_filtered(w, "worker");
	echo_ok(&d, "before");
	(void)expect_killed(&d, w, forbidden[_i].call, forbidden[_i].name,
	    true);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* The second death in a row doubles the back-off, as for any crash. */
START_TEST(test_repeated_violations_back_off_like_any_crash)
{
	struct h_daemon d;
	char line[4096], needle[96];
	pid_t w, repl;

	if (!use_hooks("test_repeated_violations_back_off"))
		return;
	H_DAEMON_UP(&d, "backoff", "workers = 1;", NULL);
	w = one_worker(&d, 2, 0);
	repl = expect_killed(&d, w, T_EXECVE, "execve", true);
	trigger(repl, T_OPENAT);
	snprintf(needle, sizeof(needle), "(pid %ld) killed by signal 31 ",
	    (long)repl);
	H_LOG_EXPECT(&d, line, needle, "; restarting in 200 ms");
	ck_assert(replacement(&d, repl, 5000) > 0);
	echo_ok(&d, "after the second violation");
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * abort() (assert, _FORTIFY_SOURCE, the stack protector) is allowed: the
 * worker dies by SIGABRT as it would unfiltered, and the log says so.
 */
START_TEST(test_abort_in_filtered_worker_is_sigabrt_not_sigsys)
{
	struct h_daemon d;
	char line[4096], needle[96];
	pid_t w;

	if (!use_hooks("test_abort_in_filtered_worker"))
		return;
	H_DAEMON_UP(&d, "abort", "workers = 1;", NULL);
	w = one_worker(&d, 2, 0);
	trigger(w, T_ABORT);
	snprintf(needle, sizeof(needle), "(pid %ld) killed by signal 6 ",
	    (long)w);
	H_LOG_EXPECT(&d, line, needle, "restarting in 100 ms");
	ck_assert_msg(strstr(line, "seccomp") == NULL, "%s", line);
	ck_assert(replacement(&d, w, 5000) > 0);
	echo_ok(&d, "after the abort");
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * A relay to a TCP backend may open AF_INET stream sockets (and the
 * socket options net_connect sets), nothing more: AF_PACKET still kills.
 */
START_TEST(test_relay_worker_may_open_only_its_backends_family)
{
	struct h_daemon_opts o = {
		.label = "relay-family",
		.config = "log = \"stderr\"; workers = 1;\n"
		    "listeners = ({ name = \"echo\"; "
		    "listen = \"127.0.0.1:@PORT@\"; mode = \"relay\";\n"
		    "  backend = { address = \"127.0.0.1:2\"; };\n"
		    "  tls = { cert = \"@PKI@/server.crt\"; "
		    "key = \"@PKI@/server.key\"; ca = \"@PKI@/ca.crt\"; }; });\n",
		.activation = true,
	};
	struct h_daemon d;
	char line[4096];
	pid_t w;

	if (!use_hooks("test_relay_worker_may_open_only_its_backends_family"))
		return;
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "daemon did not start: %s",
	    d.err);
	w = one_worker(&d, 2, 0);
	trigger(w, T_INET);
	H_LOG_EXPECT(&d, line, "test call 5 returned: success");
	ck_assert_msg(proc_status_field(w, "Seccomp") == 2, "worker gone "
	    "after an allowed socket()");
	/* Its backend is closed (port 2): no echo to check.  The family
	 * is allowed, not another protocol in it (SCTP, MPTCP). */
	w = expect_killed(&d, w, T_SCTP, "socket(AF_INET, SOCK_STREAM, "
	    "IPPROTO_SCTP)", false);
	(void)expect_killed(&d, w, T_PACKET, "socket(AF_PACKET)", false);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * Off by `sandbox = false` (_i 0) or TLS_ECHOD_SANDBOX=0 (_i 1): workers
 * are unfiltered, a "forbidden" call passes, the master warns at start and
 * `tls-echod -t` says so.
 */
START_TEST(test_switched_off_workers_are_unfiltered_and_it_is_said)
{
	static const char *const env_off[] = { "TLS_ECHOD_SANDBOX=0", NULL };
	const char *reason = _i == 0 ? "sandbox = false" :
	    "TLS_ECHOD_SANDBOX=0 in the environment";
	struct h_daemon_opts o = {
		.label = _i == 0 ? "off-config" : "off-env",
		.globals = _i == 0 ? "workers = 1; sandbox = false;" :
		    "workers = 1;",
		.activation = true,
		.env = _i == 0 ? NULL : env_off,
	};
	struct h_daemon d;
	char line[4096], out[PATH_MAX + 8], err[256];
	const char *bin;
	pid_t w;

	if (!use_hooks("test_switched_off_workers_are_unfiltered"))
		return;
	bin = getenv("TLS_ECHOD_BIN");
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "daemon did not start: %s",
	    d.err);
	H_LOG_EXPECT(&d, line, "warning: ", reason,
	    ": workers run without their seccomp filter");
	w = one_worker(&d, 0, 200);
	ck_assert_msg(proc_status_field(w, "Seccomp") == 0, "worker has "
	    "Seccomp: %d with the sandbox off", proc_status_field(w,
	    "Seccomp"));
	/* Without the filter, still no way back up through setuid. */
	ck_assert_msg(proc_status_field(w, "NoNewPrivs") == 1, "worker has "
	    "NoNewPrivs: %d with the sandbox off", proc_status_field(w,
	    "NoNewPrivs"));
	trigger(w, T_OPENAT);
	H_LOG_EXPECT(&d, line, "test call 2 returned: success");
	ck_assert_int_eq(h_log_count(&d, "killed by signal", NULL), 0);
	echo_ok(&d, "unfiltered");

	/* tls-echod -t on the same file, same environment. */
	{
		const char *argv[] = { bin, "-t", "-c", d.conf_path, NULL };
		char *text;
		FILE *f;
		long len;
		int st;

		snprintf(out, sizeof(out), "%s.t-out", d.conf_path);
		(void)unlink(out);
		if (_i == 1)
			ck_assert(setenv("TLS_ECHOD_SANDBOX", "0", 1) == 0);
		st = h_run(argv, out, 20000, err, sizeof(err));
		ck_assert_msg(st == 0, "tls-echod -t: %d %s", st, err);
		f = fopen(out, "re");
		ck_assert(f != NULL);
		ck_assert(fseek(f, 0, SEEK_END) == 0);
		len = ftell(f);
		rewind(f);
		text = calloc(1, (size_t)len + 1);
		ck_assert(text != NULL);
		ck_assert(fread(text, 1, (size_t)len, f) == (size_t)len);
		fclose(f);
		snprintf(line, sizeof(line), "warning: %s: workers run without "
		    "their seccomp filter", reason);
		ck_assert_msg(strstr(text, line) != NULL, "tls-echod -t does not "
		    "say \"%s\":\n%s", line, text);
		free(text);
	}
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * Sanitizer builds (check-asan) only: an ASan report from a filtered
 * worker still reaches its log_path file (the runtime's calls for it are
 * allowed in such builds), and the worker exits with ASan's exit code.
 */
START_TEST(test_asan_report_from_filtered_worker_reaches_log_path)
{
	const char *san = getenv("TEST_SANITIZED");
	char dir[PATH_MAX], opt[PATH_MAX + 128], line[4096], path[PATH_MAX + 300];
	const char *env_asan[] = { opt, NULL };
	struct h_daemon_opts o = {
		.label = "asan-report",
		.globals = "workers = 1;",
		.activation = true,
		.env = env_asan,
	};
	struct h_daemon d;
	struct dirent *e;
	DIR *dp;
	bool found = false;
	pid_t w;

	if (san == NULL || strcmp(san, "1") != 0) {
		printf("test_asan_report_from_filtered_worker: skipped: not a "
		    "sanitizer build\n");
		return;
	}
	if (!use_hooks("test_asan_report_from_filtered_worker"))
		return;
	/* Not SAN_LOG_DIR: check-san-logs.sh fails the stage on any file. */
	snprintf(dir, sizeof(dir), "%s", h_tmp("asan-report-logs"));
	/* Workers run as another user (nobody, by default): the report is
	 * theirs to write, as in SAN_LOG_DIR. */
	(void)mkdir(dir, 01777);
	ck_assert(chmod(dir, 01777) == 0);
	/* symbolize=0: with llvm-symbolizer installed, the runtime would
	 * start it as a child, which the filter (rightly) kills. */
	snprintf(opt, sizeof(opt), "ASAN_OPTIONS=log_path=%s/san:"
	    "detect_leaks=0:exitcode=86:abort_on_error=0:symbolize=0", dir);
	ck_assert_msg(h_daemon_start(&d, &o) == 0, "daemon did not start: %s",
	    d.err);
	w = one_worker(&d, 2, 0);
	trigger(w, T_ASAN);
	H_LOG_EXPECT(&d, line, "worker 0 (pid", "exited with status 86");
	ck_assert_int_eq(h_log_count(&d, "killed by signal 31", NULL), 0);
	dp = opendir(dir);
	ck_assert(dp != NULL);
	while ((e = readdir(dp)) != NULL && !found) {
		FILE *f;
		char l[512];

		if (strncmp(e->d_name, "san.", 4) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((f = fopen(path, "re")) == NULL)
			continue;
		while (fgets(l, sizeof(l), f) != NULL)
			if (strstr(l, "heap-buffer-overflow") != NULL)
				found = true;
		fclose(f);
	}
	closedir(dp);
	ck_assert_msg(found, "no heap-buffer-overflow report in %s/san.*",
	    dir);
	ck_assert(replacement(&d, w, 5000) > 0);
	echo_ok(&d, "after the report");
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */

static Suite *
sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc = tcase_create("seccomp");

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_every_worker_runs_filtered_the_master_does_not);
	tcase_add_loop_test(tc,
	    test_forbidden_call_kills_worker_by_sigsys_master_logs_and_respawns,
	    0, (int)(sizeof(forbidden) / sizeof(forbidden[0])));
	tcase_add_test(tc, test_repeated_violations_back_off_like_any_crash);
	tcase_add_test(tc, test_abort_in_filtered_worker_is_sigabrt_not_sigsys);
	tcase_add_test(tc, test_relay_worker_may_open_only_its_backends_family);
	tcase_add_loop_test(tc,
	    test_switched_off_workers_are_unfiltered_and_it_is_said, 0, 2);
	tcase_add_test(tc, test_asan_report_from_filtered_worker_reaches_log_path);
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
		fprintf(stderr, "check_sandbox: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(sandbox_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
