/* coffre — a collection's schema (PV2): its fields' types, sizes and classifications; the
 * check of a record against it (every refusal names the field and the rule), and the
 * masks of personal and sensitive values. Pure functions: records.c stores and seals. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vault/internal.h"

static const char *const type_names[] = {"string", "integer", "number", "boolean", "date",
                                         "email",  "phone",   "object", "array"};
static const char *const class_names[] = {"public", "internal", "confidential", "personal",
                                          "sensitive"};

const char *cf_class_name(enum cf_class c)
{
	return class_names[c];
}

static bool name_ok(const char *n)
{
	size_t len = strlen(n);
	if (len < 1 || len > VAULT_NAME_MAX || !(n[0] >= 'a' && n[0] <= 'z'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
			return false;
	return true;
}

cf_err vault_name_check(const char *what, const char *n)
{
	CF_ENSURE(n && name_ok(n),
	          cf_err_at(CF_E_INVALID_VALUE, what, "name",
	                    "%s is 1 to %d of a-z, 0-9 and '_', starting with a letter", what,
	                    VAULT_NAME_MAX));
	return CF_OK;
}

static int lookup(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

cf_err vault_schema_parse(const json_t *fields, struct vault_schema *out)
{
	memset(out, 0, sizeof *out);
	size_t nf = json_object_size(fields);
	CF_ENSURE(json_is_object(fields),
	          cf_err_at(CF_E_WRONG_TYPE, "fields", "object",
	                    "fields is an object of 1 to %d field definitions", VAULT_FIELDS_MAX));
	CF_ENSURE(nf >= 1 && nf <= VAULT_FIELDS_MAX,
	          cf_err_at(CF_E_OUT_OF_RANGE, "fields", nf ? "max" : "min",
	                    "fields is an object of 1 to %d field definitions", VAULT_FIELDS_MAX));
	const char *name;
	const json_t *def;
	json_t *fo = (json_t *)(uintptr_t)fields; /* iteration does not modify it */
	json_object_foreach (fo, name, def) {
		char path[96];
		(void)snprintf(path, sizeof path, "fields.%.64s", name);
		CF_TRY(vault_name_check(path, name));
		static const char *const keys[] = {"type",           "required", "max",
		                                   "classification", "filter",   NULL};
		CF_ENSURE(json_is_object(def),
		          cf_err_at(CF_E_WRONG_TYPE, path, "object", "%s is an object", path));
		cf_err e = cf_json_only_keys(def, keys);
		CF_ENSURE(e == CF_OK, cf_err_at(e, path, "keys", "%s: %s", path, cf_err_detail()));
		struct vault_field *f = &out->f[out->n++];
		(void)snprintf(f->name, sizeof f->name, "%s", name);
		int t = lookup(type_names, sizeof type_names / sizeof type_names[0],
		               json_string_value(json_object_get(def, "type")));
		CF_ENSURE(t >= 0, cf_err_at(CF_E_INVALID_VALUE, path, "type",
		                            "%s.type is one of string, integer, number, boolean, "
		                            "date, email, phone, object, array",
		                            path));
		f->type = (enum cf_ftype)t;
		/* PV2: unless told, a field is confidential: sealed, not masked, never in clear. */
		const json_t *cl = json_object_get(def, "classification");
		int c = cl ? lookup(class_names, 5, json_string_value(cl)) : CF_CLASS_CONFIDENTIAL;
		CF_ENSURE(c >= 0, cf_err_at(CF_E_INVALID_VALUE, path, "classification",
		                            "%s.classification is public, internal, confidential, "
		                            "personal or sensitive",
		                            path));
		f->cls = (enum cf_class)c;
		const json_t *req = json_object_get(def, "required");
		CF_ENSURE(!req || json_is_boolean(req),
		          cf_err_at(CF_E_WRONG_TYPE, path, "required", "%s.required is a boolean",
		                    path));
		f->required = json_is_true(req);
		const json_t *flt = json_object_get(def, "filter");
		CF_ENSURE(!flt || json_is_boolean(flt), cf_err_at(CF_E_WRONG_TYPE, path, "filter",
		                                                  "%s.filter is a boolean", path));
		f->filter = json_is_true(flt);
		/* Only what may be in clear is kept in clear for filtering (PV2). */
		CF_ENSURE(!f->filter || f->cls <= CF_CLASS_INTERNAL,
		          cf_err_at(CF_E_INVALID_VALUE, path, "filter",
		                    "%s: only public and internal fields can be filtered on (their "
		                    "values are kept in clear for it)",
		                    path));
		CF_ENSURE(!f->filter || (f->type != CF_FT_OBJECT && f->type != CF_FT_ARRAY),
		          cf_err_at(CF_E_INVALID_VALUE, path, "filter",
		                    "%s: objects and arrays cannot be filtered on", path));
		const json_t *mx = json_object_get(def, "max");
		CF_ENSURE(!mx || json_is_integer(mx),
		          cf_err_at(CF_E_WRONG_TYPE, path, "max", "%s.max is an integer", path));
		CF_ENSURE(!mx || (json_integer_value(mx) >= 1 &&
		                  json_integer_value(mx) <= VAULT_VALUE_MAX),
		          cf_err_at(CF_E_OUT_OF_RANGE, path, "max", "%s.max is 1 to %d bytes", path,
		                    VAULT_VALUE_MAX));
		f->max = mx ? (size_t)json_integer_value(mx) : VAULT_VALUE_MAX;
	}
	return CF_OK;
}

json_t *vault_schema_json(const struct vault_schema *s)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < s->n; i++) {
		const struct vault_field *f = &s->f[i];
		json_t *d = json_pack("{s:s, s:b, s:I, s:s, s:b}", "type", type_names[f->type],
		                      "required", f->required, "max", (json_int_t)f->max,
		                      "classification", class_names[f->cls], "filter", f->filter);
		if (!d || json_object_set_new(o, f->name, d) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

const struct vault_field *vault_field(const struct vault_schema *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->f[i].name, name) == 0)
			return &s->f[i];
	return NULL;
}

/* --- checking a record ----------------------------------------------------------------- */
static bool date_ok(const char *v)
{
	/* YYYY-MM-DD, a real day of the Gregorian calendar. */
	if (strlen(v) != 10 || v[4] != '-' || v[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)v[i]))
			return false;
	int y = (v[0] - '0') * 1000 + (v[1] - '0') * 100 + (v[2] - '0') * 10 + (v[3] - '0');
	int m = (v[5] - '0') * 10 + (v[6] - '0'), d = (v[8] - '0') * 10 + (v[9] - '0');
	static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m < 1 || m > 12 || d < 1 || d > days[m - 1])
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return !(m == 2 && d == 29 && !leap);
}

static bool email_ok(const char *v)
{
	size_t n = strlen(v);
	const char *at = strchr(v, '@');
	if (n < 3 || n > 254 || !at || at == v || (size_t)(at - v) > 64 || strchr(at + 1, '@') ||
	    !strchr(at + 1, '.') || at[1] == '.' || v[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch <= 0x20 || ch == 0x7f || strchr("\"<>,;\\()[]", ch))
			return false;
	}
	return true;
}

static bool phone_ok(const char *v)
{
	/* E.164 as people write it: '+', then 8 to 15 digits, spaces, dots or dashes
	 * between them. */
	if (v[0] != '+')
		return false;
	size_t digits = 0;
	for (const char *p = v + 1; *p; p++) {
		if (isdigit((unsigned char)*p))
			digits++;
		else if (!(*p == ' ' || *p == '.' || *p == '-') || !isdigit((unsigned char)p[-1]))
			return false;
	}
	return digits >= 8 && digits <= 15 && isdigit((unsigned char)v[strlen(v) - 1]);
}

static cf_err value_check(const struct vault_field *f, const json_t *v, const char *path)
{
	switch (f->type) {
	case CF_FT_STRING:
	case CF_FT_DATE:
	case CF_FT_EMAIL:
	case CF_FT_PHONE:
		CF_ENSURE(json_is_string(v),
		          f->type == CF_FT_STRING
		                  ? cf_err_at(CF_E_WRONG_TYPE, path, "string",
		                              "%s must be a string", path)
		                  : cf_err_at(CF_E_WRONG_TYPE, path, type_names[f->type],
		                              "%s must be a string (%s)", path,
		                              type_names[f->type]));
		CF_ENSURE(json_string_length(v) <= f->max,
		          cf_err_at(CF_E_OUT_OF_RANGE, path, "max",
		                    "%s is longer than its maximum of %zu bytes", path, f->max));
		CF_ENSURE(strlen(json_string_value(v)) == json_string_length(v),
		          cf_err_at(CF_E_INVALID_VALUE, path, "string", "%s must not contain NUL",
		                    path));
		/* ER2: a filterable value is kept in clear in the index, whole or not at all:
		 * a longer one could never be found by a filter */
		CF_ENSURE(!f->filter || json_string_length(v) <= VAULT_INDEX_MAX,
		          cf_err_at(CF_E_OUT_OF_RANGE, path, "max",
		                    "%s is filterable: at most %d bytes", path, VAULT_INDEX_MAX));
		break;
	case CF_FT_INTEGER:
		CF_ENSURE(json_is_integer(v), cf_err_at(CF_E_WRONG_TYPE, path, "integer",
		                                        "%s must be an integer", path));
		return CF_OK;
	case CF_FT_NUMBER:
		CF_ENSURE(json_is_number(v),
		          cf_err_at(CF_E_WRONG_TYPE, path, "number", "%s must be a number", path));
		return CF_OK;
	case CF_FT_BOOLEAN:
		CF_ENSURE(json_is_boolean(v), cf_err_at(CF_E_WRONG_TYPE, path, "boolean",
		                                        "%s must be true or false", path));
		return CF_OK;
	case CF_FT_OBJECT:
	case CF_FT_ARRAY: {
		bool ok = f->type == CF_FT_OBJECT ? json_is_object(v) : json_is_array(v);
		CF_ENSURE(ok, cf_err_at(CF_E_WRONG_TYPE, path, type_names[f->type],
		                        "%s must be an %s", path, type_names[f->type]));
		char *text = NULL;
		size_t n = 0;
		if (cf_json_dump(v, &text, &n) != CF_OK)
			n = 0;
		free(text);
		CF_ENSURE(n && n <= f->max,
		          cf_err_at(CF_E_OUT_OF_RANGE, path, "max",
		                    "%s is larger than its maximum of %zu bytes", path, f->max));
		return CF_OK;
	}
	}
	const char *s = json_string_value(v);
	if (f->type == CF_FT_DATE)
		CF_ENSURE(date_ok(s), cf_err_at(CF_E_INVALID_VALUE, path, "date",
		                                "%s must be a date, YYYY-MM-DD", path));
	if (f->type == CF_FT_EMAIL)
		CF_ENSURE(email_ok(s), cf_err_at(CF_E_INVALID_VALUE, path, "email",
		                                 "%s must be an email address", path));
	if (f->type == CF_FT_PHONE)
		CF_ENSURE(phone_ok(s), cf_err_at(CF_E_INVALID_VALUE, path, "phone",
		                                 "%s must be a phone number in international form "
		                                 "(+33 6 12 34 56 78)",
		                                 path));
	return CF_OK;
}

bool vault_index_text(const json_t *v, char out[VAULT_INDEX_MAX + 1])
{
	size_t cap = VAULT_INDEX_MAX + 1;
	if (json_is_string(v))
		return json_string_length(v) < cap &&
		       (size_t)snprintf(out, cap, "%s", json_string_value(v)) < cap;
	if (json_is_integer(v))
		return (size_t)snprintf(out, cap, "%lld", (long long)json_integer_value(v)) < cap;
	if (json_is_real(v))
		return (size_t)snprintf(out, cap, "%.17g", json_real_value(v)) < cap;
	if (json_is_boolean(v))
		return (size_t)snprintf(out, cap, "%s", json_is_true(v) ? "true" : "false") < cap;
	return false;
}

cf_err vault_filter_value(const struct vault_field *f, const char *text, const char *path,
                          char out[VAULT_INDEX_MAX + 1])
{
	json_t *v = NULL;
	if (f->type == CF_FT_INTEGER || f->type == CF_FT_NUMBER || f->type == CF_FT_BOOLEAN)
		v = json_loads(text, JSON_DECODE_ANY, NULL); /* JSON's own number grammar */
	else
		v = json_string(text); /* NULL when not UTF-8 */
	cf_err err = v ? value_check(f, v, path)
	               : cf_err_at(CF_E_INVALID_VALUE, path, type_names[f->type],
	                           "%s: the value is not a valid %s", path, type_names[f->type]);
	if (err == CF_OK && !vault_index_text(v, out))
		err = cf_err_at(CF_E_OUT_OF_RANGE, path, "max",
		                "%s: a filter's value is at most %d bytes", path, VAULT_INDEX_MAX);
	json_decref(v);
	return err;
}

cf_err vault_record_check(const struct vault_schema *s, const json_t *data)
{
	CF_ENSURE(json_is_object(data),
	          cf_err_at(CF_E_WRONG_TYPE, "data", "object", "data must be a JSON object"));
	const char *name;
	const json_t *v;
	json_t *dobj = (json_t *)(uintptr_t)data; /* iteration does not modify it */
	json_object_foreach (dobj, name, v) {
		char path[96];
		(void)snprintf(path, sizeof path, "data.%.64s", name);
		const struct vault_field *f = vault_field(s, name);
		CF_ENSURE(f, cf_err_at(CF_E_UNKNOWN_FIELD, path, "schema",
		                       "%s is not a field of the collection", path));
		/* null is "no value": only for fields that are not required. */
		if (json_is_null(v)) {
			CF_ENSURE(!f->required, cf_err_at(CF_E_MISSING_FIELD, path, "required",
			                                  "%s is required", path));
			continue;
		}
		CF_TRY(value_check(f, v, path));
	}
	for (size_t i = 0; i < s->n; i++) {
		char path[96];
		(void)snprintf(path, sizeof path, "data.%s", s->f[i].name);
		CF_ENSURE(!s->f[i].required || json_object_get(data, s->f[i].name),
		          cf_err_at(CF_E_MISSING_FIELD, path, "required", "%s is required", path));
	}
	return CF_OK;
}

/* --- masks (PV2) --------------------------------------------------------------------------- */
static json_t *mask_email(const char *v)
{
	/* j***@example.com: the first character, all of its bytes (é is two), and the
	 * domain, however long, stay. A byte alone would not be UTF-8, and jansson would
	 * refuse the string. */
	const char *at = strchr(v, '@');
	size_t first = v[0] ? 1 : 0;
	while (first < 4 && ((unsigned char)v[first] & 0xC0) == 0x80)
		first++;
	size_t dl = at ? strlen(at) : 0, n = first + 3 + dl;
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	memcpy(out, v, first);
	memcpy(out + first, "***", 3);
	memcpy(out + first + 3, at ? at : "", dl);
	out[n] = '\0';
	json_t *m = json_stringn(out, n);
	free(out);
	return m;
}

/* How many digits the E.164 country code at the start of d has (ITU-T E.164's assigned
 * codes are prefix-free: the first one or two digits tell; every code not listed here as
 * one or two digits long has three). */
static size_t country_code_len(const char d[2])
{
	if (d[0] == '1' || d[0] == '7')
		return 1;
	/* the two-digit codes, two characters each: 20 27 30 31 32 33 34 36 39, 40 41 43-49,
	 * 51-58, 60-66, 81 82 84 86, 90-95 98 */
	static const char two[] = "2027303132333436394041434445464748495152535455565758606162636465"
	                          "668182848690919293949598";
	for (size_t i = 0; i + 1 < sizeof two; i += 2)
		if (two[i] == d[0] && two[i + 1] == d[1])
			return 2;
	return 3;
}

static json_t *mask_phone(const char *v)
{
	/* +33 6 ** ** ** 12, +1 2**-***-**99: the country code, the next digit and the last
	 * two stay; the rest is masked. */
	size_t digits = 0, n = strlen(v), seen = 0;
	char first[2] = {'0', '0'};
	for (size_t i = 0; i < n; i++)
		if (isdigit((unsigned char)v[i])) {
			if (digits < 2)
				first[digits] = v[i];
			digits++;
		}
	size_t keep = country_code_len(first) + 1;
	char out[64];
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < sizeof out; i++) {
		char ch = v[i];
		if (isdigit((unsigned char)ch)) {
			seen++;
			if (seen > keep && seen + 2 <= digits)
				ch = '*';
		}
		out[o++] = ch;
	}
	out[o] = '\0';
	return json_string(out);
}

static json_t *mask_string(const char *v)
{
	/* The last four characters, when there are at least eight; else nothing. */
	size_t n = strlen(v), chars = 0;
	for (size_t i = 0; i < n; i++)
		chars += ((unsigned char)v[i] & 0xC0) != 0x80;
	if (chars < 8)
		return json_string("****");
	size_t keep = n, k = 0;
	while (keep > 0 && k < 4) {
		keep--;
		if (((unsigned char)v[keep] & 0xC0) != 0x80)
			k++;
	}
	char out[64];
	(void)snprintf(out, sizeof out, "****%s", v + keep);
	return json_string(out);
}

static json_t *mask_value(const struct vault_field *f, const json_t *v)
{
	/* a value that is not of its field's type (a field the schema no longer has, read
	 * as a string) gets the bare mask */
	const char *s = json_string_value(v);
	switch (f->type) {
	/* PV2: the email and phone masks keep what such values show (a domain, a country
	 * code, separators); a string that is not one (written before its field became
	 * email or phone) would keep its text in clear: it gets the bare mask */
	case CF_FT_EMAIL: return s && email_ok(s) ? mask_email(s) : NULL;
	case CF_FT_PHONE: return s && phone_ok(s) ? mask_phone(s) : NULL;
	case CF_FT_STRING: return s ? mask_string(s) : NULL;
	case CF_FT_DATE: return json_string("****-**-**");
	default: return json_string("***");
	}
}

/* PV2: a masked field is always in the reply, masked: a mask that cannot be made (no
 * memory) is the bare mask, never the field left out nor its value. */
json_t *vault_mask(const struct vault_field *f, const json_t *v)
{
	if (json_is_null(v))
		return json_null();
	json_t *m = mask_value(f, v);
	return m ? m : json_string("***");
}
