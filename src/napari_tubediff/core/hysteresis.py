"""Directional hysteresis: the dual-threshold iteration that may only grow along the vessels.

DTI (`core.dti`) adds every pixel with ``u >= low`` that touches the set, in any
direction, so it also grows sideways and joins parallel vessels. Here a pixel with
``low <= u < high`` joins only when its neighbour one step along its own direction
``v`` (either sign) is already in the set: a faint stretch of vessel fills from the
confident ends that point into it, while the faint rim beside a vessel (whose ``v``
runs parallel to the vessel, so its neighbours along ``v`` are rim too) stays out.
Where ``v`` is zero (no direction known) nothing is added.

The directions are the Hessian's of ``u`` by default (`estimate_directions`), so the
method needs only a probability field: it works on any backbone.
"""

from __future__ import annotations

import numpy as np

from .checks import check_directions, check_field
from .directions import estimate_directions

__all__ = ["directional_hysteresis"]


def directional_hysteresis(u, directions=None, *, high: float = 0.5, low: float = 0.3,
                           sigma: float = 2.0, max_iter: int = 10_000) -> np.ndarray:
    """Hysteresis mask of ``u`` grown only along ``directions``.

    Parameters
    ----------
    u : (M, N) or (P, M, N) array_like
        Probability field in [0, 1].
    directions : (ndim, ...) array_like, optional
        Unit (or zero) vectors per pixel; default the Hessian directions of ``u`` at
        scale ``sigma``.
    high, low : float
        Seed and growth thresholds, ``0 <= low <= high <= 1`` (DTI's 0.5 and 0.3).
    sigma : float
        Hessian scale when ``directions`` is not given.
    max_iter : int
        Bound on the growth passes (each adds at least one pixel, so it is only a guard).

    Returns
    -------
    mask : bool ndarray
        ``u >= high`` plus the low pixels reached by steps along ``v``.

    Examples
    --------
    >>> u = np.zeros((5, 9), np.float32); u[2, :3] = 0.9; u[2, 3:7] = 0.4; u[1, 1] = 0.4
    >>> v = np.zeros((2, 5, 9), np.float32); v[1] = 1            # every direction along the rows
    >>> directional_hysteresis(u, v).astype(int)[1:3]            # the faint run joins, the rim pixel not
    array([[0, 0, 0, 0, 0, 0, 0, 0, 0],
           [1, 1, 1, 1, 1, 1, 1, 0, 0]])
    """
    u = check_field(u, "u")
    if not (0.0 <= low <= high <= 1.0):
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    if directions is None:
        directions = estimate_directions(u, sigma)
    v = check_directions(directions, u.shape)
    grown = u >= high
    cand = np.flatnonzero((u >= low) & ~grown)
    if cand.size == 0:
        return grown
    # the neighbour one step along +v and -v of each candidate (v rounded to the pixel grid)
    step = np.rint(np.stack([c.ravel()[cand] for c in v])).astype(np.int64)
    idx = np.array(np.unravel_index(cand, u.shape))
    shape = np.array(u.shape)[:, None]
    nbrs = []
    for sign in (1, -1):
        q = idx + sign * step
        inside = ((q >= 0) & (q < shape)).all(0) & step.any(0)
        flat = np.where(inside, np.ravel_multi_index(np.clip(q, 0, shape - 1), u.shape), -1)
        nbrs.append(flat)
    nbrs = np.stack(nbrs)  # (2, n): -1 where there is no neighbour
    flat_grown = grown.ravel()
    todo = np.ones(cand.size, bool)
    for _ in range(max_iter):
        hit = todo & ((nbrs >= 0) & flat_grown[np.maximum(nbrs, 0)]).any(0)
        if not hit.any():
            break
        flat_grown[cand[hit]] = True
        todo &= ~hit
    return flat_grown.reshape(u.shape)
