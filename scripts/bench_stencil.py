"""The odd-even striping of the wide stencil against the compact one (issue 13), and their cost.

    python scripts/bench_stencil.py PROB.tif [PROB.tif ...] [--fov-dir DIR] [--repeat 3]
    python scripts/bench_stencil.py --checks docs/results/refine/compact_training.json
    python scripts/bench_stencil.py --volume 96

``--volume N``: the time per step of both stencils (backend "auto") on an N^3 smooth random
field with smooth random directions (the default lambdas, dt 0.2), nothing else.

``--checks``: issue 13's 9 checks (per set: VCA <= DTI's, clDice >= DTI's, Dice >= raw's - 0.005)
and the sum of the Dice and clDice shortfalls of every refinement row of scripts/refine_rscale.py's
JSON files (one per set, named by the file, or one file mapping set names to them).

For each probability map: Hessian directions (sigma 3) once, then the faithful PDE (200 steps)
and the gated one (30 and 200 steps) with ``stencil="wide"`` and ``"compact"`` (the other
settings `RefineSettings`' defaults). In the background (the FOV outside the raw mask
``prob >= 0.5`` dilated by 5 pixels) it measures

* ``oddeven``: the mean of ``sum_axes |u[i-1] - 2 u[i] + u[i+1]| / 4``, the filter whose gain
  is 1 at the Nyquist frequency (the mode ``(-1)^i``) and ``sin^2(theta/2)`` below it;
* ``nyq3``: the same with the third difference ``[-1, 3, -3, 1] / 8`` (gain 1 at Nyquist,
  ``sin^3(theta/2)`` below: blinder to the smooth curvature of the background);
* ``hf``: the mean of ``|u - gaussian(u, 1)|``, all the fine detail;
* ``mean``: the mean probability (how much the refinement raised the background).

and the time per diffusion step of each stencil (backend "auto": the numba kernels, 2D;
median of ``--repeat`` runs of 30 steps, wall and CPU seconds). Ratios are compact / wide in the
same run. ``--fov-dir``: a folder of DRIVE-style masks (``<id>_*`` for ``<id>_*_prob.tif``);
without it the FOV is the whole image.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk

from napari_tubediff.core.diffusion import diffuse
from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.refine import RefineSettings, refine
from napari_tubediff.data.io import read_image, to_probability

try:
    from refine_timing import clock  # the median wall and CPU seconds of a call
except ImportError:  # run from elsewhere
    from scripts.refine_timing import clock

RUNS = (("faithful", 200), ("gated", 30), ("gated", 200))
STENCILS = ("wide", "compact")


def background(prob: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    vessel = ndi.binary_dilation(prob >= 0.5, structure=disk(5))
    return ~vessel if fov is None else (fov & ~vessel)


def measures(u: np.ndarray, bg: np.ndarray) -> dict:
    u = u.astype(np.float64)
    nyq = [0.25, -0.5, 0.25]  # gain 1 at the Nyquist frequency
    second = sum(np.abs(ndi.correlate1d(u, nyq, axis=a, mode="nearest")) for a in range(u.ndim))
    third = sum(np.abs(ndi.correlate1d(u, [-0.125, 0.375, -0.375, 0.125], axis=a, mode="nearest"))
                for a in range(u.ndim))
    hf = np.abs(u - ndi.gaussian_filter(u, 1.0, mode="nearest"))
    return {"oddeven": float(second[bg].mean()), "nyq3": float(third[bg].mean()), "hf": float(hf[bg].mean()),
            "mean": float(u[bg].mean())}


def find_fov(fov_dir: str | None, prob_path: str) -> np.ndarray | None:
    if fov_dir is None:
        return None
    key = Path(prob_path).name.split("_")[0]
    hits = sorted(p for p in Path(fov_dir).iterdir() if p.name.split("_")[0] == key)
    if not hits:
        raise SystemExit(f"no FOV mask for {prob_path} in {fov_dir}")
    m = read_image(hits[0])
    return (m[..., 0] if m.ndim == 3 else m) > 0


def checks(paths: list[str]) -> None:
    sets: dict[str, dict] = {}
    for path in paths:
        with open(path) as fh:
            d = json.load(fh)
        sets.update({Path(path).stem: d} if "raw" in d else d)
    rows = [m for m in next(iter(sets.values())) if m not in ("raw", "dti")]
    print("checks: V VCA <= DTI's, C clDice >= DTI's, D Dice >= raw - 0.005; shortfalls: Dice and clDice")
    for m in rows:
        n, short, parts = 0, 0.0, []
        for name, d in sets.items():
            r, dti, raw = d[m]["mean"], d["dti"]["mean"], d["raw"]["mean"]
            ok = (r["vca"] <= dti["vca"], r["cldice"] >= dti["cldice"], r["dice"] >= raw["dice"] - 0.005)
            sh = ((0 if ok[1] else dti["cldice"] - r["cldice"])
                  + (0 if ok[2] else raw["dice"] - 0.005 - r["dice"]))
            n, short = n + sum(ok), short + sh
            flags = "".join(c if k else "-" for c, k in zip("VCD", ok, strict=True))
            parts.append(f"{name} {r['dice']:.4f}/{r['cldice']:.4f}/{r['vca']:.2f} [{flags}] {sh:.4f}")
        print(f"{m:6s} {n}/{3 * len(sets)} checks, shortfalls {short:.4f} | " + " | ".join(parts))


def volume_timing(n: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    u = ndi.gaussian_filter(rng.random((n, n, n)), 2.0)
    u = ((u - u.min()) / (u.max() - u.min())).astype(np.float32)
    v = np.stack([ndi.gaussian_filter(rng.normal(size=(n, n, n)), 2.0) for _ in range(3)])
    v = (v / np.sqrt((v**2).sum(0))).astype(np.float32)
    kw = dict(lambda_par=1.0, lambda_perp=0.02, dt=0.2)
    for st in STENCILS:
        diffuse(u, v, steps=1, stencil=st, **kw)  # compile first
    res = {st: clock(partial(diffuse, u, v, steps=3, stencil=st, **kw), repeat) for st in STENCILS}
    for st, (w, c) in res.items():
        print(f"{n}^3 {st:8s} wall {1e3 * w / 3:7.1f} ms/step  CPU {1e3 * c / 3:7.1f} ms/step  "
              f"ratio to wide: wall {w / res['wide'][0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("probs", nargs="*")
    ap.add_argument("--fov-dir")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--checks", nargs="+", metavar="JSON")
    ap.add_argument("--volume", type=int, metavar="N")
    args = ap.parse_args()
    if args.checks:
        return checks(args.checks)
    if args.volume:
        return volume_timing(args.volume, args.repeat)
    if not args.probs:
        ap.error("give probability maps (or --checks JSON)")
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores")
    base = RefineSettings()
    rows: dict[tuple, list[dict]] = {}
    times: dict[str, list[tuple[float, float]]] = {s: [] for s in STENCILS}
    for path in args.probs:
        prob = to_probability(read_image(path), path)
        bg = background(prob, find_fov(args.fov_dir, path))
        v = estimate_directions(prob, base.sigma)
        rows.setdefault(("raw", 0, "-"), []).append(measures(prob, bg))
        for method, steps in RUNS:
            for st in STENCILS:
                out = refine(prob, v, replace(base, method=method, steps=steps, stencil=st))
                rows.setdefault((method, steps, st), []).append(measures(out, bg))
        kw = base.diffusion_kwargs(2)
        for st in STENCILS:
            diffuse(prob, v, **{**kw, "steps": 1, "stencil": st})  # compile first
        for st in STENCILS:  # interleaved, so a change of the machine's load hits both alike
            run = partial(diffuse, prob, v, **{**kw, "steps": 30, "stencil": st})
            w, c = clock(run, args.repeat)
            times[st].append((w / 30, c / 30))
        print(f"{Path(path).name}: background {bg.sum()} pixels", flush=True)

    print(f"\nbackground measures, mean over {len(args.probs)} images (ratio: compact / wide)")
    head = ("run", "stencil", "oddeven", "nyq3", "hf", "mean", "oddeven x", "nyq3 x", "hf x")
    print("{:22s} {:8s} {:>10s} {:>10s} {:>10s} {:>8s} {:>10s} {:>7s} {:>7s}".format(*head))
    for (method, steps, st), ms in rows.items():
        m = {k: np.mean([r[k] for r in ms]) for k in ms[0]}
        ratio = ""
        if st == "compact":
            w = {k: np.mean([r[k] for r in rows[(method, steps, "wide")]]) for k in ms[0]}
            ratio = " ".join(f"{m[k] / w[k]:{n}.3f}" for k, n in (("oddeven", 10), ("nyq3", 7), ("hf", 7)))
        name = "raw (backbone)" if method == "raw" else f"{method} {steps} steps"
        vals = " ".join(f"{m[k]:10.2e}" for k in ("oddeven", "nyq3", "hf"))
        print(f"{name:22s} {st:8s} {vals} {m['mean']:8.4f} {ratio}")
    print("\ntime per diffusion step (backend auto, median over images of the median of "
          f"{args.repeat} runs of 30 steps)")
    for st in STENCILS:
        t = np.array(times[st])
        wall, cpu = np.median(t[:, 0]), np.median(t[:, 1])
        tw = np.array(times["wide"])
        print(f"{st:8s} wall {1e3 * wall:6.2f} ms  CPU {1e3 * cpu:6.2f} ms  "
              f"ratio to wide: wall {wall / np.median(tw[:, 0]):.2f}  CPU {cpu / np.median(tw[:, 1]):.2f}")
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
