/* coffre — vault: what its files share. Internal. */
#ifndef CF_VAULT_INTERNAL_H
#define CF_VAULT_INTERNAL_H

#include "vault/vault.h"

#define VAULT_NAME_MAX   63
#define VAULT_FIELDS_MAX 64
#define VAULT_VALUE_MAX  (64 * 1024)  /* a field's largest value, in bytes */
#define VAULT_RECORD_MAX (256 * 1024) /* a record's data as sealed (records.md "Size") */
#define VAULT_INDEX_MAX  1023         /* a filterable value kept in clear, in bytes */
/* A record id: "r", 12 hex digits of its creation time in milliseconds, 16 random hex
 * digits. Ids of one moment sort together, so new rows go to the end of every index
 * instead of a random page each (a commit of 30 creates wrote ~100 pages, now a few);
 * 64 random bits keep ids unguessable and apart. Records made by earlier versions have
 * "r" and 16 random digits, still valid. */
#define VAULT_ID_MAX 29
#define VAULT_ID_OLD 17

enum cf_ftype {
	CF_FT_STRING,
	CF_FT_INTEGER,
	CF_FT_NUMBER,
	CF_FT_BOOLEAN,
	CF_FT_DATE,
	CF_FT_EMAIL,
	CF_FT_PHONE,
	CF_FT_OBJECT,
	CF_FT_ARRAY
};

struct vault_field {
	char name[VAULT_NAME_MAX + 1];
	enum cf_ftype type;
	enum cf_class cls;
	bool required, filter;
	size_t max;
};

struct vault_schema {
	struct vault_field f[VAULT_FIELDS_MAX];
	size_t n;
};

/* schema.c */
CF_MUST cf_err vault_name_check(const char *what, const char *n);
/* A schema from its JSON ({"name": {"type", "required", "max", "classification",
 * "filter"}}): every refusal names the field and the rule. */
CF_MUST cf_err vault_schema_parse(const json_t *fields, struct vault_schema *out);
json_t *vault_schema_json(const struct vault_schema *s);
const struct vault_field *vault_field(const struct vault_schema *s, const char *name);
/* A record's data against the schema: unknown fields, missing required ones, types,
 * sizes, dates, emails, phones (422 naming the path and the rule). */
CF_MUST cf_err vault_record_check(const struct vault_schema *s, const json_t *data);
/* The clear text the index keeps of a filterable value (false: none, as for objects). */
bool vault_index_text(const json_t *v, char out[VAULT_INDEX_MAX + 1]);
/* A filter's value, as given in a list's query, read as its field's type and checked as
 * a record's value would be (422 naming path and the rule), into the text the index
 * keeps of it: so that "n:05" or "active:True" is refused, never silently unmatched. */
CF_MUST cf_err vault_filter_value(const struct vault_field *f, const char *text, const char *path,
                                  char out[VAULT_INDEX_MAX + 1]);
/* A personal or sensitive value as it is shown masked (a new reference). */
json_t *vault_mask(const struct vault_field *f, const json_t *v);

#endif
