#!/usr/bin/env bash
# Faults and bad input under mpirun (docs/SCALING.md, "Faults and signals"): every case ends the
# whole job with a non-zero status within seconds and a message naming the rank and the cause;
# `timeout 60` turns a hang into a failure instead of a stuck CI.
# - bad input, found before any step by comparing fingerprints of every rank's inputs: another
#   flag on one rank, another copy of the data on one rank (one label changed), N larger than
#   the batch; rank 0 says it once;
# - a corrupt data file on one rank only: that rank fails to load while the others already
#   wait in the first collective, so it must MPI_Abort them;
# - a rank killed with SIGKILL mid-training: mpirun ends the job and names the rank;
# - rank 0 failing where the others wait in a sum (its checkpoint folder removed, so the
#   epoch-end save fails): the hang case, MPI_Abort naming rank 0 and the save;
# - SIGTERM to mpirun: it forwards SIGTERM to the ranks, which agree on the stop step (the
#   stop flags are summed every step); rank 0 saves one consistent checkpoint pair, and
#   --resume continues at the next step;
# - SIGTERM to the whole process group (GNU timeout), and two SIGTERMs to mpirun, after which
#   mpirun exits without forwarding: the ranks see it go, stop, and save the last step.
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
command -v mpirun > /dev/null || { echo "skip: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
ldd "$MV" | grep -q libmpi || { echo "skip: $MV was built without MPI (MVMOE_MPI=0)"; exit 77; }
[ -d "$DATA" ] || { echo "skip: $DATA not found (dataset-fashion-mnist)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(timeout 60 mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none)
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

OPT=(--max-images 600 --batch 32 --epochs 1 --max-steps 4 --warmup 0 --eval-every 0 --threads 1)
RUN=("${OPT[@]}" --dim 32 --depth 2 --heads 2 --mlp-dim 64 --patch 7)
# wrapper: rank $BAD_RANK runs with the extra words of $BAD_ARGS appended (a host with other flags
# or another --data) and $BAD_ENV (NAME=VALUE) in its environment; every rank writes its pid to
# $T/pid.RANK
cat > "$T/rank.sh" <<EOF
#!/usr/bin/env bash
echo \$\$ > "$T/pid.\$OMPI_COMM_WORLD_RANK"
# RANK_LOG: each rank writes its own output there, not through mpirun's forwarding, which a
# terminating mpirun may cut before the ranks' last lines (the SIGTERM case)
if [ -n "\${RANK_LOG:-}" ]; then exec >> "\$RANK_LOG.\$OMPI_COMM_WORLD_RANK" 2>&1; fi
mv="\$1"; shift
if [ "\$OMPI_COMM_WORLD_RANK" = "\${BAD_RANK:--1}" ]; then
  [ -n "\${BAD_ENV:-}" ] && export "\$BAD_ENV"
  exec "\$mv" "\$@" \${BAD_ARGS:-}
fi
exec "\$mv" "\$@"
EOF
chmod +x "$T/rank.sh"

# expect NAME RC_WANTED(nonzero|N) MAX_SECONDS PATTERN... : checks the last run ($rc, $dt, $T/log)
expect() {
  local name=$1 want=$2 max=$3; shift 3
  local good=1 p
  if [ "$want" = nonzero ]; then [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || good=0
  else [ "$rc" -eq "$want" ] || good=0; fi
  [ "$dt" -le "$max" ] || good=0
  for p in "$@"; do grep -q -- "$p" "$T/log" || { good=0; echo "  missing: $p"; }; done
  if [ $good = 1 ]; then ok "$name: exit $rc after ${dt}s"; grep -m 2 -e "error" -e "signal" "$T/log" | sed 's/^/    /' 
  else bad "$name: exit $rc after ${dt}s"; tail -n 12 "$T/log"; fi
}
run() {  # run NP ARGS...: mpirun through the wrapper; sets rc, dt
  local np=$1; shift
  local t0; t0=$(date +%s)
  "${MPI[@]}" -np "$np" "$T/rank.sh" "$MV" train "$@" > "$T/log" 2>&1
  rc=$?; dt=$(( $(date +%s) - t0 ))
}

# 1. another flag on one rank: named, once, by rank 0; nothing trained
BAD_RANK=2 BAD_ARGS="--lr 0.002" run 3 --data "$DATA" "${RUN[@]}" --out "$T/a.safetensors"
expect "another --lr on rank 2" nonzero 30 "rank 2 of 3 does not train what rank 0 trains: setting --lr: not the same as rank 0's"
[ "$(grep -c 'does not train what' "$T/log")" -eq 1 ] && ! grep -q "global 1/" "$T/log" \
  && ok "another --lr: one message, no step trained" || bad "another --lr: $(grep -c 'does not train what' "$T/log") messages"

# 1b. the overlapped gradient sums on one rank only: a blocking and a non-blocking sum never
#     meet, so this must be refused before the first step, not hang in it
BAD_RANK=1 BAD_ENV=MVMOE_OVERLAP_ALLREDUCE=1 run 2 --data "$DATA" "${RUN[@]}" --out "$T/a2.safetensors"
expect "MVMOE_OVERLAP_ALLREDUCE on rank 1 only" nonzero 30 "rank 1 of 2 does not train what rank 0 trains: environment MVMOE_OVERLAP_ALLREDUCE: not the same"

# 2. another copy of the data on rank 1: same files, one training label changed
mkdir "$T/data2" "$T/data3"
for f in "$DATA"/*; do ln -s "$f" "$T/data2/"; ln -s "$f" "$T/data3/"; done
rm "$T/data2/train-labels-idx1-ubyte.gz" "$T/data3/train-images-idx3-ubyte.gz"
$PY - "$DATA/train-labels-idx1-ubyte.gz" "$T/data2/train-labels-idx1-ubyte.gz" <<'EOF'
import gzip, sys
b = bytearray(gzip.open(sys.argv[1]).read())
b[8] = (b[8] + 1) % 10          # the first image's label (after the 8-byte IDX header)
gzip.open(sys.argv[2], 'wb').write(bytes(b))
EOF
BAD_RANK=1 BAD_ARGS="--data $T/data2" run 2 --data "$DATA" "${RUN[@]}" --out "$T/b.safetensors"
expect "another copy of the data on rank 1" nonzero 30 "rank 1 of 2 does not train what rank 0 trains: dataset labels (--data): not the same"

# 3. N larger than the global batch
run 3 --data "$DATA" "${RUN[@]}" --batch 2 --out "$T/c.safetensors"
expect "3 ranks, --batch 2" nonzero 30 "error: --batch 2 is smaller than the 3 ranks"
[ "$(grep -c 'is smaller than the 3 ranks' "$T/log")" -eq 1 ] && ok "--batch 2: said once" || bad "--batch 2: said $(grep -c 'is smaller than' "$T/log") times"

# 4. a corrupt data file on rank 1 only (truncated images): rank 1 cannot load while ranks 0
#    and 2 wait in the fingerprint exchange; it must abort them
head -c 100000 "$DATA/train-images-idx3-ubyte.gz" > "$T/data3/train-images-idx3-ubyte.gz"
BAD_RANK=1 BAD_ARGS="--data $T/data3" run 3 --data "$DATA" "${RUN[@]}" --out "$T/d.safetensors"
expect "a truncated data file on rank 1" nonzero 30 "rank 1: error: --data" "rank 1: failed (exit 1, its error above); aborting all 3 ranks"

# 5. SIGKILL to rank 1 mid-training: mpirun ends the job and names the rank and the signal
rm -f "$T"/pid.*
t0=$(date +%s)
"${MPI[@]}" -np 3 "$T/rank.sh" "$MV" train --data "$DATA" "${RUN[@]}" --max-steps 0 --epochs 500 \
  --out "$T/e.safetensors" > "$T/log" 2>&1 &
mp=$!
for _ in $(seq 150); do [ -s "$T/e.safetensors.metrics.jsonl" ] && break; sleep 0.2; done
kill -KILL "$(cat "$T/pid.1")"
wait $mp; rc=$?; dt=$(( $(date +%s) - t0 ))
[ -s "$T/e.safetensors.metrics.jsonl" ] || bad "SIGKILL: training had not started"
expect "SIGKILL to rank 1" nonzero 60 "rank 1 .*exited on signal 9"

# 6. rank 0 fails where the others wait in a sum: its --out folder disappears, so the save at
#    the first epoch end (16 steps) fails; ranks 1 and 2 are already in the next step's sum
mkdir "$T/gone"
t0=$(date +%s)
"${MPI[@]}" -np 3 "$T/rank.sh" "$MV" train --data "$DATA" "${RUN[@]}" --max-steps 0 --epochs 500 \
  --out "$T/gone/f.safetensors" --metrics "$T/f.metrics.jsonl" --metrics-every 1 > "$T/log" 2>&1 &
mp=$!
for _ in $(seq 150); do [ -s "$T/f.metrics.jsonl" ] && break; sleep 0.05; done
rm -rf "$T/gone"
wait $mp; rc=$?; dt=$(( $(date +%s) - t0 ))
expect "rank 0's save fails while the others wait" nonzero 60 "rank 0: error: " "rank 0: failed (exit 1, its error above); aborting all 3 ranks"

# 7. SIGTERM to mpirun: one consistent checkpoint, resumable at the next step
t0=$(date +%s)
RANK_LOG="$T/g.rank" "${MPI[@]}" -x RANK_LOG -np 2 "$T/rank.sh" "$MV" train --data "$DATA" "${RUN[@]}" \
  --max-steps 0 --epochs 500 --out "$T/g.safetensors" --metrics-every 1 > "$T/log" 2>&1 &
mp=$!
for _ in $(seq 150); do [ -s "$T/g.safetensors.metrics.jsonl" ] && break; sleep 0.2; done
sleep 1
# to mpirun itself (the child of `timeout`), once: a signal to `timeout` reaches mpirun twice
# (to the child, then to the process group; the ranks have groups of their own), case 8
pkill -TERM -P $mp -x mpirun
wait $mp; rc=$?; dt=$(( $(date +%s) - t0 ))
cat "$T"/g.rank.* >> "$T/log" 2>/dev/null
expect "SIGTERM to mpirun" nonzero 60 "interrupted after step [0-9]*; checkpoint saved"
S=$(sed -n 's/.*interrupted after step \([0-9]*\);.*/\1/p' "$T/log" | head -n 1)
"$MV" train --data "$DATA" "${OPT[@]}" --max-steps 1 --epochs 500 --resume --out "$T/g.safetensors" \
  --metrics-every 1 > "$T/g2.log" 2>&1
last=$(tail -n 1 "$T/g.safetensors.metrics.jsonl" | sed -n 's/.*"step":\([0-9]*\),.*/\1/p')
[ -n "$S" ] && [ "$last" = "$((S + 1))" ] && grep -q "resuming" "$T/g2.log" \
  && ok "SIGTERM to mpirun: saved at step $S, resumed at step $last" \
  || { bad "SIGTERM to mpirun: saved at '$S', resumed at '$last'"; tail -n 3 "$T/g2.log"; }

# stop_case NAME PREFIX: starts a 2-rank training (rank outputs to $T/PREFIX.rank.* when RANK_LOG
# is set), waits until it trains, sends the signal(s) of the shell function `send` (its argument:
# the pid of `timeout`), and checks what the job left: a non-zero exit within 60 s and a
# checkpoint of the last step the metrics file records, resumable at the next step (a save at
# an earlier epoch end, or none, fails; so does a state ahead of the metrics file)
stop_case() {
  local name=$1 p=$2 mp last res
  rm -f "$T"/pid.*
  t0=$(date +%s)
  "${MPI[@]}" -x RANK_LOG -np 2 "$T/rank.sh" "$MV" train --data "$DATA" "${RUN[@]}" --max-steps 0 \
    --epochs 500 --out "$T/$p.safetensors" --metrics-every 1 > "$T/log" 2>&1 &
  mp=$!
  for _ in $(seq 150); do [ -s "$T/$p.safetensors.metrics.jsonl" ] && break; sleep 0.2; done
  sleep 1
  send $mp
  wait $mp; rc=$?; dt=$(( $(date +%s) - t0 ))
  cat "$T/$p".rank.* >> "$T/log" 2>/dev/null
  expect "$name" nonzero 60
  last=$(tail -n 1 "$T/$p.safetensors.metrics.jsonl" | sed -n 's/.*"step":\([0-9]*\),.*/\1/p')
  "$MV" train --data "$DATA" "${OPT[@]}" --max-steps 1 --epochs 500 --resume --out "$T/$p.safetensors" \
    --metrics-every 1 > "$T/$p.resume.log" 2>&1
  res=$(tail -n 1 "$T/$p.safetensors.metrics.jsonl" | sed -n 's/.*"step":\([0-9]*\),.*/\1/p')
  [ -n "$last" ] && [ "$res" = "$((last + 1))" ] && grep -q "resuming" "$T/$p.resume.log" \
    && ok "$name: saved at the last step trained ($last), resumed at step $res" \
    || { bad "$name: the last step trained was '$last', resumed at '$res'"; tail -n 3 "$T/$p.resume.log"; }
}

# 8. SIGTERM to the whole process group, as GNU `timeout` sends it (to mpirun, then to its group:
#    mpirun may get it twice) and as a terminal's Ctrl-C does. OpenMPI puts the ranks in process
#    groups of their own, so only mpirun gets it; a second one within 5 s makes mpirun exit at
#    once without forwarding anything. The ranks must notice mpirun's end, stop together and
#    save the stop step (cli/stopsig.c). Whether mpirun gets one signal or two is a race here.
send() { kill -TERM "$1"; }
RANK_LOG="$T/h.rank" stop_case "SIGTERM to the process group (timeout)" h
grep -q "interrupted after step [0-9]*; checkpoint saved" "$T/log" && ok "process group: rank 0 said it saved" \
  || bad "process group: no 'interrupted ... checkpoint saved' line"

# 9. the case of 8 that went wrong, made certain: two SIGTERMs to mpirun 0.2 s apart, so mpirun
#    exits at once. Rank 0 writes to mpirun's pipes (no RANK_LOG): once mpirun is gone, a write
#    there must not end it (SIGPIPE) before its save.
send() { local m; m=$(pgrep -P "$1" -x mpirun); kill -TERM "$m"; sleep 0.2; kill -TERM "$m"; }
RANK_LOG= stop_case "two SIGTERMs to mpirun (it exits forwarding nothing)" i

echo "test_mpi_faults: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
