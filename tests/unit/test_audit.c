/* Unit tests for src/audit (AL1, AL5, AL6): RFC 6962 hashing against the reference tree,
 * every Merkle proof vector of tests/vectors/merkle with exactly its wantErr answer,
 * generated proofs for every index and size pair up to 40, the entry encoding, and the
 * log on a real SQLite file and a real PostgreSQL database: append, sequence, checkpoint,
 * verify, and each kind of tampering named by the verifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "helpers.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	(void)snprintf(dir, sizeof dir, "/tmp/cf_audit_XXXXXX");
	if (!mkdtemp(dir) || cf_secmem_init(256 * 1024) != CF_OK)
		return -1;
	cf_log_set_level(CF_LOG_ERROR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[96];
	(void)snprintf(cmd, sizeof cmd, getenv("KEEP") ? "true %s" : "rm -rf '%s'", dir);
	FILE *p = popen(cmd, "r");
	if (p)
		pclose(p);
	cf_secmem_shutdown();
	return 0;
}

/* --- hashing and proofs ----------------------------------------------------------------- */
/* An in-memory node store for the generated trees. */
#define MAXN 64
struct mem {
	uint8_t nodes[7][MAXN][CF_HASH_LEN];
	bool have[7][MAXN];
};

static cf_err mem_put(void *ctx, unsigned level, uint64_t index, const uint8_t h[CF_HASH_LEN])
{
	struct mem *m = ctx;
	assert_true(level < 7 && index < MAXN);
	assert_false(m->have[level][index]); /* each perfect subtree is completed once */
	memcpy(m->nodes[level][index], h, CF_HASH_LEN);
	m->have[level][index] = true;
	return CF_OK;
}

static cf_err mem_get(void *ctx, unsigned level, uint64_t index, uint8_t out[CF_HASH_LEN])
{
	struct mem *m = ctx;
	if (level >= 7 || index >= MAXN || !m->have[level][index])
		return CF_E_NOT_FOUND;
	memcpy(out, m->nodes[level][index], CF_HASH_LEN);
	return CF_OK;
}

/* MTH(D[begin:end]) straight from RFC 6962 §2.1, over the leaf hashes. */
static void mth(uint8_t (*leaves)[CF_HASH_LEN], size_t begin, size_t end, uint8_t out[CF_HASH_LEN])
{
	if (end - begin == 1) {
		memcpy(out, leaves[begin], CF_HASH_LEN);
		return;
	}
	size_t k = 1;
	while (k * 2 < end - begin)
		k *= 2;
	uint8_t l[CF_HASH_LEN], r[CF_HASH_LEN];
	mth(leaves, begin, begin + k, l);
	mth(leaves, begin + k, end, r);
	OK(cf_merkle_node(l, r, out));
}

/* The reference tree of RFC 6962's test suite (certificate-transparency): eight leaves
 * and the root at every size. */
static void test_reference_roots(void **state)
{
	(void)state;
	static const struct {
		const char *hex;
	} data[] = {{""},
	            {"00"},
	            {"10"},
	            {"2021"},
	            {"3031"},
	            {"40414243"},
	            {"5051525354555657"},
	            {"606162636465666768696a6b6c6d6e6f"}};
	static const char *roots[] = {
	        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};
	struct cf_merkle_frontier f;
	cf_merkle_frontier_init(&f);
	uint8_t root[CF_HASH_LEN];
	char hex[65];
	OK(cf_merkle_root(&f, root)); /* the empty tree: SHA-256("") */
	cf_hex_encode(root, CF_HASH_LEN, hex);
	assert_string_equal(hex,
	                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	for (size_t i = 0; i < 8; i++) {
		uint8_t d[16], leaf[CF_HASH_LEN];
		size_t n = strlen(data[i].hex) / 2;
		assert_true(cf_hex_decode(data[i].hex, n, d));
		OK(cf_merkle_leaf((struct cf_span){d, n}, leaf));
		OK(cf_merkle_append(&f, leaf, NULL, NULL));
		OK(cf_merkle_root(&f, root));
		cf_hex_encode(root, CF_HASH_LEN, hex);
		assert_string_equal(hex, roots[i]);
	}
}

static void test_generated_proofs(void **state)
{
	(void)state;
	static struct mem m;
	memset(&m, 0, sizeof m);
	uint8_t leaves[40][CF_HASH_LEN], roots[41][CF_HASH_LEN];
	struct cf_merkle_frontier f;
	cf_merkle_frontier_init(&f);
	for (size_t i = 0; i < 40; i++) {
		uint8_t d[8] = {(uint8_t)i, 7};
		OK(cf_merkle_leaf((struct cf_span){d, sizeof d}, leaves[i]));
		OK(cf_merkle_append(&f, leaves[i], mem_put, &m));
		OK(cf_merkle_root(&f, roots[i + 1]));
		uint8_t want[CF_HASH_LEN];
		mth(leaves, 0, i + 1, want);
		assert_memory_equal(roots[i + 1], want, CF_HASH_LEN);
		/* the frontier reloads from the stored subtrees */
		struct cf_merkle_frontier g;
		OK(cf_merkle_frontier_load(&g, i + 1, mem_get, &m));
		uint8_t again[CF_HASH_LEN];
		OK(cf_merkle_root(&g, again));
		assert_memory_equal(again, want, CF_HASH_LEN);
	}
	uint8_t proof[CF_MERKLE_PROOF_MAX][CF_HASH_LEN];
	size_t n = 0;
	for (uint64_t size = 1; size <= 40; size++) {
		for (uint64_t i = 0; i < size; i++) {
			OK(cf_merkle_inclusion_proof(mem_get, &m, i, size, proof, &n));
			OK(cf_merkle_verify_inclusion(i, size, leaves[i],
			                              (const uint8_t(*)[CF_HASH_LEN])proof, n,
			                              roots[size]));
			/* and a wrong leaf, index or root does not verify */
			assert_int_equal(
			        cf_merkle_verify_inclusion(i, size, leaves[(i + 1) % 40],
			                                   (const uint8_t(*)[CF_HASH_LEN])proof, n,
			                                   roots[size]),
			        CF_E_INTEGRITY);
			if (size > 1)
				assert_int_equal(cf_merkle_verify_inclusion(
				                         i, size, leaves[i],
				                         (const uint8_t(*)[CF_HASH_LEN])proof, n,
				                         roots[size - 1]),
				                 CF_E_INTEGRITY);
		}
		for (uint64_t s1 = 1; s1 <= size; s1++) {
			OK(cf_merkle_consistency_proof(mem_get, &m, s1, size, proof, &n));
			OK(cf_merkle_verify_consistency(s1, size, roots[s1], roots[size],
			                                (const uint8_t(*)[CF_HASH_LEN])proof, n));
			if (s1 < size && s1 > 1)
				assert_int_equal(cf_merkle_verify_consistency(
				                         s1, size, roots[s1 - 1], roots[size],
				                         (const uint8_t(*)[CF_HASH_LEN])proof, n),
				                 CF_E_INTEGRITY);
		}
	}
	assert_int_equal(cf_merkle_inclusion_proof(mem_get, &m, 5, 5, proof, &n),
	                 CF_E_OUT_OF_RANGE);
}

/* Every vector of tests/vectors/merkle gets exactly its wantErr answer. */
static unsigned vectors_in(const char *path, unsigned *wrong)
{
	DIR *d = opendir(path);
	if (!d)
		fail_msg("cannot open %s", path);
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[1024];
		(void)snprintf(p, sizeof p, "%s/%s", path, de->d_name);
		struct stat sb;
		if (stat(p, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			n += vectors_in(p, wrong);
			continue;
		}
		size_t len = strlen(p);
		if (len < 5 || strcmp(p + len - 5, ".json") != 0)
			continue;
		/* As `coffre audit verify-proof` reads it: a file jansson cannot take (a size
		 * past 2^63) is an error too. */
		struct cf_buf text;
		OK(cf_file_read(p, 1 << 16, &text));
		bool want_err = memmem(text.data, text.len, "\"wantErr\": true", 15) != NULL;
		json_t *doc = NULL;
		cf_err e = cf_json_parse_object(text.data, text.len, 1 << 16, &doc);
		cf_buf_free(&text);
		if (e == CF_OK)
			e = cf_merkle_verify_json(doc);
		if ((e != CF_OK) != want_err) {
			fprintf(stderr, "vector %s: wantErr %d, got %s (%s)\n", p, want_err,
			        cf_err_name(e), cf_err_detail());
			(*wrong)++;
		}
		json_decref(doc);
		n++;
	}
	closedir(d);
	return n;
}

static void test_vectors(void **state)
{
	(void)state;
	unsigned wrong = 0;
	unsigned n = vectors_in(CF_SOURCE_DIR "/tests/vectors/merkle", &wrong);
	assert_true(n >= 190);
	assert_int_equal(wrong, 0);
}

/* --- entries ---------------------------------------------------------------------------- */
static void test_entry_encoding(void **state)
{
	(void)state;
	struct cf_audit_entry e = {.format = CF_AUDIT_FORMAT,
	                           .time_us = 1795458524123456,
	                           .tenant = S("t0123456789abcdef"),
	                           .seq = 42,
	                           .actor_kind = CF_ACTOR_OPERATOR,
	                           .actor = S("uid=0"),
	                           .action = S("keys.rotate"),
	                           .resource = S("acme"),
	                           .outcome = CF_OUTCOME_OK,
	                           .privilege = S("operator"),
	                           .flags = CF_AUDIT_FLAG_CLOCK};
	memset(e.salt, 0x5a, sizeof e.salt);
	uint8_t b[CF_AUDIT_ENTRY_MAX];
	size_t n = 0;
	OK(cf_audit_encode(&e, b, sizeof b, &n));
	struct cf_audit_entry d;
	OK(cf_audit_decode((struct cf_span){b, n}, &d));
	assert_int_equal(d.time_us, e.time_us);
	assert_int_equal(d.seq, 42);
	assert_true(cf_span_eq(d.tenant, e.tenant) && cf_span_eq(d.action, e.action) &&
	            cf_span_eq(d.actor, e.actor) && cf_span_eq(d.privilege, e.privilege));
	uint8_t again[CF_AUDIT_ENTRY_MAX];
	size_t n2 = 0;
	OK(cf_audit_encode(&d, again, sizeof again, &n2)); /* one form only */
	assert_int_equal(n2, n);
	assert_memory_equal(again, b, n);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_equal(cf_audit_decode((struct cf_span){b, cut}, &d), CF_E_INTEGRITY);
	b[n] = 0;
	assert_int_equal(cf_audit_decode((struct cf_span){b, n + 1}, &d), CF_E_INTEGRITY);
	b[0] = 2;
	assert_int_equal(cf_audit_decode((struct cf_span){b, n}, &d), CF_E_INTEGRITY);
	struct cf_audit_entry bad = e;
	bad.action = S("new\nline");
	assert_int_equal(cf_audit_encode(&bad, b, sizeof b, &n), CF_E_INVALID);
	/* not yet sequenced: encodes with 0, which the sequencer fills in; never decodes */
	bad = e;
	bad.seq = 0;
	OK(cf_audit_encode(&bad, b, sizeof b, &n));
	assert_int_equal(cf_audit_decode((struct cf_span){b, n}, &d), CF_E_INTEGRITY);
	OK(cf_audit_set_seq(b, n, 7));
	OK(cf_audit_decode((struct cf_span){b, n}, &d));
	assert_int_equal(d.seq, 7);
	assert_int_equal(cf_audit_set_seq(b, n, 8), CF_E_INTEGRITY); /* once only */
	/* format 2: an entry with a detail (a reveal's reason), and only such an entry */
	struct cf_audit_entry two = e;
	two.detail = S("fields=email reason=ticket 4711");
	OK(cf_audit_encode(&two, b, sizeof b, &n));
	assert_int_equal(b[0], CF_AUDIT_FORMAT_2);
	OK(cf_audit_decode((struct cf_span){b, n}, &d));
	assert_true(cf_span_eq(d.detail, two.detail) && cf_span_eq(d.privilege, e.privilege));
	OK(cf_audit_encode(&d, again, sizeof again, &n2));
	assert_int_equal(n2, n);
	assert_memory_equal(again, b, n);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_equal(cf_audit_decode((struct cf_span){b, cut}, &d), CF_E_INTEGRITY);
	b[0] = 1; /* the same bytes read as format 1: trailing bytes */
	assert_int_equal(cf_audit_decode((struct cf_span){b, n}, &d), CF_E_INTEGRITY);
	b[0] = 3;
	assert_int_equal(cf_audit_decode((struct cf_span){b, n}, &d), CF_E_INTEGRITY);
	two.detail = S("no\ttab");
	assert_int_equal(cf_audit_encode(&two, b, sizeof b, &n), CF_E_INVALID);
}

/* --- the log ------------------------------------------------------------------------------ */
static struct cf_keyring *make_keyring(const char *ks_url, const char *sub)
{
	static const struct cf_argon2_params fast = {8 * 1024, 1, 1};
	char kdir[128];
	(void)snprintf(kdir, sizeof kdir, "%s/%s", dir, sub);
	mkdir(kdir, 0700);
	struct cf_keyring_opts o = {.store_url = ks_url,
	                            .data_dir = kdir,
	                            .environment = "production",
	                            .argon2 = &fast};
	struct cf_keyring *kr = NULL;
	OK(cf_keyring_open(&o, &kr));
	struct cf_rk_secret s = {.provider = CF_RK_FILE, .passphrase = S("audit test passphrase")};
	OK(cf_keys_init(kr, &s, NULL));
	OK(cf_keys_tenant_create(kr, "acme", 0));
	OK(cf_keys_tenant_create(kr, "globex", 0));
	return kr;
}

/* A read of resource by alice, for tenant (NULL: the deployment's own). */
static struct cf_audit_event read_event(const char *tenant, const char *resource)
{
	return (struct cf_audit_event){.tenant = tenant,
	                               .actor_kind = CF_ACTOR_USER,
	                               .actor = "alice@example.com",
	                               .action = "record.read",
	                               .resource = resource,
	                               .outcome = CF_OUTCOME_OK,
	                               .request_id = "0123456789abcdef0123456789abcdef",
	                               .privilege = "reader"};
}

static void append_some(struct cf_store *st, struct cf_keyring *kr, int count, const char *tag)
{
	for (int i = 0; i < count; i++) {
		char res[32];
		(void)snprintf(res, sizeof res, "%s-%d", tag, i);
		struct cf_audit_event ev = read_event(i % 3 == 0   ? NULL
		                                      : i % 3 == 1 ? "acme"
		                                                   : "globex",
		                                      res);
		OK(cf_audit_record(st, kr, &ev));
	}
}

static void sequence_all(struct cf_audit_seq *seq)
{
	unsigned added = 1;
	while (added)
		OK(cf_audit_seq_step(seq, 7, &added));
}

static cf_err exec_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_exec(tx, ctx, NULL, 0, NULL);
}

static void sql(struct cf_store *st, const char *q)
{
	OK(cf_store_write_wait(st, NULL, exec_fn, (void *)(uintptr_t)q));
}

static struct cf_audit_report verify(struct cf_store *st, const char *trusted)
{
	uint8_t pub[CF_ED25519_PUB];
	char origin[96];
	OK(cf_audit_identity(st, pub, origin, sizeof origin));
	struct cf_audit_report rep;
	OK(cf_audit_verify(st, pub, trusted, NULL, &rep));
	return rep;
}

struct note_ctx {
	char note[CF_CHECKPOINT_MAX];
	int64_t size;
};

static cf_err note_row(const struct cf_row *row, void *ctx)
{
	struct note_ctx *n = ctx;
	cf_span_to_str(cf_row_blob(row, 0), n->note, sizeof n->note);
	n->size = cf_row_int(row, 1);
	return CF_OK;
}

static cf_err note_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx,
	                   "SELECT note, size FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
	                   NULL, 0, note_row, ctx);
}

static void log_flow(const char *url, const char *owner_url, const char *ks_url, const char *sub)
{
	struct cf_keyring *kr = make_keyring(ks_url, sub);
	struct cf_store *st = NULL;
	OK(cf_store_open_coffre(url, owner_url, true, 0, &st));
	struct cf_audit_seq *seq = NULL;
	OK(cf_audit_seq_open(st, &seq));
	append_some(st, kr, 30, "a");
	sequence_all(seq);
	bool made = false;
	OK(cf_audit_checkpoint(seq, kr, &made));
	assert_true(made);
	OK(cf_audit_checkpoint(seq, kr, &made));
	assert_false(made); /* the tree did not grow */
	struct note_ctx first = {0};
	OK(cf_store_read(st, NULL, note_fn, &first));
	assert_int_equal(first.size, 30);
	/* the note opens with the deployment's key and says what was signed */
	uint8_t pub[CF_ED25519_PUB], root[CF_HASH_LEN];
	char origin[96];
	uint64_t size = 0;
	OK(cf_audit_identity(st, pub, origin, sizeof origin));
	OK(cf_checkpoint_open(first.note, pub, origin, sizeof origin, &size, root));
	assert_int_equal(size, 30);
	assert_non_null(strstr(first.note, "\n\n\xe2\x80\x94 coffre.audit/"));
	char forged[CF_CHECKPOINT_MAX];
	(void)snprintf(forged, sizeof forged, "%s", first.note);
	forged[strlen(origin) + 1] = '9'; /* another size, same signature */
	assert_int_equal(cf_checkpoint_open(forged, pub, origin, sizeof origin, &size, root),
	                 CF_E_INTEGRITY);

	append_some(st, kr, 20, "b");
	sequence_all(seq);
	OK(cf_audit_checkpoint(seq, kr, &made));
	struct cf_audit_report rep = verify(st, first.note);
	if (!rep.ok)
		fail_msg("verify: %s", rep.problem);
	assert_int_equal(rep.sequenced, 50);
	assert_int_equal(rep.checkpoints, 2);
	assert_int_equal(rep.tenants, 3);
	/* identifying values are HMACs, not the clear value */
	char mac[65];
	OK(cf_audit_mac(kr, "acme", "alice@example.com", mac));
	assert_int_equal(strlen(mac), 64);

	/* Sequenced entries refuse changes and deletion (triggers)... */
	assert_int_not_equal(
	        cf_store_write_wait(st, NULL, exec_fn,
	                            (void *)(uintptr_t) "UPDATE audit_entries SET action"
	                                                " = 'x' WHERE leaf_index = 1"),
	        CF_OK);
	assert_int_not_equal(cf_store_write_wait(st, NULL, exec_fn,
	                                         (void *)(uintptr_t) "DELETE FROM audit_entries"
	                                                             " WHERE leaf_index = 1"),
	                     CF_OK);
	/* ...which an attacker with the database drops; the tree catches what follows. */
	bool pg = cf_store_engine(st) == CF_STORE_POSTGRES;
	sql(st, pg ? "DROP TRIGGER audit_entries_sealed ON audit_entries"
	           : "DROP TRIGGER audit_entries_sealed");
	sql(st, pg ? "DROP TRIGGER audit_entries_kept ON audit_entries"
	           : "DROP TRIGGER audit_entries_kept");
	/* tampering, each undone after */
	sql(st, pg ? "UPDATE audit_entries SET body = body || '\\x00'::bytea WHERE leaf_index = 17"
	           : "UPDATE audit_entries SET body = CAST(body || x'00' AS BLOB) WHERE leaf_index "
	             "= 17");
	rep = verify(st, NULL);
	assert_false(rep.ok);
	assert_non_null(strstr(rep.problem, "entry 17"));
	sql(st,
	    pg ? "UPDATE audit_entries SET body = substring(body from 1 for length(body) - 1)"
	         " WHERE leaf_index = 17"
	       : "UPDATE audit_entries SET body = CAST(substr(body, 1, length(body) - 1) AS BLOB)"
	         " WHERE leaf_index = 17");
	rep = verify(st, NULL);
	if (!rep.ok)
		fail_msg("verify after undo: %s", rep.problem);
	/* an edited row column (the tenant) */
	sql(st, "UPDATE audit_entries SET seq = seq + 100 WHERE leaf_index = 4");
	rep = verify(st, NULL);
	assert_false(rep.ok);
	assert_non_null(strstr(rep.problem, "entry 4"));
	sql(st, "UPDATE audit_entries SET seq = seq - 100 WHERE leaf_index = 4");
	/* a forged checkpoint row */
	sql(st, "UPDATE audit_checkpoints SET note = replace(note, 'coffre.audit', 'coffre.audiT')"
	        " WHERE size = 30");
	rep = verify(st, NULL);
	assert_false(rep.ok);
	assert_non_null(strstr(rep.problem, "checkpoint at size 30"));
	sql(st, "UPDATE audit_checkpoints SET note = replace(note, 'coffre.audiT', 'coffre.audit')"
	        " WHERE size = 30");
	rep = verify(st, NULL);
	assert_true(rep.ok);
	/* a missing entry (the last one) */
	sql(st, "DELETE FROM audit_entries WHERE leaf_index = 49");
	rep = verify(st, NULL);
	assert_false(rep.ok);
	assert_non_null(strstr(rep.problem, "entries were removed"));

	/* A history rewritten and re-signed with the (stolen) key: consistent on its own,
	 * caught by a checkpoint kept from before. */
	sql(st, "DELETE FROM audit_entries");
	sql(st, "DELETE FROM audit_nodes");
	sql(st, "DELETE FROM audit_checkpoints");
	sql(st, "DELETE FROM audit_tree");
	sql(st, "DELETE FROM audit_seq");
	cf_audit_seq_close(&seq);
	OK(cf_audit_seq_open(st, &seq));
	append_some(st, kr, 40, "forged");
	sequence_all(seq);
	OK(cf_audit_checkpoint(seq, kr, &made));
	rep = verify(st, NULL);
	assert_true(rep.ok);
	rep = verify(st, first.note);
	assert_false(rep.ok);
	assert_non_null(strstr(rep.problem, "trusted checkpoint"));
	cf_audit_seq_close(&seq);
	cf_store_close(&st);
	cf_keyring_close(&kr);
}

static void test_log_sqlite(void **state)
{
	(void)state;
	char url[128], ks[128];
	(void)snprintf(url, sizeof url, "sqlite:%s/coffre.db", dir);
	(void)snprintf(ks, sizeof ks, "sqlite:%s/keystore.db", dir);
	log_flow(url, NULL, ks, "sq");
}

/* A SQLite log of its own in the test folder (NAME.db), with a keyring (NAME-ks.db). */
static struct cf_store *sqlite_log(const char *name, struct cf_keyring **kr)
{
	char url[128], ks[128];
	(void)snprintf(url, sizeof url, "sqlite:%s/%s.db", dir, name);
	(void)snprintf(ks, sizeof ks, "sqlite:%s/%s-ks.db", dir, name);
	*kr = make_keyring(ks, name);
	struct cf_store *st = NULL;
	OK(cf_store_open_coffre(url, NULL, true, 0, &st));
	return st;
}

/* Brings every entry into the tree, signs a checkpoint, checks the log verifies with
 * entries entries, and closes both. */
static void sequence_verify_close(struct cf_store *st, struct cf_keyring *kr, uint64_t entries)
{
	struct cf_audit_seq *seq = NULL;
	OK(cf_audit_seq_open(st, &seq));
	sequence_all(seq);
	bool made = false;
	OK(cf_audit_checkpoint(seq, kr, &made));
	assert_true(made);
	struct cf_audit_report rep = verify(st, NULL);
	if (!rep.ok)
		fail_msg("%s", rep.problem);
	assert_int_equal(rep.entries, entries);
	cf_audit_seq_close(&seq);
	cf_store_close(&st);
	cf_keyring_close(&kr);
}

/* SQLite numbers entries as they are appended; entries an earlier coffre left
 * unnumbered (sequence 0, no tree index) are numbered by the drain at start-up, before
 * anything new, and the log that results verifies. */
static cf_err legacy_fn(struct cf_tx *tx, void *ctx)
{
	const char *tenant = ctx;
	uint8_t salt[CF_AUDIT_SALT] = {7};
	struct cf_audit_entry e = {.format = CF_AUDIT_FORMAT,
	                           .time_us = cf_now_us(),
	                           .tenant = cf_span_str(tenant),
	                           .actor_kind = CF_ACTOR_USER,
	                           .actor = cf_span_str("old-actor"),
	                           .action = cf_span_str("record.read"),
	                           .resource = cf_span_str("old-resource"),
	                           .outcome = CF_OUTCOME_OK,
	                           .privilege = cf_span_str("reader")};
	memcpy(e.salt, salt, sizeof salt);
	uint8_t body[CF_AUDIT_ENTRY_MAX];
	size_t n = 0;
	CF_TRY(cf_audit_encode(&e, body, sizeof body, &n));
	struct cf_val v[] = {CF_V_TEXT(tenant), CF_V_INT(e.time_us), CF_V_BLOB(body, n)};
	return cf_tx_exec(tx,
	                  "INSERT INTO audit_entries (tenant_id, time_us, action, outcome, actor,"
	                  " resource, body) VALUES ($1, $2, 'record.read', 0, 'old-actor',"
	                  " 'old-resource', $3)",
	                  v, 3, NULL);
}

static cf_err numbers_row(const struct cf_row *row, void *ctx)
{
	int64_t *v = ctx;
	v[0] = cf_row_is_null(row, 0) ? -1 : cf_row_int(row, 0);
	v[1] = cf_row_is_null(row, 1) ? -1 : cf_row_int(row, 1);
	return CF_OK;
}

static cf_err last_numbers_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT leaf_index, seq FROM audit_entries ORDER BY id DESC LIMIT 1",
	                   NULL, 0, numbers_row, ctx);
}

static void test_sqlite_legacy_drain(void **state)
{
	(void)state;
	struct cf_keyring *kr = NULL;
	struct cf_store *st = sqlite_log("legacy", &kr);
	append_some(st, kr, 5, "new"); /* numbered as they are appended */
	int64_t last[2] = {0, 0};
	OK(cf_store_read(st, NULL, last_numbers_fn, last));
	assert_int_equal(last[0], 4);
	OK(cf_store_write_wait(st, NULL, legacy_fn, (void *)(uintptr_t) "acme"));
	OK(cf_store_write_wait(st, NULL, legacy_fn, (void *)(uintptr_t) "acme"));
	OK(cf_store_read(st, NULL, last_numbers_fn, last));
	assert_int_equal(last[0], -1); /* not numbered yet */
	OK(cf_audit_seq_drain(st));
	OK(cf_store_read(st, NULL, last_numbers_fn, last));
	assert_int_equal(last[0], 6);
	assert_int_equal(last[1], 4);    /* acme had 2 of the first five: then 3, 4 */
	append_some(st, kr, 3, "after"); /* the next numbers follow */
	OK(cf_store_read(st, NULL, last_numbers_fn, last));
	assert_int_equal(last[0], 9);
	sequence_verify_close(st, kr, 10);
}

/* Schema migration 18 rebuilds the SQLite log without its AUTOINCREMENT counter: the
 * entries, their ids and the append-only triggers stay, and the next ids follow. */
static cf_err count_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx,
	                   "SELECT (SELECT count(*) FROM sqlite_schema WHERE sql LIKE"
	                   " '%AUTOINCREMENT%') + (SELECT count(*) FROM sqlite_sequence),"
	                   " (SELECT max(id) FROM audit_entries)",
	                   NULL, 0, numbers_row, ctx);
}

static void test_sqlite_ids_migrated(void **state)
{
	(void)state;
	struct cf_keyring *kr = NULL;
	struct cf_store *st = sqlite_log("ids", &kr); /* for the keyring */
	cf_store_close(&st);
	char url[128];
	(void)snprintf(url, sizeof url, "sqlite:%s/ids17.db", dir);
	struct cf_store_opts o = {
	        .url = url, .migrations = cf_store_schema, .nmigrations = 17, .migrate = true};
	OK(cf_store_open(&o, &st));
	append_some(st, kr, 7, "before");
	int64_t v[2] = {0, 0};
	OK(cf_store_read(st, NULL, count_fn, v));
	assert_int_equal(v[0], 2); /* the table's AUTOINCREMENT and its counter's row */
	assert_int_equal(v[1], 7);
	cf_store_close(&st);
	OK(cf_store_open_coffre(url, NULL, true, 0, &st));
	assert_int_equal(cf_store_schema_version(st), 18);
	OK(cf_store_read(st, NULL, count_fn, v));
	assert_int_equal(v[0], 0);
	assert_int_equal(v[1], 7);
	append_some(st, kr, 3, "after");
	OK(cf_store_read(st, NULL, count_fn, v));
	assert_int_equal(v[1], 10);
	/* still append-only once sequenced */
	struct cf_audit_seq *seq = NULL;
	OK(cf_audit_seq_open(st, &seq));
	sequence_all(seq);
	cf_audit_seq_close(&seq);
	assert_int_not_equal(
	        cf_store_write_wait(st, NULL, exec_fn,
	                            (void *)(uintptr_t) "UPDATE audit_entries"
	                                                " SET actor = 'x' WHERE id = 3"),
	        CF_OK);
	assert_int_not_equal(cf_store_write_wait(st, NULL, exec_fn,
	                                         (void *)(uintptr_t) "DELETE FROM audit_entries"
	                                                             " WHERE id = 9"),
	                     CF_OK);
	sequence_verify_close(st, kr, 10);
}

/* The SQLite writer remembers the numbers it gave (no query an entry): a request rolled
 * back gives its numbers back, and entries another process appended between two of ours
 * are seen (PRAGMA data_version), not collided with. */
static cf_err append_then_fail_fn(struct cf_tx *tx, void *ctx)
{
	CF_TRY(cf_audit_append(tx, ctx));
	return cf_err_fail(CF_E_CONFLICT, "the request fails after its entry");
}

static void test_sqlite_numbers_remembered(void **state)
{
	(void)state;
	struct cf_keyring *kr = NULL;
	struct cf_store *st = sqlite_log("memo", &kr);
	append_some(st, kr, 6, "first"); /* indexes 0-5; acme's 2nd is its number 2 */
	int64_t last[2] = {0, 0};
	struct cf_audit_event ev = read_event("acme", "undone");
	struct cf_audit_prepared p;
	OK(cf_audit_prepare(kr, &ev, &p));
	assert_int_equal(cf_store_write_wait(st, "acme", append_then_fail_fn, &p), CF_E_CONFLICT);
	OK(cf_audit_record(st, kr, &ev)); /* takes the numbers the failed one gave back */
	OK(cf_store_read(st, NULL, last_numbers_fn, last));
	assert_int_equal(last[0], 6);
	assert_int_equal(last[1], 3);
	/* another connection to the file (as another process would be) appends two */
	char url[128];
	(void)snprintf(url, sizeof url, "sqlite:%s/memo.db", dir);
	struct cf_store *other = NULL;
	OK(cf_store_open_coffre(url, NULL, true, 0, &other));
	OK(cf_audit_record(other, kr, &ev));
	OK(cf_audit_record(other, kr, &ev));
	cf_store_close(&other);
	OK(cf_audit_record(st, kr, &ev)); /* would collide if the remembered numbers held */
	OK(cf_store_read(st, NULL, last_numbers_fn, last));
	assert_int_equal(last[0], 9);
	assert_int_equal(last[1], 6);
	sequence_verify_close(st, kr, 10);
}

/* Many appends queued at once, so that groups hold several, every seventh request
 * failing after its entry: what failed gives its numbers back inside the group, and
 * the log stays gapless, tree index and every tenant's numbers alike. */
#define BURST 210
struct burst;
struct burst_job {
	struct cf_audit_prepared p;
	struct burst *b;
	bool fail; /* after its entry */
};
struct burst {
	struct burst_job job[BURST];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, failed;
};

static cf_err burst_fn(struct cf_tx *tx, void *ctx)
{
	struct burst_job *j = ctx;
	CF_TRY(cf_audit_append(tx, &j->p));
	return j->fail ? cf_err_fail(CF_E_CONFLICT, "the request fails after its entry") : CF_OK;
}

static void burst_done(void *ctx, cf_err result)
{
	struct burst *b = ((struct burst_job *)ctx)->b;
	pthread_mutex_lock(&b->mu);
	b->done++;
	b->failed += result != CF_OK;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static cf_err gaps_row(const struct cf_row *row, void *ctx)
{
	int64_t *v = ctx;
	v[0] += cf_row_int(row, 0); /* entries whose number is not its rank */
	v[1] += cf_row_int(row, 1);
	return CF_OK;
}

static cf_err gaps_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx,
	                   "SELECT (SELECT count(*) FROM (SELECT leaf_index, row_number() OVER"
	                   " (ORDER BY leaf_index) - 1 AS r FROM audit_entries) WHERE"
	                   " leaf_index != r), (SELECT count(*) FROM (SELECT seq, row_number()"
	                   " OVER (PARTITION BY tenant_id ORDER BY seq) AS r FROM audit_entries)"
	                   " WHERE seq != r)",
	                   NULL, 0, gaps_row, ctx);
}

static void test_sqlite_numbers_in_groups(void **state)
{
	(void)state;
	struct cf_keyring *kr = NULL;
	struct cf_store *st = sqlite_log("burst", &kr);
	struct burst *b = calloc(1, sizeof *b);
	assert_non_null(b);
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	static const char *const tenants[] = {"acme", "globex", NULL};
	for (int i = 0; i < BURST; i++) {
		struct cf_audit_event ev = read_event(tenants[i % 3], "burst");
		b->job[i].b = b;
		b->job[i].fail = i % 7 == 3;
		OK(cf_audit_prepare(kr, &ev, &b->job[i].p));
	}
	for (int i = 0; i < BURST; i++)
		OK(cf_store_write(st, tenants[i % 3], burst_fn, burst_done, &b->job[i]));
	pthread_mutex_lock(&b->mu);
	while (b->done < BURST)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	assert_int_equal(b->failed, BURST / 7);
	int64_t gaps[2] = {0, 0};
	OK(cf_store_read(st, NULL, gaps_fn, gaps));
	assert_int_equal(gaps[0], 0);
	assert_int_equal(gaps[1], 0);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	free(b);
	sequence_verify_close(st, kr, BURST - BURST / 7);
}

/* Retention (AL1): pruning keeps checkpoints and subtrees; the rest still verifies,
 * still proves, and stays append-only. */
static cf_err time_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

static cf_err time_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT time_us FROM audit_entries WHERE leaf_index = 29", NULL, 0,
	                   time_row, ctx);
}

static void test_retention(void **state)
{
	(void)state;
	struct cf_keyring *kr = NULL;
	struct cf_store *st = sqlite_log("retention", &kr);
	struct cf_audit_seq *seq = NULL;
	OK(cf_audit_seq_open(st, &seq));
	bool made = false;
	append_some(st, kr, 30, "old"); /* sizes 30 (odd boundary leaf case below: 31) */
	sequence_all(seq);
	OK(cf_audit_checkpoint(seq, kr, &made));
	struct note_ctx first = {0};
	OK(cf_store_read(st, NULL, note_fn, &first));
	append_some(st, kr, 1, "odd");
	sequence_all(seq);
	OK(cf_audit_checkpoint(seq, kr, &made));
	usleep(2000);
	int64_t cut = 0;
	OK(cf_store_read(st, NULL, time_fn, &cut));
	append_some(st, kr, 20, "new");
	sequence_all(seq);
	OK(cf_audit_checkpoint(seq, kr, &made));
	/* nothing is older than the first entry: nothing to prune */
	uint64_t pruned = 9;
	OK(cf_audit_prune(st, 1, &pruned));
	assert_int_equal(pruned, 0);
	/* entry 30 (the odd one) is newer than the cut: the log keeps [30, 51) */
	OK(cf_audit_prune(st, cut + 1, &pruned));
	assert_int_equal(pruned, 30);
	struct cf_audit_report rep = verify(st, first.note);
	if (!rep.ok)
		fail_msg("verify after pruning: %s", rep.problem);
	assert_int_equal(rep.pruned, 30);
	assert_int_equal(rep.sequenced, 21);
	assert_int_equal(rep.checkpoints, 3);
	/* proofs for what stays still come out and verify */
	json_t *p = NULL;
	OK(cf_audit_inclusion(st, 35, 0, &p));
	json_decref(p);
	OK(cf_audit_consistency(st, 30, 0, &p));
	json_decref(p);
	/* pruning again at the odd size keeps its boundary leaf */
	OK(cf_audit_prune(st, INT64_MAX, &pruned));
	assert_int_equal(pruned, 51);
	rep = verify(st, NULL);
	if (!rep.ok)
		fail_msg("verify after pruning all: %s", rep.problem);
	append_some(st, kr, 5, "after");
	sequence_all(seq);
	OK(cf_audit_checkpoint(seq, kr, &made));
	rep = verify(st, NULL);
	if (!rep.ok)
		fail_msg("verify after growing again: %s", rep.problem);
	assert_int_equal(rep.sequenced, 5);
	/* the tree took them in: entry ids did not start again once the table was empty
	 * (the sequencer follows ids; schema migration 18 took their counter away) */
	OK(cf_audit_inclusion(st, 55, 0, &p));
	json_decref(p);
	assert_int_equal(rep.checkpoints, 4);
	/* only the pruning deletes: a kept entry still refuses */
	assert_int_not_equal(cf_store_write_wait(st, NULL, exec_fn,
	                                         (void *)(uintptr_t) "DELETE FROM audit_entries"
	                                                             " WHERE leaf_index = 52"),
	                     CF_OK);
	cf_audit_seq_close(&seq);
	cf_store_close(&st);
	cf_keyring_close(&kr);
}

static void test_log_postgres(void **state)
{
	(void)state;
	const char *host = getenv("COFFRE_TEST_PG_HOST");
	if (!host)
		fail_msg("COFFRE_TEST_PG_HOST is not set: run through `make test`");
	char super[256], q[160], db[32], url[256], owner[256], ks[128];
	(void)snprintf(db, sizeof db, "coffre_au%d", (int)getpid());
	(void)snprintf(super, sizeof super, "postgresql://postgres@/postgres?host=%s", host);
	(void)snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	pg_admin(super, q);
	(void)snprintf(q, sizeof q, "CREATE DATABASE %s OWNER coffre_owner", db);
	pg_admin(super, q);
	/* The runtime role cannot edit the log: tampering needs the owner, as an attacker
	 * with the database's keys would have. */
	(void)snprintf(url, sizeof url, "postgresql://coffre_owner@/%s?host=%s", db, host);
	(void)snprintf(owner, sizeof owner, "postgresql://coffre_owner@/%s?host=%s", db, host);
	(void)snprintf(ks, sizeof ks, "sqlite:%s/keystore-pg.db", dir);
	log_flow(url, owner, ks, "pg");
	(void)snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	pg_admin(super, q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_reference_roots),
	        cmocka_unit_test(test_generated_proofs),
	        cmocka_unit_test(test_vectors),
	        cmocka_unit_test(test_entry_encoding),
	        cmocka_unit_test(test_log_sqlite),
	        cmocka_unit_test(test_retention),
	        cmocka_unit_test(test_log_postgres),
	        cmocka_unit_test(test_sqlite_legacy_drain),
	        cmocka_unit_test(test_sqlite_numbers_remembered),
	        cmocka_unit_test(test_sqlite_numbers_in_groups),
	        cmocka_unit_test(test_sqlite_ids_migrated),
	};
	return cmocka_run_group_tests_name("audit", tests, setup, teardown);
}
