#!/usr/bin/env bash
# The HTTP surface: health endpoints, JSON errors with stable codes (DESIGN §8), security
# headers on every response (TR3), strict paths, body limits, and hostile clients
# (malformed requests, huge headers, slow clients) that must not stop others being served.
source "$(dirname "$0")/lib.sh"
start_server --log-level warn || exit 1
COFFRE_SERVER_CONNECTION_TIMEOUT=3 COFFRE_SERVER_MAX_BODY=4096 start_server --log-level warn || exit 1

body=$(ccurl "$URL/healthz")
[ "$(echo "$body" | jget status)" = ok ] && ok "/healthz answers {status: ok}" || fail "/healthz answers {status: ok}" "$body"

code=$(ccurl -o "$SRV_DIR/r" -w '%{http_code}' "$URL/readyz")
body=$(cat "$SRV_DIR/r")
if [ "$code" = 200 ] && [ "$(echo "$body" | jget status)" = ready ] &&
	echo "$body" | jget clock.synchronized | grep -qE '^(true|false)$'; then
	ok "/readyz is 200 ready and reports clock synchronisation as a boolean (AL6)"
else
	fail "/readyz is 200 ready and reports clock synchronisation as a boolean (AL6)" "$code $body"
fi
# An unsynchronised clock is a warning, never "not ready" (this host's clock is checked
# by the kernel's own word: adjtimex).
if [ "$(echo "$body" | jget clock.synchronized)" = false ]; then
	echo "$body" | jget warnings | grep -q clock_unsynchronized &&
		ok "an unsynchronised clock is listed in warnings while ready" ||
		fail "an unsynchronised clock is listed in warnings while ready" "$body"
else
	echo "$body" | jget warnings | grep -q '\[\]' && ok "a synchronised clock gives no warning" ||
		fail "a synchronised clock gives no warning" "$body"
fi

hdrs=$(ccurl -D - -o /dev/null "$URL/nope")
missing=
for h in 'strict-transport-security: max-age=63072000' 'cache-control: no-store' \
	'x-content-type-options: nosniff' "content-security-policy: default-src 'none'" \
	'referrer-policy: no-referrer' 'x-request-id: [0-9a-f]{32}' 'content-type: application/json'; do
	echo "$hdrs" | tr -d '\r' | grep -qiE "^$h" || missing+="$h; "
done
[ -z "$missing" ] && ok "security headers on an error response too (HSTS >= 1 year, no-store, nosniff, CSP, Referrer-Policy, request id)" ||
	fail "security headers on an error response too" "missing: $missing"

ids=$(for i in 1 2 3; do ccurl -D - -o /dev/null "$URL/healthz" | tr -d '\r' | grep -i '^x-request-id' ; done | sort -u | wc -l)
[ "$ids" = 3 ] && ok "every response has its own request id" || fail "every response has its own request id" "$ids distinct"

# error JSON: status, code, message, request id
expect_error() { # name, expected status, expected code, curl args...
	local name=$1 st=$2 want=$3
	shift 3
	local code body
	code=$(ccurl -o "$SRV_DIR/e" -w '%{http_code}' "$@")
	body=$(cat "$SRV_DIR/e")
	if [ "$code" = "$st" ] && [ "$(echo "$body" | jget error.code 2>/dev/null)" = "$want" ] &&
		[ -n "$(echo "$body" | jget error.message 2>/dev/null)" ] &&
		echo "$body" | jget error.request_id 2>/dev/null | grep -qE '^[0-9a-f]{32}$'; then
		ok "$name: $st $want"
	else
		fail "$name: $st $want" "got $code $body"
	fi
}
expect_error "unknown route" 404 not_found "$URL/v1/nothing"
expect_error "wrong method" 405 method_not_allowed -X DELETE "$URL/healthz"
ccurl -D - -o /dev/null -X POST "$URL/readyz" | tr -d '\r' | grep -qi '^allow: GET$' && ok "405 names the allowed methods in Allow" || fail "405 names the allowed methods in Allow"
expect_error "escaped slash in a path" 400 invalid_argument --path-as-is "$URL/a/%2f/b"
expect_error "dot segment" 400 invalid_argument --path-as-is "$URL/x/../healthz"
expect_error "escaped NUL" 400 invalid_argument "$URL/a%00b"
expect_error "a query parameter the call does not take" 400 invalid_argument "$URL/healthz?verbose=1"
expect_error "a query parameter the call does not take, beside one it takes" 400 invalid_argument "$URL/v1/audit/proof/inclusion?index=0&size=1&sise=2"
expect_error "a query parameter given twice" 400 invalid_argument "$URL/v1/audit/proof/inclusion?index=0&size=1&index=1"
code=$(ccurl -o /dev/null -w '%{http_code}' "$URL/v1/audit/proof/inclusion?index=0&size=99999999")
[ "$code" != 400 ] && ok "the parameters a call takes still reach it ($code)" || fail "the parameters a call takes still reach it" "$code"
expect_error "a body where none is taken" 400 invalid_argument -H 'Content-Type: application/json' --data '{}' -X GET "$URL/healthz"
expect_error "a body declared in another charset than UTF-8" 415 unsupported_media_type -H 'Content-Type: application/json; charset=latin1' --data '{}' "$URL/v1/t/dev/auth/login"
expect_error "a body of another type" 415 unsupported_media_type -H 'Content-Type: text/plain' --data '{}' "$URL/v1/t/dev/auth/login"
code=$(ccurl -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json; charset="UTF-8"' --data '{}' "$URL/v1/t/dev/auth/login")
[ "$code" = 422 ] && ok "a body declared UTF-8 is read ($code: its fields are missing)" || fail "a body declared UTF-8 is read" "$code"
expect_error "a body over server.max_body" 413 too_large -H 'Content-Type: application/json' --data-binary @<(head -c 5000 /dev/zero | tr '\0' a) "$URL/healthz"
code=$(ccurl -o /dev/null -w '%{http_code}' -I "$URL/healthz")
[ "$code" = 200 ] && ok "HEAD is served like GET" || fail "HEAD is served like GET" "$code"
# A reply's head record waits for its body's, to leave with it in one send (tls.c's
# cf_tls_push); one with no body must not wait for one, which would never come. Ten of
# each kind on one kept-alive connection: under a second.
for kind in HEAD OPTIONS GET; do
	case $kind in
	HEAD) args=(-I) path=/healthz ;;
	OPTIONS) args=(-X OPTIONS -H 'Origin: https://app.example' -H 'Access-Control-Request-Method: GET') path=/v1/t/dev/collections ;;
	GET) args=() path=/healthz ;;
	esac
	urls=()
	for _ in $(seq 1 10); do urls+=(-o /dev/null "$URL$path"); done
	t0=$(date +%s%N)
	codes=$(ccurl -w '%{http_code} %{num_connects}\n' "${args[@]}" "${urls[@]}")
	ms=$((($(date +%s%N) - t0) / 1000000))
	n=$(echo "$codes" | grep -cE '^(200|204) ')
	conns=$(echo "$codes" | awk '{ s += $2 } END { print s }')
	if [ "$n" = 10 ] && [ "$conns" = 1 ] && [ "$ms" -lt 1000 ]; then
		ok "ten ${kind}s on one connection come back without a wait (${ms} ms)"
	else
		fail "ten ${kind}s on one connection come back without a wait" "${ms} ms, ${conns} connections: $codes"
	fi
done

# Hostile clients. raw_tls sends bytes over TLS and prints what comes back.
raw_tls() { timeout 15 openssl s_client -connect "127.0.0.1:$PORT" -quiet -CAfile "$CA" 2>/dev/null; }
out=$( (printf 'GARBAGE\r\n\r\n'; sleep 1) | raw_tls | head -1)
case "$out" in "HTTP/1.1 400"* | "") ok "a malformed request line gets 400 or a closed connection ($out)" ;; *) fail "a malformed request line gets 400 or a closed connection" "$out" ;; esac
out=$( (printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n' "$(head -c 40000 /dev/zero | tr '\0' a)"; sleep 1) | raw_tls | head -1)
case "$out" in "HTTP/1.1 431"* | "HTTP/1.1 413"* | "HTTP/1.1 400"* | "") ok "a 40 KB header gets 431 or a closed connection ($out)" ;; *) fail "a 40 KB header gets 431 or a closed connection" "$out" ;; esac
out=$( (printf 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'; sleep 1) | raw_tls | head -1)
case "$out" in "HTTP/1.1 4"* | "") ok "Content-Length with Transfer-Encoding (smuggling) is refused ($out)" ;; *) fail "Content-Length with Transfer-Encoding (smuggling) is refused" "$out" ;; esac
out=$( (printf 'POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'; for i in $(seq 1 10); do printf '400\r\n%s\r\n' "$(head -c 1024 /dev/zero | tr '\0' a)"; done; printf '0\r\n\r\n'; sleep 1) | raw_tls | head -1)
case "$out" in "HTTP/1.1 4"* | "") ok "a chunked body past the limit gets 4xx or a closed connection ($out)" ;; *) fail "a chunked body past the limit gets 4xx or a closed connection" "$out" ;; esac

# A slow client (slowloris) is cut off after server.connection_timeout (3 s here), and
# others are served meanwhile.
start=$(date +%s)
rm -f "$SRV_DIR/slow_end"
( printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n'; sleep 20 ) | { raw_tls >/dev/null; date +%s >"$SRV_DIR/slow_end"; } &
sleep 0.5
code=$(ccurl -o /dev/null -w '%{http_code}' "$URL/healthz")
[ "$code" = 200 ] && ok "others are served while a slow client holds a connection" || fail "others are served while a slow client holds a connection" "$code"
for i in $(seq 1 100); do [ -s "$SRV_DIR/slow_end" ] && break; sleep 0.1; done
if [ -s "$SRV_DIR/slow_end" ]; then
	took=$(( $(cat "$SRV_DIR/slow_end") - start ))
	[ "$took" -ge 2 ] && [ "$took" -le 6 ] && ok "the slow client is disconnected by the server after the 3 s timeout (${took}s)" ||
		fail "the slow client is disconnected by the server after the 3 s timeout" "${took}s"
else
	fail "the slow client is disconnected by the server after the 3 s timeout" "still connected after 10 s"
fi

# docs/openapi.yaml describes every route the server has, and what it answers has the
# fields the description requires (a small checker: required keys and enums, recursively).
routes=$(grep -oE '^\s*\{"[A-Z]+", "/[^"]*"' "$ROOT/src/http/routes.c" | grep -oE '"/[^"]*"' | tr -d '"' | sort -u)
documented=$(grep -oE '^  /[^:]*:' "$ROOT/docs/openapi.yaml" | tr -d ' :' | sort -u)
[ -n "$routes" ] && [ "$routes" = "$documented" ] && ok "docs/openapi.yaml describes exactly the routes the server has" ||
	fail "docs/openapi.yaml describes exactly the routes the server has" "server: $routes / documented: $documented"
# ... and each route takes exactly the query parameters documented for it (any other
# gets 400 before its handler: routes.c, cf_route.query)
out=$(/usr/bin/python3 - "$ROOT/docs/openapi.yaml" "$ROOT/src/http/routes.c" "$ROOT/tests/integration" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[3])
from flowlib import openapi_checker
checker = openapi_checker(sys.argv[1])
src = open(sys.argv[2]).read()
n, bad = 0, []
for m in re.finditer(r'\{"(GET|POST|PUT|PATCH|DELETE)",\s*"([^"]+)",\s*\w+,\s*[^,]+,\s*\w+,\s*"[^"]+",\s*(NULL|"[^"]*")\}', src):
    takes = set() if m.group(3) == "NULL" else set(m.group(3).strip('"').split())
    op = checker.spec["paths"].get(m.group(2), {}).get(m.group(1).lower(), {})
    doc = {checker.resolve(x)["name"] for x in op.get("parameters", []) if checker.resolve(x).get("in") == "query"}
    n += 1
    if takes != doc:
        bad.append(f"{m.group(1)} {m.group(2)}: routes.c {sorted(takes)}, openapi {sorted(doc)}")
print(f"{n} routes" if not bad and n > 60 else "; ".join(bad) or f"only {n} routes read")
sys.exit(1 if bad or n <= 60 else 0)
PY
)
[ $? = 0 ] && ok "each route takes the query parameters docs/openapi.yaml gives it ($out)" || fail "each route takes the query parameters docs/openapi.yaml gives it" "$out"
out=$(/usr/bin/python3 - "$ROOT/docs/openapi.yaml" "$URL" "$CA" "$ROOT/tests/integration" <<'PY'
import json, ssl, sys, urllib.request, urllib.error
sys.path.insert(0, sys.argv[4])
from flowlib import openapi_checker
checker = openapi_checker(sys.argv[1])
spec, resolve = checker.spec, checker.resolve
ctx = ssl.create_default_context(cafile=sys.argv[3])
def check(schema, v, path):
    bad = checker(schema, v, path)
    if bad:
        raise SystemExit(bad)
n = 0
for p, ops in spec["paths"].items():
    for method, op in ops.items():
        try:
            url = sys.argv[2] + p.replace("{tenant}", "dev").replace("{id}", "u0000000000000000").replace("{rid}", "r0000000000000000")
            r = urllib.request.urlopen(urllib.request.Request(url, method=method.upper()), context=ctx)
            status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        resp = resolve(op["responses"].get(str(status)) or {})
        if not resp:
            raise SystemExit(f"{method} {p}: status {status} is not described")
        check(resp["content"]["application/json"]["schema"], json.loads(body), f"{method} {p}")
        n += 1
# an error body, against the Error schema
try:
    urllib.request.urlopen(sys.argv[2] + "/nope", context=ctx)
except urllib.error.HTTPError as e:
    check(spec["components"]["schemas"]["Error"], json.loads(e.read()), "404")
print(f"{n} operations")
PY
)
[ $? = 0 ] && ok "live answers match docs/openapi.yaml ($out, and an error body)" || fail "live answers match docs/openapi.yaml" "$out"

code=$(ccurl -o /dev/null -w '%{http_code}' "$URL/healthz")
[ "$code" = 200 ] && kill -0 "$SRV_PID" && ok "the server still serves after all of the above" || fail "the server still serves after all of the above" "$code"

done_testing
