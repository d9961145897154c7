"""Wall time of ``refine_folder`` with 1 and 2 (or more) dask workers, and the speed-up.

Run from the repository root on an otherwise idle machine (after installing the package):

    python benchmarks/bench_batch.py                         # 8 synthetic 512 x 512 maps, 30 steps
    python benchmarks/bench_batch.py --shape 96,96,96        # 8 volumes, each refined whole
    python benchmarks/bench_batch.py --images 1 --shape 192,192,192 --chunk 96
                                                             # one volume in blocks with halos
    python benchmarks/bench_batch.py --workers 1,2,4 --json bench_batch.json

Each worker count gets a fresh LocalCluster (single-threaded worker processes, numba
limited to one thread each: ``batch.run.WORKER_ENV``) and a fresh output folder. The
cluster start and one warm-up refinement per worker (numba's cached kernels load,
torch imports) are timed apart, so the figure compares the refinement itself. The
synthetic inputs are drawn once and shared by all runs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _warm_up() -> None:
    # runs on each worker: load numba's kernels and the refinement's imports
    from napari_tubediff.core.refine import refine

    for shape in ((40, 40), (24, 24, 24)):
        u = np.zeros(shape, np.float32)
        u[(slice(8, 12),) * len(shape)] = 1
        refine(u, steps=1)


def main() -> None:
    from napari_tubediff.batch.run import BatchOptions, make_client, refine_folder
    from napari_tubediff.data.io import write_image
    from napari_tubediff.data.synthetic import synthetic_vessels

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--shape", default="512,512", help="comma list: 2D or 3D shape of each image")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--chunk", type=int, default=256, help="block edge (over chunk^3 voxels: blocks)")
    p.add_argument("--workers", default="1,2", help="comma list of worker counts")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    counts = [int(w) for w in args.workers.split(",")]
    opts = BatchOptions(steps=args.steps, chunk=args.chunk)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for k in range(args.images):
            write_image(src / f"img{k:03d}.tif", synthetic_vessels(shape, seed=k).probability)
        res = {"shape": shape, "images": args.images, "steps": args.steps, "chunk": args.chunk,
               "cpu_count": os.cpu_count(), "runs": {}}
        print(f"{args.images} image(s) of {' x '.join(map(str, shape))}, {args.steps} steps, "
              f"chunk {args.chunk}; {os.cpu_count()} CPU(s)")
        for n in counts:
            t0 = time.perf_counter()
            with make_client(workers=n) as client:
                client.run(_warm_up)
                t1 = time.perf_counter()
                report = refine_folder(src, Path(tmp) / f"out{n}", client=client, options=opts,
                                       progress=False)
                t2 = time.perf_counter()
                client.cluster.close()
            if not report.ok:
                raise SystemExit(report.summary())
            res["runs"][n] = {"start_s": t1 - t0, "refine_s": t2 - t1, "chunked": len(report.chunked)}
            print(f"{n} worker(s): refine {t2 - t1:.2f} s (cluster start and warm-up {t1 - t0:.2f} s"
                  + (f", {len(report.chunked)} image(s) in blocks" if report.chunked else "") + ")")
        base = res["runs"][counts[0]]["refine_s"]
        for n in counts[1:]:
            ratio = base / res["runs"][n]["refine_s"]
            res["runs"][n]["speedup"] = ratio
            print(f"speed-up {counts[0]} -> {n} workers: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
