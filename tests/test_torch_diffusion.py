import numpy as np
import pytest
import torch

from napari_tubediff import diffuse
from napari_tubediff.core.torch_diffusion import diffuse_t

from .test_diffusion import random_directions, smooth_field


@pytest.mark.parametrize("shape", [(48, 40), (10, 14, 12)])
def test_torch_equals_numpy_after_10_steps_in_float32(shape):
    u = smooth_field(shape, sigma=1.0)
    v = random_directions(shape, sigma=1.0)
    ref = diffuse(u, v, lambda_par=1.0, lambda_perp=0.1, dt=0.2, steps=10, backend="numpy")
    out = diffuse_t(torch.from_numpy(u)[None, None], torch.from_numpy(v)[None],
                    1.0, 0.1, dt=0.2, steps=10)
    assert out.dtype == torch.float32
    assert np.abs(out[0, 0].numpy() - ref).max() < 1e-5
    assert np.abs(ref - u).max() > 1e-3


def test_batch_items_are_independent():
    u = np.stack([smooth_field((24, 24), seed=s) for s in (0, 1)])
    v = np.stack([random_directions((24, 24), seed=s) for s in (2, 3)])
    out = diffuse_t(torch.from_numpy(u)[:, None], torch.from_numpy(v), 1.0, 0.1, dt=0.2, steps=5)
    for k in range(2):
        ref = diffuse(u[k], v[k], lambda_par=1.0, lambda_perp=0.1, dt=0.2, steps=5, backend="numpy")
        assert np.abs(out[k, 0].numpy() - ref).max() < 1e-5


def test_gradients_reach_lambdas_directions_and_field():
    u = torch.from_numpy(smooth_field((20, 20), sigma=1.0))[None, None].requires_grad_()
    v = torch.from_numpy(random_directions((20, 20)))[None].requires_grad_()
    lpar = torch.tensor(1.0, requires_grad=True)
    lperp = torch.tensor(0.1, requires_grad=True)
    out = diffuse_t(u, v, lpar, lperp, dt=0.1, steps=3)
    out.sum().backward()
    for t in (u, v, lpar, lperp):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # more diffusion raises a field that can only grow: d(sum)/d(lambda) >= 0
    assert lpar.grad > 0


def test_gradcheck_in_float64():
    rng = np.random.default_rng(0)
    u = torch.tensor(0.2 + 0.6 * rng.random((1, 1, 8, 9)), requires_grad=True)
    v = torch.tensor(random_directions((8, 9), sigma=1.0)[None], dtype=torch.float64)
    lam = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)

    def f(u, lam):
        return diffuse_t(u, v, lam, 0.1, dt=0.05, steps=2, relu=False)

    assert torch.autograd.gradcheck(f, (u, lam), eps=1e-6, atol=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError, match="N, 1"):
        diffuse_t(torch.zeros(2, 8, 8), torch.zeros(2, 2, 8, 8), dt=0.1, steps=1)
    with pytest.raises(ValueError, match="directions"):
        diffuse_t(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8), dt=0.1, steps=1)
