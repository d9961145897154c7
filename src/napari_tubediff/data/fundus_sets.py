"""DRIVE, STARE and HRF as one list of labelled fundus photographs, with the fixed splits.

The held-out images (docs/models.md) are never trained on nor used for a choice:

* DRIVE: the test split, 01 to 20 (training: 21 to 40).
* STARE: im0255, im0291, im0319, im0324 (training: the other 16 labelled images).
* HRF: the last five of each group, 11 to 15 of ``_h``, ``_dr`` and ``_g`` (training: 01 to 10).

Layouts read (``ROOT`` is the folder that holds ``DRIVE/``, ``STARE/`` and ``HRF/``)::

    DRIVE/{training,test}/{images,1st_manual,mask}/     (data/drive.py)
    STARE/images/im0001.png   STARE/labels_1st/im0001.ah.ppm   (no FOV masks: the automatic one)
    HRF/images/01_h.jpg       HRF/labels_1st/01_h.tif          HRF/mask/01_h_mask.tif

Labels are thresholded at 127 (HRF's 11_h to 13_h hold grey pixels; DRIVE's 2nd observer is a
palette GIF): `binary_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.fov import fov_mask
from .drive import binary_mask, read_drive
from .io import read_image

__all__ = ["FundusItem", "fundus_items", "DATASETS", "STARE_HELDOUT", "HRF_HELDOUT"]

DATASETS = ("DRIVE", "STARE", "HRF")
STARE_HELDOUT = ("im0255", "im0291", "im0319", "im0324")
HRF_HELDOUT = tuple(f"{k:02d}_{g}" for g in ("h", "dr", "g") for k in range(11, 16))


@dataclass
class FundusItem:
    """One labelled photograph; arrays are read on demand."""

    dataset: str
    name: str
    image_path: Path
    label_path: Path
    fov_path: Path | None  # None: the automatic FOV (`fov_mask`)
    label2_path: Path | None = None  # a 2nd observer (DRIVE test, STARE's vk)

    def image(self) -> np.ndarray:
        return read_image(self.image_path)

    def truth(self) -> np.ndarray:
        return binary_mask(read_image(self.label_path))

    def truth2(self) -> np.ndarray | None:
        return None if self.label2_path is None else binary_mask(read_image(self.label2_path))

    def fov(self, image: np.ndarray | None = None) -> np.ndarray:
        """The dataset's FOV mask, or the automatic one where it has none."""
        if self.fov_path is not None:
            return binary_mask(read_image(self.fov_path))
        image = self.image() if image is None else image
        m = fov_mask(image)
        if m is None:
            raise ValueError(f"{self.name}: no field of view found")
        return m


def _stare(root: Path, split: str) -> list[FundusItem]:
    out = []
    for p in sorted((root / "images").glob("im*.*")):
        lab = root / "labels_1st" / f"{p.stem}.ah.ppm"
        if not lab.is_file():
            continue
        second = root / "labels_2nd" / f"{p.stem}.vk.ppm"
        if (p.stem in STARE_HELDOUT) == (split == "heldout"):
            out.append(FundusItem("STARE", p.stem, p, lab, None, second if second.is_file() else None))
    return out


def _hrf(root: Path, split: str) -> list[FundusItem]:
    out = []
    for p in sorted((root / "images").iterdir()):
        lab, fov = root / "labels_1st" / f"{p.stem}.tif", root / "mask" / f"{p.stem}_mask.tif"
        if not lab.is_file():
            continue
        if (p.stem in HRF_HELDOUT) == (split == "heldout"):
            out.append(FundusItem("HRF", p.stem, p, lab, fov if fov.is_file() else None))
    return out


def _drive(root: Path, split: str) -> list[FundusItem]:
    items = read_drive(root, "test" if split == "heldout" else "training")
    return [FundusItem("DRIVE", it.name, it.image_path, it.manual1_path, it.fov_path, it.manual2_path)
            for it in items if it.manual1_path is not None]


def fundus_items(root, dataset: str, split: str = "train") -> list[FundusItem]:
    """The labelled photographs of one data set and split (``"train"`` or ``"heldout"``).

    Examples
    --------
    >>> fundus_items("/nonexistent", "FOO")
    Traceback (most recent call last):
    ...
    ValueError: dataset must be one of ('DRIVE', 'STARE', 'HRF'), got 'FOO'
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    folder = Path(root) / dataset
    if not folder.is_dir():
        raise ValueError(f"no {dataset} folder in {root}")
    return {"DRIVE": _drive, "STARE": _stare, "HRF": _hrf}[dataset](folder, split)
