/*
 * tlsctx: mbedTLS set-up shared by all connections of a listener.
 */
#include "tlsctx.h"
#include "tlsctx_int.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/version.h>
#include <psa/crypto.h>
#include <mbedtls/sha256.h>
#include <mbedtls/md.h>
#include <errno.h>

#if !defined(MBEDTLS_VERSION_NUMBER) || MBEDTLS_VERSION_NUMBER < 0x03060000
#error "tls-echod needs mbedTLS 3.6 or later (see scripts/build-mbedtls.sh)"
#endif
#if !defined(MBEDTLS_SSL_PROTO_TLS1_3) || !defined(MBEDTLS_SSL_PROTO_TLS1_2)
#error "tls-echod needs mbedTLS with TLS 1.2 and TLS 1.3"
#endif

/* tlsctx_int.h's crl_ca entries. */
enum { CRL_NA, CRL_TRUSTED, CRL_UNTRUSTED };

/* One generator per process: the master's, then each worker's own. */
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static int rng_ready;

/*
 * Policy.  TLS 1.3 suites, then TLS 1.2 ECDHE with AEAD only: no CBC, no
 * static RSA, no DHE.  ChaCha20-Poly1305 first: it is the fastest AEAD in
 * mbedTLS on these machines (docs/PERFORMANCE.md).
 */
static const int ciphersuites[] = {
	MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
	MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	0,
};

/* X25519 then P-256: the library default puts slower curves first. */
static const uint16_t groups[] = {
	MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
	MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
	MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
	MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};

/* No SHA-1, no SHA-224. */
static const uint16_t sig_algs[] = {
	MBEDTLS_TLS1_3_SIG_ECDSA_SECP256R1_SHA256,
	MBEDTLS_TLS1_3_SIG_ECDSA_SECP384R1_SHA384,
	MBEDTLS_TLS1_3_SIG_ECDSA_SECP521R1_SHA512,
	MBEDTLS_TLS1_3_SIG_RSA_PSS_RSAE_SHA256,
	MBEDTLS_TLS1_3_SIG_RSA_PSS_RSAE_SHA384,
	MBEDTLS_TLS1_3_SIG_RSA_PSS_RSAE_SHA512,
	MBEDTLS_TLS1_3_SIG_RSA_PKCS1_SHA256,
	MBEDTLS_TLS1_3_SIG_RSA_PKCS1_SHA384,
	MBEDTLS_TLS1_3_SIG_RSA_PKCS1_SHA512,
	MBEDTLS_TLS1_3_SIG_NONE,
};

static void
mbed_err(int ret, char *buf, size_t len)
{
	mbedtls_strerror(ret, buf, len);
}

static int
rng_seed(const char *who, char *err, size_t errlen)
{
	unsigned char pers[64];
	int n, ret;

	n = snprintf((char *)pers, sizeof(pers), "tls-echod %s %ld", who,
	    (long)getpid());
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
	    pers, n < 0 ? 0 : (size_t)n);
	if (ret != 0) {
		char m[128];

		mbed_err(ret, m, sizeof(m));
		snprintf(err, errlen, "cannot seed the random generator: %s", m);
		mbedtls_ctr_drbg_free(&drbg);
		mbedtls_entropy_free(&entropy);
		return -1;
	}
	rng_ready = 1;
	return 0;
}

int
tlsctx_random(unsigned char *buf, size_t len)
{
	return mbedtls_ctr_drbg_random(&drbg, buf, len);
}

int
tlsctx_global_init(char *err, size_t errlen)
{
	psa_status_t st = psa_crypto_init();

	if (st != PSA_SUCCESS) {
		snprintf(err, errlen, "cannot start PSA crypto (status %d)",
		    (int)st);
		return -1;
	}
	return rng_seed("master", err, errlen);
}

int
tlsctx_worker_init(char *err, size_t errlen)
{
	psa_status_t st;

	/*
	 * fork() copied the master's generator states: drop them.  The same
	 * drbg object is re-seeded in place, so every ssl_config already
	 * pointing at it now draws from this worker's own stream.  PSA keeps
	 * its own generator (TLS 1.3 key shares come from it): restart it.
	 */
	if (rng_ready) {
		mbedtls_ctr_drbg_free(&drbg);
		mbedtls_entropy_free(&entropy);
		rng_ready = 0;
	}
	mbedtls_psa_crypto_free();
	st = psa_crypto_init();
	if (st != PSA_SUCCESS) {
		snprintf(err, errlen, "cannot restart PSA crypto (status %d)",
		    (int)st);
		return -1;
	}
	return rng_seed("worker", err, errlen);
}

void
tlsctx_global_free(void)
{
	if (rng_ready) {
		mbedtls_ctr_drbg_free(&drbg);
		mbedtls_entropy_free(&entropy);
		rng_ready = 0;
	}
	mbedtls_psa_crypto_free();
}

/* "cfgfile:line: setting: message" for a file setting. */
static void __attribute__((format(printf, 5, 6)))
fail(const struct cfg *c, const struct cfg_file *f, char *err, size_t errlen,
    const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (f->line > 0)
		snprintf(err, errlen, "%s:%d: %s: %s", f->file ? f->file :
		    c->path, f->line, f->setting, msg);
	else
		snprintf(err, errlen, "%s: %s: %s", f->file ? f->file :
		    c->path, f->setting, msg);
}

void
tlsctx_time_str(const mbedtls_x509_time *t, char *buf, size_t len)
{
	snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d UTC", t->year, t->mon,
	    t->day, t->hour, t->min, t->sec);
}

/* Check a certificate's validity period; 0 or -1 with ${what} in ${err}. */
static int
check_dates(const struct cfg *c, const struct cfg_file *f,
    const mbedtls_x509_crt *crt, const char *what, char *err, size_t errlen)
{
	char when[64], subj[256];

	if (mbedtls_x509_dn_gets(subj, sizeof(subj), &crt->subject) < 0)
		snprintf(subj, sizeof(subj), "?");
	if (mbedtls_x509_time_is_past(&crt->valid_to)) {
		tlsctx_time_str(&crt->valid_to, when, sizeof(when));
		fail(c, f, err, errlen, "%s \"%s\" in \"%s\" expired on %s",
		    what, subj, f->path, when);
		return -1;
	}
	if (mbedtls_x509_time_is_future(&crt->valid_from)) {
		tlsctx_time_str(&crt->valid_from, when, sizeof(when));
		fail(c, f, err, errlen, "%s \"%s\" in \"%s\" is not valid "
		    "before %s", what, subj, f->path, when);
		return -1;
	}
	return 0;
}

static int
load_chain(const struct cfg *c, const struct cfg_listener *li,
    struct tlsctx *t, char *err, size_t errlen)
{
	char m[160];
	int ret;

	ret = mbedtls_x509_crt_parse_file(&t->chain, li->cert.path);
	if (ret < 0) {
		mbed_err(ret, m, sizeof(m));
		fail(c, &li->cert, err, errlen, "\"%s\" is not a usable "
		    "certificate file (PEM or DER): %s", li->cert.path, m);
		return -1;
	}
	if (ret > 0) {
		fail(c, &li->cert, err, errlen, "\"%s\": %d certificate(s) in "
		    "the file do not parse", li->cert.path, ret);
		return -1;
	}
	if (t->chain.raw.len == 0) {
		fail(c, &li->cert, err, errlen, "\"%s\" holds no certificate",
		    li->cert.path);
		return -1;
	}
	return check_dates(c, &li->cert, &t->chain, "server certificate",
	    err, errlen);
}

static int
load_key(const struct cfg *c, const struct cfg_listener *li,
    struct tlsctx *t, char *err, size_t errlen)
{
	char m[160];
	int ret;

	ret = mbedtls_pk_parse_keyfile(&t->key, li->key.path, NULL,
	    mbedtls_ctr_drbg_random, &drbg);
	if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) {
		fail(c, &li->key, err, errlen, "\"%s\" is encrypted; "
		    "passphrase-protected keys are not supported (decrypt it "
		    "and protect it with file permissions)", li->key.path);
		return -1;
	}
	if (ret != 0) {
		mbed_err(ret, m, sizeof(m));
		fail(c, &li->key, err, errlen, "\"%s\" is not a usable private "
		    "key (PEM or DER): %s", li->key.path, m);
		return -1;
	}
	ret = mbedtls_pk_check_pair(&t->chain.pk, &t->key,
	    mbedtls_ctr_drbg_random, &drbg);
	if (ret != 0) {
		fail(c, &li->key, err, errlen, "private key \"%s\" does not "
		    "match the certificate in \"%s\"", li->key.path,
		    li->cert.path);
		return -1;
	}
	return 0;
}

static int
load_ca(const struct cfg *c, const struct cfg_listener *li, struct tlsctx *t,
    char *err, size_t errlen)
{
	const mbedtls_x509_crt *crt;
	char m[160];
	int ret, nca = 0;

	ret = mbedtls_x509_crt_parse_file(&t->ca, li->ca.path);
	if (ret < 0) {
		mbed_err(ret, m, sizeof(m));
		fail(c, &li->ca, err, errlen, "\"%s\" is not a usable CA "
		    "certificate file (PEM or DER): %s", li->ca.path, m);
		return -1;
	}
	if (ret > 0) {
		fail(c, &li->ca, err, errlen, "\"%s\": %d certificate(s) in "
		    "the file do not parse", li->ca.path, ret);
		return -1;
	}
	for (crt = &t->ca; crt != NULL && crt->raw.len > 0; crt = crt->next) {
		/* No public accessor in 3.6; the field is stable in the LTS. */
		if (!crt->MBEDTLS_PRIVATE(ca_istrue))
			continue;
		if (check_dates(c, &li->ca, crt, "CA certificate", err,
		    errlen) != 0)
			return -1;
		nca++;
	}
	if (nca == 0) {
		fail(c, &li->ca, err, errlen, "\"%s\" holds no CA certificate "
		    "(basicConstraints CA:TRUE)", li->ca.path);
		return -1;
	}
	return 0;
}

/* "file:line: setting: message" for a setting that is not a file. */
static void __attribute__((format(printf, 6, 7)))
fail_at(const struct cfg_listener *li, int line, const char *setting,
    char *err, size_t errlen, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s:%d: %s.%s: %s", li->file, line,
	    li->setting_tls, setting, msg);
}

/*
 * IANA name -> mbedTLS id: "TLS_AES_128_GCM_SHA256" is mbedTLS's
 * "TLS1-3-AES-128-GCM-SHA256", "TLS_ECDHE_..._WITH_..." its
 * "TLS-ECDHE-...-WITH-...".  Our policy on top: TLS 1.2 suites must be
 * ECDHE with an AEAD (GCM, ChaCha20-Poly1305, CCM but not CCM_8).
 */
static int
suite_id(const char *iana, const char **why)
{
	char name[160];
	size_t i;
	int tls13 = strstr(iana, "_WITH_") == NULL;
	int id;

	if (strlen(iana) > 120) {
		*why = "unknown cipher suite";
		return 0;
	}
	snprintf(name, sizeof(name), "%s%.120s", tls13 ? "TLS1-3-" : "",
	    tls13 ? iana + 4 : iana);
	for (i = 0; name[i] != '\0'; i++)
		if (name[i] == '_')
			name[i] = '-';
	id = mbedtls_ssl_get_ciphersuite_id(name);
	if (id == 0) {
		*why = "unknown to this mbedTLS (or disabled in its build)";
		return 0;
	}
	if (!tls13 && (strncmp(iana, "TLS_ECDHE_", 10) != 0 ||
	    (strstr(iana, "_GCM_") == NULL &&
	    strstr(iana, "_CHACHA20_POLY1305_") == NULL &&
	    (strstr(iana, "_CCM") == NULL || strstr(iana, "_CCM_8") != NULL)))) {
		*why = "refused by policy: TLS 1.2 suites must use ECDHE and an "
		    "AEAD (GCM, ChaCha20-Poly1305 or CCM)";
		return 0;
	}
	return id;
}

static int
setup_suites(const struct cfg_listener *li, struct tlsctx *t, char *err,
    size_t errlen)
{
	size_t i;
	int n13 = 0, n12 = 0;

	if (li->ciphers.n == 0)
		return 0;
	if ((t->suites = calloc(li->ciphers.n + 1, sizeof(int))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < li->ciphers.n; i++) {
		const char *why = NULL;
		int id = suite_id(li->ciphers.v[i], &why);

		if (id == 0) {
			fail_at(li, li->ciphers.line, "ciphers", err, errlen,
			    "\"%s\": %s", li->ciphers.v[i], why);
			return -1;
		}
		t->suites[i] = id;
		if (strstr(li->ciphers.v[i], "_WITH_") == NULL)
			n13++;
		else
			n12++;
	}
	if (n13 == 0 || (n12 == 0 && li->min_version == 12)) {
		fail_at(li, li->ciphers.line, "ciphers", err, errlen, "no %s "
		    "cipher suite left: clients of that version could never "
		    "connect (list one, or set min_version = \"1.3\")",
		    n13 == 0 ? "TLS 1.3" : "TLS 1.2");
		return -1;
	}
	return 0;
}

/* Curve names as mbedTLS and OpenSSL spell them, plus NIST's P-256... */
static int
setup_groups(const struct cfg_listener *li, struct tlsctx *t, char *err,
    size_t errlen)
{
	size_t i;
	int has_ecdsa_curve = 0;

	if (li->curves.n == 0)
		return 0;
	if ((t->groups = calloc(li->curves.n + 1, sizeof(uint16_t))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < li->curves.n; i++) {
		const char *n = li->curves.v[i];
		const mbedtls_ecp_curve_info *ci;

		if (strcmp(n, "P-256") == 0 || strcmp(n, "prime256v1") == 0)
			n = "secp256r1";
		else if (strcmp(n, "P-384") == 0)
			n = "secp384r1";
		else if (strcmp(n, "P-521") == 0)
			n = "secp521r1";
		else if (strcmp(n, "X25519") == 0)
			n = "x25519";
		else if (strcmp(n, "X448") == 0)
			n = "x448";
		ci = mbedtls_ecp_curve_info_from_name(n);
		if (ci == NULL) {
			fail_at(li, li->curves.line, "curves", err, errlen,
			    "\"%s\": unknown curve (use x25519, secp256r1, "
			    "secp384r1, secp521r1, x448, or brainpoolP256r1...)",
			    li->curves.v[i]);
			return -1;
		}
		t->groups[i] = ci->tls_id;
		has_ecdsa_curve |= ci->tls_id != MBEDTLS_SSL_IANA_TLS_GROUP_X25519 &&
		    ci->tls_id != MBEDTLS_SSL_IANA_TLS_GROUP_X448;
	}
	if (!has_ecdsa_curve && li->min_version == 12) {
		fail_at(li, li->curves.line, "curves", err, errlen, "TLS 1.2 "
		    "with ECDSA certificates needs a NIST curve (add "
		    "secp256r1), or set min_version = \"1.3\"");
		return -1;
	}
	return 0;
}

/*
 * mbedTLS's x509_string_cmp and x509_name_cmp (static there): DNs are equal
 * if every attribute has the same type and the same value, UTF8String and
 * PrintableString values compared without ASCII case.
 */
static bool
dn_string_eq(const mbedtls_x509_buf *a, const mbedtls_x509_buf *b)
{
	size_t i;

	if (a->tag == b->tag && a->len == b->len &&
	    memcmp(a->p, b->p, b->len) == 0)
		return true;
	if ((a->tag != MBEDTLS_ASN1_UTF8_STRING &&
	    a->tag != MBEDTLS_ASN1_PRINTABLE_STRING) ||
	    (b->tag != MBEDTLS_ASN1_UTF8_STRING &&
	    b->tag != MBEDTLS_ASN1_PRINTABLE_STRING) || a->len != b->len)
		return false;
	for (i = 0; i < a->len; i++) {
		unsigned char x = a->p[i], y = b->p[i];

		if (x == y)
			continue;
		if ((x ^ y) != 32 || !((x >= 'a' && x <= 'z') ||
		    (x >= 'A' && x <= 'Z')))
			return false;
	}
	return true;
}

static bool
dn_eq(const mbedtls_x509_name *a, const mbedtls_x509_name *b)
{
	while (a != NULL || b != NULL) {
		if (a == NULL || b == NULL ||
		    a->oid.tag != b->oid.tag || a->oid.len != b->oid.len ||
		    memcmp(a->oid.p, b->oid.p, a->oid.len) != 0 ||
		    !dn_string_eq(&a->val, &b->val) ||
		    a->MBEDTLS_PRIVATE(next_merged) !=
		    b->MBEDTLS_PRIVATE(next_merged))
			return false;
		a = a->next;
		b = b->next;
	}
	return true;
}

/*
 * The profile mbedTLS verifies client chains with (the default: our TLS
 * configuration sets no other) accepts ${crl}'s signature algorithm.  A CRL
 * it refuses (say, signed with SHA-1) fails every verification that
 * consults it.
 */
static bool
crl_profile_ok(const mbedtls_x509_crl *crl)
{
	const mbedtls_x509_crt_profile *p = &mbedtls_x509_crt_profile_default;
	mbedtls_md_type_t md = crl->MBEDTLS_PRIVATE(sig_md);
	mbedtls_pk_type_t pk = crl->MBEDTLS_PRIVATE(sig_pk);

	return md != MBEDTLS_MD_NONE && pk != MBEDTLS_PK_NONE &&
	    (p->allowed_mds & MBEDTLS_X509_ID_FLAG(md)) != 0 &&
	    (p->allowed_pks & MBEDTLS_X509_ID_FLAG(pk)) != 0;
}

/* ${ca}'s key verifies ${crl}'s signature. */
static bool
crl_signed_by(const mbedtls_x509_crl *crl, mbedtls_x509_crt *ca)
{
	/* No public API verifies a CRL's signature alone in 3.6; these
	 * fields are stable within the LTS. */
	mbedtls_md_type_t mdt = crl->MBEDTLS_PRIVATE(sig_md);
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(mdt);
	unsigned char hash[MBEDTLS_MD_MAX_SIZE];

	if (md == NULL || mbedtls_md(md, crl->tbs.p, crl->tbs.len, hash) != 0)
		return false;
	return mbedtls_pk_verify_ext(crl->MBEDTLS_PRIVATE(sig_pk),
	    crl->MBEDTLS_PRIVATE(sig_opts), &ca->pk, mdt,
	    hash, mbedtls_md_get_size(md), crl->MBEDTLS_PRIVATE(sig).p,
	    crl->MBEDTLS_PRIVATE(sig).len) == 0;
}

/*
 * A CRL must be signed with an algorithm the TLS policy accepts (or it
 * would refuse every client it covers).  One whose issuer is a CA of
 * tls.ca must carry that CA's signature (or it would silently never
 * apply); one from another issuer may belong to an intermediate that
 * clients send, and is kept as it is.  Returns 0, or -1 with ${why} set.
 */
static int
check_crl(const mbedtls_x509_crl *crl, mbedtls_x509_crt *cas, char *why,
    size_t whylen)
{
	mbedtls_x509_crt *ca;
	int named = 0;

	if (!crl_profile_ok(crl)) {
		snprintf(why, whylen, "signed with an algorithm the TLS policy "
		    "refuses (SHA-1 or weaker?): every client whose chain it "
		    "covers would be refused; re-issue it with SHA-256 or "
		    "better");
		return -1;
	}
	for (ca = cas; ca != NULL && ca->raw.len > 0; ca = ca->next) {
		if (ca->subject_raw.len != crl->issuer_raw.len ||
		    memcmp(ca->subject_raw.p, crl->issuer_raw.p,
		    crl->issuer_raw.len) != 0)
			continue;
		named = 1;
		if (crl_signed_by(crl, ca))
			return 0;
	}
	if (named) {
		char issuer[256];

		if (mbedtls_x509_dn_gets(issuer, sizeof(issuer),
		    &crl->issuer) < 0)
			snprintf(issuer, sizeof(issuer), "?");
		snprintf(why, whylen, "the CRL names \"%.120s\" as its issuer but "
		    "that CA's key did not sign it (another CA with the same "
		    "name, or tampering)", issuer);
		return -1;
	}
	return 0;
}

static int
load_crls(const struct cfg *c, const struct cfg_listener *li,
    struct tlsctx *t, char *err, size_t errlen)
{
	char m[400];
	size_t i;
	int ret;

	for (i = 0; i < li->ncrl; i++) {
		mbedtls_x509_crl one;
		const mbedtls_x509_crl *crl;

		/* Alone first, so a problem names its file. */
		mbedtls_x509_crl_init(&one);
		ret = mbedtls_x509_crl_parse_file(&one, li->crl[i].path);
		if (ret != 0) {
			mbedtls_x509_crl_free(&one);
			mbed_err(ret, m, sizeof(m));
			fail(c, &li->crl[i], err, errlen, "\"%s\" is not a "
			    "usable CRL (PEM or DER): %s", li->crl[i].path, m);
			return -1;
		}
		for (crl = &one; crl != NULL && crl->raw.len > 0;
		    crl = crl->next)
			if (check_crl(crl, &t->ca, m, sizeof(m)) != 0) {
				mbedtls_x509_crl_free(&one);
				fail(c, &li->crl[i], err, errlen, "\"%s\": %s",
				    li->crl[i].path, m);
				return -1;
			}
		mbedtls_x509_crl_free(&one);
		if ((ret = mbedtls_x509_crl_parse_file(&t->crl,
		    li->crl[i].path)) != 0) {
			mbed_err(ret, m, sizeof(m));
			fail(c, &li->crl[i], err, errlen, "\"%s\": %s",
			    li->crl[i].path, m);
			return -1;
		}
		t->has_crl = 1;
	}
	return 0;
}

static void
policy_u32(mbedtls_sha256_context *h, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24),
	    (unsigned char)(v >> 16), (unsigned char)(v >> 8),
	    (unsigned char)v };

	(void)mbedtls_sha256_update(h, b, sizeof(b));
}

/*
 * What a ticket is bound to besides its listener: every trust setting that
 * a resumption cannot re-check cheaply.  The CA certificates (in order),
 * verify_client, verify_depth and min_version: change any of them and the
 * keys change, so no older ticket opens.  CRLs, expiry, the allow-list and
 * the identity limit are not in it: they are checked again on every
 * resumption (tlssess_ticket_parse, conn's admission).
 */
static int
setup_policy(const struct cfg_listener *li, struct tlsctx *t)
{
	static const char tag[] = "tls-echod trust policy v1";
	const mbedtls_x509_crt *crt;
	mbedtls_sha256_context h;
	size_t i = 0;
	int ret = 0;

	for (crt = &t->ca; crt != NULL && crt->raw.len > 0; crt = crt->next)
		t->nca++;
	if ((t->ca_sha256 = calloc(t->nca, sizeof(*t->ca_sha256))) == NULL)
		return -1;
	mbedtls_sha256_init(&h);
	if (mbedtls_sha256_starts(&h, 0) != 0)
		ret = -1;
	(void)mbedtls_sha256_update(&h, (const unsigned char *)tag,
	    sizeof(tag));
	policy_u32(&h, li->verify_optional ? 1 : 0);
	policy_u32(&h, li->verify_depth);
	policy_u32(&h, (uint32_t)li->min_version);
	policy_u32(&h, (uint32_t)t->nca);
	for (crt = &t->ca; crt != NULL && crt->raw.len > 0; crt = crt->next) {
		if (mbedtls_sha256(crt->raw.p, crt->raw.len, t->ca_sha256[i++],
		    0) != 0)
			ret = -1;
		policy_u32(&h, (uint32_t)crt->raw.len);
		(void)mbedtls_sha256_update(&h, crt->raw.p, crt->raw.len);
	}
	if (mbedtls_sha256_finish(&h, t->policy) != 0)
		ret = -1;
	mbedtls_sha256_free(&h);
	return ret;
}

/*
 * Would mbedTLS's chain verification take ${crl} as the word of ${ca}, whose
 * name it carries: the CA may sign CRLs and its key signed this one.
 */
static bool
crl_trusted(const mbedtls_x509_crl *crl, mbedtls_x509_crt *ca)
{
	return crl_profile_ok(crl) && mbedtls_x509_crt_check_key_usage(ca,
	    MBEDTLS_X509_KU_CRL_SIGN) == 0 && crl_signed_by(crl, ca);
}

/* The CRL/CA table of tlsctx_crl_check: the signatures are checked once. */
static int
setup_crl_table(struct tlsctx *t)
{
	const mbedtls_x509_crl *crl;
	mbedtls_x509_crt *ca;
	size_t i = 0, j;

	for (crl = t->has_crl ? &t->crl : NULL; crl != NULL; crl = crl->next)
		t->ncrl++;
	if (t->ncrl == 0)
		return 0;
	if ((t->crl_ca = calloc(t->ncrl, t->nca)) == NULL)
		return -1;
	for (crl = &t->crl; crl != NULL; crl = crl->next, i++)
		for (ca = &t->ca, j = 0; j < t->nca; ca = ca->next, j++) {
			if (crl->version == 0 ||
			    !dn_eq(&crl->issuer, &ca->subject))
				t->crl_ca[i * t->nca + j] = CRL_NA;
			else
				t->crl_ca[i * t->nca + j] = crl_trusted(crl,
				    ca) ? CRL_TRUSTED : CRL_UNTRUSTED;
		}
	return 0;
}

enum tlsctx_crl
tlsctx_crl_check(const struct tlsctx *t, const mbedtls_x509_crt *child,
    mbedtls_x509_crt *parent, int *stale)
{
	const mbedtls_x509_crl *crl;
	const mbedtls_x509_crt *ca;
	size_t i, j;
	int was_stale = 0;

	/* Is the parent one of our CAs (its verdicts are in the table)? */
	for (ca = &t->ca, j = 0; j < t->nca && ca != parent; ca = ca->next)
		j++;
	for (crl = t->ncrl > 0 ? &t->crl : NULL, i = 0; crl != NULL;
	    crl = crl->next, i++) {
		int v;

		if (j < t->nca)
			v = t->crl_ca[i * t->nca + j];
		else if (crl->version == 0 || !dn_eq(&crl->issuer,
		    &parent->subject))
			v = CRL_NA;
		else	/* an intermediate the client sent: rare, and costly */
			v = crl_trusted(crl, parent) ? CRL_TRUSTED :
			    CRL_UNTRUSTED;
		if (v == CRL_NA)
			continue;
		if (v == CRL_UNTRUSTED ||
		    mbedtls_x509_time_is_future(&crl->this_update))
			return TLSCTX_CRL_UNTRUSTED;
		if (mbedtls_x509_time_is_past(&crl->next_update)) {
			if (t->crl_stale_refuse)
				return TLSCTX_CRL_STALE;
			was_stale = 1;
		}
		if (mbedtls_x509_crt_is_revoked(child, crl))
			return TLSCTX_CRL_REVOKED;
	}
	if (was_stale)
		*stale = 1;
	return TLSCTX_CRL_OK;
}

mbedtls_x509_crt *
tlsctx_ca_by_hash(struct tlsctx *t, const uint8_t sha256[32])
{
	mbedtls_x509_crt *crt = &t->ca;
	size_t i;

	for (i = 0; i < t->nca && crt != NULL; i++, crt = crt->next)
		if (memcmp(t->ca_sha256[i], sha256, 32) == 0)
			return crt;
	return NULL;
}

/*
 * The ticket secret: from ticket_key_file (hashed: any format, at least 32
 * bytes, so `openssl rand -base64 48` will do), else fresh random bytes,
 * so a reload rotates it.  Shared by every worker through fork.
 */
static int
setup_tickets(const struct cfg *c, const struct cfg_listener *li,
    struct tlsctx *t, char *err, size_t errlen)
{
	if (li->resumption == CFG_RESUME_OFF)
		return 0;
	t->tickets = 1;
	t->ticket_lifetime = c->ticket_lifetime_s;
	t->ticket_max_age = c->ticket_max_age_s;
	if ((t->ticket_name = strdup(li->name)) == NULL ||
	    setup_policy(li, t) != 0 || setup_crl_table(t) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (c->ticket_key_file.path != NULL) {
		unsigned char buf[4096];
		size_t n;
		FILE *f = fopen(c->ticket_key_file.path, "re");

		if (f == NULL) {
			fail(c, &c->ticket_key_file, err, errlen, "cannot read "
			    "\"%s\": %s", c->ticket_key_file.path,
			    strerror(errno));
			return -1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		if (n < 32) {
			mbedtls_platform_zeroize(buf, sizeof(buf));
			fail(c, &c->ticket_key_file, err, errlen, "\"%s\" holds "
			    "%zu bytes; a ticket key needs at least 32 random "
			    "bytes (openssl rand -base64 48 > FILE)",
			    c->ticket_key_file.path, n);
			return -1;
		}
		(void)mbedtls_sha256(buf, n, t->ticket_secret, 0);
		mbedtls_platform_zeroize(buf, sizeof(buf));
		return 0;
	}
	if (tlsctx_random(t->ticket_secret, sizeof(t->ticket_secret)) != 0) {
		snprintf(err, errlen, "cannot make a ticket key");
		return -1;
	}
	return 0;
}

#if defined(MBEDTLS_SSL_MAX_FRAGMENT_LENGTH)
/* tls.record_size (config checked it is one of these) as an MFL code. */
static unsigned char
mfl_code(unsigned size)
{
	switch (size) {
	case 512:
		return MBEDTLS_SSL_MAX_FRAG_LEN_512;
	case 1024:
		return MBEDTLS_SSL_MAX_FRAG_LEN_1024;
	case 2048:
		return MBEDTLS_SSL_MAX_FRAG_LEN_2048;
	case 4096:
		return MBEDTLS_SSL_MAX_FRAG_LEN_4096;
	default:
		return MBEDTLS_SSL_MAX_FRAG_LEN_NONE;
	}
}
#endif

static int
setup_conf(struct tlsctx *t, const struct cfg_listener *li, char *err,
    size_t errlen)
{
	char m[160];
	int ret;

	ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_SERVER,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0)
		goto fail;
	mbedtls_ssl_conf_min_tls_version(&t->conf, li->min_version == 13 ?
	    MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_max_tls_version(&t->conf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_ciphersuites(&t->conf, t->suites ? t->suites :
	    ciphersuites);
	mbedtls_ssl_conf_groups(&t->conf, t->groups ? t->groups : groups);
	mbedtls_ssl_conf_sig_algs(&t->conf, sig_algs);
	/* Optional: the handshake survives a bad certificate; conn refuses
	 * it afterwards (tlssess_verify_refusal), admitting only clients
	 * without one. */
	mbedtls_ssl_conf_authmode(&t->conf, li->verify_optional ?
	    MBEDTLS_SSL_VERIFY_OPTIONAL : MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, t->has_crl ? &t->crl :
	    NULL);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &drbg);
	/* Certificate handshakes only: no PSK, no resumption yet. */
	mbedtls_ssl_conf_tls13_key_exchange_modes(&t->conf,
	    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL);
#if defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_SRV_C)
	mbedtls_ssl_conf_new_session_tickets(&t->conf, 0);
#endif
#if defined(MBEDTLS_SSL_RENEGOTIATION)
	mbedtls_ssl_conf_renegotiation(&t->conf,
	    MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
#if defined(MBEDTLS_SSL_EARLY_DATA)
	mbedtls_ssl_conf_early_data(&t->conf, MBEDTLS_SSL_EARLY_DATA_DISABLED);
#endif
	ret = mbedtls_ssl_conf_own_cert(&t->conf, &t->chain, &t->key);
	if (ret != 0)
		goto fail;
#if defined(MBEDTLS_SSL_MAX_FRAGMENT_LENGTH)
	/*
	 * The records we send: with variable buffer length (bundled build)
	 * this is also the output buffer an established connection keeps.
	 * What clients send is not limited by it.
	 */
	if ((ret = mbedtls_ssl_conf_max_frag_len(&t->conf,
	    mfl_code(li->record_size))) != 0)
		goto fail;
#endif
	if (t->tickets) {
		/* Forward-secret resumption unless psk_ke is asked for. */
		mbedtls_ssl_conf_tls13_key_exchange_modes(&t->conf,
		    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL |
		    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL |
		    (li->resumption == CFG_RESUME_PSK_KE ?
		    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK : 0));
		mbedtls_ssl_conf_session_tickets_cb(&t->conf,
		    tlssess_ticket_write, tlssess_ticket_parse, t);
		mbedtls_ssl_conf_new_session_tickets(&t->conf, 1);
	}
	return 0;

fail:
	mbed_err(ret, m, sizeof(m));
	snprintf(err, errlen, "TLS configuration failed: %s", m);
	return -1;
}

/* The client side towards a TLS backend: verify it, maybe present a cert. */
static int
setup_backend(const struct cfg *c, const struct cfg_listener *li,
    struct tlsctx *t, char *err, size_t errlen)
{
	const struct cfg_backend *b = &li->backend;
	char m[160];
	int ret;

	t->has_backend = 1;
	ret = mbedtls_x509_crt_parse_file(&t->bca, b->ca.path);
	if (ret != 0) {
		mbed_err(ret, m, sizeof(m));
		fail(c, &b->ca, err, errlen, "\"%s\" is not a usable CA "
		    "certificate file (PEM or DER): %s", b->ca.path, m);
		return -1;
	}
	if (b->cert.path != NULL) {
		ret = mbedtls_x509_crt_parse_file(&t->bcert, b->cert.path);
		if (ret != 0) {
			mbed_err(ret, m, sizeof(m));
			fail(c, &b->cert, err, errlen, "\"%s\" is not a usable "
			    "certificate file (PEM or DER): %s", b->cert.path,
			    m);
			return -1;
		}
		if (check_dates(c, &b->cert, &t->bcert, "backend client "
		    "certificate", err, errlen) != 0)
			return -1;
		ret = mbedtls_pk_parse_keyfile(&t->bkey, b->key.path, NULL,
		    mbedtls_ctr_drbg_random, &drbg);
		if (ret != 0) {
			mbed_err(ret, m, sizeof(m));
			fail(c, &b->key, err, errlen, "\"%s\" is not a usable "
			    "private key (PEM or DER, unencrypted): %s",
			    b->key.path, m);
			return -1;
		}
		if (mbedtls_pk_check_pair(&t->bcert.pk, &t->bkey,
		    mbedtls_ctr_drbg_random, &drbg) != 0) {
			fail(c, &b->key, err, errlen, "private key \"%s\" does "
			    "not match the certificate in \"%s\"", b->key.path,
			    b->cert.path);
			return -1;
		}
	}
	if ((t->bname = strdup(b->server_name)) == NULL ||
	    (t->bca_path = strdup(b->ca.path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ret = mbedtls_ssl_config_defaults(&t->bconf, MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0)
		goto fail;
	mbedtls_ssl_conf_min_tls_version(&t->bconf, MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_max_tls_version(&t->bconf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_ciphersuites(&t->bconf, ciphersuites);
	mbedtls_ssl_conf_groups(&t->bconf, groups);
	mbedtls_ssl_conf_sig_algs(&t->bconf, sig_algs);
	mbedtls_ssl_conf_authmode(&t->bconf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->bconf, &t->bca, NULL);
	mbedtls_ssl_conf_rng(&t->bconf, mbedtls_ctr_drbg_random, &drbg);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
	mbedtls_ssl_conf_renegotiation(&t->bconf,
	    MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
	mbedtls_ssl_conf_session_tickets(&t->bconf,
	    MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
#endif
	if (b->cert.path != NULL &&
	    (ret = mbedtls_ssl_conf_own_cert(&t->bconf, &t->bcert,
	    &t->bkey)) != 0)
		goto fail;
	return 0;

fail:
	mbed_err(ret, m, sizeof(m));
	snprintf(err, errlen, "backend TLS configuration failed: %s", m);
	return -1;
}

static size_t
ctx_len(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (sizeof(struct tlsctx) + page - 1) / page * page;
}

/*
 * A zeroed context on pages of its own, left out of core dumps: it holds
 * the ticket secret.  (The private key lives in mbedTLS's heap objects;
 * the processes are not dumpable at all: master_run, worker_run.)
 */
static struct tlsctx *
ctx_alloc(void)
{
	void *p = mmap(NULL, ctx_len(), PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, ctx_len(), MADV_DONTDUMP);
	return p;
}

struct tlsctx *
tlsctx_new(const struct cfg *c, const struct cfg_listener *li, char *err,
    size_t errlen)
{
	struct tlsctx *t;

	if ((t = ctx_alloc()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_x509_crt_init(&t->chain);
	mbedtls_x509_crt_init(&t->ca);
	mbedtls_pk_init(&t->key);
	mbedtls_x509_crl_init(&t->crl);
	mbedtls_gcm_init(&t->tkey[0].gcm);
	mbedtls_gcm_init(&t->tkey[1].gcm);
	t->verify_depth = li->verify_depth;
	t->verify_optional = li->verify_optional;
	t->crl_stale_refuse = li->crl_stale == CFG_CRL_STALE_REFUSE;
	mbedtls_ssl_config_init(&t->bconf);
	mbedtls_x509_crt_init(&t->bca);
	mbedtls_x509_crt_init(&t->bcert);
	mbedtls_pk_init(&t->bkey);
	if ((t->ca_path = strdup(li->ca.path)) == NULL ||
	    (t->cert_path = strdup(li->cert.path)) == NULL ||
	    (li->ncrl > 0 && (t->crl_path = strdup(li->crl[0].path)) == NULL)) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	{
		struct stat st;

		if (stat(li->key.path, &st) == 0)
			t->key_mode = (unsigned)st.st_mode & 07777u;
	}
	if (load_chain(c, li, t, err, errlen) != 0 ||
	    load_key(c, li, t, err, errlen) != 0 ||
	    load_ca(c, li, t, err, errlen) != 0 ||
	    load_crls(c, li, t, err, errlen) != 0 ||
	    setup_suites(li, t, err, errlen) != 0 ||
	    setup_groups(li, t, err, errlen) != 0 ||
	    setup_tickets(c, li, t, err, errlen) != 0 ||
	    setup_conf(t, li, err, errlen) != 0)
		goto err;
	if (li->mode == CFG_MODE_RELAY && li->backend.tls &&
	    setup_backend(c, li, t, err, errlen) != 0)
		goto err;
	return t;

err:
	tlsctx_free(t);
	return NULL;
}

void
tlsctx_free(struct tlsctx *t)
{
	if (t == NULL)
		return;
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_x509_crt_free(&t->chain);
	mbedtls_x509_crt_free(&t->ca);
	mbedtls_pk_free(&t->key); /* zeroizes the key */
	free(t->ca_path);
	free(t->cert_path);
	free(t->crl_path);
	free(t->ticket_name);
	free(t->ca_sha256);
	mbedtls_gcm_free(&t->tkey[0].gcm);
	mbedtls_gcm_free(&t->tkey[1].gcm);
	free(t->crl_ca);
	mbedtls_x509_crl_free(&t->crl);
	free(t->suites);
	free(t->groups);
	mbedtls_ssl_config_free(&t->bconf);
	mbedtls_x509_crt_free(&t->bca);
	mbedtls_x509_crt_free(&t->bcert);
	mbedtls_pk_free(&t->bkey);
	free(t->bname);
	free(t->bca_path);
	mbedtls_platform_zeroize(t, sizeof(*t));
	(void)munmap(t, ctx_len());
}

void
tlsctx_cert_summary(const struct tlsctx *t, char *buf, size_t len)
{
	char subj[256];

	if (mbedtls_x509_dn_gets(subj, sizeof(subj), &t->chain.subject) < 0)
		snprintf(subj, sizeof(subj), "?");
	snprintf(buf, len, "%s, expires %04d-%02d-%02d", subj,
	    t->chain.valid_to.year, t->chain.valid_to.mon,
	    t->chain.valid_to.day);
}

static int64_t
unix_time(const mbedtls_x509_time *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = t->year - 1900;
	tm.tm_mon = t->mon - 1;
	tm.tm_mday = t->day;
	tm.tm_hour = t->hour;
	tm.tm_min = t->min;
	tm.tm_sec = t->sec;
	return (int64_t)timegm(&tm);
}

static size_t
add_crt_dates(const mbedtls_x509_crt *crt, const char *what,
    const char *path, struct tlsctx_date *out, size_t n, size_t max,
    int first_only)
{
	for (; crt != NULL && crt->raw.len > 0 && n < max; crt = crt->next) {
		out[n].what = what;
		out[n].path = path;
		if (mbedtls_x509_dn_gets(out[n].name, sizeof(out[n].name),
		    &crt->subject) < 0)
			snprintf(out[n].name, sizeof(out[n].name), "?");
		out[n].when = unix_time(&crt->valid_to);
		n++;
		if (first_only)
			break;
	}
	return n;
}

size_t
tlsctx_dates(const struct tlsctx *t, struct tlsctx_date *out, size_t max)
{
	const mbedtls_x509_crl *crl;
	size_t n = 0;

	n = add_crt_dates(&t->chain, "server certificate", t->cert_path, out,
	    n, max, 1);
	n = add_crt_dates(&t->ca, "CA", t->ca_path, out, n, max, 0);
	for (crl = t->has_crl ? &t->crl : NULL; crl != NULL &&
	    crl->raw.len > 0 && n < max; crl = crl->next) {
		out[n].what = "CRL";
		out[n].path = t->crl_path;
		if (mbedtls_x509_dn_gets(out[n].name, sizeof(out[n].name),
		    &crl->issuer) < 0)
			snprintf(out[n].name, sizeof(out[n].name), "?");
		out[n].when = unix_time(&crl->next_update);
		n++;
	}
	if (t->has_backend) {
		n = add_crt_dates(&t->bca, "backend CA", t->bca_path, out, n,
		    max, 0);
		n = add_crt_dates(&t->bcert, "backend client certificate",
		    t->bca_path, out, n, max, 1);
	}
	return n;
}

size_t
tlsctx_ca_crls(const struct tlsctx *t, struct tlsctx_ca_crl *out,
    size_t max)
{
	const mbedtls_x509_crt *ca;
	const mbedtls_x509_crl *crl;
	size_t n = 0;

	for (ca = &t->ca; ca != NULL && ca->raw.len > 0; ca = ca->next, n++) {
		if (n >= max)
			continue;
		if (mbedtls_x509_dn_gets(out[n].name, sizeof(out[n].name),
		    &ca->subject) < 0)
			snprintf(out[n].name, sizeof(out[n].name), "?");
		out[n].has_crl = 0;
		/* By name, as chain verification picks a CA's CRLs (load_crls
		 * made sure a CRL in a CA's name carries its signature). */
		for (crl = t->has_crl ? &t->crl : NULL; crl != NULL &&
		    !out[n].has_crl; crl = crl->next)
			out[n].has_crl = crl->version != 0 &&
			    dn_eq(&crl->issuer, &ca->subject);
	}
	return n;
}

unsigned
tlsctx_key_mode(const struct tlsctx *t)
{
	return t->key_mode;
}

const char *
tlsctx_library_version(void)
{
	return MBEDTLS_VERSION_STRING;
}

const char *
tlsctx_ticket_clock(void)
{
#if defined(MBEDTLS_PLATFORM_MS_TIME_ALT)
	return "wall clock (TLS 1.3 sessions resume across hosts sharing "
	    "ticket_key_file)";
#else
	return "boot time (TLS 1.3 sessions resume only on the host that "
	    "issued them)";
#endif
}
