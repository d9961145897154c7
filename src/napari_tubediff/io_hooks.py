"""npe2 reader and writer hooks (plain functions: this module does not import napari).

* Reader: the files an annotator has, as the right layer in one step: TIFF (DRIVE's LZW
  ones too, without imagecodecs), PNG, JPEG, GIF, PPM/PGM/PBM (STARE's ``imXXXX.ah.ppm``
  labels are PGM content), BMP. The same `data.io.read_image` the CLI uses reads them;
  one-frame files come back 2D, not (1, H, W). The content decides the layer
  (`data.io.looks_like_labels`): a two-valued single-channel file (0/1, 0/255, DRIVE's
  palette GIFs) is a Labels layer with values 0 and 1 (`data.drive.binary_mask`, the
  rule the CLI reads masks with), and so is a nearly two-valued one whose name or folder
  says mask or label (HRF's anti-aliased ``labels_1st/11_h.tif``); anything else an Image
  layer (RGB kept as RGB). A field-of-view mask (`data.names.fov_like`: ``01_test_mask``)
  opens hidden: shown, it covers the photograph with one colour, the truth's. A volume's
  voxel spacing in its TIFF metadata (ImageJ, OME) is the layer's ``scale``.
* Writer: a Labels layer to ``.tif``/``.tiff`` (the label values as they are) or ``.png``
  (a mask: 255 on labelled pixels, 0 elsewhere, what DRIVE-style tools read back),
  written atomically (`data.io.write_image`): a crash never leaves half a file.

napari offers its own reader for these files too, and asks which one to use when two
can; `prefer_tubediff_readers` makes this plugin's reader the default for the file
patterns where the user has chosen none (the Segment panel calls it once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.drive import binary_mask
from .data.io import IMAGE_SUFFIXES, looks_like_labels, read_image, read_spacing, write_image
from .data.names import fov_like

__all__ = ["get_reader", "get_mask_reader", "read_layers", "read_mask", "write_mask",
           "prefer_tubediff_readers", "READER_PATTERNS"]

#: The manifest's filename patterns (napari matches them case-insensitively).
READER_PATTERNS = tuple(f"*{s}" for s in IMAGE_SUFFIXES)
PLUGIN = "napari-tubediff"


def layer_data(path) -> tuple:
    """One file as a napari layer-data tuple ``(data, meta, kind)``: labels (uint8 0/1) or image.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "im0001.ah.ppm")
    >>> Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(p, format="PPM")
    >>> data, meta, kind = layer_data(p)
    >>> kind, meta["name"], data.tolist()
    ('labels', 'im0001.ah', [[0, 1], [1, 0]])
    """
    p = Path(path)
    a = read_image(p)
    meta = {"name": p.stem}
    rgb = a.ndim == 3 and a.shape[-1] in (3, 4)
    # a volume's voxel spacing (TIFF ImageJ / OME metadata) becomes the layer's scale, which
    # the panels take as the spacing, as `tubediff segment` / `refine` take it from the file
    spacing = read_spacing(p, 3) if a.ndim == 3 and not rgb else None
    if spacing is not None:
        meta["scale"] = spacing
    # the folder's name is a hint too: HRF's labels_1st/11_h.tif (anti-aliased, no hint in
    # its own name, and the image's name) is a mask, not a second photograph
    if looks_like_labels(a, f"{p.parent.name}/{p.name}"):
        if fov_like(p.stem):  # a field of view covers most of the photograph: the panels use it hidden
            meta["visible"] = False
        return binary_mask(a).astype(np.uint8), meta, "labels"
    if rgb:
        meta["rgb"] = True
    return a, meta, "image"


def read_layers(path) -> list[tuple]:
    """The npe2 reader: each file as an Image or a Labels layer (`layer_data`)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    return [layer_data(p) for p in paths]


def read_mask(path) -> list[tuple]:
    """Read one or more masks as napari Labels layer-data tuples (values 0 and 1), whatever
    their content (the old GIF-mask reader's behaviour)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    return [(binary_mask(read_image(p)).astype(np.uint8), {"name": Path(p).stem}, "labels")
            for p in paths]


def _readable(path) -> bool:
    paths = [path] if isinstance(path, str | Path) else list(path)
    return bool(paths) and all(str(p).lower().endswith(IMAGE_SUFFIXES) and not Path(p).is_dir()
                               for p in paths)


def get_reader(path):
    """The npe2 reader hook: `read_layers` for the image files `read_image` reads, else None."""
    return read_layers if _readable(path) else None


def get_mask_reader(path):
    """The old hook name, kept for scripts: `read_mask` for ``.gif`` paths, else None."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or not all(str(p).lower().endswith(".gif") for p in paths):
        return None
    return read_mask


def prefer_tubediff_readers(settings=None) -> list[str]:
    """Make this plugin napari's reader for `READER_PATTERNS` where the user has chosen none.

    napari asks "which reader?" when two plugins can read a file; a choice the user made
    (Preferences > Plugins, or "remember" in that dialog) is kept. Returns the patterns set.
    ``settings``: napari's settings object (default: ``napari.settings.get_settings()``).
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    added = [p for p in READER_PATTERNS if p not in current]
    if added:
        settings.plugins.extension2reader = {**current, **{p: PLUGIN for p in added}}
    return added


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
