"""What keeps the GUI thread free while the panels work (widgets/_common.py): a panel's
worker computes with all cores but one, and a new layer is added hidden and shown on a
later turn of the event loop. The assertions count threads and read layer states, never
seconds."""

import os
import threading

import numpy as np
import pytest

napari = pytest.importorskip("napari")
torch = pytest.importorskip("torch")

from napari_tubediff.widgets import _common  # noqa: E402
from napari_tubediff.widgets._common import leave_a_core, put_image, put_layer, worker_threads  # noqa: E402


def test_worker_threads_leave_one_core(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert worker_threads() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert worker_threads() == 1                      # never none
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert worker_threads() == 1


@pytest.fixture
def two_torch_threads():
    """torch on two threads for the test, whatever the suite runs it with (one: conftest), so
    that a count lowered to one and a count put back differ."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_job_computes_with_one_core_less_and_puts_the_count_back(monkeypatch, two_torch_threads):
    monkeypatch.setattr(_common, "worker_threads", lambda: 1)
    before = torch.get_num_threads()
    assert before == 2
    seen = {}

    def job():
        with leave_a_core():
            seen["torch"] = torch.get_num_threads()
            try:
                import numba

                seen["numba"] = numba.get_num_threads()
            except ImportError:  # pragma: no cover - numba is a declared dependency
                seen["numba"] = 1
        seen["after"] = torch.get_num_threads()

    t = threading.Thread(target=job)
    t.start()
    t.join()
    assert seen == {"torch": 1, "numba": 1, "after": before}
    assert torch.get_num_threads() == before


def test_a_generator_job_keeps_the_limit_across_its_frames(monkeypatch, two_torch_threads):
    monkeypatch.setattr(_common, "worker_threads", lambda: 1)
    before = torch.get_num_threads()
    assert before == 2

    def frames():
        for _ in range(3):
            yield torch.get_num_threads()
        return "end"

    gen = _common._leaving_a_core(frames)()
    assert list(gen) == [1, 1, 1]
    assert torch.get_num_threads() == before


def test_a_new_layer_is_shown_a_turn_after_it_is_added(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    field = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    image = put_image(viewer, "field", field)
    vectors = put_layer(viewer, "arrows", "vectors", np.zeros((3, 2, 2), np.float32))
    hidden = put_image(viewer, "kept hidden", field, visible=False)
    assert not image.visible and not vectors.visible          # added hidden: no slice, no upload yet
    qtbot.waitUntil(lambda: image.visible and vectors.visible, timeout=5000)
    qtbot.wait(2 * _common.AFTER_ADD_MS)
    assert not hidden.visible                                 # asked hidden: stays hidden
    np.testing.assert_array_equal(image.data, field)
    # a Labels layer is added shown at once: the Accept panel paints into it right away
    labels = put_layer(viewer, "curated", "labels", np.zeros((64, 64), np.uint8))
    assert labels.visible
    labels.data_setitem((np.array([1]), np.array([2])), 1)
    assert labels.data[1, 2] == 1
    # an existing layer takes the new data in place, keeping its place and visibility
    again = put_image(viewer, "field", field * 0.5)
    assert again is image and image.visible and float(image.data.max()) == 0.5


def test_vectors_put_again_update_the_layer_in_place(make_napari_viewer):
    """A new set of vectors (the Directions panel's re-run) goes into the existing layer, with
    its features and colours as a new layer would have them; another placement makes a new one."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8), np.float32), name="below")
    look = {"edge_colormap": "hsv", "edge_contrast_limits": (0.0, 180.0), "edge_width": 1.0, "length": 1.0,
            "vector_style": "line"}
    one = np.zeros((3, 2, 2), np.float32)
    first = put_layer(viewer, "arrows", "vectors", one, features={"angle": np.array([0.0, 90.0, 45.0])},
                      edge_color="angle", **look)
    viewer.layers.move(viewer.layers.index(first), 0)
    two = np.ones((5, 2, 2), np.float32)
    angles = np.array([0.0, 30.0, 60.0, 90.0, 120.0])
    again = put_layer(viewer, "arrows", "vectors", two, features={"angle": angles}, edge_color="angle",
                      **look)
    fresh = viewer.add_vectors(two, features={"angle": angles}, edge_color="angle", **look)
    assert again is first and viewer.layers.index(again) == 0
    np.testing.assert_array_equal(again.data, two)
    np.testing.assert_array_equal(again.features["angle"], angles)
    np.testing.assert_allclose(again.edge_color, fresh.edge_color)      # mapped from the new angles
    assert len(np.unique(again.edge_color, axis=0)) == 5
    moved = put_layer(viewer, "arrows", "vectors", two, scale=(2.0, 2.0), features={"angle": angles},
                      edge_color="angle", **look)
    assert moved is not first and tuple(moved.scale) == (2.0, 2.0)


def test_a_stack_grown_while_hidden_reaches_the_time_slider_once_shown(make_napari_viewer):
    """napari 0.9 keeps a hidden layer's extent from before its data changed: the refined
    history, grown while hidden (the first 25 ms, or with "after" unticked), stopped the
    time slider at its old length. `show_layer` brings the slider to the whole stack."""
    from napari_tubediff.widgets._common import show_layer

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="photo")
    layer = viewer.add_image(np.zeros((2, 32, 32), np.float32), name="history", visible=False)
    layer.data = np.zeros((9, 32, 32), np.float32)
    show_layer(layer)
    assert layer.visible and viewer.dims.range[0].stop == 8
    viewer.dims.set_current_step(0, 8)
    assert viewer.dims.current_step[0] == 8
