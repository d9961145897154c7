"""What a layer's or file's name says it holds: the rule the panels pick a field of view by
(`fov_like`), and that the reader opens a field-of-view mask hidden by (`io_hooks.layer_data`).

Kept free of napari and Qt, so that the reader hook and the panels share it.
"""

from __future__ import annotations

__all__ = ["fov_like"]

#: Words in a layer's name that say it is a vessel map, not a field of view, even when it
#: ends in "mask" (the CLI's ``NAME_mask.png`` is a refined vessel mask).
_NOT_FOV = ("refined", "curated", "bridged", "vessel", "manual", "truth", "prob", "label")


def fov_like(name: str) -> bool:
    """Whether a layer named ``name`` looks like a field-of-view mask.

    DRIVE's ``21_training_mask``, HRF's ``01_dr_mask``, ``mask``, anything with "fov";
    not ``refined_mask`` or ``curated``.

    >>> [fov_like(n) for n in ("21_training_mask", "synthetic fov", "mask", "refined_mask", "curated")]
    [True, True, True, False, False]
    """
    n = name.lower()
    if "fov" in n or "field of view" in n:
        return True
    if any(word in n for word in _NOT_FOV):
        return False
    return n == "mask" or n.endswith(("_mask", " mask", "-mask"))
