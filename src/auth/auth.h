/* coffre — auth: identity and access (DESIGN §3; measures IA1–IA13, TI1, TR3).
 *
 * A tenant's people are users (each in exactly one tenant: a person in two tenants has
 * two logins); its programs are API clients. Both get roles, and roles are sets of
 * permissions (perms.c): the four built-in roles and a tenant's own. A user logs in
 * with email and password and gets a session (a cookie); a client exchanges its id and
 * secret for a short-lived access token (a JWT signed with the deployment's Ed25519
 * key). Every request then carries one or the other, and cf_auth_authenticate turns it
 * into a principal: tenant, who, and the permissions looked up now (never trusted from
 * the token). cf_auth_authorize is the one check every route goes through.
 *
 * Secrets are stored as what cannot give them back: passwords as Argon2id PHC strings
 * (computed on a bounded number of threads), session ids, client secrets and link tokens
 * as an HMAC under the tenant's token purpose key. Every change and every refusal after
 * the tenant is known is an audit entry, written in the same transaction as the change. */
#ifndef CF_AUTH_H
#define CF_AUTH_H

#include "audit/audit.h"
#include "base/base.h"
#include "keys/keys.h"
#include "store/store.h"

#define CF_TENANT_NAME_MAX 63

/* --- permissions and roles (perms.c) ---------------------------------------------------- */
enum cf_perm {
	CF_P_RECORDS_READ,
	CF_P_RECORDS_WRITE,
	CF_P_RECORDS_DELETE,
	CF_P_PII_REVEAL,
	CF_P_FILES_READ,
	CF_P_FILES_WRITE,
	CF_P_USERS_MANAGE,
	CF_P_CLIENTS_MANAGE,
	CF_P_ROLES_MANAGE,
	CF_P_KEYS_MANAGE,
	CF_P_AUDIT_READ,
	CF_P_TENANT_MANAGE,
	CF_P_COLLECTIONS_MANAGE, /* appended: custom roles store these bits */
	CF_P_COUNT
};
typedef uint32_t cf_perms;
#define CF_PERM(p)   ((cf_perms)1u << (unsigned)(p))
#define CF_PERMS_ALL (CF_PERM(CF_P_COUNT) - 1u)
/* "records.read", ... (the documented list: docs/access.md). */
const char *cf_perm_name(enum cf_perm p);
CF_MUST cf_err cf_perm_parse(const char *name, enum cf_perm *out);
/* The built-in roles' permissions: owner, admin, agent, end_user. false for another. */
bool cf_role_builtin(const char *name, cf_perms *out);
/* A JSON array of permission names. */
json_t *cf_perms_json(cf_perms p);

/* --- the part's state ------------------------------------------------------------------- */
struct cf_auth_opts {
	struct cf_store *store;
	struct cf_keyring *keys;
	unsigned session_idle, session_max, token_ttl; /* seconds */
	struct cf_argon2_params argon2;
	unsigned hash_threads; /* Argon2 computations at once (0: one per core) */
	const char *outbox;    /* the file notifier's folder (when no SMTP) */
	const char *smtp_url;  /* smtps://host:465 or smtp://host:587 (STARTTLS required) */
	const char *smtp_from, *smtp_user, *smtp_password_file;
	const char *public_url;
};
struct cf_auth;
CF_MUST cf_err cf_auth_new(const struct cf_auth_opts *o, struct cf_auth **out);
void cf_auth_free(struct cf_auth **pp);
/* The address users reach coffre at (the tokens' issuer), once the listener's port is
 * known (listen on port 0). Call before the first request is served. */
void cf_auth_set_public_url(struct cf_auth *a, const char *url);

/* A tenant as auth sees it (its row in the store). */
struct cf_tenant_ref {
	char id[CF_TENANT_ID_MAX + 1];
	char name[CF_TENANT_NAME_MAX + 1];
	bool active;
};
/* By name: CF_E_NOT_FOUND, CF_E_TENANT_SUSPENDED (or being deleted). */
CF_MUST cf_err cf_auth_tenant(struct cf_auth *a, const char *name, struct cf_tenant_ref *out);

/* The operators' realm (IA11, DESIGN §1): operators run the deployment and are the
 * users of a realm of their own, CF_OPS_REALM: its own keys (their sessions' HMACs, their
 * sealed TOTP secrets), MFA required for everyone, in no tenant list, and no path can
 * name it (tenant names start with a letter or digit). An operator reaches a tenant's
 * data only through an approved break-glass grant. Their actions go to the deployment's
 * audit log. */
#define CF_OPS_REALM "_ops"
void cf_auth_ops_ref(struct cf_tenant_ref *out);
/* A route's permission for operators' routes (beside enum cf_perm). */
#define CF_AUTH_OPERATOR (CF_P_COUNT + 1u)

/* Who is calling, once authenticated. */
enum cf_principal_kind {
	CF_PRINCIPAL_NONE = 0,
	CF_PRINCIPAL_USER,
	CF_PRINCIPAL_CLIENT,
	CF_PRINCIPAL_OPERATOR
};
#define CF_AUTH_ID_MAX      40
#define CF_AUTH_ORIGINS_MAX 600
struct cf_principal {
	enum cf_principal_kind kind;
	struct cf_tenant_ref tenant;
	char id[CF_AUTH_ID_MAX + 1]; /* user id ("u...") or client id ("c...") */
	cf_perms perms;
	char roles[128];  /* "admin,agent": what an audit entry names as the privilege (AL5) */
	bool via_cookie;  /* a session: writes must carry the CSRF token */
	int64_t auth_at;  /* when the password was last given (re-authentication) */
	char csrf[44];    /* the session's CSRF token (cookie sessions only) */
	char sid_mac[65]; /* the session (hex HMAC), for logout */
	char jti[40];     /* the access token's id (tokens only) */
	char origins[CF_AUTH_ORIGINS_MAX]; /* a client's allowed web origins (space-separated) */
	char grant[24];   /* an operator inside a tenant: the break-glass grant used (IA11) */
	bool mfa;         /* the user has confirmed TOTP */
	bool mfa_pending; /* the tenant requires MFA and the user has not enrolled: the
	                   * session may do nothing but enroll (IA6) */
	int64_t token_exp;
};

/* A person with a password and sessions: a user or an operator (not an API client). */
static inline bool cf_principal_is_person(const struct cf_principal *p)
{
	return p && (p->kind == CF_PRINCIPAL_USER || p->kind == CF_PRINCIPAL_OPERATOR);
}

/* Where a request comes from: for audit entries and throttling. */
struct cf_auth_call {
	const char *request_id;
	const char *source;             /* the peer address */
	const struct cf_principal *who; /* NULL before authentication */
	const char *operator_id;        /* an operator or coffred itself ("uid=0"), or NULL */
	unsigned *retry_after;          /* set when a refusal says when to retry (or NULL) */
};

/* --- users, passwords, sessions (users.c) ------------------------------------------------ */
/* Whether email could be a user's login address (CF_E_INVALID_VALUE, field "email",
 * rule "email", if not): the check cf_auth_user_create makes, for a caller that must
 * know before it creates anything else. */
CF_MUST cf_err cf_auth_email_check(const char *email);
/* Creates a user in state 'invited' with roles (a JSON array of role names, may be NULL)
 * and a single-use setup link (72 h) sent through the notifier; *link gets the link's
 * token too when link is not NULL (the tenant's first owner: printed to the operator).
 * *out gets the user's JSON. CF_E_CONFLICT for a taken email; CF_E_INVALID for a
 * malformed email or an unknown role. */
CF_MUST cf_err cf_auth_user_create(struct cf_auth *a, const struct cf_auth_call *c,
                                   const struct cf_tenant_ref *t, const char *email,
                                   const json_t *roles, json_t **out, char link[64]);
CF_MUST cf_err cf_auth_user_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out);
CF_MUST cf_err cf_auth_user_get(struct cf_auth *a, const struct cf_tenant_ref *t, const char *id,
                                json_t **out);
/* Changes roles (array, may be NULL) and/or state ("active", "disabled"; NULL keeps).
 * Disabling revokes the user's sessions at once (IA10). */
CF_MUST cf_err cf_auth_user_update(struct cf_auth *a, const struct cf_auth_call *c,
                                   const struct cf_tenant_ref *t, const char *id,
                                   const json_t *roles, const char *state, json_t **out);
CF_MUST cf_err cf_auth_user_delete(struct cf_auth *a, const struct cf_auth_call *c,
                                   const struct cf_tenant_ref *t, const char *id);

/* The password policy (IA3) of the tenant (NULL: the default): CF_E_WEAK_PASSWORD naming
 * the rule that failed. */
CF_MUST cf_err cf_auth_password_check(struct cf_auth *a, const char *tenant, const char *email,
                                      struct cf_span pw);
/* A setup (or reset) link's token and a new password: activates the user. */
CF_MUST cf_err cf_auth_setup(struct cf_auth *a, const struct cf_auth_call *c,
                             const struct cf_tenant_ref *t, const char *token, struct cf_span pw);
/* Changes the caller's own password: the current one is required. Ends every other
 * session of the user. */
CF_MUST cf_err cf_auth_password_change(struct cf_auth *a, const struct cf_auth_call *c,
                                       struct cf_span current, struct cf_span next);

/* Asks for a password reset (IA5): when the email is an active user's, a single-use
 * 15-minute link goes to it (from the notifier's thread); the answer is the same either
 * way. Throttled per email and address. */
CF_MUST cf_err cf_auth_reset_request(struct cf_auth *a, const struct cf_auth_call *c,
                                     const struct cf_tenant_ref *t, const char *email);
/* A login: email and password. The session's cookie value goes to cookie (it is the
 * secret: shown once, stored only as an HMAC), *out gets {"user", "csrf_token",
 * "expires_at"}. CF_E_BAD_CREDENTIALS whatever was wrong (unknown email, wrong
 * password, disabled user), with the same work done either way. */
#define CF_AUTH_COOKIE_MAX 160
/* A user with TOTP also gives code (six digits) or a recovery code: without either,
 * CF_E_MFA_REQUIRED. */
struct cf_login {
	const char *email;
	struct cf_span password;
	const char *code, *recovery_code; /* NULL when not given */
	/* IA3: a password past the tenant's maximum age gets CF_E_PASSWORD_EXPIRED; the same
	 * login with a new password (len > 0) changes it and logs in. */
	struct cf_span new_password;
};
CF_MUST cf_err cf_auth_login(struct cf_auth *a, const struct cf_auth_call *c,
                             const struct cf_tenant_ref *t, const struct cf_login *in,
                             char cookie[CF_AUTH_COOKIE_MAX], json_t **out);
CF_MUST cf_err cf_auth_logout(struct cf_auth *a, const struct cf_auth_call *c);
/* A step-up (TR3): the session's user gives their password (and code) again; a new
 * session replaces the caller's (a new id, authenticated now), same as a login. */
CF_MUST cf_err cf_auth_reauth(struct cf_auth *a, const struct cf_auth_call *c,
                              const struct cf_login *in, char cookie[CF_AUTH_COOKIE_MAX],
                              json_t **out);
/* The caller's sessions (a user), and revoking one by its id (the "id" listed). */
CF_MUST cf_err cf_auth_session_list(struct cf_auth *a, const struct cf_principal *p, json_t **out);
CF_MUST cf_err cf_auth_session_revoke(struct cf_auth *a, const struct cf_auth_call *c,
                                      const char *id);
/* An admin ends every session of a user (IA10, IA13). */
CF_MUST cf_err cf_auth_user_sessions_revoke(struct cf_auth *a, const struct cf_auth_call *c,
                                            const struct cf_tenant_ref *t, const char *user);
/* The access review (IA10): every user and client with roles, MFA, last use, and whether
 * dormant (nothing in dormant_days). */
CF_MUST cf_err cf_auth_access_review(struct cf_auth *a, const struct cf_tenant_ref *t,
                                     unsigned dormant_days, json_t **out);

/* --- operators and break-glass (operators.c, IA11) ---------------------------------------- */
/* Makes an operator (state 'invited') and its single-use setup link (72 h): *link gets
 * the token (shown once to whoever made it), *out the operator's JSON. first: the
 * deployment's first operator, over the admin socket: makes the realm's keys and its
 * MFA-for-everyone policy, and CF_E_CONFLICT once any operator exists. */
CF_MUST cf_err cf_auth_operator_create(struct cf_auth *a, const struct cf_auth_call *c,
                                       const char *email, bool first, json_t **out, char link[64]);
/* Every operator: {"operators": [{"id", "email", "state", "mfa", "last_login_at"}]}. */
CF_MUST cf_err cf_auth_operator_list(struct cf_auth *a, json_t **out);
/* Disables another operator (never oneself): their sessions end at once. */
CF_MUST cf_err cf_auth_operator_disable(struct cf_auth *a, const struct cf_auth_call *c,
                                        const char *id);
/* An operator asks for emergency access to a tenant, with a reason: read-only unless
 * write, for minutes (1 to 480, 0: 60) from its approval. *out: the grant. */
struct cf_bg_request {
	const char *tenant, *reason;
	bool write;
	unsigned minutes;
};
CF_MUST cf_err cf_auth_bg_request(struct cf_auth *a, const struct cf_auth_call *c,
                                  const struct cf_bg_request *in, json_t **out);
/* The grants of a tenant (t), or of every tenant (t NULL, for operators), newest first. */
CF_MUST cf_err cf_auth_bg_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out);
/* Approves a pending grant: another operator than the one who asked (the database
 * refuses the same one: CF_E_FORBIDDEN) or, with t, the tenant's owner. */
CF_MUST cf_err cf_auth_bg_approve(struct cf_auth *a, const struct cf_auth_call *c,
                                  const struct cf_tenant_ref *t, const char *id, json_t **out);
/* Ends a grant now (an operator, or with t the tenant's admins). */
CF_MUST cf_err cf_auth_bg_end(struct cf_auth *a, const struct cf_auth_call *c,
                              const struct cf_tenant_ref *t, const char *id);
/* An operator's request to a tenant's route: with an approved, unexpired grant for this
 * tenant (a write grant when write), p becomes the operator working in the tenant with
 * the admin role's permissions, its privilege naming the grant. CF_E_FORBIDDEN when
 * there is none, CF_E_NOT_FOUND for an unknown tenant. */
CF_MUST cf_err cf_auth_bg_enter(struct cf_auth *a, struct cf_principal *p, const char *tenant,
                                bool write);

/* --- a tenant's own roles (perms.c) ------------------------------------------------------ */
/* Every role of the tenant: the built-in ones, then its own. */
CF_MUST cf_err cf_auth_role_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out);
/* A role of permission names (none beyond the caller's own); CF_E_CONFLICT for a taken or
 * built-in name. */
CF_MUST cf_err cf_auth_role_create(struct cf_auth *a, const struct cf_auth_call *c,
                                   const struct cf_tenant_ref *t, const char *name,
                                   const json_t *perms, json_t **out);
/* CF_E_CONFLICT while the role is granted. */
CF_MUST cf_err cf_auth_role_delete(struct cf_auth *a, const struct cf_auth_call *c,
                                   const struct cf_tenant_ref *t, const char *name);

/* --- groups (groups.c) --------------------------------------------------------------------- */
/* [{"name", "roles", "members", "created_at"}] */
CF_MUST cf_err cf_auth_group_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out);
/* roles (none beyond the caller's) and members (user ids) are arrays, may be NULL. */
CF_MUST cf_err cf_auth_group_create(struct cf_auth *a, const struct cf_auth_call *c,
                                    const struct cf_tenant_ref *t, const char *name,
                                    const json_t *roles, const json_t *add, json_t **out);
CF_MUST cf_err cf_auth_group_update(struct cf_auth *a, const struct cf_auth_call *c,
                                    const struct cf_tenant_ref *t, const char *name,
                                    const json_t *roles, const json_t *add, const json_t *remove,
                                    json_t **out);
CF_MUST cf_err cf_auth_group_delete(struct cf_auth *a, const struct cf_auth_call *c,
                                    const struct cf_tenant_ref *t, const char *name);

/* --- two-factor authentication (mfa.c, IA6) --------------------------------------------- */
/* Starts (or restarts, until confirmed) TOTP enrollment for the calling user:
 * {"secret" (base32), "otpauth_uri", "qr_svg", "digits", "period"}. CF_E_CONFLICT once
 * confirmed. */
CF_MUST cf_err cf_auth_totp_enroll(struct cf_auth *a, const struct cf_auth_call *c, json_t **out);
/* Confirms with a first code: {"enabled", "recovery_codes": [10 single-use codes]}. */
CF_MUST cf_err cf_auth_totp_confirm(struct cf_auth *a, const struct cf_auth_call *c,
                                    const char *code, json_t **out);
/* An admin removes a user's TOTP (a lost phone): the user's sessions end. */
CF_MUST cf_err cf_auth_totp_reset(struct cf_auth *a, const struct cf_auth_call *c,
                                  const struct cf_tenant_ref *t, const char *user);
/* The tenant's policy: {"mfa_required", "mfa_required_roles", "password_min_length",
 * "password_min_classes", "password_max_age_days", "password_history"}. */
CF_MUST cf_err cf_auth_policy_get(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out);
/* mfa_required: every user; mfa_roles (array, may be NULL): the holders of these roles.
 * Passwords (IA3): minimum length 12..128 (0: 12); classes of lower case, upper case,
 * digits and others to mix, 0..4; maximum age in days (0: never expires); how many of
 * the last passwords may not come back, 0..CF_AUTH_HISTORY_MAX (0: off). */
#define CF_AUTH_HISTORY_MAX 12
struct cf_auth_policy {
	bool mfa_required;
	const json_t *mfa_roles;
	unsigned password_min, password_classes, password_max_age_days, password_history;
};
CF_MUST cf_err cf_auth_policy_set(struct cf_auth *a, const struct cf_auth_call *c,
                                  const struct cf_tenant_ref *t, const struct cf_auth_policy *in,
                                  json_t **out);
/* The classes a password mixes: lower case, upper case, digits, others (0..4). */
unsigned cf_password_classes(struct cf_span pw);
/* Registers the sealed TOTP secrets with the keyring's rewrap after a rotation (ER4). */
CF_MUST cf_err cf_auth_register_rewrap(struct cf_auth *a);

/* --- API clients and tokens (clients.c, jwt.c) ------------------------------------------- */
/* Creates a client with roles and, for a browser client, the web origins it may call
 * from (NULL: none); *out gets {"client_id", "client_secret", ...}: the secret is shown
 * this once. */
CF_MUST cf_err cf_auth_client_create(struct cf_auth *a, const struct cf_auth_call *c,
                                     const struct cf_tenant_ref *t, const char *name,
                                     const json_t *roles, const json_t *origins, json_t **out);
/* Whether origin is one of a space-separated list. */
bool cf_auth_origin_allowed(const char *origins, const char *origin);
/* Whether origin is coffre's own (auth.public_url's scheme, host and port). */
bool cf_auth_same_origin(struct cf_auth *a, const char *origin);
CF_MUST cf_err cf_auth_client_list(struct cf_auth *a, const struct cf_tenant_ref *t, json_t **out);
/* Disables a client: its tokens stop working at once. */
CF_MUST cf_err cf_auth_client_disable(struct cf_auth *a, const struct cf_auth_call *c,
                                      const struct cf_tenant_ref *t, const char *id);
/* The client credentials grant: {"access_token", "token_type", "expires_in"}. origin:
 * the request's Origin header (a browser), which the client must allow; NULL when none. */
CF_MUST cf_err cf_auth_token_issue(struct cf_auth *a, const struct cf_auth_call *c,
                                   const struct cf_tenant_ref *t, const char *client_id,
                                   struct cf_span secret, const char *origin, json_t **out);
/* Revokes the caller's own access token. */
CF_MUST cf_err cf_auth_token_revoke(struct cf_auth *a, const struct cf_auth_call *c);
/* The token keys' JWKS (RFC 7517, OKP keys of RFC 8037). */
CF_MUST cf_err cf_auth_jwks(struct cf_auth *a, json_t **out);

/* The strict JWT check (jwt.c, fuzzed): header alg EdDSA, typ at+jwt, a known kid, no
 * jku/x5u/jwk/crit, strict base64url, the signature, then iss, aud, sub, tenant, iat,
 * exp, jti. CF_E_INVALID_TOKEN saying why. */
struct cf_jwt_claims {
	char sub[CF_AUTH_ID_MAX + 1];
	char tenant[CF_TENANT_ID_MAX + 1];
	char jti[40];
	int64_t iat, exp;
};
CF_MUST cf_err cf_jwt_verify(struct cf_span token, const uint8_t pub[CF_ED25519_PUB],
                             const char *kid, const char *iss, int64_t now,
                             struct cf_jwt_claims *out);
/* The key id of a public key: base64url of the first 12 bytes of its SHA-256. */
void cf_jwt_kid(const uint8_t pub[CF_ED25519_PUB], char kid[17]);

/* --- every request (authz.c) ------------------------------------------------------------- */
/* What a request carries. */
struct cf_auth_creds {
	const char *cookie;        /* the __Host-coffre_session value, or NULL */
	const char *authorization; /* the Authorization header, or NULL */
};
/* Turns credentials into a principal: CF_E_UNAUTHENTICATED when there are none,
 * CF_E_INVALID_TOKEN or CF_E_UNAUTHENTICATED (expired session) when they do not hold. */
CF_MUST cf_err cf_auth_authenticate(struct cf_auth *a, const struct cf_auth_creds *cr,
                                    struct cf_principal *out);
/* The one authorisation check (IA1, TI1): the principal belongs to the tenant named in
 * the path (tenant NULL: a route of no tenant) and holds perm (CF_P_COUNT: any
 * authenticated caller). CF_E_FORBIDDEN otherwise, CF_E_NOT_FOUND for another tenant
 * (so a caller learns nothing of other tenants). */
CF_MUST cf_err cf_auth_authorize(const struct cf_principal *p, const char *tenant, unsigned perm);
/* Refusals before authentication are counted, not written one by one (a flood must not
 * grow the audit log by an entry per request): note one (tenant: the name in the path,
 * or NULL), and, each period, write the counts as summary entries ("auth.refused").
 * *entries gets how many were written. */
void cf_auth_note_refusal(struct cf_auth *a, const char *tenant, const char *source);
CF_MUST cf_err cf_auth_flush_refusals(struct cf_auth *a, unsigned *entries);
/* The principal's JSON (GET /v1/auth/me). */
json_t *cf_principal_json(const struct cf_principal *p);

/* Audit entries for this part: what the call did, in the caller's transaction. */
CF_MUST cf_err cf_auth_audit_prepare(struct cf_auth *a, const struct cf_auth_call *c,
                                     const char *tenant_id, const char *action,
                                     const char *resource, enum cf_outcome outcome, cf_err error,
                                     struct cf_audit_prepared *out);
/* The same written alone with a detail in clear (a reveal's reason, PV7). */
CF_MUST cf_err cf_auth_audit_detail(struct cf_auth *a, const struct cf_auth_call *c,
                                    const char *tenant_id, const char *action, const char *resource,
                                    const char *detail);
/* The same written alone, durable on return (a read, a refusal). */
CF_MUST cf_err cf_auth_audit_record(struct cf_auth *a, const struct cf_auth_call *c,
                                    const char *tenant_id, const char *action, const char *resource,
                                    enum cf_outcome outcome, cf_err error);

#endif
