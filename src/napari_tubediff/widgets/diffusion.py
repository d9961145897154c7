"""Diffusion panel: refine a probability layer by anisotropic diffusion, live, and scrub back.

Thin by design: it gathers a layer and parameters, runs `models.refiner.vessel_directions`
(learned head or Hessian) and `core.refine.refine_steps` in a separate process
(`workers.tasks.diffusion` through `workers.process.run_in_child`, in lock-step with the
panel), and shows the run in ONE layer, updated in place:

* ``refined`` (Image, same shape as the probability): the field at the step under the
  panel's **step** slider, drawn over the image (`PLANE_LOOK`, `VOLUME_LOOK`). A
  ``refined`` layer made from another probability (another image's run) or not by this
  panel is kept under another name, never overwritten (`DiffusionWidget._claim`). While a run goes the slider
  follows the newest step, so the layer is the current field, the one the Bridged gaps and
  Accept panels use; scrubbed back, it shows (and they use) the snapshot on screen.
* The snapshots themselves stay in the panel (`core.history.SnapshotHistory`): at most
  ``snapshots kept`` of them (and at most 256 MiB, `SNAPSHOT_BYTES`), evenly spaced from
  step 0 plus the newest, so they always span the run and early steps stay reachable.
  The slider scrubs them and its line says the real step ("step 37 / 200").

No layer with a time axis is made while a run goes: napari gives such a layer a new dims
slider and lays the window out again, a 0.3 s stall of the GUI thread at light load on
the 2-core machine (docs/performance.md, section 9). **Add history as layer** exports the
snapshots on request, as an Image layer whose leading axis is labelled ``step``.

Volumes (planes, rows, cols) work the same way: the "3D view" box renders the field in
napari's 3D view (maximum intensity projection, green added to the probability) as it
evolves. A 128^3 volume takes 8 MiB per snapshot, so the memory cap, not the count, bounds
its history (32 snapshots); the panel shows the budget, and says when the cap cuts the
number of snapshots.

The method (``method``, default `core.refine.RECOMMENDED_METHOD`) is one of
`core.refine.REFINE_METHODS`, run by `core.refine.refine_steps`, so the last step equals
``tubediff refine``'s result: the gated methods show each step of the gated PDE, and the
methods with a completion (DTI or directional hysteresis) show it as one more step,
``steps + 1``, called "the completion" in the status and on the slider ("step 31 / 30+1
(the completion)").

Run continues the current state up to the method's last step (and, once there, starts over
from the probability, saying so); Pause/Resume holds the worker; Step advances exactly one
step from the current state (after the completion there is none: it says so); Back to
snapshot makes the snapshot under the slider the current state; Reset goes back to the
probability; Cancel stops and keeps the last step shown.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, Slider, SpinBox
from napari.utils.colormaps import Colormap
from napari.utils.notifications import show_error, show_info

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
    CANCELLED,
    PAUSED,
    RUNNING,
    SHORTCUTS,
    Panel,
    QuietSlot,
    _pad,
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
#: The name of the snapshots exported on request (Add history as layer): no "refined" in it,
#: so the panels that look for the refined layer by name never take the stack.
HISTORY = "diffusion history"
#: Where the refined layer records what it was made from (`DiffusionWidget._claim`).
MADE_FROM = "tubediff_refined_from"


def step_words(step: int, settings: RefineSettings) -> str:
    """Step ``step`` of a run with ``settings`` in words, saying which step is the completion.

    Examples
    --------
    >>> step_words(12, RefineSettings(method="faithful", steps=30))
    'step 12 / 30'
    >>> step_words(31, RefineSettings(method="gated+dti", steps=30))
    'step 31 / 30+1 (the completion)'
    """
    end = total_steps(settings)
    if settings.method not in COMPLETED_METHODS:
        return f"step {step} / {end}"
    words = f"step {step} / {end - 1}+1"
    return f"{words} (the completion)" if step == end else words


class Frame(NamedTuple):
    """What the worker yields: the field shown at ``step`` and the diffusion's state there
    (`core.refine.RefineStep`), or, once and first, only the directions."""

    step: int
    field: np.ndarray | None
    directions: np.ndarray | None = None
    state: np.ndarray | None = None


#: The snapshot history's memory cap (`core.history.capacity_for`).
SNAPSHOT_BYTES = 256 * 2**20


#: How the refined field is drawn for a 2D image: a green that is transparent where the
#: field is low, so the photograph and the probability (magma) stay visible around and
#: under the vessels, and what the diffusion bridged shows green over the dark gap.
#: "show refined" toggles it: before / after. Made with its final look at once (no
#: property event after the add: each one is more work for napari's GUI thread).
CLEAR_GREEN = Colormap([[0.0, 1.0, 0.3, 0.0], [0.0, 1.0, 0.3, 1.0]], name="transparent green")
PLANE_LOOK = {"colormap": CLEAR_GREEN, "blending": "translucent", "opacity": 0.7}
#: ... and for a volume, in the 3D view as plane by plane: a maximum intensity projection
#: in a colour map from black, added to the probability (magma), so what the diffusion
#: bridged shows green (an opaque volume on top would hide the rest).
VOLUME_LOOK = {"colormap": "green", "blending": "additive", "rendering": "mip"}


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
    """Dock widget: choose a probability layer, set the PDE's parameters; Run, Pause, Step, Reset;
    the step slider scrubs the run's snapshots."""

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
        self._out = None           # the refined layer's name for the current source
        self._from = None          # what the refined layer is made from (`_claim`)
        self._shown = None         # (history length, index) drawn into the refined layer
        self._moving = False       # the panel moves the slider (not the annotator)
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
                                     tooltip="most snapshots the step slider scrubs (older ones are thinned)")
        self.run_button = PushButton(text="Run")
        self.pause_button = PushButton(text="Pause", enabled=False)
        self.step_button = PushButton(text="Step")
        self.restore_button = PushButton(text="Back to snapshot",
                                         tooltip="make the snapshot under the step slider the current state")
        self.reset_button = PushButton(text="Reset")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.scrubber = Slider(value=0, min=0, max=0, label="step", readout=False, enabled=False,
                               tooltip="scrub back through the run's snapshots: the refined layer shows "
                                       "the one under the slider (it follows the newest while running)")
        self.scrub = Label(value="")
        self.export_button = PushButton(text="Add history as layer",
                                        tooltip="the kept snapshots as one Image layer with a 'step' axis "
                                                "(napari's dims slider then scrubs them too)")
        self.memory = Label(value="")
        self.keys = Label(value=f"Keys: {SHORTCUTS['step']} step (pauses a run first)")
        self.after = CheckBox(text="show refined (off: before)", value=True,
                              tooltip="the refined field over the image: on, after the diffusion; "
                                      "off, the probability before it")
        follow_layers(viewer, self.layer, prefer="probab")
        self.view3d = view_toggle(viewer, self.layer)
        self.extend([self.layer, self.method, self.sigma, self.lambda_par, self.lambda_perp, self.dt,
                     self.steps, self.every, self.order, self.max_snapshots, self.run_button,
                     self.pause_button, self.step_button, self.restore_button, self.reset_button,
                     self.cancel_button, self.view3d, self.after, self.status, self.scrubber, self.scrub,
                     self.export_button, self.memory, self.keys])
        self.run_button.changed.connect(self.run)
        self.pause_button.changed.connect(self.toggle_pause)
        self.step_button.changed.connect(self.step)
        self.restore_button.changed.connect(self.restore)
        self.reset_button.changed.connect(self.reset)
        self.cancel_button.changed.connect(self.cancel)
        self.export_button.changed.connect(self.export_history)
        self.after.changed.connect(self._show_after)
        self.scrubber.changed.connect(self._on_scrub)
        for w in (self.dt, self.lambda_par, self.lambda_perp, self.order):
            w.changed.connect(self._show_substeps)
        self.layer.changed.connect(self._show_substeps)
        self.method.changed.connect(self._forget_state)
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

        ``refined=False``: a run follows, whose first drawing adds the refined layer."""
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
                self._claim(layer, u)
            self._key, self._source, self._data_ref = key, layer, layer.data
            self._reset_state(u, refined)
        return True

    def _claim(self, source, u: np.ndarray) -> None:
        """Keep a ``refined`` layer that this panel did not make from this probability (another
        image's run, a probability Segment has replaced since, the annotator's own layer): it
        is renamed after what it was made from, never overwritten; this run draws a new one."""
        self._out = REFINED
        self._from = {"source": source.name, "data": f"{u.shape}:{zlib.crc32(np.ascontiguousarray(u)):08x}"}
        layers = self._viewer.layers
        if self._out in layers and layers[self._out].metadata.get(MADE_FROM) != self._from:
            old = layers[self._out]
            was = old.metadata.get(MADE_FROM, {}).get("source")
            # napari numbers the name if it is taken too
            old.name = f"{REFINED} ({'earlier' if was in (None, source.name) else 'from ' + was})"
            show_info(f"'{REFINED}' was made from another probability: kept as '{old.name}'; "
                      f"the diffusion of '{source.name}' draws into a new '{REFINED}'.")

    def _reset_state(self, u: np.ndarray, refined: bool = True) -> None:
        self._u0 = u
        self._field = u.copy()
        self._state = self._field  # the diffusion's own field (the shown one before a gate)
        self._step = 0
        wanted = self.max_snapshots.value
        cap = capacity_for(u.shape, wanted, SNAPSHOT_BYTES)
        self._history = SnapshotHistory(cap)
        self._history.add(0, u)
        self._shown = None  # a new history: draw whatever the slider shows
        each = u.size * 4
        self.memory.value = f"snapshots: at most {cap} x {_mib(each)} = {_mib(cap * each)}"
        told = (self._key, cap)
        if cap < wanted and told != getattr(self, "_told", None):  # once per layer, not at every reset
            self._told = told
            show_info(f"Each snapshot of '{self._source.name}' {u.shape} takes {_mib(each)}: at most "
                      f"{cap} are kept ({_mib(cap * each)}), thinned over the run, not {wanted}.")
        # a run that follows adds the refined layer with its first drawing: adding it at the
        # click as well would make two stalls of one
        self._show_field(refined=refined or self._out in self._viewer.layers)

    # -- actions ------------------------------------------------------------------
    def run(self, *_):
        """Run (or continue) to ``steps`` steps; starts over once the state is there (and says so)."""
        if self.busy or not self._prepare(refined=False):
            return
        end = total_steps(self._settings())
        note = ""
        if self._step >= end or self._state is None:
            note = f"run ended at {step_words(self._step, self._settings())}: starting over from step 0"
            self._reset_state(self._u0, refined=False)
        self._start(end - self._step, self.every.value, note)

    def step(self, *_):
        """Advance exactly one step from the current state (a running job is paused first).

        After the completion there is no next step: it says so, and Reset or Back to snapshot
        goes on from an earlier one."""
        job = self.job
        if self.busy:
            if job.state == RUNNING:
                job.pause()
            elif job.state == PAUSED:
                job.step_once()
            return
        if self._prepare():
            if self._state is None:  # after the completion: nothing continues from there
                self.say(f"at {step_words(self._step, self._settings())}: no step after the completion "
                         "(Reset, or Back to snapshot, to go on from an earlier step)")
                return
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
        """Make the snapshot under the step slider the current state (later snapshots are dropped)."""
        if self.busy:
            if self.job.state == RUNNING:
                show_error("Pause or cancel the run before going back to a snapshot.")
                return
            self.job.detach()
        if self._history is None or len(self._history) < 2:
            show_error("No snapshots yet: Run or Step the diffusion first.")
            return
        i = self._index()
        step, field = self._history.snapshot(i)
        self._history.truncate(i + 1)
        self._field, self._step = field, step
        s = self._settings()
        done = s.method in COMPLETED_METHODS and step >= total_steps(s)  # nothing continues from there
        self._state = None if done else ungated_state(self._u0, field, s)
        self._shown = None
        self._show_field()
        self.say(f"back at step {step}")

    def export_history(self, *_):
        """Add the kept snapshots as one Image layer, its leading axis labelled ``step`` (on request:
        a layer with a time axis gives napari a new dims slider and a new window layout)."""
        if self._history is None:
            show_error("No snapshots yet: Run or Step the diffusion first.")
            return
        stack = self._history.stack().copy()  # a view of the panel's buffer: the layer keeps its own
        look = VOLUME_LOOK if stack.ndim == 4 else PLANE_LOOK
        # a new layer each time (napari numbers the name): an earlier export is never overwritten
        layer = self._viewer.add_image(stack, name=HISTORY, contrast_limits=(0, 1), **look,
                                       scale=_pad(self._source.scale, stack.ndim, 1.0),
                                       translate=_pad(self._source.translate, stack.ndim, 0.0),
                                       metadata={"steps": self._history.steps})
        labels = list(self._viewer.dims.axis_labels)
        self._viewer.dims.axis_labels = ["step", *labels[1:]]
        self._viewer.dims.set_current_step(0, len(stack) - 1)
        steps = self._history.steps
        self.say(f"'{layer.name}': {len(steps)} snapshots, steps {', '.join(map(str, steps[:6]))}"
                 + (", ..." if len(steps) > 6 else "") + " (the layer's metadata['steps'])")

    def _key_step(self, _viewer=None):
        self.step()

    def _start(self, steps: int, every: int, note: str = ""):
        feats = self._source.metadata.get("features") if self._directions is None else None
        target = self._step + steps
        if self._directions is None:
            note = f"{note}; estimating directions..." if note else "estimating directions..."
        self.start(_diffusion_in_child, self._state, self._directions, self._settings(), start=self._step,
                   steps=steps, every=every, features=feats, u0=self._u0, step=self._step, total=target,
                   desc="diffusion",
                   note=note, on_frame=self._on_frame, on_error=self._on_error, on_end=self._on_end)

    # -- showing the state (GUI thread) -------------------------------------------
    def count_text(self, job) -> str | None:
        """The status's count: the step in words (which one is the completion)."""
        return step_words(job.step, self._settings()) if job.total == total_steps(self._settings()) else None

    def show_controls(self):
        job = self.job
        live = job is not None and job.state in (RUNNING, PAUSED)
        self.run_button.enabled = not self.busy
        self.pause_button.enabled = self.cancel_button.enabled = live
        self.pause_button.text = "Resume" if live and job.state == PAUSED else "Pause"

    def show_frame(self):
        if self._fresh:
            self._fresh = False
            self._show_field()

    def _index(self) -> int:
        return min(int(self.scrubber.value), len(self._history) - 1)

    def _show_field(self, follow: bool = True, refined: bool = True):
        """The slider over the history (at its newest snapshot when ``follow``) and the refined
        layer at the slider's snapshot (added only when ``refined``, or when it is there)."""
        n = len(self._history)
        self._moving = True
        try:
            self.scrubber.max = n - 1
            if follow:
                self.scrubber.value = n - 1
            self.scrubber.enabled = n > 1
        finally:
            self._moving = False
        if refined or self._out in self._viewer.layers:
            self._put_refined(self._index())
        self._show_scrub()

    def _put_refined(self, i: int) -> None:
        """Draw snapshot ``i`` into the refined layer, in place (added with its look the first time)."""
        if self._shown == (len(self._history), i, self._step) and self._out in self._viewer.layers:
            return  # already on screen: no new data for napari to slice, thumbnail and upload
        step = self._history.steps[i]
        # the newest snapshot is the current field (the panel's own copy); an older one is
        # copied out of the history's buffer, which later snapshots overwrite
        field = self._field if step == self._step else self._history.stack()[i].copy()
        look = VOLUME_LOOK if field.ndim == 3 else PLANE_LOOK
        layer = put_image(self._viewer, self._out, field, like=self._source, contrast_limits=(0, 1),
                          **look, visible=self.after.value, metadata={MADE_FROM: self._from})
        layer.metadata[MADE_FROM] = self._from
        self._shown = (len(self._history), i, self._step)

    def _on_scrub(self, *_):
        """The annotator moved the slider: the refined layer shows that snapshot."""
        if self._moving or self._history is None or not len(self._history):
            return
        if self._out in self._viewer.layers:
            self._put_refined(self._index())
        self._show_scrub()

    def _show_after(self, on: bool):
        """Before / after: show or hide the refined field over the image."""
        if self._out in self._viewer.layers:
            if on:
                show_layer(self._viewer.layers[self._out])
            else:
                self._viewer.layers[self._out].visible = False

    def _show_scrub(self, *_):
        if self._history is None or not len(self._history):
            self.scrub.value = ""
            return
        i = self._index()
        step = self._history.steps[i]
        where = "" if step == self._step else f"; the run is at step {self._step}"
        self.scrub.value = (f"snapshot {i + 1} of {len(self._history)}: "
                            f"{step_words(step, self._settings())}{where}")

    # -- the job's events (GUI thread, one at a time) -----------------------------
    def _on_frame(self, job, frame: Frame):
        """Take a frame in: cheap (a snapshot copy); the layer is redrawn by `show_frame`."""
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
