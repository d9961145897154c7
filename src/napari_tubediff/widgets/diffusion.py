"""Diffusion panel: refine a probability layer by anisotropic diffusion, live, and scrub back.

Thin by design: it gathers a layer and parameters, runs `models.refiner.vessel_directions`
(learned head or Hessian) and `core.refine.refine_steps` in a separate process
(`workers.tasks.diffusion` through `workers.process.run_in_child`, in lock-step with the
panel), and puts each field it sends into two layers:

* ``refined`` (Image, same shape as the probability): the current field, the one the
  Bridged gaps and Accept panels use;
* ``refined history`` (Image, shape ``(T, *spatial)``): snapshots on a leading time axis,
  so the dims slider scrubs back through the run. At most ``snapshots kept`` of them are
  stored (and at most 256 MiB, `SNAPSHOT_BYTES`), evenly spaced from step 0 plus the newest
  (`core.history.SnapshotHistory`), so they always span the run and early steps stay reachable.

Volumes (planes, rows, cols) work the same way: the time axis comes first, the "3D
view" box renders the field in napari's 3D view (maximum intensity projection) as it
evolves, in green over the probability (`VOLUME_HISTORY_LOOK`; the refined layer, the
same field as the newest snapshot, starts hidden). A 128^3 volume takes 8 MiB per
snapshot, so the memory cap, not the count, bounds its history (32 snapshots); the panel
shows the budget, and says when the cap cuts the number of snapshots.

The method (``method``, default `core.refine.RECOMMENDED_METHOD`) is one of
`core.refine.REFINE_METHODS`, run by `core.refine.refine_steps`, so the last step equals
``tubediff refine``'s result: the gated methods show each step of the gated PDE, and the
methods with a completion (DTI or directional hysteresis) show it as one more step,
``steps + 1``, labelled on the time slider.

Run continues the current state up to the method's last step (and starts over from the
probability once it is there); Pause/Resume holds the worker; Step advances exactly one step from
the current state; Back to snapshot makes the snapshot under the slider the current
state; Reset goes back to the probability; Cancel stops and keeps the last step shown.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.colormaps import Colormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from ..core.checks import check_snapshot_memory
from ..core.diffusion import DIFFUSE_BYTES, plan_substeps
from ..core.history import SnapshotHistory, capacity_for
from ..core.refine import (
    COMPLETED_METHODS,
    RECOMMENDED_METHOD,
    REFINE_METHODS,
    RefineSettings,
    settings_for_fov,
    total_steps,
    ungated_state,
)
from ..models import session
from ..workers import tasks
from ..workers.process import prewarm, release, run_in_child
from ._common import (
    AFTER_ADD_MS,
    CANCELLED,
    PAUSED,
    RUNNING,
    SHORTCUTS,
    Panel,
    QuietSlot,
    follow_layers,
    layer_spacing,
    layers_of,
    probability_data,
    put_image,
    show_layer,
    view_toggle,
    worker_threads,
)

REFINED = "refined"
HISTORY = "refined history"


class Frame(NamedTuple):
    """What the worker yields: the field shown at ``step`` and the diffusion's state there
    (`core.refine.RefineStep`), or, once and first, only the directions."""

    step: int
    field: np.ndarray | None
    directions: np.ndarray | None = None
    state: np.ndarray | None = None


#: Seconds between two updates of the hidden ``refined`` layer while a run is drawn at most
#: (the other panels read it; the history layer shows the run).
REFINED_INTERVAL = 1.0

#: The snapshot history's memory cap (`core.history.capacity_for`).
SNAPSHOT_BYTES = 256 * 2**20


#: How the refined field and its history are drawn for a 2D image: the history shows the
#: snapshot under the time slider in a green that is transparent where the field is low,
#: so the photograph and the probability (magma) stay visible around and under the
#: vessels, and what the diffusion bridged shows green over the dark gap. The refined
#: layer (the same field as the newest snapshot) is hidden rather than drawn twice.
#: "show refined" toggles the history: before / after.
CLEAR_GREEN = Colormap([[0.0, 1.0, 0.3, 0.0], [0.0, 1.0, 0.3, 1.0]], name="transparent green")
PLANE_LOOK = {"colormap": "green", "blending": "additive", "visible": False}
PLANE_HISTORY_LOOK = {"colormap": CLEAR_GREEN, "blending": "translucent", "opacity": 0.7}
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
                   every: int = 1, features=None, u0=None):
    """The run as a generator of `Frame` s (`workers.tasks.diffusion_frames`): directions if
    not given, then the refinement's steps.

    ``u`` is the diffusion's state to start from (at step ``start``), ``u0`` the
    probability (default ``u``); ``steps`` (default: to the method's last step,
    `core.refine.total_steps`) more steps are run, one frame every ``every`` steps and the last.
    """
    for frame in tasks.diffusion_frames(u, directions, settings, start=start, steps=steps, every=every,
                                        features=features, u0=u0):
        yield Frame(*frame)


#: Seconds a cancelled run may take to reach its next frame, where its process stops it and
#: stays for the next run; a run still estimating directions then is ended at once.
CANCEL_GRACE = 1.0


def _diffusion_in_child(u, directions, settings: RefineSettings, *, gate, **kwargs):
    """Worker body: the run (`workers.tasks.diffusion`) in a separate process, each frame posted
    through ``gate`` (`_common.Gate`): the process computes the next step only once the panel
    has taken this one in, so the run never races ahead of the screen. numba's kernels and
    the direction head then never hold the GUI process's Python lock."""
    refiner = tasks.pack(session.loaded_refiner(np.ndim(u)))  # a fine-tuned head, if any
    return run_in_child(tasks.diffusion, u, directions, settings, refiner=refiner, **kwargs,
                        on_frame=lambda f: gate.post(Frame(*f)), should_stop=lambda: gate.cancelled,
                        threads=worker_threads(), grace=CANCEL_GRACE)


class DiffusionWidget(Panel):
    """Dock widget: choose a probability layer, set the PDE's parameters; Run, Pause, Step, Reset."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        prewarm(worker_threads())  # the process the run computes in: numba's kernels load there
        self.native.destroyed.connect(QuietSlot(release))  # the viewer closes: no idle process kept
        d = RefineSettings()
        self._key = None           # which probability layer / data / sigma the state belongs to
        self._directions = None
        self._field = None         # the current state: field at step self._step
        self._step = 0
        self._history = None
        self._fresh = False        # a frame taken in and not drawn yet
        self._refined_at = 0.0     # when the refined layer was last brought up to date
        self._refined_step = -1    # ... to the field at this step
        self.layer = ComboBox(label="probability", choices=lambda _w: layers_of(viewer, napari.layers.Image))
        self.method = ComboBox(choices=REFINE_METHODS, value=RECOMMENDED_METHOD, label="method",
                               tooltip="gated+dti (the default of tubediff refine): the PDE where the "
                                       "backbone saw a faint vessel, then DTI's centre-line reconnections "
                                       "as one last step; faithful: the method description's PDE")
        self.sigma = FloatSpinBox(value=d.sigma, min=0.5, max=50.0, step=0.5, label="direction scale",
                                  tooltip="Hessian scale (pixels) for the vessel directions")
        self.lambda_par = FloatSpinBox(value=d.lambda_par, min=0.0, max=100.0, step=0.1, label="lambda along")
        self.lambda_perp = FloatSpinBox(value=d.lambda_perp, min=0.0, max=100.0, step=0.01,
                                        label="lambda across")
        self.dt = FloatSpinBox(value=d.dt, min=0.001, max=100.0, step=0.05, label="dt",
                               tooltip="time step; steps above the stability limit are sub-stepped")
        self.steps = SpinBox(value=d.steps, min=1, max=100000, label="steps")
        self.every = SpinBox(value=1, min=1, max=100000, label="snapshot every",
                             tooltip="take a snapshot every this many steps (the screen is redrawn at "
                                     "most 15 times a second whatever this is)")
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
        self.after = CheckBox(text="show refined (off: before)", value=True,
                              tooltip="the refined history over the image: on, after the diffusion; "
                                      "off, the probability before it")
        follow_layers(viewer, self.layer, prefer="probab")
        self.view3d = view_toggle(viewer, self.layer)
        self.extend([self.layer, self.method, self.sigma, self.lambda_par, self.lambda_perp, self.dt,
                     self.steps, self.every, self.order, self.max_snapshots, self.run_button,
                     self.pause_button, self.step_button, self.restore_button, self.reset_button,
                     self.cancel_button, self.view3d, self.after, self.status, self.scrub, self.memory,
                     self.keys])
        self.run_button.changed.connect(self.run)
        self.pause_button.changed.connect(self.toggle_pause)
        self.step_button.changed.connect(self.step)
        self.restore_button.changed.connect(self.restore)
        self.reset_button.changed.connect(self.reset)
        self.cancel_button.changed.connect(self.cancel)
        self.after.changed.connect(self._show_after)
        for w in (self.dt, self.lambda_par, self.lambda_perp, self.order):
            w.changed.connect(self._show_substeps)
        self.layer.changed.connect(self._show_substeps)
        self.method.changed.connect(self._forget_state)
        self.listen(viewer.dims.events.current_step, self._show_scrub)
        viewer.bind_key(SHORTCUTS["step"], self._key_step, overwrite=True)

    # -- inputs and state ---------------------------------------------------------
    def _settings(self) -> RefineSettings:
        s = RefineSettings(sigma=self.sigma.value, lambda_par=self.lambda_par.value,
                           lambda_perp=self.lambda_perp.value, dt=self.dt.value,
                           steps=self.steps.value, order=self.order.value, method=self.method.value,
                           spacing=layer_spacing(self.layer.value))  # the layer's scale
        # the FOV the Segment panel found: the settings for the photograph's size, as `tubediff refine`'s
        return settings_for_fov(s, getattr(self.layer.value, "metadata", {}).get("fov"))

    def _forget_state(self, *_):
        """Another method: the next Run or Step starts over from the probability (the directions stay)."""
        if self.busy:
            self.job.detach()
        self._field = None

    def _show_substeps(self, *_):
        # the limit depends on the number of spatial axes: 3 for a volume
        layer = self.layer.value
        ndim = 3 if layer is not None and not layer.rgb and np.ndim(layer.data) == 3 else 2
        n = plan_substeps(self.dt.value, self.lambda_par.value, self.lambda_perp.value,
                          self.order.value, ndim, self._settings().relative_spacing(ndim) if layer else None)
        self.say("" if n == 1 else f"dt above the stability limit: {n} sub-steps per step")

    def _input(self) -> np.ndarray | None:
        return probability_data(self.layer.value, show_error)

    def _prepare(self, refined: bool = True) -> bool:
        """Check the input; start from the probability when it (or the direction scale) changed.

        ``refined=False``: a run follows, which brings the refined layer up to date itself."""
        u = self._input()
        if u is None:
            return False
        try:  # refused with the figures, not an out-of-memory crash half-way
            check_snapshot_memory(u.shape, capacity_for(u.shape, self.max_snapshots.value, SNAPSHOT_BYTES),
                                  DIFFUSE_BYTES[u.ndim])
        except ValueError as e:
            show_error(str(e))
            return False
        layer = self.layer.value
        # the session version changes when fine-tuning or loading replaces the refiner
        key = (id(layer), id(layer.data), self.sigma.value, session.version(), layer_spacing(layer))
        if key != self._key or self._field is None:
            if key != self._key:
                self._directions = None
            self._key, self._source, self._data_ref = key, layer, layer.data
            self._reset_state(u, refined)
        return True

    def _reset_state(self, u: np.ndarray, refined: bool = True) -> None:
        self._u0 = u
        self._field = u.copy()
        self._state = self._field  # the diffusion's own field (the shown one before a gate)
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
        if refined or HISTORY in self._viewer.layers:
            self._show_field(refined=refined)
        # else a run follows and its first drawing adds the history layer: adding it here
        # (a new dims slider: 0.5 s at load 10) and again growing its time axis would be two
        # stalls, not one

    # -- actions ------------------------------------------------------------------
    def run(self, *_):
        """Run (or continue) to ``steps`` steps; starts over once the state is there."""
        # the run updates the refined layer (adding it is a stall of its own: not at the click)
        if self.busy or not self._prepare(refined=False):
            return
        end = total_steps(self._settings())
        if self._step >= end or self._state is None:
            self._reset_state(self._u0, refined=False)
        self._start(end - self._step, self.every.value)

    def step(self, *_):
        """Advance exactly one step from the current state (a running job is paused first)."""
        job = self.job
        if self.busy:
            if job.state == RUNNING:
                job.pause()
            elif job.state == PAUSED:
                job.step_once()
            return
        if self._prepare():
            if self._state is None:  # after the completion: nothing continues from there
                self._reset_state(self._u0)
            self._start(1, 1)

    def toggle_pause(self, *_):
        if self.busy:
            self.job.toggle_pause()

    def cancel(self, *_):
        if self.busy:
            self.job.cancel()

    def reset(self, *_):
        """Back to the probability, step 0, with an empty history (a running job is dropped)."""
        if self.busy:
            self.job.detach()
        self._field = None  # _prepare starts over from the probability (keeping known directions)
        if self._prepare():
            self.say("reset to the probability (step 0)")

    def restore(self, *_):
        """Make the snapshot under the time slider the current state (later snapshots are dropped)."""
        if self.busy:
            if self.job.state == RUNNING:
                show_error("Pause or cancel the run before going back to a snapshot.")
                return
            self.job.detach()
        if self._history is None or HISTORY not in self._viewer.layers:
            show_error("No snapshots yet: Run or Step the diffusion first.")
            return
        i = min(int(self._viewer.dims.current_step[0]), len(self._history) - 1)
        step, field = self._history.snapshot(i)
        self._history.truncate(i + 1)
        self._field, self._step = field, step
        s = self._settings()
        done = s.method in COMPLETED_METHODS and step >= total_steps(s)  # nothing continues from there
        self._state = None if done else ungated_state(self._u0, field, s)
        self._show_field()
        self.say(f"back at step {step}")

    def _key_step(self, _viewer=None):
        self.step()

    def _start(self, steps: int, every: int):
        feats = self._source.metadata.get("features") if self._directions is None else None
        target = self._step + steps
        note = "estimating directions..." if self._directions is None else ""
        self.start(_diffusion_in_child, self._state, self._directions, self._settings(), start=self._step,
                   steps=steps, every=every, features=feats, u0=self._u0, step=self._step, total=target,
                   desc="diffusion",
                   note=note, on_frame=self._on_frame, on_error=self._on_error, on_end=self._on_end)

    # -- showing the state (GUI thread) -------------------------------------------
    def show_controls(self):
        job = self.job
        live = job is not None and job.state in (RUNNING, PAUSED)
        self.run_button.enabled = not self.busy
        self.pause_button.enabled = self.cancel_button.enabled = live
        self.pause_button.text = "Resume" if live and job.state == PAUSED else "Pause"

    def show_frame(self):
        live = self.job is not None and self.job.state == RUNNING
        if not self._fresh and not live and self._field is not None and self._refined_step != self._step:
            self._put_refined()  # paused or ended on a frame already drawn: the refined layer too
        if self._fresh:
            self._fresh = False
            # while running, the (hidden) refined layer follows the history at most every
            # REFINED_INTERVAL: one layer update per drawing, not two; paused or ended, at once
            # (and at once when the annotator made it visible)
            layers = self._viewer.layers
            shown = REFINED in layers and layers[REFINED].visible
            due = not live or shown or time.monotonic() - self._refined_at >= REFINED_INTERVAL
            if due and live and REFINED not in layers:
                # adding a layer is a stall of its own: not with the first frame's (whose
                # layer's first repaint is long), a while later or at the end of the run
                self._refined_at = time.monotonic()
                QTimer.singleShot(int(REFINED_INTERVAL * 1000),
                                  lambda: self.alive and REFINED not in layers and self._put_refined())
                due = False
            self._show_field(refined=due)

    def _put_refined(self) -> None:
        """The refined layer: the current field (hidden: the history layer shows it)."""
        self._refined_at, self._refined_step = time.monotonic(), self._step
        # (the look applies when the layer is made; the annotator's later changes are kept)
        look = VOLUME_LOOK if self._field.ndim == 3 else PLANE_LOOK
        put_image(self._viewer, REFINED, self._field, like=self._source, contrast_limits=(0, 1), **look)

    def _show_field(self, follow: bool = True, refined: bool = True):
        src = self._source
        history_look = VOLUME_HISTORY_LOOK if self._field.ndim == 3 else PLANE_HISTORY_LOOK
        if refined:
            self._put_refined()
        put_image(self._viewer, HISTORY, self._history.stack(), like=src, contrast_limits=(0, 1),
                  **{**history_look, "visible": self.after.value})
        labels = list(self._viewer.dims.axis_labels)
        if labels and labels[0] != "step":  # the time axis: its slider is read with the scrub line
            self._viewer.dims.axis_labels = ["step", *labels[1:]]
        if follow:
            self._follow_last()
            if not self._viewer.layers[HISTORY].visible and self.after.value:
                # just added, shown a turn later (`_add_in_two_turns`): the time slider only
                # reaches the newest snapshot then
                QTimer.singleShot(2 * AFTER_ADD_MS, lambda: self.alive and self._follow_last())
        self._show_scrub()

    def _follow_last(self) -> None:
        if self._history is not None and len(self._history) and HISTORY in self._viewer.layers:
            self._viewer.dims.set_current_step(0, len(self._history) - 1)
            self._show_scrub()

    def _show_after(self, on: bool):
        """Before / after: show or hide the refined history over the image."""
        if HISTORY in self._viewer.layers:
            if on:
                show_layer(self._viewer.layers[HISTORY])
            else:
                self._viewer.layers[HISTORY].visible = False

    def _show_scrub(self, *_):
        if self._history is None or not len(self._history) or HISTORY not in self._viewer.layers:
            self.scrub.value = ""
            return
        i = min(int(self._viewer.dims.current_step[0]), len(self._history) - 1)
        step = self._history.steps[i]
        s = self._settings()
        done = " (the completion)" if step == total_steps(s) and s.method in COMPLETED_METHODS else ""
        self.scrub.value = f"time slider: snapshot {i + 1} of {len(self._history)} = step {step}{done}"

    # -- the job's events (GUI thread, one at a time) -----------------------------
    def _on_frame(self, job, frame: Frame):
        """Take a frame in: cheap (a snapshot copy); the layers are redrawn by `show_frame`."""
        if frame.directions is not None:
            self._directions = frame.directions
            return
        self._history.add(frame.step, frame.field)
        self._field, self._state, self._step = frame.field, frame.state, frame.step
        job.step = frame.step
        self._fresh = True

    def _on_error(self, job, exc):
        show_error(f"Diffusion failed: {exc}")

    def _on_end(self, job):
        if job.state == CANCELLED:
            show_info("Diffusion cancelled; the refined layer keeps the last step shown.")
