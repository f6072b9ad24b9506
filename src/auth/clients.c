/* coffre — API clients and their access tokens (IA8, IA9): a client's secret is shown
 * once and stored as an HMAC; the client credentials grant gives a short-lived JWT
 * signed with the deployment's token key. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>

#include "auth/internal.h"

#define CLIENT_ID_LEN   17 /* "c" and 16 hex digits */
#define CLIENT_NAME_MAX 100

struct client_tx {
	const char *tenant, *id, *name;
	const json_t *roles;
	cf_perms limit;
	char origins[CF_AUTH_ORIGINS_MAX]; /* space-separated */
	uint8_t mac[CF_HMAC_LEN];
	int64_t now;
	bool found, active;
	struct cf_audit_prepared audit;
};

static cf_err create_fn(struct cf_tx *tx, void *ctx)
{
	struct client_tx *c = ctx;
	struct cf_val v[] = {CF_V_TEXT(c->tenant), CF_V_TEXT(c->id),
	                     CF_V_TEXT(c->name),   CF_V_BLOB(c->mac, sizeof c->mac),
	                     CF_V_INT(c->now),     CF_V_TEXT(c->origins)};
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO clients (tenant_id, client_id, name, secret_mac, state,"
	                  " created_at, origins) VALUES ($1, $2, $3, $4, 'active', $5, $6)",
	                  v, 6, NULL));
	CF_TRY(auth_grants_set(tx, "client", c->id, c->roles, c->limit));
	return cf_audit_append(tx, &c->audit);
}

/* IA8: "https://host[:port]" each, at most 8: the origins a browser client calls from. */
static cf_err origins_parse(const json_t *list, char out[CF_AUTH_ORIGINS_MAX])
{
	out[0] = '\0';
	if (!list)
		return CF_OK;
	CF_ENSURE(json_is_array(list) && json_array_size(list) <= 8,
	          cf_err_at(CF_E_WRONG_TYPE, "allowed_origins", "array",
	                    "allowed_origins is an array of at most 8 origins"));
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		const char *o = json_string_value(json_array_get(list, i));
		size_t len = o ? strlen(o) : 0;
		bool ok = len > 8 && len <= 255 && strncmp(o, "https://", 8) == 0;
		for (size_t k = 8; ok && k < len; k++)
			ok = (o[k] >= 'a' && o[k] <= 'z') || (o[k] >= '0' && o[k] <= '9') ||
			     o[k] == '-' || o[k] == '.' || o[k] == ':' || o[k] == '[' ||
			     o[k] == ']';
		char at[48];
		(void)snprintf(at, sizeof at, "allowed_origins[%zu]", i);
		CF_ENSURE(ok,
		          cf_err_at(CF_E_INVALID_VALUE, at, "origin",
		                    "%s must be https://host[:port] in lower case, without a path",
		                    at));
		CF_ENSURE(n + len + 2 <= CF_AUTH_ORIGINS_MAX,
		          cf_err_at(CF_E_OUT_OF_RANGE, "allowed_origins", "max",
		                    "allowed_origins is too long"));
		if (n)
			out[n++] = ' ';
		memcpy(out + n, o, len + 1);
		n += len;
	}
	return CF_OK;
}

bool cf_auth_origin_allowed(const char *origins, const char *origin)
{
	size_t ol = origin ? strlen(origin) : 0;
	for (const char *p = origins; ol && p && *p;) {
		const char *end = strchr(p, ' ');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == ol && memcmp(p, origin, n) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

cf_err cf_auth_client_create(struct cf_auth *a, const struct cf_auth_call *c,
                             const struct cf_tenant_ref *t, const char *name, const json_t *roles,
                             const json_t *origins, json_t **out)
{
	size_t nl = name ? strlen(name) : 0;
	CF_ENSURE(nl >= 1 && nl <= CLIENT_NAME_MAX,
	          cf_err_at(CF_E_INVALID_VALUE, "name", "name", "name must be 1 to 100 bytes"));
	for (size_t i = 0; i < nl; i++)
		CF_ENSURE((unsigned char)name[i] >= 0x20 && name[i] != 0x7f,
		          cf_err_at(CF_E_INVALID_VALUE, "name", "name",
		                    "name must not hold control characters"));
	char id[CLIENT_ID_LEN + 1] = "c";
	CF_TRY(cf_random_hex(id + 1, sizeof id - 1, 8));
	char secret[64];
	CF_TRY(auth_secret("cs_", 32, secret, sizeof secret));
	struct client_tx ct = {.tenant = t->id,
	                       .id = id,
	                       .name = name,
	                       .roles = roles,
	                       .limit = auth_grant_limit(c),
	                       .now = (int64_t)time(NULL)};
	cf_err err = origins_parse(origins, ct.origins);
	if (err == CF_OK)
		err = auth_mac(a, t->id, "client", cf_span_str(secret), ct.mac);
	if (err == CF_OK)
		err = cf_auth_audit_prepare(a, c, t->id, "client.create", id, CF_OUTCOME_OK, CF_OK,
		                            &ct.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, t->id, create_fn, &ct);
	if (err == CF_OK) {
		*out = json_pack("{s:s, s:s, s:s, s:O*, s:s, s:I, s:O*}", "client_id", id,
		                 "client_secret", secret, "name", name, "roles", roles, "state",
		                 "active", "created_at", (json_int_t)ct.now, "allowed_origins",
		                 origins);
		if (!*out)
			err = CF_E_NOMEM;
	}
	cf_wipe(secret, sizeof secret);
	return err;
}

static cf_err list_row(const struct cf_row *row, void *ctx)
{
	struct cf_span id = cf_row_blob(row, 0), name = cf_row_blob(row, 1),
	               st = cf_row_blob(row, 2), orig = cf_row_blob(row, 5);
	json_t *origins = json_array();
	size_t start = 0;
	for (size_t i = 0; origins && i <= orig.len; i++)
		if (i == orig.len || orig.ptr[i] == ' ') {
			if (i > start)
				(void)json_array_append_new(
				        origins,
				        json_stringn((const char *)orig.ptr + start, i - start));
			start = i + 1;
		}
	json_t *o = json_pack("{s:s%, s:s%, s:s%, s:I, s:o, s:o*}", "client_id", id.ptr, id.len,
	                      "name", name.ptr, name.len, "state", st.ptr, st.len, "created_at",
	                      (json_int_t)cf_row_int(row, 3), "last_used_at",
	                      cf_row_is_null(row, 4) ? json_null()
	                                             : json_integer((json_int_t)cf_row_int(row, 4)),
	                      "allowed_origins", origins);
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(ctx, o) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err list_fn(struct cf_tx *tx, void *ctx)
{
	json_t *arr = ctx;
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT client_id, name, state, created_at, last_used_at, origins"
	                   " FROM clients"
	                   " WHERE tenant_id = $1 ORDER BY created_at, client_id",
	                   v, 1, list_row, arr));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char names[128];
		cf_perms perms = 0;
		CF_TRY(auth_grants_load(tx, "client",
		                        json_string_value(json_object_get(o, "client_id")), &perms,
		                        names, sizeof names));
		json_t *roles = json_array();
		CF_ENSURE(roles, CF_E_NOMEM);
		char *save = NULL;
		for (char *r = strtok_r(names, ",", &save); r; r = strtok_r(NULL, ",", &save))
			(void)json_array_append_new(roles, json_string(r));
		CF_ENSURE(json_object_set_new(o, "roles", roles) == 0, CF_E_NOMEM);
	}
	return CF_OK;
}

cf_err cf_auth_client_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out)
{
	return auth_read_array(a, t->id, list_fn, out);
}

static cf_err disable_fn(struct cf_tx *tx, void *ctx)
{
	struct client_tx *c = ctx;
	struct cf_val v[] = {CF_V_TEXT(c->tenant), CF_V_TEXT(c->id)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE clients SET state = 'disabled' WHERE tenant_id = $1"
	                  " AND client_id = $2",
	                  v, 2, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "no such client"));
	return cf_audit_append(tx, &c->audit);
}

cf_err cf_auth_client_disable(struct cf_auth *a, const struct cf_auth_call *c,
                              const struct cf_tenant_ref *t, const char *id)
{
	struct client_tx ct = {.tenant = t->id, .id = id};
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "client.disable", id, CF_OUTCOME_OK, CF_OK,
	                             &ct.audit));
	return cf_store_write_wait(a->store, t->id, disable_fn, &ct);
}

/* --- the client credentials grant ------------------------------------------------------------ */
static cf_err secret_row(const struct cf_row *row, void *ctx)
{
	struct client_tx *c = ctx;
	struct cf_span mac = cf_row_blob(row, 0);
	c->found = true;
	/* Constant time: the stored HMAC against the one of what was given. */
	c->active = cf_span_eq(cf_row_blob(row, 1), cf_span_str("active")) &&
	            mac.len == sizeof c->mac && gnutls_memcmp(mac.ptr, c->mac, sizeof c->mac) == 0;
	cf_span_to_str(cf_row_blob(row, 2), c->origins, sizeof c->origins);
	return CF_OK;
}

static cf_err secret_read(struct cf_tx *tx, void *ctx)
{
	struct client_tx *c = ctx;
	struct cf_val v[] = {CF_V_TEXT(c->tenant), CF_V_TEXT(c->id)};
	return cf_tx_query(tx,
	                   "SELECT secret_mac, state, origins FROM clients WHERE tenant_id = $1"
	                   " AND client_id = $2",
	                   v, 2, secret_row, c);
}

static cf_err used_fn(struct cf_tx *tx, void *ctx)
{
	struct client_tx *c = ctx;
	struct cf_val v[] = {CF_V_INT(c->now), CF_V_TEXT(c->tenant), CF_V_TEXT(c->id)};
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE clients SET last_used_at = $1 WHERE tenant_id = $2"
	                  " AND client_id = $3",
	                  v, 3, NULL));
	return cf_audit_append(tx, &c->audit);
}

static cf_err sign_token(void *ctx, struct cf_span msg, uint8_t sig[CF_ED25519_SIG])
{
	return cf_keys_sign(ctx, CF_DKEY_TOKEN, msg, sig);
}

cf_err cf_auth_token_issue(struct cf_auth *a, const struct cf_auth_call *c,
                           const struct cf_tenant_ref *t, const char *client_id,
                           struct cf_span secret, const char *origin, json_t **out)
{
	struct client_tx ct = {.tenant = t->id, .id = client_id, .now = (int64_t)time(NULL)};
	struct cf_throttle_who tw = {t->id, client_id ? client_id : "-", c->source};
	CF_TRY(auth_throttle_gate(a, c, &tw));
	bool shaped = client_id && strlen(client_id) == CLIENT_ID_LEN && secret.len >= 40 &&
	              secret.len <= 64;
	cf_err err = shaped ? auth_mac(a, t->id, "client", secret, ct.mac) : CF_OK;
	if (err == CF_OK && shaped)
		err = cf_store_read(a->store, t->id, secret_read, &ct);
	CF_TRY(err);
	if (!ct.active) {
		auth_throttle_failed(a->throttle, &tw);
		CF_TRY(cf_auth_audit_record(a, c, t->id, "auth.token", shaped ? client_id : "-",
		                            CF_OUTCOME_DENIED, CF_E_BAD_CREDENTIALS));
		return cf_err_fail(CF_E_BAD_CREDENTIALS,
		                   "unknown client, wrong secret or disabled");
	}
	auth_throttle_passed(a->throttle, &tw);
	/* IA8: from a browser, only from the origins the client allows. */
	if (origin && !cf_auth_origin_allowed(ct.origins, origin)) {
		CF_TRY(cf_auth_audit_record(a, c, t->id, "auth.token", client_id, CF_OUTCOME_DENIED,
		                            CF_E_FORBIDDEN));
		return cf_err_fail(CF_E_FORBIDDEN, "this client is not allowed from this origin");
	}
	struct cf_jwt_claims cl = {.iat = ct.now, .exp = ct.now + (int64_t)a->token_ttl};
	(void)snprintf(cl.sub, sizeof cl.sub, "%s", client_id);
	(void)snprintf(cl.tenant, sizeof cl.tenant, "%s", t->id);
	CF_TRY(cf_random_hex(cl.jti, sizeof cl.jti, 16));
	uint8_t pub[CF_ED25519_PUB];
	char kid[17], tok[1024];
	CF_TRY(cf_keys_public(a->keys, CF_DKEY_TOKEN, pub));
	cf_jwt_kid(pub, kid);
	CF_TRY(cf_jwt_make(kid, a->public_url, &cl, sign_token, a->keys, tok, sizeof tok));
	struct cf_principal who = {.kind = CF_PRINCIPAL_CLIENT, .tenant = *t};
	(void)snprintf(who.id, sizeof who.id, "%s", client_id);
	struct cf_auth_call self = {.request_id = c->request_id, .source = c->source, .who = &who};
	CF_TRY(cf_auth_audit_prepare(a, &self, t->id, "auth.token", cl.jti, CF_OUTCOME_OK, CF_OK,
	                             &ct.audit));
	CF_TRY(cf_store_write_wait(a->store, t->id, used_fn, &ct));
	*out = json_pack("{s:s, s:s, s:I}", "access_token", tok, "token_type", "Bearer",
	                 "expires_in", (json_int_t)a->token_ttl);
	cf_wipe(tok, sizeof tok);
	return *out ? CF_OK : CF_E_NOMEM;
}

struct revoke_tx {
	const struct cf_principal *p;
	struct cf_audit_prepared audit;
};

static cf_err revoke_fn(struct cf_tx *tx, void *ctx)
{
	struct revoke_tx *r = ctx;
	struct cf_val v[] = {CF_V_TEXT(r->p->tenant.id), CF_V_TEXT(r->p->jti),
	                     CF_V_INT(r->p->token_exp)};
	cf_err e = cf_tx_exec(tx,
	                      "INSERT INTO tokens_revoked (tenant_id, jti, expires_at)"
	                      " VALUES ($1, $2, $3)",
	                      v, 3, NULL);
	CF_ENSURE(e == CF_OK || e == CF_E_CONFLICT, e);
	/* Revoked tokens past their expiry no longer need remembering. */
	struct cf_val d[] = {CF_V_TEXT(r->p->tenant.id), CF_V_INT((int64_t)time(NULL))};
	CF_TRY(cf_tx_exec(tx, "DELETE FROM tokens_revoked WHERE tenant_id = $1 AND expires_at < $2",
	                  d, 2, NULL));
	return cf_audit_append(tx, &r->audit);
}

cf_err cf_auth_token_revoke(struct cf_auth *a, const struct cf_auth_call *c)
{
	const struct cf_principal *p = c->who;
	CF_ENSURE(p && p->kind == CF_PRINCIPAL_CLIENT,
	          cf_err_fail(CF_E_INVALID, "only an access token can be revoked this way"));
	struct revoke_tx r = {.p = p};
	CF_TRY(cf_auth_audit_prepare(a, c, p->tenant.id, "auth.revoke", p->jti, CF_OUTCOME_OK,
	                             CF_OK, &r.audit));
	return cf_store_write_wait(a->store, p->tenant.id, revoke_fn, &r);
}

bool auth_token_overlap(const struct cf_auth *a, const struct cf_deploy_pubs *k, int64_t now)
{
	/* IA9: a retired token key checks tokens as long as one it signed may live: the
	 * tokens' lifetime after the rotation, and a minute of clock skew. */
	return k->has_previous && now < k->created_at + (int64_t)a->token_ttl + 60;
}

static json_t *jwk(const uint8_t pub[CF_ED25519_PUB])
{
	char kid[17], x[48];
	cf_jwt_kid(pub, kid);
	cf_b64url_encode(pub, CF_ED25519_PUB, x);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", x,
	                 "kid", kid, "alg", "EdDSA", "use", "sig");
}

cf_err cf_auth_jwks(struct cf_auth *a, json_t **out)
{
	struct cf_deploy_pubs k;
	CF_TRY(cf_keys_public_keys(a->keys, CF_DKEY_TOKEN, &k));
	json_t *keys = json_pack("[o]", jwk(k.current));
	if (keys && auth_token_overlap(a, &k, (int64_t)time(NULL)) &&
	    json_array_append_new(keys, jwk(k.previous)) != 0) {
		json_decref(keys);
		keys = NULL;
	}
	*out = keys ? json_pack("{s:o}", "keys", keys) : NULL;
	return *out ? CF_OK : CF_E_NOMEM;
}
