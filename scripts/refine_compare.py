"""Compare refinements and gap lists on a DRIVE-layout split, with any backbone.

    python scripts/refine_compare.py --data /path/DRIVE --split training [--backbone unet]
        [--pred DIR] [--methods raw,dti,faithful,hysteresis,...] [--json out.json]

Every method takes only the backbone's probability (no learned features), so the same
command re-measures them on a retrained backbone (``--backbone-weights``) or on stored
predictions (``--pred``, what ``tubediff segment`` writes). Figures: Dice, clDice and Betti
inside DRIVE's FOV, VCA on the whole image (as ``tubediff evaluate``), per-image refinement
time, and the gap list (`core.gaps.bridges`) scored by `evaluation.score_gaps`. A refinement
method is run with the settings for the image's FOV (`core.refine.settings_for_fov`, as ``tubediff
refine`` does); ``METHOD@native`` (e.g. ``gated+dti@native``) runs it with the settings as they are
(the figures before that function existed).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from napari_tubediff.core.dti import dti
from napari_tubediff.core.gaps import bridges
from napari_tubediff.core.metrics import evaluate
from napari_tubediff.core.refine import REFINE_METHODS, RefineSettings, refine, settings_for_fov
from napari_tubediff.data.drive import pair_folders, read_drive
from napari_tubediff.evaluation import gap_summary, read_prediction, score_gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="a DRIVE-layout folder (with --split)")
    ap.add_argument("--images", help="or a folder of images, paired by name with --labels (STARE, HRF)")
    ap.add_argument("--labels")
    ap.add_argument("--fov", help="with --images: a folder of FOV masks named like the images, or auto")
    ap.add_argument("--only", help="comma list of image names to keep (e.g. a held-out split)")
    ap.add_argument("--skip", help="comma list of image names to leave out (e.g. the held-out images)")
    ap.add_argument("--split", default="training")
    ap.add_argument("--backbone", default="unet")
    ap.add_argument("--backbone-weights")
    ap.add_argument("--pred", help="folder of stored probability maps instead of running the backbone")
    ap.add_argument("--methods", default="raw,dti," + ",".join(REFINE_METHODS))
    ap.add_argument("--steps", type=int, default=None, help="diffusion steps (default: the settings')")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="K=V,K=V",
                    help="extra runs of every refinement method with these RefineSettings fields")
    ap.add_argument("--no-gaps", action="store_true", help="skip the gap list (HRF: hours on a shared CPU)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.data:
        items = read_drive(args.data, args.split)
    else:
        items = pair_folders(args.images, args.labels, None, args.fov)
    if args.only:
        keep = set(args.only.split(","))
        items = [it for it in items if it.name in keep]
    if args.skip:
        drop = set(args.skip.split(","))
        items = [it for it in items if it.name not in drop]
    items = items[: args.limit]
    if args.pred is None:
        from napari_tubediff.models import get_backbone
        from napari_tubediff.models.backbones import segment_image
        opts = {"weights": args.backbone_weights} if args.backbone_weights else {}
        bb = get_backbone(args.backbone, **opts)
    over = {} if args.steps is None else {"steps": args.steps}
    runs = {}  # label -> (method, settings overrides)
    for m in args.methods.split(","):
        runs[m] = (m, over)
        if m not in ("raw", "dti"):
            for extra in args.set:
                kv = dict(x.split("=") for x in extra.split(","))
                kv = {k: (int(v) if k in ("steps", "line_width") else v if k == "method" else float(v))
                      for k, v in kv.items()}
                runs[f"{m}[{extra}]"] = (m, {**over, **kv})
    names = list(runs)
    per = {m: [] for m in names}
    gaps = {} if args.no_gaps else {m: [] for m in names if m not in ("raw",)}
    for it in items:
        fov, truth = it.fov(), it.truth()
        if args.pred:
            prob = read_prediction(args.pred, it)
        else:  # as tubediff segment does: FOV (given, or found) and the working scale
            seg = segment_image(bb, it.image(), fov="auto" if fov is None else fov)
            prob, fov = seg.prob, (np.ones(truth.shape, bool) if seg.fov is None else seg.fov)
        for m in names:
            t0 = time.perf_counter()
            method, kw = runs[m]
            if method == "raw":
                field = prob
            elif method == "dti":
                field = dti(prob)
            else:
                name, _, at = method.partition("@")
                settings = RefineSettings(**{"method": name, **kw})
                if at != "native":  # as tubediff refine: the settings for the photograph's FOV size
                    settings = settings_for_fov(settings, fov)
                field = refine(prob, settings=settings)
            sec = time.perf_counter() - t0
            field = np.where(fov, field, 0) if field.dtype != bool else field & fov
            mask = field >= 0.5
            r = evaluate(mask, truth, fov)
            r["seconds"] = sec
            per[m].append(r)
            if m in gaps:
                labels, gl = bridges(prob * fov, field.astype(np.float32))
                gaps[m].append(score_gaps(prob * fov, labels, gl, truth))
        print(it.name, " ".join(f"{m}:{per[m][-1]['dice']:.3f}/{per[m][-1]['cldice']:.3f}/"
                                f"{per[m][-1]['vca']:.1f}" for m in names), flush=True)
    out = {}
    print(f"\n{'method':30s} {'Dice':>7s} {'clDice':>7s} {'VCA':>6s} {'b0err':>6s} {'b1err':>6s} "
          f"{'s/img':>6s}"
          f" {'gaps':>5s} {'prec':>5s} {'top20':>5s} {'recall':>6s}")
    for m in names:
        mean = {k: float(np.mean([r[k] for r in per[m]])) for k in per[m][0]}
        gs = gap_summary(gaps[m]) if m in gaps else {}
        out[m] = {"mean": mean, "gaps": gs, "images": [it.name for it in items], "per_image": per[m]}
        g = (f"{gs['median_gaps']:5.1f} {gs['precision']:5.2f} {gs['precision_top20']:5.2f} "
             f"{gs['recall']:6.2f}"
             if gs else "")
        print(f"{m:30s} {mean['dice']:7.4f} {mean['cldice']:7.4f} {mean['vca']:6.2f} "
              f"{mean['betti0_error']:6.1f}"
              f" {mean['betti1_error']:6.1f} {mean['seconds']:6.2f} {g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
