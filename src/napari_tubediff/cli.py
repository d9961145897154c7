"""The ``tubediff`` command: the plugin's engine without a display.

Subcommands call the same core functions as the napari widgets. Errors in the
user's input end in one readable line (``tubediff: error: ...``) and exit code 2,
never a traceback; Ctrl-C ends in one line and exit code 130.

Every command that writes files plans them all before any work (`data.outputs`):
no output over an input, no two inputs writing the same output, no existing file
that tubediff did not write for the same input unless ``--overwrite``, and the
output folder writable (docs/files.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__


def _demo(args) -> int:
    from .core.metrics import count_components, dice
    from .core.refine import refine
    from .data.io import write_image
    from .data.synthetic import synthetic_vessels

    if args.out:  # before any work: nothing of the user's is replaced, the folder is writable
        from .data.outputs import Output, make_record, plan_outputs

        record = make_record("demo", None, {k: v for k, v in vars(args).items()
                                            if k not in ("func", "out", "overwrite", "command")})
        names = ("image", "probability", "refined", "truth", "refined_mask")
        plan_outputs([Output(Path(args.out) / f"{n}.png", None, record) for n in names]
                     + [Output(Path(args.out) / "summary.json", None, record)], overwrite=args.overwrite)
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
    files = {"image": s.image, "probability": s.probability, "refined": refined, "truth": s.truth,
             "refined_mask": refined > 0.5}
    if args.out:
        from .data.io import atomic_write_text

        out = Path(args.out)
        atomic_write_text(out / "summary.json", json.dumps({"tubediff": record, "rows": rows}, indent=2))
        for name, data in files.items():
            write_image(out / f"{name}.png", data, record=record)
        print(f"wrote image, probability, refined, refined_mask, truth (PNG) and summary.json to {out}")
    return 0


def _check_new_file(path, inputs, overwrite: bool, what: str) -> None:
    """Refuse, before any work, to write ``what`` over an input or an existing file."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {p} is a folder: give a file name")
    resolved = p.resolve()
    if any(Path(i).resolve() == resolved for i in inputs):
        raise ValueError(f"{what} {p} is one of the inputs: give another file name")
    if p.exists() and not overwrite:
        raise ValueError(f"{what} {p} exists: give another name or pass --overwrite")
    parent = p.parent if str(p.parent) else Path(".")
    while not parent.exists():
        parent = parent.parent
    import os

    if not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {p}: cannot write in {parent}")


def _evaluate_items(args):
    """The images to score and a phrase that says what they are (``--data``, ``--images``
    with ``--labels`` or ``--synthetic3d``), the FOV choice applied."""
    from .data.drive import auto_fov_function, index_folder, pair_folders, read_drive

    given = [n for n, v in (("--data", args.data), ("--images", args.images),
                            ("--synthetic3d", args.synthetic3d)) if v is not None]
    if len(given) != 1:
        raise ValueError("give one of --data DIR (a DRIVE-layout folder), --images DIR --labels DIR, "
                         "or --synthetic3d N (volumes)")
    if args.images is None and (args.labels or args.labels2):
        raise ValueError("--labels and --labels2 go with --images DIR")
    fov = args.fov
    if args.synthetic3d is not None:
        # held-out synthetic volumes (faded gaps; never trained on), scored by the 3D U-Net
        from .training.synthetic3d import SHAPE, TEST_SEED, held_out_volumes

        if args.synthetic3d < 1:
            raise ValueError(f"--synthetic3d needs at least 1 volume, got {args.synthetic3d}")
        if fov not in (None, "data", "none"):
            raise ValueError("--fov DIR or auto goes with --data or --images (synthetic volumes have none)")
        if args.pred is None and args.backbone is None:
            args.backbone = "unet3d"
        items = held_out_volumes(args.synthetic3d)
        return items, (f"{len(items)} synthetic volumes {SHAPE} (seeds {TEST_SEED}.."
                       f"{TEST_SEED + len(items) - 1}, gaps faded)"), fov == "data"
    if args.images is not None:
        if not args.labels:
            raise ValueError("--images needs --labels DIR (the ground truth, paired by name)")
        if fov == "data":
            raise ValueError("--fov without a folder needs --data; with --images give --fov DIR, auto "
                             "or none")
        items = pair_folders(args.images, args.labels, args.labels2,
                             None if fov in (None, "none") else fov)
        what = f"{len(items)} images of {args.images} against {args.labels}"
    else:
        items = read_drive(args.data, args.split)
        what = f"{len(items)} images of {args.data} ({args.split})"
        if fov not in (None, "data"):
            # another FOV than the dataset's own masks: automatic, none, or a folder of masks
            if fov == "auto":
                auto_fov_function()  # not there: say so before any work
            masks = index_folder(fov, "--fov", tags=True) if fov not in ("auto", "none") else {}
            for it in items:
                if fov not in ("auto", "none") and it.name not in masks:
                    raise ValueError(f"--fov: no mask for {it.name} in {fov}")
                it.fov_path, it.fov_auto = masks.get(it.name), fov == "auto"
    if fov not in (None, "none", "data"):
        what += f"; FOV: {'automatic' if fov == 'auto' else fov}"
    return items, what, fov not in (None, "none")


def _evaluate(args) -> int:
    from tqdm import tqdm

    from .core.checks import check_steps
    from .data.drive import index_folder
    from .data.io import atomic_write_text
    from .evaluation import evaluate_dataset, format_table, make_methods, read_prediction

    items, what, use_fov = _evaluate_items(args)
    if (args.backbone is None) == (args.pred is None):
        raise ValueError("give either --backbone NAME or --pred DIR")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.steps is not None:
        check_steps(args.steps, "--steps")
    if args.limit:
        items = items[: args.limit]
        what = f"the first {len(items)} of " + what
    names = args.methods.split(",")
    make_methods(names)  # an unknown method: say so before any work
    pred_index = None
    if args.pred:
        pred_dir = Path(args.pred)
        if not pred_dir.is_dir():
            raise ValueError(f"--pred: no such folder {pred_dir}")
        pred_index = index_folder(pred_dir, "--pred", tags=True, prefer_tiff=True)
        source = f"predictions in {pred_dir}"
    # the outputs: never over an input or an existing file, checked before any work
    inputs = [p for it in items for p in (getattr(it, "image_path", None), getattr(it, "manual1_path", None),
                                          getattr(it, "manual2_path", None), getattr(it, "fov_path", None))
              if p is not None] + list((pred_index or {}).values())
    from .data.io import check_same_size

    for it in items:  # a label of another size: said from the headers, before any image is segmented
        if getattr(it, "image_path", None) is not None:
            check_same_size(it.image_path, [it.manual1_path, it.manual2_path, it.fov_path])
    if args.json:
        _check_new_file(args.json, inputs, args.overwrite, "--json")
    if args.save_pred:
        for m in names:
            for it in items:
                _check_new_file(Path(args.save_pred) / m / f"{it.name}.png", inputs, args.overwrite,
                                "--save-pred")
    if args.pred:
        def predict(item, fov):
            return read_prediction(pred_dir, item, pred_index), None
    else:
        from .models import get_backbone

        options = {"weights": args.backbone_weights} if args.backbone_weights else {}
        backbone = get_backbone(args.backbone, polarity=args.polarity, **options)
        from .models.backbones import segment_image

        source = f"backbone {args.backbone}"

        def predict(item, fov):
            seg = segment_image(backbone, item.image(), fov=fov)  # the CLI's and the panel's path
            return seg.prob, seg.features

    from .batch.run import BatchOptions
    from .models.refiner import refiner_for

    # "refine" is what `tubediff refine --input image` does with the same --refiner and --steps
    # (one rule, `BatchOptions`): by default the recommended method with Hessian directions at
    # its measured steps; the learned refiner, when named, at the steps it was trained with.
    opts = BatchOptions(input="image", steps=args.steps, method=None, refiner=args.refiner)
    settings = opts.settings(2)
    refiner = refiner_for(opts.refiner_choice(), args.backbone) if "refine" in names else None
    steps = args.steps
    if steps is None:  # the settings' steps, or those the learned refiner was trained with
        steps = settings.steps if refiner is None else refiner.config["steps"]
    if "refine" in names:
        source += ("; refine: " + (f"learned refiner {refiner.weights.name}" if refiner
                                   else f"{settings.method}, Hessian directions") + f", {steps} steps")
    _set_threads(args.threads)
    methods = make_methods(names, steps=steps, settings=settings, refiner=refiner)
    results = evaluate_dataset(
        items, predict, methods, use_fov=use_fov, save_pred=args.save_pred, gaps=args.gaps,
        progress=lambda xs: tqdm(xs, desc="evaluate", unit="image", file=sys.stderr))
    labels = {"raw": "raw (u >= 0.5)", "dti": "DTI (0.5 / 0.3)",
              "refine": f"refine ({steps} steps)", "human": "human (2nd vs 1st observer)",
              "hessian": f"refine, Hessian dirs ({steps} steps)"}
    print(f"{what}; {source}; Dice, clDice and Betti "
          + ("inside the FOV" if use_fov else "on the whole image") + "; VCA on the whole image")
    print(format_table(results, labels))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


def _set_threads(n: int) -> None:
    """``--threads``: 0 keeps torch's default; negative is refused (torch would raise a RuntimeError)."""
    if n < 0:
        raise ValueError(f"--threads must be 0 (torch's default) or more, got {n}")
    if n:
        import torch

        torch.set_num_threads(n)


def _given(**kwargs) -> dict:
    """The options the user set (None means: the model's own default)."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _train(args) -> int:
    from tqdm import tqdm

    from .core.device import resolve_device

    _set_threads(args.threads)
    device = resolve_device(args.device)
    if (args.data is None) == (args.synthetic3d is None):
        raise ValueError("give either --data DIR (a DRIVE-layout folder) or --synthetic3d N (volumes)")
    _check_weights_out(args.out, [args.backbone_weights], args.overwrite, data=args.data)

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
                                                  seed=args.seed, checkpoint=args.checkpoint)})
        weights = args.backbone_weights or (SHIPPED_UNET3D if args.synthetic3d is not None else None)
        rec = train_refiner(args.data, args.out, cfg, backbone_weights=weights, device=device,
                            progress=bar, **extra)
    print(f"trained {args.what} in {rec['seconds']:.0f} s on {device}; final loss "
          f"{rec['final_loss']:.4f}; wrote {args.out}")
    return 0


def _check_weights_out(out, inputs, overwrite: bool, data=None, companion: bool = False) -> None:
    """Before training: ``out`` (and ``OUT_unet.pt`` with ``companion``) may be written.

    Refused: an input (weights given, a file of the ``data`` folder), an existing file
    unless ``overwrite``, a folder, an unwritable place.
    """
    from .data.outputs import Output, plan_outputs
    from .models.session import unet_path

    out = Path(out)
    outs = [Output(out)] + ([Output(unet_path(out))] if companion else [])
    inputs = [Path(p) for p in inputs if p]
    inputs += [unet_path(p) for p in inputs]  # a refiner's companion U-Net is read too
    if data is not None:  # the training images and labels
        root = Path(data).resolve()
        inputs += [o.path for o in outs if o.path.exists() and o.path.resolve().is_relative_to(root)]
    plan_outputs(outs, inputs, overwrite=overwrite)


def _backbone_choice(args) -> tuple[str, dict]:
    """The backbone name and its arguments from --backbone, --backbone-file and --weights."""
    from .models.registry import NEEDS_FILE, backbone_for_file

    if args.backbone_file:
        name = args.backbone or backbone_for_file(args.backbone_file)
        if name not in NEEDS_FILE:
            raise ValueError(f"--backbone-file goes with --backbone {' or '.join(NEEDS_FILE)} (or no "
                             f"--backbone), not {name}")
        kwargs = {"path": args.backbone_file}
    else:
        name = args.backbone or "unet"
        if name in NEEDS_FILE:
            raise ValueError(f"--backbone {name} needs your model file: --backbone-file PATH")
        kwargs = {}
    if args.weights:
        if name not in ("unet", "unet3d"):
            raise ValueError(f"--weights is for the U-Nets (unet, unet3d), not {name}")
        kwargs["weights"] = args.weights
    return name, kwargs


def _say_replaced(check) -> None:
    """One note, before any work, naming the existing files a run will replace: tubediff's own
    earlier outputs of the same inputs (replaced without --overwrite: docs/files.md) and, with
    --overwrite, other files in the way. ``check``: the run's `data.outputs.OutputPlan`."""
    def names(ps):
        return ", ".join(p.name for p in ps[:4]) + (f" and {len(ps) - 4} more" if len(ps) > 4 else "")

    own = [p for p, st in check.state.items() if st in ("current", "stale")]
    other = [p for p, st in check.state.items() if st == "replace"]
    if not own and not other:
        return
    whys = sorted({check.why[p] for p in own if p in check.why})
    parts = []
    if own:
        parts.append(f"{names(own)}: tubediff's own, of the same input"
                     + (f", made with other settings ({'; '.join(whys)})" if whys else " and settings"))
    if other:
        parts.append(f"{names(other)}: not made by tubediff from this input, replaced as --overwrite asks")
    print(f"tubediff: note: replacing in {(own or other)[0].parent}: {'; '.join(parts)}", file=sys.stderr)


def _existing_files(paths) -> list[Path]:
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise ValueError(f"no such file: {p}" if not p.exists() else f"not a file: {p}")
    return paths


def _check_slabs(paths) -> None:
    """Refuse, before any work, a TIFF of 2 to 4 planes (`core.checks.check_planes`)."""
    from .core.checks import check_planes
    from .data.outputs import image_shape

    for p in paths:
        shape = image_shape(p)
        if shape is not None:
            check_planes(shape, Path(p).name)


def _prob_suffixes(path) -> tuple[str, ...]:
    # a 2D image (grey or RGB) gets a float32 TIFF and an 8-bit PNG; a volume only the TIFF
    from .data.outputs import image_shape

    shape = image_shape(path)
    volume = shape is not None and (len(shape) > 3 or (len(shape) == 3 and shape[-1] not in (3, 4)))
    return (".tif",) if volume else (".tif", ".png")


def _segment(args) -> int:
    from tqdm import tqdm

    from .core.scale import parse_scale
    from .data.io import choose_spacing, parse_spacing, read_image, spacing_text, write_image
    from .data.outputs import Output, make_record, output_path, plan_outputs
    from .models import get_backbone
    from .models.backbones import segment_image
    from .models.registry import DEFAULT_3D

    name, kwargs = _backbone_choice(args)
    auto_3d = not (args.backbone or args.backbone_file or args.weights)
    out = Path(args.out)
    paths = _existing_files(args.images)
    _check_slabs(paths)
    model = kwargs.get("weights") or kwargs.get("path")
    scale, fov = parse_scale(args.scale), _fov_option(args.fov)
    given_spacing = parse_spacing(args.spacing)
    settings = {"backbone": name, "weights": str(Path(model).resolve()) if model else None,
                "polarity": args.polarity, "scale": args.scale, "fov": args.fov}
    if args.spacing:  # recorded only when given (files made before --spacing existed stay current)
        settings["spacing"] = args.spacing
    suffixes = {p: _prob_suffixes(p) for p in paths}
    # no backbone named: volumes go to the 3D default (the 2D U-Net takes 2D images only)
    names = {p: DEFAULT_3D if auto_3d and ".png" not in suffixes[p] else name for p in paths}
    records = {p: make_record("segment", p, {**settings, "backbone": names[p]}) for p in paths}
    fov_file = [] if args.fov.lower() in ("auto", "none") else [args.fov]
    plan = plan_outputs([Output(output_path(p, out, "prob", sfx), p, records[p])
                         for p in paths for sfx in suffixes[p]],
                        [*paths, *([model] if model else []), *fov_file], overwrite=args.overwrite)
    backbones = {n: get_backbone(n, polarity=args.polarity, **kwargs if n == name else {})
                 for n in dict.fromkeys(names.values())}
    print(f"backbone {' / '.join(backbones)}; RGB images use their green channel; vessel polarity "
          f"{args.polarity}; scale {args.scale}; field of view {args.fov}")
    _say_replaced(plan)
    plan.make_folders()
    chosen = []
    for path in tqdm(paths, desc="segment", unit="image", file=sys.stderr):
        backbone = backbones[names[path]]
        image = read_image(path)
        # a volume (no PNG planned for it: `_prob_suffixes`) gets its spacing; 2D images need none
        spacing, how = choose_spacing(path, 3, given_spacing) if ".png" not in suffixes[path] else (None, "")
        try:
            seg = segment_image(backbone, image, scale=scale, fov=fov, spacing=spacing)
        except ValueError as e:  # which of the files it is
            raise ValueError(f"{path.name}: {e}") from None
        chosen.append(getattr(backbone, "last_polarity", args.polarity))
        found = ("given" if isinstance(fov, np.ndarray) else "none" if fov == "none"
                 else "found" if seg.fov is not None else "none found (not a fundus photograph)")
        size = (f"scale {seg.factor:.3g} ({seg.how})" if seg.radius is None else
                f"{names[path]}, vessel radius {seg.radius:.3g} "
                f"{'voxels' if spacing is None else 'units of the spacing'} "
                f"({seg.how}; --scale R to set it); "
                f"voxel spacing {spacing_text(spacing)} ({how})")
        tqdm.write(f"{path.name}: {size}; field of view {found}", file=sys.stderr)
        for sfx in suffixes[path]:
            if sfx == ".png" and seg.prob.ndim != 2:
                continue  # the header promised a 2D image; a PNG cannot hold a volume
            write_image(output_path(path, out, "prob", sfx), seg.prob, record=records[path], spacing=spacing)
    polar = ", ".join(f"{chosen.count(p)} {p}" for p in ("dark", "bright") if p in chosen)
    print(f"wrote {len(paths)} probability map(s) NAME_prob.tif (float32) and, for 2D images, "
          f"NAME_prob.png (8-bit) to {out}; vessels taken as {polar or args.polarity}")
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
    from .data.io import parse_spacing

    steps = args.steps  # None: the default of each file's dimension (`BatchOptions.settings`)
    diameter = args.fov_diameter
    if diameter is not None:
        if args.input != "prob":
            raise ValueError("--fov-diameter is for --input prob; with --input image the FOV is found "
                             "(or given by --fov)")
        if not (np.isfinite(diameter) and diameter > 0):
            raise ValueError(f"--fov-diameter must be a positive number of pixels, got {diameter:g}")
    return BatchOptions(input=args.input, steps=steps, refiner=args.refiner, method=args.method,
                        volume_backbone=args.volume_backbone, chunk=args.chunk or None, device=args.device,
                        scale=parse_scale(args.scale), fov=args.fov, spacing=parse_spacing(args.spacing),
                        fov_diameter=diameter)


def planes_note(folder) -> str | None:
    """A note when ``folder`` looks like one z-stack saved plane by plane (grey 2D images of
    one size, named alike but for a number: ``z000.tif``, ``z001.tif``...), which a folder
    run refines as separate 2D images; None otherwise (a batch of photographs, volumes).

    Examples
    --------
    >>> import tempfile, numpy as np, tifffile
    >>> d = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     tifffile.imwrite(f"{d}/z{i:03d}.tif", np.zeros((8, 8), np.uint16))
    >>> "3 grey planes of one size (8, 8) numbered like a z-stack (z000.tif ... z002.tif)" in planes_note(d)
    True
    """
    import re

    from .batch.run import list_images
    from .data.outputs import image_shape

    files = list_images(folder)
    if len(files) < 2 or len({re.sub(r"\d+", "#", f.stem) for f in files}) != 1:
        return None
    shapes = {image_shape(f) for f in files}
    if len(shapes) != 1 or None in shapes or len(next(iter(shapes))) != 2:
        return None
    return (f"note: {folder} holds {len(files)} grey planes of one size {next(iter(shapes))} numbered like a "
            f"z-stack ({files[0].name} ... {files[-1].name}): each is refined as its own 2D image; to refine "
            "them as one volume, stack them into one TIFF first, e.g. python -c \"import glob, tifffile; "
            "tifffile.imwrite('stack.tif', tifffile.imread(sorted(glob.glob("
            f"'{folder}/*{files[0].suffix}'))))\"")


def _refine_folder(args) -> int:
    from .batch.run import make_client, refine_folder

    note = planes_note(args.paths[0]) if args.input == "image" else None
    if note:
        print(note, file=sys.stderr)
    client = make_client(args.scheduler, args.workers) if args.scheduler else None
    try:
        report = refine_folder(args.paths[0], args.out, client=client, options=_batch_options(args),
                               workers=args.workers, overwrite=args.overwrite)
    finally:
        if client is not None:
            client.close()
    print(report.summary())
    return 0 if report.ok else 1


def _refine(args) -> int:
    from tqdm import tqdm

    from .batch.run import plan_refine, process_image

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
    paths = _existing_files(args.paths)
    if args.input == "image":
        _check_slabs(paths)
    plan = plan_refine(paths, args.out, opts, overwrite=args.overwrite, blocks=False)  # before any work
    _say_replaced(plan.check)
    plan.check.make_folders()
    from .data.io import choose_spacing, spacing_text
    from .data.outputs import image_shape

    for path in tqdm(paths, desc="refine", unit="image", file=sys.stderr):
        shape = image_shape(path)
        if shape is not None and len(shape) == 3 and shape[-1] not in (3, 4):
            sp, found = choose_spacing(path, 3, opts.spacing)  # the spacing process_image takes
            tqdm.write(f"{path.name}: voxel spacing {spacing_text(sp)} ({found})", file=sys.stderr)
        process_image(path, args.out, opts, plan.records[path], plan.outputs[path])
    learned = args.input == "image" and opts.refiner_choice() != "hessian"
    how = ("a backbone + " + ("the learned refiner" if learned else "Hessian directions")
           if args.input == "image" else "Hessian directions of the probability maps")
    if learned:
        steps = "the steps it was trained with" if opts.steps is None else f"{opts.steps} steps"
    else:  # what each dimension got (`BatchOptions.settings`): volumes default to none
        im, vol = opts.settings(2), opts.settings(3)
        steps = (f"images {im.steps} steps of {im.method}, volumes "
                 + (f"{vol.steps} steps of {vol.method}" if vol.steps else "no refinement (the backbone's)"))
    print(f"refined {len(paths)} file(s) with {how}, {steps}; wrote NAME_refined.tif "
          f"(float32) and NAME_mask.png (2D) or NAME_mask.tif (3D), >= 0.5, to {args.out}")
    return 0


def _finetune(args) -> int:
    from tqdm import tqdm

    from .core.metrics import to_mask
    from .core.scale import parse_scale
    from .data.drive import binary_mask
    from .data.io import read_image
    from .models.refiner import SHIPPED_REFINERS
    from .training.finetune import FinetuneConfig, default_pair, finetune, spatial_ndim

    parse_scale(args.scale)  # a bad --scale is refused before any work
    if len(args.labels) != len(args.images):
        raise ValueError(f"--labels must name one file per image ({len(args.images)} images, "
                         f"{len(args.labels)} labels)")
    for opt in ("regions", "fovs"):
        if getattr(args, opt) and len(getattr(args, opt)) != len(args.images):
            raise ValueError(f"--{opt} must name one mask per image")
    _check_weights_out(args.out, [*args.images, *args.labels, *(args.regions or []), *(args.fovs or []),
                                  args.init], args.overwrite, companion=args.tune_backbone)
    images = [read_image(p) for p in args.images]
    labels = [read_image(p) for p in args.labels]  # 0/1, 0/255 or label ids: finetune decides
    # a volume's mask keeps its shape (binary_mask would read a (D, H, 3) volume as RGB)
    ndim = spatial_ndim(images)
    mask = binary_mask if ndim == 2 else to_mask
    regions = [mask(read_image(p)) for p in args.regions] if args.regions else None
    fovs = [mask(read_image(p)) for p in args.fovs] if args.fovs else None
    from .models.session import unet_path

    # None: the shipped weights of the images' dimension (volumes: the 3D U-Net + 3D refiner);
    # a U-Net fine-tuned with the refiner lies beside it as NAME_unet.pt
    companion = unet_path(args.init) if args.init else None
    refiner, backbone = default_pair(ndim, args.init or SHIPPED_REFINERS[ndim],
                                     companion if companion and companion.is_file() else None)
    crop = {"crop" if ndim == 2 else "crop3d": args.crop}
    cfg = FinetuneConfig(**_given(updates=args.updates, lr=args.lr, loss=args.loss, batch=args.batch,
                                  seed=args.seed, **crop), tune_backbone=args.tune_backbone)
    bar = tqdm(total=cfg.updates, desc="finetune", unit="update", file=sys.stderr, mininterval=1)

    def on_update(i, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")

    res = finetune(images, labels, regions, fovs=fovs, scale=args.scale, refiner=refiner, backbone=backbone,
                   cfg=cfg, on_update=on_update)
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
    # the whole loop in one dock, step by step (the separate panels are under Plugins)
    viewer.window.add_plugin_dock_widget("napari-tubediff", "Curate vessels")
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
    record = None
    if args.json:
        from .data.outputs import Output, make_record, plan_outputs

        record = make_record("bench", None, {})
        plan_outputs([Output(Path(args.json), None, record)], overwrite=args.overwrite)
    res = run(cases, backends, min_time=args.min_time, load=args.load, data=args.data)
    print("  ".join(f"{k}: {v}" for k, v in res["info"].items()))
    if args.json:
        from .data.io import atomic_write_text

        atomic_write_text(args.json, json.dumps({**res, "tubediff": record}, indent=2))
    return 0


def _measure(args) -> int:
    """Skeleton-graph measurements of a mask, as a CSV branch table (core.measure)."""
    from .core.measure import measure_vessels
    from .data.io import atomic_write_text, read_image, to_probability
    from .data.outputs import Output, plan_outputs

    src = Path(args.mask)
    if args.spacing is not None:  # "2,1,1" as segment and refine take it, or "2 1 1"
        from .data.io import parse_spacing

        args.spacing = parse_spacing(",".join(args.spacing))
    a = read_image(src)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        if not ((a[..., 1] == a[..., 0]).all() and (a[..., 2] == a[..., 0]).all()):
            raise ValueError(f"{src} is a colour image: give a vessel mask (one channel)")
        a = a[..., 0]  # a grey mask stored as RGB
    if args.spacing is not None and len(args.spacing) not in (1, a.ndim):
        raise ValueError(f"--spacing needs 1 or {a.ndim} numbers for {src} {a.shape}, "
                         f"got {len(args.spacing)}")
    plan_outputs([Output(Path(args.out), src, None)], [src], overwrite=args.overwrite)
    mask = to_probability(a, src.name) >= args.threshold
    from .data.io import choose_spacing, spacing_text

    spacing, found = choose_spacing(src, a.ndim, args.spacing)  # lengths in the file's unit (um) if known
    res = measure_vessels(mask, spacing=spacing)
    atomic_write_text(args.out, res.branches.to_csv(index=False))
    s = res.summary()
    print(f"{src.name}: {s['branches']} branches, {s['branch_points']} branch points, {s['end_points']} "
          f"end points, total length {s['total_length']:g} (spacing {spacing_text(spacing)}, {found}) "
          f"-> {args.out}")
    return 0


def _curate(args) -> int:
    """Open napari on a folder's review queue (data.queue) with the Curate tools panel."""
    from .data.queue import CurationQueue

    queue = CurationQueue(args.folder)  # a bad folder: one line, before napari starts
    done, total = queue.progress()
    print(f"{args.folder}: {done} / {total} done; labels and status in {queue.out}")
    if args.check:
        return 0
    try:
        import napari
    except ImportError:
        raise SystemExit("tubediff: error: the GUI needs napari and a Qt binding: "
                         "pip install 'napari-tubediff[all]'") from None
    viewer = napari.Viewer(title="napari-tubediff: review queue")
    _, panel = viewer.window.add_plugin_dock_widget("napari-tubediff", "Curate tools")
    panel.open_folder(args.folder)
    napari.run()
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (when it has one that is not already said)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        said = "%(default)" in text or re.search(r"\bdefault[: ]", text.lower())
        if said or not action.option_strings or default is None or default is False \
                or default == argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _Parser(argparse.ArgumentParser):
    """The subcommands' parser: its help shows every option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


_OVERWRITE = ("replace existing files that tubediff did not write for these inputs (never an input; "
              "default: refuse them before any work)")


def _add_overwrite(parser) -> None:
    parser.add_argument("--overwrite", action="store_true", help=_OVERWRITE)


def _backbone_help() -> str:
    from .models.registry import DESCRIPTIONS, available_backbones

    return "; ".join(f"{n}: {DESCRIPTIONS.get(n, n)}" for n in available_backbones())


class _Version(argparse.Action):
    """``--version``: the version and the numba threading layer the kernels run on."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .core._kernels import threading_layer

        print(f"{parser.prog} {__version__} (numba threading layer: {threading_layer() or 'no numba'})")
        parser.exit()


def _scale_fov_options(parser, when: str = "") -> None:
    parser.add_argument("--scale", default="auto", metavar="auto|FACTOR",
                        help="resample images by FACTOR to the U-Net's working scale" + when + "; auto "
                             "(default): from the field of view's diameter (fundus photographs) or the "
                             "vessel width. Volumes (region3d): the vessel radius in voxels (auto: "
                             "measured)")
    parser.add_argument("--fov", default="auto", metavar="auto|none|FILE",
                        help="field of view" + when + ": auto (default: found in fundus photographs), "
                             "none, or a mask file (> 127 inside)")


def build_parser() -> argparse.ArgumentParser:
    from .core.refine import LARGE_FOV, RECOMMENDED_METHOD, REFINE_FOV, REFINE_METHODS, VOLUME_REFINE
    from .models.registry import NEEDS_FILE, available_backbones, backbone_ndims

    p = argparse.ArgumentParser(
        prog="tubediff", formatter_class=_HelpFormatter,
        description="Refine vessel segmentations by anisotropic diffusion (the napari-tubediff engine, "
                    "headless).")
    p.add_argument("--version", action=_Version, nargs=0,
                   help="show the version and numba's threading layer")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser("demo", help="refine the synthetic sample headlessly and report what changed",
                       description="Generate the synthetic vessel sample (breaks cut into its probability "
                                   "field), estimate Hessian directions, run the diffusion, and print "
                                   "components, gap pixels filled and Dice before and after.")
    d.add_argument("--out", help="folder to write PNGs and summary.json into (default: write nothing)")
    d.add_argument("--size", type=int, default=256, help="edge of the square sample in pixels")
    d.add_argument("--seed", type=int, default=0, help="random seed of the sample")
    d.add_argument("--breaks", type=int, default=8, help="gaps cut into the probability field")
    d.add_argument("--sigma", type=float, default=3.0, help="Hessian scale for the directions")
    d.add_argument("--lambda-par", type=float, default=1.0, help="diffusivity along the vessel")
    d.add_argument("--lambda-perp", type=float, default=0.02, help="diffusivity across the vessel")
    d.add_argument("--dt", type=float, default=0.25, help="time step of one RK4 step")
    d.add_argument("--steps", type=int, default=30, help="RK4 steps")
    _add_overwrite(d)
    d.set_defaults(func=_demo)

    e = sub.add_parser("evaluate", help="score methods on a dataset (Dice, clDice, VCA, Betti)",
                       description="Score every image of a DRIVE-layout folder (--data), or of an image "
                                   "folder paired with a label folder (--images, --labels), with each "
                                   "method (raw threshold, dual-threshold iteration, diffusion "
                                   "refinement) against the 1st observer, plus the 2nd observer as the "
                                   "human row where one exists. Files pair by their name up to the first "
                                   "dot (STARE: im0001.png with im0001.ah.ppm; HRF: 01_dr.JPG with "
                                   "01_dr.tif and 01_dr_mask.tif), or by the image's name and a suffix "
                                   "when one file alone fits (IOSTAR's 'STAR 01_OSC_GT.tif'); two files "
                                   "that pair alike are refused. Where the names need it, --labels, "
                                   "--labels2 and --fov take a pattern with {name}, the image's name "
                                   "(CHASE_DB1, one folder: --images C --labels 'C/{name}_1stHO.png' "
                                   "--labels2 'C/{name}_2ndHO.png'); label files in the images' folder "
                                   "are not scored as images.")
    e.add_argument("--data", help="folder with training/ and test/ in DRIVE layout")
    e.add_argument("--images", help="folder of images (any layout; pair with --labels)")
    e.add_argument("--labels", help="with --images: folder of the 1st observer's labels, paired by name, "
                                    "or a pattern such as 'DIR/{name}_1stHO.png'")
    e.add_argument("--labels2", help="with --images: a 2nd observer's labels (the human row); a folder "
                                     "or a {name} pattern")
    e.add_argument("--synthetic3d", type=int, metavar="N",
                   help="score N held-out synthetic volumes instead (default backbone: unet3d)")
    e.add_argument("--split", default="test", choices=["test", "training", "train"],
                   help="with --data: which part of the DRIVE folder")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--backbone", help="segment with this backbone (unet, vesselness, ...)")
    src.add_argument("--pred", help="folder of probability maps named like the images: NAME.png, NAME.tif or "
                                    "NAME_prob.tif (what tubediff segment writes); matched exactly, never "
                                    "by a prefix")
    e.add_argument("--backbone-weights", help="U-Net weights instead of the shipped ones (e.g. NAME_unet.pt)")
    e.add_argument("--polarity", default="auto", choices=["auto", "dark", "bright"],
                   help="vessels darker (fundus) or brighter (angiogram, fluorescence) than the "
                        "background; auto decides from each image (default)")
    e.add_argument("--methods", default="raw,dti,refine",
                   help="comma list of raw,dti,refine,hessian (hessian: refine with Hessian directions "
                        "whatever --refiner) or a refinement method (faithful, gated, hysteresis, "
                        "gated+hysteresis, gated+dti: Hessian directions; default raw,dti,refine)")
    e.add_argument("--steps", type=int, default=None,
                   help="RK4 steps of the refinement (default: as tubediff refine, 30 for the recommended "
                        "method with Hessian directions; a learned refiner's own, those it was trained with: "
                        "10 for the shipped one)")
    e.add_argument("--gaps", action="store_true",
                   help="also score each method's list of bridged gaps against the truth: median length, "
                        "precision (all and top 20) and recall of the truth's breaks")
    e.add_argument("--refiner", default="auto",
                   help="learned refiner weights, 'shipped', or 'hessian' for classical directions "
                        "(default: as tubediff refine, the recommended method with Hessian directions)")
    e.add_argument("--fov", nargs="?", const="data", metavar="DIR|auto|none",
                   help="score Dice, clDice and Betti errors inside the field of view: bare --fov, the "
                        "dataset's own masks (DRIVE's mask/); DIR, masks named like the images (NAME.* or "
                        "NAME_mask.*) or a {name} pattern; auto, the automatic FOV of fundus photographs; "
                        "none, no FOV at all. "
                        "The backbone is given the same FOV (default: whole image scored; with --data "
                        "the backbone sees DRIVE's masks)")
    e.add_argument("--save-pred", help="write every scored mask to DIR/METHOD/IMAGE.png")
    e.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    e.add_argument("--json", help="write per-image and mean figures to this JSON file (a new file unless "
                                  "--overwrite; never an input)")
    e.add_argument("--overwrite", action="store_true",
                   help="let --json and --save-pred replace existing files (never an input)")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    e.set_defaults(func=_evaluate)

    t = sub.add_parser("train", help="train the backbone or the refiner (DRIVE data or synthetic volumes)",
                       description="Train on the training split of a DRIVE-layout folder (2D), or on "
                                   "synthetic volumes (3D, --synthetic3d), and write an atomic checkpoint. "
                                   "Options left out take the model's defaults (the shipped models' "
                                   "settings, docs/models.md).")
    t.add_argument("what", choices=["backbone", "refiner"], help="the model to train")
    t.add_argument("--data", help="folder with training/ in DRIVE layout")
    t.add_argument("--synthetic3d", type=int, metavar="N",
                   help="train the 3D model on N synthetic volumes instead (the refiner on the shipped 3D "
                        "U-Net unless --backbone-weights)")
    t.add_argument("--out", required=True,
                   help="checkpoint file to write (required; refused before training if it exists, is an "
                        "input or cannot be written, unless --overwrite for an existing file)")
    _add_overwrite(t)
    t.add_argument("--seed", type=int, default=0, help="random seed of patches, crops and initial weights")
    t.add_argument("--lr", type=float, default=None,
                   help="initial learning rate (default: 0.001; 3D: backbone 0.003, refiner 0.005)")
    t.add_argument("--batch", type=int, default=None,
                   help="patches per update (default: backbone 32, 3D 4; refiner 4)")
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
    tr.add_argument("--alpha", type=float, default=None,
                    help="soft-clDice weight with --loss cldice (default: 0.5)")
    tr.add_argument("--checkpoint", action=argparse.BooleanOptionalAction, default=None,
                    help="gradient checkpointing of each RK4 step: memory no longer grows with the stages "
                         "times --steps, for about one more forward pass (default: on from 20 steps)")
    t.set_defaults(func=_train)

    sg = sub.add_parser("segment", help="probability maps for your own images",
                        description="Segment images with a backbone; writes NAME_prob.tif (float32) and, for "
                                    "2D images, NAME_prob.png. RGB images use their green channel.")
    sg.add_argument("images", nargs="+", help="image files (TIFF, PNG, GIF, JPEG)")
    sg.add_argument("--out", required=True,
                    help="folder for NAME_prob.tif and NAME_prob.png (required; created if needed). NAME is "
                         "the image's name less a trailing _prob, _refined or _mask")
    sg.add_argument("--backbone", choices=available_backbones(), metavar="NAME",
                    help="default: unet for images, region3d for volumes, or the kind of --backbone-file. "
                         + _backbone_help())
    sg.add_argument("--backbone-file", metavar="PATH",
                    help="your own model: a torch.export program (.pt2, read with torch.export.load) or a "
                         "TorchScript file (.pt); takes (1, 1, H, W) float32, returns probabilities or "
                         "logits (default: none)")
    sg.add_argument("--weights", help="U-Net checkpoint instead of the shipped one (default: shipped)")
    _add_overwrite(sg)
    sg.add_argument("--polarity", default="auto", choices=["auto", "dark", "bright"],
                    help="vessels darker (fundus photographs) or brighter (angiograms, fluorescence) "
                         "than the background; auto decides per image: colour photographs dark, grey "
                         "images measured (default auto)")
    _scale_fov_options(sg)
    sg.add_argument("--spacing", metavar="DZ,DY,DX",
                    help="voxel spacing of volumes (default: read from the TIFF's ImageJ or OME metadata, "
                         "else isotropic); region3d smooths by the same physical width along every axis "
                         "and reports the vessel radius in these units")
    sg.set_defaults(func=_segment)

    rf = sub.add_parser("refine", help="refine probability maps (or images) by the diffusion",
                        description="Refine probability maps with Hessian directions (--input prob), or "
                                    "segment images with the U-Net and refine with the learned refiner "
                                    "(--input image). Writes NAME_refined.tif and NAME_mask.png. Given a "
                                    "folder, refines every image in it on a dask.distributed cluster, "
                                    "skipping images already done (docs/batch.md).")
    rf.add_argument("paths", nargs="+", help="image files, or one folder")
    rf.add_argument("--out", required=True,
                    help="folder for NAME_refined.tif and NAME_mask.png/.tif (required; created if needed). "
                         "NAME is the input's name less a trailing _prob, _refined or _mask")
    rf.add_argument("--input", choices=["prob", "image"], default="prob",
                    help="prob: the files are probability maps; image: segment them first (2D: the U-Net)")
    rf.add_argument("--steps", type=int, default=None,
                    help="RK4 steps of the diffusion (default: images 30 with Hessian directions, as "
                         "measured in docs/results.md; with a learned refiner the steps it was trained with, "
                         "10 for the shipped one; "
                         f"volumes {VOLUME_REFINE.steps}, i.e. the backbone's probability as it is, as "
                         "chosen on synthetic microscopy volumes: docs/results.md, 'Real volumes')")
    rf.add_argument("--method", choices=REFINE_METHODS, default=None,
                    help=f"default: {RECOMMENDED_METHOD}. "
                         "Refinement without the learned refiner (docs/results.md, 'Refinement against "
                         "DTI'): faithful (the thesis's PDE), gated (growth only where the backbone saw "
                         "a faint vessel), hysteresis (DTI grown only along the vessels), gated+hysteresis")
    rf.add_argument("--refiner", default="auto",
                    help="with --input image: learned refiner weights, 'shipped', 'hessian' or 'auto' "
                         "(Hessian directions with the default --method; the shipped learned refiner "
                         "with --method faithful)")
    rf.add_argument("--spacing", metavar="DZ,DY,DX",
                    help="voxel spacing of volumes (any length unit; only the ratios count: sigma and dt "
                         "stay in in-plane voxels); default: the TIFF's ImageJ/OME/resolution metadata, "
                         "else isotropic")
    rf.add_argument("--device", default="auto",
                    help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or cuda:N")
    rf.add_argument("--fov-diameter", type=float, default=None, metavar="PIXELS",
                    help="with --input prob: the FOV diameter of the fundus photographs the 2D maps come "
                         f"from; above {LARGE_FOV * REFINE_FOV:.0f} pixels ({LARGE_FOV:g} times DRIVE's and "
                         "STARE's, where the settings were chosen) DTI's additions are kept 2 pixels either "
                         "side of their centre line, not 1 (docs/results.md, 'Refinement against DTI'). "
                         "Default: refined as they are. With --input image the FOV found (or --fov) sets it")
    rb = rf.add_argument_group("folders (dask.distributed)")
    rb.add_argument("--scheduler", metavar="ADDRESS",
                    help="address of a running dask scheduler (default: start a local cluster)")
    rb.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster")
    rb.add_argument("--chunk", type=int, default=256, metavar="N",
                    help="refine images with more than N^3 voxels in blocks of about N^3 with exact "
                         "halos (0: never)")
    rb.add_argument("--volume-backbone", default="region3d",
                    choices=[n for n in available_backbones()
                             if 3 in backbone_ndims(n) and n not in NEEDS_FILE],
                    help="with --input image: backbone for 3D volumes (the U-Net is 2D)")
    _add_overwrite(rf)
    _scale_fov_options(rf, " (with --input image)")
    rf.set_defaults(func=_refine)

    ft = sub.add_parser("finetune", help="fine-tune the refiner on your corrected labels",
                        description="Fine-tune the refiner's direction head and lambdas on images and "
                                    "their corrected labels (optionally only inside region masks); prints "
                                    "Dice, clDice and VCA in the regions before and after.")
    ft.add_argument("--images", nargs="+", required=True,
                    help="2D images (grey or RGB) or 3D volumes (TIFF; the 3D U-Net + 3D refiner "
                         "fine-tune on them); required")
    ft.add_argument("--labels", nargs="+", required=True,
                    help="one corrected mask per image (0/1, 0/255 or bool; non-zero is vessel; required)")
    ft.add_argument("--regions", nargs="+", help="one mask per image: where the labels are trusted")
    ft.add_argument("--fovs", nargs="+", help="one field-of-view mask per image (fundus photographs; "
                                              "default: found, as tubediff segment --fov auto)")
    ft.add_argument("--scale", default="auto", metavar="auto|FACTOR",
                    help="resample images by FACTOR to the U-Net's working scale, as tubediff segment "
                         "--scale (default auto); the refiner trains there, the scores are at full size")
    ft.add_argument("--init", help="refiner weights to start from (default: the shipped ones)")
    ft.add_argument("--out", required=True,
                    help="refiner weights to write (required; refused before training if it exists, is an "
                         "input or cannot be written, unless --overwrite for an existing file)")
    _add_overwrite(ft)
    ft.add_argument("--updates", type=int, default=None, help="optimiser updates (default: 100)")
    ft.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.003)")
    ft.add_argument("--loss", choices=["bce", "dice", "cldice"], default=None, help="default: cldice")
    ft.add_argument("--batch", type=int, default=None, help="crops per update (default: 4)")
    ft.add_argument("--crop", type=int, default=None,
                    help="crop edge in pixels (default: 128; volumes: 16, cubic crops)")
    ft.add_argument("--seed", type=int, default=None, help="random seed of the crops (default: 0)")
    ft.add_argument("--tune-backbone", action="store_true",
                    help="also train the U-Net's last layers; writes OUT_unet.pt beside OUT")
    ft.set_defaults(func=_finetune)

    g = sub.add_parser("gui", help="open napari with the plugin docked and its sample data",
                       description="Open napari with the Curate vessels dock (the loop's seven steps "
                                   "on tabs) on the synthetic sample.")
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
    b.add_argument("--json", help="write the figures to this JSON file (default: print only)")
    _add_overwrite(b)
    b.set_defaults(func=_bench)

    ms = sub.add_parser("measure", help="vessel measurements of a mask: branch length, diameter, tortuosity",
                        description="Skeletonize a 2D or 3D vessel mask and write skan's branch table with "
                                    "length, chord, tortuosity and mean/max diameter per branch (CSV).")
    ms.add_argument("mask", help="the vessel mask (TIFF, PNG, GIF, ...; nonzero or >= --threshold: vessel)")
    ms.add_argument("--out", required=True, help="the CSV file to write")
    ms.add_argument("--spacing", nargs="+", default=None, metavar="DZ,DY,DX",
                    help="pixel (voxel) size per axis (DZ,DY,DX as for segment and refine, or DZ DY DX), "
                         "or one for all; lengths and diameters are in its units (default: the TIFF's "
                         "ImageJ/OME metadata in micrometres, else 1 pixel)")
    ms.add_argument("--threshold", type=float, default=0.5,
                    help="vessel where the mask, read as a probability (0/255 and 0/1 masks as 0/1), "
                         "is >= this")
    _add_overwrite(ms)
    ms.set_defaults(func=_measure)

    cu = sub.add_parser("curate", help="review a folder of images in napari, resuming where you left off",
                        description="Open napari with the Curate tools panel on a folder: the next image "
                                    "not done, with its saved curated labels; labels and status go to "
                                    "FOLDER/curated/.")
    cu.add_argument("folder", help="the folder of images")
    cu.add_argument("--check", action="store_true", help="only print the queue's progress")
    cu.set_defaults(func=_curate)
    return p


def main(argv: list[str] | None = None) -> int:
    from .core.device import passive_openmp

    passive_openmp()  # before anything imports torch: a loaded CPU must not collapse training
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .data.io import warning_line

    def one_line(message, category, *rest, **kw):
        # what a reader assumed about a file's values is a note; what the library warns about
        # (a blank image, an inverted mask) a warning: one line each, not a source dump
        from tqdm import tqdm  # its own line, not glued to a progress bar's (tqdm clears the bar first)

        tqdm.write(warning_line(message, category), file=sys.stderr)

    import logging

    # tifffile logs a damaged file's troubles as bare lines while a header is read; reading
    # the file then says what is wrong in one line of its own (`data.io.read_image`)
    logging.getLogger("tifffile").addHandler(logging.NullHandler())
    logging.getLogger("tifffile").propagate = False
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return args.func(args)
    except KeyboardInterrupt:
        # every output is written under a temporary name and renamed when complete
        # (data.io.atomic_path), and the temporaries are removed on the way out
        print("tubediff: interrupted: finished outputs are kept, no partial file is left", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"tubediff: error: {msg}", file=sys.stderr)
        return 2
    except MemoryError as e:  # an allocation the estimates did not foresee: one line, not a traceback
        print(f"tubediff: error: not enough memory ({e or 'allocation failed'}); use a smaller input",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
