"""Fixtures shared by several test files: the fine-tune tests (2D and 3D: function, command,
panel) and the Diffusion panel's."""

import gc
import os
import sys

# Torch's OpenMP threads spin while they wait for work. With both cores busy (other jobs, CI
# neighbours) a spinning thread holds the core its partner needs: on 2026-11-30 (2-core CPU, load
# about 9, torch on 2 threads) 10 fine-tune updates on two 192 px synthetic fundi took 223 s with
# the default policy and 4.7 s with PASSIVE. Set before anything imports torch (the test modules
# do, after this file); a caller's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_finish(session):
    """Move everything the test modules imported (napari, Qt, torch, skimage: about 400k objects)
    out of the garbage collector's sight. napari's viewer fixture runs a collection before and
    after each GUI test, and each one walked them all: on 2026-11-30 (2-core shared CPU)
    gc.collect took 3.5 s of test_widget_diffusion + test_widget_spacing's 19 s, and 0.8 s after
    the freeze. Objects made later, by the tests, are collected as before."""
    gc.collect()
    gc.freeze()
    # torch on one thread in this process (the panels' worker process sets its own count). The
    # models the tests train and run are small: with two threads each tiny convolution waited
    # for the sleeping second thread (OMP_WAIT_POLICY=PASSIVE, above), and with the other core
    # busy it waited for that core. On 2026-11-30 (2-core shared CPU, load about 2)
    # test_finetune.py + test_models.py took 29.5 s with one thread and 34.1 s with two (the
    # tiny U-Net's training 1.2 s against 4.1 s). It was also an order dependence:
    # test_models3d set one thread and left it so for every later test.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def _one_worker_process():
    """One worker process for the whole GUI suite. Each panel that runs work in a child
    (`workers.process.prewarm`) starts one that imports torch when it is docked, and the
    viewer's close ends it: a torch import (1 to 3 s of CPU) per GUI test, most of which
    never run a task. Holding one `prewarm` user for the session keeps one child for every
    viewer; a test that ends it (cancel, `process.shutdown`) gets a new one at the next
    `prewarm`. Tests that check that closing the viewer leaves no process set
    ``process._users`` themselves ("the panels of this viewer only")."""
    from napari_tubediff.widgets._common import worker_threads
    from napari_tubediff.workers import process

    process.prewarm(worker_threads())
    yield
    process.release()
    process.shutdown()


@pytest.fixture(scope="session")
def _plugins_found_once():
    """npe2 reads the installed plugins' manifests once for the session. napari's viewer
    fixture starts each test with napari's plugin set-up undone, so every new viewer scanned
    every installed distribution again (0.25 s a viewer on 2026-11-30, 2-core shared CPU), to
    find the same manifests: already registered, they were skipped. The installed packages do
    not change during a run; a discovery with extra ``paths`` is not cached."""
    from npe2 import PluginManifest

    real = PluginManifest.discover.__func__
    found = []

    def discover(cls, paths=()):
        if paths:
            yield from real(cls, paths)
            return
        if not found:
            found.append(list(real(cls)))
        yield from found[0]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PluginManifest, "discover", classmethod(discover))
        yield


@pytest.fixture
def make_napari_viewer(make_napari_viewer, _one_worker_process, _plugins_found_once):
    """napari's fixture, with the session's worker process (`_one_worker_process`) and the
    plugin manifests read once (`_plugins_found_once`)."""
    return make_napari_viewer
