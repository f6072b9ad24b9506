/* coffre — error codes, details and spans. */
#include <stdio.h>
#include <string.h>

#include "base/base.h"

struct cf_err_info {
	const char *name;
	unsigned status;
	const char *message;
};

#define CF_ERR_ROW_(id, name, status, msg) [id] = {name, status, msg},
static const struct cf_err_info err_table[CF_E__COUNT] = {CF_ERRORS(CF_ERR_ROW_)};
#undef CF_ERR_ROW_

static const struct cf_err_info *err_info(cf_err e)
{
	if ((unsigned)e >= (unsigned)CF_E__COUNT)
		return &err_table[CF_E_INTERNAL];
	return &err_table[e];
}

const char *cf_err_name(cf_err e)
{
	return err_info(e)->name;
}
unsigned cf_err_status(cf_err e)
{
	return err_info(e)->status;
}
const char *cf_err_message(cf_err e)
{
	return err_info(e)->message;
}

static _Thread_local char err_detail[CF_ERR_DETAIL_MAX];

void cf_err_detail_set(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(err_detail, sizeof err_detail, fmt, ap);
	va_end(ap);
}

const char *cf_err_detail(void)
{
	return err_detail;
}

void cf_err_detail_clear(void)
{
	err_detail[0] = '\0';
}

cf_err cf_err_fail(cf_err e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(err_detail, sizeof err_detail, fmt, ap);
	va_end(ap);
	return e;
}

struct cf_span cf_span_str(const char *s)
{
	return (struct cf_span){.ptr = (const uint8_t *)s, .len = s ? strlen(s) : 0};
}

bool cf_span_eq(struct cf_span a, struct cf_span b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool cf_span_eq_ct(struct cf_span a, struct cf_span b)
{
	if (a.len != b.len)
		return false;
	volatile uint8_t acc = 0;
	for (size_t i = 0; i < a.len; i++)
		acc = (uint8_t)(acc | (a.ptr[i] ^ b.ptr[i]));
	return acc == 0;
}
