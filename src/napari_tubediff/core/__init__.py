"""The numerical core: numpy, scipy, scikit-image and torch only; never napari or Qt."""

from .diffusion import (
    diffuse,
    diffusion_rhs,
    diffusion_tensor,
    iter_diffusion,
    max_stable_dt,
    normalize_directions,
    plan_substeps,
    rk4_step,
)
from .directions import estimate_directions
from .stencils import derivative, divergence, fd_weights, fornberg_weights, gradient

__all__ = [
    "derivative",
    "diffuse",
    "diffusion_rhs",
    "diffusion_tensor",
    "divergence",
    "estimate_directions",
    "fd_weights",
    "fornberg_weights",
    "gradient",
    "iter_diffusion",
    "max_stable_dt",
    "normalize_directions",
    "plan_substeps",
    "rk4_step",
]
