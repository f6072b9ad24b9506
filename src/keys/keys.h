/* coffre — keys: key management (DESIGN §5). This first piece is the envelope: how one
 * field of one record version is sealed under a fresh data key (DEK) that the tenant's
 * key-encryption key (KEK) wraps. The keyring that holds KEKs behind handles, the root
 * key providers, rotation and shredding build on it.
 *
 * ER1, ER2: every value is sealed with AES-256-GCM under a DEK used for this one value
 * only (so a random nonce never repeats under a key); the DEK is wrapped with
 * AES-256-SIV under the KEK, and the wrapped DEK is stored beside the ciphertext.
 * Associated data comes from the caller's context (tenant, collection, record id,
 * version, field), never from the stored bytes: a value copied to another tenant,
 * record, version or field does not open. docs/formats.md gives every byte. */
#ifndef CF_KEYS_H
#define CF_KEYS_H

#include "base/base.h"
#include "crypto/crypto.h"

/* Where a value belongs. Every string is at most CF_ENV_ID_MAX bytes. */
#define CF_ENV_ID_MAX 255u
struct cf_env_ctx {
	struct cf_span tenant;
	struct cf_span collection;
	struct cf_span record;
	uint64_t version;
	struct cf_span field;
};

/* Which KEK wrapped the DEK: its version, and the root key version that wraps it. */
struct cf_key_id {
	uint32_t kek_version;
	uint32_t rk_version;
};

/* A parsed envelope: spans into the caller's bytes. */
struct cf_env_view {
	uint8_t format;
	uint8_t alg;
	struct cf_key_id kid;
	struct cf_span tenant;      /* informational: the caller's tenant is what counts */
	struct cf_span wrapped_dek; /* AES-SIV: 16 + 32 bytes */
	struct cf_span nonce;       /* 12 bytes */
	struct cf_span sealed;      /* ciphertext then tag */
};

#define CF_ENV_FORMAT      1
#define CF_ENV_ALG_GCM_SIV 1 /* data AES-256-GCM, DEK wrap AES-256-SIV */
#define CF_ENV_DEK         32
#define CF_ENV_WRAPPED_DEK (CF_AEAD_TAG + CF_ENV_DEK)

/* A KEK ready to wrap DEKs: its bytes in secure memory, its AES-SIV context prepared
 * once. (The keyring will hand these out behind handles.) Thread-safe. */
struct cf_kek;
CF_MUST cf_err cf_kek_new(const uint8_t key[CF_SIV_KEY], struct cf_kek **out);
void cf_kek_free(struct cf_kek **pp);

/* Bytes an envelope for plaintext of pt_len bytes takes for this tenant. */
size_t cf_env_size(const struct cf_env_ctx *ctx, size_t pt_len);
/* Seals pt for ctx under kek into out (cf_env_size bytes).
 * CF_E_INVALID for an oversize context value. */
CF_MUST cf_err cf_env_seal(struct cf_kek *kek, struct cf_key_id kid, const struct cf_env_ctx *ctx,
                           struct cf_span pt, uint8_t *out, size_t out_cap, size_t *out_len);
/* Parses without decrypting: CF_E_INTEGRITY for anything malformed (fuzzed). */
CF_MUST cf_err cf_env_parse(struct cf_span env, struct cf_env_view *view);
/* Opens an envelope for ctx under kek (the caller found it from view.kid and its own
 * tenant). out must hold view.sealed.len - 16 bytes. CF_E_INTEGRITY when the value does
 * not belong to ctx, was altered, or kek is not the one that sealed it. */
CF_MUST cf_err cf_env_open(struct cf_kek *kek, const struct cf_env_ctx *ctx, struct cf_span env,
                           uint8_t *out, size_t out_cap, size_t *out_len);

/* Root key, `file` provider (ER3): the root key (64 bytes, AES-256-SIV, wrapping KEKs)
 * sealed in a file under a key derived from a passphrase with Argon2id. Format in
 * docs/formats.md: versioned, with the Argon2id parameters and a checksum, so that a
 * damaged file (CF_E_INTEGRITY) is told apart from a wrong passphrase
 * (CF_E_UNSEAL_FAILED). The root key is returned in secure memory. */
#define CF_RK_LEN      64
#define CF_RK_FILE_LEN 137 /* docs/formats.md */
/* Creates the file (0600, atomically) with a new key-grade random root key. Refuses to
 * overwrite an existing file (CF_E_CONFLICT). */
CF_MUST cf_err cf_rootkey_file_create(const char *path, struct cf_span passphrase,
                                      const struct cf_argon2_params *prm, uint32_t rk_version,
                                      struct cf_secbuf **rk_out);
/* Opens it: CF_E_UNSEAL_FAILED (wrong passphrase), CF_E_INTEGRITY (damaged, or
 * parameters out of bounds), CF_E_NOT_FOUND, CF_E_IO. */
CF_MUST cf_err cf_rootkey_file_open(const char *path, struct cf_span passphrase,
                                    struct cf_secbuf **rk_out, uint32_t *rk_version);
/* The parsed header of a key file, without opening it (fuzzed). */
struct cf_rk_file_view {
	uint32_t rk_version;
	struct cf_argon2_params prm;
	struct cf_span salt, nonce, sealed, header;
};
CF_MUST cf_err cf_rootkey_file_parse(struct cf_span bytes, struct cf_rk_file_view *v);

/* Root key, `shares` provider (ER3): k-of-n Shamir shares, each a line of text with its
 * root key version, threshold, index, key check value and checksum. */
#define CF_SHARE_TEXT_MAX 192
/* Splits rk into n shares (2 <= k <= n <= 255); shares[i] gets share i+1. */
CF_MUST cf_err cf_rootkey_split(const struct cf_secbuf *rk, uint32_t rk_version, unsigned k,
                                unsigned n, char (*shares)[CF_SHARE_TEXT_MAX]);
/* Combines shares: CF_E_INVALID names the mistyped, malformed, duplicated or foreign
 * share, or too few; CF_E_UNSEAL_FAILED when they combine to a key whose check value is
 * wrong (a share altered with its checksum recomputed). */
CF_MUST cf_err cf_rootkey_combine(const char *const *shares, size_t count,
                                  struct cf_secbuf **rk_out, uint32_t *rk_version);

/* Root key, `pkcs11` provider (ER6): an AES-256 root key generated inside an HSM
 * (sensitive, non-extractable, labelled coffre-root-key-vN); key material is wrapped and
 * unwrapped by the token with AES-256-GCM (a random 12-byte IV, then ciphertext and
 * tag), and only unwrapped keys, in locked memory, leave it. Thread-safe. */
struct cf_hsm;
/* Loads the module (p11-kit), finds the token by label and logs in. CF_E_CONFIG for a
 * missing module or token, CF_E_UNSEAL_FAILED for a wrong PIN. */
CF_MUST cf_err cf_hsm_open(const char *module, const char *token_label, struct cf_span pin,
                           struct cf_hsm **out);
void cf_hsm_close(struct cf_hsm **pp);
/* CF_E_CONFLICT when the token already holds that version. */
CF_MUST cf_err cf_hsm_generate_rk(struct cf_hsm *h, uint32_t rk_version);
CF_MUST cf_err cf_hsm_wrap(struct cf_hsm *h, uint32_t rk_version, struct cf_span ad,
                           struct cf_span key, uint8_t *out, size_t out_cap, size_t *out_len);
/* CF_E_INTEGRITY when the wrapped key was altered or ad differs; CF_E_NOT_FOUND when the
 * token has no such root key version. */
CF_MUST cf_err cf_hsm_unwrap(struct cf_hsm *h, uint32_t rk_version, struct cf_span ad,
                             struct cf_span wrapped, struct cf_secbuf **key_out);

#endif
