/* coffre — strict JSON over jansson.
 * jansson parses; we bound what it is given (size, depth) and refuse what a strict API
 * must not accept (duplicate keys, NUL in strings, trailing bytes, unknown fields). */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static bool json_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One byte of a JSON text through the string state: true when c belongs to a string
 * (its quotes included), so that structure is looked for only where it is false. */
static bool json_string_byte(uint8_t c, bool *in_str, bool *esc)
{
	if (*in_str) {
		if (*esc)
			*esc = false;
		else if (c == '\\')
			*esc = true;
		else if (c == '"')
			*in_str = false;
		return true;
	}
	if (c == '"')
		*in_str = true;
	return *in_str;
}

/* Deepest nesting of arrays and objects, outside strings. Runs before jansson so that a
 * hostile document never makes it recurse past CF_JSON_DEPTH_MAX. On malformed input
 * the answer may be off, but jansson then refuses the document anyway. */
static size_t json_depth(const uint8_t *p, size_t n, size_t limit)
{
	size_t depth = 0, deepest = 0;
	bool in_str = false, esc = false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (json_string_byte(c, &in_str, &esc))
			continue;
		if (c == '[' || c == '{') {
			if (++depth > deepest) {
				deepest = depth;
				if (deepest > limit)
					return deepest;
			}
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return deepest;
}

cf_err cf_json_parse(const uint8_t *p, size_t n, size_t max_bytes, json_t **out)
{
	if (n > max_bytes || n > CF_JSON_BYTES_MAX)
		return cf_err_fail(CF_E_TOO_LARGE, "the JSON document is larger than %zu bytes",
		                   max_bytes < CF_JSON_BYTES_MAX ? max_bytes
		                                                 : (size_t)CF_JSON_BYTES_MAX);
	if (json_depth(p, n, CF_JSON_DEPTH_MAX) > CF_JSON_DEPTH_MAX)
		return cf_err_fail(CF_E_TOO_DEEP, "the JSON document nests deeper than %u levels",
		                   CF_JSON_DEPTH_MAX);
	json_error_t jerr;
	json_t *v = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!v) {
		if (json_error_code(&jerr) == json_error_duplicate_key)
			return cf_err_fail(CF_E_DUPLICATE_KEY,
			                   "line %d column %d: an object repeats a key", jerr.line,
			                   jerr.column);
		if (json_error_code(&jerr) == json_error_out_of_memory)
			return CF_E_NOMEM;
		/* jansson places an empty document at line -1: no place to name */
		bool blank = true;
		for (size_t i = 0; i < n && blank; i++)
			blank = json_ws(p[i]);
		if (blank)
			return cf_err_fail(CF_E_MALFORMED_JSON, "the JSON document is empty");
		/* jansson's text names the problem ("unexpected token", "invalid UTF-8"...), never
		 * more than a few bytes of input; we still keep only our own wording. */
		return cf_err_fail(
		        CF_E_MALFORMED_JSON, "line %d column %d: %s", jerr.line, jerr.column,
		        json_error_code(&jerr) == json_error_invalid_utf8 ? "invalid UTF-8"
		        : json_error_code(&jerr) == json_error_null_character
		                ? "NUL character in a string"
		        : json_error_code(&jerr) == json_error_end_of_input_expected
		                ? "unexpected bytes after the document"
		        : json_error_code(&jerr) == json_error_numeric_overflow
		                ? "number out of range"
		                : "syntax error");
	}
	*out = v;
	return CF_OK;
}

cf_err cf_json_parse_object(const uint8_t *p, size_t n, size_t max_bytes, json_t **out)
{
	json_t *v = NULL;
	CF_TRY(cf_json_parse(p, n, max_bytes, &v));
	if (!json_is_object(v)) {
		json_decref(v);
		return cf_err_fail(CF_E_WRONG_TYPE, "the body must be a JSON object");
	}
	*out = v;
	return CF_OK;
}

/* A scanner, not a parser: it runs only on a document jansson has accepted, so the
 * tokens are known to be well formed, and it need only find where the member's value
 * ends (the first ',' or '}' outside strings at its own level). */
bool cf_json_member_text(const uint8_t *p, size_t n, const char *key, struct cf_span *out)
{
	size_t i = 0, klen = strlen(key);
	while (i < n && json_ws(p[i]))
		i++;
	if (i >= n || p[i] != '{')
		return false;
	i++;
	for (;;) {
		while (i < n && json_ws(p[i]))
			i++;
		if (i >= n || p[i] != '"')
			return false; /* "}" of an object without the key */
		size_t ks = ++i;
		while (i < n && p[i] != '"') {
			if (p[i] == '\\')
				return false; /* a key with an escape might spell key */
			i++;
		}
		if (i >= n)
			return false;
		size_t ke = i++;
		while (i < n && json_ws(p[i]))
			i++;
		if (i >= n || p[i] != ':')
			return false;
		i++;
		while (i < n && json_ws(p[i]))
			i++;
		size_t vs = i, depth = 0;
		bool in_str = false, esc = false;
		for (; i < n; i++) {
			uint8_t c = p[i];
			if (json_string_byte(c, &in_str, &esc))
				continue;
			if (c == '{' || c == '[') {
				depth++;
			} else if (c == '}' || c == ']') {
				if (depth == 0)
					break;
				depth--;
			} else if (c == ',' && depth == 0) {
				break;
			}
		}
		if (i >= n || in_str || vs == i)
			return false;
		size_t ve = i;
		while (ve > vs && json_ws(p[ve - 1]))
			ve--;
		if (ke - ks == klen && memcmp(p + ks, key, klen) == 0) {
			*out = (struct cf_span){p + vs, ve - vs};
			return true;
		}
		if (p[i] == '}')
			return false;
		i++; /* the ',' */
	}
}

cf_err cf_json_only_keys(const json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *val;
	/* jansson's iteration macro takes a non-const object; it does not modify it. */
	json_t *o = (json_t *)(uintptr_t)obj;
	json_object_foreach (o, key, val) {
		(void)val;
		bool known = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0) {
				known = true;
				break;
			}
		if (!known) {
			char shown[65]; /* the client's name: a printable prefix only */
			cf_err_shown(key, shown, sizeof shown);
			return cf_err_at(CF_E_UNKNOWN_FIELD, shown, "keys", "%s: unknown field",
			                 shown);
		}
	}
	return CF_OK;
}

static cf_err get_field(const json_t *obj, const char *key, bool required, json_t **out)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		*out = NULL;
		return required
		               ? cf_err_at(CF_E_MISSING_FIELD, key, "required", "%s: required", key)
		               : CF_OK;
	}
	*out = v;
	return CF_OK;
}

cf_err cf_json_get_str(const json_t *obj, const char *key, bool required, size_t max_len,
                       const char **out, size_t *out_len)
{
	json_t *v;
	CF_TRY(get_field(obj, key, required, &v));
	if (!v)
		return CF_OK;
	if (!json_is_string(v))
		return cf_err_at(CF_E_WRONG_TYPE, key, "string", "%s: must be a string", key);
	size_t len = json_string_length(v);
	if (len > max_len || len > CF_JSON_STRING_MAX)
		return cf_err_at(CF_E_OUT_OF_RANGE, key, "max", "%s: longer than %zu bytes", key,
		                 max_len < CF_JSON_STRING_MAX ? max_len
		                                              : (size_t)CF_JSON_STRING_MAX);
	*out = json_string_value(v);
	if (out_len)
		*out_len = len;
	return CF_OK;
}

cf_err cf_json_get_int(const json_t *obj, const char *key, bool required, int64_t min, int64_t max,
                       int64_t *out)
{
	json_t *v;
	CF_TRY(get_field(obj, key, required, &v));
	if (!v)
		return CF_OK;
	if (!json_is_integer(v))
		return cf_err_at(CF_E_WRONG_TYPE, key, "integer", "%s: must be an integer", key);
	json_int_t i = json_integer_value(v);
	if (i < min || i > max)
		return cf_err_at(CF_E_OUT_OF_RANGE, key, "range",
		                 "%s: must be between %lld and %lld", key, (long long)min,
		                 (long long)max);
	*out = (int64_t)i;
	return CF_OK;
}

cf_err cf_json_get_bool(const json_t *obj, const char *key, bool required, bool *out)
{
	json_t *v;
	CF_TRY(get_field(obj, key, required, &v));
	if (!v)
		return CF_OK;
	if (!json_is_boolean(v))
		return cf_err_at(CF_E_WRONG_TYPE, key, "boolean", "%s: must be true or false", key);
	*out = json_is_true(v);
	return CF_OK;
}

cf_err cf_json_get_object(const json_t *obj, const char *key, bool required, json_t **out)
{
	json_t *v;
	CF_TRY(get_field(obj, key, required, &v));
	if (!v)
		return CF_OK;
	if (!json_is_object(v))
		return cf_err_at(CF_E_WRONG_TYPE, key, "object", "%s: must be an object", key);
	*out = v;
	return CF_OK;
}

/* One pass of jansson's encoder into a buffer of our own (callers free() it whatever
 * jansson's allocator). A buffer outgrown is wiped before it is freed: it may hold
 * personal values. */
struct dump_buf {
	char *p;
	size_t len, cap;
};

static int dump_cb(const char *chunk, size_t size, void *data)
{
	struct dump_buf *d = data;
	size_t need;
	if (__builtin_add_overflow(d->len, size + 1, &need))
		return -1;
	if (need > d->cap) {
		size_t cap = d->cap ? d->cap : 2048;
		while (cap < need)
			if (__builtin_mul_overflow(cap, (size_t)2, &cap))
				return -1;
		char *p = malloc(cap);
		if (!p)
			return -1;
		if (d->len)
			memcpy(p, d->p, d->len);
		if (d->p) {
			cf_wipe(d->p, d->cap);
			free(d->p);
		}
		d->p = p;
		d->cap = cap;
	}
	memcpy(d->p + d->len, chunk, size);
	d->len += size;
	return 0;
}

cf_err cf_json_dump(const json_t *v, char **out, size_t *out_len)
{
	struct dump_buf d = {0};
	if (json_dump_callback(v, dump_cb, &d, JSON_COMPACT | JSON_ENCODE_ANY) != 0 || !d.p) {
		if (d.p) {
			cf_wipe(d.p, d.cap);
			free(d.p);
		}
		return CF_E_NOMEM;
	}
	d.p[d.len] = '\0';
	*out = d.p;
	if (out_len)
		*out_len = d.len;
	return CF_OK;
}

/* Every block jansson frees is wiped first: strings that held a passphrase, a share or a
 * personal value do not linger in freed heap. Each block carries its size in front. */
#define WIPE_HDR 16u /* keeps max_align_t alignment */

static void *wipe_malloc(size_t n)
{
	if (n > SIZE_MAX - WIPE_HDR)
		return NULL;
	uint8_t *p = malloc(n + WIPE_HDR);
	if (!p)
		return NULL;
	memcpy(p, &n, sizeof n);
	return p + WIPE_HDR;
}

static void wipe_free(void *ptr)
{
	if (!ptr)
		return;
	uint8_t *p = (uint8_t *)ptr - WIPE_HDR;
	size_t n = 0;
	memcpy(&n, p, sizeof n);
	cf_wipe(p, n + WIPE_HDR);
	free(p);
}

void cf_json_wipe_on_free(void)
{
	json_set_alloc_funcs(wipe_malloc, wipe_free);
}
