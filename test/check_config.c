/*
 * check_config: the configuration loader, and the daemon's config test.
 *
 * Suite "cfg_load": unit tests of cfg_load()/cfg_free() on configuration
 * text written to files in $TEST_TMPDIR.  Failures must come back as
 * "FILE:LINE: SETTING: problem" with the line of the offending setting.
 *
 * Suite "tls-echod -t": runs $TLS_ECHOD_BIN (fork/exec, bounded wait) on
 * configurations that use the test PKI in $TEST_PKI, so the TLS material
 * checks of tlsctx are covered through the real command line.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "config.h"

#define RUN_TIMEOUT_MS 20000 /* one tls-echod run */

static const char *tmpdir; /* $TEST_TMPDIR */
static const char *pki;    /* $TEST_PKI */
static const char *bin;    /* $TLS_ECHOD_BIN */

/* One-line tls group pointing at readable dummy files (cfg_load only checks
 * that they can be read; parsing them is tlsctx's job). */
static char tls_line[3 * PATH_MAX];

/* --- helpers ------------------------------------------------------------ */

static char *__attribute__((format(printf, 1, 2)))
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	ck_assert_msg(n >= 0, "vasprintf failed");
	return s;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "cannot create %s: %s", path, strerror(errno));
	ck_assert_msg(fputs(text, f) >= 0, "cannot write %s", path);
	ck_assert_msg(fclose(f) == 0, "cannot write %s", path);
}

static void
make_dir(const char *path)
{
	ck_assert_msg(mkdir(path, 0755) == 0 || errno == EEXIST,
	    "cannot create %s: %s", path, strerror(errno));
}

/*
 * "$TEST_TMPDIR/NAME" in one of a few static buffers: nothing to free, so a
 * failing assertion leaks nothing even with CK_FORK=no.
 */
static const char *
tmp_path(const char *name)
{
	static char ring[8][PATH_MAX];
	static unsigned next;
	char *p = ring[next++ % 8];

	snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
	return p;
}

/* Last load: the file, the message, the result. */
static char cur_path[PATH_MAX];
static char err[2048];

/* Write ${text} to $TEST_TMPDIR/${name} and cfg_load it. */
static struct cfg *
load_text(const char *name, const char *text)
{
	snprintf(cur_path, sizeof(cur_path), "%s/%s", tmpdir, name);
	write_file(cur_path, text);
	err[0] = '\0';
	return cfg_load(cur_path, err, sizeof(err));
}

static struct cfg *__attribute__((format(printf, 2, 3)))
load_fmt(const char *name, const char *fmt, ...)
{
	struct cfg *c;
	va_list ap;
	char *text;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	ck_assert_msg(n >= 0, "vasprintf failed");
	c = load_text(name, text);
	free(text);
	return c;
}

/* A config with one listener whose group holds ${body} (one or more lines
 * starting at line 4).  Line 1: workers, line 2: "listeners = (", line 3:
 * "{", line 4 on: ${body}, then the tls group and the closing lines. */
static struct cfg *
load_listener_body(const char *name, const char *body)
{
	return load_fmt(name,
	    "workers = 1;\n"
	    "listeners = (\n"
	    "  {\n"
	    "%s\n"
	    "    %s\n"
	    "  }\n"
	    ");\n", body, tls_line);
}

/*
 * The message must be "${path}:${line}: ${setting}: ..." (line 0: no line,
 * "${path}: ${setting}: ...") and contain ${keyword}.
 */
static void
assert_err_at(int at, const struct cfg *c, const char *path, int line,
    const char *setting, const char *keyword)
{
	char prefix[PATH_MAX + 256];

	ck_assert_msg(c == NULL, "line %d: loading %s succeeded, expected an "
	    "error about %s", at, path, setting);
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: %s", path, line,
		    setting);
	else
		snprintf(prefix, sizeof(prefix), "%s: %s", path, setting);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
	    "line %d: message \"%s\" does not start with \"%s\"", at, err,
	    prefix);
	/* The setting is the whole name, not a prefix of a longer one. */
	ck_assert_msg(err[strlen(prefix)] == ':' ||
	    err[strlen(prefix)] == ' ', "line %d: message \"%s\" names a "
	    "different setting than \"%s\"", at, err, setting);
	ck_assert_msg(strstr(err, keyword) != NULL,
	    "line %d: message \"%s\" lacks \"%s\"", at, err, keyword);
}

#define ASSERT_ERR(c, line, setting, keyword) \
	assert_err_at(__LINE__, (c), cur_path, (line), (setting), (keyword))

#define ASSERT_LOADED(c) \
	ck_assert_msg((c) != NULL, "loading %s failed: %s", cur_path, err)

/* Same file (device and inode)? */
static bool
same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Split "FILE:LINE: rest" into ${file} and ${*line}; false if no match. */
static bool
split_location(const char *msg, char *file, size_t filelen, int *line)
{
	const char *p;

	for (p = strchr(msg, ':'); p != NULL; p = strchr(p + 1, ':')) {
		char *end;
		long n = strtol(p + 1, &end, 10);

		if (end != p + 1 && *end == ':' && n > 0 && n < INT_MAX) {
			if ((size_t)(p - msg) >= filelen)
				return false;
			memcpy(file, msg, (size_t)(p - msg));
			file[p - msg] = '\0';
			*line = (int)n;
			return true;
		}
	}
	return false;
}

static unsigned
online_cpus_capped(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > 256 ? 256u : (unsigned)n;
}

/* --- A. cfg_load: files and syntax -------------------------------------- */

START_TEST(missing_file_reports_cannot_read)
{
	const char *path = tmp_path("no-such-file.conf");
	struct cfg *c;

	unlink(path);
	c = cfg_load(path, err, sizeof(err));
	snprintf(cur_path, sizeof(cur_path), "%s", path);
	ASSERT_ERR(c, 0, "cannot read", "No such file");
}
END_TEST

START_TEST(missing_folder_reports_cannot_read)
{
	const char *path = tmp_path("no-such-dir/x.conf");
	struct cfg *c = cfg_load(path, err, sizeof(err));

	snprintf(cur_path, sizeof(cur_path), "%s", path);
	ASSERT_ERR(c, 0, "cannot read", "No such file");
}
END_TEST

START_TEST(unreadable_file_reports_cannot_read)
{
	struct cfg *c;

	if (geteuid() == 0) {
		/* root reads mode 000 files: nothing to prove here. */
		fprintf(stderr, "unreadable_file_reports_cannot_read: skipped "
		    "(running as root)\n");
		return;
	}
	snprintf(cur_path, sizeof(cur_path), "%s/mode000.conf", tmpdir);
	write_file(cur_path, "workers = 1;\n");
	ck_assert_int_eq(chmod(cur_path, 0), 0);
	c = cfg_load(cur_path, err, sizeof(err));
	chmod(cur_path, 0600);
	ASSERT_ERR(c, 0, "cannot read", "Permission denied");
}
END_TEST

/*
 * libconfig 1.5 hands an @include of a directory to flex, which calls
 * exit(2): the loader must refuse it first (a master reloading such a file
 * would otherwise die), and likewise a FIFO (it would block).
 */
START_TEST(include_of_directory_or_fifo_is_refused_not_fatal)
{
	struct cfg *c;

	make_dir(tmp_path("inc-dir.d"));
	c = load_text("inc-dir.conf", "workers = 1;\n@include \"inc-dir.d\"\n");
	ASSERT_ERR(c, 2, "@include \"inc-dir.d\"", "not a regular file");
	unlink(tmp_path("inc-fifo"));
	ck_assert_int_eq(mkfifo(tmp_path("inc-fifo"), 0600), 0);
	/* Nested: the FIFO is named by an included file, on its line 2. */
	write_file(tmp_path("inc-outer.inc"), "workers = 1;\n@include \"inc-fifo\"\n");
	c = load_text("inc-fifo.conf", "/* @include \"inc-dir.d\" */\n"
	    "@include \"inc-outer.inc\"\n");
	ck_assert_msg(c == NULL && strstr(err, "inc-outer.inc:2: @include "
	    "\"inc-fifo\": not a regular file") != NULL, "got: %s", err);
	unlink(tmp_path("inc-fifo"));
	c = cfg_load(tmpdir, err, sizeof(err));
	ck_assert_msg(c == NULL && strstr(err, "a directory") != NULL,
	    "loading a directory: %s", err);
}
END_TEST

/* A configuration from a FIFO (or /dev/stdin) is read once, whole. */
START_TEST(config_from_a_fifo_is_read_once_and_loaded)
{
	char *text = xasprintf("workers = 3;\nlisteners = ({ name = \"p\"; "
	    "listen = \"127.0.0.1:1\";\n %s });\n", tls_line);
	const char *fifo = tmp_path("conf-fifo");
	struct cfg *c;
	pid_t pid;
	int st;

	unlink(fifo);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		FILE *f = fopen(fifo, "w");

		_exit(f != NULL && fputs(text, f) >= 0 && fclose(f) == 0 ?
		    0 : 1);
	}
	c = cfg_load(fifo, err, sizeof(err));
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	free(text);
	unlink(fifo);
	ck_assert_msg(c != NULL, "loading from a FIFO: %s", err);
	ck_assert_uint_eq(c->workers, 3);
	ck_assert_str_eq(c->listeners[0].name, "p");
	cfg_free(c);
}
END_TEST

/* cfg_load_string: the same loader on text, named and resolved as ${path}. */
START_TEST(load_string_resolves_against_the_named_file)
{
	char *text = xasprintf("listeners = ({ name = \"s\"; listen = "
	    "\"127.0.0.1:1\";\n %s });\n", tls_line);
	struct cfg *c;

	snprintf(cur_path, sizeof(cur_path), "%s/not-written.conf", tmpdir);
	c = cfg_load_string(text, cur_path, err, sizeof(err));
	free(text);
	ASSERT_LOADED(c);
	ck_assert_str_eq(c->path, cur_path);
	ck_assert_str_eq(c->listeners[0].name, "s");
	cfg_free(c);
	c = cfg_load_string("workers = ;\n", cur_path, err, sizeof(err));
	ASSERT_ERR(c, 1, "syntax error", "syntax error");
}
END_TEST

START_TEST(syntax_error_reports_file_and_line)
{
	struct cfg *c = load_text("syntax1.conf",
	    "workers = 2;\n"
	    "log = \"auto\";\n"
	    "handshake_timeout = = 5;\n"
	    "listeners = ();\n");

	ASSERT_ERR(c, 3, "syntax error", "syntax error");
}
END_TEST

START_TEST(syntax_error_inside_listener_reports_its_line)
{
	struct cfg *c = load_fmt("syntax2.conf",
	    "workers = 2;\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    %s\n"
	    "    max_connections = 10 20;\n"
	    "  }\n"
	    ");\n", tls_line);

	ASSERT_ERR(c, 7, "syntax error", "syntax error");
}
END_TEST

/* --- A. unknown settings ------------------------------------------------ */

START_TEST(unknown_global_setting_is_refused)
{
	struct cfg *c = load_fmt("unknown-global.conf",
	    "log = \"auto\";\n"
	    "worker = 2;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_ERR(c, 2, "worker", "unknown setting");
	/* The message lists what would have been right. */
	ck_assert_msg(strstr(err, "workers") != NULL, "message \"%s\"", err);
}
END_TEST

START_TEST(unknown_listener_setting_is_refused)
{
	struct cfg *c = load_listener_body("unknown-listener.conf",
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    handshake_timout = 3;");

	ASSERT_ERR(c, 6, "listeners[0].handshake_timout", "unknown setting");
}
END_TEST

START_TEST(unknown_tls_setting_is_refused)
{
	struct cfg *c = load_fmt("unknown-tls.conf",
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "      cert = \"%s/ut.crt\";\n"
	    "      crt = \"%s/ut.crt\";\n"
	    "      key = \"%s/ut.key\";\n"
	    "      ca = \"%s/ut-ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", tmpdir, tmpdir, tmpdir, tmpdir);

	ASSERT_ERR(c, 7, "listeners[0].tls.crt", "unknown setting");
}
END_TEST

START_TEST(unknown_setting_in_second_listener_names_its_index)
{
	struct cfg *c = load_fmt("unknown-second.conf",
	    "listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:8443\"; %s },\n"
	    "  {\n"
	    "    name = \"b\";\n"
	    "    listen = \"127.0.0.1:8444\";\n"
	    "    colour = \"blue\";\n"
	    "    %s\n"
	    "  }\n"
	    ");\n", tls_line, tls_line);

	ASSERT_ERR(c, 6, "listeners[1].colour", "unknown setting");
}
END_TEST

/* --- A. wrong types ----------------------------------------------------- */

START_TEST(string_for_workers_is_refused)
{
	struct cfg *c = load_fmt("type-workers.conf",
	    "workers = \"4\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_ERR(c, 1, "workers", "must be an integer");
}
END_TEST

START_TEST(string_for_timeout_is_refused)
{
	struct cfg *c = load_fmt("type-timeout.conf",
	    "workers = 4;\n"
	    "shutdown_timeout = \"30s\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_ERR(c, 2, "shutdown_timeout", "must be a number");
}
END_TEST

START_TEST(decimal_for_max_connections_is_refused)
{
	struct cfg *c = load_listener_body("type-maxconn.conf",
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    max_connections = 10.5;");

	ASSERT_ERR(c, 6, "listeners[0].max_connections", "must be an integer");
}
END_TEST

START_TEST(integer_for_listener_name_is_refused)
{
	struct cfg *c = load_listener_body("type-name.conf",
	    "    name = 42;\n"
	    "    listen = \"127.0.0.1:8443\";");

	ASSERT_ERR(c, 4, "listeners[0].name", "must be a string");
}
END_TEST

START_TEST(integer_for_listen_is_refused)
{
	struct cfg *c = load_listener_body("type-listen.conf",
	    "    name = \"a\";\n"
	    "    listen = 8443;");

	ASSERT_ERR(c, 5, "listeners[0].listen", "must be a string");
}
END_TEST

START_TEST(integer_for_tls_key_is_refused)
{
	struct cfg *c = load_fmt("type-key.conf",
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "      cert = \"%s/ut.crt\";\n"
	    "      key = 600;\n"
	    "      ca = \"%s/ut-ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", tmpdir, tmpdir);

	ASSERT_ERR(c, 7, "listeners[0].tls.key", "must be a string");
}
END_TEST

START_TEST(integer_for_log_is_refused)
{
	struct cfg *c = load_fmt("type-log.conf",
	    "log = 1;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_ERR(c, 1, "log", "must be a string");
}
END_TEST

START_TEST(sandbox_must_be_a_boolean_and_false_turns_it_off)
{
	struct cfg *c = load_fmt("type-sandbox.conf",
	    "sandbox = \"no\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_ERR(c, 1, "sandbox", "must be a boolean");
	c = load_fmt("sandbox-off.conf",
	    "sandbox = false;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	ASSERT_LOADED(c);
	ck_assert(!c->sandbox);
	cfg_free(c);
}
END_TEST

START_TEST(tls_that_is_not_a_group_is_refused)
{
	struct cfg *c = load_text("type-tls.conf",
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = \"server.crt\";\n"
	    "  }\n"
	    ");\n");

	ASSERT_ERR(c, 5, "listeners[0].tls", "must be a group");
}
END_TEST

START_TEST(listeners_that_is_not_a_list_is_refused)
{
	struct cfg *c = load_text("type-listeners1.conf",
	    "workers = 1;\n"
	    "listeners = \"127.0.0.1:8443\";\n");

	ASSERT_ERR(c, 2, "listeners", "must be a list");
}
END_TEST

START_TEST(listeners_as_a_single_group_is_refused)
{
	struct cfg *c = load_fmt("type-listeners2.conf",
	    "workers = 1;\n"
	    "listeners = { name = \"a\"; listen = \"127.0.0.1:8443\"; %s };\n",
	    tls_line);

	ASSERT_ERR(c, 2, "listeners", "must be a list");
}
END_TEST

START_TEST(listener_that_is_not_a_group_is_refused)
{
	/*
	 * The comma shares the string's line on purpose: libconfig 1.5 dates a
	 * scalar list element at the token after it.
	 */
	struct cfg *c = load_fmt("type-listener.conf",
	    "listeners = (\n"
	    "  \"127.0.0.1:8443\",\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:8443\"; %s }\n"
	    ");\n", tls_line);

	ASSERT_ERR(c, 2, "listeners[0]", "must be a group");
}
END_TEST

/* --- A. ranges ---------------------------------------------------------- */

static const struct {
	const char *text;    /* one global setting, written at line 2 */
	const char *setting;
} global_out_of_range[] = {
	{ "workers = 0;", "workers" },
	{ "workers = 1000;", "workers" },
	{ "workers = -1;", "workers" },
	{ "workers = 100000000000L;", "workers" },
	{ "handshake_timeout = 0;", "handshake_timeout" },
	{ "handshake_timeout = 0.05;", "handshake_timeout" },
	{ "idle_timeout = -1;", "idle_timeout" },
	{ "idle_timeout = -0.5;", "idle_timeout" },
	{ "shutdown_timeout = -5;", "shutdown_timeout" },
	{ "max_connections = 0;", "max_connections" },
	{ "max_connections = 2000000;", "max_connections" },
	{ "log_refusals_per_second = -1;", "log_refusals_per_second" },
	{ "log_refusals_per_second = 1000001;", "log_refusals_per_second" },
};

START_TEST(global_value_out_of_range_is_refused)
{
	char name[64];
	struct cfg *c;

	snprintf(name, sizeof(name), "range-global-%d.conf", _i);
	c = load_fmt(name,
	    "log = \"stderr\";\n"
	    "%s\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    global_out_of_range[_i].text, tls_line);
	ASSERT_ERR(c, 2, global_out_of_range[_i].setting, "out of range");
}
END_TEST

static const struct {
	const char *text;    /* one listener setting, written at line 6 */
	const char *setting;
} listener_out_of_range[] = {
	{ "handshake_timeout = 0;", "listeners[0].handshake_timeout" },
	{ "idle_timeout = -1;", "listeners[0].idle_timeout" },
	{ "max_connections = 0;", "listeners[0].max_connections" },
};

START_TEST(listener_value_out_of_range_is_refused)
{
	char name[64], body[256];
	struct cfg *c;

	snprintf(name, sizeof(name), "range-listener-%d.conf", _i);
	snprintf(body, sizeof(body), "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n    %s",
	    listener_out_of_range[_i].text);
	c = load_listener_body(name, body);
	ASSERT_ERR(c, 6, listener_out_of_range[_i].setting, "out of range");
}
END_TEST

START_TEST(range_limits_are_accepted)
{
	struct cfg *c = load_fmt("range-limits.conf",
	    "workers = 256;\n"
	    "shutdown_timeout = 0;\n"
	    "handshake_timeout = 0.1;\n"
	    "idle_timeout = 0;\n"
	    "max_connections = 1;\n"
	    "log_refusals_per_second = 1000000;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->log_refusals_per_s, 1000000);
	ck_assert_uint_eq(c->workers, 256);
	ck_assert_uint_eq(c->shutdown_timeout_ms, 0);
	ck_assert_uint_eq(c->listeners[0].handshake_timeout_ms, 100);
	ck_assert_uint_eq(c->listeners[0].idle_timeout_ms, 0);
	ck_assert_uint_eq(c->listeners[0].max_connections, 1);
	cfg_free(c);

	c = load_fmt("range-limits-low.conf",
	    "workers = 1;\n"
	    "log_refusals_per_second = 0;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->workers, 1);
	ck_assert_uint_eq(c->log_refusals_per_s, 0);
	cfg_free(c);
}
END_TEST

/* metrics: where the master serves /metrics, /healthz, /readyz. */
static const struct {
	const char *text;  /* the metrics line, written at line 2 */
	const char *why;
} metrics_bad[] = {
	{ "metrics = \"127.0.0.1\";", "port missing" },
	{ "metrics = \"127.0.0.1:0\";", "port must be" },
	{ "metrics = \"*:0\";", "port must be" },
	{ "metrics = \"unix:relative.sock\";", "unix:/absolute/path" },
	{ "metrics = \"unix:\";", "unix:/absolute/path" },
	{ "metrics = \"example.com:9180\";", "bad" },
	{ "metrics = 9180;", "must be a string" },
	/* The listener's own address: plain HTTP never shares a TLS port. */
	{ "metrics = \"127.0.0.1:8443\";", "the address of listener \"a\"" },
};

START_TEST(metrics_address_is_checked_with_file_and_line)
{
	char name[64];
	struct cfg *c;

	snprintf(name, sizeof(name), "metrics-bad-%d.conf", _i);
	c = load_fmt(name,
	    "log = \"stderr\";\n"
	    "%s\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    metrics_bad[_i].text, tls_line);
	ASSERT_ERR(c, 2, "metrics", metrics_bad[_i].why);
}
END_TEST

START_TEST(metrics_addresses_are_accepted_and_off_by_default)
{
	static const char *const ok[] = {
		"metrics = \"127.0.0.1:9180\";", "metrics = \"[::1]:9180\";",
		"metrics = \"*:9180\";", "metrics = \"localhost:9180\";",
		"metrics = \"unix:/run/tls-echod/metrics.sock\";",
		"metrics = \"127.0.0.2:8443\";",
	};
	char name[64];
	struct cfg *c;
	size_t i;

	c = load_fmt("metrics-unset.conf", "listeners = ( { name = \"a\"; "
	    "listen = \"127.0.0.1:8443\"; %s } );\n", tls_line);
	ASSERT_LOADED(c);
	ck_assert_ptr_null(c->metrics);
	cfg_free(c);
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(name, sizeof(name), "metrics-ok-%zu.conf", i);
		c = load_fmt(name, "%s\nlisteners = ( { name = \"a\"; listen = "
		    "\"127.0.0.1:8443\"; %s } );\n", ok[i], tls_line);
		ASSERT_LOADED(c);
		ck_assert_ptr_nonnull(c->metrics);
		ck_assert_int_eq(c->metrics_line, 1);
		ck_assert_uint_gt(c->metrics_addrlen, 0);
		cfg_free(c);
	}
}
END_TEST

/* --- A. required settings ----------------------------------------------- */

START_TEST(config_without_listeners_is_refused)
{
	struct cfg *c = load_text("req-nolisteners.conf",
	    "workers = 2;\n"
	    "log = \"auto\";\n");

	/* Nothing in the file to point at: no line number. */
	ASSERT_ERR(c, 0, "listeners", "required setting missing");
}
END_TEST

START_TEST(empty_file_is_refused_for_missing_listeners)
{
	struct cfg *c = load_text("req-empty.conf", "");

	ASSERT_ERR(c, 0, "listeners", "required setting missing");
}
END_TEST

START_TEST(empty_listeners_list_is_refused)
{
	struct cfg *c = load_text("req-emptylist.conf",
	    "workers = 2;\n"
	    "\n"
	    "listeners = ( );\n");

	ASSERT_ERR(c, 3, "listeners", "no listener");
}
END_TEST

START_TEST(listener_without_name_is_refused)
{
	struct cfg *c = load_listener_body("req-name.conf",
	    "    listen = \"127.0.0.1:8443\";");

	/* Reported at the listener's opening brace. */
	ASSERT_ERR(c, 3, "listeners[0].name", "required setting missing");
}
END_TEST

START_TEST(listener_without_listen_is_refused)
{
	struct cfg *c = load_listener_body("req-listen.conf",
	    "    name = \"a\";");

	ASSERT_ERR(c, 3, "listeners[0].listen", "required setting missing");
}
END_TEST

START_TEST(listener_without_tls_is_refused)
{
	struct cfg *c = load_text("req-tls.conf",
	    "workers = 1;\n"
	    "listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:8443\"; tls = { cert = \"x\"; key = \"y\"; ca = \"z\"; }; },\n"
	    "  {\n"
	    "    name = \"b\";\n"
	    "    listen = \"127.0.0.1:8444\";\n"
	    "  }\n"
	    ");\n");

	/* Listener 0's files do not exist: that must be reported first. */
	ASSERT_ERR(c, 3, "listeners[0].tls.cert", "cannot read");

	c = load_text("req-tls2.conf",
	    "workers = 1;\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"b\";\n"
	    "    listen = \"127.0.0.1:8444\";\n"
	    "  }\n"
	    ");\n");
	ASSERT_ERR(c, 3, "listeners[0].tls", "required setting missing");
}
END_TEST

static const char *const tls_members[] = { "cert", "key", "ca" };

START_TEST(tls_without_file_is_refused)
{
	char name[64], setting[64];
	const char *files[3] = { "ut.crt", "ut.key", "ut-ca.crt" };
	char lines[3][PATH_MAX + 32];
	struct cfg *c;
	int k;

	for (k = 0; k < 3; k++)
		if (k == _i)
			snprintf(lines[k], sizeof(lines[k]), "      # no %s",
			    tls_members[k]);
		else
			snprintf(lines[k], sizeof(lines[k]),
			    "      %s = \"%s/%s\";", tls_members[k], tmpdir,
			    files[k]);
	snprintf(name, sizeof(name), "req-tls-%s.conf", tls_members[_i]);
	snprintf(setting, sizeof(setting), "listeners[0].tls.%s",
	    tls_members[_i]);
	c = load_fmt(name,
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "%s\n%s\n%s\n"
	    "    };\n"
	    "  }\n"
	    ");\n", lines[0], lines[1], lines[2]);
	/* Reported at the tls group. */
	ASSERT_ERR(c, 5, setting, "required setting missing");
}
END_TEST

START_TEST(unreadable_tls_file_is_refused_at_its_line)
{
	struct cfg *c = load_fmt("req-tls-missing.conf",
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "      cert = \"%s/ut.crt\";\n"
	    "      key = \"%s/ut.key\";\n"
	    "      ca = \"%s/no-such-ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", tmpdir, tmpdir, tmpdir);

	ASSERT_ERR(c, 8, "listeners[0].tls.ca", "cannot read");
	ck_assert_msg(strstr(err, "no-such-ca.crt") != NULL &&
	    strstr(err, "No such file") != NULL, "message \"%s\"", err);
}
END_TEST

START_TEST(empty_tls_file_name_is_refused)
{
	struct cfg *c = load_fmt("req-tls-empty.conf",
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "      cert = \"%s/ut.crt\";\n"
	    "      key = \"\";\n"
	    "      ca = \"%s/ut-ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", tmpdir, tmpdir);

	ASSERT_ERR(c, 7, "listeners[0].tls.key", "empty file name");
}
END_TEST

/* --- A. listen addresses ------------------------------------------------ */

static const struct {
	const char *listen;
	const char *keyword;
} bad_listen[] = {
	{ "127.0.0.1", "port missing" },
	{ "127.0.0.1:99999", "port must be" },
	{ "127.0.0.1:", "port must be" },
	{ "127.0.0.1:-1", "port must be" },
	{ "127.0.0.1:80x", "port must be" },
	{ "1.2.3:80", "not an IP address" },
	{ "[::1]8443", "[IPv6]:port" },
	{ "[::1:8443", "[IPv6]:port" },
	{ "[127.0.0.1]:80", "not an IP address" },
	{ "host.example:80", "not an IP address" },
	{ ":80", "bad host part" },
	{ "", "port missing" },
};

START_TEST(bad_listen_address_is_refused)
{
	char name[64], body[256];
	struct cfg *c;

	snprintf(name, sizeof(name), "listen-bad-%d.conf", _i);
	snprintf(body, sizeof(body), "    name = \"a\";\n"
	    "    listen = \"%s\";", bad_listen[_i].listen);
	c = load_listener_body(name, body);
	ASSERT_ERR(c, 5, "listeners[0].listen", bad_listen[_i].keyword);
	/* The message quotes what was written. */
	if (bad_listen[_i].listen[0] != '\0')
		ck_assert_msg(strstr(err, bad_listen[_i].listen) != NULL,
		    "message \"%s\" does not quote \"%s\"", err,
		    bad_listen[_i].listen);
}
END_TEST

static const struct {
	const char *listen;
	int family;
	const char *addr;
	unsigned port;
} good_listen[] = {
	{ "127.0.0.1:8443", AF_INET, "127.0.0.1", 8443 },
	{ "[::1]:8443", AF_INET6, "::1", 8443 },
	{ "*:8443", AF_INET6, "::", 8443 },
	{ "localhost:8443", AF_INET, "127.0.0.1", 8443 },
	{ "0.0.0.0:1", AF_INET, "0.0.0.0", 1 },
	{ "192.0.2.7:65535", AF_INET, "192.0.2.7", 65535 },
	{ "[fe80::1]:0", AF_INET6, "fe80::1", 0 },
};

START_TEST(valid_listen_address_is_parsed)
{
	char name[64], body[256], text[INET6_ADDRSTRLEN];
	const struct cfg_listener *li;
	struct cfg *c;

	snprintf(name, sizeof(name), "listen-good-%d.conf", _i);
	snprintf(body, sizeof(body), "    name = \"a\";\n"
	    "    listen = \"%s\";", good_listen[_i].listen);
	c = load_listener_body(name, body);
	ASSERT_LOADED(c);
	li = &c->listeners[0];
	ck_assert_str_eq(li->listen, good_listen[_i].listen);
	ck_assert_int_eq(li->addr.ss_family, good_listen[_i].family);
	if (good_listen[_i].family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&li->addr;

		ck_assert_uint_eq(li->addrlen, sizeof(struct sockaddr_in));
		ck_assert_uint_eq(ntohs(a->sin_port), good_listen[_i].port);
		ck_assert_ptr_nonnull(inet_ntop(AF_INET, &a->sin_addr, text,
		    sizeof(text)));
	} else {
		const struct sockaddr_in6 *a =
		    (const struct sockaddr_in6 *)&li->addr;

		ck_assert_uint_eq(li->addrlen, sizeof(struct sockaddr_in6));
		ck_assert_uint_eq(ntohs(a->sin6_port), good_listen[_i].port);
		ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &a->sin6_addr, text,
		    sizeof(text)));
	}
	ck_assert_str_eq(text, good_listen[_i].addr);
	cfg_free(c);
}
END_TEST

/* --- A. duplicates and overlaps ----------------------------------------- */

/* Two listeners; the second's name is at line 8, its listen at line 9. */
static struct cfg *
load_two(const char *name, const char *n1, const char *l1, const char *n2,
    const char *l2)
{
	return load_fmt(name,
	    "workers = 1;\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"%s\";\n"
	    "    listen = \"%s\";\n"
	    "    %s\n"
	    "  }, {\n"
	    "    name = \"%s\";\n"
	    "    listen = \"%s\";\n"
	    "    %s\n"
	    "  }\n"
	    ");\n", n1, l1, tls_line, n2, l2, tls_line);
}

START_TEST(duplicate_listener_name_is_refused)
{
	struct cfg *c = load_two("dup-name.conf", "echo", "127.0.0.1:8443",
	    "echo", "127.0.0.1:8444");

	ASSERT_ERR(c, 8, "listeners[1].name", "duplicate");
	ck_assert_msg(strstr(err, "\"echo\"") != NULL, "message \"%s\"", err);
}
END_TEST

START_TEST(duplicate_listen_address_is_refused)
{
	struct cfg *c = load_two("dup-addr.conf", "a", "127.0.0.1:8443",
	    "b", "127.0.0.1:8443");

	ASSERT_ERR(c, 9, "listeners[1].listen", "overlaps");
	ck_assert_msg(strstr(err, "\"a\"") != NULL, "message \"%s\" does not "
	    "name the other listener", err);
}
END_TEST

START_TEST(wildcard_overlaps_specific_address)
{
	struct cfg *c = load_two("dup-wild1.conf", "a", "*:8443",
	    "b", "127.0.0.1:8443");

	ASSERT_ERR(c, 9, "listeners[1].listen", "overlaps");

	c = load_two("dup-wild2.conf", "a", "[::1]:8443", "b", "*:8443");
	ASSERT_ERR(c, 9, "listeners[1].listen", "overlaps");

	c = load_two("dup-wild3.conf", "a", "127.0.0.1:8443", "b",
	    "0.0.0.0:8443");
	ASSERT_ERR(c, 9, "listeners[1].listen", "overlaps");
}
END_TEST

START_TEST(localhost_overlaps_loopback_address)
{
	struct cfg *c = load_two("dup-localhost.conf", "a", "127.0.0.1:8443",
	    "b", "localhost:8443");

	ASSERT_ERR(c, 9, "listeners[1].listen", "overlaps");
}
END_TEST

START_TEST(distinct_addresses_do_not_overlap)
{
	struct cfg *c = load_two("dup-none1.conf", "a", "127.0.0.1:8443",
	    "b", "127.0.0.1:8444");

	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->nlisteners, 2);
	ck_assert_str_eq(c->listeners[1].name, "b");
	ck_assert_str_eq(c->listeners[1].setting, "listeners[1]");
	ck_assert_int_eq(c->listeners[1].line, 7);
	cfg_free(c);

	c = load_two("dup-none2.conf", "a", "127.0.0.1:8443", "b",
	    "[::1]:8443");
	ASSERT_LOADED(c);
	cfg_free(c);
}
END_TEST

/* --- A. listener fields: mode, name, banner ----------------------------- */

START_TEST(mode_relay_without_backend_is_refused_at_mode)
{
	struct cfg *c = load_listener_body("mode-relay.conf",
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    mode = \"relay\";");

	ASSERT_ERR(c, 6, "listeners[0].mode", "needs a backend");
}
END_TEST

START_TEST(mode_foo_is_refused_as_unknown)
{
	struct cfg *c = load_listener_body("mode-foo.conf",
	    "    name = \"a\";\n"
	    "    mode = \"foo\";\n"
	    "    listen = \"127.0.0.1:8443\";");

	ASSERT_ERR(c, 5, "listeners[0].mode", "unknown mode");
}
END_TEST

START_TEST(mode_echo_is_accepted)
{
	struct cfg *c = load_listener_body("mode-echo.conf",
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    mode = \"echo\";");

	ASSERT_LOADED(c);
	ck_assert_int_eq(c->listeners[0].mode, CFG_MODE_ECHO);
	ck_assert_str_eq(cfg_mode_name(c->listeners[0].mode), "echo");
	cfg_free(c);
}
END_TEST

static const char *const bad_names[] = {
	"bad name", "a/b", "a:b", "caf\xc3\xa9", "", "tab\there", "x\"y",
	/* 65 characters, one over CFG_NAME_MAX */
	"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm",
};

START_TEST(invalid_listener_name_is_refused)
{
	char name[64], body[256], escaped[128];
	const char *s;
	size_t o = 0;
	struct cfg *c;

	for (s = bad_names[_i]; *s != '\0' && o + 3 < sizeof(escaped); s++) {
		if (*s == '"' || *s == '\\')
			escaped[o++] = '\\';
		if (*s == '\t') {
			escaped[o++] = '\\';
			escaped[o++] = 't';
			continue;
		}
		escaped[o++] = *s;
	}
	escaped[o] = '\0';
	snprintf(name, sizeof(name), "name-bad-%d.conf", _i);
	snprintf(body, sizeof(body), "    name = \"%s\";\n"
	    "    listen = \"127.0.0.1:8443\";", escaped);
	c = load_listener_body(name, body);
	ASSERT_ERR(c, 4, "listeners[0].name", "not a valid name");
}
END_TEST

START_TEST(listener_name_of_allowed_characters_is_accepted)
{
	/* 64 characters: exactly CFG_NAME_MAX. */
	static const char longest[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._";
	struct cfg *c;

	ck_assert_uint_eq(strlen(longest), CFG_NAME_MAX);
	c = load_two("name-good.conf", "Echo-1.v2_x", "127.0.0.1:8443",
	    longest, "127.0.0.1:8444");
	ASSERT_LOADED(c);
	ck_assert_str_eq(c->listeners[0].name, "Echo-1.v2_x");
	ck_assert_str_eq(c->listeners[1].name, longest);
	cfg_free(c);
}
END_TEST

/* A listener with a banner of ${len} 'x' bytes at line 6. */
static struct cfg *
load_banner(const char *name, size_t len)
{
	char *banner = malloc(len + 1), *body;
	struct cfg *c;

	ck_assert_ptr_nonnull(banner);
	memset(banner, 'x', len);
	banner[len] = '\0';
	body = xasprintf("    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    banner = \"%s\";", banner);
	c = load_listener_body(name, body);
	free(body);
	free(banner);
	return c;
}

START_TEST(banner_longer_than_4096_bytes_is_refused)
{
	struct cfg *c = load_banner("banner-long.conf", CFG_BANNER_MAX + 1);

	ASSERT_ERR(c, 6, "listeners[0].banner", "too long");
	ck_assert_msg(strstr(err, "4097") != NULL, "message \"%s\"", err);
}
END_TEST

START_TEST(banner_of_4096_bytes_is_accepted)
{
	struct cfg *c = load_banner("banner-max.conf", CFG_BANNER_MAX);

	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->listeners[0].banner_len, CFG_BANNER_MAX);
	ck_assert_ptr_nonnull(c->listeners[0].banner);
	ck_assert_uint_eq(strlen(c->listeners[0].banner), CFG_BANNER_MAX);
	cfg_free(c);
}
END_TEST

START_TEST(banner_escapes_are_kept_and_empty_banner_means_none)
{
	struct cfg *c = load_listener_body("banner-esc.conf",
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    banner = \"hello\\n\";");

	ASSERT_LOADED(c);
	ck_assert_str_eq(c->listeners[0].banner, "hello\n");
	ck_assert_uint_eq(c->listeners[0].banner_len, 6);
	cfg_free(c);

	c = load_listener_body("banner-empty.conf",
	    "    name = \"a\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    banner = \"\";");
	ASSERT_LOADED(c);
	ck_assert_ptr_null(c->listeners[0].banner);
	ck_assert_uint_eq(c->listeners[0].banner_len, 0);
	cfg_free(c);
}
END_TEST

/* --- A. paths and @include ---------------------------------------------- */

/* Load ${path} with the working directory set to "/", so nothing can
 * resolve against the test's folder by accident. */
static struct cfg *
load_from_root(const char *path)
{
	struct cfg *c;
	int here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	ck_assert_int_ge(here, 0);
	ck_assert_int_eq(chdir("/"), 0);
	err[0] = '\0';
	c = cfg_load(path, err, sizeof(err));
	ck_assert_int_eq(fchdir(here), 0);
	close(here);
	return c;
}

START_TEST(relative_tls_paths_resolve_against_config_folder)
{
	const char *dir = tmp_path("rel"), *certs = tmp_path("rel/certs"),
	    *keys = tmp_path("rel-keys");
	const char *crt = tmp_path("rel/certs/s.crt"),
	    *key = tmp_path("rel-keys/s.key"), *ca = tmp_path("rel/ca.crt");
	char *text;
	struct cfg *c;

	make_dir(dir);
	make_dir(certs);
	make_dir(keys);
	write_file(crt, "c");
	write_file(key, "k");
	write_file(ca, "a");
	snprintf(cur_path, sizeof(cur_path), "%s/rel.conf", dir);
	text = xasprintf("listeners = ( { name = \"a\"; listen = "
	    "\"127.0.0.1:8443\"; tls = { cert = \"certs/s.crt\"; key = "
	    "\"../rel-keys/s.key\"; ca = \"./ca.crt\"; }; } );\n");
	write_file(cur_path, text);
	free(text);

	c = load_from_root(cur_path);
	ASSERT_LOADED(c);
	ck_assert_int_eq(c->listeners[0].cert.path[0], '/');
	ck_assert_int_eq(c->listeners[0].key.path[0], '/');
	ck_assert_int_eq(c->listeners[0].ca.path[0], '/');
	ck_assert_msg(same_file(c->listeners[0].cert.path, crt), "cert %s",
	    c->listeners[0].cert.path);
	ck_assert_msg(same_file(c->listeners[0].key.path, key), "key %s",
	    c->listeners[0].key.path);
	ck_assert_msg(same_file(c->listeners[0].ca.path, ca), "ca %s",
	    c->listeners[0].ca.path);
	ck_assert_str_eq(c->listeners[0].cert.setting, "listeners[0].tls.cert");
	ck_assert_int_eq(c->listeners[0].cert.line, 1);
	cfg_free(c);
}
END_TEST

START_TEST(relative_config_path_resolves_against_its_own_folder)
{
	const char *dir = tmp_path("relcfg"), *crt = tmp_path("relcfg/s.crt");
	char *text;
	struct cfg *c;
	int here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	make_dir(dir);
	write_file(crt, "c");
	text = xasprintf("listeners = ( { name = \"a\"; listen = "
	    "\"127.0.0.1:8443\"; tls = { cert = \"s.crt\"; key = \"s.crt\"; "
	    "ca = \"s.crt\"; }; } );\n");
	snprintf(cur_path, sizeof(cur_path), "%s/relcfg.conf", dir);
	write_file(cur_path, text);
	free(text);

	/* From $TEST_TMPDIR, as "relcfg/relcfg.conf". */
	ck_assert_int_ge(here, 0);
	ck_assert_int_eq(chdir(tmpdir), 0);
	c = cfg_load("relcfg/relcfg.conf", err, sizeof(err));
	ck_assert_int_eq(fchdir(here), 0);
	close(here);

	ASSERT_LOADED(c);
	ck_assert_str_eq(c->path, "relcfg/relcfg.conf");
	ck_assert_int_eq(c->listeners[0].cert.path[0], '/');
	ck_assert_msg(same_file(c->listeners[0].cert.path, crt), "cert %s",
	    c->listeners[0].cert.path);
	cfg_free(c);
}
END_TEST

START_TEST(include_resolves_against_config_folder)
{
	const char *dir = tmp_path("incl"), *sub = tmp_path("incl/conf.d");
	const char *inc = tmp_path("incl/conf.d/listeners.inc");
	char *text;
	struct cfg *c;

	make_dir(dir);
	make_dir(sub);
	text = xasprintf("listeners = (\n"
	    "  { name = \"inc\"; listen = \"127.0.0.1:8443\"; %s }\n"
	    ");\n", tls_line);
	write_file(inc, text);
	free(text);
	snprintf(cur_path, sizeof(cur_path), "%s/main.conf", dir);
	write_file(cur_path, "workers = 3;\n@include \"conf.d/listeners.inc\"\n");

	c = load_from_root(cur_path);
	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->workers, 3);
	ck_assert_uint_eq(c->nlisteners, 1);
	ck_assert_str_eq(c->listeners[0].name, "inc");
	cfg_free(c);
}
END_TEST

/*
 * An error in an included file must name that file so that the reader can
 * open it: an absolute path, or one that resolves from where they stand
 * (here "/"), not a name relative to the config folder.
 */
START_TEST(error_in_included_file_names_that_file_and_line)
{
	const char *dir = tmp_path("incl-err"), *inc = tmp_path("incl-err/bad.inc");
	char *text, file[PATH_MAX];
	int line = 0, here;
	bool ok;
	struct cfg *c;

	make_dir(dir);
	text = xasprintf("listeners = (\n"
	    "  {\n"
	    "    name = \"inc\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    colour = \"red\";\n"
	    "    %s\n"
	    "  }\n"
	    ");\n", tls_line);
	write_file(inc, text);
	free(text);
	snprintf(cur_path, sizeof(cur_path), "%s/main.conf", dir);
	write_file(cur_path, "workers = 3;\n\n@include \"bad.inc\"\n");

	c = load_from_root(cur_path);
	ck_assert_ptr_null(c);
	ck_assert_msg(split_location(err, file, sizeof(file), &line),
	    "message \"%s\" has no file:line", err);
	ck_assert_msg(strstr(err, ": listeners[0].colour: unknown setting") !=
	    NULL, "message \"%s\"", err);
	ck_assert_int_eq(line, 5);
	here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(here, 0);
	ck_assert_int_eq(chdir("/"), 0);
	ok = same_file(file, inc);
	ck_assert_int_eq(fchdir(here), 0);
	close(here);
	ck_assert_msg(ok, "message \"%s\" names \"%s\", which is not %s "
	    "(seen from \"/\")", err, file, inc);
}
END_TEST

START_TEST(missing_include_file_is_a_syntax_error_at_its_line)
{
	const char *dir = tmp_path("incl-missing");

	make_dir(dir);
	snprintf(cur_path, sizeof(cur_path), "%s/main.conf", dir);
	write_file(cur_path, "workers = 3;\n@include \"nope.inc\"\n");
	ASSERT_ERR(load_from_root(cur_path), 2, "syntax error", "include");
}
END_TEST

/* --- A. values, defaults and overrides ---------------------------------- */

START_TEST(minimal_config_gets_documented_defaults)
{
	const struct cfg_listener *li;
	const char *tmp;
	struct cfg *c = load_fmt("defaults.conf",
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"echo\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "      cert = \"%s/ut.crt\";\n"
	    "      key = \"%s/ut.key\";\n"
	    "      ca = \"%s/ut-ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", tmpdir, tmpdir, tmpdir);

	ASSERT_LOADED(c);
	ck_assert_str_eq(c->path, cur_path);
	ck_assert_uint_eq(c->workers, online_cpus_capped());
	ck_assert_ptr_null(c->user);
	ck_assert_ptr_null(c->group);
	ck_assert_int_eq(c->log, CFG_LOG_AUTO);
	ck_assert(c->sandbox);
	ck_assert_uint_eq(c->shutdown_timeout_ms, 30000);
	ck_assert_uint_eq(c->log_refusals_per_s, 10);
	ck_assert_uint_eq(c->nlisteners, 1);
	li = &c->listeners[0];
	ck_assert_str_eq(li->name, "echo");
	ck_assert_str_eq(li->listen, "127.0.0.1:8443");
	ck_assert_int_eq(li->mode, CFG_MODE_ECHO);
	ck_assert_ptr_null(li->banner);
	ck_assert_uint_eq(li->banner_len, 0);
	ck_assert_uint_eq(li->handshake_timeout_ms, 10000);
	ck_assert_uint_eq(li->idle_timeout_ms, 300000);
	ck_assert_uint_eq(li->max_connections, 10000);
	ck_assert_int_eq(li->line, 2);
	ck_assert_str_eq(li->setting, "listeners[0]");
	ck_assert_str_eq(li->cert.setting, "listeners[0].tls.cert");
	ck_assert_str_eq(li->key.setting, "listeners[0].tls.key");
	ck_assert_str_eq(li->ca.setting, "listeners[0].tls.ca");
	ck_assert_int_eq(li->cert.line, 6);
	ck_assert_int_eq(li->key.line, 7);
	ck_assert_int_eq(li->ca.line, 8);
	/* Absolute paths are kept as written. */
	tmp = tmp_path("ut.key");
	ck_assert_msg(strcmp(li->key.path, tmp) == 0, "key %s", li->key.path);
	cfg_free(c);
}
END_TEST

START_TEST(global_timeouts_apply_to_every_listener)
{
	struct cfg *c = load_fmt("global-timeouts.conf",
	    "workers = 3;\n"
	    "shutdown_timeout = 5;\n"
	    "handshake_timeout = 4;\n"
	    "idle_timeout = 60;\n"
	    "max_connections = 77;\n"
	    "listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:8443\"; %s },\n"
	    "  { name = \"b\"; listen = \"127.0.0.1:8444\"; %s }\n"
	    ");\n", tls_line, tls_line);
	size_t i;

	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->workers, 3);
	ck_assert_uint_eq(c->shutdown_timeout_ms, 5000);
	for (i = 0; i < 2; i++) {
		ck_assert_uint_eq(c->listeners[i].handshake_timeout_ms, 4000);
		ck_assert_uint_eq(c->listeners[i].idle_timeout_ms, 60000);
		ck_assert_uint_eq(c->listeners[i].max_connections, 77);
	}
	cfg_free(c);
}
END_TEST

START_TEST(listener_overrides_global_timeouts)
{
	struct cfg *c = load_fmt("override-timeouts.conf",
	    "handshake_timeout = 4;\n"
	    "idle_timeout = 60;\n"
	    "max_connections = 77;\n"
	    "listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:8443\"; %s },\n"
	    "  {\n"
	    "    name = \"b\";\n"
	    "    listen = \"127.0.0.1:8444\";\n"
	    "    handshake_timeout = 1;\n"
	    "    idle_timeout = 0;\n"
	    "    max_connections = 5;\n"
	    "    %s\n"
	    "  }\n"
	    ");\n", tls_line, tls_line);

	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->listeners[0].handshake_timeout_ms, 4000);
	ck_assert_uint_eq(c->listeners[0].idle_timeout_ms, 60000);
	ck_assert_uint_eq(c->listeners[0].max_connections, 77);
	ck_assert_uint_eq(c->listeners[1].handshake_timeout_ms, 1000);
	ck_assert_uint_eq(c->listeners[1].idle_timeout_ms, 0);
	ck_assert_uint_eq(c->listeners[1].max_connections, 5);
	cfg_free(c);
}
END_TEST

START_TEST(decimal_seconds_become_milliseconds)
{
	struct cfg *c = load_fmt("decimal.conf",
	    "handshake_timeout = 2.5;\n"
	    "shutdown_timeout = 1e2;\n"
	    "idle_timeout = 0.25;\n"
	    "listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:8443\"; %s },\n"
	    "  { name = \"b\"; listen = \"127.0.0.1:8444\"; "
	    "handshake_timeout = 0.3333; idle_timeout = 2.01; %s }\n"
	    ");\n", tls_line, tls_line);

	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->listeners[0].handshake_timeout_ms, 2500);
	ck_assert_uint_eq(c->shutdown_timeout_ms, 100000);
	ck_assert_uint_eq(c->listeners[0].idle_timeout_ms, 250);
	ck_assert_uint_eq(c->listeners[1].handshake_timeout_ms, 333);
	/* 2.01 * 1000 is 2009.999... in binary: rounded, not truncated. */
	ck_assert_uint_eq(c->listeners[1].idle_timeout_ms, 2010);
	cfg_free(c);
}
END_TEST

static const struct {
	const char *word;
	enum cfg_log log;
} log_values[] = {
	{ "auto", CFG_LOG_AUTO },
	{ "journal", CFG_LOG_JOURNAL },
	{ "stderr", CFG_LOG_STDERR },
	{ "json", CFG_LOG_JSON },
};

START_TEST(log_value_is_accepted)
{
	char name[64];
	struct cfg *c;

	snprintf(name, sizeof(name), "log-%s.conf", log_values[_i].word);
	c = load_fmt(name, "log = \"%s\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    log_values[_i].word, tls_line);
	ASSERT_LOADED(c);
	ck_assert_int_eq(c->log, log_values[_i].log);
	cfg_free(c);
}
END_TEST

START_TEST(ticket_max_age_defaults_to_twice_the_lifetime_and_is_bounded)
{
	struct cfg *c = load_fmt("max-age-default.conf",
	    "ticket_lifetime = 600;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->ticket_max_age_s, 1200);
	cfg_free(c);
	c = load_fmt("max-age-set.conf", "ticket_max_age = 30;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	ASSERT_LOADED(c);
	ck_assert_uint_eq(c->ticket_max_age_s, 30);
	cfg_free(c);
	c = load_fmt("max-age-bad.conf", "workers = 1;\nticket_max_age = 0;\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	ASSERT_ERR(c, 2, "ticket_max_age", "out of range");
}
END_TEST

START_TEST(watch_defaults_to_tls_and_takes_off_tls_all)
{
	static const char *const words[] = { "off", "tls", "all" };
	static const enum cfg_watch want[] = { CFG_WATCH_OFF, CFG_WATCH_TLS,
	    CFG_WATCH_ALL };
	struct cfg *c = load_fmt("watch-default.conf",
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	char name[64], text[256];
	size_t i;

	ASSERT_LOADED(c);
	ck_assert_int_eq(c->watch, CFG_WATCH_TLS);
	cfg_free(c);
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "watch-%s.conf", words[i]);
		snprintf(text, sizeof(text), "watch = \"%s\";\n", words[i]);
		c = load_fmt(name, "%s"
		    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
		    text, tls_line);
		ASSERT_LOADED(c);
		ck_assert_int_eq(c->watch, want[i]);
		cfg_free(c);
	}
	c = load_fmt("watch-bad.conf", "workers = 1;\nwatch = \"some\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	ASSERT_ERR(c, 2, "watch", "unknown value");
}
END_TEST

START_TEST(unknown_log_value_is_refused)
{
	struct cfg *c = load_fmt("log-bad.conf",
	    "workers = 1;\n"
	    "log = \"syslog\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_ERR(c, 2, "log", "unknown value");
	ck_assert_msg(strstr(err, "\"syslog\"") != NULL, "message \"%s\"", err);
}
END_TEST

START_TEST(user_and_group_are_kept)
{
	struct cfg *c = load_fmt("user-group.conf",
	    "user = \"tls-echod\";\n"
	    "group = \"ssl-cert\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_LOADED(c);
	ck_assert_str_eq(c->user, "tls-echod");
	ck_assert_str_eq(c->group, "ssl-cert");
	cfg_free(c);

	c = load_fmt("user-only.conf",
	    "user = \"nobody\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	ASSERT_LOADED(c);
	ck_assert_str_eq(c->user, "nobody");
	ck_assert_ptr_null(c->group);
	cfg_free(c);
}
END_TEST

START_TEST(empty_user_or_group_is_refused)
{
	struct cfg *c = load_fmt("user-empty.conf",
	    "workers = 1;\n"
	    "user = \"\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);

	ASSERT_ERR(c, 2, "user", "empty");
	c = load_fmt("group-empty.conf",
	    "workers = 1;\n"
	    "user = \"nobody\";\n"
	    "group = \"\";\n"
	    "listeners = ( { name = \"a\"; listen = \"127.0.0.1:8443\"; %s } );\n",
	    tls_line);
	ASSERT_ERR(c, 3, "group", "empty");
}
END_TEST

START_TEST(cfg_free_of_null_is_a_no_op)
{
	cfg_free(NULL);
}
END_TEST

START_TEST(shipped_example_config_loads)
{
	/* conf/tls-echod.conf, with its ../certs/ paths, only if present. */
	static const char example[] = "conf/tls-echod.conf";
	struct cfg *c;

	if (access(example, R_OK) != 0 || access("certs/server.crt", R_OK) != 0)
		return; /* not run from the source tree, or no dev certs */
	err[0] = '\0';
	c = cfg_load(example, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->workers, 2);
	ck_assert_uint_eq(c->nlisteners, 1);
	ck_assert_str_eq(c->listeners[0].name, "echo");
	cfg_free(c);
}
END_TEST

/* --- B. tls-echod -t ---------------------------------------------------- */

struct run {
	int status;  /* wait status */
	char out[16384];
	char errs[16384];
};

/* Append up to what fits; keep reading (and dropping) the rest. */
static bool
drain(int fd, char *buf, size_t cap, size_t *len)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	if (*len + 1 < cap) {
		size_t k = (size_t)n < cap - 1 - *len ? (size_t)n :
		    cap - 1 - *len;

		memcpy(buf + *len, tmp, k);
		*len += k;
		buf[*len] = '\0';
	}
	return true;
}

static long
elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000L +
	    (t.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* Run tls-echod with ${args} (NULL-terminated, argv[0] excluded) from the
 * folder ${cwd} (NULL: ours); fails the test if it outlives the bound. */
static void
run_daemon(struct run *r, const char *cwd, const char *const *args)
{
	const char *argv[16];
	int po[2], pe[2];
	size_t n = 0, lo = 0, le = 0;
	bool open_o = true, open_e = true;
	struct timespec t0;
	pid_t pid, w;

	argv[n++] = bin;
	for (; *args != NULL && n + 1 < sizeof(argv) / sizeof(argv[0]); args++)
		argv[n++] = *args;
	argv[n] = NULL;
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(pipe2(po, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(pe, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
			_exit(126);
		if (cwd != NULL && chdir(cwd) != 0)
			_exit(126);
		execv(bin, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (open_o || open_e) {
		struct pollfd pfd[2] = {
			{ .fd = open_o ? po[0] : -1, .events = POLLIN },
			{ .fd = open_e ? pe[0] : -1, .events = POLLIN },
		};
		long left = RUN_TIMEOUT_MS - elapsed_ms(&t0);

		if (left <= 0)
			break;
		if (poll(pfd, 2, (int)left) < 0 && errno != EINTR)
			break;
		if (open_o && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			open_o = drain(po[0], r->out, sizeof(r->out), &lo);
		if (open_e && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
			open_e = drain(pe[0], r->errs, sizeof(r->errs), &le);
	}
	close(po[0]);
	close(pe[0]);
	for (;;) {
		w = waitpid(pid, &r->status, WNOHANG);
		if (w == pid || (w < 0 && errno != EINTR))
			break;
		if (elapsed_ms(&t0) > RUN_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &r->status, 0);
			ck_abort_msg("tls-echod did not finish within %d ms "
			    "(stdout \"%s\", stderr \"%s\")", RUN_TIMEOUT_MS,
			    r->out, r->errs);
		}
		usleep(10000);
	}
	ck_assert_msg(w == pid, "waitpid: %s", strerror(errno));
}

#define ASSERT_EXIT(r, code) \
	ck_assert_msg(WIFEXITED((r)->status) && \
	    WEXITSTATUS((r)->status) == (code), \
	    "tls-echod: wait status 0x%x, expected exit %d; stdout \"%s\", " \
	    "stderr \"%s\"", (unsigned)(r)->status, (code), (r)->out, (r)->errs)

/*
 * Write $TEST_TMPDIR/${name}: line 2 is ${extra} (a global setting or a
 * comment), cert at line 8, key at line 9, ca at line 10.  Relative names
 * are taken in $TEST_PKI.
 */
#define CERT_LINE 8
#define KEY_LINE 9
#define CA_LINE 10

static void
pki_file(char *buf, size_t len, const char *f)
{
	if (f[0] == '/')
		snprintf(buf, len, "%s", f);
	else
		snprintf(buf, len, "%s/%s", pki, f);
}

static void
daemon_conf(const char *name, const char *extra, const char *cert,
    const char *key, const char *ca)
{
	char pc[PATH_MAX], pk[PATH_MAX], pa[PATH_MAX], *text;

	pki_file(pc, sizeof(pc), cert);
	pki_file(pk, sizeof(pk), key);
	pki_file(pa, sizeof(pa), ca);
	text = xasprintf("workers = 1;\n"
	    "%s\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"t\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "      cert = \"%s\";\n"
	    "      key = \"%s\";\n"
	    "      ca = \"%s\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", extra, pc, pk, pa);
	snprintf(cur_path, sizeof(cur_path), "%s/%s", tmpdir, name);
	write_file(cur_path, text);
	free(text);
}

/* tls-echod -t -c ${cur_path} */
static void
run_check(struct run *r)
{
	const char *args[] = { "-t", "-c", cur_path, NULL };

	run_daemon(r, NULL, args);
}

/* stderr must hold "${cur_path}:${line}: ${setting}: " and ${keyword}. */
static void
assert_daemon_err_at(int at, const struct run *r, int line,
    const char *setting, const char *keyword)
{
	char where[PATH_MAX + 128];

	snprintf(where, sizeof(where), "%s:%d: %s: ", cur_path, line, setting);
	ck_assert_msg(strstr(r->errs, where) != NULL, "line %d: stderr \"%s\" "
	    "lacks \"%s\"", at, r->errs, where);
	ck_assert_msg(strstr(r->errs, keyword) != NULL, "line %d: stderr "
	    "\"%s\" lacks \"%s\"", at, r->errs, keyword);
	ck_assert_msg(strstr(r->out, "configuration OK") == NULL,
	    "line %d: stdout \"%s\" claims success", at, r->out);
}

#define ASSERT_DAEMON_ERR(r, line, setting, keyword) \
	assert_daemon_err_at(__LINE__, (r), (line), (setting), (keyword))

START_TEST(check_of_good_config_says_ok)
{
	struct run r;

	daemon_conf("d-good.conf", "# nothing", "server.crt", "server.key",
	    "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 0);
	ck_assert_msg(strstr(r.out, "configuration OK") != NULL, "stdout "
	    "\"%s\"", r.out);
	ck_assert_msg(strstr(r.out, cur_path) != NULL, "stdout \"%s\"", r.out);
	ck_assert_msg(strstr(r.out, "listener t: 127.0.0.1:8443") != NULL &&
	    strstr(r.out, "CN=localhost") != NULL, "stdout \"%s\"", r.out);
	ck_assert_msg(r.errs[0] == '\0', "stderr \"%s\"", r.errs);
}
END_TEST

START_TEST(check_refuses_expired_server_certificate_with_its_date)
{
	struct run r;

	/* Any expired leaf will do as "server certificate". */
	daemon_conf("d-expired.conf", "# nothing", "client-expired.crt",
	    "client-expired.key", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, CERT_LINE, "listeners[0].tls.cert",
	    "expired on 2021-01-01");
}
END_TEST

START_TEST(check_refuses_not_yet_valid_server_certificate_with_its_date)
{
	struct run r;

	daemon_conf("d-future.conf", "# nothing", "client-future.crt",
	    "client-future.key", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, CERT_LINE, "listeners[0].tls.cert",
	    "not valid before 2099-01-01");
}
END_TEST

START_TEST(check_refuses_key_that_does_not_match_certificate)
{
	struct run r;

	daemon_conf("d-mismatch.conf", "# nothing", "server.crt",
	    "mismatch.key", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, KEY_LINE, "listeners[0].tls.key",
	    "does not match");
	ck_assert_msg(strstr(r.errs, "mismatch.key") != NULL &&
	    strstr(r.errs, "server.crt") != NULL, "stderr \"%s\"", r.errs);
}
END_TEST

START_TEST(check_refuses_garbage_certificate_naming_the_file)
{
	struct run r;

	daemon_conf("d-garbage.conf", "# nothing", "garbage.crt", "server.key",
	    "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, CERT_LINE, "listeners[0].tls.cert",
	    "not a usable certificate");
	ck_assert_msg(strstr(r.errs, "garbage.crt") != NULL, "stderr \"%s\"",
	    r.errs);
}
END_TEST

START_TEST(check_refuses_key_file_given_as_certificate)
{
	struct run r;

	daemon_conf("d-keyascert.conf", "# nothing", "server.key",
	    "server.key", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, CERT_LINE, "listeners[0].tls.cert",
	    "not a usable certificate");
	ck_assert_msg(strstr(r.errs, "server.key") != NULL, "stderr \"%s\"",
	    r.errs);
}
END_TEST

START_TEST(check_refuses_certificate_given_as_key)
{
	struct run r;

	daemon_conf("d-certaskey.conf", "# nothing", "server.crt",
	    "server.crt", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, KEY_LINE, "listeners[0].tls.key",
	    "not a usable private key");
}
END_TEST

START_TEST(check_refuses_ca_file_without_ca_certificate)
{
	struct run r;

	daemon_conf("d-noca.conf", "# nothing", "server.crt", "server.key",
	    "client.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, CA_LINE, "listeners[0].tls.ca",
	    "no CA certificate");
	ck_assert_msg(strstr(r.errs, "client.crt") != NULL, "stderr \"%s\"",
	    r.errs);
}
END_TEST

START_TEST(check_refuses_nonexistent_tls_file)
{
	struct run r;

	daemon_conf("d-nofile.conf", "# nothing", "server.crt", "server.key",
	    "no-such-ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, CA_LINE, "listeners[0].tls.ca", "cannot read");
	ck_assert_msg(strstr(r.errs, "no-such-ca.crt") != NULL, "stderr "
	    "\"%s\"", r.errs);
}
END_TEST

START_TEST(check_names_the_failing_second_listener)
{
	char *text;
	struct run r;

	text = xasprintf("listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:8443\"; tls = { cert = "
	    "\"%s/server.crt\"; key = \"%s/server.key\"; ca = \"%s/ca.crt\"; "
	    "}; },\n"
	    "  {\n"
	    "    name = \"b\";\n"
	    "    listen = \"127.0.0.1:8444\";\n"
	    "    tls = {\n"
	    "      cert = \"%s/server.crt\";\n"
	    "      key = \"%s/mismatch.key\";\n"
	    "      ca = \"%s/ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", pki, pki, pki, pki, pki, pki);
	snprintf(cur_path, sizeof(cur_path), "%s/d-second.conf", tmpdir);
	write_file(cur_path, text);
	free(text);
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, 8, "listeners[1].tls.key", "does not match");
}
END_TEST

START_TEST(check_reports_config_error_with_file_line)
{
	struct run r;

	daemon_conf("d-cfgerr.conf", "max_connections = 0;", "server.crt",
	    "server.key", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, 2, "max_connections", "out of range");
}
END_TEST

START_TEST(check_of_missing_config_file_says_cannot_read)
{
	const char *path = tmp_path("d-no-such.conf");
	const char *args[] = { "-t", "-c", path, NULL };
	struct run r;

	unlink(path);
	run_daemon(&r, NULL, args);
	ASSERT_EXIT(&r, 1);
	ck_assert_msg(strstr(r.errs, path) != NULL &&
	    strstr(r.errs, "cannot read") != NULL, "stderr \"%s\"", r.errs);
}
END_TEST

/*
 * TLS material named in an included file: the message must point into that
 * file, at the line of the setting (not at that line number of the main
 * file).
 */
START_TEST(check_error_in_included_file_points_into_that_file)
{
	const char *dir = tmp_path("d-incl"), *inc = tmp_path("d-incl/tls.inc");
	char *text, file[PATH_MAX];
	const char *args[] = { "-t", "-c", NULL, NULL };
	int line = 0;
	struct run r;

	make_dir(dir);
	text = xasprintf("# listeners for main.conf\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"t\";\n"
	    "    listen = \"127.0.0.1:8443\";\n"
	    "    tls = {\n"
	    "      cert = \"%s/server.crt\";\n"
	    "      key = \"%s/mismatch.key\";\n"
	    "      ca = \"%s/ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", pki, pki, pki);
	write_file(inc, text);
	free(text);
	snprintf(cur_path, sizeof(cur_path), "%s/main.conf", dir);
	write_file(cur_path, "workers = 1;\n@include \"tls.inc\"\n");
	args[2] = cur_path;
	run_daemon(&r, "/", args);
	ASSERT_EXIT(&r, 1);
	ck_assert_msg(strstr(r.errs, "listeners[0].tls.key: ") != NULL &&
	    strstr(r.errs, "does not match") != NULL, "stderr \"%s\"", r.errs);
	ck_assert_msg(strncmp(r.errs, "tls-echod: ", 11) == 0 &&
	    split_location(r.errs + 11, file, sizeof(file), &line),
	    "stderr \"%s\" has no file:line", r.errs);
	ck_assert_msg(same_file(file, inc) && line == 8, "stderr \"%s\" "
	    "points at %s:%d, the setting is at %s:8", r.errs, file, line, inc);
}
END_TEST

START_TEST(check_refuses_unknown_user)
{
	struct run r;

	daemon_conf("d-user.conf", "user = \"no-such-user-xyz\";",
	    "server.crt", "server.key", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ck_assert_msg(strstr(r.errs, cur_path) != NULL &&
	    strstr(r.errs, "no such user") != NULL &&
	    strstr(r.errs, "no-such-user-xyz") != NULL, "stderr \"%s\"",
	    r.errs);
}
END_TEST

/* "-t: 1: the first problem as file:line: message" (tls-echod -h). */
START_TEST(check_reports_unknown_user_at_its_line)
{
	struct run r;

	daemon_conf("d-user-line.conf", "user = \"no-such-user-xyz\";",
	    "server.crt", "server.key", "ca.crt");
	run_check(&r);
	ASSERT_EXIT(&r, 1);
	ASSERT_DAEMON_ERR(&r, 2, "user", "no such user");
}
END_TEST

START_TEST(version_names_program_and_mbedtls_3_6)
{
	const char *args[] = { "-V", NULL };
	struct run r;

	run_daemon(&r, NULL, args);
	ASSERT_EXIT(&r, 0);
	ck_assert_msg(strncmp(r.out, "tls-echod ", 10) == 0 &&
	    strstr(r.out, "mbedTLS 3.6") != NULL, "stdout \"%s\"", r.out);
	/* The bundled mbedTLS ages TLS 1.3 tickets on the wall clock (hosts
	 * resume each other's sessions); a system one on boot time. */
	ck_assert_msg(strstr(r.out, strstr(r.out, "built from Debian 13 "
	    "source") != NULL ? "TLS 1.3 ticket clock: wall clock" :
	    "TLS 1.3 ticket clock: ") != NULL, "stdout \"%s\"", r.out);
}
END_TEST

START_TEST(help_prints_usage_and_exits_0)
{
	const char *args[] = { "-h", NULL };
	struct run r;

	run_daemon(&r, NULL, args);
	ASSERT_EXIT(&r, 0);
	ck_assert_msg(strstr(r.out, "usage: tls-echod") != NULL &&
	    strstr(r.out, "-t") != NULL, "stdout \"%s\"", r.out);
}
END_TEST

START_TEST(unknown_option_exits_2_with_usage)
{
	const char *args[] = { "-Q", NULL };
	struct run r;

	run_daemon(&r, NULL, args);
	ASSERT_EXIT(&r, 2);
	ck_assert_msg(strstr(r.errs, "usage: tls-echod") != NULL, "stderr "
	    "\"%s\"", r.errs);
	ck_assert_msg(r.out[0] == '\0', "stdout \"%s\"", r.out);
}
END_TEST

START_TEST(stray_argument_exits_2)
{
	const char *args[] = { "-t", "extra", NULL };
	struct run r;

	run_daemon(&r, NULL, args);
	ASSERT_EXIT(&r, 2);
	ck_assert_msg(strstr(r.errs, "\"extra\"") != NULL, "stderr \"%s\"",
	    r.errs);
}
END_TEST

/* --- suites ------------------------------------------------------------- */

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
cfg_load_suite(void)
{
	Suite *s = suite_create("cfg_load");
	TCase *tc;

	tc = tcase_create("files_and_syntax");
	tcase_add_test(tc, missing_file_reports_cannot_read);
	tcase_add_test(tc, missing_folder_reports_cannot_read);
	tcase_add_test(tc, unreadable_file_reports_cannot_read);
	tcase_add_test(tc, syntax_error_reports_file_and_line);
	tcase_add_test(tc, include_of_directory_or_fifo_is_refused_not_fatal);
	tcase_add_test(tc, config_from_a_fifo_is_read_once_and_loaded);
	tcase_add_test(tc, load_string_resolves_against_the_named_file);
	tcase_add_test(tc, syntax_error_inside_listener_reports_its_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("unknown_settings");
	tcase_add_test(tc, unknown_global_setting_is_refused);
	tcase_add_test(tc, unknown_listener_setting_is_refused);
	tcase_add_test(tc, unknown_tls_setting_is_refused);
	tcase_add_test(tc, unknown_setting_in_second_listener_names_its_index);
	suite_add_tcase(s, tc);

	tc = tcase_create("types");
	tcase_add_test(tc, string_for_workers_is_refused);
	tcase_add_test(tc, string_for_timeout_is_refused);
	tcase_add_test(tc, decimal_for_max_connections_is_refused);
	tcase_add_test(tc, integer_for_listener_name_is_refused);
	tcase_add_test(tc, integer_for_listen_is_refused);
	tcase_add_test(tc, integer_for_tls_key_is_refused);
	tcase_add_test(tc, integer_for_log_is_refused);
	tcase_add_test(tc, sandbox_must_be_a_boolean_and_false_turns_it_off);
	tcase_add_test(tc, tls_that_is_not_a_group_is_refused);
	tcase_add_test(tc, listeners_that_is_not_a_list_is_refused);
	tcase_add_test(tc, listeners_as_a_single_group_is_refused);
	tcase_add_test(tc, listener_that_is_not_a_group_is_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("ranges");
	tcase_add_loop_test(tc, global_value_out_of_range_is_refused, 0,
	    NELEM(global_out_of_range));
	tcase_add_loop_test(tc, metrics_address_is_checked_with_file_and_line,
	    0, NELEM(metrics_bad));
	tcase_add_test(tc, metrics_addresses_are_accepted_and_off_by_default);
	tcase_add_loop_test(tc, listener_value_out_of_range_is_refused, 0,
	    NELEM(listener_out_of_range));
	tcase_add_test(tc, range_limits_are_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("required");
	tcase_add_test(tc, config_without_listeners_is_refused);
	tcase_add_test(tc, empty_file_is_refused_for_missing_listeners);
	tcase_add_test(tc, empty_listeners_list_is_refused);
	tcase_add_test(tc, listener_without_name_is_refused);
	tcase_add_test(tc, listener_without_listen_is_refused);
	tcase_add_test(tc, listener_without_tls_is_refused);
	tcase_add_loop_test(tc, tls_without_file_is_refused, 0,
	    NELEM(tls_members));
	tcase_add_test(tc, unreadable_tls_file_is_refused_at_its_line);
	tcase_add_test(tc, empty_tls_file_name_is_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("listen");
	tcase_add_loop_test(tc, bad_listen_address_is_refused, 0,
	    NELEM(bad_listen));
	tcase_add_loop_test(tc, valid_listen_address_is_parsed, 0,
	    NELEM(good_listen));
	suite_add_tcase(s, tc);

	tc = tcase_create("duplicates");
	tcase_add_test(tc, duplicate_listener_name_is_refused);
	tcase_add_test(tc, duplicate_listen_address_is_refused);
	tcase_add_test(tc, wildcard_overlaps_specific_address);
	tcase_add_test(tc, localhost_overlaps_loopback_address);
	tcase_add_test(tc, distinct_addresses_do_not_overlap);
	suite_add_tcase(s, tc);

	tc = tcase_create("listener_fields");
	tcase_add_test(tc, mode_relay_without_backend_is_refused_at_mode);
	tcase_add_test(tc, mode_foo_is_refused_as_unknown);
	tcase_add_test(tc, mode_echo_is_accepted);
	tcase_add_loop_test(tc, invalid_listener_name_is_refused, 0,
	    NELEM(bad_names));
	tcase_add_test(tc, listener_name_of_allowed_characters_is_accepted);
	tcase_add_test(tc, banner_longer_than_4096_bytes_is_refused);
	tcase_add_test(tc, banner_of_4096_bytes_is_accepted);
	tcase_add_test(tc, banner_escapes_are_kept_and_empty_banner_means_none);
	suite_add_tcase(s, tc);

	tc = tcase_create("paths");
	tcase_add_test(tc, relative_tls_paths_resolve_against_config_folder);
	tcase_add_test(tc, relative_config_path_resolves_against_its_own_folder);
	tcase_add_test(tc, include_resolves_against_config_folder);
	tcase_add_test(tc, error_in_included_file_names_that_file_and_line);
	tcase_add_test(tc, missing_include_file_is_a_syntax_error_at_its_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("values");
	tcase_add_test(tc, minimal_config_gets_documented_defaults);
	tcase_add_test(tc, global_timeouts_apply_to_every_listener);
	tcase_add_test(tc, listener_overrides_global_timeouts);
	tcase_add_test(tc, decimal_seconds_become_milliseconds);
	tcase_add_loop_test(tc, log_value_is_accepted, 0, NELEM(log_values));
	tcase_add_test(tc, watch_defaults_to_tls_and_takes_off_tls_all);
	tcase_add_test(tc,
	    ticket_max_age_defaults_to_twice_the_lifetime_and_is_bounded);
	tcase_add_test(tc, unknown_log_value_is_refused);
	tcase_add_test(tc, user_and_group_are_kept);
	tcase_add_test(tc, empty_user_or_group_is_refused);
	tcase_add_test(tc, cfg_free_of_null_is_a_no_op);
	tcase_add_test(tc, shipped_example_config_loads);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *
daemon_check_suite(void)
{
	Suite *s = suite_create("tls-echod -t");
	TCase *tc;

	tc = tcase_create("tls_material");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, check_of_good_config_says_ok);
	tcase_add_test(tc, check_refuses_key_that_does_not_match_certificate);
	tcase_add_test(tc, check_refuses_expired_server_certificate_with_its_date);
	tcase_add_test(tc, check_refuses_not_yet_valid_server_certificate_with_its_date);
	tcase_add_test(tc, check_refuses_garbage_certificate_naming_the_file);
	tcase_add_test(tc, check_refuses_key_file_given_as_certificate);
	tcase_add_test(tc, check_refuses_certificate_given_as_key);
	tcase_add_test(tc, check_refuses_ca_file_without_ca_certificate);
	tcase_add_test(tc, check_refuses_nonexistent_tls_file);
	tcase_add_test(tc, check_names_the_failing_second_listener);
	tcase_add_test(tc, check_error_in_included_file_points_into_that_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("config_and_users");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, check_reports_config_error_with_file_line);
	tcase_add_test(tc, check_of_missing_config_file_says_cannot_read);
	tcase_add_test(tc, check_refuses_unknown_user);
	tcase_add_test(tc, check_reports_unknown_user_at_its_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("command_line");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, version_names_program_and_mbedtls_3_6);
	tcase_add_test(tc, help_prints_usage_and_exits_0);
	tcase_add_test(tc, unknown_option_exits_2_with_usage);
	tcase_add_test(tc, stray_argument_exits_2);
	suite_add_tcase(s, tc);
	return s;
}

/* Readable placeholders for the unit tests' tls settings. */
static int
make_dummy_tls_files(void)
{
	static const char *const names[] = { "ut.crt", "ut.key", "ut-ca.crt" };
	char path[PATH_MAX];
	size_t i;

	for (i = 0; i < 3; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		if ((f = fopen(path, "w")) == NULL || fputs("x\n", f) < 0 ||
		    fclose(f) != 0) {
			fprintf(stderr, "check_config: cannot write %s: %s\n",
			    path, strerror(errno));
			return -1;
		}
	}
	snprintf(tls_line, sizeof(tls_line), "tls = { cert = \"%s/ut.crt\"; "
	    "key = \"%s/ut.key\"; ca = \"%s/ut-ca.crt\"; };", tmpdir, tmpdir,
	    tmpdir);
	return 0;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	tmpdir = getenv("TEST_TMPDIR");
	pki = getenv("TEST_PKI");
	bin = getenv("TLS_ECHOD_BIN");
	if (tmpdir == NULL || tmpdir[0] != '/' || pki == NULL ||
	    pki[0] != '/' || bin == NULL || bin[0] != '/') {
		fprintf(stderr, "check_config: set TEST_TMPDIR, TEST_PKI and "
		    "TLS_ECHOD_BIN to absolute paths (see test/run-tests.sh)\n");
		return 2;
	}
	if (make_dummy_tls_files() != 0)
		return 2;
	sr = srunner_create(cfg_load_suite());
	srunner_add_suite(sr, daemon_check_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
