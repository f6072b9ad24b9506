/* coffre — the audit log's Merkle tree (AL1), RFC 6962 / RFC 9162 §2.1 hashing:
 * leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right), the empty tree's
 * root SHA-256(""). Appending keeps only the right frontier (one hash per set bit of the
 * size) and reports each perfect subtree it completes, which the log stores; any
 * subtree, proof or root is then O(log n) stored hashes away. Proofs are verified with
 * RFC 9162's algorithms as written (§2.1.3.2, §2.1.4.2). */
#include <string.h>

#include "audit/audit.h"

cf_err cf_merkle_leaf(struct cf_span data, uint8_t out[CF_HASH_LEN])
{
	static const uint8_t zero = 0;
	const struct cf_span parts[] = {{&zero, 1}, data};
	return cf_sha256v(parts, 2, out);
}

cf_err cf_merkle_node(const uint8_t l[CF_HASH_LEN], const uint8_t r[CF_HASH_LEN],
                      uint8_t out[CF_HASH_LEN])
{
	static const uint8_t one = 1;
	const struct cf_span parts[] = {{&one, 1}, {l, CF_HASH_LEN}, {r, CF_HASH_LEN}};
	return cf_sha256v(parts, 3, out);
}

void cf_merkle_frontier_init(struct cf_merkle_frontier *f)
{
	memset(f, 0, sizeof *f);
}

cf_err cf_merkle_append(struct cf_merkle_frontier *f, const uint8_t leaf[CF_HASH_LEN],
                        cf_merkle_emit_fn emit, void *ctx)
{
	CF_ENSURE(f->size < ((uint64_t)1 << 62), cf_err_fail(CF_E_OUT_OF_RANGE, "tree full"));
	uint64_t n = f->size;
	unsigned level = 0;
	uint8_t h[CF_HASH_LEN];
	memcpy(h, leaf, CF_HASH_LEN);
	if (emit)
		CF_TRY(emit(ctx, 0, n, h));
	while ((n >> level) & 1) {
		CF_TRY(cf_merkle_node(f->nodes[level], h, h));
		level++;
		if (emit)
			CF_TRY(emit(ctx, level, n >> level, h));
	}
	memcpy(f->nodes[level], h, CF_HASH_LEN);
	f->size = n + 1;
	return CF_OK;
}

cf_err cf_merkle_root(const struct cf_merkle_frontier *f, uint8_t out[CF_HASH_LEN])
{
	if (f->size == 0)
		return cf_sha256v(NULL, 0, out);
	bool have = false;
	uint8_t r[CF_HASH_LEN];
	for (unsigned level = 0; level < CF_MERKLE_LEVELS; level++) {
		if (!((f->size >> level) & 1))
			continue;
		if (!have) {
			memcpy(r, f->nodes[level], CF_HASH_LEN);
			have = true;
		} else {
			CF_TRY(cf_merkle_node(f->nodes[level], r, r));
		}
	}
	memcpy(out, r, CF_HASH_LEN);
	return CF_OK;
}

cf_err cf_merkle_frontier_load(struct cf_merkle_frontier *f, uint64_t size, cf_merkle_get_fn get,
                               void *ctx)
{
	cf_merkle_frontier_init(f);
	for (unsigned level = 0; level < CF_MERKLE_LEVELS; level++)
		if ((size >> level) & 1)
			CF_TRY(get(ctx, level, (size >> level) - 1, f->nodes[level]));
	f->size = size;
	return CF_OK;
}

/* The largest power of two strictly below n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
	uint64_t k = 1;
	while (k << 1 < n)
		k <<= 1;
	return k;
}

static bool is_pow2(uint64_t n)
{
	return n && !(n & (n - 1));
}

static unsigned log2_of(uint64_t n)
{
	unsigned l = 0;
	while (((uint64_t)1 << l) < n)
		l++;
	return l;
}

cf_err cf_merkle_subtree(cf_merkle_get_fn get, void *ctx, uint64_t begin, uint64_t end,
                         uint8_t out[CF_HASH_LEN])
{
	CF_ENSURE(begin < end, cf_err_fail(CF_E_INVALID, "empty subtree"));
	uint64_t n = end - begin;
	if (is_pow2(n) && begin % n == 0)
		return get(ctx, log2_of(n), begin / n, out);
	uint64_t k = split_point(n);
	uint8_t l[CF_HASH_LEN], r[CF_HASH_LEN];
	CF_TRY(cf_merkle_subtree(get, ctx, begin, begin + k, l));
	CF_TRY(cf_merkle_subtree(get, ctx, begin + k, end, r));
	return cf_merkle_node(l, r, out);
}

/* PATH(m, D[begin:end]) of RFC 9162 §2.1.3.1, appended to proof. */
static cf_err path(cf_merkle_get_fn get, void *ctx, uint64_t m, uint64_t begin, uint64_t end,
                   uint8_t (*proof)[CF_HASH_LEN], size_t *n)
{
	if (end - begin <= 1)
		return CF_OK;
	uint64_t k = split_point(end - begin);
	if (m < k) {
		CF_TRY(path(get, ctx, m, begin, begin + k, proof, n));
		CF_ENSURE(*n < CF_MERKLE_PROOF_MAX, CF_E_INTERNAL);
		return cf_merkle_subtree(get, ctx, begin + k, end, proof[(*n)++]);
	}
	CF_TRY(path(get, ctx, m - k, begin + k, end, proof, n));
	CF_ENSURE(*n < CF_MERKLE_PROOF_MAX, CF_E_INTERNAL);
	return cf_merkle_subtree(get, ctx, begin, begin + k, proof[(*n)++]);
}

cf_err cf_merkle_inclusion_proof(cf_merkle_get_fn get, void *ctx, uint64_t index, uint64_t size,
                                 uint8_t (*proof)[CF_HASH_LEN], size_t *n)
{
	CF_ENSURE(index < size,
	          cf_err_fail(CF_E_OUT_OF_RANGE, "entry %llu is not in a tree of %llu",
	                      (unsigned long long)index, (unsigned long long)size));
	*n = 0;
	return path(get, ctx, index, 0, size, proof, n);
}

/* SUBPROOF(m, D[begin:end], b) of RFC 9162 §2.1.4.1. */
static cf_err subproof(cf_merkle_get_fn get, void *ctx, uint64_t m, uint64_t begin, uint64_t end,
                       bool b, uint8_t (*proof)[CF_HASH_LEN], size_t *n)
{
	uint64_t size = end - begin;
	if (m == size) {
		if (b)
			return CF_OK;
		CF_ENSURE(*n < CF_MERKLE_PROOF_MAX, CF_E_INTERNAL);
		return cf_merkle_subtree(get, ctx, begin, end, proof[(*n)++]);
	}
	uint64_t k = split_point(size);
	if (m <= k) {
		CF_TRY(subproof(get, ctx, m, begin, begin + k, b, proof, n));
		CF_ENSURE(*n < CF_MERKLE_PROOF_MAX, CF_E_INTERNAL);
		return cf_merkle_subtree(get, ctx, begin + k, end, proof[(*n)++]);
	}
	CF_TRY(subproof(get, ctx, m - k, begin + k, end, false, proof, n));
	CF_ENSURE(*n < CF_MERKLE_PROOF_MAX, CF_E_INTERNAL);
	return cf_merkle_subtree(get, ctx, begin, begin + k, proof[(*n)++]);
}

cf_err cf_merkle_consistency_proof(cf_merkle_get_fn get, void *ctx, uint64_t size1, uint64_t size2,
                                   uint8_t (*proof)[CF_HASH_LEN], size_t *n)
{
	CF_ENSURE(size1 <= size2, cf_err_fail(CF_E_OUT_OF_RANGE, "size1 exceeds size2"));
	*n = 0;
	if (size1 == 0 || size1 == size2)
		return CF_OK;
	return subproof(get, ctx, size1, 0, size2, true, proof, n);
}

/* --- verification ------------------------------------------------------------------- */
static cf_err mismatch(const char *what)
{
	return cf_err_fail(CF_E_INTEGRITY, "%s", what);
}

cf_err cf_merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[CF_HASH_LEN],
                                  const uint8_t (*proof)[CF_HASH_LEN], size_t n,
                                  const uint8_t root[CF_HASH_LEN])
{
	/* RFC 9162 §2.1.3.2, step by step. */
	if (index >= size)
		return mismatch("inclusion: the index is not below the tree size");
	uint64_t fn = index, sn = size - 1;
	uint8_t r[CF_HASH_LEN];
	memcpy(r, leaf, CF_HASH_LEN);
	for (size_t i = 0; i < n; i++) {
		if (sn == 0)
			return mismatch("inclusion: the proof is too long");
		if ((fn & 1) || fn == sn) {
			CF_TRY(cf_merkle_node(proof[i], r, r));
			if (!(fn & 1))
				while (!(fn & 1) && fn != 0) {
					fn >>= 1;
					sn >>= 1;
				}
		} else {
			CF_TRY(cf_merkle_node(r, proof[i], r));
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return mismatch("inclusion: the proof is too short");
	if (!cf_span_eq((struct cf_span){r, CF_HASH_LEN}, (struct cf_span){root, CF_HASH_LEN}))
		return mismatch("inclusion: the proof does not lead to the root");
	return CF_OK;
}

cf_err cf_merkle_verify_consistency(uint64_t size1, uint64_t size2,
                                    const uint8_t root1[CF_HASH_LEN],
                                    const uint8_t root2[CF_HASH_LEN],
                                    const uint8_t (*proof)[CF_HASH_LEN], size_t n)
{
	const struct cf_span r1 = {root1, CF_HASH_LEN}, r2 = {root2, CF_HASH_LEN};
	if (size1 > size2)
		return mismatch("consistency: size1 exceeds size2");
	/* The empty tree is a prefix of every tree: a proof from it proves nothing, and is
	 * refused rather than accepted for any roots (as the reference verifier does). */
	if (size1 == 0)
		return mismatch("consistency: a proof from the empty tree proves nothing");
	if (size1 == size2) {
		if (n != 0)
			return mismatch("consistency: equal sizes take an empty proof");
		return cf_span_eq(r1, r2) ? CF_OK
		                          : mismatch("consistency: equal sizes, other roots");
	}
	/* RFC 9162 §2.1.4.2, step by step. */
	if (n == 0)
		return mismatch("consistency: empty proof");
	const uint8_t *first = is_pow2(size1) ? root1 : proof[0];
	size_t i = is_pow2(size1) ? 0 : 1;
	uint64_t fn = size1 - 1, sn = size2 - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	uint8_t fr[CF_HASH_LEN], sr[CF_HASH_LEN];
	memcpy(fr, first, CF_HASH_LEN);
	memcpy(sr, first, CF_HASH_LEN);
	for (; i < n; i++) {
		if (sn == 0)
			return mismatch("consistency: the proof is too long");
		if ((fn & 1) || fn == sn) {
			CF_TRY(cf_merkle_node(proof[i], fr, fr));
			CF_TRY(cf_merkle_node(proof[i], sr, sr));
			if (!(fn & 1))
				while (!(fn & 1) && fn != 0) {
					fn >>= 1;
					sn >>= 1;
				}
		} else {
			CF_TRY(cf_merkle_node(sr, proof[i], sr));
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return mismatch("consistency: the proof is too short");
	if (!cf_span_eq((struct cf_span){fr, CF_HASH_LEN}, r1))
		return mismatch("consistency: the proof does not lead to the first root");
	if (!cf_span_eq((struct cf_span){sr, CF_HASH_LEN}, r2))
		return mismatch("consistency: the proof does not lead to the second root");
	return CF_OK;
}

/* --- proof files (the JSON of tests/vectors/merkle) -------------------------------------- */
static cf_err hash_field(const json_t *doc, const char *key, uint8_t out[CF_HASH_LEN])
{
	const char *t = json_string_value(json_object_get(doc, key));
	CF_ENSURE(t, cf_err_fail(CF_E_INVALID, "proof file: no %s", key));
	size_t n = 0;
	/* A hash that is not 32 bytes of canonical base64 cannot verify anything. */
	if (cf_base64_decode(t, strlen(t), out, CF_HASH_LEN, &n) != CF_OK || n != CF_HASH_LEN)
		return cf_err_fail(CF_E_INTEGRITY, "proof file: %s is not a SHA-256 hash", key);
	return CF_OK;
}

static cf_err u64_field(const json_t *doc, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(doc, key);
	CF_ENSURE(json_is_integer(v) && json_integer_value(v) >= 0,
	          cf_err_fail(CF_E_INVALID, "proof file: %s must be a number >= 0", key));
	*out = (uint64_t)json_integer_value(v);
	return CF_OK;
}

cf_err cf_merkle_verify_json(const json_t *doc)
{
	json_t *arr = json_object_get(doc, "proof");
	CF_ENSURE(json_is_array(arr) || json_is_null(arr) || !arr,
	          cf_err_fail(CF_E_INVALID, "proof file: proof must be an array"));
	size_t n = arr ? json_array_size(arr) : 0;
	CF_ENSURE(n <= CF_MERKLE_PROOF_MAX,
	          cf_err_fail(CF_E_INTEGRITY, "proof file: the proof is too long"));
	uint8_t proof[CF_MERKLE_PROOF_MAX][CF_HASH_LEN];
	for (size_t i = 0; i < n; i++) {
		const char *t = json_string_value(json_array_get(arr, i));
		size_t got = 0;
		CF_ENSURE(t,
		          cf_err_fail(CF_E_INVALID, "proof file: proof[%zu] is not a string", i));
		if (cf_base64_decode(t, strlen(t), proof[i], CF_HASH_LEN, &got) != CF_OK ||
		    got != CF_HASH_LEN)
			return cf_err_fail(CF_E_INTEGRITY, "proof file: proof[%zu] is not a hash",
			                   i);
	}
	if (json_object_get(doc, "leafIdx")) {
		uint64_t idx = 0, size = 0;
		uint8_t root[CF_HASH_LEN], leaf[CF_HASH_LEN];
		CF_TRY(u64_field(doc, "leafIdx", &idx));
		CF_TRY(u64_field(doc, "treeSize", &size));
		CF_TRY(hash_field(doc, "root", root));
		CF_TRY(hash_field(doc, "leafHash", leaf));
		return cf_merkle_verify_inclusion(idx, size, leaf,
		                                  (const uint8_t(*)[CF_HASH_LEN])proof, n, root);
	}
	if (json_object_get(doc, "size1")) {
		uint64_t s1 = 0, s2 = 0;
		uint8_t r1[CF_HASH_LEN], r2[CF_HASH_LEN];
		CF_TRY(u64_field(doc, "size1", &s1));
		CF_TRY(u64_field(doc, "size2", &s2));
		/* Equal sizes and an empty proof compare the roots as given, whatever their
		 * length (RFC 9162: the proof is empty and the roots are equal). */
		const char *t1 = json_string_value(json_object_get(doc, "root1"));
		const char *t2 = json_string_value(json_object_get(doc, "root2"));
		if (s1 == s2 && s1 > 0 && n == 0 && t1 && t2) {
			uint8_t a[64], b[64];
			size_t na = 0, nb = 0;
			CF_ENSURE(cf_base64_decode(t1, strlen(t1), a, sizeof a, &na) == CF_OK &&
			                  cf_base64_decode(t2, strlen(t2), b, sizeof b, &nb) ==
			                          CF_OK,
			          cf_err_fail(CF_E_INTEGRITY, "proof file: a root is not base64"));
			return na == nb && memcmp(a, b, na) == 0
			               ? CF_OK
			               : cf_err_fail(CF_E_INTEGRITY,
			                             "consistency: equal sizes, other roots");
		}
		CF_TRY(hash_field(doc, "root1", r1));
		CF_TRY(hash_field(doc, "root2", r2));
		return cf_merkle_verify_consistency(s1, s2, r1, r2,
		                                    (const uint8_t(*)[CF_HASH_LEN])proof, n);
	}
	return cf_err_fail(CF_E_INVALID,
	                   "proof file: neither an inclusion nor a consistency proof");
}
