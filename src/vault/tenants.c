/* coffre — tenants: creation, suspension, deletion by crypto-shredding (PV4), and the
 * data store's binding to its keystore (ER7). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vault/vault.h"

/* --- ER7 ------------------------------------------------------------------------------ */
struct binding {
	bool have;
	char keystore_id[33], environment[16];
};

static cf_err binding_row(const struct cf_row *row, void *ctx)
{
	struct binding *b = ctx;
	if (cf_row_is_null(row, 0))
		return CF_OK;
	b->have = true;
	cf_span_to_str(cf_row_blob(row, 0), b->keystore_id, sizeof b->keystore_id);
	cf_span_to_str(cf_row_blob(row, 1), b->environment, sizeof b->environment);
	return CF_OK;
}

static cf_err binding_read(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT keystore_id, environment FROM deployment WHERE id = 1", NULL,
	                   0, binding_row, ctx);
}

static cf_err binding_write(struct cf_tx *tx, void *ctx)
{
	const struct cf_keys_status *ks = ctx;
	struct cf_val v[] = {CF_V_TEXT(ks->keystore_id), CF_V_TEXT(ks->environment)};
	return cf_tx_exec(tx,
	                  "UPDATE deployment SET keystore_id = $1, environment = $2"
	                  " WHERE id = 1 AND keystore_id IS NULL",
	                  v, 2, NULL);
}

cf_err cf_vault_bind_keystore(struct cf_store *st, struct cf_keyring *kr)
{
	struct cf_keys_status ks;
	cf_keys_status(kr, &ks);
	struct binding b = {0};
	CF_TRY(cf_store_read(st, NULL, binding_read, &b));
	if (!ks.initialized) {
		CF_ENSURE(
		        !b.have,
		        cf_err_fail(CF_E_CONFIG,
		                    "the data store belongs to keystore %s (%s), but the keystore "
		                    "configured (keys.store) is empty: refusing to start (ER7)",
		                    b.keystore_id, b.environment));
		return CF_OK;
	}
	if (!b.have)
		return cf_store_write_wait(st, NULL, binding_write, &ks);
	CF_ENSURE(
	        strcmp(b.keystore_id, ks.keystore_id) == 0 &&
	                strcmp(b.environment, ks.environment) == 0,
	        cf_err_fail(CF_E_CONFIG,
	                    "the data store belongs to keystore %s (%s), not to keystore %s (%s): "
	                    "refusing to mix them (ER7)",
	                    b.keystore_id, b.environment, ks.keystore_id, ks.environment));
	return CF_OK;
}

/* --- tenants -------------------------------------------------------------------------- */
static bool name_ok(const char *n)
{
	size_t len = n ? strlen(n) : 0;
	if (len == 0 || len > CF_TENANT_NAME_MAX || n[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '-'))
			return false;
	return true;
}

static json_t *tenant_json(const struct cf_row *row)
{
	struct cf_span id = cf_row_blob(row, 0), name = cf_row_blob(row, 1),
	               state = cf_row_blob(row, 2);
	return json_pack("{s:s%, s:s%, s:s%, s:I}", "id", id.ptr, id.len, "name", name.ptr,
	                 name.len, "state", state.ptr, state.len, "created_at",
	                 (json_int_t)cf_row_int(row, 3));
}

struct one {
	const char *name;
	json_t *obj;
};

static cf_err one_row(const struct cf_row *row, void *ctx)
{
	struct one *o = ctx;
	o->obj = tenant_json(row);
	return o->obj ? CF_OK : CF_E_NOMEM;
}

static cf_err one_fn(struct cf_tx *tx, void *ctx)
{
	struct one *o = ctx;
	struct cf_val v[] = {CF_V_TEXT(o->name)};
	return cf_tx_query(tx,
	                   "SELECT tenant_id, name, state, created_at FROM tenants WHERE name = $1",
	                   v, 1, one_row, o);
}

/* The tenant named name, or CF_E_NOT_FOUND. */
static cf_err find(struct cf_store *st, const char *name, json_t **out)
{
	CF_ENSURE(name_ok(name),
	          cf_err_fail(CF_E_INVALID, "a tenant name is 1 to 63 of a-z, 0-9 and '-'"));
	struct one o = {.name = name};
	CF_TRY(cf_store_read(st, NULL, one_fn, &o));
	CF_ENSURE(o.obj, cf_err_fail(CF_E_NOT_FOUND, "no tenant named '%s'", name));
	*out = o.obj;
	return CF_OK;
}

cf_err cf_vault_tenant_id(struct cf_store *st, const char *name, char id[CF_TENANT_ID_MAX + 1])
{
	json_t *t = NULL;
	CF_TRY(find(st, name, &t));
	CF_ENSURE(t, CF_E_INTERNAL);
	(void)snprintf(id, CF_TENANT_ID_MAX + 1, "%s", json_string_value(json_object_get(t, "id")));
	json_decref(t);
	return CF_OK;
}

struct ins {
	const char *id, *name;
	int64_t now;
};

static cf_err ins_fn(struct cf_tx *tx, void *ctx)
{
	struct ins *i = ctx;
	struct cf_val v[] = {CF_V_TEXT(i->id), CF_V_TEXT(i->name), CF_V_INT(i->now)};
	return cf_tx_exec(tx,
	                  "INSERT INTO tenants (tenant_id, name, state, created_at)"
	                  " VALUES ($1, $2, 'active', $3)",
	                  v, 3, NULL);
}

static cf_err create_row(struct cf_store *st, struct cf_keyring *kr, const char *name,
                         unsigned rotation_days, json_t **out)
{
	json_t *existing = NULL;
	/* a new tenant's name is a field of the call (elsewhere a name that cannot be a
	 * tenant's is an argument) */
	CF_ENSURE(name_ok(name), cf_err_at(CF_E_INVALID_VALUE, "name", "name",
	                                   "a tenant name is 1 to 63 of a-z, 0-9 and '-'"));
	cf_err err = find(st, name, &existing);
	if (err == CF_OK) {
		json_decref(existing);
		return cf_err_fail(CF_E_CONFLICT, "a tenant named '%s' exists", name);
	}
	CF_ENSURE(err == CF_E_NOT_FOUND, err);
	CF_ENSURE(rotation_days <= 3650, cf_err_at(CF_E_OUT_OF_RANGE, "rotation_days", "range",
	                                           "rotation_days is 1 to 3650"));
	/* A random id: names may be reused after a deletion, key ids never are. */
	uint8_t rnd[8];
	char id[20] = "t";
	CF_TRY(cf_crypto_random(rnd, sizeof rnd));
	cf_hex_encode(rnd, sizeof rnd, id + 1);
	/* Keys first: a tenant row never exists without its keys. If the row cannot be
	 * written, the keys are shredded again. */
	CF_TRY(cf_keys_tenant_create(kr, id, (int64_t)rotation_days * 86400));
	struct ins in = {id, name, (int64_t)time(NULL)};
	err = cf_store_write_wait(st, NULL, ins_fn, &in);
	if (err) {
		cf_err keep = err;
		unsigned n = 0;
		if (cf_keys_tenant_shred(kr, id, &n) != CF_OK)
			cf_log(CF_LOG_ERROR, NULL, "tenant_orphan_keys",
			       "tenant %s: the row failed and its keys could not be shredded", id);
		return cf_err_fail(keep == CF_E_CONFLICT ? CF_E_CONFLICT : keep,
		                   keep == CF_E_CONFLICT ? "a tenant named '%s' exists"
		                                         : "the tenant '%s' could not be stored",
		                   name);
	}
	*out = json_pack("{s:s, s:s, s:s, s:I}", "id", id, "name", name, "state", "active",
	                 "created_at", (json_int_t)in.now);
	CF_ENSURE(*out, CF_E_NOMEM);
	cf_log(CF_LOG_INFO, NULL, "tenant_created", "tenant %s created as %s", name, id);
	return CF_OK;
}

cf_err cf_vault_tenant_create(struct cf_store *st, struct cf_keyring *kr, struct cf_auth *auth,
                              const struct cf_auth_call *call, const char *name,
                              unsigned rotation_days, const char *owner_email, json_t **out)
{
	json_t *t = NULL;
	/* an owner who could not be made is refused before the tenant is (its keys, its
	 * row and their removal would all be in vain) */
	if (owner_email && cf_auth_email_check(owner_email) != CF_OK)
		return cf_err_at(CF_E_INVALID_VALUE, "owner_email", "email",
		                 "owner_email is not a valid address");
	CF_TRY(create_row(st, kr, name, rotation_days, &t));
	if (!owner_email) {
		*out = t;
		return CF_OK;
	}
	/* The first owner: invited with a setup link the operator hands over. If the owner
	 * cannot be made, the tenant is deleted again (shredded): never one without. */
	struct cf_tenant_ref ref = {.active = true};
	(void)snprintf(ref.id, sizeof ref.id, "%s", json_string_value(json_object_get(t, "id")));
	(void)snprintf(ref.name, sizeof ref.name, "%s", name);
	json_t *roles = json_pack("[s]", "owner");
	json_t *user = NULL;
	char token[64] = "";
	cf_err err = roles ? cf_auth_user_create(auth, call, &ref, owner_email, roles, &user, token)
	                   : CF_E_NOMEM;
	json_decref(roles);
	if (err == CF_OK) {
		json_t *owner =
		        json_pack("{s:O, s:O, s:s}", "id", json_object_get(user, "id"), "email",
		                  json_object_get(user, "email"), "setup_token", token);
		if (!owner || json_object_set_new(t, "owner", owner) != 0)
			err = CF_E_NOMEM;
	}
	cf_wipe(token, sizeof token);
	json_decref(user);
	if (err) {
		struct cf_err_saved why;
		cf_err_save(&why, err);
		/* the owner's email is this call's owner_email */
		if (strcmp(why.path, "email") == 0)
			(void)snprintf(why.path, sizeof why.path, "owner_email");
		if (!why.detail[0])
			(void)snprintf(why.detail, sizeof why.detail,
			               "the owner could not be created");
		unsigned n = 0;
		json_decref(t);
		if (cf_vault_tenant_delete(st, kr, name, &n) != CF_OK)
			cf_log(CF_LOG_ERROR, NULL, "tenant_half_made",
			       "tenant %s: its owner could not be made nor the tenant removed",
			       name);
		cf_err_restore(&why);
		return err;
	}
	*out = t;
	return CF_OK;
}

static cf_err list_row(const struct cf_row *row, void *ctx)
{
	json_t *o = tenant_json(row);
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(ctx, o) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err list_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx,
	                   "SELECT tenant_id, name, state, created_at FROM tenants ORDER BY name",
	                   NULL, 0, list_row, ctx);
}

cf_err cf_vault_tenant_list(struct cf_store *st, json_t **out)
{
	json_t *arr = json_array();
	CF_ENSURE(arr, CF_E_NOMEM);
	cf_err err = cf_store_read(st, NULL, list_fn, arr);
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = arr;
	return CF_OK;
}

struct state_tx {
	const char *id, *state;
};

static cf_err state_fn(struct cf_tx *tx, void *ctx)
{
	struct state_tx *s = ctx;
	struct cf_val v[] = {CF_V_TEXT(s->state), CF_V_TEXT(s->id)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx, "UPDATE tenants SET state = $1 WHERE tenant_id = $2", v, 2, &n));
	return n == 1 ? CF_OK : cf_err_fail(CF_E_NOT_FOUND, "the tenant is gone");
}

cf_err cf_vault_tenant_suspend(struct cf_store *st, struct cf_keyring *kr, const char *name,
                               bool suspended)
{
	json_t *t = NULL;
	CF_TRY(find(st, name, &t));
	CF_ENSURE(t, CF_E_INTERNAL);
	char id[CF_TENANT_ID_MAX + 1];
	(void)snprintf(id, sizeof id, "%s", json_string_value(json_object_get(t, "id")));
	bool deleting = strcmp(json_string_value(json_object_get(t, "state")), "deleting") == 0;
	json_decref(t);
	CF_ENSURE(!deleting, cf_err_fail(CF_E_CONFLICT, "the tenant is being deleted"));
	/* Suspending: keys first (access stops at once). Resuming: the row first. */
	struct state_tx s = {id, suspended ? "suspended" : "active"};
	if (suspended)
		CF_TRY(cf_keys_tenant_suspend(kr, id, true));
	CF_TRY(cf_store_write_wait(st, NULL, state_fn, &s));
	if (!suspended)
		CF_TRY(cf_keys_tenant_suspend(kr, id, false));
	cf_log(CF_LOG_INFO, NULL, suspended ? "tenant_suspended" : "tenant_resumed", "tenant %s %s",
	       name, suspended ? "suspended" : "resumed");
	return CF_OK;
}

static cf_err del_fn(struct cf_tx *tx, void *ctx)
{
	const char *id = ctx;
	struct cf_val v[] = {CF_V_TEXT(id)};
	/* Every table of tenant rows, in the same transaction (later issues add theirs). */
	static const char *const tables[] = {
	        "DELETE FROM users WHERE tenant_id = $1",
	        "DELETE FROM roles WHERE tenant_id = $1",
	        "DELETE FROM grants WHERE tenant_id = $1",
	        "DELETE FROM sessions WHERE tenant_id = $1",
	        "DELETE FROM clients WHERE tenant_id = $1",
	        "DELETE FROM tokens_revoked WHERE tenant_id = $1",
	        "DELETE FROM auth_links WHERE tenant_id = $1",
	        "DELETE FROM mfa_totp WHERE tenant_id = $1",
	        "DELETE FROM recovery_codes WHERE tenant_id = $1",
	        "DELETE FROM tenant_policy WHERE tenant_id = $1",
	        "DELETE FROM user_groups WHERE tenant_id = $1",
	        "DELETE FROM group_members WHERE tenant_id = $1",
	        "DELETE FROM group_roles WHERE tenant_id = $1",
	        "DELETE FROM break_glass WHERE tenant_id = $1",
	        "DELETE FROM password_history WHERE tenant_id = $1",
	        "DELETE FROM authz_versions WHERE tenant_id = $1",
	        "DELETE FROM collections WHERE tenant_id = $1",
	        "DELETE FROM collection_versions WHERE tenant_id = $1",
	        "DELETE FROM records WHERE tenant_id = $1",
	        "DELETE FROM record_versions WHERE tenant_id = $1",
	        "DELETE FROM record_index WHERE tenant_id = $1",
	        "DELETE FROM idempotency WHERE tenant_id = $1",
	};
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
		CF_TRY(cf_tx_exec(tx, tables[i], v, 1, NULL));
	return cf_tx_exec(tx, "DELETE FROM tenants WHERE tenant_id = $1", v, 1, NULL);
}

/* Deletion from 'deleting' on: shred, then remove the rows. */
static cf_err finish_delete(struct cf_store *st, struct cf_keyring *kr, const char *id,
                            unsigned *destroyed)
{
	CF_TRY(cf_keys_tenant_shred(kr, id, destroyed));
	char copy[CF_TENANT_ID_MAX + 1];
	(void)snprintf(copy, sizeof copy, "%s", id);
	return cf_store_write_wait(st, copy, del_fn, copy);
}

cf_err cf_vault_tenant_delete(struct cf_store *st, struct cf_keyring *kr, const char *name,
                              unsigned *destroyed)
{
	json_t *t = NULL;
	CF_TRY(find(st, name, &t));
	CF_ENSURE(t, CF_E_INTERNAL);
	char id[CF_TENANT_ID_MAX + 1];
	(void)snprintf(id, sizeof id, "%s", json_string_value(json_object_get(t, "id")));
	json_decref(t);
	/* Durable intent first: a crash from here on is finished at the next start. */
	struct state_tx s = {id, "deleting"};
	CF_TRY(cf_store_write_wait(st, NULL, state_fn, &s));
	CF_TRY(finish_delete(st, kr, id, destroyed));
	cf_log(CF_LOG_WARN, NULL, "tenant_deleted", "tenant %s (%s) deleted: %u keys destroyed",
	       name, id, *destroyed);
	return CF_OK;
}

#define RESUME_MAX 64
struct pending {
	char ids[RESUME_MAX][CF_TENANT_ID_MAX + 1];
	size_t n;
};

static cf_err pending_row(const struct cf_row *row, void *ctx)
{
	struct pending *p = ctx;
	if (p->n < RESUME_MAX)
		cf_span_to_str(cf_row_blob(row, 0), p->ids[p->n++], CF_TENANT_ID_MAX + 1);
	return CF_OK;
}

static cf_err pending_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT tenant_id FROM tenants WHERE state = 'deleting'", NULL, 0,
	                   pending_row, ctx);
}

cf_err cf_vault_resume_deletions(struct cf_store *st, struct cf_keyring *kr)
{
	struct pending p = {0};
	CF_TRY(cf_store_read(st, NULL, pending_fn, &p));
	for (size_t i = 0; i < p.n; i++) {
		unsigned n = 0;
		CF_TRY(finish_delete(st, kr, p.ids[i], &n));
		cf_log(CF_LOG_WARN, NULL, "tenant_deleted",
		       "tenant %s: an interrupted deletion finished (%u keys destroyed)", p.ids[i],
		       n);
	}
	return CF_OK;
}
