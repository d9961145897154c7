"""Synthetic vessel trees with exact ground truth, for tests, demos and sample data.

`synthetic_vessels` draws 2D images or 3D volumes (planes, rows, cols) of branching
tubes with controlled breaks; the probability field has the breaks cut out and the
truth does not, so every metric of a refinement can be checked against an exact answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np
from scipy import ndimage as ndi

__all__ = ["SyntheticVessels", "synthetic_vessels"]


@dataclass
class SyntheticVessels:
    """What `synthetic_vessels` returns.

    Attributes
    ----------
    image : float32 array
        A grey image with bright vessels, uneven background and noise.
    probability : float32 array in [0, 1]
        A probability field like a segmentation net's: the vessels with the breaks
        cut out, blurred, with noise.
    truth : bool array
        The exact vessel mask (no breaks).
    breaks : bool array
        Pixels of the truth removed from ``probability`` (the gaps to reconnect).
    centerline : bool array
        The one-pixel centre lines of all segments.
    """

    image: np.ndarray
    probability: np.ndarray
    truth: np.ndarray
    breaks: np.ndarray
    centerline: np.ndarray


def _segments(shape, rng, n_roots, depth, width):
    """Random branching tree: a list of (p0, p1, r0, r1) segments in pixel coordinates."""
    h, w = shape
    segs = []
    stack = []
    for _ in range(n_roots):
        # roots start at the image border and point inwards
        side = rng.integers(4)
        t = rng.uniform(0.2, 0.8)
        start = [(0.0, t * w), (h - 1.0, t * w), (t * h, 0.0), (t * h, w - 1.0)][side]
        angle = [np.pi / 2, -np.pi / 2, 0.0, np.pi][side] + rng.uniform(-0.4, 0.4)
        stack.append((np.array(start), angle, width[1], 0))
    while stack:
        p, angle, r, level = stack.pop()
        length = rng.uniform(0.18, 0.32) * min(h, w) * (0.8 ** level)
        # a gently curving branch made of a few straight pieces
        pieces = 4
        r_end = max(width[0], r * rng.uniform(0.65, 0.85))
        for k in range(pieces):
            angle += rng.uniform(-0.25, 0.25)
            step = length / pieces
            q = p + step * np.array([np.sin(angle), np.cos(angle)])
            ra = r + (r_end - r) * k / pieces
            rb = r + (r_end - r) * (k + 1) / pieces
            segs.append((p.copy(), q.copy(), ra, rb))
            p = q
        if level + 1 < depth and 0 <= p[0] < h and 0 <= p[1] < w:
            spread = rng.uniform(0.35, 0.7)
            stack.append((p.copy(), angle + spread, r_end, level + 1))
            stack.append((p.copy(), angle - spread, r_end * rng.uniform(0.7, 1.0), level + 1))
    return segs


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x) or 1.0)


def _perpendicular(d: np.ndarray, rng) -> np.ndarray:
    """A random unit vector orthogonal to the unit vector ``d``."""
    while True:
        r = rng.standard_normal(d.size)
        r -= (r @ d) * d
        if np.linalg.norm(r) > 1e-3:
            return _unit(r)


def _segments_nd(shape, rng, n_roots, depth, width):
    """`_segments` for any dimension, with direction vectors instead of angles.

    Used for volumes; 2D keeps `_segments` so that every 2D seed keeps drawing the
    same image as before (the tests, the demo and the samples rely on them).
    """
    size = np.array(shape, float)
    segs = []
    stack = []
    for _ in range(n_roots):
        # roots start on a face of the box, at its middle part, and point inwards
        axis = int(rng.integers(len(shape)))
        high = bool(rng.integers(2))
        start = rng.uniform(0.2, 0.8, len(shape)) * (size - 1)
        start[axis] = size[axis] - 1 if high else 0.0
        inward = np.zeros(len(shape))
        inward[axis] = -1.0 if high else 1.0
        d = _unit(inward + 0.4 * _perpendicular(inward, rng) * rng.uniform(0, 1))
        stack.append((start, d, width[1], 0))
    while stack:
        p, d, r, level = stack.pop()
        length = rng.uniform(0.25, 0.4) * size.min() * (0.8 ** level)
        pieces = 4
        r_end = max(width[0], r * rng.uniform(0.65, 0.85))
        for k in range(pieces):
            d = _unit(d + rng.uniform(0, 0.25) * _perpendicular(d, rng))
            q = p + length / pieces * d
            segs.append((p.copy(), q.copy(), r + (r_end - r) * k / pieces,
                         r + (r_end - r) * (k + 1) / pieces))
            p = q
        if level + 1 < depth and np.all((p >= 0) & (p < size)):
            a = rng.uniform(0.35, 0.7)
            u = _perpendicular(d, rng)
            stack.append((p.copy(), _unit(np.cos(a) * d + np.sin(a) * u), r_end, level + 1))
            stack.append((p.copy(), _unit(np.cos(a) * d - np.sin(a) * u),
                          r_end * rng.uniform(0.7, 1.0), level + 1))
    return segs


def _box(shape, lo, hi):
    """Open grids (np.ogrid) and the slices of the box ``lo:hi``."""
    sub = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return np.ogrid[sub], sub


def _paint(shape, segs):
    """Rasterise segments as tubes; returns (mask, centerline, nearest segment index)."""
    mask = np.zeros(shape, bool)
    center = np.zeros(shape, bool)
    owner = np.full(shape, -1, np.int32)
    best = np.full(shape, np.inf)
    for idx, (p0, p1, r0, r1) in enumerate(segs):
        rmax = max(r0, r1) + 1
        lo = np.floor(np.minimum(p0, p1) - rmax).astype(int)
        hi = np.ceil(np.maximum(p0, p1) + rmax).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, shape)
        if np.any(hi <= lo):
            continue
        grids, sub = _box(shape, lo, hi)
        d = p1 - p0
        L2 = float(d @ d) or 1.0
        t = np.clip(sum((g - p0[i]) * d[i] for i, g in enumerate(grids)) / L2, 0, 1)
        # hypot folded over the axes: the distance to the segment in any dimension
        dist = reduce(np.hypot, [g - (p0[i] + t * d[i]) for i, g in enumerate(grids)])
        rad = r0 + (r1 - r0) * t
        inside = dist <= rad
        mask[sub] |= inside
        closer = inside & (dist < best[sub])
        owner[sub][closer] = idx
        best[sub][closer] = dist[closer]
        n = int(np.ceil(np.sqrt(L2) * 2)) + 1
        pts = np.round(p0 + np.linspace(0, 1, n)[:, None] * d).astype(int)
        ok = np.all((pts >= 0) & (pts < np.array(shape)), axis=1)
        center[tuple(pts[ok].T)] = True
    return mask, center & mask, owner


def synthetic_vessels(shape=(256, 256), *, seed: int = 0, n_roots: int = 2, depth: int = 4,
                      width: tuple[float, float] = (0.8, 3.5), n_breaks: int = 8,
                      break_length: tuple[float, float] = (3.0, 7.0), noise: float = 0.05,
                      blur: float = 0.7) -> SyntheticVessels:
    """Draw a random branching vessel tree with exact ground truth and controlled breaks.

    Parameters
    ----------
    shape : (int, int) or (int, int, int)
        Image size; three numbers draw a volume (planes, rows, cols).
    seed : int
        Random seed; the same seed gives the same data.
    n_roots, depth : int
        Number of trees entering from the border, and levels of bifurcation.
    width : (float, float)
        Smallest and largest vessel radius in pixels (radii shrink along branches).
        For volumes about (1, 3) suits 64^3 to 128^3.
    n_breaks : int
        Number of gaps cut into the vessels of ``probability`` (not of ``truth``).
    break_length : (float, float)
        Range of the gaps' lengths along the vessel, in pixels.
    noise : float
        Standard deviation of the Gaussian noise.
    blur : float
        Gaussian blur (pixels) of the probability field.

    Returns
    -------
    SyntheticVessels

    Examples
    --------
    >>> s = synthetic_vessels((128, 128), seed=1, n_breaks=3)
    >>> s.probability.shape, s.truth.dtype, bool(s.breaks.any()), bool((s.breaks <= s.truth).all())
    ((128, 128), dtype('bool'), True, True)
    >>> v = synthetic_vessels((32, 48, 48), seed=0, depth=2, width=(1.0, 2.5), n_breaks=2)
    >>> v.image.shape, bool(v.truth.any() and v.breaks.any())
    ((32, 48, 48), True)
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 8:
        raise ValueError(f"shape must be 2D or 3D with every size >= 8, got {shape}")
    if isinstance(n_breaks, bool) or not isinstance(n_breaks, (int, np.integer)) or n_breaks < 0:
        raise ValueError(f"n_breaks must be a whole number >= 0, got {n_breaks!r}")
    for name, pair in (("width", width), ("break_length", break_length)):
        if len(pair) != 2 or not (0 < pair[0] <= pair[1] < np.inf):
            raise ValueError(f"{name} must be two numbers 0 < low <= high, got {pair!r}")
    for name, x in (("noise", noise), ("blur", blur)):
        if not (0 <= x < np.inf):
            raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")
    rng = np.random.default_rng(seed)
    grow = _segments if len(shape) == 2 else _segments_nd
    segs = grow(shape, rng, n_roots, depth, width)
    truth, center, owner = _paint(shape, segs)

    breaks = np.zeros(shape, bool)
    cand = np.argwhere(center)
    if n_breaks > 0 and len(cand):
        for c in cand[rng.choice(len(cand), size=min(n_breaks, len(cand)), replace=False)]:
            idx = owner[tuple(c)]
            if idx < 0:
                continue
            p0, p1, r0, r1 = segs[idx]
            d = (p1 - p0) / (np.linalg.norm(p1 - p0) or 1.0)
            half = rng.uniform(*break_length) / 2
            rad = max(r0, r1) + 1.5
            lo = np.maximum(np.floor(c - half - rad).astype(int), 0)
            hi = np.minimum(np.ceil(c + half + rad).astype(int) + 1, shape)
            grids, sub = _box(shape, lo, hi)
            rel = [g - c[i] for i, g in enumerate(grids)]
            along = sum(r * d[i] for i, r in enumerate(rel))
            if len(shape) == 2:
                across = np.abs(rel[0] * d[1] - rel[1] * d[0])
            else:
                across = reduce(np.hypot, [r - along * d[i] for i, r in enumerate(rel)])
            cut = (np.abs(along) <= half) & (across <= rad) & (owner[sub] == idx)
            breaks[sub] |= cut
    breaks &= truth

    broken = (truth & ~breaks).astype(np.float32)
    prob = ndi.gaussian_filter(broken, blur) if blur > 0 else broken
    prob = prob / max(float(prob.max()), 1e-6) * 0.95
    prob = np.clip(prob + noise * rng.standard_normal(shape) * (prob > 0.02), 0, 1)
    # uneven illumination over the last two axes (rows, cols), as in a microscope or fundus image
    yy, xx = np.ogrid[0:shape[-2], 0:shape[-1]]
    background = 0.25 + 0.15 * np.sin(yy / shape[-2] * np.pi) * np.cos(xx / shape[-1] * np.pi / 2)
    image = background + 0.5 * ndi.gaussian_filter(truth.astype(np.float32), 0.8)
    image = np.clip(image + noise * rng.standard_normal(shape), 0, 1)
    return SyntheticVessels(image=image.astype(np.float32), probability=prob.astype(np.float32),
                            truth=truth, breaks=breaks, centerline=center)
