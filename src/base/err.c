/* coffre — error codes, details, spans and byte helpers. */
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

/* The length of the well-formed UTF-8 sequence at p (RFC 3629, table 3-7 of Unicode:
 * no overlong forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n = 0;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf) /* the NUL ends it too */
			return 0;
	return n;
}

/* Every byte of s that is not part of well-formed UTF-8 becomes '?'. A detail or path
 * cut to its buffer may end inside a character, and one may quote what a client sent:
 * either would make the error's JSON unencodable, and the reply a 503. */
static void utf8_fix(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p;) {
		size_t n = utf8_seq(p);
		if (n == 0) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}

/* The detail, formatted apart first: an argument may be the detail itself (a caller
 * prefixing cf_err_detail() with where it happened), and vsnprintf must not write over
 * what it reads. */
CF_PRINTF(1, 0) static void detail_format(const char *fmt, va_list ap)
{
	char t[CF_ERR_DETAIL_MAX];
	(void)vsnprintf(t, sizeof t, fmt, ap);
	utf8_fix(t);
	memcpy(err_detail, t, strlen(t) + 1);
}

void cf_err_detail_set(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	detail_format(fmt, ap);
	va_end(ap);
}

const char *cf_err_detail(void)
{
	return err_detail;
}

static _Thread_local char err_path[CF_ERR_PATH_MAX], err_rule[CF_ERR_RULE_MAX];

void cf_err_detail_clear(void)
{
	err_detail[0] = '\0';
	err_path[0] = '\0';
	err_rule[0] = '\0';
}

cf_err cf_err_at(cf_err e, const char *path, const char *rule, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	detail_format(fmt, ap);
	va_end(ap);
	/* path and rule may be cf_err_path() and cf_err_rule() themselves */
	char p[sizeof err_path], r[sizeof err_rule];
	(void)snprintf(p, sizeof p, "%s", path);
	(void)snprintf(r, sizeof r, "%s", rule);
	utf8_fix(p);
	utf8_fix(r);
	memcpy(err_path, p, strlen(p) + 1);
	memcpy(err_rule, r, strlen(r) + 1);
	return e;
}

const char *cf_err_path(void)
{
	return err_path;
}

const char *cf_err_rule(void)
{
	return err_rule;
}

void cf_err_shown(const char *in, char *out, size_t cap)
{
	if (cap == 0)
		return;
	size_t i = 0;
	for (; i < cap - 1 && in[i]; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f && in[i] != '"' ? in[i] : '?';
	out[i] = '\0';
}

void cf_err_save(struct cf_err_saved *s, cf_err e)
{
	if (e == CF_OK) {
		s->detail[0] = s->path[0] = s->rule[0] = '\0';
		return;
	}
	memcpy(s->detail, err_detail, sizeof s->detail);
	memcpy(s->path, err_path, sizeof s->path);
	memcpy(s->rule, err_rule, sizeof s->rule);
}

void cf_err_restore(const struct cf_err_saved *s)
{
	memcpy(err_detail, s->detail, sizeof err_detail);
	memcpy(err_path, s->path, sizeof err_path);
	memcpy(err_rule, s->rule, sizeof err_rule);
}

cf_err cf_err_fail(cf_err e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	detail_format(fmt, ap);
	va_end(ap);
	err_path[0] = '\0';
	err_rule[0] = '\0';
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

void cf_be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint32_t cf_be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void cf_hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static unsigned hex_digit(char c)
{
	return c >= '0' && c <= '9'   ? (unsigned)(c - '0')
	       : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
	                              : 16;
}

bool cf_hex_decode(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned hi = hex_digit(s[2 * i]), lo = hi < 16 ? hex_digit(s[2 * i + 1]) : 16;
		if (hi > 15 || lo > 15)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

void cf_span_to_str(struct cf_span s, char *dst, size_t cap)
{
	size_t n = s.len < cap - 1 ? s.len : cap - 1;
	if (n)
		memcpy(dst, s.ptr, n);
	dst[n] = '\0';
}
