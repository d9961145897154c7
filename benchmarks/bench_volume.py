"""Time and peak memory of a whole 3D refinement (Hessian directions + 30 RK4 steps).

Run from the repository root (after installing the package):

    python benchmarks/bench_volume.py                    # 128^3 and 256^3
    python benchmarks/bench_volume.py --sizes 64 128     # other cube sizes
    python benchmarks/bench_volume.py --json out.json
    python benchmarks/bench_volume.py --stack 128 512 512    # a microscopy-sized uint16 stack
    python benchmarks/bench_volume.py --stack 128 512 512 --spacing 3 1 1 --backbone vesselness

Each size runs in a fresh process, so one size's memory cannot inflate the next's.
The input is a synthetic vessel volume (`synthetic_vessels`, its broken probability
field). Reported per size:

- seconds for the directions (scikit-image Hessian + eigenvectors) and for the
  diffusion (the fused numba kernel, `RefineSettings` defaults: 30 steps, order 8);
- the peak of memory allocated by the refinement, traced by Python's `tracemalloc`
  (numpy reports its buffers to it), and the process's peak resident size;
- bytes per voxel, whose constancy across sizes is the check that memory grows
  linearly with the voxel count.

``--stack P H W`` times the whole path a user's stack takes instead (issue 16): a
synthetic vessel tree drawn as a uint16 image of that shape (``synthetic_vessels``, 6
roots, scaled to 0..65535), segmented by ``--backbone`` (`segment_image`, as ``tubediff
segment``), Hessian directions with ``--spacing``, 30 RK4 steps and the mask (>= 0.5),
each stage timed (wall clock and the process's CPU time), with the traced and the resident
peak of the whole run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.diffusion import diffuse
from napari_tubediff.core.refine import RefineSettings
from napari_tubediff.data.synthetic import synthetic_vessels

stack = sys.argv[1] == "stack"
make_s = 0.0
if stack:  # a user's uint16 stack, segmented by a backbone
    from napari_tubediff.models import get_backbone
    from napari_tubediff.models.backbones import segment_image

    shape = tuple(int(x) for x in sys.argv[2:5])
    spacing = tuple(float(x) for x in sys.argv[5:8])
    name = sys.argv[8]
    s = RefineSettings(spacing=spacing)
    t = time.perf_counter()
    img = (synthetic_vessels(shape, seed=0, n_roots=6, width=(1.0, 3.0)).image * 65535).astype(np.uint16)
    make_s = time.perf_counter() - t
    backbone = get_backbone(name)
else:  # a cube's probability field
    n = int(sys.argv[2])
    shape, spacing = (n, n, n), None
    u = synthetic_vessels(shape, seed=0, width=(1.0, 3.0)).probability
    s = RefineSettings()
rel = s.relative_spacing(3)
# compile the kernels on a small volume first, so the timing is the steady state
small = np.zeros((16, 16, 16), np.float32)
diffuse(small, estimate_directions(small, s.sigma), dt=s.dt, steps=1, device="cpu")
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
wall, cpu = {}, {}

def timed(stage, fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall[stage], cpu[stage] = time.perf_counter() - t, time.process_time() - c
    return out

tracemalloc.start()
prob = timed("segment", lambda: segment_image(backbone, img, scale=1.0, fov="none").prob) if stack else u
v = timed("directions", lambda: estimate_directions(prob, s.sigma, spacing=rel))
out = timed("diffusion", lambda: diffuse(prob, v, dt=s.dt, steps=s.steps, lambda_par=s.lambda_par,
                                         lambda_perp=s.lambda_perp, order=s.order, device="cpu",
                                         spacing=rel))
mask = timed("mask", lambda: out >= 0.5)
_, peak = tracemalloc.get_traced_memory()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
cpu["total"] = sum(cpu.values())
r = {"shape": shape, "voxels": int(np.prod(shape)), "spacing": spacing, "make_s": make_s,
     **{f"{k}_s": x for k, x in wall.items()}, "total_s": sum(wall.values()),
     "ms_per_step": 1000 * wall["diffusion"] / s.steps, "cpu_s": cpu, "traced_peak": peak,
     "rss_peak": rss, "rss_before": rss0, "mask_fraction": float(mask.mean())}
if stack:
    r["backbone"] = name
else:
    r["size"] = n
    r["gap_filled"] = float(out[u < 0.5].mean())
print(json.dumps(r))
"""


def run_child(*args) -> dict | None:
    """One measurement in a fresh process (no earlier size's memory); None if it failed."""
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def save(path, results) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


def stack(args) -> int:
    r = run_child("stack", *args.stack, *args.spacing, args.backbone)
    if r is None:
        return 1
    gib = 2 ** 30
    print(f"stack {' x '.join(map(str, r['shape']))} uint16, spacing {tuple(r['spacing'])}, "
          f"backbone {r['backbone']}")
    print("| segment s | directions s | diffusion s (30 steps) | mask s | total s | traced peak GiB "
          "| bytes/voxel | process peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {r['segment_s']:.1f} | {r['directions_s']:.1f} | {r['diffusion_s']:.1f} | {r['mask_s']:.2f} "
          f"| {r['total_s']:.1f} | {r['traced_peak'] / gib:.2f} | {r['traced_peak'] / r['voxels']:.0f} "
          f"| {r['rss_peak'] / gib:.2f} |")
    c = r["cpu_s"]
    print(f"CPU seconds of the process (all its threads; on a loaded host closer to the work than the "
          f"wall clock): segment {c['segment']:.1f}, directions {c['directions']:.1f}, diffusion "
          f"{c['diffusion']:.1f}, mask {c['mask']:.2f}, total {c['total']:.1f}")
    save(args.json, r)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--stack", type=int, nargs=3, metavar=("P", "H", "W"),
                    help="time segment + directions + 30 steps + mask on a uint16 stack of this shape")
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("DZ", "DY", "DX"),
                    help="with --stack: the voxel spacing (default isotropic)")
    ap.add_argument("--backbone", default="vesselness",
                    help="with --stack: the backbone (default vesselness)")
    args = ap.parse_args(argv)
    if args.stack:
        return stack(args)
    rows = []
    for n in args.sizes:
        rows.append(run_child("cube", n))
        if rows[-1] is None:
            return 1
    gib = 2 ** 30
    print("| volume | directions s | diffusion s (30 steps) | ms/step | traced peak GiB | bytes/voxel "
          "| process peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r['size']}^3", f"{r['directions_s']:.1f}", f"{r['diffusion_s']:.1f}",
                 f"{r['ms_per_step']:.0f}", f"{r['traced_peak'] / gib:.2f}",
                 f"{r['traced_peak'] / r['voxels']:.0f}", f"{r['rss_peak'] / gib:.2f}"]
        print("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        total = [r["directions_s"] + r["diffusion_s"] for r in (a, b)]
        print(f"\nvoxels x{b['voxels'] / a['voxels']:.0f}: "
              f"traced peak x{b['traced_peak'] / a['traced_peak']:.2f}, "
              f"time x{total[1] / total[0]:.2f}")
    save(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
