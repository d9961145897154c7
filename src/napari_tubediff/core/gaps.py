"""Gaps bridged by a refinement: what the annotator reviews.

Two levels:

* `bridged_gaps`: every pixel that crossed the threshold (at or above it in the refined
  field, below it in the original probability), grouped 8-connected (26 in 3D, as in
  `metrics`). That includes widening: a DRIVE image gives about 400 such groups.
* `bridges`: only what reconnects. The refined mask's centre line (skimage's
  `skeletonize`) is cut to the pixels that crossed the threshold; each connected piece
  of it is a candidate. A candidate is a **bridge** when it touches two or more
  components of the mask before refinement, each over a short contact (a vessel end,
  not a vessel side) and along that component's local direction (so a fill between
  two parallel vessels, which leaves each sideways, is not one); it is an
  **extension** when it touches one component at its end, along its direction, over
  at least ``min_extension`` pixels. Widening is neither: it is off the centre line.
  Bridges are ranked by their confidence, the mean of the original probability along
  the bridge (how much the backbone already saw a vessel there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from .checks import check_field

__all__ = ["Gap", "bridged_mask", "bridged_gaps", "bridges"]


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
        `bridged_gaps`: mean refined value over the gap's pixels; `bridges`: mean
        original probability along the bridge.
    joins : tuple of int
        `bridges` only: the labels (in ``ndi.label`` of the mask before refinement,
        8 / 26-connected) of the components the gap joins; one label for an extension.
    """

    label: int
    size: int
    centroid: tuple[float, ...]
    confidence: float
    joins: tuple[int, ...] = ()


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


def bridged_gaps(probability, refined, threshold: float = 0.5,
                 min_size: int = 1) -> tuple[np.ndarray, list[Gap]]:
    """Group the bridged pixels into connected gaps, ranked by size.

    Parameters
    ----------
    probability, refined : (M, N) or (P, M, N) array_like
        The field before and after refinement, values in [0, 1], same shape.
    threshold : float
        Where a pixel counts as vessel.
    min_size : int
        Gaps with fewer pixels are left out (their pixels are 0 in the label image).

    Returns
    -------
    labels : ndarray of int32
        0 off the gaps; gap ``k`` (1-based rank) has value ``k``.
    gaps : list of Gap
        Largest first; equal sizes in the order of their first pixel (row-major).

    Examples
    --------
    >>> p = np.zeros((3, 7)); r = p.copy()
    >>> r[1, 0] = 0.6; r[1, 3:6] = 0.8                  # a 1-pixel and a 3-pixel gap
    >>> labels, gaps = bridged_gaps(p, r)
    >>> labels[1]
    array([2, 0, 0, 1, 1, 1, 0], dtype=int32)
    >>> gaps[0].size, gaps[0].centroid, round(gaps[0].confidence, 3)
    (3, (1.0, 4.0), 0.8)
    """
    mask = bridged_mask(probability, refined, threshold)
    r = np.asarray(refined, np.float32)
    structure = ndi.generate_binary_structure(mask.ndim, mask.ndim)
    raw, n = ndi.label(mask, structure=structure)
    if n == 0:
        return np.zeros(mask.shape, np.int32), []
    sizes = np.bincount(raw.ravel(), minlength=n + 1)[1:]
    ids = np.arange(1, n + 1)
    keep = ids[sizes >= max(int(min_size), 1)]
    # ndi.label numbers components in order of their first pixel: a stable sort keeps that for ties
    order = keep[np.argsort(-sizes[keep - 1], kind="stable")]
    centroids = ndi.center_of_mass(mask, raw, order)
    means = ndi.mean(r, raw, order)
    lut = np.zeros(n + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    labels = lut[raw]
    gaps = [Gap(label=k + 1, size=int(sizes[i - 1]), centroid=tuple(float(c) for c in centroids[k]),
                confidence=float(means[k]))
            for k, i in enumerate(order)]
    return labels, gaps


def _axis(coords: np.ndarray) -> np.ndarray | None:
    """Principal axis (unit vector) of a point cloud, None when it has no direction."""
    if len(coords) < 3:
        return None
    c = coords - coords.mean(0)
    w, v = np.linalg.eigh(c.T @ c)
    if w[-1] <= 1e-9 or w[-2] > 0.5 * w[-1]:  # a blob, not a segment
        return None
    return v[:, -1]


def _leaves(d: np.ndarray, end: tuple, min_cos: float) -> bool:
    """Whether a step ``d`` from a component's contact leaves it at its end: along its
    local axis and away from its body (not back along the vessel it came from)."""
    contact, axis, body = end
    n = np.linalg.norm(d)
    if n < 1e-9:
        return True  # the contact is on top of the other one: no direction to violate
    out = contact - body
    if np.linalg.norm(out) >= 0.5 and float(out @ d) <= 0:
        return False  # pointing back into the component: a side, not an end
    return axis is None or abs(float(d @ axis)) / n >= min_cos


def bridges(probability, refined, threshold: float = 0.5, *, max_contact: int = 8,
            min_extension: int = 5, min_cos: float = 0.7,
            radius: int = 5, min_piece: int = 10) -> tuple[np.ndarray, list[Gap]]:
    """The gaps a refinement really bridged: joins of components and vessel-end extensions.

    Parameters
    ----------
    probability, refined : (M, N) or (P, M, N) array_like
        The field before and after refinement, values in [0, 1], same shape.
    threshold : float
        Where a pixel counts as vessel.
    max_contact : int
        A candidate leaves a component over at most this many of the component's pixels
        (a vessel end); a longer contact is a vessel side (widening, parallel fills).
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
        Highest confidence first; ``size`` counts centre-line pixels.

    Examples
    --------
    >>> p = np.zeros((9, 24), np.float32); p[4, :10] = p[4, 14:] = 0.9; p[4, 10:14] = 0.3
    >>> r = p.copy(); r[4, 10:14] = 0.7                       # the refinement closed the gap
    >>> labels, gaps = bridges(p, r)
    >>> len(gaps), gaps[0].size, gaps[0].joins, round(gaps[0].confidence, 2)
    (1, 4, (1, 2), 0.3)
    """
    added = bridged_mask(probability, refined, threshold)
    p = np.asarray(probability, np.float32)
    before = p >= threshold
    full = ndi.generate_binary_structure(before.ndim, before.ndim)
    pieces, npieces = ndi.label(before, structure=full)
    big = np.bincount(pieces.ravel(), minlength=npieces + 1) >= min_piece
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
        joined = set()
        keys = sorted(ends)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                ea, eb = ends[keys[a]], ends[keys[b]]
                if _leaves(eb[0] - ea[0], ea, min_cos) and _leaves(ea[0] - eb[0], eb, min_cos):
                    joined |= {keys[a], keys[b]}
        pts = np.argwhere(c)
        if not joined and len(ids) == 1 and len(ends) == 1 and len(pts) >= min_extension:
            (k, ek), = ends.items()
            far = pts[np.argmax(np.abs(pts - ek[0]).sum(1))]
            if ek[1] is not None and _leaves(far - ek[0], ek, min_cos):
                joined = {k}
        if joined:
            found.append((i, tuple(sorted(joined)), pts + off))
    out = np.zeros(before.shape, np.int32)
    if not found:
        return out, []
    conf = ndi.mean(p, cand, [f[0] for f in found])
    order = np.argsort(-np.asarray(conf), kind="stable")
    gaps = []
    for rank, j in enumerate(order, start=1):
        i, joins, pts = found[j]
        out[tuple(pts.T)] = rank
        gaps.append(Gap(label=rank, size=len(pts), centroid=tuple(float(x) for x in pts.mean(0)),
                        confidence=float(conf[j]), joins=joins))
    # show the crossed pixels beside each centre line too (a one-pixel halo, never over another gap)
    halo = ndi.grey_dilation(out, footprint=full)
    grow = (out == 0) & added & (halo > 0)
    out[grow] = halo[grow]
    return out, gaps
