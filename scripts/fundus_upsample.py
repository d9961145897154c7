"""How the fundus U-Net's probability goes back to native size, and flip TTA, on TRAINING images only.

The U-Net runs once per training image at its working scale (`segment_image`'s defaults:
FOV and scale found automatically); its logits, plain and averaged over the image and its
three flips (``fundus_tta.FlipTTA``), are cached in ``--cache`` (one .npz per image, so a
stopped run resumes). Each way back to native size is then scored without running the
U-Net again, Dice at 0.5 inside each item's FOV (as `training.fundus.bias_dice` and the
evaluation score it):

- ``prob/1``: the probability resized linearly (`models.backbones.at_native` until now)
- ``prob/3``: the probability resized by cubic splines (clipped to [0, 1])
- ``logit/1``: the logit resized linearly, then the sigmoid
- ``logit/3``: the logit resized by cubic splines, then the sigmoid

Logit variants are also scored at logit biases -0.3 to +0.5 (a bias commutes with a linear
resize, so these cost nothing): whether the shipped calibration (+0.4 folded in) is still
the best on training.

Rules, fixed before any figure was seen (docs/models.md):
- resize: the variant with the best mean Dice over all training images (DRIVE 20, STARE 16,
  HRF 30) replaces ``prob/1`` if it gains >= 0.0005 on that mean and no data set's training
  mean falls by more than 0.001; otherwise ``prob/1`` stays.
- flip TTA: adopted only if its gain over the plain U-Net (both with the chosen resize) on
  the same >= 30 training images is >= 0.0015 mean Dice, and HRF's whole pipeline stays
  <= 30 s per image on the 2-core machine.

    python scripts/fundus_upsample.py --data data --cache /tmp/fundus_cache --workers 2
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

DATASETS = ("DRIVE", "STARE", "HRF")
VARIANTS = ("prob/1", "prob/3", "logit/1", "logit/3")
BIASES = tuple(round(0.1 * k, 1) for k in range(-3, 6))
EPS = 1e-6  # logits of probabilities clipped to [EPS, 1 - EPS]: +-13.8, finite outside the FOV


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def cache_one(root: str, ds: str, name: str, cache: str, weights: str | None, threads: int) -> str:
    """Run the U-Net (plain and flip TTA) on one training image; save logits, factor, masks."""
    import torch
    from fundus_tta import FlipTTA, Timed

    from napari_tubediff.data.fundus_sets import fundus_items
    from napari_tubediff.models.backbones import UNetBackbone, segment_image

    out = Path(cache) / f"{ds}_{name}.npz"
    if out.exists():
        return str(out)
    torch.set_num_threads(threads)
    it = next(i for i in fundus_items(root, ds, "train") if i.name == name)
    img, truth, fov = it.image(), it.truth(), it.fov()
    bb = UNetBackbone(weights, device="cpu")
    plain, tta = Timed(bb), FlipTTA(bb)
    keep = {}

    class Grab:  # records the working-scale probability segment_image hands on
        def __init__(self, inner, key):
            self.inner, self.key = inner, key
            self.working_fov, self.ref_sigma = inner.working_fov, inner.ref_sigma

        def predict_with_features(self, x, m=None):
            p, f = self.inner.predict_with_features(x, m)
            keep[self.key] = p
            return p, f

    seg = segment_image(Grab(plain, "plain"), img)
    segment_image(Grab(tta, "tta"), img)
    np.savez_compressed(out.with_suffix(".tmp.npz"), plain=_logit(keep["plain"]), tta=_logit(keep["tta"]),
                        factor=seg.factor, seg_fov=seg.fov, truth=np.asarray(truth, bool),
                        fov=np.asarray(fov, bool), s_plain=plain.seconds, s_tta=tta.seconds)
    out.with_suffix(".tmp.npz").rename(out)
    return str(out)


def back(z: np.ndarray, shape, factor: float, variant: str, bias: float = 0.0) -> np.ndarray:
    """Working-scale logits ``z`` back at ``shape`` by ``variant``; returns the logit there."""
    from napari_tubediff.core.scale import from_working

    space, order = variant.split("/")
    if factor == 1.0:
        return z + bias
    if space == "logit":
        return from_working(z, shape, order=int(order)) + bias
    p = 1 / (1 + np.exp(-(z.astype(np.float64) + bias)))
    q = np.clip(from_working(p.astype(np.float32), shape, order=int(order)), 0, 1)
    return _logit(q)


def score_one(path: str) -> dict:
    from napari_tubediff.core.metrics import dice

    d = np.load(path)
    truth, fov, seg_fov, factor = d["truth"], d["fov"], d["seg_fov"], float(d["factor"])
    res = {"factor": factor, "s_plain": float(d["s_plain"]), "s_tta": float(d["s_tta"])}
    for src in ("plain", "tta"):
        for v in VARIANTS:
            z = back(d[src], truth.shape, factor, v)
            z[~seg_fov] = -np.inf  # at_native: zero outside the FOV segment_image found
            if v.startswith("logit"):
                res[(src, v)] = [dice(z >= -b, truth, fov) for b in BIASES]
            else:
                res[(src, v)] = [dice(z >= 0, truth, fov)]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding DRIVE/, STARE/ and HRF/")
    ap.add_argument("--cache", required=True, help="folder for the cached working-scale logits")
    ap.add_argument("--unet", help="U-Net weights (default: the shipped ones)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N training images of each set")
    a = ap.parse_args(argv)

    from napari_tubediff.data.fundus_sets import fundus_items

    Path(a.cache).mkdir(parents=True, exist_ok=True)
    jobs = []
    for ds in DATASETS:
        items = fundus_items(a.data, ds, "train")
        jobs += [(ds, it.name) for it in (items[: a.limit] if a.limit else items)]
    t0 = time.time()
    with ProcessPoolExecutor(a.workers, mp_context=get_context("spawn")) as pool:
        futs = [pool.submit(cache_one, a.data, ds, n, a.cache, a.unet, a.threads) for ds, n in jobs]
        paths = []
        for (ds, n), f in zip(jobs, futs, strict=True):
            paths.append(f.result())
            print(f"cached {ds} {n} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        scores = list(pool.map(score_one, paths))
    by_ds = {ds: [s for (d, _), s in zip(jobs, scores, strict=True) if d == ds] for ds in DATASETS}
    n = len(scores)
    print(f"{n} TRAINING images (DRIVE {len(by_ds['DRIVE'])}, STARE {len(by_ds['STARE'])}, "
          f"HRF {len(by_ds['HRF'])}); Dice at 0.5 inside the FOV, native resolution, default pipeline")
    print(f"{'U-Net':6s} {'resize':8s} {'mean':>7s} " + " ".join(f"{ds:>7s}" for ds in DATASETS))
    for src in ("plain", "tta"):
        for v in VARIANTS:
            j = BIASES.index(0.0) if v.startswith("logit") else 0
            m = np.mean([s[(src, v)][j] for s in scores])
            per = [np.mean([s[(src, v)][j] for s in by_ds[ds]]) for ds in DATASETS]
            print(f"{src:6s} {v:8s} {m:.4f} " + " ".join(f"{x:.4f}" for x in per))
    print("\nlogit variants at an extra logit bias (on top of the +0.4 folded in): mean over all")
    print(f"{'U-Net':6s} {'resize':8s} " + " ".join(f"{b:+7.1f}" for b in BIASES))
    for src in ("plain", "tta"):
        for v in VARIANTS[2:]:
            print(f"{src:6s} {v:8s} " + " ".join(f"{np.mean([s[(src, v)][k] for s in scores]):7.4f}"
                                                  for k in range(len(BIASES))))
    for ds in DATASETS:
        sp = np.mean([s["s_plain"] for s in by_ds[ds]])
        st = np.mean([s["s_tta"] for s in by_ds[ds]])
        print(f"{ds}: U-Net {sp:.2f} s/image plain, {st:.2f} s flip TTA ({st / sp:.1f}x), "
              f"factor {np.mean([s['factor'] for s in by_ds[ds]]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
