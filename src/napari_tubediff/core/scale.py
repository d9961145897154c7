"""Scale: how much an image must be resampled to reach a model's working scale.

A 2D fundus backbone works at a known scale: a field of view ``working_fov`` pixels across
(`WORKING_FOV`, stored in the checkpoint's meta). `estimate_scale` finds the factor for a
new image: for a fundus photograph from its FOV diameter (`napari_tubediff.core.fov`),
otherwise from the dominant vessel width (`vessel_sigma`, against the width the model saw,
``ref_sigma``). `to_working` / `from_working` resample (anti-aliased) there and back.
numpy / scipy / scikit-image only.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import hessian_matrix, hessian_matrix_eigvals
from skimage.transform import resize

from .checks import check_spacing
from .fov import fov_diameter, fov_mask

__all__ = ["WORKING_FOV", "REF_SIGMA", "estimate_scale", "parse_scale", "scaled_shape", "to_working",
           "from_working", "to_working_mask", "vessel_sigma", "vessel_radius"]

#: The shipped 2D backbone's working scale: a fundus FOV 800 pixels across (docs/models.md says
#: why: DRIVE's is 538, STARE's 650, HRF's 3262).
WORKING_FOV = 800.0
#: The dominant vessel scale (`vessel_sigma`) of DRIVE's training images (green channel, whole
#: image) at the working scale: their median, 9.1 (from 3.7 to 27.9 over the 20 images;
#: docs/models.md). `estimate_scale` compares images without a FOV with it; ``ref_sigma`` in
#: a checkpoint's meta overrides it.
REF_SIGMA = 9.1
# factors outside this range are a wrong estimate, not an image (a 40-pixel or 40,000-pixel FOV)
_LIMITS = (1 / 16, 16.0)
# the vessel-width estimate is coarse (one camera's images at one scale spread over a factor
# of 7), so the factor it gives is kept within this range
_WIDTH_LIMITS = (1 / 3, 3.0)


def parse_scale(value) -> float | str:
    """``"auto"`` or a positive factor from a user's ``--scale`` (ValueError otherwise).

    Examples
    --------
    >>> parse_scale("auto"), parse_scale("0.5"), parse_scale(2)
    ('auto', 0.5, 2.0)
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be 'auto' or a positive number, got {value!r}") from None
    if not (np.isfinite(f) and _LIMITS[0] <= f <= _LIMITS[1]):
        raise ValueError(f"scale must be 'auto' or a number between {_LIMITS[0]:g} and {_LIMITS[1]:g}, "
                         f"got {value!r}")
    return f


def _grey(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., 1]  # fundus vessels show best in green
    return a.astype(np.float32)


def _ridge(g: np.ndarray, s: float) -> np.ndarray:
    # scale-normalised line strength: one strong curvature (not a blob's two), minus the
    # slope, which is large beside an edge and zero on a ridge's centre line
    h = hessian_matrix(g, sigma=s, order="rc", use_gaussian_derivatives=False)
    l1, l2 = hessian_matrix_eigvals(h)
    big, small = np.maximum(np.abs(l1), np.abs(l2)), np.minimum(np.abs(l1), np.abs(l2))
    slope = np.hypot(ndi.gaussian_filter(g, s, order=(1, 0)), ndi.gaussian_filter(g, s, order=(0, 1)))
    return (s * s * (big - small) - 2.0 * s * slope).astype(np.float32)


def vessel_sigma(image: np.ndarray, fov: np.ndarray | None = None, *, max_side: int = 1024) -> float:
    """The dominant vessel scale of a 2D image in pixels (a Hessian scale, of the order of
    the width of the vessels that carry most of the line signal).

    Line strength (`_ridge`: scale-normalised Hessian, either polarity, edges penalised)
    is computed at scales from 0.7 pixels up to a sixth of the image, four per octave (a
    pyramid: scales above 2 pixels on the image halved, and so on). Each pixel takes its
    strongest scale; the strongest 10 % of pixels (inside ``fov``) vote for theirs with
    their strength, and the answer is the vote's geometric mean. Images longer than
    ``max_side`` are shrunk first (the answer is scaled back). Resampling an image by
    ``f`` multiplies the answer by about ``f`` (DRIVE's green channel, resampled by 0.5 to
    3: within 20 %; docs/models.md).

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> lines = sum(np.exp(-((xx - c) / 3.0) ** 2) for c in (24, 64, 104))
    >>> s1 = vessel_sigma(lines)
    >>> s2 = vessel_sigma(resize(lines, (256, 256), order=1))
    >>> 1.7 < s2 / s1 < 2.3
    True
    """
    g = _grey(image)
    if g.ndim != 2:
        raise ValueError(f"vessel_sigma takes 2D images, got shape {np.shape(image)}")
    shrink = min(1.0, max_side / max(g.shape))
    if shrink < 1:
        g = resize(g, scaled_shape(g.shape, shrink), order=1, anti_aliasing=True)
        if fov is not None:
            fov = resize(np.asarray(fov, np.float32), g.shape, order=1) > 0.5
    span = float(g.max() - g.min()) or 1.0
    g = ((g - g.min()) / span).astype(np.float32)
    shape = g.shape
    best = np.zeros(shape, np.float32)
    which = np.zeros(shape, np.int16)
    sigmas: list[float] = []
    level, img = 0, g
    while True:
        local = 0.7 * 2.0 ** (np.arange(8) / 4) if level == 0 else 1.4 * 2.0 ** (np.arange(4) / 4)
        for s in local:
            if s * 2 ** level > min(shape) / 6:
                break
            r = _ridge(img, float(s))
            if level:
                r = resize(r, shape, order=1)
            better = r > best
            best[better], which[better] = r[better], len(sigmas)
            sigmas.append(float(s * 2 ** level))
        else:
            level += 1
            img = resize(g, scaled_shape(shape, 0.5 ** level), order=1, anti_aliasing=True)
            continue
        break
    inside = np.ones(shape, bool) if fov is None else np.asarray(fov, bool)
    strength = best[inside]
    if not sigmas or strength.size == 0 or not strength.max() > 0:
        raise ValueError("no line-like structure found to estimate the scale from: give --scale")
    top = strength >= np.quantile(strength, 0.9)
    votes = np.bincount(which[inside][top], weights=strength[top], minlength=len(sigmas))
    return float(np.exp((votes * np.log(sigmas)).sum() / votes.sum()) / shrink)


# below this many pixels on a side no vessel width can be measured (the finest scales need ~6 sigma)
_MIN_SIDE = 16

def estimate_scale(image: np.ndarray, fov=None, *, working_fov: float = WORKING_FOV,
                   ref_sigma: float = REF_SIGMA) -> tuple[float, str]:
    """The factor that brings ``image`` to the working scale, and how it was found.

    Fundus photographs (``fov`` given, or found by `fov_mask`): ``working_fov / diameter``
    of the FOV (DRIVE resampled by 0.5 to 3: within 2 %). Other images:
    ``ref_sigma / vessel_sigma(image)``, a coarse estimate kept within 1/3 to 3.

    Returns
    -------
    (factor, how) : (float, str)
        ``how`` is ``"fov"``, ``"vessel width"`` or ``"native"`` (an image too small or
        too featureless to measure: factor 1, with a warning for the latter). A vessel
        width outside the estimate's range gives its limit, 1/3 or 3, with a warning.

    Examples
    --------
    >>> yy, xx = np.mgrid[:200, :200]
    >>> img = np.zeros((200, 200, 3), np.uint8)
    >>> img[np.hypot(yy - 100, xx - 100) < 90] = (200, 100, 40)
    >>> f, how = estimate_scale(img, working_fov=358)
    >>> round(f, 1), how
    (2.0, 'fov')
    """
    if fov is None and np.ndim(image) in (2, 3):  # colour or grey photographs (`fov_mask`)
        fov = fov_mask(image)
    if fov is not None:
        factor, how = working_fov / fov_diameter(fov), "fov"
    elif min(np.shape(image)[:2]) < _MIN_SIDE:
        # too small to measure a vessel width in: used as it is (the backbone says if it
        # can take it at all)
        return 1.0, "native"
    else:
        try:
            sigma = vessel_sigma(image)
        except ValueError:
            # a blank or featureless image: nothing to measure, nothing to resample for
            warnings.warn("no line-like structure to estimate the scale from: the image is used as "
                          "it is (give a scale to resample it)", UserWarning, stacklevel=2)
            return 1.0, "native"
        factor, how = ref_sigma / sigma, "vessel width"
        if not _WIDTH_LIMITS[0] <= factor <= _WIDTH_LIMITS[1]:
            # a tiny crop or an odd texture: the estimate is a guess there (64-pixel fundus
            # crops came out 1.9 to 3 against 1.5 for the whole photograph), so say so
            factor = float(np.clip(factor, *_WIDTH_LIMITS))
            warnings.warn(f"the vessel width is outside what the scale estimate measures: the image is "
                          f"resampled by its limit, {factor:.3g} (give a scale if the result looks wrong)",
                          UserWarning, stacklevel=2)
    return float(np.clip(factor, *_LIMITS)), how


def scaled_shape(shape, factor: float) -> tuple[int, int]:
    """The 2D size ``shape`` takes at ``factor`` (rounded, at least 1 pixel).

    Examples
    --------
    >>> scaled_shape((584, 565), 1.5)
    (876, 848)
    """
    return tuple(max(1, int(round(n * factor))) for n in shape[:2])


def to_working(image: np.ndarray, factor: float, *, order: int = 1) -> np.ndarray:
    """``image`` (2D, or 2D with channels last) resampled by ``factor``, anti-aliased when
    shrinking; float32 in the input's value range. ``factor == 1`` returns it as it is.

    Examples
    --------
    >>> to_working(np.ones((10, 20, 3), np.uint8), 0.5).shape
    (5, 10, 3)
    """
    if factor == 1:
        return np.asarray(image)
    a = np.asarray(image)
    out = scaled_shape(a.shape, factor) + tuple(a.shape[2:])
    return resize(a.astype(np.float32), out, order=order, anti_aliasing=factor < 1,
                  preserve_range=True).astype(np.float32)


def to_working_mask(mask: np.ndarray, factor: float) -> np.ndarray:
    """A boolean mask resampled by ``factor`` (the area-weighted value above 1/2)."""
    if factor == 1:
        return np.asarray(mask, bool)
    return to_working(np.asarray(mask, np.float32), factor) > 0.5


def from_working(field: np.ndarray, shape, *, order: int = 1, smooth: bool = True) -> np.ndarray:
    """A field computed at the working scale, back at the input's 2D ``shape`` (channels,
    if any, first: ``(C, h, w) -> (C, *shape)``); anti-aliased when shrinking unless
    ``smooth`` is False (a field that was itself interpolated from that grid).

    Examples
    --------
    >>> from_working(np.ones((4, 6), np.float32), (8, 12)).shape
    (8, 12)
    """
    f = np.asarray(field)
    shape = tuple(shape[:2])
    if f.shape[-2:] == shape:
        return f
    out = (*f.shape[:-2], *shape)
    shrink = shape[0] < f.shape[-2]
    return resize(f.astype(np.float32), out, order=order, anti_aliasing=smooth and shrink and f.ndim == 2,
                  preserve_range=True).astype(np.float32)


def vessel_radius(mask: np.ndarray, spacing=None) -> float:
    """The typical vessel radius of a binary vessel mask, in the units of ``spacing``.

    The median, over the ridge of the distance map (mask voxels at least as far from the
    background as each of their neighbours: the centre lines, found by
    `scipy.ndimage.maximum_filter`), of the distance to the background
    (`scipy.ndimage.distance_transform_edt` with ``sampling = spacing``): a tube of radius
    r gives r to within half a voxel, whatever its direction. Not `skimage.morphology.
    skeletonize`: in 3D it deletes tubes an even number of voxels wide entirely (scikit-image
    0.26). A vessel cut by the border is measured against its sides, not the border. 2D or
    3D. The 3D backbone (`models.classical.VolumeBackbone`) measures it on its own mask.

    Raises ValueError for an empty mask (nothing to measure: give the radius).

    Examples
    --------
    >>> zz, yy, xx = np.mgrid[:21, :41, :40]
    >>> tube = (zz - 10) ** 2 + (yy - 20) ** 2 <= 4 ** 2          # along x, radius 4 voxels
    >>> round(vessel_radius(tube)), round(vessel_radius(tube, spacing=(0.5, 0.5, 0.5)))
    (4, 2)
    """
    m = np.asarray(mask, bool)
    if not m.any():
        raise ValueError("no vessel voxels to measure the vessel radius on: give the radius (--scale)")
    sp = check_spacing(spacing, m.ndim) or (1.0,) * m.ndim
    k = 3  # the border: the mask extended by a few voxels (edge padding)
    dist = ndi.distance_transform_edt(np.pad(m, k, mode="edge"), sampling=sp)[(slice(k, -k),) * m.ndim]
    ridge = m & (dist >= ndi.maximum_filter(dist, size=3) - 1e-6)
    return float(np.median(dist[ridge]))
