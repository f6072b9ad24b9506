/* coffre — store internals shared by the engines. Not part of the store's face. */
#ifndef CF_STORE_INTERNAL_H
#define CF_STORE_INTERNAL_H

#include <pthread.h>

#include "store/store.h"

struct cf_store_ops {
	cf_err (*write)(struct cf_store *st, const char *tenant, cf_store_fn fn,
	                cf_store_done_fn done, void *ctx);
	/* NULL: write */
	cf_err (*append)(struct cf_store *st, const char *tenant, cf_store_fn fn,
	                 cf_store_done_fn done, void *ctx);
	cf_err (*read)(struct cf_store *st, const char *tenant, cf_store_fn fn, void *ctx);
	cf_err (*exec)(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
	               int64_t *changes);
	cf_err (*query)(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
	                cf_row_fn fn, void *ctx);
	/* NULL: exec, at once */
	cf_err (*exec_later)(struct cf_tx *tx, const char *sql, const struct cf_val *args,
	                     size_t nargs);
	cf_err (*check)(struct cf_store *st, struct cf_store_check *out);
	cf_err (*scrub)(struct cf_store *st);     /* NULL: nothing to do */
	bool (*scope_begin)(struct cf_store *st); /* NULL: no read scopes */
	void (*scope_end)(struct cf_store *st);
	void (*close)(struct cf_store *st);
	uint64_t (*epoch)(const struct cf_tx *tx); /* NULL: always 0 */
};

struct cf_store {
	const struct cf_store_ops *ops;
	enum cf_store_engine engine;
	int schema_version;
	void *impl;
};

struct cf_tx {
	struct cf_store *st;
	const char *tenant;
	void *conn; /* the engine's connection */
};

struct cf_row {
	enum cf_store_engine engine;
	void *impl; /* sqlite3_stmt *, or PGresult * */
	int index;  /* PostgreSQL: the row number */
	unsigned ncols;
};

cf_err cf_sqlite_open(const struct cf_store_opts *opts, const char *path, struct cf_store *st);
cf_err cf_postgres_open(const struct cf_store_opts *opts, struct cf_store *st);
/* The name of the VFS the SQLite writer opens its database with (sqlite_vfs.c: the
 * default VFS, with each commit's WAL writes gathered into one), registered at the first
 * call; NULL (the default VFS) if it could not be. Thread-safe. */
const char *cf_sqlite_gather_vfs(void);

/* Row accessors per engine (store.c dispatches). */
bool cf_sqlite_row_is_null(const struct cf_row *row, unsigned col);
int64_t cf_sqlite_row_int(const struct cf_row *row, unsigned col);
struct cf_span cf_sqlite_row_blob(const struct cf_row *row, unsigned col);
bool cf_postgres_row_is_null(const struct cf_row *row, unsigned col);
int64_t cf_postgres_row_int(const struct cf_row *row, unsigned col);
struct cf_span cf_postgres_row_blob(const struct cf_row *row, unsigned col);

/* A bounded pool of reader connections, opened on demand and kept (store.c); both
 * engines use it. take waits when max connections are all in use. Thread-safe. */
struct cf_connpool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	void **idle; /* a stack of idle connections */
	unsigned nidle, nopen, max;
	cf_err (*open)(void *ctx, void **out);
	void (*close)(void *conn);
	void *ctx;
};
cf_err cf_connpool_init(struct cf_connpool *p, unsigned max, cf_err (*open)(void *, void **),
                        void (*close)(void *), void *ctx);
cf_err cf_connpool_take(struct cf_connpool *p, void **out);
void cf_connpool_give(struct cf_connpool *p, void *conn);
/* Closes the idle connections; every taken one must have been given back. */
void cf_connpool_destroy(struct cf_connpool *p);

/* Checks the migration list: versions 1..n without gaps, both dialects present. */
cf_err cf_store_check_migrations(const struct cf_migration *m, size_t n);

#endif
