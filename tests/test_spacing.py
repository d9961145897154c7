"""Voxel spacing: physical derivatives, stability limit, directions and diffusion on
anisotropic voxels (issue 16, deliverable 1)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tubediff.core.checks import check_spacing, relative_spacing
from napari_tubediff.core.diffusion import (
    diffuse,
    diffusion_rhs,
    diffusion_tensor,
    max_stable_dt,
    plan_substeps,
)
from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.refine import RefineSettings, refine
from napari_tubediff.core.stencils import derivative, divergence, gradient

AXIS = np.array([1.0, 0.0, 1.0]) / np.sqrt(2)  # 45 degrees in the (z, x) plane


def tube(shape, spacing, radius=2.5, segment=True):
    """A Gaussian tube segment along `AXIS` with a dip at its centre, sampled at the physical
    points ``index * spacing`` (the same continuous field for every spacing); with
    ``segment=False`` the whole straight tube."""
    z, y, x = np.meshgrid(*[np.arange(n) * h for n, h in zip(shape, spacing, strict=True)], indexing="ij")
    d = np.stack([z - 22.5, y - 11.5, x - 23.5])
    t = np.tensordot(AXIS, d, 1)
    u = np.exp(-((d**2).sum(0) - t**2) / (2 * radius**2))
    if not segment:
        return u.astype(np.float32)
    u *= 1 / (1 + np.exp((np.abs(t) - 18.0) / 1.5))  # ends inside the box: no boundary effects
    u *= 1 - np.exp(-(t**2) / 18.0)  # the gap the diffusion fills
    return u.astype(np.float32)


# 46 planes at spacing 1 and 16 at spacing 3 cover the same z = 0..45: every third plane
ISO = tube((46, 24, 48), (1, 1, 1))
ANI = tube((16, 24, 48), (3, 1, 1))
KW = dict(lambda_par=1.0, lambda_perp=0.02, dt=0.25, steps=30)


def along(shape):
    return np.broadcast_to(AXIS.astype(np.float32)[:, None, None, None], (3, *shape)).copy()


def test_same_samples():
    np.testing.assert_array_equal(ISO[::3], ANI)


@pytest.mark.parametrize("h", [0.5, 3.0])
def test_derivatives_in_physical_units(h):
    x = np.arange(20) * h
    # d/dx x^2 = 2x, exact for a second-order stencil away from the padded ends
    np.testing.assert_allclose(derivative(x**2, 0, order=2, spacing=h)[2:-2], 2 * x[2:-2], rtol=1e-12)
    # u = i^2 on a grid of spacing h is (x/h)^2: d2u/dx2 = 2 / h^2 (composite central stencil)
    u = np.add.outer(np.arange(20.0) ** 2, np.zeros(12))
    lap = divergence(gradient(u, order=4, spacing=(h, 1.0)), order=4, spacing=(h, 1.0))
    np.testing.assert_allclose(lap[5:-5], 2 / h**2, rtol=1e-10)
    # the spacing of the other axis does not enter
    np.testing.assert_allclose(derivative(u, 1, spacing=(h, 7.0)), 0, atol=1e-12)


def test_diffusion_rhs_of_a_quadratic_with_spacing():
    # u = x^2 + 3 y^2 in physical coordinates (rows y spaced 2, columns x spaced 0.5),
    # isotropic D = 1: div grad u = 2 + 6 = 8 everywhere inside
    y, x = np.meshgrid(np.arange(16) * 2.0, np.arange(20) * 0.5, indexing="ij")
    D = diffusion_tensor(np.zeros((2, 16, 20)), 1.0, 1.0)
    f = diffusion_rhs(x**2 + 3 * y**2, D, order=4, spacing=(2.0, 0.5))
    np.testing.assert_allclose(f[4:-4, 4:-4], 8.0, rtol=1e-9)


def test_stable_limit_scales_with_spacing():
    base = max_stable_dt(1.0, 0.1, order=8, ndim=3)
    assert max_stable_dt(1.0, 0.1, order=8, ndim=3, spacing=(1, 1, 1)) == base
    assert max_stable_dt(1.0, 0.1, order=8, ndim=3, spacing=(2, 2, 2)) == pytest.approx(4 * base)
    # sum 1/h^2 = 1/9 + 2 replaces ndim = 3
    limit = max_stable_dt(1.0, 0.1, order=8, ndim=3, spacing=(3, 1, 1))
    assert limit == pytest.approx(base * 3 / (2 + 1 / 9))
    dt = 0.9 * max_stable_dt(1.0, 0.1, order=8, ndim=2, spacing=(0.5, 0.5))
    assert plan_substeps(dt, 1.0, 0.1, 8, 2, spacing=(0.5, 0.5)) == 1
    assert plan_substeps(dt, 1.0, 0.1, 8, 2) == 1  # coarser default grid: stable too
    assert plan_substeps(4 * dt, 1.0, 0.1, 8, 2, spacing=(0.5, 0.5)) == 4


def test_spacing_is_stable_at_the_limit():
    # the highest frequency on a fine grid grows without bound past the limit and not below it
    u = (0.5 + 0.4 * (-1.0) ** np.add.outer(np.arange(32), np.arange(32))).astype(np.float32)
    v = np.zeros((2, 32, 32), np.float32)
    limit = max_stable_dt(1.0, 1.0, order=8, ndim=2, spacing=(0.5, 0.25))
    out = diffuse(u, v, lambda_par=1.0, lambda_perp=1.0, dt=0.98 * limit, steps=50,
                  spacing=(0.5, 0.25))
    assert np.ptp(out[8:-8, 8:-8]) < np.ptp(u)  # smoothed, not blown up
    # the substep plan keeps a step of 3 limits stable as well
    out = diffuse(u, v, lambda_par=1.0, lambda_perp=1.0, dt=3 * limit, steps=10, spacing=(0.5, 0.25))
    assert np.ptp(out[8:-8, 8:-8]) < np.ptp(u)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("shape,spacing", [((24, 30), (2.0, 0.5)), ((12, 16, 20), (3.0, 1.0, 0.5))])
def test_fast_paths_match_the_physical_reference(backend, shape, spacing):
    # numba and torch run the unit-grid operator on D / (h_i h_j); the numpy reference
    # differentiates in physical units: the two routes agree to float32 round-off
    rng = np.random.default_rng(0)
    u = rng.random(shape).astype(np.float32)
    v = rng.standard_normal((len(shape), *shape))
    v = (v / np.linalg.norm(v, axis=0)).astype(np.float32)
    kw = dict(lambda_par=1.0, lambda_perp=0.1, dt=0.2, steps=5, spacing=spacing)
    ref = diffuse(u, v, backend="numpy", **kw)
    np.testing.assert_allclose(diffuse(u, v, backend=backend, device="cpu", **kw), ref, atol=2e-5)
    assert np.abs(diffuse(u, v, backend="numpy", **{**kw, "spacing": None}) - ref).max() > 0.01


def test_tube_at_45_degrees_diffuses_like_the_resampled_isotropic_one():
    """The issue's test: the tube sampled with spacing (3, 1, 1) refines like the same tube
    sampled isotropically, refined, then resampled (every third plane).

    Tolerance: both runs start from the same samples, so what differs is the operator.
    The local error of the coarse run is at most ``T * max|f_3(u0) - f_1(u0)[::3]|``, the
    right-hand side's discretisation error (measured here on the initial field) times the
    total time T = steps * dt (the diffusion with clipping does not amplify differences).
    Twice that allows for the error's own change along the run; spacing ignored, the
    difference is several times larger (0.37 against 0.02 measured).
    """
    D1 = diffusion_tensor(along(ISO.shape), KW["lambda_par"], KW["lambda_perp"])
    D3 = diffusion_tensor(along(ANI.shape), KW["lambda_par"], KW["lambda_perp"])
    rhs_err = np.abs(diffusion_rhs(ISO, D1)[::3] - diffusion_rhs(ANI, D3, spacing=(3, 1, 1))).max()
    tol = 2 * KW["steps"] * KW["dt"] * rhs_err
    iso = diffuse(ISO, along(ISO.shape), **KW)[::3]
    assert np.abs(iso - ANI).max() > 0.3  # the diffusion did fill the gap
    err = np.abs(diffuse(ANI, along(ANI.shape), spacing=(3, 1, 1), **KW) - iso).max()
    ignored = np.abs(diffuse(ANI, along(ANI.shape), **KW) - iso).max()
    assert err < tol < ignored


def _angle(v, mask):
    return np.degrees(np.arccos(np.clip(np.abs(np.tensordot(AXIS, v[:, mask], 1)), 0, 1)))


@pytest.mark.parametrize("method", ["hessian", "structure"])
def test_directions_follow_the_tube_on_anisotropic_voxels(method):
    # a uniform straight tube (intensity changes along a segment tilt the Hessian off the
    # axis), scored inside, away from the faces where the Gaussian meets the edge
    iso, ani = tube((46, 24, 48), (1, 1, 1), 3.0, False), tube((16, 24, 48), (3, 1, 1), 3.0, False)
    inner = np.zeros(ani.shape, bool)
    inner[3:-3, 6:-6, 9:-9] = True
    v = estimate_directions(ani, 2.0, spacing=(3, 1, 1), method=method)
    core = inner & (ani > 0.5) & (np.abs(v).sum(0) > 0)
    assert core.sum() > 50
    with_spacing = np.median(_angle(v, core))
    isotropic = np.median(_angle(estimate_directions(iso, 2.0, method=method)[:, ::3], core))
    ignored = np.median(_angle(estimate_directions(ani, 2.0, method=method), core))
    # the voxel-index tensor sees the tube at atan(1/3) = 18 degrees from x: 27 degrees off
    assert isotropic < 3 and with_spacing < 5
    assert ignored > 20


def test_refine_with_spacing_matches_the_isotropic_refinement():
    # the whole refine (Hessian directions + diffusion): closer to the resampled isotropic
    # refinement than with the spacing ignored, on average and at the worst voxel
    iso = refine(ISO)[::3]
    err = np.abs(refine(ANI, settings=RefineSettings(spacing=(3, 1, 1))) - iso)
    ignored = np.abs(refine(ANI) - iso)
    assert err.mean() < 0.6 * ignored.mean()
    assert err.max() < ignored.max()


def test_refine_spacing_is_relative():
    # micrometres or voxels: only the anisotropy counts, sigma and dt stay in finest voxels
    a = refine(ANI, settings=RefineSettings(spacing=(1.5, 0.5, 0.5), steps=5))
    b = refine(ANI, settings=RefineSettings(spacing=(3, 1, 1), steps=5))
    np.testing.assert_array_equal(a, b)
    u = ISO[::4, ::2, ::2]
    np.testing.assert_array_equal(refine(u, settings=RefineSettings(spacing=(0.6, 0.6, 0.6), steps=5)),
                                  refine(u, steps=5))


def test_bad_spacing():
    assert check_spacing(2, 3) == (2.0, 2.0, 2.0)
    assert relative_spacing((5.0, 0.625, 0.625), 3) == (8.0, 1.0, 1.0)
    for bad in [(1, 1), (0, 1, 1), (1, -1, 1), (np.nan, 1, 1), "abc", (1, 1, np.inf)]:
        with pytest.raises(ValueError, match="spacing must give one positive length per axis"):
            check_spacing(bad, 3)
    with pytest.raises(ValueError, match="spacing"):
        diffuse(ANI, along(ANI.shape), dt=0.1, steps=1, spacing=(1, 1))
    with pytest.raises(ValueError, match="2 entries but the field is 3D"):
        refine(ANI, settings=RefineSettings(spacing=(1, 1)))


def test_read_spacing_from_tiff_metadata(tmp_path):
    import tifffile

    from napari_tubediff.data.io import choose_spacing, read_spacing

    vol = np.zeros((4, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", vol, imagej=True, resolution=(1 / 0.625, 1 / 0.625),
                     metadata={"spacing": 5.0, "unit": "um"})
    assert read_spacing(tmp_path / "ij.tif", 3) == pytest.approx((5.0, 0.625, 0.625))
    tifffile.imwrite(tmp_path / "nm.tif", vol, imagej=True, resolution=(1 / 625, 1 / 625),
                     metadata={"spacing": 5000.0, "unit": "nm"})
    assert read_spacing(tmp_path / "nm.tif", 3) == pytest.approx((5.0, 0.625, 0.625))  # micrometres
    tifffile.imwrite(tmp_path / "ome.ome.tif", vol, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5,
                               "PhysicalSizeX": 0.25})
    assert read_spacing(tmp_path / "ome.ome.tif", 3) == pytest.approx((2.0, 0.5, 0.25))
    tifffile.imwrite(tmp_path / "plain.tif", vol)  # no z spacing anywhere: isotropic
    assert read_spacing(tmp_path / "plain.tif", 3) is None
    assert choose_spacing(tmp_path / "plain.tif", 3) == (None, "none in the file; --spacing sets one")
    assert choose_spacing(tmp_path / "ij.tif", 3, (1.0, 1.0, 1.0))[0] == (1.0, 1.0, 1.0)  # the user's wins


def test_cli_refine_takes_the_spacing_from_the_file(tmp_path, capsys):
    import tifffile

    from napari_tubediff.cli import main

    u = (ANI * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "meta.tif", u, imagej=True, resolution=(1.0, 1.0),
                     metadata={"spacing": 3.0, "unit": "um"})
    tifffile.imwrite(tmp_path / "bare.tif", u)
    args = ["--steps", "2", "--method", "faithful"]
    assert main(["refine", str(tmp_path / "meta.tif"), "--out", str(tmp_path / "a"), *args]) == 0
    assert "voxel spacing 3 x 1 x 1 (from the file's metadata)" in capsys.readouterr().err
    assert main(["refine", str(tmp_path / "bare.tif"), "--out", str(tmp_path / "b"), "--spacing", "6,2,2",
                 *args]) == 0
    assert "voxel spacing 6 x 2 x 2 (given)" in capsys.readouterr().err
    a = tifffile.imread(tmp_path / "a" / "meta_refined.tif")
    b = tifffile.imread(tmp_path / "b" / "bare_refined.tif")
    np.testing.assert_array_equal(a, b)  # the same ratios: the same refinement
    expected = refine(u / np.float32(255), settings=RefineSettings(steps=2, spacing=(3, 1, 1)))
    np.testing.assert_allclose(a, expected, atol=1e-6)
    assert main(["refine", str(tmp_path / "bare.tif"), "--out", str(tmp_path / "c"), "--spacing", "3,0"]) == 2
    assert "--spacing takes positive lengths" in capsys.readouterr().err


def test_snapshot_budget_that_does_not_fit_is_refused(monkeypatch):
    from napari_tubediff.core import checks
    from napari_tubediff.core.diffusion import DIFFUSE_BYTES

    shape = (128, 512, 512)  # 128 MiB per float32 snapshot, 1.4 GiB for the 3D diffusion
    monkeypatch.setattr(checks, "available_memory", lambda: 2 * 2**30)
    run = 128 * 512 * 512 * DIFFUSE_BYTES[3]
    assert checks.check_snapshot_memory(shape, 2, DIFFUSE_BYTES[3]) == run + 2 * 2**27
    with pytest.raises(ValueError, match=r"10 snapshots of 128x512x512 \(128 MiB each\) and the diffusion "
                       r"\(1.4 GiB\) need 2.7 GiB, more than the 2.0 GiB available; at most 4 snapshot"):
        checks.check_snapshot_memory(shape, 10, DIFFUSE_BYTES[3])
    monkeypatch.setattr(checks, "available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match="not even the diffusion and 2 snapshots fit; refine it in blocks"):
        checks.check_snapshot_memory(shape, 2, DIFFUSE_BYTES[3])


def test_blockwise_refinement_with_spacing_equals_the_whole():
    from napari_tubediff.batch.chunked import refine_chunked

    s = RefineSettings(steps=3, spacing=(3, 1, 1))
    whole = refine(ANI, settings=s)
    # equal to float32 round-off (1 ulp on 12 of 18432 voxels: the derivative-of-Gaussian
    # filters of anisotropic voxels sum in another order on a block than on the whole)
    np.testing.assert_allclose(refine_chunked(ANI, s, chunks=(8, 12, 24)).compute(), whole, rtol=1e-5,
                               atol=1e-7)
    assert np.abs(whole - refine(ANI, steps=3)).max() > 0.01  # and the spacing did change it


def test_cli_measure_takes_the_spacing_from_the_file(tmp_path, capsys):
    import tifffile

    from napari_tubediff.cli import main

    m = np.zeros((12, 9, 9), np.uint8)
    m[1:11, 3:6, 3:6] = 255  # a vessel along z
    tifffile.imwrite(tmp_path / "m.tif", m, imagej=True, resolution=(1.0, 1.0),
                     metadata={"spacing": 5.0, "unit": "um"})
    tifffile.imwrite(tmp_path / "bare.tif", m)
    assert main(["measure", str(tmp_path / "m.tif"), "--out", str(tmp_path / "a.csv")]) == 0
    assert "spacing 5 x 1 x 1, from the file's metadata" in capsys.readouterr().out
    assert main(["measure", str(tmp_path / "bare.tif"), "--out", str(tmp_path / "b.csv"),
                 "--spacing", "5", "1", "1"]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert main(["measure", str(tmp_path / "bare.tif"), "--out", str(tmp_path / "c.csv")]) == 0
    assert (tmp_path / "a.csv").read_text() != (tmp_path / "c.csv").read_text()  # 1-voxel lengths


def test_vectors_are_drawn_in_voxel_coordinates():
    from napari_tubediff.core.directions import sample_vectors

    v = along((6, 6, 6)).astype(np.float32)  # physical unit vectors at 45 degrees in (z, x)
    vec = sample_vectors(v, np.ones((6, 6, 6), bool), step=3, length=3.0, spacing=(3, 1, 1))[:, 1]
    # a layer with scale (3, 1, 1) draws vec * scale: along the tube, 3 (finest) units long
    drawn = vec * np.array([3.0, 1.0, 1.0])
    np.testing.assert_allclose(drawn, np.tile(3.0 * AXIS, (len(vec), 1)), atol=1e-6)


def test_doctests_of_the_spacing_code():
    import doctest

    from napari_tubediff.core import checks, diffusion, directions, stencils
    from napari_tubediff.data import io

    for mod in (checks, stencils, diffusion, directions):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0, mod.__name__
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for f in (io.read_spacing, io.parse_spacing, io.choose_spacing):
        for t in finder.find(f, globs=dict(vars(io))):
            assert runner.run(t).failed == 0, f.__name__
