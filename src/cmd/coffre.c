/* coffre — the command line. Talks to coffred over HTTPS (libcurl, GnuTLS flavour) and,
 * in later versions, to its local admin socket.
 * Exit status: 0 success, 1 failure (or "not ready"), 2 bad usage. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/base.h"
#include "cmd/cli.h"
#include "store/store.h"

#define EXIT_USAGE 2
#define REPLY_MAX  (1024u * 1024u)

static const char main_usage[] =
        "usage: coffre [global options] <command> [options]\n"
        "\n"
        "The coffre command line.\n"
        "\n"
        "Commands:\n"
        "  status     show whether the server is ready (GET /readyz)\n"
        "  operator   init, unseal, seal, rekey, status, create-first (admin socket)\n"
        "  tenant     create, list, suspend, resume, delete tenants (admin socket)\n"
        "  keys       rotate a tenant's key, show key status (admin socket)\n"
        "  store      migrate or check the database\n"
        "  audit      verify the audit log offline, or proof files\n"
        "  login      log in to a tenant (then: whoami, logout, password, mfa, sessions,\n"
        "             users, clients, access-review, api; see coffre help login);\n"
        "             operators: login --operator, then operators, break-glass\n"
        "  collections, records, export   the vault, with the login's session\n"
        "  version    show the command line's version\n"
        "  help CMD   show help for a command\n"
        "\n"
        "Global options (also accepted after the command):\n"
        "  --addr URL      server address (env COFFRE_ADDR; default https://127.0.0.1:8443)\n"
        "  --cacert FILE   CA certificate(s) to verify the server with (env COFFRE_CACERT);\n"
        "                  by default the development CA for a server on this machine\n"
        "                  (DATA/tls/ca.pem), else the system's CAs\n"
        "  --data DIR      the server's data folder (env COFFRE_DATA; default var/coffre)\n"
        "  --socket PATH   the admin socket (env COFFRE_SOCKET; default DATA/admin.sock)\n"
        "  --json          print JSON for scripts\n"
        "  -h, --help      show help\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 bad usage; 3 operator status: sealed or not\n"
        "initialized; 4 not logged in (login, collections, records, export).\n";

static const char status_usage[] =
        "usage: coffre status [--addr URL] [--cacert FILE] [--json]\n"
        "\n"
        "Asks the server whether it is ready to serve (GET /readyz over HTTPS, certificate\n"
        "verified) and prints its checks: disk reserve, clock synchronisation.\n"
        "\n"
        "Exit status: 0 ready, 1 not ready or unreachable, 2 bad usage.\n";

static const char store_usage[] =
        "usage: coffre store migrate [--store URL] [--migrate-url URL] [--json]\n"
        "       coffre store check   [--store URL] [--json]\n"
        "\n"
        "Works on the database directly (not through the server).\n"
        "  migrate   applies the migrations this coffre knows that the database lacks, each in\n"
        "            one transaction; refuses a database newer than this coffre\n"
        "  check     integrity (SQLite: PRAGMA integrity_check), schema version and the\n"
        "            engine settings coffre relies on; changes nothing\n"
        "\n"
        "  --store URL        sqlite:PATH or postgres://... (env COFFRE_STORE_URL;\n"
        "                     default sqlite:DATA/coffre.db with DATA from --data)\n"
        "  --migrate-url URL  PostgreSQL: the tables' owner, for migrations\n"
        "                     (env COFFRE_STORE_MIGRATE_URL)\n"
        "\n"
        "Exit status: 0 done / healthy, 1 failure or problems found, 2 bad usage.\n";

static int cmd_store(struct cli *cli, const char *sub)
{
	char url[CF_PATH_MAX + 16];
	const char *store_url = cli->store;
	if (!store_url) {
		(void)snprintf(url, sizeof url, "sqlite:%s/coffre.db", cli->data);
		store_url = url;
	}
	bool migrate = strcmp(sub, "migrate") == 0;
	cf_log_set_level(cli->json ? CF_LOG_ERROR : CF_LOG_WARN);
	struct cf_store *st = NULL;
	cf_err err = cf_store_open_coffre(store_url, cli->migrate_url, migrate, 0, &st);
	if (err == CF_E_STORE_SCHEMA && !migrate) {
		if (cli->json)
			printf("{\"ok\":false,\"error\":\"%s\"}\n", cf_err_name(err));
		fprintf(stderr, "coffre store check: %s\n", cf_err_detail());
		return 1;
	}
	if (err) {
		fprintf(stderr, "coffre store %s: %s\n", sub,
		        cf_err_detail()[0] ? cf_err_detail() : cf_err_message(err));
		return 1;
	}
	int rc = 0;
	if (migrate) {
		if (cli->json)
			printf("{\"schema_version\":%d}\n", cf_store_schema_version(st));
		else
			printf("database at schema version %d (this coffre knows %zu)\n",
			       cf_store_schema_version(st), cf_store_schema_count);
	} else {
		struct cf_store_check chk;
		if (cf_store_check(st, &chk) != CF_OK) {
			fprintf(stderr, "coffre store check: %s\n", cf_err_detail());
			rc = 1;
		} else {
			rc = chk.integrity_ok && chk.settings_ok ? 0 : 1;
			if (cli->json) {
				json_t *o =
				        json_pack("{s:b, s:i, s:b, s:s, s:b, s:s}", "ok", rc == 0,
				                  "schema_version", cf_store_schema_version(st),
				                  "integrity_ok", chk.integrity_ok, "integrity",
				                  chk.integrity, "settings_ok", chk.settings_ok,
				                  "settings", chk.settings);
				char *t = NULL;
				if (o && cf_json_dump(o, &t, NULL) == CF_OK)
					puts(t);
				free(t);
				json_decref(o);
			} else {
				printf("schema:    version %d\n", cf_store_schema_version(st));
				printf("integrity: %s\n", chk.integrity);
				printf("settings:  %s%s\n", chk.settings,
				       chk.settings_ok
				               ? ""
				               : "  <- NOT as coffre requires (docs/storage.md)");
			}
		}
	}
	cf_store_close(&st);
	return rc;
}

static bool is_local_host(const char *url)
{
	static const char *const locals[] = {"https://127.0.0.1", "https://localhost",
	                                     "https://[::1]"};
	for (size_t i = 0; i < sizeof locals / sizeof locals[0]; i++) {
		size_t n = strlen(locals[i]);
		if (strncmp(url, locals[i], n) == 0 &&
		    (url[n] == ':' || url[n] == '/' || url[n] == '\0'))
			return true;
	}
	return false;
}

/* The development CA, when the server is on this machine and no CA was named. */
static void default_cacert(struct cli *cli)
{
	if (cli->cacert || !is_local_host(cli->addr))
		return;
	(void)snprintf(cli->cacert_buf, sizeof cli->cacert_buf, "%s/tls/ca.pem", cli->data);
	if (access(cli->cacert_buf, R_OK) == 0)
		cli->cacert = cli->cacert_buf;
}

/* GET path; fills *status and body. Returns false (after saying why) when the server
 * could not be reached or verified. */
static bool http_get(struct cli *cli, const char *path, long *status, struct cf_buf *body)
{
	struct cli_reply r;
	if (!cli_http(cli, NULL, "GET", path, NULL, &r)) {
		fprintf(stderr,
		        "coffre: check --addr, and --cacert (the server's CA certificate)\n");
		return false;
	}
	*status = r.status;
	*body = r.body;
	return true;
}

static int cmd_status(struct cli *cli)
{
	long status = 0;
	struct cf_buf body;
	if (!http_get(cli, "/readyz", &status, &body))
		return 1;
	json_t *doc = NULL;
	int rc = 1;
	if (cf_json_parse_object(body.data, body.len, REPLY_MAX, &doc) != CF_OK) {
		fprintf(stderr, "coffre: the server at %s answered %ld without a readable body\n",
		        cli->addr, status);
		goto out;
	}
	const char *state = json_string_value(json_object_get(doc, "status"));
	rc = status == 200 && state && strcmp(state, "ready") == 0 ? 0 : 1;
	if (cli->json) {
		char *s = NULL;
		if (cf_json_dump(doc, &s, NULL) == CF_OK)
			puts(s);
		free(s);
		goto out;
	}
	json_t *disk = json_object_get(json_object_get(doc, "checks"), "disk");
	json_t *clock = json_object_get(doc, "clock");
	const char *version = json_string_value(json_object_get(doc, "version"));
	printf("coffre at %s: %s (server %s)\n", cli->addr, state ? state : "unknown",
	       version ? version : "?");
	if (disk)
		printf("  disk:  %s, %.1f GiB free, reserve %.0f MiB\n",
		       json_is_true(json_object_get(disk, "ok")) ? "ok" : "BELOW RESERVE",
		       (double)json_integer_value(json_object_get(disk, "free_bytes")) / (1u << 30),
		       (double)json_integer_value(json_object_get(disk, "reserve_bytes")) /
		               (1u << 20));
	if (clock)
		printf("  clock: %s\n",
		       json_is_true(json_object_get(clock, "synchronized"))
		               ? "synchronized (NTP)"
		               : "NOT synchronized (warning: start an NTP client)");
out:
	json_decref(doc);
	cf_buf_free(&body);
	return rc;
}

int main(int argc, char **argv)
{
	cf_json_wipe_on_free(); /* requests carry passphrases, shares, PINs */
	struct cli cli = {
	        .socket = getenv("COFFRE_SOCKET"),
	        .addr = getenv("COFFRE_ADDR"),
	        .cacert = getenv("COFFRE_CACERT"),
	        .data = getenv("COFFRE_DATA"),
	};
	if (!cli.addr || !*cli.addr)
		cli.addr = "https://127.0.0.1:8443";
	if (!cli.data || !*cli.data)
		cli.data = "var/coffre";
	static const struct option opts[] = {{"addr", required_argument, NULL, 'a'},
	                                     {"cacert", required_argument, NULL, 'C'},
	                                     {"data", required_argument, NULL, 'd'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {"version", no_argument, NULL, 'V'},
	                                     {"store", required_argument, NULL, 'S'},
	                                     {"migrate-url", required_argument, NULL, 'M'},
	                                     {"socket", required_argument, NULL, 's'},
	                                     {"provider", required_argument, NULL, 'P'},
	                                     {"shares", required_argument, NULL, 'n'},
	                                     {"threshold", required_argument, NULL, 'k'},
	                                     {"secret-fd", required_argument, NULL, 'F'},
	                                     {"tenant", required_argument, NULL, 't'},
	                                     {"rotation-days", required_argument, NULL, 'r'},
	                                     {"reset", no_argument, NULL, 'R'},
	                                     {"yes", no_argument, NULL, 'y'},
	                                     {"wait", no_argument, NULL, 'w'},
	                                     {"trusted-checkpoint", required_argument, NULL, 'T'},
	                                     {"action", required_argument, NULL, 1001},
	                                     {"actor", required_argument, NULL, 1002},
	                                     {"resource", required_argument, NULL, 1003},
	                                     {"outcome", required_argument, NULL, 1004},
	                                     {"limit", required_argument, NULL, 1005},
	                                     {"cursor", required_argument, NULL, 1006},
	                                     {"owner", required_argument, NULL, 1007},
	                                     {"email", required_argument, NULL, 1008},
	                                     {"code", required_argument, NULL, 1009},
	                                     {"roles", required_argument, NULL, 1010},
	                                     {"csv", no_argument, NULL, 1011},
	                                     {"dormant-days", required_argument, NULL, 1012},
	                                     {"operator", no_argument, NULL, 1013},
	                                     {"reason", required_argument, NULL, 1014},
	                                     {"access", required_argument, NULL, 1015},
	                                     {"minutes", required_argument, NULL, 1016},
	                                     {"schema", required_argument, NULL, 1017},
	                                     {"id", required_argument, NULL, 1018},
	                                     {"if-match", required_argument, NULL, 1019},
	                                     {"reveal", required_argument, NULL, 1020},
	                                     {"filter", required_argument, NULL, 1021},
	                                     {NULL, 0, NULL, 0}};
	/* Options may stand before or after the command (getopt permutes). */
	bool help = false;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': cli.addr = optarg; break;
		case 'C': cli.cacert = optarg; break;
		case 'd': cli.data = optarg; break;
		case 'j': cli.json = true; break;
		case 'S': cli.store = optarg; break;
		case 'M': cli.migrate_url = optarg; break;
		case 's': cli.socket = optarg; break;
		case 'P': cli.provider = optarg; break;
		case 'n': cli.shares = optarg; break;
		case 'k': cli.threshold = optarg; break;
		case 'F': cli.secret_fd = optarg; break;
		case 't': cli.tenant = optarg; break;
		case 'r': cli.rotation_days = optarg; break;
		case 'R': cli.reset = true; break;
		case 'y': cli.yes = true; break;
		case 'w': cli.wait = true; break;
		case 'T': cli.trusted = optarg; break;
		case 1001: cli.action = optarg; break;
		case 1002: cli.actor = optarg; break;
		case 1003: cli.resource = optarg; break;
		case 1004: cli.outcome = optarg; break;
		case 1005: cli.limit = optarg; break;
		case 1006: cli.cursor = optarg; break;
		case 1007: cli.owner = optarg; break;
		case 1008: cli.email = optarg; break;
		case 1009: cli.code = optarg; break;
		case 1010: cli.roles = optarg; break;
		case 1011: cli.csv = true; break;
		case 1012: cli.dormant_days = optarg; break;
		case 1013: cli.operator= true; break;
		case 1014: cli.reason = optarg; break;
		case 1015: cli.access = optarg; break;
		case 1016: cli.minutes = optarg; break;
		case 1017: cli.schema = optarg; break;
		case 1018: cli.id = optarg; break;
		case 1019: cli.if_match = optarg; break;
		case 1020: cli.reveal = optarg; break;
		case 1021: cli.filter = optarg; break;
		case 'h': help = true; break;
		case 'V': printf("coffre %s\n", CF_VERSION); return 0;
		case ':':
			fprintf(stderr, "coffre: %s needs a value (see coffre --help)\n",
			        argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "coffre: unknown option '%s' (see coffre --help)\n",
			        argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	const char *cmd = optind < argc ? argv[optind] : NULL;
	int nargs = argc - optind - 1;
	if (!cmd) {
		fputs(main_usage, help ? stdout : stderr);
		return help ? 0 : EXIT_USAGE;
	}
	if (strcmp(cmd, "help") == 0) {
		const char *topic = nargs > 0 ? argv[optind + 1] : NULL;
		if (topic && strcmp(topic, "status") == 0)
			fputs(status_usage, stdout);
		else if (topic && strcmp(topic, "store") == 0)
			fputs(store_usage, stdout);
		else if (topic && strcmp(topic, "audit") == 0)
			fputs(cli_audit_usage(), stdout);
		else if (topic && cli_admin_usage(topic))
			fputs(cli_admin_usage(topic), stdout);
		else if (topic && cli_api_usage(topic))
			fputs(cli_api_usage(topic), stdout);
		else if (!topic || strcmp(topic, "version") == 0)
			fputs(main_usage, stdout);
		else {
			fprintf(stderr, "coffre: no help for '%s': unknown command\n", topic);
			return EXIT_USAGE;
		}
		return 0;
	}
	if (strcmp(cmd, "version") == 0) {
		if (help) {
			puts("usage: coffre version [--json]\n\nShows the command line's version.");
			return 0;
		}
		if (cli.json)
			printf("{\"version\":\"%s\"}\n", CF_VERSION);
		else
			printf("coffre %s\n", CF_VERSION);
		return 0;
	}
	if (strcmp(cmd, "store") == 0) {
		const char *sub = nargs > 0 ? argv[optind + 1] : NULL;
		if (help) {
			fputs(store_usage, stdout);
			return 0;
		}
		if (!sub || (strcmp(sub, "migrate") != 0 && strcmp(sub, "check") != 0) ||
		    nargs > 1) {
			fputs(store_usage, stderr);
			return EXIT_USAGE;
		}
		return cmd_store(&cli, sub);
	}
	if (strcmp(cmd, "audit") == 0) {
		if (help) {
			fputs(cli_audit_usage(), stdout);
			return 0;
		}
		return cli_audit(&cli, nargs, argv + optind + 1);
	}
	if (cli_admin_usage(cmd)) {
		if (help) {
			fputs(cli_admin_usage(cmd), stdout);
			return 0;
		}
		return cli_admin(&cli, cmd, nargs, argv + optind + 1);
	}
	if (cli_api_usage(cmd)) {
		if (help) {
			fputs(cli_api_usage(cmd), stdout);
			return 0;
		}
		if (strncmp(cli.addr, "https://", 8) != 0) {
			fprintf(stderr, "coffre: --addr must be an https:// URL (coffre speaks TLS "
			                "only)\n");
			return EXIT_USAGE;
		}
		default_cacert(&cli);
		return cli_api(&cli, cmd, nargs, argv + optind + 1);
	}
	if (strcmp(cmd, "status") == 0) {
		if (help) {
			fputs(status_usage, stdout);
			return 0;
		}
		if (nargs > 0) {
			fprintf(stderr, "coffre status: unexpected argument '%s'\n",
			        argv[optind + 1]);
			return EXIT_USAGE;
		}
		if (strncmp(cli.addr, "https://", 8) != 0) {
			fprintf(stderr, "coffre: --addr must be an https:// URL (coffre speaks TLS "
			                "only)\n");
			return EXIT_USAGE;
		}
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			fprintf(stderr, "coffre: cannot start the HTTP client\n");
			return 1;
		}
		default_cacert(&cli);
		int rc = cmd_status(&cli);
		curl_global_cleanup();
		return rc;
	}
	fprintf(stderr, "coffre: unknown command '%s' (see coffre --help)\n", cmd);
	return EXIT_USAGE;
}
