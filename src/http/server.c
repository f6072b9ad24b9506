/* coffre — the HTTPS server: libmicrohttpd over GnuTLS, with a thread pool of I/O
 * threads on epoll, suspend/resume for work that may block, and the limits and headers
 * every response carries (DESIGN §2, §8). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "http/http.h"
#include "http/tls_cb.h"

struct cf_server {
	struct cf_config cfg;
	struct cf_store *store;
	struct cf_keyring *keys;
	struct cf_auth *auth;
	struct cf_vault *vault;
	struct MHD_Daemon *mhd;
	struct cf_pool *pool;
	struct cf_ratelimit *rl;
	int listen_fd;
	unsigned port;
	atomic_uint inflight;
	atomic_uint writing; /* requests' writes with the store, not yet resumed */
	atomic_bool stopping;
};

/* Where a request stands. Every step after the first runs on the connection's I/O
 * thread, after a resume; the writes between them hold no thread (DESIGN §2). */
enum req_stage {
	REQ_NEW,      /* not run yet */
	REQ_WRITING,  /* its write (cf_req_write) is with the store */
	REQ_HANDLED,  /* the handler's reply is made; its audit entry is next */
	REQ_AUDITING, /* its audit entry is with the store */
	REQ_AUDITED,  /* ... and is durable, or failed */
};

struct cf_req {
	struct cf_server *srv;
	struct MHD_Connection *conn;
	char id[33];
	char method[16];
	struct cf_route_match match;
	struct cf_buf body;
	uint64_t start_ns;
	cf_err body_err;
	size_t dropped; /* bytes of a refused request's body, read and thrown away */
	bool deferred;
	bool queued;
	bool on_io; /* the handler runs on the connection's I/O thread (CF_ROUTE_FAST) */
	bool move;  /* ... and asked to run on the pool instead (cf_req_must_move) */
	bool form;  /* the body is a form (CF_ROUTE_FORM), not JSON */
	enum req_stage stage;
	atomic_bool ready; /* set off the I/O thread before it resumes the connection */
	/* A write the reply waits for (cf_req_write), then the request's audit entry. */
	cf_store_fn wfn;
	void *wctx;
	cf_req_finish_fn finish;
	char wtenant[CF_TENANT_ID_MAX + 1];
	cf_err wresult;
	struct cf_err_saved wwhy;
	struct cf_audit_prepared *audit;
	/* the reply */
	unsigned status;
	char *reply;
	size_t reply_len;
	unsigned retry_after;
	bool allow;
	bool close;
	char *set_cookie;  /* a Set-Cookie value for the reply */
	const char *ctype; /* the reply's Content-Type when not JSON (a literal) */
	char cors[256];    /* the origin allowed to read the reply (IA8), or "" */
	char etag[24];     /* the reply's ETag ("\"3\""), or "" */
	bool preflight;    /* a CORS preflight (OPTIONS) */
	cf_err err;        /* the error replied, for the audit entry */
	/* the caller */
	char peer[INET6_ADDRSTRLEN];
	bool authed;
	struct cf_principal who;
	char resource[CF_AUDIT_TEXT_MAX + 1]; /* what the audit entry names, when no {id} */
};

/* Headers on every response we make (DESIGN §8; TR3: HSTS for a year and more). */
static const char *const security_headers[][2] = {
        {"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
        {"Cache-Control", "no-store"},
        {"X-Content-Type-Options", "nosniff"},
        {"Content-Security-Policy",
         "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
        {"Referrer-Policy", "no-referrer"},
        {"X-Frame-Options", "DENY"},
        {"Cross-Origin-Resource-Policy", "same-origin"},
};

/* PV7, ER3: a reply's body, sent or dropped, is wiped before it is freed, since it may
 * hold a revealed personal value or a new secret (an API client's, a token). */
static void reply_free(void *body)
{
	if (!body)
		return;
	cf_wipe(body, malloc_usable_size(body));
	free(body);
}

const char *cf_req_id(const struct cf_req *req)
{
	return req->id;
}

const struct cf_config *cf_req_config(const struct cf_req *req)
{
	return &req->srv->cfg;
}

struct cf_store *cf_req_store(const struct cf_req *req)
{
	return req->srv->store;
}

struct cf_keyring *cf_req_keys(const struct cf_req *req)
{
	return req->srv->keys;
}

struct cf_vault *cf_req_vault(const struct cf_req *req)
{
	return req->srv->vault;
}

struct cf_auth *cf_req_auth(const struct cf_req *req)
{
	return req->srv->auth;
}

const struct cf_principal *cf_req_principal(const struct cf_req *req)
{
	return req->authed ? &req->who : NULL;
}

struct cf_auth_call cf_req_call(struct cf_req *req)
{
	return (struct cf_auth_call){.request_id = req->id,
	                             .source = req->peer,
	                             .who = req->authed ? &req->who : NULL,
	                             .retry_after = &req->retry_after};
}

void cf_req_audit_resource(struct cf_req *req, const char *resource)
{
	(void)snprintf(req->resource, sizeof req->resource, "%s", resource);
}

const char *cf_req_header(const struct cf_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void cf_req_allow_origin(struct cf_req *req, const char *origin)
{
	(void)snprintf(req->cors, sizeof req->cors, "%s", origin ? origin : "");
}

void cf_req_set_etag(struct cf_req *req, int64_t version)
{
	(void)snprintf(req->etag, sizeof req->etag, "\"%lld\"", (long long)version);
}

const char *cf_req_query(const struct cf_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

cf_err cf_req_query_text(const struct cf_req *req, const char *name, char *out, size_t cap,
                         bool *present)
{
	const char *raw = cf_req_query(req, name);
	*present = raw != NULL;
	out[0] = '\0';
	if (!raw)
		return CF_OK;
	size_t o = 0;
	for (const char *p = raw; *p; p++) {
		int ch = (unsigned char)*p;
		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%') {
			int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;
			CF_ENSURE(lo >= 0, cf_err_fail(CF_E_INVALID, "%s: a bad %% escape", name));
			ch = hi * 16 + lo;
			p += 2;
		}
		CF_ENSURE(ch >= 0x20 && ch != 0x7f,
		          cf_err_fail(CF_E_INVALID, "%s: control characters are refused", name));
		CF_ENSURE(o + 1 < cap, cf_err_fail(CF_E_INVALID, "%s is too long", name));
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return CF_OK;
}

cf_err cf_req_set_cookie(struct cf_req *req, const char *value, unsigned max_age)
{
	/* TR3: __Host- (so Secure, Path=/ and no Domain are enforced by browsers),
	 * HttpOnly (no script reads it), SameSite=Strict (no cross-site request sends it). */
	char buf[CF_AUTH_COOKIE_MAX + 128];
	int n = snprintf(buf, sizeof buf,
	                 "__Host-coffre_session=%s; Path=/; Secure; HttpOnly; SameSite=Strict; "
	                 "Max-Age=%u",
	                 value, max_age);
	CF_ENSURE(n > 0 && (size_t)n < sizeof buf, CF_E_INTERNAL);
	char *copy = strdup(buf);
	cf_wipe(buf, sizeof buf);
	CF_ENSURE(copy, CF_E_NOMEM);
	if (req->set_cookie) {
		cf_wipe(req->set_cookie, strlen(req->set_cookie));
		free(req->set_cookie);
	}
	req->set_cookie = copy;
	return CF_OK;
}

struct cf_span cf_req_body(const struct cf_req *req)
{
	return (struct cf_span){req->body.data, req->body.len};
}

bool cf_req_body_is_form(const struct cf_req *req)
{
	return req->form;
}

struct cf_span cf_req_param(const struct cf_req *req, const char *name)
{
	struct cf_span want = cf_span_str(name);
	for (unsigned i = 0; i < req->match.nparams; i++)
		if (cf_span_eq(req->match.names[i], want))
			return req->match.values[i];
	return (struct cf_span){NULL, 0};
}

cf_err cf_req_query_u64(const struct cf_req *req, const char *name, uint64_t min, uint64_t max,
                        uint64_t *out)
{
	const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
	if (!v)
		return CF_OK;
	uint64_t n = 0;
	size_t i = 0;
	for (; v[i] >= '0' && v[i] <= '9' && i < 20; i++) {
		if (n > (UINT64_MAX - 9) / 10)
			break;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	CF_ENSURE(i > 0 && v[i] == '\0' && n >= min && n <= max && (v[0] != '0' || i == 1),
	          cf_err_fail(CF_E_INVALID, "query parameter %s must be a number from %llu to %llu",
	                      name, (unsigned long long)min, (unsigned long long)max));
	*out = n;
	return CF_OK;
}

cf_err cf_req_reply_text(struct cf_req *req, unsigned status, const char *content_type,
                         const char *body, size_t len)
{
	char *copy = malloc(len ? len : 1);
	CF_ENSURE(copy, CF_E_NOMEM);
	memcpy(copy, body, len);
	reply_free(req->reply);
	req->reply = copy;
	req->reply_len = len;
	req->status = status;
	req->ctype = content_type;
	return CF_OK;
}

cf_err cf_req_reply_take(struct cf_req *req, unsigned status, char *json, size_t len)
{
	CF_ENSURE(json, CF_E_NOMEM);
	reply_free(req->reply);
	req->reply = json;
	req->reply_len = len;
	req->status = status;
	return CF_OK;
}

cf_err cf_req_reply_json(struct cf_req *req, unsigned status, json_t *body)
{
	char *s = NULL;
	size_t n = 0;
	cf_err err = cf_json_dump(body, &s, &n);
	json_decref(body);
	if (err)
		return err;
	reply_free(req->reply);
	req->reply = s;
	req->reply_len = n;
	req->status = status;
	return CF_OK;
}

/* An error reply: the stable code, a message, the request id. 5xx details stay in the
 * log: they may name files or internals that clients have no business seeing. */
static void reply_error(struct cf_req *req, cf_err e)
{
	const char *detail = cf_err_detail();
	unsigned status = cf_err_status(e);
	const char *message = cf_err_message(e);
	req->err = e;
	req->ctype = NULL;
	if (detail[0] && status < 500)
		message = detail;
	else if (detail[0])
		cf_log(CF_LOG_ERROR, req->id, "request_failed", "%s: %s", cf_err_name(e), detail);
	json_t *body = json_pack("{s:{s:s, s:s, s:s}}", "error", "code", cf_err_name(e), "message",
	                         message, "request_id", req->id);
	/* A value that broke a rule: which field, which rule (a client can point at it). */
	if (body && status < 500 && cf_err_path()[0]) {
		json_t *err = json_object_get(body, "error");
		json_object_set_new(err, "field", json_string(cf_err_path()));
		json_object_set_new(err, "rule", json_string(cf_err_rule()));
	}
	cf_err_detail_clear();
	if (!body || cf_req_reply_json(req, status, body) != CF_OK) {
		/* Out of memory: a fixed reply still tells the client something true. */
		static const char fixed[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":"
		                            "\"the server is short of memory; retry later\"}}";
		reply_free(req->reply);
		req->reply = strdup(fixed);
		req->reply_len = req->reply ? sizeof fixed - 1 : 0;
		req->status = 503;
	}
}

/* A connection starts: its records go out through cf_tls_push (reads stay GnuTLS's own,
 * on the socket); it ends: its state goes. Without memory for it, the connection sends
 * as libmicrohttpd does. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **ctx,
                          enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		/* libmicrohttpd 0.9.75 ends the session (gnutls_deinit) before this, or sends
		 * nothing more on it after: no push can come once t is gone. */
		free(*ctx);
		*ctx = NULL;
		return;
	}
	const union MHD_ConnectionInfo *si =
	        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	const union MHD_ConnectionInfo *fi =
	        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct cf_tls_out *t = si && fi ? calloc(1, sizeof *t) : NULL;
	if (!t)
		return;
	t->fd = fi->connect_fd;
	gnutls_session_t s = si->tls_session;
	gnutls_transport_set_ptr2(s, (gnutls_transport_ptr_t)(intptr_t)t->fd, t);
	gnutls_transport_set_vec_push_function(s, cf_tls_push);
	*ctx = t;
}

/* The reply about to be queued on conn has a body: its head's record waits for it (or,
 * when the reply could not be queued, not). */
static void tls_out_hold(struct MHD_Connection *conn, bool hold)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct cf_tls_out *t = ci ? ci->socket_context : NULL;
	if (t)
		t->more = hold;
}

/* Whether libmicrohttpd sends a reply's body: not for HEAD, 1xx, 204 or 304. */
static bool body_follows(const struct cf_req *req)
{
	return strcmp(req->method, "HEAD") != 0 && req->status >= 200 && req->status != 204 &&
	       req->status != 304;
}

static enum MHD_Result queue_reply(struct cf_req *req)
{
	struct MHD_Response *resp;
	size_t body_len = req->reply ? req->reply_len : 0;
	if (req->reply) {
		resp = MHD_create_response_from_buffer_with_free_callback(req->reply_len,
		                                                          req->reply, reply_free);
		if (resp)
			req->reply = NULL; /* libmicrohttpd frees it now, through reply_free */
	} else {
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	}
	if (!resp)
		return MHD_NO;
	bool ok = true;
	for (size_t i = 0; i < sizeof security_headers / sizeof security_headers[0]; i++)
		ok &= MHD_add_response_header(resp, security_headers[i][0],
		                              security_headers[i][1]) == MHD_YES;
	ok &= MHD_add_response_header(resp, "Content-Type",
	                              req->ctype ? req->ctype : "application/json") == MHD_YES;
	ok &= MHD_add_response_header(resp, "X-Request-Id", req->id) == MHD_YES;
	if (req->retry_after) {
		char ra[16];
		(void)snprintf(ra, sizeof ra, "%u", req->retry_after);
		ok &= MHD_add_response_header(resp, "Retry-After", ra) == MHD_YES;
	}
	if (req->allow)
		ok &= MHD_add_response_header(resp, "Allow", req->match.allow) == MHD_YES;
	if (req->close)
		ok &= MHD_add_response_header(resp, "Connection", "close") == MHD_YES;
	if (req->set_cookie)
		ok &= MHD_add_response_header(resp, "Set-Cookie", req->set_cookie) == MHD_YES;
	bool etag = req->etag[0] && req->status < 300;
	if (etag)
		ok &= MHD_add_response_header(resp, "ETag", req->etag) == MHD_YES;
	if (req->cors[0]) {
		ok &= MHD_add_response_header(resp, "Access-Control-Allow-Origin", req->cors) ==
		      MHD_YES;
		ok &= MHD_add_response_header(resp, "Vary", "Origin") == MHD_YES;
		if (etag) /* a browser client reads it for its next If-Match */
			ok &= MHD_add_response_header(resp, "Access-Control-Expose-Headers",
			                              "ETag") == MHD_YES;
	}
	if (req->preflight) {
		/* The preflight names no client: it allows the shape of the call; the real
		 * request's origin is checked against its client (gate, token grant). */
		ok &= MHD_add_response_header(resp, "Access-Control-Allow-Methods",
		                              "GET, POST, PUT, PATCH, DELETE") == MHD_YES;
		/* what a browser client sends: its token, a JSON body, a change's version and
		 * a create's retry key */
		ok &= MHD_add_response_header(resp, "Access-Control-Allow-Headers",
		                              "Authorization, Content-Type, If-Match, "
		                              "Idempotency-Key") == MHD_YES;
		ok &= MHD_add_response_header(resp, "Access-Control-Max-Age", "600") == MHD_YES;
	}
	if (req->status == 401) {
		/* RFC 6749 §5.2: a token request refused with Basic credentials is answered
		 * in the scheme it used */
		const char *az =
		        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
		bool basic = az && strncasecmp(az, "Basic ", 6) == 0 && req->match.route &&
		             (req->match.route->flags & CF_ROUTE_FORM);
		ok &= MHD_add_response_header(resp, "WWW-Authenticate",
		                              basic ? "Basic realm=\"coffre\""
		                                    : "Bearer realm=\"coffre\"") == MHD_YES;
	}
	/* marked before it is queued: whatever libmicrohttpd sends of it is sent after */
	bool hold = ok && body_len > 0 && body_follows(req);
	if (hold)
		tls_out_hold(req->conn, true);
	enum MHD_Result r = ok ? MHD_queue_response(req->conn, req->status, resp) : MHD_NO;
	if (hold && r != MHD_YES)
		tls_out_hold(req->conn, false);
	MHD_destroy_response(resp);
	req->queued = true;
	return r;
}

/* IA1, TI1, TR3: the one gate every non-public route passes, before its handler: who
 * calls (session cookie or bearer token), whether they belong to the tenant in the path
 * and hold the route's permission, and, for a write on a cookie, the CSRF token. */
static cf_err gate(struct cf_req *req)
{
	const struct cf_route *r = req->match.route;
	CF_ENSURE(req->srv->auth, cf_err_fail(CF_E_INTERNAL, "no identity part"));
	struct MHD_Connection *c = req->conn;
	struct cf_auth_creds cr = {
	        .cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "__Host-coffre_session"),
	        .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
	};
	char tenant[CF_TENANT_NAME_MAX + 2] = "";
	struct cf_span t = cf_req_param(req, "tenant");
	if (t.ptr)
		cf_span_to_str(t, tenant, sizeof tenant);
	cf_err e = cf_auth_authenticate(req->srv->auth, &cr, &req->who);
	if (e == CF_E_UNAUTHENTICATED || e == CF_E_INVALID_TOKEN)
		cf_auth_note_refusal(req->srv->auth, t.ptr ? tenant : NULL, req->peer);
	CF_TRY(e);
	req->authed = true;
	bool write = strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
	/* IA11: an operator in a tenant's path works there only under an approved
	 * break-glass grant, which then names the privilege of every entry. */
	if (req->who.kind == CF_PRINCIPAL_OPERATOR && t.ptr)
		CF_TRY(cf_auth_bg_enter(req->srv->auth, &req->who, tenant, write));
	CF_TRY(cf_auth_authorize(&req->who, t.ptr ? tenant : NULL, r->perm));
	/* IA6: the tenant requires MFA and this user has none yet: enrolling is all the
	 * session may do. */
	CF_ENSURE(!req->who.mfa_pending || (r->flags & CF_ROUTE_ENROLL),
	          cf_err_fail(CF_E_MFA_ENROLL, "this tenant requires two-factor authentication: "
	                                       "enroll with POST /v1/auth/mfa/totp first"));
	/* IA8: a call from a web page (Origin) must come from an origin the client allows;
	 * a session cookie only from coffre's own origin. */
	const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	if (origin && req->who.kind == CF_PRINCIPAL_CLIENT) {
		CF_ENSURE(
		        cf_auth_origin_allowed(req->who.origins, origin),
		        cf_err_fail(CF_E_FORBIDDEN, "this client is not allowed from this origin"));
		cf_req_allow_origin(req, origin);
	} else if (origin && req->who.via_cookie) {
		CF_ENSURE(cf_auth_same_origin(req->srv->auth, origin),
		          cf_err_fail(CF_E_FORBIDDEN, "a session is used from coffre's own origin "
		                                      "only"));
	}
	/* TR3: sensitive operations need a recent login (a step-up renews it); tokens live
	 * minutes anyway. */
	CF_ENSURE(!(r->flags & CF_ROUTE_REAUTH) || !req->who.via_cookie ||
	                  time(NULL) - req->who.auth_at <= (time_t)req->srv->cfg.reauth_window,
	          cf_err_fail(CF_E_REAUTH, "this needs a recent login: POST /v1/auth/reauth with "
	                                   "your password (and code)"));
	if (req->who.via_cookie && write) {
		const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CSRF-Token");
		size_t n = strlen(req->who.csrf);
		CF_ENSURE(h && strlen(h) == n && gnutls_memcmp(h, req->who.csrf, n) == 0,
		          cf_err_fail(CF_E_CSRF,
		                      "a write with a session cookie needs the session's "
		                      "X-CSRF-Token header"));
	}
	return CF_OK;
}

/* Resumes a connection suspended for work done off its I/O thread. Nothing of req may
 * be touched after it: the I/O thread may answer and free it at once. */
static void hand_back(struct cf_req *req)
{
	atomic_store(&req->ready, true);
	MHD_resume_connection(req->conn);
}

cf_err cf_req_write(struct cf_req *req, const char *tenant, cf_store_fn fn, void *ctx,
                    cf_req_finish_fn finish)
{
	size_t n = tenant ? strlen(tenant) : 0;
	CF_ENSURE(fn && finish && !req->finish && n < sizeof req->wtenant,
	          cf_err_fail(CF_E_INTERNAL, "one write per request, with its finish"));
	memcpy(req->wtenant, tenant ? tenant : "", n + 1);
	req->wfn = fn;
	req->wctx = ctx;
	req->finish = finish;
	return CF_OK;
}

bool cf_req_must_move(struct cf_req *req)
{
	if (req->on_io)
		req->move = true;
	return req->move;
}

/* The store's done, on its writer: keep the outcome (and its detail, which is the
 * writer thread's own), then hand the connection back. */
static void on_written(void *ctx, cf_err result)
{
	struct cf_req *req = ctx;
	struct cf_server *srv = req->srv;
	req->wresult = result;
	cf_err_save(&req->wwhy, result);
	hand_back(req);
	/* counted down only once the resume is made: cf_server_stop waits for it before it
	 * stops the daemon */
	atomic_fetch_sub(&srv->writing, 1);
}

static cf_err write_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_req *req = ctx;
	return req->wfn(tx, req->wctx);
}

static cf_err audit_fn(struct cf_tx *tx, void *ctx)
{
	struct cf_req *req = ctx;
	return cf_audit_append(tx, req->audit);
}

/* Hands a write to the store's writer with the connection suspended (suspended: it is
 * already, on the pool), so that the writer's resume can never come first. A refusal
 * (a full queue, a closed store) comes back by the same way as an outcome. */
static void hand_over(struct cf_req *req, bool suspended, cf_store_fn fn)
{
	if (!suspended)
		MHD_suspend_connection(req->conn);
	atomic_fetch_add(&req->srv->writing, 1);
	const char *tenant = req->wtenant[0] ? req->wtenant : NULL;
	/* an audit entry alone only adds a row: it may share its transaction */
	cf_err e = fn == audit_fn ? cf_store_append(req->srv->store, tenant, fn, on_written, req)
	                          : cf_store_write(req->srv->store, tenant, fn, on_written, req);
	if (e != CF_OK)
		on_written(req, e);
}

static void reply_from(struct cf_req *req, cf_err e)
{
	if (e != CF_OK)
		reply_error(req, e);
	else if (!req->status)
		reply_error(req, cf_err_fail(CF_E_INTERNAL, "handler %s gave no reply",
		                             req->match.route->name));
}

static void run_handler(struct cf_req *req)
{
	cf_err_detail_clear();
	const struct cf_route *r = req->match.route;
	cf_err e = CF_OK;
	if (!(r->flags & CF_ROUTE_PUBLIC))
		e = req->deferred || req->on_io
		            ? gate(req)
		            : cf_err_fail(CF_E_INTERNAL, "route %s must be deferred", r->name);
	if (e == CF_OK)
		e = r->handler(req);
	if (req->move)
		return;
	if (req->finish && e == CF_OK) {
		req->stage = REQ_WRITING;
		return;
	}
	if (req->finish) {
		/* a handler that failed after cf_req_write: its finish still owns ctx */
		(void)req->finish(req, req->wctx, CF_E_SHUTTING_DOWN);
		req->finish = NULL;
	}
	reply_from(req, e);
	req->stage = REQ_HANDLED;
}

/* AL1, AL5: every authenticated request leaves an entry, durable before the reply
 * (a failure to write it turns the reply into a 503: fail closed). Handlers of
 * CF_ROUTE_AUDITS routes wrote theirs with their change; refusals are written here.
 * Refusals before authentication are not one entry each (a flood would grow the log):
 * they are logged, and counted by the rate limits. false: no entry is needed. */
static bool audit_prepare(struct cf_req *req)
{
	const struct cf_route *r = req->match.route;
	if (!req->authed || ((r->flags & CF_ROUTE_AUDITS) && req->status < 400))
		return false;
	enum cf_outcome outcome = req->status < 400   ? CF_OUTCOME_OK
	                          : req->status < 500 ? CF_OUTCOME_DENIED
	                                              : CF_OUTCOME_FAILED;
	char resource[CF_AUDIT_TEXT_MAX + 1] = "";
	struct cf_span id = cf_req_param(req, "rid");
	if (!id.ptr)
		id = cf_req_param(req, "id");
	if (id.ptr)
		cf_span_to_str(id, resource, sizeof resource);
	else
		memcpy(resource, req->resource, sizeof resource);
	struct cf_auth_call call = cf_req_call(req);
	cf_err_detail_clear();
	if (!req->audit)
		req->audit = malloc(sizeof *req->audit);
	cf_err e = req->audit ? CF_OK : CF_E_NOMEM;
	if (e == CF_OK)
		e = cf_auth_audit_prepare(req->srv->auth, &call, req->who.tenant.id, r->name,
		                          resource[0] ? resource : NULL, outcome, req->err,
		                          req->audit);
	(void)snprintf(req->wtenant, sizeof req->wtenant, "%s", req->who.tenant.id);
	req->wresult = e;
	cf_err_save(&req->wwhy, e);
	return true;
}

static void audit_failed(struct cf_req *req)
{
	cf_log(CF_LOG_ERROR, req->id, "audit_failed", "%s: %s", cf_err_name(req->wresult),
	       req->wwhy.detail);
	free(req->set_cookie);
	req->set_cookie = NULL;
	reply_error(req,
	            cf_err_fail(CF_E_STORE_UNAVAILABLE, "the audit entry could not be written"));
}

/* Moves req on until it waits for the store (true: the writer resumes the connection)
 * or its reply is made (false). suspended: it runs on the pool, with the connection
 * suspended; else on the connection's I/O thread. */
static bool advance(struct cf_req *req, bool suspended)
{
	for (;;) {
		switch (req->stage) {
		case REQ_NEW: {
			/* A FAST route reads, then hands its write over: its reads (the gate's,
			 * the handler's) share one snapshot and one transaction. */
			bool scoped = (req->match.route->flags & CF_ROUTE_FAST) &&
			              cf_store_read_scope_begin(req->srv->store);
			run_handler(req);
			if (scoped)
				cf_store_read_scope_end(req->srv->store);
			if (req->move)
				return false;
			if (req->stage == REQ_WRITING) {
				hand_over(req, suspended, write_fn);
				return true;
			}
			continue;
		}
		case REQ_WRITING: { /* the write is durable, or failed: the reply */
			cf_err_detail_clear();
			if (req->wresult)
				cf_err_restore(&req->wwhy);
			cf_req_finish_fn finish = req->finish;
			req->finish = NULL;
			reply_from(req, finish(req, req->wctx, req->wresult));
			req->stage = REQ_HANDLED;
			continue;
		}
		case REQ_HANDLED:
			if (!audit_prepare(req)) {
				req->stage = REQ_AUDITED;
				return false;
			}
			req->stage = REQ_AUDITING;
			if (req->wresult == CF_OK) {
				hand_over(req, suspended, audit_fn);
				return true;
			}
			continue;
		case REQ_AUDITING:
			if (req->wresult != CF_OK)
				audit_failed(req);
			req->stage = REQ_AUDITED;
			return false;
		case REQ_AUDITED: return false;
		}
	}
}

/* Pool thread: the request's steps up to its first write, or to its reply. */
static void run_deferred(void *arg)
{
	struct cf_req *req = arg;
	if (!advance(req, true))
		hand_back(req);
}

/* Whether a route may run on the I/O thread itself: it says so (it reads and hands its
 * writes over), its reads are local (SQLite), and a bearer token names the caller (a
 * session cookie may move its idle clock, a write waited for). */
static bool runs_inline(struct cf_req *req)
{
	return (req->match.route->flags & CF_ROUTE_FAST) &&
	       cf_store_engine(req->srv->store) == CF_STORE_SQLITE &&
	       MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
}

/* A FAST handler found it must block: forget what the gate found, run it on the pool. */
static void unmove(struct cf_req *req)
{
	req->move = false;
	req->on_io = false;
	req->authed = false;
	cf_wipe(&req->who, sizeof req->who);
	req->cors[0] = '\0';
	req->etag[0] = '\0';
	req->status = 0;
	req->err = CF_OK;
	reply_free(req->reply);
	req->reply = NULL;
	req->stage = REQ_NEW;
}

/* Whether the body's Content-Type is want (application/json, or a form), in UTF-8. */
static bool content_type_is(struct MHD_Connection *conn, const char *want)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
	size_t wl = strlen(want);
	if (!ct || strncasecmp(ct, want, wl) != 0)
		return false;
	const char *p = ct + wl;
	if (*p != '\0' && *p != ';' && *p != ' ')
		return false;
	/* RFC 8259 §8.1: JSON is UTF-8. A body declared in another charset is not read as
	 * if it were (application/json; charset=latin1). Other parameters are ignored. */
	for (p = strchr(p, ';'); p; p = strchr(p + 1, ';')) {
		const char *q = p + 1;
		while (*q == ' ' || *q == '\t')
			q++;
		if (strncasecmp(q, "charset=", 8) != 0)
			continue;
		q += 8;
		bool quoted = *q == '"';
		q += quoted;
		size_t n = strncasecmp(q, "utf-8", 5) == 0  ? 5
		           : strncasecmp(q, "utf8", 4) == 0 ? 4
		                                            : 0;
		if (!n)
			return false;
		q += n + (quoted && q[n] == '"');
		while (*q == ' ' || *q == '\t')
			q++;
		if (*q != '\0' && *q != ';')
			return false;
	}
	return true;
}

/* Whether each query parameter is one the route takes (cf_route.query), once: the first
 * one it does not, or the first given twice (?version=1&version=2 would read one and
 * ignore the other), as an error may show it (cf_err_shown). */
struct query_check {
	const char *takes;
	bool unknown, twice;
	const char *seen[16]; /* where in takes each one given is */
	size_t nseen;
	char name[40];
};

static enum MHD_Result query_known(void *ctx, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	(void)kind;
	(void)value;
	struct query_check *qc = ctx;
	size_t n = strlen(key);
	const char *at = qc->takes && n && !strchr(key, ' ') ? strstr(qc->takes, key) : NULL;
	while (at && !(at > qc->takes && at[-1] == ' ' && at[n] == ' '))
		at = strstr(at + 1, key);
	for (size_t i = 0; at && i < qc->nseen; i++)
		qc->twice = qc->twice || qc->seen[i] == at;
	if (at && !qc->twice && qc->nseen < sizeof qc->seen / sizeof qc->seen[0]) {
		qc->seen[qc->nseen++] = at;
		return MHD_YES;
	}
	qc->unknown = !at;
	qc->twice = qc->twice || at; /* or more than a route takes: one is given twice */
	cf_err_shown(n ? key : "(empty)", qc->name, sizeof qc->name);
	return MHD_NO;
}

/* First sight of a request: everything that can refuse it before its body is read. */
static cf_err admit(struct cf_req *req, const char *url, const char *method)
{
	struct cf_server *srv = req->srv;
	if (atomic_load(&srv->stopping)) {
		req->close = true;
		return CF_E_SHUTTING_DOWN;
	}
	/* MD4: per-address request rate, before any other work. */
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	unsigned retry = 0;
	if (!cf_ratelimit_take(srv->rl, ci ? ci->client_addr : NULL, cf_now_mono_ns(), &retry)) {
		req->retry_after = retry;
		return CF_E_RATE_LIMITED;
	}
	const char *cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Length");
	const char *te =
	        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Transfer-Encoding");
	bool has_body = te != NULL || (cl && strcmp(cl, "0") != 0);
	if (cl) {
		/* libmicrohttpd has checked it is a number; a body over the limit is refused
		 * before a byte of it is read, whatever the route. */
		char *end = NULL;
		errno = 0;
		unsigned long long n = strtoull(cl, &end, 10);
		if (errno || !end || *end || n > srv->cfg.max_body) {
			req->close = true;
			return cf_err_fail(CF_E_TOO_LARGE, "the body is larger than %u bytes",
			                   srv->cfg.max_body);
		}
	}
	/* ER3: while sealed (or before init) no key can be reached, so the API answers
	 * 503 sealed before routing; the health routes stay up to say why. */
	if (strncmp(url, "/v1/", 4) == 0 && srv->keys && cf_keys_is_sealed(srv->keys))
		return cf_err_fail(CF_E_SEALED, "the vault is sealed; an operator must unseal it");
	/* IA8: a browser's CORS preflight for the API: answered 204 with the methods and
	 * headers the API takes; the real request is checked against its client. */
	if (strcmp(method, "OPTIONS") == 0 && strncmp(url, "/v1/", 4) == 0 &&
	    MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Origin") &&
	    MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
	                                "Access-Control-Request-Method")) {
		req->preflight = true;
		cf_req_allow_origin(
		        req, MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Origin"));
		return has_body ? cf_err_fail(CF_E_INVALID, "a preflight takes no body") : CF_OK;
	}
	/* HEAD is GET without a body; libmicrohttpd drops the body for us. */
	const char *route_method = strcmp(method, "HEAD") == 0 ? "GET" : method;
	cf_err e = cf_router_match(cf_http_routes, cf_http_routes_count, route_method,
	                           cf_span_str(url), &req->match);
	if (e == CF_E_METHOD)
		req->allow = true;
	CF_TRY(e);
	struct query_check qc = {.takes = req->match.route->query};
	(void)MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_known, &qc);
	if (qc.twice)
		return cf_err_fail(CF_E_INVALID, "the query parameter %s is given twice", qc.name);
	if (qc.unknown) {
		const char *takes = req->match.route->query ? req->match.route->query : " ";
		return cf_err_fail(CF_E_INVALID, "this call takes no query parameter %s%s%.*s",
		                   qc.name, takes[1] ? "; it takes" : "", (int)strlen(takes) - 1,
		                   takes); /* without its last space */
	}
	if (!(req->match.route->flags & CF_ROUTE_BODY))
		return has_body ? cf_err_fail(CF_E_INVALID, "this call takes no body") : CF_OK;
	/* a form's body may be empty: a form with nothing in it, not an empty JSON text */
	req->form = (req->match.route->flags & CF_ROUTE_FORM) &&
	            content_type_is(req->conn, "application/x-www-form-urlencoded");
	if (has_body && !req->form && !content_type_is(req->conn, "application/json"))
		return cf_err_fail(CF_E_UNSUPPORTED_MEDIA,
		                   "the body must be application/json, in UTF-8");
	return CF_OK;
}

static void peer_text(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	(void)snprintf(out, cap, "-");
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in s4;
		memcpy(&s4, sa, sizeof s4);
		(void)inet_ntop(AF_INET, &s4.sin_addr, out, (socklen_t)cap);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 s6;
		memcpy(&s6, sa, sizeof s6);
		(void)inet_ntop(AF_INET6, &s6.sin6_addr, out, (socklen_t)cap);
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **ctx)
{
	(void)version;
	struct cf_server *srv = cls;
	struct cf_req *req = *ctx;

	if (!req) {
		req = calloc(1, sizeof *req);
		if (!req)
			return MHD_NO; /* closes the connection: the only answer without memory */
		*ctx = req;
		atomic_fetch_add(&srv->inflight, 1);
		req->srv = srv;
		req->conn = conn;
		req->start_ns = cf_now_mono_ns();
		(void)snprintf(req->method, sizeof req->method, "%s", method);
		cf_buf_init(&req->body, srv->cfg.max_body);
		if (cf_random_hex(req->id, sizeof req->id, 16) != CF_OK)
			(void)snprintf(req->id, sizeof req->id, "unavailable");
		peer_text(conn, req->peer, sizeof req->peer);
		cf_err_detail_clear();
		cf_err e = admit(req, url, method);
		if (e == CF_E_TOO_LARGE || e == CF_E_RATE_LIMITED || e == CF_E_SHUTTING_DOWN) {
			/* Not worth reading the body: answer now, and libmicrohttpd closes the
			 * connection after the reply. */
			reply_error(req, e);
			return queue_reply(req);
		}
		if (e != CF_OK) {
			/* Answered once the (bounded) body is read, so keep-alive survives. */
			reply_error(req, e);
			req->body_err = e;
		}
		return MHD_YES;
	}

	if (*upload_data_size) {
		/* Past the limit (a chunked body has no length to refuse early), no reply can be
		 * queued mid-upload: the connection is closed. A refused request's body is
		 * dropped as it comes, but counted against the same limit. */
		if (req->body_err == CF_OK) {
			cf_err e = cf_buf_append(&req->body, upload_data, *upload_data_size);
			if (e == CF_E_TOO_LARGE)
				return MHD_NO;
			req->body_err = e;
		} else {
			req->dropped += *upload_data_size;
			if (req->dropped > req->body.max)
				return MHD_NO;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (req->queued)
		return MHD_YES;
	if (atomic_load(&req->ready)) {
		/* resumed: the pool's or the writer's step is done; the next ones are ours */
		atomic_store(&req->ready, false);
		return advance(req, false) ? MHD_YES : queue_reply(req);
	}
	if (req->deferred || req->stage != REQ_NEW)
		return MHD_YES; /* still on the pool, or with the store */
	if (req->body_err != CF_OK) {
		if (!req->status)
			reply_error(req, req->body_err);
		return queue_reply(req);
	}
	if (req->preflight) {
		req->status = 204;
		return queue_reply(req);
	}
	if (!(req->match.route->flags & CF_ROUTE_DEFER))
		return advance(req, false) ? MHD_YES : queue_reply(req);
	if (runs_inline(req)) {
		req->on_io = true;
		if (advance(req, false))
			return MHD_YES;
		if (!req->move)
			return queue_reply(req);
		unmove(req);
	}
	req->deferred = true;
	/* Suspend before submitting, so the job can never resume a connection that is not
	 * yet suspended. */
	MHD_suspend_connection(conn);
	cf_err e = cf_pool_submit(srv->pool, run_deferred, req);
	if (e != CF_OK) {
		reply_error(req, e);
		req->stage = REQ_AUDITED;
		hand_back(req);
	}
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
	(void)conn;
	struct cf_server *srv = cls;
	struct cf_req *req = *ctx;
	if (!req)
		return;
	*ctx = NULL;
	if (cf_log_enabled(CF_LOG_INFO)) {
		/* No path, peer or body: only the route's name, which holds no personal data. */
		json_t *f = json_pack("{s:s, s:s, s:s, s:i, s:I, s:b}", "request_id", req->id,
		                      "method", req->method, "route",
		                      req->match.route ? req->match.route->name : "-", "status",
		                      (int)req->status, "duration_us",
		                      (json_int_t)((cf_now_mono_ns() - req->start_ns) / 1000),
		                      "completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
		cf_log_fields(CF_LOG_INFO, "request", f);
	}
	if (req->finish && req->stage == REQ_WRITING) {
		if (!atomic_load(&req->ready)) {
			/* its write is still with the store, whose done will touch req: keep it */
			cf_log(CF_LOG_ERROR, req->id, "request_abandoned",
			       "the connection ended while its write was pending");
			return;
		}
		(void)req->finish(req, req->wctx, CF_E_SHUTTING_DOWN);
	}
	cf_buf_free(&req->body);
	reply_free(req->reply);
	free(req->audit);
	if (req->set_cookie) {
		cf_wipe(req->set_cookie, strlen(req->set_cookie));
		free(req->set_cookie);
	}
	cf_wipe(&req->who, sizeof req->who);
	free(req);
	atomic_fetch_sub(&srv->inflight, 1);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	cf_log(CF_LOG_WARN, NULL, "http", "%s", msg);
}
#pragma GCC diagnostic pop

/* libmicrohttpd would percent-decode the path before we see it; the router checks the
 * raw path instead, so an escaped '/' or NUL can never change what a path means. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static cf_err bind_listener(const char *listen_addr, int *out_fd, unsigned *out_port)
{
	char host[256];
	unsigned port;
	if (cf_config_split_listen(listen_addr, host, sizeof host, &port) != CF_OK)
		return cf_err_fail(CF_E_CONFIG, "server.listen '%s' must be HOST:PORT",
		                   listen_addr);
	char portstr[8];
	(void)snprintf(portstr, sizeof portstr, "%u", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host, portstr, &hints, &ai);
	if (rc != 0)
		return cf_err_fail(CF_E_CONFIG, "cannot listen on %s: %s", listen_addr,
		                   gai_strerror(rc));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return cf_err_fail(CF_E_IO, "cannot listen on %s: socket: %s", listen_addr,
		                   strerror(errno));
	}
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ai->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		int e = errno;
		freeaddrinfo(ai);
		close(fd);
		return cf_err_fail(CF_E_IO, "cannot listen on %s: %s%s", listen_addr, strerror(e),
		                   e == EADDRINUSE ? " (another process holds the port; stop it or "
		                                     "choose another with --listen)"
		                   : e == EACCES   ? " (ports below 1024 need privileges)"
		                   : e == EADDRNOTAVAIL ? " (no interface has this address)"
		                                        : "");
	}
	freeaddrinfo(ai);
	if (listen(fd, 511) != 0) {
		int e = errno;
		close(fd);
		return cf_err_fail(CF_E_IO, "cannot listen on %s: %s", listen_addr, strerror(e));
	}
	struct sockaddr_storage ss = {0};
	socklen_t slen = sizeof ss;
	*out_port = port;
	if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0) {
		struct sockaddr_in6 s6;
		struct sockaddr_in s4;
		memcpy(&s6, &ss, sizeof s6);
		memcpy(&s4, &ss, sizeof s4);
		*out_port = ntohs(ss.ss_family == AF_INET6 ? s6.sin6_port : s4.sin_port);
	}
	*out_fd = fd;
	return CF_OK;
}

static unsigned ncpu(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 && n < 256 ? (unsigned)n : 2;
}

cf_err cf_server_start(const struct cf_config *cfg, struct cf_store *store, struct cf_keyring *keys,
                       struct cf_auth *auth, struct cf_vault *vault, struct cf_server **out)
{
	cf_err err = CF_OK;
	gnutls_priority_t prio;
	const char *errpos = NULL;
	if (gnutls_priority_init(&prio, cf_tls_priorities, &errpos) < 0)
		return cf_err_fail(CF_E_INTERNAL,
		                   "the TLS priority string is rejected by GnuTLS at '%s'",
		                   errpos ? errpos : "?");
	gnutls_priority_deinit(prio);

	struct cf_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return CF_E_NOMEM;
	srv->cfg = *cfg;
	srv->store = store;
	srv->keys = keys;
	srv->auth = auth;
	srv->vault = vault;
	srv->listen_fd = -1;
	/* A handler waits on its pool thread for its durable write (the store's group commit):
	 * the more wait at once, the larger each group. 16 a core by default: with one a
	 * core, two requests at a time reached the writer and reads ran at half the speed. */
	unsigned workers = cfg->workers ? cfg->workers : 16 * ncpu();
	if (workers > CF_POOL_THREADS_MAX)
		workers = CF_POOL_THREADS_MAX;
	unsigned threads = cfg->threads ? cfg->threads : ncpu();
	CF_TRY_OUT(cf_pool_new("work", workers, CF_POOL_QUEUE_MAX, &srv->pool), out_free);
	CF_TRY_OUT(cf_ratelimit_new(cfg->rate_per_s, cfg->rate_burst, CF_HTTP_RATE_SLOTS, &srv->rl),
	           out_free);
	CF_TRY_OUT(bind_listener(cfg->listen, &srv->listen_fd, &srv->port), out_free);

	/* clang-format off */
	srv->mhd = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TLS | MHD_ALLOW_SUSPEND_RESUME |
			MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, srv,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, /* first, so every message comes here */
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)srv->listen_fd,
		MHD_OPTION_THREAD_POOL_SIZE, threads,
		MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->per_ip_connections,
		MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->conn_memory,
		MHD_OPTION_HTTPS_PRIORITIES, cf_tls_priorities,
		MHD_OPTION_HTTPS_CERT_CALLBACK, cf_tls_retrieve,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
		MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL,
		MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
		MHD_OPTION_END);
	/* clang-format on */
	if (!srv->mhd) {
		err = cf_err_fail(CF_E_INTERNAL, "libmicrohttpd could not start on %s",
		                  cfg->listen);
		goto out_free;
	}
	*out = srv;
	return CF_OK;
out_free:
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	cf_ratelimit_free(&srv->rl);
	cf_pool_free(&srv->pool);
	free(srv);
	return err;
}

unsigned cf_server_port(const struct cf_server *srv)
{
	return srv->port;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void cf_server_stop(struct cf_server **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_server *srv = *pp;
	*pp = NULL;
	atomic_store(&srv->stopping, true);
	/* Stop accepting; requests on open connections are answered 503 shutting_down. */
	MHD_socket lfd = MHD_quiesce_daemon(srv->mhd);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	uint64_t deadline = cf_now_mono_ns() + (uint64_t)srv->cfg.shutdown_grace * 1000000000u;
	while (atomic_load(&srv->inflight) > 0 && cf_now_mono_ns() < deadline)
		sleep_ms(20);
	unsigned left = atomic_load(&srv->inflight);
	if (left)
		cf_log(CF_LOG_WARN, NULL, "shutdown",
		       "%u requests still in flight after %u s; closing", left,
		       srv->cfg.shutdown_grace);
	/* Every queued job runs and resumes its connection before the daemon goes, and
	 * every write handed to the store comes back (the store always answers). */
	cf_pool_free(&srv->pool);
	while (atomic_load(&srv->writing) > 0)
		sleep_ms(5);
	for (unsigned i = 0; i < 50 && atomic_load(&srv->inflight) > 0; i++)
		sleep_ms(10);
	MHD_stop_daemon(srv->mhd);
	cf_ratelimit_free(&srv->rl);
	free(srv);
}
