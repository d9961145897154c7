"""DRIVE reader, image IO, the classical backbone and `tubediff evaluate`."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_tubediff.cli import main
from napari_tubediff.data.drive import read_drive
from napari_tubediff.data.io import read_image, write_image
from napari_tubediff.data.synthetic import synthetic_vessels
from napari_tubediff.models import available_backbones, get_backbone

DRIVE = Path(os.environ.get("TUBEDIFF_DRIVE", Path(__file__).resolve().parents[2] / "shared/data/DRIVE"))


def independent_dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _palette_gif(mask: np.ndarray, path: Path):
    # like DRIVE's 2nd_manual: a palette image whose raw indices are 0 and 1
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette([3, 3, 3, 253, 253, 253] + [0, 0, 0] * 254)
    im.save(path)


@pytest.fixture
def tiny_drive(tmp_path):
    """A DRIVE-layout folder with 3 synthetic test images, both observers and FOV masks."""
    root = tmp_path / "DRIVE"
    for sub in ("images", "1st_manual", "2nd_manual", "mask"):
        (root / "test" / sub).mkdir(parents=True)
    truths, seconds = {}, {}
    for k in (1, 2, 3):
        s = synthetic_vessels((96, 80), seed=k, n_breaks=0, width=(1.0, 2.5))
        rgb = np.stack([np.full(s.truth.shape, 200), 200 - 120 * s.truth, np.full(s.truth.shape, 60)], -1)
        name = f"{k:02d}"
        Image.fromarray(rgb.astype(np.uint8)).save(root / f"test/images/{name}_test.tif")
        Image.fromarray((s.truth * 255).astype(np.uint8), mode="L").save(
            root / f"test/1st_manual/{name}_manual1.gif")
        second = s.truth.copy()
        second[:, :10] = False  # the second observer missed a strip
        _palette_gif(second, root / f"test/2nd_manual/{name}_manual2.gif")
        fov = np.zeros_like(s.truth)
        fov[4:-4, 4:-4] = True
        Image.fromarray((fov * 255).astype(np.uint8), mode="L").save(root / f"test/mask/{name}_test_mask.gif")
        truths[f"{name}_test"] = s.truth
        seconds[f"{name}_test"] = second
    return root, truths, seconds


def test_reader_finds_every_file_and_handles_the_palette_gif(tiny_drive):
    root, truths, seconds = tiny_drive
    items = read_drive(root, "test")
    assert [i.name for i in items] == ["01_test", "02_test", "03_test"]
    it = items[0]
    assert it.image().shape == (96, 80, 3)
    np.testing.assert_array_equal(it.truth(), truths["01_test"])
    np.testing.assert_array_equal(it.truth2(), seconds["01_test"])  # raw indices would give nothing
    assert np.asarray(Image.open(it.manual2_path)).max() == 1
    assert it.fov().sum() == 88 * 72
    with pytest.raises(ValueError, match="no images"):
        read_drive(root, "training")
    with pytest.raises(ValueError, match="split"):
        read_drive(root, "validation")


def test_io_round_trips_and_is_atomic(tmp_path):
    a = np.random.default_rng(0).random((10, 12)).astype(np.float32)
    write_image(tmp_path / "p.tif", a)
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), a)
    m = a > 0.5
    for ext in (".png", ".gif"):
        write_image(tmp_path / f"m{ext}", m)
        assert (read_image(tmp_path / f"m{ext}") > 127).tolist() == m.tolist()
    write_image(tmp_path / "j.jpg", a)
    assert read_image(tmp_path / "j.jpg").shape == (10, 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jpg", "m.gif", "m.png", "p.tif"]  # no temp files
    with pytest.raises(ValueError, match="cannot write"):
        write_image(tmp_path / "x.xyz", a)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read"):
        read_image(tmp_path / "bad.png")


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    write_image(target, np.ones((4, 4), bool))
    before = target.read_bytes()
    import imageio.v3 as iio

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(iio, "imwrite", boom)
    with pytest.raises(OSError):
        write_image(target, np.zeros((4, 4), bool))
    assert target.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_vesselness_backbone_finds_dark_vessels_in_the_green_channel(tiny_drive):
    root, truths, _ = tiny_drive
    it = read_drive(root, "test")[0]
    p = get_backbone("vesselness").predict(it.image(), it.fov())
    assert p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1
    assert not p[~it.fov()].any()
    assert independent_dice(p >= 0.5, truths["01_test"] & it.fov()) > 0.6
    assert "vesselness" in available_backbones()
    with pytest.raises(ValueError, match="unknown backbone"):
        get_backbone("resnet-9000")


def test_evaluate_cli_on_a_tiny_drive_folder(tiny_drive, tmp_path, capsys):
    root, truths, seconds = tiny_drive
    out = tmp_path / "r.json"
    saved = tmp_path / "saved"
    assert main(["evaluate", "--data", str(root), "--split", "test", "--backbone", "vesselness",
                 "--methods", "raw,dti,refine", "--steps", "5", "--json", str(out),
                 "--save-pred", str(saved)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"raw", "dti", "refine", "human"}
    for m in res.values():
        assert set(m["images"]) == {"01_test", "02_test", "03_test"}
        assert {"dice", "cldice", "vca"} <= set(m["mean"])
    # the human row is the 2nd observer against the 1st, computed independently here
    expected = np.mean([independent_dice(seconds[k], truths[k]) for k in truths])
    assert res["human"]["mean"]["dice"] == pytest.approx(expected)
    # every scored mask was written, named after the image, and is the mask that was scored
    for method in ("raw", "dti", "refine"):
        for k in truths:
            mask = read_image(saved / method / f"{k}.png") > 127
            assert independent_dice(mask, truths[k]) == pytest.approx(res[method]["images"][k]["dice"])
    table = capsys.readouterr().out
    assert "human (2nd vs 1st observer)" in table and "±" in table


def test_evaluate_with_predictions_from_a_folder(tiny_drive, tmp_path):
    root, truths, _ = tiny_drive
    pred = tmp_path / "pred"
    for k, t in truths.items():
        write_image(pred / f"{k}.png", t)  # perfect predictions
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(root), "--pred", str(pred), "--methods", "raw",
                 "--fov", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["raw"]["mean"]["dice"] == 1.0 and res["raw"]["mean"]["vca"] == 1.0
    assert res["raw"]["std"]["dice"] == 0.0
    assert "vca_fov" in res["raw"]["mean"]


def test_evaluate_errors_are_readable(tiny_drive, tmp_path, capsys):
    root, _, _ = tiny_drive
    assert main(["evaluate", "--data", str(root)]) == 2
    assert "either --backbone" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(root), "--pred", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--data", str(root), "--pred", str(tmp_path / "empty")]) == 2
    assert "no prediction for 01_test" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(root), "--backbone", "vesselness", "--methods", "magic"]) == 2
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.skipif(not (DRIVE / "test/images").is_dir(), reason="the DRIVE data folder is not present")
def test_smoke_on_real_drive(tmp_path):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(DRIVE), "--backbone", "vesselness", "--fov", "--limit", "2",
                 "--steps", "5", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    items = read_drive(DRIVE, "test")[:2]
    # human figures against an independent reading: PIL, palette converted, threshold 127
    for it in items:
        first = np.asarray(Image.open(it.manual1_path).convert("L")) > 127
        second = np.asarray(Image.open(it.manual2_path).convert("L")) > 127
        fov = np.asarray(Image.open(it.fov_path).convert("L")) > 127
        expected = independent_dice(second & fov, first & fov)
        assert res["human"]["images"][it.name]["dice"] == pytest.approx(expected)
    assert res["raw"]["mean"]["dice"] > 0.6  # the training-free backbone is a real segmenter
    assert res["human"]["mean"]["dice"] > 0.75


def test_a_learned_refiner_runs_the_steps_it_was_trained_with_unless_told(tiny_drive, tmp_path, capsys):
    """`evaluate`'s refine row (and `tubediff refine`, one rule) with a refiner trained at 3
    steps runs 3 steps, not the shipped refiner's 10: the same masks as with ``--steps 3``."""
    from napari_tubediff.models.refiner import SHIPPED_REFINER
    from napari_tubediff.models.weights import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(SHIPPED_REFINER, "refiner")
    mine = save_checkpoint(tmp_path / "mine.pt", "refiner", {**ckpt["config"], "steps": 3},
                           ckpt["state_dict"], ckpt["meta"])
    root, _, _ = tiny_drive
    images, labels = tmp_path / "img", tmp_path / "lab"  # one photograph: three runs of the U-Net
    images.mkdir(), labels.mkdir()
    shutil.copy(root / "test/images/01_test.tif", images / "01.tif")
    shutil.copy(root / "test/1st_manual/01_manual1.gif", labels / "01.gif")
    masks = {}
    for label, extra in (("own", []), ("3", ["--steps", "3"]), ("10", ["--steps", "10"])):
        saved = tmp_path / f"saved{label}"
        assert main(["evaluate", "--images", str(images), "--labels", str(labels), "--backbone", "unet",
                     "--refiner", str(mine), "--methods", "refine", "--save-pred", str(saved), *extra]) == 0
        masks[label] = [read_image(p) for p in sorted((saved / "refine").iterdir())]
        if label == "own":
            assert "learned refiner mine.pt, 3 steps" in capsys.readouterr().out
    assert all(np.array_equal(a, b) for a, b in zip(masks["own"], masks["3"], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(masks["own"], masks["10"], strict=True))
