/* libFuzzer target: a collection's schema and a record as a client sends them (PV2):
 * {"fields": {...}, "data": {...}}. The schema is parsed, the record checked against it,
 * and every field masked, whether or not its value passed (a value written under an
 * older schema may be of another type now); nothing may crash, a mask is never missing nor
 * the value itself, and a refusal always names its field. "filter" ({"name": "text"}) gives list
 * filters' values as a query would: each is read as its field's type, and a refusal names it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vault/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc = NULL;
	if (cf_json_parse_object(data, size, 64 * 1024, &doc) != CF_OK) {
		cf_err_detail_clear();
		return 0;
	}
	static struct vault_schema s;
	cf_err e = vault_schema_parse(json_object_get(doc, "fields"), &s);
	if (e != CF_OK && !cf_err_path()[0])
		__builtin_trap(); /* a schema refusal that names no field */
	const json_t *rec = json_object_get(doc, "data");
	if (e == CF_OK && rec) {
		e = vault_record_check(&s, rec);
		if (e != CF_OK && !cf_err_path()[0])
			__builtin_trap();
		const char *name;
		json_t *v;
		json_t *r = (json_t *)(uintptr_t)rec;
		json_object_foreach (r, name, v) {
			const struct vault_field *f = vault_field(&s, name);
			if (!f)
				continue;
			json_t *m = vault_mask(f, v);
			if (!m)
				__builtin_trap(); /* the field would be left out of the reply */
			/* PV2: a string never comes back as it was, unless made of the mask's own
			 * '*' (a phone mask kept all but digits of "John Smith") */
			if (json_is_string(v) && json_is_string(m) &&
			    strcmp(json_string_value(v), json_string_value(m)) == 0 &&
			    !strchr(json_string_value(v), '*'))
				__builtin_trap();
			json_decref(m);
		}
	}
	const json_t *flt = json_object_get(doc, "filter");
	if (vault_schema_parse(json_object_get(doc, "fields"), &s) == CF_OK &&
	    json_is_object(flt)) {
		const char *name;
		json_t *v;
		json_t *fo = (json_t *)(uintptr_t)flt;
		json_object_foreach (fo, name, v) {
			const struct vault_field *f = vault_field(&s, name);
			char out[VAULT_INDEX_MAX + 1];
			if (f && json_is_string(v) &&
			    vault_filter_value(f, json_string_value(v), "filter.x", out) != CF_OK &&
			    !cf_err_path()[0])
				__builtin_trap();
		}
	}
	json_decref(doc);
	cf_err_detail_clear();
	return 0;
}
