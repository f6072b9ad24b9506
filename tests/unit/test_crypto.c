/* Unit tests for src/crypto: the development PKI (what `coffred --dev` serves). */
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
	        cmocka_unit_test(test_dev_pki),
	};
	return cmocka_run_group_tests_name("crypto", tests, NULL, NULL);
}
