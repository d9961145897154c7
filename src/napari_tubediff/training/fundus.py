"""Training the 2D U-Net on several fundus data sets at the working scale.

Every training photograph is brought to the working scale (`WORKING_FOV` pixels across its
field of view, measured on the automatic FOV as at inference), then stored in a few
*versions*: the plain one and ``versions - 1`` random ones, each at a random zoom around the
working scale (scale augmentation) with random per-channel gains and gamma (colour and
gamma augmentation), and preprocessed as at inference (`preprocess`: green channel,
CLAHE, standardised inside the FOV). Patches then get a random contrast gain, offset and
noise and a random symmetry of the square. Data sets are drawn with equal odds, images
within a data set uniformly, patch centres uniformly inside the FOV.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.fov import fov_diameter, fov_mask
from ..core.scale import WORKING_FOV, to_working, to_working_mask
from ..data.fundus_sets import fundus_items
from ..models.preprocess import preprocess
from ..models.unet import UNet
from ..models.weights import save_checkpoint
from .sampling import augment
from .train import backbone_step, seed_everything


@dataclass
class FundusConfig:
    """The shipped multi-camera U-Net's recipe (docs/models.md)."""

    datasets: tuple[str, ...] = ("DRIVE", "STARE", "HRF")
    working_fov: float = WORKING_FOV
    versions: int = 4          # the plain one + random zoom / colour / gamma ones
    zoom: float = 1.4          # random zooms are log-uniform in [1/zoom, zoom]
    gain: float = 0.15         # per-channel colour gains uniform in [1-gain, 1+gain]
    gamma: float = 0.35        # gamma = exp(uniform(-gamma, gamma))
    contrast: float = 0.3      # patch contrast gain = exp(uniform(-contrast, contrast))
    noise: float = 0.15        # patch Gaussian noise, standard deviation uniform in [0, noise]
    base: int = 16
    depth: int = 3
    patch: int = 64
    batch: int = 32
    iters: int = 5000
    lr: float = 1e-3
    loss: str = "bce"
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _colour_jitter(rgb: np.ndarray, rng: np.random.Generator, cfg: FundusConfig) -> np.ndarray:
    x = rgb.astype(np.float32) / 255.0
    x = x * rng.uniform(1 - cfg.gain, 1 + cfg.gain, 3).astype(np.float32)
    x = np.clip(x, 0, 1) ** np.float32(np.exp(rng.uniform(-cfg.gamma, cfg.gamma)))
    return x


def save_versions(path, versions: dict[str, list]) -> None:
    """Keep `build_versions`' output in an ``.npz`` file (plain arrays: no pickle)."""
    from ..data.io import atomic_path

    arrays = {f"{ds}/{i}/{k}": a for ds, pool in versions.items()
              for i, item in enumerate(pool) for k, a in zip("xyf", item, strict=True)}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_versions(path, every: int = 1) -> dict[str, list]:
    """`save_versions`' file back; ``every=n`` keeps every n-th version (n = the number of
    versions per image: the plain ones)."""
    out: dict[str, list] = {}
    with np.load(path, allow_pickle=False) as z:
        keys = sorted({tuple(k.split("/")[:2]) for k in z.files}, key=lambda t: (t[0], int(t[1])))
        for ds, i in keys:
            if int(i) % every == 0:
                out.setdefault(ds, []).append(tuple(z[f"{ds}/{i}/{k}"] for k in "xyf"))
    return out


def build_versions(root, cfg: FundusConfig, rng: np.random.Generator,
                   log: Callable[[str], None] | None = None) -> dict[str, list]:
    """``{dataset: [(x (H, W) float16, y (H, W) float16 soft label, fov (H, W) bool), ...]}``
    over the training splits' versions."""
    out: dict[str, list] = {}
    for ds in cfg.datasets:
        items = fundus_items(root, ds, "train")
        out[ds] = []
        t0 = time.time()
        for it in items:
            img = it.image()
            auto = fov_mask(img)
            fov = it.fov(img)
            # the factor as inference finds it: from the automatic FOV
            s = cfg.working_fov / fov_diameter(auto if auto is not None else fov)
            truth = it.truth()
            # one anti-aliased shrink of big photographs first (HRF: 3504 px), the versions from it
            pre = min(1.0, 1.5 * s)
            img0 = to_working(img, pre)
            y0 = to_working(truth.astype(np.float32), pre)
            f0 = to_working(fov.astype(np.float32), pre)
            for v in range(cfg.versions):
                z = 1.0 if v == 0 else float(np.exp(rng.uniform(-np.log(cfg.zoom), np.log(cfg.zoom))))
                k = s * z / pre
                rgb = img0 if v == 0 else _colour_jitter(img0, rng, cfg) * 255.0
                x_rgb = to_working(rgb, k)
                fv = to_working_mask(f0, k)
                y = np.clip(to_working(y0, k), 0, 1)
                x = preprocess(np.clip(x_rgb, 0, 255).astype(np.uint8), fv)
                out[ds].append((x.astype(np.float16), y.astype(np.float16), fv))
        if log:
            log(f"{ds}: {len(items)} images, {len(out[ds])} versions, {time.time() - t0:.0f} s")
    return out


def sample_batch(versions: dict[str, list], cfg: FundusConfig, rng: np.random.Generator):
    """``(x, y, fov)`` float32 batches ``(B, 1, P, P)``: data set, image, centre inside the FOV."""
    names = list(versions)
    p, half = cfg.patch, cfg.patch // 2
    xs, ys, fs = [], [], []
    while len(xs) < cfg.batch:
        pool = versions[names[rng.integers(len(names))]]
        x, y, f = pool[rng.integers(len(pool))]
        h, w = f.shape
        if h < p or w < p:
            continue
        r, c = int(rng.integers(half, h - p + half + 1)), int(rng.integers(half, w - p + half + 1))
        if not f[r, c]:
            continue  # rejection: the centre must lie inside the FOV
        box = np.s_[r - half:r - half + p, c - half:c - half + p]
        xp = x[box].astype(np.float32)
        fp = f[box]
        xp = xp * np.float32(np.exp(rng.uniform(-cfg.contrast, cfg.contrast))) \
            + np.float32(rng.normal(0, 0.2))
        xp = xp + rng.uniform(0, cfg.noise) * rng.standard_normal(xp.shape).astype(np.float32)
        xs.append(np.where(fp, xp, 0)[None])
        ys.append(y[box].astype(np.float32)[None])
        fs.append(fp.astype(np.float32)[None])
    return [np.stack(a) for a in (xs, ys, fs)]


def train_fundus(root, out, cfg: FundusConfig | None = None, *, threads: int | None = None,
                 log: Callable[[str], None] | None = print, checkpoint_every: int = 500,
                 cache=None, init=None) -> dict:
    """Train the 2D U-Net on DRIVE + STARE + HRF training splits at the working scale; save
    it (atomically) to ``out`` with ``working_fov`` in its meta. ``cache``: an ``.npz``
    path where the prepared versions are kept (`save_versions`) for the refiner's training,
    and read back when it exists. ``init``: U-Net weights to continue from (a second
    cosine cycle). Returns the record."""
    cfg = cfg or FundusConfig()
    if threads:
        torch.set_num_threads(threads)
    rng = seed_everything(cfg.seed)
    t0 = time.time()
    if cache is not None and Path(cache).is_file():
        versions = load_versions(cache)  # prepared by an earlier run with the same recipe
        rng = np.random.default_rng([cfg.seed, 1])
    else:
        versions = build_versions(root, cfg, rng, log)
        if cache is not None:
            save_versions(cache, versions)
    prep = time.time() - t0
    net = UNet(base=cfg.base, depth=cfg.depth)
    before = {}
    if init is not None:
        from ..models.weights import load_checkpoint, load_state

        ck = load_checkpoint(init, "unet")
        load_state(net, ck["state_dict"], str(init))
        before = {"continued_from": {"file": str(init), "updates": ck["meta"].get("updates"),
                                     "lr": ck["meta"].get("config", {}).get("lr"),
                                     "seconds": ck["meta"].get("seconds")}}
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iters)
    losses: list[float] = []
    net.train()

    def record(i):
        return {"config": asdict(cfg), "working_fov": cfg.working_fov, "seconds": time.time() - t0,
                "prepare_seconds": prep, "updates": i, "first_loss": float(np.mean(losses[:50])),
                "final_loss": float(np.mean(losses[-50:])),
                "images": {ds: [n for n in (it.name for it in fundus_items(root, ds, "train"))]
                           for ds in cfg.datasets},
                "device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(), **before}

    for i in range(cfg.iters):
        losses.append(backbone_step(net, opt, sched, augment(sample_batch(versions, cfg, rng), rng, 2),
                                    cfg.loss))
        if log and (i + 1) % 100 == 0:
            log(f"iter {i + 1}/{cfg.iters}  loss {np.mean(losses[-100:]):.4f}  {time.time() - t0:.0f} s")
        if out is not None and checkpoint_every and (i + 1) % checkpoint_every == 0 and i + 1 < cfg.iters:
            save_checkpoint(f"{out}.partial", "unet", net.config, net.state_dict(), record(i + 1))
    rec = record(cfg.iters)
    if out is not None:
        save_checkpoint(out, "unet", net.config, net.eval().state_dict(), rec)
    rec["module"] = net.eval()
    return rec


def train_fundus_refiner(root, unet_weights, out, cfg=None, *, working_fov: float = WORKING_FOV,
                         datasets=("DRIVE", "STARE", "HRF"), threads: int | None = None,
                         log: Callable[[str], None] | None = print, cache=None, every: int = 1,
                         should_stop: Callable[[], bool] | None = None) -> dict:
    """Train the refiner's head (and lambdas) on the frozen U-Net ``unet_weights`` at the
    working scale: every training photograph once, plain (`build_versions` with one
    version, or every ``every``-th version of the U-Net's ``cache``; targets: the soft labels
    at 1/2), crops as `train_refiner` draws them (``should_stop`` is polled between updates, as
    there). Saves to ``out``; returns the record."""
    from .refiner import RefinerConfig, train_refiner

    if threads:
        torch.set_num_threads(threads)
    rng = seed_everything(0)
    if cache is not None:
        versions = load_versions(cache, every=every)
    else:
        fcfg = FundusConfig(datasets=tuple(datasets), working_fov=working_fov, versions=1)
        versions = build_versions(root, fcfg, rng, log)
    xs, ys, fs, cs = [], [], [], []
    for pool in versions.values():
        for x, y, f in pool:
            xs.append(x.astype(np.float32)[None])
            # the refiner's training takes 0/1 targets (`check_targets`): the soft label at 1/2
            ys.append((y >= 0.5).astype(np.float32)[None])
            fs.append(f)
            # crop centres on every 4th row and column: the same spread, 16 times less memory
            grid = np.zeros(f.shape, bool)
            grid[::4, ::4] = True
            cs.append(f & grid)
    t0 = time.time()

    def on_update(i, loss):
        if log and (i + 1) % 20 == 0:
            log(f"refiner update {i + 1}  loss {loss:.4f}  {time.time() - t0:.0f} s")

    return train_refiner(None, out, cfg or RefinerConfig(), backbone_weights=unet_weights,
                         train_set=(xs, ys, fs, cs), on_update=on_update, should_stop=should_stop,
                         meta={"working_fov": working_fov,
                               "data": {ds: len(v) for ds, v in versions.items()}})


def fold_logit_bias(net: UNet, bias: float) -> UNet:
    """Add ``bias`` to ``net``'s logits, in place, by folding it into the output layer's
    bias: every user of the weights (`segment_image`, hence the CLI, the panel and the
    evaluation; the refiner's and the fine-tuning's training) then reads the calibrated
    probability ``sigmoid(logit + bias)`` without a line of extra code. Returns ``net``.

    Examples
    --------
    >>> net = UNet(base=2, depth=1).eval()
    >>> x = torch.zeros(1, 1, 4, 4)
    >>> before = net(x)[0]
    >>> bool(torch.allclose(fold_logit_bias(net, 0.5)(x)[0], before + 0.5))
    True
    """
    with torch.no_grad():
        net.out.bias += float(bias)
    return net


class _CachedLogits:
    """A stand-in backbone for `segment_image`: ``backbone``'s logits for one image are
    computed once, then answered as ``sigmoid(logit + bias)`` for any ``bias``, so that a
    bias is scored through the very resampling the pipeline applies, at the cost of one
    U-Net run per image."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.working_fov = backbone.working_fov
        self.ref_sigma = backbone.ref_sigma
        self.bias = 0.0
        self.logits: np.ndarray | None = None

    def predict_with_features(self, x, fov=None):
        if self.logits is None:
            p = self.backbone.predict_with_features(x, fov)[0].astype(np.float64)
            with np.errstate(divide="ignore"):
                self.logits = np.log(p) - np.log1p(-p)  # zero outside the FOV: -inf, stays 0
        return (1.0 / (1.0 + np.exp(-(self.logits + self.bias)))).astype(np.float32), None


def bias_dice(items, backbone, biases, *, log: Callable[[str], None] | None = None) -> np.ndarray:
    """Dice at 0.5 inside each item's FOV (as `evaluation.evaluate_dataset` scores it) of
    the default pipeline (`segment_image` with automatic FOV and scale) with ``backbone``'s
    logits shifted by each of ``biases``; ``(len(items), len(biases))``.

    Examples
    --------
    >>> from napari_tubediff.models.backbones import UNetBackbone
    >>> from napari_tubediff.data.fundus import synthetic_fundus
    >>> f = synthetic_fundus((96, 96), seed=0)
    >>> from types import SimpleNamespace
    >>> item = SimpleNamespace(name="eye", image=lambda: f.image, truth=lambda: f.truth, fov=lambda: f.fov)
    >>> d = bias_dice([item], UNetBackbone(device="cpu"), [-20.0, 0.0])
    >>> d.shape, float(d[0, 0]) == 0.0  # a bias of -20 calls nothing vessel
    ((1, 2), True)
    """
    from ..core.metrics import dice
    from ..models.backbones import at_native, segment_image

    out = np.zeros((len(items), len(biases)))
    for i, it in enumerate(items):
        t = time.time()
        img, truth, fov = it.image(), it.truth(), it.fov()
        cached = _CachedLogits(backbone)
        seg = segment_image(cached, img)  # the logits at the working scale, FOV and scale found once
        for j, b in enumerate(biases):
            cached.bias = float(b)
            # segment_image's own last step, without resampling the input again for every bias
            p = at_native(cached.predict_with_features(None)[0], truth.shape, seg.factor, seg.fov)
            out[i, j] = dice(p >= 0.5, truth, fov)
        if log:
            log(f"{it.name}: best Dice {out[i].max():.4f} at bias {biases[int(out[i].argmax())]:+.2f} "
                f"({time.time() - t:.1f} s)")
    return out


#: The logit biases `calibrate_fundus` tries by default: -1 to 1 in steps of 0.1.
BIASES = tuple(round(0.1 * k, 2) for k in range(-10, 11))


def _bias_dice_job(root, weights, ds: str, names: list[str], biases, threads: int | None) -> np.ndarray:
    # one worker's share of `calibrate_fundus`: some training images of one data set
    from ..models.backbones import UNetBackbone

    if threads:
        torch.set_num_threads(threads)
    items = [it for it in fundus_items(root, ds, "train") if it.name in names]
    return bias_dice(items, UNetBackbone(weights, device="cpu"), biases)


def calibrate_fundus(root, unet_weights, out, biases=BIASES, *,
                     datasets=("DRIVE", "STARE", "HRF"), threads: int | None = None, workers: int = 1,
                     log: Callable[[str], None] | None = print) -> dict:
    """Fit a logit bias to the U-Net ``unet_weights`` on the training splits only: the one of
    ``biases`` that maximises the mean Dice at 0.5 over every training image at its native
    resolution through the default pipeline (`bias_dice`); fold it into the weights
    (`fold_logit_bias`) and save them to ``out`` with ``meta["calibration"]`` (the bias, the
    mean Dice at every bias, per data set too). ``workers > 1`` scores groups of 5 images
    in that many processes (the same figures). Returns that record."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from ..models.backbones import UNetBackbone
    from ..models.weights import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    biases = [float(b) + 0.0 for b in biases]  # + 0.0: no "-0.0"
    if 0.0 not in biases:
        biases.append(0.0)  # the uncalibrated figure is always reported
    biases.sort()
    backbone = UNetBackbone(unet_weights, device="cpu")
    t0 = time.time()
    jobs = [(ds, [it.name for it in fundus_items(root, ds, "train")]) for ds in datasets]
    if workers > 1:
        chunks = [(ds, names[k:k + 5]) for ds, names in jobs for k in range(0, len(names), 5)]
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_bias_dice_job, root, unet_weights, ds, names, biases, threads)
                       for ds, names in chunks]
            parts = []
            for (ds, names), fut in zip(chunks, futures, strict=True):
                parts.append((ds, fut.result()))
                if log:
                    log(f"{ds} {', '.join(names)}: done ({time.time() - t0:.0f} s)")
        scores = [np.concatenate([d for d2, d in parts if d2 == ds]) for ds, _ in jobs]
    else:
        scores = [bias_dice(fundus_items(root, ds, "train"), backbone, biases, log=log) for ds, _ in jobs]
    d = np.concatenate(scores)
    mean = d.mean(axis=0)
    best = biases[int(mean.argmax())]
    ck = load_checkpoint(unet_weights, "unet")
    meta = dict(ck["meta"])
    rec = {"logit_bias": best + float(meta.get("calibration", {}).get("logit_bias", 0.0)),
           "fitted_bias": best, "fitted_on": "training splits, native resolution, default pipeline",
           "images": len(d), "biases": biases, "mean_dice": [float(v) for v in mean],
           "per_dataset": {ds: [float(v) for v in s.mean(axis=0)]
                           for ds, s in zip(datasets, scores, strict=True)},
           "dice_before": float(mean[biases.index(0.0)]), "dice_after": float(mean.max()),
           "seconds": time.time() - t0}
    meta["calibration"] = rec
    fold_logit_bias(backbone.net, best)
    save_checkpoint(out, "unet", backbone.net.config, backbone.net.cpu().state_dict(), meta)
    return rec
