/* coffre — the router: a strict path check, then a walk of the route table.
 * The table is small and read-only, so a linear match is both simple and fast. */
#include <stdio.h>
#include <string.h>

#include "http/http.h"

static bool is_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_val(uint8_t c)
{
	return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* RFC 3986 pchar, less '%' (checked apart): unreserved / sub-delims / ':' / '@'. */
static bool is_pchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != 0 && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

static cf_err check_path(struct cf_span path)
{
	if (path.len > CF_HTTP_PATH_MAX)
		return cf_err_fail(CF_E_URI_TOO_LONG, "the path is longer than %u bytes",
		                   CF_HTTP_PATH_MAX);
	if (path.len == 0 || path.ptr[0] != '/')
		return cf_err_fail(CF_E_INVALID, "the path must start with /");
	size_t seg_start = 1;
	for (size_t i = 1; i <= path.len; i++) {
		if (i == path.len || path.ptr[i] == '/') {
			size_t seg_len = i - seg_start;
			const uint8_t *seg = path.ptr + seg_start;
			/* A trailing slash on the root is the root itself. */
			if (seg_len == 0 && !(i == path.len && path.len == 1))
				return cf_err_fail(CF_E_INVALID, "the path has an empty segment");
			if ((seg_len == 1 && seg[0] == '.') ||
			    (seg_len == 2 && seg[0] == '.' && seg[1] == '.'))
				return cf_err_fail(CF_E_INVALID, "the path has a dot segment");
			seg_start = i + 1;
			continue;
		}
		uint8_t c = path.ptr[i];
		if (c == '%') {
			if (i + 2 >= path.len)
				return cf_err_fail(CF_E_INVALID,
				                   "the path has a truncated %% escape");
			if (!is_hex(path.ptr[i + 1]) || !is_hex(path.ptr[i + 2]))
				return cf_err_fail(CF_E_INVALID,
				                   "the path has an invalid %% escape");
			unsigned v = hex_val(path.ptr[i + 1]) * 16 + hex_val(path.ptr[i + 2]);
			if (v < 0x20 || v == 0x7f || v == '/')
				return cf_err_fail(CF_E_INVALID,
				                   "the path escapes a forbidden character");
			i += 2;
			continue;
		}
		if (!is_pchar(c))
			return cf_err_fail(CF_E_INVALID,
			                   "the path holds a character that must be escaped");
	}
	return CF_OK;
}

/* Next segment of s starting at *pos (which points after a '/'); false at the end. */
static bool next_segment(struct cf_span s, size_t *pos, struct cf_span *seg)
{
	if (*pos > s.len)
		return false;
	size_t start = *pos, i = start;
	while (i < s.len && s.ptr[i] != '/')
		i++;
	*seg = (struct cf_span){s.ptr + start, i - start};
	*pos = i + 1;
	return true;
}

/* Matches path against one pattern, filling the parameters. */
static bool match_pattern(const char *pattern, struct cf_span path, struct cf_route_match *m)
{
	struct cf_span pat = cf_span_str(pattern);
	size_t pp = 1, ip = 1;
	struct cf_span ps, is;
	unsigned np = 0;
	if (path.len == 1 || pat.len == 1)
		return path.len == 1 && pat.len == 1;
	for (;;) {
		bool more_p = next_segment(pat, &pp, &ps);
		bool more_i = next_segment(path, &ip, &is);
		if (!more_p || !more_i)
			return more_p == more_i && (m->nparams = np, true);
		if (ps.len >= 2 && ps.ptr[0] == '{' && ps.ptr[ps.len - 1] == '}') {
			if (is.len == 0 || np >= CF_HTTP_ROUTE_PARAMS_MAX)
				return false;
			m->names[np] = (struct cf_span){ps.ptr + 1, ps.len - 2};
			m->values[np] = is;
			np++;
		} else if (!cf_span_eq(ps, is)) {
			return false;
		}
	}
}

cf_err cf_router_match(const struct cf_route *routes, size_t nroutes, const char *method,
                       struct cf_span path, struct cf_route_match *m)
{
	CF_TRY(check_path(path));
	*m = (struct cf_route_match){0};
	bool path_known = false;
	size_t alen = 0;
	/* One scratch match for the walk: clearing a whole one per route cost more than
	 * the matching (match_pattern sets what it fills). The routes of the request's
	 * method first; the others only to tell 405 from 404. */
	struct cf_route_match tmp = {0};
	for (size_t i = 0; i < nroutes; i++) {
		tmp.nparams = 0;
		if (strcmp(routes[i].method, method) != 0 ||
		    !match_pattern(routes[i].pattern, path, &tmp))
			continue;
		*m = tmp;
		m->route = &routes[i];
		return CF_OK;
	}
	for (size_t i = 0; i < nroutes; i++) {
		tmp.nparams = 0;
		if (!match_pattern(routes[i].pattern, path, &tmp))
			continue;
		path_known = true;
		int w = snprintf(m->allow + alen, sizeof m->allow - alen, "%s%s", alen ? ", " : "",
		                 routes[i].method);
		if (w > 0 && (size_t)w < sizeof m->allow - alen)
			alen += (size_t)w;
	}
	if (path_known)
		return cf_err_fail(CF_E_METHOD, "this path takes %s", m->allow);
	return cf_err_fail(CF_E_NOT_FOUND, "no route for this path");
}
