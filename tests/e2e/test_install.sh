#!/usr/bin/env bash
# `make install` / `make uninstall` into temporary prefixes, then the installed products are
# used as a user would: a C program built with `pkg-config --cflags --libs mvmoe` against the
# shared library (and once statically with --static), the soname and exported symbols read
# with readelf/nm, the installed `mvmoe --version`, the man page rendered with `man -l`, the
# bash completion sourced, the Python package imported from the prefix (it finds its library
# there). A DESTDIR install puts the same files under the staging folder with the final prefix
# written inside them. Uninstall leaves nothing behind.
# Usage: tests/e2e/test_install.sh [BUILD]   (needs `make lib`: BUILD/libmvmoe.so)
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
if [ ! -e "$BUILD/libmvmoe.so" ] || [ ! -e "$BUILD/man/mvmoe.1" ]; then
  echo "skip: $BUILD/libmvmoe.so or $BUILD/man/mvmoe.1 is not built (run make lib BUILD=...)"; exit 77
fi
for tool in pkg-config readelf nm cc; do
  command -v $tool > /dev/null || { echo "skip: $tool is missing (scripts/setup.sh installs it)"; exit 77; }
done
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# a make started by this test is not part of the make that may run the suite
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" BUILD="$BUILD" "$@"; }

ver() { sed -n "s/^#define MVMOE_VERSION_$1 *\([0-9][0-9]*\) *$/\1/p" "$ROOT/include/mvmoe.h"; }
MAJOR=$(ver MAJOR); VERSION=$MAJOR.$(ver MINOR).$(ver PATCH)
[ -n "$MAJOR" ] && [ "$VERSION" != "$MAJOR.." ] && ok "version $VERSION from include/mvmoe.h" || bad "no version in the header"

P=$T/prefix
mk install PREFIX="$P" > "$T/install.log" 2>&1 && ok "make install PREFIX=$P" || { bad "make install"; tail -20 "$T/install.log"; }
PY=lib/python3/dist-packages/mvmoe
missing=()
for f in bin/mvmoe lib/libmvmoe.so.$VERSION lib/libmvmoe.so.$MAJOR lib/libmvmoe.so lib/libmvmoe.a \
         include/mvmoe.h lib/pkgconfig/mvmoe.pc share/man/man1/mvmoe.1 \
         share/bash-completion/completions/mvmoe $PY/__init__.py $PY/_lib.py $PY/_installed.py; do
  [ -e "$P/$f" ] || missing+=("$f")
done
[ ${#missing[@]} -eq 0 ] && ok "every product installed" || bad "not installed: ${missing[*]}"
[ "$(readlink "$P/lib/libmvmoe.so")" = "libmvmoe.so.$MAJOR" ] && [ "$(readlink "$P/lib/libmvmoe.so.$MAJOR")" = "libmvmoe.so.$VERSION" ] \
  && ok "libmvmoe.so -> libmvmoe.so.$MAJOR -> libmvmoe.so.$VERSION" || bad "library links: $(ls -l "$P"/lib/libmvmoe.so*)"

# soname and exports
soname=$(readelf -d "$P/lib/libmvmoe.so.$VERSION" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libmvmoe.so.$MAJOR" ] && ok "soname $soname" || bad "soname '$soname', expected libmvmoe.so.$MAJOR"
declared=$(cc -fpreprocessed -dD -E -P "$ROOT/include/mvmoe.h" | grep -o 'mvmoe_[a-z0-9_]*[[:space:]]*(' | tr -d ' (' | sort -u)
exported=$(nm -D --defined-only "$P/lib/libmvmoe.so.$VERSION" | awk '$2 ~ /^[TDBVWRi]$/ {print $3}' | sed 's/@.*//' | sort -u)
notexp=$(comm -23 <(echo "$declared") <(echo "$exported"))
extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
[ "$(echo "$declared" | wc -l)" -gt 40 ] && [ -z "$notexp" ] && ok "all $(echo "$declared" | wc -l) functions of mvmoe.h exported" \
  || bad "declared in mvmoe.h but not exported: $notexp"
[ -z "$extra" ] && ok "nothing else exported (internal functions stay hidden)" || bad "exported beyond mvmoe.h: $(echo $extra | head -c 300)"

# pkg-config and a program built against the installed copy
export PKG_CONFIG_PATH=$P/lib/pkgconfig
[ "$(pkg-config --modversion mvmoe)" = "$VERSION" ] && ok "pkg-config --modversion mvmoe = $VERSION" \
  || bad "pkg-config: '$(pkg-config --modversion mvmoe 2>&1)'"
cat > "$T/prog.c" <<'EOF'
/* creates a model, runs it, saves it, loads it back, runs it again: same logits */
#include <mvmoe.h>
#include <stdio.h>
#include <string.h>
#define FAIL(what) do { fprintf(stderr, "%s: %s\n", what, mvmoe_last_error()); return 1; } while (0)
int main(int argc, char **argv) {
    mvmoe_config c;
    memset(&c, 0, sizeof c);
    mvmoe_model *m = NULL, *back = NULL;
    if (mvmoe_config_preset(&c, "vit-test-tiny") != MVMOE_OK) FAIL("preset");
    if (mvmoe_model_create(&m, &c, 1) != MVMOE_OK) FAIL("create");
    unsigned char img[2 * 64];
    for (int i = 0; i < 2 * 64; i++) img[i] = (unsigned char)(i * 37);
    float a[2 * 10], b[2 * 10];
    if (mvmoe_model_logits(m, img, 2, a) != MVMOE_OK) FAIL("logits");
    if (mvmoe_model_save(m, argv[1]) != MVMOE_OK) FAIL("save");
    if (mvmoe_model_load(&back, argv[1], NULL) != MVMOE_OK) FAIL("load");
    if (mvmoe_model_logits(back, img, 2, b) != MVMOE_OK) FAIL("logits after load");
    if (mvmoe_model_load(&back, "/nonexistent.safetensors", NULL) == MVMOE_OK) return 1;
    printf("header %s library %s params %zu same %d error '%s'\n", MVMOE_VERSION, mvmoe_version(),
           mvmoe_config_num_params(mvmoe_model_config(m)), !memcmp(a, b, sizeof a),
           mvmoe_status_name(MVMOE_ERR_IO));
    mvmoe_model_free(m);
    mvmoe_config_free(&c);
    (void)argc;
    return 0;
}
EOF
# shellcheck disable=SC2046
cc -std=c17 -Wall -Werror -o "$T/prog" "$T/prog.c" $(pkg-config --cflags --libs mvmoe) > "$T/cc.log" 2>&1 \
  && ok "cc prog.c \$(pkg-config --cflags --libs mvmoe)" || { bad "build against the installed library"; cat "$T/cc.log"; }
readelf -d "$T/prog" 2>/dev/null | grep -q "NEEDED.*\[libmvmoe.so.$MAJOR\]" && ok "the program needs libmvmoe.so.$MAJOR" \
  || bad "the program does not link libmvmoe.so.$MAJOR"
want="header $VERSION library $VERSION params 5018 same 1 error 'I/O error'"
out=$(LD_LIBRARY_PATH=$P/lib "$T/prog" "$T/m.safetensors" 2>&1)
[ "$out" = "$want" ] && ok "it runs on the installed library: $out" || bad "program: '$out', expected '$want'"
ldd_line=$(LD_LIBRARY_PATH=$P/lib ldd "$T/prog" | grep libmvmoe)
case $ldd_line in *"$P/lib/libmvmoe.so.$MAJOR"*) ok "loaded from the prefix: $ldd_line" ;; *) bad "loaded from: $ldd_line" ;; esac
# static: the archive plus Libs.private
cc -std=c17 -o "$T/prog-static" "$T/prog.c" $(pkg-config --cflags mvmoe) -Wl,--as-needed -l:libmvmoe.a \
   $(pkg-config --static --libs mvmoe) > "$T/ccs.log" 2>&1 \
  && ok "static link with pkg-config --static --libs" || { bad "static link"; cat "$T/ccs.log"; }
! readelf -d "$T/prog-static" 2>/dev/null | grep -q "libmvmoe" && [ "$("$T/prog-static" "$T/s.safetensors" 2>&1)" = "$want" ] \
  && ok "the static program runs without libmvmoe.so" || bad "static program: $("$T/prog-static" "$T/s.safetensors" 2>&1)"

# the installed program
[ "$("$P/bin/mvmoe" --version)" = "mvmoe $VERSION" ] && [ "$("$P/bin/mvmoe" version)" = "mvmoe $VERSION" ] \
  && ok "installed mvmoe --version / version: mvmoe $VERSION" || bad "mvmoe --version: $("$P/bin/mvmoe" --version 2>&1)"
"$P/bin/mvmoe" info "$T/m.safetensors" > "$T/info.txt" 2>&1 && grep -q "5,018" "$T/info.txt" \
  && ok "installed mvmoe reads the C program's checkpoint" || { bad "mvmoe info"; cat "$T/info.txt"; }

# the man page renders, with one section per command of `mvmoe --help`
MANPAGE=$P/share/man/man1/mvmoe.1
# (groff's warnings, e.g. of a malformed request, go to stderr: there must be none)
if command -v man > /dev/null; then render() { MANWIDTH=100 MAN_KEEP_FORMATTING= man -l "$1"; }
elif command -v groff > /dev/null; then render() { groff -ww -man -Tutf8 "$1"; }
elif command -v nroff > /dev/null; then render() { nroff -ww -man "$1"; }
else echo "skip: neither man, groff nor nroff (scripts/setup.sh installs man-db)"; exit 77; fi
render "$MANPAGE" 2> "$T/man.err" | sed 's/.\x08//g' > "$T/man.txt"
grep -q "^NAME" "$T/man.txt" && grep -q "mvmoe $VERSION" "$T/man.txt" && [ ! -s "$T/man.err" ] \
  && ok "man -l renders the installed page ($(wc -l < "$T/man.txt") lines, no warning)" \
  || { bad "man page"; head -20 "$T/man.err" "$T/man.txt"; }
cmds=$("$P/bin/mvmoe" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}')
nomissing=1
for c in $cmds; do
  grep -q "^ *mvmoe $c\$" "$T/man.txt" || { nomissing=0; bad "man page: no section 'mvmoe $c'"; }
  # each section holds the command's own usage line
  grep -q "usage: mvmoe $c" "$T/man.txt" || { nomissing=0; bad "man page: no usage line of $c"; }
done
[ -n "$cmds" ] && [ $nomissing = 1 ] && ok "man page: a section per command ($(echo $cmds))"

# bash completion from the installed file
comp=$(bash -c 'source "$1"; COMP_WORDS=(mvmoe tr); COMP_CWORD=1; _mvmoe; echo "${COMPREPLY[*]}"' _ \
       "$P/share/bash-completion/completions/mvmoe" 2>&1)
[ "$comp" = "train" ] && ok "installed bash completion: 'mvmoe tr<TAB>' -> train" || bad "completion: '$comp'"

# the Python package from the prefix finds its library there (not the build tree's)
if /usr/bin/python3 -c "import numpy" 2> /dev/null; then
  out=$(cd "$T" && env -u MVMOE_LIB PYTHONPATH="$P/lib/python3/dist-packages" /usr/bin/python3 -c '
import sys, mvmoe
m = mvmoe.Model(sys.argv[1])
print(mvmoe.library_path, mvmoe.version(), m.info["params"], m.predict(__import__("numpy").zeros((2, 8, 8), "uint8")).shape)' \
    "$T/m.safetensors" 2>&1)
  [ "$out" = "$P/lib/libmvmoe.so.$MAJOR $VERSION 5018 (2, 10)" ] && ok "installed Python package: $out" || bad "python: $out"
else
  bad "python3-numpy is missing (scripts/setup.sh installs it)"
fi

# DESTDIR staging: files under the stage, the final prefix inside them
S=$T/stage
mk install DESTDIR="$S" PREFIX=/usr > "$T/stage.log" 2>&1 && [ -x "$S/usr/bin/mvmoe" ] && [ -e "$S/usr/lib/libmvmoe.so.$VERSION" ] \
  && ok "make install DESTDIR=... PREFIX=/usr stages under DESTDIR" || { bad "DESTDIR install"; tail -5 "$T/stage.log"; }
grep -qx "prefix=/usr" "$S/usr/lib/pkgconfig/mvmoe.pc" && grep -qx 'libdir=${prefix}/lib' "$S/usr/lib/pkgconfig/mvmoe.pc" \
  && [ "$(PKG_CONFIG_PATH=$S/usr/lib/pkgconfig pkg-config --variable=libdir mvmoe)" = /usr/lib ] \
  && ok "staged mvmoe.pc names the final prefix" || bad "staged mvmoe.pc: $(head -3 "$S/usr/lib/pkgconfig/mvmoe.pc")"
out=$(cd "$T" && env -u MVMOE_LIB PYTHONPATH="$S/usr/lib/python3/dist-packages" /usr/bin/python3 -c \
      'import mvmoe; print(mvmoe.library_path)' 2>&1)
[ "$out" = "$S/usr/lib/libmvmoe.so.$MAJOR" ] && ok "staged Python package finds the staged library" || bad "staged python: $out"

# uninstall removes exactly what install wrote
mk uninstall PREFIX="$P" > "$T/un.log" 2>&1 && ok "make uninstall" || { bad "make uninstall"; cat "$T/un.log"; }
left=$(find "$P" \( -type f -o -type l \) | sed "s|^$P/||")
[ -z "$left" ] && ok "nothing left in the prefix after uninstall" || bad "left after uninstall: $left"
mk uninstall DESTDIR="$S" PREFIX=/usr > /dev/null 2>&1
left=$(find "$S" \( -type f -o -type l \))
[ -z "$left" ] && ok "nothing left in the stage after uninstall" || bad "left in the stage: $left"

echo "test_install: $pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
