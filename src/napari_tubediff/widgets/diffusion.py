"""Diffusion panel: refine a probability layer by anisotropic diffusion, live.

Thin by design: it gathers a layer and parameters, runs
`napari_tubediff.estimate_directions` and `napari_tubediff.iter_diffusion` in a
worker thread, and puts each yielded field into the ``refined`` layer.
"""

from __future__ import annotations

import time

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info

from ..core.checks import check_field
from ..core.diffusion import plan_substeps
from ..core.refine import RefineSettings, iter_refine

REFINED = "refined"


def _diffusion_job(u, settings: RefineSettings, every: int, min_interval=0.04):
    """Worker body: directions, then the diffusion's steps (a generator, so it can be cancelled).

    Small images step faster than a screen refreshes: frames closer than
    ``min_interval`` seconds to the last one sent are skipped (the last step is
    always sent), so the GUI is never flooded with queued updates.
    """
    last = -np.inf
    for step, field in iter_refine(u, settings=settings, every=every):
        now = time.monotonic()
        if step == settings.steps or now - last >= min_interval:
            last = now
            yield step, field


class DiffusionWidget(Container):
    """Dock widget: choose a probability layer, set the PDE's parameters, Run or Cancel."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        d = RefineSettings()
        self._viewer = viewer
        self._worker = None
        self._progress = None
        self._pending = None
        self.layer = ComboBox(label="probability", choices=self._image_layers)
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
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.extend([self.layer, self.sigma, self.lambda_par, self.lambda_perp, self.dt, self.steps,
                     self.every, self.order, self.run_button, self.cancel_button, self.status])
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._prefer_probability()
        self.dt.changed.connect(self._show_substeps)
        self.lambda_par.changed.connect(self._show_substeps)
        self.lambda_perp.changed.connect(self._show_substeps)
        self.order.changed.connect(self._show_substeps)

    def _image_layers(self, _widget=None):
        return [(lay.name, lay) for lay in self._viewer.layers if isinstance(lay, napari.layers.Image)]

    def _prefer_probability(self, *_):
        # follow the viewer's layers; unless the user already chose a probability-like
        # layer, move to the newest one named like a probability field
        if not _:
            events = self._viewer.layers.events
            for ev in (events.removed, events.moved):
                ev.connect(self.layer.reset_choices)
            events.inserted.connect(self._prefer_probability)
        self.layer.reset_choices()
        current = self.layer.value
        if current is not None and "probab" in current.name.lower():
            return
        named = [c for c in self.layer.choices if "probab" in c.name.lower()]
        if named:
            self.layer.value = named[-1]

    # -- actions ------------------------------------------------------------------
    def _show_substeps(self, *_):
        n = plan_substeps(self.dt.value, self.lambda_par.value, self.lambda_perp.value,
                          self.order.value, 2)
        self.status.value = "" if n == 1 else f"dt above the stability limit: {n} sub-steps per step"

    def _input(self) -> np.ndarray | None:
        layer = self.layer.value
        if layer is None:
            show_error("Choose a probability layer (an Image layer with values in [0, 1]).")
            return None
        if getattr(layer, "rgb", False):
            show_error(f"'{layer.name}' is an RGB image: choose a single-channel probability layer.")
            return None
        try:
            return check_field(np.asarray(layer.data), f"layer '{layer.name}'")
        except ValueError as e:
            show_error(str(e))
            return None

    def run(self, *_):
        if self._worker is not None:
            return
        u = self._input()
        if u is None:
            return
        settings = RefineSettings(sigma=self.sigma.value, lambda_par=self.lambda_par.value,
                                  lambda_perp=self.lambda_perp.value, dt=self.dt.value,
                                  steps=self.steps.value, order=self.order.value)
        self._source = self.layer.value
        self._progress = progress(total=settings.steps, desc="diffusion")
        self._worker = create_worker(_diffusion_job, u, settings, self.every.value, _ignore_errors=True)
        self._worker.yielded.connect(self._on_step)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "estimating directions..."
        self._worker.start()

    def cancel(self, *_):
        if self._worker is not None:
            self._worker.quit()
            self.status.value = "cancelling..."

    # -- worker callbacks (main thread) ------------------------------------------
    def _on_step(self, item):
        # Updating a layer can process Qt events, which may deliver the next frame
        # into this handler again: keep only the newest frame and draw it from the
        # outermost call.
        busy = self._pending is not None
        self._pending = item
        if busy:
            return
        while self._pending is not None:
            step, field = self._pending
            if REFINED in self._viewer.layers:
                self._viewer.layers[REFINED].data = field
            else:
                src = self._source
                self._viewer.add_image(field, name=REFINED, colormap="viridis", contrast_limits=(0, 1),
                                       scale=src.scale, translate=src.translate, blending="additive")
            self.status.value = f"step {step} / {self.steps.value}"
            if self._progress is not None:
                self._progress.update(step - self._progress.n)
            if self._pending[0] == step:
                self._pending = None

    def _on_error(self, exc):
        show_error(f"Diffusion failed: {exc}")

    def _on_finished(self):
        if self._worker is not None and self._worker.abort_requested:
            self.status.value = f"cancelled ({self.status.value})"
            show_info("Diffusion cancelled; the refined layer keeps the last step shown.")
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
