"""Sample data for napari (offline: generated, never downloaded)."""

from __future__ import annotations

from .data.fundus import synthetic_fundus
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


def synthetic_sample_3d(seed: int = 0):
    """A synthetic vessel tree in a volume (64 planes of 96 x 96): grey volume, probability
    with breaks, truth.

    Returns napari layer-data tuples (this function does not import napari). Every panel
    takes volumes; the Segment panel picks a backbone that does (vesselness, or a learned
    3D one), and the Directions and Diffusion panels have a "3D view" box.
    """
    s = synthetic_vessels((64, 96, 96), seed=seed, n_breaks=6, width=(1.0, 3.0))
    return [
        (s.image, {"name": "synthetic volume", "colormap": "gray"}, "image"),
        (s.probability, {"name": "synthetic probability", "colormap": "magma",
                         "contrast_limits": (0.0, 1.0), "blending": "additive"}, "image"),
        (s.truth.astype("uint8"), {"name": "synthetic truth", "opacity": 0.4, "visible": False}, "labels"),
    ]


def retina_sample(seed: int = 0):
    """A retina-like RGB photograph (dark vessels, circular field of view), its truth and FOV.

    Returns napari layer-data tuples: the RGB image, the vessel truth and the field of
    view as Labels (both hidden). Segment it with the Segment panel: RGB images are
    read through their green channel.
    """
    f = synthetic_fundus((256, 256), seed=seed)
    return [
        (f.image, {"name": "retina", "rgb": True}, "image"),
        (f.truth.astype("uint8"), {"name": "retina truth", "opacity": 0.5, "visible": False}, "labels"),
        (f.fov.astype("uint8"), {"name": "retina fov", "opacity": 0.2, "visible": False}, "labels"),
    ]
