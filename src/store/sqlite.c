/* coffre — the SQLite engine: WAL, synchronous=FULL, secure_delete, STRICT tables,
 * reader connections, and one writer thread that commits requests in groups.
 *
 * Group commit: the writer takes every request queued so far, runs each inside its own
 * SAVEPOINT in one transaction (a failing request rolls back alone; the others go on),
 * commits with a single fsync, and only then calls each request's done. It never waits
 * for a group to fill: the next group starts as soon as the previous sync ends, and
 * whatever queued during that sync is the next group. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/internal.h"

#define STMT_CACHE      128
#define QUEUE_MAX       65536u
#define READERS_DEFAULT 4u
#define GROUP_DEFAULT   1024u

struct stmt_slot {
	const char *sql; /* the literal: its address is the key */
	sqlite3_stmt *stmt;
};

struct sconn {
	sqlite3 *db;
	struct stmt_slot cache[STMT_CACHE];
};

struct wjob {
	cf_store_fn fn;
	cf_store_done_fn done;
	void *ctx;
	const char *tenant;
};

/* A job taken into a group, and its outcome. */
struct wtaken {
	struct wjob job;
	cf_err result;
	struct cf_err_saved why; /* its error's detail, path and rule */
};

struct sq {
	struct cf_store *st; /* the store this engine serves (for transactions' st) */
	char path[CF_PATH_MAX];
	struct sconn *writer;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	struct wjob *ring;
	unsigned head, count, group_max;
	bool stopping;
	struct cf_connpool readers;
	/* The checkpointer: copies the WAL into the database beside the writer, so that
	 * no commit waits for it (SQLite's own checkpoint runs inside the commit). */
	struct sconn *ckpt;
	pthread_t ckpt_thread;
	bool ckpt_started, ckpt_wanted;
	pthread_cond_t ckpt_cond, ckpt_progress;
	int wal_frames; /* the WAL's length after the last commit (under lock) */
	int ckpt_done;  /* how much of it the checkpointer has copied (under lock) */
	/* cf_tx_epoch (the writer's thread only): moved on by every rollback, and when
	 * PRAGMA data_version says another connection wrote */
	uint64_t epoch;
	int64_t data_version;
};

/* The checkpointer starts at CKPT_FRAMES (SQLite's own threshold); at twice that the
 * writer lets it finish before the next group, so that the WAL starts again from its
 * beginning and never grows without bound under a steady load. */
#define CKPT_FRAMES 1000

static cf_err sq_err(sqlite3 *db, int rc, const char *what)
{
	int prim = rc & 0xff;
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	switch (prim) {
	case SQLITE_CONSTRAINT: return cf_err_fail(CF_E_CONFLICT, "%s: %s", what, msg);
	case SQLITE_FULL: return cf_err_fail(CF_E_STORE_UNAVAILABLE, "%s: the disk is full", what);
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return cf_err_fail(CF_E_STORE_UNAVAILABLE,
		                   "%s: the database is locked by another process", what);
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
	case SQLITE_IOERR: return cf_err_fail(CF_E_STORE_UNAVAILABLE, "%s: %s", what, msg);
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return cf_err_fail(CF_E_STORE_UNAVAILABLE, "%s: the database file is corrupt (%s)",
		                   what, msg);
	default: return cf_err_fail(CF_E_IO, "%s: %s", what, msg);
	}
}

/* "$1" -> "?1": coffre writes PostgreSQL's numbered parameters; SQLite takes ?NNN. */
static char *to_sqlite_params(const char *sql)
{
	char *out = strdup(sql);
	if (!out)
		return NULL;
	bool in_str = false;
	for (char *p = out; *p; p++) {
		if (*p == '\'')
			in_str = !in_str;
		else if (!in_str && *p == '$' && p[1] >= '1' && p[1] <= '9')
			*p = '?';
	}
	return out;
}

static cf_err conn_exec(struct sconn *c, const char *sql, const char *what)
{
	char *errmsg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &errmsg);
	sqlite3_free(errmsg);
	return rc == SQLITE_OK ? CF_OK : sq_err(c->db, rc, what);
}

static void conn_close(struct sconn *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < STMT_CACHE; i++)
		if (c->cache[i].stmt)
			sqlite3_finalize(c->cache[i].stmt);
	sqlite3_close_v2(c->db);
	free(c);
}

static cf_err conn_open(const char *path, bool writer, bool gather, struct sconn **out)
{
	struct sconn *c = calloc(1, sizeof *c);
	if (!c)
		return CF_E_NOMEM;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
	            (writer ? SQLITE_OPEN_CREATE : 0);
	/* gather: the writer's and the checkpointer's writes are gathered (sqlite_vfs.c),
	 * which relies on synchronous = FULL below. */
	int rc = sqlite3_open_v2(path, &c->db, flags, gather ? cf_sqlite_gather_vfs() : NULL);
	if (rc != SQLITE_OK) {
		cf_err e = sq_err(c->db, rc, path);
		conn_close(c);
		return e;
	}
	sqlite3_extended_result_codes(c->db, 1);
	/* The settings coffre relies on (docs/storage.md says why each). */
	static const char pragmas[] = "PRAGMA busy_timeout = 5000;"
	                              "PRAGMA journal_mode = WAL;"
	                              "PRAGMA synchronous = FULL;"
	                              "PRAGMA secure_delete = ON;"
	                              "PRAGMA foreign_keys = ON;"
	                              "PRAGMA trusted_schema = OFF;"
	                              "PRAGMA cell_size_check = ON;"
	                              "PRAGMA temp_store = MEMORY;";
	cf_err e = conn_exec(c, pragmas, path);
	if (e) {
		conn_close(c);
		return e;
	}
	/* Nothing in the file may change what SQL means: no attached views or triggers
	 * from elsewhere, no loadable extensions. */
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
	*out = c;
	return CF_OK;
}

static cf_err prepare(struct sconn *c, const char *sql, sqlite3_stmt **out, bool *cached)
{
	size_t h = ((uintptr_t)sql >> 3) % STMT_CACHE;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		struct stmt_slot *s = &c->cache[(h + i) % STMT_CACHE];
		if (s->sql == sql) {
			sqlite3_reset(s->stmt);
			sqlite3_clear_bindings(s->stmt);
			*out = s->stmt;
			*cached = true;
			return CF_OK;
		}
		if (!s->sql)
			break;
	}
	char *text = to_sqlite_params(sql);
	if (!text)
		return CF_E_NOMEM;
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v3(c->db, text, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
	free(text);
	if (rc != SQLITE_OK)
		return sq_err(c->db, rc, "prepare");
	*out = stmt;
	*cached = false;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		struct stmt_slot *s = &c->cache[(h + i) % STMT_CACHE];
		if (!s->sql) {
			s->sql = sql;
			s->stmt = stmt;
			*cached = true;
			break;
		}
	}
	return CF_OK;
}

static cf_err bind(struct sconn *c, sqlite3_stmt *stmt, const struct cf_val *args, size_t nargs)
{
	if ((int)nargs != sqlite3_bind_parameter_count(stmt))
		return cf_err_fail(CF_E_INTERNAL, "statement takes %d values, %zu given",
		                   sqlite3_bind_parameter_count(stmt), nargs);
	for (size_t i = 0; i < nargs; i++) {
		int idx = (int)i + 1, rc;
		switch (args[i].type) {
		case CF_VAL_NULL: rc = sqlite3_bind_null(stmt, idx); break;
		case CF_VAL_INT: rc = sqlite3_bind_int64(stmt, idx, args[i].i); break;
		case CF_VAL_TEXT:
			rc = sqlite3_bind_text64(stmt, idx, args[i].p, args[i].n, SQLITE_STATIC,
			                         SQLITE_UTF8);
			break;
		case CF_VAL_BLOB:
			rc = sqlite3_bind_blob64(stmt, idx, args[i].p ? args[i].p : "", args[i].n,
			                         SQLITE_STATIC);
			break;
		default: rc = SQLITE_MISUSE; break;
		}
		if (rc != SQLITE_OK)
			return sq_err(c->db, rc, "bind");
	}
	return CF_OK;
}

/* The transaction statements of every request: prepared once per connection and kept,
 * as every other statement is (sqlite3_exec would parse them again each time). */
static const char sql_begin[] = "BEGIN", sql_begin_write[] = "BEGIN IMMEDIATE",
                  sql_commit[] = "COMMIT", sql_rollback[] = "ROLLBACK",
                  sql_savepoint[] = "SAVEPOINT w", sql_release[] = "RELEASE w",
                  sql_rollback_to[] = "ROLLBACK TO w";

static cf_err conn_step(struct sconn *c, const char *sql, const char *what)
{
	sqlite3_stmt *stmt = NULL;
	bool cached = false;
	CF_TRY(prepare(c, sql, &stmt, &cached));
	CF_ENSURE(stmt, CF_E_INTERNAL);
	int rc = sqlite3_step(stmt);
	cf_err err = rc == SQLITE_DONE || rc == SQLITE_ROW ? CF_OK : sq_err(c->db, rc, what);
	sqlite3_reset(stmt);
	if (!cached)
		sqlite3_finalize(stmt);
	return err;
}

static cf_err run(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                  cf_row_fn fn, void *ctx, int64_t *changes)
{
	struct sconn *c = tx->conn;
	sqlite3_stmt *stmt = NULL;
	bool cached = false;
	CF_TRY(prepare(c, sql, &stmt, &cached));
	CF_ENSURE(stmt, CF_E_INTERNAL);
	cf_err err = bind(c, stmt, args, nargs);
	struct cf_row row = {.engine = CF_STORE_SQLITE,
	                     .impl = stmt,
	                     .ncols = (unsigned)sqlite3_column_count(stmt)};
	while (err == CF_OK) {
		int rc = sqlite3_step(stmt);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			err = sq_err(c->db, rc, "statement");
			break;
		}
		if (fn)
			err = fn(&row, ctx);
	}
	if (err == CF_OK && changes)
		*changes = sqlite3_changes64(c->db);
	/* Clear the bindings now: they borrow the caller's memory. */
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	if (!cached)
		sqlite3_finalize(stmt);
	return err;
}

static cf_err sq_exec(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                      int64_t *changes)
{
	return run(tx, sql, args, nargs, NULL, NULL, changes);
}

static cf_err sq_query(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                       cf_row_fn fn, void *ctx)
{
	return run(tx, sql, args, nargs, fn, ctx, NULL);
}

bool cf_sqlite_row_is_null(const struct cf_row *row, unsigned col)
{
	return sqlite3_column_type(row->impl, (int)col) == SQLITE_NULL;
}

int64_t cf_sqlite_row_int(const struct cf_row *row, unsigned col)
{
	return sqlite3_column_int64(row->impl, (int)col);
}

struct cf_span cf_sqlite_row_blob(const struct cf_row *row, unsigned col)
{
	const void *p = sqlite3_column_blob(row->impl, (int)col);
	int n = sqlite3_column_bytes(row->impl, (int)col);
	return (struct cf_span){p, n > 0 ? (size_t)n : 0};
}

/* The writer ------------------------------------------------------------------------- */

/* After each commit, on the writer: a WAL past the threshold is the checkpointer's. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int frames)
{
	(void)db;
	(void)name;
	struct sq *q = arg;
	pthread_mutex_lock(&q->lock);
	if (frames < q->wal_frames)
		q->ckpt_done = 0; /* the WAL started again */
	q->wal_frames = frames;
	if (frames >= CKPT_FRAMES) {
		q->ckpt_wanted = true;
		pthread_cond_signal(&q->ckpt_cond);
	}
	pthread_mutex_unlock(&q->lock);
	return SQLITE_OK;
}

/* On the writer, between groups, with q->lock held. */
static void ckpt_catch_up(struct sq *q)
{
	while (q->ckpt_started && !q->stopping && q->wal_frames >= 2 * CKPT_FRAMES &&
	       q->ckpt_done < q->wal_frames) {
		q->ckpt_wanted = true;
		pthread_cond_signal(&q->ckpt_cond);
		pthread_cond_wait(&q->ckpt_progress, &q->lock);
	}
}

static void *ckpt_main(void *arg)
{
	struct sq *q = arg;
	int seen = 0; /* frames the last pass had copied */
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->ckpt_wanted && !q->stopping)
			pthread_cond_wait(&q->ckpt_cond, &q->lock);
		if (q->stopping)
			break;
		q->ckpt_wanted = false;
		pthread_mutex_unlock(&q->lock);
		/* PASSIVE: copies what no reader still needs, never blocks the writer; what
		 * it could not copy goes at the next one. */
		int log = 0, done = 0;
		int rc = sqlite3_wal_checkpoint_v2(q->ckpt->db, "main", SQLITE_CHECKPOINT_PASSIVE,
		                                   &log, &done);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			cf_log(CF_LOG_WARN, NULL, "store_checkpoint", "%s",
			       sqlite3_errmsg(q->ckpt->db));
		pthread_mutex_lock(&q->lock);
		/* A reader still on older frames (another process's long transaction: a
		 * `coffre store check`, an operator's sqlite3) keeps them from being copied.
		 * While each pass copies more, the writer waits for the next; a pass that
		 * copied nothing new lets it on, or the writer and this thread would take
		 * turns at passes that copy nothing for as long as that reader stays (writes
		 * fell from 13k to 93 a second; test_store checks it). */
		bool progress = rc == SQLITE_OK && (done > seen || log < seen);
		seen = rc == SQLITE_OK ? done : seen;
		if (rc == SQLITE_OK && log == q->wal_frames && (progress || done >= log))
			q->ckpt_done = done;
		else if (rc == SQLITE_OK && progress && done < q->wal_frames)
			q->ckpt_wanted = true; /* more came meanwhile: go on */
		else
			q->ckpt_done =
			        q->wal_frames; /* a reader holds the rest: let the writer on */
		pthread_cond_broadcast(&q->ckpt_progress);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* A new epoch, unique in the process. */
static uint64_t new_epoch(void)
{
	static _Atomic uint64_t last;
	return atomic_fetch_add(&last, 1) + 1;
}

/* A row of one integer into int64_t. */
static cf_err get_int(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

/* With the write lock held: whether another connection (another process: coffre's own
 * commands, a backup tool) wrote since this writer last looked. */
static cf_err check_others(struct sq *q)
{
	struct cf_tx tx = {.st = q->st, .conn = q->writer};
	int64_t v = -1;
	CF_TRY(sq_query(&tx, "PRAGMA data_version", NULL, 0, get_int, &v));
	if (v != q->data_version)
		q->epoch = new_epoch();
	q->data_version = v;
	return CF_OK;
}

static void run_group(struct sq *q, struct wtaken *jobs, unsigned n)
{
	struct sconn *c = q->writer;
	cf_err gerr = conn_step(c, sql_begin_write, "begin");
	if (gerr == CF_OK)
		gerr = check_others(q);
	struct cf_err_saved gwhy; /* why the whole group failed */
	cf_err_save(&gwhy, gerr);
	for (unsigned i = 0; i < n; i++) {
		struct wtaken *j = &jobs[i];
		if (gerr) {
			/* the group could not start: every request fails, for the same reason */
			j->result = gerr;
			j->why = gwhy;
			continue;
		}
		struct cf_tx tx = {.st = q->st, .tenant = j->job.tenant, .conn = c};
		cf_err e = conn_step(c, sql_savepoint, "savepoint");
		bool kept = false;
		if (e == CF_OK) {
			cf_err_detail_clear();
			e = j->job.fn(&tx, j->job.ctx);
			if (e == CF_OK) {
				e = conn_step(c, sql_release, "release");
			} else {
				/* its own reason, before the rollback may set one */
				cf_err_save(&j->why, e);
				kept = true;
				if (conn_step(c, sql_rollback_to, "rollback") == CF_OK)
					(void)conn_step(c, sql_release, "release");
			}
		}
		j->result = e;
		if (e)
			q->epoch = new_epoch(); /* what it wrote is undone */
		if (e && !kept)
			cf_err_save(&j->why, e);
		if (e && sqlite3_get_autocommit(c->db)) {
			/* SQLite aborted the whole transaction (a full disk, an I/O error): the
			 * requests before this one are gone too, and the ones after must not run
			 * outside the group. All fail, for this reason. */
			gerr = e;
			gwhy = j->why;
		}
	}
	if (!gerr) {
		gerr = conn_step(c, sql_commit, "commit");
		if (gerr) {
			cf_err_save(&gwhy, gerr);
			if (!sqlite3_get_autocommit(c->db))
				(void)conn_step(c, sql_rollback, "rollback");
		}
	} else if (!sqlite3_get_autocommit(c->db)) {
		(void)conn_step(c, sql_rollback, "rollback");
	}
	if (gerr)
		q->epoch = new_epoch(); /* the group is undone */
	for (unsigned i = 0; i < n; i++) {
		struct wtaken *j = &jobs[i];
		cf_err r = j->result ? j->result : gerr;
		cf_err_restore(j->result ? &j->why : &gwhy);
		j->job.done(j->job.ctx, r);
	}
}

static void *writer_main(void *arg)
{
	struct sq *q = arg;
	struct wtaken *batch = calloc(q->group_max, sizeof *batch);
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (q->count == 0 && !q->stopping)
			pthread_cond_wait(&q->nonempty, &q->lock);
		if (q->count == 0 && q->stopping)
			break;
		ckpt_catch_up(q);
		unsigned n = 0;
		unsigned limit = batch ? q->group_max : 1;
		struct wtaken one = {0};
		struct wtaken *dst = batch ? batch : &one;
		while (q->count > 0 && n < limit) {
			dst[n++].job = q->ring[q->head];
			q->head = (q->head + 1) % QUEUE_MAX;
			q->count--;
		}
		pthread_mutex_unlock(&q->lock);
		run_group(q, dst, n);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	free(batch);
	return NULL;
}

static cf_err sq_write(struct cf_store *st, const char *tenant, cf_store_fn fn,
                       cf_store_done_fn done, void *ctx)
{
	struct sq *q = st->impl;
	cf_err err = CF_OK;
	pthread_mutex_lock(&q->lock);
	if (q->stopping)
		err = cf_err_fail(CF_E_STORE_UNAVAILABLE, "the store is closing");
	else if (q->count == QUEUE_MAX)
		err = CF_E_BUSY;
	else {
		q->ring[(q->head + q->count) % QUEUE_MAX] =
		        (struct wjob){.fn = fn, .done = done, .ctx = ctx, .tenant = tenant};
		q->count++;
		pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->lock);
	return err;
}

/* Readers ---------------------------------------------------------------------------- */

static cf_err reader_open(void *ctx, void **out)
{
	struct sq *o = ctx;
	struct sconn *c = NULL;
	CF_TRY(conn_open(o->path, false, false, &c));
	*out = c;
	return CF_OK;
}

static void reader_close(void *conn)
{
	conn_close(conn);
}

static cf_err reader_take(struct sq *o, struct sconn **out)
{
	void *v = NULL;
	CF_TRY(cf_connpool_take(&o->readers, &v));
	*out = v;
	return CF_OK;
}

static void reader_give(struct sq *o, struct sconn *c)
{
	cf_connpool_give(&o->readers, c);
}

/* This thread's read scope (cf_store_read_scope_begin), if any. */
static _Thread_local struct {
	struct sq *q;
	struct sconn *c;
} scope;

/* A reader in a read transaction (BEGIN is deferred: the snapshot is taken at the first
 * read), and back: a reader never writes, its transaction is always rolled back. */
static cf_err read_begin(struct sq *q, struct sconn **out)
{
	struct sconn *c = NULL;
	CF_TRY(reader_take(q, &c));
	CF_ENSURE(c, CF_E_INTERNAL);
	cf_err err = conn_step(c, sql_begin, "begin");
	if (err) {
		reader_give(q, c);
		return err;
	}
	*out = c;
	return CF_OK;
}

static void read_end(struct sq *q, struct sconn *c)
{
	(void)conn_step(c, sql_rollback, "rollback");
	reader_give(q, c);
}

static cf_err sq_read(struct cf_store *st, const char *tenant, cf_store_fn fn, void *ctx)
{
	struct sq *q = st->impl;
	bool scoped = scope.q == q;
	struct sconn *c = scoped ? scope.c : NULL;
	if (!scoped)
		CF_TRY(read_begin(q, &c));
	struct cf_tx tx = {.st = st, .tenant = tenant, .conn = c};
	cf_err err = fn(&tx, ctx);
	if (!scoped)
		read_end(q, c);
	return err;
}

static bool sq_scope_begin(struct cf_store *st)
{
	struct sq *q = st->impl;
	if (scope.q || read_begin(q, &scope.c) != CF_OK)
		return false;
	scope.q = q;
	return true;
}

static void sq_scope_end(struct cf_store *st)
{
	struct sq *q = st->impl;
	if (scope.q != q)
		return;
	read_end(q, scope.c);
	scope.q = NULL;
	scope.c = NULL;
}

/* Migrations ------------------------------------------------------------------------- */

static cf_err migrate(struct cf_store *st, struct sq *q, const struct cf_store_opts *opts)
{
	struct sconn *c = q->writer;
	CF_TRY(conn_exec(c,
	                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
	                 " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
	                 " applied_at INTEGER NOT NULL) STRICT",
	                 "schema_migrations"));
	struct cf_tx tx = {.st = st, .conn = c};
	int64_t have = 0;
	static const char q_version[] = "SELECT coalesce(max(version), 0) FROM schema_migrations";
	CF_TRY(sq_query(&tx, q_version, NULL, 0, get_int, &have));
	int want = (int)opts->nmigrations;
	if (have > want)
		return cf_err_fail(CF_E_STORE_SCHEMA,
		                   "the database is at schema version %lld, newer than this coffre "
		                   "knows (%d): upgrade coffre",
		                   (long long)have, want);
	if (have < want && !opts->migrate)
		return cf_err_fail(CF_E_STORE_SCHEMA,
		                   "the database is at schema version %lld and needs %d: run "
		                   "`coffre store migrate`",
		                   (long long)have, want);
	for (int v = (int)have + 1; v <= want; v++) {
		const struct cf_migration *m = &opts->migrations[v - 1];
		cf_err err = conn_exec(c, "BEGIN IMMEDIATE", "begin");
		if (err == CF_OK)
			err = conn_exec(c, m->sqlite, m->name);
		if (err == CF_OK) {
			static const char ins[] =
			        "INSERT INTO schema_migrations(version, name, applied_at)"
			        " VALUES ($1, $2, CAST(strftime('%s','now') AS INTEGER))";
			struct cf_val args[] = {CF_V_INT(v), CF_V_TEXT(m->name)};
			err = sq_exec(&tx, ins, args, 2, NULL);
		}
		if (err == CF_OK)
			err = conn_exec(c, "COMMIT", "commit");
		if (err) {
			char why[CF_ERR_DETAIL_MAX];
			(void)snprintf(why, sizeof why, "%s", cf_err_detail());
			(void)conn_exec(c, "ROLLBACK", "rollback");
			return cf_err_fail(CF_E_STORE_MIGRATION,
			                   "migration %d (%s) failed and was rolled back: %s", v,
			                   m->name, why);
		}
		cf_log(CF_LOG_INFO, NULL, "store_migrated", "applied migration %d (%s)", v,
		       m->name);
	}
	st->schema_version = want;
	return CF_OK;
}

/* Check ------------------------------------------------------------------------------- */

struct check_ctx {
	char *buf;
	size_t cap;
	bool first;
};

static cf_err first_text(const struct cf_row *row, void *ctx)
{
	struct check_ctx *cc = ctx;
	if (cc->first) {
		struct cf_span s = cf_row_blob(row, 0);
		(void)snprintf(cc->buf, cc->cap, "%.*s", (int)s.len, (const char *)s.ptr);
		cc->first = false;
	}
	return CF_OK;
}

static cf_err sq_check(struct cf_store *st, struct cf_store_check *out)
{
	struct sq *q = st->impl;
	struct sconn *c = NULL;
	CF_TRY(reader_take(q, &c));
	CF_ENSURE(c, CF_E_INTERNAL);
	struct cf_tx tx = {.st = st, .conn = c};
	struct check_ctx cc = {out->integrity, sizeof out->integrity, true};
	static const char q_integrity[] = "PRAGMA integrity_check";
	cf_err err = sq_query(&tx, q_integrity, NULL, 0, first_text, &cc);
	out->integrity_ok = err == CF_OK && strcmp(out->integrity, "ok") == 0;
	static const char q_jm[] = "PRAGMA journal_mode", q_sync[] = "PRAGMA synchronous",
	                  q_sd[] = "PRAGMA secure_delete", q_fk[] = "PRAGMA foreign_keys",
	                  q_ps[] = "PRAGMA page_size";
	int64_t sync = -1, sd = -1, fk = -1, ps = -1;
	char jm[32] = "";
	struct check_ctx jc = {jm, sizeof jm, true};
	if (err == CF_OK)
		err = sq_query(&tx, q_jm, NULL, 0, first_text, &jc);
	if (err == CF_OK)
		err = sq_query(&tx, q_sync, NULL, 0, get_int, &sync);
	if (err == CF_OK)
		err = sq_query(&tx, q_sd, NULL, 0, get_int, &sd);
	if (err == CF_OK)
		err = sq_query(&tx, q_fk, NULL, 0, get_int, &fk);
	if (err == CF_OK)
		err = sq_query(&tx, q_ps, NULL, 0, get_int, &ps);
	reader_give(q, c);
	CF_TRY(err);
	(void)snprintf(out->settings, sizeof out->settings,
	               "engine=sqlite %s, journal_mode=%s, synchronous=%s, secure_delete=%s, "
	               "foreign_keys=%s, page_size=%lld",
	               sqlite3_libversion(), jm,
	               sync == 2   ? "FULL"
	               : sync == 1 ? "NORMAL"
	                           : "OFF",
	               sd == 1 ? "on" : "off", fk == 1 ? "on" : "off", (long long)ps);
	out->settings_ok = strcmp(jm, "wal") == 0 && sync == 2 && sd == 1 && fk == 1;
	return CF_OK;
}

static cf_err sq_scrub(struct cf_store *st)
{
	struct sq *q = st->impl;
	struct sconn *c = NULL;
	CF_TRY(reader_take(q, &c));
	CF_ENSURE(c, CF_E_INTERNAL);
	cf_err err = conn_exec(c, "PRAGMA wal_checkpoint(TRUNCATE)", "checkpoint");
	reader_give(q, c);
	return err;
}

/* Open and close ---------------------------------------------------------------------- */

static void sq_close(struct cf_store *st)
{
	struct sq *q = st->impl;
	if (q->thread_started) {
		pthread_mutex_lock(&q->lock);
		q->stopping = true;
		pthread_cond_signal(&q->nonempty);
		pthread_mutex_unlock(&q->lock);
		pthread_join(q->thread, NULL);
	}
	if (q->ckpt_started) {
		pthread_mutex_lock(&q->lock);
		q->stopping = true;
		pthread_cond_signal(&q->ckpt_cond);
		pthread_cond_broadcast(&q->ckpt_progress);
		pthread_mutex_unlock(&q->lock);
		pthread_join(q->ckpt_thread, NULL);
	}
	conn_close(q->ckpt);
	/* the last connection to close checkpoints what is left */
	conn_close(q->writer);
	cf_connpool_destroy(&q->readers);
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->ckpt_cond);
	pthread_cond_destroy(&q->ckpt_progress);
	pthread_mutex_destroy(&q->lock);
	free(q->ring);
	free(q);
}

static uint64_t sq_epoch(const struct cf_tx *tx)
{
	const struct sq *q = tx->st->impl;
	return tx->conn == q->writer ? q->epoch : 0;
}

const struct cf_store_ops cf_sqlite_ops = {
        .write = sq_write,
        .read = sq_read,
        .exec = sq_exec,
        .query = sq_query,
        .check = sq_check,
        .scrub = sq_scrub,
        .scope_begin = sq_scope_begin,
        .scope_end = sq_scope_end,
        .close = sq_close,
        .epoch = sq_epoch,
};

/* Before SQLite's first use in the process: no memory statistics. Kept, they take one
 * process-wide mutex at every allocation, which every reader and the writer then share;
 * coffre never reads them. */
static void sqlite_configure(void)
{
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

cf_err cf_sqlite_open(const struct cf_store_opts *opts, const char *path, struct cf_store *st)
{
	cf_err err = CF_OK;
	if (sqlite3_threadsafe() == 0)
		return cf_err_fail(CF_E_INTERNAL, "this SQLite is built without thread support");
	static pthread_once_t configured = PTHREAD_ONCE_INIT;
	(void)pthread_once(&configured, sqlite_configure);
	struct sq *q = calloc(1, sizeof *q);
	if (!q)
		return CF_E_NOMEM;
	st->ops = &cf_sqlite_ops;
	st->impl = q;
	q->st = st;
	if (cf_connpool_init(&q->readers, opts->readers ? opts->readers : READERS_DEFAULT,
	                     reader_open, reader_close, q) != CF_OK) {
		err = CF_E_NOMEM;
		goto out_close;
	}
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->nonempty, NULL);
	pthread_cond_init(&q->ckpt_cond, NULL);
	pthread_cond_init(&q->ckpt_progress, NULL);
	q->group_max = opts->group_max ? opts->group_max : GROUP_DEFAULT;
	if ((size_t)snprintf(q->path, sizeof q->path, "%s", path) >= sizeof q->path) {
		err = cf_err_fail(CF_E_CONFIG, "store path too long");
		goto out_close;
	}
	q->ring = calloc(QUEUE_MAX, sizeof *q->ring);
	CF_ENSURE_OUT(q->ring, CF_E_NOMEM, out_close);
	q->epoch = new_epoch();
	q->data_version = -1;
	/* The database holds ciphertext and keys' wrappings: owner-only from the start
	 * (SQLite gives its -wal and -shm files the same mode). */
	/* Without migrate (coffre store check) nothing may be created. */
	if (!opts->migrate && access(path, F_OK) != 0) {
		err = cf_err_fail(CF_E_STORE_UNAVAILABLE, "%s: no database there", path);
		goto out_close;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = cf_err_fail(CF_E_STORE_UNAVAILABLE, "%s: %s", path, strerror(errno));
		goto out_close;
	}
	close(fd);
	CF_TRY_OUT(conn_open(path, true, true, &q->writer), out_close);
	CF_TRY_OUT(migrate(st, q, opts), out_close);
	CF_TRY_OUT(conn_open(path, false, true, &q->ckpt), out_close);
	if (pthread_create(&q->ckpt_thread, NULL, ckpt_main, q) != 0) {
		err = cf_err_fail(CF_E_NOMEM, "cannot start the store checkpointer");
		goto out_close;
	}
	pthread_setname_np(q->ckpt_thread, "store-ckpt");
	q->ckpt_started = true;
	/* replaces SQLite's checkpoint inside the commit */
	sqlite3_wal_hook(q->writer->db, on_wal, q);
	if (pthread_create(&q->thread, NULL, writer_main, q) != 0) {
		err = cf_err_fail(CF_E_NOMEM, "cannot start the store writer");
		goto out_close;
	}
	pthread_setname_np(q->thread, "store-writer");
	q->thread_started = true;
	return CF_OK;
out_close:
	sq_close(st);
	st->impl = NULL;
	return err;
}
