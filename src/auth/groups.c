/* coffre — groups of a tenant's users (IA1): roles granted to a group reach each of its
 * members, read on every request like direct grants. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/internal.h"

#define GROUP_MEMBERS_MAX 1000

/* A new group's name is a field of the body; a name in a path that cannot be a group's
 * names none. */
static cf_err name_check(const char *name, bool create)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n >= 1 && n <= 63;
	for (size_t i = 0; ok && i < n; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		     name[i] == '_' || name[i] == '-';
	if (ok)
		return CF_OK;
	return create ? cf_err_at(CF_E_INVALID_VALUE, "name", "name",
	                          "a group name is 1 to 63 of a-z, 0-9, '_', '-'")
	              : cf_err_fail(CF_E_NOT_FOUND, "no such group");
}

/* The roles a user holds through groups: appended to perms and names. */
struct via_q {
	struct cf_tx *tx;
	cf_perms *perms;
	char *names;
	size_t cap;
};

static cf_err via_row(const struct cf_row *row, void *ctx)
{
	struct via_q *q = ctx;
	char role[64];
	cf_span_to_str(cf_row_blob(row, 0), role, sizeof role);
	size_t len = strlen(q->names), n = strlen(role);
	if (len + n + 2 <= q->cap) {
		/* Named once, even when held directly too. */
		char probe[70];
		(void)snprintf(probe, sizeof probe, ",%s,", role);
		char held[256];
		(void)snprintf(held, sizeof held, ",%s,", q->names);
		if (!strstr(held, probe))
			(void)snprintf(q->names + len, q->cap - len, "%s%s", len ? "," : "", role);
	}
	cf_perms p = 0;
	if (auth_role_perms(q->tx, role, &p) == CF_OK)
		*q->perms |= p;
	cf_err_detail_clear();
	return CF_OK;
}

cf_err auth_group_grants_load(struct cf_tx *tx, const char *user, cf_perms *perms, char *names,
                              size_t cap)
{
	struct via_q q = {tx, perms, names, cap};
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx)), CF_V_TEXT(user)};
	return cf_tx_query(tx,
	                   "SELECT DISTINCT r.role FROM group_members m JOIN group_roles r"
	                   " ON r.tenant_id = m.tenant_id AND r.group_name = m.group_name"
	                   " WHERE m.tenant_id = $1 AND m.user_id = $2 ORDER BY r.role",
	                   v, 2, via_row, &q);
}

/* --- listing ------------------------------------------------------------------------------ */
static cf_err group_row(const struct cf_row *row, void *ctx)
{
	struct cf_span name = cf_row_blob(row, 0);
	json_t *o = json_pack("{s:s%, s:[], s:[], s:I}", "name", name.ptr, name.len, "roles",
	                      "members", "created_at", (json_int_t)cf_row_int(row, 1));
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(ctx, o) == 0 ? CF_OK : CF_E_NOMEM;
}

/* Rows (group, value) appended to each group's array `key`. */
struct fill_q {
	json_t *groups;
	const char *key;
};

static cf_err fill_row(const struct cf_row *row, void *ctx)
{
	struct fill_q *q = ctx;
	struct cf_span g = cf_row_blob(row, 0), v = cf_row_blob(row, 1);
	for (size_t i = 0; i < json_array_size(q->groups); i++) {
		json_t *o = json_array_get(q->groups, i);
		const char *name = json_string_value(json_object_get(o, "name"));
		if (name && cf_span_eq(g, cf_span_str(name)))
			return json_array_append_new(json_object_get(o, q->key),
			                             json_stringn((const char *)v.ptr, v.len)) == 0
			               ? CF_OK
			               : CF_E_NOMEM;
	}
	return CF_OK;
}

static cf_err list_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT name, created_at FROM user_groups WHERE tenant_id = $1"
	                   " ORDER BY name",
	                   v, 1, group_row, ctx));
	struct fill_q roles = {ctx, "roles"}, members = {ctx, "members"};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT group_name, role FROM group_roles WHERE tenant_id = $1"
	                   " ORDER BY role",
	                   v, 1, fill_row, &roles));
	return cf_tx_query(tx,
	                   "SELECT group_name, user_id FROM group_members WHERE tenant_id = $1"
	                   " ORDER BY user_id",
	                   v, 1, fill_row, &members);
}

cf_err cf_auth_group_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out)
{
	return auth_read_array(a, t->id, list_fn, out);
}

/* --- changes ---------------------------------------------------------------------------------- */
struct group_tx {
	const char *tenant, *name;
	const json_t *roles, *add, *remove;
	cf_perms limit;
	bool create;
	struct cf_audit_prepared audit;
};

static cf_err set_roles(struct cf_tx *tx, struct group_tx *g)
{
	CF_TRY(auth_roles_check(tx, g->roles, g->limit));
	struct cf_val k[] = {CF_V_TEXT(g->tenant), CF_V_TEXT(g->name)};
	CF_TRY(cf_tx_exec(tx, "DELETE FROM group_roles WHERE tenant_id = $1 AND group_name = $2", k,
	                  2, NULL));
	for (size_t i = 0; i < json_array_size(g->roles); i++) {
		struct cf_val v[] = {CF_V_TEXT(g->tenant), CF_V_TEXT(g->name),
		                     CF_V_TEXT(json_string_value(json_array_get(g->roles, i)))};
		cf_err e = cf_tx_exec(tx,
		                      "INSERT INTO group_roles (tenant_id, group_name, role)"
		                      " VALUES ($1, $2, $3)",
		                      v, 3, NULL);
		CF_ENSURE(e != CF_E_CONFLICT, cf_err_at(CF_E_INVALID_VALUE, "roles", "unique",
		                                        "a role is named twice"));
		CF_TRY(e);
	}
	return CF_OK;
}

static cf_err user_exists_row(const struct cf_row *row, void *ctx)
{
	(void)row;
	*(bool *)ctx = true;
	return CF_OK;
}

static cf_err members(struct cf_tx *tx, struct group_tx *g, const json_t *list, bool add)
{
	CF_ENSURE(!list || (json_is_array(list) && json_array_size(list) <= GROUP_MEMBERS_MAX),
	          cf_err_at(CF_E_WRONG_TYPE, add ? "add" : "remove", "array",
	                    "add and remove are arrays of user ids"));
	for (size_t i = 0; list && i < json_array_size(list); i++) {
		const char *u = json_string_value(json_array_get(list, i));
		char at[40];
		(void)snprintf(at, sizeof at, "%s[%zu]", add ? "add" : "remove", i);
		CF_ENSURE(u && strlen(u) <= CF_AUTH_ID_MAX,
		          cf_err_at(CF_E_WRONG_TYPE, at, "string", "%s must be a user id", at));
		struct cf_val v[] = {CF_V_TEXT(g->tenant), CF_V_TEXT(g->name), CF_V_TEXT(u)};
		if (!add) {
			CF_TRY(cf_tx_exec(tx,
			                  "DELETE FROM group_members WHERE tenant_id = $1"
			                  " AND group_name = $2 AND user_id = $3",
			                  v, 3, NULL));
			continue;
		}
		bool exists = false;
		struct cf_val w[] = {CF_V_TEXT(g->tenant), CF_V_TEXT(u)};
		CF_TRY(cf_tx_query(tx, "SELECT 1 FROM users WHERE tenant_id = $1 AND user_id = $2",
		                   w, 2, user_exists_row, &exists));
		char shown[CF_AUTH_ID_MAX + 1];
		cf_err_shown(u, shown, sizeof shown);
		CF_ENSURE(exists, cf_err_at(CF_E_INVALID_VALUE, at, "user",
		                            "no user '%s' in this tenant", shown));
		cf_err e = cf_tx_exec(tx,
		                      "INSERT INTO group_members (tenant_id, group_name, user_id)"
		                      " VALUES ($1, $2, $3)",
		                      v, 3, NULL);
		CF_ENSURE(e == CF_OK || e == CF_E_CONFLICT, e); /* already a member: fine */
	}
	return CF_OK;
}

static cf_err change_fn(struct cf_tx *tx, void *ctx)
{
	struct group_tx *g = ctx;
	struct cf_val k[] = {CF_V_TEXT(g->tenant), CF_V_TEXT(g->name),
	                     CF_V_INT((int64_t)time(NULL))};
	int64_t n = 0, owners = 0;
	CF_TRY(auth_active_owners(tx, &owners));
	if (g->create) {
		cf_err e = cf_tx_exec(tx,
		                      "INSERT INTO user_groups (tenant_id, name, created_at)"
		                      " VALUES ($1, $2, $3)",
		                      k, 3, NULL);
		CF_ENSURE(e != CF_E_CONFLICT,
		          cf_err_fail(CF_E_CONFLICT, "a group named '%s' exists", g->name));
		CF_TRY(e);
	} else {
		CF_TRY(cf_tx_exec(
		        tx, "UPDATE user_groups SET name = name WHERE tenant_id = $1 AND name = $2",
		        k, 2, &n));
		CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "no group named '%s'", g->name));
	}
	if (g->roles)
		CF_TRY(set_roles(tx, g));
	CF_TRY(members(tx, g, g->add, true));
	CF_TRY(members(tx, g, g->remove, false));
	CF_TRY(auth_owner_kept(tx, owners));
	CF_TRY(auth_authz_changed(tx));
	return cf_audit_append(tx, &g->audit);
}

static cf_err change(struct cf_auth *a, const struct cf_auth_call *c, const struct cf_tenant_ref *t,
                     struct group_tx *g, const char *action, json_t **out)
{
	CF_TRY(name_check(g->name, g->create));
	g->tenant = t->id;
	g->limit = auth_grant_limit(c);
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, action, g->name, CF_OUTCOME_OK, CF_OK,
	                             &g->audit));
	CF_TRY(cf_store_write_wait(a->store, t->id, change_fn, g));
	json_t *all = NULL;
	CF_TRY(cf_auth_group_list(a, t, &all));
	for (size_t i = 0; i < json_array_size(all); i++) {
		json_t *o = json_array_get(all, i);
		if (strcmp(json_string_value(json_object_get(o, "name")), g->name) == 0) {
			*out = json_incref(o);
			json_decref(all);
			return CF_OK;
		}
	}
	json_decref(all);
	return CF_E_INTERNAL;
}

cf_err cf_auth_group_create(struct cf_auth *a, const struct cf_auth_call *c,
                            const struct cf_tenant_ref *t, const char *name, const json_t *roles,
                            const json_t *add, json_t **out)
{
	struct group_tx g = {.name = name, .roles = roles, .add = add, .create = true};
	return change(a, c, t, &g, "group.create", out);
}

cf_err cf_auth_group_update(struct cf_auth *a, const struct cf_auth_call *c,
                            const struct cf_tenant_ref *t, const char *name, const json_t *roles,
                            const json_t *add, const json_t *remove, json_t **out)
{
	struct group_tx g = {.name = name, .roles = roles, .add = add, .remove = remove};
	return change(a, c, t, &g, "group.update", out);
}

static cf_err delete_fn(struct cf_tx *tx, void *ctx)
{
	struct group_tx *g = ctx;
	struct cf_val k[] = {CF_V_TEXT(g->tenant), CF_V_TEXT(g->name)};
	int64_t n = 0, owners = 0;
	CF_TRY(auth_active_owners(tx, &owners));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM user_groups WHERE tenant_id = $1 AND name = $2", k, 2,
	                  &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "no group named '%s'", g->name));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM group_members WHERE tenant_id = $1 AND group_name = $2",
	                  k, 2, NULL));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM group_roles WHERE tenant_id = $1 AND group_name = $2", k,
	                  2, NULL));
	CF_TRY(auth_owner_kept(tx, owners));
	CF_TRY(auth_authz_changed(tx));
	return cf_audit_append(tx, &g->audit);
}

cf_err cf_auth_group_delete(struct cf_auth *a, const struct cf_auth_call *c,
                            const struct cf_tenant_ref *t, const char *name)
{
	struct group_tx g = {.tenant = t->id, .name = name};
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "group.delete", name, CF_OUTCOME_OK, CF_OK,
	                             &g.audit));
	return cf_store_write_wait(a->store, t->id, delete_fn, &g);
}
