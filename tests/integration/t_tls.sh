#!/usr/bin/env bash
# TR1, TR2: TLS 1.2 and 1.3 only, ECDHE only, AEAD only, with real clients (openssl
# s_client, curl). Every refusal is checked against a control: the same client command
# succeeds against an `openssl s_server` that allows it, so a refusal cannot come from the
# client refusing on its own (Debian's OpenSSL refuses TLS 1.1 unless told SECLEVEL=0).
source "$(dirname "$0")/lib.sh"
start_server || exit 1

# handshake HOST:PORT ARGS...: 0 when a TLS session was established.
handshake() {
	local target=$1
	shift
	echo | timeout 10 openssl s_client -connect "$target" -CAfile "$CA" "$@" >"$SRV_DIR/hs" 2>&1
	grep -qE '^New, [^,]+, Cipher is [A-Z0-9_-]+$' "$SRV_DIR/hs"
}

# An RSA certificate too: RSA key exchange and DHE-RSA need one, so their refusal only
# means something when coffred serves RSA (as many production deployments will).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$SRV_DIR/rsa.key" -out "$SRV_DIR/rsa.pem" 2>/dev/null
MAIN=("$SRV_DIR" "$PORT" "$URL" "$CA" "$SRV_PID")
COFFRE_TLS_CERT=${MAIN[0]}/rsa.pem COFFRE_TLS_KEY=${MAIN[0]}/rsa.key start_server || exit 1
RSA_PORT=$PORT
SRV_DIR=${MAIN[0]} PORT=${MAIN[1]} URL=${MAIN[2]} CA=${MAIN[3]} SRV_PID=${MAIN[4]}

# Permissive control servers on the same certificates.
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
CTL_PORT=$(free_port)
CTL_RSA_PORT=$(free_port)
openssl s_server -accept "127.0.0.1:$CTL_PORT" -cert "$SRV_DIR/data/tls/server.pem" \
	-key "$SRV_DIR/data/tls/server.key" -cipher 'ALL:@SECLEVEL=0' -naccept 100 -quiet >/dev/null 2>&1 &
SERVERS+=($!)
openssl s_server -accept "127.0.0.1:$CTL_RSA_PORT" -cert "$SRV_DIR/rsa.pem" -key "$SRV_DIR/rsa.key" \
	-cipher 'ALL:@SECLEVEL=0' -dhparam <(openssl dhparam -dsaparam 2048 2>/dev/null) \
	-naccept 100 -quiet >/dev/null 2>&1 &
SERVERS+=($!)
sleep 1

refused() { # name, coffred port, control port, s_client args...
	local name=$1 port=$2 ctl=$3
	shift 3
	if handshake "127.0.0.1:$ctl" "$@"; then
		ok "control: a permissive server accepts $name"
	else
		fail "control: a permissive server accepts $name" "$(tail -5 "$SRV_DIR/hs")"
	fi
	if handshake "127.0.0.1:$port" "$@"; then
		fail "coffred refuses $name" "$(grep -E '^New' "$SRV_DIR/hs")"
	else
		ok "coffred refuses $name"
	fi
}

refused "TLS 1.0" "$PORT" "$CTL_PORT" -tls1 -cipher 'ALL:@SECLEVEL=0'
refused "TLS 1.1" "$PORT" "$CTL_PORT" -tls1_1 -cipher 'ALL:@SECLEVEL=0'
refused "a CBC suite on TLS 1.2" "$PORT" "$CTL_PORT" -tls1_2 -cipher 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0'
refused "finite-field DHE on TLS 1.2 (RSA certificate)" "$RSA_PORT" "$CTL_RSA_PORT" -tls1_2 -cipher 'DHE-RSA-AES256-GCM-SHA384:@SECLEVEL=0'
refused "RSA key exchange, no forward secrecy (RSA certificate)" "$RSA_PORT" "$CTL_RSA_PORT" -tls1_2 -cipher 'AES256-GCM-SHA384:AES128-GCM-SHA256:@SECLEVEL=0'
refused "a CBC suite with an RSA certificate" "$RSA_PORT" "$CTL_RSA_PORT" -tls1_2 -cipher 'ECDHE-RSA-AES256-SHA384:@SECLEVEL=0'
if handshake "127.0.0.1:$RSA_PORT" -tls1_2 -cipher ECDHE-RSA-AES256-GCM-SHA384 -CAfile "$SRV_DIR/rsa.pem"; then
	ok "an RSA certificate is served with ECDHE-RSA-AES256-GCM on TLS 1.2"
else
	fail "an RSA certificate is served with ECDHE-RSA-AES256-GCM on TLS 1.2" "$(tail -5 "$SRV_DIR/hs")"
fi
# TLS 1.3: the client offers only finite-field groups (OpenSSL 3.0 as a server has none,
# so the control is GnuTLS's own server, allowing them).
GT_PORT=$(free_port)
gnutls-serv --priority 'NORMAL:+GROUP-FFDHE2048' --x509certfile "$SRV_DIR/data/tls/server.pem" \
	--x509keyfile "$SRV_DIR/data/tls/server.key" -p "$GT_PORT" >/dev/null 2>&1 &
SERVERS+=($!)
sleep 0.5
refused "a finite-field group on TLS 1.3" "$PORT" "$GT_PORT" -tls1_3 -groups ffdhe2048

if handshake "127.0.0.1:$PORT" -tls1_2 && grep -q 'ECDHE-ECDSA-AES256-GCM-SHA384' "$SRV_DIR/hs"; then
	ok "TLS 1.2 is accepted with ECDHE and AES-256-GCM"
else
	fail "TLS 1.2 is accepted with ECDHE and AES-256-GCM" "$(tail -5 "$SRV_DIR/hs")"
fi
if handshake "127.0.0.1:$PORT" -tls1_3 && grep -q 'TLSv1.3' "$SRV_DIR/hs" &&
	grep -q 'Verify return code: 0 (ok)' "$SRV_DIR/hs"; then
	ok "TLS 1.3 is accepted and the certificate verifies against the dev CA"
else
	fail "TLS 1.3 is accepted and the certificate verifies against the dev CA" "$(tail -5 "$SRV_DIR/hs")"
fi
if handshake "127.0.0.1:$PORT" -tls1_2 -cipher 'ECDHE-ECDSA-CHACHA20-POLY1305'; then
	ok "ChaCha20-Poly1305 is accepted"
else
	fail "ChaCha20-Poly1305 is accepted"
fi

# A renegotiation request ('R' in s_client) must not be honoured: the request sent after
# it gets no answer because the server has closed the connection. Control: the same
# request without 'R' is answered.
reneg() {
	(sleep 1; [ "$1" = R ] && echo R; sleep 2; printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'; sleep 2) |
		timeout 15 openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 -CAfile "$CA" 2>&1
}
if reneg none | grep -q '"status":"ok"'; then ok "control: a request on a TLS 1.2 connection is answered"; else fail "control: a request on a TLS 1.2 connection is answered"; fi
out=$(reneg R)
if echo "$out" | grep -q 'RENEGOTIATING' && ! echo "$out" | grep -q '"status":"ok"'; then
	ok "client-initiated renegotiation is refused (connection closed, no second handshake)"
else
	fail "client-initiated renegotiation is refused (connection closed, no second handshake)" "$(echo "$out" | tail -5)"
fi

# Keep-alive: curl reuses one TLS connection for two requests.
out=$(curl -sS -v --cacert "$CA" "$URL/healthz" "$URL/healthz" 2>&1)
if echo "$out" | grep -q 'Re-using existing connection' && [ "$(echo "$out" | grep -c '"status":"ok"')" -eq 2 ]; then
	ok "HTTP/1.1 keep-alive: two requests on one TLS connection"
else
	fail "HTTP/1.1 keep-alive: two requests on one TLS connection" "$(echo "$out" | grep -iE 'connect|status' | head)"
fi

# No session tickets (TR2: no keys carried across connections).
handshake "127.0.0.1:$PORT" -tls1_2 -sess_out "$SRV_DIR/sess" || true
if grep -q 'TLS session ticket:' "$SRV_DIR/hs"; then fail "no TLS 1.2 session ticket is issued"; else ok "no TLS 1.2 session ticket is issued"; fi

# The listener speaks TLS only: plain HTTP gets no HTTP answer.
out=$(curl -sS --max-time 5 "http://127.0.0.1:$PORT/healthz" 2>&1)
if echo "$out" | grep -q '"status"'; then fail "plain HTTP is not served" "$out"; else ok "plain HTTP is not served"; fi

done_testing
