"""clDice's two halves (topology precision and sensitivity) of raw, DTI and the default refinement.

    python scripts/refine_cl_parts.py --pred PRED_DIR --images ... --labels ... --fov ... --only NAMES

Why a refinement misses DTI's clDice: whether DTI gains by covering more of the truth's centre
line (sensitivity: its sideways growth reaching the truth's centre line) or by a cleaner
centre line of its own (precision).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from refine_predict import add_item_args, items_of  # noqa: E402

from napari_tubediff.core.dti import dti  # noqa: E402
from napari_tubediff.core.metrics import skeleton  # noqa: E402
from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine  # noqa: E402
from napari_tubediff.evaluation import read_prediction  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_item_args(ap)
    ap.add_argument("--pred", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'image':12s} {'method':10s} {'tprec':>6s} {'tsens':>6s} {'clDice':>7s}")
    for it in items_of(args):
        prob = read_prediction(args.pred, it)
        truth = it.truth()
        fov = it.fov()
        fov = np.ones(truth.shape, bool) if fov is None else fov
        g = truth & fov
        sg = skeleton(g)
        default = refine(prob, settings=RefineSettings(method=RECOMMENDED_METHOD)) >= 0.5
        for name, mask in (("raw", prob >= 0.5), ("dti", dti(prob)), ("default", default)):
            p = mask & fov
            sp = skeleton(p)
            tprec, tsens = (sp & g).sum() / sp.sum(), (sg & p).sum() / sg.sum()
            cl = 2 * tprec * tsens / (tprec + tsens)
            print(f"{it.name:12s} {name:10s} {tprec:6.4f} {tsens:6.4f} {cl:7.4f}", flush=True)


if __name__ == "__main__":
    main()
