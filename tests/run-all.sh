#!/usr/bin/env bash
# coffre — `make test`: builds (debug, asan-ubsan, fuzz) and runs every test: unit tests in
# the debug and sanitizer builds, integration tests against the sanitizer build of a real
# coffred, a short libFuzzer run of every target, and the linters. Every test case prints
# one TAP line; the last line of output is "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
LOGS=build/test-logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
PASS=0
FAIL=0
export CMOCKA_MESSAGE_OUTPUT=TAP
# Sanitizers: any report fails the test that triggered it.
export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# stage LABEL LOG CMD...: runs CMD, counts its "ok"/"not ok" lines, shows the failures.
stage() {
	local label=$1 log=$2
	shift 2
	local start rc p f
	start=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	p=$(grep -cE '^ok [0-9]+' "$log")
	f=$(grep -cE '^not ok [0-9]+' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		# it failed without saying which case: that is a failure too
		echo "not ok - $label exited with status $rc" >>"$log"
		f=1
	fi
	PASS=$((PASS + p))
	FAIL=$((FAIL + f))
	printf '%-34s %4d passed, %d failed  (%ss)\n' "$label" "$p" "$f" "$(($(date +%s) - start))"
	if [ "$f" -gt 0 ]; then
		grep -E -A12 '^not ok' "$log" | sed 's/^/    /' | head -60
		echo "    (full log: $log)"
	fi
}

build() { # preset
	{ cmake --preset "$1" && cmake --build --preset "$1" -j"$(nproc)"; } >"$LOGS/build-$1.txt" 2>&1 &&
		echo "ok 1 - build $1" || { echo "not ok 1 - build $1"; tail -30 "$LOGS/build-$1.txt"; return 1; }
}

units() { # build dir
	local t
	for t in "$1"/tests/unit/test_*; do
		[ -x "$t" ] || continue
		echo "# $(basename "$t")"
		"$t" || true
	done
}


fuzz() {
	local t n=0
	for t in build/fuzz/tests/fuzz/fuzz_*; do
		[ -x "$t" ] || continue
		local name=${t##*/fuzz_} work=build/fuzz/work/${t##*/fuzz_}
		n=$((n + 1))
		mkdir -p "$work"
		cp tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null
		if "$t" -max_total_time="$FUZZ_SECONDS" -max_len=8192 -artifact_prefix="$LOGS/fuzz-$name-" \
			"$work" >"$LOGS/fuzz-$name.txt" 2>&1; then
			echo "ok $n - fuzz $name for ${FUZZ_SECONDS}s: $(grep -oE 'exec/s: [0-9]+' "$LOGS/fuzz-$name.txt" | tail -1)"
		else
			echo "not ok $n - fuzz $name found a crash (artifact in $LOGS)"
			grep -E 'ERROR|SUMMARY|==[0-9]+==' "$LOGS/fuzz-$name.txt" | head -10
		fi
	done
}

echo "coffre tests: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores"
# A real PostgreSQL 15 for the store's tests, on a private socket, stopped at the end.
if pg_env=$(tests/pg.sh start 2>"$LOGS/pg-start.txt"); then
	eval "$pg_env"
	trap 'tests/pg.sh stop "$COFFRE_TEST_PG_DIR"' EXIT
	echo "PostgreSQL $("$COFFRE_TEST_PG_BIN/postgres" --version | grep -oE '[0-9]+\.[0-9]+' | head -1) on $COFFRE_TEST_PG_HOST"
else
	echo "not ok 1 - PostgreSQL could not be started" >"$LOGS/pg.txt"
	cat "$LOGS/pg-start.txt" >>"$LOGS/pg.txt"
	stage "postgresql" "$LOGS/pg-stage.txt" cat "$LOGS/pg.txt"
fi
stage "build debug" "$LOGS/b-debug.txt" build debug && debug=1 || debug=0
stage "build asan-ubsan" "$LOGS/b-asan.txt" build asan-ubsan && asan=1 || asan=0
stage "build fuzz (clang, libFuzzer)" "$LOGS/b-fuzz.txt" build fuzz && fz=1 || fz=0
[ "$debug" = 1 ] && stage "unit (debug)" "$LOGS/unit-debug.txt" units build/debug
[ "$asan" = 1 ] && stage "unit (asan+ubsan)" "$LOGS/unit-asan.txt" units build/asan-ubsan
if [ "$asan" = 1 ]; then
	for t in tests/integration/t_*.sh; do
		n=$(basename "$t" .sh)
		stage "integration ${n#t_} (asan+ubsan)" "$LOGS/it-$n.txt" \
			env COFFRED="$PWD/build/asan-ubsan/coffred" COFFRE="$PWD/build/asan-ubsan/coffre" bash "$t"
	done
fi
[ "$fz" = 1 ] && stage "fuzz smoke (${FUZZ_SECONDS}s each)" "$LOGS/fuzz.txt" fuzz
stage "lint" "$LOGS/lint.txt" scripts/lint.sh
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
