"""Image and mask IO with atomic writes (a crash never leaves half a file behind)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..core.checks import check_spacing
from ..core.values import AssumptionWarning, as_probability

# The process's umask, read once at import (os.umask can only be read by setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)

__all__ = ["atomic_path", "atomic_write_text", "write_image", "read_image", "looks_like_labels",
           "to_probability", "read_spacing", "parse_spacing", "choose_spacing", "IMAGE_SUFFIXES",
           "DiskFullError", "pillow_shape", "check_same_size", "exif_orientation", "warning_line"]


class DiskFullError(OSError):
    """The disk (or the user's quota) ran out while writing; the message says where and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


def _disk_full(e: BaseException) -> bool:
    # ENOSPC/EDQUOT from the OS, or numpy's short write ("65536 requested and 14268 written"),
    # which is what a full disk looks like through ndarray.tofile (tifffile's writer)
    if not isinstance(e, OSError) or isinstance(e, DiskFullError):
        return False
    text = str(e)
    return e.errno in (errno.ENOSPC, errno.EDQUOT) or ("requested and" in text and "written" in text)


def _free(folder: Path) -> str:
    try:
        n = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.1f} GB"


@contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; on success move it over ``path`` at once.

    The temporary file lives in the same folder (so the final ``os.replace`` is atomic)
    and keeps the target's suffix (so writers that choose a format by suffix work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode a plain open() would
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)  # never a partial file, not even on Ctrl-C
        if _disk_full(e):
            raise DiskFullError(errno.ENOSPC, f"the disk is full: could not write {path.name} in "
                                f"{path.parent} ({_free(path.parent)} free now): free some space or choose "
                                "another --out") from None
        raise


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return a


def tiff_metadata(record: dict | None) -> dict:
    """tifffile's ``metadata=`` argument carrying tubediff's ``record`` (`data.outputs`)."""
    from .outputs import RECORD_KEY

    return {} if record is None else {RECORD_KEY: json.dumps(record)}


def write_image(path, data: np.ndarray, record: dict | None = None, spacing=None) -> Path:
    """Write an image or mask atomically; the format follows the suffix.

    ``.png``, ``.gif``, ``.jpg``: float data in [0, 1] is scaled to 0..255 and a
    bool mask to {0, 255}. ``.tif``/``.tiff``: the array is written as it is
    (float32 probability maps keep their values). ``record`` (TIFF and PNG): tubediff's
    record of how the file was made, read back by `data.outputs.read_record`.
    ``spacing`` (TIFF; one length per axis): the voxel spacing, read back by `read_spacing`,
    so that an output measures and refines as its input did.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in (".tif", ".tiff"):
            import tifffile

            a = np.asarray(data)
            meta = tiff_metadata(record)
            if spacing is not None:
                meta["spacing"] = [float(x) for x in spacing]
            tifffile.imwrite(tmp, a.astype(np.uint8) * 255 if a.dtype == bool else a, metadata=meta)
        elif suffix == ".png" and record is not None and (np.ndim(data) == 2 or np.shape(data)[-1] in (3, 4)):
            from PIL import Image, PngImagePlugin

            from .outputs import RECORD_KEY

            info = PngImagePlugin.PngInfo()
            info.add_text(RECORD_KEY, json.dumps(record))
            Image.fromarray(_to_uint8(data)).save(tmp, format="PNG", pnginfo=info)
        elif suffix in (".png", ".gif", ".jpg", ".jpeg", ".bmp"):
            import imageio.v3 as iio

            iio.imwrite(tmp, _to_uint8(data), extension=suffix)
        else:
            raise ValueError(f"cannot write {path.name}: use .tif, .png, .gif or .jpg")
    return path


#: Suffixes `read_image` reads (PPM/PGM/PBM: the netpbm family, e.g. STARE's ``.ah.ppm`` labels).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".gif", ".ppm", ".pgm", ".pbm", ".bmp",
                  ".webp")

#: Name parts that hint at a mask or annotation (a hint only: the content decides).
LABEL_HINTS = ("mask", "manual", "label", "truth", "_gt", ".ah", ".vk", "annot", "fov")


def _squeeze_frames(a: np.ndarray) -> np.ndarray:
    """Drop leading singleton axes (a one-frame GIF or TIFF read as (1, H, W))."""
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    return a


#: What a viewer does to show a photograph by its EXIF Orientation tag (2 to 8; 1 is "as stored").
_ORIENTATION = {2: "mirrored left to right", 3: "rotated 180 degrees", 4: "mirrored top to bottom",
                5: "mirrored and rotated", 6: "rotated 90 degrees clockwise", 7: "mirrored and rotated",
                8: "rotated 90 degrees anticlockwise"}


def exif_orientation(im) -> int:
    """The EXIF Orientation tag (1 to 8) of an image Pillow has opened; 1 ("as stored") when
    there is none or it cannot be read."""
    try:
        tag = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels are read all the same
        return 1
    return tag if tag in _ORIENTATION else 1


def _tiff_orientation(path: Path) -> int:
    # the TIFF Orientation tag (274, the one EXIF borrowed) of the first page; 1 when absent
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            tag = tf.pages.first.tags.get(274)
            value = int(tag.value) if tag is not None else 1
    except Exception:  # noqa: BLE001 - the pixels were read; a tag that cannot be is no tag
        return 1
    return value if value in _ORIENTATION else 1


def _say_orientation(tag: int, h: int, w: int, path: Path, kind: str = "EXIF", stacklevel: int = 4) -> None:
    """An `AssumptionWarning` when a file's (EXIF or TIFF) Orientation tag asks viewers to turn it.

    tubediff reads the pixels as stored, as napari, tifffile, imageio and scikit-image do:
    then a mask or label made in any of them lies on the photograph pixel for pixel, and so
    do tubediff's outputs (which carry no tag). A phone photograph shown upright elsewhere
    is turned here: the note says so, and how to store it upright."""
    if tag != 1:
        warnings.warn(f"{path.name}: its {kind} Orientation tag ({tag}) has photo viewers show it "
                      f"{_ORIENTATION[tag]}; tubediff, like napari, uses the pixels as stored ({h} x {w}), "
                      "and the outputs and labels match those (to work upright, save it turned first, "
                      "e.g. PIL.ImageOps.exif_transpose)", AssumptionWarning, stacklevel=stacklevel)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        # the PNG decoder's raw mode (``RGB;16B``: 16 bits a channel), read before anything loads the
        # pixels (a PNG's EXIF may sit after them) and empties ``im.tile``
        rawmode = str(im.tile[0][3]) if im.format == "PNG" and im.tile else ""
        _say_orientation(exif_orientation(im), im.size[1], im.size[0], path)
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and im.format != "MPO":  # a phone's MPO: the photograph, then previews
            # an animated GIF / WebP / PNG: Pillow gives its first frame; the rest would be lost unsaid
            warnings.warn(f"{path.name} holds {frames} frames: only the first is read (to use them all as "
                          "a stack, save them as one multi-page TIFF)", AssumptionWarning, stacklevel=3)
        if im.mode in ("P", "PA"):
            # palette images (DRIVE's GIF masks, whose raw indices are 0 and 1, palette colours
            # (4, 2, 4) and (252, 254, 252)): grey values when the palette is about grey
            rgb = np.asarray(im.convert("RGB")).astype(np.int16)
            spread = int((rgb.max(-1) - rgb.min(-1)).max()) if rgb.size else 0
            return np.asarray(im.convert("L")) if spread <= 16 else rgb.astype(np.uint8)
        deep = _deep_png(im, path, rawmode)
        if deep is not None:
            return deep
        if im.mode in _AS_RGBA or im.mode in _AS_RGB:
            im = im.convert("RGBA" if im.mode in _AS_RGBA else "RGB")
        return np.asarray(im)


def _deep_png(im, path: Path, rawmode: str) -> np.ndarray | None:
    """A PNG of 16 bits per colour channel (RGB, RGBA, grey + alpha) at its full depth, or None.

    Pillow has no 16-bit colour mode: it keeps the top 8 bits of each channel, so a camera's
    12 bits stored in 16 (values 0 to 4095) become 0 to 15, and the vessels' contrast with
    them (DRIVE ``01``: Dice 0.650 against 0.827). OpenCV reads all 16 when it is installed
    (``opencv-python-headless``); without it the 8 bits are kept and a note says so.
    """
    if im.mode not in ("RGB", "RGBA") or not rawmode.endswith(";16B"):
        return None
    try:
        import cv2
    except ImportError:
        top = np.asarray(im)
        warnings.warn(f"{path.name} stores 16 bits per colour channel, of which only the top 8 are read "
                      f"here (values {int(top.min())} to {int(top.max())} of 255): install "
                      "opencv-python-headless to read all 16, or save it as a 16-bit TIFF",
                      AssumptionWarning, stacklevel=3)
        return None
    a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim != 3 or a.shape[-1] not in (3, 4):
        return None  # not what the header said: Pillow's reading stands
    return np.ascontiguousarray(a[..., [2, 1, 0, 3][: a.shape[-1]]])  # OpenCV's BGR(A) as RGB(A)


# Pillow modes read as RGBA / RGB: grey + alpha ("LA", a PNG) would otherwise be (H, W, 2), which
# every caller takes for a stack of H planes of W x 2 pixels (a volume); CMYK, YCbCr, LAB and HSV
# JPEGs/TIFFs as their RGB colours (the green channel is the one the backbones use)
_AS_RGBA = ("LA", "La", "RGBa")
_AS_RGB = ("CMYK", "YCbCr", "LAB", "HSV")


def pillow_shape(im) -> tuple[int, ...]:
    """The shape `read_image` gives a file Pillow has opened, from its header (mode and size).

    Palette images count as single-channel (`read_image` makes a coloured palette RGB: a 2D
    image either way); grey + alpha is RGBA, CMYK is RGB, as `read_image` converts them.

    Examples
    --------
    >>> from PIL import Image
    >>> pillow_shape(Image.new("LA", (5, 3))), pillow_shape(Image.new("CMYK", (5, 3)))
    ((3, 5, 4), (3, 5, 3))
    """
    w, h = im.size
    bands = (1 if im.mode in ("P", "PA") else 4 if im.mode in _AS_RGBA else 3 if im.mode in _AS_RGB
             else len(im.getbands()))
    return (h, w) if bands == 1 else (h, w, bands)


def _read_tiff(path: Path) -> np.ndarray:
    """``tifffile.imread`` with its log lines kept: a damaged file whose pages cannot be found
    reads as an empty array after a logged line (``invalid offset to first page``); that
    line becomes the ValueError's message instead of a bare warning and a later shape error."""
    import logging

    import tifffile

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    log = logging.getLogger("tifffile")
    keep, propagate = Keep(logging.WARNING), log.propagate
    log.addHandler(keep)
    log.propagate = False
    try:
        a = tifffile.imread(path)
    finally:
        log.removeHandler(keep)
        log.propagate = propagate
    if np.size(a) == 0:
        why = said[0].split("> ", 1)[-1] if said else "the file holds no image"
        raise ValueError(f"not a readable TIFF ({why})")
    return a


def read_image(path) -> np.ndarray:
    """Read an image file (TIFF, PNG, JPEG, GIF, PPM/PGM/PBM, BMP, WebP) as a numpy array.

    TIFFs through tifffile; LZW-compressed ones (DRIVE's) need the optional
    ``imagecodecs`` there, so Pillow decodes them when it is missing. Everything else
    through Pillow, by content (STARE's ``.ppm`` labels are PGM "P5" files). Palette
    images (DRIVE's GIF masks) become their grey values (or RGB for a coloured palette),
    and leading singleton frame axes are dropped (a one-frame GIF is (H, W), not (1, H, W)).
    Grey + alpha becomes RGBA, CMYK RGB (`pillow_shape`); 16-bit colour PNGs keep their 16
    bits when OpenCV is installed (`_deep_png`). Pixels are read as stored: an EXIF
    Orientation tag is not applied, and an `AssumptionWarning` says so, as it does for the
    frames after the first of an animated GIF, WebP or PNG, which are not read.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "m.pgm")
    >>> Image.fromarray(np.array([[0, 255]], np.uint8)).save(p)
    >>> read_image(p).tolist()
    [[0, 255]]
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give an image file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            try:
                a = _squeeze_frames(_read_tiff(path))
                if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):  # a picture, not a stack
                    _say_orientation(_tiff_orientation(path), a.shape[0], a.shape[1], path, "TIFF", 3)
                return a
            except ValueError as e:
                # e.g. LZW-compressed TIFFs (DRIVE's) need imagecodecs; Pillow decodes them
                if "imagecodecs" not in str(e):
                    raise
        return _squeeze_frames(_read_pillow(path))
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def _plane_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    # an image's pixel grid: an RGB(A) photograph's (H, W), a volume's (D, H, W)
    return shape[:-1] if len(shape) == 3 and shape[-1] in (3, 4) else shape


def check_same_size(image, others, what: str = "") -> None:
    """Refuse, from the files' headers (before any work), a label, FOV or other mask whose
    pixel grid is not its image's; the message names both files and both shapes, and when
    the image has an EXIF Orientation tag that turns it and the label is its transpose,
    says that the image's pixels are used as stored.

    ``others``: paths (None skipped). Files whose header cannot be read are left to the
    reader, which says why.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> Image.new("RGB", (6, 4)).save(f"{d}/im.png"); Image.new("L", (5, 4)).save(f"{d}/lab.png")
    >>> check_same_size(f"{d}/im.png", [f"{d}/lab.png"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../lab.png is 4 x 5 pixels but its image .../im.png is 4 x 6: ...
    """
    from PIL import Image

    from .outputs import image_shape

    shape = image_shape(image)
    if shape is None:
        return
    grid = _plane_shape(shape)
    for other in others:
        if other is None:
            continue
        o = image_shape(other)
        if o is None or _plane_shape(o) == grid:
            continue
        og = _plane_shape(o)
        turned = ""
        if len(grid) == 2 and og == grid[::-1]:
            try:
                with Image.open(image) as im:
                    tag = exif_orientation(im)
            except Exception:  # noqa: BLE001 - not a Pillow file (a TIFF read by tifffile): no tag
                tag = 1
            if tag in (5, 6, 7, 8):
                turned = (f"; {Path(image).name} has an EXIF Orientation tag ({tag}) that turns it in photo "
                          "viewers, but tubediff (like napari) uses its pixels as stored: turn the label "
                          "back, or save the image upright (PIL.ImageOps.exif_transpose) and label that")
        raise ValueError(f"{what}{other} is {' x '.join(map(str, og))} pixels but its image {image} is "
                         f"{' x '.join(map(str, grid))}: give it at the image's size (nothing was computed)"
                         + turned)


def looks_like_labels(a: np.ndarray, name: str = "") -> bool:
    """Whether an image read from a file is a mask (a Labels layer) rather than a picture.

    The content decides: a bool array, or a single-channel (or grey RGB) integer image or
    volume with at most two distinct values (0/1, 0/255, a palette GIF's 3/253). A name that hints at a mask
    (``*_mask``, ``*manual*``, ``labels``, STARE's ``.ah``/``.vk``: `LABEL_HINTS`) also
    admits a nearly two-valued image (>= 99% of the pixels at its two extremes, as
    after JPEG compression); a hint alone never turns a photograph into labels.

    Examples
    --------
    >>> looks_like_labels(np.array([[0, 255], [255, 0]], np.uint8))
    True
    >>> looks_like_labels(np.arange(12, dtype=np.uint8).reshape(3, 4), "01_manual1.gif")
    False
    """
    a = np.asarray(a)
    if a.dtype == bool:
        return True
    grey_rgb = a.ndim == 3 and a.shape[-1] in (3, 4) and (a[..., 1] == a[..., 0]).all() \
        and (a[..., 2] == a[..., 0]).all()
    if grey_rgb:
        a = a[..., 0]  # a grey mask stored as RGB (HRF's FOV masks)
    volume = a.ndim == 3 and a.shape[-1] not in (3, 4)  # a mask volume (D, H, W) too
    if not np.issubdtype(a.dtype, np.integer) or not (a.ndim == 2 or volume) or a.size == 0:
        return False
    values = np.unique(a[:: max(1, a.shape[0] // 256), :: max(1, a.shape[1] // 256)])
    if values.size <= 2 and len(np.unique(a)) <= 2:
        return True
    low = name.lower()
    if any(h in low for h in LABEL_HINTS):
        lo, hi = int(a.min()), int(a.max())
        tol = 0.1 * (hi - lo)
        extreme = np.count_nonzero((a <= lo + tol) | (a >= hi - tol))
        return bool(extreme >= 0.99 * a.size)
    return False


def warning_line(message, category) -> str:
    """A warning as the one line the ``tubediff`` command prints: what a reader assumed about a
    file (`AssumptionWarning`) is a note, anything else a warning.

    Examples
    --------
    >>> warning_line("m.png: values 0 and 1 only", AssumptionWarning)
    'tubediff: note: m.png: values 0 and 1 only'
    """
    kind = "note" if issubclass(category, AssumptionWarning) else "warning"
    return f"tubediff: {kind}: {message}"


def to_probability(a: np.ndarray, name: str = "map") -> np.ndarray:
    """A stored probability map as float32 in [0, 1], read by its values
    (`core.values.as_probability`: 0/1 integers as a binary mask, integers up to 255
    divided by 255, larger ones by their type's maximum; floats must lie in [0, 1]).
    An assumption worth knowing is reported as an `AssumptionWarning` (the CLI prints
    it on one line).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     p = to_probability(np.array([[0, 1]], np.uint8), "m.png")
    >>> p.tolist(), str(w[0].message)
    ([[0.0, 1.0]], 'm.png: values 0 and 1 only: read as a binary mask (1 = vessel)')
    """
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        raise ValueError(f"{name}: a probability map must be single-channel, got shape {a.shape}")
    prob, note = as_probability(a, name)
    if note:
        warnings.warn(f"{name}: {note}", AssumptionWarning, stacklevel=2)
    return prob


#: Length units of OME ``PhysicalSize*Unit`` and ImageJ's ``unit``, in micrometres.
_UNITS_UM = {"m": 1e6, "cm": 1e4, "mm": 1e3, "um": 1.0, "micron": 1.0, "microns": 1.0,
             "micrometer": 1.0, "nm": 1e-3, "pm": 1e-6, "a": 1e-4}


def _unit_um(unit, default: float = 1.0) -> float:
    # micro as the micro sign (U+00B5) or the Greek mu (U+03BC); Angstrom as U+00C5 or U+212B
    u = str(unit or "").strip().lower()
    for ch, ascii_ in (("\u00b5", "u"), ("\u03bc", "u"), ("\u00e5", "a"), ("\u212b", "a")):
        u = u.replace(ch, ascii_)
    return _UNITS_UM.get(u, default)


def _resolution(page, tag: str) -> float | None:
    # a TIFF resolution tag holds pixels per unit as a rational: the spacing is its inverse
    t = page.tags.get(tag)
    if t is None:
        return None
    try:
        num, den = t.value
        return den / num if num > 0 and den > 0 else None
    except (TypeError, ValueError):
        return None


def _ome_spacing(xml: str, ndim: int) -> tuple[float, ...] | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for ax in "ZYX"[3 - ndim:]:
        v = pixels.get(f"PhysicalSize{ax}")
        if v is None:
            return None
        sizes.append(float(v) * _unit_um(pixels.get(f"PhysicalSize{ax}Unit", "um")))
    return tuple(sizes)


def read_spacing(path, ndim: int) -> tuple[float, ...] | None:
    """The voxel spacing a TIFF file records, ``(dz, dy, dx)`` (2D ``(dy, dx)``), or None.

    Read, in this order, from OME-XML (``PhysicalSizeZ/Y/X`` with their units, in
    micrometres), tubediff's own outputs (`write_image`'s ``spacing``), ImageJ's metadata
    (``spacing`` for z, the ``XResolution`` and
    ``YResolution`` tags for the plane, in ImageJ's ``unit``), or, for 2D images, the
    plain resolution tags. None when an axis is missing (a volume without a z spacing),
    when a value is not a positive number, and for any other format: the caller then
    takes isotropic voxels or the user's ``--spacing``.

    Examples
    --------
    >>> import tempfile, os, tifffile
    >>> p = os.path.join(tempfile.mkdtemp(), "v.tif")
    >>> tifffile.imwrite(p, np.zeros((4, 8, 8), np.uint16), imagej=True, resolution=(2.0, 2.0),
    ...                  metadata={"spacing": 1.5, "unit": "um"})
    >>> read_spacing(p, 3)
    (1.5, 0.5, 0.5)
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff") or ndim not in (2, 3):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            if tf.is_ome and tf.ome_metadata:
                found = _ome_spacing(tf.ome_metadata, ndim)
                if found is not None:
                    return _positive(found)
            shaped = tf.shaped_metadata  # tubediff's own outputs (`write_image`)
            if shaped and isinstance(shaped[0].get("spacing"), list) and len(shaped[0]["spacing"]) == ndim:
                return _positive(shaped[0]["spacing"])
            dy, dx = _resolution(page, "YResolution"), _resolution(page, "XResolution")
            ij = tf.imagej_metadata or {}
            if dy is None or dx is None:
                return None
            if ij:
                dz = ij.get("spacing") if ndim == 3 else 1.0
                if dz is None:
                    return None
                scale = _unit_um(ij.get("unit"))
                return _positive((float(dz) * scale, dy * scale, dx * scale)[3 - ndim:])
            return _positive((dy, dx)) if ndim == 2 else None
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None


def _positive(vals) -> tuple[float, ...] | None:
    vals = tuple(float(v) for v in vals)
    return vals if all(np.isfinite(v) and v > 0 for v in vals) else None


def parse_spacing(text: str | None, ndim: int | None = None) -> tuple[float, ...] | None:
    """``--spacing DZ,DY,DX`` (or ``DY,DX``; one number: every axis) as a tuple, or None.

    Examples
    --------
    >>> parse_spacing("5,0.6,0.6")
    (5.0, 0.6, 0.6)
    >>> parse_spacing("2", 3)
    (2.0, 2.0, 2.0)
    >>> parse_spacing("5,x,1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --spacing takes positive lengths DZ,DY,DX (a volume) or DY,DX (an image), ...; got '5,x,1'
    """
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    msg = ("--spacing takes positive lengths DZ,DY,DX (a volume) or DY,DX (an image), e.g. 5,0.6,0.6; "
           f"got {text!r}")
    try:
        vals = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        raise ValueError(msg) from None
    if not vals or not all(np.isfinite(v) and v > 0 for v in vals):
        raise ValueError(msg)
    if len(vals) == 1 and ndim is not None:
        vals = vals * ndim
    if ndim is not None and len(vals) != ndim:
        raise ValueError(f"--spacing {text} gives {len(vals)} lengths for a {ndim}D image; give {ndim}")
    return vals


def choose_spacing(path, ndim: int, given=None) -> tuple[tuple[float, ...] | None, str]:
    """The spacing to use for one file and how it was found: the user's (``given``, e.g.
    ``--spacing``), else the file's metadata (`read_spacing`), else isotropic (None).

    Examples
    --------
    >>> choose_spacing("a.png", 2)
    (None, 'none in the file; --spacing sets one')
    >>> choose_spacing("a.png", 3, (5.0, 1.0, 1.0))
    ((5.0, 1.0, 1.0), 'given')
    >>> choose_spacing("a.png", 3, [2])
    ((2.0, 2.0, 2.0), 'given')
    >>> choose_spacing("a.png", 3, (0, 1, 1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: spacing must give one positive length per axis (3 for a 3D array, ...), got (0, 1, 1)
    """
    if given is not None:
        given = tuple(given) if np.iterable(given) else (given,)
        if len(given) not in (1, ndim):  # said with the file's name: one file of many may differ
            raise ValueError(f"--spacing gives {len(given)} lengths but {Path(path).name} is {ndim}D; "
                             f"give {ndim}")
        # one length is every axis's: check_spacing takes it as a number
        return check_spacing(given[0] if len(given) == 1 else given, ndim), "given"
    found = read_spacing(path, ndim)
    if found is not None:
        return found, "from the file's metadata"
    return None, "none in the file; --spacing sets one"


def spacing_text(spacing) -> str:
    """``(5, 0.6, 0.6)`` as ``5 x 0.6 x 0.6``; None as ``1 (isotropic)``."""
    return "1 (isotropic)" if spacing is None else " x ".join(f"{x:g}" for x in spacing)
