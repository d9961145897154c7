"""A user's own segmentation model from a file: a ``torch.export`` program (``.pt2``) first,
TorchScript (``.pt``) still read.

torch 2.13 deprecates ``torch.jit.script``/``torch.jit.load``; ``torch.export`` is the
way to ship a model now::

    ep = torch.export.export(model.eval(), (torch.zeros(1, 1, 64, 64),),
                             dynamic_shapes=({2: torch.export.Dim("h"), 3: torch.export.Dim("w")},))
    torch.export.save(ep, "mine.pt2")

and ``tubediff segment IMAGE --backbone-file mine.pt2 --out DIR``. The model takes
``(1, 1, H, W)`` float32 (the preprocessed image) and returns probabilities in [0, 1]
or logits, or a tuple whose first element is that and whose second is features (as
`models.backbones.TorchScriptBackbone`, whose prediction code this reuses).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..core.device import resolve_device
from .backbones import TorchScriptBackbone

__all__ = ["ExportedBackbone", "load_user_model"]

#: Suffixes read as ``torch.export`` programs; anything else is tried as TorchScript.
EXPORT_SUFFIXES = (".pt2",)


class ExportedBackbone(TorchScriptBackbone):
    """A ``torch.export`` program (``torch.export.save``, ``.pt2``) as a backbone.

    Loaded with ``torch.export.load`` (no pickled code runs), then run as the module
    ``ExportedProgram.module()`` gives. Export with dynamic height and width
    (``dynamic_shapes``) so that any image size is accepted; a program exported for
    one size refuses others with a message saying so.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Sigmoid()).eval()
    >>> dims = ({2: torch.export.Dim("h", min=4), 3: torch.export.Dim("w", min=4)},)
    >>> ep = torch.export.export(net, (torch.zeros(1, 1, 16, 16),), dynamic_shapes=dims)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.pt2"
    >>> torch.export.save(ep, path)
    >>> ExportedBackbone(path, device="cpu").predict(np.zeros((20, 24), np.float32)).shape
    (20, 24)
    """

    name = "exported"

    def __init__(self, path, device: str | None = "auto"):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no model file at {path}")
        self.device = torch.device(resolve_device(device))
        quiet = logging.getLogger("torch.export")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # torch logs a traceback for a foreign file before raising
        try:
            program = torch.export.load(str(path))
        except Exception as e:  # noqa: BLE001 - torch raises many kinds for a foreign file
            raise ValueError(f"cannot load {path.name} as a torch.export program (.pt2, torch.export.save): "
                             f"{_first_line(e)}") from None
        finally:
            quiet.setLevel(level)
        self.model = program.module().to(self.device)
        self.path = path

    def predict_with_features(self, image, *args, **kwargs):
        # the parent's arguments passed on as they are (fov, and whatever it takes later)
        try:
            return super().predict_with_features(image, *args, **kwargs)
        except (RuntimeError, AssertionError) as e:  # shape guards of a program exported for one size
            raise ValueError(f"{self.path.name} does not take this image (shape {tuple(np.shape(image))}): "
                             f"{_first_line(e)}; export it with dynamic height and width "
                             "(torch.export.export(..., dynamic_shapes=...))") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:200]


def load_user_model(path, device: str | None = "auto"):
    """A backbone from a model file: ``.pt2`` through ``torch.export.load``, else TorchScript.

    Examples
    --------
    >>> load_user_model("missing.pt2")
    Traceback (most recent call last):
    ...
    ValueError: no model file at missing.pt2
    """
    path = Path(path)
    if path.suffix.lower() in EXPORT_SUFFIXES:
        return ExportedBackbone(path, device=device)
    return TorchScriptBackbone(path, device=device)
