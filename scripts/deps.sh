#!/usr/bin/env bash
# coffre — install the Debian 12 packages coffre needs to build, run and test.
# Idempotent: prints what it installs, and does nothing when everything is present.
# Every dependency coffre gains is added here (and chosen in DESIGN.md §4).
set -euo pipefail

packages=(
	# build
	gcc make cmake pkgconf
	# libraries (DESIGN.md §4)
	libgnutls28-dev libmicrohttpd-dev libjansson-dev libinih-dev libcurl4-gnutls-dev
	libsqlite3-dev libpq-dev libargon2-dev libgfshare-dev libp11-kit-dev
	libpwquality-dev cracklib-runtime liboath-dev libqrencode-dev
	# tests: unit (cmocka), fuzz (clang + libFuzzer runtime), real clients
	libcmocka-dev clang libclang-rt-14-dev
	curl openssl gnutls-bin testssl.sh python3 procps util-linux sqlite3
	# a real PostgreSQL 15 (server, initdb, pgbench) that the tests start themselves
	postgresql-15
	# an independent AES-SIV for the cross-check of ours; a real PKCS#11 token (SoftHSM2)
	python3-cryptography softhsm2
	# the OpenAPI description is read by a test
	python3-yaml
	# identity interop: tokens checked by PyJWT, TOTP codes made by oathtool, a token
	# asked by a standard OAuth 2.0 client (requests-oauthlib)
	python3-jwt oathtool python3-requests-oauthlib
	# lint
	clang-format clang-tidy cppcheck
	# benchmarks' peers and load generators (make bench): nginx (the HTTP ceiling),
	# wrk, h2load (nghttp2-client); pgcrypto comes with postgresql-15
	nginx-light wrk nghttp2-client
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: these Debian packages are missing and installing them needs root:" >&2
	echo "      sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Package lists are missing on a fresh machine, and may be stale on an old one.
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
	apt-get update -qq
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/coffre-deps.log 2>&1; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/coffre-deps.log 2>&1 || {
		tail -20 /tmp/coffre-deps.log >&2
		echo "deps: apt-get install failed (log: /tmp/coffre-deps.log)" >&2
		exit 1
	}
fi
echo "deps: installed ${#missing[@]} package(s)"
