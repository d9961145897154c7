"""The learned refiner: a direction head on the backbone's features, positive learnable
lambdas, and N differentiable RK4 steps of the engine (../shared/METHOD.md, "The refiner"),
for images (2D) and volumes (3D)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.device import resolve_device
from ..core.diffusion import diffuse, normalize_directions
from ..core.directions import estimate_directions
from ..core.scale import from_working
from ..core.torch_diffusion import diffuse_t
from .unet import layers
from .weights import WEIGHTS_DIR, load_checkpoint, load_state

SHIPPED_REFINER = WEIGHTS_DIR / "refiner_fundus.pt"
SHIPPED_REFINER3D = WEIGHTS_DIR / "refiner_synth3d.pt"
# the shipped refiner for each dimension (2D: fundus photographs; 3D: synthetic volumes)
SHIPPED_REFINERS = {2: SHIPPED_REFINER, 3: SHIPPED_REFINER3D}


#: From this many steps `Refiner.forward` checkpoints each RK4 step by default. Without it the
#: graph of one training update keeps about 25 fields per step (batch 4, 256 x 256 crops: 25 MB
#: per step, 0.41 GB at the shipped 10 steps, 5.2 GB at 200); with it one field per step
#: (0.17 GB at 10 steps, 0.36 GB at 200; docs/models.md, "Refiner"), for a recomputation of
#: each step in the backward pass. Below 20 steps the graph fits any machine that trains.
CHECKPOINT_FROM = 20


def _softplus_inv(x: float) -> float:
    return float(np.log(np.expm1(x)))


class Refiner(nn.Module):
    """Direction head + lambdas + RK4 diffusion.

    Parameters
    ----------
    feature_channels : int
        Channels of the backbone features the head reads.
    kernel : int
        Odd kernel size of the head's convolution, 1 to 13 (the method's best is 9).
    lambda_par, lambda_perp : float
        Initial diffusivities (kept positive by a softplus).
    per_pixel : bool
        Predict per-pixel lambdas (two more head channels, softplus) instead of scalars.
    dt, steps, order : float, int, int
        The PDE's time step, number of RK4 steps and stencil order.
    ndim : int
        2 (a Conv2d head giving 2-vectors) or 3 (a Conv3d head giving 3-vectors, for
        volumes). Checkpoints without ``ndim`` in their config are 2D.

    Examples
    --------
    >>> r = Refiner(feature_channels=4, kernel=3)
    >>> u = torch.rand(1, 1, 16, 16); f = torch.randn(1, 4, 16, 16)
    >>> out = r(u, f, steps=2)
    >>> tuple(out.shape), bool((out >= u - 1e-6).all())
    ((1, 1, 16, 16), True)
    >>> r3 = Refiner(feature_channels=4, kernel=3, ndim=3)
    >>> tuple(r3.head_outputs(torch.randn(1, 4, 8, 8, 8))[0].shape)
    (1, 3, 8, 8, 8)
    """

    def __init__(self, feature_channels: int = 16, kernel: int = 9, lambda_par: float = 1.0,
                 lambda_perp: float = 0.05, per_pixel: bool = False, dt: float = 0.2, steps: int = 10,
                 order: int = 8, ndim: int = 2):
        super().__init__()
        if not (1 <= kernel <= 13 and kernel % 2 == 1):
            raise ValueError(f"kernel must be odd, from 1 to 13, got {kernel}")
        conv = layers(ndim)[0]
        self.config = {"feature_channels": feature_channels, "kernel": kernel, "lambda_par": lambda_par,
                       "lambda_perp": lambda_perp, "per_pixel": per_pixel, "dt": dt, "steps": steps,
                       "order": order, "ndim": ndim}
        self.ndim = ndim
        # ndim direction components, then (per_pixel) the two lambda modulations
        self.head = conv(feature_channels, ndim + (2 if per_pixel else 0), kernel, padding=kernel // 2)
        self.raw_par = nn.Parameter(torch.tensor(_softplus_inv(lambda_par)))
        self.raw_perp = nn.Parameter(torch.tensor(_softplus_inv(lambda_perp)))

    def head_outputs(self, feats: torch.Tensor):
        """Unit directions (N, ndim, *spatial) and the lambdas (scalars or (N, 1, *spatial) maps)."""
        out = self.head(feats)
        n = self.ndim
        v = out[:, :n]
        # unit length wherever the head's output is not (numerically) zero
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-6)
        lpar, lperp = F.softplus(self.raw_par), F.softplus(self.raw_perp)
        if self.config["per_pixel"]:
            lpar = lpar * 2 * torch.sigmoid(out[:, n:n + 1])
            lperp = lperp * 2 * torch.sigmoid(out[:, n + 1:n + 2])
        return v, lpar, lperp

    def forward(self, prob: torch.Tensor, feats: torch.Tensor, steps: int | None = None,
                checkpoint: bool | None = None) -> torch.Tensor:
        """``steps`` (default: the config's) RK4 steps of ``prob`` along the head's directions.

        ``checkpoint``: gradient checkpointing of each step (`diffuse_t`); None (default)
        switches it on from `CHECKPOINT_FROM` steps, where the graph's memory starts to matter.
        """
        v, lpar, lperp = self.head_outputs(feats)
        c = self.config
        steps = c["steps"] if steps is None else steps
        if checkpoint is None:
            checkpoint = steps >= CHECKPOINT_FROM
        return diffuse_t(prob, v, lpar, lperp, dt=c["dt"], steps=steps, order=c["order"],
                         checkpoint=checkpoint)


class LearnedRefiner:
    """A trained `Refiner` for numpy inference, 2D or 3D.

    Parameters
    ----------
    weights : path, optional
        A refiner checkpoint; default: the shipped 2D (fundus) weights. `shipped(3)`
        gives the shipped 3D ones.
    device : str
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"`` (`napari_tubediff.core.device`). The head runs there, and so does
        the diffusion (on the CPU in the numba kernel, on a GPU in torch). Results come
        back as numpy.

    Examples
    --------
    >>> r = LearnedRefiner(device="cpu")
    >>> r.ndim, r.config["kernel"]
    (2, 9)
    """

    def __init__(self, weights=None, device: str | None = "auto"):
        # first: a bad device fails before any file is read
        device = torch.device(resolve_device(device))
        path = Path(weights) if weights else SHIPPED_REFINER
        ckpt = load_checkpoint(path, "refiner")
        self._build(ckpt["config"], ckpt["state_dict"], ckpt.get("meta", {}), path, device)

    def _build(self, config: dict, state: dict, meta: dict, weights: Path, device) -> None:
        # the one place the attributes are set (the constructor and `from_state`)
        self.device = device
        self.module = Refiner(**config)
        load_state(self.module, state, weights.name)
        self.module.to(self.device).eval()
        self.weights = weights
        self.meta = dict(meta)

    @classmethod
    def shipped(cls, ndim: int = 2, device: str | None = "auto") -> LearnedRefiner:
        """The shipped refiner for 2D images (fundus) or 3D volumes (synthetic)."""
        if ndim not in SHIPPED_REFINERS:
            raise ValueError(f"there are shipped refiners for 2D and 3D, not {ndim}D")
        return cls(SHIPPED_REFINERS[ndim], device=device)

    @classmethod
    def from_module(cls, module: Refiner, meta: dict | None = None,
                    name: str = "fine-tuned", device: str | None = "cpu") -> LearnedRefiner:
        """Wrap an in-memory `Refiner` (a copy, so later training does not change it)."""
        return cls.from_state(module.config, module.state_dict(), meta, name=name, device=device)

    @classmethod
    def from_state(cls, config: dict, state: dict, meta: dict | None = None, *, name: str = "in memory",
                   device: str | None = "cpu") -> LearnedRefiner:
        """A refiner from a `Refiner`'s ``config``, ``state`` dict and ``meta`` data (what a
        checkpoint holds, and what `workers.tasks.pack` sends to a worker process).

        Examples
        --------
        >>> r = LearnedRefiner.shipped(2, device="cpu")
        >>> same = LearnedRefiner.from_state(r.config, r.module.state_dict(), r.meta)
        >>> same.config == r.config, str(same.weights)
        (True, 'in memory')
        """
        self = cls.__new__(cls)
        self._build(config, state, meta or {}, Path(name), torch.device(resolve_device(device)))
        return self

    def save(self, path) -> Path:
        """Write the weights atomically (read back with ``LearnedRefiner(path)``)."""
        from .weights import save_checkpoint

        return save_checkpoint(path, "refiner", self.module.config, self.module.state_dict(), self.meta)

    @property
    def config(self) -> dict:
        return self.module.config

    @property
    def ndim(self) -> int:
        """2 for images, 3 for volumes."""
        return self.module.ndim

    def fits(self, prob: np.ndarray, feats: np.ndarray | None) -> bool:
        """Whether the head can read ``feats`` for ``prob``: same dimension, ``(C, *prob.shape)``
        with the head's channel count."""
        if feats is None:
            return False
        f = np.shape(feats)
        return (np.ndim(prob) == self.ndim and len(f) == self.ndim + 1 and f[1:] == np.shape(prob)
                and f[0] == self.config["feature_channels"])

    def _check_features(self, feats) -> np.ndarray:
        # a wrong channel count or dimension would end in a torch traceback, NaN features in
        # silently zero directions (isotropic diffusion)
        c = self.config["feature_channels"]
        f = np.asarray(feats) if feats is not None else None
        if f is None or f.ndim != self.ndim + 1 or f.shape[0] != c:
            raise ValueError(f"this {self.ndim}D refiner reads features of shape ({c}, *spatial) from the "
                             f"U-Net it was trained with, got {None if f is None else f.shape}")
        if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
            raise ValueError(f"features must be real numbers, got dtype {f.dtype}")
        if not np.isfinite(f).all():
            raise ValueError("the features contain NaN or infinite values (a broken backbone?)")
        return f

    def head(self, feats: np.ndarray):
        """``(directions (ndim, *spatial), lambda_par, lambda_perp)`` as numpy / floats or maps."""
        feats = self._check_features(feats)
        f = torch.from_numpy(np.ascontiguousarray(feats, np.float32))[None].to(self.device)
        with torch.no_grad():
            v, lpar, lperp = self.module.head_outputs(f)

        def conv(x):
            return float(x) if x.ndim == 0 else x[0, 0].cpu().numpy()

        # the same rule in float64: unit vectors, or zero where the head gave (almost) nothing
        return normalize_directions(v[0].cpu().numpy().astype(np.float64)), conv(lpar), conv(lperp)

    def refine(self, prob: np.ndarray, feats: np.ndarray, steps: int | None = None,
               fov: np.ndarray | None = None) -> np.ndarray:
        """Refined probability field (float32); zero outside ``fov`` when one is given.

        2D features of another size than ``prob`` come from a backbone that ran at its
        working scale (`models.backbones.segment_image`): the diffusion runs there too
        (``prob`` resampled to the features' grid, the result back to ``prob``'s size), as
        the head and its lambdas were trained at that scale.
        """
        shape, fshape = np.shape(prob), tuple(np.shape(feats)[1:])
        if self.ndim == 2 and np.ndim(prob) == 2 and fshape != shape:
            # prob was interpolated from the features' grid: no smoothing on the way back there
            work = from_working(prob, fshape, smooth=False)
            out = from_working(self.refine(work, feats, steps), shape)
        else:
            v, lpar, lperp = self.head(feats)
            c = self.config
            # the engine picks the numba kernel on the CPU and its torch path on a GPU
            out = diffuse(prob, v, lambda_par=lpar, lambda_perp=lperp, dt=c["dt"],
                          steps=c["steps"] if steps is None else steps, order=c["order"],
                          device=str(self.device))
        if fov is not None:
            out = np.where(np.asarray(fov, bool), out, 0)
        return out.astype(np.float32, copy=False)


#: Whether ``refiner="active"`` uses the shipped learned head without being asked, per
#: dimension. Not in 3D: on held-out synthetic volumes the shipped 3D head's directions
#: are a median 48 degrees off straight tube axes (Hessian: 1 degree), and the same PDE
#: refined better with Hessian directions (docs/results.md, "3D (synthetic volumes)").
LEARNED_BY_DEFAULT = {2: True, 3: False}


def resolve_refiner(refiner, ndim: int = 2) -> LearnedRefiner | None:
    """The `LearnedRefiner` a ``refiner`` option names, for ``ndim``-D data.

    ``"active"``: the session's refiner for that dimension (`models.session.active_refiner`:
    the one the user loaded or fine-tuned when it has that dimension, else the shipped
    one); ``"shipped"``: the shipped weights for that dimension; a path; a
    `LearnedRefiner` as it is; None: None.
    """
    if refiner is None or isinstance(refiner, LearnedRefiner):
        return refiner
    if isinstance(refiner, str) and refiner == "active":
        from .session import active_refiner

        return active_refiner(ndim)
    if isinstance(refiner, str) and refiner == "shipped":
        return LearnedRefiner.shipped(ndim)
    return LearnedRefiner(refiner)


def refiner_for(choice: str | None, backbone: str | None) -> LearnedRefiner | None:
    """The learned refiner a command's ``--refiner`` option names for ``backbone``'s output.

    ``choice`` is a weights path, ``"shipped"``, ``"auto"`` (or None), or ``"hessian"``
    (classical directions: returns None).

    By default ('auto') the shipped refiner goes with the shipped 2D U-Net and Hessian
    directions with every other backbone: the head reads U-Net features, and for the 3D
    U-Net Hessian directions refine better (`models.refiner.LEARNED_BY_DEFAULT`);
    'shipped' asks for the 3D head with ``unet3d``.
    """
    shipped_ndim = {"unet": 2, "unet3d": 3}
    if choice in (None, "auto"):
        learned = backbone in shipped_ndim and LEARNED_BY_DEFAULT[shipped_ndim[backbone]]
        choice = "shipped" if learned else "hessian"
    if choice == "hessian":
        return None
    if choice == "shipped":
        return LearnedRefiner.shipped(shipped_ndim.get(backbone, 2))
    return LearnedRefiner(choice)


def vessel_directions(prob: np.ndarray, features: np.ndarray | None = None, *, sigma: float = 3.0,
                      refiner="active", spacing=None) -> tuple[np.ndarray, str]:
    """Directions for the diffusion and where they came from (``"learned"`` or ``"hessian"``).

    The learned direction head is used when backbone ``features`` of shape
    ``(C, *prob.shape)`` are given (2D or 3D) and `resolve_refiner` finds a refiner of
    ``prob``'s dimension whose head reads ``C`` channels; otherwise the Hessian
    directions of ``prob`` at scale ``sigma``. By default (``"active"``) 2D data use the
    session's refiner; 3D data use Hessian directions unless the user loaded or
    fine-tuned a 3D refiner (`LEARNED_BY_DEFAULT`); ``"shipped"`` or a path asks for a
    learned head explicitly. ``spacing``: the voxel spacing; the Hessian directions take it
    (`estimate_directions`; ``sigma`` in the spacing's unit) and the learned head's
    voxel-grid vectors are mapped to physical ones (``h * v``, normalised).

    Examples
    --------
    >>> u = np.zeros((16, 16), np.float32); u[8, 2:14] = 1
    >>> v, source = vessel_directions(u)          # no features: Hessian directions
    >>> v.shape, source
    ((2, 16, 16), 'hessian')
    """
    ndim = np.ndim(prob)
    if isinstance(refiner, str) and refiner == "active" and not LEARNED_BY_DEFAULT[ndim]:
        from .session import loaded_refiner

        refiner = loaded_refiner(ndim)  # only a refiner the user loaded or fine-tuned
    if features is not None and refiner is not None and ndim in SHIPPED_REFINERS:
        r = resolve_refiner(refiner, ndim)
        if r.fits(prob, features):
            v = r.head(np.asarray(features, np.float32))[0]
            if spacing is not None:  # the head works on the voxel grid: physical vectors are h * v
                v = normalize_directions(v * np.asarray(spacing, np.float32).reshape(-1, *(1,) * ndim))
            return v, "learned"
        f = np.shape(features)
        if ndim == 2 and r.ndim == 2 and len(f) == 3 and f[0] == r.config["feature_channels"]:
            # features at the backbone's working scale: the head's directions there, brought to
            # prob's grid by nearest neighbours (interpolating v and -v would cancel them)
            v = r.head(np.asarray(features, np.float32))[0]
            v = from_working(v, np.shape(prob), order=0).astype(np.float64)
            return normalize_directions(v), "learned"
    return estimate_directions(prob, sigma, spacing=spacing), "hessian"
