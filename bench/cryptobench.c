/*
 * cryptobench: the crypto bound of one tls-echod worker, measured with the
 * same mbedTLS build (the bundled one, with scripts/mbedtls-user-config.h)
 * and on the same CPU the daemon will get.
 *
 * Per full mTLS handshake a server does: one ECDHE (key generation + shared
 * secret), one ECDSA P-256 signature (ServerKeyExchange / CertificateVerify)
 * and two ECDSA P-256 verifications (the client certificate by the CA, the
 * client's CertificateVerify).  Everything else (hashes, key schedule, record
 * crypto, parsing) is left out, so the bound is an upper one.
 *   TLS 1.2 ECDHE runs through the legacy ECDH API (Everest X25519 when the
 *   build enables it); TLS 1.3 key exchange always goes through PSA.
 * Per byte an echo or relay server decrypts each byte once and encrypts it
 * once: the bound in MB/s each way is 16 KiB / (decrypt + encrypt of one
 * 16 KiB record).
 * TLS 1.2 ticket resumption (tls-echod's own tickets): HMAC-SHA-256 key
 * derivation + AES-256-GCM decrypt of the ticket, parsing the client
 * certificate it carries (with --cert), three TLS-PRF calls (the 256-byte key
 * block mbedTLS 3.6 always expands, and the two Finished), and a new ticket
 * (key derivation + encrypt).
 *
 * usage: cryptobench [--seconds S] [--cert CLIENT_CERT.pem]
 * Output: key=value lines on stdout, a readable summary on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/build_info.h>
#include <mbedtls/cipher.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

static mbedtls_ctr_drbg_context drbg;
static double op_seconds = 0.5;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
check(int ret, const char *what)
{
	if (ret != 0) {
		fprintf(stderr, "cryptobench: %s failed: -0x%04x\n", what,
		    (unsigned)-ret);
		exit(1);
	}
}

/* Run fn until op_seconds have passed (at least 3 times); µs per call. */
#define TIME_OP(result, body)                                           \
	do {                                                            \
		double t0_ = now_s(), t_;                               \
		long n_ = 0;                                            \
		do {                                                    \
			body;                                           \
			n_++;                                           \
			t_ = now_s() - t0_;                             \
		} while (t_ < op_seconds || n_ < 3);                    \
		(result) = t_ * 1e6 / (double)n_;                       \
	} while (0)

/* --- ECDHE, legacy API (TLS 1.2) -------------------------------------------- */

static double
ecdhe_legacy(mbedtls_ecp_group_id gid)
{
	mbedtls_ecdh_context srv, cli;
	unsigned char params[256], pub[256], secret[66];
	size_t plen, publen, slen;
	const unsigned char *p;
	double us;

	/* a client public value to agree with, made once */
	mbedtls_ecdh_init(&srv);
	mbedtls_ecdh_init(&cli);
	check(mbedtls_ecdh_setup(&srv, gid), "ecdh_setup");
	check(mbedtls_ecdh_make_params(&srv, &plen, params, sizeof(params),
	    mbedtls_ctr_drbg_random, &drbg), "ecdh_make_params");
	p = params;
	check(mbedtls_ecdh_read_params(&cli, &p, params + plen), "ecdh_read_params");
	check(mbedtls_ecdh_make_public(&cli, &publen, pub, sizeof(pub),
	    mbedtls_ctr_drbg_random, &drbg), "ecdh_make_public");
	mbedtls_ecdh_free(&srv);
	mbedtls_ecdh_free(&cli);

	TIME_OP(us, {
		mbedtls_ecdh_init(&srv);
		check(mbedtls_ecdh_setup(&srv, gid), "ecdh_setup");
		check(mbedtls_ecdh_make_params(&srv, &plen, params,
		    sizeof(params), mbedtls_ctr_drbg_random, &drbg),
		    "ecdh_make_params");
		check(mbedtls_ecdh_read_public(&srv, pub, publen),
		    "ecdh_read_public");
		check(mbedtls_ecdh_calc_secret(&srv, &slen, secret,
		    sizeof(secret), mbedtls_ctr_drbg_random, &drbg),
		    "ecdh_calc_secret");
		mbedtls_ecdh_free(&srv);
	});
	return us;
}

/* --- ECDHE, PSA (TLS 1.3) ------------------------------------------------- */

static double
ecdhe_psa(psa_ecc_family_t fam, size_t bits)
{
	psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
	psa_key_id_t peer, k;
	unsigned char peer_pub[133], pub[133], secret[66];
	size_t peer_len, len, slen;
	double us;

	psa_set_key_type(&a, PSA_KEY_TYPE_ECC_KEY_PAIR(fam));
	psa_set_key_bits(&a, bits);
	psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
	psa_set_key_algorithm(&a, PSA_ALG_ECDH);
	check((int)psa_generate_key(&a, &peer), "psa_generate_key");
	check((int)psa_export_public_key(peer, peer_pub, sizeof(peer_pub),
	    &peer_len), "psa_export_public_key");
	psa_destroy_key(peer);

	TIME_OP(us, {
		check((int)psa_generate_key(&a, &k), "psa_generate_key");
		check((int)psa_export_public_key(k, pub, sizeof(pub), &len),
		    "psa_export_public_key");
		check((int)psa_raw_key_agreement(PSA_ALG_ECDH, k, peer_pub,
		    peer_len, secret, sizeof(secret), &slen),
		    "psa_raw_key_agreement");
		psa_destroy_key(k);
	});
	return us;
}

/* --- AEAD on 16 KiB records ----------------------------------------------- */

static double
aead_mb_per_s(mbedtls_cipher_type_t type, double *enc_us, double *dec_us)
{
	static unsigned char in[16384], ct[16384 + 16], out[16384];
	unsigned char key[32] = { 1 }, iv[12] = { 2 }, ad[13] = { 3 };
	mbedtls_cipher_context_t ctx;
	const mbedtls_cipher_info_t *info = mbedtls_cipher_info_from_type(type);
	size_t olen;

	memset(in, 0x5a, sizeof(in));
	mbedtls_cipher_init(&ctx);
	check(info == NULL, "cipher_info_from_type");
	check(mbedtls_cipher_setup(&ctx, info), "cipher_setup");
	check(mbedtls_cipher_setkey(&ctx, key,
	    (int)mbedtls_cipher_info_get_key_bitlen(info), MBEDTLS_ENCRYPT),
	    "cipher_setkey");
	TIME_OP(*enc_us, check(mbedtls_cipher_auth_encrypt_ext(&ctx, iv,
	    sizeof(iv), ad, sizeof(ad), in, sizeof(in), ct, sizeof(ct), &olen,
	    16), "auth_encrypt"));
	check(mbedtls_cipher_setkey(&ctx, key,
	    (int)mbedtls_cipher_info_get_key_bitlen(info), MBEDTLS_DECRYPT),
	    "cipher_setkey");
	TIME_OP(*dec_us, check(mbedtls_cipher_auth_decrypt_ext(&ctx, iv,
	    sizeof(iv), ad, sizeof(ad), ct, sizeof(ct), out, sizeof(out), &olen,
	    16), "auth_decrypt"));
	mbedtls_cipher_free(&ctx);
	return 16384.0 / (*enc_us + *dec_us); /* bytes per µs = MB/s */
}

/* --- TLS 1.2 ticket resumption, as tls-echod does it ---------------------- */

static void
ticket_op(int encrypt, unsigned char *buf, size_t len, unsigned char *tag)
{
	static const unsigned char secret[32] = { 9 }, hdr[17] = { 4 };
	unsigned char key[32];
	mbedtls_gcm_context gcm;

	check(mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
	    secret, sizeof(secret), (const unsigned char *)"tls-echod ticket",
	    16, key), "md_hmac");
	mbedtls_gcm_init(&gcm);
	check(mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256),
	    "gcm_setkey");
	if (encrypt)
		check(mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, len,
		    hdr + 5, 12, hdr, 5, buf, buf, 16, tag), "gcm_encrypt");
	else
		check(mbedtls_gcm_auth_decrypt(&gcm, len, hdr + 5, 12, hdr, 5,
		    tag, 16, buf, buf), "gcm_decrypt");
	mbedtls_gcm_free(&gcm);
}

static double
ticket12_us(const unsigned char *der, size_t derlen)
{
	unsigned char buf[2048], tag[16], rnd[64] = { 7 }, ms[48] = { 8 }, out[256];
	size_t len = 200 + derlen; /* session + client certificate */
	double us;

	if (len > sizeof(buf))
		len = sizeof(buf);
	memset(buf, 0x33, sizeof(buf));
	ticket_op(1, buf, len, tag);
	TIME_OP(us, {
		ticket_op(0, buf, len, tag);
		if (der != NULL) {
			mbedtls_x509_crt crt;
			mbedtls_x509_crt_init(&crt);
			check(mbedtls_x509_crt_parse_der(&crt, der, derlen),
			    "x509_crt_parse_der");
			mbedtls_x509_crt_free(&crt);
		}
		/* mbedTLS 3.6 always expands a 256-byte key block */
		check(mbedtls_ssl_tls_prf(MBEDTLS_SSL_TLS_PRF_SHA256, ms,
		    sizeof(ms), "key expansion", rnd, sizeof(rnd), out, 256),
		    "tls_prf");
		check(mbedtls_ssl_tls_prf(MBEDTLS_SSL_TLS_PRF_SHA256, ms,
		    sizeof(ms), "server finished", rnd, 32, out, 12), "tls_prf");
		check(mbedtls_ssl_tls_prf(MBEDTLS_SSL_TLS_PRF_SHA256, ms,
		    sizeof(ms), "client finished", rnd, 32, out, 12), "tls_prf");
		ticket_op(1, buf, len, tag);
	});
	return us;
}

int
main(int argc, char **argv)
{
	mbedtls_entropy_context ent;
	mbedtls_pk_context pk;
	const char *cert_path = NULL;
	unsigned char hash[32] = { 1 }, sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	size_t siglen;
	double sign_us, verify_us, us;
	mbedtls_x509_crt crt;
	char ver[32];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			op_seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
			cert_path = argv[++i];
		else {
			fprintf(stderr, "usage: cryptobench [--seconds S] "
			    "[--cert CLIENT_CERT]\n");
			return 2;
		}
	}
	if (!(op_seconds > 0 && op_seconds <= 60)) {
		fprintf(stderr, "cryptobench: --seconds must be in (0, 60]\n");
		return 2;
	}

	check((int)psa_crypto_init(), "psa_crypto_init");
	mbedtls_entropy_init(&ent);
	mbedtls_ctr_drbg_init(&drbg);
	check(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent,
	    (const unsigned char *)"cryptobench", 11), "ctr_drbg_seed");

	mbedtls_version_get_string(ver);
	printf("mbedtls_version=%s\n", ver);
#if defined(MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED)
	printf("everest=1\n");
#else
	printf("everest=0\n");
#endif

	/* ECDSA P-256: the server's signature and the two verifications */
	mbedtls_pk_init(&pk);
	check(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)),
	    "pk_setup");
	check(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
	    mbedtls_ctr_drbg_random, &drbg), "ecp_gen_key");
	TIME_OP(sign_us, check(mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash,
	    sizeof(hash), sig, sizeof(sig), &siglen, mbedtls_ctr_drbg_random,
	    &drbg), "pk_sign"));
	TIME_OP(verify_us, check(mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash,
	    sizeof(hash), sig, siglen), "pk_verify"));
	mbedtls_pk_free(&pk);

	double x_leg = ecdhe_legacy(MBEDTLS_ECP_DP_CURVE25519);
	double p_leg = ecdhe_legacy(MBEDTLS_ECP_DP_SECP256R1);
	double x_psa = ecdhe_psa(PSA_ECC_FAMILY_MONTGOMERY, 255);
	double p_psa = ecdhe_psa(PSA_ECC_FAMILY_SECP_R1, 256);
	double fixed = sign_us + 2 * verify_us;

	printf("ecdsa_p256_sign_us=%.1f\n", sign_us);
	printf("ecdsa_p256_verify_us=%.1f\n", verify_us);
	printf("ecdhe_x25519_tls12_us=%.1f\n", x_leg);
	printf("ecdhe_p256_tls12_us=%.1f\n", p_leg);
	printf("ecdhe_x25519_tls13_us=%.1f\n", x_psa);
	printf("ecdhe_p256_tls13_us=%.1f\n", p_psa);
	printf("bound_hs12_x25519_per_s=%.1f\n", 1e6 / (x_leg + fixed));
	printf("bound_hs12_p256_per_s=%.1f\n", 1e6 / (p_leg + fixed));
	printf("bound_hs13_x25519_per_s=%.1f\n", 1e6 / (x_psa + fixed));
	printf("bound_hs13_p256_per_s=%.1f\n", 1e6 / (p_psa + fixed));
	fprintf(stderr, "ECDSA P-256 sign %.0f us, verify %.0f us; ECDHE X25519 "
	    "%.0f us (TLS 1.2) / %.0f us (TLS 1.3), P-256 %.0f / %.0f us\n",
	    sign_us, verify_us, x_leg, x_psa, p_leg, p_psa);
	fprintf(stderr, "full mTLS handshakes/s bound: TLS 1.2 X25519 %.0f, P-256 "
	    "%.0f; TLS 1.3 X25519 %.0f, P-256 %.0f\n", 1e6 / (x_leg + fixed),
	    1e6 / (p_leg + fixed), 1e6 / (x_psa + fixed), 1e6 / (p_psa + fixed));

	static const struct {
		mbedtls_cipher_type_t t;
		const char *name;
	} aeads[] = {
		{ MBEDTLS_CIPHER_AES_128_GCM, "aes128gcm" },
		{ MBEDTLS_CIPHER_AES_256_GCM, "aes256gcm" },
		{ MBEDTLS_CIPHER_CHACHA20_POLY1305, "chacha20poly1305" },
	};
	for (size_t i = 0; i < sizeof(aeads) / sizeof(aeads[0]); i++) {
		double enc, dec, mb = aead_mb_per_s(aeads[i].t, &enc, &dec);
		printf("%s_encrypt_16k_us=%.2f\n", aeads[i].name, enc);
		printf("%s_decrypt_16k_us=%.2f\n", aeads[i].name, dec);
		printf("bound_echo_%s_mb_per_s=%.1f\n", aeads[i].name, mb);
		fprintf(stderr, "%s: 16 KiB record encrypt %.1f us, decrypt %.1f us: "
		    "echo bound %.0f MB/s each way\n", aeads[i].name, enc, dec, mb);
	}

	/* TLS 1.2 resumption; the ticket carries the client certificate */
	unsigned char *der = NULL;
	size_t derlen = 0;
	mbedtls_x509_crt_init(&crt);
	if (cert_path != NULL) {
		check(mbedtls_x509_crt_parse_file(&crt, cert_path), "x509_crt_parse_file");
		der = crt.raw.p;
		derlen = crt.raw.len;
	}
	us = ticket12_us(der, derlen);
	printf("ticket12_resume_us=%.1f\n", us);
	printf("bound_resume12_per_s=%.1f\n", 1e6 / us);
	/* TLS 1.3 psk_dhe_ke: the same ticket work plus one PSA ECDHE */
	printf("bound_resume13_dhe_x25519_per_s=%.1f\n", 1e6 / (us + x_psa));
	printf("bound_resume13_psk_ke_per_s=%.1f\n", 1e6 / us);
	fprintf(stderr, "TLS 1.2 ticket resumption crypto %.1f us: %.0f/s bound; "
	    "TLS 1.3 psk_dhe_ke (X25519) %.0f/s\n", us, 1e6 / us, 1e6 / (us + x_psa));
	mbedtls_x509_crt_free(&crt);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&ent);
	mbedtls_psa_crypto_free();
	return 0;
}
