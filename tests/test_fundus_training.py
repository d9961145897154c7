"""The multi-camera U-Net's calibration (training.fundus): a logit bias fitted on training
images through the default pipeline and folded into the output layer."""

import numpy as np
import pytest
import torch
from PIL import Image

from napari_tubediff.core.fov import fov_mask
from napari_tubediff.core.metrics import dice
from napari_tubediff.data.fundus import synthetic_fundus
from napari_tubediff.models.backbones import UNetBackbone, segment_image
from napari_tubediff.models.unet import UNet
from napari_tubediff.models.weights import load_checkpoint
from napari_tubediff.training.fundus import bias_dice, calibrate_fundus, fold_logit_bias


def test_fold_logit_bias_shifts_every_logit_and_leaves_the_features():
    torch.manual_seed(0)
    net = UNet(base=4, depth=2).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        z0, f0 = net(x)
        z1, f1 = fold_logit_bias(net, -0.7)(x)
    torch.testing.assert_close(z1, z0 - 0.7)
    torch.testing.assert_close(f1, f0)


class _Ramp:
    """A stand-in backbone without a working scale whose probability is sigmoid(column - 5)
    on a 10-column image: the bias b makes columns >= 5 - b vessel."""

    working_fov = None
    ref_sigma = 1.0

    def predict_with_features(self, x, fov=None):
        z = np.tile(np.arange(10, dtype=np.float64) - 5.0, (6, 1))
        return (1 / (1 + np.exp(-z))).astype(np.float32), None


class _Item:
    name = "ramp"

    def image(self):
        return np.zeros((6, 10), np.float32)

    def truth(self):
        t = np.zeros((6, 10), bool)
        t[:, 7:] = True  # vessel from column 7: the logit there is 2
        return t

    def fov(self):
        return np.ones((6, 10), bool)


def test_bias_dice_scores_each_bias_by_hand():
    # vessel where column - 5 + bias >= 0: bias -5.5 none (Dice 0); -3.5 column 9 (2*6 / (6 + 18));
    # -2.5 columns 8, 9 (2*12 / (12 + 18)); -2 columns 7..9, exact (at column 7 the tie
    # sigmoid(0) = 0.5 counts as vessel); 0 columns 5..9 (2*18 / (30 + 18))
    d = bias_dice([_Item()], _Ramp(), [-5.5, -3.5, -2.5, -2.0, 0.0])
    np.testing.assert_allclose(d[0], [0.0, 0.5, 0.8, 1.0, 0.75])


@pytest.mark.slow  # two U-Net runs at the working scale (800 px)
def test_calibrate_fundus_writes_weights_that_score_as_fitted(tmp_path):
    """The Dice the fit reports for its bias is the Dice of the saved weights through
    segment_image, scored independently; the probability is the old logit plus the bias."""
    root = tmp_path / "data"
    (root / "STARE/images").mkdir(parents=True)
    (root / "STARE/labels_1st").mkdir()
    f = synthetic_fundus((72, 72), seed=3)
    Image.fromarray(f.image).save(root / "STARE/images/im0001.png")
    Image.fromarray((f.truth * 255).astype(np.uint8)).save(root / "STARE/labels_1st/im0001.ah.ppm")
    out = tmp_path / "cal.pt"
    rec = calibrate_fundus(root, UNetBackbone.shipped, out, [-3.0, 0.0, 3.0], datasets=("STARE",), log=None)
    assert rec["images"] == 1 and rec["biases"] == [-3.0, 0.0, 3.0]
    j = rec["biases"].index(rec["fitted_bias"])
    assert rec["dice_after"] == max(rec["mean_dice"]) == rec["mean_dice"][j]
    before = UNetBackbone(device="cpu").meta.get("calibration", {}).get("logit_bias", 0.0)
    # the bias adds up: the meta says what the output layer now holds against the uncalibrated net
    assert load_checkpoint(out, "unet")["meta"]["calibration"]["logit_bias"] == pytest.approx(
        before + rec["fitted_bias"])
    old = segment_image(UNetBackbone(device="cpu"), f.image, scale=1.0).prob.astype(np.float64)
    new = segment_image(UNetBackbone(out, device="cpu"), f.image)
    assert new.factor > 5  # the fit went through the working scale, as the pipeline does
    # scored as the evaluation scores STARE: inside the automatic FOV
    assert dice(new.prob >= 0.5, f.truth, fov_mask(f.image)) == pytest.approx(rec["dice_after"])
    inside = (old > 1e-4) & (old < 1 - 1e-4)
    z = np.log(old[inside]) - np.log1p(-old[inside]) + rec["fitted_bias"]
    got = segment_image(UNetBackbone(out, device="cpu"), f.image, scale=1.0).prob[inside]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), atol=2e-5)
    with pytest.raises(ValueError, match="no STARE"):
        calibrate_fundus(tmp_path / "nowhere", UNetBackbone.shipped, tmp_path / "x.pt", datasets=("STARE",))
