#!/usr/bin/env bash
# coffre — run every libFuzzer target for N seconds (default 300), growing its corpus in
# build/fuzz/work/NAME. A crash leaves its input in build/fuzz/crashes/ and fails.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
rc=0
mkdir -p build/fuzz/crashes
for t in build/fuzz/tests/fuzz/fuzz_*; do
	[ -x "$t" ] || continue
	name=${t##*/fuzz_}
	work=build/fuzz/work/$name
	mkdir -p "$work"
	cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null
	echo "fuzz $name for ${secs}s"
	if ! "$t" -max_total_time="$secs" -max_len=8192 -artifact_prefix="build/fuzz/crashes/$name-" \
		-print_final_stats=1 "$work" 2>&1 | grep -E 'DONE|ERROR|SUMMARY|stat::number_of_executed_units'; then
		:
	fi
	if ls build/fuzz/crashes/"$name"-* >/dev/null 2>&1; then
		echo "fuzz $name: CRASH, inputs in build/fuzz/crashes/"
		rc=1
	fi
done
exit $rc
