/* coffre — what the command line's files share. */
#ifndef CF_CMD_CLI_H
#define CF_CMD_CLI_H

#include "base/base.h"

struct cli {
	const char *store;
	const char *migrate_url;
	const char *addr;
	const char *cacert;
	const char *data;
	const char *socket;
	const char *provider, *shares, *threshold, *secret_fd, *tenant, *rotation_days;
	const char *trusted, *action, *actor, *resource, *outcome, *limit, *cursor, *owner;
	const char *email, *code, *roles, *dormant_days, *reason, *access, *minutes;
	const char *schema, *id, *if_match, *reveal, *filter;
	bool json, reset, yes, wait, csv, operator;
	char cacert_buf[CF_PATH_MAX + 16];
};

/* The admin-socket commands (coffre_admin.c): operator, tenant, keys. The usage text of
 * cmd, or NULL when cmd is not one of them. */
const char *cli_admin_usage(const char *cmd);
/* Runs one; returns the exit status. */
int cli_admin(struct cli *cli, const char *cmd, int nargs, char **args);

/* Sends one request on the admin socket; prints the reply with --json and any error;
 * returns the reply (NULL on failure) and sets *rc to the exit status. */
json_t *cli_admin_run(const struct cli *cli, const char *what, json_t *req, int *rc);

/* Reads a secret into locked memory: --secret-fd N, a prompt with echo off on the
 * terminal (twice when confirm), or a line of stdin. */
bool cli_read_secret(const struct cli *cli, const char *what, const char *prompt, bool confirm,
                     struct cf_secbuf **out);

/* One HTTPS call to cli->addr (or the session's address, with its cookie and CSRF
 * token): TLS 1.2+, the certificate verified (cli->cacert or the session's). False,
 * after saying why, when the server cannot be reached or verified. */
struct cli_reply {
	long status;
	struct cf_buf body;
	char cookie[256]; /* a session cookie the reply set */
};
bool cli_http(const struct cli *cli, const json_t *session, const char *method, const char *path,
              const char *body, struct cli_reply *r);

/* The identity commands over HTTPS (coffre_api.c): login, users, clients... */
const char *cli_api_usage(const char *cmd);
int cli_api(struct cli *cli, const char *cmd, int nargs, char **args);

/* coffre audit (coffre_audit.c). */
const char *cli_audit_usage(void);
int cli_audit(struct cli *cli, int nargs, char **args);

#endif
