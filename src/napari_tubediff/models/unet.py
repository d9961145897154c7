"""A 2D or 3D U-Net that returns both the vessel logits and its last decoder features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# one implementation for both dimensions: the layers are picked by ``ndim``
_LAYERS = {
    2: (nn.Conv2d, nn.BatchNorm2d, nn.ConvTranspose2d, F.max_pool2d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.ConvTranspose3d, F.max_pool3d),
}


def layers(ndim: int):
    """``(Conv, BatchNorm, ConvTranspose, max_pool)`` for 2D or 3D data (ValueError otherwise)."""
    try:
        return _LAYERS[ndim]
    except KeyError:
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}") from None


def _block(cin: int, cout: int, ndim: int = 2) -> nn.Sequential:
    conv, norm, _, _ = layers(ndim)
    return nn.Sequential(
        conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
        conv(cout, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with configurable depth and width, 2D or 3D.

    Parameters
    ----------
    in_channels : int
        Input channels (1: the preprocessed grey or green channel).
    base : int
        Channels of the first level; each level down doubles them.
    depth : int
        Number of down-sampling steps; inputs must be divisible by ``2**depth``
        along every spatial axis (`pad_to_multiple` does that).
    ndim : int
        2 (images, ``(N, C, H, W)``) or 3 (volumes, ``(N, C, D, H, W)``). Checkpoints
        written before 3D existed have no ``ndim`` in their config and load as 2D.

    ``forward(x)`` returns ``(logits, features)``: logits ``(N, 1, *spatial)`` and the
    last decoder features ``(N, base, *spatial)`` that the refiner's direction head reads.

    Examples
    --------
    >>> net = UNet(base=4, depth=2)
    >>> logits, feats = net(torch.zeros(1, 1, 16, 16))
    >>> tuple(logits.shape), tuple(feats.shape)
    ((1, 1, 16, 16), (1, 4, 16, 16))
    >>> tuple(UNet(base=2, depth=1, ndim=3)(torch.zeros(1, 1, 8, 8, 8))[1].shape)
    (1, 2, 8, 8, 8)
    """

    def __init__(self, in_channels: int = 1, base: int = 16, depth: int = 3, ndim: int = 2):
        super().__init__()
        conv, _, up_conv, self._pool = layers(ndim)
        self.config = {"in_channels": in_channels, "base": base, "depth": depth, "ndim": ndim}
        self.depth = depth
        self.ndim = ndim
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, widths[0], ndim)])
        self.down.extend(_block(widths[i], widths[i + 1], ndim) for i in range(depth))
        self.up = nn.ModuleList(up_conv(widths[i + 1], widths[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_block(2 * widths[i], widths[i], ndim) for i in reversed(range(depth)))
        self.out = conv(widths[0], 1, 1)

    @property
    def feature_channels(self) -> int:
        return self.config["base"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self._pool(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.out(x), x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Reflect-pad the spatial axes of ``x`` (N, C, *spatial) up to a multiple of ``multiple``.

    Returns the padded tensor and the original spatial size (crop back with it).

    Examples
    --------
    >>> y, size = pad_to_multiple(torch.zeros(1, 1, 5, 6, 7), 4)
    >>> tuple(y.shape), size
    ((1, 1, 8, 8, 8), (5, 6, 7))
    """
    size = tuple(x.shape[2:])
    pads = [(-n) % multiple for n in size]
    if any(pads):
        # F.pad lists the last axis first, (before, after) per axis
        x = F.pad(x, [p for n in reversed(pads) for p in (0, n)], mode="reflect")
    return x, size
