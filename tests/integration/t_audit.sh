#!/usr/bin/env bash
# The audit log end to end (AL1, AL5): operator actions on a real coffred become entries,
# the sequencer builds the tree and signs checkpoints, `coffre audit verify` checks the
# database offline, extends a checkpoint kept earlier, and names each kind of tampering
# done to the file directly; `coffre audit verify-proof` gives every Merkle vector its
# wantErr answer.
source "$(dirname "$0")/lib.sh"

export COFFRE_AUDIT_CHECKPOINT_INTERVAL=1
start_server --log-level warn || { fail "coffred starts"; done_testing; exit 1; }
DATA=$SRV_DIR/data
op() { "$COFFRE" --data "$DATA" "$@"; }
for t in acme globex initech; do op tenant create "$t" --owner owner@example.com >/dev/null; done
op keys rotate --tenant acme >/dev/null
op operator unseal --secret-fd 3 3<<<"not it" >/dev/null 2>&1 # refused: already unsealed
n=0
for i in $(seq 1 50); do
	n=$(op --json audit verify | jget sequenced 2>/dev/null || echo 0)
	cps=$(op --json audit verify | jget checkpoints 2>/dev/null || echo 0)
	[ "$n" -ge 5 ] && [ "$cps" -ge 1 ] && break
	sleep 0.2
done
[ "$n" -ge 5 ] && ok "operator actions are entries, sequenced within a second or two" || fail "operator actions are entries, sequenced" "sequenced=$n"
out=$(op --json audit verify); rc=$?
[ $rc = 0 ] && [ "$(jget ok <<<"$out")" = true ] && [ "$(jget checkpoints <<<"$out")" -ge 1 ] && ok "audit verify: the live log verifies, with a signed checkpoint" || fail "audit verify: the live log verifies" "$out"
rows=$(sqlite3 "$DATA/coffre.db" "SELECT action || ':' || outcome || ':' || actor FROM audit_entries ORDER BY id" | tr '\n' ' ')
grep -q 'tenant.create:0:uid=0 ' <<<"$rows" && grep -q 'keys.rotate:0:uid=0' <<<"$rows" && grep -q 'operator.unseal:2:uid=0' <<<"$rows" &&
	ok "entries name the action, the outcome and the operator (AL5)" || fail "entries name the action, outcome and operator" "$rows"
# A customer keeps the published checkpoint, as served by the API.
kept=$(ccurl "$URL/v1/audit/checkpoints/latest") # one answer: its size and note agree
jget checkpoint <<<"$kept" >"$SRV_DIR/trusted.txt"
size1=$(jget size <<<"$kept")
head -1 "$SRV_DIR/trusted.txt" | grep -q '^coffre.audit/' && grep -q $'^\xe2\x80\x94 coffre.audit/' "$SRV_DIR/trusted.txt" &&
	ok "a checkpoint is a C2SP signed note" || fail "a checkpoint is a C2SP signed note" "$(cat "$SRV_DIR/trusted.txt")"
# AL4: searching the log (the deployment's own, and a tenant's)
out=$(op --json audit list --action tenant.create --limit 2)
[ "$(jget entries.0.resource <<<"$out")" = initech ] && [ "$(jget entries.1.resource <<<"$out")" = globex ] &&
	[ "$(python3 -c 'import json,sys;print(len(json.load(sys.stdin)["entries"]))' <<<"$out")" = 2 ] &&
	ok "audit list: filtered by action, newest first, paged" || fail "audit list: filtered by action, newest first" "$out"
next=$(jget next <<<"$out")
out=$(op --json audit list --action tenant.create --limit 2 --cursor "$next")
[ "$(jget entries.0.resource <<<"$out")" = acme ] && ok "audit list: the cursor gives the next page" || fail "audit list: the cursor gives the next page" "$out"
out=$(op --json audit list --action $'tenant.\xff' 2>&1); rc=$?
[ $rc = 2 ] && grep -q 'not UTF-8' <<<"$out" && ok "audit list: a filter that is not UTF-8 is a usage error (it was dropped: every entry listed)" ||
	fail "audit list: a filter that is not UTF-8" "rc=$rc $out"
out=$(op --json audit list --outcome failed)
[ "$(jget entries.0.action <<<"$out")" = operator.unseal ] && [ "$(jget entries.0.error <<<"$out")" = conflict ] &&
	ok "audit list: by outcome, with the error code" || fail "audit list: by outcome" "$out"
out=$(op --json audit list --tenant acme --actor alice@example.com); rc=$?
[ $rc = 0 ] && [ "$(jget entries <<<"$out")" = "[]" ] && ok "audit list --tenant: a tenant's own log, searched by a clear value" || fail "audit list --tenant" "rc=$rc $out"
op audit list --tenant nobody >/dev/null 2>&1; [ $? = 1 ] && ok "audit list of an unknown tenant: an error" || fail "audit list of an unknown tenant: an error"
op tenant create hooli --owner owner@example.com >/dev/null
sleep 1.5
op audit verify --trusted-checkpoint "$SRV_DIR/trusted.txt" >/dev/null && ok "the grown log extends the checkpoint kept earlier" || fail "the grown log extends the checkpoint kept earlier"
# ...and the same, proven online with the API's proofs and checked by the customer's side
latest=$(ccurl "$URL/v1/audit/checkpoints/latest")
size2=$(jget size <<<"$latest")
root2=$(jget root <<<"$latest")
root1=$(sed -n 3p "$SRV_DIR/trusted.txt")
ccurl "$URL/v1/audit/proof/consistency?size1=$size1&size2=$size2" |
	python3 -c 'import json,sys;d=json.load(sys.stdin);d["root1"],d["root2"]=sys.argv[1],sys.argv[2];json.dump(d,sys.stdout)' "$root1" "$root2" >"$SRV_DIR/cons.json"
"$COFFRE" audit verify-proof "$SRV_DIR/cons.json" >/dev/null && [ "$size2" -gt "$size1" ] && ok "a consistency proof from the API shows the log of $size2 extends the kept one of $size1" || fail "a consistency proof from the API" "$(cat "$SRV_DIR/cons.json")"
ccurl "$URL/v1/audit/proof/inclusion?index=1&size=$size2" |
	python3 -c 'import json,sys;d=json.load(sys.stdin);print(json.dumps({"leafIdx":d["index"],"treeSize":d["size"],"leafHash":d["leaf_hash"],"proof":d["proof"],"root":sys.argv[1]}))' "$root2" >"$SRV_DIR/incl.json"
"$COFFRE" audit verify-proof "$SRV_DIR/incl.json" >/dev/null && ok "an inclusion proof from the API verifies against the signed root" || fail "an inclusion proof from the API" "$(cat "$SRV_DIR/incl.json")"
sed -i 's/"leafIdx": 1/"leafIdx": 2/' "$SRV_DIR/incl.json"
! "$COFFRE" audit verify-proof "$SRV_DIR/incl.json" >/dev/null 2>&1 && ok "...and not for another index" || fail "...and not for another index"
stop_server

# --- tampering with the file directly, each on a fresh copy
DB=$DATA/coffre.db
cp "$DB" "$SRV_DIR/pristine.db"
! sqlite3 "$DB" "UPDATE audit_entries SET action = 'x' WHERE leaf_index = 0" 2>/dev/null &&
	! sqlite3 "$DB" "DELETE FROM audit_entries WHERE leaf_index = 0" 2>/dev/null &&
	ok "sequenced entries refuse changes and deletion (triggers)" || fail "sequenced entries refuse changes and deletion"
# An attacker with the file drops the triggers first; the tree catches what follows.
UNGUARD="DROP TRIGGER audit_entries_sealed; DROP TRIGGER audit_entries_kept;"
tamper() { # NAME SQL EXPECTED-PATTERN
	cp "$SRV_DIR/pristine.db" "$DB"
	sqlite3 "$DB" "$UNGUARD $2"
	local out rc
	out=$(op audit verify 2>&1); rc=$?
	[ $rc = 1 ] && grep -q "$3" <<<"$out" && ok "audit verify catches $1" || fail "audit verify catches $1" "rc=$rc $out"
}
tamper "an edited entry" "UPDATE audit_entries SET body = CAST(substr(body, 1, length(body) - 1) || x'ff' AS BLOB) WHERE leaf_index = 0" "entry 0 does not match the tree"
# An attacker who edits an entry and rebuilds the whole stored tree to match (RFC 6962
# hashing, here in Python) is caught by the signed checkpoint.
cp "$SRV_DIR/pristine.db" "$DB"
python3 - "$DB" <<'PY'
import hashlib, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("DROP TRIGGER audit_entries_sealed; DROP TRIGGER audit_entries_kept;")
body = db.execute("SELECT body FROM audit_entries WHERE leaf_index = 0").fetchone()[0]
db.execute("UPDATE audit_entries SET body = ? WHERE leaf_index = 0", (body[:-1] + b"\xff",))
leaves = [hashlib.sha256(b"\0" + b).digest() for (b,) in
          db.execute("SELECT body FROM audit_entries WHERE leaf_index IS NOT NULL ORDER BY leaf_index")]
db.executemany("UPDATE audit_entries SET leaf_hash = ? WHERE leaf_index = ?", [(h, i) for i, h in enumerate(leaves)])
db.execute("DELETE FROM audit_nodes")
level, nodes = 0, leaves
while nodes:
    if level > 0:
        db.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", [(level, i, h) for i, h in enumerate(nodes)])
    nodes = [hashlib.sha256(b"\1" + nodes[i] + nodes[i + 1]).digest() for i in range(0, len(nodes) - 1, 2)]
    level += 1
db.commit()
PY
out=$(op audit verify 2>&1); rc=$?
[ $rc = 1 ] && grep -q 'do not hash to the root signed' <<<"$out" && ok "audit verify catches an edited entry whose stored tree was rebuilt to match" || fail "audit verify catches an edited entry with a rebuilt tree" "rc=$rc $out"
tamper "a damaged entry" "UPDATE audit_entries SET body = x'01' WHERE leaf_index = 0" "entry 0 is damaged"
tamper "an edited row (tenant sequence)" "UPDATE audit_entries SET seq = 9 WHERE leaf_index = 1" "entry 1"
tamper "a removed entry" "DELETE FROM audit_entries WHERE leaf_index = 2" "index 2 is missing"
# Entries 1 and 2 are the dev tenant's first two (its owner's invitation and setup).
tamper "a reordered pair" "UPDATE audit_entries SET leaf_index = -1 WHERE leaf_index = 1; UPDATE audit_entries SET leaf_index = 1 WHERE leaf_index = 2; UPDATE audit_entries SET leaf_index = 2 WHERE leaf_index = -1" "entry 1"
tamper "a forged checkpoint" "UPDATE audit_checkpoints SET note = replace(note, char(10) || (SELECT size FROM audit_checkpoints LIMIT 1) || char(10), char(10) || '999' || char(10))" "checkpoint at size"
tamper "a truncated log" "DELETE FROM audit_entries WHERE leaf_index >= 3" "removed"
cp "$SRV_DIR/pristine.db" "$DB"
op audit verify >/dev/null && ok "the untouched copy still verifies" || fail "the untouched copy still verifies"

# --- AL3: copies to a file, syslog and a second database, resumed after a crash
SINKS=$(new_tmpdir)
python3 - "$SINKS/log.sock" "$SINKS/syslog.txt" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(65536).decode() + "\n")
        f.flush()
PY
SERVERS+=($!)
for i in $(seq 1 50); do [ -S "$SINKS/log.sock" ] && break; sleep 0.1; done
export COFFRE_AUDIT_SINK_FILE=$SINKS/audit.jsonl COFFRE_AUDIT_SINK_SYSLOG=$SINKS/log.sock COFFRE_AUDIT_SINK_STORE=sqlite:$SINKS/copy.db
start_server --log-level warn || fail "coffred starts with sinks"
DATA=$SRV_DIR/data
for t in s1 s2 s3 s4; do op tenant create "$t" --owner owner@example.com >/dev/null; done
indices() { python3 -c 'import json,sys;print(" ".join(str(json.loads(l)["index"]) for l in open(sys.argv[1]) if "\"entry\"" in l))' "$1"; }
upto() { seq -s ' ' 0 $(($1 - 1)); } # "0 1 ... N-1"
# --dev's own init, its first tenant and that tenant's owner (invited, set up), its demo
# collection, then the four above, each with its owner's invitation.
N=13
for i in $(seq 1 30); do [ "$(indices "$SINKS/audit.jsonl" 2>/dev/null)" = "$(upto $N)" ] && break; sleep 0.1; done
[ "$(indices "$SINKS/audit.jsonl")" = "$(upto $N)" ] && ok "the file sink has every entry, in order, within a second or so" || fail "the file sink has every entry" "$(indices "$SINKS/audit.jsonl")"
for i in $(seq 1 30); do grep -q '"type":"checkpoint"' "$SINKS/audit.jsonl" && break; sleep 0.2; done
grep -q '"type":"checkpoint"' "$SINKS/audit.jsonl" && ok "...and the checkpoints" || fail "the file sink has the checkpoints"
n=$(grep -c '^<86>1 .* coffred [0-9]* audit - {"type":"entry"' "$SINKS/syslog.txt")
[ "$n" -ge 4 ] && ok "the syslog sink sends RFC 5424 messages" || fail "the syslog sink sends RFC 5424 messages" "$n: $(head -2 "$SINKS/syslog.txt")"
[ "$(sqlite3 "$SINKS/copy.db" 'SELECT count(*) FROM audit_copy')" = $N ] && ok "the second database has the entries' exact bytes" || fail "the second database has the entries"
cmp <(sqlite3 "$DATA/coffre.db" "SELECT hex(body) FROM audit_entries WHERE leaf_index IS NOT NULL ORDER BY leaf_index") \
	<(sqlite3 "$SINKS/copy.db" 'SELECT hex(body) FROM audit_copy ORDER BY leaf_index') && ok "...byte for byte" || fail "the second database copy is exact"
kill -KILL "$SRV_PID"; wait "$SRV_PID" 2>/dev/null
printf '{"type":"entry","index":%d,"ti' $N >>"$SINKS/audit.jsonl" # a line cut by the crash
"$COFFRED" --dev --data "$DATA" --listen 127.0.0.1:0 >"$SRV_DIR/out2" 2>"$SRV_DIR/err2" &
SRV_PID=$!
SERVERS+=("$SRV_PID")
wait_port "$SRV_DIR/out2" 'URL: +https://127\.0\.0\.1:[0-9]+'
for t in s5 s6; do op tenant create "$t" --owner owner@example.com >/dev/null; done
M=$((N + 5)) # the restart's unseal, then two tenants and their owners
for i in $(seq 1 30); do [ "$(indices "$SINKS/audit.jsonl" 2>/dev/null)" = "$(upto $M)" ] && break; sleep 0.1; done
[ "$(indices "$SINKS/audit.jsonl")" = "$(upto $M)" ] && ok "after a SIGKILL the file sink resumes exactly: no gap, no duplicate, the cut line gone" || fail "the file sink resumes exactly after a crash" "$(indices "$SINKS/audit.jsonl"; tail -c 300 "$SINKS/audit.jsonl")"
for i in $(seq 1 30); do [ "$(sqlite3 "$SINKS/copy.db" 'SELECT count(*) FROM audit_copy')" = $M ] && break; sleep 0.1; done
[ "$(sqlite3 "$SINKS/copy.db" 'SELECT count(*), min(leaf_index), max(leaf_index) FROM audit_copy')" = "$M|0|$((M - 1))" ] && ok "...and so does the second database" || fail "the store sink resumes" "$(sqlite3 "$SINKS/copy.db" 'SELECT count(*) FROM audit_copy')"
got=$(grep -o '"index":[0-9]*' "$SINKS/syslog.txt" | grep -oE '[0-9]+' | sort -nu | tr '\n' ' ')
[ "$got" = "$(upto $M) " ] && ok "...and syslog has every index (at least once)" || fail "syslog resumes" "$got"
stop_server
unset COFFRE_AUDIT_SINK_FILE COFFRE_AUDIT_SINK_SYSLOG COFFRE_AUDIT_SINK_STORE

# --- proof files: every vector gets its wantErr answer
wrong=0 total=0
while IFS= read -r f; do
	total=$((total + 1))
	if "$COFFRE" audit verify-proof "$f" >/dev/null 2>&1; then got=false; else got=true; fi
	want=$(python3 -c 'import json,sys;print(str(json.load(open(sys.argv[1]))["wantErr"]).lower())' "$f" 2>/dev/null || echo true)
	[ "$got" = "$want" ] || { wrong=$((wrong + 1)); echo "# wrong answer for $f" >&2; }
done < <(find "$ROOT/tests/vectors/merkle" -name '*.json' | sort)
[ "$total" -ge 190 ] && [ $wrong = 0 ] && ok "audit verify-proof gives all $total Merkle vectors their wantErr answer" || fail "audit verify-proof on the Merkle vectors" "$wrong of $total wrong"
"$COFFRE" audit --help | grep -q 'usage: coffre audit verify' && ok "coffre audit --help" || fail "coffre audit --help"
"$COFFRE" audit bogus >/dev/null 2>&1; [ $? = 2 ] && ok "coffre audit with an unknown command exits 2" || fail "coffre audit with an unknown command exits 2"
done_testing
