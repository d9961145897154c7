"""A learned keep of DTI's additions against the default (issue 13; rule: docs/results/refine/keep_rule.txt).

    python scripts/refine_keep.py features --set drive --data data --pred-root /tmp/gaps --work /tmp/keep
    python scripts/refine_keep.py features --set stare --upsample 2 --data data --work /tmp/keep \
        --cache /tmp/midres/cache
    python scripts/refine_keep.py fit --work /tmp/keep     # leave-one-set-out models and the full one
    python scripts/refine_keep.py score --work /tmp/keep --taus 0.3,0.4,0.5 [--only-set drive]
    python scripts/refine_keep.py table --work /tmp/keep         # the checks of the rule

``features`` runs, per image, the default refinement as `tubediff refine` does (settings_for_fov of
gated+dti; its gated field is kept), scores raw, DTI (0.5 / 0.3) and the default (Dice and clDice inside
the FOV, VCA on the whole image, as refine_compare.py), and stores the candidates' features
(`keep_features` at low 0.3) with the truth there. ``fit`` fits the perceptron of
`keep_probability` leave one set out (DRIVE / STARE / HRF, each with its upsampled copies) and on
all sets. ``score`` applies each image's held-out model at every tau, then the default's end growth.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.feature import hessian_matrix, hessian_matrix_eigvals
from skimage.morphology import skeletonize

sys.path.insert(0, str(Path(__file__).parent))
from refine_predict import training_items  # noqa: E402

from napari_tubediff.core.directions import estimate_directions  # noqa: E402
from napari_tubediff.core.dti import dti  # noqa: E402
from napari_tubediff.core.fov import fov_diameter  # noqa: E402
from napari_tubediff.core.metrics import cldice, dice, vca  # noqa: E402
from napari_tubediff.core.refine import RefineSettings, join_ends, refine_steps, settings_for_fov  # noqa: E402
from napari_tubediff.evaluation import read_prediction  # noqa: E402

SETS = ("drive", "stare", "hrf")
HRF_FIT = [f"0{i}_{g}" for i in range(1, 6) for g in ("dr", "g", "h")]
HRF_SCORE = {f"0{i}_{g}" for i in range(1, 4) for g in ("dr", "g", "h")}
MID = {"drive": [f"{i}_training" for i in range(21, 29)],
       "stare": ["im0001", "im0002", "im0003", "im0004", "im0005", "im0044", "im0077", "im0081"]}
MID_SCORE = {("drive", 2.0), ("drive", 3.0), ("stare", 2.0)}
LOW = 0.3
SAMPLE = 20000
#: The features of `keep_features`, in column order.
KEEP_FEATURES = ("u0", "field", "line_distance", "seed_distance", "radius", "joins_two", "ridge", "log_size")


def keep_features(field, u0, low: float = 0.3, fov_diameter: float | None = None):
    """The candidates of a learned keep and their scale-free features.

    The candidates are DTI's additions (0.5 / ``low``) on ``field`` (the gated field): the
    pixels of DTI's mask below 0.5. With ``r`` the radius of the nearest seed vessel (the
    seed ``field >= 0.5``: its distance transform read at its centre line, at least 1 pixel)
    and ``s`` = ``fov_diameter`` / 594 (1 when None), each candidate's features
    (`KEEP_FEATURES`) are: the backbone's probability ``u0``; ``field``; its distance to the
    centre line of DTI's mask / r; its distance to the seed / r; r / s; 1 if its
    (8-connected) component of candidates touches two or more seed components; the Hessian
    ridge measure of ``u0`` (minus the smallest eigenvalue times sigma^2, sigma = 1.5 s, at
    least 0); log(1 + the component's size / r^2).

    Returns
    -------
    cand : ndarray of bool
        The candidates.
    X : ndarray, shape (n, 8)
        Their features, in the order of ``np.flatnonzero(cand)``.

    Examples
    --------
    >>> u = np.zeros((9, 20), np.float32); u[3:6, :8] = u[3:6, 12:] = 0.9
    >>> u[4, 8:12] = 0.35                          # a faint bridge between two vessels
    >>> cand, X = keep_features(u, u)
    >>> int(cand.sum()), X[:, 5].tolist()           # 4 pixels; their component joins two
    (4, [1.0, 1.0, 1.0, 1.0])
    """
    field = np.asarray(field, np.float32)
    u0 = np.asarray(u0, np.float32)
    s = 1.0 if fov_diameter is None else float(fov_diameter) / 594.0
    seed = field >= 0.5
    grown = dti(field, 0.5, low)
    cand = grown & ~seed
    if not cand.any():
        return cand, np.zeros((0, len(KEEP_FEATURES)), np.float32)
    eight = np.ones((3, 3), bool)
    radius = ndi.distance_transform_edt(seed)
    seed_line = skeletonize(seed)
    if seed_line.any():  # the radius of the nearest vessel, read at its centre line
        idx = ndi.distance_transform_edt(~seed_line, return_distances=False, return_indices=True)
        r = radius[tuple(idx)]
    else:
        r = np.ones(field.shape)
    r = np.maximum(r, 1.0)
    line = skeletonize(grown)
    d_line = ndi.distance_transform_edt(~line) if line.any() else np.full(field.shape, 1e3)
    d_seed = ndi.distance_transform_edt(~seed) if seed.any() else np.full(field.shape, 1e3)
    comp, n = ndi.label(cand, structure=eight)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    seed_lab, m = ndi.label(seed, structure=eight)
    big = m + 1
    hi = ndi.maximum_filter(seed_lab, size=3)
    lo = ndi.minimum_filter(np.where(seed_lab > 0, seed_lab, big), size=3)
    ids = np.arange(1, n + 1)
    comp_hi = np.asarray(ndi.maximum(hi, comp, ids)).reshape(-1)
    comp_lo = np.asarray(ndi.minimum(lo, comp, ids)).reshape(-1)
    joins = np.concatenate([[0.0], ((comp_lo < big) & (comp_hi > comp_lo)).astype(float)])
    sigma = 1.5 * s
    h = hessian_matrix(u0, sigma=sigma, order="rc", use_gaussian_derivatives=False)
    ridge = np.maximum(-hessian_matrix_eigvals(h)[-1], 0) * sigma ** 2
    k = np.flatnonzero(cand)
    rk, ck = r.ravel()[k], comp.ravel()[k]
    X = np.stack([u0.ravel()[k], field.ravel()[k], d_line.ravel()[k] / rk, d_seed.ravel()[k] / rk, rk / s,
                  joins[ck], ridge.ravel()[k], np.log1p(sizes[ck] / rk ** 2)], axis=1)
    return cand, X.astype(np.float32)


def keep_probability(X, model: dict) -> np.ndarray:
    """P(truth) of candidates with features ``X`` (rows as `keep_features` gives them).

    ``model``: ``mean`` and ``std`` of the features, ``w1`` (8 x H),
    ``b1``, ``w2`` (H), ``b2`` of a 2-layer perceptron, ``sigmoid(tanh(z W1 + b1) w2 + b2)``
    with ``z`` the standardised features.

    Examples
    --------
    >>> m = {"mean": [0] * 8, "std": [1] * 8, "w1": [[1.0]] + [[0.0]] * 7, "b1": [0.0], "w2": [2.0],
    ...      "b2": 0.0}
    >>> keep_probability(np.array([[0.0] * 8, [1.0] + [0.0] * 7]), m).round(3).tolist()
    [0.5, 0.821]
    """
    m = model
    X = np.asarray(X, np.float64)
    z = (X - np.asarray(m["mean"])) / np.asarray(m["std"])
    hidden = np.tanh(z @ np.asarray(m["w1"]) + np.asarray(m["b1"]))
    return 1.0 / (1.0 + np.exp(-(hidden @ np.asarray(m["w2"]) + float(m["b2"]))))


def scores(mask, truth, fov) -> dict:
    mask = mask & fov
    return {"dice": dice(mask, truth, fov), "cldice": cldice(mask, truth, fov), "vca": vca(mask, truth)}


def end_growth(done, prob, d, s: RefineSettings) -> np.ndarray:
    """The default's end growth after a completion (as core.refine._complete)."""
    joined = join_ends(prob, done >= 0.5, d, low=s.end_low)
    if s.line_width > 0:
        joined = ndi.binary_dilation(joined, structure=np.ones((3, 3), bool), iterations=int(s.line_width))
    return (done >= 0.5) | joined


def features(args) -> None:
    work = Path(args.work)
    (work / "feat").mkdir(parents=True, exist_ok=True)
    items = training_items(args.data, args.set)
    if args.upsample:
        from refine_rscale import upsampled
        items = [it for it in items if it.name in MID[args.set]]
    elif args.set == "hrf":
        items = [it for it in items if it.name in HRF_FIT]
    if args.only:
        items = [it for it in items if it.name in args.only.split(",")]
    for it in items:
        tag = f"{args.set}_{it.name}" + (f"_x{args.upsample:g}" if args.upsample else "")
        out = work / "feat" / f"{tag}.npz"
        if out.exists():
            continue
        if args.upsample:
            prob, fov, truth = upsampled(it, args.upsample, args.cache)
        else:
            prob = read_prediction(args.pred_root + f"/pred_{args.set}_training", it)
            truth, fov = it.truth(), it.fov()
        prob = np.asarray(prob, np.float32)
        fov = np.ones(truth.shape, bool) if fov is None else np.asarray(fov, bool)
        truth = np.asarray(truth, bool)
        s = settings_for_fov(RefineSettings(method="gated+dti"), fov)
        d = estimate_directions(prob, s.sigma)
        steps = list(refine_steps(prob, d, s, every=s.steps))
        shown, default = steps[-2].field, steps[-1].field
        fd = fov_diameter(fov)
        cand, X = keep_features(shown, prob, LOW, fd)
        k = np.flatnonzero(cand)
        rows = {"raw": scores(prob >= 0.5, truth, fov), "dti": scores(dti(prob, 0.5, 0.3), truth, fov),
                "default": scores(default >= 0.5, truth, fov)}
        score_it = (args.set, float(args.upsample or 1)) in MID_SCORE if args.upsample else (
            args.set != "hrf" or it.name in HRF_SCORE)
        if score_it:  # what scoring needs again: the gated field and the directions
            np.save(work / "feat" / f"{tag}_shown.npy", shown)
            np.save(work / "feat" / f"{tag}_d.npy", d)
        np.savez(out, X=X, idx=k, y=truth.ravel()[k], infov=fov.ravel()[k], fov_diameter=fd,
                 line_width=s.line_width, rows=json.dumps(rows), score=score_it)
        print(tag, f"fov {fd:.0f} cand {k.size}",
              " ".join(f"{m}:{r['dice']:.4f}/{r['cldice']:.4f}/{r['vca']:.2f}" for m, r in rows.items()),
              flush=True)


def group(tag: str) -> str:
    return tag.split("_")[0]


def fit_one(files, seed=0, hidden=16, iters=400) -> dict:
    rng = np.random.default_rng(seed)
    Xs, ys, ws = [], [], []
    for f in files:
        z = np.load(f)
        X, y = z["X"][z["infov"]], z["y"][z["infov"]]
        if len(y) == 0:
            continue
        if len(y) > SAMPLE:
            pick = rng.choice(len(y), SAMPLE, replace=False)
            X, y = X[pick], y[pick]
        Xs.append(X)
        ys.append(y)
        ws.append(np.full(len(y), 1.0 / len(y)))
    X = np.concatenate(Xs).astype(np.float64)
    y = np.concatenate(ys).astype(np.float32)
    w = np.concatenate(ws)
    w = (w / w.mean()).astype(np.float32)
    mean, std = X.mean(0), X.std(0) + 1e-6
    torch.manual_seed(seed)
    z = torch.tensor((X - mean) / std, dtype=torch.float32)
    yt, wt = torch.tensor(y), torch.tensor(w)
    nf = len(KEEP_FEATURES)
    net = torch.nn.Sequential(torch.nn.Linear(nf, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(iters):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(z)[:, 0], yt, weight=wt)
        loss.backward()
        opt.step()
    l1, l2 = net[0], net[2]
    return {"mean": mean.round(6).tolist(), "std": std.round(6).tolist(),
            "w1": l1.weight.detach().numpy().T.astype(float).round(6).tolist(),
            "b1": l1.bias.detach().numpy().astype(float).round(6).tolist(),
            "w2": l2.weight.detach().numpy()[0].astype(float).round(6).tolist(),
            "b2": round(float(l2.bias.detach()[0]), 6), "n": int(len(y)), "images": len(Xs),
            "loss": round(float(loss.detach()), 5), "base_rate": round(float(np.average(y, weights=w)), 4)}


def fit(args) -> None:
    torch.set_num_threads(1)
    work = Path(args.work)
    files = sorted((work / "feat").glob("*.npz"))
    models = {}
    for held in (*SETS, "all") if args.models == "models.json" else ("all",):
        use = [f for f in files if group(f.stem) != held]
        models[held] = fit_one(use, hidden=args.hidden, iters=args.iters)
        print(held, "fitted on", models[held]["images"], "images,", models[held]["n"], "pixels, loss",
              models[held]["loss"], "base rate", models[held]["base_rate"], flush=True)
    (work / args.models).write_text(json.dumps(models))


def score(args) -> None:
    work = Path(args.work)
    models = json.loads((work / "models.json").read_text())
    taus = [float(t) for t in args.taus.split(",")]
    res = {}
    tagm = "" if args.model == "held-out" else f"_{args.model}"
    out = work / f"scores{tagm}{'_' + args.only_set if args.only_set else ''}.json"
    for f in sorted((work / "feat").glob("*.npz")):
        z = np.load(f)
        if not bool(z["score"]) or (args.only_set and group(f.stem) != args.only_set):
            continue
        tag = f.stem
        it_set = group(tag)
        shown = np.load(work / "feat" / f"{tag}_shown.npy")
        d = np.load(work / "feat" / f"{tag}_d.npy")
        prob, truth, fov = load_maps(args, tag)
        s = settings_for_fov(RefineSettings(method="gated+dti"), fov)
        if args.model == "oracle":  # the truth itself: the best any keep of these candidates can do
            p = z["y"].astype(float)
        else:
            p = keep_probability(z["X"], models[it_set if args.model == "held-out" else args.model])
        seed = shown >= 0.5
        rows = json.loads(str(z["rows"]))
        for tau in taus:
            kept = np.zeros(shown.shape, bool)
            kept.ravel()[z["idx"]] = p >= tau
            lab, _ = ndi.label(seed | kept, structure=np.ones((3, 3), bool))
            kept &= np.isin(lab, np.unique(lab[seed]))
            done = np.where(kept, np.float32(0.5), shown)
            rows[f"learned{tagm} tau={tau}"] = scores(end_growth(done, prob, d, s), truth, fov)
        res[tag] = rows
        print(tag, " ".join(f"{m}:{r['dice']:.4f}/{r['cldice']:.4f}/{r['vca']:.2f}" for m, r in rows.items()),
              flush=True)
        out.write_text(json.dumps(res))


def load_maps(args, tag):
    """prob, truth, fov of a stored tag (set_name or set_name_xF)."""
    parts = tag.split("_")
    it_set = parts[0]
    up = float(parts[-1][1:]) if parts[-1].startswith("x") else None
    name = "_".join(parts[1:-1] if up else parts[1:])
    it = next(i for i in training_items(args.data, it_set) if i.name == name)
    if up:
        from refine_rscale import upsampled
        prob, fov, truth = upsampled(it, up, args.cache)
    else:
        prob = read_prediction(args.pred_root + f"/pred_{it_set}_training", it)
        truth, fov = it.truth(), it.fov()
    fov = np.ones(np.shape(truth), bool) if fov is None else np.asarray(fov, bool)
    return np.asarray(prob, np.float32), np.asarray(truth, bool), fov


def table(args) -> None:
    work = Path(args.work)
    res = {}
    for f in sorted(work.glob(args.scores)):
        for tag, rows in json.loads(f.read_text()).items():
            res.setdefault(tag, {}).update(rows)
    groups = {"DRIVE training (20)": lambda t: group(t) == "drive" and "_x" not in t,
              "STARE training (16)": lambda t: group(t) == "stare" and "_x" not in t,
              "HRF training 01-03 (9)": lambda t: group(t) == "hrf"}
    mids = {f"{s.upper()} x{f:g} (8)": (lambda t, s=s, f=f: group(t) == s and t.endswith(f"_x{f:g}"))
            for s, f in sorted(MID_SCORE)}
    methods = list(next(iter(res.values())))
    mean = {}
    for label, sel in {**groups, **mids}.items():
        tags = [t for t in res if sel(t)]
        mean[label] = {m: {k: float(np.mean([res[t][m][k] for t in tags])) for k in ("dice", "cldice", "vca")}
                       for m in methods}
        mean[label]["n"] = len(tags)
    print(f"{'set':24s} {'method':16s} {'n':>3s} {'Dice':>7s} {'clDice':>7s} {'VCA':>6s} | margins: "
          f"{'Dice':>7s} {'clDice':>7s} {'VCA':>6s}")
    for label, ms in mean.items():
        raw, d = ms["raw"], ms["dti"]
        for m in methods:
            r = ms[m]
            md, mc, mv = r["dice"] - (raw["dice"] - 0.005), r["cldice"] - d["cldice"], d["vca"] - r["vca"]
            print(f"{label:24s} {m:16s} {ms['n']:3d} {r['dice']:7.4f} {r['cldice']:7.4f} {r['vca']:6.2f} | "
                  f"{md:+8.4f} {mc:+8.4f} {mv:+6.2f}")
    print("\nthe 9 checks (DRIVE, STARE, HRF 01-03): met / sum of Dice+clDice shortfalls / Dice - default's")
    for m in methods:
        if m in ("raw", "dti"):
            continue
        met, short, ddrop = 0, 0.0, []
        for label in groups:
            ms = mean[label]
            r, raw, d = ms[m], ms["raw"], ms["dti"]
            for margin in (r["dice"] - (raw["dice"] - 0.005), r["cldice"] - d["cldice"]):
                met += margin >= 0
                short += max(0.0, -margin)
            met += r["vca"] <= d["vca"]
            ddrop.append(r["dice"] - ms["default"]["dice"])
        mid = []
        for label in mids:
            ms = mean[label]
            r, raw, d, de = ms[m], ms["raw"], ms["dti"], ms["default"]
            mid.append((r["dice"] - de["dice"], r["cldice"] - de["cldice"], r["vca"] <= d["vca"]))
        print(f"{m:16s} checks {met}/9 shortfalls {short:.4f} Dice vs default "
              + " ".join(f"{x:+.4f}" for x in ddrop)
              + " | mid-res margins vs default (Dice, clDice, VCA<=DTI) "
              + " ".join(f"({a:+.4f},{b:+.4f},{c})" for a, b, c in mid))
    if args.json:
        Path(args.json).write_text(json.dumps(mean, indent=1))


def auc(p, y) -> float:
    """The area under the ROC curve (the Mann-Whitney statistic, ties shared)."""
    from scipy.stats import rankdata
    r = rankdata(p)
    n1 = int(y.sum())
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def reliability(args) -> None:
    """How well each set's held-out model ranks (AUC) and is calibrated on that set's candidates
    (inside the FOV, every candidate), against the model fitted on all sets (not held out; with
    ``--models`` another fit's file: its all-sets model in both columns)."""
    work = Path(args.work)
    models = json.loads((work / args.models).read_text())
    models = {**{k: models["all"] for k in SETS}, **models}
    for grp in SETS:
        for kind in ("native", "copies"):
            P, PA, Y = [], [], []
            for f in sorted((work / "feat").glob(f"{grp}_*.npz")):
                if ("_x" in f.stem) != (kind == "copies"):
                    continue
                z = np.load(f)
                m = z["infov"]
                P.append(keep_probability(z["X"][m], models[grp]))
                PA.append(keep_probability(z["X"][m], models["all"]))
                Y.append(z["y"][m])
            if not P:
                continue
            p, pa, y = np.concatenate(P), np.concatenate(PA), np.concatenate(Y).astype(bool)
            bins = np.digitize(p, [0.2, 0.4, 0.6, 0.8])
            print(f"{grp:5s} {kind:6s} candidates {len(y):8d} truth rate {y.mean():.3f} | held-out model: "
                  f"mean P {p.mean():.3f} AUC {auc(p, y):.3f} | all-sets model: mean P {pa.mean():.3f} "
                  f"AUC {auc(pa, y):.3f}")
            print("   held-out P bins (share, mean P, truth rate):",
                  " ".join(f"[{np.mean(bins == b):.2f} {p[bins == b].mean():.2f} {y[bins == b].mean():.2f}]"
                           for b in range(5) if (bins == b).any()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=("features", "fit", "score", "table", "reliability"))
    ap.add_argument("--set", choices=SETS)
    ap.add_argument("--data", default="data")
    ap.add_argument("--pred-root", default="docs/results/refine", help="holds pred_{set}_training/")
    ap.add_argument("--upsample", type=float)
    ap.add_argument("--cache", default="/tmp/midres/cache", help="upsampled maps (refine_rscale)")
    ap.add_argument("--only")
    ap.add_argument("--only-set")
    ap.add_argument("--work", default="/tmp/keep")
    ap.add_argument("--taus", default="0.3,0.4,0.5")
    ap.add_argument("--model", default="held-out",
                    help="held-out (the rule); all (in-sample) or oracle (the truth): diagnoses")
    ap.add_argument("--models", default="models.json",
                    help="fit, reliability: the models' file in --work (other names: all-sets fit only)")
    ap.add_argument("--hidden", type=int, default=16, help="fit: hidden units")
    ap.add_argument("--iters", type=int, default=400, help="fit: Adam steps (full batch)")
    ap.add_argument("--scores", default="scores*.json", help="table: which score files (a glob in --work)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"features": features, "fit": fit, "score": score, "table": table,
     "reliability": reliability}[args.stage](args)


if __name__ == "__main__":
    main()
