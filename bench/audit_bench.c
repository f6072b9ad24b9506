/* Audit benchmark driver (bench/audit.sh runs it).
 *   record URL THREADS SECS   THREADS audited writes always in flight through the store's
 *                             writer (each completion submitting the next, as coffred's
 *                             suspended requests do): each is one tenant entry with its
 *                             actor and resource HMACed under the tenant's audit key. A
 *                             sequencer runs beside it as coffred's does (every 200 ms);
 *                             prints "entries_per_s N", "lag_p50_ms N", "lag_p99_ms N"
 *   verify URL                `coffre audit verify`'s work on that log: prints
 *                             "verify_entries_per_s N" */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"

static atomic_long done_count;
static atomic_bool stop;
static struct cf_store *st;
static struct cf_keyring *kr;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const struct cf_audit_event ev = {.tenant = "acme",
                                         .actor_kind = CF_ACTOR_USER,
                                         .actor = "alice@example.com",
                                         .action = "record.read",
                                         .resource = "customers/rec-000042",
                                         .outcome = CF_OUTCOME_OK,
                                         .request_id = "0123456789abcdef0123456789abcdef",
                                         .privilege = "reader"};

/* As coffred drives the store (and as the store benchmark does): THREADS audited
 * writes always in flight, each completion preparing and submitting the next. The
 * preparation (two HMACs, the salt) then runs on the writer's thread, which coffred
 * spares it (it prepares on the request's thread): the figure is a floor. */
#define SLOTS 1024
static struct cf_audit_prepared prepared[SLOTS];
static atomic_uint next_slot;
static atomic_int in_flight;

static cf_err write_fn(struct cf_tx *tx, void *ctx)
{
	return cf_audit_append(tx, ctx);
}

static void submit(void);
static void done_fn(void *ctx, cf_err result)
{
	(void)ctx;
	if (result != CF_OK)
		abort();
	atomic_fetch_add(&done_count, 1);
	if (!atomic_load(&stop))
		submit();
	else
		atomic_fetch_sub(&in_flight, 1);
}

static void submit(void)
{
	struct cf_audit_prepared *p = &prepared[atomic_fetch_add(&next_slot, 1) % SLOTS];
	if (cf_audit_prepare(kr, &ev, p) != CF_OK)
		abort();
	while (cf_store_write(st, "acme", write_fn, done_fn, p) == CF_E_BUSY)
		usleep(100);
}

/* --- the sequencer beside it, measuring how long an entry waits for its index --------- */
#define LAGS 4000000
static double *lags;
static size_t nlags;

struct since {
	int64_t from, to, now_us;
};

static cf_err lag_row(const struct cf_row *row, void *ctx)
{
	struct since *s = ctx;
	if (nlags < LAGS)
		lags[nlags++] = (double)(s->now_us - cf_row_int(row, 0)) / 1000.0;
	return CF_OK;
}

static cf_err lag_fn(struct cf_tx *tx, void *ctx)
{
	struct since *s = ctx;
	struct cf_val v[] = {CF_V_INT(s->from), CF_V_INT(s->to)};
	return cf_tx_query(
	        tx, "SELECT time_us FROM audit_entries WHERE leaf_index >= $1 AND leaf_index < $2",
	        v, 2, lag_row, s);
}

static void *sequencer_main(void *arg)
{
	(void)arg;
	struct cf_audit_seq *seq = NULL;
	if (cf_audit_seq_open(st, &seq) != CF_OK)
		abort();
	int64_t size = 0;
	while (!atomic_load(&stop)) {
		unsigned added = 1;
		while (added) {
			if (cf_audit_seq_step(seq, 4096, &added) != CF_OK)
				abort();
			if (added) {
				struct since s = {size, size + added, cf_now_us()};
				if (cf_store_read(st, NULL, lag_fn, &s) != CF_OK)
					abort();
				size += added;
			}
		}
		usleep(200000);
	}
	cf_audit_seq_close(&seq);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void open_all(const char *url, const char *dir)
{
	char ks[512];
	(void)snprintf(ks, sizeof ks, "sqlite:%s/keystore.db", dir);
	static const struct cf_argon2_params fast = {8 * 1024, 1, 1};
	struct cf_keyring_opts o = {
	        .store_url = ks, .data_dir = dir, .environment = "production", .argon2 = &fast};
	if (cf_keyring_open(&o, &kr) != CF_OK)
		abort();
	struct cf_keys_status ks_st;
	cf_keys_status(kr, &ks_st);
	bool done = false;
	struct cf_rk_secret s = {.provider = CF_RK_FILE,
	                         .passphrase = {(const uint8_t *)"benchmark passphrase", 20}};
	if (!ks_st.initialized) {
		if (cf_keys_init(kr, &s, NULL) != CF_OK ||
		    cf_keys_tenant_create(kr, "acme", 0) != CF_OK)
			abort();
	} else if (cf_keys_unseal(kr, s.passphrase, &done) != CF_OK) {
		abort();
	}
	const char *owner = getenv("BENCH_OWNER_URL");
	if (cf_store_open_coffre(url, owner, true, 0, &st) != CF_OK) {
		fprintf(stderr, "store: %s\n", cf_err_detail());
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr,
		        "usage: audit_bench record URL THREADS SECS DIR | verify URL DIR\n");
		return 2;
	}
	cf_log_set_level(CF_LOG_ERROR);
	if (cf_secmem_init(1 << 20) != CF_OK)
		return 1;
	if (strcmp(argv[1], "verify") == 0) {
		open_all(argv[2], argv[3]);
		uint8_t pub[CF_ED25519_PUB];
		char origin[96];
		struct cf_audit_seq *seq = NULL;
		unsigned added = 1;
		bool made = false;
		if (cf_audit_seq_open(st, &seq) != CF_OK)
			abort();
		while (added)
			if (cf_audit_seq_step(seq, 4096, &added) != CF_OK)
				abort();
		if (cf_audit_checkpoint(seq, kr, &made) != CF_OK ||
		    cf_audit_identity(st, pub, origin, sizeof origin) != CF_OK)
			abort();
		cf_audit_seq_close(&seq);
		struct cf_audit_report rep;
		double t0 = now_s();
		if (cf_audit_verify(st, pub, NULL, NULL, &rep) != CF_OK || !rep.ok) {
			fprintf(stderr, "verify: %s %s\n", cf_err_detail(), rep.problem);
			return 1;
		}
		double t = now_s() - t0;
		printf("verify_entries %llu\nverify_entries_per_s %.0f\n",
		       (unsigned long long)rep.sequenced, (double)rep.sequenced / t);
	} else {
		int threads = (int)strtol(argv[3], NULL, 10);
		double secs = argc > 4 ? strtod(argv[4], NULL) : 3;
		open_all(argv[2], argc > 5 ? argv[5] : "/tmp");
		lags = malloc(LAGS * sizeof *lags);
		pthread_t seqt;
		if (!getenv("BENCH_NO_SEQ"))
			pthread_create(&seqt, NULL, sequencer_main, NULL);
		double t0 = now_s();
		atomic_store(&in_flight, threads);
		for (int i = 0; i < threads; i++)
			submit();
		while (now_s() - t0 < secs)
			usleep(10000);
		long n = atomic_load(&done_count);
		double t = now_s() - t0;
		atomic_store(&stop, true);
		while (atomic_load(&in_flight) > 0)
			usleep(1000);
		if (!getenv("BENCH_NO_SEQ"))
			pthread_join(seqt, NULL);
		qsort(lags, nlags, sizeof *lags, cmp);
		printf("entries_per_s %.0f\nlag_p50_ms %.1f\nlag_p99_ms %.1f\n", (double)n / t,
		       nlags ? lags[nlags / 2] : 0, nlags ? lags[nlags * 99 / 100] : 0);
		free(lags);
	}
	cf_store_close(&st);
	cf_keyring_close(&kr);
	cf_secmem_shutdown();
	return 0;
}
