"""Peak memory per pixel of the refinement's parts and of the U-Net, 2D (the figures behind
the memory checks in ``core/checks.py`` and ``models/backbones.py``).

Run from the repository root (after installing the package):

    python benchmarks/bench_memory.py                  # 1024^2 and 2048^2
    python benchmarks/bench_memory.py --sizes 512 1024

Each (part, size) runs in a fresh process. numpy's buffers are traced by ``tracemalloc``
(the peak while the part runs); torch's CPU allocator is not, so the U-Net is measured by
the process's peak resident size. Bytes per pixel are the slope between the two sizes
(what the fixed cost of imports and weights does not change).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, tracemalloc
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.diffusion import diffuse
from napari_tubediff.core.refine import RefineSettings, refine

part, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
u = rng.random((n, n), dtype=np.float32)
s = RefineSettings(steps=2)
small = np.zeros((16, 16), np.float32)
diffuse(small, estimate_directions(small, 2.0), dt=s.dt, steps=1, device="cpu")  # compile first
if part == "unet":
    import torch
    torch.set_num_threads(1)
    from napari_tubediff.models.backbones import UNetBackbone
    bb = UNetBackbone(device="cpu")
    bb.predict(small)
    img = (rng.random((n, n)) * 255).astype(np.uint8)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    bb.predict_with_features(img)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
else:
    v = estimate_directions(u, s.sigma) if part == "diffuse" else None
    tracemalloc.start()
    if part == "refine":
        refine(u, settings=s, device="cpu")
    elif part == "directions":
        estimate_directions(u, s.sigma)
    else:
        diffuse(u, v, dt=s.dt, steps=s.steps, device="cpu")
    peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"part": part, "size": n, "peak": peak}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[1024, 2048])
    ap.add_argument("--parts", nargs="+", default=["refine", "directions", "diffuse", "unet"])
    args = ap.parse_args(argv)
    for part in args.parts:
        rows = [json.loads(subprocess.run([sys.executable, "-c", CHILD, part, str(n)], check=True,
                                          capture_output=True, text=True).stdout.splitlines()[-1])
                for n in args.sizes]
        (a, b) = rows
        slope = (b["peak"] - a["peak"]) / (b["size"] ** 2 - a["size"] ** 2)
        print(f"{part:10s} peak {a['peak'] / 2**20:8.1f} MiB at {a['size']}^2, {b['peak'] / 2**20:8.1f} MiB "
              f"at {b['size']}^2: {slope:.0f} bytes per pixel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
