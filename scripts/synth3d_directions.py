"""How well the 3D directions follow a vessel: straight tubes of known axis, learned vs Hessian.

Each tube (radius 2, a 5-voxel gap faded by 0.8 at its centre, 40^3 voxels) is segmented
by the shipped 3D U-Net; the directions come from the shipped 3D refiner's head (on the
U-Net's features) and from the Hessian of the U-Net's probability (sigma 3, the refine
default). Printed: the median angle (degrees) between direction and axis, in the tube's
core (within 1 voxel of the axis, outside the gap, away from the faces) and in the gap.

    python scripts/synth3d_directions.py        # docs/results.md, "3D (synthetic volumes)"
"""

from __future__ import annotations

import numpy as np
import torch

from napari_tubediff.models.backbones import UNet3DBackbone
from napari_tubediff.models.refiner import LearnedRefiner, vessel_directions
from napari_tubediff.training.synthetic3d import faded_image, straight_tube

AXES = [(0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1), (1, 2, 2), (2, -1, 2),
        (3, 1, -2), (-1, 3, 1)]


def angles(v: np.ndarray, axis: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Angles in degrees between the (sign-free) directions in ``mask`` and ``axis``."""
    cos = np.abs(np.tensordot(axis, v[:, mask], 1))
    return np.degrees(np.arccos(np.clip(cos, 0, 1)))


def main() -> None:
    torch.set_num_threads(1)
    backbone = UNet3DBackbone(device="cpu")
    refiner = LearnedRefiner.shipped(3, device="cpu")
    heads = ("learned core", "learned gap", "Hessian core", "Hessian gap")
    print(f"{'axis':>12s} " + " ".join(f"{h:>13s}" for h in heads))
    rows = []
    for axis in AXES:
        t = straight_tube(axis, gap=5)
        prob, feats = backbone.predict_with_features(faded_image(t.volume))
        core = (t.dist <= 1) & (np.abs(t.along) > 5) & (np.abs(t.along) < 12)
        gap = (t.dist <= 2) & (np.abs(t.along) <= 3.5)
        learned, source = vessel_directions(prob, feats, refiner=refiner)
        assert source == "learned"
        hessian, _ = vessel_directions(prob, None)
        row = [np.median(angles(v, t.axis, m)) for v in (learned, hessian) for m in (core, gap)]
        rows.append(row)
        print(f"{str(axis):>12s} " + " ".join(f"{x:13.1f}" for x in row))
    print(f"{'median':>12s} " + " ".join(f"{x:13.1f}" for x in np.median(rows, 0)))


if __name__ == "__main__":
    main()
