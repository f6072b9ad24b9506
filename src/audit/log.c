/* coffre — the audit log in the data store (AL1, AL3, AL5, AL6): appending entries inside
 * the caller's transaction, the sequencer that builds the Merkle tree, signed
 * checkpoints, and the offline verification behind `coffre audit verify`. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/internal.h"

/* --- appending ------------------------------------------------------------------------ */
cf_err cf_audit_mac(struct cf_keyring *kr, const char *tenant, const char *value, char out[65])
{
	uint8_t mac[CF_HMAC_LEN];
	uint32_t version = 0;
	CF_TRY(cf_keys_mac(kr, tenant, CF_PURPOSE_AUDIT, cf_span_str(value), mac, &version));
	cf_hex_encode(mac, sizeof mac, out);
	return CF_OK;
}

static cf_err copy_field(char *dst, size_t cap, const char *src, const char *what)
{
	size_t n = src ? strlen(src) : 0;
	CF_ENSURE(n < cap, cf_err_fail(CF_E_INVALID, "audit entry: %s too long", what));
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
	return CF_OK;
}

void cf_audit_set_detail(struct cf_audit_prepared *p, const char *detail)
{
	size_t n = 0;
	for (const char *d = detail; d && *d && n < CF_AUDIT_TEXT_MAX; d++)
		p->detail[n++] = *d >= 0x20 && *d <= 0x7e ? *d : '?';
	p->detail[n] = '\0';
}

cf_err cf_audit_prepare(struct cf_keyring *kr, const struct cf_audit_event *ev,
                        struct cf_audit_prepared *p)
{
	memset(p, 0, sizeof *p);
	CF_TRY(copy_field(p->tenant, sizeof p->tenant, ev->tenant, "tenant"));
	CF_ENSURE(ev->action && ev->action[0], cf_err_fail(CF_E_INVALID, "audit entry: no action"));
	CF_TRY(copy_field(p->action, sizeof p->action, ev->action, "action"));
	CF_TRY(copy_field(p->error, sizeof p->error, ev->error, "error"));
	CF_TRY(copy_field(p->request_id, sizeof p->request_id, ev->request_id, "request id"));
	CF_TRY(copy_field(p->privilege, sizeof p->privilege, ev->privilege, "privilege"));
	cf_audit_set_detail(p, ev->detail);
	/* A tenant's identifying values are stored as HMACs under its audit key: the tenant
	 * can search for them, nobody else learns them. */
	const char *a = ev->actor ? ev->actor : "", *r = ev->resource ? ev->resource : "";
	if (p->tenant[0] && a[0]) {
		CF_ENSURE(kr, CF_E_INTERNAL);
		CF_TRY(cf_audit_mac(kr, p->tenant, a, p->actor));
	} else {
		CF_TRY(copy_field(p->actor, sizeof p->actor, a, "actor"));
	}
	if (p->tenant[0] && r[0]) {
		CF_ENSURE(kr, CF_E_INTERNAL);
		CF_TRY(cf_audit_mac(kr, p->tenant, r, p->resource));
	} else {
		CF_TRY(copy_field(p->resource, sizeof p->resource, r, "resource"));
	}
	p->actor_kind = (uint8_t)ev->actor_kind;
	p->outcome = (uint8_t)ev->outcome;
	p->flags = cf_clock_synchronized() ? CF_AUDIT_FLAG_CLOCK : 0;
	return cf_crypto_random(p->salt, sizeof p->salt);
}

/* A row of two integers into int64_t[2]. */
static cf_err two_ints_row(const struct cf_row *row, void *ctx)
{
	int64_t *v = ctx;
	v[0] = cf_row_int(row, 0);
	v[1] = cf_row_int(row, 1);
	return CF_OK;
}

/* The numbers the SQLite writer gave last (its thread's own): the next tree index, and
 * each recent tenant's next number, good while the store's epoch stays the same (no
 * rollback, no other process writing since). Otherwise they are read again. */
#define NEXT_SLOTS 64
static _Thread_local struct {
	uint64_t epoch; /* unique in the process: it names the store too */
	int64_t leaf;
	struct {
		char tenant[CF_TENANT_ID_MAX + 1];
		int64_t seq;
	} slot[NEXT_SLOTS];
} next_memo;

static size_t next_slot(const char *tenant)
{
	uint32_t h = 2166136261u; /* FNV-1a: spreads the slots, no security role */
	for (const char *c = tenant; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	return h % NEXT_SLOTS;
}

/* The next tree index and tenant number from what this writer gave last, when it may. */
static bool next_remembered(struct cf_tx *tx, const char *tenant, int64_t next[2])
{
	uint64_t epoch = cf_tx_epoch(tx);
	if (!epoch || next_memo.epoch != epoch)
		return false;
	size_t i = next_slot(tenant);
	if (strcmp(next_memo.slot[i].tenant, tenant) != 0 || next_memo.slot[i].seq <= 0)
		return false;
	next[0] = next_memo.leaf;
	next[1] = next_memo.slot[i].seq;
	return true;
}

static void next_remember(struct cf_tx *tx, const char *tenant, const int64_t used[2])
{
	uint64_t epoch = cf_tx_epoch(tx);
	if (!epoch || strlen(tenant) >= sizeof next_memo.slot[0].tenant)
		return;
	if (next_memo.epoch != epoch) {
		memset(&next_memo, 0, sizeof next_memo);
		next_memo.epoch = epoch;
	}
	next_memo.leaf = used[0] + 1;
	size_t i = next_slot(tenant);
	(void)snprintf(next_memo.slot[i].tenant, sizeof next_memo.slot[i].tenant, "%s", tenant);
	next_memo.slot[i].seq = used[1] + 1;
}

cf_err cf_audit_append(struct cf_tx *tx, const struct cf_audit_prepared *p)
{
	struct cf_audit_entry e = {
	        .format = p->detail[0] ? CF_AUDIT_FORMAT_2 : CF_AUDIT_FORMAT,
	        .time_us = cf_now_us(),
	        .tenant = cf_span_str(p->tenant),
	        .seq = 0, /* numbered by the sequencer */
	        .actor_kind = p->actor_kind,
	        .actor = cf_span_str(p->actor),
	        .action = cf_span_str(p->action),
	        .resource = cf_span_str(p->resource),
	        .outcome = p->outcome,
	        .error = cf_span_str(p->error),
	        .request_id = cf_span_str(p->request_id),
	        .privilege = cf_span_str(p->privilege),
	        .detail = cf_span_str(p->detail),
	        .flags = p->flags,
	};
	memcpy(e.salt, p->salt, sizeof e.salt);
	CF_SCRATCH uint8_t body[CF_AUDIT_ENTRY_MAX];
	size_t n = 0;
	if (cf_tx_engine(tx) == CF_STORE_POSTGRES) {
		/* PostgreSQL commits out of append order: the sequencer numbers entries once
		 * they are committed, so one tenant's requests never wait on each other. */
		CF_TRY(cf_audit_encode(&e, body, sizeof body, &n));
		struct cf_val v[] = {CF_V_TEXT(p->tenant), CF_V_INT(e.time_us),
		                     CF_V_TEXT(p->action), CF_V_INT(e.outcome),
		                     CF_V_TEXT(p->actor),  CF_V_TEXT(p->resource),
		                     CF_V_BLOB(body, n)};
		/* sent with the COMMIT: an entry that fails fails its transaction there */
		return cf_tx_exec_later(tx,
		                        "INSERT INTO audit_entries (tenant_id, time_us, action,"
		                        " outcome, actor, resource, body)"
		                        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
		                        v, 7);
	}
	/* SQLite has one writer, which commits in append order: the entry takes its tree
	 * index and its tenant's next number here, inside the transaction (so a request
	 * rolled back gives both back), and is written once, final. The sequencer is left
	 * the tree's subtrees, off the commit path. Each number is the next after the
	 * largest kept, never below what pruning or the tree already passed. */
	struct cf_val t[] = {CF_V_TEXT(p->tenant)};
	int64_t next[2] = {0, 0};
	if (!next_remembered(tx, p->tenant, next))
		CF_TRY(cf_tx_query(
		        tx,
		        "SELECT max(coalesce((SELECT max(leaf_index) FROM audit_entries), -1) + 1,"
		        " coalesce((SELECT size FROM audit_tree WHERE id = 1), 0),"
		        " coalesce((SELECT below FROM audit_pruned WHERE id = 1), 0)),"
		        " max(coalesce((SELECT max(seq) FROM audit_entries WHERE tenant_id = $1),"
		        " 0) + 1, coalesce((SELECT next FROM audit_seq WHERE tenant_id = $1), 1))",
		        t, 1, two_ints_row, next));
	e.seq = (uint64_t)next[1];
	CF_TRY(cf_audit_encode(&e, body, sizeof body, &n));
	uint8_t leaf[CF_HASH_LEN];
	CF_TRY(cf_merkle_leaf((struct cf_span){body, n}, leaf));
	struct cf_val v[] = {CF_V_TEXT(p->tenant), CF_V_INT(e.time_us),
	                     CF_V_TEXT(p->action), CF_V_INT(e.outcome),
	                     CF_V_TEXT(p->actor),  CF_V_TEXT(p->resource),
	                     CF_V_BLOB(body, n),   CF_V_INT(next[1]),
	                     CF_V_INT(next[0]),    CF_V_BLOB(leaf, sizeof leaf)};
	/* The id, without a counter (schema migration 18): past the tree index, past every
	 * id kept and past the sequencer's last, so that none comes back once pruning has
	 * emptied the table (the sequencer takes entries by id). Both lookups read pages
	 * the writer has just written, still in its cache. */
	cf_err err = cf_tx_exec(tx,
	                        "INSERT INTO audit_entries (id, tenant_id, time_us, action,"
	                        " outcome, actor, resource, body, seq, leaf_index, leaf_hash)"
	                        " VALUES (max($9 + 1,"
	                        " coalesce((SELECT max(id) FROM audit_entries), 0) + 1,"
	                        " coalesce((SELECT last_id FROM audit_tree WHERE id = 1), 0) + 1),"
	                        " $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	                        v, 10, NULL);
	if (err == CF_OK)
		next_remember(tx, p->tenant, next);
	else
		next_memo.epoch = 0; /* read them again */
	return err;
}

static cf_err record_fn(struct cf_tx *tx, void *ctx)
{
	return cf_audit_append(tx, ctx);
}

cf_err cf_audit_record(struct cf_store *st, struct cf_keyring *kr, const struct cf_audit_event *ev)
{
	struct cf_audit_prepared p;
	CF_TRY(cf_audit_prepare(kr, ev, &p));
	return cf_store_write_wait(st, NULL, record_fn, &p);
}

/* --- the sequencer --------------------------------------------------------------------- */
struct cf_audit_seq {
	struct cf_store *st;
	struct cf_merkle_frontier f;
	bool loaded;
};

struct node_get {
	struct cf_tx *tx;
	uint8_t *out;
	bool found;
};

static cf_err node_row(const struct cf_row *row, void *ctx)
{
	struct node_get *g = ctx;
	if (cf_row_is_null(row, 0))
		return CF_OK;
	struct cf_span h = cf_row_blob(row, 0);
	CF_ENSURE(h.len == CF_HASH_LEN,
	          cf_err_fail(CF_E_INTEGRITY, "audit: a stored hash is damaged"));
	memcpy(g->out, h.ptr, CF_HASH_LEN);
	g->found = true;
	return CF_OK;
}

cf_err cf_audit_tx_get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[CF_HASH_LEN])
{
	struct node_get g = {.tx = ctx, .out = out};
	struct cf_val v[] = {CF_V_INT(level), CF_V_INT(index)};
	/* Leaves live with their entries; the subtrees above them in audit_nodes. */
	if (level == 0)
		CF_TRY(cf_tx_query(g.tx,
		                   "SELECT leaf_hash FROM audit_entries WHERE leaf_index = $1",
		                   v + 1, 1, node_row, &g));
	if (level == 0 && !g.found) /* a pruned entry's leaf kept at the boundary */
		CF_TRY(cf_tx_query(g.tx,
		                   "SELECT hash FROM audit_nodes WHERE level = 0 AND idx = $1",
		                   v + 1, 1, node_row, &g));
	else if (level > 0)
		CF_TRY(cf_tx_query(g.tx,
		                   "SELECT hash FROM audit_nodes WHERE level = $1 AND idx = $2", v,
		                   2, node_row, &g));
	return g.found ? CF_OK
	               : cf_err_fail(CF_E_INTEGRITY,
	                             "audit: the subtree (%u, %" PRIu64 ") is missing", level,
	                             index);
}

static cf_err tx_put_node(void *ctx, unsigned level, uint64_t index, const uint8_t h[CF_HASH_LEN])
{
	if (level == 0) /* stored with the entry itself */
		return CF_OK;
	struct cf_val v[] = {CF_V_INT(level), CF_V_INT(index), CF_V_BLOB(h, CF_HASH_LEN)};
	return cf_tx_exec(ctx, "INSERT INTO audit_nodes (level, idx, hash) VALUES ($1, $2, $3)", v,
	                  3, NULL);
}

static cf_err int_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_is_null(row, 0) ? -1 : cf_row_int(row, 0);
	return CF_OK;
}

static cf_err tree_state(struct cf_tx *tx, uint64_t *size, int64_t *last_id)
{
	int64_t v[2] = {0, 0};
	CF_TRY(cf_tx_query(tx, "SELECT size, last_id FROM audit_tree WHERE id = 1", NULL, 0,
	                   two_ints_row, v));
	*size = v[0] < 0 ? 0 : (uint64_t)v[0];
	if (last_id)
		*last_id = v[1];
	return CF_OK;
}

cf_err cf_audit_tx_tree_size(struct cf_tx *tx, uint64_t *size)
{
	return tree_state(tx, size, NULL);
}

cf_err cf_audit_seq_open(struct cf_store *st, struct cf_audit_seq **out)
{
	struct cf_audit_seq *s = calloc(1, sizeof *s);
	CF_ENSURE(s, CF_E_NOMEM);
	s->st = st;
	*out = s;
	return CF_OK;
}

void cf_audit_seq_close(struct cf_audit_seq **pp)
{
	if (!pp || !*pp)
		return;
	free(*pp);
	*pp = NULL;
}

#define STEP_MAX 4096
struct pending {
	int64_t ids[STEP_MAX];
	uint8_t *bodies[STEP_MAX];
	size_t lens[STEP_MAX];
	char tenants[STEP_MAX][CF_TENANT_ID_MAX + 1];
	uint64_t seqs[STEP_MAX];
	uint8_t leaves[STEP_MAX][CF_HASH_LEN];
	bool numbered[STEP_MAX]; /* SQLite: numbered and hashed when appended */
	int64_t index[STEP_MAX];
	size_t n, limit;
};

static cf_err pending_row(const struct cf_row *row, void *ctx)
{
	struct pending *p = ctx;
	if (p->n >= p->limit)
		return CF_OK;
	p->ids[p->n] = cf_row_int(row, 0);
	cf_span_to_str(cf_row_blob(row, 2), p->tenants[p->n], sizeof p->tenants[p->n]);
	p->numbered[p->n] = cf_row_count(row) > 3 && !cf_row_is_null(row, 3);
	if (!p->numbered[p->n]) { /* its bytes take their number here */
		struct cf_span b = cf_row_blob(row, 1);
		p->bodies[p->n] = malloc(b.len ? b.len : 1);
		CF_ENSURE(p->bodies[p->n], CF_E_NOMEM);
		memcpy(p->bodies[p->n], b.ptr, b.len);
		p->lens[p->n] = b.len;
	} else {
		struct cf_span h = cf_row_blob(row, 4);
		CF_ENSURE(h.len == CF_HASH_LEN && !cf_row_is_null(row, 5),
		          cf_err_fail(CF_E_INTEGRITY, "audit: entry %lld is damaged",
		                      (long long)p->ids[p->n]));
		p->index[p->n] = cf_row_int(row, 3);
		memcpy(p->leaves[p->n], h.ptr, CF_HASH_LEN);
		p->seqs[p->n] = (uint64_t)cf_row_int(row, 5);
	}
	p->n++;
	return CF_OK;
}

/* Per-tenant numbering within one step: the next number of each tenant seen. */
struct tenant_next {
	int64_t next;
	char tenant[CF_TENANT_ID_MAX + 1];
};

static cf_err next_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

struct step_ctx {
	struct cf_audit_seq *s;
	struct pending *p;
	unsigned added;
	bool locked_out;
};

/* PostgreSQL: a round trip per statement would cap the sequencer at a few thousand
 * entries a second, so a step's updates and new subtrees go as two statements over
 * arrays (bound parameters, hex for the bytes). */
struct pg_nodes {
	struct cf_buf lv, ix, hs;
	bool first;
};

static cf_err buf_num(struct cf_buf *b, bool first, int64_t v)
{
	char t[24];
	int n = snprintf(t, sizeof t, "%s%lld", first ? "" : ",", (long long)v);
	return cf_buf_append(b, t, (size_t)n);
}

static cf_err buf_hex(struct cf_buf *b, bool first, const uint8_t *p, size_t n)
{
	char hex[2 * CF_AUDIT_ENTRY_MAX + 1];
	CF_ENSURE(n <= CF_AUDIT_ENTRY_MAX, CF_E_INTERNAL);
	cf_hex_encode(p, n, hex);
	if (!first)
		CF_TRY(cf_buf_append(b, ",", 1));
	return cf_buf_append(b, hex, 2 * n);
}

static cf_err pg_put_node(void *ctx, unsigned level, uint64_t index, const uint8_t h[CF_HASH_LEN])
{
	struct pg_nodes *pn = ctx;
	if (level == 0)
		return CF_OK;
	CF_TRY(buf_num(&pn->lv, pn->first, level));
	CF_TRY(buf_num(&pn->ix, pn->first, (int64_t)index));
	CF_TRY(buf_hex(&pn->hs, pn->first, h, CF_HASH_LEN));
	pn->first = false;
	return CF_OK;
}

static cf_err pg_apply(struct cf_tx *tx, struct cf_audit_seq *s, struct pending *p,
                       int64_t *last_id)
{
	enum { IDS, LIS, SEQS, LHS, BODIES, NB };
	struct cf_buf b[NB];
	struct pg_nodes pn = {.first = true};
	cf_err err = CF_OK;
	for (int k = 0; k < NB; k++) {
		cf_buf_init(&b[k], 64u << 20);
		CF_TRY_OUT(cf_buf_append(&b[k], "{", 1), out);
	}
	cf_buf_init(&pn.lv, 1u << 20);
	cf_buf_init(&pn.ix, 1u << 20);
	cf_buf_init(&pn.hs, 16u << 20);
	CF_TRY_OUT(cf_buf_append(&pn.lv, "{", 1), out);
	CF_TRY_OUT(cf_buf_append(&pn.ix, "{", 1), out);
	CF_TRY_OUT(cf_buf_append(&pn.hs, "{", 1), out);
	for (size_t i = 0; i < p->n; i++) {
		bool first = i == 0;
		CF_TRY_OUT(buf_num(&b[IDS], first, p->ids[i]), out);
		CF_TRY_OUT(buf_num(&b[LIS], first, (int64_t)s->f.size), out);
		CF_TRY_OUT(buf_num(&b[SEQS], first, (int64_t)p->seqs[i]), out);
		CF_TRY_OUT(buf_hex(&b[LHS], first, p->leaves[i], CF_HASH_LEN), out);
		CF_TRY_OUT(buf_hex(&b[BODIES], first, p->bodies[i], p->lens[i]), out);
		CF_TRY_OUT(cf_merkle_append(&s->f, p->leaves[i], pg_put_node, &pn), out);
		if (p->ids[i] > *last_id)
			*last_id = p->ids[i];
	}
	for (int k = 0; k < NB; k++)
		CF_TRY_OUT(cf_buf_append(&b[k], "}", 2), out); /* with the NUL */
	CF_TRY_OUT(cf_buf_append(&pn.lv, "}", 2), out);
	CF_TRY_OUT(cf_buf_append(&pn.ix, "}", 2), out);
	CF_TRY_OUT(cf_buf_append(&pn.hs, "}", 2), out);
	struct cf_val u[] = {CF_V_TEXT((char *)b[IDS].data), CF_V_TEXT((char *)b[LIS].data),
	                     CF_V_TEXT((char *)b[SEQS].data), CF_V_TEXT((char *)b[LHS].data),
	                     CF_V_TEXT((char *)b[BODIES].data)};
	int64_t changed = 0;
	CF_TRY_OUT(
	        cf_tx_exec(tx,
	                   "UPDATE audit_entries AS e SET leaf_index = v.li,"
	                   " leaf_hash = decode(v.lh, 'hex'), seq = v.sq, body = decode(v.b, 'hex')"
	                   " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],"
	                   " $5::text[]) AS v(id, li, sq, lh, b)"
	                   " WHERE e.id = v.id AND e.leaf_index IS NULL",
	                   u, 5, &changed),
	        out);
	CF_ENSURE_OUT(changed == (int64_t)p->n,
	              cf_err_fail(CF_E_CONFLICT, "audit: entries were sequenced meanwhile"), out);
	if (!pn.first) {
		struct cf_val nv[] = {CF_V_TEXT((char *)pn.lv.data), CF_V_TEXT((char *)pn.ix.data),
		                      CF_V_TEXT((char *)pn.hs.data)};
		CF_TRY_OUT(cf_tx_exec(tx,
		                      "INSERT INTO audit_nodes (level, idx, hash)"
		                      " SELECT l, i, decode(h, 'hex')"
		                      " FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS "
		                      "v(l, i, h)",
		                      nv, 3, NULL),
		           out);
	}
out:
	for (int k = 0; k < NB; k++)
		cf_buf_free(&b[k]);
	cf_buf_free(&pn.lv);
	cf_buf_free(&pn.ix);
	cf_buf_free(&pn.hs);
	return err;
}

static cf_err step_fn(struct cf_tx *tx, void *ctx)
{
	struct step_ctx *sc = ctx;
	struct cf_audit_seq *s = sc->s;
	sc->added = 0;
	if (cf_store_engine(s->st) == CF_STORE_POSTGRES) {
		/* One sequencer per database, whatever the number of coffred nodes. */
		int64_t got = 0;
		CF_TRY(cf_tx_query(tx,
		                   "SELECT CASE WHEN pg_try_advisory_xact_lock(72657331) THEN 1"
		                   " ELSE 0 END",
		                   NULL, 0, int_row, &got));
		if (got != 1) {
			sc->locked_out = true;
			return CF_OK;
		}
	}
	uint64_t size = 0;
	int64_t last_id = 0;
	CF_TRY(tree_state(tx, &size, &last_id));
	/* The frontier is reloaded whenever it may be stale (first use, another node). */
	if (!s->loaded || s->f.size != size)
		CF_TRY(cf_merkle_frontier_load(&s->f, size, cf_audit_tx_get_node, tx));
	s->loaded = false; /* until this transaction commits */
	sc->p->n = 0;
	if (cf_store_engine(s->st) == CF_STORE_SQLITE) {
		/* One writer: ids are in commit order, so the next entries follow the last.
		 * They come numbered and hashed (cf_audit_append); entries an older coffre
		 * left unnumbered are numbered here, before anything is appended (drain). */
		struct cf_val q[] = {CF_V_INT(last_id), CF_V_INT(sc->p->limit)};
		CF_TRY(cf_tx_query(
		        tx,
		        "SELECT id, CASE WHEN leaf_index IS NULL THEN body END, tenant_id,"
		        " leaf_index, leaf_hash, seq"
		        " FROM audit_entries WHERE id > $1 ORDER BY id LIMIT $2",
		        q, 2, pending_row, sc->p));
	} else {
		struct cf_val q[] = {CF_V_INT(sc->p->limit)};
		CF_TRY(cf_tx_query(
		        tx,
		        "SELECT id, body, tenant_id FROM audit_entries WHERE leaf_index IS NULL"
		        " ORDER BY id LIMIT $1",
		        q, 1, pending_row, sc->p));
	}
	/* Number each entry in its tenant's sequence (no gaps: only committed entries are
	 * numbered, here, in tree order), write the number into its bytes, hash it. */
	struct tenant_next tn[16];
	size_t ntn = 0;
	for (size_t i = 0; i < sc->p->n; i++) {
		struct tenant_next *t = NULL;
		for (size_t j = 0; j < ntn && !t; j++)
			if (strcmp(tn[j].tenant, sc->p->tenants[i]) == 0)
				t = &tn[j];
		if (!t) {
			if (ntn == 16) { /* this step ends here; the rest wait for the next */
				sc->p->n = i;
				break;
			}
			t = &tn[ntn++];
			(void)snprintf(t->tenant, sizeof t->tenant, "%s", sc->p->tenants[i]);
			t->next = 1;
			struct cf_val q[] = {CF_V_TEXT(t->tenant)};
			CF_TRY(cf_tx_query(tx, "SELECT next FROM audit_seq WHERE tenant_id = $1", q,
			                   1, next_row, &t->next));
		}
		if (sc->p->numbered[i]) {
			if ((int64_t)sc->p->seqs[i] >= t->next)
				t->next = (int64_t)sc->p->seqs[i] + 1;
			continue;
		}
		sc->p->seqs[i] = (uint64_t)t->next++;
		CF_TRY(cf_audit_set_seq(sc->p->bodies[i], sc->p->lens[i], sc->p->seqs[i]));
		CF_TRY(cf_merkle_leaf((struct cf_span){sc->p->bodies[i], sc->p->lens[i]},
		                      sc->p->leaves[i]));
	}
	if (cf_store_engine(s->st) == CF_STORE_POSTGRES && sc->p->n)
		CF_TRY(pg_apply(tx, s, sc->p, &last_id));
	for (size_t i = 0; cf_store_engine(s->st) == CF_STORE_SQLITE && i < sc->p->n; i++) {
		if (sc->p->numbered[i]) {
			/* the tree takes leaves in index order, with none missing */
			CF_ENSURE(
			        sc->p->index[i] == (int64_t)s->f.size,
			        cf_err_fail(CF_E_INTEGRITY,
			                    "audit: entry %lld has tree index %lld, expected %llu",
			                    (long long)sc->p->ids[i], (long long)sc->p->index[i],
			                    (unsigned long long)s->f.size));
			CF_TRY(cf_merkle_append(&s->f, sc->p->leaves[i], tx_put_node, tx));
			if (sc->p->ids[i] > last_id)
				last_id = sc->p->ids[i];
			continue;
		}
		struct cf_val u[] = {CF_V_INT(s->f.size), CF_V_BLOB(sc->p->leaves[i], CF_HASH_LEN),
		                     CF_V_INT(sc->p->seqs[i]),
		                     CF_V_BLOB(sc->p->bodies[i], sc->p->lens[i]),
		                     CF_V_INT(sc->p->ids[i])};
		CF_TRY(cf_tx_exec(
		        tx,
		        "UPDATE audit_entries SET leaf_index = $1, leaf_hash = $2, seq = $3,"
		        " body = $4 WHERE id = $5 AND leaf_index IS NULL",
		        u, 5, NULL));
		next_memo.epoch = 0; /* numbers given here: the append reads them again */
		CF_TRY(cf_merkle_append(&s->f, sc->p->leaves[i], tx_put_node, tx));
		if (sc->p->ids[i] > last_id)
			last_id = sc->p->ids[i];
	}
	for (size_t j = 0; j < ntn; j++) {
		struct cf_val q[] = {CF_V_TEXT(tn[j].tenant), CF_V_INT(tn[j].next)};
		CF_TRY(cf_tx_exec(tx,
		                  "INSERT INTO audit_seq (tenant_id, next) VALUES ($1, $2)"
		                  " ON CONFLICT (tenant_id) DO UPDATE SET next = excluded.next",
		                  q, 2, NULL));
	}
	if (sc->p->n) {
		struct cf_val t[] = {CF_V_INT(s->f.size), CF_V_INT(last_id)};
		CF_TRY(cf_tx_exec(tx,
		                  "INSERT INTO audit_tree (id, size, last_id) VALUES (1, $1, $2)"
		                  " ON CONFLICT (id) DO UPDATE SET size = excluded.size,"
		                  " last_id = excluded.last_id",
		                  t, 2, NULL));
	}
	sc->added = (unsigned)sc->p->n;
	return CF_OK;
}

cf_err cf_audit_seq_step(struct cf_audit_seq *s, unsigned limit, unsigned *added)
{
	struct pending *p = calloc(1, sizeof *p);
	CF_ENSURE(p, CF_E_NOMEM);
	p->limit = limit && limit < STEP_MAX ? limit : STEP_MAX;
	struct step_ctx sc = {.s = s, .p = p};
	cf_err err = cf_store_write_wait(s->st, NULL, step_fn, &sc);
	for (size_t i = 0; i < STEP_MAX; i++)
		free(p->bodies[i]);
	free(p);
	/* Committed: the frontier in memory is the tree's. Failed: reload next time. */
	s->loaded = err == CF_OK && !sc.locked_out;
	*added = err == CF_OK ? sc.added : 0;
	return err;
}

cf_err cf_audit_seq_drain(struct cf_store *st)
{
	struct cf_audit_seq *s = NULL;
	CF_TRY(cf_audit_seq_open(st, &s));
	cf_err err = CF_OK;
	for (unsigned added = 1; err == CF_OK && added > 0;)
		err = cf_audit_seq_step(s, STEP_MAX, &added);
	cf_audit_seq_close(&s);
	return err;
}

/* --- checkpoints ------------------------------------------------------------------------ */
/* The C2SP signed-note key id: SHA-256(name || "\n" || 0x01 || public key)[:4]. */
static cf_err note_key_id(const char *name, const uint8_t pub[CF_ED25519_PUB], uint8_t id[4])
{
	static const uint8_t nl_alg[] = {'\n', 0x01};
	const struct cf_span parts[] = {cf_span_str(name), {nl_alg, 2}, {pub, CF_ED25519_PUB}};
	uint8_t h[CF_SHA256_LEN];
	CF_TRY(cf_sha256v(parts, 3, h));
	memcpy(id, h, 4);
	return CF_OK;
}

cf_err cf_checkpoint_sign(struct cf_keyring *kr, const char *origin, uint64_t size,
                          const uint8_t root[CF_HASH_LEN], char *out, size_t cap)
{
	char root64[64], body[256];
	cf_base64_encode(root, CF_HASH_LEN, root64);
	int bn = snprintf(body, sizeof body, "%s\n%" PRIu64 "\n%s\n", origin, size, root64);
	CF_ENSURE(bn > 0 && (size_t)bn < sizeof body, cf_err_fail(CF_E_INVALID, "origin too long"));
	uint8_t sig[4 + CF_ED25519_SIG], pub[CF_ED25519_PUB];
	CF_TRY(cf_keys_public(kr, CF_DKEY_CHECKPOINT, pub));
	CF_TRY(note_key_id(origin, pub, sig));
	CF_TRY(cf_keys_sign(kr, CF_DKEY_CHECKPOINT,
	                    (struct cf_span){(const uint8_t *)body, (size_t)bn}, sig + 4));
	char sig64[128];
	cf_base64_encode(sig, sizeof sig, sig64);
	int n = snprintf(out, cap, "%s\n\xe2\x80\x94 %s %s\n", body, origin, sig64);
	CF_ENSURE(n > 0 && (size_t)n < cap, cf_err_fail(CF_E_INVALID, "checkpoint too long"));
	return CF_OK;
}

cf_err cf_checkpoint_open(const char *note, const uint8_t pub[CF_ED25519_PUB], char *origin,
                          size_t origin_cap, uint64_t *size, uint8_t root[CF_HASH_LEN])
{
	const char *sep = strstr(note, "\n\n");
	CF_ENSURE(sep, cf_err_fail(CF_E_INTEGRITY, "checkpoint: not a signed note"));
	size_t body_len = (size_t)(sep - note) + 1;
	/* body: origin \n size \n root \n (extension lines are not used by coffre) */
	const char *l1 = memchr(note, '\n', body_len);
	const char *l2 = l1 ? memchr(l1 + 1, '\n', body_len - (size_t)(l1 + 1 - note)) : NULL;
	const char *l3 = l2 ? memchr(l2 + 1, '\n', body_len - (size_t)(l2 + 1 - note)) : NULL;
	CF_ENSURE(l1 && l2 && l3 && (size_t)(l3 - note) + 1 == body_len && l1 > note &&
	                  (size_t)(l1 - note) < origin_cap,
	          cf_err_fail(CF_E_INTEGRITY, "checkpoint: malformed body"));
	memcpy(origin, note, (size_t)(l1 - note));
	origin[l1 - note] = '\0';
	char num[24];
	size_t nl = (size_t)(l2 - l1 - 1);
	CF_ENSURE(nl > 0 && nl < sizeof num, cf_err_fail(CF_E_INTEGRITY, "checkpoint: bad size"));
	memcpy(num, l1 + 1, nl);
	num[nl] = '\0';
	char *end = NULL;
	unsigned long long sz = strtoull(num, &end, 10);
	CF_ENSURE(end && !*end && (num[0] != '0' || nl == 1) && num[0] != '-',
	          cf_err_fail(CF_E_INTEGRITY, "checkpoint: bad size"));
	size_t rlen = 0;
	CF_ENSURE(cf_base64_decode(l2 + 1, (size_t)(l3 - l2 - 1), root, CF_HASH_LEN, &rlen) ==
	                          CF_OK &&
	                  rlen == CF_HASH_LEN,
	          cf_err_fail(CF_E_INTEGRITY, "checkpoint: bad root hash"));
	/* signature lines: "— <name> <base64(key id || signature)>\n"; ours must be one */
	uint8_t want_id[4];
	CF_TRY(note_key_id(origin, pub, want_id));
	const char *line = sep + 2;
	while (*line) {
		const char *eol = strchr(line, '\n');
		CF_ENSURE(eol,
		          cf_err_fail(CF_E_INTEGRITY, "checkpoint: unterminated signature line"));
		size_t olen = strlen(origin);
		if (strncmp(line, "\xe2\x80\x94 ", 4) == 0 &&
		    strncmp(line + 4, origin, olen) == 0 && line[4 + olen] == ' ') {
			const char *b64 = line + 5 + olen;
			uint8_t sig[4 + CF_ED25519_SIG + 4];
			size_t slen = 0;
			if (cf_base64_decode(b64, (size_t)(eol - b64), sig, sizeof sig, &slen) ==
			            CF_OK &&
			    slen == 4 + CF_ED25519_SIG && memcmp(sig, want_id, 4) == 0) {
				CF_ENSURE(cf_ed25519_verify(
				                  pub,
				                  (struct cf_span){(const uint8_t *)note, body_len},
				                  sig + 4) == CF_OK,
				          cf_err_fail(CF_E_INTEGRITY,
				                      "checkpoint: the signature is not valid"));
				*size = sz;
				return CF_OK;
			}
		}
		line = eol + 1;
	}
	return cf_err_fail(CF_E_INTEGRITY, "checkpoint: no signature by this deployment's key");
}

struct identity {
	char deployment[64], origin[80];
	uint8_t pub[CF_ED25519_PUB];
	bool have_pub;
};

static cf_err ident_row(const struct cf_row *row, void *ctx)
{
	struct identity *id = ctx;
	cf_span_to_str(cf_row_blob(row, 0), id->deployment, sizeof id->deployment);
	if (!cf_row_is_null(row, 1))
		cf_span_to_str(cf_row_blob(row, 1), id->origin, sizeof id->origin);
	struct cf_span p = cf_row_blob(row, 2);
	if (!cf_row_is_null(row, 2) && p.len == CF_ED25519_PUB) {
		memcpy(id->pub, p.ptr, CF_ED25519_PUB);
		id->have_pub = true;
	}
	return CF_OK;
}

static cf_err ident_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx,
	                   "SELECT deployment_id, audit_origin, audit_public_key FROM deployment"
	                   " WHERE id = 1",
	                   NULL, 0, ident_row, ctx);
}

cf_err cf_audit_identity(struct cf_store *st, uint8_t pub[CF_ED25519_PUB], char *origin, size_t cap)
{
	struct identity id = {0};
	CF_TRY(cf_store_read(st, NULL, ident_fn, &id));
	CF_ENSURE(id.have_pub && id.origin[0],
	          cf_err_fail(CF_E_NOT_FOUND, "this log has no checkpoint key yet"));
	memcpy(pub, id.pub, CF_ED25519_PUB);
	(void)snprintf(origin, cap, "%s", id.origin);
	return CF_OK;
}

struct cp_ctx {
	struct cf_keyring *kr;
	bool made;
};

static cf_err last_cp_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_is_null(row, 0) ? 0 : cf_row_int(row, 0);
	return CF_OK;
}

static cf_err checkpoint_fn(struct cf_tx *tx, void *ctx)
{
	struct cp_ctx *c = ctx;
	c->made = false;
	struct identity id = {0};
	CF_TRY(ident_fn(tx, &id));
	uint8_t pub[CF_ED25519_PUB];
	CF_TRY(cf_keys_public(c->kr, CF_DKEY_CHECKPOINT, pub));
	if (!id.origin[0]) {
		/* The first checkpoint names the log and its key in the data store. */
		(void)snprintf(id.origin, sizeof id.origin, "coffre.audit/%s", id.deployment);
		struct cf_val v[] = {CF_V_TEXT(id.origin), CF_V_BLOB(pub, CF_ED25519_PUB)};
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE deployment SET audit_origin = $1, audit_public_key = $2"
		                  " WHERE id = 1",
		                  v, 2, NULL));
	} else {
		CF_ENSURE(id.have_pub && memcmp(id.pub, pub, CF_ED25519_PUB) == 0,
		          cf_err_fail(CF_E_CONFIG, "the checkpoint key is not the one this log "
		                                   "recorded: refusing to sign"));
	}
	uint64_t size = 0;
	CF_TRY(cf_audit_tx_tree_size(tx, &size));
	int64_t last = 0;
	CF_TRY(cf_tx_query(tx, "SELECT max(size) FROM audit_checkpoints", NULL, 0, last_cp_row,
	                   &last));
	if ((int64_t)size == last) /* nothing new to sign (nor an empty tree) */
		return CF_OK;
	struct cf_merkle_frontier f;
	uint8_t root[CF_HASH_LEN];
	CF_TRY(cf_merkle_frontier_load(&f, size, cf_audit_tx_get_node, tx));
	CF_TRY(cf_merkle_root(&f, root));
	char note[CF_CHECKPOINT_MAX];
	CF_TRY(cf_checkpoint_sign(c->kr, id.origin, size, root, note, sizeof note));
	struct cf_val v[] = {CF_V_INT(size), CF_V_BLOB(root, CF_HASH_LEN), CF_V_TEXT(note),
	                     CF_V_INT(cf_now_us() / 1000000)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO audit_checkpoints (size, root, note, created_at)"
	                  " VALUES ($1, $2, $3, $4)",
	                  v, 4, NULL));
	c->made = true;
	return CF_OK;
}

cf_err cf_audit_checkpoint(struct cf_audit_seq *s, struct cf_keyring *kr, bool *made)
{
	struct cp_ctx c = {.kr = kr};
	CF_TRY(cf_store_write_wait(s->st, NULL, checkpoint_fn, &c));
	*made = c.made;
	return CF_OK;
}

/* --- retention ------------------------------------------------------------------------- */
struct prune_ctx {
	int64_t before_us;
	uint64_t below;
};

static cf_err pruned_below(struct cf_tx *tx, uint64_t *below)
{
	int64_t b = 0;
	CF_TRY(cf_tx_query(tx, "SELECT below FROM audit_pruned WHERE id = 1", NULL, 0, int_row,
	                   &b));
	*below = b > 0 ? (uint64_t)b : 0;
	return CF_OK;
}

static cf_err prune_fn(struct cf_tx *tx, void *ctx)
{
	struct prune_ctx *p = ctx;
	CF_TRY(pruned_below(tx, &p->below));
	/* The new start: the largest checkpointed size whose last entry is older than the
	 * cutoff (a checkpoint there anchors what stays). */
	int64_t size = -1;
	struct cf_val c[] = {CF_V_INT(p->before_us)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT max(c.size) FROM audit_checkpoints c JOIN audit_entries e"
	                   " ON e.leaf_index = c.size - 1 WHERE e.time_us < $1",
	                   c, 1, int_row, &size));
	if (size <= 0 || (uint64_t)size <= p->below)
		return CF_OK;
	/* The boundary leaf (for an odd size) is the one leaf the frontier there needs. */
	if (size & 1) {
		uint8_t leaf[CF_HASH_LEN];
		CF_TRY(cf_audit_tx_get_node(tx, 0, (uint64_t)size - 1, leaf));
		struct cf_val n[] = {CF_V_INT(size - 1), CF_V_BLOB(leaf, CF_HASH_LEN)};
		CF_TRY(cf_tx_exec(tx,
		                  "INSERT INTO audit_nodes (level, idx, hash) VALUES (0, $1, $2)"
		                  " ON CONFLICT (level, idx) DO NOTHING",
		                  n, 2, NULL));
	}
	struct cf_val b[] = {CF_V_INT(size), CF_V_INT(cf_now_us() / 1000000)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO audit_pruned (id, below, pruned_at) VALUES (1, $1, $2)"
	                  " ON CONFLICT (id) DO UPDATE SET below = excluded.below,"
	                  " pruned_at = excluded.pruned_at",
	                  b, 2, NULL));
	struct cf_val d[] = {CF_V_INT(size)};
	CF_TRY(cf_tx_exec(tx, "DELETE FROM audit_entries WHERE leaf_index < $1", d, 1, NULL));
	p->below = (uint64_t)size;
	return CF_OK;
}

cf_err cf_audit_prune(struct cf_store *st, int64_t before_us, uint64_t *pruned)
{
	struct prune_ctx p = {.before_us = before_us};
	CF_TRY(cf_store_write_wait(st, NULL, prune_fn, &p));
	*pruned = p.below;
	return CF_OK;
}

/* --- offline verification ----------------------------------------------------------------- */
struct tenant_seq {
	char tenant[CF_AUDIT_TEXT_MAX + 1];
	uint64_t last;
};

struct checkpoint {
	uint64_t size;
	uint8_t root[CF_HASH_LEN];
	char *note;
};

struct verify {
	struct cf_audit_report *rep;
	struct cf_merkle_frontier f;
	struct tenant_seq *seqs;
	size_t nseqs, capseqs;
	struct checkpoint *cps;
	size_t ncps, next_cp;
	const uint8_t *pub;
	uint64_t total, last_good_cp;
	void (*progress)(uint64_t, uint64_t);
	bool failed;
	bool have_trusted;
	uint64_t pruned; /* the retained log starts here */
	uint64_t trusted_size;
	uint8_t trusted_root[CF_HASH_LEN];
};

static void problem(struct verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct verify *v, const char *fmt, ...)
{
	if (v->failed)
		return;
	v->failed = true;
	v->rep->ok = false;
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(v->rep->problem, sizeof v->rep->problem, fmt, ap);
	va_end(ap);
}

static struct tenant_seq *seq_of(struct verify *v, struct cf_span tenant)
{
	for (size_t i = 0; i < v->nseqs; i++)
		if (strlen(v->seqs[i].tenant) == tenant.len &&
		    memcmp(v->seqs[i].tenant, tenant.ptr, tenant.len) == 0)
			return &v->seqs[i];
	if (v->nseqs == v->capseqs) {
		size_t cap = v->capseqs ? v->capseqs * 2 : 16;
		struct tenant_seq *n = realloc(v->seqs, cap * sizeof *n);
		if (!n)
			return NULL;
		v->seqs = n;
		v->capseqs = cap;
	}
	struct tenant_seq *t = &v->seqs[v->nseqs++];
	cf_span_to_str(tenant, t->tenant, sizeof t->tenant);
	t->last = 0;
	return t;
}

static cf_err cp_row(const struct cf_row *row, void *ctx)
{
	struct verify *v = ctx;
	struct checkpoint *n = realloc(v->cps, (v->ncps + 1) * sizeof *n);
	CF_ENSURE(n, CF_E_NOMEM);
	v->cps = n;
	struct checkpoint *c = &v->cps[v->ncps++];
	c->size = (uint64_t)cf_row_int(row, 0);
	struct cf_span r = cf_row_blob(row, 1), note = cf_row_blob(row, 2);
	memset(c->root, 0, CF_HASH_LEN);
	if (r.len == CF_HASH_LEN)
		memcpy(c->root, r.ptr, CF_HASH_LEN);
	c->note = strndup((const char *)note.ptr, note.len);
	CF_ENSURE(c->note, CF_E_NOMEM);
	return CF_OK;
}

/* At each checkpoint's size the rebuilt root must be the signed one. */
static void check_checkpoints(struct verify *v)
{
	while (!v->failed && v->next_cp < v->ncps && v->cps[v->next_cp].size == v->f.size) {
		struct checkpoint *c = &v->cps[v->next_cp++];
		uint8_t root[CF_HASH_LEN], nroot[CF_HASH_LEN];
		char origin[96];
		uint64_t nsize = 0;
		if (cf_merkle_root(&v->f, root) != CF_OK) {
			problem(v, "internal error hashing");
			return;
		}
		if (cf_checkpoint_open(c->note, v->pub, origin, sizeof origin, &nsize, nroot) !=
		    CF_OK) {
			problem(v, "checkpoint at size %" PRIu64 ": %s", c->size, cf_err_detail());
			return;
		}
		if (nsize != c->size || memcmp(nroot, c->root, CF_HASH_LEN) != 0) {
			problem(v,
			        "checkpoint at size %" PRIu64
			        ": its row does not match its signed note",
			        c->size);
			return;
		}
		if (memcmp(root, c->root, CF_HASH_LEN) != 0) {
			problem(v,
			        "the entries from index %" PRIu64 " to %" PRIu64
			        " do not hash to the root signed at size %" PRIu64
			        " (an entry was edited, removed, added or moved)",
			        v->last_good_cp, c->size - 1, c->size);
			return;
		}
		v->last_good_cp = c->size;
		v->rep->checkpoints++;
	}
}

static cf_err verify_row(const struct cf_row *row, void *ctx)
{
	struct verify *v = ctx;
	if (v->failed)
		return CF_OK;
	int64_t idx = cf_row_int(row, 0);
	struct cf_span body = cf_row_blob(row, 1), tenant = cf_row_blob(row, 2),
	               stored_leaf = cf_row_blob(row, 4);
	int64_t seq = cf_row_int(row, 3);
	if ((uint64_t)idx != v->f.size) {
		problem(v,
		        "the entry at index %" PRIu64 " is missing (the next one is %" PRId64 ")",
		        v->f.size, idx);
		return CF_OK;
	}
	struct cf_audit_entry e;
	if (cf_audit_decode(body, &e) != CF_OK) {
		problem(v, "entry %" PRId64 " is damaged: %s", idx, cf_err_detail());
		return CF_OK;
	}
	if (!cf_span_eq(e.tenant, tenant) || e.seq != (uint64_t)seq) {
		problem(v, "entry %" PRId64 ": its row's tenant or sequence number was edited",
		        idx);
		return CF_OK;
	}
	struct tenant_seq *ts = seq_of(v, e.tenant);
	CF_ENSURE(ts, CF_E_NOMEM);
	if (v->pruned && ts->last == 0) /* its earlier entries went with retention */
		ts->last = e.seq - 1;
	if (e.seq != ts->last + 1) {
		problem(v,
		        "entry %" PRId64 ": tenant '%s' goes from sequence %" PRIu64 " to %" PRIu64
		        " (an entry is missing or moved)",
		        idx, ts->tenant[0] ? ts->tenant : "(deployment)", ts->last, e.seq);
		return CF_OK;
	}
	ts->last = e.seq;
	uint8_t leaf[CF_HASH_LEN];
	CF_TRY(cf_merkle_leaf(body, leaf));
	if (stored_leaf.len != CF_HASH_LEN || memcmp(stored_leaf.ptr, leaf, CF_HASH_LEN) != 0) {
		problem(v,
		        "entry %" PRId64 " does not match the tree's leaf for it (it was edited)",
		        idx);
		return CF_OK;
	}
	CF_TRY(cf_merkle_append(&v->f, leaf, NULL, NULL));
	v->rep->sequenced++;
	check_checkpoints(v);
	if (v->have_trusted && v->f.size == v->trusted_size) {
		uint8_t root[CF_HASH_LEN];
		CF_TRY(cf_merkle_root(&v->f, root));
		if (memcmp(root, v->trusted_root, CF_HASH_LEN) != 0)
			problem(v,
			        "the log does not extend the trusted checkpoint of size %" PRIu64
			        ": its first %" PRIu64 " entries were rewritten since",
			        v->trusted_size, v->trusted_size);
	}
	if (v->progress && (v->f.size & 0xFFFF) == 0)
		v->progress(v->f.size, v->total);
	return CF_OK;
}

/* After retention the tree starts from stored subtrees, anchored by the checkpoint
 * signed at the pruning point; older checkpoints keep their signatures checked. */
static cf_err start_fn(struct cf_tx *tx, void *ctx)
{
	struct verify *v = ctx;
	CF_TRY(pruned_below(tx, &v->pruned));
	if (!v->pruned)
		return CF_OK;
	if (cf_merkle_frontier_load(&v->f, v->pruned, cf_audit_tx_get_node, tx) != CF_OK) {
		problem(v, "the subtrees kept at the retention point %" PRIu64 " are missing: %s",
		        v->pruned, cf_err_detail());
		return CF_OK;
	}
	while (v->next_cp < v->ncps && v->cps[v->next_cp].size < v->pruned) {
		struct checkpoint *c = &v->cps[v->next_cp++];
		char origin[96];
		uint64_t n = 0;
		uint8_t root[CF_HASH_LEN];
		if (cf_checkpoint_open(c->note, v->pub, origin, sizeof origin, &n, root) != CF_OK ||
		    n != c->size || memcmp(root, c->root, CF_HASH_LEN) != 0) {
			problem(v, "checkpoint at size %" PRIu64 ": its signed note does not hold",
			        c->size);
			return CF_OK;
		}
		v->rep->checkpoints++;
	}
	if (v->next_cp == v->ncps || v->cps[v->next_cp].size != v->pruned) {
		problem(v, "the log was pruned at %" PRIu64 " without a checkpoint there",
		        v->pruned);
		return CF_OK;
	}
	v->last_good_cp = v->pruned;
	check_checkpoints(v); /* the kept subtrees must give the root signed there */
	if (v->have_trusted && v->trusted_size == v->pruned) {
		uint8_t root[CF_HASH_LEN];
		CF_TRY(cf_merkle_root(&v->f, root));
		if (memcmp(root, v->trusted_root, CF_HASH_LEN) != 0)
			problem(v,
			        "the log does not extend the trusted checkpoint of size %" PRIu64,
			        v->trusted_size);
	}
	if (v->have_trusted && v->trusted_size < v->pruned)
		problem(v,
		        "the trusted checkpoint (size %" PRIu64 ") is older than the retained log, "
		        "which starts at %" PRIu64 ": keep a newer one",
		        v->trusted_size, v->pruned);
	return CF_OK;
}

static cf_err count_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT count(*) FROM audit_entries", NULL, 0, int_row, ctx);
}

static cf_err cps_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT size, root, note FROM audit_checkpoints ORDER BY size", NULL,
	                   0, cp_row, ctx);
}

static cf_err entries_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx,
	                   "SELECT leaf_index, body, tenant_id, seq, leaf_hash FROM audit_entries"
	                   " WHERE leaf_index IS NOT NULL ORDER BY leaf_index",
	                   NULL, 0, verify_row, ctx);
}

cf_err cf_audit_verify(struct cf_store *st, const uint8_t pub[CF_ED25519_PUB], const char *trusted,
                       void (*progress)(uint64_t done, uint64_t total), struct cf_audit_report *rep)
{
	*rep = (struct cf_audit_report){.ok = true};
	struct verify v = {.rep = rep, .pub = pub, .progress = progress};
	cf_merkle_frontier_init(&v.f);
	if (trusted) {
		char origin[96], why[256];
		if (cf_checkpoint_open(trusted, pub, origin, sizeof origin, &v.trusted_size,
		                       v.trusted_root) != CF_OK) {
			(void)snprintf(why, sizeof why, "%s", cf_err_detail());
			return cf_err_fail(CF_E_INVALID, "the trusted checkpoint: %s", why);
		}
		v.have_trusted = true;
	}
	int64_t total = 0;
	cf_err err = cf_store_read(st, NULL, count_fn, &total);
	v.total = total > 0 ? (uint64_t)total : 0;
	rep->entries = v.total;
	if (err == CF_OK)
		err = cf_store_read(st, NULL, cps_fn, &v);
	if (err == CF_OK)
		err = cf_store_read(st, NULL, start_fn, &v);
	if (err == CF_OK && !v.failed)
		err = cf_store_read(st, NULL, entries_fn, &v);
	if (err == CF_OK && !v.failed && v.next_cp < v.ncps)
		problem(&v,
		        "a checkpoint signs size %" PRIu64 " but the log has only %" PRIu64
		        " sequenced entries (entries were removed)",
		        v.cps[v.next_cp].size, v.f.size);
	if (err == CF_OK && !v.failed && v.have_trusted && v.trusted_size > v.f.size)
		problem(&v,
		        "the trusted checkpoint has %" PRIu64 " entries; the log has only %" PRIu64
		        " (it was truncated)",
		        v.trusted_size, v.f.size);
	for (size_t i = 0; i < v.ncps; i++)
		free(v.cps[i].note);
	free(v.cps);
	free(v.seqs);
	rep->tenants = v.nseqs;
	rep->pruned = v.pruned;
	return err;
}
