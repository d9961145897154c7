"""A learned keep of DTI's additions (issue 13, docs/results/refine/keep_rule.txt).

``"gated+dti"`` keeps DTI's additions by one geometric rule (the centre line +- ``line_width``
pixels, `core.refine.complete_dti`). Here each added pixel instead gets a probability of
being vessel (`keep_probability`) from a tiny model on scale-free features (`keep_features`:
distances in units of the nearest vessel's radius, sizes in units of the FOV), and the pixels
at or above a threshold are kept (`learned_keep`). 2D only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import hessian_matrix, hessian_matrix_eigvals
from skimage.morphology import skeletonize

from .checks import check_field
from .dti import dti

__all__ = ["KEEP_FEATURES", "keep_features", "keep_probability", "learned_keep", "KEEP_MODEL", "KEEP_FOV"]

#: The FOV diameter (pixels) the size unit refers to (`core.refine.REFINE_FOV`'s value).
KEEP_FOV = 594.0

#: The features of `keep_features`, in column order.
KEEP_FEATURES = ("u0", "field", "line_distance", "seed_distance", "radius", "joins_two", "ridge", "log_size")

#: The model of `keep_probability` (None until fitted: ``scripts/refine_keep.py``).
KEEP_MODEL: dict | None = None


def keep_features(field, u0, low: float = 0.3, fov_diameter: float | None = None):
    """The candidates of a learned keep and their scale-free features.

    The candidates are DTI's additions (0.5 / ``low``) on ``field`` (the gated field): the
    pixels of DTI's mask below 0.5. With ``r`` the radius of the nearest seed vessel (the
    seed ``field >= 0.5``: its distance transform read at its centre line, at least 1 pixel)
    and ``s`` = ``fov_diameter`` / `KEEP_FOV` (1 when None), each candidate's features
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
    field = check_field(field, "field")
    u0 = check_field(u0, "u0")
    if field.ndim != 2:
        raise ValueError("the learned keep is 2D only; refine volumes with line_width")
    s = 1.0 if fov_diameter is None else float(fov_diameter) / KEEP_FOV
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


def keep_probability(X, model: dict | None = None) -> np.ndarray:
    """P(truth) of candidates with features ``X`` (rows as `keep_features` gives them).

    ``model`` (default `KEEP_MODEL`): ``mean`` and ``std`` of the features, ``w1`` (8 x H),
    ``b1``, ``w2`` (H), ``b2`` of a 2-layer perceptron, ``sigmoid(tanh(z W1 + b1) w2 + b2)``
    with ``z`` the standardised features.

    Examples
    --------
    >>> m = {"mean": [0] * 8, "std": [1] * 8, "w1": [[1.0]] + [[0.0]] * 7, "b1": [0.0], "w2": [2.0],
    ...      "b2": 0.0}
    >>> keep_probability(np.array([[0.0] * 8, [1.0] + [0.0] * 7]), m).round(3).tolist()
    [0.5, 0.821]
    """
    m = KEEP_MODEL if model is None else model
    if m is None:
        raise ValueError("no learned-keep model is fitted; use the line rule (keep='line')")
    X = np.asarray(X, np.float64)
    z = (X - np.asarray(m["mean"])) / np.asarray(m["std"])
    hidden = np.tanh(z @ np.asarray(m["w1"]) + np.asarray(m["b1"]))
    return 1.0 / (1.0 + np.exp(-(hidden @ np.asarray(m["w2"]) + float(m["b2"]))))


def learned_keep(field, u0, low: float = 0.3, tau: float = 0.5, fov_diameter: float | None = None,
                 model: dict | None = None) -> np.ndarray:
    """``field`` with the candidates of `keep_features` whose `keep_probability` is at least
    ``tau`` raised to 0.5, of those only the ones 8-connected to the seed (``field >= 0.5``):
    no new islands.

    Examples
    --------
    >>> u = np.zeros((9, 20), np.float32); u[3:6, :8] = u[3:6, 12:] = 0.9; u[4, 8:12] = 0.35
    >>> m = {"mean": [0] * 8, "std": [1] * 8, "w1": [[0.0]] * 5 + [[1.0]] + [[0.0]] * 2, "b1": [0.0],
    ...      "w2": [5.0], "b2": -2.0}                   # keeps what joins two vessels
    >>> int((learned_keep(u, u, model=m) >= 0.5)[4, 8:12].sum())
    4
    """
    field = check_field(field, "field")
    cand, X = keep_features(field, u0, low, fov_diameter)
    out = field.copy()
    if not cand.any():
        return out
    kept = np.zeros(field.shape, bool)
    kept.ravel()[np.flatnonzero(cand)] = keep_probability(X, model) >= tau
    seed = field >= 0.5
    lab, _ = ndi.label(seed | kept, structure=np.ones((3, 3), bool))
    kept &= np.isin(lab, np.unique(lab[seed]))
    out[kept] = np.float32(0.5)
    return out
