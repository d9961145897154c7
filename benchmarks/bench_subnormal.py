"""Milliseconds per RK4 step on vessel data, and the share of subnormal values left.

Run from the repository root (after installing the package):

    python benchmarks/bench_subnormal.py

For the kernel before the subnormal fix (docs/performance.md, section 4), run it with
that kernel checked out, then restore it:

    git checkout 79d6dc8 -- src/napari_tubediff/core/_kernels.py
    python benchmarks/bench_subnormal.py
    git checkout HEAD -- src/napari_tubediff/core/_kernels.py

Inputs: the broken probability fields of `synthetic_vessels((584, 565), seed=0)` and
`synthetic_vessels((128, 128, 128), seed=0, width=(1, 3))` with Hessian directions
(sigma 3), `lambda_par = 1`, `lambda_perp = 0.02`, dt 0.25 (the refinement defaults).
"""

from __future__ import annotations

import time

import numpy as np

from napari_tubediff import diffuse, estimate_directions
from napari_tubediff.data.synthetic import synthetic_vessels


def main() -> None:
    tiny = np.finfo(np.float32).tiny
    for shape, steps, kw in (((584, 565), 100, {}), ((128, 128, 128), 10, {"width": (1.0, 3.0)})):
        u = synthetic_vessels(shape, seed=0, **kw).probability
        v = estimate_directions(u, 3.0)
        args = dict(lambda_par=1.0, lambda_perp=0.02, dt=0.25, backend="numba")
        diffuse(u, v, steps=1, **args)  # compile / load the kernel
        t0 = time.perf_counter()
        out = diffuse(u, v, steps=steps, **args)
        ms = 1e3 * (time.perf_counter() - t0) / steps
        sub = float(((out > 0) & (out < tiny)).mean())
        print(f"{'x'.join(map(str, shape)):12s} {ms:8.2f} ms/step   subnormal share {100 * sub:5.2f}%")


if __name__ == "__main__":
    main()
