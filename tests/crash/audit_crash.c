/* Crash-safety probe for the audit log (AL1).
 *   audit_crash write URL KEYDIR FIRST_ID THREADS   appends audit entries from THREADS
 *       threads (resource "probe-ID"), printing "ack ID" once each is durable, while a
 *       sequencer numbers them and signs checkpoints, until killed;
 *   audit_crash verify URL KEYDIR ACKFILE           finishes the sequencing, then checks
 *       the whole log verifies (every entry, the tree, every checkpoint, every tenant's
 *       numbering) and every acknowledged entry is in it; exit 0 when all is well.
 * tests/integration/t_crash.sh kills the writer with SIGKILL at random moments. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"

static struct cf_store *st;
static struct cf_keyring *kr;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void open_all(const char *url, const char *dir)
{
	char ks[600];
	(void)snprintf(ks, sizeof ks, "sqlite:%s/keystore.db", dir);
	static const struct cf_argon2_params fast = {8 * 1024, 1, 1};
	struct cf_keyring_opts o = {
	        .store_url = ks, .data_dir = dir, .environment = "production", .argon2 = &fast};
	struct cf_rk_secret s = {.provider = CF_RK_FILE,
	                         .passphrase = {(const uint8_t *)"crash probe passphrase", 22}};
	struct cf_keys_status k;
	bool done = false;
	if (cf_keyring_open(&o, &kr) != CF_OK)
		exit(3);
	cf_keys_status(kr, &k);
	if (!k.initialized
	            ? cf_keys_init(kr, &s, NULL) != CF_OK || cf_keys_tenant_create(kr, "acme", 0)
	            : cf_keys_unseal(kr, s.passphrase, &done) != CF_OK) {
		fprintf(stderr, "keys: %s\n", cf_err_detail());
		exit(3);
	}
	if (cf_store_open_coffre(url, getenv("CRASH_OWNER_URL"), true, 0, &st) != CF_OK) {
		fprintf(stderr, "store: %s\n", cf_err_detail());
		exit(3);
	}
}

struct writer {
	pthread_t t;
	int64_t next, step;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	for (;;) {
		char res[40];
		(void)snprintf(res, sizeof res, "probe-%lld", (long long)w->next);
		/* one in three a tenant's entry (HMACed values), the rest the deployment's */
		struct cf_audit_event ev = {.tenant = w->next % 3 == 0 ? "acme" : NULL,
		                            .actor_kind = CF_ACTOR_SYSTEM,
		                            .actor = "probe",
		                            .action = "probe.write",
		                            .resource = res,
		                            .outcome = CF_OUTCOME_OK,
		                            .privilege = "system"};
		if (cf_audit_record(st, kr, &ev) == CF_OK) {
			pthread_mutex_lock(&out_lock);
			printf("ack %lld\n", (long long)w->next);
			fflush(stdout);
			pthread_mutex_unlock(&out_lock);
		}
		w->next += w->step;
	}
	return NULL;
}

static void sequence_all(bool checkpoint)
{
	struct cf_audit_seq *seq = NULL;
	unsigned added = 1;
	bool made = false;
	if (cf_audit_seq_open(st, &seq) != CF_OK)
		exit(3);
	while (added)
		if (cf_audit_seq_step(seq, 4096, &added) != CF_OK) {
			fprintf(stderr, "sequencer: %s\n", cf_err_detail());
			exit(1);
		}
	if (checkpoint && cf_audit_checkpoint(seq, kr, &made) != CF_OK) {
		fprintf(stderr, "checkpoint: %s\n", cf_err_detail());
		exit(1);
	}
	cf_audit_seq_close(&seq);
}

/* Every sequenced entry's "tenant|resource", sorted, to look the acknowledgements up. */
struct keys {
	char **v;
	size_t n, cap;
};

static cf_err key_row(const struct cf_row *row, void *ctx)
{
	struct keys *k = ctx;
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 4096;
		char **n = realloc(k->v, k->cap * sizeof *n);
		CF_ENSURE(n, CF_E_NOMEM);
		k->v = n;
	}
	struct cf_span t = cf_row_blob(row, 0), r = cf_row_blob(row, 1);
	char *s = malloc(t.len + r.len + 2);
	CF_ENSURE(s, CF_E_NOMEM);
	(void)snprintf(s, t.len + r.len + 2, "%.*s|%.*s", (int)t.len, (const char *)t.ptr,
	               (int)r.len, (const char *)r.ptr);
	k->v[k->n++] = s;
	return CF_OK;
}

static cf_err keys_fn(struct cf_tx *tx, void *ctx)
{
	return cf_tx_query(
	        tx, "SELECT tenant_id, resource FROM audit_entries WHERE leaf_index IS NOT NULL",
	        NULL, 0, key_row, ctx);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr,
		        "usage: audit_crash write URL KEYDIR FIRST THREADS | verify URL KEYDIR "
		        "ACKFILE\n");
		return 2;
	}
	cf_log_set_level(CF_LOG_ERROR);
	if (cf_secmem_init(1 << 20) != CF_OK)
		return 3;
	(void)mkdir(argv[3], 0700);
	open_all(argv[2], argv[3]);
	if (strcmp(argv[1], "write") == 0) {
		int64_t first = strtoll(argv[4], NULL, 10);
		int threads = argc > 5 ? (int)strtol(argv[5], NULL, 10) : 4;
		struct writer *w = calloc((size_t)threads, sizeof *w);
		for (int i = 0; i < threads; i++) {
			w[i] = (struct writer){.next = first + i, .step = threads};
			pthread_create(&w[i].t, NULL, writer_main, &w[i]);
		}
		for (;;) { /* the sequencer, as in coffred */
			sequence_all(true);
			usleep(100000);
		}
	}
	sequence_all(true);
	uint8_t pub[CF_ED25519_PUB];
	char origin[96];
	struct cf_audit_report rep;
	if (cf_audit_identity(st, pub, origin, sizeof origin) != CF_OK ||
	    cf_audit_verify(st, pub, NULL, NULL, &rep) != CF_OK) {
		fprintf(stderr, "verify: %s\n", cf_err_detail());
		return 1;
	}
	if (!rep.ok) {
		fprintf(stderr, "the log does not verify: %s\n", rep.problem);
		return 1;
	}
	struct keys k = {0};
	if (cf_store_read(st, NULL, keys_fn, &k) != CF_OK)
		return 3;
	qsort(k.v, k.n, sizeof *k.v, cmp_str);
	FILE *f = fopen(argv[4], "r");
	if (!f)
		return 3;
	char line[64];
	long acked = 0, missing = 0;
	while (fgets(line, sizeof line, f)) {
		long long id = 0;
		if (sscanf(line, "ack %lld", &id) != 1)
			continue;
		acked++;
		char res[40], mac[65], want[CF_TENANT_ID_MAX + 80];
		(void)snprintf(res, sizeof res, "probe-%lld", id);
		if (id % 3 == 0) {
			if (cf_audit_mac(kr, "acme", res, mac) != CF_OK)
				return 3;
			(void)snprintf(want, sizeof want, "acme|%s", mac);
		} else {
			(void)snprintf(want, sizeof want, "|%s", res);
		}
		char *key = want;
		if (!bsearch(&key, k.v, k.n, sizeof *k.v, cmp_str) && missing++ < 5)
			fprintf(stderr, "acknowledged entry %lld is missing\n", id);
	}
	fclose(f);
	for (size_t i = 0; i < k.n; i++)
		free(k.v[i]);
	free(k.v);
	printf("%llu entries verify, %llu checkpoints, %ld acknowledged all present\n",
	       (unsigned long long)rep.sequenced, (unsigned long long)rep.checkpoints, acked);
	cf_store_close(&st);
	cf_keyring_close(&kr);
	return missing ? 1 : 0;
}
