#!/usr/bin/env bash
# Kill-and-resume loop (make kill-resume-test; not in the default suite: minutes, not seconds).
# Trains a small model on Fashion-MNIST once without interruption; then TRIALS times: starts the
# same run, SIGKILLs it at a random moment (and each restart too, up to KILLS times per trial),
# restarts it with --resume (or from scratch when no checkpoint exists yet) until it finishes,
# and requires the final weights to be bit-identical (cmp) to the uninterrupted run.
# Prints each trial, then "N passed, N failed". Environment: TRIALS (default 20), KILLS (3),
# SEED (random), THREADS (OMP threads per run, default 1).
# Usage: tests/long/kill_resume.sh [BUILD=build]
set -u
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
TRIALS=${TRIALS:-20}
KILLS=${KILLS:-3}
export OMP_NUM_THREADS=${THREADS:-1} OPENBLAS_NUM_THREADS=${THREADS:-1}
RANDOM=${SEED:-$$}
if [ ! -x "$MV" ] || [ ! -e "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "kill_resume: needs $MV (make) and $DATA (bash scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MODEL=(--dim 32 --depth 2 --heads 2 --mlp-dim 64 --patch 7)
RUN=(--data "$DATA" --max-images 20000 --batch 50 --epochs 3 --lr 2e-3 --seed 11 --val-fraction 0.1)

t0=$(date +%s%N)
"$MV" train "${RUN[@]}" "${MODEL[@]}" --out "$T/ref.safetensors" > "$T/ref.log" 2>&1 \
  || { echo "reference run failed:"; tail -5 "$T/ref.log"; echo "0 passed, 1 failed"; exit 1; }
ref_s=$(awk -v n=$(( $(date +%s%N) - t0 )) 'BEGIN{printf "%.2f", n / 1e9}')
echo "reference run: ${ref_s} s ($(grep -c '"event":1' "$T/ref.safetensors.metrics.jsonl") epochs)"

passed=0; failed=0; total_kills=0
for trial in $(seq 1 "$TRIALS"); do
  out="$T/t$trial.safetensors"
  kills=0 starts=0 resumes=0 when=()
  while :; do
    if [ -e "$out" ]; then
      args=("${RUN[@]}" --resume --out "$out"); resumes=$((resumes+1))
    else
      args=("${RUN[@]}" "${MODEL[@]}" --out "$out")
    fi
    starts=$((starts+1))
    "$MV" train "${args[@]}" > "$T/run.log" 2>&1 &
    pid=$!
    if [ $kills -lt "$KILLS" ]; then
      # a random moment within the reference run's length (later kills may find it finished)
      delay=$(awk -v r=$RANDOM -v t="$ref_s" 'BEGIN{printf "%.3f", (0.02 + 0.9 * r / 32768) * t}')
      sleep "$delay"
      kill -KILL $pid 2>/dev/null
    fi
    { wait $pid; } 2>/dev/null; rc=$?
    if [ $rc -eq 137 ]; then kills=$((kills+1)); when+=("$delay"); fi
    [ $rc -eq 0 ] && break
    if [ $rc -ne 137 ] || [ $starts -gt $((KILLS + 3)) ]; then
      echo "trial $trial: run exited $rc (not killed):"; tail -5 "$T/run.log"; break
    fi
  done
  total_kills=$((total_kills + kills))
  if [ $rc -eq 0 ] && cmp -s "$out" "$T/ref.safetensors"; then
    passed=$((passed+1)); verdict="bit-identical"
  else
    failed=$((failed+1)); verdict="DIFFERENT (exit $rc)"
  fi
  echo "trial $trial: $kills SIGKILLs at ${when[*]:-never} s, $resumes resumes, weights $verdict"
  rm -f "$out" "$out".*
done
echo "kill-resume: $TRIALS trials, $total_kills SIGKILLs"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
