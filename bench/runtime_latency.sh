#!/usr/bin/env bash
# Batch-1 latency of the dependency-free runtime (build/mvmoe-run, docs/EDGE.md) against ONNX
# Runtime, fp32 and int8, in one table:
#
#   bash bench/runtime_latency.sh [--quick] [--no-moe] [--threads "1 2"] [--out DIR] [MODEL...]
#
# MODEL: presets (default: vit-12x192 vit-tiny16-224). For each, and its Mobile V-MoE form
# (image-learned routing, 10 experts, top-1, in the last 2 blocks; --no-moe: dense only):
#   - a random-init checkpoint (`mvmoe bench --save-weights`, reused from DIR if there);
#   - `mvmoe export --onnx` (fp32) and `mvmoe export --onnx --int8` (ONNX Runtime's dynamic
#     quantization form) of it;
#   - 8 random images of the model's size (PPM);
#   - mvmoe-run --latency (fp32, int8: the runtime quantizes the fp32 file at open, the same
#     weights as `mvmoe quantize`) and bench/ort_bench.js (onnxruntime-node, CPU provider) at
#     each thread count, pinned to that many CPUs with taskset, OMP_NUM_THREADS and the BLAS
#     variables set to it.
# Prints median and p90 (ms) per engine and the ratios int8/fp32 (ours) and int8/ORT-fp32, with
# the CPU's model name and mvmoe-run's kernel set; writes DIR/latency.md and DIR/latency.json.
# MVMOE_ISA=avx2-vnni (or avx2, plain) in the environment times mvmoe-run's smaller kernel sets
# (ONNX Runtime is not affected: its own choice stands). mvmoe-run's rows with more
# than one thread split each image over them (--latency N --threads T: rows of the products and
# attention heads, mvmoe_run_options.split_image; a quarter of the repetitions, n/a past 45 s).
# About 4 minutes with the defaults on a 2-core machine; --quick: a few repetitions (checks the
# pipeline, the numbers mean nothing). Run it on a quiet machine: every number is wall-clock.
# Needs: make (build/mvmoe, build/mvmoe-run); ONNX Runtime: (cd bench && npm install
# --ignore-scripts), without it the ORT columns say n/a.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT="" QUICK=0 MOE=1 THREADS="1 2" MODELS=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --no-moe) MOE=0 ;;
    --threads) THREADS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "runtime_latency.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    *) MODELS+=("$1") ;;
  esac
  shift
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(vit-12x192 vit-tiny16-224)
OUT=${OUT:-$ROOT/runs/rt-latency-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
for b in "$BUILD/mvmoe" "$BUILD/mvmoe-run"; do
  [ -x "$b" ] || { echo "runtime_latency.sh: $b is not built; run 'make' (or make runtime)" >&2; exit 1; }
done
PY=/usr/bin/python3
NCPU=$(nproc)
ORT=1
if ! (cd "$ROOT/bench" && node -e "require('onnxruntime-node')") > /dev/null 2>&1; then
  ORT=0
  echo "runtime_latency.sh: onnxruntime-node is not installed (cd bench && npm install --ignore-scripts):" \
       "ORT columns n/a" >&2
fi
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)

reps() {  # MODEL -> latency repetitions
  if [ "$QUICK" = 1 ]; then echo 5; return; fi
  case $1 in vit-tiny16-224*) echo 40 ;; *) echo 200 ;; esac
}
size_of() {  # MODEL -> image size
  case $1 in vit-tiny16-224*) echo 224 ;; vit-12x192*) echo 32 ;; *) echo 28 ;; esac
}
pin() {  # THREADS CMD... : pinned to the first THREADS CPUs when taskset exists and there are enough
  local t=$1; shift
  if command -v taskset > /dev/null && [ "$t" -le "$NCPU" ]; then
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t taskset -c "0-$((t - 1))" "$@"
  else
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t "$@"
  fi
}

VARIANTS=()
for m in "${MODELS[@]}"; do
  VARIANTS+=("$m")
  [ "$MOE" = 1 ] && VARIANTS+=("$m+moe")
done

RES="$OUT/results.tsv"
: > "$RES"
for v in "${VARIANTS[@]}"; do
  m=${v%+moe}
  ck="$OUT/$v.safetensors"
  moeflags=()
  [ "$v" != "$m" ] && moeflags=(--routing image-learned --experts 10 --top-k 1 --moe-layers 2)
  if [ ! -s "$ck" ]; then
    echo "== $v: checkpoint" >&2
    "$BUILD/mvmoe" bench --preset "$m" "${moeflags[@]}" --save-weights "$ck" --precision int8 --threads 1 \
      --infer-batch 1 --infer-reps 1 --latency-reps 1 > "$OUT/$v.init.log" 2>&1 \
      || { echo "runtime_latency.sh: making $ck failed:" >&2; tail -5 "$OUT/$v.init.log" >&2; exit 1; }
  fi
  if [ "$ORT" = 1 ]; then
    [ -s "$OUT/$v.onnx" ] || "$BUILD/mvmoe" export --model "$ck" --onnx "$OUT/$v.onnx" > /dev/null
    [ -s "$OUT/$v.int8.onnx" ] || "$BUILD/mvmoe" export --model "$ck" --onnx "$OUT/$v.int8.onnx" --int8 > /dev/null
  fi
  S=$(size_of "$m")
  "$PY" - "$OUT/img$S" "$S" <<'PYEOF'
import os, random, sys
prefix, s = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for i in range(8):
    path = "%s_%d.ppm" % (prefix, i)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(b"P6\n%d %d\n255\n" % (s, s) + bytes(rng.randrange(256) for _ in range(3 * s * s)))
PYEOF
  R=$(reps "$m")
  for t in $THREADS; do
    for p in fp32 int8; do
      # a split image (t > 1) stalls at its fork/joins where the cores are shared (seconds per
      # image): fewer repetitions, and a time limit so that the table still comes out
      r=$R lim=600
      [ "$t" -gt 1 ] && r=$(( R / 4 > 10 ? R / 4 : 10 )) lim=45
      echo "== $v: mvmoe-run $p, $t thread(s), $r images" >&2
      if j=$(pin "$t" timeout "$lim" "$BUILD/mvmoe-run" --model "$ck" --precision $p --latency "$r" --threads "$t" \
           --json "$OUT/img${S}"_*.ppm); then
        printf '%s\t%s\tmvmoe-run %s\t%s\n' "$v" "$t" "$p" "$j" >> "$RES"
      else
        echo "runtime_latency.sh: mvmoe-run $p on $t threads did not finish in ${lim}s: n/a" >&2
      fi
    done
    if [ "$ORT" = 1 ]; then
      for p in fp32 int8; do
        f="$OUT/$v.onnx"; [ $p = int8 ] && f="$OUT/$v.int8.onnx"
        echo "== $v: ORT $p, $t thread(s), $R images" >&2
        pin "$t" node "$ROOT/bench/ort_bench.js" --model "$f" --threads "$t" --infer-batch 1 --infer-reps 1 \
          --latency-reps "$R" --json-out "$OUT/$v.ort-$p.t$t.json" > /dev/null
        printf '%s\t%s\tORT %s\t%s\n' "$v" "$t" "$p" "$(tr -d '\n' < "$OUT/$v.ort-$p.t$t.json")" >> "$RES"
      done
    fi
  done
done

"$PY" - "$RES" "$OUT" "$CPU" "$(uptime)" <<'PYEOF'
import json, sys
res, out, cpu, up = sys.argv[1:5]
rows, kernels = {}, set()
for line in open(res):
    v, t, eng, js = line.rstrip("\n").split("\t", 3)
    j = json.loads(js)
    if eng.startswith("ORT"):
        r = j["runs"][0]
        med, p90 = r["latency_ms_median"], r["latency_ms_p90"]
    else:
        med, p90 = j["median_ms"], j["p90_ms"]
        kernels.add(j.get("kernels", "?"))
    rows.setdefault((v, int(t)), {})[eng] = (med, p90)
engines = ["mvmoe-run fp32", "mvmoe-run int8", "ORT fp32", "ORT int8"]
lines = ["batch-1 latency, ms: median / p90  (CPU: %s; mvmoe-run kernels: %s)" % (cpu, ", ".join(sorted(kernels))),
         "load when finished: %s" % up.strip(), "",
         "| model | threads | " + " | ".join(engines) + " | int8/fp32 (ours) | int8/ORT fp32 |",
         "|---|---|" + "---|" * (len(engines) + 2)]
summary = []
for (v, t), e in rows.items():
    cell = lambda k: "%.3f / %.3f" % e[k] if k in e else "n/a"
    ratio = lambda a, b: "%.2f" % (e[a][0] / e[b][0]) if a in e and b in e else "n/a"
    lines.append("| %s | %d | %s | %s | %s |" % (v, t, " | ".join(cell(k) for k in engines),
                 ratio("mvmoe-run int8", "mvmoe-run fp32"), ratio("mvmoe-run int8", "ORT fp32")))
    summary.append({"model": v, "threads": t, "cpu": cpu, "kernels": ", ".join(sorted(kernels)),
                    **{k.replace(" ", "_") + "_ms": {"median": e[k][0], "p90": e[k][1]} for k in e}})
text = "\n".join(lines) + "\n"
print(text)
open(out + "/latency.md", "w").write(text)
json.dump(summary, open(out + "/latency.json", "w"), indent=1)
PYEOF
echo "results: $OUT/latency.md, $OUT/latency.json" >&2
