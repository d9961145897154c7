"""Every file an annotator has opens as the right layer, through napari's reader contribution
(npe2) and through the CLI's reader (`data.io.read_image` + `binary_mask`), with small files
written here; real DRIVE / STARE / HRF files are optional extras."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_tubediff.cli import main
from napari_tubediff.data.drive import binary_mask
from napari_tubediff.data.io import looks_like_labels, read_image
from napari_tubediff.io_hooks import READER_PATTERNS, get_reader, layer_data, prefer_tubediff_readers

DATA = Path(os.environ.get("TUBEDIFF_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
RNG = np.random.default_rng(0)
PHOTO = (RNG.random((20, 24, 3)) * 255).astype(np.uint8)  # a colour "photograph"
MASK = np.zeros((20, 24), bool)
MASK[5:8, 2:20] = True
MASK[2:18, 10] = True


def _palette_gif(path, mask, colours=((4, 2, 4), (252, 254, 252))):
    # DRIVE's 2nd-observer GIFs: raw indices 0/1, palette colours nearly grey
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette([c for rgb in colours for c in rgb] + [0, 0, 0] * 254)
    im.save(path)


def _files(tmp_path):
    """name -> (path, expected kind, expected data)."""
    f = {}
    p = tmp_path / "01_test.tif"  # DRIVE's images are LZW TIFFs
    Image.fromarray(PHOTO).save(p, compression="tiff_lzw")
    f["lzw tiff"] = (p, "image", PHOTO)
    p = tmp_path / "photo.jpg"
    Image.fromarray(PHOTO).save(p, quality=95)
    f["jpeg"] = (p, "image", None)
    p = tmp_path / "mask255.png"
    Image.fromarray(MASK.astype(np.uint8) * 255).save(p)
    f["png 0/255"] = (p, "labels", MASK)
    p = tmp_path / "mask01.png"
    Image.fromarray(MASK.astype(np.uint8)).save(p)
    f["png 0/1"] = (p, "labels", MASK)
    p = tmp_path / "grey.png"
    grey = np.tile(np.arange(24, dtype=np.uint8) * 10, (20, 1))
    Image.fromarray(grey).save(p)
    f["png grey"] = (p, "image", grey)
    p = tmp_path / "im0001.ah.ppm"  # STARE's labels: PGM "P5" content in a .ppm file
    Image.fromarray(MASK.astype(np.uint8) * 255).save(p, format="PPM")
    assert p.read_bytes()[:2] == b"P5"
    f["stare pgm"] = (p, "labels", MASK)
    p = tmp_path / "im0001.ppm"
    Image.fromarray(PHOTO).save(p)
    f["ppm colour"] = (p, "image", PHOTO)
    p = tmp_path / "01_manual2.gif"
    _palette_gif(p, MASK)
    f["palette gif"] = (p, "labels", MASK)
    p = tmp_path / "01_dr_mask.tif"  # HRF's FOV masks: a grey mask stored as RGB
    Image.fromarray(np.repeat(MASK[..., None].astype(np.uint8) * 255, 3, -1)).save(p)
    f["rgb mask tiff"] = (p, "labels", MASK)
    p = tmp_path / "frame.tif"  # one frame stored as (1, H, W)
    import tifffile

    tifffile.imwrite(p, grey[None])
    f["tiff (1, H, W)"] = (p, "image", grey)
    return f


def test_every_file_type_reads_as_the_right_layer(tmp_path):
    for what, (path, kind, expected) in _files(tmp_path).items():
        assert get_reader(str(path)) is not None, what
        ((data, meta, k),) = get_reader(str(path))(str(path))
        assert k == kind, what
        assert meta["name"] == path.name.split(".tif")[0].removesuffix(path.suffix), what
        if kind == "labels":
            assert data.dtype == np.uint8 and data.shape == MASK.shape, what
            np.testing.assert_array_equal(data, expected.astype(np.uint8), err_msg=what)
            # the CLI reads the same file to the same mask
            np.testing.assert_array_equal(binary_mask(read_image(path)), expected, err_msg=what)
        else:
            assert meta.get("rgb", False) == (data.ndim == 3), what
            if expected is not None:
                np.testing.assert_array_equal(data, expected, err_msg=what)
                np.testing.assert_array_equal(read_image(path), expected, err_msg=what)
            else:
                assert data.shape == PHOTO.shape, what


def test_lzw_tiff_needs_no_imagecodecs(tmp_path):
    path, _, expected = _files(tmp_path)["lzw tiff"]
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        import tifffile

        with pytest.raises(ValueError, match="imagecodecs"):  # what napari's own reader runs into
            tifffile.imread(path)
    np.testing.assert_array_equal(read_image(path), expected)


def test_the_reader_declines_what_it_cannot_read(tmp_path):
    assert get_reader(str(tmp_path / "a.csv")) is None
    assert get_reader(str(tmp_path)) is None
    assert get_reader([str(tmp_path / "a.png"), str(tmp_path / "b.txt")]) is None
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read"):
        get_reader(str(tmp_path / "bad.png"))(str(tmp_path / "bad.png"))


def test_labels_are_decided_by_content_not_by_name():
    photo_named_mask = np.arange(400, dtype=np.uint8).reshape(20, 20)
    assert not looks_like_labels(photo_named_mask, "01_test_mask.png")  # a hint never makes labels
    jpeg_mask = np.where(MASK, 250, 3).astype(np.uint8)
    jpeg_mask[0, :3] = (128, 7, 244)  # a few compression artefacts
    assert looks_like_labels(jpeg_mask, "01_manual1.jpg")  # nearly two-valued and named like a mask
    assert not looks_like_labels(jpeg_mask, "photo.jpg")  # three values and no hint: an image
    assert looks_like_labels(MASK) and looks_like_labels(MASK.astype(np.uint16) * 7)
    assert not looks_like_labels(MASK.astype(np.float32))  # a float map is a probability image


def test_through_npe2_and_napari(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    npe2 = pytest.importorskip("npe2")
    files = _files(tmp_path)
    viewer = make_napari_viewer()  # discovers the plugins
    for what, (path, kind, _) in files.items():
        layers, _ = npe2.read_get_reader(str(path), plugin_name="napari-tubediff")
        assert layers[0][2] == kind, what
    # napari's own reader also takes these files; preferring this plugin's avoids the question
    from napari.settings import get_settings

    settings = get_settings()
    before = dict(settings.plugins.extension2reader)
    try:
        settings.plugins.extension2reader = {}
        assert set(prefer_tubediff_readers(settings)) == set(READER_PATTERNS)
        # plugin=None: what a drag-and-drop or File > Open does (viewer.open defaults to napari's own)
        (gif,) = viewer.open(str(files["palette gif"][0]), plugin=None)
        assert gif._type_string == "labels" and gif.data.shape == MASK.shape  # 2D, not (1, H, W)
        (tif,) = viewer.open(str(files["lzw tiff"][0]), plugin=None)
        assert tif._type_string == "image" and tif.rgb
        settings.plugins.extension2reader = {"*.png": "napari"}
        assert "*.png" not in prefer_tubediff_readers(settings)  # the user's choice is kept
        assert settings.plugins.extension2reader["*.png"] == "napari"
    finally:
        settings.plugins.extension2reader = before


def test_cli_segments_an_lzw_tiff_and_reads_a_stare_label(tmp_path, capsys):
    files = _files(tmp_path)
    out = tmp_path / "out"
    assert main(["segment", str(files["lzw tiff"][0]), "--out", str(out), "--backbone", "vesselness"]) == 0
    assert read_image(out / "01_test_prob.tif").shape == MASK.shape
    assert "vessels taken as 1 dark" in capsys.readouterr().out  # a colour photograph


# optional: the real data sets are not in a clone; every format is also tested on files the tests write
@pytest.mark.skipif(not DATA.is_dir(), reason="the real DRIVE/STARE/HRF files (TUBEDIFF_DATA) are absent")
@pytest.mark.parametrize("rel, kind, shape", [
    ("DRIVE/test/images/01_test.tif", "image", (584, 565, 3)),
    ("DRIVE/test/1st_manual/01_manual1.gif", "labels", (584, 565)),
    ("DRIVE/test/2nd_manual/01_manual2.gif", "labels", (584, 565)),
    ("DRIVE/test/mask/01_test_mask.gif", "labels", (584, 565)),
    ("STARE/images/im0001.png", "image", (605, 700, 3)),
    ("STARE/labels_1st/im0001.ah.ppm", "labels", (605, 700)),
    ("STARE/labels_2nd/im0001.vk.ppm", "labels", (605, 700)),
    ("HRF/mask/01_h_mask.tif", "labels", (2336, 3504)),
])
def test_real_files(rel, kind, shape):
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"{rel} absent from TUBEDIFF_DATA (a partial copy of the data sets)")
    data, meta, k = layer_data(path)
    assert (k, data.shape) == (kind, shape)
    if kind == "labels":
        frac = float(data.mean())
        assert 0.05 < frac < 0.9  # vessels (about 8-13%) or a field of view (about 70-85%)
        np.testing.assert_array_equal(data.astype(bool), binary_mask(read_image(path)))
