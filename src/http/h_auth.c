/* coffre — the identity API (docs/access.md): logins and sessions, setup links, the
 * client credentials grant, and a tenant's users, clients and audit log. The route table
 * (routes.c) says which permission each needs; server.c checks it before these run. */
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "crypto/crypto.h"
#include "http/handlers.h"

/* The body as a JSON object of these keys only. */
cf_err cf_h_body(struct cf_req *req, const char *const *allowed, json_t **out)
{
	struct cf_span b = cf_req_body(req);
	/* The server has held the body to server.max_body already (records, batches). */
	CF_TRY(cf_json_parse_object(b.ptr, b.len, cf_req_config(req)->max_body, out));
	cf_err e = cf_json_only_keys(*out, allowed);
	if (e) {
		json_decref(*out);
		*out = NULL;
	}
	return e;
}

/* A required string field of at most max bytes, or the error naming it. */
cf_err cf_h_need(const json_t *o, const char *key, size_t max, const char **out)
{
	size_t n = 0;
	*out = NULL;
	CF_TRY(cf_json_get_str(o, key, true, max, out, &n));
	CF_ENSURE(*out, cf_err_at(CF_E_MISSING_FIELD, key, "required", "%s is required", key));
	return CF_OK;
}

/* Public routes name their tenant in the path; it must exist and be active. The
 * operators' routes (/v1/operator/login, ...) name none: theirs is the operators' realm. */
static cf_err path_tenant(struct cf_req *req, struct cf_tenant_ref *t)
{
	if (!cf_req_param(req, "tenant").ptr) {
		cf_auth_ops_ref(t);
		return CF_OK;
	}
	char name[CF_TENANT_NAME_MAX + 2];
	cf_span_to_str(cf_req_param(req, "tenant"), name, sizeof name);
	return cf_auth_tenant(cf_req_auth(req), name, t);
}

void cf_h_param(struct cf_req *req, const char *name, char *out, size_t cap)
{
	cf_span_to_str(cf_req_param(req, name), out, cap);
}

/* --- public -------------------------------------------------------------------------------- */
/* A login or a step-up: the same body (a step-up names no email) and the same answer, a
 * session cookie and its CSRF token. */
static cf_err session_call(struct cf_req *req, const struct cf_tenant_ref *t)
{
	static const char *const login_keys[] = {"email",         "password",     "code",
	                                         "recovery_code", "new_password", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, t ? login_keys : login_keys + 1, &in));
	const char *email = NULL, *pw = NULL, *code = NULL, *recovery = NULL, *next = NULL;
	size_t n = 0;
	cf_err e = t ? cf_h_need(in, "email", 254, &email) : CF_OK;
	if (e == CF_OK)
		e = cf_h_need(in, "password", 1024, &pw);
	if (e == CF_OK)
		e = cf_json_get_str(in, "code", false, 16, &code, &n);
	if (e == CF_OK)
		e = cf_json_get_str(in, "recovery_code", false, 64, &recovery, &n);
	if (e == CF_OK)
		e = cf_json_get_str(in, "new_password", false, 1024, &next, &n);
	char cookie[CF_AUTH_COOKIE_MAX];
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	struct cf_login li = {email, cf_span_str(pw ? pw : ""), code, recovery,
	                      cf_span_str(next ? next : "")};
	if (e == CF_OK)
		e = t ? cf_auth_login(cf_req_auth(req), &call, t, &li, cookie, &out)
		      : cf_auth_reauth(cf_req_auth(req), &call, &li, cookie, &out);
	json_decref(in);
	if (e == CF_OK)
		e = cf_req_set_cookie(req, cookie, cf_req_config(req)->session_max);
	cf_wipe(cookie, sizeof cookie);
	if (e) {
		json_decref(out);
		return e;
	}
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_login(struct cf_req *req)
{
	struct cf_tenant_ref t;
	CF_TRY(path_tenant(req, &t));
	return session_call(req, &t);
}

cf_err cf_h_setup(struct cf_req *req)
{
	static const char *const keys[] = {"token", "password", NULL};
	struct cf_tenant_ref t;
	CF_TRY(path_tenant(req, &t));
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *token = NULL, *pw = NULL;
	cf_err e = cf_h_need(in, "token", 64, &token);
	if (e == CF_OK)
		e = cf_h_need(in, "password", 1024, &pw);
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_setup(cf_req_auth(req), &call, &t, token, cf_span_str(pw));
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

cf_err cf_h_reset(struct cf_req *req)
{
	static const char *const keys[] = {"email", NULL};
	struct cf_tenant_ref t;
	CF_TRY(path_tenant(req, &t));
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *email = NULL;
	cf_err e = cf_h_need(in, "email", 254, &email);
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_reset_request(cf_req_auth(req), &call, &t, email);
	json_decref(in);
	CF_TRY(e);
	/* IA5: the same answer whether or not the account exists. */
	return cf_req_reply_json(
	        req, 202,
	        json_pack("{s:s}", "message",
	                  "if this email has an account, a reset link is on its way"));
}

/* RFC 6749 §2.3.1 (client_secret_basic, what most OAuth libraries send): the client's
 * id and secret, each form-encoded, as HTTP Basic credentials (RFC 7617). Put in the
 * request's fields as if its body had them; never both ways at once (§2.3). */
static cf_err basic_credentials(struct cf_req *req, json_t *in)
{
	const char *h = cf_req_header(req, "Authorization");
	if (!h)
		return CF_OK;
	CF_ENSURE(strncasecmp(h, "Basic ", 6) == 0,
	          cf_err_fail(CF_E_BAD_CREDENTIALS, "a token request gives the client's "
	                                            "credentials as HTTP Basic or in its body"));
	CF_ENSURE(!json_object_get(in, "client_id") && !json_object_get(in, "client_secret"),
	          cf_err_fail(CF_E_INVALID, "the client's credentials are in both the "
	                                    "Authorization header and the body: send them "
	                                    "one way (RFC 6749 §2.3)"));
	uint8_t raw[400];
	size_t n = 0;
	const char *b64 = h + 6;
	cf_err e = cf_base64_decode(b64, strlen(b64), raw, sizeof raw - 1, &n);
	char *colon = e == CF_OK ? memchr(raw, ':', n) : NULL;
	if (colon) {
		raw[n] = '\0';
		*colon = '\0';
		char *id = (char *)raw, *secret = colon + 1;
		size_t il = cf_form_unescape(id), sl = cf_form_unescape(secret);
		json_t *jid = strlen(id) == il ? json_stringn(id, il) : NULL;
		json_t *jsec = strlen(secret) == sl ? json_stringn(secret, sl) : NULL;
		e = jid && jsec ? CF_OK : CF_E_BAD_CREDENTIALS;
		if (e == CF_OK) { /* each value is taken, even on a failure */
			int r = json_object_set_new(in, "client_id", jid);
			r |= json_object_set_new(in, "client_secret", jsec);
			e = r == 0 ? CF_OK : CF_E_NOMEM;
		} else {
			json_decref(jid);
			json_decref(jsec);
		}
	}
	cf_wipe(raw, sizeof raw);
	CF_ENSURE(colon && e == CF_OK,
	          cf_err_fail(CF_E_BAD_CREDENTIALS,
	                      "the Basic credentials are not base64 of client_id:client_secret"));
	return CF_OK;
}

cf_err cf_h_token(struct cf_req *req)
{
	static const char *const keys[] = {"grant_type", "client_id", "client_secret", NULL};
	struct cf_tenant_ref t;
	CF_TRY(path_tenant(req, &t));
	json_t *in = NULL;
	/* RFC 6749 §4.4.2: a form, as OAuth clients send it; or JSON */
	struct cf_span body = cf_req_body(req);
	if (cf_req_body_is_form(req))
		CF_TRY(cf_form_parse(body.ptr, body.len, keys, cf_req_config(req)->max_body, &in));
	else
		CF_TRY(cf_h_body(req, keys, &in));
	const char *grant = NULL, *id = NULL, *secret = NULL;
	cf_err e = basic_credentials(req, in);
	if (e == CF_OK)
		e = cf_h_need(in, "client_id", 64, &id);
	if (e == CF_OK)
		e = cf_h_need(in, "client_secret", 128, &secret);
	size_t n = 0;
	if (e == CF_OK)
		e = cf_json_get_str(in, "grant_type", false, 64, &grant, &n);
	if (e == CF_OK && grant && strcmp(grant, "client_credentials") != 0)
		e = cf_err_at(CF_E_INVALID, "grant_type", "enum", /* 400, as RFC 6749 has it */
		              "grant_type must be client_credentials");
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_token_issue(cf_req_auth(req), &call, &t, id, cf_span_str(secret),
		                        cf_req_header(req, "Origin"), &out);
	if (e == CF_OK && cf_req_header(req, "Origin"))
		cf_req_allow_origin(req, cf_req_header(req, "Origin")); /* checked: allowed */
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_jwks(struct cf_req *req)
{
	json_t *out = NULL;
	CF_TRY(cf_auth_jwks(cf_req_auth(req), &out));
	return cf_req_reply_json(req, 200, out);
}

/* --- the caller's own account -------------------------------------------------------------- */
cf_err cf_h_me(struct cf_req *req)
{
	json_t *o = cf_principal_json(cf_req_principal(req));
	CF_ENSURE(o, CF_E_NOMEM);
	return cf_req_reply_json(req, 200, o);
}

cf_err cf_h_logout(struct cf_req *req)
{
	struct cf_auth_call call = cf_req_call(req);
	const struct cf_principal *p = cf_req_principal(req);
	if (p->kind == CF_PRINCIPAL_CLIENT)
		CF_TRY(cf_auth_token_revoke(cf_req_auth(req), &call));
	else
		CF_TRY(cf_auth_logout(cf_req_auth(req), &call));
	if (p->via_cookie)
		CF_TRY(cf_req_set_cookie(req, "", 0));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

cf_err cf_h_password(struct cf_req *req)
{
	static const char *const keys[] = {"current_password", "new_password", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *cur = NULL, *next = NULL;
	cf_err e = cf_h_need(in, "current_password", 1024, &cur);
	if (e == CF_OK)
		e = cf_h_need(in, "new_password", 1024, &next);
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_password_change(cf_req_auth(req), &call, cf_span_str(cur),
		                            cf_span_str(next));
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

cf_err cf_h_reauth(struct cf_req *req)
{
	return session_call(req, NULL);
}

cf_err cf_h_sessions(struct cf_req *req)
{
	json_t *arr = NULL;
	CF_TRY(cf_auth_session_list(cf_req_auth(req), cf_req_principal(req), &arr));
	return cf_req_reply_json(req, 200, json_pack("{s:o}", "sessions", arr));
}

/* --- a tenant's users and clients (IA12, IA8) ------------------------------------------------ */
const struct cf_tenant_ref *cf_h_own_tenant(struct cf_req *req)
{
	/* The gate has checked the path's tenant is the caller's. */
	return &cf_req_principal(req)->tenant;
}

cf_err cf_h_users_list(struct cf_req *req)
{
	json_t *arr = NULL;
	CF_TRY(cf_auth_user_list(cf_req_auth(req), cf_h_own_tenant(req), &arr));
	return cf_req_reply_json(req, 200, json_pack("{s:o}", "users", arr));
}

cf_err cf_h_users_create(struct cf_req *req)
{
	static const char *const keys[] = {"email", "roles", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *email = NULL;
	cf_err e = cf_h_need(in, "email", 254, &email);
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_user_create(cf_req_auth(req), &call, cf_h_own_tenant(req), email,
		                        json_object_get(in, "roles"), &out, NULL);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 201, out);
}

cf_err cf_h_users_get(struct cf_req *req)
{
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	json_t *out = NULL;
	CF_TRY(cf_auth_user_get(cf_req_auth(req), cf_h_own_tenant(req), id, &out));
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_users_update(struct cf_req *req)
{
	static const char *const keys[] = {"roles", "state", NULL};
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *state = NULL;
	size_t n = 0;
	cf_err e = cf_json_get_str(in, "state", false, 16, &state, &n);
	const json_t *roles = json_object_get(in, "roles");
	if (e == CF_OK && !state && !roles)
		e = cf_err_at(CF_E_MISSING_FIELD, "roles", "required", "give roles, state or both");
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_user_update(cf_req_auth(req), &call, cf_h_own_tenant(req), id, roles,
		                        state, &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_users_delete(struct cf_req *req)
{
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	const struct cf_principal *p = cf_req_principal(req);
	CF_ENSURE(!(p->kind == CF_PRINCIPAL_USER && strcmp(p->id, id) == 0),
	          cf_err_fail(CF_E_CONFLICT, "you cannot delete your own account"));
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_user_delete(cf_req_auth(req), &call, cf_h_own_tenant(req), id));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

cf_err cf_h_clients_list(struct cf_req *req)
{
	json_t *arr = NULL;
	CF_TRY(cf_auth_client_list(cf_req_auth(req), cf_h_own_tenant(req), &arr));
	return cf_req_reply_json(req, 200, json_pack("{s:o}", "clients", arr));
}

cf_err cf_h_clients_create(struct cf_req *req)
{
	static const char *const keys[] = {"name", "roles", "allowed_origins", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *name = NULL;
	cf_err e = cf_h_need(in, "name", 100, &name);
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_client_create(cf_req_auth(req), &call, cf_h_own_tenant(req), name,
		                          json_object_get(in, "roles"),
		                          json_object_get(in, "allowed_origins"), &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 201, out);
}

cf_err cf_h_clients_delete(struct cf_req *req)
{
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_client_disable(cf_req_auth(req), &call, cf_h_own_tenant(req), id));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* --- a tenant's audit log (AL2, AL4) ---------------------------------------------------------- */
cf_err cf_h_tenant_audit(struct cf_req *req)
{
	const struct cf_tenant_ref *t = cf_h_own_tenant(req);
	struct cf_keyring *kr = cf_req_keys(req);
	char actor[65], resource[65];
	const char *q_actor = cf_req_query(req, "actor"), *q_res = cf_req_query(req, "resource");
	const char *q_action = cf_req_query(req, "action"), *q_out = cf_req_query(req, "outcome");
	CF_ENSURE(!q_action || strlen(q_action) < 64,
	          cf_err_fail(CF_E_INVALID, "action is at most 63 bytes"));
	/* The caller gives clear values; entries hold their HMACs under the tenant's key. */
	if (q_actor)
		CF_TRY(cf_audit_mac(kr, t->id, q_actor, actor));
	if (q_res)
		CF_TRY(cf_audit_mac(kr, t->id, q_res, resource));
	int outcome = -1;
	if (q_out) {
		static const char *const names[] = {"ok", "denied", "failed"};
		for (int i = 0; i < 3; i++)
			if (strcmp(q_out, names[i]) == 0)
				outcome = i;
		CF_ENSURE(outcome >= 0,
		          cf_err_fail(CF_E_INVALID, "outcome is ok, denied or failed"));
	}
	uint64_t since = 0, until = 0, cursor = 0, limit = 50;
	CF_TRY(cf_req_query_u64(req, "since_us", 0, INT64_MAX, &since));
	CF_TRY(cf_req_query_u64(req, "until_us", 0, INT64_MAX, &until));
	/* until_us is exclusive: one not after since_us leaves nothing to list (and 0 would
	 * read as no bound at all) */
	CF_ENSURE(!cf_req_query(req, "until_us") || until > since,
	          cf_err_fail(CF_E_INVALID, "until_us (exclusive) must be after since_us"));
	CF_TRY(cf_req_query_u64(req, "cursor", 0, INT64_MAX, &cursor));
	CF_TRY(cf_req_query_u64(req, "limit", 1, 1000, &limit));
	struct cf_audit_filter f = {.tenant = t->id,
	                            .action = q_action,
	                            .actor = q_actor ? actor : NULL,
	                            .resource = q_res ? resource : NULL,
	                            .outcome = outcome,
	                            .since_us = (int64_t)since,
	                            .until_us = (int64_t)until,
	                            .cursor = (int64_t)cursor,
	                            .limit = (unsigned)limit};
	json_t *out = NULL;
	CF_TRY(cf_audit_list(cf_req_store(req), &f, &out));
	return cf_req_reply_json(req, 200, out);
}

/* --- two-factor authentication (IA6) ------------------------------------------------------------
 */
cf_err cf_h_totp_enroll(struct cf_req *req)
{
	struct cf_auth_call call = cf_req_call(req);
	json_t *out = NULL;
	CF_TRY(cf_auth_totp_enroll(cf_req_auth(req), &call, &out));
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_totp_confirm(struct cf_req *req)
{
	static const char *const keys[] = {"code", NULL};
	CF_ENSURE(cf_principal_is_person(cf_req_principal(req)),
	          cf_err_fail(CF_E_FORBIDDEN, "only people enroll in two-factor authentication"));
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *code = NULL;
	cf_err e = cf_h_need(in, "code", 16, &code);
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_totp_confirm(cf_req_auth(req), &call, code, &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_totp_reset(struct cf_req *req)
{
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_totp_reset(cf_req_auth(req), &call, cf_h_own_tenant(req), id));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

cf_err cf_h_policy_get(struct cf_req *req)
{
	json_t *out = NULL;
	CF_TRY(cf_auth_policy_get(cf_req_auth(req), cf_h_own_tenant(req), &out));
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_policy_set(struct cf_req *req)
{
	static const char *const keys[] = {"mfa_required",
	                                   "mfa_required_roles",
	                                   "password_min_length",
	                                   "password_min_classes",
	                                   "password_max_age_days",
	                                   "password_history",
	                                   NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	bool mfa = false;
	cf_err e = cf_json_get_bool(in, "mfa_required", true, &mfa);
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	int64_t min = 12, classes = 0, age = 0, history = 0;
	if (e == CF_OK)
		e = cf_json_get_int(in, "password_min_length", false, 12, 128, &min);
	if (e == CF_OK)
		e = cf_json_get_int(in, "password_min_classes", false, 0, 4, &classes);
	if (e == CF_OK)
		e = cf_json_get_int(in, "password_max_age_days", false, 0, 3650, &age);
	if (e == CF_OK)
		e = cf_json_get_int(in, "password_history", false, 0, CF_AUTH_HISTORY_MAX,
		                    &history);
	struct cf_auth_policy pol = {.mfa_required = mfa,
	                             .mfa_roles = json_object_get(in, "mfa_required_roles"),
	                             .password_min = (unsigned)min,
	                             .password_classes = (unsigned)classes,
	                             .password_max_age_days = (unsigned)age,
	                             .password_history = (unsigned)history};
	if (e == CF_OK)
		e = cf_auth_policy_set(cf_req_auth(req), &call, cf_h_own_tenant(req), &pol, &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, out);
}

/* --- sessions and access reviews (IA10, IA13) ---------------------------------------------------
 */
cf_err cf_h_session_revoke(struct cf_req *req)
{
	char id[24];
	cf_h_param(req, "id", id, sizeof id);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_session_revoke(cf_req_auth(req), &call, id));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

cf_err cf_h_user_sessions_revoke(struct cf_req *req)
{
	char id[CF_AUTH_ID_MAX + 2];
	cf_h_param(req, "id", id, sizeof id);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_user_sessions_revoke(cf_req_auth(req), &call, cf_h_own_tenant(req), id));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* One CSV field (RFC 4180), and never a formula: a leading = + - @ gets a quote mark so
 * that a spreadsheet shows it as text. */
static cf_err csv_field(struct cf_buf *b, const char *v, bool last)
{
	CF_TRY(cf_buf_append(b, "\"", 1));
	if (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@')
		CF_TRY(cf_buf_append(b, "'", 1));
	for (const char *p = v; *p; p++)
		CF_TRY(cf_buf_append(b, *p == '"' ? "\"\"" : p, *p == '"' ? 2 : 1));
	return cf_buf_append(b, last ? "\"\r\n" : "\",", last ? 3 : 2);
}

static void roles_text(const json_t *o, char *out, size_t cap)
{
	out[0] = '\0';
	const json_t *roles = json_object_get(o, "roles");
	for (size_t i = 0, n = 0; i < json_array_size(roles); i++) {
		int k = snprintf(out + n, cap - n, "%s%s", i ? " " : "",
		                 json_string_value(json_array_get(roles, i)));
		if (k < 0 || (size_t)k >= cap - n)
			break;
		n += (size_t)k;
	}
}

static cf_err review_csv(const json_t *r, struct cf_buf *b)
{
	static const char head[] = "kind,id,email_or_name,state,roles,mfa,last_used_at,dormant\r\n";
	CF_TRY(cf_buf_append(b, head, sizeof head - 1));
	static const char *const lists[] = {"users", "clients"};
	for (size_t l = 0; l < 2; l++) {
		const json_t *arr = json_object_get(r, lists[l]);
		for (size_t i = 0; i < json_array_size(arr); i++) {
			const json_t *o = json_array_get(arr, i);
			bool user = l == 0;
			char roles[256], used[24] = "";
			roles_text(o, roles, sizeof roles);
			const json_t *u =
			        json_object_get(o, user ? "last_login_at" : "last_used_at");
			if (json_is_integer(u))
				(void)snprintf(used, sizeof used, "%lld",
				               (long long)json_integer_value(u));
			const char *f[] = {
			        user ? "user" : "client",
			        json_string_value(json_object_get(o, user ? "id" : "client_id")),
			        json_string_value(json_object_get(o, user ? "email" : "name")),
			        json_string_value(json_object_get(o, "state")),
			        roles,
			        user ? (json_is_true(json_object_get(o, "mfa")) ? "yes" : "no")
			             : "",
			        used,
			        json_is_true(json_object_get(o, "dormant")) ? "yes" : "no"};
			for (size_t k = 0; k < 8; k++)
				CF_TRY(csv_field(b, f[k] ? f[k] : "", k == 7));
		}
	}
	return CF_OK;
}

cf_err cf_h_access_review(struct cf_req *req)
{
	uint64_t days = 90;
	CF_TRY(cf_req_query_u64(req, "dormant_days", 1, 3650, &days));
	const char *format = cf_req_query(req, "format");
	CF_ENSURE(!format || strcmp(format, "json") == 0 || strcmp(format, "csv") == 0,
	          cf_err_fail(CF_E_INVALID, "format is json or csv"));
	json_t *r = NULL;
	CF_TRY(cf_auth_access_review(cf_req_auth(req), cf_h_own_tenant(req), (unsigned)days, &r));
	if (!format || strcmp(format, "json") == 0)
		return cf_req_reply_json(req, 200, r);
	struct cf_buf b;
	cf_buf_init(&b, 64u * 1024 * 1024);
	cf_err e = review_csv(r, &b);
	json_decref(r);
	if (e == CF_OK)
		e = cf_req_reply_text(req, 200, "text/csv; charset=utf-8", (const char *)b.data,
		                      b.len);
	cf_buf_free(&b);
	return e;
}

/* --- a tenant's own roles -----------------------------------------------------------------------
 */
cf_err cf_h_roles_list(struct cf_req *req)
{
	json_t *arr = NULL;
	CF_TRY(cf_auth_role_list(cf_req_auth(req), cf_h_own_tenant(req), &arr));
	return cf_req_reply_json(req, 200, json_pack("{s:o}", "roles", arr));
}

cf_err cf_h_roles_create(struct cf_req *req)
{
	static const char *const keys[] = {"name", "permissions", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *name = NULL;
	cf_err e = cf_h_need(in, "name", 63, &name);
	if (e == CF_OK && !json_object_get(in, "permissions"))
		e = cf_err_at(CF_E_MISSING_FIELD, "permissions", "required",
		              "permissions is required");
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_role_create(cf_req_auth(req), &call, cf_h_own_tenant(req), name,
		                        json_object_get(in, "permissions"), &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 201, out);
}

cf_err cf_h_roles_delete(struct cf_req *req)
{
	char name[72];
	cf_h_param(req, "id", name, sizeof name);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_role_delete(cf_req_auth(req), &call, cf_h_own_tenant(req), name));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* --- groups
 * ---------------------------------------------------------------------------------------- */
cf_err cf_h_groups_list(struct cf_req *req)
{
	json_t *arr = NULL;
	CF_TRY(cf_auth_group_list(cf_req_auth(req), cf_h_own_tenant(req), &arr));
	return cf_req_reply_json(req, 200, json_pack("{s:o}", "groups", arr));
}

cf_err cf_h_groups_create(struct cf_req *req)
{
	static const char *const keys[] = {"name", "roles", "members", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const char *name = NULL;
	cf_err e = cf_h_need(in, "name", 63, &name);
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_auth_group_create(cf_req_auth(req), &call, cf_h_own_tenant(req), name,
		                         json_object_get(in, "roles"),
		                         json_object_get(in, "members"), &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 201, out);
}

cf_err cf_h_groups_update(struct cf_req *req)
{
	static const char *const keys[] = {"roles", "add", "remove", NULL};
	char name[72];
	cf_h_param(req, "id", name, sizeof name);
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	cf_err e = cf_auth_group_update(cf_req_auth(req), &call, cf_h_own_tenant(req), name,
	                                json_object_get(in, "roles"), json_object_get(in, "add"),
	                                json_object_get(in, "remove"), &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_groups_delete(struct cf_req *req)
{
	char name[72];
	cf_h_param(req, "id", name, sizeof name);
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_auth_group_delete(cf_req_auth(req), &call, cf_h_own_tenant(req), name));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}
