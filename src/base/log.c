/* coffre — JSON-lines logging on stderr.
 * Each line is one JSON object written with a single write(2), so lines from several
 * threads never interleave. Callers log ids and counts, never personal data or secrets. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"

static _Atomic int log_level = CF_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cf_log_set_level(enum cf_log_level lvl)
{
	atomic_store(&log_level, (int)lvl);
}

bool cf_log_enabled(enum cf_log_level lvl)
{
	return (int)lvl >= atomic_load(&log_level);
}

static void log_write(json_t *obj)
{
	char out[CF_LOG_LINE_MAX + 1];
	size_t n = json_dumpb(obj, out, CF_LOG_LINE_MAX - 1, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (n == 0)
		return;
	if (n > CF_LOG_LINE_MAX - 1)
		n = CF_LOG_LINE_MAX - 1; /* cut, never split: the line stays one record */
	out[n++] = '\n';
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(STDERR_FILENO, out + off, n - off);
		if (w <= 0)
			return; /* nowhere to report a failure to log */
		off += (size_t)w;
	}
}

static json_t *log_head(enum cf_log_level lvl, const char *event)
{
	char ts[40];
	cf_time_format_us(cf_now_us(), ts, sizeof ts);
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level", json_string(level_names[lvl]));
	json_object_set_new(obj, "event", json_string(event));
	return obj;
}

void cf_log(enum cf_log_level lvl, const char *request_id, const char *event, const char *fmt, ...)
{
	if (!cf_log_enabled(lvl))
		return;
	char msg[CF_LOG_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_t *obj = log_head(lvl, event);
	if (!obj)
		return;
	/* json_string refuses invalid UTF-8; json_stringn_nocheck would let it through. */
	json_t *m = json_string(msg);
	json_object_set_new(obj, "msg", m ? m : json_string("(message not UTF-8)"));
	if (request_id)
		json_object_set_new(obj, "request_id", json_string(request_id));
	log_write(obj);
	json_decref(obj);
}

void cf_log_fields(enum cf_log_level lvl, const char *event, json_t *fields)
{
	if (!cf_log_enabled(lvl) || !fields) {
		json_decref(fields);
		return;
	}
	json_t *obj = log_head(lvl, event);
	if (obj) {
		json_object_update(obj, fields);
		log_write(obj);
		json_decref(obj);
	}
	json_decref(fields);
}
