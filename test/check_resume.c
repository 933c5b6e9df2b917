/*
 * Session resumption against the real daemon: tickets made by one worker
 * resume on the other, in TLS 1.3 and TLS 1.2; the client's identity
 * travels in the ticket and is checked again; keys rotate on reload unless
 * ticket_key_file is set; resumption = "off" issues none.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "harness.h"

#define IO_MS 10000
#define LOG_MS 5000
#define RESUMES 8   /* per thread and round */
#define THREADS 4
#define ROUNDS 5    /* until both workers served a resumption */

static const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
static const char *const version_names[] = { "TLSv1.3", "TLSv1.2" };

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

static struct h_tls_opts
client(int version, SSL_SESSION *session)
{
	struct h_tls_opts o;

	memset(&o, 0, sizeof(o));
	o.cert = h_pki("client.crt");
	o.key = h_pki("client.key");
	o.min_version = o.max_version = version;
	o.session = session;
	return o;
}

static void
daemon_up(struct h_daemon *d, const char *label, const char *globals,
    const char *config)
{
	struct h_daemon_opts o = {
		.label = label,
		.globals = globals,
		.config = config,
		.activation = true,
	};

	ck_assert_msg(h_daemon_start(d, &o) == 0, "daemon did not start: %s",
	    d->err);
}

/* A full handshake and a round-trip (TLS 1.3 tickets come after it). */
static SSL_SESSION *
first_session(const struct h_daemon *d, int version)
{
	struct h_tls_opts o = client(version, NULL);
	struct h_tls c;
	SSL_SESSION *s;
	char tail[800];

	ck_assert_msg(h_tls_connect(&c, d->port, &o) == 0, "connect: %s; "
	    "log:\n%s", c.err, h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(!h_tls_reused(&c), "a first connection cannot resume");
	ck_assert_msg(h_tls_roundtrip(&c, "first\n", 6, IO_MS) == 0,
	    "round-trip: %s", c.err);
	s = h_tls_session(&c);
	ck_assert_msg(s != NULL && SSL_SESSION_is_resumable(s),
	    "the server issued no resumable session (no ticket)");
	h_tls_close(&c);
	return s;
}

struct resumer {
	const struct h_daemon *d;
	SSL_SESSION *session;
	int version;
	int reused, done;
	char err[H_ERR_MAX];
};

static void *
resume_thread(void *arg)
{
	struct resumer *r = arg;
	int i;

	for (i = 0; i < RESUMES; i++) {
		struct h_tls_opts o = client(r->version, r->session);
		struct h_tls c;

		if (h_tls_connect(&c, r->d->port, &o) != 0 ||
		    h_tls_roundtrip(&c, "again\n", 6, IO_MS) != 0) {
			snprintf(r->err, sizeof(r->err), "%s", c.err);
			h_tls_close(&c);
			return NULL;
		}
		r->reused += h_tls_reused(&c);
		r->done++;
		h_tls_close(&c);
	}
	return NULL;
}

/* Distinct worker pids among close lines with TLS_RESUMED=yes. */
static int
resuming_workers(const struct h_daemon *d, pid_t *pids, int max)
{
	char path[4200], line[4096];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s", d->log_path);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		pid_t p;
		int k;

		if (strstr(line, "connection closed:") == NULL ||
		    strstr(line, "TLS_RESUMED=yes") == NULL)
			continue;
		p = h_log_line_pid(line);
		for (k = 0; k < n && pids[k] != p; k++)
			;
		if (k == n && n < max)
			pids[n++] = p;
	}
	fclose(f);
	return n;
}

START_TEST(test_ticket_resumes_on_every_worker)
{
	int v = versions[_i];
	struct resumer r[THREADS];
	pthread_t t[THREADS];
	struct h_daemon d;
	SSL_SESSION *s;
	pid_t pids[8];
	int round, k, total = 0, reused = 0, nw = 0;
	char line[4096];

	daemon_up(&d, "resume", "workers = 2;", NULL);
	s = first_session(&d, v);
	for (round = 0; round < ROUNDS && nw < 2; round++) {
		for (k = 0; k < THREADS; k++) {
			memset(&r[k], 0, sizeof(r[k]));
			r[k].d = &d;
			r[k].session = s;
			r[k].version = v;
			ck_assert(pthread_create(&t[k], NULL, resume_thread,
			    &r[k]) == 0);
		}
		for (k = 0; k < THREADS; k++) {
			pthread_join(t[k], NULL);
			ck_assert_msg(r[k].err[0] == '\0', "%s: %s",
			    version_names[_i], r[k].err);
			total += r[k].done;
			reused += r[k].reused;
		}
		/* The close lines are written asynchronously. */
		H_LOG_EXPECT(&d, line, "TLS_RESUMED=yes");
		usleep(200000);
		nw = resuming_workers(&d, pids, 8);
	}
	SSL_SESSION_free(s);
	printf("check_resume: %s: %d of %d connections resumed, on %d "
	    "worker(s)\n", version_names[_i], reused, total, nw);
	fflush(stdout);
	ck_assert_msg(reused == total, "%s: only %d of %d connections "
	    "resumed", version_names[_i], reused, total);
	ck_assert_msg(nw == 2, "%s: resumptions were served by %d worker(s) "
	    "in %d rounds: cannot tell whether a ticket from one worker "
	    "resumes on the other", version_names[_i], nw, ROUNDS);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* Reload and wait until the new generation serves. */
static void
reload(struct h_daemon *d, unsigned gen)
{
	char want[64];

	snprintf(want, sizeof(want), "STATUS=generation %u:", gen);
	ck_assert(h_daemon_signal(d, SIGHUP) == 0);
	ck_assert_msg(h_notify_wait(d, want, 10000) != NULL, "no READY "
	    "with \"%s\" after SIGHUP", want);
}

/* Rewrite the daemon's configuration file with ${text}. */
static void
rewrite_conf(const struct h_daemon *d, const char *text)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", d->conf_path);
	f = fopen(tmp, "w");
	ck_assert(f != NULL);
	fputs(text, f);
	ck_assert(fclose(f) == 0);
	ck_assert(rename(tmp, d->conf_path) == 0);
}

static char *
conf_text(int port, const char *globals, const char *listener_extra,
    const char *tls_extra)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "log = \"stderr\"; workers = 1; %s\n"
	    "listeners = ({ name = \"echo\"; listen = \"127.0.0.1:%d\"; %s\n"
	    "  tls = { cert = \"%s\"; key = \"%s\"; ca = \"%s\"; %s }; "
	    "});\n", globals, port, listener_extra, h_pki("server.crt"),
	    h_pki("server.key"), h_pki("ca.crt"), tls_extra);
	return buf;
}

static const char *
key_file(void)
{
	const char *path = h_tmp("ticket.key");
	FILE *f = fopen(path, "w");

	ck_assert(f != NULL);
	fputs("0123456789abcdef0123456789abcdef-test-only-ticket-key\n", f);
	ck_assert(fclose(f) == 0);
	return path;
}

/* Try to resume ${s}: 1 resumed, 0 full handshake, -1 refused. */
static int
try_resume(const struct h_daemon *d, int version, SSL_SESSION *s,
    char *tag, size_t taglen)
{
	struct h_tls_opts o = client(version, s);
	struct h_tls c;
	int r;

	if (h_tls_connect(&c, d->port, &o) != 0) {
		snprintf(tag, taglen, "%s", c.peer_tag);
		h_tls_close(&c);
		return -1;
	}
	snprintf(tag, taglen, "%s", c.peer_tag);
	if (h_tls_roundtrip(&c, "x\n", 2, IO_MS) != 0) {
		h_tls_close(&c);
		return -1;
	}
	r = h_tls_reused(&c) ? 1 : 0;
	h_tls_close(&c);
	return r;
}

START_TEST(test_reload_rotates_ticket_keys_unless_ticket_key_file)
{
	int v = versions[_i];
	struct h_daemon d;
	SSL_SESSION *s;
	char g[512], tag[64];

	/* Keys made at start: a reload makes new ones. */
	daemon_up(&d, "rotate", "workers = 1;", NULL);
	s = first_session(&d, v);
	ck_assert_int_eq(try_resume(&d, v, s, tag, sizeof(tag)), 1);
	reload(&d, 2);
	ck_assert_msg(try_resume(&d, v, s, tag, sizeof(tag)) == 0,
	    "%s: a ticket from before the reload still resumed",
	    version_names[_i]);
	SSL_SESSION_free(s);
	H_DAEMON_DOWN(&d);

	/* ticket_key_file: the same keys across reloads (and hosts). */
	snprintf(g, sizeof(g), "workers = 1; ticket_key_file = \"%s\";",
	    key_file());
	daemon_up(&d, "keyfile", g, NULL);
	s = first_session(&d, v);
	reload(&d, 2);
	ck_assert_msg(try_resume(&d, v, s, tag, sizeof(tag)) == 1,
	    "%s: with ticket_key_file a ticket did not survive a reload",
	    version_names[_i]);
	SSL_SESSION_free(s);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_resumed_client_is_held_to_the_new_allow_list)
{
	int v = versions[_i];
	struct h_daemon d;
	SSL_SESSION *s;
	char g[512], line[4096], tag[64];

	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	daemon_up(&d, "allow", g, NULL);
	s = first_session(&d, v);
	/* Same ticket keys, but this client is no longer allowed. */
	rewrite_conf(&d, conf_text(d.port, g,
	    "allow = { cn = [\"someone-else\"]; };", ""));
	reload(&d, 2);
	ck_assert_msg(try_resume(&d, v, s, tag, sizeof(tag)) == -1,
	    "%s: a resumed client outside the allow-list was served",
	    version_names[_i]);
	H_LOG_EXPECT(&d, line, tag, "CLOSE_REASON=identity-not-allowed ",
	    "handshake refused: identity not allowed");
	ck_assert_msg(strstr(line, "CN=test-client") != NULL, "the refusal "
	    "does not name the resumed client: %s", line);
	SSL_SESSION_free(s);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_resumption_off_issues_no_ticket)
{
	int v = versions[_i];
	struct h_tls_opts o = client(v, NULL);
	struct h_daemon d;
	struct h_tls c;
	SSL_SESSION *s;
	char tag[64];
	int r;

	daemon_up(&d, "off", "workers = 1;", NULL);
	rewrite_conf(&d, conf_text(d.port, "", "", "resumption = \"off\";"));
	reload(&d, 2);
	ck_assert(h_tls_connect(&c, d.port, &o) == 0);
	ck_assert(h_tls_roundtrip(&c, "a\n", 2, IO_MS) == 0);
	s = h_tls_session(&c);
	h_tls_close(&c);
	/* OpenSSL keeps a TLS 1.2 session without a ticket too: what counts
	 * is that it does not resume. */
	r = s != NULL ? try_resume(&d, v, s, tag, sizeof(tag)) : 0;
	ck_assert_msg(r == 0, "%s: resumed although resumption = \"off\"",
	    version_names[_i]);
	if (s != NULL)
		SSL_SESSION_free(s);
	H_DAEMON_DOWN(&d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("resume");
	TCase *tc = tcase_create("tickets");
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_resume: skipped: %s\n", why);
		return 77;
	}
	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_ticket_resumes_on_every_worker, 0, 2);
	tcase_add_loop_test(tc, test_reload_rotates_ticket_keys_unless_ticket_key_file,
	    0, 2);
	tcase_add_loop_test(tc, test_resumed_client_is_held_to_the_new_allow_list,
	    0, 2);
	tcase_add_loop_test(tc, test_resumption_off_issues_no_ticket, 0, 2);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
