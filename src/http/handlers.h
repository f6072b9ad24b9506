/* coffre — http: the handlers, one file per resource, gathered by routes.c. Internal. */
#ifndef CF_HTTP_HANDLERS_H
#define CF_HTTP_HANDLERS_H

#include "http/http.h"

/* The body as a JSON object of the allowed keys only; a required string field of at
 * most max bytes, or the error naming it (h_auth.c). */
CF_MUST cf_err cf_h_body(struct cf_req *req, const char *const *allowed, json_t **out);
CF_MUST cf_err cf_h_need(const json_t *o, const char *key, size_t max, const char **out);
/* A path parameter into out (cut at cap); the caller's tenant, on a tenant's route (the
 * gate has checked it is the path's). */
void cf_h_param(struct cf_req *req, const char *name, char *out, size_t cap);
const struct cf_tenant_ref *cf_h_own_tenant(struct cf_req *req);

cf_err cf_h_healthz(struct cf_req *req);
cf_err cf_h_readyz(struct cf_req *req);
cf_err cf_h_audit_latest(struct cf_req *req);
cf_err cf_h_audit_inclusion(struct cf_req *req);
cf_err cf_h_audit_consistency(struct cf_req *req);
cf_err cf_h_login(struct cf_req *req);
cf_err cf_h_setup(struct cf_req *req);
cf_err cf_h_reset(struct cf_req *req);
cf_err cf_h_token(struct cf_req *req);
cf_err cf_h_jwks(struct cf_req *req);
cf_err cf_h_me(struct cf_req *req);
cf_err cf_h_logout(struct cf_req *req);
cf_err cf_h_password(struct cf_req *req);
cf_err cf_h_sessions(struct cf_req *req);
cf_err cf_h_reauth(struct cf_req *req);
cf_err cf_h_users_list(struct cf_req *req);
cf_err cf_h_users_create(struct cf_req *req);
cf_err cf_h_users_get(struct cf_req *req);
cf_err cf_h_users_update(struct cf_req *req);
cf_err cf_h_users_delete(struct cf_req *req);
cf_err cf_h_clients_list(struct cf_req *req);
cf_err cf_h_clients_create(struct cf_req *req);
cf_err cf_h_clients_delete(struct cf_req *req);
cf_err cf_h_tenant_audit(struct cf_req *req);
cf_err cf_h_totp_enroll(struct cf_req *req);
cf_err cf_h_totp_confirm(struct cf_req *req);
cf_err cf_h_totp_reset(struct cf_req *req);
cf_err cf_h_policy_get(struct cf_req *req);
cf_err cf_h_policy_set(struct cf_req *req);
cf_err cf_h_session_revoke(struct cf_req *req);
cf_err cf_h_user_sessions_revoke(struct cf_req *req);
cf_err cf_h_access_review(struct cf_req *req);
cf_err cf_h_roles_list(struct cf_req *req);
cf_err cf_h_groups_list(struct cf_req *req);
cf_err cf_h_groups_create(struct cf_req *req);
cf_err cf_h_groups_update(struct cf_req *req);
cf_err cf_h_groups_delete(struct cf_req *req);
cf_err cf_h_roles_create(struct cf_req *req);
cf_err cf_h_roles_delete(struct cf_req *req);
cf_err cf_h_op_list(struct cf_req *req);
cf_err cf_h_op_create(struct cf_req *req);
cf_err cf_h_op_disable(struct cf_req *req);
cf_err cf_h_op_mfa_reset(struct cf_req *req);
cf_err cf_h_op_tenants(struct cf_req *req);
cf_err cf_h_op_tenant_create(struct cf_req *req);
cf_err cf_h_op_tenant_update(struct cf_req *req);
cf_err cf_h_op_tenant_delete(struct cf_req *req);
cf_err cf_h_op_keys(struct cf_req *req);
cf_err cf_h_op_tenant_rotate(struct cf_req *req);
cf_err cf_h_op_token_rotate(struct cf_req *req);
cf_err cf_h_bg_list(struct cf_req *req);
cf_err cf_h_bg_request(struct cf_req *req);
cf_err cf_h_bg_approve(struct cf_req *req);
cf_err cf_h_bg_end(struct cf_req *req);
cf_err cf_h_collections_list(struct cf_req *req);
cf_err cf_h_collections_create(struct cf_req *req);
cf_err cf_h_collections_get(struct cf_req *req);
cf_err cf_h_collections_update(struct cf_req *req);
cf_err cf_h_collections_delete(struct cf_req *req);
cf_err cf_h_records_list(struct cf_req *req);
cf_err cf_h_records_create(struct cf_req *req);
cf_err cf_h_records_get(struct cf_req *req);
cf_err cf_h_records_put(struct cf_req *req);
cf_err cf_h_records_patch(struct cf_req *req);
cf_err cf_h_records_delete(struct cf_req *req);
cf_err cf_h_records_history(struct cf_req *req);
cf_err cf_h_export(struct cf_req *req);
cf_err cf_h_records_batch(struct cf_req *req);
cf_err cf_h_records_batch_read(struct cf_req *req);

#endif
