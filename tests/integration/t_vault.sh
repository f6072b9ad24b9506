#!/usr/bin/env bash
# The vault end to end over HTTPS (ER2, PV2, PV7, TI1) on SQLite and on PostgreSQL:
# collections and schemas, records sealed per version, masks and reveals, optimistic
# concurrency, history, filters and pages, rows copied in the database that do not open.
# The flows are in vault_flow.py.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

run_flows() { # LABEL
	local label=$1 complete=0 adm_email adm_pw
	adm_email=$(sed -n 's/^ *email: *//p' "$SRV_DIR/out")
	adm_pw=$(sed -n 's/^ *password: *//p' "$SRV_DIR/out")
	if [ -n "${STORE:-}" ]; then
		printf 'exec runuser -u postgres -- env PGPORT=%q %q -h %q -U postgres -d %q -qAt -v ON_ERROR_STOP=1 -c "$1"\n' \
			"$PGPORT" "$COFFRE_TEST_PG_BIN/psql" "$COFFRE_TEST_PG_HOST" "$db" >"$SRV_DIR/dbsql"
	else
		printf 'exec sqlite3 -cmd ".timeout 10000" %q "$1"\n' "$SRV_DIR/data/coffre.db" >"$SRV_DIR/dbsql"
	fi
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) ok "$label: ${line#ok - }" ;;
		"not ok - "*) l=${line#not ok - }; fail "$label: ${l%% -- *}" "${l#* -- }" ;;
		"flows complete") complete=1 ;;
		*) echo "# $line" ;;
		esac
	done < <("$PY" "$ROOT/tests/integration/vault_flow.py" "$URL" "$CA" "$adm_email" "$adm_pw" "$SRV_DIR/dbsql" 2>&1)
	[ $complete = 1 ] && ok "$label: the flows ran to their end" || fail "$label: the flows ran to their end (vault_flow.py stopped early)"
	"$COFFRE" --data "$SRV_DIR/data" ${STORE:+--store "$STORE"} audit verify >/dev/null 2>&1 &&
		ok "$label: the audit log of all that verifies" || fail "$label: the audit log verifies"
	if grep -q -e "ada@example" -e "Lovelace" "$SRV_ERR"; then
		fail "$label: no personal data in coffred's log" "$(grep -e ada@example -e Lovelace "$SRV_ERR" | head -3)"
	else
		ok "$label: no personal data in coffred's log"
	fi
}

start_server --log-level info || exit 1
# make run shows the main job: the banner's three lines store a record and read it back.
sed -n 's/^   \$ //p' "$SRV_DIR/out" >"$SRV_DIR/demo.sh"
out=$(cd "$SRV_DIR" && bash ./demo.sh 2>&1)
[ "$(grep -c . "$SRV_DIR/demo.sh")" = 3 ] && grep -q '"email":"a\*\*\*@example.com"' <<<"$out" && grep -q '"plan":"pro"' <<<"$out" &&
	ok "sqlite: the development banner's three lines store a record in 'customers' and read it back, masked" ||
	fail "sqlite: the development banner's demo" "$(cat "$SRV_DIR/demo.sh") => $out"
run_flows sqlite
# ER2: nothing personal in clear in the database file
if grep -a -q -e "ada@example" -e "Lovelace" "$SRV_DIR/data/coffre.db" "$SRV_DIR/data/coffre.db-wal" 2>/dev/null; then
	fail "sqlite: no personal value in clear in the database files"
else
	ok "sqlite: no personal value in clear in the database files"
fi
stop_server

if [ -z "${COFFRE_TEST_PG_HOST:-}" ]; then
	fail "PostgreSQL tests (COFFRE_TEST_PG_HOST is not set: run through make test)"
	done_testing
	exit
fi
db=coffre_vault_$$
pgsql() { runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt "$@"; }
pgsql -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db OWNER coffre_owner" >/dev/null 2>&1
STORE="postgresql://coffre_app@/$db?host=$COFFRE_TEST_PG_HOST"
COFFRE_STORE_URL=$STORE COFFRE_STORE_MIGRATE_URL="postgresql://coffre_owner@/$db?host=$COFFRE_TEST_PG_HOST" start_server --log-level info || exit 1
run_flows postgresql
n=$(runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U coffre_app -d "$db" -qAt -c "SELECT count(*) FROM record_versions")
all=$(pgsql -d "$db" -c "SELECT count(*) FROM record_versions")
[ "$n" = 0 ] && [ "${all:-0}" -ge 5 ] && ok "postgresql: row-level security hides every record from the runtime role outside a tenant" ||
	fail "postgresql: row-level security hides records" "app=$n all=$all"
stop_server
done_testing
