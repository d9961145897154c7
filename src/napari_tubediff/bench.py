"""Speed benchmarks of the diffusion step, shared by ``tubediff bench`` and ``benchmarks/``.

Each case times whole RK4 steps of the fast path (the fused numba kernel) and of
the plain vectorised numpy reference in the same run, and reports the ratio. With
``load=True`` a torch matrix-multiply loop runs in a thread of the same process
while the timing runs, as in the napari plugin where torch, numba and napari share
one process.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext

import numpy as np

from .core.diffusion import _resolve_backend, _Stepper, normalize_directions

CASES = {
    "drive": (584, 565),
    "1k": (1024, 1024),
    "cube128": (128, 128, 128),
    "cube256": (256, 256, 256),
}
# "cuda" is the torch path on the GPU (`diffuse(..., device="cuda")`); the others run on the CPU
TIMED = ("numba", "numpy", "torch", "cuda")


def _time_steps(backend: str, u, v, *, min_time: float, max_steps: int, order: int = 8) -> float:
    """Seconds per RK4 step: warm up (compilation), then repeat for at least ``min_time``."""
    sync = lambda: None  # noqa: E731
    if backend == "cuda":
        import torch

        st = _Stepper(u, v, 1.0, 0.1, order, "torch", device="cuda")
        sync = torch.cuda.synchronize  # kernels are asynchronous: time until they finish
    else:
        st = _Stepper(u, v, 1.0, 0.1, order, backend)
    st.advance(1, 0.05)
    sync()
    n, elapsed = 0, 0.0
    batch = 1
    while n == 0 or (elapsed < min_time and n < max_steps):
        t0 = time.perf_counter()
        st.advance(batch, 0.05)
        sync()
        elapsed += time.perf_counter() - t0
        n += batch
        batch = min(batch * 2, max_steps - n) or 1
    return elapsed / n


@contextmanager
def torch_load(threads: int | None = None):
    """Run a torch matmul loop in a background thread for the duration of the block."""
    import torch

    stop = threading.Event()

    def work():
        if threads:
            torch.set_num_threads(threads)
        a = torch.randn(512, 512)
        while not stop.is_set():
            a @ a

    th = threading.Thread(target=work, daemon=True)
    th.start()
    time.sleep(0.3)
    try:
        yield
    finally:
        stop.set()
        th.join()


def _inputs(shape, data: str, rng):
    """The field and directions a case runs on."""
    if data == "random":
        return (rng.random(shape, dtype=np.float32),
                normalize_directions(rng.normal(size=(len(shape), *shape))))
    if data == "vessels":
        # a vessel tree's broken probability field and its Hessian directions: mostly
        # zero background, as in real use (where subnormal floats can appear)
        from .core.directions import estimate_directions
        from .data.synthetic import synthetic_vessels

        u = synthetic_vessels(shape, seed=int(rng.integers(1 << 16))).probability
        return u, estimate_directions(u, 3.0)
    raise ValueError(f"data must be 'random' or 'vessels', got {data!r}")


def run(cases=("drive", "1k", "cube128"), backends=("numba", "numpy"), *, min_time: float = 1.0,
        max_steps: int = 200, load: bool = False, seed: int = 0, data: str = "random",
        echo: Callable[[str], None] | None = print) -> dict:
    """Time the cases; return a JSON-ready dict of ms per step and speed-up ratios.

    ``data``: "random" (a uniform random field with random unit directions) or
    "vessels" (a synthetic vessel tree's probability field and Hessian directions).

    Examples
    --------
    >>> r = run(["drive"], ["numpy"], min_time=0.0, max_steps=1, echo=None)
    >>> sorted(r["results"]["drive"])
    ['numpy']
    """
    for b in backends:
        if b not in TIMED:
            raise ValueError(f"unknown backend {b!r}; choose from {TIMED}")
    for c in cases:
        if c not in CASES:
            raise ValueError(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    if not (isinstance(min_time, (int, float)) and 0 <= min_time < 3600):
        raise ValueError(f"min_time must be seconds from 0 to 3600, got {min_time!r}")
    if "cuda" in backends:
        import torch

        from .core.device import resolve_device

        resolve_device("cuda")  # a clear error on a machine without a GPU
        info_gpu = torch.cuda.get_device_name(0)
    else:
        info_gpu = None
    rng = np.random.default_rng(seed)
    info = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "load": load, "gpu": info_gpu, "data": data}
    try:
        import os

        info["cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        pass
    if "numba" in backends:
        import numba

        _resolve_backend("numba")
        info["numba"] = numba.__version__
        warm = _Stepper(np.zeros((16, 16), np.float32), np.zeros((2, 16, 16), np.float32),
                        1.0, 0.1, 8, "numba")
        warm.advance(1, 0.1)
        info["threading_layer"] = numba.threading_layer()
        info["threads"] = numba.get_num_threads()
    results: dict = {}
    ctx = torch_load() if load else nullcontext()
    with ctx:
        for name in cases:
            shape = CASES[name]
            u, v = _inputs(shape, data, rng)
            row = {}
            for b in backends:
                row[b] = 1e3 * _time_steps(b, u, v, min_time=min_time, max_steps=max_steps)
            results[name] = row
            if echo:
                parts = [f"{b} {ms:9.2f} ms" for b, ms in row.items()]
                if "numba" in row and "numpy" in row:
                    parts.append(f"numpy/numba {row['numpy'] / row['numba']:6.1f}x")
                echo(f"{name:8s} {'x'.join(map(str, shape)):12s} " + "  ".join(parts))
    return {"info": info, "results": results}
