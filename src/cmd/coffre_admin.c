/* coffre — the commands that talk to coffred's local admin socket: operator, tenant, keys.
 * One JSON line out, one back (src/http/admin.c). Secrets (passphrase, share, PIN) come
 * from --secret-fd N, else a prompt on the terminal with echo off, else one line of
 * standard input; they are wiped once sent.
 * Exit status: 0 success, 1 failure, 2 bad usage; `operator status` 3 when sealed or not
 * initialized (as `vault status` tells sealed apart, for scripts). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"

#define EXIT_USAGE  2
#define EXIT_SEALED 3
#define SECRET_MAX  1023u
#define REPLY_MAX   (1024u * 1024u)

static const char operator_usage[] =
        "usage: coffre operator <init|unseal|seal|rekey|status|create-first> [options]\n"
        "\n"
        "Manages the root key through coffred's local admin socket (docs/keys.md).\n"
        "\n"
        "  init --provider file|shares|pkcs11   make the root key; the vault opens\n"
        "       file:   asks for a passphrase (twice on a terminal; 12 characters or more)\n"
        "       shares: --shares N --threshold K; prints N shares ONCE: hand them out\n"
        "       pkcs11: asks for the token's user PIN (keys.pkcs11_module, pkcs11_token)\n"
        "  unseal [--reset]   gives the passphrase, one share (repeat until open) or PIN;\n"
        "                     --reset forgets the shares given so far\n"
        "  seal               wipes every key from coffred's memory; the API answers 503\n"
        "  rekey --provider P a new root key version (any provider) rewraps every key\n"
        "  status             initialized? sealed? provider, version, environment\n"
        "  create-first --email EMAIL\n"
        "                     the deployment's first operator (docs/access.md); prints\n"
        "                     their single-use setup token ONCE (valid 72 hours). They set\n"
        "                     a password at POST /v1/operator/setup, log in with\n"
        "                     `coffre login --operator` and must enroll TOTP first\n"
        "\n"
        "Options:\n"
        "  --socket PATH    the admin socket (default DATA/admin.sock; env COFFRE_SOCKET)\n"
        "  --data DIR       coffred's data folder, to find the socket\n"
        "  --secret-fd N    read the passphrase, share or PIN from file descriptor N\n"
        "  --json           print the server's JSON reply\n"
        "\n"
        "Exit status: 0 success (status: unsealed), 1 failure, 2 bad usage,\n"
        "3 (status only) sealed or not initialized.\n";

static const char tenant_usage[] =
        "usage: coffre tenant <create|list|suspend|resume|delete> [NAME] [options]\n"
        "\n"
        "  create NAME --owner EMAIL [--rotation-days N]\n"
        "                                    a tenant with its own keys (KEK v1, purpose keys)\n"
        "                                    and its first owner, who gets a single-use setup\n"
        "                                    token (printed once; valid 72 hours)\n"
        "  list                              every tenant\n"
        "  suspend NAME | resume NAME        stops or restores all of its access\n"
        "  delete NAME --yes                 crypto-shreds it: every key destroyed, for good\n"
        "\n"
        "Names are 1 to 63 of a-z, 0-9 and '-'. Options: --socket, --data, --json.\n"
        "Exit status: 0 success, 1 failure, 2 bad usage.\n";

static const char keys_usage[] =
        "usage: coffre keys <rotate|rotate-token|status> [--tenant NAME] [options]\n"
        "\n"
        "  rotate --tenant NAME   a new KEK version, used at once; the old one turns\n"
        "                         decrypt-only and a background job rewraps onto the new\n"
        "  rotate-token           a new key signs access tokens (JWKS lists both); the\n"
        "                         old one's private key is destroyed, its public key\n"
        "                         checks its tokens until they expire (docs/access.md)\n"
        "  status [--tenant NAME] [--wait]\n"
        "                         KEK versions, their states, rewrap progress; --wait\n"
        "                         polls until no rewrap runs (progress on a terminal)\n"
        "\n"
        "Options: --socket, --data, --json.\n"
        "Exit status: 0 success, 1 failure, 2 bad usage.\n";

const char *cli_admin_usage(const char *cmd)
{
	if (strcmp(cmd, "operator") == 0)
		return operator_usage;
	if (strcmp(cmd, "tenant") == 0)
		return tenant_usage;
	if (strcmp(cmd, "keys") == 0)
		return keys_usage;
	return NULL;
}

/* --- the socket ----------------------------------------------------------------------- */
static void socket_path(const struct cli *cli, char *out, size_t cap)
{
	if (cli->socket && *cli->socket)
		(void)snprintf(out, cap, "%s", cli->socket);
	else
		(void)snprintf(out, cap, "%s/admin.sock", cli->data);
}

/* Sends req (wiped after) and reads the reply. Prints why on failure. */
static bool call(const struct cli *cli, const char *what, json_t *req, json_t **reply)
{
	char path[CF_PATH_MAX + 16];
	socket_path(cli, path, sizeof path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *line = NULL;
	size_t n = 0;
	bool ok = false;
	int fd = -1;
	if (strlen(path) >= sizeof sa.sun_path) {
		fprintf(stderr, "coffre %s: the socket path %s is too long\n", what, path);
		goto out;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (cf_json_dump(req, &line, &n) != CF_OK) {
		fprintf(stderr, "coffre %s: out of memory\n", what);
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		fprintf(stderr,
		        "coffre %s: cannot reach coffred's admin socket %s: %s\n"
		        "  (is coffred running? use --data DIR or --socket PATH; the socket "
		        "serves\n"
		        "  coffred's user and root only)\n",
		        what, path, strerror(errno));
		goto out;
	}
	/* A refusal (another user) may come before the request is read: whatever happened
	 * to the request, the reply is read. */
	bool sent = cf_send_all(fd, line, n) && cf_send_all(fd, "\n", 1);
	struct cf_buf b;
	cf_buf_init(&b, REPLY_MAX);
	char chunk[4096];
	for (;;) {
		ssize_t r = recv(fd, chunk, sizeof chunk, 0);
		if (r <= 0 || cf_buf_append(&b, chunk, (size_t)r) != CF_OK)
			break;
		if (memchr(chunk, '\n', (size_t)r))
			break;
	}
	cf_wipe(chunk, sizeof chunk);
	ok = b.len > 0 &&
	     cf_json_parse_object(b.data, b.data[b.len - 1] == '\n' ? b.len - 1 : b.len, REPLY_MAX,
	                          reply) == CF_OK;
	if (b.data)
		cf_wipe(b.data, b.len); /* replies may carry shares */
	cf_buf_free(&b);
	if (!ok)
		fprintf(stderr, "coffre %s: no readable reply from coffred's admin socket%s%s\n",
		        what, sent ? "" : ": ", sent ? "" : strerror(errno));
out:
	if (line) {
		cf_wipe(line, n);
		free(line);
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

/* The reply's error, printed; true when there was one. */
static bool replied_error(const struct cli *cli, const char *what, const json_t *reply)
{
	json_t *e = json_object_get(reply, "error");
	if (!e)
		return false;
	if (!cli->json)
		fprintf(stderr, "coffre %s: %s (%s)\n", what,
		        json_string_value(json_object_get(e, "message")),
		        json_string_value(json_object_get(e, "code")));
	return true;
}

static void print_json(const json_t *o)
{
	char *s = NULL;
	if (cf_json_dump(o, &s, NULL) == CF_OK)
		puts(s);
	free(s);
}

/* Runs req; prints the JSON reply with --json. Returns the reply or NULL (printed). */
json_t *cli_admin_run(const struct cli *cli, const char *what, json_t *req, int *rc)
{
	json_t *reply = NULL;
	*rc = 1;
	if (!req || !call(cli, what, req, &reply)) {
		json_decref(req);
		return NULL;
	}
	json_decref(req); /* wiped as freed */
	if (cli->json)
		print_json(reply);
	if (replied_error(cli, what, reply)) {
		json_decref(reply);
		return NULL;
	}
	*rc = 0;
	return reply;
}

/* --- secrets ---------------------------------------------------------------------------- */
static bool read_line_fd(int fd, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	while (n < cap - 1) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == '\n')
			break;
		buf[n++] = c;
	}
	while (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	*len = n;
	return n > 0;
}

static bool prompt_tty(int tty, const char *prompt, char *buf, size_t cap, size_t *len)
{
	struct termios old, quiet;
	bool echo_off = tcgetattr(tty, &old) == 0;
	if (echo_off) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		(void)tcsetattr(tty, TCSAFLUSH, &quiet);
	}
	(void)!write(tty, prompt, strlen(prompt));
	bool ok = read_line_fd(tty, buf, cap, len);
	(void)!write(tty, "\n", 1);
	if (echo_off)
		(void)tcsetattr(tty, TCSAFLUSH, &old);
	return ok;
}

/* Reads a secret into locked memory. */
bool cli_read_secret(const struct cli *cli, const char *what, const char *prompt, bool confirm,
                     struct cf_secbuf **out)
{
	if (cf_secbuf_new(SECRET_MAX + 1, out) != CF_OK || !*out) {
		fprintf(stderr, "coffre %s: secure memory: %s\n", what, cf_err_detail());
		return false;
	}
	char *buf = (char *)(*out)->ptr;
	size_t len = 0;
	bool ok = false;
	if (cli->secret_fd) {
		char *end = NULL;
		long fd = strtol(cli->secret_fd, &end, 10);
		ok = end && !*end && fd >= 0 && fd < 1024 &&
		     read_line_fd((int)fd, buf, SECRET_MAX + 1, &len);
	} else {
		int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
		if (tty >= 0 && isatty(STDIN_FILENO)) {
			ok = prompt_tty(tty, prompt, buf, SECRET_MAX + 1, &len);
			if (ok && confirm) {
				struct cf_secbuf *again = NULL;
				size_t l2 = 0;
				ok = cf_secbuf_new(SECRET_MAX + 1, &again) == CF_OK && again &&
				     prompt_tty(tty, "Again: ", (char *)again->ptr, SECRET_MAX + 1,
				                &l2) &&
				     l2 == len && memcmp(again->ptr, buf, len) == 0;
				cf_secbuf_free(&again);
				if (!ok)
					fprintf(stderr, "coffre %s: the two entries differ\n",
					        what);
			}
		} else {
			ok = read_line_fd(STDIN_FILENO, buf, SECRET_MAX + 1, &len);
		}
		if (tty >= 0)
			close(tty);
	}
	if (!ok) {
		if (len == 0)
			fprintf(stderr, "coffre %s: no %s given\n", what, prompt);
		cf_secbuf_free(out);
		return false;
	}
	(*out)->len = len;
	return true;
}

/* --- operator ------------------------------------------------------------------------- */
static int print_status(const struct cli *cli, const json_t *r)
{
	bool init = json_is_true(json_object_get(r, "initialized"));
	bool sealed = json_is_true(json_object_get(r, "sealed"));
	if (!cli->json) {
		printf("vault:       %s\n", !init    ? "NOT INITIALIZED (coffre operator init)"
		                            : sealed ? "SEALED (coffre operator unseal)"
		                                     : "unsealed");
		if (init) {
			printf("root key:    v%lld (%s)\n",
			       (long long)json_integer_value(json_object_get(r, "rk_version")),
			       json_string_value(json_object_get(r, "provider")));
			printf("keystore:    %s\n",
			       json_string_value(json_object_get(r, "keystore_id")));
		}
		printf("environment: %s\n", json_string_value(json_object_get(r, "environment")));
		json_t *sh = json_object_get(r, "shares");
		if (sh && sealed)
			printf("shares:      %lld of %lld given\n",
			       (long long)json_integer_value(json_object_get(sh, "given")),
			       (long long)json_integer_value(json_object_get(sh, "threshold")));
		if (!sealed)
			printf("tenants:     %lld\n",
			       (long long)json_integer_value(json_object_get(r, "tenants")));
	}
	return init && !sealed ? 0 : EXIT_SEALED;
}

static void print_shares(const struct cli *cli, const json_t *r)
{
	json_t *arr = json_object_get(r, "shares_out");
	if (!arr || cli->json)
		return;
	printf("\nUnseal shares (shown ONCE; give each to a different person; %s of them open\n"
	       "the vault):\n\n",
	       cli->threshold ? cli->threshold : "the threshold");
	size_t i;
	json_t *s;
	for (i = 0; i < json_array_size(arr) && (s = json_array_get(arr, i)); i++)
		printf("  %s\n", json_string_value(s));
	printf("\n");
}

static json_t *make_rk_request(const struct cli *cli, const char *op, const char *what, int *rc)
{
	*rc = EXIT_USAGE;
	if (!cli->provider) {
		fprintf(stderr, "coffre %s: --provider file|shares|pkcs11 is required\n", what);
		return NULL;
	}
	if (strcmp(cli->provider, "shares") == 0) {
		if (!cli->shares || !cli->threshold) {
			fprintf(stderr, "coffre %s: shares need --shares N --threshold K\n", what);
			return NULL;
		}
		char *e1 = NULL, *e2 = NULL;
		long n = strtol(cli->shares, &e1, 10), k = strtol(cli->threshold, &e2, 10);
		if (*e1 || *e2 || n < 2 || n > 16 || k < 2 || k > n) {
			fprintf(stderr, "coffre %s: need 2 <= --threshold <= --shares <= 16\n",
			        what);
			return NULL;
		}
		*rc = 0;
		return json_pack("{s:s, s:s, s:i, s:i}", "op", op, "provider", "shares", "shares",
		                 (int)n, "threshold", (int)k);
	}
	bool file = strcmp(cli->provider, "file") == 0;
	if (!file && strcmp(cli->provider, "pkcs11") != 0) {
		fprintf(stderr, "coffre %s: unknown provider '%s' (file, shares, pkcs11)\n", what,
		        cli->provider);
		return NULL;
	}
	struct cf_secbuf *sec = NULL;
	*rc = 1;
	if (!cli_read_secret(cli, what, file ? "New passphrase: " : "Token PIN: ", file, &sec))
		return NULL;
	json_t *req = json_pack("{s:s, s:s, s:s%}", "op", op, "provider", cli->provider, "secret",
	                        (const char *)sec->ptr, sec->len);
	cf_secbuf_free(&sec);
	*rc = 0;
	return req;
}

static int cmd_operator(const struct cli *cli, const char *sub)
{
	int rc = 1;
	char what[32];
	(void)snprintf(what, sizeof what, "operator %s", sub);
	json_t *r = NULL;
	if (strcmp(sub, "status") == 0) {
		r = cli_admin_run(cli, what, json_pack("{s:s}", "op", "status"), &rc);
		if (r)
			rc = print_status(cli, r);
	} else if (strcmp(sub, "seal") == 0) {
		r = cli_admin_run(cli, what, json_pack("{s:s}", "op", "seal"), &rc);
		if (r && !cli->json)
			printf("sealed: every key is wiped from coffred's memory\n");
	} else if (strcmp(sub, "init") == 0 || strcmp(sub, "rekey") == 0) {
		json_t *req = make_rk_request(cli, sub, what, &rc);
		if (!req)
			return rc;
		r = cli_admin_run(cli, what, req, &rc);
		if (r) {
			if (!cli->json)
				printf("%s: root key v%lld (%s); the vault is unsealed\n",
				       sub[0] == 'i' ? "initialized" : "rekeyed",
				       (long long)json_integer_value(
				               json_object_get(r, "rk_version")),
				       json_string_value(json_object_get(r, "provider")));
			print_shares(cli, r);
		}
	} else if (strcmp(sub, "create-first") == 0) {
		if (!cli->email) {
			fputs("coffre operator create-first: --email EMAIL is required\n", stderr);
			return EXIT_USAGE;
		}
		r = cli_admin_run(
		        cli, what,
		        json_pack("{s:s, s:s}", "op", "operator_create_first", "email", cli->email),
		        &rc);
		if (r && !cli->json)
			printf("operator %s (%s) created\n"
			       "setup token (shown ONCE, valid 72 hours): %s\n"
			       "They set a password with POST /v1/operator/setup {\"token\", "
			       "\"password\"}, then `coffre login --operator --email %s` and "
			       "enroll "
			       "TOTP (`coffre mfa enroll`).\n",
			       json_string_value(
			               json_object_get(json_object_get(r, "operator"), "email")),
			       json_string_value(
			               json_object_get(json_object_get(r, "operator"), "id")),
			       json_string_value(json_object_get(r, "setup_token")), cli->email);
	} else if (strcmp(sub, "unseal") == 0) {
		if (cli->reset) {
			r = cli_admin_run(cli, what,
			                  json_pack("{s:s, s:b}", "op", "unseal", "reset", 1), &rc);
		} else {
			struct cli quiet = *cli;
			quiet.json = false;
			json_t *st = cli_admin_run(&quiet, what, json_pack("{s:s}", "op", "status"),
			                           &rc);
			if (!st)
				return rc;
			const char *prov = json_string_value(json_object_get(st, "provider"));
			const char *prompt = prov && strcmp(prov, "shares") == 0   ? "Share: "
			                     : prov && strcmp(prov, "pkcs11") == 0 ? "Token PIN: "
			                                                           : "Passphrase: ";
			json_decref(st);
			struct cf_secbuf *sec = NULL;
			if (!cli_read_secret(cli, what, prompt, false, &sec))
				return 1;
			json_t *req = json_pack("{s:s, s:s%}", "op", "unseal", "secret",
			                        (const char *)sec->ptr, sec->len);
			cf_secbuf_free(&sec);
			r = cli_admin_run(cli, what, req, &rc);
		}
		if (r)
			(void)print_status(cli,
			                   r); /* a share taken while still sealed is success */
	} else {
		fputs(operator_usage, stderr);
		return EXIT_USAGE;
	}
	json_decref(r);
	return rc;
}

/* --- tenant, keys -------------------------------------------------------------------- */
static int cmd_tenant(const struct cli *cli, const char *sub, const char *name)
{
	int rc = 1;
	char what[32];
	(void)snprintf(what, sizeof what, "tenant %s", sub);
	bool needs_name = strcmp(sub, "list") != 0;
	if (needs_name != (name != NULL)) {
		fprintf(stderr, "coffre %s: %s\n", what,
		        needs_name ? "name the tenant" : "takes no argument");
		return EXIT_USAGE;
	}
	json_t *r = NULL;
	if (strcmp(sub, "list") == 0) {
		r = cli_admin_run(cli, what, json_pack("{s:s}", "op", "tenant_list"), &rc);
		if (r && !cli->json) {
			size_t i;
			json_t *t;
			printf("%-24s %-18s %s\n", "NAME", "ID", "STATE");
			for (i = 0; i < json_array_size(json_object_get(r, "tenants")) &&
			            (t = json_array_get(json_object_get(r, "tenants"), i));
			     i++) {
				printf("%-24s %-18s %s\n",
				       json_string_value(json_object_get(t, "name")),
				       json_string_value(json_object_get(t, "id")),
				       json_string_value(json_object_get(t, "state")));
			}
		}
	} else if (strcmp(sub, "create") == 0) {
		if (!cli->owner) {
			fprintf(stderr, "coffre %s: --owner EMAIL names the tenant's first owner\n",
			        what);
			return EXIT_USAGE;
		}
		json_t *req = json_pack("{s:s, s:s, s:s}", "op", "tenant_create", "tenant", name,
		                        "owner_email", cli->owner);
		if (cli->rotation_days) {
			char *end = NULL;
			long d = strtol(cli->rotation_days, &end, 10);
			if (*end || d < 1 || d > 3650) {
				json_decref(req);
				fprintf(stderr, "coffre %s: --rotation-days is 1 to 3650\n", what);
				return EXIT_USAGE;
			}
			json_object_set_new(req, "rotation_days", json_integer(d));
		}
		r = cli_admin_run(cli, what, req, &rc);
		if (r && !cli->json) {
			json_t *t = json_object_get(r, "tenant"), *o = json_object_get(t, "owner");
			printf("tenant %s created (id %s) with its own keys\n"
			       "owner %s (%s): set a password within 72 hours with this single-use "
			       "token\n  %s\n"
			       "  POST /v1/t/%s/auth/setup {\"token\": \"...\", \"password\": "
			       "\"...\"}\n",
			       name, json_string_value(json_object_get(t, "id")),
			       json_string_value(json_object_get(o, "email")),
			       json_string_value(json_object_get(o, "id")),
			       json_string_value(json_object_get(o, "setup_token")), name);
		}
	} else if (strcmp(sub, "suspend") == 0 || strcmp(sub, "resume") == 0) {
		r = cli_admin_run(cli, what,
		                  json_pack("{s:s, s:s}", "op",
		                            sub[0] == 's' ? "tenant_suspend" : "tenant_resume",
		                            "tenant", name),
		                  &rc);
		if (r && !cli->json)
			printf("tenant %s %s\n", name, sub[0] == 's' ? "suspended" : "resumed");
	} else if (strcmp(sub, "delete") == 0) {
		if (!cli->yes) {
			fprintf(stderr,
			        "coffre %s: deleting crypto-shreds every key of '%s': its data "
			        "can\n"
			        "  never be read again, from any copy. Add --yes to do it.\n",
			        what, name);
			return EXIT_USAGE;
		}
		r = cli_admin_run(cli, what,
		                  json_pack("{s:s, s:s}", "op", "tenant_delete", "tenant", name),
		                  &rc);
		if (r && !cli->json)
			printf("tenant %s deleted: %lld keys destroyed (crypto-shredded)\n", name,
			       (long long)json_integer_value(json_object_get(r, "keys_destroyed")));
	} else {
		fputs(tenant_usage, stderr);
		return EXIT_USAGE;
	}
	json_decref(r);
	return rc;
}

/* Rewrap jobs still running, and their envelopes moved / remaining. */
static size_t running_jobs(const json_t *r, long long *moved, long long *remaining)
{
	size_t n = 0, i, j;
	json_t *t, *job;
	*moved = *remaining = 0;
	for (i = 0; i < json_array_size(json_object_get(r, "tenants")) &&
	            (t = json_array_get(json_object_get(r, "tenants"), i));
	     i++) {
		for (j = 0; j < json_array_size(json_object_get(t, "rewrap")) &&
		            (job = json_array_get(json_object_get(t, "rewrap"), j));
		     j++) {
			const char *st = json_string_value(json_object_get(job, "state"));
			if (!st || strcmp(st, "running") != 0)
				continue;
			n++;
			*moved += json_integer_value(json_object_get(job, "moved"));
			*remaining += json_integer_value(json_object_get(job, "remaining"));
		}
	}
	return n;
}

static void print_keys(const json_t *r)
{
	size_t i, j;
	json_t *t, *k;
	for (i = 0; i < json_array_size(json_object_get(r, "tenants")) &&
	            (t = json_array_get(json_object_get(r, "tenants"), i));
	     i++) {
		const char *name = json_string_value(json_object_get(t, "name"));
		printf("tenant %s (%s), %s, rotation every %lld days\n", name ? name : "?",
		       json_string_value(json_object_get(t, "tenant")),
		       json_string_value(json_object_get(t, "state")),
		       (long long)json_integer_value(json_object_get(t, "rotation_s")) / 86400);
		for (j = 0; j < json_array_size(json_object_get(t, "keks")) &&
		            (k = json_array_get(json_object_get(t, "keks"), j));
		     j++) {
			printf("  KEK v%-4lld %-13s root key v%lld\n",
			       (long long)json_integer_value(json_object_get(k, "version")),
			       json_string_value(json_object_get(k, "state")),
			       (long long)json_integer_value(json_object_get(k, "rk_version")));
		}
		for (j = 0; j < json_array_size(json_object_get(t, "rewrap")) &&
		            (k = json_array_get(json_object_get(t, "rewrap"), j));
		     j++) {
			json_t *rem = json_object_get(k, "remaining");
			printf("  rewrap from v%lld: %s, %lld moved",
			       (long long)json_integer_value(json_object_get(k, "from_version")),
			       json_string_value(json_object_get(k, "state")),
			       (long long)json_integer_value(json_object_get(k, "moved")));
			if (json_is_integer(rem))
				printf(", %lld remaining", (long long)json_integer_value(rem));
			printf("\n");
		}
	}
}

static int cmd_keys(const struct cli *cli, const char *sub)
{
	int rc = 1;
	char what[32];
	(void)snprintf(what, sizeof what, "keys %s", sub);
	json_t *r = NULL;
	if (strcmp(sub, "rotate") == 0) {
		if (!cli->tenant) {
			fprintf(stderr, "coffre %s: --tenant NAME is required\n", what);
			return EXIT_USAGE;
		}
		r = cli_admin_run(
		        cli, what,
		        json_pack("{s:s, s:s}", "op", "keys_rotate", "tenant", cli->tenant), &rc);
		if (r && !cli->json)
			printf("tenant %s: KEK v%lld is active; the old version is rewrapped in "
			       "the "
			       "background (coffre keys status)\n",
			       cli->tenant,
			       (long long)json_integer_value(json_object_get(r, "kek_version")));
	} else if (strcmp(sub, "rotate-token") == 0) {
		r = cli_admin_run(cli, what, json_pack("{s:s}", "op", "keys_rotate_token"), &rc);
		json_t *keys = json_object_get(json_object_get(r, "jwks"), "keys");
		if (r && !cli->json)
			printf("token signing key v%lld (kid %s) signs from now on; the one "
			       "before\n"
			       "checks the tokens it signed until they expire (auth.token_ttl)\n",
			       (long long)json_integer_value(json_object_get(r, "version")),
			       json_string_value(json_object_get(json_array_get(keys, 0), "kid")));
	} else if (strcmp(sub, "status") == 0) {
		bool tty = isatty(STDERR_FILENO);
		for (;;) {
			json_t *req = json_pack("{s:s}", "op", "keys_status");
			if (req && cli->tenant)
				json_object_set_new(req, "tenant", json_string(cli->tenant));
			struct cli quiet = *cli;
			quiet.json = cli->json && !cli->wait;
			r = cli_admin_run(&quiet, what, req, &rc);
			if (!r)
				return rc;
			long long moved = 0, remaining = 0;
			size_t jobs = running_jobs(r, &moved, &remaining);
			if (!cli->wait || jobs == 0)
				break;
			if (tty)
				fprintf(stderr,
				        "\rrewrap: %zu job(s), %lld moved, %lld remaining   ", jobs,
				        moved, remaining);
			json_decref(r);
			r = NULL;
			struct timespec ts = {0, 500 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (cli->wait && tty)
			fprintf(stderr, "\rrewrap: done%40s\n", "");
		if (cli->json && cli->wait)
			print_json(r);
		else if (!cli->json)
			print_keys(r);
	} else {
		fputs(keys_usage, stderr);
		return EXIT_USAGE;
	}
	json_decref(r);
	return rc;
}

int cli_admin(struct cli *cli, const char *cmd, int nargs, char **args)
{
	const char *sub = nargs > 0 ? args[0] : NULL;
	if (!sub) {
		fputs(cli_admin_usage(cmd), stderr);
		return EXIT_USAGE;
	}
	if (cf_secmem_init(64 * 1024) != CF_OK) {
		fprintf(stderr, "coffre: secure memory: %s\n", cf_err_detail());
		return 1;
	}
	int rc;
	if (strcmp(cmd, "tenant") == 0) {
		if (nargs > 2) {
			fprintf(stderr, "coffre tenant: unexpected argument '%s'\n", args[2]);
			rc = EXIT_USAGE;
		} else {
			rc = cmd_tenant(cli, sub, nargs > 1 ? args[1] : NULL);
		}
	} else if (nargs > 1) {
		fprintf(stderr, "coffre %s: unexpected argument '%s'\n", cmd, args[1]);
		rc = EXIT_USAGE;
	} else {
		rc = strcmp(cmd, "operator") == 0 ? cmd_operator(cli, sub) : cmd_keys(cli, sub);
	}
	cf_secmem_shutdown();
	return rc;
}
