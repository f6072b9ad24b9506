#!/usr/bin/env bash
# make bench BENCH=store: durable single-row writes per second through coffre's store
# interface with 1, 8 and 64 concurrent writers, on SQLite and PostgreSQL, beside the
# same machine's ceilings in the same run:
#   raw-sync     256-byte appends, fdatasync per record
#   raw-shared   256-byte appends, syncs shared (the best any group commit can do)
#   sqlite-txn   plain SQLite, one row per transaction
#   pgbench      PostgreSQL insert-only, same client count (its own group commit)
# The store is driven as coffred drives it: N writes in flight, each completion
# submitting the next (no thread blocked per request). The last line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-3} # interleaved rounds; figures are medians (the machine is noisy)
B=build/release/store_bench
[ -x "$B" ] || { cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" >/dev/null; }
W=$(mktemp -d /tmp/coffre-bench.XXXXXX)
eval "$(tests/pg.sh start)"
trap 'tests/pg.sh stop "$COFFRE_TEST_PG_DIR"; rm -rf "$W"' EXIT
pgsql() { runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt "$@"; }
pgsql -c "CREATE DATABASE bench OWNER coffre_owner" >/dev/null
APP="postgresql://coffre_app@/bench?host=$COFFRE_TEST_PG_HOST"
export BENCH_OWNER_URL="postgresql://coffre_owner@/bench?host=$COFFRE_TEST_PG_HOST"
# The store alone, with no HTTP work beside it, writes best through 16 PostgreSQL
# connections at 64 writers; coffred's default (store.pool) is 4, measured with its own
# work on the same two cores (docs/PERFORMANCE.md).
export BENCH_PG_POOL=${BENCH_PG_POOL:-16}
"$B" store "$APP" 1 0.2 >/dev/null # creates the table
printf "INSERT INTO bench (payload) VALUES (decode(repeat('01', 256), 'hex'));\n" >"$W/insert.sql"
chmod 755 "$W"
chmod 644 "$W/insert.sql"

declare -A R
run() { # key command...: appends this round's figure to R[key]
	local key=$1 v
	shift
	v=$("$@" | awk '{print $3}')
	R[$key]="${R[$key]:-} ${v:-0}"
	printf '  %-22s %10s writes/s\n' "$key" "${v:-0}"
}
pgb() { # clients
	runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/pgbench" -n -h "$COFFRE_TEST_PG_HOST" \
		-U coffre_app -c "$1" -j "$(($1 < 4 ? $1 : 4))" -T "$SECS" -f "$W/insert.sql" bench 2>/dev/null |
		grep -oE 'tps = [0-9.]+ \(without' | grep -oE '[0-9.]+' | awk '{printf "x x %.0f\n", $1}'
}
echo "store benchmark: ${SECS}s per figure, $ROUNDS interleaved rounds, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for round in $(seq 1 "$ROUNDS"); do
	for t in 1 8 64; do
		echo "-- round $round, $t writer(s)"
		run "raw_sync_$t" "$B" raw-sync "$W/raw" "$t" "$SECS"
		run "raw_shared_$t" "$B" raw-shared "$W/raw" "$t" "$SECS"
		rm -f "$W"/plain.db*
		run "sqlite_txn_$t" "$B" sqlite-txn "$W/plain.db" "$t" "$SECS"
		rm -f "$W"/store.db*
		run "sqlite_$t" "$B" store "sqlite:$W/store.db" "$t" "$SECS"
		run "pgbench_$t" pgb "$t"
		run "postgres_$t" "$B" store "$APP" "$t" "$SECS"
	done
done
python3 - "$(declare -p R)" <<'PY'
import json, re, sys
import statistics
r = {k: statistics.median(float(x) for x in v.split())
     for k, v in re.findall(r'\[([a-z_0-9]+)\]="([0-9. ]+)"', sys.argv[1])}
out = {
    "writes_per_s_sqlite_64": r["sqlite_64"],
    "writes_per_s_postgres_64": r["postgres_64"],
    "ratio_sqlite_vs_raw_shared_sync": round(r["sqlite_64"] / r["raw_shared_64"], 2),
    "ratio_sqlite_vs_sqlite_one_row_txn": round(r["sqlite_64"] / r["sqlite_txn_64"], 2),
    "ratio_postgres_vs_pgbench": round(r["postgres_64"] / r["pgbench_64"], 2),
}
for t in (1, 8, 64):
    for k in ("raw_sync", "raw_shared", "sqlite_txn", "sqlite", "pgbench", "postgres"):
        out[f"writes_per_s_{k}_{t}"] = r[f"{k}_{t}"]
print(json.dumps(out))
PY
