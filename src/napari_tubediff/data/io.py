"""Image and mask IO with atomic writes (a crash never leaves half a file behind)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# The process's umask, read once at import (os.umask can only be read by setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)

__all__ = ["atomic_path", "atomic_write_text", "write_image", "read_image", "to_probability"]


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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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


def write_image(path, data: np.ndarray) -> Path:
    """Write an image or mask atomically; the format follows the suffix.

    ``.png``, ``.gif``, ``.jpg``: float data in [0, 1] is scaled to 0..255 and a
    bool mask to {0, 255}. ``.tif``/``.tiff``: the array is written as it is
    (float32 probability maps keep their values).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in (".tif", ".tiff"):
            import tifffile

            a = np.asarray(data)
            tifffile.imwrite(tmp, a.astype(np.uint8) * 255 if a.dtype == bool else a)
        elif suffix in (".png", ".gif", ".jpg", ".jpeg", ".bmp"):
            import imageio.v3 as iio

            iio.imwrite(tmp, _to_uint8(data), extension=suffix)
        else:
            raise ValueError(f"cannot write {path.name}: use .tif, .png, .gif or .jpg")
    return path


def read_image(path) -> np.ndarray:
    """Read an image file (tif, png, gif, jpg) as a numpy array.

    Palette images (such as DRIVE's GIF masks) are converted to grey values.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            try:
                return tifffile.imread(path)
            except ValueError as e:
                # e.g. LZW-compressed TIFFs (DRIVE's) need imagecodecs; Pillow decodes them
                if "imagecodecs" not in str(e):
                    raise
        from PIL import Image

        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("L")
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def to_probability(a: np.ndarray, name: str = "map") -> np.ndarray:
    """A stored probability map as float32 in [0, 1]: integers are divided by their
    type's maximum (255 for 8-bit), bools become 0/1, floats must already lie in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        raise ValueError(f"{name}: a probability map must be single-channel, got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        return (a / np.iinfo(a.dtype).max).astype(np.float32)
    a = a.astype(np.float32)
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{name}: a float probability map must hold values in [0, 1]")
    return a
