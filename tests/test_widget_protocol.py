"""The worker-to-panel protocol (widgets/_common.py: Panel, Job, Gate), driven through the
Diffusion and Fine-tune panels as a person would.

The worker computes a step only once the panel has taken in the previous one, so Pause,
Step, Cancel and Reset land within one step of what the panel shows, whatever the load on
the machine; a job's events are handled one at a time even when a Qt call processes events
inside a handler; closing the viewer mid-run cancels every worker and prints nothing.
The assertions count steps, never seconds.
"""

import threading
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from qtpy.QtCore import QThreadPool, QTimer  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_tubediff.core import refine  # noqa: E402
from napari_tubediff.data.fundus import synthetic_fundus  # noqa: E402
from napari_tubediff.data.synthetic import synthetic_vessels  # noqa: E402
from napari_tubediff.models import session  # noqa: E402
from napari_tubediff.widgets._common import CANCELLED, CANCELLING, DONE, PAUSED  # noqa: E402
from napari_tubediff.widgets.diffusion import REFINED  # noqa: E402
from napari_tubediff.workers import process  # noqa: E402

LONG = 100000  # steps: a run that only ends when told to


def dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-tubediff", name)[1]


@pytest.fixture
def panel(make_napari_viewer, monkeypatch):
    """A Diffusion panel on a small probability, and the steps its worker has computed
    (recorded in the worker thread, as they are computed)."""
    viewer = make_napari_viewer()
    viewer.add_image(synthetic_vessels((64, 64), seed=3).probability, name="probability")
    computed = [0]
    real = refine.iter_diffusion  # the panel's steps come from core.refine.refine_steps
    busy, lock = [0, 0], threading.Lock()  # runs computing now, the most at once

    def counting(*args, **kwargs):
        steps = real(*args, **kwargs)
        while True:
            with lock:
                busy[0] += 1
                busy[1] = max(busy)
            try:
                time.sleep(w.step_seconds)         # a slow step, when a test asks for one
                step, field = next(steps)
            except StopIteration:
                return
            finally:
                with lock:
                    busy[0] -= 1
            computed.append(step)
            yield step, field

    # the run in the panel's worker thread (the protocol is the same as with its separate
    # process, workers/process.py), so that the counting steps are the ones run
    monkeypatch.setenv("TUBEDIFF_WORKER_PROCESS", "0")
    monkeypatch.setattr(refine, "iter_diffusion", counting)
    w = dock(viewer, "Diffusion")
    w.method.value = "faithful"  # the PDE alone: step counts without the completion step
    w.steps.value = LONG
    w.most_at_once = lambda: busy[1]
    w.step_seconds = 0.0
    return viewer, w, computed


def running(qtbot, w, steps=3):
    w.run_button.native.click()
    qtbot.waitUntil(lambda: w._step >= steps, timeout=30000)
    return w.job


def test_the_worker_never_runs_ahead_of_the_panel(panel, qtbot):
    viewer, w, computed = panel
    w.steps.value = 40
    ahead, at_intake = [], []
    on_frame = w._on_frame

    def take_in(job, frame):
        if frame.field is not None:
            at_intake.append(max(computed) - frame.step)
        on_frame(job, frame)

    w._on_frame = take_in
    show = w.show_frame

    def slow_show():  # a busy GUI thread: every drawing takes long
        time.sleep(0.02)
        show()

    w.show_frame = slow_show
    probe = QTimer()
    probe.timeout.connect(lambda: ahead.append(max(computed) - w._step))
    probe.start(1)
    w.run_button.native.click()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)
    probe.stop()
    assert w.job.state == DONE and w._step == 40 and w.status.value == "step 40 / 40"
    assert at_intake == [0] * 40            # when a step is taken in, the worker has computed no further
    assert ahead and max(ahead) <= 1        # and at any moment it is at most one step ahead


@pytest.mark.parametrize("often", [True, False])
def test_the_status_follows_every_step_while_drawing_is_throttled(panel, qtbot, monkeypatch, often):
    """A costly drawing (a 3D history, a 3504 x 2336 photograph) is drawn a few times a run;
    the status line still follows the steps taken in, on its own timer (`STATUS_INTERVAL`):
    at 0, every step; long, it waits for the timer, and frames in between share one update
    (each new text repaints the whole window). The end is shown at once either way."""
    from napari_tubediff.widgets import _common

    monkeypatch.setattr(_common, "DRAW_INTERVAL", 3600.0)  # after the first, no drawing until the end
    monkeypatch.setattr(_common, "STATUS_INTERVAL", 0.0 if often else 3600.0)
    viewer, w, computed = panel
    w.steps.value = 30
    lags, texts = [], set()
    on_frame = w._on_frame

    def take_in(job, frame):
        on_frame(job, frame)
        QTimer.singleShot(0, lambda: (lags.append(w._step - int(w.status.value.split()[1])),
                                      texts.add(w.status.value)))

    w._on_frame = take_in
    w.run_button.native.click()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)
    assert w.job.state == DONE and w.status.value == "step 30 / 30"
    assert len(lags) >= 25
    if often:
        assert max(lags) <= 1 and len(texts) >= 25
    else:   # the first frame's drawing, then nothing new until the end
        assert max(lags) >= 20 and len(texts) <= 2


def test_pause_lands_within_one_step_of_the_display(panel, qtbot):
    viewer, w, computed = panel
    job = running(qtbot, w)
    shown = w._step
    w.pause_button.native.click()
    assert job.state == PAUSED and w.status.value == f"paused at step {shown} / {LONG}"
    qtbot.waitUntil(lambda: job._held, timeout=10000)
    assert w._step in (shown, shown + 1) and max(computed) == w._step
    assert w.status.value == f"paused at step {w._step} / {LONG}"
    at = w._step
    w.step_button.native.click()                            # Step: exactly one more, still paused
    qtbot.waitUntil(lambda: w._step == at + 1 and job._held, timeout=10000)
    qtbot.wait(50)
    assert w._step == at + 1 == max(computed) and job.state == PAUSED
    np.testing.assert_array_equal(viewer.layers[REFINED].data, w._history.stack()[-1])  # drawn
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: w._worker is None, timeout=10000)
    assert w.status.value == f"cancelled at step {at + 1}" and max(computed) == at + 1


def test_step_while_running_pauses_within_one_step(panel, qtbot):
    _, w, computed = panel
    job = running(qtbot, w)
    shown = w._step
    w.step_button.native.click()
    assert job.state == PAUSED
    qtbot.waitUntil(lambda: job._held, timeout=10000)
    assert w._step - shown <= 1 and max(computed) == w._step
    job.cancel()
    qtbot.waitUntil(lambda: w._worker is None, timeout=10000)


def test_cancel_keeps_the_step_on_screen(panel, qtbot):
    viewer, w, computed = panel
    job = running(qtbot, w)
    shown = w._step
    w.cancel_button.native.click()
    assert job.state == CANCELLING and w.status.value == f"cancelling at step {shown}..."
    assert not w.cancel_button.enabled and not w.pause_button.enabled
    qtbot.waitUntil(lambda: w._worker is None, timeout=10000)
    assert job.state == CANCELLED and w._step == shown and max(computed) <= shown + 1
    assert w.status.value == f"cancelled at step {shown}" and w.run_button.enabled
    assert w._history.steps[-1] == shown
    np.testing.assert_array_equal(viewer.layers[REFINED].data, w._history.stack()[-1])


def test_reset_during_a_run_acts_at_once(panel, qtbot):
    viewer, w, computed = panel
    running(qtbot, w)
    shown = w._step
    w.reset_button.native.click()
    prob = viewer.layers["probability"].data
    assert w._step == 0 and w._history.steps == [0] and w.run_button.enabled
    assert w.status.value == "reset to the probability (step 0)"
    np.testing.assert_array_equal(viewer.layers[REFINED].data, prob)
    qtbot.waitUntil(lambda: not w._jobs, timeout=10000)     # the dropped worker has stopped ...
    qtbot.wait(50)
    assert w._step == 0 and w._history.steps == [0] and max(computed) <= shown + 1
    np.testing.assert_array_equal(viewer.layers[REFINED].data, prob)  # ... and nothing of it came back
    assert w.status.value == "reset to the probability (step 0)"


def test_run_at_once_after_reset_waits_for_the_dropped_run(panel, qtbot, request):
    viewer, w, computed = panel
    w.step_seconds = 0.3                                      # so Reset lands inside a step
    pool = QThreadPool.globalInstance()
    threads = pool.maxThreadCount()
    pool.setMaxThreadCount(max(threads, 4))                   # as on a machine with more cores
    request.addfinalizer(lambda: pool.setMaxThreadCount(threads))
    running(qtbot, w)
    w.reset_button.native.click()
    w.step_seconds, w.steps.value = 0.0, 5                   # the dropped worker is still in its step
    w.run_button.native.click()
    qtbot.waitUntil(lambda: not w._jobs, timeout=30000)
    assert w.job.state == DONE and w._step == 5 and w._history.steps == [0, 1, 2, 3, 4, 5]
    assert w.most_at_once() == 1                             # the two runs never computed together


def test_back_to_a_snapshot_while_paused_drops_the_run(panel, qtbot, monkeypatch):
    viewer, w, computed = panel
    messages = []
    monkeypatch.setattr("napari_tubediff.widgets.diffusion.show_error", messages.append)
    job = running(qtbot, w, steps=4)
    w.restore_button.native.click()                          # not while running ...
    assert "Pause or cancel" in messages[-1] and job.active
    w.pause_button.native.click()
    qtbot.waitUntil(lambda: job._held, timeout=10000)
    w.scrubber.value = 2                                     # ... but paused: the slider's snapshot
    step = w._history.steps[2]
    w.restore_button.native.click()
    assert w._step == step and w._history.steps[-1] == step and w.status.value == f"back at step {step}"
    assert w.run_button.enabled and not w.pause_button.enabled
    qtbot.waitUntil(lambda: not w._jobs, timeout=10000)
    assert w._step == step and w.status.value == f"back at step {step}"   # nothing of the run came back
    np.testing.assert_array_equal(viewer.layers[REFINED].data, w._history.stack()[-1])


def test_events_are_handled_one_at_a_time(panel, qtbot):
    """A Qt call may process events while the panel draws: the end of the run is
    delivered inside a drawing, and the status still ends right."""
    _, w, _ = panel
    w.steps.value = 8
    show = w.show_frame
    nested = []

    def show_and_process():
        show()
        nested.append(w.job._busy)
        QApplication.processEvents()

    w.show_frame = show_and_process
    w.run_button.native.click()
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert any(nested)                                      # drawings happened inside a handler
    assert w.job.state == DONE and w.status.value == "step 8 / 8" and w._step == 8
    assert w.run_button.enabled and not w.pause_button.enabled


def _crop():
    """A 64-px crop inside a synthetic fundus photograph, and its labels. No FOV edge in it, so the
    working scale comes from the vessel width (2.6: 163 px), not from the FOV (8.9: the whole
    photograph at 853 px); the U-Net and the scores before training took 2.1 s of CPU there,
    0.3 s here. What these tests check (cancel, close) does not depend on the scale."""
    f = synthetic_fundus((96, 96), seed=3, n_breaks=6)
    return f.image[16:80, 16:80], f.truth[16:80, 16:80]


@pytest.fixture
def finetune_panel(make_napari_viewer):
    session.reset_refiner()
    viewer = make_napari_viewer()
    image, truth = _crop()
    viewer.add_image(image, name="photo", rgb=True)
    viewer.add_labels(truth.astype(np.uint8), name="curated")
    w = dock(viewer, "Fine-tune")
    w.image.value, w.labels.value = viewer.layers["photo"], viewer.layers["curated"]
    w.updates.value = 5000
    yield viewer, w
    session.reset_refiner()


def test_finetune_cancel_lands_within_one_update(finetune_panel, qtbot):
    _, w = finetune_panel
    before = session.active_refiner()
    w.train_button.native.click()
    job = w.job
    qtbot.waitUntil(lambda: job.step >= 2, timeout=120000)
    shown = job.step
    training = [c for c in process._busy if c.alive()]
    w.cancel_button.native.click()
    assert w.status.value == f"cancelling at update {shown}..."
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)
    assert job.state == CANCELLED and job.step == shown == len(w.curve.losses)
    assert job.worker.gate._sent <= shown + 1               # the loop stopped within one update
    assert len(training) == 1 and not training[0].alive()   # by ending the training's process
    assert w.status.value.startswith(f"cancelled at update {shown}")
    assert session.active_refiner() is before and w.train_button.enabled


def test_closing_the_viewer_mid_run_cancels_quietly(make_napari_viewer, qtbot, capfd, monkeypatch):
    """Diffusion, Fine-tune and Segment running as the viewer closes: every worker ends,
    the training stops at once, no process is left (not even one kept for the next task),
    and no exception or traceback appears."""
    monkeypatch.setattr(process, "_users", [0])  # the panels of this viewer only
    viewer = make_napari_viewer()
    image, truth = _crop()
    viewer.add_image(image, name="photo", rgb=True)
    viewer.add_labels(truth.astype(np.uint8), name="curated")
    viewer.add_image(synthetic_vessels((64, 64), seed=3).probability, name="probability")
    diff, tune, seg = dock(viewer, "Diffusion"), dock(viewer, "Fine-tune"), dock(viewer, "Segment")
    seg.image.value, seg.backbone.value = viewer.layers["photo"], "vesselness"
    diff.layer.value = viewer.layers["probability"]
    diff.steps.value = LONG
    tune.image.value, tune.labels.value = viewer.layers["photo"], viewer.layers["curated"]
    tune.updates.value = 5000
    session.reset_refiner()
    try:
        with qtbot.captureExceptions() as errors:
            tune.train_button.native.click()
            qtbot.waitUntil(lambda: tune.job.step >= 1, timeout=120000)
            training = [c for c in process._busy if c.alive()]   # the training's process, alone busy
            diff.run_button.native.click()
            qtbot.waitUntil(lambda: diff._step >= 2, timeout=60000)
            gate = tune.job.worker.gate
            seg.run_button.native.click()                            # a third worker, likely mid-run
            children = set(process._busy) | set(process._idle)
            viewer.close()
            sent = gate._sent
            assert QThreadPool.globalInstance().waitForDone(60000)   # every worker has ended
            qtbot.wait(100)                                          # and what they sent is delivered
        assert gate._sent == sent                    # no training update after the close
        assert len(training) == 1 and not training[0].alive()  # its process has ended
        qtbot.waitUntil(lambda: not any(c.alive() for c in children), timeout=20000)  # and every other
        assert session.source() == "shipped"
        assert errors == []
        err = capfd.readouterr().err
        assert "Traceback" not in err and "deleted" not in err, err
    finally:
        session.reset_refiner()


def test_closing_the_viewer_mid_diffusion_leaves_no_process(make_napari_viewer, qtbot, monkeypatch):
    """A cancelled diffusion stops at its next frame and its process would be kept for the
    next task; with the viewer closed there is none, so the process ends too (it held
    hundreds of MB for as long as an IPython session lived)."""
    monkeypatch.setattr(process, "_users", [0])  # the panels of this viewer only
    viewer = make_napari_viewer()
    viewer.add_image(synthetic_vessels((64, 64), seed=3).probability, name="probability")
    w = dock(viewer, "Diffusion")
    w.method.value, w.steps.value = "faithful", LONG
    w.run_button.native.click()
    qtbot.waitUntil(lambda: w._step >= 2, timeout=60000)
    children = set(process._busy) | set(process._idle)
    assert any(c.alive() for c in children)
    viewer.close()
    assert QThreadPool.globalInstance().waitForDone(60000)
    qtbot.waitUntil(lambda: not any(c.alive() for c in children) and not process._idle, timeout=20000)


def test_an_error_replaces_the_progress_in_the_status(finetune_panel, qtbot, monkeypatch):
    _, w = finetune_panel
    messages = []
    monkeypatch.setattr("napari_tubediff.widgets.finetune.show_error", messages.append)

    def failing(*args, on_update, **kwargs):  # two updates, then the training breaks
        on_update(0, 0.5)
        on_update(1, 0.4)
        raise ValueError("the labels hold no vessel")

    # in this thread (the panel's protocol is the same), so that the patched training is the one run
    monkeypatch.setenv("TUBEDIFF_WORKER_PROCESS", "0")
    monkeypatch.setattr("napari_tubediff.training.finetune.finetune", failing)
    w.train_button.native.click()
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert w.status.value == "failed: the labels hold no vessel"
    assert messages == ["Fine-tuning failed: the labels hold no vessel"] and w.curve.losses == [0.5, 0.4]
    assert w.train_button.enabled and not w.cancel_button.enabled and session.source() == "shipped"


@pytest.mark.parametrize("children", [True, False])
def test_a_job_loads_torch_and_numba_in_the_viewers_process_only_if_computing_there(monkeypatch, children):
    """While jobs compute in child processes, a panel's worker thread does not import torch or
    numba into the viewer's process (their C initialisation holds Python's lock: a GUI stall
    at a session's first job); without children it loads them to set their thread counts."""
    import builtins
    import importlib
    import sys
    import types

    from napari_tubediff.widgets import _common

    asked = []
    fake = types.SimpleNamespace(get_num_threads=lambda: 2, set_num_threads=lambda n: None)
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def spy(name, *args, **kwargs):
        if name in ("torch", "numba"):
            asked.append(name)
            return fake
        return real_import(name, *args, **kwargs)

    def spy_module(name, *args, **kwargs):
        return spy(name) if name in ("torch", "numba") else real_import_module(name, *args, **kwargs)

    for name in ("torch", "numba"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(builtins, "__import__", spy)
    monkeypatch.setattr(importlib, "import_module", spy_module)
    monkeypatch.setattr(process, "enabled", lambda: children)
    with _common.leave_a_core():
        pass
    assert asked == ([] if children else ["torch", "numba"])
