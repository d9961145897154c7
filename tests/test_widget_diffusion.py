"""The Diffusion panel, driven as a person would: choose a layer, press Run, watch, cancel.

Pause, Step, snapshots and Back to snapshot: tests/test_widget_loop.py."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_tubediff.data.synthetic import synthetic_vessels  # noqa: E402
from napari_tubediff.widgets.diffusion import REFINED  # noqa: E402


def _wait_done(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout)


def test_sample_and_run_updates_the_refined_layer_live(viewer_and_widget, qtbot):
    viewer, w = viewer_and_widget
    viewer.open_sample("napari-tubediff", "synthetic")
    assert w.layer.value.name == "synthetic probability"  # chosen for the user
    w.method.value = "faithful"  # the PDE alone (the default gated+dti: tests/test_widget_gaps.py)
    w.steps.value = 12
    w.every.value = 3
    seen = []
    on_frame = w._on_frame

    def record(job, frame):
        if frame.field is not None:  # the first frame carries the directions
            seen.append((frame.step, float(frame.field.sum())))
        on_frame(job, frame)

    w._on_frame = record
    w.run_button.native.click()
    assert not w.run_button.enabled and w.cancel_button.enabled  # running
    _wait_done(qtbot, w)
    # a frame every 3 steps, each taken in (the worker waits for the panel), the last included
    assert [s for s, _ in seen] == [3, 6, 9, 12]
    assert all(a[1] <= b[1] for a, b in zip(seen, seen[1:], strict=False))
    refined = viewer.layers[REFINED].data
    prob = viewer.layers["synthetic probability"].data
    assert refined.shape == prob.shape
    assert (refined >= prob).all() and refined.max() <= 1
    s = synthetic_vessels((256, 256), seed=0)
    assert (refined > 0.5)[s.breaks].mean() > (prob > 0.5)[s.breaks].mean() + 0.2  # gaps filled
    assert w.status.value == "step 12 / 12"
    assert w.run_button.enabled and not w.cancel_button.enabled


def test_worker_body_yields_every_nth_step_and_the_last():
    from napari_tubediff.core.refine import RefineSettings
    from napari_tubediff.widgets.diffusion import _diffusion_job

    u = synthetic_vessels((64, 64), seed=2).probability
    settings = RefineSettings(steps=10)
    frames = list(_diffusion_job(u, None, settings, every=2))
    assert frames[0].field is None and frames[0].directions.shape == (2, 64, 64)  # directions first
    assert [f.step for f in frames[1:]] == [2, 4, 6, 8, 10]
    v = frames[0].directions
    assert [f.step for f in _diffusion_job(u, v, settings, every=4)] == [4, 8, 10]
    # continuing from a state: steps are counted from `start`, and the field matches one run
    assert frames[2].step == 4
    later = list(_diffusion_job(frames[2].field, v, settings, start=4, steps=6, every=3))
    assert [f.step for f in later] == [7, 10]
    np.testing.assert_allclose(later[-1].field, frames[-1].field, atol=1e-6)


def test_cancel_stops_the_run(viewer_and_widget, qtbot):
    viewer, w = viewer_and_widget
    viewer.add_image(synthetic_vessels((128, 128), seed=1).probability, name="probability")
    w.steps.value = 100000
    w.run_button.native.click()
    qtbot.waitUntil(lambda: REFINED in viewer.layers, timeout=30000)
    w.cancel_button.native.click()
    _wait_done(qtbot, w)
    assert w.status.value.startswith("cancelled at step")
    assert w.run_button.enabled and not w.cancel_button.enabled
    assert viewer.layers[REFINED].data.shape == (128, 128)  # the last step shown is kept


def test_bad_layers_give_a_notification_not_a_traceback(viewer_and_widget, qtbot, monkeypatch):
    # the four cases in one panel (a viewer each cost 0.6 s), each bad layer alone in the viewer
    viewer, w = viewer_and_widget
    messages = []
    monkeypatch.setattr("napari_tubediff.widgets.diffusion.show_error", messages.append)
    for bad, expected in [("none", "Choose"), ("rgb", "RGB"), ("nan", "NaN"), ("range", "[0, 1]")]:
        viewer.layers.clear()
        messages.clear()
        if bad == "rgb":
            viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
        elif bad == "nan":
            a = np.zeros((32, 32), np.float32)
            a[3, 3] = np.nan
            viewer.add_image(a, name="probability")
        elif bad == "range":
            viewer.add_image(np.full((32, 32), 7.0, np.float32), name="probability")
        w.layer.reset_choices()
        w.run()
        assert w._worker is None and REFINED not in viewer.layers, bad
        assert len(messages) == 1 and expected in messages[0], (bad, messages)


def test_large_dt_is_announced_as_sub_stepping(viewer_and_widget):
    _, w = viewer_and_widget
    w.dt.value = 2.0
    assert "sub-steps" in w.status.value
    w.dt.value = 0.25
    assert w.status.value == ""


def test_sub_step_notice_counts_the_volume_dimensions(viewer_and_widget):
    viewer, w = viewer_and_widget
    # dt = 0.4 is below the 2D limit (0.465) but above the 3D one (0.31) for lambda 1, order 8
    viewer.add_image(np.zeros((8, 16, 16), np.float32), name="probability volume")
    w.layer.value = viewer.layers["probability volume"]
    w.lambda_par.value, w.lambda_perp.value, w.order.value = 1.0, 0.02, 8
    w.dt.value = 0.4
    assert "2 sub-steps" in w.status.value
    viewer.add_image(np.zeros((16, 16), np.float32), name="probability plane")
    w.layer.value = viewer.layers["probability plane"]
    assert w.status.value == ""


def test_a_second_probability_never_overwrites_the_first_refined_layer(viewer_and_widget, monkeypatch):
    """One image's refined layer is kept when another probability (Segment replaced it, or the
    annotator's own layer named 'refined') is diffused: renamed, never overwritten."""
    viewer, w = viewer_and_widget
    monkeypatch.setattr("napari_tubediff.widgets.diffusion.show_info", lambda _m: None)
    mine = viewer.add_image(np.full((32, 32), 0.25, np.float32), name=REFINED)  # the annotator's
    prob = viewer.add_image(synthetic_vessels((32, 32), seed=1).probability, name="probability")
    w.layer.value = prob
    w.reset()                                  # (Reset draws step 0 into the refined layer at once)
    assert mine.name == "refined (earlier)" and (mine.data == 0.25).all()
    first = viewer.layers[REFINED]
    r1 = np.clip(prob.data + 0.3, 0, 1)         # as a run would leave it (runs: the tests above)
    first.data = r1
    # the same probability again (another direction scale: the state starts over): the same layer
    w.sigma.value = 2.0
    w.reset()
    assert viewer.layers[REFINED] is first and np.array_equal(first.data, prob.data)
    first.data = r1                            # (as a run would leave it)
    prob.data = synthetic_vessels((32, 32), seed=2).probability  # another image's (Segment's in place)
    w.reset()
    assert first.name == "refined (earlier) [1]" and np.array_equal(first.data, r1)
    assert viewer.layers[REFINED] is not first and np.array_equal(viewer.layers[REFINED].data, prob.data)
    prob2 = viewer.add_image(synthetic_vessels((32, 32), seed=3).probability, name="probability 2")
    w.layer.value = prob2
    w.reset()
    assert "refined (from probability)" in viewer.layers
    assert np.array_equal(viewer.layers[REFINED].data, prob2.data)
