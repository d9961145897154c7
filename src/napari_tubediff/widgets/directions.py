"""Directions panel: the vessel directions as a ``directions`` Vectors layer, coloured by orientation.

Directions come from `models.refiner.vessel_directions`: the learned direction head
on the backbone's features when the probability layer carries them (U-Net), else the
Hessian eigenvectors of the probability field. They are drawn one per grid cell, at its
most probable vessel pixel (``probability >= threshold``), by `core.directions.sample_vectors`,
so thin vessels, which rarely cross a grid pixel, get vectors too. Changing the grid
step or the length redraws at once from the directions already computed.

Colours: in 2D the angle in the image plane (a cyclic colour map over 0-180 degrees);
for a volume the vectors have three components and are coloured by their 3D
orientation (`core.directions.orientation_colors`: red along the columns, green along
the rows, blue across the planes). The "3D view" box renders them in napari's 3D view;
off, the volume is shown plane by plane. The grid step is set to `GRID_STEP` ``[ndim]``
when the chosen layer's dimensions change.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.notifications import show_error

from ..core.checks import relative_spacing
from ..core.directions import orientation_colors, sample_vectors, vector_angles, vector_elevations
from ..models import session
from ..models.refiner import vessel_directions
from ._common import (
    Panel,
    follow_layers,
    layer_spacing,
    layers_of,
    preload,
    probability_data,
    put_layer,
    spatial_ndim,
    view_toggle,
)

DIRECTIONS = "directions"
#: Default grid step for 2D images and for volumes: a volume's regular grid meets a thin
#: vessel far more rarely (one pixel in step^3), so its grid is denser.
GRID_STEP = {2: 6, 3: 3}


def _directions_job(u: np.ndarray, sigma: float, features=None, spacing=None):
    """``(directions, source)``: the learned head on the backbone's features when the
    probability layer carries them, Hessian directions otherwise (``spacing``: the layer's
    scale relative to its finest axis, so ``sigma`` stays in pixels)."""
    return vessel_directions(u, features, sigma=sigma, spacing=spacing)


class DirectionsWidget(Panel):
    """Dock widget: choose the probability layer, press Show directions."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        preload()  # pandas, which napari imports when this panel first adds its vectors
        self._cache = None  # (key, u, directions)
        self.layer = ComboBox(label="probability", choices=lambda _w: layers_of(viewer, napari.layers.Image))
        self.sigma = FloatSpinBox(value=3.0, min=0.5, max=50.0, step=0.5, label="direction scale",
                                  tooltip="Hessian scale in pixels, about the vessel radius")
        self.threshold = FloatSpinBox(value=0.5, min=0.01, max=1.0, step=0.05, label="vessel threshold",
                                      tooltip="vectors are drawn where probability >= this")
        self.step = SpinBox(value=GRID_STEP[2], min=1, max=256, label="grid step",
                            tooltip="one vector every this many pixels (the density)")
        self.length = FloatSpinBox(value=5.0, min=0.5, max=100.0, step=0.5, label="length",
                                   tooltip="drawn length of each vector, in pixels")
        self.run_button = PushButton(text="Show directions")
        self.status = Label(value="")
        follow_layers(viewer, self.layer, prefer="probab")
        self.view3d = view_toggle(viewer, self.layer)
        self.extend([self.layer, self.sigma, self.threshold, self.step, self.length, self.run_button,
                     self.view3d, self.status])
        self.run_button.changed.connect(self.run)
        for w in (self.step, self.length, self.threshold):
            w.changed.connect(self._redraw)
        self._nd = 2
        self.layer.changed.connect(self._fit_grid)
        self._fit_grid()

    def _fit_grid(self, *_):
        nd = spatial_ndim(self.layer.value)
        if nd in GRID_STEP and nd != self._nd:
            self._nd = nd
            self.step.value = GRID_STEP[nd]

    def _input(self) -> np.ndarray | None:
        return probability_data(self.layer.value, show_error)

    def run(self, *_):
        if self.busy:
            return
        u = self._input()
        if u is None:
            return
        self._spacing = relative_spacing(layer_spacing(self.layer.value), u.ndim)
        key = (id(self.layer.value), self.sigma.value, session.version(), self._spacing)
        self._source = self.layer.value
        feats = self.layer.value.metadata.get("features")
        self.start(_directions_job, u, self.sigma.value, feats, self._spacing, desc="estimating directions",
                   note="estimating directions...", on_result=lambda _job, v: self._on_result(key, u, v),
                   on_error=lambda _job, e: show_error(f"Directions failed: {e}"))

    def show_controls(self):
        self.run_button.enabled = not self.busy

    def _on_result(self, key, u, result):
        v, self._kind = result
        self._cache = (key, u, v)
        self._redraw()

    def _redraw(self, *_):
        if self._cache is None:
            return
        _, u, v = self._cache
        vectors = sample_vectors(v, u >= self.threshold.value, self.step.value, self.length.value,
                                 inside=True, weights=u, spacing=getattr(self, "_spacing", None))
        angles = vector_angles(vectors) if len(vectors) else np.zeros(0, np.float32)
        if u.ndim == 3:
            # colour by 3D orientation; the angles stay in the features for a colour map by hand
            elev = vector_elevations(vectors) if len(vectors) else np.zeros(0, np.float32)
            colour = {"features": {"angle": angles, "elevation": elev},
                      "edge_color": orientation_colors(vectors) if len(vectors) else "white"}
            legend = "3D orientation;\nred: along columns, green: rows, blue: across planes"
        else:
            colour = {"features": {"angle": angles}, "edge_color": "angle", "edge_colormap": "hsv",
                      "edge_contrast_limits": (0.0, 180.0)}
            legend = "colour: angle, 0-180 degrees"
        put_layer(self._viewer, DIRECTIONS, "vectors", vectors, like=self._source, edge_width=1.0,
                  length=1.0, vector_style="line", **colour)
        kind = "learned head" if getattr(self, "_kind", "") == "learned" else "Hessian"
        text = f"{len(vectors)} vectors, {kind} directions ({legend})"
        if self.busy:  # the job's result: its status once it ends
            self.done_text = text
        else:          # redrawn for a new grid step or length
            self.say(text)
