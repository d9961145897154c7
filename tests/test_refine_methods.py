"""Refinement methods (core/refine.py, core/hysteresis.py): hand-checkable arrays."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tubediff.cli import main
from napari_tubediff.core.diffusion import diffuse
from napari_tubediff.core.directions import estimate_directions
from napari_tubediff.core.dti import dti
from napari_tubediff.core.hysteresis import directional_hysteresis
from napari_tubediff.core.refine import REFINE_METHODS, RefineSettings, refine
from napari_tubediff.data.io import read_image, write_image


def _along_rows(shape):
    v = np.zeros((2, *shape), np.float32)
    v[1] = 1
    return v


def test_directional_hysteresis_grows_along_v_only():
    u = np.zeros((7, 20), np.float32)
    u[3, :6] = 0.9                      # confident vessel
    u[3, 6:12] = 0.4                    # its faint continuation: joins
    u[2, 2:6] = 0.4                     # the faint rim beside it: its neighbours along v are rim
    u[3, 14:17] = 0.4                   # faint but not reached (a 0 between)
    m = directional_hysteresis(u, _along_rows(u.shape))
    assert m[3, :12].all() and not m[3, 12:].any()
    assert not m[2].any()
    assert dti(u)[2, 2:6].all()         # DTI takes the rim


def test_directional_hysteresis_needs_a_direction_and_valid_thresholds():
    u = np.zeros((5, 9), np.float32)
    u[2, :3] = 0.9
    u[2, 3:6] = 0.4
    np.testing.assert_array_equal(directional_hysteresis(u, np.zeros((2, 5, 9), np.float32)), u >= 0.5)
    with pytest.raises(ValueError, match="low"):
        directional_hysteresis(u, high=0.3, low=0.5)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown refinement method 'bogus'; choose from faithful"):
        RefineSettings(method="bogus")


def test_faithful_is_the_plain_diffusion():
    u = np.zeros((24, 24), np.float32)
    u[11:13, 2:10] = u[11:13, 14:22] = 0.9
    v = estimate_directions(u, 3.0)
    s = RefineSettings(method="faithful", steps=5)
    np.testing.assert_allclose(refine(u, v, s), diffuse(u, v, **s.diffusion_kwargs()), atol=1e-6)


def test_gated_grows_where_the_backbone_saw_a_vessel_and_not_into_background():
    u = np.zeros((24, 40), np.float32)
    u[11:13, 2:12] = u[11:13, 16:26] = u[11:13, 30:38] = 0.9
    u[11:13, 12:16] = 0.3               # faint evidence in the first gap, none in the second
    v = _along_rows(u.shape)
    s = dict(steps=30, sigma=3.0)
    faithful = refine(u, v, method="faithful", **s)
    gated = refine(u, v, method="gated", **s)
    assert (gated >= u - 1e-6).all() and (gated <= faithful + 1e-6).all()
    assert gated[11, 12:16].min() > 0.5             # the faint gap closes
    assert gated[11, 26:30].max() < 0.1 < faithful[11, 26:30].max()   # the empty one hardly moves


def test_gated_dti_joins_a_faint_gap_without_the_faint_rim():
    u = np.zeros((15, 40), np.float32)
    u[6:9, 2:18] = u[6:9, 22:38] = 0.9
    u[7, 18:22] = 0.35                   # a faint one-pixel link
    u[2:5, 4:14] = 0.35                  # a faint blob near the vessel, joined to it by a faint rim
    u[5, 4:14] = 0.35
    out = refine(u, method="gated+dti", steps=5)
    assert (out[7, 18:22] >= 0.5).all()
    assert (out >= u - 1e-6).all()
    assert (out[2:6, 4:14] >= 0.5).sum() < (dti(u)[2:6, 4:14]).sum()   # less of DTI's sideways mass


@pytest.mark.parametrize("method", REFINE_METHODS)
def test_every_method_keeps_the_field_in_range_and_only_raises_it(method):
    rng = np.random.default_rng(0)
    u = rng.random((32, 32)).astype(np.float32) ** 3
    out = refine(u, method=method, steps=3)
    assert out.dtype == np.float32 and out.shape == u.shape
    assert (out >= u - 1e-6).all() and (out <= 1).all()


def test_cli_refine_method(tmp_path):
    u = np.zeros((32, 32), np.float32)
    u[15, 2:12] = 0.9
    u[15, 12:20] = 0.4                   # a faint continuation along the vessel
    u[15, 20:30] = 0.9
    write_image(tmp_path / "p.tif", u)
    out = str(tmp_path / "o")
    assert main(["refine", str(tmp_path / "p.tif"), "--out", out, "--method", "hysteresis"]) == 0
    mask = read_image(tmp_path / "o" / "p_mask.png") > 0
    assert mask[15, 2:30].all() and mask.sum() == 28


# --- refine_steps: the refinement as the Diffusion panel steps through it -------------------

from napari_tubediff.core.refine import (  # noqa: E402
    RECOMMENDED_METHOD,
    refine_steps,
    total_steps,
    ungated_state,
)


def _faint_gap():
    u = np.zeros((15, 40), np.float32)
    u[6:9, 2:18] = u[6:9, 22:38] = 0.9
    u[7, 18:22] = 0.35                   # a faint one-pixel link
    return u


@pytest.mark.parametrize("method", REFINE_METHODS)
def test_refine_steps_ends_at_refine_and_resumes_from_any_step(method):
    u = _faint_gap()
    s = RefineSettings(method=method, steps=6)
    v = estimate_directions(u, s.sigma)
    whole = refine(u, v, s)
    frames = list(refine_steps(u, v, s, every=4))
    n = total_steps(s)
    assert frames[-1].step == n and np.array_equal(frames[-1].field, whole)
    if method == "hysteresis":
        assert n == 1 and [f.step for f in frames] == [1]
        return
    # the completion (DTI, hysteresis) is one more step, after the last diffusion step
    assert [f.step for f in frames] == ([4, 6, 7] if n == 7 else [4, 6])
    assert (frames[-1].state is None) == (n == 7)
    # stop after 2 steps, continue from the shown field (as Back to snapshot does): the same end
    two = list(refine_steps(u, v, s, steps=2))[-1]
    rest = list(refine_steps(u, v, s, state=ungated_state(u, two.field, s), start=2))
    assert [f.step for f in rest] == list(range(3, n + 1))
    np.testing.assert_allclose(rest[-1].field, whole, atol=1e-5)


def test_gated_steps_show_the_gated_field():
    u = _faint_gap()
    s = RefineSettings(method="gated+dti", steps=3)
    v = _along_rows(u.shape)
    shown = list(refine_steps(u, v, s))
    plain = list(refine_steps(u, v, RefineSettings(method="faithful", steps=3)))
    # step 3: u0 + g (diffused - u0); g(0) ~ 0.0025 keeps the background almost where it was
    g = 0.5 * (1 + np.tanh((u - 0.3) / 0.1))
    np.testing.assert_allclose(shown[2].field, u + g * (plain[2].field - u), atol=1e-6)
    assert shown[2].field[7, 19] > u[7, 19] and shown[3].field[7, 18:22].min() == pytest.approx(0.5)
    assert RECOMMENDED_METHOD == "gated+dti"


def test_defaults_are_what_was_chosen_on_the_training_splits():
    # docs/results.md, "Refinement against DTI": chosen for the calibrated fundus U-Net
    s = RefineSettings(method=RECOMMENDED_METHOD)
    assert (s.method, s.steps, s.gate_center, s.gate_width, s.low, s.line_width, s.band, s.end_low) == (
        "gated+dti", 30, 0.3, 0.05, 0.35, 1, 0.0, 0.1)


def test_gated_dti_rejoins_a_break_dti_cannot_by_growing_the_ends():
    u = np.zeros((15, 60), np.float32)
    u[7, 2:25] = u[7, 32:58] = 0.9
    u[7, 25:32] = 0.2                    # below DTI's low (0.35), above end_low (0.1)
    v = _along_rows(u.shape)
    out = refine(u, v, method="gated+dti", steps=2)
    assert (out[7, 25:32] >= 0.5).all()
    assert not (refine(u, v, method="gated+dti", steps=2, end_low=0.0)[7, 25:32] >= 0.5).any()


def test_cli_refine_steps_default_is_what_was_measured(tmp_path, monkeypatch):
    import napari_tubediff.batch.run as run

    seen = []
    monkeypatch.setattr(run, "process_image", lambda path, out, opts, *a: seen.append(opts))
    write_image(tmp_path / "p.tif", _faint_gap())
    assert main(["refine", str(tmp_path / "p.tif"), "--out", str(tmp_path / "o")]) == 0
    # an image: 30 steps (what was measured) of the recommended method; a volume: its own default
    s = seen[-1].settings(2)
    assert s.steps == RefineSettings().steps == 30 and s.method == RECOMMENDED_METHOD
    assert main(["refine", str(tmp_path / "p.tif"), "--out", str(tmp_path / "o2"), "--steps", "7"]) == 0
    assert seen[-1].settings(2).steps == 7 and seen[-1].settings(3).steps == 7


def test_cli_refine_says_what_each_dimension_got(tmp_path, capsys):
    write_image(tmp_path / "p.tif", _faint_gap())
    assert main(["refine", str(tmp_path / "p.tif"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "Hessian directions of the probability maps" in out
    assert f"images 30 steps of {RECOMMENDED_METHOD}, volumes no refinement" in out


def test_complete_dti_keeps_a_line_or_the_vessels_own_width_across_a_break():
    from napari_tubediff.core.refine import complete_dti

    u = np.zeros((15, 40), np.float32)
    u[4:11, :16] = u[4:11, 24:] = 0.9        # a 7-pixel wide vessel, radius 4 at its centre line
    u[4:11, 16:24] = 0.35                     # broken over 8 pixels, faintly seen
    u[1:4, 2:12] = 0.35                       # DTI's sideways growth: a faint rim along one side
    line = complete_dti(u, low=0.3, line_width=1) >= 0.5
    band = complete_dti(u, low=0.3, band=1.0) >= 0.5
    assert line[:, 20].sum() == 3 and band[:, 20].sum() == 7     # the break: 3 rows, or all 7
    assert not line[1:4].any() and not band[1:4].any()          # the rim is left out either way
    assert (complete_dti(u, low=0.4) == u).all()                # nothing at or above low: unchanged


def test_complete_dti_around_added_bridges_but_does_not_widen_a_thin_vessel():
    from napari_tubediff.core.refine import complete_dti

    u = np.zeros((11, 40), np.float32)
    u[5, :16] = u[5, 24:] = 0.9               # a 1-pixel vessel broken over 8 pixels, faintly seen
    u[4:7, 16:24] = 0.35                      # (the faint evidence 3 pixels wide)
    u[4, 26:38] = u[6, 26:38] = 0.4           # faint rims either side of its right half
    line = complete_dti(u, low=0.3) >= 0.5
    own = complete_dti(u, low=0.3, around_added=True) >= 0.5
    assert line[:, 20].sum() == 3 and own[:, 20].sum() == 3     # the break: 3 rows either way
    assert line[:, 30].sum() == 3 and own[:, 30].sum() == 1     # widened to 3, or left 1 pixel wide


def test_join_ends_rejoins_a_break_along_the_axis_and_nothing_else():
    from napari_tubediff.core.refine import join_ends

    u = np.zeros((20, 60), np.float32)
    u[5, 2:20] = u[5, 27:45] = 0.9            # a vessel broken over 7 pixels, faint (0.2) in between
    u[5, 20:27] = 0.2
    u[14, 2:20] = 0.9                         # a vessel that ends, faint evidence beyond, nothing to join
    u[14, 20:40] = 0.2
    v = _along_rows(u.shape)
    added = join_ends(u, u >= 0.5, v, low=0.15)
    assert added[5, 20:27].all() and added.sum() == 7            # the break, pixel for pixel
    assert not join_ends(u, u >= 0.5, v, low=0.25).any()          # too faint: no join
    v[:] = 0
    v[0] = 1                                                      # the axis across the vessels: heads off
    assert not join_ends(u, u >= 0.5, v, low=0.15).any()


def test_join_ends_works_in_3d():
    from napari_tubediff.core.refine import join_ends

    u = np.zeros((9, 9, 40), np.float32)
    u[4, 4, 2:16] = u[4, 4, 22:38] = 0.9      # a 1-voxel tube along x, broken over 6 voxels
    u[4, 4, 16:22] = 0.2
    v = np.zeros((3, *u.shape), np.float32)
    v[2] = 1
    added = join_ends(u, u >= 0.5, v, low=0.15)
    assert added[4, 4, 16:22].all() and added.sum() == 6
