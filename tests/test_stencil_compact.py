"""The compact stencil (``stencil="compact"``, issue 13): known answers for the odd-even mode,
an analytic operator, the stability limit and the agreement of the numpy and torch paths."""

import numpy as np
import pytest
import torch

from napari_tubediff import (
    diffuse,
    diffusion_rhs,
    diffusion_tensor,
    iter_diffusion,
    max_stable_dt,
    plan_substeps,
)
from napari_tubediff.core.diffusion import _iterate, rk4_step
from napari_tubediff.core.stencils import flux_second_derivative
from napari_tubediff.core.torch_diffusion import diffuse_t, rhs_t, tensor_components

from .test_diffusion import random_directions, smooth_field


def _identity(shape):
    return diffusion_tensor(np.zeros((len(shape), *shape)), 1.0, 1.0).astype(np.float64)


# --- the odd-even mode ------------------------------------------------------------------
def test_odd_even_mode_decays_by_1_minus_4dt_under_compact_and_is_invisible_to_wide_in_1d():
    n, dt = 40, 0.1
    u = (-1.0) ** np.arange(n)
    D = np.ones((1, 1, n))
    inner = slice(8, n - 8)  # the wide order-8 operator reaches 8 cells: away from the edges
    compact = diffusion_rhs(u, D, relu=False, stencil="compact")
    np.testing.assert_array_equal(compact[1:-1], -4.0 * u[1:-1])
    np.testing.assert_array_equal((u + dt * compact)[1:-1], (1 - 4 * dt) * u[1:-1])  # one Euler step
    wide = diffusion_rhs(u, D, relu=False, stencil="wide")
    assert np.abs(wide[inner]).max() < 1e-12  # a zero central difference, twice: the mode is not seen


def test_odd_even_mode_along_one_axis_of_an_image_on_both_paths():
    # (-1)^i along axis 0, constant along axis 1; D = I. Compact: -4 u inside; wide: 0.
    u = np.repeat(((-1.0) ** np.arange(24))[:, None], 10, axis=1).astype(np.float32)
    D = _identity(u.shape).astype(np.float32)
    Dt = tensor_components(torch.zeros(1, 2, *u.shape), 1.0, 1.0)
    ut = torch.from_numpy(u)[None, None]
    torch_out = rhs_t(ut, Dt, None, relu=False)[0, 0].numpy()  # weights None: the compact stencil
    for out in (diffusion_rhs(u, D, relu=False, stencil="compact"), torch_out):
        np.testing.assert_array_equal(out[1:-1], -4.0 * u[1:-1])
    assert np.abs(diffusion_rhs(u, D, relu=False)[8:-8]).max() < 1e-6


def test_striped_field_is_flattened_by_compact_and_kept_by_wide():
    # The method's clipped, ReLU'd run: stripes 0.2 / 0.3 (the odd-even mode on a constant).
    u = np.where(np.arange(32)[:, None] % 2 == 0, 0.2, 0.3) * np.ones((32, 32))
    u = u.astype(np.float32)
    v = np.zeros((2, 32, 32), np.float32)
    inner = (slice(10, -10), slice(10, -10))
    wide = diffuse(u, v, lambda_par=1.0, lambda_perp=1.0, dt=0.25, steps=20, backend="numpy")
    compact = diffuse(u, v, lambda_par=1.0, lambda_perp=1.0, dt=0.25, steps=20, stencil="compact")
    # the stripes stay (only what diffuses in from the edges changes them, by < 0.005)
    assert np.ptp(wide[inner]) > 0.098 and np.abs(wide - u)[inner].max() < 0.005
    # the ReLU raises the troughs to the crests (nothing may fall): stripes gone
    assert np.ptp(compact[inner]) < 1e-3 and compact[inner].min() >= 0.3 - 1e-3


# --- accuracy on a smooth field --------------------------------------------------------
def _analytic(h, n=48):
    # u = sin x cos 2y; D = [[1 + sin(x)/2, c], [c, 1 + cos(y)/2]], c = 0.3; div(D grad u) by hand
    x = h * np.arange(n)[:, None]
    y = h * np.arange(n)[None, :] + 0.3
    c = 0.3
    a, b = 1 + 0.5 * np.sin(x), 1 + 0.5 * np.cos(y)
    u = np.sin(x) * np.cos(2 * y)
    ux, uy = np.cos(x) * np.cos(2 * y), -2 * np.sin(x) * np.sin(2 * y)
    exact = (0.5 * np.cos(x) * ux - a * u + (-0.5 * np.sin(y)) * uy - 4 * b * u
             + 2 * c * (-2 * np.cos(x) * np.sin(2 * y)))
    D = np.empty((2, 2, n, n))
    D[0, 0], D[1, 1] = a + 0 * y, b + 0 * x
    D[0, 1] = D[1, 0] = c
    return u, D, exact


@pytest.mark.parametrize("stencil", ["wide", "compact"])
def test_both_stencils_match_the_analytic_operator_to_second_order(stencil):
    errs = []
    for h in (0.1, 0.05):
        u, D, exact = _analytic(h, n=int(round(4.8 / h)))
        out = diffusion_rhs(u, D, relu=False, spacing=(h, h), stencil=stencil)
        inner = (slice(8, -8), slice(8, -8))
        errs.append(np.abs(out - exact)[inner].max())
    assert errs[0] < 5 * 0.1**2  # O(h^2) with a modest constant (compact: 2.1 h^2)
    assert errs[0] / errs[1] > 3.5  # halving h quarters (at least) the error


def test_flux_second_derivative_with_spacing_and_a_varying_coefficient():
    # d/dx (x du/dx) with u = x^2: d/dx (2 x^2) = 4x; exact for the flux form with c the mean
    # of its neighbours (c linear), here on x = 0.5 i
    x = 0.5 * np.arange(12)
    out = flux_second_derivative(x**2, x, axis=0, spacing=0.5)
    np.testing.assert_allclose(out[1:-1], 4 * x[1:-1], atol=1e-12)


# --- steady states, agreement of the paths -------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy", "torch"])
def test_constants_are_steady(backend):
    u = np.full((20, 23), 0.4, np.float32)
    v = random_directions((20, 23))
    out = diffuse(u, v, lambda_par=1.0, lambda_perp=0.1, dt=0.25, steps=5, backend=backend, stencil="compact")
    np.testing.assert_array_equal(out, u)


@pytest.mark.parametrize("shape, spacing", [((40, 36), None), ((40, 36), (2.0, 0.7)), ((9, 14, 12), None),
                                            ((9, 14, 12), (3.0, 1.0, 1.0))])
def test_numpy_and_torch_agree_after_10_steps(shape, spacing):
    u = smooth_field(shape, sigma=1.0)
    v = random_directions(shape, sigma=1.0)
    lpar = 0.5 + smooth_field(shape, seed=7)
    kw = dict(lambda_par=lpar, lambda_perp=0.05, dt=0.1, steps=10, spacing=spacing, stencil="compact")
    ref = diffuse(u, v, backend="numpy", **kw)
    np.testing.assert_allclose(diffuse(u, v, backend="torch", **kw), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(diffuse(u, v, backend="auto", **kw), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(diffuse(u, v, backend="numba", **kw), ref, atol=1e-5, rtol=0)
    lpar_t = torch.from_numpy(lpar)[None, None]
    out = diffuse_t(torch.from_numpy(u)[None, None], torch.from_numpy(v)[None], lpar_t, 0.05, dt=0.1,
                    steps=10, spacing=spacing, stencil="compact")
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=1e-5, rtol=0)
    assert np.abs(ref - u).max() > 1e-3
    assert np.abs(ref - diffuse(u, v, backend="numpy", **{**kw, "stencil": "wide"})).max() > 1e-3


def test_iter_diffusion_takes_the_stencil():
    u = smooth_field((20, 20))
    v = random_directions((20, 20))
    kw = dict(dt=0.2, steps=4, stencil="compact")
    *_, (_, last) = iter_diffusion(u, v, every=3, **kw)
    np.testing.assert_array_equal(last, diffuse(u, v, **kw))


def test_gradcheck_of_the_compact_torch_path_in_float64():
    rng = np.random.default_rng(0)
    u = torch.tensor(0.2 + 0.6 * rng.random((1, 1, 7, 8)), requires_grad=True)
    v = torch.tensor(random_directions((7, 8), sigma=1.0)[None], dtype=torch.float64)
    lam = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)

    def f(u, lam):
        return diffuse_t(u, v, lam, 0.1, dt=0.05, steps=2, relu=False, stencil="compact")

    assert torch.autograd.gradcheck(f, (u, lam), eps=1e-6, atol=1e-6)


# --- stability ---------------------------------------------------------------------------
def test_compact_limit_is_4_per_axis_and_plans_its_own_substeps():
    assert max_stable_dt(1.0, 0.1, ndim=1, stencil="compact") == pytest.approx(2.785293563 / 4, rel=1e-6)
    assert max_stable_dt(2.0, 0.1, ndim=2, stencil="compact") == pytest.approx(2.785293563 / 16, rel=1e-6)
    # spacing (2, 0.5): sum h^-2 = 4.25
    assert max_stable_dt(1.0, 0.1, spacing=(2.0, 0.5), stencil="compact") == pytest.approx(
        2.785293563 / (4 * 4.25), rel=1e-6)
    # 3D, dt 0.25: the wide order-8 stencil needs one step (limit 0.310), the compact one two (0.232)
    assert plan_substeps(0.25, 1.0, 0.02, ndim=3) == 1
    assert plan_substeps(0.25, 1.0, 0.02, ndim=3, stencil="compact") == 2


def _linear_growth(dt, steps):
    rng = np.random.default_rng(0)
    u = 0.5 + 0.01 * rng.standard_normal((16, 16))
    D = _identity(u.shape)
    x = u
    for _ in range(steps):
        x = rk4_step(lambda y: diffusion_rhs(y, D, relu=False, stencil="compact"), x, dt)
    return np.abs(x - x.mean()).max() / np.abs(u - u.mean()).max()


def test_compact_limit_is_the_real_limit():
    limit = max_stable_dt(1.0, 1.0, ndim=2, stencil="compact")
    assert _linear_growth(0.97 * limit, steps=400) < 10
    assert _linear_growth(1.05 * limit, steps=300) > 1e3


def test_compact_operator_eigenvalues_lie_in_the_stable_interval_for_anisotropic_d():
    # edge padding and sharply turning directions: still no growing mode, |eigenvalue| <= 4 ndim lambda
    shape = (7, 8)
    v = random_directions(shape, seed=3, sigma=1.0)
    D = diffusion_tensor(v, 1.0, 0.02).astype(np.float64)
    n = int(np.prod(shape))
    A = np.stack([diffusion_rhs(np.eye(n)[k].reshape(shape), D, relu=False, stencil="compact").ravel()
                  for k in range(n)], axis=1)
    ev = np.linalg.eigvals(A)
    assert ev.real.max() < 1e-9
    assert np.abs(ev).max() <= 4 * 2 * 1.0
    # the wide order-8 operator on the same directions has a growing mode (docs/engine.md)
    W = np.stack([diffusion_rhs(np.eye(n)[k].reshape(shape), D, relu=False).ravel() for k in range(n)], 1)
    assert np.linalg.eigvals(W).real.max() > 0.05


def test_a_step_above_the_compact_limit_is_sub_stepped():
    u = smooth_field((24, 24))
    v = random_directions((24, 24))
    dt = 2.5 * max_stable_dt(1.0, 0.1, stencil="compact")
    assert plan_substeps(dt, 1.0, 0.1, stencil="compact") == 3
    one = diffuse(u, v, lambda_par=1.0, lambda_perp=0.1, dt=dt, steps=1, stencil="compact")
    *_, (_, three) = _iterate(u, v, 1.0, 0.1, dt / 3, 3, 8, 3, "numpy", stencil="compact")
    np.testing.assert_allclose(one, three, atol=1e-6)


# --- bad input --------------------------------------------------------------------------
def test_unknown_stencil_is_refused_with_a_message():
    u = smooth_field((10, 10))
    v = random_directions((10, 10))
    with pytest.raises(ValueError, match="stencil must be one of wide, compact"):
        diffuse(u, v, dt=0.1, steps=1, stencil="narrow")
    with pytest.raises(ValueError, match="stencil must be"):
        max_stable_dt(1.0, 0.1, stencil="Compact")


@pytest.mark.parametrize("shape", [(7, 1), (1, 6), (2, 3), (1, 1, 6), (2, 1, 5), (1, 3, 5)])
def test_numba_kernel_handles_one_and_two_pixel_edges(shape):
    # the kernels clamp only the first and last column: images one or two pixels wide (3D: the last
    # axis must be longer than 4, or the field reads as colour channels)
    u = smooth_field(shape, sigma=0.5)
    v = random_directions(shape, sigma=0.5)
    kw = dict(lambda_par=1.0, lambda_perp=0.5, dt=0.25, steps=5, stencil="compact")
    ref = diffuse(u, v, backend="numpy", **kw)
    np.testing.assert_allclose(diffuse(u, v, backend="numba", **kw), ref, atol=1e-6, rtol=0)
    assert np.abs(ref - u).max() > 1e-3


def test_block_wise_refinement_runs_the_compact_stencil_exactly():
    # dt 0.5 is above the compact limit (0.348), so two sub-steps, but below the wide one (0.465)
    from napari_tubediff.batch.chunked import refine_chunked
    from napari_tubediff.core.refine import RefineSettings, refine

    from .test_batch import _blocks_of_last_round, _field

    s = RefineSettings(steps=3, dt=0.5, stencil="compact")
    assert plan_substeps(0.5, 1.0, 0.02, stencil="compact") == 2
    u = _field((200, 144))  # the halo: 4 stages * 8 * 2 sub-steps = 64 (the compact stencil reaches 1 of 8)
    out = refine_chunked(u, s, chunks=72, steps_per_exchange=1)
    assert _blocks_of_last_round(out) > 1
    whole = refine(u, settings=s)
    np.testing.assert_array_equal(out.compute(), whole)
    assert np.abs(whole - refine(u, settings=RefineSettings(steps=3, dt=0.5))).max() > 1e-3
