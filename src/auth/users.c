/* coffre — users: invitation and setup links, passwords (IA3, IA4), logins and sessions
 * (TR3, IA13), and their management by the tenant's admins (IA12). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/internal.h"

#define LINK_TTL_S  (72 * 3600) /* a setup link: three days to act on an invitation */
#define EMAIL_MAX   254
#define SECRET_LEN  32 /* bytes of a session id or link token */
#define USER_ID_LEN 17 /* "u" and 16 hex digits */

/* A plausible address (RFC 5321 sizes), lower-cased: what identifies a login. */
static cf_err email_norm(const char *in, char out[EMAIL_MAX + 1])
{
	size_t n = in ? strlen(in) : 0;
	CF_ENSURE(n >= 3 && n <= EMAIL_MAX,
	          cf_err_at(CF_E_INVALID_VALUE, "email", "email",
	                    "email must be an address of at most 254 bytes"));
	const char *at = strchr(in, '@');
	bool ok = at && at != in && strchr(at + 1, '@') == NULL && strchr(at + 1, '.') != NULL &&
	          at[1] != '.' && in[n - 1] != '.' && (size_t)(at - in) <= 64;
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		ok = ch > 0x20 && ch != 0x7f && ch != '"' && ch != '<' && ch != '>' && ch != ',' &&
		     ch != ';' && ch != '\\';
		out[i] = (char)(ch < 0x80 ? tolower(ch) : ch);
	}
	CF_ENSURE(ok,
	          cf_err_at(CF_E_INVALID_VALUE, "email", "email", "email is not a valid address"));
	out[n] = '\0';
	return CF_OK;
}

cf_err cf_auth_email_check(const char *email)
{
	char norm[EMAIL_MAX + 1];
	return email_norm(email, norm);
}

struct list_q {
	json_t *arr;
	const char *only; /* one user id, or NULL */
};

static cf_err list_row(const struct cf_row *row, void *ctx)
{
	struct list_q *q = ctx;
	struct cf_span id = cf_row_blob(row, 0);
	struct cf_span em = cf_row_blob(row, 1), st = cf_row_blob(row, 2);
	json_t *o =
	        json_pack("{s:s%, s:s%, s:s%, s:I, s:o}", "id", id.ptr, id.len, "email", em.ptr,
	                  em.len, "state", st.ptr, st.len, "created_at",
	                  (json_int_t)cf_row_int(row, 3), "last_login_at",
	                  cf_row_is_null(row, 4) ? json_null()
	                                         : json_integer((json_int_t)cf_row_int(row, 4)));
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(q->arr, o) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err roles_of(struct cf_tx *tx, const char *kind, json_t *arr, const char *id_key)
{
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char names[128];
		cf_perms perms = 0;
		CF_TRY(auth_grants_load(tx, kind, json_string_value(json_object_get(o, id_key)),
		                        &perms, names, sizeof names));
		json_t *roles = json_array();
		CF_ENSURE(roles, CF_E_NOMEM);
		char *save = NULL;
		for (char *r = strtok_r(names, ",", &save); r; r = strtok_r(NULL, ",", &save))
			(void)json_array_append_new(roles, json_string(r));
		CF_ENSURE(json_object_set_new(o, "roles", roles) == 0, CF_E_NOMEM);
		CF_ENSURE(json_object_set_new(o, "permissions", cf_perms_json(perms)) == 0,
		          CF_E_NOMEM);
	}
	return CF_OK;
}

static cf_err list_fn(struct cf_tx *tx, void *ctx)
{
	struct list_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx)), CF_V_TEXT(q->only ? q->only : "")};
	CF_TRY(cf_tx_query(tx,
	                   q->only ? "SELECT user_id, email, state, created_at, last_login_at"
	                             " FROM users WHERE tenant_id = $1 AND user_id = $2"
	                           : "SELECT user_id, email, state, created_at, last_login_at"
	                             " FROM users WHERE tenant_id = $1 ORDER BY email",
	                   v, q->only ? 2 : 1, list_row, q));
	return roles_of(tx, "user", q->arr, "id");
}

cf_err cf_auth_user_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out)
{
	struct list_q q = {.arr = json_array()};
	CF_ENSURE(q.arr, CF_E_NOMEM);
	cf_err err = cf_store_read(a->store, t->id, list_fn, &q);
	if (err) {
		json_decref(q.arr);
		return err;
	}
	*out = q.arr;
	return CF_OK;
}

cf_err cf_auth_user_get(struct cf_auth *a, const struct cf_tenant_ref *t, const char *id,
                        json_t **out)
{
	struct list_q q = {.arr = json_array(), .only = id};
	CF_ENSURE(q.arr, CF_E_NOMEM);
	cf_err err = cf_store_read(a->store, t->id, list_fn, &q);
	if (err == CF_OK && json_array_size(q.arr) == 1) {
		*out = json_incref(json_array_get(q.arr, 0));
		json_decref(q.arr);
		return CF_OK;
	}
	json_decref(q.arr);
	return err ? err : cf_err_fail(CF_E_NOT_FOUND, "no such user");
}

/* --- create ------------------------------------------------------------------------------ */
struct create_tx {
	const char *tenant, *email;
	const json_t *roles;
	cf_perms limit;
	char id[USER_ID_LEN + 1];
	uint8_t link_mac[CF_HMAC_LEN];
	int64_t now;
	struct cf_audit_prepared audit;
};

static cf_err create_fn(struct cf_tx *tx, void *ctx)
{
	struct create_tx *c = ctx;
	struct cf_val v[] = {CF_V_TEXT(c->tenant), CF_V_TEXT(c->id), CF_V_TEXT(c->email),
	                     CF_V_INT(c->now)};
	cf_err e = cf_tx_exec(tx,
	                      "INSERT INTO users (tenant_id, user_id, email, state, created_at)"
	                      " VALUES ($1, $2, $3, 'invited', $4)",
	                      v, 4, NULL);
	CF_ENSURE(e != CF_E_CONFLICT,
	          cf_err_fail(CF_E_CONFLICT, "a user with this email exists in the tenant"));
	CF_TRY(e);
	CF_TRY(auth_grants_set(tx, "user", c->id, c->roles, c->limit));
	struct cf_val l[] = {CF_V_TEXT(c->tenant), CF_V_BLOB(c->link_mac, sizeof c->link_mac),
	                     CF_V_TEXT(c->id), CF_V_INT(c->now + LINK_TTL_S)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO auth_links (tenant_id, mac, user_id, kind, expires_at)"
	                  " VALUES ($1, $2, $3, 'setup', $4)",
	                  l, 4, NULL));
	return cf_audit_append(tx, &c->audit);
}

cf_err cf_auth_user_create(struct cf_auth *a, const struct cf_auth_call *c,
                           const struct cf_tenant_ref *t, const char *email, const json_t *roles,
                           json_t **out, char link[64])
{
	char em[EMAIL_MAX + 1];
	CF_TRY(email_norm(email, em));
	struct create_tx ct = {
	        .tenant = t->id, .email = em, .roles = roles, .now = (int64_t)time(NULL)};
	ct.limit = auth_grant_limit(c);
	ct.id[0] = 'u';
	CF_TRY(cf_random_hex(ct.id + 1, sizeof ct.id - 1, 8));
	char token[64];
	CF_TRY(auth_secret("", SECRET_LEN, token, sizeof token));
	cf_err err = auth_mac(a, t->id, "link", cf_span_str(token), ct.link_mac);
	if (err == CF_OK)
		err = cf_auth_audit_prepare(a, c, t->id, "user.create", ct.id, CF_OUTCOME_OK, CF_OK,
		                            &ct.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, t->id, create_fn, &ct);
	if (err == CF_OK)
		err = auth_notify_now(a->notifier, em, "setup", t->name, token,
		                      ct.now + LINK_TTL_S);
	if (err == CF_OK && link)
		memcpy(link, token, sizeof token);
	cf_wipe(token, sizeof token);
	CF_TRY(err);
	return cf_auth_user_get(a, t, ct.id, out);
}

/* --- update, delete ---------------------------------------------------------------------- */
struct update_tx {
	const char *tenant, *id, *state;
	const json_t *roles;
	cf_perms limit;
	struct cf_audit_prepared audit;
};

static cf_err update_fn(struct cf_tx *tx, void *ctx)
{
	struct update_tx *u = ctx;
	struct cf_val k[] = {CF_V_TEXT(u->tenant), CF_V_TEXT(u->id)};
	int64_t n = 0, owners = 0;
	CF_TRY(auth_active_owners(tx, &owners));
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE users SET state = state WHERE tenant_id = $1 AND user_id = $2", k,
	                  2, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "no such user"));
	if (u->roles)
		CF_TRY(auth_grants_set(tx, "user", u->id, u->roles, u->limit));
	if (u->state) {
		struct cf_val v[] = {CF_V_TEXT(u->state), CF_V_TEXT(u->tenant), CF_V_TEXT(u->id)};
		/* An invited user stays invited until set up; re-enabling one keeps that. */
		CF_TRY(cf_tx_exec(tx,
		                  strcmp(u->state, "disabled") == 0
		                          ? "UPDATE users SET state = $1 WHERE tenant_id = $2"
		                            " AND user_id = $3"
		                          : "UPDATE users SET state = CASE WHEN password IS NULL"
		                            " THEN 'invited' ELSE $1 END WHERE tenant_id = $2"
		                            " AND user_id = $3",
		                  v, 3, NULL));
		/* IA10: disabling ends every session of the user at once. */
		if (strcmp(u->state, "disabled") == 0)
			CF_TRY(cf_tx_exec(
			        tx, "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2", k,
			        2, NULL));
	}
	CF_TRY(auth_owner_kept(tx, owners));
	return cf_audit_append(tx, &u->audit);
}

cf_err cf_auth_user_update(struct cf_auth *a, const struct cf_auth_call *c,
                           const struct cf_tenant_ref *t, const char *id, const json_t *roles,
                           const char *state, json_t **out)
{
	CF_ENSURE(!state || strcmp(state, "active") == 0 || strcmp(state, "disabled") == 0,
	          cf_err_at(CF_E_INVALID_VALUE, "state", "enum",
	                    "state must be 'active' or 'disabled'"));
	struct update_tx u = {.tenant = t->id, .id = id, .state = state, .roles = roles};
	u.limit = auth_grant_limit(c);
	const char *action = state && strcmp(state, "disabled") == 0 ? "user.disable"
	                     : roles                                 ? "user.roles"
	                                                             : "user.update";
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, action, id, CF_OUTCOME_OK, CF_OK, &u.audit));
	CF_TRY(cf_store_write_wait(a->store, t->id, update_fn, &u));
	return cf_auth_user_get(a, t, id, out);
}

static cf_err delete_fn(struct cf_tx *tx, void *ctx)
{
	struct update_tx *u = ctx;
	struct cf_val k[] = {CF_V_TEXT(u->tenant), CF_V_TEXT(u->id)};
	int64_t n = 0, owners = 0;
	CF_TRY(auth_active_owners(tx, &owners));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM users WHERE tenant_id = $1 AND user_id = $2", k, 2, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "no such user"));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2", k, 2,
	                  NULL));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM auth_links WHERE tenant_id = $1 AND user_id = $2", k, 2,
	                  NULL));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM password_history WHERE tenant_id = $1 AND user_id = $2",
	                  k, 2, NULL));
	CF_TRY(auth_grants_set(tx, "user", u->id, NULL, 0));
	CF_TRY(auth_owner_kept(tx, owners));
	return cf_audit_append(tx, &u->audit);
}

cf_err cf_auth_user_delete(struct cf_auth *a, const struct cf_auth_call *c,
                           const struct cf_tenant_ref *t, const char *id)
{
	struct update_tx u = {.tenant = t->id, .id = id};
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "user.delete", id, CF_OUTCOME_OK, CF_OK,
	                             &u.audit));
	return cf_store_write_wait(a->store, t->id, delete_fn, &u);
}

/* --- password history (IA3) ----------------------------------------------------------- */
struct history_q {
	const char *tenant, *user;
	unsigned n;
	char phc[CF_AUTH_HISTORY_MAX][160];
	size_t count;
};

static cf_err history_row(const struct cf_row *row, void *ctx)
{
	struct history_q *q = ctx;
	if (q->count < q->n && !cf_row_is_null(row, 0))
		cf_span_to_str(cf_row_blob(row, 0), q->phc[q->count++], sizeof q->phc[0]);
	return CF_OK;
}

static cf_err history_read(struct cf_tx *tx, void *ctx)
{
	struct history_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user), CF_V_INT(q->n - 1)};
	CF_TRY(cf_tx_query(tx, "SELECT password FROM users WHERE tenant_id = $1 AND user_id = $2",
	                   v, 2, history_row, q));
	return cf_tx_query(tx,
	                   "SELECT phc FROM password_history WHERE tenant_id = $1 AND user_id = $2"
	                   " ORDER BY changed_at DESC, phc DESC LIMIT $3",
	                   v, 3, history_row, q);
}

cf_err auth_history_check(struct cf_auth *a, const char *tenant, const char *user, unsigned n,
                          struct cf_span pw)
{
	if (n == 0)
		return CF_OK;
	struct history_q q = {.tenant = tenant, .user = user, .n = n};
	cf_err err = cf_store_read(a->store, tenant, history_read, &q);
	for (size_t i = 0; err == CF_OK && i < q.count; i++) {
		cf_err v = auth_verify_password(a, q.phc[i], pw);
		if (v == CF_OK)
			err = cf_err_fail(CF_E_WEAK_PASSWORD,
			                  "the password must not be one of the last %u used", n);
		else if (v != CF_E_INTEGRITY)
			err = v;
	}
	cf_wipe(q.phc, sizeof q.phc);
	return err;
}

cf_err auth_history_push(struct cf_tx *tx, const char *user, int64_t now, unsigned n)
{
	const char *t = cf_tx_tenant(tx);
	/* Every parameter is used by its statement (PostgreSQL types each one). */
	struct cf_val v[] = {CF_V_TEXT(t), CF_V_TEXT(user), CF_V_INT(n ? n - 1 : 0)};
	struct cf_val w[] = {CF_V_TEXT(t), CF_V_TEXT(user), CF_V_INT(now)};
	if (n > 1)
		CF_TRY(cf_tx_exec(
		        tx,
		        "INSERT INTO password_history (tenant_id, user_id, phc, changed_at)"
		        " SELECT tenant_id, user_id, password, CAST($3 AS BIGINT) FROM users"
		        " WHERE tenant_id = $1 AND user_id = $2 AND password IS NOT NULL"
		        " ON CONFLICT DO NOTHING",
		        w, 3, NULL));
	/* Only what the policy keeps: turning the history off forgets it. */
	return cf_tx_exec(tx,
	                  "DELETE FROM password_history WHERE tenant_id = $1 AND user_id = $2"
	                  " AND phc NOT IN (SELECT phc FROM password_history WHERE tenant_id = $1"
	                  " AND user_id = $2 ORDER BY changed_at DESC, phc DESC LIMIT $3)",
	                  v, 3, NULL);
}

/* --- setup links ------------------------------------------------------------------------- */
struct link_q {
	uint8_t mac[CF_HMAC_LEN];
	bool found, used;
	int64_t expires;
	char user[USER_ID_LEN + 1];
	char email[EMAIL_MAX + 1];
	char state[16];
	char phc[160];
	int64_t now;
	const char *tenant;
	unsigned history;
	struct cf_audit_prepared audit;
};

static cf_err link_row(const struct cf_row *row, void *ctx)
{
	struct link_q *q = ctx;
	q->found = true;
	cf_span_to_str(cf_row_blob(row, 0), q->user, sizeof q->user);
	q->expires = cf_row_int(row, 1);
	q->used = !cf_row_is_null(row, 2);
	cf_span_to_str(cf_row_blob(row, 3), q->email, sizeof q->email);
	cf_span_to_str(cf_row_blob(row, 4), q->state, sizeof q->state);
	return CF_OK;
}

static cf_err link_read(struct cf_tx *tx, void *ctx)
{
	struct link_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_BLOB(q->mac, sizeof q->mac)};
	return cf_tx_query(tx,
	                   "SELECT l.user_id, l.expires_at, l.used_at, u.email, u.state"
	                   " FROM auth_links l JOIN users u"
	                   " ON u.tenant_id = l.tenant_id AND u.user_id = l.user_id"
	                   " WHERE l.tenant_id = $1 AND l.mac = $2",
	                   v, 2, link_row, q);
}

static cf_err link_use(struct cf_tx *tx, void *ctx)
{
	struct link_q *q = ctx;
	struct cf_val v[] = {CF_V_INT(q->now), CF_V_TEXT(q->tenant),
	                     CF_V_BLOB(q->mac, sizeof q->mac)};
	int64_t n = 0;
	/* Single use, even against two requests racing with the same token. */
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE auth_links SET used_at = $1 WHERE tenant_id = $2 AND mac = $3"
	                  " AND used_at IS NULL",
	                  v, 3, &n));
	CF_ENSURE(n == 1,
	          cf_err_fail(CF_E_BAD_CREDENTIALS, "the link is invalid, used or expired"));
	CF_TRY(auth_history_push(tx, q->user, q->now, q->history));
	struct cf_val u[] = {CF_V_TEXT(q->phc), CF_V_INT(q->now), CF_V_TEXT(q->tenant),
	                     CF_V_TEXT(q->user)};
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE users SET password = $1, password_at = $2, state = 'active'"
	                  " WHERE tenant_id = $3 AND user_id = $4 AND state <> 'disabled'",
	                  u, 4, &n));
	CF_ENSURE(n == 1,
	          cf_err_fail(CF_E_BAD_CREDENTIALS, "the link is invalid, used or expired"));
	/* A new password ends every session the old one opened. */
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user)};
	CF_TRY(cf_tx_exec(tx, "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2", k, 2,
	                  NULL));
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_auth_setup(struct cf_auth *a, const struct cf_auth_call *c, const struct cf_tenant_ref *t,
                     const char *token, struct cf_span pw)
{
	struct link_q q = {.tenant = t->id, .now = (int64_t)time(NULL)};
	struct cf_throttle_who tw = {t->id, "setup", c->source};
	CF_TRY(auth_throttle_gate(a, c, &tw));
	size_t tl = token ? strlen(token) : 0;
	cf_err err = tl >= 40 && tl <= 64 ? auth_mac(a, t->id, "link", cf_span_str(token), q.mac)
	                                  : CF_E_BAD_CREDENTIALS;
	if (err == CF_OK)
		err = cf_store_read(a->store, t->id, link_read, &q);
	if (err == CF_OK && (!q.found || q.used || q.now >= q.expires))
		err = CF_E_BAD_CREDENTIALS;
	if (err == CF_E_BAD_CREDENTIALS) {
		auth_throttle_failed(a->throttle, &tw);
		CF_TRY(cf_auth_audit_record(a, c, t->id, "user.setup", q.found ? q.user : "-",
		                            CF_OUTCOME_DENIED, err));
		return cf_err_fail(CF_E_BAD_CREDENTIALS, "the link is invalid, used or expired");
	}
	CF_TRY(err);
	CF_TRY(cf_auth_password_check(a, t->id, q.email, pw));
	struct auth_pw_policy pol;
	CF_TRY(auth_password_policy(a, t->id, &pol));
	q.history = pol.history;
	CF_TRY(auth_history_check(a, t->id, q.user, pol.history, pw));
	CF_TRY(auth_hash_password(a, pw, q.phc));
	struct cf_auth_call self = {.request_id = c->request_id, .source = c->source};
	err = cf_auth_audit_prepare(a, &self, t->id, "user.setup", q.user, CF_OUTCOME_OK, CF_OK,
	                            &q.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, t->id, link_use, &q);
	cf_wipe(q.phc, sizeof q.phc);
	return err;
}

/* --- login ---------------------------------------------------------------------------------- */
struct login_q {
	const char *tenant, *email;
	bool found;
	char user[CF_AUTH_ID_MAX + 1];
	char mail[EMAIL_MAX + 1];
	char state[16];
	char phc[160];
	char new_phc[160];
	bool renewed; /* new_phc is a new password (IA3), not a rehash */
	unsigned history;
	uint8_t mac[CF_HMAC_LEN];
	int64_t now, expires, password_at;
	struct cf_audit_prepared audit;
	/* the second factor used by a login */
	struct cf_auth *a;
	int64_t totp_step;
	const char *recovery;
};

static cf_err login_row(const struct cf_row *row, void *ctx)
{
	struct login_q *q = ctx;
	q->found = true;
	cf_span_to_str(cf_row_blob(row, 0), q->user, sizeof q->user);
	cf_span_to_str(cf_row_blob(row, 1), q->state, sizeof q->state);
	if (!cf_row_is_null(row, 2))
		cf_span_to_str(cf_row_blob(row, 2), q->phc, sizeof q->phc);
	cf_span_to_str(cf_row_blob(row, 3), q->mail, sizeof q->mail);
	q->password_at = cf_row_is_null(row, 4) ? 0 : cf_row_int(row, 4);
	return CF_OK;
}

/* The user by email (a login) or by id (a password change: email NULL). */
static cf_err login_read(struct cf_tx *tx, void *ctx)
{
	struct login_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->email ? q->email : q->user)};
	return cf_tx_query(
	        tx,
	        q->email ? "SELECT user_id, state, password, email, password_at FROM users"
	                   " WHERE tenant_id = $1 AND email = $2"
	                 : "SELECT user_id, state, password, email, password_at FROM users"
	                   " WHERE tenant_id = $1 AND user_id = $2",
	        v, 2, login_row, q);
}

static cf_err login_write(struct cf_tx *tx, void *ctx)
{
	struct login_q *q = ctx;
	struct cf_val s[] = {CF_V_TEXT(q->tenant), CF_V_BLOB(q->mac, sizeof q->mac),
	                     CF_V_TEXT(q->user), CF_V_INT(q->now), CF_V_INT(q->expires)};
	/* IA6: the code's step (or the recovery code) is used in the same transaction that
	 * opens the session, so two logins racing with one code cannot both succeed. */
	if (q->totp_step)
		CF_TRY(auth_totp_use(tx, q->user, q->totp_step));
	if (q->recovery)
		CF_TRY(auth_recovery_use(q->a, tx, q->user, q->recovery, q->now));
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO sessions (tenant_id, mac, user_id, created_at, seen_at,"
	                  " expires_at, auth_at) VALUES ($1, $2, $3, $4, $4, $5, $4)",
	                  s, 5, NULL));
	struct cf_val u[] = {CF_V_INT(q->now), CF_V_TEXT(q->tenant), CF_V_TEXT(q->user)};
	CF_TRY(cf_tx_exec(
	        tx, "UPDATE users SET last_login_at = $1 WHERE tenant_id = $2 AND user_id = $3", u,
	        3, NULL));
	if (q->renewed) {
		/* IA3: an expired password replaced at login. */
		CF_TRY(auth_history_push(tx, q->user, q->now, q->history));
		struct cf_val r[] = {CF_V_TEXT(q->new_phc), CF_V_INT(q->now), CF_V_TEXT(q->tenant),
		                     CF_V_TEXT(q->user)};
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE users SET password = $1, password_at = $2"
		                  " WHERE tenant_id = $3 AND user_id = $4",
		                  r, 4, NULL));
		/* As for any change: whoever knew the old password is out. */
		struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user),
		                     CF_V_BLOB(q->mac, sizeof q->mac)};
		CF_TRY(cf_tx_exec(tx,
		                  "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2"
		                  " AND mac <> $3",
		                  k, 3, NULL));
	} else if (q->new_phc[0]) {
		/* IA3: the parameters changed since this hash was made: keep the new one. */
		struct cf_val r[] = {CF_V_TEXT(q->new_phc), CF_V_TEXT(q->tenant),
		                     CF_V_TEXT(q->user)};
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE users SET password = $1 WHERE tenant_id = $2"
		                  " AND user_id = $3",
		                  r, 3, NULL));
	}
	return cf_audit_append(tx, &q->audit);
}

/* The second factor, once the password is right (IA6). */
static cf_err second_factor(struct cf_auth *a, const struct cf_auth_call *c,
                            const struct cf_tenant_ref *t, const struct cf_login *in,
                            struct login_q *q)
{
	bool enrolled = false;
	CF_TRY(auth_totp_state(a, t->id, q->user, &enrolled));
	if (!enrolled)
		return CF_OK;
	cf_err err = CF_E_MFA_REQUIRED;
	if (in->code)
		err = auth_totp_check(a, t->id, q->user, in->code, true, &q->totp_step);
	else if (in->recovery_code) {
		size_t n = strlen(in->recovery_code);
		q->recovery = in->recovery_code;
		err = n == 19 ? CF_OK : CF_E_BAD_CREDENTIALS; /* checked when used */
	}
	if (err == CF_OK)
		return CF_OK;
	cf_err_detail_clear();
	CF_TRY(cf_auth_audit_record(a, c, t->id, "auth.login", q->user, CF_OUTCOME_DENIED, err));
	if (err == CF_E_MFA_REQUIRED)
		return cf_err_fail(err, "this account needs its TOTP code (\"code\") or a recovery "
		                        "code (\"recovery_code\")");
	CF_ENSURE(err == CF_E_BAD_CREDENTIALS, err);
	return cf_err_fail(err, "wrong or reused code");
}

/* IA3: a password older than the tenant's maximum age must be replaced to log in: with
 * new_password, checked like any new one, it is (in the login's transaction). */
static cf_err expiry(struct cf_auth *a, const struct cf_auth_call *c, const struct cf_tenant_ref *t,
                     const struct cf_login *in, struct login_q *q)
{
	struct auth_pw_policy pol;
	CF_TRY(auth_password_policy(a, t->id, &pol));
	q->history = pol.history;
	bool expired =
	        pol.max_age_days && q->now - q->password_at > (int64_t)pol.max_age_days * 86400;
	if (!expired)
		return CF_OK;
	if (!in->new_password.len) {
		CF_TRY(cf_auth_audit_record(a, c, t->id, "auth.login", q->user, CF_OUTCOME_DENIED,
		                            CF_E_PASSWORD_EXPIRED));
		return cf_err_fail(CF_E_PASSWORD_EXPIRED,
		                   "the password is older than %u days: log in again with "
		                   "new_password",
		                   pol.max_age_days);
	}
	CF_ENSURE(!(in->new_password.len == in->password.len &&
	            memcmp(in->new_password.ptr, in->password.ptr, in->password.len) == 0),
	          cf_err_fail(CF_E_WEAK_PASSWORD, "the new password must differ from the old"));
	CF_TRY(cf_auth_password_check(a, t->id, q->mail, in->new_password));
	CF_TRY(auth_history_check(a, t->id, q->user, pol.history, in->new_password));
	CF_TRY(auth_hash_password(a, in->new_password, q->new_phc));
	q->renewed = true;
	return CF_OK;
}

cf_err cf_auth_login(struct cf_auth *a, const struct cf_auth_call *c, const struct cf_tenant_ref *t,
                     const struct cf_login *in, char cookie[CF_AUTH_COOKIE_MAX], json_t **out)
{
	const char *email = in->email;
	struct cf_span pw = in->password;
	char em[EMAIL_MAX + 1] = "";
	struct login_q q = {.tenant = t->id, .email = em, .now = (int64_t)time(NULL), .a = a};
	cf_err err = pw.len <= 256 ? email_norm(email, em) : CF_E_BAD_CREDENTIALS;
	cf_err_detail_clear();
	/* IA5: during a delay the password is not even checked (and the answer does not
	 * depend on whether the account exists). */
	struct cf_throttle_who tw = {t->id, em[0] ? em : "-", c->source};
	CF_TRY(auth_throttle_gate(a, c, &tw));
	if (err == CF_OK)
		err = cf_store_read(a->store, t->id, login_read, &q);
	CF_ENSURE(err == CF_OK || err == CF_E_INVALID_VALUE || err == CF_E_BAD_CREDENTIALS, err);
	/* IA5: the same Argon2 work whether or not the user exists, is active, or has set a
	 * password; the same answer for every failure. */
	bool usable = q.found && strcmp(q.state, "active") == 0 && q.phc[0];
	cf_err v = auth_verify_password(a, usable ? q.phc : a->dummy_phc, pw);
	if (!usable || v != CF_OK) {
		cf_wipe(q.phc, sizeof q.phc);
		CF_ENSURE(usable ? v == CF_E_INTEGRITY : true, v);
		auth_throttle_failed(a->throttle, &tw);
		CF_TRY(cf_auth_audit_record(a, c, t->id, "auth.login", q.found ? q.user : em,
		                            CF_OUTCOME_DENIED, CF_E_BAD_CREDENTIALS));
		return cf_err_fail(CF_E_BAD_CREDENTIALS, "wrong email or password");
	}
	cf_err mfa = second_factor(a, c, t, in, &q);
	if (mfa == CF_E_BAD_CREDENTIALS)
		auth_throttle_failed(a->throttle, &tw);
	if (mfa == CF_OK && cf_argon2id_needs_rehash(q.phc, &a->argon2))
		err = auth_hash_password(a, pw, q.new_phc);
	cf_wipe(q.phc, sizeof q.phc);
	CF_TRY(mfa);
	CF_TRY(err);
	CF_TRY(expiry(a, c, t, in, &q));
	char secret[64];
	CF_TRY(auth_secret("", SECRET_LEN, secret, sizeof secret));
	err = auth_mac(a, t->id, "session", cf_span_str(secret), q.mac);
	q.expires = q.now + (int64_t)a->session_max;
	struct cf_principal who = {.kind = strcmp(t->id, CF_OPS_REALM) == 0 ? CF_PRINCIPAL_OPERATOR
	                                                                    : CF_PRINCIPAL_USER,
	                           .tenant = *t};
	(void)snprintf(who.id, sizeof who.id, "%s", q.user);
	struct cf_auth_call self = {.request_id = c->request_id, .source = c->source, .who = &who};
	if (err == CF_OK)
		err = cf_auth_audit_prepare(a, &self, t->id, "auth.login", q.user, CF_OUTCOME_OK,
		                            CF_OK, &q.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, t->id, login_write, &q);
	if (err == CF_E_BAD_CREDENTIALS) {
		/* The code or recovery code lost a race or was used: refused and audited. */
		cf_err_detail_clear();
		cf_wipe(secret, sizeof secret);
		auth_throttle_failed(a->throttle, &tw);
		CF_TRY(cf_auth_audit_record(a, c, t->id, "auth.login", q.user, CF_OUTCOME_DENIED,
		                            err));
		return cf_err_fail(err, "wrong or reused code");
	}
	if (err == CF_OK)
		auth_throttle_passed(a->throttle, &tw);
	uint8_t csrf[CF_HMAC_LEN];
	if (err == CF_OK)
		err = auth_mac(a, t->id, "csrf", cf_span_str(secret), csrf);
	char csrf_text[44];
	if (err == CF_OK) {
		cf_b64url_encode(csrf, 24, csrf_text);
		(void)snprintf(cookie, CF_AUTH_COOKIE_MAX, "%s.%s", t->id, secret);
		*out = json_pack("{s:s, s:s, s:s, s:I}", "user", q.user, "tenant", t->name,
		                 "csrf_token", csrf_text, "expires_at", (json_int_t)q.expires);
		if (!*out)
			err = CF_E_NOMEM;
	}
	cf_wipe(secret, sizeof secret);
	cf_wipe(q.new_phc, sizeof q.new_phc);
	return err;
}

static cf_err logout_fn(struct cf_tx *tx, void *ctx)
{
	struct login_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_BLOB(q->mac, sizeof q->mac)};
	CF_TRY(cf_tx_exec(tx, "DELETE FROM sessions WHERE tenant_id = $1 AND mac = $2", v, 2,
	                  NULL));
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_auth_logout(struct cf_auth *a, const struct cf_auth_call *c)
{
	const struct cf_principal *p = c->who;
	CF_ENSURE(cf_principal_is_person(p) && p->via_cookie,
	          cf_err_fail(CF_E_INVALID, "only a login session can log out"));
	struct login_q q = {.tenant = p->tenant.id};
	CF_ENSURE(cf_hex_decode(p->sid_mac, sizeof q.mac, q.mac), CF_E_INTERNAL);
	CF_TRY(cf_auth_audit_prepare(a, c, p->tenant.id, "auth.logout", p->id, CF_OUTCOME_OK, CF_OK,
	                             &q.audit));
	return cf_store_write_wait(a->store, p->tenant.id, logout_fn, &q);
}

/* --- password change ------------------------------------------------------------------------ */
static cf_err change_write(struct cf_tx *tx, void *ctx)
{
	struct login_q *q = ctx;
	CF_TRY(auth_history_push(tx, q->user, q->now, q->history));
	struct cf_val u[] = {CF_V_TEXT(q->new_phc), CF_V_INT(q->now), CF_V_TEXT(q->tenant),
	                     CF_V_TEXT(q->user)};
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE users SET password = $1, password_at = $2 WHERE tenant_id = $3"
	                  " AND user_id = $4",
	                  u, 4, NULL));
	/* Every other session ends: whoever knew the old password is out. */
	struct cf_val s[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user),
	                     CF_V_BLOB(q->mac, sizeof q->mac)};
	CF_TRY(cf_tx_exec(
	        tx, "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND mac <> $3", s,
	        3, NULL));
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_auth_password_change(struct cf_auth *a, const struct cf_auth_call *c,
                               struct cf_span current, struct cf_span next)
{
	const struct cf_principal *p = c->who;
	CF_ENSURE(cf_principal_is_person(p) && p->via_cookie,
	          cf_err_fail(CF_E_FORBIDDEN, "only a user in a login session changes a password"));
	struct login_q q = {.tenant = p->tenant.id, .now = (int64_t)time(NULL)};
	(void)snprintf(q.user, sizeof q.user, "%s", p->id);
	CF_ENSURE(cf_hex_decode(p->sid_mac, sizeof q.mac, q.mac), CF_E_INTERNAL);
	struct cf_throttle_who tw = {p->tenant.id, p->id, c->source};
	CF_TRY(auth_throttle_gate(a, c, &tw));
	CF_TRY(cf_store_read(a->store, p->tenant.id, login_read, &q));
	cf_err v = q.found && q.phc[0] && current.len <= 256
	                   ? auth_verify_password(a, q.phc, current)
	                   : CF_E_INTEGRITY;
	cf_wipe(q.phc, sizeof q.phc);
	if (v == CF_E_INTEGRITY) {
		/* The request's own audit entry records the refusal (the route's). */
		auth_throttle_failed(a->throttle, &tw);
		return cf_err_fail(CF_E_BAD_CREDENTIALS, "the current password is wrong");
	}
	CF_TRY(v);
	CF_TRY(cf_auth_password_check(a, p->tenant.id, q.mail, next));
	struct auth_pw_policy pol;
	CF_TRY(auth_password_policy(a, p->tenant.id, &pol));
	q.history = pol.history;
	CF_TRY(auth_history_check(a, p->tenant.id, p->id, pol.history, next));
	CF_TRY(auth_hash_password(a, next, q.new_phc));
	cf_err err = cf_auth_audit_prepare(a, c, p->tenant.id, "user.password", p->id,
	                                   CF_OUTCOME_OK, CF_OK, &q.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, p->tenant.id, change_write, &q);
	cf_wipe(q.new_phc, sizeof q.new_phc);
	return err;
}

/* --- sessions ----------------------------------------------------------------------------------
 */
struct sess_q {
	const struct cf_principal *p;
	json_t *arr;
	/* revoking: the id to find, the user, and what was found */
	const char *tenant, *user, *id;
	uint8_t mac[CF_HMAC_LEN];
	bool found, all;
	struct cf_audit_prepared audit;
};

static cf_err sess_row(const struct cf_row *row, void *ctx)
{
	struct sess_q *q = ctx;
	struct cf_span mac = cf_row_blob(row, 0);
	char id[17], full[2 * CF_HMAC_LEN + 1] = "";
	cf_hex_encode(mac.ptr, mac.len < 8 ? mac.len : 8, id);
	if (mac.len == CF_HMAC_LEN)
		cf_hex_encode(mac.ptr, mac.len, full);
	if (q->id) { /* looking for one */
		if (strcmp(id, q->id) == 0 && mac.len == CF_HMAC_LEN) {
			memcpy(q->mac, mac.ptr, CF_HMAC_LEN);
			q->found = true;
		}
		return CF_OK;
	}
	/* The id is the first 8 bytes of the stored HMAC: it reveals nothing of the cookie. */
	json_t *o =
	        json_pack("{s:s, s:I, s:I, s:I, s:b}", "id", id, "created_at",
	                  (json_int_t)cf_row_int(row, 1), "seen_at", (json_int_t)cf_row_int(row, 2),
	                  "expires_at", (json_int_t)cf_row_int(row, 3), "current",
	                  q->p && strcmp(full, q->p->sid_mac) == 0);
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(q->arr, o) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err sess_fn(struct cf_tx *tx, void *ctx)
{
	struct sess_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user)};
	return cf_tx_query(tx,
	                   "SELECT mac, created_at, seen_at, expires_at FROM sessions"
	                   " WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at",
	                   v, 2, sess_row, q);
}

static cf_err sess_revoke_fn(struct cf_tx *tx, void *ctx)
{
	struct sess_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user),
	                     CF_V_BLOB(q->mac, sizeof q->mac)};
	CF_TRY(cf_tx_exec(tx,
	                  q->all ? "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2"
	                         : "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2"
	                           " AND mac = $3",
	                  v, q->all ? 2 : 3, NULL));
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_auth_session_revoke(struct cf_auth *a, const struct cf_auth_call *c, const char *id)
{
	const struct cf_principal *p = c->who;
	CF_ENSURE(cf_principal_is_person(p), cf_err_fail(CF_E_NOT_FOUND, "no such session"));
	struct sess_q q = {.p = p, .tenant = p->tenant.id, .user = p->id, .id = id};
	CF_ENSURE(id && strlen(id) == 16, cf_err_fail(CF_E_NOT_FOUND, "no such session"));
	CF_TRY(cf_store_read(a->store, q.tenant, sess_fn, &q));
	CF_ENSURE(q.found, cf_err_fail(CF_E_NOT_FOUND, "no such session"));
	CF_TRY(cf_auth_audit_prepare(a, c, q.tenant, "session.revoke", id, CF_OUTCOME_OK, CF_OK,
	                             &q.audit));
	return cf_store_write_wait(a->store, q.tenant, sess_revoke_fn, &q);
}

cf_err cf_auth_user_sessions_revoke(struct cf_auth *a, const struct cf_auth_call *c,
                                    const struct cf_tenant_ref *t, const char *user)
{
	json_t *u = NULL;
	CF_TRY(cf_auth_user_get(a, t, user, &u));
	json_decref(u);
	struct sess_q q = {.tenant = t->id, .user = user, .all = true};
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "session.revoke_all", user, CF_OUTCOME_OK, CF_OK,
	                             &q.audit));
	return cf_store_write_wait(a->store, t->id, sess_revoke_fn, &q);
}

cf_err cf_auth_session_list(struct cf_auth *a, const struct cf_principal *p, json_t **out)
{
	struct sess_q q = {.p = p, .arr = json_array(), .tenant = p->tenant.id, .user = p->id};
	CF_ENSURE(q.arr, CF_E_NOMEM);
	if (!cf_principal_is_person(p)) { /* an API client has tokens, not sessions */
		*out = q.arr;
		return CF_OK;
	}
	cf_err err = cf_store_read(a->store, p->tenant.id, sess_fn, &q);
	if (err) {
		json_decref(q.arr);
		return err;
	}
	*out = q.arr;
	return CF_OK;
}

/* --- access review (IA10) ------------------------------------------------------------------ */
static cf_err mfa_user_row(const struct cf_row *row, void *ctx)
{
	struct cf_span id = cf_row_blob(row, 0);
	return json_object_setn_new(ctx, (const char *)id.ptr, id.len, json_true()) == 0
	               ? CF_OK
	               : CF_E_NOMEM;
}

static cf_err mfa_users_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	return cf_tx_query(tx,
	                   "SELECT user_id FROM mfa_totp WHERE tenant_id = $1 AND confirmed = 1", v,
	                   1, mfa_user_row, ctx);
}

/* Dormant: no use (login, token) in `days`, counting from creation when never used. */
static bool dormant(const json_t *o, const char *used_key, int64_t cutoff)
{
	const json_t *used = json_object_get(o, used_key);
	int64_t last = json_is_integer(used) ? json_integer_value(used)
	                                     : json_integer_value(json_object_get(o, "created_at"));
	return last < cutoff;
}

cf_err cf_auth_access_review(struct cf_auth *a, const struct cf_tenant_ref *t,
                             unsigned dormant_days, json_t **out)
{
	json_t *users = NULL, *clients = NULL, *mfa = json_object();
	CF_ENSURE(mfa, CF_E_NOMEM);
	cf_err err = cf_auth_user_list(a, t, &users);
	if (err == CF_OK)
		err = cf_auth_client_list(a, t, &clients);
	if (err == CF_OK)
		err = cf_store_read(a->store, t->id, mfa_users_fn, mfa);
	int64_t now = (int64_t)time(NULL), cutoff = now - (int64_t)dormant_days * 86400;
	for (size_t i = 0; err == CF_OK && i < json_array_size(users); i++) {
		json_t *u = json_array_get(users, i);
		const char *id = json_string_value(json_object_get(u, "id"));
		if (json_object_set_new(u, "mfa", json_boolean(json_object_get(mfa, id) != NULL)) ||
		    json_object_set_new(u, "dormant",
		                        json_boolean(dormant(u, "last_login_at", cutoff))))
			err = CF_E_NOMEM;
	}
	for (size_t i = 0; err == CF_OK && i < json_array_size(clients); i++) {
		json_t *c = json_array_get(clients, i);
		if (json_object_set_new(c, "dormant",
		                        json_boolean(dormant(c, "last_used_at", cutoff))))
			err = CF_E_NOMEM;
	}
	json_decref(mfa);
	if (err == CF_OK) {
		*out = json_pack("{s:s, s:I, s:i, s:o, s:o}", "tenant", t->name, "generated_at",
		                 (json_int_t)now, "dormant_days", (int)dormant_days, "users", users,
		                 "clients", clients);
		return *out ? CF_OK : CF_E_NOMEM;
	}
	json_decref(users);
	json_decref(clients);
	return err;
}

/* --- password reset (IA5) ------------------------------------------------------------------- */
#define RESET_TTL_S (15 * 60)

struct reset_q {
	const char *tenant, *email;
	bool found;
	char user[CF_AUTH_ID_MAX + 1], state[16];
	uint8_t mac[CF_HMAC_LEN];
	int64_t now;
	struct cf_audit_prepared audit;
};

static cf_err reset_row(const struct cf_row *row, void *ctx)
{
	struct reset_q *q = ctx;
	q->found = true;
	cf_span_to_str(cf_row_blob(row, 0), q->user, sizeof q->user);
	cf_span_to_str(cf_row_blob(row, 1), q->state, sizeof q->state);
	return CF_OK;
}

static cf_err reset_read(struct cf_tx *tx, void *ctx)
{
	struct reset_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->email)};
	return cf_tx_query(tx,
	                   "SELECT user_id, state FROM users WHERE tenant_id = $1 AND email = $2",
	                   v, 2, reset_row, q);
}

static cf_err reset_write(struct cf_tx *tx, void *ctx)
{
	struct reset_q *q = ctx;
	if (q->found) {
		/* One reset link at a time: a new one replaces the last. */
		struct cf_val d[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user)};
		CF_TRY(cf_tx_exec(tx,
		                  "DELETE FROM auth_links WHERE tenant_id = $1 AND user_id = $2"
		                  " AND kind = 'reset'",
		                  d, 2, NULL));
		struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_BLOB(q->mac, sizeof q->mac),
		                     CF_V_TEXT(q->user), CF_V_INT(q->now + RESET_TTL_S)};
		CF_TRY(cf_tx_exec(
		        tx,
		        "INSERT INTO auth_links (tenant_id, mac, user_id, kind, expires_at)"
		        " VALUES ($1, $2, $3, 'reset', $4)",
		        v, 4, NULL));
	}
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_auth_reset_request(struct cf_auth *a, const struct cf_auth_call *c,
                             const struct cf_tenant_ref *t, const char *email)
{
	char em[EMAIL_MAX + 1];
	CF_TRY(email_norm(email, em));
	/* Throttled per email and address, so that nobody floods a mailbox; every request
	 * counts. */
	char acct[EMAIL_MAX + 8];
	(void)snprintf(acct, sizeof acct, "reset:%s", em);
	struct cf_throttle_who tw = {t->id, acct, c->source};
	CF_TRY(auth_throttle_gate(a, c, &tw));
	auth_throttle_failed(a->throttle, &tw);
	struct reset_q q = {.tenant = t->id, .email = em, .now = (int64_t)time(NULL)};
	CF_TRY(cf_store_read(a->store, t->id, reset_read, &q));
	q.found = q.found && strcmp(q.state, "active") == 0;
	char token[64] = "";
	cf_err err = auth_secret("", SECRET_LEN, token, sizeof token);
	if (err == CF_OK)
		err = auth_mac(a, t->id, "link", cf_span_str(token), q.mac);
	/* The same work and the same answer whether or not the account exists; the entry
	 * says which (the tenant's admins may want to know who is asked about). */
	if (err == CF_OK)
		err = cf_auth_audit_prepare(
		        a, c, t->id, "user.reset_request", q.found ? q.user : em,
		        q.found ? CF_OUTCOME_OK : CF_OUTCOME_DENIED, CF_E_NOT_FOUND, &q.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, t->id, reset_write, &q);
	if (err == CF_OK && q.found)
		auth_notify_later(a->notifier, em, "reset", t->name, token, q.now + RESET_TTL_S);
	cf_wipe(token, sizeof token);
	return err;
}

/* --- step-up (TR3) --------------------------------------------------------------------------- */
cf_err cf_auth_reauth(struct cf_auth *a, const struct cf_auth_call *c, const struct cf_login *in,
                      char cookie[CF_AUTH_COOKIE_MAX], json_t **out)
{
	const struct cf_principal *p = c->who;
	CF_ENSURE(cf_principal_is_person(p) && p->via_cookie,
	          cf_err_fail(CF_E_INVALID, "only a login session re-authenticates"));
	/* The session's own user, whatever email the body names. */
	struct login_q q = {.tenant = p->tenant.id};
	(void)snprintf(q.user, sizeof q.user, "%s", p->id);
	CF_TRY(cf_store_read(a->store, p->tenant.id, login_read, &q));
	cf_wipe(q.phc, sizeof q.phc);
	CF_ENSURE(q.found, CF_E_UNAUTHENTICATED);
	struct cf_login li = {q.mail, in->password, in->code, in->recovery_code, in->new_password};
	CF_TRY(cf_auth_login(a, c, &p->tenant, &li, cookie, out));
	/* The old session goes: a step-up never leaves two. */
	struct login_q old = {.tenant = p->tenant.id};
	CF_ENSURE(cf_hex_decode(p->sid_mac, sizeof old.mac, old.mac), CF_E_INTERNAL);
	CF_TRY(cf_auth_audit_prepare(a, c, p->tenant.id, "auth.reauth", p->id, CF_OUTCOME_OK, CF_OK,
	                             &old.audit));
	return cf_store_write_wait(a->store, p->tenant.id, logout_fn, &old);
}
