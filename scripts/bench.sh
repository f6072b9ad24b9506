#!/usr/bin/env bash
# coffre — run the benchmarks in bench/ (each bench/NAME.sh runs coffre and its peer side
# by side and prints, as its last line, one JSON object of its figures).
# Usage: scripts/bench.sh [NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
all=(bench/*.sh)
if [ $# -gt 0 ] && [ -n "$1" ]; then
	if [ ! -f "bench/$1.sh" ]; then
		echo "bench: no benchmark named '$1' (have: $(printf '%s ' "${all[@]##*/}" | sed 's/\.sh//g'))" >&2
		exit 2
	fi
	all=("bench/$1.sh")
fi
if [ ${#all[@]} -eq 0 ]; then
	echo "bench: no benchmarks yet; each later issue adds its own under bench/"
	exit 0
fi
for b in "${all[@]}"; do
	echo "== $(basename "$b" .sh)"
	bash "$b"
done
