"""Backbones by name, shared by the CLI and the plugin."""

from __future__ import annotations

from collections.abc import Callable

from .classical import VesselnessBackbone

_REGISTRY: dict[str, Callable[..., object]] = {"vesselness": VesselnessBackbone}


def _unet(**kwargs):
    from .backbones import UNetBackbone

    return UNetBackbone(**kwargs)


def _torchscript(path=None, **kwargs):
    from .backbones import TorchScriptBackbone

    if path is None:
        raise ValueError("the torchscript backbone needs the model file: path=...")
    return TorchScriptBackbone(path, **kwargs)


_REGISTRY["unet"] = _unet
_REGISTRY["torchscript"] = _torchscript


def available_backbones() -> list[str]:
    """Names accepted by `get_backbone`."""
    return sorted(_REGISTRY)


def get_backbone(name: str, **kwargs):
    """A backbone object with ``predict(image, fov=None) -> probability``.

    ``"unet"`` (shipped DRIVE weights, or ``weights=PATH``), ``"vesselness"``
    (training-free), ``"torchscript"`` (``path=PATH`` to a TorchScript file).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        names = ", ".join(available_backbones())
        raise ValueError(f"unknown backbone {name!r}; available: {names}") from None
    return factory(**kwargs)
