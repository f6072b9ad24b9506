/* coffre — per-address request rate limits (MD4), in front of every route.
 *
 * GCRA (the generic cell rate algorithm): each address keeps one number, its
 * theoretical arrival time (TAT). A request at `now` is allowed when
 * max(TAT, now) + T - now <= T * burst, with T = 1 s / rate; the TAT then advances by
 * T. An entry whose TAT is in the past holds no state worth keeping, which is what makes
 * a fixed-size table safe: the victim on a full set is the entry with the oldest TAT.
 *
 * Addresses are keyed by IPv4 /32 and IPv6 /64 (one host owns a whole /64), hashed
 * with a random per-process key so nobody can aim many addresses at one set. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "http/http.h"

#define WAYS    4
#define STRIPES 256

struct rl_entry {
	uint64_t key[2];
	uint64_t tat; /* ns, monotonic; 0 = empty */
};

struct cf_ratelimit {
	uint64_t interval_ns; /* T */
	uint64_t window_ns;   /* T * burst */
	size_t nsets;
	uint64_t seed[2];
	struct rl_entry *sets;
	pthread_mutex_t stripes[STRIPES];
};

cf_err cf_ratelimit_new(unsigned rate_per_s, unsigned burst, size_t slots,
                        struct cf_ratelimit **out)
{
	if (rate_per_s == 0 || burst == 0 || slots < WAYS)
		return cf_err_fail(CF_E_INVALID, "rate limit parameters out of range");
	struct cf_ratelimit *rl = calloc(1, sizeof *rl);
	if (!rl)
		return CF_E_NOMEM;
	rl->nsets = slots / WAYS;
	rl->sets = calloc(rl->nsets * WAYS, sizeof *rl->sets);
	if (!rl->sets) {
		free(rl);
		return CF_E_NOMEM;
	}
	rl->interval_ns = 1000000000u / rate_per_s;
	if (rl->interval_ns == 0)
		rl->interval_ns = 1;
	rl->window_ns = rl->interval_ns * burst;
	if (cf_crypto_random(rl->seed, sizeof rl->seed) != CF_OK) {
		free(rl->sets);
		free(rl);
		return CF_E_CRYPTO;
	}
	for (size_t i = 0; i < STRIPES; i++)
		pthread_mutex_init(&rl->stripes[i], NULL);
	*out = rl;
	return CF_OK;
}

void cf_ratelimit_free(struct cf_ratelimit **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_ratelimit *rl = *pp;
	*pp = NULL;
	for (size_t i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&rl->stripes[i]);
	free(rl->sets);
	free(rl);
}

static void addr_key(const struct sockaddr *sa, uint64_t key[2])
{
	uint8_t k[16] = {0};
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		k[10] = k[11] = 0xff; /* ::ffff:a.b.c.d */
		memcpy(k + 12, &in->sin_addr, 4);
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(k, &in6->sin6_addr, 16);
		static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};
		if (memcmp(k, v4mapped, 12) != 0)
			memset(k + 8, 0, 8); /* a /64 is one host's */
	}
	memcpy(key, k, 16);
}

static uint64_t mix(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9u;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebu;
	x ^= x >> 31;
	return x;
}

bool cf_ratelimit_take(struct cf_ratelimit *rl, const struct sockaddr *sa, uint64_t now_ns,
                       unsigned *retry_after_s)
{
	uint64_t key[2];
	addr_key(sa, key);
	uint64_t h = mix(key[0] ^ rl->seed[0]) ^ mix(key[1] ^ rl->seed[1]);
	size_t set = (size_t)(h % rl->nsets);
	pthread_mutex_t *lock = &rl->stripes[set % STRIPES];
	struct rl_entry *ways = &rl->sets[set * WAYS];
	/* now_ns + 1 keeps an allowed TAT above 0, the empty marker. */
	uint64_t now = now_ns + 1;
	bool allowed;

	pthread_mutex_lock(lock);
	struct rl_entry *e = NULL, *victim = &ways[0];
	for (unsigned i = 0; i < WAYS; i++) {
		if (ways[i].tat && ways[i].key[0] == key[0] && ways[i].key[1] == key[1]) {
			e = &ways[i];
			break;
		}
		if (ways[i].tat < victim->tat)
			victim = &ways[i];
	}
	if (!e) {
		e = victim;
		e->key[0] = key[0];
		e->key[1] = key[1];
		e->tat = 0;
	}
	uint64_t tat = e->tat > now ? e->tat : now;
	uint64_t next = tat + rl->interval_ns;
	if (next - now <= rl->window_ns) {
		e->tat = next;
		allowed = true;
	} else {
		uint64_t wait_ns = next - now - rl->window_ns;
		*retry_after_s = (unsigned)((wait_ns + 999999999u) / 1000000000u);
		if (*retry_after_s == 0)
			*retry_after_s = 1;
		allowed = false;
	}
	pthread_mutex_unlock(lock);
	return allowed;
}
