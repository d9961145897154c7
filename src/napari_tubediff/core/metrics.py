"""Segmentation metrics for tubular structures: overlap (Dice), centre-line overlap
(clDice), connectivity (VCA) and topology (Betti-number errors), 2D and 3D.

Definitions follow ../shared/METHOD.md ("Metrics") and ../shared/REFERENCES.md:

* Masks: a bool array is used as it is; anything else is binarised with
  ``u >= 0.5`` (`to_mask`, the FR-UNet code base's convention), integers after
  `core.values.integer_scale` (0/1 as they are, up to 255 divided by 255), the rule
  the file readers use too.
* Connectivity: 8-connected in 2D, 26-connected in 3D (``connectivity=ndim``) for
  the foreground; holes and cavities use the complementary 4 / 6-connectivity.
* Field of view: ``fov`` (a mask of the same shape) restricts Dice, clDice and the
  Betti errors to the pixels inside it (both masks are cut to the FOV first). VCA
  follows the reference and counts on the whole image; `vca_fov` is the
  FOV-restricted variant.

Edge cases (the references leave them undefined):

====================  =====  =======  ===================  ===============
case                  Dice   clDice   VCA                  Betti errors
====================  =====  =======  ===================  ===============
both empty            1.0    1.0      1.0 (= 1/1)          0
prediction empty      0.0    0.0      1 / (n_gt + 1)       b(gt)
truth empty           0.0    0.0      n_pred + 1           b(pred)
====================  =====  =======  ===================  ===============
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import euler_number, label
from skimage.morphology import skeletonize

from .values import integer_scale

__all__ = [
    "to_mask",
    "dice",
    "cldice",
    "skeleton",
    "vca",
    "vca_fov",
    "count_components",
    "betti_numbers",
    "betti_errors",
    "evaluate",
]


def to_mask(u, threshold: float = 0.5) -> np.ndarray:
    """Binary mask: bool arrays as they are, others ``u >= threshold``; integers are
    first read as probabilities by their values (`core.values.integer_scale`: 0/1 as
    they are, 0..255 divided by 255), so a 0/1 and a 0/255 mask give the same mask.

    Examples
    --------
    >>> to_mask(np.array([0.2, 0.5, 0.9]))
    array([False,  True,  True])
    >>> to_mask(np.array([0, 1], np.uint8)), to_mask(np.array([0, 127, 128, 255], np.uint8))
    (array([False,  True]), array([False, False,  True,  True]))
    """
    a = np.asarray(u)
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"a mask must be numeric or bool, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"a mask must be real, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and np.isnan(a).any():
        # NaN >= 0.5 is False: a NaN prediction would silently score as "no vessel"
        raise ValueError(f"a mask holds {int(np.isnan(a).sum())} NaN value(s); replace them first")
    if np.issubdtype(a.dtype, np.integer):
        return a / integer_scale(a)[0] >= threshold
    return a >= threshold


def _spatial_mask(mask) -> np.ndarray:
    # a 2D or 3D, non-empty mask (label and euler_number fail with tracebacks otherwise)
    m = to_mask(mask)
    if m.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got {m.ndim}D with shape {m.shape}")
    if m.size == 0:
        raise ValueError(f"the mask is empty (shape {m.shape})")
    return m


def _pair(pred, gt, fov=None):
    p = to_mask(pred)
    g = to_mask(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    _spatial_mask(p)
    if fov is not None:
        f = to_mask(fov)
        if f.shape != p.shape:
            raise ValueError(f"field of view {f.shape} and masks {p.shape} differ in shape")
        p = p & f
        g = g & f
    return p, g


def dice(pred, gt, fov=None) -> float:
    """Dice = 2|P and L| / (|P| + |L|); 1.0 when both are empty.

    Examples
    --------
    >>> dice(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]]))
    0.6666666666666666
    """
    p, g = _pair(pred, gt, fov)
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((p & g).sum()) / total


def skeleton(mask) -> np.ndarray:
    """Centre lines of a 2D or 3D mask: `skimage.morphology.skeletonize`, with no object lost.

    scikit-image's 3D thinning (Lee 1994, scikit-image 0.26) deletes an object that is an even
    number of voxels thick along the first axis entirely (a 4 x 4 straight tube has no
    skeleton), which would score a perfect 3D prediction at clDice 0. An object left without
    a skeleton voxel is thinned again after one voxel is taken off one side of it along each
    axis in turn (the first that keeps a skeleton wins), and as a last resort keeps its
    voxel farthest from the background. 2D masks are as `skeletonize` gives them.

    Examples
    --------
    >>> tube = np.zeros((12, 12, 16), bool); tube[4:8, 4:8, 2:14] = True   # 4 voxels thick
    >>> int(skeleton(tube).sum()) > 0, bool((skeleton(tube) <= tube).all())
    (True, True)
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask.copy()
    sk = skeletonize(mask)
    if mask.ndim != 3:
        return sk
    lab, n = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    lost = np.setdiff1d(np.arange(1, n + 1), np.unique(lab[sk]))
    for i in lost:
        obj = lab == i
        for axis in range(3):
            # one voxel off the far side along ``axis``: an even thickness becomes odd
            trimmed = obj & np.roll(obj, -1, axis=axis)
            trimmed[(slice(None),) * axis + (-1,)] = False
            thin = skeletonize(trimmed) if trimmed.any() else trimmed
            if thin.any():
                sk |= thin
                break
        else:
            sk[np.unravel_index(np.argmax(ndi.distance_transform_edt(obj)), obj.shape)] = True
    return sk



def cldice(pred, gt, fov=None) -> float:
    """Centre-line Dice (Shit et al., CVPR 2021), 2D or 3D.

    ``tprec = |S_P and L| / |S_P|``, ``tsens = |S_L and P| / |S_L|``, clDice their
    harmonic mean, with skeletons from `skeleton` (``skimage.morphology.skeletonize``). Both
    empty gives 1.0; exactly one empty gives 0.0.

    Examples
    --------
    >>> line = np.zeros((5, 9), bool); line[2, 1:8] = True
    >>> cldice(line, line)
    1.0
    """
    p, g = _pair(pred, gt, fov)
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    sp, sg = skeleton(p), skeleton(g)
    tprec = int((sp & g).sum()) / max(int(sp.sum()), 1)
    tsens = int((sg & p).sum()) / max(int(sg.sum()), 1)
    if tprec + tsens == 0:
        return 0.0
    return 2.0 * tprec * tsens / (tprec + tsens)


def count_components(mask) -> int:
    """Foreground components, 8-connected in 2D and 26-connected in 3D."""
    m = _spatial_mask(mask)
    return int(label(m, connectivity=m.ndim).max()) if m.any() else 0


def vca(pred, gt) -> float:
    """Vessel connectivity assessment as in FR-UNet's code ("CCC"): lower is better.

    ``(components(pred) + 1) / (components(gt) + 1)``: OpenCV's component count
    includes the background label, hence the ``+ 1``. Counted on the whole image
    (no field of view), 8-connected in 2D (26 in 3D).

    Examples
    --------
    >>> gt = np.zeros((5, 9), bool); gt[2, :] = True               # 1 vessel
    >>> pred = gt.copy(); pred[2, 4] = False                        # broken in 2
    >>> vca(pred, gt)                                               # (2 + 1) / (1 + 1)
    1.5
    """
    p, g = _pair(pred, gt)
    return (count_components(p) + 1) / (count_components(g) + 1)


def vca_fov(pred, gt, fov) -> float:
    """`vca` counted inside the field of view only (not the reference definition)."""
    p, g = _pair(pred, gt, fov)
    return (count_components(p) + 1) / (count_components(g) + 1)


def betti_numbers(mask) -> tuple[int, ...]:
    """Betti numbers of a binary mask: (b0, b1) in 2D, (b0, b1, b2) in 3D.

    b0: foreground components (8 / 26-connected); in 2D b1: holes, background
    components (4-connected) enclosed by foreground; in 3D b2: enclosed cavities
    (6-connected background components) and b1 (tunnels) from the Euler
    characteristic, ``b1 = b0 + b2 - chi``.

    Examples
    --------
    >>> ring = np.zeros((7, 7), bool); ring[1:6, 1:6] = True; ring[3, 3] = False
    >>> betti_numbers(ring)
    (1, 1)
    """
    m = _spatial_mask(mask)
    b0 = count_components(m)
    # pad with background so the outside is one background component
    bg = ~np.pad(m, 1)
    n_bg = int(label(bg, connectivity=1).max())
    enclosed = max(n_bg - 1, 0)
    if m.ndim == 2:
        return b0, enclosed
    chi = int(euler_number(np.pad(m, 1), connectivity=3))
    return b0, b0 + enclosed - chi, enclosed


def betti_errors(pred, gt, fov=None) -> dict:
    """Absolute differences of the Betti numbers: ``{"betti0_error": .., "betti1_error": ..}``
    (and ``betti2_error`` in 3D)."""
    p, g = _pair(pred, gt, fov)
    bp, bg = betti_numbers(p), betti_numbers(g)
    return {f"betti{i}_error": abs(a - b) for i, (a, b) in enumerate(zip(bp, bg, strict=True))}


def evaluate(pred, gt, fov=None) -> dict:
    """Every metric of one prediction against one truth.

    Returns a dict with ``dice``, ``cldice``, the Betti errors (inside the FOV when
    one is given), ``vca`` (whole image, the reference definition) and, with a FOV,
    ``vca_fov``.

    Examples
    --------
    >>> gt = np.zeros((8, 8), bool); gt[4, 1:7] = True
    >>> sorted(evaluate(gt, gt))
    ['betti0_error', 'betti1_error', 'cldice', 'dice', 'vca']
    """
    p, g = _pair(pred, gt)  # checks shapes once
    out = {"dice": dice(p, g, fov), "cldice": cldice(p, g, fov)}
    out.update(betti_errors(p, g, fov))
    out["vca"] = vca(p, g)
    if fov is not None:
        out["vca_fov"] = vca_fov(p, g, fov)
    return out
