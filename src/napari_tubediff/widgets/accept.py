"""Accept panel: threshold the refined field and merge it into the ``curated`` Labels layer.

The merge writes only the background (0) pixels of ``curated`` (`core.curation`), so what
the annotator painted is never overwritten, and it is ONE edit in napari's labels history
(``Labels.data_setitem``): Undo (or Ctrl-Z on the layer, or the shortcut) takes it back
whole. Gaps rejected in the Bridged gaps panel are left out.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info

from ..core.checks import check_field
from ..core.curation import accept_mask, merge_indices
from ._common import SHORTCUTS, Panel, follow_layers, layers_of, put_layer, steady_cursor
from .gaps import rejected_labels

CURATED = "curated"


class AcceptWidget(Panel):
    """Dock widget: Accept merges the thresholded refined field into ``curated``; Undo takes it back."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.refined = ComboBox(label="refined", choices=lambda _w: layers_of(viewer, napari.layers.Image))
        self.curated = ComboBox(label="curated labels", nullable=True, value=None,
                                choices=lambda _w: layers_of(viewer, napari.layers.Labels),
                                tooltip=f"the annotator's labels; none: a new '{CURATED}' layer is made")
        self.gaps = ComboBox(label="reviewed gaps", nullable=True, value=None,
                             choices=lambda _w: layers_of(viewer, napari.layers.Labels),
                             tooltip="the 'bridged' layer: its rejected gaps are not accepted")
        self.threshold = FloatSpinBox(value=0.5, min=0.01, max=1.0, step=0.05, label="threshold")
        self.value = SpinBox(value=1, min=1, max=2**31 - 1, label="label value")
        self.accept_button = PushButton(text="Accept")
        self.undo_button = PushButton(text="Undo last edit of curated")
        self.status = Label(value="")
        self.keys = Label(value=f"Keys: {SHORTCUTS['accept']} accept, {SHORTCUTS['undo']} undo")
        self.extend([self.refined, self.curated, self.gaps, self.threshold, self.value, self.accept_button,
                     self.undo_button, self.status, self.keys])
        follow_layers(viewer, self.refined, prefer="refined")
        follow_layers(viewer, self.curated, prefer="curated")
        follow_layers(viewer, self.gaps, prefer="bridged")
        self.listen(viewer.dims.events.ndisplay, lambda _e: steady_cursor(viewer))  # see steady_cursor
        self.accept_button.changed.connect(self.accept)
        self.undo_button.changed.connect(self.undo)
        viewer.bind_key(SHORTCUTS["accept"], lambda _v: self.accept(), overwrite=True)
        viewer.bind_key(SHORTCUTS["undo"], lambda _v: self.undo(), overwrite=True)

    def accept(self, *_):
        """Merge ``refined >= threshold`` (minus rejected gaps) into the background of ``curated``."""
        layer = self.refined.value
        if layer is None:
            show_error("Choose the refined layer (run the Diffusion panel first).")
            return
        if getattr(layer, "rgb", False):
            show_error(f"'{layer.name}' is RGB: choose the refined probability layer.")
            return
        try:
            u = check_field(np.asarray(layer.data), f"layer '{layer.name}'")
        except ValueError as e:
            show_error(str(e))
            return
        gaps, rejected = None, []
        if self.gaps.value is not None:
            gaps = np.asarray(self.gaps.value.data)
            rejected = rejected_labels(self.gaps.value)
            if gaps.shape != u.shape:
                show_error(f"The gaps layer {gaps.shape} does not match '{layer.name}' {u.shape}.")
                return
        curated = self.curated.value
        if curated is None:
            curated = CURATED in self._viewer.layers and self._viewer.layers[CURATED]
            if not isinstance(curated, napari.layers.Labels):
                curated = put_layer(self._viewer, CURATED, "labels", np.zeros(u.shape, np.uint8), like=layer)
            self.curated.value = curated
        if curated.data.shape != u.shape:
            show_error(f"'{curated.name}' {curated.data.shape} and '{layer.name}' {u.shape} differ in shape.")
            return
        dtype = curated.data.dtype
        if dtype.kind in "iu" and self.value.value > np.iinfo(dtype).max:
            show_error(f"Label {self.value.value} does not fit '{curated.name}' ({curated.data.dtype}).")
            return
        mask = accept_mask(u, self.threshold.value, gaps, rejected)
        idx = merge_indices(curated.data, mask)
        if idx[0].size == 0:
            show_info("Nothing to accept: every pixel above the threshold is labelled already.")
            self.say("nothing new to accept")
            return
        curated.data_setitem(idx, self.value.value)  # one undoable edit
        kept = int((mask & (np.asarray(curated.data) != self.value.value)).sum())
        self.say(f"accepted {idx[0].size} px into '{curated.name}'"
                 + (f", {len(rejected)} gap(s) left out" if rejected else "")
                 + (f", {kept} painted px kept" if kept else ""))

    def undo(self, *_):
        """Undo the last edit of the curated layer (napari's labels history)."""
        curated = self.curated.value
        if curated is None or curated not in self._viewer.layers:
            show_error("No curated layer to undo.")
            return
        before = np.array(curated.data, copy=True)
        curated.undo()
        # napari's undo with an empty history does nothing: say so, not "undid"
        if np.array_equal(before, curated.data):
            self.say(f"nothing to undo in '{curated.name}'")
        else:
            self.say(f"undid the last edit of '{curated.name}'")
