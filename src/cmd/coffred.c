/* coffred — the coffre daemon: configuration, start-up, signals.
 *   SIGTERM, SIGINT: stop cleanly (in-flight requests finish within shutdown_grace).
 *   SIGHUP: reload the TLS certificate and key. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "keys/keys.h"
#include "store/store.h"
#include "vault/vault.h"

extern char **environ;

static const char usage_text[] =
        "usage: coffred [--config FILE] [--listen HOST:PORT] [--data DIR] [--dev]\n"
        "               [--log-level LEVEL]\n"
        "\n"
        "The coffre data privacy vault server. It serves the HTTPS API on --listen.\n"
        "\n"
        "  -c, --config FILE     read settings from an INI file (see docs/operating.md)\n"
        "  -l, --listen ADDR     address and port to serve on (default 127.0.0.1:8443;\n"
        "                        port 0 picks a free one)\n"
        "  -d, --data DIR        data folder, mode 0700 (default /var/lib/coffre;\n"
        "                        var/coffre with --dev)\n"
        "      --dev             development mode: makes the data folder and a development\n"
        "                        CA and certificate. NOT FOR PRODUCTION.\n"
        "      --log-level LVL   debug, info, warn or error (default info)\n"
        "  -h, --help            show this help\n"
        "  -V, --version         show the version\n"
        "\n"
        "Settings are taken from the file, then COFFRE_<SECTION>_<KEY> environment\n"
        "variables (COFFRE_SERVER_LISTEN=...), then flags.\n"
        "Signals: SIGTERM/SIGINT stop cleanly; SIGHUP reloads the TLS certificate.\n"
        "Exit status: 0 stopped cleanly, 1 could not start or failed, 2 bad usage.\n";

static int die(const char *what)
{
	fprintf(stderr, "coffred: %s: %s\n", what, cf_err_detail()[0] ? cf_err_detail() : "failed");
	return 1;
}

/* mkdir -p for the parents of a data folder; the folder itself is made 0700. */
static void make_parents(const char *path)
{
	char tmp[CF_PATH_MAX];
	(void)snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		(void)mkdir(tmp, 0755);
		*p = '/';
	}
}

/* The development tenant's first owner, when this start made it. */
struct dev_admin {
	char email[64];
	char password[48];
};

static void dev_banner(const struct cf_config *cfg, unsigned port, const char *ca,
                       const char *argv0, const struct dev_admin *adm)
{
	/* The command line is built next to the server: show its real path. */
	char cli[CF_PATH_MAX];
	const char *slash = strrchr(argv0, '/');
	if (slash)
		(void)snprintf(cli, sizeof cli, "%.*s/coffre", (int)(slash - argv0), argv0);
	else
		(void)snprintf(cli, sizeof cli, "coffre");
	char host[256];
	unsigned ignored;
	if (cf_config_split_listen(cfg->listen, host, sizeof host, &ignored) != CF_OK)
		(void)snprintf(host, sizeof host, "127.0.0.1");
	const char *lb = strchr(host, ':') ? "[" : "", *rb = strchr(host, ':') ? "]" : "";
	printf("\n"
	       "  ======================================================================\n"
	       "   coffre DEVELOPMENT MODE - NOT FOR PRODUCTION\n"
	       "   Its certificate authority and keys in %s are for this machine only.\n"
	       "  ======================================================================\n"
	       "   URL:     https://%s%s%s:%u\n"
	       "   CA:      %s\n"
	       "   coffre:  %s --addr https://%s%s%s:%u --cacert %s status\n"
	       "   curl:    curl --cacert %s https://%s%s%s:%u/readyz\n"
	       "  ======================================================================\n\n",
	       cfg->data_dir, lb, host, rb, port, ca, cli, lb, host, rb, port, ca, ca, lb, host, rb,
	       port);
	if (adm->password[0])
		printf("   The first admin of tenant 'dev' (shown once; change the password):\n"
		       "   email:    %s\n"
		       "   password: %s\n"
		       "   login:    curl --cacert %s -c cookies -H 'Content-Type: "
		       "application/json'"
		       " -d '{\"email\":\"%s\",\"password\":\"...\"}'"
		       " https://%s%s%s:%u/v1/t/dev/auth/login\n"
		       "  "
		       "======================================================================\n\n",
		       adm->email, adm->password, ca, adm->email, lb, host, rb, port);
	if (adm->password[0]) {
		/* The main job in three lines: log in, store a record, read it back (masked). */
		char url[300];
		(void)snprintf(url, sizeof url, "https://%s%s%s:%u/v1/t/dev", lb, host, rb, port);
		printf("   Store a record in the demo collection 'customers' and read it back:\n"
		       "   $ csrf=$(curl -s --cacert %s -c /tmp/coffre-demo.jar -H "
		       "'Content-Type: application/json' -d "
		       "'{\"email\":\"%s\",\"password\":\"%s\"}' %s/auth/login | sed "
		       "'s/.*\"csrf_token\":\"\\([^\"]*\\)\".*/\\1/')\n"
		       "   $ id=$(curl -s --cacert %s -b /tmp/coffre-demo.jar -H \"X-CSRF-Token: "
		       "$csrf\" -H 'Content-Type: application/json' -d "
		       "'{\"data\":{\"email\":\"ada@example.com\",\"name\":\"Ada "
		       "Lovelace\",\"plan\":\"pro\"}}' %s/collections/customers/records | sed "
		       "'s/^{\"id\":\"\\([^\"]*\\)\".*/\\1/')\n"
		       "   $ curl -s --cacert %s -b /tmp/coffre-demo.jar "
		       "%s/collections/customers/records/$id\n"
		       "  "
		       "======================================================================\n\n",
		       ca, adm->email, adm->password, url, ca, url, ca, url);
	}
	fflush(stdout);
}

/* Background key jobs (DESIGN §5): scheduled rotation, then the rewrap of what old KEK
 * versions still wrap, in throttled steps, every keys.job_interval seconds. */
struct jobs {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop, started;
	struct cf_keyring *kr;
	struct cf_vault *vault;
	unsigned purge_days;
	unsigned interval;
};

static bool jobs_sleep(struct jobs *j, long ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&j->lock);
	while (!j->stop && pthread_cond_timedwait(&j->wake, &j->lock, &until) == 0)
		;
	bool stop = j->stop;
	pthread_mutex_unlock(&j->lock);
	return !stop;
}

static void *jobs_main(void *arg)
{
	struct jobs *j = arg;
	do {
		unsigned rotated = 0;
		if (cf_keys_rotate_due(j->kr, (int64_t)time(NULL), &rotated) != CF_OK)
			cf_log(CF_LOG_ERROR, NULL, "rotation_failed", "scheduled rotation: %s",
			       cf_err_detail());
		/* Deleted records go for good once their delay has passed (PV4, PV5). */
		unsigned purged = 0;
		if (j->vault && !cf_keys_is_sealed(j->kr) &&
		    cf_vault_purge(j->vault, (int64_t)time(NULL) - (int64_t)j->purge_days * 86400,
		                   &purged) != CF_OK)
			cf_log(CF_LOG_ERROR, NULL, "purge_failed", "purging deleted records: %s",
			       cf_err_detail());
		else if (purged)
			cf_log(CF_LOG_INFO, NULL, "purged", "%u deleted records purged", purged);
		bool busy = true;
		while (busy) {
			if (cf_keys_rewrap_step(j->kr, &busy) != CF_OK) {
				cf_log(CF_LOG_ERROR, NULL, "rewrap_failed",
				       "rewrap step failed (retried later): %s", cf_err_detail());
				break;
			}
			if (busy && !jobs_sleep(j, 20)) /* the throttle between steps */
				return NULL;
		}
	} while (jobs_sleep(j, (long)j->interval * 1000));
	return NULL;
}

static void jobs_stop(struct jobs *j)
{
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_broadcast(&j->wake); /* the jobs and the auditor both wait on it */
	pthread_mutex_unlock(&j->lock);
	if (j->started)
		pthread_join(j->thread, NULL);
}

/* The audit log's background work (DESIGN §6): entries get their tree index within
 * about 200 ms of commit, off the request path; a signed checkpoint follows every
 * audit.checkpoint_interval seconds while the log grows (once unsealed: it needs the
 * deployment's key). */
struct auditor {
	pthread_t thread;
	bool started;
	struct jobs *sync; /* shares the jobs' stop flag and lock */
	struct cf_store *store;
	struct cf_keyring *kr;
	struct cf_auth *auth;
	unsigned checkpoint_interval;
	unsigned retention_days;
	unsigned refusal_interval;
	/* AL3: copies; a sink that cannot open yet (its database is down) is retried */
	const char *sink_spec[3];
	struct cf_audit_sink *sinks[3];
};

static void sinks_step(struct auditor *a)
{
	for (size_t i = 0; i < 3; i++) {
		if (!a->sink_spec[i])
			continue;
		if (!a->sinks[i] &&
		    cf_audit_sink_open(a->store, a->sink_spec[i], &a->sinks[i]) != CF_OK) {
			cf_log(CF_LOG_ERROR, NULL, "audit_sink", "audit sink %s: %s (retried)",
			       a->sink_spec[i], cf_err_detail());
			continue;
		}
		unsigned n = CF_AUDIT_SINK_BATCH; /* as the sequencer: whole batches only */
		while (n >= CF_AUDIT_SINK_BATCH && a->sinks[i])
			if (cf_audit_sink_step(a->sinks[i], &n) != CF_OK) {
				cf_log(CF_LOG_ERROR, NULL, "audit_sink",
				       "audit sink %s: %s (resumes where it stopped)",
				       a->sink_spec[i], cf_err_detail());
				cf_audit_sink_close(&a->sinks[i]); /* reopened next time */
			}
	}
}

/* Most entries the sequencer takes in one step (one transaction). */
#define SEQ_STEP 4096u

static void *auditor_main(void *arg)
{
	struct auditor *a = arg;
	struct cf_audit_seq *seq = NULL;
	if (cf_audit_seq_open(a->store, &seq) != CF_OK)
		return NULL;
	uint64_t last_cp = 0, last_prune = 0, last_refusals = cf_now_mono_ns();
	do {
		/* A step a period, more only while a backlog fills whole steps: chasing the
		 * last few entries would put a step (a subtree page per level of the tree)
		 * into nearly every commit group under a steady load. */
		unsigned added = SEQ_STEP;
		while (added == SEQ_STEP) {
			if (cf_audit_seq_step(seq, SEQ_STEP, &added) != CF_OK) {
				cf_log(CF_LOG_ERROR, NULL, "audit_sequencer",
				       "sequencing failed (retried): %s", cf_err_detail());
				break;
			}
		}
		uint64_t now = cf_now_mono_ns();
		if (!cf_keys_is_sealed(a->kr) &&
		    now - last_cp >= (uint64_t)a->checkpoint_interval * 1000000000u) {
			bool made = false;
			if (cf_audit_checkpoint(seq, a->kr, &made) != CF_OK)
				cf_log(CF_LOG_ERROR, NULL, "audit_checkpoint",
				       "checkpoint failed (retried): %s", cf_err_detail());
			last_cp = now;
		}
		sinks_step(a);
		/* Refusals before authentication: one summary entry per tenant and source
		 * each period, not one per request. */
		if (now - last_refusals >= (uint64_t)a->refusal_interval * 1000000000u) {
			unsigned n = 0;
			if (cf_auth_flush_refusals(a->auth, &n) != CF_OK)
				cf_log(CF_LOG_ERROR, NULL, "audit_refusals",
				       "refusal summaries not written: %s", cf_err_detail());
			last_refusals = now;
		}
		/* Retention, every ten minutes: entries older than audit.retention_days go;
		 * their checkpoints and subtrees stay. */
		if (last_prune == 0 || now - last_prune >= 600ull * 1000000000u) {
			uint64_t pruned = 0;
			int64_t before = cf_now_us() - (int64_t)a->retention_days * 86400 * 1000000;
			if (cf_audit_prune(a->store, before, &pruned) != CF_OK)
				cf_log(CF_LOG_ERROR, NULL, "audit_retention",
				       "pruning failed (retried): %s", cf_err_detail());
			last_prune = now;
		}
	} while (jobs_sleep(a->sync, 200));
	unsigned n = 0;
	if (cf_auth_flush_refusals(a->auth, &n) != CF_OK) /* the last period's, at stop */
		cf_log(CF_LOG_ERROR, NULL, "audit_refusals", "refusal summaries not written: %s",
		       cf_err_detail());
	for (size_t i = 0; i < 3; i++)
		cf_audit_sink_close(&a->sinks[i]);
	cf_audit_seq_close(&seq);
	return NULL;
}

/* The keyring's own events (scheduled rotation, a key destroyed) become audit entries. */
static void key_event(void *ctx, const char *action, const char *tenant, const char *resource,
                      const char *detail)
{
	(void)tenant;
	struct cf_audit_event ev = {.actor_kind = CF_ACTOR_SYSTEM,
	                            .actor = "coffred",
	                            .action = action,
	                            .resource = resource,
	                            .outcome = CF_OUTCOME_OK,
	                            .privilege = "system"};
	if (cf_audit_record(ctx, NULL, &ev) != CF_OK)
		cf_log(CF_LOG_ERROR, NULL, "audit_failed", "%s %s (%s) not audited: %s", action,
		       resource, detail, cf_err_detail());
}

/* Development mode's root key passphrase: COFFRE_DEV_PASSPHRASE, else one generated
 * into DATA/dev-passphrase (0600) on the first start. Never used outside --dev. */
static cf_err dev_passphrase(const char *data_dir, struct cf_secbuf **out)
{
	const char *env = getenv("COFFRE_DEV_PASSPHRASE");
	CF_TRY(cf_secbuf_new(128, out));
	CF_ENSURE(*out, CF_E_INTERNAL);
	if (env && *env) {
		(*out)->len = strlen(env) < 127 ? strlen(env) : 127;
		memcpy((*out)->ptr, env, (*out)->len);
		return CF_OK;
	}
	char path[CF_PATH_MAX + 32];
	(void)snprintf(path, sizeof path, "%s/dev-passphrase", data_dir);
	struct cf_buf b;
	cf_err e = cf_file_read(path, 127, &b);
	if (e == CF_E_NOT_FOUND) {
		char hex[65];
		CF_TRY(cf_random_hex(hex, sizeof hex, 32));
		CF_TRY(cf_file_write_atomic(path, (const uint8_t *)hex, 64, 0600));
		memcpy((*out)->ptr, hex, 64);
		(*out)->len = 64;
		cf_wipe(hex, sizeof hex);
		return CF_OK;
	}
	CF_TRY(e);
	memcpy((*out)->ptr, b.data, b.len);
	(*out)->len = b.len;
	cf_wipe(b.data, b.len);
	cf_buf_free(&b);
	return CF_OK;
}

static bool ks_initialized(struct cf_keyring *kr)
{
	struct cf_keys_status ks;
	cf_keys_status(kr, &ks);
	return ks.initialized;
}

/* --dev: initialize or unseal by itself, and make a first tenant. */
/* The demo tenant's collection: what `make run` shows coffre's main job with. */
static cf_err dev_collection(struct cf_vault *vault, struct cf_auth *auth)
{
	static const char schema[] =
	        "{\"email\": {\"type\": \"email\", \"required\": true, \"classification\": "
	        "\"personal\"},"
	        " \"name\": {\"type\": \"string\", \"max\": 200, \"classification\": "
	        "\"personal\"},"
	        " \"phone\": {\"type\": \"phone\", \"classification\": \"personal\"},"
	        " \"plan\": {\"type\": \"string\", \"classification\": \"internal\", "
	        "\"filter\": true}}";
	json_t *fields = json_loads(schema, 0, NULL);
	CF_ENSURE(fields, CF_E_INTERNAL);
	struct cf_tenant_ref ref;
	struct cf_auth_call call = {.source = "coffred --dev", .operator_id = "coffred --dev"};
	json_t *out = NULL;
	cf_err err = cf_auth_tenant(auth, "dev", &ref);
	if (err == CF_OK)
		err = cf_vault_collection_put(vault, &call, &ref, "customers", fields, true, &out);
	json_decref(fields);
	json_decref(out);
	return err;
}

static cf_err dev_keys(const struct cf_config *cfg, struct cf_keyring *kr, struct cf_store *st,
                       struct cf_auth *auth, struct dev_admin *adm)
{
	struct cf_secbuf *pass = NULL;
	CF_TRY(dev_passphrase(cfg->data_dir, &pass));
	CF_ENSURE(pass, CF_E_INTERNAL);
	struct cf_keys_status ks;
	cf_keys_status(kr, &ks);
	cf_err e = CF_OK;
	struct cf_span p = {pass->ptr, pass->len};
	if (!ks.initialized) {
		struct cf_rk_secret s = {.provider = CF_RK_FILE, .passphrase = p};
		e = cf_keys_init(kr, &s, NULL);
	} else {
		bool done = false;
		e = cf_keys_unseal(kr, p, &done);
	}
	cf_secbuf_free(&pass);
	CF_TRY(e);
	CF_TRY(cf_vault_bind_keystore(st, kr));
	/* Development mode opens the vault by itself: that too is in the audit log. */
	struct cf_audit_event ev = {.actor_kind = CF_ACTOR_SYSTEM,
	                            .actor = "coffred --dev",
	                            .action = ks.initialized ? "operator.unseal" : "operator.init",
	                            .outcome = CF_OUTCOME_OK,
	                            .privilege = "system"};
	CF_TRY(cf_audit_record(st, NULL, &ev));
	CF_TRY(cf_vault_resume_deletions(st, kr));
	json_t *list = NULL;
	CF_TRY(cf_vault_tenant_list(st, &list));
	size_t n = json_array_size(list);
	json_decref(list);
	if (n == 0) {
		/* The tenant and its first owner, whose password is set through the same
		 * single-use setup link an operator would hand over. */
		struct cf_auth_call call = {.source = "coffred --dev",
		                            .operator_id = "coffred --dev"};
		json_t *t = NULL;
		(void)snprintf(adm->email, sizeof adm->email, "admin@dev.example");
		CF_TRY(cf_vault_tenant_create(st, kr, auth, &call, "dev", cfg->rotation_days,
		                              adm->email, &t));
		char token[64];
		(void)snprintf(token, sizeof token, "%s",
		               json_string_value(json_object_get(json_object_get(t, "owner"),
		                                                 "setup_token")));
		struct cf_tenant_ref ref;
		cf_err err = cf_auth_tenant(auth, "dev", &ref);
		/* 18 random bytes in base64: 144 bits; drawn again in the rare case the
		 * dictionary check finds a pattern in it. */
		for (int i = 0; err == CF_OK && i < 8; i++) {
			uint8_t rnd[18];
			err = cf_crypto_random_key(rnd, sizeof rnd);
			cf_base64_encode(rnd, sizeof rnd, adm->password);
			cf_wipe(rnd, sizeof rnd);
			if (err == CF_OK &&
			    cf_auth_password_check(auth, ref.id, adm->email,
			                           cf_span_str(adm->password)) == CF_OK)
				break;
			cf_err_detail_clear();
		}
		if (err == CF_OK)
			err = cf_auth_setup(auth, &call, &ref, token, cf_span_str(adm->password));
		cf_wipe(token, sizeof token);
		json_decref(t);
		CF_TRY(err);
		struct cf_audit_event tev = {.actor_kind = CF_ACTOR_SYSTEM,
		                             .actor = "coffred --dev",
		                             .action = "tenant.create",
		                             .resource = "dev",
		                             .outcome = CF_OUTCOME_OK,
		                             .privilege = "system"};
		CF_TRY(cf_audit_record(st, NULL, &tev));
	}
	return CF_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
	                                     {"listen", required_argument, NULL, 'l'},
	                                     {"data", required_argument, NULL, 'd'},
	                                     {"dev", no_argument, NULL, 'D'},
	                                     {"log-level", required_argument, NULL, 'L'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {"version", no_argument, NULL, 'V'},
	                                     {NULL, 0, NULL, 0}};
	cf_json_wipe_on_free();
	const char *config_path = NULL, *listen_flag = NULL, *data_flag = NULL, *level_flag = NULL;
	bool dev = false;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:l:d:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config_path = optarg; break;
		case 'l': listen_flag = optarg; break;
		case 'd': data_flag = optarg; break;
		case 'D': dev = true; break;
		case 'L': level_flag = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': printf("coffred %s\n", CF_VERSION); return 0;
		case ':':
			fprintf(stderr, "coffred: %s needs a value (see coffred --help)\n",
			        argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "coffred: unknown option '%s' (see coffred --help)\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "coffred: unexpected argument '%s' (see coffred --help)\n",
		        argv[optind]);
		return 2;
	}

	struct cf_config cfg;
	cf_config_defaults(&cfg);
	cfg.dev = dev;
	if (dev)
		(void)snprintf(cfg.data_dir, sizeof cfg.data_dir, "var/coffre");
	if (config_path && cf_config_load_file(&cfg, config_path) != CF_OK)
		return die("configuration");
	if (cf_config_load_env(&cfg, environ) != CF_OK)
		return die("configuration");
	if ((listen_flag && cf_config_set(&cfg, "server", "listen", listen_flag) != CF_OK) ||
	    (data_flag && cf_config_set(&cfg, "server", "data", data_flag) != CF_OK) ||
	    (level_flag && cf_config_set(&cfg, "log", "level", level_flag) != CF_OK))
		return die("flags");
	if (cf_config_validate(&cfg) != CF_OK)
		return die("configuration");
	cf_log_set_level(cfg.log_level);

	if (cf_harden_process() != CF_OK)
		return die("hardening");
	/* Signals are taken by sigwait in this thread; every thread started later inherits
	 * the mask, so none of them is interrupted. SIGPIPE is ignored: a closed peer is an
	 * error code, not a death. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cf_secmem_init(CF_SECMEM_ARENA_DEFAULT) != CF_OK)
		return die("secure memory");

	char tls_dir[CF_PATH_MAX + 8], ca_path[CF_PATH_MAX + 16];
	if (dev) {
		make_parents(cfg.data_dir);
		if (cf_dir_private(cfg.data_dir, true) != CF_OK)
			return die("data folder");
		(void)snprintf(tls_dir, sizeof tls_dir, "%s/tls", cfg.data_dir);
		if (cf_dir_private(tls_dir, true) != CF_OK)
			return die("data folder");
		bool created = false;
		if (cf_crypto_dev_pki(tls_dir, &created) != CF_OK)
			return die("development certificate");
		if (created)
			cf_log(CF_LOG_INFO, NULL, "dev_pki",
			       "made a development CA and certificate in %s", tls_dir);
		if ((!cfg.tls_cert[0] &&
		     (size_t)snprintf(cfg.tls_cert, sizeof cfg.tls_cert, "%s/" CF_DEV_SERVER_CERT,
		                      tls_dir) >= sizeof cfg.tls_cert) ||
		    (!cfg.tls_key[0] &&
		     (size_t)snprintf(cfg.tls_key, sizeof cfg.tls_key, "%s/" CF_DEV_SERVER_KEY,
		                      tls_dir) >= sizeof cfg.tls_key) ||
		    (size_t)snprintf(ca_path, sizeof ca_path, "%s/" CF_DEV_CA_CERT, tls_dir) >=
		            sizeof ca_path) {
			fprintf(stderr, "coffred: data folder: the path %s is too long\n",
			        cfg.data_dir);
			return 1;
		}
		cf_log(CF_LOG_WARN, NULL, "dev_mode",
		       "development mode: NOT FOR PRODUCTION (development CA, keys on local disk)");
	} else if (cf_dir_private(cfg.data_dir, false) != CF_OK) {
		return die("data folder");
	}

	if (cf_tls_load(cfg.tls_cert, cfg.tls_key) != CF_OK)
		return die("TLS");

	/* The store: SQLite in the data folder unless store.url says otherwise. Missing
	 * migrations are applied now; a database newer than this coffred stops it. */
	if (!cfg.store_url[0] &&
	    (size_t)snprintf(cfg.store_url, sizeof cfg.store_url, "sqlite:%s/coffre.db",
	                     cfg.data_dir) >= sizeof cfg.store_url) {
		fprintf(stderr, "coffred: store: the data folder path is too long\n");
		return 1;
	}
	struct cf_store *store = NULL;
	if (cf_store_open_coffre(cfg.store_url, cfg.store_migrate_url, true, cfg.store_pool,
	                         &store) != CF_OK) {
		cf_tls_shutdown();
		return die("store");
	}
	/* AL1: the tree takes in whatever a previous run committed before anything new. A
	 * log that cannot be extended (edited under us) is an alert, as at every step; it
	 * does not keep the vault down: `coffre audit verify` names the damage. */
	if (cf_audit_seq_drain(store) != CF_OK)
		cf_log(CF_LOG_ERROR, NULL, "audit_sequencer", "ALERT: %s", cf_err_detail());

	/* The keystore, apart from the store; sealed until an operator (or --dev) opens it. */
	if (!cfg.keys_store_url[0] &&
	    (size_t)snprintf(cfg.keys_store_url, sizeof cfg.keys_store_url, "sqlite:%s/keystore.db",
	                     cfg.data_dir) >= sizeof cfg.keys_store_url) {
		fprintf(stderr, "coffred: keys: the data folder path is too long\n");
		return 1;
	}
	if (!cfg.environment[0])
		(void)snprintf(cfg.environment, sizeof cfg.environment, "%s",
		               dev ? "development" : "production");
	if (!cfg.admin_socket[0] &&
	    (size_t)snprintf(cfg.admin_socket, sizeof cfg.admin_socket, "%s/admin.sock",
	                     cfg.data_dir) >= sizeof cfg.admin_socket) {
		fprintf(stderr, "coffred: admin socket: the data folder path is too long\n");
		return 1;
	}
	struct cf_keyring_opts ko = {.store_url = cfg.keys_store_url,
	                             .migrate_url = cfg.keys_migrate_url,
	                             .data_dir = cfg.data_dir,
	                             .environment = cfg.environment,
	                             .pkcs11_module = cfg.pkcs11_module,
	                             .pkcs11_token = cfg.pkcs11_token,
	                             .rotation_s = (int64_t)cfg.rotation_days * 86400,
	                             .rewrap_batch = cfg.rewrap_batch};
	struct cf_keyring *kr = NULL;
	struct cf_auth *auth = NULL;
	struct cf_vault *vault = NULL;
	struct dev_admin adm = {0};
	char outbox[CF_PATH_MAX + 8], public_url[300];
	(void)snprintf(outbox, sizeof outbox, "%s/outbox", cfg.data_dir);
	(void)snprintf(public_url, sizeof public_url, "https://%s", cfg.listen);
	struct cf_auth_opts auo = {
	        .store = store,
	        .session_idle = cfg.session_idle,
	        .session_max = cfg.session_max,
	        .token_ttl = cfg.token_ttl,
	        .argon2 = {.m_kib = cfg.argon2_memory, .t = cfg.argon2_passes, .p = 1},
	        .hash_threads = cfg.hash_threads,
	        .outbox = cfg.outbox[0] ? cfg.outbox : outbox,
	        .public_url = cfg.public_url[0] ? cfg.public_url : public_url,
	        .smtp_url = cfg.smtp_url,
	        .smtp_from = cfg.smtp_from,
	        .smtp_user = cfg.smtp_user,
	        .smtp_password_file = cfg.smtp_password_file,
	};
	cf_err ke = cf_keyring_open(&ko, &kr);
	auo.keys = kr;
	if (ke == CF_OK)
		ke = cf_auth_new(&auo, &auth);
	if (ke == CF_OK)
		ke = cf_auth_register_rewrap(auth); /* ER4: sealed TOTP secrets follow rotations */
	if (ke == CF_OK)
		ke = cf_vault_new(store, kr, auth, &vault);
	if (ke == CF_OK)
		ke = cf_vault_register_rewrap(vault); /* ER4: and so do records */
	if (ke == CF_OK && dev)
		ke = dev_keys(&cfg, kr, store, auth, &adm);
	if (ke == CF_OK && dev && adm.password[0])
		ke = dev_collection(vault, auth);
	else if (ke == CF_OK)
		ke = cf_vault_bind_keystore(store, kr); /* ER7, before serving anything */
	if (ke != CF_OK) {
		cf_vault_free(&vault);
		cf_auth_free(&auth);
		cf_keyring_close(&kr);
		cf_store_close(&store);
		cf_tls_shutdown();
		return die("keys");
	}
	struct cf_admin *admin = NULL;
	struct cf_admin_opts ao = {.path = cfg.admin_socket,
	                           .keys = kr,
	                           .store = store,
	                           .auth = auth,
	                           .rotation_days = cfg.rotation_days};
	if (cf_admin_start(&ao, &admin) != CF_OK) {
		cf_vault_free(&vault);
		cf_auth_free(&auth);
		cf_keyring_close(&kr);
		cf_store_close(&store);
		cf_tls_shutdown();
		return die("admin socket");
	}
	struct jobs jobs = {.kr = kr,
	                    .vault = vault,
	                    .purge_days = cfg.purge_days,
	                    .interval = cfg.job_interval};
	pthread_mutex_init(&jobs.lock, NULL);
	pthread_cond_init(&jobs.wake, NULL);
	cf_keys_set_event_hook(kr, key_event, store);
	if (pthread_create(&jobs.thread, NULL, jobs_main, &jobs) == 0)
		jobs.started = true;
	char sink_file[CF_PATH_MAX + 8], sink_syslog[CF_PATH_MAX + 8];
	(void)snprintf(sink_file, sizeof sink_file, "file:%s", cfg.sink_file);
	(void)snprintf(sink_syslog, sizeof sink_syslog, "syslog:%s", cfg.sink_syslog);
	struct auditor auditor = {.sync = &jobs,
	                          .store = store,
	                          .kr = kr,
	                          .auth = auth,
	                          .checkpoint_interval = cfg.checkpoint_interval,
	                          .refusal_interval = cfg.refusal_summary,
	                          .retention_days = cfg.retention_days,
	                          .sink_spec = {cfg.sink_file[0] ? sink_file : NULL,
	                                        cfg.sink_syslog[0] ? sink_syslog : NULL,
	                                        cfg.sink_store[0] ? cfg.sink_store : NULL}};
	if (pthread_create(&auditor.thread, NULL, auditor_main, &auditor) == 0)
		auditor.started = true;

	struct cf_server *srv = NULL;
	if (cf_server_start(&cfg, store, kr, auth, vault, &srv) != CF_OK) {
		jobs_stop(&jobs);
		if (auditor.started)
			pthread_join(auditor.thread, NULL);
		cf_admin_stop(&admin);
		cf_vault_free(&vault);
		cf_auth_free(&auth);
		cf_keyring_close(&kr);
		cf_store_close(&store);
		cf_tls_shutdown();
		return die("server");
	}
	if (cf_keys_is_sealed(kr))
		cf_log(CF_LOG_WARN, NULL, "sealed",
		       "the vault is sealed: the API answers 503 until an operator runs "
		       "`coffre operator %s` (admin socket %s)",
		       ks_initialized(kr) ? "unseal" : "init", cfg.admin_socket);
	unsigned port = cf_server_port(srv);
	if (!cfg.public_url[0]) {
		/* The tokens' issuer names the port actually bound (listen on port 0). */
		char host[256];
		unsigned ignored;
		if (cf_config_split_listen(cfg.listen, host, sizeof host, &ignored) == CF_OK) {
			bool v6 = strchr(host, ':') != NULL;
			(void)snprintf(public_url, sizeof public_url, "https://%s%s%s:%u",
			               v6 ? "[" : "", host, v6 ? "]" : "", port);
			cf_auth_set_public_url(auth, public_url);
		}
	}
	json_t *f =
	        json_pack("{s:s, s:i, s:b}", "listen", cfg.listen, "port", (int)port, "dev", dev);
	cf_log_fields(CF_LOG_INFO, "listening", f);
	if (dev)
		dev_banner(&cfg, port, ca_path, argv[0], &adm);
	cf_wipe(&adm, sizeof adm);

	for (;;) {
		int sig = 0;
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			if (cf_tls_load(cfg.tls_cert, cfg.tls_key) == CF_OK)
				cf_log(CF_LOG_INFO, NULL, "tls_reload", "TLS certificate reloaded");
			else
				cf_log(CF_LOG_ERROR, NULL, "tls_reload",
				       "TLS reload failed, still serving the previous certificate: "
				       "%s",
				       cf_err_detail());
			continue;
		}
		cf_log(CF_LOG_INFO, NULL, "stopping", "signal %d: stopping", sig);
		break;
	}
	cf_server_stop(&srv);
	jobs_stop(&jobs); /* also stops the auditor: they share the stop flag */
	if (auditor.started)
		pthread_join(auditor.thread, NULL);
	cf_admin_stop(&admin);
	cf_vault_free(&vault);
	cf_auth_free(&auth);
	cf_keyring_close(&kr); /* seals: every key wiped */
	cf_store_close(&store);
	cf_tls_shutdown();
	cf_secmem_shutdown();
	cf_log(CF_LOG_INFO, NULL, "stopped", "stopped cleanly");
	return 0;
}
