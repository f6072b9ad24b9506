/* coffre — application/x-www-form-urlencoded bodies, the form an OAuth 2.0 client sends
 * its token request in (RFC 6749 §4.4.2, appendix B): name=value pairs joined by '&',
 * each name and value with '+' for a space and %XX for a byte (libmicrohttpd decodes
 * those). Only the names a call takes are kept: RFC 6749 §3.2 has a server ignore the
 * others (clients send scope, audience...). A name given twice (§3.2: "MUST NOT be
 * included more than once"), an empty name, a '%' that is not an escape, a NUL or text
 * that is not UTF-8 is refused.
 * The copy it decodes in holds a client's secret: wiped before it is freed. */
#include <ctype.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

size_t cf_form_unescape(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '+')
			*p = ' ';
	return MHD_http_unescape(s);
}

static bool form_known(const char *const *known, const char *name)
{
	for (size_t i = 0; known[i]; i++)
		if (strcmp(known[i], name) == 0)
			return true;
	return false;
}

/* Whether every '%' of s starts an escape, two hex digits (libmicrohttpd would keep a
 * bad one as it is, and "%ZZ" would reach the call as three characters). */
static bool escapes_ok(const char *s)
{
	for (const char *p = strchr(s, '%'); p; p = strchr(p + 1, '%'))
		if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
			return false;
	return true;
}

static cf_err form_pairs(char *text, const char *const *known, json_t *o)
{
	CF_ENSURE(escapes_ok(text),
	          cf_err_fail(CF_E_INVALID, "the form has a '%%' that is not an escape (%%XX)"));
	char *save = NULL;
	for (char *pair = strtok_r(text, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		char *value = eq ? eq + 1 : pair + strlen(pair);
		if (eq)
			*eq = '\0';
		size_t nl = cf_form_unescape(pair), vl = cf_form_unescape(value);
		CF_ENSURE(nl > 0, cf_err_fail(CF_E_INVALID, "the form has a value without a name"));
		CF_ENSURE(strlen(pair) == nl && strlen(value) == vl,
		          cf_err_fail(CF_E_INVALID, "the form holds a NUL byte"));
		if (!form_known(known, pair))
			continue;
		CF_ENSURE(!json_object_get(o, pair),
		          cf_err_at(CF_E_DUPLICATE_KEY, pair, "keys", "%s is given twice", pair));
		json_t *v = json_stringn(value, vl);
		CF_ENSURE(v, cf_err_fail(CF_E_INVALID, "the form is not UTF-8 text"));
		CF_ENSURE(json_object_set_new(o, pair, v) == 0, CF_E_NOMEM);
	}
	return CF_OK;
}

cf_err cf_form_parse(const uint8_t *p, size_t n, const char *const *known, size_t max, json_t **out)
{
	*out = NULL;
	CF_ENSURE(n <= max, CF_E_TOO_LARGE);
	if (n == 0) { /* an empty form (p may be NULL: no body) */
		*out = json_object();
		return *out ? CF_OK : CF_E_NOMEM;
	}
	CF_ENSURE(!memchr(p, '\0', n), cf_err_fail(CF_E_INVALID, "the form holds a NUL byte"));
	char *text = malloc(n + 1);
	json_t *o = json_object();
	cf_err err = text && o ? CF_OK : CF_E_NOMEM;
	if (err == CF_OK) {
		memcpy(text, p, n);
		text[n] = '\0';
		err = form_pairs(text, known, o);
	}
	if (text) {
		cf_wipe(text, n + 1);
		free(text);
	}
	if (err != CF_OK) {
		json_decref(o);
		return err;
	}
	*out = o;
	return CF_OK;
}
