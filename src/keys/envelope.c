/* coffre — the envelope of one sealed value (ER1, ER2). Layout in docs/formats.md. */
#include <stdlib.h>
#include <string.h>

#include "keys/keys.h"

struct cf_kek {
	struct cf_secbuf *key;
	struct cf_siv *siv;
};

cf_err cf_kek_new(const uint8_t key[CF_SIV_KEY], struct cf_kek **out)
{
	struct cf_kek *k = calloc(1, sizeof *k);
	if (!k)
		return CF_E_NOMEM;
	cf_err err = cf_secbuf_new(CF_SIV_KEY, &k->key);
	if (err == CF_OK) {
		memcpy(k->key->ptr, key, CF_SIV_KEY);
		err = cf_siv_new(k->key->ptr, &k->siv);
	}
	if (err) {
		cf_kek_free(&k);
		return err;
	}
	*out = k;
	return CF_OK;
}

void cf_kek_free(struct cf_kek **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_kek *k = *pp;
	*pp = NULL;
	cf_siv_free(&k->siv);
	cf_secbuf_free(&k->key);
	free(k);
}

/* Fixed labels for AES-SIV (the S2V input where a nonce would go). */
static const uint8_t wrap_label[] = "coffre/dek-wrap/v1";

#define HEADER_FIXED (1 + 1 + 4 + 4 + 1) /* format, alg, kek_version, rk_version, tenant_len */

static bool ctx_ok(const struct cf_env_ctx *c)
{
	return c->tenant.len > 0 && c->tenant.len <= CF_ENV_ID_MAX &&
	       c->collection.len <= CF_ENV_ID_MAX && c->record.len <= CF_ENV_ID_MAX &&
	       c->field.len <= CF_ENV_ID_MAX;
}

size_t cf_env_size(const struct cf_env_ctx *ctx, size_t pt_len)
{
	return HEADER_FIXED + ctx->tenant.len + CF_ENV_WRAPPED_DEK + CF_GCM_NONCE + pt_len +
	       CF_AEAD_TAG;
}

/* The associated data: a length-prefixed encoding of what the value is bound to.
 *   "coffre/v1" | format | alg | kek_version | rk_version
 *   | len8 tenant | len8 collection | len8 record | version (u64) | len8 field | purpose
 * The DEK's wrap binds the same fields with purpose 'W'; the data with 'D' and a zero
 * key id (the data is bound to its key id through the DEK's wrap), so that a rotation
 * rewraps the 48-byte DEK without touching the data (ER4). */
static size_t build_ad(uint8_t *ad, uint8_t format, uint8_t alg, struct cf_key_id kid,
                       const struct cf_env_ctx *c, uint8_t purpose)
{
	static const uint8_t tag[] = "coffre/v1";
	size_t n = 0;
	memcpy(ad, tag, sizeof tag - 1);
	n += sizeof tag - 1;
	ad[n++] = format;
	ad[n++] = alg;
	cf_be32_put(ad + n, kid.kek_version);
	n += 4;
	cf_be32_put(ad + n, kid.rk_version);
	n += 4;
	const struct cf_span *parts[] = {&c->tenant, &c->collection, &c->record};
	for (size_t i = 0; i < 3; i++) {
		ad[n++] = (uint8_t)parts[i]->len;
		if (parts[i]->len)
			memcpy(ad + n, parts[i]->ptr, parts[i]->len);
		n += parts[i]->len;
	}
	for (int s = 56; s >= 0; s -= 8)
		ad[n++] = (uint8_t)(c->version >> s);
	ad[n++] = (uint8_t)c->field.len;
	if (c->field.len)
		memcpy(ad + n, c->field.ptr, c->field.len);
	n += c->field.len;
	ad[n++] = purpose;
	return n;
}

#define AD_MAX (9 + 2 + 8 + 4 * (1 + CF_ENV_ID_MAX) + 8 + 1)

cf_err cf_env_seal(struct cf_kek *kek, struct cf_key_id kid, const struct cf_env_ctx *ctx,
                   struct cf_span pt, uint8_t *out, size_t out_cap, size_t *out_len)
{
	CF_ENSURE(ctx_ok(ctx), cf_err_fail(CF_E_INVALID, "envelope context out of range"));
	CF_ENSURE(pt.len <= CF_AEAD_MAX, cf_err_fail(CF_E_TOO_LARGE, "value too large"));
	size_t need = cf_env_size(ctx, pt.len);
	CF_ENSURE(out_cap >= need, cf_err_fail(CF_E_INVALID, "envelope buffer too small"));
	cf_err err = CF_OK;
	/* The DEK lives in this thread's locked scratch (never swapped, not in dumps). */
	uint8_t *dek = cf_secmem_scratch(), ad[AD_MAX];
	CF_ENSURE(dek, cf_err_fail(CF_E_SECMEM, "no secure memory for the data key"));
	uint8_t *p = out;
	*p++ = CF_ENV_FORMAT;
	*p++ = CF_ENV_ALG_GCM_SIV;
	cf_be32_put(p, kid.kek_version);
	cf_be32_put(p + 4, kid.rk_version);
	p += 8;
	*p++ = (uint8_t)ctx->tenant.len;
	memcpy(p, ctx->tenant.ptr, ctx->tenant.len);
	p += ctx->tenant.len;
	uint8_t *wrapped = p, *nonce = p + CF_ENV_WRAPPED_DEK, *sealed = nonce + CF_GCM_NONCE;
	/* A fresh DEK for this value alone and its nonce, in one draw at GnuTLS's level for
	 * temporal keys (the DEK protects one value; KEKs use the key-grade level). */
	uint8_t *fresh = dek + CF_ENV_DEK;
	err = cf_crypto_random(fresh, CF_ENV_DEK + CF_GCM_NONCE);
	memcpy(dek, fresh, CF_ENV_DEK);
	memcpy(nonce, fresh + CF_ENV_DEK, CF_GCM_NONCE);
	cf_wipe(fresh, CF_ENV_DEK + CF_GCM_NONCE);
	if (err)
		goto out_wipe_dek;
	size_t nad = build_ad(ad, CF_ENV_FORMAT, CF_ENV_ALG_GCM_SIV, kid, ctx, 'W');
	CF_TRY_OUT(cf_siv_seal_with(kek->siv, (struct cf_span){wrap_label, sizeof wrap_label - 1},
	                            (struct cf_span){ad, nad}, (struct cf_span){dek, CF_ENV_DEK},
	                            wrapped),
	           out_wipe_dek);
	nad = build_ad(ad, CF_ENV_FORMAT, CF_ENV_ALG_GCM_SIV, (struct cf_key_id){0}, ctx, 'D');
	CF_TRY_OUT(cf_gcm_seal(dek, nonce, (struct cf_span){ad, nad}, pt, sealed), out_wipe_dek);
	*out_len = need;
out_wipe_dek:
	cf_wipe(dek, CF_ENV_DEK);
	return err;
}

cf_err cf_env_parse(struct cf_span env, struct cf_env_view *v)
{
	const uint8_t *p = env.ptr;
	size_t n = env.len;
	CF_ENSURE(n >= HEADER_FIXED, cf_err_fail(CF_E_INTEGRITY, "envelope truncated"));
	*v = (struct cf_env_view){.format = p[0], .alg = p[1]};
	CF_ENSURE(v->format == CF_ENV_FORMAT,
	          cf_err_fail(CF_E_INTEGRITY, "unknown envelope format %u", v->format));
	CF_ENSURE(v->alg == CF_ENV_ALG_GCM_SIV,
	          cf_err_fail(CF_E_INTEGRITY, "unknown envelope algorithm %u", v->alg));
	v->kid.kek_version = cf_be32_get(p + 2);
	v->kid.rk_version = cf_be32_get(p + 6);
	size_t tlen = p[10];
	size_t fixed = HEADER_FIXED + tlen + CF_ENV_WRAPPED_DEK + CF_GCM_NONCE + CF_AEAD_TAG;
	CF_ENSURE(tlen > 0 && n >= fixed, cf_err_fail(CF_E_INTEGRITY, "envelope truncated"));
	v->tenant = (struct cf_span){p + HEADER_FIXED, tlen};
	const uint8_t *q = p + HEADER_FIXED + tlen;
	v->wrapped_dek = (struct cf_span){q, CF_ENV_WRAPPED_DEK};
	v->nonce = (struct cf_span){q + CF_ENV_WRAPPED_DEK, CF_GCM_NONCE};
	const uint8_t *s = q + CF_ENV_WRAPPED_DEK + CF_GCM_NONCE;
	v->sealed = (struct cf_span){s, n - (size_t)(s - p)};
	return CF_OK;
}

cf_err cf_env_open(struct cf_kek *kek, const struct cf_env_ctx *ctx, struct cf_span env,
                   uint8_t *out, size_t out_cap, size_t *out_len)
{
	CF_ENSURE(ctx_ok(ctx), cf_err_fail(CF_E_INVALID, "envelope context out of range"));
	struct cf_env_view v = {0};
	CF_TRY(cf_env_parse(env, &v));
	/* The stored tenant is not trusted; a mismatch is reported as what it is. */
	CF_ENSURE(cf_span_eq(v.tenant, ctx->tenant),
	          cf_err_fail(CF_E_INTEGRITY, "the value belongs to another tenant"));
	size_t pt_len = v.sealed.len - CF_AEAD_TAG;
	CF_ENSURE(out_cap >= pt_len, cf_err_fail(CF_E_INVALID, "output buffer too small"));
	cf_err err = CF_OK;
	uint8_t *dek = cf_secmem_scratch(), ad[AD_MAX];
	CF_ENSURE(dek, cf_err_fail(CF_E_SECMEM, "no secure memory for the data key"));
	size_t nad = build_ad(ad, v.format, v.alg, v.kid, ctx, 'W');
	CF_TRY_OUT(cf_siv_open_with(kek->siv, (struct cf_span){wrap_label, sizeof wrap_label - 1},
	                            (struct cf_span){ad, nad}, v.wrapped_dek, dek),
	           out_wipe_dek);
	nad = build_ad(ad, v.format, v.alg, (struct cf_key_id){0}, ctx, 'D');
	CF_TRY_OUT(cf_gcm_open(dek, v.nonce.ptr, (struct cf_span){ad, nad}, v.sealed, out),
	           out_wipe_dek);
	*out_len = pt_len;
out_wipe_dek:
	cf_wipe(dek, CF_ENV_DEK);
	return err;
}

cf_err cf_env_rewrap(struct cf_kek *from, struct cf_kek *to, struct cf_key_id to_kid,
                     const struct cf_env_ctx *ctx, uint8_t *env, size_t env_len)
{
	CF_ENSURE(ctx_ok(ctx), cf_err_fail(CF_E_INVALID, "envelope context out of range"));
	struct cf_env_view v = {0};
	CF_TRY(cf_env_parse((struct cf_span){env, env_len}, &v));
	CF_ENSURE(cf_span_eq(v.tenant, ctx->tenant),
	          cf_err_fail(CF_E_INTEGRITY, "the value belongs to another tenant"));
	cf_err err = CF_OK;
	uint8_t *dek = cf_secmem_scratch(), ad[AD_MAX], wrapped[CF_ENV_WRAPPED_DEK];
	CF_ENSURE(dek, cf_err_fail(CF_E_SECMEM, "no secure memory for the data key"));
	const struct cf_span label = {wrap_label, sizeof wrap_label - 1};
	size_t nad = build_ad(ad, v.format, v.alg, v.kid, ctx, 'W');
	CF_TRY_OUT(
	        cf_siv_open_with(from->siv, label, (struct cf_span){ad, nad}, v.wrapped_dek, dek),
	        out_wipe_dek);
	nad = build_ad(ad, v.format, v.alg, to_kid, ctx, 'W');
	CF_TRY_OUT(cf_siv_seal_with(to->siv, label, (struct cf_span){ad, nad},
	                            (struct cf_span){dek, CF_ENV_DEK}, wrapped),
	           out_wipe_dek);
	/* Only now, with the new wrap made, are the stored bytes changed. */
	cf_be32_put(env + 2, to_kid.kek_version);
	cf_be32_put(env + 6, to_kid.rk_version);
	memcpy(env + (v.wrapped_dek.ptr - env), wrapped, sizeof wrapped);
out_wipe_dek:
	cf_wipe(dek, CF_ENV_DEK);
	return err;
}

/* The keyring's use of a KEK beyond envelopes: wrapping purpose keys, and handing its
 * bytes to the root key for a rewrap (rekey). Not for any other part. */
cf_err cf_kek_wrap(struct cf_kek *kek, struct cf_span label, struct cf_span ad, struct cf_span key,
                   uint8_t *out)
{
	return cf_siv_seal_with(kek->siv, label, ad, key, out);
}

cf_err cf_kek_unwrap(struct cf_kek *kek, struct cf_span label, struct cf_span ad,
                     struct cf_span wrapped, uint8_t *out)
{
	return cf_siv_open_with(kek->siv, label, ad, wrapped, out);
}

struct cf_span cf_kek_bytes(const struct cf_kek *kek)
{
	return (struct cf_span){kek->key->ptr, kek->key->len};
}
