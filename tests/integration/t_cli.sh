#!/usr/bin/env bash
# The command line: help everywhere, meaningful exit codes (0 ok, 1 failure, 2 usage),
# --json for scripts, and `coffre status` verifying the server's certificate.
source "$(dirname "$0")/lib.sh"
start_server --log-level warn || exit 1
DATA=$SRV_DIR/data

expect() { # name, expected exit, command...
	local name=$1 want=$2
	shift 2
	"$@" >"$SRV_DIR/o" 2>"$SRV_DIR/e"
	local rc=$?
	[ "$rc" = "$want" ] && ok "$name (exit $rc)" || fail "$name (exit $want)" "rc=$rc $(cat "$SRV_DIR/o" "$SRV_DIR/e")"
}
expect "coffre --help" 0 "$COFFRE" --help
grep -q '^usage: coffre' "$SRV_DIR/o" && ok "coffre --help prints usage on stdout" || fail "coffre --help prints usage on stdout"
expect "coffre status --help" 0 "$COFFRE" status --help
grep -q 'usage: coffre status' "$SRV_DIR/o" && ok "coffre status --help describes status" || fail "coffre status --help describes status"
expect "coffre help status" 0 "$COFFRE" help status
expect "coffre with no command" 2 "$COFFRE"
expect "an unknown command" 2 "$COFFRE" frobnicate
expect "an unknown option" 2 "$COFFRE" status --frobnicate
# a malformed vault command is a usage error even without a login; a good one, 4
nosess=(env COFFRE_SESSION="$SRV_DIR/no-session.json")
expect "an unknown records subcommand, not logged in" 2 "${nosess[@]}" "$COFFRE" records frob
expect "records get without its arguments, not logged in" 2 "${nosess[@]}" "$COFFRE" records get
expect "a well-formed records get, not logged in" 4 "${nosess[@]}" "$COFFRE" records get people r0000000000000000
expect "coffre password, not logged in (asks for nothing)" 4 "${nosess[@]}" "$COFFRE" password
expect "an http:// address" 2 "$COFFRE" --addr "http://127.0.0.1:$PORT" status
expect "coffre version --json" 0 "$COFFRE" version --json
jget version <"$SRV_DIR/o" >/dev/null && ok "version --json is JSON" || fail "version --json is JSON" "$(cat "$SRV_DIR/o")"

# The development CA is found from --data for a server on this machine.
expect "coffre status against a --dev server" 0 "$COFFRE" --addr "$URL" --data "$DATA" status
grep -q ': ready' "$SRV_DIR/o" && grep -q 'clock:' "$SRV_DIR/o" && ok "status says ready and shows the clock" ||
	fail "status says ready and shows the clock" "$(cat "$SRV_DIR/o")"
expect "coffre status --json" 0 env COFFRE_ADDR="$URL" COFFRE_DATA="$DATA" "$COFFRE" status --json
[ "$(jget status <"$SRV_DIR/o")" = ready ] && ok "status --json gives the server's JSON" || fail "status --json gives the server's JSON" "$(cat "$SRV_DIR/o")"
expect "coffre status with --cacert" 0 "$COFFRE" --addr "$URL" --cacert "$CA" status

# Certificate verification is real: another CA, or none, fails.
OTHER=$SRV_DIR
start_server --log-level warn || exit 1
expect "a server whose certificate another CA signed" 1 "$COFFRE" --addr "$URL" --cacert "$OTHER/data/tls/ca.pem" status
grep -qi 'certificate\|cacert' "$SRV_DIR/e" && ok "the failure names the certificate" || fail "the failure names the certificate" "$(cat "$SRV_DIR/e")"
expect "no CA at all (system CAs do not know the dev CA)" 1 "$COFFRE" --addr "$URL" --data /nonexistent status
stop_server
expect "a server that is not running" 1 "$COFFRE" --addr "$URL" --cacert "$CA" status
grep -q 'cannot reach' "$SRV_DIR/e" && ok "an unreachable server is named as such" || fail "an unreachable server is named as such" "$(cat "$SRV_DIR/e")"

done_testing
