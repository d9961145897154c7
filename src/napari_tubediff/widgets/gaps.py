"""Bridged gaps panel: the gaps a refinement really bridged, most confident first, to review one by one.

`core.gaps.bridges` lists the pieces of the refined mask's centre line that were added and
join two or more components of the mask before refinement (or extend a vessel end along
its direction); widening is not listed. Each has a calibrated confidence
(`core.gaps.confidence`: the probability, fitted on the training splits of DRIVE, STARE
and HRF, that such a bridge lies in the truth and joins pieces the truth joins), and the
list is ranked by it. They become the ``bridged`` Labels layer (gap ``k`` = label ``k``,
1 the most confident, drawn on its centre line and the crossed pixels beside it) and a
list. Choosing an entry centres and zooms the view on the gap; Accept gap / Reject gap
mark it, "Accept all above" marks every unreviewed gap at or above a confidence. The
canvas colours each gap by its mark (`STATUS_COLOURS`: unreviewed yellow, accepted cyan,
rejected magenta). The marks live in the layer's ``features`` table (column ``status``),
where the Accept panel reads which gaps to leave out.

Keys (`GAP_KEYS`, viewer key bindings, so they work whichever layer is selected): Shift-Right
next gap, Shift-Left previous gap, Shift-G accept the gap shown, Shift-X reject it.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, FloatSpinBox, Label, PushButton
from napari.utils.colormaps import CyclicLabelColormap
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QListWidget

from ..core.checks import check_field
from ..core.gaps import bridges
from ..workers.process import prewarm, release, run_in_child
from ._common import (
    Panel,
    QuietSlot,
    camera,
    canvas_size,
    follow_layers,
    layers_of,
    put_layer,
    small_labels,
    steady_cursor,
    worker_threads,
)

BRIDGED = "bridged"
UNREVIEWED, ACCEPTED, REJECTED = "unreviewed", "accepted", "rejected"
#: How a gap is drawn on the canvas by its mark (RGBA).
#: "Accept all above"'s default confidence: on the training splits, the bridges rated 0.8 to 0.9
#: were right 82 % of the time (pooled; docs/results/refine/calibration.txt) and none was rated
#: 0.9 or more, so the former default, 0.9, accepted nothing (found by a walk of the loop)
ACCEPT_ABOVE = 0.8
STATUS_COLOURS = {UNREVIEWED: (1.0, 0.9, 0.0, 1.0), ACCEPTED: (0.0, 0.9, 1.0, 1.0),
                  REJECTED: (1.0, 0.0, 1.0, 1.0)}
#: The panel's keys (viewer key bindings).
GAP_KEYS = {"next": "Shift-Right", "previous": "Shift-Left", "accept": "Shift-G", "reject": "Shift-X"}


def rejected_labels(layer) -> list[int]:
    """Labels marked rejected in a ``bridged`` layer's features (empty for any other layer)."""
    f = layer.features
    if "status" not in f or "index" not in f:
        return []
    return [int(i) for i in f.loc[f["status"] == REJECTED, "index"]]


def bridges_to_show(u, v, threshold: float, *, gate=None, child: bool = True):
    """`core.gaps.bridges` for the canvas, run by the panel's worker; None when cancelled.

    ``child``: the search runs in a separate process (`workers.process.run_in_child`), so its
    scipy and scikit-image calls, which hold Python's lock, do not stall the GUI thread. The
    labels come back as napari draws them without a pass over every pixel (`small_labels`).
    """
    if child:
        found = run_in_child(bridges, u, v, threshold, threads=worker_threads(),
                             should_stop=lambda: gate is not None and gate.cancelled)
        if found is None:
            return None
    else:
        found = bridges(u, v, threshold)
    labels, gaps = found
    import pandas  # noqa: F401  napari's layer features need it: loaded here, not on the GUI thread (0.2 s)

    return small_labels(labels), gaps


def status_colormap(status: list[str]) -> CyclicLabelColormap:
    """Labels colours for gaps 1..n by their marks (`STATUS_COLOURS`); the background is clear.

    A cycle of exactly n colours after the background maps gap k to the k-th: napari draws it
    for 8- and 16-bit labels (`small_labels`) in the shader. (A `DirectLabelColormap` made
    napari compile a numba typed dict on the GUI thread the first time in a process: 1.5 s.)
    """
    colours = [(0.0, 0.0, 0.0, 0.0)] + [STATUS_COLOURS[s] for s in status]
    if len(colours) == 1:  # no gaps: napari needs a colour to cycle through
        colours.append(STATUS_COLOURS[UNREVIEWED])
    return CyclicLabelColormap(colors=colours, background_value=0)


class GapsWidget(Panel):
    """Dock widget: find the bridges, walk through them, accept or reject each."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self._gaps = []
        self._status: list[str] = []
        images = lambda _w: layers_of(viewer, napari.layers.Image)  # noqa: E731
        self.probability = ComboBox(label="before (probability)", choices=images)
        self.refined = ComboBox(label="after (refined)", choices=images)
        self.threshold = FloatSpinBox(value=0.5, min=0.01, max=1.0, step=0.05, label="threshold")
        self.run_button = PushButton(text="Find bridged gaps")
        self.list = QListWidget()
        self.list.setMinimumHeight(160)
        self.previous_button = PushButton(text="Previous gap")
        self.next_button = PushButton(text="Next gap")
        self.accept_button = PushButton(text="Accept gap")
        self.reject_button = PushButton(text="Reject gap")
        self.above = FloatSpinBox(value=ACCEPT_ABOVE, min=0.0, max=1.0, step=0.05,
                                  label="confidence at least",
                                  tooltip="Accept all above: marks every unreviewed gap with at least this "
                                          "confidence accepted (the marks already made are kept)")
        self.accept_above_button = PushButton(text="Accept all above")
        self.status = Label(value="")
        k = GAP_KEYS
        self.keys = Label(value=f"Keys: {k['next']} next, {k['previous']} previous, {k['accept']} accept, "
                                f"{k['reject']} reject")
        self.extend([self.probability, self.refined, self.threshold, self.run_button])
        self.native.layout().addWidget(self.list)
        self.extend([self.previous_button, self.next_button, self.accept_button, self.reject_button,
                     self.above, self.accept_above_button, self.status, self.keys])
        follow_layers(viewer, self.probability, prefer="probab")
        follow_layers(viewer, self.refined, prefer="refined")
        self.listen(viewer.dims.events.ndisplay, lambda _e: steady_cursor(viewer))  # see steady_cursor
        self.run_button.changed.connect(self.run)
        self.list.currentRowChanged.connect(self.go_to)
        self.previous_button.changed.connect(lambda *_: self.move(-1))
        self.next_button.changed.connect(lambda *_: self.move(1))
        self.accept_button.changed.connect(lambda *_: self.mark(ACCEPTED))
        self.reject_button.changed.connect(lambda *_: self.mark(REJECTED))
        self.accept_above_button.changed.connect(lambda *_: self.accept_above())
        viewer.bind_key(k["next"], lambda _v: self.move(1), overwrite=True)
        viewer.bind_key(k["previous"], lambda _v: self.move(-1), overwrite=True)
        viewer.bind_key(k["accept"], lambda _v: self.mark(ACCEPTED), overwrite=True)
        viewer.bind_key(k["reject"], lambda _v: self.mark(REJECTED), overwrite=True)
        prewarm(worker_threads())  # the process the search runs in
        self.native.destroyed.connect(QuietSlot(release))  # the viewer closes: no idle process kept

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
                       "refined layer, not the diffusion history.")
            return None
        return u, v

    def run(self, *_):
        if self.busy:
            return
        inputs = self._inputs()
        if inputs is None:
            return
        self._source = self.refined.value
        self.start(bridges_to_show, *inputs, self.threshold.value, gated=True,
                   desc="finding bridged gaps", note="finding bridged gaps...", on_result=self._on_result,
                   on_error=lambda _job, e: show_error(f"Finding gaps failed: {e}"))

    def show_controls(self):
        self.run_button.enabled = not self.busy

    def _on_result(self, _job, result):
        if result is None:  # cancelled in the child
            return
        labels, gaps = result
        self._gaps = gaps
        self._status = [UNREVIEWED] * len(gaps)
        put_layer(self._viewer, BRIDGED, "labels", labels, like=self._source, opacity=0.8,
                  features=self._features(), colormap=status_colormap(self._status))
        self.list.clear()
        for k in range(len(gaps)):
            self.list.addItem(self._item_text(k))
        if gaps:
            self.list.setCurrentRow(0)  # the most confident gap, shown at once
        self.done_text = (f"{len(gaps)} bridged gap(s), most confident first" if gaps
                          else "no bridged gaps: nothing the refinement added joins two pieces")

    def _features(self) -> dict:
        return {"index": np.arange(len(self._gaps) + 1),
                "size": [0] + [g.size for g in self._gaps],
                "confidence": [0.0] + [g.confidence for g in self._gaps],
                "status": ["background"] + self._status}

    def _item_text(self, k: int) -> str:
        g = self._gaps[k]
        where = ", ".join(f"{c:.0f}" for c in g.centroid)
        kind = "join" if len(g.joins) > 1 else "extension"
        return (f"#{g.label}: {kind}, {g.size} px, confidence {g.confidence:.2f}, at ({where}) - "
                f"{self._status[k]}")

    # -- review -------------------------------------------------------------------
    def go_to(self, row: int):
        """Centre and zoom the view on gap ``row`` (0 = the most confident)."""
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
        self.say(f"gap #{g.label} of {len(self._gaps)}, confidence {g.confidence:.2f}")

    def move(self, by: int):
        """Show the next (``by = 1``) or previous (``-1``) gap of the list."""
        if not self._gaps:
            return
        row = self.list.currentRow()
        self.list.setCurrentRow(int(np.clip(0 if row < 0 else row + by, 0, len(self._gaps) - 1)))

    def _layer(self):
        if BRIDGED not in self._viewer.layers:
            show_error(f"The '{BRIDGED}' layer was removed: press Find bridged gaps again.")
            return None
        return self._viewer.layers[BRIDGED]

    def _show_marks(self, layer, rows):
        layer.features = self._features()
        layer.colormap = status_colormap(self._status)
        for row in rows:
            self.list.item(row).setText(self._item_text(row))

    def mark(self, status: str):
        """Mark the chosen gap accepted or rejected (rejected gaps are left out by the Accept panel)."""
        row = self.list.currentRow()
        if not (0 <= row < len(self._gaps)):
            show_error("Choose a gap in the list first.")
            return
        layer = self._layer()
        if layer is None:
            return
        self._status[row] = status
        self._show_marks(layer, [row])
        if row + 1 < len(self._gaps):
            self.list.setCurrentRow(row + 1)  # on to the next gap

    def accept_above(self, threshold: float | None = None) -> int:
        """Mark every unreviewed gap with confidence >= ``threshold`` (the panel's value) accepted."""
        x = self.above.value if threshold is None else threshold
        rows = [k for k, g in enumerate(self._gaps) if g.confidence >= x and self._status[k] == UNREVIEWED]
        layer = self._layer() if self._gaps else None
        if layer is None:
            return 0
        for k in rows:
            self._status[k] = ACCEPTED
        self._show_marks(layer, rows)
        self.say(f"accepted {len(rows)} gap(s) with confidence >= {x:.2f}")
        return len(rows)
