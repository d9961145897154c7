"""The 3D pipeline on the two real light-sheet volumes against their reference masks
(docs/results.md, "Real volumes"), and the choice of the 3D backbone's settings on synthetic
microscopy volumes (never on the volumes scored).

Part 1 (``choose``): `VolumeBackbone` with every smoothing in {0.5, 1, 2} voxels and every
threshold in {li, otsu, triangle} on 4 synthetic microscopy volumes
(`training.synthetic3d.microscopy_volume`, seeds 5000..5003, spacing (3, 1, 1)); the best
mean Dice is the default (`models.classical.SMOOTH_VOXELS`, threshold "li"). The same grid
on the real volumes is printed too, as a leave-one-out check: the setting that wins on one
volume, scored on the other.

Part 2 (``score``): on each real volume, as a user would run them:
* Otsu threshold of the image; scikit-image's Frangi and Sato vesselness (default scales,
  ``black_ridges`` from the vessel polarity) thresholded by Otsu of the response;
* the default 3D pipeline: ``tubediff refine --input image VOLUME`` (backbone region3d,
  then `core.refine.VOLUME_REFINE`, chosen on synthetic microscopy volumes by
  scripts/volume_refine_choice.py: no refinement, mask >= 0.5); the former default
  (region3d + gated+dti, 10 steps); DTI (0.5 / 0.3) of its probability;
* the earlier 3D backbones: the shipped 3D U-Net (raw, DTI) and 3D vesselness (Otsu).
Scored by `core.metrics.evaluate`: Dice, clDice (3D skeletons), Betti-0 error (|components
of the mask - components of the reference|, 26-connected) and Betti-1 error (|tunnels -
tunnels|, tunnels from the Euler characteristic: b1 = b0 + b2 - chi).

    python scripts/volume_results.py --data data/volumes --json docs/results/volumes.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

VOLUMES = {
    "VesselExpress_FrangiNet": ("images/000.tif", "labels_1st/Binary_000.tif"),
    "VesselExpress_napari_liver": ("images/Raw_liver_1.tiff", "labels_1st/Binary_liver_1.tiff"),
}
SMOOTHS = (0.5, 1.0, 2.0)
THRESHOLDS = ("li", "otsu", "triangle")
SYNTH_SEEDS = range(5000, 5004)
METRICS = ("dice", "cldice", "betti0_error", "betti1_error")
DEFAULT_ROW = "default: tubediff refine --input image"
FORMER_ROW = "former default: region3d + gated+dti, 10 steps"


def _grid(volumes) -> dict[str, list[float]]:
    """Dice of `VolumeBackbone` (>= 0.5) per setting, one value per volume."""
    from napari_tubediff.core.metrics import dice
    from napari_tubediff.models.classical import VolumeBackbone

    out = {}
    for sm in SMOOTHS:
        for th in THRESHOLDS:
            bb = VolumeBackbone(smooth=sm, threshold=th)
            out[f"smooth {sm:g}, {th}"] = [
                dice(replace(bb, spacing=sp).predict(img) >= 0.5, truth) for img, truth, sp in volumes]
    return out


def choose(real) -> dict:
    """The rule, printed with its figures: the smoothing of the best setting on the synthetic
    microscopy volumes; for each real volume, the threshold that wins (at that smoothing)
    on the other real volume. Both must agree with the shipped default."""
    from napari_tubediff.models.classical import SMOOTH_VOXELS
    from napari_tubediff.training.synthetic3d import microscopy_volume

    volumes = [microscopy_volume(s) for s in SYNTH_SEEDS]
    synth = _grid(volumes)
    best = max(synth, key=lambda k: np.mean(synth[k]))
    smooth = float(best.split(",")[0].split()[1])
    print(f"synthetic microscopy volumes (seeds {SYNTH_SEEDS.start}..{SYNTH_SEEDS.stop - 1}, spacing "
          "(3, 1, 1)): mean Dice of the backbone alone (>= 0.5)")
    for k, v in synth.items():
        print(f"  {k:22s} {np.mean(v):.3f}" + ("   <- best: its smoothing is chosen" if k == best else ""))
    names = list(real)
    grid = _grid([(real[n][0], real[n][1], None) for n in names])
    print("the same grid on the real volumes: each volume's threshold is the one that wins on the OTHER")
    print(f"  {'':22s} " + " ".join(f"{n[:26]:>26s}" for n in names))
    for k, v in grid.items():
        print(f"  {k:22s} " + " ".join(f"{x:26.3f}" for x in v))
    loo = {}
    for i, n in enumerate(names):
        at = [k for k in grid if k.startswith(f"smooth {smooth:g},")]
        th = max(at, key=lambda k: grid[k][1 - i]).split(", ")[1]
        loo[n] = {"smooth": smooth, "threshold": th}
        same = (smooth, th) == (SMOOTH_VOXELS, "li")
        print(f"  {n}: smoothing {smooth:g} (synthetic), threshold {th} (best on the other volume)"
              + ("  = the shipped default" if same else "  (NOT the default)"))
    pipeline = _synthetic_pipeline(volumes)
    return {"synthetic": synth, "synthetic_best": best, "real_grid": grid, "chosen": loo,
            "synthetic_pipeline": pipeline}


def _synthetic_pipeline(volumes) -> dict:
    """Mean Dice and Betti-0 error of the default backbone alone, with DTI and with the default
    refinement on the synthetic microscopy volumes: does the refinement pay in 3D?"""
    from napari_tubediff.core.dti import dti
    from napari_tubediff.core.metrics import evaluate
    from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine
    from napari_tubediff.models.classical import VolumeBackbone

    rows: dict[str, list] = {}
    settings = RefineSettings(steps=10, method=RECOMMENDED_METHOD)
    for img, truth, sp in volumes:
        p = VolumeBackbone(spacing=sp).predict(img)
        refined = refine(p, settings=settings, device="cpu") >= 0.5
        for k, mask in (("region3d alone", p >= 0.5), ("region3d + DTI", dti(p)),
                        ("region3d + gated+dti, 10 steps", refined)):
            e = evaluate(mask, truth)
            rows.setdefault(k, []).append((e["dice"], e["betti0_error"]))
    print("the pipeline on the synthetic microscopy volumes (mean Dice, mean Betti-0 error)")
    out = {}
    for k, v in rows.items():
        d, b = np.mean(v, axis=0)
        out[k] = {"dice": float(d), "betti0_error": float(b)}
        print(f"  {k:32s} {d:.3f}  {b:.2f}")
    return out


def _otsu_mask(response: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    return response > threshold_otsu(response)


def score(name: str, image: np.ndarray, truth: np.ndarray) -> dict:
    from skimage.filters import frangi, sato

    from napari_tubediff.core.dti import dti
    from napari_tubediff.core.metrics import evaluate
    from napari_tubediff.core.refine import RECOMMENDED_METHOD, VOLUME_REFINE, RefineSettings, refine
    from napari_tubediff.models import get_backbone
    from napari_tubediff.models.backbones import segment_image
    from napari_tubediff.models.classical import to_grey, vessel_polarity

    g = to_grey(image, channel=None)
    polarity = vessel_polarity(g, channel=None)
    dark = polarity == "dark"
    rows, info = {}, {"polarity": polarity, "shape": list(image.shape)}

    def add(label, fn):
        t = time.perf_counter()
        mask = fn()
        rows[label] = {k: float(v) for k, v in evaluate(mask, truth).items() if k in METRICS}
        rows[label]["seconds"] = round(time.perf_counter() - t, 1)
        rows[label]["fraction"] = float(np.mean(mask))

    add("Otsu of the image", lambda: _otsu_mask(1 - g if dark else g))
    add("Frangi + Otsu", lambda: _otsu_mask(frangi(g, black_ridges=dark)))
    add("Sato + Otsu", lambda: _otsu_mask(sato(g, black_ridges=dark)))
    backbone = get_backbone("region3d")
    t0 = time.perf_counter()
    seg = segment_image(backbone, image)
    info["segment_seconds"] = round(time.perf_counter() - t0, 1)
    info["radius"] = backbone.last_radius
    info["threshold"] = backbone.last_threshold
    settings = RefineSettings(steps=10, method=RECOMMENDED_METHOD)
    add(DEFAULT_ROW, lambda: refine(seg.prob, settings=VOLUME_REFINE, device="cpu") >= 0.5)
    add(FORMER_ROW, lambda: refine(seg.prob, settings=settings, device="cpu") >= 0.5)
    add("region3d + DTI (0.5 / 0.3)", lambda: dti(seg.prob))
    unet = segment_image(get_backbone("unet3d", device="cpu"), image).prob
    add("3D U-Net (>= 0.5)", lambda: unet >= 0.5)
    add("3D U-Net + DTI", lambda: dti(unet))
    add("3D vesselness, Otsu (>= 0.5)", lambda: segment_image(get_backbone("vesselness"), image).prob >= 0.5)
    print(f"\n{name} {image.shape}, default: region3d then {VOLUME_REFINE.steps} refinement steps, "
          f"vessels {polarity}, reference {truth.mean():.1%} of voxels, "
          f"measured vessel radius {info['radius']:.2f} voxels; region3d took {info['segment_seconds']} s")
    print(f"  {'method':50s} {'Dice':>6s} {'clDice':>7s} {'Betti-0 err':>11s} {'Betti-1 err':>11s} "
          f"{'fraction':>8s}")
    for k, r in rows.items():
        print(f"  {k:50s} {r['dice']:6.3f} {r['cldice']:7.3f} {r['betti0_error']:11.0f} "
              f"{r['betti1_error']:11.0f} {r['fraction']:8.1%}")
    base = ("Otsu of the image", "Frangi + Otsu", "Sato + Otsu")
    best = max(base, key=lambda k: rows[k]["dice"])
    info["goal"] = {"best_baseline": best}
    for k in (DEFAULT_ROW, FORMER_ROW):
        d = rows[k]
        goal = {"dice_margin": d["dice"] - rows[best]["dice"],
                "betti0_lower_than_best": d["betti0_error"] < rows[best]["betti0_error"],
                "betti0_lower_than_all": d["betti0_error"] < min(rows[b]["betti0_error"] for b in base)}
        info["goal"][k] = goal
        print(f"  {k}: {goal['dice_margin']:+.3f} Dice over the best baseline ({best}); Betti-0 error "
              f"lower than its: {goal['betti0_lower_than_best']}, than every baseline's: "
              f"{goal['betti0_lower_than_all']}")
    return {"rows": rows, **info}


def main(argv=None) -> int:
    import tifffile
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/volumes", help="folder with the two VesselExpress volumes")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--skip-choose", action="store_true", help="only the scores on the real volumes")
    args = ap.parse_args(argv)
    real = {}
    for name, (img, lab) in VOLUMES.items():
        root = Path(args.data) / name
        real[name] = (tifffile.imread(root / img), tifffile.imread(root / lab) > 0)
    out = {"date": time.strftime("%Y-%m-%d"), "command": "python scripts/volume_results.py"}
    if not args.skip_choose:
        out["choose"] = choose(real)
    out["volumes"] = {n: score(n, *real[n]) for n in real}
    if args.json:
        from napari_tubediff.data.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
