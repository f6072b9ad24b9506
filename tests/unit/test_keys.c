/* Unit tests for src/keys: the envelope of a sealed value (ER1, ER2, TI1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <p11-kit/p11-kit.h>
#include <string.h>

#include "helpers.h"
#include "keys/keys.h"

static struct cf_kek *kek, *kek2;

static int setup(void **state)
{
	(void)state;
	uint8_t k1[CF_SIV_KEY], k2[CF_SIV_KEY];
	if (cf_secmem_init(64 * 1024) != CF_OK || cf_crypto_random_key(k1, sizeof k1) != CF_OK ||
	    cf_crypto_random_key(k2, sizeof k2) != CF_OK || cf_kek_new(k1, &kek) != CF_OK ||
	    cf_kek_new(k2, &kek2) != CF_OK)
		return -1;
	cf_wipe(k1, sizeof k1);
	cf_wipe(k2, sizeof k2);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cf_kek_free(&kek);
	cf_kek_free(&kek2);
	cf_secmem_shutdown();
	return 0;
}

static struct cf_env_ctx ctx_a(void)
{
	return (struct cf_env_ctx){S("acme"), S("customers"), S("rec-1"), 3, S("email")};
}

static uint8_t *seal(const struct cf_env_ctx *c, struct cf_span pt, size_t *len)
{
	size_t cap = cf_env_size(c, pt.len);
	uint8_t *env = malloc(cap);
	assert_non_null(env);
	struct cf_key_id kid = {.kek_version = 7, .rk_version = 2};
	assert_int_equal(cf_env_seal(kek, kid, c, pt, env, cap, len), CF_OK);
	assert_int_equal(*len, cap);
	return env;
}

static cf_err open_as(struct cf_kek *k, const struct cf_env_ctx *c, const uint8_t *env, size_t len)
{
	uint8_t out[70000];
	size_t n = 0;
	return cf_env_open(k, c, (struct cf_span){env, len}, out, sizeof out, &n);
}

static void test_round_trip_and_layout(void **state)
{
	(void)state;
	static uint8_t big[65536];
	memset(big, 'z', sizeof big);
	size_t sizes[] = {0, 1, 1024, sizeof big};
	struct cf_env_ctx c = ctx_a();
	for (size_t i = 0; i < 4; i++) {
		size_t len;
		uint8_t *env = seal(&c, (struct cf_span){big, sizes[i]}, &len);
		struct cf_env_view v;
		assert_int_equal(cf_env_parse((struct cf_span){env, len}, &v), CF_OK);
		assert_int_equal(v.format, CF_ENV_FORMAT);
		assert_int_equal(v.alg, CF_ENV_ALG_GCM_SIV);
		assert_int_equal(v.kid.kek_version, 7);
		assert_int_equal(v.kid.rk_version, 2);
		assert_true(cf_span_eq(v.tenant, S("acme")));
		assert_int_equal(v.wrapped_dek.len, 48);
		assert_int_equal(v.nonce.len, 12);
		assert_int_equal(v.sealed.len, sizes[i] + 16);
		/* header: format, alg, kek version, rk version, tenant (docs/formats.md) */
		static const uint8_t head[] = {1, 1, 0, 0, 0, 7, 0, 0, 0, 2, 4, 'a', 'c', 'm', 'e'};
		assert_memory_equal(env, head, sizeof head);
		uint8_t *out = malloc(sizes[i] + 1);
		size_t n = 99;
		assert_int_equal(
		        cf_env_open(kek, &c, (struct cf_span){env, len}, out, sizes[i] + 1, &n),
		        CF_OK);
		assert_int_equal(n, sizes[i]);
		if (n)
			assert_memory_equal(out, big, n);
		free(out);
		free(env);
	}
	/* the same value twice: different DEK and nonce, so different bytes */
	size_t l1, l2;
	uint8_t *e1 = seal(&c, S("same"), &l1), *e2 = seal(&c, S("same"), &l2);
	assert_int_equal(l1, l2);
	assert_memory_not_equal(e1 + 15, e2 + 15, l1 - 15);
	free(e1);
	free(e2);
}

static void test_bound_to_context(void **state)
{
	(void)state;
	struct cf_env_ctx c = ctx_a();
	size_t len;
	uint8_t *env = seal(&c, S("jane@example.com"), &len);
	assert_int_equal(open_as(kek, &c, env, len), CF_OK);
	/* TI1: a row copied to another tenant does not open, and says why */
	struct cf_env_ctx other = c;
	other.tenant = S("evil");
	assert_int_equal(open_as(kek, &other, env, len), CF_E_INTEGRITY);
	assert_non_null(strstr(cf_err_detail(), "another tenant"));
	/* ...even when the stored tenant is forged to match: the associated data comes
	 * from the caller, and the value was bound to "acme" */
	memcpy(env + 11, "evil", 4);
	assert_int_equal(open_as(kek, &other, env, len), CF_E_INTEGRITY);
	memcpy(env + 11, "acme", 4);
	/* another record, version, field, collection */
	other = c;
	other.record = S("rec-2");
	assert_int_equal(open_as(kek, &other, env, len), CF_E_INTEGRITY);
	other = c;
	other.version = 4;
	assert_int_equal(open_as(kek, &other, env, len), CF_E_INTEGRITY);
	other = c;
	other.field = S("phone");
	assert_int_equal(open_as(kek, &other, env, len), CF_E_INTEGRITY);
	other = c;
	other.collection = S("orders");
	assert_int_equal(open_as(kek, &other, env, len), CF_E_INTEGRITY);
	/* the wrong KEK, and a key id edited to point at another version */
	assert_int_equal(open_as(kek2, &c, env, len), CF_E_INTEGRITY);
	env[5] ^= 1;
	assert_int_equal(open_as(kek, &c, env, len), CF_E_INTEGRITY);
	env[5] ^= 1;
	assert_int_equal(open_as(kek, &c, env, len), CF_OK);
	free(env);
}

static void test_tampering_and_truncation(void **state)
{
	(void)state;
	struct cf_env_ctx c = ctx_a();
	size_t len;
	uint8_t *env = seal(&c, S("4111 1111 1111 1111"), &len);
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit += 3) {
			env[i] ^= (uint8_t)(1u << bit);
			if (open_as(kek, &c, env, len) != CF_E_INTEGRITY)
				fail_msg("flipping bit %d of byte %zu was not detected", bit, i);
			env[i] ^= (uint8_t)(1u << bit);
		}
	for (size_t n = 0; n < len; n++)
		if (open_as(kek, &c, env, n) != CF_E_INTEGRITY)
			fail_msg("truncation to %zu bytes was not detected", n);
	/* trailing bytes are part of the sealed data, so they fail too */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, env, len);
	longer[len] = 0;
	assert_int_equal(open_as(kek, &c, longer, len + 1), CF_E_INTEGRITY);
	free(longer);
	assert_int_equal(open_as(kek, &c, env, len), CF_OK);
	free(env);
}

static void test_bad_context(void **state)
{
	(void)state;
	uint8_t out[200];
	size_t n;
	struct cf_env_ctx c = ctx_a();
	c.tenant = (struct cf_span){(const uint8_t *)"", 0};
	assert_int_equal(
	        cf_env_seal(kek, (struct cf_key_id){1, 1}, &c, S("x"), out, sizeof out, &n),
	        CF_E_INVALID);
	static uint8_t longname[300];
	memset(longname, 'a', sizeof longname);
	c = ctx_a();
	c.field = (struct cf_span){longname, sizeof longname};
	assert_int_equal(
	        cf_env_seal(kek, (struct cf_key_id){1, 1}, &c, S("x"), out, sizeof out, &n),
	        CF_E_INVALID);
	c = ctx_a();
	assert_int_equal(cf_env_seal(kek, (struct cf_key_id){1, 1}, &c, S("x"), out, 10, &n),
	                 CF_E_INVALID);
}

static const struct cf_argon2_params fast = {.m_kib = 1024, .t = 1, .p = 1};

static void test_rootkey_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/cf_rk_XXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	(void)snprintf(path, sizeof path, "%s/root.key", dir);
	struct cf_secbuf *rk = NULL, *again = NULL;
	assert_int_equal(cf_rootkey_file_create(path, S("short"), &fast, 1, &rk), CF_E_INVALID);
	assert_int_equal(cf_rootkey_file_create(path, S("correct horse battery"), &fast, 3, &rk),
	                 CF_OK);
	assert_int_equal(rk->len, CF_RK_LEN);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, CF_RK_FILE_LEN);
	/* never overwritten */
	assert_int_equal(cf_rootkey_file_create(path, S("another passphrase"), &fast, 4, &again),
	                 CF_E_CONFLICT);
	uint32_t ver = 0;
	assert_int_equal(cf_rootkey_file_open(path, S("correct horse battery"), &again, &ver),
	                 CF_OK);
	assert_int_equal(ver, 3);
	assert_memory_equal(again->ptr, rk->ptr, CF_RK_LEN);
	cf_secbuf_free(&again);
	/* a wrong passphrase is told apart from a damaged file */
	assert_int_equal(cf_rootkey_file_open(path, S("correct horse batterY"), &again, &ver),
	                 CF_E_UNSEAL_FAILED);
	assert_null(again);
	struct cf_buf b;
	assert_int_equal(cf_file_read(path, 4096, &b), CF_OK);
	uint8_t orig[CF_RK_FILE_LEN];
	memcpy(orig, b.data, sizeof orig);
	cf_buf_free(&b);
	char bad[80];
	(void)snprintf(bad, sizeof bad, "%s/bad.key", dir);
	for (size_t i = 0; i < CF_RK_FILE_LEN; i++) {
		uint8_t copy[CF_RK_FILE_LEN];
		memcpy(copy, orig, sizeof copy);
		copy[i] ^= 0x04;
		assert_int_equal(cf_file_write_atomic(bad, copy, sizeof copy, 0600), CF_OK);
		if (cf_rootkey_file_open(bad, S("correct horse battery"), &again, &ver) !=
		    CF_E_INTEGRITY)
			fail_msg("a change to byte %zu was not reported as damage", i);
	}
	assert_int_equal(cf_file_write_atomic(bad, orig, 100, 0600), CF_OK);
	assert_int_equal(cf_rootkey_file_open(bad, S("correct horse battery"), &again, &ver),
	                 CF_E_INTEGRITY);
	/* parameters edited and the checksum recomputed: the header is authenticated */
	uint8_t forged[CF_RK_FILE_LEN];
	memcpy(forged, orig, sizeof forged);
	forged[16] = 2; /* t: a valid value, but not the one sealed */
	uint8_t d[32];
	assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, forged, CF_RK_FILE_LEN - 8, d), 0);
	memcpy(forged + CF_RK_FILE_LEN - 8, d, 8);
	assert_int_equal(cf_file_write_atomic(bad, forged, sizeof forged, 0600), CF_OK);
	assert_int_equal(cf_rootkey_file_open(bad, S("correct horse battery"), &again, &ver),
	                 CF_E_UNSEAL_FAILED);
	/* a file asking for absurd work is refused before any is done */
	memcpy(forged, orig, sizeof forged);
	forged[9] = 0x7f; /* m_kib far above the bound */
	assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, forged, CF_RK_FILE_LEN - 8, d), 0);
	memcpy(forged + CF_RK_FILE_LEN - 8, d, 8);
	assert_int_equal(cf_file_write_atomic(bad, forged, sizeof forged, 0600), CF_OK);
	assert_int_equal(cf_rootkey_file_open(bad, S("correct horse battery"), &again, &ver),
	                 CF_E_INTEGRITY);
	assert_non_null(strstr(cf_err_detail(), "out of bounds"));
	(void)snprintf(bad, sizeof bad, "%s/none.key", dir);
	assert_int_equal(cf_rootkey_file_open(bad, S("correct horse battery"), &again, &ver),
	                 CF_E_NOT_FOUND);
	cf_secbuf_free(&rk);
	(void)snprintf(bad, sizeof bad, "%s/bad.key", dir);
	unlink(bad);
	unlink(path);
	rmdir(dir);
}

static void test_rootkey_shares(void **state)
{
	(void)state;
	struct cf_secbuf *rk = NULL, *got = NULL;
	assert_int_equal(cf_secbuf_new(CF_RK_LEN, &rk), CF_OK);
	assert_int_equal(cf_crypto_random_key(rk->ptr, CF_RK_LEN), CF_OK);
	char sh[5][CF_SHARE_TEXT_MAX];
	assert_int_equal(cf_rootkey_split(rk, 9, 1, 5, sh), CF_E_INVALID);
	assert_int_equal(cf_rootkey_split(rk, 9, 6, 5, sh), CF_E_INVALID);
	assert_int_equal(cf_rootkey_split(rk, 9, 3, 5, sh), CF_OK);
	assert_true(strncmp(sh[0], "cfs1.9.3.1.", 11) == 0);
	/* any 3 of the 5 give the root key back; so do 4 and 5 */
	static const int combos[][5] = {{0, 1, 2, -1, -1},
	                                {4, 2, 0, -1, -1},
	                                {1, 3, 4, -1, -1},
	                                {0, 1, 2, 3, -1},
	                                {0, 1, 2, 3, 4}};
	for (size_t c = 0; c < sizeof combos / sizeof combos[0]; c++) {
		const char *use[5];
		size_t n = 0;
		for (size_t i = 0; i < 5 && combos[c][i] >= 0; i++)
			use[n++] = sh[combos[c][i]];
		uint32_t ver = 0;
		assert_int_equal(cf_rootkey_combine(use, n, &got, &ver), CF_OK);
		assert_int_equal(ver, 9);
		assert_memory_equal(got->ptr, rk->ptr, CF_RK_LEN);
		cf_secbuf_free(&got);
	}
	uint32_t ver;
	const char *two[] = {sh[0], sh[1]};
	assert_int_equal(cf_rootkey_combine(two, 2, &got, &ver), CF_E_INVALID);
	assert_non_null(strstr(cf_err_detail(), "3 shares are needed"));
	const char *dup[] = {sh[0], sh[1], sh[0]};
	assert_int_equal(cf_rootkey_combine(dup, 3, &got, &ver), CF_E_INVALID);
	assert_non_null(strstr(cf_err_detail(), "share 3 repeats share 1"));
	/* a typo is caught by the checksum, naming the share */
	char typo[CF_SHARE_TEXT_MAX];
	memcpy(typo, sh[1], sizeof typo);
	typo[20] = typo[20] == 'a' ? 'b' : 'a';
	const char *t3[] = {sh[0], typo, sh[2]};
	assert_int_equal(cf_rootkey_combine(t3, 3, &got, &ver), CF_E_INVALID);
	assert_non_null(strstr(cf_err_detail(), "share 2 is mistyped"));
	/* a share of another root key */
	struct cf_secbuf *rk2 = NULL;
	char other[5][CF_SHARE_TEXT_MAX];
	assert_int_equal(cf_secbuf_new(CF_RK_LEN, &rk2), CF_OK);
	assert_int_equal(cf_crypto_random_key(rk2->ptr, CF_RK_LEN), CF_OK);
	assert_int_equal(cf_rootkey_split(rk2, 9, 3, 5, other), CF_OK);
	const char *mixed[] = {sh[0], sh[1], other[2]};
	assert_int_equal(cf_rootkey_combine(mixed, 3, &got, &ver), CF_E_INVALID);
	assert_non_null(strstr(cf_err_detail(), "share 3 belongs to another root key"));
	/* a share altered with its checksum recomputed: the key check value catches it */
	char forged[CF_SHARE_TEXT_MAX];
	memcpy(forged, sh[2], sizeof forged);
	size_t len = strlen(forged);
	forged[30] = forged[30] == '0' ? '1' : '0';
	uint8_t d[32];
	assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, forged, len - 9, d), 0);
	(void)snprintf(forged + len - 8, 9, "%02x%02x%02x%02x", d[0], d[1], d[2], d[3]);
	const char *f3[] = {sh[0], sh[1], forged};
	assert_int_equal(cf_rootkey_combine(f3, 3, &got, &ver), CF_E_UNSEAL_FAILED);
	assert_null(got);
	const char *junk[] = {"hello"};
	assert_int_equal(cf_rootkey_combine(junk, 1, &got, &ver), CF_E_INVALID);
	cf_secbuf_free(&rk);
	cf_secbuf_free(&rk2);
}

static void test_rootkey_hsm(void **state)
{
	(void)state;
	char dir[] = "/tmp/cf_hsm_XXXXXX";
	if (!softhsm_token(dir, "coffre-test"))
		fail_msg("cannot initialise a SoftHSM2 token (scripts/deps.sh installs softhsm2)");
	struct cf_hsm *h = NULL;
	assert_int_equal(cf_hsm_open("/nonexistent/module.so", "coffre-test", S("123456"), &h),
	                 CF_E_CONFIG);
	assert_int_equal(cf_hsm_open(SOFTHSM, "no-such-token", S("123456"), &h), CF_E_CONFIG);
	assert_int_equal(cf_hsm_open(SOFTHSM, "coffre-test", S("654321"), &h), CF_E_UNSEAL_FAILED);
	assert_int_equal(cf_hsm_open(SOFTHSM, "coffre-test", S("123456"), &h), CF_OK);
	assert_int_equal(cf_hsm_generate_rk(h, 1), CF_OK);
	assert_int_equal(cf_hsm_generate_rk(h, 1), CF_E_CONFLICT);
	uint8_t key[CF_SIV_KEY], wrapped[128];
	size_t wlen = 0;
	assert_int_equal(cf_crypto_random_key(key, sizeof key), CF_OK);
	assert_int_equal(cf_hsm_wrap(h, 1, S("tenant acme, KEK v1"),
	                             (struct cf_span){key, sizeof key}, wrapped, sizeof wrapped,
	                             &wlen),
	                 CF_OK);
	assert_int_equal(wlen, 12 + 64 + 16);
	struct cf_secbuf *back = NULL;
	cf_err ue = cf_hsm_unwrap(h, 1, S("tenant acme, KEK v1"), (struct cf_span){wrapped, wlen},
	                          &back);
	if (ue != CF_OK)
		fail_msg("unwrap: %s: %s", cf_err_name(ue), cf_err_detail());
	assert_memory_equal(back->ptr, key, sizeof key);
	cf_secbuf_free(&back);
	/* bound to its associated data, and tamper-evident */
	assert_int_equal(cf_hsm_unwrap(h, 1, S("tenant evil, KEK v1"),
	                               (struct cf_span){wrapped, wlen}, &back),
	                 CF_E_INTEGRITY);
	wrapped[20] ^= 1;
	assert_int_equal(cf_hsm_unwrap(h, 1, S("tenant acme, KEK v1"),
	                               (struct cf_span){wrapped, wlen}, &back),
	                 CF_E_INTEGRITY);
	wrapped[20] ^= 1;
	assert_int_equal(cf_hsm_unwrap(h, 2, S("tenant acme, KEK v1"),
	                               (struct cf_span){wrapped, wlen}, &back),
	                 CF_E_NOT_FOUND);
	assert_null(back);
	cf_hsm_close(&h);
	/* ER6: the token refuses to give the root key's value to anyone, us included */
	CK_FUNCTION_LIST *f = p11_kit_module_load(SOFTHSM, P11_KIT_MODULE_UNMANAGED);
	assert_non_null(f);
	assert_int_equal(p11_kit_module_initialize(f), CKR_OK);
	CK_SLOT_ID slots[8];
	CK_ULONG ns = 8;
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
	CK_SESSION_HANDLE s;
	assert_int_equal(f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"123456", 6), CKR_OK);
	CK_ATTRIBUTE find[] = {{CKA_LABEL, (void *)"coffre-root-key-v1", 18}};
	CK_OBJECT_HANDLE o = 0;
	CK_ULONG n = 0;
	assert_int_equal(f->C_FindObjectsInit(s, find, 1), CKR_OK);
	assert_int_equal(f->C_FindObjects(s, &o, 1, &n), CKR_OK);
	assert_int_equal(n, 1);
	(void)f->C_FindObjectsFinal(s);
	uint8_t value[64];
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
	CK_ATTRIBUTE get[] = {{CKA_SENSITIVE, &sensitive, sizeof sensitive},
	                      {CKA_EXTRACTABLE, &extractable, sizeof extractable}};
	assert_int_equal(f->C_GetAttributeValue(s, o, get, 2), CKR_OK);
	assert_true(sensitive);
	assert_false(extractable);
	CK_ATTRIBUTE val[] = {{CKA_VALUE, value, sizeof value}};
	assert_int_equal(f->C_GetAttributeValue(s, o, val, 1), CKR_ATTRIBUTE_SENSITIVE);
	(void)f->C_Logout(s);
	(void)f->C_CloseSession(s);
	(void)p11_kit_module_finalize(f);
	p11_kit_module_release(f);
	char cmd[160];
	(void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	FILE *p = popen(cmd, "r");
	if (p)
		pclose(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_round_trip_and_layout),
	        cmocka_unit_test(test_bound_to_context),
	        cmocka_unit_test(test_tampering_and_truncation),
	        cmocka_unit_test(test_bad_context),
	        cmocka_unit_test(test_rootkey_file),
	        cmocka_unit_test(test_rootkey_shares),
	        cmocka_unit_test(test_rootkey_hsm),
	};
	return cmocka_run_group_tests_name("keys", tests, setup, teardown);
}
