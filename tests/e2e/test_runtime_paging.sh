#!/usr/bin/env bash
# Expert paging (issue 17 item 5, docs/EDGE.md "Expert paging"): with per-image routing, one
# image at batch 1 reads only the shared weights and its k experts. For image-superclass models
# (E=4, k=1 and k=2; fp32 and the int8 file of `mvmoe quantize`), `mvmoe-run --page-report I`
# runs image I from a cold page cache; in every MoE block exactly the experts of the image's
# routes have resident pages, and no other expert's whole pages were read. Fails if an unchosen
# expert's page is read. The checkpoints live under BUILD (a disk file system: tmpfs keeps
# every page resident, and then the measurement is impossible: a skip).
set -u
BUILD=${1:-build}
MV="$BUILD/mvmoe"; RUN="$BUILD/mvmoe-run"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
[ -d "$DATA" ] || { echo "skip: $DATA is missing (scripts/setup.sh)"; exit 77; }
[ -x "$RUN" ] || { bad "$RUN is not built (make runtime)"; exit 1; }

T=$(mktemp -d -p "$BUILD" paging.XXXXXX); trap 'rm -rf "$T"' EXIT
mkdir "$T/fm"
for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do gunzip -c "$DATA/$f.gz" > "$T/fm/$f"; done
echo "0 1 0 1 2 3 0 3 1 2" > "$T/map.txt"   # 10 classes in 4 super-classes
# wide enough that each expert spans whole pages, also in int8 (fc1 512x64 bytes = 32 KiB)
MODEL=(--dim 64 --depth 3 --heads 2 --mlp-dim 512 --patch 7)
TRAIN=(--data "$DATA" --max-images 1000 --batch 32 --lr 3e-3 --warmup 0 --seed 1 --epochs 1 --max-steps 30
       --eval-every 0 --superclasses "$T/map.txt" --moe-layers 2)

cat > "$T/check.py" <<'PYEOF'
import json, sys
d = json.load(sys.stdin)
if not d["cold"]:
    print("not-cold"); sys.exit(0)
routes = set(r for r in d["routes"] if r >= 0)
wrong = [(e["block"], e["expert"]) for e in d["expert_pages"] if e["touched"] != (e["expert"] in routes)]
whole = all(e["whole_page_bytes"] > 0 for e in d["expert_pages"])
read = sum(e["resident_bytes"] for e in d["expert_pages"])
print("ok" if not wrong and whole else "wrong:%s" % wrong, d["routes"], d["file_bytes"],
      d["resident_after_image_bytes"], read, d["major_faults"])
PYEOF

for k in 1 2; do
  m="$T/e4k$k.safetensors"
  "$MV" train "${TRAIN[@]}" "${MODEL[@]}" --top-k $k --out "$m" > "$T/train$k.log" 2>&1 \
    || { bad "k=$k: train failed"; tail -3 "$T/train$k.log"; continue; }
  "$MV" quantize --model "$m" --out "$T/e4k$k.q.safetensors" > /dev/null 2>&1 || { bad "k=$k: quantize failed"; continue; }
  sync
  for variant in fp32 int8; do
    file="$m"; prec=()
    [ $variant = int8 ] && file="$T/e4k$k.q.safetensors" prec=(--precision int8)
    for img in 0 1 2 3 4 5 6 7; do
      out=$("$RUN" --model "$file" --data "$T/fm" --page-report $img "${prec[@]}" 2> "$T/err" | "$PY" "$T/check.py")
      read -r verdict routes_etc <<< "$out"
      case "$verdict" in
        ok) ok "E=4 k=$k $variant image $img: only the routed experts' pages read (routes, file bytes, resident, expert bytes read, major faults: $routes_etc)";;
        not-cold) echo "skip: the page cache of $file could not be dropped (tmpfs, or mapped elsewhere)"; exit 77;;
        *) bad "E=4 k=$k $variant image $img: $out $(cat "$T/err")";;
      esac
    done
  done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
