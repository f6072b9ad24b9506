/* Unit tests: access tokens (RFC 8037's Ed25519 JWS vector, every refusal of the strict
 * check), permissions and the one authorisation check (IA1, TI1), and the password
 * policy (IA3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "auth/internal.h"
#include "helpers.h"

/* RFC 8032 §7.1, test 1: the key RFC 8037's examples sign with. */
static const uint8_t seed[CF_ED25519_SEED] = {0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60,
                                              0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
                                              0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19,
                                              0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
static const uint8_t pub[CF_ED25519_PUB] = {0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7,
                                            0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
                                            0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25,
                                            0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
static const char iss[] = "https://vault.example";

static cf_err sign(void *ctx, struct cf_span msg, uint8_t sig[CF_ED25519_SIG])
{
	(void)ctx;
	return cf_ed25519_sign(seed, pub, msg, sig);
}

/* RFC 8037 Appendix A.4: the Ed25519 JWS of "Example of Ed25519 signing". */
static void test_rfc8037_vector(void **state)
{
	(void)state;
	static const char in[] = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
	static const char want[] = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylG"
	                           "jg5BhVsPt9g7sVvpAr_MuM0KAg";
	uint8_t sig[CF_ED25519_SIG];
	OK(sign(NULL, S(in), sig));
	char got[96];
	cf_b64url_encode(sig, sizeof sig, got);
	assert_string_equal(got, want);
	uint8_t payload[64];
	size_t n = 0;
	OK(cf_b64url_decode(S("RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"), payload, sizeof payload, &n));
	assert_int_equal(n, 26);
	assert_memory_equal(payload, "Example of Ed25519 signing", 26);
}

static void make(const struct cf_jwt_claims *cl, const char *kid, char *tok)
{
	OK(cf_jwt_make(kid, iss, cl, sign, NULL, tok, 1024));
}

static struct cf_jwt_claims claims(int64_t now)
{
	struct cf_jwt_claims cl = {.iat = now, .exp = now + 900};
	(void)snprintf(cl.sub, sizeof cl.sub, "c0123456789abcdef");
	(void)snprintf(cl.tenant, sizeof cl.tenant, "t0123456789abcdef");
	(void)snprintf(cl.jti, sizeof cl.jti, "00112233445566778899aabbccddeeff");
	return cl;
}

static cf_err check(const char *tok, int64_t now)
{
	char kid[17];
	cf_jwt_kid(pub, kid);
	struct cf_jwt_claims out;
	return cf_jwt_verify(cf_span_str(tok), pub, kid, iss, now, &out);
}

/* A token with its header or claims replaced by this JSON, signed properly. */
static void forge(const char *header, const char *payload, char *tok)
{
	char h[512], p[512];
	cf_b64url_encode((const uint8_t *)header, strlen(header), h);
	cf_b64url_encode((const uint8_t *)payload, strlen(payload), p);
	int n = snprintf(tok, 1024, "%s.%s", h, p);
	uint8_t sig[CF_ED25519_SIG];
	OK(sign(NULL, (struct cf_span){(const uint8_t *)tok, (size_t)n}, sig));
	tok[n] = '.';
	cf_b64url_encode(sig, sizeof sig, tok + n + 1);
}

static void test_jwt_roundtrip_and_claims(void **state)
{
	(void)state;
	const int64_t now = 1800000000;
	char kid[17], tok[1024];
	cf_jwt_kid(pub, kid);
	struct cf_jwt_claims cl = claims(now);
	make(&cl, kid, tok);
	struct cf_jwt_claims out;
	OK(cf_jwt_verify(cf_span_str(tok), pub, kid, iss, now + 10, &out));
	assert_string_equal(out.sub, cl.sub);
	assert_string_equal(out.tenant, cl.tenant);
	assert_int_equal(out.exp, now + 900);
	/* Expired, issued in the future, another issuer (so another audience), another kid. */
	assert_int_equal(check(tok, now + 900), CF_E_INVALID_TOKEN);
	assert_int_equal(check(tok, now - 3600), CF_E_INVALID_TOKEN);
	assert_int_equal(
	        cf_jwt_verify(cf_span_str(tok), pub, kid, "https://other.example", now, &out),
	        CF_E_INVALID_TOKEN);
	assert_int_equal(cf_jwt_verify(cf_span_str(tok), pub, "AAAAAAAAAAAAAAAA", iss, now, &out),
	                 CF_E_INVALID_TOKEN);
	/* A lifetime beyond a day is not one coffre makes. */
	cl.exp = now + 2 * 86400;
	make(&cl, kid, tok);
	assert_int_equal(check(tok, now), CF_E_INVALID_TOKEN);
	/* Every bit of the signature, the header and the payload counts. */
	cl = claims(now);
	make(&cl, kid, tok);
	for (size_t i = 0; tok[i]; i++) {
		char saved = tok[i];
		tok[i] = saved == 'A' ? 'B' : 'A';
		assert_int_not_equal(check(tok, now + 1), CF_OK);
		tok[i] = saved;
	}
	OK(check(tok, now + 1));
}

static void test_jwt_refusals(void **state)
{
	(void)state;
	const int64_t now = 1800000000;
	char kid[17], tok[1024], h[256], p[512];
	cf_jwt_kid(pub, kid);
	(void)snprintf(p, sizeof p,
	               "{\"iss\":\"%s\",\"aud\":\"%s/v1\",\"sub\":\"c1\",\"tenant\":\"t1\","
	               "\"iat\":%lld,\"exp\":%lld,\"jti\":\"j1\"}",
	               iss, iss, (long long)now, (long long)now + 60);
	/* The positive control: this header and payload verify. */
	(void)snprintf(h, sizeof h, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
	forge(h, p, tok);
	OK(check(tok, now));
	static const char *const headers[] = {
	        "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}",
	        "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}",
	        "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
	        "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\"}",
	        "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"crit\":[\"exp\"]}",
	        "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"jku\":\"https://x\"}",
	        "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"x5u\":\"https://x\"}",
	        "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"jwk\":{}}",
	        "{\"alg\":\"EdDSA\",\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}",
	};
	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		(void)snprintf(h, sizeof h, headers[i], kid);
#pragma GCC diagnostic pop
		forge(h, p, tok);
		assert_int_equal(check(tok, now), CF_E_INVALID_TOKEN);
	}
	(void)snprintf(h, sizeof h, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
	/* Claims: missing, extra, wrong audience, wrong types. */
	static const char *const payloads[] = {
	        "{\"iss\":\"https://vault.example\",\"aud\":\"https://vault.example/v1\","
	        "\"sub\":\"c1\",\"iat\":1800000000,\"exp\":1800000060,\"jti\":\"j1\"}",
	        "{\"iss\":\"https://vault.example\",\"aud\":\"https://vault.example/v1\","
	        "\"sub\":\"c1\",\"tenant\":\"t1\",\"iat\":1800000000,\"exp\":1800000060,"
	        "\"jti\":\"j1\",\"roles\":[\"owner\"]}",
	        "{\"iss\":\"https://vault.example\",\"aud\":\"https://other/v1\",\"sub\":\"c1\","
	        "\"tenant\":\"t1\",\"iat\":1800000000,\"exp\":1800000060,\"jti\":\"j1\"}",
	        "{\"iss\":\"https://vault.example\",\"aud\":[\"https://vault.example/v1\"],"
	        "\"sub\":\"c1\",\"tenant\":\"t1\",\"iat\":1800000000,\"exp\":1800000060,"
	        "\"jti\":\"j1\"}",
	        "{\"iss\":\"https://vault.example\",\"aud\":\"https://vault.example/v1\","
	        "\"sub\":\"c1\",\"tenant\":\"t1\",\"iat\":1800000000,\"exp\":\"1800000060\","
	        "\"jti\":\"j1\"}",
	        "{\"iss\":\"https://vault.example\",\"aud\":\"https://vault.example/v1\","
	        "\"sub\":\"\",\"tenant\":\"t1\",\"iat\":1800000000,\"exp\":1800000060,"
	        "\"jti\":\"j1\"}",
	};
	for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
		forge(h, payloads[i], tok);
		assert_int_equal(check(tok, now), CF_E_INVALID_TOKEN);
	}
	/* Shapes: two parts, four parts, padding, the standard alphabet, trailing bits. */
	forge(h, p, tok);
	char bad[1100];
	char *last = strrchr(tok, '.');
	(void)snprintf(bad, sizeof bad, "%.*s", (int)(last - tok), tok);
	assert_int_equal(check(bad, now), CF_E_INVALID_TOKEN);
	(void)snprintf(bad, sizeof bad, "%s.x", tok);
	assert_int_equal(check(bad, now), CF_E_INVALID_TOKEN);
	(void)snprintf(bad, sizeof bad, "%s==", tok);
	assert_int_equal(check(bad, now), CF_E_INVALID_TOKEN);
	uint8_t out[8];
	size_t n = 0;
	assert_int_equal(cf_b64url_decode(S("QR"), out, sizeof out, &n), CF_E_INVALID); /* bits */
	OK(cf_b64url_decode(S("QQ"), out, sizeof out, &n));
	assert_int_equal(cf_b64url_decode(S("Q+=="), out, sizeof out, &n), CF_E_INVALID);
	assert_int_equal(cf_b64url_decode(S("Q/"), out, sizeof out, &n), CF_E_INVALID);
	assert_int_equal(check("", now), CF_E_INVALID_TOKEN);
}

static void test_perms_and_authorize(void **state)
{
	(void)state;
	cf_perms p = 0;
	assert_true(cf_role_builtin("owner", &p) && p == CF_PERMS_ALL);
	assert_true(cf_role_builtin("admin", &p) && !(p & CF_PERM(CF_P_TENANT_MANAGE)) &&
	            (p & CF_PERM(CF_P_USERS_MANAGE)));
	assert_true(cf_role_builtin("agent", &p) && (p & CF_PERM(CF_P_RECORDS_READ)) &&
	            !(p & CF_PERM(CF_P_PII_REVEAL)) && !(p & CF_PERM(CF_P_USERS_MANAGE)));
	assert_true(cf_role_builtin("end_user", &p) && p == 0);
	assert_false(cf_role_builtin("root", &p));
	for (unsigned i = 0; i < CF_P_COUNT; i++) {
		enum cf_perm back;
		OK(cf_perm_parse(cf_perm_name((enum cf_perm)i), &back));
		assert_int_equal(back, i);
	}
	enum cf_perm x;
	assert_int_equal(cf_perm_parse("records.*", &x), CF_E_INVALID);

	struct cf_principal who = {.kind = CF_PRINCIPAL_USER};
	(void)snprintf(who.tenant.name, sizeof who.tenant.name, "acme");
	assert_true(cf_role_builtin("agent", &who.perms));
	OK(cf_auth_authorize(&who, "acme", CF_P_RECORDS_READ));
	OK(cf_auth_authorize(&who, NULL, CF_P_COUNT));
	assert_int_equal(cf_auth_authorize(&who, "acme", CF_P_USERS_MANAGE), CF_E_FORBIDDEN);
	/* TI1: another tenant is not found, whatever the permission. */
	assert_int_equal(cf_auth_authorize(&who, "globex", CF_P_RECORDS_READ), CF_E_NOT_FOUND);
	assert_int_equal(cf_auth_authorize(&who, "acm", CF_P_RECORDS_READ), CF_E_NOT_FOUND);
	assert_int_equal(cf_auth_authorize(&who, "acme2", CF_P_COUNT), CF_E_NOT_FOUND);
	struct cf_principal nobody = {0};
	assert_int_equal(cf_auth_authorize(&nobody, NULL, CF_P_COUNT), CF_E_UNAUTHENTICATED);
}

static void test_password_policy(void **state)
{
	(void)state;
	struct cf_auth_opts o = {.argon2 = {.m_kib = 8192, .t = 1, .p = 1}};
	struct cf_auth *a = NULL;
	OK(cf_auth_new(&o, &a));
	const char *email = "ada@example.com";
	OK(cf_auth_password_check(a, NULL, email, S("violet-tractor-harbour-42")));
	OK(cf_auth_password_check(a, NULL, email,
	                          S("élan vital été 2026"))); /* characters, not bytes */
	char longpw[257];
	for (size_t i = 0; i < 128; i++)
		longpw[i] = "correct horse battery staple "[i % 29];
	OK(cf_auth_password_check(a, NULL, email, (struct cf_span){(uint8_t *)longpw, 128}));
	assert_int_equal(cf_auth_password_check(a, NULL, email, S("short-pw")), CF_E_WEAK_PASSWORD);
	assert_int_equal(cf_auth_password_check(a, NULL, email, S("ADA@example.com")),
	                 CF_E_WEAK_PASSWORD);
	assert_int_equal(cf_auth_password_check(a, NULL, email, S("password12345678")),
	                 CF_E_WEAK_PASSWORD);
	assert_null(strstr(cf_err_detail(), "password12345678")); /* the rule, never the password */
	memset(longpw, 'x', sizeof longpw);
	assert_int_equal(
	        cf_auth_password_check(a, NULL, email, (struct cf_span){(uint8_t *)longpw, 257}),
	        CF_E_WEAK_PASSWORD);
	/* IA3: the classes a password mixes (lower, upper, digits, others; non-ASCII is other). */
	assert_int_equal(cf_password_classes(S("")), 0);
	assert_int_equal(cf_password_classes(S("abcdefghijkl")), 1);
	assert_int_equal(cf_password_classes(S("violet-tractor-harbour-42")), 3);
	assert_int_equal(cf_password_classes(S("Violet-tractor-harbour-42")), 4);
	assert_int_equal(cf_password_classes(S("ÉLAN VITAL")), 2); /* upper, other */
	assert_int_equal(cf_password_classes(S("123456789012")), 1);
	char phc[160];
	OK(auth_hash_password(a, S("violet-tractor-harbour-42"), phc));
	OK(auth_verify_password(a, phc, S("violet-tractor-harbour-42")));
	assert_int_equal(auth_verify_password(a, phc, S("violet-tractor-harbour-43")),
	                 CF_E_INTEGRITY);
	cf_auth_free(&a);
	assert_null(a);
}

/* RFC 6238 Appendix B (SHA-1 rows), the last six of their eight digits: the check finds
 * each code at its step, one step either side, and never a step already used. */
static void test_totp_rfc6238(void **state)
{
	(void)state;
	static const uint8_t key[] = "12345678901234567890";
	static const struct {
		int64_t t;
		const char *code;
	} v[] = {{59, "287082"},         {1111111109, "081804"}, {1111111111, "050471"},
	         {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"}};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		int64_t step = 0;
		OK(cf_totp_check_code(key, 20, v[i].t, v[i].code, 0, &step));
		assert_int_equal(step, v[i].t / 30);
		/* one step either side, not two */
		OK(cf_totp_check_code(key, 20, v[i].t + 30, v[i].code, 0, &step));
		OK(cf_totp_check_code(key, 20, v[i].t - 30, v[i].code, 0, &step));
		assert_int_equal(cf_totp_check_code(key, 20, v[i].t + 61, v[i].code, 0, &step),
		                 CF_E_BAD_CREDENTIALS);
		/* no replay: not at or before the last step used */
		assert_int_equal(cf_totp_check_code(key, 20, v[i].t, v[i].code, v[i].t / 30, &step),
		                 CF_E_BAD_CREDENTIALS);
	}
	int64_t step = 0;
	assert_int_equal(cf_totp_check_code(key, 20, 59, "287083", 0, &step), CF_E_BAD_CREDENTIALS);
	assert_int_equal(cf_totp_check_code(key, 20, 59, "28708", 0, &step), CF_E_BAD_CREDENTIALS);
	assert_int_equal(cf_totp_check_code(key, 20, 59, "94287082", 0, &step),
	                 CF_E_BAD_CREDENTIALS);
}

/* IA5, MD4: three free failures of an account from an address, then a growing delay; a
 * success clears it; the account alone locks (temporarily) after ten from anywhere; an
 * address alone after fifty, whatever the accounts. */
static void test_throttle(void **state)
{
	(void)state;
	struct cf_throttle *t = NULL;
	OK(auth_throttle_new(&t));
	struct cf_throttle_who w = {"acme", "ada@acme.example", "192.0.2.1"};
	for (int i = 0; i < 2; i++) {
		auth_throttle_failed(t, &w);
		assert_int_equal(auth_throttle_wait(t, &w), 0);
	}
	auth_throttle_failed(t, &w);
	assert_int_equal(auth_throttle_wait(t, &w), 1);
	auth_throttle_failed(t, &w);
	assert_int_equal(auth_throttle_wait(t, &w), 2);
	auth_throttle_failed(t, &w);
	assert_int_equal(auth_throttle_wait(t, &w), 4);
	/* Another account from the same address, and the same account in another tenant,
	 * are not held back by these. */
	struct cf_throttle_who other = {"acme", "bob@acme.example", "192.0.2.1"};
	struct cf_throttle_who elsewhere = {"globex", "ada@acme.example", "192.0.2.1"};
	assert_int_equal(auth_throttle_wait(t, &other), 0);
	assert_int_equal(auth_throttle_wait(t, &elsewhere), 0);
	auth_throttle_passed(t, &w);
	assert_int_equal(auth_throttle_wait(t, &w), 0);
	/* Ten failures of one account from ten addresses: the account waits, from anywhere. */
	char src[32];
	struct cf_throttle_who spread = {"acme", "carol@acme.example", src};
	for (int i = 0; i < 10; i++) {
		(void)snprintf(src, sizeof src, "198.51.100.%d", i);
		auth_throttle_failed(t, &spread);
	}
	(void)snprintf(src, sizeof src, "203.0.113.7");
	assert_int_equal(auth_throttle_wait(t, &spread), 1);
	/* Fifty failures from one address over fifty accounts: that address waits. */
	char acct[32];
	struct cf_throttle_who scan = {"acme", acct, "192.0.2.99"};
	for (int i = 0; i < 50; i++) {
		(void)snprintf(acct, sizeof acct, "user%d@acme.example", i);
		auth_throttle_failed(t, &scan);
	}
	(void)snprintf(acct, sizeof acct, "someone-new@acme.example");
	assert_int_equal(auth_throttle_wait(t, &scan), 1);
	auth_throttle_free(&t);
	assert_null(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rfc8037_vector),
	        cmocka_unit_test(test_jwt_roundtrip_and_claims),
	        cmocka_unit_test(test_jwt_refusals),
	        cmocka_unit_test(test_perms_and_authorize),
	        cmocka_unit_test(test_password_policy),
	        cmocka_unit_test(test_totp_rfc6238),
	        cmocka_unit_test(test_throttle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
