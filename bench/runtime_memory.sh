#!/usr/bin/env bash
# Peak resident memory of `mvmoe-run` running one image (docs/EDGE.md, "Footprint"), against the
# bytes of the weights that image touches: the issue-17 goal is RSS < 2x those bytes.
#
# For each model (random-init checkpoints from `mvmoe bench --save-weights`, `mvmoe quantize`
# for the int8 files; kept in OUT for the next run): the fp32 file at fp32, the fp32 file at
# --precision int8 (quantized at open), and the int8 file at int8, each one `mvmoe-run --model M
# --threads 1 IMAGE` under `/usr/bin/time -f %M`, the file already in the page cache (warm: the
# kernel maps cached neighbours of a faulting page too, so this is the high side). "touched" is
# the bytes of every tensor an image reads: all but the experts, plus its k experts' tensors in
# each MoE block (read from the file's header; an fp32 file's at fp32, the int8 file's at int8).
# Memory, not time: a busy machine does not change these numbers.
#
# Usage: bash bench/runtime_memory.sh [--out DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/runs/rt-memory
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "runtime_memory: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
MV=$ROOT/build/mvmoe RUN=$ROOT/build/mvmoe-run PY=/usr/bin/python3
for b in "$MV" "$RUN"; do [ -x "$b" ] || { echo "runtime_memory: $b is missing: run make && make runtime" >&2; exit 1; }; done
[ -x /usr/bin/time ] || { echo "runtime_memory: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
mkdir -p "$OUT"
MOE=(--routing image-learned --experts 10 --top-k 1 --moe-layers 2)
# name|preset|moe?|image side|channels
MODELS="vit-12x64-dense|vit-12x64|0|28|1
vit-12x64-moe|vit-12x64|1|28|1
vit-12x192-dense|vit-12x192|0|32|3
vit-12x192-moe|vit-12x192|1|32|3
vit-tiny-dense|vit-tiny16-224|0|224|3
vit-tiny-moe|vit-tiny16-224|1|224|3"
img() { # side channels -> a PGM/PPM of noise
    "$PY" -c "
import sys, random
s, c = int(sys.argv[1]), int(sys.argv[2]); random.seed(1)
h = (b'P5' if c == 1 else b'P6') + b'\n%d %d\n255\n' % (s, s)
sys.stdout.buffer.write(h + bytes(random.randrange(256) for _ in range(s * s * c)))" "$1" "$2"
}
touched() { # file k -> bytes of the tensors one image reads (header offsets)
    "$PY" -c "
import json, struct, sys, re
b = open(sys.argv[1], 'rb').read(8); n = struct.unpack('<Q', b)[0]
h = json.loads(open(sys.argv[1], 'rb').read(8 + n)[8:]); k = int(sys.argv[2]); t = 0
for name, e in h.items():
    if name == '__metadata__': continue
    m = re.search(r'\.experts\.(\d+)\.', name)
    if m and int(m.group(1)) >= k: continue  # the first k experts stand for the chosen ones (all alike in size)
    t += e['data_offsets'][1] - e['data_offsets'][0]
print(t)" "$1" "$2"
}
peak() { /usr/bin/time -f %M "$@" 2>&1 > /dev/null | tail -1; }
base=$(peak "$RUN" --help || true)
printf 'program alone (mvmoe-run --help): %s KB\n' "$base"
printf '| model | file | run | peak RSS KB | touched KB | RSS / touched | (RSS - program) / touched |\n|---|---|---|---|---|---|---|\n'
while IFS='|' read -r name preset moe side ch; do
    f32=$OUT/$name.safetensors i8=$OUT/$name.q.safetensors im=$OUT/img-$side-$ch.p$([ "$ch" = 1 ] && echo g || echo p)m
    [ -f "$im" ] || img "$side" "$ch" > "$im"
    if [ ! -f "$f32" ]; then
        extra=(); [ "$moe" = 1 ] && extra=("${MOE[@]}")
        "$MV" bench --preset "$preset" "${extra[@]}" --batch 2 --warmup 0 --steps 1 --save-weights "$f32" > /dev/null 2>&1 ||
            { echo "runtime_memory: mvmoe bench --save-weights failed for $name" >&2; exit 1; }
    fi
    [ -f "$i8" ] || "$MV" quantize --model "$f32" --out "$i8" > /dev/null
    for run in "fp32:$f32:fp32" "fp32-file:$f32:int8" "int8-file:$i8:int8"; do
        IFS=: read -r label file prec <<< "$run"
        cat "$file" > /dev/null
        kb=$(peak "$RUN" --model "$file" --threads 1 --precision "$prec" "$im")
        tf=$([ "$prec" = fp32 ] || [ "$label" = fp32-file ] && echo "$f32" || echo "$i8")
        # quantized at open: the weights read are the fp32 file's, the ones used an int8 copy
        t=$(touched "$tf" 1)
        [ "$label" = fp32-file ] && [ "$prec" = int8 ] && t=$(touched "$f32" 10)
        "$PY" -c "
import sys; kb, t, base = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print('| %s | %s | %s | %d | %d | %.2f | %.2f |' % (sys.argv[4], sys.argv[5], sys.argv[6], kb, t // 1024, kb * 1024 / t, (kb - base) * 1024 / t))" \
            "$kb" "$t" "$base" "$name" "$label" "$prec"
    done
done <<< "$MODELS"
