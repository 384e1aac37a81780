#!/usr/bin/env bash
# SIGTERM loop (make sigterm-test; not in the default suite: minutes, not seconds).
# TRIALS times: starts a small Fashion-MNIST training run, sends it SIGTERM at a random moment
# within an uninterrupted run's length, and requires exit 0 (finished first), 130 (stopped:
# checkpoint saved; then --resume must finish with weights bit-identical to the uninterrupted
# run) or 143 (killed before training began), and no glibc heap message or abort in its output.
# Regression test for the heap corruption of issue 16: a SIGTERM handler that interrupted
# oneDNN's JIT sgemm wrote its signal frame over the heap (cli/stopsig.c); before the fix ~5 %
# of these trials aborted with "corrupted size vs. prev_size".
# Prints each failing trial, then counts of exit codes and "N passed, N failed". Environment:
# TRIALS (default 100), SEED (random), THREADS (OMP threads per run, default 1).
# Usage: tests/long/sigterm_loop.sh [BUILD=build]
set -u
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
TRIALS=${TRIALS:-100}
export OMP_NUM_THREADS=${THREADS:-1} OPENBLAS_NUM_THREADS=${THREADS:-1}
RANDOM=${SEED:-$$}
if [ ! -x "$MV" ] || [ ! -e "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "sigterm_loop: needs $MV (make) and $DATA (bash scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# the flags of the issue's reproducer
MODEL=(--dim 32 --depth 2 --patch 7)
RUN=(--data "$DATA" --batch 25 --threads "${THREADS:-1}" --epochs 2 --max-images 4000)
HEAP_MSG='corrupted|malloc\(\)|free\(\)|double free|munmap_chunk|Aborted|internal error|Segmentation'

t0=$(date +%s%N)
"$MV" train "${RUN[@]}" "${MODEL[@]}" --out "$T/ref.safetensors" > "$T/ref.log" 2>&1 \
  || { echo "reference run failed:"; tail -5 "$T/ref.log"; echo "0 passed, 1 failed"; exit 1; }
ref_s=$(awk -v n=$(( $(date +%s%N) - t0 )) 'BEGIN{printf "%.3f", n / 1e9}')
echo "reference run: ${ref_s} s"

passed=0; failed=0; n0=0; n130=0; n143=0
for trial in $(seq 1 "$TRIALS"); do
  out="$T/t.safetensors"
  rm -f "$out" "$out".*
  "$MV" train "${RUN[@]}" "${MODEL[@]}" --out "$out" > "$T/run.log" 2>&1 &
  pid=$!
  delay=$(awk -v r=$RANDOM -v t="$ref_s" 'BEGIN{printf "%.3f", r / 32768 * t}')
  sleep "$delay"
  kill -TERM $pid 2>/dev/null
  { wait $pid; } 2>/dev/null; rc=$?
  why=""
  case $rc in
    0) n0=$((n0+1)) ;;
    143) n143=$((n143+1)) ;;
    130) n130=$((n130+1))
         if ! grep -q "interrupted" "$T/run.log"; then
           why="exit 130 without the 'interrupted' message"
         elif grep -q "checkpoint saved" "$T/run.log"; then
           "$MV" train "${RUN[@]}" --resume --out "$out" > "$T/resume.log" 2>&1; r2=$?
           if [ $r2 -ne 0 ]; then why="--resume exited $r2: $(tail -2 "$T/resume.log")"
           elif ! cmp -s "$out" "$T/ref.safetensors"; then why="resumed weights differ from the uninterrupted run"
           fi
         fi ;;
    *) why="exit $rc" ;;
  esac
  if [ -z "$why" ] && grep -Eq "$HEAP_MSG" "$T/run.log" "$T/resume.log" 2>/dev/null; then
    why="heap/abort message: $(grep -Eh "$HEAP_MSG" "$T/run.log" "$T/resume.log" 2>/dev/null | head -1)"
  fi
  rm -f "$T/resume.log"
  if [ -z "$why" ]; then
    passed=$((passed+1))
  else
    failed=$((failed+1))
    echo "trial $trial: SIGTERM after ${delay} s: $why"; tail -3 "$T/run.log" | sed 's/^/    /'
  fi
done
echo "sigterm-loop: $TRIALS trials: $n130 stopped (130), $n143 killed before training (143), $n0 finished first (0)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
