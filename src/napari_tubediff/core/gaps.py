"""Gaps bridged by a refinement: pixels that crossed the threshold, grouped and ranked.

The annotator reviews what the diffusion added. A bridged pixel lies at or above the
threshold in the refined field and below it in the original probability; connected
bridged pixels (8-connected in 2D, 26-connected in 3D, as in `metrics`) form one gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .checks import check_field

__all__ = ["Gap", "bridged_mask", "bridged_gaps"]


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
        Mean refined value over the gap's pixels.
    """

    label: int
    size: int
    centroid: tuple[float, ...]
    confidence: float


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
