/* Unit tests for src/base: errors, spans, buffers, secure memory (ER3), strict JSON,
 * configuration, logging, clocks, the work pool and process hardening. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"

/* errors ------------------------------------------------------------------------------ */
static void test_err_table(void **state)
{
	(void)state;
	for (int i = 0; i < CF_E__COUNT; i++) {
		const char *n = cf_err_name((cf_err)i);
		assert_non_null(n);
		for (const char *p = n; *p; p++) /* stable snake_case names */
			assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
		assert_in_range(cf_err_status((cf_err)i), 200, 599);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(n, cf_err_name((cf_err)j));
	}
	assert_string_equal(cf_err_name(CF_E_NOT_FOUND), "not_found");
	assert_int_equal(cf_err_status(CF_E_RATE_LIMITED), 429);
	assert_string_equal(cf_err_name((cf_err)9999), "internal_error");
	assert_int_equal(cf_err_fail(CF_E_INVALID, "field %s", "x"), CF_E_INVALID);
	assert_string_equal(cf_err_detail(), "field x");
	cf_err_detail_clear();
	assert_string_equal(cf_err_detail(), "");
	/* a detail prefixed with where it happened, from the detail itself (a batch's item) */
	(void)cf_err_at(CF_E_WRONG_TYPE, "data.email", "email", "data.email is not an email");
	char path[64];
	(void)snprintf(path, sizeof path, "records[3].%s", cf_err_path());
	assert_int_equal(
	        cf_err_at(CF_E_WRONG_TYPE, path, cf_err_rule(), "records[3]: %s", cf_err_detail()),
	        CF_E_WRONG_TYPE);
	assert_string_equal(cf_err_detail(), "records[3]: data.email is not an email");
	assert_string_equal(cf_err_path(), "records[3].data.email");
	assert_string_equal(cf_err_rule(), "email");
	assert_int_equal(cf_err_fail(CF_E_INVALID, "again: %s", cf_err_detail()), CF_E_INVALID);
	assert_string_equal(cf_err_detail(), "again: records[3]: data.email is not an email");
	assert_string_equal(cf_err_path(), "");
	/* kept over a cleanup that sets its own, then put back whole */
	struct cf_err_saved kept;
	(void)cf_err_at(CF_E_OUT_OF_RANGE, "reason", "min", "reason is 3 to 500 bytes");
	cf_err_save(&kept, CF_E_OUT_OF_RANGE);
	(void)cf_err_fail(CF_E_IO, "rollback failed");
	cf_err_restore(&kept);
	assert_string_equal(cf_err_detail(), "reason is 3 to 500 bytes");
	assert_string_equal(cf_err_path(), "reason");
	assert_string_equal(cf_err_rule(), "min");
	cf_err_save(&kept, CF_OK); /* success keeps nothing */
	cf_err_restore(&kept);
	assert_string_equal(cf_err_detail(), "");
	assert_string_equal(cf_err_path(), "");
	cf_err_detail_clear();
	/* a client's name in a message: printable, bounded, no quote */
	char shown[6];
	cf_err_shown("a\"b\x01"
	             "c\xff",
	             shown, sizeof shown);
	assert_string_equal(shown, "a?b?c");
	cf_err_shown("limit", shown, sizeof shown);
	assert_string_equal(shown, "limit");
	cf_err_shown("cursor", shown, sizeof shown);
	assert_string_equal(shown, "curso");
	/* a detail or path cut inside a character, or quoting bytes that are not UTF-8, stays
	 * encodable: the error reply is a 4xx naming the field, not a 503 */
	char cut[16];
	(void)snprintf(cut, sizeof cut, "data.%.8s", "a\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
	(void)cf_err_at(CF_E_UNKNOWN_FIELD, cut, "schema",
	                "%s: \xff\xc3\xa9 \xed\xa0\x80 \xf4\x90\x80\x80 %s", cut, "\xe2\x82\xac");
	assert_string_equal(cf_err_path(), "data.a\xc3\xa9\xc3\xa9\xc3\xa9?");
	assert_string_equal(cf_err_detail(),
	                    "data.a\xc3\xa9\xc3\xa9\xc3\xa9?: ?\xc3\xa9 ??? ???? \xe2\x82\xac");
	json_t *j = json_string(cf_err_detail());
	assert_non_null(j);
	json_decref(j);
	j = json_string(cf_err_path());
	assert_non_null(j);
	json_decref(j);
	cf_err_detail_clear();
}

static void test_span(void **state)
{
	(void)state;
	assert_true(cf_span_eq(cf_span_str("abc"), cf_span_str("abc")));
	assert_false(cf_span_eq(cf_span_str("abc"), cf_span_str("abd")));
	assert_false(cf_span_eq(cf_span_str("abc"), cf_span_str("ab")));
	assert_true(cf_span_eq_ct(cf_span_str("secret"), cf_span_str("secret")));
	assert_false(cf_span_eq_ct(cf_span_str("secret"), cf_span_str("secreT")));
	assert_false(cf_span_eq_ct(cf_span_str("secret"), cf_span_str("secrets")));
	assert_true(cf_span_eq_ct(cf_span_str(""), cf_span_str("")));
}

static void test_byte_helpers(void **state)
{
	(void)state;
	uint8_t b[4];
	cf_be32_put(b, 0x01020304u);
	assert_memory_equal(b, "\x01\x02\x03\x04", 4);
	assert_int_equal(cf_be32_get(b), 0x01020304u);
	char h[9];
	static const uint8_t raw[4] = {0x00, 0xab, 0x7f, 0xff};
	cf_hex_encode(raw, 4, h);
	assert_string_equal(h, "00ab7fff");
	uint8_t back[4];
	assert_true(cf_hex_decode(h, 4, back));
	assert_memory_equal(back, raw, 4);
	assert_false(cf_hex_decode("00AB7fff", 4, back)); /* lower case only */
	assert_false(cf_hex_decode("0g", 1, back));
	assert_false(cf_hex_decode("0", 1, back)); /* the NUL is not a digit */
}

/* buffers ------------------------------------------------------------------------------ */
static void test_buf_bounded(void **state)
{
	(void)state;
	struct cf_buf b;
	cf_buf_init(&b, 10);
	assert_int_equal(cf_buf_append(&b, "hello", 5), CF_OK);
	assert_int_equal(cf_buf_append(&b, "world", 5), CF_OK);
	assert_int_equal(b.len, 10);
	/* past the maximum: refused, and the buffer is as it was */
	assert_int_equal(cf_buf_append(&b, "!", 1), CF_E_TOO_LARGE);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.data, "helloworld", 10);
	/* size arithmetic that would overflow is refused, not wrapped */
	assert_int_equal(cf_buf_append(&b, "x", SIZE_MAX), CF_E_TOO_LARGE);
	char *s = NULL;
	assert_int_equal(cf_buf_take_str(&b, &s), CF_OK);
	assert_string_equal(s, "helloworld");
	assert_null(b.data);
	free(s);
	cf_buf_free(&b);
}

/* secure memory ------------------------------------------------------------------------ */
/* The flags the kernel shows for the mapping that holds p ("lo" locked, "dd" not dumped). */
static bool vma_has_flags(const void *p, const char *want1, const char *want2)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	assert_non_null(f);
	char line[512];
	bool inside = false, found = false;
	uintptr_t a = (uintptr_t)p;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			inside = a >= lo && a < hi;
			continue;
		}
		if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			found = strstr(line, want1) && strstr(line, want2);
			break;
		}
	}
	fclose(f);
	return found;
}

static void test_secmem(void **state)
{
	(void)state;
	assert_int_equal(cf_secmem_init(64 * 1024), CF_OK);
	struct cf_secbuf *a = NULL, *b = NULL, *big = NULL;
	assert_int_equal(cf_secbuf_new(32, &a), CF_OK);
	for (size_t i = 0; i < a->len; i++)
		assert_int_equal(a->ptr[i], 0);
	memset(a->ptr, 0xAB, a->len);
	assert_true(vma_has_flags(a->ptr, " lo", " dd"));
	assert_true(cf_secmem_in_use() >= 32);
	uint8_t *where = a->ptr;
	cf_secbuf_free(&a);
	assert_null(a);
	/* the slot was wiped before going back on its list */
	assert_int_equal(cf_secbuf_new(32, &b), CF_OK);
	assert_ptr_equal(b->ptr, where);
	for (size_t i = 0; i < b->len; i++)
		assert_int_equal(b->ptr[i], 0);
	cf_secbuf_free(&b);
	assert_int_equal(cf_secmem_in_use(), 0);
	assert_int_equal(cf_secbuf_new(100000, &big), CF_OK);
	assert_true(vma_has_flags(big->ptr, " lo", " dd"));
	cf_secbuf_free(&big);
	assert_int_equal(cf_secbuf_new(0, &a), CF_E_INVALID);
	cf_secbuf_free(NULL);
	/* the arena runs out loudly, not silently */
	struct cf_secbuf *many[40];
	size_t n = 0;
	cf_err e = CF_OK;
	for (; n < 40 && (e = cf_secbuf_new(4096, &many[n])) == CF_OK; n++)
		;
	assert_int_equal(e, CF_E_SECMEM);
	while (n)
		cf_secbuf_free(&many[--n]);
	cf_secmem_shutdown();
}

static void *scratch_thread(void *arg)
{
	uint8_t *p = cf_secmem_scratch();
	*(uint8_t **)arg = p;
	return NULL;
}

/* The per-thread scratch for short-lived keys (DEKs): locked, one per thread, returned
 * to the arena when the thread ends, void after a shutdown. */
static void test_secmem_scratch(void **state)
{
	(void)state;
	assert_null(cf_secmem_scratch()); /* no arena yet */
	assert_int_equal(cf_secmem_init(64 * 1024), CF_OK);
	uint8_t *mine = cf_secmem_scratch();
	assert_non_null(mine);
	assert_ptr_equal(cf_secmem_scratch(), mine);
	assert_true(vma_has_flags(mine, " lo", " dd"));
	size_t used = cf_secmem_in_use();
	uint8_t *theirs = NULL;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, scratch_thread, &theirs), 0);
	pthread_join(t, NULL);
	assert_non_null(theirs);
	assert_ptr_not_equal(theirs, mine);
	assert_int_equal(cf_secmem_in_use(), used); /* the thread's went back */
	cf_secmem_shutdown();
	assert_int_equal(cf_secmem_init(64 * 1024), CF_OK);
	uint8_t *again = cf_secmem_scratch(); /* a new arena: a new scratch */
	assert_non_null(again);
	assert_true(vma_has_flags(again, " lo", " dd"));
	cf_secmem_shutdown();
}

static void test_secmem_refuses_unlockable(void **state)
{
	(void)state;
	/* With no right to lock memory, init must fail with CF_E_SECMEM (never fall back to
	 * unlocked pages). Root ignores RLIMIT_MEMLOCK, so the child becomes nobody. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {0, 0};
		setrlimit(RLIMIT_MEMLOCK, &rl);
		if (geteuid() == 0 && setuid(65534) != 0)
			_exit(3);
		_exit(cf_secmem_init(1024 * 1024) == CF_E_SECMEM ? 0 : 1);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* JSON -------------------------------------------------------------------------------- */
static cf_err parse(const char *s, json_t **out)
{
	return cf_json_parse((const uint8_t *)s, strlen(s), 1024 * 1024, out);
}

static void test_json_strict(void **state)
{
	(void)state;
	json_t *v = NULL;
	assert_int_equal(parse("{\"a\":1,\"b\":[true,null]}", &v), CF_OK);
	json_decref(v);
	assert_int_equal(parse("{\"a\":1,\"a\":2}", &v), CF_E_DUPLICATE_KEY);
	assert_int_equal(parse("{\"a\":1} x", &v), CF_E_MALFORMED_JSON);
	assert_int_equal(parse("{\"a\":\"\\u0000\"}", &v), CF_E_MALFORMED_JSON);
	assert_int_equal(parse("{\"a\":\"\xff\"}", &v), CF_E_MALFORMED_JSON);
	assert_int_equal(parse("{\"a\":", &v), CF_E_MALFORMED_JSON);
	assert_int_equal(parse("", &v), CF_E_MALFORMED_JSON);
	assert_string_equal(cf_err_detail(), "the JSON document is empty");
	assert_int_equal(parse(" \r\n", &v), CF_E_MALFORMED_JSON);
	assert_string_equal(cf_err_detail(), "the JSON document is empty");
	assert_int_equal(parse("{\"a\": [1, ", &v), CF_E_MALFORMED_JSON);
	assert_string_equal(cf_err_detail(), "line 1 column 10: syntax error");
	assert_int_equal(parse("{\"a\": x}", &v), CF_E_MALFORMED_JSON);
	assert_string_equal(cf_err_detail(), "line 1 column 7: syntax error");
	assert_int_equal(parse("123456789012345678901234567890", &v), CF_E_MALFORMED_JSON);
	assert_int_equal(cf_json_parse((const uint8_t *)"{}", 2, 1, &v), CF_E_TOO_LARGE);
	assert_int_equal(cf_json_parse_object((const uint8_t *)"[1]", 3, 100, &v), CF_E_WRONG_TYPE);
}

static void test_json_depth(void **state)
{
	(void)state;
	char doc[200];
	json_t *v = NULL;
	for (unsigned depth = CF_JSON_DEPTH_MAX; depth <= CF_JSON_DEPTH_MAX + 1; depth++) {
		size_t n = 0;
		for (unsigned i = 0; i < depth; i++)
			doc[n++] = '[';
		for (unsigned i = 0; i < depth; i++)
			doc[n++] = ']';
		cf_err e = cf_json_parse((const uint8_t *)doc, n, sizeof doc, &v);
		if (depth == CF_JSON_DEPTH_MAX) {
			assert_int_equal(e, CF_OK);
			json_decref(v);
		} else {
			assert_int_equal(e, CF_E_TOO_DEEP);
		}
	}
	/* brackets inside strings do not count */
	assert_int_equal(parse("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}", &v), CF_OK);
	json_decref(v);
}

static void test_json_getters(void **state)
{
	(void)state;
	json_t *o = NULL;
	assert_int_equal(parse("{\"s\":\"hi\",\"i\":5,\"b\":true,\"o\":{},\"f\":1.5}", &o), CF_OK);
	const char *s = NULL;
	size_t len = 0;
	int64_t i = 0;
	bool b = false;
	json_t *sub = NULL;
	assert_int_equal(cf_json_get_str(o, "s", true, 10, &s, &len), CF_OK);
	assert_string_equal(s, "hi");
	assert_int_equal(len, 2);
	/* each refusal names its field and rule (the API's 422 body carries both) */
	assert_int_equal(cf_json_get_str(o, "s", true, 1, &s, &len), CF_E_OUT_OF_RANGE);
	assert_string_equal(cf_err_path(), "s");
	assert_string_equal(cf_err_rule(), "max");
	assert_int_equal(cf_json_get_str(o, "i", true, 10, &s, &len), CF_E_WRONG_TYPE);
	assert_string_equal(cf_err_detail(), "i: must be a string");
	assert_string_equal(cf_err_rule(), "string");
	assert_int_equal(cf_json_get_str(o, "zz", true, 10, &s, &len), CF_E_MISSING_FIELD);
	assert_string_equal(cf_err_detail(), "zz: required");
	assert_string_equal(cf_err_path(), "zz");
	assert_string_equal(cf_err_rule(), "required");
	s = "untouched";
	assert_int_equal(cf_json_get_str(o, "zz", false, 10, &s, &len), CF_OK);
	assert_string_equal(s, "untouched");
	assert_int_equal(cf_json_get_int(o, "i", true, 0, 10, &i), CF_OK);
	assert_int_equal(i, 5);
	assert_int_equal(cf_json_get_int(o, "i", true, 6, 10, &i), CF_E_OUT_OF_RANGE);
	assert_int_equal(cf_json_get_int(o, "f", true, 0, 10, &i), CF_E_WRONG_TYPE);
	assert_int_equal(cf_json_get_bool(o, "b", true, &b), CF_OK);
	assert_true(b);
	assert_int_equal(cf_json_get_bool(o, "i", true, &b), CF_E_WRONG_TYPE);
	assert_int_equal(cf_json_get_object(o, "o", true, &sub), CF_OK);
	assert_int_equal(cf_json_get_object(o, "s", true, &sub), CF_E_WRONG_TYPE);
	static const char *const allowed[] = {"s", "i", "b", "o", NULL};
	assert_int_equal(cf_json_only_keys(o, allowed), CF_E_UNKNOWN_FIELD);
	assert_string_equal(cf_err_detail(), "f: unknown field");
	assert_string_equal(cf_err_path(), "f");
	static const char *const all[] = {"s", "i", "b", "o", "f", NULL};
	assert_int_equal(cf_json_only_keys(o, all), CF_OK);
	json_decref(o);
}

/* a member's text as sent (what a create seals): found at any place among the top-level
 * members, strings holding "," "}" and escaped quotes skipped, surrounding blanks left
 * out; not found when absent, only nested, or when a top-level key has an escape */
static void test_json_member_text(void **state)
{
	(void)state;
	static const struct {
		const char *doc, *want; /* want NULL: not found */
	} cases[] = {
	        {"{\"data\":{\"a\":1}}", "{\"a\":1}"},
	        {" {\n \"x\" : [1,{\"data\":2}] ,\t\"data\" :  \"a,}\\\"b\" \n}", "\"a,}\\\"b\""},
	        {"{\"data\":[1,[2,3]],\"z\":null}", "[1,[2,3]]"},
	        {"{\"dat\":1,\"datas\":2,\"data\":-1.5e3}", "-1.5e3"},
	        {"{\"x\":{\"data\":1}}", NULL},
	        {"{}", NULL},
	        {"{\"d\\u0061ta\":1}", NULL},
	        {"{\"a\\\"\":1,\"data\":2}", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *v = NULL;
		assert_int_equal(parse(cases[i].doc, &v), CF_OK);
		json_decref(v);
		struct cf_span t = {0};
		bool found = cf_json_member_text((const uint8_t *)cases[i].doc,
		                                 strlen(cases[i].doc), "data", &t);
		assert_int_equal(found, cases[i].want != NULL);
		if (found) {
			assert_int_equal(t.len, strlen(cases[i].want));
			assert_memory_equal(t.ptr, cases[i].want, t.len);
		}
	}
}

/* configuration ------------------------------------------------------------------------ */
static void test_config_file(void **state)
{
	(void)state;
	struct cf_config c;
	cf_config_defaults(&c);
	assert_int_equal(cf_config_load_string(&c,
	                                       "# comment\n[server]\nlisten = 127.0.0.1:9000\n"
	                                       "rate_per_s = 50\n[log]\nlevel = warn\n",
	                                       "t.conf"),
	                 CF_OK);
	assert_string_equal(c.listen, "127.0.0.1:9000");
	assert_int_equal(c.rate_per_s, 50);
	assert_int_equal(c.log_level, CF_LOG_WARN);
	/* store.pool: PostgreSQL's write connections, 0 (the default) to 64 */
	assert_int_equal(c.store_pool, 0);
	assert_int_equal(cf_config_load_string(&c, "[store]\npool = 6\n", "t.conf"), CF_OK);
	assert_int_equal(c.store_pool, 6);
	cf_config_defaults(&c);
	assert_int_equal(cf_config_load_string(&c, "[store]\npool = 65\n", "t.conf"), CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "store.pool"));

	cf_config_defaults(&c);
	assert_int_equal(cf_config_load_string(&c, "[server]\n\nlisen = x\n", "t.conf"),
	                 CF_E_CONFIG);
	assert_string_equal(cf_err_detail(), "t.conf:3: unknown key 'lisen' in [server]");
	assert_int_equal(cf_config_load_string(&c, "[nope]\nx = 1\n", "t.conf"), CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "t.conf:2: unknown section [nope]"));
	assert_int_equal(cf_config_load_string(&c, "[server]\nrate_per_s = 12x\n", "t.conf"),
	                 CF_E_CONFIG);
	assert_non_null(
	        strstr(cf_err_detail(), "t.conf:2: server.rate_per_s must be a whole number"));
	assert_int_equal(cf_config_load_string(&c, "[server]\nrate_per_s = 0\n", "t.conf"),
	                 CF_E_CONFIG);
	assert_int_equal(cf_config_load_string(&c, "[server]\nrate_per_s = -1\n", "t.conf"),
	                 CF_E_CONFIG);
	assert_int_equal(
	        cf_config_load_string(&c, "[server]\nrate_per_s = 99999999999\n", "t.conf"),
	        CF_E_CONFIG);
	assert_int_equal(
	        cf_config_load_string(&c, "[server]\nthreads = 1\nthreads = 2\n", "t.conf"),
	        CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "t.conf:3: server.threads is set twice"));
	assert_int_equal(cf_config_load_string(&c, "[server]\njust words\n", "t.conf"),
	                 CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "t.conf:2: syntax error"));
	assert_int_equal(cf_config_load_string(&c, "[log]\nlevel = loud\n", "t.conf"), CF_E_CONFIG);
	assert_int_equal(cf_config_load_file(&c, "/nonexistent/coffre.conf"), CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "/nonexistent/coffre.conf: cannot open"));
}

static void test_config_env_and_validate(void **state)
{
	(void)state;
	struct cf_config c;
	cf_config_defaults(&c);
	char *env[] = {"PATH=/bin", "COFFRE_SERVER_LISTEN=[::1]:8443", "COFFRE_LOG_LEVEL=debug",
	               "COFFRE_ADDR=https://x", NULL};
	assert_int_equal(cf_config_load_env(&c, env), CF_OK);
	assert_string_equal(c.listen, "[::1]:8443");
	assert_int_equal(c.log_level, CF_LOG_DEBUG);
	char *bad[] = {"COFFRE_SERVER_LISEN=x", NULL};
	assert_int_equal(cf_config_load_env(&c, bad), CF_E_CONFIG);
	assert_non_null(strstr(cf_err_detail(), "COFFRE_SERVER_LISEN"));
	char *badv[] = {"COFFRE_SERVER_THREADS=many", NULL};
	assert_int_equal(cf_config_load_env(&c, badv), CF_E_CONFIG);

	/* flags override */
	assert_int_equal(cf_config_set(&c, "server", "listen", "127.0.0.1:1"), CF_OK);
	assert_int_equal(cf_config_set(&c, "server", "nope", "1"), CF_E_CONFIG);

	c.dev = true;
	assert_int_equal(cf_config_validate(&c), CF_OK);
	c.dev = false;
	assert_int_equal(cf_config_validate(&c), CF_E_CONFIG); /* no certificate */
	c.dev = true;
	static const char *const bad_listen[] = {"8443",       "127.0.0.1", "::1:8443", "[::1]8443",
	                                         "host:99999", ":8443",     "h:p"};
	for (size_t i = 0; i < sizeof bad_listen / sizeof bad_listen[0]; i++) {
		(void)snprintf(c.listen, sizeof c.listen, "%s", bad_listen[i]);
		assert_int_equal(cf_config_validate(&c), CF_E_CONFIG);
	}
	char host[64];
	unsigned port = 0;
	assert_int_equal(cf_config_split_listen("[::1]:443", host, sizeof host, &port), CF_OK);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 443);
}

/* logging ----------------------------------------------------------------------------- */
static void test_log_one_json_line(void **state)
{
	(void)state;
	char path[] = "/tmp/cf_log_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	cf_log_set_level(CF_LOG_INFO);
	/* a hostile message cannot forge a second line or break the JSON */
	cf_log(CF_LOG_INFO, "rid1", "test", "a \"quoted\"\nsecond line\x01");
	cf_log(CF_LOG_DEBUG, NULL, "test", "filtered out");
	dup2(saved, STDERR_FILENO);
	close(saved);
	char buf[1024] = {0};
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	close(fd);
	unlink(path);
	assert_true(n > 0);
	char *nl = strchr(buf, '\n');
	assert_non_null(nl);
	assert_ptr_equal(nl, buf + n - 1); /* exactly one line */
	json_error_t je;
	json_t *o = json_loadb(buf, (size_t)n, 0, &je);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "msg")),
	                    "a \"quoted\"\nsecond line\x01");
	assert_string_equal(json_string_value(json_object_get(o, "request_id")), "rid1");
	assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
	json_decref(o);
}

/* clocks ------------------------------------------------------------------------------ */
static void test_time_format(void **state)
{
	(void)state;
	char b[40];
	cf_time_format_us(0, b, sizeof b);
	assert_string_equal(b, "1970-01-01T00:00:00.000000Z");
	cf_time_format_us(1700000000123456, b, sizeof b);
	assert_string_equal(b, "2023-11-14T22:13:20.123456Z");
	uint64_t a = cf_now_mono_ns(), z = cf_now_mono_ns();
	assert_true(z >= a);
	struct cf_clock_state st;
	cf_clock_state(&st); /* either answer is valid here; it must not crash */
	/* AL6: the audit log's remembered answer is the kernel's, asked again or not */
	bool first = cf_clock_synchronized();
	assert_int_equal(first, st.synchronized);
	assert_int_equal(cf_clock_synchronized(), first);
}

/* work pool ---------------------------------------------------------------------------- */
struct gate {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool open;
	int ran;
};

static void gated_job(void *arg)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->m);
	while (!g->open)
		pthread_cond_wait(&g->c, &g->m);
	g->ran++;
	pthread_mutex_unlock(&g->m);
}

static void test_pool_bounded_and_drains(void **state)
{
	(void)state;
	struct cf_pool *p = NULL;
	assert_int_equal(cf_pool_new("t", 0, 4, &p), CF_E_INVALID);
	assert_int_equal(cf_pool_new("t", 1, 4, &p), CF_OK);
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	/* one running (blocked at the gate) + four queued fill it; the sixth is refused */
	int accepted = 0;
	cf_err e = CF_OK;
	for (int i = 0; i < 10 && (e = cf_pool_submit(p, gated_job, &g)) == CF_OK; i++)
		accepted++;
	assert_int_equal(e, CF_E_BUSY);
	assert_in_range(accepted, 4, 5);
	pthread_mutex_lock(&g.m);
	g.open = true;
	pthread_cond_broadcast(&g.c);
	pthread_mutex_unlock(&g.m);
	cf_pool_free(&p); /* drains every accepted job */
	assert_null(p);
	assert_int_equal(g.ran, accepted);
}

/* files and hardening ------------------------------------------------------------------ */
static void test_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/cf_dir_XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(cf_dir_private(dir, false), CF_OK);
	chmod(dir, 0755);
	assert_int_equal(cf_dir_private(dir, false), CF_E_PERMISSION);
	assert_non_null(strstr(cf_err_detail(), "must be 0700"));
	chmod(dir, 0700);
	char sub[64], file[80];
	(void)snprintf(sub, sizeof sub, "%s/new", dir);
	assert_int_equal(cf_dir_private(sub, false), CF_E_IO);
	assert_int_equal(cf_dir_private(sub, true), CF_OK);
	(void)snprintf(file, sizeof file, "%s/f", sub);
	assert_int_equal(cf_file_write_atomic(file, "data", 4, 0600), CF_OK);
	struct stat st;
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	struct cf_buf b;
	assert_int_equal(cf_file_read(file, 100, &b), CF_OK);
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "data", 4);
	cf_buf_free(&b);
	assert_int_equal(cf_file_read(file, 3, &b), CF_E_TOO_LARGE);
	assert_int_equal(cf_dir_private(file, false), CF_E_PERMISSION);
	unlink(file);
	assert_int_equal(cf_file_read(file, 100, &b), CF_E_NOT_FOUND);
	rmdir(sub);
	rmdir(dir);
}

static void test_harden(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (cf_harden_process() != CF_OK)
			_exit(1);
		struct rlimit rl;
		getrlimit(RLIMIT_CORE, &rl);
		_exit(prctl(PR_GET_DUMPABLE) == 0 && rl.rlim_cur == 0 && rl.rlim_max == 0 ? 0 : 2);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	assert_int_equal(WEXITSTATUS(st), 0);
	char a[33], b[33];
	assert_int_equal(cf_random_hex(a, sizeof a, 16), CF_OK);
	assert_int_equal(cf_random_hex(b, sizeof b, 16), CF_OK);
	assert_int_equal(strlen(a), 32);
	assert_string_not_equal(a, b);
	assert_int_equal(cf_random_hex(a, 10, 16), CF_E_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_err_table),
	        cmocka_unit_test(test_span),
	        cmocka_unit_test(test_byte_helpers),
	        cmocka_unit_test(test_buf_bounded),
	        cmocka_unit_test(test_secmem),
	        cmocka_unit_test(test_secmem_scratch),
	        cmocka_unit_test(test_secmem_refuses_unlockable),
	        cmocka_unit_test(test_json_strict),
	        cmocka_unit_test(test_json_depth),
	        cmocka_unit_test(test_json_getters),
	        cmocka_unit_test(test_json_member_text),
	        cmocka_unit_test(test_config_file),
	        cmocka_unit_test(test_config_env_and_validate),
	        cmocka_unit_test(test_log_one_json_line),
	        cmocka_unit_test(test_time_format),
	        cmocka_unit_test(test_pool_bounded_and_drains),
	        cmocka_unit_test(test_files),
	        cmocka_unit_test(test_harden),
	};
	return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
