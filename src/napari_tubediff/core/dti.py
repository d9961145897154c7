"""Dual-threshold iteration (DTI), the FR-UNet paper's post-processing, computed exactly.

DTI starts from the confident pixels ``u >= high`` and repeatedly adds every pixel
with ``u >= low`` that touches the set (8-connected in 2D, 26 in 3D) until nothing
changes. Its fixed point is the geodesic reconstruction of the low mask from the
high seeds: the union of the low mask's connected components that contain a seed.
We compute exactly that, by labelling the low mask once (no iteration, no wrap-around
at the border, seeds from ``high``), which avoids the public code's two defects
(../shared/REFERENCES.md): a loop that stopped after one raster pass and wrapped
around the border, and a max-pool version seeded from ``low`` instead of ``high``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .checks import check_field

__all__ = ["dti"]


def dti(u, high: float = 0.5, low: float = 0.3) -> np.ndarray:
    """Dual-threshold iteration's fixed point: the hysteresis mask of ``u``.

    Parameters
    ----------
    u : (M, N) or (P, M, N) array_like
        Probability field in [0, 1].
    high, low : float
        Seed and growth thresholds (``u >= high`` seeds, ``u >= low`` may join),
        with ``0 <= low <= high <= 1``; the paper's values are 0.5 and 0.3.

    Returns
    -------
    mask : bool ndarray
        Every pixel with ``u >= low`` connected (8 / 26-connectivity, through such
        pixels) to a pixel with ``u >= high``.

    Examples
    --------
    >>> u = np.array([[0.9, 0.4, 0.4, 0.0, 0.4]])
    >>> dti(u)                     # the last 0.4 is not connected to the seed
    array([[ True,  True,  True, False, False]])
    """
    u = check_field(u, "u")
    if not (0.0 <= low <= high <= 1.0):
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    low_mask = u >= low
    seeds = u >= high
    labels, n = ndi.label(low_mask, structure=np.ones((3,) * u.ndim, bool))
    if n == 0:
        return low_mask
    keep = np.zeros(n + 1, bool)
    keep[labels[seeds]] = True
    keep[0] = False
    return keep[labels]
