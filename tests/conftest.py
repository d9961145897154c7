"""Fixtures shared by several test files: the fine-tune tests (2D and 3D: function, command,
panel) and the Diffusion panel's."""

import numpy as np
import pytest


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
