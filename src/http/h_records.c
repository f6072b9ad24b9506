/* coffre — the vault's API (docs/records.md): a tenant's collections and their records.
 * routes.c gives each route its permission; server.c checks it and the tenant. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http/handlers.h"
#include "vault/vault.h"

/* If-Match: the version the caller read ("3" or the ETag "\"3\""); -1 when absent or
 * "*" (RFC 9110: whatever version is current). A change is one request, not a create:
 * an Idempotency-Key on it would be ignored, and a retry would write again, so it is
 * refused; If-Match is what makes a change's retry safe. */
static cf_err change_headers(struct cf_req *req, int64_t *out)
{
	const char *h = cf_req_header(req, "If-Match");
	*out = -1;
	CF_ENSURE(!cf_req_header(req, "Idempotency-Key"),
	          cf_err_at(CF_E_INVALID, "Idempotency-Key", "method",
	                    "an Idempotency-Key is for creates and batches; a change retried "
	                    "safely sends If-Match with the version it read"));
	if (!h || strcmp(h, "*") == 0)
		return CF_OK;
	char buf[24];
	size_t n = strlen(h);
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"' && n - 2 < sizeof buf) {
		memcpy(buf, h + 1, n - 2);
		buf[n - 2] = '\0';
	} else if (n < sizeof buf) {
		memcpy(buf, h, n + 1);
	} else {
		buf[0] = '\0';
	}
	char *end = NULL;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	CF_ENSURE(buf[0] && !errno && end && !*end && v >= 1,
	          cf_err_fail(CF_E_INVALID, "If-Match is the record's version (a number)"));
	*out = v;
	return CF_OK;
}

/* --- collections --------------------------------------------------------------------- */
cf_err cf_h_collections_list(struct cf_req *req)
{
	json_t *out = NULL;
	CF_TRY(cf_vault_collection_list(cf_req_vault(req), cf_h_own_tenant(req), &out));
	return cf_req_reply_json(req, 200, out);
}

static cf_err collection_put(struct cf_req *req, bool create)
{
	static const char *const keys_create[] = {"name", "fields", NULL};
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, create ? keys_create : keys_create + 1, &in));
	char name[80] = "";
	const char *n = NULL;
	cf_err e = CF_OK;
	if (create) {
		e = cf_h_need(in, "name", 64, &n);
		if (n)
			(void)snprintf(name, sizeof name, "%s", n);
	} else {
		cf_h_param(req, "id", name, sizeof name);
	}
	const json_t *fields = json_object_get(in, "fields");
	if (e == CF_OK && !fields)
		e = cf_err_at(CF_E_MISSING_FIELD, "fields", "required", "fields is required");
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_vault_collection_put(cf_req_vault(req), &call, cf_h_own_tenant(req), name,
		                            fields, create, &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, create ? 201 : 200, out);
}

cf_err cf_h_collections_create(struct cf_req *req)
{
	return collection_put(req, true);
}

cf_err cf_h_collections_update(struct cf_req *req)
{
	return collection_put(req, false);
}

cf_err cf_h_collections_get(struct cf_req *req)
{
	char name[80];
	cf_h_param(req, "id", name, sizeof name);
	json_t *out = NULL;
	CF_TRY(cf_vault_collection_get(cf_req_vault(req), cf_h_own_tenant(req), name, &out));
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_collections_delete(struct cf_req *req)
{
	char name[80];
	cf_h_param(req, "id", name, sizeof name);
	/* Every record of it goes for good: the caller types the name again. */
	const char *confirm = cf_req_query(req, "confirm");
	CF_ENSURE(confirm && strcmp(confirm, name) == 0,
	          cf_err_fail(CF_E_INVALID, "deleting a collection deletes all its records: "
	                                    "repeat its name in ?confirm="));
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_vault_collection_delete(cf_req_vault(req), &call, cf_h_own_tenant(req), name));
	return cf_req_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* --- records ----------------------------------------------------------------------------- */
cf_err cf_h_records_list(struct cf_req *req)
{
	char coll[80];
	cf_h_param(req, "id", coll, sizeof coll);
	uint64_t limit = 50;
	CF_TRY(cf_req_query_u64(req, "limit", 1, 100, &limit));
	/* Filters: ?filter=field:value (up to four, comma-separated, values without ','). */
	json_t *filters = json_object();
	CF_ENSURE(filters, CF_E_NOMEM);
	char buf[4 * (80 + 1024)]; /* four filters, each a name and its longest value */
	bool has = false;
	cf_err e = cf_req_query_text(req, "filter", buf, sizeof buf, &has);
	if (e == CF_OK && has) {
		char *save = NULL;
		for (char *t = strtok_r(buf, ",", &save); t && e == CF_OK;
		     t = strtok_r(NULL, ",", &save)) {
			char *colon = strchr(t, ':');
			if (!colon) {
				e = cf_err_fail(CF_E_INVALID, "a filter is field:value");
				break;
			}
			*colon = '\0';
			/* a second value would replace the first: a list wider than asked */
			if (json_object_get(filters, t)) {
				e = cf_err_fail(CF_E_INVALID,
				                "a field is filtered on twice: each field "
				                "once, as field:value");
				break;
			}
			/* a filter jansson would not keep (not UTF-8) must not be dropped
			 * silently: the list would be wider than asked */
			if (json_object_set_new(filters, t, json_string(colon + 1)) != 0)
				e = cf_err_fail(CF_E_INVALID,
				                "a filter's field and value are UTF-8 text");
		}
	}
	json_t *out = NULL;
	if (e == CF_OK)
		e = cf_vault_record_list(cf_req_vault(req), cf_h_own_tenant(req), coll, filters,
		                         cf_req_query(req, "cursor"), (unsigned)limit, &out);
	json_decref(filters);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, out);
}

/* Idempotency-Key: the request is its method, path and body. */
static cf_err idempotency(struct cf_req *req, const char *what, struct cf_idempotency *out)
{
	*out = (struct cf_idempotency){.key = cf_req_header(req, "Idempotency-Key")};
	if (!out->key)
		return CF_OK;
	struct cf_span sep = cf_span_str("\n");
	struct cf_span parts[] = {cf_span_str(what),
	                          sep,
	                          cf_req_param(req, "tenant"),
	                          sep,
	                          cf_req_param(req, "id"),
	                          sep,
	                          cf_req_body(req)};
	return cf_sha256v(parts, sizeof parts / sizeof parts[0], out->request_hash);
}

/* A create in flight (one record, or a batch): what the vault borrows until the write
 * is durable. */
struct create_call {
	json_t *in, *items;
	struct cf_span text; /* a lone record's data as sent (in the request's body) */
	bool has_text;
	struct cf_auth_call call;
	struct cf_vault_create *w;
	bool batch; /* the reply is the ids, not the record */
	char coll[80];
};

static void create_call_free(struct create_call *cc)
{
	cf_vault_create_free(&cc->w);
	json_decref(cc->items);
	json_decref(cc->in);
	free(cc);
}

static cf_err create_write(struct cf_tx *tx, void *ctx)
{
	struct create_call *cc = ctx;
	return cf_vault_create_write(tx, cc->w);
}

static cf_err create_finish(struct cf_req *req, void *ctx, cf_err result)
{
	struct create_call *cc = ctx;
	json_t *ids = NULL;
	char *text = NULL;
	size_t len = 0;
	bool batch = cc->batch;
	cf_err e = cf_vault_create_end(&cc->w, result, &ids, batch ? NULL : &text, &len);
	if (e == CF_OK && !batch)
		e = cf_vault_created(cf_req_vault(req), &cc->call, cf_h_own_tenant(req), cc->coll,
		                     ids, &text, &len);
	create_call_free(cc);
	CF_TRY(e);
	if (batch)
		return cf_req_reply_json(req, 201, json_pack("{s:o}", "ids", ids));
	return cf_req_reply_take(req, 201, text, len);
}

/* ER2, AL1: checked and sealed here, written with their audit entries by the store's
 * writer; the reply is made once that is durable, and no thread waits for it meanwhile.
 * Takes cc. */
static cf_err create_hand_over(struct cf_req *req, struct create_call *cc, cf_err e,
                               const struct cf_idempotency *idem)
{
	cc->call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_vault_create_begin(cf_req_vault(req), &cc->call, cf_h_own_tenant(req),
		                          cc->coll, cc->items, cc->has_text ? &cc->text : NULL,
		                          cc->batch, idem, &cc->w);
	if (e == CF_OK)
		e = cf_req_write(req, cf_h_own_tenant(req)->id, create_write, cc, create_finish);
	if (e != CF_OK)
		create_call_free(cc);
	return e;
}

/* A create_call for the collection in the path, its body's one key (what, "data" or
 * "records") in *field; the error (its body refused) goes with it to create_hand_over. */
static cf_err create_call_new(struct cf_req *req, const char *action, const char *what,
                              struct cf_idempotency *idem, struct create_call **out,
                              const json_t **field)
{
	const char *const keys[] = {what, NULL};
	struct create_call *cc = calloc(1, sizeof *cc);
	CF_ENSURE(cc, CF_E_NOMEM);
	cf_h_param(req, "id", cc->coll, sizeof cc->coll);
	cf_err e = idempotency(req, action, idem);
	if (e == CF_OK)
		e = cf_h_body(req, keys, &cc->in);
	*field = json_object_get(cc->in, what);
	if (e == CF_OK && !*field)
		e = cf_err_at(CF_E_MISSING_FIELD, what, "required", "%s is required", what);
	*out = cc;
	return e;
}

cf_err cf_h_records_create(struct cf_req *req)
{
	struct create_call *cc = NULL;
	struct cf_idempotency idem;
	const json_t *data = NULL;
	cf_err e = create_call_new(req, "record.create", "data", &idem, &cc, &data);
	CF_ENSURE(cc, e);
	if (e == CF_OK) {
		cc->items = json_pack("[O]", data);
		e = cc->items ? CF_OK : CF_E_NOMEM;
		struct cf_span body = cf_req_body(req);
		cc->has_text = cf_json_member_text(body.ptr, body.len, "data", &cc->text);
	}
	return create_hand_over(req, cc, e, &idem);
}

cf_err cf_h_records_batch(struct cf_req *req)
{
	struct create_call *cc = NULL;
	struct cf_idempotency idem;
	const json_t *recs = NULL;
	cf_err e = create_call_new(req, "records.batch", "records", &idem, &cc, &recs);
	CF_ENSURE(cc, e);
	cc->batch = true;
	/* each item is {"data": {...}}, as a single create takes */
	cc->items = json_array();
	if (e == CF_OK && !cc->items)
		e = CF_E_NOMEM;
	for (size_t i = 0; e == CF_OK && i < json_array_size(recs); i++) {
		json_t *d = json_object_get(json_array_get(recs, i), "data");
		char path[48];
		(void)snprintf(path, sizeof path, "records[%zu].data", i);
		if (!d || json_object_size(json_array_get(recs, i)) != 1)
			e = cf_err_at(CF_E_WRONG_TYPE, path, "object",
			              "records[%zu] is {\"data\": {...}}", i);
		else if (json_array_append(cc->items, d) != 0)
			e = CF_E_NOMEM;
	}
	if (e == CF_OK && !json_is_array(recs))
		e = cf_err_at(CF_E_WRONG_TYPE, "records", "array", "records is an array");
	return create_hand_over(req, cc, e, &idem);
}

cf_err cf_h_records_batch_read(struct cf_req *req)
{
	static const char *const keys[] = {"ids", NULL};
	char coll[80];
	cf_h_param(req, "id", coll, sizeof coll);
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const json_t *ids = json_object_get(in, "ids");
	cf_err e =
	        ids ? CF_OK : cf_err_at(CF_E_MISSING_FIELD, "ids", "required", "ids is required");
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_vault_records_get(cf_req_vault(req), &call, cf_h_own_tenant(req), coll, ids,
		                         &out);
	json_decref(in);
	CF_TRY(e);
	return cf_req_reply_json(req, 200, out);
}

cf_err cf_h_records_get(struct cf_req *req)
{
	char coll[80], id[40];
	cf_h_param(req, "id", coll, sizeof coll);
	cf_h_param(req, "rid", id, sizeof id);
	uint64_t version = 0;
	CF_TRY(cf_req_query_u64(req, "version", 1, INT64_MAX, &version));
	/* room for every field of a schema, and for a reason well past its limit (so that
	 * one too long is the vault's 422 naming reason, not a 400 of its buffer) */
	char fields[64 * 65], reason[1024];
	bool has_fields = false, has_reason = false;
	CF_TRY(cf_req_query_text(req, "reveal", fields, sizeof fields, &has_fields));
	CF_TRY(cf_req_query_text(req, "reason", reason, sizeof reason, &has_reason));
	/* neither would reveal anything, and both would say nothing of it */
	CF_ENSURE(!has_fields || fields[0],
	          cf_err_at(CF_E_INVALID, "reveal", "field",
	                    "reveal names no field: name its fields, comma-separated, or *"));
	CF_ENSURE(has_fields || !has_reason,
	          cf_err_at(CF_E_INVALID, "reason", "reveal",
	                    "a reason goes with ?reveal= (the fields to show in clear)"));
	/* PV7: a reveal's audit entry is written before the reply, and waited for */
	if (has_fields && cf_req_must_move(req))
		return CF_OK;
	struct cf_reveal rv = {.fields = has_fields ? fields : NULL,
	                       .reason = has_reason ? reason : NULL,
	                       .version = (int64_t)version};
	char *out = NULL;
	size_t n = 0;
	struct cf_auth_call call = cf_req_call(req);
	int64_t shown = 0;
	CF_TRY(cf_vault_record_get_text(cf_req_vault(req), &call, cf_h_own_tenant(req), coll, id,
	                                &rv, &out, &n, &shown));
	cf_req_set_etag(req, shown);
	return cf_req_reply_take(req, 200, out, n);
}

/* A change in flight (replace, patch, delete): prepared here, written by the store's
 * writer with its audit entry, answered once durable. */
static cf_err change_write(struct cf_tx *tx, void *ctx)
{
	return cf_vault_change_write(tx, ctx);
}

static cf_err change_finish(struct cf_req *req, void *ctx, cf_err result)
{
	struct cf_vault_change *ch = ctx;
	json_t *out = NULL;
	CF_TRY(cf_vault_change_end(&ch, result, &out));
	const json_t *version = json_object_get(out, "version"); /* a delete answers none */
	if (json_is_integer(version))
		cf_req_set_etag(req, (int64_t)json_integer_value(version));
	return cf_req_reply_json(req, 200, out);
}

static cf_err change_hand_over(struct cf_req *req, cf_err e, struct cf_vault_change *ch)
{
	if (e == CF_OK)
		e = cf_req_write(req, cf_h_own_tenant(req)->id, change_write, ch, change_finish);
	if (e != CF_OK)
		cf_vault_change_free(&ch);
	return e;
}

static cf_err record_write(struct cf_req *req, bool patch)
{
	static const char *const keys[] = {"data", NULL};
	char coll[80], id[40];
	cf_h_param(req, "id", coll, sizeof coll);
	cf_h_param(req, "rid", id, sizeof id);
	int64_t expected = -1;
	CF_TRY(change_headers(req, &expected));
	json_t *in = NULL;
	CF_TRY(cf_h_body(req, keys, &in));
	const json_t *data = json_object_get(in, "data");
	cf_err e = data ? CF_OK
	                : cf_err_at(CF_E_MISSING_FIELD, "data", "required", "data is required");
	struct cf_vault_change *ch = NULL;
	struct cf_auth_call call = cf_req_call(req);
	if (e == CF_OK)
		e = cf_vault_update_begin(cf_req_vault(req), &call, cf_h_own_tenant(req), coll, id,
		                          data, patch, expected, &ch);
	json_decref(in);
	return change_hand_over(req, e, ch);
}

cf_err cf_h_records_put(struct cf_req *req)
{
	return record_write(req, false);
}

cf_err cf_h_records_patch(struct cf_req *req)
{
	return record_write(req, true);
}

cf_err cf_h_records_delete(struct cf_req *req)
{
	char coll[80], id[40];
	cf_h_param(req, "id", coll, sizeof coll);
	cf_h_param(req, "rid", id, sizeof id);
	int64_t expected = -1;
	CF_TRY(change_headers(req, &expected));
	struct cf_vault_change *ch = NULL;
	struct cf_auth_call call = cf_req_call(req);
	cf_err e = cf_vault_delete_begin(cf_req_vault(req), &call, cf_h_own_tenant(req), coll, id,
	                                 expected, &ch);
	return change_hand_over(req, e, ch);
}

cf_err cf_h_records_history(struct cf_req *req)
{
	char coll[80], id[40];
	cf_h_param(req, "id", coll, sizeof coll);
	cf_h_param(req, "rid", id, sizeof id);
	uint64_t before = 0, limit = 100;
	CF_TRY(cf_req_query_u64(req, "before", 1, INT64_MAX, &before));
	CF_TRY(cf_req_query_u64(req, "limit", 1, 1000, &limit));
	json_t *out = NULL;
	CF_TRY(cf_vault_record_history(cf_req_vault(req), cf_h_own_tenant(req), coll, id,
	                               (int64_t)before, (unsigned)limit, &out));
	return cf_req_reply_json(req, 200, out);
}

/* PV5: the tenant's own copy of its records, a page at a time (coffre export streams the
 * pages as JSON lines). Clear values: it needs pii.reveal, and each page is audited. */
cf_err cf_h_export(struct cf_req *req)
{
	uint64_t limit = 1000;
	CF_TRY(cf_req_query_u64(req, "limit", 1, 1000, &limit));
	char cursor[128];
	bool has = false;
	CF_TRY(cf_req_query_text(req, "cursor", cursor, sizeof cursor, &has));
	json_t *out = NULL;
	struct cf_auth_call call = cf_req_call(req);
	CF_TRY(cf_vault_export_page(cf_req_vault(req), &call, cf_h_own_tenant(req),
	                            has ? cursor : NULL, (unsigned)limit, &out));
	return cf_req_reply_json(req, 200, out);
}
