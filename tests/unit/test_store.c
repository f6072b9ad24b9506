/* The store on both engines, one suite: real SQLite files and a real PostgreSQL 15 that
 * tests/pg.sh starts (make test does it; COFFRE_TEST_PG_HOST names its socket folder).
 * Migrations, typed values, group commit with per-request rollback, conflicts,
 * concurrency, and row-level security biting the runtime role (TI1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "helpers.h"
#include "store/store.h"

static const struct cf_migration migs[] = {
        {1, "items",
         "CREATE TABLE items (tenant_id TEXT NOT NULL, id INTEGER NOT NULL, body BLOB,"
         " note TEXT, PRIMARY KEY (tenant_id, id)) STRICT",
         "CREATE TABLE items (tenant_id TEXT NOT NULL, id BIGINT NOT NULL, body BYTEA,"
         " note TEXT, PRIMARY KEY (tenant_id, id));"
         "ALTER TABLE items ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE items FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_isolation ON items"
         " USING (tenant_id = current_setting('coffre.tenant', true))"
         " WITH CHECK (tenant_id = current_setting('coffre.tenant', true));"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON items TO coffre_runtime"},
        {2, "counter",
         "CREATE TABLE counter (n INTEGER NOT NULL) STRICT; INSERT INTO counter VALUES (0)",
         "CREATE TABLE counter (n BIGINT NOT NULL); INSERT INTO counter VALUES (0);"
         "GRANT SELECT, UPDATE ON counter TO coffre_runtime"},
        /* broken on purpose, used only by test_migration_rolls_back */
        {3, "broken", "CREATE TABLE extra (x INTEGER) STRICT; INSERT INTO nowhere VALUES (1)",
         "CREATE TABLE extra (x INTEGER); INSERT INTO nowhere VALUES (1)"},
};

struct engine {
	enum cf_store_engine kind;
	char url[512];
	char owner_url[512];
	char super_url[512];
	char path[256];
	char dbname[64];
};

static struct cf_store_opts opts_for(const struct engine *e, size_t nmig, bool migrate)
{
	return (struct cf_store_opts){
	        .url = e->url,
	        .migrate_url = e->kind == CF_STORE_POSTGRES ? e->owner_url : NULL,
	        .migrations = migs,
	        .nmigrations = nmig,
	        .migrate = migrate,
	};
}

static int setup_sqlite(void **state)
{
	struct engine *e = calloc(1, sizeof *e);
	e->kind = CF_STORE_SQLITE;
	(void)snprintf(e->path, sizeof e->path, "/tmp/cf_store_%d.db", (int)getpid());
	unlink(e->path);
	(void)snprintf(e->url, sizeof e->url, "sqlite:%s", e->path);
	*state = e;
	return 0;
}

static int setup_postgres(void **state)
{
	const char *host = getenv("COFFRE_TEST_PG_HOST");
	if (!host) {
		fprintf(stderr, "COFFRE_TEST_PG_HOST is not set: run through `make test`, or "
		                "eval \"$(tests/pg.sh start)\" first\n");
		return -1;
	}
	struct engine *e = calloc(1, sizeof *e);
	e->kind = CF_STORE_POSTGRES;
	(void)snprintf(e->dbname, sizeof e->dbname, "coffre_t%d", (int)getpid());
	(void)snprintf(e->super_url, sizeof e->super_url, "postgresql://postgres@/postgres?host=%s",
	               host);
	(void)snprintf(e->url, sizeof e->url, "postgresql://coffre_app@/%s?host=%s", e->dbname,
	               host);
	(void)snprintf(e->owner_url, sizeof e->owner_url, "postgresql://coffre_owner@/%s?host=%s",
	               e->dbname, host);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct engine *e = *state;
	if (!e)
		return 0;
	if (e->kind == CF_STORE_SQLITE) {
		char p[300];
		unlink(e->path);
		(void)snprintf(p, sizeof p, "%s-wal", e->path);
		unlink(p);
		(void)snprintf(p, sizeof p, "%s-shm", e->path);
		unlink(p);
	}
	free(e);
	return 0;
}

/* Each test starts from an empty database. */
static int fresh(void **state)
{
	struct engine *e = *state;
	if (e->kind == CF_STORE_SQLITE) {
		char p[300];
		unlink(e->path);
		(void)snprintf(p, sizeof p, "%s-wal", e->path);
		unlink(p);
		(void)snprintf(p, sizeof p, "%s-shm", e->path);
		unlink(p);
	} else {
		char sql[200];
		(void)snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
		               e->dbname);
		pg_admin(e->super_url, sql);
		(void)snprintf(sql, sizeof sql, "CREATE DATABASE %s OWNER coffre_owner", e->dbname);
		pg_admin(e->super_url, sql);
	}
	return 0;
}

/* --- helpers ------------------------------------------------------------------------- */
struct item {
	const char *tenant;
	int64_t id;
	const void *body;
	size_t body_len;
	const char *note;
};

static const char sql_insert[] =
        "INSERT INTO items (tenant_id, id, body, note) VALUES ($1, $2, $3, $4)";
static const char sql_count[] = "SELECT count(*) FROM items";
static const char sql_get[] = "SELECT id, body, note FROM items WHERE tenant_id = $1 AND id = $2";

static cf_err insert_fn(struct cf_tx *tx, void *ctx)
{
	const struct item *it = ctx;
	struct cf_val v[] = {CF_V_TEXT(it->tenant), CF_V_INT(it->id),
	                     it->body ? CF_V_BLOB(it->body, it->body_len) : CF_V_NULL,
	                     it->note ? CF_V_TEXT(it->note) : CF_V_NULL};
	int64_t n = 0;
	CF_TRY(cf_tx_exec(tx, sql_insert, v, 4, &n));
	return n == 1 ? CF_OK : CF_E_INTERNAL;
}

static cf_err count_row(const struct cf_row *row, void *ctx)
{
	*(int64_t *)ctx = cf_row_int(row, 0);
	return CF_OK;
}

static cf_err count_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, sql_count, NULL, 0, count_row, ctx);
}

static int64_t count_as(struct cf_store *st, const char *tenant)
{
	int64_t n = -1;
	assert_int_equal(cf_store_read(st, tenant, count_fn, &n), CF_OK);
	return n;
}

/* --- tests ---------------------------------------------------------------------------- */
static void test_open_and_migrate(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	assert_int_equal(cf_store_schema_version(st), 2);
	assert_int_equal(cf_store_engine(st), e->kind);
	struct cf_store_check chk;
	assert_int_equal(cf_store_check(st, &chk), CF_OK);
	assert_true(chk.integrity_ok);
	if (!chk.settings_ok)
		fail_msg("settings not as required: %s", chk.settings);
	/* the check names the page size (SQLite's default for a new database) */
	if (e->kind == CF_STORE_SQLITE && !strstr(chk.settings, "page_size=4096"))
		fail_msg("a new database's pages: %s", chk.settings);
	cf_store_close(&st);
	assert_null(st);
	if (e->kind == CF_STORE_SQLITE) {
		struct stat sb;
		assert_int_equal(stat(e->path, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
	/* reopening is a no-op */
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	cf_store_close(&st);
	/* an older coffre refuses a newer database */
	o = opts_for(e, 1, true);
	assert_int_equal(cf_store_open(&o, &st), CF_E_STORE_SCHEMA);
	assert_non_null(strstr(cf_err_detail(), "newer than this coffre"));
}

static void test_migrate_false_refuses(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 1, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	cf_store_close(&st);
	o = opts_for(e, 2, false);
	assert_int_equal(cf_store_open(&o, &st), CF_E_STORE_SCHEMA);
	assert_non_null(strstr(cf_err_detail(), "coffre store migrate"));
}

static cf_err extra_exists(struct cf_tx *tx, void *ctx)
{
	static const char q[] = "SELECT count(*) FROM extra";
	return cf_tx_query(tx, q, NULL, 0, count_row, ctx);
}

static void test_migration_rolls_back(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 3, true);
	assert_int_equal(cf_store_open(&o, &st), CF_E_STORE_MIGRATION);
	assert_non_null(strstr(cf_err_detail(), "migration"));
	/* nothing of the failed migration stayed: version and table */
	o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	assert_int_equal(cf_store_schema_version(st), e->kind == CF_STORE_SQLITE ? 2 : 2);
	int64_t n = 0;
	assert_int_not_equal(cf_store_read(st, NULL, extra_exists, &n), CF_OK);
	cf_store_close(&st);
}

struct got {
	int64_t id;
	uint8_t body[64];
	size_t body_len;
	bool body_null;
	char note[64];
	bool note_null;
};

static cf_err got_row(const struct cf_row *row, void *ctx)
{
	struct got *g = ctx;
	g->id = cf_row_int(row, 0);
	g->body_null = cf_row_is_null(row, 1);
	struct cf_span b = cf_row_blob(row, 1);
	g->body_len = b.len < sizeof g->body ? b.len : sizeof g->body;
	if (b.len)
		memcpy(g->body, b.ptr, g->body_len);
	g->note_null = cf_row_is_null(row, 2);
	struct cf_span t = cf_row_blob(row, 2);
	(void)snprintf(g->note, sizeof g->note, "%.*s", (int)t.len, (const char *)t.ptr);
	return CF_OK;
}

struct get_args {
	const char *tenant;
	int64_t id;
	struct got *g;
};

static cf_err get_fn(struct cf_tx *tx, void *ctx)
{
	struct get_args *a = ctx;
	struct cf_val v[] = {CF_V_TEXT(a->tenant), CF_V_INT(a->id)};
	return cf_tx_query(tx, sql_get, v, 2, got_row, a->g);
}

static void test_values_round_trip(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	static const uint8_t body[] = {0, 1, 2, 0xff, 0, 'x'};
	struct item it = {"acme", -9000000000LL, body, sizeof body, "naïve 'quoted' $1 text"};
	assert_int_equal(cf_store_write_wait(st, "acme", insert_fn, &it), CF_OK);
	struct item nulls = {"acme", 7, NULL, 0, NULL};
	assert_int_equal(cf_store_write_wait(st, "acme", insert_fn, &nulls), CF_OK);
	struct got g = {0};
	struct get_args a = {"acme", -9000000000LL, &g};
	assert_int_equal(cf_store_read(st, "acme", get_fn, &a), CF_OK);
	assert_int_equal(g.id, -9000000000LL);
	assert_int_equal(g.body_len, sizeof body);
	assert_memory_equal(g.body, body, sizeof body);
	assert_string_equal(g.note, "naïve 'quoted' $1 text");
	memset(&g, 0, sizeof g);
	a.id = 7;
	assert_int_equal(cf_store_read(st, "acme", get_fn, &a), CF_OK);
	assert_true(g.body_null);
	assert_true(g.note_null);
	cf_store_close(&st);
}

static cf_err insert_two_fn(struct cf_tx *tx, void *ctx)
{
	/* the first insert succeeds, the second conflicts: neither may stay */
	struct item *it = ctx;
	CF_TRY(insert_fn(tx, &it[0]));
	return insert_fn(tx, &it[1]);
}

static void test_conflict_rolls_back_request(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	struct item a = {"acme", 1, "a", 1, NULL};
	assert_int_equal(cf_store_write_wait(st, "acme", insert_fn, &a), CF_OK);
	struct item pair[2] = {{"acme", 2, "b", 1, NULL}, {"acme", 1, "dup", 3, NULL}};
	assert_int_equal(cf_store_write_wait(st, "acme", insert_two_fn, pair), CF_E_CONFLICT);
	assert_int_equal(count_as(st, "acme"), 1);
	cf_store_close(&st);
}

static cf_err insert_then_refuse_fn(struct cf_tx *tx, void *ctx)
{
	CF_TRY(insert_fn(tx, ctx));
	return cf_err_at(CF_E_INVALID_VALUE, "roles[0]", "role", "no role named 'x'");
}

/* A refusal made in a write transaction reaches the caller whole: its code, message, the
 * field and the rule (set on the writer's thread), and nothing of the write stays. */
static void test_refusal_reaches_caller(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	struct item a = {"acme", 1, "a", 1, NULL};
	cf_err_detail_clear();
	assert_int_equal(cf_store_write_wait(st, "acme", insert_then_refuse_fn, &a),
	                 CF_E_INVALID_VALUE);
	assert_string_equal(cf_err_detail(), "no role named 'x'");
	assert_string_equal(cf_err_path(), "roles[0]");
	assert_string_equal(cf_err_rule(), "role");
	assert_int_equal(count_as(st, "acme"), 0);
	/* the next refusal, with no field, does not inherit that one's */
	assert_int_equal(cf_store_write_wait(st, "acme", insert_fn, &a), CF_OK);
	struct item pair[2] = {{"acme", 2, "b", 1, NULL}, {"acme", 1, "dup", 3, NULL}};
	assert_int_equal(cf_store_write_wait(st, "acme", insert_two_fn, pair), CF_E_CONFLICT);
	assert_string_equal(cf_err_path(), "");
	assert_string_equal(cf_err_rule(), "");
	assert_int_equal(count_as(st, "acme"), 1);
	cf_err_detail_clear();
	cf_store_close(&st);
}

struct conc;
struct citem {
	struct item it; /* first: insert_fn reads it as a struct item */
	struct conc *c;
};

struct conc {
	struct cf_store *st;
	int thread;
	pthread_mutex_t *lock;
	pthread_cond_t *cond;
	int *pending;
	int *ok;
	int *failed;
	struct citem items[200];
};

static void conc_done(void *ctx, cf_err result)
{
	struct conc *c = ((struct citem *)ctx)->c;
	pthread_mutex_lock(c->lock);
	if (result == CF_OK)
		(*c->ok)++;
	else
		(*c->failed)++;
	if (--*c->pending == 0)
		pthread_cond_broadcast(c->cond);
	pthread_mutex_unlock(c->lock);
}

static void *conc_main(void *arg)
{
	struct conc *c = arg;
	for (int i = 0; i < 200; i++) {
		/* every 50th request repeats its predecessor's key: it alone must fail */
		int64_t id = c->thread * 1000 + (i % 50 == 49 ? i - 1 : i);
		c->items[i] = (struct citem){{"acme", id, "x", 1, NULL}, c};
		pthread_mutex_lock(c->lock);
		(*c->pending)++;
		pthread_mutex_unlock(c->lock);
		cf_err e;
		while ((e = cf_store_write(c->st, "acme", insert_fn, conc_done, &c->items[i])) ==
		       CF_E_BUSY)
			usleep(1000);
		if (e != CF_OK)
			abort();
	}
	return NULL;
}

static void test_concurrent_group_commit(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
	int pending = 0, ok = 0, failed = 0;
	struct conc *cs = calloc(8, sizeof *cs);
	pthread_t t[8];
	for (int i = 0; i < 8; i++) {
		cs[i] = (struct conc){.st = st,
		                      .thread = i + 1,
		                      .lock = &lock,
		                      .cond = &cond,
		                      .pending = &pending,
		                      .ok = &ok,
		                      .failed = &failed};
		pthread_create(&t[i], NULL, conc_main, &cs[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_lock(&lock);
	while (pending > 0)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	assert_int_equal(ok + failed, 1600);
	assert_int_equal(failed, 8 * 4);
	assert_int_equal(count_as(st, "acme"), ok);
	cf_store_close(&st);
	free(cs);
}

static void test_tenant_isolation(void **state)
{
	/* TI1 on PostgreSQL: row-level security on coffre's runtime role. SQLite has no
	 * RLS: there, isolation is each query's tenant_id filter (DESIGN §7). */
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	struct item a = {"tenant-a", 1, "a", 1, NULL};
	assert_int_equal(cf_store_write_wait(st, "tenant-a", insert_fn, &a), CF_OK);
	assert_int_equal(count_as(st, "tenant-a"), 1);
	if (e->kind == CF_STORE_POSTGRES) {
		/* without the tenant setting, or as another tenant: nothing is visible */
		assert_int_equal(count_as(st, NULL), 0);
		assert_int_equal(count_as(st, "tenant-b"), 0);
		/* and nothing can be written in another tenant's name */
		struct item forged = {"tenant-a", 2, "f", 1, NULL};
		cf_err err = cf_store_write_wait(st, "tenant-b", insert_fn, &forged);
		assert_int_equal(err, CF_E_IO);
		assert_non_null(strstr(cf_err_detail(), "row-level security"));
		/* the control: a superuser sees the row, so the zero above is RLS at work */
		char su[600];
		(void)snprintf(su, sizeof su, "postgresql://postgres@/%s?host=%s", e->dbname,
		               getenv("COFFRE_TEST_PG_HOST"));
		PGconn *c = PQconnectdb(su);
		assert_int_equal(PQstatus(c), CONNECTION_OK);
		PGresult *r = PQexec(c, "SELECT count(*) FROM items");
		assert_string_equal(PQgetvalue(r, 0, 0), "1");
		PQclear(r);
		PQfinish(c);
	}
	cf_store_close(&st);
}

static void test_bad_urls(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	o.url = "mysql://x";
	assert_int_equal(cf_store_open(&o, &st), CF_E_CONFIG);
	o.url = "sqlite:";
	assert_int_equal(cf_store_open(&o, &st), CF_E_CONFIG);
	if (e->kind == CF_STORE_SQLITE) {
		/* a file that is not a database */
		assert_int_equal(cf_file_write_atomic(e->path, "this is not sqlite at all........",
		                                      33, 0600),
		                 CF_OK);
		o = opts_for(e, 2, true);
		assert_int_equal(cf_store_open(&o, &st), CF_E_STORE_UNAVAILABLE);
		assert_non_null(strstr(cf_err_detail(), "corrupt"));
		o.url = "sqlite:/nonexistent-dir/x.db";
		assert_int_equal(cf_store_open(&o, &st), CF_E_STORE_UNAVAILABLE);
	} else {
		/* unreachable server */
		o.url = "postgresql://coffre_app@/x?host=/nonexistent";
		o.migrate_url = NULL;
		assert_int_equal(cf_store_open(&o, &st), CF_E_STORE_UNAVAILABLE);
		/* over TCP without verify-full */
		o.url = "postgresql://coffre_app@127.0.0.1:1/x?sslmode=disable&connect_timeout=2";
		assert_int_not_equal(cf_store_open(&o, &st), CF_OK);
		/* a superuser as the runtime role: RLS would not apply */
		o = opts_for(e, 2, true);
		char su[600];
		(void)snprintf(su, sizeof su, "postgresql://postgres@/%s?host=%s", e->dbname,
		               getenv("COFFRE_TEST_PG_HOST"));
		o.url = su;
		assert_int_equal(cf_store_open(&o, &st), CF_E_CONFIG);
		assert_non_null(strstr(cf_err_detail(), "row-level security"));
	}
}

static void test_locked_then_recovers(void **state)
{
	/* SQLite: another process holds the write lock. The write waits (busy_timeout),
	 * then fails as store_unavailable with nothing kept; once the lock is gone, the
	 * same store writes again without being reopened. */
	struct engine *e = *state;
	if (e->kind != CF_STORE_SQLITE)
		return; /* PostgreSQL's outage and recovery: tests/integration/t_store.sh */
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	sqlite3 *other = NULL;
	assert_int_equal(sqlite3_open(e->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	struct item a = {"acme", 1, "a", 1, NULL};
	assert_int_equal(cf_store_write_wait(st, "acme", insert_fn, &a), CF_E_STORE_UNAVAILABLE);
	assert_non_null(strstr(cf_err_detail(), "locked"));
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(cf_store_write_wait(st, "acme", insert_fn, &a), CF_OK);
	assert_int_equal(count_as(st, "acme"), 1);
	cf_store_close(&st);
}

/* cf_tx_exec_later: PostgreSQL sends the inserts without waiting, with the COMMIT. */
struct later {
	const char *tenant;
	int64_t ids[2]; /* the same twice: a conflict */
	int64_t seen;   /* later_then_query_fn: the rows its query saw */
};

static cf_err later_fn(struct cf_tx *tx, void *ctx)
{
	const struct later *l = ctx;
	for (int i = 0; i < 2; i++) {
		struct cf_val v[] = {CF_V_TEXT(l->tenant), CF_V_INT(l->ids[i]), CF_V_NULL,
		                     CF_V_TEXT("later")};
		CF_TRY(cf_tx_exec_later(tx, sql_insert, v, 4));
	}
	return CF_OK;
}

static cf_err later_then_query_fn(struct cf_tx *tx, void *ctx)
{
	/* a query after statements sent without waiting sees them (and their failures) */
	CF_TRY(later_fn(tx, ctx));
	return cf_tx_query(tx, sql_count, NULL, 0, count_row, &((struct later *)ctx)->seen);
}

static void test_exec_later(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	/* the conflict fails the whole transaction, with the conflict's own error */
	struct later dup = {"acme", {5, 5}, 0};
	assert_int_equal(cf_store_write_wait(st, "acme", later_fn, &dup), CF_E_CONFLICT);
	assert_int_equal(count_as(st, "acme"), 0);
	/* the connection goes on: the next transaction commits both */
	struct later two = {"acme", {5, 6}, 0};
	assert_int_equal(cf_store_write_wait(st, "acme", later_fn, &two), CF_OK);
	assert_int_equal(count_as(st, "acme"), 2);
	struct later more = {"acme", {7, 8}, 0};
	assert_int_equal(cf_store_write_wait(st, "acme", later_then_query_fn, &more), CF_OK);
	assert_int_equal(more.seen, 4);
	struct later bad = {"acme", {9, 5}, 0};
	assert_int_equal(cf_store_write_wait(st, "acme", later_then_query_fn, &bad), CF_E_CONFLICT);
	assert_int_equal(count_as(st, "acme"), 4);
	if (e->kind == CF_STORE_POSTGRES) {
		/* TI1: the policy holds for what is sent without waiting: rows of another
		 * tenant in acme's transaction are refused, and none is kept */
		struct later other = {"other", {10, 11}, 0};
		assert_int_not_equal(cf_store_write_wait(st, "acme", later_fn, &other), CF_OK);
		assert_int_equal(count_as(st, "other"), 0);
	}
	cf_store_close(&st);
	/* A failure with more sent behind it than its COMMIT: every answer is read, and
	 * the same connection (one writer) serves the next transaction. */
	o.pool = 1;
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	struct later early = {"acme", {5, 12}, 0};
	assert_int_equal(cf_store_write_wait(st, "acme", later_fn, &early), CF_E_CONFLICT);
	struct later after = {"acme", {12, 13}, 0};
	assert_int_equal(cf_store_write_wait(st, "acme", later_fn, &after), CF_OK);
	assert_int_equal(count_as(st, "acme"), 6);
	cf_store_close(&st);
}

/* A read scope: the reads of one request in one read transaction. */
static void test_read_scope(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	struct item a = {"acme", 1, "a", 1, NULL}, b = {"other", 2, "b", 1, NULL};
	assert_int_equal(cf_store_write_wait(st, "acme", insert_fn, &a), CF_OK);
	assert_int_equal(cf_store_write_wait(st, "other", insert_fn, &b), CF_OK);
	assert_true(cf_store_read_scope_begin(st));
	assert_false(cf_store_read_scope_begin(st)); /* one at a time on a thread */
	assert_int_equal(count_as(st, "acme"), e->kind == CF_STORE_POSTGRES ? 1 : 2);
	assert_int_equal(count_as(st, "acme"), e->kind == CF_STORE_POSTGRES ? 1 : 2);
	/* another tenant inside the scope: on PostgreSQL its own transaction and policy */
	assert_int_equal(count_as(st, "other"), e->kind == CF_STORE_POSTGRES ? 1 : 2);
	cf_store_read_scope_end(st);
	assert_int_equal(count_as(st, "acme"), e->kind == CF_STORE_POSTGRES ? 1 : 2);
	assert_true(cf_store_read_scope_begin(st));
	cf_store_read_scope_end(st);
	cf_store_close(&st);
}

/* SQLite: the checkpointer keeps the WAL bounded under a steady write load. */
static cf_err bulk_fn(struct cf_tx *tx, void *ctx)
{
	int64_t *next = ctx;
	static const uint8_t kib[1024] = {1};
	for (int i = 0; i < 16; i++) {
		struct cf_val v[] = {CF_V_TEXT("acme"), CF_V_INT((*next)++),
		                     CF_V_BLOB(kib, sizeof kib), CF_V_NULL};
		CF_TRY(cf_tx_exec(tx, sql_insert, v, 4, NULL));
	}
	return CF_OK;
}

static void test_wal_bounded(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	int64_t next = 1;
	off_t most = 0;
	char wal[300];
	(void)snprintf(wal, sizeof wal, "%s-wal", e->path);
	for (int i = 0; i < 2000; i++) { /* 32 MiB of rows */
		assert_int_equal(cf_store_write_wait(st, "acme", bulk_fn, &next), CF_OK);
		struct stat sb;
		if (stat(wal, &sb) == 0 && sb.st_size > most)
			most = sb.st_size;
	}
	assert_int_equal(count_as(st, "acme"), 2000 * 16);
	/* two thresholds of 1000 pages and what one commit adds: far below 32 MiB */
	assert_true(most > 0);
	assert_true(most < 16 * 1024 * 1024);
	cf_store_close(&st);
}

/* SQLite: another process's long read transaction (a `coffre store check`, an operator's
 * sqlite3) keeps the WAL's frames from being copied back. The writer goes on past twice
 * the threshold, and does not wait on checkpoint passes that copy nothing (before, the
 * two threads took turns at them: writes fell from 13k to 93 a second). Writes go on
 * once the reader ends. A bound of a minute for what takes a second or two: it only
 * catches the stall (in which a write may never come back: SIGALRM then ends the run). */
static void test_wal_long_reader(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	int64_t next = 1;
	assert_int_equal(cf_store_write_wait(st, "acme", bulk_fn, &next), CF_OK);
	sqlite3 *other = NULL;
	assert_int_equal(sqlite3_open_v2(e->path, &other, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(
	        sqlite3_exec(other, "BEGIN; SELECT count(*) FROM items;", NULL, NULL, NULL),
	        SQLITE_OK);
	char wal[300];
	(void)snprintf(wal, sizeof wal, "%s-wal", e->path);
	time_t t0 = time(NULL);
	alarm(90);
	for (int i = 0; i < 1200; i++) /* 19 MiB of rows: past twice the threshold */
		assert_int_equal(cf_store_write_wait(st, "acme", bulk_fn, &next), CF_OK);
	alarm(0);
	assert_true(time(NULL) - t0 < 60);
	struct stat sb;
	assert_int_equal(stat(wal, &sb), 0);
	assert_true(sb.st_size > 16 * 1024 * 1024); /* the reader held it */
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	for (int i = 0; i < 50; i++)
		assert_int_equal(cf_store_write_wait(st, "acme", bulk_fn, &next), CF_OK);
	assert_int_equal(count_as(st, "acme"), 1251 * 16);
	cf_store_close(&st);
}

/* SQLite: the writer's WAL writes are gathered (src/store/sqlite_vfs.c). Commits far
 * larger than its buffer (one of 1 MiB, one of 24 MiB, which spills pages to the WAL
 * before its commit and reads them back), then many small ones, all come back whole to a
 * reader while the writer goes on, and the file checks out after the store is closed
 * and its WAL checkpointed. With a buffer past SQLite's 128 KiB a call, the first
 * commit failed as a full disk. */
struct big {
	int64_t first, n;
	size_t size;
};

static void fill(uint8_t *p, size_t n, int64_t id)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((uint64_t)id * 131u + i * 7u);
}

static cf_err big_fn(struct cf_tx *tx, void *ctx)
{
	const struct big *b = ctx;
	uint8_t *body = malloc(b->size);
	CF_ENSURE(body, CF_E_NOMEM);
	cf_err err = CF_OK;
	for (int64_t id = b->first; err == CF_OK && id < b->first + b->n; id++) {
		fill(body, b->size, id);
		struct cf_val v[] = {CF_V_TEXT("acme"), CF_V_INT(id), CF_V_BLOB(body, b->size),
		                     CF_V_NULL};
		err = cf_tx_exec(tx, sql_insert, v, 4, NULL);
	}
	free(body);
	return err;
}

struct checked {
	int64_t rows, bad;
};

static cf_err check_row(const struct cf_row *row, void *ctx)
{
	struct checked *c = ctx;
	struct cf_span body = cf_row_blob(row, 1);
	uint8_t *want = malloc(body.len ? body.len : 1);
	CF_ENSURE(want, CF_E_NOMEM);
	fill(want, body.len, cf_row_int(row, 0));
	c->rows++;
	if (body.len == 0 || memcmp(want, body.ptr, body.len) != 0)
		c->bad++;
	free(want);
	return CF_OK;
}

static cf_err check_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(tx, "SELECT id, body FROM items ORDER BY id", NULL, 0, check_row, ctx);
}

static void test_large_commits(void **state)
{
	struct engine *e = *state;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	struct big one = {.first = 1, .n = 256, .size = 4096};      /* 1 MiB */
	struct big huge = {.first = 1000, .n = 3000, .size = 8192}; /* 24 MiB */
	assert_int_equal(cf_store_write_wait(st, "acme", big_fn, &one), CF_OK);
	assert_int_equal(cf_store_write_wait(st, "acme", big_fn, &huge), CF_OK);
	for (int64_t i = 0; i < 300; i++) {
		struct big small = {.first = 10000 + i * 3, .n = 3, .size = 700 + (size_t)i};
		assert_int_equal(cf_store_write_wait(st, "acme", big_fn, &small), CF_OK);
		if (i % 100 == 0) {
			struct checked c = {0};
			assert_int_equal(cf_store_read(st, "acme", check_fn, &c), CF_OK);
			assert_int_equal(c.rows, 256 + 3000 + (i + 1) * 3);
			assert_int_equal(c.bad, 0);
		}
	}
	struct checked c = {0};
	assert_int_equal(cf_store_read(st, "acme", check_fn, &c), CF_OK);
	assert_int_equal(c.rows, 256 + 3000 + 900);
	assert_int_equal(c.bad, 0);
	cf_store_close(&st);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(e->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *q = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(q, 0), "ok");
	sqlite3_finalize(q);
	sqlite3_close(db);
}

/* cf_store_append: appends of one tenant queued together share one transaction on
 * PostgreSQL; one that fails there fails no other (each runs again alone), and a
 * tenant's appends never share a transaction with another's (row-level security). */
struct hold {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started, released;
	int done;
};

static cf_err hold_fn(struct cf_tx *tx, void *ctx)
{
	(void)tx;
	struct hold *h = ctx;
	pthread_mutex_lock(&h->lock);
	h->started = true;
	pthread_cond_broadcast(&h->cond);
	while (!h->released)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
	return CF_OK;
}

struct app {
	struct hold *h;
	const char *tenant;
	int64_t id;
	int runs;
	cf_err result;
};

static cf_err app_fn(struct cf_tx *tx, void *ctx)
{
	struct app *a = ctx;
	a->runs++;
	struct cf_val v[] = {CF_V_TEXT(a->tenant), CF_V_INT(a->id), CF_V_NULL, CF_V_TEXT("app")};
	return cf_tx_exec_later(tx, sql_insert, v, 4); /* a conflict shows at the commit */
}

static void app_done(void *ctx, cf_err result)
{
	struct app *a = ctx;
	pthread_mutex_lock(&a->h->lock);
	a->result = result;
	a->h->done++;
	pthread_cond_broadcast(&a->h->cond);
	pthread_mutex_unlock(&a->h->lock);
}

static void hold_done(void *ctx, cf_err result)
{
	struct hold *h = ctx;
	assert_int_equal(result, CF_OK);
	pthread_mutex_lock(&h->lock);
	h->done++;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/* Holds the only writer, queues the n appends behind it, lets it go, waits for all. */
static void appends_queued(struct cf_store *st, struct app *a, int n)
{
	struct hold h = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	assert_int_equal(cf_store_write(st, NULL, hold_fn, hold_done, &h), CF_OK);
	pthread_mutex_lock(&h.lock);
	while (!h.started)
		pthread_cond_wait(&h.cond, &h.lock);
	pthread_mutex_unlock(&h.lock);
	for (int i = 0; i < n; i++) {
		a[i].h = &h;
		assert_int_equal(cf_store_append(st, a[i].tenant, app_fn, app_done, &a[i]), CF_OK);
	}
	pthread_mutex_lock(&h.lock);
	h.released = true;
	pthread_cond_broadcast(&h.cond);
	while (h.done < n + 1)
		pthread_cond_wait(&h.cond, &h.lock);
	pthread_mutex_unlock(&h.lock);
}

static cf_err xmins_fn(struct cf_tx *tx, void *ctx)
{
	/* how many transactions wrote acme's rows */
	return cf_tx_query(tx, "SELECT count(DISTINCT xmin::text) FROM items", NULL, 0, count_row,
	                   ctx);
}

static void test_appends_share(void **state)
{
	struct engine *e = *state;
	bool pg = e->kind == CF_STORE_POSTGRES;
	struct cf_store *st = NULL;
	struct cf_store_opts o = opts_for(e, 2, true);
	o.pool = 1;
	assert_int_equal(cf_store_open(&o, &st), CF_OK);
	/* ten queued together: all kept, each run once, on PostgreSQL in one transaction */
	struct app a[10];
	for (int i = 0; i < 10; i++)
		a[i] = (struct app){.tenant = "acme", .id = i + 1};
	appends_queued(st, a, 10);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(a[i].result, CF_OK);
		assert_int_equal(a[i].runs, 1);
	}
	assert_int_equal(count_as(st, "acme"), 10);
	int64_t xmins = 0;
	if (pg) {
		assert_int_equal(cf_store_read(st, "acme", xmins_fn, &xmins), CF_OK);
		assert_int_equal(xmins, 1);
	}
	/* one of five conflicts (at the commit): it alone fails, the four are kept; on
	 * PostgreSQL each ran twice, first together, then alone */
	struct app b[5];
	for (int i = 0; i < 5; i++)
		b[i] = (struct app){.tenant = "acme", .id = i == 2 ? 1 : 11 + i};
	appends_queued(st, b, 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(b[i].result, i == 2 ? CF_E_CONFLICT : CF_OK);
		assert_int_equal(b[i].runs, pg ? 2 : 1);
	}
	assert_int_equal(count_as(st, "acme"), 14);
	/* another tenant's append between acme's: three transactions, none refused (were
	 * they one, row-level security would refuse it, and each would run twice) */
	struct app c[3] = {{.tenant = "acme", .id = 20},
	                   {.tenant = "other", .id = 21},
	                   {.tenant = "acme", .id = 22}};
	appends_queued(st, c, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c[i].result, CF_OK);
		assert_int_equal(c[i].runs, 1);
	}
	/* (SQLite has no row-level security: its count is every tenant's) */
	assert_int_equal(count_as(st, "acme"), pg ? 16 : 17);
	assert_int_equal(count_as(st, "other"), pg ? 1 : 17);
	cf_store_close(&st);
}

#define T(f) cmocka_unit_test_setup(f, fresh)
static const struct CMUnitTest tests[] = {
        T(test_open_and_migrate),
        T(test_migrate_false_refuses),
        T(test_migration_rolls_back),
        T(test_values_round_trip),
        T(test_conflict_rolls_back_request),
        T(test_refusal_reaches_caller),
        T(test_concurrent_group_commit),
        T(test_tenant_isolation),
        T(test_bad_urls),
        T(test_locked_then_recovers),
        T(test_exec_later),
        T(test_read_scope),
        T(test_appends_share),
};
/* SQLite's alone */
static const struct CMUnitTest sqlite_tests[] = {
        T(test_wal_bounded),
        T(test_wal_long_reader),
        T(test_large_commits),
};

int main(void)
{
	int failed = cmocka_run_group_tests_name("store_sqlite", tests, setup_sqlite, teardown);
	failed += cmocka_run_group_tests_name("store_sqlite_wal", sqlite_tests, setup_sqlite,
	                                      teardown);
	failed += cmocka_run_group_tests_name("store_postgres", tests, setup_postgres, teardown);
	return failed;
}
