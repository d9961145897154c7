"""Input normalisation shared by training and inference."""

from __future__ import annotations

import numpy as np
from skimage.exposure import equalize_adapthist

from .classical import to_grey


def preprocess(image: np.ndarray, fov: np.ndarray | None = None, channel: int | None = 1,
               invert: bool = False) -> np.ndarray:
    """Grey (RGB: the green channel), CLAHE (2D only), then zero mean and unit variance inside
    the FOV. ``channel=None``: the array is grey as it is (volumes). ``invert``: the grey
    is turned upside down first (bright vessels for a network trained on dark ones, or
    the reverse: `backbones.UNetBackbone`'s ``polarity``).

    Returns float32 of the image's spatial shape, zero outside the FOV.

    Examples
    --------
    >>> x = preprocess(np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8))
    >>> x.shape, round(float(x.mean()), 3), round(float(x.std()), 2)
    ((32, 32), 0.0, 1.0)
    """
    g = to_grey(image, channel)
    if invert:
        g = 1.0 - g
    fov = np.ones(g.shape, bool) if fov is None else np.asarray(fov, bool)
    if fov.shape != g.shape:
        raise ValueError(f"field of view {fov.shape} does not match the image {g.shape}")
    inside = g[fov] if fov.any() else g.ravel()
    if inside.size and inside.min() == inside.max():
        # zero variance: nothing to standardise (CLAHE's tiles would invent edges, and the
        # rounding of the mean would be blown up to noise); the backbones answer "no vessel"
        return np.zeros(g.shape, np.float32)
    if g.ndim == 2:
        g = equalize_adapthist(g, clip_limit=0.01)
        inside = g[fov] if fov.any() else g.ravel()
    mean, std = float(inside.mean()), float(inside.std()) or 1.0
    return np.where(fov, (g - mean) / std, 0.0).astype(np.float32)
