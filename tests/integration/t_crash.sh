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

cycles() { # engine-label url cycles
	local label=$1 url=$2 n=$3 c bad=0 out
	: >"$D/acks-$label"
	for c in $(seq 1 "$n"); do
		"$WRITER" write "$url" $((c * 10000000)) 8 >>"$D/acks-$label" 2>>"$D/err-$label" &
		local pid=$!
		sleep "0.$((RANDOM % 7 + 2))"
		kill -9 "$pid"
		wait "$pid" 2>/dev/null
		if ! out=$("$WRITER" verify "$url" "$D/acks-$label" 2>&1); then
			fail "$label: after kill $c of $n every acknowledged row is present and intact" "$out"
			bad=1
			break
		fi
	done
	[ "$bad" = 0 ] && ok "$label: $n SIGKILLs, every acknowledged write present, no torn row, integrity ok ($out)"
	local acks
	acks=$(grep -c '^ack ' "$D/acks-$label")
	[ "$acks" -gt $((n * 50)) ] && ok "$label: the writer made real progress between kills ($acks acknowledged)" ||
		fail "$label: the writer made real progress between kills" "$acks acknowledged; $(tail -3 "$D/err-$label")"
}

cycles sqlite "sqlite:$D/crash.db" "$CYCLES"

# The audit log under the same treatment (AL1): after each SIGKILL every acknowledged
# entry is in the log, and the whole log (entries, tree, checkpoints, numbering) verifies.
AUDIT=${AUDIT_CRASH:-$(dirname "$COFFRED")/audit_crash}
audit_cycles() { # engine-label url cycles
	local label=$1 url=$2 n=$3 c bad=0 out
	: >"$D/aacks-$label"
	for c in $(seq 1 "$n"); do
		"$AUDIT" write "$url" "$D/keys-$label" $((c * 10000000)) 4 >>"$D/aacks-$label" 2>>"$D/aerr-$label" &
		local pid=$!
		sleep "0.$((RANDOM % 7 + 2))"
		kill -9 "$pid"
		wait "$pid" 2>/dev/null
		if ! out=$("$AUDIT" verify "$url" "$D/keys-$label" "$D/aacks-$label" 2>&1); then
			fail "$label audit: after kill $c of $n the log verifies with every acknowledged entry" "$out"
			bad=1
			break
		fi
	done
	[ "$bad" = 0 ] && ok "$label audit: $n SIGKILLs, the log verifies and holds every acknowledged entry ($out)"
	local acks
	acks=$(grep -c '^ack ' "$D/aacks-$label")
	[ "$acks" -gt $((n * 20)) ] && ok "$label audit: the writer made real progress between kills ($acks acknowledged)" ||
		fail "$label audit: the writer made real progress between kills" "$acks acknowledged; $(tail -3 "$D/aerr-$label")"
}
audit_cycles sqlite "sqlite:$D/audit.db" "$CYCLES"

if [ -n "${COFFRE_TEST_PG_HOST:-}" ]; then
	db=coffre_crash_$$
	runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt \
		-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db OWNER coffre_owner" >/dev/null 2>&1
	CRASH_OWNER_URL="postgresql://coffre_owner@/$db?host=$COFFRE_TEST_PG_HOST" \
		cycles postgres "postgresql://coffre_app@/$db?host=$COFFRE_TEST_PG_HOST" 5
	adb=coffre_acrash_$$
	runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt \
		-c "DROP DATABASE IF EXISTS $adb" -c "CREATE DATABASE $adb OWNER coffre_owner" >/dev/null 2>&1
	CRASH_OWNER_URL="postgresql://coffre_owner@/$adb?host=$COFFRE_TEST_PG_HOST" \
		audit_cycles postgres "postgresql://coffre_app@/$adb?host=$COFFRE_TEST_PG_HOST" 5
else
	fail "postgres: crash cycles (COFFRE_TEST_PG_HOST is not set; run through make test)"
fi
done_testing
