/* coffre — operators and break-glass (IA11, DESIGN §1).
 *
 * Operators are the users of a realm of their own (CF_OPS_REALM): everything users.c and
 * mfa.c do for a tenant's users (setup links, Argon2id passwords, sessions, TOTP,
 * throttling) serves them unchanged, under the realm's own keys. What is theirs alone:
 * MFA is required of every one (the realm's policy, set when the first is made), they
 * hold no permission on any tenant's data, and they reach it only through a break-glass
 * grant: asked with a reason, approved by another operator (the database refuses the
 * same one) or the tenant's owner, read-only unless asked otherwise, expiring. Every
 * grant's life is in the tenant's audit log, where its admins see it. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/internal.h"

#define BG_MINUTES_DEFAULT 60
#define BG_MINUTES_MAX     480
#define BG_REASON_MAX      500

void cf_auth_ops_ref(struct cf_tenant_ref *out)
{
	*out = (struct cf_tenant_ref){.active = true};
	(void)snprintf(out->id, sizeof out->id, "%s", CF_OPS_REALM);
	(void)snprintf(out->name, sizeof out->name, "%s", CF_OPS_REALM);
}

/* --- operators ------------------------------------------------------------------------ */
static cf_err count_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

struct realm_tx {
	bool first;
	int64_t operators;
};

static cf_err realm_fn(struct cf_tx *tx, void *ctx)
{
	struct realm_tx *r = ctx;
	struct cf_val v[] = {CF_V_TEXT(CF_OPS_REALM)};
	CF_TRY(cf_tx_query(tx, "SELECT count(*) FROM users WHERE tenant_id = $1", v, 1, count_row,
	                   &r->operators));
	if (!r->first)
		return CF_OK;
	CF_ENSURE(r->operators == 0,
	          cf_err_fail(CF_E_CONFLICT, "the first operator exists; operators add the others "
	                                     "(POST /v1/operator/operators)"));
	/* IA6, IA11: every operator uses two factors; nothing changes this policy (no path
	 * names the realm). */
	CF_TRY(cf_tx_exec(tx, "DELETE FROM tenant_policy WHERE tenant_id = $1", v, 1, NULL));
	return cf_tx_exec(tx,
	                  "INSERT INTO tenant_policy (tenant_id, mfa_required, mfa_roles,"
	                  " password_min) VALUES ($1, 1, '', 12)",
	                  v, 1, NULL);
}

cf_err cf_auth_operator_create(struct cf_auth *a, const struct cf_auth_call *c, const char *email,
                               bool first, json_t **out, char link[64])
{
	struct cf_tenant_ref ops;
	cf_auth_ops_ref(&ops);
	if (first) {
		/* The realm's keys: made once (a first attempt that failed later kept them). */
		cf_err e = cf_keys_tenant_create(a->keys, CF_OPS_REALM, 0);
		CF_ENSURE(e == CF_OK || e == CF_E_CONFLICT, e);
		cf_err_detail_clear();
	}
	struct realm_tx r = {.first = first};
	CF_TRY(cf_store_write_wait(a->store, CF_OPS_REALM, realm_fn, &r));
	CF_ENSURE(first || r.operators > 0,
	          cf_err_fail(CF_E_NOT_FOUND, "no operator exists yet: `coffre operator "
	                                      "create-first` makes the first"));
	return cf_auth_user_create(a, c, &ops, email, NULL, out, link);
}

cf_err cf_auth_operator_list(struct cf_auth *a, json_t **out)
{
	struct cf_tenant_ref ops;
	cf_auth_ops_ref(&ops);
	json_t *review = NULL;
	CF_TRY(cf_auth_access_review(a, &ops, 90, &review));
	json_t *list = json_object_get(review, "users");
	for (size_t i = 0; i < json_array_size(list); i++)
		json_object_del(json_array_get(list, i), "roles");
	*out = json_pack("{s:O}", "operators", list);
	json_decref(review);
	return *out ? CF_OK : CF_E_NOMEM;
}

cf_err cf_auth_operator_disable(struct cf_auth *a, const struct cf_auth_call *c, const char *id)
{
	CF_ENSURE(c->who && strcmp(c->who->id, id) != 0,
	          cf_err_fail(CF_E_FORBIDDEN, "an operator cannot disable themselves"));
	struct cf_tenant_ref ops;
	cf_auth_ops_ref(&ops);
	json_t *o = NULL;
	CF_TRY(cf_auth_user_update(a, c, &ops, id, NULL, "disabled", &o));
	json_decref(o);
	return CF_OK;
}

/* --- break-glass grants --------------------------------------------------------------- */
#define BG_COLUMNS                                                                                 \
	"g.grant_id, t.name, g.operator_id, g.reason, g.access, g.minutes, g.requested_at,"        \
	" g.approved_by, g.approver_kind, g.approved_at, g.expires_at, g.ended_at, g.tenant_id"

static json_t *int_or_null(const struct cf_row *row, unsigned col)
{
	return cf_row_is_null(row, col) ? json_null() : json_integer(cf_row_int(row, col));
}

static json_t *text_or_null(const struct cf_row *row, unsigned col)
{
	struct cf_span s = cf_row_blob(row, col);
	return cf_row_is_null(row, col) ? json_null() : json_stringn((const char *)s.ptr, s.len);
}

static cf_err bg_row(const struct cf_row *row, void *ctx)
{
	int64_t now = (int64_t)time(NULL);
	const char *state = !cf_row_is_null(row, 11)                                ? "ended"
	                    : cf_row_is_null(row, 9)                                ? "pending"
	                    : !cf_row_is_null(row, 10) && cf_row_int(row, 10) > now ? "active"
	                                                                            : "expired";
	json_t *o = json_object();
	CF_ENSURE(o, CF_E_NOMEM);
	static const char *const keys[] = {"id",     "tenant",  "operator",    "reason",
	                                   "access", "minutes", "requested_at"};
	static const bool ints[] = {false, false, false, false, false, true, true};
	bool ok = true;
	for (unsigned i = 0; i < 7; i++)
		ok = ok &&
		     json_object_set_new(o, keys[i],
		                         ints[i] ? int_or_null(row, i) : text_or_null(row, i)) == 0;
	ok = ok && json_object_set_new(o, "approved_by", text_or_null(row, 7)) == 0 &&
	     json_object_set_new(o, "approver_kind", text_or_null(row, 8)) == 0 &&
	     json_object_set_new(o, "approved_at", int_or_null(row, 9)) == 0 &&
	     json_object_set_new(o, "expires_at", int_or_null(row, 10)) == 0 &&
	     json_object_set_new(o, "ended_at", int_or_null(row, 11)) == 0 &&
	     json_object_set_new(o, "state", json_string(state)) == 0 &&
	     json_object_set_new(o, "tenant_id", text_or_null(row, 12)) == 0 &&
	     json_array_append_new(ctx, o) == 0;
	if (!ok) {
		json_decref(o);
		return CF_E_NOMEM;
	}
	return CF_OK;
}

struct bg_q {
	const char *tenant; /* a tenant's id, or NULL: every tenant */
	const char *id;     /* one grant, or NULL */
	json_t *arr;
};

static cf_err bg_list_fn(struct cf_tx *tx, void *ctx)
{
	struct bg_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant ? q->tenant : ""), CF_V_TEXT(q->id ? q->id : "")};
	return cf_tx_query(tx,
	                   "SELECT " BG_COLUMNS " FROM break_glass g JOIN tenants t"
	                   " ON t.tenant_id = g.tenant_id"
	                   " WHERE ($1 = '' OR g.tenant_id = $1) AND ($2 = '' OR g.grant_id = $2)"
	                   " ORDER BY g.requested_at DESC, g.grant_id LIMIT 1000",
	                   v, 2, bg_row, q->arr);
}

static cf_err bg_read(struct cf_auth *a, const char *tenant, const char *id, json_t **out)
{
	struct bg_q q = {.tenant = tenant, .id = id, .arr = json_array()};
	CF_ENSURE(q.arr, CF_E_NOMEM);
	cf_err err = cf_store_read(a->store, tenant, bg_list_fn, &q);
	if (err == CF_OK && id && json_array_size(q.arr) == 0)
		err = cf_err_fail(CF_E_NOT_FOUND, "no such break-glass grant");
	if (err) {
		json_decref(q.arr);
		return err;
	}
	*out = q.arr;
	return CF_OK;
}

cf_err cf_auth_bg_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out)
{
	json_t *arr = NULL;
	CF_TRY(bg_read(a, t ? t->id : NULL, NULL, &arr));
	*out = json_pack("{s:o}", "grants", arr);
	return *out ? CF_OK : CF_E_NOMEM;
}

/* One grant as a JSON object, found by id (and tenant, when the caller is one's), and
 * the id of its tenant. */
static cf_err bg_one(struct cf_auth *a, const struct cf_tenant_ref *t, const char *id, json_t **out,
                     char tenant_id[CF_TENANT_ID_MAX + 1])
{
	CF_ENSURE(strlen(id) < 24, cf_err_fail(CF_E_NOT_FOUND, "no such break-glass grant"));
	json_t *arr = NULL;
	CF_TRY(bg_read(a, t ? t->id : NULL, id, &arr));
	*out = json_incref(json_array_get(arr, 0));
	json_decref(arr);
	(void)snprintf(tenant_id, CF_TENANT_ID_MAX + 1, "%s",
	               json_string_value(json_object_get(*out, "tenant_id")));
	return CF_OK;
}

struct bg_tx {
	const char *sql;
	struct cf_val v[8];
	unsigned nv;
	const char *refused; /* no row changed: why */
	struct cf_audit_prepared audit;
};

static cf_err bg_write(struct cf_tx *tx, void *ctx)
{
	struct bg_tx *b = ctx;
	int64_t n = 0;
	cf_err e = cf_tx_exec(tx, b->sql, b->v, b->nv, &n);
	/* IA11: the database's own check refuses an approval by the operator who asked. */
	CF_ENSURE(e != CF_E_CONFLICT || !b->refused,
	          cf_err_fail(CF_E_FORBIDDEN, "another operator (or the tenant's owner) must "
	                                      "approve a break-glass grant"));
	CF_TRY(e);
	CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT, "%s",
	                              b->refused ? b->refused : "the grant has changed"));
	return cf_audit_append(tx, &b->audit);
}

cf_err cf_auth_bg_request(struct cf_auth *a, const struct cf_auth_call *c,
                          const struct cf_bg_request *in, json_t **out)
{
	CF_ENSURE(c->who && c->who->kind == CF_PRINCIPAL_OPERATOR, CF_E_FORBIDDEN);
	size_t rl = in->reason ? strlen(in->reason) : 0;
	CF_ENSURE(rl >= 3 && rl <= BG_REASON_MAX,
	          cf_err_at(CF_E_OUT_OF_RANGE, "reason", rl < 3 ? "min" : "max",
	                    "reason must say why, in 3 to %d bytes", BG_REASON_MAX));
	unsigned minutes = in->minutes ? in->minutes : BG_MINUTES_DEFAULT;
	CF_ENSURE(minutes <= BG_MINUTES_MAX, cf_err_at(CF_E_OUT_OF_RANGE, "minutes", "range",
	                                               "minutes is 1 to %d", BG_MINUTES_MAX));
	struct cf_tenant_ref t;
	CF_TRY(cf_auth_tenant(a, in->tenant, &t));
	char id[24] = "g";
	CF_TRY(cf_random_hex(id + 1, 17, 8));
	int64_t now = (int64_t)time(NULL);
	struct bg_tx b = {
	        .sql = "INSERT INTO break_glass (grant_id, tenant_id, operator_id, reason, access,"
	               " minutes, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	        .v = {CF_V_TEXT(id), CF_V_TEXT(t.id), CF_V_TEXT(c->who->id), CF_V_TEXT(in->reason),
	              CF_V_TEXT(in->write ? "write" : "read"), CF_V_INT(minutes), CF_V_INT(now)},
	        .nv = 7,
	};
	/* In the tenant's own log: its admins see who asked, and the grant to look up. */
	CF_TRY(cf_auth_audit_prepare(a, c, t.id, "break_glass.request", id, CF_OUTCOME_OK, CF_OK,
	                             &b.audit));
	CF_TRY(cf_store_write_wait(a->store, t.id, bg_write, &b));
	char tid[CF_TENANT_ID_MAX + 1];
	return bg_one(a, &t, id, out, tid);
}

cf_err cf_auth_bg_approve(struct cf_auth *a, const struct cf_auth_call *c,
                          const struct cf_tenant_ref *t, const char *id, json_t **out)
{
	json_t *g = NULL;
	char tid[CF_TENANT_ID_MAX + 1];
	CF_TRY(bg_one(a, t, id, &g, tid));
	int64_t minutes = json_integer_value(json_object_get(g, "minutes"));
	json_decref(g);
	int64_t now = (int64_t)time(NULL);
	bool owner = t != NULL;
	struct bg_tx b = {
	        .sql = "UPDATE break_glass SET approved_by = $1, approver_kind = $2,"
	               " approved_at = $3, expires_at = $4 WHERE grant_id = $5 AND tenant_id = $6"
	               " AND approved_at IS NULL AND ended_at IS NULL",
	        .v = {CF_V_TEXT(c->who->id), CF_V_TEXT(owner ? "owner" : "operator"), CF_V_INT(now),
	              CF_V_INT(now + minutes * 60), CF_V_TEXT(id), CF_V_TEXT(tid)},
	        .nv = 6,
	        .refused = "the grant is not pending (already approved, or ended)",
	};
	CF_TRY(cf_auth_audit_prepare(a, c, tid, "break_glass.approve", id, CF_OUTCOME_OK, CF_OK,
	                             &b.audit));
	CF_TRY(cf_store_write_wait(a->store, tid, bg_write, &b));
	return bg_one(a, t, id, out, tid);
}

cf_err cf_auth_bg_end(struct cf_auth *a, const struct cf_auth_call *c,
                      const struct cf_tenant_ref *t, const char *id)
{
	json_t *g = NULL;
	char tid[CF_TENANT_ID_MAX + 1];
	CF_TRY(bg_one(a, t, id, &g, tid));
	json_decref(g);
	struct bg_tx b = {
	        .sql = "UPDATE break_glass SET ended_at = $1, ended_by = $2 WHERE grant_id = $3"
	               " AND tenant_id = $4 AND ended_at IS NULL",
	        .v = {CF_V_INT((int64_t)time(NULL)), CF_V_TEXT(c->who->id), CF_V_TEXT(id),
	              CF_V_TEXT(tid)},
	        .nv = 4,
	};
	CF_TRY(cf_auth_audit_prepare(a, c, tid, "break_glass.end", id, CF_OUTCOME_OK, CF_OK,
	                             &b.audit));
	cf_err e = cf_store_write_wait(a->store, tid, bg_write, &b);
	/* Ending what has ended already is not an error. */
	return e == CF_E_CONFLICT ? CF_OK : e;
}

struct enter_q {
	const char *tenant, *op;
	int64_t now;
	char grant[24], access[8];
};

static cf_err enter_row(const struct cf_row *row, void *ctx)
{
	struct enter_q *q = ctx;
	/* A write grant, when there is one, serves reads too: the first row is the best. */
	if (!q->grant[0]) {
		cf_span_to_str(cf_row_blob(row, 0), q->grant, sizeof q->grant);
		cf_span_to_str(cf_row_blob(row, 1), q->access, sizeof q->access);
	}
	return CF_OK;
}

static cf_err enter_fn(struct cf_tx *tx, void *ctx)
{
	struct enter_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->op), CF_V_INT(q->now)};
	return cf_tx_query(tx,
	                   "SELECT grant_id, access FROM break_glass WHERE tenant_id = $1"
	                   " AND operator_id = $2 AND approved_at IS NOT NULL AND ended_at IS NULL"
	                   " AND expires_at > $3 ORDER BY access DESC, expires_at DESC",
	                   v, 3, enter_row, q);
}

cf_err cf_auth_bg_enter(struct cf_auth *a, struct cf_principal *p, const char *tenant, bool write)
{
	CF_ENSURE(p->kind == CF_PRINCIPAL_OPERATOR && !p->grant[0], CF_E_FORBIDDEN);
	struct cf_tenant_ref t;
	CF_TRY(cf_auth_tenant(a, tenant, &t));
	struct enter_q q = {.tenant = t.id, .op = p->id, .now = (int64_t)time(NULL)};
	CF_TRY(cf_store_read(a->store, t.id, enter_fn, &q));
	CF_ENSURE(q.grant[0],
	          cf_err_fail(CF_E_FORBIDDEN, "an operator reaches a tenant's data only through an "
	                                      "approved break-glass grant (POST "
	                                      "/v1/operator/break-glass)"));
	bool rw = strcmp(q.access, "write") == 0;
	CF_ENSURE(!write || rw,
	          cf_err_fail(CF_E_FORBIDDEN, "the break-glass grant %s is read-only", q.grant));
	/* AL5: every entry of this request names the grant as the privilege used. */
	p->tenant = t;
	cf_perms admin = 0;
	(void)cf_role_builtin("admin", &admin);
	p->perms = admin;
	(void)snprintf(p->grant, sizeof p->grant, "%s", q.grant);
	(void)snprintf(p->roles, sizeof p->roles, "break_glass:%s:%s", q.grant, q.access);
	return CF_OK;
}
