/* coffre — auth: what its files share. Internal. */
#ifndef CF_AUTH_INTERNAL_H
#define CF_AUTH_INTERNAL_H

#include <pthread.h>
#include <stdlib.h>

#include "auth/auth.h"

struct cf_auth {
	struct cf_store *store;
	struct cf_keyring *keys;
	unsigned session_idle, session_max, token_ttl;
	struct cf_argon2_params argon2;
	char public_url[256];
	/* IA3: Argon2 runs at most hash_threads at once (each takes argon2.m_kib). */
	pthread_mutex_t hash_mu;
	pthread_cond_t hash_cv;
	unsigned hash_free;
	/* libpwquality and cracklib keep state: one check at a time. */
	pthread_mutex_t pwq_mu;
	void *pwq; /* pwquality_settings_t */
	/* A PHC string of a password nobody has: unknown users cost the same work. */
	char dummy_phc[160];
	/* Setup and reset links to their users (notify.c). */
	struct cf_notifier *notifier;
	/* Growing delays after failed secrets (throttle.c). */
	struct cf_throttle *throttle;
	/* Refusals before authentication, until the next summary. */
	struct cf_refusals *refusals;
	/* Verified tokens until they expire (an Ed25519 verification is ~50 µs). */
	pthread_mutex_t cache_mu;
	struct token_slot *cache;
	/* Principals' roles and permissions, valid while their tenant's authorisation
	 * version is the one they were read at (auth_authz_changed bumps it). */
	pthread_mutex_t grants_mu;
	struct grants_slot *grants;
};

/* base64url without padding (RFC 7515 §2); decode is strict (canonical). */
void cf_b64url_encode(const uint8_t *p, size_t n, char *out);
CF_MUST cf_err cf_b64url_decode(struct cf_span in, uint8_t *out, size_t cap, size_t *out_len);

typedef cf_err (*cf_jwt_sign_fn)(void *ctx, struct cf_span msg, uint8_t sig[CF_ED25519_SIG]);
/* Makes a signed token of these claims into out (cap >= 1024). */
CF_MUST cf_err cf_jwt_make(const char *kid, const char *iss, const struct cf_jwt_claims *cl,
                           cf_jwt_sign_fn sign, void *ctx, char *out, size_t cap);

/* The hex HMAC of a secret under the tenant's token purpose key: what is stored for
 * session ids, client secrets and link tokens. */
CF_MUST cf_err auth_mac(struct cf_auth *a, const char *tenant_id, const char *label,
                        struct cf_span secret, uint8_t out[CF_HMAC_LEN]);
/* A random secret: prefix then base64url of n bytes (out holds prefix + 4n/3 + 2). */
CF_MUST cf_err auth_secret(const char *prefix, size_t n, char *out, size_t cap);
/* Argon2id on the bounded pool of hash slots. */
CF_MUST cf_err auth_hash_password(struct cf_auth *a, struct cf_span pw, char phc[160]);
CF_MUST cf_err auth_verify_password(struct cf_auth *a, const char *phc, struct cf_span pw);
/* Roles: every name is a built-in role or one of the tenant's, granting nothing beyond
 * limit (the granter's own permissions); perms gets their union. */
CF_MUST cf_err auth_roles_check(struct cf_tx *tx, const json_t *roles, cf_perms limit);
CF_MUST cf_err auth_grants_set(struct cf_tx *tx, const char *kind, const char *id,
                               const json_t *roles, cf_perms limit);
/* A role's permissions (built-in or the tenant's own); CF_E_INVALID for no such role. */
CF_MUST cf_err auth_role_perms(struct cf_tx *tx, const char *name, cf_perms *out);
/* The roles a user holds through groups, added to perms and names (groups.c). */
CF_MUST cf_err auth_group_grants_load(struct cf_tx *tx, const char *user, cf_perms *perms,
                                      char *names, size_t cap);
/* Runs fn in a read of the tenant with a new JSON array as its context; *out gets it. */
CF_MUST cf_err auth_read_array(struct cf_auth *a, const char *tenant, cf_store_fn fn, json_t **out);
/* What the caller may grant: its own permissions (an operator: all). */
cf_perms auth_grant_limit(const struct cf_auth_call *c);
CF_MUST cf_err auth_grants_load(struct cf_tx *tx, const char *kind, const char *id, cf_perms *perms,
                                char *names, size_t cap);
/* Every transaction that changes who holds what (grants, roles, groups) calls this: the
 * tenant's authorisation version moves, and every node's cached permissions of the
 * tenant stop holding at their next request. */
CF_MUST cf_err auth_authz_changed(struct cf_tx *tx);
/* How many of the transaction's tenant's users are active and hold owner, directly or
 * through a group; and the check a change of users or groups ends with: a tenant that
 * had one (before) keeps one, else CF_E_CONFLICT. */
CF_MUST cf_err auth_active_owners(struct cf_tx *tx, int64_t *out);
CF_MUST cf_err auth_owner_kept(struct cf_tx *tx, int64_t before);
/* A principal's roles and permissions (kind "user" with its groups, or "client"): from
 * the cache when the tenant's version has not moved, else read and cached. */
CF_MUST cf_err auth_principal_grants(struct cf_auth *a, struct cf_tx *tx, struct cf_principal *p,
                                     const char *kind);
/* The same when the version was read already (with the client, in one statement). */
CF_MUST cf_err auth_principal_grants_at(struct cf_auth *a, struct cf_tx *tx, struct cf_principal *p,
                                        const char *kind, int64_t version);
/* TOTP (mfa.c): whether the user has confirmed it; a code's check (*step: the time step
 * it matched, later than the last used); using the step and a recovery code inside the
 * login's transaction (each refuses a second use). */
CF_MUST cf_err auth_totp_state(struct cf_auth *a, const char *tenant, const char *user,
                               bool *enrolled);
CF_MUST cf_err auth_totp_check(struct cf_auth *a, const char *tenant, const char *user,
                               const char *code, bool need_confirmed, int64_t *step);
/* The check itself (RFC 6238, 6 digits, 30 s, one step either side): *step gets the
 * time step matched, which must be later than last_step. */
CF_MUST cf_err cf_totp_check_code(const uint8_t *secret, size_t n, int64_t now, const char *code,
                                  int64_t last_step, int64_t *step);
CF_MUST cf_err auth_totp_use(struct cf_tx *tx, const char *user, int64_t step);
CF_MUST cf_err auth_recovery_use(struct cf_auth *a, struct cf_tx *tx, const char *user,
                                 const char *code, int64_t now);
/* Throttling (throttle.c, IA5, MD4): who tries a secret. */
struct cf_throttle;
struct cf_throttle_who {
	const char *tenant, *account, *source;
};
CF_MUST cf_err auth_throttle_new(struct cf_throttle **out);
void auth_throttle_free(struct cf_throttle **pp);
/* Seconds to wait before trying again (0: now). */
unsigned auth_throttle_wait(struct cf_throttle *t, const struct cf_throttle_who *w);
void auth_throttle_failed(struct cf_throttle *t, const struct cf_throttle_who *w);
void auth_throttle_passed(struct cf_throttle *t, const struct cf_throttle_who *w);
/* CF_E_RATE_LIMITED (with c->retry_after set) while a delay runs. */
CF_MUST cf_err auth_throttle_gate(struct cf_auth *a, const struct cf_auth_call *c,
                                  const struct cf_throttle_who *w);
struct cf_refusals;
CF_MUST cf_err auth_refusals_new(struct cf_refusals **out);
void auth_refusals_free(struct cf_refusals **pp);
/* The notifier (notify.c): now (an invitation) or from its own thread (a reset, so that
 * the request takes the same time whether or not the account exists). */
struct cf_notifier;
CF_MUST cf_err auth_notifier_new(const struct cf_auth_opts *o, struct cf_notifier **out);
void auth_notifier_free(struct cf_notifier **pp);
void auth_notifier_set_url(struct cf_notifier *nf, const char *url);
CF_MUST cf_err auth_notify_now(struct cf_notifier *nf, const char *to, const char *kind,
                               const char *tenant, const char *token, int64_t expires_at);
void auth_notify_later(struct cf_notifier *nf, const char *to, const char *kind, const char *tenant,
                       const char *token, int64_t expires_at);
/* Whether the retired token key still checks tokens (the overlap after a rotation). */
bool auth_token_overlap(const struct cf_auth *a, const struct cf_deploy_pubs *k, int64_t now);
/* The tenant's password policy (IA3): the defaults when it set none. */
struct auth_pw_policy {
	unsigned min, classes, max_age_days, history;
};
CF_MUST cf_err auth_password_policy(struct cf_auth *a, const char *tenant,
                                    struct auth_pw_policy *out);
/* IA3: whether pw is the user's current password or one of the history's (when the policy
 * keeps n): CF_E_WEAK_PASSWORD then. */
CF_MUST cf_err auth_history_check(struct cf_auth *a, const char *tenant, const char *user,
                                  unsigned n, struct cf_span pw);
/* Before a user's password changes: the current one joins the history, which keeps the
 * n - 1 newest (n 0: none). In the change's transaction. */
CF_MUST cf_err auth_history_push(struct cf_tx *tx, const char *user, int64_t now, unsigned n);
/* The tenant's row (inside a transaction). */
CF_MUST cf_err auth_tenant_tx(struct cf_tx *tx, const char *name, struct cf_tenant_ref *out);

#endif
