/* coffre — every route the API serves, in one table. A route not here does not exist:
 * unknown paths get 404 and known paths with another method 405, as JSON errors.
 *
 * IA1: each route names what its caller must hold. Public routes say so (PUBLIC); every
 * other one is authenticated, checked against the tenant in its path (TI1) and its
 * permission by server.c's gate before the handler runs, and audited. */
#include "http/handlers.h"

#define D   CF_ROUTE_DEFER
#define F   CF_ROUTE_FAST
#define B   CF_ROUTE_BODY
#define P   CF_ROUTE_PUBLIC
#define AU  CF_ROUTE_AUDITS
#define ANY CF_ANY_PRINCIPAL
#define EN  CF_ROUTE_ENROLL
#define RA  CF_ROUTE_REAUTH
#define OP  CF_AUTH_OPERATOR
#define FO  CF_ROUTE_FORM

const struct cf_route cf_http_routes[] = {
        /* Liveness: answers from the I/O thread, touches nothing. */
        {"GET", "/healthz", cf_h_healthz, P, 0, "healthz", NULL},
        /* Readiness: looks at the disk and the clock, so it runs on the work pool. */
        {"GET", "/readyz", cf_h_readyz, D | P, 0, "readyz", NULL},
        /* The audit log's public face (AL1): checkpoints and proofs reveal hashes and
         * sizes only, so anyone may fetch them to check what they were given. */
        {"GET", "/v1/audit/checkpoints/latest", cf_h_audit_latest, D | P, 0, "audit_checkpoint",
         NULL},
        {"GET", "/v1/audit/proof/inclusion", cf_h_audit_inclusion, D | P, 0, "audit_inclusion",
         " index size "},
        {"GET", "/v1/audit/proof/consistency", cf_h_audit_consistency, D | P, 0,
         "audit_consistency", " size1 size2 "},
        /* Getting in: each checks a secret itself and audits what it does. */
        {"POST", "/v1/t/{tenant}/auth/login", cf_h_login, D | B | P, 0, "auth.login", NULL},
        {"POST", "/v1/t/{tenant}/auth/setup", cf_h_setup, D | B | P, 0, "auth.setup", NULL},
        {"POST", "/v1/t/{tenant}/auth/token", cf_h_token, D | B | P | FO, 0, "auth.token", NULL},
        {"POST", "/v1/t/{tenant}/auth/reset", cf_h_reset, D | B | P, 0, "auth.reset", NULL},
        /* The token keys, for whoever checks coffre's tokens (RFC 7517). */
        {"GET", "/v1/auth/jwks", cf_h_jwks, D | P, 0, "auth.jwks", NULL},
        /* The caller's own account. */
        {"GET", "/v1/auth/me", cf_h_me, D | EN, ANY, "auth.me", NULL},
        {"POST", "/v1/auth/logout", cf_h_logout, D | AU | EN, ANY, "auth.logout", NULL},
        /* Two-factor authentication (IA6). */
        {"POST", "/v1/auth/mfa/totp", cf_h_totp_enroll, D | AU | RA | EN, ANY, "mfa.enroll", NULL},
        {"POST", "/v1/auth/mfa/totp/confirm", cf_h_totp_confirm, D | B | AU | RA | EN, ANY,
         "mfa.confirm", NULL},
        {"GET", "/v1/t/{tenant}/auth/policy", cf_h_policy_get, D, CF_P_USERS_MANAGE, "policy.get",
         NULL},
        {"PUT", "/v1/t/{tenant}/auth/policy", cf_h_policy_set, D | B | AU | RA, CF_P_USERS_MANAGE,
         "policy.update", NULL},
        {"DELETE", "/v1/t/{tenant}/users/{id}/sessions", cf_h_user_sessions_revoke, D | AU | RA,
         CF_P_USERS_MANAGE, "session.revoke_all", NULL},
        /* Access reviews (IA10): every login and client, JSON or CSV. */
        {"GET", "/v1/t/{tenant}/access-review", cf_h_access_review, D, CF_P_USERS_MANAGE,
         "access.review", " format dormant_days "},
        {"DELETE", "/v1/t/{tenant}/users/{id}/mfa", cf_h_totp_reset, D | AU | RA, CF_P_USERS_MANAGE,
         "mfa.reset", NULL},
        {"POST", "/v1/auth/password", cf_h_password, D | B | AU, ANY, "user.password", NULL},
        {"GET", "/v1/auth/sessions", cf_h_sessions, D, ANY, "auth.sessions", NULL},
        {"POST", "/v1/auth/reauth", cf_h_reauth, D | B | AU | EN, ANY, "auth.reauth", NULL},
        {"DELETE", "/v1/auth/sessions/{id}", cf_h_session_revoke, D | AU, ANY, "session.revoke",
         NULL},
        /* A tenant's users and API clients (IA8, IA12). */
        {"GET", "/v1/t/{tenant}/users", cf_h_users_list, D, CF_P_USERS_MANAGE, "users.list", NULL},
        {"POST", "/v1/t/{tenant}/users", cf_h_users_create, D | B | AU | RA, CF_P_USERS_MANAGE,
         "user.create", NULL},
        {"GET", "/v1/t/{tenant}/users/{id}", cf_h_users_get, D, CF_P_USERS_MANAGE, "users.get",
         NULL},
        {"PATCH", "/v1/t/{tenant}/users/{id}", cf_h_users_update, D | B | AU | RA,
         CF_P_USERS_MANAGE, "user.update", NULL},
        {"DELETE", "/v1/t/{tenant}/users/{id}", cf_h_users_delete, D | AU | RA, CF_P_USERS_MANAGE,
         "user.delete", NULL},
        {"GET", "/v1/t/{tenant}/clients", cf_h_clients_list, D, CF_P_CLIENTS_MANAGE, "clients.list",
         NULL},
        {"POST", "/v1/t/{tenant}/clients", cf_h_clients_create, D | B | AU | RA,
         CF_P_CLIENTS_MANAGE, "client.create", NULL},
        {"DELETE", "/v1/t/{tenant}/clients/{id}", cf_h_clients_delete, D | AU | RA,
         CF_P_CLIENTS_MANAGE, "client.disable", NULL},
        /* A tenant's own roles, built from the permission list (IA1, IA2). */
        {"GET", "/v1/t/{tenant}/roles", cf_h_roles_list, D, CF_P_ROLES_MANAGE, "roles.list", NULL},
        {"POST", "/v1/t/{tenant}/roles", cf_h_roles_create, D | B | AU | RA, CF_P_ROLES_MANAGE,
         "role.create", NULL},
        {"DELETE", "/v1/t/{tenant}/roles/{id}", cf_h_roles_delete, D | AU | RA, CF_P_ROLES_MANAGE,
         "role.delete", NULL},
        /* Groups of users: a group's roles reach its members (IA1). */
        {"GET", "/v1/t/{tenant}/groups", cf_h_groups_list, D, CF_P_USERS_MANAGE, "groups.list",
         NULL},
        {"POST", "/v1/t/{tenant}/groups", cf_h_groups_create, D | B | AU | RA, CF_P_USERS_MANAGE,
         "group.create", NULL},
        {"PATCH", "/v1/t/{tenant}/groups/{id}", cf_h_groups_update, D | B | AU | RA,
         CF_P_USERS_MANAGE, "group.update", NULL},
        {"DELETE", "/v1/t/{tenant}/groups/{id}", cf_h_groups_delete, D | AU | RA, CF_P_USERS_MANAGE,
         "group.delete", NULL},
        /* The deployment's operators (IA11): a realm of their own, MFA required of each,
         * no tenant's data; they manage operators and tenants. */
        {"POST", "/v1/operator/login", cf_h_login, D | B | P, 0, "operator.login", NULL},
        {"POST", "/v1/operator/setup", cf_h_setup, D | B | P, 0, "operator.setup", NULL},
        {"POST", "/v1/operator/reset", cf_h_reset, D | B | P, 0, "operator.reset", NULL},
        {"GET", "/v1/operator/operators", cf_h_op_list, D, OP, "operators.list", NULL},
        {"POST", "/v1/operator/operators", cf_h_op_create, D | B | AU | RA, OP, "operator.create",
         NULL},
        {"DELETE", "/v1/operator/operators/{id}", cf_h_op_disable, D | AU | RA, OP,
         "operator.disable", NULL},
        {"DELETE", "/v1/operator/operators/{id}/mfa", cf_h_op_mfa_reset, D | AU | RA, OP,
         "operator.mfa_reset", NULL},
        {"GET", "/v1/operator/tenants", cf_h_op_tenants, D, OP, "tenants.list", NULL},
        {"POST", "/v1/operator/tenants", cf_h_op_tenant_create, D | B | RA, OP, "tenant.create",
         NULL},
        {"PATCH", "/v1/operator/tenants/{id}", cf_h_op_tenant_update, D | B | RA, OP,
         "tenant.update", NULL},
        {"DELETE", "/v1/operator/tenants/{id}", cf_h_op_tenant_delete, D | RA, OP, "tenant.delete",
         " confirm "},
        /* The deployment's keys: status, a tenant's KEK rotation, the token key's. */
        {"GET", "/v1/operator/keys", cf_h_op_keys, D, OP, "keys.status", NULL},
        {"POST", "/v1/operator/tenants/{id}/keys/rotate", cf_h_op_tenant_rotate, D | RA, OP,
         "keys.rotate", NULL},
        {"POST", "/v1/operator/keys/token/rotate", cf_h_op_token_rotate, D | RA, OP,
         "keys.rotate_token", NULL},
        /* Break-glass (IA11): an operator asks, another operator or the tenant's owner
         * approves; the tenant's admins see and end grants. Each grant's life is in the
         * tenant's audit log, and so is every request made under it. */
        {"GET", "/v1/operator/break-glass", cf_h_bg_list, D, OP, "break_glass.list", NULL},
        {"POST", "/v1/operator/break-glass", cf_h_bg_request, D | B | AU, OP, "break_glass.request",
         NULL},
        {"POST", "/v1/operator/break-glass/{id}/approve", cf_h_bg_approve, D | AU | RA, OP,
         "break_glass.approve", NULL},
        {"DELETE", "/v1/operator/break-glass/{id}", cf_h_bg_end, D | AU, OP, "break_glass.end",
         NULL},
        {"GET", "/v1/t/{tenant}/break-glass", cf_h_bg_list, D, CF_P_USERS_MANAGE,
         "break_glass.list", NULL},
        {"POST", "/v1/t/{tenant}/break-glass/{id}/approve", cf_h_bg_approve, D | AU | RA,
         CF_P_TENANT_MANAGE, "break_glass.approve", NULL},
        {"DELETE", "/v1/t/{tenant}/break-glass/{id}", cf_h_bg_end, D | AU, CF_P_USERS_MANAGE,
         "break_glass.end", NULL},
        /* The vault (ER2, PV2, TI1): collections and their records, sealed, masked. */
        {"GET", "/v1/t/{tenant}/collections", cf_h_collections_list, D, CF_P_RECORDS_READ,
         "collections.list", NULL},
        {"POST", "/v1/t/{tenant}/collections", cf_h_collections_create, D | B | AU | RA,
         CF_P_COLLECTIONS_MANAGE, "collection.create", NULL},
        {"GET", "/v1/t/{tenant}/collections/{id}", cf_h_collections_get, D, CF_P_RECORDS_READ,
         "collection.get", NULL},
        {"PUT", "/v1/t/{tenant}/collections/{id}", cf_h_collections_update, D | B | AU | RA,
         CF_P_COLLECTIONS_MANAGE, "collection.update", NULL},
        {"DELETE", "/v1/t/{tenant}/collections/{id}", cf_h_collections_delete, D | AU | RA,
         CF_P_COLLECTIONS_MANAGE, "collection.delete", " confirm "},
        {"GET", "/v1/t/{tenant}/collections/{id}/records", cf_h_records_list, D, CF_P_RECORDS_READ,
         "records.list", " filter cursor limit "},
        {"POST", "/v1/t/{tenant}/collections/{id}/records", cf_h_records_create, D | F | B | AU,
         CF_P_RECORDS_WRITE, "record.create", NULL},
        {"POST", "/v1/t/{tenant}/collections/{id}/batch", cf_h_records_batch, D | B | AU,
         CF_P_RECORDS_WRITE, "records.batch_create", NULL},
        {"POST", "/v1/t/{tenant}/collections/{id}/batch/read", cf_h_records_batch_read, D | B,
         CF_P_RECORDS_READ, "records.batch_read", NULL},
        {"GET", "/v1/t/{tenant}/collections/{id}/records/{rid}", cf_h_records_get, D | F,
         CF_P_RECORDS_READ, "record.get", " version reveal reason "},
        {"PUT", "/v1/t/{tenant}/collections/{id}/records/{rid}", cf_h_records_put, D | F | B | AU,
         CF_P_RECORDS_WRITE, "record.update", NULL},
        {"PATCH", "/v1/t/{tenant}/collections/{id}/records/{rid}", cf_h_records_patch,
         D | F | B | AU, CF_P_RECORDS_WRITE, "record.patch", NULL},
        {"DELETE", "/v1/t/{tenant}/collections/{id}/records/{rid}", cf_h_records_delete, D | F | AU,
         CF_P_RECORDS_DELETE, "record.delete", NULL},
        {"GET", "/v1/t/{tenant}/collections/{id}/records/{rid}/versions", cf_h_records_history, D,
         CF_P_RECORDS_READ, "record.versions", " before limit "},
        /* PV5: the tenant's own copy of all its records, in clear. */
        {"GET", "/v1/t/{tenant}/export", cf_h_export, D, CF_P_PII_REVEAL, "tenant.export",
         " cursor limit "},
        /* A tenant's own audit log (AL2, AL4). */
        {"GET", "/v1/t/{tenant}/audit", cf_h_tenant_audit, D, CF_P_AUDIT_READ, "audit.list",
         " action actor resource outcome since_us until_us cursor limit "},
};
const size_t cf_http_routes_count = sizeof cf_http_routes / sizeof cf_http_routes[0];
