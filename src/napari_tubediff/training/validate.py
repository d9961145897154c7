"""Range checks of the training configurations' numbers, run when a config is made.

A batch of 0, a NaN learning rate or a patch smaller than the U-Net's pooling would
otherwise fail minutes later with a torch traceback, or train nothing and save it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import fields

__all__ = ["check_numbers", "LOSSES"]

LOSSES = ("bce", "dice", "cldice")


def check_numbers(cfg, spec: dict) -> None:
    """ValueError naming the first field of ``cfg`` outside ``spec[field] = (kind, lo, hi)``.

    ``kind`` is ``int`` (a whole number, bool refused) or ``float`` (finite); ``lo`` and
    ``hi`` are inclusive (None: unbounded). ``loss`` fields must be one of `LOSSES`.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     batch: int = 0
    >>> check_numbers(C(), {"batch": (int, 1, None)})
    Traceback (most recent call last):
    ...
    ValueError: batch must be a whole number >= 1, got 0
    """
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "loss":
            if value not in LOSSES:
                raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {value!r}")
            continue
        if f.name not in spec:
            continue
        kind, lo, hi = spec[f.name]
        what = "a whole number" if kind is int else "a finite number"
        bounds = (f"from {lo:g} to {hi:g}" if lo is not None and hi is not None
                  else f">= {lo:g}" if lo is not None else f"<= {hi:g}")
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if ok and kind is int:
            ok = float(value).is_integer()
        ok = ok and math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi)
        if not ok:
            raise ValueError(f"{f.name} must be {what} {bounds}, got {value!r}")
