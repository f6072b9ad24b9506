/* coffre — growing delays against guessing (IA5, MD4) on every path that checks a
 * secret: passwords, TOTP and recovery codes, setup links, client secrets.
 *
 * Three counters per failure: the account from this address (3 free failures, then 1 s,
 * 2 s, 4 s... up to 15 minutes), the account from anywhere (10 free, then the same, up to
 * 5 minutes: a temporary lock only, so that nobody can lock an admin out for good), and
 * the address whatever the account (50 free, up to 15 minutes). A success clears the
 * first two; counters fade after 15 minutes without a failure. While a delay runs, the
 * secret is not even checked: the answer is 429 with Retry-After, the same whether or not
 * the account exists. The table is per coffred node, in memory, of fixed size. */
#include <string.h>
#include <time.h>

#include "auth/internal.h"

#define SLOTS      16384 /* a power of two */
#define FADE_MS    (15 * 60 * 1000)
#define CAP_MS     (15 * 60 * 1000)
#define ACCOUNT_MS (5 * 60 * 1000)

struct thr_slot {
	uint8_t key[16];
	uint32_t failures;
	int64_t last_ms, until_ms;
};

struct cf_throttle {
	pthread_mutex_t mu;
	struct thr_slot slots[SLOTS];
};

enum thr_kind { THR_PAIR, THR_ACCOUNT, THR_SOURCE, THR_KINDS };
static const struct {
	uint32_t free;
	int64_t cap_ms;
} rule[THR_KINDS] = {{3, CAP_MS}, {10, ACCOUNT_MS}, {50, CAP_MS}};

cf_err auth_throttle_new(struct cf_throttle **out)
{
	struct cf_throttle *t = calloc(1, sizeof *t);
	CF_ENSURE(t, CF_E_NOMEM);
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return CF_OK;
}

void auth_throttle_free(struct cf_throttle **pp)
{
	if (!pp || !*pp)
		return;
	pthread_mutex_destroy(&(*pp)->mu);
	free(*pp);
	*pp = NULL;
}

static int64_t now_ms(void)
{
	return (int64_t)(cf_now_mono_ns() / 1000000u);
}

static void make_key(enum thr_kind k, const struct cf_throttle_who *w, uint8_t out[16])
{
	static const char *const kinds[] = {"pair", "account", "source"};
	const char *account = k == THR_SOURCE ? "" : w->account;
	const char *source = k == THR_ACCOUNT ? "" : w->source;
	struct cf_span parts[] = {cf_span_str(kinds[k]),
	                          {(const uint8_t *)"", 1},
	                          cf_span_str(w->tenant ? w->tenant : ""),
	                          {(const uint8_t *)"", 1},
	                          cf_span_str(account ? account : ""),
	                          {(const uint8_t *)"", 1},
	                          cf_span_str(source ? source : "")};
	uint8_t h[CF_SHA256_LEN];
	if (cf_sha256v(parts, sizeof parts / sizeof parts[0], h) != CF_OK)
		memset(h, 0, sizeof h);
	memcpy(out, h, 16);
}

static struct thr_slot *slot(struct cf_throttle *t, const uint8_t key[16], bool claim)
{
	size_t i = ((size_t)key[0] | (size_t)key[1] << 8) & (SLOTS - 1);
	struct thr_slot *s = &t->slots[i];
	if (memcmp(s->key, key, 16) == 0)
		return s;
	if (!claim)
		return NULL;
	memset(s, 0, sizeof *s);
	memcpy(s->key, key, 16);
	return s;
}

unsigned auth_throttle_wait(struct cf_throttle *t, const struct cf_throttle_who *w)
{
	int64_t now = now_ms(), until = 0;
	pthread_mutex_lock(&t->mu);
	for (int k = 0; k < THR_KINDS; k++) {
		uint8_t key[16];
		make_key((enum thr_kind)k, w, key);
		const struct thr_slot *s = slot(t, key, false);
		if (s && s->until_ms > until)
			until = s->until_ms;
	}
	pthread_mutex_unlock(&t->mu);
	return until > now ? (unsigned)((until - now + 999) / 1000) : 0;
}

void auth_throttle_failed(struct cf_throttle *t, const struct cf_throttle_who *w)
{
	int64_t now = now_ms();
	pthread_mutex_lock(&t->mu);
	for (int k = 0; k < THR_KINDS; k++) {
		uint8_t key[16];
		make_key((enum thr_kind)k, w, key);
		struct thr_slot *s = slot(t, key, true);
		if (s->failures && now - s->last_ms > FADE_MS)
			s->failures = 0;
		s->failures++;
		s->last_ms = now;
		if (s->failures >= rule[k].free) {
			uint32_t over = s->failures - rule[k].free;
			int64_t delay = over >= 20 ? rule[k].cap_ms : (int64_t)1000 << over;
			s->until_ms = now + (delay < rule[k].cap_ms ? delay : rule[k].cap_ms);
		}
	}
	pthread_mutex_unlock(&t->mu);
}

void auth_throttle_passed(struct cf_throttle *t, const struct cf_throttle_who *w)
{
	pthread_mutex_lock(&t->mu);
	for (int k = 0; k < THR_SOURCE; k++) {
		uint8_t key[16];
		make_key((enum thr_kind)k, w, key);
		struct thr_slot *s = slot(t, key, false);
		if (s)
			memset(s, 0, sizeof *s);
	}
	pthread_mutex_unlock(&t->mu);
}

cf_err auth_throttle_gate(struct cf_auth *a, const struct cf_auth_call *c,
                          const struct cf_throttle_who *w)
{
	unsigned wait = auth_throttle_wait(a->throttle, w);
	if (!wait)
		return CF_OK;
	if (c && c->retry_after)
		*c->retry_after = wait;
	return cf_err_fail(CF_E_RATE_LIMITED, "too many failed attempts; try again in %u seconds",
	                   wait);
}

/* --- refusals before authentication (AL1 without a flood) --------------------------------- *
 * A request with no credentials, or with ones that do not hold, is not one audit entry
 * each: it is counted per (tenant named in the path, source address), and each period
 * the counts become one summary entry per pair in the deployment's log ("auth.refused",
 * resource "tenant=NAME count=N"). The source is never written in clear: for a tenant
 * that exists it is the HMAC under that tenant's audit key (what the tenant's own entries
 * hold for it); otherwise "-". The table is bounded; past it, refusals are counted
 * together. */
#define REFUSAL_SLOTS 1024

struct refusal {
	char tenant[CF_TENANT_NAME_MAX + 1];
	char source[48];
	uint64_t count;
};

struct cf_refusals {
	pthread_mutex_t mu;
	struct refusal r[REFUSAL_SLOTS];
	size_t n;
	uint64_t overflow;
};

cf_err auth_refusals_new(struct cf_refusals **out)
{
	struct cf_refusals *r = calloc(1, sizeof *r);
	CF_ENSURE(r, CF_E_NOMEM);
	pthread_mutex_init(&r->mu, NULL);
	*out = r;
	return CF_OK;
}

void auth_refusals_free(struct cf_refusals **pp)
{
	if (!pp || !*pp)
		return;
	pthread_mutex_destroy(&(*pp)->mu);
	free(*pp);
	*pp = NULL;
}

void cf_auth_note_refusal(struct cf_auth *a, const char *tenant, const char *source)
{
	struct cf_refusals *r = a->refusals;
	const char *t = tenant && strlen(tenant) <= CF_TENANT_NAME_MAX ? tenant : "";
	const char *s = source ? source : "-";
	pthread_mutex_lock(&r->mu);
	size_t i = 0;
	while (i < r->n && !(strcmp(r->r[i].tenant, t) == 0 && strcmp(r->r[i].source, s) == 0))
		i++;
	if (i < r->n) {
		r->r[i].count++;
	} else if (r->n < REFUSAL_SLOTS) {
		(void)snprintf(r->r[r->n].tenant, sizeof r->r[r->n].tenant, "%s", t);
		(void)snprintf(r->r[r->n].source, sizeof r->r[r->n].source, "%s", s);
		r->r[r->n++].count = 1;
	} else {
		r->overflow++;
	}
	pthread_mutex_unlock(&r->mu);
}

cf_err cf_auth_flush_refusals(struct cf_auth *a, unsigned *entries)
{
	struct cf_refusals *r = a->refusals;
	static struct refusal taken[REFUSAL_SLOTS]; /* the auditor thread's alone */
	pthread_mutex_lock(&r->mu);
	size_t n = r->n;
	uint64_t overflow = r->overflow;
	memcpy(taken, r->r, n * sizeof taken[0]);
	r->n = 0;
	r->overflow = 0;
	pthread_mutex_unlock(&r->mu);
	*entries = 0;
	cf_err err = CF_OK;
	for (size_t i = 0; i <= n; i++) {
		if (i == n && !overflow)
			break;
		const struct refusal *r1 = i < n ? &taken[i] : NULL;
		char actor[65] = "-", res[160];
		struct cf_tenant_ref t;
		if (r1 && r1->tenant[0] && cf_auth_tenant(a, r1->tenant, &t) == CF_OK &&
		    cf_audit_mac(a->keys, t.id, r1->source, actor) != CF_OK)
			(void)snprintf(actor, sizeof actor, "-");
		cf_err_detail_clear();
		(void)snprintf(res, sizeof res, "tenant=%.63s count=%llu",
		               r1 && r1->tenant[0] ? r1->tenant : "-",
		               (unsigned long long)(r1 ? r1->count : overflow));
		struct cf_audit_event ev = {.actor_kind = CF_ACTOR_ANONYMOUS,
		                            .actor = actor,
		                            .action = "auth.refused",
		                            .resource = res,
		                            .outcome = CF_OUTCOME_DENIED,
		                            .error = cf_err_name(CF_E_UNAUTHENTICATED)};
		cf_err e = cf_audit_record(a->store, NULL, &ev);
		if (e == CF_OK)
			++*entries;
		else if (err == CF_OK)
			err = e;
	}
	cf_wipe(taken, n * sizeof taken[0]);
	return err;
}
