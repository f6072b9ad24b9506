#!/usr/bin/env bash
# Keys end to end (ER3, ER4, ER6, ER7, PV4): a production coffred starts sealed and
# uninitialized; an operator initializes, seals, unseals and rekeys it through the local
# admin socket with the real command line; the public API answers 503 sealed meanwhile;
# the socket refuses other users (SO_PEERCRED); tenants are created, rotated, suspended
# and crypto-shredded; a data store refuses a keystore that is not its own.
source "$(dirname "$0")/lib.sh"

PASS='correct horse battery staple'
# A production coffred (no --dev) with a certificate made here. Sets the same variables as
# start_server; the port comes from its "listening" log line.
start_prod() { # DATA [env assignments...]
	local data=$1
	shift
	SRV_DIR=$(dirname "$data")
	SRV_ERR=$SRV_DIR/err.$RANDOM
	env COFFRE_TLS_CERT="$CERTS/server.pem" COFFRE_TLS_KEY="$CERTS/server.key" \
		COFFRE_KEYS_JOB_INTERVAL=1 COFFRE_KEYS_REWRAP_BATCH=2 "$@" \
		"$COFFRED" --data "$data" --listen 127.0.0.1:0 >"$SRV_DIR/out" 2>"$SRV_ERR" &
	SRV_PID=$!
	SERVERS+=("$SRV_PID")
	wait_port "$SRV_ERR" '"event":"listening".*"port":[0-9]+'
	[ -n "$PORT" ] || return 1
	URL=https://127.0.0.1:$PORT
	CA=$CERTS/ca.pem
}

CERTS=$(new_tmpdir)
# A CA and a server certificate for 127.0.0.1 (a dev start makes them; any PKI would do).
"$COFFRED" --dev --data "$CERTS/seed" --listen 127.0.0.1:0 >/dev/null 2>&1 &
seed=$!
for i in $(seq 1 50); do [ -f "$CERTS/seed/tls/server.key" ] && break; sleep 0.1; done
sleep 0.3
kill "$seed"; wait "$seed" 2>/dev/null
cp "$CERTS/seed/tls/ca.pem" "$CERTS/seed/tls/server.pem" "$CERTS/seed/tls/server.key" "$CERTS/"

BASE=$(new_tmpdir)
DATA=$BASE/data
mkdir -m 700 "$DATA"
start_prod "$DATA" || { fail "a production coffred starts" "$(cat "$SRV_ERR")"; done_testing; exit 1; }
ok "a production coffred starts without a root key"
SOCK=$DATA/admin.sock
op() { "$COFFRE" --socket "$SOCK" "$@"; }

# --- sealed before init
code=$(ccurl "$URL/v1/t/acme/records" | jget error.code)
status=$(ccurl -o /dev/null -w '%{http_code}' "$URL/v1/t/acme/records")
[ "$code" = sealed ] && [ "$status" = 503 ] && ok "before init the API answers 503 sealed" || fail "before init the API answers 503 sealed" "$status $code"
state=$(ccurl "$URL/readyz" | jget checks.keys.state)
[ "$state" = not_initialized ] && ok "/readyz says not_initialized" || fail "/readyz says not_initialized" "$state"
op operator status >/dev/null; rc=$?
[ $rc = 3 ] && ok "operator status exits 3 before init" || fail "operator status exits 3 before init" "rc=$rc"
[ "$(stat -c %a "$SOCK")" = 600 ] && ok "the admin socket is 0600" || fail "the admin socket is 0600" "$(stat -c %a "$SOCK")"
out=$(op tenant create acme --owner owner@example.com 2>&1); rc=$?
[ $rc = 1 ] && grep -q not_initialized <<<"$out" && ok "tenant create before init: not_initialized" || fail "tenant create before init: not_initialized" "rc=$rc $out"

# --- SO_PEERCRED: another user who can reach the socket is refused; root is served
chmod 711 "$BASE" "$DATA"
chmod 666 "$SOCK"
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$COFFRE" --socket "$SOCK" --json operator status 2>&1); rc=$?
[ $rc = 1 ] && [ "$(jget error.code <<<"$out")" = forbidden ] && ok "the admin socket refuses another user (SO_PEERCRED)" || fail "the admin socket refuses another user (SO_PEERCRED)" "rc=$rc $out"
out=$(op --json operator status); rc=$?
[ $rc = 3 ] && [ "$(jget initialized <<<"$out")" = false ] && ok "...and serves root on the same socket" || fail "...and serves root on the same socket" "rc=$rc $out"
chmod 600 "$SOCK"
chmod 700 "$BASE" "$DATA"

# --- init (file provider, passphrase from a file descriptor)
out=$(op operator init --provider file --secret-fd 3 3<<<"short" 2>&1); rc=$?
[ $rc = 1 ] && grep -q invalid_argument <<<"$out" && ok "init refuses a short passphrase" || fail "init refuses a short passphrase" "rc=$rc $out"
out=$(op operator init --provider file --secret-fd 3 3<<<"$PASS" 2>&1); rc=$?
[ $rc = 0 ] && ok "operator init --provider file" || fail "operator init --provider file" "rc=$rc $out"
[ "$(stat -c %a "$DATA/root-v1.key")" = 600 ] && ok "the root key file is 0600" || fail "the root key file is 0600"
! grep -q "$PASS" "$SRV_ERR" && ok "the passphrase never reaches the log" || fail "the passphrase never reaches the log"
op operator status >/dev/null && ok "operator status exits 0 once unsealed" || fail "operator status exits 0 once unsealed"
[ "$(ccurl "$URL/readyz" | jget status)" = ready ] && ok "/readyz is ready once unsealed" || fail "/readyz is ready once unsealed"
[ "$(ccurl "$URL/v1/t/acme/records" | jget error.code)" = not_found ] && ok "unsealed, the API routes again (404 for an unknown path)" || fail "unsealed, the API routes again"
out=$(op operator init --provider file --secret-fd 3 3<<<"$PASS" 2>&1); rc=$?
[ $rc = 1 ] && grep -q conflict <<<"$out" && ok "a second init is refused (conflict)" || fail "a second init is refused (conflict)" "rc=$rc $out"

# --- tenants
op tenant create acme --owner owner@example.com >/dev/null && ok "tenant create acme" || fail "tenant create acme"
op tenant create globex --owner owner@example.com >/dev/null && ok "tenant create globex" || fail "tenant create globex"
out=$(op tenant create acme --owner owner@example.com 2>&1); rc=$?
[ $rc = 1 ] && grep -q conflict <<<"$out" && ok "a taken name is refused (conflict)" || fail "a taken name is refused (conflict)" "rc=$rc $out"
out=$(op tenant create 'Not Valid' --owner owner@example.com 2>&1); rc=$?
[ $rc = 1 ] && grep -q invalid_value <<<"$out" && ok "a malformed name is refused (invalid_value)" || fail "a malformed name is refused (invalid_value)" "rc=$rc $out"
names=$(op --json tenant list | python3 -c 'import json,sys;print(" ".join(t["name"] for t in json.load(sys.stdin)["tenants"]))')
[ "$names" = "acme globex" ] && ok "tenant list" || fail "tenant list" "$names"

# --- rotation (ER4): a new version at once; the job destroys the old one
out=$(op --json keys rotate --tenant acme); rc=$?
[ $rc = 0 ] && [ "$(jget kek_version <<<"$out")" = 2 ] && ok "keys rotate makes KEK v2" || fail "keys rotate makes KEK v2" "$out"
timeout 30 "$COFFRE" --socket "$SOCK" keys status --wait --tenant acme >/dev/null
st=$(op --json keys status --tenant acme | python3 -c 'import json,sys;t=json.load(sys.stdin)["tenants"][0];print(" ".join(k["state"] for k in t["keks"]), t["rewrap"][0]["state"])')
[ "$st" = "destroyed active done" ] && ok "the rewrap job finishes and destroys KEK v1" || fail "the rewrap job finishes and destroys KEK v1" "$st"
grep -q '"event":"key_destroyed"' "$SRV_ERR" && ok "the destruction is attested in the log" || fail "the destruction is attested in the log"
out=$(op keys rotate --tenant nobody 2>&1); rc=$?
[ $rc = 1 ] && grep -q not_found <<<"$out" && ok "rotating an unknown tenant: not_found" || fail "rotating an unknown tenant: not_found" "rc=$rc $out"
op keys rotate >/dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok "keys rotate without --tenant is a usage error" || fail "keys rotate without --tenant is a usage error" "rc=$rc"

# --- seal, wrong and right passphrase
op operator seal >/dev/null && ok "operator seal" || fail "operator seal"
[ "$(ccurl "$URL/v1/t/acme/records" | jget error.code)" = sealed ] && ok "sealed again: 503 sealed" || fail "sealed again: 503 sealed"
[ "$(ccurl "$URL/readyz" | jget checks.keys.state)" = sealed ] && ok "/readyz says sealed" || fail "/readyz says sealed"
out=$(op operator unseal --secret-fd 3 3<<<"not the passphrase" 2>&1); rc=$?
[ $rc = 1 ] && grep -q unseal_failed <<<"$out" && ok "a wrong passphrase: unseal_failed" || fail "a wrong passphrase: unseal_failed" "rc=$rc $out"
op operator unseal --secret-fd 3 3<<<"$PASS" >/dev/null && op operator status >/dev/null && ok "the right passphrase unseals" || fail "the right passphrase unseals"

# --- suspension, deletion (PV4)
op tenant suspend globex >/dev/null && [ "$(op --json tenant list | jget tenants.1.state)" = suspended ] && ok "tenant suspend" || fail "tenant suspend"
op tenant resume globex >/dev/null && [ "$(op --json tenant list | jget tenants.1.state)" = active ] && ok "tenant resume" || fail "tenant resume"
op tenant delete globex >/dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok "tenant delete asks for --yes" || fail "tenant delete asks for --yes" "rc=$rc"
gid=$(op --json tenant list | jget tenants.1.id)
out=$(op --json tenant delete globex --yes); rc=$?
[ $rc = 0 ] && [ "$(jget keys_destroyed <<<"$out")" = 5 ] && ok "tenant delete crypto-shreds its KEK and 4 purpose keys" || fail "tenant delete crypto-shreds its KEK and 4 purpose keys" "$out"
n=$(sqlite3 "$DATA/keystore.db" "SELECT count(*) FROM ks_kek WHERE tenant_id = '$gid'; SELECT count(*) FROM ks_destroyed WHERE key_id LIKE '%/$gid/%'" 2>/dev/null | tr '\n' ' ')
[ "$n" = "0 5 " ] && ok "its keys are gone from the keystore and on the destroyed list" || fail "its keys are gone from the keystore and on the destroyed list" "$n"
[ "$(op --json tenant list | python3 -c 'import json,sys;print(len(json.load(sys.stdin)["tenants"]))')" = 1 ] && ok "the tenant is gone from the list" || fail "the tenant is gone from the list"

# --- restart: sealed, keys intact
stop_server
[ "$STOP_RC" = 0 ] && ok "coffred stops cleanly" || fail "coffred stops cleanly" "rc=$STOP_RC"
start_prod "$DATA" || fail "coffred restarts" "$(cat "$SRV_ERR")"
[ "$(ccurl "$URL/readyz" | jget checks.keys.state)" = sealed ] && ok "after a restart the vault is sealed" || fail "after a restart the vault is sealed"
op operator unseal --secret-fd 3 3<<<"$PASS" >/dev/null && ok "...and unseals with the passphrase" || fail "...and unseals with the passphrase"

# --- rekey to shares (ER3): the new shares unseal, one at a time
out=$(op --json operator rekey --provider shares --shares 3 --threshold 2); rc=$?
mapfile -t SH < <(python3 -c 'import json,sys;print("\n".join(json.load(sys.stdin)["shares_out"]))' <<<"$out")
[ $rc = 0 ] && [ ${#SH[@]} = 3 ] && [ "$(jget rk_version <<<"$out")" = 2 ] && ok "rekey to shares: root key v2, 3 shares" || fail "rekey to shares" "rc=$rc"
[ ! -e "$DATA/root-v1.key" ] && ok "the retired key file is destroyed" || fail "the retired key file is destroyed"
op operator seal >/dev/null
out=$(op --json operator unseal --secret-fd 3 3<<<"${SH[0]}"); rc=$?
[ $rc = 0 ] && [ "$(jget shares.given <<<"$out")" = 1 ] && [ "$(jget sealed <<<"$out")" = true ] && ok "one share: accepted, still sealed (1 of 2)" || fail "one share: accepted, still sealed" "$out"
out=$(op operator unseal --secret-fd 3 3<<<"${SH[0]}" 2>&1); rc=$?
[ $rc = 1 ] && grep -q invalid_argument <<<"$out" && ok "the same share twice is refused" || fail "the same share twice is refused" "rc=$rc $out"
out=$(op operator unseal --secret-fd 3 3<<<"${SH[2]}x" 2>&1); rc=$?
[ $rc = 1 ] && grep -q mistyped <<<"$out" && ok "a mistyped share is refused by its checksum" || fail "a mistyped share is refused by its checksum" "rc=$rc $out"
op operator unseal --secret-fd 3 3<<<"${SH[2]}" >/dev/null && op operator status >/dev/null && ok "the second share unseals" || fail "the second share unseals"
op tenant create after-rekey --owner owner@example.com >/dev/null && ok "the vault works under the new root key" || fail "the vault works under the new root key"
stop_server

# --- ER7: a data store refuses a keystore that is not its own
OTHER=$BASE/other
mkdir -m 700 "$OTHER"
start_prod "$OTHER" COFFRE_STORE_URL="sqlite:$DATA/coffre.db" && { fail "a data store refuses an empty keystore"; stop_server; } ||
	{ grep -q 'belongs to keystore' "$SRV_ERR" && ok "a data store bound to one keystore refuses to start with another (ER7)" || fail "a data store refuses an empty keystore" "$(cat "$SRV_ERR")"; }
start_server --log-level warn || fail "a dev coffred starts"
DEVDATA=$SRV_DIR/data
[ "$(ccurl "$URL/readyz" | jget checks.keys.state)" = unsealed ] && ok "--dev initializes and unseals by itself" || fail "--dev initializes and unseals by itself"
[ "$("$COFFRE" --data "$DEVDATA" --json tenant list | jget tenants.0.name)" = dev ] && ok "--dev makes a first tenant" || fail "--dev makes a first tenant"
stop_server
start_prod "$OTHER" COFFRE_KEYS_STORE="sqlite:$DEVDATA/keystore.db" && { fail "production refuses a development keystore"; stop_server; } ||
	{ grep -q "labelled 'development'" "$SRV_ERR" && ok "a production coffred refuses a development keystore (ER7)" || fail "production refuses a development keystore" "$(cat "$SRV_ERR")"; }
"$COFFRED" --dev --data "$DEVDATA" --listen 127.0.0.1:0 >"$BASE/dev2.out" 2>"$BASE/dev2.err" &
SRV_PID=$!
SERVERS+=("$SRV_PID")
for i in $(seq 1 100); do grep -q 'URL:' "$BASE/dev2.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(grep -oE 'URL: +https://127\.0\.0\.1:[0-9]+' "$BASE/dev2.out" | grep -oE '[0-9]+$')
URL=https://127.0.0.1:$PORT
CA=$DEVDATA/tls/ca.pem
[ "$(ccurl "$URL/readyz" | jget checks.keys.state)" = unsealed ] && [ "$("$COFFRE" --data "$DEVDATA" --json tenant list | python3 -c 'import json,sys;print(len(json.load(sys.stdin)["tenants"]))')" = 1 ] &&
	ok "--dev unseals itself again on restart, with the same tenant" || fail "--dev unseals itself again on restart" "$(cat "$BASE/dev2.err")"
stop_server

# --- help
for c in operator tenant keys; do
	"$COFFRE" "$c" --help | grep -q "usage: coffre $c" && ok "coffre $c --help" || fail "coffre $c --help"
done
done_testing
