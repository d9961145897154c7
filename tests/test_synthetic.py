import numpy as np
from skimage.measure import label

from napari_tubediff.data.synthetic import synthetic_vessels


def test_same_seed_same_data_and_different_seed_different_data():
    a, b, c = (synthetic_vessels((96, 96), seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.probability, b.probability)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert not np.array_equal(a.truth, c.truth)


def test_truth_is_a_connected_tree_and_breaks_cut_it():
    s = synthetic_vessels((256, 256), seed=0, n_roots=1, n_breaks=6)
    assert label(s.truth, connectivity=2).max() == 1
    assert s.breaks.any() and not (s.breaks & ~s.truth).any()
    broken = s.probability > 0.5
    assert not (broken & s.breaks).any() or (broken & s.breaks).sum() < 0.05 * s.breaks.sum()
    assert label(broken, connectivity=2).max() > 1  # the breaks disconnect it


def test_value_ranges_and_dtypes():
    s = synthetic_vessels((64, 80), seed=1)
    for a in (s.image, s.probability):
        assert a.shape == (64, 80) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert s.truth.dtype == bool and s.centerline.dtype == bool
    assert (s.centerline <= s.truth).all()
    # vessels are brighter than the background in the image
    assert s.image[s.truth].mean() > s.image[~s.truth].mean() + 0.2


def test_widths_vary_and_no_breaks_means_intact():
    s = synthetic_vessels((256, 256), seed=2, n_breaks=0, noise=0.0)
    assert not s.breaks.any()
    from scipy import ndimage as ndi

    radius = ndi.distance_transform_edt(s.truth)[s.centerline]
    assert radius.max() >= 2 * max(radius.min(), 1)
