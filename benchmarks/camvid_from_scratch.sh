#!/usr/bin/env bash
# CamVid from random weights: FCN-32s, then FCN-8s initialised from it, each evaluated on
# val. The figures in README.md ("Results measured here") come from this script.
# Usage: benchmarks/camvid_from_scratch.sh [CAMVID_DIR] [OUT_DIR]
set -euo pipefail
KSEG=${KSEG:-.venv/bin/kseg}
DATA=${1:-../shared/data/camvid}
OUT=${2:-runs/camvid-from-scratch}
COMMON=(--data camvid --data-dir "$DATA" --weights none --width 0.25 --batch-size 4 --crop 360x480
        --optimizer adam --lr 3e-4 --class-weights median-frequency --seed 0 --quiet)
"$KSEG" train --model fcn32s "${COMMON[@]}" --epochs 12 --run-dir "$OUT/fcn32s"
"$KSEG" train --model fcn8s "${COMMON[@]}" --epochs 12 --init-from "$OUT/fcn32s" --run-dir "$OUT/fcn8s"
for model in fcn32s fcn8s; do
    "$KSEG" evaluate "$OUT/$model" --data camvid --data-dir "$DATA" --split val --out "$OUT/$model-val.json"
done
