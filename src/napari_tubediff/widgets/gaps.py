"""Bridged gaps panel: what the refinement added, ranked by size, to review one by one.

`core.gaps.bridged_gaps` groups the pixels that crossed the threshold (``refined >= t``
and ``probability < t``) into connected gaps; they become the ``bridged`` Labels layer
(gap ``k`` = label ``k``, 1 the largest) and a list. Choosing an entry centres and zooms
the view on the gap; Accept gap / Reject gap mark it. The marks live in the layer's
``features`` table (column ``status``), where the Accept panel reads which gaps to leave out.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QListWidget

from ..core.checks import check_field
from ..core.gaps import bridged_gaps
from ._common import Panel, camera, canvas_size, follow_layers, layers_of, put_layer, steady_cursor

BRIDGED = "bridged"
UNREVIEWED, ACCEPTED, REJECTED = "unreviewed", "accepted", "rejected"


def rejected_labels(layer) -> list[int]:
    """Labels marked rejected in a ``bridged`` layer's features (empty for any other layer)."""
    f = layer.features
    if "status" not in f or "index" not in f:
        return []
    return [int(i) for i in f.loc[f["status"] == REJECTED, "index"]]


class GapsWidget(Panel):
    """Dock widget: find the bridged gaps, walk through them, accept or reject each."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self._gaps = []
        self._status: list[str] = []
        images = lambda _w: layers_of(viewer, napari.layers.Image)  # noqa: E731
        self.probability = ComboBox(label="before (probability)", choices=images)
        self.refined = ComboBox(label="after (refined)", choices=images)
        self.threshold = FloatSpinBox(value=0.5, min=0.01, max=1.0, step=0.05, label="threshold")
        self.min_size = SpinBox(value=4, min=1, max=100000, label="smallest gap (px)",
                                tooltip="smaller gaps (often single pixels on a vessel's rim) are not listed")
        self.run_button = PushButton(text="Find bridged gaps")
        self.list = QListWidget()
        self.list.setMinimumHeight(160)
        self.accept_button = PushButton(text="Accept gap")
        self.reject_button = PushButton(text="Reject gap")
        self.status = Label(value="")
        self.extend([self.probability, self.refined, self.threshold, self.min_size, self.run_button])
        self.native.layout().addWidget(self.list)
        self.extend([self.accept_button, self.reject_button, self.status])
        follow_layers(viewer, self.probability, prefer="probab")
        follow_layers(viewer, self.refined, prefer="refined")
        self.listen(viewer.dims.events.ndisplay, lambda _e: steady_cursor(viewer))  # see steady_cursor
        self.run_button.changed.connect(self.run)
        self.list.currentRowChanged.connect(self.go_to)
        self.accept_button.changed.connect(lambda *_: self.mark(ACCEPTED))
        self.reject_button.changed.connect(lambda *_: self.mark(REJECTED))

    def _inputs(self):
        p, r = self.probability.value, self.refined.value
        if p is None or r is None:
            show_error("Choose the probability layer (before) and the refined layer (after the Diffusion "
                       "panel).")
            return None
        if p is r:
            show_error("'before' and 'after' are the same layer: choose the refined layer as 'after'.")
            return None
        try:
            u = check_field(np.asarray(p.data), f"layer '{p.name}'")
            v = check_field(np.asarray(r.data), f"layer '{r.name}'")
        except ValueError as e:
            show_error(str(e))
            return None
        if u.shape != v.shape:
            show_error(f"'{p.name}' {u.shape} and '{r.name}' {v.shape} differ in shape: choose the "
                       "refined layer, not the refined history.")
            return None
        return u, v

    def run(self, *_):
        if self.busy:
            return
        inputs = self._inputs()
        if inputs is None:
            return
        self._source = self.refined.value
        self.start(bridged_gaps, *inputs, self.threshold.value, self.min_size.value,
                   desc="finding bridged gaps", note="finding bridged gaps...", on_result=self._on_result,
                   on_error=lambda _job, e: show_error(f"Finding gaps failed: {e}"))

    def show_controls(self):
        self.run_button.enabled = not self.busy

    def _on_result(self, _job, result):
        labels, gaps = result
        self._gaps = gaps
        self._status = [UNREVIEWED] * len(gaps)
        put_layer(self._viewer, BRIDGED, "labels", labels, like=self._source, opacity=0.8,
                  features=self._features())
        self.list.clear()
        for k in range(len(gaps)):
            self.list.addItem(self._item_text(k))
        self.done_text = (f"{len(gaps)} bridged gap(s), {sum(g.size for g in gaps)} px"
                          if gaps else "no bridged gaps: nothing crossed the threshold")

    def _features(self) -> dict:
        return {"index": np.arange(len(self._gaps) + 1),
                "size": [0] + [g.size for g in self._gaps],
                "confidence": [0.0] + [g.confidence for g in self._gaps],
                "status": ["background"] + self._status}

    def _item_text(self, k: int) -> str:
        g = self._gaps[k]
        where = ", ".join(f"{c:.0f}" for c in g.centroid)
        return f"#{g.label}: {g.size} px, confidence {g.confidence:.2f}, at ({where}) - {self._status[k]}"

    # -- review -------------------------------------------------------------------
    def go_to(self, row: int):
        """Centre and zoom the view on gap ``row`` (0 = the largest)."""
        if not (0 <= row < len(self._gaps)) or BRIDGED not in self._viewer.layers:
            return
        layer = self._viewer.layers[BRIDGED]
        g = self._gaps[row]
        world = np.asarray(layer.data_to_world(g.centroid), float)
        viewer = self._viewer
        point = np.asarray(viewer.dims.point, float)
        point[-len(world):] = world
        for axis in viewer.dims.not_displayed:
            if axis >= len(point) - len(world):
                viewer.dims.set_point(axis, point[axis])
        cam = camera(viewer)
        cam.center = tuple(point[list(viewer.dims.displayed)])
        size = 12.0 * max(np.sqrt(g.size), 4.0) * float(np.max(layer.scale))
        cam.zoom = 0.8 * min(canvas_size(viewer)) / size
        self.say(f"gap #{g.label} of {len(self._gaps)}")

    def mark(self, status: str):
        """Mark the chosen gap accepted or rejected (rejected gaps are left out by the Accept panel)."""
        row = self.list.currentRow()
        if not (0 <= row < len(self._gaps)):
            show_error("Choose a gap in the list first.")
            return
        if BRIDGED not in self._viewer.layers:
            show_error(f"The '{BRIDGED}' layer was removed: press Find bridged gaps again.")
            return
        self._status[row] = status
        self._viewer.layers[BRIDGED].features = self._features()
        self.list.item(row).setText(self._item_text(row))
        if row + 1 < len(self._gaps):
            self.list.setCurrentRow(row + 1)  # on to the next gap
