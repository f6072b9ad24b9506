/* coffre — crypto: primitives over GnuTLS (libargon2 for Argon2id) and the development
 * PKI. Keys here are plain byte arrays: the caller (src/keys) keeps them in secure
 * memory. Every function is thread-safe and allocates nothing the caller must free. */
#ifndef CF_CRYPTO_H
#define CF_CRYPTO_H

#include "base/base.h"

/* Development PKI for `coffred --dev`: in folder dir (which must already be private),
 * makes sure there is an ECDSA P-256 development CA (ca.pem, ca.key) and a server
 * certificate it signed (server.pem, server.key) for localhost, 127.0.0.1 and ::1,
 * valid for at least 30 more days. Missing or expiring files are (re)made with GnuTLS's
 * X.509 API; keys are written 0600. The CA's CRL (ca.crl, DER) is signed anew each
 * time, and the leaf names it by a file:// URI. *created tells whether a key or
 * certificate was made. */
CF_MUST cf_err cf_crypto_dev_pki(const char *dir, bool *created);

/* File names inside the development PKI folder. */
#define CF_DEV_CA_CERT     "ca.pem"
#define CF_DEV_CA_KEY      "ca.key"
#define CF_DEV_SERVER_CERT "server.pem"
#define CF_DEV_SERVER_KEY  "server.key"
#define CF_DEV_CA_CRL      "ca.crl"

/* Random bytes. cf_crypto_random is GnuTLS's level for nonces and temporal keys (a DEK
 * protects one value: that is its level); cf_crypto_random_key is the key-grade level,
 * for long-term keys (KEKs, root keys, signing keys). */
CF_MUST cf_err cf_crypto_random(void *buf, size_t n);
CF_MUST cf_err cf_crypto_random_key(void *buf, size_t n);

/* AEAD. Output is ciphertext followed by the 16-byte tag. Opening fails with
 * CF_E_INTEGRITY (nothing written that may be trusted) on any change to key, nonce,
 * associated data, ciphertext or tag, and on truncation. */
#define CF_AEAD_TAG 16
#define CF_AEAD_MAX (64u * 1024u * 1024u)
/* AES-256-GCM with a random 96-bit nonce: for data under keys used for one record
 * version each (DESIGN §5), so nonces never repeat under a key. out: pt.len + 16. */
#define CF_GCM_KEY   32
#define CF_GCM_NONCE 12
CF_MUST cf_err cf_gcm_seal(const uint8_t key[CF_GCM_KEY], const uint8_t nonce[CF_GCM_NONCE],
                           struct cf_span ad, struct cf_span pt, uint8_t *out);
/* out: ct.len - 16 */
CF_MUST cf_err cf_gcm_open(const uint8_t key[CF_GCM_KEY], const uint8_t nonce[CF_GCM_NONCE],
                           struct cf_span ad, struct cf_span ct, uint8_t *out);
/* AES-256-SIV (RFC 5297; 64-byte key): deterministic and misuse-resistant, for key
 * wrapping and tokens. label (non-empty, fixed per use) is the last S2V input, where a
 * nonce would go. Output: the 16-byte SIV, then the ciphertext. */
#define CF_SIV_KEY 64
CF_MUST cf_err cf_siv_seal(const uint8_t key[CF_SIV_KEY], struct cf_span label, struct cf_span ad,
                           struct cf_span pt, uint8_t *out);
CF_MUST cf_err cf_siv_open(const uint8_t key[CF_SIV_KEY], struct cf_span label, struct cf_span ad,
                           struct cf_span ct, uint8_t *out);

/* A prepared AES-256-SIV key, for keys that wrap many others (KEKs): the key schedule is
 * set up once. Thread-safe (calls on one context are serialised). The schedule lives in
 * GnuTLS's memory, wiped when the context is freed. */
struct cf_siv;
CF_MUST cf_err cf_siv_new(const uint8_t key[CF_SIV_KEY], struct cf_siv **out);
void cf_siv_free(struct cf_siv **pp);
CF_MUST cf_err cf_siv_seal_with(struct cf_siv *siv, struct cf_span label, struct cf_span ad,
                                struct cf_span pt, uint8_t *out);
CF_MUST cf_err cf_siv_open_with(struct cf_siv *siv, struct cf_span label, struct cf_span ad,
                                struct cf_span ct, uint8_t *out);

/* HMAC-SHA-256 (RFC 2104) and HKDF-SHA-256 (RFC 5869). len <= 8160. */
#define CF_HMAC_LEN 32
CF_MUST cf_err cf_hmac_sha256(struct cf_span key, struct cf_span data, uint8_t out[CF_HMAC_LEN]);
CF_MUST cf_err cf_hkdf_sha256(struct cf_span ikm, struct cf_span salt, struct cf_span info,
                              uint8_t *out, size_t len);

/* SHA-256 over the concatenation of parts (FIPS 180-4). */
#define CF_SHA256_LEN 32
CF_MUST cf_err cf_sha256v(const struct cf_span *parts, size_t nparts, uint8_t out[CF_SHA256_LEN]);

/* Standard base64 (RFC 4648 §4, with padding). encode: out holds 4 * ceil(n / 3) + 1.
 * decode: CF_E_INVALID unless the text is canonical base64 of at most cap bytes. */
void cf_base64_encode(const uint8_t *p, size_t n, char *out);
CF_MUST cf_err cf_base64_decode(const char *text, size_t len, uint8_t *out, size_t cap,
                                size_t *out_len);

/* Ed25519 (RFC 8032): a 32-byte seed is the private key; the public key is kept beside
 * it. verify: CF_OK, or CF_E_INTEGRITY for a bad signature or public key. */
#define CF_ED25519_SEED 32
#define CF_ED25519_PUB  32
#define CF_ED25519_SIG  64
CF_MUST cf_err cf_ed25519_keypair(uint8_t seed[CF_ED25519_SEED], uint8_t pub[CF_ED25519_PUB]);
CF_MUST cf_err cf_ed25519_sign(const uint8_t seed[CF_ED25519_SEED],
                               const uint8_t pub[CF_ED25519_PUB], struct cf_span msg,
                               uint8_t sig[CF_ED25519_SIG]);
CF_MUST cf_err cf_ed25519_verify(const uint8_t pub[CF_ED25519_PUB], struct cf_span msg,
                                 const uint8_t sig[CF_ED25519_SIG]);

/* Argon2id (RFC 9106), version 0x13. PHC strings for passwords; the raw form (with
 * secret and associated data) for key derivation from passphrases and for the RFC's
 * test vector. Memory in KiB. */
struct cf_argon2_params {
	uint32_t m_kib, t, p;
};
extern const struct cf_argon2_params cf_argon2_defaults; /* 64 MiB, 3 passes, 1 lane */
CF_MUST cf_err cf_argon2id_raw(struct cf_span pwd, struct cf_span salt, struct cf_span secret,
                               struct cf_span ad, const struct cf_argon2_params *prm, uint8_t *out,
                               size_t out_len);
/* A PHC string with a random 16-byte salt and a 32-byte hash (cap >= 128 is enough). */
CF_MUST cf_err cf_argon2id_hash(struct cf_span pwd, const struct cf_argon2_params *prm, char *phc,
                                size_t cap);
/* CF_OK, CF_E_INTEGRITY (wrong password), CF_E_INVALID (not an Argon2id PHC string). */
CF_MUST cf_err cf_argon2id_verify(const char *phc, struct cf_span pwd);
/* True when phc was made with other parameters (or cannot be read): hash again. */
bool cf_argon2id_needs_rehash(const char *phc, const struct cf_argon2_params *prm);

#endif
