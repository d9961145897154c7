"""Sample data for napari (offline: generated, never downloaded)."""

from __future__ import annotations

from .data.synthetic import synthetic_vessels


def synthetic_sample(seed: int = 0):
    """Synthetic vessel tree: a grey image, a probability field with breaks, and the truth.

    Returns napari layer-data tuples (this function does not import napari).
    """
    s = synthetic_vessels((256, 256), seed=seed)
    return [
        (s.image, {"name": "synthetic image", "colormap": "gray"}, "image"),
        (s.probability, {"name": "synthetic probability", "colormap": "magma",
                         "contrast_limits": (0.0, 1.0), "blending": "additive"}, "image"),
        (s.truth.astype("uint8"), {"name": "synthetic truth", "opacity": 0.4, "visible": False}, "labels"),
    ]
