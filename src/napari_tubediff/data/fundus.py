"""A retina-like synthetic sample: an RGB fundus-style photograph with exact vessel truth.

Generated, never downloaded: the vessel tree comes from `synthetic_vessels`, painted dark
(mostly in the green channel, as in real fundus photographs) on an orange disc with a
bright optic disc, vignetting and noise, inside a circular field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .synthetic import synthetic_vessels

__all__ = ["SyntheticFundus", "synthetic_fundus"]


@dataclass
class SyntheticFundus:
    """What `synthetic_fundus` returns.

    Attributes
    ----------
    image : (M, N, 3) uint8
        The RGB photograph (black outside the field of view).
    truth : (M, N) bool
        The vessel mask, inside the field of view.
    fov : (M, N) bool
        The circular field of view.
    """

    image: np.ndarray
    truth: np.ndarray
    fov: np.ndarray


def synthetic_fundus(shape=(256, 256), *, seed: int = 0, noise: float = 0.02,
                     n_breaks: int = 0) -> SyntheticFundus:
    """A fundus-like RGB image with dark vessels, its vessel truth and its circular FOV.

    Parameters
    ----------
    shape : (int, int)
        Image size.
    seed : int
        Random seed; the same seed gives the same image.
    noise : float
        Standard deviation of the Gaussian noise (intensities in [0, 1]).
    n_breaks : int
        Gaps cut into the vessels *as painted* (faded out in the photograph); the truth
        keeps them whole, as an annotator would draw it.

    Returns
    -------
    SyntheticFundus

    Examples
    --------
    >>> f = synthetic_fundus((128, 128), seed=1)
    >>> f.image.shape, f.image.dtype, bool(f.truth.any()), bool((f.truth <= f.fov).all())
    ((128, 128, 3), dtype('uint8'), True, True)
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be 2D, got {shape}")
    h, w = shape
    rng = np.random.default_rng(seed)
    s = synthetic_vessels(shape, seed=seed, n_roots=3, depth=4, n_breaks=n_breaks)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx, radius = (h - 1) / 2, (w - 1) / 2, 0.47 * min(h, w)
    r = np.hypot(yy - cy, xx - cx) / radius
    fov = r <= 1.0
    truth = s.truth & fov
    vignette = 1.0 - 0.45 * np.clip(r, 0, 1) ** 2
    disc = np.exp(-((yy - cy) ** 2 + (xx - (cx + 0.45 * radius)) ** 2) / (2 * (0.09 * radius) ** 2))
    vessel = ndi.gaussian_filter((truth & ~s.breaks).astype(np.float32), 0.7)
    base = np.array([0.85, 0.42, 0.16], np.float32)   # orange-red retina
    drop = np.array([0.25, 0.55, 0.35], np.float32)   # vessels darken green the most
    rgb = base * vignette[..., None] + 0.5 * disc[..., None] * np.array([0.15, 0.5, 0.35], np.float32)
    rgb = rgb * (1.0 - drop * vessel[..., None])
    rgb = rgb + noise * rng.standard_normal(rgb.shape).astype(np.float32)
    rgb = np.clip(rgb, 0, 1) * fov[..., None]
    return SyntheticFundus(image=(rgb * 255 + 0.5).astype(np.uint8), truth=truth, fov=fov)
