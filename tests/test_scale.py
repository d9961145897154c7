"""Scale and field of view: the automatic FOV, the scale estimate, resampling to the working
scale and back, and one core path (`segment_image`) for the CLI, the panel and the evaluation."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_tubediff.core.fov import fov_diameter, fov_mask, is_fundus, resolve_fov
from napari_tubediff.core.scale import (
    estimate_scale,
    from_working,
    parse_scale,
    to_working,
    to_working_mask,
    vessel_sigma,
)
from napari_tubediff.data.fundus import synthetic_fundus
from napari_tubediff.data.io import read_image
from napari_tubediff.models.backbones import Segmentation, UNetBackbone, segment_image

DATA = Path(os.environ.get("TUBEDIFF_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
DRIVE = DATA / "DRIVE"
needs_drive = pytest.mark.skipif(not (DRIVE / "test/images").is_dir(),
                                 reason="the DRIVE data folder is not present")


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


# --- the field of view -----------------------------------------------------------------
def test_fov_of_a_synthetic_fundus_is_its_disc_and_other_images_get_none():
    f = synthetic_fundus((160, 200), seed=2)
    m = fov_mask(f.image)
    assert _iou(m, f.fov) > 0.99
    assert fov_diameter(m) == pytest.approx(fov_diameter(f.fov), abs=2)
    # grey, a grey image stored as RGB, a colour image with bright corners, noise: no FOV
    rng = np.random.default_rng(0)
    grey = f.image[..., 1]
    assert fov_mask(grey) is None and not is_fundus(grey)
    assert fov_mask(np.repeat(grey[..., None], 3, -1)) is None
    bright = f.image.copy()
    bright[~f.fov] = (200, 120, 60)
    assert fov_mask(bright) is None
    assert fov_mask(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)) is None
    assert fov_mask(np.zeros((32, 32, 3), np.uint8)) is None


def test_resolve_fov_choices_and_bad_masks():
    f = synthetic_fundus((96, 96), seed=0)
    assert resolve_fov(f.image, "none") is None and resolve_fov(f.image, None) is None
    assert _iou(resolve_fov(f.image, "auto"), f.fov) > 0.99
    given = np.zeros((96, 96), np.uint8)
    given[10:50, 10:50] = 255
    np.testing.assert_array_equal(resolve_fov(f.image, given), given > 0)
    with pytest.raises(ValueError, match="does not match"):
        resolve_fov(f.image, np.ones((10, 10)))
    with pytest.raises(ValueError, match="empty"):
        resolve_fov(f.image, np.zeros((96, 96)))
    with pytest.raises(ValueError, match="'auto', 'none'"):
        resolve_fov(f.image, "round")


@needs_drive
def test_automatic_fov_matches_drive_masks():
    from napari_tubediff.data.drive import read_drive

    for it in read_drive(DRIVE, "test")[:3]:
        m, ref = fov_mask(it.image()), it.fov()
        assert _iou(m, ref) > 0.97
        assert fov_diameter(m) == pytest.approx(fov_diameter(ref), abs=6)


# --- scale --------------------------------------------------------------------------------
def test_parse_scale():
    assert parse_scale("auto") == "auto" and parse_scale(" AUTO ") == "auto"
    assert parse_scale("1.5") == 1.5
    for bad in ("big", "0", "-1", "nan", "100"):
        with pytest.raises(ValueError, match="scale must be"):
            parse_scale(bad)


def test_resampling_there_and_back_keeps_sizes_and_values():
    a = np.zeros((50, 70), np.float32)
    a[20:30, 10:60] = 1.0
    for f in (0.5, 1.5, 2.0):
        w = to_working(a, f)
        assert w.shape == (round(50 * f), round(70 * f))
        back = from_working(w, a.shape)
        assert back.shape == a.shape and abs(float(back.sum()) - float(a.sum())) < 0.05 * a.sum()
    assert to_working(a, 1.0) is a
    assert to_working_mask(a > 0, 2.0).sum() == pytest.approx(4 * (a > 0).sum(), rel=0.05)
    # channels first on the way back (features), channels last on the way in (RGB)
    assert from_working(np.zeros((3, 10, 10)), (20, 30)).shape == (3, 20, 30)
    assert to_working(np.zeros((10, 10, 3), np.uint8), 2).shape == (20, 20, 3)


def test_scale_from_the_fov_diameter_of_a_synthetic_fundus():
    f = synthetic_fundus((128, 128), seed=1)
    d = fov_diameter(f.fov)
    for k in (0.5, 2.0):
        img = to_working(f.image, k).astype(np.uint8)
        factor, how = estimate_scale(img, working_fov=d)
        assert how == "fov" and factor == pytest.approx(1 / k, rel=0.05)


def test_vessel_sigma_follows_a_resampling():
    # a coarse estimate (docs/models.md): 0.61 and 2.54 for 0.5 and 2 here, so within 30 %
    yy, xx = np.mgrid[:200, :200]
    lines = sum(np.exp(-((xx - c) / 5.0) ** 2) for c in (40, 100, 160))
    lines = lines + 0.3 * np.exp(-((yy - 100) / 5.0) ** 2)
    s1 = vessel_sigma(lines)
    ratios = [vessel_sigma(to_working(lines, k)) / s1 for k in (0.5, 2.0)]
    assert ratios[0] == pytest.approx(0.5, rel=0.3) and ratios[1] == pytest.approx(2.0, rel=0.3)
    # no FOV in a grey image: the width decides
    factor, how = estimate_scale(to_working(lines, 2.0), ref_sigma=s1)
    assert how == "vessel width" and factor == pytest.approx(max(1 / ratios[1], 1 / 3))


@needs_drive
@pytest.mark.parametrize("k", [0.5, 0.75, 1.5, 2.0, 3.0])
def test_scale_estimate_recovers_drive_resampling(k):
    from napari_tubediff.data.drive import read_drive

    it = read_drive(DRIVE, "test")[4]
    img = it.image()
    native, how = estimate_scale(img)
    resampled, _ = estimate_scale(np.clip(to_working(img, k), 0, 255).astype(np.uint8))
    assert how == "fov"
    assert native / resampled == pytest.approx(k, rel=0.1)


# --- segment_image: one path ----------------------------------------------------------------
class _Recorder:
    """A backbone that records what it was given and returns the standardised green channel."""

    working_fov = 50.0

    def __init__(self):
        self.seen = []

    def predict_with_features(self, image, fov=None):
        self.seen.append((np.shape(image), None if fov is None else fov.copy()))
        g = np.asarray(image, np.float32)[..., 1] / 255.0
        return g, np.stack([g, g])


def test_segment_image_resamples_to_the_working_scale_and_back():
    f = synthetic_fundus((120, 120), seed=3)
    bb = _Recorder()
    seg = segment_image(bb, f.image)
    d = fov_diameter(fov_mask(f.image))
    assert isinstance(seg, Segmentation) and seg.how == "fov"
    assert seg.factor == pytest.approx(50.0 / d)
    shape, fov = bb.seen[-1]
    assert shape[:2] == (round(120 * seg.factor),) * 2 and fov.shape == shape[:2]
    assert seg.prob.shape == (120, 120) and seg.features.shape == (2, *shape[:2])
    assert seg.prob[~seg.fov].max() == 0 and seg.prob[seg.fov].max() > 0
    # a given scale and no FOV
    seg = segment_image(bb, f.image, scale=2.0, fov="none")
    assert seg.how == "given" and seg.fov is None and bb.seen[-1][0][:2] == (240, 240)
    # no FOV: nothing cut; the backbone's output at 2x, brought back
    # (by cubic splines: NATIVE_ORDER, chosen on the fundus training images)
    expected = np.clip(from_working(to_working(f.image, 2.0)[..., 1] / 255.0, (120, 120), order=3), 0, 1)
    np.testing.assert_allclose(seg.prob, expected, atol=1e-6)
    # within 2 % of the working scale the image is used as it is
    seg = segment_image(bb, f.image, scale=1.01)
    assert seg.factor == 1.0 and bb.seen[-1][0][:2] == (120, 120)


def test_backbones_without_a_working_scale_and_volumes_stay_native():
    from napari_tubediff.models import get_backbone

    f = synthetic_fundus((64, 64), seed=0)
    seg = segment_image(get_backbone("vesselness"), f.image)
    assert seg.factor == 1.0 and seg.how == "native" and seg.fov is not None
    vol = np.random.default_rng(0).random((8, 16, 16)).astype(np.float32)
    seg = segment_image(get_backbone("vesselness"), vol)
    assert seg.prob.shape == vol.shape and seg.factor == 1.0 and seg.fov is None


def test_learned_refiner_runs_at_its_features_scale():
    from napari_tubediff.models.refiner import LearnedRefiner, vessel_directions

    r = LearnedRefiner(device="cpu")
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((r.config["feature_channels"], 40, 50)).astype(np.float32)
    work = np.zeros((40, 50), np.float32)
    work[18:22, 5:45] = 0.8
    prob = from_working(work, (80, 100))
    out = r.refine(prob, feats, steps=3)
    ref = from_working(r.refine(from_working(prob, (40, 50), smooth=False), feats, steps=3), (80, 100))
    assert out.shape == (80, 100)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    v, source = vessel_directions(prob, feats, refiner=r)
    assert source == "learned" and v.shape == (2, 80, 100)
    np.testing.assert_allclose(np.linalg.norm(v, axis=0)[np.linalg.norm(v, axis=0) > 0], 1.0, atol=1e-6)


def _drive_layout(root: Path, f) -> Path:
    for sub in ("images", "1st_manual", "mask"):
        (root / "test" / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(f.image).save(root / "test/images/01_test.tif")
    Image.fromarray((f.truth * 255).astype(np.uint8)).save(root / "test/1st_manual/01_manual1.gif")
    Image.fromarray((f.fov * 255).astype(np.uint8)).save(root / "test/mask/01_test_mask.gif")
    return root / "test/images/01_test.tif"


@pytest.mark.slow
def test_cli_segment_panel_and_evaluation_give_the_same_probability(tmp_path):
    """`tubediff segment IMAGE --out DIR` with no other option, the Segment panel's job and
    `tubediff evaluate` all go through `segment_image` with the shipped U-Net."""
    from napari_tubediff.cli import main
    from napari_tubediff.widgets.segment import _segment_job

    f = synthetic_fundus((112, 112), seed=4)
    # the evaluation reads the folder's FOV mask: here the automatic one, so all three agree
    f.fov = fov_mask(f.image)
    path = _drive_layout(tmp_path / "DRIVE", f)
    assert main(["segment", str(path), "--out", str(tmp_path / "seg")]) == 0
    cli = read_image(tmp_path / "seg/01_test_prob.tif")
    panel, _ = _segment_job("unet", read_image(path))
    core = segment_image(UNetBackbone(device="cpu"), read_image(path))
    np.testing.assert_array_equal(cli, panel.prob)
    np.testing.assert_array_equal(cli, core.prob)
    assert core.how == "fov" and core.factor > 5
    assert main(["evaluate", "--data", str(tmp_path / "DRIVE"), "--backbone", "unet", "--methods", "raw",
                 "--fov", "--save-pred", str(tmp_path / "pred")]) == 0
    raw = read_image(tmp_path / "pred/raw/01_test.png") > 127
    np.testing.assert_array_equal(raw, cli >= 0.5)


def test_cli_scale_and_fov_options(tmp_path, capsys):
    from napari_tubediff.cli import main

    f = synthetic_fundus((96, 96), seed=5)
    Image.fromarray(f.image).save(tmp_path / "eye.png")
    out = tmp_path / "o"
    assert main(["segment", str(tmp_path / "eye.png"), "--out", str(out), "--backbone", "vesselness",
                 "--scale", "1", "--fov", "none"]) == 0
    assert "scale 1 (given)" in capsys.readouterr().err
    assert read_image(out / "eye_prob.tif").shape == (96, 96)
    assert main(["segment", str(tmp_path / "eye.png"), "--out", str(out), "--scale", "huge"]) == 2
    assert "scale must be" in capsys.readouterr().err
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "small.png")
    assert main(["segment", str(tmp_path / "eye.png"), "--out", str(out),
                 "--fov", str(tmp_path / "small.png")]) == 2
    assert "does not match" in capsys.readouterr().err
