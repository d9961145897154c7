"""A training-free backbone: multi-scale vesselness (scikit-image's Sato filter), and the
vessel polarity (dark vessels on a bright background, as in fundus photographs, or bright
ones, as in angiograms and fluorescence microscopy) decided from the image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import sato, threshold_li, threshold_otsu, threshold_triangle
from skimage.measure import label, regionprops

from ..core.checks import check_field, check_spacing
from ..core.scale import vessel_radius

__all__ = ["to_grey", "VesselnessBackbone", "VolumeBackbone", "vessel_polarity", "polarity_contrast",
           "POLARITIES", "VESSEL_FRACTION"]

#: The polarity choices: decided from the image, vessels darker, or vessels brighter.
POLARITIES = ("auto", "dark", "bright")


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


def _is_colour(image: np.ndarray) -> bool:
    a = np.asarray(image)
    return a.ndim == 3 and a.shape[-1] in (3, 4) and not (
        (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _fill_outside(g: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """``g`` with the outside of ``fov`` replaced by the nearest inside value, so the FOV's
    rim is no ridge."""
    if fov.any() and not fov.all():
        idx = ndi.distance_transform_edt(~fov, return_distances=False, return_indices=True)
        return g[tuple(idx)]
    return g


def _disc_inside(g: np.ndarray) -> np.ndarray | None:
    """A dark surround's inside, when ``g`` (2D, in [0, 1]) is a bright convex disc on a near
    black border (a grey fundus photograph), else None. Only used to keep the disc's rim
    out of the polarity decision when no field of view is given."""
    if g.ndim != 2:
        return None
    dark = ndi.gaussian_filter(g, 2) < 0.1
    lab = label(dark)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    surround = np.isin(lab, edge[edge > 0])
    if not surround.any():
        return None
    inside = ndi.binary_fill_holes(~surround)
    lab = label(inside)
    if lab.max() == 0:
        return None
    big = max(regionprops(lab), key=lambda r: r.area)
    # a fundus disc is large and convex; a vessel tree on a black background is neither
    if not 0.25 <= big.area / g.size <= 0.97 or big.solidity < 0.9:
        return None
    return lab == big.label


def _background(g: np.ndarray, size: float, k: int = 4) -> np.ndarray:
    """A median background over windows of ``size`` pixels, computed at 1/``k`` of the size
    (the background is smooth; a full-size median filter is slow)."""
    from skimage.transform import resize

    small = resize(g, tuple(max(1, n // k) for n in g.shape), anti_aliasing=True)
    med = ndi.median_filter(small, size=max(3, int(size // k) | 1), mode="reflect")
    return resize(med, g.shape, order=1)


def polarity_contrast(image: np.ndarray, fov: np.ndarray | None = None,
                      sigmas: tuple = (1.0, 2.0, 3.0), fraction: float = 0.1,
                      channel: int | None = 1) -> dict[str, float]:
    """How strongly the image holds dark and bright tubes: ``{"dark": c, "bright": c}``.

    For each polarity, Sato's vesselness picks the ``fraction`` of pixels (inside the FOV,
    away from its rim) with the strongest response, and ``c`` is how far they lie, on
    average, below ("dark") or above ("bright") the local background (a median over a
    window of 8 x the largest sigma, which tubes do not move). A tube of the wrong
    polarity answers on its flanks, which are at the background's level, so its contrast
    stays small. The vesselness response alone does not separate them (its flank answer
    is about as strong), nor do a Gaussian background (pulled towards the vessels) or
    top-hats (bright texture between vessels): measured on DRIVE's grey test images,
    those picked "bright" on several, this rule on none (benchmarks/polarity_drive.py).
    Grey input (RGB: ``channel``, see `to_grey`); 2D or 3D.

    Examples
    --------
    >>> img = np.ones((48, 48)); img[20:23, :] = 0.3; img[:, 30:32] = 0.3     # dark vessels
    >>> c = polarity_contrast(img)
    >>> c["dark"] > c["bright"]
    True
    """
    g = to_grey(image, channel)
    if fov is None:
        fov = _disc_inside(g)
    fov = np.ones(g.shape, bool) if fov is None else np.asarray(fov, bool)
    if fov.shape != g.shape:
        raise ValueError(f"field of view {fov.shape} does not match the image {g.shape}")
    g = _fill_outside(g, fov)
    margin = int(round(2 * max(sigmas)))
    inner = ndi.binary_erosion(fov, iterations=margin) if fov.sum() > 50 * margin ** g.ndim else fov
    if not inner.any():
        inner = np.ones(g.shape, bool)
    highpass = (g - _background(g, 8 * max(sigmas) + 1))[inner]
    out = {}
    for polarity, sign in (("dark", -1.0), ("bright", 1.0)):
        r = sato(g, sigmas=sigmas, black_ridges=polarity == "dark", mode="reflect")[inner]
        top = r >= np.quantile(r, 1.0 - fraction)
        out[polarity] = float((sign * highpass[top]).mean()) if top.any() else 0.0
    return out


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Means over k x k (x k) blocks (the image cropped to whole blocks)."""
    a = a[tuple(slice(0, (n // k) * k) for n in a.shape)]
    shape = [x for n in a.shape for x in (n // k, k)]
    return a.reshape(shape).mean(axis=tuple(range(1, 2 * a.ndim, 2)))


def vessel_polarity(image: np.ndarray, fov: np.ndarray | None = None, channel: int | None = 1) -> str:
    """``"dark"`` or ``"bright"``: whether the vessels in ``image`` are darker or brighter
    than their background.

    Colour images are taken for fundus photographs (dark vessels, strongest in the green
    channel). Grey images and volumes are decided by `polarity_contrast` inside ``fov``
    (without one, a grey fundus photograph's black surround is found and left out); a tie
    goes to "dark". Large images and volumes are measured at a reduced size (block means
    down to about a million pixels, a quarter million voxels).
    ``channel=None``: every array is grey (a volume whose last axis has 3 planes).

    Examples
    --------
    >>> from napari_tubediff.data.synthetic import synthetic_vessels
    >>> s = synthetic_vessels((96, 96), seed=0)            # bright vessels
    >>> vessel_polarity(s.image), vessel_polarity(1 - s.image)
    ('bright', 'dark')
    """
    if channel is not None and _is_colour(image):
        return "dark"
    g = to_grey(image, channel)
    f = None if fov is None else np.asarray(fov, bool)
    budget = 1_000_000 if g.ndim == 2 else 250_000  # a 3D Hessian costs far more per voxel
    if g.size > 1.5 * budget:
        # only the decision: block means keep the tubes' contrast at a tractable size
        k = int(np.ceil((g.size / budget) ** (1 / g.ndim)))
        g = _block_mean(g, k)
        if f is not None:
            f = _block_mean(f.astype(np.float32), k) > 0.5
    c = polarity_contrast(g, f, channel=None)
    return "bright" if c["bright"] > c["dark"] else "dark"


#: The vessel fraction the Segment panel starts from, by dimension: about 12% of a DRIVE field
#: of view is vessel; a vessel tree fills far less of a volume (about 0.3 to 1% of the synthetic
#: ones). `VesselnessBackbone` uses the 2D one by default; in 3D it thresholds by Otsu.
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
        `VESSEL_FRACTION` in 2D (0.12) and, in 3D, Otsu's threshold of the response (a
        volume's vessel fraction varies too much, 1 to 40 %, for a fixed one).
    polarity : {"auto", "dark", "bright"}
        Vessels darker than the background (fundus photographs) or brighter (angiograms,
        fluorescence microscopy); "auto" (default) decides per image (`vessel_polarity`:
        colour images are fundus photographs, grey ones are measured). None means "auto".
    """

    sigmas: tuple = (1.0, 1.5, 2.0, 3.0)
    vessel_fraction: float | None = None
    polarity: str | None = "auto"
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
        polarity = self.polarity or "auto"
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
        g = to_grey(image)
        if fov is not None and np.shape(fov) != g.shape:
            raise ValueError(f"field of view {np.shape(fov)} does not match the image {g.shape}")
        if polarity == "auto":
            polarity = vessel_polarity(image, fov)
        self.last_polarity = polarity  # what "auto" chose, for the panel and the CLI to show
        fov = np.ones(g.shape, bool) if fov is None else np.asarray(fov, bool)
        g = _fill_outside(g, fov)
        v = sato(g, sigmas=self.sigmas, black_ridges=polarity == "dark", mode="reflect")
        v = np.where(fov, v, 0.0)
        inside = v[fov] if fov.any() else v.ravel()
        if self.vessel_fraction is None and g.ndim == 3:
            t = float(threshold_otsu(inside)) if inside.size and np.ptp(inside) > 0 else 0.0
            return np.clip(v / (2 * t), 0, 1).astype(np.float32) if t > 0 else np.zeros(g.shape, np.float32)
        frac = VESSEL_FRACTION[g.ndim] if self.vessel_fraction is None else self.vessel_fraction
        t = float(np.quantile(inside, 1.0 - frac)) if inside.size else 0.0
        if t <= 0:
            return np.zeros(g.shape, np.float32)
        return np.clip(v / (2 * t), 0, 1).astype(np.float32)


#: `VolumeBackbone`'s smoothing: a Gaussian of this many voxels along the finest axis (physical:
#: this times the smallest spacing), chosen on the synthetic volumes (docs/results.md, "Real
#: volumes").
SMOOTH_VOXELS = 1.0
#: The histogram thresholds `VolumeBackbone` offers (scikit-image's); Li's is the default,
#: chosen leave-one-out on the two real volumes (each volume's figure uses the threshold that
#: won on the other; scripts/volume_results.py).
THRESHOLDS = {"li": threshold_li, "otsu": threshold_otsu, "triangle": threshold_triangle}


@dataclass
class VolumeBackbone:
    """The training-free 3D default: bright (or dark) voxels above a threshold taken from the
    data, with the vessel radius measured on them.

    The volume (grey, scaled to [0, 1]; dark vessels inverted) is smoothed by a Gaussian of
    `SMOOTH_VOXELS` voxels along its finest axis (the same physical width along the others:
    ``spacing``), and Li's minimum cross-entropy threshold ``t`` of the smoothed volume
    (inside ``fov``; `skimage.filters.threshold_li`) separates vessel from background: a
    region term, so vessels of any width are filled, not only their walls (a vesselness
    filter at one scale answers on the walls of vessels wider than that scale). No fixed
    foreground fraction: ``t`` comes from the intensity histogram. The probability is
    ``(s - b) / (2 (t - b))`` clipped to [0, 1], with ``b`` the median of the smoothed
    volume (the background): 0 on the background, 0.5 at the threshold, 1 at twice its
    height above the background. The vessel radius (`core.scale.vessel_radius` of the
    thresholded volume, in the units of ``spacing``) is kept in ``last_radius``, for the
    user to see (the CLI and the Segment panel show it). Not trained.

    Parameters
    ----------
    spacing : (dz, dy, dx) or None
        Voxel size (physical units; None: isotropic, 1).
    polarity : {"auto", "dark", "bright"}
        As `VesselnessBackbone` ("auto": `vessel_polarity`).
    radius : float or None
        The expected vessel radius (units of ``spacing``); None measures it. It does not
        change the probability, only what is reported and handed on (``last_radius``).
    smooth : float
        The Gaussian's width in voxels along the finest axis (default `SMOOTH_VOXELS`).
    threshold : {"li", "otsu", "triangle"}
        The histogram threshold (scikit-image's); "li" by default (`THRESHOLDS`).
    """

    spacing: tuple | None = None
    polarity: str | None = "auto"
    radius: float | None = None
    smooth: float = SMOOTH_VOXELS
    threshold: str = "li"
    name: str = "region3d"

    def predict(self, image: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        """Probability-like field in [0, 1] (float32), zero outside ``fov``.

        Examples
        --------
        >>> zz, yy, xx = np.mgrid[:24, :40, :40]
        >>> vol = 100 + 900.0 * (((yy - 20) ** 2 + (xx - 14) ** 2) <= 36)   # a tube 13 voxels wide
        >>> bb = VolumeBackbone(polarity="bright")
        >>> p = bb.predict(vol)
        >>> bool(p[12, 20, 14] > 0.5 > p[12, 20, 30]), 5.5 < bb.last_radius < 7.5   # filled, radius 6
        (True, True)
        """
        polarity = self.polarity or "auto"
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
        g = to_grey(image, channel=None)
        if g.ndim != 3:
            raise ValueError(f"the region3d backbone takes grey volumes (D, H, W), got shape "
                             f"{np.shape(image)}")
        sp = check_spacing(self.spacing, 3) or (1.0, 1.0, 1.0)
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {', '.join(THRESHOLDS)}, got {self.threshold!r}")
        if not (np.isfinite(self.smooth) and self.smooth >= 0):
            raise ValueError(f"smooth must be a number of voxels >= 0, got {self.smooth!r}")
        if fov is not None and np.shape(fov) != g.shape:
            raise ValueError(f"field of view {np.shape(fov)} does not match the volume {g.shape}")
        if polarity == "auto":
            polarity = vessel_polarity(g, fov, channel=None)
        self.last_polarity = polarity
        if polarity == "dark":
            g = 1.0 - g
        fov = np.ones(g.shape, bool) if fov is None else np.asarray(fov, bool)
        g = _fill_outside(g, fov)
        # the same physical width along every axis: fewer voxels along the coarse (z) axis
        s = ndi.gaussian_filter(g, [self.smooth * min(sp) / d for d in sp]).astype(np.float32)
        inside = s[fov]
        b = float(np.median(inside)) if inside.size else 0.0
        t = float(THRESHOLDS[self.threshold](inside)) if inside.size and np.ptp(inside) > 0 else b
        self.last_threshold = t
        if not t > b:  # no contrast: nothing above the background
            self.last_radius = self.radius
            return np.zeros(g.shape, np.float32)
        p = np.clip((s - b) / (2.0 * (t - b)), 0.0, 1.0).astype(np.float32)
        p[~fov] = 0.0
        mask = p >= 0.5
        self.last_radius = (float(self.radius) if self.radius is not None
                            else vessel_radius(mask, sp) if mask.any() else None)
        return p
