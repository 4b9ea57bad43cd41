#!/usr/bin/env bash
# CamVid from random weights on 2 CPU cores: FCN-8s on the batch-normalised VGG16 at width 0.125,
# trained directly as 8s for 40 epochs, then scored once on val. Nothing is selected on val: training
# runs without validation (--val-split none), and the last checkpoint is the one scored. The figures
# in README.md ("Results measured here") come from this script: 30 minutes on a 2-core CPU with
# native bfloat16 (AVX512-BF16), where --mixed-precision auto trains in mixed_bfloat16, at 32-63 s an
# epoch. On an older 2-core CPU without bfloat16 (float32) an epoch took 212-329 s, and EPOCHS=20
# took 95 minutes there and scored 55.2.
# Usage: benchmarks/camvid_from_scratch.sh [CAMVID_DIR] [OUT_DIR] [EPOCHS]
set -euo pipefail
KSEG=${KSEG:-.venv/bin/kseg}
DATA=${1:-../shared/data/camvid}
OUT=${2:-runs/camvid-from-scratch}
EPOCHS=${3:-40}
if [ -e "$OUT" ] || [ -L "$OUT" ]; then
    echo "error: $OUT already exists; give another OUT_DIR (nothing was changed)" >&2
    exit 2
fi
data_real=$(realpath -m -- "$DATA")
out_real=$(realpath -m -- "$OUT")
case "$out_real/" in
    "$data_real"/*)
        echo "error: $OUT lies inside the dataset $DATA; give an OUT_DIR outside it (nothing was changed)" >&2
        exit 2
        ;;
esac
start=$(date +%s)
"$KSEG" train --model fcn8s_vgg16bn --data camvid --data-dir "$DATA" --weights none --width 0.125 \
    --batch-size 4 --crop 360x480 --optimizer adam --lr 2e-3 --schedule poly \
    --class-weights sqrt-median-frequency --seed 0 --epochs "$EPOCHS" --val-split none --quiet \
    --run-dir "$OUT/fcn8s_vgg16bn"
"$KSEG" evaluate "$OUT/fcn8s_vgg16bn/checkpoints/last.keras" --data camvid --data-dir "$DATA" --split val \
    --out "$OUT/fcn8s_vgg16bn-val.json"
echo "camvid_from_scratch: $EPOCHS epochs, $(( ($(date +%s) - start) / 60 )) minutes in all"
