/*
 * check_authn: session tickets must admit exactly what a full handshake
 * would admit at that moment, on that listener, under its current
 * configuration, or not resume.  An attacker's suite against the
 * real daemon: one test per way in, each naming in its failure what got in.
 *
 * Every daemon is socket-activated on loopback with its own log
 * (test/harness.c); a client's log line is found by its PEER_ADDR.  The
 * certificates come from test/gen-test-pki.sh ($TEST_PKI), and those a test
 * needs beyond them (a client to revoke, a second CA and its client, an
 * impostor copying client.crt's names) are issued here with OpenSSL, signed
 * by the test CA's key or self-signed, into $TEST_TMPDIR.
 *
 * Sessions a refused connection got are "laundered" (i2d then d2i, what
 * `openssl s_client -sess_out` and `-sess_in` do) before they are offered
 * again: OpenSSL marks a session not resumable when its connection ends in
 * an alert, an attacker does not.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "harness.h"

#define IO_MS 10000   /* bound for one client operation */
#define LOG_MS 5000   /* bound for a log line to appear */
#define DAY 86400

/* OpenSSL's SSL_SESS_FLAG_EXTMS (ssl/ssl_local.h): the session used the
 * extended master secret; a resumption that negotiates EMS needs it. */
#define OSSL_SESS_FLAG_EXTMS 0x1

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

/* ------------------------------------------------------------------------- */
/* small tools                                                               */
/* ------------------------------------------------------------------------- */

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

/* Write ${text} to ${path} through a rename (a reload never sees half). */
static void
write_file(const char *path, const char *text)
{
	char tmp[PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "we");
	ck_assert_msg(f != NULL, "%s: %s", tmp, strerror(errno));
	fputs(text, f);
	ck_assert_msg(fclose(f) == 0, "%s: %s", tmp, strerror(errno));
	ck_assert_msg(rename(tmp, path) == 0, "rename to %s: %s", path,
	    strerror(errno));
}

/* The shared ticket key file (what hosts behind one balancer share). */
static const char *
key_file(void)
{
	const char *path = h_tmp("authn-ticket.key");

	write_file(path, "authn-0123456789abcdef0123456789abcdef-test-only\n");
	return path;
}

/* ------------------------------------------------------------------------- */
/* certificates issued by the test                                           */
/* ------------------------------------------------------------------------- */

struct pki_item {
	char crt[PATH_MAX];
	char key[PATH_MAX];
	X509 *x;
	EVP_PKEY *k;
};

static void
item_free(struct pki_item *it)
{
	X509_free(it->x);
	EVP_PKEY_free(it->k);
	memset(it, 0, sizeof(*it));
}

/* The PKI's ${name}.crt and ${name}.key, loaded. */
static void
item_load(struct pki_item *it, const char *name)
{
	char f[96];
	FILE *fp;

	memset(it, 0, sizeof(*it));
	snprintf(f, sizeof(f), "%s.crt", name);
	snprintf(it->crt, sizeof(it->crt), "%s", h_pki(f));
	snprintf(f, sizeof(f), "%s.key", name);
	snprintf(it->key, sizeof(it->key), "%s", h_pki(f));
	fp = fopen(it->crt, "re");
	ck_assert_msg(fp != NULL, "%s: %s", it->crt, strerror(errno));
	it->x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	fp = fopen(it->key, "re");
	ck_assert_msg(fp != NULL, "%s: %s", it->key, strerror(errno));
	it->k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	ck_assert_msg(it->x != NULL && it->k != NULL, "cannot load %s", name);
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	ck_assert_msg(e != NULL, "extension %s = %s", OBJ_nid2sn(nid), value);
	ck_assert(X509_add_ext(x, e, -1) == 1);
	X509_EXTENSION_free(e);
}

/*
 * Issue ${out}: a fresh P-256 key and a certificate for it, valid from
 * two days ago for 30 days, signed by ${issuer} (NULL: self-signed), a CA
 * if ${ca}.  Its subject is ${rdn} ("OU", "ops", "CN", "x", NULL) or, with
 * ${copy}, ${copy}'s subject and subjectAltName.  ${san} adds a
 * subjectAltName (e.g. "URI:spiffe://x").  Files TEST_TMPDIR/authn-${name}.*.
 */
static void
issue(struct pki_item *out, const char *name, const char *const *rdn,
    const X509 *copy, const char *san, const struct pki_item *issuer,
    bool ca)
{
	X509_NAME *subj = NULL;
	ASN1_INTEGER *serial;
	BIGNUM *bn = BN_new();
	char f[128];
	FILE *fp;

	memset(out, 0, sizeof(*out));
	out->k = EVP_EC_gen("P-256");
	out->x = X509_new();
	ck_assert(out->k != NULL && out->x != NULL && bn != NULL);
	ck_assert(X509_set_version(out->x, 2) == 1);
	ck_assert(BN_rand(bn, 63, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1);
	serial = BN_to_ASN1_INTEGER(bn, NULL);
	ck_assert(serial != NULL && X509_set_serialNumber(out->x, serial) == 1);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	ck_assert(X509_gmtime_adj(X509_getm_notBefore(out->x), -2L * DAY) !=
	    NULL);
	ck_assert(X509_gmtime_adj(X509_getm_notAfter(out->x), 30L * DAY) !=
	    NULL);
	ck_assert(X509_set_pubkey(out->x, out->k) == 1);
	if (copy != NULL)
		ck_assert(X509_set_subject_name(out->x,
		    X509_get_subject_name(copy)) == 1);
	else {
		subj = X509_NAME_new();
		ck_assert(subj != NULL);
		for (; rdn[0] != NULL; rdn += 2)
			ck_assert(X509_NAME_add_entry_by_txt(subj, rdn[0],
			    MBSTRING_UTF8, (const unsigned char *)rdn[1], -1,
			    -1, 0) == 1);
		ck_assert(X509_set_subject_name(out->x, subj) == 1);
		X509_NAME_free(subj);
	}
	ck_assert(X509_set_issuer_name(out->x, issuer != NULL ?
	    X509_get_subject_name(issuer->x) :
	    X509_get_subject_name(out->x)) == 1);
	if (ca) {
		add_ext(out->x, out->x, NID_basic_constraints,
		    "critical,CA:TRUE");
		add_ext(out->x, out->x, NID_key_usage,
		    "critical,keyCertSign,cRLSign");
		add_ext(out->x, out->x, NID_subject_key_identifier, "hash");
	} else {
		add_ext(out->x, out->x, NID_basic_constraints,
		    "critical,CA:FALSE");
		add_ext(out->x, out->x, NID_key_usage,
		    "critical,digitalSignature");
		add_ext(out->x, out->x, NID_ext_key_usage, "clientAuth");
	}
	if (copy != NULL) {
		int i = X509_get_ext_by_NID(copy, NID_subject_alt_name, -1);

		ck_assert_msg(i >= 0, "no subjectAltName to copy");
		ck_assert(X509_add_ext(out->x, X509_get_ext(copy, i), -1) == 1);
	} else if (san != NULL)
		add_ext(out->x, out->x, NID_subject_alt_name, san);
	ck_assert(X509_sign(out->x, issuer != NULL ? issuer->k : out->k,
	    EVP_sha256()) > 0);

	snprintf(f, sizeof(f), "authn-%s.crt", name);
	snprintf(out->crt, sizeof(out->crt), "%s", h_tmp(f));
	snprintf(f, sizeof(f), "authn-%s.key", name);
	snprintf(out->key, sizeof(out->key), "%s", h_tmp(f));
	fp = fopen(out->crt, "we");
	ck_assert_msg(fp != NULL, "%s: %s", out->crt, strerror(errno));
	ck_assert(PEM_write_X509(fp, out->x) == 1);
	ck_assert(fclose(fp) == 0);
	fp = fopen(out->key, "we");
	ck_assert_msg(fp != NULL, "%s: %s", out->key, strerror(errno));
	ck_assert(PEM_write_PrivateKey(fp, out->k, NULL, NULL, 0, NULL,
	    NULL) == 1);
	ck_assert(fclose(fp) == 0);
}

/* A client of ${ca}: OU ops, CN ${cn}, SAN URI:spiffe://test.example/${cn}. */
static void
issue_client(struct pki_item *out, const char *name, const char *cn,
    const struct pki_item *ca)
{
	const char *rdn[] = { "OU", "ops", "CN", cn, NULL };
	char san[200];

	snprintf(san, sizeof(san), "URI:spiffe://test.example/%s", cn);
	issue(out, name, rdn, NULL, san, ca, false);
}

/* A second CA, unrelated to the PKI's (its own name and key). */
static void
issue_ca2(struct pki_item *out)
{
	const char *rdn[] = { "O", "tls-echod tests", "CN",
	    "tls-echod authn second CA", NULL };

	issue(out, "ca2", rdn, NULL, NULL, NULL, true);
}

/*
 * Write ${path}: a CRL of ${ca} revoking ${revoked} (may be NULL), as of
 * ${last} with nextUpdate ${next} (Unix times).
 */
static void
write_crl_md(const char *path, const struct pki_item *ca, const X509 *revoked,
    time_t last, time_t next, const EVP_MD *md);

static void
write_crl(const char *path, const struct pki_item *ca, const X509 *revoked,
    time_t last, time_t next)
{
	write_crl_md(path, ca, revoked, last, next, EVP_sha256());
}

static void
write_crl_md(const char *path, const struct pki_item *ca, const X509 *revoked,
    time_t last, time_t next, const EVP_MD *md)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_new();
	char tmp[PATH_MAX + 8];
	FILE *fp;

	ck_assert(crl != NULL && t != NULL);
	ck_assert(X509_CRL_set_version(crl, 1) == 1);
	ck_assert(X509_CRL_set_issuer_name(crl,
	    X509_get_subject_name(ca->x)) == 1);
	ck_assert(ASN1_TIME_set(t, last) != NULL);
	ck_assert(X509_CRL_set1_lastUpdate(crl, t) == 1);
	ck_assert(ASN1_TIME_set(t, next) != NULL);
	ck_assert(X509_CRL_set1_nextUpdate(crl, t) == 1);
	if (revoked != NULL) {
		X509_REVOKED *r = X509_REVOKED_new();

		/* Dated yesterday: a revocation of this very second would not
		 * count yet for a verifier running in the same second. */
		ck_assert(r != NULL && ASN1_TIME_set(t, time(NULL) - DAY) !=
		    NULL);
		ck_assert(X509_REVOKED_set_serialNumber(r,
		    (ASN1_INTEGER *)(uintptr_t)X509_get0_serialNumber(
		    revoked)) == 1);
		ck_assert(X509_REVOKED_set_revocationDate(r, t) == 1);
		ck_assert(X509_CRL_add0_revoked(crl, r) == 1);
		ck_assert(X509_CRL_sort(crl) == 1);
	}
	ck_assert(X509_CRL_sign(crl, ca->k, md) > 0);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fp = fopen(tmp, "we");
	ck_assert_msg(fp != NULL, "%s: %s", tmp, strerror(errno));
	ck_assert(PEM_write_X509_CRL(fp, crl) == 1);
	ck_assert(fclose(fp) == 0);
	ck_assert(rename(tmp, path) == 0);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
}

/* ${path}: the PEM certificates ${a} then ${b}, a CA list. */
static void
write_bundle(const char *path, const struct pki_item *a,
    const struct pki_item *b)
{
	FILE *fp = fopen(path, "we");

	ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
	ck_assert(PEM_write_X509(fp, a->x) == 1);
	ck_assert(PEM_write_X509(fp, b->x) == 1);
	ck_assert(fclose(fp) == 0);
}

/* ------------------------------------------------------------------------- */
/* the daemon                                                                */
/* ------------------------------------------------------------------------- */

struct lsn {
	const char *name;  /* NULL: "authn" */
	const char *mode;  /* NULL: "echo" */
	int port;          /* 0: the activated socket's */
	const char *ca;    /* absolute; NULL: PKI ca.crt */
	const char *tls;   /* more settings inside tls = { } */
	const char *extra; /* more listener settings */
};

/*
 * A whole configuration: one worker, ${globals}, listeners ${l}.  Port 0
 * stands for ${port0}, or "@PORT@" (the harness's) when that is 0 too.
 */
static char *
conf_text(const char *globals, const struct lsn *l, size_t n, int port0)
{
	char *text = xasprintf("log = \"stderr\";\nworkers = 1;\n"
	    "shutdown_timeout = 1;\n%s\nlisteners = (\n", globals ? globals :
	    "");
	size_t i;

	for (i = 0; i < n; i++) {
		char port[16], *next;

		if (l[i].port != 0 || port0 != 0)
			snprintf(port, sizeof(port), "%d", l[i].port != 0 ?
			    l[i].port : port0);
		else
			snprintf(port, sizeof(port), "@PORT@");
		next = xasprintf("%s%s  { name = \"%s\"; listen = "
		    "\"127.0.0.1:%s\"; mode = \"%s\";\n    %s\n"
		    "    tls = { cert = \"%s\"; key = \"%s\"; ca = \"%s\";\n"
		    "      %s };\n  }\n", text, i > 0 ? "  ,\n" : "",
		    l[i].name ? l[i].name : "authn", port,
		    l[i].mode ? l[i].mode : "echo", l[i].extra ? l[i].extra : "",
		    h_pki("server.crt"), h_pki("server.key"),
		    l[i].ca ? l[i].ca : h_pki("ca.crt"),
		    l[i].tls ? l[i].tls : "");
		free(text);
		text = next;
	}
	{
		char *next = xasprintf("%s);\n", text);

		free(text);
		text = next;
	}
	return text;
}

/* Start a daemon with configuration ${text}, the activated socket named
 * ${fdname}, behind ${wrap} (may be NULL). */
static void
daemon_start(struct h_daemon *d, const char *label, const char *text,
    const char *fdname, const char *const *wrap)
{
	struct h_daemon_opts o = {
		.label = label,
		.config = text,
		.activation = true,
		.fdname = fdname != NULL ? fdname : "authn",
		.wrap = wrap,
	};

	ck_assert_msg(h_daemon_start(d, &o) == 0, "daemon did not start: %s\n"
	    "configuration:\n%s", d->err, text);
}

/* One listener ${l} (its port the activated one). */
static void
daemon_one(struct h_daemon *d, const char *label, const char *globals,
    const struct lsn *l)
{
	char *text = conf_text(globals, l, 1, 0);

	daemon_start(d, label, text, l->name, NULL);
	free(text);
}

/* Rewrite ${d}'s configuration, SIGHUP, wait until generation ${gen}
 * serves. */
static void
reload(struct h_daemon *d, const char *text, unsigned gen)
{
	char want[64], tail[1500];
	char *t = replace_all(text, "@PKI@", getenv("TEST_PKI"));

	ck_assert_msg(strstr(t, "@PORT@") == NULL, "reload text has @PORT@");
	write_file(d->conf_path, t);
	free(t);
	snprintf(want, sizeof(want), "STATUS=generation %u:", gen);
	ck_assert(h_daemon_signal(d, SIGHUP) == 0);
	ck_assert_msg(h_notify_wait(d, want, 20000) != NULL, "no \"%s\" after "
	    "SIGHUP; log ends:\n%s", want, h_log_tail(d, tail, sizeof(tail)));
}

/* ------------------------------------------------------------------------- */
/* clients                                                                   */
/* ------------------------------------------------------------------------- */

/* Client options: certificate ${crt} with key ${key} (absolute; NULL: no
 * certificate), pinned to ${version}, offering ${session} (may be NULL). */
static struct h_tls_opts
client(const char *crt, const char *key, int version, SSL_SESSION *session)
{
	struct h_tls_opts o;

	memset(&o, 0, sizeof(o));
	o.cert = crt;
	o.key = key;
	o.min_version = o.max_version = version;
	o.session = session;
	return o;
}

/* PKI client ${name} (NULL: no certificate). */
static struct h_tls_opts
pki_client(const char *name, int version, SSL_SESSION *session)
{
	struct h_tls_opts o = h_client_opts(name, version);

	o.session = session;
	return o;
}

/* i2d then d2i: the session as a file would bring it back (OpenSSL's
 * "not resumable" mark after an alert does not survive).  Frees ${s}. */
static SSL_SESSION *
launder(SSL_SESSION *s)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	SSL_SESSION *out = NULL;
	int n;

	if (s == NULL)
		return NULL;
	n = i2d_SSL_SESSION(s, &der);
	if (n > 0) {
		p = der;
		out = d2i_SSL_SESSION(NULL, &p, n);
	}
	OPENSSL_free(der);
	SSL_SESSION_free(s);
	return out;
}

/* What one connection got. */
struct try {
	bool handshake;  /* the client finished its handshake */
	bool reused;     /* ... by resuming the offered session */
	bool admitted;   /* the echo came back (after the whoami line) */
	char json[2048]; /* the whoami line, "" if none came */
	char tag[48];    /* "PEER_ADDR=127.0.0.1:N " */
	char line[4096]; /* the daemon's (one) log line for it */
	char err[H_ERR_MAX];
	SSL_SESSION *session; /* laundered, if asked for; may be NULL */
};

/* Read one line (the whoami JSON) into ${buf}: 0, or -1 if none came. */
static int
read_line(struct h_tls *c, char *buf, size_t len)
{
	int64_t deadline = h_now_ms() + IO_MS;
	size_t n = 0;

	buf[0] = '\0';
	while (n + 1 < len) {
		int left = (int)(deadline - h_now_ms());

		if (left <= 0 || h_tls_read_exact(c, buf + n, 1, left) != 0)
			return -1;
		buf[++n] = '\0';
		if (buf[n - 1] == '\n')
			return 0;
	}
	return -1;
}

/*
 * Connect to ${port} with ${o}; on a whoami listener read the JSON line;
 * then one round-trip: admitted, or refused (alert, EOF).  Waits for the
 * daemon's log line for this client.  With ${want_session} the session the
 * client ended up with is kept, laundered.
 */
static void
try_connect(struct try *t, const struct h_daemon *d, int port,
    const struct h_tls_opts *o, bool whoami, bool want_session)
{
	struct h_tls c;
	char tail[1500];

	memset(t, 0, sizeof(*t));
	if (h_tls_connect(&c, port, o) == 0) {
		int r = 0;

		t->handshake = true;
		t->reused = h_tls_reused(&c);
		if (whoami && read_line(&c, t->json, sizeof(t->json)) != 0)
			r = 1;
		if (r == 0) {
			r = h_tls_refused(&c, IO_MS);
			ck_assert_msg(r >= 0, "neither echo nor refusal: %s",
			    c.err);
		}
		t->admitted = r == 0;
	}
	snprintf(t->err, sizeof(t->err), "%s", c.err);
	snprintf(t->tag, sizeof(t->tag), "%s", c.peer_tag);
	if (want_session && c.ssl != NULL)
		t->session = launder(SSL_get1_session(c.ssl));
	h_tls_close(&c);
	ck_assert_msg(t->tag[0] != '\0', "no TCP connection: %s", t->err);
	ck_assert_msg(h_log_wait(d, LOG_MS, t->line, sizeof(t->line), t->tag,
	    NULL) == 0, "no log line for %s; log ends:\n%s", t->tag,
	    h_log_tail(d, tail, sizeof(tail)));
}

/* A full handshake with ${o} that must be admitted; its session
 * (resumable: the server issued a ticket). */
static SSL_SESSION *
good_session(const struct h_daemon *d, int port, const struct h_tls_opts *o,
    bool whoami, const char *what)
{
	struct try t;

	try_connect(&t, d, port, o, whoami, true);
	ck_assert_msg(t.admitted, "%s: not admitted (%s): %s", what, t.err,
	    t.line);
	ck_assert_msg(!t.reused, "%s: a first connection cannot resume",
	    what);
	ck_assert_msg(t.session != NULL &&
	    SSL_SESSION_is_resumable(t.session) == 1, "%s: the server issued "
	    "no ticket", what);
	return t.session;
}

/* True if log line ${line} holds the whole field ${kv} ("KEY=value"). */
static bool
has(const char *line, const char *kv)
{
	size_t n = strlen(kv);
	const char *p;

	for (p = line; (p = strstr(p, kv)) != NULL; p += n)
		if ((p == line || p[-1] == ' ') && (p[n] == ' ' ||
		    p[n] == '\0' || p[n] == '\n'))
			return true;
	return false;
}

/* One-line summary of ${t} for failure messages. */
static const char *
said(const struct try *t)
{
	static char buf[8192];

	snprintf(buf, sizeof(buf), "handshake %s%s, %s; whoami: %s; log: %s",
	    t->handshake ? "done" : "failed", t->reused ? " (RESUMED)" : "",
	    t->admitted ? "ADMITTED" : "refused", t->json[0] ? t->json :
	    "(none)\n", t->line);
	return buf;
}

/* ------------------------------------------------------------------------- */
/* forged sessions (DER of OpenSSL's SSL_SESSION_ASN1, ssl/ssl_asn1.c)       */
/* ------------------------------------------------------------------------- */

struct der {
	unsigned char b[8192];
	size_t n;
};

static void
der_put(struct der *d, const void *p, size_t n)
{
	ck_assert(d->n + n <= sizeof(d->b));
	memcpy(d->b + d->n, p, n);
	d->n += n;
}

/* Tag, length, ${n} bytes of content. */
static void
der_tlv(struct der *d, unsigned char tag, const void *p, size_t n)
{
	unsigned char h[4] = { tag };

	if (n < 0x80) {
		h[1] = (unsigned char)n;
		der_put(d, h, 2);
	} else if (n < 0x100) {
		h[1] = 0x81;
		h[2] = (unsigned char)n;
		der_put(d, h, 3);
	} else {
		ck_assert(n < 0x10000);
		h[1] = 0x82;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		der_put(d, h, 4);
	}
	der_put(d, p, n);
}

/* INTEGER ${v} (non-negative), bare or inside EXPLICIT [${ctx}]. */
static void
der_uint(struct der *d, int ctx, uint64_t v)
{
	unsigned char c[9];
	size_t n = 0;
	int i;

	for (i = 7; i >= 0; i--) {
		unsigned char b = (unsigned char)(v >> (8 * i));

		if (n == 0 && b == 0 && i > 0)
			continue;
		if (n == 0 && (b & 0x80))
			c[n++] = 0;
		c[n++] = b;
	}
	if (ctx < 0) {
		der_tlv(d, 0x02, c, n);
	} else {
		struct der in = { .n = 0 };

		der_tlv(&in, 0x02, c, n);
		der_tlv(d, (unsigned char)(0xa0 | ctx), in.b, in.n);
	}
}

/* OCTET STRING, bare or inside EXPLICIT [${ctx}]. */
static void
der_octets(struct der *d, int ctx, const void *p, size_t n)
{
	if (ctx < 0) {
		der_tlv(d, 0x04, p, n);
	} else {
		struct der *in = calloc(1, sizeof(*in));

		ck_assert(in != NULL);
		der_tlv(in, 0x04, p, n);
		der_tlv(d, (unsigned char)(0xa0 | ctx), in->b, in->n);
		free(in);
	}
}

/*
 * A client session nobody issued: protocol ${version}, cipher ${cipher}
 * (IANA number), ${keylen} zero bytes of master key (or resumption
 * secret), now, holding ${ticket}; the extended master secret flag with
 * TLS 1.2.  What an attacker holding only ticket bytes writes.
 */
static SSL_SESSION *
forge_session(int version, unsigned cipher, size_t keylen,
    const unsigned char *ticket, size_t ticklen)
{
	static const unsigned char zero[48];
	struct der *body = calloc(1, sizeof(*body));
	struct der *all = calloc(1, sizeof(*all));
	unsigned char cs[2] = { (unsigned char)(cipher >> 8),
	    (unsigned char)cipher }, id[32];
	const unsigned char *p;
	SSL_SESSION *s;

	ck_assert(body != NULL && all != NULL && keylen <= sizeof(zero));
	ck_assert(RAND_bytes(id, sizeof(id)) == 1);
	der_uint(body, -1, 1);                   /* SSL_SESSION_ASN1_VERSION */
	der_uint(body, -1, (uint64_t)version);   /* ssl_version */
	der_octets(body, -1, cs, sizeof(cs));    /* cipher */
	der_octets(body, -1, id, sizeof(id));    /* session_id */
	der_octets(body, -1, zero, keylen);      /* master_key */
	der_uint(body, 1, (uint64_t)time(NULL)); /* [1] time */
	der_uint(body, 2, 3600);                 /* [2] timeout */
	der_uint(body, 9, 3600);                 /* [9] ticket lifetime hint */
	der_octets(body, 10, ticket, ticklen);   /* [10] ticket */
	if (version == TLS1_2_VERSION)           /* [13] flags */
		der_uint(body, 13, OSSL_SESS_FLAG_EXTMS);
	der_tlv(all, 0x30, body->b, body->n);
	p = all->b;
	s = d2i_SSL_SESSION(NULL, &p, (long)all->n);
	ck_assert_msg(s != NULL, "d2i_SSL_SESSION refused the forged session: "
	    "%s", ERR_error_string(ERR_get_error(), NULL));
	free(body);
	free(all);
	return s;
}

/* ------------------------------------------------------------------------- */
/* 1. a TLS 1.3 ticket in a forged TLS 1.2 session, without any key          */
/* ------------------------------------------------------------------------- */

START_TEST(test_forged_tls12_session_around_tls13_ticket_without_key_is_refused)
{
	struct lsn l = { .mode = "whoami" };
	struct h_tls_opts victim = pki_client("client", TLS1_3_VERSION, NULL);
	struct h_tls_opts o;
	struct h_daemon d;
	SSL_SESSION *s, *forged;
	const unsigned char *tick;
	size_t ticklen;
	struct try t;

	daemon_one(&d, "forged", NULL, &l);
	s = good_session(&d, d.port, &victim, true, "TLS 1.3 victim");
	SSL_SESSION_get0_ticket(s, &tick, &ticklen);
	ck_assert_msg(ticklen > 0, "the TLS 1.3 session holds no ticket");
	/* ECDHE-ECDSA-CHACHA20-POLY1305, the daemon's first TLS 1.2 choice. */
	forged = forge_session(TLS1_2_VERSION, 0xcca9, 48, tick, ticklen);
	SSL_SESSION_free(s);

	o = client(NULL, NULL, TLS1_2_VERSION, forged);
	o.cipher_list = "ECDHE-ECDSA-CHACHA20-POLY1305";
	try_connect(&t, &d, d.port, &o, true, false);
	SSL_SESSION_free(forged);
	ck_assert_msg(strstr(t.json, "\"verified\":true") == NULL, "a client "
	    "with NO certificate and no key, offering a victim's TLS 1.3 "
	    "ticket in a forged TLS 1.2 session (master key all zero), got "
	    "in as the victim: %s", said(&t));
	ck_assert_msg(!t.reused, "the forged TLS 1.2 session (zero master "
	    "key) RESUMED: %s", said(&t));
	ck_assert_msg(!t.admitted, "a client without a certificate was "
	    "admitted where one is required: %s", said(&t));
	ck_assert_msg(!has(t.line, "TLS_RESUMED=yes"), "logged as resumed: "
	    "%s", said(&t));
	ck_assert_msg(has(t.line, "CLOSE_REASON=no-client-cert"),
	    "refused, but not for the missing certificate: %s", t.line);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 2. verify_client = "optional": an impostor refused, then resumed          */
/* ------------------------------------------------------------------------- */

START_TEST(test_optional_refused_impostor_gets_no_session_that_admits_it)
{
	int v = versions[_i];
	struct lsn l = { .mode = "whoami", .tls = "verify_client = "
	    "\"optional\";" };
	struct pki_item real, fake;
	struct h_tls_opts o;
	struct h_daemon d;
	struct try t, again, with_cert;
	SSL_SESSION *s;

	item_load(&real, "client");
	/* client.crt's subject and names (spiffe://test.example/client),
	 * self-signed with a key of the impostor's own. */
	issue(&fake, "impostor", NULL, real.x, NULL, NULL, false);
	daemon_one(&d, "impostor", NULL, &l);

	o = client(fake.crt, fake.key, v, NULL);
	try_connect(&t, &d, d.port, &o, true, true);
	ck_assert_msg(!t.admitted && strstr(t.json, "\"verified\":true") ==
	    NULL, "%s: the self-signed impostor was admitted by a full "
	    "handshake: %s", version_names[_i], said(&t));
	ck_assert_msg(has(t.line, "CLOSE_REASON=unknown-ca"), "%s: the "
	    "impostor was not refused as unknown-ca: %s", version_names[_i],
	    said(&t));
	s = t.session;

	/* The session it got, without any certificate now. */
	o = client(NULL, NULL, v, s);
	try_connect(&again, &d, d.port, &o, true, false);
	ck_assert_msg(strstr(again.json, "\"verified\":true") == NULL &&
	    !has(again.line, "CLIENT_AUTH=certificate"), "%s: the "
	    "refused impostor's session, offered without a certificate, got "
	    "in AS \"OU=ops, CN=test-client\": %s", version_names[_i],
	    said(&again));
	ck_assert_msg(!again.reused, "%s: the refused impostor's session "
	    "RESUMED: %s", version_names[_i], said(&again));
	ck_assert_msg(again.admitted && strstr(again.json,
	    "\"verified\":false") != NULL, "%s: without a certificate it is "
	    "not admitted as unauthenticated (verify_client = \"optional\"): "
	    "%s", version_names[_i], said(&again));

	/* ... and with the impostor's certificate. */
	o = client(fake.crt, fake.key, v, s);
	try_connect(&with_cert, &d, d.port, &o, true, false);
	ck_assert_msg(strstr(with_cert.json, "\"verified\":true") == NULL &&
	    !with_cert.admitted, "%s: the impostor, offering its session "
	    "again, got in: %s", version_names[_i], said(&with_cert));
	ck_assert_msg(!with_cert.reused, "%s: %s", version_names[_i],
	    said(&with_cert));
	SSL_SESSION_free(s);
	item_free(&real);
	item_free(&fake);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 3. revocation (and a stale CRL) reach resumption, with several CRL files  */
/* ------------------------------------------------------------------------- */

/* Loop: 0, 1 revoked (TLS 1.3, 1.2); 2, 3 stale CRL under "refuse". */
START_TEST(test_client_revoked_or_crl_stale_after_reload_does_not_resume)
{
	int v = versions[_i % 2];
	bool stale = _i >= 2;
	const char *crl2 = h_tmp("authn-ca-now.crl");
	char g[512], tls[1024];
	struct pki_item ca, x;
	struct lsn l = { .tls = tls };
	struct h_tls_opts o;
	struct h_daemon d;
	SSL_SESSION *s;
	struct try t;
	char *text;
	time_t now = time(NULL);

	item_load(&ca, "ca");
	issue_client(&x, "revokee", "authn-revokee", &ca);
	write_crl(crl2, &ca, NULL, now - 3600, now + 30L * DAY);
	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	/* The first CRL is another CA's: only the second can revoke x. */
	snprintf(tls, sizeof(tls), "crl = [\"%s\", \"%s\"];%s",
	    h_pki("int-ca.crl"), crl2, stale ? " crl_stale = \"refuse\";" :
	    "");
	daemon_one(&d, stale ? "crl-stale" : "crl-revoked", g, &l);
	o = client(x.crt, x.key, v, NULL);
	s = good_session(&d, d.port, &o, false, "client before revocation");

	if (stale)
		write_crl(crl2, &ca, NULL, now - 20L * DAY, now - 10L * DAY);
	else
		write_crl(crl2, &ca, x.x, now - 60, now + 30L * DAY);
	text = conf_text(g, &l, 1, d.port);
	reload(&d, text, 2);
	free(text);

	o = client(x.crt, x.key, v, s);
	try_connect(&t, &d, d.port, &o, false, false);
	ck_assert_msg(!t.admitted, "%s: a client %s got in by resuming its "
	    "session: %s", version_names[_i % 2], stale ? "whose CA's CRL is "
	    "stale (crl_stale = \"refuse\")" : "revoked in the SECOND CRL "
	    "file", said(&t));
	ck_assert_msg(has(t.line, stale ? "CLOSE_REASON=crl-stale" :
	    "CLOSE_REASON=cert-revoked"), "%s: refused for another "
	    "reason: %s", version_names[_i % 2], t.line);
	SSL_SESSION_free(s);
	item_free(&x);
	item_free(&ca);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 4. a CA removed from tls.ca                                               */
/* ------------------------------------------------------------------------- */

START_TEST(test_client_of_removed_ca_does_not_resume)
{
	int v = versions[_i];
	const char *bundle = h_tmp("authn-ca-bundle.crt");
	struct pki_item ca, ca2, y;
	struct lsn l = { .ca = bundle };
	struct h_tls_opts o;
	struct h_daemon d;
	SSL_SESSION *s;
	struct try t;
	char g[512], *text;

	item_load(&ca, "ca");
	issue_ca2(&ca2);
	issue_client(&y, "ca2-client", "authn-ca2-client", &ca2);
	write_bundle(bundle, &ca, &ca2);
	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	daemon_one(&d, "ca-removed", g, &l);
	o = client(y.crt, y.key, v, NULL);
	s = good_session(&d, d.port, &o, false, "client of the second CA");

	l.ca = h_pki("ca.crt");
	text = conf_text(g, &l, 1, d.port);
	reload(&d, text, 2);
	free(text);
	o = client(y.crt, y.key, v, s);
	try_connect(&t, &d, d.port, &o, false, false);
	ck_assert_msg(!t.admitted, "%s: a client of a CA no longer in tls.ca "
	    "got in by resuming: %s", version_names[_i], said(&t));
	ck_assert_msg(!t.reused, "%s: %s", version_names[_i], said(&t));
	SSL_SESSION_free(s);
	item_free(&y);
	item_free(&ca2);
	item_free(&ca);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 5. "resumed" decided before mbedTLS decided                               */
/* ------------------------------------------------------------------------- */

/*
 * verify_client = "optional".  A victim's ticket, offered WITHOUT a
 * certificate in a way our ticket callback accepts and mbedTLS then turns
 * down, so the handshake goes on as a full one: loop 0, a TLS 1.3 ticket
 * claiming to be 60 s older than it is (outside the age tolerance); loop 1,
 * a TLS 1.2 ticket in a forged TLS 1.3 session ("not a TLS 1.3 ticket").
 * Neither needs a secret: the resumption key is all zero.  The client must
 * be what the full handshake makes it: unauthenticated.
 */
START_TEST(test_ticket_turned_down_by_mbedtls_lends_no_identity)
{
	struct lsn l = { .mode = "whoami", .tls = "verify_client = "
	    "\"optional\";" };
	struct h_tls_opts o;
	struct h_daemon d;
	SSL_SESSION *s, *a;
	struct try t;

	daemon_one(&d, "too-early", NULL, &l);
	if (_i == 0) {
		unsigned char key[SSL_MAX_MASTER_KEY_LENGTH];
		size_t n;

		o = pki_client("client", TLS1_3_VERSION, NULL);
		s = good_session(&d, d.port, &o, true, "TLS 1.3 victim");
		a = launder(SSL_SESSION_dup(s));
		ck_assert(a != NULL);
		ck_assert(SSL_SESSION_set_time(a, (long)time(NULL) - 60) != 0);
		n = SSL_SESSION_get_master_key(a, key, sizeof(key));
		memset(key, 0, sizeof(key));
		ck_assert(n > 0 && SSL_SESSION_set1_master_key(a, key, n) == 1);
	} else {
		const unsigned char *tick;
		size_t ticklen;

		o = pki_client("client", TLS1_2_VERSION, NULL);
		s = good_session(&d, d.port, &o, true, "TLS 1.2 victim");
		SSL_SESSION_get0_ticket(s, &tick, &ticklen);
		ck_assert_msg(ticklen > 0, "the TLS 1.2 session has no ticket");
		/* TLS_AES_128_GCM_SHA256 */
		a = forge_session(TLS1_3_VERSION, 0x1301, 32, tick, ticklen);
		o.ciphersuites = "TLS_AES_128_GCM_SHA256";
	}
	SSL_SESSION_free(s);

	o.cert = o.key = NULL;
	o.min_version = o.max_version = TLS1_3_VERSION;
	o.session = a;
	try_connect(&t, &d, d.port, &o, true, false);
	SSL_SESSION_free(a);
	ck_assert_msg(t.admitted, "the anonymous client was not admitted "
	    "(verify_client = \"optional\"): %s", said(&t));
	ck_assert_msg(strstr(t.json, "\"verified\":true") == NULL &&
	    !has(t.line, "CLIENT_AUTH=certificate"), "a client "
	    "WITHOUT a certificate or key, offering a victim's %s, was "
	    "admitted AS THE VICTIM by a full handshake: %s", _i == 0 ?
	    "TLS 1.3 ticket with a wrong age" : "TLS 1.2 ticket in a TLS 1.3 "
	    "session", said(&t));
	ck_assert_msg(strstr(t.json, "\"verified\":false") != NULL &&
	    has(t.line, "CLIENT_AUTH=none") &&
	    has(t.line, "TLS_RESUMED=no"), "not logged as an "
	    "unauthenticated full handshake: %s", said(&t));
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * The same flaw, worse: the attacker's OWN ticket, turned down by mbedTLS
 * for its age, and on the full handshake that follows a self-signed
 * certificate copying client.crt's names.  Optional verification marks
 * that certificate bad; it must be refused as unknown-ca, not admitted as
 * test-client.  Loop 0: the ticket of a low-privilege client of the CA
 * (CN dns-a); loop 1: of an anonymous session (no credentials at all).
 */
START_TEST(test_own_turned_down_ticket_does_not_vouch_for_impostor_certificate)
{
	struct lsn l = { .mode = "whoami", .tls = "verify_client = "
	    "\"optional\";" };
	struct h_tls_opts o = pki_client(_i == 0 ? "client-dns-a" : NULL,
	    TLS1_3_VERSION, NULL);
	struct pki_item real, fake;
	struct h_daemon d;
	SSL_SESSION *s;
	struct try t;

	item_load(&real, "client");
	issue(&fake, "impostor13", NULL, real.x, NULL, NULL, false);
	daemon_one(&d, "vouch", NULL, &l);
	s = good_session(&d, d.port, &o, true, "the attacker's own client");
	ck_assert(SSL_SESSION_set_time(s, (long)time(NULL) - 60) != 0);
	o = client(fake.crt, fake.key, TLS1_3_VERSION, s);
	try_connect(&t, &d, d.port, &o, true, false);
	ck_assert_msg(!t.admitted && strstr(t.json, "\"verified\":true") ==
	    NULL, "a SELF-SIGNED certificate copying client.crt's names, "
	    "sent after the sender's own %s ticket was turned down, was "
	    "admitted: %s", _i == 0 ? "(CN dns-a)" : "anonymous", said(&t));
	ck_assert_msg(has(t.line, "CLOSE_REASON=unknown-ca"), "refused for "
	    "another reason: %s", t.line);
	SSL_SESSION_free(s);
	item_free(&fake);
	item_free(&real);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 6. a ticket of another listener                                           */
/* ------------------------------------------------------------------------- */

/* Two listeners of one daemon, the same CA and key file; ${a} then ${b}.
 * Returns B's port. */
static int
two_listeners(struct h_daemon *d, const char *label, const char *a,
    const char *b)
{
	struct lsn l[2] = { { .name = a }, { .name = b } };
	char g[512], *text;

	l[1].port = h_free_port();
	ck_assert(l[1].port > 0);
	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	text = conf_text(g, l, 2, 0);
	daemon_start(d, label, text, a, NULL);
	free(text);
	return l[1].port;
}

/* A's ticket offered on B: a full handshake, admitted (client.crt). */
static void
expect_no_crossing(const struct h_daemon *d, int port_b, int vi,
    const char *what)
{
	struct h_tls_opts o = pki_client("client", versions[vi], NULL);
	SSL_SESSION *s = good_session(d, d->port, &o, false, "listener A");
	struct try t;

	o.session = s;
	try_connect(&t, d, port_b, &o, false, false);
	ck_assert_msg(!t.reused && !has(t.line, "TLS_RESUMED=yes"),
	    "%s: a ticket of one listener RESUMED on %s: %s", version_names[vi],
	    what, said(&t));
	ck_assert_msg(t.admitted && has(t.line, "TLS_RESUMED=no"),
	    "%s: the full handshake on the other listener failed: %s",
	    version_names[vi], said(&t));
	SSL_SESSION_free(s);
}

START_TEST(test_ticket_of_one_listener_does_not_resume_on_another)
{
	struct h_daemon d;
	int port_b = two_listeners(&d, "two-listeners", "alpha", "beta");

	expect_no_crossing(&d, port_b, _i, "listener \"beta\"");
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 7. the trust policy changed on reload                                     */
/* ------------------------------------------------------------------------- */

enum change { CH_DEPTH, CH_MIN_VERSION, CH_OPTIONAL, CH_CA_ORDER, CH_CA_ADD };

static const struct {
	enum change ch;
	int vi;
	const char *what;
} changes[] = {
	{ CH_DEPTH, 0, "verify_depth 2 -> 1" },
	{ CH_DEPTH, 1, "verify_depth 2 -> 1" },
	{ CH_MIN_VERSION, 0, "min_version 1.2 -> 1.3" },
	{ CH_OPTIONAL, 0, "verify_client required -> optional" },
	{ CH_OPTIONAL, 1, "verify_client required -> optional" },
	{ CH_CA_ORDER, 0, "tls.ca [ca, ca2] -> [ca2, ca]" },
	{ CH_CA_ORDER, 1, "tls.ca [ca, ca2] -> [ca2, ca]" },
	{ CH_CA_ADD, 0, "tls.ca [ca] -> [ca, ca2]" },
	{ CH_CA_ADD, 1, "tls.ca [ca] -> [ca, ca2]" },
};

START_TEST(test_session_does_not_resume_after_trust_policy_changed)
{
	enum change ch = changes[_i].ch;
	int vi = changes[_i].vi;
	const char *ab = h_tmp("authn-ca-ca2.crt");
	const char *ba = h_tmp("authn-ca2-ca.crt");
	struct pki_item ca, ca2;
	struct lsn l = { 0 };
	struct h_tls_opts o = pki_client("client", versions[vi], NULL);
	struct h_daemon d;
	SSL_SESSION *s;
	struct try t;
	char g[512], *text;

	item_load(&ca, "ca");
	issue_ca2(&ca2);
	write_bundle(ab, &ca, &ca2);
	write_bundle(ba, &ca2, &ca);
	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	l.tls = ch == CH_DEPTH ? "verify_depth = 2;" : ch == CH_MIN_VERSION ?
	    "min_version = \"1.2\";" : ch == CH_OPTIONAL ?
	    "verify_client = \"required\";" : "";
	l.ca = ch == CH_CA_ORDER ? ab : NULL;
	daemon_one(&d, "policy", g, &l);
	s = good_session(&d, d.port, &o, false, "before the change");

	l.tls = ch == CH_DEPTH ? "verify_depth = 1;" : ch == CH_MIN_VERSION ?
	    "min_version = \"1.3\";" : ch == CH_OPTIONAL ?
	    "verify_client = \"optional\";" : "";
	l.ca = ch == CH_CA_ORDER ? ba : ch == CH_CA_ADD ? ab : NULL;
	text = conf_text(g, &l, 1, d.port);
	reload(&d, text, 2);
	free(text);
	o.session = s;
	try_connect(&t, &d, d.port, &o, false, false);
	ck_assert_msg(!t.reused && !has(t.line, "TLS_RESUMED=yes"),
	    "%s: a session from before \"%s\" RESUMED after it: %s",
	    version_names[vi], changes[_i].what, said(&t));
	ck_assert_msg(t.admitted, "%s: the full handshake after \"%s\" "
	    "failed: %s", version_names[vi], changes[_i].what, said(&t));
	SSL_SESSION_free(s);
	item_free(&ca2);
	item_free(&ca);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 8. a client refused after the handshake keeps no ticket                   */
/* ------------------------------------------------------------------------- */

/* Loop: 0, 1 allow-list (TLS 1.3, 1.2); 2, 3 identity limit. */
START_TEST(test_client_refused_after_handshake_gets_no_resumable_ticket)
{
	int vi = _i % 2;
	bool limit = _i >= 2;
	struct lsn l = { .extra = limit ? "max_connections_per_identity = 1;" :
	    "allow = { uri = [\"spiffe://test.example/someone-else\"]; };" };
	struct h_tls_opts o = pki_client("client", versions[vi], NULL);
	struct h_daemon d;
	struct h_tls held;
	struct try t, again;
	char line[4096];

	daemon_one(&d, limit ? "refused-limit" : "refused-allow", NULL, &l);
	if (limit) {
		ck_assert_msg(h_tls_connect(&held, d.port, &o) == 0, "%s",
		    held.err);
		ck_assert_msg(h_tls_roundtrip(&held, "held\n", 5, IO_MS) == 0,
		    "%s", held.err);
	}
	try_connect(&t, &d, d.port, &o, false, true);
	ck_assert_msg(!t.admitted && has(t.line, limit ?
	    "CLOSE_REASON=identity-limit" :
	    "CLOSE_REASON=identity-not-allowed"), "%s: not refused "
	    "as expected: %s", version_names[vi], said(&t));
	if (limit) {
		h_tls_close(&held);
		H_LOG_EXPECT(&d, line, held.peer_tag, "connection closed:");
	}
	o.session = t.session;
	try_connect(&again, &d, d.port, &o, false, false);
	ck_assert_msg(!again.reused, "%s: the session of a client REFUSED "
	    "(%s) resumed%s: %s", version_names[vi], limit ? "identity-limit" :
	    "identity-not-allowed", again.admitted ? " and got in" : "",
	    said(&again));
	SSL_SESSION_free(t.session);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 9. TLS 1.3 resumption across hosts sharing ticket_key_file                */
/* ------------------------------------------------------------------------- */

/*
 * ticket_clock_is_boot_time():
 * True if `$TLS_ECHOD_BIN -V` says its mbedTLS ages TLS 1.3 tickets on the
 * boot-time clock (a system mbedTLS, without our MBEDTLS_PLATFORM_MS_TIME_ALT):
 * such tickets resume only on the host that issued them, as documented.
 */
static bool
ticket_clock_is_boot_time(void)
{
	const char *argv[] = { getenv("TLS_ECHOD_BIN"), "-V", NULL };
	const char *log = h_tmp("authn-version.log");
	char err[256], line[512];
	bool boot = false, said = false;
	FILE *fp;
	int st;

	(void)unlink(log);
	st = h_run(argv, log, IO_MS, err, sizeof(err));
	ck_assert_msg(st == 0, "tls-echod -V failed (exit %d, %s); see %s", st,
	    err, log);
	fp = fopen(log, "re");
	ck_assert_msg(fp != NULL, "%s: %s", log, strerror(errno));
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, "TLS 1.3 ticket clock: ", 22) != 0)
			continue;
		said = true;
		boot = strncmp(line + 22, "boot time", 9) == 0;
	}
	fclose(fp);
	ck_assert_msg(said, "tls-echod -V names no TLS 1.3 ticket clock; "
	    "see %s", log);
	return boot;
}

/*
 * Host B runs in a time namespace whose boot clock is a day ahead: another
 * machine, the same wall clock.  A ticket of host A resumes on B in both
 * versions (the man page promises it) when tickets age on the wall clock;
 * on the boot-time clock of a system mbedTLS only TLS 1.2's do.
 */
START_TEST(test_ticket_resumes_on_another_host_with_the_same_key_file)
{
	static const char *const other_boot[] = { "unshare", "--time",
	    "--boottime", "86400", NULL };
	const char *probe[] = { "unshare", "--time", "--boottime", "86400",
	    "true", NULL };
	int vi = _i;
	struct lsn l = { 0 };
	struct h_tls_opts o = pki_client("client", versions[vi], NULL);
	struct h_daemon a, b;
	SSL_SESSION *s;
	struct try t;
	char g[512], err[256], *text;
	int st;

	if (access("/proc/self/ns/time", F_OK) != 0) {
		printf("check_authn: %s skipped: no time namespaces in this "
		    "kernel (/proc/self/ns/time)\n", __func__);
		return;
	}
	if (versions[vi] == TLS1_3_VERSION && ticket_clock_is_boot_time()) {
		printf("check_authn: %s (%s) skipped: this tls-echod's mbedTLS "
		    "ages TLS 1.3 tickets on the boot-time clock (tls-echod -V), "
		    "so they resume only on the host that issued them\n",
		    __func__, version_names[vi]);
		return;
	}
	st = h_run(probe, h_tmp("authn-unshare.log"), IO_MS, err, sizeof(err));
	ck_assert_msg(st == 0, "unshare --time failed (exit %d, %s); see %s",
	    st, err, h_tmp("authn-unshare.log"));

	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	text = conf_text(g, &l, 1, 0);
	daemon_start(&a, "host-a", text, NULL, NULL);
	daemon_start(&b, "host-b", text, NULL, other_boot);
	free(text);
	s = good_session(&a, a.port, &o, false, "host A");
	o.session = s;
	try_connect(&t, &b, b.port, &o, false, false);
	ck_assert_msg(t.reused && t.admitted &&
	    has(t.line, "TLS_RESUMED=yes"), "%s: host A's ticket "
	    "did not resume on host B (same ticket_key_file and listener, "
	    "another boot clock): %s", version_names[vi], said(&t));
	SSL_SESSION_free(s);
	H_DAEMON_DOWN(&b);
	H_DAEMON_DOWN(&a);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 10. TLS 1.2 session IDs                                                   */
/* ------------------------------------------------------------------------- */

START_TEST(test_tls12_session_id_without_ticket_never_resumes)
{
	struct lsn l = { 0 };
	struct h_tls_opts o = pki_client("client", TLS1_2_VERSION, NULL);
	struct h_daemon d;
	struct try t, again;
	unsigned len = 0;

	o.ssl_options = SSL_OP_NO_TICKET;
	daemon_one(&d, "session-id", NULL, &l);
	try_connect(&t, &d, d.port, &o, false, true);
	ck_assert_msg(t.admitted && t.session != NULL, "%s", said(&t));
	(void)SSL_SESSION_get_id(t.session, &len);
	o.session = t.session;
	try_connect(&again, &d, d.port, &o, false, false);
	ck_assert_msg(!again.reused && !has(again.line, "TLS_RESUMED=yes"),
	    "a TLS 1.2 session ID (%u bytes, no ticket) RESUMED: there "
	    "is no server session cache to check it against: %s", len,
	    said(&again));
	SSL_SESSION_free(t.session);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 11. listener names that agree in their first 62 characters                */
/* ------------------------------------------------------------------------- */

START_TEST(test_ticket_does_not_resume_on_listener_with_same_name_prefix)
{
	/* 62 characters, then "a" (63) or "bb" (64): the longest names. */
	char prefix[63], a[70], b[70];
	struct h_daemon d;
	int port_b;

	memset(prefix, 'n', 62);
	memcpy(prefix, "authn-", 6);
	prefix[62] = '\0';
	snprintf(a, sizeof(a), "%sa", prefix);
	snprintf(b, sizeof(b), "%sbb", prefix);
	ck_assert_uint_eq(strlen(a), 63);
	ck_assert_uint_eq(strlen(b), 64);
	port_b = two_listeners(&d, "long-names", a, b);
	expect_no_crossing(&d, port_b, _i, "a listener whose name shares "
	    "the first 62 characters");
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* 12. PROXY v2 tells the backend what a resumed connection proved           */
/* ------------------------------------------------------------------------- */

#define PP2_CLIENT_SSL 0x01
#define PP2_CLIENT_CERT_CONN 0x02
#define PP2_CLIENT_CERT_SESS 0x04

/* A backend that reads one PROXY v2 header, then echoes until EOF. */
struct pp_be {
	int lfd, port;
	pthread_t thread;
	int client;       /* PP2_TYPE_SSL's client byte, -1 if none */
	uint32_t verify;
	char cn[256];
	char err[256];
};

static int
fd_wait(int fd, short ev, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int64_t left = deadline - h_now_ms();

	if (left <= 0)
		return -1;
	return poll(&p, 1, (int)left) > 0 ? 0 : -1;
}

static int
fd_read_full(int fd, unsigned char *buf, size_t len, int64_t deadline)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, buf + off, len - off);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return -1;
		if (fd_wait(fd, POLLIN, deadline) != 0)
			return -1;
	}
	return 0;
}

/* PP2_TYPE_SSL (0x20) of the v2 header ${h} (${n} bytes) into ${b}. */
static void
pp_parse(struct pp_be *b, const unsigned char *h, size_t n)
{
	size_t i = 16 + (h[13] == 0x11 ? 12 : h[13] == 0x21 ? 36 : n);

	while (i + 3 <= n) {
		size_t len = (size_t)h[i + 1] << 8 | h[i + 2];
		const unsigned char *v = h + i + 3;

		if (i + 3 + len > n)
			break;
		if (h[i] == 0x20 && len >= 5) {
			size_t k = 5;

			b->client = v[0];
			b->verify = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 |
			    (uint32_t)v[3] << 8 | v[4];
			while (k + 3 <= len) {
				size_t sl = (size_t)v[k + 1] << 8 | v[k + 2];

				if (k + 3 + sl > len)
					break;
				if (v[k] == 0x22 && sl < sizeof(b->cn)) {
					memcpy(b->cn, v + k + 3, sl);
					b->cn[sl] = '\0';
				}
				k += 3 + sl;
			}
		}
		i += 3 + len;
	}
}

static void *
pp_be_main(void *arg)
{
	struct pp_be *b = arg;
	int64_t deadline = h_now_ms() + 2 * IO_MS;
	unsigned char h[1200], buf[512];
	size_t n;
	int fd;

	b->client = -1;
	if (fd_wait(b->lfd, POLLIN, deadline) != 0 ||
	    (fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK |
	    SOCK_CLOEXEC)) < 0) {
		snprintf(b->err, sizeof(b->err), "no connection from the relay");
		return NULL;
	}
	if (fd_read_full(fd, h, 16, deadline) != 0 ||
	    memcmp(h, "\r\n\r\n\0\r\nQUIT\n", 12) != 0 ||
	    (n = (size_t)h[14] << 8 | h[15]) + 16 > sizeof(h) ||
	    fd_read_full(fd, h + 16, n, deadline) != 0) {
		snprintf(b->err, sizeof(b->err), "no PROXY v2 header");
		close(fd);
		return NULL;
	}
	pp_parse(b, h, 16 + n);
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r > 0) {
			if (h_fd_write_all(fd, buf, (size_t)r, IO_MS) != 0)
				break;
			continue;
		}
		if (r == 0 || (errno != EAGAIN && errno != EINTR) ||
		    fd_wait(fd, POLLIN, deadline) != 0)
			break;
	}
	close(fd);
	return NULL;
}

/* One client connection through the relay; the backend's view in ${b}. */
static void
pp_connect(struct try *t, const struct h_daemon *d, struct pp_be *b,
    const struct h_tls_opts *o)
{
	struct timespec ts;

	memset(&b->client, 0, sizeof(*b) - offsetof(struct pp_be, client));
	ck_assert(pthread_create(&b->thread, NULL, pp_be_main, b) == 0);
	try_connect(t, d, d->port, o, false, true);
	if (!t->admitted) {
		/* No relay connection will come: wake the backend up. */
		int fd = h_tcp_connect(b->port, IO_MS);

		if (fd >= 0)
			close(fd);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2 * IO_MS / 1000 + 5;
	ck_assert_msg(pthread_timedjoin_np(b->thread, NULL, &ts) == 0,
	    "backend thread stuck");
	ck_assert_msg(t->admitted, "not admitted through the relay: %s",
	    said(t));
	ck_assert_msg(b->err[0] == '\0', "backend: %s", b->err);
}

START_TEST(test_proxy_v2_of_resumed_connection_says_cert_of_session_only)
{
	int vi = _i;
	struct h_tls_opts o = pki_client("client", versions[vi], NULL);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct lsn l = { .mode = "relay" };
	struct pp_be b;
	struct h_daemon d;
	struct try t;
	char extra[256], g[512];
	SSL_SESSION *s;

	memset(&b, 0, sizeof(b));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	b.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert(b.lfd >= 0 && bind(b.lfd, (struct sockaddr *)&sa,
	    sizeof(sa)) == 0 && listen(b.lfd, 8) == 0 &&
	    getsockname(b.lfd, (struct sockaddr *)&sa, &sl) == 0);
	b.port = ntohs(sa.sin_port);
	snprintf(extra, sizeof(extra), "backend = { address = "
	    "\"127.0.0.1:%d\"; proxy_protocol = \"v2\"; };", b.port);
	l.extra = extra;
	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	daemon_one(&d, "proxy-v2", g, &l);

	pp_connect(&t, &d, &b, &o);
	ck_assert_msg(t.admitted && !t.reused, "%s", said(&t));
	ck_assert_msg(b.client >= 0 && (b.client & PP2_CLIENT_CERT_CONN),
	    "%s: a full handshake with a certificate: PP2_TYPE_SSL client "
	    "byte 0x%02x lacks PP2_CLIENT_CERT_CONN", version_names[vi],
	    (unsigned)b.client);
	s = t.session;
	ck_assert(s != NULL && SSL_SESSION_is_resumable(s));

	o.session = s;
	pp_connect(&t, &d, &b, &o);
	ck_assert_msg(t.admitted && t.reused, "%s: the session did not "
	    "resume through the relay: %s", version_names[vi], said(&t));
	ck_assert_msg(b.client == (PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS) &&
	    b.verify == 0 && strcmp(b.cn, "test-client") == 0, "%s: a RESUMED "
	    "connection (no certificate sent on it) told the backend client "
	    "byte 0x%02x (want 0x05: SSL|CERT_SESS, not CERT_CONN), verify %u, "
	    "CN \"%s\"", version_names[vi], (unsigned)b.client,
	    (unsigned)b.verify, b.cn);
	SSL_SESSION_free(t.session);
	SSL_SESSION_free(s);
	close(b.lfd);
	H_DAEMON_DOWN(&d);
}
END_TEST


/* ------------------------------------------------------------------------- */
/* what a full handshake refuses for every client, and how long tickets live */
/* ------------------------------------------------------------------------- */

/*
 * A CRL of our CA signed with SHA-1 (revoking nothing): mbedTLS's chain
 * verification flags it (BADCRL_BAD_MD), so under it every full handshake
 * of that CA's clients is refused, while a ticket made before would still
 * vouch for them.  Such a CRL is a configuration error: the reload that
 * brings it fails, says why, and the running configuration stays (full
 * handshakes and tickets alike).
 */
START_TEST(test_crl_the_tls_policy_refuses_is_a_config_error)
{
	int v = versions[_i];
	const char *crl = h_tmp("authn-sha1.crl");
	char g[512], tls[1024], line[4096], *text;
	struct pki_item ca;
	struct lsn l = { .mode = "whoami" };
	struct h_tls_opts o = pki_client("client", v, NULL);
	struct h_daemon d;
	SSL_SESSION *s;
	struct try full, res;
	time_t now = time(NULL);

	item_load(&ca, "ca");
	snprintf(g, sizeof(g), "ticket_key_file = \"%s\";", key_file());
	daemon_one(&d, "sha1-crl", g, &l);
	s = good_session(&d, d.port, &o, true, "before the CRL");

	write_crl_md(crl, &ca, NULL, now - 3600, now + 30L * DAY, EVP_sha1());
	snprintf(tls, sizeof(tls), "crl = [\"%s\"];", crl);
	l.tls = tls;
	text = conf_text(g, &l, 1, d.port);
	{
		char *t = replace_all(text, "@PKI@", getenv("TEST_PKI"));

		write_file(d.conf_path, t);
		free(t);
	}
	free(text);
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	H_LOG_EXPECT(&d, line, "reload failed, still serving generation 1",
	    "authn-sha1.crl", "SHA-1");

	o.session = NULL;
	try_connect(&full, &d, d.port, &o, true, false);
	ck_assert_msg(full.admitted, "%s: generation 1 stays in force: %s",
	    version_names[_i], said(&full));
	o.session = s;
	try_connect(&res, &d, d.port, &o, true, false);
	ck_assert_msg(res.admitted && res.reused, "%s: under the unchanged "
	    "configuration the ticket resumes: %s", version_names[_i],
	    said(&res));
	SSL_SESSION_free(full.session);
	SSL_SESSION_free(res.session);
	SSL_SESSION_free(s);
	item_free(&ca);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * ticket_max_age: however often a client resumes (TLS 1.3 renews its
 * ticket each time), it makes a full handshake again once its last one is
 * that old.  3 s here: resumed after 1 s, not after 4.5 s.
 */
START_TEST(test_tickets_stop_resuming_ticket_max_age_after_the_full_handshake)
{
	int v = versions[_i];
	struct lsn l = { .mode = "whoami" };
	struct h_tls_opts o = pki_client("client", v, NULL);
	struct h_daemon d;
	SSL_SESSION *s;
	struct try t1, t2;
	int64_t t0;

	daemon_one(&d, "max-age", "ticket_max_age = 3;", &l);
	t0 = h_now_ms();
	s = good_session(&d, d.port, &o, true, "the full handshake");
	usleep(1000 * 1000);
	o.session = s;
	try_connect(&t1, &d, d.port, &o, true, true);
	ck_assert_msg(t1.admitted && t1.reused, "%s: 1 s after the full "
	    "handshake the ticket resumes: %s", version_names[_i], said(&t1));
	/* TLS 1.3 renewed the ticket: offer the newest one. */
	if (t1.session != NULL && SSL_SESSION_is_resumable(t1.session)) {
		SSL_SESSION_free(s);
		s = t1.session;
		t1.session = NULL;
	}
	while (h_now_ms() - t0 < 4500)
		usleep(50 * 1000);
	o.session = s;
	try_connect(&t2, &d, d.port, &o, true, false);
	ck_assert_msg(t2.admitted && !t2.reused, "%s: 4.5 s after the full "
	    "handshake (ticket_max_age = 3) a ticket still RESUMED: %s",
	    version_names[_i], said(&t2));
	SSL_SESSION_free(t1.session);
	SSL_SESSION_free(t2.session);
	SSL_SESSION_free(s);
	H_DAEMON_DOWN(&d);
}
END_TEST

/*
 * A client name the PROXY v2 header cannot carry whole and as it is (a URI
 * SAN with a control byte) makes no header: the relay closes the
 * connection rather than send the backend a name cut short, or none.
 */
START_TEST(test_proxy_v2_never_carries_a_name_it_cannot_give_whole)
{
	const char *rdn[] = { "OU", "ops", "CN", "test-client", NULL };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct lsn l = { .mode = "relay" };
	struct pki_item ca, odd;
	struct h_tls_opts o;
	struct pp_be b;
	struct h_daemon d;
	struct timespec ts;
	struct try t;
	char extra[256], line[4096];
	int fd;

	item_load(&ca, "ca");
	issue(&odd, "odd-uri", rdn, NULL,
	    "URI:spiffe://test.example/client\x01" "admin", &ca, false);
	o = client(odd.crt, odd.key, TLS1_3_VERSION, NULL);
	memset(&b, 0, sizeof(b));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	b.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert(b.lfd >= 0 && bind(b.lfd, (struct sockaddr *)&sa,
	    sizeof(sa)) == 0 && listen(b.lfd, 8) == 0 &&
	    getsockname(b.lfd, (struct sockaddr *)&sa, &sl) == 0);
	b.port = ntohs(sa.sin_port);
	snprintf(extra, sizeof(extra), "backend = { address = "
	    "\"127.0.0.1:%d\"; proxy_protocol = \"v2\"; };", b.port);
	l.extra = extra;
	daemon_one(&d, "proxy-odd", "", &l);

	ck_assert(pthread_create(&b.thread, NULL, pp_be_main, &b) == 0);
	try_connect(&t, &d, d.port, &o, false, false);
	if ((fd = h_tcp_connect(b.port, IO_MS)) >= 0)
		close(fd); /* wakes the backend if the relay never came */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2 * IO_MS / 1000 + 5;
	ck_assert_msg(pthread_timedjoin_np(b.thread, NULL, &ts) == 0,
	    "backend thread stuck");
	ck_assert_msg(!t.admitted && b.err[0] != '\0', "the backend got a "
	    "PROXY v2 header for a URI holding a control byte (CN \"%s\", "
	    "client byte 0x%02x): %s", b.cn, (unsigned)b.client, said(&t));
	H_LOG_EXPECT(&d, line, "cannot build the PROXY header");
	SSL_SESSION_free(t.session);
	close(b.lfd);
	item_free(&odd);
	item_free(&ca);
	H_DAEMON_DOWN(&d);
}
END_TEST

/* ------------------------------------------------------------------------- */

static TCase *
tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 90);
	suite_add_tcase(s, tc);
	return tc;
}

int
main(void)
{
	Suite *s = suite_create("authn");
	char why[512];
	SRunner *sr;
	TCase *tc;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_authn: skipped: %s\n", why);
		return 77;
	}
	tc = tcase(s, "forged");
	tcase_add_test(tc,
	    test_forged_tls12_session_around_tls13_ticket_without_key_is_refused);
	tcase_add_loop_test(tc,
	    test_ticket_turned_down_by_mbedtls_lends_no_identity, 0, 2);
	tcase_add_loop_test(tc,
	    test_own_turned_down_ticket_does_not_vouch_for_impostor_certificate,
	    0, 2);
	tc = tcase(s, "refused");
	tcase_add_loop_test(tc,
	    test_optional_refused_impostor_gets_no_session_that_admits_it, 0,
	    2);
	tcase_add_loop_test(tc,
	    test_client_refused_after_handshake_gets_no_resumable_ticket, 0, 4);
	tc = tcase(s, "reload");
	tcase_add_loop_test(tc,
	    test_client_revoked_or_crl_stale_after_reload_does_not_resume, 0,
	    4);
	tcase_add_loop_test(tc, test_client_of_removed_ca_does_not_resume, 0,
	    2);
	tcase_add_loop_test(tc,
	    test_session_does_not_resume_after_trust_policy_changed, 0,
	    (int)(sizeof(changes) / sizeof(changes[0])));
	tc = tcase(s, "binding");
	tcase_add_loop_test(tc,
	    test_ticket_of_one_listener_does_not_resume_on_another, 0, 2);
	tcase_add_loop_test(tc,
	    test_ticket_does_not_resume_on_listener_with_same_name_prefix, 0, 2);
	tcase_add_test(tc, test_tls12_session_id_without_ticket_never_resumes);
	tcase_add_loop_test(tc,
	    test_ticket_resumes_on_another_host_with_the_same_key_file, 0, 2);
	tc = tcase(s, "proxy");
	tcase_add_loop_test(tc,
	    test_proxy_v2_of_resumed_connection_says_cert_of_session_only, 0,
	    2);
	tc = tcase(s, "policy");
	tcase_add_loop_test(tc, test_crl_the_tls_policy_refuses_is_a_config_error,
	    0, 2);
	tcase_add_loop_test(tc,
	    test_tickets_stop_resuming_ticket_max_age_after_the_full_handshake,
	    0, 2);
	tcase_add_test(tc,
	    test_proxy_v2_never_carries_a_name_it_cannot_give_whole);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
