/* libFuzzer target: the envelope parser and opener (stored bytes are untrusted: an
 * operator or a thief may have edited the database). */
#include <stdint.h>
#include <string.h>

#include "keys/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cf_kek *kek;
	if (!kek) {
		static const uint8_t key[CF_SIV_KEY] = {1, 2, 3};
		if (cf_secmem_init(64 * 1024) != CF_OK || cf_kek_new(key, &kek) != CF_OK)
			__builtin_trap();
	}
	struct cf_env_view v;
	struct cf_span env = {data, size};
	if (cf_env_parse(env, &v) != CF_OK)
		return 0;
	/* a parsed view lies inside the input */
	if (v.sealed.ptr + v.sealed.len != data + size || v.sealed.len < CF_AEAD_TAG)
		__builtin_trap();
	struct cf_env_ctx ctx = {v.tenant,
	                         {(const uint8_t *)"c", 1},
	                         {(const uint8_t *)"r", 1},
	                         1,
	                         {(const uint8_t *)"f", 1}};
	static uint8_t out[1 << 16];
	size_t n;
	/* random bytes never authenticate */
	if (cf_env_open(kek, &ctx, env, out, sizeof out, &n) == CF_OK)
		__builtin_trap();
	return 0;
}
