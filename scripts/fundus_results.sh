#!/usr/bin/env bash
# Held-out figures of the shipped 2D pipeline on DRIVE, STARE and HRF (docs/results.md,
# "Three fundus cameras"): tubediff segment's defaults, native resolution, plus DRIVE test
# resampled by 0.5 and 2 (raw and DTI). One process per core.
#   bash scripts/fundus_results.sh data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data}
OUT=docs/results
export OMP_NUM_THREADS=1
fr() { python scripts/fundus_results.py --data "$DATA" "$@"; }
fr --sets DRIVE@0.5,DRIVE@2 --methods raw,dti --json $OUT/fundus_drive_resampled.json \
    > $OUT/fundus_drive_resampled.txt
fr --sets DRIVE --json $OUT/fundus_drive.json > $OUT/fundus_drive.txt &
fr --sets STARE,HRF --json $OUT/fundus_stare_hrf.json > $OUT/fundus_stare_hrf.txt &
wait
cat $OUT/fundus_drive.txt $OUT/fundus_stare_hrf.txt $OUT/fundus_drive_resampled.txt
