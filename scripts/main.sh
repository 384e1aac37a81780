#!/usr/bin/env bash
# Set-up + build + the main job: train the dense ViT 12x64 (patch 4) on Fashion-MNIST with a
# 10% validation split held out, then evaluate on the test set.
# Usage: bash scripts/main.sh [extra train flags]   (e.g. --epochs 5 for a quick run)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" build/mvmoe
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
OUT=${OUT:-runs/fmnist-vit-12x64}
mkdir -p "$OUT"
DATA=/usr/share/datasets/fashion-mnist
build/mvmoe train --data "$DATA" --preset vit-12x64 --out "$OUT/model.safetensors" \
  --epochs 25 --batch 128 --lr 2e-3 --warmup 2 --metrics "$OUT/metrics.jsonl" "$@"
build/mvmoe eval --model "$OUT/model.safetensors" --data "$DATA" --split test \
  --json > "$OUT/test_eval.json"
build/mvmoe eval --model "$OUT/model.safetensors" --data "$DATA" --split test
