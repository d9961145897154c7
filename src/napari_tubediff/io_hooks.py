"""npe2 reader and writer hooks (plain functions: this module does not import napari).

* Reader: GIF masks such as DRIVE's ``*_manual1.gif`` and ``*_mask.gif``. Some are palette
  images whose raw indices are 0 and 1, which napari's built-in reader shows as an almost
  black image; here they are converted to grey values and thresholded at 127
  (`data.drive.binary_mask`) and come back as a Labels layer with values 0 and 1.
* Writer: a Labels layer to ``.tif``/``.tiff`` (the label values as they are) or ``.png``
  (a mask: 255 on labelled pixels, 0 elsewhere, what DRIVE-style tools read back),
  written atomically (`data.io.write_image`): a crash never leaves half a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.drive import binary_mask
from .data.io import read_image, write_image

__all__ = ["get_mask_reader", "read_mask", "write_mask"]

MASK_SUFFIXES = (".gif",)


def read_mask(path) -> list[tuple]:
    """Read one or more GIF masks as napari Labels layer-data tuples (values 0 and 1)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    out = []
    for p in paths:
        p = Path(p)
        mask = binary_mask(read_image(p))
        out.append((mask.astype(np.uint8), {"name": p.stem}, "labels"))
    return out


def get_mask_reader(path):
    """The npe2 reader hook: `read_mask` for ``.gif`` paths, else None."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or not all(str(p).lower().endswith(MASK_SUFFIXES) for p in paths):
        return None
    return read_mask


def write_mask(path: str, data, meta: dict) -> list[str]:
    """The npe2 writer hook for one Labels layer; returns the written path.

    ``.png`` stores a mask (labelled pixels 255) in 8 bits; ``.tif``/``.tiff`` stores the
    label values unchanged.
    """
    a = np.asarray(data)
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        if a.ndim != 2:
            raise ValueError(f"a PNG holds a 2D mask; this layer is {a.ndim}D: save it as .tif")
        a = a > 0
    elif suffix not in (".tif", ".tiff"):
        raise ValueError(f"cannot write a mask as {suffix!r}: use .tif or .png")
    return [str(write_image(path, a))]
