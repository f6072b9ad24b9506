/* Crypto benchmark driver (bench/crypto.sh runs it): coffre's envelope against a bare
 * GnuTLS AES-256-GCM loop on one pre-initialised key, at 1 KiB and 64 KiB. Prints
 * "name value" lines: MB/s for throughput, ns per operation for latency. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "keys/keys.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double secs = 1.0;

/* bare AES-256-GCM: one key schedule for the whole run (the best case) */
static void raw_gcm(size_t size, double *ns_per_op, double *mbps)
{
	uint8_t key[32] = {1}, nonce[12] = {2};
	gnutls_datum_t k = {key, sizeof key};
	gnutls_aead_cipher_hd_t h;
	if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &k) < 0)
		abort();
	uint8_t *in = calloc(1, size), *out = malloc(size + 16);
	long ops = 0;
	double start = now(), t;
	do {
		for (int i = 0; i < 64; i++) {
			size_t n = size + 16;
			nonce[0] = (uint8_t)ops;
			if (gnutls_aead_cipher_encrypt(h, nonce, sizeof nonce, "ad", 2, 16, in,
			                               size, out, &n) < 0)
				abort();
			ops++;
		}
		t = now() - start;
	} while (t < secs);
	gnutls_aead_cipher_deinit(h);
	free(in);
	free(out);
	*ns_per_op = t * 1e9 / (double)ops;
	*mbps = (double)ops * (double)size / t / 1e6;
}

/* One value of `size` bytes sealed (or opened) again and again for `secs`, either
 * straight through the envelope or through the keyring's handles. */
struct run {
	struct cf_kek *kek;    /* the envelope itself */
	struct cf_keyring *kr; /* or the keyring's handles */
	struct cf_env_ctx ctx;
	uint8_t *in, *env, *out;
	size_t size, cap, len;
};

static cf_err seal_once(struct run *r, size_t *n)
{
	struct cf_span pt = {r->in, r->size};
	return r->kr ? cf_keys_seal_value(r->kr, &r->ctx, pt, r->env, r->cap, n)
	             : cf_env_seal(r->kek, (struct cf_key_id){1, 1}, &r->ctx, pt, r->env, r->cap,
	                           n);
}

static cf_err open_once(struct run *r, size_t *n)
{
	struct cf_span env = {r->env, r->len};
	return r->kr ? cf_keys_open_value(r->kr, &r->ctx, env, r->out, r->size + 1, n)
	             : cf_env_open(r->kek, &r->ctx, env, r->out, r->size + 1, n);
}

static void timed(struct cf_kek *kek, struct cf_keyring *kr, size_t size, bool do_open,
                  double *ns_per_op, double *mbps)
{
	struct run r = {.kek = kek,
	                .kr = kr,
	                .ctx = {{(const uint8_t *)"acme", 4},
	                        {(const uint8_t *)"customers", 9},
	                        {(const uint8_t *)"rec-000001", 10},
	                        1,
	                        {(const uint8_t *)"email", 5}},
	                .size = size};
	r.cap = cf_env_size(&r.ctx, size);
	r.in = calloc(1, size);
	r.env = malloc(r.cap);
	r.out = malloc(size + 1);
	if (!r.in || !r.env || !r.out || seal_once(&r, &r.len) != CF_OK)
		abort();
	long ops = 0;
	double start = now(), t;
	do {
		for (int i = 0; i < 64; i++) {
			size_t n;
			if ((do_open ? open_once(&r, &n) : seal_once(&r, &n)) != CF_OK)
				abort();
			ops++;
		}
		t = now() - start;
	} while (t < secs);
	free(r.in);
	free(r.env);
	free(r.out);
	*ns_per_op = t * 1e9 / (double)ops;
	*mbps = (double)ops * (double)size / t / 1e6;
}

static void envelope(size_t size, bool do_open, double *ns_per_op, double *mbps)
{
	static struct cf_kek *kek;
	static const uint8_t key[CF_SIV_KEY] = {3};
	if (!kek && (cf_secmem_init(64 * 1024) != CF_OK || cf_kek_new(key, &kek) != CF_OK))
		abort();
	timed(kek, NULL, size, do_open, ns_per_op, mbps);
}

/* The same through the keyring's handles, as the rest of coffre calls it: the read lock,
 * the tenant's lookup, the active KEK, then the envelope. A real keystore (SQLite file in
 * a temporary folder) holds the tenant's keys. */
static struct cf_keyring *bench_keyring(void)
{
	static struct cf_keyring *kr;
	if (kr)
		return kr;
	static char dir[] = "/tmp/cf_bench_kr_XXXXXX";
	char url[96];
	if (!mkdtemp(dir))
		abort();
	(void)snprintf(url, sizeof url, "sqlite:%s/keystore.db", dir);
	static const struct cf_argon2_params fast = {8 * 1024, 1, 1};
	struct cf_keyring_opts o = {
	        .store_url = url, .data_dir = dir, .environment = "production", .argon2 = &fast};
	struct cf_rk_secret s = {.provider = CF_RK_FILE,
	                         .passphrase = {(const uint8_t *)"benchmark passphrase", 20}};
	cf_log_set_level(CF_LOG_ERROR);
	if (cf_keyring_open(&o, &kr) != CF_OK || cf_keys_init(kr, &s, NULL) != CF_OK ||
	    cf_keys_tenant_create(kr, "acme", 0) != CF_OK)
		abort();
	return kr;
}

static void handles(size_t size, bool do_open, double *ns_per_op, double *mbps)
{
	timed(NULL, bench_keyring(), size, do_open, ns_per_op, mbps);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		secs = strtod(argv[1], NULL);
	double ns, mb;
	raw_gcm(1024, &ns, &mb);
	printf("raw_gcm_1k_ns %.1f\nraw_gcm_1k_mbps %.0f\n", ns, mb);
	double raw1k = ns;
	raw_gcm(65536, &ns, &mb);
	printf("raw_gcm_64k_mbps %.0f\n", mb);
	double raw64 = mb;
	envelope(1024, false, &ns, &mb);
	printf("seal_1k_ns %.1f\nseal_1k_mbps %.0f\n", ns, mb);
	printf("key_overhead_us_1k %.3f\n", (ns - raw1k) / 1000.0);
	envelope(1024, true, &ns, &mb);
	printf("open_1k_ns %.1f\n", ns);
	envelope(65536, false, &ns, &mb);
	printf("seal_64k_mbps %.0f\nratio_aead_64k_vs_raw %.3f\n", mb, mb / raw64);
	envelope(65536, true, &ns, &mb);
	printf("open_64k_mbps %.0f\nratio_open_64k_vs_raw %.3f\n", mb, mb / raw64);
	handles(1024, false, &ns, &mb);
	printf("handle_seal_1k_ns %.1f\nhandle_key_overhead_us_1k %.3f\n", ns,
	       (ns - raw1k) / 1000.0);
	handles(1024, true, &ns, &mb);
	printf("handle_open_1k_ns %.1f\n", ns);
	handles(65536, false, &ns, &mb);
	printf("ratio_handle_64k_vs_raw %.3f\n", mb / raw64);
	return 0;
}
