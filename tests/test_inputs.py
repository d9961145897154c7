"""Hostile input to the library and the CLI (issue 11, "Trust"): every case ends in one
clear ValueError (exit 2 from the CLI), a warning, or the right answer; never a hang, a
traceback or a silent wrong result. docs/reliability.md lists the cases with these tests."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from napari_tubediff.batch.chunked import refine_chunked
from napari_tubediff.cli import main
from napari_tubediff.core import _kernels, checks
from napari_tubediff.core.diffusion import MAX_SUBSTEPS, check_plan, diffuse, iter_diffusion, max_stable_dt
from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.metrics import betti_numbers, count_components, dice, evaluate
from napari_tubediff.core.refine import RefineSettings, refine
from napari_tubediff.core.stencils import fd_weights
from napari_tubediff.models.backbones import TorchScriptBackbone, UNetBackbone
from napari_tubediff.models.preprocess import preprocess
from napari_tubediff.models.refiner import LearnedRefiner
from napari_tubediff.models.unet import UNet
from napari_tubediff.models.weights import load_checkpoint, save_checkpoint, unet_parameters
from napari_tubediff.training.finetune import FinetuneConfig, check_training_inputs
from napari_tubediff.training.labels import check_targets, label_mask
from napari_tubediff.training.refiner import RefinerConfig
from napari_tubediff.training.train import BackboneConfig, train_backbone


@pytest.fixture(scope="module")
def unet():
    return UNetBackbone(device="cpu")


def _line(u):
    u = np.zeros((32, 32), np.float32)
    u[16, 4:28] = 1
    v = np.zeros((2, 32, 32), np.float32)
    v[1] = 1
    return u, v


# ------------------------------------------------------------------ silent wrong results
@pytest.mark.parametrize("image", [np.zeros((64, 64), np.uint8), np.full((64, 64, 3), 128, np.uint8),
                                   np.full((96, 80), 0.3, np.float32)], ids=["zeros", "grey-rgb", "float"])
def test_a_blank_image_has_no_vessels(unet, image):
    # before: the shipped U-Net called 99.8 % of a blank image vessel (CLAHE tiles and the
    # standardisation of a zero-variance image invent contrast)
    assert not preprocess(image).any()
    with pytest.warns(UserWarning, match="constant"):
        prob, feats = unet.predict_with_features(image)
    assert prob.shape == image.shape[:2] and not prob.any()
    assert feats.shape[1:] == prob.shape


def test_a_blank_field_of_view_has_no_vessels(unet):
    img = np.zeros((64, 64), np.uint8)
    fov = np.zeros((64, 64), bool)
    fov[8:56, 8:56] = True
    img[fov] = 90  # black outside, constant inside: no contrast where it counts
    with pytest.warns(UserWarning, match="constant"):
        assert not unet.predict(img, fov).any()


def test_an_image_with_contrast_is_not_called_blank(unet):
    from napari_tubediff.data.synthetic import synthetic_vessels

    s = synthetic_vessels((64, 64), seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "constant" warning
        prob = unet.predict(s.image)
    assert prob.max() > 0.5  # the blank rule did not fire: the field is not emptied


@pytest.mark.parametrize("u, match", [(np.full((8, 8), np.nan), "NaN"), (np.zeros((8, 8, 3)), "colour"),
                                      (np.zeros((8, 8), complex), "real numeric")])
def test_refine_with_zero_steps_still_checks_its_input(u, match):
    with pytest.raises(ValueError, match=match):
        refine(u, steps=0)


def test_refine_with_zero_steps_returns_the_field_and_checks_directions():
    u, v = _line(None)
    out = refine(u, steps=0)
    assert out is not u and np.array_equal(out, u)
    with pytest.raises(ValueError, match="shape"):
        refine(u, np.zeros((2, 8, 8)), steps=0)


def test_labels_are_read_from_their_values():
    a = np.zeros((4, 4), np.uint8)
    a[1, :] = 1  # a 0/1 PNG: with "> 127" it held no vessel
    assert label_mask(a).sum() == 4
    assert label_mask(a * 255).sum() == 4 and label_mask(a.astype(bool)).sum() == 4
    assert label_mask(a * 3).sum() == 4  # napari label ids: every non-zero id is vessel
    with pytest.raises(ValueError, match="256 distinct values"):
        label_mask(np.arange(256, dtype=np.uint8).reshape(16, 16))  # a grey ramp
    with pytest.raises(ValueError, match="distinct values"):
        label_mask(np.linspace(0, 1, 16).reshape(4, 4))  # a probability map
    with pytest.raises(ValueError, match="NaN"):
        label_mask(np.full((2, 2), np.nan))


def test_finetune_labels_zero_one_ramp_and_all_vessel():
    img = np.zeros((16, 16), np.uint8)
    lab = np.zeros((16, 16), np.uint8)
    lab[8, :] = 1
    ys, _ = check_training_inputs([img], [lab])
    assert ys[0].sum() == 16
    with pytest.raises(ValueError, match="distinct values"):
        check_training_inputs([img], [np.arange(256, dtype=np.uint8).reshape(16, 16)])
    with pytest.raises(ValueError, match="every pixel"):
        check_training_inputs([img], [np.ones((16, 16), np.uint8)])
    mostly = np.ones((16, 16), np.uint8)
    mostly[0, :] = 0
    with pytest.warns(UserWarning, match="inverted"):
        check_training_inputs([img], [mostly])


def test_training_targets_must_be_zero_one_masks():
    fov = np.ones((16, 16), bool)
    check_targets([np.zeros((1, 16, 16), np.float32)], [fov])  # no vessel: allowed (a negative)
    with pytest.raises(ValueError, match="other than 0 and 1"):
        check_targets([np.full((1, 16, 16), 255, np.float32)], [fov])
    with pytest.raises(ValueError, match="every pixel"):
        check_targets([np.ones((1, 16, 16), np.float32)], [fov])
    ramp = np.linspace(0, 255, 256, dtype=np.float32).reshape(1, 16, 16)
    with pytest.raises(ValueError, match="other than 0 and 1"):  # refused before any update
        train_backbone(None, None, BackboneConfig(base=2, depth=1, patch=8, batch=1, iters=1),
                       train_set=([np.zeros((1, 16, 16), np.float32)], [ramp], [fov]))


def test_a_torchscript_backbone_returning_nan_is_refused(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return x * float("nan")

    path = tmp_path / "nan.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Broken()).save(str(path))
        bb = TorchScriptBackbone(path, device="cpu")
    img = np.zeros((16, 16), np.uint8)
    img[8] = 255
    with pytest.raises(ValueError, match="NaN"):
        bb.predict(img)


# ------------------------------------------------------------------ hangs
def test_a_huge_dt_or_lambda_is_refused_with_the_largest_sensible_dt():
    u, v = _line(None)
    best = max_stable_dt(1.0, 0.1, 8, 2) * MAX_SUBSTEPS  # one step may take every sub-step
    with pytest.raises(ValueError, match=re.escape(f"use dt <= {best:.3g} for 1 step")):
        diffuse(u, v, dt=1e9, steps=1)
    with pytest.raises(ValueError, match="lambda_par up to 1e\\+06"):
        diffuse(u, v, lambda_par=1e6, dt=0.25, steps=30)
    with pytest.raises(ValueError, match="steps"):
        diffuse(u, v, dt=0.25, steps=10**12)
    # the suggested dt is within the limit (no off-by-one in the bound)
    assert check_plan(best * 0.999, 1, 1.0, 0.1, 8, 2) <= MAX_SUBSTEPS


def test_the_refuse_happens_before_any_step_in_the_iterator_and_in_blocks():
    u, v = _line(None)
    with pytest.raises(ValueError, match="sub-steps"):
        next(iter_diffusion(u, v, dt=1e9, steps=1))
    with pytest.raises(ValueError, match="sub-steps"):
        refine_chunked(u, RefineSettings(dt=1e9), chunks=16)  # before the graph is built


def test_memory_is_estimated_before_the_work(monkeypatch, unet):
    monkeypatch.setattr(checks, "available_memory", lambda: 1 << 20)  # 1 MiB free
    u = np.zeros((256, 256), np.float32)
    with pytest.raises(ValueError, match=r"needs about 3 MiB \(42 bytes per pixel\).*tubediff refine FOLDER"):
        refine(u)
    with pytest.raises(ValueError, match="the diffusion of 256x256"):
        diffuse(u, np.zeros((2, 256, 256), np.float32), dt=0.25, steps=1)
    with pytest.raises(ValueError, match="U-Net on 256x256 needs about 23 MiB"):
        unet.predict(np.zeros((256, 256), np.uint8))


def test_available_memory_is_a_plausible_figure():
    n = checks.available_memory()
    assert 0 < n <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ tracebacks before
@pytest.mark.parametrize("shape", [(3, 3), (1, 50), (7, 64)])
def test_images_smaller_than_the_unet_padding(unet, shape):
    with pytest.raises(ValueError, match="at least 8 pixels"):
        unet.predict(np.ones(shape, np.uint8))


def test_segment_cli_refuses_a_tiny_image(tmp_path, capsys):
    from napari_tubediff.data.io import write_image

    write_image(tmp_path / "tiny.png", np.eye(3, dtype=np.uint8) * 255)
    assert main(["segment", str(tmp_path / "tiny.png"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tubediff: error: tiny.png: image of shape (3, 3) is too small")


def test_parameter_count_matches_torch():
    for cfg in [dict(in_channels=1, base=16, depth=3, ndim=2), dict(in_channels=1, base=8, depth=2, ndim=3)]:
        assert unet_parameters(**cfg) == sum(p.numel() for p in UNet(**cfg).parameters())


@pytest.mark.parametrize("config, match", [
    ({"in_channels": 1, "base": 10**6, "depth": 3}, "base=1000000 is out of range"),
    ({"in_channels": 1, "base": 512, "depth": 8, "ndim": 3}, "parameters"),  # 5 TiB of weights
    ({"in_channels": 1, "base": 16, "depth": 3, "evil": 1}, "unknown config entry"),
    ({"in_channels": 1, "base": "16", "depth": 3}, "out of range"),
])
def test_a_checkpoint_config_is_validated_before_building(tmp_path, config, match):
    save_checkpoint(tmp_path / "bad.pt", "unet", config, {})
    with pytest.raises(ValueError, match=match):
        UNetBackbone(tmp_path / "bad.pt", device="cpu")


@pytest.mark.parametrize("chunks", [0, -3, (0, 4), (-2, 4), 1.5, "abc", True])
def test_refine_chunked_refuses_bad_chunks(chunks):
    with pytest.raises(ValueError, match="chunks must be"):
        refine_chunked(np.zeros((32, 32), np.float32), chunks=chunks)


def test_refine_chunked_on_an_array_smaller_than_the_halo_equals_refine():
    # the directions' halo (14 pixels at sigma 3) is larger than the 10 x 12 array: dask
    # refused ("depth larger than your array"); clamped to the array, it stays exact
    u = np.zeros((10, 12), np.float32)
    u[4:6, 1:5] = u[4:6, 7:11] = 1
    s = RefineSettings(steps=3)
    np.testing.assert_array_equal(refine_chunked(u, s, chunks=5).compute(), refine(u, settings=s))


def test_refine_chunked_zero_steps_checks_blocks():
    out = refine_chunked(np.full((8, 8), np.nan, np.float32), RefineSettings(steps=0), chunks=4)
    with pytest.raises(ValueError, match="NaN"):
        out.compute()


@pytest.mark.parametrize("mask", [np.zeros((2, 2, 2, 2), bool), np.zeros(5, bool)], ids=["4D", "1D"])
def test_betti_numbers_and_components_refuse_other_dimensions(mask):
    with pytest.raises(ValueError, match="2D or 3D"):
        betti_numbers(mask)
    with pytest.raises(ValueError, match="2D or 3D"):
        count_components(mask)


def test_metrics_refuse_empty_nan_and_complex_masks():
    with pytest.raises(ValueError, match="empty"):
        dice(np.zeros((0, 4)), np.zeros((0, 4)))  # was 1.0
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.full((8, 8), np.nan), np.zeros((8, 8)))  # was a perfect score
    with pytest.raises(ValueError, match="real"):
        evaluate(np.zeros((8, 8), complex), np.zeros((8, 8)))


# ------------------------------------------------------------------ misleading messages
def test_a_corrupt_or_foreign_checkpoint_gets_our_own_line(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 10)
    torch.save({"a": np.zeros(3)}, tmp_path / "numpy.pt")  # a pickle with numpy objects
    for name in ("garbage.pt", "numpy.pt"):
        with pytest.raises(ValueError) as e:
            load_checkpoint(tmp_path / name, "unet")
        msg = str(e.value)
        assert "weights_only" not in msg and "\n" not in msg
        assert msg.endswith("only checkpoints written by napari-tubediff are loaded")


def test_negative_steps_speak_of_steps():
    u, v = _line(None)
    for call in (lambda: refine(u, steps=-1), lambda: next(iter_diffusion(u, v, dt=0.2, steps=-1)),
                 lambda: refine(u, steps=1.5)):
        with pytest.raises(ValueError, match="^steps must be a whole number >= 0"):
            call()


def test_cli_refine_negative_steps(tmp_path, capsys):
    from napari_tubediff.data.io import write_image

    write_image(tmp_path / "p.tif", np.zeros((16, 16), np.float32))
    assert main(["refine", str(tmp_path / "p.tif"), "--out", str(tmp_path / "o"), "--steps", "-1"]) == 2
    assert "tubediff: error: steps must be a whole number >= 0, got -1" in capsys.readouterr().err


# ------------------------------------------------------------------ found as a hostile tester
@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma=1e9), "larger than the image"),  # was a 60 GiB allocation (MemoryError)
    (dict(sigma="3"), "sigma must be a number > 0"),
    (dict(order=200), "even integer from 2 to 64"),  # NaN stencil weights from order 172 on
])
def test_refine_bad_numbers(kwargs, match):
    u, _ = _line(None)
    with pytest.raises(ValueError, match=match):
        refine(u, **kwargs)


def test_thin_strips_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="too thin"):
        estimate_directions(np.ones((1, 20)) * 0.5, 0.5)  # was numpy's "edge_order + 1" message
    assert fd_weights(64).shape == (65,)


def test_learned_refiner_checks_its_features():
    r = LearnedRefiner(device="cpu")
    p = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match=r"features of shape \(16, \*spatial\)"):
        r.refine(p, np.zeros((8, 16, 16), np.float32))  # was a torch RuntimeError
    with pytest.raises(ValueError, match="NaN"):
        r.refine(p, np.full((16, 16, 16), np.nan, np.float32))  # was silently isotropic
    # features on another grid come from a backbone run at its working scale: the
    # diffusion runs on their grid and the field comes back at the probability's size
    assert r.refine(p, np.zeros((16, 12, 16), np.float32)).shape == (16, 16)
    with pytest.raises(ValueError, match="NaN"):
        r.refine(p, np.full((16, 12, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match="real numbers"):
        r.refine(p, np.zeros((16, 16, 16), complex))


@pytest.mark.parametrize("make, match", [
    (lambda: BackboneConfig(batch=0), "batch must be a whole number from 1 to 4096"),
    (lambda: BackboneConfig(lr=float("nan")), "lr must be a finite number"),
    (lambda: BackboneConfig(depth=3, patch=4), "patch must be a whole number >= 8"),
    (lambda: BackboneConfig(iters=0), "iters"),
    (lambda: RefinerConfig(kernel=4), "kernel must be odd"),
    (lambda: RefinerConfig(dt=1e9), "dt must be"),
    (lambda: RefinerConfig(loss="mse"), "loss must be one of"),
    (lambda: RefinerConfig(checkpoint="yes"), "checkpoint must be"),
    (lambda: FinetuneConfig(crop=0), "crop must be"),
    (lambda: FinetuneConfig(updates=-1), "updates"),
])
def test_training_configs_refuse_bad_numbers(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("argv, match", [
    (["evaluate", "--synthetic3d", "1", "--limit", "-1"], "--limit must be at least 1"),
    (["evaluate", "--synthetic3d", "1", "--steps", "-3"], "--steps must be a whole number"),
    (["evaluate", "--synthetic3d", "1", "--threads", "-1"], "--threads must be 0"),
    (["demo", "--size", "32", "--dt", "1e9"], "sub-steps"),
    (["demo", "--size", "32", "--sigma", "nan"], "sigma must be a finite number"),
])
def test_cli_bad_numbers_are_one_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_cli_memory_error_is_one_line(monkeypatch, capsys):
    import napari_tubediff.data.synthetic as syn

    def boom(*a, **k):
        raise MemoryError("Unable to allocate 37.3 GiB")

    monkeypatch.setattr(syn, "synthetic_vessels", boom)
    assert main(["demo", "--size", "100000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tubediff: error: not enough memory (Unable to allocate 37.3 GiB); use a smaller input"]


# ------------------------------------------------------------------ TBB
@pytest.mark.skipif(not _kernels.AVAILABLE, reason="numba not installed")
def test_the_active_threading_layer_is_the_chosen_one():
    import numba

    u, v = _line(None)
    diffuse(u, v, dt=0.2, steps=1, backend="numba")  # a parallel kernel: numba has started its pool
    layer = numba.threading_layer()
    assert layer == _kernels.threading_layer()
    forced = os.environ.get("NUMBA_THREADING_LAYER")
    if forced and forced in ("tbb", "omp", "workqueue"):
        assert layer == forced
        return
    try:
        from importlib.metadata import version

        has_tbb = bool(version("tbb"))
    except Exception:
        has_tbb = False
    if has_tbb and sys.platform == "linux" and platform.machine() == "x86_64":
        # the tbb wheel's library sits in <prefix>/lib, off the loader's path in a venv
        assert _kernels.TBB_LIBRARY is not None
        assert layer == "tbb"
    else:
        assert layer in _kernels.LAYER_PRIORITY


@pytest.mark.skipif(not _kernels.AVAILABLE, reason="numba not installed")
def test_version_reports_the_layer_and_respects_the_users_choice():
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    out = subprocess.run([sys.executable, "-m", "napari_tubediff.cli", "--version"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert out.stdout.strip().endswith("(numba threading layer: workqueue)")


def test_direction_options_are_checked():
    u, _ = _line(None)
    with pytest.raises(ValueError, match="rel_threshold"):
        estimate_directions(u, 2.0, rel_threshold=float("nan"))  # was: every flat pixel got a direction
    with pytest.raises(ValueError, match="rel_threshold"):
        estimate_directions(u, 2.0, rel_threshold=-1)
    with pytest.raises(ValueError, match="bright"):
        estimate_directions(u, 2.0, bright="yes")


@pytest.mark.parametrize("argv, match", [
    (["bench", "--cases", "nope"], "unknown case 'nope'"),  # was "tubediff: error: nope"
    (["bench", "--cases", "drive", "--min-time", "nan"], "min_time must be seconds"),
    (["bench", "--cases", "drive", "--min-time", "-1"], "min_time must be seconds"),
])
def test_bench_bad_options(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err.strip().splitlines()[-1]


def test_cli_segment_of_a_blank_image_warns_in_one_line_and_writes_an_empty_field(tmp_path, capsys):
    from napari_tubediff.data.io import read_image, write_image

    write_image(tmp_path / "blank.png", np.zeros((32, 32), np.uint8))
    assert main(["segment", str(tmp_path / "blank.png"), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "tubediff: warning: the image is constant" in err and "UserWarning" not in err
    assert not read_image(tmp_path / "o" / "blank_prob.tif").any()


def test_values_beyond_float32_are_named_as_such():
    with pytest.raises(ValueError, match=r"in \[0, 1\], got values in \[1e\+300"):
        refine(np.full((8, 8), 1e300), steps=0)  # was "contains 64 NaN or infinite value(s)"
    with pytest.raises(ValueError, match="beyond float32's range"):
        estimate_directions(np.full((8, 8), 1e300), 2.0)


def test_cli_finetune_reads_zero_one_labels_as_binary(tmp_path, capsys):
    from napari_tubediff.data.io import write_image
    from napari_tubediff.data.synthetic import synthetic_vessels

    s = synthetic_vessels((64, 64), seed=2)
    write_image(tmp_path / "img.png", (s.image * 255).astype(np.uint8))
    write_image(tmp_path / "lab.png", s.truth.astype(np.uint8))  # 0/1: "> 127" read it as empty
    argv = ["finetune", "--images", str(tmp_path / "img.png"), "--labels", str(tmp_path / "lab.png"),
            "--out", str(tmp_path / "r.pt"), "--updates", "1", "--crop", "32", "--batch", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "r.pt").is_file()
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    write_image(tmp_path / "ramp.png", ramp)
    argv[4] = str(tmp_path / "ramp.png")
    argv[6] = str(tmp_path / "r2.pt")
    assert main(argv) == 2
    assert "distinct values" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "r2.pt").exists()
