/* coffre — the command line's identity commands over HTTPS (docs/access.md): login keeps
 * the session in a file of its own (0600), and the other commands use it: whoami,
 * logout, password, mfa, sessions, users, clients, access-review, and `api` for any
 * call. Secrets are read from --secret-fd, a prompt with echo off, or stdin. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cli.h"

#define EXIT_USAGE   2
#define EXIT_NOLOGIN 4
#define REPLY_MAX    (16u * 1024u * 1024u)

static const char api_usage[] =
        "usage: coffre login --tenant NAME --email EMAIL [--code CODE]\n"
        "       coffre login --operator --email EMAIL [--code CODE]\n"
        "       coffre logout | whoami | password\n"
        "       coffre mfa enroll | mfa confirm CODE\n"
        "       coffre sessions list | sessions revoke ID\n"
        "       coffre users list | invite EMAIL [--roles R,R] | roles ID --roles R,R\n"
        "                   | disable ID | enable ID | delete ID --yes | end-sessions ID\n"
        "                   | reset-mfa ID\n"
        "       coffre clients list | create NAME [--roles R,R] | disable ID\n"
        "       coffre access-review [--dormant-days N] [--csv]\n"
        "       coffre operators list | add EMAIL | disable ID | reset-mfa ID   (operators)\n"
        "       coffre break-glass request TENANT --reason TEXT [--access read|write]\n"
        "                          [--minutes N] | list | approve ID | end ID\n"
        "       coffre api METHOD PATH [JSON]\n"
        "       coffre collections list | get NAME | create NAME --schema FILE\n"
        "                         | update NAME --schema FILE | delete NAME --yes\n"
        "       coffre records put COLL [FILE|-] [--id ID [--if-match N]]\n"
        "                     | get COLL ID [--reveal F,F --reason TEXT]\n"
        "                     | list COLL [--filter field:value,...] [--limit N]\n"
        "                     | delete COLL ID [--if-match N] | versions COLL ID\n"
        "       coffre export > copy.jsonl     every record of the tenant, in clear\n"
        "\n"
        "Identity over HTTPS (docs/access.md). `login` asks for the password (echo off;\n"
        "or --secret-fd N) and keeps the session in $COFFRE_SESSION, else\n"
        "~/.config/coffre/session.json (mode 0600); the other commands use it and its\n"
        "tenant. `api` sends any call with the session (a body of JSON from the argument\n"
        "or, with '-', from stdin).\n"
        "\n"
        "Operators log in with --operator (two factors required: enroll with `mfa enroll`\n"
        "at the first login). An operator reaches a tenant's data only through a\n"
        "break-glass grant: `break-glass request` with a reason, approved by another\n"
        "operator (`break-glass approve ID`) or by the tenant's owner (who, logged in to\n"
        "the tenant, uses the same command); read-only unless --access write; it expires\n"
        "after --minutes (default 60, at most 480). A tenant's admins list and end the\n"
        "grants on their tenant with `break-glass list` and `break-glass end ID`.\n"
        "\n"
        "The vault (docs/records.md): a schema FILE is the JSON object of fields; a record\n"
        "is the JSON object of its data, from FILE or stdin ('-'); `put` without --id\n"
        "creates one, with --id replaces it. `export` writes JSON lines, one record each,\n"
        "with a progress line on a terminal.\n"
        "\n"
        "Options: --addr, --cacert, --secret-fd N, --json.\n"
        "Exit status: 0 success, 1 refused or failed (the error's code and message are\n"
        "printed), 2 bad usage, 4 not logged in or the session has ended.\n";

const char *cli_api_usage(const char *cmd)
{
	static const char *const cmds[] = {"login",         "logout",   "whoami",    "password",
	                                   "mfa",           "sessions", "users",     "clients",
	                                   "access-review", "api",      "operators", "break-glass",
	                                   "collections",   "records",  "export"};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(cmd, cmds[i]) == 0)
			return api_usage;
	return NULL;
}

/* --- the session file ----------------------------------------------------------------- */
static void session_path(char *out, size_t cap)
{
	const char *env = getenv("COFFRE_SESSION");
	const char *home = getenv("HOME");
	if (env && env[0])
		(void)snprintf(out, cap, "%s", env);
	else
		(void)snprintf(out, cap, "%s/.config/coffre/session.json", home ? home : ".");
}

static bool session_save(const json_t *s)
{
	char path[CF_PATH_MAX];
	session_path(path, sizeof path);
	char dir[CF_PATH_MAX];
	(void)snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		/* ~/.config may not exist yet: make the two levels we need, owner-only. */
		char *mid = strrchr(dir, '/');
		if (mid && mid != dir) {
			*mid = '\0';
			(void)mkdir(dir, 0700);
			*mid = '/';
		}
		(void)mkdir(dir, 0700);
	}
	char *text = NULL;
	size_t len = 0;
	bool ok = cf_json_dump(s, &text, &len) == CF_OK &&
	          cf_file_write_atomic(path, text, len, 0600) == CF_OK;
	if (text) {
		cf_wipe(text, len);
		free(text);
	}
	if (!ok)
		fprintf(stderr, "coffre: cannot keep the session in %s: %s\n", path,
		        cf_err_detail());
	return ok;
}

static json_t *session_load(void)
{
	char path[CF_PATH_MAX];
	session_path(path, sizeof path);
	struct cf_buf b;
	if (cf_file_read(path, 64 * 1024, &b) != CF_OK)
		return NULL;
	json_t *s = NULL;
	if (cf_json_parse_object(b.data, b.len, 64 * 1024, &s) != CF_OK)
		s = NULL;
	cf_wipe(b.data, b.len);
	cf_buf_free(&b);
	return s;
}

static void session_forget(void)
{
	char path[CF_PATH_MAX];
	session_path(path, sizeof path);
	(void)unlink(path);
}

/* --- one call ----------------------------------------------------------------------------- */

static size_t on_data(char *p, size_t size, size_t n, void *user)
{
	struct cli_reply *r = user;
	return cf_buf_append(&r->body, p, size * n) == CF_OK ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *user)
{
	struct cli_reply *r = user;
	static const char name[] = "set-cookie: __Host-coffre_session=";
	size_t len = size * n;
	if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
		size_t v = 0;
		const char *val = p + sizeof name - 1;
		while (v < len - (sizeof name - 1) && val[v] != ';' && val[v] != '\r' &&
		       v + 1 < sizeof r->cookie)
			v++;
		memcpy(r->cookie, val, v);
		r->cookie[v] = '\0';
	}
	return len;
}

bool cli_http(const struct cli *cli, const json_t *sess, const char *method, const char *path,
              const char *body, struct cli_reply *r)
{
	const char *addr = sess ? json_string_value(json_object_get(sess, "addr")) : cli->addr;
	const char *ca = sess ? json_string_value(json_object_get(sess, "cacert")) : cli->cacert;
	char url[4096];
	if ((size_t)snprintf(url, sizeof url, "%s%s", addr ? addr : "", path) >= sizeof url) {
		fprintf(stderr, "coffre: the address is too long\n");
		return false;
	}
	CURL *h = curl_easy_init();
	if (!h) {
		fprintf(stderr, "coffre: cannot start the HTTP client\n");
		return false;
	}
	memset(r, 0, sizeof *r);
	cf_buf_init(&r->body, REPLY_MAX);
	char errbuf[CURL_ERROR_SIZE] = "", cookie[320] = "", csrf[96] = "";
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	char ifm[64] = "";
	if (cli->if_match) {
		(void)snprintf(ifm, sizeof ifm, "If-Match: %s", cli->if_match);
		hd = curl_slist_append(hd, ifm);
	}
	if (sess) {
		(void)snprintf(cookie, sizeof cookie, "Cookie: __Host-coffre_session=%s",
		               json_string_value(json_object_get(sess, "cookie")));
		(void)snprintf(csrf, sizeof csrf, "X-CSRF-Token: %s",
		               json_string_value(json_object_get(sess, "csrf")));
		hd = curl_slist_append(hd, cookie);
		hd = curl_slist_append(hd, csrf);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	/* the path as coffre made it: libcurl would otherwise fold "/x/../" away */
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca && ca[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "coffre/" CF_VERSION);
	CURLcode rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(h);
	curl_slist_free_all(hd);
	cf_wipe(cookie, sizeof cookie);
	cf_wipe(csrf, sizeof csrf);
	if (rc != CURLE_OK) {
		fprintf(stderr, "coffre: cannot reach %s: %s\n", addr ? addr : "?",
		        errbuf[0] ? errbuf : curl_easy_strerror(rc));
		cf_buf_free(&r->body);
		return false;
	}
	return true;
}

/* Prints the reply (JSON with --json or when asked), or the error; the exit status. */
static int finish(const struct cli *cli, const char *what, struct cli_reply *r, json_t **doc_out)
{
	json_t *doc = NULL;
	bool json =
	        r->body.len && cf_json_parse(r->body.data, r->body.len, REPLY_MAX, &doc) == CF_OK;
	const json_t *e = json_object_get(doc, "error");
	const char *code = e ? json_string_value(json_object_get(e, "code")) : NULL;
	/* 4 only when the session itself is gone; a wrong password is a plain refusal. */
	bool gone = code &&
	            (strcmp(code, "unauthenticated") == 0 || strcmp(code, "invalid_token") == 0);
	int rc = r->status >= 200 && r->status < 300 ? 0 : gone ? EXIT_NOLOGIN : 1;
	if (rc != 0) {
		fprintf(stderr, "coffre %s: %s: %s\n", what,
		        e ? json_string_value(json_object_get(e, "code")) : "http_error",
		        e ? json_string_value(json_object_get(e, "message"))
		          : "no readable answer");
		if (gone)
			fprintf(stderr, "coffre: log in again with `coffre login`\n");
	} else if (cli->json && json) {
		char *s = NULL;
		if (cf_json_dump(doc, &s, NULL) == CF_OK)
			puts(s);
		free(s);
	} else if (!json && r->body.len) {
		fwrite(r->body.data, 1, r->body.len, stdout);
	}
	if (doc_out && rc == 0)
		*doc_out = doc;
	else
		json_decref(doc);
	cf_wipe(r->body.data, r->body.len);
	cf_buf_free(&r->body);
	return rc;
}

/* Without a login: says so, and the exit status for it. */
static int no_login(const char *what)
{
	fprintf(stderr, "coffre %s: not logged in (coffre login --tenant NAME --email EMAIL)\n",
	        what);
	return EXIT_NOLOGIN;
}

static int run(const struct cli *cli, const json_t *sess, const char *what, const char *method,
               const char *path, json_t *body, json_t **doc)
{
	if (!sess) { /* a well-formed command, and no login to send it with */
		json_decref(body);
		return no_login(what);
	}
	char *text = NULL;
	if (body && cf_json_dump(body, &text, NULL) != CF_OK) {
		json_decref(body);
		return 1;
	}
	json_decref(body);
	struct cli_reply r;
	bool ok = cli_http(cli, sess, method, path, text, &r);
	free(text);
	return ok ? finish(cli, what, &r, doc) : 1;
}

/* --roles R,R as a JSON array; a role that is not UTF-8 is kept as a name no role has
 * (the server refuses it, naming roles[i]), never dropped: the user would get fewer
 * roles than asked, silently. */
static json_t *roles_json(const char *list)
{
	json_t *a = json_array();
	if (!list || !a)
		return a;
	char *buf = strdup(list);
	char *save = NULL;
	for (char *t = buf ? strtok_r(buf, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
		json_t *r = json_string(t);
		(void)json_array_append_new(a, r ? r : json_string("(not UTF-8)"));
	}
	free(buf);
	return a;
}

static void print_rows(const json_t *arr, const char *const *keys, size_t nk)
{
	for (size_t i = 0; i < json_array_size(arr); i++) {
		const json_t *o = json_array_get(arr, i);
		for (size_t k = 0; k < nk; k++) {
			const json_t *v = json_object_get(o, keys[k]);
			char *s = NULL;
			if (json_is_string(v))
				printf("%s%s", k ? "  " : "", json_string_value(v));
			else if (v && cf_json_dump(v, &s, NULL) == CF_OK)
				printf("%s%s", k ? "  " : "", s);
			free(s);
		}
		putchar('\n');
	}
}

/* --- the commands ---------------------------------------------------------------------------- */
static int cmd_login(const struct cli *cli)
{
	if ((!cli->tenant && !cli->operator) || (cli->tenant && cli->operator) || !cli->email) {
		fputs("coffre login: --tenant NAME (or --operator) and --email EMAIL are needed\n",
		      stderr);
		return EXIT_USAGE;
	}
	const char *realm = cli->operator? "_ops" : cli->tenant;
	struct cf_secbuf *pw = NULL;
	if (!cli_read_secret(cli, "login", "Password: ", false, &pw))
		return 1;
	json_t *body = json_pack("{s:s, s:s%}", "email", cli->email, "password",
	                         (const char *)pw->ptr, pw->len);
	if (body && cli->code)
		json_object_set_new(body, "code", json_string(cli->code));
	cf_secbuf_free(&pw);
	char path[256];
	if (cli->operator)
		(void)snprintf(path, sizeof path, "/v1/operator/login");
	else
		(void)snprintf(path, sizeof path, "/v1/t/%s/auth/login", cli->tenant);
	char *text = NULL;
	size_t tlen = 0;
	if (!body || cf_json_dump(body, &text, &tlen) != CF_OK) {
		json_decref(body);
		return 1;
	}
	json_decref(body);
	struct cli_reply r;
	bool ok = cli_http(cli, NULL, "POST", path, text, &r);
	cf_wipe(text, tlen);
	free(text);
	if (!ok)
		return 1;
	char cookie[sizeof r.cookie];
	memcpy(cookie, r.cookie, sizeof cookie);
	json_t *doc = NULL;
	int rc = finish(cli, "login", &r, &doc);
	if (rc == 0) {
		json_t *s = json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:s}", "addr", cli->addr,
		                      "cacert", cli->cacert ? cli->cacert : "", "tenant", realm,
		                      "cookie", cookie, "csrf", json_object_get(doc, "csrf_token"),
		                      "expires_at", json_object_get(doc, "expires_at"), "email",
		                      cli->email);
		rc = s && cookie[0] && session_save(s) ? 0 : 1;
		json_decref(s);
		if (rc == 0 && !cli->json && cli->operator)
			printf("logged in as operator %s (two factors are required: without "
			       "them yet, `coffre mfa enroll` is all this session can do)\n",
			       cli->email);
		else if (rc == 0 && !cli->json)
			printf("logged in to tenant %s as %s\n", cli->tenant, cli->email);
	}
	cf_wipe(cookie, sizeof cookie);
	json_decref(doc);
	return rc;
}

/* A JSON object from a file, or stdin for "-" (or when no file is named). */
static json_t *read_json(const char *what, const char *file)
{
	struct cf_buf in;
	cf_buf_init(&in, REPLY_MAX);
	json_t *doc = NULL;
	if (!file || strcmp(file, "-") == 0) {
		char chunk[4096];
		size_t n;
		while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0 &&
		       cf_buf_append(&in, chunk, n) == CF_OK)
			;
	} else if (cf_file_read(file, REPLY_MAX, &in) != CF_OK) {
		fprintf(stderr, "coffre %s: %s\n", what, cf_err_detail()); /* it names the file */
		return NULL;
	}
	if (cf_json_parse_object(in.data, in.len, REPLY_MAX, &doc) != CF_OK) {
		fprintf(stderr, "coffre %s: %s is not a JSON object: %s\n", what,
		        file ? file : "stdin", cf_err_detail());
		doc = NULL;
	}
	cf_buf_free(&in);
	return doc;
}

/* coffre export: every page, as JSON lines on stdout (a progress line on a terminal). */
static int cmd_export(const struct cli *cli, const json_t *sess, const char *tenant)
{
	char cursor[160] = "", path[512];
	bool tty = isatty(STDERR_FILENO);
	long long total = 0, bad = 0;
	for (;;) {
		char *enc = curl_easy_escape(NULL, cursor, 0);
		(void)snprintf(path, sizeof path, "/v1/t/%s/export%s%s", tenant,
		               cursor[0] ? "?cursor=" : "", cursor[0] && enc ? enc : "");
		curl_free(enc);
		struct cli quiet = *cli;
		quiet.json = false;
		json_t *doc = NULL;
		int rc = run(&quiet, sess, "export", "GET", path, NULL, &doc);
		if (rc != 0)
			return rc;
		json_t *recs = json_object_get(doc, "records");
		for (size_t i = 0; i < json_array_size(recs); i++) {
			char *line = NULL;
			size_t len = 0;
			if (cf_json_dump(json_array_get(recs, i), &line, &len) == CF_OK) {
				fwrite(line, 1, len, stdout);
				fputc('\n', stdout);
				cf_wipe(line, len);
			}
			free(line);
		}
		json_t *failed = json_object_get(doc, "failed");
		for (size_t i = 0; i < json_array_size(failed); i++) {
			json_t *f = json_array_get(failed, i);
			fprintf(stderr,
			        "%scoffre export: record %s of %s failed its integrity check "
			        "(audited); "
			        "not exported\n",
			        tty ? "\n" : "", json_string_value(json_object_get(f, "id")),
			        json_string_value(json_object_get(f, "collection")));
			bad++;
		}
		total += (long long)json_array_size(recs);
		if (tty)
			fprintf(stderr, "\rexport: %lld records", total);
		const char *next = json_string_value(json_object_get(doc, "next"));
		(void)snprintf(cursor, sizeof cursor, "%s", next ? next : "");
		json_decref(doc);
		if (!cursor[0])
			break;
	}
	if (tty)
		fprintf(stderr, "\rexport: %lld records, done\n", total);
	/* exit 1 when a record could not be exported: the copy is not whole */
	return fflush(stdout) == 0 && bad == 0 ? 0 : 1;
}

/* coffre records list: every page, or the first N records with --limit N, as rows (id,
 * version, data); with --json one object, {"records": [...], "next": the cursor of what
 * is left, or null}. */
static int cmd_records_list(const struct cli *cli, const json_t *sess, const char *tenant,
                            const char *coll)
{
	long long want = -1; /* every record */
	if (cli->limit) {
		char *end = NULL;
		errno = 0;
		want = strtoll(cli->limit, &end, 10);
		if (errno || end == cli->limit || *end || want < 1) {
			fputs("coffre records list: --limit is a number of records, 1 or more\n",
			      stderr);
			return EXIT_USAGE;
		}
	}
	char *filter = cli->filter ? curl_easy_escape(NULL, cli->filter, 0) : NULL;
	json_t *all = cli->json ? json_array() : NULL;
	if ((cli->filter && !filter) || (cli->json && !all)) {
		curl_free(filter);
		json_decref(all);
		fputs("coffre records list: out of memory\n", stderr);
		return 1;
	}
	static const char *const keys[] = {"id", "version", "data"};
	char cursor[160] = "", path[16384];
	long long got = 0;
	int rc = 0;
	for (;;) {
		long long page = want < 0 || want - got > 100 ? 100 : want - got;
		char *enc = curl_easy_escape(NULL, cursor, 0);
		int n = snprintf(path, sizeof path,
		                 "/v1/t/%s/collections/%s/records?limit=%lld%s%s%s%s", tenant, coll,
		                 page, filter ? "&filter=" : "", filter ? filter : "",
		                 cursor[0] ? "&cursor=" : "", cursor[0] && enc ? enc : "");
		curl_free(enc);
		if (n < 0 || (size_t)n >= sizeof path) { /* never a request cut short */
			fputs("coffre records list: the filter is too long\n", stderr);
			rc = EXIT_USAGE;
			break;
		}
		struct cli quiet = *cli;
		quiet.json = false;
		json_t *doc = NULL;
		rc = run(&quiet, sess, "records", "GET", path, NULL, &doc);
		if (rc != 0)
			break;
		json_t *recs = json_object_get(doc, "records");
		if (all)
			(void)json_array_extend(all, recs);
		else
			print_rows(recs, keys, 3);
		got += (long long)json_array_size(recs);
		const char *next = json_string_value(json_object_get(doc, "next"));
		(void)snprintf(cursor, sizeof cursor, "%s", next ? next : "");
		json_decref(doc);
		if (!cursor[0] || (want >= 0 && got >= want))
			break;
	}
	if (rc == 0 && all) {
		json_t *out =
		        json_pack("{s:O, s:s?}", "records", all, "next", cursor[0] ? cursor : NULL);
		char *text = NULL;
		if (out && cf_json_dump(out, &text, NULL) == CF_OK)
			puts(text);
		else
			rc = 1;
		free(text);
		json_decref(out);
	}
	json_decref(all);
	curl_free(filter);
	return fflush(stdout) == 0 ? rc : 1;
}

static bool is_cmd(const char *cmd, const char *sub, const char *c, const char *s)
{
	return strcmp(cmd, c) == 0 && (!s || (sub && strcmp(sub, s) == 0));
}

/* A name or an id the command puts in the request's path, as it is: one that could
 * reach another call ("..", '/', '?', '#', '%': `records delete people ../..` would
 * have been DELETE .../collections/people) is refused, a usage error, and so is one over
 * 128 bytes (the path would be cut). Every name and id coffre gives is letters, digits,
 * '-' and '_', and shorter. */
static bool segment_ok(const char *cmd, const char *what, const char *s)
{
	bool ok = s && s[0] && strlen(s) <= 128 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
	for (const char *p = s; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~';
	if (!ok) {
		char shown[80];
		cf_err_shown(s ? s : "", shown, sizeof shown);
		fprintf(stderr, "coffre %s: %s '%s' is not one (letters, digits, '-', '_')\n", cmd,
		        what, shown);
	}
	return ok;
}

/* Whether the command's arguments that go into a path are all fit for it (see above). */
static bool path_args_ok(const struct cli *cli, const char *cmd, int nargs, char **args)
{
	static const char *const named[][2] = {
	        {"sessions", "revoke"},     {"users", "disable"},       {"users", "enable"},
	        {"users", "roles"},         {"users", "delete"},        {"users", "end-sessions"},
	        {"users", "reset-mfa"},     {"clients", "disable"},     {"operators", "disable"},
	        {"operators", "reset-mfa"}, {"break-glass", "approve"}, {"break-glass", "end"},
	        {"collections", "get"},     {"collections", "create"},  {"collections", "update"},
	        {"collections", "delete"},  {"records", "put"},         {"records", "get"},
	        {"records", "versions"},    {"records", "list"},        {"records", "delete"}};
	const char *sub = nargs > 0 ? args[0] : NULL;
	bool in_path = false;
	for (size_t i = 0; sub && i < sizeof named / sizeof named[0]; i++)
		in_path |= strcmp(cmd, named[i][0]) == 0 && strcmp(sub, named[i][1]) == 0;
	if (!in_path)
		return true;
	bool rec = strcmp(cmd, "records") == 0;
	if (nargs > 1 && !segment_ok(cmd, rec ? "collection" : "name or id", args[1]))
		return false;
	/* records put COLL [FILE]: the file is not in the path; --id is */
	if (rec && strcmp(sub, "put") != 0 && nargs > 2 && !segment_ok(cmd, "record id", args[2]))
		return false;
	return !(rec && cli->id && !segment_ok(cmd, "record id", cli->id));
}

int cli_api(struct cli *cli, const char *cmd, int nargs, char **args)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("coffre: cannot start the HTTP client\n", stderr);
		return 1;
	}
	/* Passwords are read into locked memory. */
	if (cf_secmem_init(64 * 1024) != CF_OK) {
		fprintf(stderr, "coffre %s: secure memory: %s\n", cmd, cf_err_detail());
		return 1;
	}
	if (strcmp(cmd, "login") == 0)
		return nargs ? (fputs(api_usage, stderr), EXIT_USAGE) : cmd_login(cli);
	/* No login yet is told when a command would use it: a malformed command is a usage
	 * error (2) first. */
	json_t *sess = session_load();
	const char *tenant = sess ? json_string_value(json_object_get(sess, "tenant")) : "";
	const char *sub = nargs > 0 ? args[0] : NULL, *arg = nargs > 1 ? args[1] : NULL;
	if (!path_args_ok(cli, cmd, nargs, args)) {
		json_decref(sess);
		return EXIT_USAGE;
	}
	char path[10240];
	int rc = EXIT_USAGE;
	json_t *doc = NULL;
#define IS(c, s) is_cmd(cmd, sub, c, s)
	if (IS("whoami", NULL) && nargs == 0) {
		rc = run(cli, sess, cmd, "GET", "/v1/auth/me", NULL, &doc);
		char *roles = NULL;
		if (rc == 0 && !cli->json &&
		    cf_json_dump(json_object_get(doc, "roles"), &roles, NULL) == CF_OK)
			printf("%s %s of tenant %s, roles %s\n",
			       json_string_value(json_object_get(doc, "kind")),
			       json_string_value(json_object_get(doc, "id")), tenant, roles);
		free(roles);
	} else if (IS("logout", NULL) && nargs == 0) {
		rc = run(cli, sess, cmd, "POST", "/v1/auth/logout", NULL, NULL);
		if (sess) { /* without a login, there is none to end: 4 */
			session_forget();
			if (rc == EXIT_NOLOGIN)
				rc = 0; /* already ended */
		}
	} else if (IS("password", NULL) && nargs == 0) {
		struct cf_secbuf *cur = NULL, *next = NULL;
		if (!sess)
			rc = no_login(cmd); /* before asking for passwords */
		else if (cli_read_secret(cli, cmd, "Current password: ", false, &cur) &&
		         cli_read_secret(cli, cmd, "New password: ", !cli->secret_fd, &next))
			rc = run(cli, sess, cmd, "POST", "/v1/auth/password",
			         json_pack("{s:s%, s:s%}", "current_password",
			                   (const char *)cur->ptr, cur->len, "new_password",
			                   (const char *)next->ptr, next->len),
			         NULL);
		else
			rc = 1;
		cf_secbuf_free(&cur);
		cf_secbuf_free(&next);
	} else if (IS("mfa", "enroll") && nargs == 1) {
		rc = run(cli, sess, cmd, "POST", "/v1/auth/mfa/totp", NULL, &doc);
		if (rc == 0 && !cli->json)
			printf("Add this to your authenticator app, then run `coffre mfa confirm "
			       "CODE`:\n"
			       "  %s\n  secret: %s\n",
			       json_string_value(json_object_get(doc, "otpauth_uri")),
			       json_string_value(json_object_get(doc, "secret")));
	} else if (IS("mfa", "confirm") && nargs == 2) {
		rc = run(cli, sess, cmd, "POST", "/v1/auth/mfa/totp/confirm",
		         json_pack("{s:s}", "code", arg), &doc);
		if (rc == 0 && !cli->json) {
			puts("Two-factor authentication is on. Keep these recovery codes (each "
			     "works "
			     "once):");
			json_t *codes = json_object_get(doc, "recovery_codes");
			for (size_t i = 0; i < json_array_size(codes); i++)
				printf("  %s\n", json_string_value(json_array_get(codes, i)));
		}
	} else if (IS("sessions", "list") && nargs == 1) {
		rc = run(cli, sess, cmd, "GET", "/v1/auth/sessions", NULL, &doc);
		static const char *const k[] = {"id", "created_at", "seen_at", "current"};
		if (rc == 0 && !cli->json)
			print_rows(json_object_get(doc, "sessions"), k, 4);
	} else if (IS("sessions", "revoke") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/auth/sessions/%s", arg);
		rc = run(cli, sess, cmd, "DELETE", path, NULL, NULL);
	} else if (IS("users", "list") && nargs == 1) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/users", tenant);
		rc = run(cli, sess, cmd, "GET", path, NULL, &doc);
		static const char *const k[] = {"id", "email", "state", "roles"};
		if (rc == 0 && !cli->json)
			print_rows(json_object_get(doc, "users"), k, 4);
	} else if (IS("users", "invite") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/users", tenant);
		rc = run(cli, sess, cmd, "POST", path,
		         json_pack("{s:s, s:o}", "email", arg, "roles", roles_json(cli->roles)),
		         &doc);
		if (rc == 0 && !cli->json)
			printf("invited %s (%s): a setup link was sent to them\n", arg,
			       json_string_value(json_object_get(doc, "id")));
	} else if ((IS("users", "disable") || IS("users", "enable")) && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/users/%s", tenant, arg);
		rc = run(cli, sess, cmd, "PATCH", path,
		         json_pack("{s:s}", "state", sub[0] == 'd' ? "disabled" : "active"), NULL);
	} else if (IS("users", "roles") && nargs == 2 && cli->roles) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/users/%s", tenant, arg);
		rc = run(cli, sess, cmd, "PATCH", path,
		         json_pack("{s:o}", "roles", roles_json(cli->roles)), NULL);
	} else if (IS("users", "delete") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/users/%s", tenant, arg);
		rc = cli->yes ? run(cli, sess, cmd, "DELETE", path, NULL, NULL)
		              : (fputs("coffre users delete: add --yes to delete the user\n",
		                       stderr),
		                 EXIT_USAGE);
	} else if (IS("users", "end-sessions") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/users/%s/sessions", tenant, arg);
		rc = run(cli, sess, cmd, "DELETE", path, NULL, NULL);
	} else if (IS("users", "reset-mfa") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/users/%s/mfa", tenant, arg);
		rc = run(cli, sess, cmd, "DELETE", path, NULL, NULL);
	} else if (IS("clients", "list") && nargs == 1) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/clients", tenant);
		rc = run(cli, sess, cmd, "GET", path, NULL, &doc);
		static const char *const k[] = {"client_id", "name", "state", "roles"};
		if (rc == 0 && !cli->json)
			print_rows(json_object_get(doc, "clients"), k, 4);
	} else if (IS("clients", "create") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/clients", tenant);
		rc = run(cli, sess, cmd, "POST", path,
		         json_pack("{s:s, s:o}", "name", arg, "roles", roles_json(cli->roles)),
		         &doc);
		if (rc == 0 && !cli->json)
			printf("client_id:     %s\nclient_secret: %s   (shown once: keep it now)\n",
			       json_string_value(json_object_get(doc, "client_id")),
			       json_string_value(json_object_get(doc, "client_secret")));
	} else if (IS("clients", "disable") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/clients/%s", tenant, arg);
		rc = run(cli, sess, cmd, "DELETE", path, NULL, NULL);
	} else if (IS("access-review", NULL) && nargs == 0) {
		(void)snprintf(path, sizeof path,
		               "/v1/t/%s/access-review?format=%s&dormant_days=%s", tenant,
		               cli->csv ? "csv" : "json",
		               cli->dormant_days ? cli->dormant_days : "90");
		rc = run(cli, sess, cmd, "GET", path, NULL, &doc);
		static const char *const k[] = {"id", "email", "state", "roles", "mfa", "dormant"};
		if (rc == 0 && !cli->json && doc)
			print_rows(json_object_get(doc, "users"), k, 6);
	} else if (IS("operators", "list") && nargs == 1) {
		rc = run(cli, sess, cmd, "GET", "/v1/operator/operators", NULL, &doc);
		static const char *const k[] = {"id", "email", "state", "mfa", "last_login_at"};
		if (rc == 0 && !cli->json)
			print_rows(json_object_get(doc, "operators"), k, 5);
	} else if (IS("operators", "add") && nargs == 2) {
		rc = run(cli, sess, cmd, "POST", "/v1/operator/operators",
		         json_pack("{s:s}", "email", arg), &doc);
		if (rc == 0 && !cli->json)
			printf("operator %s (%s) added; setup token (shown once): %s\n", arg,
			       json_string_value(json_object_get(doc, "id")),
			       json_string_value(json_object_get(doc, "setup_token")));
	} else if ((IS("operators", "disable") || IS("operators", "reset-mfa")) && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/operator/operators/%s%s", arg,
		               sub[0] == 'r' ? "/mfa" : "");
		rc = run(cli, sess, cmd, "DELETE", path, NULL, NULL);
	} else if (strcmp(cmd, "break-glass") == 0 && sub) {
		/* An operator's session works on every tenant's grants; a tenant's, on its own. */
		bool op = tenant && strcmp(tenant, "_ops") == 0;
		char base[256];
		if (op)
			(void)snprintf(base, sizeof base, "/v1/operator/break-glass");
		else
			(void)snprintf(base, sizeof base, "/v1/t/%s/break-glass", tenant);
		if (strcmp(sub, "list") == 0 && nargs == 1) {
			rc = run(cli, sess, cmd, "GET", base, NULL, &doc);
			static const char *const k[] = {"id",    "tenant",     "operator", "access",
			                                "state", "expires_at", "reason"};
			if (rc == 0 && !cli->json)
				print_rows(json_object_get(doc, "grants"), k, 7);
		} else if (strcmp(sub, "request") == 0 && nargs == 2 && op && cli->reason) {
			json_t *b =
			        json_pack("{s:s, s:s, s:s}", "tenant", arg, "reason", cli->reason,
			                  "access", cli->access ? cli->access : "read");
			if (b && cli->minutes)
				json_object_set_new(b, "minutes",
				                    json_integer(strtol(cli->minutes, NULL, 10)));
			rc = run(cli, sess, cmd, "POST", base, b, &doc);
			if (rc == 0 && !cli->json)
				printf("grant %s asked (%s, %lld minutes): another operator or the "
				       "tenant's owner must approve it\n",
				       json_string_value(json_object_get(doc, "id")),
				       json_string_value(json_object_get(doc, "access")),
				       (long long)json_integer_value(
				               json_object_get(doc, "minutes")));
		} else if (strcmp(sub, "approve") == 0 && nargs == 2) {
			(void)snprintf(path, sizeof path, "%s/%s/approve", base, arg);
			rc = run(cli, sess, cmd, "POST", path, NULL, &doc);
			if (rc == 0 && !cli->json)
				printf("grant %s approved until %lld\n", arg,
				       (long long)json_integer_value(
				               json_object_get(doc, "expires_at")));
		} else if (strcmp(sub, "end") == 0 && nargs == 2) {
			(void)snprintf(path, sizeof path, "%s/%s", base, arg);
			rc = run(cli, sess, cmd, "DELETE", path, NULL, NULL);
		} else {
			fputs(api_usage, stderr);
		}
	} else if (IS("collections", "list") && nargs == 1) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/collections", tenant);
		rc = run(cli, sess, cmd, "GET", path, NULL, &doc);
		static const char *const k[] = {"name", "version", "fields"};
		if (rc == 0 && !cli->json)
			print_rows(json_object_get(doc, "collections"), k, 3);
	} else if (IS("collections", "get") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/collections/%s", tenant, arg);
		bool was = cli->json;
		cli->json = true;
		rc = run(cli, sess, cmd, "GET", path, NULL, NULL);
		cli->json = was;
	} else if ((IS("collections", "create") || IS("collections", "update")) && nargs == 2) {
		json_t *fields = cli->schema ? read_json(cmd, cli->schema) : NULL;
		if (!fields) {
			if (!cli->schema)
				fputs("coffre collections: --schema FILE (a JSON object of fields) "
				      "is "
				      "needed\n",
				      stderr);
			rc = cli->schema ? 1 : EXIT_USAGE;
		} else if (sub[0] == 'c') {
			(void)snprintf(path, sizeof path, "/v1/t/%s/collections", tenant);
			rc = run(cli, sess, cmd, "POST", path,
			         json_pack("{s:s, s:o}", "name", arg, "fields", fields), &doc);
		} else {
			(void)snprintf(path, sizeof path, "/v1/t/%s/collections/%s", tenant, arg);
			rc = run(cli, sess, cmd, "PUT", path, json_pack("{s:o}", "fields", fields),
			         &doc);
		}
		if (rc == 0 && !cli->json)
			printf("collection %s, schema version %lld\n", arg,
			       (long long)json_integer_value(json_object_get(doc, "version")));
	} else if (IS("collections", "delete") && nargs == 2) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/collections/%s?confirm=%s", tenant, arg,
		               arg);
		rc = cli->yes ? run(cli, sess, cmd, "DELETE", path, NULL, NULL)
		              : (fputs("coffre collections delete: add --yes: every record of it "
		                       "goes for good\n",
		                       stderr),
		                 EXIT_USAGE);
	} else if (IS("records", "put") && (nargs == 2 || nargs == 3)) {
		json_t *data = sess ? read_json(cmd, nargs == 3 ? args[2] : NULL) : NULL;
		if (!sess) {
			rc = no_login(cmd); /* before reading the record */
		} else if (!data) {
			rc = 1;
		} else if (cli->id) {
			(void)snprintf(path, sizeof path, "/v1/t/%s/collections/%s/records/%s",
			               tenant, arg, cli->id);
			rc = run(cli, sess, cmd, "PUT", path, json_pack("{s:o}", "data", data),
			         &doc);
		} else {
			(void)snprintf(path, sizeof path, "/v1/t/%s/collections/%s/records", tenant,
			               arg);
			rc = run(cli, sess, cmd, "POST", path, json_pack("{s:o}", "data", data),
			         &doc);
		}
		if (rc == 0 && !cli->json)
			printf("%s version %lld\n", json_string_value(json_object_get(doc, "id")),
			       (long long)json_integer_value(json_object_get(doc, "version")));
	} else if ((IS("records", "get") || IS("records", "versions")) && nargs == 3) {
		char q[8192] = "";
		int qn = 0;
		if (sub[0] == 'g' && cli->reveal) {
			char *f = curl_easy_escape(NULL, cli->reveal, 0);
			char *r = curl_easy_escape(NULL, cli->reason ? cli->reason : "", 0);
			qn = snprintf(q, sizeof q, "?reveal=%s&reason=%s", f ? f : "", r ? r : "");
			curl_free(f);
			curl_free(r);
		}
		int pn = snprintf(path, sizeof path, "/v1/t/%s/collections/%s/records/%s%s%s",
		                  tenant, arg, args[2], sub[0] == 'v' ? "/versions" : "", q);
		if (cli->reason && !cli->reveal) {
			fputs("coffre records get: --reason goes with --reveal F,F (the fields to "
			      "show in clear)\n",
			      stderr);
			rc = EXIT_USAGE;
		} else if (qn < 0 || (size_t)qn >= sizeof q || pn < 0 ||
		           (size_t)pn >= sizeof path) {
			/* never a request cut short (a reason cut inside an escape) */
			fputs("coffre records get: --reveal and --reason are too long\n", stderr);
			rc = EXIT_USAGE;
		} else {
			bool was = cli->json;
			cli->json = true; /* a record is JSON */
			rc = run(cli, sess, cmd, "GET", path, NULL, NULL);
			cli->json = was;
		}
	} else if (IS("records", "list") && nargs == 2) {
		rc = cmd_records_list(cli, sess, tenant, arg);
	} else if (IS("records", "delete") && nargs == 3) {
		(void)snprintf(path, sizeof path, "/v1/t/%s/collections/%s/records/%s", tenant, arg,
		               args[2]);
		rc = run(cli, sess, cmd, "DELETE", path, NULL, NULL);
	} else if (IS("export", NULL) && nargs == 0) {
		rc = cmd_export(cli, sess, tenant);
	} else if (IS("api", NULL) && (nargs == 2 || nargs == 3)) {
		json_t *body = NULL;
		if (nargs == 3 && strcmp(args[2], "-") == 0) {
			struct cf_buf in;
			cf_buf_init(&in, REPLY_MAX);
			char chunk[4096];
			size_t n;
			while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0 &&
			       cf_buf_append(&in, chunk, n) == CF_OK)
				;
			if (cf_json_parse(in.data, in.len, REPLY_MAX, &body) != CF_OK)
				body = NULL;
			cf_buf_free(&in);
		} else if (nargs == 3 && cf_json_parse((const uint8_t *)args[2], strlen(args[2]),
		                                       REPLY_MAX, &body) != CF_OK) {
			body = NULL;
		}
		if (nargs == 3 && !body) {
			fputs("coffre api: the body is not JSON\n", stderr);
			rc = EXIT_USAGE;
		} else {
			bool was_json = cli->json;
			cli->json = true; /* api prints the server's JSON */
			rc = run(cli, sess, cmd, args[0], args[1], body, NULL);
			cli->json = was_json;
		}
	} else {
		fputs(api_usage, stderr);
	}
#undef IS
	if (rc == EXIT_NOLOGIN && strcmp(cmd, "logout") != 0)
		session_forget();
	json_decref(doc);
	json_decref(sess);
	curl_global_cleanup();
	return rc;
}
