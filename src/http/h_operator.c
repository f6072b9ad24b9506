/* coffre — the operators' API (IA11, docs/access.md): operators manage operators and
 * tenants, and ask for, approve and end break-glass grants; a tenant's owner approves
 * and its admins see and end the grants on their tenant. routes.c gives every route its
 * permission (operators' routes: CF_AUTH_OPERATOR); server.c checks it. */
#include <string.h>

#include "http/handlers.h"
#include "vault/vault.h"

static cf_err reply_ok(struct cf_req *req)
{
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* --- operators ----------------------------------------------------------------------- */
cf_err cf_h_op_list(struct cf_req *req)
{
	json_t *out = NULL;
	CF_TRY(cf_auth_operator_list(cf_req_auth(req), &out));
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_op_create(struct cf_req *req)
{
	static const char *const keys[] = {"email", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *email = NULL;
	cf_err e = cf_h_need(in, "email", 254, &email);
	json_t *out = NULL;
	char link[64] = "";
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_operator_create(cf_req_auth(req), &call, email, false, &out, link);
	json_decref(in);
	/* The setup token goes to the new operator by mail too; shown once here for the
	 * operator who hands it over in person. */
	if (e == CF_OK && json_object_set_new(out, "setup_token", json_string(link)) != 0)
		e = CF_E_NOMEM;
	cf_wipe(link, sizeof link);
	if (e) {
		json_decref(out);
		return e;
	}
	return cf_req_reply_json(req, 201, out);
}

cf_err cf_h_op_disable(struct cf_req *req)
{
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_operator_disable(cf_req_auth(req), &call, id));
	return reply_ok(req);
}

cf_err cf_h_op_mfa_reset(struct cf_req *req)
{
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	/* Never one's own: a stolen password would then enroll a new second factor. */
	CF_ENSURE(strcmp(id, cf_req_principal(req)->id) != 0,
	          cf_err_fail(CF_E_FORBIDDEN, "another operator resets your two-factor "
	                                      "authentication"));
	struct cf_tenant_ref ops;
	cf_auth_ops_ref(&ops);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_totp_reset(cf_req_auth(req), &call, &ops, id));
	return reply_ok(req);
}

/* --- tenants --------------------------------------------------------------------------- */
cf_err cf_h_op_tenants(struct cf_req *req)
{
	json_t *arr = NULL;
	CF_TRY(cf_vault_tenant_list(cf_req_store(req), &arr));
	return cf_req_reply_json(req, 200, json_pack("{s:o}", "tenants", arr));
}

cf_err cf_h_op_tenant_create(struct cf_req *req)
{
	static const char *const keys[] = {"name", "owner_email", "rotation_days", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *name = NULL, *owner = NULL;
	int64_t days = 0;
	cf_err e = cf_h_need(in, "name", CF_TENANT_NAME_MAX + 1, &name);
	if (e == CF_OK)
		e = cf_h_need(in, "owner_email", 254, &owner);
	if (e == CF_OK)
		e = cf_json_get_int(in, "rotation_days", false, 1, 3650, &days);
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK) {
		cf_req_audit_resource(req, name);
		e = cf_vault_tenant_create(
		        cf_req_store(req), cf_req_keys(req), cf_req_auth(req), &call, name,
		        days ? (unsigned)days : cf_req_config(req)->rotation_days, owner, &out);
	}
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 201, out);
}

cf_err cf_h_op_tenant_update(struct cf_req *req)
{
	static const char *const keys[] = {"state", NULL};
	char name[CF_TENANT_NAME_MAX + 2];
	cf_h_param(req, "id", name, sizeof name);
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *state = NULL;
	cf_err e = cf_h_need(in, "state", 16, &state);
	bool suspend = e == CF_OK && strcmp(state, "suspended") == 0;
	if (e == CF_OK && !suspend && strcmp(state, "active") != 0)
		e = cf_err_at(CF_E_INVALID_VALUE, "state", "enum", "state is active or suspended");
	json_decref(in);
	CF_TRY(e);
	CF_TRY(cf_vault_tenant_suspend(cf_req_store(req), cf_req_keys(req), name, suspend));
	return cf_req_reply_json(
	        req, 200,
	        json_pack("{s:s, s:s}", "name", name, "state", suspend ? "suspended" : "active"));
}

cf_err cf_h_op_tenant_delete(struct cf_req *req)
{
	char name[CF_TENANT_NAME_MAX + 2];
	cf_h_param(req, "id", name, sizeof name);
	/* PV4: crypto-shredding cannot be undone: the caller types the name again. */
	const char *confirm = cf_req_query(req, "confirm");
	CF_ENSURE(confirm && strcmp(confirm, name) == 0,
	          cf_err_fail(CF_E_INVALID, "deleting a tenant destroys its keys and data for "
	                                    "good: repeat its name in ?confirm="));
	unsigned n = 0;
	CF_TRY(cf_vault_tenant_delete(cf_req_store(req), cf_req_keys(req), name, &n));
	return cf_req_reply_json(
	        req, 200, json_pack("{s:s, s:I}", "name", name, "keys_destroyed", (json_int_t)n));
}

/* --- the deployment's keys (ER4, IA9) --------------------------------------------------- */
cf_err cf_h_op_keys(struct cf_req *req)
{
	json_t *arr = NULL, *tenants = NULL;
	CF_TRY(cf_keys_tenants_json(cf_req_keys(req), NULL, &arr));
	/* name each tenant's entry (the keystore knows ids only); the operators' own realm
	 * is named as such */
	if (cf_vault_tenant_list(cf_req_store(req), &tenants) == CF_OK) {
		for (size_t i = 0; i < json_array_size(arr); i++) {
			json_t *k = json_array_get(arr, i);
			const char *id = json_string_value(json_object_get(k, "tenant"));
			if (id && strcmp(id, CF_OPS_REALM) == 0)
				json_object_set_new(k, "name", json_string("(operators)"));
			for (size_t j = 0; id && j < json_array_size(tenants); j++) {
				json_t *t = json_array_get(tenants, j);
				if (strcmp(id, json_string_value(json_object_get(t, "id"))) == 0)
					json_object_set(k, "name", json_object_get(t, "name"));
			}
		}
		json_decref(tenants);
	}
	cf_err_detail_clear();
	struct cf_keys_status st;
	cf_keys_status(cf_req_keys(req), &st);
	return cf_req_reply_json(req, 200,
	                         json_pack("{s:s, s:I, s:s, s:o}", "provider",
	                                   cf_rk_provider_name(st.provider), "rk_version",
	                                   (json_int_t)st.rk_version, "environment", st.environment,
	                                   "tenants", arr));
}

cf_err cf_h_op_tenant_rotate(struct cf_req *req)
{
	char name[CF_TENANT_NAME_MAX + 2], id[CF_TENANT_ID_MAX + 1];
	cf_h_param(req, "id", name, sizeof name);
	CF_TRY(cf_vault_tenant_id(cf_req_store(req), name, id));
	uint32_t v = 0;
	CF_TRY(cf_keys_rotate(cf_req_keys(req), id, &v));
	return cf_req_reply_json(
	        req, 200, json_pack("{s:s, s:I}", "name", name, "kek_version", (json_int_t)v));
}

cf_err cf_h_op_token_rotate(struct cf_req *req)
{
	uint32_t v = 0;
	CF_TRY(cf_keys_deploy_rotate(cf_req_keys(req), CF_DKEY_TOKEN, &v));
	json_t *jwks = NULL;
	CF_TRY(cf_auth_jwks(cf_req_auth(req), &jwks));
	return cf_req_reply_json(req, 200,
	                         json_pack("{s:I, s:o}", "version", (json_int_t)v, "jwks", jwks));
}

/* --- break-glass (both sides) ------------------------------------------------------------- */
/* A tenant's route: the caller's tenant (the gate checked it is the path's); an
 * operators' route: none. */
static const struct cf_tenant_ref *side(struct cf_req *req)
{
	return cf_req_param(req, "tenant").ptr ? &cf_req_principal(req)->tenant : NULL;
}

cf_err cf_h_bg_list(struct cf_req *req)
{
	json_t *out = NULL;
	CF_TRY(cf_auth_bg_list(cf_req_auth(req), side(req), &out));
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_bg_request(struct cf_req *req)
{
	static const char *const keys[] = {"tenant", "reason", "access", "minutes", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	struct cf_bg_request r = {0};
	const char *access = NULL;
	size_t n = 0;
	int64_t minutes = 0;
	cf_err e = cf_h_need(in, "tenant", CF_TENANT_NAME_MAX + 1, &r.tenant);
	if (e == CF_OK)
		e = cf_h_need(in, "reason", 1024, &r.reason);
	if (e == CF_OK)
		e = cf_json_get_str(in, "access", false, 8, &access, &n);
	if (e == CF_OK && access && strcmp(access, "read") != 0 && strcmp(access, "write") != 0)
		e = cf_err_at(CF_E_INVALID_VALUE, "access", "enum", "access is read or write");
	if (e == CF_OK)
		e = cf_json_get_int(in, "minutes", false, 1, 480, &minutes);
	r.write = access && strcmp(access, "write") == 0;
	r.minutes = (unsigned)minutes;
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_bg_request(cf_req_auth(req), &call, &r, &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 201, out);
}

cf_err cf_h_bg_approve(struct cf_req *req)
{
	char id[32];
	cf_h_param(req, "id", id, sizeof id);
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_bg_approve(cf_req_auth(req), &call, side(req), id, &out));
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_bg_end(struct cf_req *req)
{
	char id[32];
	cf_h_param(req, "id", id, sizeof id);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_bg_end(cf_req_auth(req), &call, side(req), id));
	return reply_ok(req);
}
