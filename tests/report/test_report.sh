#!/usr/bin/env bash
# `mvmoe report`: from small eval JSON fixtures (two seeds of a dense ViT, two Mobile V-MoEs,
# Fashion-MNIST's classes with one name holding '&' and '<') it must write an HTML page whose
# table shows the means computed here, whose SVG figures are well-formed XML with titles,
# where every name from the inputs is escaped; and a JSON summary with the right mean, std
# and difference to the dense model. Error cases: usage errors exit 2; a malformed file, a
# missing "top1", a wrong-typed field exit 1 naming the file, and write nothing.
# Usage: tests/report/test_report.sh BUILD_DIR   (needs BUILD_DIR/mvmoe and /usr/bin/python3)
set -u
BUILD=${1:-build}
BIN=$BUILD/mvmoe
PY=/usr/bin/python3
if [ ! -x "$BIN" ]; then
  echo "test_report: $BIN is not built (run make)"
  echo "0 passed, 1 failed"
  exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0

check() {  # NAME COMMAND...: passes when COMMAND succeeds
  local name=$1; shift
  if "$@"; then passed=$((passed+1)); else failed=$((failed+1)); echo "FAIL: $name"; fi
}

# expect CODE NEEDLE... :: ARGS...: mvmoe ARGS exits CODE and stderr holds every NEEDLE
expect() {
  local want=$1; shift
  local needles=()
  while [ $# -gt 0 ] && [ "$1" != "::" ]; do needles+=("$1"); shift; done
  shift
  "$BIN" "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
  local rc=$? why=""
  [ "$rc" -eq "$want" ] || why="exit $rc, expected $want"
  for n in "${needles[@]}"; do
    grep -qF -- "$n" "$TMP/stderr" || why="${why:+$why; }stderr lacks '$n'"
  done
  if [ -z "$why" ]; then
    passed=$((passed+1))
  else
    failed=$((failed+1))
    echo "FAIL: mvmoe $* -> $why"
    sed 's/^/    | /' "$TMP/stderr" | head -n 8
  fi
}

# ---------------------------------------------------------------- fixtures
NAMES='["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag & <Purse>", "Ankle boot"]'
SC='[0, 1, 0, 2, 0, 3, 0, 3, 4, 3]'  # 5 super-classes: tops, trousers, dresses, shoes, bags

# confusion DIAG: a 10x10 matrix, DIAG on the diagonal, 100-DIAG spread over the next class
confusion() {
  local d=$1 rows=() i j row
  for i in 0 1 2 3 4 5 6 7 8 9; do
    row=()
    for j in 0 1 2 3 4 5 6 7 8 9; do
      if [ "$i" -eq "$j" ]; then row+=("$d")
      elif [ "$j" -eq $(( (i + 1) % 10 )) ]; then row+=("$((100 - d))")
      else row+=(0); fi
    done
    rows+=("[$(IFS=,; echo "${row[*]}")]")
  done
  echo "[$(IFS=,; echo "${rows[*]}")]"
}

# eval_json FILE ROUTING TOP1 TOP5 EXPERTS MOE_JSON: an `mvmoe eval --json` object
eval_json() {
  local file=$1 routing=$2 top1=$3 top5=$4 experts=$5 moe=$6 topk=1 layers=0 sc=null
  [ "$routing" != dense ] && layers=2
  [ "$routing" = image-superclass ] && sc=$SC
  cat >"$file" <<EOF
{"model": "runs/$routing.safetensors", "data": "data/fashion-mnist", "split": "test", "n": 1000,
 "num_classes": 10, "top1": $top1, "top5": $top5, "loss": 0.41,
 "class_names": $NAMES,
 "per_class": [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, null],
 "class_count": [100, 100, 100, 100, 100, 100, 100, 100, 100, 100],
 "confusion": $(confusion 90),
 "logits": null,
 "config": {"img_size": 28, "in_chans": 1, "patch": 4, "dim": 64, "depth": 6, "heads": 4,
            "mlp_dim": 256, "num_classes": 10, "routing": "$routing", "experts": $experts,
            "top_k": $topk, "moe_layers": $layers, "mean": [0.286], "std": [0.353],
            "class_names": $NAMES, "superclass_of": $sc},
 "params": 412000, "active_params": 310000, "flops": 21400000,
 "moe": $moe}
EOF
}

D1=0.8512 D2=0.8534 M1=0.8610 M2=0.8475
eval_json "$TMP/dense1.json" dense $D1 0.9901 0 null
eval_json "$TMP/dense2.json" dense $D2 0.9893 0 null
eval_json "$TMP/moe_sc.json" image-superclass $M1 0.9912 5 \
  '{"experts": 5, "router_acc": 0.93, "misrouted": 70, "routed_acc": 0.9, "misrouted_acc": 0.25,
    "expert_load": [800, 100, 100, 300, 100],
    "expert_images": [400, 100, 100, 300, 100], "expert_acc": [0.8, 0.95, 0.9, 0.97, null]}'
eval_json "$TMP/moe_tok.json" token-learned $M2 0.9870 4 \
  '{"experts": 4, "router_acc": null, "expert_load": [30000, 20000, 25000, 25000],
    "expert_images": [0, 0, 0, 0], "expert_acc": null}'
eval_json "$TMP/val_dense.json" dense 0.86 0.99 0 null
cat >"$TMP/map.json" <<EOF
{"experts": 5, "superclass_of": $SC, "sizes": [4, 1, 1, 3, 1],
 "groups": [["T-shirt/top", "Pullover", "Coat", "Shirt"], ["Trouser"], ["Dress"],
            ["Sandal", "Sneaker", "Ankle boot"], ["Bag & <Purse>"]],
 "method": "metis", "source": "val_dense.json"}
EOF
TOK='moe<tok>&64'  # a run name that needs escaping too
RUNS=(--run "dense-64=$TMP/dense1.json" --run "dense-64=$TMP/dense2.json"
      --run "moe-sc-64=$TMP/moe_sc.json" --run "$TOK=$TMP/moe_tok.json")

# ---------------------------------------------------------------- the report
expect 0 :: report --out "$TMP/r.html" --json "$TMP/r.json" --title 'Fashion <MNIST> & MoE' \
  --superclasses "$TMP/map.json" --confusion "$TMP/val_dense.json" "${RUNS[@]}"
H="$TMP/r.html"
check "HTML written" test -s "$H"
check "HTML has inline SVG" grep -q '<svg' "$H"
check "no script" bash -c "! grep -qi '<script' '$H'"
check "class name escaped" grep -qF 'Bag &amp; &lt;Purse&gt;' "$H"
check "class name never raw" bash -c "! grep -qF '<Purse>' '$H'"
check "run name escaped" grep -qF 'moe&lt;tok&gt;&amp;64' "$H"
check "run name never raw" bash -c "! grep -qF '<tok>' '$H'"
check "title escaped" grep -qF '<h1>Fashion &lt;MNIST&gt; &amp; MoE</h1>' "$H"

# The numbers, computed here from the fixtures' values.
read -r DMEAN DSTD DELTA < <($PY -c "
import statistics as s
d=[$D1,$D2]; m=s.mean(d)
print('%.2f %.2f %+.2f' % (100*m, 100*s.stdev(d), 100*($M1-m)))")
check "dense row has the mean $DMEAN" grep -q "<th scope=\"row\">dense-64</th>.*>$DMEAN ± $DSTD <span class=\"n\">(n=2)</span>" "$H"
check "MoE row: delta $DELTA vs dense" grep -q "<th scope=\"row\">moe-sc-64</th>.*$DELTA <span class=\"n\">vs dense-64" "$H"
check "MoE row: router accuracy 93.0" grep -q "<th scope=\"row\">moe-sc-64</th>.*>93.0<" "$H"
check "MFLOPs 21.40" grep -q ">21.40<" "$H"
check "params 412.0 k / 310.0 k" grep -qF "412.0 k / 310.0 k" "$H"
check "super-class listing" grep -qF "<td>T-shirt/top, Pullover, Coat, Shirt</td>" "$H"
check "expert label from the super-class map" grep -qF "expert 3: Sandal, Sneaker, Ankle boot" "$H"
check "token routing: share of assignments" grep -qF "share of expert assignments" "$H"
check "routing-error table: misrouted 7.00 %, their top-1 25.00 %" grep -qF '<th scope="row">moe-sc-64</th><td class="num">93.00</td><td class="num">7.00</td><td class="num">90.00</td><td class="num">25.00</td>' "$H"

# Every <svg> is well-formed XML with a <title>; four figures (accuracy, confusion, 2 MoE runs).
check "SVGs are well-formed XML with titles" $PY - "$H" <<'EOF'
import re, sys, xml.etree.ElementTree as ET
page = open(sys.argv[1], encoding="utf-8").read()
svgs = re.findall(r"<svg\b.*?</svg>", page, re.S)
ns = "{http://www.w3.org/2000/svg}"
ok = len(svgs) == 4
for s in svgs:
    root = ET.fromstring(s)
    t = root.find(ns + "title")
    ok &= t is not None and bool((t.text or "").strip())
    # the confusion matrix: 100 cells with counts (K <= 20)
    if root.get("id") == "fig-conf":
        ok &= len(root.findall(".//" + ns + "g[@id='fig-conf-cells']/" + ns + "rect")) == 100
print("svgs:", len(svgs), "ok" if ok else "BAD")
sys.exit(0 if ok else 1)
EOF

check "JSON summary: mean, std, delta, n" $PY - "$TMP/r.json" "$D1" "$D2" "$M1" <<'EOF'
import json, statistics as s, sys
r = json.load(open(sys.argv[1]))
d1, d2, m1 = map(float, sys.argv[2:5])
runs = {x["name"]: x for x in r["runs"]}
d, m, t = runs["dense-64"], runs["moe-sc-64"], runs["moe<tok>&64"]
mean = (d1 + d2) / 2
ok = [r["title"] == "Fashion <MNIST> & MoE",
      [x["name"] for x in r["runs"]] == ["dense-64", "moe-sc-64", "moe<tok>&64"],
      d["n_seeds"] == 2 and m["n_seeds"] == 1,
      abs(d["top1_mean"] - mean) < 1e-12,
      abs(d["top1_std"] - s.stdev([d1, d2])) < 1e-12,
      abs(m["delta_vs_dense"] - (m1 - mean)) < 1e-12,
      d["delta_vs_dense"] is None and m["top1_std"] is None,
      abs(m["router_acc_mean"] - 0.93) < 1e-12 and t["router_acc_mean"] is None,
      abs(m["routed_acc_mean"] - 0.9) < 1e-12 and abs(m["misrouted_acc_mean"] - 0.25) < 1e-12,
      abs(m["misrouted_share_mean"] - 70 / 1000) < 1e-12 and t["misrouted_acc_mean"] is None,
      d["routed_acc_mean"] is None,
      m["routing"] == "image-superclass" and m["experts"] == 5 and m["moe_layers"] == 2,
      d["flops"] == 21400000 and d["params"] == 412000 and d["active_params"] == 310000,
      r["superclasses"]["experts"] == 5 and r["superclasses"]["sizes"] == [4, 1, 1, 3, 1],
      r["superclasses"]["groups"][4] == ["Bag & <Purse>"],
      abs(m["expert_share_mean"][0] - 0.4) < 1e-12 and m["expert_acc_mean"][4] is None]
print(ok)
sys.exit(0 if all(ok) else 1)
EOF

# Without --confusion the matrix is the first dense run's.
expect 0 :: report --out "$TMP/r2.html" "${RUNS[@]}"
check "confusion from the first dense run" grep -qF "Figure 2.</b> Confusion matrix of runs/dense.safetensors on the test split (1000 images), from <code>$TMP/dense1.json</code>" "$TMP/r2.html"

# Files of older versions (no config, flops, moe) still give a report, with those parts left out.
echo '{"top1": 0.5}' >"$TMP/minimal.json"
expect 0 :: report --out "$TMP/min.html" --json "$TMP/min.json" --run "old=$TMP/minimal.json"
check "minimal: HTML written with the mean" grep -q ">50.00 <span" "$TMP/min.html"
check "minimal: JSON has nulls" $PY -c "
import json; r = json.load(open('$TMP/min.json'))['runs'][0]
assert r['top1_mean'] == 0.5 and r['flops'] is None and r['routing'] is None and r['top1_std'] is None"

# Learning curves (--curve): validation accuracy per epoch, the mean over a name's files; a
# resumed run's repeated epoch counts once (its last record); step lines and a cut last line are
# skipped.
curve() { # FILE VAL1 VAL2 VAL3 (epochs 1..3; "null": not measured)
  local f=$1 e=1; shift
  : >"$f"
  for v in "$@"; do
    echo "{\"event\":0,\"epoch\":$e,\"epochs\":3,\"step\":5,\"loss\":2.1}" >>"$f"
    echo "{\"event\":1,\"epoch\":$e,\"epochs\":3,\"step\":10,\"loss\":1.5,\"train_acc\":0.5,\"val_acc\":$v,\"val_loss\":1.2}" >>"$f"
    e=$((e+1))
  done
}
curve "$TMP/c_d1.jsonl" 0.5 0.7 0.8
curve "$TMP/c_d2.jsonl" 0.6 0.7 0.9
curve "$TMP/c_m1.jsonl" 0.4 null 0.95
echo '{"event":1,"epoch":2,"epochs":3,"step":10,"val_acc":0.1}' >>"$TMP/c_d2.jsonl"   # overwritten below
echo '{"event":1,"epoch":2,"epochs":3,"step":10,"val_acc":0.75}' >>"$TMP/c_d2.jsonl"  # a resumed epoch 2
printf '{"event":1,"epoch":3,"ep' >>"$TMP/c_m1.jsonl"                                   # cut short
expect 0 :: report --out "$TMP/c.html" --json "$TMP/c.json" "${RUNS[@]}" \
  --curve "dense-64=$TMP/c_d1.jsonl" --curve "dense-64=$TMP/c_d2.jsonl" --curve "moe-sc-64=$TMP/c_m1.jsonl"
check "curves: JSON means, stds, gaps" $PY - "$TMP/c.json" <<'EOF'
import json, statistics as s, sys
c = {x["name"]: x for x in json.load(open(sys.argv[1]))["curves"]}
d, m = c["dense-64"], c["moe-sc-64"]
ok = [d["n_seeds"] == 2 and d["epochs"] == 3 and m["n_seeds"] == 1,
      all(abs(a - b) < 1e-12 for a, b in zip(d["val_acc_mean"], [0.55, 0.725, 0.85])),
      abs(d["val_acc_std"][1] - s.stdev([0.7, 0.75])) < 1e-12,
      m["val_acc_mean"][0] == 0.4 and m["val_acc_mean"][1] is None and m["val_acc_mean"][2] == 0.95,
      m["val_acc_std"] == [None, None, None]]
print(ok)
sys.exit(0 if all(ok) else 1)
EOF
check "curves: figure drawn" grep -qF "Figure 3.</b> Top-1 accuracy on the validation images" "$TMP/c.html"
check "curves: a line per name and panel (the MoE has one point in the second half)" $PY - "$TMP/c.html" <<'EOF'
import re, sys
h = open(sys.argv[1]).read()
svg = [s for s in re.findall(r"<svg.*?</svg>", h, re.S) if "fig-curves" in s][0]
n = svg.count("<polyline")
print("polylines:", n)
sys.exit(0 if n == 3 else 1)
EOF
check "no curves: no section" bash -c "! grep -q 'Learning curves' '$TMP/r.html'"
echo '{"event":1,"epoch":4,"epochs":3,"val_acc":0.5}' >"$TMP/c_bad.jsonl"
expect 1 "$TMP/c_bad.jsonl:1" "epoch" :: report --out "$TMP/e.html" --run "a=$TMP/dense1.json" --curve "a=$TMP/c_bad.jsonl"
echo '{"event":0,"epoch":1,"epochs":3}' >"$TMP/c_none.jsonl"
expect 1 "$TMP/c_none.jsonl" "no epoch-end record" :: report --out "$TMP/e.html" --run "a=$TMP/dense1.json" --curve "a=$TMP/c_none.jsonl"
curve "$TMP/c_short.jsonl" 0.5 0.6
sed -i 's/"epochs":3/"epochs":2/' "$TMP/c_short.jsonl"
expect 1 "one name is one training recipe" :: report --out "$TMP/e.html" --run "a=$TMP/dense1.json" \
  --curve "a=$TMP/c_d1.jsonl" --curve "a=$TMP/c_short.jsonl"
expect 2 "NAME=METRICS.jsonl" :: report --out "$TMP/e.html" --run "a=$TMP/dense1.json" --curve "$TMP/c_d1.jsonl"

# ---------------------------------------------------------------- errors
expect 2 "--run" :: report --out "$TMP/e.html"
expect 2 "--out" :: report --run "a=$TMP/dense1.json"
expect 2 "NAME=EVAL.json" :: report --out "$TMP/e.html" --run "$TMP/dense1.json"
expect 2 "--frob" :: report --out "$TMP/e.html" --run "a=$TMP/dense1.json" --frob
printf '{"top1": 0.5, "top5": ' >"$TMP/broken.json"
expect 1 "$TMP/broken.json" "not valid JSON" :: report --out "$TMP/e.html" --run "a=$TMP/broken.json"
sed 's/"top1": [0-9.]*,//' "$TMP/dense1.json" >"$TMP/notop1.json"
expect 1 "$TMP/notop1.json" "top1" :: report --out "$TMP/e.html" --run "a=$TMP/dense1.json" --run "b=$TMP/notop1.json"
sed 's/"top5": [0-9.]*,/"top5": "high",/' "$TMP/dense1.json" >"$TMP/badtype.json"
expect 1 "$TMP/badtype.json" '"top5"' :: report --out "$TMP/e.html" --run "a=$TMP/badtype.json"
sed 's/"expert_load": \[800, 100, 100, 300, 100\]/"expert_load": [1, 2]/' "$TMP/moe_sc.json" >"$TMP/badlen.json"
expect 1 "$TMP/badlen.json" "moe.expert_load" :: report --out "$TMP/e.html" --run "a=$TMP/badlen.json"
expect 1 "$TMP/missing.json" :: report --out "$TMP/e.html" --run "a=$TMP/missing.json"
expect 1 "different models" "routing" :: report --out "$TMP/e.html" --run "a=$TMP/dense1.json" \
  --run "a=$TMP/moe_sc.json"
echo '{"superclass_of": [0, 1, 0]}' >"$TMP/map3.json"
expect 1 "$TMP/map3.json" "3 classes" :: report --out "$TMP/e.html" --superclasses "$TMP/map3.json" \
  --run "a=$TMP/dense1.json"
# The map is read by the reader training uses (analysis/superclass_map.c): a plain text map of
# K integers works here too, and the JSON extras are checked against superclass_of.
echo "${SC//[\[\],]/ }" >"$TMP/map.txt"
expect 0 :: report --out "$TMP/t.html" --superclasses "$TMP/map.txt" --run "a=$TMP/dense1.json"
check "text map: 10 classes in 5 super-classes" grep -qF "<p>10 classes in 5 super-classes (map <code>$TMP/map.txt</code>)" "$TMP/t.html"
badmap() {  # NAME JSON-EXTRAS NEEDLE...: a map with superclass_of $SC and the extras is refused
  local name=$1 extras=$2; shift 2
  echo "{\"superclass_of\": $SC, $extras}" >"$TMP/$name.json"
  expect 1 "$TMP/$name.json" "$@" :: report --out "$TMP/e.html" --superclasses "$TMP/$name.json" \
    --run "a=$TMP/dense1.json"
}
badmap sizes '"sizes": [4, 1, 1, 2, 2]' '"sizes"'
badmap sizes_len '"sizes": [4, 1, 1, 3]' '"sizes"' "4 entries"
badmap groups '"groups": [["a"], ["b"], ["c"], ["d", "e", "f"], ["g"]]' '"groups"'
badmap experts '"experts": 6' '"experts": 6' "5 super-classes"
badmap method '"method": 3' '"method"'
echo '{"superclass_of": [0, 1, 0, 3, 0, 3, 0, 3, 1, 3]}' >"$TMP/gap.json"
expect 1 "$TMP/gap.json" "super-class 2" :: report --out "$TMP/e.html" --superclasses "$TMP/gap.json" \
  --run "a=$TMP/dense1.json"
echo '{"superclass_of": [0, 1, 0, 1, 0, 1, 0, 1, 0, 10]}' >"$TMP/range.json"
expect 1 "$TMP/range.json" "superclass_of[9]" :: report --out "$TMP/e.html" --superclasses "$TMP/range.json" \
  --run "a=$TMP/dense1.json"
check "no file written on failure" bash -c "! ls '$TMP'/e.html* >/dev/null 2>&1"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
