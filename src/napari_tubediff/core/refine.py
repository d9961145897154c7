"""Refinement with classical directions: the one place that holds the default settings.

`refine` chains `estimate_directions` and `iter_diffusion`; the CLI (demo,
evaluate) and the napari Diffusion panel use the same `RefineSettings` defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np

from .checks import check_directions, check_field, check_steps
from .diffusion import iter_diffusion
from .directions import estimate_directions

__all__ = ["RefineSettings", "refine", "iter_refine"]


@dataclass(frozen=True)
class RefineSettings:
    """Parameters of a refinement with Hessian directions.

    ``sigma`` is the Hessian scale of the directions (pixels); the others are
    `napari_tubediff.diffuse`'s. The defaults suit 1 to 4 pixel wide vessels.
    """

    sigma: float = 3.0
    lambda_par: float = 1.0
    lambda_perp: float = 0.02
    dt: float = 0.25
    steps: int = 30
    order: int = 8

    def diffusion_kwargs(self) -> dict:
        d = asdict(self)
        d.pop("sigma")
        return d


def iter_refine(u, directions=None, settings: RefineSettings | None = None, *, every: int = 1,
                device: str = "auto", **overrides) -> Iterator[tuple[int, np.ndarray]]:
    """`refine` step by step: yields ``(step, field)`` like `iter_diffusion`."""
    s = replace(settings or RefineSettings(), **overrides)
    check_steps(s.steps, "steps")
    u = check_field(u, "u")  # a field outside [0, 1] is refused before the Hessian, not after
    if directions is None:
        directions = estimate_directions(u, s.sigma)
    yield from iter_diffusion(u, directions, every=every, device=device, **s.diffusion_kwargs())


def refine(u, directions=None, settings: RefineSettings | None = None, *, device: str = "auto",
           **overrides) -> np.ndarray:
    """Refined probability field; directions from the Hessian of ``u`` unless given.

    ``overrides`` replace fields of ``settings``; ``device`` is where the diffusion
    runs (see `napari_tubediff.diffuse`; the Hessian directions are computed on the CPU).

    Examples
    --------
    >>> u = np.zeros((32, 32), np.float32); u[15:17, 2:14] = u[15:17, 18:30] = 1
    >>> r = refine(u, steps=40)
    >>> bool(r[15, 16] > 0.5)
    True
    """
    s = replace(settings or RefineSettings(), **overrides)
    if check_steps(s.steps, "steps") == 0:
        # nothing to run, but the same input checks as a real run: NaN or colour channels
        # must not come back as a "refined" field
        u = check_field(u, "u")
        if directions is not None:
            check_directions(directions, u.shape)
        return u.copy()
    *_, (_, field) = iter_refine(u, directions, s, every=s.steps, device=device)
    return field
