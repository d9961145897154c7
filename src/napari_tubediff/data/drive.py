"""Reader for DRIVE-layout folders (Staal et al., IEEE TMI 2004).

Layout (file names are matched by their leading number, any image extension)::

    ROOT/training/images/21_training.tif   1st_manual/21_manual1.gif   mask/21_training_mask.gif
    ROOT/test/images/01_test.tif           1st_manual/01_manual1.gif   2nd_manual/01_manual2.gif
                                           mask/01_test_mask.gif

The 2nd-observer GIFs are palette images whose raw indices are 0 and 1: read raw
they threshold to nothing. `read_image` converts palette images to grey (3 and
253 here) and masks are thresholded at 127, as ../shared/REFERENCES.md says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.metrics import to_mask
from .io import read_image

__all__ = ["DriveImage", "read_drive", "binary_mask"]

_SPLITS = {"test": "test", "training": "training", "train": "training"}
_EXTS = {".tif", ".tiff", ".gif", ".png", ".jpg", ".jpeg", ".bmp"}


def binary_mask(a: np.ndarray) -> np.ndarray:
    """A stored mask as bool, by the one rule `metrics.to_mask` uses (`core.values`):
    0/1 integers as they are, 0..255 grey values >= 128, floats >= 0.5. RGB(A) masks
    use their first channel.

    Examples
    --------
    >>> binary_mask(np.array([0, 1], np.uint8)), binary_mask(np.array([3, 253], np.uint8))
    (array([False,  True]), array([False,  True]))
    """
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., 0]
    return to_mask(a)


@dataclass
class DriveImage:
    """One DRIVE image and its annotations (loaded on demand)."""

    name: str
    image_path: Path
    manual1_path: Path | None
    manual2_path: Path | None
    fov_path: Path | None

    def image(self) -> np.ndarray:
        """The RGB fundus photograph, uint8 (rows, cols, 3)."""
        return read_image(self.image_path)

    def truth(self) -> np.ndarray | None:
        """1st observer's vessel mask (the ground truth), bool."""
        return None if self.manual1_path is None else binary_mask(read_image(self.manual1_path))

    def truth2(self) -> np.ndarray | None:
        """2nd observer's vessel mask, bool (test split only)."""
        return None if self.manual2_path is None else binary_mask(read_image(self.manual2_path))

    def fov(self) -> np.ndarray:
        """Field-of-view mask, bool (all True when the folder has none)."""
        if self.fov_path is None:
            return np.ones(self.image().shape[:2], bool)
        return binary_mask(read_image(self.fov_path))


def _index(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        m = re.match(r"(\d+)", p.name)
        if m and p.suffix.lower() in _EXTS:
            out.setdefault(m.group(1).lstrip("0") or "0", p)
    return out


def read_drive(root, split: str = "test") -> list[DriveImage]:
    """List the images of one split of a DRIVE-layout folder.

    Parameters
    ----------
    root : path
        Folder holding ``training/`` and/or ``test/``.
    split : {"test", "training", "train"}

    Returns
    -------
    list of DriveImage
        Sorted by number; annotation paths are None where a file is missing.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    base = Path(root) / _SPLITS[split]
    images = _index(base / "images")
    if not images:
        raise ValueError(f"no images found in {base / 'images'} (expected a DRIVE-layout folder)")
    m1, m2, fov = (_index(base / d) for d in ("1st_manual", "2nd_manual", "mask"))
    return [DriveImage(name=p.stem, image_path=p, manual1_path=m1.get(k), manual2_path=m2.get(k),
                       fov_path=fov.get(k))
            for k, p in sorted(images.items(), key=lambda kv: int(kv[0]))]
