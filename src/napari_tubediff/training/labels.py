"""Checks of the labels that training and fine-tuning learn from.

A label mask that is not what it seems trains without an error and teaches the wrong
thing: a 0/1 PNG read with a ``> 127`` rule is empty, a grey image or a probability map
passed as labels is a ramp, an inverted mask is nearly all vessel. These functions decide
what a label array means from its values and refuse, with one line, what means nothing.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["label_mask", "check_targets", "check_vessel_fraction", "MAX_LABEL_IDS", "MOSTLY_VESSEL"]

#: An integer label array with at most this many distinct values is a napari Labels layer
#: (label ids, every non-zero id is vessel); more values are a grey ramp, not labels.
MAX_LABEL_IDS = 8
#: Above this fraction of vessel (inside the region) a warning asks whether the mask is
#: inverted: vessels cover about 12 % of a fundus photograph's FOV (DRIVE).
MOSTLY_VESSEL = 0.5


def label_mask(labels, name: str = "labels") -> np.ndarray:
    """Vessel labels as a bool mask, decided from the values.

    bool: as it is. Two values, one of them 0 (0/1, 0/255, 0.0/1.0): the non-zero one is
    vessel, whatever the dtype's maximum. An integer array with up to `MAX_LABEL_IDS`
    values (a napari Labels layer): every non-zero id is vessel. Anything else (a grey
    ramp, a probability map, NaN) raises ValueError.

    Examples
    --------
    >>> label_mask(np.array([[0, 1], [1, 0]], np.uint8)).tolist()   # 0/1, not "> 127"
    [[False, True], [True, False]]
    >>> label_mask(np.arange(256, dtype=np.uint8).reshape(16, 16))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: labels hold 256 distinct values from 0 to 255 ...
    """
    a = np.asarray(labels)
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a bool or numeric mask, got dtype {a.dtype}")
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or infinite values; give a mask of 0 and 1")
    values = np.unique(a)
    if len(values) <= 2 and values[0] >= 0 and (len(values) == 1 or values[0] == 0):
        return a > 0
    if np.issubdtype(a.dtype, np.integer) and values[0] >= 0 and len(values) <= MAX_LABEL_IDS:
        return a > 0
    raise ValueError(f"{name} hold {len(values)} distinct values from {values[0]:g} to {values[-1]:g} "
                     "(a grey image or a probability map?); give a vessel mask of two values "
                     "(0 and 1, 0 and 255, or bool), e.g. threshold it first")


def check_vessel_fraction(y: np.ndarray, inside: np.ndarray, name: str, what: str) -> None:
    n = int(inside.sum())
    if n == 0:
        return
    frac = int((y & inside).sum()) / n
    if frac == 1.0:
        raise ValueError(f"{name} mark every pixel {what} as vessel: nothing to learn from "
                         "(an inverted mask? vessels should be the non-zero pixels)")
    if frac > MOSTLY_VESSEL:
        warnings.warn(f"{name} mark {frac:.0%} of the pixels {what} as vessel; vessel masks usually "
                      "cover under 20 %: is the mask inverted?", UserWarning, stacklevel=3)


def check_targets(targets, fovs) -> None:
    """Check training targets (``(1, *spatial)`` float arrays) before any update runs.

    Each must hold only 0 and 1 (ValueError naming the first bad one otherwise, e.g. a
    0..255 mask or a probability map) and must not be vessel everywhere inside its FOV
    (ValueError); more than `MOSTLY_VESSEL` vessel warns.

    Examples
    --------
    >>> check_targets([np.full((1, 4, 4), 255.0)], [np.ones((4, 4), bool)])
    Traceback (most recent call last):
    ...
    ValueError: training target 0 holds values other than 0 and 1 (from 255 to 255); binarise it (labels > 0)
    """
    for k, (y, f) in enumerate(zip(targets, fovs, strict=True)):
        y = np.asarray(y)
        if y.dtype != bool:
            bad = (y != 0) & (y != 1)
            if bad.any():
                raise ValueError(f"training target {k} holds values other than 0 and 1 (from "
                                 f"{float(np.nanmin(y)):g} to {float(np.nanmax(y)):g}); binarise it "
                                 "(labels > 0)")
        y = y.astype(bool).reshape(np.shape(f))
        check_vessel_fraction(y, np.asarray(f, bool), f"training target {k}", "inside its FOV")
