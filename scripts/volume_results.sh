#!/usr/bin/env bash
# Regenerate docs/results.md, "Real volumes": the 3D pipeline and the classical baselines on the
# two VesselExpress light-sheet volumes (docs/data.md says where to get them; put them under
# data/volumes/), and the choice of the 3D backbone's settings (synthetic volumes + leave-one-out).
# Usage: bash scripts/volume_results.sh [DATA_DIR]     (about 5 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/volumes}
OMP_NUM_THREADS=1 python scripts/volume_results.py --data "$DATA" --json docs/results/volumes.json \
    | tee docs/results/volumes.txt
