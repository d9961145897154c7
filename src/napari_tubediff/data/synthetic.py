"""Synthetic vessel trees with exact ground truth, for tests, demos and sample data."""

from __future__ import annotations

from dataclasses import dataclass

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
        yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]]
        d = p1 - p0
        L2 = float(d @ d) or 1.0
        t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / L2, 0, 1)
        dist = np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))
        rad = r0 + (r1 - r0) * t
        inside = dist <= rad
        sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        mask[sub] |= inside
        closer = inside & (dist < best[sub])
        owner[sub][closer] = idx
        best[sub][closer] = dist[closer]
        n = int(np.ceil(np.sqrt(L2) * 2)) + 1
        pts = np.round(p0 + np.linspace(0, 1, n)[:, None] * d).astype(int)
        ok = np.all((pts >= 0) & (pts < np.array(shape)), axis=1)
        center[pts[ok, 0], pts[ok, 1]] = True
    return mask, center & mask, owner


def synthetic_vessels(shape=(256, 256), *, seed: int = 0, n_roots: int = 2, depth: int = 4,
                      width: tuple[float, float] = (0.8, 3.5), n_breaks: int = 8,
                      break_length: tuple[float, float] = (3.0, 7.0), noise: float = 0.05,
                      blur: float = 0.7) -> SyntheticVessels:
    """Draw a random branching vessel tree with exact ground truth and controlled breaks.

    Parameters
    ----------
    shape : (int, int)
        Image size.
    seed : int
        Random seed; the same seed gives the same data.
    n_roots, depth : int
        Number of trees entering from the border, and levels of bifurcation.
    width : (float, float)
        Smallest and largest vessel radius in pixels (radii shrink along branches).
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
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be 2D, got {shape}")
    rng = np.random.default_rng(seed)
    segs = _segments(tuple(shape), rng, n_roots, depth, width)
    truth, center, owner = _paint(tuple(shape), segs)

    breaks = np.zeros(shape, bool)
    cand = np.argwhere(center)
    if n_breaks > 0 and len(cand):
        for y, x in cand[rng.choice(len(cand), size=min(n_breaks, len(cand)), replace=False)]:
            idx = owner[y, x]
            if idx < 0:
                continue
            p0, p1, r0, r1 = segs[idx]
            d = (p1 - p0) / (np.linalg.norm(p1 - p0) or 1.0)
            half = rng.uniform(*break_length) / 2
            rad = max(r0, r1) + 1.5
            lo = np.maximum(np.floor([y - half - rad, x - half - rad]).astype(int), 0)
            hi = np.minimum(np.ceil([y + half + rad, x + half + rad]).astype(int) + 1, shape)
            yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]]
            along = (yy - y) * d[0] + (xx - x) * d[1]
            across = np.abs((yy - y) * d[1] - (xx - x) * d[0])
            cut = (np.abs(along) <= half) & (across <= rad) & (owner[lo[0]:hi[0], lo[1]:hi[1]] == idx)
            breaks[lo[0]:hi[0], lo[1]:hi[1]] |= cut
    breaks &= truth

    broken = (truth & ~breaks).astype(np.float32)
    prob = ndi.gaussian_filter(broken, blur) if blur > 0 else broken
    prob = prob / max(float(prob.max()), 1e-6) * 0.95
    prob = np.clip(prob + noise * rng.standard_normal(shape) * (prob > 0.02), 0, 1)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    background = 0.25 + 0.15 * np.sin(yy / shape[0] * np.pi) * np.cos(xx / shape[1] * np.pi / 2)
    image = background + 0.5 * ndi.gaussian_filter(truth.astype(np.float32), 0.8)
    image = np.clip(image + noise * rng.standard_normal(shape), 0, 1)
    return SyntheticVessels(image=image.astype(np.float32), probability=prob.astype(np.float32),
                            truth=truth, breaks=breaks, centerline=center)
