/* Crash-safety probe for the store (issue: storage engines).
 *   crash_writer write URL FIRST_ID THREADS   writes rows from THREADS threads through the
 *       store's writer, printing "ack ID" on stdout once each is durable, until killed;
 *   crash_writer verify URL ACKFILE           checks every acknowledged row is present and
 *       intact (each row carries a checksum of its payload), and the engine's integrity
 *       check passes; exit 0 when all is well.
 *   crash_writer fill URL BALLAST             writes until the disk is full, checks the
 *       failure is a clean store_unavailable and the database intact, deletes the
 *       BALLAST file and checks the same store writes again (no reopen).
 * tests/integration/t_crash.sh kills the writer with SIGKILL at random moments;
 * tests/integration/t_store.sh fills a small tmpfs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static const struct cf_migration migs[] = {
        {1, "probe",
         "CREATE TABLE probe (id INTEGER PRIMARY KEY, payload BLOB NOT NULL, sum INTEGER NOT NULL) "
         "STRICT",
         "CREATE TABLE probe (id BIGINT PRIMARY KEY, payload BYTEA NOT NULL, sum BIGINT NOT NULL);"
         "GRANT SELECT, INSERT ON probe TO coffre_runtime"},
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211u;
	return h & 0x7fffffffffffffffu;
}

struct row {
	int64_t id;
	uint8_t payload[256];
};

static cf_err put(struct cf_tx *tx, void *ctx)
{
	struct row *r = ctx;
	static const char q[] = "INSERT INTO probe (id, payload, sum) VALUES ($1, $2, $3)";
	struct cf_val v[] = {CF_V_INT(r->id), CF_V_BLOB(r->payload, sizeof r->payload),
	                     CF_V_INT((int64_t)fnv(r->payload, sizeof r->payload))};
	return cf_tx_exec(tx, q, v, 3, NULL);
}

static void acked(void *ctx, cf_err result)
{
	struct row *r = ctx;
	if (result == CF_OK) {
		char line[40];
		int n = snprintf(line, sizeof line, "ack %lld\n", (long long)r->id);
		if (write(STDOUT_FILENO, line, (size_t)n) != n)
			_exit(3);
	}
	free(r);
}

struct writer {
	struct cf_store *st;
	int64_t next, step;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	for (;;) {
		struct row *r = malloc(sizeof *r);
		if (!r)
			abort();
		r->id = w->next;
		w->next += w->step;
		for (size_t i = 0; i < sizeof r->payload; i++)
			r->payload[i] = (uint8_t)(r->id * 31 + (int64_t)i);
		while (cf_store_write(w->st, NULL, put, acked, r) == CF_E_BUSY)
			usleep(500);
	}
	return NULL;
}

struct verify {
	int64_t present;
	int64_t torn;
	int64_t *ids;
	size_t nids, cap;
};

static cf_err check_row(const struct cf_row *row, void *ctx)
{
	struct verify *v = ctx;
	struct cf_span p = cf_row_blob(row, 1);
	if (p.len != 256 || (int64_t)fnv(p.ptr, p.len) != cf_row_int(row, 2))
		v->torn++;
	v->present++;
	if (v->nids == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 65536;
		int64_t *ids = realloc(v->ids, cap * sizeof *ids);
		if (!ids)
			return CF_E_NOMEM;
		v->ids = ids;
		v->cap = cap;
	}
	v->ids[v->nids++] = cf_row_int(row, 0);
	return CF_OK;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static cf_err all_rows(struct cf_tx *tx, void *ctx)
{
	static const char q[] = "SELECT id, payload, sum FROM probe";
	return cf_tx_query(tx, q, NULL, 0, check_row, ctx);
}

static int64_t next_fill_id = 1;

static cf_err put_many(struct cf_tx *tx, void *ctx)
{
	(void)ctx;
	for (int i = 0; i < 50; i++) {
		struct row r = {.id = next_fill_id + i};
		memset(r.payload, 'f', sizeof r.payload);
		CF_TRY(put(tx, &r));
	}
	return CF_OK;
}

static int fill(struct cf_store *st, const char *ballast)
{
	cf_err err = CF_OK;
	int64_t batches = 0;
	while ((err = cf_store_write_wait(st, NULL, put_many, NULL)) == CF_OK) {
		next_fill_id += 50;
		batches++;
	}
	printf("full after %lld rows: %s (%s)\n", (long long)(batches * 50), cf_err_name(err),
	       cf_err_detail());
	if (err != CF_E_STORE_UNAVAILABLE || !strstr(cf_err_detail(), "full"))
		return 1;
	struct cf_store_check chk;
	if (cf_store_check(st, &chk) != CF_OK || !chk.integrity_ok) {
		printf("integrity after the full disk: %s\n", chk.integrity);
		return 1;
	}
	printf("integrity: %s\n", chk.integrity);
	if (unlink(ballast) != 0)
		return 1;
	err = cf_store_write_wait(st, NULL, put_many, NULL);
	printf("after freeing space: %s\n", err == CF_OK ? "written" : cf_err_detail());
	return err == CF_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr,
		        "usage: crash_writer write URL FIRST_ID THREADS | verify URL ACKFILE\n");
		return 2;
	}
	struct cf_store_opts o = {
	        .url = argv[2], .migrations = migs, .nmigrations = 1, .migrate = true};
	const char *owner = getenv("CRASH_OWNER_URL");
	if (owner)
		o.migrate_url = owner;
	cf_log_set_level(CF_LOG_WARN);
	struct cf_store *st = NULL;
	if (cf_store_open(&o, &st) != CF_OK) {
		fprintf(stderr, "crash_writer: open: %s\n", cf_err_detail());
		return 1;
	}
	if (strcmp(argv[1], "fill") == 0) {
		int rc = fill(st, argv[3]);
		cf_store_close(&st);
		return rc;
	}
	if (strcmp(argv[1], "write") == 0) {
		int n = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 8;
		int64_t first = strtoll(argv[3], NULL, 10);
		pthread_t t[64];
		struct writer w[64];
		if (n < 1 || n > 64)
			n = 8;
		for (int i = 0; i < n; i++) {
			w[i] = (struct writer){st, first + i, n};
			pthread_create(&t[i], NULL, writer_main, &w[i]);
		}
		for (;;)
			pause();
	}
	/* verify */
	FILE *f = fopen(argv[3], "r");
	if (!f) {
		fprintf(stderr, "crash_writer: %s: cannot open\n", argv[3]);
		return 1;
	}
	/* One scan reads every row (and checks each one's checksum), then each
	 * acknowledgement is looked up among the ids. */
	struct verify v = {0};
	if (cf_store_read(st, NULL, all_rows, &v) != CF_OK) {
		fprintf(stderr, "crash_writer: cannot read back: %s\n", cf_err_detail());
		return 1;
	}
	qsort(v.ids, v.nids, sizeof *v.ids, cmp_id);
	long long id;
	int64_t acks = 0, missing = 0;
	char line[64];
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "ack %lld", &id) != 1)
			continue; /* a line cut by the kill was never a full acknowledgement */
		acks++;
		int64_t key = id;
		if (!bsearch(&key, v.ids, v.nids, sizeof *v.ids, cmp_id) && missing++ < 5)
			fprintf(stderr, "crash_writer: acknowledged row %lld is missing\n", id);
	}
	fclose(f);
	free(v.ids);
	struct cf_store_check chk;
	cf_err ce = cf_store_check(st, &chk);
	cf_store_close(&st);
	printf("acks=%lld rows=%lld missing=%lld torn=%lld integrity=%s\n", (long long)acks,
	       (long long)v.present, (long long)missing, (long long)v.torn,
	       ce == CF_OK ? chk.integrity : "check failed");
	return missing == 0 && v.torn == 0 && ce == CF_OK && chk.integrity_ok ? 0 : 1;
}
