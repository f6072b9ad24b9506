/* libFuzzer target: the router's path checks (every request path is untrusted). */
#include <stdint.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cf_route_match m;
	struct cf_span path = {data, size};
	/* the real table, and one with parameters */
	static const struct cf_route extra[] = {
	        {"GET", "/v1/t/{tenant}/records/{id}", NULL, 0, 0, "a", NULL},
	        {"PUT", "/v1/t/{tenant}/records/{id}", NULL, 0, 0, "b", NULL},
	        {"GET", "/v1/t/{tenant}", NULL, 0, 0, "c", NULL},
	};
	cf_err e = cf_router_match(cf_http_routes, cf_http_routes_count, "GET", path, &m);
	if (e == CF_OK && !m.route)
		__builtin_trap();
	e = cf_router_match(extra, 3, "GET", path, &m);
	if (e == CF_OK) {
		for (unsigned i = 0; i < m.nparams; i++) {
			/* parameters lie inside the path and are never empty */
			if (m.values[i].len == 0 || m.values[i].ptr < data ||
			    m.values[i].ptr + m.values[i].len > data + size ||
			    memchr(m.values[i].ptr, '/', m.values[i].len))
				__builtin_trap();
		}
	}
	return 0;
}
