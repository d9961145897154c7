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
    ``_prob``, in any case, is dropped from the key (`_tag_key`: HRF's ``01_dr_mask.tif``
    pairs with ``01_dr.JPG``). Two files with one key are refused (ValueError naming both):
    pairing never guesses.
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
            key = _tag_key(key)
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


#: What may follow an image's name in its label's (CHASE_DB1's ``Image_01L_1stHO.png`` for
#: ``Image_01L.jpg``): the pairing by prefix of `pair_folders`.
_SEPARATORS = ("_", "-", " ")


def _tag_key(key: str) -> str:
    """``key`` without one trailing tag of `_TAGS`, in any case (IOSTAR's ``_GT``, ``_Mask``)."""
    low = key.lower()
    for t in _TAGS:
        if low.endswith(t) and len(key) > len(t):
            return key[: -len(t)]
    return key


def _pattern_files(pattern: str, imgs: dict[str, Path], what: str) -> dict[str, Path]:
    """The files a ``{name}`` pattern gives for the images ``imgs`` (those that exist and are not
    the image itself)."""
    out = {}
    for k, image in imgs.items():
        p = Path(pattern.replace("{name}", k))
        if p.is_file() and p.resolve() != image.resolve():
            out[k] = p
    if not out:
        raise ValueError(f"{what}: no file matches {pattern} for any image (e.g. "
                         f"{pattern.replace('{name}', next(iter(imgs), 'NAME'))})")
    return out


def _companion(key: str, of) -> bool:
    """Whether ``key`` is one of ``of`` followed by a separator and more (``Image_01L_2ndHO``)."""
    return any(len(key) > len(k) and key.lower().startswith(k.lower()) and key[len(k)] in _SEPARATORS
               for k in of)


def _pair(imgs: dict[str, Path], spec, what: str) -> dict[str, Path]:
    """Each image key's file in ``spec`` (a folder, or a pattern with ``{name}``), where one is found.

    In a folder: the file whose key (`file_key`, less a trailing tag of `_TAGS`) is the
    image's; else the one file whose key starts with the image's and a separator of
    `_SEPARATORS` (and is not another image's file). Two such files are refused: pairing
    never guesses; the message gives the pattern that picks one.
    """
    spec = str(spec)
    if "{name}" in spec:
        return _pattern_files(spec, imgs, what)
    folder = Path(spec)
    images = {p.resolve() for p in imgs.values()}
    by_key: dict[str, Path] = {}
    for k, p in index_folder(folder, what).items():
        t = _tag_key(k)
        if t in by_key:
            old = by_key[t]
            if (old.resolve() in images) == (p.resolve() in images):
                raise ValueError(f"{what}: {old.name} and {p.name} in {folder} both pair with '{t}': "
                                 "keep one of them there")
            if p.resolve() in images:  # the image itself, in the labels' folder: its label wins
                continue
        by_key[t] = p
    out: dict[str, Path] = {}
    for k in imgs:
        if k in by_key and by_key[k].resolve() != imgs[k].resolve():  # never the image itself
            out[k] = by_key[k]
            continue
        # another image's own label (``im1_b.png`` for image ``im1_b``) is not a candidate
        found = [f for f in by_key if _companion(f, [k])
                 and not (f in imgs and by_key[f].resolve() != imgs[f].resolve())]
        if len(found) > 1:
            a, b = sorted(found)[:2]
            rest = by_key[a].name[len(k):]
            raise ValueError(f"{what}: {by_key[a].name} and {by_key[b].name} in {folder} could both be "
                             f"{k}'s: name the one to use with a pattern, e.g. {what} "
                             f"'{folder / ('{name}' + rest)}'")
        if found:
            out[k] = by_key[found[0]]
    return out


def pair_folders(images, labels, labels2=None, fov=None) -> list[DriveImage]:
    """Pair image files with their labels (and a 2nd observer's, and FOV masks) by name.

    A label pairs with an image by `file_key`, less a trailing ``_mask``, ``_fov``,
    ``_labels``, ``_gt``, ``_truth`` or ``_prob`` in any case (STARE: ``im0001.png`` and
    ``im0001.ah.ppm``; HRF: ``01_dr.JPG``, ``01_dr.tif`` and ``01_dr_mask.tif``; IOSTAR:
    ``STAR 01_OSC_GT.tif``), or else by the image's key and a separator (``_``, ``-`` or a
    space) at its start when one file alone fits (``Image_01L_1stHO.png``). Where several
    fit (CHASE_DB1's ``_1stHO`` and ``_2ndHO``), or the names follow another rule, a pattern
    names the file: ``"labels/{name}_1stHO.png"``, ``{name}`` the image's key. In a folder
    that holds images and labels together, a file that is another image's label or mask,
    or whose name is an image's and a separator and more without a label of its own
    (``Image_01L_2ndHO.png``), is not an image.

    Parameters
    ----------
    images : path
        Folder of the images.
    labels : path or str
        Folder (or ``{name}`` pattern) of the 1st observer's labels; every image needs
        one. Labels without an image are ignored (a folder of some of the images scores those).
    labels2 : path or str, optional
        A second observer's labels (STARE's ``labels_2nd``): the human row; images
        without one are left out of that row.
    fov : path, str or "auto", optional
        FOV masks, one per image (a folder or a ``{name}`` pattern); ``"auto"``: the
        automatic FOV (`auto_fov`).

    Returns
    -------
    list of DriveImage
        Sorted by key; ``name`` is the key.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for n in ("Image_01L.jpg", "Image_01L_1stHO.png", "Image_01L_2ndHO.png", "Image_02R.jpg",
    ...           "Image_02R_1stHO.png", "Image_02R_2ndHO.png"):
    ...     _ = (d / n).write_bytes(b"")
    >>> [(i.name, i.manual1_path.name) for i in pair_folders(d, str(d / "{name}_1stHO.png"))]
    [('Image_01L', 'Image_01L_1stHO.png'), ('Image_02R', 'Image_02R_1stHO.png')]
    """
    imgs = index_folder(images, "--images")
    if not imgs:
        raise ValueError(f"--images: no image files in {images}")
    auto = isinstance(fov, str) and fov == "auto"
    if auto:
        auto_fov_function()  # not there: say so before any work
    labs = _pair(imgs, labels, "--labels")
    labs2 = _pair(imgs, labels2, "--labels2") if labels2 else {}
    fovs = _pair(imgs, fov, "--fov") if fov is not None and not auto else {}
    # one folder with images and labels: a file that is another image's label is not an image,
    # nor one named as an image's companion (CHASE_DB1's 2nd observer) that has no label of its own
    used = {p.resolve() for m in (labs, labs2, fovs) for p in m.values()}
    imgs = {k: p for k, p in imgs.items() if p.resolve() not in used
            and not (k not in labs and _companion(k, labs))}
    if not imgs:
        raise ValueError(f"--images: no image files in {images} that are not labels")
    for what, spec, found in (("--labels", labels, labs), ("--fov", fov, fovs)):
        missing = [k for k in imgs if k not in found]
        if missing and (what == "--labels" or not (fov is None or auto)):
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            thing = "label file" if what == "--labels" else "mask"
            raise ValueError(f"{what}: no {thing} for {', '.join(missing[:3])}{more} in {spec} "
                             "(files pair by the name up to the first dot, or give a pattern "
                             "such as 'DIR/{name}_1stHO.png')")
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
