#!/usr/bin/env bash
# Data the program must refuse, with a message naming the file and what to do (exit 1), never
# "not evaluated" and exit 0 (docs/RELIABILITY.md): a test split whose images differ in size
# from the train split's, a truncated test split, an IDX label beyond 9 without classes.txt.
# And what it must accept: a dataset without a test split ("not evaluated", exit 0).
# Small IDX sets written here from the Fashion-MNIST package's first images.
set -u
BUILD=${1:-build}
MV=$BUILD/mvmoe
SRC=/usr/share/datasets/fashion-mnist
if [ ! -x "$MV" ] || [ ! -e "$SRC/train-images-idx3-ubyte.gz" ]; then
  echo "FAIL: needs $MV (make) and $SRC (bash scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); echo "ok: $1"; }
bad() { fail=$((fail+1)); echo "FAIL: $1"; }

# make DIR TEST_SIDE TEST_BYTES_CUT LABEL255: train = 300 real images; test = 100 images of
# TEST_SIDE x TEST_SIDE (0: no test split), its image file cut by TEST_BYTES_CUT bytes
make_set() {
  /usr/bin/python3 - "$SRC" "$@" <<'PY'
import gzip, os, struct, sys
src, d, side, cut, l255 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
os.makedirs(d, exist_ok=True)
ti = gzip.open(src + "/train-images-idx3-ubyte.gz").read()
tl = bytearray(gzip.open(src + "/train-labels-idx1-ubyte.gz").read())
n = 300
if l255: tl[8 + 17] = 255
open(d + "/train-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + ti[16:16 + n * 784])
open(d + "/train-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + bytes(tl[8:8 + n]))
if side:
    img = struct.pack(">IIII", 0x803, 100, side, side) + ti[16:16 + 100 * side * side]
    open(d + "/t10k-images-idx3-ubyte", "wb").write(img[:len(img) - cut])
    open(d + "/t10k-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, 100) + bytes(tl[8:108]))
PY
}
RUN=(--preset vit-test-tiny --max-steps 2 --batch 50)

make_set "$T/size" 32 0 0
"$MV" train --data "$T/size" --out "$T/size/m.safetensors" "${RUN[@]}" > "$T/o1" 2> "$T/e1"; rc=$?
[ $rc -eq 1 ] && grep -q "32x32" "$T/e1" && grep -q "28x28" "$T/e1" && ok "test split of 32x32 images: exit 1, says both sizes" \
  || { bad "test split of another size: exit $rc"; cat "$T/e1" "$T/o1" | tail -3; }

# a model is run at another image size only when asked (--img-size), never because the data differ
make_set "$T/ok" 28 0 0
"$MV" train --data "$T/ok" --out "$T/ok/m.safetensors" "${RUN[@]}" > /dev/null 2>&1
"$MV" eval --model "$T/ok/m.safetensors" --data "$T/size" --split test > "$T/o5" 2> "$T/e5"; rc=$?
[ $rc -eq 1 ] && grep -q -- "--img-size 32" "$T/e5" && ok "eval of 32x32 images with a 28x28 model: exit 1, suggests --img-size" \
  || { bad "eval at another size: exit $rc"; cat "$T/e5" | tail -3; }
"$MV" eval --model "$T/ok/m.safetensors" --data "$T/size" --split test --img-size 32 > "$T/o6" 2> "$T/e6" \
  && ok "the same with --img-size 32: evaluated" || { bad "--img-size 32 refused"; tail -3 "$T/e6"; }
"$MV" train --data "$T/ok" --out "$T/ok/c.safetensors" "${RUN[@]}" --crop-pad 40 > "$T/o7" 2> "$T/e7"; rc=$?
[ $rc -eq 1 ] && grep -q -- "--crop-pad 40" "$T/e7" && ! grep -qi "nan" "$T/e7" && ok "--crop-pad beyond the image: the real cause, not 'loss nan'" \
  || { bad "--crop-pad 40: exit $rc"; cat "$T/e7" | tail -3; }

make_set "$T/cut" 28 1000 0
"$MV" train --data "$T/cut" --out "$T/cut/m.safetensors" "${RUN[@]}" > "$T/o2" 2> "$T/e2"; rc=$?
[ $rc -eq 1 ] && grep -q "t10k-images" "$T/e2" && ok "truncated test split: exit 1, names the file" \
  || { bad "truncated test split: exit $rc"; cat "$T/e2" "$T/o2" | tail -3; }
grep -q "not evaluated" "$T/o2" && bad "truncated test split reported as 'not evaluated'" || ok "no 'not evaluated' for a corrupt split"

make_set "$T/l255" 28 0 1
"$MV" train --data "$T/l255" --out "$T/l255/m.safetensors" "${RUN[@]}" > "$T/o3" 2> "$T/e3"; rc=$?
[ $rc -eq 1 ] && grep -q "label 255" "$T/e3" && grep -q "classes.txt" "$T/e3" && ok "label 255: exit 1, says to add classes.txt" \
  || { bad "label 255: exit $rc"; cat "$T/e3" | tail -3; }

make_set "$T/none" 0 0 0
"$MV" train --data "$T/none" --out "$T/none/m.safetensors" "${RUN[@]}" > "$T/o4" 2> "$T/e4"; rc=$?
[ $rc -eq 0 ] && grep -q "test: not evaluated" "$T/o4" && ok "no test split: exit 0, 'not evaluated'" \
  || { bad "no test split: exit $rc"; cat "$T/e4" "$T/o4" | tail -3; }

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
