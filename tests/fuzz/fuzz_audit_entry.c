/* libFuzzer target: the audit entry decoder (`coffre audit verify` reads entries from a
 * database an attacker may have edited). Whatever decodes must encode back to the same
 * bytes: the encoding has one form. */
#include <stdint.h>
#include <string.h>

#include "audit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cf_audit_entry e;
	if (cf_audit_decode((struct cf_span){data, size}, &e) != CF_OK)
		return 0;
	uint8_t back[CF_AUDIT_ENTRY_MAX];
	size_t n = 0;
	if (cf_audit_encode(&e, back, sizeof back, &n) != CF_OK || n != size ||
	    memcmp(back, data, size) != 0)
		__builtin_trap();
	return 0;
}
