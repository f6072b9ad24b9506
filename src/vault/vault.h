/* coffre — vault: the data. This first piece is tenants (DESIGN §3): creating one makes
 * its row and its keys; suspending stops its access; deleting crypto-shreds it (PV4).
 * vault is the first part that may use both keys and the store, so tenants live here. */
#ifndef CF_VAULT_H
#define CF_VAULT_H

#include "auth/auth.h"
#include "base/base.h"
#include "keys/keys.h"
#include "store/store.h"

/* ER7: binds the data store to the keystore. On the first start after init it records
 * the keystore's id and environment in the data store; afterwards they must match.
 * CF_E_CONFIG names both sides when they do not (a production data store opened with a
 * development keystore, or another deployment's). */
CF_MUST cf_err cf_vault_bind_keystore(struct cf_store *st, struct cf_keyring *kr);

/* Creates a tenant: name is 1..63 of [a-z0-9-], starting with a letter or digit;
 * rotation_days 0 takes keys.rotation_days. With owner_email, its first user is made
 * with the role owner and a single-use setup link (IA12). *out gets {"id", "name",
 * "state", "created_at", "owner": {"id", "email", "setup_token"}}. CF_E_CONFLICT when
 * the name is taken. call says who asks (for the audit log). */
CF_MUST cf_err cf_vault_tenant_create(struct cf_store *st, struct cf_keyring *kr,
                                      struct cf_auth *auth, const struct cf_auth_call *call,
                                      const char *name, unsigned rotation_days,
                                      const char *owner_email, json_t **out);
/* Every tenant, by name: an array of the objects above. */
CF_MUST cf_err cf_vault_tenant_list(struct cf_store *st, json_t **out);
/* Suspends or resumes (by name). CF_E_NOT_FOUND for an unknown name. */
CF_MUST cf_err cf_vault_tenant_suspend(struct cf_store *st, struct cf_keyring *kr, const char *name,
                                       bool suspended);
/* Deletes a tenant (by name): marks it deleting (no access from then), crypto-shreds
 * its keys, then removes its rows. *destroyed gets the number of keys destroyed. */
CF_MUST cf_err cf_vault_tenant_delete(struct cf_store *st, struct cf_keyring *kr, const char *name,
                                      unsigned *destroyed);
/* Finishes deletions a crash interrupted (start-up). */
CF_MUST cf_err cf_vault_resume_deletions(struct cf_store *st, struct cf_keyring *kr);
/* The tenant id for a name (CF_E_NOT_FOUND). */
CF_MUST cf_err cf_vault_tenant_id(struct cf_store *st, const char *name,
                                  char id[CF_TENANT_ID_MAX + 1]);

#endif
