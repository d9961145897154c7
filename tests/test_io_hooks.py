"""The manifest's reader (GIF masks) and writer (tif, png masks), as functions and through napari."""

import numpy as np
import pytest
from PIL import Image

from napari_tubediff.data.io import read_image
from napari_tubediff.io_hooks import get_mask_reader, read_mask, write_mask


def palette_gif(path, mask):
    # like DRIVE's 2nd-observer masks: raw palette indices 0 and 1, index 1 painted white
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette([3, 3, 3, 253, 253, 253] + [0, 0, 0] * 254)
    im.save(path)
    return path


def test_palette_gif_is_read_as_labels(tmp_path):
    mask = np.zeros((6, 7), bool)
    mask[2, 1:6] = True
    path = palette_gif(tmp_path / "01_manual2.gif", mask)
    assert np.asarray(Image.open(path)).max() == 1  # raw indices: thresholding those gives nothing
    reader = get_mask_reader(str(path))
    assert reader is read_mask
    ((data, meta, kind),) = reader(str(path))
    assert kind == "labels" and meta["name"] == "01_manual2" and data.dtype == np.uint8
    np.testing.assert_array_equal(data, mask.astype(np.uint8))


def test_an_anti_aliased_mask_in_a_labels_folder_is_read_as_labels(tmp_path):
    # like HRF's labels_1st/11_h.tif: 0/255 with a few anti-aliased edge pixels, named as its image
    from napari_tubediff.io_hooks import layer_data

    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 20:24] = 255
    mask[10:30, 24] = 90  # the anti-aliased edge: 20 of 2000 pixels
    for folder, kind in (("labels_1st", "labels"), ("images", "image")):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "11_h.tif"
        Image.fromarray(mask).save(path)
        data, meta, got = layer_data(path)
        assert got == kind and meta["name"] == "11_h"
        if kind == "labels":  # the project's one rule: grey values >= 128 are vessel
            np.testing.assert_array_equal(data, (mask >= 128).astype(np.uint8))


def test_a_fov_mask_opens_hidden_and_the_truth_shown(tmp_path):
    # DRIVE's 01_test_mask covers the photograph with the truth's colour at opacity 0.7
    from napari_tubediff.io_hooks import layer_data

    mask = np.zeros((8, 9), np.uint8)
    mask[2:6, 2:7] = 255
    for name, shown in (("01_test_mask.gif", False), ("01_manual1.gif", True), ("fov.png", False)):
        Image.fromarray(mask).save(tmp_path / name)
        data, meta, kind = layer_data(tmp_path / name)
        assert kind == "labels" and meta.get("visible", True) is shown, name


def test_reader_declines_other_files(tmp_path):
    assert get_mask_reader(str(tmp_path / "a.png")) is None
    assert get_mask_reader([str(tmp_path / "a.gif"), str(tmp_path / "b.tif")]) is None


def test_writer_png_is_a_mask_and_tif_keeps_labels(tmp_path):
    labels = np.zeros((5, 6), np.uint16)
    labels[1, 1:4] = 1
    labels[3, 2] = 300
    (png,) = write_mask(str(tmp_path / "m.png"), labels, {})
    np.testing.assert_array_equal(read_image(png), (labels > 0) * 255)
    (tif,) = write_mask(str(tmp_path / "m.tif"), labels, {})
    back = read_image(tif)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "m.tif"]  # no temporary files left


def test_writer_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="3D"):
        write_mask(str(tmp_path / "v.png"), np.zeros((2, 3, 4), np.uint8), {})
    with pytest.raises(ValueError, match=".tif or .png"):
        write_mask(str(tmp_path / "v.jpg"), np.zeros((3, 4), np.uint8), {})


def test_through_napari(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    viewer = make_napari_viewer()
    mask = np.zeros((8, 8), bool)
    mask[4, :] = True
    path = palette_gif(tmp_path / "21_manual1.gif", mask)
    (layer,) = viewer.open(str(path), plugin="napari-tubediff")
    assert layer._type_string == "labels"
    np.testing.assert_array_equal(layer.data, mask)
    out = tmp_path / "saved.png"
    layer.save(str(out), plugin="napari-tubediff")
    np.testing.assert_array_equal(read_image(out), mask * 255)


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    from napari_tubediff.data.io import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    plain = tmp_path / "b.txt"
    plain.write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode)  # not mkstemp's private 0600
