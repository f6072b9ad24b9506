#!/usr/bin/env bash
# Users' docs say what the code does, and the project's own checks can fail: every error code is in docs/errors.md with its
# status, and every configuration key is in docs/operating.md.
source "$(dirname "$0")/lib.sh"
missing=
while read -r name status; do
	grep -qE "^\| \`$name\` \| $status \|" "$ROOT/docs/errors.md" || missing+="$name($status) "
done < <(grep -oE 'X\(CF_[A-Z_]+, "[a-z_]+", [0-9]+' "$ROOT/src/base/base.h" | sed -E 's/.*"([a-z_]+)", ([0-9]+)/\1 \2/' | grep -v '^ok ')
[ -z "$missing" ] && ok "docs/errors.md lists every error code with its HTTP status" || fail "docs/errors.md lists every error code with its HTTP status" "missing: $missing"
missing=
while read -r section key; do
	grep -q "\`$section.$key\`" "$ROOT/docs/operating.md" || missing+="$section.$key "
done < <(grep -oE '^\s*(STR|UINT)\("[a-z]+", "[a-z_]+"|^\s*\{"[a-z]+", "[a-z_]+", KEY_' "$ROOT/src/base/config.c" | sed -E 's/.*"([a-z]+)", "([a-z_]+)".*/\1 \2/')
[ -z "$missing" ] && ok "docs/operating.md documents every configuration key" || fail "docs/operating.md documents every configuration key" "missing: $missing"
n=$(grep -cE '^\s*(STR|UINT)\(|KEY_LEVEL, offsetof' "$ROOT/src/base/config.c")
[ "$n" -ge 16 ] && ok "the key table was read ($n keys)" || fail "the key table was read" "$n keys"
grep -q '^make run' "$ROOT/README.md" && grep -q '^make test' "$ROOT/README.md" && ok "README shows make run and make test first" || fail "README shows make run and make test first"
# The banned-function check can fail: a call is caught, a mention in a comment is not.
B=$(new_tmpdir)
printf 'int f(const char *s)\n{\n\treturn atoi(s);\n}\n' >"$B/bad.c"
printf '/* never call atoi(s) or sprintf(x) */\nint g(void);\n' >"$B/good.c"
out=$("$ROOT/scripts/check-banned.sh" "$B/bad.c" 2>&1) && fail "check-banned catches a call to atoi" "$out" || ok "check-banned catches a call to atoi"
out=$("$ROOT/scripts/check-banned.sh" "$B/good.c" 2>&1) && ok "check-banned ignores names in comments" || fail "check-banned ignores names in comments" "$out"
done_testing
