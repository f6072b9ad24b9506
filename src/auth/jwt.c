/* coffre — access tokens: JWTs signed with Ed25519 (RFC 7519, RFC 8037; profile of RFC
 * 9068), made and checked here on GnuTLS and jansson (DESIGN §4: libjwt 1.10 has no
 * EdDSA and checks no claims). The check is strict on purpose (IA9): one algorithm,
 * one type, a known key id, no header that points at other keys, canonical base64url,
 * and every claim present and in range. Its parser is fuzzed (tests/fuzz/fuzz_jwt.c). */
#include <stdio.h>
#include <string.h>

#include "auth/internal.h"

#define JWT_MAX        2048
#define JWT_PART_MAX   1024
#define JWT_CLOCK_SKEW 60    /* seconds an iat may be ahead of our clock */
#define JWT_LIFE_MAX   86400 /* the longest token coffre makes (auth.token_ttl's bound) */

/* base64url without padding (RFC 7515 §2). out holds 4 * ceil(n / 3) + 1. */
void cf_b64url_encode(const uint8_t *p, size_t n, char *out)
{
	cf_base64_encode(p, n, out);
	size_t len = strlen(out);
	while (len && out[len - 1] == '=')
		out[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

/* Strict base64url: its alphabet only, no padding, canonical (unused bits zero). */
cf_err cf_b64url_decode(struct cf_span in, uint8_t *out, size_t cap, size_t *out_len)
{
	CF_ENSURE(in.len <= JWT_PART_MAX && in.len % 4 != 1, CF_E_INVALID);
	char buf[JWT_PART_MAX + 4];
	for (size_t i = 0; i < in.len; i++) {
		char ch = (char)in.ptr[i];
		bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		          (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
		CF_ENSURE(ok, CF_E_INVALID);
		buf[i] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
	}
	size_t n = in.len;
	while (n % 4)
		buf[n++] = '=';
	return cf_base64_decode(buf, n, out, cap, out_len);
}

void cf_jwt_kid(const uint8_t pub[CF_ED25519_PUB], char kid[17])
{
	uint8_t h[CF_SHA256_LEN];
	struct cf_span part = {pub, CF_ED25519_PUB};
	if (cf_sha256v(&part, 1, h) != CF_OK)
		memset(h, 0, sizeof h);
	cf_b64url_encode(h, 12, kid);
}

static cf_err bad(const char *why)
{
	return cf_err_fail(CF_E_INVALID_TOKEN, "the access token %s", why);
}

static cf_err decode_json(struct cf_span part, json_t **out)
{
	uint8_t raw[JWT_PART_MAX];
	size_t n = 0;
	CF_ENSURE(cf_b64url_decode(part, raw, sizeof raw, &n) == CF_OK,
	          bad("is not canonical base64url"));
	cf_err_detail_clear();
	CF_ENSURE(cf_json_parse_object(raw, n, sizeof raw, out) == CF_OK,
	          bad("has a part that is not one JSON object"));
	return CF_OK;
}

static bool str_is(const json_t *o, const char *key, const char *want)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static cf_err copy_str(const json_t *o, const char *key, char *out, size_t cap)
{
	const json_t *v = json_object_get(o, key);
	CF_ENSURE(json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < cap &&
	                  strlen(json_string_value(v)) == json_string_length(v),
	          bad("has a missing or malformed claim"));
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return CF_OK;
}

static cf_err check_header(const json_t *h, const char *kid)
{
	static const char *const allowed[] = {"alg", "typ", "kid", NULL};
	/* jku, x5u, jwk, x5c and crit would let the token choose its own key or its own
	 * rules: any header beyond these three is refused. */
	cf_err_detail_clear();
	CF_ENSURE(cf_json_only_keys(h, allowed) == CF_OK,
	          bad("has a header coffre does not allow"));
	CF_ENSURE(str_is(h, "alg", "EdDSA"), bad("is not signed with EdDSA"));
	CF_ENSURE(str_is(h, "typ", "at+jwt"), bad("is not of type at+jwt"));
	CF_ENSURE(str_is(h, "kid", kid), bad("names a key coffre does not have"));
	return CF_OK;
}

static cf_err check_claims(const json_t *c, const char *iss, int64_t now, struct cf_jwt_claims *out)
{
	static const char *const allowed[] = {"iss", "aud", "sub", "tenant",
	                                      "iat", "exp", "jti", NULL};
	cf_err_detail_clear();
	CF_ENSURE(cf_json_only_keys(c, allowed) == CF_OK, bad("has a claim coffre does not allow"));
	char aud[300];
	(void)snprintf(aud, sizeof aud, "%s/v1", iss);
	CF_ENSURE(str_is(c, "iss", iss), bad("was not issued by this deployment"));
	CF_ENSURE(str_is(c, "aud", aud), bad("is not meant for this API"));
	CF_TRY(copy_str(c, "sub", out->sub, sizeof out->sub));
	CF_TRY(copy_str(c, "tenant", out->tenant, sizeof out->tenant));
	CF_TRY(copy_str(c, "jti", out->jti, sizeof out->jti));
	const json_t *iat = json_object_get(c, "iat"), *exp = json_object_get(c, "exp");
	CF_ENSURE(json_is_integer(iat) && json_is_integer(exp), bad("lacks iat or exp"));
	out->iat = json_integer_value(iat);
	out->exp = json_integer_value(exp);
	CF_ENSURE(out->iat <= now + JWT_CLOCK_SKEW, bad("is issued in the future"));
	CF_ENSURE(out->exp > out->iat && out->exp - out->iat <= JWT_LIFE_MAX,
	          bad("has an impossible lifetime"));
	CF_ENSURE(now < out->exp, bad("has expired"));
	return CF_OK;
}

cf_err cf_jwt_verify(struct cf_span token, const uint8_t pub[CF_ED25519_PUB], const char *kid,
                     const char *iss, int64_t now, struct cf_jwt_claims *out)
{
	CF_ENSURE(token.len > 0 && token.len <= JWT_MAX, bad("is empty or too long"));
	const uint8_t *d1 = memchr(token.ptr, '.', token.len);
	CF_ENSURE(d1, bad("is not a JWS in compact form"));
	const uint8_t *rest = d1 + 1;
	const uint8_t *d2 = memchr(rest, '.', token.len - (size_t)(rest - token.ptr));
	CF_ENSURE(d2, bad("is not a JWS in compact form"));
	struct cf_span hdr = {token.ptr, (size_t)(d1 - token.ptr)};
	struct cf_span pay = {rest, (size_t)(d2 - rest)};
	struct cf_span sig = {d2 + 1, token.len - (size_t)(d2 + 1 - token.ptr)};
	CF_ENSURE(!memchr(sig.ptr, '.', sig.len), bad("is not a JWS in compact form"));

	json_t *h = NULL, *c = NULL;
	CF_TRY(decode_json(hdr, &h));
	cf_err err = check_header(h, kid);
	json_decref(h);
	CF_TRY(err);
	uint8_t s[CF_ED25519_SIG + 1];
	size_t slen = 0;
	CF_ENSURE(cf_b64url_decode(sig, s, sizeof s, &slen) == CF_OK && slen == CF_ED25519_SIG,
	          bad("has a malformed signature"));
	struct cf_span signed_part = {token.ptr, (size_t)(d2 - token.ptr)};
	CF_ENSURE(cf_ed25519_verify(pub, signed_part, s) == CF_OK, bad("has a bad signature"));
	CF_TRY(decode_json(pay, &c));
	struct cf_jwt_claims cl = {0};
	err = check_claims(c, iss, now, &cl);
	json_decref(c);
	CF_TRY(err);
	*out = cl;
	return CF_OK;
}

cf_err cf_jwt_make(const char *kid, const char *iss, const struct cf_jwt_claims *cl,
                   cf_jwt_sign_fn sign, void *ctx, char *out, size_t cap)
{
	char aud[300];
	(void)snprintf(aud, sizeof aud, "%s/v1", iss);
	json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "EdDSA", "typ", "at+jwt", "kid", kid);
	json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "iss", iss, "aud", aud, "sub",
	                      cl->sub, "tenant", cl->tenant, "iat", (json_int_t)cl->iat, "exp",
	                      (json_int_t)cl->exp, "jti", cl->jti);
	char *hs = NULL, *cs = NULL;
	size_t hn = 0, cn = 0;
	cf_err err = CF_E_NOMEM;
	if (h && c && cf_json_dump(h, &hs, &hn) == CF_OK && cf_json_dump(c, &cs, &cn) == CF_OK) {
		err = CF_E_TOO_LARGE;
		size_t need = 4 * ((hn + 2) / 3) + 4 * ((cn + 2) / 3) +
		              4 * ((CF_ED25519_SIG + 2) / 3) + 3;
		if (hn < JWT_PART_MAX / 2 && cn < JWT_PART_MAX / 2 && need <= cap) {
			cf_b64url_encode((const uint8_t *)hs, hn, out);
			size_t len = strlen(out);
			out[len++] = '.';
			cf_b64url_encode((const uint8_t *)cs, cn, out + len);
			len += strlen(out + len);
			uint8_t sig[CF_ED25519_SIG];
			err = sign(ctx, (struct cf_span){(const uint8_t *)out, len}, sig);
			if (err == CF_OK) {
				out[len++] = '.';
				cf_b64url_encode(sig, sizeof sig, out + len);
			}
		}
	}
	json_decref(h);
	json_decref(c);
	free(hs);
	free(cs);
	return err;
}
