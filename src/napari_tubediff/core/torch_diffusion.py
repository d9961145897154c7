"""Differentiable torch version of the diffusion numerics, for training.

Same discretisation as `napari_tubediff.core.diffusion` (order-``order`` central
differences with edge padding, ReLU, classical RK4, clip after each step), on
batched tensors: fields ``(N, 1, *spatial)``, directions ``(N, ndim, *spatial)``,
lambdas scalars or tensors broadcastable to ``(N, 1, *spatial)`` (so they can be
learnable parameters). Gradients flow to the field, the directions and the lambdas.

The stencil (`napari_tubediff.core.diffusion.STENCILS`) travels in the ``weights`` argument
of `rhs_t` and `rk4_step_t`: the wide stencil's first-derivative weights (a tensor), or
None for the compact one (`compact_rhs_t`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint

from .checks import check_spacing
from .stencils import fd_weights

__all__ = ["tensor_components", "derivative_t", "compact_rhs_t", "rhs_t", "rk4_step_t", "diffuse_t"]


def derivative_t(u: torch.Tensor, dim: int, weights: torch.Tensor) -> torch.Tensor:
    """Central-difference derivative of ``u`` (N, C, *spatial) along spatial ``dim``.

    ``dim`` counts spatial axes from 0; edge-replicating padding.
    """
    nsp = u.ndim - 2
    r = (weights.numel() - 1) // 2
    pad = [0, 0] * nsp
    # F.pad lists the last axis first
    k = 2 * (nsp - 1 - dim)
    pad[k] = pad[k + 1] = r
    p = F.pad(u, pad, mode="replicate")
    n = u.shape[2 + dim]
    out = None
    for i in range(weights.numel()):
        if i == r:  # the centre weight of a central first derivative is zero
            continue
        term = weights[i] * p.narrow(2 + dim, i, n)
        out = term if out is None else out + term
    return out


def tensor_components(v: torch.Tensor, lambda_par, lambda_perp, spacing=None) -> list[list[torch.Tensor]]:
    """``D[i][j]`` as (N, 1, *spatial) tensors for directions ``v`` (N, ndim, *spatial).

    With ``spacing`` (one length per spatial axis) the index-space tensor
    ``D_ij / (h_i h_j)`` of `napari_tubediff.core.diffusion.index_tensor`, for the
    unit-spacing stencils of `rhs_t`.
    """
    ndim = v.shape[1]
    spacing = check_spacing(spacing, ndim)
    diff = lambda_par - lambda_perp
    D = [[None] * ndim for _ in range(ndim)]
    for i in range(ndim):
        for j in range(i, ndim):
            d = diff * v[:, i:i + 1] * v[:, j:j + 1]
            if i == j:
                d = d + lambda_perp
            if spacing is not None:
                d = d * (1.0 / (spacing[i] * spacing[j]))
            D[i][j] = D[j][i] = d
    return D


def _shift(p: torch.Tensor, dim: int, k: int, n: int) -> torch.Tensor:
    return p.narrow(2 + dim, k, n)


def _pad1(u: torch.Tensor, dim: int) -> torch.Tensor:
    # one cell of edge replication on each side of spatial axis ``dim``
    nsp = u.ndim - 2
    pad = [0, 0] * nsp
    k = 2 * (nsp - 1 - dim)
    pad[k] = pad[k + 1] = 1
    return F.pad(u, pad, mode="replicate")


def compact_rhs_t(u: torch.Tensor, D) -> torch.Tensor:
    """``div(D grad u)`` by the compact stencil (no ReLU), as `napari_tubediff.core.diffusion`'s
    ``stencil="compact"``: the diagonal terms in flux form with half-point fluxes (``D`` there the
    mean of its neighbours), the mixed ones by second-order central differences (Weickert's
    standard scheme); edge padding."""
    ndim = u.ndim - 2
    out = None
    for i in range(ndim):
        n = u.shape[2 + i]
        pu, pc = _pad1(u, i), _pad1(D[i][i], i)
        # 2 c_{k+1/2} (u_{k+1} - u_k) for the n + 1 half points k = -1 .. n - 1
        flux = ((_shift(pc, i, 0, n + 1) + _shift(pc, i, 1, n + 1))
                * (_shift(pu, i, 1, n + 1) - _shift(pu, i, 0, n + 1)))
        d = 0.5 * (_shift(flux, i, 1, n) - _shift(flux, i, 0, n))
        out = d if out is None else out + d
    if ndim > 1:
        g = []
        for j in range(ndim):
            p, n = _pad1(u, j), u.shape[2 + j]
            g.append(0.5 * (_shift(p, j, 2, n) - _shift(p, j, 0, n)))
        for i in range(ndim):
            q = None
            for j in range(ndim):
                if j != i:
                    q = D[i][j] * g[j] if q is None else q + D[i][j] * g[j]
            p, n = _pad1(q, i), u.shape[2 + i]
            out = out + 0.5 * (_shift(p, i, 2, n) - _shift(p, i, 0, n))
    return out


def rhs_t(u: torch.Tensor, D, weights: torch.Tensor | None, relu: bool = True) -> torch.Tensor:
    """``ReLU(div(D grad u))`` for ``u`` (N, 1, *spatial) and ``D`` from `tensor_components`.

    ``weights``: the wide stencil's central first-derivative weights (`fd_weights`, a tensor),
    or None for the compact stencil (`compact_rhs_t`).
    """
    if weights is None:
        out = compact_rhs_t(u, D)
        return F.relu(out) if relu else out
    ndim = u.ndim - 2
    g = [derivative_t(u, i, weights) for i in range(ndim)]
    out = None
    for i in range(ndim):
        q = D[i][0] * g[0]
        for j in range(1, ndim):
            q = q + D[i][j] * g[j]
        d = derivative_t(q, i, weights)
        out = d if out is None else out + d
    return F.relu(out) if relu else out


def rk4_step_t(u: torch.Tensor, D, weights: torch.Tensor | None, dt: float, relu: bool = True,
               clip: bool = True) -> torch.Tensor:
    """One RK4 step, clipped to [0, 1] (``weights`` as in `rhs_t`: None is the compact stencil)."""
    k1 = rhs_t(u, D, weights, relu)
    k2 = rhs_t(u + (dt / 2) * k1, D, weights, relu)
    k3 = rhs_t(u + (dt / 2) * k2, D, weights, relu)
    k4 = rhs_t(u + dt * k3, D, weights, relu)
    u = u + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return u.clamp(0.0, 1.0) if clip else u


def diffuse_t(u: torch.Tensor, directions: torch.Tensor, lambda_par=1.0, lambda_perp=0.1, *,
              dt: float, steps: int, order: int = 8, substeps: int | None = None,
              relu: bool = True, spacing=None, stencil: str = "wide",
              checkpoint: bool = False) -> torch.Tensor:
    """``steps`` differentiable RK4 steps on a batch.

    Parameters
    ----------
    u : (N, 1, *spatial) tensor
        Probability fields in [0, 1].
    directions : (N, ndim, *spatial) tensor
        Unit (or zero) vectors, component ``i`` along spatial axis ``i``.
    lambda_par, lambda_perp : float or tensor
        Broadcastable to ``(N, 1, *spatial)``; may require grad.
    dt, steps, order
        As in `napari_tubediff.diffuse`.
    substeps : int, optional
        Sub-steps per step; by default the same automatic choice as `diffuse`
        (from the lambdas' current values).
    spacing : sequence of float, optional
        Voxel spacing per spatial axis, as in `napari_tubediff.diffuse` (None: 1).
    stencil : {"wide", "compact"}
        The discretisation of ``div(D grad u)``, as in `napari_tubediff.diffuse`.
    checkpoint : bool
        With grad enabled, run each step (all its sub-steps) under
        ``torch.utils.checkpoint.checkpoint`` (non-reentrant): the autograd graph then keeps
        one field per step, and the backward pass recomputes one step's RK4 stages at a
        time, so memory no longer grows with the stages' intermediates times ``steps``.
        Costs about one more forward pass; the values and gradients are the same.

    Examples
    --------
    >>> u = torch.zeros(1, 1, 16, 16); u[0, 0, 8, 2:6] = 1; u[0, 0, 8, 10:14] = 1
    >>> v = torch.zeros(1, 2, 16, 16); v[:, 1] = 1
    >>> out = diffuse_t(u, v, 1.0, 0.01, dt=0.2, steps=20)
    >>> bool(out[0, 0, 8, 7] > 0.1)
    True
    """
    from .diffusion import check_stencil, plan_substeps

    if u.ndim < 4 or u.shape[1] != 1:
        raise ValueError(f"u must have shape (N, 1, *spatial), got {tuple(u.shape)}")
    ndim = u.ndim - 2
    if directions.shape != (u.shape[0], ndim, *u.shape[2:]):
        raise ValueError(f"directions must have shape {(u.shape[0], ndim, *u.shape[2:])}, "
                         f"got {tuple(directions.shape)}")
    if substeps is None:
        lp = float(torch.as_tensor(lambda_par).detach().max())
        lq = float(torch.as_tensor(lambda_perp).detach().max())
        substeps = plan_substeps(dt, lp, lq, order, ndim, spacing, stencil)
    w = _weights(order, check_stencil(stencil), u.dtype, u.device)
    D = tensor_components(directions.to(u.dtype), lambda_par, lambda_perp, spacing)
    h = dt / substeps
    if checkpoint and torch.is_grad_enabled():
        # D's components go in as arguments (not via the closure) so the recomputation
        # reads the very tensors the graph holds; they are shared by all steps
        flat = [D[i][j] for i in range(ndim) for j in range(ndim)]

        def step(u, *flat):
            Dk = [list(flat[i * ndim:(i + 1) * ndim]) for i in range(ndim)]
            for _ in range(substeps):
                u = rk4_step_t(u, Dk, w, h, relu)
            return u

        for _ in range(steps):
            u = _checkpoint(step, u, *flat, use_reentrant=False)
        return u
    for _ in range(steps * substeps):
        u = rk4_step_t(u, D, w, h, relu)
    return u


def _weights(order: int, stencil: str, dtype, device) -> torch.Tensor | None:
    # what rhs_t takes as its stencil: the wide stencil's weights, or None (compact)
    if stencil == "compact":
        return None
    return torch.tensor(np.array(fd_weights(order)), dtype=dtype, device=device)


class NumpyTorchStepper:
    """Adapter so `napari_tubediff.diffuse(..., backend="torch")` can run this path."""

    def __init__(self, u: np.ndarray, D: np.ndarray, order: int, relu: bool = True, device: str = "cpu",
                 stencil: str = "wide"):
        ndim = u.ndim
        dev = torch.device(device)
        self.u = torch.from_numpy(np.ascontiguousarray(u, np.float32))[None, None].to(dev)
        # D is symmetric: upload each of its ndim*(ndim+1)/2 distinct components once
        comp = {(i, j): torch.from_numpy(np.ascontiguousarray(D[i, j], np.float32))[None, None].to(dev)
                for i in range(ndim) for j in range(i, ndim)}
        self.D = [[comp[min(i, j), max(i, j)] for j in range(ndim)] for i in range(ndim)]
        self.w = _weights(order, stencil, torch.float32, dev)
        self.relu = relu

    def advance(self, n: int, dt: float) -> None:
        with torch.no_grad():
            for _ in range(n):
                self.u = rk4_step_t(self.u, self.D, self.w, float(dt), self.relu)

    def field(self) -> np.ndarray:
        return self.u[0, 0].cpu().numpy().copy()
