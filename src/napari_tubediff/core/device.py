"""Where torch work runs: one rule for the engine, the models and the commands.

``"auto"`` (the default everywhere) takes the first CUDA device when torch sees one
and the CPU otherwise, so a CPU-only machine never needs CUDA packages: only
``torch.cuda.is_available()`` is asked, which a CPU build of torch answers False.
"""

from __future__ import annotations

__all__ = ["resolve_device", "DEVICES", "passive_openmp"]

DEVICES = ("auto", "cpu", "cuda")


def passive_openmp(env=None) -> None:
    """Let torch's idle OpenMP threads sleep, not spin (``OMP_WAIT_POLICY=PASSIVE``), unless
    the user chose a policy.

    A spinning thread holds a core its partner needs once other jobs share the CPU: on
    2026-11-30 (2-core CPU, load about 6) `tubediff finetune` for 5 updates on one DRIVE image
    took 108 s wall with OpenMP's default policy and 16 s with PASSIVE, and `tubediff segment`
    7.4 to 7.8 s against 6.1 to 7.1 s. OpenMP reads the variable when torch loads it, so this
    acts only before torch is imported (the commands call it first thing; a worker process
    gets it in its environment).

    Parameters
    ----------
    env : mutable mapping, optional
        The environment to set it in (default ``os.environ``).

    Examples
    --------
    >>> env = {}
    >>> passive_openmp(env); env
    {'OMP_WAIT_POLICY': 'PASSIVE'}
    >>> env = {"OMP_WAIT_POLICY": "ACTIVE"}
    >>> passive_openmp(env); env   # the user's own choice stands
    {'OMP_WAIT_POLICY': 'ACTIVE'}
    """
    import os

    (os.environ if env is None else env).setdefault("OMP_WAIT_POLICY", "PASSIVE")


def resolve_device(device: str | None = "auto") -> str:
    """The torch device string for ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or None
        None means "auto".

    Raises
    ------
    ValueError
        For an unknown name, or for CUDA when torch has no CUDA device (a CPU build
        of torch, or no GPU), with a message that says which.

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("auto") in ("cpu", "cuda")
    True
    """
    name = "auto" if device is None else str(device).strip().lower()
    if name == "cpu":
        return "cpu"
    if name != "auto" and name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    import torch

    available = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if available else "cpu"
    if not available:
        why = "is a CPU-only build" if torch.version.cuda is None else "sees no CUDA device"
        raise ValueError(f"device={device!r} asks for CUDA, but torch {torch.__version__} {why}; "
                         "use device='cpu' or 'auto'")
    if ":" in name and int(name[5:]) >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return name
