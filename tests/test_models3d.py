"""The models in 3D (U-Net, refiner, training, shipped weights), the shipped 2D weights
unchanged, and the device option."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from napari_tubediff import diffuse
from napari_tubediff.core.device import resolve_device
from napari_tubediff.data.synthetic import synthetic_vessels
from napari_tubediff.models import get_backbone, session
from napari_tubediff.models.backbones import SHIPPED_UNET, SHIPPED_UNET3D, UNet3DBackbone, UNetBackbone
from napari_tubediff.models.refiner import (
    SHIPPED_REFINER,
    SHIPPED_REFINER3D,
    LearnedRefiner,
    Refiner,
    vessel_directions,
)
from napari_tubediff.models.unet import UNet, pad_to_multiple
from napari_tubediff.models.weights import load_checkpoint, save_checkpoint
from napari_tubediff.training.refiner import RefinerConfig, train_refiner
from napari_tubediff.training.sampling import augment, sample_patches
from napari_tubediff.training.synthetic3d import (
    TEST_SEED,
    TRAIN_SEED,
    faded_image,
    straight_tube,
    synthetic_volume,
)
from napari_tubediff.training.train import BackboneConfig, train_backbone

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def shipped_session():
    session.reset_refiner()
    yield
    session.reset_refiner()


# --- shapes and gradients -----------------------------------------------------------------
def test_unet3d_shapes_and_gradient_flow():
    torch.manual_seed(0)
    net = UNet(base=2, depth=2, ndim=3)
    x = torch.randn(2, 1, 16, 12, 8)
    logits, feats = net(x)
    assert logits.shape == (2, 1, 16, 12, 8) and feats.shape == (2, 2, 16, 12, 8)
    (logits.mean() + feats.mean()).backward()
    # every layer, down to the first convolution, receives a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert isinstance(net.down[0][0], torch.nn.Conv3d) and isinstance(net.up[0], torch.nn.ConvTranspose3d)
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        UNet(ndim=4)


def test_refiner3d_shapes_monotonicity_and_gradient_flow():
    torch.manual_seed(0)
    r = Refiner(feature_channels=4, kernel=3, ndim=3, steps=2)
    u = torch.rand(1, 1, 10, 10, 10)  # noqa: NPY002 (torch's generator)
    feats = torch.randn(1, 4, 10, 10, 10, requires_grad=True)
    out = r(u, feats)
    assert out.shape == u.shape and (out >= u - 1e-6).all() and out.max() <= 1
    out.sum().backward()
    assert r.head.weight.grad.abs().sum() > 0 and r.raw_par.grad != 0 and feats.grad.abs().sum() > 0
    v, lpar, lperp = r.head_outputs(torch.randn(2, 4, 6, 6, 6))
    assert v.shape == (2, 3, 6, 6, 6)
    np.testing.assert_allclose(torch.linalg.vector_norm(v, dim=1).detach(), 1, atol=1e-4)
    _, mp, mq = Refiner(feature_channels=4, kernel=3, per_pixel=True, ndim=3).head_outputs(
        torch.randn(1, 4, 6, 6, 6))
    assert mp.shape == mq.shape == (1, 1, 6, 6, 6) and (mp > 0).all() and (mq > 0).all()


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 7), (8, 8, 8)])
def test_pad_to_multiple_in_2d_and_3d(shape):
    x = torch.arange(float(np.prod(shape))).reshape(1, 1, *shape)
    y, size = pad_to_multiple(x, 4)
    assert size == shape and all(n % 4 == 0 for n in y.shape[2:])
    np.testing.assert_array_equal(y[(..., *(slice(0, n) for n in shape))], x)  # the data stay in place


def test_3d_patches_and_augmentation():
    rng = np.random.default_rng(0)
    a = np.arange(20 ** 3, dtype=np.float32).reshape(1, 20, 20, 20)
    fov = np.zeros((20, 20, 20), bool)
    fov[10, 11, 12] = True  # the one allowed centre
    x, y = sample_patches([[a, a.copy()]], [fov], 7, 8, rng)  # odd: the centre stays the centre
    assert x.shape == (8, 1, 7, 7, 7) and (x[:, 0, 3, 3, 3] == a[0, 10, 11, 12]).all()
    xa, ya = augment([x, y], rng, ndim=3)
    np.testing.assert_array_equal(xa, ya)  # the same symmetry on every array
    assert all(sorted(xa[i].ravel()) == sorted(x[i].ravel()) for i in range(8))
    # symmetries of the cube keep the centre voxel's 6 neighbours as a set
    c = lambda b: sorted(b[0, [2, 4, 3, 3, 3, 3], [3, 3, 2, 4, 3, 3], [3, 3, 3, 3, 2, 4]])  # noqa: E731
    assert all(c(xa[i]) == c(x[i]) for i in range(8))
    assert len({xa[i].tobytes() for i in range(8)}) > 1  # and they differ between samples
    with pytest.raises(ValueError, match="ndim"):
        augment([x], rng, ndim=4)


# --- the shipped 2D weights are unchanged -------------------------------------------------
def _reference_unet2d(sd: dict, depth: int, x: torch.Tensor):
    """The 2D U-Net written out with functional ops from the checkpoint's tensors: an
    implementation independent of `UNet`'s layer choice."""

    def block(prefix, t):
        for i in (0, 3):
            t = F.conv2d(t, sd[f"{prefix}.{i}.weight"], padding=1)
            t = F.batch_norm(t, sd[f"{prefix}.{i + 1}.running_mean"], sd[f"{prefix}.{i + 1}.running_var"],
                             sd[f"{prefix}.{i + 1}.weight"], sd[f"{prefix}.{i + 1}.bias"], eps=1e-5)
            t = F.relu(t)
        return t

    skips = []
    for i in range(depth + 1):
        x = block(f"down.{i}", x if i == 0 else F.max_pool2d(x, 2))
        skips.append(x)
    x = skips.pop()
    for j in range(depth):
        up = F.conv_transpose2d(x, sd[f"up.{j}.weight"], sd[f"up.{j}.bias"], stride=2)
        x = block(f"dec.{j}", torch.cat([skips.pop(), up], 1))
    return torch.sigmoid(F.conv2d(x, sd["out.weight"], sd["out.bias"])), x


def test_shipped_2d_checkpoints_load_as_2d_and_give_the_same_outputs():
    from napari_tubediff.models.preprocess import preprocess

    ck_u, ck_r = load_checkpoint(SHIPPED_UNET, "unet"), load_checkpoint(SHIPPED_REFINER, "refiner")
    # the shipped 2D pair (fundus, 2026-11-29) records ndim 2; older 2D files had no ndim
    assert ck_u["config"].get("ndim", 2) == 2 and ck_r["config"].get("ndim", 2) == 2
    bb, lr = UNetBackbone(device="cpu"), LearnedRefiner(device="cpu")
    assert bb.ndim == 2 and lr.ndim == 2 and isinstance(bb.net.out, torch.nn.Conv2d)
    img = 1 - synthetic_vessels((64, 72), seed=3).image  # dark vessels, the polarity it was trained on
    prob, feats = bb.predict_with_features(img)
    assert bb.last_polarity == "dark"  # so the image is not inverted
    with torch.no_grad():
        p_ref, f_ref = _reference_unet2d(ck_u["state_dict"], ck_u["config"]["depth"],
                                         torch.from_numpy(preprocess(img))[None, None])
    np.testing.assert_allclose(prob, p_ref[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(feats, f_ref[0].numpy(), atol=1e-4)
    # the refiner: the head by hand, then the engine's diffusion with the softplus lambdas
    sd, c = ck_r["state_dict"], ck_r["config"]
    with torch.no_grad():
        v = F.conv2d(torch.from_numpy(feats)[None], sd["head.weight"], sd["head.bias"],
                     padding=c["kernel"] // 2)[0].double().numpy()
    norm = np.linalg.norm(v, axis=0)
    v = np.where(norm > 1e-6, v / np.maximum(norm, 1e-12), 0)
    lpar, lperp = (float(F.softplus(sd[k])) for k in ("raw_par", "raw_perp"))
    ref = diffuse(prob, v, lambda_par=lpar, lambda_perp=lperp, dt=c["dt"], steps=5, order=c["order"])
    np.testing.assert_allclose(lr.refine(prob, feats, steps=5), ref, atol=1e-5)
    v_learned, source = vessel_directions(prob, feats)
    assert source == "learned"
    np.testing.assert_allclose(np.abs((v_learned * v).sum(0))[norm > 1e-3], 1, atol=1e-4)


# --- the shipped 3D weights ---------------------------------------------------------------
def test_shipped_3d_weights_are_small_and_load_with_weights_only():
    for path, kind in ((SHIPPED_UNET3D, "unet"), (SHIPPED_REFINER3D, "refiner")):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        assert obj["kind"] == kind and obj["config"]["ndim"] == 3
    assert SHIPPED_UNET3D.stat().st_size + SHIPPED_REFINER3D.stat().st_size < 2 * 2 ** 20
    bb = get_backbone("unet3d", device="cpu")
    r = LearnedRefiner.shipped(3, device="cpu")
    assert isinstance(bb, UNet3DBackbone) and bb.ndim == 3 and r.ndim == 3
    assert r.config["feature_channels"] == bb.net.feature_channels
    assert session.active_refiner(3).weights == SHIPPED_REFINER3D
    with pytest.raises(ValueError, match="3D U-Net takes grey volumes"):
        bb.predict(np.zeros((32, 32), np.float32))


def test_straight_tube_directions_learned_head_for_volumes_and_hessian_along_the_axis():
    # docs/results.md ("The learned directions do not follow the vessels"): only the Hessian
    # directions follow the axis, so volumes get them by default; the shipped head on request
    t = straight_tube([1.0, 2.0, 2.0], gap=5)  # oblique: no axis-aligned shortcut
    prob, feats = UNet3DBackbone(device="cpu").predict_with_features(faded_image(t.volume))
    assert (prob[t.volume.truth & ~t.volume.breaks] >= 0.5).mean() > 0.9  # the 3D U-Net sees the tube
    assert prob[t.volume.breaks].mean() < 0.5  # and not the faded gap
    core = (t.dist <= 1.0) & (np.abs(t.along) > 5) & (np.abs(t.along) < 12)  # off the gap and the faces

    def median_angle(v):
        cos = np.abs(np.tensordot(t.axis, v[:, core], 1))
        return np.median(np.degrees(np.arccos(np.clip(cos, 0, 1))))

    assert vessel_directions(prob, feats)[1] == "hessian"  # the default for volumes
    v, source = vessel_directions(prob, feats, refiner="shipped")
    assert source == "learned" and v.shape == (3, *prob.shape)
    np.testing.assert_allclose(np.linalg.norm(v[:, core], axis=0), 1, atol=1e-5)
    h, source = vessel_directions(prob, None)
    assert source == "hessian" and median_angle(h) < 3


def test_learned_3d_refinement_raises_a_held_out_break():
    # a held-out volume (test seeds, never trained on): faded gaps in the image, the truth unbroken
    s = synthetic_volume(TEST_SEED + 1)
    prob, feats = UNet3DBackbone(device="cpu").predict_with_features(faded_image(s))
    refined = LearnedRefiner.shipped(3, device="cpu").refine(prob, feats)
    gaps = s.breaks
    assert gaps.sum() > 50
    assert refined[gaps].mean() > prob[gaps].mean() + 0.05  # the breaks' probability rises
    assert (refined[gaps] >= 0.5).mean() > (prob[gaps] >= 0.5).mean()
    far = ~ndi.binary_dilation(s.truth, iterations=3)
    assert (refined[far] >= 0.5).mean() < 1e-3  # and nothing appears away from the vessels


# --- the dimension rule of vessel_directions and the session ------------------------------
def test_vessel_directions_pick_the_refiner_of_the_data_dimension(tmp_path):
    rng = np.random.default_rng(0)
    prob3 = rng.random((8, 8, 8)).astype(np.float32)
    feats3 = rng.normal(size=(8, 8, 8, 8)).astype(np.float32)
    assert vessel_directions(prob3, feats3)[1] == "hessian"  # volumes: Hessian unless asked
    assert vessel_directions(prob3, feats3, refiner="shipped")[1] == "learned"
    # a 2D refiner, or features of the wrong channel count, fall back to the Hessian
    assert vessel_directions(prob3, feats3, refiner=LearnedRefiner(device="cpu"))[1] == "hessian"
    assert vessel_directions(prob3, feats3[:4])[1] == "hessian"
    # a loaded 3D refiner serves volumes; images keep the shipped 2D one
    torch.manual_seed(0)
    r = Refiner(feature_channels=8, kernel=3, ndim=3)
    path = save_checkpoint(tmp_path / "r3.pt", "refiner", r.config, r.state_dict())
    session.load_refiner(path)
    assert session.active_refiner(3).weights == path
    assert session.active_refiner(2).weights == SHIPPED_REFINER
    v, _ = vessel_directions(prob3, feats3)
    np.testing.assert_allclose(v, LearnedRefiner(path, device="cpu").head(feats3)[0], atol=1e-6)


# --- training in 3D -----------------------------------------------------------------------
def test_3d_training_loops_run_and_write_3d_checkpoints(tmp_path):
    torch.set_num_threads(1)
    s = [synthetic_vessels((24, 24, 24), seed=k, width=(1.0, 2.0), n_breaks=2) for k in range(2)]
    train_set = ([v.image[None] for v in s], [v.truth[None].astype(np.float32) for v in s],
                 [np.ones((24, 24, 24), bool)] * 2)
    rec = train_backbone(None, tmp_path / "u.pt", BackboneConfig(ndim=3, base=2, depth=1, patch=16, batch=2,
                                                                  iters=3), train_set=train_set,
                         meta={"note": "test"})
    assert rec["updates"] == 3 and rec["note"] == "test"
    bb = UNetBackbone(tmp_path / "u.pt", device="cpu")
    assert bb.ndim == 3 and bb.predict(s[0].image).shape == (24, 24, 24)
    cfg = RefinerConfig(kernel=3, steps=2, crop=16, batch=2, updates=2)
    rec = train_refiner(None, tmp_path / "r.pt", cfg, backbone_weights=tmp_path / "u.pt", train_set=train_set)
    assert rec["updates"] == 2 and rec["module"].ndim == 3
    assert LearnedRefiner(tmp_path / "r.pt", device="cpu").ndim == 3
    with pytest.raises(ValueError, match="cannot train"):
        train_refiner(None, None, RefinerConfig(updates=1), backbone_weights=tmp_path / "u.pt",
                      init=Refiner(feature_channels=2, kernel=3), train_set=train_set)


def test_train_and_evaluate_commands_on_synthetic_volumes(tmp_path, capsys):
    from napari_tubediff.cli import main

    out = tmp_path / "u3.pt"
    assert main(["train", "backbone", "--synthetic3d", "1", "--iters", "2", "--base", "2", "--depth", "1",
                 "--patch", "16", "--batch", "1", "--out", str(out), "--device", "cpu"]) == 0
    ck = load_checkpoint(out, "unet")
    assert ck["config"]["ndim"] == 3
    assert ck["meta"]["data"].endswith(f"seeds {TRAIN_SEED}..{TRAIN_SEED}, clean images")
    assert main(["evaluate", "--synthetic3d", "1", "--methods", "raw,hessian,refine", "--steps", "2",
                 "--refiner", "shipped"]) == 0
    text = capsys.readouterr().out
    assert f"seeds {TEST_SEED}..{TEST_SEED}" in text and "refiner_synth3d.pt" in text
    assert "Hessian dirs" in text and "refine (2 steps)" in text
    assert main(["train", "backbone", "--out", str(out)]) == 2  # neither --data nor --synthetic3d
    assert main(["evaluate", "--methods", "raw"]) == 2
    assert "either --data" in capsys.readouterr().err


# --- devices ------------------------------------------------------------------------------
def test_device_option_on_the_cpu():
    # the models use the project's one device rule (napari_tubediff.core.device, tested there)
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")
    for make in (lambda d: UNetBackbone(device=d), lambda d: LearnedRefiner(device=d),
                 lambda d: get_backbone("unet3d", device=d)):
        assert make("auto").device.type == ("cuda" if CUDA else "cpu")
        with pytest.raises(ValueError, match="device must be"):
            make("warp-drive")
    bb, r = UNetBackbone(device="cpu"), LearnedRefiner(device="cpu")
    assert next(bb.net.parameters()).device.type == "cpu" and r.device.type == "cpu"
    prob, feats = bb.predict_with_features(np.zeros((16, 16), np.float32))
    assert isinstance(prob, np.ndarray) and isinstance(r.refine(prob, feats, steps=1), np.ndarray)


@pytest.mark.skipif(CUDA, reason="checks the error where CUDA is missing")
def test_asking_for_cuda_without_cuda_is_a_clear_error():
    for make in (lambda: UNetBackbone(device="cuda"), lambda: LearnedRefiner(device="cuda"),
                 lambda: get_backbone("unet3d", device="cuda:0"), lambda: resolve_device("cuda")):
        with pytest.raises(ValueError, match="asks for CUDA"):
            make()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("ndim", [2, 3])
def test_cuda_and_cpu_give_the_same_outputs(ndim):
    s = synthetic_vessels((48, 48) if ndim == 2 else (32, 32, 32), seed=2)
    backbone = UNetBackbone if ndim == 2 else UNet3DBackbone
    p_cpu, f_cpu = backbone(device="cpu").predict_with_features(s.image)
    p_gpu, f_gpu = backbone(device="cuda").predict_with_features(s.image)
    assert isinstance(p_gpu, np.ndarray)
    # cuDNN may convolve in TF32 (10-bit mantissa): close, not equal
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-2)
    np.testing.assert_allclose(f_gpu, f_cpu, atol=5e-2, rtol=1e-2)
    r_cpu = LearnedRefiner.shipped(ndim, device="cpu").refine(p_cpu, f_cpu, steps=5)
    r_gpu = LearnedRefiner.shipped(ndim, device="cuda").refine(p_cpu, f_cpu, steps=5)
    assert isinstance(r_gpu, np.ndarray) and r_gpu.dtype == np.float32
    np.testing.assert_allclose(r_gpu, r_cpu, atol=1e-3)
