from functools import partial

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


def _saved_bytes(fn) -> int:
    """Bytes of the distinct storages the autograd graph saves while ``fn`` runs (each
    storage once: the directions' components are shared by every step)."""
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def test_checkpointing_gives_the_same_gradients_to_the_head_and_the_lambdas():
    from napari_tubediff.models.refiner import Refiner

    torch.manual_seed(0)
    r = Refiner(feature_channels=3, kernel=3)
    u = torch.from_numpy(smooth_field((20, 20), sigma=1.0))[None, None]
    f = torch.randn(1, 3, 20, 20)
    target = (u > 0.5).float()
    grads = []
    for ck in (False, True):
        r.zero_grad()
        out = r(u, f, steps=4, checkpoint=ck)
        torch.nn.functional.binary_cross_entropy(out.clamp(1e-4, 1 - 1e-4), target).backward()
        grads.append([p.grad.clone() for p in (r.raw_par, r.raw_perp, r.head.weight, r.head.bias)])
    for a, b in zip(*grads, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_checkpointing_keeps_one_field_per_step_in_the_graph():
    u = torch.from_numpy(smooth_field((32, 32), sigma=1.0))[None, None]
    v = torch.from_numpy(random_directions((32, 32)))[None]
    field = u.numel() * u.element_size()
    saved = {}
    for ck in (False, True):
        for n in (4, 16):
            lam = torch.tensor(1.0, requires_grad=True)
            run = partial(diffuse_t, u, v, lam, 0.05, dt=0.2, steps=n, checkpoint=ck)
            out, saved[ck, n] = _saved_bytes(run)
            out.sum().backward()  # the recomputation runs and reaches the lambda
            assert lam.grad > 0
    # without: every RK4 stage's intermediates, ~25 fields per step, 4x the steps -> ~4x the bytes
    assert 3.5 < saved[False, 16] / saved[False, 4] < 4.5
    assert saved[False, 16] > 20 * 16 * field
    # with: one field per step (each step's input) and the shared directions' components
    assert saved[True, 16] - saved[True, 4] <= 12 * field * 1.01
    assert saved[True, 16] < saved[False, 16] / 10


def test_checkpointing_changes_nothing_without_grad():
    u = torch.from_numpy(smooth_field((16, 16), sigma=1.0))[None, None]
    v = torch.from_numpy(random_directions((16, 16)))[None]
    with torch.no_grad():
        a = diffuse_t(u, v, 1.0, 0.05, dt=0.2, steps=3, checkpoint=True)
    b = diffuse_t(u, v, 1.0, 0.05, dt=0.2, steps=3)
    assert torch.equal(a, b)


def test_refiner_checkpoints_by_default_from_20_steps():
    from napari_tubediff.models.refiner import CHECKPOINT_FROM, Refiner

    r = Refiner(feature_channels=2, kernel=1)
    u, f = torch.rand(1, 1, 12, 12), torch.randn(1, 2, 12, 12)
    saved = {ck: _saved_bytes(partial(r, u, f, steps=CHECKPOINT_FROM, checkpoint=ck))[1]
             for ck in (None, False, True)}
    assert saved[None] == saved[True] < saved[False] / 5
    below = {ck: _saved_bytes(partial(r, u, f, steps=CHECKPOINT_FROM - 1, checkpoint=ck))[1]
             for ck in (None, False)}
    assert below[None] == below[False]


def test_train_refiner_command_passes_checkpoint_on(tmp_path):
    from napari_tubediff.cli import main
    from napari_tubediff.models.weights import load_checkpoint

    out = tmp_path / "r.pt"
    assert main(["train", "refiner", "--synthetic3d", "1", "--updates", "1", "--steps", "2", "--crop", "16",
                 "--batch", "1", "--checkpoint", "--out", str(out), "--device", "cpu"]) == 0
    assert load_checkpoint(out, "refiner")["meta"]["config"]["checkpoint"] is True
