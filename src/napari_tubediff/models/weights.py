"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict ``{"format": "napari-tubediff", "kind": ..., "config": {...},
"state_dict": {...}, "meta": {...}}`` of plain types and tensors only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..data.io import atomic_path

FORMAT = "napari-tubediff"
WEIGHTS_DIR = Path(__file__).parent / "weights"


def _plain(x):
    # weights_only loading accepts plain Python types only (torch.__version__ is a str
    # subclass, numpy scalars and paths are objects): reduce the rest to str or numbers
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def save_checkpoint(path, kind: str, config: dict, state_dict: dict, meta: dict | None = None) -> Path:
    """Write a checkpoint atomically (a crash never leaves a half-written file)."""
    obj = {"format": FORMAT, "kind": kind, "config": _plain(dict(config)),
           "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
           "meta": _plain(dict(meta or {}))}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_checkpoint(path, kind: str) -> dict:
    """Read and check a checkpoint of the given ``kind``; ValueError with a clear message otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no weights file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"cannot read weights file {path.name}: it is corrupt or not a torch "
                         f"checkpoint ({type(e).__name__})") from None
    except Exception as e:  # pickle.UnpicklingError and friends for foreign pickles
        raise ValueError(f"cannot read weights file {path.name}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "state_dict" not in obj:
        raise ValueError(f"{path.name} is not a napari-tubediff checkpoint")
    if obj.get("kind") != kind:
        raise ValueError(f"{path.name} holds a {obj.get('kind')!r} model, not a {kind!r} one")
    return obj


def load_state(module: torch.nn.Module, state_dict: dict, name: str) -> None:
    """``module.load_state_dict`` with a readable error for mismatched weights."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).splitlines()[0][:200]
        raise ValueError(f"{name}: the weights do not fit the model ({first})") from None
