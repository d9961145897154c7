"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict ``{"format": "napari-tubediff", "kind": ..., "config": {...},
"state_dict": {...}, "meta": {...}}`` of plain types and tensors only.
"""

from __future__ import annotations

import warnings
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes for foreign files
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"cannot read weights file {path.name}: it is corrupt or not a torch "
                         f"checkpoint ({type(e).__name__})") from None
    except Exception:  # pickle.UnpicklingError and friends: garbage, or a foreign pickle
        # torch's own text is a page of advice about weights_only=False that must not be
        # followed for a file of unknown origin, so it is not passed on
        raise ValueError(f"cannot read weights file {path.name}: it is corrupt, or a pickle that holds "
                         "more than tensors and plain values (not a napari-tubediff checkpoint); "
                         "only checkpoints written by napari-tubediff are loaded") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "state_dict" not in obj:
        raise ValueError(f"{path.name} is not a napari-tubediff checkpoint")
    if obj.get("kind") != kind:
        raise ValueError(f"{path.name} holds a {obj.get('kind')!r} model, not a {kind!r} one")
    check_config(kind, obj.get("config"), path.name)
    return obj


#: Allowed config values per checkpoint kind: (type, lowest, highest). The bounds are far
#: beyond the shipped models (docs/models.md) and keep a bad file from asking for terabytes.
_CONFIG = {
    "unet": {"in_channels": (int, 1, 16), "base": (int, 1, 512), "depth": (int, 0, 8), "ndim": (int, 2, 3)},
    "refiner": {"feature_channels": (int, 1, 4096), "kernel": (int, 1, 13), "lambda_par": (float, 0, 1e3),
                "lambda_perp": (float, 0, 1e3), "per_pixel": (bool, 0, 1), "dt": (float, 1e-6, 1e3),
                "steps": (int, 0, 10_000), "order": (int, 2, 16), "ndim": (int, 2, 3)},
}
#: The most parameters a checkpoint's network may have (4 GiB of float32).
MAX_PARAMETERS = 1 << 30


def unet_parameters(in_channels: int = 1, base: int = 16, depth: int = 3, ndim: int = 2) -> int:
    """Parameter count of ``UNet(in_channels, base, depth, ndim)``, without building it.

    Examples
    --------
    >>> from napari_tubediff.models.unet import UNet
    >>> unet_parameters(1, 4, 2) == sum(p.numel() for p in UNet(1, 4, 2).parameters())
    True
    """
    k = 3 ** ndim

    def block(cin, cout):  # two 3^n convolutions without bias, two batch norms
        return k * cin * cout + k * cout * cout + 4 * cout

    w = [base * 2 ** i for i in range(depth + 1)]
    n = block(in_channels, w[0]) + sum(block(w[i], w[i + 1]) for i in range(depth))
    n += sum(2 ** ndim * w[i + 1] * w[i] + w[i] for i in range(depth))  # transposed convolutions
    n += sum(block(2 * w[i], w[i]) for i in range(depth))
    return n + w[0] + 1


def check_config(kind: str, config, name: str = "checkpoint") -> None:
    """ValueError unless ``config`` holds only known keys with values in range for ``kind``.

    Runs before the network is built, so a corrupt or hostile file cannot ask for an
    impossible allocation (a U-Net ``base`` of 10^6 would be terabytes) or end in a
    TypeError from an unknown argument.

    Examples
    --------
    >>> check_config("unet", {"base": 10**6}, "x.pt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: x.pt: config base=1000000 is out of range (1 to 512); the file is corrupt or ...
    """
    if not isinstance(config, dict):
        raise ValueError(f"{name}: the checkpoint has no config dict; the file is corrupt")
    spec = _CONFIG.get(kind, {})
    for key, value in config.items():
        if key not in spec:
            raise ValueError(f"{name}: unknown config entry {key!r} for a {kind} model; the file is "
                             "corrupt or from a newer version")
        typ, lo, hi = spec[key]
        ok_type = (isinstance(value, bool) if typ is bool else
                   isinstance(value, (int, float)) and not isinstance(value, bool)
                   and (typ is float or float(value).is_integer()))
        if not ok_type or not (lo <= value <= hi):
            raise ValueError(f"{name}: config {key}={value!r} is out of range ({lo:g} to {hi:g}); "
                             "the file is corrupt or not for this version")
    if kind == "unet":
        n = unet_parameters(**{k: int(v) for k, v in config.items()})
        if n > MAX_PARAMETERS:
            raise ValueError(f"{name}: the config asks for a U-Net of {n:,} parameters "
                             f"({4 * n / 2**30:.0f} GiB), more than the {MAX_PARAMETERS:,} allowed; "
                             "the file is corrupt")


def load_state(module: torch.nn.Module, state_dict: dict, name: str) -> None:
    """``module.load_state_dict`` with a readable error for mismatched weights."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).splitlines()[0][:200]
        raise ValueError(f"{name}: the weights do not fit the model ({first})") from None
