#!/usr/bin/env bash
# Identity and access end to end over HTTPS (IA1-IA13, TI1, TR3), on SQLite and on
# PostgreSQL: logins and sessions, CSRF, invitations and setup links read from the file
# notifier, the password policy, API clients and their tokens checked by PyJWT, forged
# tokens refused, the route x role x tenant matrix, disabling, logout, and the tenant's
# audit log. The flows are in auth_flow.py (Debian's python3, with python3-jwt).
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

run_flows() { # LABEL
	local label=$1
	local adm_email adm_pw out complete=0 totp_secret= totp_step=0
	adm_email=$(sed -n 's/^ *email: *//p' "$SRV_DIR/out")
	adm_pw=$(sed -n 's/^ *password: *//p' "$SRV_DIR/out")
	if [ -z "$adm_pw" ]; then
		fail "$label: coffred --dev printed the first admin's credentials" "$(cat "$SRV_DIR/out")"
		return
	fi
	ok "$label: coffred --dev printed the first admin's one-time credentials"
	out=$("$COFFRE" tenant create other --owner boss@other.example --data "$SRV_DIR/data" 2>&1) &&
		grep -q "single-use" <<<"$out" && ok "$label: tenant create --owner prints the owner's setup token" ||
		fail "$label: tenant create --owner" "$out"
	out=$("$COFFRE" tenant create third --data "$SRV_DIR/data" 2>&1); rc=$?
	[ $rc = 2 ] && grep -q -- "--owner" <<<"$out" && ok "$label: tenant create without --owner: usage error" ||
		fail "$label: tenant create without --owner" "rc=$rc $out"
	write_dbsql
	# IA11: the first operator, over the admin socket only, once.
	out=$("$COFFRE" --data "$SRV_DIR/data" --json operator create-first --email op1@ops.example 2>&1)
	local optok
	optok=$(jget setup_token <<<"$out")
	[ -n "$optok" ] && ok "$label: coffre operator create-first prints the first operator's setup token" ||
		fail "$label: coffre operator create-first" "$out"
	out=$("$COFFRE" --data "$SRV_DIR/data" operator create-first --email op9@ops.example 2>&1); rc=$?
	[ $rc = 1 ] && grep -q conflict <<<"$out" && ok "$label: create-first refuses once an operator exists" ||
		fail "$label: a second create-first" "rc=$rc $out"
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) ok "$label: ${line#ok - }" ;;
		"not ok - "*) l=${line#not ok - }; fail "$label: ${l%% -- *}" "${l#* -- }" ;;
		"flows complete") complete=1 ;;
		"totp "*) read -r _ totp_secret totp_step <<<"$line" ;;
		*) echo "# $line" ;;
		esac
	done < <(COFFRE_TEST_OP_TOKEN=$optok COFFRE_TEST_DBSQL=$SRV_DIR/dbsql COFFRE_TEST_COFFRE=$COFFRE "$PY" "$ROOT/tests/integration/auth_flow.py" "$URL" "$CA" "$SRV_DIR/data" "$adm_email" "$adm_pw" other "$ROOT/src/http/routes.c" 2>&1)
	[ $complete = 1 ] && ok "$label: the flows ran to their end" || fail "$label: the flows ran to their end (auth_flow.py stopped early)"
	# IA11: the database itself refuses a grant approved by the operator who asked it (the
	# same row approved by another operator goes in: the check is that one rule).
	local ins="INSERT INTO break_glass (grant_id, tenant_id, operator_id, reason, access, minutes,
		requested_at, approved_by, approver_kind, approved_at, expires_at) VALUES"
	local self_ok= other_ok=
	dbsql "$ins ('gself', 'x', 'u1', 'r', 'read', 60, 1, 'u1', 'operator', 1, 4000000000)" >/dev/null 2>&1 && self_ok=1
	dbsql "$ins ('gother', 'x', 'u1', 'r', 'read', 60, 1, 'u2', 'operator', 1, 4000000000)" >/dev/null 2>&1 && other_ok=1
	dbsql "DELETE FROM break_glass WHERE tenant_id = 'x'" >/dev/null 2>&1
	[ -z "$self_ok" ] && [ -n "$other_ok" ] && ok "$label: the database refuses a break-glass grant approved by its own operator" ||
		fail "$label: the database's check on break-glass approvals" "self=$self_ok other=$other_ok"
	# Operators' actions are in the deployment's log, by operator.
	out=$("$COFFRE" --data "$SRV_DIR/data" --json audit list --action tenant.create --limit 100 2>&1)
	python3 -c 'import json,sys;e=[x for x in json.load(sys.stdin)["entries"] if x["resource"]=="fourth"];assert e and e[0]["actor_kind"]=="operator" and e[0]["privilege"]=="operator"' <<<"$out" &&
		ok "$label: an operator's tenant creation is in the deployment's audit log, by that operator" ||
		fail "$label: operators' actions in the deployment's log" "$out"
	# ER4 with IA6: the owner's TOTP secret is sealed under the tenant's KEK; rotate, let
	# the rewrap move it and destroy KEK v1, then log in with a code again.
	"$COFFRE" --data "$SRV_DIR/data" keys rotate --tenant dev >/dev/null &&
		timeout 60 "$COFFRE" --data "$SRV_DIR/data" keys status --tenant dev --wait >/dev/null
	states=$("$COFFRE" --data "$SRV_DIR/data" --json keys status --tenant dev | python3 -c 'import json,sys;t=json.load(sys.stdin)["tenants"][0];print(" ".join(k["state"] for k in t["keks"]))')
	while [ $(($(date +%s) / 30)) -lt "${totp_step:-0}" ]; do sleep 1; done
	code=$(oathtool --totp -b -N "now + 30 seconds" "$totp_secret" 2>/dev/null)
	out=$(ccurl -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		-d "{\"email\":\"$adm_email\",\"password\":\"$adm_pw\",\"code\":\"$code\"}" "$URL/v1/t/dev/auth/login")
	[[ "$states" =~ ^(destroyed )+active$ ]] && [ "$out" = 200 ] &&
		ok "$label: after a rotation and the rewrap (KEK v1 destroyed), the TOTP secret still opens" ||
		fail "$label: TOTP after a rotation and rewrap" "keks: $states, login: $out"
	# A flood of unauthenticated requests does not grow the audit log by one entry each:
	# counted per tenant and source, written as summaries (audit.refusal_summary: 1 s).
	refused() { # the refusals the summaries count so far: "DEV NOTENANT"
		"$COFFRE" --data "$SRV_DIR/data" --json audit list --action auth.refused --limit 1000 | python3 -c '
import json, sys, re
n = {}
for e in json.load(sys.stdin)["entries"]:
    m = re.match(r"tenant=(\S+) count=(\d+)", e["resource"])
    n[m.group(1)] = n.get(m.group(1), 0) + int(m.group(2))
print(n.get("dev", 0), n.get("-", 0))'
	}
	sleep 1.5
	local before after r0 r1
	before=$("$COFFRE" --data "$SRV_DIR/data" ${STORE:+--store "$STORE"} --json audit verify | jget entries)
	read -r -a r0 <<<"$(refused)"
	for i in $(seq 1 40); do
		ccurl "$URL/v1/t/dev/users" "$URL/v1/t/dev/clients" "$URL/v1/auth/me" -H "Authorization: Bearer x.y.z" >/dev/null
	done
	sleep 2.5
	after=$("$COFFRE" --data "$SRV_DIR/data" ${STORE:+--store "$STORE"} --json audit verify | jget entries)
	read -r -a r1 <<<"$(refused)"
	[ $((after - before)) -le 6 ] && [ $((r1[0] - r0[0])) = 80 ] && [ $((r1[1] - r0[1])) = 40 ] &&
		ok "$label: 120 refused requests add $((after - before)) summary entries (counting 80 for dev, 40 for no tenant), not 120" ||
		fail "$label: refusals before authentication are summarized" "entries $before -> $after, counts ${r0[*]} -> ${r1[*]}"
	# Secrets never reach the log: no password, session id, client secret or token.
	if grep -q -e "$adm_pw" -e "violet-tractor" -e "cs_" -e "eyJ" "$SRV_ERR"; then
		fail "$label: no secret in coffred's log" "$(grep -e "$adm_pw" -e cs_ -e eyJ "$SRV_ERR" | head -3)"
	else
		ok "$label: no password, secret or token in coffred's log"
	fi
}

# SQL on the running server's database, SQLite or PostgreSQL (as its superuser): a
# script in the server's folder, for auth_flow.py too.
dbsql() { bash "$SRV_DIR/dbsql" "$1"; }
write_dbsql() {
	if [ -n "${STORE:-}" ]; then
		printf 'exec runuser -u postgres -- env PGPORT=%q %q -h %q -U postgres -d %q -qAt -v ON_ERROR_STOP=1 -c "$1"\n' \
			"$PGPORT" "$COFFRE_TEST_PG_BIN/psql" "$COFFRE_TEST_PG_HOST" "$db" >"$SRV_DIR/dbsql"
	else
		printf 'exec sqlite3 -cmd ".timeout 10000" %q "$1"\n' "$SRV_DIR/data/coffre.db" >"$SRV_DIR/dbsql"
	fi
}

COFFRE_AUDIT_REFUSAL_SUMMARY=1 COFFRE_KEYS_JOB_INTERVAL=1 start_server --log-level info || exit 1

# The command line (IA12 from a terminal): login keeps a 0600 session file; the commands
# use it; logout ends it.
cli_flows() {
	local adm_email adm_pw out rc
	adm_email=$(sed -n 's/^ *email: *//p' "$SRV_DIR/out")
	adm_pw=$(sed -n 's/^ *password: *//p' "$SRV_DIR/out")
	export COFFRE_SESSION=$SRV_DIR/cli-session.json
	c() { "$COFFRE" --addr "$URL" --cacert "$CA" "$@"; }
	out=$(c login --tenant dev --email "$adm_email" --secret-fd 3 3<<<"not the password" 2>&1); rc=$?
	[ $rc = 1 ] && grep -q invalid_credentials <<<"$out" && [ ! -e "$COFFRE_SESSION" ] &&
		ok "cli: a wrong password: exit 1, invalid_credentials, no session kept" || fail "cli: a wrong password" "rc=$rc $out"
	out=$(c login --tenant dev --email "$adm_email" --secret-fd 3 3<<<"$adm_pw" 2>&1); rc=$?
	[ $rc = 0 ] && [ "$(stat -c %a "$COFFRE_SESSION")" = 600 ] && ! grep -q "$adm_pw" "$COFFRE_SESSION" &&
		ok "cli: coffre login keeps the session in a 0600 file (not the password)" || fail "cli: coffre login" "rc=$rc $out"
	out=$(c whoami 2>&1) && grep -q 'user u[0-9a-f]* of tenant dev, roles \["owner"\]' <<<"$out" &&
		ok "cli: coffre whoami" || fail "cli: coffre whoami" "$out"
	out=$(c users invite cli@dev.example --roles agent 2>&1) && grep -q "invited cli@dev.example" <<<"$out" &&
		ok "cli: coffre users invite" || fail "cli: coffre users invite" "$out"
	out=$(c --json users list 2>&1) && python3 -c 'import json,sys;u=[x for x in json.load(sys.stdin)["users"] if x["email"]=="cli@dev.example"];assert u and u[0]["roles"]==["agent"]' <<<"$out" &&
		ok "cli: coffre users list --json" || fail "cli: coffre users list --json" "$out"
	out=$(c clients create cli-backend --roles agent 2>&1) && grep -q "client_secret: cs_" <<<"$out" &&
		ok "cli: coffre clients create shows the secret once" || fail "cli: coffre clients create" "$out"
	out=$(c access-review --csv 2>&1) && grep -q '^kind,id,email_or_name' <<<"$out" && grep -q 'cli@dev.example' <<<"$out" &&
		ok "cli: coffre access-review --csv" || fail "cli: coffre access-review --csv" "$out"
	out=$(c api GET /v1/t/dev/auth/policy 2>&1) && grep -q '"mfa_required":false' <<<"$out" &&
		ok "cli: coffre api GET" || fail "cli: coffre api GET" "$out"
	out=$(c users delete nobody 2>&1); rc=$?
	[ $rc = 2 ] && ok "cli: users delete without --yes: usage" || fail "cli: users delete without --yes" "rc=$rc $out"
	out=$(c logout 2>&1); rc=$?
	out2=$(c whoami 2>&1); rc2=$?
	[ $rc = 0 ] && [ $rc2 = 4 ] && [ ! -e "$COFFRE_SESSION" ] && ok "cli: coffre logout; then whoami exits 4 (not logged in)" ||
		fail "cli: coffre logout" "rc=$rc $out / rc=$rc2 $out2"
	unset COFFRE_SESSION
}
cli_flows
run_flows sqlite
"$COFFRE" --data "$SRV_DIR/data" audit verify >/dev/null 2>&1 &&
	ok "sqlite: the audit log of all that verifies" || fail "sqlite: the audit log verifies" "$("$COFFRE" --data "$SRV_DIR/data" audit verify 2>&1)"
stop_server

# The SMTP notifier, against a real SMTP server on loopback (Python's smtpd).
SMTP_DIR=$(new_tmpdir)
SMTP_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
/usr/bin/python3 -W ignore - "$SMTP_DIR/mail" "$SMTP_PORT" <<'PY' &
import asyncore, smtpd, sys
class Sink(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        with open(sys.argv[1], "ab") as f:
            f.write(("MAIL FROM %s RCPT %s\n" % (mailfrom, ",".join(rcpttos))).encode())
            f.write(data if isinstance(data, bytes) else data.encode())
Sink(("127.0.0.1", int(sys.argv[2])), None)
asyncore.loop()
PY
SERVERS+=($!)
sleep 0.5
COFFRE_AUTH_REAUTH_WINDOW=2 COFFRE_AUTH_SMTP_URL=smtp://127.0.0.1:$SMTP_PORT COFFRE_AUTH_SMTP_FROM=vault@dev.example start_server --log-level info || exit 1
adm=$(sed -n 's/^ *email: *//p' "$SRV_DIR/out")
code=$(ccurl -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "{\"email\":\"$adm\"}" "$URL/v1/t/dev/auth/reset")
for i in $(seq 1 50); do grep -q 'reset your password' "$SMTP_DIR/mail" 2>/dev/null && break; sleep 0.1; done
tok=$(grep -oE '^  [A-Za-z0-9_-]{40,}' "$SMTP_DIR/mail" 2>/dev/null | tr -d ' ' | tail -1) # the last: the reset's
[ "$code" = 202 ] && grep -q "RCPT $adm" "$SMTP_DIR/mail" && grep -q '^From: vault@dev.example' "$SMTP_DIR/mail" && [ -n "$tok" ] &&
	ok "a reset link is mailed through SMTP (libcurl) to the user" || fail "a reset link is mailed through SMTP" "$code $(head -c 600 "$SMTP_DIR/mail" 2>&1)"
code=$(ccurl -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "{\"token\":\"$tok\",\"password\":\"mailed-link-passphrase-11\"}" "$URL/v1/t/dev/auth/setup")
[ "$code" = 200 ] && ok "the mailed token sets the password" || fail "the mailed token sets the password" "$code $tok $(cat "$SMTP_DIR/mail")"
# TR3: a sensitive operation needs a recent login (auth.reauth_window is 2 s here); a
# step-up with the password gives a new session id and opens it again.
J=$SMTP_DIR/jar
csrf=$(ccurl -c "$J" -H 'Content-Type: application/json' -d "{\"email\":\"$adm\",\"password\":\"mailed-link-passphrase-11\"}" "$URL/v1/t/dev/auth/login" | jget csrf_token)
sleep 3
c1=$(ccurl -b "$J" -o "$SMTP_DIR/r1" -w '%{http_code}' -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' -d '{"name":"late"}' "$URL/v1/t/dev/clients")
cp "$J" "$SMTP_DIR/jar.old"
csrf2=$(ccurl -b "$J" -c "$J" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' -d '{"password":"mailed-link-passphrase-11"}' "$URL/v1/auth/reauth" | jget csrf_token)
c2=$(ccurl -b "$J" -o /dev/null -w '%{http_code}' -H "X-CSRF-Token: $csrf2" -H 'Content-Type: application/json' -d '{"name":"late"}' "$URL/v1/t/dev/clients")
c3=$(ccurl -b "$SMTP_DIR/jar.old" -o /dev/null -w '%{http_code}' "$URL/v1/auth/me")
[ "$c1" = 403 ] && grep -q reauthentication_required "$SMTP_DIR/r1" && [ "$c2" = 201 ] && [ "$c3" = 401 ] &&
	ok "an old login cannot make a client (403 reauthentication_required); a step-up can, with a new session id" ||
	fail "re-authentication for sensitive operations" "$c1 $(cat "$SMTP_DIR/r1") / $c2 / old session $c3"
stop_server

if [ -z "${COFFRE_TEST_PG_HOST:-}" ]; then
	fail "PostgreSQL tests (COFFRE_TEST_PG_HOST is not set: run through make test)"
	done_testing
	exit
fi
db=coffre_auth_$$
pgsql() { runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U postgres -qAt "$@"; }
pgsql -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db OWNER coffre_owner" >/dev/null 2>&1
APP="postgresql://coffre_app@/$db?host=$COFFRE_TEST_PG_HOST"
OWNER="postgresql://coffre_owner@/$db?host=$COFFRE_TEST_PG_HOST"
STORE=$APP
COFFRE_AUDIT_REFUSAL_SUMMARY=1 COFFRE_KEYS_JOB_INTERVAL=1 COFFRE_STORE_URL=$APP COFFRE_STORE_MIGRATE_URL=$OWNER start_server --log-level info || exit 1
run_flows postgresql
# TI1 below the application: with coffre.tenant unset, the runtime role sees no user row.
n=$(runuser -u postgres -- env PGPORT="$PGPORT" "$COFFRE_TEST_PG_BIN/psql" -h "$COFFRE_TEST_PG_HOST" -U coffre_app -d "$db" -qAt -c "SELECT count(*) FROM users")
all=$(pgsql -d "$db" -c "SELECT count(*) FROM users")
[ "$n" = 0 ] && [ "${all:-0}" -ge 5 ] && ok "postgresql: row-level security hides every user row from the runtime role outside a tenant" ||
	fail "postgresql: row-level security hides user rows" "app=$n all=$all"
stop_server
done_testing
