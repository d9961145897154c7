"""The measurements behind the working scale, the automatic FOV and the scale estimate
(docs/models.md), on TRAINING images only.

    python scripts/scale_measurements.py --data data

1. Automatic FOV against the data sets' masks (DRIVE training, HRF 01-10): IoU, diameters;
   STARE (no masks): the diameters found.
2. Working scale: HRF labels shrunk to a FOV of D pixels and back (anti-aliased, linear,
   > 1/2), Dice against the original inside the FOV: what that working scale alone costs.
3. The FOV-based scale estimate on DRIVE training images resampled by 0.5 to 3.
4. The vessel-width scale (`vessel_sigma`) of DRIVE training images at the working scale:
   REF_SIGMA and its spread.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from napari_tubediff.core.fov import fov_diameter, fov_mask
from napari_tubediff.core.metrics import dice
from napari_tubediff.core.scale import WORKING_FOV, estimate_scale, from_working, to_working, vessel_sigma
from napari_tubediff.data.fundus_sets import fundus_items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    a = ap.parse_args(argv)
    drive, stare, hrf = (fundus_items(a.data, d, "train") for d in ("DRIVE", "STARE", "HRF"))

    print("1. automatic FOV (training images)")
    for name, items in (("DRIVE", drive), ("HRF", hrf[::3])):
        ious, dd = [], []
        for it in items:
            img = it.image()
            m, ref = fov_mask(img), it.fov()
            ious.append((m & ref).sum() / (m | ref).sum())
            dd.append(fov_diameter(m) - fov_diameter(ref))
        print(f"  {name}: {len(items)} images, IoU with the masks min {min(ious):.4f} "
              f"mean {np.mean(ious):.4f}; "
              f"diameter found - mask's: {min(dd):+.0f} to {max(dd):+.0f} px")
    found = [fov_mask(it.image()) for it in stare]
    ds = [fov_diameter(m) for m in found if m is not None]
    print(f"  STARE: FOV found in {len(ds)} of {len(stare)}; diameters {min(ds):.0f} to {max(ds):.0f} px "
          f"(median {np.median(ds):.0f})")

    print("2. working scale: HRF labels at a FOV of D px and back, Dice inside the FOV")
    cands = (540, 650, 800, 1000, 1300)
    print("  image   " + " ".join(f"{d:>6d}" for d in cands))
    rows = []
    for it in hrf[:3]:
        y, f = it.truth(), it.fov()
        diam = fov_diameter(f)
        row = []
        for d in cands:
            back = from_working(to_working(y.astype(np.float32), d / diam), y.shape) > 0.5
            row.append(dice(back, y, f))
        rows.append(row)
        print(f"  {it.name:7s} " + " ".join(f"{v:6.3f}" for v in row))
    print("  mean    " + " ".join(f"{v:6.3f}" for v in np.mean(rows, 0)))

    print("3. scale from the FOV, DRIVE training images resampled by k (true factor 1/k)")
    for it in drive[:3]:
        img = it.image()
        base, _ = estimate_scale(img)
        errs = []
        for k in (0.5, 0.75, 1.5, 2.0, 3.0):
            f, _ = estimate_scale(np.clip(to_working(img, k) + 0.5, 0, 255).astype(np.uint8))
            errs.append(f"{k}: {base / f / k - 1:+.1%}")
        print(f"  {it.name}: factor {base:.3f}; error of the recovered resampling " + ", ".join(errs))

    print(f"4. vessel_sigma of DRIVE training images (green channel, whole image) at the working scale "
          f"(FOV {WORKING_FOV:.0f} px)")
    sig = []
    for it in drive:
        img = it.image()
        sig.append(vessel_sigma(to_working(img[..., 1], WORKING_FOV / fov_diameter(fov_mask(img)))))
    print(f"  median {np.median(sig):.2f}, range {min(sig):.2f} to {max(sig):.2f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
