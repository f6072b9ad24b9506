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
#include "store/store.h"

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
/* For the keyring alone: AES-SIV under the KEK (purpose keys), and its bytes (rekey). */
CF_MUST cf_err cf_kek_wrap(struct cf_kek *kek, struct cf_span label, struct cf_span ad,
                           struct cf_span key, uint8_t *out);
CF_MUST cf_err cf_kek_unwrap(struct cf_kek *kek, struct cf_span label, struct cf_span ad,
                             struct cf_span wrapped, uint8_t *out);
struct cf_span cf_kek_bytes(const struct cf_kek *kek);

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

/* Moves an envelope of ctx from KEK from to KEK to (a rotation's rewrap, ER4): the DEK
 * is unwrapped and wrapped again, and the header's key id becomes to_kid; the data is
 * not touched. env is changed in place only on success. CF_E_INTEGRITY as cf_env_open. */
CF_MUST cf_err cf_env_rewrap(struct cf_kek *from, struct cf_kek *to, struct cf_key_id to_kid,
                             const struct cf_env_ctx *ctx, uint8_t *env, size_t env_len);

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

/* Checks shares without combining them (an unseal in progress): each well-formed, all of
 * one root key, none repeated. Gives their root key version and threshold. */
CF_MUST cf_err cf_rootkey_shares_check(const char *const *shares, size_t count,
                                       uint32_t *rk_version, unsigned *k);

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

/* --- The keyring (DESIGN §5) --------------------------------------------------------------
 * Everything above is the keyring's machinery; the rest of coffre uses only what follows.
 * The keyring owns the keystore (a database of its own), the root key (RK) while
 * unsealed, every tenant's KEK versions and purpose keys, and the deployment's signing
 * keys. It hands out operations on them (seal, open, rewrap, MAC, sign), never their
 * bytes, so that it can later move to its own process. Thread-safe.
 *
 * ER3/ER6: the RK comes from one of three providers, chosen at init and changeable by a
 * rekey. ER4: KEKs are versioned and rotate; old versions are destroyed once nothing
 * refers to them. ER7: the keystore carries its environment label. PV4: deleting a
 * tenant destroys every key it had (crypto-shredding). */
enum cf_rk_provider { CF_RK_NONE = 0, CF_RK_FILE, CF_RK_SHARES, CF_RK_PKCS11 };
const char *cf_rk_provider_name(enum cf_rk_provider p);
CF_MUST cf_err cf_rk_provider_parse(const char *name, enum cf_rk_provider *out);

/* Purpose keys: one set per tenant, wrapped by its KEK, versioned. */
enum cf_purpose { CF_PURPOSE_PSEUDONYM, CF_PURPOSE_TOKEN, CF_PURPOSE_AUDIT, CF_PURPOSE_URL };
#define CF_PURPOSE_COUNT 4
#define CF_PURPOSE_KEY   64
/* The deployment's Ed25519 keys, wrapped by the RK. */
enum cf_deploy_key { CF_DKEY_CHECKPOINT, CF_DKEY_TOKEN };
#define CF_DKEY_COUNT 2

#define CF_TENANT_ID_MAX      64
#define CF_ROTATION_DEFAULT_S (90 * 86400)

struct cf_keyring_opts {
	const char *store_url;   /* the keystore: "sqlite:DATA/keystore.db" or postgres:// */
	const char *migrate_url; /* PostgreSQL owner role for its migrations (NULL: store_url) */
	const char *data_dir;    /* where the `file` provider keeps root-vN.key */
	const char *environment; /* "production" or "development": the label (ER7) */
	const char *pkcs11_module, *pkcs11_token; /* for init or rekey to `pkcs11` */
	const struct cf_argon2_params *argon2;    /* for key files (NULL: the defaults) */
	int64_t rotation_s;                       /* default per-tenant rotation period */
	unsigned rewrap_batch;                    /* envelopes per rewrap step (0: 500) */
};
struct cf_keyring;
/* Opens (creating) the keystore and reads its label; the keyring starts sealed.
 * CF_E_CONFIG when the keystore's environment label differs from opts->environment. */
CF_MUST cf_err cf_keyring_open(const struct cf_keyring_opts *opts, struct cf_keyring **out);
/* Seals (wiping every key) and closes. Accepts NULL. */
void cf_keyring_close(struct cf_keyring **pp);

struct cf_keys_status {
	bool initialized, sealed;
	enum cf_rk_provider provider;
	uint32_t rk_version;
	char environment[16];
	char keystore_id[33];
	unsigned shares_threshold, shares_given; /* `shares`: progress of an unseal */
	size_t tenants;
};
void cf_keys_status(struct cf_keyring *kr, struct cf_keys_status *out);
bool cf_keys_is_sealed(struct cf_keyring *kr);

/* What a provider needs to make a new root key (init, rekey). */
struct cf_rk_secret {
	enum cf_rk_provider provider;
	struct cf_span passphrase; /* file */
	unsigned k, n;             /* shares: threshold and count */
	struct cf_span pin;        /* pkcs11 */
};
/* Makes RK v1 with the provider and the deployment keys; leaves the keyring unsealed.
 * For `shares`, shares_out (n entries) gets the shares: shown once, never stored.
 * CF_E_CONFLICT when already initialized. */
CF_MUST cf_err cf_keys_init(struct cf_keyring *kr, const struct cf_rk_secret *s,
                            char (*shares_out)[CF_SHARE_TEXT_MAX]);
/* Gives the provider's secret: the passphrase, one share (call again until *done), or
 * the PIN. CF_E_UNSEAL_FAILED for a wrong secret; CF_E_INVALID for a malformed or
 * duplicate share; CF_E_CONFLICT when not sealed; CF_E_NOT_FOUND before init. */
CF_MUST cf_err cf_keys_unseal(struct cf_keyring *kr, struct cf_span secret, bool *done);
/* Forgets shares given so far. */
void cf_keys_unseal_reset(struct cf_keyring *kr);
/* Wipes the RK, every KEK, purpose and deployment key from memory. */
void cf_keys_seal(struct cf_keyring *kr);
/* Rekey: a new RK version (from the same or another provider) rewraps every KEK and
 * deployment key in one keystore transaction: done whole or not at all. */
CF_MUST cf_err cf_keys_rekey(struct cf_keyring *kr, const struct cf_rk_secret *s,
                             char (*shares_out)[CF_SHARE_TEXT_MAX]);

/* Tenants' keys. Ids: 1..64 of [a-z0-9_-]. rotation_s 0 takes the default. */
CF_MUST cf_err cf_keys_tenant_create(struct cf_keyring *kr, const char *tenant, int64_t rotation_s);
CF_MUST cf_err cf_keys_tenant_suspend(struct cf_keyring *kr, const char *tenant, bool suspended);
/* Crypto-shredding (PV4): destroys every KEK version and purpose key of the tenant in
 * the keystore (free pages overwritten) and in memory, and puts their ids on the
 * destroyed list. *destroyed gets how many keys. Idempotent. */
CF_MUST cf_err cf_keys_tenant_shred(struct cf_keyring *kr, const char *tenant, unsigned *destroyed);
/* Is this key id on the durable destroyed list ("kek/acme/1", ...)? */
CF_MUST cf_err cf_keys_is_destroyed(struct cf_keyring *kr, const char *key_id, bool *out);

/* Rotation (ER4): a new KEK version, active at once; the old one turns decrypt-only and
 * a rewrap job moves what it wraps. */
CF_MUST cf_err cf_keys_rotate(struct cf_keyring *kr, const char *tenant, uint32_t *new_version);
/* Rotates every tenant whose active KEK is older than its period. */
CF_MUST cf_err cf_keys_rotate_due(struct cf_keyring *kr, int64_t now, unsigned *rotated);

/* Something that stores envelopes (records, files): asked to move up to `limit` of the
 * tenant's envelopes still under KEK version `from` with cf_keys_rewrap_value; sets
 * *remaining to how many are left after this step. */
struct cf_rewrap_source {
	const char *name;
	cf_err (*step)(void *ctx, struct cf_keyring *kr, const char *tenant, uint32_t from,
	               unsigned limit, uint64_t *moved, uint64_t *remaining);
	void *ctx;
};
#define CF_REWRAP_SOURCES_MAX 8
CF_MUST cf_err cf_keys_add_rewrap_source(struct cf_keyring *kr, const struct cf_rewrap_source *src);
/* One throttled step of every running rewrap job; a job whose old version nothing refers
 * to any more destroys that version (attested in the log). *busy: work remains. */
CF_MUST cf_err cf_keys_rewrap_step(struct cf_keyring *kr, bool *busy);

/* Events the keyring's own jobs cause (a scheduled rotation, a KEK destroyed after its
 * rewrap), for the audit log: the hook is called after the change is durable, outside
 * the keyring's lock. action: "keys.rotate" or "key.destroyed"; resource: the key id
 * ("kek/<tenant>/<version>"); detail: why. The hook's failure is logged by its owner. */
typedef void (*cf_keys_event_fn)(void *ctx, const char *action, const char *tenant,
                                 const char *resource, const char *detail);
void cf_keys_set_event_hook(struct cf_keyring *kr, cf_keys_event_fn fn, void *ctx);

/* What `coffre keys status` shows: a JSON array, one object per tenant. */
CF_MUST cf_err cf_keys_tenants_json(struct cf_keyring *kr, const char *tenant, json_t **out);

/* Handles: the operations the rest of coffre may ask for. CF_E_SEALED while sealed,
 * CF_E_NOT_FOUND for an unknown tenant, CF_E_TENANT_SUSPENDED for a suspended one. */
CF_MUST cf_err cf_keys_seal_value(struct cf_keyring *kr, const struct cf_env_ctx *ctx,
                                  struct cf_span pt, uint8_t *out, size_t out_cap, size_t *out_len);
CF_MUST cf_err cf_keys_open_value(struct cf_keyring *kr, const struct cf_env_ctx *ctx,
                                  struct cf_span env, uint8_t *out, size_t out_cap,
                                  size_t *out_len);
/* Moves an envelope of ctx to the tenant's active KEK version (in place); *moved false
 * when it already was there. */
CF_MUST cf_err cf_keys_rewrap_value(struct cf_keyring *kr, const struct cf_env_ctx *ctx,
                                    uint8_t *env, size_t env_len, bool *moved);
/* HMAC-SHA-256 under the tenant's active purpose key; *version gets its version. */
CF_MUST cf_err cf_keys_mac(struct cf_keyring *kr, const char *tenant, enum cf_purpose purpose,
                           struct cf_span data, uint8_t out[CF_HMAC_LEN], uint32_t *version);
/* Ed25519 with a deployment key; the public key is not secret. */
CF_MUST cf_err cf_keys_sign(struct cf_keyring *kr, enum cf_deploy_key which, struct cf_span msg,
                            uint8_t sig[CF_ED25519_SIG]);
CF_MUST cf_err cf_keys_public(struct cf_keyring *kr, enum cf_deploy_key which,
                              uint8_t pub[CF_ED25519_PUB]);

/* A deployment key's public keys: the current version (signing since created_at) and,
 * after a rotation, the version before it, retired (its private key destroyed), whose
 * public key still checks what it signed during the overlap (IA9). */
struct cf_deploy_pubs {
	uint8_t current[CF_ED25519_PUB], previous[CF_ED25519_PUB];
	uint32_t version;
	int64_t created_at;
	bool has_previous;
};
CF_MUST cf_err cf_keys_public_keys(struct cf_keyring *kr, enum cf_deploy_key which,
                                   struct cf_deploy_pubs *out);
/* Rotates the token signing key: a new version signs from now on; the current one is
 * retired (its private key destroyed, its public key kept); the one retired before is
 * forgotten. Only CF_DKEY_TOKEN (CF_E_INVALID for the checkpoint key). */
CF_MUST cf_err cf_keys_deploy_rotate(struct cf_keyring *kr, enum cf_deploy_key which,
                                     uint32_t *new_version);

/* The keystore's schema (keystore.c). */
extern const struct cf_migration cf_keystore_schema[];
extern const size_t cf_keystore_schema_count;

#endif
