/* coffre — http: the HTTPS API server (libmicrohttpd over GnuTLS), its router, the
 * per-address limits in front of every route, and the handlers.
 *
 * Execution model (DESIGN §2): libmicrohttpd's I/O threads parse requests and run the
 * cheap handlers inline. A route flagged CF_ROUTE_DEFER is run on the work pool
 * instead: the connection is suspended first, the handler runs on a pool thread, and
 * the connection is resumed with its reply. Handlers are written as plain synchronous
 * functions either way; the flag says where they may run.
 *
 * No thread waits for a durable write it did not need to: a handler may end with
 * cf_req_write (its change goes to the store's writer and the reply is made when it is
 * durable), and the request's own audit entry is written the same way, the connection
 * suspended meanwhile and resumed by the writer. A CF_ROUTE_FAST route (it reads, and
 * writes only through cf_req_write) runs on the I/O thread itself when the store is
 * SQLite (reads are local) and the caller sends a bearer token (a session's idle clock
 * may need a write): no thread is handed anything but the writer. */
#ifndef CF_HTTP_H
#define CF_HTTP_H

#include <sys/socket.h>

#include "auth/auth.h"
#include "base/base.h"
#include "keys/keys.h"
#include "store/store.h"

struct cf_vault; /* vault/vault.h */

struct cf_req;
struct cf_server;

typedef cf_err (*cf_handler)(struct cf_req *req);

enum cf_route_flags {
	CF_ROUTE_DEFER = 1u << 0,  /* may block (disk, store, hashing): run on the work pool */
	CF_ROUTE_BODY = 1u << 1,   /* takes a JSON body (application/json, <= server.max_body) */
	CF_ROUTE_PUBLIC = 1u << 2, /* no authentication (health, login, token, public proofs) */
	CF_ROUTE_AUDITS = 1u << 3, /* the handler writes its own audit entry when it succeeds */
	CF_ROUTE_ENROLL = 1u << 4, /* open to a session that must enroll in MFA first (IA6) */
	CF_ROUTE_REAUTH = 1u << 5, /* sensitive: a session must have logged in recently (TR3) */
	CF_ROUTE_FAST = 1u << 6,   /* reads only, writes through cf_req_write: may run inline */
	CF_ROUTE_FORM = 1u << 7,   /* the OAuth token request: a form body may come, and Basic */
};

/* A route's permission: an enum cf_perm, or CF_ANY_PRINCIPAL (authenticated, no
 * permission: the caller's own account). Ignored for CF_ROUTE_PUBLIC routes. */
#define CF_ANY_PRINCIPAL CF_P_COUNT

struct cf_route {
	const char *method;  /* "GET", "POST", ... */
	const char *pattern; /* "/v1/t/{tenant}/records/{id}": literal or {name} segments */
	cf_handler handler;
	unsigned flags;
	unsigned perm;    /* IA1: what the caller must hold (checked before the handler) */
	const char *name; /* stable name for logs, metrics and audit actions: "readyz" */
	/* The query parameters it takes, each between spaces (" limit cursor "); NULL:
	 * none. Any other is refused (400) before the handler runs: a misspelt filter
	 * must not answer as if there were none. */
	const char *query;
};

/* The routes the server serves (routes.c): one table, one place to read them all. */
extern const struct cf_route cf_http_routes[];
extern const size_t cf_http_routes_count;

/* Router ----------------------------------------------------------------------------- */
struct cf_route_match {
	const struct cf_route *route;
	unsigned nparams;
	struct cf_span names[CF_HTTP_ROUTE_PARAMS_MAX];  /* spans into route->pattern */
	struct cf_span values[CF_HTTP_ROUTE_PARAMS_MAX]; /* spans into the request path */
	char allow[64]; /* on CF_E_METHOD: the methods the path does take ("GET, POST") */
};
/* Checks that path is a strict absolute path (RFC 3986 pchar and '/', valid %XX
 * escapes that decode to neither '/' nor a control character, no empty, "." or ".."
 * segment), then finds its route. Errors: CF_E_URI_TOO_LONG, CF_E_INVALID (bad path),
 * CF_E_NOT_FOUND, CF_E_METHOD (m->allow says what the path takes). */
CF_MUST cf_err cf_router_match(const struct cf_route *routes, size_t nroutes, const char *method,
                               struct cf_span path, struct cf_route_match *m);

/* Rate limiting: GCRA token buckets per address (IPv4 /32, IPv6 /64) in a fixed table. - */
struct cf_ratelimit;
CF_MUST cf_err cf_ratelimit_new(unsigned rate_per_s, unsigned burst, size_t slots,
                                struct cf_ratelimit **out);
/* True when the address may make a request now; otherwise false and *retry_after_s
 * says when it may (>= 1). Thread-safe. */
bool cf_ratelimit_take(struct cf_ratelimit *rl, const struct sockaddr *sa, uint64_t now_ns,
                       unsigned *retry_after_s);
void cf_ratelimit_free(struct cf_ratelimit **pp);

/* TLS ------------------------------------------------------------------------------ */
/* The one priority string coffre serves (TR1, TR2): TLS 1.3 and 1.2 only, ECDHE only,
 * AEAD suites only, no session tickets (forward secrecy), no compression. */
extern const char cf_tls_priorities[];
/* Loads the certificate chain and key (PEM) and makes them the ones served. The first
 * call sets them up; later calls (SIGHUP) swap them in for new handshakes. On error
 * the credentials in use stay as they were. */
CF_MUST cf_err cf_tls_load(const char *cert_path, const char *key_path);
/* Frees every loaded credential; only once the server has stopped. */
void cf_tls_shutdown(void);

/* Server ---------------------------------------------------------------------------- */
/* Binds the listening socket and starts serving. The store and keyring are borrowed: they must
 * outlive the server. Errors name the cause (address in use, permission, bad address). */
CF_MUST cf_err cf_server_start(const struct cf_config *cfg, struct cf_store *store,
                               struct cf_keyring *keys, struct cf_auth *auth,
                               struct cf_vault *vault, struct cf_server **out);
/* Stops accepting, lets in-flight requests finish for at most server.shutdown_grace
 * seconds, then closes every connection and frees the server. Accepts NULL. */
void cf_server_stop(struct cf_server **pp);
/* The bound port (useful with port 0). */
unsigned cf_server_port(const struct cf_server *srv);

/* The local admin socket (admin.c): init, unseal, seal, rekey, status, tenants, key
 * rotation; docs/keys.md lists its requests. Borrowed keyring and store. */
struct cf_admin;
struct cf_admin_opts {
	const char *path;
	struct cf_keyring *keys;
	struct cf_store *store;
	struct cf_auth *auth;
	unsigned rotation_days;
};
CF_MUST cf_err cf_admin_start(const struct cf_admin_opts *o, struct cf_admin **out);
/* Stops serving and removes the socket file. Accepts NULL. */
void cf_admin_stop(struct cf_admin **pp);

/* Requests, for handlers --------------------------------------------------------------- */
const char *cf_req_id(const struct cf_req *req);
const struct cf_config *cf_req_config(const struct cf_req *req);
struct cf_store *cf_req_store(const struct cf_req *req);
/* The keyring (NULL in tests that run without one). */
struct cf_keyring *cf_req_keys(const struct cf_req *req);
/* The body (CF_ROUTE_BODY routes), never NUL-terminated. */
struct cf_span cf_req_body(const struct cf_req *req);
/* Whether it is application/x-www-form-urlencoded (a CF_ROUTE_FORM route's), not JSON. */
bool cf_req_body_is_form(const struct cf_req *req);
/* A form body's pairs whose names are in known (NULL-terminated), as a JSON object of
 * strings (form.c). CF_E_DUPLICATE_KEY for a name given twice, CF_E_INVALID for a NUL,
 * an empty name or text that is not UTF-8, CF_E_TOO_LARGE over max bytes. */
CF_MUST cf_err cf_form_parse(const uint8_t *p, size_t n, const char *const *known, size_t max,
                             json_t **out);
/* One form-encoded text decoded in place ('+' a space, %XX a byte): its new length (a
 * decoded NUL makes it longer than strlen). */
size_t cf_form_unescape(char *s);
/* A path parameter by name ({tenant} -> "tenant"); empty span when absent. */
struct cf_span cf_req_param(const struct cf_req *req, const char *name);
/* A decimal query parameter (?name=123) in min..max; *out untouched when absent.
 * CF_E_INVALID, naming both bounds, for anything else. */
CF_MUST cf_err cf_req_query_u64(const struct cf_req *req, const char *name, uint64_t min,
                                uint64_t max, uint64_t *out);
/* The vault (collections and records). */
struct cf_vault *cf_req_vault(const struct cf_req *req);
/* The identity part, and the caller (NULL on a public route). */
struct cf_auth *cf_req_auth(const struct cf_req *req);
const struct cf_principal *cf_req_principal(const struct cf_req *req);
/* Who is calling and from where, for the auth part's audit entries. */
struct cf_auth_call cf_req_call(struct cf_req *req);
/* What the request's audit entry names as its resource, for a route with no {id}
 * (what a POST made). */
void cf_req_audit_resource(struct cf_req *req, const char *resource);
/* A request header's value, or NULL. */
const char *cf_req_header(const struct cf_req *req, const char *name);
/* IA8: lets the browser page at origin read this reply (CORS). */
void cf_req_allow_origin(struct cf_req *req, const char *origin);
/* The reply's ETag: a record's version ("3", RFC 9110 §8.8.3), what If-Match sends back.
 * Only a successful reply carries it. */
void cf_req_set_etag(struct cf_req *req, int64_t version);
/* A query parameter's raw value, or NULL. */
const char *cf_req_query(const struct cf_req *req, const char *name);
/* The same, percent-decoded ('+' is a space) into out: CF_E_INVALID for a bad escape, a
 * control character, or more than cap - 1 bytes. *present: whether it was given. */
CF_MUST cf_err cf_req_query_text(const struct cf_req *req, const char *name, char *out, size_t cap,
                                 bool *present);
/* Sets the session cookie on the reply (TR3: __Host-, Secure, HttpOnly,
 * SameSite=Strict, Path=/); value "" clears it. */
CF_MUST cf_err cf_req_set_cookie(struct cf_req *req, const char *value, unsigned max_age);
/* Sets a reply that is not JSON (a CSV export): the body is copied. */
CF_MUST cf_err cf_req_reply_text(struct cf_req *req, unsigned status, const char *content_type,
                                 const char *body, size_t len);
/* Sets the reply: status and a JSON body (ownership of body is taken, even on error). */
CF_MUST cf_err cf_req_reply_json(struct cf_req *req, unsigned status, json_t *body);
/* The same with the body as JSON text already (malloc'd: taken, even on error). */
CF_MUST cf_err cf_req_reply_take(struct cf_req *req, unsigned status, char *json, size_t len);

/* Makes the reply once the write is durable or has failed: result is the write's
 * outcome (its detail restored in cf_err_detail), or CF_E_SHUTTING_DOWN when the
 * connection went away meanwhile (the reply is then dropped). Called exactly once, on
 * the connection's I/O thread; it owns ctx and frees it. */
typedef cf_err (*cf_req_finish_fn)(struct cf_req *req, void *ctx, cf_err result);
/* A handler's last step: fn(tx, ctx) in a transaction on the store's writer, and the
 * reply from finish. The handler returns CF_OK right after a CF_OK from this; on an
 * error, finish is not called and ctx stays the caller's. tenant is copied. */
CF_MUST cf_err cf_req_write(struct cf_req *req, const char *tenant, cf_store_fn fn, void *ctx,
                            cf_req_finish_fn finish);
/* For a CF_ROUTE_FAST handler about to do what may block (a write it waits for): true
 * when it runs on an I/O thread, and then it must return CF_OK at once, having changed
 * nothing; the server runs the request again on the work pool. False elsewhere. */
bool cf_req_must_move(struct cf_req *req);

#endif
