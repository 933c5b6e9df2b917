/*
 * fuzz_san: libFuzzer driver for the certificate name walk,
 * tlssess_crt_identity() (subject CN and OU, SAN DNS/URI/email through
 * mbedTLS's SAN parser, SPKI hash), then identity_describe() and
 * identity_match() on the result.  Two modes, by the first byte:
 *
 *   even (a DER certificate starts with 0x30): the bytes go to
 *   mbedtls_x509_crt_parse_der() and, if they parse, to the walk;
 *
 *   odd: a certificate is assembled in memory from records
 *   [tag][len][len bytes] after that byte, so mutations reach the walk
 *   without having to keep a whole certificate's DER consistent: tag
 *   0x80-0xff is one SubjectAltName GeneralName with that tag (what
 *   mbedtls_x509_parse_subject_alt_name() gets); 0x01 a subject CN value,
 *   0x02 an OU value, 0x03 another attribute; 0x04 the SubjectPublicKeyInfo.
 *
 * Seeds: DER certificates from the test PKI and a few assembled ones
 * (fuzz/corpus/san).  mbedTLS itself is not instrumented (the bundled static
 * library): ASan and UBSan watch our side of every buffer it hands us.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "identity.h"
#include "tlssess.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_san: %s\n", what);
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (psa_crypto_init() != PSA_SUCCESS)
		fail("psa_crypto_init");
	return 0;
}

/* Every kept name is a C string of its own; counts are bounded. */
static void
check_names(char *const *v, size_t n)
{
	size_t i;

	if (n > IDENTITY_MAX_NAMES)
		fail("more names than IDENTITY_MAX_NAMES");
	for (i = 0; i < n; i++)
		if (v[i] == NULL)
			fail("NULL name");
		else
			(void)strlen(v[i]); /* ASan: inside its allocation */
}

#define MAX_PARTS 48

/* Build ${crt} from the records of ${data} (odd first byte, skipped). */
static void
assemble(mbedtls_x509_crt *crt, mbedtls_x509_sequence *sans,
    mbedtls_x509_name *names, const uint8_t *data, size_t size)
{
	static const unsigned char oid_cn[] = { 0x55, 0x04, 0x03 };
	static const unsigned char oid_ou[] = { 0x55, 0x04, 0x0b };
	static const unsigned char oid_o[] = { 0x55, 0x04, 0x0a };
	size_t off = 1, nsan = 0, nname = 0;

	memset(crt, 0, sizeof(*crt));
	memset(sans, 0, MAX_PARTS * sizeof(*sans));
	memset(names, 0, MAX_PARTS * sizeof(*names));
	while (off + 2 <= size) {
		unsigned tag = data[off];
		size_t len = data[off + 1];
		unsigned char *p = (unsigned char *)(uintptr_t)(data + off + 2);

		off += 2;
		if (len > size - off)
			len = size - off;
		off += len;
		if (tag >= 0x80 && nsan < MAX_PARTS) {
			mbedtls_x509_sequence *q = nsan == 0 ?
			    &crt->subject_alt_names : &sans[nsan];

			q->buf.tag = (int)tag;
			q->buf.p = p;
			q->buf.len = len;
			if (nsan > 0) {
				mbedtls_x509_sequence *prev = nsan == 1 ?
				    &crt->subject_alt_names : &sans[nsan - 1];

				prev->next = q;
			}
			nsan++;
		} else if (tag >= 1 && tag <= 3 && nname < MAX_PARTS) {
			mbedtls_x509_name *n = nname == 0 ? &crt->subject :
			    &names[nname];
			const unsigned char *oid = tag == 1 ? oid_cn : tag == 2 ?
			    oid_ou : oid_o;

			n->oid.tag = MBEDTLS_ASN1_OID;
			n->oid.p = (unsigned char *)(uintptr_t)oid;
			n->oid.len = 3;
			n->val.tag = MBEDTLS_ASN1_UTF8_STRING;
			n->val.p = p;
			n->val.len = len;
			if (nname > 0) {
				mbedtls_x509_name *prev = nname == 1 ?
				    &crt->subject : &names[nname - 1];

				prev->next = n;
			}
			nname++;
		} else if (tag == 4) {
			crt->pk_raw.p = p;
			crt->pk_raw.len = len;
		}
	}
}

static void
walk(const mbedtls_x509_crt *crt)
{
	static char *cn[] = { "test-client" }, *ou[] = { "ops" };
	static char *dns[] = { "*.svc.example", "client.test.example" };
	static char *uri[] = { "spiffe://prod/ns/web/*" };
	static char *email[] = { "@example.com" };
	static const uint8_t pin[1][IDENTITY_SPKI_LEN] = { { 0 } };
	const struct identity_allow allow = {
		.cn = cn, .ncn = 1, .ou = ou, .nou = 1, .dns = dns, .ndns = 2,
		.uri = uri, .nuri = 1, .email = email, .nemail = 1,
		.spki = pin, .nspki = 1,
	};
	struct identity id;
	char buf[600], rule[160];
	size_t len;

	tlssess_crt_identity(crt, &id);
	check_names(id.cn, id.ncn);
	check_names(id.ou, id.nou);
	check_names(id.dns, id.ndns);
	check_names(id.uri, id.nuri);
	check_names(id.email, id.nemail);
	for (len = 0; len < sizeof(buf); len += len < 16 ? 1 : 97) {
		memset(buf, 0x7e, sizeof(buf));
		identity_describe(&id, buf, len);
		if (len > 0 && memchr(buf, '\0', len) == NULL)
			fail("description not terminated");
		if (len < sizeof(buf) && buf[len] != 0x7e)
			fail("description overran its buffer");
	}
	(void)identity_match(&allow, &id, rule, sizeof(rule));
	identity_clear(&id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static mbedtls_x509_sequence sans[MAX_PARTS];
	static mbedtls_x509_name names[MAX_PARTS];
	mbedtls_x509_crt crt;
	struct identity id;

	if (size > 0 && (data[0] & 1)) {
		assemble(&crt, sans, names, data, size);
		walk(&crt); /* nothing to free: it all points into data */
		return 0;
	}
	mbedtls_x509_crt_init(&crt);
	if (mbedtls_x509_crt_parse_der(&crt, data, size) == 0)
		walk(&crt);
	mbedtls_x509_crt_free(&crt);
	tlssess_crt_identity(NULL, &id);
	identity_clear(&id);
	return 0;
}
