"""Vessel polarity on grey fundus images: the vesselness backbone's Dice with ``polarity="auto"``
against the old grey default ("bright"), and what "auto" decides, on DRIVE's test images
turned grey (the green channel), scored inside DRIVE's FOV against the 1st observer.

    python benchmarks/polarity_drive.py --data data/DRIVE [--limit N]
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_tubediff.core.metrics import dice
from napari_tubediff.data.drive import read_drive
from napari_tubediff.models.classical import VesselnessBackbone, to_grey, vessel_polarity


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=0)
    a = p.parse_args(argv)
    items = read_drive(a.data, "test")[: a.limit or None]
    rows = {"auto": [], "bright": [], "dark": []}
    decided = []
    for it in items:
        grey, fov, truth = to_grey(it.image()), it.fov(), it.truth()
        decided.append(vessel_polarity(grey, fov))
        for pol in rows:
            rows[pol].append(dice(VesselnessBackbone(polarity=pol).predict(grey, fov) >= 0.5, truth, fov))
        print(f"{it.name}: auto -> {decided[-1]}; Dice auto {rows['auto'][-1]:.4f}, "
              f"bright {rows['bright'][-1]:.4f}, dark {rows['dark'][-1]:.4f}", flush=True)
    print(f"{len(items)} grey DRIVE test images; auto chose dark on {decided.count('dark')}")
    for pol, d in rows.items():
        print(f"polarity {pol:6s}: Dice {np.mean(d):.4f} ± {np.std(d):.4f}")


if __name__ == "__main__":
    main()
