/* libFuzzer target: form bodies (an OAuth token request, application/x-www-form-urlencoded,
 * is untrusted input read before any authentication). */
#include <stdint.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = {"grant_type", "client_id", "client_secret", NULL};
	json_t *o = NULL;
	cf_err e = cf_form_parse(data, size, keys, 4096, &o);
	if ((e == CF_OK) != (o != NULL))
		__builtin_trap();
	const char *k;
	json_t *v;
	json_object_foreach (o, k, v) {
		/* only the names asked for, each a string without a NUL */
		bool known = false;
		for (size_t i = 0; keys[i]; i++)
			known = known || strcmp(keys[i], k) == 0;
		if (!known || !json_is_string(v) ||
		    strlen(json_string_value(v)) != json_string_length(v))
			__builtin_trap();
	}
	json_decref(o);
	cf_err_detail_clear();
	return 0;
}
