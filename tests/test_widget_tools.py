"""The Curate tools panel driven as a person would: shortcuts, clicks on the canvas, undo, export."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks  # noqa: E402
from napari.utils.key_bindings import coerce_keybinding  # noqa: E402
from napari.utils.shortcuts import default_shortcuts  # noqa: E402

from napari_tubediff.widgets._common import SHORTCUTS  # noqa: E402
from napari_tubediff.widgets.tools import (  # noqa: E402
    BRANCH,
    BRANCHES,
    OFF,
    REMOVE,
    TOOL_SHORTCUTS,
    TRACE,
    ToolsWidget,
)


def press(viewer, key):
    viewer.keymap[coerce_keybinding(key)](viewer)


def click(viewer, world_pos):
    """A left click (press then release, no drag) at a world position, through the viewer's callbacks."""
    ev = SimpleNamespace(type="mouse_press", position=tuple(float(v) for v in world_pos), button=1,
                         modifiers=(), is_dragging=False, view_direction=None,
                         dims_displayed=list(viewer.dims.displayed), handled=False)
    mouse_press_callbacks(viewer, ev)
    ev.type = "mouse_release"
    mouse_release_callbacks(viewer, ev)


def test_tool_shortcuts_do_not_clash_with_napari_or_the_other_panels():
    ours = {coerce_keybinding(k) for k in TOOL_SHORTCUTS.values()}
    assert len(ours) == len(TOOL_SHORTCUTS)
    napari_keys = {coerce_keybinding(str(k)) for keys in default_shortcuts.values() for k in keys}
    assert not ours & napari_keys
    assert not ours & {coerce_keybinding(k) for k in SHORTCUTS.values()}


def test_trace_remove_measure_as_an_annotator(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    # a horizontal vessel with a break, and a false blob; pixel scale 2 (world = 2 * data)
    p = np.zeros((40, 80), np.float32)
    p[17:24, 5:75] = 1.0
    p[:, 35:42] = 0.0
    viewer.add_image(p, name="refined", scale=(2, 2))
    curated = viewer.add_labels(np.zeros((40, 80), np.uint8), name="curated", scale=(2, 2))
    curated.data[2:6, 60:70] = 1          # a false piece
    curated.data[30:33, 10:20] = 2        # painted by hand, another value
    w = ToolsWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert w.field.value.name == "refined" and w.curated.value is curated
    assert all(k in w.keys.value for k in TOOL_SHORTCUTS.values())

    # trace: Shift-T, then click the start and the end on the canvas (world coordinates)
    press(viewer, TOOL_SHORTCUTS[TRACE])
    assert w.tool.value == TRACE and curated.mode == "pan_zoom"
    click(viewer, (2 * 20, 2 * 8))
    assert "start" in w.status.value and curated.data[17:24, 5:75].sum() == 0
    click(viewer, (2 * 20, 2 * 72))
    bar = np.zeros_like(curated.data, bool)
    bar[17:24, 8:73] = True
    assert (curated.data[bar] == 1).all(), "the break is bridged at the vessel's width"
    assert (curated.data[30:33, 10:20] == 2).all()
    assert (curated.data[(~bar) & (p == 0)] == 0)[15:26].all()

    # one undoable edit: undo takes the whole trace back, redo brings it
    curated.undo()
    assert curated.data[bar].sum() == 0
    curated.redo()
    assert (curated.data[bar] == 1).all()

    # a drag (panning) does not click
    before = curated.data.copy()
    ev = SimpleNamespace(type="mouse_press", position=(40.0, 16.0), button=1, modifiers=(), is_dragging=False,
                         view_direction=None, dims_displayed=[0, 1], handled=False)
    mouse_press_callbacks(viewer, ev)
    from napari.utils.interactions import mouse_move_callbacks

    ev.type = "mouse_move"
    ev.is_dragging = True
    mouse_move_callbacks(viewer, ev)
    ev.type = "mouse_release"
    mouse_release_callbacks(viewer, ev)
    assert "start" not in w.status.value and (curated.data == before).all()

    # remove the false piece with one click (Shift-R), then undo it
    press(viewer, TOOL_SHORTCUTS[REMOVE])
    assert w.tool.value == REMOVE
    click(viewer, (2 * 3, 2 * 64))
    assert curated.data[2:6, 60:70].sum() == 0
    assert (curated.data[bar] == 1).all() and (curated.data[30:33, 10:20] == 2).all()
    curated.undo()
    assert (curated.data[2:6, 60:70] == 1).all()
    press(viewer, TOOL_SHORTCUTS[REMOVE])
    assert w.tool.value == OFF

    # measure (Shift-M): a table in the panel, a Points layer, a CSV export; spacing from the scale
    curated.data[2:6, 60:70] = 0
    curated.data[30:33, 10:20] = 0
    press(viewer, TOOL_SHORTCUTS["measure"])
    assert BRANCHES in viewer.layers and len(viewer.layers[BRANCHES].data) == 1
    rows = w.table.value["data"]
    assert len(rows) == 1
    length = rows[0][1]
    assert length == pytest.approx(2 * (72 - 8), rel=0.05)  # the traced axis, 64 px of scale 2
    out = w.export(tmp_path / "branches.csv")
    table = pd.read_csv(out)
    assert len(table) == 1 and table["length"][0] == pytest.approx(length, abs=0.01)
    assert table["mean_diameter"][0] == pytest.approx(2 * 7, rel=0.1)


def test_remove_branch_and_trace_in_a_volume(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    v = np.zeros((12, 40, 40), np.float32)
    v[3:8, 18:23, 2:38] = 1.0   # 5 x 5 across
    v[..., 18:24] = 0.0               # a break
    viewer.add_image(v, name="refined")
    w = ToolsWidget(viewer)
    viewer.window.add_dock_widget(w)
    # no curated layer yet: the trace makes one
    w.tool.value = TRACE
    w.click((5, 20, 4))
    w.click((5, 20, 35))
    curated = viewer.layers["curated"]
    assert curated.data.shape == v.shape
    assert (curated.data[3:8, 18:23, 4:36] == 1).all()
    assert curated.data[:, :, 18:24].sum() > 0
    # in the 3D view a click is a ray: the trace takes the field's brightest voxel on it,
    # a removal the first labelled one
    viewer.dims.ndisplay = 3
    ray = SimpleNamespace(position=(0.0, 20.0, 10.0), view_direction=(1.0, 0.0, 0.0),
                          dims_displayed=[0, 1, 2])
    assert tuple(w._picked(ray)) == (3, 20, 10)
    w.tool.value = REMOVE
    assert tuple(w._picked(ray)) == (3, 20, 10)
    ray.position = (0.0, 2.0, 10.0)
    assert w._picked(ray) is None  # nothing labelled on this ray
    viewer.dims.ndisplay = 2

    # a T in 2D: Shift-B removes only the clicked side branch
    lab = np.zeros((60, 60), np.uint8)
    lab[5:55, 28:33] = 1
    lab[20:23, 33:55] = 1
    viewer.layers.clear()
    cur = viewer.add_labels(lab.copy(), name="curated")
    w.curated.value = cur
    press(viewer, TOOL_SHORTCUTS[BRANCH])
    assert w.tool.value == BRANCH
    click(viewer, (21, 50))
    assert (cur.data[5:55, 28:33] == 1).all()
    assert cur.data[20:23, 36:55].sum() == 0
    # a click on nothing: an error message, no edit, no exception
    before = cur.data.copy()
    w.click((50, 5))
    assert (cur.data == before).all()


def test_review_queue_in_the_panel_resumes_after_a_restart(make_napari_viewer, qtbot, tmp_path):
    from napari_tubediff.data.io import read_image, write_image
    from napari_tubediff.data.queue import CurationQueue

    for n in ("a.png", "b.png"):
        write_image(tmp_path / n, np.full((20, 30), 100, np.uint8))
    viewer = make_napari_viewer()
    w = ToolsWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert w.open_folder(tmp_path)
    assert w.current.name == "a.png" and viewer.layers["image"].data.shape == (20, 30)
    cur = viewer.layers["curated"]
    assert w.curated.value is cur and cur.data.sum() == 0
    cur.data_setitem((np.array([5, 5, 5]), np.array([3, 4, 5])), 4)   # the annotator paints
    press(viewer, TOOL_SHORTCUTS["save"])
    assert "0 / 2 done; a.png (reviewed)" in w.queue_status.value

    # restart: a new panel on the same folder restores the labels of the unfinished image
    viewer.window.remove_dock_widget("all")
    viewer.layers.clear()
    w2 = ToolsWidget(viewer)
    viewer.window.add_dock_widget(w2)
    assert w2.open_folder(tmp_path) and w2.current.name == "a.png"
    assert (viewer.layers["curated"].data[5, 3:6] == 4).all() and viewer.layers["curated"].data.sum() == 12

    # someone else saves a.png meanwhile: the panel asks before replacing; "no" keeps their file
    other = CurationQueue(tmp_path, user="other")
    other.load(tmp_path / "a.png")
    other.save(tmp_path / "a.png", np.ones((20, 30), np.uint8))
    assert not w2.save(ask=lambda message: "changed since" in message and False)
    assert (read_image(other.labels_path(tmp_path / "a.png")) == 1).all()
    assert w2.save(done=True, ask=lambda message: True)
    assert w2.open_next() and w2.current.name == "b.png"
    assert viewer.layers["curated"].data.sum() == 0
    press(viewer, TOOL_SHORTCUTS["done"])
    assert w2.current is None and "2 / 2 done" in w2.queue_status.value
