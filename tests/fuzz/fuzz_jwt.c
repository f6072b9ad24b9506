/* libFuzzer target: access tokens as a client sends them (Authorization: Bearer), and
 * the strict base64url under them. Nothing random may verify. */
#include <stdint.h>
#include <stdlib.h>

#include "auth/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t pub[CF_ED25519_PUB] = {
	        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe,
	        0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6,
	        0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a}; /* RFC 8032 test 1 */
	char kid[17];
	cf_jwt_kid(pub, kid);
	struct cf_jwt_claims cl;
	if (cf_jwt_verify((struct cf_span){data, size}, pub, kid, "https://vault.example",
	                  1800000000, &cl) == CF_OK)
		__builtin_trap(); /* a forged signature */
	uint8_t out[1024];
	size_t n = 0;
	(void)cf_b64url_decode((struct cf_span){data, size}, out, sizeof out, &n);
	cf_err_detail_clear();
	return 0;
}
