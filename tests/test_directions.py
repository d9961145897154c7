import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_tubediff import estimate_directions


def tube_2d(angle, n=64, radius=2.5):
    y, x = np.mgrid[0:n, 0:n] - n / 2
    t = np.array([np.sin(angle), np.cos(angle)])  # (row, col) direction of the tube
    dist = np.abs(y * t[1] - x * t[0])
    return (dist <= radius).astype(float), t


@pytest.mark.parametrize("method", ["hessian", "structure"])
@pytest.mark.parametrize("angle", [0.0, np.pi / 4, np.pi / 2, 2.0])
def test_direction_follows_a_straight_tube(method, angle):
    u, t = tube_2d(angle)
    v = estimate_directions(u, sigma=2.0, method=method)
    assert v.shape == (2, 64, 64) and v.dtype == np.float32
    c = v[:, 32, 32]
    if method == "structure":
        # the structure tensor is read on the tube's flank: at its centre the gradient vanishes
        off = np.round(np.array([t[1], -t[0]]) * 3).astype(int)
        c = v[:, 32 + off[0], 32 + off[1]]
    assert abs(abs(np.dot(c, t)) - 1) < 1e-3


def test_vectors_are_unit_or_zero_and_background_is_zero():
    u, _ = tube_2d(0.3)
    v = estimate_directions(u, sigma=2.0)
    n = np.sqrt((v.astype(np.float64) ** 2).sum(0))
    assert np.all((np.abs(n - 1) < 1e-5) | (n == 0))
    assert n[0, 0] == 0 and abs(n[32, 32] - 1) < 1e-6  # flat corner: undefined; tube: defined


def test_dark_vessels_need_bright_false():
    u, t = tube_2d(0.0)
    dark = 1 - u
    assert not np.any(estimate_directions(dark, 2.0)[:, 32, 32])  # a valley is not a bright ridge
    c = estimate_directions(dark, 2.0, bright=False)[:, 32, 32]
    assert abs(abs(np.dot(c, t)) - 1) < 1e-3


def test_3d_tube_along_each_axis():
    n = 32
    z, y, x = np.mgrid[0:n, 0:n, 0:n] - n / 2
    for axis, (a, b) in enumerate([(y, x), (z, x), (z, y)]):
        u = ndi.gaussian_filter(((a ** 2 + b ** 2) <= 6).astype(float), 1)
        v = estimate_directions(u, sigma=2.0)
        assert v.shape == (3, n, n, n)
        expected = np.eye(3)[axis]
        assert abs(abs(np.dot(v[:, 16, 16, 16], expected)) - 1) < 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        estimate_directions(np.zeros((8, 8)), 1.0, method="gabor")
    with pytest.raises(ValueError, match="sigma"):
        estimate_directions(np.zeros((8, 8)), 0.0)
    with pytest.raises(ValueError, match="colour"):
        estimate_directions(np.zeros((8, 8, 3)), 1.0)


def test_slabbed_eigen_decomposition_gives_the_same_directions(monkeypatch):
    # the eigen-decomposition runs slab by slab to bound memory: the slab size must not matter
    import napari_tubediff.core.directions as directions
    from napari_tubediff.data.synthetic import synthetic_vessels

    u = synthetic_vessels((24, 40, 44), seed=2, depth=2, width=(1.0, 2.5)).probability
    whole = directions.estimate_directions(u, 2.0)
    spread = directions.eigenvalue_spread(u, 2.0)
    monkeypatch.setattr(directions, "_SLAB", 500)  # about one row per slab
    np.testing.assert_array_equal(directions.estimate_directions(u, 2.0), whole)
    np.testing.assert_array_equal(directions.eigenvalue_spread(u, 2.0), spread)
    assert np.abs(whole).sum() > 100  # vessels were found
