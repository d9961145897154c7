"""Classical vessel direction fields, with no training.

Used when no learned direction head is loaded. For a bright tube the Hessian of
the smoothed field has one eigenvalue near zero (along the tube) and large
negative ones across it; the eigenvector of the eigenvalue of smallest magnitude
points along the vessel. The structure tensor gives the same answer from first
derivatives (the eigenvector of its smallest eigenvalue).

Voxel spacing: with ``spacing=(dz, dy, dx)`` (2D ``(dy, dx)``) ``sigma`` is a physical
length (the Gaussian is ``sigma / h_i`` voxels wide along axis ``i``) and the tensor is
taken in physical units (entry ``ij`` divided by ``h_i h_j``), so the vectors are unit
vectors in physical space, the form `napari_tubediff.diffuse` takes with the same
spacing. On voxels three times longer along z, a tube at 45 degrees in (z, x) is found
at 45 degrees, where the voxel-index vector read as a physical one would put it at 18.
On anisotropic voxels the Hessian takes scikit-image's derivative-of-Gaussian kernels
(``use_gaussian_derivatives=True``) instead of finite differences of the smoothed
field: a Gaussian of sigma 3 is one voxel wide along a z spaced 3, too narrow for
second differences; and the Gaussian is at least `MIN_SIGMA_VOXELS` wide along every
axis. On the straight tubes of ``scripts/synth3d_directions.py`` (part 3, spacing
(3, 1, 1)) that took the median angle error in the gaps from 47.5 to 18.5 degrees (core:
5.0 to 1.1). Isotropic data keep the finite differences.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from skimage.feature import hessian_matrix, hessian_matrix_eigvals, structure_tensor

from .checks import check_field, check_memory, check_positive, check_spacing

__all__ = ["estimate_directions", "eigenvalue_spread", "eigh_2x2", "directions_reach", "sample_vectors",
           "vector_angles", "vector_elevations", "orientation_colors"]

#: Peak bytes per pixel (2D) / voxel (3D) of `estimate_directions`, the peak of `refine`
#: too, input field included: 2D measured by ``benchmarks/bench_memory.py`` (38 at 2048^2),
#: 3D by ``benchmarks/bench_volume.py`` (89 at 128^3 and 256^3; docs/performance.md).
DIRECTIONS_BYTES = {2: 42, 3: 93}

#: On anisotropic voxels the Gaussian of the directions is at least this many voxels wide
#: along every axis (module docstring).
MIN_SIGMA_VOXELS = 1.0

#: skimage's Gaussian (scipy's ``gaussian_filter``) cuts its kernel at this many sigmas
GAUSSIAN_TRUNCATE = 4.0


def directions_reach(sigma: float, spacing=None) -> int:
    """How many pixels away from a pixel its Hessian `estimate_directions` value can see.

    ``hessian_matrix(..., use_gaussian_derivatives=False)`` smooths with scipy's
    ``gaussian_filter`` (kernel radius ``int(4 * sigma + 0.5)``), then applies
    ``np.gradient`` twice (one pixel each, central differences inside). A tile
    with this many pixels of context on every side gives, in its interior,
    exactly the whole image's values (see ``napari_tubediff.batch``). With a
    ``spacing`` the reach of the axis with the finest spacing (the most voxels).

    Examples
    --------
    >>> directions_reach(3.0)  # 12 for the Gaussian, 2 for the two gradients
    14
    >>> directions_reach(3.0, (3.0, 1.0, 1.0))
    14
    """
    vox = float(sigma)
    if spacing is not None:
        spacing = check_spacing(spacing, len(spacing))
        vox = max(vox / min(spacing), MIN_SIGMA_VOXELS if len(set(spacing)) > 1 else 0.0)
    return int(GAUSSIAN_TRUNCATE * vox + 0.5) + 2


def _tensor_components(u: np.ndarray, sigma: float, method: str, spacing=None) -> list[np.ndarray]:
    # the upper triangle of the Hessian or structure tensor, row by row (scikit-image's order),
    # in physical units with a spacing (module docstring)
    sigma = check_positive(sigma, "sigma")
    spacing = check_spacing(spacing, u.ndim)
    h = spacing or (1.0,) * u.ndim
    anisotropic = spacing is not None and len(set(spacing)) > 1
    sig = tuple(sigma / x for x in h) if spacing is not None else sigma  # voxels per axis
    if anisotropic:
        # a sampled Gaussian narrower than a voxel is no Gaussian: at least one voxel per axis
        sig = tuple(max(s, MIN_SIGMA_VOXELS) for s in sig)
    if max(np.atleast_1d(sig)) > max(u.shape):
        # the Gaussian would be flat over the whole image (and its kernel, 8 sigma long,
        # can exhaust memory: sigma=1e9 asks for 60 GiB)
        raise ValueError(f"sigma={sigma:g} is larger than the image ({'x'.join(map(str, u.shape))}); "
                         "use about the vessel radius in pixels (1 to 4 for fundus photographs)")
    if min(u.shape) < 2:
        raise ValueError(f"u of shape {u.shape} is too thin for directions: every axis needs at "
                         "least 2 pixels (a 1-pixel strip has no derivative across it)")
    if method == "hessian":
        # On anisotropic voxels the Gaussian is about one voxel wide along the coarse axis,
        # where second differences of the smoothed field are too coarse; the derivative-of-
        # Gaussian kernels are not (module docstring)
        comps = hessian_matrix(u, sigma=sig, order="rc", use_gaussian_derivatives=anisotropic)
    elif method == "structure":
        comps = structure_tensor(u, sigma=sig, order="rc")
    else:
        raise ValueError(f"method must be 'hessian' or 'structure', got {method!r}")
    if spacing is not None:
        pairs = [(i, j) for i in range(u.ndim) for j in range(i, u.ndim)]
        for c, (i, j) in zip(comps, pairs, strict=True):
            c *= 1.0 / (h[i] * h[j])  # d/dx_i d/dx_j in physical units
    return comps


#: Voxels per slab of the eigen-decomposition: its float64 temporaries exist for one slab
#: at a time, so memory stays near the components'.
_SLAB = 1 << 18

#: True runs 2D through `numpy.linalg.eigh` too, the former path (for the tests and
#: ``benchmarks/bench_directions.py``, which compare the two); False takes `eigh_2x2`.
_EIGH_2D = False


def eigh_2x2(a, b, c):
    """Eigenvalues and unit eigenvectors of the symmetric 2 x 2 matrices ``[[a, b], [b, c]]``.

    The closed form of `numpy.linalg.eigh` for many 2 x 2 matrices at once (the 2D
    Hessian or structure tensor of every pixel). The eigenvalues are
    `skimage.feature.hessian_matrix_eigvals`'; the eigenvector of the larger one is
    ``(cos t, sin t)`` with ``t = atan2(2 b, a - c) / 2``, that of the smaller one
    ``(-sin t, cos t)``. A diagonal matrix (``b = 0``) gets exactly ``(1, 0)`` and ``(0, 1)``,
    also where it is isotropic (``a = c``: every vector is an eigenvector). Eigenvectors
    have no sign: `numpy.linalg.eigh` may return either.

    Parameters
    ----------
    a, b, c : array_like
        The entries ``[0, 0]``, ``[0, 1]`` and ``[1, 1]`` of each matrix, all of one shape
        (e.g. scikit-image's `hessian_matrix` components with ``order="rc"``).

    Returns
    -------
    lo, hi : ndarray
        The smaller and the larger eigenvalue.
    cos_t, sin_t : ndarray
        The eigenvector of ``hi`` is ``(cos_t, sin_t)``, that of ``lo`` ``(-sin_t, cos_t)``.

    Examples
    --------
    >>> lo, hi, ct, st = eigh_2x2(np.array([2.0, 1.0]), np.array([1.0, 0.0]), np.array([2.0, 3.0]))
    >>> lo, hi
    (array([1., 1.]), array([3., 3.]))
    >>> np.round(np.stack([ct, st], -1), 4) + 0.0    # (1, 1) / sqrt(2) and (0, 1)
    array([[0.7071, 0.7071],
           [0.    , 1.    ]])
    """
    a, b, c = (np.asarray(x) for x in (a, b, c))
    hi, lo = hessian_matrix_eigvals([a, b, c])  # descending: (a + c) / 2 +- sqrt(b^2 + ((a - c) / 2)^2)
    t = 0.5 * np.arctan2(2.0 * b, a - c)
    # a diagonal matrix has eigenvectors along the axes: cos(pi / 2) would leave 6e-17
    return lo, hi, np.where((b == 0) & (a < c), 0.0, np.cos(t)), np.sin(t)


def _slabs(shape: tuple[int, ...]) -> Iterator[slice]:
    """Slices along axis 0 of about `_SLAB` voxels each."""
    per_row = int(np.prod(shape[1:]))
    rows = max(1, _SLAB // max(per_row, 1))
    for a in range(0, shape[0], rows):
        yield slice(a, min(a + rows, shape[0]))


def _tensor_eigen(parts: list[np.ndarray], method: str, vectors: bool = True):
    """``(spread, vector, strongest)`` of one slab of tensor components (scikit-image's order).

    ``spread`` is the largest minus the smallest eigenvalue; ``vector`` the unit eigenvector
    `estimate_directions` takes (Hessian: of the eigenvalue of smallest magnitude;
    structure tensor: of the smallest), one array per component; ``strongest`` the
    eigenvalue of largest magnitude. Ties go to the smaller eigenvalue, as ``argmin`` and
    ``argmax`` over `numpy.linalg.eigh`'s ascending eigenvalues break them. 2D in closed
    form (`eigh_2x2`), 3D by `numpy.linalg.eigh`; float64 in both. With ``vectors=False``
    only ``spread`` (the others None).
    """
    ndim = 2 if len(parts) == 3 else 3  # the upper triangle: (rr, rc, cc) in 2D
    if ndim == 2 and not _EIGH_2D:
        a, b, c = (p.astype(np.float64) for p in parts)
        if not vectors:
            hi, lo = hessian_matrix_eigvals([a, b, c])  # as eigh_2x2 computes them
            return hi - lo, None, None
        lo, hi, ct, st = eigh_2x2(a, b, c)
        take_lo = (np.abs(lo) <= np.abs(hi)) if method == "hessian" else True
        vector = (np.where(take_lo, -st, ct), np.where(take_lo, ct, st))
        strongest = np.where(np.abs(lo) >= np.abs(hi), lo, hi)
        return hi - lo, vector, strongest
    T = np.empty((*parts[0].shape, ndim, ndim), dtype=np.float64)
    it = iter(parts)
    for i in range(ndim):
        for j in range(i, ndim):
            c = next(it)
            T[..., i, j] = c
            T[..., j, i] = c
    # eigh, not eigvalsh, even for the spread alone: a tiled run's threshold (the largest
    # spread) must equal the whole image's to the bit
    evals, evecs = np.linalg.eigh(T)  # ascending, eigenvectors in columns
    if not vectors:
        return evals[..., -1] - evals[..., 0], None, None
    pick = np.argmin(np.abs(evals), axis=-1) if method == "hessian" else np.zeros(evals.shape[:-1], np.intp)
    vector = np.moveaxis(np.take_along_axis(evecs, pick[..., None, None], axis=-1)[..., 0], -1, 0)
    strongest = np.take_along_axis(evals, np.argmax(np.abs(evals), axis=-1)[..., None], -1)[..., 0]
    return evals[..., -1] - evals[..., 0], vector, strongest


def eigenvalue_spread(u, sigma: float = 2.0, *, method: str = "hessian", spacing=None) -> np.ndarray:
    """Largest minus smallest eigenvalue of the tensor `estimate_directions` uses, per pixel.

    Its maximum over an image is the ``scale`` of `estimate_directions`'
    threshold; a tiled computation takes the maximum over all tiles and passes it
    to every tile. ``spacing`` as in `estimate_directions`.

    Examples
    --------
    >>> u = np.zeros((32, 32)); u[15:18, :] = 1
    >>> bool(eigenvalue_spread(u, 2)[16, 16] > 0), float(eigenvalue_spread(u, 2)[2, 16])
    (True, 0.0)
    """
    u = check_field(u, "u", unit_range=False)
    comps = _tensor_components(u, sigma, method, spacing)
    spread = np.empty(u.shape, np.float64)
    for idx in _slabs(u.shape):
        spread[idx] = _tensor_eigen([c[idx] for c in comps], method, vectors=False)[0]
    return spread


def estimate_directions(u, sigma: float = 2.0, *, method: str = "hessian",
                        rel_threshold: float = 1e-3, bright: bool | None = True,
                        scale: float | None = None, spacing=None) -> np.ndarray:
    """Unit vectors along the vessels of ``u``, shape ``(ndim, *u.shape)``.

    Parameters
    ----------
    u : (M, N) or (P, M, N) array_like
        Probability field or grey image (bright vessels), finite values.
    sigma : float
        Gaussian scale, about the vessel radius: in pixels, or with ``spacing`` in the
        spacing's length unit.
    method : {"hessian", "structure"}
        Hessian eigenvector of the smallest-magnitude eigenvalue, or the
        structure tensor's eigenvector of the smallest eigenvalue.
    rel_threshold : float
        Where the tensor's eigenvalue spread is below this fraction of its largest
        value over the image (flat background), no direction is defined and the
        vector is zero (the diffusion there is isotropic at ``lambda_perp``).
    bright : bool or None
        Hessian only: with True (vessels brighter than the background, as in a
        probability field) directions are kept only on ridges, where the
        eigenvalue of largest magnitude is negative; off the ridges the vector is
        zero, so the diffusion does not carry probability sideways out of a vessel.
        False keeps valleys (dark vessels, e.g. the green channel of a fundus
        image); None keeps both.
    scale : float or None
        The largest eigenvalue spread that ``rel_threshold`` is relative to. None
        takes it from ``u`` (the maximum of `eigenvalue_spread`); a tile of a larger
        image passes the whole image's value so that it gets the whole image's
        directions.
    spacing : sequence of float, optional
        Voxel spacing ``(dz, dy, dx)`` (2D ``(dy, dx)``); None is 1 on every axis. The
        tensor is taken in physical units (module docstring).

    Returns
    -------
    directions : ndarray of float32
        Component ``i`` along array axis ``i``; unit vectors or zero. The sign is
        arbitrary (the diffusion tensor only uses ``v v^T``). With ``spacing`` they are
        unit vectors in physical space.

    Examples
    --------
    >>> u = np.zeros((32, 32)); u[15:18, :] = 1      # a horizontal vessel
    >>> v = estimate_directions(u, sigma=2)
    >>> np.round(np.abs(v[:, 16, 16]), 3)            # along axis 1 (the columns)
    array([0., 1.], dtype=float32)
    """
    u = check_field(u, "u", unit_range=False)
    check_memory(u.shape, DIRECTIONS_BYTES[u.ndim], "Hessian directions of")
    if not (isinstance(rel_threshold, (int, float, np.floating)) and 0 <= rel_threshold <= 1):
        # NaN would compare False everywhere: every flat pixel would get a direction
        raise ValueError(f"rel_threshold must be a fraction from 0 to 1, got {rel_threshold!r}")
    if bright not in (True, False, None):
        raise ValueError(f"bright must be True, False or None, got {bright!r}")
    if scale is not None and not (np.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    comps = _tensor_components(u, sigma, method, spacing)
    v = np.empty((u.ndim, *u.shape), np.float32)
    spread = np.empty(u.shape, np.float64)
    off_ridge = np.zeros(u.shape, bool)
    for idx in _slabs(u.shape):
        spread[idx], vector, strongest = _tensor_eigen([c[idx] for c in comps], method)
        for i, comp in enumerate(vector):
            v[i, idx] = comp
        if method == "hessian" and bright is not None:
            off_ridge[idx] = (strongest >= 0) if bright else (strongest <= 0)
    del comps
    if scale is None:
        scale = spread.max()
    undefined = spread <= rel_threshold * scale if scale > 0 else np.ones(u.shape, bool)
    undefined |= off_ridge
    for comp in v:  # plane by plane: a 2D mask indexes each plane without a broadcast
        comp[undefined] = 0
    return v


def sample_vectors(directions, mask, step: int = 4, length: float = 3.0, *,
                   inside: bool = False, weights=None, spacing=None) -> np.ndarray:
    """Direction vectors on a regular grid of ``mask`` pixels, as a napari Vectors array.

    Parameters
    ----------
    directions : (ndim, *spatial) array_like
        Unit vectors (or zero vectors where no direction is known), component ``i``
        along array axis ``i``.
    mask : (*spatial) array_like of bool
        Where vectors are wanted (e.g. ``probability >= 0.5``).
    step : int
        Grid spacing in pixels along every axis; the grid starts at ``step // 2``.
    length : float
        Length of each drawn vector in pixels.
    inside : bool
        Shorten the vectors near the border so that both ends lie within the array
        (``0 <= coordinate <= size - 1``). napari's dims sliders span every layer's
        extent: a vector sticking out of a volume would shift the planes' slider grid
        off the whole pixels. Vectors left with no length are left out.
    weights : (*spatial) array_like, optional
        One vector per ``step``-wide cell instead of one per grid pixel: at the cell's
        pixel of largest weight (e.g. the probability) among those in ``mask`` with a
        direction. A vessel one or two pixels wide rarely crosses a grid pixel; it
        crosses cells, so thin vessels get vectors too, centred on their ridge.
    spacing : sequence of float, optional
        The voxel spacing the (physical) ``directions`` were computed with. The vectors
        are returned in voxel coordinates (``v_i / h_i``, scaled to ``length`` in
        physical units divided by the finest spacing), so that a layer with ``scale =
        spacing`` draws them along the vessels.

    Returns
    -------
    vectors : (N, 2, ndim) ndarray of float32
        napari's Vectors layout: ``vectors[k, 0]`` is the start point and
        ``vectors[k, 1]`` the projection. Each vector is centred on its grid pixel
        (start ``p - length/2 v``, projection ``length v``), since a vessel direction
        has no sign. Grid pixels (or cells) outside ``mask`` or with a zero vector are
        left out.

    Examples
    --------
    >>> v = np.zeros((2, 8, 8), np.float32); v[1] = 1           # all along the columns
    >>> sample_vectors(v, np.ones((8, 8), bool), step=4, length=2)[:, 0]
    array([[2., 1.],
           [2., 5.],
           [6., 1.],
           [6., 5.]], dtype=float32)
    >>> sample_vectors(v, np.ones((8, 8), bool), step=4, length=6, inside=True)[:2, :, 1]  # (start, proj)
    array([[0., 4.],
           [5., 2.]], dtype=float32)
    >>> line = np.zeros((8, 8), bool); line[3] = True           # a thin vessel off the grid rows
    >>> len(sample_vectors(v, line, step=4)), sample_vectors(v, line, step=4, weights=line)[:, 0, 0]
    (0, array([3., 3.], dtype=float32))
    """
    v = np.asarray(directions, dtype=np.float32)
    m = np.asarray(mask, dtype=bool)
    if v.ndim != m.ndim + 1 or v.shape[0] != m.ndim or v.shape[1:] != m.shape:
        raise ValueError(f"directions {v.shape} must have shape (ndim, *mask.shape) = "
                         f"{(m.ndim, *m.shape)}")
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"step must be a whole number >= 1, got {step!r}")
    if not (np.isfinite(length) and length > 0):
        raise ValueError(f"length must be > 0, got {length!r}")
    step = int(step)
    valid = m & (np.abs(v).sum(axis=0) > 0)
    if weights is None:
        keep = np.zeros(m.shape, bool)
        keep[tuple(slice(step // 2, None, step) for _ in m.shape)] = True
        keep &= valid
    else:
        keep = _cell_maxima(np.asarray(weights, np.float32), valid, step)
    pos = np.argwhere(keep).astype(np.float32)
    vec = v[(slice(None), *keep.nonzero())].T * np.float32(length)
    spacing = check_spacing(spacing, m.ndim)
    if spacing is not None:
        h = np.asarray(spacing, np.float32)
        vec = vec * (h.min() / h)  # physical length `length` (in finest voxels), in voxel units
    if inside and len(pos):
        half = np.abs(vec) / 2
        room = np.minimum(pos, np.asarray(m.shape, np.float32) - 1 - pos)
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = np.where(half > 0, room / np.where(half > 0, half, 1), np.inf).min(axis=1)
        vec *= np.minimum(fit, 1)[:, None].astype(np.float32)
        drawn = np.abs(vec).sum(axis=1) > 0  # a pixel on the border along its vessel has no room
        pos, vec = pos[drawn], vec[drawn]
    out = np.empty((len(pos), 2, m.ndim), np.float32)
    out[:, 0] = pos - vec / 2
    out[:, 1] = vec
    return out


def _cell_maxima(weights: np.ndarray, valid: np.ndarray, step: int) -> np.ndarray:
    """Mask of the pixel of largest weight among ``valid`` ones in each ``step``-wide cell."""
    if weights.shape != valid.shape:
        raise ValueError(f"weights {weights.shape} must have the mask's shape {valid.shape}")
    nd = valid.ndim
    cells = [-(-n // step) for n in valid.shape]
    w = np.full([c * step for c in cells], -np.inf, np.float32)
    inner = tuple(slice(0, n) for n in valid.shape)
    w[inner] = np.where(valid, weights, -np.inf)
    # (c0, s, c1, s, ...) -> (c0, c1, ..., s * s * ...): one row of pixels per cell
    blocks = w.reshape([x for c in cells for x in (c, step)])
    blocks = blocks.transpose([*range(0, 2 * nd, 2), *range(1, 2 * nd, 2)]).reshape(*cells, -1)
    best = blocks.argmax(axis=-1)
    found = np.isfinite(np.take_along_axis(blocks, best[..., None], axis=-1)[..., 0])
    offset = np.unravel_index(best[found], (step,) * nd)
    corner = np.nonzero(found)
    keep = np.zeros(valid.shape, bool)
    keep[tuple(c * step + o for c, o in zip(corner, offset, strict=True))] = True
    return keep


def vector_angles(vectors) -> np.ndarray:
    """Orientation of napari vectors in degrees, in [0, 180), in the plane of the last two axes.

    0 is along the columns (the last axis), 90 along the rows; opposite vectors have
    the same orientation, so a cyclic colour map over [0, 180) colours them alike.

    Examples
    --------
    >>> vecs = np.zeros((4, 2, 2)); vecs[:, 1] = [[0, 1], [1, 0], [-1, 0], [1, 1]]
    >>> vector_angles(vecs)
    array([ 0., 90., 90., 45.], dtype=float32)
    """
    a = np.asarray(vectors, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] != 2 or a.shape[2] < 2:
        raise ValueError(f"vectors must have shape (N, 2, ndim >= 2), got {a.shape}")
    proj = a[:, 1]
    ang = np.degrees(np.arctan2(proj[:, -2], proj[:, -1])) % 180.0
    ang[np.isclose(ang, 180.0)] = 0.0
    return ang.astype(np.float32)


def vector_elevations(vectors) -> np.ndarray:
    """Angle of napari vectors out of the plane of the last two axes, in degrees, in [0, 90].

    0 lies in a (rows, cols) plane, 90 runs along the first of the last three axes
    (across the planes of a volume). 2D vectors are all 0.

    Examples
    --------
    >>> vecs = np.zeros((3, 2, 3)); vecs[:, 1] = [[0, 0, 1], [1, 0, 0], [-1, 1, 0]]
    >>> vector_elevations(vecs)
    array([ 0., 90., 45.], dtype=float32)
    """
    a = np.asarray(vectors, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] != 2 or a.shape[2] < 2:
        raise ValueError(f"vectors must have shape (N, 2, ndim >= 2), got {a.shape}")
    if a.shape[2] == 2:
        return np.zeros(len(a), np.float32)
    proj = a[:, 1, -3:]
    return np.degrees(np.arctan2(np.abs(proj[:, 0]), np.hypot(proj[:, 1], proj[:, 2]))).astype(np.float32)


def orientation_colors(vectors) -> np.ndarray:
    """RGBA colours of napari vectors by their orientation in 3D, shape ``(N, 4)``.

    The direction-encoded colour of diffusion imaging: red, green and blue are the
    absolute components of the unit vector along the columns (last axis), the rows and
    the planes (the third axis from the end). A vessel along the columns is red, along
    the rows green, across the planes blue; oblique ones mix; opposite vectors have the
    same colour (a vessel direction has no sign). Zero vectors are grey. 2D vectors
    have no blue.

    Examples
    --------
    >>> vecs = np.zeros((3, 2, 3)); vecs[:, 1] = [[0, 0, 2], [0, -1, 0], [1, 0, 0]]
    >>> orientation_colors(vecs)[:, :3]
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    a = np.asarray(vectors, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] != 2 or a.shape[2] < 2:
        raise ValueError(f"vectors must have shape (N, 2, ndim >= 2), got {a.shape}")
    proj = a[:, 1, -3:][:, ::-1]  # (cols, rows[, planes])
    rgb = np.zeros((len(a), 3))
    rgb[:, :proj.shape[1]] = np.abs(proj)
    norm = np.linalg.norm(rgb, axis=1, keepdims=True)
    rgb = np.where(norm > 0, rgb / np.where(norm > 0, norm, 1), 0.5)
    return np.concatenate([rgb, np.ones((len(a), 1))], axis=1).astype(np.float32)
