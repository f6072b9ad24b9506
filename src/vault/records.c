/* coffre — collections and records (ER1, ER2, TI1, PV2, PV7). A record version is one
 * envelope (keys/envelope.c) sealed under a DEK of its own; its associated data binds the
 * tenant, the collection, the record id and the version, so a row copied to another
 * tenant or record, or an old version put back as the current one, does not open. Every
 * change is written with its audit entry in one transaction. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vault/internal.h"

/* Parsed schemas, kept by the text they were parsed from: a read brings the collection's
 * current schema text with the record, and a text seen before is not parsed again. Kept
 * by text, not by version, so nothing can go stale: a collection deleted and made again
 * under its name, on this node or another, has another text or parses the same. */
#define SCHEMA_SLOTS 64u

struct schema_slot {
	char tenant[CF_TENANT_ID_MAX + 1];
	char name[VAULT_NAME_MAX + 1];
	char *text;
	size_t len;
	struct vault_schema s;
};

struct cf_vault {
	struct cf_store *st;
	struct cf_keyring *kr;
	struct cf_auth *auth;
	pthread_mutex_t mu; /* guards slots */
	struct schema_slot *slots;
};

cf_err cf_vault_new(struct cf_store *st, struct cf_keyring *kr, struct cf_auth *auth,
                    struct cf_vault **out)
{
	struct cf_vault *v = calloc(1, sizeof *v);
	CF_ENSURE(v, CF_E_NOMEM);
	*v = (struct cf_vault){.st = st, .kr = kr, .auth = auth};
	v->slots = calloc(SCHEMA_SLOTS, sizeof *v->slots);
	if (!v->slots) {
		free(v);
		return CF_E_NOMEM;
	}
	pthread_mutex_init(&v->mu, NULL);
	*out = v;
	return CF_OK;
}

void cf_vault_free(struct cf_vault **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_vault *v = *pp;
	for (size_t i = 0; i < SCHEMA_SLOTS; i++)
		free(v->slots[i].text);
	free(v->slots);
	pthread_mutex_destroy(&v->mu);
	free(v);
	*pp = NULL;
}

static size_t slot_of(const char *tenant, const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a: spreads the slots, no security role */
	for (const char *p = tenant; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h % SCHEMA_SLOTS;
}

/* The schema a collection's stored text says, parsed or from the slots. */
static cf_err schema_of_text(struct cf_vault *v, const char *tenant, const char *name,
                             struct cf_span text, struct vault_schema *out)
{
	struct schema_slot *slot = &v->slots[slot_of(tenant, name)];
	bool hit = false;
	pthread_mutex_lock(&v->mu);
	if (slot->text && slot->len == text.len && memcmp(slot->text, text.ptr, text.len) == 0 &&
	    strcmp(slot->tenant, tenant) == 0 && strcmp(slot->name, name) == 0) {
		*out = slot->s;
		hit = true;
	}
	pthread_mutex_unlock(&v->mu);
	if (hit)
		return CF_OK;
	json_t *fields = NULL;
	CF_ENSURE(cf_json_parse_object(text.ptr, text.len, VAULT_RECORD_MAX, &fields) == CF_OK,
	          cf_err_fail(CF_E_INTEGRITY, "the collection's stored schema is damaged"));
	cf_err err = vault_schema_parse(fields, out);
	json_decref(fields);
	CF_TRY(err);
	char *copy = strlen(tenant) < sizeof slot->tenant && strlen(name) < sizeof slot->name
	                     ? strndup((const char *)text.ptr, text.len)
	                     : NULL;
	if (!copy)
		return CF_OK; /* not kept; parsed all the same */
	pthread_mutex_lock(&v->mu);
	free(slot->text);
	slot->text = copy;
	slot->len = text.len;
	(void)snprintf(slot->tenant, sizeof slot->tenant, "%s", tenant);
	(void)snprintf(slot->name, sizeof slot->name, "%s", name);
	slot->s = *out;
	pthread_mutex_unlock(&v->mu);
	return CF_OK;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* --- collections ----------------------------------------------------------------------- */
struct coll_q {
	const char *tenant, *name;
	int64_t version; /* 0: the current one */
	bool found;
	int64_t current, created, updated;
	char *schema_text; /* malloc'd */
	json_t *arr;
	/* a change */
	const char *text;
	const struct vault_schema *next; /* text, parsed */
	bool create;
	struct cf_audit_prepared audit;
};

static cf_err coll_row(const struct cf_row *row, void *ctx)
{
	struct coll_q *q = ctx;
	q->found = true;
	q->current = cf_row_int(row, 0);
	q->created = cf_row_int(row, 2);
	q->updated = cf_row_int(row, 3);
	struct cf_span s = cf_row_blob(row, 1);
	free(q->schema_text);
	q->schema_text = strndup((const char *)s.ptr, s.len);
	return q->schema_text ? CF_OK : CF_E_NOMEM;
}

static cf_err coll_read(struct cf_tx *tx, void *ctx)
{
	struct coll_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->name), CF_V_INT(q->version)};
	if (q->version)
		return cf_tx_query(tx,
		                   "SELECT c.version, v.schema, c.created_at, c.updated_at"
		                   " FROM collections c JOIN collection_versions v"
		                   " ON v.tenant_id = c.tenant_id AND v.name = c.name"
		                   " WHERE c.tenant_id = $1 AND c.name = $2 AND v.version = $3",
		                   v, 3, coll_row, q);
	return cf_tx_query(tx,
	                   "SELECT version, schema, created_at, updated_at FROM collections"
	                   " WHERE tenant_id = $1 AND name = $2",
	                   v, 2, coll_row, q);
}

/* The collection's schema (its current version, or version). */
static cf_err schema_load(struct cf_vault *v, const char *tenant, const char *name, int64_t version,
                          struct vault_schema *s, int64_t *current)
{
	CF_TRY(vault_name_check("collection", name));
	struct coll_q q = {.tenant = tenant, .name = name, .version = version};
	cf_err err = cf_store_read(v->st, tenant, coll_read, &q);
	if (err == CF_OK && !q.found)
		err = cf_err_fail(CF_E_NOT_FOUND, "no collection named '%s'", name);
	if (err == CF_OK)
		err = schema_of_text(v, tenant, name, cf_span_str(q.schema_text), s);
	free(q.schema_text);
	if (current)
		*current = q.current;
	return err;
}

static cf_err any_record_row(const struct cf_row *row, void *ctx)
{
	(void)row;
	*(bool *)ctx = true;
	return CF_OK;
}

struct had_q {
	const char *field;
	bool had;
};

static cf_err had_row(const struct cf_row *row, void *ctx)
{
	struct had_q *q = ctx;
	struct cf_span s = cf_row_blob(row, 0);
	json_t *fields = NULL;
	CF_ENSURE(cf_json_parse_object(s.ptr, s.len, VAULT_RECORD_MAX, &fields) == CF_OK,
	          cf_err_fail(CF_E_INTEGRITY, "the collection's stored schema is damaged"));
	q->had = q->had || json_object_get(fields, q->field) != NULL;
	json_decref(fields);
	return CF_OK;
}

/* ER2, PV2: a field's value is in clear in record_index only while its field is marked
 * filter (and so public or internal). A change that unmarks a field, or reclassifies it,
 * or drops it, deletes its clear values in the same transaction. The values already
 * sealed are not indexed afterwards: a field of a collection with records can be marked
 * filter only as a field no version of the schema had (no record has it), never later,
 * or a filtered list would leave out the records written before. */
static cf_err index_follow(struct cf_tx *tx, const struct coll_q *q)
{
	struct vault_schema *was = calloc(1, sizeof *was);
	CF_ENSURE(was, CF_E_NOMEM);
	json_t *fields = NULL;
	cf_err err = cf_json_parse_object((const uint8_t *)q->schema_text, strlen(q->schema_text),
	                                  VAULT_RECORD_MAX, &fields);
	if (err == CF_OK)
		err = vault_schema_parse(fields, was);
	json_decref(fields);
	if (err != CF_OK) {
		free(was);
		return cf_err_fail(CF_E_INTEGRITY, "the collection's stored schema is damaged");
	}
	bool records = false, asked = false;
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->name)};
	for (size_t i = 0; err == CF_OK && i < q->next->n; i++) {
		const struct vault_field *now = &q->next->f[i],
		                         *before = vault_field(was, now->name);
		if (!now->filter || (before && before->filter))
			continue;
		if (!asked)
			err = cf_tx_query(
			        tx,
			        "SELECT 1 FROM records WHERE tenant_id = $1 AND collection = $2"
			        " LIMIT 1",
			        k, 2, any_record_row, &records);
		asked = true;
		struct had_q h = {.field = now->name};
		if (err == CF_OK && records)
			err = cf_tx_query(
			        tx,
			        "SELECT schema FROM collection_versions WHERE tenant_id = $1"
			        " AND name = $2",
			        k, 2, had_row, &h);
		char path[96];
		(void)snprintf(path, sizeof path, "fields.%s", now->name);
		if (err == CF_OK && h.had)
			err = cf_err_at(
			        CF_E_CONFLICT, path, "filter",
			        "%s: the collection has records, whose values are sealed and "
			        "not indexed: only a field no version had can become filterable",
			        path);
	}
	for (size_t i = 0; err == CF_OK && i < was->n; i++) {
		const struct vault_field *before = &was->f[i],
		                         *now = vault_field(q->next, before->name);
		if (!before->filter || (now && now->filter))
			continue;
		struct cf_val d[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->name),
		                     CF_V_TEXT(before->name)};
		err = cf_tx_exec(tx,
		                 "DELETE FROM record_index WHERE tenant_id = $1 AND collection = $2"
		                 " AND field = $3",
		                 d, 3, NULL);
	}
	free(was);
	return err;
}

static cf_err coll_write(struct cf_tx *tx, void *ctx)
{
	struct coll_q *q = ctx;
	int64_t now = now_s();
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->name)};
	q->found = false;
	CF_TRY(cf_tx_query(tx,
	                   "SELECT version, schema, created_at, updated_at FROM collections"
	                   " WHERE tenant_id = $1 AND name = $2",
	                   k, 2, coll_row, q));
	CF_ENSURE(!q->create || !q->found,
	          cf_err_fail(CF_E_CONFLICT, "a collection named '%s' exists", q->name));
	CF_ENSURE(q->create || q->found,
	          cf_err_fail(CF_E_NOT_FOUND, "no collection named '%s'", q->name));
	if (q->found)
		CF_TRY(index_follow(tx, q));
	int64_t version = q->found ? q->current + 1 : 1;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->name), CF_V_INT(version),
	                     CF_V_TEXT(q->text), CF_V_INT(now)};
	CF_TRY(cf_tx_exec(tx,
	                  q->create ? "INSERT INTO collections (tenant_id, name, version, schema,"
	                              " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)"
	                            : "UPDATE collections SET version = $3, schema = $4,"
	                              " updated_at = $5 WHERE tenant_id = $1 AND name = $2",
	                  v, 5, NULL));
	CF_TRY(cf_tx_exec(tx,
	                  "INSERT INTO collection_versions (tenant_id, name, version, schema,"
	                  " created_at) VALUES ($1, $2, $3, $4, $5)",
	                  v, 5, NULL));
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_vault_collection_put(struct cf_vault *v, const struct cf_auth_call *c,
                               const struct cf_tenant_ref *t, const char *name,
                               const json_t *fields, bool create, json_t **out)
{
	CF_TRY(vault_name_check("name", name));
	struct vault_schema *s = calloc(1, sizeof *s);
	CF_ENSURE(s, CF_E_NOMEM);
	cf_err err = vault_schema_parse(fields, s);
	json_t *canon = err == CF_OK ? vault_schema_json(s) : NULL;
	char *text = NULL;
	if (err == CF_OK)
		err = canon ? cf_json_dump(canon, &text, NULL) : CF_E_NOMEM;
	json_decref(canon);
	if (err != CF_OK) {
		free(s);
		return err;
	}
	struct coll_q q = {
	        .tenant = t->id, .name = name, .text = text, .next = s, .create = create};
	err = cf_auth_audit_prepare(v->auth, c, t->id,
	                            create ? "collection.create" : "collection.update", name,
	                            CF_OUTCOME_OK, CF_OK, &q.audit);
	if (err == CF_OK)
		err = cf_store_write_wait(v->st, t->id, coll_write, &q);
	free(q.schema_text);
	free(text);
	free(s);
	CF_TRY(err);
	return cf_vault_collection_get(v, t, name, out);
}

static json_t *coll_json(const char *name, int64_t version, const char *schema, int64_t created,
                         int64_t updated)
{
	json_t *fields = json_loads(schema, 0, NULL);
	return json_pack("{s:s, s:I, s:o*, s:I, s:I}", "name", name, "version", (json_int_t)version,
	                 "fields", fields, "created_at", (json_int_t)created, "updated_at",
	                 (json_int_t)updated);
}

cf_err cf_vault_collection_get(struct cf_vault *v, const struct cf_tenant_ref *t, const char *name,
                               json_t **out)
{
	CF_TRY(vault_name_check("collection", name));
	struct coll_q q = {.tenant = t->id, .name = name};
	cf_err err = cf_store_read(v->st, t->id, coll_read, &q);
	if (err == CF_OK && !q.found)
		err = cf_err_fail(CF_E_NOT_FOUND, "no collection named '%s'", name);
	if (err == CF_OK) {
		*out = coll_json(name, q.current, q.schema_text, q.created, q.updated);
		err = *out ? CF_OK : CF_E_NOMEM;
	}
	free(q.schema_text);
	return err;
}

static cf_err coll_list_row(const struct cf_row *row, void *ctx)
{
	char name[VAULT_NAME_MAX + 1];
	cf_span_to_str(cf_row_blob(row, 0), name, sizeof name);
	struct cf_span s = cf_row_blob(row, 2);
	char *schema = strndup((const char *)s.ptr, s.len);
	CF_ENSURE(schema, CF_E_NOMEM);
	json_t *o =
	        coll_json(name, cf_row_int(row, 1), schema, cf_row_int(row, 3), cf_row_int(row, 4));
	free(schema);
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(ctx, o) == 0 ? CF_OK : CF_E_NOMEM;
}

static cf_err coll_list_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	return cf_tx_query(tx,
	                   "SELECT name, version, schema, created_at, updated_at FROM collections"
	                   " WHERE tenant_id = $1 ORDER BY name",
	                   v, 1, coll_list_row, ctx);
}

cf_err cf_vault_collection_list(struct cf_vault *v, const struct cf_tenant_ref *t, json_t **out)
{
	json_t *arr = json_array();
	CF_ENSURE(arr, CF_E_NOMEM);
	cf_err err = cf_store_read(v->st, t->id, coll_list_fn, arr);
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = json_pack("{s:o}", "collections", arr);
	return *out ? CF_OK : CF_E_NOMEM;
}

static cf_err coll_delete_fn(struct cf_tx *tx, void *ctx)
{
	struct coll_q *q = ctx;
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->name)};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx, "DELETE FROM collections WHERE tenant_id = $1 AND name = $2", k, 2,
	                  &n));
	CF_ENSURE(n == 1, cf_err_fail(CF_E_NOT_FOUND, "no collection named '%s'", q->name));
	static const char *const more[] = {
	        "DELETE FROM collection_versions WHERE tenant_id = $1 AND name = $2",
	        "DELETE FROM records WHERE tenant_id = $1 AND collection = $2",
	        "DELETE FROM record_versions WHERE tenant_id = $1 AND collection = $2",
	        "DELETE FROM record_index WHERE tenant_id = $1 AND collection = $2",
	};
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		CF_TRY(cf_tx_exec(tx, more[i], k, 2, NULL));
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_vault_collection_delete(struct cf_vault *v, const struct cf_auth_call *c,
                                  const struct cf_tenant_ref *t, const char *name)
{
	CF_TRY(vault_name_check("collection", name));
	struct coll_q q = {.tenant = t->id, .name = name};
	CF_TRY(cf_auth_audit_prepare(v->auth, c, t->id, "collection.delete", name, CF_OUTCOME_OK,
	                             CF_OK, &q.audit));
	cf_err err = cf_store_write_wait(v->st, t->id, coll_delete_fn, &q);
	free(q.schema_text);
	return err;
}

/* --- sealing ------------------------------------------------------------------------------ */
static struct cf_env_ctx env_ctx(const char *tenant, const char *coll, const char *id,
                                 int64_t version)
{
	return (struct cf_env_ctx){.tenant = cf_span_str(tenant),
	                           .collection = cf_span_str(coll),
	                           .record = cf_span_str(id),
	                           .version = (uint64_t)version,
	                           .field = cf_span_str("data")};
}

/* A sealed version: the envelope (malloc'd) and the KEK version that wraps its DEK. */
struct sealed {
	uint8_t *env;
	size_t len;
	int64_t kek_version;
};

/* keep: not NULL, the JSON text sealed is given there (*keep, *keep_len bytes, malloc'd:
 * the caller wipes it) instead of being wiped here. text: not NULL, data's JSON text as
 * the client sent it (jansson accepted it and data was parsed from it), sealed as it is
 * instead of data encoded again (a create's encoding was a twentieth of its CPU). */
static cf_err seal(struct cf_vault *v, const char *tenant, const char *coll, const char *id,
                   int64_t version, const json_t *data, const struct cf_span *text,
                   struct sealed *out, uint8_t **keep, size_t *keep_len)
{
	char *pt = NULL;
	size_t n = 0;
	if (text) {
		pt = malloc(text->len + 1);
		CF_ENSURE(pt, CF_E_NOMEM);
		memcpy(pt, text->ptr, text->len);
		pt[text->len] = '\0';
		n = text->len;
	} else {
		CF_TRY(cf_json_dump(data, &pt, &n));
	}
	cf_err err = n <= VAULT_RECORD_MAX
	                     ? CF_OK
	                     : cf_err_at(CF_E_TOO_LARGE, "data", "max",
	                                 "a record is at most %d bytes of JSON", VAULT_RECORD_MAX);
	struct cf_env_ctx ctx = env_ctx(tenant, coll, id, version);
	size_t cap = cf_env_size(&ctx, n);
	out->env = err == CF_OK ? malloc(cap) : NULL;
	if (err == CF_OK && !out->env)
		err = CF_E_NOMEM;
	if (err == CF_OK)
		err = cf_keys_seal_value(v->kr, &ctx, (struct cf_span){(const uint8_t *)pt, n},
		                         out->env, cap, &out->len);
	struct cf_env_view view;
	if (err == CF_OK)
		err = cf_env_parse((struct cf_span){out->env, out->len}, &view);
	if (err == CF_OK)
		out->kek_version = view.kid.kek_version;
	if (err == CF_OK && keep) {
		*keep = (uint8_t *)pt;
		*keep_len = n;
		pt = NULL;
	}
	if (pt) {
		cf_wipe(pt, n);
		free(pt);
	}
	if (err) {
		free(out->env);
		out->env = NULL;
	}
	return err;
}

/* TI1: a value that does not open here (copied from another tenant or record, altered,
 * or under a destroyed key) is never returned garbled: reported, alerted, audited. */
static cf_err integrity_failed(struct cf_vault *v, const struct cf_auth_call *c, const char *tenant,
                               const char *coll, const char *id, int64_t version)
{
	cf_log(CF_LOG_ERROR, c ? c->request_id : NULL, "record_integrity",
	       "ALERT: a record of collection %s (id %s, version %lld) failed its "
	       "integrity check",
	       coll, id, (long long)version);
	cf_err_detail_clear();
	CF_TRY(cf_auth_audit_record(v->auth, c, tenant, "record.integrity", id, CF_OUTCOME_FAILED,
	                            CF_E_INTEGRITY));
	return cf_err_fail(CF_E_INTEGRITY, "the record failed its integrity check: it is "
	                                   "not returned, and the failure is audited");
}

/* Opens a version into *out, or, when out is NULL, gives its JSON text (*plain, the
 * caller wipes and frees it: it may hold personal values). CF_E_INTEGRITY is reported
 * (logged as an alert, audited) here. */
static cf_err open_data(struct cf_vault *v, const struct cf_auth_call *c, const char *tenant,
                        const char *coll, const char *id, int64_t version, struct cf_span env,
                        json_t **out, uint8_t **plain, size_t *plain_len)
{
	struct cf_env_ctx ctx = env_ctx(tenant, coll, id, version);
	uint8_t *pt = env.len ? malloc(env.len) : NULL;
	CF_ENSURE(pt, env.len ? CF_E_NOMEM : CF_E_INTEGRITY);
	size_t n = 0;
	cf_err err = cf_keys_open_value(v->kr, &ctx, env, pt, env.len, &n);
	if (err == CF_OK && out && cf_json_parse_object(pt, n, VAULT_RECORD_MAX + 1, out) != CF_OK)
		err = CF_E_INTEGRITY;
	/* the text is what coffre sealed (the tag says so): a JSON object */
	if (err == CF_OK && !out && (n < 2 || pt[0] != '{' || pt[n - 1] != '}'))
		err = CF_E_INTEGRITY;
	if (err == CF_OK && !out) {
		*plain = pt;
		*plain_len = n;
		pt = NULL;
	}
	if (pt) {
		cf_wipe(pt, env.len);
		free(pt);
	}
	if (err == CF_E_INTEGRITY)
		return integrity_failed(v, c, tenant, coll, id, version);
	return err;
}

/* --- records ------------------------------------------------------------------------------- */
struct rec_q {
	const char *tenant, *coll, *id;
	int64_t version; /* a read: 0 for the current one */
	bool found, deleted;
	int64_t current, schema_version, created, updated;
	uint8_t *env;
	size_t env_len;
	uint8_t *plain; /* load without data: the version's JSON text (malloc'd) */
	size_t plain_len;
	char *schema_text;    /* the collection's current schema (malloc'd) */
	int64_t coll_version; /* ... and its version */
	/* a write */
	struct sealed s;
	int64_t expected; /* the version being replaced (0: a new record) */
	const json_t *data;
	const struct vault_schema *schema;
	int64_t new_schema_version;
	const char *actor;
	bool remove;
	int64_t now; /* the write's time (0: when it is written) */
	struct cf_audit_prepared audit;
};

static cf_err rec_row(const struct cf_row *row, void *ctx)
{
	struct rec_q *q = ctx;
	q->found = true;
	q->current = cf_row_int(row, 0);
	q->schema_version = cf_row_int(row, 1);
	q->created = cf_row_int(row, 2);
	q->updated = cf_row_int(row, 3);
	q->deleted = !cf_row_is_null(row, 4);
	struct cf_span e = cf_row_blob(row, 5);
	free(q->env);
	q->env = e.len ? malloc(e.len) : NULL;
	if (e.len && !q->env)
		return CF_E_NOMEM;
	if (e.len)
		memcpy(q->env, e.ptr, e.len);
	q->env_len = e.len;
	if (!cf_row_is_null(row, 6))
		q->schema_version = cf_row_int(row, 6);
	struct cf_span st = cf_row_blob(row, 7);
	q->coll_version = cf_row_int(row, 8);
	free(q->schema_text);
	q->schema_text = strndup((const char *)st.ptr, st.len);
	return q->schema_text ? CF_OK : CF_E_NOMEM;
}

static cf_err rec_read(struct cf_tx *tx, void *ctx)
{
	struct rec_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->coll), CF_V_TEXT(q->id),
	                     CF_V_INT(q->version)};
	/* The current version, or the one asked for (its own schema version), and the
	 * collection's current schema in the same snapshot. */
	return cf_tx_query(
	        tx,
	        "SELECT r.version, r.schema_version, r.created_at, r.updated_at,"
	        " r.deleted_at, v.sealed, v.schema_version, c.schema, c.version FROM records r"
	        " JOIN collections c ON c.tenant_id = r.tenant_id"
	        " AND c.name = r.collection"
	        " LEFT JOIN record_versions v ON v.tenant_id = r.tenant_id"
	        " AND v.collection = r.collection AND v.record_id = r.record_id"
	        " AND v.version = CASE WHEN $4 = 0 THEN r.version ELSE $4 END"
	        " WHERE r.tenant_id = $1 AND r.collection = $2 AND r.record_id = $3",
	        v, 4, rec_row, q);
}

static cf_err new_id(char id[VAULT_ID_MAX + 1])
{
	uint64_t ms = (uint64_t)cf_now_us() / 1000u;
	int n = snprintf(id, VAULT_ID_MAX + 1, "r%012llx",
	                 (unsigned long long)(ms & 0xffffffffffffull));
	CF_ENSURE(n == 13, CF_E_INTERNAL);
	return cf_random_hex(id + 13, VAULT_ID_MAX + 1 - 13, 8);
}

static cf_err id_check(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	bool ok = (n == VAULT_ID_MAX || n == VAULT_ID_OLD) && id[0] == 'r';
	for (size_t i = 1; ok && i < n; i++)
		ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
	CF_ENSURE(ok, cf_err_fail(CF_E_NOT_FOUND, "no such record"));
	return CF_OK;
}

static cf_err index_write(struct cf_tx *tx, struct rec_q *q)
{
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->coll), CF_V_TEXT(q->id)};
	if (q->expected > 0 || q->remove) /* a new record has nothing indexed yet */
		CF_TRY(cf_tx_exec(
		        tx,
		        "DELETE FROM record_index WHERE tenant_id = $1 AND collection = $2"
		        " AND record_id = $3",
		        k, 3, NULL));
	for (size_t i = 0; q->data && i < q->schema->n; i++) {
		const struct vault_field *f = &q->schema->f[i];
		char text[VAULT_INDEX_MAX + 1];
		const json_t *val = json_object_get(q->data, f->name);
		if (!f->filter || !val || !vault_index_text(val, text))
			continue;
		struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->coll), CF_V_TEXT(q->id),
		                     CF_V_TEXT(f->name), CF_V_TEXT(text)};
		CF_TRY(cf_tx_exec_later(
		        tx,
		        "INSERT INTO record_index (tenant_id, collection, record_id,"
		        " field, value) VALUES ($1, $2, $3, $4, $5)",
		        v, 5));
	}
	return CF_OK;
}

static cf_err rec_write(struct cf_tx *tx, void *ctx)
{
	struct rec_q *q = ctx;
	int64_t now = q->now ? q->now : now_s(), next = q->expected + 1;
	int64_t n = 0;
	if (q->remove) {
		struct cf_val d[] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->coll), CF_V_TEXT(q->id),
		                     CF_V_INT(now), CF_V_INT(q->expected)};
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE records SET deleted_at = $4 WHERE tenant_id = $1"
		                  " AND collection = $2 AND record_id = $3 AND deleted_at IS NULL"
		                  " AND ($5 = 0 OR version = $5)",
		                  d, 5, &n));
		CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT, "the record has changed or is gone: "
		                                             "read it again"));
		q->data = NULL;
		CF_TRY(index_write(tx, q));
		return cf_audit_append(tx, &q->audit);
	}
	struct cf_val r[] = {CF_V_TEXT(q->tenant),
	                     CF_V_TEXT(q->coll),
	                     CF_V_TEXT(q->id),
	                     CF_V_INT(next),
	                     CF_V_INT(q->new_schema_version),
	                     CF_V_INT(now),
	                     CF_V_INT(q->expected)};
	/* The inserts need no answer but the commit's: on PostgreSQL they travel with it. */
	if (q->expected == 0) {
		CF_TRY(cf_tx_exec_later(
		        tx,
		        "INSERT INTO records (tenant_id, collection, record_id, version,"
		        " schema_version, created_at, updated_at)"
		        " VALUES ($1, $2, $3, $4, $5, $6, $6)",
		        r, 6));
	} else {
		/* Optimistic concurrency: only over the version read. */
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE records SET version = $4, schema_version = $5,"
		                  " updated_at = $6 WHERE tenant_id = $1 AND collection = $2"
		                  " AND record_id = $3 AND version = $7 AND deleted_at IS NULL",
		                  r, 7, &n));
		CF_ENSURE(n == 1, cf_err_fail(CF_E_CONFLICT,
		                              "the record has changed since version "
		                              "%lld: read it again",
		                              (long long)q->expected));
	}
	struct cf_val v[] = {CF_V_TEXT(q->tenant),
	                     CF_V_TEXT(q->coll),
	                     CF_V_TEXT(q->id),
	                     CF_V_INT(next),
	                     CF_V_INT(q->new_schema_version),
	                     CF_V_INT(q->s.kek_version),
	                     CF_V_BLOB(q->s.env, q->s.len),
	                     CF_V_INT(now),
	                     CF_V_TEXT(q->actor)};
	CF_TRY(cf_tx_exec_later(tx,
	                        "INSERT INTO record_versions (tenant_id, collection, record_id,"
	                        " version, schema_version, kek_version, sealed, created_at,"
	                        " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	                        v, 9));
	CF_TRY(index_write(tx, q));
	return cf_audit_append(tx, &q->audit);
}

static const char *actor_of(const struct cf_auth_call *c)
{
	return c && c->who ? c->who->id : c && c->operator_id ? c->operator_id : "-";
}

/* Masks (PV2): personal and sensitive values, unless revealed; in lists, sensitive ones
 * are left out. Fields the current schema no longer has are masked as sensitive. */
static json_t *shown(const struct vault_schema *s, json_t *data, const char *reveal, bool list,
                     json_t *masked)
{
	json_t *out = json_object();
	const char *name;
	json_t *val;
	json_object_foreach (data, name, val) {
		const struct vault_field *f = vault_field(s, name);
		struct vault_field unknown = {.type = CF_FT_STRING, .cls = CF_CLASS_SENSITIVE};
		if (!f)
			f = &unknown;
		bool secret = f->cls >= CF_CLASS_PERSONAL;
		bool open = false;
		if (secret && reveal) {
			size_t n = strlen(name);
			for (const char *p = reveal; !open && p && *p;) {
				const char *end = strchr(p, ',');
				size_t len = end ? (size_t)(end - p) : strlen(p);
				open = (len == 1 && *p == '*') ||
				       (len == n && memcmp(p, name, n) == 0);
				p = end ? end + 1 : NULL;
			}
		}
		if (list && f->cls == CF_CLASS_SENSITIVE && !open)
			continue;
		json_t *v = secret && !open ? vault_mask(f, val) : json_incref(val);
		if (secret && !open)
			json_array_append_new(masked, json_string(name));
		json_object_set_new(out, name, v);
	}
	return out;
}

static json_t *rec_json(const struct rec_q *q, json_t *data, json_t *masked)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o}", "id", q->id, "collection",
	                 q->coll, "version", (json_int_t)(q->version ? q->version : q->current),
	                 "schema_version", (json_int_t)q->schema_version, "created_at",
	                 (json_int_t)q->created, "updated_at", (json_int_t)q->updated, "data", data,
	                 "masked", masked);
}

static void plain_free(struct rec_q *q)
{
	if (q->plain) {
		cf_wipe(q->plain, q->plain_len);
		free(q->plain);
	}
	q->plain = NULL;
	q->plain_len = 0;
}

/* Reads a record's version and opens it (data NULL: its text into q->plain);
 * q->schema_text gets the collection's current schema. The caller frees both. */
static cf_err load(struct cf_vault *v, const struct cf_auth_call *c, struct rec_q *q, json_t **data)
{
	CF_TRY(id_check(q->id));
	cf_err err = cf_store_read(v->st, q->tenant, rec_read, q);
	if (err == CF_OK && (!q->found || q->deleted))
		err = cf_err_fail(CF_E_NOT_FOUND, "no such record");
	if (err == CF_OK && !q->env)
		err = cf_err_fail(CF_E_NOT_FOUND, "no such version of the record");
	if (err == CF_OK)
		err = open_data(
		        v, c, q->tenant, q->coll, q->id, q->version ? q->version : q->current,
		        (struct cf_span){q->env, q->env_len}, data, &q->plain, &q->plain_len);
	free(q->env);
	q->env = NULL;
	return err;
}

/* load, and the collection's current schema read with it. A record not found may be
 * for want of the collection: that is what the refusal then says. */
static cf_err load_with_schema(struct cf_vault *v, const struct cf_auth_call *c, struct rec_q *q,
                               json_t **data, struct vault_schema *s)
{
	cf_err err = load(v, c, q, data);
	if (err == CF_E_NOT_FOUND) {
		char why[CF_ERR_DETAIL_MAX];
		(void)snprintf(why, sizeof why, "%s", cf_err_detail());
		cf_err e = schema_load(v, q->tenant, q->coll, 0, s, NULL);
		err = e ? e : cf_err_fail(err, "%s", why);
	}
	if (err == CF_OK)
		err = schema_of_text(v, q->tenant, q->coll, cf_span_str(q->schema_text), s);
	free(q->schema_text);
	q->schema_text = NULL;
	if (err && data) {
		json_decref(*data);
		*data = NULL;
	}
	if (err)
		plain_free(q);
	return err;
}

/* ?reveal= names fields the record can have (its schema's, or its own that the schema
 * no longer has), or is "*": a name it cannot have would reveal nothing, and say
 * nothing of it. */
static cf_err reveal_check(const struct vault_schema *s, const json_t *data, const char *fields)
{
	if (strcmp(fields, "*") == 0)
		return CF_OK;
	for (const char *p = fields; p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char name[VAULT_NAME_MAX + 1], shown_name[VAULT_NAME_MAX + 1];
		bool ok = len >= 1 && len <= VAULT_NAME_MAX;
		if (ok) {
			memcpy(name, p, len);
			name[len] = '\0';
			ok = vault_field(s, name) || json_object_get(data, name);
		}
		if (!ok) {
			char part[VAULT_NAME_MAX + 1];
			(void)snprintf(part, sizeof part, "%.*s", (int)len, p);
			cf_err_shown(part, shown_name, sizeof shown_name);
			return cf_err_at(
			        CF_E_INVALID, "reveal", "field",
			        "reveal names '%s', which is not a field of this collection "
			        "(name its fields, comma-separated, or *)",
			        shown_name);
		}
		p = end ? end + 1 : NULL;
	}
	return CF_OK;
}

cf_err cf_vault_record_get(struct cf_vault *v, const struct cf_auth_call *c,
                           const struct cf_tenant_ref *t, const char *coll, const char *id,
                           const struct cf_reveal *rv, json_t **out)
{
	bool reveal = rv && rv->fields && rv->fields[0];
	if (reveal) {
		/* PV7: a clear read is a decision someone makes, with a reason on record. */
		CF_ENSURE(c && c->who && (c->who->perms & CF_PERM(CF_P_PII_REVEAL)),
		          cf_err_fail(CF_E_FORBIDDEN, "revealing a masked field needs pii.reveal"));
		size_t n = rv->reason ? strlen(rv->reason) : 0;
		CF_ENSURE(n > 0,
		          cf_err_at(CF_E_MISSING_FIELD, "reason", "required",
		                    "revealing a masked field needs a reason (3 to 200 bytes)"));
		CF_ENSURE(n >= 3 && n <= 200,
		          cf_err_at(CF_E_OUT_OF_RANGE, "reason", n < 3 ? "min" : "max",
		                    "a reveal's reason is 3 to 200 bytes"));
	}
	struct vault_schema *s = calloc(1, sizeof *s);
	CF_ENSURE(s, CF_E_NOMEM);
	struct rec_q q = {.tenant = t->id, .coll = coll, .id = id, .version = rv ? rv->version : 0};
	json_t *data = NULL;
	cf_err err = load_with_schema(v, c, &q, &data, s);
	if (err == CF_OK && reveal)
		err = reveal_check(s, data, rv->fields);
	if (err == CF_OK && reveal) {
		/* The record is the resource (HMACed, searchable); the fields and the reason
		 * are the detail, in clear for the tenant's admins to read. */
		char why[CF_AUDIT_TEXT_MAX + 1];
		(void)snprintf(why, sizeof why, "fields=%.60s reason=%.180s", rv->fields,
		               rv->reason);
		err = cf_auth_audit_detail(v->auth, c, t->id, "record.reveal", id, why);
	}
	json_t *masked = json_array();
	json_t *view = err == CF_OK && masked
	                       ? shown(s, data, reveal ? rv->fields : NULL, false, masked)
	                       : NULL;
	json_decref(data);
	free(s);
	if (err == CF_OK && view) {
		*out = rec_json(&q, view, masked);
		return *out ? CF_OK : CF_E_NOMEM;
	}
	json_decref(view);
	json_decref(masked);
	return err ? err : CF_E_NOMEM;
}

/* Whether a version is shown exactly as stored: written under the current schema (so
 * every field is one it knows) which has nothing to mask (no personal or sensitive
 * field). */
static bool masks_nothing(const struct vault_schema *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->f[i].cls >= CF_CLASS_PERSONAL)
			return false;
	return true;
}

static bool shown_as_stored(const struct vault_schema *s, const struct rec_q *q)
{
	return q->schema_version == q->coll_version && masks_nothing(s);
}

/* A record's reply with its stored text (q->plain) as its data, put in its frame as is:
 * no parse, no new encoding. The id and the collection's name are checked first:
 * nothing in them needs escaping. */
static cf_err frame_as_stored(const struct rec_q *q, char **out, size_t *len)
{
	CF_TRY(id_check(q->id));
	CF_TRY(vault_name_check("collection", q->coll));
	static const char fmt[] = "{\"id\":\"%s\",\"collection\":\"%s\",\"version\":%lld,"
	                          "\"schema_version\":%lld,\"created_at\":%lld,"
	                          "\"updated_at\":%lld,\"data\":";
	static const char tail[] = ",\"masked\":[]}";
	char head[256];
	int hn = snprintf(head, sizeof head, fmt, q->id, q->coll,
	                  (long long)(q->version ? q->version : q->current),
	                  (long long)q->schema_version, (long long)q->created,
	                  (long long)q->updated);
	CF_ENSURE(hn > 0 && (size_t)hn < sizeof head, CF_E_INTERNAL);
	size_t n = (size_t)hn + q->plain_len + sizeof tail;
	char *text = malloc(n);
	CF_ENSURE(text, CF_E_NOMEM);
	memcpy(text, head, (size_t)hn);
	memcpy(text + hn, q->plain, q->plain_len);
	memcpy(text + (size_t)hn + q->plain_len, tail, sizeof tail);
	*out = text;
	*len = n - 1;
	return CF_OK;
}

cf_err cf_vault_record_get_text(struct cf_vault *v, const struct cf_auth_call *c,
                                const struct cf_tenant_ref *t, const char *coll, const char *id,
                                const struct cf_reveal *rv, char **out, size_t *len,
                                int64_t *version)
{
	json_t *j = NULL;
	if (rv && rv->fields && rv->fields[0]) {
		CF_TRY(cf_vault_record_get(v, c, t, coll, id, rv, &j));
		if (version)
			*version = (int64_t)json_integer_value(json_object_get(j, "version"));
		cf_err err = cf_json_dump(j, out, len);
		json_decref(j);
		return err;
	}
	struct vault_schema *s = calloc(1, sizeof *s);
	CF_ENSURE(s, CF_E_NOMEM);
	struct rec_q q = {.tenant = t->id, .coll = coll, .id = id, .version = rv ? rv->version : 0};
	cf_err err = load_with_schema(v, c, &q, NULL, s);
	if (err == CF_OK && version)
		*version = q.version ? q.version : q.current;
	if (err == CF_OK && shown_as_stored(s, &q)) {
		err = frame_as_stored(&q, out, len);
	} else if (err == CF_OK) {
		json_t *data = NULL, *masked = json_array();
		if (cf_json_parse_object(q.plain, q.plain_len, VAULT_RECORD_MAX + 1, &data) !=
		    CF_OK)
			err = integrity_failed(v, c, t->id, coll, id,
			                       q.version ? q.version : q.current);
		json_t *view = err == CF_OK && masked ? shown(s, data, NULL, false, masked) : NULL;
		json_decref(data);
		if (view)
			j = rec_json(&q, view, masked); /* takes both */
		else
			json_decref(masked);
		if (err == CF_OK && !j)
			err = CF_E_NOMEM;
		if (err == CF_OK)
			err = cf_json_dump(j, out, len);
		json_decref(j);
	}
	plain_free(&q);
	free(s);
	return err;
}

/* Creates (a batch of) records in one transaction, with the idempotency key's row. */
struct batch_tx {
	struct rec_q *items;
	size_t n;
	const char *tenant, *principal, *key, *ids_text;
	uint8_t hash[CF_SHA256_LEN];
	bool replay, found, misuse;
	struct cf_audit_prepared replay_audit; /* AL1: a replay is a request served too */
	char *stored; /* malloc'd: the ids a first request with this key made */
	uint8_t stored_hash[CF_SHA256_LEN];
};

static cf_err idem_row(const struct cf_row *row, void *ctx)
{
	struct batch_tx *b = ctx;
	struct cf_span h = cf_row_blob(row, 0), r = cf_row_blob(row, 1);
	b->found = true;
	if (h.len == CF_SHA256_LEN)
		memcpy(b->stored_hash, h.ptr, CF_SHA256_LEN);
	free(b->stored);
	b->stored = strndup((const char *)r.ptr, r.len);
	return b->stored ? CF_OK : CF_E_NOMEM;
}

static cf_err batch_fn(struct cf_tx *tx, void *ctx)
{
	struct batch_tx *b = ctx;
	if (b->key) {
		struct cf_val k[] = {CF_V_TEXT(b->tenant), CF_V_TEXT(b->principal),
		                     CF_V_TEXT(b->key)};
		CF_TRY(cf_tx_query(
		        tx,
		        "SELECT request_hash, result FROM idempotency WHERE tenant_id = $1"
		        " AND principal_id = $2 AND idem_key = $3",
		        k, 3, idem_row, b));
		if (b->found) {
			/* The same request again: its first answer, and nothing written twice. */
			/* (named on the caller's thread: this one is the store's writer) */
			b->misuse = memcmp(b->stored_hash, b->hash, CF_SHA256_LEN) != 0;
			CF_ENSURE(!b->misuse, CF_E_INVALID_VALUE);
			b->replay = true;
			return cf_audit_append(tx, &b->replay_audit);
		}
	}
	for (size_t i = 0; i < b->n; i++)
		CF_TRY(rec_write(tx, &b->items[i]));
	if (!b->key)
		return CF_OK;
	struct cf_val v[] = {CF_V_TEXT(b->tenant),   CF_V_TEXT(b->principal),
	                     CF_V_TEXT(b->key),      CF_V_BLOB(b->hash, CF_SHA256_LEN),
	                     CF_V_TEXT(b->ids_text), CF_V_INT(now_s())};
	cf_err e = cf_tx_exec(tx,
	                      "INSERT INTO idempotency (tenant_id, principal_id, idem_key,"
	                      " request_hash, result, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
	                      v, 6, NULL);
	CF_ENSURE(e != CF_E_CONFLICT,
	          cf_err_fail(CF_E_CONFLICT, "another request with this Idempotency-Key is being "
	                                     "written: retry it"));
	return e;
}

struct cf_vault_create {
	struct cf_vault *v;
	const struct cf_auth_call *c;
	const struct cf_tenant_ref *t;
	const char *coll;
	struct batch_tx b;
	struct vault_schema s;
	char (*idv)[VAULT_ID_MAX + 1];
	json_t *list;
	char *text, *key;
	int64_t sv, now;
};

static void create_free(struct cf_vault_create *w)
{
	for (size_t i = 0; w->b.items && i < w->b.n; i++) {
		free(w->b.items[i].s.env);
		plain_free(&w->b.items[i]);
	}
	free(w->b.items);
	free(w->idv);
	free(w->text);
	free(w->key);
	free(w->b.stored);
	json_decref(w->list);
	free(w);
}

void cf_vault_create_free(struct cf_vault_create **pp)
{
	if (!pp || !*pp)
		return;
	create_free(*pp);
	*pp = NULL;
}

cf_err cf_vault_create_begin(struct cf_vault *v, const struct cf_auth_call *c,
                             const struct cf_tenant_ref *t, const char *coll, const json_t *items,
                             const struct cf_span *text, bool batch,
                             const struct cf_idempotency *idem, struct cf_vault_create **out)
{
	size_t n = json_array_size(items);
	CF_ENSURE(json_is_array(items) && n >= 1 && n <= CF_VAULT_BATCH_MAX,
	          cf_err_at(CF_E_OUT_OF_RANGE, "records", n ? "max" : "min",
	                    "records is an array of 1 to %d records", CF_VAULT_BATCH_MAX));
	if (idem && idem->key) {
		size_t kl = strlen(idem->key);
		bool ok = kl >= 8 && kl <= 128;
		for (size_t i = 0; ok && i < kl; i++)
			ok = idem->key[i] > 0x20 && idem->key[i] < 0x7f;
		CF_ENSURE(ok, cf_err_at(CF_E_INVALID_VALUE, "Idempotency-Key", "format",
		                        "an Idempotency-Key is 8 to 128 printable characters"));
	}
	struct cf_vault_create *w = calloc(1, sizeof *w);
	CF_ENSURE(w, CF_E_NOMEM);
	*w = (struct cf_vault_create){.v = v, .c = c, .t = t, .coll = coll, .now = now_s()};
	w->b = (struct batch_tx){.n = n, .tenant = t->id, .principal = actor_of(c)};
	w->b.items = calloc(n, sizeof *w->b.items);
	w->idv = calloc(n, sizeof *w->idv);
	w->list = json_array();
	cf_err err = w->b.items && w->idv && w->list ? CF_OK : CF_E_NOMEM;
	if (err == CF_OK)
		err = schema_load(v, t->id, coll, 0, &w->s, &w->sv);
	for (size_t i = 0; err == CF_OK && i < n; i++) {
		const json_t *data = json_array_get(items, i);
		err = vault_record_check(&w->s, data);
		if (err && batch) {
			/* the path names the item: records[3].data.email */
			char path[160];
			(void)snprintf(path, sizeof path, "records[%zu].%s", i, cf_err_path());
			err = cf_err_at(err, path, cf_err_rule(), "records[%zu]: %s", i,
			                cf_err_detail());
		}
		char *id = w->idv[i];
		if (err == CF_OK)
			err = new_id(id);
		w->b.items[i] = (struct rec_q){.tenant = t->id,
		                               .coll = coll,
		                               .id = id,
		                               .data = data,
		                               .schema = &w->s,
		                               .new_schema_version = w->sv,
		                               .actor = w->b.principal,
		                               .now = w->now};
		/* a lone record whose schema masks nothing is replied as sealed: its text
		 * is kept for the reply (cf_vault_create_end) */
		struct rec_q *q = &w->b.items[i];
		bool keep = n == 1 && masks_nothing(&w->s);
		if (err == CF_OK)
			err = seal(v, t->id, coll, id, 1, data, n == 1 ? text : NULL, &q->s,
			           keep ? &q->plain : NULL, &q->plain_len);
		if (err == CF_OK)
			err = cf_auth_audit_prepare(v->auth, c, t->id, "record.create", id,
			                            CF_OUTCOME_OK, CF_OK, &w->b.items[i].audit);
		if (err == CF_OK && json_array_append_new(w->list, json_string(id)) != 0)
			err = CF_E_NOMEM;
	}
	if (err == CF_OK && idem && idem->key)
		err = cf_auth_audit_prepare(v->auth, c, t->id, "record.replay", idem->key,
		                            CF_OUTCOME_OK, CF_OK, &w->b.replay_audit);
	if (err == CF_OK && idem && idem->key) {
		w->key = strdup(idem->key);
		w->b.key = w->key;
		memcpy(w->b.hash, idem->request_hash, CF_SHA256_LEN);
		err = w->key ? cf_json_dump(w->list, &w->text, NULL) : CF_E_NOMEM;
		w->b.ids_text = w->text;
	}
	if (err) {
		create_free(w);
		return err;
	}
	*out = w;
	return CF_OK;
}

cf_err cf_vault_create_write(struct cf_tx *tx, void *create)
{
	struct cf_vault_create *w = create;
	return batch_fn(tx, &w->b);
}

cf_err cf_vault_create_end(struct cf_vault_create **pp, cf_err result, json_t **ids, char **record,
                           size_t *record_len)
{
	struct cf_vault_create *w = *pp;
	*pp = NULL;
	CF_ENSURE(w, cf_err_fail(CF_E_INTERNAL, "no create to end"));
	cf_err err = result;
	if (w->b.misuse)
		err = cf_err_at(CF_E_INVALID_VALUE, "Idempotency-Key", "idempotency",
		                "this Idempotency-Key was used with another request");
	json_t *list = w->list;
	w->list = NULL;
	if (err == CF_OK && w->b.replay) {
		json_decref(list);
		list = w->b.stored ? json_loads(w->b.stored, 0, NULL) : NULL;
		if (!json_is_array(list))
			err = cf_err_fail(CF_E_INTEGRITY, "a stored idempotent answer is damaged");
	}
	if (record)
		*record = NULL;
	if (err == CF_OK && record && !w->b.replay) {
		/* The record as a read would show it now, from what was written. */
		struct rec_q *q = &w->b.items[0];
		struct rec_q shown_q = {.id = q->id,
		                        .coll = w->coll,
		                        .current = 1,
		                        .schema_version = w->sv,
		                        .created = w->now,
		                        .updated = w->now,
		                        .plain = q->plain,
		                        .plain_len = q->plain_len};
		if (q->plain) {
			err = frame_as_stored(&shown_q, record, record_len);
		} else {
			json_t *masked = json_array(), *j = NULL;
			json_t *view = masked ? shown(&w->s, (json_t *)(uintptr_t)q->data, NULL,
			                              false, masked)
			                      : NULL;
			if (view)
				j = rec_json(&shown_q, view, masked); /* takes both, even failing */
			else
				json_decref(masked);
			err = j ? cf_json_dump(j, record, record_len) : CF_E_NOMEM;
			json_decref(j);
		}
	}
	create_free(w);
	if (err) {
		json_decref(list);
		if (record && *record) {
			free(*record);
			*record = NULL;
		}
		return err;
	}
	*ids = list;
	return CF_OK;
}

cf_err cf_vault_created(struct cf_vault *v, const struct cf_auth_call *c,
                        const struct cf_tenant_ref *t, const char *coll, json_t *ids, char **out,
                        size_t *len)
{
	/* a replay: the record as it is now */
	char id[VAULT_ID_MAX + 1];
	(void)snprintf(id, sizeof id, "%s", json_string_value(json_array_get(ids, 0)));
	json_decref(ids);
	if (*out)
		return CF_OK;
	struct cf_reveal none = {0};
	cf_err err = cf_vault_record_get_text(v, c, t, coll, id, &none, out, len, NULL);
	CF_ENSURE(err != CF_E_NOT_FOUND,
	          cf_err_fail(CF_E_NOT_FOUND,
	                      "the record this Idempotency-Key made (%s) has been deleted since",
	                      id));
	return err;
}

cf_err cf_vault_records_get(struct cf_vault *v, const struct cf_auth_call *c,
                            const struct cf_tenant_ref *t, const char *coll, const json_t *ids,
                            json_t **out)
{
	size_t n = json_array_size(ids);
	CF_ENSURE(json_is_array(ids),
	          cf_err_at(CF_E_WRONG_TYPE, "ids", "array", "ids is an array of record ids"));
	CF_ENSURE(n >= 1 && n <= CF_VAULT_BATCH_MAX,
	          cf_err_at(CF_E_OUT_OF_RANGE, "ids", n ? "max" : "min",
	                    "ids is an array of 1 to %d record ids", CF_VAULT_BATCH_MAX));
	json_t *found = json_array(), *missing = json_array();
	cf_err err = found && missing ? CF_OK : CF_E_NOMEM;
	struct cf_reveal none = {0};
	for (size_t i = 0; err == CF_OK && i < n; i++) {
		const char *id = json_string_value(json_array_get(ids, i));
		if (!id) {
			char path[32];
			(void)snprintf(path, sizeof path, "ids[%zu]", i);
			err = cf_err_at(CF_E_WRONG_TYPE, path, "string", "%s must be a record id",
			                path);
			break;
		}
		json_t *r = NULL;
		cf_err e = cf_vault_record_get(v, c, t, coll, id, &none, &r);
		if (e == CF_OK)
			err = json_array_append_new(found, r) == 0 ? CF_OK : CF_E_NOMEM;
		else if (e == CF_E_NOT_FOUND && strcmp(cf_err_detail(), "no such record") == 0)
			err = json_array_append_new(missing, json_string(id)) == 0 ? CF_OK
			                                                           : CF_E_NOMEM;
		else
			err = e; /* a missing collection, an integrity failure: the whole call */
		if (err == CF_OK)
			cf_err_detail_clear();
	}
	if (err == CF_OK) {
		*out = json_pack("{s:o, s:o}", "records", found, "missing", missing);
		return *out ? CF_OK : CF_E_NOMEM;
	}
	json_decref(found);
	json_decref(missing);
	return err;
}

/* A record's next version or its deletion, prepared off the writer (read, merged,
 * checked, sealed, its audit entry made), then written, then answered. */
struct cf_vault_change {
	struct rec_q w;
	struct vault_schema s;
	json_t *next; /* the new data (NULL: a deletion) */
	int64_t created;
	char id[VAULT_ID_MAX + 1];
	char coll[VAULT_NAME_MAX + 1]; /* copies: the write outlives the caller's buffers */
};

void cf_vault_change_free(struct cf_vault_change **pp)
{
	if (!pp || !*pp)
		return;
	free((*pp)->w.s.env);
	json_decref((*pp)->next);
	free(*pp);
	*pp = NULL;
}

static cf_err change_new(const struct cf_tenant_ref *t, const char *coll, const char *id,
                         struct cf_vault_change **out)
{
	CF_TRY(vault_name_check("collection", coll));
	CF_TRY(id_check(id));
	struct cf_vault_change *ch = calloc(1, sizeof *ch);
	CF_ENSURE(ch, CF_E_NOMEM);
	(void)snprintf(ch->id, sizeof ch->id, "%s", id);
	(void)snprintf(ch->coll, sizeof ch->coll, "%s", coll);
	ch->w = (struct rec_q){.tenant = t->id, .coll = ch->coll, .id = ch->id, .now = now_s()};
	*out = ch;
	return CF_OK;
}

cf_err cf_vault_update_begin(struct cf_vault *v, const struct cf_auth_call *c,
                             const struct cf_tenant_ref *t, const char *coll, const char *id,
                             const json_t *data, bool patch, int64_t if_match,
                             struct cf_vault_change **out)
{
	struct cf_vault_change *ch = NULL;
	CF_TRY(change_new(t, coll, id, &ch));
	json_t *old = NULL;
	struct rec_q q = {.tenant = t->id, .coll = ch->coll, .id = ch->id};
	cf_err err = load_with_schema(v, c, &q, &old, &ch->s);
	if (err == CF_OK && if_match >= 0 && if_match != q.current)
		err = cf_err_fail(CF_E_CONFLICT,
		                  "the record is at version %lld, not %lld: read it "
		                  "again",
		                  (long long)q.current, (long long)if_match);
	if (err == CF_OK && patch && !json_is_object(data))
		err = cf_err_at(CF_E_WRONG_TYPE, "data", "object", "data must be an object");
	if (err == CF_OK && patch) {
		/* RFC 7396 at the top level: null removes a field. */
		ch->next = json_deep_copy(old);
		const char *k;
		json_t *val;
		json_t *dobj = (json_t *)(uintptr_t)data;
		json_object_foreach (dobj, k, val) {
			if (json_is_null(val))
				json_object_del(ch->next, k);
			else
				json_object_set(ch->next, k, val);
		}
	} else if (err == CF_OK) {
		ch->next = json_deep_copy(data);
	}
	json_decref(old);
	if (err == CF_OK && !ch->next)
		err = CF_E_NOMEM;
	if (err == CF_OK)
		err = vault_record_check(&ch->s, ch->next);
	ch->created = q.created;
	ch->w.data = ch->next;
	ch->w.schema = &ch->s;
	ch->w.expected = q.current;
	ch->w.new_schema_version = q.coll_version;
	ch->w.actor = actor_of(c);
	if (err == CF_OK)
		err = seal(v, t->id, ch->coll, ch->id, q.current + 1, ch->next, NULL, &ch->w.s,
		           NULL, NULL);
	if (err == CF_OK)
		err = cf_auth_audit_prepare(v->auth, c, t->id,
		                            patch ? "record.patch" : "record.update", ch->id,
		                            CF_OUTCOME_OK, CF_OK, &ch->w.audit);
	if (err)
		cf_vault_change_free(&ch);
	*out = ch;
	return err;
}

cf_err cf_vault_delete_begin(struct cf_vault *v, const struct cf_auth_call *c,
                             const struct cf_tenant_ref *t, const char *coll, const char *id,
                             int64_t if_match, struct cf_vault_change **out)
{
	struct cf_vault_change *ch = NULL;
	CF_TRY(change_new(t, coll, id, &ch));
	ch->w.remove = true;
	ch->w.expected = if_match > 0 ? if_match : 0;
	cf_err err = cf_store_read(v->st, t->id, rec_read, &ch->w);
	free(ch->w.env);
	free(ch->w.schema_text);
	ch->w.env = NULL;
	ch->w.schema_text = NULL;
	if (err == CF_OK && (!ch->w.found || ch->w.deleted))
		err = cf_err_fail(CF_E_NOT_FOUND, "no such record");
	if (err == CF_OK)
		err = cf_auth_audit_prepare(v->auth, c, t->id, "record.delete", ch->id,
		                            CF_OUTCOME_OK, CF_OK, &ch->w.audit);
	if (err)
		cf_vault_change_free(&ch);
	*out = ch;
	return err;
}

cf_err cf_vault_change_write(struct cf_tx *tx, void *change)
{
	return rec_write(tx, &((struct cf_vault_change *)change)->w);
}

cf_err cf_vault_change_end(struct cf_vault_change **pp, cf_err result, json_t **out)
{
	struct cf_vault_change *ch = *pp;
	CF_ENSURE(ch, cf_err_fail(CF_E_INTERNAL, "no change to end"));
	cf_err err = result;
	*out = NULL;
	if (err == CF_OK && !ch->next) {
		*out = json_pack("{s:b}", "ok", 1);
	} else if (err == CF_OK) {
		/* the record as a read shows it now, from what was written */
		struct rec_q shown_q = {.id = ch->id,
		                        .coll = ch->w.coll,
		                        .current = ch->w.expected + 1,
		                        .schema_version = ch->w.new_schema_version,
		                        .created = ch->created,
		                        .updated = ch->w.now};
		json_t *masked = json_array();
		json_t *view = masked ? shown(&ch->s, ch->next, NULL, false, masked) : NULL;
		if (view)
			*out = rec_json(&shown_q, view, masked); /* takes both */
		else
			json_decref(masked);
	}
	if (err == CF_OK && !*out)
		err = CF_E_NOMEM;
	cf_vault_change_free(pp);
	return err;
}

/* --- lists and history ---------------------------------------------------------------------- */
struct list_q {
	const char *tenant, *coll, *cursor;
	const char *fields[4], *values[4];
	char vtext[4][VAULT_INDEX_MAX + 1]; /* the values as the index keeps them */
	size_t nf;
	unsigned limit;
	char ids[101][VAULT_ID_MAX + 1];
	int64_t versions[101];
	size_t n;
};

static cf_err list_row(const struct cf_row *row, void *ctx)
{
	struct list_q *q = ctx;
	if (q->n < sizeof q->ids / sizeof q->ids[0]) {
		cf_span_to_str(cf_row_blob(row, 0), q->ids[q->n], sizeof q->ids[0]);
		q->versions[q->n++] = cf_row_int(row, 1);
	}
	return CF_OK;
}

static cf_err list_fn(struct cf_tx *tx, void *ctx)
{
	struct list_q *q = ctx;
	/* The statement is one of five fixed texts (0 to 4 filters; the store keeps prepared
	 * statements by their text's address); values are bound. */
#define LIST_BASE                                                                                  \
	"SELECT r.record_id, r.version FROM records r WHERE r.tenant_id = $1"                      \
	" AND r.collection = $2 AND r.deleted_at IS NULL AND r.record_id > $3"
#define LIST_FILTER(f, v)                                                                          \
	" AND EXISTS (SELECT 1 FROM record_index i WHERE i.tenant_id = $1 AND"                     \
	" i.collection = $2 AND i.record_id = r.record_id AND i.field = " f " AND i.value = " v    \
	")"
#define LIST_END " ORDER BY r.record_id LIMIT $4"
	static const char *const sql[] = {
	        LIST_BASE LIST_END,
	        LIST_BASE LIST_FILTER("$5", "$6") LIST_END,
	        LIST_BASE LIST_FILTER("$5", "$6") LIST_FILTER("$7", "$8") LIST_END,
	        LIST_BASE LIST_FILTER("$5", "$6") LIST_FILTER("$7", "$8") LIST_FILTER("$9", "$10")
	                LIST_END,
	        LIST_BASE LIST_FILTER("$5", "$6") LIST_FILTER("$7", "$8") LIST_FILTER("$9", "$10")
	                LIST_FILTER("$11", "$12") LIST_END,
	};
#undef LIST_BASE
#undef LIST_FILTER
#undef LIST_END
	struct cf_val v[12] = {CF_V_TEXT(q->tenant), CF_V_TEXT(q->coll),
	                       CF_V_TEXT(q->cursor ? q->cursor : ""), CF_V_INT(q->limit + 1)};
	for (size_t i = 0; i < q->nf; i++) {
		struct cf_val fv = CF_V_TEXT(q->fields[i]), vv = CF_V_TEXT(q->values[i]);
		v[4 + 2 * i] = fv;
		v[5 + 2 * i] = vv;
	}
	return cf_tx_query(tx, sql[q->nf], v, 4 + 2 * (unsigned)q->nf, list_row, q);
}

cf_err cf_vault_record_list(struct cf_vault *v, const struct cf_tenant_ref *t, const char *coll,
                            const json_t *filters, const char *cursor, unsigned limit, json_t **out)
{
	struct vault_schema *s = calloc(1, sizeof *s);
	struct list_q *q = calloc(1, sizeof *q);
	json_t *arr = json_array();
	cf_err err = s && q && arr ? CF_OK : CF_E_NOMEM;
	if (err == CF_OK)
		err = schema_load(v, t->id, coll, 0, s, NULL);
	if (err == CF_OK) {
		*q = (struct list_q){.tenant = t->id,
		                     .coll = coll,
		                     .cursor = cursor,
		                     .limit = limit ? (limit > 100 ? 100 : limit) : 50};
		const char *k;
		const json_t *val;
		json_t *fobj = (json_t *)(uintptr_t)filters;
		json_object_foreach (fobj, k, val) {
			const struct vault_field *f = vault_field(s, k);
			char path[96];
			(void)snprintf(path, sizeof path, "filter.%.64s", k);
			if (!f || !f->filter) {
				err = cf_err_at(
				        CF_E_INVALID_VALUE, path, "filter",
				        "%s: only the fields marked filter can be filtered on",
				        path);
				break;
			}
			if (q->nf == 4) {
				err = cf_err_fail(CF_E_INVALID, "at most 4 filters");
				break;
			}
			err = vault_filter_value(f, json_string_value(val), path, q->vtext[q->nf]);
			if (err)
				break;
			q->fields[q->nf] = k;
			q->values[q->nf] = q->vtext[q->nf];
			q->nf++;
		}
	}
	if (err == CF_OK && cursor && cursor[0])
		err = id_check(cursor) == CF_OK ? CF_OK
		                                : cf_err_fail(CF_E_INVALID, "the cursor is not one "
		                                                            "this list gave");
	if (err == CF_OK)
		err = cf_store_read(v->st, t->id, list_fn, q);
	size_t shown_n = q && q->n > q->limit ? q->limit : q ? q->n : 0;
	for (size_t i = 0; err == CF_OK && i < shown_n; i++) {
		struct rec_q r = {.tenant = t->id, .coll = coll, .id = q->ids[i]};
		json_t *data = NULL, *masked = json_array();
		err = masked ? load(v, NULL, &r, &data) : CF_E_NOMEM;
		json_t *view = err == CF_OK ? shown(s, data, NULL, true, masked) : NULL;
		json_decref(data);
		json_t *o = view ? rec_json(&r, view, masked) : NULL;
		if (!o && err == CF_OK)
			err = CF_E_NOMEM;
		if (!o && !view)
			json_decref(masked);
		if (o && json_array_append_new(arr, o) != 0)
			err = CF_E_NOMEM;
	}
	if (err == CF_OK) {
		bool more = q->n > q->limit;
		*out = json_pack("{s:o, s:s?}", "records", arr, "next",
		                 more ? q->ids[q->limit - 1] : NULL);
		arr = NULL;
		if (!*out)
			err = CF_E_NOMEM;
	}
	json_decref(arr);
	free(q);
	free(s);
	return err;
}

/* The row's first column, appended to a JSON array of strings. */
static cf_err name_row(const struct cf_row *row, void *ctx)
{
	struct cf_span n = cf_row_blob(row, 0);
	return json_array_append_new(ctx, json_stringn((const char *)n.ptr, n.len)) == 0
	               ? CF_OK
	               : CF_E_NOMEM;
}

static cf_err names_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_val v[] = {CF_V_TEXT(cf_tx_tenant(tx))};
	return cf_tx_query(tx, "SELECT name FROM collections WHERE tenant_id = $1 ORDER BY name", v,
	                   1, name_row, ctx);
}

cf_err cf_vault_export_page(struct cf_vault *v, const struct cf_auth_call *c,
                            const struct cf_tenant_ref *t, const char *cursor, unsigned limit,
                            json_t **out)
{
	char from_coll[VAULT_NAME_MAX + 1] = "", from_id[VAULT_ID_MAX + 1] = "";
	if (cursor && cursor[0]) {
		const char *slash = strchr(cursor, '/');
		bool ok = slash && (size_t)(slash - cursor) <= VAULT_NAME_MAX;
		if (ok) {
			memcpy(from_coll, cursor, (size_t)(slash - cursor));
			from_coll[slash - cursor] = '\0';
			(void)snprintf(from_id, sizeof from_id, "%s", slash + 1);
			ok = vault_name_check("cursor", from_coll) == CF_OK &&
			     id_check(from_id) == CF_OK;
		}
		CF_ENSURE(ok, cf_err_fail(CF_E_INVALID, "the cursor is not one this export gave"));
	}
	/* list_q holds 100 ids: a page reads collections 100 records at a time */
	limit = limit ? (limit > 1000 ? 1000 : limit) : 1000;
	json_t *names = json_array(), *arr = json_array(), *bad = json_array();
	struct list_q *q = calloc(1, sizeof *q);
	cf_err err = names && arr && bad && q ? cf_store_read(v->st, t->id, names_fn, names)
	                                      : CF_E_NOMEM;
	char next[VAULT_NAME_MAX + VAULT_ID_MAX + 2] = "";
	unsigned n = 0;
	for (size_t i = 0; err == CF_OK && i < json_array_size(names) && n < limit; i++) {
		const char *coll = json_string_value(json_array_get(names, i));
		int cmp = strcmp(coll, from_coll);
		if (from_coll[0] && cmp < 0)
			continue;
		char after[VAULT_ID_MAX + 1] = "";
		if (from_coll[0] && cmp == 0)
			memcpy(after, from_id, sizeof after);
		for (bool more = true; err == CF_OK && more && n < limit;) {
			unsigned want = limit - n;
			*q = (struct list_q){.tenant = t->id,
			                     .coll = coll,
			                     .cursor = after,
			                     .limit = want > 100 ? 100 : want};
			err = cf_store_read(v->st, t->id, list_fn, q);
			size_t take = q->n > q->limit ? q->limit : q->n;
			more = q->n > q->limit;
			for (size_t k = 0; err == CF_OK && k < take; k++) {
				struct rec_q r = {.tenant = t->id, .coll = coll, .id = q->ids[k]};
				json_t *data = NULL;
				err = load(v, c, &r, &data);
				free(r.schema_text);
				if (err == CF_E_INTEGRITY) {
					/* Reported, alerted and audited by load: named here, never
					 * exported garbled, and the rest of the export goes on. */
					cf_err_detail_clear();
					err = json_array_append_new(
					              bad, json_pack("{s:s, s:s, s:s}",
					                             "collection", coll, "id", r.id,
					                             "error", "integrity")) == 0
					              ? CF_OK
					              : CF_E_NOMEM;
					n++;
					(void)snprintf(next, sizeof next, "%s/%s", coll, q->ids[k]);
					memcpy(after, q->ids[k], sizeof after);
					continue;
				}
				json_t *o = err == CF_OK
				                    ? json_pack("{s:s, s:s, s:I, s:I, s:I, s:o}",
				                                "collection", coll, "id", r.id,
				                                "version", (json_int_t)r.current,
				                                "created_at", (json_int_t)r.created,
				                                "updated_at", (json_int_t)r.updated,
				                                "data", data)
				                    : NULL;
				if (err == CF_OK && (!o || json_array_append_new(arr, o) != 0))
					err = CF_E_NOMEM;
				n++;
				(void)snprintf(next, sizeof next, "%s/%s", coll, q->ids[k]);
				memcpy(after, q->ids[k], sizeof after);
			}
		}
	}
	bool done = err == CF_OK && n < limit;
	json_decref(names);
	free(q);
	if (err == CF_OK) {
		*out = json_pack("{s:o, s:o, s:s?}", "records", arr, "failed", bad, "next",
		                 done ? NULL : next);
		arr = bad = NULL;
		err = *out ? CF_OK : CF_E_NOMEM;
	}
	json_decref(arr);
	json_decref(bad);
	return err;
}

struct purge_q {
	int64_t before, n;
	char count[32];
	struct cf_audit_prepared audit;
	struct cf_keyring *kr;
	const char *tenant;
};

static cf_err tenants_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT tenant_id FROM tenants WHERE state = 'active'", NULL, 0,
	                   name_row, ctx);
}

static cf_err purge_fn(struct cf_tx *tx, void *ctx)
{
	struct purge_q *q = ctx;
	struct cf_val v[] = {CF_V_TEXT(q->tenant), CF_V_INT(q->before)};
	static const char *const deps[] = {
	        "DELETE FROM record_versions WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM"
	        " records r WHERE r.tenant_id = $1 AND r.collection = record_versions.collection"
	        " AND r.record_id = record_versions.record_id AND r.deleted_at < $2)",
	        "DELETE FROM record_index WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM"
	        " records r WHERE r.tenant_id = $1 AND r.collection = record_index.collection"
	        " AND r.record_id = record_index.record_id AND r.deleted_at < $2)",
	};
	for (size_t i = 0; i < sizeof deps / sizeof deps[0]; i++)
		CF_TRY(cf_tx_exec(tx, deps[i], v, 2, NULL));
	/* Idempotency keys hold a day (DESIGN §8). */
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_INT(now_s() - 86400)};
	CF_TRY(cf_tx_exec(tx, "DELETE FROM idempotency WHERE tenant_id = $1 AND created_at < $2", k,
	                  2, NULL));
	CF_TRY(cf_tx_exec(tx, "DELETE FROM records WHERE tenant_id = $1 AND deleted_at < $2", v, 2,
	                  &q->n));
	if (q->n == 0)
		return CF_OK;
	/* The count is what the entry names: which records went is no one's business now. */
	(void)snprintf(q->count, sizeof q->count, "records=%lld", (long long)q->n);
	struct cf_audit_event ev = {.tenant = q->tenant,
	                            .actor_kind = CF_ACTOR_SYSTEM,
	                            .actor = "coffred",
	                            .action = "records.purge",
	                            .resource = "deleted records",
	                            .outcome = CF_OUTCOME_OK,
	                            .privilege = "system",
	                            .detail = q->count};
	CF_TRY(cf_audit_prepare(q->kr, &ev, &q->audit));
	return cf_audit_append(tx, &q->audit);
}

cf_err cf_vault_purge(struct cf_vault *v, int64_t before, unsigned *purged)
{
	*purged = 0;
	json_t *tenants = json_array();
	CF_ENSURE(tenants, CF_E_NOMEM);
	cf_err err = cf_store_read(v->st, NULL, tenants_fn, tenants);
	for (size_t i = 0; err == CF_OK && i < json_array_size(tenants); i++) {
		struct purge_q q = {.before = before,
		                    .kr = v->kr,
		                    .tenant = json_string_value(json_array_get(tenants, i))};
		err = cf_store_write_wait(v->st, q.tenant, purge_fn, &q);
		*purged += (unsigned)q.n;
	}
	json_decref(tenants);
	return err;
}

static cf_err history_row(const struct cf_row *row, void *ctx)
{
	char by[CF_AUTH_ID_MAX + 1];
	cf_span_to_str(cf_row_blob(row, 3), by, sizeof by);
	json_t *o = json_pack("{s:I, s:I, s:I, s:s}", "version", (json_int_t)cf_row_int(row, 0),
	                      "schema_version", (json_int_t)cf_row_int(row, 1), "created_at",
	                      (json_int_t)cf_row_int(row, 2), "by", by);
	CF_ENSURE(o, CF_E_NOMEM);
	return json_array_append_new(ctx, o) == 0 ? CF_OK : CF_E_NOMEM;
}

struct history_q {
	struct rec_q *r;
	json_t *arr;
	int64_t before; /* versions below this one */
	unsigned limit; /* at most this many, and one more to know if more are left */
};

static cf_err history_fn(struct cf_tx *tx, void *ctx)
{
	struct history_q *h = ctx;
	CF_TRY(rec_read(tx, h->r));
	free(h->r->env);
	free(h->r->schema_text);
	h->r->env = NULL;
	h->r->schema_text = NULL;
	if (!h->r->found || h->r->deleted)
		return CF_OK;
	struct cf_val v[] = {CF_V_TEXT(h->r->tenant), CF_V_TEXT(h->r->coll), CF_V_TEXT(h->r->id),
	                     CF_V_INT(h->before), CF_V_INT((int64_t)h->limit + 1)};
	return cf_tx_query(tx,
	                   "SELECT version, schema_version, created_at, created_by"
	                   " FROM record_versions WHERE tenant_id = $1 AND collection = $2"
	                   " AND record_id = $3 AND version < $4 ORDER BY version DESC LIMIT $5",
	                   v, 5, history_row, h->arr);
}

cf_err cf_vault_record_history(struct cf_vault *v, const struct cf_tenant_ref *t, const char *coll,
                               const char *id, int64_t before, unsigned limit, json_t **out)
{
	CF_TRY(vault_name_check("collection", coll));
	CF_TRY(id_check(id));
	struct rec_q r = {.tenant = t->id, .coll = coll, .id = id};
	struct history_q h = {.r = &r,
	                      .arr = json_array(),
	                      .before = before > 0 ? before : INT64_MAX,
	                      .limit = limit ? limit : 100};
	CF_ENSURE(h.arr, CF_E_NOMEM);
	cf_err err = cf_store_read(v->st, t->id, history_fn, &h);
	if (err == CF_OK && (!r.found || r.deleted))
		err = cf_err_fail(CF_E_NOT_FOUND, "no such record");
	if (err) {
		json_decref(h.arr);
		return err;
	}
	/* one more than asked: the page's last version is the cursor of the next */
	json_int_t next = 0;
	if (json_array_size(h.arr) > h.limit) {
		(void)json_array_remove(h.arr, h.limit);
		next = json_integer_value(
		        json_object_get(json_array_get(h.arr, h.limit - 1), "version"));
	}
	*out = next ? json_pack("{s:s, s:o, s:I}", "id", id, "versions", h.arr, "next", next)
	            : json_pack("{s:s, s:o, s:n}", "id", id, "versions", h.arr, "next");
	return *out ? CF_OK : CF_E_NOMEM;
}

/* --- rotation (ER4): record versions move to the tenant's active KEK --------------------- */
struct rewrap_q {
	struct cf_keyring *kr;
	const char *tenant;
	uint32_t from;
	unsigned limit;
	uint64_t moved, remaining;
};

struct rw_item {
	char coll[VAULT_NAME_MAX + 1], id[VAULT_ID_MAX + 1];
	int64_t version;
	uint8_t *env;
	size_t len;
};

struct rw_batch {
	struct rw_item items[64];
	size_t n;
	int64_t remaining;
};

static cf_err rw_row(const struct cf_row *row, void *ctx)
{
	struct rw_batch *b = ctx;
	if (b->n >= sizeof b->items / sizeof b->items[0])
		return CF_OK;
	struct rw_item *it = &b->items[b->n];
	cf_span_to_str(cf_row_blob(row, 0), it->coll, sizeof it->coll);
	cf_span_to_str(cf_row_blob(row, 1), it->id, sizeof it->id);
	it->version = cf_row_int(row, 2);
	struct cf_span e = cf_row_blob(row, 3);
	it->env = malloc(e.len ? e.len : 1);
	CF_ENSURE(it->env, CF_E_NOMEM);
	memcpy(it->env, e.ptr, e.len);
	it->len = e.len;
	b->n++;
	return CF_OK;
}

static cf_err rw_count_row(const struct cf_row *row, void *ctx)
{
	((struct rw_batch *)ctx)->remaining = cf_row_int(row, 0);
	return CF_OK;
}

struct rw_tx {
	struct rewrap_q *q;
	struct rw_batch *b;
};

static cf_err rw_fn(struct cf_tx *tx, void *ctx)
{
	struct rw_tx *r = ctx;
	struct rewrap_q *q = r->q;
	struct rw_batch *b = r->b;
	struct cf_val k[] = {CF_V_TEXT(q->tenant), CF_V_INT(q->from),
	                     CF_V_INT(q->limit < 64 ? q->limit : 64)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT collection, record_id, version, sealed FROM record_versions"
	                   " WHERE tenant_id = $1 AND kek_version = $2 LIMIT $3",
	                   k, 3, rw_row, b));
	for (size_t i = 0; i < b->n; i++) {
		struct rw_item *it = &b->items[i];
		struct cf_env_ctx ctx2 = env_ctx(q->tenant, it->coll, it->id, it->version);
		bool moved = false;
		CF_TRY(cf_keys_rewrap_value(q->kr, &ctx2, it->env, it->len, &moved));
		struct cf_env_view view;
		CF_TRY(cf_env_parse((struct cf_span){it->env, it->len}, &view));
		struct cf_val u[] = {CF_V_BLOB(it->env, it->len), CF_V_INT(view.kid.kek_version),
		                     CF_V_TEXT(q->tenant),        CF_V_TEXT(it->coll),
		                     CF_V_TEXT(it->id),           CF_V_INT(it->version)};
		CF_TRY(cf_tx_exec(tx,
		                  "UPDATE record_versions SET sealed = $1, kek_version = $2"
		                  " WHERE tenant_id = $3 AND collection = $4 AND record_id = $5"
		                  " AND version = $6",
		                  u, 6, NULL));
		q->moved++;
	}
	return cf_tx_query(tx,
	                   "SELECT count(*) FROM record_versions WHERE tenant_id = $1"
	                   " AND kek_version = $2",
	                   k, 2, rw_count_row, b);
}

static cf_err rewrap_step(void *ctx, struct cf_keyring *kr, const char *tenant, uint32_t from,
                          unsigned limit, uint64_t *moved, uint64_t *remaining)
{
	struct cf_vault *v = ctx;
	struct rewrap_q q = {.kr = kr, .tenant = tenant, .from = from, .limit = limit};
	struct rw_batch *b = calloc(1, sizeof *b);
	CF_ENSURE(b, CF_E_NOMEM);
	struct rw_tx r = {.q = &q, .b = b};
	cf_err err = cf_store_write_wait(v->st, tenant, rw_fn, &r);
	for (size_t i = 0; i < b->n; i++)
		free(b->items[i].env);
	*moved = err == CF_OK ? q.moved : 0;
	*remaining = err == CF_OK ? (uint64_t)b->remaining : 0;
	free(b);
	return err;
}

cf_err cf_vault_register_rewrap(struct cf_vault *v)
{
	struct cf_rewrap_source src = {.name = "records", .step = rewrap_step, .ctx = v};
	return cf_keys_add_rewrap_source(v->kr, &src);
}
