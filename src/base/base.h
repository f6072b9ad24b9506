/* coffre — base: errors, spans, bounded buffers, secure memory, strict JSON,
 * configuration, logging, clocks, the work pool and process hardening.
 * The foundation every other part stands on; it uses no other part. */
#ifndef CF_BASE_H
#define CF_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/limits.h"

#define CF_MUST __attribute__((warn_unused_result))
/* A scratch buffer every byte of which is written before it is read: left out of
 * -ftrivial-auto-var-init=zero, whose clearing cost more than the work on it (a
 * Merkle hash's 1 KiB, an audit entry's 2 KiB). Only where the code shows it. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define CF_SCRATCH __attribute__((uninitialized))
#else
#define CF_SCRATCH
#endif
#define CF_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Errors ---------------------------------------------------------------------------
 * Every fallible function returns cf_err (CF_OK is 0). Each code has a stable name that
 * clients see, an HTTP status and a default message. Names never change once shipped:
 * docs/errors.md lists them. */
#define CF_ERRORS(X)                                                                               \
	X(CF_OK, "ok", 200, "success")                                                             \
	X(CF_E_NOMEM, "out_of_memory", 503, "the server is short of memory; retry later")          \
	X(CF_E_INVALID, "invalid_argument", 400, "an argument is invalid")                         \
	X(CF_E_TOO_LARGE, "too_large", 413, "the input is larger than allowed")                    \
	X(CF_E_MALFORMED_JSON, "malformed_json", 400, "the body is not valid JSON")                \
	X(CF_E_DUPLICATE_KEY, "duplicate_key", 400, "a JSON object repeats a key")                 \
	X(CF_E_TOO_DEEP, "too_deep", 400, "the JSON document is nested too deeply")                \
	X(CF_E_WRONG_TYPE, "wrong_type", 422, "a field has the wrong type")                        \
	X(CF_E_MISSING_FIELD, "missing_field", 422, "a required field is missing")                 \
	X(CF_E_UNKNOWN_FIELD, "unknown_field", 422,                                                \
	  "the body has a field this call does not take")                                          \
	X(CF_E_OUT_OF_RANGE, "out_of_range", 422, "a value is outside its allowed range")          \
	X(CF_E_UNSUPPORTED_MEDIA, "unsupported_media_type", 415,                                   \
	  "the body must be application/json")                                                     \
	X(CF_E_NOT_FOUND, "not_found", 404, "no such resource")                                    \
	X(CF_E_METHOD, "method_not_allowed", 405, "this resource does not take that method")       \
	X(CF_E_URI_TOO_LONG, "uri_too_long", 414, "the request path is too long")                  \
	X(CF_E_RATE_LIMITED, "rate_limited", 429,                                                  \
	  "too many requests from this address; retry after Retry-After seconds")                  \
	X(CF_E_BUSY, "busy", 503, "the server is busy; retry later")                               \
	X(CF_E_SHUTTING_DOWN, "shutting_down", 503,                                                \
	  "the server is stopping; retry on another node")                                         \
	X(CF_E_INVALID_VALUE, "invalid_value", 422, "a value breaks its field's rule")             \
	X(CF_E_CONFLICT, "conflict", 409, "the change conflicts with what is stored")              \
	X(CF_E_STORE_UNAVAILABLE, "store_unavailable", 503,                                        \
	  "the database is unavailable; retry later")                                              \
	X(CF_E_STORE_SCHEMA, "store_schema", 500,                                                  \
	  "the database schema does not match this coffre")                                        \
	X(CF_E_STORE_MIGRATION, "store_migration", 500, "a database migration failed")             \
	X(CF_E_IO, "io_error", 500, "an input/output error occurred on the server")                \
	X(CF_E_CONFIG, "config_error", 500, "the configuration is invalid")                        \
	X(CF_E_INTEGRITY, "integrity", 500, "data failed its integrity check")                     \
	X(CF_E_UNSEAL_FAILED, "unseal_failed", 403,                                                \
	  "the passphrase or shares do not open the root key")                                     \
	X(CF_E_SEALED, "sealed", 503, "the vault is sealed; an operator must unseal it")           \
	X(CF_E_NOT_INITIALIZED, "not_initialized", 409,                                            \
	  "the vault has no root key yet; an operator must initialize it")                         \
	X(CF_E_TENANT_SUSPENDED, "tenant_suspended", 403, "this tenant is suspended")              \
	X(CF_E_KEY_DESTROYED, "key_destroyed", 410,                                                \
	  "the key that sealed this data has been destroyed")                                      \
	X(CF_E_FORBIDDEN, "forbidden", 403, "the caller may not do this")                          \
	X(CF_E_UNAUTHENTICATED, "unauthenticated", 401, "this call needs a session or a token")    \
	X(CF_E_BAD_CREDENTIALS, "invalid_credentials", 401, "the credentials are not valid")       \
	X(CF_E_INVALID_TOKEN, "invalid_token", 401, "the token is malformed, expired or revoked")  \
	X(CF_E_CSRF, "csrf_failed", 403, "a cookie-authenticated write needs its X-CSRF-Token")    \
	X(CF_E_WEAK_PASSWORD, "weak_password", 422, "the password does not meet the policy")       \
	X(CF_E_PASSWORD_EXPIRED, "password_expired", 403,                                          \
	  "the password has expired: log in again with a new_password")                            \
	X(CF_E_MFA_REQUIRED, "mfa_required", 401,                                                  \
	  "this account needs its TOTP code or a recovery code")                                   \
	X(CF_E_MFA_ENROLL, "mfa_enrollment_required", 403,                                         \
	  "this tenant requires two-factor authentication: enroll first")                          \
	X(CF_E_REAUTH, "reauthentication_required", 403,                                           \
	  "this operation needs a recent login; log in again")                                     \
	X(CF_E_CRYPTO, "crypto_error", 500, "a cryptographic operation failed")                    \
	X(CF_E_SECMEM, "secure_memory", 500, "secure memory could not be locked")                  \
	X(CF_E_PERMISSION, "permission", 500, "a file or folder has unsafe permissions")           \
	X(CF_E_INTERNAL, "internal_error", 500, "an internal error occurred")

#define CF_ERR_ENUM_(id, name, status, msg) id,
typedef enum cf_err_code { CF_ERRORS(CF_ERR_ENUM_) CF_E__COUNT } cf_err;
#undef CF_ERR_ENUM_

/* The stable snake_case name of an error ("not_found"). Never NULL. */
const char *cf_err_name(cf_err e);
/* The HTTP status an error maps to. */
unsigned cf_err_status(cf_err e);
/* The default, secret-free message of an error. Never NULL. */
const char *cf_err_message(cf_err e);

/* A detail for the error being returned, such as the field path and the rule that failed
 * ("body.email: must be a string"). Thread-local, like errno: set it just before
 * returning the error; the HTTP layer reads it on the same thread. It is shown to
 * clients, so it must never hold a secret or a value the client sent. */
void cf_err_detail_set(const char *fmt, ...) CF_PRINTF(1, 2);
const char *cf_err_detail(void); /* "" when none */
void cf_err_detail_clear(void);
/* Sets the detail and returns e, for one-line error returns. */
cf_err cf_err_fail(cf_err e, const char *fmt, ...) CF_PRINTF(2, 3);
/* The same for a value that breaks a rule: the field's path ("data.email") and the rule
 * ("email", "required", "max") go with the error, and the API's error body names them. */
cf_err cf_err_at(cf_err e, const char *path, const char *rule, const char *fmt, ...)
        CF_PRINTF(4, 5);
const char *cf_err_path(void); /* "" when none */
const char *cf_err_rule(void);
/* A name the client sent (a field, a query parameter), fit for an error's message: a
 * bounded prefix (cap - 1 bytes), printable ASCII kept but '"', anything else '?'. */
void cf_err_shown(const char *in, char *out, size_t cap);
/* An error's detail, path and rule, kept: to carry them to another thread (the store's
 * writer sets them, the request that waits reads them) or over a cleanup that sets its
 * own. cf_err_save keeps them when e is an error and keeps nothing when it is CF_OK. */
struct cf_err_saved {
	char detail[CF_ERR_DETAIL_MAX];
	char path[CF_ERR_PATH_MAX];
	char rule[CF_ERR_RULE_MAX];
};
void cf_err_save(struct cf_err_saved *s, cf_err e);
void cf_err_restore(const struct cf_err_saved *s);

/* Return on failure (functions with nothing to undo). */
#define CF_TRY(expr)                                                                               \
	do {                                                                                       \
		cf_err cf_try_e_ = (expr);                                                         \
		if (cf_try_e_ != CF_OK)                                                            \
			return cf_try_e_;                                                          \
	} while (0)
/* Return e when cond is false. */
#define CF_ENSURE(cond, e)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			return (e);                                                                \
	} while (0)
/* Jump to a cleanup label on failure; the enclosing function declares `cf_err err`. */
#define CF_TRY_OUT(expr, label)                                                                    \
	do {                                                                                       \
		if ((err = (expr)) != CF_OK)                                                       \
			goto label;                                                                \
	} while (0)
#define CF_ENSURE_OUT(cond, e, label)                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			err = (e);                                                                 \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

/* Spans: borrowed pointer + length; input is never assumed NUL-terminated. ---------- */
struct cf_span {
	const uint8_t *ptr;
	size_t len;
};
struct cf_span cf_span_str(const char *s);
bool cf_span_eq(struct cf_span a, struct cf_span b);
/* Constant-time equality for MACs, tokens and codes: time depends on the lengths only. */
bool cf_span_eq_ct(struct cf_span a, struct cf_span b);
/* Copies s into dst as a C string, cut to cap - 1 bytes (cap >= 1). */
void cf_span_to_str(struct cf_span s, char *dst, size_t cap);

/* Byte helpers for on-disk and wire formats. ------------------------------------------ */
void cf_be32_put(uint8_t *p, uint32_t v);
uint32_t cf_be32_get(const uint8_t *p);
/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void cf_hex_encode(const uint8_t *p, size_t n, char *out);
/* n bytes from 2n lower-case hex digits; false on any other character. */
bool cf_hex_decode(const char *s, size_t n, uint8_t *out);

/* Bounded growable buffers ----------------------------------------------------------
 * A buffer never grows past `max`; appending past it fails with CF_E_TOO_LARGE and
 * leaves the buffer as it was. Not for secrets (use cf_secbuf). */
struct cf_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
};
void cf_buf_init(struct cf_buf *b, size_t max);
CF_MUST cf_err cf_buf_append(struct cf_buf *b, const void *p, size_t n);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void cf_buf_free(struct cf_buf *b);
/* Moves the bytes out (NUL-terminated, caller frees); the buffer is left empty. */
CF_MUST cf_err cf_buf_take_str(struct cf_buf *b, char **out);

/* Secure memory ---------------------------------------------------------------------
 * Secrets live in locked pages excluded from core dumps and are wiped when freed.
 * cf_secmem_init must succeed before the first cf_secbuf_new; it fails with CF_E_SECMEM
 * (and a detail) when the pages cannot be locked: coffre refuses to run then. */
struct cf_secbuf {
	uint8_t *ptr;
	size_t len;
};
CF_MUST cf_err cf_secmem_init(size_t arena_bytes);
/* Wipes and unmaps the arena; every secbuf must have been freed. */
void cf_secmem_shutdown(void);
/* A zeroed secure buffer of len bytes (1..16 MiB). Thread-safe. */
CF_MUST cf_err cf_secbuf_new(size_t len, struct cf_secbuf **out);
/* Wipes and frees; accepts NULL and sets *pp to NULL. */
void cf_secbuf_free(struct cf_secbuf **pp);
/* A per-thread secure scratch area of CF_SECMEM_SCRATCH bytes for short-lived keys
 * (wipe what you put there once done); NULL when secure memory is not initialised. */
#define CF_SECMEM_SCRATCH 128u
uint8_t *cf_secmem_scratch(void);
/* Wipes memory in a way the compiler cannot remove. */
void cf_wipe(void *p, size_t n);
/* Bytes of the arena in use, for metrics and tests. */
size_t cf_secmem_in_use(void);

/* Strict JSON over jansson ----------------------------------------------------------
 * Parsing rejects duplicate keys, NUL in strings, trailing garbage, documents larger
 * than max_bytes and nesting deeper than CF_JSON_DEPTH_MAX. Getters name the field in
 * the error detail. */
CF_MUST cf_err cf_json_parse(const uint8_t *p, size_t n, size_t max_bytes, json_t **out);
/* As cf_json_parse, and the top level must be an object. */
CF_MUST cf_err cf_json_parse_object(const uint8_t *p, size_t n, size_t max_bytes, json_t **out);
/* For a document cf_json_parse_object accepted (p, n): the text of its top-level member
 * named key, exactly as sent, in *out (a view into p). false when there is no such
 * member, or when a top-level key is written with an escape (the caller then encodes the
 * parsed value itself). fuzz_json checks that the text parses to the member's value. */
CF_MUST bool cf_json_member_text(const uint8_t *p, size_t n, const char *key, struct cf_span *out);
/* Fails with CF_E_UNKNOWN_FIELD naming the first key of obj not in allowed (NULL-ended). */
CF_MUST cf_err cf_json_only_keys(const json_t *obj, const char *const *allowed);
/* Typed getters. When the key is absent: CF_E_MISSING_FIELD if required, else CF_OK with
 * the output untouched. Strings are UTF-8 (jansson checks), at most max_len bytes. */
CF_MUST cf_err cf_json_get_str(const json_t *obj, const char *key, bool required, size_t max_len,
                               const char **out, size_t *out_len);
CF_MUST cf_err cf_json_get_int(const json_t *obj, const char *key, bool required, int64_t min,
                               int64_t max, int64_t *out);
CF_MUST cf_err cf_json_get_bool(const json_t *obj, const char *key, bool required, bool *out);
CF_MUST cf_err cf_json_get_object(const json_t *obj, const char *key, bool required, json_t **out);
/* Compact UTF-8 serialisation (caller frees with free()). */
/* From now on jansson wipes every block it frees. Call first thing in main, before any
 * JSON value exists (a block must be freed by the allocator that made it). */
void cf_json_wipe_on_free(void);
CF_MUST cf_err cf_json_dump(const json_t *v, char **out, size_t *out_len);

/* Configuration ---------------------------------------------------------------------
 * Three layers, each overriding the one before: the INI file, COFFRE_<SECTION>_<KEY>
 * environment variables, then flags. Unknown sections or keys are errors naming the file
 * and line (or the variable). */
enum cf_log_level { CF_LOG_DEBUG, CF_LOG_INFO, CF_LOG_WARN, CF_LOG_ERROR };

struct cf_config {
	/* [server] */
	char listen[256];
	char data_dir[CF_PATH_MAX];
	char admin_socket[CF_PATH_MAX]; /* "" = DATA/admin.sock */
	unsigned threads;               /* I/O threads; 0 = one per core */
	unsigned workers;               /* work-pool threads; 0 = one per core */
	unsigned max_connections;
	unsigned per_ip_connections;
	unsigned connection_timeout; /* seconds */
	unsigned conn_memory;        /* bytes per connection (headers) */
	unsigned max_body;           /* bytes */
	unsigned rate_per_s;
	unsigned rate_burst;
	unsigned shutdown_grace; /* seconds */
	unsigned disk_reserve_mb;
	/* [store] */
	char store_url[CF_PATH_MAX]; /* "" = sqlite:DATA/coffre.db */
	char store_migrate_url[CF_PATH_MAX];
	unsigned store_pool; /* PostgreSQL write connections; 0 = the engine's default */
	/* [keys] */
	char keys_store_url[CF_PATH_MAX]; /* "" = sqlite:DATA/keystore.db */
	char keys_migrate_url[CF_PATH_MAX];
	char environment[16];   /* "" = production (development with --dev) */
	unsigned rotation_days; /* default KEK rotation period per tenant */
	unsigned rewrap_batch;  /* envelopes per rewrap step */
	unsigned job_interval;  /* seconds between background key jobs */
	char pkcs11_module[CF_PATH_MAX];
	char pkcs11_token[64];
	/* [audit] */
	unsigned checkpoint_interval;  /* seconds between checkpoints while the log grows */
	unsigned retention_days;       /* audit entries kept at least this long (AL1) */
	unsigned refusal_summary;      /* seconds between summaries of unauthenticated refusals */
	unsigned purge_days;           /* deleted records are purged this long after deletion */
	char sink_file[CF_PATH_MAX];   /* AL3 copies: "" = none */
	char sink_syslog[CF_PATH_MAX]; /* the syslog socket ("" = none) */
	char sink_store[CF_PATH_MAX];  /* a second database's URL ("" = none) */
	/* [auth] */
	unsigned session_idle;    /* seconds a session may sit unused (TR3) */
	unsigned session_max;     /* seconds a session lives at most (TR3) */
	unsigned token_ttl;       /* seconds an access token lives (IA9) */
	unsigned reauth_window;   /* seconds after a login that sensitive operations stay open */
	unsigned argon2_memory;   /* KiB per password hash (IA3) */
	unsigned argon2_passes;   /* Argon2id passes */
	unsigned hash_threads;    /* passwords hashed at once, at most (0: one per core) */
	char outbox[CF_PATH_MAX]; /* the file notifier's folder ("" = DATA/outbox) */
	char public_url[256];     /* the address users reach ("" = https://LISTEN) */
	char smtp_url[256];       /* the notifier's SMTP server ("" = the outbox folder) */
	char smtp_from[256];
	char smtp_user[128];
	char smtp_password_file[CF_PATH_MAX];
	/* [tls] */
	char tls_cert[CF_PATH_MAX];
	char tls_key[CF_PATH_MAX];
	/* [log] */
	enum cf_log_level log_level;
	bool dev; /* set by --dev only */
};

/* Fills cfg with the defaults. */
void cf_config_defaults(struct cf_config *cfg);
/* Reads an INI file over cfg. Errors: CF_E_CONFIG (detail "FILE:LINE: ..."), CF_E_IO. */
CF_MUST cf_err cf_config_load_file(struct cf_config *cfg, const char *path);
/* The same from memory; `name` stands for the file in messages. */
CF_MUST cf_err cf_config_load_string(struct cf_config *cfg, const char *text, const char *name);
/* Applies COFFRE_<SECTION>_<KEY> variables from envp (NULL-ended "K=V" strings). */
CF_MUST cf_err cf_config_load_env(struct cf_config *cfg, char *const *envp);
/* Sets one key by "section.key" name (flags use this). */
CF_MUST cf_err cf_config_set(struct cf_config *cfg, const char *section, const char *key,
                             const char *value);
/* Cross-field checks once every layer is applied. */
CF_MUST cf_err cf_config_validate(const struct cf_config *cfg);
/* Splits "HOST:PORT" or "[V6]:PORT"; CF_E_CONFIG when malformed. */
CF_MUST cf_err cf_config_split_listen(const char *listen, char *host, size_t host_cap,
                                      unsigned *port);

/* Logging: one JSON object per line on stderr, never personal data or secrets. ------- */
void cf_log_set_level(enum cf_log_level lvl);
bool cf_log_enabled(enum cf_log_level lvl);
/* request_id may be NULL. */
void cf_log(enum cf_log_level lvl, const char *request_id, const char *event, const char *fmt, ...)
        CF_PRINTF(4, 5);
/* Logs an object of fields (adds ts, level, event); takes ownership of fields. */
void cf_log_fields(enum cf_log_level lvl, const char *event, json_t *fields);

/* Clocks ---------------------------------------------------------------------------- */
/* Monotonic nanoseconds, for durations and rate limits. */
uint64_t cf_now_mono_ns(void);
/* Wall clock in microseconds since the epoch (UTC). */
int64_t cf_now_us(void);
/* RFC 3339 UTC with microseconds ("2026-11-23T16:00:00.000000Z"); buf >= 28 bytes. */
void cf_time_format_us(int64_t us, char *buf, size_t cap);
/* AL6: whether the kernel says the clock is synchronised (NTP), with its error bounds. */
struct cf_clock_state {
	bool synchronized;
	long max_error_us;
	long est_error_us;
};
void cf_clock_state(struct cf_clock_state *st);
/* cf_clock_state's synchronized, as the kernel said it within the last second: what every
 * audit entry's clock flag reads (one system call a second, not one an entry). Any
 * thread. */
bool cf_clock_synchronized(void);

/* Work pool: hands work to other threads so I/O threads never block (DESIGN §2). ----- */
struct cf_pool;
typedef void (*cf_pool_fn)(void *arg);
/* threads in 1..CF_POOL_THREADS_MAX, queue_max in 1..CF_POOL_QUEUE_MAX. */
CF_MUST cf_err cf_pool_new(const char *name, unsigned threads, unsigned queue_max,
                           struct cf_pool **out);
/* Queues fn(arg). CF_E_BUSY when the queue is full, CF_E_SHUTTING_DOWN after drain. */
CF_MUST cf_err cf_pool_submit(struct cf_pool *pool, cf_pool_fn fn, void *arg);
/* Runs every queued job, joins the threads and frees the pool; accepts NULL. */
void cf_pool_free(struct cf_pool **pp);

/* Files ------------------------------------------------------------------------------ */
/* Reads a whole file of at most max bytes into out (initialised here). CF_E_NOT_FOUND
 * when it does not exist, CF_E_TOO_LARGE past max, CF_E_IO otherwise. */
CF_MUST cf_err cf_file_read(const char *path, size_t max, struct cf_buf *out);
/* Writes a file durably and atomically: temporary file, fsync, rename, fsync of the
 * folder. Readers see the old content or the new, never a mix. */
CF_MUST cf_err cf_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* Checks that path is a folder owned by this user with no group or other access; with
 * create, makes it (0700) when missing. CF_E_PERMISSION names what is wrong. */
CF_MUST cf_err cf_dir_private(const char *path, bool create);
/* Sends all n bytes on a socket (no SIGPIPE); false when the peer went away first. */
bool cf_send_all(int fd, const void *p, size_t n);

/* Process hardening (ER3): not dumpable, no core files, more file descriptors. ------- */
CF_MUST cf_err cf_harden_process(void);
/* A random hex id of 2*nbytes characters into buf (cap >= 2*nbytes+1). */
CF_MUST cf_err cf_random_hex(char *buf, size_t cap, size_t nbytes);

#endif
