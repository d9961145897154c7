"""Train the shipped 2D U-Net (unet_fundus.pt) on DRIVE + STARE + HRF training splits.

    OMP_NUM_THREADS=2 python scripts/train_fundus.py --data data \
        --out src/napari_tubediff/models/weights/unet_fundus.pt --iters 5000 --threads 2

then its refiner (the direction head and lambdas on the frozen U-Net, at the working scale):

    python scripts/train_fundus.py --data data --refiner \
        --unet src/napari_tubediff/models/weights/unet_fundus.pt \
        --out src/napari_tubediff/models/weights/refiner_fundus.pt --threads 2

The held-out images (docs/models.md) are never read. ``--iters 50`` is a smoke run.
"""

from __future__ import annotations

import argparse
import sys
import time

from napari_tubediff.training.fundus import FundusConfig, train_fundus, train_fundus_refiner
from napari_tubediff.training.refiner import RefinerConfig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding DRIVE/, STARE/ and HRF/")
    ap.add_argument("--out", required=True)
    ap.add_argument("--iters", type=int, default=FundusConfig.iters)
    ap.add_argument("--batch", type=int, default=FundusConfig.batch)
    ap.add_argument("--patch", type=int, default=FundusConfig.patch)
    ap.add_argument("--versions", type=int, default=FundusConfig.versions)
    ap.add_argument("--datasets", default="DRIVE,STARE,HRF")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=FundusConfig.lr)
    ap.add_argument("--init", help="U-Net weights to continue training from")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--refiner", action="store_true", help="train the refiner on the U-Net --unet")
    ap.add_argument("--unet", help="with --refiner: the U-Net weights")
    ap.add_argument("--updates", type=int, default=RefinerConfig.updates, help="with --refiner")
    ap.add_argument("--cache", help="an .npz file: the U-Net run keeps its prepared images there, "
                                    "the --refiner run reads the plain ones back")
    a = ap.parse_args(argv)
    if a.refiner:
        t = time.time()
        rec = train_fundus_refiner(a.data, a.unet, a.out, RefinerConfig(updates=a.updates, seed=a.seed),
                                   datasets=a.datasets.split(","), threads=a.threads, cache=a.cache,
                                   every=a.versions,
                                   log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
        print(f"done: refiner, {rec['updates']} updates in {time.time() - t:.0f} s, loss "
              f"{rec['first_loss']:.4f} -> {rec['final_loss']:.4f}, lambda_par {rec['lambda_par']:.3f}, "
              f"lambda_perp {rec['lambda_perp']:.3f}; wrote {a.out}", flush=True)
        return 0
    cfg = FundusConfig(datasets=tuple(a.datasets.split(",")), iters=a.iters, batch=a.batch, patch=a.patch,
                       versions=a.versions, seed=a.seed, lr=a.lr)
    t = time.time()
    rec = train_fundus(a.data, a.out, cfg, threads=a.threads, cache=a.cache, init=a.init,
                       log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    print(f"done: {rec['updates']} updates in {time.time() - t:.0f} s "
          f"(prepare {rec['prepare_seconds']:.0f} s), "
          f"loss {rec['first_loss']:.4f} -> {rec['final_loss']:.4f}; wrote {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
