"""One rule for reading stored values as probabilities and masks.

A probability map or a mask can come as floats in [0, 1], as bools, or as integers
(8-bit PNGs, 16-bit TIFFs, GIF masks). Integers are read by their *values*, not their
type, so that a 0/1 PNG or a 16-bit TIFF holding 0..255 is not divided into nothing:

==========================  ============================  ==================================
integer values              read as                       note
==========================  ============================  ==================================
only 0 and 1                a binary mask (value / 1)     said (unless the type is bool-like)
maximum 2..255              8-bit: value / 255            said when the type is wider than 8 bits
maximum above 255           value / the type's maximum    said (e.g. 16-bit full range / 65535)
negative values             refused (ValueError)
==========================  ============================  ==================================

A mask is then ``probability >= 0.5`` (`metrics.to_mask`): 0/255 masks give value
``> 127``, palette GIFs converted to grey (3 and 253) give 253, 0/1 masks give 1.
Both `metrics.to_mask` and the file readers (`data.io.to_probability`,
`data.drive.binary_mask`) use this rule, so a file and an array read the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AssumptionWarning", "integer_scale", "as_probability"]


class AssumptionWarning(UserWarning):
    """A value was read under an assumption the user should know about (the CLI prints
    it on one line as ``tubediff: note: ...``)."""


def integer_scale(a: np.ndarray) -> tuple[float, str | None]:
    """The divisor that maps integer array ``a`` to [0, 1], and a note on what was assumed.

    Parameters
    ----------
    a : integer ndarray

    Returns
    -------
    scale : float
        1 for 0/1 values, 255 for a maximum up to 255, else the dtype's maximum.
    note : str or None
        What was assumed, None when nothing needs saying (8-bit 0..255).

    Examples
    --------
    >>> integer_scale(np.array([0, 1], np.uint8))
    (1.0, 'values 0 and 1 only: read as a binary mask (1 = vessel)')
    >>> integer_scale(np.array([0, 128, 255], np.uint8))
    (255.0, None)
    >>> integer_scale(np.array([0, 200], np.uint16))[0]
    255.0
    >>> integer_scale(np.array([0, 40000], np.uint16))[0]
    65535.0
    """
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"integer_scale takes integers, got dtype {a.dtype}")
    if a.size == 0:
        return 255.0, None
    lo, hi = int(a.min()), int(a.max())
    if lo < 0:
        raise ValueError(f"values must not be negative (found {lo}): a probability map or a mask "
                         "holds 0..1, 0..255 or 0..65535")
    if hi <= 1:
        return 1.0, "values 0 and 1 only: read as a binary mask (1 = vessel)"
    if hi <= 255:
        note = None if a.dtype.itemsize == 1 else (
            f"{a.dtype} values 0..{hi}: read as 8-bit (divided by 255)")
        return 255.0, note
    top = float(np.iinfo(a.dtype).max)
    return top, f"{a.dtype} values 0..{hi}: read as full-range {a.dtype} (divided by {top:.0f})"


def as_probability(a, name: str = "map") -> tuple[np.ndarray, str | None]:
    """Stored values as float32 probabilities in [0, 1], and a note on what was assumed.

    bool: 0/1; integers: `integer_scale`; floats must already lie in [0, 1] (NaN,
    inf or values outside refused).

    Examples
    --------
    >>> p, note = as_probability(np.array([[0, 1], [1, 0]], np.uint8))
    >>> p.tolist(), note
    ([[0.0, 1.0], [1.0, 0.0]], 'values 0 and 1 only: read as a binary mask (1 = vessel)')
    >>> [round(float(v), 2) for v in as_probability(np.array([0, 51, 255], np.uint8))[0]]
    [0.0, 0.2, 1.0]
    """
    x = np.asarray(a)
    if x.dtype == bool:
        return x.astype(np.float32), None
    if np.issubdtype(x.dtype, np.integer):
        scale, note = integer_scale(x)
        return (x / scale).astype(np.float32), note
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected numbers or bools, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name}: a float probability map must hold values in [0, 1]")
    return x, None
