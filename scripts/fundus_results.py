"""Held-out figures of the shipped 2D pipeline on three fundus cameras (docs/results.md).

Every image at its native resolution (and DRIVE test resampled by 0.5 and 2: images,
labels and FOV masks), segmented as ``tubediff segment IMAGE`` does with its defaults
(`segment_image`: scale and field of view found automatically), then scored by the
evaluation's own functions (`evaluation.make_methods`, `evaluation.evaluate_dataset`):
Dice / clDice inside the data set's FOV mask (STARE has none: the automatic one), VCA on
the whole image, for raw (u >= 0.5), DTI and the learned refiner (10 steps, at the working
scale); a human row where a 2nd observer exists. HRF's segment + refine time per image is
measured too.

    python scripts/fundus_results.py --data data --json docs/results/fundus.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from napari_tubediff.core.scale import to_working, to_working_mask
from napari_tubediff.data.fundus_sets import fundus_items
from napari_tubediff.evaluation import evaluate_dataset, format_table, make_methods
from napari_tubediff.models.backbones import UNetBackbone, segment_image
from napari_tubediff.models.refiner import LearnedRefiner


@dataclass
class Resampled:
    """A held-out item resampled by ``k``: image (anti-aliased), labels and FOV (area > 1/2)."""

    item: object
    k: float

    @property
    def name(self):
        return self.item.name

    def image(self):
        return np.clip(to_working(self.item.image(), self.k) + 0.5, 0, 255).astype(np.uint8)

    def truth(self):
        return to_working_mask(self.item.truth(), self.k)

    def truth2(self):
        return None

    def fov(self):
        return to_working_mask(self.item.fov(), self.k)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding DRIVE/, STARE/ and HRF/")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--sets", default="DRIVE,STARE,HRF,DRIVE@0.5,DRIVE@2")
    ap.add_argument("--limit", type=int, default=0, help="first N images of each set (a quick look)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", default="heldout", choices=["heldout", "train"],
                    help="train: a look at training images (for choices; the held-out ones never are)")
    ap.add_argument("--methods", default="raw,dti,refine")
    ap.add_argument("--unet", help="U-Net weights (default: the shipped ones)")
    ap.add_argument("--refiner", help="refiner weights (default: the shipped ones)")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    backbone = UNetBackbone(a.unet, device="cpu")
    refiner = LearnedRefiner(a.refiner, device="cpu")
    methods = make_methods(a.methods.split(","), steps=a.steps, refiner=refiner)
    labels = {"raw": "raw (u >= 0.5)", "dti": "DTI (0.5 / 0.3)", "refine": f"refine ({a.steps} steps)",
              "human": "human (2nd vs 1st observer)"}
    out = {"weights": {"unet": backbone.weights.name, "refiner": refiner.weights.name},
           "working_fov": backbone.working_fov, "sets": {}}
    for spec in a.sets.split(","):
        ds, _, k = spec.partition("@")
        items = fundus_items(a.data, ds, a.split)
        if a.limit:
            items = items[: a.limit]
        if k:
            items = [Resampled(it, float(k)) for it in items]
        times: dict[str, list[float]] = {"read": [], "segment": [], "refine": []}
        factors: dict[str, float] = {}

        def predict(item, fov, times=times, factors=factors):
            # the scoring FOV is the data set's; the segmentation finds its own, as the CLI does
            t = time.perf_counter()
            img = item.image()
            times["read"].append(time.perf_counter() - t)
            t = time.perf_counter()
            seg = segment_image(backbone, img)
            times["segment"].append(time.perf_counter() - t)
            factors[item.name] = seg.factor
            return seg.prob, seg.features

        timed = dict(methods)

        def refine_timed(prob, feats, fov, times=times):
            t = time.perf_counter()
            m = methods["refine"](prob, feats, fov)
            times["refine"].append(time.perf_counter() - t)
            return m

        if "refine" in timed:
            timed["refine"] = refine_timed
        t0 = time.time()
        res = evaluate_dataset(items, predict, timed, use_fov=True,
                               progress=lambda xs, spec=spec: _progress(xs, spec))
        shape = items[0].image().shape[:2]
        kind = "held-out" if a.split == "heldout" else "TRAINING"
        print(f"\n{spec}: {len(items)} {kind} images, {shape[1]} x {shape[0]}; scale found "
              f"{min(factors.values()):.3f} to {max(factors.values()):.3f}; Dice, clDice and Betti inside "
              "the FOV, VCA on the whole image")
        print(format_table(res, labels))
        per = {k2: float(np.mean(v)) for k2, v in times.items() if v}
        print("seconds per image: " + ", ".join(f"{k2} {v:.2f}" for k2, v in per.items())
              + f"; segment + refine {per['segment'] + per.get('refine', 0):.2f}; "
              f"wall {time.time() - t0:.0f} s")
        out["split"] = a.split
        out["sets"][spec] = {"n": len(items), "shape": list(shape), "scale": factors,
                             "seconds_per_image": per,
                             "results": {m: {"mean": r["mean"], "std": r["std"]} for m, r in res.items()}}
    print("\n" + markdown(out, labels))
    if a.json:
        from napari_tubediff.data.io import atomic_write_text

        out["torch_threads"] = a.threads
        atomic_write_text(a.json, json.dumps(out, indent=2))
        print(f"wrote {a.json}")
    return 0


def markdown(out: dict, labels: dict) -> str:
    """The figures as a markdown table (docs/results.md)."""
    lines = ["| set | method | Dice | clDice | VCA |", "|---|---|---|---|---|"]
    for spec, r in out["sets"].items():
        for m, v in r["results"].items():
            mu, sd = v["mean"], v["std"]
            cells = [f"{mu[k]:.4f} ± {sd[k]:.4f}" for k in ("dice", "cldice")]
            cells.append(f"{mu['vca']:.2f} ± {sd['vca']:.2f}")
            lines.append(f"| {spec} ({r['n']}) | {labels.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _progress(xs, spec):
    for i, x in enumerate(xs):
        print(f"  {spec} {i + 1}/{len(xs)} {x.name}", file=sys.stderr, flush=True)
        yield x


if __name__ == "__main__":
    sys.exit(main())
