/* coffre — audit sinks (AL3): committed entries and checkpoints copied, in index order and
 * within a second, to stores apart from the data store:
 *   file    JSON lines appended and fsynced; resumes after the last complete line in it;
 *   syslog  RFC 5424 messages on the local syslog socket (datagrams); resumes from a
 *           cursor kept in the data store (at least once: the index de-duplicates);
 *   store   a second database (SQLite file or PostgreSQL) with the entries' exact bytes,
 *           so the copy verifies on its own; resumes after its highest index.
 * Every line or row carries the entry's tree index (or the checkpoint's size). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit/internal.h"

enum sink_kind { SINK_FILE, SINK_SYSLOG, SINK_STORE };

struct cf_audit_sink {
	enum sink_kind kind;
	char name[16];
	char target[CF_PATH_MAX];
	struct cf_store *src;  /* the data store */
	struct cf_store *copy; /* SINK_STORE */
	int fd;
	int64_t next_index; /* the next entry index to deliver; -1 until known */
	int64_t last_cp;    /* the last checkpoint size delivered */
	char host[64];
};

static const struct cf_migration copy_schema[] = {
        {1, "audit copy",
         "CREATE TABLE audit_copy (leaf_index INTEGER PRIMARY KEY, body BLOB NOT NULL) STRICT;"
         "CREATE TABLE audit_copy_checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL)"
         " STRICT",
         "CREATE TABLE audit_copy (leaf_index BIGINT PRIMARY KEY, body BYTEA NOT NULL);"
         "CREATE TABLE audit_copy_checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL);"
         "GRANT SELECT, INSERT ON audit_copy, audit_copy_checkpoints TO coffre_runtime"},
};

/* --- the lines ------------------------------------------------------------------------- */
static json_t *entry_json(int64_t index, struct cf_span body)
{
	struct cf_audit_entry e;
	if (cf_audit_decode(body, &e) != CF_OK)
		return NULL;
	static const char *const outcomes[] = {"ok", "denied", "failed"};
	char when[40], *b64 = malloc(4 * ((body.len + 2) / 3) + 1);
	if (!b64)
		return NULL;
	cf_time_format_us(e.time_us, when, sizeof when);
	cf_base64_encode(body.ptr, body.len, b64);
	json_t *o = json_pack("{s:s, s:I, s:s, s:s%, s:I, s:s%, s:s%, s:s%, s:s, s:s%, s:s%, s:s}",
	                      "type", "entry", "index", (json_int_t)index, "time", when, "tenant",
	                      e.tenant.ptr, e.tenant.len, "seq", (json_int_t)e.seq, "actor",
	                      e.actor.ptr, e.actor.len, "action", e.action.ptr, e.action.len,
	                      "resource", e.resource.ptr, e.resource.len, "outcome",
	                      outcomes[e.outcome], "error", e.error.ptr, e.error.len, "privilege",
	                      e.privilege.ptr, e.privilege.len, "body", b64);
	free(b64);
	if (o && e.detail.len)
		json_object_set_new(o, "detail",
		                    json_stringn((const char *)e.detail.ptr, e.detail.len));
	return o;
}

/* --- file -------------------------------------------------------------------------------- */
/* The last complete line of the file says where it stopped. */
static cf_err file_resume(struct cf_audit_sink *s)
{
	struct stat sb;
	CF_ENSURE(fstat(s->fd, &sb) == 0,
	          cf_err_fail(CF_E_IO, "%s: %s", s->target, strerror(errno)));
	s->next_index = 0;
	s->last_cp = 0;
	if (sb.st_size == 0)
		return CF_OK;
	size_t want = sb.st_size > 65536 ? 65536 : (size_t)sb.st_size;
	char *buf = malloc(want + 1);
	CF_ENSURE(buf, CF_E_NOMEM);
	ssize_t got = pread(s->fd, buf, want, sb.st_size - (off_t)want);
	cf_err err = CF_OK;
	if (got != (ssize_t)want) {
		err = cf_err_fail(CF_E_IO, "%s: %s", s->target, strerror(errno));
		goto out;
	}
	buf[want] = '\0';
	/* A line cut by a crash (no newline at the end) is dropped: truncate it away. */
	size_t end = want;
	while (end > 0 && buf[end - 1] != '\n')
		end--;
	if (end < want && ftruncate(s->fd, sb.st_size - (off_t)(want - end)) != 0) {
		err = cf_err_fail(CF_E_IO, "%s: %s", s->target, strerror(errno));
		goto out;
	}
	/* Scan the complete lines in the tail: the highest index and checkpoint size. */
	buf[end] = '\0';
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		json_t *o = json_loads(line, 0, NULL);
		if (o) {
			const char *type = json_string_value(json_object_get(o, "type"));
			if (type && strcmp(type, "entry") == 0)
				s->next_index = json_integer_value(json_object_get(o, "index")) + 1;
			else if (type && strcmp(type, "checkpoint") == 0)
				s->last_cp = json_integer_value(json_object_get(o, "size"));
			json_decref(o);
		}
		line = nl ? nl + 1 : NULL;
	}
out:
	free(buf);
	return err;
}

static cf_err write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return cf_err_fail(CF_E_IO, "audit sink: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return CF_OK;
}

/* --- syslog (RFC 5424) ----------------------------------------------------------------- */
static cf_err syslog_send(struct cf_audit_sink *s, const char *json)
{
	char when[40], msg[4096];
	cf_time_format_us(cf_now_us(), when, sizeof when);
	/* PRI 86 = facility authpriv (10) * 8 + severity info (6); MSGID audit. */
	int n = snprintf(msg, sizeof msg, "<86>1 %s %s coffred %d audit - %s", when, s->host,
	                 (int)getpid(), json);
	CF_ENSURE(n > 0 && (size_t)n < sizeof msg, cf_err_fail(CF_E_TOO_LARGE, "syslog line"));
	if (s->fd < 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		CF_ENSURE(strlen(s->target) < sizeof sa.sun_path, CF_E_CONFIG);
		memcpy(sa.sun_path, s->target, strlen(s->target) + 1);
		s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
			cf_err e = cf_err_fail(CF_E_IO, "syslog socket %s: %s", s->target,
			                       strerror(errno));
			if (s->fd >= 0)
				close(s->fd);
			s->fd = -1;
			return e;
		}
	}
	if (send(s->fd, msg, (size_t)n, MSG_NOSIGNAL) != n) {
		cf_err e = cf_err_fail(CF_E_IO, "syslog: %s", strerror(errno));
		close(s->fd);
		s->fd = -1; /* reconnect next time (syslogd restarted) */
		return e;
	}
	return CF_OK;
}

static cf_err cursor_row(const struct cf_row *row, void *ctx)
{
	int64_t *c = ctx;
	c[0] = cf_row_int(row, 0);
	c[1] = cf_row_int(row, 1);
	return CF_OK;
}

static cf_err cursor_read(struct cf_tx *tx, void *ctx)
{
	struct cf_audit_sink *s = ctx;
	int64_t c[2] = {0, 0};
	struct cf_val v[] = {CF_V_TEXT(s->name)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT next_index, last_checkpoint FROM audit_sinks WHERE name = $1", v,
	                   1, cursor_row, c));
	s->next_index = c[0];
	s->last_cp = c[1];
	return CF_OK;
}

static cf_err cursor_write(struct cf_tx *tx, void *ctx)
{
	struct cf_audit_sink *s = ctx;
	struct cf_val v[] = {CF_V_TEXT(s->name), CF_V_INT(s->next_index), CF_V_INT(s->last_cp)};
	return cf_tx_exec(tx,
	                  "INSERT INTO audit_sinks (name, next_index, last_checkpoint)"
	                  " VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET"
	                  " next_index = excluded.next_index,"
	                  " last_checkpoint = excluded.last_checkpoint",
	                  v, 3, NULL);
}

/* --- a second database ------------------------------------------------------------------ */
static cf_err copy_max_row(const struct cf_row *row, void *ctx)
{
	int64_t *c = ctx;
	c[0] = cf_row_is_null(row, 0) ? 0 : cf_row_int(row, 0) + 1;
	c[1] = cf_row_is_null(row, 1) ? 0 : cf_row_int(row, 1);
	return CF_OK;
}

static cf_err copy_resume(struct cf_tx *tx, void *ctx)
{
	struct cf_audit_sink *s = ctx;
	int64_t c[2] = {0, 0};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT (SELECT max(leaf_index) FROM audit_copy),"
	                   " (SELECT max(size) FROM audit_copy_checkpoints)",
	                   NULL, 0, copy_max_row, c));
	s->next_index = c[0];
	s->last_cp = c[1];
	return CF_OK;
}

/* --- open, close ----------------------------------------------------------------------------- */
cf_err cf_audit_sink_open(struct cf_store *src, const char *spec, struct cf_audit_sink **out)
{
	struct cf_audit_sink *s = calloc(1, sizeof *s);
	CF_ENSURE(s, CF_E_NOMEM);
	s->fd = -1;
	s->src = src;
	s->next_index = -1;
	(void)gethostname(s->host, sizeof s->host - 1);
	if (!s->host[0])
		(void)snprintf(s->host, sizeof s->host, "-");
	cf_err err = CF_OK;
	if (strncmp(spec, "file:", 5) == 0) {
		s->kind = SINK_FILE;
		(void)snprintf(s->name, sizeof s->name, "file");
		(void)snprintf(s->target, sizeof s->target, "%s", spec + 5);
		s->fd = open(s->target, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
		CF_ENSURE_OUT(
		        s->fd >= 0,
		        cf_err_fail(CF_E_CONFIG, "audit sink %s: %s", s->target, strerror(errno)),
		        fail);
		CF_TRY_OUT(file_resume(s), fail);
	} else if (strncmp(spec, "syslog:", 7) == 0) {
		s->kind = SINK_SYSLOG;
		(void)snprintf(s->name, sizeof s->name, "syslog");
		(void)snprintf(s->target, sizeof s->target, "%s", spec[7] ? spec + 7 : "/dev/log");
		CF_TRY_OUT(cf_store_read(src, NULL, cursor_read, s), fail);
	} else if (strncmp(spec, "sqlite:", 7) == 0 || strncmp(spec, "postgres", 8) == 0) {
		s->kind = SINK_STORE;
		(void)snprintf(s->name, sizeof s->name, "store");
		(void)snprintf(s->target, sizeof s->target, "%s", spec);
		struct cf_store_opts o = {.url = spec,
		                          .migrations = copy_schema,
		                          .nmigrations = 1,
		                          .readers = 1,
		                          .pool = 1,
		                          .migrate = true};
		CF_TRY_OUT(cf_store_open(&o, &s->copy), fail);
		CF_TRY_OUT(cf_store_read(s->copy, NULL, copy_resume, s), fail);
	} else {
		err = cf_err_fail(
		        CF_E_CONFIG,
		        "audit sink '%.64s': use file:PATH, syslog:[SOCKET] or a store URL", spec);
		goto fail;
	}
	*out = s;
	return CF_OK;
fail:
	cf_audit_sink_close(&s);
	return err;
}

void cf_audit_sink_close(struct cf_audit_sink **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_audit_sink *s = *pp;
	*pp = NULL;
	if (s->fd >= 0)
		close(s->fd);
	cf_store_close(&s->copy);
	free(s);
}

/* --- delivery ----------------------------------------------------------------------------- */
#define BATCH CF_AUDIT_SINK_BATCH
struct batch {
	int64_t idx[BATCH];
	uint8_t *body[BATCH];
	size_t len[BATCH];
	size_t n;
	int64_t cp_size[16];
	char *cp_note[16];
	size_t ncp;
};

static cf_err batch_entry(const struct cf_row *row, void *ctx)
{
	struct batch *b = ctx;
	if (b->n == BATCH)
		return CF_OK;
	struct cf_span body = cf_row_blob(row, 1);
	b->idx[b->n] = cf_row_int(row, 0);
	b->body[b->n] = malloc(body.len ? body.len : 1);
	CF_ENSURE(b->body[b->n], CF_E_NOMEM);
	memcpy(b->body[b->n], body.ptr, body.len);
	b->len[b->n++] = body.len;
	return CF_OK;
}

static cf_err batch_cp(const struct cf_row *row, void *ctx)
{
	struct batch *b = ctx;
	if (b->ncp == 16)
		return CF_OK;
	struct cf_span note = cf_row_blob(row, 1);
	b->cp_size[b->ncp] = cf_row_int(row, 0);
	b->cp_note[b->ncp] = strndup((const char *)note.ptr, note.len);
	CF_ENSURE(b->cp_note[b->ncp], CF_E_NOMEM);
	b->ncp++;
	return CF_OK;
}

struct fetch {
	struct cf_audit_sink *s;
	struct batch *b;
};

static cf_err fetch_fn(struct cf_tx *tx, void *ctx)
{
	struct fetch *f = ctx;
	struct cf_val v[] = {CF_V_INT(f->s->next_index), CF_V_INT(BATCH)};
	CF_TRY(cf_tx_query(tx,
	                   "SELECT leaf_index, body FROM audit_entries WHERE leaf_index >= $1"
	                   " ORDER BY leaf_index LIMIT $2",
	                   v, 2, batch_entry, f->b));
	/* checkpoints whose entries are all delivered with this batch */
	int64_t upto = f->b->n ? f->b->idx[f->b->n - 1] + 1 : f->s->next_index;
	struct cf_val c[] = {CF_V_INT(f->s->last_cp), CF_V_INT(upto)};
	return cf_tx_query(tx,
	                   "SELECT size, note FROM audit_checkpoints WHERE size > $1 AND size <= $2"
	                   " ORDER BY size LIMIT 16",
	                   c, 2, batch_cp, f->b);
}

static cf_err copy_fn(struct cf_tx *tx, void *ctx)
{
	struct batch *b = ctx;
	for (size_t i = 0; i < b->n; i++) {
		struct cf_val v[] = {CF_V_INT(b->idx[i]), CF_V_BLOB(b->body[i], b->len[i])};
		CF_TRY(cf_tx_exec(tx,
		                  "INSERT INTO audit_copy (leaf_index, body) VALUES ($1, $2)"
		                  " ON CONFLICT (leaf_index) DO NOTHING",
		                  v, 2, NULL));
	}
	for (size_t i = 0; i < b->ncp; i++) {
		struct cf_val v[] = {CF_V_INT(b->cp_size[i]), CF_V_TEXT(b->cp_note[i])};
		CF_TRY(cf_tx_exec(tx,
		                  "INSERT INTO audit_copy_checkpoints (size, note) VALUES ($1, $2)"
		                  " ON CONFLICT (size) DO NOTHING",
		                  v, 2, NULL));
	}
	return CF_OK;
}

/* One line per entry and checkpoint, in order (a checkpoint after its last entry). */
static cf_err lines(struct cf_audit_sink *s, struct batch *b, struct cf_buf *out)
{
	size_t c = 0;
	for (size_t i = 0; i <= b->n; i++) {
		int64_t done = i < b->n ? b->idx[i] : INT64_MAX;
		while (c < b->ncp && b->cp_size[c] <= done) {
			json_t *o =
			        json_pack("{s:s, s:I, s:s}", "type", "checkpoint", "size",
			                  (json_int_t)b->cp_size[c], "checkpoint", b->cp_note[c]);
			char *t = NULL;
			cf_err e = o ? cf_json_dump(o, &t, NULL) : CF_E_NOMEM;
			json_decref(o);
			CF_TRY(e);
			e = s->kind == SINK_SYSLOG ? syslog_send(s, t)
			                           : cf_buf_append(out, t, strlen(t));
			if (e == CF_OK && s->kind == SINK_FILE)
				e = cf_buf_append(out, "\n", 1);
			free(t);
			CF_TRY(e);
			c++;
		}
		if (i == b->n)
			break;
		json_t *o = entry_json(b->idx[i], (struct cf_span){b->body[i], b->len[i]});
		CF_ENSURE(o, cf_err_fail(CF_E_INTEGRITY, "audit sink: entry %" PRId64 " is damaged",
		                         b->idx[i]));
		char *t = NULL;
		cf_err e = cf_json_dump(o, &t, NULL);
		json_decref(o);
		CF_TRY(e);
		e = s->kind == SINK_SYSLOG ? syslog_send(s, t) : cf_buf_append(out, t, strlen(t));
		if (e == CF_OK && s->kind == SINK_FILE)
			e = cf_buf_append(out, "\n", 1);
		free(t);
		CF_TRY(e);
	}
	return CF_OK;
}

cf_err cf_audit_sink_step(struct cf_audit_sink *s, unsigned *delivered)
{
	*delivered = 0;
	struct batch *b = calloc(1, sizeof *b);
	CF_ENSURE(b, CF_E_NOMEM);
	struct fetch f = {s, b};
	cf_err err = cf_store_read(s->src, NULL, fetch_fn, &f);
	if (err == CF_OK && (b->n || b->ncp)) {
		if (s->kind == SINK_STORE) {
			err = cf_store_write_wait(s->copy, NULL, copy_fn, b);
		} else {
			struct cf_buf out;
			cf_buf_init(&out, 64u << 20);
			err = lines(s, b, &out);
			if (err == CF_OK && s->kind == SINK_FILE) {
				err = write_all(s->fd, (const char *)out.data, out.len);
				if (err == CF_OK && fdatasync(s->fd) != 0)
					err = cf_err_fail(CF_E_IO, "%s: %s", s->target,
					                  strerror(errno));
			}
			cf_buf_free(&out);
		}
		if (err == CF_OK) {
			if (b->n)
				s->next_index = b->idx[b->n - 1] + 1;
			if (b->ncp)
				s->last_cp = b->cp_size[b->ncp - 1];
			*delivered = (unsigned)(b->n + b->ncp);
			if (s->kind == SINK_SYSLOG)
				err = cf_store_write_wait(s->src, NULL, cursor_write, s);
		}
	}
	for (size_t i = 0; i < b->n; i++)
		free(b->body[i]);
	for (size_t i = 0; i < b->ncp; i++)
		free(b->cp_note[i]);
	free(b);
	return err;
}
