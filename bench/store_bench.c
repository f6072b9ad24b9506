/* Store benchmark driver (bench/store.sh runs it). Each mode runs THREADS closed-loop
 * writers for SECONDS and prints "MODE THREADS writes_per_s":
 *   raw-sync FILE      one 256-byte append + fdatasync per record (the per-sync ceiling)
 *   raw-shared FILE    appends queued by the threads, one syncer writing and syncing all
 *                      pending records at once, then acknowledging them (the ceiling for
 *                      any group commit)
 *   sqlite-txn PATH    plain SQLite, WAL, synchronous=FULL, one row per transaction, one
 *                      connection per thread (what an application would do by itself)
 *   store URL          coffre's store interface: THREADS writes always in flight, each
 *                      completion (durable) submitting the next, as coffred's suspended
 *                      requests do (no thread waits per request) */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"

static atomic_long done_count;
static atomic_bool stop;
static atomic_int in_flight;
static const char *mode, *target;
static int nthreads;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* raw-sync: every thread writes and syncs alone (the file is shared, as a log would be) */
static int raw_fd;
static void *raw_sync_main(void *arg)
{
	(void)arg;
	char rec[256];
	memset(rec, 'r', sizeof rec);
	while (!atomic_load(&stop)) {
		if (write(raw_fd, rec, sizeof rec) != (ssize_t)sizeof rec || fdatasync(raw_fd) != 0)
			abort();
		atomic_fetch_add(&done_count, 1);
	}
	return NULL;
}

/* raw-shared: a queue of pending records; one syncer takes them all, writes, syncs, acks */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER, ack_cond = PTHREAD_COND_INITIALIZER;
static long q_pending, q_epoch_written, q_epoch_next = 1;

static void *raw_syncer(void *arg)
{
	(void)arg;
	static char buf[256 * 4096];
	memset(buf, 's', sizeof buf);
	pthread_mutex_lock(&q_lock);
	while (!atomic_load(&stop)) {
		while (q_pending == 0 && !atomic_load(&stop))
			pthread_cond_wait(&q_cond, &q_lock);
		long n = q_pending, epoch = q_epoch_next;
		q_pending = 0;
		q_epoch_next++;
		pthread_mutex_unlock(&q_lock);
		size_t bytes = (size_t)(n > 4096 ? 4096 : n) * 256;
		if (n && (write(raw_fd, buf, bytes) != (ssize_t)bytes || fdatasync(raw_fd) != 0))
			abort();
		atomic_fetch_add(&done_count, n);
		pthread_mutex_lock(&q_lock);
		q_epoch_written = epoch;
		pthread_cond_broadcast(&ack_cond);
	}
	pthread_cond_broadcast(&ack_cond);
	pthread_mutex_unlock(&q_lock);
	return NULL;
}

static void *raw_shared_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&q_lock);
	while (!atomic_load(&stop)) {
		long mine = q_epoch_next;
		q_pending++;
		pthread_cond_signal(&q_cond);
		while (q_epoch_written < mine && !atomic_load(&stop))
			pthread_cond_wait(&ack_cond, &q_lock);
	}
	pthread_mutex_unlock(&q_lock);
	return NULL;
}

static void *sqlite_main(void *arg)
{
	(void)arg;
	sqlite3 *db;
	if (sqlite3_open(target, &db) != SQLITE_OK)
		abort();
	sqlite3_exec(db,
	             "PRAGMA busy_timeout=60000; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
	             NULL, NULL, NULL);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "INSERT INTO bench (payload) VALUES (?1)", -1, &st, NULL) !=
	    SQLITE_OK)
		abort();
	char rec[256];
	memset(rec, 'q', sizeof rec);
	while (!atomic_load(&stop)) {
		/* one row, one transaction (autocommit) */
		sqlite3_bind_blob(st, 1, rec, sizeof rec, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE)
			atomic_fetch_add(&done_count, 1);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return NULL;
}

static const struct cf_migration bench_migs[] = {
        {1, "bench", "CREATE TABLE bench (id INTEGER PRIMARY KEY, payload BLOB NOT NULL) STRICT",
         "CREATE TABLE bench (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL);"
         "GRANT SELECT, INSERT ON bench TO coffre_runtime;"
         "GRANT USAGE ON SEQUENCE bench_id_seq TO coffre_runtime"},
};
static struct cf_store *store;

struct waiter {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
};

static cf_err put(struct cf_tx *tx, void *ctx)
{
	(void)ctx;
	static const char q[] = "INSERT INTO bench (payload) VALUES ($1)";
	static const char rec[256] = {1};
	struct cf_val v = CF_V_BLOB(rec, sizeof rec);
	return cf_tx_exec(tx, q, &v, 1, NULL);
}

static void put_done(void *ctx, cf_err r)
{
	struct waiter *w = ctx;
	if (r == CF_OK)
		atomic_fetch_add(&done_count, 1);
	pthread_mutex_lock(&w->m);
	w->done = true;
	pthread_cond_signal(&w->c);
	pthread_mutex_unlock(&w->m);
}

/* In-flight writes: each completion submits the next until the run stops. */
static void flight_done(void *ctx, cf_err r);
static void flight_submit(void *ctx)
{
	while (!atomic_load(&stop)) {
		cf_err e = cf_store_write(store, NULL, put, flight_done, ctx);
		if (e == CF_OK)
			return;
		if (e != CF_E_BUSY)
			break;
		usleep(100);
	}
	atomic_fetch_sub(&in_flight, 1);
}

static void flight_done(void *ctx, cf_err r)
{
	if (r == CF_OK)
		atomic_fetch_add(&done_count, 1);
	flight_submit(ctx);
}

static void *store_main(void *arg)
{
	(void)arg;
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
	while (!atomic_load(&stop)) {
		w.done = false;
		if (cf_store_write(store, NULL, put, put_done, &w) != CF_OK)
			continue;
		pthread_mutex_lock(&w.m);
		while (!w.done)
			pthread_cond_wait(&w.c, &w.m);
		pthread_mutex_unlock(&w.m);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: store_bench MODE TARGET THREADS SECONDS\n");
		return 2;
	}
	mode = argv[1];
	target = argv[2];
	nthreads = (int)strtol(argv[3], NULL, 10);
	double secs = strtod(argv[4], NULL);
	if (nthreads < 1 || nthreads > 256)
		return 2;
	void *(*fn)(void *) = NULL;
	pthread_t syncer;
	if (strcmp(mode, "raw-sync") == 0 || strcmp(mode, "raw-shared") == 0) {
		raw_fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		if (raw_fd < 0)
			return 1;
		fn = mode[4] == 's' && mode[5] == 'y' ? raw_sync_main : raw_shared_main;
		if (fn == raw_shared_main)
			pthread_create(&syncer, NULL, raw_syncer, NULL);
	} else if (strcmp(mode, "sqlite-txn") == 0) {
		sqlite3 *db;
		sqlite3_open(target, &db);
		sqlite3_exec(db,
		             "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS bench (id "
		             "INTEGER PRIMARY KEY, payload BLOB NOT NULL)",
		             NULL, NULL, NULL);
		sqlite3_close(db);
		fn = sqlite_main;
	} else if (strcmp(mode, "store") == 0) {
		cf_log_set_level(CF_LOG_WARN);
		struct cf_store_opts o = {
		        .url = target,
		        .migrate_url = getenv("BENCH_OWNER_URL"),
		        .migrations = bench_migs,
		        .nmigrations = 1,
		        .migrate = true,
		        /* the engine's default pool unless BENCH_PG_POOL says */
		        .pool = getenv("BENCH_PG_POOL")
		                        ? (unsigned)strtoul(getenv("BENCH_PG_POOL"), NULL, 10)
		                        : 0};
		if (cf_store_open(&o, &store) != CF_OK) {
			fprintf(stderr, "store_bench: %s\n", cf_err_detail());
			return 1;
		}
		fn = store_main;
	} else {
		return 2;
	}
	pthread_t t[256];
	double start = now_s();
	if (fn == store_main) {
		/* no client threads: nthreads writes in flight */
		atomic_store(&in_flight, nthreads);
		for (int i = 0; i < nthreads; i++)
			flight_submit(NULL);
	} else {
		for (int i = 0; i < nthreads; i++)
			pthread_create(&t[i], NULL, fn, NULL);
	}
	struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
	nanosleep(&ts, NULL);
	long n = atomic_load(&done_count);
	double elapsed = now_s() - start;
	atomic_store(&stop, true);
	pthread_mutex_lock(&q_lock);
	pthread_cond_broadcast(&q_cond);
	pthread_cond_broadcast(&ack_cond);
	pthread_mutex_unlock(&q_lock);
	if (fn == store_main) {
		while (atomic_load(&in_flight) > 0)
			usleep(1000);
	} else {
		for (int i = 0; i < nthreads; i++)
			pthread_join(t[i], NULL);
	}
	if (fn == raw_shared_main)
		pthread_join(syncer, NULL);
	if (store)
		cf_store_close(&store);
	printf("%s %d %.0f\n", mode, nthreads, (double)n / elapsed);
	return 0;
}
