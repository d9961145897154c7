"""Losses for vessel probability fields: BCE, soft Dice and soft-clDice, and their mix.

Inputs are probabilities (N, 1, H, W) or, for volumes, (N, 1, D, H, W) in [0, 1] and
binary targets of the same shape; an optional ``weight`` mask (the field of view)
restricts every loss to its pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce(p: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of probabilities (clamped away from 0 and 1)."""
    p = p.clamp(1e-6, 1 - 1e-6)
    loss = F.binary_cross_entropy(p, t, reduction="none")
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def soft_dice(p: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Dice coefficient (higher is better), over the whole batch."""
    if weight is not None:
        p, t = p * weight, t * weight
    return (2 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)


def soft_skeleton(x: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """Differentiable skeleton by iterated min/max pooling (Shit et al., CVPR 2021), 2D or 3D
    (3 x 3 or 3 x 3 x 3 neighbourhoods)."""
    pool = F.max_pool3d if x.ndim == 5 else F.max_pool2d

    def erode(a):
        return -pool(-a, 3, 1, 1)

    def dilate(a):
        return pool(a, 3, 1, 1)

    skel = F.relu(x - dilate(erode(x)))
    for _ in range(iterations):
        x = erode(x)
        delta = F.relu(x - dilate(erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_cldice(p: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | None = None,
                iterations: int = 10) -> torch.Tensor:
    """Soft clDice (higher is better)."""
    if weight is not None:
        p, t = p * weight, t * weight
    sp, st = soft_skeleton(p, iterations), soft_skeleton(t, iterations)
    tprec = ((sp * t).sum() + 1.0) / (sp.sum() + 1.0)
    tsens = ((st * p).sum() + 1.0) / (st.sum() + 1.0)
    return 2 * tprec * tsens / (tprec + tsens)


def mixed_loss(p: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | None = None, *,
               kind: str = "bce", alpha: float = 0.5) -> torch.Tensor:
    """The losses of METHOD.md: ``"bce"``, ``"dice"`` (1 - Dice) or ``"cldice"``:
    ``(1 - alpha)(1 - Dice) + alpha (1 - softclDice)``."""
    if kind == "bce":
        return bce(p, t, weight)
    if kind == "dice":
        return 1 - soft_dice(p, t, weight)
    if kind == "cldice":
        return (1 - alpha) * (1 - soft_dice(p, t, weight)) + alpha * (1 - soft_cldice(p, t, weight))
    raise ValueError(f"loss must be 'bce', 'dice' or 'cldice', got {kind!r}")
