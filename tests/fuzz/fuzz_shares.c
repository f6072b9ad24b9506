/* libFuzzer target: the root key share parser (operators type or paste shares). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		if (cf_secmem_init(64 * 1024) != CF_OK)
			__builtin_trap();
		ready = true;
	}
	/* up to 8 shares, one per line */
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	const char *shares[8];
	size_t n = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line && n < 8;
	     line = strtok_r(NULL, "\n", &save))
		shares[n++] = line;
	struct cf_secbuf *rk = NULL;
	uint32_t ver;
	if (n > 0 && cf_rootkey_combine(shares, n, &rk, &ver) == CF_OK)
		cf_secbuf_free(&rk);
	free(text);
	return 0;
}
