"""Train the shipped 2D U-Net (unet_fundus.pt) on DRIVE + STARE + HRF training splits.

    OMP_NUM_THREADS=2 python scripts/train_fundus.py --data data \
        --out src/napari_tubediff/models/weights/unet_fundus.pt --iters 5000 --threads 2

then its refiner (the direction head and lambdas on the frozen U-Net, at the working scale):

    python scripts/train_fundus.py --data data --refiner \
        --unet src/napari_tubediff/models/weights/unet_fundus.pt \
        --out src/napari_tubediff/models/weights/refiner_fundus.pt --threads 2

(``--steps 50 --loss cldice`` trains the refiner for 50 steps, checkpointed, on the soft-clDice mix;
docs/results/refine/learned_rule.txt)

and finally its calibration (a logit bias folded into the output layer, fitted to the mean
Dice at 0.5 over the training images at native resolution; the weights then go to --out):

    python scripts/train_fundus.py --data data --calibrate \
        --unet src/napari_tubediff/models/weights/unet_fundus.pt --out /tmp/unet_calibrated.pt

The held-out images (docs/models.md) are never read. ``--iters 50`` is a smoke run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from napari_tubediff.training.fundus import (
    FundusConfig,
    calibrate_fundus,
    train_fundus,
    train_fundus_refiner,
)
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
    ap.add_argument("--unet", help="with --refiner or --calibrate: the U-Net weights")
    ap.add_argument("--calibrate", action="store_true",
                    help="fit a logit bias to the U-Net --unet on the training images; write to --out")
    ap.add_argument("--biases", default="-1:1:0.1",
                    help="with --calibrate: the biases tried, START:STOP:STEP")
    ap.add_argument("--workers", type=int, default=1, help="with --calibrate: processes")
    ap.add_argument("--updates", type=int, default=RefinerConfig.updates, help="with --refiner")
    ap.add_argument("--steps", type=int, default=RefinerConfig.steps, help="with --refiner: RK4 steps")
    ap.add_argument("--loss", default=RefinerConfig.loss, choices=["bce", "dice", "cldice"],
                    help="with --refiner: the loss (training/losses.py mixed_loss)")
    ap.add_argument("--stop-file", help="with --refiner: once this file exists, stop (and save) at the "
                                        "next whole cosine cycle (a multiple of 10 updates)")
    ap.add_argument("--checkpoint", action=argparse.BooleanOptionalAction, default=None,
                    help="with --refiner: gradient checkpointing of each RK4 step (default: from 20 steps)")
    ap.add_argument("--cache", help="an .npz file: the U-Net run keeps its prepared images there, "
                                    "the --refiner run reads the plain ones back")
    a = ap.parse_args(argv)
    log = lambda m: print(time.strftime("%H:%M:%S"), m, flush=True)  # noqa: E731
    if a.calibrate:
        if not a.unet or Path(a.out).exists():
            print("error: --calibrate needs --unet, and an --out that does not exist yet", file=sys.stderr)
            return 2
        lo, hi, step = (float(v) for v in a.biases.split(":"))
        biases = np.round(np.arange(lo, hi + step / 2, step), 4)
        rec = calibrate_fundus(a.data, a.unet, a.out, biases, datasets=a.datasets.split(","),
                               threads=a.threads, workers=a.workers, log=log)
        print("bias  mean Dice  " + "  ".join(rec["per_dataset"]))
        for j, b in enumerate(rec["biases"]):
            print(f"{b:+.2f}  {rec['mean_dice'][j]:.4f}     "
                  + "  ".join(f"{v[j]:.4f}" for v in rec["per_dataset"].values()))
        print(f"done: bias {rec['fitted_bias']:+.2f}, mean training Dice {rec['dice_before']:.4f} -> "
              f"{rec['dice_after']:.4f} over {rec['images']} images in {rec['seconds']:.0f} s; wrote {a.out}",
              flush=True)
        return 0
    if a.refiner:
        t = time.time()
        cfg = RefinerConfig(updates=a.updates, seed=a.seed, steps=a.steps, loss=a.loss,
                            checkpoint=a.checkpoint)
        polls = iter(range(10 ** 9))  # train_refiner polls before each update: the updates done

        def stop() -> bool:
            done = next(polls)
            if done:
                print(time.strftime("%H:%M:%S"), f"{done} updates done", flush=True)
            return bool(a.stop_file) and done > 0 and done % cfg.restart == 0 and Path(a.stop_file).exists()

        rec = train_fundus_refiner(a.data, a.unet, a.out, cfg, should_stop=stop,
                                   datasets=a.datasets.split(","), threads=a.threads, cache=a.cache,
                                   every=a.versions,
                                   log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
        print(f"done: refiner, {rec['updates']} updates in {time.time() - t:.0f} s, loss "
              f"{rec['first_loss']:.4f} -> {rec['final_loss']:.4f}, lambda_par {rec['lambda_par']:.3f}, "
              f"lambda_perp {rec['lambda_perp']:.3f}; images {rec['data']}; wrote {a.out}", flush=True)
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
