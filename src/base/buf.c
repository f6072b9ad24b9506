/* coffre — bounded growable buffers: every buffer has a hard maximum (STYLE.md). */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

void cf_buf_init(struct cf_buf *b, size_t max)
{
	*b = (struct cf_buf){.max = max};
}

static cf_err buf_reserve(struct cf_buf *b, size_t need)
{
	if (need <= b->cap)
		return CF_OK;
	if (need > b->max)
		return CF_E_TOO_LARGE;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need) {
		size_t next;
		if (__builtin_mul_overflow(cap, (size_t)2, &next) || next > b->max) {
			cap = b->max;
			break;
		}
		cap = next;
	}
	if (cap < need)
		cap = need;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return CF_E_NOMEM;
	b->data = p;
	b->cap = cap;
	return CF_OK;
}

cf_err cf_buf_append(struct cf_buf *b, const void *p, size_t n)
{
	size_t need;
	/* One spare byte so cf_buf_take_str can always terminate the string. */
	if (__builtin_add_overflow(b->len, n, &need) || need > b->max)
		return CF_E_TOO_LARGE;
	CF_TRY(buf_reserve(b, need + 1 > b->max ? need : need + 1));
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len = need;
	return CF_OK;
}

void cf_buf_free(struct cf_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

cf_err cf_buf_take_str(struct cf_buf *b, char **out)
{
	if (b->len == SIZE_MAX)
		return CF_E_TOO_LARGE;
	if (b->cap < b->len + 1) {
		uint8_t *p = realloc(b->data, b->len + 1);
		if (!p)
			return CF_E_NOMEM;
		b->data = p;
		b->cap = b->len + 1;
	}
	b->data[b->len] = '\0';
	*out = (char *)b->data;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return CF_OK;
}
