"""Curate tools panel: trace a vessel between two clicks, remove a false piece with one click,
measure the vessels of a mask.

Thin: the work is `core.trace` (trace_path, remove_piece) and `core.measure`
(measure_vessels). Each edit of the curated labels is ONE edit in napari's labels
history (``Labels.data_setitem``), so Ctrl-Z on the layer (or the Accept panel's Undo)
takes a whole trace or removal back. A trace writes only background pixels (as Accept
does): what the annotator painted is kept. A removal clears only the clicked label
value. Everything here runs in the GUI thread: a trace or a removal on a DRIVE image
takes tens of milliseconds.

Clicks: with a tool on, a left click on the canvas (not a drag: panning still works)
picks the pixel under the mouse; in the 3D view, the brightest voxel of the field
along the view ray (trace) or the first labelled voxel (remove).
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    RadioButtons,
    SpinBox,
    Table,
)
from napari.utils.notifications import show_error, show_info

from ..core.curation import merge_indices
from ..core.measure import measure_vessels
from ..core.trace import remove_piece, trace_path
from ._common import QuietSlot, follow_layers, layers_of, put_layer, steady_cursor

CURATED = "curated"
#: The layer showing the trace's first click, and the one showing the measured branches.
START, BRANCHES = "trace start", "branches"

OFF, TRACE, REMOVE, BRANCH = "off", "trace", "remove piece", "remove branch"

#: Keyboard shortcuts of the tools (listed in the panel and docs/user_guide.md). None is
#: one of napari's own (napari.utils.shortcuts.default_shortcuts) nor the other panels'.
TOOL_SHORTCUTS = {
    TRACE: "Shift-T",
    REMOVE: "Shift-R",
    BRANCH: "Shift-B",
    "measure": "Shift-M",
    "save": "Shift-S",
    "done": "Shift-D",
}
#: The image layer a queue opens.
IMAGE = "image"

#: Columns of the measurement table shown in the panel (the CSV has them all).
SHOWN = ("branch", "length", "mean_diameter", "max_diameter", "tortuosity")


class ToolsWidget(Container):
    """Dock widget: trace (two clicks), remove a piece or a branch (one click), measure and export."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self._start: np.ndarray | None = None
        self._tool_now = OFF
        self.measurements = None
        self.field = ComboBox(label="field", choices=lambda _w: layers_of(viewer, napari.layers.Image),
                              tooltip="the probability or refined field the trace follows")
        self.curated = ComboBox(label="curated labels", nullable=True, value=None,
                                choices=lambda _w: layers_of(viewer, napari.layers.Labels),
                                tooltip=f"the labels edited; none: a new '{CURATED}' layer is made")
        self.tool = RadioButtons(label="tool", choices=[OFF, TRACE, REMOVE, BRANCH], value=OFF)
        self.value = SpinBox(value=1, min=1, max=2**31 - 1, label="label value",
                             tooltip="the label a trace paints")
        self.radius = FloatSpinBox(value=0.0, min=0.0, max=100.0, step=0.5, label="radius",
                                   tooltip="the traced vessel's radius in pixels; 0: from the field")
        self.threshold = FloatSpinBox(value=0.5, min=0.01, max=1.0, step=0.05, label="threshold",
                                      tooltip="where the field is vessel: the trace's centre and width")
        self.measure_button = PushButton(text="Measure curated")
        self.export_button = PushButton(text="Export table as CSV...")
        self.table = Table(value={"data": [], "index": [], "columns": list(SHOWN)})
        self.folder = FileEdit(label="review folder", mode="d", value="",
                               tooltip="a folder of images: Open next opens the first not done")
        self.next_button = PushButton(text="Open next")
        self.save_button = PushButton(text="Save")
        self.done_button = PushButton(text="Done, open next")
        self.queue_status = Label(value="no folder")
        self.queue = None
        self.current: Path | None = None
        self.status = Label(value="")
        keys = ", ".join(f"{k} {name}" for name, k in TOOL_SHORTCUTS.items())
        self.keys = Label(value=f"Keys: {keys}\n(the tool's key again: off; Ctrl-Z on the layer: undo)")
        self.extend([self.field, self.curated, self.tool, self.value, self.radius, self.threshold,
                     self.measure_button, self.export_button, self.table, self.folder, self.next_button,
                     self.save_button, self.done_button, self.queue_status, self.status, self.keys])
        self.folder.changed.connect(lambda v: self.open_folder(v) if str(v) not in ("", ".") else None)
        self.next_button.changed.connect(lambda *_: self.open_next())
        self.save_button.changed.connect(lambda *_: self.save())
        self.done_button.changed.connect(lambda *_: self.save(done=True) and self.open_next())
        follow_layers(viewer, self.field, prefer="refined")
        follow_layers(viewer, self.curated, prefer="curated")
        self.tool.changed.connect(self._tool_changed)
        self.measure_button.changed.connect(self.measure)
        self.export_button.changed.connect(self._export_dialog)
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.native.destroyed.connect(QuietSlot(self._disconnect, viewer))
        for name, key in TOOL_SHORTCUTS.items():
            viewer.bind_key(key, self._key_action(name), overwrite=True)

    def _key_action(self, name: str):
        if name == "measure":
            return lambda _v: self.measure()
        if name == "save":
            return lambda _v: self.save()
        if name == "done":
            return lambda _v: self.save(done=True) and self.open_next()
        return lambda _v: self.toggle(name)

    def _disconnect(self, viewer) -> None:
        if self._on_mouse in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.remove(self._on_mouse)

    # -- tools -----------------------------------------------------------------------
    def toggle(self, name: str) -> None:
        """The tool's shortcut: turn it on, or off when it is on."""
        self.tool.value = OFF if self.tool.value == name else name

    def _tool_changed(self, name) -> None:
        if name == self._tool_now:
            return  # napari resets a docked panel's choices as layers change: the same tool again
        self._tool_now = name
        self._forget_start()
        if name == OFF:
            self.status.value = "tools off"
            return
        # a click must not also paint or fill: the curated layer pans while a tool is on
        layer = self.curated.value
        if layer is not None and layer.mode != "pan_zoom":
            layer.mode = "pan_zoom"
        self.status.value = {TRACE: "trace: click the start, then the end",
                             REMOVE: "remove: click the piece to remove",
                             BRANCH: "remove branch: click the branch to remove"}[name]

    def _forget_start(self) -> None:
        self._start = None
        if START in self._viewer.layers:
            self._viewer.layers[START].data = np.zeros((0, self._viewer.layers[START].ndim))

    def _on_mouse(self, viewer, event):
        """Left click (press and release without a drag) with a tool on: act at the clicked pixel."""
        if self.tool.value == OFF or getattr(event, "button", 1) != 1 or event.modifiers:
            return
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            point = self._picked(event)
            if point is not None:
                self.click(point)

    def _picked(self, event) -> np.ndarray | None:
        """The data coordinates of the click, in the field's (trace) or the labels' (remove) pixels."""
        layer = self.field.value if self.tool.value == TRACE else self.curated.value
        if layer is None:
            show_error("Choose the field layer." if self.tool.value == TRACE
                       else "Choose the curated labels.")
            return None
        pos = np.asarray(event.position, float)
        if self._viewer.dims.ndisplay == 3:
            near, far = layer.get_ray_intersections(pos, event.view_direction, event.dims_displayed,
                                                    world=True)
            if near is None:
                return None
            data = np.asarray(layer.data)
            n = int(np.ceil(np.linalg.norm(np.asarray(far) - np.asarray(near)))) + 1
            ray = np.linspace(near, far, n)
            idx = np.clip(np.round(ray).astype(int), 0, np.array(data.shape[:len(near)]) - 1)
            values = data[tuple(idx.T)]
            if self.tool.value == TRACE:
                return idx[int(np.argmax(values))].astype(float)
            hit = np.flatnonzero(values)
            return idx[hit[0]].astype(float) if hit.size else None
        return np.asarray(layer.world_to_data(pos), float)[-np.asarray(layer.data).ndim:]

    def click(self, point) -> None:
        """What a click at ``point`` (data coordinates) does with the current tool."""
        if self.tool.value == TRACE:
            self.trace_click(point)
        elif self.tool.value in (REMOVE, BRANCH):
            self.remove_at(point, branch=self.tool.value == BRANCH)

    # -- trace -------------------------------------------------------------------------
    def _curated_for(self, like) -> napari.layers.Labels | None:
        layer = self.curated.value
        if layer is None:
            layer = CURATED in self._viewer.layers and self._viewer.layers[CURATED]
            if not isinstance(layer, napari.layers.Labels):
                steady_cursor(self._viewer)
                layer = put_layer(self._viewer, CURATED, "labels", np.zeros(like.data.shape, np.uint8),
                                  like=like)
            self.curated.value = layer
        return layer

    def trace_click(self, point) -> None:
        """First click: the start (shown as a point); second click: trace to here and paint."""
        field = self.field.value
        if field is None or getattr(field, "rgb", False):
            show_error("Choose the field to trace on: the probability or refined layer (not RGB).")
            return
        point = np.asarray(point, float)
        if self._start is None:
            self._start = point
            if START in self._viewer.layers:
                self._viewer.layers[START].data = point[None]
            else:
                self._viewer.add_points(point[None], name=START, size=6, face_color="yellow",
                                        scale=field.scale, translate=field.translate)
                self._viewer.layers.selection.active = self.curated.value or field
            self.status.value = f"trace: start at {tuple(np.round(point).astype(int))}; click the end"
            return
        start, self._start = self._start, None
        self._forget_start()
        self.trace(start, point)

    def trace(self, start, end) -> int:
        """Trace from ``start`` to ``end`` (data coordinates) and add the path to the curated labels.

        Returns the number of pixels added (0 when nothing new or on an error, which is shown).
        """
        field = self.field.value
        if field is None:
            show_error("Choose the field to trace on.")
            return 0
        try:
            spacing = np.asarray(field.scale, float)[-np.ndim(field.data):]
            t = trace_path(np.asarray(field.data), start, end, radius=self.radius.value or None,
                           threshold=self.threshold.value, spacing=spacing / spacing.min())
        except ValueError as e:
            show_error(str(e))
            return 0
        curated = self._curated_for(field)
        if curated.data.shape != t.mask.shape:
            show_error(f"'{curated.name}' {curated.data.shape} and '{field.name}' {t.mask.shape} "
                       "differ in shape.")
            return 0
        if curated.data.dtype.kind in "iu" and self.value.value > np.iinfo(curated.data.dtype).max:
            show_error(f"Label {self.value.value} does not fit '{curated.name}' ({curated.data.dtype}).")
            return 0
        idx = merge_indices(curated.data, t.mask)
        if idx[0].size == 0:
            self.status.value = "trace: every pixel of the path is labelled already"
            return 0
        curated.data_setitem(idx, self.value.value)  # one undoable edit
        self.status.value = (f"traced {len(t.path)} px long, radius {np.median(t.radius):.1f}: "
                             f"{idx[0].size} px added to '{curated.name}'")
        return int(idx[0].size)

    # -- remove ------------------------------------------------------------------------
    def remove_at(self, point, branch: bool = False) -> int:
        """Clear the piece (or the skeleton branch) of the curated labels under ``point``; one edit."""
        curated = self.curated.value
        if curated is None:
            show_error("Choose the curated labels to remove from.")
            return 0
        try:
            gone = remove_piece(np.asarray(curated.data), point, mode="branch" if branch else "component")
        except ValueError as e:
            show_error(str(e))
            return 0
        idx = np.nonzero(gone)
        curated.data_setitem(idx, 0)  # one undoable edit
        what = "branch" if branch else "piece"
        self.status.value = f"removed {idx[0].size} px ({what}) from '{curated.name}'"
        return int(idx[0].size)

    # -- measure -----------------------------------------------------------------------
    def measure(self, *_) -> None:
        """Measure the curated mask: a table in the panel and a Points layer at each branch's middle."""
        curated = self.curated.value
        if curated is None:
            show_error("Choose the curated labels to measure.")
            return
        nd = np.ndim(curated.data)
        spacing = tuple(np.asarray(curated.scale, float)[-nd:])
        try:
            res = measure_vessels(np.asarray(curated.data) > 0, spacing=spacing)
        except ValueError as e:
            show_error(str(e))
            return
        self.measurements = res
        t = res.branches
        self.table.value = t[list(SHOWN)].round(2)
        if len(t):
            mid = np.stack([(t[f"src_pixel_{i}"] + t[f"dst_pixel_{i}"]) / 2 for i in range(nd)], axis=1)
        else:
            mid = np.zeros((0, nd))
        features = {c: t[c].to_numpy() for c in SHOWN}
        if BRANCHES in self._viewer.layers:
            self._viewer.layers.remove(BRANCHES)
        self._viewer.add_points(mid, name=BRANCHES, features=features, size=4, face_color="cyan",
                                text={"string": "{length:.0f}", "size": 8, "color": "cyan"},
                                scale=curated.scale, translate=curated.translate)
        self._viewer.layers.selection.active = curated
        s = res.summary()
        self.status.value = (f"{s['branches']} branches, {s['branch_points']} branch points, "
                             f"{s['end_points']} end points, total length {s['total_length']:.1f}")

    def export(self, path) -> Path | None:
        """Write the last measurement's full branch table to ``path`` as CSV (atomically)."""
        from ..data.io import atomic_write_text

        if self.measurements is None:
            show_error("Measure first (the Measure button or its shortcut).")
            return None
        path = Path(path)
        atomic_write_text(path, self.measurements.branches.to_csv(index=False))
        show_info(f"wrote {path}")
        self.status.value = f"table written to {path.name}"
        return path

    def _export_dialog(self, *_) -> None:
        from qtpy.QtWidgets import QFileDialog

        # the dialog itself asks before replacing an existing file
        name, _ = QFileDialog.getSaveFileName(self.native, "Export branch table", "branches.csv",
                                              "CSV (*.csv)")
        if name:
            try:
                self.export(name)
            except OSError as e:
                show_error(f"cannot write {name}: {e}")

    # -- the review queue ------------------------------------------------------------------
    def open_folder(self, folder) -> bool:
        """Review the images of ``folder`` (`data.queue.CurationQueue`) and open the first unfinished."""
        from ..data.queue import CurationQueue

        try:
            self.queue = CurationQueue(folder)
        except (ValueError, OSError) as e:
            show_error(str(e))
            return False
        self.current = None
        return self.open_next()

    def _show_queue(self) -> None:
        q = self.queue
        if q is None:
            self.queue_status.value = "no folder"
            return
        done, total = q.progress()
        now = f"{self.current.name} ({q.state(self.current)})" if self.current else "nothing open"
        self.queue_status.value = f"{done} / {total} done; {now}"

    def open_next(self) -> bool:
        """Open the next image not done, with the curated labels saved for it (or empty ones)."""
        from ..data.io import read_image
        from ._common import put_image

        q = self.queue
        if q is None:
            show_error("Choose a review folder first.")
            return False
        nxt = q.next_unfinished(after=self.current)
        if nxt is None:
            self.current = None
            self._show_queue()
            show_info("Every image of the folder is done.")
            return False
        try:
            img = read_image(nxt)
            saved = q.load(nxt)
        except (ValueError, OSError) as e:
            show_error(str(e))
            return False
        rgb = img.ndim == 3 and img.shape[-1] in (3, 4)
        shape = img.shape[:-1] if rgb else img.shape
        if saved is not None and saved.shape != shape:
            show_error(f"the saved labels of {nxt.name} {saved.shape} do not match the image {shape}: "
                       f"left as they are in {q.labels_path(nxt).parent}")
            return False
        self._forget_start()
        put_image(self._viewer, IMAGE, img, rgb=rgb)
        labels = saved if saved is not None else np.zeros(shape, np.uint8)
        layer = put_layer(self._viewer, CURATED, "labels", labels)
        self.curated.value = layer
        self.current = nxt
        self._show_queue()
        self.status.value = f"opened {nxt.name}" + (" with its saved labels" if saved is not None else "")
        return True

    def save(self, done: bool = False, ask=None) -> bool:
        """Save the curated labels of the open image (``done``: mark it finished); atomic.

        A labels file changed by someone else, or not tubediff's, is replaced only when
        ``ask(message)`` (default: a yes/no dialog) says yes.
        """
        from ..data.queue import DONE, REVIEWED

        q, layer = self.queue, self.curated.value
        if q is None or self.current is None or layer is None:
            show_error("Open an image of a review folder first.")
            return False
        settings = {"label_value": self.value.value, "radius": self.radius.value,
                    "threshold": self.threshold.value}
        state = DONE if done else REVIEWED
        try:
            q.save(self.current, np.asarray(layer.data), state=state, settings=settings)
        except ValueError as e:
            if not (ask or self._ask)(f"{e}\n\nReplace it with the labels on screen?"):
                self.status.value = "not saved"
                return False
            q.save(self.current, np.asarray(layer.data), state=state, settings=settings, overwrite=True)
        except OSError as e:
            show_error(f"cannot save {self.current.name}: {e}")
            return False
        self._show_queue()
        self.status.value = f"saved {self.current.name} ({state})"
        return True

    def _ask(self, message: str) -> bool:
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(self.native, "Replace saved labels?", message)
        return answer == QMessageBox.StandardButton.Yes
