"""Vessel measurements (core.measure) and `tubediff measure`: known answers and skan called directly."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skan import Skeleton, summarize
from skimage.morphology import skeletonize

from napari_tubediff.cli import main
from napari_tubediff.core import measure as measure_mod
from napari_tubediff.core.measure import measure_vessels
from napari_tubediff.data.io import write_image

DRIVE_MANUAL = Path("/work/shared/data/DRIVE/test/1st_manual/01_manual1.gif")


def _capsule(shape, a, b, r):
    """Pixels within ``r`` of the segment a-b (a straight tube with round ends)."""
    grid = np.indices(shape).reshape(len(shape), -1).T.astype(float)
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip((grid - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    d = np.linalg.norm(grid - (a + t[:, None] * (b - a)), axis=1)
    return (d <= r).reshape(shape)


def test_doctests():
    assert doctest.testmod(measure_mod, optionflags=doctest.ELLIPSIS).failed == 0


def test_straight_tube_of_known_length_and_width_measures_within_2_percent():
    # axis 200 px long, radius 4: 9 px across (the width a pixel count gives)
    m = _capsule((41, 260), (20, 30), (20, 230), 4)
    r = measure_vessels(m)
    t = r.branches
    assert len(t) == 1 and r.n_end_points == 2 and r.n_branch_points == 0
    assert t["length"][0] == pytest.approx(200, rel=0.02)
    assert t["mean_diameter"][0] == pytest.approx(9, rel=0.02)
    assert t["max_diameter"][0] == pytest.approx(9, rel=0.02)
    assert t["tortuosity"][0] == pytest.approx(1, rel=0.02)
    # with a pixel spacing of 0.5 um, everything in um
    rs = measure_vessels(m, spacing=0.5).branches
    assert rs["length"][0] == pytest.approx(100, rel=0.02)
    assert rs["mean_diameter"][0] == pytest.approx(4.5, rel=0.02)


@pytest.mark.parametrize("degrees", [10, 22.5, 45])
def test_an_oblique_tube_measures_within_2_percent_where_pixel_steps_do_not(degrees):
    a = np.deg2rad(degrees)
    m = _capsule((220, 220), (20, 20), (20 + 180 * np.sin(a), 20 + 180 * np.cos(a)), 4)
    t = measure_vessels(m).branches
    assert len(t) == 1
    assert t["length"][0] == pytest.approx(180, rel=0.02)
    assert t["tortuosity"][0] == pytest.approx(1, rel=0.02)
    if degrees == 22.5:  # skan's sum of 1 and sqrt(2) steps: 8% long here
        assert t["skeleton_length"][0] > 1.07 * 180


def test_a_diagonal_tube_and_a_3d_tube_with_anisotropic_voxels():
    m = _capsule((200, 200), (30, 30), (170, 150), 5)
    t = measure_vessels(m).branches
    assert len(t) == 1
    assert t["length"][0] == pytest.approx(np.hypot(140, 120), rel=0.02)
    assert t["mean_diameter"][0] == pytest.approx(10, abs=1.5)  # about one pixel, as the module says
    # 3D, z voxels twice as deep: a tube along x with radius 6 um in y and z
    zz, yy, xx = np.mgrid[:12, :25, :130]
    v = ((2 * (zz - 6.0)) ** 2 + (yy - 12.0) ** 2 <= 36) & (xx >= 10) & (xx < 120)
    tv = measure_vessels(v, spacing=(2.0, 1.0, 1.0)).branches
    assert len(tv) == 1
    assert tv["length"][0] == pytest.approx(110, rel=0.1)  # the flat ends shorten the skeleton
    assert tv["mean_diameter"][0] == pytest.approx(12, abs=1.5)  # about one voxel


def test_an_empty_mask_gives_an_empty_table():
    r = measure_vessels(np.zeros((10, 10), bool))
    assert len(r.branches) == 0 and r.summary()["branches"] == 0 and r.total_length == 0
    assert list(r.branches.columns[:9]) == list(measure_mod.COLUMNS)


def test_tortuosity_of_a_half_circle_is_pi_over_2_and_a_y_has_one_junction():
    yy, xx = np.mgrid[:140, :240]
    ring = np.abs(np.hypot(yy - 20, xx - 120) - 90) <= 2
    arc = ring & (yy >= 20)
    t = measure_vessels(arc).branches
    assert len(t) == 1
    assert t["tortuosity"][0] == pytest.approx(np.pi / 2, rel=0.03)
    assert t["length"][0] == pytest.approx(np.pi * 90, rel=0.03)
    y = _capsule((120, 120), (10, 60), (60, 60), 2) | _capsule((120, 120), (60, 60), (110, 20), 2) \
        | _capsule((120, 120), (60, 60), (110, 100), 2)
    r = measure_vessels(y)
    assert (r.n_branch_points, r.n_end_points, len(r.branches)) == (1, 3, 3)
    assert sorted(r.branches["branch_type"]) == [1, 1, 1]


def _skan_table(mask, spacing=1.0):
    """skan called directly: the same skeleton, the distance transform as pixel values."""
    from scipy import ndimage as ndi

    m = mask > 0
    dt = ndi.distance_transform_edt(m, sampling=spacing)
    sk = Skeleton(np.where(skeletonize(m), dt, 0.0), spacing=spacing)
    return summarize(sk, separator="_")


def _check_cli_table_equals_skan(tmp_path, src, mask, capsys, spacing=None):
    out = tmp_path / "table.csv"
    argv = ["measure", str(src), "--out", str(out)] + (["--spacing", str(spacing)] if spacing else [])
    assert main(argv) == 0
    assert "branches" in capsys.readouterr().out
    got = pd.read_csv(out)
    ref = _skan_table(mask, spacing or 1.0)
    assert len(got) == len(ref) > 0
    np.testing.assert_allclose(got["skeleton_length"], ref["branch_distance"], rtol=1e-9)
    np.testing.assert_allclose(got["chord"], ref["euclidean_distance"], rtol=1e-9)
    np.testing.assert_allclose(got["mean_diameter"], 2 * ref["mean_pixel_value"] - (spacing or 1.0),
                               rtol=1e-9)
    for i in range(2):
        np.testing.assert_array_equal(got[f"src_pixel_{i}"], ref[f"image_coord_src_{i}"])
        np.testing.assert_array_equal(got[f"dst_pixel_{i}"], ref[f"image_coord_dst_{i}"])
    np.testing.assert_array_equal(got["branch_type"], ref["branch_type"])
    return out


def test_cli_measure_gives_skans_branch_table_on_a_synthetic_mask(tmp_path, capsys):
    from napari_tubediff.data.synthetic import synthetic_vessels

    truth = synthetic_vessels((160, 160), seed=3, n_breaks=0).truth
    src = tmp_path / "mask.png"
    write_image(src, truth.astype(np.uint8) * 255)
    out = _check_cli_table_equals_skan(tmp_path, src, truth, capsys, spacing=0.5)
    # an existing table is the user's: refused (exit 2, one line) unless --overwrite
    before = out.read_bytes()
    assert main(["measure", str(tmp_path / "mask.png"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and err.count("\n") == 1
    assert out.read_bytes() == before
    assert main(["measure", str(tmp_path / "mask.png"), "--out", str(out), "--overwrite"]) == 0


def test_cli_measure_refuses_bad_input(tmp_path, capsys):
    assert main(["measure", str(tmp_path / "none.png"), "--out", str(tmp_path / "t.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 200
    write_image(tmp_path / "rgb.png", rgb)
    assert main(["measure", str(tmp_path / "rgb.png"), "--out", str(tmp_path / "t.csv")]) == 2
    assert "colour image" in capsys.readouterr().err
    write_image(tmp_path / "m.png", np.eye(20, dtype=np.uint8) * 255)
    assert main(["measure", str(tmp_path / "m.png"), "--out", str(tmp_path / "m.png"), "--overwrite"]) == 2
    assert "input" in capsys.readouterr().err
    assert main(["measure", str(tmp_path / "m.png"), "--out", str(tmp_path / "t.csv"),
                 "--spacing", "1", "2", "3"]) == 2
    assert "--spacing" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.skipif(not DRIVE_MANUAL.exists(), reason="DRIVE test set not present")
def test_cli_measure_on_a_drive_1st_observer_mask_equals_skan(tmp_path, capsys):
    from napari_tubediff.data.io import read_image

    mask = read_image(DRIVE_MANUAL) > 127  # the GIF's grey values 0 and 255
    _check_cli_table_equals_skan(tmp_path, DRIVE_MANUAL, mask, capsys)


def test_cli_measure_on_a_3d_tiff_with_voxel_spacing(tmp_path, capsys):
    v = np.zeros((12, 25, 130), np.uint8)
    zz, yy = np.mgrid[:12, :25]
    v[((2 * (zz - 6.0)) ** 2 + (yy - 12.0) ** 2 <= 36)[..., None] & (np.arange(130) >= 10)
      & (np.arange(130) < 120)] = 255
    write_image(tmp_path / "vol.tif", v)
    out = tmp_path / "vol.csv"
    assert main(["measure", str(tmp_path / "vol.tif"), "--out", str(out), "--spacing", "2", "1", "1"]) == 0
    t = pd.read_csv(out)
    assert len(t) == 1 and {"src_coord_2", "dst_pixel_2"} <= set(t.columns)
    np.testing.assert_allclose(t["length"], measure_vessels(v > 0, spacing=(2, 1, 1)).branches["length"])
    assert "1 branches" in capsys.readouterr().out
