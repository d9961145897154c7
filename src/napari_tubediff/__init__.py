"""napari-tubediff: anisotropic-diffusion refinement of vessel segmentations.

The public API is numpy in, numpy out, and never imports napari or Qt; the napari
widgets live in ``napari_tubediff.widgets`` and are loaded by napari through the
npe2 manifest. The differentiable torch version of the engine is
``napari_tubediff.core.torch_diffusion`` (imported on demand, so that importing
this package does not import torch).
"""

from .core import (
    derivative,
    diffuse,
    diffusion_rhs,
    diffusion_tensor,
    divergence,
    estimate_directions,
    fd_weights,
    gradient,
    iter_diffusion,
    max_stable_dt,
    normalize_directions,
    plan_substeps,
)
from .core.dti import dti
from .core.metrics import betti_errors, betti_numbers, cldice, dice, evaluate, vca, vca_fov

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "__version__",
    "betti_errors",
    "betti_numbers",
    "cldice",
    "dice",
    "dti",
    "evaluate",
    "vca",
    "vca_fov",
    "derivative",
    "diffuse",
    "diffusion_rhs",
    "diffusion_tensor",
    "divergence",
    "estimate_directions",
    "fd_weights",
    "gradient",
    "iter_diffusion",
    "max_stable_dt",
    "normalize_directions",
    "plan_substeps",
]
