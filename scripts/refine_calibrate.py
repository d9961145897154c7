"""Fit the gap list's calibrated confidence (`core.gaps.CONFIDENCE_MODEL`) and show its reliability.

    python scripts/refine_calibrate.py --data data --pred PRED_ROOT [--json out.json]

On the training splits only (`refine_predict.TRAINING`: DRIVE training, STARE and HRF but
their held-out images): the default refinement (`RECOMMENDED_METHOD`, the settings' steps)
of the U-Net's probability (``PRED_ROOT/pred_{drive,stare,hrf}_training/``, written by
``refine_predict.py``), its bridges (`core.gaps.bridges`), each bridge's `FEATURES` and
whether it is correct (`evaluation.gap_correct`: in the truth, joining pieces the truth
joins). A logistic model (scipy's L-BFGS, a small L2 penalty on the standardised
features, the probability features' coefficients kept >= 0) of "correct" on the
features; printed: its coefficients (paste them into
`CONFIDENCE_MODEL`), the reliability table (predicted against observed precision per
confidence bin, pooled over the three sets), and each set's top-20 precision when ranked
by the mean probability and by the fitted confidence.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).parent))
from refine_predict import TRAINING, training_items  # noqa: E402

from napari_tubediff.core.gaps import FEATURES, bridges, confidence  # noqa: E402
from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine  # noqa: E402
from napari_tubediff.evaluation import gap_correct, read_prediction  # noqa: E402


def collect(root, pred_root, sets, settings, cache=None, most=None) -> list[dict]:
    rows = []
    for name in sets:
        for it in training_items(root, name)[: (most or {}).get(name)]:
            kept = Path(cache) / f"{name}_{it.name}.json" if cache else None
            if kept is not None and kept.exists():
                rows += json.loads(kept.read_text())
                continue
            prob = read_prediction(Path(pred_root) / f"pred_{name}_training", it)
            truth = it.truth()
            fov = it.fov()
            fov = np.ones(truth.shape, bool) if fov is None else fov
            p = prob * fov
            field = refine(prob, settings=settings) * fov
            labels, gaps = bridges(p, field.astype(np.float32))
            ok = gap_correct(p, labels, gaps, truth)
            mine = [{"set": name, "image": it.name, "features": list(g.features), "correct": bool(o)}
                    for g, o in zip(gaps, ok, strict=True)]
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_text(json.dumps(mine))
            rows += mine
            print(name, it.name, len(gaps), f"{np.mean(ok) if ok else float('nan'):.2f}", flush=True)
    return rows


def fit(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None, l2: float = 1e-2,
        nonnegative: tuple[int, ...] = (0, 1)) -> dict:
    """Weighted logistic regression of y on x; the model on the raw (unstandardised) features.

    The coefficients of the columns ``nonnegative`` (the backbone's mean and lowest probability
    along the bridge) are kept >= 0: more evidence never lowers the confidence. Unconstrained,
    the two (nearly collinear) columns took opposite signs and ranked a bridge through nothing
    above one through faint evidence.
    """
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    wt = np.ones(len(y)) if weight is None else weight / weight.mean()

    def loss(w):
        t = w[0] + z @ w[1:]
        nll = np.logaddexp(0, t) - y * t
        q = wt * (1 / (1 + np.exp(-t)) - y)
        grad = np.concatenate([[np.sum(q)], z.T @ q]) / len(y)
        grad[1:] += l2 * w[1:]
        return (wt * nll).mean() + 0.5 * l2 * w[1:] @ w[1:], grad

    bounds = [(None, None)] + [(0.0, None) if k in nonnegative else (None, None) for k in range(x.shape[1])]
    w = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds).x
    coef = w[1:] / sd
    return {"intercept": float(w[0] - coef @ mu), "coef": tuple(float(c) for c in coef)}


def top_precision(rows, key, top: int = 20) -> float:
    by_image = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    hits = n = 0
    for rs in by_image.values():
        rs = sorted(rs, key=key, reverse=True)[:top]
        hits += sum(r["correct"] for r in rs)
        n += len(rs)
    return hits / n if n else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data", help="the data folder (DRIVE, STARE, HRF in it)")
    ap.add_argument("--pred", required=True, help="folder of pred_{drive,stare,hrf}_training/")
    ap.add_argument("--sets", default=",".join(TRAINING))
    ap.add_argument("--cache", help="a folder for each image's rows: a rerun (e.g. another fit) skips them")
    ap.add_argument("--most", help="at most this many images of a set, in name order: e.g. hrf=12 "
                                   "(HRF 01 to 04 of each group; its images are 15 times DRIVE's)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = RefineSettings(method=RECOMMENDED_METHOD)
    most = {k: int(v) for k, v in (x.split("=") for x in args.most.split(","))} if args.most else None
    rows = collect(args.data, args.pred, args.sets.split(","), settings, args.cache, most)
    x = np.array([r["features"] for r in rows], float)
    y = np.array([r["correct"] for r in rows], float)
    # each set weighs the same: HRF's large images would otherwise give most of the bridges
    sets = np.array([r["set"] for r in rows])
    weight = 1.0 / np.array([np.sum(sets == t) for t in sets], float)
    model = fit(x, y, weight)
    conf = confidence(x, model)
    for r, c in zip(rows, conf, strict=True):
        r["confidence"] = float(c)
    print(f"\n{len(rows)} bridges, {y.mean():.3f} correct; the model ({', '.join(FEATURES)}):")
    print(f'CONFIDENCE_MODEL = {{"intercept": {model["intercept"]:.4f}, "coef": '
          f'({", ".join(f"{c:.4f}" for c in model["coef"])})}}')
    bins = np.linspace(0, 1, 11)
    print(f"\n{'confidence':>12s} {'bridges':>8s} {'predicted':>10s} {'observed':>9s}")
    table = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        m = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        if m.any():
            table.append({"bin": [float(lo), float(hi)], "n": int(m.sum()),
                          "predicted": float(conf[m].mean()), "observed": float(y[m].mean())})
            print(f"{lo:5.1f} - {hi:3.1f} {m.sum():8d} {conf[m].mean():10.3f} {y[m].mean():9.3f}")
    for name in dict.fromkeys(sets):
        on = sets == name
        cells = []
        for lo, hi in zip(bins[:-1], bins[1:], strict=True):
            m = on & (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
            if m.any():
                cells.append(f"{lo:.1f}-{hi:.1f}: {m.sum()} at {conf[m].mean():.2f}, "
                             f"observed {y[m].mean():.2f}")
        print(f"  {name}: " + "; ".join(cells))
    print(f"\n{'set':6s} {'bridges':>8s} {'precision':>9s} {'top-20, mean probability':>25s} "
          f"{'top-20, confidence':>19s}")
    per_set = {}
    for name in dict.fromkeys(r["set"] for r in rows):
        rs = [r for r in rows if r["set"] == name]
        per_set[name] = {"bridges": len(rs), "precision": float(np.mean([r["correct"] for r in rs])),
                         "top20_mean_probability": top_precision(rs, lambda r: r["features"][0]),
                         "top20_confidence": top_precision(rs, lambda r: r["confidence"])}
        s = per_set[name]
        print(f"{name:6s} {s['bridges']:8d} {s['precision']:9.3f} {s['top20_mean_probability']:25.3f} "
              f"{s['top20_confidence']:19.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model, "features": FEATURES, "reliability": table,
                                               "per_set": per_set}, indent=1))


if __name__ == "__main__":
    main()
