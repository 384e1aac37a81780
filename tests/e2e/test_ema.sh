#!/usr/bin/env bash
# --ema DECAY (DeiT's EMA of the weights): the EMA is saved as its own checkpoint next to the
# run's (CKPT.ema.safetensors) and evaluated on the test split; with a tiny decay it equals the
# weights; it travels in the optimizer state, so a killed-and-resumed run ends with the same
# EMA bits; resuming with --ema a run that had none is refused with a message.
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
COMMON=(--data "$DATA" --max-images 1200 --batch 32 --epochs 2 --warmup 0 --seed 5 --eval-every 0)
RUN=("${COMMON[@]}" --dim 16 --depth 2 --heads 2 --mlp-dim 32 --patch 7)

"$MV" train "${RUN[@]}" --ema 0.9 --out "$T/a.safetensors" > "$T/a.log" 2>&1 \
  && ok "train --ema 0.9" || { bad "train --ema failed"; tail -5 "$T/a.log"; }
[ -f "$T/a.safetensors.ema.safetensors" ] && grep -q "test (EMA weights): top-1" "$T/a.log" \
  && ok "EMA checkpoint written and evaluated on the test split" || { bad "no EMA checkpoint/eval"; tail -5 "$T/a.log"; }
"$MV" eval --model "$T/a.safetensors.ema.safetensors" --data "$DATA" --max-images 200 > /dev/null 2>&1 \
  && ok "mvmoe eval takes the EMA checkpoint" || bad "eval of the EMA checkpoint"

# killed halfway (here: --max-steps) and resumed: the same weights and the same EMA bits
"$MV" train "${RUN[@]}" --ema 0.9 --max-steps 40 --out "$T/b.safetensors" > /dev/null 2>&1
"$MV" train "${COMMON[@]}" --ema 0.9 --resume --out "$T/b.safetensors" > "$T/b.log" 2>&1 \
  && ok "resume with --ema" || { bad "resume with --ema"; tail -5 "$T/b.log"; }
cmp -s "$T/a.safetensors" "$T/b.safetensors" && cmp -s "$T/a.safetensors.ema.safetensors" "$T/b.safetensors.ema.safetensors" \
  && ok "resumed weights and EMA are bit-identical" || bad "resumed weights or EMA differ"

# the formula: decay 1e-6 keeps the EMA within float rounding of the weights; decay 0.9
# keeps it away from them (it averages over earlier steps)
"$MV" train "${RUN[@]}" --ema 1e-6 --out "$T/c.safetensors" > /dev/null 2>&1
/usr/bin/python3 - "$T" "$(dirname "$0")/../parity" <<'PY' && ok "EMA follows ema = d*ema + (1-d)*w" || bad "EMA values"
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from safetensors_io import load
T = sys.argv[1]
def flat(p):
    t, _ = load(p)
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for k, v in sorted(t.items())])
w, e = flat(f"{T}/c.safetensors"), flat(f"{T}/c.safetensors.ema.safetensors")
d = np.abs(w - e).max() / np.abs(w).max()
print("decay 1e-6: max rel diff", d)
assert d < 1e-5, d
w, e = flat(f"{T}/a.safetensors"), flat(f"{T}/a.safetensors.ema.safetensors")
d = np.abs(w - e).max() / np.abs(w).max()
print("decay 0.9: max rel diff", d)
assert d > 1e-4, d
PY

# a run without EMA cannot be resumed with it
"$MV" train "${RUN[@]}" --max-steps 10 --out "$T/d.safetensors" > /dev/null 2>&1
"$MV" train "${COMMON[@]}" --ema 0.9 --resume --out "$T/d.safetensors" > "$T/d.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -qE "no weight EMA|--ema 0 \(now 0\.89" "$T/d.log" && ok "resume --ema of a run without EMA refused" \
  || { bad "resume --ema without EMA: rc $rc"; tail -3 "$T/d.log"; }

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
