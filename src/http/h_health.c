/* coffre — /healthz (alive) and /readyz (ready to serve; AL6 clock state). */
#include <sys/statvfs.h>

#include "http/handlers.h"

cf_err cf_h_healthz(struct cf_req *req)
{
	json_t *body = json_pack("{s:s, s:s}", "status", "ok", "version", CF_VERSION);
	if (!body)
		return CF_E_NOMEM;
	return cf_req_reply_json(req, 200, body);
}

static cf_err deployment_row(const struct cf_row *row, void *ctx)
{
	(void)row;
	*(bool *)ctx = true;
	return CF_OK;
}

static cf_err read_deployment(struct cf_tx *tx, void *ctx)
{
	static const char q[] = "SELECT deployment_id FROM deployment WHERE id = 1";
	return cf_tx_query(tx, q, NULL, 0, deployment_row, ctx);
}

cf_err cf_h_readyz(struct cf_req *req)
{
	/* The store answers a real query: reachable, schema in place, readable by the
	 * runtime role. When it comes back after an outage, so does readiness. */
	struct cf_store *st = cf_req_store(req);
	bool store_ok = false;
	if (st && cf_store_read(st, NULL, read_deployment, &store_ok) != CF_OK)
		store_ok = false;
	const struct cf_config *cfg = cf_req_config(req);
	struct statvfs vfs;
	bool disk_ok = false;
	uint64_t free_bytes = 0;
	uint64_t reserve = (uint64_t)cfg->disk_reserve_mb * 1024u * 1024u;
	if (statvfs(cfg->data_dir, &vfs) == 0) {
		free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
		disk_ok = free_bytes >= reserve;
	}
	struct cf_clock_state clk;
	cf_clock_state(&clk);
	/* Ready also means unsealed: a sealed vault answers 503 sealed to every API call. */
	struct cf_keyring *kr = cf_req_keys(req);
	struct cf_keys_status ks = {.initialized = true};
	if (kr)
		cf_keys_status(kr, &ks);
	const char *keys_state = !ks.initialized ? "not_initialized"
	                         : ks.sealed     ? "sealed"
	                                         : "unsealed";
	bool ready = disk_ok && store_ok && (!kr || (ks.initialized && !ks.sealed));
	/* AL6: an unsynchronised clock is reported, not treated as "not ready": many hosts
	 * run without NTP and coffre still serves them correctly. */
	json_t *warnings = json_array();
	if (warnings && !clk.synchronized)
		json_array_append_new(warnings, json_string("clock_unsynchronized"));
	json_t *body =
	        json_pack("{s:s, s:s, s:{s:{s:b, s:I, s:I}, s:{s:b, s:s}}, s:{s:b, s:I, s:I}, s:o}",
	                  "status", ready ? "ready" : "not_ready", "version", CF_VERSION, "checks",
	                  "disk", "ok", disk_ok, "free_bytes", (json_int_t)free_bytes,
	                  "reserve_bytes", (json_int_t)reserve, "store", "ok", store_ok, "engine",
	                  !st                                      ? "none"
	                  : cf_store_engine(st) == CF_STORE_SQLITE ? "sqlite"
	                                                           : "postgresql",
	                  "clock", "synchronized", clk.synchronized, "max_error_us",
	                  (json_int_t)clk.max_error_us, "est_error_us",
	                  (json_int_t)clk.est_error_us, "warnings", warnings);
	if (body && kr)
		json_object_set_new(json_object_get(body, "checks"), "keys",
		                    json_pack("{s:b, s:s}", "ok", ks.initialized && !ks.sealed,
		                              "state", keys_state));
	if (!body)
		return CF_E_NOMEM;
	return cf_req_reply_json(req, ready ? 200 : 503, body);
}
