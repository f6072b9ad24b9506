/* coffre — the PostgreSQL engine (libpq): a pool of writer threads, each with its own
 * connection and one transaction per request (PostgreSQL's WAL group commit groups
 * them), reader connections, and row-level security for tenant data.
 *
 * Safety rules enforced at open:
 *  - a network connection must use TLS with sslmode=verify-full (a local socket needn't);
 *  - the runtime role (store.url) must be neither a superuser nor BYPASSRLS, or row-level
 *    security would not apply to it; migrations run as the tables' owner (migrate_url);
 *  - every transaction sets coffre.tenant (transaction-local) before any statement, and
 *    the policies deny tenant rows when it is unset. */
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "store/internal.h"

#define STMT_CACHE      128
#define QUEUE_MAX       65536u
#define POOL_DEFAULT    4u /* best measured on 2 cores beside coffred's own work (PERFORMANCE.md) */
#define READERS_DEFAULT 4u
#define MAX_ARGS        64
#define PEND_MAX        64 /* statements in flight in one pipeline before it is drained */
/* type oids (pg_type.h) */
#define OID_BOOL  16
#define OID_BYTEA 17
#define OID_INT8  20
#define OID_INT2  21
#define OID_INT4  23

struct pstmt {
	const char *sql;
	char name[16];
};

struct pconn {
	PGconn *conn;
	struct pstmt cache[STMT_CACHE];
	unsigned nprepared;
	/* A transaction's BEGIN and tenant setting wait here to travel with its first
	 * statement in one round trip (libpq pipeline mode). */
	bool pending_begin;
	bool pending_readonly;
	/* A read's ROLLBACK was sent and its answer is still to be read: it is read when
	 * the connection is next taken (settle), so that no read waits for it. */
	bool owed;
	const char *pending_tenant;
	/* Statements sent in pipeline mode and not yet answered (cf_tx_exec_later), in
	 * order: their answers are read when something must wait (a query, the COMMIT). */
	bool piping;
	unsigned npend;
	struct pend {
		enum pend_kind { PEND_FIXED, PEND_PREPARE, PEND_STMT } kind;
		struct pstmt *slot; /* PEND_PREPARE: forgotten if the prepare fails */
	} pend[PEND_MAX];
};

struct pjob {
	cf_store_fn fn;
	cf_store_done_fn done;
	void *ctx;
	const char *tenant;
	bool append; /* cf_store_append: may share its transaction */
};

/* Most appends of one tenant in one transaction. */
#define APPEND_MAX 16u

struct pg {
	struct cf_store *st;
	char url[CF_PATH_MAX];
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	struct pjob *ring;
	unsigned head, count;
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;
	struct cf_connpool readers;
};

static cf_err pg_conn_err(PGconn *c, const char *what)
{
	char msg[200];
	(void)snprintf(msg, sizeof msg, "%s", c ? PQerrorMessage(c) : "out of memory");
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return cf_err_fail(CF_E_STORE_UNAVAILABLE, "%s: %s", what, msg);
}

static cf_err pg_result_err(PGconn *c, PGresult *r, const char *what)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (!primary)
		primary = PQerrorMessage(c);
	if (PQstatus(c) != CONNECTION_OK || (state && strncmp(state, "08", 2) == 0) ||
	    (state && strncmp(state, "57P", 3) == 0) || (state && strcmp(state, "53100") == 0))
		return cf_err_fail(CF_E_STORE_UNAVAILABLE, "%s: %s", what, primary);
	/* Unique, foreign key and check constraints: the same as SQLite's SQLITE_CONSTRAINT. */
	if (state && (strcmp(state, "23505") == 0 || strcmp(state, "23503") == 0 ||
	              strcmp(state, "23514") == 0))
		return cf_err_fail(CF_E_CONFLICT, "%s: %s", what, primary);
	return cf_err_fail(CF_E_IO, "%s: %s (%s)", what, primary, state ? state : "?");
}

static cf_err simple(struct pconn *pc, const char *sql, const char *what)
{
	PGresult *r = PQexec(pc->conn, sql);
	ExecStatusType s = PQresultStatus(r);
	cf_err err = (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
	                     ? CF_OK
	                     : pg_result_err(pc->conn, r, what);
	PQclear(r);
	return err;
}

static const char *conninfo_value(PGconn *c, const char *key, char *buf, size_t cap)
{
	PQconninfoOption *opts = PQconninfo(c);
	buf[0] = '\0';
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, key) == 0 && o->val)
			(void)snprintf(buf, cap, "%s", o->val);
	PQconninfoFree(opts);
	return buf;
}

static const char set_tenant[] = "SELECT set_config('coffre.tenant', $1, true)";

/* The statements every transaction uses, prepared once per connection (again after a
 * reset): each transaction then skips their parsing and planning. */
static cf_err prepare_fixed(struct pconn *pc)
{
	static const char *const fixed[][2] = {
	        {"cf_begin", "BEGIN"},       {"cf_begin_ro", "BEGIN READ ONLY"},
	        {"cf_tenant", set_tenant},   {"cf_commit", "COMMIT"},
	        {"cf_rollback", "ROLLBACK"},
	};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
		PGresult *r = PQprepare(pc->conn, fixed[i][0], fixed[i][1], 0, NULL);
		cf_err err = PQresultStatus(r) == PGRES_COMMAND_OK
		                     ? CF_OK
		                     : pg_result_err(pc->conn, r, "prepare");
		PQclear(r);
		CF_TRY(err);
	}
	return CF_OK;
}

/* Server notices ("relation already exists, skipping") go to the debug log, not stderr. */
static void on_notice(void *arg, const char *msg)
{
	(void)arg;
	if (cf_log_enabled(CF_LOG_DEBUG))
		cf_log(CF_LOG_DEBUG, NULL, "postgres_notice", "%.200s", msg);
}

static cf_err pconn_open(const char *url, bool runtime, struct pconn **out)
{
	struct pconn *pc = calloc(1, sizeof *pc);
	if (!pc)
		return CF_E_NOMEM;
	pc->conn = PQconnectdb(url);
	if (!pc->conn || PQstatus(pc->conn) != CONNECTION_OK) {
		cf_err e = pg_conn_err(pc->conn, "cannot connect to PostgreSQL");
		PQfinish(pc->conn);
		free(pc);
		return e;
	}
	PQsetNoticeProcessor(pc->conn, on_notice, NULL);
	cf_err err = CF_OK;
	const char *host = PQhost(pc->conn);
	char mode[32];
	bool local = host && host[0] == '/';
	if (!local &&
	    (!PQsslInUse(pc->conn) ||
	     strcmp(conninfo_value(pc->conn, "sslmode", mode, sizeof mode), "verify-full") != 0)) {
		err = cf_err_fail(CF_E_CONFIG,
		                  "a PostgreSQL URL over the network must use TLS with "
		                  "sslmode=verify-full (or connect through a local socket)");
		goto out_fail;
	}
	if (runtime) {
		PGresult *r = PQexec(pc->conn,
		                     "SELECT rolsuper OR rolbypassrls, current_user FROM pg_roles"
		                     " WHERE rolname = current_user");
		bool bypass = PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
		              strcmp(PQgetvalue(r, 0, 0), "f") != 0;
		if (bypass)
			err = cf_err_fail(
			        CF_E_CONFIG,
			        "the PostgreSQL role '%s' of store.url is a superuser or bypasses "
			        "row-level security; give coffre a role of its own "
			        "(docs/storage.md)",
			        PQntuples(r) == 1 ? PQgetvalue(r, 0, 1) : "?");
		PQclear(r);
		if (err)
			goto out_fail;
	}
	if ((err = prepare_fixed(pc)) != CF_OK)
		goto out_fail;
	*out = pc;
	return CF_OK;
out_fail:
	PQfinish(pc->conn);
	free(pc);
	return err;
}

static void pconn_close(struct pconn *pc)
{
	if (!pc)
		return;
	PQfinish(pc->conn);
	free(pc);
}

/* A broken connection is reset before its next use, so the store recovers by itself
 * when PostgreSQL comes back. */
static cf_err pconn_ready(struct pconn *pc)
{
	/* Idle, a connection has nothing to read (coffre never listens for notifications):
	 * if it has, the server ended the session (a restart sends each one an error, then
	 * closes it). The request then runs on a new connection instead of failing on the
	 * old one. */
	struct pollfd pf = {.fd = PQsocket(pc->conn), .events = POLLIN};
	bool stale = PQstatus(pc->conn) != CONNECTION_OK || pf.fd < 0;
	if (!stale && poll(&pf, 1, 0) > 0) {
		(void)PQconsumeInput(pc->conn);
		stale = true;
	}
	if (!stale)
		return CF_OK;
	PQreset(pc->conn);
	pc->nprepared = 0;
	memset(pc->cache, 0, sizeof pc->cache);
	if (PQstatus(pc->conn) != CONNECTION_OK)
		return pg_conn_err(pc->conn, "PostgreSQL is unreachable");
	return prepare_fixed(pc);
}

/* The cached statement name for sql, or NULL when it is not prepared yet (*slot then
 * says where to record it once it is), or NULL with *slot NULL when the cache is full. */
static const char *stmt_name(struct pconn *pc, const char *sql, struct pstmt **slot)
{
	size_t h = ((uintptr_t)sql >> 3) % STMT_CACHE;
	*slot = NULL;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		struct pstmt *s = &pc->cache[(h + i) % STMT_CACHE];
		if (s->sql == sql)
			return s->name;
		if (!s->sql) {
			*slot = s;
			(void)snprintf(s->name, sizeof s->name, "s%u", pc->nprepared);
			return NULL;
		}
	}
	return NULL;
}

/* BEGIN, the tenant setting, [PREPARE] and the statement, sent together; the statement's
 * result comes back in *out. */
static cf_err exec_pipelined(struct pconn *pc, const char *sql, int nargs,
                             const char *const *values, const int *lengths, const int *formats,
                             PGresult **out)
{
	PGconn *c = pc->conn;
	struct pstmt *slot = NULL;
	const char *name = stmt_name(pc, sql, &slot);
	const char *tenant = pc->pending_tenant ? pc->pending_tenant : "";
	pc->pending_begin = false;
	if (!PQenterPipelineMode(c))
		return pg_conn_err(c, "pipeline");
	bool sent = PQsendQueryPrepared(c, pc->pending_readonly ? "cf_begin_ro" : "cf_begin", 0,
	                                NULL, NULL, NULL, 0) &&
	            PQsendQueryPrepared(c, "cf_tenant", 1, &tenant, NULL, NULL, 1);
	bool preparing = !name && slot;
	if (sent && preparing)
		sent = PQsendPrepare(c, slot->name, sql, 0, NULL);
	if (sent)
		sent = (name || preparing) ? PQsendQueryPrepared(c, name ? name : slot->name, nargs,
		                                                 values, lengths, formats, 1)
		                           : PQsendQueryParams(c, sql, nargs, NULL, values, lengths,
		                                               formats, 1);
	if (sent)
		sent = PQpipelineSync(c);
	cf_err err = sent ? CF_OK : pg_conn_err(c, "pipeline");
	/* Results in order; each query's is followed by NULL; then the sync. */
	int queries = 3 + (preparing ? 1 : 0);
	PGresult *stmt_result = NULL;
	for (int q = 0; sent && q < queries; q++) {
		PGresult *r;
		while ((r = PQgetResult(c)) != NULL) {
			ExecStatusType st = PQresultStatus(r);
			bool last = q == queries - 1;
			if (st == PGRES_PIPELINE_SYNC) {
				PQclear(r);
				continue;
			}
			if (last && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) {
				stmt_result = r;
				continue;
			}
			if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && err == CF_OK)
				err = st == PGRES_PIPELINE_ABORTED
				              ? CF_E_IO
				              : pg_result_err(c, r, "statement");
			else if (preparing && q == 2 && st == PGRES_COMMAND_OK) {
				slot->sql = sql;
				pc->nprepared++;
			}
			PQclear(r);
		}
	}
	/* the sync's own result */
	if (sent) {
		PGresult *r;
		while ((r = PQgetResult(c)) != NULL)
			PQclear(r);
	}
	PQexitPipelineMode(c);
	if (err) {
		PQclear(stmt_result);
		return err;
	}
	*out = stmt_result;
	return stmt_result ? CF_OK : cf_err_fail(CF_E_IO, "the statement gave no result");
}

/* Reads the answers of everything sent so far and leaves pipeline mode; the first
 * failure is the result (the transaction is then aborted: its owner rolls it back). */
static cf_err drain(struct pconn *pc)
{
	if (!pc->piping)
		return CF_OK;
	PGconn *c = pc->conn;
	cf_err err = PQpipelineSync(c) ? CF_OK : pg_conn_err(c, "pipeline");
	for (unsigned i = 0; err == CF_OK && i < pc->npend; i++) {
		PGresult *r;
		while ((r = PQgetResult(c)) != NULL) {
			ExecStatusType st = PQresultStatus(r);
			bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
			if (!ok && pc->pend[i].kind == PEND_PREPARE && pc->pend[i].slot)
				pc->pend[i].slot->sql = NULL; /* not prepared after all */
			if (!ok && err == CF_OK)
				err = st == PGRES_PIPELINE_ABORTED
				              ? CF_E_IO
				              : pg_result_err(c, r, "statement");
			PQclear(r);
		}
	}
	/* The rest, up to the sync's own answer. After a failure each statement still
	 * sent answers PGRES_PIPELINE_ABORTED, then NULL: reading on to the sync leaves
	 * the connection clean (a stop at the first NULL left answers unread, pipeline mode
	 * on, the ROLLBACK refused and the next transaction broken). A connection gone
	 * answers only NULL: as many as there are statements, then we stop. */
	for (unsigned nulls = 0; nulls <= pc->npend + 1;) {
		PGresult *r = PQgetResult(c);
		if (!r) {
			nulls++;
			continue;
		}
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st == PGRES_PIPELINE_SYNC)
			break;
	}
	PQexitPipelineMode(c);
	pc->piping = false;
	pc->npend = 0;
	return err;
}

static cf_err pend_push(struct pconn *pc, enum pend_kind kind, struct pstmt *slot)
{
	CF_ENSURE(pc->npend < PEND_MAX, CF_E_INTERNAL);
	pc->pend[pc->npend++] = (struct pend){.kind = kind, .slot = slot};
	return CF_OK;
}

/* Sends a statement without waiting for its answer (in a write transaction). */
static cf_err exec_later(struct pconn *pc, const char *sql, int nargs, const char *const *values,
                         const int *lengths, const int *formats)
{
	PGconn *c = pc->conn;
	if (pc->piping && pc->npend + 2 > PEND_MAX)
		CF_TRY(drain(pc));
	if (!pc->piping) {
		if (!PQenterPipelineMode(c))
			return pg_conn_err(c, "pipeline");
		pc->piping = true;
	}
	if (pc->pending_begin) {
		const char *tenant = pc->pending_tenant ? pc->pending_tenant : "";
		pc->pending_begin = false;
		CF_ENSURE(PQsendQueryPrepared(c, pc->pending_readonly ? "cf_begin_ro" : "cf_begin",
		                              0, NULL, NULL, NULL, 0) &&
		                  PQsendQueryPrepared(c, "cf_tenant", 1, &tenant, NULL, NULL, 1),
		          pg_conn_err(c, "pipeline"));
		CF_TRY(pend_push(pc, PEND_FIXED, NULL));
		CF_TRY(pend_push(pc, PEND_FIXED, NULL));
	}
	struct pstmt *slot = NULL;
	const char *name = stmt_name(pc, sql, &slot);
	if (!name && slot) {
		/* prepared in the same pipeline; counted as prepared at once, so that a second
		 * use before the answer does not prepare it again (drain forgets it if it
		 * fails) */
		CF_ENSURE(PQsendPrepare(c, slot->name, sql, 0, NULL), pg_conn_err(c, "pipeline"));
		CF_TRY(pend_push(pc, PEND_PREPARE, slot));
		slot->sql = sql;
		pc->nprepared++;
		name = slot->name;
	}
	bool sent = name ? PQsendQueryPrepared(c, name, nargs, values, lengths, formats, 1)
	                 : PQsendQueryParams(c, sql, nargs, NULL, values, lengths, formats, 1);
	CF_ENSURE(sent, pg_conn_err(c, "pipeline"));
	return pend_push(pc, PEND_STMT, NULL);
}

static cf_err exec_stmt(struct pconn *pc, const char *sql, int nargs, const char *const *values,
                        const int *lengths, const int *formats, PGresult **out)
{
	if (pc->piping) /* answers first, in order: what was sent may have failed */
		CF_TRY(drain(pc));
	if (pc->pending_begin)
		return exec_pipelined(pc, sql, nargs, values, lengths, formats, out);
	struct pstmt *slot = NULL;
	const char *name = stmt_name(pc, sql, &slot);
	if (!name && slot) {
		PGresult *r = PQprepare(pc->conn, slot->name, sql, 0, NULL);
		cf_err err = PQresultStatus(r) == PGRES_COMMAND_OK
		                     ? CF_OK
		                     : pg_result_err(pc->conn, r, "prepare");
		PQclear(r);
		CF_TRY(err);
		slot->sql = sql;
		pc->nprepared++;
		name = slot->name;
	}
	*out = name ? PQexecPrepared(pc->conn, name, nargs, values, lengths, formats, 1)
	            : PQexecParams(pc->conn, sql, nargs, NULL, values, lengths, formats, 1);
	ExecStatusType st = PQresultStatus(*out);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		cf_err err = pg_result_err(pc->conn, *out, "statement");
		PQclear(*out);
		*out = NULL;
		return err;
	}
	return CF_OK;
}

static cf_err run(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                  cf_row_fn fn, void *ctx, int64_t *changes, bool later)
{
	struct pconn *pc = tx->conn;
	if (nargs > MAX_ARGS)
		return cf_err_fail(CF_E_INTERNAL, "too many parameters");
	const char *values[MAX_ARGS];
	int lengths[MAX_ARGS], formats[MAX_ARGS];
	char ints[MAX_ARGS][24];
	char *texts[MAX_ARGS] = {0};
	cf_err err = CF_OK;
	for (size_t i = 0; i < nargs; i++) {
		lengths[i] = 0;
		formats[i] = 0;
		switch (args[i].type) {
		case CF_VAL_NULL: values[i] = NULL; break;
		case CF_VAL_INT:
			(void)snprintf(ints[i], sizeof ints[i], "%lld", (long long)args[i].i);
			values[i] = ints[i];
			break;
		case CF_VAL_TEXT:
			/* text parameters travel NUL-terminated */
			texts[i] = malloc(args[i].n + 1);
			if (!texts[i]) {
				err = CF_E_NOMEM;
				goto out;
			}
			memcpy(texts[i], args[i].p, args[i].n);
			texts[i][args[i].n] = '\0';
			values[i] = texts[i];
			break;
		case CF_VAL_BLOB:
			values[i] = args[i].p ? args[i].p : "";
			lengths[i] = (int)args[i].n;
			formats[i] = 1;
			break;
		}
	}
	if (later) {
		err = exec_later(pc, sql, (int)nargs, values, lengths, formats);
		goto out;
	}
	PGresult *r = NULL;
	CF_TRY_OUT(exec_stmt(pc, sql, (int)nargs, values, lengths, formats, &r), out);
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		struct cf_row row = {
		        .engine = CF_STORE_POSTGRES, .impl = r, .ncols = (unsigned)PQnfields(r)};
		int n = PQntuples(r);
		for (int i = 0; i < n && err == CF_OK && fn; i++) {
			row.index = i;
			err = fn(&row, ctx);
		}
	}
	if (err == CF_OK && changes) {
		const char *t = PQcmdTuples(r);
		*changes = t && *t ? strtoll(t, NULL, 10) : 0;
	}
	PQclear(r);
out:
	for (size_t i = 0; i < nargs; i++)
		free(texts[i]);
	return err;
}

static cf_err pg_exec(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                      int64_t *changes)
{
	return run(tx, sql, args, nargs, NULL, NULL, changes, false);
}

static cf_err pg_exec_later(struct cf_tx *tx, const char *sql, const struct cf_val *args,
                            size_t nargs)
{
	return run(tx, sql, args, nargs, NULL, NULL, NULL, true);
}

static cf_err pg_query(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                       cf_row_fn fn, void *ctx)
{
	return run(tx, sql, args, nargs, fn, ctx, NULL, false);
}

bool cf_postgres_row_is_null(const struct cf_row *row, unsigned col)
{
	return PQgetisnull(row->impl, row->index, (int)col) != 0;
}

int64_t cf_postgres_row_int(const struct cf_row *row, unsigned col)
{
	const uint8_t *p = (const uint8_t *)PQgetvalue(row->impl, row->index, (int)col);
	int len = PQgetlength(row->impl, row->index, (int)col);
	uint64_t v = 0;
	for (int i = 0; i < len && i < 8; i++)
		v = (v << 8) | p[i];
	switch (len) { /* binary results are big-endian and sign-extended from their width */
	case 1: return (int64_t)(int8_t)v;
	case 2: return (int64_t)(int16_t)v;
	case 4: return (int64_t)(int32_t)v;
	case 8: return (int64_t)v;
	default: return 0;
	}
}

struct cf_span cf_postgres_row_blob(const struct cf_row *row, unsigned col)
{
	const char *p = PQgetvalue(row->impl, row->index, (int)col);
	int len = PQgetlength(row->impl, row->index, (int)col);
	return (struct cf_span){(const uint8_t *)p, len > 0 ? (size_t)len : 0};
}

/* Transactions --------------------------------------------------------------------------- */

/* Starts a transaction. Nothing is sent yet: BEGIN and the tenant setting travel with
 * the first statement. */
static cf_err begin(struct cf_store *st, struct pconn *pc, const char *tenant, bool readonly,
                    struct cf_tx *tx)
{
	CF_TRY(pconn_ready(pc));
	pc->pending_begin = true;
	pc->pending_readonly = readonly;
	pc->pending_tenant = tenant;
	*tx = (struct cf_tx){.st = st, .tenant = tenant, .conn = pc};
	return CF_OK;
}

/* Ends a transaction: COMMIT (or ROLLBACK) if it was ever started. */
static cf_err finish(struct pconn *pc, bool commit)
{
	if (pc->pending_begin) {
		pc->pending_begin = false; /* nothing was sent: nothing to end */
		return CF_OK;
	}
	if (pc->piping) {
		/* COMMIT goes with the statements sent without waiting: one round trip for
		 * the lot. After a failure PostgreSQL skips the rest: roll back. */
		cf_err err =
		        commit ? (PQsendQueryPrepared(pc->conn, "cf_commit", 0, NULL, NULL, NULL, 0)
		                          ? pend_push(pc, PEND_FIXED, NULL)
		                          : pg_conn_err(pc->conn, "pipeline"))
		               : CF_OK;
		cf_err d = drain(pc);
		if (err == CF_OK)
			err = d;
		if (err == CF_OK && commit)
			return CF_OK;
		struct cf_err_saved keep; /* whatever the failure set, over the rollback */
		cf_err_save(&keep, CF_E_INTERNAL);
		PGresult *r = PQexecPrepared(pc->conn, "cf_rollback", 0, NULL, NULL, NULL, 0);
		PQclear(r);
		cf_err_restore(&keep);
		return commit ? err : CF_OK;
	}
	PGresult *r = PQexecPrepared(pc->conn, commit ? "cf_commit" : "cf_rollback", 0, NULL, NULL,
	                             NULL, 0);
	cf_err err = PQresultStatus(r) == PGRES_COMMAND_OK
	                     ? CF_OK
	                     : pg_result_err(pc->conn, r, commit ? "commit" : "rollback");
	PQclear(r);
	return err;
}

/* Jobs of one tenant in one transaction: a job alone, or appends together (one BEGIN,
 * tenant setting and COMMIT for them all: what a transaction costs PostgreSQL is most
 * of what an audit entry costs). The first failure ends it, and nothing of it stands. */
static cf_err run_tx(struct pg *p, struct pconn **pcp, const struct pjob *jobs, unsigned n)
{
	cf_err_detail_clear();
	cf_err err = *pcp ? CF_OK : pconn_open(p->url, true, pcp);
	struct cf_tx tx;
	if (err == CF_OK)
		err = *pcp ? begin(p->st, *pcp, jobs[0].tenant, false, &tx) : CF_E_INTERNAL;
	if (err != CF_OK)
		return err;
	for (unsigned i = 0; i < n && err == CF_OK; i++)
		err = jobs[i].fn(&tx, jobs[i].ctx);
	if (err == CF_OK)
		return finish(*pcp, true);
	struct cf_err_saved keep;
	cf_err_save(&keep, err);
	(void)finish(*pcp, false);
	cf_err_restore(&keep);
	return err;
}

static bool tenants_equal(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void *writer_main(void *arg)
{
	struct pg *p = arg;
	struct pconn *pc = NULL;
	struct pjob jobs[APPEND_MAX];
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->count == 0 && !p->stopping)
			pthread_cond_wait(&p->nonempty, &p->lock);
		if (p->count == 0 && p->stopping)
			break;
		/* an append takes the appends of its tenant queued right behind it */
		unsigned n = 0;
		do {
			jobs[n++] = p->ring[p->head];
			p->head = (p->head + 1) % QUEUE_MAX;
			p->count--;
		} while (jobs[0].append && n < APPEND_MAX && p->count > 0 &&
		         p->ring[p->head].append &&
		         tenants_equal(p->ring[p->head].tenant, jobs[0].tenant));
		pthread_mutex_unlock(&p->lock);
		if (n > 1 && run_tx(p, &pc, jobs, n) == CF_OK) {
			for (unsigned i = 0; i < n; i++)
				jobs[i].done(jobs[i].ctx, CF_OK);
		} else {
			/* alone, or again one by one: each its own outcome */
			for (unsigned i = 0; i < n; i++)
				jobs[i].done(jobs[i].ctx, run_tx(p, &pc, &jobs[i], 1));
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	pconn_close(pc);
	return NULL;
}

static cf_err enqueue(struct cf_store *st, const struct pjob *j)
{
	struct pg *p = st->impl;
	cf_err err = CF_OK;
	pthread_mutex_lock(&p->lock);
	if (p->stopping)
		err = cf_err_fail(CF_E_STORE_UNAVAILABLE, "the store is closing");
	else if (p->count == QUEUE_MAX)
		err = CF_E_BUSY;
	else {
		p->ring[(p->head + p->count) % QUEUE_MAX] = *j;
		p->count++;
		pthread_cond_signal(&p->nonempty);
	}
	pthread_mutex_unlock(&p->lock);
	return err;
}

static cf_err pg_write(struct cf_store *st, const char *tenant, cf_store_fn fn,
                       cf_store_done_fn done, void *ctx)
{
	return enqueue(st, &(struct pjob){.fn = fn, .done = done, .ctx = ctx, .tenant = tenant});
}

static cf_err pg_append(struct cf_store *st, const char *tenant, cf_store_fn fn,
                        cf_store_done_fn done, void *ctx)
{
	return enqueue(
	        st, &(struct pjob){
	                    .fn = fn, .done = done, .ctx = ctx, .tenant = tenant, .append = true});
}

static cf_err reader_open(void *ctx, void **out)
{
	struct pg *o = ctx;
	struct pconn *c = NULL;
	CF_TRY(pconn_open(o->url, true, &c));
	*out = c;
	return CF_OK;
}

static void reader_close(void *conn)
{
	pconn_close(conn);
}

/* Reads the answer of a read's ROLLBACK sent earlier (end_read). A failure there ended
 * nothing that mattered: a broken connection is reset by pconn_ready. */
static void settle(struct pconn *pc)
{
	if (!pc || !pc->owed)
		return;
	PGresult *r;
	while ((r = PQgetResult(pc->conn)) != NULL)
		PQclear(r);
	pc->owed = false;
}

static cf_err reader_take(struct pg *o, struct pconn **out)
{
	void *v = NULL;
	CF_TRY(cf_connpool_take(&o->readers, &v));
	*out = v;
	settle(*out);
	return CF_OK;
}

/* Ends a read-only transaction without waiting: its ROLLBACK travels now and its answer
 * is read at the connection's next use (a read's result never depends on it). One round
 * trip fewer for every read. */
static void end_read(struct pconn *pc)
{
	if (pc->pending_begin || pc->piping ||
	    !PQsendQueryPrepared(pc->conn, "cf_rollback", 0, NULL, NULL, NULL, 0)) {
		(void)finish(pc, false);
		return;
	}
	pc->owed = true;
}

static void reader_give(struct pg *o, struct pconn *c)
{
	cf_connpool_give(&o->readers, c);
}

/* This thread's read scope: one read-only transaction for the reads of one tenant. */
static _Thread_local struct {
	struct pg *p;
	struct pconn *pc; /* taken at the scope's first read */
	bool has_tenant;
	char tenant[128]; /* a tenant id (keys.h: at most 64) */
	struct cf_tx tx;
} scope;

static bool same_tenant(const char *tenant)
{
	return tenant ? scope.has_tenant && strcmp(scope.tenant, tenant) == 0 : !scope.has_tenant;
}

static cf_err pg_read(struct cf_store *st, const char *tenant, cf_store_fn fn, void *ctx)
{
	struct pg *p = st->impl;
	if (scope.p == p && !scope.pc && (!tenant || strlen(tenant) < sizeof scope.tenant)) {
		CF_TRY(reader_take(p, &scope.pc));
		CF_ENSURE(scope.pc, CF_E_INTERNAL);
		scope.has_tenant = tenant != NULL;
		(void)snprintf(scope.tenant, sizeof scope.tenant, "%s", tenant ? tenant : "");
		cf_err err = begin(st, scope.pc, scope.has_tenant ? scope.tenant : NULL, true,
		                   &scope.tx);
		if (err) {
			reader_give(p, scope.pc);
			scope.pc = NULL;
			return err;
		}
	}
	if (scope.p == p && scope.pc && same_tenant(tenant))
		return fn(&scope.tx, ctx);
	struct pconn *pc = NULL;
	CF_TRY(reader_take(p, &pc));
	CF_ENSURE(pc, CF_E_INTERNAL);
	struct cf_tx tx;
	cf_err err = begin(st, pc, tenant, true, &tx);
	if (err == CF_OK) {
		err = fn(&tx, ctx);
		end_read(pc);
	}
	reader_give(p, pc);
	return err;
}

static bool pg_scope_begin(struct cf_store *st)
{
	if (scope.p)
		return false;
	scope.p = st->impl;
	scope.pc = NULL;
	return true;
}

static void pg_scope_end(struct cf_store *st)
{
	struct pg *p = st->impl;
	if (scope.p != p)
		return;
	if (scope.pc) {
		end_read(scope.pc);
		reader_give(p, scope.pc);
	}
	scope.p = NULL;
	scope.pc = NULL;
}

/* Migrations, as the tables' owner, one node at a time (advisory lock). */
static cf_err migrate(struct cf_store *st, const struct cf_store_opts *opts)
{
	struct pconn *pc = NULL;
	CF_TRY(pconn_open(opts->migrate_url ? opts->migrate_url : opts->url, false, &pc));
	CF_ENSURE(pc, CF_E_INTERNAL);
	/* Create the version table only when it is missing and we may migrate: the runtime
	 * role (coffre store check, coffred without migrate_url) may not create anything,
	 * and reads the version through the SELECT the owner grants it. */
	cf_err err = CF_OK;
	PGresult *e = PQexec(pc->conn, "SELECT to_regclass('schema_migrations') IS NOT NULL");
	bool exists = PQresultStatus(e) == PGRES_TUPLES_OK && strcmp(PQgetvalue(e, 0, 0), "t") == 0;
	PQclear(e);
	if (!exists && opts->migrate)
		err = simple(pc,
		             "CREATE TABLE schema_migrations ("
		             " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
		             " applied_at BIGINT NOT NULL);"
		             "GRANT SELECT ON schema_migrations TO coffre_runtime",
		             "schema_migrations");
	struct cf_tx tx = {.st = st, .conn = pc};
	int want = (int)opts->nmigrations;
	int64_t have = 0;
	if (err == CF_OK)
		err = simple(pc, "BEGIN", "begin");
	if (err == CF_OK && opts->migrate)
		err = simple(pc, "SELECT pg_advisory_xact_lock(7303858)", "migration lock");
	if (err == CF_OK && (exists || opts->migrate)) {
		PGresult *r =
		        PQexec(pc->conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			have = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		else
			err = pg_result_err(pc->conn, r, "schema version");
		PQclear(r);
	}
	if (!err && have > want)
		err = cf_err_fail(
		        CF_E_STORE_SCHEMA,
		        "the database is at schema version %lld, newer than this coffre knows "
		        "(%d): upgrade coffre",
		        (long long)have, want);
	else if (!err && have < want && !opts->migrate)
		err = cf_err_fail(
		        CF_E_STORE_SCHEMA,
		        "the database is at schema version %lld and needs %d: run `coffre "
		        "store migrate`",
		        (long long)have, want);
	for (int v = (int)have + 1; !err && v <= want; v++) {
		const struct cf_migration *m = &opts->migrations[v - 1];
		err = simple(pc, "SAVEPOINT m", "savepoint");
		if (!err)
			err = simple(pc, m->postgres, m->name);
		if (!err) {
			static const char ins[] =
			        "INSERT INTO schema_migrations(version, name, applied_at)"
			        " VALUES ($1, $2, extract(epoch from now())::bigint)";
			struct cf_val args[] = {CF_V_INT(v), CF_V_TEXT(m->name)};
			err = run(&tx, ins, args, 2, NULL, NULL, NULL, false);
		}
		if (err) {
			char why[CF_ERR_DETAIL_MAX];
			(void)snprintf(why, sizeof why, "%s", cf_err_detail());
			err = cf_err_fail(CF_E_STORE_MIGRATION,
			                  "migration %d (%s) failed and was rolled back: %s", v,
			                  m->name, why);
		} else {
			cf_log(CF_LOG_INFO, NULL, "store_migrated", "applied migration %d (%s)", v,
			       m->name);
		}
	}
	/* All migrations of this start commit together, or none does. */
	if (!err)
		err = simple(pc, "COMMIT", "commit");
	else
		(void)simple(pc, "ROLLBACK", "rollback");
	pconn_close(pc);
	if (!err)
		st->schema_version = want;
	return err;
}

static cf_err pg_check(struct cf_store *st, struct cf_store_check *out)
{
	struct pg *p = st->impl;
	struct pconn *pc = NULL;
	CF_TRY(reader_take(p, &pc));
	CF_ENSURE(pc, CF_E_INTERNAL);
	PGresult *r = PQexec(pc->conn,
	                     "SELECT current_setting('server_version'), current_setting('fsync'),"
	                     " current_setting('synchronous_commit'),"
	                     " current_setting('full_page_writes'),"
	                     " current_setting('data_checksums'), current_user");
	cf_err err = CF_OK;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		const char *host = PQhost(pc->conn);
		bool local = host && host[0] == '/';
		(void)snprintf(out->settings, sizeof out->settings,
		               "engine=postgresql %s, fsync=%s, synchronous_commit=%s, "
		               "full_page_writes=%s, data_checksums=%s, role=%s, transport=%s",
		               PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
		               PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5),
		               local                  ? "local socket"
		               : PQsslInUse(pc->conn) ? "TLS"
		                                      : "plain");
		out->settings_ok = strcmp(PQgetvalue(r, 0, 1), "on") == 0 &&
		                   strcmp(PQgetvalue(r, 0, 2), "on") == 0 &&
		                   strcmp(PQgetvalue(r, 0, 3), "on") == 0;
		(void)snprintf(out->integrity, sizeof out->integrity, "ok");
		out->integrity_ok = true;
	} else {
		err = pg_result_err(pc->conn, r, "check");
	}
	PQclear(r);
	reader_give(p, pc);
	return err;
}

static void pg_close(struct cf_store *st)
{
	struct pg *p = st->impl;
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->nonempty);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	cf_connpool_destroy(&p->readers);
	pthread_cond_destroy(&p->nonempty);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p->ring);
	free(p);
	st->impl = NULL;
}

static const struct cf_store_ops pg_ops = {
        .write = pg_write,
        .append = pg_append,
        .read = pg_read,
        .exec = pg_exec,
        .exec_later = pg_exec_later,
        .query = pg_query,
        .check = pg_check,
        .scope_begin = pg_scope_begin,
        .scope_end = pg_scope_end,
        .close = pg_close,
};

cf_err cf_postgres_open(const struct cf_store_opts *opts, struct cf_store *st)
{
	cf_err err = CF_OK;
	struct pg *p = calloc(1, sizeof *p);
	if (!p)
		return CF_E_NOMEM;
	st->ops = &pg_ops;
	st->impl = p;
	p->st = st;
	if (cf_connpool_init(&p->readers, opts->readers ? opts->readers : READERS_DEFAULT,
	                     reader_open, reader_close, p) != CF_OK) {
		err = CF_E_NOMEM;
		goto out_close;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->nonempty, NULL);
	if ((size_t)snprintf(p->url, sizeof p->url, "%s", opts->url) >= sizeof p->url) {
		err = cf_err_fail(CF_E_CONFIG, "store.url too long");
		goto out_close;
	}
	p->ring = calloc(QUEUE_MAX, sizeof *p->ring);
	unsigned n = opts->pool ? opts->pool : POOL_DEFAULT;
	p->threads = calloc(n, sizeof *p->threads);
	CF_ENSURE_OUT(p->ring && p->threads, CF_E_NOMEM, out_close);
	CF_TRY_OUT(migrate(st, opts), out_close);
	/* Check the runtime role now (one reader), so a misconfiguration stops start-up. */
	struct pconn *probe = NULL;
	CF_TRY_OUT(reader_take(p, &probe), out_close);
	CF_ENSURE_OUT(probe, CF_E_INTERNAL, out_close);
	reader_give(p, probe);
	for (unsigned i = 0; i < n; i++) {
		if (pthread_create(&p->threads[i], NULL, writer_main, p) != 0) {
			err = cf_err_fail(CF_E_NOMEM, "cannot start store writer %u", i);
			goto out_close;
		}
		p->nthreads++;
	}
	return CF_OK;
out_close:
	pg_close(st);
	return err;
}
