import numpy as np
import pytest

from napari_tubediff.core.directions import sample_vectors, vector_angles


def test_grid_positions_and_centred_projections_by_hand():
    v = np.zeros((2, 8, 8), np.float32)
    v[1] = 1  # along the columns
    vec = sample_vectors(v, np.ones((8, 8), bool), step=4, length=2)
    assert vec.shape == (4, 2, 2) and vec.dtype == np.float32
    # grid pixels (2,2), (2,6), (6,2), (6,6); each vector centred on its pixel
    np.testing.assert_array_equal(vec[:, 0], [[2, 1], [2, 5], [6, 1], [6, 5]])
    np.testing.assert_array_equal(vec[:, 1], [[0, 2]] * 4)
    np.testing.assert_array_equal(vec[:, 0] + vec[:, 1] / 2, [[2, 2], [2, 6], [6, 2], [6, 6]])


def test_mask_and_zero_vectors_are_left_out():
    v = np.zeros((2, 6, 6), np.float32)
    v[0] = 1
    v[:, 1, 4] = 0  # no direction at one grid pixel
    mask = np.zeros((6, 6), bool)
    mask[:, :3] = True
    mask[1, 4] = True
    vec = sample_vectors(v, mask, step=3, length=1)
    # grid pixels: (1,1), (1,4), (4,1), (4,4); (1,4) has no direction, (4,4) is outside the mask
    np.testing.assert_array_equal(vec[:, 0] + vec[:, 1] / 2, [[1, 1], [4, 1]])


def test_3d_and_empty():
    v = np.zeros((3, 4, 4, 4), np.float32)
    v[0] = 1
    vec = sample_vectors(v, np.ones((4, 4, 4), bool), step=2, length=1)
    assert vec.shape == (8, 2, 3)
    np.testing.assert_array_equal(vec[0], [[0.5, 1, 1], [1, 0, 0]])
    assert sample_vectors(v, np.zeros((4, 4, 4), bool)).shape == (0, 2, 3)


@pytest.mark.parametrize("kwargs", [{"step": 0}, {"step": 1.5}, {"length": 0}, {"length": np.nan}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        sample_vectors(np.zeros((2, 4, 4)), np.ones((4, 4), bool), **kwargs)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        sample_vectors(np.zeros((2, 4, 4)), np.ones((4, 5), bool))


def test_angles_by_hand():
    vecs = np.zeros((5, 2, 2))
    vecs[:, 1] = [[0, 1], [1, 0], [-1, 0], [1, 1], [0, -1]]
    np.testing.assert_allclose(vector_angles(vecs), [0, 90, 90, 45, 0])
    vecs3 = np.zeros((1, 2, 3))
    vecs3[0, 1] = [5, 1, 1]  # the plane's angle ignores the first axis
    np.testing.assert_allclose(vector_angles(vecs3), [45])


def test_inside_keeps_both_ends_in_the_array():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 6, 9, 7)).astype(np.float32)   # no zero component anywhere
    v /= np.linalg.norm(v, axis=0)
    last = np.array([5, 8, 6])
    vec = sample_vectors(v, np.ones((6, 9, 7), bool), step=2, length=5, inside=True)
    ends = np.stack([vec[:, 0], vec[:, 0] + vec[:, 1]])
    assert ends.min() >= -1e-5 and (ends <= last + 1e-5).all()
    free = sample_vectors(v, np.ones((6, 9, 7), bool), step=2, length=5)
    centre = free[:, 0] + free[:, 1] / 2
    free = free[((centre > 0) & (centre < last)).all(axis=1)]  # a centre on the border has no room
    assert 0 < len(vec) == len(free)
    np.testing.assert_allclose(vec[:, 0] + vec[:, 1] / 2, free[:, 0] + free[:, 1] / 2, atol=1e-5)  # centred
    unit = vec[:, 1] / np.linalg.norm(vec[:, 1], axis=1, keepdims=True)
    np.testing.assert_allclose(unit, free[:, 1] / 5, atol=1e-5)                 # same directions, shorter


def test_one_vector_per_cell_puts_vectors_on_a_thin_vessel_off_the_grid():
    # a 1-pixel diagonal vessel that misses every grid pixel (4 + 8i, 4 + 8j)
    n, step = 64, 8
    rows = np.arange(n - 1)
    line = np.zeros((n, n), bool)
    line[rows + 1, rows] = True
    v = np.zeros((2, n, n), np.float32)
    v[:, line] = np.float32(np.sqrt(0.5))
    assert len(sample_vectors(v, line, step=step)) == 0
    prob = np.where(line, 0.6, 0.0).astype(np.float32)
    vec = sample_vectors(v, line, step=step, length=2, weights=prob)
    centres = vec[:, 0] + vec[:, 1] / 2
    assert len(vec) >= n // step                                  # at least one per diagonal cell
    np.testing.assert_array_equal(centres[:, 0], centres[:, 1] + 1)  # each on the vessel
    cells = {tuple(c) for c in (centres // step).astype(int)}
    assert len(cells) == len(vec)                                  # one per cell
    # the pixel of largest weight in a cell is chosen
    prob[12, 11] = 0.9                                             # not the cell's first vessel pixel
    vec = sample_vectors(v, line, step=step, length=2, weights=prob)
    assert [12, 11] in (vec[:, 0] + vec[:, 1] / 2).tolist()
