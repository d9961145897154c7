#!/usr/bin/env bash
# Regenerate every DRIVE test figure of docs/results.md (JSON files in docs/results/).
# Usage: bash scripts/drive_results.sh [DRIVE_DIR]     (default: data/DRIVE)
# The kernel-1 refiner is not shipped: train it first with
#   tubediff train refiner --data DRIVE_DIR --kernel 1 --out docs/results/refiner_k1.pt
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/DRIVE}
OUT=docs/results
ev() { tubediff evaluate --data "$DATA" --split test --fov "$@"; }
ev --backbone vesselness --steps 10 --json $OUT/drive_test_vesselness_fov_steps10.json
ev --backbone vesselness --methods refine --steps 100 --json $OUT/drive_test_vesselness_fov_steps100.json
ev --backbone unet --methods raw,dti,refine --steps 10 --json $OUT/drive_test_unet_fov_steps10.json
ev --backbone unet --methods refine --steps 100 --json $OUT/drive_test_unet_fov_steps100.json
ev --backbone unet --methods refine --steps 1000 --json $OUT/drive_test_unet_fov_steps1000.json
if [ -f $OUT/refiner_k1.pt ]; then
  ev --backbone unet --methods refine --refiner $OUT/refiner_k1.pt --steps 10 \
     --json $OUT/drive_test_unet_k1_fov_steps10.json
fi
