import numpy as np
import pytest

from napari_tubediff.core.curation import accept_mask, merge_indices, merge_mask


def test_accept_mask_threshold_and_rejected_gaps():
    f = np.array([[0.2, 0.5, 0.7, 0.9], [0.6, 0.6, 0.0, 1.0]], np.float32)
    g = np.array([[0, 1, 2, 0], [3, 3, 0, 0]])
    np.testing.assert_array_equal(accept_mask(f), [[0, 1, 1, 1], [1, 1, 0, 1]])
    np.testing.assert_array_equal(accept_mask(f, 0.8), [[0, 0, 0, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(accept_mask(f, 0.5, g, rejected=[2, 3]), [[0, 1, 0, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(accept_mask(f, 0.5, g), accept_mask(f))  # nothing rejected


def test_accept_mask_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        accept_mask(np.zeros((2, 2)), 1.5)
    with pytest.raises(ValueError, match="shape"):
        accept_mask(np.zeros((2, 2)), 0.5, np.zeros((2, 3)), rejected=[1])


def test_merge_never_overwrites_painted_labels():
    curated = np.array([[0, 2, 0], [5, 0, 0]], np.uint8)
    mask = np.array([[1, 1, 1], [1, 0, 0]], bool)
    idx = merge_indices(curated, mask)
    np.testing.assert_array_equal(idx[0], [0, 0])
    np.testing.assert_array_equal(idx[1], [0, 2])
    out = merge_mask(curated, mask, value=7)
    np.testing.assert_array_equal(out, [[7, 2, 7], [5, 0, 0]])
    assert out.dtype == np.uint8 and curated[0, 0] == 0  # a copy


def test_merge_bad_input():
    with pytest.raises(ValueError, match="shape"):
        merge_indices(np.zeros((2, 2)), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="label value"):
        merge_mask(np.zeros((2, 2)), np.ones((2, 2), bool), value=0)
