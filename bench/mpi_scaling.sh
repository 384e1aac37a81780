#!/usr/bin/env bash
# MPI cost where it cannot help (docs/SCALING.md, "Measured: 2 ranks vs 1"): on one 2-core
# machine, `mpirun -np 2` ranks × 1 thread against one process × 2 threads, training the same
# model on Fashion-MNIST with the same global batch for the same steps. Reports each run's
# images/s over the steps after the first epoch-start (from the metrics file), the ratio, and
# rank 0's measured communication seconds and bytes per step. Runs are interleaved (A B A B) so a
# drift in the machine's speed hits both. Run it on a quiet machine: every number is wall-clock.
#
#   bash bench/mpi_scaling.sh [--steps N] [--reps N] [--batch N] [--overlap]
#
# --overlap: a third run, 2 ranks with MVMOE_OVERLAP_ALLREDUCE=1 (the gradient sums started
# during the backward), interleaved with the others, and its ratio to the blocking sum.
#
# Defaults: 12x64 dense and 12x64 image-superclass MoE (E=4, k=1, L=2), batch 256, 60 steps, 2 reps.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MV=${MVMOE:-$ROOT/build/mvmoe}
STEPS=60 REPS=2 BATCH=256 CFGS="one-x2 mpi2-x1"
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --batch) BATCH=$2; shift ;;
    --overlap) CFGS="one-x2 mpi2-x1 mpi2-x1-ov" ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "mpi_scaling.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v mpirun > /dev/null || { echo "mpi_scaling.sh: mpirun not found (scripts/setup.sh installs openmpi-bin)" >&2; exit 1; }
[ -x "$MV" ] || { echo "mpi_scaling.sh: $MV missing: run make" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d "${TMPDIR:-/tmp}/mpiscale.XXXXXX")
trap 'rm -rf "$T"' EXIT
DATA=/usr/share/datasets/fashion-mnist
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
echo "global batch $BATCH, $STEPS steps, $REPS interleaved repetitions; images/s over steps after the first 10"
declare -A MODELS=(
  [dense-12x64]="--preset vit-12x64"
  [moe-12x64-E4k1L2]="--preset vit-12x64 --routing image-superclass --experts 4 --top-k 1 --moe-layers 2 --superclasses $ROOT/docs/results/main/superclasses.json"
)
rate() {  # images/s between the 10th and the last step line of a metrics file
  /usr/bin/python3 - "$1" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"event":0' in l]
a, b = rows[0], rows[-1]
for r in rows:
    if r["step"] >= 10:
        a = r
        break
cs = [r.get("comm_s", 0.0) for r in rows if r["step"] >= a["step"]]
cb = [r.get("comm_bytes", 0) for r in rows if r["step"] >= a["step"]]
print(b["step"] - a["step"], b["elapsed_s"] - a["elapsed_s"], sum(cs) / max(len(cs), 1), max(cb) if cb else 0)
EOF
}
printf '%-20s %-22s %10s %12s %14s\n' model run images/s comm-s/step comm-MB/rank
for name in dense-12x64 moe-12x64-E4k1L2; do
  read -r -a flags <<< "${MODELS[$name]}"
  common=(train --data "$DATA" "${flags[@]}" --batch "$BATCH" --epochs 1 --max-steps "$STEPS"
          --metrics-every 1 --eval-every 0 --val-fraction 0 --seed 0)
  declare -A sum=()
  for rep in $(seq 1 "$REPS"); do
    for cfg in $CFGS; do
      out=$T/$name.$cfg.$rep.safetensors
      if [ "$cfg" = one-x2 ]; then
        OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 "$MV" "${common[@]}" --threads 2 --out "$out" > "$T/log" 2>&1 \
          || { echo "mpi_scaling.sh: $name $cfg failed:"; tail -5 "$T/log"; exit 1; }
      else
        ov=0; [ "$cfg" = mpi2-x1-ov ] && ov=1
        OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MVMOE_OVERLAP_ALLREDUCE=$ov mpirun --oversubscribe --bind-to none -np 2 \
          -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x MVMOE_OVERLAP_ALLREDUCE "$MV" "${common[@]}" --threads 1 --out "$out" > "$T/log" 2>&1 \
          || { echo "mpi_scaling.sh: $name $cfg failed:"; tail -5 "$T/log"; exit 1; }
      fi
      read -r steps secs comm bytes < <(rate "$out.metrics.jsonl")
      ips=$(/usr/bin/python3 -c "print(f'{$steps * $BATCH / $secs:.1f}')")
      printf '%-20s %-22s %10s %12.4f %14.2f\n' "$name" "$cfg rep $rep" "$ips" "$comm" "$(/usr/bin/python3 -c "print($bytes/1e6)")"
      sum[$cfg]=$(/usr/bin/python3 -c "print(${sum[$cfg]:-0} + $ips)")
    done
  done
  /usr/bin/python3 -c "a=${sum[one-x2]}/$REPS; b=${sum[mpi2-x1]}/$REPS; print(f'$name: 1 process x 2 threads {a:.1f} images/s, 2 ranks x 1 thread {b:.1f} images/s: ratio {b/a:.3f}')"
  [ -n "${sum[mpi2-x1-ov]:-}" ] && /usr/bin/python3 -c "a=${sum[mpi2-x1]}/$REPS; b=${sum[mpi2-x1-ov]}/$REPS; print(f'$name: 2 ranks, overlapped sums {b:.1f} images/s vs blocking {a:.1f}: ratio {b/a:.3f}')"
  unset sum
done
