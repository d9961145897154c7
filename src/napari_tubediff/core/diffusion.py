"""Anisotropic diffusion refinement: the tensor, the right-hand side, RK4 and the step loop.

The PDE (../METHOD.md, "The refiner", steps 3 to 6)::

    D = lambda_par v v^T + lambda_perp (I - v v^T)
    du/dt = f(D, u) = ReLU(div(D grad u))

with grad and div both by central differences of order ``order`` (edge padding),
integrated by classical RK4 with ``u`` clipped to [0, 1] after every step.

Stencils (``stencil``, `STENCILS`): ``"wide"`` (the default, the method's) composes the two
central first differences, so ``d_i(D_ij d_j u)`` spans ``2 order + 1`` points along an axis;
the odd-even mode ``(-1)^i`` has a zero central difference, so that operator neither sees
nor damps it. ``"compact"`` is Weickert's standard scheme (J. Weickert, "Anisotropic
Diffusion in Image Processing", Teubner, 1998): the diagonal terms ``d_i(D_ii d_i u)``
in flux form with second-order half-point fluxes (`stencils.flux_second_derivative`: ``D``
at a half point the mean of its two neighbours), the mixed terms ``d_i(D_ij d_j u)``,
``i != j``, by second-order central differences of both derivatives: a 3x3 (3x3x3) stencil
of second order that damps ``(-1)^i`` fastest. ``order`` applies to ``"wide"`` only.

Two implementations of the step share the validation and the stepping logic here:
a plain vectorised numpy one (the reference, `diffusion_rhs` + `rk4_step`) and a
fused parallel numba kernel (`napari_tubediff.core._kernels`) that the ``"auto"``
backend uses. ``napari_tubediff.core.torch_diffusion`` is the differentiable
torch version used for training; ``backend="torch"`` runs it from here.

Stability: an explicit scheme diverges when ``dt`` exceeds the limit given by
`max_stable_dt`. Rather than raising, `diffuse` and `iter_diffusion` split every
step that is too large into the smallest number of equal sub-steps that are
stable (automatic sub-stepping): the field after step ``n`` is always the field
at time ``n * dt``. ``substeps`` in the returned info (see `plan_substeps`) says
how many sub-steps one step costs.

Voxel spacing: ``spacing=(dz, dy, dx)`` (2D ``(dy, dx)``; None is 1 on every axis) makes
grad and div physical derivatives (`napari_tubediff.core.stencils`), and the directions unit
vectors in physical space, so a tube sampled with spacing (3, 1, 1) diffuses like the same
tube sampled isotropically. ``dt`` and the lambdas are then in the spacing's length unit
squared. Since ``div(D grad u) = sum_ij (1/h_i) d_i (D_ij (1/h_j) d_j u)`` with unit-spacing
stencils ``d_i``, the fast paths run the unit-spacing operator on the index-space tensor
``D'_ij = D_ij / (h_i h_j)`` (`index_tensor`); the numpy reference differentiates in
physical units instead, so the two check each other. The stable limit shrinks with the
finest spacing (`max_stable_dt`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache

import numpy as np

from .checks import (
    check_directions,
    check_field,
    check_lambda,
    check_memory,
    check_positive,
    check_spacing,
    check_steps,
)
from .stencils import derivative, fd_weights, flux_second_derivative

__all__ = [
    "diffusion_tensor",
    "index_tensor",
    "diffusion_rhs",
    "rk4_step",
    "max_stable_dt",
    "plan_substeps",
    "check_plan",
    "MAX_SUBSTEPS",
    "diffuse",
    "iter_diffusion",
    "normalize_directions",
    "BACKENDS",
    "STENCILS",
]

BACKENDS = ("auto", "numba", "numpy", "torch")
#: The discretisations of ``div(D grad u)`` (module docstring): "wide" is the method's.
STENCILS = ("wide", "compact")


def check_stencil(stencil) -> str:
    """``stencil`` if it is one of `STENCILS`, else ValueError saying what to use.

    Examples
    --------
    >>> check_stencil("compact")
    'compact'
    """
    if not isinstance(stencil, str) or stencil not in STENCILS:
        raise ValueError(f"stencil must be one of {', '.join(STENCILS)}, got {stencil!r}")
    return stencil


def normalize_directions(directions: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Scale every vector of a ``(ndim, *spatial)`` field to unit length.

    Vectors shorter than ``eps`` become zero vectors ("no direction": the diffusion
    tensor there is ``lambda_perp * I``).

    Examples
    --------
    >>> normalize_directions(np.array([[3.0, 0.0], [4.0, 0.0]]))
    array([[0.6, 0. ],
           [0.8, 0. ]], dtype=float32)
    """
    v = np.asarray(directions, dtype=np.float32)
    norm = np.sqrt((v.astype(np.float64) ** 2).sum(axis=0))
    out = np.zeros_like(v)
    ok = norm >= eps
    out[:, ok] = (v[:, ok] / norm[ok]).astype(np.float32)
    return out


def diffusion_tensor(directions: np.ndarray, lambda_par=1.0, lambda_perp=0.1) -> np.ndarray:
    """Per-pixel diffusion tensor ``D = l_par v v^T + l_perp (I - v v^T)``.

    Parameters
    ----------
    directions : (ndim, *spatial) ndarray
        Unit vectors along the vessel, component ``i`` along array axis ``i``; zero
        vectors mean "no direction" and give ``l_perp * I``.
    lambda_par, lambda_perp : float or ndarray
        Diffusivity along and across the vessel: scalars or per-pixel arrays of the
        spatial shape, finite and >= 0.

    Returns
    -------
    D : (ndim, ndim, *spatial) ndarray of float32
        Symmetric tensor field.

    Examples
    --------
    >>> v = np.zeros((2, 1, 1)); v[1] = 1  # along the columns
    >>> diffusion_tensor(v, 1.0, 0.1)[:, :, 0, 0]
    array([[0.1, 0. ],
           [0. , 1. ]], dtype=float32)
    """
    v = np.asarray(directions)
    if v.ndim < 2:
        raise ValueError(f"directions must have shape (ndim, *spatial), got {v.shape}")
    spatial = v.shape[1:]
    v = check_directions(v, spatial)
    lpar = check_lambda(lambda_par, spatial, "lambda_par")
    lperp = check_lambda(lambda_perp, spatial, "lambda_perp")
    return _tensor(v, lpar, lperp)


def index_tensor(D: np.ndarray, spacing=None) -> np.ndarray:
    """The tensor ``D'_ij = D_ij / (h_i h_j)`` that gives, with unit-spacing stencils, the
    physical ``div(D grad u)`` on a grid of spacing ``h`` (see the module docstring).

    Examples
    --------
    >>> D = np.eye(2, dtype=np.float32)[:, :, None, None] * np.ones((1, 1, 1, 1), np.float32)
    >>> index_tensor(D, (2.0, 1.0))[:, :, 0, 0]
    array([[0.25, 0.  ],
           [0.  , 1.  ]], dtype=float32)
    """
    D = np.asarray(D, dtype=np.float32)
    spacing = check_spacing(spacing, D.shape[0])
    if spacing is None:
        return D
    inv = [np.float32(1.0 / h) for h in spacing]
    out = np.empty_like(D)
    for i in range(D.shape[0]):
        for j in range(D.shape[0]):
            out[i, j] = D[i, j] * (inv[i] * inv[j])
    return out


def _tensor(v: np.ndarray, lpar, lperp) -> np.ndarray:
    ndim = v.shape[0]
    spatial = v.shape[1:]
    diff = np.asarray(lpar, dtype=np.float32) - np.asarray(lperp, dtype=np.float32)
    D = np.empty((ndim, ndim, *spatial), dtype=np.float32)
    for i in range(ndim):
        for j in range(i, ndim):
            d = diff * v[i] * v[j]
            if i == j:
                d = d + np.asarray(lperp, dtype=np.float32)
            D[i, j] = d
            D[j, i] = D[i, j]
    return D


def diffusion_rhs(u: np.ndarray, D: np.ndarray, order: int = 8, relu: bool = True,
                  spacing=None, stencil: str = "wide") -> np.ndarray:
    """``f(D, u) = ReLU(div(D grad u))``, the plain numpy reference.

    Parameters
    ----------
    u : (*spatial) ndarray
        The field.
    D : (ndim, ndim, *spatial) ndarray
        Tensor field from `diffusion_tensor`.
    order : int
        Even accuracy order of the central differences (edge padding).
    relu : bool
        Apply the ReLU (True for the method; False gives the linear operator,
        which the tests use to check the time integrator's order).
    spacing : sequence of float, optional
        Grid spacing per axis; grad and div in physical units (None: 1).
    stencil : {"wide", "compact"}
        The discretisation (module docstring); ``order`` is the wide stencil's.

    Examples
    --------
    >>> u = np.add.outer(np.arange(9.0) ** 2, np.zeros(9))  # u = x_0^2
    >>> D = diffusion_tensor(np.zeros((2, 9, 9)), 1.0, 1.0)   # isotropic, lambda = 1
    >>> float(diffusion_rhs(u, D, order=2)[4, 4])             # d2(x^2)/dx^2 = 2
    2.0
    >>> float(diffusion_rhs(u, D, stencil="compact")[4, 4])
    2.0
    """
    u = np.asarray(u)
    ndim = u.ndim
    spacing = check_spacing(spacing, ndim)
    if check_stencil(stencil) == "compact":
        out = _compact_rhs(u, D, spacing)
        if relu:
            np.maximum(out, 0, out=out)
        return out
    g = [derivative(u, i, order, spacing) for i in range(ndim)]
    out = None
    for i in range(ndim):
        q = D[i, 0] * g[0]
        for j in range(1, ndim):
            q = q + D[i, j] * g[j]
        d = derivative(q, i, order, spacing)
        out = d if out is None else out + d
    if relu:
        np.maximum(out, 0, out=out)
    return out


def _compact_rhs(u: np.ndarray, D: np.ndarray, spacing) -> np.ndarray:
    # diagonal terms in flux form (three points), mixed ones by central differences (order 2)
    ndim = u.ndim
    out = flux_second_derivative(u, D[0, 0], 0, spacing)
    for i in range(1, ndim):
        out += flux_second_derivative(u, D[i, i], i, spacing)
    if ndim > 1:
        g = [derivative(u, j, 2, spacing) for j in range(ndim)]
        for i in range(ndim):
            q = sum(D[i, j] * g[j] for j in range(ndim) if j != i)
            out += derivative(q, i, 2, spacing)
    return out


def rk4_step(f: Callable[[np.ndarray], np.ndarray], u: np.ndarray, dt: float) -> np.ndarray:
    """One classical Runge-Kutta step of ``du/dt = f(u)`` (no clipping).

    Examples
    --------
    >>> round(float(rk4_step(lambda y: y, np.array(1.0), 0.1)), 12)  # exp(0.1) = 1.1051709...
    1.105170833333
    """
    k1 = f(u)
    k2 = f(u + (dt / 2) * k1)
    k3 = f(u + (dt / 2) * k2)
    k4 = f(u + dt * k3)
    return u + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


@cache
def _rk4_real_stability_bound() -> float:
    # |1 + z + z^2/2 + z^3/6 + z^4/24| = 1 on the negative real axis, z != 0:
    # the real root of z^3/24 + z^2/6 + z/2 + 1 = 0 (about -2.785).
    roots = np.roots([1 / 24, 1 / 6, 1 / 2, 1])
    return float(-min(r.real for r in roots if abs(r.imag) < 1e-9))


@cache
def _max_symbol(order: int) -> float:
    # The central first-derivative stencil has the Fourier symbol i*S(theta),
    # S(theta) = 2 sum_k w_k sin(k theta) over k > 0; the composite second
    # derivative has -S^2. Its maximum is found on a fine grid, then refined.
    w = fd_weights(order)
    r = order // 2
    k = np.arange(1, r + 1)
    theta = np.linspace(0, np.pi, 20001)
    s = 2 * np.sin(np.outer(theta, k)) @ w[r + 1:]
    t0 = theta[np.argmax(np.abs(s))]
    theta = np.linspace(max(t0 - 1e-3, 0), min(t0 + 1e-3, np.pi), 20001)
    s = 2 * np.sin(np.outer(theta, k)) @ w[r + 1:]
    return float(np.abs(s).max())


def _max_symbol_sq(order: int, stencil: str = "wide") -> float:
    # the largest |symbol| of the unit-grid second derivative: S_max^2 for the wide stencil;
    # 4 for the compact one (-4 sin^2(theta/2), at theta = pi). The compact mixed terms
    # (sin theta_i sin theta_j D_ij) keep the whole symbol within lambda_max * 4 sum_i h_i^-2:
    # it is a^T (D o M) a with a_i = 2 sin(theta_i / 2) / h_i, M_ii = 1, M_ij = cos(theta_i / 2)
    # cos(theta_j / 2), M positive semi-definite, and Schur's bound lambda_max(D o M) <=
    # max_i M_ii lambda_max(D).
    return 4.0 if check_stencil(stencil) == "compact" else _max_symbol(order) ** 2


def _inverse_squares(ndim: int, spacing) -> float:
    # sum_i 1 / h_i^2: ndim on a unit grid
    spacing = check_spacing(spacing, ndim)
    return float(ndim) if spacing is None else sum(1.0 / h**2 for h in spacing)


def max_stable_dt(lambda_par=1.0, lambda_perp=0.1, order: int = 8, ndim: int = 2,
                  spacing=None, stencil: str = "wide") -> float:
    """Largest stable RK4 time step for the explicit scheme.

    Von Neumann analysis of the linear operator ``div(D grad u)`` with the
    order-``order`` central stencil: its eigenvalues lie in
    ``[-ndim * S_max^2 * lambda_max, 0]`` where ``S_max`` is the largest value of
    the first-derivative stencil's symbol, and RK4 is stable on the negative real
    axis up to ``|z| = 2.785``. So ``dt_max = 2.785 / (ndim S_max^2 lambda_max)``.
    With spacing ``h`` the symbol is ``-(S h^-1)^T D (S h^-1)``, at most
    ``lambda_max S_max^2 sum_i h_i^-2`` in size, which replaces ``ndim S_max^2 lambda_max``.
    The ReLU and the clipping only remove growth, so the bound holds for ``f``.
    The ``"compact"`` stencil's second difference has the symbol ``-4 sin^2(theta/2)`` (per
    axis, times ``D``), so ``4`` replaces ``S_max^2`` (2.99 for order 8): a smaller limit.

    Parameters
    ----------
    lambda_par, lambda_perp : float or ndarray
        Diffusivities (their maximum over the image counts).
    order : int
        Stencil order.
    ndim : int
        Number of spatial dimensions.
    spacing : sequence of float, optional
        Grid spacing per axis (None: 1).
    stencil : {"wide", "compact"}
        The discretisation (`diffusion_rhs`).

    Examples
    --------
    >>> round(max_stable_dt(1.0, 0.1, order=2, ndim=1), 3)  # 2.785 / (1 * 1^2 * 1)
    2.785
    >>> round(max_stable_dt(1.0, 0.1, ndim=2, stencil="compact"), 3)  # 2.785 / (2 * 4 * 1)
    0.348
    >>> round(max_stable_dt(1.0, 0.1, order=2, ndim=2, spacing=(2.0, 0.5)), 3)  # 2.785 / (1/4 + 4)
    0.655
    """
    fd_weights(order)  # validates order
    lmax = max(float(np.max(lambda_par)), float(np.max(lambda_perp)))
    if lmax <= 0:
        return math.inf
    sym = _max_symbol_sq(order, stencil)
    return _rk4_real_stability_bound() / (_inverse_squares(ndim, spacing) * sym * lmax)


def plan_substeps(dt: float, lambda_par=1.0, lambda_perp=0.1, order: int = 8, ndim: int = 2,
                  spacing=None, stencil: str = "wide") -> int:
    """How many equal RK4 sub-steps one step of size ``dt`` needs to be stable.

    Examples
    --------
    >>> plan_substeps(0.1, 1.0, 0.1, order=8, ndim=2)
    1
    >>> plan_substeps(1.0, 1.0, 0.1, order=8, ndim=2)
    3
    >>> plan_substeps(1.0, 1.0, 0.1, ndim=2, stencil="compact")
    3
    >>> plan_substeps(0.25, 1.0, 0.1, ndim=3, stencil="compact")  # 3D limit 0.232
    2
    """
    limit = max_stable_dt(lambda_par, lambda_perp, order, ndim, spacing, stencil)
    if not math.isfinite(limit):
        return 1
    return max(1, math.ceil(dt / limit - 1e-12))


#: Peak bytes per pixel (2D) / voxel (3D) of a diffusion run, its inputs (field and
#: directions) included: 2D 28 traced by ``benchmarks/bench_memory.py`` plus 12 of input;
#: 3D the kernel's ~30 (docs/performance.md, section 5) plus 16 of input.
DIFFUSE_BYTES = {2: 40, 3: 46}

#: The most RK4 sub-steps one call may plan (``steps`` times `plan_substeps`). A million
#: sub-steps are about an hour on a DRIVE-sized image (docs/performance.md: ~3 ms each) and
#: days on a 256^3 volume; beyond that the plan comes from a dt or a lambda that is wrong
#: by orders of magnitude (``dt=1e9`` would plan 3 billion), so it is refused up front
#: instead of hanging.
MAX_SUBSTEPS = 1_000_000


def check_plan(dt: float, steps: int, lambda_par=1.0, lambda_perp=0.1, order: int = 8,
               ndim: int = 2, spacing=None, stencil: str = "wide") -> int:
    """Sub-steps per step (`plan_substeps`) after checking that the whole run stays within
    `MAX_SUBSTEPS`; ValueError naming the largest sensible ``dt`` otherwise.

    Examples
    --------
    >>> check_plan(0.25, 30, 1.0, 0.02)
    1
    >>> check_plan(1e9, 1, 1.0, 0.02)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: dt=1e+09 with lambda_par up to 1 would need 2...
    """
    n_sub = plan_substeps(dt, lambda_par, lambda_perp, order, ndim, spacing, stencil)
    total = n_sub * steps
    if total <= MAX_SUBSTEPS:
        return n_sub
    limit = max_stable_dt(lambda_par, lambda_perp, order, ndim, spacing, stencil)
    lmax = max(float(np.max(lambda_par)), float(np.max(lambda_perp)))
    if steps > MAX_SUBSTEPS:
        raise ValueError(f"steps={steps} is more than the {MAX_SUBSTEPS:,} RK4 steps one run may take; "
                         "use fewer steps (a larger dt moves the field further per step)")
    best = limit * (MAX_SUBSTEPS // steps)
    raise ValueError(
        f"dt={dt:g} with lambda_par up to {lmax:g} would need {total:,} RK4 sub-steps for {steps} "
        f"step(s) (the stable limit is dt <= {limit:.3g}), over the limit of {MAX_SUBSTEPS:,}; "
        f"use dt <= {best:.3g} for {steps} step(s), fewer steps, or smaller lambdas (typical: "
        "lambda_par 1, dt 0.25)")


def _prepare(u, directions, lambda_par, lambda_perp, dt, steps, order, backend, device="auto",
             spacing=None, stencil="wide"):
    steps = check_steps(steps, "steps")
    u = check_field(u, "u")
    directions = check_directions(directions, u.shape)
    lpar = check_lambda(lambda_par, u.shape, "lambda_par")
    lperp = check_lambda(lambda_perp, u.shape, "lambda_perp")
    dt = check_positive(dt, "dt")
    fd_weights(order)
    spacing = check_spacing(spacing, u.ndim)
    stencil = check_stencil(stencil)
    check_plan(dt, steps, lpar, lperp, int(order), u.ndim, spacing, stencil)
    check_memory(u.shape, DIFFUSE_BYTES[u.ndim], "the diffusion of")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    device = _resolve_device(backend, device)
    return u, directions, lpar, lperp, dt, steps, int(order), device, spacing, stencil


def _resolve_device(backend: str, device) -> str:
    """The device the steps run on; numba and numpy run on the CPU only."""
    if backend in ("numba", "numpy") and device in (None, "auto"):
        return "cpu"  # an explicit CPU backend: no need to ask torch about CUDA
    from .device import resolve_device

    dev = resolve_device(device)
    if dev != "cpu" and backend in ("numba", "numpy"):
        raise ValueError(f"backend={backend!r} runs on the CPU; use backend='torch' or 'auto' "
                         f"with device={device!r}")
    return dev


def _resolve_backend(backend: str, device: str = "cpu") -> str:
    if device != "cpu":
        return "torch"  # the only backend that runs on CUDA
    if backend != "auto":
        if backend == "numba":
            from . import _kernels
            if not _kernels.AVAILABLE:
                raise ValueError("backend='numba' needs the numba package, which is not installed")
        return backend
    from . import _kernels
    return "numba" if _kernels.AVAILABLE else "numpy"


class _Stepper:
    """Advances a field by whole steps with one backend; holds its buffers."""

    def __init__(self, u, v, lpar, lperp, order, backend, relu=True, device="cpu", spacing=None,
                 stencil="wide"):
        self.order = order
        self.relu = relu
        self.spacing = spacing
        self.stencil = stencil
        if backend == "numba" and stencil == "compact":
            from ._kernels import CompactStepper
            self._impl = CompactStepper(u, v, lpar, lperp, relu, spacing)
        elif backend == "numba":
            from ._kernels import KernelStepper
            self._impl = KernelStepper(u, v, lpar, lperp, order, relu, spacing)
        elif backend == "torch":
            from .torch_diffusion import NumpyTorchStepper
            self._impl = NumpyTorchStepper(u, index_tensor(_tensor(v, lpar, lperp), spacing), order, relu,
                                           device, stencil)
        else:
            self._impl = None
            self.D = _tensor(v, lpar, lperp)  # physical: diffusion_rhs differentiates with the spacing
            self.u = u.copy()

    def advance(self, n: int, dt: float) -> None:
        if self._impl is not None:
            self._impl.advance(n, dt)
            return
        f = lambda x: diffusion_rhs(x, self.D, self.order, self.relu, self.spacing, self.stencil)  # noqa: E731
        for _ in range(n):
            self.u = np.clip(rk4_step(f, self.u, np.float32(dt)), 0, 1).astype(np.float32, copy=False)

    def field(self) -> np.ndarray:
        if self._impl is not None:
            return self._impl.field()
        return self.u.copy()


def iter_diffusion(u, directions, *, lambda_par=1.0, lambda_perp=0.1, dt, steps, order=8,
                   every=1, backend="auto", device="auto", spacing=None,
                   stencil="wide") -> Iterator[tuple[int, np.ndarray]]:
    """Run the diffusion and yield ``(step, field)`` every ``every`` steps.

    Same arguments as `diffuse`, plus ``every``. The last step is always yielded,
    so ``steps=10, every=4`` yields steps 4, 8 and 10; ``steps=0`` yields nothing.
    Each yielded field is a fresh float32 array the caller may keep. All input is
    checked before the first step, so a bad argument raises at the first
    ``next()``; stopping the iteration between yields stops the computation.

    Examples
    --------
    >>> u = np.zeros((32, 32), np.float32); u[16, 4:12] = u[16, 20:28] = 1
    >>> v = np.zeros((2, 32, 32), np.float32); v[1] = 1
    >>> [s for s, _ in iter_diffusion(u, v, dt=0.2, steps=5, every=2)]
    [2, 4, 5]
    """
    u, v, lpar, lperp, dt, steps, order, device, spacing, stencil = _prepare(
        u, directions, lambda_par, lambda_perp, dt, steps, order, backend, device, spacing, stencil)
    every = check_steps(every, "every", minimum=1)
    yield from _iterate(u, v, lpar, lperp, dt, steps, order, every, backend, device=device,
                        spacing=spacing, stencil=stencil)


def _iterate(u, v, lpar, lperp, dt, steps, order, every, backend, relu=True, device="cpu", spacing=None,
             stencil="wide"):
    if steps == 0:
        return
    backend = _resolve_backend(backend, device)
    n_sub = plan_substeps(dt, lpar, lperp, order, u.ndim, spacing, stencil)
    stepper = _Stepper(u, v, lpar, lperp, order, backend, relu, device, spacing, stencil)
    done = 0
    while done < steps:
        n = min(every, steps - done)
        stepper.advance(n * n_sub, dt / n_sub)
        done += n
        yield done, stepper.field()


def diffuse(u, directions, *, lambda_par=1.0, lambda_perp=0.1, dt, steps, order=8,
            backend="auto", device="auto", spacing=None, stencil="wide") -> np.ndarray:
    """Refine a probability field by anisotropic diffusion along ``directions``.

    Parameters
    ----------
    u : (M, N) or (P, M, N) array_like
        Probability field with values in [0, 1] (no NaN, no colour channels).
    directions : (ndim, *u.shape) array_like
        Unit vectors along the vessels (component ``i`` along axis ``i``); zero
        vectors where no direction is known (isotropic ``lambda_perp`` there).
    lambda_par, lambda_perp : float or ndarray
        Diffusivity along and across the vessels, >= 0; scalars or per-pixel.
    dt : float
        Time step, > 0. Steps above `max_stable_dt` are split into stable
        sub-steps automatically (see the module docstring).
    steps : int
        Number of RK4 steps, >= 0.
    order : int
        Even accuracy order of the central differences (8 in the method; the wide stencil's).
    backend : {"auto", "numba", "numpy", "torch"}
        "auto" takes the fused numba kernel when numba is installed, else numpy,
        and the torch path on a CUDA device (both stencils).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the steps run (`napari_tubediff.core.device.resolve_device`): "auto"
        takes CUDA when torch sees a GPU, else the CPU. On CUDA the torch backend
        runs; numba and numpy are CPU-only.
    spacing : sequence of float, optional
        Voxel spacing ``(dz, dy, dx)`` (2D ``(dy, dx)``); None is 1 on every axis. The
        derivatives are physical, ``directions`` unit vectors in physical space, ``dt`` and
        the lambdas in the spacing's length unit squared (module docstring).
    stencil : {"wide", "compact"}
        How ``div(D grad u)`` is discretised (module docstring): "wide", the method's two
        composed central differences of order ``order``, or "compact", Weickert's 3-point
        scheme that damps the odd-even mode. Its stable ``dt`` is smaller (`max_stable_dt`).

    Returns
    -------
    refined : ndarray of float32
        The field after ``steps`` steps, in [0, 1], never below ``u``.

    Examples
    --------
    >>> u = np.zeros((32, 32), np.float32); u[16, 4:14] = u[16, 18:28] = 1  # a gap at 14..17
    >>> v = np.zeros((2, 32, 32), np.float32); v[1] = 1                    # vessels run along axis 1
    >>> r = diffuse(u, v, lambda_par=1.0, lambda_perp=0.01, dt=0.2, steps=40)
    >>> bool(r[16, 14:18].min() > u[16, 14:18].max()), bool(r[10, 16] < 0.01)
    (True, True)
    """
    u, v, lpar, lperp, dt, steps, order, device, spacing, stencil = _prepare(
        u, directions, lambda_par, lambda_perp, dt, steps, order, backend, device, spacing, stencil)
    # with every >= steps the iterator yields once, the final field (nothing for steps == 0)
    final = [field for _, field in _iterate(u, v, lpar, lperp, dt, steps, order, max(steps, 1), backend,
                                            device=device, spacing=spacing, stencil=stencil)]
    return final[-1] if final else u.copy()
