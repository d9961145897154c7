import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_tubediff import (
    diffuse,
    diffusion_rhs,
    diffusion_tensor,
    fd_weights,
    iter_diffusion,
    max_stable_dt,
    normalize_directions,
    plan_substeps,
)
from napari_tubediff.core.diffusion import _iterate, rk4_step

BACKENDS = ["numba", "numpy"]


def smooth_field(shape, seed=0, lo=0.1, hi=0.9, sigma=3.0):
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.random(shape), sigma)
    f = (f - f.min()) / (f.max() - f.min())
    return (lo + (hi - lo) * f).astype(np.float32)


def random_directions(shape, seed=1, sigma=4.0):
    rng = np.random.default_rng(seed)
    v = np.stack([ndi.gaussian_filter(rng.normal(size=shape), sigma) for _ in shape])
    return normalize_directions(v)


# --- the tensor ---------------------------------------------------------------------
def test_tensor_has_lambda_par_along_v_and_lambda_perp_across():
    v = random_directions((8, 9))
    D = diffusion_tensor(v, 2.0, 0.3)
    Dv = np.einsum("ij...,j...->i...", D, v)
    np.testing.assert_allclose(Dv, 2.0 * v, atol=1e-6)
    n = np.stack([-v[1], v[0]])  # perpendicular in 2D
    np.testing.assert_allclose(np.einsum("ij...,j...->i...", D, n), 0.3 * n, atol=1e-6)
    np.testing.assert_array_equal(D[0, 1], D[1, 0])


def test_tensor_accepts_per_pixel_lambdas_and_zero_vectors():
    v = np.zeros((2, 3, 4), np.float32)
    v[1, 0, 0] = 1.0  # one defined vector along axis 1, the rest undefined
    lpar = np.full((3, 4), 5.0)
    lperp = np.arange(12.0).reshape(3, 4) / 10
    D = diffusion_tensor(v, lpar, lperp)
    assert D.shape == (2, 2, 3, 4) and D.dtype == np.float32
    np.testing.assert_allclose(D[:, :, 0, 0], [[0.0, 0.0], [0.0, 5.0]])
    np.testing.assert_allclose(D[:, :, 2, 3], 1.1 * np.eye(2), atol=1e-6)  # zero vector: lperp * I


def test_tensor_3d_eigenvalues():
    v = random_directions((4, 5, 6))
    D = diffusion_tensor(v, 1.0, 0.1)
    evals = np.linalg.eigvalsh(np.moveaxis(D, (0, 1), (-2, -1)).astype(np.float64))
    np.testing.assert_allclose(evals, np.broadcast_to([0.1, 0.1, 1.0], evals.shape), atol=1e-5)


# --- the operator --------------------------------------------------------------------
@pytest.mark.parametrize("order", [2, 8])
def test_equal_lambdas_give_the_relu_of_the_isotropic_operator(order):
    u = smooth_field((40, 37), sigma=2.0).astype(np.float64)
    v = random_directions((40, 37))
    lam = 0.7
    D = diffusion_tensor(v, lam, lam).astype(np.float64)
    w = fd_weights(order)
    # independent: scipy correlation with 'nearest' (== edge) padding, applied twice per axis
    lap = sum(ndi.correlate1d(ndi.correlate1d(u, w, axis=i, mode="nearest"), w, axis=i, mode="nearest")
              for i in range(2))
    ref = np.maximum(lam * lap, 0)
    np.testing.assert_allclose(diffusion_rhs(u, D, order), ref, atol=1e-6)
    assert (lap < 0).any() and (lap > 0).any()  # the ReLU really acts here


def test_operator_is_exact_on_a_quadratic():
    # u = a x^2 + b y^2 + c xy, D constant: div(D grad u) = 2a D00 + 2b D11 + 2c D01
    y, x = np.mgrid[0:30, 0:30].astype(np.float64)
    u = 1e-4 * (3 * y ** 2 + 2 * x ** 2 + 1.5 * x * y)
    v = np.zeros((2, 30, 30))
    v[0], v[1] = np.cos(0.4), np.sin(0.4)
    D = diffusion_tensor(v, 1.0, 0.2).astype(np.float64)
    expected = 1e-4 * (2 * 3 * D[0, 0] + 2 * 2 * D[1, 1] + 2 * 1.5 * D[0, 1])
    got = diffusion_rhs(u, D, 8)
    np.testing.assert_allclose(got[8:-8, 8:-8], expected[8:-8, 8:-8], rtol=1e-5)


# --- the method's behaviour -----------------------------------------------------------
def line_with_gap(n=64, row=32, gap=(28, 37)):
    u = np.zeros((n, n), np.float32)
    u[row, 8:gap[0]] = 1.0
    u[row, gap[1]:n - 8] = 1.0
    v = np.zeros((2, n, n), np.float32)
    v[1] = 1.0  # the vessel runs along axis 1
    return u, v


@pytest.mark.parametrize("backend", BACKENDS)
def test_gap_fills_along_the_vessel_and_not_across(backend):
    u, v = line_with_gap()
    aniso = diffuse(u, v, lambda_par=1.0, lambda_perp=0.01, dt=0.25, steps=200, backend=backend)
    iso = diffuse(u, v, lambda_par=1.0, lambda_perp=1.0, dt=0.25, steps=200, backend=backend)
    gap = aniso[32, 28:37]
    assert gap.min() > 0.5, gap  # reconnected at the 0.5 threshold
    # across the vessel, three rows away: nearly nothing, where isotropic diffusion spreads
    assert aniso[29, 8:56].max() < 0.02
    assert iso[29, 32] > 0.1
    mask = aniso > 0.5
    # the mask is the vessel's row and nothing else (its tips grow along it, too)
    assert mask[32, 8:56].all() and mask.sum() == mask[32].sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_field_never_decreases_and_stays_in_unit_range(backend):
    rng = np.random.default_rng(3)
    u = rng.random((50, 45), dtype=np.float32)
    v = random_directions((50, 45))
    prev = u
    dt = 0.9 * max_stable_dt(2.0, 0.5)
    for _, f in iter_diffusion(u, v, lambda_par=2.0, lambda_perp=0.5, dt=dt, steps=30, backend=backend):
        assert (f >= prev).all()
        assert f.min() >= 0 and f.max() <= 1
        prev = f
    assert (prev == 1).any()  # the clip at 1 was reached, so it was exercised


def test_rk4_converges_with_order_four_on_the_linear_operator():
    # where the ReLU is inactive, f is the linear operator div(D grad u); use it directly
    u0 = smooth_field((40, 40), seed=5).astype(np.float64)
    v = random_directions((40, 40), seed=6)
    D = diffusion_tensor(v, 1.0, 0.3).astype(np.float64)

    def f(x):
        return diffusion_rhs(x, D, 8, relu=False)

    def solve(n, T=1.0):
        x = u0
        for _ in range(n):
            x = rk4_step(f, x, T / n)
        return x

    ref = solve(1024)
    errs = [np.abs(solve(n) - ref).max() for n in (16, 32, 64)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(14 < r < 18 for r in ratios), (errs, ratios)  # 2^4 = 16


def test_fast_kernel_takes_the_same_rk4_steps_as_the_reference():
    # The numba kernel (float32, ReLU off) against float64 RK4 with the same dt: equal to
    # float32 round-off, so it inherits the order-4 convergence shown above.
    u0 = smooth_field((40, 40), seed=5, sigma=1.0)
    v = random_directions((40, 40), seed=6)
    D = diffusion_tensor(v, 1.0, 0.3).astype(np.float64)
    for n in (9, 18):
        x = u0.astype(np.float64)
        for _ in range(n):
            x = rk4_step(lambda y: diffusion_rhs(y, D, 8, relu=False), x, 4.0 / n)
        *_, (_, last) = _iterate(u0, v, 1.0, 0.3, 4.0 / n, n, 8, n, "numba", relu=False)
        np.testing.assert_allclose(last, x, atol=1e-6)
        assert np.abs(x - u0).max() > 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_3d_volume_constant_along_an_axis_gives_the_2d_answer_on_every_plane(backend):
    u2 = smooth_field((30, 26))
    v2 = random_directions((30, 26))
    r2 = diffuse(u2, v2, lambda_par=1.0, lambda_perp=0.1, dt=0.2, steps=10, backend=backend)
    u3 = np.repeat(u2[None], 5, axis=0)
    v3 = np.stack([np.zeros((5, 30, 26), np.float32), *np.repeat(v2[:, None], 5, axis=1)])
    r3 = diffuse(u3, v3, lambda_par=1.0, lambda_perp=0.1, dt=0.2, steps=10, backend=backend)
    for plane in r3:
        np.testing.assert_allclose(plane, r2, atol=2e-6)
    assert np.abs(r2 - u2).max() > 1e-3  # something happened


@pytest.mark.parametrize("shape", [(37, 41), (9, 12, 11), (41, 13, 12)])  # 41 planes: two bands
@pytest.mark.parametrize("lambdas", ["scalar", "per-pixel"])
@pytest.mark.parametrize("order", [8, 4])
def test_backends_agree(shape, lambdas, order):
    # covers the kernel's paths: tensor built from v (2D, order 8, scalar lambdas),
    # tensor arrays (per-pixel lambdas), the generic stencil loop (order 4), and 3D
    u = smooth_field(shape, sigma=1.0)
    v = random_directions(shape, sigma=1.0)
    lpar = 0.5 + smooth_field(shape, seed=7) if lambdas == "per-pixel" else 1.2
    kw = dict(lambda_par=lpar, lambda_perp=0.05, dt=0.1, steps=10, order=order)
    ref = diffuse(u, v, backend="numpy", **kw)
    for b in ("numba", "torch", "auto"):
        np.testing.assert_allclose(diffuse(u, v, backend=b, **kw), ref, atol=1e-5, rtol=0)
    assert np.abs(ref - u).max() > 1e-3


# --- stability and sub-stepping -------------------------------------------------------------
def _linear_growth(dt, steps=400):
    # linear operator with isotropic D and no clipping: pure von Neumann setting
    rng = np.random.default_rng(0)
    u = 0.5 + 0.01 * rng.standard_normal((48, 48))
    D = diffusion_tensor(np.zeros((2, 48, 48)), 1.0, 1.0).astype(np.float64)
    x = u
    for _ in range(steps):
        x = rk4_step(lambda y: diffusion_rhs(y, D, 8, relu=False), x, dt)
    return np.abs(x - x.mean()).max() / np.abs(u - u.mean()).max()


def test_max_stable_dt_is_the_real_limit():
    # Below the limit the amplitude stays bounded (the edge-padded operator is not
    # normal, so it may rise a little before settling); just above it, it explodes.
    limit = max_stable_dt(1.0, 1.0, order=8, ndim=2)
    assert _linear_growth(0.97 * limit, steps=800) < 10
    assert _linear_growth(1.03 * limit, steps=400) > 1e3


def test_stability_limit_scales_with_lambda_and_dimension():
    base = max_stable_dt(1.0, 0.1, 8, 2)
    assert max_stable_dt(2.0, 0.1, 8, 2) == pytest.approx(base / 2)
    assert max_stable_dt(0.1, 2.0, 8, 2) == pytest.approx(base / 2)  # the larger lambda counts
    assert max_stable_dt(1.0, 0.1, 8, 3) == pytest.approx(base * 2 / 3)
    assert max_stable_dt(1.0, 0.1, 2, 1) == pytest.approx(2.785293563, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_large_dt_is_sub_stepped_automatically(backend):
    u = smooth_field((40, 40))
    v = random_directions((40, 40))
    limit = max_stable_dt(1.0, 0.1)
    dt = 2.5 * limit
    assert plan_substeps(dt, 1.0, 0.1) == 3
    big = diffuse(u, v, dt=dt, steps=4, backend=backend)
    small = diffuse(u, v, dt=dt / 3, steps=12, backend=backend)
    np.testing.assert_allclose(big, small, atol=1e-6)
    assert np.isfinite(big).all() and big.max() <= 1


# --- the iterator -------------------------------------------------------------------
def test_iter_diffusion_yields_every_and_the_last_step_and_matches_diffuse():
    u, v = line_with_gap(32, 16, (12, 18))
    got = list(iter_diffusion(u, v, dt=0.2, steps=10, every=4))
    assert [s for s, _ in got] == [4, 8, 10]
    np.testing.assert_array_equal(got[-1][1], diffuse(u, v, dt=0.2, steps=10))
    assert got[0][1] is not got[1][1] and not np.shares_memory(got[0][1], got[1][1])
    assert list(iter_diffusion(u, v, dt=0.2, steps=0)) == []
    np.testing.assert_array_equal(diffuse(u, v, dt=0.2, steps=0), u)


def test_iter_diffusion_can_be_stopped_between_yields():
    u, v = line_with_gap(32, 16, (12, 18))
    it = iter_diffusion(u, v, dt=0.2, steps=1000)
    s1, f1 = next(it)
    it.close()
    assert s1 == 1
    np.testing.assert_array_equal(f1, diffuse(u, v, dt=0.2, steps=1))


def test_zero_vectors_mean_isotropic_lambda_perp():
    u = smooth_field((30, 30))
    v0 = np.zeros((2, 30, 30), np.float32)
    a = diffuse(u, v0, lambda_par=5.0, lambda_perp=0.2, dt=0.1, steps=5)
    b = diffuse(u, random_directions((30, 30)), lambda_par=0.2, lambda_perp=0.2, dt=0.1, steps=5)
    np.testing.assert_allclose(a, b, atol=1e-6)


# --- bad input ------------------------------------------------------------------------
GOOD_U = np.full((16, 16), 0.5, np.float32)
GOOD_V = np.stack([np.ones((16, 16)), np.zeros((16, 16))]).astype(np.float32)


def _with(arr, idx, value):
    a = arr.copy()
    a[idx] = value
    return a


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(u=_with(GOOD_U, (3, 3), np.nan)), "NaN or infinite"),
        (dict(u=_with(GOOD_U, (3, 3), np.inf)), "NaN or infinite"),
        (dict(u=_with(GOOD_U, (3, 3), 1.5)), r"in \[0, 1\]"),
        (dict(u=_with(GOOD_U, (3, 3), -0.1)), r"in \[0, 1\]"),
        (dict(u=np.zeros((16, 16, 3), np.float32)), "colour channels"),
        (dict(u=np.zeros((16, 16, 4), np.float32)), "colour channels"),
        (dict(u=np.zeros((2, 4, 16, 16), np.float32)), "2D .* or 3D"),
        (dict(u=np.zeros(16, np.float32)), "2D .* or 3D"),
        (dict(u=np.array([["a"]])), "numeric"),
        (dict(directions=GOOD_V[:, :8]), "shape"),
        (dict(directions=GOOD_V[:1]), "shape"),
        (dict(directions=2 * GOOD_V), "unit vectors"),
        (dict(directions=_with(GOOD_V, (0, 2, 2), 0.5)), "unit vectors"),
        (dict(directions=_with(GOOD_V, (0, 2, 2), np.nan)), "NaN"),
        (dict(lambda_par=-1.0), "lambda_par"),
        (dict(lambda_perp=-0.1), "lambda_perp"),
        (dict(lambda_perp=np.full((16, 16), -1.0)), "lambda_perp"),
        (dict(lambda_par=np.ones((3, 3))), "does not match"),
        (dict(lambda_par=float("nan")), "lambda_par"),
        (dict(dt=0.0), "dt"),
        (dict(dt=-0.1), "dt"),
        (dict(dt=float("inf")), "dt"),
        (dict(steps=-1), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(order=7), "even integer"),
        (dict(backend="cuda-magic"), "backend"),
    ],
)
def test_bad_input_raises_a_clear_value_error(kwargs, match):
    args = dict(u=GOOD_U, directions=GOOD_V, lambda_par=1.0, lambda_perp=0.1, dt=0.1, steps=2)
    args.update(kwargs)
    u = args.pop("u")
    d = args.pop("directions")
    with pytest.raises(ValueError, match=match):
        diffuse(u, d, **args)
    with pytest.raises(ValueError, match=match):
        next(iter_diffusion(u, d, **args))


def test_nearly_unit_vectors_are_accepted():
    d = GOOD_V * (1 + 5e-4)
    assert diffuse(GOOD_U, d, dt=0.1, steps=1).shape == (16, 16)


def test_integer_and_bool_fields_are_converted():
    u = np.zeros((16, 16), bool)
    u[8] = True
    out = diffuse(u, GOOD_V, dt=0.1, steps=1)
    assert out.dtype == np.float32 and out[8].min() == 1.0


@pytest.mark.parametrize("shape", [(96, 90), (24, 28, 30)])
def test_the_kernel_leaves_no_subnormal_values(shape):
    # probability spreading into a zero background decays geometrically; subnormal floats
    # there made the kernel 4 to 6 times slower (docs/performance.md), so increments below
    # 1e-20 are dropped: no value may end between 0 and float32's smallest normal number
    from napari_tubediff.core.directions import estimate_directions
    from napari_tubediff.data.synthetic import synthetic_vessels

    s = synthetic_vessels(shape, seed=1, depth=2, width=(1.0, 2.5), noise=0.0)
    v = estimate_directions(s.probability, 2.0)
    kw = dict(lambda_par=1.0, lambda_perp=0.02, dt=0.25, steps=40)
    fast = diffuse(s.probability, v, backend="numba", **kw)
    plain = diffuse(s.probability, v, backend="numpy", **kw)
    tiny = np.finfo(np.float32).tiny
    assert ((plain > 0) & (plain < tiny)).any()  # the plain reference does produce them
    assert not ((fast > 0) & (fast < tiny)).any()
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert (fast >= s.probability).all()
