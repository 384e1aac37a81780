#!/usr/bin/env bash
# Resource limits and crash safety of `mvmoe train` / `mvmoe eval` (docs/RELIABILITY.md), fast:
#  1. --max-memory: a model + batch that cannot fit is refused before allocating, in well under
#     a second, with a message giving the need and the limit (the default limit, 80 % of the
#     memory available, refuses vit-12x384 at batch 65536, ~1 TiB); a bad size is a usage error.
#  2. disk full while saving (RLIMIT_FSIZE; mvmoe ignores SIGXFSZ itself, so writes fail with EFBIG): exit 1
#     with a message, the previous checkpoint byte-for-byte intact, no temp file left; a later
#     --resume finishes with weights bit-identical to an uninterrupted run.
#  3. one SIGKILL at a random moment, then --resume until done: bit-identical weights
#     (tests/long/kill_resume.sh repeats this many times: make kill-resume-test).
#  4. a stop between the renames of the state and the weights: --resume takes the previous
#     state kept beside them and still ends bit-identical.
#  5. --resume with result-changing flags (--batch, --lr, ...) is refused, naming them.
#  6. --keep-every 1 keeps each epoch end's weights (CKPT-stem.epochN.safetensors): the last
#     equals the final checkpoint, and a run stopped and resumed keeps the same bits.
# Usage: tests/e2e/test_reliability.sh BUILD_DIR
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
if [ ! -x "$MV" ] || [ ! -e "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "FAIL: needs $MV (make) and $DATA (bash scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MODEL=(--dim 16 --depth 2 --heads 2 --mlp-dim 32 --patch 7)
RUN=(--data "$DATA" --max-images 1000 --batch 50 --epochs 2 --lr 2e-3 --seed 5 --val-fraction 0.1)

# ---- 1. memory limit
start=$(date +%s%N)
"$MV" train "${RUN[@]}" --preset vit-12x384 --batch 65536 --out "$T/big.safetensors" > "$T/big.out" 2> "$T/big.err"
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc -eq 1 ] && grep -q "not enough memory" "$T/big.err" && grep -q "TiB" "$T/big.err" \
  && ok "vit-12x384 at batch 65536 refused (exit 1, ${ms} ms): $(head -c 160 "$T/big.err")" \
  || { bad "vit-12x384 at batch 65536: exit $rc"; cat "$T/big.err"; }
[ $ms -lt 5000 ] && ok "refused in ${ms} ms (< 5 s, nothing allocated)" || bad "refusal took ${ms} ms"
[ ! -e "$T/big.safetensors" ] && ok "no checkpoint written" || bad "a checkpoint was written"
"$MV" train "${RUN[@]}" "${MODEL[@]}" --max-memory 100K --out "$T/small.safetensors" > /dev/null 2> "$T/small.err"
rc=$?
[ $rc -eq 1 ] && grep -q "100.0 KiB (--max-memory)" "$T/small.err" && ok "--max-memory 100K refuses a 2-layer model" \
  || { bad "--max-memory 100K: exit $rc"; cat "$T/small.err"; }
"$MV" train "${RUN[@]}" "${MODEL[@]}" --ema 0.99 --max-memory 100K --out "$T/small.safetensors" > /dev/null 2> "$T/ema.err"
rc=$?
[ $rc -eq 1 ] && grep -q "gradients + AdamW + EMA" "$T/ema.err" \
  && ok "--max-memory counts the --ema copy of the weights" || { bad "--ema --max-memory: exit $rc"; cat "$T/ema.err"; }
"$MV" train "${RUN[@]}" "${MODEL[@]}" --max-memory 12X --out "$T/small.safetensors" > /dev/null 2> "$T/usage.err"
rc=$?
[ $rc -eq 2 ] && grep -q -- "--max-memory" "$T/usage.err" && ok "--max-memory 12X is a usage error (exit 2)" \
  || { bad "--max-memory 12X: exit $rc"; cat "$T/usage.err"; }

# ---- reference: the uninterrupted run
"$MV" train "${RUN[@]}" "${MODEL[@]}" --max-memory 0 --out "$T/ref.safetensors" > "$T/ref.log" 2>&1 \
  && ok "reference run (--max-memory 0: no limit)" || { bad "reference run failed"; tail -5 "$T/ref.log"; }
"$MV" eval --model "$T/ref.safetensors" --data "$DATA" --max-images 200 --max-memory 1K > /dev/null 2> "$T/eval.err"
rc=$?
[ $rc -eq 1 ] && grep -q "not enough memory" "$T/eval.err" && ok "eval --max-memory 1K refused" \
  || { bad "eval --max-memory 1K: exit $rc"; cat "$T/eval.err"; }
"$MV" eval --model "$T/ref.safetensors" --data "$DATA" --max-images 200 > /dev/null 2>&1 \
  && ok "eval under the default limit runs" || bad "eval under the default limit failed"
printf 'P5\n28 28\n255\n' > "$T/img.pgm"; head -c 784 /dev/zero >> "$T/img.pgm"
"$MV" predict --model "$T/ref.safetensors" --max-memory 1K "$T/img.pgm" > /dev/null 2> "$T/pred.err"
rc=$?
[ $rc -eq 1 ] && grep -q "not enough memory" "$T/pred.err" && ok "predict --max-memory 1K refused" \
  || { bad "predict --max-memory 1K: exit $rc"; cat "$T/pred.err"; }
"$MV" bench --preset vit-12x64 --threads 1 --max-memory 10M > /dev/null 2> "$T/bench.err"
rc=$?
[ $rc -eq 1 ] && grep -q "not enough memory" "$T/bench.err" && ok "bench --max-memory 10M refused before allocating" \
  || { bad "bench --max-memory 10M: exit $rc"; cat "$T/bench.err"; }

# ---- 2. disk full at the second checkpoint write
"$MV" train "${RUN[@]}" "${MODEL[@]}" --max-steps 18 --out "$T/d.safetensors" > "$T/d1.log" 2>&1 \
  && ok "first part (18 steps) saved" || { bad "first part failed"; tail -5 "$T/d1.log"; }
cp "$T/d.safetensors" "$T/d.before"; cp "$T/d.safetensors.state.safetensors" "$T/d.state.before"
size=$(stat -c %s "$T/d.safetensors")
# Files may grow to half the checkpoint: the next save cannot complete.
( ulimit -f $(( size / 2048 )); exec "$MV" train "${RUN[@]}" --resume --out "$T/d.safetensors" ) > "$T/d2.log" 2>&1
rc=$?
[ $rc -eq 1 ] && ok "disk full: exit 1" || { bad "disk full: exit $rc"; tail -5 "$T/d2.log"; }
grep -qiE "file too large|no space|cannot write" "$T/d2.log" && ok "disk full: message: $(grep -iE 'error' "$T/d2.log" | head -c 200)" \
  || { bad "disk full: no write error message"; tail -5 "$T/d2.log"; }
cmp -s "$T/d.safetensors" "$T/d.before" && cmp -s "$T/d.safetensors.state.safetensors" "$T/d.state.before" \
  && ok "disk full: previous checkpoint and state intact" || bad "disk full: previous checkpoint changed"
left=$(find "$T" -name '*.tmp.*' | wc -l)  # mvmoe_st_write's temp files: PATH.tmp.PID
[ "$left" -eq 0 ] && ok "disk full: no temp file left" || { bad "disk full: $left temp files left"; ls -la "$T"; }
"$MV" train "${RUN[@]}" --resume --out "$T/d.safetensors" > "$T/d3.log" 2>&1 \
  && ok "resume after disk full" || { bad "resume after disk full failed"; tail -5 "$T/d3.log"; }
cmp -s "$T/d.safetensors" "$T/ref.safetensors" && ok "disk full + resume: weights bit-identical" \
  || bad "disk full + resume: weights differ from the uninterrupted run"

# ---- 4. a kill between the two renames of a save: the state is a step ahead of the weights;
# the previous state kept beside them lets --resume continue bit-identically
"$MV" train "${RUN[@]}" "${MODEL[@]}" --max-steps 9 --out "$T/p.safetensors" > "$T/p1.log" 2>&1 \
  && cp "$T/p.safetensors" "$T/p9.weights" && cp "$T/p.safetensors.state.safetensors" "$T/p9.state" \
  && "$MV" train "${RUN[@]}" --resume --max-steps 9 --out "$T/p.safetensors" > "$T/p2.log" 2>&1 \
  && ok "pair saved at steps 9 and 18" || { bad "pair runs failed"; tail -3 "$T/p1.log" "$T/p2.log"; }
cp "$T/p9.weights" "$T/p.safetensors"                                # weights: step 9
cp "$T/p9.state" "$T/p.safetensors.state.prev.safetensors"           # previous state: step 9
# (the state file stays at step 18: renamed, the weights' rename had not happened yet)
"$MV" train "${RUN[@]}" --resume --out "$T/p.safetensors" > "$T/p3.log" 2>&1 \
  && ok "resume from a half-written pair" || { bad "resume from a half-written pair failed"; tail -3 "$T/p3.log"; }
cmp -s "$T/p.safetensors" "$T/ref.safetensors" && ok "half-written pair + resume: weights bit-identical" \
  || bad "half-written pair + resume: weights differ from the uninterrupted run"
[ ! -e "$T/p.safetensors.state.prev.safetensors" ] && ok "the previous state is removed once a pair is complete" \
  || bad "the previous state was left behind"

# ---- 5. --resume with settings that change the result is refused, naming them
"$MV" train "${RUN[@]}" "${MODEL[@]}" --max-steps 5 --out "$T/r.safetensors" > /dev/null 2>&1
"$MV" train "${RUN[@]}" --batch 25 --lr 1e-3 --resume --out "$T/r.safetensors" > "$T/r.log" 2> "$T/r.err"
rc=$?
[ $rc -eq 1 ] && grep -q -- "--batch 50 (now 25)" "$T/r.err" && grep -q -- "--lr 0.00200000009 (now 0.00100000005)" "$T/r.err" \
  && ok "--resume with another --batch and --lr refused: $(head -c 200 "$T/r.err")" \
  || { bad "--resume with other settings: exit $rc"; cat "$T/r.err"; }
"$MV" train "${RUN[@]}" --resume --threads 1 --out "$T/r.safetensors" > "$T/r2.log" 2>&1 \
  && ok "--resume with another --threads (same result) accepted" || { bad "--resume --threads 1 refused"; tail -3 "$T/r2.log"; }

# ---- 3. SIGKILL at a random moment, then resume until done (a longer run, so the kill lands)
LONG=(--data "$DATA" --max-images 6000 --batch 50 --epochs 2 --lr 2e-3 --seed 7 --val-fraction 0.1)
t0=$(date +%s%N)
"$MV" train "${LONG[@]}" "${MODEL[@]}" --out "$T/kref.safetensors" > "$T/kref.log" 2>&1 \
  || { bad "long reference run failed"; tail -5 "$T/kref.log"; }
wall=$(awk -v n=$(( $(date +%s%N) - t0 )) 'BEGIN{printf "%.3f", n / 1e9}')
killed=0
for attempt in 1 2 3; do  # a kill that comes after the run ended does not count: try again
  rm -f "$T/k.safetensors" "$T"/k.safetensors.*
  "$MV" train "${LONG[@]}" "${MODEL[@]}" --out "$T/k.safetensors" > "$T/k1.log" 2>&1 &
  pid=$!
  delay=$(awk -v r=$RANDOM -v t="$wall" 'BEGIN{printf "%.3f", (0.05 + 0.85 * r / 32768) * t}')
  sleep "$delay"; kill -KILL $pid 2>/dev/null; { wait $pid; } 2>/dev/null; rc=$?
  [ $rc -eq 137 ] && { killed=1; break; }
done
[ $killed -eq 1 ] && ok "SIGKILL landed after ${delay} s of a ${wall} s run" || bad "no SIGKILL landed in 3 tries (run ${wall} s)"
tries=0
until [ $tries -ge 5 ]; do
  tries=$((tries+1))
  if [ -e "$T/k.safetensors" ]; then
    "$MV" train "${LONG[@]}" --resume --out "$T/k.safetensors" > "$T/k2.log" 2>&1 && break
  else
    "$MV" train "${LONG[@]}" "${MODEL[@]}" --out "$T/k.safetensors" > "$T/k2.log" 2>&1 && break
  fi
done
cmp -s "$T/k.safetensors" "$T/kref.safetensors" && ok "SIGKILL + resume: weights bit-identical" \
  || { bad "SIGKILL + resume: weights differ"; tail -3 "$T/k2.log"; }

# ---- 6. --keep-every: kept epoch copies, the same bits after a stop and --resume
"$MV" train "${RUN[@]}" "${MODEL[@]}" --keep-every 1 --out "$T/keep.safetensors" > "$T/keep.log" 2>&1 \
  && [ -f "$T/keep.epoch1.safetensors" ] && [ -f "$T/keep.epoch2.safetensors" ] \
  && ok "--keep-every 1: epoch1 and epoch2 copies written" || { bad "--keep-every 1: copies missing"; ls "$T"; }
cmp -s "$T/keep.epoch2.safetensors" "$T/keep.safetensors" && ! cmp -s "$T/keep.epoch1.safetensors" "$T/keep.safetensors" \
  && ok "--keep-every: the last copy is the final checkpoint, the first differs" || bad "--keep-every: copies do not match the run"
steps1=$(( 900 / 50 ))  # one epoch: 900 training images (10 % held out) at batch 50
"$MV" train "${RUN[@]}" "${MODEL[@]}" --keep-every 1 --max-steps $steps1 --out "$T/keep2.safetensors" > /dev/null 2>&1 \
  && "$MV" train "${RUN[@]}" --keep-every 1 --resume --out "$T/keep2.safetensors" > /dev/null 2>&1 \
  && cmp -s "$T/keep2.epoch1.safetensors" "$T/keep.epoch1.safetensors" && cmp -s "$T/keep2.epoch2.safetensors" "$T/keep.epoch2.safetensors" \
  && ok "--keep-every across --resume: the same kept bits" || bad "--keep-every across --resume: kept copies differ"
"$MV" eval --model "$T/keep.epoch1.safetensors" --data "$DATA" --max-images 200 > /dev/null 2>&1 \
  && ok "a kept copy evaluates as a checkpoint" || bad "a kept copy does not load"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
