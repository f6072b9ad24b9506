#!/usr/bin/env bash
# coffred on its stores: SQLite by default, PostgreSQL by store.url; /readyz follows the
# store through an outage and back without a restart; `coffre store migrate|check`; and
# start-up refusals for a bad URL, a corrupt file and a database newer than coffre.
source "$(dirname "$0")/lib.sh"
D=$(new_tmpdir)

# --- SQLite (the default)
start_server --log-level warn || exit 1
body=$(ccurl "$URL/readyz")
[ "$(echo "$body" | jget checks.store.engine)" = sqlite ] && [ "$(echo "$body" | jget checks.store.ok)" = true ] &&
	ok "the default store is SQLite in the data folder, and /readyz reads it" || fail "the default store is SQLite in the data folder" "$body"
[ "$(stat -c %a "$SRV_DIR/data/coffre.db")" = 600 ] && ok "the database file is 0600" || fail "the database file is 0600"
out=$("$COFFRE" --data "$SRV_DIR/data" store check 2>&1) && echo "$out" | grep -q 'integrity: ok' &&
	echo "$out" | grep -q 'synchronous=FULL' && echo "$out" | grep -q 'journal_mode=wal' &&
	ok "coffre store check: integrity ok, WAL, synchronous=FULL" || fail "coffre store check" "$out"
stop_server

# --- refusals at start-up: one line, exit 1
expect_refusal() { # name, text, command...
	local name=$1 text=$2
	shift 2
	local out rc
	out=$(timeout 20 "$@" 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | grep -vc '^{')" = 1 ] && echo "$out" | grep -q -- "$text"; then
		ok "$name: exit 1, one line"
	else
		fail "$name: exit 1 with one line containing '$text'" "rc=$rc: $out"
	fi
}
expect_refusal "a store URL of an unknown kind" "sqlite:PATH or postgres" env COFFRE_STORE_URL=mysql://x "$COFFRED" --dev --data "$D/a" --listen 127.0.0.1:0
expect_refusal "store.pool over 64" "store.pool" env COFFRE_STORE_POOL=65 "$COFFRED" --dev --data "$D/p" --listen 127.0.0.1:0
printf 'definitely not a database, just some bytes here...' >"$D/corrupt.db"
expect_refusal "a corrupt SQLite file" "corrupt" env COFFRE_STORE_URL="sqlite:$D/corrupt.db" "$COFFRED" --dev --data "$D/b" --listen 127.0.0.1:0
out=$("$COFFRE" store check --store "sqlite:$D/corrupt.db" 2>&1)
[ $? = 1 ] && ok "coffre store check on a corrupt file: exit 1 ($out)" || fail "coffre store check on a corrupt file" "$out"
"$COFFRE" store migrate --store "sqlite:$D/newer.db" >/dev/null
sqlite3 "$D/newer.db" "INSERT INTO schema_migrations VALUES (999, 'from the future', 0)" 2>/dev/null ||
	python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"INSERT INTO schema_migrations VALUES (999,'from the future',0)\"); c.commit()" "$D/newer.db"
expect_refusal "a database newer than this coffre" "newer than this coffre" env COFFRE_STORE_URL="sqlite:$D/newer.db" "$COFFRED" --dev --data "$D/c" --listen 127.0.0.1:0
out=$("$COFFRE" store check --store "sqlite:$D/none.db" 2>&1)
[ $? = 1 ] && [ ! -e "$D/none.db" ] && ok "coffre store check creates nothing where there is no database" || fail "coffre store check creates nothing" "$out"

# --- a full disk: a 1 MiB tmpfs holding the database and some ballast
WRITER=${CRASH_WRITER:-$(dirname "$COFFRED")/crash_writer}
mkdir -p "$D/full"
if mount -t tmpfs -o size=1m tmpfs "$D/full" 2>/dev/null; then
	head -c 200000 /dev/zero >"$D/full/ballast"
	out=$("$WRITER" fill "sqlite:$D/full/db" "$D/full/ballast" 2>&1)
	rc=$?
	# a read-only volume (Linux refuses to remount it while a store writes there, so
	# the case that happens is starting on one): one clear line, exit 1
	mount -o remount,ro "$D/full"
	expect_refusal "a database on a read-only volume" "Read-only file system" env COFFRE_STORE_URL="sqlite:$D/full/db" "$COFFRED" --dev --data "$D/ro" --listen 127.0.0.1:0
	umount "$D/full"
	[ $rc = 0 ] && ok "a full disk: store_unavailable (disk is full), database intact, writes resume once space is freed" ||
		fail "a full disk: clean failure, intact database, recovery" "$out"
else
	echo "# skip: cannot mount a tmpfs here, so the full-disk test did not run"
fi

# --- PostgreSQL
if [ -z "${COFFRE_TEST_PG_HOST:-}" ]; then
	fail "PostgreSQL tests (COFFRE_TEST_PG_HOST is not set: run through make test)"
	done_testing
	exit
fi
db=coffre_it_$$
pgsql() { runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt "$@"; }
pgsql -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db OWNER coffre_owner" >/dev/null 2>&1
APP="postgresql://coffre_app@/$db?host=$COFFRE_TEST_PG_HOST"
OWNER="postgresql://coffre_owner@/$db?host=$COFFRE_TEST_PG_HOST"
out=$("$COFFRE" store migrate --store "$APP" --migrate-url "$OWNER" 2>&1) && ok "coffre store migrate on PostgreSQL ($out)" || fail "coffre store migrate on PostgreSQL" "$out"
owner=$(pgsql -d "$db" -c "SELECT tableowner FROM pg_tables WHERE tablename = 'deployment'")
[ "$owner" = coffre_owner ] && ok "the tables belong to the owner role, not to coffre's runtime role" || fail "the tables belong to the owner role" "$owner"
out=$("$COFFRE" store check --store "$APP" 2>&1) && echo "$out" | grep -q 'fsync=on' && ok "coffre store check on PostgreSQL" || fail "coffre store check on PostgreSQL" "$out"
expect_refusal "a superuser as the runtime role" "row-level security" env COFFRE_STORE_URL="postgresql://postgres@/$db?host=$COFFRE_TEST_PG_HOST" "$COFFRED" --dev --data "$D/d" --listen 127.0.0.1:0
expect_refusal "PostgreSQL over TCP without TLS verify-full" "verify-full" env COFFRE_STORE_URL="postgresql://coffre_app@127.0.0.1:$PGPORT/$db?sslmode=disable" "$COFFRED" --dev --data "$D/e" --listen 127.0.0.1:0

COFFRE_STORE_URL=$APP COFFRE_STORE_MIGRATE_URL=$OWNER start_server --log-level warn || exit 1
body=$(ccurl "$URL/readyz")
[ "$(echo "$body" | jget checks.store.engine)" = postgresql ] && [ "$(echo "$body" | jget checks.store.ok)" = true ] &&
	ok "coffred on PostgreSQL is ready" || fail "coffred on PostgreSQL is ready" "$body"
# a session's reads before the outage leave each reader connection with a read's ROLLBACK
# whose answer is read at its next use (postgres.c end_read): after the outage those
# connections are found broken and reset, and reads work again
email=$(sed -n 's/^ *email: *//p' "$SRV_DIR/out")
pw=$(sed -n 's/^ *password: *//p' "$SRV_DIR/out")
code=$(ccurl -o "$D/login" -w '%{http_code}' -c "$D/jar" -H 'Content-Type: application/json' \
	-d "{\"email\":\"$email\",\"password\":\"$pw\"}" "$URL/v1/t/dev/auth/login")
reads_ok() {
	local i c
	for i in $(seq 1 12); do
		c=$(ccurl -o "$D/list" -w '%{http_code}' -b "$D/jar" "$URL/v1/t/dev/collections")
		[ "$c" = 200 ] || { echo "read $i: $c $(cat "$D/list")"; return 1; }
	done
}
[ "$code" = 200 ] && out=$(reads_ok) && ok "on PostgreSQL, a session's reads answer 200, one after another" ||
	fail "on PostgreSQL, a session's reads answer 200" "$code $(cat "$D/login") $out"
runuser -u postgres -- "$COFFRE_TEST_PG_BIN/pg_ctl" -D "$COFFRE_TEST_PG_DIR/data" -m fast -w stop >/dev/null
code=$(ccurl -o "$D/r" -w '%{http_code}' "$URL/readyz")
[ "$code" = 503 ] && [ "$(jget checks.store.ok <"$D/r")" = false ] && ok "PostgreSQL down: /readyz says 503, store not ok" || fail "PostgreSQL down: /readyz says 503" "$code $(cat "$D/r")"
runuser -u postgres -- "$COFFRE_TEST_PG_BIN/pg_ctl" -D "$COFFRE_TEST_PG_DIR/data" -l "$COFFRE_TEST_PG_DIR/server.log" -w start >/dev/null
code=$(ccurl -o "$D/r" -w '%{http_code}' "$URL/readyz")
[ "$code" = 200 ] && ok "PostgreSQL back: ready again without restarting coffred" || fail "PostgreSQL back: ready again without restarting coffred" "$code $(cat "$D/r")"
out=$(reads_ok) && ok "PostgreSQL back: the session's reads answer 200 again" ||
	fail "PostgreSQL back: the session's reads answer 200 again" "$out $(tail -5 "$SRV_ERR")"

# store.pool = 1: one connection writes every change and every audit entry, beside the
# audit sequencer; a session's writes and reads go through (nothing waits on another)
stop_server
pgsql -c "CREATE DATABASE ${db}_p1 OWNER coffre_owner" >/dev/null
COFFRE_STORE_POOL=1 COFFRE_STORE_URL="postgresql://coffre_app@/${db}_p1?host=$COFFRE_TEST_PG_HOST" \
	COFFRE_STORE_MIGRATE_URL="postgresql://coffre_owner@/${db}_p1?host=$COFFRE_TEST_PG_HOST" start_server --log-level warn || exit 1
email=$(sed -n 's/^ *email: *//p' "$SRV_DIR/out")
pw=$(sed -n 's/^ *password: *//p' "$SRV_DIR/out")
codes=$(ccurl -o "$D/login" -w '%{http_code}' -c "$D/jar1" -H 'Content-Type: application/json' \
	-d "{\"email\":\"$email\",\"password\":\"$pw\"}" "$URL/v1/t/dev/auth/login")
csrf=$(jget csrf_token <"$D/login" 2>/dev/null)
for i in 1 2 3 4 5 6; do
	codes="$codes $(ccurl -o "$D/w" -w '%{http_code}' -b "$D/jar1" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
		-d "{\"name\":\"c$i\",\"fields\":{\"n\":{\"type\":\"integer\"}}}" "$URL/v1/t/dev/collections")"
done
n=$(ccurl -b "$D/jar1" "$URL/v1/t/dev/collections" | python3 -c 'import json,sys;print(len([c for c in json.load(sys.stdin)["collections"] if c["name"] in ("c1","c2","c3","c4","c5","c6")]))' 2>/dev/null)
[ "$codes" = "200 201 201 201 201 201 201" ] && [ "$n" = 6 ] && ok "store.pool = 1 on PostgreSQL: six writes of a session answer 201 and read back" ||
	fail "store.pool = 1 on PostgreSQL: six writes answer 201 and read back" "$codes n=$n $(cat "$D/w") $(tail -3 "$SRV_ERR")"
done_testing
