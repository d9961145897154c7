"""Backbones, the refiner, training and checkpoints."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_tubediff import dice, diffuse
from napari_tubediff.data.drive import binary_mask
from napari_tubediff.data.io import read_image
from napari_tubediff.data.synthetic import synthetic_vessels
from napari_tubediff.models import get_backbone
from napari_tubediff.models.backbones import SHIPPED_UNET, UNetBackbone
from napari_tubediff.models.refiner import SHIPPED_REFINER, LearnedRefiner, Refiner
from napari_tubediff.models.unet import UNet
from napari_tubediff.models.weights import load_checkpoint, save_checkpoint
from napari_tubediff.training.losses import bce, mixed_loss, soft_cldice, soft_dice
from napari_tubediff.training.refiner import RefinerConfig, train_refiner
from napari_tubediff.training.sampling import augment, sample_patches
from napari_tubediff.training.train import BackboneConfig, train_backbone

DRIVE = Path(os.environ.get("TUBEDIFF_DRIVE", Path(__file__).resolve().parents[2] / "shared/data/DRIVE"))


@pytest.fixture(scope="module")
def synthetic_drive(tmp_path_factory):
    """A DRIVE-layout training split of 4 synthetic fundus-like images (dark vessels in green)."""
    root = tmp_path_factory.mktemp("drive")
    for sub in ("images", "1st_manual", "mask"):
        (root / "training" / sub).mkdir(parents=True)
    for k in range(4):
        s = synthetic_vessels((96, 96), seed=10 + k, n_breaks=0, width=(1.0, 2.5))
        g = 180 - 110 * s.truth + np.random.default_rng(k).normal(0, 6, s.truth.shape)
        rgb = np.stack([np.full(s.truth.shape, 200.0), g, np.full(s.truth.shape, 50.0)], -1)
        tr = root / "training"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(tr / f"images/{21 + k}_training.tif")
        Image.fromarray((s.truth * 255).astype(np.uint8)).save(tr / f"1st_manual/{21 + k}_manual1.gif")
        Image.fromarray(np.full((96, 96), 255, np.uint8)).save(tr / f"mask/{21 + k}_training_mask.gif")
    return root


@pytest.fixture(scope="module")
def tiny_unet(synthetic_drive, tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "unet.pt"
    cfg = BackboneConfig(base=8, depth=2, patch=32, batch=8, iters=80, lr=1e-2, loss="dice")
    rec = train_backbone(synthetic_drive, out, cfg)
    return out, rec


# --- models -------------------------------------------------------------------------
def test_unet_shapes_and_padding():
    net = UNet(base=4, depth=3)
    logits, feats = net(torch.zeros(2, 1, 32, 40))
    assert logits.shape == (2, 1, 32, 40) and feats.shape == (2, 4, 32, 40)
    with pytest.raises(RuntimeError):
        net(torch.zeros(1, 1, 30, 30))  # not divisible by 2**depth: callers pad (pad_to_multiple)


def test_training_lowers_the_backbone_loss_and_the_backbone_predicts(tiny_unet, synthetic_drive):
    path, rec = tiny_unet
    assert rec["final_loss"] < 0.7 * rec["first_loss"]
    bb = UNetBackbone(path, device="cpu")
    img = np.asarray(Image.open(synthetic_drive / "training/images/21_training.tif"))
    prob, feats = bb.predict_with_features(img)
    assert prob.shape == (96, 96) and prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    assert feats.shape == (8, 96, 96)
    # read through the project's reader: Pillow wrote the GIF as a palette image (indices 0/1)
    truth = binary_mask(read_image(synthetic_drive / "training/1st_manual/21_manual1.gif"))
    assert truth.mean() > 0.03
    assert dice(prob, truth) > 0.6  # it learned the vessels
    # odd sizes are padded and cropped back
    assert bb.predict(img[:91, :93]).shape == (91, 93)


def test_vesselness_backbone_ranges():
    s = synthetic_vessels((64, 64), seed=1)
    p = get_backbone("vesselness").predict(s.image)
    assert p.shape == (64, 64) and p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1


def test_refiner_shapes_ranges_and_monotonicity():
    r = Refiner(feature_channels=4, kernel=9)
    u = torch.rand(2, 1, 24, 24)  # noqa: NPY002 (torch's generator)
    out = r(u, torch.randn(2, 4, 24, 24), steps=3)
    assert out.shape == u.shape and (out >= u - 1e-6).all() and out.max() <= 1
    v, lpar, lperp = r.head_outputs(torch.randn(1, 4, 8, 8))
    np.testing.assert_allclose(torch.linalg.vector_norm(v, dim=1).detach(), 1, atol=1e-4)
    assert float(lpar) > 0 and float(lperp) > 0
    rp = Refiner(feature_channels=4, kernel=3, per_pixel=True)
    _, mp, mq = rp.head_outputs(torch.randn(1, 4, 8, 8))
    assert mp.shape == (1, 1, 8, 8) and (mp > 0).all() and (mq > 0).all()
    for bad in (0, 2, 15):
        with pytest.raises(ValueError, match="kernel"):
            Refiner(kernel=bad)


def test_refiner_with_equal_lambdas_and_kernel_1_is_isotropic_diffusion():
    torch.manual_seed(0)
    r = Refiner(feature_channels=3, kernel=1, lambda_par=0.6, lambda_perp=0.6, dt=0.2, steps=5)
    u = torch.from_numpy(synthetic_vessels((40, 40), seed=2).probability)[None, None]
    feats = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        out = r(u, feats)[0, 0].numpy()
    # whatever directions the head gives, the result is isotropic: compare with zero vectors
    iso = diffuse(u[0, 0].numpy(), np.zeros((2, 40, 40), np.float32), lambda_par=0.6, lambda_perp=0.6,
                  dt=0.2, steps=5)
    np.testing.assert_allclose(out, iso, atol=2e-5)
    assert np.abs(iso - u[0, 0].numpy()).max() > 1e-3


def test_learned_refiner_numpy_path_equals_the_torch_module(tmp_path):
    torch.manual_seed(1)
    r = Refiner(feature_channels=4, kernel=5, lambda_par=0.8, lambda_perp=0.05, dt=0.2, steps=6)
    path = save_checkpoint(tmp_path / "r.pt", "refiner", r.config, r.state_dict())
    lr = LearnedRefiner(path)
    u = synthetic_vessels((48, 48), seed=3).probability
    f = np.random.default_rng(0).normal(size=(4, 48, 48)).astype(np.float32)
    with torch.no_grad():
        ref = r(torch.from_numpy(u)[None, None], torch.from_numpy(f)[None])[0, 0].numpy()
    np.testing.assert_allclose(lr.refine(u, f), ref, atol=1e-5)
    fov = np.zeros((48, 48), bool)
    fov[8:40, 8:40] = True
    assert not lr.refine(u, f, fov=fov)[~fov].any()


def test_refiner_training_lowers_its_loss_on_broken_vessels(tiny_unet, tmp_path):
    # images whose vessels are broken, targets intact: the refiner has gaps to learn to fill
    from napari_tubediff.models.preprocess import preprocess
    from napari_tubediff.training.losses import bce as _bce

    path, _ = tiny_unet
    xs, ys, fs = [], [], []
    for k in range(3):
        s = synthetic_vessels((96, 96), seed=30 + k, n_breaks=10, break_length=(3, 6), width=(1.0, 2.5))
        broken = s.truth & ~s.breaks
        g = 180 - 110 * broken
        rgb = np.stack([np.full(broken.shape, 200.0), g, np.full(broken.shape, 50.0)], -1).astype(np.uint8)
        xs.append(preprocess(rgb)[None])
        ys.append(s.truth.astype(np.float32)[None])
        fs.append(np.ones((96, 96), bool))
    cfg = RefinerConfig(kernel=3, steps=5, crop=64, batch=4, lr=3e-2, restart=40, lambda_par=0.1,
                        lambda_perp=0.1)
    before = train_refiner(None, None, RefinerConfig(**{**cfg.__dict__, "updates": 0}),
                           backbone_weights=path, train_set=(xs, ys, fs))["module"]
    rec = train_refiner(None, tmp_path / "ref.pt", RefinerConfig(**{**cfg.__dict__, "updates": 40}),
                        backbone_weights=path, train_set=(xs, ys, fs))
    after = rec["module"]
    unet = UNetBackbone(path, device="cpu").net

    def full_loss(module):
        x = torch.from_numpy(np.stack(xs))
        with torch.no_grad():
            logits, feats = unet(x)
            return float(_bce(module(torch.sigmoid(logits), feats), torch.from_numpy(np.stack(ys))))

    assert rec["updates"] == 40
    assert full_loss(after) < 0.995 * full_loss(before)  # gap pixels are few: a small but real drop
    assert LearnedRefiner(tmp_path / "ref.pt").config["kernel"] == 3


def test_cancelled_refiner_training_writes_nothing(tiny_unet, synthetic_drive, tmp_path):
    path, _ = tiny_unet
    rec = train_refiner(synthetic_drive, tmp_path / "ref.pt", RefinerConfig(updates=5, crop=64, batch=1),
                        backbone_weights=path, should_stop=lambda: True)
    assert rec["updates"] == 0 and not (tmp_path / "ref.pt").exists()


# --- losses and sampling ------------------------------------------------------------------
def test_losses_known_values():
    t = torch.zeros(1, 1, 8, 8)
    t[0, 0, 4, 1:7] = 1
    assert float(soft_dice(t, t)) == pytest.approx(1.0)
    assert float(soft_cldice(t, t)) == pytest.approx(1.0, abs=1e-6)
    assert float(bce(t * 0.5 + 0.25, t)) == pytest.approx(-np.log(0.75), rel=1e-5)
    w = torch.zeros_like(t)
    w[..., :4, :] = 1  # the target lies outside the weight mask
    assert float(mixed_loss(torch.zeros_like(t), t, w, kind="dice")) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        mixed_loss(t, t, kind="focal")


def test_patches_are_centred_in_the_fov_and_augmentation_is_consistent():
    rng = np.random.default_rng(0)
    a = np.arange(40 * 40, dtype=np.float32).reshape(1, 40, 40)
    fov = np.zeros((40, 40), bool)
    fov[20, 20] = True  # one allowed centre
    x, y = sample_patches([[a, a.copy()]], [fov], 8, 5, rng)
    assert x.shape == (5, 1, 8, 8)
    assert (x[:, 0, 4, 4] == a[0, 20, 20]).all()
    xa, ya = augment([x, y], rng)
    np.testing.assert_array_equal(xa, ya)  # the same transform on every array
    assert sorted(xa[0].ravel()) == sorted(x[0].ravel())


# --- checkpoints ------------------------------------------------------------------------------
def test_weights_round_trip_and_bad_files(tmp_path, tiny_unet):
    path, _ = tiny_unet
    a = UNetBackbone(path, device="cpu")
    ck = load_checkpoint(path, "unet")
    copy = save_checkpoint(tmp_path / "copy.pt", "unet", ck["config"], ck["state_dict"], ck["meta"])
    b = UNetBackbone(copy, device="cpu")
    img = synthetic_vessels((64, 64), seed=4).image
    np.testing.assert_array_equal(a.predict(img), b.predict(img))

    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        UNetBackbone(tmp_path / "corrupt.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a napari-tubediff checkpoint"):
        UNetBackbone(tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a 'refiner'"):
        LearnedRefiner(path)
    bad = dict(ck["state_dict"])
    bad.pop(next(iter(bad)))
    save_checkpoint(tmp_path / "partial.pt", "unet", ck["config"], bad)
    with pytest.raises(ValueError, match="do not fit"):
        UNetBackbone(tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="no weights file"):
        UNetBackbone(tmp_path / "missing.pt")


def test_torchscript_backbone(tmp_path):
    class Tiny(torch.nn.Module):
        def forward(self, x):
            return x * 10.0  # logits: the backbone applies a sigmoid

    path = tmp_path / "m.pt"
    torch.jit.script(Tiny()).save(str(path))
    bb = get_backbone("torchscript", path=path)
    p = bb.predict(synthetic_vessels((32, 32), seed=5).image)
    assert p.shape == (32, 32) and 0 <= p.min() and p.max() <= 1
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="TorchScript"):
        get_backbone("torchscript", path=tmp_path / "junk.pt")


# --- the shipped weights ---------------------------------------------------------------------
def test_shipped_weights_are_small_and_load():
    assert SHIPPED_UNET.is_file() and SHIPPED_REFINER.is_file()
    total = sum(p.stat().st_size for p in SHIPPED_UNET.parent.glob("*.pt"))
    assert total < 10 * 2 ** 20
    assert LearnedRefiner().config["kernel"] == 9


@pytest.mark.skipif(not (DRIVE / "test/images").is_dir(), reason="the DRIVE data folder is not present")
def test_shipped_unet_segments_a_drive_test_image():
    from napari_tubediff.data.drive import read_drive
    from napari_tubediff.models.backbones import segment_image

    it = read_drive(DRIVE, "test")[0]
    fov = it.fov()
    # as `tubediff segment` does: the FOV found, resampled to the working scale and back
    prob = segment_image(get_backbone("unet", device="cpu"), it.image()).prob
    assert dice(prob, it.truth(), fov) > 0.75


# --- the segment and refine commands ------------------------------------------------------
def test_segment_command_writes_probability_maps(tiny_unet, synthetic_drive, tmp_path, capsys):
    from napari_tubediff.cli import main

    path, _ = tiny_unet
    img = synthetic_drive / "training/images/21_training.tif"
    assert main(["segment", str(img), "--out", str(tmp_path), "--weights", str(path)]) == 0
    prob = read_image(tmp_path / "21_training_prob.tif")
    assert prob.dtype == np.float32 and prob.shape == (96, 96) and 0 <= prob.min() and prob.max() <= 1
    np.testing.assert_array_equal(prob, UNetBackbone(path, device="cpu").predict(read_image(img)))
    assert (tmp_path / "21_training_prob.png").is_file()
    assert "green channel" in capsys.readouterr().out


def test_refine_command_reconnects_a_broken_line(tmp_path):
    from napari_tubediff.cli import main
    from napari_tubediff.data.io import write_image

    u = np.zeros((48, 64), np.float32)
    u[23:26, 4:28] = 1.0
    u[23:26, 33:60] = 1.0  # a 5-pixel gap
    write_image(tmp_path / "line.png", u)
    # the faithful PDE bridges a gap the backbone saw nothing in; the default (gated+dti) needs
    # faint evidence there (docs/results.md, "Refinement against DTI")
    assert main(["refine", str(tmp_path / "line.png"), "--out", str(tmp_path / "out"), "--steps", "300",
                 "--method", "faithful"]) == 0
    refined = read_image(tmp_path / "out/line_refined.tif")
    mask = read_image(tmp_path / "out/line_mask.png") > 127
    assert (refined >= u - 1e-6).all()
    assert mask[24, 4:60].all()  # the gap is bridged
    assert not mask[:18].any() and not mask[31:].any()  # and nothing grew sideways
    assert main(["refine", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o2")]) == 2
