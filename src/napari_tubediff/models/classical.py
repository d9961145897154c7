"""A training-free backbone: multi-scale vesselness (scikit-image's Sato filter)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import sato

from ..core.checks import check_field


def to_grey(image: np.ndarray, channel: int | None = 1) -> np.ndarray:
    """A 2D/3D grey float image in [0, 1]; RGB(A) images give ``channel`` (1 = green).

    The green channel is where retinal vessels have the most contrast, so it is the
    default for fundus photographs. ``channel=None`` reads every array as grey (a
    volume whose last axis has 3 or 4 planes is then not taken for RGB).
    """
    a = np.asarray(image)
    if channel is not None and a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., channel]
    a = check_field(a, "image", unit_range=False)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


#: Default expected vessel fraction by dimension: about 12% of a DRIVE field of view is
#: vessel; a vessel tree fills far less of a volume (about 0.3 to 1% of the synthetic ones).
VESSEL_FRACTION = {2: 0.12, 3: 0.01}


@dataclass
class VesselnessBackbone:
    """Multi-scale Sato vesselness, normalised so that 0.5 is a sensible threshold.

    The response is divided by twice its ``1 - vessel_fraction`` quantile inside the
    field of view and clipped to [0, 1], so the strongest ``vessel_fraction`` of the
    pixels lie above 0.5 (about 12% of a DRIVE field of view is vessel). Not trained.

    Parameters
    ----------
    sigmas : tuple of float
        Scales in pixels (about the vessel radii).
    vessel_fraction : float or None
        Expected fraction of vessel pixels inside the field of view; None takes
        `VESSEL_FRACTION` for the input's dimension (0.12 in 2D, 0.01 in 3D).
    polarity : {"dark", "bright", None}
        Vessels darker than the background (fundus green channel) or brighter
        (angiograms inverted, fluorescence). None: "dark" for RGB input, else "bright".
    """

    sigmas: tuple = (1.0, 1.5, 2.0, 3.0)
    vessel_fraction: float | None = None
    polarity: str | None = None
    name: str = "vesselness"

    def predict(self, image: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        """Probability-like field in [0, 1] (float32), zero outside ``fov``.

        Examples
        --------
        >>> img = np.ones((64, 64)); img[30:33, :] = 0.2        # a dark vessel
        >>> p = VesselnessBackbone(polarity="dark").predict(img)
        >>> bool(p[31, 32] > 0.5 > p[10, 32])
        True
        """
        rgb = np.ndim(image) == 3 and np.shape(image)[-1] in (3, 4)
        polarity = self.polarity or ("dark" if rgb else "bright")
        if polarity not in ("dark", "bright"):
            raise ValueError(f"polarity must be 'dark' or 'bright', got {polarity!r}")
        g = to_grey(image)
        if fov is None:
            fov = np.ones(g.shape, bool)
        fov = np.asarray(fov, bool)
        if fov.shape != g.shape:
            raise ValueError(f"field of view {fov.shape} does not match the image {g.shape}")
        if fov.any() and not fov.all():
            # replace the outside by the nearest inside value, so the FOV's rim is no ridge
            idx = ndi.distance_transform_edt(~fov, return_distances=False, return_indices=True)
            g = g[tuple(idx)]
        v = sato(g, sigmas=self.sigmas, black_ridges=polarity == "dark", mode="reflect")
        v = np.where(fov, v, 0.0)
        inside = v[fov] if fov.any() else v.ravel()
        frac = VESSEL_FRACTION[g.ndim] if self.vessel_fraction is None else self.vessel_fraction
        t = float(np.quantile(inside, 1.0 - frac)) if inside.size else 0.0
        if t <= 0:
            return np.zeros(g.shape, np.float32)
        return np.clip(v / (2 * t), 0, 1).astype(np.float32)
