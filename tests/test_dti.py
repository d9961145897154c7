import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import apply_hysteresis_threshold
from skimage.morphology import reconstruction

from napari_tubediff import dti


def reference(u, high=0.5, low=0.3):
    # ../shared/REFERENCES.md: DTI == reconstruction(seed = u >= high, mask = u >= low), 8-connected
    seed = (u >= high).astype(np.uint8)
    mask = (u >= low).astype(np.uint8)
    fp = np.ones((3,) * u.ndim, bool)
    return reconstruction(seed, np.maximum(seed, mask), method="dilation", footprint=fp).astype(bool)


def one_raster_pass(u, high=0.5, low=0.3):
    # the public code's slow loop: one raster pass only, and index -1 wraps to the far border
    v = u >= high
    H, W = u.shape
    for i in range(H):
        for j in range(W):
            if u[i, j] >= low and not v[i, j]:
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        a, b = i + di, j + dj
                        if a < H and b < W and v[a, b]:  # a or b == -1 wraps around
                            v[i, j] = True
    return v


def maxpool_seeded_from_low(u, low=0.3):
    # the public code's fast version: seeded from the low mask, so it is just u >= low
    v = u >= low
    while True:
        nxt = ndi.maximum_filter(v, size=3) & (u >= low)
        if (nxt == v).all():
            return v
        v = nxt


@pytest.mark.parametrize("shape", [(64, 71), (12, 20, 18)])
def test_dti_equals_geodesic_reconstruction_on_random_fields(shape):
    rng = np.random.default_rng(0)
    for _ in range(5):
        u = ndi.gaussian_filter(rng.random(shape), 1.5)
        u = (u - u.min()) / (u.max() - u.min())
        for high, low in ((0.5, 0.3), (0.85, 0.7)):
            got = dti(u, high, low)
            np.testing.assert_array_equal(got, reference(u, high, low))
        # with the higher pair the low mask has components without seeds: a real test
        assert got.sum() > (u >= 0.85).sum()  # it grew
        assert got.sum() < (u >= 0.7).sum()  # but not into every low component


def test_growth_against_the_raster_direction_is_complete():
    # a low path that climbs up and to the left from a seed at the bottom right:
    # one raster pass (top-left to bottom-right) cannot follow it
    u = np.zeros((8, 8))
    u[7, 7] = 0.9
    u[7, 1:7] = 0.4
    u[1:7, 1] = 0.4
    u[1, 2:6] = 0.4
    got = dti(u)
    np.testing.assert_array_equal(got, u >= 0.3)
    assert not np.array_equal(one_raster_pass(u), got)  # the defect really shows here


def test_no_wrap_around_at_the_border():
    u = np.zeros((6, 10))
    u[2, 9] = 0.9  # seed at the right border
    u[2, 0] = 0.4  # low pixel at the left border, same row
    u[3, 0] = 0.4
    got = dti(u)
    assert got[2, 9] and not got[2, 0] and not got[3, 0]
    assert one_raster_pass(u)[2, 0]  # the defect: (2, -1) is (2, 9)


def test_seeds_come_from_the_high_threshold():
    u = np.zeros((10, 10))
    u[2, 1:8] = 0.4  # a low-only vessel: no pixel reaches 0.5
    u[6, 1:8] = 0.4
    u[6, 4] = 0.8  # this one has a seed
    got = dti(u)
    assert not got[2].any() and got[6, 1:8].all()
    assert maxpool_seeded_from_low(u)[2, 1:8].all()  # the defective version keeps the low-only one
    assert not np.array_equal(got, u >= 0.3)


def test_diagonal_steps_count_unlike_skimage_hysteresis():
    # the trap of REFERENCES.md: apply_hysteresis_threshold grows 4-connected
    u = np.zeros((6, 6))
    u[1, 1] = 0.9
    u[2, 2] = 0.4
    u[3, 3] = 0.4
    got = dti(u)
    assert got[2, 2] and got[3, 3]
    assert not apply_hysteresis_threshold(u, 0.3, 0.5)[3, 3]


def test_thresholds_are_inclusive_and_checked():
    u = np.array([[0.5, 0.3, 0.29]])
    np.testing.assert_array_equal(dti(u), [[True, True, False]])
    with pytest.raises(ValueError, match="low <= high"):
        dti(u, high=0.3, low=0.5)
    with pytest.raises(ValueError, match="NaN"):
        dti(np.array([[np.nan, 0.5]]))
    assert not dti(np.zeros((4, 4))).any()
