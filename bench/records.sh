#!/usr/bin/env bash
# make bench BENCH=records: coffre's records over HTTPS with keep-alive on 127.0.0.1
# (1 KiB records, every write sealed, audited and durable before its reply), read and
# written by wrk (Lua scripts for the token and bodies), on SQLite and on PostgreSQL;
# beside, in the same run, the machine's ceilings: nginx answering a fixed 1 KiB body
# over TLS 1.3 (the HTTP ceiling), plain PostgreSQL inserts of 1 KiB rows by pgbench at
# the same concurrency (no encryption, no audit), and pgcrypto (pgp_sym_encrypt inserts
# and pgp_sym_decrypt reads: what a team would build instead). Rounds are interleaved
# and the figures are medians. Read latency at a fixed rate (80% of the peak) comes from
# h2load --h1 --rps. The last line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONC=${BENCH_CONNECTIONS:-32}
N=${BENCH_RECORDS:-2000}
PY=/usr/bin/python3
[ -x build/release/coffred ] || { cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" >/dev/null; }
W=$(mktemp -d /tmp/coffre-bench.XXXXXX)
chmod 755 "$W"
eval "$(tests/pg.sh start)"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
	wait 2>/dev/null || true
	tests/pg.sh stop "$COFFRE_TEST_PG_DIR"
	rm -rf "$W"
}
trap cleanup EXIT
pgsql() { runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt "$@"; }
pgbench() { runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/pgbench" -h "$COFFRE_TEST_PG_HOST" -U postgres "$@"; }
declare -A R
put() { R[$1]="${R[$1]:-} ${2:-0}"; printf '  %-32s %s\n' "$1" "${2:-0}"; }
PAYLOAD=$(head -c 1024 /dev/zero | tr '\0' 'x')

# --- coffred: a server, its collection, an API client's token, N records -------------
start_coffred() { # NAME [env...]: sets URL_<NAME>, TOKEN_<NAME>; ids in $W/NAME/ids
	local name=$1
	shift
	mkdir -p "$W/$name"
	env "$@" COFFRE_SERVER_MAX_BODY=8388608 COFFRE_SERVER_RATE_PER_S=1000000 \
		COFFRE_SERVER_RATE_BURST=1000000 COFFRE_SERVER_PER_IP_CONNECTIONS=1024 \
		build/release/coffred --dev --data "$W/$name/data" --listen 127.0.0.1:0 --log-level warn \
		>"$W/$name/out" 2>"$W/$name/err" &
	PIDS+=($!)
	for _ in $(seq 1 100); do grep -q 'password:' "$W/$name/out" 2>/dev/null && break; sleep 0.1; done
	grep -q 'password:' "$W/$name/out" || { echo "bench: coffred ($name) did not start: $(cat "$W/$name/err")" >&2; exit 1; }
	local url email pw
	url=$(sed -n 's/^ *URL: *//p' "$W/$name/out")
	email=$(sed -n 's/^ *email: *//p' "$W/$name/out")
	pw=$(sed -n 's/^ *password: *//p' "$W/$name/out")
	"$PY" - "$url" "$W/$name/data/tls/ca.pem" "$email" "$pw" "$N" "$W/$name" "$PAYLOAD" <<'PY'
import http.client, json, re, ssl, sys, urllib.parse
url, ca, email, pw, n, out, payload = sys.argv[1:8]
u = urllib.parse.urlparse(url)
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
def call(m, p, body=None, h=None):
    h = dict(h or {})
    if body is not None:
        h["Content-Type"] = "application/json"
    c.request(m, p, json.dumps(body) if body is not None else None, h)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null"), r.getheader("Set-Cookie")
st, js, sc = call("POST", "/v1/t/dev/auth/login", {"email": email, "password": pw})
S = {"Cookie": re.match(r"([^;]*)", sc).group(1), "X-CSRF-Token": js["csrf_token"]}
st, js, _ = call("POST", "/v1/t/dev/collections", {"name": "bench", "fields": {
    "payload": {"type": "string", "max": 2048}, "plan": {"type": "string", "classification": "internal", "filter": True}}}, S)
assert st == 201, js
st, js, _ = call("POST", "/v1/t/dev/clients", {"name": "bench", "roles": ["agent"]}, S)
st, js, _ = call("POST", "/v1/t/dev/auth/token", {"client_id": js["client_id"], "client_secret": js["client_secret"]})
tok = js["access_token"]
ids = []
for i in range(0, int(n), 1000):
    st, js, _ = call("POST", "/v1/t/dev/collections/bench/batch",
                     {"records": [{"data": {"payload": payload, "plan": "pro"}}] * min(1000, int(n) - i)},
                     {"Authorization": "Bearer " + tok})
    assert st == 201, (st, js)
    ids += js["ids"]
open(out + "/ids", "w").write("\n".join(ids) + "\n")
open(out + "/token", "w").write(tok)
PY
	printf -v "URL_$name" '%s' "$url"
	printf -v "TOKEN_$name" '%s' "$(cat "$W/$name/token")"
}

cat >"$W/reads.lua" <<'LUA'
local ids = {}
local token = os.getenv("BENCH_TOKEN")
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
	local id = ids[math.random(#ids)]
	return wrk.format("GET", "/v1/t/dev/collections/bench/records/" .. id,
		{["Authorization"] = "Bearer " .. token})
end
LUA
cat >"$W/writes.lua" <<LUA
local token = os.getenv("BENCH_TOKEN")
local body = '{"data": {"payload": "$PAYLOAD", "plan": "pro"}}'
request = function()
	return wrk.format("POST", "/v1/t/dev/collections/bench/records",
		{["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
LUA
# requests/s, then p50 and p99 in ms, from wrk --latency
wrk_run() { # URL SCRIPT NAME
	local out
	out=$(BENCH_TOKEN=$(cat "$W/$3/token") BENCH_IDS="$W/$3/ids" wrk -t2 -c"$CONC" -d"${SECS}s" --latency -s "$2" "$1" 2>&1)
	if grep -q "Non-2xx" <<<"$out"; then echo "bench: errors from $1 ($2): $(grep Non-2xx <<<"$out")" >&2; fi
	"$PY" - "$out" <<'PY'
import re, sys
t = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", t).group(1))
def ms(p):
    m = re.search(r"\s%s%%\s+([0-9.]+)(us|ms|s)\b" % p, t)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
print(round(rps, 1), round(ms("50"), 3), round(ms("99"), 3))
PY
}

# --- nginx: a fixed 1 KiB body over TLS 1.3, the same certificate ---------------------
start_nginx() {
	local port
	port=$("$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	mkdir -p "$W/nginx"
	cat >"$W/nginx.conf" <<NGX
worker_processes $(nproc);
pid $W/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
	uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
	server {
		listen 127.0.0.1:$port ssl;
		ssl_certificate $W/sqlite/data/tls/server.pem;
		ssl_certificate_key $W/sqlite/data/tls/server.key;
		ssl_protocols TLSv1.3;
		keepalive_requests 1000000;
		location / { default_type application/json; return 200 '$PAYLOAD'; }
	}
}
NGX
	nginx -c "$W/nginx.conf" -e "$W/nginx/error.log"
	NGINX_URL=https://127.0.0.1:$port
	echo "x" >"$W/nginx/ids"
	echo "x" >"$W/nginx/token"
}

# --- PostgreSQL alone: plain 1 KiB inserts, and pgcrypto -------------------------------
pgsql -c "CREATE DATABASE plain" >/dev/null
pgsql -d plain -c "CREATE EXTENSION pgcrypto" \
	-c "CREATE TABLE plain (id bigserial PRIMARY KEY, payload text NOT NULL)" \
	-c "CREATE TABLE enc (id bigserial PRIMARY KEY, payload bytea NOT NULL)" \
	-c "INSERT INTO enc (payload) SELECT pgp_sym_encrypt(repeat('x', 1024), 'bench-key') FROM generate_series(1, $N)" >/dev/null
echo "INSERT INTO plain (payload) VALUES (repeat('x', 1024));" >"$W/plain.sql"
echo "INSERT INTO enc (payload) VALUES (pgp_sym_encrypt(repeat('x', 1024), 'bench-key'));" >"$W/enc_w.sql"
printf '\\set id random(1, %d)\nSELECT pgp_sym_decrypt(payload, '"'"'bench-key'"'"') FROM enc WHERE id = :id;\n' "$N" >"$W/enc_r.sql"
chmod 644 "$W"/*.sql
pgb() { pgbench -n -c "$CONC" -j 2 -T "$SECS" -f "$1" plain 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1; }

echo "records benchmark: ${SECS}s per figure, $ROUNDS rounds, $CONC connections, $N records of 1 KiB, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
start_coffred sqlite
pgsql -c "CREATE DATABASE coffre_bench OWNER coffre_owner" >/dev/null
start_coffred postgres COFFRE_STORE_URL="postgresql://coffre_app@/coffre_bench?host=$COFFRE_TEST_PG_HOST" \
	COFFRE_STORE_MIGRATE_URL="postgresql://coffre_owner@/coffre_bench?host=$COFFRE_TEST_PG_HOST"
start_nginx
for round in $(seq 1 "$ROUNDS"); do
	echo "-- round $round"
	read -r rps p50 p99 <<<"$(wrk_run "$NGINX_URL/" "$W/reads.lua" nginx)"
	put nginx_rps "$rps"
	read -r rps p50 p99 <<<"$(wrk_run "$URL_sqlite" "$W/reads.lua" sqlite)"
	put reads_per_s_sqlite "$rps"
	put reads_p50_ms_sqlite "$p50"
	put reads_p99_ms_sqlite "$p99"
	read -r rps p50 p99 <<<"$(wrk_run "$URL_sqlite" "$W/writes.lua" sqlite)"
	put writes_per_s_sqlite "$rps"
	put writes_p50_ms_sqlite "$p50"
	put writes_p99_ms_sqlite "$p99"
	put pg_insert_tps "$(pgb "$W/plain.sql")"
	put pgcrypto_insert_tps "$(pgb "$W/enc_w.sql")"
	put pgcrypto_read_tps "$(pgb "$W/enc_r.sql")"
	read -r rps p50 p99 <<<"$(wrk_run "$URL_postgres" "$W/reads.lua" postgres)"
	put reads_per_s_postgres "$rps"
	read -r rps p50 p99 <<<"$(wrk_run "$URL_postgres" "$W/writes.lua" postgres)"
	put writes_per_s_postgres "$rps"
done
# Latency at a fixed rate: 80% of the peak of reads measured right before it (this
# machine's speed drifts within a run: 80% of the rounds' median can be past the peak
# of the moment, and measure a queue), for SECS seconds (h2load logs each request's
# time; p99 from the log).
read -r peak _ _ <<<"$(wrk_run "$URL_sqlite" "$W/reads.lua" sqlite)"
put reads_peak_before_latency "$peak"
rate=$("$PY" -c "print(max(1, int($peak * 0.8 / $CONC)))")
mapfile -t some < <(shuf -n 50 "$W/sqlite/ids")
uris=()
for id in "${some[@]}"; do uris+=("$URL_sqlite/v1/t/dev/collections/bench/records/$id"); done
h2load --h1 -c "$CONC" -t 2 --rps "$rate" -D "$SECS" -H "Authorization: Bearer $TOKEN_sqlite" \
	--log-file "$W/h2load.log" "${uris[@]}" >"$W/h2load.out" 2>&1 || true
p99_80=$("$PY" - "$W/h2load.log" <<'PY'
import statistics, sys
t = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip() and l.split()[1] == "200")
print(round(t[int(len(t) * 0.99) - 1] / 1000, 3) if t else 0)
PY
)
put p99_ms_reads_at_80pct "$p99_80"
"$PY" - "$(declare -p R)" <<'PY'
import json, re, statistics, sys
r = {k: statistics.median(float(x) for x in v.split())
     for k, v in re.findall(r'\[([a-z_0-9]+)\]="([0-9. ]+)"', sys.argv[1])}
def ratio(a, b):
    return round(r[a] / r[b], 3) if r.get(b) else None
r["ratio_reads_vs_nginx"] = ratio("reads_per_s_sqlite", "nginx_rps")
r["ratio_writes_vs_nginx"] = ratio("writes_per_s_sqlite", "nginx_rps")
r["ratio_writes_vs_pg_insert"] = ratio("writes_per_s_sqlite", "pg_insert_tps")
r["ratio_writes_vs_pgcrypto"] = ratio("writes_per_s_sqlite", "pgcrypto_insert_tps")
r["ratio_reads_vs_pgcrypto"] = ratio("reads_per_s_sqlite", "pgcrypto_read_tps")
r["ratio_postgres_reads_vs_pgbench"] = ratio("reads_per_s_postgres", "pg_insert_tps")
r["ratio_postgres_writes_vs_pgbench"] = ratio("writes_per_s_postgres", "pg_insert_tps")
print(json.dumps(r))
PY
