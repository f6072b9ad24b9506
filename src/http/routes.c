/* coffre — every route the API serves, in one table. A route not here does not exist:
 * unknown paths get 404 and known paths with another method 405, as JSON errors. */
#include "http/handlers.h"

const struct cf_route cf_http_routes[] = {
        /* Liveness: answers from the I/O thread, touches nothing. */
        {"GET", "/healthz", cf_h_healthz, 0, "healthz"},
        /* Readiness: looks at the disk and the clock, so it runs on the work pool. */
        {"GET", "/readyz", cf_h_readyz, CF_ROUTE_DEFER, "readyz"},
        /* The audit log's public face (AL1): checkpoints and proofs reveal hashes and
         * sizes only, so anyone may fetch them to check what they were given. */
        {"GET", "/v1/audit/checkpoints/latest", cf_h_audit_latest, CF_ROUTE_DEFER,
         "audit_checkpoint"},
        {"GET", "/v1/audit/proof/inclusion", cf_h_audit_inclusion, CF_ROUTE_DEFER,
         "audit_inclusion"},
        {"GET", "/v1/audit/proof/consistency", cf_h_audit_consistency, CF_ROUTE_DEFER,
         "audit_consistency"},
};
const size_t cf_http_routes_count = sizeof cf_http_routes / sizeof cf_http_routes[0];
