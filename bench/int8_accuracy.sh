#!/usr/bin/env bash
# int8 accuracy of trained checkpoints through the edge runtime (docs/EDGE.md, "int8 accuracy"):
# for each MODEL, build/mvmoe-run evaluates the Fashion-MNIST test split in fp32 and in int8
# (the checkpoint quantized at open: per-channel int8 weights, per-token activations) and this
# prints top-1 of both, the difference in points, how many images change their top-1 class,
# and for MoE checkpoints how many images the router sends to a different expert set.
#
#   bash bench/int8_accuracy.sh [--data DIR] MODEL.safetensors...
#
# DIR: a raw IDX folder (default: a gunzipped copy of /usr/share/datasets/fashion-mnist made
# under $TMPDIR). Not a timing: run it at any time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=${MVMOE_RUN:-$ROOT/build/mvmoe-run}
DATA=""
MODELS=()
while [ $# -gt 0 ]; do
  case $1 in
    --data) DATA=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "int8_accuracy.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    *) MODELS+=("$1") ;;
  esac
  shift
done
[ ${#MODELS[@]} -gt 0 ] || { echo "int8_accuracy.sh: give at least one MODEL.safetensors (see --help)" >&2; exit 2; }
[ -x "$RUN" ] || { echo "int8_accuracy.sh: $RUN is missing: run make runtime first" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/int8acc.XXXXXX")
trap 'rm -rf "$T"' EXIT
if [ -z "$DATA" ]; then
  DATA=$T/fmnist
  mkdir -p "$DATA"
  for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    src=/usr/share/datasets/fashion-mnist/$f.gz
    [ -f "$src" ] || { echo "int8_accuracy.sh: $src is missing: install dataset-fashion-mnist (scripts/setup.sh)" >&2; exit 1; }
    gunzip -c "$src" > "$DATA/$f"
  done
fi
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
printf '%-48s %8s %8s %8s %14s %16s\n' model fp32 int8 diff top1-changed routes-changed
for m in "${MODELS[@]}"; do
  # routes only for MoE checkpoints (mvmoe-run refuses --routes on a dense one)
  rm -f "$T"/*.i64
  ra=()
  if "$RUN" --model "$m" --data "$DATA" --max-images 1 --json 2> "$T/probe.err" | grep -q '"moe"'; then
    ra=(--routes)
  fi
  for p in fp32 int8; do
    "$RUN" --model "$m" --data "$DATA" --precision "$p" --json --logits "$T/$p.f32" \
        ${ra[@]+"${ra[@]}" "$T/$p.i64"} > "$T/$p.json" 2> "$T/$p.err" \
      || { echo "int8_accuracy.sh: mvmoe-run failed on $m ($p):" >&2; cat "$T/$p.err" >&2; exit 1; }
  done
  /usr/bin/python3 - "$m" "$T" <<'EOF'
import json, sys, os
import numpy as np
m, t = sys.argv[1], sys.argv[2]
j = {p: json.load(open(f"{t}/{p}.json")) for p in ("fp32", "int8")}
n, c = j["fp32"]["n"], j["fp32"]["num_classes"]
lg = {p: np.fromfile(f"{t}/{p}.f32", dtype="<f4").reshape(n, c) for p in j}
changed = int((lg["fp32"].argmax(1) != lg["int8"].argmax(1)).sum())
routes = "-"
if os.path.exists(f"{t}/fp32.i64"):
    r = {p: np.fromfile(f"{t}/{p}.i64", dtype="<i8").reshape(n, -1) for p in j}
    diff = int((r["fp32"] != r["int8"]).any(1).sum())
    routes = f"{diff}/{n} ({100.0 * diff / n:.2f}%)"
a, b = 100 * j["fp32"]["top1"], 100 * j["int8"]["top1"]
name = m if len(m) <= 48 else "..." + m[-45:]
print(f"{name:<48} {a:8.2f} {b:8.2f} {b - a:+8.2f} {changed:>7}/{n:<6} {routes:>16}")
EOF
done
