#!/usr/bin/env bash
# The fine-tuning figures of docs/results.md ("Fine-tuning on corrections").
# Usage: bash scripts/finetune_results.sh [DRIVE_DIR]      (default: data/DRIVE)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-data/DRIVE}
OUT=docs/results
TMP=$(mktemp -d)
# (a) an annotator corrects three training images: fine-tune on their ground truth (inside the
#     FOV), then score the whole test set with the tuned refiner
tubediff finetune --images $D/training/images/2{1,2,3}_training.tif \
    --labels $D/training/1st_manual/2{1,2,3}_manual1.gif --regions $D/training/mask/2{1,2,3}_training_mask.gif \
    --fovs $D/training/mask/2{1,2,3}_training_mask.gif \
    --out $OUT/refiner_finetuned_3train.pt | tee $OUT/finetune_3train.txt
tubediff evaluate --data $D --split test --fov --backbone unet --methods refine --steps 10 \
    --refiner $OUT/refiner_finetuned_3train.pt --json $OUT/drive_test_unet_finetuned3_fov_steps10.json
# (b) one test image: the annotator corrects a 256 x 256 region; fine-tune there and score that region
python - "$D" "$TMP" <<'PY'
import sys
import numpy as np
from napari_tubediff.data.io import write_image
region = np.zeros((584, 565), bool)
region[150:406, 150:406] = True
write_image(f"{sys.argv[2]}/region.png", region)
PY
#     with the defaults (100 updates, learning rate 3e-3), then with 200 updates at 1e-2
tubediff finetune --images $D/test/images/01_test.tif --labels $D/test/1st_manual/01_manual1.gif \
    --regions $TMP/region.png --fovs $D/test/mask/01_test_mask.gif --out $TMP/refiner_01_region.pt \
    | tee $OUT/finetune_01_region.txt
tubediff finetune --images $D/test/images/01_test.tif --labels $D/test/1st_manual/01_manual1.gif \
    --regions $TMP/region.png --fovs $D/test/mask/01_test_mask.gif --out $TMP/refiner_01_region_200.pt \
    --updates 200 --lr 0.01 | tee -a $OUT/finetune_01_region.txt
#     and with the U-Net's last layers tuned too
tubediff finetune --images $D/test/images/01_test.tif --labels $D/test/1st_manual/01_manual1.gif \
    --regions $TMP/region.png --fovs $D/test/mask/01_test_mask.gif --out $TMP/refiner_01_region_bb.pt \
    --updates 200 --lr 0.01 --tune-backbone | tee -a $OUT/finetune_01_region.txt
