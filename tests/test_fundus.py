import numpy as np

from napari_tubediff.data.fundus import synthetic_fundus
from napari_tubediff.sample_data import retina_sample


def test_fundus_image_truth_and_fov():
    f = synthetic_fundus((128, 128), seed=2)
    assert f.image.shape == (128, 128, 3) and f.image.dtype == np.uint8
    assert f.truth.dtype == bool and f.fov.dtype == bool
    assert (f.truth <= f.fov).all() and 0.01 < f.truth.mean() < 0.3
    assert not f.image[~f.fov].any()                            # black outside the field of view
    green = f.image[..., 1].astype(float)
    background = f.fov & ~f.truth
    assert green[f.truth].mean() < 0.8 * green[background].mean()   # dark vessels, as in fundus photos
    r = f.image[..., 0].astype(float)
    assert r[background].mean() > green[background].mean()      # a reddish retina
    np.testing.assert_array_equal(synthetic_fundus((128, 128), seed=2).image, f.image)


def test_retina_sample_layers():
    (img, meta, kind), (truth, _, k2), (fov, _, k3) = retina_sample()
    assert kind == "image" and meta["rgb"] and (k2, k3) == ("labels", "labels")
    assert truth.shape == fov.shape == img.shape[:2]
