"""The refiner weights in use in this process (the plugin's panels share them).

Fine-tuning replaces them; the Directions and Diffusion panels read them through
`active_refiner`, so new weights take effect at once. ``version()`` changes with every
replacement, so panels can drop directions they cached from older weights.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .refiner import LearnedRefiner

_lock = threading.Lock()
_state = {"refiner": None, "version": 0, "source": "shipped"}


def active_refiner() -> LearnedRefiner:
    """The refiner in use: the shipped one until `set_refiner` or `load_refiner` replaces it."""
    with _lock:
        if _state["refiner"] is None:
            _state["refiner"] = LearnedRefiner()
        return _state["refiner"]


def set_refiner(refiner: LearnedRefiner, source: str = "fine-tuned") -> None:
    with _lock:
        _state["refiner"] = refiner
        _state["version"] += 1
        _state["source"] = source


def load_refiner(path) -> LearnedRefiner:
    """Load weights (``weights_only``; a corrupt or foreign file raises ValueError and
    leaves the active refiner as it was)."""
    r = LearnedRefiner(path)
    set_refiner(r, source=Path(path).name)
    return r


def reset_refiner() -> LearnedRefiner:
    """Back to the shipped weights."""
    r = LearnedRefiner()
    set_refiner(r, source="shipped")
    return r


def version() -> int:
    return _state["version"]


def source() -> str:
    return _state["source"]
