/* Unit tests for the keyring (src/keys/keyring.c): init, unseal and seal with each root
 * key provider (ER3, ER6), rekey across providers, the environment label (ER7), tenant
 * keys and handles (ER1, ER2, TI1), rotation with a resumable rewrap (ER4), and
 * crypto-shredding (PV4). The keystore is a real SQLite file, and a real PostgreSQL
 * database when the test PostgreSQL is up (make test starts it); the HSM is a real
 * SoftHSM2 token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "keys/keys.h"

#define PASS "correct horse battery staple"

static const struct cf_argon2_params fast = {8 * 1024, 1, 1}; /* tests only */
static char dir[64];
static char ks_url[512];

static void run_sh(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	if (p)
		(void)pclose(p);
}

static struct cf_keyring_opts opts(const char *env)
{
	return (struct cf_keyring_opts){.store_url = ks_url,
	                                .data_dir = dir,
	                                .environment = env,
	                                .pkcs11_module = SOFTHSM,
	                                .pkcs11_token = "coffre-kr",
	                                .argon2 = &fast,
	                                .rewrap_batch = 3};
}

static void fresh_sqlite(void)
{
	char cmd[160];
	(void)snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", dir);
	run_sh(cmd);
	(void)snprintf(ks_url, sizeof ks_url, "sqlite:%s/keystore.db", dir);
}

static int setup(void **state)
{
	(void)state;
	(void)snprintf(dir, sizeof dir, "/tmp/cf_kr_XXXXXX");
	if (!mkdtemp(dir) || cf_secmem_init(256 * 1024) != CF_OK)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[160];
	(void)snprintf(cmd, sizeof cmd, "rm -rf '%s' /tmp/cf_kr_hsm_*", dir);
	run_sh(cmd);
	cf_secmem_shutdown();
	return 0;
}

static struct cf_env_ctx ctx_of(const char *tenant, const char *record)
{
	return (struct cf_env_ctx){{(const uint8_t *)tenant, strlen(tenant)},
	                           S("customers"),
	                           {(const uint8_t *)record, strlen(record)},
	                           1,
	                           S("email")};
}

/* Seals "hello <record>" for tenant/record; returns its length. */
static size_t seal_for(struct cf_keyring *kr, const char *tenant, const char *record, uint8_t *env,
                       size_t cap)
{
	struct cf_env_ctx c = ctx_of(tenant, record);
	char pt[64];
	int n = snprintf(pt, sizeof pt, "hello %s", record);
	size_t len = 0;
	cf_err e = cf_keys_seal_value(kr, &c, (struct cf_span){(const uint8_t *)pt, (size_t)n}, env,
	                              cap, &len);
	if (e)
		fail_msg("seal: %s: %s", cf_err_name(e), cf_err_detail());
	return len;
}

static cf_err open_for(struct cf_keyring *kr, const char *tenant, const char *record,
                       const uint8_t *env, size_t len)
{
	struct cf_env_ctx c = ctx_of(tenant, record);
	uint8_t out[128];
	size_t n = 0;
	cf_err e = cf_keys_open_value(kr, &c, (struct cf_span){env, len}, out, sizeof out, &n);
	if (e == CF_OK) {
		char want[64];
		int w = snprintf(want, sizeof want, "hello %s", record);
		assert_int_equal(n, (size_t)w);
		assert_memory_equal(out, want, n);
	}
	return e;
}

static void file_init(struct cf_keyring **kr, const char *env)
{
	struct cf_keyring_opts o = opts(env);
	OK(cf_keyring_open(&o, kr));
	struct cf_rk_secret s = {.provider = CF_RK_FILE, .passphrase = S(PASS)};
	OK(cf_keys_init(*kr, &s, NULL));
}

/* init, seal, unseal (file), label, handles, MAC and signatures ------------------------ */
static void basic_flow(void)
{
	struct cf_keyring *kr = NULL;
	struct cf_keyring_opts o = opts("production");
	OK(cf_keyring_open(&o, &kr));
	struct cf_keys_status st;
	cf_keys_status(kr, &st);
	assert_false(st.initialized);
	assert_true(st.sealed);
	bool done = false;
	assert_int_equal(cf_keys_unseal(kr, S(PASS), &done), CF_E_NOT_INITIALIZED);
	assert_int_equal(cf_keys_tenant_create(kr, "acme", 0), CF_E_NOT_INITIALIZED);
	struct cf_rk_secret weak = {.provider = CF_RK_FILE, .passphrase = S("short")};
	assert_int_equal(cf_keys_init(kr, &weak, NULL), CF_E_INVALID);
	struct cf_rk_secret s = {.provider = CF_RK_FILE, .passphrase = S(PASS)};
	OK(cf_keys_init(kr, &s, NULL));
	assert_int_equal(cf_keys_init(kr, &s, NULL), CF_E_CONFLICT);
	cf_keys_status(kr, &st);
	assert_true(st.initialized);
	assert_false(st.sealed);
	assert_int_equal(st.provider, CF_RK_FILE);
	assert_int_equal(st.rk_version, 1);
	assert_string_equal(st.environment, "production");

	/* tenants and handles */
	assert_int_equal(cf_keys_tenant_create(kr, "Bad Id", 0), CF_E_INVALID);
	OK(cf_keys_tenant_create(kr, "acme", 0));
	OK(cf_keys_tenant_create(kr, "globex", 0));
	assert_int_equal(cf_keys_tenant_create(kr, "acme", 0), CF_E_CONFLICT);
	uint8_t env[256], copy[256];
	size_t len = seal_for(kr, "acme", "r1", env, sizeof env);
	OK(open_for(kr, "acme", "r1", env, len));
	/* TI1: the same bytes under another tenant or record do not open */
	assert_int_equal(open_for(kr, "globex", "r1", env, len), CF_E_INTEGRITY);
	assert_int_equal(open_for(kr, "acme", "r2", env, len), CF_E_INTEGRITY);
	assert_int_equal(open_for(kr, "nobody", "r1", env, len), CF_E_NOT_FOUND);
	memcpy(copy, env, len);
	copy[len - 1] ^= 1;
	assert_int_equal(open_for(kr, "acme", "r1", copy, len), CF_E_INTEGRITY);
	assert_int_equal(open_for(kr, "acme", "r1", env, 20), CF_E_INTEGRITY);

	uint8_t mac1[CF_HMAC_LEN], mac2[CF_HMAC_LEN], mac3[CF_HMAC_LEN];
	uint32_t pv = 0;
	OK(cf_keys_mac(kr, "acme", CF_PURPOSE_PSEUDONYM, S("alice@example.com"), mac1, &pv));
	assert_int_equal(pv, 1);
	OK(cf_keys_mac(kr, "globex", CF_PURPOSE_PSEUDONYM, S("alice@example.com"), mac2, &pv));
	assert_memory_not_equal(mac1, mac2, CF_HMAC_LEN); /* per tenant */
	OK(cf_keys_mac(kr, "acme", CF_PURPOSE_AUDIT, S("alice@example.com"), mac3, &pv));
	assert_memory_not_equal(mac1, mac3, CF_HMAC_LEN); /* per purpose */
	uint8_t sig[CF_ED25519_SIG], pub[CF_ED25519_PUB];
	OK(cf_keys_sign(kr, CF_DKEY_CHECKPOINT, S("tree head"), sig));
	OK(cf_keys_public(kr, CF_DKEY_CHECKPOINT, pub));
	OK(cf_ed25519_verify(pub, S("tree head"), sig));

	/* suspension stops every handle of that tenant only */
	OK(cf_keys_tenant_suspend(kr, "acme", true));
	assert_int_equal(open_for(kr, "acme", "r1", env, len), CF_E_TENANT_SUSPENDED);
	assert_int_equal(cf_keys_mac(kr, "acme", CF_PURPOSE_TOKEN, S("x"), mac1, &pv),
	                 CF_E_TENANT_SUSPENDED);
	OK(cf_keys_mac(kr, "globex", CF_PURPOSE_TOKEN, S("x"), mac1, &pv));
	OK(cf_keys_tenant_suspend(kr, "acme", false));
	OK(open_for(kr, "acme", "r1", env, len));

	/* seal wipes everything; a wrong passphrase is told apart */
	cf_keys_seal(kr);
	assert_true(cf_keys_is_sealed(kr));
	assert_int_equal(open_for(kr, "acme", "r1", env, len), CF_E_SEALED);
	assert_int_equal(cf_keys_sign(kr, CF_DKEY_TOKEN, S("x"), sig), CF_E_SEALED);
	assert_int_equal(cf_keys_unseal(kr, S("not the passphrase"), &done), CF_E_UNSEAL_FAILED);
	assert_false(done);
	assert_true(cf_keys_is_sealed(kr));
	OK(cf_keys_unseal(kr, S(PASS), &done));
	assert_true(done);
	assert_int_equal(cf_keys_unseal(kr, S(PASS), &done), CF_E_CONFLICT);
	OK(open_for(kr, "acme", "r1", env, len));
	uint8_t sig2[CF_ED25519_SIG];
	OK(cf_keys_sign(kr, CF_DKEY_CHECKPOINT, S("tree head"), sig2));
	OK(cf_ed25519_verify(pub, S("tree head"), sig2)); /* the same key after unseal */
	cf_keyring_close(&kr);

	/* ER7: a development coffred refuses a production keystore */
	struct cf_keyring_opts dev = opts("development");
	assert_int_equal(cf_keyring_open(&dev, &kr), CF_E_CONFIG);
	assert_null(kr);
	/* reopened: sealed, and the keys come back */
	OK(cf_keyring_open(&o, &kr));
	assert_true(cf_keys_is_sealed(kr));
	OK(cf_keys_unseal(kr, S(PASS), &done));
	OK(open_for(kr, "acme", "r1", env, len));
	cf_keyring_close(&kr);
}

static void test_basic_sqlite(void **state)
{
	(void)state;
	fresh_sqlite();
	basic_flow();
	/* the key file is owner-only */
	char path[128];
	struct stat sb;
	(void)snprintf(path, sizeof path, "%s/root-v1.key", dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
}

/* rotation with a rewrap source that keeps envelopes in a real SQLite table ------------- */
static const struct cf_migration items_schema[] = {
        {1, "items",
         "CREATE TABLE items (tenant TEXT, id TEXT, env BLOB, PRIMARY KEY (tenant, id))",
         "CREATE TABLE items (tenant TEXT, id TEXT, env BYTEA, PRIMARY KEY (tenant, id))"},
};

struct items {
	struct cf_store *st;
	struct cf_keyring *kr;
};

struct item_row {
	char tenant[CF_TENANT_ID_MAX + 1], id[32];
	uint8_t env[256];
	size_t len;
};

struct batch {
	struct item_row rows[8];
	size_t n, limit;
	uint32_t from;
	int64_t remaining;
};

static cf_err pick_row(const struct cf_row *row, void *ctx)
{
	struct batch *b = ctx;
	struct cf_span e = cf_row_blob(row, 2);
	struct cf_env_view v;
	if (cf_env_parse(e, &v) != CF_OK || v.kid.kek_version != b->from)
		return CF_OK;
	if (b->n == b->limit || b->n == 8) {
		b->remaining++;
		return CF_OK;
	}
	struct item_row *r = &b->rows[b->n++];
	struct cf_span t = cf_row_blob(row, 0), id = cf_row_blob(row, 1);
	(void)snprintf(r->tenant, sizeof r->tenant, "%.*s", (int)t.len, (const char *)t.ptr);
	(void)snprintf(r->id, sizeof r->id, "%.*s", (int)id.len, (const char *)id.ptr);
	memcpy(r->env, e.ptr, e.len);
	r->len = e.len;
	return CF_OK;
}

struct pick {
	struct batch *b;
	const char *tenant;
};

static cf_err pick_fn(struct cf_tx *tx, void *ctx)
{
	struct pick *p = ctx;
	struct cf_val v[] = {CF_V_TEXT(p->tenant)};
	return cf_tx_query(tx, "SELECT tenant, id, env FROM items WHERE tenant = $1 ORDER BY id", v,
	                   1, pick_row, p->b);
}

static cf_err put_fn(struct cf_tx *tx, void *ctx)
{
	struct batch *b = ctx;
	for (size_t i = 0; i < b->n; i++) {
		struct cf_val v[] = {CF_V_BLOB(b->rows[i].env, b->rows[i].len),
		                     CF_V_TEXT(b->rows[i].tenant), CF_V_TEXT(b->rows[i].id)};
		CF_TRY(cf_tx_exec(tx, "UPDATE items SET env = $1 WHERE tenant = $2 AND id = $3", v,
		                  3, NULL));
	}
	return CF_OK;
}

static cf_err items_step(void *ctx, struct cf_keyring *kr, const char *tenant, uint32_t from,
                         unsigned limit, uint64_t *moved, uint64_t *remaining)
{
	struct items *it = ctx;
	struct batch b = {.limit = limit, .from = from};
	struct pick p = {&b, tenant};
	CF_TRY(cf_store_read(it->st, NULL, pick_fn, &p));
	for (size_t i = 0; i < b.n; i++) {
		struct cf_env_ctx c = ctx_of(b.rows[i].tenant, b.rows[i].id);
		bool mv = false;
		CF_TRY(cf_keys_rewrap_value(kr, &c, b.rows[i].env, b.rows[i].len, &mv));
	}
	CF_TRY(cf_store_write_wait(it->st, NULL, put_fn, &b));
	*moved = b.n;
	*remaining = (uint64_t)b.remaining;
	return CF_OK;
}

struct ins {
	const char *tenant, *id;
	const uint8_t *env;
	size_t len;
};

static cf_err ins_fn(struct cf_tx *tx, void *ctx)
{
	struct ins *in = ctx;
	struct cf_val v[] = {CF_V_TEXT(in->tenant), CF_V_TEXT(in->id), CF_V_BLOB(in->env, in->len)};
	return cf_tx_exec(tx, "INSERT INTO items VALUES ($1, $2, $3)", v, 3, NULL);
}

static cf_err get_row(const struct cf_row *row, void *ctx)
{
	struct item_row *r = ctx;
	struct cf_span e = cf_row_blob(row, 0);
	memcpy(r->env, e.ptr, e.len);
	r->len = e.len;
	return CF_OK;
}

static cf_err get_fn(struct cf_tx *tx, void *ctx)
{
	struct item_row *r = ctx;
	struct cf_val v[] = {CF_V_TEXT(r->tenant), CF_V_TEXT(r->id)};
	return cf_tx_query(tx, "SELECT env FROM items WHERE tenant = $1 AND id = $2", v, 2, get_row,
	                   r);
}

static uint32_t kek_version_of(const uint8_t *env, size_t len)
{
	struct cf_env_view v;
	OK(cf_env_parse((struct cf_span){env, len}, &v));
	return v.kid.kek_version;
}

static void test_rotation(void **state)
{
	(void)state;
	fresh_sqlite();
	struct cf_keyring *kr = NULL;
	file_init(&kr, "production");
	OK(cf_keys_tenant_create(kr, "acme", 0));
	struct items it = {.kr = kr};
	char url[128];
	(void)snprintf(url, sizeof url, "sqlite:%s/items.db", dir);
	struct cf_store_opts so = {
	        .url = url, .migrations = items_schema, .nmigrations = 1, .migrate = true};
	OK(cf_store_open(&so, &it.st));
	struct cf_rewrap_source src = {"items", items_step, &it};
	OK(cf_keys_add_rewrap_source(kr, &src));
	uint8_t env[256], old_copy[256];
	size_t old_len = 0;
	for (int i = 0; i < 10; i++) {
		char id[16];
		(void)snprintf(id, sizeof id, "r%02d", i);
		size_t len = seal_for(kr, "acme", id, env, sizeof env);
		if (i == 0) {
			memcpy(old_copy, env, len);
			old_len = len;
		}
		struct ins in = {"acme", id, env, len};
		OK(cf_store_write_wait(it.st, NULL, ins_fn, &in));
	}
	uint8_t mac_before[CF_HMAC_LEN], mac_after[CF_HMAC_LEN];
	uint32_t pv = 0;
	OK(cf_keys_mac(kr, "acme", CF_PURPOSE_PSEUDONYM, S("bob"), mac_before, &pv));

	uint32_t nv = 0;
	OK(cf_keys_rotate(kr, "acme", &nv));
	assert_int_equal(nv, 2);
	/* ER4: new writes use the new version at once; old values still open */
	size_t len = seal_for(kr, "acme", "new", env, sizeof env);
	assert_int_equal(kek_version_of(env, len), 2);
	OK(open_for(kr, "acme", "r00", old_copy, old_len));
	/* purpose keys moved to the new KEK, and kept their bytes (pseudonyms stay stable) */
	OK(cf_keys_mac(kr, "acme", CF_PURPOSE_PSEUDONYM, S("bob"), mac_after, &pv));
	assert_memory_equal(mac_before, mac_after, CF_HMAC_LEN);

	/* one step (batch 3), then a restart: the job resumes from the keystore */
	bool busy = false;
	OK(cf_keys_rewrap_step(kr, &busy));
	assert_true(busy);
	json_t *js = NULL;
	OK(cf_keys_tenants_json(kr, "acme", &js));
	json_t *job = json_array_get(json_object_get(json_array_get(js, 0), "rewrap"), 0);
	assert_int_equal(json_integer_value(json_object_get(job, "moved")), 3);
	assert_int_equal(json_integer_value(json_object_get(job, "remaining")), 7);
	json_decref(js);
	cf_keyring_close(&kr);
	struct cf_keyring_opts o = opts("production");
	OK(cf_keyring_open(&o, &kr));
	bool done = false;
	OK(cf_keys_unseal(kr, S(PASS), &done));
	it.kr = kr;
	OK(cf_keys_add_rewrap_source(kr, &src));
	for (int i = 0; i < 10 && (i == 0 || busy); i++)
		OK(cf_keys_rewrap_step(kr, &busy));
	assert_false(busy);
	/* every stored value is under v2 and opens; v1 is destroyed and listed */
	for (int i = 0; i < 10; i++) {
		struct item_row r = {.tenant = "acme"};
		(void)snprintf(r.id, sizeof r.id, "r%02d", i);
		OK(cf_store_read(it.st, NULL, get_fn, &r));
		assert_int_equal(kek_version_of(r.env, r.len), 2);
		OK(open_for(kr, "acme", r.id, r.env, r.len));
	}
	bool gone = false;
	OK(cf_keys_is_destroyed(kr, "kek/acme/1", &gone));
	assert_true(gone);
	assert_int_equal(open_for(kr, "acme", "r00", old_copy, old_len), CF_E_KEY_DESTROYED);
	OK(cf_keys_tenants_json(kr, "acme", &js));
	json_t *keks = json_object_get(json_array_get(js, 0), "keks");
	assert_string_equal(json_string_value(json_object_get(json_array_get(keks, 0), "state")),
	                    "destroyed");
	assert_string_equal(json_string_value(json_object_get(json_array_get(keks, 1), "state")),
	                    "active");
	json_decref(js);

	/* scheduled: a 1-second period is due after 2 seconds */
	OK(cf_keys_tenant_create(kr, "quick", 1));
	unsigned rotated = 0;
	OK(cf_keys_rotate_due(kr, (int64_t)time(NULL), &rotated));
	assert_int_equal(rotated, 0);
	OK(cf_keys_rotate_due(kr, (int64_t)time(NULL) + 2, &rotated));
	assert_int_equal(rotated, 1); /* quick only: acme's period is 90 days */
	cf_store_close(&it.st);
	cf_keyring_close(&kr);
}

/* crypto-shredding --------------------------------------------------------------------- */
static bool file_contains(const char *path, const uint8_t *needle, size_t n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	static uint8_t buf[4 << 20];
	size_t got = fread(buf, 1, sizeof buf, f);
	fclose(f);
	for (size_t i = 0; i + n <= got; i++)
		if (memcmp(buf + i, needle, n) == 0)
			return true;
	return false;
}

static cf_err wrapped_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT wrapped FROM ks_kek WHERE tenant_id = 'acme'", NULL, 0,
	                   get_row, ctx);
}

static void test_shred(void **state)
{
	(void)state;
	fresh_sqlite();
	struct cf_keyring *kr = NULL;
	file_init(&kr, "production");
	OK(cf_keys_tenant_create(kr, "acme", 0));
	OK(cf_keys_tenant_create(kr, "globex", 0));
	uint8_t env[256], env2[256];
	size_t len = seal_for(kr, "acme", "r1", env, sizeof env);
	size_t len2 = seal_for(kr, "globex", "r1", env2, sizeof env2);
	/* the wrapped KEK as stored, to look for on disk afterwards */
	struct cf_store *raw = NULL;
	struct cf_store_opts so = {.url = ks_url,
	                           .migrations = cf_keystore_schema,
	                           .nmigrations = cf_keystore_schema_count,
	                           .migrate = false};
	OK(cf_store_open(&so, &raw));
	struct item_row w = {0};
	OK(cf_store_read(raw, NULL, wrapped_fn, &w));
	assert_true(w.len > 40);
	cf_store_close(&raw);
	char db[128], wal[140];
	(void)snprintf(db, sizeof db, "%s/keystore.db", dir);
	(void)snprintf(wal, sizeof wal, "%s/keystore.db-wal", dir);
	assert_true(file_contains(db, w.env, w.len) || file_contains(wal, w.env, w.len));

	unsigned n = 0;
	OK(cf_keys_tenant_shred(kr, "acme", &n));
	assert_int_equal(n, 1 + CF_PURPOSE_COUNT);
	assert_int_equal(open_for(kr, "acme", "r1", env, len), CF_E_NOT_FOUND);
	OK(open_for(kr, "globex", "r1", env2, len2)); /* others untouched */
	bool gone = false;
	OK(cf_keys_is_destroyed(kr, "kek/acme/1", &gone));
	assert_true(gone);
	OK(cf_keys_is_destroyed(kr, "purpose/acme/pseudonym/1", &gone));
	assert_true(gone);
	/* PV4: no byte of the wrapped KEK is left in the keystore's files */
	assert_false(file_contains(db, w.env, w.len));
	assert_false(file_contains(wal, w.env, w.len));
	/* an id is never reused, and shredding again is harmless */
	assert_int_equal(cf_keys_tenant_create(kr, "acme", 0), CF_E_CONFLICT);
	OK(cf_keys_tenant_shred(kr, "acme", &n));
	assert_int_equal(n, 0);
	/* after a restart it stays gone */
	cf_keyring_close(&kr);
	struct cf_keyring_opts o = opts("production");
	OK(cf_keyring_open(&o, &kr));
	bool done = false;
	OK(cf_keys_unseal(kr, S(PASS), &done));
	assert_int_equal(open_for(kr, "acme", "r1", env, len), CF_E_NOT_FOUND);
	OK(open_for(kr, "globex", "r1", env2, len2));
	cf_keyring_close(&kr);
}

/* a damaged keystore row is an integrity error at unseal, never a crash ----------------- */
static cf_err damage_fn(struct cf_tx *tx, void *ctx)
{
	(void)ctx;
	return cf_tx_exec(tx, "UPDATE ks_kek SET wrapped = zeroblob(80) WHERE tenant_id = 'acme'",
	                  NULL, 0, NULL);
}

static void test_damaged_keystore(void **state)
{
	(void)state;
	fresh_sqlite();
	struct cf_keyring *kr = NULL;
	file_init(&kr, "production");
	OK(cf_keys_tenant_create(kr, "acme", 0));
	cf_keyring_close(&kr);
	struct cf_store *raw = NULL;
	struct cf_store_opts so = {.url = ks_url,
	                           .migrations = cf_keystore_schema,
	                           .nmigrations = cf_keystore_schema_count,
	                           .migrate = false};
	OK(cf_store_open(&so, &raw));
	OK(cf_store_write_wait(raw, NULL, damage_fn, NULL));
	cf_store_close(&raw);
	struct cf_keyring_opts o = opts("production");
	OK(cf_keyring_open(&o, &kr));
	bool done = false;
	assert_int_equal(cf_keys_unseal(kr, S(PASS), &done), CF_E_INTEGRITY);
	assert_true(cf_keys_is_sealed(kr));
	cf_keyring_close(&kr);
}

/* a rekey that fails changes nothing; a damaged key file is an integrity error ------ */
static void test_rekey_failures(void **state)
{
	(void)state;
	fresh_sqlite();
	struct cf_keyring *kr = NULL;
	struct cf_keyring_opts o = opts("production");
	o.pkcs11_module = "/nonexistent/libpkcs11.so";
	OK(cf_keyring_open(&o, &kr));
	struct cf_rk_secret s = {.provider = CF_RK_FILE, .passphrase = S(PASS)};
	OK(cf_keys_init(kr, &s, NULL));
	OK(cf_keys_tenant_create(kr, "acme", 0));
	uint8_t env[256];
	size_t len = seal_for(kr, "acme", "r1", env, sizeof env);
	/* an absent HSM, a short passphrase, bad share counts: refused, nothing changed */
	struct cf_rk_secret hs = {.provider = CF_RK_PKCS11, .pin = S("123456")};
	assert_int_equal(cf_keys_rekey(kr, &hs, NULL), CF_E_CONFIG);
	struct cf_rk_secret weak = {.provider = CF_RK_FILE, .passphrase = S("short")};
	assert_int_equal(cf_keys_rekey(kr, &weak, NULL), CF_E_INVALID);
	struct cf_rk_secret bad = {.provider = CF_RK_SHARES, .k = 4, .n = 3};
	assert_int_equal(cf_keys_rekey(kr, &bad, NULL), CF_E_INVALID);
	struct cf_keys_status st;
	cf_keys_status(kr, &st);
	assert_int_equal(st.rk_version, 1);
	assert_int_equal(st.provider, CF_RK_FILE);
	char path[128];
	(void)snprintf(path, sizeof path, "%s/root-v2.key", dir);
	assert_int_not_equal(access(path, F_OK), 0);
	cf_keys_seal(kr);
	bool done = false;
	OK(cf_keys_unseal(kr, S(PASS), &done));
	OK(open_for(kr, "acme", "r1", env, len));
	cf_keys_seal(kr);
	/* a damaged key file: integrity, not a wrong passphrase */
	(void)snprintf(path, sizeof path, "%s/root-v1.key", dir);
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, 60, SEEK_SET), 0);
	int c = fgetc(f);
	assert_int_equal(fseek(f, 60, SEEK_SET), 0);
	fputc(c ^ 0x40, f);
	fclose(f);
	assert_int_equal(cf_keys_unseal(kr, S(PASS), &done), CF_E_INTEGRITY);
	assert_true(cf_keys_is_sealed(kr));
	/* and a missing one is named */
	unlink(path);
	assert_int_equal(cf_keys_unseal(kr, S(PASS), &done), CF_E_NOT_FOUND);
	cf_keyring_close(&kr);
}

/* shares, pkcs11, and rekey from one provider to the next ------------------------------ */
static void unseal_shares(struct cf_keyring *kr, char (*sh)[CF_SHARE_TEXT_MAX], unsigned a,
                          unsigned b)
{
	bool done = true;
	OK(cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)sh[a], strlen(sh[a])}, &done));
	assert_false(done);
	struct cf_keys_status st;
	cf_keys_status(kr, &st);
	assert_int_equal(st.shares_given, 1);
	assert_int_equal(st.shares_threshold, 2);
	OK(cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)sh[b], strlen(sh[b])}, &done));
	assert_true(done);
}

static void test_providers_and_rekey(void **state)
{
	(void)state;
	fresh_sqlite();
	char hdir[] = "/tmp/cf_kr_hsm_XXXXXX";
	if (!softhsm_token(hdir, "coffre-kr"))
		fail_msg("cannot initialise a SoftHSM2 token (scripts/deps.sh installs softhsm2)");
	struct cf_keyring *kr = NULL;
	struct cf_keyring_opts o = opts("development");
	OK(cf_keyring_open(&o, &kr));
	char sh[3][CF_SHARE_TEXT_MAX], other[3][CF_SHARE_TEXT_MAX];
	struct cf_rk_secret s = {.provider = CF_RK_SHARES, .k = 2, .n = 3};
	OK(cf_keys_init(kr, &s, sh));
	OK(cf_keys_tenant_create(kr, "acme", 0));
	uint8_t env[256];
	size_t len = seal_for(kr, "acme", "r1", env, sizeof env);

	/* shares: one at a time; a duplicate, a mistyped and a foreign share are refused */
	cf_keys_seal(kr);
	bool done = false;
	OK(cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)sh[0], strlen(sh[0])}, &done));
	assert_false(done);
	assert_int_equal(
	        cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)sh[0], strlen(sh[0])}, &done),
	        CF_E_INVALID);
	char typo[CF_SHARE_TEXT_MAX];
	memcpy(typo, sh[1], sizeof typo);
	typo[20] = typo[20] == 'a' ? 'b' : 'a';
	assert_int_equal(
	        cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)typo, strlen(typo)}, &done),
	        CF_E_INVALID);
	struct cf_secbuf *fk = NULL;
	OK(cf_secbuf_new(CF_RK_LEN, &fk));
	OK(cf_crypto_random_key(fk->ptr, CF_RK_LEN));
	OK(cf_rootkey_split(fk, 1, 2, 3, other));
	cf_secbuf_free(&fk);
	assert_int_equal(
	        cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)other[1], strlen(other[1])},
	                       &done),
	        CF_E_INVALID);
	assert_true(cf_keys_is_sealed(kr));
	cf_keys_unseal_reset(kr);
	/* two foreign shares that agree with each other combine to a key that fails the
	 * keystore's check value */
	OK(cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)other[0], strlen(other[0])},
	                  &done));
	assert_int_equal(
	        cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)other[2], strlen(other[2])},
	                       &done),
	        CF_E_UNSEAL_FAILED);
	assert_true(cf_keys_is_sealed(kr));
	unseal_shares(kr, sh, 2, 1);
	OK(open_for(kr, "acme", "r1", env, len));

	/* rekey to pkcs11: the root key now lives in the token */
	struct cf_rk_secret hs = {.provider = CF_RK_PKCS11, .pin = S("123456")};
	OK(cf_keys_rekey(kr, &hs, NULL));
	struct cf_keys_status st;
	cf_keys_status(kr, &st);
	assert_int_equal(st.provider, CF_RK_PKCS11);
	assert_int_equal(st.rk_version, 2);
	OK(open_for(kr, "acme", "r1", env, len));
	cf_keys_seal(kr);
	assert_int_equal(cf_keys_unseal(kr, S("654321"), &done), CF_E_UNSEAL_FAILED);
	/* the old shares no longer open anything */
	assert_int_equal(
	        cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)sh[0], strlen(sh[0])}, &done),
	        CF_E_UNSEAL_FAILED);
	OK(cf_keys_unseal(kr, S("123456"), &done));
	assert_true(done);
	OK(open_for(kr, "acme", "r1", env, len));
	bool gone = false;
	OK(cf_keys_is_destroyed(kr, "rk/1", &gone));
	assert_true(gone);

	/* IA9: the token key rotates; the one before keeps its public key only. A rekey
	 * then rewraps the current version, and both come back after an unseal. The
	 * checkpoint key does not rotate. */
	struct cf_deploy_pubs k0, k1, k2;
	OK(cf_keys_public_keys(kr, CF_DKEY_TOKEN, &k0));
	assert_false(k0.has_previous);
	uint32_t tv = 0;
	OK(cf_keys_deploy_rotate(kr, CF_DKEY_TOKEN, &tv));
	assert_int_equal(tv, k0.version + 1);
	assert_int_equal(cf_keys_deploy_rotate(kr, CF_DKEY_CHECKPOINT, &tv), CF_E_INVALID);
	OK(cf_keys_public_keys(kr, CF_DKEY_TOKEN, &k1));
	assert_true(k1.has_previous);
	assert_memory_equal(k1.previous, k0.current, CF_ED25519_PUB);
	assert_memory_not_equal(k1.current, k0.current, CF_ED25519_PUB);
	uint8_t sig[CF_ED25519_SIG];
	OK(cf_keys_sign(kr, CF_DKEY_TOKEN, S("m"), sig));
	OK(cf_ed25519_verify(k1.current, S("m"), sig));

	/* rekey to file, then to shares again */
	struct cf_rk_secret fs = {.provider = CF_RK_FILE, .passphrase = S(PASS)};
	OK(cf_keys_rekey(kr, &fs, NULL));
	cf_keys_seal(kr);
	OK(cf_keys_unseal(kr, S(PASS), &done));
	OK(open_for(kr, "acme", "r1", env, len));
	OK(cf_keys_public_keys(kr, CF_DKEY_TOKEN, &k2));
	assert_int_equal(k2.version, k1.version);
	assert_true(k2.has_previous);
	assert_memory_equal(k2.current, k1.current, CF_ED25519_PUB);
	assert_memory_equal(k2.previous, k0.current, CF_ED25519_PUB);
	OK(cf_keys_sign(kr, CF_DKEY_TOKEN, S("m"), sig));
	OK(cf_ed25519_verify(k2.current, S("m"), sig));
	char sh2[3][CF_SHARE_TEXT_MAX];
	OK(cf_keys_rekey(kr, &s, sh2));
	char path[128];
	(void)snprintf(path, sizeof path, "%s/root-v3.key", dir);
	assert_int_not_equal(access(path, F_OK), 0); /* the retired key file is gone */
	cf_keys_seal(kr);
	unseal_shares(kr, sh2, 0, 2);
	OK(open_for(kr, "acme", "r1", env, len));
	cf_keys_status(kr, &st);
	assert_int_equal(st.rk_version, 4);
	cf_keyring_close(&kr);
	char cmd[96];
	(void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", hdir);
	run_sh(cmd);
}

/* the same flow on a PostgreSQL keystore ----------------------------------------------- */
static void test_postgres_keystore(void **state)
{
	(void)state;
	const char *host = getenv("COFFRE_TEST_PG_HOST");
	if (!host)
		fail_msg("COFFRE_TEST_PG_HOST is not set: run through `make test`");
	char super[256], sql[128], db[32];
	(void)snprintf(db, sizeof db, "coffre_ks%d", (int)getpid());
	(void)snprintf(super, sizeof super, "postgresql://postgres@/postgres?host=%s", host);
	(void)snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	pg_admin(super, sql);
	(void)snprintf(sql, sizeof sql, "CREATE DATABASE %s OWNER coffre_owner", db);
	pg_admin(super, sql);
	fresh_sqlite();
	(void)snprintf(ks_url, sizeof ks_url, "postgresql://coffre_app@/%s?host=%s", db, host);
	char owner[256];
	(void)snprintf(owner, sizeof owner, "postgresql://coffre_owner@/%s?host=%s", db, host);
	struct cf_keyring *kr = NULL;
	struct cf_keyring_opts o = opts("production");
	o.migrate_url = owner;
	OK(cf_keyring_open(&o, &kr));
	struct cf_rk_secret s = {.provider = CF_RK_FILE, .passphrase = S(PASS)};
	OK(cf_keys_init(kr, &s, NULL));
	OK(cf_keys_tenant_create(kr, "acme", 0));
	OK(cf_keys_tenant_create(kr, "globex", 0));
	uint8_t env[256];
	size_t len = seal_for(kr, "acme", "r1", env, sizeof env);
	uint32_t nv = 0;
	OK(cf_keys_rotate(kr, "acme", &nv));
	bool busy = true;
	OK(cf_keys_rewrap_step(kr, &busy)); /* no sources: v1 goes at once */
	assert_int_equal(open_for(kr, "acme", "r1", env, len), CF_E_KEY_DESTROYED);
	unsigned n = 0;
	OK(cf_keys_tenant_shred(kr, "globex", &n));
	assert_int_equal(n, 1 + CF_PURPOSE_COUNT);
	cf_keys_seal(kr);
	bool done = false;
	OK(cf_keys_unseal(kr, S(PASS), &done));
	struct cf_keys_status st;
	cf_keys_status(kr, &st);
	assert_int_equal(st.tenants, 1);
	cf_keyring_close(&kr);
	(void)snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	pg_admin(super, sql);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_basic_sqlite),
	        cmocka_unit_test(test_rotation),
	        cmocka_unit_test(test_shred),
	        cmocka_unit_test(test_damaged_keystore),
	        cmocka_unit_test(test_rekey_failures),
	        cmocka_unit_test(test_providers_and_rekey),
	        cmocka_unit_test(test_postgres_keystore),
	};
	return cmocka_run_group_tests_name("keyring", tests, setup, teardown);
}
