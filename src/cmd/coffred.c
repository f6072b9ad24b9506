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
#include <unistd.h>

#include "crypto/crypto.h"
#include "http/http.h"
#include "store/store.h"

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

static void dev_banner(const struct cf_config *cfg, unsigned port, const char *ca,
                       const char *argv0)
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
	fflush(stdout);
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
	if (cf_store_open_coffre(cfg.store_url, cfg.store_migrate_url, true, &store) != CF_OK) {
		cf_tls_shutdown();
		return die("store");
	}

	struct cf_server *srv = NULL;
	if (cf_server_start(&cfg, store, &srv) != CF_OK) {
		cf_store_close(&store);
		cf_tls_shutdown();
		return die("server");
	}
	unsigned port = cf_server_port(srv);
	json_t *f =
	        json_pack("{s:s, s:i, s:b}", "listen", cfg.listen, "port", (int)port, "dev", dev);
	cf_log_fields(CF_LOG_INFO, "listening", f);
	if (dev)
		dev_banner(&cfg, port, ca_path, argv[0]);

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
	cf_store_close(&store);
	cf_tls_shutdown();
	cf_secmem_shutdown();
	cf_log(CF_LOG_INFO, NULL, "stopped", "stopped cleanly");
	return 0;
}
