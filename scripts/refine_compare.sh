#!/usr/bin/env bash
# Refinement against DTI and the gap list (docs/results.md, issue 13): every figure of that
# section, for any backbone, in one command.
#   [WEIGHTS=unet.pt] bash scripts/refine_compare.sh [DATA_ROOT]
# WEIGHTS: U-Net weights instead of the shipped ones (e.g. a retrained backbone).
# Writes the probability maps to $OUT/pred_*/ (as tubediff segment makes them; kept between
# runs, so remove $OUT/pred_* after changing the weights) and the tables to $OUT/*.txt.
set -euo pipefail
DATA=${1:-data}
WOPT=(); [ -n "${WEIGHTS:-}" ] && WOPT=(--backbone-weights "$WEIGHTS")
OUT=${OUT:-docs/results/refine}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
here=$(dirname "$0")
STARE_TEST=im0255,im0291,im0319,im0324
HRF_TEST=11_dr,12_dr,13_dr,14_dr,15_dr,11_g,12_g,13_g,14_g,15_g,11_h,12_h,13_h,14_h,15_h
DRIVE=(--data "$DATA/DRIVE")
STARE=(--images "$DATA/STARE/images" --labels "$DATA/STARE/labels_1st" --fov auto)
HRF=(--images "$DATA/HRF/images" --labels "$DATA/HRF/labels_1st" --fov "$DATA/HRF/mask")
predict() { python "$here/refine_predict.py" "$@" "${WOPT[@]}"; }
run() { python "$here/refine_compare.py" "$@"; }

# the backbone's probability maps: training splits (the choices) and held-out ones
predict "$OUT/pred_drive_training" "${DRIVE[@]}" --split training
predict "$OUT/pred_drive_test" "${DRIVE[@]}" --split test
predict "$OUT/pred_stare_training" "${STARE[@]}" --skip "$STARE_TEST"
predict "$OUT/pred_stare_test" "${STARE[@]}" --only "$STARE_TEST"
predict "$OUT/pred_hrf_training" "${HRF[@]}" --skip "$HRF_TEST"
predict "$OUT/pred_hrf_test" "${HRF[@]}" --only "$HRF_TEST"

# choices: training splits only (HRF's training images are in the confidence fit below)
run "${DRIVE[@]}" --split training --pred "$OUT/pred_drive_training" --methods raw,dti,gated+dti \
    --set steps=10 --set low=0.35 --set low=0.35,steps=10 --set low=0.4,steps=10 \
    --json "$OUT/drive_training.json" | tee "$OUT/drive_training.txt"
run "${STARE[@]}" --skip "$STARE_TEST" --pred "$OUT/pred_stare_training" --methods raw,dti,gated+dti \
    --set line_width=0 --set line_width=2 --set line_width=3 --set low=0.25 --set low=0.35 \
    --set gate_center=0.15 --set gate_center=0.25 --json "$OUT/stare_training.json" | tee "$OUT/stare_training.txt"
run "${STARE[@]}" --skip "$STARE_TEST" --pred "$OUT/pred_stare_training" --methods gated+dti \
    --set steps=10 --set steps=1 --set low=0.35,steps=10 --set low=0.4 --set low=0.35,line_width=2 \
    --json "$OUT/stare_training_2.json" | tee -a "$OUT/stare_training.txt"
# the gap list's calibrated confidence (core.gaps.CONFIDENCE_MODEL) and its reliability
python "$here/refine_calibrate.py" --data "$DATA" --pred "$OUT" --most hrf=12 --cache "$OUT/calibration_rows" \
    --json "$OUT/calibration.json" | tee "$OUT/calibration.txt"

# held out, measured once after the choices: DRIVE test, STARE im0255-im0324, HRF 11-15
M=raw,dti,faithful,gated+dti
run "${DRIVE[@]}" --split test --pred "$OUT/pred_drive_test" --methods $M --json "$OUT/drive_test.json" \
    | tee "$OUT/drive_test.txt"
run "${STARE[@]}" --only "$STARE_TEST" --pred "$OUT/pred_stare_test" --methods $M \
    --json "$OUT/stare_test.json" | tee "$OUT/stare_test.txt"
# HRF: the default's gap list (its Dice, clDice and VCA against raw, DTI and the faithful PDE:
# the "shipped fundus U-Net" table of docs/results.md, the same maps and methods; add them with
# --methods $M, about 5 minutes per image on the shared 2-core machine)
run "${HRF[@]}" --only "$HRF_TEST" --pred "$OUT/pred_hrf_test" --methods gated+dti \
    --json "$OUT/hrf_test.json" | tee "$OUT/hrf_test.txt"
python "$here/refine_timing.py" "$OUT"/pred_drive_test/0[1-5]_test_prob.tif | tee "$OUT/timing.txt"
