"""Scoring several predictions against one truth: the rows of a metrics table, and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np

from .metrics import betti_errors, cldice, count_components, dice, vca, vca_fov

__all__ = ["prediction_mask", "score_predictions", "rows_to_csv"]


def prediction_mask(a, threshold: float = 0.5, name: str = "prediction") -> np.ndarray:
    """A prediction as a bool mask.

    bool as it is; integers (labels) ``> 0``; floats must be probabilities in [0, 1]
    and give ``>= threshold``.

    Examples
    --------
    >>> prediction_mask(np.array([0, 3, 1])), prediction_mask(np.array([0.2, 0.5]))
    (array([False,  True,  True]), array([False,  True]))
    """
    x = np.asarray(a)
    if x.dtype == bool:
        return x
    if np.issubdtype(x.dtype, np.integer):
        return x > 0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be a mask, labels or a probability field, got dtype {x.dtype}")
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} has values outside [0, 1]: choose a probability field or a mask")
    return x >= threshold


def score_predictions(predictions: Mapping[str, np.ndarray], truth, fov=None,
                      threshold: float = 0.5, topology: bool = False) -> list[dict]:
    """Dice, clDice and VCA (and, with ``topology``, component counts and Betti errors)
    of each prediction against ``truth``, 2D or 3D.

    Parameters
    ----------
    predictions : mapping of name to array
        Masks, label images or probability fields (see `prediction_mask`), 2D or 3D.
    truth : array_like
        Ground-truth mask or labels (non-zero is vessel).
    fov : array_like, optional
        Field of view: Dice and clDice are computed inside it, and ``vca_fov`` is added
        (``vca`` always counts on the whole image, as the reference does).
    threshold : float
        For probability fields.
    topology : bool
        Also ``components`` (the prediction's connected components, 8 / 26-connected)
        and the Betti-number errors ``betti0_error``, ``betti1_error`` (and
        ``betti2_error`` in 3D), inside the FOV when one is given (`metrics.betti_errors`).

    Returns
    -------
    rows : list of dict
        One per prediction, in the given order: ``name``, ``dice``, ``cldice``, ``vca``
        (and ``vca_fov`` with a FOV; the topology columns after them).

    Examples
    --------
    >>> gt = np.zeros((5, 9), bool); gt[2, 1:8] = True
    >>> half = gt.copy(); half[2, 5:] = False
    >>> [(r["name"], r["dice"]) for r in score_predictions({"truth": gt, "half": half}, gt)]
    [('truth', 1.0), ('half', 0.7272727272727273)]
    >>> score_predictions({"half": half}, gt, topology=True)[0]["components"]
    1
    """
    g = prediction_mask(truth, name="the ground truth")
    f = None if fov is None else prediction_mask(fov, name="the field of view")
    if f is not None and f.shape != g.shape:
        raise ValueError(f"the field of view {f.shape} and the ground truth {g.shape} differ in shape")
    rows = []
    for name, a in predictions.items():
        p = prediction_mask(a, threshold, name=f"'{name}'")
        if p.shape != g.shape:
            raise ValueError(f"'{name}' has shape {p.shape} but the ground truth has {g.shape}")
        row = {"name": name, "dice": dice(p, g, f), "cldice": cldice(p, g, f), "vca": vca(p, g)}
        if f is not None:
            row["vca_fov"] = vca_fov(p, g, f)
        if topology:
            row["components"] = count_components(p)
            row.update(betti_errors(p, g, f))
        rows.append(row)
    return rows


def rows_to_csv(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """CSV text with a header; floats written with 6 significant digits.

    Examples
    --------
    >>> print(rows_to_csv([{"name": "a", "dice": 0.5}]), end="")
    name,dice
    a,0.5
    """
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in (r.get(c, "") for c in columns)])
    return buf.getvalue()
