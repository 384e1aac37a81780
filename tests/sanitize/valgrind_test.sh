#!/usr/bin/env bash
# The checkpoint and data paths under valgrind memcheck (make valgrind-test), on the normal
# optimized build: the safetensors reader/writer test, every data-layer test, the fuzz replay
# (hostile checkpoints, IDX, CIFAR, images, configs, super-class maps), and a tiny real run:
# train (2 short epochs, checkpoint + optimizer state saved each epoch), --resume, eval, info;
# a per-image MoE model's eval --routes and its ONNX export (float32 and --int8).
# Any invalid read/write, use of uninitialized memory or definite leak fails the step.
# Usage: tests/sanitize/valgrind_test.sh [BUILD=build]
set -u
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
DATA=/usr/share/datasets/fashion-mnist
if ! command -v valgrind > /dev/null; then
  echo "valgrind-test: valgrind is not installed (apt-get install valgrind)"; echo "0 passed, 1 failed"; exit 1
fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# Exit code 99 marks a valgrind report (the programs' own failures exit 1).
# --vex-guest-max-insns: oneDNN's JIT reorder (packing the weights) is long straight-line
# vector code; valgrind 3.19 translating it in superblocks of the default 50 instructions ran
# out of VEX temporary storage ("the 'impossible' happened") and died. 20 translates it.
VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=yes --trace-children=no --vex-guest-max-insns=20)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
passed=0; failed=0
step() {  # name, command...
  local name=$1; shift
  local t0=$SECONDS
  if "${VG[@]}" "$@" > "$T/$name.log" 2>&1; then
    passed=$((passed+1)); echo "ok   $name ($((SECONDS-t0)) s)"
  else
    failed=$((failed+1)); echo "FAIL $name (exit $?, $((SECONDS-t0)) s):"; grep -E '^==[0-9]+==' "$T/$name.log" | head -n 30 | sed 's/^/    /'
    tail -n 5 "$T/$name.log" | sed 's/^/    /'
  fi
}
for t in "$BUILD"/tests/io/test_safetensors "$BUILD"/tests/data/test_* "$BUILD"/tests/regressions/test_fuzz_replay; do
  [ -x "$t" ] && step "$(basename "$t")" "$t"
done
MV="$BUILD/mvmoe"
RUN=(--data "$DATA" --max-images 300 --batch 50 --epochs 2 --dim 16 --depth 2 --heads 2 --mlp-dim 32 --patch 7)
step train "$MV" train "${RUN[@]}" --max-steps 6 --out "$T/m.safetensors"
step train-resume "$MV" train --data "$DATA" --max-images 300 --batch 50 --epochs 2 --resume --out "$T/m.safetensors"
step eval "$MV" eval --model "$T/m.safetensors" --data "$DATA" --max-images 100 --json --logits "$T/l.f32"
step info "$MV" info "$T/m.safetensors"
# per-image MoE: its routes from eval, and the ONNX export (graph builder, protobuf-c writer)
step train-moe "$MV" train "${RUN[@]}" --routing image-learned --experts 3 --top-k 2 --moe-layers 1 --max-steps 2 \
  --out "$T/moe.safetensors"
step eval-routes "$MV" eval --model "$T/moe.safetensors" --data "$DATA" --max-images 20 --routes "$T/r.i64"
step export-onnx "$MV" export --model "$T/moe.safetensors" --onnx "$T/moe.onnx"
step export-onnx-int8 "$MV" export --model "$T/moe.safetensors" --onnx "$T/moe.i8.onnx" --int8
echo "valgrind: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
