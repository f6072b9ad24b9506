#!/usr/bin/env bash
# coffre — fail when C sources call a banned function (STYLE.md): each has a bounded or
# safer replacement (snprintf, strtoul with checks, gnutls_rnd, fork+exec, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
banned='strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|rand|system|alloca'
# A call is the name as a whole word followed by '('; comments are stripped first.
# Arguments name files or folders to check (default: src tests bench).
[ $# -gt 0 ] || set -- src tests bench
paths=()
for p in "$@"; do [ -e "$p" ] && paths+=("$p"); done
[ ${#paths[@]} -gt 0 ] || { echo "check-banned: none of $* exists" >&2; exit 2; }
hits=$(find "${paths[@]}" \( -name '*.c' -o -name '*.h' \) | sort | while read -r f; do
	sed -e 's://.*$::' "$f" | perl -0pe 's{/\*.*?\*/}{ }gs' |
		grep -nE "(^|[^A-Za-z0-9_])($banned)[[:space:]]*\(" | sed "s|^|$f:|" || true
done)
if [ -n "$hits" ]; then
	echo "banned functions used (STYLE.md):"
	echo "$hits"
	exit 1
fi
echo "check-banned: no banned function in $*"
