"""Inputs the product had never seen (issue: unseen fundus cameras and microscopy files,
through the commands with their defaults). Each test failed on the old behaviour; the
cases and what the user now sees are rows of docs/reliability.md, "Unseen inputs".
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from napari_tubediff.cli import main
from napari_tubediff.data.io import read_image
from napari_tubediff.data.outputs import image_shape


def _lines(shape=(48, 48)) -> np.ndarray:
    # bright lines on a dark background: a grey microscopy plane
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = 100 + 800 * (np.exp(-((xx - 16) / 2.0) ** 2) + np.exp(-((yy - 30) / 2.0) ** 2))
    return img.astype(np.uint16)


def test_a_one_plane_tiff_is_a_2d_image_everywhere(tmp_path):
    # a stack of one plane (tifffile and ImageJ write (1, H, W)): read_image gives (H, W), so
    # the header must say 2D too; it was taken for a volume, sent to region3d and refused
    plane = _lines()
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, plane[None])
    q = tmp_path / "one5d.ome.tif"
    tifffile.imwrite(q, plane[None, None, None], ome=True, metadata={"axes": "TCZYX"})
    assert read_image(p).shape == image_shape(p) == (48, 48)
    assert image_shape(q) == (48, 48)
    assert main(["segment", str(p), "--out", str(tmp_path / "o")]) == 0
    prob = read_image(tmp_path / "o/one_prob.tif")
    assert prob.shape == (48, 48) and (tmp_path / "o/one_prob.png").exists()
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    assert main(["refine", str(tmp_path / "o/one_prob.tif"), "--out", str(tmp_path / "r")]) == 0
    assert read_image(tmp_path / "r/one_mask.png").shape == (48, 48)


def test_a_grey_fundus_photograph_has_its_field_of_view_and_scale():
    # red-free / greyscale fundus photographs had no FOV (grey was taken for microscopy): the
    # scale came from the vessel width (HRF 11_h turned grey: 0.333, the clamp, against 0.49
    # from its disc) and the U-Net marked the disc's rim; Dice 0.724 against 0.849 in colour
    from napari_tubediff.core.fov import fov_mask
    from napari_tubediff.core.scale import estimate_scale
    from napari_tubediff.data.fundus import synthetic_fundus

    f = synthetic_fundus((160, 200), seed=2)
    colour, how = estimate_scale(f.image)
    for grey in (f.image[..., 1], np.round(f.image @ [0.299, 0.587, 0.114]).astype(np.uint8)):
        m = fov_mask(grey)
        assert (m & f.fov).sum() / (m | f.fov).sum() > 0.98
        factor, how_grey = estimate_scale(grey)
        assert how == how_grey == "fov" and factor == pytest.approx(colour, rel=0.02)


def test_grey_images_that_are_not_photographs_get_no_field_of_view():
    # dark corners and a big bright structure are not enough for a grey image: the disc must
    # be convex (a bright cross on a dark background covers 36 % of the frame)
    from napari_tubediff.core.fov import fov_mask
    from napari_tubediff.data.synthetic import synthetic_vessels

    cross = np.zeros((200, 200), np.uint8)
    cross[70:130, 10:190] = cross[10:190, 70:130] = 200
    assert fov_mask(cross) is None
    assert fov_mask(np.repeat(cross[..., None], 3, -1)) is None
    assert fov_mask(synthetic_vessels((128, 128), seed=0).image) is None
    assert fov_mask(np.zeros((4, 64, 64), np.uint8)) is None  # a volume


def test_an_off_centre_crop_keeps_the_discs_diameter():
    # STARE im0255 cropped off-centre ([60:, 150:]: the disc cut at the top and the left) was
    # given scale 1.51 against 1.23 uncropped: the bounding box's longer side was taken for
    # the diameter. A disc clipped along both axes now gets a circle fitted to its edge.
    from napari_tubediff.core.fov import fov_diameter, fov_mask
    from napari_tubediff.core.scale import estimate_scale
    from napari_tubediff.data.fundus import synthetic_fundus

    yy, xx = np.mgrid[:300, :340]
    disc = np.hypot(yy - 150, xx - 170) <= 140
    assert fov_diameter(disc) == 281
    for crop in (disc[40:, 90:], disc[:-60, 70:-70], disc[50:250, :200]):
        assert fov_diameter(crop) == pytest.approx(281, abs=2)
    assert fov_diameter(disc[20:280]) == 281  # clipped at the top and bottom only (HRF): its width
    # clipped flat by the camera (STARE im0044), touching the frame by a sliver on one side:
    # the longer side as before (279), never the flat height (220)
    flat = disc.copy()
    flat[:40] = flat[-41:] = False
    assert fov_diameter(flat[:, :309]) == 279
    f = synthetic_fundus((200, 200), seed=1)
    full, _ = estimate_scale(f.image)
    m = fov_mask(f.image)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    cut = f.image[rows[0] + 25:, cols[0] + 30:]
    factor, how = estimate_scale(cut)
    assert how == "fov" and factor == pytest.approx(full, rel=0.03)


def test_a_volumes_spacing_reaches_the_layer_scale(tmp_path):
    # the CLI read a volume's spacing from its TIFF metadata but the napari reader did not:
    # the same file segmented as 2 x 1 x 1 from the command line and isotropic in the panel
    # (VesselExpress FrangiNet, every 2nd plane: Dice 0.823 against 0.778)
    from napari_tubediff.io_hooks import read_layers

    vol = _lines()[None].repeat(6, 0)
    ij, ome, plain = tmp_path / "ij.tif", tmp_path / "v.ome.tif", tmp_path / "plain.tif"
    tifffile.imwrite(ij, vol, imagej=True, resolution=(2.0, 2.0), metadata={"spacing": 3.0, "unit": "um"})
    tifffile.imwrite(ome, vol, ome=True, metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0,
                                                   "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5})
    tifffile.imwrite(plain, vol)
    assert read_layers(str(ij))[0][1]["scale"] == pytest.approx((3.0, 0.5, 0.5))
    assert read_layers(str(ome))[0][1]["scale"] == pytest.approx((2.0, 0.5, 0.5))
    assert "scale" not in read_layers(str(plain))[0][1]
    mask = tmp_path / "m.tif"
    tifffile.imwrite(mask, (vol > 500).astype(np.uint8), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "um"})
    data, meta, kind = read_layers(str(mask))[0]
    assert kind == "labels" and meta["scale"] == pytest.approx((3.0, 0.5, 0.5))
    # a mask volume (VesselExpress' int32 0/1 reference) is a Labels layer, as a 2D mask is
    tifffile.imwrite(plain, (vol > 500).astype(np.int32))
    data, meta, kind = read_layers(str(plain))[0]
    assert kind == "labels" and data.shape == vol.shape and set(np.unique(data)) == {0, 1}


def test_outputs_keep_the_volumes_spacing_and_blocks_segment_with_it(tmp_path):
    # a volume's outputs lost its spacing: `tubediff measure OUT/v_mask.tif` measured in
    # voxels and `tubediff refine OUT/v_prob.tif` refined isotropic; and a volume large
    # enough to be refined in blocks was segmented without its spacing at all
    from napari_tubediff.batch.run import BatchOptions, _segment_to_file
    from napari_tubediff.data.io import read_spacing
    from napari_tubediff.models.classical import VolumeBackbone

    zz, yy, _ = np.indices((16, 32, 24), dtype=float)
    truth = ((zz - 7.5) * 2) ** 2 + (yy - 15.5) ** 2 <= 16
    vol = (300 + 800 * truth + 40 * np.random.default_rng(0).standard_normal(truth.shape)).astype(np.uint16)
    src = tmp_path / "v.tif"
    tifffile.imwrite(src, vol, imagej=True, resolution=(1.0, 1.0), metadata={"spacing": 2.0, "unit": "um"})
    assert main(["segment", str(src), "--out", str(tmp_path / "s")]) == 0
    assert read_spacing(tmp_path / "s/v_prob.tif", 3) == (2.0, 1.0, 1.0)
    assert main(["refine", str(src), "--input", "image", "--out", str(tmp_path / "r")]) == 0
    for name in ("v_mask.tif", "v_refined.tif"):
        assert read_spacing(tmp_path / "r" / name, 3) == (2.0, 1.0, 1.0)
    prob = read_image(_segment_to_file(src, tmp_path / "b", BatchOptions(input="image")))
    expected = VolumeBackbone(spacing=(2.0, 1.0, 1.0)).predict(vol)
    np.testing.assert_array_equal(prob, expected)
    assert read_spacing(tmp_path / "b/v_prob.tif", 3) == (2.0, 1.0, 1.0)


def test_measure_takes_the_spacing_as_segment_and_refine_do(tmp_path, capsys):
    # segment and refine take --spacing 2,1,1; measure refused it (argparse: invalid float value)
    mask = np.zeros((6, 20, 20), np.uint8)
    mask[:, 10, 2:18] = 255  # a straight vessel of 16 voxels along the columns
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, mask)
    assert main(["measure", str(p), "--out", str(tmp_path / "a.csv"), "--spacing", "2,1,0.5"]) == 0
    assert main(["measure", str(p), "--out", str(tmp_path / "b.csv"), "--spacing", "2", "1", "0.5"]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert main(["measure", str(p), "--out", str(tmp_path / "c.csv"), "--spacing", "2,x,1"]) == 2
    assert "--spacing takes positive lengths" in capsys.readouterr().err


def test_a_transparent_surround_is_outside_the_field_of_view():
    # an RGBA photograph whose surround is transparent white (alpha 0) had no FOV: HRF 11_h
    # so exported scored Dice 0.800 against 0.849 with a black surround
    from napari_tubediff.core.fov import fov_mask
    from napari_tubediff.data.fundus import synthetic_fundus

    f = synthetic_fundus((160, 200), seed=2)
    rgba = np.dstack([f.image, np.where(f.fov, 255, 0).astype(np.uint8)])
    rgba[~f.fov, :3] = 255
    m = fov_mask(rgba)
    assert m is not None and (m & f.fov).sum() / (m | f.fov).sum() > 0.98
    opaque = np.dstack([f.image, np.full(f.fov.shape, 255, np.uint8)])
    np.testing.assert_array_equal(fov_mask(opaque), fov_mask(f.image))


def test_a_grey_or_white_surround_is_outside_the_field_of_view():
    # a photograph whose black surround was painted grey (or white) had no FOV: the corners
    # were not dark. DRIVE 01-03 and STARE im0001-2 painted mid-grey: up to 94,368 vessel
    # pixels in the surround and Dice 0.795-0.840; now 0-34 and within 0.004 of black
    from napari_tubediff.core.fov import fov_mask
    from napari_tubediff.core.scale import estimate_scale
    from napari_tubediff.data.fundus import synthetic_fundus

    f = synthetic_fundus((160, 200), seed=2)
    factor, _ = estimate_scale(f.image)
    for grey in (90, 128, 255):
        painted = f.image.copy()
        painted[~f.fov] = grey
        for image in (painted, painted[..., 1]):  # colour, and its green channel
            m = fov_mask(image)
            assert (m & f.fov).sum() / (m | f.fov).sum() > 0.97
            assert estimate_scale(image) == (pytest.approx(factor, rel=0.02), "fov")
    # a flat grey background holds no disc unless the structure on it is one
    cross = np.full((200, 200), 128, np.uint8)
    cross[70:130, 10:190] = cross[10:190, 70:130] = 250
    assert fov_mask(cross) is None and fov_mask(255 - cross) is None
    noisy = np.random.default_rng(0).integers(0, 255, (120, 160, 3)).astype(np.uint8)
    assert fov_mask(noisy) is None  # corners of many colours: no surround at all


def test_the_segment_panel_says_the_radius_is_in_the_layers_units(make_napari_viewer, qtbot):
    # with a voxel spacing the radius region3d measures is in the spacing's units (the CLI
    # said so; the panel said "voxels": 1.5 for a vessel 3 voxels in radius at 0.5 um)
    from napari_tubediff.widgets.segment import PROBABILITY

    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-tubediff", "Segment")
    zz, yy, _ = np.indices((16, 32, 24), dtype=float)
    vol = (300 + 800 * ((((zz - 7.5) * 4) ** 2 + (yy - 15.5) ** 2) <= 16)).astype(np.float32)
    viewer.add_image(vol, name="stack", scale=(2.0, 0.5, 0.5))
    w.image.value = viewer.layers["stack"]
    w.run()
    qtbot.waitUntil(lambda: PROBABILITY in viewer.layers and not w.busy, timeout=60000)
    assert "units of the layer's scale" in w.status.value and "voxels" not in w.status.value


def test_a_stack_of_two_to_four_planes_is_refused_with_what_to_do(tmp_path, capsys):
    # a 3-plane TIFF was thresholded as a volume (region3d on the liver's planes 20-22: Dice
    # 0.355 against 0.576 for the same planes of the whole volume), and channels or time
    # points would have been too; now one line and exit 2, before any work
    from napari_tubediff.core.checks import check_planes
    from napari_tubediff.models.backbones import segment_image
    from napari_tubediff.models.registry import get_backbone

    slab = np.stack([_lines(), _lines()[::-1], _lines()[:, ::-1]])
    p = tmp_path / "z3.tif"
    tifffile.imwrite(p, slab, photometric="minisblack")  # a z-stack, as ImageJ saves one
    for argv in (["segment", str(p), "--out", str(tmp_path / "o")],
                 ["refine", "--input", "image", str(p), "--out", str(tmp_path / "r")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["tubediff: error: z3.tif is a stack of 3 planes (3, 48, 48): too few to segment as a "
                       "volume (at least 5), and they may be channels or time points: segment the whole "
                       "z-stack, or save each plane (or the one channel) as its own 2D image"]
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="stack of 2 planes"):  # the panel's and a folder's path
        segment_image(get_backbone("vesselness"), slab[:2])
    check_planes((5, 48, 48))  # five planes and more are a volume, as before


def test_a_folder_of_numbered_planes_is_said_to_be_refined_plane_by_plane(tmp_path, capsys, monkeypatch):
    # a z-stack saved as z000.tif, z001.tif... was refined as separate 2D images without a
    # word; it still is (a folder is a batch of images), and the command says so and how to stack
    import napari_tubediff.batch.run as batch_run

    class Report:  # the cluster run itself is tests/test_batch.py's
        ok = True

        def summary(self):
            return "refined"

    monkeypatch.setattr(batch_run, "refine_folder", lambda *a, **k: Report())
    planes = tmp_path / "planes"
    planes.mkdir()
    for i in range(3):
        tifffile.imwrite(planes / f"z{i:03d}.tif", _lines())
    assert main(["refine", "--input", "image", str(planes), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert f"note: {planes} holds 3 grey planes of one size (48, 48) numbered like a z-stack " \
           "(z000.tif ... z002.tif): each is refined as its own 2D image" in err
    # photographs named alike (DRIVE's 01_test.tif, 02_test.tif: RGB) get no note, nor probability maps
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        tifffile.imwrite(photos / f"{i:02d}_test.tif", np.zeros((16, 16, 3), np.uint8))
    assert main(["refine", "--input", "image", str(photos), "--out", str(tmp_path / "r2")]) == 0
    assert main(["refine", str(planes), "--out", str(tmp_path / "r3")]) == 0
    assert "note:" not in capsys.readouterr().err


def test_a_tiff_whose_pages_cannot_be_found_is_one_line(tmp_path, capsys):
    # a damaged TIFF (a header pointing past the file's end) printed tifffile's log line twice,
    # then "image must be 2D (rows, cols) or 3D (planes, rows, cols), got 1D with shape (0,)"
    p = tmp_path / "damaged.tif"
    p.write_bytes(b"II*\x00" + (4_000_000_000).to_bytes(4, "little") + bytes(64))
    for argv in (["segment", str(p), "--out", str(tmp_path / "o")],
                 ["refine", "--input", "image", str(p), "--out", str(tmp_path / "r")]):
        assert main(argv) == 2
        err = [e for e in capsys.readouterr().err.splitlines() if e.strip() and "%|" not in e]  # no tqdm bar
        assert err == [f"tubediff: error: cannot read {p}: not a readable TIFF (invalid offset to first page "
                       "4000000000)"]
    with pytest.raises(ValueError, match="^cannot read .*damaged.tif: not a readable TIFF"):
        read_image(p)  # the napari reader's path too


def test_an_image_with_nan_is_refused_before_any_estimate(tmp_path, capsys):
    # a float image with NaN (a masked microscopy export) printed "All-NaN slice encountered"
    # and "no line-like structure to estimate the scale from", then "... before refining"
    a = _lines().astype(np.float32)
    a[5:10, 5:10] = np.nan
    p = tmp_path / "nan.tif"
    tifffile.imwrite(p, a)
    assert main(["segment", str(p), "--out", str(tmp_path / "o")]) == 2
    err = [e for e in capsys.readouterr().err.splitlines() if e.strip() and "%|" not in e]
    assert err == ["tubediff: error: nan.tif: the image holds 25 NaN or infinite value(s): replace them "
                   "(e.g. with np.nan_to_num) before segmenting"]


def test_a_scale_estimate_at_its_limit_is_said_not_kept_quiet():
    # a 64-pixel crop at the fovea got the limit (3) and came out empty with exit 0 and no word;
    # a texture finer than any vessel (1-pixel lines 7 apart) stands for it
    from napari_tubediff.core.scale import estimate_scale

    thin = np.full((200, 200), 100.0)
    thin[::7] = 60
    with pytest.warns(UserWarning, match="resampled by its limit, 3 .give a scale"):
        assert estimate_scale(thin) == (3.0, "vessel width")
    wide = np.full((200, 200), 100.0)
    wide[70:130] = 40  # one 60-pixel-wide band: inside the estimate's range, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        factor, how = estimate_scale(wide)
    assert how == "vessel width" and 1 / 3 < factor < 3


# ---------------------------------------------------------------- a third hostile pass (2026-11-30)

def _fundusish(shape=(64, 80)) -> np.ndarray:
    # an 8-bit RGB picture with dark lines (vessels on a fundus): what a photograph file holds
    g = (255 - _lines(shape) // 4).clip(0, 255).astype(np.uint8)
    return np.dstack([g // 2 + 100, g, g // 3])


def test_a_grey_and_alpha_png_is_a_2d_image_everywhere(tmp_path):
    # a grey + alpha ("LA") PNG read as (H, W, 2): every command took it for a stack of H planes
    # of W x 2 pixels, segmented it as a volume by region3d and wrote no PNG
    from PIL import Image

    from napari_tubediff.cli import _prob_suffixes

    g = _fundusish()[..., 1]
    p = tmp_path / "la.png"
    Image.fromarray(np.dstack([g, np.full_like(g, 255)]), "LA").save(p)
    a = read_image(p)
    assert a.shape == image_shape(p) == (64, 80, 4)
    np.testing.assert_array_equal(a[..., 1], g)
    assert _prob_suffixes(p) == (".tif", ".png")  # planned as a 2D image (a volume gets no PNG)
    # CMYK: the header said 4 channels, the reader 3
    q = tmp_path / "cmyk.jpg"
    Image.fromarray(_fundusish()).convert("CMYK").save(q)
    assert read_image(q).shape == image_shape(q) == (64, 80, 3)


def test_webp_is_read_by_every_entry_point(tmp_path):
    # a WebP photograph: `segment FILE` read it, but a folder run left it out without a word
    # and the napari reader did not claim it
    from pathlib import Path

    import yaml
    from PIL import Image

    from napari_tubediff.batch.run import list_images
    from napari_tubediff.io_hooks import READER_PATTERNS, get_reader

    p = tmp_path / "photo.webp"
    Image.fromarray(_fundusish()).save(p, lossless=True)
    assert list_images(tmp_path) == [p]
    assert get_reader(str(p)) is not None
    import napari_tubediff

    manifest = yaml.safe_load((Path(napari_tubediff.__file__).parent / "napari.yaml").read_text())
    patterns = {q for r in manifest["contributions"]["readers"] for q in r["filename_patterns"]}
    assert set(READER_PATTERNS) <= patterns


def test_an_exif_orientation_is_said_and_the_stored_pixels_are_used(tmp_path, capsys):
    # a phone photograph stored landscape with EXIF Orientation 6 (shown portrait by photo
    # viewers): tubediff uses the stored pixels, as napari shows them, so outputs and labels lie
    # on it pixel for pixel; it was silent about the turn. Now a note says so, once per read
    from PIL import Image

    from napari_tubediff.core.values import AssumptionWarning
    from napari_tubediff.io_hooks import layer_data

    p = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_fundusish()).save(p, exif=exif)
    with pytest.warns(AssumptionWarning, match=r"phone.jpg: its EXIF Orientation tag \(6\) has photo viewers "
                      r"show it rotated 90 degrees clockwise; .* as stored \(64 x 80\)"):
        assert read_image(p).shape == (64, 80, 3)
    with pytest.warns(AssumptionWarning):
        assert layer_data(p)[0].shape == (64, 80, 3)  # napari's open path: the same pixels
    assert main(["segment", str(p), "--out", str(tmp_path / "o")]) == 0
    assert read_image(tmp_path / "o/phone_prob.png").shape == (64, 80)
    err = capsys.readouterr().err
    # on a line of its own, not glued to the progress bar's ("segment:   0%| ... tubediff: note: ...")
    assert [line.split("\r")[-1][:40] for line in err.splitlines() if "EXIF" in line] == \
        ["tubediff: note: phone.jpg: its EXIF Orie"]
    Image.fromarray(_fundusish()).save(tmp_path / "plain.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "plain.jpg")  # no tag: no note
    t = tmp_path / "turned.tif"  # a TIFF's own Orientation tag (274, the one EXIF borrowed): the same
    tifffile.imwrite(t, _fundusish(), extratags=[(274, 3, 1, 8, True)])
    with pytest.warns(AssumptionWarning, match=r"turned.tif: its TIFF Orientation tag \(8\) has photo "
                      r"viewers show it rotated 90 degrees anticlockwise; .* as stored \(64 x 80\)"):
        assert read_image(t).shape == (64, 80, 3)


def test_evaluate_refuses_a_label_of_another_size_before_any_work(tmp_path, capsys, monkeypatch):
    # a label of another size was found after the image was segmented ("01: prediction (584,
    # 565) and truth (520, 500) differ in shape"), after every image before it in the folder
    from PIL import Image

    import napari_tubediff.models as models

    def forbidden(*a, **kw):
        raise AssertionError("a backbone was loaded before the refusal")

    monkeypatch.setattr(models, "get_backbone", forbidden)
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_fundusish()).save(tmp_path / "im/01.jpg", exif=exif)
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(tmp_path / "lab/01.png")
    argv = ["evaluate", "--images", str(tmp_path / "im"), "--labels", str(tmp_path / "lab"),
            "--backbone", "unet"]
    assert main(argv) == 2
    err = [e for e in capsys.readouterr().err.splitlines() if e.strip() and "%|" not in e]
    assert err == [f"tubediff: error: {tmp_path}/lab/01.png is 60 x 80 pixels but its image "
                   f"{tmp_path}/im/01.jpg is 64 x 80: give it at the image's size (nothing was computed)"]
    # a label drawn on the photograph as a phone shows it (turned by its EXIF tag): said so
    Image.fromarray(np.zeros((80, 64), np.uint8)).save(tmp_path / "lab/01.png")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is 80 x 64 pixels but its image" in err and "01.jpg has an EXIF Orientation tag (6)" in err


def test_a_rerun_says_which_of_its_own_outputs_it_replaces(tmp_path, capsys):
    # a rerun replaced tubediff's own outputs of the same input (the rule of docs/files.md),
    # even with other settings, without a word: now one note before any work names them
    p = tmp_path / "v.tif"
    tifffile.imwrite(p, (_lines() / 1700).astype(np.float32))
    out = str(tmp_path / "o")
    assert main(["refine", str(p), "--out", out, "--steps", "2"]) == 0
    assert "replacing" not in capsys.readouterr().err
    assert main(["refine", str(p), "--out", out, "--steps", "3"]) == 0
    notes = [e for e in capsys.readouterr().err.splitlines() if "note: replacing" in e]
    assert len(notes) == 1 and notes[0].startswith(
        f"tubediff: note: replacing in {out}: v_refined.tif, v_mask.png: tubediff's own, of the "
        "same input, made with other settings (steps 2 -> 3")


def test_a_finished_folder_run_again_is_all_skipped(tmp_path, capsys):
    # every output already there: no cluster is started, and distributed's as_completed then
    # looked for one: "tubediff: error: No clients found" and two more lines, exit 2
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    tifffile.imwrite(src / "p.tif", (_lines() / 1700).astype(np.float32))
    assert main(["refine", str(src / "p.tif"), "--out", str(out)]) == 0  # in this process, no cluster
    capsys.readouterr()
    assert main(["refine", str(src), "--out", str(out)]) == 0
    assert "refined 0 image(s), skipped 1 already done, 0 failed" in capsys.readouterr().out


def test_an_animated_file_says_only_its_first_frame_is_read(tmp_path):
    # an animated GIF or WebP (a time lapse, a z-sweep exported for a slide) was read as its first
    # frame without a word; a multi-page TIFF is read whole (a stack)
    from PIL import Image

    from napari_tubediff.core.values import AssumptionWarning

    frames = [Image.fromarray(np.roll(_fundusish(), k, axis=1)) for k in range(3)]
    for name in ("anim.gif", "anim.webp"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with pytest.warns(AssumptionWarning, match=f"{name} holds 3 frames: only the first is read"):
            assert read_image(tmp_path / name).shape[:2] == (64, 80)
    frames[0].save(tmp_path / "still.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "still.gif")


def test_a_folder_runs_notes_are_the_commands_one_line(tmp_path, capsys):
    # on a folder's workers a note came as Python prints warnings: "/…/data/io.py:293:
    # AssumptionWarning: …" and then the source line
    from PIL import Image

    from napari_tubediff.batch.run import BatchOptions, _process_or_reason

    m = np.zeros((32, 32), np.uint8)
    m[15:17, 2:-2] = 1
    Image.fromarray(m).save(tmp_path / "m.png")
    opts = BatchOptions(input="prob", steps=1)
    assert _process_or_reason(str(tmp_path / "m.png"), str(tmp_path / "o"), opts) is None
    err = capsys.readouterr().err.splitlines()
    assert err == ["tubediff: note: m.png: values 0 and 1 only: read as a binary mask (1 = vessel)"]


def test_a_16_bit_colour_png_is_read_at_its_full_depth(tmp_path, monkeypatch):
    # Pillow keeps the top 8 bits of a 16-bit RGB PNG: a camera's 12 bits in 16 (0 to 4095) came
    # out as 0 to 15, without a word (DRIVE 01 that way: Dice 0.650 against 0.827)
    import sys

    cv2 = pytest.importorskip("cv2")
    from napari_tubediff.core.values import AssumptionWarning

    rgb = _fundusish().astype(np.uint16) * 16  # 12 bits
    p = tmp_path / "cam.png"
    cv2.imwrite(str(p), rgb[..., ::-1])  # OpenCV writes BGR, 16 bits a channel
    a = read_image(p)
    assert a.dtype == np.uint16 and a.shape == image_shape(p) == (64, 80, 3)
    np.testing.assert_array_equal(a, rgb)
    q = tmp_path / "cam_alpha.png"
    cv2.imwrite(str(q), np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 65535, np.uint16)]))
    np.testing.assert_array_equal(read_image(q)[..., :3], rgb)
    monkeypatch.setitem(sys.modules, "cv2", None)  # without OpenCV: 8 bits, and a note says so
    with pytest.warns(AssumptionWarning, match=r"cam.png stores 16 bits per colour channel, of which only "
                      r"the top 8 are read here \(values 0 to 15 of 255\): install opencv-python-headless"):
        assert read_image(p).max() <= 15
