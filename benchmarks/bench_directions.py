"""2D Hessian directions: the closed-form 2 x 2 eigen-decomposition against numpy's eigh.

Run from the repository root (after installing the package), on DRIVE probability maps made
with ``tubediff segment`` (or, with no files, on a synthetic DRIVE-sized field):

    tubediff segment --out /tmp/pred data/DRIVE/test/images/0[1-5]_test.tif
    python benchmarks/bench_directions.py /tmp/pred/0[1-5]_test_prob.tif

Both paths run in the same process, alternately, on the same fields: the former one is
`core.directions` with ``_EIGH_2D = True`` (numpy's ``eigh`` per pixel), the new one
`eigh_2x2`. Reported per path: `estimate_directions` (sigma 3) and the default refinement
(`refine` with ``RECOMMENDED_METHOD``), CPU seconds of the process and wall seconds, the
median over the images of the median of ``--repeat`` runs; their ratio; and the check that
the results agree: ``|v|`` equal (the sign of a direction is arbitrary) and the refined
fields within 1e-6. The CPU seconds are the work; on a shared machine the wall seconds
also measure the queue, so the load average is printed with them. Last, where the default
refinement's CPU time goes now: its three stages timed alone (medians as above).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial

import numpy as np

import napari_tubediff.core.directions as directions
from napari_tubediff.core.diffusion import diffuse
from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, _thin_dti_field, gate, refine
from napari_tubediff.data.io import read_image, to_probability
from napari_tubediff.data.synthetic import synthetic_vessels


def clock(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``repeat`` calls, and the last result."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus)), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probs", nargs="*", help="probability maps (default: a synthetic 584 x 565 field)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    fields = ([to_probability(read_image(p), p) for p in args.probs] if args.probs
              else [synthetic_vessels((584, 565), seed=0).probability])
    s = RefineSettings(method=RECOMMENDED_METHOD)
    refine(fields[0], settings=s)  # load the compiled kernels first
    t = {(p, k): [] for p in ("eigh", "closed") for k in ("directions", "refine")}
    worst_v = worst_r = 0.0
    for u in fields:
        out = {}
        for path in ("eigh", "closed"):
            directions._EIGH_2D = path == "eigh"
            w, c, v = clock(lambda u=u: directions.estimate_directions(u, s.sigma), args.repeat)
            t[path, "directions"].append((w, c))
            w, c, r = clock(lambda u=u: refine(u, settings=s), args.repeat)
            t[path, "refine"].append((w, c))
            out[path] = v, r
        directions._EIGH_2D = False
        worst_v = max(worst_v, float(np.abs(np.abs(out["eigh"][0]) - np.abs(out["closed"][0])).max()))
        worst_r = max(worst_r, float(np.abs(out["eigh"][1] - out["closed"][1]).max()))
    med = {f"{p} {k}": np.median(np.array(x), axis=0).tolist() for (p, k), x in t.items()}
    load = os.getloadavg()
    print(f"{len(fields)} field(s) {'x'.join(map(str, fields[0].shape))}, {args.repeat} runs each; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print("| step | eigh CPU s | closed form CPU s | CPU ratio | eigh wall s | closed form wall s |")
    print("|---|---|---|---|---|---|")
    names = {"directions": "Hessian directions (sigma 3)", "refine": f"refine {RECOMMENDED_METHOD} (default)"}
    for k, name in names.items():
        (we, ce), (wc, cc) = med[f"eigh {k}"], med[f"closed {k}"]
        print(f"| {name} | {ce:.3f} | {cc:.3f} | {ce / cc:.1f}x | {we:.3f} | {wc:.3f} |")
    print(f"largest | |v| difference: {worst_v:.1e}; largest refined-field difference: {worst_r:.1e}")
    stages = {"Hessian directions": [], f"diffusion, {s.steps} RK4 steps": [],
              "completion (DTI, skeleton, dilation)": []}
    for u in fields:
        v = directions.estimate_directions(u, s.sigma)
        field = diffuse(u, v, **s.diffusion_kwargs(u.ndim))
        shown = u + gate(u, s) * (field - u)
        for name, fn in zip(stages, (partial(directions.estimate_directions, u, s.sigma),
                                     partial(diffuse, u, v, **s.diffusion_kwargs(u.ndim)),
                                     partial(_thin_dti_field, shown, s)), strict=True):
            stages[name].append(clock(fn, args.repeat)[1])
    print("\n| stage of the default refinement (closed form) | CPU s |\n|---|---|")
    for name, cpu in stages.items():
        print(f"| {name} | {np.median(cpu):.3f} |")
    med["stages_cpu_s"] = {k: float(np.median(x)) for k, x in stages.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"median_wall_cpu_s": med, "max_abs_v_diff": worst_v, "max_refine_diff": worst_r,
                       "load": load, "files": args.probs}, f, indent=1)
    if worst_v > 1e-6 or worst_r > 1e-6:
        print("the two paths disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
