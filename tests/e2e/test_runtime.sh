#!/usr/bin/env bash
# The dependency-free runtime, build/mvmoe-run (docs/EDGE.md, "Runtime"), against `mvmoe eval`
# on tiny models trained a few steps on Fashion-MNIST (raw IDX: the runtime links no zlib):
#  - fp32 logits within 1e-5 of eval's (relative to the largest |logit|) and the same routes,
#    for dense, image-superclass k=1 and k=2, image-learned k=1 and k=2 and --adaptive-k;
#  - int8: the same top-1 as `eval --precision int8` on every image, from the fp32 file and
#    from its `mvmoe quantize` output (and those two give the same bits, as in the library);
#    the quantized file under fp32 (dequantized) within 1e-5 of eval's;
#    MVMOE_ISA=plain (and, on x86-64, avx2-vnni and avx2) gives the same int8 logits bits as the
#    CPU's best kernels;
#  - --split-image (one image over 2 threads): int8 the same bits, fp32 within 1e-5;
#  - --json carries eval's top1/n; a PGM image gives the same class as the dataset run;
#    --latency prints a median; ldd shows only libc/libm/libgomp;
#  - refusals with clear messages and exit 1, never a crash: token-learned routing, a
#    truncated file, a garbage header, a NaN scale, an I8 tensor without the int8 metadata,
#    gzip-only data.
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"; RUN="$BUILD/mvmoe-run"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
N=300
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
[ -d "$DATA" ] || { echo "skip: $DATA is missing (scripts/setup.sh)"; exit 77; }
"$PY" -c "import numpy" 2> /dev/null || { echo "skip: python3-numpy is not installed (scripts/setup.sh)"; exit 77; }
[ -x "$RUN" ] || { bad "$RUN is not built (make runtime)"; exit 1; }

T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir "$T/fm"
for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do gunzip -c "$DATA/$f.gz" > "$T/fm/$f"; done
echo "0 1 0 1 0 2 0 2 1 2" > "$T/map.txt"   # Fashion-MNIST's 10 classes in 3 super-classes
MODEL=(--dim 32 --depth 3 --heads 2 --mlp-dim 64 --patch 7)
TRAIN=(--data "$DATA" --max-images 1000 --batch 32 --lr 3e-3 --warmup 0 --seed 1 --epochs 1 --max-steps 30
       --eval-every 0)
declare -A FLAGS=(
  [dense]=""
  [superclass-k1]="--superclasses $T/map.txt --moe-layers 2 --top-k 1"
  [superclass-k2]="--superclasses $T/map.txt --moe-layers 2 --top-k 2"
  [learned-k1]="--routing image-learned --experts 3 --moe-layers 1 --top-k 1"
  [learned-k2]="--routing image-learned --experts 4 --moe-layers 2 --top-k 2"
)
EV=(--data "$T/fm" --max-images $N)

# compare.py A.f32 B.f32 K [A.i64 B.i64]: max|a-b|/max|a|, top-1 agreement, routes equal
cat > "$T/compare.py" <<'PYEOF'
import sys, numpy as np
a = np.fromfile(sys.argv[1], "<f4"); b = np.fromfile(sys.argv[2], "<f4"); K = int(sys.argv[3])
assert a.size == b.size and a.size % K == 0, (a.size, b.size)
a = a.reshape(-1, K); b = b.reshape(-1, K)
rel = float(np.abs(a - b).max() / np.abs(a).max())
same_top1 = int((a.argmax(1) == b.argmax(1)).sum())
routes = "none"
if len(sys.argv) > 5:
    ra = np.fromfile(sys.argv[4], "<i8"); rb = np.fromfile(sys.argv[5], "<i8")
    routes = "equal" if ra.size == rb.size and (ra == rb).all() else "differ(%d)" % int((ra != rb).sum())
print("%.3e %d %d %s" % (rel, same_top1, a.shape[0], routes))
PYEOF

for m in dense superclass-k1 superclass-k2 learned-k1 learned-k2; do
  # shellcheck disable=SC2086  # FLAGS entries are word lists
  "$MV" train "${TRAIN[@]}" "${MODEL[@]}" ${FLAGS[$m]} --out "$T/$m.safetensors" > "$T/$m.train.log" 2>&1 \
    || { bad "$m: train failed"; tail -5 "$T/$m.train.log"; continue; }
  R=(); [ "$m" != dense ] && R=(--routes "$T/$m.e.i64")
  RR=(); [ "$m" != dense ] && RR=(--routes "$T/$m.r.i64" "$T/$m.e.i64")
  "$MV" eval --model "$T/$m.safetensors" "${EV[@]}" --logits "$T/$m.e.f32" "${R[@]}" > "$T/$m.eval.log" 2>&1 \
    || { bad "$m: eval failed"; tail -3 "$T/$m.eval.log"; continue; }
  "$RUN" --model "$T/$m.safetensors" "${EV[@]}" --logits "$T/$m.r.f32" ${RR[0]:+"${RR[0]}" "${RR[1]}"} \
    > "$T/$m.run.log" 2>&1 || { bad "$m: mvmoe-run failed"; tail -3 "$T/$m.run.log"; continue; }
  read -r rel same n routes < <("$PY" "$T/compare.py" "$T/$m.e.f32" "$T/$m.r.f32" 10 ${RR[2]:+"${RR[2]}" "$T/$m.r.i64"})
  if awk -v r="$rel" 'BEGIN{exit !(r <= 1e-5)}' && [ "$same" = "$n" ] && { [ "$m" = dense ] || [ "$routes" = equal ]; }; then
    ok "$m fp32: max rel diff $rel, top-1 same on $same/$n, routes $routes"
  else bad "$m fp32: max rel diff $rel (want <= 1e-5), top-1 same $same/$n, routes $routes"; fi

  # int8: the fp32 file quantized at open, and the quantized file, against eval --precision int8
  "$MV" eval --model "$T/$m.safetensors" "${EV[@]}" --precision int8 --logits "$T/$m.e8.f32" > /dev/null 2>&1 \
    || { bad "$m: eval int8 failed"; continue; }
  "$MV" quantize --model "$T/$m.safetensors" --out "$T/$m.q.safetensors" > /dev/null 2>&1 \
    || { bad "$m: quantize failed"; continue; }
  # the quantized file under fp32: its weights dequantized, as eval does
  "$MV" eval --model "$T/$m.q.safetensors" "${EV[@]}" --logits "$T/$m.qe.f32" > /dev/null 2>&1 \
    && "$RUN" --model "$T/$m.q.safetensors" "${EV[@]}" --logits "$T/$m.qr.f32" > /dev/null 2>&1 \
    && read -r rel _ < <("$PY" "$T/compare.py" "$T/$m.qe.f32" "$T/$m.qr.f32" 10) \
    && awk -v r="$rel" 'BEGIN{exit !(r <= 1e-5)}' && ok "$m.q fp32 (dequantized): max rel diff $rel to eval's" \
    || bad "$m.q fp32 (dequantized): max rel diff ${rel:-?} to eval's (want <= 1e-5)"
  for src in "$m" "$m.q"; do
    "$RUN" --model "$T/$src.safetensors" "${EV[@]}" --precision int8 --logits "$T/$src.r8.f32" > "$T/$src.r8.log" 2>&1 \
      || { bad "$src: mvmoe-run int8 failed: $(tail -1 "$T/$src.r8.log")"; continue; }
    read -r rel same n _ < <("$PY" "$T/compare.py" "$T/$m.e8.f32" "$T/$src.r8.f32" 10)
    [ "$same" = "$n" ] && ok "$src int8: top-1 as eval --precision int8 on $same/$n images (max rel logit diff $rel)" \
      || bad "$src int8: top-1 as eval int8 on only $same/$n images (max rel diff $rel)"
  done
  cmp -s "$T/$m.r8.f32" "$T/$m.q.r8.f32" && ok "$m int8: the quantized file gives the fp32 file's int8 logits, bit for bit" \
    || bad "$m int8: quantized and fp32 files give different int8 logits"
  MVMOE_ISA=plain "$RUN" --model "$T/$m.q.safetensors" "${EV[@]}" --precision int8 --logits "$T/$m.plain8.f32" > /dev/null 2>&1
  cmp -s "$T/$m.q.r8.f32" "$T/$m.plain8.f32" && ok "$m int8: MVMOE_ISA=plain gives the same bits as $(sed -n 's/.*, \(.*\) kernels).*/\1/p' "$T/$m.q.r8.log")" \
    || bad "$m int8: MVMOE_ISA=plain logits differ from the default kernels'"
  # the smaller x86 sets (each falls back to the next one down where the CPU lacks it)
  if [ "$(uname -m)" = x86_64 ]; then
    for isa in avx2-vnni avx2; do
      MVMOE_ISA=$isa "$RUN" --model "$T/$m.q.safetensors" "${EV[@]}" --precision int8 --logits "$T/$m.$isa.f32" > "$T/$m.$isa.log" 2>&1
      cmp -s "$T/$m.q.r8.f32" "$T/$m.$isa.f32" && ok "$m int8: MVMOE_ISA=$isa ($(sed -n 's/.*, \(.*\) kernels).*/\1/p' "$T/$m.$isa.log") kernels) gives the same bits" \
        || bad "$m int8: MVMOE_ISA=$isa logits differ from the default kernels'"
    done
  fi
  # one image split over 2 threads (rows of the products, attention heads): int8 the same bits,
  # fp32 within rounding of one thread's; 50 images of two models (a split image waits at ~15
  # fork/joins, slow where the cores are shared)
  if [ "$m" = dense ] || [ "$m" = learned-k2 ]; then
    for P in fp32 int8; do
      "$RUN" --model "$T/$m.safetensors" "${EV[@]}" --max-images 50 --precision $P --logits "$T/$m.one.$P.f32" \
        > /dev/null 2>&1 \
        && "$RUN" --model "$T/$m.safetensors" "${EV[@]}" --max-images 50 --precision $P --batch 1 --threads 2 \
          --split-image --logits "$T/$m.split.$P.f32" > /dev/null 2>&1 \
        && read -r rel same n _ < <("$PY" "$T/compare.py" "$T/$m.one.$P.f32" "$T/$m.split.$P.f32" 10) \
        || { bad "$m $P: --split-image run failed"; continue; }
      if { [ $P = int8 ] && cmp -s "$T/$m.one.$P.f32" "$T/$m.split.$P.f32"; } \
         || { [ $P = fp32 ] && awk -v r="$rel" 'BEGIN{exit !(r <= 1e-5)}' && [ "$same" = "$n" ]; }; then
        ok "$m $P: --split-image over 2 threads: max rel diff $rel to one thread's, top-1 same on $same/$n"
      else bad "$m $P: --split-image: max rel diff $rel, top-1 same $same/$n (int8: want the same bits)"; fi
    done
  fi
done

# adaptive k on the k=2 model: the same routes (-1 where dropped) and logits as eval's
if [ -f "$T/superclass-k2.safetensors" ]; then
  "$MV" eval --model "$T/superclass-k2.safetensors" "${EV[@]}" --adaptive-k 0.45 --logits "$T/ak.e.f32" --routes "$T/ak.e.i64" > /dev/null 2>&1
  "$RUN" --model "$T/superclass-k2.safetensors" "${EV[@]}" --adaptive-k 0.45 --logits "$T/ak.r.f32" --routes "$T/ak.r.i64" > "$T/ak.log" 2>&1 \
    || bad "adaptive-k: mvmoe-run failed: $(tail -1 "$T/ak.log")"
  read -r rel same n routes < <("$PY" "$T/compare.py" "$T/ak.e.f32" "$T/ak.r.f32" 10 "$T/ak.e.i64" "$T/ak.r.i64")
  dropped=$("$PY" -c "import numpy as np,sys; print(int((np.fromfile(sys.argv[1],'<i8')<0).sum()))" "$T/ak.r.i64")
  if awk -v r="$rel" 'BEGIN{exit !(r <= 1e-5)}' && [ "$routes" = equal ] && [ "$dropped" -gt 0 ] && [ "$dropped" -lt $N ]; then
    ok "adaptive-k 0.45: max rel diff $rel, routes $routes ($dropped second choices dropped)"
  else bad "adaptive-k 0.45: max rel diff $rel, routes $routes, $dropped of $N second choices dropped (want some, not all)"; fi
fi

# --json: eval's keys where they apply
if [ -f "$T/superclass-k1.safetensors" ]; then
  "$MV" eval --model "$T/superclass-k1.safetensors" "${EV[@]}" --json > "$T/e.json" 2> /dev/null
  "$RUN" --model "$T/superclass-k1.safetensors" "${EV[@]}" --json > "$T/r.json" 2> /dev/null
  "$PY" - "$T/e.json" "$T/r.json" <<'PYEOF' && ok "--json: top1, top5, n, confusion as eval's" || bad "--json differs from eval's"
import json, sys
e, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("n", "num_classes", "top1", "top5", "confusion", "class_names", "class_count"):
    assert e[k] == r[k], (k, e[k], r[k])
assert abs(e["loss"] - r["loss"]) < 1e-5 and r["moe"]["experts"] == e["moe"]["experts"]
PYEOF
fi

# an image file: image 0 of the test split as PGM gives the class of row 0 of the logits
"$PY" - "$T/fm/t10k-images-idx3-ubyte" "$T/img0.pgm" <<'PYEOF'
import sys
d = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(b"P5\n# image 0\n28 28\n255\n" + d[16:16 + 784])
PYEOF
want=$("$PY" -c "import numpy as np,sys; print(int(np.fromfile(sys.argv[1],'<f4').reshape(-1,10)[0].argmax()))" "$T/dense.r.f32")
got=$("$RUN" --model "$T/dense.safetensors" "$T/img0.pgm" 2>&1 | sed -n 's/^  1\. *\([0-9]*\) .*/\1/p')
[ -n "$got" ] && [ "$got" = "$want" ] && ok "PGM image: top-1 class $got, as the dataset run" || bad "PGM image: top-1 '$got', want $want"
"$RUN" --model "$T/dense.safetensors" --data "$T/fm" --max-images 20 --latency 20 > "$T/lat.log" 2>&1 \
  && grep -q "median [0-9.]* ms" "$T/lat.log" && ok "--latency: $(cat "$T/lat.log")" || bad "--latency: $(cat "$T/lat.log")"
libs=$(ldd "$RUN" | awk '{print $1}' | grep -v -e linux-vdso -e ld-linux -e '^libc\.so' -e '^libm\.so' -e '^libgomp\.so' | tr '\n' ' ')
[ -z "$libs" ] && ok "ldd: only libc, libm, libgomp" || bad "mvmoe-run links $libs"

# refusals: exit 1 with a message, never a signal
refuse() {  # name, expected message part, command...
  local name=$1 want=$2; shift 2
  "$@" > "$T/ref.log" 2>&1; local rc=$?
  if [ $rc -eq 1 ] && grep -q -- "$want" "$T/ref.log"; then ok "$name: refused ($(head -c 160 "$T/ref.log" | head -1))"
  else bad "$name: rc $rc, message: $(head -c 300 "$T/ref.log")"; fi
}
"$MV" train "${TRAIN[@]}" "${MODEL[@]}" --routing token-learned --experts 3 --moe-layers 1 --max-steps 1 \
  --out "$T/tok.safetensors" > /dev/null 2>&1 || bad "token-learned train failed"
refuse "token-learned" "unsupported by mvmoe-run" "$RUN" --model "$T/tok.safetensors" "${EV[@]}"
head -c 5000 "$T/dense.safetensors" > "$T/trunc.safetensors"
refuse "truncated file" "truncated" "$RUN" --model "$T/trunc.safetensors" "${EV[@]}"
head -c 3 "$T/dense.safetensors" > "$T/tiny.safetensors"
refuse "3-byte file" "too short" "$RUN" --model "$T/tiny.safetensors" "${EV[@]}"
# an int8 expert's weights are checked when an image first routes to it: pick an expert that
# image 0 does not use and others do
"$RUN" --model "$T/superclass-k1.q.safetensors" "${EV[@]}" --precision int8 --routes "$T/sk1.i64" > /dev/null 2>&1 \
  || bad "superclass-k1 int8 routes run failed"
"$PY" -c "
import numpy as np, sys
r = np.fromfile(sys.argv[1], '<i8'); c = np.bincount(r, minlength=r.max() + 1); c[r[0]] = -1
print(int(c.argmax()), int(c.max()))" "$T/sk1.i64" > "$T/m128.info"
read -r m128e m128n < "$T/m128.info"; echo "$m128e" > "$T/m128.expert"
"$PY" - "$T" <<'PYEOF'
import json, struct, sys
T = sys.argv[1]
def parts(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
def write(p, h, data):
    t = json.dumps(h).encode(); t += b" " * (-len(t) % 8)
    open(p, "wb").write(struct.pack("<Q", len(t)) + t + data)
b = open(T + "/dense.safetensors", "rb").read()
open(T + "/garbage.safetensors", "wb").write(b[:8] + b"{\"a\": [1, 2" + b"\x00" * (struct.unpack("<Q", b[:8])[0] - 11) + b[8 + struct.unpack("<Q", b[:8])[0]:])
open(T + "/hugelen.safetensors", "wb").write(struct.pack("<Q", 1 << 60) + b[8:])
h, d = parts(T + "/dense.q.safetensors")
name = next(k for k, e in h.items() if k.endswith("_scale"))
off = h[name]["data_offsets"][0]
write(T + "/nanscale.safetensors", h, d[:off] + struct.pack("<f", float("nan")) + d[off + 4:])
h2 = dict(h); h2["__metadata__"] = {k: v for k, v in h["__metadata__"].items() if k != "quantization"}
write(T + "/noquant.safetensors", h2, d)
h3 = json.loads(json.dumps(h)); e = h3["head.weight"]; e["data_offsets"][1] += 4
write(T + "/badoffsets.safetensors", h3, d)
# -128 in a shared int8 weight: refused at open
o = h["blocks.0.attn.qkv.weight"]["data_offsets"][0]
write(T + "/m128shared.safetensors", h, d[:o] + b"\x80" + d[o + 1:])
# -128 in one expert of every MoE block: found when an image first routes to it (argv[2])
hm, dm = parts(T + "/superclass-k1.q.safetensors")
e = int(open(T + "/m128.expert").read())
for k, v in hm.items():
    if k.endswith(".experts.%d.fc2.weight" % e):
        o = v["data_offsets"][1] - 1
        dm = dm[:o] + b"\x80" + dm[o + 1:]
write(T + "/m128expert.safetensors", hm, dm)
PYEOF
refuse "-128 in a shared int8 weight" "blocks.0.attn.qkv.weight' holds -128" "$RUN" --model "$T/m128shared.safetensors" "${EV[@]}" --precision int8
"$RUN" --model "$T/m128expert.safetensors" --data "$T/fm" --max-images 1 --precision int8 > "$T/m128.log" 2>&1 \
  && ok "-128 in expert $m128e: image 0 (routed elsewhere) runs; the expert is not checked at open" \
  || bad "-128 in expert $m128e: image 0, routed elsewhere, failed: $(tail -1 "$T/m128.log")"
[ "$m128n" -gt 0 ] && refuse "-128 in expert $m128e, routed to by $m128n images" "experts.$m128e.fc2.weight' holds -128" \
  "$RUN" --model "$T/m128expert.safetensors" "${EV[@]}" --precision int8
refuse "garbage header" "not valid JSON" "$RUN" --model "$T/garbage.safetensors" "${EV[@]}"
refuse "huge header length" "header length" "$RUN" --model "$T/hugelen.safetensors" "${EV[@]}"
refuse "NaN scale" "finite" "$RUN" --model "$T/nanscale.safetensors" "${EV[@]}" --precision int8
refuse "I8 without int8 metadata" "I8 where F32 belongs" "$RUN" --model "$T/noquant.safetensors" "${EV[@]}"
refuse "overlapping offsets" "data_offsets\|holds\|starts at" "$RUN" --model "$T/badoffsets.safetensors" "${EV[@]}"
refuse "missing file" "cannot open" "$RUN" --model "$T/none.safetensors" "${EV[@]}"
refuse "gzip-only data" "gunzip" "$RUN" --model "$T/dense.safetensors" --data "$DATA"
"$RUN" --model "$T/dense.safetensors" --data "$T/fm" --precision fp16 > /dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "bad --precision: usage error (2)" || bad "bad --precision: rc $rc"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
