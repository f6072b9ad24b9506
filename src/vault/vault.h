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

/* --- collections and records (records.c; ER1, ER2, TI1, PV2) ----------------------------
 * A collection is a tenant's named schema of fields, each with a type and a
 * classification; a record is a JSON object that meets it. Every version of a record is
 * sealed as one envelope under a DEK of its own, bound to tenant, collection, record id
 * and version (associated data); only the fields marked filter, public or internal, are
 * also kept in clear, to filter on. Reads mask personal and sensitive fields unless the
 * caller holds pii.reveal and names the fields and a reason; lists leave sensitive fields
 * out. */
enum cf_class {
	CF_CLASS_PUBLIC,
	CF_CLASS_INTERNAL,
	CF_CLASS_CONFIDENTIAL,
	CF_CLASS_PERSONAL,
	CF_CLASS_SENSITIVE
};
const char *cf_class_name(enum cf_class c);

struct cf_vault;
CF_MUST cf_err cf_vault_new(struct cf_store *st, struct cf_keyring *kr, struct cf_auth *auth,
                            struct cf_vault **out);
void cf_vault_free(struct cf_vault **pp);
/* Registers the sealed records with the keyring's rewrap after a rotation (ER4). */
CF_MUST cf_err cf_vault_register_rewrap(struct cf_vault *v);

/* {"name", "version", "fields", "created_at", "updated_at"}. A new schema version on each
 * update; records keep the version they were written with. */
CF_MUST cf_err cf_vault_collection_put(struct cf_vault *v, const struct cf_auth_call *c,
                                       const struct cf_tenant_ref *t, const char *name,
                                       const json_t *fields, bool create, json_t **out);
CF_MUST cf_err cf_vault_collection_get(struct cf_vault *v, const struct cf_tenant_ref *t,
                                       const char *name, json_t **out);
CF_MUST cf_err cf_vault_collection_list(struct cf_vault *v, const struct cf_tenant_ref *t,
                                        json_t **out);
/* Deletes a collection and every record in it, for good. */
CF_MUST cf_err cf_vault_collection_delete(struct cf_vault *v, const struct cf_auth_call *c,
                                          const struct cf_tenant_ref *t, const char *name);

/* What a read shows in clear (PV2, PV7): the fields named (comma-separated, or "*"),
 * when the caller holds pii.reveal and gives a reason (written in the audit entry). */
struct cf_reveal {
	const char *fields; /* NULL: nothing revealed */
	const char *reason;
	int64_t version; /* 0: the current one; else that version of the record's history */
};
/* Idempotency-Key (DESIGN §8): the same key and request again (from the same caller)
 * answers as the first did and writes nothing; the key with another request is refused. */
struct cf_idempotency {
	const char *key; /* NULL: none */
	uint8_t request_hash[CF_SHA256_LEN];
};
/* Batches: up to CF_VAULT_BATCH_MAX records created in one transaction, all or none (a
 * refusal names records[i] and the field). Reads give {"records": [...], "missing":
 * [ids]}. */
#define CF_VAULT_BATCH_MAX 1000
/* Creates (one record or a batch) in three steps, so that no thread need wait for the
 * write: begin checks, seals and prepares the audit entries (coll, items, c and t are
 * borrowed until end); cf_vault_create_write is the store function that writes them, in
 * one transaction, all or none (run it through cf_store_write under t's id); end takes
 * the write's result, gives the ids in order (a replay's: the first request's) and,
 * when record is not NULL, the first record as a read shows it, as the JSON text of the
 * reply (malloc'd, *record_len bytes; NULL after a replay: see cf_vault_created), and
 * frees. A lone record whose schema masks nothing is framed as it was sealed. text:
 * NULL, or for a lone record its data's JSON text as the client sent it (borrowed for
 * begin only: see cf_json_member_text), sealed as sent instead of encoded again. batch:
 * items came as a batch, so that a refusal names records[i] even in a batch of one. */
struct cf_vault_create;
CF_MUST cf_err cf_vault_create_begin(struct cf_vault *v, const struct cf_auth_call *c,
                                     const struct cf_tenant_ref *t, const char *coll,
                                     const json_t *items, const struct cf_span *text, bool batch,
                                     const struct cf_idempotency *idem,
                                     struct cf_vault_create **out);
CF_MUST cf_err cf_vault_create_write(struct cf_tx *tx, void *create);
CF_MUST cf_err cf_vault_create_end(struct cf_vault_create **pp, cf_err result, json_t **ids,
                                   char **record, size_t *record_len);
/* Drops a create that is not to be written. Accepts NULL. */
void cf_vault_create_free(struct cf_vault_create **pp);
/* After end with a record: takes ids; *out is the record, or when end left it NULL (a
 * replay) the record read as it is now. */
CF_MUST cf_err cf_vault_created(struct cf_vault *v, const struct cf_auth_call *c,
                                const struct cf_tenant_ref *t, const char *coll, json_t *ids,
                                char **out, size_t *len);
CF_MUST cf_err cf_vault_records_get(struct cf_vault *v, const struct cf_auth_call *c,
                                    const struct cf_tenant_ref *t, const char *coll,
                                    const json_t *ids, json_t **out);
/* Reads a record, masked as its collection's current schema says (rv: what to reveal,
 * with a reason, or an older version). */
CF_MUST cf_err cf_vault_record_get(struct cf_vault *v, const struct cf_auth_call *c,
                                   const struct cf_tenant_ref *t, const char *coll, const char *id,
                                   const struct cf_reveal *rv, json_t **out);
/* The same, as the JSON text of the reply (malloc'd, *len bytes, NUL-terminated), and
 * the version it shows (*version, when not NULL). A version written under the
 * collection's current schema, when that schema has nothing to mask, is framed as
 * stored, without being parsed again. */
CF_MUST cf_err cf_vault_record_get_text(struct cf_vault *v, const struct cf_auth_call *c,
                                        const struct cf_tenant_ref *t, const char *coll,
                                        const char *id, const struct cf_reveal *rv, char **out,
                                        size_t *len, int64_t *version);
/* Replaces or patches (RFC 7396 merge at the top level) a record, or deletes it (soft),
 * in three steps as creates: begin reads, merges, checks, seals and prepares the audit
 * entry (c and t are borrowed until then; if_match: the version the caller read, -1:
 * none, another gets CF_E_CONFLICT); cf_vault_change_write writes it (through
 * cf_store_write under t's id); end takes the write's result and gives the record as a
 * read shows it (a deletion: {"ok": true}), and frees. */
struct cf_vault_change;
CF_MUST cf_err cf_vault_update_begin(struct cf_vault *v, const struct cf_auth_call *c,
                                     const struct cf_tenant_ref *t, const char *coll,
                                     const char *id, const json_t *data, bool patch,
                                     int64_t if_match, struct cf_vault_change **out);
CF_MUST cf_err cf_vault_delete_begin(struct cf_vault *v, const struct cf_auth_call *c,
                                     const struct cf_tenant_ref *t, const char *coll,
                                     const char *id, int64_t if_match,
                                     struct cf_vault_change **out);
CF_MUST cf_err cf_vault_change_write(struct cf_tx *tx, void *change);
CF_MUST cf_err cf_vault_change_end(struct cf_vault_change **pp, cf_err result, json_t **out);
/* Drops a change that is not to be written. Accepts NULL. */
void cf_vault_change_free(struct cf_vault_change **pp);
/* A page of records, by id (cursor: the last id of the page before), those whose
 * filterable fields equal filters' values ({"plan": "pro"}); sensitive fields left out,
 * personal ones masked. {"records": [...], "next": cursor or null}. */
CF_MUST cf_err cf_vault_record_list(struct cf_vault *v, const struct cf_tenant_ref *t,
                                    const char *coll, const json_t *filters, const char *cursor,
                                    unsigned limit, json_t **out);
/* PV5: a page of the tenant's export: every live record of every collection, in clear,
 * {"records": [{"collection", "id", "version", "created_at", "updated_at", "data"}],
 * "failed": [{"collection", "id", "error"}], "next": cursor or null}, in (collection, id)
 * order after cursor ("collection/id", NULL: the start), at most limit (1..1000) records
 * a page. A record that fails its integrity check is named in "failed" (and audited),
 * never exported. */
CF_MUST cf_err cf_vault_export_page(struct cf_vault *v, const struct cf_auth_call *c,
                                    const struct cf_tenant_ref *t, const char *cursor,
                                    unsigned limit, json_t **out);
/* Purges every record deleted before `before` (unix seconds), every version of it, in
 * every tenant; one audit entry per tenant that had any (records.purge, the count). */
CF_MUST cf_err cf_vault_purge(struct cf_vault *v, int64_t before, unsigned *purged);
/* A record's versions, newest first, a page of at most limit (0: 100) below `before`
 * (0: from the newest): {"versions": [{"version", "schema_version", "created_at", "by"}],
 * "next": the `before` of the next page, or null}. */
CF_MUST cf_err cf_vault_record_history(struct cf_vault *v, const struct cf_tenant_ref *t,
                                       const char *coll, const char *id, int64_t before,
                                       unsigned limit, json_t **out);

#endif
