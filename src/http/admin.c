/* coffre — the local admin socket (DESIGN §5): init, unseal, seal, rekey, status, tenants
 * and key rotation, for operators on this machine only. None of it exists on the public
 * listener.
 *
 * A Unix stream socket, mode 0600 in the 0700 data folder; every connection's peer is
 * checked with SO_PEERCRED and must be coffred's own user or root (ER3: a local user
 * who could connect anyway is still refused). One request per connection: a JSON object
 * on one line; one JSON line back, {"ok": true, ...} or {"error": {"code", "message"}}.
 * Requests are read into locked memory, and jansson wipes what it frees (coffred sets
 * that up), so passphrases, shares and PINs are wiped after use. One thread serves the
 * socket, one connection at a time, each with a 30-second deadline. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit/audit.h"
#include "http/http.h"
#include "vault/vault.h"

#define ADMIN_REQ_MAX  (16u * 1024u)
#define ADMIN_DEADLINE 30 /* seconds per connection */

struct cf_admin {
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	bool started;
	char path[CF_PATH_MAX];
	struct cf_keyring *kr;
	struct cf_store *store;
	struct cf_auth *auth;
	unsigned rotation_days;
	uid_t peer; /* the connected operator's uid (one connection at a time) */
};

static json_t *error_json(cf_err e)
{
	const char *d = cf_err_detail();
	return json_pack("{s:{s:s, s:s}}", "error", "code", cf_err_name(e), "message",
	                 d && d[0] ? d : cf_err_message(e));
}

static json_t *status_json(struct cf_keyring *kr)
{
	struct cf_keys_status s;
	cf_keys_status(kr, &s);
	json_t *o = json_pack("{s:b, s:b, s:b, s:s, s:I, s:s, s:s, s:I}", "ok", 1, "initialized",
	                      s.initialized, "sealed", s.sealed, "provider",
	                      cf_rk_provider_name(s.provider), "rk_version",
	                      (json_int_t)s.rk_version, "environment", s.environment, "keystore_id",
	                      s.keystore_id, "tenants", (json_int_t)s.tenants);
	if (o && s.provider == CF_RK_SHARES)
		json_object_set_new(o, "shares",
		                    json_pack("{s:I, s:I}", "threshold",
		                              (json_int_t)s.shares_threshold, "given",
		                              (json_int_t)s.shares_given));
	return o;
}

/* The provider's secret from a request: passphrase, shares/threshold, or pin. */
static cf_err rk_secret(const json_t *req, struct cf_rk_secret *s)
{
	const char *prov = NULL, *sec = NULL;
	size_t plen = 0, slen = 0;
	CF_TRY(cf_json_get_str(req, "provider", true, 16, &prov, &plen));
	CF_ENSURE(prov, CF_E_MISSING_FIELD);
	CF_TRY(cf_rk_provider_parse(prov, &s->provider));
	if (s->provider == CF_RK_SHARES) {
		int64_t n = 0, k = 0;
		CF_TRY(cf_json_get_int(req, "shares", true, 2, 16, &n));
		CF_TRY(cf_json_get_int(req, "threshold", true, 2, 16, &k));
		CF_ENSURE(k <= n, cf_err_at(CF_E_OUT_OF_RANGE, "threshold", "range",
		                            "threshold exceeds shares"));
		s->n = (unsigned)n;
		s->k = (unsigned)k;
		return CF_OK;
	}
	CF_TRY(cf_json_get_str(req, "secret", true, 1024, &sec, &slen));
	CF_ENSURE(sec, CF_E_MISSING_FIELD);
	if (s->provider == CF_RK_FILE)
		s->passphrase = (struct cf_span){(const uint8_t *)sec, slen};
	else
		s->pin = (struct cf_span){(const uint8_t *)sec, slen};
	return CF_OK;
}

static cf_err with_shares(json_t *o, char (*sh)[CF_SHARE_TEXT_MAX], unsigned n)
{
	json_t *arr = json_array();
	CF_ENSURE(arr, CF_E_NOMEM);
	for (unsigned i = 0; i < n; i++)
		json_array_append_new(arr, json_string(sh[i]));
	return json_object_set_new(o, "shares_out", arr) == 0 ? CF_OK : CF_E_NOMEM;
}

/* After init or unseal: the data store must belong to this keystore (ER7), and any
 * deletion a crash interrupted is finished. On a mismatch the keys are sealed again. */
static cf_err after_unseal(struct cf_admin *a)
{
	cf_err e = cf_vault_bind_keystore(a->store, a->kr);
	if (e) {
		char keep[256];
		(void)snprintf(keep, sizeof keep, "%s", cf_err_detail());
		cf_keys_seal(a->kr);
		return cf_err_fail(e, "%s", keep);
	}
	return cf_vault_resume_deletions(a->store, a->kr);
}

/* AL2, AL4: a tenant's log (or the deployment's), searched by clear values: for a
 * tenant, coffre computes the HMACs its entries hold. */
static const char *const keys_audit[] = {"op",       "tenant",  "action",   "actor",
                                         "resource", "outcome", "since_us", "until_us",
                                         "cursor",   "limit",   NULL};

static cf_err audit_list(struct cf_admin *a, const json_t *req, json_t **reply)
{
	CF_TRY(cf_json_only_keys(req, keys_audit));
	const char *name = NULL, *action = NULL, *actor = NULL, *resource = NULL, *outcome = NULL;
	size_t n = 0;
	int64_t since = 0, until = 0, cursor = 0, limit = 50;
	CF_TRY(cf_json_get_str(req, "tenant", false, CF_TENANT_NAME_MAX + 1, &name, &n));
	CF_TRY(cf_json_get_str(req, "action", false, 63, &action, &n));
	CF_TRY(cf_json_get_str(req, "actor", false, CF_AUDIT_TEXT_MAX, &actor, &n));
	CF_TRY(cf_json_get_str(req, "resource", false, CF_AUDIT_TEXT_MAX, &resource, &n));
	CF_TRY(cf_json_get_str(req, "outcome", false, 8, &outcome, &n));
	CF_TRY(cf_json_get_int(req, "since_us", false, 0, INT64_MAX, &since));
	CF_TRY(cf_json_get_int(req, "until_us", false, 0, INT64_MAX, &until));
	CF_TRY(cf_json_get_int(req, "cursor", false, 0, INT64_MAX, &cursor));
	CF_TRY(cf_json_get_int(req, "limit", false, 1, 1000, &limit));
	struct cf_audit_filter f = {.action = action,
	                            .outcome = -1,
	                            .since_us = since,
	                            .until_us = until,
	                            .cursor = cursor,
	                            .limit = (unsigned)limit};
	if (outcome) {
		static const char *const names[] = {"ok", "denied", "failed"};
		for (int i = 0; i < 3; i++)
			if (strcmp(outcome, names[i]) == 0)
				f.outcome = i;
		CF_ENSURE(f.outcome >= 0,
		          cf_err_fail(CF_E_OUT_OF_RANGE, "outcome is ok, denied or failed"));
	}
	char id[CF_TENANT_ID_MAX + 1] = "", amac[65], rmac[65];
	f.actor = actor;
	f.resource = resource;
	if (name) {
		CF_TRY(cf_vault_tenant_id(a->store, name, id));
		f.tenant = id;
		if (actor) {
			CF_TRY(cf_audit_mac(a->kr, id, actor, amac));
			f.actor = amac;
		}
		if (resource) {
			CF_TRY(cf_audit_mac(a->kr, id, resource, rmac));
			f.resource = rmac;
		}
	}
	json_t *page = NULL;
	CF_TRY(cf_audit_list(a->store, &f, &page));
	json_object_set_new(page, "ok", json_true());
	*reply = page;
	return CF_OK;
}

static const char *const keys_init[] = {"op", "provider", "secret", "shares", "threshold", NULL};
static const char *const keys_unseal[] = {"op", "secret", "reset", NULL};
static const char *const keys_op[] = {"op", NULL};
static const char *const keys_tenant[] = {"op", "tenant", "rotation_days", "owner_email", NULL};

/* Runs one request; *reply gets the answer on CF_OK. */
static cf_err dispatch(struct cf_admin *a, const json_t *req, json_t **reply)
{
	const char *op = NULL;
	size_t oplen = 0;
	CF_TRY(cf_json_get_str(req, "op", true, 32, &op, &oplen));
	CF_ENSURE(op, CF_E_MISSING_FIELD);
	static const char *const ops[] = {"audit_list",
	                                  "status",
	                                  "init",
	                                  "rekey",
	                                  "unseal",
	                                  "seal",
	                                  "tenant_list",
	                                  "tenant_create",
	                                  "tenant_suspend",
	                                  "tenant_resume",
	                                  "tenant_delete",
	                                  "keys_rotate",
	                                  "keys_status",
	                                  "operator_create_first",
	                                  "keys_rotate_token"};
	bool known = false;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		known = known || strcmp(op, ops[i]) == 0;
	CF_ENSURE(known, cf_err_fail(CF_E_INVALID, "unknown op '%.32s'", op));
	struct cf_keyring *kr = a->kr;
	if (strcmp(op, "status") == 0) {
		CF_TRY(cf_json_only_keys(req, keys_op));
		*reply = status_json(kr);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	if (strcmp(op, "init") == 0 || strcmp(op, "rekey") == 0) {
		CF_TRY(cf_json_only_keys(req, keys_init));
		struct cf_rk_secret s = {0};
		CF_TRY(rk_secret(req, &s));
		char sh[16][CF_SHARE_TEXT_MAX];
		cf_err e = op[0] == 'i' ? cf_keys_init(kr, &s, sh) : cf_keys_rekey(kr, &s, sh);
		if (e == CF_OK && op[0] == 'i')
			e = after_unseal(a);
		if (e == CF_OK) {
			*reply = status_json(kr);
			e = *reply ? CF_OK : CF_E_NOMEM;
		}
		if (e == CF_OK && s.provider == CF_RK_SHARES)
			e = with_shares(*reply, sh, s.n);
		cf_wipe(sh, sizeof sh);
		return e;
	}
	if (strcmp(op, "unseal") == 0) {
		CF_TRY(cf_json_only_keys(req, keys_unseal));
		bool reset = false, done = false;
		CF_TRY(cf_json_get_bool(req, "reset", false, &reset));
		if (reset) {
			cf_keys_unseal_reset(kr);
		} else {
			const char *sec = NULL;
			size_t slen = 0;
			CF_TRY(cf_json_get_str(req, "secret", true, 1024, &sec, &slen));
			CF_ENSURE(sec, CF_E_MISSING_FIELD);
			CF_TRY(cf_keys_unseal(kr, (struct cf_span){(const uint8_t *)sec, slen},
			                      &done));
			if (done)
				CF_TRY(after_unseal(a));
		}
		*reply = status_json(kr);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	if (strcmp(op, "seal") == 0) {
		CF_TRY(cf_json_only_keys(req, keys_op));
		cf_keys_seal(kr);
		*reply = status_json(kr);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	if (strcmp(op, "audit_list") == 0)
		return audit_list(a, req, reply);
	if (strcmp(op, "operator_create_first") == 0) {
		/* IA11: the first operator, from this machine only; the others are added by
		 * operators over the API. The setup token is shown here, once. */
		static const char *const keys_first[] = {"op", "email", NULL};
		CF_TRY(cf_json_only_keys(req, keys_first));
		const char *email = NULL;
		size_t elen = 0;
		CF_TRY(cf_json_get_str(req, "email", true, 254, &email, &elen));
		CF_ENSURE(email, CF_E_MISSING_FIELD);
		char uid[32], link[64] = "";
		(void)snprintf(uid, sizeof uid, "uid=%u", (unsigned)a->peer);
		struct cf_auth_call call = {.source = "admin socket", .operator_id = uid};
		json_t *o = NULL;
		cf_err e = cf_auth_operator_create(a->auth, &call, email, true, &o, link);
		if (e == CF_OK) {
			*reply = json_pack("{s:b, s:o, s:s}", "ok", 1, "operator", o, "setup_token",
			                   link);
			e = *reply ? CF_OK : CF_E_NOMEM;
		}
		cf_wipe(link, sizeof link);
		return e;
	}
	if (strcmp(op, "tenant_list") == 0) {
		CF_TRY(cf_json_only_keys(req, keys_op));
		json_t *arr = NULL;
		CF_TRY(cf_vault_tenant_list(a->store, &arr));
		*reply = json_pack("{s:b, s:o}", "ok", 1, "tenants", arr);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	if (strcmp(op, "keys_rotate_token") == 0) {
		/* IA9: a new token signing key; the old one checks its tokens until they expire. */
		CF_TRY(cf_json_only_keys(req, keys_op));
		uint32_t v = 0;
		CF_TRY(cf_keys_deploy_rotate(kr, CF_DKEY_TOKEN, &v));
		json_t *jwks = NULL;
		CF_TRY(cf_auth_jwks(a->auth, &jwks));
		*reply = json_pack("{s:b, s:I, s:o}", "ok", 1, "version", (json_int_t)v, "jwks",
		                   jwks);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	/* The rest name a tenant. */
	CF_TRY(cf_json_only_keys(req, keys_tenant));
	const char *name = NULL;
	size_t nlen = 0;
	bool optional = strcmp(op, "keys_status") == 0;
	CF_TRY(cf_json_get_str(req, "tenant", !optional, CF_TENANT_NAME_MAX + 1, &name, &nlen));
	if (strcmp(op, "tenant_create") == 0) {
		int64_t days = 0;
		CF_TRY(cf_json_get_int(req, "rotation_days", false, 1, 3650, &days));
		const char *owner = NULL;
		CF_TRY(cf_json_get_str(req, "owner_email", true, 254, &owner, &nlen));
		CF_ENSURE(owner, CF_E_MISSING_FIELD);
		char uid[32];
		(void)snprintf(uid, sizeof uid, "uid=%u", (unsigned)a->peer);
		struct cf_auth_call call = {.source = "admin socket", .operator_id = uid};
		json_t *t = NULL;
		CF_TRY(cf_vault_tenant_create(a->store, kr, a->auth, &call, name,
		                              days ? (unsigned)days : a->rotation_days, owner, &t));
		*reply = json_pack("{s:b, s:o}", "ok", 1, "tenant", t);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	if (strcmp(op, "tenant_suspend") == 0 || strcmp(op, "tenant_resume") == 0) {
		CF_TRY(cf_vault_tenant_suspend(a->store, kr, name, op[7] == 's'));
		*reply = json_pack("{s:b, s:s, s:s}", "ok", 1, "tenant", name, "state",
		                   op[7] == 's' ? "suspended" : "active");
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	if (strcmp(op, "tenant_delete") == 0) {
		unsigned n = 0;
		CF_TRY(cf_vault_tenant_delete(a->store, kr, name, &n));
		*reply = json_pack("{s:b, s:s, s:I}", "ok", 1, "tenant", name, "keys_destroyed",
		                   (json_int_t)n);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	char id[CF_TENANT_ID_MAX + 1] = "";
	if (name)
		CF_TRY(cf_vault_tenant_id(a->store, name, id));
	if (strcmp(op, "keys_rotate") == 0) {
		uint32_t v = 0;
		CF_TRY(cf_keys_rotate(kr, id, &v));
		*reply = json_pack("{s:b, s:s, s:I}", "ok", 1, "tenant", name, "kek_version",
		                   (json_int_t)v);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	if (strcmp(op, "keys_status") == 0) {
		json_t *arr = NULL;
		CF_TRY(cf_keys_tenants_json(kr, name ? id : NULL, &arr));
		/* Name each entry (the keystore knows ids only). */
		json_t *tenants = NULL;
		if (cf_vault_tenant_list(a->store, &tenants) == CF_OK) {
			size_t i, j;
			json_t *k, *t;
			for (i = 0; i < json_array_size(arr) && (k = json_array_get(arr, i)); i++) {
				const char *kid = json_string_value(json_object_get(k, "tenant"));
				for (j = 0; j < json_array_size(tenants) &&
				            (t = json_array_get(tenants, j));
				     j++) {
					if (kid && strcmp(kid, json_string_value(json_object_get(
					                               t, "id"))) == 0)
						json_object_set(k, "name",
						                json_object_get(t, "name"));
				}
			}
			json_decref(tenants);
		}
		*reply = json_pack("{s:b, s:o}", "ok", 1, "tenants", arr);
		return *reply ? CF_OK : CF_E_NOMEM;
	}
	return CF_E_INTERNAL;
}

/* AL1, AL5: every operator action that changes something, and every refusal, is an
 * entry of the deployment's audit log (actor: the peer's uid; privilege: operator).
 * Reads (status, tenant_list, keys_status) are not: scripts poll them. */
static const char *audited_action(const char *op)
{
	static const char *const map[][2] = {
	        {"init", "operator.init"},
	        {"unseal", "operator.unseal"},
	        {"seal", "operator.seal"},
	        {"rekey", "operator.rekey"},
	        {"tenant_create", "tenant.create"},
	        {"tenant_suspend", "tenant.suspend"},
	        {"tenant_resume", "tenant.resume"},
	        {"tenant_delete", "tenant.delete"},
	        {"keys_rotate", "keys.rotate"},
	        {"operator_create_first", "operator.create_first"},
	        {"keys_rotate_token", "keys.rotate_token"},
	};
	for (size_t i = 0; op && i < sizeof map / sizeof map[0]; i++)
		if (strcmp(op, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

static cf_err audit_op(struct cf_admin *a, uid_t uid, const char *action, const char *resource,
                       cf_err result)
{
	char actor[32];
	(void)snprintf(actor, sizeof actor, "uid=%u", (unsigned)uid);
	enum cf_outcome outcome = result == CF_OK ? CF_OUTCOME_OK
	                          : result == CF_E_FORBIDDEN || result == CF_E_UNSEAL_FAILED
	                                  ? CF_OUTCOME_DENIED
	                                  : CF_OUTCOME_FAILED;
	struct cf_audit_event ev = {
	        .actor_kind = CF_ACTOR_OPERATOR,
	        .actor = actor,
	        .action = action,
	        .resource = resource,
	        .outcome = outcome,
	        .error = result == CF_OK ? NULL : cf_err_name(result),
	        .privilege = "operator",
	};
	return cf_audit_record(a->store, NULL, &ev);
}

static void send_line(int fd, json_t *o)
{
	char *s = NULL;
	size_t n = 0;
	if (!o || cf_json_dump(o, &s, &n) != CF_OK) {
		static const char oom[] =
		        "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"no memory\"}}\n";
		(void)!write(fd, oom, sizeof oom - 1);
		return;
	}
	if (cf_send_all(fd, s, n))
		(void)cf_send_all(fd, "\n", 1);
	cf_wipe(s, n); /* replies carry shares */
	free(s);
}

static void serve(struct cf_admin *a, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	json_t *reply = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    (cred.uid != geteuid() && cred.uid != 0)) {
		cf_log(CF_LOG_WARN, NULL, "admin_refused",
		       "admin socket: refused a connection from uid %d (pid %d)", (int)cred.uid,
		       (int)cred.pid);
		if (audit_op(a, cred.uid, "admin.connect", NULL, CF_E_FORBIDDEN) != CF_OK)
			cf_log(CF_LOG_ERROR, NULL, "audit_failed", "admin refusal not audited: %s",
			       cf_err_detail());
		(void)cf_err_fail(CF_E_FORBIDDEN,
		                  "the admin socket serves coffred's user and root only");
		reply = error_json(CF_E_FORBIDDEN);
		send_line(fd, reply);
		json_decref(reply);
		return;
	}
	struct timeval tv = {.tv_sec = ADMIN_DEADLINE};
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	struct cf_secbuf *buf = NULL;
	if (cf_secbuf_new(ADMIN_REQ_MAX, &buf) != CF_OK || !buf)
		return;
	size_t got = 0;
	bool line = false;
	while (got < buf->len && !line) {
		ssize_t r = recv(fd, buf->ptr + got, buf->len - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		line = memchr(buf->ptr, '\n', got) != NULL;
	}
	json_t *req = NULL;
	cf_err e = CF_OK;
	if (!line)
		e = cf_err_fail(got == buf->len ? CF_E_TOO_LARGE : CF_E_INVALID,
		                got == buf->len ? "a request is one line of at most 16 KiB"
		                                : "the request did not end with a newline in time");
	else
		e = cf_json_parse_object(
		        buf->ptr, (size_t)((uint8_t *)memchr(buf->ptr, '\n', got) - buf->ptr),
		        ADMIN_REQ_MAX, &req);
	cf_secbuf_free(&buf);
	a->peer = cred.uid;
	if (e == CF_OK && req)
		e = dispatch(a, req, &reply);
	const char *op = req ? json_string_value(json_object_get(req, "op")) : NULL;
	const char *action = audited_action(op);
	if (action) {
		/* Fail closed as far as it can: the change is done (the keystore is another
		 * database), but the operator is told it is not in the audit log. */
		char keep[256];
		(void)snprintf(keep, sizeof keep, "%s", e ? cf_err_detail() : "");
		const char *tenant = json_string_value(json_object_get(req, "tenant"));
		if (audit_op(a, cred.uid, action, tenant, e) != CF_OK) {
			cf_log(CF_LOG_ERROR, NULL, "audit_failed", "%s not audited: %s", action,
			       cf_err_detail());
			if (e == CF_OK)
				e = cf_err_fail(
				        CF_E_STORE_UNAVAILABLE,
				        "%s was done, but the audit log could not be written: "
				        "check the store",
				        action);
		} else if (e) {
			(void)cf_err_fail(e, "%s", keep);
		}
	}
	json_t *f = json_pack("{s:s, s:i, s:s}", "op", op ? op : "?", "uid", (int)cred.uid,
	                      "result", cf_err_name(e));
	cf_log_fields(e ? CF_LOG_WARN : CF_LOG_INFO, "admin_op", f);
	json_decref(req); /* wiped as freed */
	if (e) {
		json_decref(reply);
		reply = error_json(e);
	}
	send_line(fd, reply);
	json_decref(reply);
}

static void *admin_main(void *arg)
{
	struct cf_admin *a = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = a->fd, .events = POLLIN},
		                      {.fd = a->stop_pipe[0], .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int c = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		serve(a, c);
		close(c);
	}
	return NULL;
}

cf_err cf_admin_start(const struct cf_admin_opts *o, struct cf_admin **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	CF_ENSURE(
	        strlen(o->path) < sizeof sa.sun_path,
	        cf_err_fail(CF_E_CONFIG, "server.admin_socket: the path %s is too long", o->path));
	struct cf_admin *a = calloc(1, sizeof *a);
	CF_ENSURE(a, CF_E_NOMEM);
	a->fd = -1;
	a->stop_pipe[0] = a->stop_pipe[1] = -1;
	a->kr = o->keys;
	a->store = o->store;
	a->auth = o->auth;
	a->rotation_days = o->rotation_days;
	(void)snprintf(a->path, sizeof a->path, "%s", o->path);
	memcpy(sa.sun_path, o->path, strlen(o->path) + 1);
	cf_err err = CF_OK;
	/* A socket file left by a coffred that died is replaced; anything else is not. */
	struct stat sb;
	if (lstat(o->path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			err = cf_err_fail(CF_E_CONFIG,
			                  "server.admin_socket: %s exists and is not a socket",
			                  o->path);
			goto fail;
		}
		(void)unlink(o->path);
	}
	a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CF_ENSURE_OUT(a->fd >= 0, cf_err_fail(CF_E_IO, "admin socket: %s", strerror(errno)), fail);
	mode_t old = umask(0177); /* created 0600: no window where others could connect */
	int rc = bind(a->fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	CF_ENSURE_OUT(rc == 0,
	              cf_err_fail(CF_E_IO, "admin socket %s: %s", o->path, strerror(errno)), fail);
	CF_ENSURE_OUT(chmod(o->path, 0600) == 0 && listen(a->fd, 8) == 0,
	              cf_err_fail(CF_E_IO, "admin socket %s: %s", o->path, strerror(errno)), fail);
	CF_ENSURE_OUT(pipe2(a->stop_pipe, O_CLOEXEC) == 0,
	              cf_err_fail(CF_E_IO, "admin socket: %s", strerror(errno)), fail);
	CF_ENSURE_OUT(pthread_create(&a->thread, NULL, admin_main, a) == 0,
	              cf_err_fail(CF_E_NOMEM, "cannot start the admin socket's thread"), fail);
	pthread_setname_np(a->thread, "admin");
	a->started = true;
	*out = a;
	return CF_OK;
fail:
	cf_admin_stop(&a);
	return err;
}

void cf_admin_stop(struct cf_admin **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_admin *a = *pp;
	*pp = NULL;
	if (a->started) {
		(void)!write(a->stop_pipe[1], "x", 1);
		pthread_join(a->thread, NULL);
	}
	if (a->fd >= 0) {
		close(a->fd);
		(void)unlink(a->path);
	}
	if (a->stop_pipe[0] >= 0)
		close(a->stop_pipe[0]);
	if (a->stop_pipe[1] >= 0)
		close(a->stop_pipe[1]);
	free(a);
}
