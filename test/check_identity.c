/*
 * check_identity: who gets in, against the real tls-echod on loopback.
 *
 * Allow-lists (each rule admits the certificate it names and refuses a
 * neighbour), CRLs (PEM, DER, several; stale under both policies),
 * intermediate chains and verify_depth, verify_client = "optional", the TLS
 * policy knobs (ciphers, curves, min_version) and their -t errors, expiry
 * signals (-t, start-up log, STATUS=, key file mode) and mode = "whoami".
 *
 * Every daemon is socket-activated with its own log (test/harness.c); a
 * client's lines are found by its PEER_ADDR.  Refusals are asserted on the
 * client (handshake fails, or the first round-trip gets an alert or EOF)
 * and in the log (CLOSE_REASON= token and the refusal's words).  The
 * certificates come from test/gen-test-pki.sh ($TEST_PKI).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "harness.h"

#define IO_MS 10000   /* bound for one client operation */
#define LOG_MS 5000   /* bound for a log line to appear */
#define RUN_MS 20000  /* bound for one tls-echod -t */

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

/* --- helpers -------------------------------------------------------------- */

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

/* ${s} with every ${from} replaced by ${to} (caller frees). */
static char *
replace_all(const char *s, const char *from, const char *to)
{
	size_t flen = strlen(from), tlen = strlen(to), n = 0;
	const char *p;
	char *out, *o;

	for (p = s; (p = strstr(p, from)) != NULL; p += flen)
		n++;
	out = malloc(strlen(s) + n * tlen + 1);
	ck_assert(out != NULL);
	for (o = out; (p = strstr(s, from)) != NULL; s = p + flen) {
		memcpy(o, s, (size_t)(p - s));
		o += p - s;
		memcpy(o, to, tlen);
		o += tlen;
	}
	strcpy(o, s);
	return out;
}

/* The 1-based line of ${text} holding ${needle} first (0: none). */
static int
line_of(const char *text, const char *needle)
{
	const char *p = strstr(text, needle), *q;
	int line = 1;

	if (p == NULL)
		return 0;
	for (q = text; q < p; q++)
		line += *q == '\n';
	return line;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	buf = malloc(1 << 20);
	ck_assert(buf != NULL);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	size_t len = strlen(text);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert(write(fd, text, len) == (ssize_t)len);
	ck_assert(fchmod(fd, mode) == 0);
	close(fd);
}

/* One listener "echo", one worker; every part may be NULL. */
struct spec {
	const char *globals;        /* e.g. "expiry_warn_days = 0;" */
	const char *listener_extra; /* e.g. "allow = { cn = [\"x\"]; };" */
	const char *tls_extra;      /* inside tls = { }, e.g. "crl = ..." */
	const char *ca;             /* PKI file name; NULL: ca.crt */
	const char *key;            /* absolute; NULL: PKI server.key */
	const char *mode;           /* NULL: "echo" */
};

/* The configuration text, with @PORT@ and @PKI@ left for the harness. */
static char *
spec_text(const struct spec *s)
{
	return xasprintf(
	    "log = \"stderr\";\n"
	    "workers = 1;\n"
	    "%s\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"echo\";\n"
	    "    listen = \"127.0.0.1:@PORT@\";\n"
	    "    mode = \"%s\";\n"
	    "    %s\n"
	    "    tls = {\n"
	    "      cert = \"@PKI@/server.crt\";\n"
	    "      key = \"%s\";\n"
	    "      ca = \"@PKI@/%s\";\n"
	    "      %s\n"
	    "    };\n"
	    "  }\n"
	    ");\n",
	    s->globals ? s->globals : "", s->mode ? s->mode : "echo",
	    s->listener_extra ? s->listener_extra : "",
	    s->key ? s->key : "@PKI@/server.key", s->ca ? s->ca : "ca.crt",
	    s->tls_extra ? s->tls_extra : "");
}

/* Start a socket-activated daemon with ${s}; fails the test on error. */
static void
daemon_up(struct h_daemon *d, const char *label, const struct spec *s)
{
	char *text = spec_text(s);
	struct h_daemon_opts o = {
		.label = label,
		.config = text,
		.activation = true,
	};
	int r = h_daemon_start(d, &o);

	free(text);
	ck_assert_msg(r == 0, "daemon did not start: %s", d->err);
}

/* The result of one `tls-echod -t -c PATH`. */
struct check_run {
	char path[4096]; /* the configuration file */
	char *text;      /* its text */
	char *out;       /* stdout and stderr */
	int status;
};

static void
run_check(struct check_run *r, const char *label, const struct spec *s)
{
	const char *bin = getenv("TLS_ECHOD_BIN");
	char log[4200], err[256], *t1, *t2;
	const char *argv[] = { bin, "-t", "-c", r->path, NULL };

	snprintf(r->path, sizeof(r->path), "%s", h_tmp(label));
	strncat(r->path, ".conf", sizeof(r->path) - strlen(r->path) - 1);
	snprintf(log, sizeof(log), "%s.out", r->path);
	t1 = spec_text(s);
	t2 = replace_all(t1, "@PORT@", "8443");
	r->text = replace_all(t2, "@PKI@", getenv("TEST_PKI"));
	free(t1);
	free(t2);
	write_file(r->path, r->text, 0644);
	(void)unlink(log);
	r->status = h_run(argv, log, RUN_MS, err, sizeof(err));
	ck_assert_msg(r->status >= 0, "tls-echod -t: %s", err);
	r->out = slurp(log);
}

static void
run_free(struct check_run *r)
{
	free(r->text);
	free(r->out);
}

/*
 * `-t` failed with "${path}:${line}: ${setting}: " where ${line} is the
 * line of ${r->text} holding ${at}, and the message holds ${keyword}.
 */
static void
assert_check_error(const struct check_run *r, const char *at,
    const char *setting, const char *keyword)
{
	char where[4300];
	int line = line_of(r->text, at);

	ck_assert_msg(line > 0, "\"%s\" not in the test's configuration", at);
	ck_assert_msg(r->status == 1, "tls-echod -t exit status %d, want 1; "
	    "output:\n%s", r->status, r->out);
	snprintf(where, sizeof(where), "%s:%d: %s: ", r->path, line, setting);
	ck_assert_msg(strstr(r->out, where) != NULL, "output \"%s\" lacks "
	    "\"%s\"", r->out, where);
	ck_assert_msg(strstr(r->out, keyword) != NULL, "output \"%s\" lacks "
	    "\"%s\"", r->out, keyword);
}

/* Client options: PKI certificate ${cert} (.crt) with key ${key} (.key). */
static struct h_tls_opts
client_files(const char *cert, const char *key, int version)
{
	struct h_tls_opts o;
	char f[96];

	memset(&o, 0, sizeof(o));
	if (cert != NULL) {
		snprintf(f, sizeof(f), "%s.crt", cert);
		o.cert = h_pki(f);
		snprintf(f, sizeof(f), "%s.key", key);
		o.key = h_pki(f);
	}
	o.min_version = o.max_version = version;
	return o;
}

/*
 * The client with ${o} must be refused: its handshake fails, or (when the
 * client finishes first) its first round-trip gets an alert or EOF instead
 * of the echo.  The server must log exactly one line for this client:
 * "handshake refused: ${words}" with CLOSE_REASON=${token}.  The client's
 * error goes to ${cerr}, the log line to ${line}.
 */
static void
expect_refusal(struct h_daemon *d, const struct h_tls_opts *o,
    const char *what, const char *token, const char *words, char *line,
    size_t linelen, char *cerr, size_t cerrlen)
{
	char reason[64], msg[200], tail[1500];
	struct h_tls c;

	if (h_tls_connect(&c, d->port, o) == 0) {
		int r = h_tls_refused(&c, IO_MS);

		ck_assert_msg(r == 1, "%s: the handshake succeeded and then %s "
		    "(%s)", what, r == 0 ? "the server echoed: not refused" :
		    "nothing happened", c.err);
	}
	ck_assert_msg(c.peer_tag[0] != '\0', "%s: no TCP connection: %s",
	    what, c.err);
	snprintf(reason, sizeof(reason), "CLOSE_REASON=%s ", token);
	snprintf(msg, sizeof(msg), ": handshake refused: %s LISTENER=echo ",
	    words);
	ck_assert_msg(h_log_wait(d, LOG_MS, line, linelen, c.peer_tag, reason,
	    msg, NULL) == 0, "%s: the client failed (%s) but the server logged "
	    "no \"%s\" with %s for %s; log ends:\n%s", what, c.err, msg, reason,
	    c.peer_tag, h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(h_log_count(d, c.peer_tag, NULL) == 1, "%s: more than "
	    "one log line for %s", what, c.peer_tag);
	if (cerr != NULL)
		snprintf(cerr, cerrlen, "%s", c.err);
	h_tls_close(&c);
}

#define REFUSED(d, o, what, token, words, line) \
	expect_refusal((d), (o), (what), (token), (words), (line), \
	    sizeof(line), NULL, 0)

/*
 * The client with ${o} gets in: its line comes back, and the close line
 * for it says client-closed and holds ${n1}, ${n2} (each may be NULL).
 */
static void
expect_admitted(struct h_daemon *d, const struct h_tls_opts *o,
    const char *what, const char *n1, const char *n2, char *line,
    size_t linelen)
{
	char msg[128], tail[1500];
	struct h_tls c;

	ck_assert_msg(h_tls_connect(&c, d->port, o) == 0, "%s: TLS connect: "
	    "%s; log ends:\n%s", what, c.err, h_log_tail(d, tail,
	    sizeof(tail)));
	snprintf(msg, sizeof(msg), "%s on %s\n", what, c.peer_tag);
	ck_assert_msg(h_tls_roundtrip(&c, msg, strlen(msg), IO_MS) == 0,
	    "%s: no echo: %s; log ends:\n%s", what, c.err, h_log_tail(d, tail,
	    sizeof(tail)));
	h_tls_close(&c);
	ck_assert_msg(h_log_wait(d, LOG_MS, line, linelen, c.peer_tag,
	    ": connection closed: ", "CLOSE_REASON=client-closed ",
	    n1 ? n1 : n2, n2, NULL) == 0, "%s: no close line for %s with "
	    "[%s] [%s]; log ends:\n%s", what, c.peer_tag, n1 ? n1 : "",
	    n2 ? n2 : "", h_log_tail(d, tail, sizeof(tail)));
}

#define ADMITTED(d, o, what, n1, n2, line) \
	expect_admitted((d), (o), (what), (n1), (n2), (line), sizeof(line))

/* Base64 SHA-256 of a certificate's SubjectPublicKeyInfo, computed with the
 * openssl pipeline quoted in src/config.c's spki_sha256 message. */
static void
spki_b64(const char *certpath, char *out, size_t len)
{
	char *cmd = xasprintf("openssl x509 -in '%s' -pubkey -noout | openssl "
	    "pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64",
	    certpath);
	FILE *p = popen(cmd, "r");

	ck_assert_msg(p != NULL, "popen");
	ck_assert_msg(fgets(out, (int)len, p) != NULL, "no output: %s", cmd);
	ck_assert_int_eq(pclose(p), 0);
	out[strcspn(out, "\n")] = '\0';
	ck_assert_uint_eq(strlen(out), 44);
	free(cmd);
}

static X509 *
load_x509(const char *name)
{
	FILE *f = fopen(h_pki(name), "re");
	X509 *x;

	ck_assert_msg(f != NULL, "%s: %s", name, strerror(errno));
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_msg(x != NULL, "%s: not a PEM certificate", name);
	return x;
}

/* ${t} as Unix time. */
static time_t
asn1_unix(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	ck_assert(ASN1_TIME_to_tm(t, &tm) == 1);
	return timegm(&tm);
}

static void
ymd(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

/* ------------------------------------------------------------------------- */
/* allow-lists                                                               */
/* ------------------------------------------------------------------------- */

START_TEST(test_allow_cn_admits_named_client_and_refuses_another_cn_with_its_names)
{
	int v = _i;
	struct spec s = { .listener_extra =
	    "allow = { cn = [\"test-client\"]; };" };
	struct h_tls_opts good = h_client_opts("client", versions[v]);
	struct h_tls_opts other = h_client_opts("client-dns-a", versions[v]);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-cn", &s);
	ADMITTED(&d, &good, "test-client", "ALLOW_RULE=\"cn test-client\" ",
	    "CLIENT_AUTH=certificate ", line);
	REFUSED(&d, &other, "CN dns-a", "identity-not-allowed",
	    "identity not allowed", line);
	ck_assert_msg(strstr(line, "REASON_DETAIL=\"CN=dns-a, DNS=a.svc.example"
	    ": no allow rule matched\"") != NULL, "refusal does not name the "
	    "client's names: %s", line);
	ck_assert_msg(strstr(line, "CLIENT_SUBJECT=\"CN=dns-a\"") != NULL,
	    "refusal does not give the subject: %s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* What the refused client itself is told: TLS access_denied. */
START_TEST(test_identity_refusal_reaches_client_as_access_denied_alert)
{
	int v = _i;
	struct spec s = { .listener_extra =
	    "allow = { cn = [\"test-client\"]; };" };
	struct h_tls_opts other = h_client_opts("client-dns-a", versions[v]);
	struct h_daemon d;
	char line[4096], cerr[H_ERR_MAX];

	daemon_up(&d, "allow-alert", &s);
	expect_refusal(&d, &other, "CN dns-a", "identity-not-allowed",
	    "identity not allowed", line, sizeof(line), cerr, sizeof(cerr));
	ck_assert_msg(strstr(cerr, "access denied") != NULL, "%s client saw "
	    "\"%s\", not an access_denied alert", version_names[v], cerr);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_ou_admits_ops_and_refuses_dev)
{
	struct spec s = { .listener_extra = "allow = { ou = [\"ops\"]; };" };
	struct h_tls_opts good = h_client_opts("client", 0);
	struct h_tls_opts other = h_client_opts("client-email", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-ou", &s);
	ADMITTED(&d, &good, "OU ops", "ALLOW_RULE=\"ou ops\" ", NULL, line);
	REFUSED(&d, &other, "OU dev", "identity-not-allowed",
	    "identity not allowed", line);
	ck_assert_msg(strstr(line, "CN=email-ops, OU=dev, email=ops@example.com"
	    ": no allow rule matched") != NULL, "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_dns_exact_admits_that_name_only)
{
	struct spec s = { .listener_extra =
	    "allow = { dns = [\"A.SVC.example\"]; };" };
	struct h_tls_opts good = h_client_opts("client-dns-a", 0);
	struct h_tls_opts other = h_client_opts("client-dns-xy", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-dns", &s);
	ADMITTED(&d, &good, "a.svc.example", "ALLOW_RULE=\"dns A.SVC.example\" ",
	    NULL, line);
	REFUSED(&d, &other, "x.y.svc.example", "identity-not-allowed",
	    "identity not allowed", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_dns_wildcard_admits_one_label_and_refuses_two)
{
	struct spec s = { .listener_extra =
	    "allow = { dns = [\"*.svc.example\"]; };" };
	struct h_tls_opts good = h_client_opts("client-dns-a", 0);
	struct h_tls_opts other = h_client_opts("client-dns-xy", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-dnswild", &s);
	ADMITTED(&d, &good, "a.svc.example", "ALLOW_RULE=\"dns *.svc.example\" ",
	    NULL, line);
	REFUSED(&d, &other, "x.y.svc.example", "identity-not-allowed",
	    "identity not allowed", line);
	ck_assert_msg(strstr(line, "DNS=x.y.svc.example") != NULL, "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_uri_exact_admits_that_spiffe_id_only)
{
	struct spec s = { .listener_extra =
	    "allow = { uri = [\"spiffe://prod/ns/db/sa/x\"]; };" };
	struct h_tls_opts good = h_client_opts("client-uri-db", 0);
	struct h_tls_opts other = h_client_opts("client-uri-web", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-uri", &s);
	ADMITTED(&d, &good, "db", "ALLOW_RULE=\"uri spiffe://prod/ns/db/sa/x\" ",
	    NULL, line);
	REFUSED(&d, &other, "web", "identity-not-allowed",
	    "identity not allowed", line);
	ck_assert_msg(strstr(line, "URI=spiffe://prod/ns/web/sa/api") != NULL,
	    "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_uri_prefix_admits_namespace_and_refuses_another)
{
	struct spec s = { .listener_extra =
	    "allow = { uri = [\"spiffe://prod/ns/web/*\"]; };" };
	struct h_tls_opts good = h_client_opts("client-uri-web", 0);
	struct h_tls_opts other = h_client_opts("client-uri-db", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-uriprefix", &s);
	ADMITTED(&d, &good, "web", "ALLOW_RULE=\"uri spiffe://prod/ns/web/*\" ",
	    NULL, line);
	REFUSED(&d, &other, "db", "identity-not-allowed",
	    "identity not allowed", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_email_exact_admits_that_address_only)
{
	struct spec s = { .listener_extra =
	    "allow = { email = [\"OPS@example.com\"]; };" };
	struct h_tls_opts good = h_client_opts("client-email", 0);
	struct h_tls_opts other = h_client_opts("client", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-email", &s);
	ADMITTED(&d, &good, "ops@", "ALLOW_RULE=\"email OPS@example.com\" ",
	    NULL, line);
	REFUSED(&d, &other, "test-client@", "identity-not-allowed",
	    "identity not allowed", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_email_domain_admits_domain_and_refuses_subdomain)
{
	struct spec s = { .listener_extra =
	    "allow = { email = [\"@example.com\"]; };" };
	struct h_tls_opts a = h_client_opts("client-email", 0);
	struct h_tls_opts b = h_client_opts("client", 0);
	struct h_tls_opts sub = h_client_opts("client-dns-xy", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-emaildom", &s);
	ADMITTED(&d, &a, "ops@example.com", "ALLOW_RULE=\"email @example.com\" ",
	    NULL, line);
	ADMITTED(&d, &b, "test-client@example.com",
	    "ALLOW_RULE=\"email @example.com\" ", NULL, line);
	REFUSED(&d, &sub, "ops@sub.example.com", "identity-not-allowed",
	    "identity not allowed", line);
	ck_assert_msg(strstr(line, "email=ops@sub.example.com") != NULL, "%s",
	    line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_spki_pin_admits_that_key_and_refuses_another_key)
{
	char pin[64], extra[200];
	struct spec s = { .listener_extra = extra };
	struct h_tls_opts good = h_client_opts("client", 0);
	struct h_tls_opts other = h_client_opts("client-dns-a", 0);
	struct h_daemon d;
	char line[4096];

	spki_b64(h_pki("client.crt"), pin, sizeof(pin));
	snprintf(extra, sizeof(extra), "allow = { spki_sha256 = [\"%s\"]; };",
	    pin);
	daemon_up(&d, "allow-spki", &s);
	ADMITTED(&d, &good, "client key", "ALLOW_RULE=\"spki_sha256 #1\" ",
	    NULL, line);
	REFUSED(&d, &other, "another key", "identity-not-allowed",
	    "identity not allowed", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_allow_several_rules_any_match_admits)
{
	struct spec s = { .listener_extra =
	    "allow = {\n"
	    "      cn = [\"nobody\"];\n"
	    "      dns = [\"*.svc.example\"];\n"
	    "      uri = [\"spiffe://prod/ns/web/*\"];\n"
	    "    };" };
	struct h_tls_opts dns = h_client_opts("client-dns-a", 0);
	struct h_tls_opts uri = h_client_opts("client-uri-web", 0);
	struct h_tls_opts none = h_client_opts("client", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-many", &s);
	ADMITTED(&d, &dns, "dns rule", "ALLOW_RULE=\"dns *.svc.example\" ", NULL,
	    line);
	ADMITTED(&d, &uri, "uri rule", "ALLOW_RULE=\"uri spiffe://prod/ns/web/*\" ",
	    NULL, line);
	REFUSED(&d, &none, "no rule", "identity-not-allowed",
	    "identity not allowed", line);
	ck_assert_msg(strstr(line, "CN=test-client, OU=ops, "
	    "DNS=client.test.example, URI=spiffe://test.example/client, "
	    "email=test-client@example.com: no allow rule matched") != NULL,
	    "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* No allow-list: any certificate from the CA, and no ALLOW_RULE field. */
START_TEST(test_no_allow_list_admits_any_client_of_the_ca)
{
	struct spec s = { 0 };
	struct h_tls_opts a = h_client_opts("client-dns-xy", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "allow-none", &s);
	ADMITTED(&d, &a, "any", "CLIENT_SUBJECT=\"CN=dns-xy\" ", NULL, line);
	ck_assert_msg(strstr(line, "ALLOW_RULE=") == NULL, "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* revocation                                                                */
/* ------------------------------------------------------------------------- */

static const char *const crl_files[] = { "ca.crl", "ca.crl.der" };

/* Loop: PEM and DER, each over TLS 1.3 and 1.2. */
START_TEST(test_crl_refuses_revoked_client_and_admits_good_one)
{
	const char *crl = crl_files[_i / 2];
	int v = _i % 2;
	char extra[200];
	struct spec s = { .tls_extra = extra };
	struct h_tls_opts good = h_client_opts("client", versions[v]);
	struct h_tls_opts revoked = h_client_opts("client-revoked",
	    versions[v]);
	struct h_daemon d;
	char line[4096];

	snprintf(extra, sizeof(extra), "crl = \"@PKI@/%s\";", crl);
	daemon_up(&d, "crl", &s);
	ADMITTED(&d, &good, "good client", NULL, NULL, line);
	REFUSED(&d, &revoked, "revoked client", "cert-revoked",
	    "client certificate revoked", line);
	ck_assert_msg(strstr(line, "CLIENT_SUBJECT=\"OU=ops, "
	    "CN=test-client-revoked\"") != NULL, "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_crl_list_of_two_files_applies_both)
{
	struct spec s = {
		.ca = "ca-int-bundle.crt",
		.tls_extra = "crl = [\"@PKI@/int-ca.crl\", \"@PKI@/ca.crl\"];",
	};
	struct h_tls_opts good = h_client_opts("client", 0);
	struct h_tls_opts inter = client_files("client-int-chain", "client-int",
	    0);
	struct h_tls_opts revoked = h_client_opts("client-revoked", 0);
	struct h_tls_opts int_revoked = client_files("client-int-revoked-chain",
	    "client-int-revoked", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "crl-list", &s);
	ADMITTED(&d, &good, "good client", NULL, NULL, line);
	ADMITTED(&d, &inter, "client of the intermediate",
	    "CLIENT_SUBJECT=\"OU=ops, CN=test-client-int\" ", NULL, line);
	REFUSED(&d, &revoked, "revoked by the second file", "cert-revoked",
	    "client certificate revoked", line);
	REFUSED(&d, &int_revoked, "revoked by the first file", "cert-revoked",
	    "client certificate revoked", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_stale_crl_with_warn_admits_and_warns_once)
{
	struct spec s = { .tls_extra = "crl = \"@PKI@/ca-stale.crl\";" };
	struct h_tls_opts good = h_client_opts("client", 0);
	struct h_tls_opts revoked = h_client_opts("client-revoked", 0);
	struct h_daemon d;
	char line[4096];
	int n;

	daemon_up(&d, "crl-stale-warn", &s);
	H_LOG_EXPECT(&d, line, ": warning: listener echo: CRL of \"O=tls-echod "
	    "tests, CN=tls-echod test CA\" is stale: its next update was due "
	    "2020-01-02 ");
	ADMITTED(&d, &good, "first", NULL, NULL, line);
	ADMITTED(&d, &good, "second", NULL, NULL, line);
	n = h_log_count(&d, "past its nextUpdate", NULL);
	ck_assert_msg(n == 1, "%d \"past its nextUpdate\" warnings after two "
	    "clients, want 1", n);
	H_LOG_EXPECT(&d, line, ": warning: ", "past its nextUpdate",
	    "LISTENER=echo ");
	/* Stale, but still a CRL: what it revokes stays revoked. */
	REFUSED(&d, &revoked, "revoked client", "cert-revoked",
	    "client certificate revoked", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_stale_crl_with_refuse_refuses_as_crl_stale)
{
	int v = _i;
	struct spec s = { .tls_extra =
	    "crl = \"@PKI@/ca-stale.crl\";\n      crl_stale = \"refuse\";" };
	struct h_tls_opts good = h_client_opts("client", versions[v]);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "crl-stale-refuse", &s);
	REFUSED(&d, &good, "client under a stale CRL", "crl-stale",
	    "CRL is stale", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* CRL renewal: replace the file, SIGHUP; the new generation applies it. */
START_TEST(test_crl_file_replaced_and_reloaded_on_sighup_applies)
{
	char crl[4096], extra[4200], *text;
	struct spec s = { .ca = "ca-int-bundle.crt", .tls_extra = extra };
	struct h_tls_opts revoked = h_client_opts("client-revoked", 0);
	struct h_daemon d;
	char line[4096];

	snprintf(crl, sizeof(crl), "%s", h_tmp("reload.crl"));
	snprintf(extra, sizeof(extra), "crl = \"%s\";", crl);
	text = slurp(h_pki("int-ca.crl")); /* revokes nothing of ca's */
	write_file(crl, text, 0644);
	free(text);
	daemon_up(&d, "crl-reload", &s);
	ADMITTED(&d, &revoked, "before the new CRL", NULL, NULL, line);

	text = slurp(h_pki("ca.crl"));
	write_file(crl, text, 0644);
	free(text);
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, ": reloaded: generation 2 ");
	/* The old worker stops accepting when it reads its pipe's EOF. */
	H_LOG_EXPECT(&d, line, "(generation 1) stopping");
	REFUSED(&d, &revoked, "after the new CRL", "cert-revoked",
	    "client certificate revoked", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_check_prints_crl_next_update)
{
	struct spec s = { .tls_extra = "crl = \"@PKI@/ca.crl\";" };
	struct check_run r;
	char date[32], want[256];
	X509_CRL *crl;
	FILE *f = fopen(h_pki("ca.crl"), "re");
	time_t next;

	ck_assert(f != NULL);
	crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert(crl != NULL);
	next = asn1_unix(X509_CRL_get0_nextUpdate(crl));
	X509_CRL_free(crl);
	ymd(next, date, sizeof(date));
	run_check(&r, "check-crl", &s);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	snprintf(want, sizeof(want), "listener echo: CRL of \"O=tls-echod tests, "
	    "CN=tls-echod test CA\": next update %s, in ", date);
	ck_assert_msg(strstr(r.out, want) != NULL, "output lacks \"%s\":\n%s",
	    want, r.out);
	run_free(&r);
}
END_TEST

/*
 * Root-only CA file, clients that send their intermediate: the
 * intermediate's CRL is what revokes its clients (mbedTLS checks a CRL at
 * every link of the chain), so it must be accepted and must apply.
 */
START_TEST(test_crl_of_intermediate_revokes_its_client_with_root_only_ca)
{
	struct spec s = { .tls_extra =
	    "crl = [\"@PKI@/ca.crl\", \"@PKI@/int-ca.crl\"];" };
	struct h_tls_opts good = client_files("client-int-chain", "client-int",
	    0);
	struct h_tls_opts revoked = client_files("client-int-revoked-chain",
	    "client-int-revoked", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "crl-intermediate", &s);
	ADMITTED(&d, &good, "client of the intermediate", NULL, NULL, line);
	REFUSED(&d, &revoked, "revoked client of the intermediate",
	    "cert-revoked", "client certificate revoked", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * other-ca.crl: issued by other-ca, which has the same name as ca.crt but
 * another key.  Such a CRL can never verify (mbedTLS would flag every client
 * with BADCRL_NOT_TRUSTED): -t must say so, naming the CRL.
 */
START_TEST(test_check_refuses_crl_signed_by_another_key_of_the_same_name)
{
	struct spec s = { .tls_extra = "crl = \"@PKI@/other-ca.crl\";" };
	struct check_run r;

	run_check(&r, "check-crl-otherkey", &s);
	assert_check_error(&r, "crl = ", "listeners[0].tls.crl", "other-ca.crl");
	run_free(&r);
}
END_TEST

/* The second file of a list is the bad one: the error names that file. */
START_TEST(test_check_names_the_bad_crl_of_a_list)
{
	struct spec s = { .tls_extra =
	    "crl = [\"@PKI@/ca.crl\", \"@PKI@/other-ca.crl\"];" };
	struct check_run r;

	run_check(&r, "check-crl-list", &s);
	assert_check_error(&r, "crl = ", "listeners[0].tls.crl",
	    "other-ca.crl");
	run_free(&r);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* intermediate chains, verify_depth                                         */
/* ------------------------------------------------------------------------- */

START_TEST(test_client_of_intermediate_with_its_chain_is_admitted_by_root)
{
	int v = _i;
	struct spec s = { 0 };
	struct h_tls_opts inter = client_files("client-int-chain", "client-int",
	    versions[v]);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "chain", &s);
	ADMITTED(&d, &inter, "intermediate chain",
	    "CLIENT_SUBJECT=\"OU=ops, CN=test-client-int\" ", NULL, line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_client_of_intermediate_without_its_chain_is_unknown_ca)
{
	struct spec s = { 0 };
	struct h_tls_opts alone = h_client_opts("client-int", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "chain-missing", &s);
	REFUSED(&d, &alone, "leaf without intermediate", "unknown-ca",
	    "client certificate issued by an unknown CA", line);
	ck_assert_msg(strstr(line, "intermediate") != NULL, "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_verify_depth_0_refuses_intermediate_chain_as_too_long)
{
	int v = _i;
	struct spec s = { .tls_extra = "verify_depth = 0;" };
	struct h_tls_opts inter = client_files("client-int-chain", "client-int",
	    versions[v]);
	struct h_tls_opts direct = h_client_opts("client", versions[v]);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "depth0", &s);
	REFUSED(&d, &inter, "intermediate chain", "chain-too-long",
	    "client certificate chain too long", line);
	ADMITTED(&d, &direct, "direct client", NULL, NULL, line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* verify_client = "optional"                                                */
/* ------------------------------------------------------------------------- */

START_TEST(test_optional_admits_client_without_certificate_as_unauthenticated)
{
	int v = _i;
	struct spec s = { .tls_extra = "verify_client = \"optional\";" };
	struct h_tls_opts anon = h_client_opts(NULL, versions[v]);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "optional-anon", &s);
	ADMITTED(&d, &anon, "no certificate", "CLIENT_AUTH=none ", NULL, line);
	ck_assert_msg(strstr(line, "CLIENT_SUBJECT=\"\"") != NULL ||
	    strstr(line, "CLIENT_SUBJECT=") == NULL, "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_optional_still_refuses_expired_certificate)
{
	int v = _i;
	struct spec s = { .tls_extra = "verify_client = \"optional\";" };
	struct h_tls_opts expired = h_client_opts("client-expired",
	    versions[v]);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "optional-expired", &s);
	REFUSED(&d, &expired, "expired", "cert-expired",
	    "client certificate expired", line);
	ck_assert_msg(strstr(line, "2021-01-01") != NULL, "%s", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_optional_admits_good_certificate_as_authenticated)
{
	struct spec s = { .tls_extra = "verify_client = \"optional\";" };
	struct h_tls_opts good = h_client_opts("client", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "optional-good", &s);
	ADMITTED(&d, &good, "good", "CLIENT_AUTH=certificate ",
	    "CLIENT_SUBJECT=\"OU=ops, CN=test-client\" ", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* TLS policy knobs                                                          */
/* ------------------------------------------------------------------------- */

#define CHACHA_ONLY "ciphers = [\"TLS_CHACHA20_POLY1305_SHA256\", " \
	"\"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\"];"

START_TEST(test_ciphers_refuse_aes_gcm_only_client_as_no_shared_cipher)
{
	int v = _i;
	struct spec s = { .tls_extra = CHACHA_ONLY };
	struct h_tls_opts aes = h_client_opts("client", versions[v]);
	struct h_daemon d;
	char line[4096];

	if (v == 0)
		aes.ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
	else
		aes.cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256:"
		    "ECDHE-ECDSA-AES256-GCM-SHA384";
	daemon_up(&d, "ciphers-aes", &s);
	REFUSED(&d, &aes, "AES-GCM only", "no-shared-cipher",
	    "no shared cipher", line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_ciphers_negotiate_chacha_in_tls13_and_tls12)
{
	static const char *const want[] = {
		"TLS_CHACHA20_POLY1305_SHA256",
		"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	};
	int v = _i;
	struct spec s = { .tls_extra = CHACHA_ONLY };
	struct h_tls_opts o = h_client_opts("client", versions[v]);
	struct h_daemon d;
	struct h_tls c;
	char line[4096], tag[128], tail[1500];
	const char *got;

	daemon_up(&d, "ciphers-chacha", &s);
	ck_assert_msg(h_tls_connect(&c, d.port, &o) == 0, "%s; log ends:\n%s",
	    c.err, h_log_tail(&d, tail, sizeof(tail)));
	got = SSL_CIPHER_standard_name(SSL_get_current_cipher(c.ssl));
	ck_assert_msg(got != NULL && strcmp(got, want[v]) == 0, "%s: client "
	    "negotiated %s, want %s", version_names[v], got, want[v]);
	ck_assert(h_tls_roundtrip(&c, "chacha\n", 7, IO_MS) == 0);
	h_tls_close(&c);
	snprintf(tag, sizeof(tag), "TLS_CIPHER=%s ", want[v]);
	H_LOG_EXPECT(&d, line, c.peer_tag, ": connection closed: ", tag);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_min_version_13_refuses_tls12_only_client)
{
	struct spec s = { .tls_extra = "min_version = \"1.3\";" };
	struct h_tls_opts old = h_client_opts("client", TLS1_2_VERSION);
	struct h_tls_opts cur = h_client_opts("client", TLS1_3_VERSION);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "minver13", &s);
	REFUSED(&d, &old, "TLS 1.2 only", "protocol-version",
	    "protocol version not supported", line);
	ADMITTED(&d, &cur, "TLS 1.3", "TLS_VERSION=TLSv1.3 ", NULL, line);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_curves_x25519_with_min_version_13_is_accepted_and_used)
{
	struct spec s = { .tls_extra =
	    "curves = [\"x25519\"];\n      min_version = \"1.3\";" };
	struct h_tls_opts o = h_client_opts("client", 0);
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "curves-x25519", &s);
	ADMITTED(&d, &o, "x25519", "TLS_VERSION=TLSv1.3 ", NULL, line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* Each: the setting's line, the setting's name and the key words. */
static const struct {
	const char *label, *tls_extra, *at, *setting, *keyword;
} bad_policy[] = {
	{ "cipher-unknown", "ciphers = [\"TLS_FOO\"];", "ciphers =",
	  "listeners[0].tls.ciphers", "\"TLS_FOO\": unknown" },
	{ "cipher-cbc", "ciphers = [\"TLS_AES_128_GCM_SHA256\",\n"
	  "        \"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256\"];", "ciphers =",
	  "listeners[0].tls.ciphers", "refused by policy" },
	{ "cipher-openssl", "ciphers = [\"ECDHE-ECDSA-AES128-GCM-SHA256\"];",
	  "ciphers =", "listeners[0].tls.ciphers", "use IANA names" },
	{ "cipher-no13", "ciphers = "
	  "[\"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\"];", "ciphers =",
	  "listeners[0].tls.ciphers", "no TLS 1.3 cipher suite" },
	{ "curve-x25519-12", "curves = [\"x25519\"];", "curves =",
	  "listeners[0].tls.curves", "NIST curve" },
	{ "curve-unknown", "curves = [\"nope\"];", "curves =",
	  "listeners[0].tls.curves", "\"nope\": unknown curve" },
	{ "minver-11", "min_version = \"1.1\";", "min_version =",
	  "listeners[0].tls.min_version", "\"1.1\"" },
	{ "verify-client", "verify_client = \"sometimes\";", "verify_client =",
	  "listeners[0].tls.verify_client", "\"sometimes\"" },
	{ "crl-stale", "crl_stale = \"ignore\";", "crl_stale =",
	  "listeners[0].tls.crl_stale", "\"ignore\"" },
};

START_TEST(test_check_reports_bad_tls_policy_with_file_line_and_setting)
{
	struct spec s = { .tls_extra = bad_policy[_i].tls_extra };
	struct check_run r;

	run_check(&r, bad_policy[_i].label, &s);
	assert_check_error(&r, bad_policy[_i].at, bad_policy[_i].setting,
	    bad_policy[_i].keyword);
	run_free(&r);
}
END_TEST

START_TEST(test_check_min_version_11_names_the_supported_versions)
{
	struct spec s = { .tls_extra = "min_version = \"1.1\";" };
	struct check_run r;

	run_check(&r, "minver11-words", &s);
	ck_assert_msg(strstr(r.out, "\"1.2\"") != NULL &&
	    strstr(r.out, "\"1.3\"") != NULL, "%s", r.out);
	run_free(&r);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* expiry signals                                                            */
/* ------------------------------------------------------------------------- */

/* "expires DATE, in N day(s)" for PKI certificate ${name}: N or N-1 is
 * accepted (the day may turn between our clock and the daemon's). */
static void
expiry_text(const char *name, char *buf, size_t len, char *alt, size_t altlen)
{
	X509 *x = load_x509(name);
	time_t when = asn1_unix(X509_get0_notAfter(x));
	long days = (long)((when - time(NULL)) / 86400);
	char date[32];

	X509_free(x);
	ymd(when, date, sizeof(date));
	snprintf(buf, len, "expires %s, in %ld day(s)", date, days);
	snprintf(alt, altlen, "expires %s, in %ld day(s)", date, days - 1);
}

static void
assert_has_either(const char *out, const char *a, const char *b)
{
	ck_assert_msg(strstr(out, a) != NULL || strstr(out, b) != NULL,
	    "output lacks \"%s\":\n%s", a, out);
}

START_TEST(test_check_prints_days_left_of_server_certificate_and_ca)
{
	struct spec s = { .globals = "expiry_warn_days = 0;" };
	struct check_run r;
	char a[160], b[160], wa[300], wb[300];

	run_check(&r, "check-expiry", &s);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	expiry_text("server.crt", a, sizeof(a), b, sizeof(b));
	snprintf(wa, sizeof(wa), "listener echo: server certificate "
	    "\"CN=localhost\" %s\n", a);
	snprintf(wb, sizeof(wb), "listener echo: server certificate "
	    "\"CN=localhost\" %s\n", b);
	assert_has_either(r.out, wa, wb);
	expiry_text("ca.crt", a, sizeof(a), b, sizeof(b));
	snprintf(wa, sizeof(wa), "listener echo: CA \"O=tls-echod tests, "
	    "CN=tls-echod test CA\" %s\n", a);
	snprintf(wb, sizeof(wb), "listener echo: CA \"O=tls-echod tests, "
	    "CN=tls-echod test CA\" %s\n", b);
	assert_has_either(r.out, wa, wb);
	ck_assert_msg(strstr(r.out, "warning:") == NULL, "warnings with "
	    "expiry_warn_days = 0:\n%s", r.out);
	run_free(&r);
}
END_TEST

START_TEST(test_check_warns_below_expiry_warn_days)
{
	struct spec s = { .globals = "expiry_warn_days = 3650;" };
	struct check_run r;

	run_check(&r, "check-expiry-warn", &s);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	ck_assert_msg(strstr(r.out, "warning: listener echo: server certificate "
	    "\"CN=localhost\" expires ") != NULL, "%s", r.out);
	ck_assert_msg(strstr(r.out, "warning: listener echo: CA \"O=tls-echod "
	    "tests, CN=tls-echod test CA\" expires ") != NULL, "%s", r.out);
	ck_assert_msg(strstr(r.out, "day(s) - renew it\n") != NULL, "%s", r.out);
	run_free(&r);
}
END_TEST

/* Ten years is the ceiling: a larger value is a typo, said with the range. */
START_TEST(test_check_refuses_expiry_warn_days_beyond_ten_years_with_range)
{
	struct spec s = { .globals = "expiry_warn_days = 100000;" };
	struct check_run r;

	run_check(&r, "check-expiry-huge", &s);
	assert_check_error(&r, "expiry_warn_days =", "expiry_warn_days",
	    "0 to 3650");
	run_free(&r);
}
END_TEST

START_TEST(test_daemon_logs_expiry_warnings_and_status_shows_nearest_expiry)
{
	struct spec s = { .globals = "expiry_warn_days = 3650;" };
	const struct h_notify_msg *m;
	struct h_daemon d;
	char line[4096];

	daemon_up(&d, "expiry-log", &s);
	H_LOG_EXPECT(&d, line, ": warning: listener echo: server certificate "
	    "\"CN=localhost\" expires ", "day(s) - renew it ",
	    "CERT_KIND=\"server certificate\" ", "DAYS_LEFT=");
	H_LOG_EXPECT(&d, line, ": warning: listener echo: CA \"O=tls-echod "
	    "tests, CN=tls-echod test CA\" expires ", "day(s) - renew it ");
	m = h_notify_wait(&d, "nearest expiry", LOG_MS);
	ck_assert_msg(m != NULL, "no STATUS= with \"nearest expiry\"");
	ck_assert_msg(strstr(m->text, "STATUS=") != NULL &&
	    strstr(m->text, "nearest expiry: server certificate CN=localhost "
	    "in ") != NULL, "STATUS: %s", m->text);
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_key_file_readable_by_others_is_warned_about)
{
	char key[4096], *text;
	struct spec s = { .key = key, .globals = "expiry_warn_days = 0;" };
	struct check_run r;
	struct h_daemon d;
	char line[4096], want[4300];

	snprintf(key, sizeof(key), "%s", h_tmp("server-0644.key"));
	text = slurp(h_pki("server.key"));
	write_file(key, text, 0644);
	free(text);

	run_check(&r, "check-keymode", &s);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	snprintf(want, sizeof(want), "warning: listener echo: private key %s is "
	    "readable by group or others (mode 0644)", key);
	ck_assert_msg(strstr(r.out, want) != NULL, "output lacks \"%s\":\n%s",
	    want, r.out);
	run_free(&r);

	daemon_up(&d, "keymode", &s);
	H_LOG_EXPECT(&d, line, ": warning: listener echo: private key ",
	    "is readable by group or others (mode 0644)");
	H_DAEMON_DOWN(&d);
}
END_TEST

/* How many times ${needle} occurs in ${s}. */
static int
count_of(const char *s, const char *needle)
{
	int n = 0;

	while ((s = strstr(s, needle)) != NULL) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/*
 * A CA of tls.ca without a CRL while another CA there has one: its clients
 * are never checked for revocation.  -t warns, naming that CA only, and
 * the start log says the same.
 */
START_TEST(test_check_warns_about_ca_without_crl_when_another_ca_has_one)
{
	struct spec s = { .globals = "expiry_warn_days = 0;",
	    .ca = "ca-int-bundle.crt", .tls_extra = "crl = \"@PKI@/ca.crl\";" };
	static const char want[] = "warning: listener echo: CA \"O=tls-echod "
	    "tests, CN=tls-echod test intermediate CA\" of tls.ca has no CRL in "
	    "tls.crl while other CAs there have one";
	struct check_run r;
	struct h_daemon d;
	char line[4096];

	run_check(&r, "check-ca-no-crl", &s);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	ck_assert_msg(strstr(r.out, want) != NULL, "output lacks \"%s\":\n%s",
	    want, r.out);
	ck_assert_msg(count_of(r.out, "warning:") == 1, "one warning wanted:\n"
	    "%s", r.out);
	run_free(&r);

	daemon_up(&d, "ca-no-crl", &s);
	H_LOG_EXPECT(&d, line, want + strlen("warning: "));
	ck_assert_int_eq(h_log_count(&d, "has no CRL in tls.crl", NULL), 1);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * ...and only then: no CRL at all, a CRL for each CA, the one CA with its
 * CRL, a root-only tls.ca with the CRLs of the root and of an intermediate
 * clients send, or of the intermediate alone.
 */
static const struct {
	const char *ca, *crl;
} crl_quiet[] = {
	{ "ca-int-bundle.crt", NULL },
	{ "ca-int-bundle.crt", "crl = [\"@PKI@/ca.crl\", \"@PKI@/int-ca.crl\"];" },
	{ "ca.crt", NULL },
	{ "ca.crt", "crl = \"@PKI@/ca.crl\";" },
	{ "ca.crt", "crl = [\"@PKI@/ca.crl\", \"@PKI@/int-ca.crl\"];" },
	{ "ca.crt", "crl = \"@PKI@/int-ca.crl\";" },
};

START_TEST(test_check_is_quiet_about_crls_when_every_ca_or_none_has_one)
{
	struct spec s = { .globals = "expiry_warn_days = 0;",
	    .ca = crl_quiet[_i].ca, .tls_extra = crl_quiet[_i].crl };
	struct check_run r;

	run_check(&r, "check-crl-quiet", &s);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	ck_assert_msg(strstr(r.out, "warning:") == NULL, "tls.ca %s, %s: "
	    "unexpected warning:\n%s", crl_quiet[_i].ca, crl_quiet[_i].crl ?
	    crl_quiet[_i].crl : "no CRL", r.out);
	run_free(&r);
}
END_TEST

/*
 * An allow.uri prefix that does not end a path segment matches across it
 * ("spiffe://prod*" admits "spiffe://production/..."): -t warns about
 * each such prefix, and the start log says the same.  Exact URIs and
 * prefixes ending in "/" (or ":" in a URN) are quiet.
 */
START_TEST(test_check_warns_about_allow_uri_prefix_not_ending_in_slash)
{
	struct spec s = { .globals = "expiry_warn_days = 0;",
	    .listener_extra = "allow = { uri = [\"spiffe://prod*\", "
	    "\"spiffe://test.example/*\", \"spiffe://test.example/client\", "
	    "\"spiffe://*\", \"urn:example:ns:*\", \"urn:example:ns*\"]; };" };
	struct spec quiet = { .globals = "expiry_warn_days = 0;",
	    .listener_extra = "allow = { uri = [\"spiffe://test.example/*\", "
	    "\"spiffe://prod/ns/web/*\", \"spiffe://test.example/client\", "
	    "\"urn:example:ns:*\"]; };" };
	static const char w1[] = "warning: listener echo: allow.uri "
	    "\"spiffe://prod*\" is a prefix that does not end in \"/\": it "
	    "matches across path segments (\"spiffe://prodX/...\" too); write "
	    "\"spiffe://prod/*\"";
	static const char w2[] = "warning: listener echo: allow.uri "
	    "\"urn:example:ns*\" is a prefix that does not end in \":\"";
	struct check_run r;
	struct h_daemon d;
	char line[4096];

	run_check(&r, "check-uri-prefix", &s);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	ck_assert_msg(strstr(r.out, w1) != NULL, "output lacks \"%s\":\n%s", w1,
	    r.out);
	ck_assert_msg(strstr(r.out, w2) != NULL, "output lacks \"%s\":\n%s", w2,
	    r.out);
	ck_assert_msg(count_of(r.out, "warning:") == 2, "two warnings "
	    "wanted:\n%s", r.out);
	run_free(&r);

	run_check(&r, "check-uri-prefix-quiet", &quiet);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.out);
	ck_assert_msg(strstr(r.out, "warning:") == NULL, "unexpected "
	    "warning:\n%s", r.out);
	run_free(&r);

	daemon_up(&d, "uri-prefix", &s);
	H_LOG_EXPECT(&d, line, w1 + strlen("warning: "));
	H_LOG_EXPECT(&d, line, w2 + strlen("warning: "));
	ck_assert_int_eq(h_log_count(&d, "allow.uri", NULL), 2);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* whoami                                                                    */
/* ------------------------------------------------------------------------- */

/* Read one line (up to '\n') from ${c}; its length, 0 on failure. */
static size_t
tls_read_line(struct h_tls *c, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		if (h_tls_read_exact(c, buf + n, 1, IO_MS) != 0)
			return 0;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return n;
}

static const char whoami_py[] =
    "import json, sys\n"
    "line = sys.stdin.readline()\n"
    "d = json.loads(line)\n"
    "subject, version, cipher, serial, not_after, spki = sys.argv[1:7]\n"
    "errs = []\n"
    "def want(k, v):\n"
    "    if d.get(k) != v:\n"
    "        errs.append('%s: %r, want %r' % (k, d.get(k), v))\n"
    "want('verified', True)\n"
    "want('subject', subject)\n"
    "want('cn', ['test-client'])\n"
    "want('ou', ['ops'])\n"
    "if 'spiffe://test.example/client' not in d.get('uri', []):\n"
    "    errs.append('uri: %r lacks spiffe://test.example/client' % "
    "d.get('uri'))\n"
    "want('dns', ['client.test.example'])\n"
    "want('email', ['test-client@example.com'])\n"
    "want('issuer', 'O=tls-echod tests, CN=tls-echod test CA')\n"
    "s = str(d.get('serial', ''))\n"
    "try:\n"
    "    if int(s.replace(':', ''), 16) != int(serial, 16):\n"
    "        errs.append('serial: %r, want %s' % (s, serial))\n"
    "except ValueError:\n"
    "    errs.append('serial: %r is not hex' % s)\n"
    "want('not_after', not_after)\n"
    "want('spki_sha256', spki)\n"
    "want('tls_version', version)\n"
    "want('cipher', cipher)\n"
    "want('resumed', False)\n"
    "print('OK' if not errs else '; '.join(errs))\n";

START_TEST(test_whoami_sends_client_identity_as_json_then_echoes)
{
	int v = _i;
	struct spec s = { .mode = "whoami" };
	struct h_tls_opts o = h_client_opts("client", versions[v]);
	struct h_daemon d;
	struct h_tls c;
	char json[8192], out[4096], serial[128], not_after[32], spki[64];
	char tail[1500], errlog[4096];
	const char *cipher;
	X509 *x = load_x509("client.crt");
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
	char *hex = BN_bn2hex(bn);
	time_t na = asn1_unix(X509_get0_notAfter(x));
	struct tm tm;
	int to = -1, from = -1, st;
	pid_t py;
	size_t n;

	snprintf(serial, sizeof(serial), "%s", hex);
	OPENSSL_free(hex);
	BN_free(bn);
	X509_free(x);
	gmtime_r(&na, &tm);
	strftime(not_after, sizeof(not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
	spki_b64(h_pki("client.crt"), spki, sizeof(spki));

	daemon_up(&d, "whoami", &s);
	ck_assert_msg(h_tls_connect(&c, d.port, &o) == 0, "%s; log ends:\n%s",
	    c.err, h_log_tail(&d, tail, sizeof(tail)));
	cipher = SSL_CIPHER_standard_name(SSL_get_current_cipher(c.ssl));
	n = tls_read_line(&c, json, sizeof(json));
	ck_assert_msg(n > 0 && json[0] == '{', "no JSON line (%s): \"%s\"",
	    c.err, json);

	{
		const char *argv[] = { "python3", "-c", whoami_py,
		    "OU=ops, CN=test-client", version_names[v], cipher, serial,
		    not_after, spki, NULL };

		snprintf(errlog, sizeof(errlog), "%s", h_tmp("whoami-py.err"));
		py = h_spawn(argv, &to, &from, errlog);
		ck_assert_msg(py > 0, "cannot run python3");
		ck_assert(h_fd_write_all(to, json, n, IO_MS) == 0);
		close(to);
		(void)h_fd_read_until(from, out, sizeof(out), NULL, IO_MS);
		close(from);
		st = h_wait_pid(py, IO_MS);
	}
	out[strcspn(out, "\n")] = '\0';
	ck_assert_msg(st == 0 && strcmp(out, "OK") == 0, "whoami JSON %s "
	    "(python3 exit %d): %s", json, st, out);

	ck_assert_msg(h_tls_roundtrip(&c, "after whoami\n", 13, IO_MS) == 0,
	    "no echo after the JSON line: %s", c.err);
	h_tls_close(&c);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * Names are UTF-8 in certificates and JSON strings are Unicode: a CN
 * "Jürgen Ops" must read back as exactly that, not byte by byte as Latin-1
 * ("JÃ¼rgen Ops").
 */
START_TEST(test_whoami_reports_utf8_names_as_the_same_unicode_text)
{
	static const char py[] =
	    "import json, sys\n"
	    "d = json.loads(sys.stdin.readline())\n"
	    "errs = []\n"
	    "if d.get('cn') != ['J\\u00fcrgen Ops']:\n"
	    "    errs.append('cn: %a' % d.get('cn'))\n"
	    "if d.get('ou') != ['\\u00dcnit']:\n"
	    "    errs.append('ou: %a' % d.get('ou'))\n"
	    "print('OK' if not errs else '; '.join(errs))\n";
	struct spec s = { .mode = "whoami" };
	char key[4096], csr[4096], crt[4096], log[4096], err[256];
	char json[8192], out[4096], tail[1500];
	const char *req[] = { "openssl", "req", "-new", "-newkey", "ec",
	    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-utf8",
	    "-subj", "/OU=\xc3\x9cnit/CN=J\xc3\xbcrgen Ops", "-keyout", key,
	    "-out", csr, NULL };
	const char *sign[] = { "openssl", "x509", "-req", "-in", csr, "-CA",
	    NULL, "-CAkey", NULL, "-set_serial", "4242", "-days", "1", "-out",
	    crt, NULL };
	const char *argv[] = { "python3", "-c", py, NULL };
	struct h_tls_opts o;
	struct h_daemon d;
	struct h_tls c;
	int to, from, st;
	pid_t pid;
	size_t n;
	char ca[4096], cakey[4096];

	snprintf(key, sizeof(key), "%s", h_tmp("utf8-client.key"));
	snprintf(csr, sizeof(csr), "%s", h_tmp("utf8-client.csr"));
	snprintf(crt, sizeof(crt), "%s", h_tmp("utf8-client.crt"));
	snprintf(log, sizeof(log), "%s", h_tmp("utf8-openssl.log"));
	snprintf(ca, sizeof(ca), "%s", h_pki("ca.crt"));
	snprintf(cakey, sizeof(cakey), "%s", h_pki("ca.key"));
	sign[6] = ca;
	sign[8] = cakey;
	ck_assert_msg(h_run(req, log, RUN_MS, err, sizeof(err)) == 0,
	    "openssl req failed (%s); see %s", err, log);
	ck_assert_msg(h_run(sign, log, RUN_MS, err, sizeof(err)) == 0,
	    "openssl x509 -req failed (%s); see %s", err, log);

	memset(&o, 0, sizeof(o));
	o.cert = crt;
	o.key = key;
	daemon_up(&d, "whoami-utf8", &s);
	ck_assert_msg(h_tls_connect(&c, d.port, &o) == 0, "%s; log ends:\n%s",
	    c.err, h_log_tail(&d, tail, sizeof(tail)));
	n = tls_read_line(&c, json, sizeof(json));
	ck_assert_msg(n > 0, "no JSON line: %s", c.err);
	h_tls_close(&c);
	pid = h_spawn(argv, &to, &from, h_tmp("whoami-utf8-py.err"));
	ck_assert(pid > 0);
	ck_assert(h_fd_write_all(to, json, n, IO_MS) == 0);
	close(to);
	(void)h_fd_read_until(from, out, sizeof(out), NULL, IO_MS);
	close(from);
	st = h_wait_pid(pid, IO_MS);
	out[strcspn(out, "\n")] = '\0';
	ck_assert_msg(st == 0 && strcmp(out, "OK") == 0, "whoami JSON %s"
	    "(python3 exit %d): %s", json, st, out);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */

static TCase *
tcase(Suite *s, const char *name, int timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *
identity_suite(void)
{
	Suite *s = suite_create("identity");
	TCase *tc;

	tc = tcase(s, "allow", 30);
	tcase_add_loop_test(tc,
	    test_allow_cn_admits_named_client_and_refuses_another_cn_with_its_names,
	    0, 2);
	tcase_add_loop_test(tc,
	    test_identity_refusal_reaches_client_as_access_denied_alert, 0, 2);
	tcase_add_test(tc, test_allow_ou_admits_ops_and_refuses_dev);
	tcase_add_test(tc, test_allow_dns_exact_admits_that_name_only);
	tcase_add_test(tc, test_allow_dns_wildcard_admits_one_label_and_refuses_two);
	tcase_add_test(tc, test_allow_uri_exact_admits_that_spiffe_id_only);
	tcase_add_test(tc, test_allow_uri_prefix_admits_namespace_and_refuses_another);
	tcase_add_test(tc, test_allow_email_exact_admits_that_address_only);
	tcase_add_test(tc, test_allow_email_domain_admits_domain_and_refuses_subdomain);
	tcase_add_test(tc, test_allow_spki_pin_admits_that_key_and_refuses_another_key);
	tcase_add_test(tc, test_allow_several_rules_any_match_admits);
	tcase_add_test(tc, test_no_allow_list_admits_any_client_of_the_ca);

	tc = tcase(s, "crl", 30);
	tcase_add_loop_test(tc, test_crl_refuses_revoked_client_and_admits_good_one,
	    0, 4);
	tcase_add_test(tc, test_crl_list_of_two_files_applies_both);
	tcase_add_test(tc, test_stale_crl_with_warn_admits_and_warns_once);
	tcase_add_loop_test(tc, test_stale_crl_with_refuse_refuses_as_crl_stale,
	    0, 2);
	tcase_add_test(tc, test_crl_file_replaced_and_reloaded_on_sighup_applies);
	tcase_add_test(tc, test_check_prints_crl_next_update);
	tcase_add_test(tc, test_crl_of_intermediate_revokes_its_client_with_root_only_ca);
	tcase_add_test(tc, test_check_refuses_crl_signed_by_another_key_of_the_same_name);
	tcase_add_test(tc, test_check_names_the_bad_crl_of_a_list);

	tc = tcase(s, "chain", 30);
	tcase_add_loop_test(tc,
	    test_client_of_intermediate_with_its_chain_is_admitted_by_root, 0, 2);
	tcase_add_test(tc, test_client_of_intermediate_without_its_chain_is_unknown_ca);
	tcase_add_loop_test(tc,
	    test_verify_depth_0_refuses_intermediate_chain_as_too_long, 0, 2);

	tc = tcase(s, "optional", 30);
	tcase_add_loop_test(tc,
	    test_optional_admits_client_without_certificate_as_unauthenticated,
	    0, 2);
	tcase_add_loop_test(tc, test_optional_still_refuses_expired_certificate,
	    0, 2);
	tcase_add_test(tc, test_optional_admits_good_certificate_as_authenticated);

	tc = tcase(s, "policy", 30);
	tcase_add_loop_test(tc,
	    test_ciphers_refuse_aes_gcm_only_client_as_no_shared_cipher, 0, 2);
	tcase_add_loop_test(tc, test_ciphers_negotiate_chacha_in_tls13_and_tls12,
	    0, 2);
	tcase_add_test(tc, test_min_version_13_refuses_tls12_only_client);
	tcase_add_test(tc, test_curves_x25519_with_min_version_13_is_accepted_and_used);
	tcase_add_loop_test(tc,
	    test_check_reports_bad_tls_policy_with_file_line_and_setting, 0,
	    (int)(sizeof(bad_policy) / sizeof(bad_policy[0])));
	tcase_add_test(tc, test_check_min_version_11_names_the_supported_versions);

	tc = tcase(s, "expiry", 30);
	tcase_add_test(tc, test_check_prints_days_left_of_server_certificate_and_ca);
	tcase_add_test(tc, test_check_warns_below_expiry_warn_days);
	tcase_add_test(tc, test_check_refuses_expiry_warn_days_beyond_ten_years_with_range);
	tcase_add_test(tc,
	    test_daemon_logs_expiry_warnings_and_status_shows_nearest_expiry);
	tcase_add_test(tc, test_key_file_readable_by_others_is_warned_about);

	tc = tcase(s, "warnings", 30);
	tcase_add_test(tc,
	    test_check_warns_about_ca_without_crl_when_another_ca_has_one);
	tcase_add_loop_test(tc,
	    test_check_is_quiet_about_crls_when_every_ca_or_none_has_one, 0,
	    (int)(sizeof(crl_quiet) / sizeof(crl_quiet[0])));
	tcase_add_test(tc,
	    test_check_warns_about_allow_uri_prefix_not_ending_in_slash);

	tc = tcase(s, "whoami", 30);
	tcase_add_loop_test(tc, test_whoami_sends_client_identity_as_json_then_echoes,
	    0, 2);
	tcase_add_test(tc, test_whoami_reports_utf8_names_as_the_same_unicode_text);
	return s;
}

int
main(void)
{
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_identity: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(identity_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
