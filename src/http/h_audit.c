/* coffre — the audit log's public endpoints (AL1): the latest signed checkpoint, and
 * inclusion and consistency proofs any client can check with RFC 9162's algorithms
 * (docs/audit.md shows how). */
#include "audit/audit.h"
#include "http/handlers.h"

#define SIZE_MAX_Q ((uint64_t)1 << 62)

cf_err cf_h_audit_latest(struct cf_req *req)
{
	json_t *o = NULL;
	CF_TRY(cf_audit_latest(cf_req_store(req), &o));
	return cf_req_reply_json(req, 200, o);
}

cf_err cf_h_audit_inclusion(struct cf_req *req)
{
	uint64_t index = SIZE_MAX_Q, size = 0;
	CF_TRY(cf_req_query_u64(req, "index", 0, SIZE_MAX_Q - 1, &index));
	CF_TRY(cf_req_query_u64(req, "size", 0, SIZE_MAX_Q, &size));
	CF_ENSURE(index != SIZE_MAX_Q, cf_err_fail(CF_E_INVALID, "index is required"));
	json_t *o = NULL;
	CF_TRY(cf_audit_inclusion(cf_req_store(req), index, size, &o));
	return cf_req_reply_json(req, 200, o);
}

cf_err cf_h_audit_consistency(struct cf_req *req)
{
	uint64_t size1 = 0, size2 = 0;
	CF_TRY(cf_req_query_u64(req, "size1", 1, SIZE_MAX_Q, &size1));
	CF_TRY(cf_req_query_u64(req, "size2", 0, SIZE_MAX_Q, &size2));
	CF_ENSURE(size1 > 0, cf_err_fail(CF_E_INVALID, "size1 (>= 1) is required"));
	json_t *o = NULL;
	CF_TRY(cf_audit_consistency(cf_req_store(req), size1, size2, &o));
	return cf_req_reply_json(req, 200, o);
}
