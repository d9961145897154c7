"""Write the backbone's probability maps of a split, as ``tubediff segment`` makes them.

    python scripts/refine_predict.py OUT_DIR --data data/DRIVE --split training
    python scripts/refine_predict.py OUT_DIR --images data/STARE/images --labels data/STARE/labels_1st \
        --fov auto --skip im0255,im0291,im0319,im0324

One ``NAME_prob.tif`` per image (``evaluation.read_prediction`` reads them back); a map
already there is kept, so an interrupted run resumes. DRIVE's own FOV masks are given to
the backbone (as ``tubediff evaluate --data`` does), the other sets' FOV as ``--fov`` says.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from napari_tubediff.data.drive import pair_folders, read_drive
from napari_tubediff.data.io import write_image
from napari_tubediff.models import get_backbone
from napari_tubediff.models.backbones import segment_image

#: The held-out images of STARE and HRF (issue 12's splits): never used to choose anything.
HELD_OUT = {"STARE": "im0255,im0291,im0319,im0324",
            "HRF": ",".join(f"{i}_{g}" for g in ("dr", "g", "h") for i in range(11, 16))}
#: The training splits the refinement's choices (and the gap confidence) are made on, as
#: arguments of `items_of` relative to a data root: DRIVE training, STARE and HRF but the held-out.
TRAINING = {"drive": dict(data="DRIVE", split="training"),
            "stare": dict(images="STARE/images", labels="STARE/labels_1st", fov="auto",
                          skip=HELD_OUT["STARE"]),
            "hrf": dict(images="HRF/images", labels="HRF/labels_1st", fov="HRF/mask", skip=HELD_OUT["HRF"])}


def training_items(root, name: str) -> list:
    """The images of training split ``name`` (`TRAINING`) under the data folder ``root``."""
    spec = dict(TRAINING[name])
    for k in ("data", "images", "labels"):
        if k in spec:
            spec[k] = str(Path(root) / spec[k])
    if spec.get("fov") not in (None, "auto"):
        spec["fov"] = str(Path(root) / spec["fov"])
    return items_of(argparse.Namespace(**{"data": None, "split": "training", "images": None, "labels": None,
                                          "fov": None, "only": None, "skip": None, **spec}))


def items_of(args) -> list:
    """The images a refine_* script works on: a DRIVE split or paired folders, cut by --only / --skip."""
    items = read_drive(args.data, args.split) if args.data else pair_folders(args.images, args.labels,
                                                                             None, args.fov)
    if getattr(args, "only", None):
        keep = set(args.only.split(","))
        items = [it for it in items if it.name in keep]
    if getattr(args, "skip", None):
        drop = set(args.skip.split(","))
        items = [it for it in items if it.name not in drop]
    return items


def add_item_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", help="a DRIVE-layout folder (with --split)")
    ap.add_argument("--split", default="training")
    ap.add_argument("--images", help="or a folder of images, paired by name with --labels (STARE, HRF)")
    ap.add_argument("--labels")
    ap.add_argument("--fov", help="with --images: a folder of FOV masks named like the images, or auto")
    ap.add_argument("--only", help="comma list of image names to keep (e.g. a held-out split)")
    ap.add_argument("--skip", help="comma list of image names to leave out (e.g. the held-out images)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    add_item_args(ap)
    ap.add_argument("--backbone-weights")
    args = ap.parse_args()
    torch.set_num_threads(1)
    opts = {"weights": args.backbone_weights} if args.backbone_weights else {}
    bb = get_backbone("unet", **opts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for it in items_of(args):
        path = out / f"{it.name}_prob.tif"
        if path.exists():
            continue
        fov = it.fov()
        seg = segment_image(bb, it.image(), fov="auto" if fov is None else fov)
        write_image(path, seg.prob)
        print(it.name, flush=True)


if __name__ == "__main__":
    main()
