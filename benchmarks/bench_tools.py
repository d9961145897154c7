"""Milliseconds per curation-tool action: trace, remove (piece, branch), measure.

Run from the repository root (after installing the package):

    OMP_NUM_THREADS=1 python benchmarks/bench_tools.py

Input: `synthetic_vessels((584, 565), seed=0)` (DRIVE's size) and its 3D counterpart
`synthetic_vessels((128, 128, 128), seed=0, width=(1, 3))`. Each trace joins a random
centre-line pixel to another 20-60 pixels away (20 traces; median and max). The first
call of skan (numba) is compiled before the timing. The Curate tools panel runs these
in the GUI thread.
"""

from __future__ import annotations

import time

import numpy as np

from napari_tubediff.core.measure import measure_vessels
from napari_tubediff.core.trace import remove_piece, trace_path
from napari_tubediff.data.synthetic import synthetic_vessels


def _ms(f, *args, **kw) -> float:
    t0 = time.perf_counter()
    f(*args, **kw)
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    for shape, kw in (((584, 565), {}), ((128, 128, 128), {"width": (1, 3)})):
        s = synthetic_vessels(shape, seed=0, **kw)
        pts = np.argwhere(s.centerline)
        lab = s.truth.astype(np.uint8)
        big = pts[len(pts) // 2]  # a centre-line pixel: its piece, its branch
        measure_vessels(lab[..., :32])  # compile skan's numba functions
        traces = []
        for _ in range(20):
            a = pts[rng.integers(len(pts))]
            d = np.abs(pts - a).max(1)
            near = pts[(d > 20) & (d < 60)]
            if len(near):
                traces.append(_ms(trace_path, s.probability, a, near[rng.integers(len(near))]))
        name = "x".join(map(str, shape))
        print(f"{name:12s} trace {np.median(traces):7.1f} ms (max {max(traces):.1f})  "
              f"remove piece {_ms(remove_piece, lab, big):7.1f} ms  "
              f"remove branch {_ms(remove_piece, lab, big, mode='branch'):7.1f} ms  "
              f"measure {_ms(measure_vessels, lab):7.1f} ms")


if __name__ == "__main__":
    main()
