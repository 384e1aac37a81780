#!/usr/bin/env bash
# The bash completion (completions/mvmoe.bash) against the program's own help, so neither can
# drift from the other: `mvmoe <TAB>` offers exactly the commands `mvmoe --help` lists, and
# `mvmoe CMD --<TAB>` exactly the flags `mvmoe CMD --help` lists (flags are read from the
# usage lines and the lines that start with a flag). Values: --preset offers `mvmoe presets`,
# --routing the four routings train --help names. Run once in plain bash and once with the
# bash-completion package's helpers loaded (as an interactive shell has them).
# Usage: tests/e2e/test_completion.sh [BUILD]
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MV=$BUILD/mvmoe
COMP=$ROOT/completions/mvmoe.bash
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

# COMPREPLY for the words given (the last one is being completed), sorted, one per line
complete_words() { # mode words...
  local mode=$1; shift
  bash -c '
    [ "$1" = full ] && source /usr/share/bash-completion/bash_completion
    source "$2"; shift 2
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _mvmoe; printf "%s\n" "${COMPREPLY[@]}"' _ "$mode" "$COMP" "$@" 2>&1 | sort -u | sed '/^$/d'
}
# flags in a help text: every --word on a usage line or a line that starts with a flag, except
# inside quotes (`mvmoe train --metrics` in a description names another command's flag)
help_flags() {
  { "$MV" "$1" --help | grep -E '^(usage:| +(\[|\()?--| +mvmoe )' | sed -e 's/`[^`]*`//g' -e "s/'[^']*'//g" \
      | grep -oE '(^|[^a-z0-9-])--[a-z][a-z0-9-]*' \
      | sed 's/^[^-]*//'; echo --help; } | sort -u
}

cmds=$("$MV" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}' | sort)
[ "$(echo "$cmds" | wc -l)" -ge 8 ] && ok "mvmoe --help lists $(echo $cmds)" || bad "commands from --help: '$cmds'"
modes=(plain)
[ -f /usr/share/bash-completion/bash_completion ] && modes+=(full) \
  || echo "skip: the bash-completion package is missing (scripts/setup.sh installs it); plain bash only"
for mode in "${modes[@]}"; do
  got=$(complete_words $mode mvmoe "" | grep -v -- '^-' | grep -vx -e help -e version)
  [ "$got" = "$cmds" ] && ok "$mode: 'mvmoe <TAB>' = the commands of --help" || bad "$mode: 'mvmoe <TAB>': $(echo $got)"
  got=$(complete_words $mode mvmoe --verbose ev)
  [ "$got" = eval ] && ok "$mode: 'mvmoe --verbose ev<TAB>' -> eval" || bad "$mode: after --verbose: '$got'"
  got=$(complete_words $mode mvmoe help su)
  [ "$got" = superclasses ] && ok "$mode: 'mvmoe help su<TAB>' -> superclasses" || bad "$mode: help: '$got'"
  for c in $cmds; do
    want=$(help_flags "$c")
    got=$(complete_words $mode "$MV" "$c" --)
    if [ "$got" = "$want" ]; then ok "$mode: $c: $(echo "$want" | wc -l) flags = $c --help"
    else bad "$mode: $c: completion and --help differ (< completion only, > help only):"
      diff <(echo "$got") <(echo "$want") | grep '^[<>]' | sed 's/^/    /'; fi
  done
  got=$(complete_words $mode "$MV" train --routing "")
  want=$(printf '%s\n' dense image-superclass image-learned token-learned | sort)
  named=1; for r in $want; do "$MV" train --help | grep -q -- "$r" || named=0; done
  [ "$got" = "$want" ] && [ $named = 1 ] && ok "$mode: train --routing <TAB>: the routings train --help names" \
    || bad "$mode: --routing: '$(echo $got)'"
  got=$(complete_words $mode "$MV" bench --preset "")
  want=$("$MV" presets | awk '{print $1}' | sort)
  [ -n "$want" ] && [ "$got" = "$want" ] && ok "$mode: --preset <TAB>: the presets of 'mvmoe presets'" \
    || bad "$mode: --preset: '$(echo $got)'"
  got=$(complete_words $mode "$MV" eval --json --j)
  [ "$got" = --json ] && ok "$mode: a switch (--json) takes no value" || bad "$mode: after --json: '$got'"
  got=$(complete_words $mode "$MV" eval --batch "")
  [ -z "$got" ] && ok "$mode: a number (--batch) gets no offer" || bad "$mode: --batch offered '$got'"
done

echo "test_completion: $pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
