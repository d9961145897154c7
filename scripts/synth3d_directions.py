"""The 3D directions: how well they follow a vessel, and how much they matter.

1. Straight tubes of known axis (radius 2, a 5-voxel gap faded by 0.8 at the centre,
   40^3 voxels), segmented by the shipped 3D U-Net. Directions: the default 3D field
   (`vessel_directions` as the panels and the CLI call it: Hessian directions unless the
   user loaded or fine-tuned a 3D refiner), the shipped 3D refiner's head (on the U-Net's
   features) and the Hessian of the U-Net's probability (sigma 3, the refine default).
   Printed: the median angle (degrees) between direction and axis in the tube's core
   (within 1 voxel of the axis, off the gap and the faces) and in the gap.
3. Anisotropic voxels: the same tubes drawn on a 120 x 40 x 40 grid and sampled every
   third plane, i.e. 40^3 voxels of spacing (3, 1, 1) over the same physical extent. Angles
   in physical space, core and gap as in part 1 (physical distances). Directions from
   the Hessian (sigma 3) of the tube's own probability field and of the 3D U-Net's
   probability of the sampled image, with the spacing (physical unit vectors) and
   without it (voxel-index vectors, mapped to physical space by ``h * v`` to be fair).
2. The same PDE with the directions swapped, on the held-out volumes: the shipped 3D
   refiner's lambdas, dt and 10 steps, with its own directions, with Hessian
   directions, and with none (zero vectors: isotropic diffusion at lambda_perp).

    python scripts/synth3d_directions.py [N]     # N held-out volumes, default 20
    python scripts/synth3d_directions.py --tubes  # parts 1 and 3 only
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from napari_tubediff import diffuse
from napari_tubediff.core.directions import estimate_directions
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
    heads = ("default core", "default gap", "learned core", "learned gap", "Hessian core", "Hessian gap")
    print(f"{'axis':>12s} " + " ".join(f"{h:>13s}" for h in heads))
    rows = []
    for axis in AXES:
        t = straight_tube(axis, gap=5)
        prob, feats = backbone.predict_with_features(faded_image(t.volume))
        core = (t.dist <= 1) & (np.abs(t.along) > 5) & (np.abs(t.along) < 12)
        gap = (t.dist <= 2) & (np.abs(t.along) <= 3.5)
        default, source = vessel_directions(prob, feats)  # what the panels and the CLI use
        assert source == "hessian", "the default 3D direction field must be the Hessian's"
        learned, source = vessel_directions(prob, feats, refiner=refiner)
        assert source == "learned"
        hessian, _ = vessel_directions(prob, None)
        row = [np.median(angles(v, t.axis, m)) for v in (default, learned, hessian) for m in (core, gap)]
        rows.append(row)
        print(f"{str(axis):>12s} " + " ".join(f"{x:13.1f}" for x in row))
    print(f"{'median':>12s} " + " ".join(f"{x:13.1f}" for x in np.median(rows, 0)))


SPACING = (3.0, 1.0, 1.0)


def _physical(v: np.ndarray, spacing) -> np.ndarray:
    # voxel-index vectors as physical directions: the component along axis i times h_i
    p = v * np.asarray(spacing, np.float32)[:, None, None, None]
    n = np.linalg.norm(p, axis=0)
    return np.where(n > 0, p / np.where(n > 0, n, 1), 0)


def anisotropic_tubes(backbone) -> None:
    """Part 3: the tubes sampled with spacing (3, 1, 1); angles in physical space."""
    heads = ("prob sp core", "prob sp gap", "prob idx core", "prob idx gap", "U-Net sp core",
             "U-Net sp gap", "U-Net idx core", "U-Net idx gap")
    print(f"\nspacing {SPACING}: 120 x 40 x 40 grid sampled every 3rd plane; sp = with the spacing, "
          "idx = without (voxel-index vectors as h * v)")
    print(f"{'axis':>12s} " + " ".join(f"{h:>14s}" for h in heads))
    rows = []
    for axis in AXES:
        t = straight_tube(axis, shape=(120, 40, 40), gap=5)
        sub = (slice(None, None, 3), slice(None), slice(None))
        core = (t.dist[sub] <= 1) & (np.abs(t.along[sub]) > 5) & (np.abs(t.along[sub]) < 12)
        gap = (t.dist[sub] <= 2) & (np.abs(t.along[sub]) <= 3.5)
        own = t.volume.probability[sub]
        unet = backbone.predict(faded_image(t.volume)[sub])
        row = []
        for prob in (own, unet):
            with_sp = estimate_directions(prob, 3.0, spacing=SPACING)
            idx = _physical(estimate_directions(prob, 3.0), SPACING)
            row += [np.median(angles(v, t.axis, m)) for v in (with_sp, idx) for m in (core, gap)]
        rows.append(row)
        print(f"{str(axis):>12s} " + " ".join(f"{x:14.1f}" for x in row))
    print(f"{'median':>12s} " + " ".join(f"{x:14.1f}" for x in np.median(rows, 0)))


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
    anisotropic_tubes(backbone)
    if "--tubes" not in sys.argv:
        swapped_directions(backbone, refiner, int(sys.argv[1]) if len(sys.argv) > 1 else 20)


if __name__ == "__main__":
    main()
