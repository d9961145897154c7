"""Where the models run: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"`` or ``"cuda"``."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a ``device`` option.

    ``None`` or ``"auto"``: CUDA when ``torch.cuda.is_available()``, else the CPU;
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: that device. Asking for CUDA where there is
    none raises ValueError (a clear message instead of a failure deep in torch).
    Nothing here imports CUDA libraries: ``torch.cuda.is_available()`` only asks the
    driver, and CPU builds of torch answer False.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here "
                         "(a CPU-only torch build or no GPU): use device='cpu' or 'auto'")
    return dev
