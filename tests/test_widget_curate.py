"""The "Curate vessels" dock (the whole loop in one dock) and the panels' default choices,
driven as a person would."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_tubediff import cli  # noqa: E402
from napari_tubediff.widgets.curate import STEPS, CurateWidget  # noqa: E402
from napari_tubediff.widgets.segment import fov_like  # noqa: E402

ORDER = ["segment", "directions", "diffusion", "gaps", "accept", "metrics", "fine-tune"]


def curate(viewer) -> CurateWidget:
    return viewer.window.add_plugin_dock_widget("napari-tubediff", "Curate vessels")[1]


def test_one_dock_has_the_loop_in_order_and_fits_a_1080_pixel_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-tubediff", "synthetic")
    dock = curate(viewer)
    tabs = dock.tabs
    assert [tabs.tabText(i).split(" ", 1)[1].lower() for i in range(tabs.count())] == ORDER
    assert list(dock.panels) == ORDER
    # the same panel classes as the separate docks, not copies
    assert [type(p) for p in dock.panels.values()] == [cls for _, cls in STEPS]
    # asks for room for the tallest step, within what a 1080-pixel screen leaves for a dock
    tallest = max(p.native.sizeHint().height() for p in dock.panels.values())
    assert tallest <= dock.sizeHint().height() <= 900
    assert dock.minimumSizeHint().height() <= 900
    # the separate panels stay available
    seg = viewer.window.add_plugin_dock_widget("napari-tubediff", "Segment")[1]
    assert type(seg) is type(dock.panels["segment"]) and seg is not dock.panels["segment"]

    # a step run from its tab: Segment, then Diffusion of the sample's probability
    dock.show_step("segment")
    s = dock.panels["segment"]
    s.image.value = viewer.layers["synthetic image"]
    s.run_button.native.click()
    qtbot.waitUntil(lambda: not s.busy, timeout=60000)
    assert viewer.layers["probability"].data.shape == (256, 256)
    assert "probability:" in s.status.value and s.status.value.startswith("scale ")
    dock.show_step("diffusion")
    assert tabs.currentWidget().widget() is dock.panels["diffusion"].native
    d = dock.panels["diffusion"]
    d.layer.value = viewer.layers["synthetic probability"]
    d.method.value = "faithful"  # the PDE alone: 5 steps, no completion step
    d.steps.value = 5
    d.run_button.native.click()
    qtbot.waitUntil(lambda: not d.busy, timeout=60000)
    assert d.status.value == "step 5 / 5"

    # the refined field over the image, not hiding it: a green transparent where the field is
    # low (alpha 0 at 0, opaque at 1), with a before/after box
    refined = viewer.layers["refined"]
    qtbot.waitUntil(lambda: refined.visible, timeout=5000)  # new layers are shown a turn after they are added
    alpha = refined.colormap.map(np.array([0.0, 1.0]))[:, 3]
    assert alpha.tolist() == [0.0, 1.0] and refined.blending == "translucent"
    assert viewer.layers["synthetic image"].visible
    assert viewer.dims.ndim == 2 and d.scrub.value == "snapshot 6 of 6: step 5 / 5"  # no time axis
    d.after.value = False                              # before: the probability shows
    assert not refined.visible
    d.after.value = True
    assert refined.visible


def test_tubediff_gui_opens_the_curate_dock(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    monkeypatch.setattr(napari, "Viewer", lambda **_kw: viewer)
    monkeypatch.setattr(napari, "run", lambda: None)
    assert cli.main(["gui", "--no-sample"]) == 0
    assert [type(w) for w in viewer.window.dock_widgets.values()] == [CurateWidget]


@pytest.mark.parametrize("name, fov", [("21_training_mask", True), ("01_dr_mask", True), ("mask", True),
                                       ("synthetic fov", True), ("FOV", True), ("refined_mask", False),
                                       ("curated", False), ("21_manual1", False), ("truth mask", False)])
def test_which_names_look_like_a_field_of_view(name, fov):
    assert fov_like(name) is fov


def test_a_mask_layer_is_offered_as_the_fov_and_curated_as_the_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    shape = (32, 32)
    viewer.add_image(np.zeros(shape, np.float32), name="21_training")
    viewer.add_labels(np.ones(shape, np.uint8), name="21_manual1")
    dock = curate(viewer)
    seg, met, fine = dock.panels["segment"], dock.panels["metrics"], dock.panels["fine-tune"]
    assert seg.fov.value is None and fine.fov.value is None  # no mask yet: none is guessed
    # a DRIVE FOV opened later is offered; the ground truth and vessel masks never are
    viewer.add_labels(np.ones(shape, np.uint8), name="21_training_mask")
    viewer.add_labels(np.zeros(shape, np.uint8), name="refined_mask")
    for panel in (seg, met, fine):
        assert panel.fov.value is viewer.layers["21_training_mask"], type(panel).__name__
    viewer.add_labels(np.zeros(shape, np.uint8), name="curated")
    assert fine.labels.value is viewer.layers["curated"]
    # the user's own choice stays while unrelated layers come and go
    seg.fov.value = None
    viewer.add_labels(np.zeros(shape, np.uint8), name="bridged")
    assert seg.fov.value is None
    # a panel opened after the mask picks it at once
    late = viewer.window.add_plugin_dock_widget("napari-tubediff", "Segment")[1]
    assert late.fov.value is viewer.layers["21_training_mask"]


def test_metrics_scores_the_loop_against_the_truth_by_default(make_napari_viewer):
    # HRF's order as an annotator opens it: the FOV mask first, then the truth, then the loop
    viewer = make_napari_viewer()
    shape = (16, 16)
    viewer.add_image(np.zeros(shape, np.float32), name="11_h")
    viewer.add_labels(np.ones(shape, np.uint8), name="11_h_mask")
    met = curate(viewer).panels["metrics"]
    assert met.truth.value is None  # not the FOV mask: Score says to choose a truth
    assert list(met.predictions.value) == []
    viewer.add_labels(np.zeros(shape, np.uint8), name="11_h [1]")
    assert met.truth.value is viewer.layers["11_h [1]"] and met.fov.value is viewer.layers["11_h_mask"]
    for name in ("probability", "refined history", "refined"):
        viewer.add_image(np.zeros(shape, np.float32), name=name)
    viewer.add_labels(np.zeros(shape, np.uint8), name="bridged")
    viewer.add_labels(np.zeros(shape, np.uint8), name="curated")
    assert [lay.name for lay in met.predictions.value] == ["probability", "refined", "curated"]
    assert met.truth.value is viewer.layers["11_h [1]"]
    # the user's own choice of a truth stays
    met.truth.native.setCurrentText("bridged")
    met.truth.native.activated.emit(met.truth.native.currentIndex())
    assert met.truth.value is viewer.layers["bridged"]
    viewer.add_image(np.zeros(shape, np.float32), name="other")
    assert met.truth.value is viewer.layers["bridged"]
