/* Unit tests for src/crypto: known answers from published vectors (GCM spec test cases
 * 13-16 as submitted to NIST, RFC 5869, RFC 4231, RFC 8032, RFC 9106), AES-SIV against an
 * independent implementation (python3-cryptography's AESSIV), negative tests for every
 * open and verify, and the development PKI (what `coffred --dev` serves). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "crypto/crypto.h"

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = strlen(h) / 2;
	assert_true(n <= cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void tohex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		(void)snprintf(out + 2 * i, 3, "%02x", p[i]);
}

#define SP(p, n) ((struct cf_span){(p), (n)})

struct gcm_case {
	const char *key, *iv, *pt, *aad, *ct, *tag;
};

static void test_gcm_known_answers(void **state)
{
	(void)state;
	/* GCM specification test cases 13-16 (AES-256). */
	static const char *const k15 =
	        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
	static const char *const p15 =
	        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
	        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
	static const char *const p16 =
	        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
	        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
	static const struct gcm_case cases[] = {
	        {"0000000000000000000000000000000000000000000000000000000000000000",
	         "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
	        {"0000000000000000000000000000000000000000000000000000000000000000",
	         "000000000000000000000000", "00000000000000000000000000000000", "",
	         "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
	        {k15, "cafebabefacedbaddecaf888", p15, "",
	         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
	         "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
	         "b094dac5d93471bdec1a502270e3cc6c"},
	        {k15, "cafebabefacedbaddecaf888", p16, "feedfacedeadbeeffeedfacedeadbeefabaddad2",
	         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
	         "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
	         "76fc6ece0f4e1768cddf8853bb2d551b"},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		uint8_t key[32], iv[12], pt[64], aad[32], want[80], out[80], back[64];
		unhex(cases[c].key, key, sizeof key);
		unhex(cases[c].iv, iv, sizeof iv);
		size_t np = unhex(cases[c].pt, pt, sizeof pt);
		size_t na = unhex(cases[c].aad, aad, sizeof aad);
		size_t nc = unhex(cases[c].ct, want, sizeof want);
		nc += unhex(cases[c].tag, want + nc, sizeof want - nc);
		assert_int_equal(cf_gcm_seal(key, iv, SP(aad, na), SP(pt, np), out), CF_OK);
		assert_memory_equal(out, want, nc);
		assert_int_equal(cf_gcm_open(key, iv, SP(aad, na), SP(out, nc), back), CF_OK);
		if (np)
			assert_memory_equal(back, pt, np);
		/* negative: every byte of the sealed output, and the associated data */
		for (size_t i = 0; i < nc; i++) {
			out[i] ^= 0x01;
			assert_int_equal(cf_gcm_open(key, iv, SP(aad, na), SP(out, nc), back),
			                 CF_E_INTEGRITY);
			out[i] ^= 0x01;
		}
		uint8_t other_aad[] = "other";
		assert_int_equal(cf_gcm_open(key, iv, SP(other_aad, 5), SP(out, nc), back),
		                 CF_E_INTEGRITY);
		key[0] ^= 1;
		assert_int_equal(cf_gcm_open(key, iv, SP(aad, na), SP(out, nc), back),
		                 CF_E_INTEGRITY);
		key[0] ^= 1;
		iv[11] ^= 1;
		assert_int_equal(cf_gcm_open(key, iv, SP(aad, na), SP(out, nc), back),
		                 CF_E_INTEGRITY);
		iv[11] ^= 1;
		/* truncation: shorter than a tag, and a tag short by one */
		assert_int_equal(cf_gcm_open(key, iv, SP(aad, na), SP(out, 15), back),
		                 CF_E_INTEGRITY);
		assert_int_equal(cf_gcm_open(key, iv, SP(aad, na), SP(out, nc - 1), back),
		                 CF_E_INTEGRITY);
	}
}

static void test_siv_against_python(void **state)
{
	(void)state;
	/* The same random inputs through ours and through python3-cryptography's AESSIV,
	 * whose associated data list is [ad, label]: RFC 5297's S2V with the label where
	 * the nonce goes. */
	if (access("/usr/bin/python3", X_OK) != 0)
		fail_msg("/usr/bin/python3 is missing (scripts/deps.sh installs "
		         "python3-cryptography)");
	for (int round = 0; round < 8; round++) {
		uint8_t key[64], ad[40], pt[101], out[117], back[101];
		/* Debian's python3-cryptography refuses an empty plaintext: at least one byte */
		size_t nad = (size_t)round * 5, npt = (size_t)round * 13 + 1;
		assert_int_equal(cf_crypto_random(key, sizeof key), CF_OK);
		assert_int_equal(cf_crypto_random(ad, sizeof ad), CF_OK);
		assert_int_equal(cf_crypto_random(pt, sizeof pt), CF_OK);
		static const uint8_t label[] = "coffre/test/v1";
		assert_int_equal(cf_siv_seal(key, SP(label, sizeof label - 1), SP(ad, nad),
		                             SP(pt, npt), out),
		                 CF_OK);
		char hk[129], ha[81], hp[203], hl[64], ours[235], cmd[1200], theirs[300] = "";
		tohex(key, 64, hk);
		tohex(ad, nad, ha);
		ha[2 * nad] = '\0';
		tohex(pt, npt, hp);
		hp[2 * npt] = '\0';
		tohex(label, sizeof label - 1, hl);
		tohex(out, npt + 16, ours);
		(void)snprintf(
		        cmd, sizeof cmd,
		        "/usr/bin/python3 -c 'from cryptography.hazmat.primitives.ciphers.aead "
		        "import AESSIV; b=bytes.fromhex; "
		        "print(AESSIV(b(\"%s\")).encrypt(b(\"%s\"), [b(\"%s\"), "
		        "b(\"%s\")]).hex())'",
		        hk, hp, ha, hl);
		FILE *f = popen(cmd, "r");
		assert_non_null(f);
		if (!fgets(theirs, sizeof theirs, f))
			theirs[0] = '\0';
		int rc = pclose(f);
		assert_int_equal(rc, 0);
		theirs[strcspn(theirs, "\n")] = '\0';
		assert_string_equal(ours, theirs);
		/* deterministic, and it opens */
		uint8_t again[117];
		assert_int_equal(cf_siv_seal(key, SP(label, sizeof label - 1), SP(ad, nad),
		                             SP(pt, npt), again),
		                 CF_OK);
		assert_memory_equal(again, out, npt + 16);
		assert_int_equal(cf_siv_open(key, SP(label, sizeof label - 1), SP(ad, nad),
		                             SP(out, npt + 16), back),
		                 CF_OK);
		if (npt)
			assert_memory_equal(back, pt, npt);
		/* negative: tampered tag or body, other ad, other label, truncated */
		out[0] ^= 0x80;
		assert_int_equal(cf_siv_open(key, SP(label, sizeof label - 1), SP(ad, nad),
		                             SP(out, npt + 16), back),
		                 CF_E_INTEGRITY);
		out[0] ^= 0x80;
		if (npt) {
			out[16 + npt - 1] ^= 1;
			assert_int_equal(cf_siv_open(key, SP(label, sizeof label - 1), SP(ad, nad),
			                             SP(out, npt + 16), back),
			                 CF_E_INTEGRITY);
			out[16 + npt - 1] ^= 1;
		}
		static const uint8_t other[] = "coffre/other/v1";
		assert_int_equal(cf_siv_open(key, SP(other, sizeof other - 1), SP(ad, nad),
		                             SP(out, npt + 16), back),
		                 CF_E_INTEGRITY);
		assert_int_equal(cf_siv_open(key, SP(label, sizeof label - 1), SP(ad, nad + 1),
		                             SP(out, npt + 16), back),
		                 CF_E_INTEGRITY);
		assert_int_equal(cf_siv_open(key, SP(label, sizeof label - 1), SP(ad, nad),
		                             SP(out, 10), back),
		                 CF_E_INTEGRITY);
	}
	uint8_t key[64] = {0}, out[32], back[1];
	assert_int_equal(
	        cf_siv_seal(key, SP(NULL, 0), SP(NULL, 0), SP((const uint8_t *)"x", 1), out),
	        CF_E_INVALID);
	/* an empty plaintext seals to the SIV alone, and opens */
	static const uint8_t l[] = "coffre/test/v1";
	assert_int_equal(cf_siv_seal(key, SP(l, sizeof l - 1), SP(NULL, 0), SP(NULL, 0), out),
	                 CF_OK);
	assert_int_equal(cf_siv_open(key, SP(l, sizeof l - 1), SP(NULL, 0), SP(out, 16), back),
	                 CF_OK);
}

static void test_hmac_hkdf_known_answers(void **state)
{
	(void)state;
	uint8_t mac[32], want[64], key[32];
	/* RFC 4231 test cases 1 and 2 */
	memset(key, 0x0b, 20);
	assert_int_equal(cf_hmac_sha256(SP(key, 20), SP((const uint8_t *)"Hi There", 8), mac),
	                 CF_OK);
	unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want,
	      sizeof want);
	assert_memory_equal(mac, want, 32);
	assert_int_equal(cf_hmac_sha256(SP((const uint8_t *)"Jefe", 4),
	                                SP((const uint8_t *)"what do ya want for nothing?", 28),
	                                mac),
	                 CF_OK);
	unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want,
	      sizeof want);
	assert_memory_equal(mac, want, 32);
	/* RFC 5869 test case 1 */
	uint8_t ikm[22], salt[13], info[10], okm[42];
	memset(ikm, 0x0b, sizeof ikm);
	unhex("000102030405060708090a0b0c", salt, sizeof salt);
	unhex("f0f1f2f3f4f5f6f7f8f9", info, sizeof info);
	assert_int_equal(cf_hkdf_sha256(SP(ikm, 22), SP(salt, 13), SP(info, 10), okm, 42), CF_OK);
	unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b88718586"
	      "5",
	      want, sizeof want);
	assert_memory_equal(okm, want, 42);
	/* RFC 5869 test case 3: no salt, no info */
	assert_int_equal(cf_hkdf_sha256(SP(ikm, 22), SP(NULL, 0), SP(NULL, 0), okm, 42), CF_OK);
	unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c"
	      "8",
	      want, sizeof want);
	assert_memory_equal(okm, want, 42);
	assert_int_equal(cf_hkdf_sha256(SP(ikm, 22), SP(NULL, 0), SP(NULL, 0), okm, 0),
	                 CF_E_INVALID);
}

static void test_ed25519_known_answers(void **state)
{
	(void)state;
	/* RFC 8032 section 7.1, tests 1 and 2 */
	static const char *const vec[][4] = {
	        {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
	         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
	         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
	         "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
	        {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
	         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
	         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
	         "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	};
	for (size_t i = 0; i < 2; i++) {
		uint8_t seed[32], pub[32], msg[4], want[64], sig[64];
		unhex(vec[i][0], seed, sizeof seed);
		unhex(vec[i][1], pub, sizeof pub);
		size_t nm = unhex(vec[i][2], msg, sizeof msg);
		unhex(vec[i][3], want, sizeof want);
		assert_int_equal(cf_ed25519_sign(seed, pub, SP(msg, nm), sig), CF_OK);
		assert_memory_equal(sig, want, 64);
		assert_int_equal(cf_ed25519_verify(pub, SP(msg, nm), sig), CF_OK);
		sig[10] ^= 1;
		assert_int_equal(cf_ed25519_verify(pub, SP(msg, nm), sig), CF_E_INTEGRITY);
		sig[10] ^= 1;
		uint8_t other[1] = {0x73};
		assert_int_equal(cf_ed25519_verify(pub, SP(other, 1), sig), CF_E_INTEGRITY);
	}
	uint8_t seed[32], pub[32], sig[64];
	assert_int_equal(cf_ed25519_keypair(seed, pub), CF_OK);
	assert_int_equal(cf_ed25519_sign(seed, pub, SP((const uint8_t *)"m", 1), sig), CF_OK);
	assert_int_equal(cf_ed25519_verify(pub, SP((const uint8_t *)"m", 1), sig), CF_OK);
}

static void test_argon2id(void **state)
{
	(void)state;
	/* RFC 9106 section 5.3 */
	uint8_t pwd[32], salt[16], secret[8], ad[12], tag[32], want[32];
	memset(pwd, 1, sizeof pwd);
	memset(salt, 2, sizeof salt);
	memset(secret, 3, sizeof secret);
	memset(ad, 4, sizeof ad);
	struct cf_argon2_params rfc = {.m_kib = 32, .t = 3, .p = 4};
	assert_int_equal(cf_argon2id_raw(SP(pwd, 32), SP(salt, 16), SP(secret, 8), SP(ad, 12), &rfc,
	                                 tag, 32),
	                 CF_OK);
	unhex("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659", want,
	      sizeof want);
	assert_memory_equal(tag, want, 32);
	/* PHC strings: a real password hash, verify, wrong password, rehash detection */
	struct cf_argon2_params small = {.m_kib = 1024, .t = 1, .p = 1};
	char phc[160], phc2[160];
	assert_int_equal(
	        cf_argon2id_hash(SP((const uint8_t *)"correct horse", 13), &small, phc, sizeof phc),
	        CF_OK);
	assert_true(strncmp(phc, "$argon2id$v=19$m=1024,t=1,p=1$", 30) == 0);
	assert_int_equal(cf_argon2id_hash(SP((const uint8_t *)"correct horse", 13), &small, phc2,
	                                  sizeof phc2),
	                 CF_OK);
	assert_string_not_equal(phc, phc2); /* salted */
	assert_int_equal(cf_argon2id_verify(phc, SP((const uint8_t *)"correct horse", 13)), CF_OK);
	assert_int_equal(cf_argon2id_verify(phc, SP((const uint8_t *)"correct horsf", 13)),
	                 CF_E_INTEGRITY);
	assert_int_equal(cf_argon2id_verify("$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
	                                    SP((const uint8_t *)"x", 1)),
	                 CF_E_INVALID);
	assert_int_equal(cf_argon2id_verify("$argon2id$garbage", SP((const uint8_t *)"x", 1)),
	                 CF_E_INVALID);
	assert_false(cf_argon2id_needs_rehash(phc, &small));
	assert_true(cf_argon2id_needs_rehash(phc, &cf_argon2_defaults));
	assert_true(cf_argon2id_needs_rehash("nonsense", &small));
	assert_int_equal(cf_argon2id_hash(SP((const uint8_t *)"x", 1), &small, phc, 20),
	                 CF_E_INVALID);
}

static gnutls_x509_crt_t load_crt(const char *dir, const char *name)
{
	char p[256];
	(void)snprintf(p, sizeof p, "%s/%s", dir, name);
	struct cf_buf b;
	assert_int_equal(cf_file_read(p, 65536, &b), CF_OK);
	gnutls_x509_crt_t c;
	gnutls_x509_crt_init(&c);
	gnutls_datum_t d = {b.data, (unsigned)b.len};
	assert_int_equal(gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM), 0);
	cf_buf_free(&b);
	return c;
}

static mode_t mode_of(const char *dir, const char *name)
{
	char p[256];
	struct stat st;
	(void)snprintf(p, sizeof p, "%s/%s", dir, name);
	assert_int_equal(stat(p, &st), 0);
	return st.st_mode & 0777;
}

static void test_dev_pki(void **state)
{
	(void)state;
	char dir[] = "/tmp/cf_pki_XXXXXX";
	assert_non_null(mkdtemp(dir));
	bool created = false;
	assert_int_equal(cf_crypto_dev_pki(dir, &created), CF_OK);
	assert_true(created);
	assert_int_equal(mode_of(dir, "ca.key"), 0600);
	assert_int_equal(mode_of(dir, "server.key"), 0600);

	gnutls_x509_crt_t ca = load_crt(dir, "ca.pem"), leaf = load_crt(dir, "server.pem");
	unsigned status = 1;
	assert_int_equal(gnutls_x509_crt_verify(leaf, &ca, 1, 0, &status), 0);
	assert_int_equal(status, 0);
	/* ECDSA P-256 */
	unsigned bits = 0;
	assert_int_equal(gnutls_x509_crt_get_pk_algorithm(leaf, &bits), GNUTLS_PK_ECDSA);
	/* names a local client will use */
	assert_true(gnutls_x509_crt_check_hostname(leaf, "localhost"));
	static const uint8_t lo4[4] = {127, 0, 0, 1};
	static const uint8_t lo6[16] = {[15] = 1};
	assert_true(gnutls_x509_crt_check_ip(leaf, lo4, 4, 0));
	assert_true(gnutls_x509_crt_check_ip(leaf, lo6, 16, 0));
	assert_false(gnutls_x509_crt_check_hostname(leaf, "example.com"));
	/* the leaf is for servers only, and not a CA */
	unsigned critical = 0;
	assert_int_equal(gnutls_x509_crt_get_ca_status(leaf, &critical), 0);
	assert_true(gnutls_x509_crt_get_ca_status(ca, &critical) > 0);
	/* the leaf names the CA's CRL, which exists and is signed by the CA */
	char uri[512];
	size_t uri_len = sizeof uri - 1;
	/* returns the name's type */
	assert_int_equal(gnutls_x509_crt_get_crl_dist_points(leaf, 0, uri, &uri_len, NULL, NULL),
	                 GNUTLS_SAN_URI);
	uri[uri_len] = '\0';
	assert_true(strncmp(uri, "file:///", 8) == 0);
	struct cf_buf cb;
	assert_int_equal(cf_file_read(uri + 7, 65536, &cb), CF_OK);
	gnutls_x509_crl_t crl;
	gnutls_x509_crl_init(&crl);
	gnutls_datum_t cd = {cb.data, (unsigned)cb.len};
	assert_int_equal(gnutls_x509_crl_import(crl, &cd, GNUTLS_X509_FMT_DER), 0);
	assert_int_equal(gnutls_x509_crl_verify(crl, &ca, 1, 0, &status), 0);
	assert_int_equal(status, 0);
	assert_true(gnutls_x509_crl_get_next_update(crl) > time(NULL));
	gnutls_x509_crl_deinit(crl);
	cf_buf_free(&cb);
	time_t exp = gnutls_x509_crt_get_expiration_time(leaf);
	assert_true(exp > time(NULL) + 300 * 86400 && exp < time(NULL) + 398 * 86400);
	gnutls_x509_crt_deinit(leaf);

	/* a second start keeps what is there */
	assert_int_equal(cf_crypto_dev_pki(dir, &created), CF_OK);
	assert_false(created);

	/* a missing leaf is remade under the same CA */
	char p[256];
	(void)snprintf(p, sizeof p, "%s/server.pem", dir);
	unlink(p);
	assert_int_equal(cf_crypto_dev_pki(dir, &created), CF_OK);
	assert_true(created);
	leaf = load_crt(dir, "server.pem");
	assert_int_equal(gnutls_x509_crt_verify(leaf, &ca, 1, 0, &status), 0);
	assert_int_equal(status, 0);
	gnutls_x509_crt_deinit(leaf);

	/* a corrupt key is an error, not a silent regeneration */
	(void)snprintf(p, sizeof p, "%s/ca.key", dir);
	assert_int_equal(cf_file_write_atomic(p, "garbage", 7, 0600), CF_OK);
	assert_int_equal(cf_crypto_dev_pki(dir, &created), CF_E_CRYPTO);
	gnutls_x509_crt_deinit(ca);

	static const char *const files[] = {"ca.pem", "ca.key", "server.pem", "server.key",
	                                    "ca.crl"};
	for (size_t i = 0; i < 5; i++) {
		(void)snprintf(p, sizeof p, "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_gcm_known_answers),
	        cmocka_unit_test(test_siv_against_python),
	        cmocka_unit_test(test_hmac_hkdf_known_answers),
	        cmocka_unit_test(test_ed25519_known_answers),
	        cmocka_unit_test(test_argon2id),
	        cmocka_unit_test(test_dev_pki),
	};
	return cmocka_run_group_tests_name("crypto", tests, NULL, NULL);
}
