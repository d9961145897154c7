"""Backbones by name, shared by the CLI and the plugin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _vesselness(**kwargs):
    from .classical import VesselnessBackbone

    return VesselnessBackbone(**kwargs)


def _region3d(**kwargs):
    from .classical import VolumeBackbone

    return VolumeBackbone(**kwargs)


def _unet(**kwargs):
    from .backbones import UNetBackbone

    return UNetBackbone(**kwargs)


def _unet3d(**kwargs):
    from .backbones import UNet3DBackbone

    return UNet3DBackbone(**kwargs)


def _torchscript(path=None, polarity="auto", **kwargs):
    from .backbones import TorchScriptBackbone

    if polarity != "auto":  # a user's model reads the image as it was trained to: no inversion here
        raise ValueError("the torchscript backbone takes the image as it is: leave polarity at auto")

    if path is None:
        raise ValueError("the torchscript backbone needs the model file: path=... (CLI: --backbone-file)")
    return TorchScriptBackbone(path, **kwargs)


def _exported(path=None, polarity="auto", **kwargs):
    from .user_model import ExportedBackbone

    if polarity != "auto":  # a user's model reads the image as it was trained to: no inversion here
        raise ValueError("the exported backbone takes the image as it is: leave polarity at auto")

    if path is None:
        raise ValueError("the exported backbone needs the model file: path=... (CLI: --backbone-file)")
    return ExportedBackbone(path, **kwargs)


_REGISTRY: dict[str, Callable[..., object]] = {
    "vesselness": _vesselness, "region3d": _region3d, "unet": _unet, "unet3d": _unet3d,
    "exported": _exported,
    "torchscript": _torchscript}

#: One line per backbone, for ``--help`` and the docs.
DESCRIPTIONS: dict[str, str] = {
    "unet": "2D U-Net, shipped DRIVE weights (or --weights)",
    "unet3d": "3D U-Net for grey volumes, shipped weights from synthetic volumes (or --weights)",
    "vesselness": "training-free multi-scale Sato vesselness, 2D and 3D",
    "region3d": "training-free 3D default: smoothed intensity above Li's threshold, vessel radius measured",
    "exported": "your torch.export program (.pt2, torch.export.save) given by --backbone-file",
    "torchscript": "your TorchScript model (.pt, torch.jit.save; deprecated) given by --backbone-file",
}

#: Backbones that need the user's model file (``path=``); not offered where no file can be given.
NEEDS_FILE = ("exported", "torchscript")

#: The numbers of spatial axes each backbone takes (a user's model: 2D is assumed).
_NDIMS: dict[str, tuple[int, ...]] = {"vesselness": (2, 3), "region3d": (3,), "unet": (2,), "unet3d": (3,),
                                      "torchscript": (2,),
                                      "exported": (2,)}


def backbone_for_file(path) -> str:
    """The backbone name for a user's model file: ``.pt2`` is a ``torch.export`` program
    (``"exported"``), anything else is read as TorchScript.

    Examples
    --------
    >>> backbone_for_file("mine.pt2"), backbone_for_file("old.pt")
    ('exported', 'torchscript')
    """
    return "exported" if Path(path).suffix.lower() == ".pt2" else "torchscript"


def backbone_ndims(name: str) -> tuple[int, ...]:
    """The numbers of spatial axes backbone ``name`` takes: ``(2,)``, ``(3,)`` or ``(2, 3)``.

    Examples
    --------
    >>> backbone_ndims("vesselness"), backbone_ndims("unet3d")
    ((2, 3), (3,))
    """
    if name not in _REGISTRY:
        names = ", ".join(available_backbones())
        raise ValueError(f"unknown backbone {name!r}; available: {names}")
    return _NDIMS.get(name, (2,))


def available_backbones() -> list[str]:
    """Names accepted by `get_backbone`."""
    return sorted(_REGISTRY)


def get_backbone(name: str, **kwargs):
    """A backbone object with ``predict(image, fov=None) -> probability``.

    ``"unet"`` (shipped fundus weights, or ``weights=PATH``), ``"unet3d"`` (grey volumes;
    shipped weights trained on synthetic volumes, or ``weights=PATH``), ``"vesselness"``
    (training-free), ``"region3d"`` (training-free, volumes: the 3D default; ``spacing=``),
    ``"exported"`` (``path=PATH`` to a ``torch.export`` program, ``.pt2``),
    ``"torchscript"`` (``path=PATH`` to a TorchScript file). The U-Nets
    take ``device="auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Examples
    --------
    >>> get_backbone("unet3d", device="cpu").ndim
    3
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        names = ", ".join(available_backbones())
        raise ValueError(f"unknown backbone {name!r}; available: {names}") from None
    return factory(**kwargs)


#: The backbone for volumes when none is named (``tubediff segment``, ``tubediff refine --input
#: image``, the Segment panel): the training-free ``region3d`` (docs/results.md, "Real volumes":
#: it beats the 3D U-Net and the classical baselines on both real volumes).
DEFAULT_3D = "region3d"
