#!/usr/bin/env bash
# make bench BENCH=audit: durable audited writes per second (each a tenant entry with its
# actor and resource HMACed, appended through the store's group-commit writer, 64 always
# in flight, the sequencer running beside them as in coffred) on SQLite and PostgreSQL,
# beside the store's own ceilings in the same run (coffre's store with a bare one-row
# insert, and raw-shared: appends with shared fsyncs); the sequencer's lag (commit to
# tree index, p50/p99); and `coffre audit verify`'s speed over the log written.
# Medians of BENCH_ROUNDS rounds. The last line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-3}
A=build/release/audit_bench S=build/release/store_bench
[ -x "$A" ] && [ -x "$S" ] || { cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" >/dev/null; }
W=$(mktemp -d /tmp/coffre-bench.XXXXXX)
eval "$(tests/pg.sh start)"
trap 'tests/pg.sh stop "$COFFRE_TEST_PG_DIR"; rm -rf "$W"' EXIT
pgsql() { runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt "$@"; }
declare -A R
put() { R[$1]="${R[$1]:-} ${2:-0}"; printf '  %-28s %s\n' "$1" "${2:-0}"; }
echo "audit benchmark: ${SECS}s per figure, $ROUNDS rounds, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for round in $(seq 1 "$ROUNDS"); do
	echo "-- round $round"
	rm -rf "$W/r" && mkdir -p "$W/r"
	put store_sqlite_64 "$("$S" store "sqlite:$W/r/store.db" 64 "$SECS" | awk '{print $3}')"
	put raw_shared_64 "$("$S" raw-shared "$W/r/raw" 64 "$SECS" | awk '{print $3}')"
	out=$("$A" record "sqlite:$W/r/coffre.db" 64 "$SECS" "$W/r")
	put entries_per_s_sqlite "$(awk '/^entries_per_s/ {print $2}' <<<"$out")"
	put sequencer_lag_p50_ms "$(awk '/^lag_p50_ms/ {print $2}' <<<"$out")"
	put sequencer_lag_p99_ms "$(awk '/^lag_p99_ms/ {print $2}' <<<"$out")"
	# a bigger log for verify: a few more rounds of writing
	for i in 1 2; do "$A" record "sqlite:$W/r/coffre.db" 64 "$SECS" "$W/r" >/dev/null; done
	out=$("$A" verify "sqlite:$W/r/coffre.db" "$W/r")
	put verify_entries "$(awk '/^verify_entries / {print $2}' <<<"$out")"
	put verify_entries_per_s "$(awk '/^verify_entries_per_s/ {print $2}' <<<"$out")"
	db=bench$round
	pgsql -c "CREATE DATABASE $db OWNER coffre_owner" >/dev/null
	APP="postgresql://coffre_app@/$db?host=$COFFRE_TEST_PG_HOST"
	mkdir -p "$W/r/pg"
	out=$(BENCH_OWNER_URL="postgresql://coffre_owner@/$db?host=$COFFRE_TEST_PG_HOST" "$A" record "$APP" 64 "$SECS" "$W/r/pg")
	put entries_per_s_postgres "$(awk '/^entries_per_s/ {print $2}' <<<"$out")"
	put sequencer_lag_p99_ms_postgres "$(awk '/^lag_p99_ms/ {print $2}' <<<"$out")"
done
python3 - "$(declare -p R)" <<'PY'
import json, re, statistics, sys
r = {k: statistics.median(float(x) for x in v.split())
     for k, v in re.findall(r'\[([a-z_0-9]+)\]="([0-9. ]+)"', sys.argv[1])}
r["ratio_entries_vs_store_sqlite"] = round(r["entries_per_s_sqlite"] / r["store_sqlite_64"], 3)
r["ratio_entries_vs_raw_shared"] = round(r["entries_per_s_sqlite"] / r["raw_shared_64"], 3)
print(json.dumps(r))
PY
