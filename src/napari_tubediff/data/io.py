"""Image and mask IO with atomic writes (a crash never leaves half a file behind)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# The process's umask, read once at import (os.umask can only be read by setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)

__all__ = ["atomic_path", "atomic_write_text", "write_image", "read_image", "to_probability",
           "DiskFullError"]


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


def write_image(path, data: np.ndarray, record: dict | None = None) -> Path:
    """Write an image or mask atomically; the format follows the suffix.

    ``.png``, ``.gif``, ``.jpg``: float data in [0, 1] is scaled to 0..255 and a
    bool mask to {0, 255}. ``.tif``/``.tiff``: the array is written as it is
    (float32 probability maps keep their values). ``record`` (TIFF and PNG): tubediff's
    record of how the file was made, read back by `data.outputs.read_record`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in (".tif", ".tiff"):
            import tifffile

            a = np.asarray(data)
            tifffile.imwrite(tmp, a.astype(np.uint8) * 255 if a.dtype == bool else a,
                             metadata=tiff_metadata(record))
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
