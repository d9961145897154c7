"""Fine-tuning the refiner on an annotator's corrected labels (images on screen, not folders).

`finetune` trains the refiner's direction head and lambdas from the current weights on
the given images (2D) or volumes (3D) and labels, inside an optional region (the only pixels whose labels
are trusted), and scores the region before and after with the same metrics as
`tubediff evaluate`. Cancelling returns None and leaves every weight as it was.

Images are segmented exactly as Segment and ``tubediff segment`` do (`segment_image`: FOV
found, U-Net at its working scale), and the refiner trains on crops at that scale, where it
runs in use; the scores before and after are taken at the images' own size.

Volumes fine-tune the learned 3D pair: the 3D U-Net (`models.backbones.UNet3DBackbone`,
frozen unless ``tune_backbone``) and the 3D refiner, on cubic crops of side
``FinetuneConfig.crop3d``. The default 3D backbone, ``region3d``, has no weights to tune.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.metrics import evaluate
from ..core.scale import to_working, to_working_mask
from ..models.backbones import Segmentation, UNetBackbone, segment_image
from ..models.classical import vessel_polarity
from ..models.preprocess import preprocess
from ..models.refiner import LearnedRefiner
from .labels import check_vessel_fraction, label_mask
from .refiner import RefinerConfig, train_refiner
from .validate import check_numbers


@dataclass
class FinetuneConfig:
    """Defaults measured on a DRIVE test image (docs/results.md, "Fine-tuning"): the
    soft-clDice mix moves the region's clDice and VCA where BCE hardly moves them."""

    updates: int = 100
    batch: int = 4
    crop: int = 128
    lr: float = 3e-3
    loss: str = "cldice"
    alpha: float = 0.5
    tune_backbone: bool = False
    seed: int = 0
    #: the crop edge for volumes: with 16^3 voxels an update of the 3D pair takes about a second
    #: on the 2-core CPU (32^3: about 10 s; docs/results.md, "Fine-tuning on a volume")
    crop3d: int = 16

    def __post_init__(self):
        check_numbers(self, {"updates": (int, 0, None), "batch": (int, 1, 4096), "crop": (int, 8, None),
                             "crop3d": (int, 8, None),
                             "lr": (float, 1e-12, 10), "alpha": (float, 0, 1), "seed": (int, 0, None)})


@dataclass
class FinetuneResult:
    refiner: LearnedRefiner
    record: dict
    before: dict
    after: dict
    backbone: UNetBackbone | None = None  # the tuned U-Net, with ``cfg.tune_backbone``


def _spatial(image: np.ndarray) -> tuple[int, ...]:
    a = np.asarray(image)
    return a.shape[:-1] if a.ndim == 3 and a.shape[-1] in (3, 4) else a.shape


def spatial_ndim(images: Sequence[np.ndarray]) -> int:
    """2 for images (grey or RGB), 3 for volumes; ValueError for anything else or a mix.

    Examples
    --------
    >>> spatial_ndim([np.zeros((32, 32, 3))]), spatial_ndim([np.zeros((8, 32, 32))])
    (2, 3)
    """
    dims = {len(_spatial(img)) for img in images}
    if len(dims) > 1:
        raise ValueError("fine-tune on images or on volumes, not both at once "
                         f"(got {sorted(dims)}D inputs)")
    ndim = dims.pop() if dims else 2
    if ndim not in (2, 3):
        raise ValueError(f"fine-tuning takes 2D images (grey or RGB) or 3D volumes, got shape "
                         f"{np.shape(images[0])}")
    return ndim


def default_pair(ndim: int, refiner_weights=None, unet_weights=None):
    """``(refiner, backbone)`` to fine-tune for ``ndim``-D data: the given weights, else the
    session's (2D) or the shipped 3D pair (volumes)."""
    from ..models.backbones import UNet3DBackbone
    from ..models.session import active_refiner, active_unet

    refiner = LearnedRefiner(refiner_weights) if refiner_weights else active_refiner(ndim)
    if ndim == 3:
        backbone = UNet3DBackbone(unet_weights, device="cpu")
    else:
        backbone = UNetBackbone(unet_weights, device="auto") if unet_weights else active_unet()
    return refiner, backbone


def check_training_inputs(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                          regions: Sequence[np.ndarray | None] | None = None):
    """Bool label masks and regions after checking shapes and content (ValueError otherwise)."""
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need as many label layers as images, got {len(images)} images and "
                         f"{len(labels)} labels")
    regions = list(regions) if regions is not None else [None] * len(images)
    if len(regions) != len(images):
        raise ValueError("need one region (or None) per image")
    ndim = spatial_ndim(images)
    ys, rs = [], []
    for k, (img, lab, reg) in enumerate(zip(images, labels, regions, strict=True)):
        shape = np.shape(img) if ndim == 3 else _spatial(img)  # a (D, H, 3) volume is no RGB image
        lab = np.asarray(lab)
        if ndim == 2 and lab.ndim == len(shape) + 1 and lab.shape[-1] in (3, 4):
            lab = lab[..., 0]  # an RGB(A) mask file: its first channel
        if lab.shape != shape:
            raise ValueError(f"image {k}: labels {lab.shape} and image {shape} differ in shape")
        r = np.ones(shape, bool) if reg is None else np.asarray(reg, bool)
        if r.shape != shape:
            raise ValueError(f"image {k}: region {r.shape} and image {shape} differ in shape")
        if not r.any():
            raise ValueError(f"image {k}: the region is empty")
        y = label_mask(lab, f"image {k}: the labels")
        if not (y & r).any():
            raise ValueError(f"image {k}: the labels hold no vessel inside the region: nothing to learn from")
        check_vessel_fraction(y, r, f"image {k}: the labels", "inside the region")
        ys.append(y)
        rs.append(r)
    return ys, rs


def predict_all(backbone, images, fovs=None, scale="auto") -> list[Segmentation]:
    """`models.backbones.segment_image` of every image, as Segment and ``tubediff segment``
    run it: the FOV (``"auto"``: found) and the factor to the backbone's working scale
    (``"auto"``: estimated); the probability at the image's size, the features at the
    working scale. Volumes are never resampled."""
    fovs = fovs or ["auto"] * len(images)
    return [segment_image(backbone, img, scale=scale, fov=fov) for img, fov in zip(images, fovs, strict=True)]


def network_inputs(backbone: UNetBackbone, images, fovs) -> list[np.ndarray]:
    """The U-Net's input of every image, ``(1, *spatial)``, as `UNetBackbone` prepares it
    (grey or green channel, standardised, inverted when the polarity differs from the
    weights'), so that training crops see what inference sees.

    Examples
    --------
    >>> from napari_tubediff.models.backbones import UNet3DBackbone
    >>> vol = np.random.default_rng(0).random((8, 16, 16)).astype(np.float32)
    >>> network_inputs(UNet3DBackbone(device="cpu"), [vol], [None])[0].shape
    (1, 8, 16, 16)
    """
    out = []
    for img, fov in zip(images, fovs, strict=True):
        channel = 1 if backbone.ndim == 2 else None
        polarity = vessel_polarity(img, fov, channel) if backbone.polarity == "auto" else backbone.polarity
        out.append(preprocess(img, fov, channel=channel, invert=polarity != backbone.trained_polarity)[None])
    return out


def working_set(backbone, images, labels, regions, segs) -> tuple[list, list, list]:
    """The training set ``(inputs, targets, regions)`` at the scale each image was segmented
    at (`Segmentation.factor`): the U-Net's input as `segment_image` hands it over (the image
    and its FOV resampled, then `network_inputs`), the labels and regions resampled as masks
    (`core.scale.to_working_mask`: vessel where it covers over half a working pixel).

    Examples
    --------
    >>> from napari_tubediff.models.backbones import Segmentation
    >>> img, lab = np.zeros((64, 64), np.float32), np.zeros((64, 64), bool)
    >>> lab[:, 30:34] = True
    >>> seg = Segmentation(prob=None, features=None, fov=None, factor=0.5, how="given")
    >>> xs, ys, rs = working_set(UNetBackbone(device="cpu"), [img], [lab], [np.ones((64, 64), bool)], [seg])
    >>> xs[0].shape, ys[0].shape, float(ys[0].max())
    ((1, 32, 32), (1, 32, 32), 1.0)
    """
    xs, ys, rs = [], [], []
    for k, (img, y, r, seg) in enumerate(zip(images, labels, regions, segs, strict=True)):
        f = seg.factor
        fov = None if seg.fov is None else to_working_mask(seg.fov, f)
        xs.append(network_inputs(backbone, [to_working(img, f)], [fov])[0])
        yw, rw = to_working_mask(y, f), to_working_mask(r, f)
        if not (rw & yw).any():
            raise ValueError(f"image {k}: at the working scale (factor {f:.3g}) the region holds no vessel "
                             "label; draw a larger region, or fine-tune with scale 1")
        ys.append(yw.astype(np.float32)[None])
        rs.append(rw)
    return xs, ys, rs


def score_region(refiner: LearnedRefiner, segs, labels, regions, steps: int | None = None) -> dict:
    """Mean Dice, clDice and VCA (and Betti errors) of the refined masks inside the regions,
    at the images' own resolution (as `tubediff evaluate` scores).

    ``segs`` are the backbone's `Segmentation` per image (`predict_all`): the refiner runs
    at the working scale of their features and zero outside their FOV, as in use
    (`batch.run`). VCA here counts components inside the region (``vca_fov``): a region is
    a crop of the image, so the whole-image count would mix in what the annotator did not correct.
    """
    rows = []
    for seg, y, r in zip(segs, labels, regions, strict=True):
        mask = refiner.refine(seg.prob, seg.features, steps=steps, fov=seg.fov) >= 0.5
        m = evaluate(mask, y, r)
        m["vca"] = m.pop("vca_fov")
        rows.append(m)
    return {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}


def finetune(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             regions: Sequence[np.ndarray | None] | None = None, *,
             fovs: Sequence | None = None, scale="auto", refiner: LearnedRefiner | None = None,
             backbone: UNetBackbone | None = None, cfg: FinetuneConfig | None = None,
             should_stop: Callable[[], bool] | None = None,
             on_update: Callable[[int, float], None] | None = None) -> FinetuneResult | None:
    """Fine-tune ``refiner`` (default: the session's active one) on corrected labels.

    Parameters
    ----------
    images : sequence of (H, W) or (H, W, 3) arrays, or of (D, H, W) volumes
        The annotator's images (RGB: the green channel, like the backbone) or grey volumes
        (all of one kind).
    labels : sequence of arrays of the images' spatial shape
        Corrected vessel labels: bool, or two values with 0 as background (0/1, 0/255),
        or napari label ids (`training.labels.label_mask`).
    regions : sequence of (H, W) bool arrays or None, optional
        Where the labels are trusted (e.g. a rectangle the annotator corrected); the
        loss and the scores only look there. None: the whole image.
    fovs : sequence of "auto", "none", None or (H, W) masks, optional
        Fields of view, one per image, as Segment takes them (`segment_image`): ``"auto"``
        finds the FOV of a fundus photograph; None or ``"none"``: no FOV. Default: ``"auto"``
        for every image. The backbone standardises its input inside it.
    scale : "auto" or float
        The factor to the U-Net's working scale, as Segment takes it (``"auto"``: from the
        FOV diameter or the vessel width). The refiner trains at that scale, as it runs in
        use (`LearnedRefiner.refine`); the scores are taken at the images' own size.
        Volumes are never resampled.
    refiner, backbone
        Starting weights (defaults, `default_pair`: for images the session's active
        refiner and U-Net; for volumes the active 3D refiner and the shipped 3D U-Net).
    cfg : FinetuneConfig
        Updates, batch, crop, learning rate, loss; ``tune_backbone`` also trains the
        U-Net's last decoder block and output layer (else the U-Net is frozen).
    should_stop, on_update
        Cancel hook (polled between the phases and between updates) and progress callback
        ``(update, loss)``.

    Returns
    -------
    FinetuneResult or None
        The new refiner (the input one is never changed), the training record and the
        region scores before and after; None when cancelled.
    """
    cfg = cfg or FinetuneConfig()
    ys, rs = check_training_inputs(images, labels, regions)
    ndim = ys[0].ndim
    fovs = list(fovs) if fovs is not None else ["auto"] * len(images)
    if len(fovs) != len(images):
        raise ValueError("need one field of view (or None) per image")
    if refiner is None or backbone is None:
        default_refiner, default_backbone = default_pair(ndim)
        refiner, backbone = refiner or default_refiner, backbone or default_backbone
    for what, n in (("refiner", refiner.ndim), ("U-Net", backbone.ndim)):
        if n != ndim:
            raise ValueError(f"a {n}D {what} cannot fine-tune on {ndim}D "
                             f"{'volumes' if ndim == 3 else 'images'}; load {ndim}D weights")
    stop = should_stop or (lambda: False)
    t0 = time.time()
    segs = predict_all(backbone, images, fovs, scale)
    if stop():
        return None
    before = score_region(refiner, segs, ys, rs)
    if stop():
        return None
    train_set = working_set(backbone, images, ys, rs, segs)
    rcfg = RefinerConfig(crop=cfg.crop if ndim == 2 else cfg.crop3d, batch=cfg.batch, updates=cfg.updates,
                         lr=cfg.lr, loss=cfg.loss,
                         alpha=cfg.alpha, restart=max(cfg.updates, 1), tune_backbone=cfg.tune_backbone,
                         seed=cfg.seed)
    rec = train_refiner(None, None, rcfg, unet=backbone.net, init=refiner.module,
                        train_set=train_set, should_stop=should_stop, on_update=on_update)
    if rec["updates"] < cfg.updates or stop():
        return None  # cancelled: nothing changes
    module = rec.pop("module")
    tuned = rec.pop("unet", None)
    new = LearnedRefiner.from_module(module, meta=rec)
    new_backbone = UNetBackbone.from_module(tuned, meta=backbone.meta) if tuned is not None else None
    if new_backbone is not None:  # a tuned U-Net predicts anew; a frozen one already did
        # at the FOV and factor found before (the tuned U-Net's input is the same)
        segs = [segment_image(new_backbone, img, scale=seg.factor, fov=seg.fov)
                for img, seg in zip(images, segs, strict=True)]
    after = score_region(new, segs, ys, rs)
    rec["seconds_total"] = time.time() - t0
    rec["scales"] = [seg.factor for seg in segs]
    return FinetuneResult(refiner=new, record=rec, before=before, after=after, backbone=new_backbone)
