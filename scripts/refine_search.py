"""Search the default refinement's settings on a training split (issue 13), quickly.

    python scripts/refine_search.py --pred PRED_DIR --data data/DRIVE --split training --json out.json
    python scripts/refine_search.py --pred PRED_DIR --images ... --labels ... --fov auto --skip ...

For each image: the Hessian directions and one 30-step diffusion of the stored probability
(snapshots at 10 and 30 steps); every gate (``--centers``, width 0.05) applied to each snapshot
(the gate multiplies only the increment, so one diffusion serves every gate); then each
completion (DTI at ``--lows``, its additions kept as ``line_width`` pixels about the centre
line, or as the band the vessel's own width gives, `core.refine.width_band`). Scored as
``refine_compare.py`` does (Dice and clDice inside the FOV, VCA on the whole image), without
the gap list. The figures for the chosen settings are then re-measured by ``refine_compare.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from refine_predict import add_item_args, items_of  # noqa: E402

from napari_tubediff.core.directions import estimate_directions  # noqa: E402
from napari_tubediff.core.dti import dti  # noqa: E402
from napari_tubediff.core.metrics import cldice, dice, vca  # noqa: E402
from napari_tubediff.core.refine import RefineSettings, complete_dti, gate, join_ends, refine_steps  # noqa: E402
from napari_tubediff.evaluation import read_prediction  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_item_args(ap)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--centers", default="0.2,0.3")
    ap.add_argument("--steps", default="0,10,30")
    ap.add_argument("--lows", default="0.3,0.35,0.4,0.45")
    ap.add_argument("--keeps", default="line1,line2,band1,band1.5",
                    help="how DTI's additions are kept: lineN (line_width N) or bandK (width band, factor K)")
    ap.add_argument("--ends", default="",
                    help="comma list of thresholds: each completion also with `join_ends` at that low")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    centers = [float(c) for c in args.centers.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    lows = [float(v) for v in args.lows.split(",")]
    keeps = args.keeps.split(",")
    ends = [float(v) for v in args.ends.split(",") if v]
    rows: dict[str, list] = {}
    items = items_of(args)[: args.limit]
    for k, it in enumerate(items):
        prob = read_prediction(args.pred, it)
        truth = it.truth()
        fov = it.fov()
        fov = np.ones(truth.shape, bool) if fov is None else fov

        def score(label, mask, truth=truth, fov=fov):
            mask = mask & fov
            rows.setdefault(label, []).append((dice(mask, truth, fov), cldice(mask, truth, fov),
                                               vca(mask, truth)))

        score("raw", prob >= 0.5)
        for low in lows:
            score(f"dti low={low}", dti(prob, 0.5, low))
        d = estimate_directions(prob, 3.0)
        top = max(steps)
        snaps = {0: prob}
        if top > 0:
            s = RefineSettings(method="faithful", steps=top)
            for r in refine_steps(prob, d, s, every=min(x for x in steps if x > 0)):
                if r.step in steps:
                    snaps[r.step] = r.state
        for k, c in itertools.product(steps, centers):
            if k == 0 and c != centers[0]:
                continue
            g = gate(prob, RefineSettings(method="gated", gate_center=c))
            shown = snaps[k] if k == 0 else prob + g * (snaps[k] - prob)
            score(f"gated c={c} steps={k}", shown >= 0.5)
            for low, keep in itertools.product(lows, keeps):
                kw = ({"line_width": int(keep[4:])} if keep.startswith("line")
                      else {"band": float(keep[4:])})
                f = complete_dti(shown, low=low, **kw)
                score(f"c={c} steps={k} low={low} {keep}", f >= 0.5)
                for le in ends:
                    joined = ndi.binary_dilation(join_ends(prob, f >= 0.5, d, low=le), np.ones((3, 3), bool))
                    score(f"c={c} steps={k} low={low} {keep} ends={le}", (f >= 0.5) | joined)
        print(it.name, flush=True)
        if args.json:  # after every image: a long run (HRF) can be stopped and still read
            done = [i.name for i in items[: k + 1]]
            Path(args.json).write_text(json.dumps({"images": done, "mean": summary(rows), "per_image": rows},
                                                  indent=0))
    for label, m in summary(rows).items():
        print(f"{label:45s} {m['dice']:.4f} {m['cldice']:.4f} {m['vca']:6.2f}")


def summary(rows: dict) -> dict:
    out = {}
    for label, rs in rows.items():
        m = np.mean(np.array(rs, float), axis=0)
        out[label] = {"dice": m[0], "cldice": m[1], "vca": m[2], "n": len(rs)}
    return out


if __name__ == "__main__":
    main()
