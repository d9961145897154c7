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

__all__ = ["DriveImage", "read_drive", "binary_mask", "file_key", "pair_folders", "index_folder",
           "AUTO_FOV"]

#: The automatic field of view `--fov auto` calls, by name ("module:function", taking an image
#: and returning a bool mask, or None for an image that is not a fundus photograph). The
#: function lives with the scale work (core/fov.py); until it is there, `--fov auto` says so.
AUTO_FOV = "napari_tubediff.core.fov:fov_mask"

#: Trailing tags a label or FOV file may carry after the image's key (HRF: ``01_dr_mask.tif``).
_TAGS = ("_mask", "_fov", "_labels", "_label", "_gt", "_truth", "_prob")

_SPLITS = {"test": "test", "training": "training", "train": "training"}
_EXTS = {".tif", ".tiff", ".gif", ".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm"}


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
    fov_auto: bool = False

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
        """Field-of-view mask, bool: the file's; with ``fov_auto`` the automatic one
        (`AUTO_FOV`); all True when there is neither (or the image is no fundus photograph)."""
        if self.fov_path is not None:
            return binary_mask(read_image(self.fov_path))
        image = self.image()
        if self.fov_auto:
            mask = auto_fov(image)
            if mask is not None:
                return np.asarray(mask, bool)
        return np.ones(image.shape[:2], bool)


def auto_fov_function():
    """The function `AUTO_FOV` names; a ValueError when this build does not have it (yet)."""
    import importlib

    module, _, func = AUTO_FOV.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        raise ValueError("the automatic field of view is not in this build yet: give --fov DIR "
                         "(masks named like the images) or --fov none") from None


def auto_fov(image: np.ndarray) -> np.ndarray | None:
    """The automatic field of view (the function `AUTO_FOV` names), or None for an image that
    is not a fundus photograph."""
    return auto_fov_function()(image)


def _index(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        m = re.match(r"(\d+)", p.name)
        if m and p.suffix.lower() in _EXTS and not p.name.startswith("."):
            key = m.group(1).lstrip("0") or "0"
            if key in out:
                raise ValueError(f"{folder}: {out[key].name} and {p.name} both have the number {m.group(1)}: "
                                 "keep one of them there")
            out[key] = p
    return out


def file_key(path) -> str:
    """The pairing key of a file: its name up to the first dot.

    STARE's ``im0001.png`` and ``im0001.ah.ppm`` both give ``im0001``; HRF's
    ``01_dr.JPG`` and ``01_dr.tif`` give ``01_dr``.

    Examples
    --------
    >>> file_key("labels/im0001.ah.ppm"), file_key("01_dr.JPG")
    ('im0001', '01_dr')
    """
    return Path(path).name.split(".", 1)[0]


def index_folder(folder, what: str = "folder", tags: bool = False,
                 prefer_tiff: bool = False) -> dict[str, Path]:
    """The image files of ``folder`` by `file_key` (hidden and non-image files are skipped).

    With ``tags``, a trailing ``_mask``, ``_fov``, ``_labels``, ``_gt``, ``_truth`` or
    ``_prob`` is dropped from the key (HRF's ``01_dr_mask.tif`` pairs with ``01_dr.JPG``).
    Two files with one key are refused (ValueError naming both): pairing never guesses.
    With ``prefer_tiff``, the one exception: a TIFF and another file of the very same
    name but the suffix (``tubediff segment`` writes ``NAME_prob.tif`` and
    ``NAME_prob.png``) give the TIFF (float32, not rounded to 8 bits).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for n in ("im0001.ah.ppm", "im0002.ah.ppm", "notes.txt"):
    ...     _ = (d / n).write_bytes(b"")
    >>> sorted(index_folder(d))
    ['im0001', 'im0002']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{what}: no such folder {folder}")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in _EXTS:
            continue
        key = file_key(p)
        if tags:
            for t in _TAGS:
                if key.endswith(t) and len(key) > len(t):
                    key = key[: -len(t)]
                    break
        if key in out and prefer_tiff and out[key].stem == p.stem:
            tiffs = [q for q in (out[key], p) if q.suffix.lower() in (".tif", ".tiff")]
            if len(tiffs) == 1:
                out[key] = tiffs[0]
                continue
        if key in out:
            raise ValueError(f"{what}: {out[key].name} and {p.name} in {folder} both pair with '{key}': "
                             "keep one of them there")
        out[key] = p
    return out


def pair_folders(images, labels, labels2=None, fov=None) -> list[DriveImage]:
    """Pair image files with their labels (and a 2nd observer's, and FOV masks) by `file_key`.

    Parameters
    ----------
    images, labels : path
        Folders; every image needs a label file with the same key (STARE: ``im0001.png``
        and ``im0001.ah.ppm``; HRF: ``01_dr.JPG`` and ``01_dr.tif``). Labels without an
        image are ignored (a folder of some of the images scores those).
    labels2 : path, optional
        A second observer's labels (STARE's ``labels_2nd``): the human row; images
        without one are left out of that row.
    fov : path or "auto", optional
        FOV masks (``KEY.*`` or ``KEY_mask.*``: HRF's ``01_dr_mask.tif``), one per image;
        ``"auto"``: the automatic FOV (`auto_fov`).

    Returns
    -------
    list of DriveImage
        Sorted by key; ``name`` is the key.
    """
    imgs = index_folder(images, "--images")
    if not imgs:
        raise ValueError(f"--images: no image files in {images}")
    labs = index_folder(labels, "--labels", tags=True)
    same = [k for k, p in imgs.items() if k in labs and labs[k].resolve() == p.resolve()]
    if same:
        raise ValueError(f"--labels: {labs[same[0]].name} is the image itself: give the folder of the labels")
    missing = [k for k in imgs if k not in labs]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ValueError(f"--labels: no label file for {', '.join(missing[:3])}{more} in {labels} "
                         "(pairs are matched by the name up to the first dot)")
    labs2 = index_folder(labels2, "--labels2", tags=True) if labels2 else {}
    fovs: dict[str, Path] = {}
    auto = isinstance(fov, str) and fov == "auto"
    if auto:
        auto_fov_function()  # not there: say so before any work
    if fov is not None and not auto:
        fovs = index_folder(fov, "--fov", tags=True)
        missing = [k for k in imgs if k not in fovs]
        if missing:
            raise ValueError(f"--fov: no mask for {', '.join(missing[:3])} in {fov}")
    return [DriveImage(name=k, image_path=p, manual1_path=labs[k], manual2_path=labs2.get(k),
                       fov_path=fovs.get(k), fov_auto=auto)
            for k, p in sorted(imgs.items())]


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
