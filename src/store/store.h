/* coffre — store: durable state on SQLite (embedded default) or PostgreSQL, behind one
 * interface (DESIGN §7). The rest of coffre never knows which engine it talks to.
 *
 * SQL: every statement is a string literal in coffre's source with numbered parameters
 * ($1, $2, ...) bound at run time; nothing is ever built from input. Each engine
 * prepares a statement once per connection and keeps it (keyed by the literal).
 *
 * Writes run on the engine's writer: for SQLite one thread that commits requests in
 * groups (each request inside its own SAVEPOINT, so a failing request rolls back alone,
 * and one fsync makes the whole group durable); for PostgreSQL one transaction per
 * request on a pooled connection. Either way `done` is called only once the write is
 * durable (or has failed), which is what lets the HTTP layer answer only then.
 *
 * Tenants: every write and read names its tenant (NULL for deployment-wide work). On
 * PostgreSQL the transaction sets `coffre.tenant`, and row-level security policies deny
 * every tenant-data row when it is unset or different. */
#ifndef CF_STORE_H
#define CF_STORE_H

#include "base/base.h"

struct cf_store;
struct cf_tx;
struct cf_row;

enum cf_store_engine { CF_STORE_SQLITE, CF_STORE_POSTGRES };

/* A numbered schema change. Each runs in one transaction with its version record, so a
 * migration is applied whole or not at all. The two texts say the same in each dialect
 * (several statements separated by ';' are allowed). */
struct cf_migration {
	int version; /* 1, 2, 3, ... without gaps */
	const char *name;
	const char *sqlite;
	const char *postgres;
};

struct cf_store_opts {
	const char *url;         /* "sqlite:/path/db" or "postgres://user@host/db?..." */
	const char *migrate_url; /* PostgreSQL: the tables' owner, for migrations (NULL: url) */
	const struct cf_migration *migrations;
	size_t nmigrations;
	unsigned readers;   /* reader connections (0: 4) */
	unsigned pool;      /* PostgreSQL write connections (0: 4) */
	unsigned group_max; /* SQLite: most requests in one commit group (0: 1024) */
	bool migrate;       /* apply missing migrations at open (else refuse to open) */
};

/* Opens (creating a SQLite file if needed), checks the schema version, and starts the
 * writer. Errors: CF_E_STORE_UNAVAILABLE (cannot connect; detail names why),
 * CF_E_STORE_SCHEMA (the database is newer than this coffre, or older and migrate is
 * false), CF_E_STORE_MIGRATION (a migration failed; nothing of it was kept), CF_E_CONFIG
 * (a malformed URL). */
CF_MUST cf_err cf_store_open(const struct cf_store_opts *opts, struct cf_store **out);
/* Finishes every queued write (calling its done), stops the writer, closes everything.
 * Accepts NULL. */
void cf_store_close(struct cf_store **pp);
enum cf_store_engine cf_store_engine(const struct cf_store *st);
/* The schema version the database is at. */
int cf_store_schema_version(const struct cf_store *st);

/* Work inside a transaction. Returning an error rolls back what fn did (and only that). */
typedef cf_err (*cf_store_fn)(struct cf_tx *tx, void *ctx);
/* Called once the write is durable (result CF_OK) or has failed; on the writer's
 * thread, so it must only hand the result on (resume a connection, signal a waiter). */
typedef void (*cf_store_done_fn)(void *ctx, cf_err result);

/* Queues a write. CF_E_BUSY when the writer's queue is full (the caller answers 503),
 * CF_E_STORE_UNAVAILABLE after close. When it returns CF_OK, done will be called
 * exactly once. tenant may be NULL (deployment-wide rows only). */
CF_MUST cf_err cf_store_write(struct cf_store *st, const char *tenant, cf_store_fn fn,
                              cf_store_done_fn done, void *ctx);
/* The same for a write that only adds rows no other write touches (an audit entry), and
 * that may run twice: the engine may commit it in one transaction with other appends of
 * the same tenant. Should that transaction fail, each runs again in one of its own, so
 * that each has its own outcome. SQLite: cf_store_write (its group commit shares
 * already). */
CF_MUST cf_err cf_store_append(struct cf_store *st, const char *tenant, cf_store_fn fn,
                               cf_store_done_fn done, void *ctx);
/* The same, waiting for the result: for start-up, the command line and tests. */
CF_MUST cf_err cf_store_write_wait(struct cf_store *st, const char *tenant, cf_store_fn fn,
                                   void *ctx);
/* Runs fn in a read-only transaction on a reader connection, on the calling thread. */
CF_MUST cf_err cf_store_read(struct cf_store *st, const char *tenant, cf_store_fn fn, void *ctx);
/* A read scope: from begin to end, every cf_store_read of st on this thread runs in one
 * read transaction, so a request's reads (its caller, then its data) see one snapshot
 * and cost one transaction. A write made meanwhile is not seen by the scope's later
 * reads: open one only around work that reads, then writes last. begin returns false
 * (end is then not called) when the engine has none (PostgreSQL: each read sets its
 * tenant) or one could not be opened; reads then run one by one as ever. */
bool cf_store_read_scope_begin(struct cf_store *st);
void cf_store_read_scope_end(struct cf_store *st);

/* Values bound to parameters. Text and blobs are borrowed for the call. */
enum cf_val_type { CF_VAL_NULL, CF_VAL_INT, CF_VAL_TEXT, CF_VAL_BLOB };
struct cf_val {
	enum cf_val_type type;
	int64_t i;
	const void *p;
	size_t n;
};
#define CF_V_NULL         ((struct cf_val){.type = CF_VAL_NULL})
#define CF_V_INT(x)       ((struct cf_val){.type = CF_VAL_INT, .i = (int64_t)(x)})
#define CF_V_TEXT(s)      ((struct cf_val){.type = CF_VAL_TEXT, .p = (s), .n = strlen(s)})
#define CF_V_BLOB(b, len) ((struct cf_val){.type = CF_VAL_BLOB, .p = (b), .n = (len)})

/* Runs a statement; *changes (may be NULL) gets the number of rows it changed.
 * CF_E_CONFLICT for a unique or foreign-key violation, CF_E_STORE_UNAVAILABLE when the
 * engine is gone, CF_E_IO otherwise (detail from the engine, never the values). */
CF_MUST cf_err cf_tx_exec(struct cf_tx *tx, const char *sql, const struct cf_val *args,
                          size_t nargs, int64_t *changes);
/* The same, in a write transaction, for a statement nothing depends on but the
 * transaction's outcome: PostgreSQL sends it without waiting (pipelined with the next
 * ones and the COMMIT: one round trip for them all), and its failure fails the
 * transaction, with the same error, when it commits or when a later statement waits;
 * SQLite runs it at once. A caller that branches on the error uses cf_tx_exec. */
CF_MUST cf_err cf_tx_exec_later(struct cf_tx *tx, const char *sql, const struct cf_val *args,
                                size_t nargs);
/* Runs a query and calls fn for each row; fn returning an error stops and returns it. */
typedef cf_err (*cf_row_fn)(const struct cf_row *row, void *ctx);
CF_MUST cf_err cf_tx_query(struct cf_tx *tx, const char *sql, const struct cf_val *args,
                           size_t nargs, cf_row_fn fn, void *ctx);
/* The tenant the transaction runs for (NULL for deployment-wide work). */
const char *cf_tx_tenant(const struct cf_tx *tx);
/* The engine the transaction runs on. */
enum cf_store_engine cf_tx_engine(const struct cf_tx *tx);
/* What a writer may remember from one of its transactions to the next: the same number
 * while everything committed since is this writer's own and stands; another number once
 * a write was rolled back (a request's or a group's) or another process wrote to the
 * database. Unique in the process (no two stores share one). 0: nothing may be
 * remembered (PostgreSQL, or not the writer). Read by the writer's thread only. */
uint64_t cf_tx_epoch(const struct cf_tx *tx);

/* Row access: columns from 0. Text and blobs are borrowed until fn returns. */
unsigned cf_row_count(const struct cf_row *row);
bool cf_row_is_null(const struct cf_row *row, unsigned col);
int64_t cf_row_int(const struct cf_row *row, unsigned col);
struct cf_span cf_row_blob(const struct cf_row *row, unsigned col); /* text too */

/* After deleting secrets (crypto-shredding): makes the engine overwrite what it still
 * holds of deleted rows where it can. SQLite (secure_delete is always on): checkpoints
 * the WAL into the database and truncates it, so the only copies left are the zeroed
 * pages. PostgreSQL has no such control: returns CF_OK (docs/keys.md says what that
 * means). */
CF_MUST cf_err cf_store_scrub(struct cf_store *st);

/* What `coffre store check` reports. */
struct cf_store_check {
	bool integrity_ok;
	char integrity[256]; /* "ok" or the engine's first complaint */
	char settings[512];  /* the engine settings that matter, "name=value, ..." */
	bool settings_ok;    /* every one is as coffre needs it */
};
CF_MUST cf_err cf_store_check(struct cf_store *st, struct cf_store_check *out);

/* coffre's own schema (schema.c), and opening a store with it; pool: PostgreSQL's write
 * connections (0: the engine's default, store.pool). */
extern const struct cf_migration cf_store_schema[];
extern const size_t cf_store_schema_count;
CF_MUST cf_err cf_store_open_coffre(const char *url, const char *migrate_url, bool migrate,
                                    unsigned pool, struct cf_store **out);

#endif
