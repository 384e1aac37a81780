#!/usr/bin/env bash
# Side-by-side benchmark in one run: mvmoe vs PyTorch (Debian's python3-torch: eager, and
# TorchScript-frozen for inference) vs ONNX Runtime (npm onnxruntime-node, on the model
# exported from PyTorch), all on the same safetensors weights, at the same thread counts.
#
#   bash bench/compare.sh [--quick] [--bf16] [--no-int8] [--out DIR] [--threads "1 2"] [MODEL...]
#
# MODEL: presets (default: vit-12x64 vit-12x192 vit-tiny16-224). For each: `mvmoe bench`
# writes a random-init checkpoint and check logits and measures itself; torch_bench.py
# loads the checkpoint (tests/parity/vit_torch.py), checks its logits against ours, times it
# and exports ONNX (opset 17); ort_bench.js times that. bench/report.py prints absolute
# numbers and ratios and writes DIR/summary.{json,md}. --quick: tiny step counts (checks the
# pipeline; the numbers mean nothing). --bf16: also mvmoe with --precision bf16 (training and
# inference) against PyTorch training under bf16 autocast, on the same weights (a table of
# its own: results are not fp32's). int8 (unless --no-int8): mvmoe bench --precision int8
# (inference only) against ONNX Runtime running `mvmoe export --int8` of the same weights (its
# dynamic-quantization form: docs/EXPORT.md), latency and throughput, with ratios to each
# one's fp32. Run it on a quiet machine: every number is wall-clock.
# Needs: make bench; ONNX Runtime: (cd bench && npm install --ignore-scripts) — without it
# the ONNX Runtime column is skipped, with a message.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT="" QUICK=0 BF16=0 INT8=1 THREADS="1 2" MODELS=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --bf16) BF16=1 ;;
    --no-int8) INT8=0 ;;
    --out) OUT=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "compare.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    *) MODELS+=("$1") ;;
  esac
  shift
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(vit-12x64 vit-12x192 vit-tiny16-224)
OUT=${OUT:-$ROOT/runs/compare-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
for b in "$BUILD/mvmoe" "$BUILD/bench/peak"; do
  [ -x "$b" ] || { echo "compare.sh: $b is not built; run 'make bench'" >&2; exit 1; }
done
PY=/usr/bin/python3
THREADS_CSV=$(echo $THREADS | tr ' ' ',')

# Training batch and step counts per model: ViT-Tiny/16 at 224 costs ~60x the 12x64 step.
settings() {  # MODEL -> "BATCH WARMUP STEPS INFER_BATCH INFER_REPS LATENCY_REPS"
  if [ "$QUICK" = 1 ]; then echo "8 1 2 4 1 3"; return; fi
  case $1 in
    vit-tiny16-224) echo "32 2 5 256 2 50" ;;
    *) echo "128 3 20 256 3 200" ;;
  esac
}

ORT=1
if ! (cd "$ROOT/bench" && node -e "require('onnxruntime-node')") >/dev/null 2>&1; then
  ORT=0
  echo "compare.sh: onnxruntime-node is not installed (cd bench && npm install --ignore-scripts);" \
       "running mvmoe and PyTorch only" >&2
fi

echo "== machine peak" >&2
"$BUILD/bench/peak" --threads "$THREADS_CSV" --json | tee "$OUT/peak.json" >&2
# the peak measured once here is what every MFU below divides by
PEAKS=$($PY -c 'import json,sys; print(",".join(str(r["fma_gflops"]) for r in json.load(open(sys.argv[1]))["runs"]))' "$OUT/peak.json")

for m in "${MODELS[@]}"; do
  read -r B W S IB IR LR <<<"$(settings "$m")"
  ck="$OUT/$m.safetensors" chk="$OUT/$m.check.safetensors"
  echo "== $m: mvmoe (threads $THREADS_CSV)" >&2
  "$BUILD/mvmoe" bench --preset "$m" --save-weights "$ck" --check-out "$chk" --json \
    --threads "$THREADS_CSV" --peak-gflops "$PEAKS" --batch "$B" --warmup "$W" --steps "$S" \
    --infer-batch "$IB" --infer-reps "$IR" --latency-reps "$LR" >"$OUT/$m.mvmoe.json"
  first=1
  for t in $THREADS; do
    echo "== $m: PyTorch, $t thread(s)" >&2
    onnx=()
    [ "$first" = 1 ] && onnx=(--onnx-out "$OUT/$m.onnx")
    first=0
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t \
      $PY "$ROOT/bench/torch_bench.py" --ckpt "$ck" --check "$chk" --threads "$t" "${onnx[@]}" \
      --batch "$B" --warmup "$W" --steps "$S" --infer-batch "$IB" --infer-reps "$IR" \
      --latency-reps "$LR" --json-out "$OUT/$m.torch.t$t.json"
  done
  if [ "$BF16" = 1 ]; then
    echo "== $m: mvmoe --precision bf16 (threads $THREADS_CSV)" >&2
    "$BUILD/mvmoe" bench --model "$ck" --precision bf16 --json \
      --threads "$THREADS_CSV" --peak-gflops "$PEAKS" --batch "$B" --warmup "$W" --steps "$S" \
      --infer-batch "$IB" --infer-reps "$IR" --latency-reps "$LR" >"$OUT/$m.mvmoe-bf16.json"
    for t in $THREADS; do
      echo "== $m: PyTorch bf16 autocast training, $t thread(s)" >&2
      OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t \
        $PY "$ROOT/bench/torch_bench.py" --ckpt "$ck" --threads "$t" --bf16 --no-infer \
        --batch "$B" --warmup "$W" --steps "$S" --json-out "$OUT/$m.torch-bf16.t$t.json"
    done
  fi
  if [ "$ORT" = 1 ]; then
    echo "== $m: ONNX Runtime (threads $THREADS_CSV)" >&2
    node "$ROOT/bench/ort_bench.js" --model "$OUT/$m.onnx" --check "$chk" --threads "$THREADS_CSV" \
      --infer-batch "$IB" --infer-reps "$IR" --latency-reps "$LR" --json-out "$OUT/$m.ort.json"
  fi
  if [ "$INT8" = 1 ]; then
    echo "== $m: mvmoe --precision int8, inference (threads $THREADS_CSV)" >&2
    "$BUILD/mvmoe" bench --model "$ck" --precision int8 --json --threads "$THREADS_CSV" --peak-gflops "$PEAKS" \
      --infer-batch "$IB" --infer-reps "$IR" --latency-reps "$LR" >"$OUT/$m.mvmoe-int8.json"
    if [ "$ORT" = 1 ]; then
      echo "== $m: ONNX Runtime on mvmoe export --int8 (threads $THREADS_CSV)" >&2
      "$BUILD/mvmoe" export --model "$ck" --onnx "$OUT/$m.int8.onnx" --int8 >&2
      # --check: the fp32 logits, so the JSON shows the int8 model's distance from fp32
      node "$ROOT/bench/ort_bench.js" --model "$OUT/$m.int8.onnx" --check "$chk" --threads "$THREADS_CSV" \
        --infer-batch "$IB" --infer-reps "$IR" --latency-reps "$LR" --json-out "$OUT/$m.ort-int8.json"
    fi
  fi
done

$PY "$ROOT/bench/report.py" "$OUT" "${MODELS[@]}"
echo "results: $OUT/summary.md, $OUT/summary.json" >&2
