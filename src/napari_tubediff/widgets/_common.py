"""GUI glue shared by the panels: layer choices that follow the viewer, adding or updating layers."""

from __future__ import annotations

import warnings

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox

from ..core.checks import check_field

#: Keyboard shortcuts bound on the viewer by the panels (listed in the panels and docs/user_guide.md).
SHORTCUTS = {
    "step": "Shift-N",
    "accept": "Shift-Y",
    "undo": "Shift-U",
}


def probability_data(layer, report) -> np.ndarray | None:
    """The checked float32 data of a probability layer, or None after ``report(message)``.

    ``report`` is the calling panel's ``show_error`` (passed in, so each panel reports
    through its own module's notification function).
    """
    if layer is None:
        report("Choose a probability layer (an Image layer with values in [0, 1]; "
               "the Segment panel makes one).")
        return None
    if getattr(layer, "rgb", False):
        report(f"'{layer.name}' is an RGB image: choose a single-channel probability layer "
               "(Segment panel).")
        return None
    try:
        return check_field(np.asarray(layer.data), f"layer '{layer.name}'")
    except ValueError as e:
        report(str(e))
        return None


def layers_of(viewer, *kinds):
    """``(name, layer)`` choices of the viewer's layers of the given napari layer classes."""
    return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, kinds)]


def follow_layers(viewer, *combos: ComboBox, prefer: str | None = None) -> None:
    """Refresh the combo boxes' choices when layers are added, removed or renamed.

    With ``prefer``, a combo box moves to the newest layer named exactly ``prefer`` (or,
    without one, whose name contains it) unless its current layer already qualifies:
    "refined" picks ``refined`` over ``refined history``. A nullable combo box with
    nothing named so stays empty.
    """

    def refresh(*_):
        for c in combos:
            c.reset_choices()
            if prefer is None:
                continue
            layers = [ch for ch in c.choices if ch is not None]
            named = [ch for ch in layers if prefer in ch.name.lower()]
            exact = [ch for ch in named if ch.name.lower() == prefer]
            cur = c.value
            if cur is not None and cur in (exact or named):
                continue
            if named:
                c.value = (exact or named)[-1]

    ev = viewer.layers.events
    for e in (ev.inserted, ev.removed, ev.moved):
        e.connect(refresh)
    for lay in viewer.layers:
        lay.events.name.connect(refresh)
    ev.inserted.connect(lambda e: e.value.events.name.connect(refresh))
    refresh()


def spatial_ndim(layer) -> int:
    """Number of spatial axes of a layer's data (an RGB image's colour axis is not one)."""
    if layer is None:
        return 0
    return int(np.ndim(layer.data)) - (1 if getattr(layer, "rgb", False) else 0)


def view_toggle(viewer, combo: ComboBox) -> CheckBox:
    """A "3D view" check box bound to ``viewer.dims.ndisplay``, for a panel's layer choice.

    It is enabled only while ``combo``'s layer is a volume (3 spatial axes), so 2D data
    is never rendered with a time or channel axis as depth; it follows the viewer's own
    2D/3D button both ways. The viewer is never switched to 3D unless asked.
    """
    box = CheckBox(text="3D view", value=viewer.dims.ndisplay == 3,
                   tooltip="render the volume in 3D (the viewer's 2D/3D button does the same); "
                           "off: slice by slice")

    def sync(*_):
        steady_cursor(viewer)
        box.enabled = spatial_ndim(combo.value) >= 3 or viewer.dims.ndisplay == 3
        if box.value != (viewer.dims.ndisplay == 3):
            box.value = viewer.dims.ndisplay == 3

    def apply(on: bool):
        if on and spatial_ndim(combo.value) < 3:
            box.value = False  # not for 2D data
            return
        viewer.dims.ndisplay = 3 if on else 2

    box.changed.connect(apply)
    viewer.dims.events.ndisplay.connect(sync)
    combo.changed.connect(sync)
    sync()
    return box


def steady_cursor(viewer) -> None:
    """Give the cursor a view direction in the 3D view until the mouse gives it one.

    napari 0.9.2's ``Labels.get_status`` passes ``np.asarray(None)`` as the view ray
    when the mouse has not moved over the 3D canvas yet, and fails (``TypeError: len()
    of unsized object``) for a volume Labels layer with features, such as ``bridged``,
    whenever the status bar updates. The camera's view direction is what the canvas
    would set at the first mouse move.
    """
    if viewer.dims.ndisplay != 3:
        return
    cursor = viewer.cursor
    # best effort around a napari bug: a private field (napari warns about the access)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            if getattr(cursor, "_view_direction", 0) is None:
                cursor._view_direction = camera(viewer).calculate_nd_view_direction(
                    viewer.dims.ndim, viewer.dims.displayed)
        except Exception:  # noqa: BLE001 - another napari: nothing to steady
            pass


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer) -> tuple[int, int]:
    """Canvas size in screen pixels (``viewer.canvas.size`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return tuple(canvas.size) if canvas is not None else tuple(viewer._canvas_size)


def put_image(viewer, name: str, data: np.ndarray, like=None, **kwargs):
    """Set the data of Image layer ``name``, or add it (with the spatial scale and offset of ``like``).

    An existing layer keeps its place and display settings when the number of dimensions
    is unchanged (the shape may change, e.g. a growing stack of snapshots).
    """
    if name in viewer.layers and isinstance(viewer.layers[name], napari.layers.Image):
        layer = viewer.layers[name]
        if layer.data.ndim == data.ndim and not layer.rgb:
            layer.data = data
            return layer
        viewer.layers.remove(layer)
    if like is not None:
        nd = data.ndim
        kwargs.setdefault("scale", _pad(like.scale, nd, 1.0))
        kwargs.setdefault("translate", _pad(like.translate, nd, 0.0))
    return viewer.add_image(data, name=name, **kwargs)


def put_layer(viewer, name: str, kind: str, data, like=None, **kwargs):
    """Replace layer ``name`` by a new one of ``kind`` ('labels', 'vectors', ...), keeping its place."""
    steady_cursor(viewer)
    index = None
    if name in viewer.layers:
        index = viewer.layers.index(name)
        viewer.layers.remove(name)
    if like is not None:
        nd = np.asarray(like.data).ndim - (1 if getattr(like, "rgb", False) else 0)
        kwargs.setdefault("scale", _pad(like.scale, nd, 1.0))
        kwargs.setdefault("translate", _pad(like.translate, nd, 0.0))
    layer = getattr(viewer, f"add_{kind}")(data, name=name, **kwargs)
    if index is not None:
        viewer.layers.move(viewer.layers.index(layer), index)
    return layer


def _pad(values, nd: int, fill: float):
    v = list(np.asarray(values, float))[-nd:]
    return [fill] * (nd - len(v)) + v
