/* coffre — reading the audit log: the latest checkpoint, inclusion and consistency proofs
 * at O(log n) stored hashes for any tree size (AL1), and a tenant's entries filtered and
 * paginated (AL2, AL4). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "audit/internal.h"

static json_t *b64(const uint8_t *p, size_t n)
{
	char t[4 * ((CF_HASH_LEN + 2) / 3) + 1];
	if (n > CF_HASH_LEN)
		return NULL;
	cf_base64_encode(p, n, t);
	return json_string(t);
}

struct latest {
	bool found;
	int64_t size;
	uint8_t root[CF_HASH_LEN];
	char note[CF_CHECKPOINT_MAX];
};

static cf_err latest_row(const struct cf_row *row, void *ctx)
{
	struct latest *l = ctx;
	struct cf_span r = cf_row_blob(row, 1);
	CF_ENSURE(r.len == CF_HASH_LEN, cf_err_fail(CF_E_INTEGRITY, "a checkpoint row is damaged"));
	l->found = true;
	l->size = cf_row_int(row, 0);
	memcpy(l->root, r.ptr, CF_HASH_LEN);
	cf_span_to_str(cf_row_blob(row, 2), l->note, sizeof l->note);
	return CF_OK;
}

static cf_err latest_tx(struct cf_tx *tx, struct latest *l)
{
	return cf_tx_query(
	        tx, "SELECT size, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
	        NULL, 0, latest_row, l);
}

static cf_err latest_fn(struct cf_tx *tx, void *ctx)
{
	return latest_tx(tx, ctx);
}

cf_err cf_audit_latest(struct cf_store *st, json_t **out)
{
	struct latest l = {0};
	CF_TRY(cf_store_read(st, NULL, latest_fn, &l));
	CF_ENSURE(l.found, cf_err_fail(CF_E_NOT_FOUND, "no checkpoint yet"));
	*out = json_pack("{s:I, s:o, s:s}", "size", (json_int_t)l.size, "root",
	                 b64(l.root, CF_HASH_LEN), "checkpoint", l.note);
	return *out ? CF_OK : CF_E_NOMEM;
}

struct proof_ctx {
	uint64_t a, b; /* index and size, or size1 and size2 */
	bool inclusion;
	uint8_t proof[CF_MERKLE_PROOF_MAX][CF_HASH_LEN];
	uint8_t leaf[CF_HASH_LEN];
	size_t n;
};

static cf_err proof_fn(struct cf_tx *tx, void *ctx)
{
	struct proof_ctx *p = ctx;
	uint64_t size = 0;
	CF_TRY(cf_audit_tx_tree_size(tx, &size));
	if (p->b == 0) { /* the latest checkpoint's size: what a client can check against */
		struct latest l = {0};
		CF_TRY(latest_tx(tx, &l));
		CF_ENSURE(l.found, cf_err_fail(CF_E_NOT_FOUND, "no checkpoint yet"));
		p->b = (uint64_t)l.size;
	}
	CF_ENSURE(p->b <= size,
	          cf_err_fail(CF_E_OUT_OF_RANGE, "the tree has %" PRIu64 " entries", size));
	if (p->inclusion) {
		CF_TRY(cf_merkle_inclusion_proof(cf_audit_tx_get_node, tx, p->a, p->b, p->proof,
		                                 &p->n));
		return cf_audit_tx_get_node(tx, 0, p->a, p->leaf);
	}
	CF_ENSURE(p->a >= 1 && p->a <= p->b,
	          cf_err_fail(CF_E_OUT_OF_RANGE, "size1 must be 1 to size2"));
	return cf_merkle_consistency_proof(cf_audit_tx_get_node, tx, p->a, p->b, p->proof, &p->n);
}

static json_t *proof_array(const struct proof_ctx *p)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < p->n; i++)
		json_array_append_new(arr, b64(p->proof[i], CF_HASH_LEN));
	return arr;
}

cf_err cf_audit_inclusion(struct cf_store *st, uint64_t index, uint64_t size, json_t **out)
{
	struct proof_ctx p = {.a = index, .b = size, .inclusion = true};
	CF_TRY(cf_store_read(st, NULL, proof_fn, &p));
	*out = json_pack("{s:I, s:I, s:o, s:o}", "index", (json_int_t)p.a, "size", (json_int_t)p.b,
	                 "leaf_hash", b64(p.leaf, CF_HASH_LEN), "proof", proof_array(&p));
	return *out ? CF_OK : CF_E_NOMEM;
}

cf_err cf_audit_consistency(struct cf_store *st, uint64_t size1, uint64_t size2, json_t **out)
{
	struct proof_ctx p = {.a = size1, .b = size2};
	CF_TRY(cf_store_read(st, NULL, proof_fn, &p));
	*out = json_pack("{s:I, s:I, s:o}", "size1", (json_int_t)p.a, "size2", (json_int_t)p.b,
	                 "proof", proof_array(&p));
	return *out ? CF_OK : CF_E_NOMEM;
}

/* --- listing ------------------------------------------------------------------------------ */
static const char *const outcome_names[] = {"ok", "denied", "failed"};
static const char *const actor_names[] = {"anonymous", "user", "client", "operator", "system"};

struct list_ctx {
	json_t *arr;
	int64_t last_seq;
	unsigned n;
};

static json_t *text(struct cf_span s)
{
	return json_stringn((const char *)s.ptr, s.len);
}

static cf_err list_row(const struct cf_row *row, void *ctx)
{
	struct list_ctx *l = ctx;
	struct cf_audit_entry e;
	CF_TRY(cf_audit_decode(cf_row_blob(row, 1), &e));
	char when[40];
	cf_time_format_us(e.time_us, when, sizeof when);
	json_t *o = json_object();
	CF_ENSURE(o, CF_E_NOMEM);
	json_object_set_new(o, "time", json_string(when));
	json_object_set_new(o, "seq", json_integer((json_int_t)e.seq));
	json_object_set_new(o, "actor_kind", json_string(actor_names[e.actor_kind]));
	json_object_set_new(o, "actor", text(e.actor));
	json_object_set_new(o, "action", text(e.action));
	json_object_set_new(o, "resource", text(e.resource));
	json_object_set_new(o, "outcome", json_string(outcome_names[e.outcome]));
	if (e.error.len)
		json_object_set_new(o, "error", text(e.error));
	if (e.request_id.len)
		json_object_set_new(o, "request_id", text(e.request_id));
	if (e.privilege.len)
		json_object_set_new(o, "privilege", text(e.privilege));
	if (e.detail.len)
		json_object_set_new(o, "detail", text(e.detail));
	json_object_set_new(o, "clock_synchronized", json_boolean(e.flags & CF_AUDIT_FLAG_CLOCK));
	/* what a proof needs: the entry's index (null until sequenced) */
	json_object_set_new(o, "index",
	                    cf_row_is_null(row, 2) ? json_null()
	                                           : json_integer(cf_row_int(row, 2)));
	l->last_seq = cf_row_int(row, 0);
	l->n++;
	return json_array_append_new(l->arr, o) == 0 ? CF_OK : CF_E_NOMEM;
}

struct list_q {
	const struct cf_audit_filter *f;
	struct list_ctx *l;
};

static cf_err list_fn(struct cf_tx *tx, void *ctx)
{
	struct list_q *q = ctx;
	const struct cf_audit_filter *f = q->f;
	struct cf_val v[] = {
	        CF_V_TEXT(f->tenant ? f->tenant : ""),
	        f->action ? CF_V_TEXT(f->action) : CF_V_NULL,
	        f->actor ? CF_V_TEXT(f->actor) : CF_V_NULL,
	        f->resource ? CF_V_TEXT(f->resource) : CF_V_NULL,
	        f->outcome >= 0 ? CF_V_INT(f->outcome) : CF_V_NULL,
	        f->since_us ? CF_V_INT(f->since_us) : CF_V_NULL,
	        f->until_us ? CF_V_INT(f->until_us) : CF_V_NULL,
	        f->cursor ? CF_V_INT(f->cursor) : CF_V_NULL,
	        CF_V_INT(f->limit),
	};
	/* Every query names its tenant (DESIGN §7). */
	return cf_tx_query(
	        tx,
	        "SELECT seq, body, leaf_index FROM audit_entries WHERE tenant_id = $1"
	        " AND seq IS NOT NULL"
	        /* The casts tell PostgreSQL the parameters' types when NULL. */
	        " AND (CAST($2 AS TEXT) IS NULL OR action = $2)"
	        " AND (CAST($3 AS TEXT) IS NULL OR actor = $3)"
	        " AND (CAST($4 AS TEXT) IS NULL OR resource = $4)"
	        " AND (CAST($5 AS BIGINT) IS NULL OR outcome = $5)"
	        " AND (CAST($6 AS BIGINT) IS NULL OR time_us >= $6)"
	        " AND (CAST($7 AS BIGINT) IS NULL OR time_us < $7)"
	        " AND (CAST($8 AS BIGINT) IS NULL OR seq < $8) ORDER BY seq DESC LIMIT $9",
	        v, 9, list_row, q->l);
}

cf_err cf_audit_list(struct cf_store *st, const struct cf_audit_filter *f, json_t **out)
{
	CF_ENSURE(f->limit >= 1 && f->limit <= 1000,
	          cf_err_fail(CF_E_OUT_OF_RANGE, "limit is 1 to 1000"));
	CF_ENSURE(f->outcome >= -1 && f->outcome <= CF_OUTCOME_FAILED,
	          cf_err_fail(CF_E_OUT_OF_RANGE, "unknown outcome"));
	struct list_ctx l = {.arr = json_array()};
	CF_ENSURE(l.arr, CF_E_NOMEM);
	struct list_q q = {f, &l};
	cf_err err = cf_store_read(st, f->tenant, list_fn, &q);
	if (err) {
		json_decref(l.arr);
		return err;
	}
	*out = json_pack("{s:o, s:o}", "entries", l.arr, "next",
	                 l.n == f->limit ? json_integer(l.last_seq) : json_null());
	return *out ? CF_OK : CF_E_NOMEM;
}
