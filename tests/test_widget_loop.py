"""The annotator's whole loop, driven as a person would: sample, segment, directions,
diffusion (run, step, scrub back), review a gap, accept, undo, score, export."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari.utils.key_bindings import coerce_keybinding  # noqa: E402

from napari_tubediff.widgets._common import SHORTCUTS, camera  # noqa: E402
from napari_tubediff.widgets.diffusion import HISTORY, REFINED  # noqa: E402


def dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-tubediff", name)[1]


def idle(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout)


def press(viewer, key):
    viewer.keymap[coerce_keybinding(key)](viewer)


def test_the_annotators_loop(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-tubediff", "synthetic")
    seg, dirs, diff = dock(viewer, "Segment"), dock(viewer, "Directions"), dock(viewer, "Diffusion")
    gaps, acc, met = dock(viewer, "Bridged gaps"), dock(viewer, "Accept"), dock(viewer, "Metrics")
    prob = viewer.layers["synthetic probability"]

    # 1. segment the grey image with the first backbone
    seg.image.value = viewer.layers["synthetic image"]
    seg.run_button.native.click()
    idle(qtbot, seg)
    p = viewer.layers["probability"].data
    assert p.shape == (256, 256) and p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1
    assert "probability" in seg.status.value

    # 2. directions of the sample's probability (the one with breaks)
    dirs.layer.value = prob
    dirs.run_button.native.click()
    idle(qtbot, dirs)
    vec = viewer.layers["directions"]
    n = len(vec.data)
    assert n > 20 and vec.data.shape[1:] == (2, 2)
    ang = vec.features["angle"].to_numpy()
    assert ang.min() >= 0 and ang.max() < 180 and ang.std() > 10  # many orientations
    dirs.step.value = 12  # sparser grid: redrawn at once, no worker
    assert 0 < len(viewer.layers["directions"].data) < n

    # 3. diffusion: run 12 steps live, then one more Step
    diff.layer.value = prob
    diff.method.value = "faithful"  # the PDE alone: Step runs past the last step
    diff.steps.value = 12
    diff.run_button.native.click()
    assert not diff.run_button.enabled and diff.pause_button.enabled
    idle(qtbot, diff)
    assert diff._step == 12 and diff.status.value == "step 12 / 12"
    assert HISTORY not in viewer.layers and viewer.dims.ndim == 2  # no time axis: the panel's slider
    assert diff.scrubber.max == 12 and diff.scrubber.value == 12
    assert diff._history.steps == list(range(13))  # every step kept, even those not drawn
    r12 = viewer.layers[REFINED].data.copy()
    press(viewer, SHORTCUTS["step"])  # the Step shortcut
    idle(qtbot, diff)
    assert diff._step == 13 and diff._history.steps[-1] == 13
    r13 = viewer.layers[REFINED].data
    assert (r13 >= r12).all() and (r13 > r12).any()

    # scrub back to step 0 with the panel's slider: the refined layer shows the probability
    diff.scrubber.value = 0
    assert diff.scrub.value == "snapshot 1 of 14: step 0 / 12; the run is at step 13"
    np.testing.assert_array_equal(viewer.layers[REFINED].data, prob.data)
    diff.export_button.native.click()                # the history as a layer, on request
    hist = viewer.layers[HISTORY]
    assert hist.data.shape == (14, 256, 256) and hist.metadata["steps"] == list(range(14))
    assert viewer.dims.axis_labels[0] == "step"
    np.testing.assert_array_equal(hist.data[0], prob.data)
    viewer.layers.remove(hist)
    diff.scrubber.value = 13                          # back to the newest for the next panels
    np.testing.assert_array_equal(viewer.layers[REFINED].data, r13)

    # 4. bridged gaps: find, go to the most confident, reject it
    gaps.probability.value = prob
    assert gaps.refined.value is viewer.layers[REFINED]
    gaps.run_button.native.click()
    idle(qtbot, gaps)
    found = gaps._gaps
    assert len(found) >= 2 and gaps.list.count() == len(found)
    assert [g.confidence for g in found] == sorted((g.confidence for g in found), reverse=True)
    bridged = viewer.layers["bridged"].data
    assert bridged.max() == len(found)
    gaps.list.setCurrentRow(1)
    np.testing.assert_allclose(camera(viewer).center[-2:], found[1].centroid, atol=1e-6)
    gaps.list.setCurrentRow(0)
    np.testing.assert_allclose(camera(viewer).center[-2:], found[0].centroid, atol=1e-6)
    assert camera(viewer).zoom > 1
    gaps.reject_button.native.click()
    assert gaps.list.currentRow() == 1 and "rejected" in gaps.list.item(0).text()
    assert list(viewer.layers["bridged"].features["status"][:3]) == ["background", "rejected", "unreviewed"]

    # 5. accept into 'curated', around a painted label that must survive
    curated = viewer.add_labels(np.zeros((256, 256), np.uint8), name="curated")
    ys, xs = np.nonzero(r13 >= 0.5)
    curated.data[ys[0], xs[0]] = 2
    assert acc.curated.value is curated and acc.gaps.value is viewer.layers["bridged"]
    assert acc.refined.value is viewer.layers[REFINED]
    press(viewer, SHORTCUTS["accept"])
    c = curated.data
    assert c[ys[0], xs[0]] == 2                        # painted label kept
    assert not c[bridged == 1].any()                   # the rejected gap is left out
    assert (c[bridged == 2] == 1).all()                # an unreviewed gap is accepted
    expected = (r13 >= 0.5) & (bridged != 1)
    expected[ys[0], xs[0]] = False
    np.testing.assert_array_equal(c == 1, expected)
    assert "accepted" in acc.status.value
    press(viewer, SHORTCUTS["undo"])                   # one undo takes the whole accept back
    assert (curated.data == 0).sum() == 256 * 256 - 1 and curated.data[ys[0], xs[0]] == 2
    assert acc.status.value == "undid the last edit of 'curated'"
    press(viewer, SHORTCUTS["undo"])                   # nothing left to undo: the status says so
    assert acc.status.value == "nothing to undo in 'curated'" and curated.data[ys[0], xs[0]] == 2
    acc.accept_button.native.click()
    assert (curated.data == 1).sum() == expected.sum()

    # 6. score three layers against the truth, export CSV
    met.predictions.value = [prob, viewer.layers[REFINED], curated]
    assert met.truth.value is viewer.layers["synthetic truth"]
    met.run_button.native.click()
    idle(qtbot, met)
    assert met.table.rowCount() == 3 and met.table.columnCount() == 7  # with topology: + 3
    assert [met.table.item(i, 0).text() for i in range(3)] == ["synthetic probability", REFINED, "curated"]
    dice = {r["name"]: r["dice"] for r in met.rows}
    assert 0.5 < dice["synthetic probability"] <= 1 and 0.5 < dice[REFINED] <= 1
    out = met.export_csv(tmp_path / "metrics.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "name,dice,cldice,vca,components,betti0_error,betti1_error"
    assert len(lines) == 4 and lines[2].startswith("refined,")


def test_pause_resume_and_step_while_paused(make_napari_viewer, qtbot):
    from napari_tubediff.data.synthetic import synthetic_vessels
    from napari_tubediff.widgets._common import PAUSED, RUNNING

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_vessels((96, 96), seed=3).probability, name="probability")
    diff = dock(viewer, "Diffusion")
    diff.method.value = "faithful"  # the PDE alone: N steps, no completion step
    diff.steps.value = 100000
    diff.run_button.native.click()
    job = diff.job
    qtbot.waitUntil(lambda: diff._step > 0, timeout=30000)
    diff.pause_button.native.click()
    assert job.state == PAUSED and diff.pause_button.text == "Resume"
    qtbot.waitUntil(lambda: job._held, timeout=10000)     # the step in flight arrived; the worker waits
    at = diff._step
    assert diff.status.value == f"paused at step {at} / 100000"
    qtbot.wait(200)
    assert diff._step == at and job.state == PAUSED          # nothing moves while paused
    diff.pause_button.native.click()                         # resume
    assert job.state == RUNNING and diff.status.value.startswith("step ")
    qtbot.waitUntil(lambda: diff._step > at, timeout=10000)
    diff.step_button.native.click()                          # Step while running pauses first
    assert job.state == PAUSED
    qtbot.waitUntil(lambda: job._held, timeout=10000)
    at = diff._step
    diff.step_button.native.click()                          # then advances exactly one step
    qtbot.waitUntil(lambda: diff._step == at + 1 and job._held, timeout=30000)
    qtbot.wait(100)
    assert diff._step == at + 1 and diff._history.steps[-1] == at + 1 and job.state == PAUSED
    assert diff.status.value == f"paused at step {at + 1} / 100000"
    diff.reset_button.native.click()
    assert diff._step == 0 and diff._history.steps == [0] and diff.run_button.enabled
    np.testing.assert_array_equal(viewer.layers[REFINED].data, viewer.layers["probability"].data)


def test_back_to_a_snapshot_and_bounded_history(make_napari_viewer, qtbot):
    from napari_tubediff.data.synthetic import synthetic_vessels

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_vessels((64, 64), seed=4).probability, name="probability")
    diff = dock(viewer, "Diffusion")
    diff.max_snapshots.value = 4
    diff.method.value = "faithful"
    diff.steps.value = 3
    for _ in range(3):                                       # three Steps: snapshots 0, 1, 2, 3
        diff.step()
        idle(qtbot, diff)
    assert diff._history.steps == [0, 1, 2, 3]
    diff.step()
    idle(qtbot, diff)
    assert diff._history.steps == [0, 2, 4] and diff.scrubber.max == 2
    diff.scrubber.value = 1
    diff.restore_button.native.click()
    assert diff._step == 2 and diff._history.steps == [0, 2]
    np.testing.assert_array_equal(viewer.layers[REFINED].data, diff._history.stack()[1])
    diff.run_button.native.click()                           # continues from step 2 to 3
    idle(qtbot, diff)
    assert diff._history.steps == [0, 2, 3]


def test_retina_sample_segments_through_the_green_channel(make_napari_viewer, qtbot):
    from napari_tubediff.core.metrics import dice

    viewer = make_napari_viewer()
    viewer.open_sample("napari-tubediff", "retina")
    rgb = viewer.layers["retina"]
    assert rgb.rgb and rgb.data.shape == (256, 256, 3)
    seg = dock(viewer, "Segment")
    assert seg.image.value is rgb
    seg.fov.value = viewer.layers["retina fov"]
    seg.run_button.native.click()
    idle(qtbot, seg)
    p = viewer.layers["probability"].data
    assert p.shape == (256, 256)
    fov = viewer.layers["retina fov"].data > 0
    assert not p[~fov].any()
    # the shipped fundus U-Net (2026-11-29) sees this 256-pixel synthetic retina at its working
    # scale (x3.3) and scores 0.68 on it; the DRIVE-only one scored above 0.7 at its own size
    assert dice(p >= 0.5, viewer.layers["retina truth"].data > 0, fov) > 0.65
    assert "(fov)" in seg.status.value


PANELS = {"Segment": "segment", "Directions": "directions", "Diffusion": "diffusion",
          "Bridged gaps": "gaps", "Accept": "accept", "Metrics": "metrics"}


def test_every_panel_says_what_is_missing(make_napari_viewer, monkeypatch):
    # the six panels in one empty viewer (a viewer per panel cost 0.6 s each): none has
    # anything to choose, and each says so in one message of its own
    viewer = make_napari_viewer()
    for panel, module in PANELS.items():
        messages = []
        monkeypatch.setattr(f"napari_tubediff.widgets.{module}.show_error", messages.append)
        w = dock(viewer, panel)
        getattr(w, "accept" if panel == "Accept" else "run")()
        assert len(messages) == 1 and "hoose" in messages[0], (panel, messages)
        assert w.__dict__.get("_worker") is None, panel


def test_bad_choices_give_readable_messages(make_napari_viewer, monkeypatch, qtbot):
    viewer = make_napari_viewer()
    messages = []
    for mod in ("gaps", "accept", "metrics", "directions"):
        monkeypatch.setattr(f"napari_tubediff.widgets.{mod}.show_error", messages.append)
    a = viewer.add_image(np.zeros((32, 40), np.float32), name="probability")
    b = viewer.add_image(np.zeros((32, 32), np.float32), name="refined")
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    truth = viewer.add_labels(np.zeros((32, 32), np.uint8), name="truth")
    gaps, acc, met, dirs = (dock(viewer, n) for n in ("Bridged gaps", "Accept", "Metrics", "Directions"))
    gaps.probability.value, gaps.refined.value = a, b
    gaps.run()
    assert "differ in shape" in messages[-1]
    dirs.layer.value = viewer.layers["photo"]
    dirs.run()
    assert "RGB" in messages[-1]
    viewer.add_labels(np.zeros((32, 33), np.uint8), name="curated")
    acc.refined.value = b
    acc.accept()
    assert "differ in shape" in messages[-1]
    met.predictions.value = [a, b]
    met.truth.value = truth
    met.run()
    idle(qtbot, met)
    assert "'probability' has shape (32, 40)" in messages[-1] and met.table.rowCount() == 1


def test_a_3d_volume_goes_through_the_panels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    vol = np.zeros((6, 48, 48), np.float32)         # (planes, rows, cols): a tube with a faint break
    vol[2:5, 22:25, 3:20] = vol[2:5, 22:25, 26:45] = 0.9
    vol[2:5, 22:25, 20:26] = 0.35
    viewer.add_image(vol, name="probability")
    seg, dirs, diff = dock(viewer, "Segment"), dock(viewer, "Directions"), dock(viewer, "Diffusion")
    gaps, acc = dock(viewer, "Bridged gaps"), dock(viewer, "Accept")
    seg.image.value = viewer.layers["probability"]
    seg.run_button.native.click()
    idle(qtbot, seg)
    assert viewer.layers["probability"].data.shape == vol.shape  # updated in place, still 3D
    viewer.layers["probability"].data = vol                        # back to the field with breaks
    dirs.run_button.native.click()
    idle(qtbot, dirs)
    assert viewer.layers["directions"].data.shape[1:] == (2, 3)
    diff.steps.value = 15
    diff.run_button.native.click()
    idle(qtbot, diff)
    assert viewer.layers[REFINED].data.shape == vol.shape
    assert HISTORY not in viewer.layers and diff._history.stack().shape[1:] == vol.shape
    gaps.run_button.native.click()
    idle(qtbot, gaps)
    assert gaps._gaps and viewer.layers["bridged"].data.shape == vol.shape
    g = gaps._gaps[0]
    gaps.list.setCurrentRow(0)
    np.testing.assert_allclose(camera(viewer).center[-2:], g.centroid[1:], atol=1e-6)
    assert viewer.dims.point[-3] == pytest.approx(g.centroid[0])   # moved to the gap's plane
    acc.accept()
    assert viewer.layers["curated"].data.shape == vol.shape
    np.testing.assert_array_equal(viewer.layers["curated"].data > 0, viewer.layers[REFINED].data >= 0.5)


def test_metrics_reads_an_8bit_probability_image_by_the_value_rule(make_napari_viewer, qtbot):
    """A uint8 0..255 probability Image layer is scored as probability/255 >= 0.5 (it was read
    as label ids, so every non-zero pixel counted as vessel); a Labels layer by its labels."""
    from napari_tubediff.core.metrics import dice

    viewer = make_napari_viewer()
    truth = np.zeros((48, 48), np.uint8)
    truth[10:14, 5:40] = 1
    prob = np.zeros((48, 48), np.float32)
    prob[10:14, 5:40] = 0.9
    prob[30:34, 5:40] = 0.2                            # faint: not vessel at 0.5
    viewer.add_labels(truth, name="truth")
    viewer.add_image(prob, name="float")
    viewer.add_image((prob * 255).round().astype(np.uint8), name="eight-bit")
    viewer.add_labels((prob > 0).astype(np.uint8), name="labels")
    met = dock(viewer, "Metrics")
    met.predictions.value = [viewer.layers[n] for n in ("float", "eight-bit", "labels")]
    met.truth.value = viewer.layers["truth"]
    met.run_button.native.click()
    idle(qtbot, met)
    got = {r["name"]: r["dice"] for r in met.rows}
    assert got["float"] == got["eight-bit"] == pytest.approx(1.0)
    assert got["labels"] == pytest.approx(dice(prob > 0, truth > 0)) and got["labels"] < 0.7
