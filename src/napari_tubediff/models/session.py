"""The refiner (and U-Net) weights in use in this process; the plugin's panels share them.

Fine-tuning replaces them; the Directions and Diffusion panels read the refiner through
`active_refiner` and the Segment panel the U-Net through `active_unet`, so new weights
take effect at once. ``version()`` changes with every replacement, so panels can drop
directions they cached from older weights.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .backbones import SHIPPED_UNET, UNetBackbone
from .refiner import LearnedRefiner

_lock = threading.Lock()
# "refiner": the one set by fine-tuning or loading (None: the shipped 2D one); "shipped":
# the shipped refiners by dimension, loaded when first asked for
_state = {"refiner": None, "shipped": {}, "unet": None, "version": 0, "source": "shipped"}


def active_unet() -> UNetBackbone:
    """The U-Net in use: the shipped one until fine-tuning (with the backbone option) or
    `load_refiner` of a file with a ``_unet.pt`` companion replaces it."""
    with _lock:
        if _state["unet"] is None:
            _state["unet"] = UNetBackbone(device="cpu")
        return _state["unet"]


def set_unet(backbone: UNetBackbone) -> None:
    with _lock:
        _state["unet"] = backbone
        _state["version"] += 1


def unet_path(refiner_path) -> Path:
    """Where a tuned U-Net is saved beside refiner weights: ``NAME_unet.pt``."""
    p = Path(refiner_path)
    return p.with_name(p.stem + "_unet.pt")


def active_refiner(ndim: int = 2) -> LearnedRefiner:
    """The refiner in use for ``ndim``-D data: the one `set_refiner` or `load_refiner` gave
    when it has that dimension, else the shipped one for that dimension (2D: DRIVE;
    3D: synthetic volumes). Loading a 3D refiner thus changes volumes only, and 2D
    images fall back to the shipped 2D refiner meanwhile. The session runs on the CPU.

    Examples
    --------
    >>> active_refiner(3).ndim
    3
    """
    with _lock:
        r = _state["refiner"]
        if r is not None and r.ndim == ndim:
            return r
        if ndim not in _state["shipped"]:
            _state["shipped"][ndim] = LearnedRefiner.shipped(ndim, device="cpu")
        return _state["shipped"][ndim]


def loaded_refiner(ndim: int) -> LearnedRefiner | None:
    """The refiner the user loaded or fine-tuned, when it has dimension ``ndim``; else None."""
    with _lock:
        r = _state["refiner"]
        return r if r is not None and r.ndim == ndim else None


def set_refiner(refiner: LearnedRefiner, source: str = "fine-tuned") -> None:
    with _lock:
        _state["refiner"] = refiner
        _state["version"] += 1
        _state["source"] = source


def load_refiner(path) -> LearnedRefiner:
    """Load weights (``weights_only``; a corrupt or foreign file raises ValueError and
    leaves the active weights as they were). A ``NAME_unet.pt`` beside the file (a
    fine-tuned backbone) is loaded as the active U-Net too."""
    r = LearnedRefiner(path, device="cpu")
    companion = unet_path(path)
    u = UNetBackbone(companion, device="cpu") if companion.is_file() else None
    set_refiner(r, source=Path(path).name)
    if u is not None:
        set_unet(u)
    return r


def save_weights(path) -> list[Path]:
    """Save the active refiner (and, when it is not the shipped one, the active U-Net
    beside it as ``NAME_unet.pt``); atomic writes."""
    out = [active_refiner().save(path)]
    with _lock:
        unet = _state["unet"]
    if unet is not None and unet.weights.name != SHIPPED_UNET.name:
        out.append(unet.save(unet_path(path)))
    return out


def reset_refiner() -> LearnedRefiner:
    """Back to the shipped weights (refiner and U-Net)."""
    r = LearnedRefiner.shipped(2, device="cpu")
    with _lock:
        _state["unet"] = None
    set_refiner(r, source="shipped")
    return r


def version() -> int:
    return _state["version"]


def source() -> str:
    return _state["source"]
