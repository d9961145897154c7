"""Backbones (segmentation models giving a probability field) and their registry."""

from .registry import available_backbones, get_backbone

__all__ = ["available_backbones", "get_backbone"]
