#!/usr/bin/env bash
# End-to-end on real data: a small ViT trained briefly on a Fashion-MNIST subset must reach a
# stated test accuracy; eval's scripted form (--logits OUT.f32, --json) must agree with it;
# a run stopped by --max-steps and resumed must end with the same weights as one straight run.
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "FAIL: $DATA missing: run 'bash scripts/setup.sh' (installs dataset-fashion-mnist)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MODEL=(--dim 32 --depth 4 --heads 2 --mlp-dim 64 --patch 4)
COMMON=(--data "$DATA" --max-images 8000 --batch 64 --lr 5e-3 --warmup 0.5 --seed 3 --crop-pad 0 --no-hflip --label-smoothing 0)

# 1. accuracy: 5 epochs on 7200 images (800 held out) → ≥ 70 % on 8000 test images (measured: 3 epochs give 68.6 %)
"$MV" train "${COMMON[@]}" "${MODEL[@]}" --epochs 5 --out "$T/m.safetensors" > "$T/train.log" 2>&1 \
  && ok "train exits 0" || { bad "train failed"; tail -20 "$T/train.log"; }
acc=$(grep -o 'test: top-1 [0-9.]*' "$T/train.log" | awk '{print $3}')
echo "test top-1 after 5 epochs: ${acc:-none} %"
awk -v a="${acc:-0}" 'BEGIN{exit !(a >= 70.0)}' && ok "test top-1 ${acc} % >= 70 %" || bad "test top-1 ${acc:-none} % < 70 %"

# 1b. bf16 products (--precision bf16, where the CPU has them): the same training reaches the same bar
if grep -qwE "avx512_bf16|amx_bf16" /proc/cpuinfo; then
  "$MV" train "${COMMON[@]}" "${MODEL[@]}" --epochs 5 --precision bf16 --out "$T/bf.safetensors" > "$T/bf.log" 2>&1 \
    && grep -q "precision: bf16 products" "$T/bf.log" && ok "train --precision bf16 exits 0 and says so" \
    || { bad "train --precision bf16 failed"; tail -20 "$T/bf.log"; }
  acc16=$(grep -o 'test: top-1 [0-9.]*' "$T/bf.log" | awk '{print $3}')
  echo "test top-1 after 5 epochs, bf16 products: ${acc16:-none} % (fp32: ${acc:-none} %)"
  awk -v a="${acc16:-0}" 'BEGIN{exit !(a >= 70.0)}' && ok "bf16 test top-1 ${acc16} % >= 70 %" || bad "bf16 test top-1 ${acc16:-none} % < 70 %"
fi

# 2. eval's scripted form: logits file of N x classes float32 whose argmax gives eval's top-1
"$MV" eval --model "$T/m.safetensors" --data "$DATA" --split test --logits "$T/l.f32" --json > "$T/e.json" 2> "$T/e.err" \
  && ok "eval --json --logits exits 0" || { bad "eval failed"; cat "$T/e.err"; }
size=$(stat -c %s "$T/l.f32" 2>/dev/null || echo 0)
[ "$size" -eq $((10000*10*4)) ] && ok "logits file is 10000 x 10 float32" || bad "logits file has $size bytes"
/usr/bin/python3 - "$T/l.f32" "$T/e.json" "$DATA" <<'PY' && ok "logits argmax == eval top-1 == labels file" || bad "logits/eval/labels disagree"
import sys, json, gzip, struct, array
lg = array.array('f'); lg.frombytes(open(sys.argv[1], 'rb').read())
ev = json.load(open(sys.argv[2]))
lab = gzip.open(sys.argv[3] + '/t10k-labels-idx1-ubyte.gz').read()[8:]
n = len(lab); pred = [max(range(10), key=lambda k: lg[i*10+k]) for i in range(n)]
acc = sum(p == y for p, y in zip(pred, lab)) / n
top1 = ev.get('top1', ev.get('top1_accuracy'))
if top1 is not None and top1 > 1: top1 /= 100
print('argmax acc', acc, 'eval top1', top1)
sys.exit(0 if top1 is not None and abs(acc - top1) < 1e-9 else 1)
PY

# 3. resume: 30 steps straight == 12 steps, stop, resume to 30 (bit-identical weights)
"$MV" train "${COMMON[@]}" "${MODEL[@]}" --epochs 1 --max-steps 30 --out "$T/a.safetensors" > "$T/a.log" 2>&1
"$MV" train "${COMMON[@]}" "${MODEL[@]}" --epochs 1 --max-steps 12 --out "$T/b.safetensors" > "$T/b.log" 2>&1
"$MV" train "${COMMON[@]}" --epochs 1 --max-steps 18 --out "$T/b.safetensors" --resume > "$T/b2.log" 2>&1 \
  && ok "resume exits 0" || { bad "resume failed"; tail -5 "$T/b2.log"; }
cmp -s "$T/a.safetensors" "$T/b.safetensors" && ok "resumed weights are bit-identical" || bad "resumed weights differ"
# weights and optimizer state from different steps (a crash between the two writes) are refused
"$MV" train "${COMMON[@]}" "${MODEL[@]}" --epochs 1 --max-steps 5 --out "$T/c.safetensors" > /dev/null 2>&1
cp "$T/c.safetensors.state.safetensors" "$T/a.safetensors.state.safetensors"
"$MV" train "${COMMON[@]}" --epochs 1 --max-steps 5 --out "$T/a.safetensors" --resume > "$T/mix.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "is at step 30 but its optimizer state" "$T/mix.log" && ok "mixed weights/state refused" \
  || { bad "mixed weights/state: rc $rc"; tail -2 "$T/mix.log"; }

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
