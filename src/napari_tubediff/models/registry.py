"""Backbones by name, shared by the CLI and the plugin."""

from __future__ import annotations

from collections.abc import Callable

from .classical import VesselnessBackbone

_REGISTRY: dict[str, Callable[..., object]] = {"vesselness": VesselnessBackbone}


def _unet(**kwargs):
    from .backbones import UNetBackbone

    return UNetBackbone(**kwargs)


def _unet3d(**kwargs):
    from .backbones import UNet3DBackbone

    return UNet3DBackbone(**kwargs)


def _torchscript(path=None, **kwargs):
    from .backbones import TorchScriptBackbone

    if path is None:
        raise ValueError("the torchscript backbone needs the model file: path=...")
    return TorchScriptBackbone(path, **kwargs)


_REGISTRY["unet"] = _unet
_REGISTRY["unet3d"] = _unet3d
_REGISTRY["torchscript"] = _torchscript


#: The numbers of spatial axes each backbone takes (TorchScript: a 2D model is assumed).
_NDIMS: dict[str, tuple[int, ...]] = {"vesselness": (2, 3), "unet": (2,), "unet3d": (3,), "torchscript": (2,)}


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
    (training-free), ``"torchscript"`` (``path=PATH`` to a TorchScript file). The U-Nets
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
