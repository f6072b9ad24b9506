#!/usr/bin/env bash
# MD4 and the execution model (DESIGN §2): per-address request rate (429 + Retry-After),
# per-address connection limit, and a few hundred concurrent requests through the
# suspend/resume path (/readyz runs on the work pool).
source "$(dirname "$0")/lib.sh"

# --- rate limit: 5 requests per second, burst 5
COFFRE_SERVER_RATE_PER_S=5 COFFRE_SERVER_RATE_BURST=5 start_server --log-level warn || exit 1
args=()
for i in $(seq 1 8); do args+=(-o /dev/null "$URL/healthz"); done
codes=$(curl -sS --cacert "$CA" -w '%{http_code}\n' "${args[@]}")
n200=$(echo "$codes" | grep -c '^200$')
n429=$(echo "$codes" | grep -c '^429$')
[ "$n200" -ge 5 ] && [ "$n200" -le 6 ] && [ "$n429" -ge 2 ] && ok "a burst of 8 over a 5/s limit: first 5 served, then 429 ($n200 x 200, $n429 x 429)" ||
	fail "a burst of 8 over a 5/s limit: first 5 served, then 429" "$codes"
hdr=$(ccurl -D - -o "$SRV_DIR/b" "$URL/healthz" | tr -d '\r')
if echo "$hdr" | grep -q '^HTTP/1.1 429' && echo "$hdr" | grep -qiE '^retry-after: [1-9][0-9]*$' &&
	[ "$(jget error.code <"$SRV_DIR/b")" = rate_limited ]; then
	ok "429 carries Retry-After and the JSON code rate_limited"
else
	fail "429 carries Retry-After and the JSON code rate_limited" "$hdr $(cat "$SRV_DIR/b")"
fi
sleep 2
code=$(ccurl -o /dev/null -w '%{http_code}' "$URL/healthz")
[ "$code" = 200 ] && ok "after the wait the address is served again" || fail "after the wait the address is served again" "$code"

# --- per-address connection limit: 4
COFFRE_SERVER_PER_IP_CONNECTIONS=4 start_server --log-level warn || exit 1
out=$(python3 - "$PORT" "$CA" <<'PY'
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")
def get(s):
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    return s.recv(4096).split(b"\r\n")[0].decode()
held = [conn() for _ in range(4)]
print("held4", all(get(s).startswith("HTTP/1.1 200") for s in held))
try:
    fifth = conn()
    r = get(fifth)
    print("fifth", "served" if r.startswith("HTTP/1.1 200") else "refused")
except Exception:
    print("fifth refused")
held.pop().close()
import time; time.sleep(0.3)
print("after", get(conn()))
PY
)
echo "$out" | grep -q 'held4 True' && echo "$out" | grep -q 'fifth refused' && ok "the 5th connection from one address is refused at a limit of 4" ||
	fail "the 5th connection from one address is refused at a limit of 4" "$out"
echo "$out" | grep -q 'after HTTP/1.1 200' && ok "a freed connection slot is usable again" || fail "a freed connection slot is usable again" "$out"

# --- 300 concurrent connections through suspend/resume
COFFRE_SERVER_PER_IP_CONNECTIONS=1000 COFFRE_SERVER_RATE_PER_S=100000 COFFRE_SERVER_RATE_BURST=100000 \
	start_server --log-level warn || exit 1
out=$(python3 - "$PORT" "$CA" <<'PY'
import socket, ssl, sys, threading
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
N = 300
conns, results, lock = [], [], threading.Lock()
# Open every connection first, so all 300 are in flight at once.
for _ in range(N):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    conns.append(ctx.wrap_socket(s, server_hostname="127.0.0.1"))
go = threading.Barrier(N)
def one(s):
    try:
        go.wait()
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
        ok = data.startswith(b"HTTP/1.1 200") and b'"status":"ready"' in data
    except Exception as e:
        ok = False
    with lock: results.append(ok)
ts = [threading.Thread(target=one, args=(s,)) for s in conns]
for t in ts: t.start()
for t in ts: t.join()
print(sum(results), len(results))
PY
)
[ "$out" = "300 300" ] && ok "300 concurrent connections each get /readyz through the work pool" ||
	fail "300 concurrent connections each get /readyz through the work pool" "$out"
code=$(ccurl -o /dev/null -w '%{http_code}' "$URL/readyz")
[ "$code" = 200 ] && ok "the server serves normally afterwards" || fail "the server serves normally afterwards" "$code"

done_testing
