"""The learned refiner: a direction head on the backbone's features, positive learnable
lambdas, and N differentiable RK4 steps of the engine (../shared/METHOD.md, "The refiner")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.diffusion import diffuse, normalize_directions
from ..core.directions import estimate_directions
from ..core.torch_diffusion import diffuse_t
from .weights import WEIGHTS_DIR, load_checkpoint, load_state

SHIPPED_REFINER = WEIGHTS_DIR / "refiner_drive.pt"


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

    Examples
    --------
    >>> r = Refiner(feature_channels=4, kernel=3)
    >>> u = torch.rand(1, 1, 16, 16); f = torch.randn(1, 4, 16, 16)
    >>> out = r(u, f, steps=2)
    >>> tuple(out.shape), bool((out >= u - 1e-6).all())
    ((1, 1, 16, 16), True)
    """

    def __init__(self, feature_channels: int = 16, kernel: int = 9, lambda_par: float = 1.0,
                 lambda_perp: float = 0.05, per_pixel: bool = False, dt: float = 0.2, steps: int = 10,
                 order: int = 8):
        super().__init__()
        if not (1 <= kernel <= 13 and kernel % 2 == 1):
            raise ValueError(f"kernel must be odd, from 1 to 13, got {kernel}")
        self.config = {"feature_channels": feature_channels, "kernel": kernel, "lambda_par": lambda_par,
                       "lambda_perp": lambda_perp, "per_pixel": per_pixel, "dt": dt, "steps": steps,
                       "order": order}
        self.head = nn.Conv2d(feature_channels, 4 if per_pixel else 2, kernel, padding=kernel // 2)
        self.raw_par = nn.Parameter(torch.tensor(_softplus_inv(lambda_par)))
        self.raw_perp = nn.Parameter(torch.tensor(_softplus_inv(lambda_perp)))

    def head_outputs(self, feats: torch.Tensor):
        """Unit directions (N, 2, H, W) and the lambdas (scalars or (N, 1, H, W) maps)."""
        out = self.head(feats)
        v = out[:, :2]
        # unit length wherever the head's output is not (numerically) zero
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-6)
        lpar, lperp = F.softplus(self.raw_par), F.softplus(self.raw_perp)
        if self.config["per_pixel"]:
            lpar = lpar * 2 * torch.sigmoid(out[:, 2:3])
            lperp = lperp * 2 * torch.sigmoid(out[:, 3:4])
        return v, lpar, lperp

    def forward(self, prob: torch.Tensor, feats: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        v, lpar, lperp = self.head_outputs(feats)
        c = self.config
        return diffuse_t(prob, v, lpar, lperp, dt=c["dt"], steps=c["steps"] if steps is None else steps,
                         order=c["order"])


class LearnedRefiner:
    """A trained `Refiner` for numpy inference: directions from the head, the fast kernel."""

    def __init__(self, weights=None):
        # inference runs on the CPU: the head is one convolution, the diffusion is numba
        path = Path(weights) if weights else SHIPPED_REFINER
        ckpt = load_checkpoint(path, "refiner")
        self.module = Refiner(**ckpt["config"])
        load_state(self.module, ckpt["state_dict"], path.name)
        self.module.eval()
        self.weights = path
        self.meta = ckpt.get("meta", {})

    @classmethod
    def from_module(cls, module: Refiner, meta: dict | None = None,
                    name: str = "fine-tuned") -> LearnedRefiner:
        """Wrap an in-memory `Refiner` (a copy, so later training does not change it)."""
        import copy

        self = cls.__new__(cls)
        self.module = copy.deepcopy(module).cpu().eval()
        self.weights = Path(name)
        self.meta = dict(meta or {})
        return self

    def save(self, path) -> Path:
        """Write the weights atomically (read back with ``LearnedRefiner(path)``)."""
        from .weights import save_checkpoint

        return save_checkpoint(path, "refiner", self.module.config, self.module.state_dict(), self.meta)

    @property
    def config(self) -> dict:
        return self.module.config

    def head(self, feats: np.ndarray):
        """``(directions (2, H, W), lambda_par, lambda_perp)`` as numpy / floats or maps."""
        with torch.no_grad():
            v, lpar, lperp = self.module.head_outputs(torch.from_numpy(np.ascontiguousarray(feats))[None])

        def conv(x):
            return float(x) if x.ndim == 0 else x[0, 0].numpy()

        # the same rule in float64: unit vectors, or zero where the head gave (almost) nothing
        return normalize_directions(v[0].numpy().astype(np.float64)), conv(lpar), conv(lperp)

    def refine(self, prob: np.ndarray, feats: np.ndarray, steps: int | None = None,
               fov: np.ndarray | None = None) -> np.ndarray:
        """Refined probability field (float32); zero outside ``fov`` when one is given."""
        v, lpar, lperp = self.head(feats)
        c = self.config
        out = diffuse(prob, v, lambda_par=lpar, lambda_perp=lperp, dt=c["dt"],
                      steps=c["steps"] if steps is None else steps, order=c["order"])
        if fov is not None:
            out = np.where(np.asarray(fov, bool), out, 0).astype(np.float32)
        return out


def vessel_directions(prob: np.ndarray, features: np.ndarray | None = None, *, sigma: float = 3.0,
                      refiner="active") -> tuple[np.ndarray, str]:
    """Directions for the diffusion and where they came from (``"learned"`` or ``"hessian"``).

    The learned direction head is used when backbone ``features`` of shape
    ``(C, *prob.shape)`` are given and a refiner is available (``"active"``: the
    session's weights, see `models.session`; ``"shipped"``; a weights path; or a
    `LearnedRefiner`) whose head reads ``C`` channels; otherwise the Hessian
    directions of ``prob`` at scale ``sigma``.
    """
    if features is not None and refiner is not None and np.ndim(prob) == 2:
        if refiner == "active":
            from .session import active_refiner

            r = active_refiner()
        else:
            r = refiner if isinstance(refiner, LearnedRefiner) else LearnedRefiner(
                None if refiner == "shipped" else refiner)
        f = np.asarray(features)
        if f.ndim == 3 and f.shape[1:] == np.shape(prob) and f.shape[0] == r.config["feature_channels"]:
            return r.head(f.astype(np.float32))[0], "learned"
    return estimate_directions(prob, sigma), "hessian"
