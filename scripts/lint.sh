#!/usr/bin/env bash
# coffre — static checks: layout (clang-format), banned functions, clang-tidy, cppcheck.
# Usage: scripts/lint.sh [format|banned|tidy|cppcheck]...   (default: all four)
# Prints one TAP line per check, so tests/run-all.sh counts them.
set -uo pipefail
cd "$(dirname "$0")/.."
checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(format banned tidy cppcheck)
mapfile -t sources < <(git ls-files -co --exclude-standard -- 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c' | sort)
mapfile -t csrc < <(printf '%s\n' "${sources[@]}" | grep '^src/.*\.c$')
log=build/lint
mkdir -p "$log"
fail=0
n=0
report() { # name, status, logfile
	n=$((n + 1))
	if [ "$2" -eq 0 ]; then
		echo "ok $n - lint: $1"
	else
		echo "not ok $n - lint: $1"
		sed 's/^/#   /' "$3" | head -40
		fail=1
	fi
}

for c in "${checks[@]}"; do
	case "$c" in
	format)
		clang-format --dry-run --Werror "${sources[@]}" >"$log/format.txt" 2>&1
		report "clang-format (make format fixes it)" $? "$log/format.txt" ;;
	banned)
		scripts/check-banned.sh >"$log/banned.txt" 2>&1
		report "no banned functions" $? "$log/banned.txt" ;;
	tidy)
		# clang-tidy reads the debug build's compile commands, less a gcc-only flag and
		# FORTIFY (its wrappers make the analyzer misread va_lists).
		if [ ! -f build/debug/compile_commands.json ]; then
			cmake --preset debug >/dev/null
		fi
		sed -e 's/ -ftrivial-auto-var-init=zero//g; s/ -D_FORTIFY_SOURCE=3//g' build/debug/compile_commands.json >"$log/compile_commands.json"
		clang-tidy -p "$log" --quiet "${csrc[@]}" >"$log/tidy.txt" 2>&1
		report "clang-tidy (bugprone, cert, clang-analyzer)" $? "$log/tidy.txt" ;;
	cppcheck)
		cppcheck --quiet --enable=warning,performance,portability --error-exitcode=1 \
			--inline-suppr --std=c11 -D_GNU_SOURCE -DCF_VERSION='"lint"' -I src \
			--suppress=missingIncludeSystem "${csrc[@]}" >"$log/cppcheck.txt" 2>&1
		report "cppcheck" $? "$log/cppcheck.txt" ;;
	*) echo "lint: unknown check '$c'" >&2; exit 2 ;;
	esac
done
exit $fail
