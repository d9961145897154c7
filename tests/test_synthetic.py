import numpy as np
import pytest
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


def test_volumes_have_exact_truth_breaks_and_bright_vessels():
    from scipy import ndimage as ndi

    a = synthetic_vessels((48, 64, 64), seed=5, n_roots=1, width=(1.0, 3.0), n_breaks=4)
    b = synthetic_vessels((48, 64, 64), seed=5, n_roots=1, width=(1.0, 3.0), n_breaks=4)
    np.testing.assert_array_equal(a.probability, b.probability)
    for x in (a.image, a.probability):
        assert x.shape == (48, 64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    full = np.ones((3, 3, 3), bool)
    # one root: one connected tube tree (26-connectivity), which the breaks cut apart
    assert ndi.label(a.truth, full)[1] == 1
    assert a.breaks.any() and not (a.breaks & ~a.truth).any()
    assert ndi.label(a.truth & ~a.breaks, full)[1] > 1
    assert (a.centerline <= a.truth).all() and a.centerline.sum() > 20
    assert a.image[a.truth].mean() > a.image[~a.truth].mean() + 0.2
    # tubes are round: the largest inscribed radius stays within the drawn range
    radius = ndi.distance_transform_edt(a.truth)[a.centerline]
    assert radius.max() >= 1.0 and radius.max() <= 4.0


def test_shape_must_be_2d_or_3d():
    import pytest

    for bad in [(64,), (4, 64, 64), (8, 8, 8, 8)]:
        with pytest.raises(ValueError, match="2D or 3D"):
            synthetic_vessels(bad)


@pytest.mark.parametrize("kwargs", [dict(n_breaks=-1), dict(n_breaks=1.5), dict(width=(3.0, 1.0)),
                                    dict(break_length=(0.0, 2.0)), dict(noise=-0.1),
                                    dict(blur=float("nan"))])
def test_bad_numbers_are_refused(kwargs):
    # before: n_breaks=-1 silently drew no breaks (tubediff demo --breaks -1 exited 0)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        synthetic_vessels((32, 32), **kwargs)


def test_cli_demo_with_negative_breaks_is_one_line(capsys):
    from napari_tubediff.cli import main

    assert main(["demo", "--breaks", "-1", "--size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_breaks must be a whole number >= 0" in err[0]
