"""Input checks shared by the core: every bad input ends in a ValueError that says
what was wrong and what to do, before any numerics run."""

from __future__ import annotations

import numbers
import os

import numpy as np

__all__ = ["check_field", "check_directions", "check_lambda", "check_positive", "check_steps",
           "check_spacing", "check_planes", "MIN_PLANES",
           "relative_spacing", "available_memory", "check_memory", "check_snapshot_memory",
           "BLOCKWISE_HINT"]

#: Direction vectors whose length is within this of 1 count as unit vectors.
UNIT_TOL = 1e-3
#: Direction vectors shorter than this count as "no direction" (zero vectors).
ZERO_TOL = 1e-6


def check_field(u, name: str = "u", *, unit_range: bool = True) -> np.ndarray:
    """Return ``u`` as a float32 2D or 3D array after checking it.

    Raises ValueError for a non-numeric array, colour channels, a dimension other
    than 2 or 3, NaN or inf, and (with ``unit_range``) values outside [0, 1].
    """
    a = np.asarray(u)
    if a.dtype == bool:
        a = a.astype(np.float32)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        raise ValueError(
            f"{name} has shape {a.shape}: this looks like an image with colour channels. "
            "Pass a single-channel probability field (for a fundus photograph, the green "
            "channel); a 3D volume needs more than 4 pixels along its last axis.")
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (rows, cols) or 3D (planes, rows, cols), "
                         f"got {a.ndim}D with shape {a.shape}")
    if min(a.shape) < 1:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    bad = ~np.isfinite(a)  # in the input's own dtype: 1e300 is finite there
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s); "
                         "replace them (e.g. with np.nan_to_num) before refining")
    if unit_range:
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} must be a probability field in [0, 1], got values in "
                             f"[{lo:.4g}, {hi:.4g}]; rescale or clip it first")
    with np.errstate(over="ignore"):
        a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds values beyond float32's range (|x| > 3.4e38); rescale it first")
    return a


def check_directions(directions, shape: tuple[int, ...], name: str = "directions") -> np.ndarray:
    """Return a float32 direction field of shape ``(ndim, *shape)`` after checking it.

    Vectors must be unit length (within ``UNIT_TOL``) or zero (shorter than
    ``ZERO_TOL``), which means "no direction": the tensor is then isotropic,
    ``lambda_perp * I``. Anything else raises ValueError; `normalize_directions`
    turns an arbitrary field into a valid one.
    """
    v = np.asarray(directions)
    ndim = len(shape)
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric array, got dtype {v.dtype}")
    if v.shape != (ndim, *shape):
        raise ValueError(f"{name} must have shape (ndim, *spatial) = {(ndim, *shape)} "
                         f"(component i along array axis i), got {v.shape}")
    v = v.astype(np.float32, copy=False)
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    norm = np.sqrt(np.einsum("i...,i...->...", v, v, dtype=np.float64))
    bad = (norm >= ZERO_TOL) & (np.abs(norm - 1.0) > UNIT_TOL)
    if bad.any():
        raise ValueError(
            f"{name} must hold unit vectors (or zero vectors where the direction is undefined); "
            f"{int(bad.sum())} vector(s) have lengths between {float(norm[bad].min()):.4g} and "
            f"{float(norm[bad].max()):.4g}. Use napari_tubediff.normalize_directions first.")
    return v


def check_lambda(value, shape: tuple[int, ...], name: str):
    """Return a float or a float32 array broadcast to ``shape``; must be finite and >= 0."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        x = float(value)
        if not np.isfinite(x) or x < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        return x
    a = np.asarray(value)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be a number or a numeric array, got {value!r}")
    if a.ndim == 0:
        return check_lambda(float(a), shape, name)
    try:
        a = np.broadcast_to(a.astype(np.float32), shape)
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not match the field's shape {shape}") from None
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name} must be finite and >= 0 everywhere")
    return a


def check_positive(value, name: str) -> float:
    """A finite number > 0 (for dt)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    x = float(value)
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return x


def check_steps(value, name: str = "steps", minimum: int = 0) -> int:
    """A whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


#: The fewest planes a stack is segmented with as a volume. A vessel 2 voxels in radius (the
#: 3D backbones' usual scale) needs 2 * 2 + 1 planes for its cross-section along z, and a
#: 2-4 plane TIFF is as often channels or a time series as a z-stack. Measured on the liver
#: volume's planes 20-22 (labels_1st): region3d on the 3-plane slab Dice 0.355, the same
#: planes of the whole volume 0.576, vesselness plane by plane 0.628 (docs/reliability.md).
MIN_PLANES = 5


def check_planes(shape: tuple[int, ...], name: str = "the image") -> None:
    """ValueError for a grey stack ``(D, H, W)`` of 2 to ``MIN_PLANES - 1`` planes, saying what to do.

    Examples
    --------
    >>> check_planes((5, 64, 64)); check_planes((64, 64)); check_planes((64, 64, 3))
    >>> check_planes((3, 64, 64), "z.tif")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: z.tif is a stack of 3 planes (3, 64, 64): too few to segment as a volume ...
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 3 and shape[-1] not in (3, 4) and 1 < shape[0] < MIN_PLANES:
        raise ValueError(f"{name} is a stack of {shape[0]} planes {shape}: too few to segment as a volume "
                         f"(at least {MIN_PLANES}), and they may be channels or time points: segment the "
                         "whole z-stack, or save each plane (or the one channel) as its own 2D image")


def check_spacing(spacing, ndim: int) -> tuple[float, ...] | None:
    """Voxel spacing ``(dz, dy, dx)`` (2D: ``(dy, dx)``) as a tuple of floats, or None.

    None means isotropic unit spacing. A single number is the same spacing on every axis.
    Each entry must be a finite number > 0 (any length unit: the lengths that go with it,
    such as a Hessian ``sigma``, are then in the same unit).

    Examples
    --------
    >>> check_spacing((3, 1, 1), 3)
    (3.0, 1.0, 1.0)
    >>> check_spacing(None, 2) is None
    True
    >>> check_spacing((1, 1), 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: spacing must give one positive length per axis (3 for a 3D array, ...), got (1, 1)
    """
    if spacing is None:
        return None
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        spacing = (spacing,) * ndim
    try:
        vals = tuple(float(x) for x in spacing)
    except (TypeError, ValueError):
        vals = ()
    axes = "(dz, dy, dx)" if ndim == 3 else "(dy, dx)"
    if len(vals) != ndim or not all(np.isfinite(x) and x > 0 for x in vals):
        raise ValueError(f"spacing must give one positive length per axis ({ndim} for a {ndim}D "
                         f"array, e.g. {axes}), got {tuple(spacing) if np.iterable(spacing) else spacing!r}")
    return vals


def relative_spacing(spacing, ndim: int) -> tuple[float, ...] | None:
    """`check_spacing`, divided by its smallest entry (None when every axis is alike).

    The pipeline's lengths (``RefineSettings.sigma``, ``dt`` with the lambdas) are in
    pixels of the finest axis, so a layer scaled in micrometres refines as one in pixels
    and only the anisotropy changes the result.

    Examples
    --------
    >>> relative_spacing((5.0, 0.625, 0.625), 3)
    (8.0, 1.0, 1.0)
    >>> relative_spacing((0.5, 0.5), 2) is None
    True
    """
    vals = check_spacing(spacing, ndim)
    if vals is None:
        return None
    lo = min(vals)
    rel = tuple(x / lo for x in vals)
    return None if all(x == 1.0 for x in rel) else rel


#: Assumed free memory when neither psutil, /proc/meminfo nor sysconf can say (bytes).
FALLBACK_AVAILABLE = 8 << 30
#: What to do with an image too large for memory (the folder path refines in blocks).
BLOCKWISE_HINT = ("refine it in blocks: put it in a folder and run `tubediff refine FOLDER --chunk 256` "
                  "(docs/batch.md), or call napari_tubediff.batch.refine_chunked")


def available_memory() -> int:
    """Bytes of memory available to a new allocation now.

    psutil's ``available`` when installed, else Linux's ``MemAvailable`` (free memory
    plus reclaimable caches), else the physical memory from ``os.sysconf``, else
    `FALLBACK_AVAILABLE`.

    Examples
    --------
    >>> available_memory() > 0
    True
    """
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_AVAILABLE


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(shape: tuple[int, ...], bytes_per_voxel: float, what: str,
                 hint: str = BLOCKWISE_HINT) -> int:
    """Estimated peak bytes of ``what`` on an array of ``shape``; ValueError (with the figure)
    when it exceeds `available_memory`, before any work starts.

    Examples
    --------
    >>> check_memory((100, 100), 40, "refining")
    400000
    >>> check_memory((10**6, 10**6), 40, "refining", hint="use less")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: refining 1000000x1000000 needs about 37252.9 GiB (40 bytes per pixel), ...; use less
    """
    n = float(np.prod([float(x) for x in shape]))
    need = int(n * bytes_per_voxel)
    avail = available_memory()
    if need > avail:
        unit = "pixel" if len(shape) == 2 else "voxel"
        raise ValueError(f"{what} {'x'.join(map(str, shape))} needs about {_size(need)} "
                         f"({bytes_per_voxel:g} bytes per {unit}), more than the {_size(avail)} "
                         f"available; {hint}")
    return need


def check_snapshot_memory(shape: tuple[int, ...], snapshots: int, run_bytes_per_voxel: float,
                          itemsize: int = 4) -> int:
    """Peak bytes of a step-by-step run that keeps ``snapshots`` fields of ``shape``: the run
    itself (``run_bytes_per_voxel``, e.g. `napari_tubediff.core.diffusion.DIFFUSE_BYTES`) plus
    the snapshots. ValueError with the figures, and how many snapshots would fit, when that
    exceeds `available_memory`.

    Examples
    --------
    >>> check_snapshot_memory((64, 64, 64), 10, 46)  # 12 MiB run + 10 MiB of snapshots
    22544384
    >>> check_snapshot_memory((10**5, 10**5, 100), 50, 46)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 50 snapshots of 100000x100000x100 (3725.3 GiB each) and the diffusion (42840.8 GiB) need ...
    """
    n = float(np.prod([float(x) for x in shape]))
    each = int(n * itemsize)
    run = int(n * run_bytes_per_voxel)
    need = run + int(snapshots) * each
    avail = available_memory()
    if need > avail:
        fit = (avail - run) // max(each, 1)
        what = (f"at most {fit} snapshot(s) fit: lower 'snapshots kept'" if fit >= 2 else
                f"not even the diffusion and 2 snapshots fit; {BLOCKWISE_HINT}")
        raise ValueError(f"{snapshots} snapshots of {'x'.join(map(str, shape))} ({_size(each)} each) and "
                         f"the diffusion ({_size(run)}) need {_size(need)}, more than the {_size(avail)} "
                         f"available; {what}")
    return need
