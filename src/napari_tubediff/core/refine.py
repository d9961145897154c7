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
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from .checks import check_directions, check_field, check_spacing, check_steps, relative_spacing
from .diffusion import iter_diffusion
from .directions import estimate_directions
from .dti import dti
from .fov import fov_diameter
from .hysteresis import directional_hysteresis

__all__ = ["RefineSettings", "refine", "iter_refine", "refine_steps", "RefineStep", "total_steps", "gate",
           "ungated_state", "complete_dti", "join_ends", "REFINE_METHODS",
           "COMPLETED_METHODS", "RECOMMENDED_METHOD", "VOLUME_REFINE", "settings_for_fov", "REFINE_FOV",
           "LARGE_FOV", "LARGE_FOV_LINE_WIDTH"]

#: The refinement methods `RefineSettings.method` accepts.
REFINE_METHODS = ("faithful", "gated", "hysteresis", "gated+hysteresis", "gated+dti")
#: The method chosen on the training splits (docs/results.md, "Refinement against DTI"): the
#: default of `tubediff refine`, of batch refinement and of the Diffusion panel (which steps
#: through it with `refine_steps`). `RefineSettings` keeps the faithful PDE as its default,
#: because the block-wise batch refinement (`batch.chunked`) runs that PDE itself.
RECOMMENDED_METHOD = "gated+dti"
_GATED = ("gated", "gated+hysteresis", "gated+dti")
#: The methods whose last step is a completion (DTI or directional hysteresis) after the diffusion.
COMPLETED_METHODS = ("hysteresis", "gated+hysteresis", "gated+dti")
_NOT_DIFFUSION = ("sigma", "method", "gate_center", "gate_width", "low", "line_width", "band", "around_added",
                  "end_low", "spacing")


@dataclass(frozen=True)
class RefineSettings:
    """Parameters of a refinement with Hessian directions.

    ``sigma`` is the Hessian scale of the directions (pixels); ``method`` one of
    `REFINE_METHODS` (module docstring); ``gate_center`` and ``gate_width`` the
    evidence gate of ``"gated"``; ``low`` the growth threshold of ``"hysteresis"`` and
    of DTI (seeds at 0.5); ``line_width`` how many pixels of DTI's additions
    ``"gated+dti"`` keeps on each side of the centre line, and ``band`` (0: off) how many
    times the continued vessel's radius it keeps about a bridge's own centre line
    (`complete_dti`); ``end_low`` (0: off) the probability along which ``"gated+dti"``
    then grows vessel ends along their axis to rejoin a break DTI left (`join_ends`). The
    others are `napari_tubediff.diffuse`'s. The defaults suit 1 to 4 pixel wide vessels.

    ``spacing`` is the voxel spacing ``(dz, dy, dx)`` (2D ``(dy, dx)``, any length unit, e.g.
    a napari layer's ``scale``); None is isotropic. It is used relative to its smallest
    entry (`core.checks.relative_spacing`): ``sigma``, ``dt`` and the lambdas stay in pixels
    of the finest axis, so a layer scaled in micrometres refines as one in pixels and only
    the anisotropy (z voxels 3 times longer, say) changes the directions and the diffusion.
    """

    sigma: float = 3.0
    lambda_par: float = 1.0
    lambda_perp: float = 0.02
    dt: float = 0.25
    steps: int = 30
    order: int = 8
    method: str = "faithful"
    gate_center: float = 0.3
    gate_width: float = 0.05
    low: float = 0.35
    line_width: int = 1
    band: float = 0.0
    around_added: bool = False
    end_low: float = 0.1
    spacing: tuple[float, ...] | None = None
    stencil: str = "wide"

    def __post_init__(self):
        if self.spacing is not None:
            object.__setattr__(self, "spacing", check_spacing(self.spacing, len(tuple(self.spacing))))
        if self.method not in REFINE_METHODS:
            raise ValueError(f"unknown refinement method {self.method!r}; "
                             f"choose from {', '.join(REFINE_METHODS)}")
        if not self.gate_width > 0:
            raise ValueError(f"gate_width must be > 0, got {self.gate_width!r}")

    def relative_spacing(self, ndim: int) -> tuple[float, ...] | None:
        """The spacing the core functions get for an ``ndim``-D field (None: isotropic)."""
        if self.spacing is not None and len(self.spacing) != ndim:
            raise ValueError(f"spacing {self.spacing} has {len(self.spacing)} entries but the field is "
                             f"{ndim}D; give one length per axis")
        return relative_spacing(self.spacing, ndim)

    def diffusion_kwargs(self, ndim: int | None = None) -> dict:
        """`napari_tubediff.diffuse`'s keyword arguments; with ``ndim``, ``spacing`` too."""
        d = asdict(self)
        for k in _NOT_DIFFUSION:
            d.pop(k)
        if ndim is not None:
            d["spacing"] = self.relative_spacing(ndim)
        return d


#: The default refinement of volumes (3D) in `tubediff refine` and batch refinement:
#: chosen on synthetic microscopy volumes by scripts/volume_refine_choice.py (docs/results.md,
#: "Real volumes"). ``steps == 0`` means none: the backbone's probability is the result.
#: None won there: every refinement lowered the mean Dice (0.935 alone against 0.896 to 0.917)
#: and none lowered the Betti-0 error (0 for all).
VOLUME_REFINE = RefineSettings(method=RECOMMENDED_METHOD, steps=0)


#: The FOV diameter (pixels) of the fundus photographs the refinement's pixel settings were chosen
#: on: the mean of DRIVE's (538) and STARE's (650).
REFINE_FOV = 594.0
#: A FOV more than this many times `REFINE_FOV` across (HRF: 3262 pixels, 5.5 times) is refined
#: with DTI's additions kept `LARGE_FOV_LINE_WIDTH` pixels either side of their centre line
#: (`settings_for_fov`; chosen on HRF training images, docs/results.md "Refinement against DTI":
#: it raised clDice there by 0.011 at 3262 pixels, but cost 0.010 and 0.012 Dice on the same maps resampled to
#: 1631 and 979 pixels; 4 lies between 2.75 and 5.5).
LARGE_FOV = 4.0
LARGE_FOV_LINE_WIDTH = 2


def settings_for_fov(settings: RefineSettings, fov) -> RefineSettings:
    """The refinement settings for a fundus photograph whose field of view is ``fov``.

    ``fov`` is the FOV mask (2D bool), its diameter in pixels, or None. A FOV more than
    `LARGE_FOV` times `REFINE_FOV` across (2376 pixels: 4 times DRIVE's and STARE's, where the
    settings were chosen; HRF's is 3262) keeps DTI's additions at least
    `LARGE_FOV_LINE_WIDTH` pixels either side of their centre line instead of
    ``line_width``: there the vessels are many pixels wide and a one-pixel band leaves the
    truth's centre line uncovered. Every other setting is the same (scaling the Hessian
    scale and the end growth with the FOV was measured and gains nothing), and smaller
    FOVs keep ``settings``. None, or a mask that fills the whole image (no disc: the
    image's size says nothing about its vessels'), leaves ``settings`` as they are.

    Examples
    --------
    >>> s = RefineSettings(method="gated+dti")
    >>> [settings_for_fov(s, d).line_width for d in (538, 1631, 3262)]
    [1, 1, 2]
    >>> settings_for_fov(s, None) is s, settings_for_fov(s, np.ones((40, 40), bool)) is s
    (True, True)
    """
    if fov is None:
        return settings
    if np.ndim(fov) == 0:
        diameter = float(fov)
        if not (np.isfinite(diameter) and diameter > 0):
            raise ValueError(f"the FOV diameter must be a positive number of pixels, got {fov!r}")
    else:
        mask = np.asarray(fov, bool)
        if mask.ndim != 2 or mask.all():
            return settings
        diameter = fov_diameter(mask)
    if diameter <= LARGE_FOV * REFINE_FOV:
        return settings
    return replace(settings, line_width=max(settings.line_width, LARGE_FOV_LINE_WIDTH))


def complete_dti(u, low: float = 0.3, line_width: int = 1, band: float = 0.0,
                 around_added: bool = False) -> np.ndarray:
    """The completion of ``"gated+dti"``: DTI (0.5 / ``low``) on ``u``, of whose additions
    only the centre line and the pixels near it are kept, raised to 0.5.

    Near is ``line_width`` pixels either side of the centre line (skimage's `skeletonize`
    of DTI's mask); with ``band > 0`` also up to ``band`` times the radius of the vessel
    an addition continues from the part of that centre line that lies outside the mask
    ``u >= 0.5`` (the radius: the half-width, by the distance transform of that mask, at
    its centre-line pixel nearest). So a bridge across a break of a 12-pixel vessel keeps
    the vessel's width, while DTI's sideways growth along a vessel (whose centre line
    stays inside the vessel) is still left out.

    With ``around_added`` the ``line_width`` pixels are counted from the additions' own
    centre line only (the part of DTI's centre line outside ``u >= 0.5``), not from the
    centre line of vessels the mask already holds: a thin vessel is then not widened.

    Examples
    --------
    >>> u = np.zeros((9, 20), np.float32); u[2:7, :8] = u[2:7, 12:] = 0.9
    >>> u[2:7, 8:12] = 0.35                  # a faint 5-pixel wide break
    >>> int((complete_dti(u)[:, 10] >= 0.5).sum()), int((complete_dti(u, band=1.0)[:, 10] >= 0.5).sum())
    (3, 5)
    """
    u = check_field(u, "u")
    grown = dti(u, 0.5, low)
    line = skeletonize(grown)
    seed = u >= 0.5
    added_line = line & ~seed  # the additions' own centre line: not the seed's, which sideways growth shifts
    about = added_line if around_added else line
    cube = np.ones((3,) * u.ndim, bool)
    near_line = about
    if line_width > 0:
        near_line = ndi.binary_dilation(about, structure=cube, iterations=int(line_width))
    if band > 0 and added_line.any():
        seed_line = skeletonize(seed)
        if seed_line.any():
            radius = ndi.distance_transform_edt(seed)
            # the radius of the vessel nearest each pixel, read at that vessel's centre line
            near_radius = radius[tuple(ndi.distance_transform_edt(~seed_line, return_distances=False,
                                                                  return_indices=True))]
            dist, idx = ndi.distance_transform_edt(~added_line, return_indices=True)
            near_line |= dist <= band * near_radius[tuple(idx)]
    keep = grown & near_line & (u < 0.5)
    return np.where(keep, np.float32(0.5), u).astype(np.float32)


def join_ends(u, mask, directions, low: float = 0.15, max_length: int = 20, min_piece: int = 10,
              back: int = 5) -> np.ndarray:
    """Growth from vessel ends along their direction: the paths that rejoin a break.

    From every end of the centre line of ``mask`` (skeleton pixels with one neighbour, on
    components of at least ``min_piece`` pixels), a path is traced outwards, one pixel at
    a time along the local axis (``directions``, signed to keep the heading; the heading
    starts as the end's offset from its centre line ``back`` pixels inside), while ``u``
    stays at or above ``low``, for at most ``max_length`` pixels. A path that reaches
    another component of ``mask`` is returned (the mask of its pixels); one that fades,
    leaves the image or turns back is dropped: an end is extended only to join a break.

    Examples
    --------
    >>> u = np.zeros((7, 30), np.float32); u[3, :12] = u[3, 18:] = 0.9; u[3, 12:18] = 0.2
    >>> v = np.zeros((2, 7, 30), np.float32); v[1] = 1
    >>> join_ends(u, u >= 0.5, v)[3, 10:20].astype(int)
    array([0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    """
    u = check_field(u, "u")
    v = check_directions(directions, u.shape)
    mask = np.asarray(mask, bool)
    cube = np.ones((3,) * u.ndim, bool)
    lab, n = ndi.label(mask, structure=cube)
    added = np.zeros(u.shape, bool)
    if n < 2:
        return added
    sizes = np.bincount(lab.ravel())
    line = skeletonize(mask)
    neighbours = ndi.convolve(line.astype(np.uint8), cube.astype(np.uint8), mode="constant") - 1
    ends = np.argwhere(line & (neighbours == 1) & (sizes[lab] >= min_piece))
    shape = np.array(u.shape)
    for end in ends:
        own = lab[tuple(end)]
        lo, hi = np.maximum(end - back, 0), end + back + 1
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        near = np.argwhere(line[box] & (lab[box] == own)) + lo
        heading = end - near.mean(0)
        norm = np.linalg.norm(heading)
        if norm < 0.5:
            continue
        heading /= norm
        pos = end.astype(float)
        path = []
        for _ in range(max_length):
            axis = v[(slice(None), *np.rint(pos).astype(int))]
            if axis.any():  # follow the vessel's axis, keeping the heading (half and half: no jumps)
                heading = heading + axis * (np.sign(axis @ heading) or 1.0)
                heading /= max(np.linalg.norm(heading), 1e-6)
            pos = pos + heading
            q = np.rint(pos).astype(int)
            if (q < 0).any() or (q >= shape).any():
                path = []
                break
            q = tuple(q)
            if lab[q] == own:
                if path:  # turned back into its own vessel
                    path = []
                    break
                continue
            if lab[q]:
                break  # reached another component: a join
            if u[q] < low:
                path = []
                break
            path.append(q)
        else:
            path = []
        if path:
            added[tuple(np.array(path).T)] = True
    return added


def _hysteresis_field(u: np.ndarray, u0: np.ndarray, s: RefineSettings, directions) -> np.ndarray:
    grown = directional_hysteresis(u, directions, low=s.low, sigma=s.sigma)
    return np.where(grown & (u < 0.5), np.float32(0.5), np.maximum(u, u0)).astype(np.float32)


class RefineStep(NamedTuple):
    """One step of a refinement as `refine_steps` yields it.

    ``field`` is what the step shows (the refined field so far); ``state`` the diffusion's
    own field, from which the next step continues (``None`` after the completion, the last
    step of a method with one: nothing continues from there).
    """

    step: int
    field: np.ndarray
    state: np.ndarray | None


def total_steps(settings: RefineSettings) -> int:
    """Steps `refine_steps` takes to the end: the diffusion's, plus one for the completion
    (DTI or directional hysteresis) of the methods that have one.

    Examples
    --------
    >>> total_steps(RefineSettings(method="faithful", steps=30))
    30
    >>> total_steps(RefineSettings(method="gated+dti", steps=30))
    31
    """
    if settings.method == "hysteresis":
        return 1
    return settings.steps + int(settings.method in COMPLETED_METHODS)


def gate(u0, settings: RefineSettings) -> np.ndarray | None:
    """The evidence gate of the gated methods (None for the others): ~1 on faint vessels
    (``u0 >= gate_center + 2 gate_width``), ~0 on background."""
    if settings.method not in _GATED:
        return None
    u0 = np.asarray(u0, np.float32)
    return (0.5 * (1.0 + np.tanh((u0 - settings.gate_center) / (2.0 * settings.gate_width)))
            ).astype(np.float32)


def ungated_state(u0, field, settings: RefineSettings) -> np.ndarray:
    """The diffusion state that a diffusion step's shown ``field`` came from (the inverse of
    the gate, ``u0 + (field - u0) / g``): to continue a gated run from a stored snapshot."""
    g = gate(u0, settings)
    if g is None:
        return np.asarray(field, np.float32).copy()
    u0 = np.asarray(u0, np.float32)
    return np.clip(u0 + (np.asarray(field, np.float32) - u0) / g, 0.0, 1.0).astype(np.float32)


def refine_steps(u0, directions, settings: RefineSettings, *, state=None, start: int = 0,
                 steps: int | None = None, every: int = 1, device: str = "auto") -> Iterator[RefineStep]:
    """The refinement of ``u0`` as the steps a person watches (the Diffusion panel).

    Runs from ``state`` (the diffusion's field at step ``start``; ``u0`` itself by
    default) for ``steps`` more steps (default: to `total_steps`; past it only for the
    methods without a completion), yielding every ``every`` steps and the last. The
    diffusion steps show ``u0 + g (state - u0)`` for the gated methods (``g`` = `gate`),
    the state itself for ``"faithful"``; the methods with a completion show it as one
    more step, ``settings.steps + 1``. Run in one go, the last field equals `refine`'s.

    Examples
    --------
    >>> u = np.zeros((32, 32), np.float32); u[15:17, 2:14] = u[15:17, 18:30] = 1
    >>> u[15:17, 14:18] = 0.35                                 # a faint stretch the backbone saw
    >>> s = RefineSettings(method="gated+dti", steps=4)
    >>> [(r.step, r.state is None) for r in refine_steps(u, None, s, every=2)]
    [(2, False), (4, False), (5, True)]
    """
    u0 = check_field(u0, "u")
    s = settings
    check_steps(s.steps, "steps")
    every = check_steps(every, "every", minimum=1)
    completed = s.method in COMPLETED_METHODS
    end = total_steps(s) if steps is None else start + check_steps(steps, "steps")
    if completed:  # nothing follows the completion; the other methods may run on past ``steps``
        end = min(end, total_steps(s))
    if directions is None:
        directions = estimate_directions(u0, s.sigma, spacing=s.relative_spacing(u0.ndim))
    g = gate(u0, s)
    state = u0 if state is None else check_field(state, "state")
    last_diffusion = 0 if s.method == "hysteresis" else s.steps if completed else end
    shown = state if g is None else u0 + g * (state - u0)
    diffusion_end = min(end, last_diffusion)
    if diffusion_end > start:
        kw = {**s.diffusion_kwargs(u0.ndim), "steps": diffusion_end - start}
        for k, field in iter_diffusion(state, directions, every=every, device=device, **kw):
            # u only rises in the diffusion, so u0 + g (field - u0) stays in [u0, field]
            state, shown = field, (field if g is None else u0 + g * (field - u0))
            yield RefineStep(start + k, shown, state)
    if end > max(start, last_diffusion):  # only the methods with a completion have a step after it
        yield RefineStep(end, _complete(shown, u0, s, directions), None)


def _complete(field: np.ndarray, u0: np.ndarray, s: RefineSettings, directions) -> np.ndarray:
    if s.method in ("hysteresis", "gated+hysteresis"):
        return _hysteresis_field(field, u0, s, directions)
    done = complete_dti(field, s.low, s.line_width, s.band, s.around_added)
    if s.end_low > 0:  # then the breaks DTI left: paths from vessel ends along their axis
        joined = join_ends(u0, done >= 0.5, directions, low=s.end_low)
        if s.line_width > 0:
            joined = ndi.binary_dilation(joined, structure=np.ones((3,) * u0.ndim, bool),
                                         iterations=int(s.line_width))
        done = np.where(joined & (done < 0.5), np.float32(0.5), done).astype(np.float32)
    return done


def iter_refine(u, directions=None, settings: RefineSettings | None = None, *, every: int = 1,
                device: str = "auto", **overrides) -> Iterator[tuple[int, np.ndarray]]:
    """`refine` step by step: yields ``(step, field)`` like `iter_diffusion`; the
    completion of a method that has one is merged into its last diffusion step."""
    s = replace(settings or RefineSettings(), **overrides)
    check_steps(s.steps, "steps")
    u = check_field(u, "u")  # a field outside [0, 1] is refused before the Hessian, not after
    completed = s.method in COMPLETED_METHODS
    for r in refine_steps(u, directions, s, every=every, device=device):
        if r.state is None:  # the completion: shown as the diffusion's last step
            yield s.steps, r.field
        elif not (completed and r.step == s.steps):
            yield r.step, r.field


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
