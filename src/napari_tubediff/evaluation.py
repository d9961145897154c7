"""Scoring a dataset: every image, every method, per-image figures, means and deviations.

Used by ``tubediff evaluate``. The metrics are `napari_tubediff.evaluate`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .core.dti import dti
from .core.gaps import bridges
from .core.metrics import evaluate, to_mask
from .core.refine import REFINE_METHODS, RefineSettings, refine, settings_for_fov
from .data.drive import DriveImage, index_folder
from .data.io import read_image, to_probability, write_image

__all__ = ["METHODS", "make_methods", "read_prediction", "evaluate_dataset", "format_table", "score_gaps",
           "gap_correct", "gap_summary"]

METHODS = ("raw", "dti", "refine", "hessian", *REFINE_METHODS)
TABLE_METRICS = ("dice", "cldice", "vca", "betti0_error", "betti1_error")


def _refined_mask(prob, fov, settings: RefineSettings) -> np.ndarray:
    # a 2D fundus image's FOV sets the refinement for its size, as in `tubediff refine`
    s = settings_for_fov(settings, fov) if np.ndim(prob) == 2 else settings
    return to_mask(refine(prob, settings=s)) & fov


def _by_method(prob, feats, fov, *, settings: RefineSettings) -> np.ndarray:
    return _refined_mask(prob, fov, settings)


def make_methods(names: Iterable[str], steps: int = 10, settings: RefineSettings | None = None,
                 refiner=None) -> dict[str, Callable]:
    """Mask-making functions by name, each ``fn(prob, feats, fov) -> bool mask``.

    ``raw``: ``prob >= 0.5``; ``dti``: dual-threshold iteration; ``refine``: ``steps``
    diffusion steps, with the learned ``refiner`` (a `LearnedRefiner`) when one is given
    and the backbone gave features, else with Hessian directions (``settings``);
    ``hessian``: ``steps`` diffusion steps with Hessian directions whatever the refiner
    (to compare both in one run); a name of `core.refine.REFINE_METHODS` (``faithful``,
    ``gated+dti``, ...): that method with Hessian directions and ``steps`` steps. The
    refined field is cut to the field of view before thresholding. 2D and 3D alike; a 2D
    image's field of view sets the Hessian refinements for its size
    (`core.refine.settings_for_fov`, as ``tubediff refine`` does).

    Examples
    --------
    >>> sorted(make_methods(["raw", "hessian"]))
    ['hessian', 'raw']
    """
    s = settings or RefineSettings()

    def hessian(prob, feats, fov):
        return _refined_mask(prob, fov, replace(s, steps=steps))

    def refined(prob, feats, fov):
        if refiner is not None and feats is not None:
            return to_mask(refiner.refine(prob, feats, steps=steps, fov=fov))
        return hessian(prob, feats, fov)

    table = {
        "raw": lambda prob, feats, fov: to_mask(prob),
        "dti": lambda prob, feats, fov: dti(prob),
        "refine": refined,
        "hessian": hessian,
    }
    for m in REFINE_METHODS:  # each refinement method by name, Hessian directions, ``steps`` steps
        table[m] = partial(_by_method, settings=replace(s, method=m, steps=steps))
    out = {}
    for n in names:
        if n not in table:
            raise ValueError(f"unknown method {n!r}; choose from {', '.join(METHODS)}")
        out[n] = table[n]
    return out


def read_prediction(folder, item: DriveImage, index: dict | None = None) -> np.ndarray:
    """The probability map for ``item`` from ``folder``, matched exactly by name.

    The file's name up to the first dot must be the image's (``01_test.png``), optionally
    with ``_prob`` (what ``tubediff segment`` writes: ``01_test_prob.tif``, preferred to
    its PNG twin). Nothing is matched by a prefix, so a ground-truth file in the folder
    (``01_manual1.gif``) is never taken for a prediction; two candidates are refused, and
    so is the item's own ground-truth file. Integers are read by `data.io.to_probability`.

    ``index``: `data.drive.index_folder` of ``folder`` (computed once by the caller).
    """
    folder = Path(folder)
    if index is None:
        index = index_folder(folder, "--pred", tags=True, prefer_tiff=True)
    path = index.get(item.name)
    if path is None:
        raise ValueError(f"--pred: no prediction for {item.name} in {folder} (expected {item.name}.png, "
                         f"{item.name}.tif or {item.name}_prob.tif)")
    for truth in (item.manual1_path, item.manual2_path):
        if truth is not None and Path(truth).resolve() == path.resolve():
            raise ValueError(f"--pred: {path.name} in {folder} is the ground truth itself: give the folder "
                             "of the predictions")
    return to_probability(read_image(path), path.name)


def evaluate_dataset(items: list[DriveImage], predict: Callable[[DriveImage], np.ndarray],
                     methods: dict[str, Callable[[np.ndarray], np.ndarray]], *, use_fov: bool = False,
                     human: bool = True, save_pred=None, progress=None, gaps: bool = False) -> dict:
    """Score every image with every method.

    Parameters
    ----------
    items : list of DriveImage
        Images with ground truth (1st observer).
    predict : callable
        ``predict(item, fov) -> (probability, features or None)``; ``fov`` is the
        item's field of view, read once here.
    methods : dict
        ``name -> fn(probability, features, fov) -> bool mask``, e.g. from `make_methods`.
    use_fov : bool
        Restrict Dice, clDice and the Betti errors to the field of view (VCA is
        always counted on the whole image, as the reference does, and ``vca_fov``
        is added).
    human : bool
        Add a ``human`` row: the 2nd observer scored against the 1st, where present.
    save_pred : path, optional
        Write every scored mask to ``save_pred/METHOD/IMAGE.png``.
    progress : callable, optional
        Wraps the image iterable (e.g. ``tqdm``).
    gaps : bool
        Also list the gaps each method bridged (`core.gaps.bridges` between the backbone's
        mask and the method's) and score them (`score_gaps`): per image under
        ``"gaps"``, pooled (`gap_summary`) under ``"gap_summary"``.

    Returns
    -------
    dict
        ``{method: {"mean": {...}, "std": {...}, "images": {name: {...}}}}``.
    """
    results: dict[str, dict] = {m: {"images": {}} for m in methods}
    if human:
        results["human"] = {"images": {}}
    it = progress(items) if progress else items
    for item in it:
        truth = item.truth()
        if truth is None:
            raise ValueError(f"{item.name} has no ground truth (1st_manual)")
        image_fov = item.fov()
        fov = image_fov if use_fov else None
        prob, feats = predict(item, image_fov)
        if prob.shape != truth.shape:
            raise ValueError(f"{item.name}: prediction {prob.shape} and truth {truth.shape} differ in shape")
        for name, fn in methods.items():
            mask = fn(prob, feats, image_fov)
            results[name]["images"][item.name] = evaluate(mask, truth, fov)
            if gaps and name != "raw":
                p0 = np.where(image_fov, prob, 0).astype(np.float32)
                labels, found = bridges(p0, mask.astype(np.float32))
                results[name].setdefault("gaps", {})[item.name] = score_gaps(p0, labels, found, truth)
            if save_pred is not None:
                write_image(Path(save_pred) / name / f"{item.name}.png", mask)
        if human:
            second = item.truth2()
            if second is not None:
                results["human"]["images"][item.name] = evaluate(second, truth, fov)
    if human and not results["human"]["images"]:
        del results["human"]
    for r in results.values():
        keys = next(iter(r["images"].values())).keys() if r["images"] else []
        r["mean"] = {k: float(np.mean([v[k] for v in r["images"].values()])) for k in keys}
        r["std"] = {k: float(np.std([v[k] for v in r["images"].values()])) for k in keys}
        if "gaps" in r:
            r["gap_summary"] = gap_summary(list(r["gaps"].values()))
    return results


def format_table(results: dict, labels: dict[str, str] | None = None) -> str:
    """A plain-text table of means ± standard deviations, one row per method."""
    labels = labels or {}
    head = f"{'method':34s} {'n':>3s} " + " ".join(f"{m:>17s}" for m in TABLE_METRICS)
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        cells = []
        for m in TABLE_METRICS:
            if m in r["mean"]:
                fmt = "{:.4f} ± {:.4f}" if m in ("dice", "cldice") else "{:.2f} ± {:.2f}"
                cells.append(f"{fmt.format(r['mean'][m], r['std'][m]):>17s}")
            else:
                cells.append(f"{'-':>17s}")
        lines.append(f"{labels.get(name, name):34s} {len(r['images']):3d} " + " ".join(cells))
    gap_rows = [(labels.get(n, n), r["gap_summary"]) for n, r in results.items() if "gap_summary" in r]
    if gap_rows:
        lines += ["", f"{'gap list':34s} {'median length':>13s} {'precision':>9s} {'top-20':>7s} "
                  f"{'recall':>7s}"]
        lines += [f"{n:34s} {g['median_gaps']:13.1f} {g['precision']:9.3f} {g['precision_top20']:7.3f} "
                  f"{g['recall']:7.3f}" for n, g in gap_rows]
    return "\n".join(lines)


def _breaks(mask: np.ndarray, truth_labels: np.ndarray, structure: np.ndarray, min_piece: int) -> int:
    """Joins the truth makes that ``mask`` lacks: per truth component, the number of
    ``mask`` components (of at least ``min_piece`` pixels) overlapping it, less one."""
    comp, n = ndi.label(mask, structure=structure)
    big = np.bincount(comp.ravel(), minlength=n + 1) >= min_piece
    big[0] = False
    both = big[comp] & (truth_labels > 0)
    pairs = np.unique(np.stack([truth_labels[both], comp[both]]), axis=1)
    return int(pairs.shape[1] - len(np.unique(pairs[0]))) if pairs.size else 0


def gap_correct(probability, labels, gaps, truth, threshold: float = 0.5) -> list[bool]:
    """Whether each gap of a list is correct, as `score_gaps` counts it (its rule there).

    Examples
    --------
    >>> p = np.zeros((5, 24), np.float32); p[2, :10] = p[2, 14:] = 0.9
    >>> truth = p > 0; truth[2, 10:14] = True
    >>> from napari_tubediff.core.gaps import Gap
    >>> labels = np.zeros((5, 24), np.int32); labels[2, 10:14] = 1; labels[0, 10:14] = 2
    >>> gaps = [Gap(1, 4, (2.0, 11.5), 0.3, (1, 2)), Gap(2, 4, (0.0, 11.5), 0.3, (1, 2))]
    >>> gap_correct(p, labels, gaps, truth)
    [True, False]
    """
    truth = np.asarray(truth, bool)
    before = np.asarray(probability) >= threshold
    full = ndi.generate_binary_structure(truth.ndim, truth.ndim)
    pieces, _ = ndi.label(before, structure=full)
    tl, _ = ndi.label(truth, structure=full)
    near = ndi.grey_dilation(tl, footprint=full)  # truth labels with one pixel of tolerance
    labels = np.asarray(labels)
    # each gap's and each piece's bounding box: a large image has hundreds of gaps
    gap_box = ndi.find_objects(labels)
    piece_box = ndi.find_objects(pieces)
    ok = []
    for g in gaps:
        box = gap_box[g.label - 1] if 0 < g.label <= len(gap_box) else None
        t = near[box][labels[box] == g.label] if box is not None else np.zeros(0, int)
        if not len(t) or (t > 0).mean() < 0.5:
            ok.append(False)
            continue
        home = np.bincount(t[t > 0]).argmax()
        ok.append(all(piece_box[k - 1] is not None
                      and ((pieces[piece_box[k - 1]] == k) & (near[piece_box[k - 1]] == home)).any()
                      for k in g.joins))
    return ok


def score_gaps(probability, labels, gaps, truth, threshold: float = 0.5, top: int = 20,
               min_piece: int = 10) -> dict:
    """Score a gap list (`core.gaps.bridges`) against the ground truth.

    A gap is **correct** when at least half of its pixels lie in the truth, with one pixel of
    tolerance (the truth dilated by one pixel: observers differ by about that much), and
    every component it joins overlaps the truth component that holds most of the gap. The
    truth's **breaks** are the joins the mask before refinement lacks: per truth component,
    the mask components of at least ``min_piece`` pixels overlapping it, less one (specks
    are not vessel pieces, as in `core.gaps.bridges`). **Recall** is the fraction of the
    breaks that the correct gaps close.

    Returns
    -------
    dict
        ``gaps`` (list length), ``precision``, ``precision_top`` (of the ``top`` most
        confident), ``breaks``, ``recall`` (NaN when there is nothing to divide by).

    Examples
    --------
    >>> p = np.zeros((5, 24), np.float32); p[2, :10] = p[2, 14:] = 0.9
    >>> truth = p > 0; truth[2, 10:14] = True
    >>> from napari_tubediff.core.gaps import Gap
    >>> labels = np.zeros((5, 24), np.int32); labels[2, 10:14] = 1
    >>> s = score_gaps(p, labels, [Gap(1, 4, (2.0, 11.5), 0.3, (1, 2))], truth)
    >>> s["precision"], s["breaks"], s["recall"]
    (1.0, 1, 1.0)
    """
    truth = np.asarray(truth, bool)
    before = np.asarray(probability) >= threshold
    full = ndi.generate_binary_structure(truth.ndim, truth.ndim)
    tl, _ = ndi.label(truth, structure=full)
    ok = gap_correct(probability, labels, gaps, truth, threshold)
    ok_arr = np.array(ok, bool)
    breaks = _breaks(before, tl, full, min_piece)
    good = np.isin(labels, [g.label for g, o in zip(gaps, ok, strict=True) if o])
    closed = breaks - _breaks(before | good, tl, full, min_piece)
    nan = float("nan")
    return {"gaps": len(gaps),
            "precision": float(ok_arr.mean()) if len(ok_arr) else nan,
            "precision_top": float(ok_arr[:top].mean()) if len(ok_arr) else nan,
            "breaks": breaks,
            "recall": closed / breaks if breaks else nan}


def gap_summary(per_image: list[dict]) -> dict:
    """Pooled figures over images: median list length, precision over all listed gaps and
    over each image's top ones (pooled), recall over all breaks."""
    n = sum(s["gaps"] for s in per_image)
    good = sum(s["precision"] * s["gaps"] for s in per_image if s["gaps"])
    tops = [(s["precision_top"], min(s["gaps"], 20)) for s in per_image if s["gaps"]]
    breaks = sum(s["breaks"] for s in per_image)
    closed = sum(s["recall"] * s["breaks"] for s in per_image if s["breaks"])
    return {"median_gaps": float(np.median([s["gaps"] for s in per_image])) if per_image else 0.0,
            "precision": good / n if n else float("nan"),
            "precision_top20": (sum(p * k for p, k in tops) / sum(k for _, k in tops)) if tops
            else float("nan"),
            "recall": closed / breaks if breaks else float("nan")}
