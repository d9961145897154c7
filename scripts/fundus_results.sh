#!/usr/bin/env bash
# Held-out figures of the shipped 2D pipeline on DRIVE, STARE and HRF (docs/results.md,
# "Three fundus cameras"): tubediff segment's defaults, native resolution, plus DRIVE test
# resampled by 0.5 and 2. Two processes (one per core): DRIVE in one, STARE + HRF in the other.
#   bash scripts/fundus_results.sh ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=docs/results
export OMP_NUM_THREADS=1
python scripts/fundus_results.py --data "$DATA" --sets DRIVE,DRIVE@0.5,DRIVE@2 \
    --json $OUT/fundus_drive.json > $OUT/fundus_drive.txt &
python scripts/fundus_results.py --data "$DATA" --sets STARE,HRF \
    --json $OUT/fundus_stare_hrf.json > $OUT/fundus_stare_hrf.txt &
wait
cat $OUT/fundus_drive.txt $OUT/fundus_stare_hrf.txt
