/* coffre — configuration: INI file (libinih), then COFFRE_* environment, then flags.
 * Every key is declared once in the table below with its type and bounds; anything not
 * in the table is an error that names where it came from. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "base/base.h"

enum key_type { KEY_STR, KEY_UINT, KEY_LEVEL };

struct key_def {
	const char *section;
	const char *key;
	enum key_type type;
	size_t offset;
	size_t size; /* KEY_STR: capacity */
	unsigned min, max;
};

#define STR(sec, k, field)                                                                         \
	{                                                                                          \
		sec, k, KEY_STR, offsetof(struct cf_config, field),                                \
		        sizeof(((struct cf_config *)0)->field), 0, 0                               \
	}
#define UINT(sec, k, field, lo, hi)                                                                \
	{                                                                                          \
		sec, k, KEY_UINT, offsetof(struct cf_config, field), 0, lo, hi                     \
	}

static const struct key_def keys[] = {
        STR("server", "listen", listen),
        STR("server", "data", data_dir),
        UINT("server", "threads", threads, 0, 256),
        UINT("server", "workers", workers, 0, CF_POOL_THREADS_MAX),
        UINT("server", "max_connections", max_connections, 1, CF_HTTP_CONNECTIONS_MAX),
        UINT("server", "per_ip_connections", per_ip_connections, 1, CF_HTTP_CONNECTIONS_MAX),
        UINT("server", "connection_timeout", connection_timeout, 1, CF_HTTP_TIMEOUT_MAX),
        UINT("server", "connection_memory", conn_memory, CF_HTTP_CONN_MEMORY_MIN,
             CF_HTTP_CONN_MEMORY_MAX),
        UINT("server", "max_body", max_body, 1024, CF_HTTP_BODY_MAX),
        UINT("server", "rate_per_s", rate_per_s, 1, CF_HTTP_RATE_MAX),
        UINT("server", "rate_burst", rate_burst, 1, CF_HTTP_RATE_MAX),
        UINT("server", "shutdown_grace", shutdown_grace, 0, 600),
        UINT("server", "disk_reserve_mb", disk_reserve_mb, 0, 1024u * 1024u),
        STR("store", "url", store_url),
        STR("store", "migrate_url", store_migrate_url),
        UINT("store", "pool", store_pool, 0, 64),
        STR("server", "admin_socket", admin_socket),
        STR("keys", "store", keys_store_url),
        STR("keys", "migrate_url", keys_migrate_url),
        STR("keys", "environment", environment),
        UINT("keys", "rotation_days", rotation_days, 1, 3650),
        UINT("keys", "rewrap_batch", rewrap_batch, 1, 100000),
        UINT("keys", "job_interval", job_interval, 1, 86400),
        STR("keys", "pkcs11_module", pkcs11_module),
        STR("keys", "pkcs11_token", pkcs11_token),
        UINT("audit", "checkpoint_interval", checkpoint_interval, 1, 3600),
        UINT("audit", "retention_days", retention_days, 730, 36500),
        UINT("audit", "refusal_summary", refusal_summary, 1, 3600),
        UINT("vault", "purge_days", purge_days, 0, 3650),
        STR("audit", "sink_file", sink_file),
        STR("audit", "sink_syslog", sink_syslog),
        STR("audit", "sink_store", sink_store),
        UINT("auth", "session_idle", session_idle, 60, 86400),
        UINT("auth", "session_max", session_max, 300, 30u * 86400u),
        UINT("auth", "token_ttl", token_ttl, 30, 86400),
        UINT("auth", "reauth_window", reauth_window, 1, 86400),
        UINT("auth", "argon2_memory", argon2_memory, 8192, 4u * 1024u * 1024u),
        UINT("auth", "argon2_passes", argon2_passes, 1, 16),
        UINT("auth", "hash_threads", hash_threads, 0, 64),
        STR("auth", "outbox", outbox),
        STR("auth", "public_url", public_url),
        STR("auth", "smtp_url", smtp_url),
        STR("auth", "smtp_from", smtp_from),
        STR("auth", "smtp_user", smtp_user),
        STR("auth", "smtp_password_file", smtp_password_file),
        STR("tls", "cert", tls_cert),
        STR("tls", "key", tls_key),
        {"log", "level", KEY_LEVEL, offsetof(struct cf_config, log_level), 0, 0, 0},
};
#define NKEYS (sizeof keys / sizeof keys[0])

#undef STR
#undef UINT

void cf_config_defaults(struct cf_config *cfg)
{
	*cfg = (struct cf_config){
	        .threads = 0,
	        .workers = 0,
	        .max_connections = CF_HTTP_CONNECTIONS_DEFAULT,
	        .per_ip_connections = CF_HTTP_PER_IP_DEFAULT,
	        .connection_timeout = CF_HTTP_TIMEOUT_DEFAULT,
	        .conn_memory = CF_HTTP_CONN_MEMORY_DEFAULT,
	        .max_body = CF_HTTP_BODY_DEFAULT,
	        .rate_per_s = CF_HTTP_RATE_DEFAULT,
	        .rate_burst = CF_HTTP_BURST_DEFAULT,
	        .shutdown_grace = CF_HTTP_GRACE_DEFAULT,
	        .disk_reserve_mb = 256,
	        .rotation_days = 90,
	        .rewrap_batch = 500,
	        .job_interval = 60,
	        .checkpoint_interval = 5,
	        .retention_days = 730,
	        .refusal_summary = 60,
	        .purge_days = 30,
	        .session_idle = 1800,
	        .session_max = 43200,
	        .token_ttl = 900,
	        .reauth_window = 900,
	        .argon2_memory = 65536,
	        .argon2_passes = 3,
	        .log_level = CF_LOG_INFO,
	};
	(void)snprintf(cfg->listen, sizeof cfg->listen, "127.0.0.1:8443");
	(void)snprintf(cfg->data_dir, sizeof cfg->data_dir, "/var/lib/coffre");
}

static const struct key_def *find_key(const char *section, const char *key)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			return &keys[i];
	return NULL;
}

static bool known_section(const char *section)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0)
			return true;
	return false;
}

/* Strict unsigned parse: digits only, no sign, no spaces, no overflow. */
static bool parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	if (!*s)
		return false;
	unsigned long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT_MAX)
			return false;
	}
	if (v < min || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

static cf_err set_value(struct cf_config *cfg, const struct key_def *k, const char *value)
{
	uint8_t *field = (uint8_t *)cfg + k->offset;
	switch (k->type) {
	case KEY_STR: {
		size_t n = strlen(value);
		if (n >= k->size)
			return cf_err_fail(CF_E_CONFIG, "%s.%s is longer than %zu bytes",
			                   k->section, k->key, k->size - 1);
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)value[i] < 0x20)
				return cf_err_fail(CF_E_CONFIG, "%s.%s holds a control character",
				                   k->section, k->key);
		memcpy(field, value, n + 1);
		return CF_OK;
	}
	case KEY_UINT: {
		unsigned v;
		if (!parse_uint(value, k->min, k->max, &v))
			return cf_err_fail(CF_E_CONFIG,
			                   "%s.%s must be a whole number from %u to %u", k->section,
			                   k->key, k->min, k->max);
		memcpy(field, &v, sizeof v);
		return CF_OK;
	}
	case KEY_LEVEL: {
		static const char *const names[] = {"debug", "info", "warn", "error"};
		for (unsigned i = 0; i < 4; i++)
			if (strcmp(value, names[i]) == 0) {
				enum cf_log_level lvl = (enum cf_log_level)i;
				memcpy(field, &lvl, sizeof lvl);
				return CF_OK;
			}
		return cf_err_fail(CF_E_CONFIG, "%s.%s must be one of debug, info, warn, error",
		                   k->section, k->key);
	}
	}
	return CF_E_INTERNAL;
}

cf_err cf_config_set(struct cf_config *cfg, const char *section, const char *key, const char *value)
{
	const struct key_def *k = find_key(section, key);
	if (!k)
		return cf_err_fail(CF_E_CONFIG, "unknown key '%s' in [%s]", key, section);
	return set_value(cfg, k, value);
}

struct ini_ctx {
	struct cf_config *cfg;
	bool failed;
	char msg[CF_ERR_DETAIL_MAX];
	bool seen[NKEYS];
};

static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *ctx = user;
	if (ctx->failed)
		return 0;
	const struct key_def *k = NULL;
	if (!known_section(section)) {
		(void)snprintf(ctx->msg, sizeof ctx->msg,
		               "unknown section [%.64s] (known: server, store, tls, log)", section);
	} else if (!(k = find_key(section, name))) {
		(void)snprintf(ctx->msg, sizeof ctx->msg, "unknown key '%.64s' in [%s]", name,
		               section);
	} else if (ctx->seen[k - keys]) {
		(void)snprintf(ctx->msg, sizeof ctx->msg, "%s.%s is set twice", section, name);
	} else if (set_value(ctx->cfg, k, value) != CF_OK) {
		(void)snprintf(ctx->msg, sizeof ctx->msg, "%s", cf_err_detail());
	} else {
		ctx->seen[k - keys] = true;
		return 1;
	}
	ctx->failed = true;
	return 0;
}

cf_err cf_config_load_string(struct cf_config *cfg, const char *text, const char *name)
{
	if (strlen(text) > CF_CONFIG_BYTES_MAX)
		return cf_err_fail(CF_E_CONFIG, "%s: larger than %u bytes", name,
		                   CF_CONFIG_BYTES_MAX);
	struct ini_ctx ctx = {.cfg = cfg};
	int line = ini_parse_string(text, config_ini_handler, &ctx);
	if (line == 0)
		return CF_OK;
	if (line < 0)
		return cf_err_fail(CF_E_NOMEM, "%s: out of memory while parsing", name);
	if (ctx.failed)
		return cf_err_fail(CF_E_CONFIG, "%s:%d: %s", name, line, ctx.msg);
	return cf_err_fail(CF_E_CONFIG, "%s:%d: syntax error (expected [section] or key = value)",
	                   name, line);
}

cf_err cf_config_load_file(struct cf_config *cfg, const char *path)
{
	cf_err err = CF_OK;
	char *text = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return cf_err_fail(CF_E_CONFIG, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		err = cf_err_fail(CF_E_CONFIG, "%s: not a regular file", path);
		goto out_close;
	}
	if (st.st_size > (off_t)CF_CONFIG_BYTES_MAX) {
		err = cf_err_fail(CF_E_CONFIG, "%s: larger than %u bytes", path,
		                  CF_CONFIG_BYTES_MAX);
		goto out_close;
	}
	size_t size = (size_t)st.st_size;
	text = malloc(size + 1);
	CF_ENSURE_OUT(text, CF_E_NOMEM, out_close);
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, text + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = cf_err_fail(CF_E_CONFIG, "%s: cannot read: %s", path,
			                  r < 0 ? strerror(errno) : "file shrank while reading");
			goto out_free;
		}
		got += (size_t)r;
	}
	text[size] = '\0';
	if (memchr(text, '\0', size)) {
		err = cf_err_fail(CF_E_CONFIG, "%s: holds a NUL byte; not a configuration file",
		                  path);
		goto out_free;
	}
	err = cf_config_load_string(cfg, text, path);
out_free:
	free(text);
out_close:
	close(fd);
	return err;
}

cf_err cf_config_load_env(struct cf_config *cfg, char *const *envp)
{
	static const char prefix[] = "COFFRE_";
	for (char *const *e = envp; e && *e; e++) {
		const char *var = *e;
		if (strncmp(var, prefix, sizeof prefix - 1) != 0)
			continue;
		const char *eq = strchr(var, '=');
		if (!eq)
			continue;
		const char *rest = var + sizeof prefix - 1;
		const char *us = memchr(rest, '_', (size_t)(eq - rest));
		if (!us)
			continue; /* COFFRE_ADDR and the like belong to the command line */
		char section[16], key[64];
		size_t slen = (size_t)(us - rest), klen = (size_t)(eq - us - 1);
		if (slen >= sizeof section || klen >= sizeof key)
			continue;
		for (size_t i = 0; i < slen; i++)
			section[i] = (char)tolower((unsigned char)rest[i]);
		section[slen] = '\0';
		for (size_t i = 0; i < klen; i++)
			key[i] = (char)tolower((unsigned char)us[1 + i]);
		key[klen] = '\0';
		if (!known_section(section))
			continue;
		const struct key_def *k = find_key(section, key);
		if (!k)
			return cf_err_fail(CF_E_CONFIG,
			                   "environment %.*s: unknown key '%s' in [%s]",
			                   (int)(eq - var), var, key, section);
		if (set_value(cfg, k, eq + 1) != CF_OK) {
			char why[CF_ERR_DETAIL_MAX];
			(void)snprintf(why, sizeof why, "%s", cf_err_detail());
			return cf_err_fail(CF_E_CONFIG, "environment %.*s: %s", (int)(eq - var),
			                   var, why);
		}
	}
	return CF_OK;
}

cf_err cf_config_validate(const struct cf_config *cfg)
{
	char host[256];
	unsigned port;
	if (cf_config_split_listen(cfg->listen, host, sizeof host, &port) != CF_OK)
		return cf_err_fail(
		        CF_E_CONFIG,
		        "server.listen '%.200s' must be HOST:PORT (e.g. 127.0.0.1:8443 or "
		        "[::1]:8443)",
		        cfg->listen);
	if (!cfg->data_dir[0])
		return cf_err_fail(CF_E_CONFIG, "server.data must name a folder");
	if (!cfg->dev && (!cfg->tls_cert[0] || !cfg->tls_key[0]))
		return cf_err_fail(CF_E_CONFIG,
		                   "tls.cert and tls.key are required outside development "
		                   "mode (or start with --dev)");
	if (cfg->environment[0] && strcmp(cfg->environment, "production") != 0 &&
	    strcmp(cfg->environment, "development") != 0)
		return cf_err_fail(CF_E_CONFIG,
		                   "keys.environment '%.20s' must be production or development",
		                   cfg->environment);
	if (!cfg->dev && strcmp(cfg->environment, "development") == 0)
		return cf_err_fail(CF_E_CONFIG, "keys.environment = development needs --dev");
	if (cfg->per_ip_connections > cfg->max_connections)
		return cf_err_fail(
		        CF_E_CONFIG,
		        "server.per_ip_connections (%u) exceeds server.max_connections (%u)",
		        cfg->per_ip_connections, cfg->max_connections);
	return CF_OK;
}

cf_err cf_config_split_listen(const char *listen, char *host, size_t host_cap, unsigned *port)
{
	const char *colon;
	const char *h = listen;
	size_t hlen;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':')
			return CF_E_CONFIG;
		h = listen + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon)
			return CF_E_CONFIG;
		hlen = (size_t)(colon - listen);
		if (memchr(listen, ':', hlen))
			return CF_E_CONFIG; /* bare IPv6 needs brackets */
	}
	if (hlen == 0 || hlen >= host_cap)
		return CF_E_CONFIG;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (!parse_uint(colon + 1, 0, 65535, port)) /* 0: any free port */
		return CF_E_CONFIG;
	return CF_OK;
}
