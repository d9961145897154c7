"""Refinement with classical directions: the one place that holds the default settings.

`refine` chains `estimate_directions` and a refinement method; the CLI (demo, evaluate,
refine) and the napari Diffusion panel use the same `RefineSettings` defaults. Methods
(``RefineSettings.method``; all take only the probability field, so any backbone):

* ``"faithful"``: the method description's PDE, ``du/dt = ReLU(div(D grad u))``
  (`iter_diffusion`), as the thesis states it.
* ``"gated"``: the same diffusion, its increment multiplied by the backbone's evidence
  ``g = sigmoid((u0 - gate_center) / gate_width)``, so probability grows where the
  image already says "faint vessel" and not into the background between vessels.
* ``"hysteresis"``: directional hysteresis (`core.hysteresis`), DTI that may only grow
  along the Hessian directions; added pixels are raised to 0.5, the rest is ``u``.
* ``"gated+hysteresis"``: the gated field, then directional hysteresis on it.
* ``"gated+dti"``: the gated field, then the dual-threshold iteration (`core.dti`) on it,
  of whose additions only the centre line (skimage's `skeletonize`) and the pixels next
  to it are kept: DTI's reconnections without its sideways widening. Added pixels are
  raised to 0.5.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from .checks import check_directions, check_field, check_steps
from .diffusion import iter_diffusion
from .directions import estimate_directions
from .dti import dti
from .hysteresis import directional_hysteresis

__all__ = ["RefineSettings", "refine", "iter_refine", "REFINE_METHODS", "RECOMMENDED_METHOD", "VOLUME_REFINE"]

#: The refinement methods `RefineSettings.method` accepts.
REFINE_METHODS = ("faithful", "gated", "hysteresis", "gated+hysteresis", "gated+dti")
#: The method that won on the DRIVE training split (docs/results.md, "Refinement against DTI"):
#: the default of `tubediff refine` and of batch refinement. `RefineSettings` keeps the faithful
#: PDE as its default, because the step-by-step Diffusion panel and the block-wise batch
#: refinement (`batch.chunked`) run that PDE itself.
RECOMMENDED_METHOD = "gated+dti"
_NOT_DIFFUSION = ("sigma", "method", "gate_center", "gate_width", "low")


@dataclass(frozen=True)
class RefineSettings:
    """Parameters of a refinement with Hessian directions.

    ``sigma`` is the Hessian scale of the directions (pixels); ``method`` one of
    `REFINE_METHODS` (module docstring); ``gate_center`` and ``gate_width`` the
    evidence gate of ``"gated"``; ``low`` the growth threshold of ``"hysteresis"``
    (seeds at 0.5). The others are `napari_tubediff.diffuse`'s. The defaults suit 1 to
    4 pixel wide vessels.
    """

    sigma: float = 3.0
    lambda_par: float = 1.0
    lambda_perp: float = 0.02
    dt: float = 0.25
    steps: int = 30
    order: int = 8
    method: str = "faithful"
    gate_center: float = 0.2
    gate_width: float = 0.05
    low: float = 0.3

    def __post_init__(self):
        if self.method not in REFINE_METHODS:
            raise ValueError(f"unknown refinement method {self.method!r}; "
                             f"choose from {', '.join(REFINE_METHODS)}")
        if not self.gate_width > 0:
            raise ValueError(f"gate_width must be > 0, got {self.gate_width!r}")

    def diffusion_kwargs(self) -> dict:
        d = asdict(self)
        for k in _NOT_DIFFUSION:
            d.pop(k)
        return d


#: The default refinement of volumes (3D) in `tubediff refine`, batch refinement and the panels:
#: chosen on synthetic microscopy volumes by scripts/volume_refine_choice.py (docs/results.md,
#: "Real volumes"). ``steps == 0`` means none: the backbone's probability is the result.
#: None won there: every refinement lowered the mean Dice (0.935 alone against 0.896 to 0.917)
#: and none lowered the Betti-0 error (0 for all).
VOLUME_REFINE = RefineSettings(method=RECOMMENDED_METHOD, steps=0)


def _gate(u0: np.ndarray, s: RefineSettings) -> np.ndarray:
    # the backbone's evidence: ~1 on faint vessels (u0 >= 0.3), ~0 on background (u0 <= 0.1)
    return (0.5 * (1.0 + np.tanh((u0 - s.gate_center) / (2.0 * s.gate_width)))).astype(np.float32)


def _thin_dti_field(u: np.ndarray, s: RefineSettings) -> np.ndarray:
    grown = dti(u, 0.5, s.low)
    near_line = ndi.binary_dilation(skeletonize(grown), structure=np.ones((3,) * u.ndim, bool))
    keep = grown & near_line & (u < 0.5)
    return np.where(keep, np.float32(0.5), u).astype(np.float32)


def _hysteresis_field(u: np.ndarray, u0: np.ndarray, s: RefineSettings, directions) -> np.ndarray:
    grown = directional_hysteresis(u, directions, low=s.low, sigma=s.sigma)
    return np.where(grown & (u < 0.5), np.float32(0.5), np.maximum(u, u0)).astype(np.float32)


def iter_refine(u, directions=None, settings: RefineSettings | None = None, *, every: int = 1,
                device: str = "auto", **overrides) -> Iterator[tuple[int, np.ndarray]]:
    """`refine` step by step: yields ``(step, field)`` like `iter_diffusion`."""
    s = replace(settings or RefineSettings(), **overrides)
    check_steps(s.steps, "steps")
    u = check_field(u, "u")  # a field outside [0, 1] is refused before the Hessian, not after
    if directions is None:
        directions = estimate_directions(u, s.sigma)
    if s.method == "hysteresis":
        yield s.steps, _hysteresis_field(u, u, s, directions)
        return
    gate = _gate(u, s) if s.method != "faithful" else None
    for step, field in iter_diffusion(u, directions, every=every, device=device, **s.diffusion_kwargs()):
        if gate is not None:
            # u only rises in the diffusion, so u + g (field - u) stays in [u, field]
            field = u + gate * (field - u)
        if s.method == "gated+hysteresis" and step == s.steps:
            field = _hysteresis_field(field, u, s, directions)
        if s.method == "gated+dti" and step == s.steps:
            field = _thin_dti_field(field, s)
        yield step, field


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
