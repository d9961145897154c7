"""Time each refinement method on DRIVE-sized probability maps: wall and CPU seconds.

    python scripts/refine_timing.py PROB.tif [PROB.tif ...]

CPU time (all threads of this process) is reported beside wall time because the development
machine is shared: on a busy machine the wall time measures the queue, the CPU time the work.
The load average (as ``uptime`` prints it) before and after the runs is printed with them.
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial

import numpy as np

from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.dti import dti
from napari_tubediff.core.refine import RECOMMENDED_METHOD, REFINE_METHODS, RefineSettings, refine
from napari_tubediff.data.io import read_image, to_probability


def clock(fn, repeat: int = 3) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus))


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    if len(sys.argv) < 2:
        print("usage: python scripts/refine_timing.py PROB.tif [PROB.tif ...]", file=sys.stderr)
        sys.exit(2)
    print(f"before: {load()}")
    probs = [to_probability(read_image(p), p) for p in sys.argv[1:]]
    refine(probs[0], method="gated+dti", steps=2)  # compile the kernels first
    rows = {"Hessian directions (sigma 3)": partial(estimate_directions, sigma=3.0), "DTI": dti}
    rows.update({m + (" (the default)" if m == RECOMMENDED_METHOD else ""):
                 partial(refine, settings=RefineSettings(method=m)) for m in REFINE_METHODS})
    print(f"{'step':30s} {'wall s':>7s} {'CPU s':>7s}   (median over images of the median of 3 runs)")
    for name, fn in rows.items():
        t = np.array([clock(partial(fn, u)) for u in probs])
        print(f"{name:30s} {np.median(t[:, 0]):7.3f} {np.median(t[:, 1]):7.3f}")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
