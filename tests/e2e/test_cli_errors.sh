#!/usr/bin/env bash
# The mvmoe program's error paths: every bad invocation (unknown command or flag, malformed,
# non-finite or out-of-range number, missing value or required flag, conflicting flags) must
# exit 2 with a message that names the offending flag and value, and touch no file; a
# missing or corrupt model/data file must exit 1 with a message naming the file.
# Usage: tests/e2e/test_cli_errors.sh BUILD_DIR   (needs BUILD_DIR/mvmoe; no dataset needed)
set -u
BUILD=${1:-build}
BIN=$BUILD/mvmoe
if [ ! -x "$BIN" ]; then
  echo "test_cli_errors: $BIN is not built (run make)"
  echo "0 passed, 1 failed"
  exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0

# expect CODE NEEDLE... :: ARGS...
# Runs mvmoe ARGS; passes if it exits with CODE and stderr (or, for CODE 0, stdout) holds
# every NEEDLE (fixed strings).
expect() {
  local want=$1; shift
  local needles=()
  while [ $# -gt 0 ] && [ "$1" != "::" ]; do needles+=("$1"); shift; done
  shift
  "$BIN" "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
  local rc=$? where="$TMP/stderr" why=""
  [ "$want" -eq 0 ] && where="$TMP/stdout"
  [ "$rc" -eq "$want" ] || why="exit $rc, expected $want"
  for n in "${needles[@]}"; do
    grep -qF -- "$n" "$where" || why="${why:+$why; }output lacks '$n'"
  done
  if [ -z "$why" ]; then
    passed=$((passed+1))
  else
    failed=$((failed+1))
    echo "FAIL: mvmoe $* -> $why"
    sed 's/^/    | /' "$where" | head -n 8
  fi
}

# check NAME CONDITION-COMMAND...: a plain assertion
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed+1)); else failed=$((failed+1)); echo "FAIL: $name"; fi
}

D="$TMP/nodata"      # a dataset folder that does not exist
O="$TMP/out.safetensors"
T=(train --data "$D" --out "$O")

# ---- top level
expect 2 "usage" :: 
expect 2 "frobnicate" "usage" :: frobnicate
expect 2 "--frob" :: --frob
expect 0 "0.1.0" :: --version
expect 0 "train" "eval" "predict" "info" "presets" :: --help
expect 0 "--data" "--out" "--epochs" :: train --help
expect 0 "--model" "--split" "--logits" :: eval --help
expect 0 "--top" :: predict --help
expect 0 "--preset" :: help info
expect 0 "export" :: --help
expect 0 "--routes" :: eval --help
expect 0 "--onnx" "--int8" "token-learned" :: export --help

# ---- export: required flags (also with --int8), stray arguments
expect 2 "--onnx OUT.onnx is required" :: export --model "$TMP/m.safetensors"
expect 2 "--model M.safetensors is required" :: export --onnx "$TMP/m.onnx"
expect 2 "--onnx OUT.onnx is required" :: export --model "$TMP/m.safetensors" --int8
expect 2 "--int8" :: export --model "$TMP/m.safetensors" --onnx "$TMP/m.onnx" --int8=yes
expect 2 "unexpected argument" :: export stray --model "$TMP/m.safetensors" --onnx "$TMP/m.onnx"
expect 1 "--model" :: export --model "$TMP/m.safetensors" --onnx "$TMP/m.onnx"
expect 1 "--model" :: export --model "$TMP/m.safetensors" --onnx "$TMP/m.onnx" --int8
check "no ONNX file written" test ! -e "$TMP/m.onnx"

# ---- train: unknown flags, bad numbers (each message names the flag and the value)
expect 2 "--bogus" :: "${T[@]}" --bogus
expect 2 "--epochs" "abc" :: "${T[@]}" --epochs abc
expect 2 "--epochs" "'0'" :: "${T[@]}" --epochs 0
expect 2 "--epochs" "3.5" :: "${T[@]}" --epochs 3.5
expect 2 "--epochs" "99999999999999999999" :: "${T[@]}" --epochs 99999999999999999999
expect 2 "--batch" "12x" :: "${T[@]}" --batch 12x
expect 2 "--batch" "' 12'" :: "${T[@]}" --batch " 12"
expect 2 "--batch" "needs a value" :: "${T[@]}" --batch=
expect 2 "--precision" "fp16" "fp32, bf16 or int8" :: "${T[@]}" --precision fp16
expect 2 "--check-out" "--precision" :: bench --preset vit-test-tiny --precision fp32 --precision bf16 --check-out "$TMP/c.st"
expect 2 "--lr" "nan" :: "${T[@]}" --lr nan
expect 2 "--lr" "inf" :: "${T[@]}" --lr inf
expect 2 "--lr" "1e999" :: "${T[@]}" --lr 1e999
expect 2 "--lr" "'0'" :: "${T[@]}" --lr 0
expect 2 "--lr" "-1e-3" :: "${T[@]}" --lr=-1e-3
expect 2 "--val-fraction" "'1'" :: "${T[@]}" --val-fraction 1
expect 2 "--label-smoothing" "1.5" :: "${T[@]}" --label-smoothing 1.5
expect 2 "--seed" "-1" :: "${T[@]}" --seed -1
expect 2 "--seed" "0x10" :: "${T[@]}" --seed 0x10
expect 2 "--randaug" "'2'" :: "${T[@]}" --randaug 2
expect 2 "--randaug" "2,99" :: "${T[@]}" --randaug 2,99
expect 2 "--randaug" "2,,9" :: "${T[@]}" --randaug 2,,9
expect 2 "--routing" "sideways" :: "${T[@]}" --routing sideways
expect 2 "--in-chans" "'9'" :: "${T[@]}" --in-chans 9
expect 2 "--hflip" :: "${T[@]}" --hflip=1
expect 2 "--epochs" "needs a value" :: "${T[@]}" --epochs
expect 2 "--data" "needs a value" :: train --data --out "$O"
expect 2 "--data" "required" :: train --out "$O"
expect 2 "--out" "required" :: train --data "$D"
expect 2 "stray" :: "${T[@]}" stray
expect 2 "--resume" "--init" :: "${T[@]}" --resume --init "$TMP/x.safetensors"
expect 2 "--preset" "--resume" :: "${T[@]}" --resume --preset vit-12x64
check "a usage error writes no checkpoint" test ! -e "$O"
check "a usage error writes no metrics file" test ! -e "$O.metrics.jsonl"

# ---- eval / predict / info / presets usage errors
expect 2 "--data" "required" :: eval --model "$TMP/m.safetensors"
expect 2 "--model" "required" :: eval --data "$D"
expect 2 "--split" "valid" :: eval --model "$TMP/m.safetensors" --data "$D" --split valid
expect 2 "--batch" "-5" :: eval --model "$TMP/m.safetensors" --data "$D" --batch=-5
expect 2 "--mean" "--std" :: eval --model "$TMP/m.safetensors" --data "$D" --mean 0.5 --std 0.5,0.5
expect 2 "--mean" "0.5,x" :: eval --model "$TMP/m.safetensors" --data "$D" --mean 0.5,x --std 1,1
expect 2 "--std" "'0'" :: eval --model "$TMP/m.safetensors" --data "$D" --mean 0.5 --std 0
expect 2 "--json" :: eval --model "$TMP/m.safetensors" --data "$D" --json=yes
expect 2 "--wat" :: eval --model "$TMP/m.safetensors" --data "$D" --wat
expect 2 "IMAGE" :: predict --model "$TMP/m.safetensors"
expect 2 "--top" "'0'" :: predict --model "$TMP/m.safetensors" --top 0 a.png
expect 2 "exactly one" :: info
expect 2 "exactly one" :: info "$TMP/m.safetensors" --preset vit-12x64
expect 2 "no-such-preset" :: info --preset no-such-preset
expect 2 "extra" :: presets extra

# ---- missing or corrupt files: exit 1, the message names the file
expect 1 "--model: " "$TMP/missing.safetensors" :: eval --model "$TMP/missing.safetensors" --data "$D"
expect 1 "$TMP/missing.safetensors" :: info "$TMP/missing.safetensors"
expect 1 "$TMP/missing.safetensors" :: predict --model "$TMP/missing.safetensors" a.png
expect 1 "--init: " "$TMP/missing.safetensors" :: "${T[@]}" --init "$TMP/missing.safetensors"
expect 1 "--data: " "$D" :: "${T[@]}" --preset vit-test-tiny
printf 'this is not a safetensors file' > "$TMP/junk.safetensors"
expect 1 "$TMP/junk.safetensors" :: info "$TMP/junk.safetensors"
expect 1 "$TMP/junk.safetensors" :: eval --model "$TMP/junk.safetensors" --data "$D"
check "a failed run writes no checkpoint" test ! -e "$O"

# ---- outputs that are not regular files: refused before any work, the device left as it was
# (the atomic rename would replace a device node with a regular file; docs/RELIABILITY.md)
for dev in /dev/null /dev/full; do
  [ -c "$dev" ] || continue
  expect 1 "--out '$dev' is not a regular file" :: train --data "$D" --out "$dev" --preset vit-test-tiny
  expect 1 "--logits '$dev' is not a regular file" :: eval --model "$TMP/junk.safetensors" --data "$D" --logits "$dev"
  expect 1 "--out '$dev' is not a regular file" :: superclasses --confusion "$TMP/none.json" --experts 2 --out "$dev"
  expect 1 "--json '$dev' is not a regular file" :: report --out "$TMP/r.html" --json "$dev" --run a="$TMP/none.json"
  check "$dev is still a character device" test -c "$dev"
done
mkdir -p "$TMP/adir" "$TMP/adir2.state.safetensors"
expect 1 "--out '$TMP/adir' is a folder" :: train --data "$D" --out "$TMP/adir" --preset vit-test-tiny
expect 1 "the folder '$TMP/nodir' does not exist" :: report --out "$TMP/nodir/r.html" --run a="$TMP/none.json"
expect 1 "the file beside --out" "is a folder" :: train --data "$D" --out "$TMP/adir2" --preset vit-test-tiny
check "no report written" test ! -e "$TMP/r.html"

# ---- error messages carry no source locations unless asked (--verbose, MVMOE_VERBOSE=1)
"$BIN" info "$TMP/junk.safetensors" 2> "$TMP/plain.err"
check "no [file.c:N] tag without --verbose" bash -c "! grep -qE '\.c:[0-9]+' '$TMP/plain.err'"
"$BIN" --verbose info "$TMP/junk.safetensors" 2> "$TMP/verbose.err"
check "--verbose says where" grep -qE 'raised at [a-z_]+\.c:[0-9]+' "$TMP/verbose.err"
MVMOE_VERBOSE=1 "$BIN" info "$TMP/junk.safetensors" 2> "$TMP/verbose2.err"
check "MVMOE_VERBOSE=1 says where" grep -qE 'raised at [a-z_]+\.c:[0-9]+' "$TMP/verbose2.err"

# ---- things that must work
expect 0 "vit-12x64" :: presets
expect 0 "vit-12x64" "parameters" "flops" "tokens" :: info --preset vit-12x64
expect 0 '"params"' '"flops"' '"config"' :: info --preset vit-12x64 --json

echo "test_cli_errors: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
