"""The ``tubediff`` command: the plugin's engine without a display.

Subcommands call the same core functions as the napari widgets. Errors in the
user's input end in one readable line (``tubediff: error: ...``) and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import __version__


def _demo(args) -> int:
    from .core.metrics import count_components, dice
    from .core.refine import refine
    from .data.io import write_image
    from .data.synthetic import synthetic_vessels

    s = synthetic_vessels((args.size, args.size), seed=args.seed, n_breaks=args.breaks)
    refined = refine(s.probability, sigma=args.sigma, lambda_par=args.lambda_par,
                     lambda_perp=args.lambda_perp, dt=args.dt, steps=args.steps)

    def row(name, mask):
        filled = np.count_nonzero(mask & s.breaks) / max(np.count_nonzero(s.breaks), 1)
        return {"method": name, "components": count_components(mask),
                "gap_pixels_filled": round(filled, 4), "dice": round(dice(mask, s.truth), 4)}

    rows = [row("truth", s.truth), row("probability > 0.5", s.probability > 0.5),
            row(f"refined ({args.steps} steps) > 0.5", refined > 0.5)]
    print(f"synthetic vessels {args.size}x{args.size}, seed {args.seed}, {args.breaks} breaks; "
          f"Hessian directions (sigma {args.sigma}); lambda_par {args.lambda_par}, "
          f"lambda_perp {args.lambda_perp}, dt {args.dt}")
    print(f"{'':28s} {'components':>10s} {'gaps filled':>12s} {'Dice':>7s}")
    for r in rows:
        print(f"{r['method']:28s} {r['components']:10d} {r['gap_pixels_filled']:12.1%} {r['dice']:7.4f}")
    if args.out:
        out = Path(args.out)
        write_image(out / "image.png", s.image)
        write_image(out / "probability.png", s.probability)
        write_image(out / "refined.png", refined)
        write_image(out / "truth.png", s.truth)
        write_image(out / "refined_mask.png", refined > 0.5)
        from .data.io import atomic_write_text

        atomic_write_text(out / "summary.json", json.dumps(rows, indent=2))
        print(f"wrote image, probability, refined, refined_mask, truth (PNG) and summary.json to {out}")
    return 0


def _evaluate(args) -> int:
    from tqdm import tqdm

    from .core.refine import RefineSettings
    from .data.drive import read_drive
    from .data.io import atomic_write_text
    from .evaluation import evaluate_dataset, format_table, make_methods, read_prediction

    if (args.data is None) == (args.synthetic3d is None):
        raise ValueError("give either --data DIR (a DRIVE-layout folder) or --synthetic3d N (volumes)")
    if args.synthetic3d is not None:
        # held-out synthetic volumes (faded gaps; never trained on), scored by the 3D U-Net
        from .training.synthetic3d import SHAPE, TEST_SEED, held_out_volumes

        if args.synthetic3d < 1:
            raise ValueError(f"--synthetic3d needs at least 1 volume, got {args.synthetic3d}")
        if args.pred is None and args.backbone is None:
            args.backbone = "unet3d"
        items = held_out_volumes(args.synthetic3d)
        what = (f"{len(items)} synthetic volumes {SHAPE} (seeds {TEST_SEED}..{TEST_SEED + len(items) - 1}, "
                "gaps faded)")
    else:
        items = read_drive(args.data, args.split)
        what = f"{len(items)} images of {args.data} ({args.split})"
    if (args.backbone is None) == (args.pred is None):
        raise ValueError("give either --backbone NAME or --pred DIR")
    if args.limit:
        items = items[: args.limit]
        what = f"the first {len(items)} of " + what
    if args.pred:
        pred_dir = Path(args.pred)
        if not pred_dir.is_dir():
            raise ValueError(f"--pred: no such folder {pred_dir}")
        source = f"predictions in {pred_dir}"

        def predict(item, fov):
            return read_prediction(pred_dir, item), None
    else:
        from .models import get_backbone

        backbone = get_backbone(args.backbone,
                                **({"weights": args.backbone_weights} if args.backbone_weights else {}))
        from .models.backbones import segment_image

        source = f"backbone {args.backbone}"

        def predict(item, fov):
            seg = segment_image(backbone, item.image(), fov=fov)  # the CLI's and the panel's path
            return seg.prob, seg.features

    names = args.methods.split(",")
    from .models.refiner import refiner_for

    refiner = refiner_for(args.refiner, args.backbone) if "refine" in names else None
    if "refine" in names:
        source += f"; refiner: {refiner.weights.name if refiner else 'Hessian directions'}"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    methods = make_methods(names, steps=args.steps, settings=RefineSettings(), refiner=refiner)
    results = evaluate_dataset(
        items, predict, methods, use_fov=args.fov, save_pred=args.save_pred,
        progress=lambda xs: tqdm(xs, desc="evaluate", unit="image", file=sys.stderr))
    labels = {"raw": "raw (u >= 0.5)", "dti": "DTI (0.5 / 0.3)",
              "refine": f"refine ({args.steps} steps)", "human": "human (2nd vs 1st observer)",
              "hessian": f"refine, Hessian dirs ({args.steps} steps)"}
    print(f"{what}; {source}; Dice, clDice and Betti "
          + ("inside the FOV" if args.fov else "on the whole image") + "; VCA on the whole image")
    print(format_table(results, labels))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


def _given(**kwargs) -> dict:
    """The options the user set (None means: the model's own default)."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _train(args) -> int:
    import torch
    from tqdm import tqdm

    from .core.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if (args.data is None) == (args.synthetic3d is None):
        raise ValueError("give either --data DIR (a DRIVE-layout folder) or --synthetic3d N (volumes)")

    def bar(it):
        return tqdm(it, desc=f"train {args.what}", unit="update", file=sys.stderr, mininterval=2)

    preset, extra = {}, {}
    if args.synthetic3d is not None:
        # the 3D models: synthetic volumes, clean images for the U-Net, faded gaps for the refiner
        from .training import synthetic3d as s3

        if args.synthetic3d < 1:
            raise ValueError(f"--synthetic3d needs at least 1 volume, got {args.synthetic3d}")
        faded = args.what == "refiner"
        n, first = args.synthetic3d, s3.TRAIN_SEED
        extra = {"train_set": s3.volume_set(n, first, faded=faded),
                 "meta": {"data": f"{n} synthetic volumes {s3.SHAPE}, seeds {first}..{first + n - 1}"
                                  + (f", gaps faded by {s3.FADE}, crops centred within {s3.GAP_REACH} "
                                     "voxels of a gap" if faded else ", clean images"),
                          "generator": s3.GENERATOR}}
        preset = s3.BACKBONE3D if args.what == "backbone" else s3.REFINER3D
    if args.what == "backbone":
        from .training.train import BackboneConfig, train_backbone

        cfg = BackboneConfig(**{**preset, **_given(base=args.base, depth=args.depth, patch=args.patch,
                                                   batch=args.batch, iters=args.iters, lr=args.lr,
                                                   loss=args.loss, seed=args.seed)})
        rec = train_backbone(args.data, args.out, cfg, device=device, progress=bar, **extra)
    else:
        from .models.backbones import SHIPPED_UNET3D
        from .training.refiner import RefinerConfig, train_refiner

        cfg = RefinerConfig(**{**preset, **_given(kernel=args.kernel, steps=args.steps, dt=args.dt,
                                                  crop=args.crop, batch=args.batch, updates=args.updates,
                                                  lr=args.lr, loss=args.loss, alpha=args.alpha,
                                                  seed=args.seed)})
        weights = args.backbone_weights or (SHIPPED_UNET3D if args.synthetic3d is not None else None)
        rec = train_refiner(args.data, args.out, cfg, backbone_weights=weights, device=device,
                            progress=bar, **extra)
    print(f"trained {args.what} in {rec['seconds']:.0f} s on {device}; final loss "
          f"{rec['final_loss']:.4f}; wrote {args.out}")
    return 0


def _segment(args) -> int:
    from tqdm import tqdm

    from .core.scale import parse_scale
    from .data.io import read_image, write_image
    from .models import get_backbone
    from .models.backbones import segment_image

    scale, fov = parse_scale(args.scale), _fov_option(args.fov)
    backbone = get_backbone(args.backbone, **({"weights": args.weights} if args.weights else {}))
    out = Path(args.out)
    print(f"backbone {args.backbone}; RGB images use their green channel; scale {args.scale}, "
          f"field of view {args.fov}")
    for path in tqdm([Path(p) for p in args.images], desc="segment", unit="image", file=sys.stderr):
        seg = segment_image(backbone, read_image(path), scale=scale, fov=fov)
        found = ("given" if isinstance(fov, np.ndarray) else "none" if fov == "none"
                 else "found" if seg.fov is not None else "none found (not a fundus photograph)")
        tqdm.write(f"{path.name}: scale {seg.factor:.3g} ({seg.how}); field of view {found}", file=sys.stderr)
        write_image(out / f"{path.stem}_prob.tif", seg.prob)
        write_image(out / f"{path.stem}_prob.png", seg.prob)
    print(f"wrote {len(args.images)} probability map(s) (float32 TIFF and 8-bit PNG) to {out}")
    return 0


def _fov_option(value: str):
    """``--fov``: "auto", "none", or a mask file read as bool (> 127, or > 0.5 for floats)."""
    if value.lower() in ("auto", "none"):
        return value.lower()
    from .data.drive import binary_mask
    from .data.io import read_image

    return binary_mask(read_image(value))


def _batch_options(args):
    from .batch.run import BatchOptions
    from .core.scale import parse_scale

    return BatchOptions(input=args.input, steps=args.steps, refiner=args.refiner,
                        volume_backbone=args.volume_backbone, chunk=args.chunk or None, device=args.device,
                        scale=parse_scale(args.scale), fov=args.fov)


def _refine_folder(args) -> int:
    from .batch.run import make_client, refine_folder

    client = make_client(args.scheduler, args.workers) if args.scheduler else None
    try:
        report = refine_folder(args.paths[0], args.out, client=client, options=_batch_options(args),
                               workers=args.workers)
    finally:
        if client is not None:
            client.close()
    print(report.summary())
    return 0 if report.ok else 1


def _refine(args) -> int:
    from tqdm import tqdm

    from .batch.run import process_image

    if not args.scheduler:
        from .core.device import resolve_device

        resolve_device(args.device)  # a wrong name or a missing GPU: say so before starting
    dirs = [p for p in args.paths if Path(p).is_dir()]
    if dirs:
        if len(args.paths) > 1:
            raise ValueError("give either one folder or image files, not both")
        return _refine_folder(args)
    # files: the same per-image work as a folder's, here in this process, one after another
    opts = _batch_options(args)
    for path in tqdm([Path(p) for p in args.paths], desc="refine", unit="image", file=sys.stderr):
        process_image(path, args.out, opts)
    how = ("a backbone + " + ("the learned refiner" if args.refiner != "hessian" else "Hessian directions")
           if args.input == "image" else "Hessian directions of the probability maps")
    print(f"refined {len(args.paths)} file(s) with {how}, {args.steps} steps; wrote NAME_refined.tif "
          f"(float32) and NAME_mask.png (2D) or NAME_mask.tif (3D), >= 0.5, to {args.out}")
    return 0


def _finetune(args) -> int:
    from tqdm import tqdm

    from .data.drive import binary_mask
    from .data.io import read_image
    from .models.refiner import LearnedRefiner
    from .training.finetune import FinetuneConfig, finetune

    if len(args.labels) != len(args.images):
        raise ValueError(f"--labels must name one file per image ({len(args.images)} images, "
                         f"{len(args.labels)} labels)")
    for opt in ("regions", "fovs"):
        if getattr(args, opt) and len(getattr(args, opt)) != len(args.images):
            raise ValueError(f"--{opt} must name one mask per image")
    images = [read_image(p) for p in args.images]
    labels = [binary_mask(read_image(p)) for p in args.labels]
    regions = [binary_mask(read_image(p)) for p in args.regions] if args.regions else None
    fovs = [binary_mask(read_image(p)) for p in args.fovs] if args.fovs else None
    from .models.backbones import UNetBackbone
    from .models.session import unet_path

    refiner = LearnedRefiner(args.init)  # None: the shipped weights
    # a U-Net fine-tuned with the refiner lies beside it as NAME_unet.pt
    companion = unet_path(args.init) if args.init else None
    backbone = UNetBackbone(companion if companion and companion.is_file() else None, device="auto")
    cfg = FinetuneConfig(**_given(updates=args.updates, lr=args.lr, loss=args.loss, batch=args.batch,
                                  crop=args.crop, seed=args.seed), tune_backbone=args.tune_backbone)
    bar = tqdm(total=cfg.updates, desc="finetune", unit="update", file=sys.stderr, mininterval=1)

    def on_update(i, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")

    res = finetune(images, labels, regions, fovs=fovs, refiner=refiner, backbone=backbone, cfg=cfg,
                   on_update=on_update)
    bar.close()
    res.refiner.save(args.out)
    if res.backbone is not None:
        res.backbone.save(unet_path(args.out))
        print(f"wrote the fine-tuned U-Net to {unet_path(args.out)}")
    print(f"fine-tuned {refiner.weights.name} on {len(images)} image(s), {cfg.updates} updates, "
          f"{cfg.loss} loss, in {res.record['seconds_total']:.0f} s; wrote {args.out}")
    print(f"{'':8s} {'Dice':>7s} {'clDice':>7s} {'VCA':>7s}   (inside the regions)")
    for name, m in (("before", res.before), ("after", res.after)):
        print(f"{name:8s} {m['dice']:7.4f} {m['cldice']:7.4f} {m['vca']:7.3f}")
    return 0


def _gui(args) -> int:
    try:
        import napari
    except ImportError:
        raise SystemExit("tubediff: error: the GUI needs napari and a Qt binding: "
                         "pip install 'napari-tubediff[all]'") from None
    viewer = napari.Viewer(title="napari-tubediff")
    if not args.no_sample:
        viewer.open_sample("napari-tubediff", "synthetic")
    viewer.window.add_plugin_dock_widget("napari-tubediff", "Diffusion")
    if args.screenshot:
        from qtpy.QtWidgets import QApplication

        for _ in range(20):
            QApplication.processEvents()
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0


def _bench(args) -> int:
    from .bench import run

    backends = args.backends.split(",")
    cases = args.cases.split(",")
    print(f"ms per RK4 step (order 8, float32); min {args.min_time:g} s per measurement"
          + ("; torch matmul loop running in a thread" if args.load else ""))
    res = run(cases, backends, min_time=args.min_time, load=args.load, data=args.data)
    print("  ".join(f"{k}: {v}" for k, v in res["info"].items()))
    if args.json:
        from .data.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=2))
    return 0


def _scale_fov_options(parser, when: str = "") -> None:
    parser.add_argument("--scale", default="auto", metavar="auto|FACTOR",
                        help="resample images by FACTOR to the U-Net's working scale" + when + "; auto "
                             "(default): from the field of view's diameter (fundus photographs) or the "
                             "vessel width")
    parser.add_argument("--fov", default="auto", metavar="auto|none|FILE",
                        help="field of view" + when + ": auto (default: found in fundus photographs), "
                             "none, or a mask file (> 127 inside)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tubediff",
        description="Refine vessel segmentations by anisotropic diffusion (the napari-tubediff engine, "
                    "headless).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="refine the synthetic sample headlessly and report what changed",
                       description="Generate the synthetic vessel sample (breaks cut into its probability "
                                   "field), estimate Hessian directions, run the diffusion, and print "
                                   "components, gap pixels filled and Dice before and after.")
    d.add_argument("--out", help="folder to write PNGs and summary.json into")
    d.add_argument("--size", type=int, default=256)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--breaks", type=int, default=8)
    d.add_argument("--sigma", type=float, default=3.0, help="Hessian scale for the directions")
    d.add_argument("--lambda-par", type=float, default=1.0)
    d.add_argument("--lambda-perp", type=float, default=0.02)
    d.add_argument("--dt", type=float, default=0.25)
    d.add_argument("--steps", type=int, default=30)
    d.set_defaults(func=_demo)

    e = sub.add_parser("evaluate", help="score methods on a DRIVE-layout dataset (Dice, clDice, VCA, Betti)",
                       description="Score every image of a DRIVE-layout folder with each method (raw "
                                   "threshold, dual-threshold iteration, diffusion refinement) against "
                                   "the 1st observer, plus the 2nd observer as the human ceiling.")
    e.add_argument("--data", help="folder with training/ and test/ in DRIVE layout")
    e.add_argument("--synthetic3d", type=int, metavar="N",
                   help="score N held-out synthetic volumes instead (default backbone: unet3d)")
    e.add_argument("--split", default="test", choices=["test", "training", "train"])
    src = e.add_mutually_exclusive_group()
    src.add_argument("--backbone", help="segment with this backbone (e.g. vesselness)")
    src.add_argument("--pred", help="folder of probability maps named after the images (PNG or TIF)")
    e.add_argument("--backbone-weights", help="U-Net weights instead of the shipped ones (e.g. NAME_unet.pt)")
    e.add_argument("--methods", default="raw,dti,refine",
                   help="comma list of raw,dti,refine,hessian (hessian: refine with Hessian directions "
                        "whatever --refiner)")
    e.add_argument("--steps", type=int, default=10, help="RK4 steps of the refinement")
    e.add_argument("--refiner", default="auto",
                   help="learned refiner weights, 'shipped', or 'hessian' for classical directions "
                        "(default: shipped with --backbone unet, else hessian)")
    e.add_argument("--fov", action="store_true", help="Dice, clDice and Betti errors inside the FOV mask")
    e.add_argument("--save-pred", help="write every scored mask to DIR/METHOD/IMAGE.png")
    e.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    e.add_argument("--json", help="write per-image and mean figures to this JSON file")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    e.set_defaults(func=_evaluate)

    t = sub.add_parser("train", help="train the backbone or the refiner (DRIVE data or synthetic volumes)",
                       description="Train on the training split of a DRIVE-layout folder (2D), or on "
                                   "synthetic volumes (3D, --synthetic3d), and write an atomic checkpoint. "
                                   "Options left out take the model's defaults (the shipped models' "
                                   "settings, docs/models.md).")
    t.add_argument("what", choices=["backbone", "refiner"])
    t.add_argument("--data", help="folder with training/ in DRIVE layout")
    t.add_argument("--synthetic3d", type=int, metavar="N",
                   help="train the 3D model on N synthetic volumes instead (the refiner on the shipped 3D "
                        "U-Net unless --backbone-weights)")
    t.add_argument("--out", required=True, help="checkpoint file to write")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=None, help="initial learning rate")
    t.add_argument("--batch", type=int, default=None)
    t.add_argument("--loss", default=None, choices=["bce", "dice", "cldice"], help="default: bce")
    t.add_argument("--device", default="auto", help="cpu, cuda or auto")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    tb = t.add_argument_group("backbone")
    tb.add_argument("--iters", type=int, default=None, help="default: 2000 (3D: 800)")
    tb.add_argument("--base", type=int, default=None, help="default: 16 (3D: 8)")
    tb.add_argument("--depth", type=int, default=None, help="default: 3 (3D: 2)")
    tb.add_argument("--patch", type=int, default=None, help="default: 48 (3D: 32)")
    tr = t.add_argument_group("refiner")
    tr.add_argument("--backbone-weights", help="U-Net checkpoint (default: the shipped one)")
    tr.add_argument("--kernel", type=int, default=None,
                    help="direction head kernel size (1..13; default 9, 3D 5)")
    tr.add_argument("--steps", type=int, default=None, help="RK4 steps unrolled in training (default 10)")
    tr.add_argument("--dt", type=float, default=None, help="default: 0.2")
    tr.add_argument("--crop", type=int, default=None, help="default: 256 (3D: 32)")
    tr.add_argument("--updates", type=int, default=None, help="default: 200 (3D: 150)")
    tr.add_argument("--alpha", type=float, default=None, help="soft-clDice weight with --loss cldice")
    t.set_defaults(func=_train)

    sg = sub.add_parser("segment", help="probability maps for your own images",
                        description="Segment images with a backbone; writes NAME_prob.tif (float32) and "
                                    "NAME_prob.png. RGB images use their green channel.")
    sg.add_argument("images", nargs="+")
    sg.add_argument("--out", required=True)
    sg.add_argument("--backbone", default="unet")
    sg.add_argument("--weights", help="U-Net checkpoint instead of the shipped one")
    _scale_fov_options(sg)
    sg.set_defaults(func=_segment)

    rf = sub.add_parser("refine", help="refine probability maps (or images) by the diffusion",
                        description="Refine probability maps with Hessian directions (--input prob), or "
                                    "segment images with the U-Net and refine with the learned refiner "
                                    "(--input image). Writes NAME_refined.tif and NAME_mask.png. Given a "
                                    "folder, refines every image in it on a dask.distributed cluster, "
                                    "skipping images already done (docs/batch.md).")
    rf.add_argument("paths", nargs="+", help="image files, or one folder")
    rf.add_argument("--out", required=True)
    rf.add_argument("--input", choices=["prob", "image"], default="prob")
    rf.add_argument("--steps", type=int, default=10)
    rf.add_argument("--refiner", default="auto", help="with --input image: weights, 'shipped' or 'hessian'")
    rf.add_argument("--device", default="auto",
                    help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or cuda:N")
    rb = rf.add_argument_group("folders (dask.distributed)")
    rb.add_argument("--scheduler", metavar="ADDRESS",
                    help="address of a running dask scheduler (default: start a local cluster)")
    rb.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster")
    rb.add_argument("--chunk", type=int, default=256, metavar="N",
                    help="refine images with more than N^3 voxels in blocks of about N^3 with exact "
                         "halos (0: never)")
    rb.add_argument("--volume-backbone", default="vesselness",
                    help="with --input image: backbone for 3D volumes (the U-Net is 2D)")
    _scale_fov_options(rf, " (with --input image)")
    rf.set_defaults(func=_refine)

    ft = sub.add_parser("finetune", help="fine-tune the refiner on your corrected labels",
                        description="Fine-tune the refiner's direction head and lambdas on images and "
                                    "their corrected labels (optionally only inside region masks); prints "
                                    "Dice, clDice and VCA in the regions before and after.")
    ft.add_argument("--images", nargs="+", required=True)
    ft.add_argument("--labels", nargs="+", required=True, help="one corrected mask per image (> 127 vessel)")
    ft.add_argument("--regions", nargs="+", help="one mask per image: where the labels are trusted")
    ft.add_argument("--fovs", nargs="+", help="one field-of-view mask per image (fundus photographs)")
    ft.add_argument("--init", help="refiner weights to start from (default: the shipped ones)")
    ft.add_argument("--out", required=True, help="refiner weights to write")
    ft.add_argument("--updates", type=int, default=None)
    ft.add_argument("--lr", type=float, default=None)
    ft.add_argument("--loss", choices=["bce", "dice", "cldice"], default=None)
    ft.add_argument("--batch", type=int, default=None)
    ft.add_argument("--crop", type=int, default=None)
    ft.add_argument("--seed", type=int, default=None)
    ft.add_argument("--tune-backbone", action="store_true",
                    help="also train the U-Net's last layers; writes OUT_unet.pt beside OUT")
    ft.set_defaults(func=_finetune)

    g = sub.add_parser("gui", help="open napari with the plugin docked and its sample data",
                       description="Open napari with the Diffusion panel docked on the synthetic sample.")
    g.add_argument("--no-sample", action="store_true", help="do not open the sample data")
    g.add_argument("--screenshot", help=argparse.SUPPRESS)
    g.set_defaults(func=_gui)

    b = sub.add_parser("bench", help="time RK4 steps: fused kernel against plain numpy",
                       description="Milliseconds per RK4 step of the fast kernel and of the plain "
                                   "vectorised numpy reference, on a DRIVE-sized image, 1024^2 and 128^3.")
    b.add_argument("--cases", default="drive,1k,cube128", help="comma list of drive,1k,cube128,cube256")
    b.add_argument("--backends", default="numba,numpy",
                   help="comma list of numba,numpy,torch (CPU) and cuda (the torch path on the GPU); "
                        "on a GPU machine: --cases drive,cube256 --backends numba,cuda")
    b.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    b.add_argument("--load", action="store_true", help="run a torch matmul loop beside the timing")
    b.add_argument("--data", default="random", choices=["random", "vessels"],
                   help="a random field, or a synthetic vessel tree's probability and Hessian directions")
    b.add_argument("--json", help="write the figures to this JSON file")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"tubediff: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
