/* libFuzzer target: the root key file parser (a file on disk anyone with access may
 * have replaced). Parsing must never ask Argon2id for unbounded work. */
#include <stdint.h>

#include "keys/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cf_rk_file_view v;
	if (cf_rootkey_file_parse((struct cf_span){data, size}, &v) != CF_OK)
		return 0;
	if (v.prm.m_kib > 4u * 1024u * 1024u || v.prm.t > 64 || v.prm.p > 64 || v.prm.p == 0 ||
	    v.sealed.len != CF_RK_LEN + CF_AEAD_TAG)
		__builtin_trap();
	return 0;
}
