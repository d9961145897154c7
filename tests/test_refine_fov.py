"""The refinement's settings for a fundus photograph's size (`core.refine.settings_for_fov`): in the
core, in `tubediff refine` (images: the FOV found; probability maps: --fov-diameter), in `tubediff
evaluate`'s refine row, and in the Diffusion panel (the FOV the Segment panel recorded)."""

import numpy as np
import pytest
from PIL import Image

from napari_tubediff.batch import run as batch_run
from napari_tubediff.cli import main
from napari_tubediff.core.refine import (
    LARGE_FOV,
    REFINE_FOV,
    RefineSettings,
    refine,
    settings_for_fov,
)
from napari_tubediff.data.io import read_image, write_image

DEFAULT = RefineSettings(method="gated+dti")


def broken_vessel():
    """A 9-pixel wide vessel (rows 26-34) whose stretch x 1190-1209 the backbone saw faintly
    (0.4: above DTI's low, 0.35, below 0.5), and a FOV band 2400 pixels across (rows 5-54: it
    does not touch the top or bottom, so its diameter is its length, `core.fov.fov_diameter`),
    HRF-like (3262) rather than DRIVE-like (538)."""
    u = np.zeros((60, 2400), np.float32)
    u[26:35, 100:1190] = u[26:35, 1210:2300] = 0.9
    u[26:35, 1190:1210] = 0.4
    fov = np.zeros(u.shape, bool)
    fov[5:55] = True
    return u, fov


def bridge_rows(mask):
    """The rows the mask holds in the middle of the faint stretch."""
    return np.flatnonzero(np.asarray(mask)[:, 1200]).tolist()


def test_settings_change_only_above_four_times_drive_and_stare():
    assert REFINE_FOV == pytest.approx((538 + 650) / 2)
    limit = LARGE_FOV * REFINE_FOV  # 2376 pixels
    assert limit == pytest.approx(2376)
    # DRIVE, STARE, a mid-size camera and the limit itself: the settings as chosen on DRIVE and STARE
    for d in (538, 650, 1631, limit):
        assert settings_for_fov(DEFAULT, d) is DEFAULT
    for d in (limit + 1, 3262):  # HRF: 3262
        assert settings_for_fov(DEFAULT, d) == RefineSettings(method="gated+dti", line_width=2)
    wide = RefineSettings(method="gated+dti", line_width=3)
    assert settings_for_fov(wide, 3262).line_width == 3  # a wider band asked for stays


def test_masks_without_a_disc_leave_the_settings_alone():
    _, fov = broken_vessel()
    assert settings_for_fov(DEFAULT, fov).line_width == 2  # a FOV 2400 pixels across
    assert settings_for_fov(DEFAULT, fov[:, :500]).line_width == 1  # 500 pixels across
    for none in (None, np.ones((60, 2400), bool), np.ones((2, 60, 2400), bool)):  # no disc; a volume
        assert settings_for_fov(DEFAULT, none) is DEFAULT


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), float("inf")])
def test_bad_diameter_is_refused(bad):
    with pytest.raises(ValueError, match="positive number of pixels"):
        settings_for_fov(DEFAULT, bad)


def test_large_fov_keeps_a_bridge_two_pixels_either_side_of_its_centre_line():
    u, _ = broken_vessel()
    # native settings: DTI's addition across the faint stretch is its centre line (row 30) +- 1
    assert bridge_rows(refine(u, settings=DEFAULT) >= 0.5) == [29, 30, 31]
    # as in a photograph 3262 pixels across: +- 2 (the vessel is 9 wide; the truth's centre line
    # is covered even where the backbone's centre line is a pixel or two beside it)
    assert bridge_rows(refine(u, settings=settings_for_fov(DEFAULT, 3262)) >= 0.5) == [28, 29, 30, 31, 32]


def test_refine_prob_with_fov_diameter(tmp_path, capsys):
    u, _ = broken_vessel()
    write_image(tmp_path / "a_prob.tif", u)
    assert main(["refine", str(tmp_path / "a_prob.tif"), "--out", str(tmp_path / "native")]) == 0
    assert main(["refine", str(tmp_path / "a_prob.tif"), "--out", str(tmp_path / "hrf"),
                 "--fov-diameter", "3262"]) == 0
    assert bridge_rows(read_image(tmp_path / "native/a_mask.png") > 0) == [29, 30, 31]
    assert bridge_rows(read_image(tmp_path / "hrf/a_mask.png") > 0) == [28, 29, 30, 31, 32]
    capsys.readouterr()
    for bad in (["--fov-diameter", "0"], ["--fov-diameter", "3262", "--input", "image"]):
        assert main(["refine", str(tmp_path / "a_prob.tif"), "--out", str(tmp_path / "x"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--fov-diameter" in err[0]


def test_refine_image_takes_the_settings_of_the_fov_it_found(monkeypatch):
    u, fov = broken_vessel()
    for found, rows in ((fov, [28, 29, 30, 31, 32]), (None, [29, 30, 31])):
        # the segmentation's result stands in for the U-Net's: its probability and the FOV it found
        monkeypatch.setattr(batch_run, "_segment", lambda img, opts, spacing=None, f=found: (u, None, f))
        out = batch_run._refine_image(np.zeros((60, 2400, 3), np.uint8), "a.png",
                                      batch_run.BatchOptions(input="image", steps=None, method=None))
        assert bridge_rows(out >= 0.5) == rows


def test_evaluate_refine_row_is_tubediff_refine_at_the_fov_diameter(tmp_path):
    """With a FOV mask, `tubediff evaluate`'s refine row scores what `tubediff refine
    --fov-diameter` (that FOV's diameter) writes, cut to the FOV."""
    u, fov = broken_vessel()
    root = tmp_path / "set"
    for d in ("images", "labels", "fov", "pred"):
        (root / d).mkdir(parents=True)
    truth = np.zeros(u.shape, bool)
    truth[26:35, 100:860] = True
    Image.fromarray((255 - 150 * truth).astype(np.uint8)).save(root / "images/a.png")
    Image.fromarray(truth.astype(np.uint8) * 255).save(root / "labels/a.png")
    Image.fromarray(fov.astype(np.uint8) * 255).save(root / "fov/a.png")
    write_image(root / "pred/a.tif", u)
    assert main(["evaluate", "--images", str(root / "images"), "--labels", str(root / "labels"),
                 "--fov", str(root / "fov"), "--pred", str(root / "pred"), "--methods", "refine",
                 "--save-pred", str(tmp_path / "ev")]) == 0
    assert main(["refine", str(root / "pred/a.tif"), "--out", str(tmp_path / "rf"),
                 "--fov-diameter", "2400"]) == 0
    scored = read_image(tmp_path / "ev/refine/a.png") > 0
    written = (read_image(tmp_path / "rf/a_mask.png") > 0) & fov
    assert np.array_equal(scored, written) and bridge_rows(scored) == [28, 29, 30, 31, 32]


def test_diffusion_panel_refines_at_the_fov_the_segment_panel_recorded(viewer_and_widget):
    pytest.importorskip("napari")
    viewer, w = viewer_and_widget
    u, fov = broken_vessel()
    # as the Segment panel leaves a probability layer: the FOV it found in the metadata
    segmented = viewer.add_image(u, name="segmented", metadata={"fov": fov})
    plain = viewer.add_image(u, name="plain")
    w.layer.value = segmented
    assert w._settings().line_width == 2
    w.layer.value = plain
    assert w._settings().line_width == 1
