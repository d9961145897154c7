"""Fixtures shared by several test files: the fine-tune tests (2D and 3D: function, command,
panel) and the Diffusion panel's."""

import os

# Torch's OpenMP threads spin while they wait for work. With both cores busy (other jobs, CI
# neighbours) a spinning thread holds the core its partner needs: on 2026-11-30 (2-core CPU, load
# about 9, torch on 2 threads) 10 fine-tune updates on two 192 px synthetic fundi took 223 s with
# the default policy and 4.7 s with PASSIVE. Set before anything imports torch (the test modules
# do, after this file); a caller's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def shipped_session():
    """The session's refiners are the shipped ones before and after the test."""
    from napari_tubediff.models import session

    session.reset_refiner()
    yield
    session.reset_refiner()


@pytest.fixture
def finetune_panel(make_napari_viewer):
    """``make(image, truth, name=..., rgb=..., region=...)``: a new viewer with ``image`` and its
    corrected labels ``truth`` (layer "curated"), optionally a rectangle ``region`` (layer
    "corrected part"), and the Fine-tune panel with them chosen; returns ``(viewer, panel)``."""
    def make(image, truth, *, name: str, rgb: bool = False, region=None):
        viewer = make_napari_viewer()
        viewer.add_image(image, name=name, rgb=rgb)
        viewer.add_labels(truth.astype(np.uint8), name="curated")
        if region is not None:
            viewer.add_shapes([np.asarray(region)], shape_type="rectangle", name="corrected part")
        w = viewer.window.add_plugin_dock_widget("napari-tubediff", "Fine-tune")[1]
        w.image.value = viewer.layers[name]
        w.labels.value = viewer.layers["curated"]
        if region is not None:
            w.region.value = viewer.layers["corrected part"]
        return viewer, w

    return make


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    """A new viewer and the Diffusion panel docked in it."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-tubediff", "Diffusion")
    return viewer, widget
