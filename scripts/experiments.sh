#!/usr/bin/env bash
# The paper's comparisons at small scale on Fashion-MNIST. Two sets of runs (SET):
#  short (the "Experiments" issue, 5 epochs):
#   - dense vs Mobile V-MoE (image-superclass, E=4, k=1, L=2) at the WIDTHS, matched
#     inference FLOPs (a k=1 MoE costs the dense model's FLOPs + the router's 2·D·E);
#   - ablations at width ABL_W (32: the cheapest, and where capacity limits most) over E (3, 4, 5),
#     L (1, 2, 4), k (1, 2), the routing mode (image-superclass, image-learned, token-learned) and
#     the start (from scratch, or upcycled from the dense run against that run trained on as long);
#  long (the full-budget issue: bash scripts/long.sh sets it up):
#   - dense vs Mobile V-MoE (image-superclass, E=4, k=1, L=2) at widths 16, 32, 64, trained to
#     convergence (EPOCHS=35, WARMUP=2, validation every epoch for the learning curves);
#   - at width 64, with the same budget: k=2, image-learned routing, and upcycled (dense for the
#     first HALF epochs — the dense run's kept copy at that epoch — then MoE for the rest);
#   - every configuration over SEEDS seeds (the width-64 extras over EXTRA_SEEDS).
# Runs JOBS trainings at a time with THREADS threads each; a run whose eval file exists is
# skipped and a stopped run continues with --resume, so the script can be stopped and started
# again (or split over machines and sessions).
#
# Usage: bash scripts/experiments.sh            (after `make`; hours on 2 cores)
# Environment (defaults in brackets): MVMOE [build/mvmoe] DATA [/usr/share/datasets/fashion-mnist]
#   SET [short | long]
#   MAPS [runs/maps: fmnist_E{3,4,5}.json from `mvmoe superclasses`, the ones the set uses; made
#   from DENSE if missing] DENSE [a dense checkpoint for the maps]
#   OUT [runs/experiments] EPOCHS [5] WARMUP [1] EVAL_EVERY [0: validation at the end only]
#   SEEDS ["0 1"] EXTRA_SEEDS [long: "0"]
#   WIDTHS [short: "24 32 48", long: "16 32 64": the dense vs MoE comparison] ABL_W [32]
#   JOBS [1] THREADS [2] DEADLINE [unix time after which no new run starts; 0: none]
#   ONLY [regex: run only jobs whose name matches] FULL [1: also E=5, L=1, L=4]
#   ADAPTIVE ["0.5 0.7 0.9": adaptive-k thresholds for the top-2 runs]
#   MAX_IMAGES [0: all; else train on the first N training images (test: always all)] JOB_END [unix time at which unfinished runs
#   are stopped (their checkpoint saved); they continue on the next invocation]
#   TITLE [the report's title]
set -uo pipefail
cd "$(dirname "$0")/.."
MVMOE=${MVMOE:-build/mvmoe}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-runs/experiments}
MAPS=${MAPS:-runs/maps}
EPOCHS=${EPOCHS:-5}
SEEDS=${SEEDS:-"0 1"}
JOBS=${JOBS:-1}
SET=${SET:-short}
WARMUP=${WARMUP:-1}
EVAL_EVERY=${EVAL_EVERY:-0}
case $SET in short | long) ;; *) echo "experiments: SET must be short or long, not '$SET'" >&2; exit 2 ;; esac
THREADS=${THREADS:-2}
DEADLINE=${DEADLINE:-0}
ONLY=${ONLY:-.}
mkdir -p "$OUT" "$MAPS"

SC="--routing image-superclass"
ABL_W=${ABL_W:-32}
if [ "$SET" = long ]; then WIDTHS=${WIDTHS:-"16 32 64"}; else WIDTHS=${WIDTHS:-"24 32 48"}; fi
HALF=$(( (EPOCHS + 1) / 2 )) # long: epochs of the dense start of the upcycled run

# name | model flags. Width w: w/16 heads of 16 (16: 1 head, 32: 2, 48: 3, 64: 4); MLP 4x;
# depth 12; patch 4.
# @SEED@ in the flags is replaced by the run's seed (upcycling starts from the same seed's dense run).
width() { echo "--preset vit-12x64 --dim $1 --heads $(($1 / 16)) --mlp-dim $(($1 * 4))"; }
jobs_short() { # in order of importance: the width comparison first, then the ablations
    for w in $WIDTHS; do
        echo "dense-w$w|$(width $w)"
        echo "moe-sc-E4-k1-L2-w$w|$(width $w) $SC --superclasses $MAPS/fmnist_E4.json --top-k 1 --moe-layers 2"
    done
    local a; a=$(width "$ABL_W")
    local dense="$OUT/dense-w$ABL_W-s@SEED@/model.safetensors"
    # upcycling: the MoE starts from the dense run; its control is the dense run trained on
    # for the same number of epochs (same total compute)
    echo "moe-up-E4-k1-L2-w$ABL_W|$a $SC --superclasses $MAPS/fmnist_E4.json --top-k 1 --moe-layers 2 --upcycle $dense"
    echo "dense-cont-w$ABL_W|--init $dense" # the shape comes from the checkpoint
    echo "moe-sc-E4-k2-L2-w$ABL_W|$a $SC --superclasses $MAPS/fmnist_E4.json --top-k 2 --moe-layers 2"
    echo "moe-il-E4-k1-L2-w$ABL_W|$a --routing image-learned --experts 4 --top-k 1 --moe-layers 2"
    echo "moe-tl-E4-k1-L2-w$ABL_W|$a --routing token-learned --experts 4 --top-k 1 --moe-layers 2"
    echo "moe-sc-E3-k1-L2-w$ABL_W|$a $SC --superclasses $MAPS/fmnist_E3.json --top-k 1 --moe-layers 2"
    if [ "${FULL:-0}" = 1 ]; then
        echo "moe-sc-E5-k1-L2-w$ABL_W|$a $SC --superclasses $MAPS/fmnist_E5.json --top-k 1 --moe-layers 2"
        echo "moe-sc-E4-k1-L1-w$ABL_W|$a $SC --superclasses $MAPS/fmnist_E4.json --top-k 1 --moe-layers 1"
        echo "moe-sc-E4-k1-L4-w$ABL_W|$a $SC --superclasses $MAPS/fmnist_E4.json --top-k 1 --moe-layers 4"
    fi
}
jobs_long() { # seeds|name|flags; the width comparison first (cheapest width first), then the extras
    local w
    for w in $WIDTHS; do
        echo "$SEEDS|dense-w$w|$(width $w) --keep-every $HALF"
        echo "$SEEDS|moe-sc-E4-k1-L2-w$w|$(width $w) $SC --superclasses $MAPS/fmnist_E4.json --top-k 1 --moe-layers 2"
    done
    local a; a=$(width 64) extra=${EXTRA_SEEDS:-0}
    echo "$extra|moe-sc-E4-k2-L2-w64|$a $SC --superclasses $MAPS/fmnist_E4.json --top-k 2 --moe-layers 2"
    echo "$extra|moe-il-E4-k1-L2-w64|$a --routing image-learned --experts 4 --top-k 1 --moe-layers 2"
    # upcycled: the first HALF epochs are the dense run's (its kept copy), then the MoE for the
    # rest of the budget; its control is that dense run, trained the whole budget
    echo "$extra|moe-up-E4-k1-L2-w64|$a $SC --superclasses $MAPS/fmnist_E4.json --top-k 1 --moe-layers 2 --upcycle $OUT/dense-w64-s@SEED@/model.epoch$HALF.safetensors --epochs $((EPOCHS - HALF))"
}
jobs_list() { # seeds|name|flags
    if [ "$SET" = long ]; then jobs_long; else jobs_short | sed "s/^/$SEEDS|/"; fi
}

for E in $(jobs_list | grep -o 'fmnist_E[0-9]*\.json' | sort -u | grep -o '[0-9]*'); do
    if [ ! -f "$MAPS/fmnist_E$E.json" ]; then
        if [ -z "${DENSE:-}" ]; then
            echo "experiments: $MAPS/fmnist_E$E.json is missing; set DENSE=CKPT (a trained dense model) to make it" >&2
            exit 1
        fi
        OMP_NUM_THREADS=$THREADS "$MVMOE" superclasses --model "$DENSE" --data "$DATA" --experts "$E" \
            --out "$MAPS/fmnist_E$E.json" --listing "$MAPS/fmnist_E$E.txt" || exit 1
    fi
done

run_one() { # name seed flags...
    local name=$1 seed=$2; shift 2
    local dir="$OUT/$name-s$seed"
    [ -f "$dir/test.json" ] && return 0
    local args=() a
    for a in "$@"; do args+=("${a//@SEED@/$seed}"); done
    set -- "${args[@]}"
    for a in "$@"; do # a run that starts from another one waits for a later invocation
        if [[ "$a" == */model.safetensors ]] && [ ! -f "$(dirname "$a")/test.json" ]; then
            echo "skipped: $name seed $seed needs $(dirname "$a") to finish first" >&2
            return 0
        fi
        if [[ "$a" == "$OUT"/*.safetensors ]] && [ ! -f "$a" ]; then # a kept copy (--keep-every)
            echo "skipped: $name seed $seed needs $a (a later invocation starts it)" >&2
            return 0
        fi
    done
    if [ "$DEADLINE" != 0 ] && [ "$(date +%s)" -ge "$DEADLINE" ]; then return 0; fi
    mkdir -p "$dir"
    local limit=()
    if [ "${JOB_END:-0}" != 0 ]; then
        local left=$((JOB_END - $(date +%s)))
        [ "$left" -gt 10 ] || return 0
        limit=(timeout "$left")
    fi
    local cap=()
    [ "${MAX_IMAGES:-0}" != 0 ] && cap=(--max-images "$MAX_IMAGES")
    # a stopped run (its optimizer state is there) continues: the model comes from its
    # checkpoint, so only the training flags among the job's flags are given again
    local train=()
    if [ -f "$dir/model.safetensors" ] && { [ -f "$dir/model.safetensors.state.safetensors" ] ||
        [ -f "$dir/model.safetensors.state.prev.safetensors" ]; }; then
        train=(--resume)
        while [ $# -gt 0 ]; do
            case $1 in --epochs | --keep-every) train+=("$1" "$2"); shift ;; esac
            shift
        done
        echo "resuming: $name seed $seed" >&2
        echo "---- resumed $(date -u +%FT%TZ)" >> "$dir/train.log"
    else
        train=("$@")
        : > "$dir/train.log"
    fi
    if OMP_NUM_THREADS=$THREADS "${limit[@]}" "$MVMOE" train --data "$DATA" --out "$dir/model.safetensors" \
           --epochs "$EPOCHS" --batch 128 --lr 2e-3 --warmup "$WARMUP" --seed "$seed" --threads "$THREADS" \
           --eval-every "$EVAL_EVERY" "${cap[@]}" "${train[@]}" >> "$dir/train.log" 2>&1 &&
       OMP_NUM_THREADS=$THREADS "$MVMOE" eval --model "$dir/model.safetensors" --data "$DATA" \
           --split test --json > "$dir/test.json.tmp" 2>> "$dir/train.log"; then
        mv "$dir/test.json.tmp" "$dir/test.json"
        echo "done: $name seed $seed: $(grep -o '"top1":[0-9.]*' "$dir/test.json")"
    else
        echo "FAILED: $name seed $seed (see $dir/train.log)" >&2
    fi
}

# the queue: every (job, seed), JOBS at a time
running=0
while IFS='|' read -r seeds name flags; do
    [[ "$name" =~ $ONLY ]] || continue
    for seed in $seeds; do
        # shellcheck disable=SC2086
        run_one "$name" "$seed" $flags &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then
            wait -n
            running=$((running - 1))
        fi
    done
done < <(jobs_list)
wait

# adaptive k (not in the paper): every finished top-2 MoE evaluated again with its second
# expert used only where the top router probability is below t; each t is a run of its own
for f in "$OUT"/*-k2-*/test.json; do
    [ -f "$f" ] || continue
    d=$(dirname "$f")
    for t in ${ADAPTIVE:-0.5 0.7 0.9}; do
        a="$d/test_adaptive$t.json"
        [ -f "$a" ] && continue
        OMP_NUM_THREADS=$THREADS "$MVMOE" eval --model "$d/model.safetensors" --data "$DATA" --split test \
            --json --adaptive-k "$t" > "$a.tmp" 2>> "$d/train.log" && mv "$a.tmp" "$a" &&
            echo "done: $(basename "$d") adaptive k $t: $(grep -o '"top1":[0-9.]*' "$a")"
    done
done

# the summary: one report over every finished run (runs with the same name = seeds)
args=()
for f in "$OUT"/*/test.json "$OUT"/*/test_adaptive*.json; do
    [ -f "$f" ] || continue
    d=$(basename "$(dirname "$f")")
    name=${d%-s*}
    case $f in
    *test_adaptive*) t=${f##*test_adaptive}; name=${name/-k2-/-k2a${t%.json}-} ;;
    esac
    args+=(--run "$name=$f")
done
if [ ${#args[@]} -gt 0 ]; then
    "$MVMOE" report --out "$OUT/report.html" --json "$OUT/report.json" \
        --title "${TITLE:-Mobile V-MoE experiments on Fashion-MNIST ($EPOCHS epochs)}" \
        --superclasses "$MAPS/fmnist_E4.json" "${args[@]}" ||
        echo "experiments: the report could not be written" >&2
fi
