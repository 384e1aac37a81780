#!/usr/bin/env bash
# Dense vs Mobile V-MoE trained to convergence (docs/RESULTS.md, "Full budget"): the recipe that
# gave the dense 12x64 its 90.6 % (35 epochs, lr 2e-3, 2 warm-up epochs, the default
# augmentation, 10 % of the training set held out and evaluated every epoch), image-superclass
# routing with E=4, k=1, L=2 from scratch at widths 16, 32 and 64 over 2 seeds, then at width 64
# k=2, image-learned routing and upcycled (dense 18 epochs, then MoE 17) — see
# scripts/experiments.sh (SET=long) for the list.
#
# The super-class map is the main job's (docs/results/main/superclasses.json): METIS on the
# confusion of a dense 12x64 on the 6,000 images held out of the training split, never the test set.
#
# About 11 h of one core (2 runs side by side: JOBS=2 THREADS=1); stop it at any time: finished
# runs are skipped and a stopped run continues from its checkpoint (--resume) on the next start.
# JOB_END=UNIX_TIME stops (and saves) every run at that time, e.g. before a session ends.
# When every run is done, `bash scripts/long.sh collect` copies each run's eval JSON, metrics and
# log to docs/results/long/ and writes the report there (report.json + report.html).
#
# Environment: MVMOE [OUT/bin/mvmoe, a copy of build/mvmoe made at the first start] OUT [runs/long] JOBS [2] THREADS [1] EPOCHS [35] SEEDS ["0 1"]
#   EXTRA_SEEDS ["0"] ONLY [regex of run names] JOB_END [0]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/long}
EPOCHS=${EPOCHS:-35}
TITLE="Dense vs Mobile V-MoE on Fashion-MNIST at full budget ($EPOCHS epochs)"
mkdir -p "$OUT/maps" "$OUT/bin"
[ -f "$OUT/maps/fmnist_E4.json" ] || cp docs/results/main/superclasses.json "$OUT/maps/fmnist_E4.json"
# one binary for the whole study, so that a run continued in a later session (--resume) steps
# with the same arithmetic as its first part: a copy of build/mvmoe made at the first start
if [ -z "${MVMOE:-}" ]; then
    if [ ! -x "$OUT/bin/mvmoe" ]; then
        [ -x build/mvmoe ] || { echo "long: build/mvmoe is missing; run make first" >&2; exit 1; }
        cp build/mvmoe "$OUT/bin/mvmoe"
    fi
    MVMOE=$OUT/bin/mvmoe
fi
export MVMOE

if [ "${1:-}" != collect ]; then # the runs
    SET=long EPOCHS=$EPOCHS WARMUP=2 EVAL_EVERY=1 OUT=$OUT MAPS=$OUT/maps JOBS=${JOBS:-2} \
        THREADS=${THREADS:-1} TITLE=$TITLE bash scripts/experiments.sh
    exit $?
fi

# collect: the finished runs into docs/results/long/RUN-sSEED/ (eval JSON, the epoch-end lines
# of the metrics, the log without its per-step lines), then one report with learning curves
DOCS=${DOCS:-docs/results/long}
mkdir -p "$DOCS"
cp "$OUT/maps/fmnist_E4.json" "$DOCS/superclasses.json"
args=()
for f in "$OUT"/*/test.json; do
    [ -f "$f" ] || continue
    d=$(dirname "$f")
    run=$(basename "$d")
    name=${run%-s*}
    mkdir -p "$DOCS/$run"
    cp "$f" "$DOCS/$run/test.json"
    grep '"event":[12]' "$d/model.safetensors.metrics.jsonl" > "$DOCS/$run/metrics.jsonl"
    grep -v ' step [0-9]*/[0-9]* (global' "$d/train.log" > "$DOCS/$run/train.log" || true
    args+=(--run "$name=$DOCS/$run/test.json" --curve "$name=$DOCS/$run/metrics.jsonl")
    for a in "$d"/test_adaptive*.json; do
        [ -f "$a" ] || continue
        t=${a##*test_adaptive}
        cp "$a" "$DOCS/$run/"
        args+=(--run "${name/-k2-/-k2a${t%.json}-}=$DOCS/$run/$(basename "$a")")
    done
done
[ ${#args[@]} -gt 0 ] || { echo "long: no finished run in $OUT" >&2; exit 1; }
"$MVMOE" report --out "$DOCS/report.html" --json "$DOCS/report.json" --title "$TITLE" \
    --superclasses "$DOCS/superclasses.json" "${args[@]}"
