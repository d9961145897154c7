"""The 3D directions: how well they follow a vessel, and how much they matter.

1. Straight tubes of known axis (radius 2, a 5-voxel gap faded by 0.8 at the centre,
   40^3 voxels), segmented by the shipped 3D U-Net. Directions from the shipped 3D
   refiner's head (on the U-Net's features) and from the Hessian of the U-Net's
   probability (sigma 3, the refine default). Printed: the median angle (degrees)
   between direction and axis in the tube's core (within 1 voxel of the axis, off the
   gap and the faces) and in the gap.
2. The same PDE with the directions swapped, on the held-out volumes: the shipped 3D
   refiner's lambdas, dt and 10 steps, with its own directions, with Hessian
   directions, and with none (zero vectors: isotropic diffusion at lambda_perp).

    python scripts/synth3d_directions.py [N]     # N held-out volumes, default 20
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from napari_tubediff import diffuse
from napari_tubediff.core.metrics import evaluate
from napari_tubediff.evaluation import TABLE_METRICS
from napari_tubediff.models.backbones import UNet3DBackbone
from napari_tubediff.models.refiner import LearnedRefiner, vessel_directions
from napari_tubediff.training.synthetic3d import TEST_SEED, faded_image, held_out_volumes, straight_tube

AXES = [(0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1), (1, 2, 2), (2, -1, 2),
        (3, 1, -2), (-1, 3, 1)]


def angles(v: np.ndarray, axis: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Angles in degrees between the (sign-free) directions in ``mask`` and ``axis``."""
    cos = np.abs(np.tensordot(axis, v[:, mask], 1))
    return np.degrees(np.arccos(np.clip(cos, 0, 1)))


def tubes(backbone, refiner) -> None:
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


def swapped_directions(backbone, refiner, n: int) -> None:
    c = refiner.config
    scores: dict[str, list[dict]] = {"learned": [], "Hessian": [], "none": []}
    for item in held_out_volumes(n):
        prob, feats = backbone.predict_with_features(item.image())
        v, lpar, lperp = refiner.head(feats)
        for name, d in (("learned", v), ("Hessian", vessel_directions(prob, None)[0]),
                        ("none", np.zeros_like(v))):
            u = diffuse(prob, d, lambda_par=lpar, lambda_perp=lperp, dt=c["dt"], steps=c["steps"],
                        order=c["order"])
            scores[name].append(evaluate(u >= 0.5, item.truth()))
    print(f"\n{n} held-out volumes (seeds {TEST_SEED}..{TEST_SEED + n - 1}); lambda_par {lpar:.3f}, "
          f"lambda_perp {lperp:.3f}, dt {c['dt']}, {c['steps']} steps; directions:")
    print(f"{'directions':>12s} " + " ".join(f"{m:>13s}" for m in TABLE_METRICS))
    for name, rows in scores.items():
        print(f"{name:>12s} " + " ".join(f"{np.mean([r[m] for r in rows]):13.4f}" for m in TABLE_METRICS))


def main() -> None:
    torch.set_num_threads(1)
    backbone = UNet3DBackbone(device="cpu")
    refiner = LearnedRefiner.shipped(3, device="cpu")
    tubes(backbone, refiner)
    swapped_directions(backbone, refiner, int(sys.argv[1]) if len(sys.argv) > 1 else 20)


if __name__ == "__main__":
    main()
