/* coffre — cryptographic primitives over GnuTLS (and libargon2 for Argon2id).
 * Fixed algorithms, explicit associated data, no choices for callers to get wrong.
 * Known-answer tests: tests/unit/test_crypto.c (NIST GCM, RFC 5869, RFC 4231, RFC 8032,
 * RFC 9106, and AES-SIV cross-checked against python3-cryptography). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <argon2.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "crypto/crypto.h"

static cf_err gt_fail(int rc, const char *what)
{
	return cf_err_fail(CF_E_CRYPTO, "%s: %s", what, gnutls_strerror(rc));
}

cf_err cf_crypto_random(void *buf, size_t n)
{
	int rc = gnutls_rnd(GNUTLS_RND_RANDOM, buf, n);
	return rc < 0 ? gt_fail(rc, "random") : CF_OK;
}

cf_err cf_crypto_random_key(void *buf, size_t n)
{
	int rc = gnutls_rnd(GNUTLS_RND_KEY, buf, n);
	return rc < 0 ? gt_fail(rc, "random key") : CF_OK;
}

/* AEAD ------------------------------------------------------------------------------- */

static cf_err aead(gnutls_cipher_algorithm_t alg, const uint8_t *key, size_t key_len,
                   struct cf_span nonce, struct cf_span ad, struct cf_span in, uint8_t *out,
                   size_t out_cap, size_t *out_len, bool seal)
{
	gnutls_aead_cipher_hd_t h;
	gnutls_datum_t k = {(unsigned char *)(uintptr_t)key, (unsigned)key_len};
	int rc = gnutls_aead_cipher_init(&h, alg, &k);
	if (rc < 0)
		return gt_fail(rc, "cipher init");
	size_t n = out_cap;
	/* GnuTLS takes non-const pointers for inputs it does not modify. */
	void *iv = (void *)(uintptr_t)nonce.ptr;
	const void *aad = ad.len ? ad.ptr : NULL;
	const void *src = in.len ? in.ptr : (const void *)"";
	rc = seal ? gnutls_aead_cipher_encrypt(h, iv, nonce.len, aad, ad.len, CF_AEAD_TAG, src,
	                                       in.len, out, &n)
	          : gnutls_aead_cipher_decrypt(h, iv, nonce.len, aad, ad.len, CF_AEAD_TAG, src,
	                                       in.len, out, &n);
	gnutls_aead_cipher_deinit(h);
	if (rc < 0) {
		if (!seal && rc == GNUTLS_E_DECRYPTION_FAILED)
			return cf_err_fail(CF_E_INTEGRITY, "authentication failed");
		return gt_fail(rc, seal ? "seal" : "open");
	}
	*out_len = n;
	return CF_OK;
}

cf_err cf_gcm_seal(const uint8_t key[CF_GCM_KEY], const uint8_t nonce[CF_GCM_NONCE],
                   struct cf_span ad, struct cf_span pt, uint8_t *out)
{
	size_t n = 0;
	CF_ENSURE(pt.len <= CF_AEAD_MAX, cf_err_fail(CF_E_TOO_LARGE, "plaintext too large"));
	return aead(GNUTLS_CIPHER_AES_256_GCM, key, CF_GCM_KEY,
	            (struct cf_span){nonce, CF_GCM_NONCE}, ad, pt, out, pt.len + CF_AEAD_TAG, &n,
	            true);
}

cf_err cf_gcm_open(const uint8_t key[CF_GCM_KEY], const uint8_t nonce[CF_GCM_NONCE],
                   struct cf_span ad, struct cf_span ct, uint8_t *out)
{
	size_t n = 0;
	CF_ENSURE(ct.len >= CF_AEAD_TAG, cf_err_fail(CF_E_INTEGRITY, "ciphertext truncated"));
	CF_ENSURE(ct.len <= CF_AEAD_MAX + CF_AEAD_TAG,
	          cf_err_fail(CF_E_TOO_LARGE, "ciphertext too large"));
	return aead(GNUTLS_CIPHER_AES_256_GCM, key, CF_GCM_KEY,
	            (struct cf_span){nonce, CF_GCM_NONCE}, ad, ct, out, ct.len - CF_AEAD_TAG, &n,
	            false);
}

cf_err cf_siv_seal(const uint8_t key[CF_SIV_KEY], struct cf_span label, struct cf_span ad,
                   struct cf_span pt, uint8_t *out)
{
	size_t n = 0;
	/* GnuTLS 3.7 aborts on an empty nonce: the caller's fixed label stands in. */
	CF_ENSURE(label.len > 0, cf_err_fail(CF_E_INVALID, "AES-SIV needs a non-empty label"));
	CF_ENSURE(pt.len <= CF_AEAD_MAX, cf_err_fail(CF_E_TOO_LARGE, "plaintext too large"));
	return aead(GNUTLS_CIPHER_AES_256_SIV, key, CF_SIV_KEY, label, ad, pt, out,
	            pt.len + CF_AEAD_TAG, &n, true);
}

cf_err cf_siv_open(const uint8_t key[CF_SIV_KEY], struct cf_span label, struct cf_span ad,
                   struct cf_span ct, uint8_t *out)
{
	size_t n = 0;
	CF_ENSURE(label.len > 0, cf_err_fail(CF_E_INVALID, "AES-SIV needs a non-empty label"));
	CF_ENSURE(ct.len >= CF_AEAD_TAG, cf_err_fail(CF_E_INTEGRITY, "ciphertext truncated"));
	CF_ENSURE(ct.len <= CF_AEAD_MAX + CF_AEAD_TAG,
	          cf_err_fail(CF_E_TOO_LARGE, "ciphertext too large"));
	return aead(GNUTLS_CIPHER_AES_256_SIV, key, CF_SIV_KEY, label, ad, ct, out,
	            ct.len - CF_AEAD_TAG, &n, false);
}

struct cf_siv {
	pthread_mutex_t lock;
	gnutls_aead_cipher_hd_t h;
};

cf_err cf_siv_new(const uint8_t key[CF_SIV_KEY], struct cf_siv **out)
{
	struct cf_siv *s = calloc(1, sizeof *s);
	if (!s)
		return CF_E_NOMEM;
	gnutls_datum_t k = {(unsigned char *)(uintptr_t)key, CF_SIV_KEY};
	int rc = gnutls_aead_cipher_init(&s->h, GNUTLS_CIPHER_AES_256_SIV, &k);
	if (rc < 0) {
		free(s);
		return gt_fail(rc, "AES-SIV key");
	}
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return CF_OK;
}

void cf_siv_free(struct cf_siv **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_siv *s = *pp;
	*pp = NULL;
	gnutls_aead_cipher_deinit(s->h); /* GnuTLS wipes the key schedule */
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static cf_err siv_with(struct cf_siv *s, struct cf_span label, struct cf_span ad, struct cf_span in,
                       uint8_t *out, bool seal)
{
	CF_ENSURE(label.len > 0, cf_err_fail(CF_E_INVALID, "AES-SIV needs a non-empty label"));
	CF_ENSURE(in.len <= CF_AEAD_MAX + (seal ? 0 : CF_AEAD_TAG),
	          cf_err_fail(CF_E_TOO_LARGE, "input too large"));
	if (!seal && in.len < CF_AEAD_TAG)
		return cf_err_fail(CF_E_INTEGRITY, "ciphertext truncated");
	size_t n = seal ? in.len + CF_AEAD_TAG : in.len - CF_AEAD_TAG;
	const void *src = in.len ? in.ptr : (const void *)"";
	pthread_mutex_lock(&s->lock);
	int rc = seal ? gnutls_aead_cipher_encrypt(s->h, label.ptr, label.len,
	                                           ad.len ? ad.ptr : NULL, ad.len, CF_AEAD_TAG, src,
	                                           in.len, out, &n)
	              : gnutls_aead_cipher_decrypt(s->h, label.ptr, label.len,
	                                           ad.len ? ad.ptr : NULL, ad.len, CF_AEAD_TAG, src,
	                                           in.len, out, &n);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		return !seal && rc == GNUTLS_E_DECRYPTION_FAILED
		               ? cf_err_fail(CF_E_INTEGRITY, "authentication failed")
		               : gt_fail(rc, seal ? "seal" : "open");
	return CF_OK;
}

cf_err cf_siv_seal_with(struct cf_siv *siv, struct cf_span label, struct cf_span ad,
                        struct cf_span pt, uint8_t *out)
{
	return siv_with(siv, label, ad, pt, out, true);
}

cf_err cf_siv_open_with(struct cf_siv *siv, struct cf_span label, struct cf_span ad,
                        struct cf_span ct, uint8_t *out)
{
	return siv_with(siv, label, ad, ct, out, false);
}

/* Hashing and base64 ------------------------------------------------------------------ */

cf_err cf_sha256v(const struct cf_span *parts, size_t nparts, uint8_t out[CF_SHA256_LEN])
{
	/* Small inputs (Merkle leaves and nodes) are joined and hashed in one call: no
	 * hash context to allocate, which is most of the cost at this size. */
	CF_SCRATCH uint8_t joined[1024];
	size_t total = 0;
	for (size_t i = 0; i < nparts && total <= sizeof joined; i++)
		total += parts[i].len;
	if (total <= sizeof joined) {
		size_t at = 0;
		for (size_t i = 0; i < nparts; i++) {
			if (parts[i].len)
				memcpy(joined + at, parts[i].ptr, parts[i].len);
			at += parts[i].len;
		}
		int rc = gnutls_hash_fast(GNUTLS_DIG_SHA256, joined, total, out);
		return rc < 0 ? gt_fail(rc, "SHA-256") : CF_OK;
	}
	gnutls_hash_hd_t h;
	int rc = gnutls_hash_init(&h, GNUTLS_DIG_SHA256);
	if (rc < 0)
		return gt_fail(rc, "SHA-256");
	for (size_t i = 0; i < nparts && rc >= 0; i++)
		if (parts[i].len)
			rc = gnutls_hash(h, parts[i].ptr, parts[i].len);
	gnutls_hash_deinit(h, out);
	return rc < 0 ? gt_fail(rc, "SHA-256") : CF_OK;
}

/* Base64 through GnuTLS; coffre adds the bounds and the canonical check. */
void cf_base64_encode(const uint8_t *p, size_t n, char *out)
{
	gnutls_datum_t in = {(unsigned char *)(uintptr_t)p, (unsigned)n}, res = {NULL, 0};
	out[0] = '\0';
	if (gnutls_base64_encode2(&in, &res) < 0)
		return;
	memcpy(out, res.data, res.size);
	out[res.size] = '\0';
	gnutls_free(res.data);
}

cf_err cf_base64_decode(const char *t, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	CF_ENSURE(len > 0 && len % 4 == 0 && len <= 4 * ((cap + 2) / 3),
	          cf_err_fail(CF_E_INVALID, "base64: wrong length"));
	for (size_t i = 0; i < len; i++) {
		char c = t[i];
		bool pad = c == '=' && i >= len - 2 && (i == len - 1 || t[len - 1] == '=');
		CF_ENSURE((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		                  (c >= '0' && c <= '9') || c == '+' || c == '/' || pad,
		          cf_err_fail(CF_E_INVALID, "base64: bad character"));
	}
	gnutls_datum_t in = {(unsigned char *)(uintptr_t)t, (unsigned)len}, res = {NULL, 0};
	CF_ENSURE(gnutls_base64_decode2(&in, &res) >= 0,
	          cf_err_fail(CF_E_INVALID, "base64: not decodable"));
	cf_err err = CF_OK;
	if (res.size > cap) {
		err = cf_err_fail(CF_E_INVALID, "base64: too long");
	} else {
		/* canonical: encoding it back gives the same text */
		char back[4 * ((CF_SHA256_LEN * 8 + 2) / 3) + 8];
		if (len < sizeof back) {
			cf_base64_encode(res.data, res.size, back);
			if (strlen(back) != len || memcmp(back, t, len) != 0)
				err = cf_err_fail(CF_E_INVALID, "base64: not canonical");
		}
		if (err == CF_OK) {
			memcpy(out, res.data, res.size);
			*out_len = res.size;
		}
	}
	gnutls_free(res.data);
	return err;
}

/* MAC and KDF ------------------------------------------------------------------------- */

cf_err cf_hmac_sha256(struct cf_span key, struct cf_span data, uint8_t out[CF_HMAC_LEN])
{
	int rc = gnutls_hmac_fast(GNUTLS_MAC_SHA256, key.ptr ? key.ptr : (const void *)"", key.len,
	                          data.ptr ? data.ptr : (const void *)"", data.len, out);
	return rc < 0 ? gt_fail(rc, "HMAC") : CF_OK;
}

cf_err cf_hkdf_sha256(struct cf_span ikm, struct cf_span salt, struct cf_span info, uint8_t *out,
                      size_t len)
{
	CF_ENSURE(len > 0 && len <= 255 * CF_HMAC_LEN, cf_err_fail(CF_E_INVALID, "HKDF length"));
	uint8_t prk[CF_HMAC_LEN];
	gnutls_datum_t k = {(unsigned char *)(uintptr_t)(ikm.ptr ? ikm.ptr : (const uint8_t *)""),
	                    (unsigned)ikm.len};
	gnutls_datum_t s = {(unsigned char *)(uintptr_t)(salt.ptr ? salt.ptr : (const uint8_t *)""),
	                    (unsigned)salt.len};
	int rc = gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &k, &s, prk);
	if (rc >= 0) {
		gnutls_datum_t p = {prk, sizeof prk};
		gnutls_datum_t i = {
		        (unsigned char *)(uintptr_t)(info.ptr ? info.ptr : (const uint8_t *)""),
		        (unsigned)info.len};
		rc = gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &p, &i, out, len);
	}
	cf_wipe(prk, sizeof prk);
	return rc < 0 ? gt_fail(rc, "HKDF") : CF_OK;
}

/* Ed25519 (RFC 8032) ---------------------------------------------------------------------- */

static cf_err ed_priv(const uint8_t seed[CF_ED25519_SEED], const uint8_t pub[CF_ED25519_PUB],
                      gnutls_privkey_t *out)
{
	gnutls_datum_t x = {(unsigned char *)(uintptr_t)pub, CF_ED25519_PUB};
	gnutls_datum_t k = {(unsigned char *)(uintptr_t)seed, CF_ED25519_SEED};
	int rc = gnutls_privkey_init(out);
	if (rc >= 0)
		rc = gnutls_privkey_import_ecc_raw(*out, GNUTLS_ECC_CURVE_ED25519, &x, NULL, &k);
	if (rc < 0) {
		gnutls_privkey_deinit(*out);
		return gt_fail(rc, "Ed25519 key");
	}
	return CF_OK;
}

cf_err cf_ed25519_keypair(uint8_t seed[CF_ED25519_SEED], uint8_t pub[CF_ED25519_PUB])
{
	gnutls_privkey_t pk;
	int rc = gnutls_privkey_init(&pk);
	if (rc < 0)
		return gt_fail(rc, "Ed25519 key");
	gnutls_datum_t x = {0}, k = {0};
	gnutls_ecc_curve_t curve;
	rc = gnutls_privkey_generate(pk, GNUTLS_PK_EDDSA_ED25519, 256, 0);
	if (rc >= 0)
		rc = gnutls_privkey_export_ecc_raw2(pk, &curve, &x, NULL, &k, 0);
	cf_err err = CF_OK;
	if (rc < 0)
		err = gt_fail(rc, "Ed25519 keypair");
	else if (x.size != CF_ED25519_PUB || k.size != CF_ED25519_SEED)
		err = cf_err_fail(CF_E_CRYPTO, "Ed25519 keypair: unexpected sizes");
	else {
		memcpy(pub, x.data, CF_ED25519_PUB);
		memcpy(seed, k.data, CF_ED25519_SEED);
	}
	if (k.data) {
		gnutls_memset(k.data, 0, k.size);
		gnutls_free(k.data);
	}
	gnutls_free(x.data);
	gnutls_privkey_deinit(pk);
	return err;
}

cf_err cf_ed25519_sign(const uint8_t seed[CF_ED25519_SEED], const uint8_t pub[CF_ED25519_PUB],
                       struct cf_span msg, uint8_t sig[CF_ED25519_SIG])
{
	gnutls_privkey_t pk;
	CF_TRY(ed_priv(seed, pub, &pk));
	gnutls_datum_t m = {(unsigned char *)(uintptr_t)(msg.ptr ? msg.ptr : (const uint8_t *)""),
	                    (unsigned)msg.len};
	gnutls_datum_t s = {0};
	int rc = gnutls_privkey_sign_data2(pk, GNUTLS_SIGN_EDDSA_ED25519, 0, &m, &s);
	gnutls_privkey_deinit(pk);
	if (rc < 0)
		return gt_fail(rc, "Ed25519 sign");
	cf_err err = s.size == CF_ED25519_SIG ? CF_OK
	                                      : cf_err_fail(CF_E_CRYPTO, "Ed25519 signature size");
	if (!err)
		memcpy(sig, s.data, CF_ED25519_SIG);
	gnutls_free(s.data);
	return err;
}

cf_err cf_ed25519_verify(const uint8_t pub[CF_ED25519_PUB], struct cf_span msg,
                         const uint8_t sig[CF_ED25519_SIG])
{
	gnutls_pubkey_t pk;
	gnutls_datum_t x = {(unsigned char *)(uintptr_t)pub, CF_ED25519_PUB};
	int rc = gnutls_pubkey_init(&pk);
	if (rc < 0)
		return gt_fail(rc, "Ed25519 public key");
	rc = gnutls_pubkey_import_ecc_raw(pk, GNUTLS_ECC_CURVE_ED25519, &x, NULL);
	if (rc < 0) {
		gnutls_pubkey_deinit(pk);
		return cf_err_fail(CF_E_INTEGRITY, "not an Ed25519 public key");
	}
	gnutls_datum_t m = {(unsigned char *)(uintptr_t)(msg.ptr ? msg.ptr : (const uint8_t *)""),
	                    (unsigned)msg.len};
	gnutls_datum_t s = {(unsigned char *)(uintptr_t)sig, CF_ED25519_SIG};
	rc = gnutls_pubkey_verify_data2(pk, GNUTLS_SIGN_EDDSA_ED25519, 0, &m, &s);
	gnutls_pubkey_deinit(pk);
	return rc < 0 ? cf_err_fail(CF_E_INTEGRITY, "bad signature") : CF_OK;
}

/* Argon2id (RFC 9106) ---------------------------------------------------------------------- */

const struct cf_argon2_params cf_argon2_defaults = {.m_kib = 65536, .t = 3, .p = 1};

cf_err cf_argon2id_raw(struct cf_span pwd, struct cf_span salt, struct cf_span secret,
                       struct cf_span ad, const struct cf_argon2_params *prm, uint8_t *out,
                       size_t out_len)
{
	argon2_context ctx = {
	        .out = out,
	        .outlen = (uint32_t)out_len,
	        .pwd = (uint8_t *)(uintptr_t)pwd.ptr,
	        .pwdlen = (uint32_t)pwd.len,
	        .salt = (uint8_t *)(uintptr_t)salt.ptr,
	        .saltlen = (uint32_t)salt.len,
	        .secret = (uint8_t *)(uintptr_t)secret.ptr,
	        .secretlen = (uint32_t)secret.len,
	        .ad = (uint8_t *)(uintptr_t)ad.ptr,
	        .adlen = (uint32_t)ad.len,
	        .t_cost = prm->t,
	        .m_cost = prm->m_kib,
	        .lanes = prm->p,
	        .threads = prm->p,
	        .version = ARGON2_VERSION_13,
	        .flags = ARGON2_DEFAULT_FLAGS,
	};
	int rc = argon2id_ctx(&ctx);
	return rc == ARGON2_OK ? CF_OK
	                       : cf_err_fail(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? CF_E_NOMEM
	                                                                          : CF_E_CRYPTO,
	                                     "Argon2id: %s", argon2_error_message(rc));
}

cf_err cf_argon2id_hash(struct cf_span pwd, const struct cf_argon2_params *prm, char *phc,
                        size_t cap)
{
	uint8_t salt[16];
	CF_TRY(cf_crypto_random(salt, sizeof salt));
	size_t need = argon2_encodedlen(prm->t, prm->m_kib, prm->p, sizeof salt, 32, Argon2_id);
	CF_ENSURE(cap >= need, cf_err_fail(CF_E_INVALID, "PHC buffer too small"));
	int rc = argon2id_hash_encoded(prm->t, prm->m_kib, prm->p,
	                               pwd.ptr ? pwd.ptr : (const void *)"", pwd.len, salt,
	                               sizeof salt, 32, phc, cap);
	return rc == ARGON2_OK ? CF_OK
	                       : cf_err_fail(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? CF_E_NOMEM
	                                                                          : CF_E_CRYPTO,
	                                     "Argon2id: %s", argon2_error_message(rc));
}

cf_err cf_argon2id_verify(const char *phc, struct cf_span pwd)
{
	CF_ENSURE(strncmp(phc, "$argon2id$", 10) == 0,
	          cf_err_fail(CF_E_INVALID, "not an Argon2id PHC string"));
	/* libargon2 compares in constant time */
	int rc = argon2id_verify(phc, pwd.ptr ? pwd.ptr : (const void *)"", pwd.len);
	if (rc == ARGON2_OK)
		return CF_OK;
	if (rc == ARGON2_VERIFY_MISMATCH)
		return cf_err_fail(CF_E_INTEGRITY, "password does not match");
	return cf_err_fail(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? CF_E_NOMEM : CF_E_INVALID,
	                   "Argon2id: %s", argon2_error_message(rc));
}

/* Reads "<prefix><digits>" at *p; false unless it is exactly that. */
static bool phc_field(const char **p, const char *prefix, uint32_t *out)
{
	size_t n = strlen(prefix);
	if (strncmp(*p, prefix, n) != 0)
		return false;
	const char *q = *p + n;
	uint64_t v = 0;
	size_t digits = 0;
	for (; *q >= '0' && *q <= '9' && digits < 10; q++, digits++)
		v = v * 10 + (uint64_t)(*q - '0');
	if (digits == 0 || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	*p = q;
	return true;
}

bool cf_argon2id_needs_rehash(const char *phc, const struct cf_argon2_params *prm)
{
	uint32_t v = 0, m = 0, t = 0, p = 0;
	const char *s = phc;
	if (!phc_field(&s, "$argon2id$v=", &v) || !phc_field(&s, "$m=", &m) ||
	    !phc_field(&s, ",t=", &t) || !phc_field(&s, ",p=", &p) || *s != '$')
		return true;
	return v != ARGON2_VERSION_13 || m != prm->m_kib || t != prm->t || p != prm->p;
}
