#!/usr/bin/env bash
# Crash safety of the store's writer and of the audit log: a program writes from 8 threads, printing each
# acknowledgement once durable, and is killed with SIGKILL at random moments. After each
# kill, every acknowledged row must be present and intact, and the database must pass its
# integrity check. CRASH_CYCLES (default 20) on SQLite; 5 on PostgreSQL. `make soak`
# runs many more.
source "$(dirname "$0")/lib.sh"
WRITER=${CRASH_WRITER:-$(dirname "$COFFRED")/crash_writer}
CYCLES=${CRASH_CYCLES:-20}
D=$(new_tmpdir)

# cycles LABEL N PROGRESS THREADS CLAIM PROG ARGS...: N times, run `PROG write ARGS FIRST
# THREADS` and SIGKILL it at a random moment, then `PROG verify ARGS ACKFILE` must pass;
# the writers must acknowledge more than PROGRESS writes a cycle on average.
cycles() {
	local label=$1 n=$2 progress=$3 threads=$4 claim=$5 prog=$6 c bad=0 out
	shift 6
	: >"$D/acks-$label"
	for c in $(seq 1 "$n"); do
		"$prog" write "$@" $((c * 10000000)) "$threads" >>"$D/acks-$label" 2>>"$D/err-$label" &
		local pid=$!
		sleep "0.$((RANDOM % 7 + 2))"
		kill -9 "$pid"
		wait "$pid" 2>/dev/null
		if ! out=$("$prog" verify "$@" "$D/acks-$label" 2>&1); then
			fail "$label: after kill $c of $n, $claim" "$out"
			bad=1
			break
		fi
	done
	[ "$bad" = 0 ] && ok "$label: $n SIGKILLs, $claim ($out)"
	local acks
	acks=$(grep -c '^ack ' "$D/acks-$label")
	[ "$acks" -gt $((n * progress)) ] && ok "$label: the writer made real progress between kills ($acks acknowledged)" ||
		fail "$label: the writer made real progress between kills" "$acks acknowledged; $(tail -3 "$D/err-$label")"
}
ROWS="every acknowledged write present, no torn row, integrity ok"
ENTRIES="the log verifies and holds every acknowledged entry"
AUDIT=${AUDIT_CRASH:-$(dirname "$COFFRED")/audit_crash}

cycles sqlite "$CYCLES" 50 8 "$ROWS" "$WRITER" "sqlite:$D/crash.db"

# The audit log under the same treatment (AL1): after each SIGKILL every acknowledged
# entry is in the log, and the whole log (entries, tree, checkpoints, numbering) verifies.
cycles "sqlite audit" "$CYCLES" 20 4 "$ENTRIES" "$AUDIT" "sqlite:$D/audit.db" "$D/keys-sqlite"

if [ -n "${COFFRE_TEST_PG_HOST:-}" ]; then
	db=coffre_crash_$$
	runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt \
		-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db OWNER coffre_owner" >/dev/null 2>&1
	CRASH_OWNER_URL="postgresql://coffre_owner@/$db?host=$COFFRE_TEST_PG_HOST" \
		cycles postgres 5 50 8 "$ROWS" "$WRITER" "postgresql://coffre_app@/$db?host=$COFFRE_TEST_PG_HOST"
	adb=coffre_acrash_$$
	runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt \
		-c "DROP DATABASE IF EXISTS $adb" -c "CREATE DATABASE $adb OWNER coffre_owner" >/dev/null 2>&1
	CRASH_OWNER_URL="postgresql://coffre_owner@/$adb?host=$COFFRE_TEST_PG_HOST" \
		cycles "postgres audit" 5 20 4 "$ENTRIES" "$AUDIT" "postgresql://coffre_app@/$adb?host=$COFFRE_TEST_PG_HOST" "$D/keys-pg"
else
	fail "postgres: crash cycles (COFFRE_TEST_PG_HOST is not set; run through make test)"
fi
done_testing
