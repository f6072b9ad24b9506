/* coffre — auth: its state, the shared helpers (HMACs of secrets, the bounded password
 * hashing, roles and grants, audit entries), and the per-request steps: authenticate,
 * then authorize. */
#include <liboath/oath.h>
#include <pwquality.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/internal.h"

#define CACHE_SLOTS  4096 /* verified tokens kept (a power of two) */
#define GRANTS_SLOTS 1024 /* principals' permissions kept (a power of two) */

struct grants_slot {
	char tenant[CF_TENANT_ID_MAX + 1], id[CF_AUTH_ID_MAX + 1];
	bool client, used;
	int64_t version;
	cf_perms perms;
	char roles[128];
};

struct token_slot {
	uint8_t hash[CF_SHA256_LEN];
	struct cf_jwt_claims claims;
	uint32_t key_version; /* the token key's version that signed it */
	bool used;
};

cf_err cf_auth_new(const struct cf_auth_opts *o, struct cf_auth **out)
{
	struct cf_auth *a = calloc(1, sizeof *a);
	CF_ENSURE(a, CF_E_NOMEM);
	a->store = o->store;
	a->keys = o->keys;
	a->session_idle = o->session_idle ? o->session_idle : 1800;
	a->session_max = o->session_max ? o->session_max : 43200;
	a->token_ttl = o->token_ttl ? o->token_ttl : 900;
	a->argon2 = o->argon2.m_kib ? o->argon2 : cf_argon2_defaults;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	a->hash_free = o->hash_threads         ? o->hash_threads
	               : ncpu > 0 && ncpu < 64 ? (unsigned)ncpu
	                                       : 2;
	(void)snprintf(a->public_url, sizeof a->public_url, "%s",
	               o->public_url ? o->public_url : "https://localhost");
	pthread_mutex_init(&a->hash_mu, NULL);
	pthread_cond_init(&a->hash_cv, NULL);
	pthread_mutex_init(&a->pwq_mu, NULL);
	pthread_mutex_init(&a->cache_mu, NULL);
	pthread_mutex_init(&a->grants_mu, NULL);
	cf_err err = CF_E_NOMEM;
	a->cache = calloc(CACHE_SLOTS, sizeof *a->cache);
	a->grants = calloc(GRANTS_SLOTS, sizeof *a->grants);
	if (auth_throttle_new(&a->throttle) != CF_OK || auth_refusals_new(&a->refusals) != CF_OK)
		goto fail;
	err = auth_notifier_new(o, &a->notifier);
	if (err)
		goto fail;
	err = CF_E_INTERNAL;
	if (oath_init() != OATH_OK)
		goto fail;
	err = CF_E_NOMEM;
	pwquality_settings_t *pwq = pwquality_default_settings();
	a->pwq = pwq;
	if (!a->cache || !a->grants || !pwq)
		goto fail;
	/* Length is ours to check (cf_auth_password_check); pwquality checks the rest:
	 * dictionary words and common passwords (cracklib), the user's name in it. No
	 * character-class credits: NIST SP 800-63B advises against composition rules. */
	static const int zero[] = {PWQ_SETTING_DIG_CREDIT,       PWQ_SETTING_UP_CREDIT,
	                           PWQ_SETTING_LOW_CREDIT,       PWQ_SETTING_OTH_CREDIT,
	                           PWQ_SETTING_MIN_CLASS,        PWQ_SETTING_MAX_REPEAT,
	                           PWQ_SETTING_MAX_CLASS_REPEAT, PWQ_SETTING_MAX_SEQUENCE};
	for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
		(void)pwquality_set_int_value(pwq, zero[i], 0);
	(void)pwquality_set_int_value(pwq, PWQ_SETTING_MIN_LENGTH, 6);
	(void)pwquality_set_int_value(pwq, PWQ_SETTING_DIFF_OK, 0);
	(void)pwquality_set_int_value(pwq, PWQ_SETTING_GECOS_CHECK, 0);
	(void)pwquality_set_int_value(pwq, PWQ_SETTING_DICT_CHECK, 1);
	(void)pwquality_set_int_value(pwq, PWQ_SETTING_USER_CHECK, 1);
	/* The stand-in hash for unknown users: a random password nobody knows. */
	char junk[33];
	err = cf_random_hex(junk, sizeof junk, 16);
	if (err == CF_OK)
		err = cf_argon2id_hash(cf_span_str(junk), &a->argon2, a->dummy_phc,
		                       sizeof a->dummy_phc);
	cf_wipe(junk, sizeof junk);
	if (err)
		goto fail;
	*out = a;
	return CF_OK;
fail:
	cf_auth_free(&a);
	return err;
}

void cf_auth_free(struct cf_auth **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_auth *a = *pp;
	*pp = NULL;
	if (a->pwq)
		pwquality_free_settings(a->pwq);
	if (a->cache) {
		cf_wipe(a->cache, CACHE_SLOTS * sizeof *a->cache);
		free(a->cache);
	}
	free(a->grants);
	auth_notifier_free(&a->notifier);
	auth_throttle_free(&a->throttle);
	auth_refusals_free(&a->refusals);
	pthread_mutex_destroy(&a->hash_mu);
	pthread_cond_destroy(&a->hash_cv);
	pthread_mutex_destroy(&a->pwq_mu);
	pthread_mutex_destroy(&a->cache_mu);
	pthread_mutex_destroy(&a->grants_mu);
	free(a);
}

void cf_auth_set_public_url(struct cf_auth *a, const char *url)
{
	(void)snprintf(a->public_url, sizeof a->public_url, "%s", url);
	if (a->notifier)
		auth_notifier_set_url(a->notifier, url);
}

bool cf_auth_same_origin(struct cf_auth *a, const char *origin)
{
	/* public_url is "https://host[:port]" with no path (coffred builds it so). */
	size_t n = strlen(a->public_url);
	while (n && a->public_url[n - 1] == '/')
		n--;
	return origin && strlen(origin) == n && strncmp(origin, a->public_url, n) == 0;
}

/* --- helpers --------------------------------------------------------------------------- */
cf_err auth_mac(struct cf_auth *a, const char *tenant_id, const char *label, struct cf_span secret,
                uint8_t out[CF_HMAC_LEN])
{
	/* The label keeps a session id from ever matching a client secret or a link. */
	uint8_t buf[256];
	size_t ln = strlen(label);
	CF_ENSURE(ln + 1 + secret.len <= sizeof buf, CF_E_INVALID);
	memcpy(buf, label, ln);
	buf[ln] = 0;
	memcpy(buf + ln + 1, secret.ptr, secret.len);
	uint32_t version = 0;
	cf_err err = cf_keys_mac(a->keys, tenant_id, CF_PURPOSE_TOKEN,
	                         (struct cf_span){buf, ln + 1 + secret.len}, out, &version);
	cf_wipe(buf, sizeof buf);
	return err;
}

cf_err auth_secret(const char *prefix, size_t n, char *out, size_t cap)
{
	uint8_t raw[48];
	size_t pl = strlen(prefix);
	CF_ENSURE(n <= sizeof raw && pl + 4 * ((n + 2) / 3) + 1 <= cap, CF_E_INVALID);
	CF_TRY(cf_crypto_random_key(raw, n));
	(void)snprintf(out, cap, "%s", prefix);
	cf_b64url_encode(raw, n, out + pl);
	cf_wipe(raw, sizeof raw);
	return CF_OK;
}

static void hash_slot_take(struct cf_auth *a)
{
	pthread_mutex_lock(&a->hash_mu);
	while (a->hash_free == 0)
		pthread_cond_wait(&a->hash_cv, &a->hash_mu);
	a->hash_free--;
	pthread_mutex_unlock(&a->hash_mu);
}

static void hash_slot_give(struct cf_auth *a)
{
	pthread_mutex_lock(&a->hash_mu);
	a->hash_free++;
	pthread_cond_signal(&a->hash_cv);
	pthread_mutex_unlock(&a->hash_mu);
}

cf_err auth_hash_password(struct cf_auth *a, struct cf_span pw, char phc[160])
{
	hash_slot_take(a);
	cf_err err = cf_argon2id_hash(pw, &a->argon2, phc, 160);
	hash_slot_give(a);
	return err;
}

cf_err auth_verify_password(struct cf_auth *a, const char *phc, struct cf_span pw)
{
	hash_slot_take(a);
	cf_err err = cf_argon2id_verify(phc, pw);
	hash_slot_give(a);
	return err;
}

unsigned cf_password_classes(struct cf_span pw)
{
	bool lower = false, upper = false, digit = false, other = false;
	for (size_t i = 0; i < pw.len; i++) {
		uint8_t ch = pw.ptr[i];
		lower = lower || (ch >= 'a' && ch <= 'z');
		upper = upper || (ch >= 'A' && ch <= 'Z');
		digit = digit || (ch >= '0' && ch <= '9');
		/* Anything else, non-ASCII letters included, counts as other. */
		other = other || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                   (ch >= '0' && ch <= '9'));
	}
	return (unsigned)lower + (unsigned)upper + (unsigned)digit + (unsigned)other;
}

cf_err cf_auth_password_check(struct cf_auth *a, const char *tenant, const char *email,
                              struct cf_span pw)
{
	/* IA3: at least 12 characters, up to 256 bytes (passphrases welcome), not the
	 * email, not a dictionary word or a common password. The rule is named; the
	 * password is never echoed. */
	size_t chars = 0;
	for (size_t i = 0; i < pw.len; i++)
		chars += (pw.ptr[i] & 0xC0) != 0x80;
	struct auth_pw_policy pol;
	CF_TRY(auth_password_policy(a, tenant, &pol));
	unsigned min = pol.min;
	CF_ENSURE(chars >= min, cf_err_fail(CF_E_WEAK_PASSWORD,
	                                    "the password must have at least %u characters", min));
	CF_ENSURE(cf_password_classes(pw) >= pol.classes,
	          cf_err_fail(CF_E_WEAK_PASSWORD,
	                      "the password must mix at least %u of: lower case, upper case, "
	                      "digits, other characters",
	                      pol.classes));
	CF_ENSURE(pw.len <= 256,
	          cf_err_fail(CF_E_WEAK_PASSWORD, "the password must be at most 256 bytes"));
	CF_ENSURE(!memchr(pw.ptr, '\0', pw.len),
	          cf_err_fail(CF_E_WEAK_PASSWORD, "the password must not contain NUL"));
	CF_ENSURE(!(email && strlen(email) == pw.len &&
	            strncasecmp(email, (const char *)pw.ptr, pw.len) == 0),
	          cf_err_fail(CF_E_WEAK_PASSWORD, "the password must not be the email"));
	char buf[257];
	memcpy(buf, pw.ptr, pw.len);
	buf[pw.len] = '\0';
	char user[128] = "";
	if (email) {
		/* pwquality's user check: the email's local part inside the password. */
		(void)snprintf(user, sizeof user, "%s", email);
		char *at = strchr(user, '@');
		if (at)
			*at = '\0';
	}
	void *aux = NULL;
	pthread_mutex_lock(&a->pwq_mu);
	int rc = pwquality_check(a->pwq, buf, NULL, user[0] ? user : NULL, &aux);
	char msg[PWQ_MAX_ERROR_MESSAGE_LEN] = "";
	if (rc < 0)
		(void)snprintf(msg, sizeof msg, "%s", pwquality_strerror(NULL, 0, rc, aux));
	pthread_mutex_unlock(&a->pwq_mu);
	cf_wipe(buf, sizeof buf);
	if (rc >= 0)
		return CF_OK;
	/* cracklib's messages name the rule ("it is based on a dictionary word"), never the
	 * password; an internal failure of the library is not the user's fault. */
	if (rc == PWQ_ERROR_CRACKLIB_CHECK || rc == PWQ_ERROR_USER_CHECK ||
	    rc == PWQ_ERROR_PALINDROME || rc == PWQ_ERROR_MIN_LENGTH ||
	    rc == PWQ_ERROR_EMPTY_PASSWORD)
		return cf_err_fail(CF_E_WEAK_PASSWORD, "the password is too weak: %s", msg);
	return cf_err_fail(CF_E_INTERNAL, "the password quality check failed (%d)", rc);
}

/* --- tenants --------------------------------------------------------------------------- */
static cf_err tenant_row(const struct cf_row *row, void *ctx)
{
	struct cf_tenant_ref *t = ctx;
	cf_span_to_str(cf_row_blob(row, 0), t->id, sizeof t->id);
	struct cf_span st = cf_row_blob(row, 1);
	t->active = cf_span_eq(st, cf_span_str("active"));
	return CF_OK;
}

cf_err auth_tenant_tx(struct cf_tx *tx, const char *name, struct cf_tenant_ref *out)
{
	struct cf_tenant_ref t = {0};
	CF_ENSURE(strlen(name) <= CF_TENANT_NAME_MAX,
	          cf_err_fail(CF_E_NOT_FOUND, "no such tenant"));
	(void)snprintf(t.name, sizeof t.name, "%s", name);
	struct cf_val v[] = {CF_V_TEXT(name)};
	CF_TRY(cf_tx_query(tx, "SELECT tenant_id, state FROM tenants WHERE name = $1", v, 1,
	                   tenant_row, &t));
	CF_ENSURE(t.id[0], cf_err_fail(CF_E_NOT_FOUND, "no such tenant"));
	CF_ENSURE(t.active, CF_E_TENANT_SUSPENDED);
	*out = t;
	return CF_OK;
}

static cf_err tenant_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_tenant_ref *t = ctx;
	char name[CF_TENANT_NAME_MAX + 1];
	memcpy(name, t->name, sizeof name);
	return auth_tenant_tx(tx, name, t);
}

cf_err cf_auth_tenant(struct cf_auth *a, const char *name, struct cf_tenant_ref *out)
{
	struct cf_tenant_ref t = {0};
	CF_ENSURE(strlen(name) <= CF_TENANT_NAME_MAX,
	          cf_err_fail(CF_E_NOT_FOUND, "no such tenant"));
	(void)snprintf(t.name, sizeof t.name, "%s", name);
	CF_TRY(cf_store_read(a->store, NULL, tenant_fn, &t));
	*out = t;
	return CF_OK;
}

/* --- roles and grants ------------------------------------------------------------------- */
struct role_q {
	bool found;
	int64_t perms;
};

static cf_err role_row(const struct cf_row *row, void *ctx)
{
	struct role_q *q = ctx;
	q->found = true;
	q->perms = cf_row_int(row, 0);
	return CF_OK;
}

cf_err auth_role_perms(struct cf_tx *tx, const char *name, cf_perms *out)
{
	if (cf_role_builtin(name, out))
		return CF_OK;
	struct role_q q = {0};
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx)), CF_V_TEXT(name)};
	CF_TRY(cf_tx_query(tx, "SELECT perms FROM roles WHERE tenant_id = $1 AND name = $2", v, 2,
	                   role_row, &q));
	CF_ENSURE(q.found, CF_E_NOT_FOUND); /* the caller names the field */
	*out = (cf_perms)q.perms & CF_PERMS_ALL;
	return CF_OK;
}

cf_err auth_roles_check(struct cf_tx *tx, const json_t *roles, cf_perms limit)
{
	if (!roles)
		return CF_OK;
	CF_ENSURE(json_is_array(roles) && json_array_size(roles) <= 16,
	          cf_err_at(CF_E_WRONG_TYPE, "roles", "array",
	                    "roles must be an array of at most 16 role names"));
	for (size_t i = 0; i < json_array_size(roles); i++) {
		const json_t *r = json_array_get(roles, i);
		char at[32], shown[64];
		(void)snprintf(at, sizeof at, "roles[%zu]", i);
		CF_ENSURE(json_is_string(r) && json_string_length(r) <= 63,
		          cf_err_at(CF_E_WRONG_TYPE, at, "string", "%s must be a role name", at));
		cf_perms p = 0;
		cf_err e = auth_role_perms(tx, json_string_value(r), &p);
		cf_err_shown(json_string_value(r), shown, sizeof shown);
		CF_ENSURE(e != CF_E_NOT_FOUND,
		          cf_err_at(CF_E_INVALID_VALUE, at, "role", "no role named '%s'", shown));
		CF_TRY(e);
		/* Nobody hands out more than they hold: an admin cannot make an owner. */
		CF_ENSURE((p & ~limit) == 0,
		          cf_err_fail(CF_E_FORBIDDEN,
		                      "the role '%s' grants permissions you do not hold",
		                      json_string_value(r)));
	}
	return CF_OK;
}

cf_err auth_grants_set(struct cf_tx *tx, const char *kind, const char *id, const json_t *roles,
                       cf_perms limit)
{
	CF_TRY(auth_roles_check(tx, roles, limit));
	const char *t = cf_tx_tenant(tx);
	CF_TRY(auth_authz_changed(tx));
	struct cf_val d[] = {CF_V_TEXT(t), CF_V_TEXT(kind), CF_V_TEXT(id)};
	CF_TRY(cf_tx_exec(
	        tx, "DELETE FROM grants WHERE tenant_id = $1 AND kind = $2 AND principal_id = $3",
	        d, 3, NULL));
	for (size_t i = 0; roles && i < json_array_size(roles); i++) {
		struct cf_val v[] = {CF_V_TEXT(t), CF_V_TEXT(kind), CF_V_TEXT(id),
		                     CF_V_TEXT(json_string_value(json_array_get(roles, i)))};
		cf_err e = cf_tx_exec(tx,
		                      "INSERT INTO grants (tenant_id, kind, principal_id, role)"
		                      " VALUES ($1, $2, $3, $4)",
		                      v, 4, NULL);
		CF_ENSURE(e != CF_E_CONFLICT, cf_err_at(CF_E_INVALID_VALUE, "roles", "unique",
		                                        "a role is named twice"));
		CF_TRY(e);
	}
	return CF_OK;
}

cf_err auth_read_array(struct cf_auth *a, const char *tenant, cf_store_fn fn, json_t **out)
{
	json_t *arr = json_array();
	CF_ENSURE(arr, CF_E_NOMEM);
	cf_err err = cf_store_read(a->store, tenant, fn, arr);
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = arr;
	return CF_OK;
}

cf_perms auth_grant_limit(const struct cf_auth_call *c)
{
	/* An operator outside any tenant makes tenants' first owners; inside one (break-
	 * glass) it holds what its grant gives. */
	if (c && c->who && c->who->kind == CF_PRINCIPAL_OPERATOR && !c->who->grant[0])
		return CF_PERMS_ALL;
	return c && c->who ? c->who->perms : CF_PERMS_ALL;
}

struct grants_q {
	struct cf_tx *tx;
	cf_perms perms;
	char *names;
	size_t cap, len;
	cf_err err;
};

static cf_err grant_row(const struct cf_row *row, void *ctx)
{
	struct grants_q *q = ctx;
	char name[64];
	cf_span_to_str(cf_row_blob(row, 0), name, sizeof name);
	size_t n = strlen(name);
	if (q->len + n + 2 <= q->cap) {
		if (q->len)
			q->names[q->len++] = ',';
		memcpy(q->names + q->len, name, n + 1);
		q->len += n;
	}
	cf_perms p = 0;
	/* A custom role deleted meanwhile grants nothing (not an error). */
	if (auth_role_perms(q->tx, name, &p) == CF_OK)
		q->perms |= p;
	cf_err_detail_clear();
	return CF_OK;
}

cf_err auth_grants_load(struct cf_tx *tx, const char *kind, const char *id, cf_perms *perms,
                        char *names, size_t cap)
{
	struct grants_q q = {.tx = tx, .names = names, .cap = cap};
	names[0] = '\0';
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx)), CF_V_TEXT(kind), CF_V_TEXT(id)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT role FROM grants WHERE tenant_id = $1 AND kind = $2"
	                   " AND principal_id = $3 ORDER BY role",
	                   v, 3, grant_row, &q));
	*perms = q.perms;
	return CF_OK;
}

cf_err auth_authz_changed(struct cf_tx *tx)
{
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	return cf_tx_exec(
	        tx,
	        "INSERT INTO authz_versions (tenant_id, version) VALUES ($1, 1)"
	        " ON CONFLICT (tenant_id) DO UPDATE SET version = authz_versions.version + 1",
	        v, 1, NULL);
}

static cf_err count_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

cf_err auth_active_owners(struct cf_tx *tx, int64_t *out)
{
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	*out = 0;
	return cf_tx_query(tx,
	                   "SELECT count(*) FROM users u WHERE u.tenant_id = $1"
	                   " AND u.state = 'active' AND (EXISTS (SELECT 1 FROM grants g"
	                   " WHERE g.tenant_id = $1 AND g.kind = 'user'"
	                   " AND g.principal_id = u.user_id AND g.role = 'owner')"
	                   " OR EXISTS (SELECT 1 FROM group_members m JOIN group_roles r"
	                   " ON r.tenant_id = m.tenant_id AND r.group_name = m.group_name"
	                   " WHERE m.tenant_id = $1 AND m.user_id = u.user_id"
	                   " AND r.role = 'owner'))",
	                   v, 1, count_row, out);
}

/* IA2: nobody, an owner themselves included, leaves a tenant without an active owner:
 * its owners all disabled, demoted or deleted, only break-glass could reach it again. A
 * tenant whose first owner has not set up yet has none to keep. */
cf_err auth_owner_kept(struct cf_tx *tx, int64_t before)
{
	if (before == 0)
		return CF_OK;
	int64_t after = 0;
	CF_TRY(auth_active_owners(tx, &after));
	CF_ENSURE(after > 0, cf_err_fail(CF_E_CONFLICT, "this would leave the tenant without an "
	                                                "active owner: make another owner first"));
	return CF_OK;
}

static cf_err version_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

static size_t grants_index(const char *tenant, const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const char *s = tenant; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	for (const char *s = id; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h & (GRANTS_SLOTS - 1);
}

cf_err auth_principal_grants(struct cf_auth *a, struct cf_tx *tx, struct cf_principal *p,
                             const char *kind)
{
	int64_t version = 0;
	struct cf_val v[] = {CF_V_TEXT(p->tenant.id)};
	CF_TRY(cf_tx_query(tx, "SELECT version FROM authz_versions WHERE tenant_id = $1", v, 1,
	                   version_row, &version));
	return auth_principal_grants_at(a, tx, p, kind, version);
}

cf_err auth_principal_grants_at(struct cf_auth *a, struct cf_tx *tx, struct cf_principal *p,
                                const char *kind, int64_t version)
{
	/* IA1, IA2: roles come from the store, never from a token; what was read is reused
	 * only while the tenant's authorisation version (read in the request's own
	 * transaction) has not moved, on this node or any other. */
	bool client = strcmp(kind, "client") == 0;
	size_t i = grants_index(p->tenant.id, p->id);
	bool hit = false;
	pthread_mutex_lock(&a->grants_mu);
	struct grants_slot *s = &a->grants[i];
	if (s->used && s->version == version && s->client == client &&
	    strcmp(s->tenant, p->tenant.id) == 0 && strcmp(s->id, p->id) == 0) {
		p->perms = s->perms;
		memcpy(p->roles, s->roles, sizeof p->roles);
		hit = true;
	}
	pthread_mutex_unlock(&a->grants_mu);
	if (hit)
		return CF_OK;
	p->perms = 0;
	CF_TRY(auth_grants_load(tx, kind, p->id, &p->perms, p->roles, sizeof p->roles));
	if (!client)
		CF_TRY(auth_group_grants_load(tx, p->id, &p->perms, p->roles, sizeof p->roles));
	pthread_mutex_lock(&a->grants_mu);
	*s = (struct grants_slot){
	        .used = true, .client = client, .version = version, .perms = p->perms};
	memcpy(s->tenant, p->tenant.id, sizeof s->tenant);
	memcpy(s->id, p->id, sizeof s->id);
	memcpy(s->roles, p->roles, sizeof s->roles);
	pthread_mutex_unlock(&a->grants_mu);
	return CF_OK;
}

/* --- audit ------------------------------------------------------------------------------ */
cf_err cf_auth_audit_prepare(struct cf_auth *a, const struct cf_auth_call *c, const char *tenant_id,
                             const char *action, const char *resource, enum cf_outcome outcome,
                             cf_err error, struct cf_audit_prepared *out)
{
	const struct cf_principal *p = c ? c->who : NULL;
	const char *op = c ? c->operator_id : NULL;
	/* The operators' realm writes to the deployment's log (AL5); an operator inside a
	 * tenant (break-glass) to the tenant's. */
	bool realm = tenant_id && strcmp(tenant_id, CF_OPS_REALM) == 0;
	static const enum cf_actor_kind kinds[] = {
	        [CF_PRINCIPAL_NONE] = CF_ACTOR_ANONYMOUS,
	        [CF_PRINCIPAL_USER] = CF_ACTOR_USER,
	        [CF_PRINCIPAL_CLIENT] = CF_ACTOR_CLIENT,
	        [CF_PRINCIPAL_OPERATOR] = CF_ACTOR_OPERATOR,
	};
	struct cf_audit_event ev = {
	        .tenant = realm ? NULL : tenant_id,
	        .actor_kind = p    ? kinds[p->kind]
	                      : op ? CF_ACTOR_OPERATOR
	                           : CF_ACTOR_ANONYMOUS,
	        .actor = p                ? p->id
	                 : op             ? op
	                 : c && c->source ? c->source
	                                  : "-",
	        .action = action,
	        .resource = resource,
	        .outcome = outcome,
	        .error = outcome == CF_OUTCOME_OK ? NULL : cf_err_name(error),
	        .request_id = c ? c->request_id : NULL,
	        .privilege = p && p->roles[0] ? p->roles
	                     : op             ? "operator"
	                                      : NULL,
	};
	return cf_audit_prepare(a->keys, &ev, out);
}

static cf_err append_fn(struct cf_tx *tx, void *ctx)
{
	return cf_audit_append(tx, ctx);
}

cf_err cf_auth_audit_detail(struct cf_auth *a, const struct cf_auth_call *c, const char *tenant_id,
                            const char *action, const char *resource, const char *detail)
{
	struct cf_audit_prepared p;
	CF_TRY(cf_auth_audit_prepare(a, c, tenant_id, action, resource, CF_OUTCOME_OK, CF_OK, &p));
	cf_audit_set_detail(&p, detail);
	return cf_store_write_wait(a->store, tenant_id, append_fn, &p);
}

cf_err cf_auth_audit_record(struct cf_auth *a, const struct cf_auth_call *c, const char *tenant_id,
                            const char *action, const char *resource, enum cf_outcome outcome,
                            cf_err error)
{
	struct cf_audit_prepared p;
	CF_TRY(cf_auth_audit_prepare(a, c, tenant_id, action, resource, outcome, error, &p));
	return cf_store_write_wait(a->store, tenant_id, append_fn, &p);
}

/* --- authenticate ------------------------------------------------------------------------ */
static bool cache_get(struct cf_auth *a, const uint8_t h[CF_SHA256_LEN], int64_t now,
                      struct cf_jwt_claims *out, uint32_t *key_version)
{
	size_t i = ((size_t)h[0] | (size_t)h[1] << 8) & (CACHE_SLOTS - 1);
	bool hit = false;
	pthread_mutex_lock(&a->cache_mu);
	struct token_slot *s = &a->cache[i];
	if (s->used && memcmp(s->hash, h, CF_SHA256_LEN) == 0 && now < s->claims.exp) {
		*out = s->claims;
		*key_version = s->key_version;
		hit = true;
	}
	pthread_mutex_unlock(&a->cache_mu);
	return hit;
}

static void cache_put(struct cf_auth *a, const uint8_t h[CF_SHA256_LEN],
                      const struct cf_jwt_claims *cl, uint32_t key_version)
{
	size_t i = ((size_t)h[0] | (size_t)h[1] << 8) & (CACHE_SLOTS - 1);
	pthread_mutex_lock(&a->cache_mu);
	a->cache[i].used = true;
	memcpy(a->cache[i].hash, h, CF_SHA256_LEN);
	a->cache[i].claims = *cl;
	a->cache[i].key_version = key_version;
	pthread_mutex_unlock(&a->cache_mu);
}

struct who_q {
	struct cf_auth *a;
	struct cf_principal *p;
	uint8_t mac[CF_HMAC_LEN];
	int64_t now;
	bool found, active;
	int64_t seen, expires;
};

static cf_err session_row(const struct cf_row *row, void *ctx)
{
	struct who_q *q = ctx;
	q->found = true;
	cf_span_to_str(cf_row_blob(row, 0), q->p->id, sizeof q->p->id);
	q->seen = cf_row_int(row, 1);
	q->expires = cf_row_int(row, 2);
	q->p->auth_at = cf_row_int(row, 3);
	q->active = cf_span_eq(cf_row_blob(row, 4), cf_span_str("active"));
	return CF_OK;
}

/* Whether a comma-separated role list and a space-separated one share a role. */
static bool roles_meet(const char *held, struct cf_span required)
{
	size_t start = 0;
	for (size_t i = 0; i <= required.len; i++) {
		if (i < required.len && required.ptr[i] != ' ')
			continue;
		size_t n = i - start;
		for (const char *h = held; n && h && *h;) {
			const char *end = strchr(h, ',');
			size_t hn = end ? (size_t)(end - h) : strlen(h);
			if (hn == n && memcmp(h, required.ptr + start, n) == 0)
				return true;
			h = end ? end + 1 : NULL;
		}
		start = i + 1;
	}
	return false;
}

static cf_err mfa_row(const struct cf_row *row, void *ctx)
{
	struct cf_principal *p = ctx;
	p->mfa = cf_row_int(row, 0) > 0;
	bool by_role = !cf_row_is_null(row, 2) && roles_meet(p->roles, cf_row_blob(row, 2));
	p->mfa_pending = !p->mfa && (cf_row_int(row, 1) > 0 || by_role);
	return CF_OK;
}

static cf_err session_fn(struct cf_tx *tx, void *ctx)
{
	struct who_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->p->tenant.id), CF_V_BLOB(q->mac, sizeof q->mac)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT s.user_id, s.seen_at, s.expires_at, s.auth_at, u.state"
	                   " FROM sessions s JOIN users u"
	                   " ON u.tenant_id = s.tenant_id AND u.user_id = s.user_id"
	                   " WHERE s.tenant_id = $1 AND s.mac = $2",
	                   v, 2, session_row, q));
	if (!q->found || !q->active)
		return CF_OK;
	CF_TRY(auth_principal_grants(q->a, tx, q->p, "user"));
	/* IA6: whether the user has TOTP, and whether the tenant requires it. */
	struct cf_val m[] = {CF_V_TEXT(q->p->tenant.id), CF_V_TEXT(q->p->id)};
	return cf_tx_query(tx,
	                   "SELECT (SELECT count(*) FROM mfa_totp WHERE tenant_id = $1"
	                   " AND user_id = $2 AND confirmed = 1), (SELECT count(*) FROM"
	                   " tenant_policy WHERE tenant_id = $1 AND mfa_required = 1),"
	                   " (SELECT mfa_roles FROM tenant_policy WHERE tenant_id = $1)",
	                   m, 2, mfa_row, q->p);
}

static cf_err touch_fn(struct cf_tx *tx, void *ctx)
{
	struct who_q *q = ctx;
	struct cf_val v[] = {CF_V_INT(q->now), CF_V_TEXT(q->p->tenant.id),
	                     CF_V_BLOB(q->mac, sizeof q->mac)};
	return cf_tx_exec(tx, "UPDATE sessions SET seen_at = $1 WHERE tenant_id = $2 AND mac = $3",
	                  v, 3, NULL);
}

static cf_err tenant_by_id_row(const struct cf_row *row, void *ctx)
{
	struct cf_tenant_ref *t = ctx;
	cf_span_to_str(cf_row_blob(row, 0), t->name, sizeof t->name);
	t->active = cf_span_eq(cf_row_blob(row, 1), cf_span_str("active"));
	return CF_OK;
}

static cf_err tenant_by_id(struct cf_tx *tx, struct cf_tenant_ref *t)
{
	struct cf_val v[] = {CF_V_TEXT(t->id)};
	t->name[0] = '\0';
	CF_TRY(cf_tx_query(tx, "SELECT name, state FROM tenants WHERE tenant_id = $1", v, 1,
	                   tenant_by_id_row, t));
	CF_ENSURE(t->name[0], cf_err_fail(CF_E_UNAUTHENTICATED, "the tenant is gone"));
	CF_ENSURE(t->active, CF_E_TENANT_SUSPENDED);
	return CF_OK;
}

static cf_err session_tenant_fn(struct cf_tx *tx, void *ctx)
{
	struct who_q *q = ctx;
	if (strcmp(q->p->tenant.id, CF_OPS_REALM) == 0)
		cf_auth_ops_ref(&q->p->tenant);
	else
		CF_TRY(tenant_by_id(tx, &q->p->tenant));
	return session_fn(tx, ctx);
}

/* Cookie: "<tenant id>.<secret>". */
static cf_err by_cookie(struct cf_auth *a, const char *cookie, struct cf_principal *p)
{
	const char *dot = strchr(cookie, '.');
	size_t tl = dot ? (size_t)(dot - cookie) : 0;
	CF_ENSURE(dot && tl > 0 && tl <= CF_TENANT_ID_MAX && strlen(dot + 1) >= 40 &&
	                  strlen(dot + 1) <= 64,
	          cf_err_fail(CF_E_UNAUTHENTICATED, "the session cookie is malformed"));
	memcpy(p->tenant.id, cookie, tl);
	p->tenant.id[tl] = '\0';
	struct who_q q = {.a = a, .p = p, .now = (int64_t)time(NULL)};
	cf_err err = auth_mac(a, p->tenant.id, "session", cf_span_str(dot + 1), q.mac);
	/* An unknown or deleted tenant in a forged cookie: no key, so no session. */
	CF_ENSURE(err == CF_OK || err == CF_E_SEALED,
	          cf_err_fail(CF_E_UNAUTHENTICATED, "the session has ended; log in again"));
	CF_TRY(err);
	CF_TRY(cf_store_read(a->store, p->tenant.id, session_tenant_fn, &q));
	/* TR3: idle timeout and absolute lifetime. */
	CF_ENSURE(q.found && q.active && q.now < q.expires &&
	                  q.now - q.seen < (int64_t)a->session_idle,
	          cf_err_fail(CF_E_UNAUTHENTICATED, "the session has ended; log in again"));
	p->kind = CF_PRINCIPAL_USER;
	if (strcmp(p->tenant.id, CF_OPS_REALM) == 0) {
		p->kind = CF_PRINCIPAL_OPERATOR;
		p->perms = 0; /* no tenant's data (IA11) */
		(void)snprintf(p->roles, sizeof p->roles, "operator");
	}
	p->via_cookie = true;
	cf_hex_encode(q.mac, sizeof q.mac, p->sid_mac);
	/* The CSRF token is derived from the session: nothing more to store (TR3). */
	uint8_t csrf[CF_HMAC_LEN];
	CF_TRY(auth_mac(a, p->tenant.id, "csrf", cf_span_str(dot + 1), csrf));
	cf_b64url_encode(csrf, 24, p->csrf);
	/* The idle clock moves at most once a minute: not a write per request. */
	if (q.now - q.seen >= 60)
		CF_TRY(cf_store_write_wait(a->store, p->tenant.id, touch_fn, &q));
	return CF_OK;
}

struct client_q {
	struct cf_auth *a;
	struct cf_principal *p;
	bool found, active, revoked;
	int64_t version; /* the tenant's authorisation version */
};

static cf_err client_state_row(const struct cf_row *row, void *ctx)
{
	struct client_q *q = ctx;
	struct cf_tenant_ref *t = &q->p->tenant;
	cf_span_to_str(cf_row_blob(row, 0), t->name, sizeof t->name);
	t->active = cf_span_eq(cf_row_blob(row, 1), cf_span_str("active"));
	q->found = !cf_row_is_null(row, 2);
	q->active = cf_span_eq(cf_row_blob(row, 2), cf_span_str("active"));
	q->revoked = cf_row_int(row, 3) != 0;
	cf_span_to_str(cf_row_blob(row, 4), q->p->origins, sizeof q->p->origins);
	q->version = cf_row_is_null(row, 5) ? 0 : cf_row_int(row, 5);
	return CF_OK;
}

static cf_err client_fn(struct cf_tx *tx, void *ctx)
{
	struct client_q *q = ctx;
	/* The tenant, the client, its token's revocation and the tenant's authorisation
	 * version in one statement: one lookup each, one round trip on PostgreSQL. */
	struct cf_val v[] = {CF_V_TEXT(q->p->tenant.id), CF_V_TEXT(q->p->id), CF_V_TEXT(q->p->jti)};
	q->p->tenant.name[0] = '\0';
	CF_TRY(cf_tx_query(tx,
	                   "SELECT t.name, t.state, c.state, (SELECT count(*) FROM tokens_revoked"
	                   " WHERE tenant_id = $1 AND jti = $3), c.origins,"
	                   " (SELECT version FROM authz_versions WHERE tenant_id = $1)"
	                   " FROM tenants t LEFT JOIN clients c ON c.tenant_id = t.tenant_id"
	                   " AND c.client_id = $2 WHERE t.tenant_id = $1",
	                   v, 3, client_state_row, q));
	CF_ENSURE(q->p->tenant.name[0], cf_err_fail(CF_E_UNAUTHENTICATED, "the tenant is gone"));
	CF_ENSURE(q->p->tenant.active, CF_E_TENANT_SUSPENDED);
	if (!q->found || !q->active || q->revoked)
		return CF_OK;
	return auth_principal_grants_at(q->a, tx, q->p, "client", q->version);
}

static cf_err by_token(struct cf_auth *a, const char *tok, struct cf_principal *p)
{
	struct cf_span t = cf_span_str(tok);
	int64_t now = (int64_t)time(NULL);
	uint8_t h[CF_SHA256_LEN];
	CF_TRY(cf_sha256v(&t, 1, h));
	struct cf_jwt_claims cl;
	struct cf_deploy_pubs k;
	CF_TRY(cf_keys_public_keys(a->keys, CF_DKEY_TOKEN, &k));
	uint32_t signer = 0;
	/* A cached token holds while the key that signed it does (IA9). */
	bool hit = cache_get(a, h, now, &cl, &signer) &&
	           (signer == k.version ||
	            (signer + 1 == k.version && auth_token_overlap(a, &k, now)));
	if (!hit) {
		char kid[17];
		signer = k.version;
		cf_jwt_kid(k.current, kid);
		cf_err err = cf_jwt_verify(t, k.current, kid, a->public_url, now, &cl);
		/* IA9: after a rotation, tokens the retired key signed hold until they expire. */
		if (err == CF_E_INVALID_TOKEN && auth_token_overlap(a, &k, now)) {
			char keep[256];
			(void)snprintf(keep, sizeof keep, "%s", cf_err_detail());
			cf_jwt_kid(k.previous, kid);
			if (cf_jwt_verify(t, k.previous, kid, a->public_url, now, &cl) == CF_OK) {
				err = CF_OK;
				signer = k.version - 1;
			} else
				err = cf_err_fail(CF_E_INVALID_TOKEN, "%s", keep);
		}
		CF_TRY(err);
		cache_put(a, h, &cl, signer);
	}
	/* Roles, the client's state and revocation come from the store on every request:
	 * a disabled client's token stops at once (IA9, IA10). */
	(void)snprintf(p->tenant.id, sizeof p->tenant.id, "%s", cl.tenant);
	(void)snprintf(p->id, sizeof p->id, "%s", cl.sub);
	(void)snprintf(p->jti, sizeof p->jti, "%s", cl.jti);
	p->token_exp = cl.exp;
	p->auth_at = cl.iat;
	struct client_q q = {.a = a, .p = p};
	CF_TRY(cf_store_read(a->store, p->tenant.id, client_fn, &q));
	CF_ENSURE(q.found && q.active && !q.revoked,
	          cf_err_fail(CF_E_INVALID_TOKEN, "the access token is revoked or its client "
	                                          "disabled"));
	p->kind = CF_PRINCIPAL_CLIENT;
	return CF_OK;
}

cf_err cf_auth_authenticate(struct cf_auth *a, const struct cf_auth_creds *cr,
                            struct cf_principal *out)
{
	struct cf_principal p = {0};
	cf_err err;
	if (cr->authorization) {
		/* RFC 6750 §2.1: "Bearer" (any case), one space, the token. */
		CF_ENSURE(strncasecmp(cr->authorization, "Bearer ", 7) == 0,
		          cf_err_fail(CF_E_INVALID_TOKEN, "the Authorization header must be "
		                                          "'Bearer <token>'"));
		err = by_token(a, cr->authorization + 7, &p);
	} else if (cr->cookie) {
		err = by_cookie(a, cr->cookie, &p);
	} else {
		return cf_err_fail(CF_E_UNAUTHENTICATED,
		                   "log in (session cookie) or send an access token (Bearer)");
	}
	if (err == CF_OK)
		*out = p;
	cf_wipe(&p, sizeof p);
	return err;
}

cf_err cf_auth_authorize(const struct cf_principal *p, const char *tenant, unsigned perm)
{
	CF_ENSURE(p && p->kind != CF_PRINCIPAL_NONE, CF_E_UNAUTHENTICATED);
	/* IA11: operators' routes are theirs alone; a tenant's routes are an operator's only
	 * through break-glass (cf_auth_bg_enter has set the tenant then). */
	bool operator= p->kind == CF_PRINCIPAL_OPERATOR;
	if (perm == CF_AUTH_OPERATOR)
		CF_ENSURE(operator&& !p->grant[0],
		          cf_err_fail(CF_E_FORBIDDEN, "this is for the deployment's operators"));
	if (tenant && operator)
		CF_ENSURE(p->grant[0],
		          cf_err_fail(CF_E_FORBIDDEN, "an operator reaches a tenant's data only "
		                                      "through an approved break-glass grant"));
	/* TI1: a principal of tenant A gets 404 for anything of tenant B, as if it did not
	 * exist: the same answer as for a tenant that does not. */
	if (tenant)
		CF_ENSURE(strcmp(tenant, p->tenant.name) == 0,
		          cf_err_fail(CF_E_NOT_FOUND, "no such tenant"));
	if (perm < CF_P_COUNT)
		CF_ENSURE(p->perms & CF_PERM(perm),
		          cf_err_fail(CF_E_FORBIDDEN, "this needs the permission %s",
		                      cf_perm_name((enum cf_perm)perm)));
	return CF_OK;
}

json_t *cf_principal_json(const struct cf_principal *p)
{
	json_t *roles = json_array();
	char buf[sizeof p->roles];
	memcpy(buf, p->roles, sizeof buf);
	char *save = NULL;
	for (char *r = strtok_r(buf, ",", &save); roles && r; r = strtok_r(NULL, ",", &save))
		if (json_array_append_new(roles, json_string(r)) != 0) {
			json_decref(roles);
			roles = NULL;
		}
	static const char *const kinds[] = {"none", "user", "client", "operator"};
	return json_pack("{s:s, s:s, s:s, s:o*, s:o*, s:s, s:b, s:b}", "kind", kinds[p->kind],
	                 "tenant", p->tenant.name, "id", p->id, "roles", roles, "permissions",
	                 cf_perms_json(p->perms), "authenticated_by",
	                 p->via_cookie ? "session" : "token", "mfa", p->mfa,
	                 "mfa_enrollment_required", p->mfa_pending);
}
