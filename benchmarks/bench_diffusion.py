"""Milliseconds per RK4 step: the fused numba kernel against plain vectorised numpy.

Run from the repository root (after installing the package):

    python benchmarks/bench_diffusion.py                 # idle machine
    python benchmarks/bench_diffusion.py --load          # with a torch matmul loop in the same process
    python benchmarks/bench_diffusion.py --layers        # each numba threading layer, idle and loaded
    python benchmarks/bench_diffusion.py --data vessels  # a synthetic vessel tree instead of noise

The timing logic is napari_tubediff.bench (also behind `tubediff bench`); this
script adds the threading-layer comparison, which needs a fresh process per layer
because numba fixes its layer at the first parallel launch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from napari_tubediff.bench import run


def markdown(res: dict) -> str:
    rows = ["| case | shape | numba ms/step | numpy ms/step | numpy / numba |", "|---|---|---|---|---|"]
    from napari_tubediff.bench import CASES

    for name, r in res["results"].items():
        shape = " x ".join(map(str, CASES[name]))
        ratio = f"{r['numpy'] / r['numba']:.1f}x" if "numba" in r and "numpy" in r else "-"
        rows.append(f"| {name} | {shape} | {r.get('numba', float('nan')):.2f} | "
                    f"{r.get('numpy', float('nan')):.1f} | {ratio} |")
    return "\n".join(rows)


def layers(min_time: float) -> None:
    print("| threading layer | idle ms/step | torch loop in the same process | torch in another process |")
    print("|---|---|---|---|")
    for layer in ("tbb", "workqueue", "omp"):
        env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
        cells = []
        for mode in ("idle", "thread", "process"):
            bg = None
            if mode == "process":
                bg = subprocess.Popen([sys.executable, "-c",
                                       "import torch,time\na=torch.randn(512,512)\nt=time.time()\n"
                                       "while time.time()-t<60: a@a"])
            code = ("import json,sys; from napari_tubediff.bench import run; "
                    f"r=run(['drive'],['numba'],min_time={min_time},load={mode == 'thread'},echo=None); "
                    "print(json.dumps(r))")
            try:
                out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                     text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                cells.append(f"{r['results']['drive']['numba']:.2f}")
            except subprocess.CalledProcessError as e:
                cells.append(f"unavailable ({e.stderr.strip().splitlines()[-1][:60]})")
            finally:
                if bg:
                    bg.kill()
        print(f"| {layer} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", action="store_true", help="torch matmul loop in a thread while timing")
    p.add_argument("--layers", action="store_true", help="compare numba threading layers (drive case)")
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--data", default="random", choices=["random", "vessels"],
                   help="random field, or a synthetic vessel tree's probability and Hessian directions")
    p.add_argument("--cases", default="drive,1k,cube128", help="comma list of drive,1k,cube128,cube256")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if args.layers:
        layers(args.min_time)
        return
    res = run(args.cases.split(","), min_time=args.min_time, load=args.load, data=args.data)
    print()
    print(markdown(res))
    print()
    print(", ".join(f"{k}: {v}" for k, v in res["info"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
