#!/usr/bin/env bash
# A training run gives the same weights bit for bit on 1 and 2 threads: every kernel splits its
# work so that each output is summed in an order fixed by the shapes alone (test_infer checks the
# forward and the gradients; this checks the whole run: gradient clipping, AdamW, data order,
# checkpoint). Clipping is forced on (--clip 0.05), so the gradient norm is in the path (its
# threaded sum once depended on the thread count; that rarely survived the float clipping
# coefficient, so test_optim checks the norm's bits directly). Dense, per-image learned
# routing, and (where the CPU has bf16 kernels) dense with --precision bf16, whose products
# keep the property (linear_bf16.c: padded row tails, fixed weight-gradient parts).
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# wide enough that the products, LayerNorm, GELU and the norm are threaded (fc1: 73,728 > 65,536)
RUN=(--data "$DATA" --max-images 1000 --batch 64 --epochs 1 --max-steps 6 --warmup 0 --seed 3
     --eval-every 0 --clip 0.05 --dim 96 --depth 2 --heads 4 --mlp-dim 768 --patch 4)
cfgs=(dense moe)
grep -qwE "avx512_bf16|amx_bf16" /proc/cpuinfo && cfgs+=(bf16)
for cfg in "${cfgs[@]}"; do
  extra=()
  [ "$cfg" = moe ] && extra=(--routing image-learned --experts 4 --top-k 1 --moe-layers 1)
  [ "$cfg" = bf16 ] && extra=(--precision bf16)
  for th in 1 2; do
    "$MV" train "${RUN[@]}" "${extra[@]}" --threads "$th" --out "$T/$cfg.$th.safetensors" > "$T/$cfg.$th.log" 2>&1 \
      || { bad "$cfg: training on $th thread(s) failed"; tail -5 "$T/$cfg.$th.log"; }
  done
  grep -q "grad-norm" "$T/$cfg.1.log" || bad "$cfg: no gradient norm in the log"
  cmp -s "$T/$cfg.1.safetensors" "$T/$cfg.2.safetensors" \
    && ok "$cfg: weights after 6 clipped steps are bit-identical on 1 and 2 threads" \
    || bad "$cfg: weights differ between 1 and 2 threads"
done
if [[ " ${cfgs[*]} " == *" bf16 "* ]]; then  # not vacuous: bf16 products did run
  cmp -s "$T/dense.1.safetensors" "$T/bf16.1.safetensors" \
    && bad "bf16: the same weights as fp32 (were bf16 products used?)" || ok "bf16: weights differ from fp32's"
fi
echo "test_threads: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
