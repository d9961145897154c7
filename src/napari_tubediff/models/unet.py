"""A 2D U-Net that returns both the vessel logits and its last decoder features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with configurable depth and width.

    Parameters
    ----------
    in_channels : int
        Input channels (1: the preprocessed green channel).
    base : int
        Channels of the first level; each level down doubles them.
    depth : int
        Number of down-sampling steps; inputs must be divisible by ``2**depth``
        (`pad_to_multiple` does that).

    ``forward(x)`` returns ``(logits, features)``: logits ``(N, 1, H, W)`` and the
    last decoder features ``(N, base, H, W)`` that the refiner's direction head reads.

    Examples
    --------
    >>> net = UNet(base=4, depth=2)
    >>> logits, feats = net(torch.zeros(1, 1, 16, 16))
    >>> tuple(logits.shape), tuple(feats.shape)
    ((1, 1, 16, 16), (1, 4, 16, 16))
    """

    def __init__(self, in_channels: int = 1, base: int = 16, depth: int = 3):
        super().__init__()
        self.config = {"in_channels": in_channels, "base": base, "depth": depth}
        self.depth = depth
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, widths[0])])
        self.down.extend(_block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], 1, 1)

    @property
    def feature_channels(self) -> int:
        return self.config["base"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.out(x), x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the last two axes up to a multiple; returns the padded tensor and the size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, (h, w)
