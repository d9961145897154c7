"""Gaps bridged by a refinement: what the annotator reviews.

`bridged_mask` is every pixel that crossed the threshold (at or above it in the refined
field, below it in the original probability). That includes widening: grouped, a DRIVE
image gives about 400 pieces, mostly vessel rims. `bridges` keeps only what reconnects.
The refined mask's centre line (skimage's `skeletonize`) is cut to the pixels that
crossed the threshold; each connected piece of it (8-connected, 26 in 3D, as in
`metrics`) is a candidate. A candidate is a **bridge** when it touches two or more
  components of the mask before refinement, each over a short contact (a vessel end,
  not a vessel side) and along that component's local direction (so a fill between
  two parallel vessels, which leaves each sideways, is not one); it is an
  **extension** when it touches one component at its end, along its direction, over
  at least ``min_extension`` pixels. Widening is neither: it is off the centre line.
  Bridges are ranked by their confidence: the probability that the bridge is right (lies
  in the truth and joins pieces the truth joins), from a logistic model of its
  `FEATURES` fitted on the training splits of DRIVE, STARE and HRF
  (`CONFIDENCE_MODEL`; ``scripts/refine_calibrate.py`` fits it and shows its reliability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from .checks import check_field

__all__ = ["Gap", "bridged_mask", "bridges", "FEATURES", "CONFIDENCE_MODEL", "confidence"]

#: What the confidence of a bridge is computed from, in the order of `Gap.features`:
#: the backbone's mean and lowest probability along the bridge's centre line, the log of
#: its length (centre-line pixels), 1 for a join of two or more components (0 for an
#: extension of one), how well it follows the components' axes (the lowest |cos| between
#: the bridge and the local axis of a component it leaves; 1 where a component has no
#: axis), and the log of the pixels of the smallest component it touches.
FEATURES = ("mean_probability", "min_probability", "log_length", "joins_two", "direction", "log_piece")

#: The logistic model of `confidence`: ``intercept`` and one coefficient per `FEATURES`
#: entry, fitted by ``scripts/refine_calibrate.py`` on the training splits of DRIVE,
#: STARE and HRF (bridges of the default refinement, gated+dti with its current settings, of
#: the shipped, calibrated U-Net's probability; docs/results.md, "The gap list").
#: Each set weighs the same in the fit; 1181 bridges of 39 images (HRF: 01 of each group);
#: the probability features' coefficients are kept >= 0 (more evidence never lowers it).
CONFIDENCE_MODEL = {"intercept": -0.1508, "coef": (0.0000, 0.0209, -0.2699, 0.8037, 0.7965, 0.0357)}


@dataclass(frozen=True)
class Gap:
    """One bridged gap.

    Attributes
    ----------
    label : int
        Its value in the label image (1 is the largest gap).
    size : int
        Number of pixels.
    centroid : tuple of float
        Centre of mass in array coordinates (rows, cols) or (planes, rows, cols).
    confidence : float
        The calibrated probability that the gap is right (`confidence`).
    joins : tuple of int
        The labels (in ``ndi.label`` of the mask before refinement, 8 / 26-connected) of
        the components the gap joins; one label for an extension.
    features : tuple of float
        Its `FEATURES`, in that order.
    """

    label: int
    size: int
    centroid: tuple[float, ...]
    confidence: float
    joins: tuple[int, ...] = ()
    features: tuple[float, ...] = ()


def confidence(features, model: dict | None = None) -> np.ndarray:
    """The calibrated confidence of bridges from their `FEATURES` (rows): the logistic
    model ``1 / (1 + exp(-(intercept + coef . x)))``, `CONFIDENCE_MODEL` by default.

    Examples
    --------
    >>> m = {"intercept": -1.0, "coef": (2.0, 0, 0, 0, 0, 0)}
    >>> confidence([[0.5, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0]], m).round(3)
    array([0.5  , 0.731])
    """
    m = CONFIDENCE_MODEL if model is None else model
    x = np.atleast_2d(np.asarray(features, float))
    if x.shape[1] != len(FEATURES):
        raise ValueError(f"features need {len(FEATURES)} columns ({', '.join(FEATURES)}), got {x.shape[1]}")
    return 1.0 / (1.0 + np.exp(-(m["intercept"] + x @ np.asarray(m["coef"], float))))


def bridged_mask(probability, refined, threshold: float = 0.5) -> np.ndarray:
    """Pixels with ``refined >= threshold`` and ``probability < threshold``.

    Examples
    --------
    >>> bridged_mask(np.array([[0.2, 0.6, 0.2]]), np.array([[0.7, 0.9, 0.4]]))
    array([[ True, False, False]])
    """
    p = check_field(probability, "probability")
    r = check_field(refined, "refined")
    if p.shape != r.shape:
        raise ValueError(f"probability {p.shape} and refined {r.shape} differ in shape")
    if not (0.0 < threshold <= 1.0):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    return (r >= threshold) & (p < threshold)


def _axis(coords: np.ndarray) -> np.ndarray | None:
    """Principal axis (unit vector) of a point cloud, None when it has no direction."""
    if len(coords) < 3:
        return None
    c = coords - coords.mean(0)
    w, v = np.linalg.eigh(c.T @ c)
    if w[-1] <= 1e-9 or w[-2] > 0.5 * w[-1]:  # a blob, not a segment
        return None
    return v[:, -1]


def _cos(d: np.ndarray, axis: np.ndarray | None) -> float:
    """|cos| between a step ``d`` and a component's axis (1 without an axis or a step)."""
    n = np.linalg.norm(d)
    return 1.0 if axis is None or n < 1e-9 else abs(float(d @ axis)) / n


def _leaves(d: np.ndarray, end: tuple, min_cos: float) -> bool:
    """Whether a step ``d`` from a component's contact leaves it at its end: along its
    local axis and away from its body (not back along the vessel it came from)."""
    contact, axis, body = end
    if np.linalg.norm(d) < 1e-9:
        return True  # the contact is on top of the other one: no direction to violate
    out = contact - body
    if np.linalg.norm(out) >= 0.5 and float(out @ d) <= 0:
        return False  # pointing back into the component: a side, not an end
    return _cos(d, axis) >= min_cos


def bridges(probability, refined, threshold: float = 0.5, *, max_contact: int | None = None,
            min_extension: int = 5, min_cos: float = 0.7,
            radius: int = 5, min_piece: int = 10) -> tuple[np.ndarray, list[Gap]]:
    """The gaps a refinement really bridged: joins of components and vessel-end extensions.

    Parameters
    ----------
    probability, refined : (M, N) or (P, M, N) array_like
        The field before and after refinement, values in [0, 1], same shape.
    threshold : float
        Where a pixel counts as vessel.
    max_contact : int, optional
        A candidate leaves a component over at most this many of the component's pixels
        (a vessel end); a longer contact is a vessel side (widening, parallel fills).
        Default 8 in 2D, 64 in 3D (the end face of a vessel up to 8 pixels wide).
    min_extension : int
        Centre-line pixels an extension (touching one component) needs.
    min_cos : float
        The line from where a candidate leaves a component to where it goes (the other
        component's contact, or the extension's far end) must make at most
        ``arccos(min_cos)`` with the component's local axis (0.7: about 45 degrees).
    radius : int
        Half-size of the window in which a component's local axis is measured.
    min_piece : int
        Components with fewer pixels are specks, not vessel pieces: touching one does
        not make a bridge.

    Returns
    -------
    labels : ndarray of int32
        0 off the gaps; gap ``k`` (1-based rank) has value ``k`` on its centre line and
        on the crossed pixels next to it.
    gaps : list of Gap
        Highest confidence (`confidence`) first; ``size`` counts centre-line pixels.

    Examples
    --------
    >>> p = np.zeros((9, 24), np.float32); p[4, :10] = p[4, 14:] = 0.9; p[4, 10:14] = 0.3
    >>> r = p.copy(); r[4, 10:14] = 0.7                       # the refinement closed the gap
    >>> labels, gaps = bridges(p, r)
    >>> len(gaps), gaps[0].size, gaps[0].joins
    (1, 4, (1, 2))
    >>> round(dict(zip(FEATURES, gaps[0].features))["mean_probability"], 2)
    0.3
    """
    added = bridged_mask(probability, refined, threshold)
    if max_contact is None:
        max_contact = 8 ** (added.ndim - 1)
    p = np.asarray(probability, np.float32)
    before = p >= threshold
    full = ndi.generate_binary_structure(before.ndim, before.ndim)
    pieces, npieces = ndi.label(before, structure=full)
    sizes = np.bincount(pieces.ravel(), minlength=npieces + 1)
    big = sizes >= min_piece
    big[0] = False
    path = skeletonize(np.asarray(refined) >= threshold) & added
    cand, n = ndi.label(path, structure=full)
    found = []
    for i, sl in enumerate(ndi.find_objects(cand), start=1):
        # a window around the candidate, wide enough for the contacts and the local axes
        win = tuple(slice(max(s.start - radius - 1, 0), s.stop + radius + 1) for s in sl)
        off = np.array([w.start for w in win])
        c = cand[win] == i
        pc = pieces[win]
        touch = ndi.binary_dilation(c, structure=full) & (pc > 0)
        ids, counts = np.unique(pc[touch], return_counts=True)
        ends = {}
        for k, m in zip(ids.tolist(), counts.tolist(), strict=True):
            if m > max_contact or not big[k]:
                continue  # a vessel side, not a vessel end; or a speck
            contact = np.argwhere(touch & (pc == k)).mean(0)
            near = np.argwhere(pc == k)
            near = near[np.abs(near - contact).max(1) <= radius]
            if not len(near):  # contacts spread wider than the radius: their own pixels
                near = np.argwhere(touch & (pc == k))
            ends[k] = (contact, _axis(near.astype(float)), near.mean(0))
        if not ends:
            continue
        joined, cos = set(), []
        keys = sorted(ends)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                ea, eb = ends[keys[a]], ends[keys[b]]
                if _leaves(eb[0] - ea[0], ea, min_cos) and _leaves(ea[0] - eb[0], eb, min_cos):
                    joined |= {keys[a], keys[b]}
                    cos += [_cos(eb[0] - ea[0], ea[1]), _cos(ea[0] - eb[0], eb[1])]
        pts = np.argwhere(c)
        if not joined and len(ids) == 1 and len(ends) == 1 and len(pts) >= min_extension:
            (k, ek), = ends.items()
            far = pts[np.argmax(np.abs(pts - ek[0]).sum(1))]
            if ek[1] is not None and _leaves(far - ek[0], ek, min_cos):
                joined, cos = {k}, [_cos(far - ek[0], ek[1])]
        if joined:
            along = p[tuple((pts + off).T)]
            feats = (float(along.mean()), float(along.min()), float(np.log(len(pts))), float(len(joined) > 1),
                     min(cos), float(np.log(sizes[list(joined)].min())))
            found.append((tuple(sorted(joined)), pts + off, feats))
    out = np.zeros(before.shape, np.int32)
    if not found:
        return out, []
    conf = confidence([f[2] for f in found])
    order = np.argsort(-conf, kind="stable")
    gaps = []
    for rank, j in enumerate(order, start=1):
        joins, pts, feats = found[j]
        out[tuple(pts.T)] = rank
        gaps.append(Gap(label=rank, size=len(pts), centroid=tuple(float(x) for x in pts.mean(0)),
                        confidence=float(conf[j]), joins=joins, features=feats))
    # show the crossed pixels beside each centre line too (a one-pixel halo, never over another gap)
    halo = ndi.grey_dilation(out, footprint=full)
    grow = (out == 0) & added & (halo > 0)
    out[grow] = halo[grow]
    return out, gaps
