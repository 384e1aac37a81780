#!/usr/bin/env bash
# Data parallel vs per-image expert parallel (docs/SCALING.md), for a quiet machine: trains the
# 12x64 MoE (4 experts in the last 2 blocks, top-1 or top-K, image-superclass routing on 4 super-classes
# of Fashion-MNIST) for STEPS steps of batch B on 1 process and on N ranks (each THREADS
# threads), with and without --expert-parallel, and prints per run: the median seconds per
# step (from the metrics' elapsed_s, the first step left out), rank 0's median comm_s,
# comm_bytes and a2a_bytes per step, and the final loss.
# Usage: bench/scaling.sh [BUILD] (env: RANKS="2 4" STEPS=20 B=256 THREADS=1 K=1 DATA=...; K: top-k)
# Times are only meaningful on an otherwise idle machine with RANKS x THREADS <= cores; bytes are
# deterministic anywhere.
set -eu
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
RANKS=${RANKS:-2 4}; STEPS=${STEPS:-20}; B=${B:-256}; THREADS=${THREADS:-1}; K=${K:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe --bind-to none)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
echo "0 0 1 0 1 2 3 2 1 3" > "$T/map.txt"
RUN=(--data "$DATA" --max-images 20000 --batch "$B" --epochs 1 --max-steps "$STEPS" --warmup 0 --seed 1
     --eval-every 0 --threads "$THREADS" --metrics-every 1 --preset vit-12x64 --superclasses "$T/map.txt"
     --moe-layers 2 --experts 4 --top-k "$K")
report() {  # name, metrics file
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, statistics as st, sys
r = [json.loads(l) for l in open(sys.argv[2]) if '"event":0' in l]
dt = [b['elapsed_s'] - a['elapsed_s'] for a, b in zip(r, r[1:])]
med = lambda k: st.median([x.get(k, 0) for x in r[1:]]) if len(r) > 1 else 0
print('%-28s %8.3f s/step  comm %7.1f ms  sums %6.2f MB  all-to-all %6.2f MB  loss %.4f' % (
    sys.argv[1], st.median(dt) if dt else float('nan'), 1e3 * med('comm_s'), med('comm_bytes') / 1e6,
    med('a2a_bytes') / 1e6, r[-1]['loss']))
PY
}
"$MV" train "${RUN[@]}" --out "$T/one.safetensors" > "$T/one.log" 2>&1
report "1 process" "$T/one.safetensors.metrics.jsonl"
for n in $RANKS; do
  "${MPI[@]}" -np "$n" "$MV" train "${RUN[@]}" --out "$T/dp$n.safetensors" > "$T/dp$n.log" 2>&1
  report "$n ranks, data parallel" "$T/dp$n.safetensors.metrics.jsonl"
  "${MPI[@]}" -np "$n" "$MV" train "${RUN[@]}" --expert-parallel --out "$T/ep$n.safetensors" > "$T/ep$n.log" 2>&1
  report "$n ranks, expert parallel" "$T/ep$n.safetensors.metrics.jsonl"
done
