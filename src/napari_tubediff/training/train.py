"""Training loops for the backbone and the refiner (CPU or CUDA), with fixed seeds,
progress bars and atomic checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..data.drive import read_drive
from ..models.preprocess import preprocess
from ..models.unet import UNet
from ..models.weights import save_checkpoint
from .labels import check_targets
from .losses import mixed_loss
from .sampling import augment, sample_patches, unpack_train_set
from .validate import check_numbers


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@dataclass
class BackboneConfig:
    """The U-Net's size (``ndim`` 2 or 3), patches and optimiser; the defaults are the shipped
    DRIVE U-Net's (docs/models.md)."""

    base: int = 16
    depth: int = 3
    patch: int = 48
    batch: int = 32
    iters: int = 2000
    lr: float = 1e-3
    loss: str = "bce"
    seed: int = 0
    ndim: int = 2

    def __post_init__(self):
        check_numbers(self, {"base": (int, 1, 512), "depth": (int, 0, 8), "batch": (int, 1, 4096),
                             "iters": (int, 1, None), "lr": (float, 1e-12, 10), "seed": (int, 0, None),
                             "ndim": (int, 2, 3)})
        check_numbers(self, {"patch": (int, 2 ** self.depth, None)})  # the U-Net halves it depth times


def load_training_set(data, split: str = "training"):
    """Preprocessed inputs, targets and FOVs of a DRIVE-layout split."""
    items = read_drive(data, split)
    xs, ys, fs = [], [], []
    for it in items:
        fov = it.fov()
        xs.append(preprocess(it.image(), fov)[None])
        truth = it.truth()
        if truth is None:
            raise ValueError(f"{it.name} has no ground truth: training needs 1st_manual")
        ys.append(truth.astype(np.float32)[None])
        fs.append(fov)
    return items, xs, ys, fs


def train_backbone(data, out, cfg: BackboneConfig | None = None, *, device: str = "cpu",
                   progress: Callable | None = None, log: Callable[[str], None] | None = None,
                   train_set=None, meta: dict | None = None) -> dict:
    """Train the U-Net on random patches of a DRIVE-layout training split; save to ``out``.

    Adam with cosine annealing, BCE (or Dice / soft-clDice mix) inside the FOV,
    rot90/flip augmentation (3D: the cube's symmetries), fixed seed. ``train_set``
    may give ``(inputs, targets, fovs)`` directly (lists of ``(1, *spatial)``,
    ``(1, *spatial)`` and ``(*spatial)`` arrays, e.g. synthetic volumes for
    ``cfg.ndim = 3``; optionally a fourth list, where patch centres may fall:
    `unpack_train_set`) instead of reading ``data``; ``meta`` is added to the record.
    Returns the training record (also stored in the checkpoint).

    Examples
    --------
    >>> from napari_tubediff.data.synthetic import synthetic_vessels
    >>> s = synthetic_vessels((32, 32), seed=0)
    >>> rec = train_backbone(None, None, BackboneConfig(base=2, depth=1, patch=16, batch=2, iters=2),
    ...                      train_set=([s.image[None]], [s.truth[None].astype("float32")],
    ...                                 [np.ones((32, 32), bool)]))
    >>> rec["updates"], rec["config"]["ndim"]
    (2, 2)
    """
    cfg = cfg or BackboneConfig()
    rng = seed_everything(cfg.seed)
    if train_set is None:
        items, xs, ys, fs = load_training_set(data)
        names, centres = [it.name for it in items], fs
    else:
        (xs, ys, fs, centres), names = unpack_train_set(train_set), None
    check_targets(ys, fs)
    arrays = [[x, y, f.astype(np.float32)[None]] for x, y, f in zip(xs, ys, fs, strict=True)]
    net = UNet(base=cfg.base, depth=cfg.depth, ndim=cfg.ndim).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iters)
    it = range(cfg.iters)
    bar = progress(it) if progress else it
    t0 = time.time()
    losses = []
    net.train()
    for i in bar:
        xb, yb, fb = augment(sample_patches(arrays, centres, cfg.patch, cfg.batch, rng), rng, cfg.ndim)
        losses.append(backbone_step(net, opt, sched, (xb, yb, fb), cfg.loss, device))
        if log and (i + 1) % 100 == 0:
            log(f"iter {i + 1}/{cfg.iters}  loss {np.mean(losses[-100:]):.4f}  {time.time() - t0:.0f}s")
        if hasattr(bar, "set_postfix") and (i + 1) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    record = {"config": asdict(cfg), "seconds": time.time() - t0, "updates": len(losses),
              "first_loss": float(np.mean(losses[:20])), "final_loss": float(np.mean(losses[-20:])),
              "images": names if names is not None else f"{len(xs)} given arrays", "device": str(device),
              "torch": torch.__version__, "threads": torch.get_num_threads(), **(meta or {})}
    if out is not None:
        save_checkpoint(out, "unet", net.config, net.state_dict(), record)
    record["module"] = net.eval()
    return record



def backbone_step(net, opt, sched, batch, loss_kind: str, device="cpu") -> float:
    """One update of a U-Net on a batch ``(images, targets, weights)`` of numpy arrays: the
    loss (`losses.mixed_loss` of the sigmoid), a step of ``opt`` and of ``sched``. Returns
    the loss. Shared by `train_backbone` and the multi-camera training (`training.fundus`)."""
    xb, yb, fb = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in batch)
    logits, _ = net(xb)
    loss = mixed_loss(torch.sigmoid(logits), yb, fb, kind=loss_kind)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()

def cosine_restarts(opt, period: int):
    """Cosine annealing restarted every ``period`` updates (METHOD.md's refiner schedule)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * (step % period) / period)) + 1e-3)
