#!/usr/bin/env bash
# arm64 (docs/EDGE.md, "arm64"): the runtime cross-built for arm64 Linux (make runtime-aarch64,
# static, Debian's gcc-aarch64-linux-gnu) and run under qemu-aarch64-static. Timings under qemu
# mean nothing; this checks correctness only.
#  1. the build: no compiler warnings (the one known linker note about libgomp's dlopen aside);
#  2. the NEON kernels against the plain-C reference (tests/runtime/rt_neon_check.c), under a CPU
#     model without the dot-product extension (cortex-a53: the widening-multiply int8 path) and
#     two with it (cortex-a76, max: SDOT); each run must find the extension as expected, and the
#     dispatcher (when linked) must choose the implementation the CPU allows; MVMOE_ISA=neon and
#     MVMOE_ISA=plain force the others. The runtime's own kernel test (test_rt_kernels), when
#     present, runs under both kinds of CPU too;
#  3. when the runtime program exists (cli/run): tiny dense and MoE (image-learned, 4 experts,
#     k = 2) models trained a few steps with build/mvmoe, then the arm64 mvmoe-run's logits on
#     test images against the x86 mvmoe-run's: fp32 within 1e-5 relative (max |a-b| / max |b|),
#     int8 top-1 identical (identical bits reported), and the arm64 int8 logits the same bits
#     with SDOT (max) and without (cortex-a53), since the int8 sums are exact integers.
# Usage: test_aarch64.sh [BUILD]   (the build folder; arm64 products go to BUILD/aarch64)
set -u
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
A64=$BUILD/aarch64
QEMU=qemu-aarch64-static
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
NIMG=300
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
finish() { echo "test_aarch64: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit; }
for tool in aarch64-linux-gnu-gcc "$QEMU"; do
  command -v "$tool" > /dev/null || { echo "skip: $tool is missing (scripts/setup.sh installs it)"; exit 77; }
done
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

# ---------------------------------------------------------------- 1. build
if ! make -C "$ROOT" -j2 BUILD="$BUILD" runtime-aarch64 > "$T/make.log" 2>&1; then
  bad "make runtime-aarch64 failed:"; tail -20 "$T/make.log"; finish
fi
# make's own notes (a jobserver reset when this runs under another make, as in asan-test) are
# not compiler warnings.
warn=$(grep -i 'warning' "$T/make.log" | grep -v "Using 'dlopen' in statically linked" \
       | grep -v -E '^make(\[[0-9]+\])?: warning:')
if [ -z "$warn" ]; then ok "make runtime-aarch64 built $(cd "$A64" && find . -type f -perm -u+x | sort | tr '\n' ' ')"
else bad "make runtime-aarch64 warned:"; echo "$warn" | head -20; fi
static_a64() {  # an AArch64 executable with no program interpreter (no dynamic loader)
  aarch64-linux-gnu-readelf -h "$1" 2> /dev/null | grep -q 'Machine:.*AArch64' \
    && ! aarch64-linux-gnu-readelf -l "$1" 2> /dev/null | grep -q INTERP
}
for b in "$A64/tests/runtime/rt_neon_check" "$A64/mvmoe-run"; do
  [ -e "$b" ] || continue
  if static_a64 "$b"; then ok "${b#"$BUILD"/} is a static arm64 executable ($(stat -c %s "$b") bytes)"
  else bad "${b#"$BUILD"/} is not a static arm64 executable"; fi
done

# ---------------------------------------------------------------- 2. kernels under qemu
a64() { local cpu=$1; shift; QEMU_CPU=$cpu "$QEMU" "$@"; }
kernels() {  # cpu expect-dotprod [env...]
  local cpu=$1 dp=$2; shift 2
  local out rc=0
  out=$(env "$@" QEMU_CPU="$cpu" "$QEMU" "$A64/tests/runtime/rt_neon_check" --expect-dotprod "$dp" 2>&1) || rc=$?
  local chose; chose=$(sed -n 's/.*mvmoe_rt_kernels_get() chose \(.*\)/\1/p' <<< "$out")
  if [ "$rc" -eq 0 ]; then
    ok "rt_neon_check on $cpu${*:+ ($*)}: dot-product extension $dp; dispatcher chose ${chose:-(not linked)}; $(tail -1 <<< "$out")"
  else bad "rt_neon_check on $cpu${*:+ ($*)} (rc $rc):"; tail -15 <<< "$out"; fi
}
kernels cortex-a53 no
kernels cortex-a76 yes
kernels max yes
kernels max yes MVMOE_ISA=neon
kernels max yes MVMOE_ISA=plain
if [ -x "$A64/tests/runtime/test_rt_kernels" ]; then
  for cpu in cortex-a53 max; do
    if out=$(a64 "$cpu" "$A64/tests/runtime/test_rt_kernels" 2>&1); then ok "test_rt_kernels on $cpu: $(tail -1 <<< "$out")"
    else bad "test_rt_kernels on $cpu:"; tail -15 <<< "$out"; fi
  done
elif [ -e "$ROOT/tests/runtime/test_rt_kernels.c" ]; then
  bad "tests/runtime/test_rt_kernels.c exists but make runtime-aarch64 did not build it"
fi

# ---------------------------------------------------------------- 3. arm64 vs x86 mvmoe-run
if [ ! -d "$ROOT/cli/run" ]; then
  echo "skip part 3 (arm64 vs x86 mvmoe-run logits): cli/run is not in this tree, so there is no mvmoe-run to compare"
  finish
fi
[ -x "$A64/mvmoe-run" ] || { bad "cli/run exists but $A64/mvmoe-run was not built"; finish; }
if [ ! -x "$BUILD/mvmoe-run" ] && ! make -C "$ROOT" -j2 BUILD="$BUILD" runtime > "$T/make-x86.log" 2>&1; then
  bad "make runtime (x86) failed:"; tail -10 "$T/make-x86.log"; finish
fi
[ -x "$BUILD/mvmoe" ] || { bad "$BUILD/mvmoe is missing (make): it trains the models compared here"; finish; }
[ -d "$DATA" ] || { echo "skip part 3: $DATA is missing (scripts/setup.sh)"; finish; }

# the first NIMG images of each split, uncompressed (qemu runs the arm64 program slowly)
mkdir -p "$T/data"
if ! "$PY" - "$DATA" "$T/data" "$NIMG" <<'PYEOF'
import gzip, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for split in ("train", "t10k"):
    for kind, magic in (("images-idx3", 2051), ("labels-idx1", 2049)):
        b = gzip.open(f"{src}/{split}-{kind}-ubyte.gz").read()
        assert struct.unpack(">I", b[:4])[0] == magic
        if kind.startswith("images"):
            rows, cols = struct.unpack(">II", b[8:16])
            out = struct.pack(">IIII", magic, n, rows, cols) + b[16:16 + n * rows * cols]
        else:
            out = struct.pack(">II", magic, n) + b[8:8 + n]
        open(f"{dst}/{split}-{kind}-ubyte", "wb").write(out)
PYEOF
then bad "could not write the $NIMG-image data subset"; finish; fi

MODEL=(--dim 32 --depth 3 --heads 2 --mlp-dim 64 --patch 7)
TRAIN=(--data "$DATA" --max-images 2000 --batch 32 --lr 2e-3 --warmup 0 --seed 1 --epochs 1 --max-steps 60
       --eval-every 0)
compare() {  # what a.f32 b.f32 mode: prints a verdict line, exit status 0 when it holds
  "$PY" - "$@" <<'PYEOF'
import array, math, sys
what, fa, fb, mode = sys.argv[1:5]
a, b = array.array("f"), array.array("f")
a.frombytes(open(fa, "rb").read()); b.frombytes(open(fb, "rb").read())
C = 10
if len(a) != len(b) or len(a) == 0 or len(a) % C:
    print(f"{what}: {len(a)} vs {len(b)} logits"); sys.exit(1)
if any(math.isnan(x) or math.isinf(x) for x in list(a) + list(b)):
    print(f"{what}: non-finite logits"); sys.exit(1)
rel = max(abs(x - y) for x, y in zip(a, b)) / max(max(abs(y) for y in b), 1e-30)
top = lambda v, i: max(range(C), key=lambda c: v[i * C + c])
n = len(a) // C
same_top = sum(top(a, i) == top(b, i) for i in range(n))
bits = a.tobytes() == b.tobytes()
print(f"{what}: {n} images, max rel diff {rel:.2e}, top-1 equal on {same_top}/{n}, "
      f"{'identical bits' if bits else 'bits differ'}")
ok = {"fp32": rel <= 1e-5, "top1": same_top == n, "bits": bits}[mode]
sys.exit(0 if ok else 1)
PYEOF
}
for m in dense moe; do
  flags=(); [ "$m" = moe ] && flags=(--routing image-learned --experts 4 --moe-layers 1 --top-k 2)
  if ! "$BUILD/mvmoe" train "${TRAIN[@]}" "${MODEL[@]}" "${flags[@]}" --out "$T/$m.safetensors" > "$T/$m.train.log" 2>&1; then
    bad "$m: training failed:"; tail -5 "$T/$m.train.log"; continue
  fi
  RUNARGS=(--model "$T/$m.safetensors" --data "$T/data" --split test)
  for p in fp32 int8; do
    if ! "$BUILD/mvmoe-run" "${RUNARGS[@]}" --precision $p --logits "$T/$m.$p.x86.f32" > "$T/$m.$p.x86.log" 2>&1; then
      bad "$m $p: x86 mvmoe-run failed: $(tail -3 "$T/$m.$p.x86.log")"; continue
    fi
    cpus=(max); [ $p = int8 ] && cpus=(max cortex-a53)
    for cpu in "${cpus[@]}"; do
      if ! a64 $cpu "$A64/mvmoe-run" "${RUNARGS[@]}" --precision $p --logits "$T/$m.$p.$cpu.f32" > "$T/$m.$p.$cpu.log" 2>&1; then
        bad "$m $p: arm64 mvmoe-run on $cpu failed: $(tail -3 "$T/$m.$p.$cpu.log")"; continue
      fi
      # the kernels the program reports using ("(int8, neon-dotprod kernels)")
      want=neon-dotprod; [ $cpu = cortex-a53 ] && want=neon
      used=$(grep -o '[a-z0-9-]* kernels' "$T/$m.$p.$cpu.log" | head -1)
      if [ -n "$used" ] && [ "$used" != "$want kernels" ]; then
        bad "$m $p: arm64 mvmoe-run on $cpu used $used, want $want"
      fi
      mode=fp32; [ $p = int8 ] && mode=top1
      if v=$(compare "$m $p arm64 ($cpu: ${used:-kernels not reported}) vs x86" "$T/$m.$p.$cpu.f32" \
             "$T/$m.$p.x86.f32" $mode); then ok "$v"; else bad "$v"; fi
    done
  done
  if [ -s "$T/$m.int8.max.f32" ] && [ -s "$T/$m.int8.cortex-a53.f32" ]; then
    if v=$(compare "$m int8 arm64 SDOT (max) vs widening multiplies (cortex-a53)" "$T/$m.int8.max.f32" \
           "$T/$m.int8.cortex-a53.f32" bits); then ok "$v"; else bad "$v"; fi
  fi
done
finish
