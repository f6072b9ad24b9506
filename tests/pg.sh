#!/usr/bin/env bash
# coffre — a throwaway PostgreSQL 15 for the tests: initdb into a temporary folder, listen
# on a private Unix socket and on 127.0.0.1 at a free port (exported as PGPORT, which
# libpq and psql use by default), stop with `tests/pg.sh stop DIR`.
#   eval "$(tests/pg.sh start)"   exports COFFRE_TEST_PG_DIR and the URLs below
# Roles, as docs/storage.md asks of a real deployment:
#   coffre_owner    owns the tables; migrations run as it
#   coffre_runtime  NOLOGIN group role the migrations grant table rights to
#   coffre_app      LOGIN, member of coffre_runtime: what coffred runs as (no BYPASSRLS)
set -euo pipefail
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cmd=${1:-}
case "$cmd" in
start)
	dir=$(mktemp -d /tmp/coffre-pg.XXXXXX)
	chown postgres "$dir"
	chmod 700 "$dir"
	runuser -u postgres -- "$BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1
	# In the configuration file, so that a plain `pg_ctl start` (tests that stop and restart
	# the server) comes back the same: socket only, durable.
	port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 200
CONF
	runuser -u postgres -- "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	export PGPORT=$port
	psql() { runuser -u postgres -- env PGPORT="$port" "$BIN/psql" -h "$dir" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
	psql -d postgres -c "CREATE ROLE coffre_owner LOGIN" \
		-c "CREATE ROLE coffre_runtime NOLOGIN" \
		-c "CREATE ROLE coffre_app LOGIN IN ROLE coffre_runtime" >/dev/null
	echo "export COFFRE_TEST_PG_DIR='$dir'"
	echo "export COFFRE_TEST_PG_BIN='$BIN'"
	echo "export COFFRE_TEST_PG_HOST='$dir'"
	echo "export PGPORT='$port'"
	;;
stop)
	dir=${2:?usage: tests/pg.sh stop DIR}
	runuser -u postgres -- "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
	;;
*)
	echo "usage: tests/pg.sh start | stop DIR" >&2
	exit 2
	;;
esac
