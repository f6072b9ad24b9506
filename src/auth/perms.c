/* coffre — permissions, the built-in roles and a tenant's own roles (IA1, IA2).
 * docs/access.md lists them. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/internal.h"

static const char *const perm_names[CF_P_COUNT] = {
        [CF_P_RECORDS_READ] = "records.read",
        [CF_P_RECORDS_WRITE] = "records.write",
        [CF_P_RECORDS_DELETE] = "records.delete",
        [CF_P_PII_REVEAL] = "pii.reveal",
        [CF_P_FILES_READ] = "files.read",
        [CF_P_FILES_WRITE] = "files.write",
        [CF_P_USERS_MANAGE] = "users.manage",
        [CF_P_CLIENTS_MANAGE] = "clients.manage",
        [CF_P_ROLES_MANAGE] = "roles.manage",
        [CF_P_KEYS_MANAGE] = "keys.manage",
        [CF_P_AUDIT_READ] = "audit.read",
        [CF_P_TENANT_MANAGE] = "tenant.manage",
        [CF_P_COLLECTIONS_MANAGE] = "collections.manage",
};

const char *cf_perm_name(enum cf_perm p)
{
	return (unsigned)p < CF_P_COUNT ? perm_names[p] : "?";
}

cf_err cf_perm_parse(const char *name, enum cf_perm *out)
{
	for (unsigned i = 0; i < CF_P_COUNT; i++)
		if (strcmp(name, perm_names[i]) == 0) {
			*out = (enum cf_perm)i;
			return CF_OK;
		}
	return cf_err_fail(CF_E_INVALID, "unknown permission '%s' (docs/access.md lists them)",
	                   name);
}

/* The seeds' vocabulary. The owner holds everything; an admin everything but the
 * tenant itself; an agent works on records and files (sees personal data masked); an
 * end user only reaches their own account. New users hold nothing until given a role. */
static const struct {
	const char *name;
	cf_perms perms;
} builtin[] = {
        {"owner", CF_PERMS_ALL},
        {"admin", CF_PERMS_ALL & ~CF_PERM(CF_P_TENANT_MANAGE)},
        {"agent", CF_PERM(CF_P_RECORDS_READ) | CF_PERM(CF_P_RECORDS_WRITE) |
                          CF_PERM(CF_P_FILES_READ) | CF_PERM(CF_P_FILES_WRITE)},
        {"end_user", 0},
};

bool cf_role_builtin(const char *name, cf_perms *out)
{
	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
		if (strcmp(name, builtin[i].name) == 0) {
			*out = builtin[i].perms;
			return true;
		}
	return false;
}

json_t *cf_perms_json(cf_perms p)
{
	json_t *a = json_array();
	for (unsigned i = 0; a && i < CF_P_COUNT; i++)
		if ((p & CF_PERM(i)) && json_array_append_new(a, json_string(perm_names[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* --- a tenant's own roles (IA1, IA2) ------------------------------------------------------ */
struct role_tx {
	const char *tenant, *name;
	cf_perms perms, limit;
	bool in_use;
	struct cf_audit_prepared audit;
};

static cf_err role_list_row(const struct cf_row *row, void *ctx)
{
	struct cf_span name = cf_row_blob(row, 0);
	json_t *o = json_pack("{s:s%, s:o, s:b, s:I}", "name", name.ptr, name.len, "permissions",
	                      cf_perms_json((cf_perms)cf_row_int(row, 1)), "builtin", 0,
	                      "created_at", (json_int_t)cf_row_int(row, 2));
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(ctx, o) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err role_list_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	return cf_tx_query(tx,
	                   "SELECT name, perms, created_at FROM roles WHERE tenant_id = $1"
	                   " ORDER BY name",
	                   v, 1, role_list_row, ctx);
}

cf_err cf_auth_role_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out)
{
	json_t *arr = json_array();
	CF_ENSURE(arr, CF_E_NOMEM);
	static const char *const names[] = {"owner", "admin", "agent", "end_user"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		cf_perms p = 0;
		(void)cf_role_builtin(names[i], &p);
		(void)json_array_append_new(arr, json_pack("{s:s, s:o, s:b}", "name", names[i],
		                                           "permissions", cf_perms_json(p),
		                                           "builtin", 1));
	}
	cf_err err = cf_store_read(a->store, t->id, role_list_fn, arr);
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = arr;
	return CF_OK;
}

static cf_err role_create_fn(struct cf_tx *tx, void *ctx)
{
	struct role_tx *r = ctx;
	struct cf_val v[] = {CF_V_TEXT(r->tenant), CF_V_TEXT(r->name), CF_V_INT(r->perms),
	                     CF_V_INT((int64_t)time(NULL))};
	cf_err e = cf_tx_exec(tx,
	                      "INSERT INTO roles (tenant_id, name, perms, created_at)"
	                      " VALUES ($1, $2, $3, $4)",
	                      v, 4, NULL);
	CF_ENSURE(e != CF_E_CONFLICT,
	          cf_err_fail(CF_E_CONFLICT, "a role named '%s' exists", r->name));
	CF_TRY(e);
	CF_TRY(auth_authz_changed(tx));
	return cf_audit_append(tx, &r->audit);
}

cf_err cf_auth_role_create(struct cf_auth *a, const struct cf_auth_call *c,
                           const struct cf_tenant_ref *t, const char *name, const json_t *perms,
                           json_t **out)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n >= 1 && n <= 63;
	for (size_t i = 0; ok && i < n; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		     name[i] == '_' || name[i] == '-';
	CF_ENSURE(ok, cf_err_at(CF_E_INVALID_VALUE, "name", "name",
	                        "a role name is 1 to 63 of a-z, 0-9, '_' and '-'"));
	cf_perms dummy;
	CF_ENSURE(!cf_role_builtin(name, &dummy),
	          cf_err_fail(CF_E_CONFLICT, "'%s' is a built-in role", name));
	CF_ENSURE(json_is_array(perms) && json_array_size(perms) <= CF_P_COUNT,
	          cf_err_at(CF_E_WRONG_TYPE, "permissions", "array",
	                    "permissions must be an array of permission names"));
	struct role_tx r = {.tenant = t->id, .name = name, .limit = auth_grant_limit(c)};
	for (size_t i = 0; i < json_array_size(perms); i++) {
		const json_t *p = json_array_get(perms, i);
		enum cf_perm e;
		char at[40], shown[48];
		(void)snprintf(at, sizeof at, "permissions[%zu]", i);
		CF_ENSURE(json_is_string(p),
		          cf_err_at(CF_E_WRONG_TYPE, at, "string", "%s must be a name", at));
		cf_err_shown(json_string_value(p), shown, sizeof shown);
		CF_ENSURE(cf_perm_parse(json_string_value(p), &e) == CF_OK,
		          cf_err_at(CF_E_INVALID_VALUE, at, "permission",
		                    "unknown permission '%s' (docs/access.md lists them)", shown));
		r.perms |= CF_PERM(e);
	}
	/* IA2: nobody defines a role with more than they hold. */
	CF_ENSURE((r.perms & ~r.limit) == 0,
	          cf_err_fail(CF_E_FORBIDDEN, "the role grants permissions you do not hold"));
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "role.create", name, CF_OUTCOME_OK, CF_OK,
	                             &r.audit));
	CF_TRY(cf_store_write_wait(a->store, t->id, role_create_fn, &r));
	*out = json_pack("{s:s, s:o, s:b}", "name", name, "permissions", cf_perms_json(r.perms),
	                 "builtin", 0);
	return *out ? CF_OK : CF_E_NOMEM;
}

static cf_err role_used_row(const struct cf_row *row, void *ctx)
{
	struct role_tx *r = ctx;
	r->in_use = cf_row_int(row, 0) > 0;
	return CF_OK;
}

static cf_err role_delete_fn(struct cf_tx *tx, void *ctx)
{
	struct role_tx *r = ctx;
	struct cf_val v[] = {CF_V_TEXT(r->tenant), CF_V_TEXT(r->name)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT (SELECT count(*) FROM grants WHERE tenant_id = $1 AND role = $2)"
	                   " + (SELECT count(*) FROM group_roles WHERE tenant_id = $1"
	                   " AND role = $2)",
	                   v, 2, role_used_row, r));
	CF_ENSURE(!r->in_use, cf_err_fail(CF_E_CONFLICT, "the role is still granted; take it from "
	                                                 "its users, clients and groups first"));
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx, "DELETE FROM roles WHERE tenant_id = $1 AND name = $2", v, 2, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "no role named '%s'", r->name));
	CF_TRY(auth_authz_changed(tx));
	return cf_audit_append(tx, &r->audit);
}

cf_err cf_auth_role_delete(struct cf_auth *a, const struct cf_auth_call *c,
                           const struct cf_tenant_ref *t, const char *name)
{
	struct role_tx r = {.tenant = t->id, .name = name};
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "role.delete", name, CF_OUTCOME_OK, CF_OK,
	                             &r.audit));
	return cf_store_write_wait(a->store, t->id, role_delete_fn, &r);
}
