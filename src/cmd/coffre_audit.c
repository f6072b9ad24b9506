/* coffre — `coffre audit verify` and `coffre audit verify-proof`: checking the audit log
 * (AL1) offline, from the database itself or from proof files, without trusting coffred.
 * Exit status: 0 verified, 1 a problem found (or cannot read), 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "cmd/cli.h"

#define EXIT_USAGE 2

static const char audit_usage[] =
        "usage: coffre audit verify [--store URL] [--trusted-checkpoint FILE] [--json]\n"
        "       coffre audit verify-proof [--json] FILE...\n"
        "       coffre audit list [--tenant NAME] [--action A] [--actor V] [--resource V]\n"
        "                         [--outcome ok|denied|failed] [--limit N] [--cursor C]\n"
        "\n"
        "  verify        checks the whole audit log from the database (SQLite file or\n"
        "                PostgreSQL URL; default DATA/coffre.db): re-hashes every entry,\n"
        "                rebuilds the Merkle tree, checks every checkpoint's signature and\n"
        "                root, and every tenant's sequence numbers; names the first entry\n"
        "                that does not match. With --trusted-checkpoint, also proves the log\n"
        "                extends a checkpoint you kept earlier (a rewritten history is caught\n"
        "                even if re-signed with a stolen key).\n"
        "  list          a tenant's entries (or the deployment's own), newest first, through\n"
        "                the admin socket: actor and resource are given in clear and\n"
        "                matched as the log stores them (HMACs for a tenant)\n"
        "  verify-proof  checks inclusion or consistency proof files (JSON: leafIdx,\n"
        "                treeSize, root, leafHash, proof; or size1, size2, root1, root2,\n"
        "                proof), as RFC 9162 says.\n"
        "\n"
        "Exit status: 0 verified, 1 a problem found or the log cannot be read, 2 bad usage.\n";

const char *cli_audit_usage(void)
{
	return audit_usage;
}

static void progress(uint64_t done, uint64_t total)
{
	fprintf(stderr, "\rverifying: %llu of %llu entries", (unsigned long long)done,
	        (unsigned long long)total);
}

static char *read_text(const char *path, size_t max)
{
	struct cf_buf b;
	if (cf_file_read(path, max, &b) != CF_OK)
		return NULL;
	char *s = NULL;
	if (cf_buf_take_str(&b, &s) != CF_OK)
		s = NULL;
	cf_buf_free(&b);
	return s;
}

static int verify(const struct cli *cli)
{
	char url[CF_PATH_MAX + 16];
	const char *store_url = cli->store;
	if (!store_url) {
		(void)snprintf(url, sizeof url, "sqlite:%s/coffre.db", cli->data);
		store_url = url;
	}
	cf_log_set_level(CF_LOG_ERROR);
	struct cf_store *st = NULL;
	if (cf_store_open_coffre(store_url, cli->migrate_url, false, 0, &st) != CF_OK) {
		fprintf(stderr, "coffre audit verify: %s\n", cf_err_detail());
		return 1;
	}
	char *trusted = NULL;
	if (cli->trusted && !(trusted = read_text(cli->trusted, CF_CHECKPOINT_MAX))) {
		fprintf(stderr, "coffre audit verify: %s\n", /* cf_file_read names the file */
		        cf_err_detail()[0] ? cf_err_detail()
		                           : "cannot read the trusted checkpoint");
		cf_store_close(&st);
		return 1;
	}
	uint8_t pub[CF_ED25519_PUB];
	char origin[96] = "";
	struct cf_audit_report rep = {.ok = true};
	int rc = 1;
	cf_err e = cf_audit_identity(st, pub, origin, sizeof origin);
	if (e == CF_E_NOT_FOUND) {
		memset(pub, 0, sizeof pub); /* no checkpoint yet: nothing is signed */
		e = CF_OK;
	}
	if (e == CF_OK)
		e = cf_audit_verify(st, pub, trusted,
		                    isatty(STDERR_FILENO) && !cli->json ? progress : NULL, &rep);
	if (isatty(STDERR_FILENO) && !cli->json)
		fprintf(stderr, "\r%60s\r", "");
	if (e != CF_OK) {
		fprintf(stderr, "coffre audit verify: %s\n", cf_err_detail());
	} else {
		rc = rep.ok ? 0 : 1;
		if (cli->json) {
			json_t *o =
			        json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:s?}", "ok", rep.ok,
			                  "origin", origin, "entries", (json_int_t)rep.entries,
			                  "sequenced", (json_int_t)rep.sequenced, "checkpoints",
			                  (json_int_t)rep.checkpoints, "tenants",
			                  (json_int_t)rep.tenants, "pruned", (json_int_t)rep.pruned,
			                  "problem", rep.ok ? NULL : rep.problem);
			char *s = NULL;
			if (o && cf_json_dump(o, &s, NULL) == CF_OK)
				puts(s);
			free(s);
			json_decref(o);
		} else if (rep.ok) {
			printf("audit log %s: verified\n  %llu entries (%llu in the tree), %llu "
			       "checkpoints, %llu tenants%s\n",
			       origin[0] ? origin : "(no checkpoint yet)",
			       (unsigned long long)rep.entries, (unsigned long long)rep.sequenced,
			       (unsigned long long)rep.checkpoints, (unsigned long long)rep.tenants,
			       trusted ? "; it extends the trusted checkpoint" : "");
			if (rep.pruned)
				printf("  retention pruned the first %llu entries; the rest is "
				       "anchored by "
				       "the checkpoint signed there\n",
				       (unsigned long long)rep.pruned);
		} else {
			printf("audit log %s: NOT VERIFIED\n  %s\n", origin, rep.problem);
		}
	}
	free(trusted);
	cf_store_close(&st);
	return rc;
}

static int verify_proofs(const struct cli *cli, int nfiles, char **files)
{
	if (nfiles == 0) {
		fputs(audit_usage, stderr);
		return EXIT_USAGE;
	}
	int bad = 0;
	for (int i = 0; i < nfiles; i++) {
		char *text = read_text(files[i], 64 * 1024);
		json_t *doc = NULL;
		cf_err e = text ? cf_json_parse_object((const uint8_t *)text, strlen(text),
		                                       64 * 1024, &doc)
		                : CF_E_IO;
		if (e == CF_OK)
			e = cf_merkle_verify_json(doc);
		const char *why = e == CF_OK ? "" : cf_err_detail();
		if (cli->json)
			printf("{\"file\":\"%s\",\"ok\":%s,\"error\":\"%s\"}\n", files[i],
			       e == CF_OK ? "true" : "false", e == CF_OK ? "" : cf_err_name(e));
		else
			printf("%s: %s%s%s\n", files[i], e == CF_OK ? "verified" : "NOT VERIFIED",
			       e == CF_OK ? "" : ": ", why);
		bad += e != CF_OK;
		json_decref(doc);
		free(text);
	}
	return bad ? 1 : 0;
}

static int list(const struct cli *cli)
{
	json_t *req = json_pack("{s:s}", "op", "audit_list");
	const char *str_opts[][2] = {{"tenant", cli->tenant},
	                             {"action", cli->action},
	                             {"actor", cli->actor},
	                             {"resource", cli->resource},
	                             {"outcome", cli->outcome}};
	for (size_t i = 0; req && i < 5; i++)
		/* a filter that is not UTF-8 would be dropped, and the list wider than asked */
		if (str_opts[i][1] &&
		    json_object_set_new(req, str_opts[i][0], json_string(str_opts[i][1])) != 0) {
			fprintf(stderr, "coffre audit list: --%s is not UTF-8 text\n",
			        str_opts[i][0]);
			json_decref(req);
			return EXIT_USAGE;
		}
	const char *num_opts[][2] = {{"limit", cli->limit}, {"cursor", cli->cursor}};
	for (size_t i = 0; req && i < 2; i++) {
		if (!num_opts[i][1])
			continue;
		char *end = NULL;
		long long v = strtoll(num_opts[i][1], &end, 10);
		if (!end || *end || v < 0) {
			fprintf(stderr, "coffre audit list: --%s must be a number\n",
			        num_opts[i][0]);
			json_decref(req);
			return EXIT_USAGE;
		}
		json_object_set_new(req, num_opts[i][0], json_integer(v));
	}
	if (cf_secmem_init(64 * 1024) != CF_OK)
		return 1;
	int rc = 1;
	json_t *r = cli_admin_run(cli, "audit list", req, &rc);
	if (r && !cli->json) {
		json_t *e = NULL;
		size_t i;
		for (i = 0; i < json_array_size(json_object_get(r, "entries")) &&
		            (e = json_array_get(json_object_get(r, "entries"), i));
		     i++) {
			const char *err = json_string_value(json_object_get(e, "error"));
			printf("%s  #%-6lld %-8s %-18s %-20s %s%s%s\n",
			       json_string_value(json_object_get(e, "time")),
			       (long long)json_integer_value(json_object_get(e, "seq")),
			       json_string_value(json_object_get(e, "outcome")),
			       json_string_value(json_object_get(e, "action")),
			       json_string_value(json_object_get(e, "actor")),
			       json_string_value(json_object_get(e, "resource")), err ? "  " : "",
			       err ? err : "");
		}
		json_t *next = json_object_get(r, "next");
		if (json_is_integer(next))
			printf("(more: --cursor %lld)\n", (long long)json_integer_value(next));
	}
	json_decref(r);
	cf_secmem_shutdown();
	return rc;
}

int cli_audit(struct cli *cli, int nargs, char **args)
{
	const char *sub = nargs > 0 ? args[0] : NULL;
	if (sub && strcmp(sub, "verify") == 0 && nargs == 1)
		return verify(cli);
	if (sub && strcmp(sub, "list") == 0 && nargs == 1)
		return list(cli);
	if (sub && strcmp(sub, "verify-proof") == 0)
		return verify_proofs(cli, nargs - 1, args + 1);
	fputs(audit_usage, stderr);
	return EXIT_USAGE;
}
