"""Diffusion panel: refine a probability layer by anisotropic diffusion, live, and scrub back.

Thin by design: it gathers a layer and parameters, runs `models.refiner.vessel_directions`
(learned head or Hessian) and `core.iter_diffusion` in a worker thread, and puts each
yielded field into two layers:

* ``refined`` (Image, same shape as the probability): the current field, the one the
  Bridged gaps and Accept panels use;
* ``refined history`` (Image, shape ``(T, *spatial)``): snapshots on a leading time axis,
  so the dims slider scrubs back through the run. At most ``snapshots kept`` of them are
  stored (and at most 256 MiB, `SNAPSHOT_BYTES`); when full, every second one is dropped
  (`core.history.SnapshotHistory`), so they always span the run from step 0.

Volumes (planes, rows, cols) work the same way: the time axis comes first, the "3D
view" box renders the field in napari's 3D view (maximum intensity projection) as it
evolves, in green over the probability (`VOLUME_HISTORY_LOOK`; the refined layer, the
same field as the newest snapshot, starts hidden). A 128^3 volume takes 8 MiB per
snapshot, so the memory cap, not the count, bounds its history (32 snapshots); the panel
shows the budget, and says when the cap cuts the number of snapshots.

Run continues the current state up to ``steps`` (and starts over from the probability
once it is there); Pause/Resume holds the worker; Step advances exactly one step from
the current state; Back to snapshot makes the snapshot under the slider the current
state; Reset goes back to the probability; Cancel stops and keeps the last step shown.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info

from ..core.diffusion import iter_diffusion, plan_substeps
from ..core.history import SnapshotHistory, capacity_for
from ..core.refine import RefineSettings
from ..models import session
from ..models.refiner import vessel_directions
from ._common import SHORTCUTS, follow_layers, layers_of, probability_data, put_image, view_toggle

REFINED = "refined"
HISTORY = "refined history"


class Frame(NamedTuple):
    """What the worker yields: a field at ``step`` (or, once and first, only the directions).

    ``earlier`` holds the ``(step, field)`` pairs computed since the previous frame but not
    drawn (see `_diffusion_job`), so the snapshots still cover every ``every``-th step.
    """

    step: int
    field: np.ndarray | None
    directions: np.ndarray | None = None
    earlier: tuple = ()


#: At most this many undrawn fields ride along with one frame (older ones are thinned) ...
MAX_EARLIER = 32
#: ... and at most this many bytes of them (a few for a volume).
EARLIER_BYTES = 64 * 2**20
#: The snapshot history's memory cap (`core.history.capacity_for`).
SNAPSHOT_BYTES = 256 * 2**20


#: How the refined field and its history are drawn for a 2D image: the history, on top,
#: shows the snapshot under the time slider.
PLANE_LOOK = {"colormap": "viridis", "blending": "additive"}
PLANE_HISTORY_LOOK = {"colormap": "viridis", "blending": "translucent"}
#: ... and for a volume, in the 3D view as plane by plane: a maximum intensity projection
#: in a colour map from black, added to the probability (magma), so what the diffusion
#: bridged shows green. An opaque volume on top would hide the rest, so the history is
#: drawn that way too, and the refined layer (the same field as the newest snapshot) is
#: hidden rather than added twice.
VOLUME_LOOK = {"colormap": "green", "blending": "additive", "rendering": "mip", "visible": False}
VOLUME_HISTORY_LOOK = {"colormap": "green", "blending": "additive", "rendering": "mip"}


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def _diffusion_job(u, directions, settings: RefineSettings, *, start: int = 0, steps: int | None = None,
                   every: int = 1, min_interval: float = 0.04, features=None):
    """Worker body: directions if not given, then the diffusion's steps (a generator: cancellable).

    ``u`` is the field to start from (at step ``start``); ``steps`` (default
    ``settings.steps``) more steps are run. Small images step faster than a screen
    refreshes: a field closer than ``min_interval`` seconds to the last frame sent is not
    drawn but travels in the next frame's ``earlier`` (at most `MAX_EARLIER` fields and
    `EARLIER_BYTES`, thinned by halves), for the snapshot history. The last step is
    always sent.
    """
    if directions is None:
        # the learned head when the probability layer carries backbone features, else Hessian
        directions, _ = vessel_directions(u, features, sigma=settings.sigma)
        yield Frame(start, None, directions)
    kw = settings.diffusion_kwargs()
    kw["steps"] = n = settings.steps if steps is None else steps
    last = -np.inf
    earlier: list = []
    most = max(2, min(MAX_EARLIER, EARLIER_BYTES // max(np.asarray(u).nbytes, 1)))
    for step, field in iter_diffusion(u, directions, every=every, **kw):
        now = time.monotonic()
        if step == n or now - last >= min_interval:
            last = now
            yield Frame(start + step, field, earlier=tuple(earlier))
            earlier = []
        else:
            if len(earlier) >= most:
                earlier = earlier[::2]
            earlier.append((start + step, field))


class DiffusionWidget(Container):
    """Dock widget: choose a probability layer, set the PDE's parameters; Run, Pause, Step, Reset."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        d = RefineSettings()
        self._viewer = viewer
        self._worker = None
        self._progress = None
        self._queue: list[Frame] = []
        self._draining = False
        self._after_finish = None
        self._key = None           # which probability layer / data / sigma the state belongs to
        self._directions = None
        self._field = None         # the current state: field at step self._step
        self._step = 0
        self._history = None
        self.layer = ComboBox(label="probability", choices=lambda _w: layers_of(viewer, napari.layers.Image))
        self.sigma = FloatSpinBox(value=d.sigma, min=0.5, max=50.0, step=0.5, label="direction scale",
                                  tooltip="Hessian scale (pixels) for the vessel directions")
        self.lambda_par = FloatSpinBox(value=d.lambda_par, min=0.0, max=100.0, step=0.1, label="lambda along")
        self.lambda_perp = FloatSpinBox(value=d.lambda_perp, min=0.0, max=100.0, step=0.01,
                                        label="lambda across")
        self.dt = FloatSpinBox(value=d.dt, min=0.001, max=100.0, step=0.05, label="dt",
                               tooltip="time step; steps above the stability limit are sub-stepped")
        self.steps = SpinBox(value=d.steps, min=1, max=100000, label="steps")
        self.every = SpinBox(value=1, min=1, max=100000, label="show every",
                             tooltip="update the refined layer every this many steps")
        self.order = ComboBox(choices=[2, 4, 6, 8, 10, 12], value=d.order, label="stencil order")
        self.max_snapshots = SpinBox(value=50, min=2, max=10000, label="snapshots kept",
                                     tooltip="most snapshots on the time axis (older ones are thinned)")
        self.run_button = PushButton(text="Run")
        self.pause_button = PushButton(text="Pause", enabled=False)
        self.step_button = PushButton(text="Step")
        self.restore_button = PushButton(text="Back to snapshot",
                                         tooltip="make the snapshot under the time slider the current state")
        self.reset_button = PushButton(text="Reset")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.scrub = Label(value="")
        self.memory = Label(value="")
        self.keys = Label(value=f"Keys: {SHORTCUTS['step']} step (pauses a run first)")
        follow_layers(viewer, self.layer, prefer="probab")
        self.view3d = view_toggle(viewer, self.layer)
        self.extend([self.layer, self.sigma, self.lambda_par, self.lambda_perp, self.dt, self.steps,
                     self.every, self.order, self.max_snapshots, self.run_button, self.pause_button,
                     self.step_button, self.restore_button, self.reset_button, self.cancel_button,
                     self.view3d, self.status, self.scrub, self.memory, self.keys])
        self.run_button.changed.connect(self.run)
        self.pause_button.changed.connect(self.toggle_pause)
        self.step_button.changed.connect(self.step)
        self.restore_button.changed.connect(self.restore)
        self.reset_button.changed.connect(self.reset)
        self.cancel_button.changed.connect(self.cancel)
        for w in (self.dt, self.lambda_par, self.lambda_perp, self.order):
            w.changed.connect(self._show_substeps)
        self.layer.changed.connect(self._show_substeps)
        viewer.dims.events.current_step.connect(self._show_scrub)
        viewer.bind_key(SHORTCUTS["step"], self._key_step, overwrite=True)

    # -- inputs and state ---------------------------------------------------------
    def _settings(self) -> RefineSettings:
        return RefineSettings(sigma=self.sigma.value, lambda_par=self.lambda_par.value,
                              lambda_perp=self.lambda_perp.value, dt=self.dt.value,
                              steps=self.steps.value, order=self.order.value)

    def _show_substeps(self, *_):
        # the limit depends on the number of spatial axes: 3 for a volume
        layer = self.layer.value
        ndim = 3 if layer is not None and not layer.rgb and np.ndim(layer.data) == 3 else 2
        n = plan_substeps(self.dt.value, self.lambda_par.value, self.lambda_perp.value,
                          self.order.value, ndim)
        self.status.value = "" if n == 1 else f"dt above the stability limit: {n} sub-steps per step"

    def _input(self) -> np.ndarray | None:
        return probability_data(self.layer.value, show_error)

    def _prepare(self) -> bool:
        """Check the input; start from the probability when it (or the direction scale) changed."""
        u = self._input()
        if u is None:
            return False
        layer = self.layer.value
        # the session version changes when fine-tuning or loading replaces the refiner
        key = (id(layer), id(layer.data), self.sigma.value, session.version())
        if key != self._key or self._field is None:
            if key != self._key:
                self._directions = None
            self._key, self._source, self._data_ref = key, layer, layer.data
            self._reset_state(u)
        return True

    def _reset_state(self, u: np.ndarray) -> None:
        self._u0 = u
        self._field = u.copy()
        self._step = 0
        wanted = self.max_snapshots.value
        cap = capacity_for(u.shape, wanted, SNAPSHOT_BYTES)
        self._history = SnapshotHistory(cap)
        self._history.add(0, u)
        each = u.size * 4
        self.memory.value = f"snapshots: at most {cap} x {_mib(each)} = {_mib(cap * each)}"
        told = (self._key, cap)
        if cap < wanted and told != getattr(self, "_told", None):  # once per layer, not at every reset
            self._told = told
            show_info(f"Each snapshot of '{self._source.name}' {u.shape} takes {_mib(each)}: at most "
                      f"{cap} are kept ({_mib(cap * each)}), thinned over the run, not {wanted}.")
        self._show_field()

    # -- actions ------------------------------------------------------------------
    def run(self, *_):
        """Run (or continue) to ``steps`` steps; starts over once the state is there."""
        if self._worker is not None or not self._prepare():
            return
        if self._step >= self.steps.value:
            self._reset_state(self._u0)
        self._start(self.steps.value - self._step, self.every.value)

    def step(self, *_):
        """Advance exactly one step from the current state (a running worker is paused first)."""
        if self._worker is not None:
            if not self._worker.is_paused:
                self._worker.pause()
                return
            self._after_finish = self._step_once
            self._worker.quit()
            return
        self._step_once()

    def _step_once(self):
        if self._prepare():
            self._start(1, 1)

    def toggle_pause(self, *_):
        if self._worker is not None:
            self._worker.toggle_pause()

    def cancel(self, *_):
        if self._worker is not None:
            self._worker.quit()
            self.status.value = "cancelling..."

    def reset(self, *_):
        """Back to the probability, step 0, with an empty history."""
        if self._worker is not None:
            self._after_finish = self.reset
            self._worker.quit()
            return
        self._field = None  # _prepare starts over from the probability (keeping known directions)
        if self._prepare():
            self.status.value = "reset to the probability (step 0)"

    def restore(self, *_):
        """Make the snapshot under the time slider the current state (later snapshots are dropped)."""
        if self._worker is not None:
            if not self._worker.is_paused:
                show_error("Pause or cancel the run before going back to a snapshot.")
                return
            self._after_finish = self.restore
            self._worker.quit()
            return
        if self._history is None or HISTORY not in self._viewer.layers:
            show_error("No snapshots yet: Run or Step the diffusion first.")
            return
        i = min(int(self._viewer.dims.current_step[0]), len(self._history) - 1)
        step, field = self._history.snapshot(i)
        self._history.truncate(i + 1)
        self._field, self._step = field, step
        self._show_field()
        self.status.value = f"back at step {step}"

    def _key_step(self, _viewer=None):
        self.step()

    def _start(self, steps: int, every: int):
        settings = self._settings()
        self._target = self._step + steps
        self._progress = progress(total=steps, desc="diffusion")
        self._progress_start = self._step
        feats = self._source.metadata.get("features") if self._directions is None else None
        self._worker = create_worker(_diffusion_job, self._field, self._directions, settings,
                                     start=self._step, steps=steps, every=every, features=feats,
                                     _ignore_errors=True)
        self._worker.yielded.connect(self._on_step)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self._worker.paused.connect(self._on_paused)
        self._worker.resumed.connect(self._on_resumed)
        self._set_running(True)
        self.status.value = "estimating directions..." if self._directions is None else "running..."
        self._worker.start()

    def _set_running(self, running: bool):
        self.run_button.enabled = not running
        self.pause_button.enabled = running
        self.cancel_button.enabled = running
        self.pause_button.text = "Pause"

    # -- showing the state (main thread) ------------------------------------------
    def _show_field(self, follow: bool = True):
        src = self._source
        # (the looks apply when a layer is made; the annotator's later changes are kept)
        look, history_look = (VOLUME_LOOK, VOLUME_HISTORY_LOOK) if self._field.ndim == 3 else (
            PLANE_LOOK, PLANE_HISTORY_LOOK)
        put_image(self._viewer, REFINED, self._field, like=src, contrast_limits=(0, 1), **look)
        put_image(self._viewer, HISTORY, self._history.stack(), like=src, contrast_limits=(0, 1),
                  **history_look)
        if follow:
            self._viewer.dims.set_current_step(0, len(self._history) - 1)
        self._show_scrub()

    def _show_scrub(self, *_):
        if self._history is None or not len(self._history) or HISTORY not in self._viewer.layers:
            self.scrub.value = ""
            return
        i = min(int(self._viewer.dims.current_step[0]), len(self._history) - 1)
        self.scrub.value = (f"time slider: snapshot {i + 1} of {len(self._history)} = step "
                            f"{self._history.steps[i]}")

    # -- worker callbacks (main thread) ------------------------------------------
    def _on_step(self, frame: Frame):
        if frame.directions is not None:
            self._directions = frame.directions
            self.status.value = "running..."
            return
        # Updating a layer can process Qt events, which may deliver the next frame into
        # this handler again: queue it, and let the outermost call store every frame's
        # snapshots and draw only the newest.
        self._queue.append(frame)
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                frames, self._queue = self._queue, []
                for f in frames:
                    for step, field in f.earlier:
                        self._history.add(step, field)
                    self._history.add(f.step, f.field)
                newest = frames[-1]
                self._field, self._step = newest.field, newest.step
                self._show_field()
                self.status.value = f"step {newest.step} / {self._target}"
                if self._progress is not None:
                    self._progress.update(newest.step - self._progress_start - self._progress.n)
        finally:
            self._draining = False

    def _on_paused(self):
        self.pause_button.text = "Resume"
        self.status.value = f"paused at step {self._step}"

    def _on_resumed(self):
        self.pause_button.text = "Pause"
        self.status.value = f"running from step {self._step}..."

    def _on_error(self, exc):
        show_error(f"Diffusion failed: {exc}")

    def _on_finished(self):
        if self._worker is not None and self._worker.abort_requested and self._after_finish is None:
            self.status.value = f"cancelled at step {self._step}"
            show_info("Diffusion cancelled; the refined layer keeps the last step shown.")
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._worker = None
        self._set_running(False)
        then, self._after_finish = self._after_finish, None
        if then is not None:
            then()
