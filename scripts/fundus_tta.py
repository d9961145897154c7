"""Flip test-time augmentation (TTA) of the fundus U-Net, measured on TRAINING images only.

The U-Net's logits at the working scale averaged over the image and its three flips
(left-right, up-down, both) against the plain logits, each scored through the default
pipeline (`training.fundus.bias_dice`: native resolution, Dice at 0.5 inside the FOV) at
logit biases -0.4 to 0.8 (the calibration's range), on the first ``--limit`` training
images of each data set; the U-Net's seconds per image with and without.

    python scripts/fundus_tta.py --data data --limit 4
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


class FlipTTA:
    """``backbone`` (a 2D `UNetBackbone`) run on the image and its three flips; the
    probability is the sigmoid of the mean logit (the flips undone first)."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.working_fov = backbone.working_fov
        self.ref_sigma = backbone.ref_sigma
        self.seconds = 0.0

    def predict_with_features(self, x, fov=None):
        t = time.perf_counter()
        zs = []
        for axes in ((), (0,), (1,), (0, 1)):
            f = (lambda a, axes=axes: np.flip(a, axes) if axes else a)  # noqa: E731
            p = self.backbone.predict_with_features(np.ascontiguousarray(f(x)),
                                                    None if fov is None else np.ascontiguousarray(f(fov)))[0]
            p = f(p).astype(np.float64)
            with np.errstate(divide="ignore"):
                zs.append(np.log(p) - np.log1p(-p))
        z = np.mean(zs, axis=0)
        self.seconds += time.perf_counter() - t
        return (1 / (1 + np.exp(-z))).astype(np.float32), None


class Timed:
    def __init__(self, backbone):
        self.backbone, self.seconds = backbone, 0.0
        self.working_fov, self.ref_sigma = backbone.working_fov, backbone.ref_sigma

    def predict_with_features(self, x, fov=None):
        t = time.perf_counter()
        out = self.backbone.predict_with_features(x, fov)
        self.seconds += time.perf_counter() - t
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding DRIVE/, STARE/ and HRF/")
    ap.add_argument("--unet", help="U-Net weights (default: the shipped ones)")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    import torch

    from napari_tubediff.data.fundus_sets import fundus_items
    from napari_tubediff.models.backbones import UNetBackbone
    from napari_tubediff.training.fundus import bias_dice

    torch.set_num_threads(a.threads)
    biases = [round(0.1 * k, 1) for k in range(-4, 9)]
    bb = UNetBackbone(a.unet, device="cpu")
    rows = {}
    for name, wrap in (("plain", Timed), ("flip TTA", FlipTTA)):
        w = wrap(bb)
        d, n = [], 0
        for ds in ("DRIVE", "STARE", "HRF"):
            items = fundus_items(a.data, ds, "train")[: a.limit]
            d.append(bias_dice(items, w, biases))
            n += len(items)
        rows[name] = (np.concatenate(d), w.seconds / n, [x.mean(axis=0) for x in d])
    print(f"{n} TRAINING images ({a.limit} per data set); mean Dice at each logit bias")
    print("bias      " + "  ".join(f"{b:+.1f}  " for b in biases))
    for name, (d, s, _) in rows.items():
        print(f"{name:9s} " + "  ".join(f"{v:.4f}" for v in d.mean(axis=0)) + f"   U-Net {s:.2f} s/image")
    for name, (d, _s, per) in rows.items():
        j = biases.index(0.0)
        print(f"{name}: at bias 0 DRIVE {per[0][j]:.4f} STARE {per[1][j]:.4f} HRF {per[2][j]:.4f}; "
              f"best mean {d.mean(axis=0).max():.4f} at {biases[int(d.mean(axis=0).argmax())]:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
