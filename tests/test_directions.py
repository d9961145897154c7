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


@pytest.mark.parametrize(("m", "lo", "hi", "v_hi"), [
    ([[3, 0], [0, 1]], 1, 3, [1, 0]),
    ([[1, 0], [0, 3]], 1, 3, [0, 1]),
    ([[2, 1], [1, 2]], 1, 3, [1, 1]),
    ([[1, -2], [-2, 1]], -1, 3, [1, -1]),
    ([[0, 1], [1, 0]], -1, 1, [1, 1]),
    ([[-4, 0], [0, -4.000001]], -4.000001, -4, [1, 0]),   # nearly isotropic, still exact
    ([[1e8, 1e-8], [1e-8, 1e8]], 1e8, 1e8, [1, 1]),       # tiny coupling of equal diagonals: 45 degrees
    ([[2, 0], [0, 2]], 2, 2, [1, 0]),                     # isotropic: any vector; (1, 0) and (0, 1)
    ([[0, 0], [0, 0]], 0, 0, [1, 0]),
])
def test_eigh_2x2_on_hand_checkable_matrices(m, lo, hi, v_hi):
    from napari_tubediff.core.directions import eigh_2x2

    (a, b), (_, c) = np.asarray(m, np.float64)
    got_lo, got_hi, ct, st = eigh_2x2(a, b, c)
    np.testing.assert_allclose([got_lo, got_hi], [lo, hi], rtol=1e-15)
    v_hi = np.asarray(v_hi, float) / np.linalg.norm(v_hi)
    assert abs(abs(ct * v_hi[0] + st * v_hi[1]) - 1) < 1e-15
    if b == 0:  # a diagonal matrix: exactly along the axes, as numpy's eigh gives them
        assert {abs(float(ct)), abs(float(st))} == {0.0, 1.0}
    # both are eigenvectors: M v = lambda v, and of unit length
    M = np.asarray(m, np.float64)
    for lam, v in ((got_hi, np.array([ct, st])), (got_lo, np.array([-st, ct]))):
        np.testing.assert_allclose(M @ v, lam * v, atol=1e-15 * max(1.0, np.abs(M).max()))
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-15)


def test_eigh_2x2_equals_numpy_eigh_on_random_matrices():
    from napari_tubediff.core.directions import eigh_2x2

    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 20_000)) * 10.0 ** rng.uniform(-6, 6, size=(1, 20_000))
    b[:500] = 0           # already diagonal
    c[500:1000] = a[500:1000]  # equal diagonals
    lo, hi, ct, st = eigh_2x2(a, b, c)
    evals, evecs = np.linalg.eigh(np.stack([np.stack([a, b], -1), np.stack([b, c], -1)], -2))
    norm = np.abs(evals).max(-1)
    # eigenvalues within 4 machine epsilons of the matrix's norm (3.0 the worst seen)
    assert np.all(np.abs(lo - evals[:, 0]) <= 8.9e-16 * norm)
    assert np.all(np.abs(hi - evals[:, 1]) <= 8.9e-16 * norm)
    # the eigenvectors, up to sign, to the accuracy their eigenvalue gap allows
    gap = (evals[:, 1] - evals[:, 0]) / norm
    ok = gap > 1e-6
    assert ok.mean() > 0.99
    dot_hi = np.abs(ct * evecs[:, 0, 1] + st * evecs[:, 1, 1])
    dot_lo = np.abs(-st * evecs[:, 0, 0] + ct * evecs[:, 1, 0])
    assert np.all(1 - dot_hi[ok] < 1e-9) and np.all(1 - dot_lo[ok] < 1e-9)


@pytest.mark.parametrize("method", ["hessian", "structure"])
def test_closed_form_directions_equal_the_eigh_ones(method, monkeypatch):
    # per pixel: the pick (smallest magnitude), the spread and the ridge test, as numpy's eigh gave them
    from skimage.feature import hessian_matrix, structure_tensor

    import napari_tubediff.core.directions as directions
    from napari_tubediff.data.synthetic import synthetic_vessels

    u = synthetic_vessels((96, 96), seed=3).probability
    parts = (hessian_matrix(u, 2.0, order="rc", use_gaussian_derivatives=False) if method == "hessian"
             else structure_tensor(u, 2.0, order="rc"))
    spread, vector, strongest = directions._tensor_eigen(parts, method)
    monkeypatch.setattr(directions, "_EIGH_2D", True)  # the former path
    ref_spread, ref_vector, ref_strongest = directions._tensor_eigen(parts, method)
    np.testing.assert_allclose(spread, ref_spread, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(strongest, ref_strongest, rtol=1e-12, atol=1e-15)
    defined = spread > 1e-6 * spread.max()
    assert defined.mean() > 0.5
    dot = np.abs(sum(a * b for a, b in zip(vector, ref_vector, strict=True)))
    assert np.all(1 - dot[defined] < 1e-9)


def test_refine_is_unchanged_by_the_closed_form(monkeypatch):
    # the default refinement with the directions of numpy's eigh (the former 2D path) and with eigh_2x2
    import napari_tubediff.core.directions as directions
    from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine
    from napari_tubediff.data.synthetic import synthetic_vessels

    u = synthetic_vessels((128, 128), seed=5).probability
    s = RefineSettings(method=RECOMMENDED_METHOD)
    v, new = estimate_directions(u, s.sigma), refine(u, settings=s)
    monkeypatch.setattr(directions, "_EIGH_2D", True)
    v_eigh, old = estimate_directions(u, s.sigma), refine(u, settings=s)
    assert np.abs(v).sum() > 100
    np.testing.assert_allclose(np.abs(v), np.abs(v_eigh), atol=1e-6)  # up to sign: a direction has none
    assert np.abs(old - u).max() > 0.1  # the refinement did something
    np.testing.assert_allclose(new, old, atol=1e-6)
