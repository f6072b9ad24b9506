#!/usr/bin/env bash
# make bench BENCH=crypto: seal/open throughput of coffre's envelope (a fresh DEK, its
# AES-256-SIV wrap and the AES-256-GCM seal, per value) at 1 KiB and 64 KiB, directly and
# through the keyring's handles (a real keystore in a temporary folder), against a
# bare GnuTLS AES-256-GCM loop on one pre-initialised key (the ceiling), in one run; and
# gnutls-cli --benchmark-ciphers beside it for reference (it measures AES-128-GCM at
# 16 KiB, once per run). Medians of 3 rounds. The last line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/release/crypto_bench
[ -x "$B" ] || { cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" >/dev/null; }
ROUNDS=${BENCH_ROUNDS:-3}
out=$(mktemp)
trap 'rm -rf "$out" /tmp/cf_bench_kr_*' EXIT
for r in $(seq 1 "$ROUNDS"); do
	echo "-- round $r"
	"$B" 1 | tee -a "$out" | sed 's/^/  /'
done
# once: it benchmarks every cipher GnuTLS has, about a minute
g=$(timeout 180 gnutls-cli --benchmark-ciphers 2>/dev/null | awk '/AES-128-GCM/ {v=$2; u=$3; if (u ~ /^GB/) v*=1000; print v; exit}')
echo "gnutls_cli_aes128gcm_16k_mbps ${g:-0}" | tee -a "$out" | sed 's/^/  /'
python3 - "$out" <<'PY'
import json, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    vals.setdefault(k, []).append(float(v))
med = {k: round(statistics.median(v), 3) for k, v in vals.items()}
print(json.dumps(med))
PY
