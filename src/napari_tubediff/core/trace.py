"""Hand tools for curation: trace a vessel between two points, remove a false piece.

`trace_path` finds the minimal-cost path between two points through a probability
(or refined) field with scikit-image's minimal-cost-path machinery
(`skimage.graph.MCP_Geometric`) and paints it with a width taken from the field.
The cost prefers the vessel's centre twice over: it falls with the probability
(``1 / (eps + p**power)``) and with the centre-ness, the distance to the edge of the
thresholded field, so that inside a vessel the cheapest route runs along its middle
and across a break (where the field is near zero) the shortest crossing is taken.

`remove_piece` takes out the connected piece of a label under a clicked point, or only
the skeleton branch (between two junctions, or a junction and an end; skan's graph)
under it. Either way only pixels of the clicked label value change.

Both work in 2D and 3D and return plain arrays; the napari panel (`widgets.tools`)
turns them into one undoable edit of the curated labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["TracedPath", "trace_path", "path_cost", "paint_tube", "remove_piece"]


@dataclass
class TracedPath:
    """What `trace_path` returns.

    Attributes
    ----------
    path : (N, ndim) int array
        The pixel coordinates of the path, from start to end (8- or 26-connected steps).
    radius : (N,) float array
        The radius painted at each path point, in the units of ``spacing``.
    mask : bool array
        The painted tube, the field's shape: the path's pixels widened by ``radius``.
    cost : float
        The accumulated cost of the path (for comparing alternatives).
    """

    path: np.ndarray
    radius: np.ndarray
    mask: np.ndarray
    cost: float


def _spacing(spacing, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    s = np.broadcast_to(np.asarray(spacing, float), (ndim,)).copy()
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing must be positive numbers, one per axis; got {spacing}")
    return s


def _point(p, shape, what: str) -> tuple[int, ...]:
    q = np.round(np.asarray(p, float)).astype(int)
    if q.shape != (len(shape),):
        raise ValueError(f"{what} needs {len(shape)} coordinates for a {len(shape)}D field, got {p}")
    if np.any(q < 0) or np.any(q >= np.asarray(shape)):
        raise ValueError(f"{what} {tuple(q)} lies outside the field {tuple(shape)}: click inside the image")
    return tuple(int(v) for v in q)


def path_cost(field: np.ndarray, *, threshold: float = 0.5, power: float = 2.0, eps: float = 1e-3,
              spacing=None, bridge: float = 2.0) -> np.ndarray:
    """The per-pixel cost `trace_path` uses: low along vessel centres, high off vessels.

    ``cost = 1 / ((eps + q**power) * (1 + d))`` where ``q`` is the field clipped to
    [0, 1] (where it is higher, its Gaussian blur of ``bridge`` pixels: inside a break
    the blur keeps a faint ridge along the vessel's axis from the two ends) and ``d``
    the distance (in pixels) to the edge of ``field >= threshold``: the centre of a
    vessel of radius r costs about ``1 / (1 + r)`` of its rim.

    Examples
    --------
    >>> p = np.zeros((5, 7)); p[1:4] = [[0.6], [1.0], [0.6]]
    >>> c = path_cost(p)
    >>> bool(c[2, 3] < c[1, 3] < c[0, 3])
    True
    """
    return _cost_and_distance(field, threshold, power, eps, _spacing(spacing, np.ndim(field)), bridge)[0]


def _cost_and_distance(field, threshold, power, eps, s, bridge):
    """The cost and the distance (spacing units) from each vessel pixel to the nearest outside one."""
    p = np.clip(np.nan_to_num(np.asarray(field, np.float64)), 0.0, 1.0)
    inside = p >= threshold
    # one distance transform serves the centre-ness here and the painted radius later
    d = ndi.distance_transform_edt(inside, sampling=s) if inside.any() else np.zeros_like(p)
    if bridge > 0:
        p = np.maximum(p, ndi.gaussian_filter(p, bridge * s.min() / s))
    return 1.0 / ((eps + p ** power) * (1.0 + d / s.min())), d


def _box(points: np.ndarray, shape, margin: int) -> tuple[slice, ...]:
    lo = np.maximum(points.min(0) - margin, 0)
    hi = np.minimum(points.max(0) + margin + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def paint_tube(shape, path: np.ndarray, radius, *, spacing=None) -> np.ndarray:
    """A boolean mask of ``shape``: every pixel within its nearest path point's radius of the path.

    Examples
    --------
    >>> m = paint_tube((7, 9), np.array([[3, c] for c in range(2, 7)]), 1.0)
    >>> m.sum(), m[3].sum(), bool(m[1].any())
    (np.int64(17), np.int64(7), False)
    """
    path = np.asarray(path, int).reshape(-1, len(shape))
    s = _spacing(spacing, len(shape))
    radius = np.broadcast_to(np.asarray(radius, float), (len(path),))
    mask = np.zeros(shape, bool)
    if len(path) == 0:
        return mask
    reach = int(np.ceil(float(radius.max()) / s.min())) + 1
    box = _box(path, shape, reach)
    local = path - np.array([b.start for b in box])
    sub_shape = tuple(b.stop - b.start for b in box)
    seeds = np.ones(sub_shape, bool)
    seeds[tuple(local.T)] = False
    # distance to the nearest path pixel, and which one it is: its radius decides
    dist, idx = ndi.distance_transform_edt(seeds, sampling=s, return_indices=True)
    r_img = np.zeros(sub_shape)
    r_img[tuple(local.T)] = radius
    mask[box] = dist <= r_img[tuple(idx)] + 1e-9
    return mask


def trace_path(field, start, end, *, radius: float | None = None, threshold: float = 0.5,
               power: float = 2.0, eps: float = 1e-3, spacing=None, margin: int | None = None,
               min_radius: float = 0.5) -> TracedPath:
    """The minimal-cost path between ``start`` and ``end`` through a probability field, painted.

    Parameters
    ----------
    field : array, 2D or 3D
        Probability (or refined) field in [0, 1].
    start, end : sequence of float
        Pixel (voxel) coordinates, one per axis (rounded to the nearest pixel).
    radius : float, optional
        Paint this radius (in the units of ``spacing``) along the whole path. None: the
        radius is taken from the field: at each path point the largest ball inside
        ``field >= threshold`` (just under the distance to the nearest outside pixel),
        the largest within one radius along the path (the edge nears at a break's end);
        across a break (field below the threshold) interpolated between its two sides.
    threshold : float
        Where the field counts as vessel, for the centre-ness and the radius.
    power, eps : float
        The cost ``1 / ((eps + p**power) * (1 + d))`` (`path_cost`).
    spacing : float or sequence, optional
        Pixel (voxel) spacing per axis; the path length and the radius use it.
    margin : int, optional
        The search is confined to the box around ``start`` and ``end`` widened by this
        many pixels (default: the larger of 12 and half the start-end distance), which
        keeps a click in a large volume fast; for a vessel that winds further, click a
        point on the way and trace in two steps.
    min_radius : float
        The smallest radius painted (in pixels of the finest axis): 0.5 paints the
        one-pixel path itself.

    Returns
    -------
    TracedPath
        ``path`` (N, ndim) from start to end, ``radius`` per point, the painted ``mask``
        and the path's ``cost``.

    Examples
    --------
    >>> p = np.zeros((9, 20), np.float32); p[3:6, :] = 1.0; p[:, 8:12] = 0  # a bar with a break
    >>> t = trace_path(p, (4, 1), (4, 18))
    >>> sorted(set(t.path[:, 0].tolist())), t.mask[3:6].all(), bool(t.mask[[0, 1, 7, 8]].any())
    ([4], np.True_, False)
    """
    from skimage.graph import MCP_Geometric

    field = np.asarray(field)
    if field.ndim not in (2, 3):
        raise ValueError(f"trace needs a 2D or 3D field, got shape {field.shape}")
    a = np.asarray(_point(start, field.shape, "start"))
    b = np.asarray(_point(end, field.shape, "end"))
    s = _spacing(spacing, field.ndim)
    if margin is None:
        margin = max(12, int(np.ceil(np.linalg.norm(a - b) / 2)))
    box = _box(np.stack([a, b]), field.shape, int(margin))
    off = np.array([sl.start for sl in box])
    sub = np.asarray(field[box], np.float64)
    cost, dist = _cost_and_distance(sub, threshold, power, eps, s, 2.0)
    mcp = MCP_Geometric(cost, sampling=tuple(s / s.min()), fully_connected=True)
    costs, _ = mcp.find_costs([tuple(a - off)], [tuple(b - off)])
    path = np.asarray(mcp.traceback(tuple(b - off)), int) + off
    total = float(costs[tuple(b - off)])

    if radius is not None:
        if not np.isfinite(radius) or radius < 0:
            raise ValueError(f"radius must be a non-negative number, got {radius}")
        r = np.full(len(path), float(radius))
    else:
        # the largest ball around a vessel pixel that holds no outside pixel: just under the
        # distance to the nearest outside pixel (distinct pixel distances differ by far more
        # than 1e-3 for any radius below hundreds of pixels)
        d = dist - 1e-3 * s.min()
        r = d[tuple((path - off).T)]
        ok = r > 0
        if ok.any():
            # the distance to the edge falls towards a break's end (the edge is the break
            # itself): the radius is the largest within one radius along the path
            w = 2 * int(np.ceil(r.max() / s.min())) + 1
            r = np.where(ok, ndi.maximum_filter1d(r, w, mode="nearest"), 0.0)
            # a break: the radius runs linearly between the vessel's radii on either side
            k = np.arange(len(path))
            r = np.interp(k, k[ok], r[ok])
        else:
            r = np.zeros(len(path))
    r = np.maximum(r, min_radius * s.min())
    mask = paint_tube(field.shape, path, r, spacing=s)
    return TracedPath(path=path, radius=r, mask=mask, cost=total)


# ---------------------------------------------------------------- removal

def _union_of_balls(shape, points: np.ndarray, radius: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Pixels within ``radius[i]`` of some ``points[i]`` (exact union, one EDT per distinct radius)."""
    out = np.zeros(shape, bool)
    r_q = np.round(radius, 1)  # a few distinct radii: one distance transform each
    for rv in np.unique(r_q):
        seeds = np.ones(shape, bool)
        seeds[tuple(points[r_q == rv].T)] = False
        out |= ndi.distance_transform_edt(seeds, sampling=spacing) <= rv + 1e-9
    return out


def remove_piece(labels, point, *, mode: str = "component", connectivity: int | None = None,
                 spacing=None) -> np.ndarray:
    """The pixels to clear when the annotator clicks ``point`` to remove a false piece.

    Parameters
    ----------
    labels : int array, 2D or 3D
        The curated labels. Only pixels of the clicked value are ever chosen.
    point : sequence of float
        The clicked pixel. A click on the background snaps to the nearest labelled pixel
        within 3 pixels.
    mode : {"component", "branch"}
        ``"component"``: the connected piece of the clicked value containing the point.
        ``"branch"``: only the skeleton branch under the point (between two junctions,
        or a junction and an end, in skan's skeleton graph) and the pixels it carries;
        the rest of the piece, junctions included, stays whole.
    connectivity : int, optional
        Neighbourhood of a piece, as in `scipy.ndimage.generate_binary_structure`
        (default: full, 8 or 26 neighbours, as the skeleton's).
    spacing : float or sequence, optional
        Pixel spacing per axis (branch mode: the widths of the remaining branches).

    Returns
    -------
    bool array
        The pixels to set to 0; ``labels`` itself is not changed.

    Examples
    --------
    >>> lab = np.zeros((5, 9), np.uint8); lab[1, 1:4] = 1; lab[3, 5:8] = 1; lab[1, 6] = 2
    >>> remove_piece(lab, (1, 2)).astype(int)[1]
    array([0, 1, 1, 1, 0, 0, 0, 0, 0])
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"remove needs 2D or 3D labels, got shape {labels.shape}")
    if mode not in ("component", "branch"):
        raise ValueError(f"mode must be 'component' or 'branch', got {mode!r}")
    p = _point(point, labels.shape, "the clicked point")
    if labels[p] == 0:
        near = _box(np.asarray([p]), labels.shape, 3)
        hits = np.argwhere(labels[near] != 0)
        if len(hits) == 0:
            raise ValueError(f"nothing is labelled at {p}: click on the piece to remove")
        off = np.array([sl.start for sl in near])
        hits = hits + off
        p = tuple(int(v) for v in hits[np.argmin(((hits - np.asarray(p)) ** 2).sum(1))])
    value = labels[p]
    conn = ndi.generate_binary_structure(labels.ndim, connectivity or labels.ndim)
    comps, _ = ndi.label(labels == value, structure=conn)
    piece = comps == comps[p]
    if mode == "component":
        return piece

    from skan import Skeleton
    from skimage.morphology import skeletonize

    s = _spacing(spacing, labels.ndim)
    box = _box(np.argwhere(piece), labels.shape, 1)
    local = piece[box]
    lp = np.asarray(p) - np.array([sl.start for sl in box])
    skel = skeletonize(local)
    if skel.sum() < 2:
        return piece  # a blob without branches: the piece is the branch
    sk = Skeleton(skel, spacing=s)
    junction = np.asarray(sk.degrees) >= 3  # per skeleton node (pixel), indexed as sk.path(i)
    # each skeleton pixel that is not a junction belongs to exactly one path (branch)
    branch_of = np.zeros(skel.shape, np.int64)
    for i in range(sk.n_paths):
        pc = np.round(sk.path_coordinates(i)).astype(int)
        keep = ~junction[sk.path(i)]
        branch_of[tuple(pc[keep].T)] = i + 1
    if not (branch_of > 0).any():
        return piece
    # the branch under the click: the nearest branch pixel
    _, idx = ndi.distance_transform_edt(branch_of == 0, sampling=s, return_indices=True)
    chosen = branch_of[tuple(i[tuple(lp)] for i in idx)]
    # every pixel of the piece goes with its nearest skeleton pixel ...
    _, near = ndi.distance_transform_edt(~skel, sampling=s, return_indices=True)
    owned = (branch_of[tuple(near)] == chosen) & local
    # ... except what the remaining skeleton's own width covers (the junction's body)
    rest = skel & (branch_of != chosen)
    if rest.any():
        dt = ndi.distance_transform_edt(local, sampling=s)
        pts = np.argwhere(rest)
        owned &= ~_union_of_balls(local.shape, pts, dt[tuple(pts.T)], s)
    out = np.zeros(labels.shape, bool)
    out[box] = owned
    return out
