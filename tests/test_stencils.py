from fractions import Fraction

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_tubediff import derivative, divergence, fd_weights, gradient
from napari_tubediff.core.stencils import fornberg_weights


def test_order8_weights_equal_method_table():
    table = [1 / 280, -4 / 105, 1 / 5, -4 / 5, 0, 4 / 5, -1 / 5, 4 / 105, -1 / 280]
    np.testing.assert_allclose(fd_weights(8), table, rtol=0, atol=1e-15)


@pytest.mark.parametrize("order", [2, 4, 6, 8, 10, 12])
def test_weights_are_antisymmetric_and_sum_to_zero(order):
    w = fd_weights(order)
    assert w.shape == (order + 1,)
    np.testing.assert_allclose(w, -w[::-1], atol=1e-14)
    r = order // 2
    # first moment is exactly 1 (it is a first derivative)
    assert abs(np.dot(w, np.arange(-r, r + 1)) - 1) < 1e-12


@pytest.mark.parametrize("order", [2, 4, 6, 8, 10])
def test_stencil_differentiates_polynomials_up_to_degree_order_exactly(order):
    r = order // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = fd_weights(order)
    # a central stencil of accuracy `order` is exact for every polynomial of degree
    # <= order, at any point; degree order + 1 is the first it gets wrong
    for deg in range(order + 1):
        for x0 in (0.0, 0.37, -1.5):
            exact = deg * x0 ** (deg - 1) if deg else 0.0
            approx = np.dot(w, (x + x0) ** deg)
            assert approx == pytest.approx(exact, abs=1e-9 * max(1, abs(exact)))
    approx = np.dot(w, x ** (order + 1))
    assert abs(approx) > 1e-6  # not exact beyond degree `order`: the stencil has that order


def test_fornberg_matches_exact_rationals_for_second_derivative():
    # classical 5-point second derivative: (-1, 16, -30, 16, -1) / 12
    w = fornberg_weights(0.0, [-2, -1, 0, 1, 2], 2)[2]
    exact = [float(Fraction(k, 12)) for k in (-1, 16, -30, 16, -1)]
    np.testing.assert_allclose(w, exact, atol=1e-14)


def test_derivative_equals_independent_correlation_with_nearest_padding():
    rng = np.random.default_rng(0)
    u = rng.random((20, 17))
    for order in (2, 4, 8):
        w = fd_weights(order)
        for axis in (0, 1):
            ref = ndi.correlate1d(u, w, axis=axis, mode="nearest")  # 'nearest' == numpy 'edge'
            np.testing.assert_allclose(derivative(u, axis, order), ref, atol=1e-12)


def test_derivative_of_quadratic_is_exact_in_the_interior():
    x = np.arange(30.0)
    u = np.add.outer(3 * x ** 2, np.zeros(5))
    d = derivative(u, 0, 8)
    np.testing.assert_allclose(d[4:-4], 6 * np.add.outer(x, np.zeros(5))[4:-4], atol=1e-9)
    # at the edges the replicated padding makes the derivative smaller than the true one
    assert d[-1, 0] < 6 * x[-1]


def test_gradient_and_divergence_shapes_and_values_3d():
    z, y, x = np.meshgrid(np.arange(12.0), np.arange(10.0), np.arange(9.0), indexing="ij")
    u = 2 * z + 3 * y - x
    g = gradient(u, 4)
    assert g.shape == (3, 12, 10, 9)
    np.testing.assert_allclose(g[:, 2:-2, 2:-2, 2:-2].reshape(3, -1).mean(1), [2, 3, -1])
    q = np.stack([z, y, x])  # div = 3
    np.testing.assert_allclose(divergence(q, 4)[2:-2, 2:-2, 2:-2], 3.0)


@pytest.mark.parametrize("order", [0, 3, -2, 2.0, True, "8"])
def test_bad_orders_are_rejected(order):
    with pytest.raises(ValueError, match="even integer"):
        fd_weights(order)


def test_float32_stays_float32():
    assert derivative(np.ones((5, 5), np.float32), 0).dtype == np.float32
