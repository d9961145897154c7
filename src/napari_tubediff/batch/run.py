"""Refine every image of a folder on a dask.distributed cluster: resumable, atomic, failures collected.

`refine_folder` is what ``tubediff refine INPUT_DIR --out DIR`` runs. Each image is
one task (read, segment if asked, refine, write), so images are spread over the
workers; an image or volume with more than ``chunk**3`` voxels is instead refined
by `refine_chunked` (its blocks spread over the workers) and written plane by plane.

Outputs, as with the single-file command: ``NAME_refined.tif`` (float32) and the
mask ``NAME_mask.png`` (2D) or ``NAME_mask.tif`` (3D, uint8 0/255), every file
written under a temporary name and renamed when complete (`atomic_path`), mask
first, so an existing ``NAME_refined.tif`` means the image is done. A rerun skips
the done images; a killed run leaves at most hidden temporary files behind.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import numpy as np

from ..core.refine import RefineSettings, refine
from ..data.drive import binary_mask
from ..data.io import _to_uint8, atomic_path, read_image, to_probability, write_image

__all__ = ["IMAGE_SUFFIXES", "BatchOptions", "BatchReport", "refine_folder", "make_client",
           "outputs_for"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".gif", ".jpg", ".jpeg")

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
    steps : int
        RK4 steps (the other settings are `RefineSettings`' defaults).
    refiner : str
        2D images with ``input="image"``: learned refiner weights, ``"shipped"``,
        ``"auto"`` or ``"hessian"`` (as ``tubediff refine``).
    volume_backbone : str
        Backbone for 3D images with ``input="image"``. The shipped U-Net is 2D only,
        so the default is the training-free ``"vesselness"``; a 3D model registered
        in ``models.registry`` can be named here.
    chunk : int or None
        Block edge: images with more than ``chunk**3`` voxels are refined in blocks of
        about that many voxels; None refines every image whole.
    device : str
        Where the diffusion runs: "auto" (CUDA when the worker's torch sees a GPU),
        "cpu", "cuda" or "cuda:N" (see `napari_tubediff.core.device`).
    scale, fov : str or float
        With ``input="image"``: `models.backbones.segment_image`'s ``scale`` ("auto" or
        a factor) and ``fov`` ("auto", "none" or a mask file's path).
    """

    input: str = "prob"
    steps: int = 10
    refiner: str = "auto"
    volume_backbone: str = "vesselness"
    chunk: int | None = 256
    device: str = "auto"
    scale: float | str = "auto"
    fov: str = "auto"

    def settings(self) -> RefineSettings:
        return RefineSettings(steps=self.steps)

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
        lines += [f"  FAILED {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


def outputs_for(path, out_dir, ndim: int | None = None) -> tuple[Path, Path]:
    """``(refined, mask)`` output paths of one input; the mask is PNG in 2D, TIFF in 3D.

    With ``ndim=None`` the mask path is whichever of the two exists (PNG if none).

    Examples
    --------
    >>> [p.name for p in outputs_for("in/vol.tif", "out", ndim=3)]
    ['vol_refined.tif', 'vol_mask.tif']
    """
    stem = Path(path).stem
    out = Path(out_dir)
    png, tif = out / f"{stem}_mask.png", out / f"{stem}_mask.tif"
    if ndim is None:
        mask = tif if tif.exists() and not png.exists() else png
    else:
        mask = png if ndim == 2 else tif
    return out / f"{stem}_refined.tif", mask


def _is_done(path, out_dir) -> bool:
    refined, mask = outputs_for(path, out_dir)
    return refined.is_file() and mask.is_file()


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


def _segment(img: np.ndarray, opts: BatchOptions):
    """Probability, and the learned refiner with the backbone's features (or None).

    2D and RGB images go through the U-Net; volumes through ``opts.volume_backbone``
    (the learned refiner only with ``unet3d``, and by default not even then: see
    `models.refiner.refiner_for`).
    """
    rgb = img.ndim == 3 and img.shape[-1] in (3, 4)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image or a 3D volume, got shape {img.shape}")
    name = "unet" if img.ndim == 2 or rgb else opts.volume_backbone
    backbone, learned = _models(name, opts.refiner, opts.device)
    from ..models.backbones import segment_image

    fov = opts.fov if opts.fov in ("auto", "none") else binary_mask(read_image(opts.fov))
    seg = segment_image(backbone, img, scale=opts.scale, fov=fov)
    return seg.prob, ((learned, seg.features) if learned is not None and seg.features is not None
                      else None), seg.fov


def _refine_image(img: np.ndarray, name: str, opts: BatchOptions) -> np.ndarray:
    """The refined field of one image held in memory (the same calls as ``tubediff refine FILE``)."""
    if opts.input == "image":
        # the learned refiner runs at the backbone's working scale (its features' grid)
        prob, learned, fov = _segment(img, opts)
        if learned is not None and learned[0] is not None:
            return learned[0].refine(prob, learned[1], steps=opts.steps, fov=fov)
        out = refine(prob, settings=opts.settings(), device=opts.device)
        return out if fov is None else np.where(fov, out, 0).astype(np.float32)
    return refine(to_probability(img, name), settings=opts.settings(), device=opts.device)


def process_image(path, out_dir, opts: BatchOptions) -> str:
    """Read, refine and write one image in memory; returns its name. Runs on a worker."""
    path = Path(path)
    img = read_image(path)
    field = _refine_image(img, path.name, opts)
    refined, mask = outputs_for(path, out_dir, field.ndim)
    write_image(mask, field >= 0.5)  # mask first: the refined TIFF marks the image as done
    write_image(refined, field)
    return path.name


def _process_or_reason(path, out_dir, opts: BatchOptions) -> str | None:
    # Runs on a worker: bad input comes back as a one-line reason instead of an exception,
    # which distributed would log with its traceback; anything else still raises.
    try:
        process_image(path, out_dir, opts)
    except (ValueError, OSError) as e:
        return _reason(e, Path(path).name)
    return None


def _segment_to_file(path, out_dir, opts: BatchOptions) -> str:
    # the backbone needs the whole volume (its normalisation is global): in memory on a
    # worker, written as NAME_prob.tif so that the chunked refinement can read it in blocks
    # (and a rerun after a crash does not segment again)
    path = Path(path)
    prob_path = Path(out_dir) / f"{path.stem}_prob.tif"
    if not prob_path.is_file():
        prob, _, _ = _segment(read_image(path), opts)
        write_image(prob_path, prob)
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
    if opts.chunk is None or shape is None or len(shape) not in (2, 3):
        return False
    if len(shape) == 3 and shape[-1] in (3, 4):  # RGB(A): segmented (or refused) whole
        return False
    return int(np.prod(shape)) > opts.chunk ** 3


def _write_planes(src, dst: Path, convert) -> None:
    # a 3D zarr array written as TIFF pages one plane at a time (bounded memory), atomically
    import tifffile

    with atomic_path(dst) as tmp:
        first = convert(np.asarray(src[0] if src.ndim == 3 else src[...]))
        shape = src.shape if src.ndim == 3 else first.shape

        def planes():
            yield first
            for i in range(1, src.shape[0] if src.ndim == 3 else 1):
                yield convert(np.asarray(src[i]))

        tifffile.imwrite(tmp, data=planes(), shape=shape, dtype=first.dtype)


def refine_in_blocks(path, out_dir, opts: BatchOptions, client) -> str:
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
    if opts.input == "image":
        src = Path(client.submit(_segment_to_file, str(path), str(out_dir), opts, pure=False).result())
    reader = TiffBlocks(src)
    blocks = opts.block_shape(reader.ndim)
    raw = da.from_array(reader, chunks=blocks, asarray=False, fancy=False, name=False)
    prob = raw.map_blocks(partial(to_probability, name=src.name), dtype=np.float32)
    field = refine_chunked(prob, opts.settings(), chunks=blocks, device=opts.device)
    refined, mask = outputs_for(path, out_dir, reader.ndim)
    store = Path(out_dir) / f".{path.stem}_refined.{os.getpid()}.zarr"
    try:
        # zarr needs regular chunks; the halo rounds may have merged small edge blocks
        job = da.to_zarr(field.rechunk(blocks), str(store), overwrite=True, compute=False)
        client.compute(job).result()
        z = zarr.open(str(store), mode="r")
        _write_planes(z, mask, lambda p: _to_uint8(p >= 0.5))
        _write_planes(z, refined, lambda p: p)
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
    kw = dict(env=WORKER_ENV) if processes else {}
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
                  workers: int = 2, progress: bool = True) -> BatchReport:
    """Refine every image in ``input_dir`` into ``out_dir`` on a dask.distributed cluster.

    Parameters
    ----------
    input_dir : path
        Folder of images (tif, tiff, png, gif, jpg; 2D images or 3D volumes); not
        searched recursively.
    out_dir : path
        Where ``NAME_refined.tif`` and ``NAME_mask.png``/``.tif`` go (created if needed).
        Images whose outputs are there already are skipped.
    client : distributed.Client, optional
        The cluster to use; by default a LocalCluster of ``workers`` single-threaded
        processes is started and closed again.
    options : BatchOptions
        Input kind, steps, refiner, chunk size.
    workers : int
        Worker processes of the default cluster.
    progress : bool
        Show a progress bar (tqdm, on stderr).

    Returns
    -------
    BatchReport
        Names refined, skipped and failed (with a one-line reason each). A failure
        never stops the other images.

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
    out.mkdir(parents=True, exist_ok=True)
    report = BatchReport(out)

    todo, seen = [], {}
    for p in files:
        if p.stem in seen:  # a.png and a.tif would write the same outputs
            report.failed.append((p.name, f"same name as {seen[p.stem]}: outputs would collide"))
            continue
        seen[p.stem] = p.name
        (report.skipped if _is_done(p, out) else todo).append(p)
    own = client is None
    if own and todo:
        client = make_client(workers=workers)
    bar = tqdm(total=len(todo), desc="refine", unit="image", file=sys.stderr, disable=not progress)
    try:
        big = [p for p in todo if _needs_blocks(p, opts)]
        small = [p for p in todo if p not in big]
        futures = {client.submit(_process_or_reason, str(p), str(out), opts, pure=False): p for p in small}
        for p in big:  # one at a time, each spread over all the workers
            try:
                refine_in_blocks(p, out, opts, client)
                report.done.append(p.name)
                report.chunked.append(p.name)
            except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
                report.failed.append((p.name, _reason(e, p.name)))
            bar.update()
        for fut in as_completed(futures):
            p = futures[fut]
            if fut.status != "finished":  # the task raised, or its worker died
                report.failed.append((p.name, _reason(fut.exception(), p.name)))
            elif (why := fut.result()) is not None:
                report.failed.append((p.name, why))
            else:
                report.done.append(p.name)
            bar.update()
    finally:
        bar.close()
        if own and client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    report.done.sort()
    report.failed.sort()
    return report
