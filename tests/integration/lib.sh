# coffre — helpers for the integration tests: TAP output and a real coffred on loopback.
# Each test file sources this, calls plan-free `ok`/`fail`/`check`, and ends with `done_testing`.
# Environment: COFFRED, COFFRE (binaries under test; default the debug build).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COFFRED=${COFFRED:-$ROOT/build/debug/coffred}
COFFRE=${COFFRE:-$ROOT/build/debug/coffre}
T_NAME=$(basename "$0" .sh)
T_N=0
T_FAILED=0
SERVERS=()
TMPDIRS=()

ok() { T_N=$((T_N + 1)); echo "ok $T_N - $T_NAME: $1"; }
fail() {
	T_N=$((T_N + 1))
	T_FAILED=$((T_FAILED + 1))
	echo "not ok $T_N - $T_NAME: $1"
	[ $# -gt 1 ] && printf '%s\n' "$2" | head -20 | sed 's/^/#   /'
	return 0
}
# check NAME CMD...: passes when CMD exits 0.
check() {
	local name=$1
	shift
	local out
	if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$out"; fi
}

cleanup() {
	local p
	for p in "${SERVERS[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${TMPDIRS[@]}"; do rm -rf "$p"; done
}
trap cleanup EXIT

new_tmpdir() {
	local d
	d=$(mktemp -d /tmp/coffre-it.XXXXXX)
	chmod 700 "$d"
	TMPDIRS+=("$d")
	echo "$d"
}

# start_server [coffred flags...]: a --dev server on a free loopback port.
# Sets SRV_PID, SRV_DIR (data under $SRV_DIR/data), SRV_ERR (its log), PORT, URL, CA.
start_server() {
	SRV_DIR=$(new_tmpdir)
	SRV_ERR=$SRV_DIR/err
	"$COFFRED" --dev --data "$SRV_DIR/data" --listen 127.0.0.1:0 "$@" >"$SRV_DIR/out" 2>"$SRV_ERR" &
	SRV_PID=$!
	SERVERS+=("$SRV_PID")
	wait_port "$SRV_DIR/out" '^ *URL: +https://127\.0\.0\.1:[0-9]+'
	if [ -z "$PORT" ]; then
		echo "# coffred did not start:" >&2
		sed 's/^/#   /' "$SRV_ERR" >&2
		return 1
	fi
	URL=https://127.0.0.1:$PORT
	CA=$SRV_DIR/data/tls/ca.pem
}

# wait_port FILE REGEX: sets PORT to the number ending REGEX's first match in FILE, once
# it appears (empty if SRV_PID dies or 20 s pass).
wait_port() {
	PORT=
	local i
	for i in $(seq 1 200); do
		PORT=$(grep -oE "$2" "$1" 2>/dev/null | grep -oE '[0-9]+$' | head -1)
		[ -n "$PORT" ] && break
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
}

stop_server() { # [pid]: SIGTERM and wait; sets STOP_RC to the exit status
	local pid=${1:-$SRV_PID}
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	STOP_RC=$?
}

# curl with the dev CA, printing the body; -w and other options may be added.
ccurl() { curl -sS --max-time 10 --cacert "$CA" "$@"; }

# The value at a dotted path of a JSON document on stdin ("error.code").
jget() {
	python3 -c 'import json,sys
d=json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d=d[int(k)] if isinstance(d,list) else d[k]
print(json.dumps(d) if isinstance(d,(dict,list,bool)) or d is None else d)' "$1"
}

done_testing() {
	echo "# $T_NAME: $T_N tests, $T_FAILED failed"
	[ "$T_FAILED" -eq 0 ]
}
