"""Learned backbones: the 2D U-Net with shipped weights from three fundus cameras (DRIVE,
STARE, HRF), the 3D U-Net with shipped weights from synthetic volumes, and a user's
TorchScript model. All run on ``device`` ("auto": CUDA when present, else the CPU) and
return numpy arrays.

`segment_image` is the one entry point of the CLI (``tubediff segment``, ``tubediff refine
--input image``), the Segment panel and the evaluation: it finds the field of view and the
scale, resamples the image to the backbone's working scale, segments it there and returns
the probability at the image's own size.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.checks import check_memory, check_planes
from ..core.device import resolve_device
from ..core.fov import resolve_fov
from ..core.scale import (
    REF_SIGMA,
    estimate_scale,
    from_working,
    parse_scale,
    to_working,
    to_working_mask,
)
from .classical import POLARITIES, vessel_polarity
from .preprocess import preprocess
from .unet import UNet, pad_to_multiple
from .weights import WEIGHTS_DIR, load_checkpoint, load_state

SHIPPED_UNET = WEIGHTS_DIR / "unet_fundus.pt"
SHIPPED_UNET3D = WEIGHTS_DIR / "unet_synth3d.pt"


class UNetBackbone:
    """U-Net segmentation: probability field and last decoder features.

    Input: a grey or RGB 2D image (RGB: the green channel, which the shipped 2D
    weights were trained on), or a grey volume for 3D weights, preprocessed by
    `preprocess` (2D: CLAHE; standardised in the FOV). Output is zero outside ``fov``
    when one is given. The image is used at the size it comes in: `segment_image`
    resamples it to the working scale first (`working_fov`), as the CLI and the panel do.

    Parameters
    ----------
    weights : path, optional
        A U-Net checkpoint; default: the shipped 2D fundus weights (DRIVE, STARE, HRF;
        `UNet3DBackbone`: the shipped 3D ones).
    device : str
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"`` or ``"cuda"``; the
        network and its inputs move there, the outputs come back as numpy arrays.
    polarity : {"auto", "dark", "bright"}
        The input's vessels: darker than the background (fundus photographs) or brighter
        (angiograms, fluorescence); "auto" decides per image (`classical.vessel_polarity`).
        An input whose polarity differs from the one the weights were trained on
        (``trained_polarity``: the checkpoint's ``meta["polarity"]``, else "dark" for 2D
        weights, trained on fundus green channels, and "bright" for 3D ones, trained on
        synthetic bright tubes) is inverted before `preprocess`.

    Examples
    --------
    >>> bb = UNetBackbone(device="cpu")
    >>> prob, feats = bb.predict_with_features(np.zeros((32, 32), np.float32))
    >>> prob.shape, feats.shape
    ((32, 32), (16, 32, 32))
    """

    name = "unet"
    shipped = SHIPPED_UNET

    def __init__(self, weights=None, device: str | None = "auto", polarity: str = "auto"):
        # first: a bad device or polarity fails before any file is read
        device = torch.device(resolve_device(device))
        polarity = _check_polarity(polarity)
        path = Path(weights) if weights else self.shipped
        ckpt = load_checkpoint(path, "unet")
        self._build(ckpt["config"], ckpt["state_dict"], ckpt.get("meta", {}), path, device, polarity)

    def _build(self, config: dict, state: dict, meta: dict, weights: Path, device, polarity: str) -> None:
        # the one place the attributes are set (the constructor and `from_state`)
        self.device, self.polarity = device, polarity
        self.net = UNet(**config)
        load_state(self.net, state, weights.name)
        self.net.to(self.device).eval()
        self.weights = weights
        self.meta = dict(meta)

    @classmethod
    def from_state(cls, config: dict, state: dict, meta: dict | None = None, *, name: str = "in memory",
                   device: str | None = "cpu", polarity: str = "auto") -> UNetBackbone:
        """A backbone from a U-Net's ``config``, ``state`` dict and ``meta`` data (what a
        checkpoint holds, and what `workers.tasks.pack` sends to a worker process).

        Examples
        --------
        >>> bb = UNetBackbone(device="cpu")
        >>> same = UNetBackbone.from_state(bb.net.config, bb.net.state_dict(), bb.meta)
        >>> same.working_fov == bb.working_fov, str(same.weights)
        (True, 'in memory')
        """
        self = cls.__new__(cls)
        self._build(config, state, meta or {}, Path(name), torch.device(resolve_device(device)),
                    _check_polarity(polarity))
        return self

    @property
    def trained_polarity(self) -> str:
        """The vessel polarity the weights were trained on (see the class docstring)."""
        return self.meta.get("polarity", "dark" if self.net.ndim == 2 else "bright")

    @property
    def working_fov(self) -> float | None:
        """The FOV diameter (pixels) the 2D weights were trained at (checkpoint meta
        ``working_fov``); None when the checkpoint does not say (no automatic scale)."""
        w = self.meta.get("working_fov") if self.net.ndim == 2 else None
        return float(w) if w else None

    @property
    def ref_sigma(self) -> float:
        """The dominant vessel scale at the working scale (`core.scale.vessel_sigma`)."""
        return float(self.meta.get("ref_sigma", REF_SIGMA))

    @classmethod
    def from_module(cls, net: UNet, name: str = "fine-tuned", device: str | None = "cpu",
                    meta: dict | None = None) -> UNetBackbone:
        """Wrap an in-memory U-Net (a copy) as a backbone; ``meta``: its checkpoint's (a tuned
        U-Net keeps the working scale and polarity of the one it was tuned from)."""
        return cls.from_state(net.config, net.state_dict(), meta, name=name, device=device)

    def save(self, path) -> Path:
        """Write the weights atomically (read back with ``UNetBackbone(path)``)."""
        from .weights import save_checkpoint

        return save_checkpoint(path, "unet", self.net.config, self.net.state_dict(), self.meta)

    @property
    def ndim(self) -> int:
        """2 for images, 3 for volumes."""
        return self.net.ndim

    def predict_with_features(self, image: np.ndarray, fov: np.ndarray | None = None,
                              polarity: str | None = None):
        """``(probability (*spatial) float32, features (C, *spatial) float32)``; ``polarity``
        overrides the backbone's for this call. What "auto" chose is in ``last_polarity``."""
        if self.net.ndim == 3 and np.ndim(image) != 3:
            raise ValueError(f"the 3D U-Net takes grey volumes (D, H, W), got shape {np.shape(image)}")
        channel = 1 if self.net.ndim == 2 else None
        polarity = _check_polarity(polarity or getattr(self, "polarity", "auto"))
        if polarity == "auto":
            polarity = vessel_polarity(image, fov, channel)
        self.last_polarity = polarity
        # a 3D net reads a volume as it is: (D, H, 3) is a thin volume, not an RGB image
        x = preprocess(image, fov, channel=channel, invert=polarity != self.trained_polarity)
        if x.ndim != self.net.ndim:
            raise ValueError(f"the {self.net.ndim}D U-Net takes {self.net.ndim}D images, got shape "
                             f"{np.shape(image)}")
        m = 2 ** self.net.depth
        if min(x.shape) < m:  # reflect padding to a multiple of m needs at least m pixels
            raise ValueError(f"image of shape {x.shape} is too small for the U-Net: it needs at least "
                             f"{m} pixels along every axis (it halves the image {self.net.depth} times)")
        check_memory(x.shape, UNET_BYTES * self.net.config["base"] / 16, "the U-Net on",
                     hint="crop or downsample the image, or segment it in tiles")
        t = torch.from_numpy(x)[None, None].to(self.device)
        t, size = pad_to_multiple(t, 2 ** self.net.depth)
        crop = (slice(None), *(slice(0, n) for n in size))
        with torch.no_grad():
            logits, feats = self.net(t)
        prob = torch.sigmoid(logits)[0, 0][crop[1:]].cpu().numpy().astype(np.float32)
        feats = feats[0][crop].cpu().numpy().astype(np.float32)
        if fov is not None:
            prob = np.where(np.asarray(fov, bool), prob, 0).astype(np.float32)
        return _flat_is_empty(x, prob), feats

    def predict(self, image: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        return self.predict_with_features(image, fov)[0]


#: Peak bytes per pixel of a 2D U-Net prediction with ``base`` 16 (the shipped model),
#: measured by ``benchmarks/bench_memory.py`` (process peak, 1 thread, 1024^2 vs 2048^2:
#: 364); the activations grow with ``base``, so other widths scale it by ``base / 16``.
UNET_BYTES = 370


def _flat_is_empty(x: np.ndarray, prob: np.ndarray) -> np.ndarray:
    # A constant image standardises to zeros (preprocess), where a network answers with its
    # bias: the shipped U-Net calls 99.8 % of a blank image vessel. No contrast, no vessel.
    if x.size and not np.any(x):
        warnings.warn("the image is constant (no contrast): no vessels can be found; returning an "
                      "empty probability field", UserWarning, stacklevel=3)
        return np.zeros_like(prob)
    return prob


def _check_polarity(polarity) -> str:
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
    return polarity


class UNet3DBackbone(UNetBackbone):
    """`UNetBackbone` with the shipped 3D weights (``unet_synth3d.pt``, trained on synthetic
    volumes: docs/models.md) as its default; takes grey volumes ``(D, H, W)``.

    Examples
    --------
    >>> bb = UNet3DBackbone(device="cpu")
    >>> prob, feats = bb.predict_with_features(np.zeros((8, 12, 16), np.float32))
    >>> prob.shape, feats.shape[1:]
    ((8, 12, 16), (8, 12, 16))
    """

    name = "unet3d"
    shipped = SHIPPED_UNET3D


class TorchScriptBackbone:
    """A user's TorchScript model file as a backbone.

    The model takes ``(1, 1, H, W)`` float32 (the preprocessed image) and returns
    either probabilities in [0, 1] or logits (a sigmoid is applied when values fall
    outside [0, 1]); a tuple's first element is used, the second as features.
    """

    name = "torchscript"

    def __init__(self, path, device: str | None = "auto"):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no TorchScript file at {path}")
        self.device = torch.device(resolve_device(device))
        try:
            self.model = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as e:  # torch raises RuntimeError or its own errors for foreign files
            raise ValueError(f"cannot load {path.name} as a TorchScript model: "
                             f"{str(e).splitlines()[0][:160]}") from None
        self.path = path

    def predict_with_features(self, image: np.ndarray, fov: np.ndarray | None = None):
        xn = preprocess(image, fov)
        x = torch.from_numpy(xn)[None, None].to(self.device)
        with torch.no_grad():
            out = self.model(x)
        feats = None
        if isinstance(out, (tuple, list)):
            out, feats = out[0], (out[1] if len(out) > 1 else None)
        if not torch.isfinite(out).all():
            raise ValueError(f"{self.path.name} returned NaN or infinite values for this image; "
                             "check the model (its input is the standardised grey image)")
        if out.min() < 0 or out.max() > 1:
            out = torch.sigmoid(out)
        prob = out.reshape(out.shape[-2:]).cpu().numpy().astype(np.float32)
        if prob.shape != tuple(x.shape[-2:]):
            raise ValueError(f"{self.path.name} returned shape {prob.shape} for an input of "
                             f"{tuple(x.shape[-2:])}")
        if fov is not None:
            prob = np.where(np.asarray(fov, bool), prob, 0).astype(np.float32)
        if feats is not None:
            feats = feats[0].cpu().numpy().astype(np.float32)
        return _flat_is_empty(xn, prob), feats

    def predict(self, image: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        return self.predict_with_features(image, fov)[0]


@dataclass
class Segmentation:
    """What `segment_image` returns.

    Attributes
    ----------
    prob : ndarray, float32
        The probability at the input's own size, zero outside ``fov``.
    features : ndarray or None
        The backbone's features ``(C, *working_shape)`` at the working scale (the learned
        refiner reads them there: `LearnedRefiner.refine`), None for backbones without.
    fov : (M, N) bool or None
        The field of view used (the given mask, the automatic one, or None).
    factor : float
        The resampling factor applied (1.0: none).
    how : str
        How the factor was found: ``"fov"``, ``"vessel width"``, ``"given"`` or
        ``"native"`` (a backbone without a working scale, or a volume). Volumes with a
        backbone that measures the vessel radius (``region3d``): ``"vessel width"``
        (measured) or ``"given"`` (``scale`` was the radius).
    radius : float or None
        Volumes: the vessel radius (voxels, or the units of the backbone's ``spacing``)
        the backbone measured or was given; None for images and other backbones.
    """

    prob: np.ndarray
    features: np.ndarray | None
    fov: np.ndarray | None
    factor: float
    how: str
    radius: float | None = None


def _segment_volume(backbone, volume: np.ndarray, scale, mask, spacing=None) -> Segmentation:
    # volumes are segmented at their own size; a backbone that measures the vessel radius
    # (region3d) takes a given one instead of measuring it
    sizes = hasattr(backbone, "radius")
    if sizes:
        backbone.radius = None if scale == "auto" else float(scale)
    if hasattr(backbone, "spacing"):  # a backbone that works in physical units (region3d)
        backbone.spacing = spacing
    if hasattr(backbone, "predict_with_features"):
        p, feats = backbone.predict_with_features(volume, mask)
    else:
        p, feats = backbone.predict(volume, mask), None
    prob = np.clip(p, 0.0, 1.0).astype(np.float32)
    if mask is not None:
        prob[~mask] = 0.0
    radius = getattr(backbone, "last_radius", None) if sizes else None
    how = "native" if radius is None else "given" if scale != "auto" else "vessel width"
    return Segmentation(prob=prob, features=feats, fov=mask, factor=1.0, how=how, radius=radius)


# within 2 % of the working scale the image is used as it is (resampling would only blur it)
_SCALE_TOLERANCE = 0.02


def segment_image(backbone, image: np.ndarray, *, scale="auto", fov="auto", spacing=None) -> Segmentation:
    """Segment ``image`` at ``backbone``'s working scale; the probability comes back at the
    image's size.

    Parameters
    ----------
    backbone : object with ``predict`` (and optionally ``predict_with_features``)
        E.g. from `get_backbone`. A 2D U-Net whose checkpoint records ``working_fov``
        has a working scale; other backbones work at the image's own scale unless
        ``scale`` is a number.
    image : ndarray
        2D grey, RGB(A) 2D, or a grey volume (volumes are never resampled).
    scale : "auto" or float
        The factor to resample by. ``"auto"``: `core.scale.estimate_scale` (fundus
        photographs: from the FOV diameter; other images: from the dominant vessel
        width); 1 keeps the image as it is. Volumes are never resampled: for a backbone
        with a ``radius`` (``region3d``) a number is the expected vessel radius in voxels
        and ``"auto"`` measures it (`core.scale.vessel_radius`).
    fov : "auto", "none", None or mask
        ``"auto"``: `core.fov.fov_mask` (None for images that are not fundus
        photographs); ``"none"``/None: no FOV; a mask of the image's size. The
        backbone standardises inside it, and the probability is zero outside it.
    spacing : (dz, dy, dx) or None
        A volume's voxel spacing (None: isotropic), handed to backbones that work in
        physical units (``region3d``: its smoothing has the same physical width along
        every axis, and the vessel radius is in these units). 2D images ignore it.

    Examples
    --------
    >>> from napari_tubediff.data.fundus import synthetic_fundus
    >>> f = synthetic_fundus((120, 120), seed=0)
    >>> seg = segment_image(UNetBackbone(device="cpu"), f.image)
    >>> seg.prob.shape, seg.how, round(seg.factor, 2), bool(seg.prob[~seg.fov].max() == 0)
    ((120, 120), 'fov', 7.14, True)
    """
    image = np.asarray(image)
    bad = int(np.count_nonzero(~np.isfinite(image))) if np.issubdtype(image.dtype, np.inexact) else 0
    if bad:  # before the scale and FOV estimates, which would warn about them first
        raise ValueError(f"the image holds {bad} NaN or infinite value(s): replace them (e.g. with "
                         "np.nan_to_num) before segmenting")
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    spatial = image.shape[:2] if rgb else image.shape
    mask = resolve_fov(image, fov) if len(spatial) == 2 else (
        None if fov is None or isinstance(fov, str) else np.asarray(fov, bool))
    scale = parse_scale(scale)
    working = getattr(backbone, "working_fov", None)
    if len(spatial) != 2:
        check_planes(spatial)  # a 2-4 plane slab is no volume to threshold
        return _segment_volume(backbone, image, scale, mask, spacing)
    elif scale == "auto":
        if working is None:
            factor, how = 1.0, "native"
        else:
            factor, how = estimate_scale(image, mask, working_fov=working,
                                         ref_sigma=getattr(backbone, "ref_sigma", REF_SIGMA))
    else:
        factor, how = float(scale), "given"
    if abs(factor - 1.0) <= _SCALE_TOLERANCE:
        factor = 1.0
    x = to_working(image, factor)
    m = None if mask is None else to_working_mask(mask, factor)
    if hasattr(backbone, "predict_with_features"):
        p, feats = backbone.predict_with_features(x, m)
    else:
        p, feats = backbone.predict(x, m), None
    return Segmentation(prob=at_native(p, spatial, factor, mask), features=feats, fov=mask, factor=factor,
                        how=how)


#: The spline order `at_native` resizes the probability by (`core.scale.from_working`). Cubic,
#: chosen on the 66 fundus training images only (scripts/fundus_upsample.py, docs/models.md):
#: mean Dice 0.8050 against 0.8039 for linear (HRF, upsampled ~4x, +0.002; DRIVE +0.001;
#: STARE -0.0007); resizing the logit instead scored the same as the probability.
NATIVE_ORDER = 3


def at_native(prob: np.ndarray, shape, factor: float, fov: np.ndarray | None = None) -> np.ndarray:
    """A probability computed at the working scale (``factor`` times the image's), back at
    the image's 2D ``shape`` by cubic splines (`NATIVE_ORDER`; anti-aliased when shrinking),
    clipped to [0, 1] (a spline overshoots at steep edges), zero outside ``fov``:
    `segment_image`'s last step.

    Examples
    --------
    >>> at_native(np.full((4, 4), 2.0, np.float32), (8, 8), 0.5).max()
    np.float32(1.0)
    >>> step = np.repeat([[0.0, 0.0, 1.0, 1.0]], 4, axis=0).astype(np.float32)
    >>> at_native(step, (8, 8), 0.5)[0].round(2)  # cubic: a steeper edge than linear's 0.25 / 0.75
    array([0.  , 0.  , 0.  , 0.21, 0.79, 1.  , 1.  , 1.  ], dtype=float32)
    """
    out = np.clip(from_working(prob, shape, order=NATIVE_ORDER) if factor != 1.0 else prob,
                  0.0, 1.0).astype(np.float32)
    if fov is not None:
        out[~np.asarray(fov, bool)] = 0.0
    return out
