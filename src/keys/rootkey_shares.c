/* coffre — root key provider `shares` (ER3): the root key split k-of-n with Shamir's
 * scheme (libgfshare, its random source set to GnuTLS's key-grade generator), so that no
 * single operator holds it. Each share is one line an operator can paste:
 *
 *   cfs1.<rk_version>.<k>.<x>.<share: 128 hex>.<kcv: 16 hex>.<checksum: 8 hex>
 *
 * kcv is a key check value (HMAC-SHA-256 of "coffre root key check v1" under the root
 * key, first 8 bytes): the same in every share of one split, and what tells a combined
 * key right from wrong. checksum (SHA-256 of everything before it, first 4 bytes)
 * catches a mistyped share before anything is combined. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <libgfshare.h>

#include "keys/keys.h"

#define SHARE_HEX (CF_RK_LEN * 2)

static void gf_random(unsigned char *buf, unsigned int n)
{
	/* libgfshare has no way to report failure: a failed generator must not continue */
	if (gnutls_rnd(GNUTLS_RND_KEY, buf, n) != 0)
		abort();
}

static pthread_once_t gf_once = PTHREAD_ONCE_INIT;
static void gf_init(void)
{
	gfshare_fill_rand = gf_random;
}

static const char kcv_label[] = "coffre root key check v1";

static cf_err kcv_of(const uint8_t *rk, uint8_t out[8])
{
	uint8_t mac[CF_HMAC_LEN];
	CF_TRY(cf_hmac_sha256((struct cf_span){rk, CF_RK_LEN},
	                      (struct cf_span){(const uint8_t *)kcv_label, sizeof kcv_label - 1},
	                      mac));
	memcpy(out, mac, 8);
	return CF_OK;
}

static cf_err sum_of(const char *text, size_t n, char out[9])
{
	uint8_t d[32];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, text, n, d) < 0)
		return cf_err_fail(CF_E_CRYPTO, "SHA-256");
	cf_hex_encode(d, 4, out);
	return CF_OK;
}

cf_err cf_rootkey_split(const struct cf_secbuf *rk, uint32_t rk_version, unsigned k, unsigned n,
                        char (*shares)[CF_SHARE_TEXT_MAX])
{
	CF_ENSURE(rk->len == CF_RK_LEN, cf_err_fail(CF_E_INVALID, "root key size"));
	CF_ENSURE(k >= 2 && k <= n && n <= 255,
	          cf_err_fail(CF_E_INVALID, "shares must be k of n with 2 <= k <= n <= 255"));
	pthread_once(&gf_once, gf_init);
	uint8_t xs[255], kcv[8], share[CF_RK_LEN];
	for (unsigned i = 0; i < n; i++)
		xs[i] = (uint8_t)(i + 1);
	CF_TRY(kcv_of(rk->ptr, kcv));
	gfshare_ctx *g = gfshare_ctx_init_enc(xs, n, (unsigned char)k, CF_RK_LEN);
	if (!g)
		return CF_E_NOMEM;
	gfshare_ctx_enc_setsecret(g, rk->ptr);
	char kcvh[17], sh[SHARE_HEX + 1], sum[9];
	cf_hex_encode(kcv, 8, kcvh);
	cf_err err = CF_OK;
	for (unsigned i = 0; i < n && err == CF_OK; i++) {
		gfshare_ctx_enc_getshare(g, (unsigned char)i, share);
		cf_hex_encode(share, CF_RK_LEN, sh);
		int len = snprintf(shares[i], CF_SHARE_TEXT_MAX, "cfs1.%u.%u.%u.%s.%s", rk_version,
		                   k, xs[i], sh, kcvh);
		if (len < 0 || (size_t)len + 10 > CF_SHARE_TEXT_MAX)
			err = cf_err_fail(CF_E_INTERNAL, "share text too long");
		else if ((err = sum_of(shares[i], (size_t)len, sum)) == CF_OK)
			(void)snprintf(shares[i] + len, CF_SHARE_TEXT_MAX - (size_t)len, ".%s",
			               sum);
	}
	cf_wipe(share, sizeof share);
	cf_wipe(sh, sizeof sh);
	gfshare_ctx_free(g);
	if (err)
		for (unsigned i = 0; i < n; i++)
			cf_wipe(shares[i], CF_SHARE_TEXT_MAX);
	return err;
}

struct parsed {
	uint32_t rk_version;
	unsigned k;
	uint8_t x;
	uint8_t share[CF_RK_LEN];
	char kcv[17];
};

/* Reads "<digits>." at *p into *out (bounded). */
static bool field(const char **p, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;
	const char *q = *p;
	size_t digits = 0;
	for (; *q >= '0' && *q <= '9' && digits < 10; q++, digits++)
		v = v * 10 + (uint64_t)(*q - '0');
	if (digits == 0 || v > max || *q != '.')
		return false;
	*out = (uint32_t)v;
	*p = q + 1;
	return true;
}

static cf_err parse_share(const char *text, size_t idx, struct parsed *out)
{
	size_t len = strnlen(text, CF_SHARE_TEXT_MAX);
	CF_ENSURE(len < CF_SHARE_TEXT_MAX && len > 9 && strncmp(text, "cfs1.", 5) == 0,
	          cf_err_fail(CF_E_INVALID, "share %zu is not a coffre root key share", idx + 1));
	char sum[9];
	CF_TRY(sum_of(text, len - 9, sum));
	CF_ENSURE(text[len - 9] == '.' && strcmp(text + len - 8, sum) == 0,
	          cf_err_fail(CF_E_INVALID, "share %zu is mistyped (its checksum does not match)",
	                      idx + 1));
	const char *p = text + 5;
	uint32_t k, x;
	CF_ENSURE(field(&p, UINT32_MAX, &out->rk_version) && field(&p, 255, &k) &&
	                  field(&p, 255, &x) && x >= 1 && k >= 2,
	          cf_err_fail(CF_E_INVALID, "share %zu is malformed", idx + 1));
	out->k = k;
	out->x = (uint8_t)x;
	CF_ENSURE((size_t)(text + len - p) == SHARE_HEX + 1 + 16 + 9 && p[SHARE_HEX] == '.' &&
	                  cf_hex_decode(p, CF_RK_LEN, out->share),
	          cf_err_fail(CF_E_INVALID, "share %zu is malformed", idx + 1));
	memcpy(out->kcv, p + SHARE_HEX + 1, 16);
	out->kcv[16] = '\0';
	return CF_OK;
}

/* Parses every share and checks they agree (same root key, no repeats). */
static cf_err parse_all(const char *const *shares, size_t count, struct parsed *ps, uint8_t *xs)
{
	for (size_t i = 0; i < count; i++) {
		CF_TRY(parse_share(shares[i], i, &ps[i]));
		CF_ENSURE(i == 0 || (ps[i].rk_version == ps[0].rk_version && ps[i].k == ps[0].k &&
		                     strcmp(ps[i].kcv, ps[0].kcv) == 0),
		          cf_err_fail(CF_E_INVALID,
		                      "share %zu belongs to another root key than share 1", i + 1));
		for (size_t j = 0; j < i; j++)
			CF_ENSURE(ps[j].x != ps[i].x,
			          cf_err_fail(CF_E_INVALID, "share %zu repeats share %zu", i + 1,
			                      j + 1));
		xs[i] = ps[i].x;
	}
	return CF_OK;
}

cf_err cf_rootkey_shares_check(const char *const *shares, size_t count, uint32_t *rk_version,
                               unsigned *k)
{
	CF_ENSURE(count >= 1 && count <= 255, cf_err_fail(CF_E_INVALID, "no shares given"));
	struct parsed *ps = calloc(count, sizeof *ps);
	CF_ENSURE(ps, CF_E_NOMEM);
	uint8_t xs[255];
	cf_err err = parse_all(shares, count, ps, xs);
	if (err == CF_OK) {
		*rk_version = ps[0].rk_version;
		*k = ps[0].k;
	}
	cf_wipe(ps, count * sizeof *ps);
	free(ps);
	return err;
}

cf_err cf_rootkey_combine(const char *const *shares, size_t count, struct cf_secbuf **rk_out,
                          uint32_t *rk_version)
{
	cf_err err = CF_OK;
	CF_ENSURE(count >= 1 && count <= 255, cf_err_fail(CF_E_INVALID, "no shares given"));
	struct parsed *ps = calloc(count, sizeof *ps);
	struct cf_secbuf *rk = NULL;
	gfshare_ctx *g = NULL;
	CF_ENSURE(ps, CF_E_NOMEM);
	uint8_t xs[255];
	CF_TRY_OUT(parse_all(shares, count, ps, xs), out);
	/* libgfshare overwrites its context with its random function when it frees it: a
	 * process that combines without having split must set it too (the fuzzer found
	 * it unset: a call through NULL) */
	pthread_once(&gf_once, gf_init);
	if (count < ps[0].k) {
		err = cf_err_fail(CF_E_INVALID, "%u shares are needed, %zu given", ps[0].k, count);
		goto out;
	}
	g = gfshare_ctx_init_dec(xs, (unsigned)count, CF_RK_LEN);
	CF_ENSURE_OUT(g, CF_E_NOMEM, out);
	for (size_t i = 0; i < count; i++)
		gfshare_ctx_dec_giveshare(g, (unsigned char)i, ps[i].share);
	CF_TRY_OUT(cf_secbuf_new(CF_RK_LEN, &rk), out);
	gfshare_ctx_dec_extract(g, rk->ptr);
	uint8_t kcv[8];
	char kcvh[17];
	CF_TRY_OUT(kcv_of(rk->ptr, kcv), out);
	cf_hex_encode(kcv, 8, kcvh);
	if (!cf_span_eq_ct((struct cf_span){(const uint8_t *)kcvh, 16},
	                   (struct cf_span){(const uint8_t *)ps[0].kcv, 16})) {
		err = cf_err_fail(
		        CF_E_UNSEAL_FAILED,
		        "the shares do not combine to the root key (one is wrong or altered)");
		goto out;
	}
	*rk_version = ps[0].rk_version;
	*rk_out = rk;
	rk = NULL;
out:
	if (g)
		gfshare_ctx_free(g);
	cf_secbuf_free(&rk);
	cf_wipe(ps, count * sizeof *ps);
	free(ps);
	return err;
}
