/* coffre — the canonical encoding of one audit entry (AL1), formats 1 and 2 (the same and
 * a detail; an entry has a detail exactly when it is format 2). docs/formats.md
 * gives every byte; the encoding is what the Merkle leaf hashes, so it has exactly one
 * form for a given entry and the parser refuses anything else. */
#include <string.h>

#include "audit/audit.h"

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

cf_err cf_audit_encode(const struct cf_audit_entry *e, uint8_t *out, size_t cap, size_t *len)
{
	const struct cf_span *texts[] = {&e->tenant, &e->actor,      &e->action,    &e->resource,
	                                 &e->error,  &e->request_id, &e->privilege, &e->detail};
	bool two = e->detail.len > 0;
	size_t ntexts = two ? 8 : 7;
	size_t need = 1 + 8 + 8 + 1 + 1 + 1 + CF_AUDIT_SALT + ntexts;
	for (size_t i = 0; i < ntexts; i++) {
		CF_ENSURE(texts[i]->len <= CF_AUDIT_TEXT_MAX,
		          cf_err_fail(CF_E_INVALID, "audit entry field %zu too long", i));
		for (size_t j = 0; j < texts[i]->len; j++)
			CF_ENSURE(texts[i]->ptr[j] >= 0x20 && texts[i]->ptr[j] <= 0x7e,
			          cf_err_fail(CF_E_INVALID, "audit entry field %zu: not printable",
			                      i));
		need += texts[i]->len;
	}
	/* seq 0: an entry not yet sequenced (the sequencer writes its number in place) */
	CF_ENSURE(e->time_us >= 0, cf_err_fail(CF_E_INVALID, "audit entry: time out of range"));
	CF_ENSURE(e->actor_kind <= CF_ACTOR_SYSTEM && e->outcome <= CF_OUTCOME_FAILED &&
	                  e->action.len > 0 && (e->flags & ~CF_AUDIT_FLAG_CLOCK) == 0,
	          cf_err_fail(CF_E_INVALID, "audit entry out of range"));
	CF_ENSURE(need <= cap, cf_err_fail(CF_E_INVALID, "audit entry buffer too small"));
	uint8_t *p = out;
	*p++ = two ? CF_AUDIT_FORMAT_2 : CF_AUDIT_FORMAT;
	put_u64(p, (uint64_t)e->time_us);
	p += 8;
	/* tenant, then its sequence number */
	*p++ = (uint8_t)e->tenant.len;
	if (e->tenant.len)
		memcpy(p, e->tenant.ptr, e->tenant.len);
	p += e->tenant.len;
	put_u64(p, e->seq);
	p += 8;
	*p++ = e->actor_kind;
	for (size_t i = 1; i < 4; i++) { /* actor, action, resource */
		*p++ = (uint8_t)texts[i]->len;
		if (texts[i]->len)
			memcpy(p, texts[i]->ptr, texts[i]->len);
		p += texts[i]->len;
	}
	*p++ = e->outcome;
	for (size_t i = 4; i < ntexts; i++) { /* error, request id, privilege (, detail) */
		*p++ = (uint8_t)texts[i]->len;
		if (texts[i]->len)
			memcpy(p, texts[i]->ptr, texts[i]->len);
		p += texts[i]->len;
	}
	*p++ = e->flags;
	memcpy(p, e->salt, CF_AUDIT_SALT);
	p += CF_AUDIT_SALT;
	*len = (size_t)(p - out);
	return CF_OK;
}

struct reader {
	const uint8_t *p, *end;
	bool ok;
};

static uint8_t rd_u8(struct reader *r)
{
	if (r->p >= r->end) {
		r->ok = false;
		return 0;
	}
	return *r->p++;
}

static uint64_t rd_u64(struct reader *r)
{
	if (r->end - r->p < 8) {
		r->ok = false;
		return 0;
	}
	uint64_t v = get_u64(r->p);
	r->p += 8;
	return v;
}

static struct cf_span rd_text(struct reader *r)
{
	size_t n = rd_u8(r);
	if (!r->ok || (size_t)(r->end - r->p) < n) {
		r->ok = false;
		return (struct cf_span){NULL, 0};
	}
	struct cf_span s = {r->p, n};
	r->p += n;
	/* printable ASCII only: nothing to hide in an entry (one unsigned compare a byte,
	 * no branch, so the compiler can vectorise it: verify reads millions) */
	unsigned bad = 0;
	for (size_t i = 0; i < n; i++)
		bad |= (unsigned)((uint8_t)(s.ptr[i] - 0x20) > 0x5e);
	if (bad)
		r->ok = false;
	return s;
}

cf_err cf_audit_decode(struct cf_span b, struct cf_audit_entry *e)
{
	struct reader r = {b.ptr, b.ptr + b.len, b.len > 0};
	*e = (struct cf_audit_entry){0};
	e->format = rd_u8(&r);
	CF_ENSURE(r.ok && (e->format == CF_AUDIT_FORMAT || e->format == CF_AUDIT_FORMAT_2),
	          cf_err_fail(CF_E_INTEGRITY, "audit entry: unknown format"));
	uint64_t t = rd_u64(&r);
	e->time_us = (int64_t)t;
	e->tenant = rd_text(&r);
	e->seq = rd_u64(&r);
	e->actor_kind = rd_u8(&r);
	e->actor = rd_text(&r);
	e->action = rd_text(&r);
	e->resource = rd_text(&r);
	e->outcome = rd_u8(&r);
	e->error = rd_text(&r);
	e->request_id = rd_text(&r);
	e->privilege = rd_text(&r);
	if (e->format == CF_AUDIT_FORMAT_2) {
		e->detail = rd_text(&r);
		/* one form: a format 2 entry has a detail */
		CF_ENSURE(!r.ok || e->detail.len > 0,
		          cf_err_fail(CF_E_INTEGRITY, "audit entry: format 2 without a detail"));
	}
	e->flags = rd_u8(&r);
	CF_ENSURE(r.ok && r.end - r.p == CF_AUDIT_SALT,
	          cf_err_fail(CF_E_INTEGRITY, "audit entry: truncated or trailing bytes"));
	memcpy(e->salt, r.p, CF_AUDIT_SALT);
	CF_ENSURE(t <= INT64_MAX && e->seq >= 1 && e->actor_kind <= CF_ACTOR_SYSTEM &&
	                  e->outcome <= CF_OUTCOME_FAILED && e->action.len > 0 &&
	                  (e->flags & ~CF_AUDIT_FLAG_CLOCK) == 0,
	          cf_err_fail(CF_E_INTEGRITY, "audit entry: a field is out of range"));
	return CF_OK;
}

cf_err cf_audit_set_seq(uint8_t *body, size_t len, uint64_t seq)
{
	CF_ENSURE(len >= 11 && (body[0] == CF_AUDIT_FORMAT || body[0] == CF_AUDIT_FORMAT_2) &&
	                  seq >= 1,
	          cf_err_fail(CF_E_INTEGRITY, "audit entry: cannot be sequenced"));
	size_t at = 1 + 8 + 1 + (size_t)body[9];
	CF_ENSURE(at + 8 <= len, cf_err_fail(CF_E_INTEGRITY, "audit entry: truncated"));
	CF_ENSURE(get_u64(body + at) == 0,
	          cf_err_fail(CF_E_INTEGRITY, "audit entry: already sequenced"));
	put_u64(body + at, seq);
	return CF_OK;
}
