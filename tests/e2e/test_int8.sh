#!/usr/bin/env bash
# int8 inference (docs/EDGE.md, "int8"): tiny models (dense, and image-learned experts) trained
# a few steps on Fashion-MNIST, then
#  - mvmoe quantize writes I8 weights + F32 scales: those weights take <= 30 % of their F32
#    bytes (4x smaller but for the scales) and the file is smaller;
#  - eval --precision int8 on the quantized file: top-1 within 1 point of fp32 on 2000 test
#    images (a tiny, barely trained model, whose close logits flip more easily than a trained
#    model's: the vit-12x64 measurement in docs/EDGE.md is the accuracy claim);
#  - the quantized file runs exactly what the fp32 file runs under --precision int8 (same
#    logits, bit for bit), and 1 and 2 threads, and the plain-C loop (MVMOE_ISA=avx2) vs
#    VNNI, give the same logits;
#  - eval (fp32, dequantized), info and predict read the quantized file;
#  - a scale tensor with a NaN, one of the wrong shape, an int8 weight stored as F32 and an
#    unknown quantization are refused with messages that name them; training under int8 too.
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
N=2000
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
[ -d "$DATA" ] || { echo "skip: $DATA is missing (scripts/setup.sh)"; exit 77; }

T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MODEL=(--dim 32 --depth 3 --heads 2 --mlp-dim 64 --patch 7)
TRAIN=(--data "$DATA" --max-images 4000 --batch 32 --lr 2e-3 --warmup 0 --seed 1 --epochs 1 --max-steps 120
       --eval-every 0)
top1() { sed -n 's/^top-1: *\([0-9.]*\)%.*/\1/p' "$1"; }

for m in dense moe; do
  flags=(); [ "$m" = moe ] && flags=(--routing image-learned --experts 3 --moe-layers 1 --top-k 1)
  if ! "$MV" train "${TRAIN[@]}" "${MODEL[@]}" "${flags[@]}" --out "$T/$m.safetensors" > "$T/$m.train.log" 2>&1; then
    bad "$m: training failed"; tail -5 "$T/$m.train.log"; continue
  fi
  if ! "$MV" quantize --model "$T/$m.safetensors" --out "$T/$m.q.safetensors" > "$T/$m.q.log" 2>&1; then
    bad "$m: quantize failed: $(cat "$T/$m.q.log")"; continue
  fi
  # sizes from the headers: the int8 weights and their scales vs the same weights in F32
  if "$PY" - "$T/$m.safetensors" "$T/$m.q.safetensors" > "$T/$m.size" <<'PYEOF'
import json, os, struct, sys
def header(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))
def nbytes(e): return e["data_offsets"][1] - e["data_offsets"][0]
a, q = header(sys.argv[1]), header(sys.argv[2])
assert q["__metadata__"]["quantization"] == "int8-symmetric-per-output-channel"
i8 = [k for k, e in q.items() if k != "__metadata__" and e["dtype"] == "I8"]
assert i8 and all(k + "_scale" in q and q[k + "_scale"]["dtype"] == "F32" for k in i8), "scales"
f32 = sum(nbytes(a[k]) for k in i8)
qb = sum(nbytes(q[k]) + nbytes(q[k + "_scale"]) for k in i8)
print(len(i8), f32, qb, "%.3f" % (qb / f32), os.path.getsize(sys.argv[1]), os.path.getsize(sys.argv[2]))
PYEOF
  then
    read -r n f32 qb ratio fa fq < "$T/$m.size"
    if awk -v r="$ratio" -v a="$fa" -v q="$fq" 'BEGIN{exit !(r <= 0.30 && q < a)}'; then
      ok "$m: $n int8 weights: $qb bytes with scales vs $f32 in F32 (ratio $ratio); file $fq vs $fa bytes"
    else bad "$m: int8 weights ratio $ratio (want <= 0.30), file $fq vs $fa bytes"; fi
  else bad "$m: the quantized file's header is not as documented"; fi

  "$MV" eval --model "$T/$m.safetensors" --data "$DATA" --max-images $N --logits "$T/$m.fp32.f32" > "$T/$m.fp32.log" 2>&1
  "$MV" eval --model "$T/$m.q.safetensors" --data "$DATA" --max-images $N --precision int8 --threads 2 \
    --logits "$T/$m.int8.f32" > "$T/$m.int8.log" 2>&1 || bad "$m: eval --precision int8 of the quantized file failed: $(tail -2 "$T/$m.int8.log")"
  a=$(top1 "$T/$m.fp32.log"); b=$(top1 "$T/$m.int8.log")
  if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN{d=a-b; if(d<0)d=-d; exit !(d <= 1.0)}'; then
    ok "$m: top-1 fp32 $a % vs int8 $b % (within 1 point)"
  else bad "$m: top-1 fp32 '$a' vs int8 '$b'"; fi
  "$MV" eval --model "$T/$m.safetensors" --data "$DATA" --max-images $N --precision int8 --threads 1 \
    --logits "$T/$m.int8m.f32" > /dev/null 2>&1
  if cmp -s "$T/$m.int8.f32" "$T/$m.int8m.f32"; then ok "$m: quantized file (2 threads) = fp32 file under int8 (1 thread), bit for bit"
  else bad "$m: the quantized file's int8 logits differ from the fp32 file's under --precision int8"; fi
  # the plain-C int8 loop (no VNNI) gives the same bits as the VNNI one
  MVMOE_ISA=avx2 "$MV" eval --model "$T/$m.q.safetensors" --data "$DATA" --max-images $N --precision int8 \
    --logits "$T/$m.int8c.f32" > /dev/null 2>&1
  if cmp -s "$T/$m.int8.f32" "$T/$m.int8c.f32"; then ok "$m: MVMOE_ISA=avx2 (plain-C int8 loop) = default path, bit for bit"
  else bad "$m: the plain-C int8 loop's logits differ from the default path's"; fi
  if "$MV" eval --model "$T/$m.q.safetensors" --data "$DATA" --max-images 200 > "$T/$m.deq.log" 2>&1 \
     && "$MV" info "$T/$m.q.safetensors" > /dev/null 2>&1; then ok "$m: eval (fp32, dequantized) and info read the quantized file"
  else bad "$m: eval/info of the quantized file failed: $(tail -2 "$T/$m.deq.log")"; fi
done

# predict --precision int8 on a PNG (written with zlib: no imaging package needed)
"$PY" - "$T/img.png" <<'PYEOF'
import struct, sys, zlib
w = h = 28
raw = b"".join(b"\0" + bytes((x * 9 + y * 5) % 256 for x in range(w)) for y in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PYEOF
if "$MV" predict --model "$T/dense.q.safetensors" --precision int8 "$T/img.png" > "$T/pred.log" 2>&1; then
  ok "predict --precision int8 reads the quantized file"
else bad "predict --precision int8: $(tail -2 "$T/pred.log")"; fi

# tampered files: rewrite the header (and a scale's bytes) of the dense model's int8 file
tamper() {  # kind out
  "$PY" - "$T/dense.q.safetensors" "$2" "$1" <<'PYEOF'
import json, struct, sys
src, dst, kind = sys.argv[1:4]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h, data = json.loads(b[8:8 + n]), bytearray(b[8 + n:])
name = "blocks.1.attn.qkv.weight"
s = h[name + "_scale"]
if kind == "nan":
    data[s["data_offsets"][0]:s["data_offsets"][0] + 4] = struct.pack("<I", 0x7FC00000)
elif kind == "shape":
    s["shape"] = [1, s["shape"][0]]
elif kind == "f32":   # the int8 weight claimed as F32 (same bytes: a quarter of the elements)
    h[name]["dtype"] = "F32"; h[name]["shape"] = [h[name]["shape"][0] // 4, h[name]["shape"][1]]
elif kind == "method":
    h["__metadata__"]["quantization"] = "int4-magic"
j = json.dumps(h).encode(); j += b" " * ((8 - len(j) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(j)) + j + bytes(data))
PYEOF
}
refused() {  # kind pattern
  tamper "$1" "$T/bad.safetensors"
  local out rc=0
  out=$("$MV" eval --model "$T/bad.safetensors" --data "$DATA" --max-images 10 --precision int8 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] && grep -q -- "$2" <<< "$out"; then ok "$1: refused: $(grep -m1 error <<< "$out" | cut -c1-150)"
  else bad "$1: rc $rc, message: $out"; fi
}
refused nan "scale tensor 'blocks.1.attn.qkv.weight_scale' holds nan"
refused shape "'blocks.1.attn.qkv.weight_scale' of shape \[96\]"
refused f32 "blocks.1.attn.qkv.weight"
refused method "quantization 'int4-magic'"

out=$("$MV" train "${TRAIN[@]}" "${MODEL[@]}" --max-steps 1 --precision int8 --out "$T/x.safetensors" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -q "int8 is an inference precision" <<< "$out" && [ ! -e "$T/x.safetensors" ]; then
  ok "train --precision int8 refused"
else bad "train --precision int8: rc $rc: $out"; fi

echo "test_int8: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
