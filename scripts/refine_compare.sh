#!/usr/bin/env bash
# Refinement against DTI (docs/results.md): every figure of that section, for any backbone.
#   [WEIGHTS=unet.pt] [HELD_OUT_FUNDUS=1] bash scripts/refine_compare.sh [DATA_ROOT]
# WEIGHTS: U-Net weights instead of the shipped ones (e.g. a retrained backbone).
# Writes the probability maps to $OUT/pred_*/ (tubediff segment) and the tables to $OUT/*.txt.
set -euo pipefail
DATA=${1:-data}
WOPT=(); [ -n "${WEIGHTS:-}" ] && WOPT=(--backbone-weights "$WEIGHTS")
OUT=${OUT:-docs/results/refine}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
here=$(dirname "$0")
run() { python "$here/refine_compare.py" "$@"; }
# DRIVE: the backbone sees DRIVE's FOV masks (as tubediff evaluate --data does)
for split in training test; do
  python - "$DATA/DRIVE" "$split" "$OUT/pred_drive_$split" "${WEIGHTS:-}" <<'PY'
import sys, numpy as np
from napari_tubediff.data.drive import read_drive
from napari_tubediff.data.io import write_image
from napari_tubediff.models import get_backbone
from napari_tubediff.models.backbones import segment_image
root, split, out, weights = sys.argv[1:]
opts = {"weights": weights} if weights else {}
bb = get_backbone("unet", **opts)
for it in read_drive(root, split):
    write_image(f"{out}/{it.name}_prob.tif", segment_image(bb, it.image(), fov=it.fov()).prob)  # as tubediff segment
PY
done
# choices: training split only
run --data "$DATA/DRIVE" --split training --pred "$OUT/pred_drive_training" --json "$OUT/drive_training.json" \
    | tee "$OUT/drive_training.txt"
run --data "$DATA/DRIVE" --split training --pred "$OUT/pred_drive_training" --methods gated+dti \
    --set steps=10 --set steps=20 | tee "$OUT/drive_training_steps.txt"
# held out: DRIVE test; STARE im0255-im0324 and HRF 11-15
run --data "$DATA/DRIVE" --split test --pred "$OUT/pred_drive_test" --json "$OUT/drive_test.json" \
    | tee "$OUT/drive_test.txt"
if [ -n "${HELD_OUT_FUNDUS:-}" ]; then
  run --images "$DATA/STARE/images" --labels "$DATA/STARE/labels_1st" --fov auto --only im0255,im0291,im0319,im0324 "${WOPT[@]}" \
      --json "$OUT/stare_test.json" | tee "$OUT/stare_test.txt"
  run --images "$DATA/HRF/images" --labels "$DATA/HRF/labels_1st" --fov "$DATA/HRF/mask" "${WOPT[@]}" \
      --only 11_dr,12_dr,13_dr,14_dr,15_dr,11_g,12_g,13_g,14_g,15_g,11_h,12_h,13_h,14_h,15_h \
      --json "$OUT/hrf_test.json" | tee "$OUT/hrf_test.txt"
fi
python "$here/refine_timing.py" "$OUT"/pred_drive_test/0[1-5]_test_prob.tif | tee "$OUT/timing.txt"
