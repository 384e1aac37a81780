#!/usr/bin/env bash
# Per-image expert parallelism under mpirun (--expert-parallel, docs/SCALING.md): the experts
# are spread over the ranks and each image's activations travel to its expert's rank. A tiny
# image-superclass MoE (4 experts, 2 MoE blocks of 3, top-1, drop path, clipping, EMA) trains
# what one process trains:
# - 1 process vs `mpirun -np 2` (2 experts per rank) and `-np 4` (1 each): the loss and
#   gradient norm of every step within 1e-5 relative, the final weights, optimizer state and
#   EMA within 1e-5 relative L2 (measured: at most 2e-7), the checkpoint holding every
#   expert's weights (rank 0 writes them after they are brought from their ranks);
# - a whole epoch (16 steps) with validation: the epoch-end check that the ranks hold the same
#   state passes (the experts are synchronized first) and the validation and test results
#   are one process's;
# - --expert-parallel in one process: the same bits as without it; -np 2 twice: the same bits;
# - resume: 3 + 3 steps on 2 ranks == 6 on 2 ranks, bit for bit; 3 on 2 ranks + 3 in one
#   process == 6 in one process (within the bounds above);
# - SIGTERM to rank 1 mid-epoch: exit 130 and rank 0's checkpoint matches one process trained
#   for the same steps (the experts of rank 1 are in it);
# - the bytes: the sums carry only the shared weights (4 bytes per shared parameter at 2
#   ranks, not 4 per parameter), and a2a_bytes is what the all-to-alls send: whole records of
#   images out and gradients back, plus the counts;
# - top-2 (each image at its first expert's rank; its second expert's rows travel at every MoE
#   block when that expert lives on another rank): 1 process vs -np 2 (2 experts per rank:
#   some second experts local, some not) and -np 4 (every second expert elsewhere), 6 steps,
#   within the bounds above; top-3 at 4 ranks likewise; --expert-parallel in one process: the
#   same bits; resume: 3 steps
#   on 2 ranks + 3 on 4 ranks vs 6 in one process; a2a_bytes at 2 ranks decodes into whole
#   records, the experts' ids and each MoE block's rows (T rows a choice, 1 in the class-only
#   last block), there and back in the forward and the backward;
# - bad input, refused before training with a clear message: experts not divisible by the
#   ranks (4 over 3), a dense model.
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
command -v mpirun > /dev/null || { echo "skip: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
ldd "$MV" | grep -q libmpi || { echo "skip: $MV was built without MPI (MVMOE_MPI=0)"; exit 77; }
[ -d "$DATA" ] || { echo "skip: $DATA not found (dataset-fashion-mnist)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none)
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

cat > "$T/cmp.py" <<'EOF'
# cmp.py A B [steps]: relative L2 difference of all tensors of A and B (and of their .state and
# .ema files when both have them) <= 1e-5; with steps, the metrics lines of A and B: the same
# steps (at least that many), loss and grad_norm of each step within 1e-5
import json, os, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == '__metadata__' or v['dtype'] != 'F32': continue
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype='<f4').astype(np.float64)
    return out
def rel(pa, pb):
    a, b = load(pa), load(pb)
    assert sorted(a) == sorted(b), 'different tensors in %s and %s' % (pa, pb)
    x = np.concatenate([a[k] for k in sorted(a)]); y = np.concatenate([b[k] for k in sorted(a)])
    return np.linalg.norm(x - y) / np.linalg.norm(x)
A, B = sys.argv[1], sys.argv[2]
out, good = [], True
for suffix in ('', '.state.safetensors', '.ema.safetensors'):
    if suffix and not (os.path.exists(A + suffix) and os.path.exists(B + suffix)): continue
    d = rel(A + suffix, B + suffix)
    out.append('%s %.3g' % (suffix.split('.')[1] if suffix else 'weights', d)); good &= d <= 1e-5
if len(sys.argv) > 3:
    la = [json.loads(l) for l in open(A + '.metrics.jsonl')]
    lb = [json.loads(l) for l in open(B + '.metrics.jsonl')]
    la, lb = [r for r in la if r['event'] == 0], [r for r in lb if r['event'] == 0]
    same = [r['step'] for r in la] == [r['step'] for r in lb]
    ld = max(abs(p[f] - q[f]) / abs(p[f]) for p, q in zip(la, lb) for f in ('loss', 'grad_norm'))
    out.append('loss/grad_norm of %d steps %.3g' % (len(la), ld))
    good &= same and ld <= 1e-5 and len(la) >= int(sys.argv[3])
print('; '.join(out))
sys.exit(0 if good else 1)
EOF
cmp_runs() {  # what, A, B, [steps]
  local r
  r=$($PY "$T/cmp.py" "$2" "$3" ${4:+"$4"} 2>&1) && ok "$1: $r" || bad "$1: $r"
}

echo "0 0 1 0 1 2 3 2 1 3" > "$T/map.txt"  # Fashion-MNIST in 4 super-classes: 4 experts
OPT=(--data "$DATA" --max-images 600 --batch 32 --epochs 1 --warmup 0 --seed 3 --clip 0.5 --drop-path 0.1
     --ema 0.9 --threads 1 --metrics-every 1)
RUN=("${OPT[@]}" --dim 32 --depth 3 --heads 2 --mlp-dim 64 --patch 7 --superclasses "$T/map.txt"
     --moe-layers 2 --top-k 1)
S6=(--max-steps 6 --eval-every 0)

"$MV" train "${RUN[@]}" "${S6[@]}" --out "$T/one.safetensors" > "$T/one.log" 2>&1 \
  || { bad "one process failed"; tail -n 3 "$T/one.log"; }
"$MV" train "${RUN[@]}" "${S6[@]}" --expert-parallel --out "$T/one_ep.safetensors" > "$T/one_ep.log" 2>&1 \
  && cmp -s "$T/one.safetensors" "$T/one_ep.safetensors" && ok "one process: --expert-parallel gives the same bits" \
  || { bad "one process: --expert-parallel differs"; tail -n 3 "$T/one_ep.log"; }
for n in 2 4; do
  timeout 120 "${MPI[@]}" -np $n "$MV" train "${RUN[@]}" "${S6[@]}" --expert-parallel --out "$T/ep$n.safetensors" \
    > "$T/ep$n.log" 2>&1 || { bad "mpirun -np $n --expert-parallel failed"; tail -n 5 "$T/ep$n.log"; continue; }
  grep -q "expert parallel: $((4 / n)) experts per rank" "$T/ep$n.log" || bad "-np $n: no expert-parallel line"
  cmp_runs "1 process vs $n ranks expert parallel" "$T/one.safetensors" "$T/ep$n.safetensors" 6
done
timeout 120 "${MPI[@]}" -np 2 "$MV" train "${RUN[@]}" "${S6[@]}" --expert-parallel --out "$T/again.safetensors" \
  > "$T/again.log" 2>&1 && cmp -s "$T/ep2.safetensors" "$T/again.safetensors" \
  && ok "2 ranks twice: the same bits" || bad "2 ranks twice differ"

# a whole epoch with validation: the epoch-end state check, validation and test on rank 0
"$MV" train "${RUN[@]}" --eval-every 1 --out "$T/full1.safetensors" > "$T/full1.log" 2>&1 \
  || { bad "full epoch, one process failed"; tail -n 3 "$T/full1.log"; }
timeout 120 "${MPI[@]}" -np 2 "$MV" train "${RUN[@]}" --eval-every 1 --expert-parallel --out "$T/full2.safetensors" \
  > "$T/full2.log" 2>&1 || { bad "full epoch, 2 ranks failed"; tail -n 5 "$T/full2.log"; }
cmp_runs "a whole epoch, 1 process vs 2 ranks" "$T/full1.safetensors" "$T/full2.safetensors" 16
v1=$(grep -E "^(epoch 1/1 done|test:)" "$T/full1.log" | sed 's/ | [0-9]* img\/s.*//'); v2=$(grep -E "^(epoch 1/1 done|test:)" "$T/full2.log" | sed 's/ | [0-9]* img\/s.*//')
[ -n "$v1" ] && [ "$v1" = "$v2" ] && ok "a whole epoch: the same validation and test results" \
  || bad "a whole epoch: results differ: '$v1' vs '$v2'"

# resume: 3 + 3 on 2 ranks == 6 on 2 ranks (bits); 3 on 2 ranks + 3 in one process ~ 6 in one
timeout 120 "${MPI[@]}" -np 2 "$MV" train "${RUN[@]}" --max-steps 3 --eval-every 0 --expert-parallel \
  --out "$T/r.safetensors" > "$T/r1.log" 2>&1 || { bad "resume: the first 3 steps failed"; tail -n 5 "$T/r1.log"; }
for f in "" .state.safetensors .ema.safetensors .metrics.jsonl; do cp "$T/r.safetensors$f" "$T/r1p.safetensors$f"; done
timeout 120 "${MPI[@]}" -np 2 "$MV" train "${OPT[@]}" --max-steps 3 --eval-every 0 --expert-parallel --resume \
  --out "$T/r.safetensors" > "$T/r2.log" 2>&1 || { bad "resume: 3 more steps on 2 ranks failed"; tail -n 5 "$T/r2.log"; }
cmp -s "$T/ep2.safetensors" "$T/r.safetensors" && cmp -s "$T/ep2.safetensors.state.safetensors" "$T/r.safetensors.state.safetensors" \
  && ok "resume: 3 + 3 steps on 2 ranks == 6 on 2 ranks, bit for bit" || bad "resume: 3 + 3 on 2 ranks differs from 6"
"$MV" train "${OPT[@]}" --max-steps 3 --eval-every 0 --resume --out "$T/r1p.safetensors" > "$T/r1p.log" 2>&1 \
  || { bad "resume: 3 more steps in one process failed"; tail -n 5 "$T/r1p.log"; }
cmp_runs "resume: 3 steps on 2 ranks + 3 in one process vs 6 in one process" "$T/one.safetensors" "$T/r1p.safetensors"

# SIGTERM to rank 1 mid-epoch: all ranks stop after the same step and rank 0's checkpoint holds
# every expert as trained so far (rank 1's experts brought over first): one process trained for
# as many steps matches it
"${MPI[@]}" -np 2 bash -c 'echo $$ > '"$T"'/pid.$OMPI_COMM_WORLD_RANK; exec "$0" train "$@"' "$MV" \
  "${RUN[@]}" --epochs 200 --eval-every 0 --expert-parallel --out "$T/s.safetensors" > "$T/s.log" 2>&1 &
mp=$!
for _ in $(seq 100); do [ -s "$T/s.safetensors.metrics.jsonl" ] && break; sleep 0.2; done
kill -TERM "$(cat "$T/pid.1")" 2> /dev/null
for _ in $(seq 150); do kill -0 $mp 2> /dev/null || break; sleep 0.2; done
kill -0 $mp 2> /dev/null && { kill -KILL $mp; bad "SIGTERM: the job did not end in 30 s"; }
wait $mp; rc=$?
st=$(sed -n 's/.*interrupted after step \([0-9]*\).*/\1/p' "$T/s.log" | head -n 1)
if [ $rc -eq 130 ] && [ -n "$st" ]; then
  "$MV" train "${RUN[@]}" --epochs 200 --eval-every 0 --max-steps "$st" --out "$T/s1.safetensors" > "$T/s1.log" 2>&1 \
    || bad "SIGTERM: one process for $st steps failed"
  cmp_runs "SIGTERM to rank 1 after step $st: the saved checkpoint vs $st steps in one process" \
    "$T/s1.safetensors" "$T/s.safetensors"
else
  bad "SIGTERM: rc $rc"; tail -n 5 "$T/s.log"
fi

# top-2: the same answer as one process at 2 and 4 ranks; the same bits in one process
RUN2=("${OPT[@]}" --dim 32 --depth 3 --heads 2 --mlp-dim 64 --patch 7 --superclasses "$T/map.txt"
      --moe-layers 2 --top-k 2)
"$MV" train "${RUN2[@]}" "${S6[@]}" --out "$T/k2one.safetensors" > "$T/k2one.log" 2>&1 \
  || { bad "top-2: one process failed"; tail -n 3 "$T/k2one.log"; }
"$MV" train "${RUN2[@]}" "${S6[@]}" --expert-parallel --out "$T/k2one_ep.safetensors" > "$T/k2one_ep.log" 2>&1 \
  && cmp -s "$T/k2one.safetensors" "$T/k2one_ep.safetensors" \
  && ok "top-2, one process: --expert-parallel gives the same bits" \
  || { bad "top-2, one process: --expert-parallel differs"; tail -n 3 "$T/k2one_ep.log"; }
for n in 2 4; do
  timeout 120 "${MPI[@]}" -np $n "$MV" train "${RUN2[@]}" "${S6[@]}" --expert-parallel --out "$T/k2ep$n.safetensors" \
    > "$T/k2ep$n.log" 2>&1 || { bad "top-2: mpirun -np $n --expert-parallel failed"; tail -n 5 "$T/k2ep$n.log"; continue; }
  grep -q "expert parallel: $((4 / n)) experts per rank; each image's activations go to its first expert's rank" \
    "$T/k2ep$n.log" || bad "top-2, -np $n: no expert-parallel line"
  cmp_runs "top-2: 1 process vs $n ranks expert parallel" "$T/k2one.safetensors" "$T/k2ep$n.safetensors" 6
done
# top-3 (general k: choices 2 and 3 may go to two other ranks) at 4 ranks
"$MV" train "${RUN2[@]}" "${S6[@]}" --top-k 3 --out "$T/k3one.safetensors" > "$T/k3one.log" 2>&1 \
  || { bad "top-3: one process failed"; tail -n 3 "$T/k3one.log"; }
timeout 120 "${MPI[@]}" -np 4 "$MV" train "${RUN2[@]}" "${S6[@]}" --top-k 3 --expert-parallel \
  --out "$T/k3ep4.safetensors" > "$T/k3ep4.log" 2>&1 \
  && cmp_runs "top-3: 1 process vs 4 ranks expert parallel" "$T/k3one.safetensors" "$T/k3ep4.safetensors" 6 \
  || { bad "top-3: mpirun -np 4 --expert-parallel failed"; tail -n 5 "$T/k3ep4.log"; }
timeout 120 "${MPI[@]}" -np 2 "$MV" train "${RUN2[@]}" --max-steps 3 --eval-every 0 --expert-parallel \
  --out "$T/k2r.safetensors" > "$T/k2r1.log" 2>&1 || { bad "top-2 resume: 3 steps on 2 ranks failed"; tail -n 5 "$T/k2r1.log"; }
timeout 120 "${MPI[@]}" -np 4 "$MV" train "${OPT[@]}" --max-steps 3 --eval-every 0 --expert-parallel --resume \
  --out "$T/k2r.safetensors" > "$T/k2r2.log" 2>&1 || { bad "top-2 resume: 3 more on 4 ranks failed"; tail -n 5 "$T/k2r2.log"; }
cmp_runs "top-2 resume: 3 steps on 2 ranks + 3 on 4 ranks vs 6 in one process" "$T/k2one.safetensors" "$T/k2r.safetensors"
# top-2's bytes at 2 ranks, rank 0 per step: o images out (a record of 1 + 2k + K + T·D floats),
# i gradients back (K + k + T·D), the two counts, one expert id per choice sent (po), and per
# MoE block the rows of po choices out and of gi choices' outputs back, in the forward and the
# backward: 2·(po + gi)·D·4 bytes a row, T rows in the first block, 1 in the class-only last
$PY - "$T/k2ep2.safetensors" <<'EOF' && ok "top-2: bytes per step at 2 ranks" || bad "top-2: bytes per step"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1] + '.metrics.jsonl') if '"event":0' in l]
T, D, K, Bg, k = 17, 32, 10, 32, 2
fwd, bwd, row = 4 * (1 + 2 * k + K + T * D), 4 * (K + k + T * D), 2 * D * 4 * (T + 1)
okb, out = True, []
for s in steps:
    ab = s.get('a2a_bytes', 0)
    # o <= rank 0's 16 images, i <= the other 16, po and gi <= the batch (a rank may hold
    # every image, or host every second choice)
    found = [(o, i, po, int(gi)) for o in range(Bg // 2 + 1) for i in range(Bg // 2 + 1) for po in range(Bg + 1)
             for gi in [(ab - o * fwd - i * bwd - 8 - 4 * po - row * po) / row]
             if gi == int(gi) and 0 <= gi <= Bg]
    okb &= len(found) > 0 and any(f[2] + f[3] > 0 for f in found)
    out.append('%s: %s' % (ab, found[:1]))
print('a2a_bytes: one way to decode it (o images out, i back, po choices out, gi in; not unique):', '; '.join(out))
sys.exit(0 if okb and steps else 1)
EOF

# the bytes: sums over the shared weights only; the all-to-alls send whole records
"$MV" info "$T/ep2.safetensors" > "$T/info.txt" 2>&1
$PY - "$T/ep2.safetensors" <<'EOF' && ok "bytes per step at 2 ranks" || bad "bytes per step"
import json, struct, sys
p = sys.argv[1]
b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
cnt = lambda v: int(__import__('math').prod(v['shape']))
P = sum(cnt(v) for k, v in h.items() if k != '__metadata__')
Px = sum(cnt(v) for k, v in h.items() if '.experts.' in k)
steps = [json.loads(l) for l in open(p + '.metrics.jsonl') if '"event":0' in l]
T, D, K, Bg = 17, 32, 10, 32
fwd, bwd = 4 * (3 + K + T * D), 4 * (K + 1 + T * D)  # bytes of a record there and back
okb = True
for s in steps:
    cb, ab = s.get('comm_bytes', 0), s.get('a2a_bytes', 0)
    # shared floats at N=2: 1 float sent per float summed (+ a few doubles, arena padding)
    okb &= 4 * (P - Px) <= cb <= 4 * (P - Px) + 512
    # images out (o) and gradients back (i): ab = o*fwd + i*bwd + one count int
    okb &= any(o * fwd + i * bwd + 4 == ab for o in range(Bg // 2 + 1) for i in range(Bg + 1))
print('P %d, experts %d: comm_bytes %s (data parallel would send %d), a2a_bytes %s'
      % (P, Px, [s.get('comm_bytes') for s in steps], 4 * P, [s.get('a2a_bytes') for s in steps]))
sys.exit(0 if okb and steps else 1)
EOF

# bad input, refused before the first step with a message that says what to do
refused() {  # what, expected message (grep -E), mpirun args...
  local what=$1 msg=$2; shift 2
  timeout 60 "${MPI[@]}" "$@" > "$T/bad.log" 2>&1; local rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qE "$msg" "$T/bad.log" && ! grep -q "^epoch 1/1 step" "$T/bad.log" \
    && ok "refused: $what" || { bad "$what: rc $rc"; tail -n 5 "$T/bad.log"; }
}
refused "4 experts over 3 ranks" "the 4 experts do not split evenly over 3 ranks; run a number of ranks that divides 4" \
  -np 3 "$MV" train "${RUN[@]}" "${S6[@]}" --expert-parallel --out "$T/bad.safetensors"
refused "a dense model" "needs one router per image.*routing is dense" \
  -np 2 "$MV" train "${OPT[@]}" "${S6[@]}" --dim 32 --depth 2 --heads 2 --mlp-dim 64 --patch 7 --expert-parallel \
  --out "$T/bad.safetensors"

echo "test_mpi_ep: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
