/* coffre — the work pool: a bounded queue served by a few threads.
 * This is how I/O threads hand work away (DESIGN §2): the HTTP layer suspends the
 * connection, submits the job, and the job resumes the connection when it is done. The
 * queue is bounded: when it is full, submit says CF_E_BUSY and the request gets 503 at
 * once, rather than piling up latency nobody will wait for. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

struct pool_job {
	cf_pool_fn fn;
	void *arg;
};

struct cf_pool {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	struct pool_job *ring;
	unsigned cap, head, count, running;
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;
	char name[16];
};

static void *pool_main(void *p)
{
	struct cf_pool *pool = p;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (pool->count == 0 && !pool->stopping)
			pthread_cond_wait(&pool->nonempty, &pool->lock);
		if (pool->count == 0 && pool->stopping)
			break;
		struct pool_job job = pool->ring[pool->head];
		pool->head = (pool->head + 1) % pool->cap;
		pool->count--;
		pool->running++;
		pthread_mutex_unlock(&pool->lock);
		job.fn(job.arg);
		pthread_mutex_lock(&pool->lock);
		pool->running--;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

cf_err cf_pool_new(const char *name, unsigned threads, unsigned queue_max, struct cf_pool **out)
{
	if (threads == 0 || threads > CF_POOL_THREADS_MAX || queue_max == 0 ||
	    queue_max > CF_POOL_QUEUE_MAX)
		return cf_err_fail(CF_E_INVALID, "pool %s: %u threads, queue %u out of range", name,
		                   threads, queue_max);
	struct cf_pool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return CF_E_NOMEM;
	pool->ring = calloc(queue_max, sizeof *pool->ring);
	pool->threads = calloc(threads, sizeof *pool->threads);
	if (!pool->ring || !pool->threads) {
		free(pool->ring);
		free(pool->threads);
		free(pool);
		return CF_E_NOMEM;
	}
	pool->cap = queue_max;
	(void)snprintf(pool->name, sizeof pool->name, "%s", name);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->nonempty, NULL);
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, pool_main, pool) != 0) {
			pool->nthreads = i;
			cf_pool_free(&pool);
			return cf_err_fail(CF_E_NOMEM, "pool %s: cannot start thread %u", name, i);
		}
		char tname[16];
		(void)snprintf(tname, sizeof tname, "%.10s-%u", pool->name, i);
		pthread_setname_np(pool->threads[i], tname);
	}
	pool->nthreads = threads;
	*out = pool;
	return CF_OK;
}

cf_err cf_pool_submit(struct cf_pool *pool, cf_pool_fn fn, void *arg)
{
	cf_err err = CF_OK;
	pthread_mutex_lock(&pool->lock);
	if (pool->stopping)
		err = CF_E_SHUTTING_DOWN;
	else if (pool->count == pool->cap)
		err = CF_E_BUSY;
	else {
		pool->ring[(pool->head + pool->count) % pool->cap] = (struct pool_job){fn, arg};
		pool->count++;
		pthread_cond_signal(&pool->nonempty);
	}
	pthread_mutex_unlock(&pool->lock);
	return err;
}

void cf_pool_free(struct cf_pool **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_pool *pool = *pp;
	*pp = NULL;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true; /* workers drain what is queued, then exit */
	pthread_cond_broadcast(&pool->nonempty);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_cond_destroy(&pool->nonempty);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool->ring);
	free(pool);
}
