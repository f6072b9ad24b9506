/* libFuzzer target: checkpoint notes and proof files, the two things a customer's
 * verifier (and `coffre audit verify`) reads from outside. Nothing random may verify. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t pub[CF_ED25519_PUB] = {
	        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe,
	        0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6,
	        0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a}; /* RFC 8032 test 1 */
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	char origin[96];
	uint64_t n = 0;
	uint8_t root[CF_HASH_LEN];
	if (cf_checkpoint_open(text, pub, origin, sizeof origin, &n, root) == CF_OK)
		__builtin_trap(); /* a forged signature */
	json_t *doc = NULL;
	if (cf_json_parse_object(data, size, 1 << 16, &doc) == CF_OK) {
		(void)cf_merkle_verify_json(doc);
		json_decref(doc);
	}
	free(text);
	return 0;
}
