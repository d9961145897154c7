"""A second, finer U-Net pass for photographs much larger than the working scale (issue 13; the rule in
docs/results/refine/msinf_rule.txt, the table in docs/results/refine/msinf.txt).

For each photograph: ``p1`` = `segment_image` at its automatic factor ``f`` (as ``tubediff segment`` does),
``F2`` = the mean of ``p1`` and `segment_image` at ``min(2 f, 1)`` (both at native size) when ``f <= 0.75``,
else ``p1``. Rows raw / DTI (0.5 / 0.3) / default (``settings_for_fov`` of gated+dti) for both, scored as
scripts/refine_compare.py (Dice and clDice inside the FOV, VCA on the whole image).

    python scripts/segment_multiscale.py --images data/HRF/images --labels data/HRF/labels_1st \
        --fov data/HRF/mask --only 04_dr,04_g --set H1 --json h1.json --cache /tmp/msinf
    python scripts/segment_multiscale.py --data data/DRIVE --only 21_training --set D2 --upsample 2 ...
    python scripts/segment_multiscale.py --merge h1.json d2.json     # the table of several runs

``--resample 0.5``: the PHOTOGRAPH resampled by `core.scale.to_working` (anti-aliased, back to uint8), truth
and FOV by `to_working_mask` (a camera of half the resolution). ``--upsample F``: refine_rscale.py's
`scaled_photo` (cubic, truth and FOV order 0).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from napari_tubediff.core.dti import dti
from napari_tubediff.core.fov import fov_diameter
from napari_tubediff.core.metrics import evaluate
from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine, settings_for_fov
from napari_tubediff.core.scale import to_working, to_working_mask
from napari_tubediff.data.io import read_image, write_image
from napari_tubediff.models import get_backbone
from napari_tubediff.models.backbones import segment_image

try:
    from refine_predict import add_item_args, items_of
    from refine_rscale import scaled_photo
except ImportError:  # run from elsewhere
    from scripts.refine_predict import add_item_args, items_of
    from scripts.refine_rscale import scaled_photo

DEFAULT = RefineSettings(method=RECOMMENDED_METHOD)
#: F2 applies when the automatic factor is at most this (the rule)
LIMIT = 0.75


def photo(it, resample=None, upsample=None):
    """``(image, fov, truth)`` of item ``it`` as the set sees it."""
    if upsample:
        return scaled_photo(it, upsample)
    img, fov, truth = it.image(), it.fov(), it.truth()
    if resample:
        img = np.clip(np.rint(to_working(img, resample)), 0, 255).astype(np.uint8)
        fov, truth = to_working_mask(fov, resample), to_working_mask(truth, resample)
    return img, fov, truth


def probs(bb, img, fov, key, cache=None):
    """``(p1, F2, f, seconds of the second pass)``; the maps kept in ``cache`` (a run resumes)."""
    paths = None if cache is None else [f"{cache}/{key}_{k}.tif" for k in ("p1", "p2")]
    if paths and all(os.path.exists(p) for p in paths):
        p1, p2 = (read_image(p).astype(np.float32) for p in paths)
        f = float(np.load(f"{cache}/{key}_f.npy"))
        sec = float("nan")
    else:
        s1 = segment_image(bb, img, fov=fov)
        f = s1.factor
        p1 = s1.prob
        t0 = time.perf_counter()
        p2 = segment_image(bb, img, fov=fov, scale=min(2 * f, 1.0)).prob if f <= LIMIT else p1
        sec = time.perf_counter() - t0
        if paths:
            os.makedirs(cache, exist_ok=True)
            for p, a in zip(paths, (p1, p2), strict=True):
                write_image(p, a)
            np.save(f"{cache}/{key}_f.npy", f)
    return p1, ((p1 + p2) / 2).astype(np.float32) if f <= LIMIT else p1, f, sec


def rows(prob, fov, truth) -> dict:
    out = {}
    for m in ("raw", "dti", "default"):
        if m == "raw":
            field = prob
        elif m == "dti":
            field = dti(prob)
        else:
            field = refine(prob, settings=settings_for_fov(DEFAULT, fov))
        field = np.where(fov, field, 0) if field.dtype != bool else field & fov
        r = evaluate(field >= 0.5, truth, fov)
        out[m] = {k: float(r[k]) for k in ("dice", "cldice", "vca")}
    return out


def table(runs: list[dict]) -> None:
    print(f"{'set':4s} {'n':>2s} {'map':3s} {'raw Dice/clDice/VCA':>21s} {'DTI Dice/clDice/VCA':>21s} "
          f"{'default Dice/clDice/VCA':>23s} | margin Dice  clDice   VCA")
    for run in runs:
        per = run["per_image"]
        for mp in ("p1", "F2"):
            mean = {m: {k: float(np.mean([p[mp][m][k] for p in per])) for k in ("dice", "cldice", "vca")}
                    for m in ("raw", "dti", "default")}
            cells = " ".join(f"{mean[m]['dice']:.4f}/{mean[m]['cldice']:.4f}/{mean[m]['vca']:5.2f}"
                             for m in ("raw", "dti", "default"))
            md = mean["default"]["dice"] - (mean["raw"]["dice"] - 0.005)
            mc = mean["default"]["cldice"] - mean["dti"]["cldice"]
            mv = mean["dti"]["vca"] - mean["default"]["vca"]
            print(f"{run['set']:4s} {len(per):2d} {mp:3s} {cells} | {md:+.4f} {mc:+.4f} {mv:+.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only print the table of these runs' files")
    add_item_args(ap)
    ap.add_argument("--set", default="set", help="the set's name in the table")
    ap.add_argument("--resample", type=float, help="resample the photograph by this factor (< 1)")
    ap.add_argument("--upsample", type=float, help="upsample the photograph by this factor")
    ap.add_argument("--cache", help="a folder to keep the probability maps in")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.merge:
        runs = []
        for path in args.merge:
            with open(path) as fh:
                runs.append(json.load(fh))
        return table(runs)
    torch.set_num_threads(1)
    bb = get_backbone("unet", device="cpu")
    run = {"set": args.set, "per_image": []}
    for it in items_of(args):
        img, fov, truth = photo(it, args.resample, args.upsample)
        p1, f2, f, sec = probs(bb, img, fov, f"{args.set}_{it.name}", args.cache)
        rec = {"name": it.name, "fov": float(fov_diameter(fov)), "factor": f, "second_s": sec,
               "p1": rows(p1, fov, truth), "F2": rows(f2, fov, truth)}
        run["per_image"].append(rec)
        print(args.set, it.name, f"fov {rec['fov']:.0f} f {f:.3f} 2nd {sec:.1f}s",
              " ".join(f"{mp}:" + "/".join(f"{rec[mp][m]['dice']:.4f},{rec[mp][m]['cldice']:.4f}"
                                           for m in ("raw", "dti", "default")) for mp in ("p1", "F2")),
              flush=True)
        if args.json:  # after every image: an interrupted run keeps what it scored
            with open(args.json, "w") as fh:
                json.dump(run, fh, indent=1)
    table([run])


if __name__ == "__main__":
    main()
