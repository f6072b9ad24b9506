/* coffre — the keyring (DESIGN §5): the keystore, the root key while unsealed, tenant
 * KEKs and purpose keys, deployment keys, rotation, rekey and shredding. Every other part
 * of coffre asks it for operations through the functions in keys.h; no key byte it holds
 * ever leaves this file except inside an envelope or a wrap.
 *
 * Locking: one read-write lock. Handles (seal, open, MAC, sign) take it shared; init,
 * unseal, seal, rekey, rotation and shredding take it exclusive for their whole keystore
 * transaction, so memory always matches what is durable. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keys/keys.h"

/* Fixed AES-SIV labels (the S2V slot where a nonce would go). */
static const char rk_label[] = "coffre/rk-wrap/v1";
static const char pk_label[] = "coffre/purpose-wrap/v1";

#define WRAP_MAX  (CF_GCM_NONCE + CF_PURPOSE_KEY + CF_AEAD_TAG) /* HSM: IV, key, tag */
#define AD_MAX_KR (32 + CF_TENANT_ID_MAX + 16)

static const char *const purpose_names[CF_PURPOSE_COUNT] = {"pseudonym", "token", "audit", "url"};

/* --- in-memory state ----------------------------------------------------------------- */
struct rootkey {
	enum cf_rk_provider provider;
	uint32_t version;
	struct cf_secbuf *key; /* file, shares: the 64-byte AES-SIV key */
	struct cf_siv *siv;
	struct cf_hsm *hsm; /* pkcs11: the key stays in the token */
};

struct kek_slot {
	uint32_t version, rk_version;
	bool active;
	int64_t created_at;
	struct cf_kek *kek;
};

struct pkey {
	enum cf_purpose purpose;
	uint32_t version, kek_version;
	struct cf_secbuf *key;
};

struct tenant {
	char id[CF_TENANT_ID_MAX + 1];
	bool suspended;
	int64_t rotation_s;
	struct kek_slot *keks;
	size_t nkeks;
	struct pkey *pkeys;
	size_t npkeys;
};

struct cf_keyring {
	pthread_rwlock_t lock;
	struct cf_store *ks;
	char data_dir[CF_PATH_MAX];
	char environment[16];
	char pkcs11_module[CF_PATH_MAX], pkcs11_token[64];
	struct cf_argon2_params argon2;
	int64_t rotation_s;
	unsigned rewrap_batch;
	/* ks_meta */
	bool initialized;
	char keystore_id[33];
	enum cf_rk_provider provider;
	uint32_t rk_version;
	unsigned shares_k;
	char meta_module[CF_PATH_MAX], meta_token[64];
	uint8_t rk_check[WRAP_MAX];
	size_t rk_check_len;
	/* unsealed state */
	bool sealed;
	struct rootkey rk;
	struct tenant **tenants; /* sorted by id */
	size_t ntenants, cap_tenants;
	struct cf_secbuf *dseed[CF_DKEY_COUNT];
	uint8_t dpub[CF_DKEY_COUNT][CF_ED25519_PUB];
	uint32_t dversion[CF_DKEY_COUNT];
	int64_t dcreated[CF_DKEY_COUNT];
	/* the version before, retired: its public key only, for the overlap (IA9) */
	bool dprev_set[CF_DKEY_COUNT];
	uint8_t dprev[CF_DKEY_COUNT][CF_ED25519_PUB];
	/* shares given so far while sealed */
	struct cf_secbuf *pending;
	unsigned npending;
	struct cf_rewrap_source sources[CF_REWRAP_SOURCES_MAX];
	size_t nsources;
	cf_keys_event_fn event;
	void *event_ctx;
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

const char *cf_rk_provider_name(enum cf_rk_provider p)
{
	switch (p) {
	case CF_RK_FILE: return "file";
	case CF_RK_SHARES: return "shares";
	case CF_RK_PKCS11: return "pkcs11";
	case CF_RK_NONE: break;
	}
	return "none";
}

cf_err cf_rk_provider_parse(const char *name, enum cf_rk_provider *out)
{
	static const enum cf_rk_provider all[] = {CF_RK_FILE, CF_RK_SHARES, CF_RK_PKCS11};
	for (size_t i = 0; i < 3; i++)
		if (strcmp(name, cf_rk_provider_name(all[i])) == 0) {
			*out = all[i];
			return CF_OK;
		}
	return cf_err_fail(CF_E_INVALID, "unknown root key provider '%s' (file, shares, pkcs11)",
	                   name);
}

static bool tenant_id_ok(const char *t)
{
	size_t n = t ? strlen(t) : 0;
	if (n == 0 || n > CF_TENANT_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* --- associated data for wraps ------------------------------------------------------- */
static size_t put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);
	p[0] = (uint8_t)n;
	for (size_t i = 0; i < n; i++) /* length-prefixed, not NUL-terminated */
		p[1 + i] = (uint8_t)s[i];
	return n + 1;
}

/* "coffre/kek/v1" | tenant | kek version | rk version */
static size_t ad_kek(uint8_t *ad, const char *tenant, uint32_t version, uint32_t rk_version)
{
	size_t n = put_str(ad, "coffre/kek/v1");
	n += put_str(ad + n, tenant);
	cf_be32_put(ad + n, version);
	cf_be32_put(ad + n + 4, rk_version);
	return n + 8;
}

/* "coffre/purpose/v1" | tenant | purpose | version | kek version */
static size_t ad_purpose(uint8_t *ad, const char *tenant, enum cf_purpose p, uint32_t version,
                         uint32_t kek_version)
{
	size_t n = put_str(ad, "coffre/purpose/v1");
	n += put_str(ad + n, tenant);
	ad[n++] = (uint8_t)p;
	cf_be32_put(ad + n, version);
	cf_be32_put(ad + n + 4, kek_version);
	return n + 8;
}

/* "coffre/deploy/v1" | which | version | rk version */
static size_t ad_deploy(uint8_t *ad, enum cf_deploy_key which, uint32_t version,
                        uint32_t rk_version)
{
	size_t n = put_str(ad, "coffre/deploy/v1");
	ad[n++] = (uint8_t)which;
	cf_be32_put(ad + n, version);
	cf_be32_put(ad + n + 4, rk_version);
	return n + 8;
}

static size_t ad_check(uint8_t *ad, uint32_t rk_version)
{
	size_t n = put_str(ad, "coffre/rk-check/v1");
	cf_be32_put(ad + n, rk_version);
	return n + 4;
}

/* --- the root key ------------------------------------------------------------------- */
static void rk_free(struct rootkey *rk)
{
	cf_siv_free(&rk->siv);
	cf_secbuf_free(&rk->key);
	cf_hsm_close(&rk->hsm);
	*rk = (struct rootkey){0};
}

static cf_err rk_from_key(struct rootkey *rk, enum cf_rk_provider p, uint32_t version,
                          struct cf_secbuf *key)
{
	*rk = (struct rootkey){.provider = p, .version = version, .key = key};
	cf_err err = cf_siv_new(key->ptr, &rk->siv);
	if (err)
		rk_free(rk);
	return err;
}

static cf_err rk_wrap(struct rootkey *rk, struct cf_span ad, struct cf_span key, uint8_t *out,
                      size_t *out_len)
{
	if (rk->hsm)
		return cf_hsm_wrap(rk->hsm, rk->version, ad, key, out, WRAP_MAX, out_len);
	CF_TRY(cf_siv_seal_with(rk->siv,
	                        (struct cf_span){(const uint8_t *)rk_label, sizeof rk_label - 1},
	                        ad, key, out));
	*out_len = key.len + CF_AEAD_TAG;
	return CF_OK;
}

static cf_err rk_unwrap(struct rootkey *rk, struct cf_span ad, struct cf_span wrapped,
                        struct cf_secbuf **out)
{
	if (rk->hsm)
		return cf_hsm_unwrap(rk->hsm, rk->version, ad, wrapped, out);
	CF_ENSURE(wrapped.len > CF_AEAD_TAG && wrapped.len <= WRAP_MAX,
	          cf_err_fail(CF_E_INTEGRITY, "a wrapped key has the wrong length"));
	struct cf_secbuf *k = NULL;
	CF_TRY(cf_secbuf_new(wrapped.len - CF_AEAD_TAG, &k));
	CF_ENSURE(k, CF_E_NOMEM);
	cf_err err = cf_siv_open_with(
	        rk->siv, (struct cf_span){(const uint8_t *)rk_label, sizeof rk_label - 1}, ad,
	        wrapped, k->ptr);
	if (err) {
		cf_secbuf_free(&k);
		return err;
	}
	*out = k;
	return CF_OK;
}

static void rk_file_path(const struct cf_keyring *kr, uint32_t version, char *out, size_t cap)
{
	(void)snprintf(out, cap, "%s/root-v%u.key", kr->data_dir, version);
}

/* Moves a key file left by an abandoned init or rekey out of the way (never deletes: it
 * may be an operator's mistake worth looking at). */
static void rk_file_set_aside(const struct cf_keyring *kr, uint32_t version)
{
	char path[CF_PATH_MAX + 32], aside[CF_PATH_MAX + 64];
	rk_file_path(kr, version, path, sizeof path);
	if (access(path, F_OK) != 0)
		return;
	(void)snprintf(aside, sizeof aside, "%s.abandoned-%lld", path, (long long)now_s());
	if (rename(path, aside) == 0)
		cf_log(CF_LOG_WARN, NULL, "rk_file_aside",
		       "moved an unused root key file from an interrupted init or rekey to %s",
		       aside);
}

/* Overwrites and removes a retired key file. */
static void rk_file_destroy(const struct cf_keyring *kr, uint32_t version)
{
	char path[CF_PATH_MAX + 32];
	rk_file_path(kr, version, path, sizeof path);
	uint8_t zero[CF_RK_FILE_LEN] = {0};
	FILE *f = fopen(path, "r+e");
	if (f) {
		(void)fwrite(zero, 1, sizeof zero, f);
		(void)fflush(f);
		(void)fsync(fileno(f));
		(void)fclose(f);
	}
	(void)unlink(path);
}

/* Makes a new root key with the provider in s. */
static cf_err rk_make(struct cf_keyring *kr, const struct cf_rk_secret *s, uint32_t version,
                      struct rootkey *out, char (*shares_out)[CF_SHARE_TEXT_MAX])
{
	struct cf_secbuf *key = NULL;
	switch (s->provider) {
	case CF_RK_FILE: {
		CF_ENSURE(s->passphrase.len >= 12,
		          cf_err_fail(CF_E_INVALID,
		                      "the passphrase must have at least 12 characters"));
		char path[CF_PATH_MAX + 32];
		rk_file_path(kr, version, path, sizeof path);
		rk_file_set_aside(kr, version);
		CF_TRY(cf_rootkey_file_create(path, s->passphrase, &kr->argon2, version, &key));
		CF_ENSURE(key, CF_E_INTERNAL);
		return rk_from_key(out, CF_RK_FILE, version, key);
	}
	case CF_RK_SHARES: {
		CF_ENSURE(s->k >= 2 && s->k <= s->n && s->n <= 16,
		          cf_err_fail(CF_E_INVALID, "shares need 2 <= threshold <= count <= 16"));
		CF_TRY(cf_secbuf_new(CF_RK_LEN, &key));
		CF_ENSURE(key, CF_E_INTERNAL);
		cf_err err = cf_crypto_random_key(key->ptr, CF_RK_LEN);
		if (err == CF_OK)
			err = cf_rootkey_split(key, version, s->k, s->n, shares_out);
		if (err) {
			cf_secbuf_free(&key);
			return err;
		}
		return rk_from_key(out, CF_RK_SHARES, version, key);
	}
	case CF_RK_PKCS11: {
		CF_ENSURE(kr->pkcs11_module[0] && kr->pkcs11_token[0],
		          cf_err_fail(CF_E_CONFIG,
		                      "keys.pkcs11_module and keys.pkcs11_token must be "
		                      "set to use the pkcs11 provider"));
		*out = (struct rootkey){.provider = CF_RK_PKCS11, .version = version};
		CF_TRY(cf_hsm_open(kr->pkcs11_module, kr->pkcs11_token, s->pin, &out->hsm));
		cf_err err = cf_hsm_generate_rk(out->hsm, version);
		if (err)
			rk_free(out);
		return err;
	}
	case CF_RK_NONE: break;
	}
	return cf_err_fail(CF_E_INVALID, "no root key provider given");
}

/* --- keystore rows ------------------------------------------------------------------ */
struct meta_row {
	bool found;
	char keystore_id[33], environment[16], provider[8], module[CF_PATH_MAX], token[64];
	int64_t rk_version, shares_k;
	uint8_t check[WRAP_MAX];
	size_t check_len;
};

static cf_err meta_row(const struct cf_row *row, void *ctx)
{
	struct meta_row *m = ctx;
	m->found = true;
	cf_span_to_str(cf_row_blob(row, 0), m->keystore_id, sizeof m->keystore_id);
	cf_span_to_str(cf_row_blob(row, 1), m->environment, sizeof m->environment);
	cf_span_to_str(cf_row_blob(row, 2), m->provider, sizeof m->provider);
	m->rk_version = cf_row_int(row, 3);
	struct cf_span c = cf_row_blob(row, 4);
	CF_ENSURE(c.len > 0 && c.len <= sizeof m->check,
	          cf_err_fail(CF_E_INTEGRITY, "the keystore's root key check value is damaged"));
	memcpy(m->check, c.ptr, c.len);
	m->check_len = c.len;
	m->shares_k = cf_row_int(row, 5);
	cf_span_to_str(cf_row_blob(row, 6), m->module, sizeof m->module);
	cf_span_to_str(cf_row_blob(row, 7), m->token, sizeof m->token);
	return CF_OK;
}

static cf_err meta_read(struct cf_tx *tx, void *ctx)
{
	static const char q[] = "SELECT keystore_id, environment, provider, rk_version, rk_check,"
	                        " shares_k, pkcs11_module, pkcs11_token FROM ks_meta WHERE id = 1";
	return cf_tx_query(tx, q, NULL, 0, meta_row, ctx);
}

/* Copies the durable meta row into kr. */
static cf_err meta_load(struct cf_keyring *kr)
{
	struct meta_row m = {0};
	CF_TRY(cf_store_read(kr->ks, NULL, meta_read, &m));
	kr->initialized = m.found;
	if (!m.found)
		return CF_OK;
	CF_TRY(cf_rk_provider_parse(m.provider, &kr->provider));
	CF_ENSURE(m.rk_version >= 1 && m.rk_version <= UINT32_MAX,
	          cf_err_fail(CF_E_INTEGRITY, "the keystore's root key version is damaged"));
	memcpy(kr->keystore_id, m.keystore_id, sizeof kr->keystore_id);
	kr->rk_version = (uint32_t)m.rk_version;
	CF_ENSURE(m.shares_k >= 0 && m.shares_k <= 16,
	          cf_err_fail(CF_E_INTEGRITY, "the keystore's share threshold is damaged"));
	kr->shares_k = (unsigned)m.shares_k;
	memcpy(kr->rk_check, m.check, m.check_len);
	kr->rk_check_len = m.check_len;
	(void)snprintf(kr->meta_module, sizeof kr->meta_module, "%s", m.module);
	(void)snprintf(kr->meta_token, sizeof kr->meta_token, "%s", m.token);
	if (strcmp(m.environment, kr->environment) != 0)
		return cf_err_fail(CF_E_CONFIG,
		                   "the keystore is labelled '%s' and this coffred runs as '%s': "
		                   "refusing to mix environments (ER7)",
		                   m.environment, kr->environment);
	return CF_OK;
}

/* --- tenants in memory -------------------------------------------------------------- */
static void tenant_free(struct tenant *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nkeks; i++)
		cf_kek_free(&t->keks[i].kek);
	for (size_t i = 0; i < t->npkeys; i++)
		cf_secbuf_free(&t->pkeys[i].key);
	free(t->keks);
	free(t->pkeys);
	free(t);
}

static size_t tenant_pos(const struct cf_keyring *kr, const char *id, size_t idlen, bool *found)
{
	size_t lo = 0, hi = kr->ntenants;
	*found = false;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *m = kr->tenants[mid]->id;
		size_t mlen = strlen(m);
		int c = memcmp(m, id, mlen < idlen ? mlen : idlen);
		if (c == 0)
			c = mlen < idlen ? -1 : mlen > idlen ? 1 : 0;
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct tenant *tenant_find(const struct cf_keyring *kr, struct cf_span id)
{
	bool found = false;
	size_t i = tenant_pos(kr, (const char *)id.ptr, id.len, &found);
	return found ? kr->tenants[i] : NULL;
}

static struct tenant *tenant_find_str(const struct cf_keyring *kr, const char *id)
{
	return tenant_find(kr, (struct cf_span){(const uint8_t *)id, strlen(id)});
}

static cf_err tenant_insert(struct cf_keyring *kr, struct tenant *t)
{
	bool found = false;
	size_t i = tenant_pos(kr, t->id, strlen(t->id), &found);
	CF_ENSURE(!found, cf_err_fail(CF_E_CONFLICT, "tenant '%s' already has keys", t->id));
	if (kr->ntenants == kr->cap_tenants) {
		size_t cap = kr->cap_tenants ? kr->cap_tenants * 2 : 16;
		struct tenant **n = realloc(kr->tenants, cap * sizeof(struct tenant *));
		CF_ENSURE(n, CF_E_NOMEM);
		kr->tenants = n;
		kr->cap_tenants = cap;
	}
	memmove(kr->tenants + i + 1, kr->tenants + i, (kr->ntenants - i) * sizeof(struct tenant *));
	kr->tenants[i] = t;
	kr->ntenants++;
	return CF_OK;
}

static void tenant_remove(struct cf_keyring *kr, const char *id)
{
	bool found = false;
	size_t i = tenant_pos(kr, id, strlen(id), &found);
	if (!found)
		return;
	tenant_free(kr->tenants[i]);
	memmove(kr->tenants + i, kr->tenants + i + 1,
	        (kr->ntenants - i - 1) * sizeof(struct tenant *));
	kr->ntenants--;
}

static struct kek_slot *kek_find(struct tenant *t, uint32_t version)
{
	for (size_t i = 0; i < t->nkeks; i++)
		if (t->keks[i].version == version)
			return &t->keks[i];
	return NULL;
}

static struct kek_slot *kek_active(struct tenant *t)
{
	for (size_t i = 0; i < t->nkeks; i++)
		if (t->keks[i].active)
			return &t->keks[i];
	return NULL;
}

static cf_err kek_add(struct tenant *t, struct kek_slot s)
{
	struct kek_slot *n = realloc(t->keks, (t->nkeks + 1) * sizeof *n);
	CF_ENSURE(n, CF_E_NOMEM);
	t->keks = n;
	t->keks[t->nkeks++] = s;
	return CF_OK;
}

static cf_err pkey_add(struct tenant *t, struct pkey p)
{
	struct pkey *n = realloc(t->pkeys, (t->npkeys + 1) * sizeof *n);
	CF_ENSURE(n, CF_E_NOMEM);
	t->pkeys = n;
	t->pkeys[t->npkeys++] = p;
	return CF_OK;
}

static struct pkey *pkey_latest(struct tenant *t, enum cf_purpose p)
{
	struct pkey *best = NULL;
	for (size_t i = 0; i < t->npkeys; i++)
		if (t->pkeys[i].purpose == p && (!best || t->pkeys[i].version > best->version))
			best = &t->pkeys[i];
	return best;
}

static void wipe_unsealed(struct cf_keyring *kr)
{
	for (size_t i = 0; i < kr->ntenants; i++)
		tenant_free(kr->tenants[i]);
	free(kr->tenants);
	kr->tenants = NULL;
	kr->ntenants = kr->cap_tenants = 0;
	for (size_t i = 0; i < CF_DKEY_COUNT; i++) {
		cf_secbuf_free(&kr->dseed[i]);
		kr->dprev_set[i] = false;
	}
	rk_free(&kr->rk);
	cf_secbuf_free(&kr->pending);
	kr->npending = 0;
	kr->sealed = true;
}

/* --- loading everything at unseal --------------------------------------------------- */
struct load_ctx {
	struct cf_keyring *kr;
};

static cf_err load_tenant_row(const struct cf_row *row, void *ctx)
{
	struct load_ctx *lc = ctx;
	struct tenant *t = calloc(1, sizeof *t);
	CF_ENSURE(t, CF_E_NOMEM);
	cf_span_to_str(cf_row_blob(row, 0), t->id, sizeof t->id);
	struct cf_span st = cf_row_blob(row, 1);
	t->suspended = st.len == 9 && memcmp(st.ptr, "suspended", 9) == 0;
	t->rotation_s = cf_row_int(row, 2);
	cf_err err = tenant_insert(lc->kr, t);
	if (err)
		tenant_free(t);
	return err;
}

static cf_err load_kek_row(const struct cf_row *row, void *ctx)
{
	struct load_ctx *lc = ctx;
	struct cf_keyring *kr = lc->kr;
	char id[CF_TENANT_ID_MAX + 1];
	cf_span_to_str(cf_row_blob(row, 0), id, sizeof id);
	struct tenant *t = tenant_find_str(kr, id);
	CF_ENSURE(t, cf_err_fail(CF_E_INTEGRITY, "keystore: a KEK of unknown tenant '%s'", id));
	struct kek_slot s = {.version = (uint32_t)cf_row_int(row, 1),
	                     .rk_version = (uint32_t)cf_row_int(row, 2),
	                     .created_at = cf_row_int(row, 5)};
	struct cf_span st = cf_row_blob(row, 4);
	s.active = st.len == 6 && memcmp(st.ptr, "active", 6) == 0;
	CF_ENSURE(s.rk_version == kr->rk.version,
	          cf_err_fail(CF_E_INTEGRITY,
	                      "keystore: KEK %s/%u is wrapped by root key v%u, not the current v%u",
	                      id, s.version, s.rk_version, kr->rk.version));
	uint8_t ad[AD_MAX_KR];
	size_t nad = ad_kek(ad, id, s.version, s.rk_version);
	struct cf_secbuf *raw = NULL;
	cf_err err = rk_unwrap(&kr->rk, (struct cf_span){ad, nad}, cf_row_blob(row, 3), &raw);
	if (err)
		return cf_err_fail(err == CF_E_INTEGRITY ? CF_E_INTEGRITY : err,
		                   "keystore: KEK %s/%u does not unwrap (damaged row?)", id,
		                   s.version);
	CF_ENSURE(raw && raw->len == CF_SIV_KEY, CF_E_INTEGRITY);
	err = cf_kek_new(raw->ptr, &s.kek);
	cf_secbuf_free(&raw);
	CF_TRY(err);
	err = kek_add(t, s);
	if (err)
		cf_kek_free(&s.kek);
	return err;
}

static cf_err load_purpose_row(const struct cf_row *row, void *ctx)
{
	struct load_ctx *lc = ctx;
	char id[CF_TENANT_ID_MAX + 1];
	cf_span_to_str(cf_row_blob(row, 0), id, sizeof id);
	struct tenant *t = tenant_find_str(lc->kr, id);
	CF_ENSURE(t, cf_err_fail(CF_E_INTEGRITY, "keystore: a purpose key of unknown tenant"));
	int64_t purpose = cf_row_int(row, 1);
	CF_ENSURE(purpose >= 0 && purpose < CF_PURPOSE_COUNT,
	          cf_err_fail(CF_E_INTEGRITY, "keystore: unknown key purpose %lld",
	                      (long long)purpose));
	struct pkey p = {.purpose = (enum cf_purpose)purpose,
	                 .version = (uint32_t)cf_row_int(row, 2),
	                 .kek_version = (uint32_t)cf_row_int(row, 3)};
	struct kek_slot *s = kek_find(t, p.kek_version);
	CF_ENSURE(s, cf_err_fail(CF_E_INTEGRITY,
	                         "keystore: a purpose key of %s under a missing KEK", id));
	struct cf_span w = cf_row_blob(row, 4);
	CF_ENSURE(w.len == CF_PURPOSE_KEY + CF_AEAD_TAG,
	          cf_err_fail(CF_E_INTEGRITY, "keystore: a purpose key of %s is damaged", id));
	CF_TRY(cf_secbuf_new(CF_PURPOSE_KEY, &p.key));
	CF_ENSURE(p.key, CF_E_NOMEM);
	uint8_t ad[AD_MAX_KR];
	size_t nad = ad_purpose(ad, id, p.purpose, p.version, p.kek_version);
	cf_err err = cf_kek_unwrap(s->kek,
	                           (struct cf_span){(const uint8_t *)pk_label, sizeof pk_label - 1},
	                           (struct cf_span){ad, nad}, w, p.key->ptr);
	if (err == CF_OK)
		err = pkey_add(t, p);
	if (err) {
		cf_secbuf_free(&p.key);
		return cf_err_fail(err, "keystore: a purpose key of %s does not unwrap", id);
	}
	return CF_OK;
}

static cf_err load_deploy_row(const struct cf_row *row, void *ctx)
{
	struct load_ctx *lc = ctx;
	struct cf_keyring *kr = lc->kr;
	int64_t which = cf_row_int(row, 0);
	CF_ENSURE(which >= 0 && which < CF_DKEY_COUNT, CF_E_INTEGRITY);
	uint32_t version = (uint32_t)cf_row_int(row, 1), rkv = (uint32_t)cf_row_int(row, 2);
	if (cf_row_blob(row, 3).len == 0) {
		/* A retired version: its private key destroyed at the rotation, its public key
		 * kept to check what it signed during the overlap. */
		struct cf_span pub = cf_row_blob(row, 4);
		CF_ENSURE(pub.len == CF_ED25519_PUB,
		          cf_err_fail(CF_E_INTEGRITY, "keystore: a deployment key is damaged"));
		memcpy(kr->dprev[which], pub.ptr, CF_ED25519_PUB);
		kr->dprev_set[which] = true;
		return CF_OK;
	}
	uint8_t ad[AD_MAX_KR];
	size_t nad = ad_deploy(ad, (enum cf_deploy_key)which, version, rkv);
	struct cf_secbuf *seed = NULL;
	CF_TRY(rk_unwrap(&kr->rk, (struct cf_span){ad, nad}, cf_row_blob(row, 3), &seed));
	CF_ENSURE(seed, CF_E_INTERNAL);
	struct cf_span pub = cf_row_blob(row, 4);
	if (seed->len != CF_ED25519_SEED || pub.len != CF_ED25519_PUB) {
		cf_secbuf_free(&seed);
		return cf_err_fail(CF_E_INTEGRITY, "keystore: a deployment key is damaged");
	}
	cf_secbuf_free(&kr->dseed[which]); /* the latest version wins (rows come in order) */
	kr->dseed[which] = seed;
	memcpy(kr->dpub[which], pub.ptr, CF_ED25519_PUB);
	kr->dversion[which] = version;
	kr->dcreated[which] = cf_row_int(row, 5);
	return CF_OK;
}

static cf_err load_all(struct cf_tx *tx, void *ctx)
{
	static const char q_t[] = "SELECT tenant_id, state, rotation_s FROM ks_tenant";
	static const char q_k[] =
	        "SELECT tenant_id, version, rk_version, wrapped, state, created_at"
	        " FROM ks_kek WHERE state <> 'destroyed'";
	static const char q_p[] = "SELECT tenant_id, purpose, version, kek_version, wrapped"
	                          " FROM ks_purpose";
	static const char q_d[] = "SELECT name, version, rk_version, wrapped, public_key,"
	                          " created_at FROM ks_deploy ORDER BY name, version";
	CF_TRY(cf_tx_query(tx, q_t, NULL, 0, load_tenant_row, ctx));
	CF_TRY(cf_tx_query(tx, q_k, NULL, 0, load_kek_row, ctx));
	CF_TRY(cf_tx_query(tx, q_p, NULL, 0, load_purpose_row, ctx));
	return cf_tx_query(tx, q_d, NULL, 0, load_deploy_row, ctx);
}

/* With kr->rk set: checks it against the keystore, then loads every key. On failure
 * everything is wiped again. */
static cf_err finish_unseal(struct cf_keyring *kr)
{
	uint8_t ad[AD_MAX_KR];
	size_t nad = ad_check(ad, kr->rk.version);
	struct cf_secbuf *probe = NULL;
	cf_err err = CF_OK;
	if (kr->rk.version != kr->rk_version)
		err = cf_err_fail(CF_E_UNSEAL_FAILED,
		                  "the root key given is version %u; the keystore needs version %u",
		                  kr->rk.version, kr->rk_version);
	if (err == CF_OK &&
	    rk_unwrap(&kr->rk, (struct cf_span){ad, nad},
	              (struct cf_span){kr->rk_check, kr->rk_check_len}, &probe) != CF_OK)
		err = cf_err_fail(CF_E_UNSEAL_FAILED,
		                  "the root key does not match this keystore's check value");
	cf_secbuf_free(&probe);
	if (err == CF_OK) {
		kr->sealed = false;
		struct load_ctx lc = {.kr = kr};
		err = cf_store_read(kr->ks, NULL, load_all, &lc);
	}
	if (err) {
		wipe_unsealed(kr);
		return err;
	}
	cf_secbuf_free(&kr->pending);
	kr->npending = 0;
	cf_log(CF_LOG_INFO, NULL, "unsealed", "unsealed: root key v%u (%s), %zu tenants",
	       kr->rk_version, cf_rk_provider_name(kr->provider), kr->ntenants);
	return CF_OK;
}

/* --- open, close, status ------------------------------------------------------------ */
cf_err cf_keyring_open(const struct cf_keyring_opts *o, struct cf_keyring **out)
{
	struct cf_keyring *kr = calloc(1, sizeof *kr);
	CF_ENSURE(kr, CF_E_NOMEM);
	pthread_rwlock_init(&kr->lock, NULL);
	kr->sealed = true;
	(void)snprintf(kr->data_dir, sizeof kr->data_dir, "%s", o->data_dir ? o->data_dir : ".");
	(void)snprintf(kr->environment, sizeof kr->environment, "%s",
	               o->environment ? o->environment : "production");
	(void)snprintf(kr->pkcs11_module, sizeof kr->pkcs11_module, "%s",
	               o->pkcs11_module ? o->pkcs11_module : "");
	(void)snprintf(kr->pkcs11_token, sizeof kr->pkcs11_token, "%s",
	               o->pkcs11_token ? o->pkcs11_token : "");
	kr->argon2 = o->argon2 ? *o->argon2 : cf_argon2_defaults;
	kr->rotation_s = o->rotation_s > 0 ? o->rotation_s : CF_ROTATION_DEFAULT_S;
	kr->rewrap_batch = o->rewrap_batch ? o->rewrap_batch : 500;
	cf_err err = CF_OK;
	if (strcmp(kr->environment, "production") != 0 &&
	    strcmp(kr->environment, "development") != 0)
		err = cf_err_fail(CF_E_CONFIG,
		                  "keys.environment must be production or development");
	struct cf_store_opts so = {
	        .url = o->store_url,
	        .migrate_url = o->migrate_url && o->migrate_url[0] ? o->migrate_url : NULL,
	        .migrations = cf_keystore_schema,
	        .nmigrations = cf_keystore_schema_count,
	        .readers = 2,
	        .pool = 2,
	        .migrate = true};
	if (err == CF_OK)
		err = cf_store_open(&so, &kr->ks);
	if (err == CF_OK)
		err = meta_load(kr);
	if (err) {
		cf_keyring_close(&kr);
		return err;
	}
	*out = kr;
	return CF_OK;
}

void cf_keyring_close(struct cf_keyring **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_keyring *kr = *pp;
	*pp = NULL;
	wipe_unsealed(kr);
	cf_store_close(&kr->ks);
	pthread_rwlock_destroy(&kr->lock);
	free(kr);
}

void cf_keys_status(struct cf_keyring *kr, struct cf_keys_status *o)
{
	pthread_rwlock_rdlock(&kr->lock);
	*o = (struct cf_keys_status){.initialized = kr->initialized,
	                             .sealed = kr->sealed,
	                             .provider = kr->initialized ? kr->provider : CF_RK_NONE,
	                             .rk_version = kr->rk_version,
	                             .shares_threshold =
	                                     kr->provider == CF_RK_SHARES ? kr->shares_k : 0,
	                             .shares_given = kr->npending,
	                             .tenants = kr->ntenants};
	memcpy(o->environment, kr->environment, sizeof o->environment);
	memcpy(o->keystore_id, kr->keystore_id, sizeof o->keystore_id);
	pthread_rwlock_unlock(&kr->lock);
}

bool cf_keys_is_sealed(struct cf_keyring *kr)
{
	pthread_rwlock_rdlock(&kr->lock);
	bool s = kr->sealed;
	pthread_rwlock_unlock(&kr->lock);
	return s;
}

/* --- init --------------------------------------------------------------------------- */
struct dkey_new {
	uint8_t wrapped[WRAP_MAX];
	size_t wlen;
	uint8_t pub[CF_ED25519_PUB];
};

struct init_tx {
	struct cf_keyring *kr;
	const char *keystore_id, *provider;
	uint32_t rk_version;
	const uint8_t *check;
	size_t check_len;
	unsigned shares_k;
	struct dkey_new d[CF_DKEY_COUNT];
};

static cf_err init_fn(struct cf_tx *tx, void *ctx)
{
	struct init_tx *it = ctx;
	struct cf_keyring *kr = it->kr;
	int64_t now = now_s();
	const char *mod = it->provider[0] == 'p' ? kr->pkcs11_module : "";
	const char *tok = it->provider[0] == 'p' ? kr->pkcs11_token : "";
	struct cf_val m[] = {CF_V_TEXT(it->keystore_id),
	                     CF_V_TEXT(kr->environment),
	                     CF_V_TEXT(it->provider),
	                     CF_V_INT(it->rk_version),
	                     CF_V_BLOB(it->check, it->check_len),
	                     CF_V_INT(it->shares_k),
	                     CF_V_TEXT(mod),
	                     CF_V_TEXT(tok),
	                     CF_V_INT(now)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO ks_meta (id, keystore_id, environment, provider, rk_version,"
	                  " rk_check, shares_k, pkcs11_module, pkcs11_token, created_at)"
	                  " VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9)",
	                  m, 9, NULL));
	struct cf_val r[] = {CF_V_INT(it->rk_version), CF_V_TEXT(it->provider), CF_V_INT(now)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO ks_rk (version, provider, created_at) VALUES ($1, $2, $3)",
	                  r, 3, NULL));
	for (unsigned i = 0; i < CF_DKEY_COUNT; i++) {
		struct cf_val d[] = {CF_V_INT(i), CF_V_INT(it->rk_version),
		                     CF_V_BLOB(it->d[i].wrapped, it->d[i].wlen),
		                     CF_V_BLOB(it->d[i].pub, CF_ED25519_PUB), CF_V_INT(now)};
		CF_TRY(cf_tx_exec(
		        tx,
		        "INSERT INTO ks_deploy (name, version, rk_version, wrapped, public_key,"
		        " created_at) VALUES ($1, 1, $2, $3, $4, $5)",
		        d, 5, NULL));
	}
	return CF_OK;
}

/* A fresh check value and deployment keys under rk (init). */
static cf_err make_check(struct rootkey *rk, uint8_t *check, size_t *check_len)
{
	uint8_t probe[32], ad[AD_MAX_KR];
	CF_TRY(cf_crypto_random(probe, sizeof probe));
	size_t nad = ad_check(ad, rk->version);
	cf_err err = rk_wrap(rk, (struct cf_span){ad, nad}, (struct cf_span){probe, sizeof probe},
	                     check, check_len);
	cf_wipe(probe, sizeof probe);
	return err;
}

cf_err cf_keys_init(struct cf_keyring *kr, const struct cf_rk_secret *s,
                    char (*shares_out)[CF_SHARE_TEXT_MAX])
{
	pthread_rwlock_wrlock(&kr->lock);
	cf_err err = CF_OK;
	struct init_tx it = {.kr = kr, .rk_version = 1};
	uint8_t check[WRAP_MAX], seed[CF_ED25519_SEED];
	char ksid[33];
	struct rootkey rk = {0};
	if (kr->initialized) {
		err = cf_err_fail(CF_E_CONFLICT, "the vault is already initialized");
		goto out;
	}
	CF_TRY_OUT(rk_make(kr, s, 1, &rk, shares_out), out);
	CF_TRY_OUT(make_check(&rk, check, &it.check_len), out_rk);
	for (unsigned i = 0; i < CF_DKEY_COUNT; i++) {
		uint8_t ad[AD_MAX_KR];
		size_t nad = ad_deploy(ad, (enum cf_deploy_key)i, 1, 1);
		CF_TRY_OUT(cf_crypto_random_key(seed, sizeof seed), out_rk);
		CF_TRY_OUT(cf_ed25519_keypair(seed, it.d[i].pub), out_rk);
		CF_TRY_OUT(rk_wrap(&rk, (struct cf_span){ad, nad},
		                   (struct cf_span){seed, sizeof seed}, it.d[i].wrapped,
		                   &it.d[i].wlen),
		           out_rk);
	}
	uint8_t idb[16];
	CF_TRY_OUT(cf_crypto_random(idb, sizeof idb), out_rk);
	cf_hex_encode(idb, sizeof idb, ksid);
	it.keystore_id = ksid;
	it.provider = cf_rk_provider_name(s->provider);
	it.check = check;
	it.shares_k = s->provider == CF_RK_SHARES ? s->k : 0;
	CF_TRY_OUT(cf_store_write_wait(kr->ks, NULL, init_fn, &it), out_rk);
	CF_TRY_OUT(meta_load(kr), out_rk);
	wipe_unsealed(kr);
	kr->rk = rk;
	rk = (struct rootkey){0};
	err = finish_unseal(kr);
	if (err == CF_OK)
		cf_log(CF_LOG_INFO, NULL, "initialized",
		       "initialized: keystore %s, root key v1 (%s), environment %s", ksid,
		       it.provider, kr->environment);
	goto out;
out_rk:
	if (s->provider == CF_RK_FILE)
		rk_file_set_aside(kr, 1);
	rk_free(&rk);
out:
	cf_wipe(seed, sizeof seed);
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

/* --- unseal, seal ------------------------------------------------------------------- */
cf_err cf_keys_unseal(struct cf_keyring *kr, struct cf_span secret, bool *done)
{
	*done = false;
	pthread_rwlock_wrlock(&kr->lock);
	cf_err err = CF_OK;
	if (!kr->initialized) {
		err = cf_err_fail(CF_E_NOT_INITIALIZED, "the vault is not initialized");
		goto out;
	}
	if (!kr->sealed) {
		err = cf_err_fail(CF_E_CONFLICT, "the vault is already unsealed");
		goto out;
	}
	struct cf_secbuf *key = NULL;
	uint32_t version = 0;
	switch (kr->provider) {
	case CF_RK_FILE: {
		char path[CF_PATH_MAX + 32];
		rk_file_path(kr, kr->rk_version, path, sizeof path);
		CF_TRY_OUT(cf_rootkey_file_open(path, secret, &key, &version), out);
		CF_ENSURE_OUT(key, CF_E_INTERNAL, out);
		CF_TRY_OUT(rk_from_key(&kr->rk, CF_RK_FILE, version, key), out);
		break;
	}
	case CF_RK_SHARES: {
		CF_ENSURE_OUT(secret.len > 0 && secret.len < CF_SHARE_TEXT_MAX,
		              cf_err_fail(CF_E_INVALID,
		                          "a share is one line of at most %u characters",
		                          CF_SHARE_TEXT_MAX - 1),
		              out);
		if (!kr->pending)
			CF_TRY_OUT(cf_secbuf_new((size_t)kr->shares_k * CF_SHARE_TEXT_MAX,
			                         &kr->pending),
			           out);
		CF_ENSURE_OUT(kr->pending, CF_E_INTERNAL, out);
		char(*sh)[CF_SHARE_TEXT_MAX] = (char(*)[CF_SHARE_TEXT_MAX])(void *)kr->pending->ptr;
		for (unsigned i = 0; i < kr->npending; i++)
			CF_ENSURE_OUT(strlen(sh[i]) != secret.len ||
			                      memcmp(sh[i], secret.ptr, secret.len) != 0,
			              cf_err_fail(CF_E_INVALID, "this share was already given"),
			              out);
		memcpy(sh[kr->npending], secret.ptr, secret.len);
		sh[kr->npending][secret.len] = '\0';
		const char *all[16];
		for (unsigned i = 0; i <= kr->npending; i++)
			all[i] = sh[i];
		/* Each share is checked as it comes: well-formed, of this root key, new. */
		uint32_t sv = 0;
		unsigned sk = 0;
		err = cf_rootkey_shares_check(all, kr->npending + 1, &sv, &sk);
		if (err == CF_OK && (sv != kr->rk_version || sk != kr->shares_k))
			err = cf_err_fail(
			        CF_E_INVALID,
			        "this share is of root key v%u (threshold %u); the keystore "
			        "needs v%u (threshold %u)",
			        sv, sk, kr->rk_version, kr->shares_k);
		if (err) {
			cf_wipe(sh[kr->npending], CF_SHARE_TEXT_MAX);
			goto out;
		}
		if (++kr->npending < kr->shares_k)
			goto out;
		err = cf_rootkey_combine(all, kr->npending, &key, &version);
		cf_secbuf_free(&kr->pending);
		kr->npending = 0;
		CF_TRY_OUT(err, out);
		CF_ENSURE_OUT(key, CF_E_INTERNAL, out);
		CF_TRY_OUT(rk_from_key(&kr->rk, CF_RK_SHARES, version, key), out);
		break;
	}
	case CF_RK_PKCS11:
		kr->rk = (struct rootkey){.provider = CF_RK_PKCS11, .version = kr->rk_version};
		CF_TRY_OUT(cf_hsm_open(kr->meta_module, kr->meta_token, secret, &kr->rk.hsm), out);
		break;
	case CF_RK_NONE: err = CF_E_INTERNAL; goto out;
	}
	err = finish_unseal(kr);
	*done = err == CF_OK;
out:
	if (err && kr->sealed && (kr->rk.siv || kr->rk.hsm))
		rk_free(&kr->rk);
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

void cf_keys_unseal_reset(struct cf_keyring *kr)
{
	pthread_rwlock_wrlock(&kr->lock);
	cf_secbuf_free(&kr->pending);
	kr->npending = 0;
	pthread_rwlock_unlock(&kr->lock);
}

void cf_keys_seal(struct cf_keyring *kr)
{
	pthread_rwlock_wrlock(&kr->lock);
	bool was = !kr->sealed;
	wipe_unsealed(kr);
	pthread_rwlock_unlock(&kr->lock);
	if (was)
		cf_log(CF_LOG_INFO, NULL, "sealed", "sealed: every key wiped from memory");
}

/* Callers hold the lock; the common refusals of handles and tenant operations. */
static cf_err need_unsealed(const struct cf_keyring *kr)
{
	if (!kr->initialized)
		return cf_err_fail(CF_E_NOT_INITIALIZED, "the vault is not initialized");
	if (kr->sealed)
		return cf_err_fail(CF_E_SEALED, "the vault is sealed");
	return CF_OK;
}

/* --- rekey -------------------------------------------------------------------------- */
struct rewrapped {
	char tenant[CF_TENANT_ID_MAX + 1];
	uint32_t version;
	uint8_t w[WRAP_MAX];
	size_t wlen;
};

struct rekey_tx {
	struct cf_keyring *kr;
	struct rootkey *nrk;
	const char *provider, *module, *token;
	unsigned shares_k;
	uint8_t check[WRAP_MAX];
	size_t check_len;
	struct rewrapped *keks;
	size_t nkeks;
	struct dkey_new d[CF_DKEY_COUNT];
};

static cf_err rekey_fn(struct cf_tx *tx, void *ctx)
{
	struct rekey_tx *r = ctx;
	int64_t now = now_s();
	for (size_t i = 0; i < r->nkeks; i++) {
		struct cf_val v[] = {CF_V_INT(r->nrk->version),
		                     CF_V_BLOB(r->keks[i].w, r->keks[i].wlen),
		                     CF_V_TEXT(r->keks[i].tenant), CF_V_INT(r->keks[i].version)};
		int64_t n = 0;
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE ks_kek SET rk_version = $1, wrapped = $2"
		                  " WHERE tenant_id = $3 AND version = $4 AND state <> 'destroyed'",
		                  v, 4, &n));
		CF_ENSURE(n == 1,
		          cf_err_fail(CF_E_CONFLICT, "the keystore changed during the rekey"));
	}
	/* Deployment keys: each current version is rewrapped under the new RK (a retired
	 * version holds no private key: nothing to rewrap). */
	for (unsigned i = 0; i < CF_DKEY_COUNT; i++) {
		struct cf_val d[] = {CF_V_INT(i), CF_V_INT(r->nrk->version),
		                     CF_V_BLOB(r->d[i].wrapped, r->d[i].wlen),
		                     CF_V_INT(r->kr->dversion[i])};
		int64_t n = 0;
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE ks_deploy SET rk_version = $2, wrapped = $3"
		                  " WHERE name = $1 AND version = $4",
		                  d, 4, &n));
		CF_ENSURE(n == 1,
		          cf_err_fail(CF_E_CONFLICT, "the keystore changed during the rekey"));
	}
	(void)now;
	struct cf_val m[] = {CF_V_TEXT(r->provider),
	                     CF_V_INT(r->nrk->version),
	                     CF_V_BLOB(r->check, r->check_len),
	                     CF_V_INT(r->shares_k),
	                     CF_V_TEXT(r->module),
	                     CF_V_TEXT(r->token),
	                     CF_V_INT(r->kr->rk_version)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE ks_meta SET provider = $1, rk_version = $2, rk_check = $3,"
	                  " shares_k = $4, pkcs11_module = $5, pkcs11_token = $6"
	                  " WHERE id = 1 AND rk_version = $7",
	                  m, 7, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT, "the keystore changed during the rekey"));
	struct cf_val old[] = {CF_V_INT(now), CF_V_INT(r->kr->rk_version)};
	CF_TRY(cf_tx_exec(tx, "UPDATE ks_rk SET retired_at = $1 WHERE version = $2", old, 2, NULL));
	struct cf_val nv[] = {CF_V_INT(r->nrk->version), CF_V_TEXT(r->provider), CF_V_INT(now)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO ks_rk (version, provider, created_at) VALUES ($1, $2, $3)",
	                  nv, 3, NULL));
	char kid[32];
	(void)snprintf(kid, sizeof kid, "rk/%u", r->kr->rk_version);
	struct cf_val dv[] = {CF_V_TEXT(kid), CF_V_INT(now), CF_V_TEXT("rekey")};
	return cf_tx_exec(
	        tx, "INSERT INTO ks_destroyed (key_id, destroyed_at, reason) VALUES ($1, $2, $3)",
	        dv, 3, NULL);
}

cf_err cf_keys_rekey(struct cf_keyring *kr, const struct cf_rk_secret *s,
                     char (*shares_out)[CF_SHARE_TEXT_MAX])
{
	pthread_rwlock_wrlock(&kr->lock);
	cf_err err = need_unsealed(kr);
	struct rootkey nrk = {0};
	struct rekey_tx r = {.kr = kr, .nrk = &nrk};
	uint32_t old_version = kr->rk_version;
	enum cf_rk_provider old_provider = kr->provider;
	CF_TRY_OUT(err, out);
	CF_TRY_OUT(rk_make(kr, s, kr->rk_version + 1, &nrk, shares_out), out);
	size_t total = 0;
	for (size_t i = 0; i < kr->ntenants; i++)
		total += kr->tenants[i]->nkeks;
	r.keks = calloc(total ? total : 1, sizeof *r.keks);
	CF_ENSURE_OUT(r.keks, CF_E_NOMEM, out_nrk);
	for (size_t i = 0; i < kr->ntenants; i++) {
		struct tenant *t = kr->tenants[i];
		for (size_t j = 0; j < t->nkeks; j++) {
			struct rewrapped *w = &r.keks[r.nkeks++];
			(void)snprintf(w->tenant, sizeof w->tenant, "%s", t->id);
			w->version = t->keks[j].version;
			uint8_t ad[AD_MAX_KR];
			size_t nad = ad_kek(ad, t->id, w->version, nrk.version);
			CF_TRY_OUT(rk_wrap(&nrk, (struct cf_span){ad, nad},
			                   cf_kek_bytes(t->keks[j].kek), w->w, &w->wlen),
			           out_nrk);
		}
	}
	for (unsigned i = 0; i < CF_DKEY_COUNT; i++) {
		CF_ENSURE_OUT(kr->dseed[i],
		              cf_err_fail(CF_E_INTEGRITY, "a deployment key is missing"), out_nrk);
		uint8_t ad[AD_MAX_KR];
		size_t nad = ad_deploy(ad, (enum cf_deploy_key)i, kr->dversion[i], nrk.version);
		memcpy(r.d[i].pub, kr->dpub[i], CF_ED25519_PUB);
		CF_TRY_OUT(rk_wrap(&nrk, (struct cf_span){ad, nad},
		                   (struct cf_span){kr->dseed[i]->ptr, kr->dseed[i]->len},
		                   r.d[i].wrapped, &r.d[i].wlen),
		           out_nrk);
	}
	CF_TRY_OUT(make_check(&nrk, r.check, &r.check_len), out_nrk);
	r.provider = cf_rk_provider_name(s->provider);
	r.module = s->provider == CF_RK_PKCS11 ? kr->pkcs11_module : "";
	r.token = s->provider == CF_RK_PKCS11 ? kr->pkcs11_token : "";
	r.shares_k = s->provider == CF_RK_SHARES ? s->k : 0;
	/* The one point of no return: before it nothing changed, after it all has. */
	CF_TRY_OUT(cf_store_write_wait(kr->ks, NULL, rekey_fn, &r), out_nrk);
	rk_free(&kr->rk);
	kr->rk = nrk;
	nrk = (struct rootkey){0};
	for (size_t i = 0; i < kr->ntenants; i++)
		for (size_t j = 0; j < kr->tenants[i]->nkeks; j++)
			kr->tenants[i]->keks[j].rk_version = kr->rk.version;
	err = meta_load(kr);
	if (old_provider == CF_RK_FILE)
		rk_file_destroy(kr, old_version);
	cf_log(CF_LOG_INFO, NULL, "rekeyed",
	       "rekeyed: root key v%u (%s) replaced v%u (%s); %zu KEK versions rewrapped",
	       kr->rk_version, r.provider, old_version, cf_rk_provider_name(old_provider), r.nkeks);
	goto out;
out_nrk:
	if (s->provider == CF_RK_FILE)
		rk_file_set_aside(kr, old_version + 1);
	rk_free(&nrk);
out:
	if (r.keks) {
		cf_wipe(r.keks, (r.nkeks ? r.nkeks : 1) * sizeof *r.keks);
		free(r.keks);
	}
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

/* --- tenants ------------------------------------------------------------------------ */
struct newkek {
	uint32_t version;
	uint8_t w[WRAP_MAX];
	size_t wlen;
	struct cf_kek *kek;
};

/* A fresh KEK version for tenant t: made, wrapped by the RK, prepared. */
static cf_err kek_make(struct cf_keyring *kr, const char *tenant, uint32_t version,
                       struct newkek *nk)
{
	struct cf_secbuf *raw = NULL;
	CF_TRY(cf_secbuf_new(CF_SIV_KEY, &raw));
	CF_ENSURE(raw, CF_E_NOMEM);
	nk->version = version;
	uint8_t ad[AD_MAX_KR];
	size_t nad = ad_kek(ad, tenant, version, kr->rk.version);
	cf_err err = cf_crypto_random_key(raw->ptr, raw->len);
	if (err == CF_OK)
		err = rk_wrap(&kr->rk, (struct cf_span){ad, nad},
		              (struct cf_span){raw->ptr, raw->len}, nk->w, &nk->wlen);
	if (err == CF_OK)
		err = cf_kek_new(raw->ptr, &nk->kek);
	cf_secbuf_free(&raw);
	return err;
}

struct wrapped_pk {
	enum cf_purpose purpose;
	uint32_t version;
	uint8_t w[CF_PURPOSE_KEY + CF_AEAD_TAG];
	struct cf_secbuf *key; /* create only */
};

static cf_err pk_wrap(const char *tenant, struct cf_kek *kek, uint32_t kek_version,
                      struct wrapped_pk *p, const uint8_t *key)
{
	uint8_t ad[AD_MAX_KR];
	size_t nad = ad_purpose(ad, tenant, p->purpose, p->version, kek_version);
	return cf_kek_wrap(kek, (struct cf_span){(const uint8_t *)pk_label, sizeof pk_label - 1},
	                   (struct cf_span){ad, nad}, (struct cf_span){key, CF_PURPOSE_KEY}, p->w);
}

struct create_tx {
	const char *tenant;
	int64_t rotation_s;
	uint32_t rk_version;
	struct newkek *nk;
	struct wrapped_pk pk[CF_PURPOSE_COUNT];
};

static cf_err count_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

static cf_err create_fn(struct cf_tx *tx, void *ctx)
{
	struct create_tx *c = ctx;
	int64_t now = now_s(), shredded = 0;
	char first[CF_TENANT_ID_MAX + 16];
	(void)snprintf(first, sizeof first, "kek/%s/1", c->tenant);
	struct cf_val d[] = {CF_V_TEXT(first)};
	CF_TRY(cf_tx_query(tx, "SELECT count(*) FROM ks_destroyed WHERE key_id = $1", d, 1,
	                   count_row, &shredded));
	CF_ENSURE(shredded == 0,
	          cf_err_fail(CF_E_CONFLICT, "tenant id '%s' was shredded; ids are never reused",
	                      c->tenant));
	struct cf_val t[] = {CF_V_TEXT(c->tenant), CF_V_INT(c->rotation_s), CF_V_INT(now)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO ks_tenant (tenant_id, state, rotation_s, created_at)"
	                  " VALUES ($1, 'active', $2, $3)",
	                  t, 3, NULL));
	struct cf_val k[] = {CF_V_TEXT(c->tenant), CF_V_INT(c->nk->version),
	                     CF_V_INT(c->rk_version), CF_V_BLOB(c->nk->w, c->nk->wlen),
	                     CF_V_INT(now)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO ks_kek (tenant_id, version, rk_version, wrapped, state,"
	                  " created_at) VALUES ($1, $2, $3, $4, 'active', $5)",
	                  k, 5, NULL));
	for (unsigned i = 0; i < CF_PURPOSE_COUNT; i++) {
		struct cf_val p[] = {CF_V_TEXT(c->tenant),
		                     CF_V_INT(c->pk[i].purpose),
		                     CF_V_INT(c->pk[i].version),
		                     CF_V_INT(c->nk->version),
		                     CF_V_BLOB(c->pk[i].w, sizeof c->pk[i].w),
		                     CF_V_INT(now)};
		CF_TRY(cf_tx_exec(
		        tx,
		        "INSERT INTO ks_purpose (tenant_id, purpose, version, kek_version,"
		        " wrapped, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
		        p, 6, NULL));
	}
	return CF_OK;
}

cf_err cf_keys_tenant_create(struct cf_keyring *kr, const char *tenant, int64_t rotation_s)
{
	CF_ENSURE(tenant_id_ok(tenant),
	          cf_err_fail(CF_E_INVALID, "a tenant id is 1 to 64 of a-z, 0-9, '-' and '_'"));
	CF_ENSURE(rotation_s >= 0 && rotation_s <= 3650LL * 86400,
	          cf_err_fail(CF_E_OUT_OF_RANGE, "the rotation period is 1 s to 3650 days"));
	pthread_rwlock_wrlock(&kr->lock);
	struct newkek nk = {0};
	struct create_tx c = {.tenant = tenant,
	                      .rotation_s = rotation_s ? rotation_s : kr->rotation_s,
	                      .nk = &nk};
	struct tenant *t = NULL;
	cf_err err = need_unsealed(kr);
	CF_TRY_OUT(err, out);
	CF_ENSURE_OUT(!tenant_find_str(kr, tenant),
	              cf_err_fail(CF_E_CONFLICT, "tenant '%s' already has keys", tenant), out);
	c.rk_version = kr->rk.version;
	CF_TRY_OUT(kek_make(kr, tenant, 1, &nk), out);
	for (unsigned i = 0; i < CF_PURPOSE_COUNT; i++) {
		c.pk[i] = (struct wrapped_pk){.purpose = (enum cf_purpose)i, .version = 1};
		CF_TRY_OUT(cf_secbuf_new(CF_PURPOSE_KEY, &c.pk[i].key), out);
		CF_ENSURE_OUT(c.pk[i].key, CF_E_NOMEM, out);
		CF_TRY_OUT(cf_crypto_random_key(c.pk[i].key->ptr, CF_PURPOSE_KEY), out);
		CF_TRY_OUT(pk_wrap(tenant, nk.kek, 1, &c.pk[i], c.pk[i].key->ptr), out);
	}
	t = calloc(1, sizeof *t);
	CF_ENSURE_OUT(t, CF_E_NOMEM, out);
	(void)snprintf(t->id, sizeof t->id, "%s", tenant);
	t->rotation_s = c.rotation_s;
	CF_TRY_OUT(cf_store_write_wait(kr->ks, NULL, create_fn, &c), out);
	/* Durable: now memory follows (allocation failures here would leave the keys only
	 * on disk, where the next unseal finds them). */
	CF_TRY_OUT(kek_add(t, (struct kek_slot){.version = 1,
	                                        .rk_version = c.rk_version,
	                                        .active = true,
	                                        .created_at = now_s(),
	                                        .kek = nk.kek}),
	           out);
	nk.kek = NULL;
	for (unsigned i = 0; i < CF_PURPOSE_COUNT; i++) {
		CF_TRY_OUT(pkey_add(t, (struct pkey){.purpose = (enum cf_purpose)i,
		                                     .version = 1,
		                                     .kek_version = 1,
		                                     .key = c.pk[i].key}),
		           out);
		c.pk[i].key = NULL;
	}
	CF_TRY_OUT(tenant_insert(kr, t), out);
	t = NULL;
	cf_log(CF_LOG_INFO, NULL, "tenant_keys", "tenant %s: KEK v1 and %u purpose keys created",
	       tenant, CF_PURPOSE_COUNT);
out:
	tenant_free(t);
	cf_kek_free(&nk.kek);
	for (unsigned i = 0; i < CF_PURPOSE_COUNT; i++)
		cf_secbuf_free(&c.pk[i].key);
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

struct suspend_tx {
	const char *tenant;
	bool suspended;
};

static cf_err suspend_fn(struct cf_tx *tx, void *ctx)
{
	struct suspend_tx *s = ctx;
	struct cf_val v[] = {CF_V_TEXT(s->suspended ? "suspended" : "active"),
	                     CF_V_TEXT(s->tenant)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx, "UPDATE ks_tenant SET state = $1 WHERE tenant_id = $2", v, 2, &n));
	return n == 1 ? CF_OK : cf_err_fail(CF_E_NOT_FOUND, "no keys for tenant '%s'", s->tenant);
}

cf_err cf_keys_tenant_suspend(struct cf_keyring *kr, const char *tenant, bool suspended)
{
	CF_ENSURE(tenant_id_ok(tenant), cf_err_fail(CF_E_INVALID, "malformed tenant id"));
	pthread_rwlock_wrlock(&kr->lock);
	struct suspend_tx s = {tenant, suspended};
	cf_err err = cf_store_write_wait(kr->ks, NULL, suspend_fn, &s);
	struct tenant *t = err == CF_OK ? tenant_find_str(kr, tenant) : NULL;
	if (t)
		t->suspended = suspended;
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

/* Shredding: the ids of what is destroyed go on the list in the same transaction. */
struct shred_tx {
	const char *tenant;
	unsigned destroyed;
	cf_err err;
	struct cf_tx *tx;
};

static cf_err shred_kek_row(const struct cf_row *row, void *ctx)
{
	struct shred_tx *s = ctx;
	char id[CF_TENANT_ID_MAX + 64];
	(void)snprintf(id, sizeof id, "kek/%s/%lld", s->tenant, (long long)cf_row_int(row, 0));
	s->destroyed += cf_row_is_null(row, 1) ? 0 : 1;
	struct cf_val v[] = {CF_V_TEXT(id), CF_V_INT(now_s())};
	return cf_tx_exec(s->tx,
	                  "INSERT INTO ks_destroyed (key_id, destroyed_at, reason)"
	                  " VALUES ($1, $2, 'tenant deleted') ON CONFLICT (key_id) DO NOTHING",
	                  v, 2, NULL);
}

static cf_err shred_pk_row(const struct cf_row *row, void *ctx)
{
	struct shred_tx *s = ctx;
	char id[CF_TENANT_ID_MAX + 64];
	int64_t p = cf_row_int(row, 0);
	(void)snprintf(id, sizeof id, "purpose/%s/%s/%lld", s->tenant,
	               p >= 0 && p < CF_PURPOSE_COUNT ? purpose_names[p] : "unknown",
	               (long long)cf_row_int(row, 1));
	s->destroyed++;
	struct cf_val v[] = {CF_V_TEXT(id), CF_V_INT(now_s())};
	return cf_tx_exec(s->tx,
	                  "INSERT INTO ks_destroyed (key_id, destroyed_at, reason)"
	                  " VALUES ($1, $2, 'tenant deleted') ON CONFLICT (key_id) DO NOTHING",
	                  v, 2, NULL);
}

static cf_err shred_fn(struct cf_tx *tx, void *ctx)
{
	struct shred_tx *s = ctx;
	s->tx = tx;
	s->destroyed = 0;
	struct cf_val t[] = {CF_V_TEXT(s->tenant)};
	CF_TRY(cf_tx_query(tx, "SELECT version, wrapped FROM ks_kek WHERE tenant_id = $1", t, 1,
	                   shred_kek_row, s));
	CF_TRY(cf_tx_query(tx, "SELECT purpose, version FROM ks_purpose WHERE tenant_id = $1", t, 1,
	                   shred_pk_row, s));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM ks_purpose WHERE tenant_id = $1", t, 1, NULL));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM ks_kek WHERE tenant_id = $1", t, 1, NULL));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM ks_rewrap WHERE tenant_id = $1", t, 1, NULL));
	return cf_tx_exec(tx, "DELETE FROM ks_tenant WHERE tenant_id = $1", t, 1, NULL);
}

cf_err cf_keys_tenant_shred(struct cf_keyring *kr, const char *tenant, unsigned *destroyed)
{
	CF_ENSURE(tenant_id_ok(tenant), cf_err_fail(CF_E_INVALID, "malformed tenant id"));
	pthread_rwlock_wrlock(&kr->lock);
	struct shred_tx s = {.tenant = tenant};
	cf_err err = CF_OK;
	CF_ENSURE_OUT(kr->initialized,
	              cf_err_fail(CF_E_NOT_INITIALIZED, "the vault is not initialized"), out);
	/* Memory first: from here no request of this tenant opens anything, even if the
	 * keystore write below fails (then the next unseal reloads the keys, and the
	 * operator repeats the deletion). */
	tenant_remove(kr, tenant);
	CF_TRY_OUT(cf_store_write_wait(kr->ks, NULL, shred_fn, &s), out);
	CF_TRY_OUT(cf_store_scrub(kr->ks), out);
	*destroyed = s.destroyed;
	cf_log(CF_LOG_WARN, NULL, "tenant_shredded",
	       "tenant %s crypto-shredded: %u keys destroyed%s", tenant, s.destroyed,
	       cf_store_engine(kr->ks) == CF_STORE_SQLITE ? ", keystore free pages overwritten"
	                                                  : "");
out:
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

struct is_destroyed {
	const char *id;
	int64_t n;
};

static cf_err is_destroyed_fn(struct cf_tx *tx, void *ctx)
{
	struct is_destroyed *d = ctx;
	struct cf_val v[] = {CF_V_TEXT(d->id)};
	return cf_tx_query(tx, "SELECT count(*) FROM ks_destroyed WHERE key_id = $1", v, 1,
	                   count_row, &d->n);
}

cf_err cf_keys_is_destroyed(struct cf_keyring *kr, const char *key_id, bool *out)
{
	struct is_destroyed d = {key_id, 0};
	CF_TRY(cf_store_read(kr->ks, NULL, is_destroyed_fn, &d));
	*out = d.n > 0;
	return CF_OK;
}

/* --- rotation ----------------------------------------------------------------------- */
struct rotate_tx {
	const char *tenant;
	uint32_t old_version, rk_version;
	struct newkek *nk;
	struct wrapped_pk *pk;
	size_t npk;
};

static cf_err rotate_fn(struct cf_tx *tx, void *ctx)
{
	struct rotate_tx *r = ctx;
	int64_t now = now_s(), n = 0;
	struct cf_val o[] = {CF_V_INT(now), CF_V_TEXT(r->tenant), CF_V_INT(r->old_version)};
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE ks_kek SET state = 'decrypt_only', retired_at = $1"
	                  " WHERE tenant_id = $2 AND version = $3 AND state = 'active'",
	                  o, 3, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT, "the tenant's active KEK changed meanwhile"));
	struct cf_val k[] = {CF_V_TEXT(r->tenant), CF_V_INT(r->nk->version),
	                     CF_V_INT(r->rk_version), CF_V_BLOB(r->nk->w, r->nk->wlen),
	                     CF_V_INT(now)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO ks_kek (tenant_id, version, rk_version, wrapped, state,"
	                  " created_at) VALUES ($1, $2, $3, $4, 'active', $5)",
	                  k, 5, NULL));
	/* Purpose keys are few: they move to the new KEK in this same transaction. */
	for (size_t i = 0; i < r->npk; i++) {
		struct cf_val p[] = {CF_V_INT(r->nk->version),
		                     CF_V_BLOB(r->pk[i].w, sizeof r->pk[i].w), CF_V_TEXT(r->tenant),
		                     CF_V_INT(r->pk[i].purpose), CF_V_INT(r->pk[i].version)};
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE ks_purpose SET kek_version = $1, wrapped = $2"
		                  " WHERE tenant_id = $3 AND purpose = $4 AND version = $5",
		                  p, 5, NULL));
	}
	struct cf_val j[] = {CF_V_TEXT(r->tenant), CF_V_INT(r->old_version), CF_V_INT(now)};
	return cf_tx_exec(tx,
	                  "INSERT INTO ks_rewrap (tenant_id, from_version, state, moved, remaining,"
	                  " started_at) VALUES ($1, $2, 'running', 0, -1, $3)",
	                  j, 3, NULL);
}

/* Caller holds the write lock and has checked need_unsealed. */
static cf_err rotate_locked(struct cf_keyring *kr, struct tenant *t, uint32_t *new_version)
{
	struct kek_slot *cur = kek_active(t);
	CF_ENSURE(cur, cf_err_fail(CF_E_INTEGRITY, "tenant %s has no active KEK", t->id));
	uint32_t nv = 0;
	for (size_t i = 0; i < t->nkeks; i++)
		nv = t->keks[i].version > nv ? t->keks[i].version : nv;
	nv++;
	struct newkek nk = {0};
	struct rotate_tx r = {.tenant = t->id,
	                      .old_version = cur->version,
	                      .rk_version = kr->rk.version,
	                      .nk = &nk};
	cf_err err = kek_make(kr, t->id, nv, &nk);
	CF_TRY_OUT(err, out);
	r.pk = calloc(t->npkeys ? t->npkeys : 1, sizeof *r.pk);
	CF_ENSURE_OUT(r.pk, CF_E_NOMEM, out);
	for (size_t i = 0; i < t->npkeys; i++) {
		r.pk[i] = (struct wrapped_pk){.purpose = t->pkeys[i].purpose,
		                              .version = t->pkeys[i].version};
		CF_TRY_OUT(pk_wrap(t->id, nk.kek, nv, &r.pk[i], t->pkeys[i].key->ptr), out);
		r.npk++;
	}
	CF_TRY_OUT(cf_store_write_wait(kr->ks, NULL, rotate_fn, &r), out);
	CF_TRY_OUT(kek_add(t, (struct kek_slot){.version = nv,
	                                        .rk_version = kr->rk.version,
	                                        .active = true,
	                                        .created_at = now_s(),
	                                        .kek = nk.kek}),
	           out);
	nk.kek = NULL;
	/* kek_add may have moved the array: find the old slot again. */
	for (size_t i = 0; i < t->nkeks; i++)
		if (t->keks[i].version != nv)
			t->keks[i].active = false;
	for (size_t i = 0; i < t->npkeys; i++)
		t->pkeys[i].kek_version = nv;
	*new_version = nv;
	cf_log(CF_LOG_INFO, NULL, "kek_rotated",
	       "tenant %s: KEK v%u active; v%u decrypt-only until its rewrap finishes", t->id, nv,
	       r.old_version);
out:
	cf_kek_free(&nk.kek);
	free(r.pk);
	return err;
}

cf_err cf_keys_rotate(struct cf_keyring *kr, const char *tenant, uint32_t *new_version)
{
	CF_ENSURE(tenant_id_ok(tenant), cf_err_fail(CF_E_INVALID, "malformed tenant id"));
	pthread_rwlock_wrlock(&kr->lock);
	cf_err err = need_unsealed(kr);
	struct tenant *t = err == CF_OK ? tenant_find_str(kr, tenant) : NULL;
	if (err == CF_OK && !t)
		err = cf_err_fail(CF_E_NOT_FOUND, "no tenant '%s'", tenant);
	if (err == CF_OK)
		err = rotate_locked(kr, t, new_version);
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

void cf_keys_set_event_hook(struct cf_keyring *kr, cf_keys_event_fn fn, void *ctx)
{
	pthread_rwlock_wrlock(&kr->lock);
	kr->event = fn;
	kr->event_ctx = ctx;
	pthread_rwlock_unlock(&kr->lock);
}

static void emit(struct cf_keyring *kr, const char *action, const char *tenant,
                 const char *resource, const char *detail)
{
	pthread_rwlock_rdlock(&kr->lock);
	cf_keys_event_fn fn = kr->event;
	void *ctx = kr->event_ctx;
	pthread_rwlock_unlock(&kr->lock);
	if (fn)
		fn(ctx, action, tenant, resource, detail);
}

cf_err cf_keys_rotate_due(struct cf_keyring *kr, int64_t now, unsigned *rotated)
{
	*rotated = 0;
	cf_err err = CF_OK;
	/* One tenant at a time, each rotation announced outside the lock. */
	for (size_t i = 0;; i++) {
		char id[CF_TENANT_ID_MAX + 1] = "";
		uint32_t nv = 0;
		pthread_rwlock_wrlock(&kr->lock);
		bool more = !kr->sealed && i < kr->ntenants;
		if (more) {
			struct tenant *t = kr->tenants[i];
			struct kek_slot *a = kek_active(t);
			if (a && a->created_at + t->rotation_s <= now) {
				err = rotate_locked(kr, t, &nv);
				if (err == CF_OK)
					(void)snprintf(id, sizeof id, "%s", t->id);
			}
		}
		pthread_rwlock_unlock(&kr->lock);
		if (!more || err)
			break;
		if (id[0]) {
			(*rotated)++;
			char kid[CF_TENANT_ID_MAX + 32];
			(void)snprintf(kid, sizeof kid, "kek/%s/%u", id, nv);
			emit(kr, "keys.rotate", id, kid, "scheduled rotation");
		}
	}
	return err;
}

cf_err cf_keys_add_rewrap_source(struct cf_keyring *kr, const struct cf_rewrap_source *src)
{
	pthread_rwlock_wrlock(&kr->lock);
	cf_err err = CF_OK;
	if (kr->nsources == CF_REWRAP_SOURCES_MAX)
		err = cf_err_fail(CF_E_INTERNAL, "too many rewrap sources");
	else
		kr->sources[kr->nsources++] = *src;
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

/* --- rewrap jobs -------------------------------------------------------------------- */
#define JOBS_PER_STEP 16
struct job {
	char tenant[CF_TENANT_ID_MAX + 1];
	uint32_t from;
};
struct jobs {
	struct job j[JOBS_PER_STEP];
	size_t n;
};

static cf_err job_row(const struct cf_row *row, void *ctx)
{
	struct jobs *js = ctx;
	if (js->n == JOBS_PER_STEP)
		return CF_OK;
	struct job *j = &js->j[js->n++];
	cf_span_to_str(cf_row_blob(row, 0), j->tenant, sizeof j->tenant);
	j->from = (uint32_t)cf_row_int(row, 1);
	return CF_OK;
}

static cf_err jobs_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx,
	                   "SELECT tenant_id, from_version FROM ks_rewrap WHERE state = 'running'"
	                   " ORDER BY started_at, tenant_id, from_version",
	                   NULL, 0, job_row, ctx);
}

struct progress_tx {
	const struct job *j;
	uint64_t moved, remaining;
	bool finish;
};

static cf_err progress_fn(struct cf_tx *tx, void *ctx)
{
	struct progress_tx *p = ctx;
	int64_t now = now_s();
	struct cf_val v[] = {CF_V_INT(p->moved), CF_V_INT(p->remaining), CF_V_TEXT(p->j->tenant),
	                     CF_V_INT(p->j->from)};
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE ks_rewrap SET moved = moved + $1, remaining = $2"
	                  " WHERE tenant_id = $3 AND from_version = $4",
	                  v, 4, NULL));
	if (!p->finish)
		return CF_OK;
	/* Nothing live refers to the old version any more: destroy it. */
	struct cf_val d[] = {CF_V_INT(now), CF_V_TEXT(p->j->tenant), CF_V_INT(p->j->from)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE ks_kek SET state = 'destroyed', wrapped = NULL, destroyed_at = $1"
	                  " WHERE tenant_id = $2 AND version = $3 AND state = 'decrypt_only'",
	                  d, 3, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT, "the KEK to destroy changed meanwhile"));
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE ks_rewrap SET state = 'done', finished_at = $1"
	                  " WHERE tenant_id = $2 AND from_version = $3",
	                  d, 3, NULL));
	char id[CF_TENANT_ID_MAX + 32];
	(void)snprintf(id, sizeof id, "kek/%s/%u", p->j->tenant, p->j->from);
	struct cf_val l[] = {CF_V_TEXT(id), CF_V_INT(now)};
	return cf_tx_exec(tx,
	                  "INSERT INTO ks_destroyed (key_id, destroyed_at, reason)"
	                  " VALUES ($1, $2, 'rotated out')",
	                  l, 2, NULL);
}

cf_err cf_keys_rewrap_step(struct cf_keyring *kr, bool *busy)
{
	*busy = false;
	struct jobs js = {0};
	if (cf_keys_is_sealed(kr))
		return CF_OK;
	CF_TRY(cf_store_read(kr->ks, NULL, jobs_fn, &js));
	for (size_t i = 0; i < js.n; i++) {
		const struct job *j = &js.j[i];
		struct progress_tx p = {.j = j};
		/* Sources run without the keyring's lock (they call cf_keys_rewrap_value). */
		pthread_rwlock_rdlock(&kr->lock);
		size_t ns = kr->nsources;
		struct cf_rewrap_source src[CF_REWRAP_SOURCES_MAX];
		memcpy(src, kr->sources, ns * sizeof *src);
		unsigned batch = kr->rewrap_batch;
		pthread_rwlock_unlock(&kr->lock);
		for (size_t s = 0; s < ns; s++) {
			uint64_t moved = 0, remaining = 0;
			CF_TRY(src[s].step(src[s].ctx, kr, j->tenant, j->from, batch, &moved,
			                   &remaining));
			p.moved += moved;
			p.remaining += remaining;
		}
		p.finish = p.remaining == 0;
		pthread_rwlock_wrlock(&kr->lock);
		cf_err err = cf_store_write_wait(kr->ks, NULL, progress_fn, &p);
		struct tenant *t = err == CF_OK && p.finish ? tenant_find_str(kr, j->tenant) : NULL;
		struct kek_slot *slot = t ? kek_find(t, j->from) : NULL;
		if (slot) {
			cf_kek_free(&slot->kek);
			*slot = t->keks[--t->nkeks];
		}
		pthread_rwlock_unlock(&kr->lock);
		CF_TRY(err);
		if (p.finish) {
			/* The attestation: in the log, and through the hook in the audit log. */
			char id[CF_TENANT_ID_MAX + 32];
			(void)snprintf(id, sizeof id, "kek/%s/%u", j->tenant, j->from);
			json_t *f = json_pack("{s:s, s:s, s:I, s:s}", "key_id", id, "tenant",
			                      j->tenant, "moved", (json_int_t)p.moved, "reason",
			                      "rotated out: no live envelope refers to it");
			cf_log_fields(CF_LOG_WARN, "key_destroyed", f);
			emit(kr, "key.destroyed", j->tenant, id,
			     "rotated out: no live envelope refers to it");
		} else {
			*busy = true;
		}
	}
	return CF_OK;
}

/* --- status ------------------------------------------------------------------------- */
struct status_ctx {
	json_t *arr;
	const char *only;
};

static json_t *find_tenant_obj(json_t *arr, struct cf_span id)
{
	size_t i;
	json_t *o;
	for (i = 0; i < json_array_size(arr) && (o = json_array_get(arr, i)); i++) {
		const char *s = json_string_value(json_object_get(o, "tenant"));
		if (s && strlen(s) == id.len && memcmp(s, id.ptr, id.len) == 0)
			return o;
	}
	return NULL;
}

static cf_err status_tenant_row(const struct cf_row *row, void *ctx)
{
	struct status_ctx *sc = ctx;
	struct cf_span id = cf_row_blob(row, 0), st = cf_row_blob(row, 1);
	json_t *o = json_pack("{s:s%, s:s%, s:I, s:I, s:[], s:[]}", "tenant", id.ptr, id.len,
	                      "state", st.ptr, st.len, "rotation_s", (json_int_t)cf_row_int(row, 2),
	                      "created_at", (json_int_t)cf_row_int(row, 3), "keks", "rewrap");
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(sc->arr, o) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err status_kek_row(const struct cf_row *row, void *ctx)
{
	struct status_ctx *sc = ctx;
	json_t *o = find_tenant_obj(sc->arr, cf_row_blob(row, 0));
	if (!o)
		return CF_OK;
	struct cf_span st = cf_row_blob(row, 2);
	json_t *k = json_pack("{s:I, s:s%, s:I, s:I}", "version", (json_int_t)cf_row_int(row, 1),
	                      "state", st.ptr, st.len, "rk_version", (json_int_t)cf_row_int(row, 3),
	                      "created_at", (json_int_t)cf_row_int(row, 4));
	CF_ENSURE(k, CF_E_NOMEM);
	return json_array_append_new(json_object_get(o, "keks"), k) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err status_job_row(const struct cf_row *row, void *ctx)
{
	struct status_ctx *sc = ctx;
	json_t *o = find_tenant_obj(sc->arr, cf_row_blob(row, 0));
	if (!o)
		return CF_OK;
	struct cf_span st = cf_row_blob(row, 2);
	int64_t rem = cf_row_int(row, 4);
	json_t *k =
	        json_pack("{s:I, s:s%, s:I, s:o}", "from_version", (json_int_t)cf_row_int(row, 1),
	                  "state", st.ptr, st.len, "moved", (json_int_t)cf_row_int(row, 3),
	                  "remaining", rem < 0 ? json_null() : json_integer(rem));
	CF_ENSURE(k, CF_E_NOMEM);
	return json_array_append_new(json_object_get(o, "rewrap"), k) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err status_fn(struct cf_tx *tx, void *ctx)
{
	struct status_ctx *sc = ctx;
	struct cf_val v[] = {sc->only ? CF_V_TEXT(sc->only) : CF_V_NULL};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT tenant_id, state, rotation_s, created_at FROM ks_tenant"
	                   " WHERE $1 IS NULL OR tenant_id = $1 ORDER BY tenant_id",
	                   v, 1, status_tenant_row, sc));
	CF_TRY(cf_tx_query(tx,
	                   "SELECT tenant_id, version, state, rk_version, created_at FROM ks_kek"
	                   " WHERE $1 IS NULL OR tenant_id = $1 ORDER BY tenant_id, version",
	                   v, 1, status_kek_row, sc));
	return cf_tx_query(tx,
	                   "SELECT tenant_id, from_version, state, moved, remaining FROM ks_rewrap"
	                   " WHERE $1 IS NULL OR tenant_id = $1 ORDER BY tenant_id, from_version",
	                   v, 1, status_job_row, sc);
}

cf_err cf_keys_tenants_json(struct cf_keyring *kr, const char *tenant, json_t **out)
{
	struct status_ctx sc = {.arr = json_array(), .only = tenant};
	CF_ENSURE(sc.arr, CF_E_NOMEM);
	cf_err err = cf_store_read(kr->ks, NULL, status_fn, &sc);
	if (err) {
		json_decref(sc.arr);
		return err;
	}
	*out = sc.arr;
	return CF_OK;
}

/* --- handles ------------------------------------------------------------------------ */
/* Finds the caller's tenant for a handle; the read lock is held. */
static cf_err handle_tenant(struct cf_keyring *kr, struct cf_span tenant, struct tenant **out)
{
	CF_TRY(need_unsealed(kr));
	struct tenant *t = tenant_find(kr, tenant);
	CF_ENSURE(t, cf_err_fail(CF_E_NOT_FOUND, "no such tenant"));
	CF_ENSURE(!t->suspended, cf_err_fail(CF_E_TENANT_SUSPENDED, "the tenant is suspended"));
	*out = t;
	return CF_OK;
}

/* A KEK version the tenant no longer has: destroyed (rotation) or never existed. */
static cf_err missing_version(struct cf_keyring *kr, const struct tenant *t, uint32_t v)
{
	char id[CF_TENANT_ID_MAX + 32];
	(void)snprintf(id, sizeof id, "kek/%s/%u", t->id, v);
	bool gone = false;
	if (cf_keys_is_destroyed(kr, id, &gone) == CF_OK && gone)
		return cf_err_fail(CF_E_KEY_DESTROYED, "KEK version %u was destroyed", v);
	return cf_err_fail(CF_E_INTEGRITY, "the value names KEK version %u, which never existed",
	                   v);
}

cf_err cf_keys_seal_value(struct cf_keyring *kr, const struct cf_env_ctx *ctx, struct cf_span pt,
                          uint8_t *out, size_t out_cap, size_t *out_len)
{
	pthread_rwlock_rdlock(&kr->lock);
	struct tenant *t = NULL;
	cf_err err = handle_tenant(kr, ctx->tenant, &t);
	if (err == CF_OK && t) {
		struct kek_slot *a = kek_active(t);
		err = a ? cf_env_seal(a->kek, (struct cf_key_id){a->version, a->rk_version}, ctx,
		                      pt, out, out_cap, out_len)
		        : cf_err_fail(CF_E_INTEGRITY, "the tenant has no active KEK");
	}
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

cf_err cf_keys_open_value(struct cf_keyring *kr, const struct cf_env_ctx *ctx, struct cf_span env,
                          uint8_t *out, size_t out_cap, size_t *out_len)
{
	struct cf_env_view v = {0};
	CF_TRY(cf_env_parse(env, &v));
	pthread_rwlock_rdlock(&kr->lock);
	struct tenant *t = NULL;
	cf_err err = handle_tenant(kr, ctx->tenant, &t);
	if (err == CF_OK && t) {
		/* The KEK comes from the caller's tenant and the stored version only. */
		struct kek_slot *s = kek_find(t, v.kid.kek_version);
		err = s ? cf_env_open(s->kek, ctx, env, out, out_cap, out_len)
		        : missing_version(kr, t, v.kid.kek_version);
	}
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

cf_err cf_keys_rewrap_value(struct cf_keyring *kr, const struct cf_env_ctx *ctx, uint8_t *env,
                            size_t env_len, bool *moved)
{
	*moved = false;
	struct cf_env_view v = {0};
	CF_TRY(cf_env_parse((struct cf_span){env, env_len}, &v));
	pthread_rwlock_rdlock(&kr->lock);
	struct tenant *t = NULL;
	cf_err err = need_unsealed(kr);
	if (err == CF_OK && !(t = tenant_find(kr, ctx->tenant)))
		err = cf_err_fail(CF_E_NOT_FOUND, "no such tenant");
	if (err == CF_OK && t) {
		struct kek_slot *a = kek_active(t), *s = kek_find(t, v.kid.kek_version);
		if (!a)
			err = cf_err_fail(CF_E_INTEGRITY, "the tenant has no active KEK");
		else if (!s)
			err = missing_version(kr, t, v.kid.kek_version);
		else if (s != a) {
			err = cf_env_rewrap(s->kek, a->kek,
			                    (struct cf_key_id){a->version, a->rk_version}, ctx, env,
			                    env_len);
			*moved = err == CF_OK;
		}
	}
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

cf_err cf_keys_mac(struct cf_keyring *kr, const char *tenant, enum cf_purpose purpose,
                   struct cf_span data, uint8_t out[CF_HMAC_LEN], uint32_t *version)
{
	CF_ENSURE((unsigned)purpose < CF_PURPOSE_COUNT, CF_E_INVALID);
	pthread_rwlock_rdlock(&kr->lock);
	struct tenant *t = NULL;
	cf_err err =
	        handle_tenant(kr, (struct cf_span){(const uint8_t *)tenant, strlen(tenant)}, &t);
	struct pkey *p = err == CF_OK && t ? pkey_latest(t, purpose) : NULL;
	if (err == CF_OK && !p)
		err = cf_err_fail(CF_E_INTEGRITY, "the tenant has no %s key",
		                  purpose_names[purpose]);
	if (err == CF_OK && p) {
		err = cf_hmac_sha256((struct cf_span){p->key->ptr, p->key->len}, data, out);
		*version = p->version;
	}
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

cf_err cf_keys_sign(struct cf_keyring *kr, enum cf_deploy_key which, struct cf_span msg,
                    uint8_t sig[CF_ED25519_SIG])
{
	CF_ENSURE((unsigned)which < CF_DKEY_COUNT, CF_E_INVALID);
	pthread_rwlock_rdlock(&kr->lock);
	cf_err err = need_unsealed(kr);
	if (err == CF_OK)
		err = kr->dseed[which]
		              ? cf_ed25519_sign(kr->dseed[which]->ptr, kr->dpub[which], msg, sig)
		              : CF_E_INTERNAL;
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

struct drot_tx {
	enum cf_deploy_key which;
	uint32_t version, rk_version;
	struct dkey_new d;
};

static cf_err drot_fn(struct cf_tx *tx, void *ctx)
{
	struct drot_tx *r = ctx;
	static const uint8_t none[1] = {0};
	struct cf_val v[] = {CF_V_INT(r->which), CF_V_INT(r->version - 1), CF_V_BLOB(none, 0)};
	/* The version before the current goes for good; the current one keeps its public
	 * key only (its private key is destroyed now: it signs nothing more). */
	CF_TRY(cf_tx_exec(tx, "DELETE FROM ks_deploy WHERE name = $1 AND version < $2", v, 2,
	                  NULL));
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx, "UPDATE ks_deploy SET wrapped = $3 WHERE name = $1 AND version = $2",
	                  v, 3, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT, "the keystore changed during the rotation"));
	struct cf_val d[] = {CF_V_INT(r->which),
	                     CF_V_INT(r->version),
	                     CF_V_INT(r->rk_version),
	                     CF_V_BLOB(r->d.wrapped, r->d.wlen),
	                     CF_V_BLOB(r->d.pub, CF_ED25519_PUB),
	                     CF_V_INT(now_s())};
	return cf_tx_exec(tx,
	                  "INSERT INTO ks_deploy (name, version, rk_version, wrapped, public_key,"
	                  " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
	                  d, 6, NULL);
}

cf_err cf_keys_deploy_rotate(struct cf_keyring *kr, enum cf_deploy_key which, uint32_t *new_version)
{
	/* The checkpoint key signs what verifiers keep for years: it does not rotate here. */
	CF_ENSURE(which == CF_DKEY_TOKEN,
	          cf_err_fail(CF_E_INVALID, "only the token signing key rotates"));
	pthread_rwlock_wrlock(&kr->lock);
	uint8_t seed[CF_ED25519_SEED];
	struct cf_secbuf *keep = NULL;
	struct drot_tx r = {.which = which};
	cf_err err = need_unsealed(kr);
	CF_TRY_OUT(err, out);
	CF_ENSURE_OUT(kr->dseed[which], CF_E_INTERNAL, out);
	r.version = kr->dversion[which] + 1;
	r.rk_version = kr->rk.version;
	uint8_t ad[AD_MAX_KR];
	size_t nad = ad_deploy(ad, which, r.version, r.rk_version);
	CF_TRY_OUT(cf_crypto_random_key(seed, sizeof seed), out);
	CF_TRY_OUT(cf_ed25519_keypair(seed, r.d.pub), out);
	CF_TRY_OUT(rk_wrap(&kr->rk, (struct cf_span){ad, nad}, (struct cf_span){seed, sizeof seed},
	                   r.d.wrapped, &r.d.wlen),
	           out);
	CF_TRY_OUT(cf_secbuf_new(CF_ED25519_SEED, &keep), out);
	CF_ENSURE_OUT(keep, CF_E_NOMEM, out);
	memcpy(keep->ptr, seed, sizeof seed);
	CF_TRY_OUT(cf_store_write_wait(kr->ks, NULL, drot_fn, &r), out);
	memcpy(kr->dprev[which], kr->dpub[which], CF_ED25519_PUB);
	kr->dprev_set[which] = true;
	cf_secbuf_free(&kr->dseed[which]);
	kr->dseed[which] = keep;
	keep = NULL;
	memcpy(kr->dpub[which], r.d.pub, CF_ED25519_PUB);
	kr->dversion[which] = r.version;
	kr->dcreated[which] = now_s();
	*new_version = r.version;
	cf_log(CF_LOG_INFO, NULL, "deploy_key_rotated", "deployment key %d: version %u", (int)which,
	       r.version);
out:
	cf_wipe(seed, sizeof seed);
	cf_secbuf_free(&keep);
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

cf_err cf_keys_public_keys(struct cf_keyring *kr, enum cf_deploy_key which,
                           struct cf_deploy_pubs *out)
{
	CF_ENSURE((unsigned)which < CF_DKEY_COUNT, CF_E_INVALID);
	pthread_rwlock_rdlock(&kr->lock);
	cf_err err = need_unsealed(kr);
	if (err == CF_OK) {
		memcpy(out->current, kr->dpub[which], CF_ED25519_PUB);
		out->version = kr->dversion[which];
		out->created_at = kr->dcreated[which];
		out->has_previous = kr->dprev_set[which];
		if (out->has_previous)
			memcpy(out->previous, kr->dprev[which], CF_ED25519_PUB);
	}
	pthread_rwlock_unlock(&kr->lock);
	return err;
}

cf_err cf_keys_public(struct cf_keyring *kr, enum cf_deploy_key which, uint8_t pub[CF_ED25519_PUB])
{
	CF_ENSURE((unsigned)which < CF_DKEY_COUNT, CF_E_INVALID);
	pthread_rwlock_rdlock(&kr->lock);
	cf_err err = need_unsealed(kr);
	if (err == CF_OK)
		memcpy(pub, kr->dpub[which], CF_ED25519_PUB);
	pthread_rwlock_unlock(&kr->lock);
	return err;
}
