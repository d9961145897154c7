"""Refinement of arrays larger than memory: dask blocks with halos that reproduce `refine` exactly.

Why halos make it exact
-----------------------
Every output voxel of one RK4 stage, ``u + c dt ReLU(div(D grad u))``, depends only on
the voxels within ``2 r`` of it (``r = order // 2``: ``grad`` reaches ``r``, ``div``
another ``r``). A block padded with a halo of ``h`` voxels from its neighbours is
therefore exact, after one stage, everywhere at least ``2 r`` inside the padded
block, whatever the block's own (edge-replicating) padding does at its rim. One
step is 4 stages and, when ``dt`` is above the stability limit, ``s`` sub-steps
(`plan_substeps`), so ``k`` steps need

    h = 4 * 2r * s * k        (order 8, no sub-stepping: 32 voxels per step)

The Hessian directions see ``int(4 sigma + 0.5) + 2`` voxels (`directions_reach`).
At the true boundary of the volume nothing is added (dask's ``boundary="none"``),
so the stencils' own edge padding acts exactly where it acts on the whole volume.

Since the halo grows with the steps (30 steps: 960 voxels), the steps are split
into rounds of ``k`` steps (``steps_per_exchange``): each round is one
``map_overlap`` that exchanges fresh halos, chained lazily. The directions are
computed once and ride along as extra arrays with the round's halo.

The one global quantity of the method is the threshold of `estimate_directions`
(a fraction of the largest eigenvalue spread over the whole image); it is computed
in a first pass (`eigenvalue_spread` per block, maximum over blocks) and passed to
every block. Nothing else is global: the lambdas are scalars and the sub-step plan
depends only on ``dt``, the lambdas, the order and the dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.checks import check_field, check_lambda, check_positive, check_steps
from ..core.diffusion import check_plan, diffuse, plan_substeps
from ..core.directions import directions_reach, eigenvalue_spread, estimate_directions
from ..core.refine import RefineSettings

__all__ = ["diffusion_reach", "auto_steps_per_exchange", "refine_chunked", "chunked_directions"]


def diffusion_reach(settings: RefineSettings, ndim: int, steps: int = 1) -> int:
    """Voxels of context that ``steps`` RK4 steps of the refinement need on each side.

    ``4 stages * 2 * (order // 2) * substeps * steps``; see the module docstring.

    Examples
    --------
    >>> diffusion_reach(RefineSettings(), ndim=3)               # order 8, dt 0.25: no sub-steps
    32
    >>> diffusion_reach(RefineSettings(dt=2.0), ndim=3, steps=2)  # dt 2.0 needs 7 sub-steps in 3D
    448
    """
    s = plan_substeps(settings.dt, settings.lambda_par, settings.lambda_perp, settings.order, ndim,
                      settings.relative_spacing(ndim), settings.stencil)  # compact: reach 1 <= order // 2
    return 4 * 2 * (settings.order // 2) * s * int(steps)


def auto_steps_per_exchange(settings: RefineSettings, chunk: int, ndim: int) -> int:
    """Steps per halo exchange that minimise the voxels computed per step.

    A round of ``k`` steps computes ``(c + 2 a k)^n`` voxels per block for ``k``
    steps (``a`` the reach of one step, ``c`` the chunk edge, ``n`` the dimension);
    ``(c + 2 a k)^n / k`` is smallest at ``k = c / (2 a (n - 1))``. More steps per
    round also mean fewer rounds, so fewer tasks; at least 1, at most ``steps``.

    Examples
    --------
    >>> auto_steps_per_exchange(RefineSettings(), chunk=256, ndim=3)
    2
    """
    a = diffusion_reach(settings, ndim, 1)
    k = round(chunk / (2 * a * max(ndim - 1, 1)))
    return int(min(max(k, 1), max(settings.steps, 1)))


def _check_chunks(chunks) -> None:
    """None, an int >= 1, or a sequence of ints >= 1 (dask's ``-1``, "the whole axis", too)."""
    if chunks is None:
        return
    items = chunks if isinstance(chunks, (tuple, list)) else [chunks]
    for c in items:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not (c >= 1 or c == -1):
            raise ValueError(f"chunks must be a whole number >= 1 or one per axis, got {chunks!r}")


def _as_dask(x, chunks):
    import dask.array as da

    if isinstance(x, da.Array):
        return x if chunks is None else x.rechunk(chunks)
    return da.from_array(np.asarray(x), chunks=chunks if chunks is not None else "auto")


def _block_directions(block, sigma, scale, spacing=None):
    return estimate_directions(block, sigma, scale=scale, spacing=spacing)


def chunked_directions(prob, sigma: float, *, chunks=None, spacing=None):
    """`estimate_directions` of a (dask) array, block by block, equal to the whole-array result.

    Parameters
    ----------
    prob : dask.array.Array or ndarray
        2D or 3D field.
    sigma : float
        Hessian scale.
    chunks : optional
        Rechunk ``prob`` to this first (dask's chunk specification).
    spacing : sequence of float, optional
        Voxel spacing, as in `estimate_directions`.

    Returns
    -------
    directions : dask.array.Array of float32, shape ``(ndim, *prob.shape)``
        One chunk along the component axis, ``prob``'s chunks along the others.

    Examples
    --------
    >>> u = np.zeros((40, 40), np.float32); u[18:21, :] = 1
    >>> v = chunked_directions(u, 2.0, chunks=16).compute()
    >>> np.array_equal(v, estimate_directions(u, 2.0))
    True
    """
    import dask.array as da
    from dask.array.overlap import overlap, trim_internal

    u = _as_dask(prob, chunks).astype(np.float32)
    ndim = u.ndim
    # a halo beyond the array makes dask refuse ("depth larger than your array"); the
    # whole axis is all the context there is, so clamping keeps the result exact
    depth = {i: min(directions_reach(sigma, spacing), max(u.shape[i] - 1, 0)) for i in range(ndim)}
    boundary = {i: "none" for i in range(ndim)}
    # pass 1: the global threshold scale, the maximum of the per-voxel spread. Only the
    # trimmed interiors are exact, so the spread is trimmed before the (streaming) reduction.
    spread_max = da.map_overlap(eigenvalue_spread, u, depth=depth, boundary=boundary,
                                dtype=np.float64, sigma=sigma, spacing=spacing).max()
    # pass 2: overlap, directions with a new leading component axis, trim the halo again.
    # (map_overlap cannot be told the chunks of a new axis before the overlap's own rechunk,
    # so its three steps are spelled out.)
    g = overlap(u, depth=depth, boundary=boundary)
    v = da.map_blocks(_block_directions, g, sigma, spread_max, spacing, new_axis=0,
                      chunks=((ndim,), *g.chunks), dtype=np.float32)
    return trim_internal(v, {0: 0, **{i + 1: d for i, d in depth.items()}},
                         boundary={0: "none", **{i + 1: b for i, b in boundary.items()}})


def _block_diffuse(u, *v, settings, steps, device):
    s = settings
    return diffuse(u, np.stack(v), lambda_par=s.lambda_par, lambda_perp=s.lambda_perp, dt=s.dt,
                   steps=steps, order=s.order, device=device, spacing=s.relative_spacing(u.ndim),
                   stencil=s.stencil)


def refine_chunked(prob, settings: RefineSettings | None = None, *, chunks: int | Sequence | None = 128,
                   steps_per_exchange: int | None = None, directions=None, device: str = "auto"):
    """`refine` on a dask array, block by block with halos; equal to `refine` of the whole array.

    Parameters
    ----------
    prob : dask.array.Array or ndarray
        2D or 3D probability field in [0, 1] (checked block by block when computed).
    settings : RefineSettings
        Hessian scale, lambdas, ``dt``, ``steps`` and ``order`` (the defaults of `refine`).
    chunks : int, tuple or None
        Block shape (an int: that edge along every axis); None keeps ``prob``'s chunks.
        Blocks smaller than a halo are merged by dask (correct, but less parallel).
    steps_per_exchange : int or None
        RK4 steps per round between halo exchanges (halo ``diffusion_reach`` of them);
        None picks `auto_steps_per_exchange` for the chunk size.
    directions : (ndim, *shape) array or dask array, optional
        Direction field to use instead of the Hessian directions (e.g. a learned head's).
    device : str
        Where each block's diffusion runs, as for `refine` (``"auto"``: CUDA when torch
        sees a GPU). Equality with `refine` holds for the same device.

    Returns
    -------
    refined : dask.array.Array of float32
        Lazy; ``.compute()``, ``da.to_zarr`` or a distributed client runs it.

    Notes
    -----
    Exact, not approximate: every block's interior sees all the voxels that the
    whole-array computation would use, and the block's own edge padding only acts
    at the volume's true boundary. Each task holds one block plus its halo (and the
    diffusion kernel's work buffers, about ten block-sized float32 arrays); how many
    rounds' blocks the workers hold at once is up to dask's scheduler.

    Examples
    --------
    >>> from napari_tubediff.core.refine import refine
    >>> u = np.zeros((48, 40), np.float32); u[20:23, 3:17] = u[20:23, 22:37] = 1
    >>> s = RefineSettings(steps=4, method="faithful")
    >>> r = refine_chunked(u, s, chunks=16).compute()
    >>> np.array_equal(r, refine(u, settings=s))
    True
    """
    import dask.array as da

    s = settings or RefineSettings(method="faithful")
    if s.method != "faithful":  # the other methods are not local: blocks would change the answer
        raise ValueError(f"refine_chunked runs the faithful PDE only, got method={s.method!r}; refine the "
                         "whole image with core.refine.refine")
    _check_chunks(chunks)
    steps = check_steps(s.steps, "steps")
    u = _as_dask(prob, chunks)
    if u.ndim not in (2, 3):
        raise ValueError(f"prob must be 2D or 3D, got shape {u.shape}")
    if min(u.shape) < 1:
        raise ValueError(f"prob is empty (shape {u.shape})")
    if u.dtype == bool:
        u = u.astype(np.float32)
    if not np.issubdtype(u.dtype, np.number) or np.issubdtype(u.dtype, np.complexfloating):
        raise ValueError(f"prob must be a real numeric array, got dtype {u.dtype}")
    u = u.astype(np.float32)
    # the whole run's sub-step plan, before any graph is built (a dt of 1e9 would hang)
    check_plan(check_positive(s.dt, "dt"), steps, check_lambda(s.lambda_par, (), "lambda_par"),
               check_lambda(s.lambda_perp, (), "lambda_perp"), s.order, u.ndim, s.relative_spacing(u.ndim),
               s.stencil)
    if steps == 0:
        # block by block, the checks a real run makes (NaN, range) when computed
        return u.map_blocks(check_field, dtype=np.float32)
    if directions is None:
        v = chunked_directions(u, s.sigma, spacing=s.relative_spacing(u.ndim))
    else:
        v = _as_dask(directions, None)
        if v.shape != (u.ndim, *u.shape):
            raise ValueError(f"directions must have shape {(u.ndim, *u.shape)}, got {v.shape}")
        v = v.astype(np.float32).rechunk(((u.ndim,), *u.chunks))
    if steps_per_exchange is None:
        edge = max(max(c) for c in u.chunks)
        steps_per_exchange = auto_steps_per_exchange(s, edge, u.ndim)
    if isinstance(steps_per_exchange, bool) or int(steps_per_exchange) != steps_per_exchange \
            or steps_per_exchange < 1:
        raise ValueError(f"steps_per_exchange must be a whole number >= 1, got {steps_per_exchange!r}")
    k = int(steps_per_exchange)
    comps = [v[i] for i in range(u.ndim)]
    done = 0
    while done < steps:
        n = min(k, steps - done)
        h = diffusion_reach(s, u.ndim, n)
        # The halo must not exceed the array: dask would otherwise merge blocks past it.
        depth = {i: min(h, max(u.shape[i] - 1, 0)) for i in range(u.ndim)}
        u = da.map_overlap(_block_diffuse, u, *comps, depth=depth, boundary="none",
                           dtype=np.float32, settings=s, steps=n, device=device)
        done += n
    return u

