"""Central finite-difference stencils of any even order, with edge padding.

The weights come from Fornberg's recursion (B. Fornberg, "Generation of finite
difference formulas on arbitrarily spaced grids", Math. Comp. 51, 1988), so any
even order is available without a table. Derivatives pad their input by
replicating the edge value (numpy's ``mode='edge'``), as the method prescribes.

``spacing`` (``(dz, dy, dx)``, or ``(dy, dx)`` in 2D; None is unit spacing) gives the
derivatives in physical units: the unit-spacing stencil divided by the axis' spacing.

`flux_second_derivative` is the compact second derivative ``d_i(c d_i u)`` in flux form
(half-point fluxes, three points), the diagonal terms of the ``"compact"`` stencil of
`napari_tubediff.core.diffusion` (`STENCILS`).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .checks import check_spacing

__all__ = ["fornberg_weights", "fd_weights", "derivative", "gradient", "divergence", "flux_second_derivative"]


def fornberg_weights(x0: float, grid: np.ndarray, m: int) -> np.ndarray:
    """Finite-difference weights for derivatives 0..m at ``x0`` on ``grid``.

    Parameters
    ----------
    x0 : float
        Point at which the derivative is approximated.
    grid : (n,) array_like
        Distinct node positions (any spacing).
    m : int
        Highest derivative order wanted.

    Returns
    -------
    weights : (m + 1, n) ndarray of float64
        ``weights[k] @ f(grid)`` approximates the k-th derivative at ``x0``.

    Examples
    --------
    >>> fornberg_weights(0.0, [-1, 0, 1], 2)[2]
    array([ 1., -2.,  1.])
    """
    x = np.asarray(grid, dtype=np.float64)
    n = x.size
    if m < 0 or n <= m:
        raise ValueError(f"need more than m={m} nodes, got {n}")
    c = np.zeros((m + 1, n))
    c[0, 0] = 1.0
    c1 = 1.0
    c4 = x[0] - x0
    for i in range(1, n):
        mn = min(i, m)
        c2 = 1.0
        c5 = c4
        c4 = x[i] - x0
        for j in range(i):
            c3 = x[i] - x[j]
            c2 *= c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[k, i] = c1 * (k * c[k - 1, i - 1] - c5 * c[k, i - 1]) / c2
                c[0, i] = -c1 * c5 * c[0, i - 1] / c2
            for k in range(mn, 0, -1):
                c[k, j] = (c4 * c[k, j] - k * c[k - 1, j]) / c3
            c[0, j] = c4 * c[0, j] / c3
        c1 = c2
    return c


@cache
def _fd_weights_cached(order: int) -> np.ndarray:
    r = order // 2
    w = fornberg_weights(0.0, np.arange(-r, r + 1), 1)[1]
    w[r] = 0.0  # exactly zero by symmetry; remove round-off
    w.setflags(write=False)
    return w


#: Highest stencil order accepted: Fornberg's recursion overflows float64 from order 172 on
#: (NaN weights), and orders beyond a few tens only widen the stencil.
MAX_ORDER = 64


def fd_weights(order: int = 8) -> np.ndarray:
    """Weights of the central first-derivative stencil of accuracy ``order``.

    Parameters
    ----------
    order : int
        Even accuracy order (2, 4, 6, 8, ...). The stencil has ``order + 1``
        taps, from ``-order/2`` to ``order/2``.

    Returns
    -------
    weights : (order + 1,) ndarray of float64
        ``sum(w[k] * u[i + k - order/2])`` approximates ``du/dx`` at ``i`` (unit spacing).
        The array is read-only.

    Examples
    --------
    >>> fd_weights(2)
    array([-0.5,  0. ,  0.5])
    >>> np.allclose(fd_weights(8)[5:], [4/5, -1/5, 4/105, -1/280])
    True
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise ValueError(f"order must be an even integer >= 2, got {order!r}")
    order = int(order)
    if order < 2 or order % 2 or order > MAX_ORDER:
        raise ValueError(f"order must be an even integer from 2 to {MAX_ORDER}, got {order}")
    return _fd_weights_cached(order)


def _axis_step(spacing, ndim: int, axis: int) -> float:
    if spacing is None:
        return 1.0
    if np.ndim(spacing) == 0:  # the one axis' spacing
        return check_spacing((spacing,), 1)[0]
    return check_spacing(spacing, ndim)[axis]


def derivative(u: np.ndarray, axis: int, order: int = 8, spacing=None) -> np.ndarray:
    """First derivative of ``u`` along ``axis`` by central differences.

    The array is padded by replicating its edge values (numpy ``'edge'``), so the
    output has the shape of the input.

    Parameters
    ----------
    u : ndarray
        Input array of any dimension.
    axis : int
        Axis to differentiate along.
    order : int
        Even accuracy order of the stencil.
    spacing : float or sequence of float, optional
        Grid spacing: the spacing of ``axis``, or one per axis of ``u``. None is 1.

    Returns
    -------
    du : ndarray
        Same shape as ``u``; float32 for float32 input, else float64.

    Examples
    --------
    >>> derivative(np.arange(10.0) ** 2, axis=0, order=4)[3:7]
    array([ 6.,  8., 10., 12.])
    >>> derivative(np.arange(10.0) ** 2, axis=0, order=4, spacing=2.0)[3:7]  # d/dx with x = 2 i
    array([3., 4., 5., 6.])
    """
    u = np.asarray(u)
    dtype = np.float32 if u.dtype == np.float32 else np.float64
    h = _axis_step(spacing, u.ndim, axis % max(u.ndim, 1))
    w = (fd_weights(order) / h).astype(dtype)
    r = order // 2
    axis = axis % u.ndim
    pad = [(0, 0)] * u.ndim
    pad[axis] = (r, r)
    p = np.pad(u.astype(dtype, copy=False), pad, mode="edge")
    n = u.shape[axis]
    out = np.zeros(u.shape, dtype=dtype)
    for k in range(order + 1):
        if w[k] == 0:
            continue
        sl = [slice(None)] * u.ndim
        sl[axis] = slice(k, k + n)
        out += w[k] * p[tuple(sl)]
    return out


def gradient(u: np.ndarray, order: int = 8, spacing=None) -> np.ndarray:
    """Gradient of ``u`` as an array of shape ``(u.ndim, *u.shape)``.

    Component ``i`` is the derivative along array axis ``i`` (see `derivative`),
    in physical units with ``spacing`` (one length per axis; None is 1).

    Examples
    --------
    >>> g = gradient(np.add.outer(np.arange(5.0), 2 * np.arange(6.0)), order=2)
    >>> g.shape, float(g[0, 2, 2]), float(g[1, 2, 2])
    ((2, 5, 6), 1.0, 2.0)
    """
    u = np.asarray(u)
    spacing = check_spacing(spacing, u.ndim)
    return np.stack([derivative(u, i, order, spacing) for i in range(u.ndim)])


def divergence(q: np.ndarray, order: int = 8, spacing=None) -> np.ndarray:
    """Divergence of a vector field ``q`` of shape ``(ndim, *spatial)``.

    ``sum_i d q[i] / d x_i``, each derivative as in `derivative` (``spacing``: one
    length per spatial axis; None is 1).

    Examples
    --------
    >>> x = np.arange(6.0)
    >>> q = np.stack(np.meshgrid(x, x, indexing="ij"))  # q = (row, col)
    >>> float(divergence(q, order=2)[2, 2])
    2.0
    """
    q = np.asarray(q)
    ndim = q.shape[0]
    if q.ndim != ndim + 1:
        raise ValueError(f"a vector field of {ndim} components needs shape ({ndim}, *spatial) "
                         f"with {ndim} spatial axes, got shape {q.shape}")
    spacing = check_spacing(spacing, ndim)
    out = derivative(q[0], 0, order, spacing)
    for i in range(1, ndim):
        out += derivative(q[i], i, order, spacing)
    return out


def flux_second_derivative(u: np.ndarray, coeff, axis: int, spacing=None) -> np.ndarray:
    """``d/dx (c du/dx)`` along ``axis`` in flux form, with second-order half-point fluxes.

    ``(c_{i+1/2} (u_{i+1} - u_i) - c_{i-1/2} (u_i - u_{i-1})) / h^2`` with ``c`` at a half
    point the mean of its two neighbours. ``u`` and ``c`` are padded by replicating their
    edge values (as `derivative`), so no flux crosses the border. Unlike two central first
    differences (whose composite cannot see the odd-even mode ``(-1)^i``: its central
    difference is zero), this three-point stencil damps that mode fastest: its symbol is
    ``-4 c sin^2(theta / 2) / h^2``, ``-4 c / h^2`` at ``theta = pi``.

    Parameters
    ----------
    u : ndarray
        The field, any dimension.
    coeff : float or ndarray
        The coefficient ``c``: a scalar or an array of ``u``'s shape.
    axis : int
        Axis to differentiate along.
    spacing : float or sequence of float, optional
        Grid spacing: the spacing of ``axis``, or one per axis of ``u``. None is 1.

    Returns
    -------
    out : ndarray
        Same shape as ``u``; float32 for float32 input, else float64.

    Examples
    --------
    >>> flux_second_derivative(np.arange(6.0) ** 2, 1.0, axis=0)[1:5]  # d2(x^2)/dx2 = 2
    array([2., 2., 2., 2.])
    >>> flux_second_derivative(np.array([1.0, -1, 1, -1, 1, -1]), 1.0, axis=0)  # (-1)^i: -4 u inside
    array([-2.,  4., -4.,  4., -4.,  2.])
    """
    u = np.asarray(u)
    dtype = np.float32 if u.dtype == np.float32 else np.float64
    axis = axis % u.ndim
    h = _axis_step(spacing, u.ndim, axis)
    c = np.broadcast_to(np.asarray(coeff, dtype=dtype), u.shape)
    n = u.shape[axis]
    pad = [(0, 0)] * u.ndim
    pad[axis] = (1, 1)
    pu = np.pad(u.astype(dtype, copy=False), pad, mode="edge")
    pc = np.pad(c, pad, mode="edge")

    def part(a, k):  # rows k .. k + n of the padded array along the axis
        sl = [slice(None)] * u.ndim
        sl[axis] = slice(k, k + n)
        return a[tuple(sl)]

    # half-point fluxes F_{i+1/2} for i = -1 .. n - 1 (n + 1 of them); the edge ones are 0
    sl_lo = [slice(None)] * u.ndim
    sl_hi = [slice(None)] * u.ndim
    sl_lo[axis] = slice(0, n + 1)
    sl_hi[axis] = slice(1, n + 2)
    lo, hi = tuple(sl_lo), tuple(sl_hi)
    flux = (pc[lo] + pc[hi]) * (pu[hi] - pu[lo])  # 2 c_{i+1/2} (u_{i+1} - u_i)
    out = (part(flux, 1) - part(flux, 0)) * dtype(0.5 / (h * h))
    return out.astype(dtype, copy=False)
