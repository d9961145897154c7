"""`tubediff evaluate` on any layout: --images/--labels/--labels2/--fov paired by name, --pred
matched exactly, and its outputs never written over an input or an existing file."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_tubediff.cli import main
from napari_tubediff.data.drive import file_key, pair_folders
from napari_tubediff.data.io import read_image, write_image
from napari_tubediff.data.synthetic import synthetic_vessels

DATA = Path(os.environ.get("TUBEDIFF_DATA", Path(__file__).resolve().parents[2] / "shared/data"))


def independent_dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture
def stare(tmp_path):
    """A STARE-layout folder: images/imXXXX.png, labels_1st/imXXXX.ah.ppm (PGM content),
    labels_2nd/imXXXX.vk.ppm, and a folder of perfect 0/1 predictions."""
    root = tmp_path / "STARE"
    for d in ("images", "labels_1st", "labels_2nd", "pred"):
        (root / d).mkdir(parents=True)
    truths, seconds = {}, {}
    for k in (1, 2):
        s = synthetic_vessels((48, 56), seed=k, n_breaks=0, width=(1.0, 2.0))
        key = f"im000{k}"
        rgb = np.stack([np.full(s.truth.shape, 200), 200 - 120 * s.truth, np.full(s.truth.shape, 60)], -1)
        Image.fromarray(rgb.astype(np.uint8)).save(root / f"images/{key}.png")
        Image.fromarray(s.truth.astype(np.uint8) * 255).save(root / f"labels_1st/{key}.ah.ppm", format="PPM")
        second = s.truth.copy()
        second[:, :8] = False
        Image.fromarray(second.astype(np.uint8) * 255).save(root / f"labels_2nd/{key}.vk.ppm", format="PPM")
        Image.fromarray(s.truth.astype(np.uint8)).save(root / f"pred/{key}.png")  # 0/1: a binary map
        truths[key], seconds[key] = s.truth, second
    return root, truths, seconds


def _run(root, *extra):
    return main(["evaluate", "--images", str(root / "images"), "--labels", str(root / "labels_1st"), *extra])


def test_pairing_rule():
    assert file_key("im0001.ah.ppm") == file_key("im0001.png") == "im0001"
    assert file_key("01_dr.JPG") == "01_dr" and file_key("a/b.c/01_test.tif") == "01_test"


def test_stare_layout_with_a_human_row(stare, tmp_path, capsys):
    root, truths, seconds = stare
    out = tmp_path / "r.json"
    assert _run(root, "--labels2", str(root / "labels_2nd"), "--pred", str(root / "pred"),
                "--methods", "raw", "--json", str(out)) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"raw", "human"} and set(res["raw"]["images"]) == {"im0001", "im0002"}
    # 0/1 predictions are binary maps (once an empty mask: divided by 255), and said so on one line
    assert res["raw"]["mean"]["dice"] == 1.0
    err = capsys.readouterr().err
    assert "tubediff: note: im0001.png: values 0 and 1 only" in err and "Traceback" not in err
    expected = np.mean([independent_dice(seconds[k], truths[k]) for k in truths])
    assert res["human"]["mean"]["dice"] == pytest.approx(expected)


def test_fov_folder_with_mask_suffix(stare, tmp_path):
    root, truths, _ = stare
    (root / "mask").mkdir()
    fov = np.zeros((48, 56), bool)
    fov[:, 28:] = True
    for k in truths:
        write_image(root / f"mask/{k}_mask.png", fov)  # HRF's naming: 01_dr_mask.tif
    items = pair_folders(root / "images", root / "labels_1st", fov=root / "mask")
    np.testing.assert_array_equal(items[0].fov(), fov)
    out = tmp_path / "r.json"
    half = {k: t.copy() for k, t in truths.items()}
    for k, t in half.items():
        t[:, :28] = False  # a prediction that is perfect inside the FOV only
        write_image(root / f"pred/{k}.png", t)
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw", "--fov", str(root / "mask"),
                "--json", str(out)) == 0
    assert json.loads(out.read_text())["raw"]["mean"]["dice"] == 1.0


def test_fov_auto_calls_the_named_function(stare, monkeypatch, capsys):
    import napari_tubediff.data.drive as drive

    root, truths, _ = stare
    monkeypatch.setattr(drive, "AUTO_FOV", "napari_tubediff.no_such_module:fov_mask")
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw", "--fov", "auto") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "automatic field of view is not in this build" in err
    half = np.zeros((48, 56), bool)
    half[:24] = True
    monkeypatch.setattr(drive, "auto_fov_function", lambda: (lambda image: half))
    items = pair_folders(root / "images", root / "labels_1st", fov="auto")
    np.testing.assert_array_equal(items[0].fov(), half)


@pytest.mark.parametrize("make, message", [
    (lambda r: shutil.copy(r / "images/im0001.png", r / "images/im0001.tif"), "im0001.png and im0001.tif"),
    (lambda r: (r / "labels_1st/im0002.ah.ppm").unlink(), "no label file for im0002"),
    (lambda r: shutil.copy(r / "labels_1st/im0001.ah.ppm", r / "labels_1st/im0001_mask.png"),
     "both pair with 'im0001'"),
])
def test_ambiguous_or_incomplete_folders_are_refused(stare, capsys, make, message):
    root, _, _ = stare
    make(root)
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tubediff: error:") and message in err and err.count("\n") == 0


def test_pred_is_matched_exactly_never_by_a_prefix(stare, capsys):
    root, truths, _ = stare
    # the old prefix glob took im0001_manual.png, the ground truth, and scored Dice 1.0000
    for k, t in truths.items():
        (root / f"pred/{k}.png").unlink()
        write_image(root / f"pred/{k}_manual.png", t)
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw") == 2
    assert "no prediction for im0001" in capsys.readouterr().err
    # the label folder itself is refused as predictions
    assert _run(root, "--pred", str(root / "labels_1st"), "--methods", "raw") == 2
    assert "is the ground truth itself" in capsys.readouterr().err


def test_segment_outputs_are_predictions(stare, tmp_path):
    root, truths, _ = stare
    pred = tmp_path / "seg"
    for k, t in truths.items():  # what `tubediff segment` writes: NAME_prob.tif and NAME_prob.png
        write_image(pred / f"{k}_prob.tif", t.astype(np.float32) * 0.9)
        write_image(pred / f"{k}_prob.png", np.zeros_like(t))  # were this one read, Dice would be 0
    out = tmp_path / "r.json"
    assert _run(root, "--pred", str(pred), "--methods", "raw", "--json", str(out)) == 0
    assert json.loads(out.read_text())["raw"]["mean"]["dice"] == 1.0


def test_json_never_replaces_an_input_or_an_existing_file(stare, tmp_path, capsys):
    root, _, _ = stare
    image = root / "images/im0001.png"
    before = image.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert _run(root, "--pred", str(root / "pred"), "--methods", "raw", "--json", str(image), *extra) == 2
        assert "is one of the inputs" in capsys.readouterr().err
    assert image.read_bytes() == before
    mine = tmp_path / "mine.json"
    mine.write_text("keep me")
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw", "--json", str(mine)) == 2
    assert "exists" in capsys.readouterr().err and mine.read_text() == "keep me"
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw", "--json", str(mine),
                "--overwrite") == 0
    assert "raw" in json.loads(mine.read_text())
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw", "--json", str(tmp_path)) == 2
    assert "is a folder" in capsys.readouterr().err
    saved = tmp_path / "saved"
    write_image(saved / "raw/im0001.png", np.ones((4, 4), bool))
    assert _run(root, "--pred", str(root / "pred"), "--methods", "raw", "--save-pred", str(saved)) == 2
    assert "exists" in capsys.readouterr().err and read_image(saved / "raw/im0001.png").shape == (4, 4)


def test_layout_options_are_checked(stare, capsys):
    root, _, _ = stare
    assert main(["evaluate", "--images", str(root / "images"), "--pred", str(root / "pred")]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["evaluate", "--labels", str(root / "labels_1st"), "--pred", str(root / "pred")]) == 2
    assert "one of --data" in capsys.readouterr().err
    assert _run(root, "--pred", str(root / "pred"), "--fov") == 2
    assert "--fov without a folder needs --data" in capsys.readouterr().err


def _chase(stare, tmp_path):
    """The STARE fixture's images, truth and 2nd observer rewritten as CHASE_DB1 lays them out: one
    folder with Image_01L.jpg, Image_01L_1stHO.png and Image_01L_2ndHO.png."""
    root, truths, seconds = stare
    chase = tmp_path / "CHASE"
    chase.mkdir()
    names = {}
    for i, k in enumerate(sorted(truths), 1):
        name = f"Image_0{i}L"
        Image.open(root / f"images/{k}.png").save(chase / f"{name}.jpg", quality=95)
        write_image(chase / f"{name}_1stHO.png", truths[k])
        write_image(chase / f"{name}_2ndHO.png", seconds[k])
        names[name] = k
    return chase, names


def test_chase_layout_one_folder_two_observers(stare, tmp_path, capsys):
    root, truths, seconds = stare
    chase, names = _chase(stare, tmp_path)
    pred = root / "pred"
    for name, k in names.items():
        os.replace(pred / f"{k}.png", pred / f"{name}.png")
    run = ["evaluate", "--images", str(chase), "--pred", str(pred), "--methods", "raw"]
    # two files could be each image's label: refused, and the line says which pattern picks one
    assert main([*run, "--labels", str(chase)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Image_01L_1stHO.png and Image_01L_2ndHO.png" in err
    assert "{name}_1stHO.png" in err
    out = tmp_path / "r.json"
    assert main([*run, "--labels", str(chase / "{name}_1stHO.png"),
                 "--labels2", str(chase / "{name}_2ndHO.png"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    # the label files in the images' folder are not scored as images
    assert sorted(res["raw"]["images"]) == ["Image_01L", "Image_02L"]
    assert res["raw"]["mean"]["dice"] == 1.0  # the predictions are the 1st observer's masks
    expected = np.mean([independent_dice(seconds[k], truths[k]) for k in truths])
    assert res["human"]["mean"]["dice"] == pytest.approx(expected)
    assert expected < 0.99  # so the human row did read the 2nd observer, not the 1st
    # with the 1st observer alone, the 2nd observer's files (named as companions) are still no images
    items = pair_folders(chase, str(chase / "{name}_1stHO.png"))
    assert [i.name for i in items] == ["Image_01L", "Image_02L"]


def test_labels_named_by_the_image_and_a_suffix_pair(stare, tmp_path):
    root, truths, _ = stare
    # IOSTAR: "STAR 01_OSC.jpg" with "STAR 01_OSC_GT.tif" and "STAR 01_OSC_Mask.tif" in other folders
    iostar = tmp_path / "IOSTAR"
    (iostar / "image").mkdir(parents=True)
    for k in truths:
        shutil.copy(root / f"images/{k}.png", iostar / f"image/STAR {k}_OSC.png")
        write_image(iostar / f"GT/STAR {k}_OSC_GT.tif", truths[k])
        write_image(iostar / f"mask/STAR {k}_OSC_Mask.tif", np.ones_like(truths[k]))
        write_image(iostar / f"other/STAR {k}_OSC_manual.png", truths[k])  # a unique suffixed name
    items = pair_folders(iostar / "image", iostar / "GT", fov=iostar / "mask")
    assert [(i.name, i.manual1_path.name, i.fov_path.name) for i in items][0] == \
        ("STAR im0001_OSC", "STAR im0001_OSC_GT.tif", "STAR im0001_OSC_Mask.tif")
    np.testing.assert_array_equal(items[1].truth(), truths["im0002"])
    items = pair_folders(iostar / "image", iostar / "other")
    assert [i.manual1_path.name for i in items] == [f"STAR im000{i}_OSC_manual.png" for i in (1, 2)]
    # a label named like another image is that image's, never a candidate by prefix
    (iostar / "other" / "STAR im0001_OSC_manual.png").rename(iostar / "other" / "STAR im0002_OSC.png")
    with pytest.raises(ValueError, match="no label file for STAR im0001_OSC"):
        pair_folders(iostar / "image", iostar / "other")


@pytest.mark.skipif(not (DATA / "STARE/labels_2nd").is_dir(), reason="needs ../shared/data/STARE")
def test_real_stare_pairs():
    items = pair_folders(DATA / "STARE/images", DATA / "STARE/labels_1st", DATA / "STARE/labels_2nd")
    assert len(items) == 20 and all(it.manual2_path is not None for it in items)
    assert items[0].manual1_path.name == "im0001.ah.ppm" and items[0].truth().shape == (605, 700)


@pytest.fixture
def drive(tmp_path):
    """A DRIVE-layout test split with two images, the 1st observer and FOV masks."""
    root = tmp_path / "DRIVE"
    truths = {}
    for k in (1, 2):
        s = synthetic_vessels((40, 44), seed=k, n_breaks=0, width=(1.0, 2.0))
        name = f"{k:02d}"
        rgb = np.stack([np.full(s.truth.shape, 200), 200 - 120 * s.truth, np.full(s.truth.shape, 60)], -1)
        write_image(root / f"test/images/{name}_test.tif", rgb.astype(np.uint8))
        write_image(root / f"test/1st_manual/{name}_manual1.gif", s.truth)
        write_image(root / f"test/mask/{name}_test_mask.gif", np.ones_like(s.truth))
        truths[f"{name}_test"] = s.truth
    return root, truths


def test_drive_layout_with_another_fov_and_a_ground_truth_in_the_pred_folder(drive, tmp_path, capsys):
    root, truths = drive
    pred = tmp_path / "pred"
    half = np.zeros((40, 44), bool)
    half[:, 22:] = True
    for k, t in truths.items():
        write_image(pred / f"{k}.png", t & half)  # perfect inside the right half only
        write_image(tmp_path / f"fov/{k}_mask.png", half)
    # a ground-truth file beside the predictions: once globbed as 01_*, now never a prediction
    shutil.copy(root / "test/1st_manual/01_manual1.gif", pred / "01_manual1.gif")
    out = tmp_path / "r.json"
    args = ["evaluate", "--data", str(root), "--pred", str(pred), "--methods", "raw"]
    assert main([*args, "--fov", str(tmp_path / "fov"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["raw"]["mean"]["dice"] == 1.0
    assert main([*args, "--fov", "none", "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["raw"]["mean"]["dice"] < 1.0  # the whole image scored
    shutil.copy(root / "test/images/01_test.tif", root / "test/images/01_copy.png")
    assert main(args) == 2
    assert "both have the number 01" in capsys.readouterr().err


def test_evaluate_refine_row_is_what_tubediff_refine_writes(tmp_path):
    """The default "refine" row scores the mask `tubediff refine` writes from the same
    probability (the recommended method, Hessian directions, its measured steps), not a
    refinement of the evaluation's own."""
    root = tmp_path / "set"
    for d in ("images", "labels", "pred"):
        (root / d).mkdir(parents=True)
    s = synthetic_vessels((64, 72), seed=3, n_breaks=4, width=(1.0, 2.5))
    Image.fromarray((255 - 150 * s.truth).astype(np.uint8)).save(root / "images/a.png")
    Image.fromarray(s.truth.astype(np.uint8) * 255).save(root / "labels/a.png")
    write_image(root / "pred/a.tif", s.probability.astype(np.float32))
    assert main(["evaluate", "--images", str(root / "images"), "--labels", str(root / "labels"),
                 "--pred", str(root / "pred"), "--methods", "refine",
                 "--save-pred", str(tmp_path / "ev")]) == 0
    assert main(["refine", str(root / "pred/a.tif"), "--out", str(tmp_path / "rf")]) == 0
    scored = read_image(tmp_path / "ev/refine/a.png") > 0
    written = read_image(tmp_path / "rf/a_mask.png") > 0
    assert scored.any() and np.array_equal(scored, written)
    # and it is not the bare probability: the default refinement reconnected something
    assert not np.array_equal(scored, s.probability >= 0.5)
