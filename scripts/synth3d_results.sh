#!/usr/bin/env bash
# Regenerate the 3D figures of docs/results.md ("3D (synthetic volumes)"): the shipped 3D
# U-Net and refiner on 20 held-out synthetic volumes (seeds 5000..5019, never trained on),
# raw threshold, DTI, refinement with Hessian directions and with the learned 3D refiner;
# then the direction tables (straight tubes; the same PDE with the directions swapped).
# Usage: bash scripts/synth3d_results.sh      (JSON files in docs/results/)
# The shipped 3D weights themselves come from (docs/models.md, "The 3D models"):
#   tubediff train backbone --synthetic3d 24 --out unet_synth3d.pt --threads 1 --seed 0
#   tubediff train refiner  --synthetic3d 24 --out refiner_synth3d.pt --threads 1 --seed 0
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results
ev() { tubediff evaluate --synthetic3d 20 --backbone unet3d --refiner shipped --threads 1 "$@"; }
ev --methods raw,dti,hessian,refine --steps 10 --json $OUT/synth3d_unet3d_steps10.json
ev --methods hessian,refine --steps 30 --json $OUT/synth3d_unet3d_steps30.json
python scripts/synth3d_directions.py 20 | tee $OUT/synth3d_directions.txt
