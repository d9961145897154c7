"""The panels take the voxel spacing from the layer's ``scale`` (issue 16) and the Diffusion
panel refuses a run that does not fit in memory."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_tubediff.core.refine import RefineSettings, refine  # noqa: E402
from napari_tubediff.data.synthetic import synthetic_vessels  # noqa: E402
from napari_tubediff.widgets.diffusion import REFINED  # noqa: E402


def test_diffusion_panel_refines_with_the_layers_scale(viewer_and_widget, qtbot):
    viewer, w = viewer_and_widget
    u = synthetic_vessels((12, 32, 32), seed=1, width=(1.0, 2.0)).probability
    viewer.add_image(u, name="probability", scale=(6.0, 2.0, 2.0))  # micrometres, z 3 times longer
    w.layer.value = viewer.layers["probability"]
    w.steps.value = 3
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)
    got = viewer.layers[REFINED].data
    method = w.method.value  # the panel's default method (gated+dti)
    expected = refine(u, settings=RefineSettings(steps=3, method=method, spacing=(3, 1, 1)))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    isotropic = refine(u, settings=RefineSettings(steps=3, method=method))
    assert np.abs(got - isotropic).max() > 1e-3  # the scale did change it


def test_stability_notice_follows_the_scale(viewer_and_widget):
    viewer, w = viewer_and_widget
    w.lambda_par.value, w.lambda_perp.value, w.order.value = 1.0, 0.02, 8
    # dt = 0.4 is above the 3D limit on isotropic voxels (0.31) and below it at spacing
    # (3, 1, 1) (0.31 * 3 / (2 + 1/9) = 0.44)
    viewer.add_image(np.zeros((8, 16, 16), np.float32), name="isotropic")
    viewer.add_image(np.zeros((8, 16, 16), np.float32), name="anisotropic", scale=(3, 1, 1))
    w.layer.value = viewer.layers["isotropic"]
    w.dt.value = 0.4
    assert "2 sub-steps" in w.status.value
    w.layer.value = viewer.layers["anisotropic"]
    assert w.status.value == ""


def test_a_run_that_does_not_fit_in_memory_is_refused(viewer_and_widget, monkeypatch):
    viewer, w = viewer_and_widget
    messages = []
    monkeypatch.setattr("napari_tubediff.widgets.diffusion.show_error", messages.append)
    monkeypatch.setattr("napari_tubediff.core.checks.available_memory", lambda: 2**20)
    viewer.add_image(np.zeros((16, 32, 32), np.float32), name="probability")
    w.layer.value = viewer.layers["probability"]
    w.run()
    assert w._worker is None and REFINED not in viewer.layers
    assert len(messages) == 1 and "more than the 1 MiB available" in messages[0]


def test_segment_panel_gives_region3d_the_layers_scale(make_napari_viewer, qtbot):
    from napari_tubediff.models.classical import VolumeBackbone
    from napari_tubediff.widgets.segment import PROBABILITY

    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-tubediff", "Segment")
    # a tube 4 um in radius in voxels 2 um deep (2 planes) and 1 um across (4 rows)
    zz, yy, _ = np.indices((16, 32, 24), dtype=float)
    truth = ((zz - 7.5) * 2) ** 2 + (yy - 15.5) ** 2 <= 16
    vol = (300 + 800 * truth + 40 * np.random.default_rng(0).standard_normal(truth.shape)).astype(np.float32)
    viewer.add_image(vol, name="stack", scale=(2.0, 1.0, 1.0))
    w.image.value = viewer.layers["stack"]
    assert w.backbone.value == "region3d"
    w.run()
    qtbot.waitUntil(lambda: PROBABILITY in viewer.layers and not w.busy, timeout=60000)
    expected = VolumeBackbone(spacing=(2.0, 1.0, 1.0)).predict(vol)
    np.testing.assert_array_equal(viewer.layers[PROBABILITY].data, expected)
    assert not np.array_equal(expected, VolumeBackbone().predict(vol))  # the spacing counted
