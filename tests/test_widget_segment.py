"""The Segment panel's long run, driven as a person would: Cancel ends it at once and writes
nothing; pressing Segment while a Diffusion run refines the probability leaves that run's
input alone and says where the new probability went. The assertions read states, never times."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from qtpy.QtCore import QThreadPool  # noqa: E402

from napari_tubediff.data.synthetic import synthetic_vessels  # noqa: E402
from napari_tubediff.widgets import segment  # noqa: E402
from napari_tubediff.widgets._common import CANCELLED, DONE  # noqa: E402
from napari_tubediff.widgets.segment import PROBABILITY  # noqa: E402
from napari_tubediff.workers import process  # noqa: E402

from . import _child_tasks as ct  # noqa: E402


def dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-tubediff", name)[1]


def test_cancel_ends_the_segmentation_at_once_and_writes_nothing(make_napari_viewer, qtbot, monkeypatch):
    # the panel had no Cancel: a U-Net run on a large photograph could only be waited out
    monkeypatch.setattr(process, "_users", [0])  # this viewer's panels only
    monkeypatch.setattr(process, "WARM", ())     # a bare child: no torch to import first
    viewer = make_napari_viewer()
    viewer.add_image(synthetic_vessels((64, 64), seed=3).image, name="img")
    w = dock(viewer, "Segment")

    def endless(*_args, gate=None, **_kwargs):  # the child's run, as `_segment_job` makes it, that never ends
        return process.run_in_child(ct.sleep_then, 600, "never", should_stop=lambda: gate.cancelled)

    monkeypatch.setattr(segment, "_segment_job", endless)
    assert not w.cancel_button.enabled
    w.run_button.native.click()
    assert w.cancel_button.enabled and not w.run_button.enabled
    qtbot.waitUntil(lambda: any(c.alive() for c in process._busy), timeout=60000)
    running = [c for c in process._busy if c.alive()]
    w.cancel_button.native.click()
    assert w.status.value == "cancelling..." and not w.cancel_button.enabled
    qtbot.waitUntil(lambda: not w.busy, timeout=30000)
    assert w.job.state == CANCELLED and w.status.value == "cancelled: no probability written"
    assert len(running) == 1 and not running[0].alive()   # its process ended, not left to sleep
    assert PROBABILITY not in viewer.layers and w.run_button.enabled


def test_segment_during_a_diffusion_run_keeps_the_runs_input(make_napari_viewer, qtbot, monkeypatch):
    # the new probability replaced the data of the layer a Diffusion run was refining, with no
    # word: the run's refined field was then shown over (and read with) another probability
    monkeypatch.setenv("TUBEDIFF_WORKER_PROCESS", "0")  # both runs in threads: no process to start
    warned = []
    monkeypatch.setattr(segment, "show_warning", warned.append)
    viewer = make_napari_viewer()
    s = synthetic_vessels((64, 64), seed=3)
    viewer.add_image(s.image, name="img")
    viewer.add_image(s.probability, name=PROBABILITY)
    before = viewer.layers[PROBABILITY].data
    diff, seg = dock(viewer, "Diffusion"), dock(viewer, "Segment")
    diff.layer.value = viewer.layers[PROBABILITY]
    diff.method.value, diff.steps.value = "faithful", 100000
    seg.image.value, seg.backbone.value = viewer.layers["img"], "vesselness"
    try:
        diff.run_button.native.click()
        qtbot.waitUntil(lambda: diff._step >= 1, timeout=60000)
        seg.run_button.native.click()
        assert len(warned) == 1 and f"goes to '{PROBABILITY} [1]'" in warned[0]
        qtbot.waitUntil(lambda: not seg.busy, timeout=60000)
        assert seg.job.state == DONE and diff.busy           # the diffusion runs on
        assert viewer.layers[PROBABILITY].data is before     # with its input untouched
        new = viewer.layers[f"{PROBABILITY} [1]"].data
        assert new.shape == before.shape and 0.0 <= new.min() and new.max() <= 1.0
        assert not np.array_equal(new, before)
        assert f"into '{PROBABILITY} [1]'" in seg.status.value
        assert diff.layer.value is viewer.layers[PROBABILITY]  # the Diffusion panel keeps its layer
    finally:
        diff.cancel()
        assert QThreadPool.globalInstance().waitForDone(60000)
    qtbot.waitUntil(lambda: not diff.busy, timeout=30000)
    # with no run on it, the next segmentation replaces the probability as before
    seg.run_button.native.click()
    qtbot.waitUntil(lambda: not seg.busy, timeout=60000)
    assert viewer.layers[PROBABILITY].data is not before and len(warned) == 1


def test_a_stack_of_three_planes_is_refused_in_the_panel(make_napari_viewer, monkeypatch):
    # it was segmented as a volume by region3d (docs/reliability.md, "Unseen inputs")
    errors = []
    monkeypatch.setattr(segment, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([synthetic_vessels((48, 48), seed=i).image for i in range(3)]), name="z3")
    w = dock(viewer, "Segment")
    w.image.value = viewer.layers["z3"]
    w.run_button.native.click()
    assert errors == ["'z3' is a stack of 3 planes (3, 48, 48): too few to segment as a volume (at least "
                      "5), and they may be channels or time points: segment the whole z-stack, or save each "
                      "plane (or the one channel) as its own 2D image "
                      "(layer list: right click > Split Stack)"]
    assert w.job is None and PROBABILITY not in viewer.layers
