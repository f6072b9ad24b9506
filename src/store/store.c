/* coffre — store: the engine-neutral part (URL dispatch, waiting writes, rows). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

cf_err cf_store_check_migrations(const struct cf_migration *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].version != (int)i + 1 || !m[i].name || !m[i].sqlite || !m[i].postgres)
			return cf_err_fail(CF_E_INTERNAL,
			                   "migration %zu is malformed (versions must run "
			                   "1, 2, 3... and name both dialects)",
			                   i);
	return CF_OK;
}

cf_err cf_store_open(const struct cf_store_opts *opts, struct cf_store **out)
{
	CF_TRY(cf_store_check_migrations(opts->migrations, opts->nmigrations));
	if (!opts->url)
		return cf_err_fail(CF_E_CONFIG, "store.url is not set");
	struct cf_store *st = calloc(1, sizeof *st);
	if (!st)
		return CF_E_NOMEM;
	cf_err err;
	if (strncmp(opts->url, "sqlite:", 7) == 0 && opts->url[7]) {
		st->engine = CF_STORE_SQLITE;
		err = cf_sqlite_open(opts, opts->url + 7, st);
	} else if (strncmp(opts->url, "postgres://", 11) == 0 ||
	           strncmp(opts->url, "postgresql://", 13) == 0) {
		st->engine = CF_STORE_POSTGRES;
		err = cf_postgres_open(opts, st);
	} else {
		err = cf_err_fail(CF_E_CONFIG,
		                  "store.url must be sqlite:PATH or postgres://... (got a URL of "
		                  "another kind)");
	}
	if (err) {
		free(st);
		return err;
	}
	*out = st;
	return CF_OK;
}

void cf_store_close(struct cf_store **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_store *st = *pp;
	*pp = NULL;
	st->ops->close(st);
	free(st);
}

enum cf_store_engine cf_store_engine(const struct cf_store *st)
{
	return st->engine;
}

int cf_store_schema_version(const struct cf_store *st)
{
	return st->schema_version;
}

cf_err cf_store_write(struct cf_store *st, const char *tenant, cf_store_fn fn,
                      cf_store_done_fn done, void *ctx)
{
	return st->ops->write(st, tenant, fn, done, ctx);
}

cf_err cf_store_append(struct cf_store *st, const char *tenant, cf_store_fn fn,
                       cf_store_done_fn done, void *ctx)
{
	return st->ops->append ? st->ops->append(st, tenant, fn, done, ctx)
	                       : st->ops->write(st, tenant, fn, done, ctx);
}

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	cf_err result;
	struct cf_err_saved why;
};

static void wake(void *ctx, cf_err result)
{
	struct waiter *w = ctx;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->result = result;
	/* the detail was set on the writer's thread: carry it to the waiting one */
	cf_err_save(&w->why, result);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

struct wait_call {
	cf_store_fn fn;
	void *ctx;
	struct waiter w;
};

static cf_err wait_fn(struct cf_tx *tx, void *ctx)
{
	struct wait_call *c = ctx;
	return c->fn(tx, c->ctx);
}

static void wait_done(void *ctx, cf_err result)
{
	wake(&((struct wait_call *)ctx)->w, result);
}

cf_err cf_store_write_wait(struct cf_store *st, const char *tenant, cf_store_fn fn, void *ctx)
{
	struct wait_call c = {.fn = fn, .ctx = ctx};
	pthread_mutex_init(&c.w.lock, NULL);
	pthread_cond_init(&c.w.cond, NULL);
	cf_err err = st->ops->write(st, tenant, wait_fn, wait_done, &c);
	if (err == CF_OK) {
		pthread_mutex_lock(&c.w.lock);
		while (!c.w.done)
			pthread_cond_wait(&c.w.cond, &c.w.lock);
		pthread_mutex_unlock(&c.w.lock);
		err = c.w.result;
		if (err)
			cf_err_restore(&c.w.why);
	}
	pthread_cond_destroy(&c.w.cond);
	pthread_mutex_destroy(&c.w.lock);
	return err;
}

cf_err cf_store_read(struct cf_store *st, const char *tenant, cf_store_fn fn, void *ctx)
{
	return st->ops->read(st, tenant, fn, ctx);
}

bool cf_store_read_scope_begin(struct cf_store *st)
{
	return st->ops->scope_begin && st->ops->scope_begin(st);
}

void cf_store_read_scope_end(struct cf_store *st)
{
	if (st->ops->scope_end)
		st->ops->scope_end(st);
}

cf_err cf_tx_exec(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                  int64_t *changes)
{
	return tx->st->ops->exec(tx, sql, args, nargs, changes);
}

cf_err cf_tx_exec_later(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs)
{
	if (tx->st->ops->exec_later)
		return tx->st->ops->exec_later(tx, sql, args, nargs);
	return tx->st->ops->exec(tx, sql, args, nargs, NULL);
}

cf_err cf_tx_query(struct cf_tx *tx, const char *sql, const struct cf_val *args, size_t nargs,
                   cf_row_fn fn, void *ctx)
{
	return tx->st->ops->query(tx, sql, args, nargs, fn, ctx);
}

const char *cf_tx_tenant(const struct cf_tx *tx)
{
	return tx->tenant;
}

enum cf_store_engine cf_tx_engine(const struct cf_tx *tx)
{
	return tx->st->engine;
}

uint64_t cf_tx_epoch(const struct cf_tx *tx)
{
	return tx->st->ops->epoch ? tx->st->ops->epoch(tx) : 0;
}

unsigned cf_row_count(const struct cf_row *row)
{
	return row->ncols;
}

bool cf_row_is_null(const struct cf_row *row, unsigned col)
{
	if (col >= row->ncols)
		return true;
	return row->engine == CF_STORE_SQLITE ? cf_sqlite_row_is_null(row, col)
	                                      : cf_postgres_row_is_null(row, col);
}

int64_t cf_row_int(const struct cf_row *row, unsigned col)
{
	if (col >= row->ncols)
		return 0;
	return row->engine == CF_STORE_SQLITE ? cf_sqlite_row_int(row, col)
	                                      : cf_postgres_row_int(row, col);
}

struct cf_span cf_row_blob(const struct cf_row *row, unsigned col)
{
	if (col >= row->ncols)
		return (struct cf_span){NULL, 0};
	return row->engine == CF_STORE_SQLITE ? cf_sqlite_row_blob(row, col)
	                                      : cf_postgres_row_blob(row, col);
}

cf_err cf_store_check(struct cf_store *st, struct cf_store_check *out)
{
	*out = (struct cf_store_check){0};
	return st->ops->check(st, out);
}

cf_err cf_connpool_init(struct cf_connpool *p, unsigned max, cf_err (*open)(void *, void **),
                        void (*close)(void *), void *ctx)
{
	*p = (struct cf_connpool){.max = max ? max : 1, .open = open, .close = close, .ctx = ctx};
	p->idle = calloc(p->max, sizeof *p->idle);
	if (!p->idle)
		return CF_E_NOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	return CF_OK;
}

cf_err cf_connpool_take(struct cf_connpool *p, void **out)
{
	pthread_mutex_lock(&p->lock);
	while (p->nidle == 0 && p->nopen >= p->max)
		pthread_cond_wait(&p->freed, &p->lock);
	if (p->nidle > 0) {
		*out = p->idle[--p->nidle];
		pthread_mutex_unlock(&p->lock);
		return CF_OK;
	}
	p->nopen++; /* opened outside the lock: connecting may take a while */
	pthread_mutex_unlock(&p->lock);
	void *conn = NULL;
	cf_err err = p->open(p->ctx, &conn);
	if (err == CF_OK && !conn)
		err = CF_E_INTERNAL;
	if (err) {
		pthread_mutex_lock(&p->lock);
		p->nopen--;
		pthread_cond_signal(&p->freed);
		pthread_mutex_unlock(&p->lock);
		return err;
	}
	*out = conn;
	return CF_OK;
}

void cf_connpool_give(struct cf_connpool *p, void *conn)
{
	pthread_mutex_lock(&p->lock);
	p->idle[p->nidle++] = conn;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->lock);
}

void cf_connpool_destroy(struct cf_connpool *p)
{
	if (!p->idle)
		return;
	while (p->nidle > 0)
		p->close(p->idle[--p->nidle]);
	free(p->idle);
	p->idle = NULL;
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
}

cf_err cf_store_scrub(struct cf_store *st)
{
	return st->ops->scrub ? st->ops->scrub(st) : CF_OK;
}
