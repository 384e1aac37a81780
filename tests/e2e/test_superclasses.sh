#!/usr/bin/env bash
# `mvmoe superclasses` (paper Sec. 3.2) end to end:
#  1. on a real confusion matrix (Fashion-MNIST, measured below) both methods keep
#     {Sandal, Sneaker, Ankle boot} together for E = 3 and 4, and give balanced maps that
#     `--confusion` reads back (its --json output is itself a valid --confusion input);
#  2. --model/--data evaluates exactly the images `mvmoe train` held out (same top-1);
#  3. usage errors exit 2, bad files exit 1 with a message naming the file.
# Usage: tests/e2e/test_superclasses.sh BUILD_DIR   (needs BUILD_DIR/mvmoe; part 2 needs
# /usr/share/datasets/fashion-mnist, installed by scripts/setup.sh)
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
if [ ! -x "$MV" ]; then
  echo "FAIL: $MV is not built (run make)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# The confusion matrix of a dense vit-12x64 (runs/fmnist-12x64, 82.20 % top-1) on the 6000
# validation images `mvmoe train` held out of Fashion-MNIST's train split (val-fraction 0.1,
# seed 0), as printed by `mvmoe superclasses --json`: measured, not made up.
cat > "$T/fmnist.json" <<'EOF'
{"num_classes": 10, "n": 6000, "top1": 0.822,
 "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
 "confusion": [[514, 2, 8, 41, 4, 0, 26, 0, 5, 0],
               [0, 545, 3, 49, 3, 0, 0, 0, 0, 0],
               [11, 0, 487, 10, 60, 0, 25, 0, 7, 0],
               [10, 0, 4, 554, 19, 0, 11, 0, 2, 0],
               [2, 0, 114, 37, 438, 0, 8, 0, 1, 0],
               [0, 0, 0, 0, 0, 520, 0, 52, 3, 25],
               [159, 1, 116, 45, 72, 0, 197, 0, 9, 1],
               [0, 0, 0, 0, 0, 3, 0, 542, 0, 55],
               [3, 1, 6, 10, 7, 5, 5, 0, 562, 1],
               [0, 0, 0, 1, 0, 1, 0, 25, 0, 573]]}
EOF

# check_map MAP E [GROUP...]: MAP is a valid map of 10 classes into E groups whose sizes differ
# by at most one, and each GROUP ("a|b|c") lies inside one super-class.
check_map() {
  $PY - "$@" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); E = int(sys.argv[2])
sc, names = m["superclass_of"], [n for g in m["groups"] for n in g]
assert m["experts"] == E and len(sc) == 10 and sorted(set(sc)) == list(range(E)), m
sizes = [sc.count(g) for g in range(E)]
assert m["sizes"] == sizes and max(sizes) - min(sizes) <= 1, (sizes, m["sizes"])
assert sorted(names) == sorted(json.load(open(sys.argv[1].rsplit("/", 1)[0] + "/fmnist.json"))["class_names"]), names
where = {n: g for g, members in enumerate(m["groups"]) for n in members}
for want in sys.argv[3:]:
    gs = {where[n] for n in want.split("|")}
    assert len(gs) == 1, "%s split over super-classes %s: %s" % (want, gs, m["groups"])
PY
}

# ---- 1. the real confusion matrix
SHOES="Sandal|Sneaker|Ankle boot"
for method in metis spectral; do
  for E in 3 4; do
    if "$MV" superclasses --confusion "$T/fmnist.json" --experts $E --method $method --out "$T/m$E.json" \
         --listing "$T/l$E.txt" > "$T/out.txt" 2> "$T/err.txt"; then
      check_map "$T/m$E.json" $E "$SHOES" && ok "$method E=$E: {$SHOES} together, balanced" \
        || { bad "$method E=$E map"; cat "$T/m$E.json"; }
    else
      bad "$method E=$E exits non-zero"; cat "$T/err.txt"
    fi
  done
  # E = 5: ten classes in five groups of exactly two cannot keep three shoes together; the
  # pairs the confusion calls for must be there.
  "$MV" superclasses --confusion "$T/fmnist.json" --experts 5 --method $method --out "$T/m5.json" > /dev/null 2> "$T/err.txt" \
    && check_map "$T/m5.json" 5 "Sneaker|Ankle boot" "T-shirt/top|Shirt" "Pullover|Coat" \
    && ok "$method E=5: pairs {Sneaker, Ankle boot} {T-shirt/top, Shirt} {Pullover, Coat}" \
    || { bad "$method E=5"; cat "$T/err.txt" "$T/m5.json"; }
done
grep -q "super-class 2 (3 classes): Sandal, Sneaker, Ankle boot" "$T/l3.txt" \
  && grep -q "misclassifications (77.5%) are within a super-class" "$T/l3.txt" \
  && ok "listing names the groups and the within-group share (828 of 1068 = 77.5 %)" \
  || { bad "listing"; cat "$T/l3.txt"; }
"$MV" superclasses --confusion "$T/fmnist.json" --experts 3 --out "$T/m3b.json" --listing "$T/l3b.txt" > "$T/out3.txt" 2>&1
grep -v "^written:" "$T/out3.txt" | cmp -s - "$T/l3b.txt" && ok "--listing holds what stdout shows" \
  || bad "--listing differs from stdout"
"$MV" superclasses --confusion "$T/fmnist.json" --experts 3 --out "$T/m3c.json" > /dev/null 2>&1
cmp -s "$T/m3b.json" "$T/m3c.json" && ok "same input, same seed: identical map file" || bad "two runs differ"

# --json: one object; fed back through --confusion it gives the same map
"$MV" superclasses --confusion "$T/fmnist.json" --experts 3 --out "$T/j.json" --json > "$T/j.out" 2> "$T/err.txt" \
  && $PY -c "
import json,sys; o=json.load(open('$T/j.out')); m=json.load(open('$T/j.json'))
assert o['superclass_of']==m['superclass_of'] and o['confusion_within']==828 and o['confusion_across']==240, o
assert abs(o['within_fraction']-828/1068)<1e-12 and len(o['confusion'])==10" \
  && ok "--json report agrees with the map" || { bad "--json report"; cat "$T/j.out" "$T/err.txt"; }
"$MV" superclasses --confusion "$T/j.out" --experts 3 --out "$T/j2.json" > /dev/null 2> "$T/err.txt" \
  && $PY -c "import json; assert json.load(open('$T/j.json'))['superclass_of']==json.load(open('$T/j2.json'))['superclass_of']" \
  && ok "--json output reads back as --confusion" || { bad "--json as --confusion"; cat "$T/err.txt"; }

# E = 1 and E = K; an eval JSON without class names
"$MV" superclasses --confusion "$T/fmnist.json" --experts 1 --out "$T/e1.json" > /dev/null \
  && $PY -c "import json; m=json.load(open('$T/e1.json')); assert m['superclass_of']==[0]*10 and m['sizes']==[10]" \
  && ok "E=1: one super-class" || bad "E=1"
"$MV" superclasses --confusion "$T/fmnist.json" --experts 10 --out "$T/e10.json" > /dev/null \
  && $PY -c "import json; m=json.load(open('$T/e10.json')); assert m['superclass_of']==list(range(10))" \
  && ok "E=K: identity" || bad "E=K"
echo '{"confusion": [[5,3,0,0],[2,5,0,1],[0,0,5,4],[0,1,3,5]]}' > "$T/small.json"
"$MV" superclasses --confusion "$T/small.json" --experts 2 --out "$T/s.json" > "$T/s.out" 2>&1 \
  && $PY -c "import json; m=json.load(open('$T/s.json')); assert m['superclass_of']==[0,0,1,1] and m['groups']==[['0','1'],['2','3']], m" \
  && ok "no class names: indices as names, {0,1} {2,3}" || { bad "small fixture"; cat "$T/s.out"; }

# ---- 2. --model/--data: the images `mvmoe train` held out (same top-1 as its last validation)
if [ -e "$DATA/train-images-idx3-ubyte.gz" ]; then
  TR=(--data "$DATA" --max-images 1000 --val-fraction 0.2 --seed 7)
  if "$MV" train "${TR[@]}" --preset vit-test-tiny --epochs 1 --batch 64 --out "$T/tiny.safetensors" > "$T/train.log" 2>&1; then
    val=$(grep -o 'val loss [0-9.]* acc [0-9.]*%' "$T/train.log" | tail -1 | awk '{print $5}')
    nval=$(grep -o '[0-9]* validation)' "$T/train.log" | head -1 | awk '{print $1}')
    "$MV" superclasses --model "$T/tiny.safetensors" "${TR[@]}" --experts 3 --out "$T/tiny.json" > "$T/tiny.out" 2>&1
    top1=$(grep -o '^top-1: *[0-9.]*%' "$T/tiny.out" | awk '{print $2}')
    if [ -n "$val" ] && [ "$val" = "$top1" ] && [ -n "$nval" ] && grep -q "on the $nval validation images" "$T/tiny.out"; then
      ok "--model: the $nval held-out images, top-1 $top1 = training's validation accuracy $val"
    else
      bad "--model: top-1 '${top1}' vs training's validation '${val}' (${nval:-?} images)"; cat "$T/tiny.out"
    fi
    $PY -c "import json; m=json.load(open('$T/tiny.json')); assert len(m['superclass_of'])==10 and m['experts']==3 and 'Sandal' in sum(m['groups'],[])" \
      && ok "--model: map of the 10 named classes" || bad "--model map"
    "$MV" superclasses --model "$T/tiny.safetensors" --data "$DATA" --max-images 1000 --split test --experts 2 --out "$T/tt.json" > "$T/tt.out" 2>&1 \
      && grep -q "1000 images of the test split" "$T/tt.out" && ok "--split test" || { bad "--split test"; cat "$T/tt.out"; }
  else
    bad "tiny training run failed"; tail -5 "$T/train.log"
  fi
else
  bad "$DATA missing: run 'bash scripts/setup.sh' (installs dataset-fashion-mnist)"
fi

# ---- 3. errors: usage -> 2, bad files -> 1 with the file named; no map written
# expect CODE NEEDLE :: ARGS...
expect() {
  local want=$1 needle=$2; shift 3
  "$MV" superclasses "$@" > "$T/o" 2> "$T/e" < /dev/null
  local rc=$?
  if [ $rc -eq "$want" ] && grep -qF -- "$needle" "$T/e"; then ok "exit $want ($needle): $*"
  else bad "mvmoe superclasses $* -> exit $rc, want $want and '$needle'"; sed 's/^/    | /' "$T/e" | head -5; fi
}
F="$T/fmnist.json"; O="$T/err_out.json"
expect 2 "--experts E is required" :: --confusion "$F" --out "$O"
expect 2 "--out MAP.json is required" :: --confusion "$F" --experts 3
expect 2 "is required" :: --experts 3 --out "$O"
expect 2 "--data DIR is required" :: --model x.safetensors --experts 3 --out "$O"
expect 2 "one or the other" :: --confusion "$F" --model x.safetensors --data d --experts 3 --out "$O"
expect 2 "need --model/--data" :: --confusion "$F" --split test --experts 3 --out "$O"
expect 2 "metis or spectral" :: --confusion "$F" --experts 3 --out "$O" --method kmeans
expect 2 "val or test" :: --model m --data d --split train --experts 3 --out "$O"
expect 2 "--experts" :: --confusion "$F" --experts 0 --out "$O"
expect 2 "--val-fraction" :: --model m --data d --val-fraction 1 --experts 3 --out "$O"
expect 2 "--frob" :: --confusion "$F" --experts 3 --out "$O" --frob
expect 1 "more than the 10 classes" :: --confusion "$F" --experts 11 --out "$O"
expect 1 "$T/missing.json" :: --confusion "$T/missing.json" --experts 3 --out "$O"
echo '{"confusion": [[1, 2], [3' > "$T/trunc.json"
expect 1 "not valid JSON" :: --confusion "$T/trunc.json" --experts 2 --out "$O"
echo '{"confusion": [[1, 2], [3]]}' > "$T/ragged.json"
expect 1 "row 1" :: --confusion "$T/ragged.json" --experts 2 --out "$O"
echo '{"confusion": [[1, -2], [3, 4]]}' > "$T/neg.json"
expect 1 "non-negative integer" :: --confusion "$T/neg.json" --experts 2 --out "$O"
echo '{"confusion": [[1, 2], [3, 4]], "class_names": ["a"]}' > "$T/names.json"
expect 1 "class_names" :: --confusion "$T/names.json" --experts 2 --out "$O"
expect 1 "$T/nope.safetensors" :: --model "$T/nope.safetensors" --data "$DATA" --experts 3 --out "$O"
expect 1 "$T/no/such/dir" :: --confusion "$F" --experts 3 --out "$T/no/such/dir/map.json"
[ ! -e "$O" ] && ok "no map written by any failing run" || bad "a failing run wrote $O"
"$MV" superclasses --help > "$T/h" 2>&1 && grep -q -- "--experts" "$T/h" && grep -q "Exit status" "$T/h" \
  && ok "--help" || bad "--help"
"$MV" --help | grep -q "superclasses" && ok "listed in mvmoe --help" || bad "not in mvmoe --help"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
