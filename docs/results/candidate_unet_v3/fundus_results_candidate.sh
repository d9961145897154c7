#!/usr/bin/env bash
# Held-out figures of the shipped 2D pipeline on DRIVE, STARE and HRF (docs/results.md,
# "Three fundus cameras"): tubediff segment's defaults, native resolution, plus DRIVE test
# resampled by 0.5 and 2 (raw and DTI). Four processes, one thread each.
#   bash scripts/fundus_results.sh data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data}
OUT=docs/results
export OMP_NUM_THREADS=1
fr() { python scripts/fundus_results.py --data "$DATA" "$@"; }
fr --sets DRIVE,STARE,HRF --methods raw,dti --json $OUT/fundus_heldout_raw_dti.json \
    > $OUT/fundus_heldout_raw_dti.txt &
fr --sets DRIVE --methods raw,refine --json $OUT/fundus_drive_refine.json > $OUT/fundus_drive_refine.txt &
fr --sets HRF,STARE --methods raw,refine --json $OUT/fundus_stare_hrf_refine.json \
    > $OUT/fundus_stare_hrf_refine.txt &
fr --sets DRIVE@0.5,DRIVE@2 --methods raw,dti --json $OUT/fundus_drive_resampled.json \
    > $OUT/fundus_drive_resampled.txt &
wait
cat $OUT/fundus_heldout_raw_dti.txt $OUT/fundus_drive_refine.txt $OUT/fundus_stare_hrf_refine.txt \
    $OUT/fundus_drive_resampled.txt
