"""Fine-tuning on a volume (the 3D U-Net + 3D refiner pair: function, command) and the 3D default
refinement (`core.refine.VOLUME_REFINE`) that `tubediff refine` and batch refinement read."""

import numpy as np
import pytest
import torch

from napari_tubediff.core.refine import RECOMMENDED_METHOD, VOLUME_REFINE, RefineSettings
from napari_tubediff.data.io import read_image, write_image
from napari_tubediff.models import session
from napari_tubediff.models.backbones import UNet3DBackbone
from napari_tubediff.models.refiner import LearnedRefiner
from napari_tubediff.training.finetune import FinetuneConfig, finetune, network_inputs
from napari_tubediff.training.losses import mixed_loss
from napari_tubediff.training.synthetic3d import faded_image, straight_tube

FAST = dict(updates=20, batch=2, crop3d=16, lr=1e-2, seed=0)


pytestmark = pytest.mark.usefixtures("shipped_session")


@pytest.fixture(scope="module")
def tube():
    # a straight tube of radius 2.5 along x whose middle 4 voxels are faded in the image;
    # the labels are the whole tube
    t = straight_tube([0, 0, 1], (16, 24, 32), radius=2.5, gap=4, seed=0)
    return faded_image(t.volume), t.volume.truth


def _objective(refiner, image, truth, kind="cldice"):
    """The fine-tune loss on the whole volume (deterministic, unlike the training crops)."""
    bb = UNet3DBackbone(device="cpu")
    x = torch.from_numpy(network_inputs(bb, [image], [None])[0][None])
    y = torch.from_numpy(truth[None, None].astype(np.float32))
    with torch.no_grad():
        logits, feats = bb.net(x)
        refined = refiner.module(torch.sigmoid(logits), feats)
        return float(mixed_loss(refined, y, torch.ones_like(y), kind=kind))


@pytest.mark.slow
def test_finetune_on_a_volume_lowers_its_loss_and_keeps_the_start(tube):
    image, truth = tube
    start = session.active_refiner(3)
    state = {k: v.clone() for k, v in start.module.state_dict().items()}
    # 8 updates (FAST's 20 are for the U-Net below): the loss goes 0.272 -> 0.256 and Dice 0.926 ->
    # 0.931 on 2026-11-30, clear of both thresholds
    res = finetune([image], [truth], cfg=FinetuneConfig(**dict(FAST, updates=8)))
    assert res.refiner.ndim == 3 and res.record["updates"] == 8
    assert _objective(res.refiner, image, truth) < _objective(start, image, truth)
    assert res.after["dice"] >= res.before["dice"] - 0.005
    for k, v in start.module.state_dict().items():  # the starting weights were not touched
        assert torch.equal(v, state[k])


@pytest.mark.slow
def test_finetune_with_the_3d_unet_raises_dice(tube):
    image, truth = tube
    res = finetune([image], [truth], cfg=FinetuneConfig(**FAST, tune_backbone=True, loss="dice"))
    assert res.backbone is not None and res.backbone.ndim == 3
    assert res.after["dice"] > res.before["dice"] + 0.005


@pytest.mark.parametrize("case, match", [
    ("mixed", "not both"),
    ("2d refiner", "2D refiner cannot fine-tune on 3D volumes"),
    ("shape", "differ in shape"),
])
def test_bad_volume_input(tube, case, match):
    image, truth = tube
    kw = {}
    images, labels = [image], [truth]
    if case == "mixed":
        images, labels = [image, image[0]], [truth, truth[0]]
    elif case == "2d refiner":
        kw["refiner"] = LearnedRefiner.shipped(2, device="cpu")
    else:
        labels = [truth[:-1]]
    with pytest.raises(ValueError, match=match):
        finetune(images, labels, cfg=FinetuneConfig(**FAST), **kw)


def test_finetune_command_on_a_volume(tmp_path, tube, capsys):
    from napari_tubediff.cli import main

    image, truth = tube
    write_image(tmp_path / "vol.tif", image)
    write_image(tmp_path / "lab.tif", truth.astype(np.uint8))
    out = tmp_path / "tuned3d.pt"
    assert main(["finetune", "--images", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "lab.tif"),
                 "--updates", "3", "--crop", "16", "--batch", "2", "--out", str(out)]) == 0
    r = LearnedRefiner(out)
    assert r.ndim == 3 and r.meta["updates"] == 3 and r.meta["config"]["crop"] == 16
    text = capsys.readouterr().out
    assert "refiner_synth3d.pt" in text and "before" in text and "after" in text
    assert read_image(tmp_path / "lab.tif").shape == truth.shape  # the input is as it was
    # a 2D image with a volume: one line, exit 2
    write_image(tmp_path / "img.png", (image[0] * 255).astype(np.uint8))
    write_image(tmp_path / "lab.png", truth[0].astype(np.uint8))
    assert main(["finetune", "--images", str(tmp_path / "vol.tif"), str(tmp_path / "img.png"),
                 "--labels", str(tmp_path / "lab.tif"), str(tmp_path / "lab.png"),
                 "--out", str(tmp_path / "other.pt")]) == 2
    assert "not both" in capsys.readouterr().err


def test_volumes_default_to_the_chosen_3d_refinement():
    from napari_tubediff.batch.run import BatchOptions

    # what tubediff refine passes when --steps and --method are not given
    opts = BatchOptions(input="image", steps=None, method=None)
    assert opts.settings(3) == VOLUME_REFINE
    assert opts.settings(2) == RefineSettings(steps=30, method=RECOMMENDED_METHOD)  # as measured
    # given options win in both dimensions
    assert BatchOptions(steps=4, method="gated").settings(3) == RefineSettings(steps=4, method="gated")


def test_refine_command_on_a_volume_gives_the_backbone_alone(tmp_path):
    # VOLUME_REFINE has no steps (docs/results.md, "Real volumes"): tubediff refine --input image
    # on a volume writes region3d's probability as it is
    from napari_tubediff.cli import main
    from napari_tubediff.models import get_backbone
    from napari_tubediff.models.backbones import segment_image

    assert VOLUME_REFINE.steps == 0
    t = straight_tube([0, 1, 1], (16, 32, 32), radius=2.5, seed=1)
    vol = (t.volume.image * 4000).astype(np.uint16)
    write_image(tmp_path / "vol.tif", vol)
    assert main(["refine", "--input", "image", str(tmp_path / "vol.tif"), "--out", str(tmp_path / "o")]) == 0
    got = read_image(tmp_path / "o" / "vol_refined.tif")
    want = segment_image(get_backbone("region3d"), vol).prob
    np.testing.assert_allclose(got, want, atol=1e-6)
