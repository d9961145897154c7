import numpy as np
import pytest

from napari_tubediff.core.gaps import bridged_gaps, bridged_mask


def test_ranked_by_size_with_centroid_and_confidence():
    p = np.zeros((5, 10), np.float32)
    r = p.copy()
    r[1, 0] = 0.6                      # 1 pixel
    r[1, 3:6] = 0.8                    # 3 pixels in a row
    r[3, 7:9] = [0.5, 0.7]             # 2 pixels (0.5 counts: >= threshold)
    p[3, 2] = r[3, 2] = 0.9            # above threshold before: not bridged
    labels, gaps = bridged_gaps(p, r)
    assert [g.size for g in gaps] == [3, 2, 1]
    assert [g.label for g in gaps] == [1, 2, 3]
    assert gaps[0].centroid == (1.0, 4.0)
    assert gaps[1].centroid == (3.0, 7.5)
    assert gaps[1].confidence == pytest.approx(0.6)
    expected = np.zeros((5, 10), np.int32)
    expected[1, 3:6] = 1
    expected[3, 7:9] = 2
    expected[1, 0] = 3
    np.testing.assert_array_equal(labels, expected)


def test_diagonal_pixels_are_one_gap_and_ties_keep_row_major_order():
    p = np.zeros((4, 4), np.float32)
    r = p.copy()
    r[0, 3] = r[1, 2] = 0.9            # diagonal neighbours: one gap of 2
    r[3, 0] = r[3, 1] = 0.9            # another gap of 2, first pixel later
    labels, gaps = bridged_gaps(p, r)
    assert [g.size for g in gaps] == [2, 2]
    assert labels[0, 3] == labels[1, 2] == 1 and labels[3, 0] == 2


def test_min_size_and_empty():
    p = np.zeros((3, 3), np.float32)
    r = p.copy()
    r[1, 1] = 0.9
    labels, gaps = bridged_gaps(p, r, min_size=2)
    assert gaps == [] and not labels.any()
    labels, gaps = bridged_gaps(p, p)
    assert gaps == [] and labels.dtype == np.int32


def test_3d_gap():
    p = np.zeros((5, 6, 6), np.float32)   # (a last axis of 3 or 4 would read as colour channels)
    r = p.copy()
    r[0, 0, 0] = r[1, 1, 1] = 0.7          # 26-connected
    labels, gaps = bridged_gaps(p, r)
    assert len(gaps) == 1 and gaps[0].centroid == (0.5, 0.5, 0.5)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        bridged_mask(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="threshold"):
        bridged_mask(np.zeros((3, 3)), np.zeros((3, 3)), threshold=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bridged_mask(np.zeros((3, 3)), np.full((3, 3), 2.0))
