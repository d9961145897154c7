"""Batch processing: chunked refinement equals the whole-array refinement, and folders on a cluster."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

da = pytest.importorskip("dask.array")
pytest.importorskip("distributed")

from napari_tubediff.batch import chunked  # noqa: E402
from napari_tubediff.batch.chunked import (  # noqa: E402
    chunked_directions,
    diffusion_reach,
    refine_chunked,
)
from napari_tubediff.core.diffusion import plan_substeps  # noqa: E402
from napari_tubediff.core.directions import directions_reach, estimate_directions  # noqa: E402
from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine  # noqa: E402
from napari_tubediff.data.io import read_image, to_probability, write_image  # noqa: E402
from napari_tubediff.data.synthetic import synthetic_vessels  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    # a plain local scheduler for the dask-only tests (two threads: CI has two cores)
    import dask

    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def _field(shape, seed=0):
    rng = np.random.default_rng(seed)
    u = ndi.gaussian_filter(rng.random(shape), 2)
    return ((u - u.min()) / (u.max() - u.min())).astype(np.float32)


def _blocks_of_last_round(arr) -> int:
    # number of blocks the last map_overlap ran on (the graph layer before the trim)
    layers = [k for k in arr.dask.layers if k.startswith("_block_diffuse")]
    return len([k for k in arr.dask.layers[layers[-1]]]) if layers else 0


def test_doctests_of_the_batch_package():
    import doctest

    from napari_tubediff.batch import run

    for mod in (chunked, run):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0


def test_halo_formulas():
    s = RefineSettings()
    assert directions_reach(3.0) == 14 and directions_reach(1.0) == 6
    assert diffusion_reach(s, 3) == 32 and diffusion_reach(s, 2, steps=3) == 96
    big = RefineSettings(dt=2.0)
    assert plan_substeps(2.0, 1.0, 0.02, 8, 3) == diffusion_reach(big, 3) // 32 > 1


def test_directions_reach_is_what_the_hessian_sees():
    # a point change influences estimate_directions exactly directions_reach(sigma) pixels away
    rng = np.random.default_rng(1)
    u = rng.random((61, 61)).astype(np.float32)
    w = u.copy()
    w[30, 30] += 0.5
    d = np.abs(estimate_directions(u, 3.0, bright=None, rel_threshold=0, scale=1.0)
               - estimate_directions(w, 3.0, bright=None, rel_threshold=0, scale=1.0)).max(axis=0)
    changed = np.argwhere(d > 0)
    assert np.abs(changed - 30).max() == directions_reach(3.0)


@pytest.mark.parametrize("shape, chunks", [((64, 72), 24), ((40, 48, 56), (16, 20, 24))])
def test_chunked_directions_equal_whole_with_the_global_threshold(shape, chunks):
    u = _field(shape)
    u[: shape[0] // 3] *= 0.05  # a faint region: its own blocks' spread maximum is far below the global one
    v = chunked_directions(u, 3.0, chunks=chunks)
    assert v.numblocks[1:] != (1,) * len(shape)
    np.testing.assert_array_equal(v.compute(), estimate_directions(u, 3.0))
    # the global scale matters: a faint block on its own thresholds differently
    faint = u[:16, :24] if len(shape) == 2 else u[:16, :20, :24]
    corner = (slice(None), *(slice(0, n) for n in faint.shape))
    assert not np.array_equal(estimate_directions(faint, 3.0), estimate_directions(u, 3.0)[corner])


@pytest.mark.parametrize("shape, settings, chunks, k", [
    # 3D, order 8: chunks of 16 are smaller than the 32-voxel halo (dask merges them to 32);
    # split along the last axis only (24 x 32 across it, not 40 x 48: a third of the voxels)
    ((24, 32, 96), RefineSettings(steps=3), 16, 1),
    # 3D, order 2: halo 16 for two steps per exchange, genuinely split along every axis
    ((40, 48, 56), RefineSettings(steps=4, order=2), 16, 2),
    # 2D, the method's order 8
    ((160, 144), RefineSettings(steps=5), 40, 1),
    # 2D with sub-stepping (dt 2 needs 2 sub-steps at order 2): halo 2 * 8 * 2 = 32 per round
    ((160, 144), RefineSettings(steps=5, dt=2.0, order=2), 24, 2),
])
def test_refine_chunked_equals_refine(shape, settings, chunks, k):
    u = _field(shape)
    out = refine_chunked(u, settings, chunks=chunks, steps_per_exchange=k)
    assert _blocks_of_last_round(out) > 1
    np.testing.assert_array_equal(out.compute(), refine(u, settings=settings))


def test_substepping_case_really_substeps():
    assert plan_substeps(2.0, 1.0, 0.02, 2, 2) == 2


def test_refine_chunked_with_given_directions_and_dask_input():
    u = _field((96, 88), seed=3)
    v = estimate_directions(u, 2.0)[::-1].copy()  # any valid field (here: rotated by 90 degrees)
    s = RefineSettings(steps=4)
    out = refine_chunked(da.from_array(u, chunks=40), s, chunks=None, directions=v)
    np.testing.assert_array_equal(out.compute(), refine(u, v, settings=s))


def test_a_halo_one_voxel_short_is_wrong(monkeypatch):
    # the halo formula is tight: one voxel less and the block rims leak into the result
    u = _field((120, 120), seed=4)
    s = RefineSettings(steps=2, order=2)
    exact = refine(u, settings=s)
    monkeypatch.setattr(chunked, "diffusion_reach", lambda *a, **kw: diffusion_reach(*a, **kw) - 1)
    short = refine_chunked(u, s, chunks=30, steps_per_exchange=1).compute()
    assert not np.array_equal(short, exact)


def test_refine_chunked_rejects_bad_arguments():
    u = _field((32, 32))
    with pytest.raises(ValueError, match="steps_per_exchange"):
        refine_chunked(u, RefineSettings(steps=2), chunks=16, steps_per_exchange=0)
    with pytest.raises(ValueError, match="directions must have shape"):
        refine_chunked(u, RefineSettings(steps=2), chunks=16, directions=np.zeros((2, 8, 8)))
    bad = u.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        refine_chunked(bad, RefineSettings(steps=1), chunks=16).compute()


# ------------------------------------------------------------------ folders on a cluster

STEPS = 3


CLI_METHOD = RECOMMENDED_METHOD  # `tubediff refine`'s default; BatchOptions' is RefineSettings' (faithful)


def _expected(path, method: str = "faithful"):
    return refine(to_probability(read_image(path), path.name), steps=STEPS, method=method)


def _make_folder(d):
    d.mkdir()
    write_image(d / "a.tif", synthetic_vessels((96, 96), seed=0).probability)
    write_image(d / "b.png", synthetic_vessels((96, 96), seed=1).probability)  # 8-bit on disk
    write_image(d / "vol.tif", synthetic_vessels((24, 24, 24), seed=2).probability)  # = chunk**3: whole
    # more than chunk**3 = 24**3 voxels: refined in blocks (split along the long axis)
    write_image(d / "long.tif", synthetic_vessels((24, 24, 96), seed=3).probability)
    return d


@pytest.mark.slow
def test_folder_on_a_two_worker_local_cluster(tmp_path):
    from napari_tubediff.batch.run import BatchOptions, make_client, refine_folder

    src = _make_folder(tmp_path / "in")
    out = tmp_path / "out"
    with make_client(workers=2) as client:  # two single-threaded worker processes
        assert len(client.scheduler_info()["workers"]) == 2
        report = refine_folder(src, out, client=client, options=BatchOptions(steps=STEPS, chunk=24),
                               progress=False)
        client.cluster.close()
    assert report.ok and report.done == ["a.tif", "b.png", "long.tif", "vol.tif"]
    assert report.chunked == ["long.tif"]
    for name, mask_suffix in [("a", "png"), ("b", "png"), ("vol", "tif"), ("long", "tif")]:
        path = next(src.glob(f"{name}.*"))
        want = _expected(path)
        got = read_image(out / f"{name}_refined.tif")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(read_image(out / f"{name}_mask.{mask_suffix}") > 127, want >= 0.5)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.slow
def test_resume_and_failures_through_the_command(tmp_path, capsys):
    from napari_tubediff.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        write_image(src / f"img{k}.tif", synthetic_vessels((64, 64), seed=k).probability)
    (src / "corrupt.tif").write_bytes(b"this is not a TIFF file")
    write_image(src / "colour.png", np.random.default_rng(0).random((32, 32, 3)))
    nan = np.full((32, 32), 0.5, np.float32)
    nan[4, 4] = np.nan
    write_image(src / "nan.tif", nan)
    (src / "notes.txt").write_text("not an image: ignored")
    out = tmp_path / "out"
    args = ["refine", str(src), "--out", str(out), "--steps", str(STEPS), "--workers", "2"]

    assert main(args) == 1  # failures give a non-zero exit code, the good images are done
    text = capsys.readouterr().out
    assert "refined 3 image(s), skipped 0 already done, 3 failed" in text
    assert "FAILED corrupt.tif: cannot read" in text
    assert "FAILED colour.png: a probability map must be single-channel" in text
    assert "FAILED nan.tif: a float probability map must hold values in [0, 1]" in text
    assert "Traceback" not in text + capsys.readouterr().err
    for k in range(3):
        np.testing.assert_array_equal(read_image(out / f"img{k}_refined.tif"),
                                      _expected(src / f"img{k}.tif", CLI_METHOD))

    # resume: only the missing output is computed again. On an in-process cluster by address
    # (the command's own cluster of worker processes is the first run's; starting a second one
    # cost 3 s of wall and 5 s of CPU)
    from distributed import LocalCluster

    (out / "img1_refined.tif").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (src / "corrupt.tif").unlink()
    (src / "colour.png").unlink()
    (src / "nan.tif").unlink()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        assert main([*args[:-2], "--scheduler", cluster.scheduler_address]) == 0
    assert "refined 1 image(s), skipped 2 already done, 0 failed" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    changed = sorted(n for n in after if before.get(n) != after[n])
    assert changed == ["img1_mask.png", "img1_refined.tif"]
    np.testing.assert_array_equal(read_image(out / "img1_refined.tif"),
                                  _expected(src / "img1.tif", CLI_METHOD))


@pytest.mark.slow
def test_an_existing_scheduler_by_address_is_used_and_left_running(tmp_path, capsys):
    from distributed import Client, LocalCluster

    from napari_tubediff.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        write_image(src / f"img{k}.tif", synthetic_vessels((48, 48), seed=k).probability)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as watcher:
            assert main(["refine", str(src), "--out", str(tmp_path / "out"), "--steps", str(STEPS),
                         "--scheduler", cluster.scheduler_address]) == 0
            # the command ran its tasks there, and closed only its own client
            assert len(watcher.scheduler_info()["workers"]) == 2
            assert watcher.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter) > 0
    assert "refined 2 image(s)" in capsys.readouterr().out
    for k in range(2):
        np.testing.assert_array_equal(read_image(tmp_path / "out" / f"img{k}_refined.tif"),
                                      _expected(src / f"img{k}.tif", CLI_METHOD))


def test_folder_errors_are_readable(tmp_path, capsys):
    from napari_tubediff.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["refine", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    write_image(tmp_path / "x.png", np.zeros((8, 8)))
    both = [str(tmp_path / "empty"), str(tmp_path / "x.png")]
    assert main(["refine", *both, "--out", str(tmp_path / "o")]) == 2
    assert "either one folder or image files" in capsys.readouterr().err


def test_an_interrupted_write_leaves_no_finished_looking_output(tmp_path, monkeypatch):
    # a task killed while writing must not leave NAME_refined.tif behind (resume would skip it)
    from napari_tubediff.batch import run

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.tif", synthetic_vessels((48, 48), seed=0).probability)

    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr("tifffile.imwrite", boom)
    with pytest.raises(OSError):
        run.process_image(src / "a.tif", tmp_path / "out", run.BatchOptions(steps=1))
    opts = run.BatchOptions(steps=1)
    assert not run.plan_refine([src / "a.tif"], tmp_path / "out", opts).done(src / "a.tif")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_mask.png"]


def test_refine_command_says_when_the_device_is_wrong(tmp_path, capsys):
    from napari_tubediff.cli import main

    (tmp_path / "in").mkdir()
    assert main(["refine", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--device", "gpu"]) == 2
    assert "device must be" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing started


def test_volumes_with_the_3d_unet_hessian_by_default_learned_on_request(tmp_path):
    # `tubediff refine FILE --input image --volume-backbone unet3d`: the 3D U-Net's
    # probability refined with Hessian directions, or with the learned 3D head when asked
    from napari_tubediff.cli import main
    from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine
    from napari_tubediff.data.io import read_image, write_image
    from napari_tubediff.data.synthetic import synthetic_vessels
    from napari_tubediff.models import get_backbone
    from napari_tubediff.models.refiner import LearnedRefiner

    img = synthetic_vessels((32, 32, 32), seed=3, depth=2, width=(1.0, 2.5)).image
    write_image(tmp_path / "vol.tif", img)
    prob, feats = get_backbone("unet3d", device="cpu").predict_with_features(img)
    hessian = refine(prob, settings=RefineSettings(steps=3, method=RECOMMENDED_METHOD))  # the CLI's default
    learned = LearnedRefiner.shipped(3, device="cpu").refine(prob, feats, steps=3)
    assert np.abs(hessian - learned).max() > 1e-3  # the two paths are told apart
    for choice, expected in (("auto", hessian), ("shipped", learned)):
        out = tmp_path / choice
        assert main(["refine", str(tmp_path / "vol.tif"), "--out", str(out), "--input", "image",
                     "--steps", "3", "--volume-backbone", "unet3d", "--refiner", choice,
                     "--device", "cpu"]) == 0
        np.testing.assert_allclose(read_image(out / "vol_refined.tif"), expected, atol=1e-6)
        assert (out / "vol_mask.tif").is_file()


def test_refine_image_default_is_the_recommended_method_with_hessian_directions(tmp_path):
    """`tubediff refine IMAGE --input image` with its defaults: `segment_image` as `tubediff
    segment` does, then the recommended method (Hessian directions, the settings' 30 steps) inside the FOV."""
    from napari_tubediff.cli import main
    from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine
    from napari_tubediff.data.fundus import synthetic_fundus
    from napari_tubediff.data.io import read_image, write_image
    from napari_tubediff.models.backbones import UNetBackbone, segment_image

    f = synthetic_fundus((64, 64), seed=2, n_breaks=2)
    write_image(tmp_path / "eye.png", f.image)
    assert main(["refine", str(tmp_path / "eye.png"), "--input", "image", "--out", str(tmp_path / "o")]) == 0
    got = read_image(tmp_path / "o/eye_refined.tif")
    seg = segment_image(UNetBackbone(device="cpu"), read_image(tmp_path / "eye.png"))
    want = refine(seg.prob, settings=RefineSettings(method=RECOMMENDED_METHOD), device="cpu")
    want = np.where(seg.fov, want, 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
