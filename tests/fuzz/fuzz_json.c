/* libFuzzer target: the strict JSON helpers (request bodies are untrusted input). */
#include <stdint.h>
#include <stdlib.h>

#include "base/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = NULL;
	if (cf_json_parse_object(data, size, 1024 * 1024, &v) != CF_OK)
		return 0;
	static const char *const allowed[] = {"name", "n", "ok", "sub", NULL};
	const char *s = NULL;
	size_t len = 0;
	int64_t i = 0;
	bool b = false;
	json_t *o = NULL;
	(void)cf_json_only_keys(v, allowed);
	(void)cf_json_get_str(v, "name", false, 64, &s, &len);
	(void)cf_json_get_int(v, "n", false, -5, 5, &i);
	(void)cf_json_get_bool(v, "ok", false, &b);
	if (cf_json_get_object(v, "sub", false, &o) == CF_OK && o)
		(void)cf_json_get_str(o, "name", true, 8, &s, &len);
	/* the member's text as sent is exactly its value: each member found by its key */
	const char *key;
	json_t *val;
	json_object_foreach (v, key, val) {
		struct cf_span t;
		if (!cf_json_member_text(data, size, key, &t))
			continue;
		json_t *same = NULL;
		if (cf_json_parse(t.ptr, t.len, 1024 * 1024, &same) != CF_OK ||
		    !json_equal(same, val))
			abort();
		json_decref(same);
	}
	char *out = NULL;
	if (cf_json_dump(v, &out, &len) == CF_OK) {
		/* what we print must parse back */
		json_t *again = NULL;
		if (cf_json_parse(out ? (const uint8_t *)out : NULL, len, 4u << 20, &again) !=
		    CF_OK)
			abort();
		json_decref(again);
		free(out);
	}
	json_decref(v);
	return 0;
}
