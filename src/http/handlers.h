/* coffre — http: the handlers, one file per resource, gathered by routes.c. Internal. */
#ifndef CF_HTTP_HANDLERS_H
#define CF_HTTP_HANDLERS_H

#include "http/http.h"

cf_err cf_h_healthz(struct cf_req *req);
cf_err cf_h_readyz(struct cf_req *req);
cf_err cf_h_audit_latest(struct cf_req *req);
cf_err cf_h_audit_inclusion(struct cf_req *req);
cf_err cf_h_audit_consistency(struct cf_req *req);

#endif
