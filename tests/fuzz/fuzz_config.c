/* libFuzzer target: the configuration parser (files an operator or attacker may edit). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct cf_config cfg;
	cf_config_defaults(&cfg);
	cfg.dev = true;
	if (cf_config_load_string(&cfg, text, "fuzz.conf") == CF_OK) {
		(void)cf_config_validate(&cfg);
		/* every string field stays terminated within its array */
		if (memchr(cfg.listen, '\0', sizeof cfg.listen) == NULL ||
		    memchr(cfg.data_dir, '\0', sizeof cfg.data_dir) == NULL)
			abort();
	}
	/* the same bytes as one environment variable's value */
	char *env[2] = {NULL, NULL};
	size_t n = size + sizeof "COFFRE_SERVER_LISTEN=";
	env[0] = malloc(n);
	if (env[0]) {
		memcpy(env[0], "COFFRE_SERVER_LISTEN=", sizeof "COFFRE_SERVER_LISTEN=" - 1);
		memcpy(env[0] + sizeof "COFFRE_SERVER_LISTEN=" - 1, text, size + 1);
		(void)cf_config_load_env(&cfg, env);
		free(env[0]);
	}
	free(text);
	return 0;
}
