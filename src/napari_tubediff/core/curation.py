"""Accepting a refined field into the annotator's labels without losing what they painted."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .checks import check_field

__all__ = ["accept_mask", "merge_indices", "merge_mask"]


def accept_mask(field, threshold: float = 0.5, gaps=None, rejected: Iterable[int] = ()) -> np.ndarray:
    """The pixels to accept: ``field >= threshold``, minus the rejected gaps.

    Parameters
    ----------
    field : (M, N) or (P, M, N) array_like
        Refined probability field in [0, 1].
    threshold : float
        In (0, 1].
    gaps : array_like of int, optional
        Gap label image of the same shape (see `core.gaps.bridges`).
    rejected : iterable of int
        Labels in ``gaps`` whose pixels are not accepted.

    Returns
    -------
    mask : ndarray of bool

    Examples
    --------
    >>> f = np.array([[0.2, 0.6, 0.7, 0.9]]); g = np.array([[0, 1, 2, 0]])
    >>> accept_mask(f, 0.5, g, rejected=[2])
    array([[False,  True, False,  True]])
    """
    u = check_field(field, "field")
    if not (0.0 < threshold <= 1.0):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    mask = u >= threshold
    rejected = [int(r) for r in rejected]
    if gaps is not None and rejected:
        g = np.asarray(gaps)
        if g.shape != u.shape:
            raise ValueError(f"gap labels {g.shape} and field {u.shape} differ in shape")
        mask &= ~np.isin(g, rejected)
    return mask


def merge_indices(curated, mask) -> tuple[np.ndarray, ...]:
    """Indices of the background (0) pixels of ``curated`` that ``mask`` adds.

    Painted pixels (any non-zero label) are never among them, so writing a label
    at these indices never overwrites the annotator's work.

    Examples
    --------
    >>> curated = np.array([[0, 2], [0, 0]]); mask = np.array([[True, True], [False, True]])
    >>> merge_indices(curated, mask)
    (array([0, 1]), array([0, 1]))
    """
    c = np.asarray(curated)
    m = np.asarray(mask, bool)
    if c.shape != m.shape:
        raise ValueError(f"the curated labels {c.shape} and the mask {m.shape} differ in shape")
    return np.nonzero(m & (c == 0))


def merge_mask(curated, mask, value: int = 1) -> np.ndarray:
    """A copy of ``curated`` with ``value`` written on its background pixels inside ``mask``.

    Examples
    --------
    >>> merge_mask(np.array([0, 2, 0]), np.array([True, True, False]), value=1)
    array([1, 2, 0])
    """
    if int(value) <= 0:
        raise ValueError(f"the label value must be >= 1, got {value!r}")
    out = np.array(curated, copy=True)
    out[merge_indices(out, mask)] = value
    return out
