#!/usr/bin/env bash
# Data-parallel training under mpirun (docs/SCALING.md): N ranks with the same global batch and
# seed train what one process trains. 1 process vs `mpirun -np 2` vs `-np 3` (uneven shares of
# the batch of 32: 10, 11, 11), with drop path and gradient clipping on (both in the path of the
# reduction): the loss and gradient norm of the metrics lines agree within 1e-5 relative and the
# final weights within 1e-5 (relative L2 over all of them; element by element, Adam turns the
# rounding noise of gradients that are mathematically zero, such as the key bias's, into whole
# ±lr steps, so single elements can differ more: docs/SCALING.md). Dense and image-superclass
# MoE; a 2-rank checkpoint resumed on 3 ranks; a failing rank ends the job quickly, naming the
# rank; SIGTERM to one rank stops all of them after the same step with rank 0's checkpoint;
# learned routing is refused under several ranks.
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
command -v mpirun > /dev/null || { echo "skip: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
ldd "$MV" | grep -q libmpi || { echo "skip: $MV was built without MPI (MVMOE_MPI=0)"; exit 77; }
[ -d "$DATA" ] || { echo "skip: $DATA not found (dataset-fashion-mnist)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# one core may be all there is: the ranks must not spin against each other
MPI=(mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none)
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

cat > "$T/cmp.py" <<'EOF'
# cmp.py A.safetensors B.safetensors: relative L2 difference of all weights <= 1e-5, and the
# metrics lines (A.metrics.jsonl, B.metrics.jsonl): the same steps, loss and grad_norm <= 1e-5
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        assert v['dtype'] == 'F32', (k, v['dtype'])
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype='<f4').astype(np.float64)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert sorted(a) == sorted(b), 'different tensors'
x = np.concatenate([a[k] for k in sorted(a)]); y = np.concatenate([b[k] for k in sorted(a)])
wd = np.linalg.norm(x - y) / np.linalg.norm(x)
la = [json.loads(l) for l in open(sys.argv[1] + '.metrics.jsonl')]
lb = [json.loads(l) for l in open(sys.argv[2] + '.metrics.jsonl')]
assert [r['step'] for r in la] == [r['step'] for r in lb], 'different metric steps'
ld = max(abs(p[f] - q[f]) / abs(p[f]) for p, q in zip(la, lb) for f in ('loss', 'grad_norm'))
print('weights: relative L2 difference %.3g; metrics (%d lines): loss/grad_norm %.3g' % (wd, len(la), ld))
sys.exit(0 if wd <= 1e-5 and ld <= 1e-5 and len(la) >= 1 else 1)
EOF
cmp_runs() {  # what, A, B
  local r
  r=$($PY "$T/cmp.py" "$2" "$3" 2>&1) && ok "$1: $r" || bad "$1: $r"
}

# 6 steps: the metrics line of the end (event 2: the last step's loss and gradient norm). More
# steps let Adam grow the rounding differences of near-zero gradients (see the top).
OPT=(--data "$DATA" --max-images 600 --batch 32 --epochs 1 --max-steps 6 --warmup 0 --seed 3
     --eval-every 0 --clip 0.5 --drop-path 0.1 --threads 1)
RUN=("${OPT[@]}" --dim 32 --depth 2 --heads 2 --mlp-dim 64 --patch 7)
echo "0 0 1 0 1 2 0 2 1 2" > "$T/map.txt"  # Fashion-MNIST: tops, trousers/bags, footwear
for cfg in dense moe; do
  extra=()
  [ "$cfg" = moe ] && extra=(--superclasses "$T/map.txt" --moe-layers 1 --top-k 1)
  "$MV" train "${RUN[@]}" "${extra[@]}" --out "$T/$cfg.1.safetensors" > "$T/$cfg.1.log" 2>&1 \
    || { bad "$cfg: one process failed"; tail -n 3 "$T/$cfg.1.log"; }
  for n in 2 3; do
    timeout 120 "${MPI[@]}" -np $n "$MV" train "${RUN[@]}" "${extra[@]}" --out "$T/$cfg.$n.safetensors" \
      > "$T/$cfg.$n.log" 2>&1 || { bad "$cfg: mpirun -np $n failed"; tail -n 5 "$T/$cfg.$n.log"; continue; }
    grep -q "data parallel: $n ranks" "$T/$cfg.$n.log" || bad "$cfg: -np $n did not run data parallel"
    [ "$(grep -c '^data:' "$T/$cfg.$n.log")" -eq 1 ] || bad "$cfg: -np $n: more than one rank reported"
    cmp_runs "$cfg: 1 process vs $n ranks" "$T/$cfg.1.safetensors" "$T/$cfg.$n.safetensors"
  done
done
cmp -s "$T/dense.1.safetensors" "$T/moe.1.safetensors" && bad "dense and moe runs are the same"

# resume: 3 steps on 2 ranks, then 3 more on 3 ranks == 6 steps in one process
"${MPI[@]}" -np 2 "$MV" train "${RUN[@]}" --max-steps 3 --out "$T/r.safetensors" > "$T/r1.log" 2>&1 \
  && timeout 120 "${MPI[@]}" -np 3 "$MV" train "${OPT[@]}" --max-steps 3 --resume --out "$T/r.safetensors" \
     > "$T/r2.log" 2>&1 || { bad "resume: 2 ranks then 3 failed"; tail -n 5 "$T/r1.log" "$T/r2.log"; }
grep -q "resuming" "$T/r2.log" || bad "resume: the second run did not resume"
$PY - "$T/dense.1.safetensors" "$T/r.safetensors" "$T/cmp.py" <<'EOF' && ok "resume: 3 steps on 2 ranks + 3 on 3 ranks == 6 in one process" || bad "resume: weights differ"
import sys
src = open(sys.argv[3]).read().split('wd = ')[0]   # the loader and the L2 difference
sys.argv = sys.argv[:3]
exec(src)
d = np.linalg.norm(x - y) / np.linalg.norm(x)
print('resume: relative L2 difference %.3g' % d)
sys.exit(0 if d <= 1e-5 else 1)
EOF

# a failing rank (its data missing) ends the whole job quickly, non-zero, naming the rank
t0=$(date +%s)
timeout 60 "${MPI[@]}" -np 2 bash -c 'd='"$DATA"'; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && d=/nonexistent/data
  exec "$0" train --data "$d" "${@}"' "$MV" --max-images 600 --batch 32 --epochs 1 --max-steps 10 \
  --dim 32 --depth 2 --heads 2 --mlp-dim 64 --patch 7 --threads 1 --out "$T/f.safetensors" > "$T/f.log" 2>&1
rc=$?; dt=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 1: error: --data" "$T/f.log" && grep -q "rank 1: failed" "$T/f.log" \
  && ok "a failing rank: exit $rc after ${dt}s, named in the message" || { bad "failing rank: rc $rc after ${dt}s"; cat "$T/f.log"; }

# learned routing (batch statistics in its losses) is refused under several ranks
"${MPI[@]}" -np 2 "$MV" train "${RUN[@]}" --routing image-learned --experts 2 --moe-layers 1 --top-k 1 \
  --out "$T/l.safetensors" > "$T/l.log" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "learned routing.*statistics of the whole batch" "$T/l.log" \
  && ok "learned routing refused under 2 ranks" || { bad "learned routing: rc $rc"; tail -n 3 "$T/l.log"; }

# SIGTERM to one rank: every rank stops after the same step, rank 0 saves, exit 130; resumable
"${MPI[@]}" -np 2 bash -c 'echo $$ > '"$T"'/pid.$OMPI_COMM_WORLD_RANK; exec "$0" train "$@"' "$MV" \
  "${RUN[@]}" --max-steps 0 --epochs 200 --out "$T/s.safetensors" > "$T/s.log" 2>&1 &
mp=$!
for _ in $(seq 100); do [ -s "$T/s.safetensors.metrics.jsonl" ] && break; sleep 0.2; done
kill -TERM "$(cat "$T/pid.1")" 2> /dev/null
for _ in $(seq 150); do kill -0 $mp 2> /dev/null || break; sleep 0.2; done
kill -0 $mp 2> /dev/null && { kill -KILL $mp; bad "SIGTERM: the job did not end in 30 s"; }
wait $mp; rc=$?
[ $rc -eq 130 ] && grep -q "interrupted after step" "$T/s.log" && [ -s "$T/s.safetensors.state.safetensors" ] \
  && ok "SIGTERM to rank 1: exit 130, rank 0 saved" || { bad "SIGTERM: rc $rc"; tail -n 5 "$T/s.log"; }
"$MV" info "$T/s.safetensors" > /dev/null 2>&1 && ok "SIGTERM: the checkpoint loads" || bad "SIGTERM: checkpoint unreadable"

echo "test_mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
