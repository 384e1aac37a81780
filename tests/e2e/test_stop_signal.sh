#!/usr/bin/env bash
# SIGTERM / SIGINT in `mvmoe train` (cli/stopsig.c), fast:
#  1. while training runs on 2 threads, every thread but one blocks SIGINT and SIGTERM (the
#     main thread and the OpenMP workers, read from /proc/PID/task/*/status): a signal then never
#     interrupts a computing thread, whose oneDNN JIT sgemm may run with its stack pointer on
#     the heap (issue 16: the signal frame written there corrupted the heap). The one thread
#     left is the one waiting for the signals.
#  2. SIGTERM then stops the run: exit 130, "interrupted after step N", checkpoint and optimizer
#     state written. Two SIGTERMs at once: exit 143 (the second killed it) or 130 (the two
#     merged, or it had stopped already); never a crash or a hang.
#  3. SIGTERM before training starts: killed as by default, exit 143, no checkpoint.
# tests/long/sigterm_loop.sh sends SIGTERM at random moments many times: make sigterm-test.
# Usage: tests/e2e/test_stop_signal.sh BUILD_DIR
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
T=$(mktemp -d); trap 'rm -rf "$T"; [ -n "${pid:-}" ] && kill -KILL $pid 2>/dev/null' EXIT
MODEL=(--dim 16 --depth 2 --heads 2 --mlp-dim 32 --patch 7)
# long enough (200 epochs) that it is still training when signalled
RUN=(--data "$DATA" --max-images 1000 --batch 50 --epochs 200 --seed 5 --threads 2)

# ---- 1. signal masks of the threads while training
"$MV" train "${RUN[@]}" "${MODEL[@]}" --out "$T/a.safetensors" > "$T/a.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do  # up to 60 s for the first metrics line (the first steps ran)
  [ -s "$T/a.safetensors.metrics.jsonl" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
[ -s "$T/a.safetensors.metrics.jsonl" ] && ok "training started" || { bad "training did not start"; tail -5 "$T/a.log"; }
threads=0 blocking=0 main_blocks=0
for st in /proc/$pid/task/*/status; do
  mask=$(awk '/^SigBlk:/{print $2}' "$st" 2>/dev/null) || continue
  [ -n "$mask" ] || continue
  threads=$((threads+1))
  # SIGINT is signal 2 (bit 1), SIGTERM 15 (bit 14): mask bits 0x4002
  if [ $(( 0x$mask & 0x4002 )) -eq $(( 0x4002 )) ]; then
    blocking=$((blocking+1))
    [ "$st" = "/proc/$pid/task/$pid/status" ] && main_blocks=1
  fi
done
[ $threads -ge 3 ] && ok "$threads threads (main, OpenMP worker, signal thread)" || bad "$threads threads, expected >= 3"
[ $blocking -eq $((threads - 1)) ] && ok "$blocking of $threads threads block SIGINT and SIGTERM" \
  || bad "$blocking of $threads threads block SIGINT and SIGTERM (expected all but the signal thread)"
[ $main_blocks -eq 1 ] && ok "the main thread blocks them" || bad "the main thread does not block SIGINT/SIGTERM"

# ---- 2. SIGTERM stops and saves; a second one kills
kill -TERM $pid; { wait $pid; } 2>/dev/null; rc=$?; pid=
[ $rc -eq 130 ] && ok "SIGTERM: exit 130" || { bad "SIGTERM: exit $rc"; tail -5 "$T/a.log"; }
grep -q "interrupted after step" "$T/a.log" && ok "message: $(grep -m1 'interrupted' "$T/a.log" | head -c 120)" \
  || { bad "no 'interrupted after step' message"; tail -5 "$T/a.log"; }
[ -s "$T/a.safetensors" ] && [ -s "$T/a.safetensors.state.safetensors" ] && ok "checkpoint and state saved" \
  || bad "checkpoint or state missing"
grep -Eq 'corrupted|malloc\(\)|free\(\)|Aborted' "$T/a.log" && bad "heap message: $(grep -E 'corrupted|malloc|free' "$T/a.log" | head -1)"

"$MV" train "${RUN[@]}" "${MODEL[@]}" --out "$T/b.safetensors" > "$T/b.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -s "$T/b.safetensors.metrics.jsonl" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -TERM $pid; kill -TERM $pid; { wait $pid; } 2>/dev/null; rc=$?; pid=
[ $rc -eq 143 ] || [ $rc -eq 130 ] && ok "two SIGTERMs: exit $rc (143: the second killed it; 130: they merged or it had stopped)" \
  || { bad "two SIGTERMs: exit $rc"; tail -5 "$T/b.log"; }

# ---- 3. SIGTERM before training: the default action. The metrics file is a FIFO nobody reads,
# so the run waits in its open, after the data are loaded and before training starts.
mkfifo "$T/fifo"
"$MV" train "${RUN[@]}" "${MODEL[@]}" --metrics "$T/fifo" --out "$T/c.safetensors" > "$T/c.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do  # until its signal thread runs (or 60 s); training never starts
  [ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -ge 2 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
sleep 0.2
kill -TERM $pid; { wait $pid; } 2>/dev/null; rc=$?; pid=
[ $rc -eq 143 ] && ok "SIGTERM before training: exit 143" || { bad "SIGTERM before training: exit $rc"; tail -3 "$T/c.log"; }
[ ! -e "$T/c.safetensors" ] && ok "no checkpoint written" || bad "a checkpoint was written"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
