"""Refine every image of a folder on a dask.distributed cluster: resumable, atomic, failures collected.

`refine_folder` is what ``tubediff refine INPUT_DIR --out DIR`` runs. Each image is
one task (read, segment if asked, refine, write), so images are spread over the
workers; an image or volume with more than ``chunk**3`` voxels is instead refined
by `refine_chunked` (its blocks spread over the workers) and written plane by plane.

Outputs, as with the single-file command: ``NAME_refined.tif`` (float32) and the
mask ``NAME_mask.png`` (2D) or ``NAME_mask.tif`` (3D, uint8 0/255), NAME being the
input's stem less a trailing ``_prob``/``_refined``/``_mask`` (`data.outputs.output_stem`).
Every output is planned and checked before any work (`plan_refine`: collisions,
inputs, files that are not tubediff's, writability, room on the disk), written under
a temporary name and renamed when complete (`atomic_path`), and carries a record of
its input and settings (`data.outputs.make_record`). A rerun skips the images whose
outputs record the same input and settings, redoes those made with other settings,
and refuses (before any work) files tubediff did not write unless ``overwrite``.
An interrupted run (Ctrl-C) removes its temporaries on the way out; those of a killed
run are removed by the next one.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path

import numpy as np

from ..core.refine import RECOMMENDED_METHOD, VOLUME_REFINE, RefineSettings, refine, settings_for_fov
from ..data.drive import binary_mask
from ..data.io import (  # IMAGE_SUFFIXES: the one list (a folder of BMPs or WebPs was skipped)
    IMAGE_SUFFIXES,
    _to_uint8,
    atomic_path,
    choose_spacing,
    read_image,
    tiff_metadata,
    to_probability,
    warning_line,
    write_image,
)
from ..data.outputs import (
    Output,
    OutputPlan,
    image_shape,
    make_record,
    output_path,
    plan_outputs,
    remove_temporaries,
)

__all__ = ["IMAGE_SUFFIXES", "BatchOptions", "BatchReport", "refine_folder", "make_client",
           "outputs_for", "plan_refine", "RefinePlan"]

#: Environment of the worker processes the default cluster starts. One worker is one
#: core: numba's kernel would otherwise start a thread per core in every worker
#: (N workers x N threads on N cores), and distributed already pins the BLAS/OpenMP
#: pools (torch's among them) to one thread the same way.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1"}


@dataclass(frozen=True)
class BatchOptions:
    """What to do with each image (picklable: it travels to the workers).

    Parameters
    ----------
    input : {"prob", "image"}
        Files are probability maps, or images to segment first.
    steps : int or None
        RK4 steps (the other settings are `RefineSettings`' defaults). None (what
        ``tubediff refine`` passes unless told): 10 for images, `core.refine.VOLUME_REFINE`'s
        for volumes (`settings`).
    method : str or None
        Refinement method (`core.refine.REFINE_METHODS`; None: the recommended one for
        images, `core.refine.VOLUME_REFINE`'s for volumes); blocks are only for
        ``"faithful"`` (the others are not local), so other methods refine whole images.
    refiner : str
        2D images with ``input="image"``: learned refiner weights, ``"shipped"``,
        ``"auto"`` or ``"hessian"`` (as ``tubediff refine``).
    volume_backbone : str
        Backbone for 3D images with ``input="image"``: by default the training-free
        ``"region3d"`` (`models.registry.DEFAULT_3D`; docs/results.md, "Real volumes"); any
        3D backbone registered in ``models.registry`` can be named here.
    chunk : int or None
        Block edge: images with more than ``chunk**3`` voxels are refined in blocks of
        about that many voxels; None refines every image whole.
    device : str
        Where the diffusion runs: "auto" (CUDA when the worker's torch sees a GPU),
        "cpu", "cuda" or "cuda:N" (see `napari_tubediff.core.device`).
    scale, fov : str or float
        With ``input="image"``: `models.backbones.segment_image`'s ``scale`` ("auto" or
        a factor) and ``fov`` ("auto", "none" or a mask file's path). A 2D image's FOV
        (found or given) sets the refinement for its size (`core.refine.settings_for_fov`).
    fov_diameter : float or None
        With ``input="prob"``: the FOV diameter (pixels) of the photographs the 2D maps
        come from, for `core.refine.settings_for_fov`; None refines them as they are.
    """

    input: str = "prob"
    steps: int | None = 10
    refiner: str = "auto"
    volume_backbone: str = "region3d"
    chunk: int | None = 256
    device: str = "auto"
    method: str | None = RefineSettings().method
    scale: float | str = "auto"
    fov: str = "auto"
    spacing: tuple[float, ...] | None = None
    fov_diameter: float | None = None

    def refiner_choice(self) -> str:
        """The ``refiner`` to use: "auto" with a method other than faithful is Hessian
        directions (the learned head was trained with the faithful PDE; on the held-out
        fundus sets the recommended method with Hessian directions reconnects far more:
        docs/results.md, 'Refinement against DTI').

        Examples
        --------
        >>> [BatchOptions(method=m).refiner_choice() for m in ("gated+dti", "faithful")]
        ['hessian', 'auto']
        """
        return "hessian" if self.refiner == "auto" and self.method != "faithful" else self.refiner

    def settings(self, ndim: int = 2, spacing=None) -> RefineSettings:
        """The refinement of an ``ndim``-D input; a ``steps`` or ``method`` of None takes the
        default of its dimension: the recommended method with `RefineSettings`' steps (30, as
        measured) for images, `core.refine.VOLUME_REFINE` for volumes (``tubediff refine``
        passes None unless told). ``spacing`` (one file's: `data.io.choose_spacing`) first."""
        default = VOLUME_REFINE if ndim == 3 else RefineSettings(method=RECOMMENDED_METHOD)
        s = replace(default, **{k: v for k, v in (("steps", self.steps), ("method", self.method))
                                if v is not None})
        return replace(s, spacing=spacing or self.spacing)

    def recorded(self) -> dict:
        """The options that shape the result, as recorded with each output. Left out: where
        it runs (``device``) and how it is split (``chunk``: blocks with exact halos give the
        whole image's result); with ``input="prob"`` also the models.

        Examples
        --------
        >>> rec = BatchOptions(steps=30, device="cpu").recorded()
        >>> rec["steps"], "device" in rec, "refiner" in rec
        (30, False, False)
        """
        from dataclasses import asdict

        rec = {k: v for k, v in asdict(self).items() if k not in ("device", "chunk")}
        if self.fov_diameter is None:  # as recorded before the option existed: no rerun for it
            rec.pop("fov_diameter")
        if self.steps is None or self.method is None:
            # the dimension's defaults (`settings`): the images' in place, the volumes' beside them
            images, volumes = self.settings(2), self.settings(3)
            rec.update(steps=images.steps, method=images.method,
                       volumes={"steps": volumes.steps, "method": volumes.method})
        if self.input == "prob":  # no segmentation: the models play no part
            rec.pop("refiner", None)
            rec.pop("volume_backbone", None)
        return rec

    def block_shape(self, ndim: int) -> tuple[int, ...]:
        # the same voxel count per block in 2D as in 3D (a 2D block of edge `chunk`
        # would be tiny next to its halo)
        edge = self.chunk if ndim == 3 else int(round(self.chunk ** 1.5))
        return (edge,) * ndim


@dataclass
class BatchReport:
    """What `refine_folder` did: images refined now, skipped (already done) and failed."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunked: list[str] = field(default_factory=list)
    redone: list[tuple[str, str]] = field(default_factory=list)  # (name, what changed): made again

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return not self.failed

    def summary(self) -> str:
        """A few lines for the terminal: counts, then one line per failure."""
        lines = [f"refined {len(self.done)} image(s)"
                 + (f" ({len(self.chunked)} in blocks)" if self.chunked else "")
                 + f", skipped {len(self.skipped)} already done, {len(self.failed)} failed; "
                 f"outputs in {self.out_dir}"]
        lines += [f"  REDONE {name}: its outputs were made with other settings ({why})"
                  for name, why in self.redone]
        lines += [f"  FAILED {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


def outputs_for(path, out_dir, ndim: int | None = None) -> tuple[Path, Path]:
    """``(refined, mask)`` output paths of one input; the mask is PNG in 2D, TIFF in 3D.

    Names follow `data.outputs.output_path` (a trailing ``_prob`` of the input is dropped).
    With ``ndim=None`` the mask path is whichever of the two exists (PNG if none).

    Examples
    --------
    >>> [p.name for p in outputs_for("in/vol.tif", "out", ndim=3)]
    ['vol_refined.tif', 'vol_mask.tif']
    >>> [p.name for p in outputs_for("in/01_test_prob.tif", "out", ndim=2)]
    ['01_test_refined.tif', '01_test_mask.png']
    """
    png, tif = output_path(path, out_dir, "mask", ".png"), output_path(path, out_dir, "mask", ".tif")
    if ndim is None:
        mask = tif if tif.exists() and not png.exists() else png
    else:
        mask = png if ndim == 2 else tif
    return output_path(path, out_dir, "refined", ".tif"), mask


def _spatial_ndim(shape: tuple[int, ...] | None, opts: BatchOptions) -> int:
    # the same reading of a shape as the per-image work: (H, W, 3|4) is an RGB image
    # (segmented in 2D with --input image, refused as a probability map), else the axes
    if shape is None:
        return 2  # unreadable: it will fail when read, nothing is written
    if len(shape) == 3 and shape[-1] in (3, 4):
        return 2
    return len(shape)


@dataclass
class RefinePlan:
    """The checked outputs of a refine run: per input its output paths and record."""

    outputs: dict[Path, tuple[Path, ...]]
    records: dict[Path, dict]
    check: OutputPlan
    blocks: set[Path] = field(default_factory=set)

    def done(self, path) -> bool:
        """The input's outputs are tubediff's, of this input, with these settings."""
        return self.check.current(self.outputs[Path(path)])

    def redo_reason(self, path) -> str | None:
        """What changed, when the input's existing outputs were made with other settings."""
        whys = [self.check.why[p] for p in self.outputs[Path(path)] if p in self.check.why]
        return whys[0] if whys else None

    def all_paths(self) -> list[Path]:
        return [p for ps in self.outputs.values() for p in ps]


def plan_refine(files, out_dir, opts: BatchOptions, *, overwrite: bool = False,
                blocks: bool = True) -> RefinePlan:
    """Check every output of refining ``files`` into ``out_dir`` before any work (`plan_outputs`).

    Reads only the headers of the inputs (for the mask's format and the size of the
    outputs). ``blocks=False``: every image is refined whole, in memory (``tubediff
    refine FILE``), so none goes through a ``NAME_prob.tif`` on disk.

    ValueError, naming the files, when two inputs would write the same output, an
    output would replace an input, a file tubediff did not write is in the way
    (unless ``overwrite``), or the folder cannot be written or lacks the room.
    """
    files = [Path(f) for f in files]
    outputs, records, planned, big, need = {}, {}, [], set(), 0
    for f in files:
        shape = image_shape(f)
        ndim = _spatial_ndim(shape, opts)
        paths = outputs_for(f, out_dir, ndim)
        if blocks and _needs_blocks(f, opts):
            big.add(f)
            if opts.input == "image":  # segmented to NAME_prob.tif on a worker, refined in blocks from it
                paths = (*paths, output_path(f, out_dir, "prob", ".tif"))
        rec = make_record("refine", f, opts.recorded()) if f.exists() else None
        outputs[f], records[f] = paths, rec
        planned += [Output(p, f, rec) for p in paths]
        if shape is not None:  # float32 field + uint8 mask (+ float32 probability; blocks: a zarr store)
            need += int(np.prod(shape[:ndim])) * (4 * (len(paths) - 1) + 1 + (4 if f in big else 0))
    check = plan_outputs(planned, files, overwrite=overwrite, need_bytes=need)
    return RefinePlan(outputs, records, check, big)


def list_images(input_dir) -> list[Path]:
    """The image files directly inside ``input_dir`` (hidden files left out), sorted."""
    d = Path(input_dir)
    if not d.is_dir():
        raise ValueError(f"not a folder: {d}")
    return sorted(p for p in d.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


# ---------------------------------------------------------------- per image (on a worker)

@cache
def _models(backbone: str, refiner: str, device: str):
    # once per worker process: the backbone and the learned refiner (None: Hessian directions)
    from ..models import get_backbone
    from ..models.refiner import refiner_for

    kw = {"device": device} if backbone in ("unet", "unet3d") else {}
    return get_backbone(backbone, **kw), refiner_for(refiner, backbone)


def _segment(img: np.ndarray, opts: BatchOptions, spacing=None):
    """Probability, and the learned refiner with the backbone's features (or None).

    2D and RGB images go through the U-Net; volumes through ``opts.volume_backbone``
    (the learned refiner only with ``unet3d``, and by default not even then: see
    `models.refiner.refiner_for`).
    """
    rgb = img.ndim == 3 and img.shape[-1] in (3, 4)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image or a 3D volume, got shape {img.shape}")
    name = "unet" if img.ndim == 2 or rgb else opts.volume_backbone
    backbone, learned = _models(name, opts.refiner_choice(), opts.device)
    from ..models.backbones import segment_image

    fov = opts.fov if opts.fov in ("auto", "none") else binary_mask(read_image(opts.fov))
    seg = segment_image(backbone, img, scale=opts.scale, fov=fov, spacing=spacing)
    return seg.prob, ((learned, seg.features) if learned is not None and seg.features is not None
                      else None), seg.fov


def _refine_image(img: np.ndarray, name: str, opts: BatchOptions, spacing=None) -> np.ndarray:
    """The refined field of one image held in memory (the same calls as ``tubediff refine FILE``)."""
    if opts.input == "image":
        # the learned refiner runs at the backbone's working scale (its features' grid)
        # a volume's spacing (`_spatial_ndim`: 3 axes) reaches the 3D backbone; images have none
        volume_spacing = spacing if spacing is not None and len(spacing) == 3 else None
        prob, learned, fov = _segment(img, opts, volume_spacing)
        if learned is not None and learned[0] is not None:
            # none given: the steps the refiner was trained with (its checkpoint's own)
            return learned[0].refine(prob, learned[1], steps=opts.steps, fov=fov)
        settings = opts.settings(prob.ndim, spacing)
        if prob.ndim == 2:  # a fundus photograph's FOV: the settings for its size
            settings = settings_for_fov(settings, fov)
        out = refine(prob, settings=settings, device=opts.device)
        return out if fov is None else np.where(fov, out, 0).astype(np.float32)
    prob = to_probability(img, name)
    settings = opts.settings(prob.ndim, spacing)
    if prob.ndim == 2:
        settings = settings_for_fov(settings, opts.fov_diameter)
    return refine(prob, settings=settings, device=opts.device)


def process_image(path, out_dir, opts: BatchOptions, record: dict | None = None,
                  planned: tuple[Path, ...] | None = None) -> str:
    """Read, refine and write one image in memory; returns its name. Runs on a worker.

    ``record`` goes into both outputs (`data.outputs.make_record`; by default made here).
    ``planned``: the outputs `plan_refine` checked; an image whose outputs turn out
    otherwise (its header promised another number of axes) is refused, not written.
    """
    path = Path(path)
    if record is None:
        record = make_record("refine", path, opts.recorded())
    img = read_image(path)
    spacing = choose_spacing(path, _spatial_ndim(img.shape, opts), opts.spacing)[0]
    field = _refine_image(img, path.name, opts, spacing)
    refined, mask = outputs_for(path, out_dir, field.ndim)
    if planned is not None and not {refined, mask} <= set(map(Path, planned)):
        raise ValueError(f"its outputs {refined.name}, {mask.name} differ from those checked before the run")
    # mask first: the refined TIFF's record marks it done; both keep the input's spacing
    write_image(mask, field >= 0.5, record=record, spacing=spacing)
    write_image(refined, field, record=record, spacing=spacing)
    return path.name


def _process_or_reason(path, out_dir, opts: BatchOptions, record=None, planned=None) -> str | None:
    # Runs on a worker: bad input comes back as a one-line reason instead of an exception,
    # which distributed would log with its traceback; anything else still raises. A warning
    # (an EXIF turn, a 0/1 map) is the command's one line, not Python's file:line and source.
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda m, c, *_a, **_k: print(warning_line(m, c), file=sys.stderr)
            process_image(path, out_dir, opts, record, planned)
    except (ValueError, OSError) as e:
        return _reason(e, Path(path).name)
    return None


def _segment_to_file(path, out_dir, opts: BatchOptions, record: dict | None = None) -> str:
    # the backbone needs the whole volume (its normalisation is global): in memory on a
    # worker, written as NAME_prob.tif so that the chunked refinement can read it in blocks
    # (a rerun after a crash reuses it when its record says same input, same settings)
    from ..data.outputs import read_record

    path = Path(path)
    prob_path = output_path(path, out_dir, "prob", ".tif")
    if record is None:
        record = make_record("refine", path, opts.recorded())
    if read_record(prob_path) != record:
        img = read_image(path)
        # a volume's spacing reaches its backbone here too (as in `process_image`)
        spacing = choose_spacing(path, 3, opts.spacing)[0] if _spatial_ndim(img.shape, opts) == 3 else None
        prob, _, _ = _segment(img, opts, spacing)
        write_image(prob_path, prob, record=record, spacing=spacing)
    return str(prob_path)


# ---------------------------------------------------------------- large volumes (in blocks)

class TiffBlocks:
    """A TIFF file as a lazily sliced array: each slice opens the file and decodes only
    the pages and strips it needs (tifffile's zarr view). Picklable (it holds the path),
    so ``da.from_array`` tasks can run on any worker that sees the file."""

    def __init__(self, path):
        import tifffile

        self.path = str(path)
        with tifffile.TiffFile(self.path) as tf:
            s = tf.series[0]
            self.shape, self.dtype = tuple(s.shape), np.dtype(s.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        import tifffile
        import zarr

        with tifffile.TiffFile(self.path) as tf:
            return np.asarray(zarr.open(tf.aszarr(), mode="r")[key])


def _tiff_shape(path) -> tuple[int, ...] | None:
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        return TiffBlocks(path).shape
    except Exception:  # unreadable: the in-memory path reports the reason
        return None


def _needs_blocks(path, opts: BatchOptions) -> bool:
    shape = _tiff_shape(path)
    if opts.chunk is None or shape is None or len(shape) not in (2, 3) or opts.method != "faithful":
        return False
    if len(shape) == 3 and shape[-1] in (3, 4):  # RGB(A): segmented (or refused) whole
        return False
    return int(np.prod(shape)) > opts.chunk ** 3


def _write_planes(src, dst: Path, convert, record: dict | None = None, spacing=None) -> None:
    # a 3D zarr array written as TIFF pages one plane at a time (bounded memory), atomically
    import tifffile

    with atomic_path(dst) as tmp:
        first = convert(np.asarray(src[0] if src.ndim == 3 else src[...]))
        shape = src.shape if src.ndim == 3 else first.shape

        def planes():
            yield first
            for i in range(1, src.shape[0] if src.ndim == 3 else 1):
                yield convert(np.asarray(src[i]))

        meta = tiff_metadata(record)
        if spacing is not None:  # as `write_image` keeps it
            meta["spacing"] = [float(x) for x in spacing]
        tifffile.imwrite(tmp, data=planes(), shape=shape, dtype=first.dtype, metadata=meta)


def refine_in_blocks(path, out_dir, opts: BatchOptions, client, record: dict | None = None) -> str:
    """Refine one large TIFF with `refine_chunked` on ``client``'s workers and write its outputs.

    The refined field goes to a temporary zarr store beside the outputs (written by
    the workers, block by block), then into the TIFFs plane by plane; neither the
    client nor a worker ever holds the whole volume (the segmentation with
    ``input="image"`` is the exception: backbones normalise over the whole image).
    """
    import dask.array as da
    import zarr

    from .chunked import refine_chunked

    path = Path(path)
    src = path
    if record is None:
        record = make_record("refine", path, opts.recorded())
    if opts.input == "image":
        fut = client.submit(_segment_to_file, str(path), str(out_dir), opts, record, pure=False)
        src = Path(fut.result())
    reader = TiffBlocks(src)
    blocks = opts.block_shape(reader.ndim)
    raw = da.from_array(reader, chunks=blocks, asarray=False, fancy=False, name=False)
    prob = raw.map_blocks(partial(to_probability, name=src.name), dtype=np.float32)
    spacing = choose_spacing(path, reader.ndim, opts.spacing)[0]
    field = refine_chunked(prob, opts.settings(prob.ndim, spacing), chunks=blocks, device=opts.device)
    refined, mask = outputs_for(path, out_dir, reader.ndim)
    store = Path(out_dir) / f".{path.stem}_refined.{os.getpid()}.zarr"
    try:
        # zarr needs regular chunks; the halo rounds may have merged small edge blocks
        job = da.to_zarr(field.rechunk(blocks), str(store), overwrite=True, compute=False)
        client.compute(job).result()
        z = zarr.open(str(store), mode="r")
        _write_planes(z, mask, lambda p: _to_uint8(p >= 0.5), record, spacing)
        _write_planes(z, refined, lambda p: p, record, spacing)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return path.name


# ---------------------------------------------------------------- the folder

def make_client(scheduler: str | None = None, workers: int = 2, *, processes: bool = True):
    """A dask.distributed client: to ``scheduler`` if given, else a new LocalCluster.

    The local cluster has ``workers`` single-threaded worker processes, each with
    numba limited to one thread (`WORKER_ENV`), so N workers use N cores. Close the
    client (and its cluster) when done: ``client.close(); client.cluster.close()``
    or use it as a context manager.

    Examples
    --------
    >>> client = make_client(workers=1, processes=False)  # doctest: +SKIP
    """
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    # the workers' own warnings stay quiet (a task's failure reaches the summary, one line each);
    # errors still show
    kw = dict(env=WORKER_ENV, silence_logs=logging.ERROR) if processes else {}
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=processes,
                           dashboard_address=None, **kw)
    return Client(cluster)


def _reason(exc: BaseException, name: str = "") -> str:
    """One line: the message of a ValueError/OSError (our readable ones), else type and message."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if name and text.startswith(f"{name}: "):  # to_probability names the file; the summary does too
        text = text[len(name) + 2:]
    if isinstance(exc, (ValueError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def refine_folder(input_dir, out_dir, *, client=None, options: BatchOptions | None = None,
                  workers: int = 2, progress: bool = True, overwrite: bool = False) -> BatchReport:
    """Refine every image in ``input_dir`` into ``out_dir`` on a dask.distributed cluster.

    Parameters
    ----------
    input_dir : path
        Folder of images (tif, tiff, png, gif, jpg; 2D images or 3D volumes); not
        searched recursively.
    out_dir : path
        Where ``NAME_refined.tif`` and ``NAME_mask.png``/``.tif`` go (created if needed).
        Images whose outputs record the same input and options are skipped (resume);
        outputs tubediff made with other options are made again (``report.redone``).
    client : distributed.Client, optional
        The cluster to use; by default a LocalCluster of ``workers`` single-threaded
        processes is started and closed again.
    options : BatchOptions
        Input kind, steps, refiner, chunk size.
    workers : int
        Worker processes of the default cluster.
    progress : bool
        Show a progress bar (tqdm, on stderr).
    overwrite : bool
        Replace files in ``out_dir`` that tubediff did not write for these inputs;
        without it they are refused before any work (ValueError).

    Returns
    -------
    BatchReport
        Names refined, skipped and failed (with a one-line reason each). A failure
        never stops the other images.

    Raises
    ------
    ValueError
        Before any work: two inputs with the same output names (``x.png``, ``x.tif``),
        a file in the way that tubediff did not write, an output folder that cannot be
        written or lacks the room.

    Examples
    --------
    >>> report = refine_folder("probs/", "refined/", options=BatchOptions(steps=10))  # doctest: +SKIP
    >>> print(report.summary())                                                       # doctest: +SKIP
    refined 12 image(s), skipped 0 already done, 0 failed; outputs in refined
    """
    from distributed import as_completed
    from tqdm import tqdm

    opts = options or BatchOptions()
    if opts.input not in ("prob", "image"):
        raise ValueError(f"input must be 'prob' or 'image', got {opts.input!r}")
    if opts.chunk is not None and (isinstance(opts.chunk, bool) or opts.chunk < 16):
        raise ValueError(f"chunk must be at least 16 voxels, got {opts.chunk!r}")
    files = list_images(input_dir)
    if not files:
        raise ValueError(f"no images (tif, tiff, png, gif, jpg) in {input_dir}")
    out = Path(out_dir)
    if out.resolve() == Path(input_dir).resolve():
        raise ValueError("--out must differ from the input folder (the outputs would become inputs)")
    plan = plan_refine(files, out, opts, overwrite=overwrite)  # every refusal comes before any work
    plan.check.make_folders()
    remove_temporaries(plan.all_paths())  # left by a run that was killed
    report = BatchReport(out)

    todo = []
    for p in files:
        if plan.done(p):
            report.skipped.append(p.name)
            continue
        todo.append(p)
        if (why := plan.redo_reason(p)) is not None:
            report.redone.append((p.name, why))
    own = client is None
    bar = None
    interrupted = False
    try:
        if own and todo:
            client = make_client(workers=workers)
        bar = tqdm(total=len(todo), desc="refine", unit="image", file=sys.stderr, disable=not progress)
        big = [p for p in todo if p in plan.blocks]
        small = [p for p in todo if p not in plan.blocks]
        futures = {client.submit(_process_or_reason, str(p), str(out), opts, plan.records[p], plan.outputs[p],
                                 pure=False): p for p in small}
        for p in big:  # one at a time, each spread over all the workers
            try:
                refine_in_blocks(p, out, opts, client, plan.records[p])
                report.done.append(p.name)
                report.chunked.append(p.name)
            except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
                report.failed.append((p.name, _reason(e, p.name)))
            bar.update()
        # nothing left to do (a finished folder run again): no cluster was started, and
        # distributed's as_completed would look for one ("No clients found")
        for fut in as_completed(futures) if futures else ():
            p = futures[fut]
            if fut.status != "finished":  # the task raised, or its worker died
                report.failed.append((p.name, _reason(fut.exception(), p.name)))
            elif (why := fut.result()) is not None:
                report.failed.append((p.name, why))
            else:
                report.done.append(p.name)
            bar.update()
    except KeyboardInterrupt:
        # Ctrl-C: the cluster is closed below, its workers (stopped mid-task) killed; what
        # distributed logs about that is noise after the user's own interrupt
        interrupted = True
        raise
    finally:
        if bar is not None:
            bar.close()
        if interrupted:
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if own and client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
        # a worker stopped mid-write (Ctrl-C reaches the worker processes too) may leave its
        # hidden temporary; the finished outputs stay, nothing half-written does
        remove_temporaries(plan.all_paths())
    report.done.sort()
    report.failed.sort()
    return report
