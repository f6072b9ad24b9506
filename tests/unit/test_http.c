/* Unit tests for src/http: the router's strict paths, the per-address rate limiter
 * (MD4), TLS credential loading (TR1), and a connection's sending side (a reply's head
 * sent with its body). The server itself is tested end to end by tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "crypto/crypto.h"
#include "http/http.h"
#include "http/tls_cb.h"

static cf_err h_none(struct cf_req *r)
{
	(void)r;
	return CF_OK;
}

static const struct cf_route routes[] = {
        {"GET", "/", h_none, 0, 0, "root", NULL},
        {"GET", "/healthz", h_none, 0, 0, "healthz", NULL},
        {"GET", "/v1/t/{tenant}/records/{id}", h_none, 0, 0, "record_get", NULL},
        {"PUT", "/v1/t/{tenant}/records/{id}", h_none, CF_ROUTE_BODY, 0, "record_put", NULL},
        {"GET", "/v1/t/{tenant}/records", h_none, 0, 0, "record_list", NULL},
};
#define NR (sizeof routes / sizeof routes[0])

static cf_err match(const char *method, const char *path, struct cf_route_match *m)
{
	return cf_router_match(routes, NR, method, cf_span_str(path), m);
}

static void test_router_matches(void **state)
{
	(void)state;
	struct cf_route_match m;
	assert_int_equal(match("GET", "/healthz", &m), CF_OK);
	assert_string_equal(m.route->name, "healthz");
	assert_int_equal(match("GET", "/", &m), CF_OK);
	assert_string_equal(m.route->name, "root");
	assert_int_equal(match("PUT", "/v1/t/acme/records/r-42", &m), CF_OK);
	assert_string_equal(m.route->name, "record_put");
	assert_int_equal(m.nparams, 2);
	assert_true(cf_span_eq(m.names[0], cf_span_str("tenant")));
	assert_true(cf_span_eq(m.values[0], cf_span_str("acme")));
	assert_true(cf_span_eq(m.values[1], cf_span_str("r-42")));
	assert_int_equal(match("GET", "/v1/t/acme/records", &m), CF_OK);
	assert_string_equal(m.route->name, "record_list");
	/* escapes that decode to ordinary characters stay escaped in the parameter */
	assert_int_equal(match("GET", "/v1/t/acme/records/a%20b", &m), CF_OK);
	assert_true(cf_span_eq(m.values[1], cf_span_str("a%20b")));
}

static void test_router_refusals(void **state)
{
	(void)state;
	struct cf_route_match m;
	assert_int_equal(match("GET", "/nope", &m), CF_E_NOT_FOUND);
	assert_int_equal(match("GET", "/healthz/extra", &m), CF_E_NOT_FOUND);
	assert_int_equal(match("GET", "/v1/t/acme", &m), CF_E_NOT_FOUND);
	assert_int_equal(match("DELETE", "/v1/t/acme/records/1", &m), CF_E_METHOD);
	assert_string_equal(m.allow, "GET, PUT");
	static const char *const bad[] = {
	        "",        "healthz",  "//healthz", "/healthz/", "/v1//t", "/./healthz",
	        "/../etc", "/a/%2F/b", "/a/%2f",    "/a/%00",    "/a/%0a", "/a/%7F",
	        "/a/%",    "/a/%4",    "/a/%zz",    "/a b",      "/a\"b",  "/a<b>",
	        "/a\\b",   "/a?b",     "/a#b",      "/\x80",     "/a\x01",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cf_err e = match("GET", bad[i], &m);
		if (e != CF_E_INVALID)
			fail_msg("path '%s' gave %s, want invalid_argument", bad[i],
			         cf_err_name(e));
	}
	char longp[CF_HTTP_PATH_MAX + 2];
	memset(longp, 'a', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = '\0';
	assert_int_equal(match("GET", longp, &m), CF_E_URI_TOO_LONG);
	/* a path at the limit is checked, not refused for its length */
	longp[CF_HTTP_PATH_MAX] = '\0';
	assert_int_equal(match("GET", longp, &m), CF_E_NOT_FOUND);
}

static struct sockaddr_in v4(const char *ip)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, ip, &a.sin6_addr);
	return a;
}

#define SA(x) ((const struct sockaddr *)(const void *)&(x))

static void test_ratelimit_gcra(void **state)
{
	(void)state;
	struct cf_ratelimit *rl = NULL;
	assert_int_equal(cf_ratelimit_new(10, 5, 1024, &rl), CF_OK); /* 10/s, burst 5 */
	struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
	uint64_t t = 1000000000000u;
	unsigned retry = 0;
	for (int i = 0; i < 5; i++)
		assert_true(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_false(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_int_equal(retry, 1);
	/* another address is not affected */
	assert_true(cf_ratelimit_take(rl, SA(b), t, &retry));
	/* one interval later, exactly one more */
	t += 100000000u;
	assert_true(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_false(cf_ratelimit_take(rl, SA(a), t, &retry));
	/* after a quiet second the burst is back */
	t += 1000000000u;
	for (int i = 0; i < 5; i++)
		assert_true(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_false(cf_ratelimit_take(rl, SA(a), t, &retry));
	cf_ratelimit_free(&rl);
	assert_null(rl);

	/* a slow rate gives a Retry-After of several seconds */
	assert_int_equal(cf_ratelimit_new(1, 1, 64, &rl), CF_OK);
	assert_true(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_false(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_int_equal(retry, 1);
	cf_ratelimit_free(&rl);
	assert_int_equal(cf_ratelimit_new(0, 1, 64, &rl), CF_E_INVALID);
}

static void test_ratelimit_ipv6_prefix(void **state)
{
	(void)state;
	struct cf_ratelimit *rl = NULL;
	assert_int_equal(cf_ratelimit_new(1, 2, 1024, &rl), CF_OK);
	struct sockaddr_in6 a = v6("2001:db8:1:2::1"), same64 = v6("2001:db8:1:2:ffff::9"),
	                    other = v6("2001:db8:1:3::1");
	uint64_t t = 5000000000u;
	unsigned retry;
	assert_true(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_true(cf_ratelimit_take(rl, SA(same64), t, &retry));
	/* the same /64 shares one bucket */
	assert_false(cf_ratelimit_take(rl, SA(a), t, &retry));
	assert_true(cf_ratelimit_take(rl, SA(other), t, &retry));
	cf_ratelimit_free(&rl);
}

static void test_ratelimit_bounded_table(void **state)
{
	(void)state;
	/* Far more addresses than slots: memory stays fixed and busy addresses keep their
	 * state, because idle entries are the ones evicted. */
	struct cf_ratelimit *rl = NULL;
	assert_int_equal(cf_ratelimit_new(1, 1, 64, &rl), CF_OK);
	struct sockaddr_in hot = v4("198.51.100.7");
	uint64_t t = 1000000000000u;
	unsigned retry;
	assert_true(cf_ratelimit_take(rl, SA(hot), t, &retry));
	for (uint32_t i = 0; i < 100000; i++) {
		struct sockaddr_in x = {.sin_family = AF_INET,
		                        .sin_addr.s_addr = htonl(0x0a000000u + i)};
		(void)cf_ratelimit_take(rl, SA(x), t + 2000000000u + i, &retry);
	}
	cf_ratelimit_free(&rl);
}

static char tmpdir[64];

static int make_pki(void **state)
{
	(void)state;
	(void)snprintf(tmpdir, sizeof tmpdir, "/tmp/cf_tls_XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	bool created;
	return cf_crypto_dev_pki(tmpdir, &created) == CF_OK && created ? 0 : -1;
}

static int drop_pki(void **state)
{
	(void)state;
	static const char *const files[] = {"ca.pem",     "ca.key",  "server.pem",
	                                    "server.key", "bad.pem", "ca.crl"};
	char p[128];
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		(void)snprintf(p, sizeof p, "%s/%s", tmpdir, files[i]);
		unlink(p);
	}
	rmdir(tmpdir);
	return 0;
}

static void test_tls_load(void **state)
{
	(void)state;
	char cert[128], key[128], cakey[128], bad[128];
	(void)snprintf(cert, sizeof cert, "%s/server.pem", tmpdir);
	(void)snprintf(key, sizeof key, "%s/server.key", tmpdir);
	(void)snprintf(cakey, sizeof cakey, "%s/ca.key", tmpdir);
	(void)snprintf(bad, sizeof bad, "%s/bad.pem", tmpdir);
	assert_int_equal(cf_tls_load(cert, key), CF_OK);
	/* a key that is not the certificate's */
	assert_int_equal(cf_tls_load(cert, cakey), CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "does not match"));
	/* missing and garbage files */
	assert_int_equal(cf_tls_load("/nonexistent.pem", key), CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "TLS certificate"));
	assert_int_equal(cf_file_write_atomic(bad, "not pem\n", 8, 0600), CF_OK);
	assert_int_equal(cf_tls_load(bad, key), CF_E_CONFIG);
	assert_int_equal(cf_tls_load(cert, bad), CF_E_CONFIG);
	cf_tls_shutdown();
}

static void test_tls_priorities(void **state)
{
	(void)state;
	/* TR1/TR2: GnuTLS accepts our policy, and it enables exactly TLS 1.2/1.3 AEAD
	 * suites with ECDHE. */
	gnutls_priority_t p;
	const char *errpos = NULL;
	assert_int_equal(gnutls_priority_init(&p, cf_tls_priorities, &errpos), 0);
	unsigned idx = 0, sidx = 0;
	int n = 0;
	while (gnutls_priority_get_cipher_suite_index(p, idx++, &sidx) !=
	       GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
		if (sidx == 0)
			continue;
		uint8_t id[2];
		gnutls_kx_algorithm_t kx;
		gnutls_cipher_algorithm_t ci;
		gnutls_mac_algorithm_t mac;
		gnutls_protocol_t minv;
		const char *name = gnutls_cipher_suite_info(sidx, id, &kx, &ci, &mac, &minv);
		if (!name)
			continue;
		n++;
		assert_true(ci == GNUTLS_CIPHER_AES_256_GCM || ci == GNUTLS_CIPHER_AES_128_GCM ||
		            ci == GNUTLS_CIPHER_CHACHA20_POLY1305);
		assert_true(kx == GNUTLS_KX_ECDHE_ECDSA || kx == GNUTLS_KX_ECDHE_RSA ||
		            kx == GNUTLS_KX_UNKNOWN /* TLS 1.3 suites carry no kx */);
	}
	assert_true(n >= 3);
	const unsigned *protos = NULL;
	int np = gnutls_priority_protocol_list(p, &protos);
	assert_true(np >= 1);
	for (int i = 0; i < np; i++)
		assert_true(protos[i] == GNUTLS_TLS1_2 || protos[i] == GNUTLS_TLS1_3);
	gnutls_priority_deinit(p);
}

/* A stream socket pair with a small send buffer: fds[0] sends (non-blocking). */
static void small_pair(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	int small = 4096;
	assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
	assert_int_equal(fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK), 0);
	struct timeval tv = {.tv_sec = 5}; /* bytes that never come fail the test, not hang it */
	assert_int_equal(setsockopt(fds[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
}

/* Sends buf as GnuTLS sends a record: again from where the last push stopped, after
 * EAGAIN once the peer has read some; what the peer read is appended to got. */
static void push_all(struct cf_tls_out *t, int peer, uint8_t *buf, size_t len, uint8_t *got,
                     size_t *ngot, size_t cap, unsigned *again)
{
	size_t off = 0;
	while (off < len) {
		/* in two pieces, as GnuTLS gives a record's header and its payload */
		size_t left = len - off, first = left > 1 ? left / 2 : left;
		giovec_t v[2] = {{buf + off, first}, {buf + off + first, left - first}};
		ssize_t r = cf_tls_push(t, v, left > 1 ? 2 : 1);
		if (r < 0) {
			assert_int_equal(errno, EAGAIN);
			(*again)++;
			ssize_t n =
			        recv(peer, got + *ngot, cap - *ngot < 700 ? cap - *ngot : 700, 0);
			assert_true(n > 0);
			*ngot += (size_t)n;
			continue;
		}
		assert_true(r > 0 && (size_t)r <= len - off);
		off += (size_t)r;
	}
}

static void test_tls_push_head_with_body(void **state)
{
	(void)state;
	int fds[2];
	small_pair(fds);
	struct cf_tls_out *t = calloc(1, sizeof *t);
	assert_non_null(t);
	t->fd = fds[0];
	/* A marked head is kept: GnuTLS is told it went, the peer sees nothing yet. */
	uint8_t head[600], body[300];
	memset(head, 'H', sizeof head);
	memset(body, 'B', sizeof body);
	t->more = true;
	giovec_t h = {head, sizeof head}, b = {body, sizeof body};
	assert_int_equal(cf_tls_push(t, &h, 1), (ssize_t)sizeof head);
	uint8_t got[1024];
	assert_int_equal(recv(fds[1], got, sizeof got, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	/* The body's push sends both, the head first. */
	assert_int_equal(cf_tls_push(t, &b, 1), (ssize_t)sizeof body);
	size_t n = 0;
	while (n < sizeof head + sizeof body) {
		ssize_t r = recv(fds[1], got + n, sizeof got - n, 0);
		assert_true(r > 0);
		n += (size_t)r;
	}
	assert_int_equal(n, sizeof head + sizeof body);
	assert_memory_equal(got, head, sizeof head);
	assert_memory_equal(got + sizeof head, body, sizeof body);
	assert_int_equal(t->held, 0);
	/* An unmarked record goes at once. */
	assert_int_equal(cf_tls_push(t, &b, 1), (ssize_t)sizeof body);
	assert_int_equal(recv(fds[1], got, sizeof got, 0), (ssize_t)sizeof body);
	/* A head too large to keep goes at once too. */
	uint8_t *large = malloc(CF_TLS_HELD_MAX + 1);
	assert_non_null(large);
	memset(large, 'L', CF_TLS_HELD_MAX + 1);
	t->more = true;
	assert_int_equal(cf_tls_push(t, &(giovec_t){large, CF_TLS_HELD_MAX + 1}, 1),
	                 (ssize_t)CF_TLS_HELD_MAX + 1);
	assert_int_equal(t->held, 0);
	n = 0;
	while (n < CF_TLS_HELD_MAX + 1) {
		ssize_t r = recv(fds[1], large, CF_TLS_HELD_MAX + 1 - n, 0);
		assert_true(r > 0);
		n += (size_t)r;
	}
	free(large);
	close(fds[0]);
	close(fds[1]);
	free(t);
}

static void test_tls_push_full_socket(void **state)
{
	(void)state;
	/* Into a full socket, many times over: the head goes before the body, each byte
	 * once and in order, as the peer reads (the sends come back short or EAGAIN). Linux
	 * takes the held head whole here, so the branch for a head sent in part is not
	 * reached by this test; it is read, not run. */
	enum { ROUNDS = 40, BODY = 20000 };
	size_t cap = (size_t)ROUNDS * (CF_TLS_HELD_MAX + BODY) + 300000;
	uint8_t *want = malloc(cap), *got = malloc(cap), *rec = malloc(BODY + CF_TLS_HELD_MAX);
	assert_non_null(want);
	assert_non_null(got);
	assert_non_null(rec);
	int fds[2];
	small_pair(fds);
	struct cf_tls_out *t = calloc(1, sizeof *t);
	assert_non_null(t);
	t->fd = fds[0];
	size_t nwant = 0, ngot = 0;
	unsigned again = 0;
	uint32_t x = 2463534242u;
	for (unsigned i = 0; i < ROUNDS; i++) {
		/* fill the socket first, with an unmarked record, till it refuses */
		size_t fill = 0;
		for (;;) {
			for (size_t k = 0; k < 1000; k++)
				rec[k] = (uint8_t)(x ^= x << 13, x ^= x >> 17, x ^= x << 5);
			ssize_t r = cf_tls_push(t, &(giovec_t){rec, 1000}, 1);
			if (r < 0) {
				assert_int_equal(errno, EAGAIN);
				break;
			}
			memcpy(want + nwant, rec, (size_t)r);
			nwant += (size_t)r;
			fill += (size_t)r;
			assert_true(fill < 250000);
		}
		size_t hl = 100 + (i * 37) % (CF_TLS_HELD_MAX - 100);
		for (size_t k = 0; k < hl + BODY; k++)
			rec[k] = (uint8_t)(x ^= x << 13, x ^= x >> 17, x ^= x << 5);
		t->more = true;
		assert_int_equal(cf_tls_push(t, &(giovec_t){rec, hl}, 1), (ssize_t)hl);
		memcpy(want + nwant, rec, hl + BODY);
		nwant += hl + BODY;
		push_all(t, fds[1], rec + hl, BODY, got, &ngot, cap, &again);
		assert_int_equal(t->held, 0);
	}
	while (ngot < nwant) {
		ssize_t r = recv(fds[1], got + ngot, cap - ngot, 0);
		assert_true(r > 0);
		ngot += (size_t)r;
	}
	assert_int_equal(ngot, nwant);
	assert_memory_equal(got, want, nwant);
	assert_true(again >= ROUNDS); /* each round's body met a full socket */
	close(fds[0]);
	close(fds[1]);
	free(t);
	free(want);
	free(got);
	free(rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_router_matches),
	        cmocka_unit_test(test_router_refusals),
	        cmocka_unit_test(test_ratelimit_gcra),
	        cmocka_unit_test(test_ratelimit_ipv6_prefix),
	        cmocka_unit_test(test_ratelimit_bounded_table),
	        cmocka_unit_test_setup_teardown(test_tls_load, make_pki, drop_pki),
	        cmocka_unit_test(test_tls_priorities),
	        cmocka_unit_test(test_tls_push_head_with_body),
	        cmocka_unit_test(test_tls_push_full_socket),
	};
	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
