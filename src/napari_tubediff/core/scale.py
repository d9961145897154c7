"""Scale: how much an image must be resampled to reach a model's working scale.

A 2D fundus backbone works at a known scale: a field of view ``working_fov`` pixels across
(`WORKING_FOV`, stored in the checkpoint's meta). `estimate_scale` finds the factor for a
new image: for a fundus photograph from its FOV diameter (`napari_tubediff.core.fov`),
otherwise from the dominant vessel width (`vessel_sigma`, against the width the model saw,
``ref_sigma``). `to_working` / `from_working` resample (anti-aliased) there and back.
numpy / scipy / scikit-image only.
"""

from __future__ import annotations

import numpy as np
from skimage.feature import hessian_matrix, hessian_matrix_eigvals
from skimage.transform import resize

from .fov import fov_diameter, fov_mask

__all__ = ["WORKING_FOV", "REF_SIGMA", "estimate_scale", "parse_scale", "scaled_shape", "to_working",
           "from_working", "to_working_mask", "vessel_sigma"]

#: The shipped 2D backbone's working scale: a fundus FOV 800 pixels across (docs/models.md says
#: why: DRIVE's is 538, STARE's 650, HRF's 3262).
WORKING_FOV = 800.0
#: The dominant vessel scale (`vessel_sigma`) of DRIVE's training images at the working scale;
#: `estimate_scale` compares grey images without a FOV with it. Measured by
#: scripts/train_fundus.py (``ref_sigma`` in the checkpoint's meta overrides it).
REF_SIGMA = 2.6
# factors outside this range are a wrong estimate, not an image (a 40-pixel or 40,000-pixel FOV)
_LIMITS = (1 / 16, 16.0)
# the scales vessel_sigma tries: 0.7 to 24 pixels, 1/8 octave apart
_SIGMAS = 0.7 * 2.0 ** (np.arange(41) / 8)


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


def vessel_sigma(image: np.ndarray, fov: np.ndarray | None = None) -> float:
    """The dominant vessel scale of a 2D image, in pixels (a Hessian scale, about a third of
    the width of the vessels that carry most of the ridge signal).

    At each of 41 scales (0.7 to 24 pixels), the scale-normalised Hessian ridge strength
    ``sigma**2 * max(|l1|, |l2|)`` is taken where one eigenvalue dominates the other
    (line-like, either polarity); the strongest 2 % of pixels over all scales vote with
    their strength for their best scale, and the vote's peak is refined by a parabola in
    log-scale. The answer scales with the image: resampling by ``f`` multiplies it by
    about ``f``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :96]
    >>> lines = sum(np.exp(-((xx - c) / 4.0) ** 2) for c in (20, 48, 76))
    >>> s1 = vessel_sigma(lines)
    >>> s2 = vessel_sigma(resize(lines, (192, 192), order=1))
    >>> 1.8 < s2 / s1 < 2.2
    True
    """
    g = _grey(image)
    if g.ndim != 2:
        raise ValueError(f"vessel_sigma takes 2D images, got shape {np.shape(image)}")
    span = float(g.max() - g.min()) or 1.0
    g = (g - g.min()) / span
    inside = np.ones(g.shape, bool) if fov is None else np.asarray(fov, bool)
    sigmas = _SIGMAS[_SIGMAS < min(g.shape) / 6]
    best = np.zeros(g.shape, np.float32)
    which = np.zeros(g.shape, np.int16)
    for k, s in enumerate(sigmas):
        h = hessian_matrix(g, sigma=float(s), order="rc", use_gaussian_derivatives=False)
        l1, l2 = hessian_matrix_eigvals(h)  # l1 >= l2
        big = np.maximum(np.abs(l1), np.abs(l2))
        small = np.minimum(np.abs(l1), np.abs(l2))
        r = (s * s * (big - small)).astype(np.float32)  # a line: one curvature, not a blob's two
        better = r > best
        best[better], which[better] = r[better], k
    strength = best[inside]
    if strength.size == 0 or not strength.max() > 0:
        raise ValueError("no line-like structure found to estimate the scale from: give --scale")
    top = strength >= np.quantile(strength, 0.98)
    votes = np.bincount(which[inside][top], weights=strength[top], minlength=len(sigmas))
    votes = np.convolve(votes, np.ones(3) / 3, mode="same")
    k = int(votes.argmax())
    logs = np.log(sigmas)
    if 0 < k < len(sigmas) - 1:
        a, b, c = votes[k - 1], votes[k], votes[k + 1]
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den < 0 else 0.0
        return float(np.exp(logs[k] + shift * (logs[1] - logs[0])))
    return float(sigmas[k])


def estimate_scale(image: np.ndarray, fov=None, *, working_fov: float = WORKING_FOV,
                   ref_sigma: float = REF_SIGMA) -> tuple[float, str]:
    """The factor that brings ``image`` to the working scale, and how it was found.

    Fundus photographs (``fov`` given, or found by `fov_mask`): ``working_fov / diameter``
    of the FOV. Other images: ``ref_sigma / vessel_sigma(image)``. The factor is kept
    within 1/16 to 16.

    Returns
    -------
    (factor, how) : (float, str)
        ``how`` is ``"fov"`` or ``"vessel width"``.

    Examples
    --------
    >>> from napari_tubediff.data.fundus import synthetic_fundus
    >>> f, how = estimate_scale(synthetic_fundus((200, 200)).image, working_fov=94)
    >>> round(f, 2), how
    (1.0, 'fov')
    """
    if fov is None and np.ndim(image) == 3:
        fov = fov_mask(image)
    if fov is not None:
        factor, how = working_fov / fov_diameter(fov), "fov"
    else:
        factor, how = ref_sigma / vessel_sigma(image), "vessel width"
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


def from_working(field: np.ndarray, shape, *, order: int = 1) -> np.ndarray:
    """A field computed at the working scale, back at the input's 2D ``shape`` (channels,
    if any, first: ``(C, h, w) -> (C, *shape)``); anti-aliased when shrinking.

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
    return resize(f.astype(np.float32), out, order=order, anti_aliasing=shrink and f.ndim == 2,
                  preserve_range=True).astype(np.float32)
