/* coffre — two-factor authentication with TOTP (IA6; RFC 6238 through liboath). The
 * secret is sealed under the tenant's keys like a record (and rewrapped on rotation);
 * a code is checked with liboath's callback validator, comparing in constant time, one
 * step either side, and only a step later than the last one used (no replay). Ten
 * single-use recovery codes are stored as HMACs. A tenant's admins may require it: the
 * tenant's policy (MFA for everyone or by role, the minimum password length) lives here. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <liboath/oath.h>
#include <qrencode.h>

#include "auth/internal.h"

#define TOTP_SECRET 20 /* bytes: 160 bits, RFC 4226's recommendation */
#define TOTP_DIGITS 6
#define TOTP_STEP   30
#define TOTP_WINDOW 1 /* steps either side */
#define RECOVERY_N  10
#define SEALED_MAX  512
#define COLLECTION  "auth.totp"

static struct cf_env_ctx seal_ctx(const char *tenant, const char *user)
{
	return (struct cf_env_ctx){.tenant = cf_span_str(tenant),
	                           .collection = cf_span_str(COLLECTION),
	                           .record = cf_span_str(user),
	                           .version = 1,
	                           .field = cf_span_str("secret")};
}

/* --- enrollment ------------------------------------------------------------------------- */
struct enroll_tx {
	const char *tenant, *user;
	uint8_t sealed[SEALED_MAX];
	size_t sealed_len;
	uint32_t kek_version;
	int64_t now;
	bool confirmed;
	char email[256];
	struct cf_audit_prepared audit;
};

static cf_err enroll_state_row(const struct cf_row *row, void *ctx)
{
	struct enroll_tx *e = ctx;
	e->confirmed = cf_row_int(row, 0) != 0;
	return CF_OK;
}

static cf_err email_row(const struct cf_row *row, void *ctx)
{
	struct enroll_tx *e = ctx;
	cf_span_to_str(cf_row_blob(row, 0), e->email, sizeof e->email);
	return CF_OK;
}

static cf_err enroll_fn(struct cf_tx *tx, void *ctx)
{
	struct enroll_tx *e = ctx;
	struct cf_val k[] = {CF_V_TEXT(e->tenant), CF_V_TEXT(e->user)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT confirmed FROM mfa_totp WHERE tenant_id = $1 AND user_id = $2",
	                   k, 2, enroll_state_row, e));
	CF_ENSURE(!e->confirmed,
	          cf_err_fail(CF_E_CONFLICT, "TOTP is already set up for this account; an admin "
	                                     "can reset it"));
	/* A new enrollment replaces one never confirmed. */
	CF_TRY(cf_tx_exec(tx, "DELETE FROM mfa_totp WHERE tenant_id = $1 AND user_id = $2", k, 2,
	                  NULL));
	struct cf_val v[] = {CF_V_TEXT(e->tenant), CF_V_TEXT(e->user),
	                     CF_V_BLOB(e->sealed, e->sealed_len), CF_V_INT(e->kek_version),
	                     CF_V_INT(e->now)};
	CF_TRY(cf_tx_exec(
	        tx,
	        "INSERT INTO mfa_totp (tenant_id, user_id, sealed, kek_version, confirmed,"
	        " last_step, created_at) VALUES ($1, $2, $3, $4, 0, 0, $5)",
	        v, 5, NULL));
	return cf_audit_append(tx, &e->audit);
}

static cf_err email_fn(struct cf_tx *tx, void *ctx)
{
	struct enroll_tx *e = ctx;
	struct cf_val k[] = {CF_V_TEXT(e->tenant), CF_V_TEXT(e->user)};
	return cf_tx_query(tx, "SELECT email FROM users WHERE tenant_id = $1 AND user_id = $2", k,
	                   2, email_row, e);
}

/* RFC 3986 percent-encoding of everything but the unreserved characters. */
static void uri_escape(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		             (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
		             *p == '~';
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
}

/* The QR code as SVG: one path of unit squares, a four-module quiet zone. */
static cf_err qr_svg(const char *text, char **out)
{
	QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
	CF_ENSURE(qr, cf_err_fail(CF_E_INTERNAL, "the QR code could not be drawn"));
	struct cf_buf b;
	cf_buf_init(&b, 256 * 1024);
	char head[256];
	int n = snprintf(head, sizeof head,
	                 "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
	                 "shape-rendering=\"crispEdges\"><rect width=\"100%%\" height=\"100%%\" "
	                 "fill=\"#fff\"/><path fill=\"#000\" d=\"",
	                 qr->width + 8, qr->width + 8);
	cf_err err = cf_buf_append(&b, head, (size_t)n);
	for (int y = 0; err == CF_OK && y < qr->width; y++)
		for (int x = 0; err == CF_OK && x < qr->width; x++)
			if (qr->data[y * qr->width + x] & 1) {
				char m[32];
				int k = snprintf(m, sizeof m, "M%d %dh1v1h-1z", x + 4, y + 4);
				err = cf_buf_append(&b, m, (size_t)k);
			}
	if (err == CF_OK)
		err = cf_buf_append(&b, "\"/></svg>", 10); /* with its NUL */
	QRcode_free(qr);
	if (err) {
		cf_buf_free(&b);
		return err;
	}
	*out = (char *)b.data;
	return CF_OK;
}

cf_err cf_auth_totp_enroll(struct cf_auth *a, const struct cf_auth_call *c, json_t **out)
{
	const struct cf_principal *p = c->who;
	CF_ENSURE(cf_principal_is_person(p),
	          cf_err_fail(CF_E_FORBIDDEN, "only people enroll in two-factor authentication"));
	struct enroll_tx e = {.tenant = p->tenant.id, .user = p->id, .now = (int64_t)time(NULL)};
	CF_TRY(cf_store_read(a->store, e.tenant, email_fn, &e));
	uint8_t secret[TOTP_SECRET];
	CF_TRY(cf_crypto_random_key(secret, sizeof secret));
	struct cf_env_ctx ctx = seal_ctx(e.tenant, e.user);
	cf_err err = cf_keys_seal_value(a->keys, &ctx, (struct cf_span){secret, sizeof secret},
	                                e.sealed, sizeof e.sealed, &e.sealed_len);
	struct cf_env_view view;
	if (err == CF_OK)
		err = cf_env_parse((struct cf_span){e.sealed, e.sealed_len}, &view);
	e.kek_version = err == CF_OK ? view.kid.kek_version : 0;
	char *b32 = NULL;
	size_t b32len = 0;
	if (err == CF_OK &&
	    oath_base32_encode((const char *)secret, sizeof secret, &b32, &b32len) != OATH_OK)
		err = cf_err_fail(CF_E_INTERNAL, "base32 encoding failed");
	cf_wipe(secret, sizeof secret);
	if (err == CF_OK)
		err = cf_auth_audit_prepare(a, c, e.tenant, "mfa.enroll", e.user, CF_OUTCOME_OK,
		                            CF_OK, &e.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, e.tenant, enroll_fn, &e);
	char uri[1200] = "";
	char *svg = NULL;
	if (err == CF_OK) {
		/* Key URI format (Google Authenticator's): label "issuer:account". */
		char account[330], label[1000];
		(void)snprintf(account, sizeof account, "%s (%s)", e.email, p->tenant.name);
		uri_escape(account, label, sizeof label);
		(void)snprintf(uri, sizeof uri,
		               "otpauth://totp/coffre:%s?secret=%s&issuer=coffre&algorithm=SHA1"
		               "&digits=6&period=30",
		               label, b32);
		err = qr_svg(uri, &svg);
	}
	if (err == CF_OK) {
		*out = json_pack("{s:s, s:s, s:s, s:i, s:i}", "secret", b32, "otpauth_uri", uri,
		                 "qr_svg", svg, "digits", TOTP_DIGITS, "period", TOTP_STEP);
		if (!*out)
			err = CF_E_NOMEM;
	}
	if (b32) {
		cf_wipe(b32, b32len);
		free(b32);
	}
	if (svg) {
		cf_wipe(svg, strlen(svg));
		free(svg);
	}
	cf_wipe(uri, sizeof uri);
	return err;
}

/* --- checking a code --------------------------------------------------------------------- */
struct totp_q {
	const char *tenant, *user;
	bool found, confirmed;
	uint8_t sealed[SEALED_MAX];
	size_t sealed_len;
	int64_t last_step;
};

static cf_err totp_row(const struct cf_row *row, void *ctx)
{
	struct totp_q *q = ctx;
	struct cf_span s = cf_row_blob(row, 0);
	q->found = s.len <= sizeof q->sealed;
	if (q->found) {
		memcpy(q->sealed, s.ptr, s.len);
		q->sealed_len = s.len;
	}
	q->confirmed = cf_row_int(row, 1) != 0;
	q->last_step = cf_row_int(row, 2);
	return CF_OK;
}

static cf_err totp_read(struct cf_tx *tx, void *ctx)
{
	struct totp_q *q = ctx;
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->user)};
	return cf_tx_query(tx,
	                   "SELECT sealed, confirmed, last_step FROM mfa_totp WHERE tenant_id = $1"
	                   " AND user_id = $2",
	                   k, 2, totp_row, q);
}

/* liboath's comparison callback: constant time over the six digits. */
static int otp_cmp(void *handle, const char *test_otp)
{
	const char *given = handle;
	size_t n = strlen(test_otp);
	if (n != TOTP_DIGITS || strlen(given) != n)
		return 1;
	return gnutls_memcmp(given, test_otp, n) == 0 ? 0 : 1;
}

cf_err auth_totp_state(struct cf_auth *a, const char *tenant, const char *user, bool *enrolled)
{
	struct totp_q q = {.tenant = tenant, .user = user};
	CF_TRY(cf_store_read(a->store, tenant, totp_read, &q));
	*enrolled = q.found && q.confirmed;
	cf_wipe(q.sealed, sizeof q.sealed);
	return CF_OK;
}

/* Checks code against the user's secret at now: *step gets the time step it matched,
 * which must be later than the last one used. CF_E_BAD_CREDENTIALS otherwise. */
cf_err auth_totp_check(struct cf_auth *a, const char *tenant, const char *user, const char *code,
                       bool need_confirmed, int64_t *step)
{
	struct totp_q q = {.tenant = tenant, .user = user};
	CF_TRY(cf_store_read(a->store, tenant, totp_read, &q));
	CF_ENSURE(q.found && (q.confirmed || !need_confirmed),
	          cf_err_fail(CF_E_NOT_FOUND, "no TOTP enrollment for this account"));
	bool digits = code && strlen(code) == TOTP_DIGITS;
	for (size_t i = 0; digits && i < TOTP_DIGITS; i++)
		digits = code[i] >= '0' && code[i] <= '9';
	CF_ENSURE(digits, cf_err_fail(CF_E_BAD_CREDENTIALS, "the code is six digits"));
	uint8_t secret[TOTP_SECRET + 16];
	size_t n = 0;
	struct cf_env_ctx ctx = seal_ctx(tenant, user);
	cf_err err = cf_keys_open_value(a->keys, &ctx, (struct cf_span){q.sealed, q.sealed_len},
	                                secret, sizeof secret, &n);
	cf_wipe(q.sealed, sizeof q.sealed);
	CF_TRY(err);
	err = cf_totp_check_code(secret, n, (int64_t)time(NULL), code, q.last_step, step);
	cf_wipe(secret, sizeof secret);
	return err;
}

cf_err cf_totp_check_code(const uint8_t *secret, size_t n, int64_t now, const char *code,
                          int64_t last_step, int64_t *step)
{
	uint64_t counter = 0;
	int pos = 0;
	char given[TOTP_DIGITS + 1];
	CF_ENSURE(code && strlen(code) == TOTP_DIGITS,
	          cf_err_fail(CF_E_BAD_CREDENTIALS, "the code is six digits"));
	memcpy(given, code, sizeof given);
	int rc = oath_totp_validate3_callback((const char *)secret, n, (time_t)now, TOTP_STEP, 0,
	                                      TOTP_DIGITS, TOTP_WINDOW, &pos, &counter, otp_cmp,
	                                      given);
	CF_ENSURE(rc >= 0, cf_err_fail(CF_E_BAD_CREDENTIALS, "the code is wrong"));
	/* No replay: a code is good once, and never one older than the last used. */
	CF_ENSURE((int64_t)counter > last_step,
	          cf_err_fail(CF_E_BAD_CREDENTIALS, "the code was already used"));
	*step = (int64_t)counter;
	return CF_OK;
}

/* In the login's transaction: moves last_step forward, or fails if another request used
 * this step (or a later one) meanwhile. */
cf_err auth_totp_use(struct cf_tx *tx, const char *user, int64_t step)
{
	struct cf_val v[] = {CF_V_INT(step), CF_V_TEXT(cf_tx_tenant(tx)), CF_V_TEXT(user)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE mfa_totp SET last_step = $1 WHERE tenant_id = $2 AND user_id = $3"
	                  " AND last_step < $1",
	                  v, 3, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_BAD_CREDENTIALS, "the code was already used"));
	return CF_OK;
}

/* A recovery code: single use, in the login's transaction. */
cf_err auth_recovery_use(struct cf_auth *a, struct cf_tx *tx, const char *user, const char *code,
                         int64_t now)
{
	uint8_t mac[CF_HMAC_LEN];
	CF_TRY(auth_mac(a, cf_tx_tenant(tx), "recovery", cf_span_str(code), mac));
	struct cf_val v[] = {CF_V_INT(now), CF_V_TEXT(cf_tx_tenant(tx)), CF_V_TEXT(user),
	                     CF_V_BLOB(mac, sizeof mac)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE recovery_codes SET used_at = $1 WHERE tenant_id = $2"
	                  " AND user_id = $3 AND mac = $4 AND used_at IS NULL",
	                  v, 4, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_BAD_CREDENTIALS, "the recovery code is wrong or used"));
	return CF_OK;
}

/* --- confirmation -------------------------------------------------------------------------- */
struct confirm_tx {
	const char *tenant, *user;
	int64_t step, now;
	uint8_t macs[RECOVERY_N][CF_HMAC_LEN];
	struct cf_audit_prepared audit;
};

static cf_err confirm_fn(struct cf_tx *tx, void *ctx)
{
	struct confirm_tx *c = ctx;
	CF_TRY(auth_totp_use(tx, c->user, c->step));
	struct cf_val k[] = {CF_V_TEXT(c->tenant), CF_V_TEXT(c->user)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE mfa_totp SET confirmed = 1 WHERE tenant_id = $1 AND user_id = $2"
	                  " AND confirmed = 0",
	                  k, 2, &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT, "TOTP is already confirmed"));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2", k,
	                  2, NULL));
	for (size_t i = 0; i < RECOVERY_N; i++) {
		struct cf_val v[] = {CF_V_TEXT(c->tenant), CF_V_TEXT(c->user),
		                     CF_V_BLOB(c->macs[i], CF_HMAC_LEN), CF_V_INT(c->now)};
		CF_TRY(cf_tx_exec(tx,
		                  "INSERT INTO recovery_codes (tenant_id, user_id, mac, created_at)"
		                  " VALUES ($1, $2, $3, $4)",
		                  v, 4, NULL));
	}
	return cf_audit_append(tx, &c->audit);
}

cf_err cf_auth_totp_confirm(struct cf_auth *a, const struct cf_auth_call *c, const char *code,
                            json_t **out)
{
	const struct cf_principal *p = c->who;
	CF_ENSURE(cf_principal_is_person(p),
	          cf_err_fail(CF_E_FORBIDDEN, "only people enroll in two-factor authentication"));
	struct confirm_tx ct = {.tenant = p->tenant.id, .user = p->id, .now = (int64_t)time(NULL)};
	struct cf_throttle_who tw = {ct.tenant, ct.user, c->source};
	CF_TRY(auth_throttle_gate(a, c, &tw));
	cf_err check = auth_totp_check(a, ct.tenant, ct.user, code, false, &ct.step);
	if (check == CF_E_BAD_CREDENTIALS)
		auth_throttle_failed(a->throttle, &tw);
	CF_TRY(check);
	/* Ten recovery codes of 80 bits each, "xxxx-xxxx-xxxx-xxxx" in base32's alphabet:
	 * shown once, stored as HMACs. */
	json_t *codes = json_array();
	CF_ENSURE(codes, CF_E_NOMEM);
	cf_err err = CF_OK;
	for (size_t i = 0; err == CF_OK && i < RECOVERY_N; i++) {
		uint8_t raw[10];
		char *b32 = NULL;
		size_t len = 0;
		err = cf_crypto_random_key(raw, sizeof raw);
		if (err == CF_OK &&
		    oath_base32_encode((const char *)raw, sizeof raw, &b32, &len) != OATH_OK)
			err = CF_E_NOMEM;
		cf_wipe(raw, sizeof raw);
		char text[24] = "";
		if (err == CF_OK && len >= 16) {
			(void)snprintf(text, sizeof text, "%.4s-%.4s-%.4s-%.4s", b32, b32 + 4,
			               b32 + 8, b32 + 12);
			for (char *t = text; *t; t++)
				*t = (char)(*t >= 'A' && *t <= 'Z' ? *t - 'A' + 'a' : *t);
			err = auth_mac(a, ct.tenant, "recovery", cf_span_str(text), ct.macs[i]);
			if (err == CF_OK && json_array_append_new(codes, json_string(text)) != 0)
				err = CF_E_NOMEM;
		}
		if (b32) {
			cf_wipe(b32, len);
			free(b32);
		}
		cf_wipe(text, sizeof text);
	}
	if (err == CF_OK)
		err = cf_auth_audit_prepare(a, c, ct.tenant, "mfa.confirm", ct.user, CF_OUTCOME_OK,
		                            CF_OK, &ct.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(a->store, ct.tenant, confirm_fn, &ct);
	if (err) {
		json_decref(codes);
		return err;
	}
	*out = json_pack("{s:b, s:o}", "enabled", 1, "recovery_codes", codes);
	return *out ? CF_OK : CF_E_NOMEM;
}

/* --- an admin's reset, the tenant's policy ---------------------------------------------------- */
struct reset_tx {
	const char *tenant, *user;
	struct cf_audit_prepared audit;
};

static cf_err reset_fn(struct cf_tx *tx, void *ctx)
{
	struct reset_tx *r = ctx;
	struct cf_val k[] = {CF_V_TEXT(r->tenant), CF_V_TEXT(r->user)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx, "DELETE FROM mfa_totp WHERE tenant_id = $1 AND user_id = $2", k, 2,
	                  &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "this user has no TOTP enrollment"));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2", k,
	                  2, NULL));
	/* Whoever holds the user's sessions must log in again. */
	CF_TRY(cf_tx_exec(tx, "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2", k, 2,
	                  NULL));
	return cf_audit_append(tx, &r->audit);
}

cf_err cf_auth_totp_reset(struct cf_auth *a, const struct cf_auth_call *c,
                          const struct cf_tenant_ref *t, const char *user)
{
	struct reset_tx r = {.tenant = t->id, .user = user};
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "mfa.reset", user, CF_OUTCOME_OK, CF_OK,
	                             &r.audit));
	return cf_store_write_wait(a->store, t->id, reset_fn, &r);
}

struct policy_tx {
	const char *tenant;
	bool mfa_required;
	char roles[16 * 64]; /* space-separated */
	struct auth_pw_policy pw;
	struct cf_audit_prepared audit;
};

static cf_err policy_row(const struct cf_row *row, void *ctx)
{
	struct policy_tx *p = ctx;
	p->mfa_required = cf_row_int(row, 0) != 0;
	cf_span_to_str(cf_row_blob(row, 1), p->roles, sizeof p->roles);
	p->pw.min = (unsigned)cf_row_int(row, 2);
	p->pw.classes = (unsigned)cf_row_int(row, 3);
	p->pw.max_age_days = (unsigned)cf_row_int(row, 4);
	p->pw.history = (unsigned)cf_row_int(row, 5);
	return CF_OK;
}

static cf_err policy_read(struct cf_tx *tx, void *ctx)
{
	struct policy_tx *p = ctx;
	struct cf_val k[] = {CF_V_TEXT(p->tenant)};
	return cf_tx_query(tx,
	                   "SELECT mfa_required, mfa_roles, password_min, password_classes,"
	                   " password_max_age_days, password_history FROM tenant_policy"
	                   " WHERE tenant_id = $1",
	                   k, 1, policy_row, p);
}

static cf_err policy_write(struct cf_tx *tx, void *ctx)
{
	struct policy_tx *p = ctx;
	struct cf_val k[] = {CF_V_TEXT(p->tenant),    CF_V_INT(p->mfa_required ? 1 : 0),
	                     CF_V_TEXT(p->roles),     CF_V_INT(p->pw.min),
	                     CF_V_INT(p->pw.classes), CF_V_INT(p->pw.max_age_days),
	                     CF_V_INT(p->pw.history)};
	CF_TRY(cf_tx_exec(tx, "DELETE FROM tenant_policy WHERE tenant_id = $1", k, 1, NULL));
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO tenant_policy (tenant_id, mfa_required, mfa_roles,"
	                  " password_min, password_classes, password_max_age_days,"
	                  " password_history) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	                  k, 7, NULL));
	return cf_audit_append(tx, &p->audit);
}

static const struct auth_pw_policy pw_default = {.min = 12};

cf_err cf_auth_policy_get(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out)
{
	struct policy_tx p = {.tenant = t->id, .pw = pw_default};
	CF_TRY(cf_store_read(a->store, t->id, policy_read, &p));
	json_t *roles = json_array();
	char *save = NULL;
	for (char *r = strtok_r(p.roles, " ", &save); roles && r; r = strtok_r(NULL, " ", &save))
		(void)json_array_append_new(roles, json_string(r));
	*out = json_pack("{s:b, s:o*, s:i, s:i, s:i, s:i}", "mfa_required", p.mfa_required,
	                 "mfa_required_roles", roles, "password_min_length", (int)p.pw.min,
	                 "password_min_classes", (int)p.pw.classes, "password_max_age_days",
	                 (int)p.pw.max_age_days, "password_history", (int)p.pw.history);
	return *out ? CF_OK : CF_E_NOMEM;
}

cf_err cf_auth_policy_set(struct cf_auth *a, const struct cf_auth_call *c,
                          const struct cf_tenant_ref *t, const struct cf_auth_policy *in,
                          json_t **out)
{
	bool mfa_required = in->mfa_required;
	const json_t *roles = in->mfa_roles;
	struct policy_tx p = {.tenant = t->id,
	                      .mfa_required = mfa_required,
	                      .pw = {.min = in->password_min ? in->password_min : 12,
	                             .classes = in->password_classes,
	                             .max_age_days = in->password_max_age_days,
	                             .history = in->password_history}};
	/* IA3: the length is what counts (NIST SP 800-63B); classes, maximum age and
	 * history are off unless a tenant's admin asks for them. */
	CF_ENSURE(p.pw.min >= 12 && p.pw.min <= 128,
	          cf_err_at(CF_E_OUT_OF_RANGE, "password_min_length", "range",
	                    "password_min_length is 12 to 128"));
	CF_ENSURE(p.pw.classes <= 4, cf_err_at(CF_E_OUT_OF_RANGE, "password_min_classes", "range",
	                                       "password_min_classes is 0 to 4"));
	CF_ENSURE(p.pw.max_age_days <= 3650,
	          cf_err_at(CF_E_OUT_OF_RANGE, "password_max_age_days", "range",
	                    "password_max_age_days is 0 (never) to 3650"));
	CF_ENSURE(p.pw.history <= CF_AUTH_HISTORY_MAX,
	          cf_err_at(CF_E_OUT_OF_RANGE, "password_history", "range",
	                    "password_history is 0 (off) to %d", CF_AUTH_HISTORY_MAX));
	CF_ENSURE(!roles || (json_is_array(roles) && json_array_size(roles) <= 16),
	          cf_err_at(CF_E_WRONG_TYPE, "mfa_required_roles", "array",
	                    "mfa_required_roles is an array of role names"));
	for (size_t i = 0, n = 0; roles && i < json_array_size(roles); i++) {
		const char *r = json_string_value(json_array_get(roles, i));
		size_t len = r ? strlen(r) : 0;
		bool ok = len >= 1 && len <= 63;
		for (size_t k = 0; ok && k < len; k++)
			ok = (r[k] >= 'a' && r[k] <= 'z') || (r[k] >= '0' && r[k] <= '9') ||
			     r[k] == '_' || r[k] == '-';
		char at[48];
		(void)snprintf(at, sizeof at, "mfa_required_roles[%zu]", i);
		CF_ENSURE(ok,
		          cf_err_at(CF_E_INVALID_VALUE, at, "name", "%s is not a role name", at));
		(void)snprintf(p.roles + n, sizeof p.roles - n, "%s%s", n ? " " : "", r);
		n += len + (n ? 1 : 0);
	}
	CF_TRY(cf_auth_audit_prepare(a, c, t->id, "policy.update",
	                             mfa_required ? "mfa_required=true" : "mfa_required=false",
	                             CF_OUTCOME_OK, CF_OK, &p.audit));
	CF_TRY(cf_store_write_wait(a->store, t->id, policy_write, &p));
	return cf_auth_policy_get(a, t, out);
}

/* --- rotation (ER4): sealed secrets move to the tenant's active KEK ------------------------- */
struct rewrap_q {
	struct cf_keyring *kr;
	const char *tenant;
	uint32_t from;
	unsigned limit;
	uint64_t moved, remaining;
	char users[64][CF_AUTH_ID_MAX + 1];
	size_t n;
};

static cf_err rewrap_row(const struct cf_row *row, void *ctx)
{
	struct rewrap_q *q = ctx;
	if (q->n < sizeof q->users / sizeof q->users[0])
		cf_span_to_str(cf_row_blob(row, 0), q->users[q->n++], CF_AUTH_ID_MAX + 1);
	return CF_OK;
}

static cf_err count_row(const struct cf_row *row, void *ctx)
{
	struct rewrap_q *q = ctx;
	q->remaining = (uint64_t)cf_row_int(row, 0);
	return CF_OK;
}

static cf_err rewrap_one(struct cf_tx *tx, struct rewrap_q *q, const char *user)
{
	struct totp_q t = {.tenant = q->tenant, .user = user};
	CF_TRY(totp_read(tx, &t));
	if (!t.found)
		return CF_OK;
	struct cf_env_ctx ctx = seal_ctx(q->tenant, user);
	bool moved = false;
	CF_TRY(cf_keys_rewrap_value(q->kr, &ctx, t.sealed, t.sealed_len, &moved));
	struct cf_env_view view;
	CF_TRY(cf_env_parse((struct cf_span){t.sealed, t.sealed_len}, &view));
	struct cf_val v[] = {CF_V_BLOB(t.sealed, t.sealed_len), CF_V_INT(view.kid.kek_version),
	                     CF_V_TEXT(q->tenant), CF_V_TEXT(user)};
	CF_TRY(cf_tx_exec(tx,
	                  "UPDATE mfa_totp SET sealed = $1, kek_version = $2 WHERE tenant_id = $3"
	                  " AND user_id = $4",
	                  v, 4, NULL));
	q->moved += moved;
	return CF_OK;
}

static cf_err rewrap_fn(struct cf_tx *tx, void *ctx)
{
	struct rewrap_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_INT(q->from), CF_V_INT(q->limit)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT user_id FROM mfa_totp WHERE tenant_id = $1 AND kek_version <= $2"
	                   " ORDER BY user_id LIMIT $3",
	                   v, 3, rewrap_row, q));
	for (size_t i = 0; i < q->n; i++)
		CF_TRY(rewrap_one(tx, q, q->users[i]));
	return cf_tx_query(
	        tx, "SELECT count(*) FROM mfa_totp WHERE tenant_id = $1 AND kek_version <= $2", v,
	        2, count_row, q);
}

static cf_err rewrap_step(void *ctx, struct cf_keyring *kr, const char *tenant, uint32_t from,
                          unsigned limit, uint64_t *moved, uint64_t *remaining)
{
	struct cf_auth *a = ctx;
	struct rewrap_q q = {
	        .kr = kr, .tenant = tenant, .from = from, .limit = limit < 64 ? limit : 64};
	CF_TRY(cf_store_write_wait(a->store, tenant, rewrap_fn, &q));
	*moved = q.moved;
	*remaining = q.remaining;
	return CF_OK;
}

cf_err cf_auth_register_rewrap(struct cf_auth *a)
{
	struct cf_rewrap_source src = {.name = "mfa_totp", .step = rewrap_step, .ctx = a};
	return cf_keys_add_rewrap_source(a->keys, &src);
}

cf_err auth_password_policy(struct cf_auth *a, const char *tenant, struct auth_pw_policy *out)
{
	struct policy_tx p = {.tenant = tenant, .pw = pw_default};
	/* A failed read fails the caller: a policy is never weaker for a database hiccup. */
	if (tenant)
		CF_TRY(cf_store_read(a->store, tenant, policy_read, &p));
	if (p.pw.min < 12 || p.pw.min > 128)
		p.pw.min = 12;
	*out = p.pw;
	return CF_OK;
}
