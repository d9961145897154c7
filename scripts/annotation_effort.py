"""Annotation effort on DRIVE test: trace and remove actions until VCA <= 3 and clDice >= 0.85.

For each DRIVE test image the shipped backbone's probability (with DRIVE's FOV, as
`tubediff evaluate --fov` gives it) is turned into three start masks by the methods of
`napari_tubediff.evaluation.make_methods` at the current code: ``raw`` (u >= 0.5),
``dti`` and ``refine`` (the default refinement: 10 steps, the default refiner for the
backbone, as `tubediff evaluate` runs it). From each, `core.effort.simulate_annotator`
plays an annotator who follows the 1st observer with the trace and remove tools only,
and counts the actions (clDice inside the FOV, VCA on the whole image, as
docs/results.md). Rerun it as is after the backbone or the refinement changes.

    python scripts/annotation_effort.py [DRIVE_DIR] [--cap 200] [--limit N] [--json OUT]

Prints one line per image and method, then a table: actions per image (median, mean,
max) and how many images reached the goal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_tubediff.core.effort import simulate_annotator
from napari_tubediff.core.refine import RECOMMENDED_METHOD
from napari_tubediff.data.drive import read_drive
from napari_tubediff.data.io import atomic_write_text
from napari_tubediff.evaluation import make_methods
from napari_tubediff.models import get_backbone
from napari_tubediff.models.backbones import segment_image
from napari_tubediff.models.refiner import refiner_for

LABELS = {"raw": "raw backbone (u >= 0.5)", "dti": "DTI (0.5 / 0.3)",
          "refine": "learned refiner (10 steps)",
          RECOMMENDED_METHOD: f"default refinement ({RECOMMENDED_METHOD}, 10 steps)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default="data/DRIVE", help="DRIVE folder")
    ap.add_argument("--backbone", default="unet")
    ap.add_argument("--methods", default="raw,dti," + RECOMMENDED_METHOD)
    ap.add_argument("--cap", type=int, default=200, help="the most actions per image")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--json", help="write per-image figures here (a new file)")
    args = ap.parse_args()
    if args.json and Path(args.json).exists():
        print(f"--json: {args.json} exists; give a new file", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    items = read_drive(args.data, "test")[: args.limit]
    names = args.methods.split(",")
    backbone = get_backbone(args.backbone)
    refiner = refiner_for("auto", args.backbone) if "refine" in names else None
    methods = make_methods(names, steps=10, refiner=refiner)
    print(f"{len(items)} DRIVE test images; backbone {args.backbone}; refiner "
          f"{refiner.weights.name if refiner else 'Hessian directions'}; goal VCA <= 3 and clDice >= 0.85; "
          f"cap {args.cap} actions", flush=True)
    per: dict[str, dict] = {m: {} for m in names}
    for item in items:
        truth, fov = item.truth(), item.fov()
        seg = segment_image(backbone, item.image(), fov=fov)  # as tubediff segment does
        prob, feats = seg.prob, seg.features
        for m, fn in methods.items():
            t0 = time.perf_counter()
            r = simulate_annotator(fn(prob, feats, fov), truth, prob, fov, max_actions=args.cap)
            kinds = {k: sum(a.kind == k for a in r.history) for k in ("join", "extend", "remove")}
            # joins and removes come first while VCA is short: the actions the connectivity goal alone took
            vcas = [r.start_vca] + [a.vca for a in r.history]
            to_vca = next((n for n, x in enumerate(vcas) if x <= 3.0), None)
            per[m][item.name] = {"actions": r.actions, "stopped": r.stopped, "start_vca": r.start_vca,
                                 "start_cldice": r.start_cldice, "vca": r.vca, "cldice": r.cldice,
                                 "to_vca": to_vca, **kinds}
            print(f"{item.name} {m:7s} actions {r.actions:3d} ({r.stopped}; join {kinds['join']}, extend "
                  f"{kinds['extend']}, remove {kinds['remove']}; VCA <= 3 after {to_vca}) "
                  f"VCA {r.start_vca:.2f} -> {r.vca:.2f}, "
                  f"clDice {r.start_cldice:.4f} -> {r.cldice:.4f} [{time.perf_counter() - t0:.0f} s]",
                  flush=True)
    print()
    print("| start mask | actions: median | mean | max | reached the goal | actions to VCA <= 3: median "
          "| mean | start VCA | start clDice | end clDice |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in names:
        rows = list(per[m].values())
        a = np.array([r["actions"] for r in rows])
        reached = sum(r["stopped"] == "goal" for r in rows)
        # never reached within the cap: counted as the cap (a lower bound)
        tv = np.array([args.cap if r["to_vca"] is None else r["to_vca"] for r in rows])
        print(f"| {LABELS.get(m, m)} | {np.median(a):g} | {a.mean():.1f} | {a.max()} "
              f"| {reached} / {len(rows)} | {np.median(tv):g} | {tv.mean():.1f} "
              f"| {np.mean([r['start_vca'] for r in rows]):.2f} | "
              f"{np.mean([r['start_cldice'] for r in rows]):.4f} | "
              f"{np.mean([r['cldice'] for r in rows]):.4f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(per, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as e:  # a wrong folder or a bad image: one line, exit 2
        print(f"annotation_effort: {e}", file=sys.stderr)
        sys.exit(2)
