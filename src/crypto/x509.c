/* coffre — the development PKI, made with GnuTLS's X.509 API (no shelling out). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "crypto/crypto.h"

#define CA_DAYS (10 * 365)
/* Leaf lifetime under the 398 days browsers accept; renewed 30 days before expiry. */
#define LEAF_DAYS  365
#define RENEW_DAYS 30

#define GT(call, what)                                                                             \
	do {                                                                                       \
		int gt_rc_ = (call);                                                               \
		if (gt_rc_ < 0) {                                                                  \
			err = cf_err_fail(CF_E_CRYPTO, "%s: %s", what, gnutls_strerror(gt_rc_));   \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

static cf_err path_in(char *out, size_t cap, const char *dir, const char *name)
{
	if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap)
		return cf_err_fail(CF_E_INVALID, "path %s/%s too long", dir, name);
	return CF_OK;
}

static cf_err write_datum(const char *dir, const char *name, gnutls_datum_t *d, unsigned mode)
{
	char path[CF_PATH_MAX];
	CF_TRY(path_in(path, sizeof path, dir, name));
	return cf_file_write_atomic(path, d->data, d->size, mode);
}

/* Loads a PEM certificate and key; CF_E_NOT_FOUND when either file is missing. */
static cf_err load_pair(const char *dir, const char *cert_name, const char *key_name,
                        gnutls_x509_crt_t crt, gnutls_x509_privkey_t key)
{
	cf_err err = CF_OK;
	char path[CF_PATH_MAX];
	struct cf_buf cb = {0}, kb = {0};
	CF_TRY(path_in(path, sizeof path, dir, cert_name));
	CF_TRY(cf_file_read(path, 64 * 1024, &cb));
	CF_TRY_OUT(path_in(path, sizeof path, dir, key_name), out);
	CF_TRY_OUT(cf_file_read(path, 64 * 1024, &kb), out);
	gnutls_datum_t cd = {cb.data, (unsigned)cb.len}, kd = {kb.data, (unsigned)kb.len};
	GT(gnutls_x509_crt_import(crt, &cd, GNUTLS_X509_FMT_PEM), "development certificate");
	GT(gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0), "development key");
out:
	cf_buf_free(&cb);
	if (kb.data)
		cf_wipe(kb.data, kb.len);
	cf_buf_free(&kb);
	return err;
}

static cf_err new_key(gnutls_x509_privkey_t *key)
{
	cf_err err = CF_OK;
	GT(gnutls_x509_privkey_init(key), "key init");
	GT(gnutls_x509_privkey_generate2(*key, GNUTLS_PK_ECDSA,
	                                 GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL,
	                                 0),
	   "ECDSA P-256 key generation");
out:
	return err;
}

static cf_err cert_common(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, const char *dn,
                          unsigned days)
{
	cf_err err = CF_OK;
	uint8_t serial[16];
	GT(gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial), "serial");
	serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x01); /* positive, full length */
	time_t now = time(NULL);
	GT(gnutls_x509_crt_set_version(crt, 3), "version");
	GT(gnutls_x509_crt_set_serial(crt, serial, sizeof serial), "serial");
	GT(gnutls_x509_crt_set_activation_time(crt, now - 300), "activation time");
	GT(gnutls_x509_crt_set_expiration_time(crt, now + (time_t)days * 86400), "expiry");
	const char *errpos = NULL;
	GT(gnutls_x509_crt_set_dn(crt, dn, &errpos), "subject");
	GT(gnutls_x509_crt_set_key(crt, key), "public key");
	uint8_t kid[64];
	size_t kid_len = sizeof kid;
	GT(gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, kid, &kid_len), "key id");
	GT(gnutls_x509_crt_set_subject_key_id(crt, kid, kid_len), "subject key id");
out:
	return err;
}

static cf_err make_ca(const char *dir)
{
	cf_err err = CF_OK;
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t pem = {0}, kpem = {0};
	CF_TRY_OUT(new_key(&key), out);
	GT(gnutls_x509_crt_init(&crt), "certificate init");
	CF_TRY_OUT(cert_common(crt, key,
	                       "CN=coffre development CA,O=coffre development (NOT FOR PRODUCTION)",
	                       CA_DAYS),
	           out);
	GT(gnutls_x509_crt_set_basic_constraints(crt, 1, 0), "basic constraints");
	GT(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN),
	   "key usage");
	GT(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), "self-signature");
	GT(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem), "export");
	GT(gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN,
	                                     &kpem),
	   "key export");
	CF_TRY_OUT(write_datum(dir, CF_DEV_CA_KEY, &kpem, 0600), out);
	CF_TRY_OUT(write_datum(dir, CF_DEV_CA_CERT, &pem, 0644), out);
out:
	if (kpem.data) {
		gnutls_memset(kpem.data, 0, kpem.size);
		gnutls_free(kpem.data);
	}
	gnutls_free(pem.data);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (key)
		gnutls_x509_privkey_deinit(key);
	return err;
}

/* The CA's certificate revocation list, re-signed at every start (so it never goes
 * stale while the server runs in development), at a file:// URI the leaf names. */
static cf_err sign_crl(const char *dir, gnutls_x509_crt_t ca, gnutls_x509_privkey_t ca_key)
{
	cf_err err = CF_OK;
	gnutls_x509_crl_t crl = NULL;
	gnutls_datum_t der = {0};
	uint8_t kid[64], number[8];
	size_t kid_len = sizeof kid;
	time_t now = time(NULL);
	for (size_t i = 0; i < sizeof number; i++)
		number[i] = (uint8_t)((uint64_t)now >> (8 * (7 - i)));
	GT(gnutls_x509_crl_init(&crl), "CRL init");
	GT(gnutls_x509_crl_set_version(crl, 2), "CRL version");
	GT(gnutls_x509_crl_set_this_update(crl, now - 300), "CRL this update");
	GT(gnutls_x509_crl_set_next_update(crl, now + 30 * 86400), "CRL next update");
	GT(gnutls_x509_crl_set_number(crl, number, sizeof number), "CRL number");
	GT(gnutls_x509_crt_get_subject_key_id(ca, kid, &kid_len, NULL), "CA key id");
	GT(gnutls_x509_crl_set_authority_key_id(crl, kid, kid_len), "CRL authority key id");
	GT(gnutls_x509_crl_sign2(crl, ca, ca_key, GNUTLS_DIG_SHA256, 0), "CRL signature");
	GT(gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_DER, &der), "CRL export");
	CF_TRY_OUT(write_datum(dir, CF_DEV_CA_CRL, &der, 0644), out);
out:
	gnutls_free(der.data);
	if (crl)
		gnutls_x509_crl_deinit(crl);
	return err;
}

static cf_err crl_uri(const char *dir, char *uri, size_t cap)
{
	char abs[PATH_MAX];
	if (!realpath(dir, abs))
		return cf_err_fail(CF_E_IO, "%s: cannot resolve the folder", dir);
	if ((size_t)snprintf(uri, cap, "file://%s/" CF_DEV_CA_CRL, abs) >= cap)
		return cf_err_fail(CF_E_INVALID, "%s: path too long", dir);
	return CF_OK;
}

static cf_err make_leaf(const char *dir, gnutls_x509_crt_t ca, gnutls_x509_privkey_t ca_key)
{
	cf_err err = CF_OK;
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t pem = {0}, kpem = {0};
	static const uint8_t v4[4] = {127, 0, 0, 1};
	static const uint8_t v6[16] = {[15] = 1};
	CF_TRY_OUT(new_key(&key), out);
	GT(gnutls_x509_crt_init(&crt), "certificate init");
	CF_TRY_OUT(cert_common(crt, key, "CN=localhost,O=coffre development (NOT FOR PRODUCTION)",
	                       LEAF_DAYS),
	           out);
	GT(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
	                                        GNUTLS_FSAN_APPEND),
	   "name localhost");
	GT(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, v4, sizeof v4,
	                                        GNUTLS_FSAN_APPEND),
	   "name 127.0.0.1");
	GT(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, v6, sizeof v6,
	                                        GNUTLS_FSAN_APPEND),
	   "name ::1");
	GT(gnutls_x509_crt_set_basic_constraints(crt, 0, -1), "basic constraints");
	GT(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE), "key usage");
	GT(gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0), "purpose");
	char uri[PATH_MAX + 16];
	CF_TRY_OUT(crl_uri(dir, uri, sizeof uri), out);
	GT(gnutls_x509_crt_set_crl_dist_points(crt, GNUTLS_SAN_URI, uri, 0),
	   "CRL distribution point");
	uint8_t kid[64];
	size_t kid_len = sizeof kid;
	GT(gnutls_x509_crt_get_subject_key_id(ca, kid, &kid_len, NULL), "CA key id");
	GT(gnutls_x509_crt_set_authority_key_id(crt, kid, kid_len), "authority key id");
	GT(gnutls_x509_crt_sign2(crt, ca, ca_key, GNUTLS_DIG_SHA256, 0), "signature");
	GT(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem), "export");
	GT(gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN,
	                                     &kpem),
	   "key export");
	/* Key first: a reader that sees the new certificate also finds its key. */
	CF_TRY_OUT(write_datum(dir, CF_DEV_SERVER_KEY, &kpem, 0600), out);
	CF_TRY_OUT(write_datum(dir, CF_DEV_SERVER_CERT, &pem, 0644), out);
out:
	if (kpem.data) {
		gnutls_memset(kpem.data, 0, kpem.size);
		gnutls_free(kpem.data);
	}
	gnutls_free(pem.data);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (key)
		gnutls_x509_privkey_deinit(key);
	return err;
}

cf_err cf_crypto_dev_pki(const char *dir, bool *created)
{
	cf_err err = CF_OK;
	gnutls_x509_crt_t ca = NULL, leaf = NULL;
	gnutls_x509_privkey_t ca_key = NULL, leaf_key = NULL;
	*created = false;
	GT(gnutls_x509_crt_init(&ca), "certificate init");
	GT(gnutls_x509_privkey_init(&ca_key), "key init");
	err = load_pair(dir, CF_DEV_CA_CERT, CF_DEV_CA_KEY, ca, ca_key);
	if (err == CF_E_NOT_FOUND) {
		CF_TRY_OUT(make_ca(dir), out);
		*created = true;
		gnutls_x509_crt_deinit(ca);
		gnutls_x509_privkey_deinit(ca_key);
		ca = NULL;
		ca_key = NULL;
		GT(gnutls_x509_crt_init(&ca), "certificate init");
		GT(gnutls_x509_privkey_init(&ca_key), "key init");
		CF_TRY_OUT(load_pair(dir, CF_DEV_CA_CERT, CF_DEV_CA_KEY, ca, ca_key), out);
	} else if (err) {
		goto out;
	}
	GT(gnutls_x509_crt_init(&leaf), "certificate init");
	GT(gnutls_x509_privkey_init(&leaf_key), "key init");
	err = load_pair(dir, CF_DEV_SERVER_CERT, CF_DEV_SERVER_KEY, leaf, leaf_key);
	bool renew = *created || err == CF_E_NOT_FOUND;
	if (err && err != CF_E_NOT_FOUND)
		goto out;
	if (!renew) {
		time_t exp = gnutls_x509_crt_get_expiration_time(leaf);
		unsigned status = 0;
		renew = exp < time(NULL) + (time_t)RENEW_DAYS * 86400 ||
		        gnutls_x509_crt_verify(leaf, &ca, 1, 0, &status) < 0 || status != 0;
	}
	if (!renew) {
		/* A leaf must name the CRL where it is now (the folder may have moved). */
		char want[PATH_MAX + 16], have[PATH_MAX + 16];
		size_t have_len = sizeof have - 1;
		CF_TRY_OUT(crl_uri(dir, want, sizeof want), out);
		/* gnutls_x509_crt_get_crl_dist_points returns the name's type */
		renew = gnutls_x509_crt_get_crl_dist_points(leaf, 0, have, &have_len, NULL, NULL) !=
		                GNUTLS_SAN_URI ||
		        have_len != strlen(want) || memcmp(have, want, have_len) != 0;
	}
	if (renew) {
		CF_TRY_OUT(make_leaf(dir, ca, ca_key), out);
		*created = true;
	}
	CF_TRY_OUT(sign_crl(dir, ca, ca_key), out);
out:
	if (leaf)
		gnutls_x509_crt_deinit(leaf);
	if (leaf_key)
		gnutls_x509_privkey_deinit(leaf_key);
	if (ca)
		gnutls_x509_crt_deinit(ca);
	if (ca_key)
		gnutls_x509_privkey_deinit(ca_key);
	return err;
}
