"""Refinement at a reduced scale against refinement at native size (issue 13; the rule in
docs/results/refine/rscale_rule.txt).

    python scripts/refine_rscale.py --images data/HRF/images --labels data/HRF/labels_1st \
        --fov data/HRF/mask \
        --only 01_dr,01_g,01_h --pred docs/results/refine/pred_hrf_training --refs 594,800 --json out.json

Rows: raw, DTI (0.5 / 0.3), the default (gated+dti) at native size, and for each reference FOV
``R`` (pixels; factor ``f = R / fov_diameter``, only images with ``f < 2/3`` are touched):
``A1@R`` the default refined at ``f`` and brought back by cubic splines (`at_native`), ``A2@R``
the native probability plus the refinement's increase brought back (cubic) and the completion's
additions brought back as a mask raised to 0.5, ``B@R`` the default at native size with its pixel
parameters scaled by ``1 / f`` (Hessian sigma, line width, end growth length, look-back, and
min_piece by ``1 / f**2``). Scored as scripts/refine_compare.py does (Dice and clDice inside the
FOV, VCA on the whole image).

``--upsample F`` (issue 13's mid range, docs/results/refine/midres.txt): the PHOTOGRAPH is upsampled by
``F`` (skimage ``rescale``, cubic, back to uint8; truth and FOV by order 0), segmented as ``tubediff refine
--input image`` does (`segment_image` at scale "auto", its FOV the upsampled mask), and the row ``cli`` is
that command's refinement (`settings_for_fov` of the default for that FOV):

    python scripts/refine_rscale.py --data data/DRIVE --only 21_training,22_training --upsample 2 \
        --base raw,dti,cli --variants '' --refs '' --cache /tmp/midres
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from dataclasses import replace

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.transform import rescale

from napari_tubediff.core.diffusion import iter_diffusion
from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.dti import dti
from napari_tubediff.core.fov import fov_diameter
from napari_tubediff.core.metrics import evaluate
from napari_tubediff.core.refine import (
    RECOMMENDED_METHOD,
    RefineSettings,
    complete_dti,
    gate,
    join_ends,
    refine,
    settings_for_fov,
)
from napari_tubediff.core.scale import from_working, to_working, to_working_mask
from napari_tubediff.data.io import read_image, write_image
from napari_tubediff.evaluation import read_prediction
from napari_tubediff.models import get_backbone
from napari_tubediff.models.backbones import at_native, segment_image

try:
    from refine_predict import add_item_args, items_of
except ImportError:  # run from elsewhere
    from scripts.refine_predict import add_item_args, items_of

DEFAULT = RefineSettings(method=RECOMMENDED_METHOD)


def resampled(prob, fov, f, variant):
    """Candidates A1 / A2: the default refined at factor ``f``, back at native size."""
    p_s = to_working(prob, f)
    fov_s = to_working_mask(fov, f)
    r_s = np.where(fov_s, refine(p_s, settings=DEFAULT), 0).astype(np.float32)
    if variant == "A1":
        return at_native(r_s, prob.shape, f, fov)
    added = (r_s >= 0.5) & (p_s < 0.5)
    delta = np.where(added, 0, r_s - p_s).astype(np.float32)
    out = np.clip(prob + np.maximum(from_working(delta, prob.shape, order=3), 0), 0, 1)
    added_n = from_working(added.astype(np.float32), prob.shape, order=1) > 0.5
    return np.where(added_n & (out < 0.5), np.float32(0.5), out).astype(np.float32)


#: Candidate B and its parts (added after the first 6 training images, to see which part of B moves
#: Dice and clDice): which pixel parameters are scaled by 1 / f, and the line width when it is not;
#: L2 (added after B's parts): nothing scaled, line width 2 (on the images with f < 2/3 only)
B_PARTS = {"B": dict(sigma=True, ends=True, lw=None), "Bl1": dict(sigma=True, ends=True, lw=1),
           "Bl2": dict(sigma=True, ends=True, lw=2), "Bs": dict(sigma=True, ends=False, lw=1),
           "Be": dict(sigma=False, ends=True, lw=1), "L2": dict(sigma=False, ends=False, lw=2)}


def scaled_params(prob, f, sigma=True, ends=True, lw=None):
    """Candidate B: the default at native size, its pixel parameters scaled by 1 / f (``sigma``:
    the Hessian scale, ``ends``: the end growth's length, look-back and min_piece; ``lw`` None:
    the line width scaled too, else that line width)."""
    s = DEFAULT
    k = 1.0 / f
    v = estimate_directions(prob, s.sigma * (k if sigma else 1.0))
    g = gate(prob, s)
    kw = {**s.diffusion_kwargs(prob.ndim), "steps": s.steps}
    *_, (_, field) = iter_diffusion(prob, v, every=s.steps, device="cpu", **kw)
    shown = prob + g * (field - prob)
    lw = int(round(s.line_width * k)) if lw is None else lw
    done = complete_dti(shown, s.low, lw, s.band)
    e = k if ends else 1.0
    joined = join_ends(prob, done >= 0.5, v, low=s.end_low, max_length=int(round(20 * e)),
                       min_piece=int(round(10 * e * e)), back=int(round(5 * e)))
    if lw > 0:
        joined = ndi.binary_dilation(joined, structure=np.ones((3, 3), bool), iterations=lw)
    return np.where(joined & (done < 0.5), np.float32(0.5), done).astype(np.float32)


@functools.cache
def _unet():
    return get_backbone("unet")


def scaled_photo(it, f):
    """``(image, fov, truth)`` of item ``it`` photographed ``f`` times larger: the photograph by cubic
    splines (uint8 again, as a camera writes it), truth and FOV by order 0."""
    img = it.image()
    kw = dict(order=3, preserve_range=True, anti_aliasing=False, channel_axis=-1 if img.ndim == 3 else None)
    up = np.clip(np.rint(rescale(img.astype(np.float32), f, **kw)), 0, 255).astype(np.uint8)
    fov, truth = (rescale(np.asarray(m, np.uint8), f, order=0, preserve_range=True, anti_aliasing=False) > 0
                  for m in (it.fov(), it.truth()))
    return up, fov, truth


def upsampled(it, f, cache=None):
    """``(prob, fov, truth)`` of item ``it`` photographed ``f`` times larger: the photograph by cubic
    splines (uint8 again, as a camera writes it), truth and FOV by order 0; the probability as
    ``tubediff refine --input image`` makes it (`segment_image`, scale "auto", the upsampled FOV).
    ``cache``: a folder the probability is kept in (an interrupted run resumes)."""
    up, fov, truth = scaled_photo(it, f)
    path = None if cache is None else f"{cache}/{it.name}_x{f:g}_prob.tif"
    if path is not None and os.path.exists(path):
        return read_image(path).astype(np.float32), fov, truth
    prob = segment_image(_unet(), up, scale="auto", fov=fov).prob
    if path is not None:
        os.makedirs(cache, exist_ok=True)
        write_image(path, prob)
    return prob, fov, truth


def reference_field(m: str, prob, fov):
    """The rows every issue-13 comparison scores: "raw" (the backbone's probability), "dti"
    (0.5 / 0.3) and "cli" or "default" (the default refinement as `tubediff refine --input
    image` runs it for this FOV, `settings_for_fov`); None for any other row."""
    if m == "raw":
        return prob
    if m == "dti":
        return dti(prob)
    if m in ("cli", "default"):
        return refine(prob, settings=settings_for_fov(DEFAULT, fov))
    return None


#: Candidates for mid-size FOVs (docs/results/refine/midres_rule.txt): the settings for FOV diameter ``d``
#: (pixels); outside 891-2376 px they are `settings_for_fov`'s.
MID = (1.5 * 594, 4 * 594)
MIDRES = {"K1": lambda s, d: replace(s, line_width=2) if 2 * 594 < d <= MID[1] else s,
          "K2": lambda s, d: replace(s, sigma=s.sigma * d / 594) if MID[0] < d <= MID[1] else s,
          "K3": lambda s, d: replace(s, low=0.40) if MID[0] < d <= MID[1] else s,
          # added_rule.txt: DTI's additions kept about their own centre line, at every size
          "A35": lambda s, d: replace(s, around_added=True, low=0.35),
          "A30": lambda s, d: replace(s, around_added=True, low=0.30),
          "A30w2": lambda s, d: replace(s, around_added=True, low=0.30, line_width=max(s.line_width, 2)),
          # docs/results/refine/compact_rule.txt: the compact stencil; the faithful PDE with either stencil
          "C": lambda s, d: replace(s, stencil="compact"),
          "FW": lambda s, d: replace(s, method="faithful"),
          "FC": lambda s, d: replace(s, method="faithful", stencil="compact")}


def candidate_field(m: str, prob, fov, diam: float):
    """Row ``m`` that is not a `reference_field`: "native" (the default's settings at any size), a
    `MIDRES` entry, or ``VARIANT@R`` (A1 / A2 / B and its parts at reference FOV ``R``)."""
    if m == "native":
        return refine(prob, settings=DEFAULT)
    if m in MIDRES:
        return refine(prob, settings=MIDRES[m](settings_for_fov(DEFAULT, fov), diam))
    v, r = m.split("@")
    f = float(r) / diam
    if f >= 2 / 3:
        return refine(prob, settings=DEFAULT)
    if v in B_PARTS:
        return scaled_params(prob, f, **B_PARTS[v])
    return resampled(prob, fov, f, v)


def merge(paths) -> None:
    """The table of several runs' JSON files (split by images or by rows), over the images all rows have."""
    rows: dict[str, dict[str, dict]] = {}
    for path in paths:
        with open(path) as fh:
            for m, d in json.load(fh).items():
                rows.setdefault(m, {}).update(zip(d["images"], d["per_image"], strict=True))
    common = sorted(set.intersection(*(set(d) for d in rows.values())))
    print(f"{len(common)} images: {','.join(common)}")
    print(f"{'method':12s} {'Dice':>7s} {'clDice':>7s} {'VCA':>6s}")
    for m, d in rows.items():
        mean = {k: float(np.mean([d[n][k] for n in common])) for k in ("dice", "cldice", "vca")}
        print(f"{m:12s} {mean['dice']:7.4f} {mean['cldice']:7.4f} {mean['vca']:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only print the table of these runs' files")
    add_item_args(ap)
    ap.add_argument("--pred")
    ap.add_argument("--refs", default="594,800")
    ap.add_argument("--variants", default="A1,A2,B")
    ap.add_argument("--base", default="raw,dti,native", help="reference rows (comma list; '' none)")
    ap.add_argument("--extra", help="more VARIANT@R rows (comma list), e.g. Bs@594")
    ap.add_argument("--resample", type=float, default=1.0,
                    help="score at this factor of the native size (maps, truth and FOV resampled): "
                         "a camera of another resolution")
    ap.add_argument("--upsample", type=float,
                    help="upsample the PHOTOGRAPH by this factor and segment it (instead of --pred's maps)")
    ap.add_argument("--cache", help="with --upsample: a folder to keep the probability maps in")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge)
    torch.set_num_threads(1)
    items = items_of(args)
    refs = [float(r) for r in args.refs.split(",") if r]
    names = [m for m in args.base.split(",") if m]
    names += [f"{v}@{r:g}" for r in refs for v in args.variants.split(",") if v]
    names += args.extra.split(",") if args.extra else []
    per = {m: [] for m in names}
    for it in items:
        if args.upsample:
            prob, fov, truth = upsampled(it, args.upsample, args.cache)
        else:
            fov, truth = it.fov(), it.truth()
            prob = read_prediction(args.pred, it)
        if args.resample != 1:  # as if from a camera of another resolution: all three resampled
            prob = np.clip(to_working(prob, args.resample), 0, 1).astype(np.float32)
            fov, truth = to_working_mask(fov, args.resample), to_working_mask(truth, args.resample)
        diam = fov_diameter(fov)
        for m in names:
            t0 = time.perf_counter()
            field = reference_field(m, prob, fov)
            if field is None:
                field = candidate_field(m, prob, fov, diam)
            sec = time.perf_counter() - t0
            field = np.where(fov, field, 0) if field.dtype != bool else field & fov
            r = evaluate(field >= 0.5, truth, fov)
            r["seconds"] = sec
            per[m].append(r)
        print(it.name, f"fov {diam:.0f}", " ".join(f"{m}:{per[m][-1]['dice']:.4f}/{per[m][-1]['cldice']:.4f}/"
                                                   f"{per[m][-1]['vca']:.1f}" for m in names), flush=True)
    out = {}
    print(f"\n{'method':12s} {'Dice':>7s} {'clDice':>7s} {'VCA':>6s} {'s/img':>6s}")
    for m in names:
        mean = {k: float(np.mean([r[k] for r in per[m]])) for k in per[m][0]}
        out[m] = {"mean": mean, "per_image": per[m], "images": [it.name for it in items]}
        print(f"{m:12s} {mean['dice']:7.4f} {mean['cldice']:7.4f} {mean['vca']:6.2f} {mean['seconds']:6.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
