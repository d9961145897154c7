"""Backbones by name, shared by the CLI and the plugin."""

from __future__ import annotations

from collections.abc import Callable

from .classical import VesselnessBackbone

_REGISTRY: dict[str, Callable[[], object]] = {
    "vesselness": VesselnessBackbone,
}


def available_backbones() -> list[str]:
    """Names accepted by `get_backbone`."""
    return sorted(_REGISTRY)


def get_backbone(name: str):
    """A backbone object with ``predict(image, fov=None) -> probability``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        names = ", ".join(available_backbones())
        raise ValueError(f"unknown backbone {name!r}; available: {names}") from None
    return factory()
