"""Training the refiner (direction head and lambdas) on a frozen backbone."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.diffusion import check_plan
from ..models.backbones import SHIPPED_UNET
from ..models.refiner import Refiner
from ..models.unet import UNet
from ..models.weights import load_checkpoint, load_state, save_checkpoint
from .labels import check_targets
from .losses import mixed_loss
from .sampling import augment, sample_patches, unpack_train_set
from .train import cosine_restarts, load_training_set, seed_everything
from .validate import check_numbers


@dataclass
class RefinerConfig:
    """METHOD.md trains with batch 64 on 512 x 512 crops for 400 updates on a GPU; the
    CPU defaults are smaller (batch 4, 256 x 256, 200 updates) and say so in the model card."""

    kernel: int = 9
    steps: int = 10
    dt: float = 0.2
    lambda_par: float = 1.0
    lambda_perp: float = 0.05
    per_pixel: bool = False
    crop: int = 256
    batch: int = 4
    updates: int = 200
    restart: int = 10
    lr: float = 1e-3
    loss: str = "bce"
    alpha: float = 0.5
    tune_backbone: bool = False
    seed: int = 0
    #: gradient checkpointing of each RK4 step (`core.torch_diffusion.diffuse_t`); None: on
    #: from `models.refiner.CHECKPOINT_FROM` (20) steps, where the graph's memory grows large
    checkpoint: bool | None = None

    def __post_init__(self):
        check_numbers(self, {"kernel": (int, 1, 13), "steps": (int, 0, 1000), "dt": (float, 1e-6, 100),
                             "lambda_par": (float, 0, 1e3), "lambda_perp": (float, 0, 1e3),
                             "crop": (int, 8, None), "batch": (int, 1, 4096), "updates": (int, 0, None),
                             "restart": (int, 1, None), "lr": (float, 1e-12, 10), "alpha": (float, 0, 1),
                             "seed": (int, 0, None)})
        if self.checkpoint not in (None, True, False):
            raise ValueError(f"checkpoint must be True, False or None (automatic), got {self.checkpoint!r}")
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        check_plan(self.dt, self.steps, self.lambda_par, self.lambda_perp, 8, 3)  # 3D: the stricter


def load_unet(weights=None) -> UNet:
    path = weights or SHIPPED_UNET
    ckpt = load_checkpoint(path, "unet")
    net = UNet(**ckpt["config"])
    load_state(net, ckpt["state_dict"], str(path))
    return net.eval()


def train_refiner(data, out, cfg: RefinerConfig | None = None, *, backbone_weights=None, init=None,
                  unet: UNet | None = None, device: str = "cpu", progress: Callable | None = None,
                  train_set=None,
                  should_stop: Callable[[], bool] | None = None,
                  on_update: Callable[[int, float], None] | None = None,
                  meta: dict | None = None) -> dict:
    """Train a `Refiner` on random crops of the training split, backbone frozen.

    Each update: random crops inside the FOV (centre in the FOV), the same rot90/flip
    on image, target and FOV, the backbone run on the augmented crops (so features and
    target stay consistent), N RK4 steps, the loss inside the FOV, one Adam step
    (cosine annealing restarted every ``cfg.restart`` updates).

    ``train_set`` may give ``(inputs, targets, fovs)`` directly (lists of arrays as from
    `load_training_set`; optionally a fourth list of masks where crop centres may fall,
    `unpack_train_set`) instead of reading ``data``; ``init`` a refiner checkpoint or
    `Refiner` module to start from (a module is copied, never changed); ``should_stop``
    is polled between updates (cancel); ``on_update(i, loss)`` reports progress.

    With ``cfg.tune_backbone`` the backbone's last decoder block and output layer train
    too (its BatchNorm statistics stay fixed); ``unet`` gives an in-memory backbone to
    start from (copied, never changed) instead of ``backbone_weights``. The returned
    record then holds the tuned backbone under ``"unet"``.

    The refiner has the backbone's dimension: a 3D U-Net (``ndim = 3``) with a 3D
    ``train_set`` trains a 3D refiner on cubic crops of side ``cfg.crop``. ``meta`` is
    added to the record.
    """
    cfg = cfg or RefinerConfig()
    rng = seed_everything(cfg.seed)
    if train_set is None:
        _, xs, ys, fs = load_training_set(data)
        centres = fs
    else:
        xs, ys, fs, centres = unpack_train_set(train_set)
    check_targets(ys, fs)
    arrays = [[x, y, f.astype(np.float32)[None]] for x, y, f in zip(xs, ys, fs, strict=True)]
    unet = (copy.deepcopy(unet).eval() if unet is not None else load_unet(backbone_weights)).to(device)
    for p in unet.parameters():
        p.requires_grad_(False)
    tuned = []
    if cfg.tune_backbone:
        tuned = [*unet.dec[-1].parameters(), *unet.out.parameters()]
        for p in tuned:
            p.requires_grad_(True)
    if isinstance(init, Refiner):
        refiner = copy.deepcopy(init)  # the caller's weights stay as they are (cancel-safe)
    elif init is not None:
        ckpt = load_checkpoint(init, "refiner")
        refiner = Refiner(**ckpt["config"])
        load_state(refiner, ckpt["state_dict"], str(init))
    else:
        refiner = Refiner(unet.feature_channels, cfg.kernel, cfg.lambda_par, cfg.lambda_perp, cfg.per_pixel,
                          cfg.dt, cfg.steps, ndim=unet.ndim)
    if refiner.ndim != unet.ndim:
        raise ValueError(f"a {refiner.ndim}D refiner cannot train on a {unet.ndim}D backbone")
    refiner.to(device).train()
    opt = torch.optim.Adam([*refiner.parameters(), *tuned], lr=cfg.lr)
    sched = cosine_restarts(opt, cfg.restart)
    crop = min(cfg.crop, *(min(x.shape[1:]) for x in xs))
    crop -= crop % 2 ** unet.depth
    t0 = time.time()
    losses = []
    it = range(cfg.updates)
    bar = progress(it) if progress else it
    for i in bar:
        if should_stop is not None and should_stop():
            break
        xb, yb, fb = augment(sample_patches(arrays, centres, crop, cfg.batch, rng), rng, unet.ndim)
        xb, yb, fb = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (xb, yb, fb))
        with torch.set_grad_enabled(bool(tuned)):  # a graph only when backbone layers train
            logits, feats = unet(xb)
            prob = torch.sigmoid(logits) * fb
        refined = refiner(prob, feats, checkpoint=cfg.checkpoint)
        loss = mixed_loss(refined, yb, fb, kind=cfg.loss, alpha=cfg.alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if on_update is not None:
            on_update(i, losses[-1])
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    lpar, lperp = (torch.nn.functional.softplus(p).item() for p in (refiner.raw_par, refiner.raw_perp))
    record = {"config": asdict(cfg), "seconds": time.time() - t0, "updates": len(losses),
              "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
              "first_loss": float(np.mean(losses[:20])) if losses else float("nan"),
              "lambda_par": lpar, "lambda_perp": lperp, "device": device, "torch": torch.__version__,
              "backbone": Path(backbone_weights or SHIPPED_UNET).name, **(meta or {})}
    if out is not None and losses:
        save_checkpoint(out, "refiner", refiner.config, refiner.state_dict(), record)
    record["module"] = refiner
    if tuned:
        for p in unet.parameters():
            p.requires_grad_(False)
        record["unet"] = unet.cpu().eval()
    return record
