"""The field of view (FOV) of a fundus photograph: the bright disc on the dark (or flat grey) surround.

`fov_mask` finds it (None for images that are not fundus photographs), `fov_diameter`
measures it in pixels (the scale estimate reads it: `napari_tubediff.core.scale`), and
`resolve_fov` turns a user's choice ("auto", "none", a mask array) into the mask the
pipeline uses. numpy / scipy / scikit-image only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

__all__ = ["fov_mask", "fov_diameter", "is_fundus", "resolve_fov"]

# a fundus photograph's surround is near black; its retina is orange-red. The corner
# patches (this fraction of the shorter side) must be dark next to the image's bright part.
_CORNER = 0.06
# the disc must cover a sensible fraction of the frame (DRIVE 0.68, STARE ~0.7, HRF 0.84)
_AREA = (0.25, 0.97)
# a grey photograph's disc must also be convex (area / convex hull; red-free fundus photographs
# of HRF and DRIVE 0.995 to 0.998): a grey microscopy image's bright structure is not
_SOLIDITY = 0.95
# a surround that is not dark (painted grey or white) must be uniform: its colour within this
# fraction of the image's range in most of the corners (JPEG noise on a flat grey: < 0.02)
_FLAT = 0.05


def _bright_channel(image: np.ndarray) -> np.ndarray:
    """The per-pixel maximum over the colour channels, as float in [0, 1]-ish units.

    The maximum (in practice the red channel) is the brightest view of the retina, so its
    dark periphery still stands out from the black surround, whatever the camera's colour.
    """
    a = np.asarray(image)
    a = a.max(axis=-1) if a.ndim == 3 else a
    a = a.astype(np.float32)
    top = float(np.percentile(a, 99.5)) or 1.0
    return a / top


def _corners(a: np.ndarray) -> np.ndarray:
    c = max(2, int(round(_CORNER * min(a.shape[:2]))))
    return np.concatenate([a[:c, :c].ravel(), a[:c, -c:].ravel(), a[-c:, :c].ravel(), a[-c:, -c:].ravel()])


def _is_colour(image: np.ndarray) -> bool:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        return False
    rgb = a[..., :3].astype(np.float32)
    # a grey image stored as RGB has equal channels: no fundus photograph does
    spread = float(np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean())
    return spread > 1e-3 * (float(rgb.max()) or 1.0)


def _solidity(mask: np.ndarray) -> float:
    # area / convex hull area, on a copy of at most ~512 pixels a side (the hull is slow on HRF's)
    step = max(1, max(mask.shape) // 512)
    return float(regionprops(mask[::step, ::step].astype(np.uint8))[0].solidity)


def fov_mask(image: np.ndarray) -> np.ndarray | None:
    """The automatic field of view of a fundus photograph, or None when the image is not one.

    The brightest channel is smoothed and thresholded between the surround's level (the
    corners) and the retina's (the part above Otsu's threshold), at 30 % of the way up;
    holes are filled and the largest connected component is kept. An image is a fundus
    photograph when its four corners are dark (their lower quartile below a
    quarter of the retina's level; at least three quarters of their pixels below the
    threshold) and the disc covers 25 % to 97 % of the frame; a grey photograph (red-free,
    or a colour one turned grey) also needs a convex disc (`_SOLIDITY`). A surround that is
    not dark but one flat grey (painted grey or white by an export tool) is found by colour
    instead: the disc is what differs from the corners' grey (`_flat_surround_mask`; it must
    be convex and not one flat tone). Anything else (grey microscopy, angiograms without a
    dark or flat surround, a colour photograph filling the frame) gets None, never a bogus mask.

    Parameters
    ----------
    image : (M, N), (M, N, 3) or (M, N, 4) array
        The photograph, colour or grey, any dtype.

    Returns
    -------
    (M, N) bool or None

    Examples
    --------
    >>> yy, xx = np.mgrid[:120, :120]
    >>> disc = np.hypot(yy - 60, xx - 60) < 50
    >>> img = np.zeros((120, 120, 3), np.uint8)
    >>> img[disc] = (200, 100, 40)
    >>> bool((fov_mask(img) == disc).mean() > 0.98)
    True
    >>> bool((fov_mask(img[..., 1]) == disc).mean() > 0.98)      # a grey photograph
    True
    >>> fov_mask(np.where(disc, 0, 200).astype(np.uint8)) is None  # bright corners: not one
    True
    """
    a = np.asarray(image)
    colour = _is_colour(a)
    if not colour and not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        return None  # a volume, or not an image
    if a.ndim == 3 and a.shape[-1] == 4 and a[..., 3].min() < a[..., 3].max():
        # a transparent surround (alpha 0 over white or any colour) is no retina: seen on black
        a = a[..., :3] * (a[..., 3:].astype(np.float32) / float(a[..., 3].max()))
    rgb = a[..., :3] if a.ndim == 3 else a
    a = _bright_channel(rgb)
    # smoothing at ~1/300 of the frame: noise and vessels do not cut the disc's edge
    sigma = max(1.0, min(a.shape) / 300)
    s = ndi.gaussian_filter(a, sigma)
    corners = _corners(s)
    # the 25th percentile: STARE's corners carry grey text and a lighter rim here and there
    bg = float(np.percentile(corners, 25))
    try:
        otsu = float(threshold_otsu(s))
    except ValueError:  # a constant image
        return None
    above = s[s > otsu]
    if above.size == 0:
        return None
    fg = float(np.median(above))
    if not fg > 0:
        return None
    if bg > 0.25 * fg:  # the corners are not dark next to the retina: a grey or white surround?
        return _flat_surround_mask(rgb, sigma)
    t = bg + 0.3 * (fg - bg)
    if float((corners < t).mean()) < 0.75:
        return None  # most of the corners must lie outside the disc
    return _disc(s > t, convex=not colour)


def _disc(mask: np.ndarray, convex: bool) -> np.ndarray | None:
    """The largest component of ``mask``, holes filled, if it covers a sensible part of the
    frame (`_AREA`) and, with ``convex``, is convex (`_SOLIDITY`); else None."""
    lab = label(mask, connectivity=1)
    if lab.max() == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    mask = ndi.binary_fill_holes(lab == int(sizes.argmax()))
    if not _AREA[0] <= float(mask.mean()) <= _AREA[1]:
        return None
    if convex and _solidity(mask) < _SOLIDITY:
        return None
    return mask


def _flat_surround_mask(rgb: np.ndarray, sigma: float) -> np.ndarray | None:
    """The disc of a photograph whose surround is one flat grey that is not dark (a black
    surround painted grey or white by an export tool): the pixels whose colour differs from
    the corners' (any channel), the disc convex and not flat itself. None when the corners
    are not one grey (a coloured surround is no export tool's), or the disc is one flat tone."""
    x = np.asarray(rgb, np.float32)
    x = x[..., None] if x.ndim == 2 else x
    top = float(np.percentile(x, 99.5)) or 1.0
    s = np.stack([ndi.gaussian_filter(x[..., c] / top, sigma) for c in range(x.shape[-1])], -1)
    corners = np.stack([_corners(s[..., c]) for c in range(s.shape[-1])], -1)
    surround = np.median(corners, axis=0)
    if float((np.abs(corners - surround).max(-1) < _FLAT).mean()) < 0.75:
        return None  # the corners are not one colour: no surround (a frame-filling image)
    if float(np.ptp(surround)) > _FLAT:
        return None  # a coloured surround (retina-like orange corners): not a painted one
    d = np.abs(s - surround).max(-1)
    try:
        otsu = float(threshold_otsu(d))
    except ValueError:
        return None
    above = d[d > otsu]
    if above.size == 0:
        return None
    # as for a dark surround: 30 % of the way up from the surround to the retina
    t = max(_FLAT, 0.3 * float(np.median(above)))
    if float((np.abs(corners - surround).max(-1) < t).mean()) < 0.75:
        return None
    # a convex disc whatever the colour: the colour difference alone marks any structure
    mask = _disc(d > t, convex=True)
    if mask is None:
        return None
    low, high = np.percentile(s.max(-1)[mask], [10, 90])  # (the blurred rim left out)
    if high - low < _FLAT:
        return None  # one flat tone inside too: a shape on a background, not a retina
    return mask


def is_fundus(image: np.ndarray) -> bool:
    """True when `fov_mask` finds a field of view (a photograph with a dark surround).

    Examples
    --------
    >>> is_fundus(np.zeros((16, 16)))
    False
    """
    return fov_mask(image) is not None


def _fitted_diameter(fov: np.ndarray) -> float | None:
    # a circle fitted to the disc's edge off the frame (scikit-image's least squares)
    from skimage.measure import CircleModel

    edge = fov & ~ndi.binary_erosion(fov)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False
    pts = np.argwhere(edge)[:, ::-1].astype(float)
    if len(pts) < 3:
        return None
    if hasattr(CircleModel, "from_estimate"):  # scikit-image >= 0.26
        model = CircleModel.from_estimate(pts)
        radius = float(model.radius) if model else None
    else:
        model = CircleModel()
        radius = float(model.params[2]) if model.estimate(pts) else None
    # the edge pixels' centres lie half a pixel inside the disc's outermost ones
    return None if radius is None or not np.isfinite(radius) else 2.0 * radius + 2.0


def fov_diameter(fov: np.ndarray) -> float:
    """The FOV disc's diameter in pixels: the longer side of its bounding box.

    Cameras often clip the disc at the top and bottom (HRF; STARE's flat edges) but not
    across, so the longer side is the diameter. A disc that the frame clips along both
    axes (an off-centre crop: the disc cut at the top and the left) has no such side: a
    circle is fitted to its edge where it lies inside the frame, and the larger of the two
    is taken. ValueError for an empty mask.

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :120]
    >>> disc = np.hypot(yy - 50, xx - 60) <= 40
    >>> fov_diameter(disc)
    81.0
    >>> bool(abs(fov_diameter(disc[20:, 30:]) - 81) < 1.5)      # cut at the top and the left
    True
    """
    fov = np.asarray(fov, bool)
    if fov.ndim != 2 or not fov.any():
        raise ValueError("the field of view is empty: give a mask with the disc set, or --fov none")
    rows, cols = np.flatnonzero(fov.any(1)), np.flatnonzero(fov.any(0))
    longest = float(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    touches = [idx[0] == 0 or idx[-1] == n - 1 for idx, n in ((rows, fov.shape[0]), (cols, fov.shape[1]))]
    if not all(touches):
        return longest
    fitted = _fitted_diameter(fov)
    # a clipped disc is at least as wide as what is seen of it
    return fitted if fitted is not None and fitted > longest else longest


def resolve_fov(image: np.ndarray, fov="auto") -> np.ndarray | None:
    """The mask the pipeline uses for ``fov``: ``"auto"`` (`fov_mask`, None for images that
    are not fundus photographs), ``"none"`` or None (no FOV), or a mask array (any dtype;
    non-zero is inside), checked against the image's size.

    Examples
    --------
    >>> resolve_fov(np.zeros((8, 8)), "none") is None
    True
    >>> resolve_fov(np.zeros((8, 8)), np.ones((8, 8))).all()
    np.True_
    """
    if fov is None or (isinstance(fov, str) and fov.lower() == "none"):
        return None
    if isinstance(fov, str):
        if fov.lower() != "auto":
            raise ValueError(f"fov must be 'auto', 'none' or a mask, got {fov!r}")
        return fov_mask(image)
    m = np.asarray(fov)
    if m.ndim == 3 and m.shape[-1] in (3, 4):
        m = m[..., 0]
    if m.dtype != bool:
        m = m > (127 if np.issubdtype(m.dtype, np.integer) and m.max() > 1 else 0.5)
    shape = np.shape(image)[:2] if np.ndim(image) == 3 and np.shape(image)[-1] in (3, 4) else np.shape(image)
    if m.shape != tuple(shape):
        raise ValueError(f"the field of view {m.shape} does not match the image {tuple(shape)}")
    if not m.any():
        raise ValueError("the field of view mask is empty: give a mask with the disc set, or --fov none")
    return m
