"""The choice of the default 3D refinement (docs/results.md, "Real volumes"), made on synthetic
microscopy volumes only, never on the real volumes it is then scored on.

Every candidate starts from the default 3D backbone's probability (`VolumeBackbone`, region3d)
of `training.synthetic3d.microscopy_volume` (seeds 5000..5007, spacing (3, 1, 1): branching
tubes of radius 1.5 to 8 voxels, z-elongated blur, attenuation with depth, Poisson noise):

* none: the backbone alone, ``>= 0.5``;
* DTI (0.5 / 0.3) of the probability;
* ``refine`` with Hessian directions and each method of `core.refine.REFINE_METHODS` but the
  faithful PDE (the gated ones at 5, 10 and 30 steps), ``>= 0.5``.

Scored by `core.metrics.evaluate` on the whole volume. The rule: the lowest mean Betti-0
error (the issue's topology goal), then the highest mean Dice; a candidate whose Dice is more
than 0.01 below the best Dice is not eligible (a refinement must not cost accuracy).

    OMP_NUM_THREADS=1 python scripts/volume_refine_choice.py | tee docs/results/volume_refine_choice.txt
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SEEDS = range(5000, 5008)
METRICS = ("dice", "cldice", "betti0_error", "betti1_error")
CANDIDATES = (("none", None, 0), ("DTI (0.5 / 0.3)", "dti", 0), ("hysteresis", "hysteresis", 1),
              ("gated+dti", "gated+dti", 5), ("gated+dti", "gated+dti", 10), ("gated+dti", "gated+dti", 30),
              ("gated", "gated", 10), ("gated+hysteresis", "gated+hysteresis", 10))
DICE_SLACK = 0.01


def main(argv=None) -> int:
    import torch

    from napari_tubediff.core.dti import dti
    from napari_tubediff.core.metrics import evaluate
    from napari_tubediff.core.refine import VOLUME_REFINE, RefineSettings, refine
    from napari_tubediff.models.classical import VolumeBackbone
    from napari_tubediff.training.synthetic3d import microscopy_volume

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=len(SEEDS), help="how many volumes (from seed 5000)")
    args = ap.parse_args(argv)
    rows: dict[str, list[list[float]]] = {}
    t0 = time.perf_counter()
    for seed in range(SEEDS.start, SEEDS.start + args.seeds):
        img, truth, sp = microscopy_volume(seed)
        p = VolumeBackbone(spacing=sp).predict(img)
        for name, method, steps in CANDIDATES:
            if method is None:
                mask = p >= 0.5
            elif method == "dti":
                mask = dti(p)
            else:
                mask = refine(p, settings=RefineSettings(method=method, steps=steps), device="cpu") >= 0.5
            label = name if method in (None, "dti", "hysteresis") else f"{name}, {steps} steps"
            e = evaluate(mask, truth)
            rows.setdefault(label, []).append([e[k] for k in METRICS])
    n = args.seeds
    print(f"default 3D refinement: candidates on {n} synthetic microscopy volumes (seeds {SEEDS.start}.."
          f"{SEEDS.start + n - 1}, 24 x 72 x 72, spacing (3, 1, 1)), region3d's probability; means")
    print(f"  {'candidate':32s} {'Dice':>6s} {'clDice':>7s} {'Betti-0 err':>11s} {'Betti-1 err':>11s}")
    means = {k: np.mean(v, axis=0) for k, v in rows.items()}
    for k, m in means.items():
        print(f"  {k:32s} {m[0]:6.3f} {m[1]:7.3f} {m[2]:11.2f} {m[3]:11.2f}")
    best_dice = max(m[0] for m in means.values())
    eligible = [k for k, m in means.items() if m[0] >= best_dice - DICE_SLACK]
    chosen = min(eligible, key=lambda k: (means[k][2], -means[k][0]))
    shipped = ("none" if VOLUME_REFINE.steps == 0 else
               f"{VOLUME_REFINE.method}, {VOLUME_REFINE.steps} steps")
    print(f"  eligible (Dice within {DICE_SLACK} of the best, {best_dice:.3f}): {', '.join(eligible)}")
    verdict = "  = the choice" if shipped == chosen else "  (DIFFERS)"
    print(f"  chosen (lowest Betti-0 error, then highest Dice): {chosen}; shipped default "
          f"(core.refine.VOLUME_REFINE): {shipped}{verdict}")
    print(f"  ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
