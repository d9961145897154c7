"""The device option: automatic by default, CPU without CUDA packages, CUDA when present."""

import numpy as np
import pytest
import torch

from napari_tubediff import diffuse
from napari_tubediff.core.device import resolve_device
from napari_tubediff.core.diffusion import _resolve_backend
from napari_tubediff.core.refine import refine

HAS_CUDA = torch.cuda.is_available()


def _line_with_gap(shape=(32, 32)):
    u = np.zeros(shape, np.float32)
    u[16, 4:13] = u[16, 19:28] = 1
    v = np.zeros((2, *shape), np.float32)
    v[1] = 1
    return u, v


def test_auto_follows_torch_and_cpu_is_always_cpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) == resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")


def test_auto_picks_cuda_and_the_torch_backend_when_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    # numba runs on the CPU only: on CUDA the engine takes the torch path
    assert _resolve_backend("auto", "cuda") == "torch"
    assert _resolve_backend("auto", "cpu") in ("numba", "numpy")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "cuda:x", ""])
def test_unknown_device_names_are_refused(bad):
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(bad)


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="asks for CUDA"):
        resolve_device("cuda")
    u, v = _line_with_gap()
    with pytest.raises(ValueError, match="asks for CUDA"):
        diffuse(u, v, dt=0.2, steps=2, device="cuda")


def test_cpu_backends_refuse_a_gpu_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    u, v = _line_with_gap()
    with pytest.raises(ValueError, match="runs on the CPU"):
        diffuse(u, v, dt=0.2, steps=2, backend="numba", device="cuda")


def test_torch_backend_on_cpu_device_matches_the_kernel():
    u, v = _line_with_gap()
    a = diffuse(u, v, lambda_par=1.0, lambda_perp=0.02, dt=0.25, steps=12, device="cpu")
    b = diffuse(u, v, lambda_par=1.0, lambda_perp=0.02, dt=0.25, steps=12, backend="torch", device="cpu")
    assert a[16, 15] > 0.05  # the gap filled: the comparison is not between two zero fields
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(refine(u, steps=5, device="cpu"), refine(u, steps=5), atol=0)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("shape", [(64, 72), (24, 32, 40)])
def test_cuda_gives_the_cpu_answer(shape):
    rng = np.random.default_rng(0)
    u = rng.random(shape).astype(np.float32)
    v = rng.standard_normal((len(shape), *shape)).astype(np.float32)
    v /= np.linalg.norm(v, axis=0)
    cpu = diffuse(u, v, lambda_perp=0.05, dt=0.2, steps=5, device="cpu")
    gpu = diffuse(u, v, lambda_perp=0.05, dt=0.2, steps=5, device="cuda")
    np.testing.assert_allclose(gpu, cpu, atol=1e-5)
