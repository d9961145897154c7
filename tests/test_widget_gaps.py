"""The Bridged gaps panel and the Diffusion panel's default method, driven as a person would:
find the bridges, walk them with the keys, reject one, accept all above a confidence."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari.utils.key_bindings import coerce_keybinding  # noqa: E402

from napari_tubediff.core.refine import RECOMMENDED_METHOD, RefineSettings, refine  # noqa: E402
from napari_tubediff.widgets._common import camera  # noqa: E402
from napari_tubediff.widgets.diffusion import REFINED  # noqa: E402
from napari_tubediff.widgets.gaps import (  # noqa: E402
    ACCEPT_ABOVE,
    ACCEPTED,
    BRIDGED,
    GAP_KEYS,
    REJECTED,
    STATUS_COLOURS,
    UNREVIEWED,
)


def dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-tubediff", name)[1]


def idle(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout)


def press(viewer, key):
    viewer.keymap[coerce_keybinding(key)](viewer)


def _three_breaks():
    """Three vessels, each broken by a 4-pixel stretch the backbone saw faintly (0.45, 0.35,
    0.25), all three closed by the refinement; plus a widened rim, which is no gap."""
    p = np.zeros((60, 40), np.float32)
    r = p.copy()
    for row, faint in zip((10, 30, 50), (0.45, 0.35, 0.25), strict=True):
        p[row, 2:18] = p[row, 22:38] = 0.9
        p[row, 18:22] = faint
        r[row] = p[row]
        r[row, 18:22] = 0.6
    r[11, 4:14] = 0.6          # the first vessel widened by a row: not listed
    return p, r


def _colour(layer, label):
    return tuple(np.round(layer.colormap.map(np.array([label]))[0], 3))


def test_review_the_bridges_with_keys_and_accept_all_above(make_napari_viewer, qtbot, monkeypatch):
    from napari.utils.colormaps import _accelerated_cmap

    # napari relabels wider-than-16-bit labels pixel by pixel on the GUI thread: the panels
    # give it labels it draws as they are
    relabelled = []
    relabel = _accelerated_cmap.labels_raw_to_texture_direct
    monkeypatch.setattr(_accelerated_cmap, "labels_raw_to_texture_direct",
                        lambda data, cmap: relabelled.append((data.dtype, data.size)) or relabel(data, cmap))
    viewer = make_napari_viewer()
    p, r = _three_breaks()
    viewer.add_image(p, name="probability")
    viewer.add_image(r, name="refined")
    gaps = dock(viewer, "Bridged gaps")
    assert gaps.probability.value.name == "probability" and gaps.refined.value.name == "refined"
    gaps.run_button.native.click()
    idle(qtbot, gaps)
    found = gaps._gaps
    # the three breaks, not the widened rim; most confident (the brightest stretch) first
    assert len(found) == 3 and gaps.list.count() == 3
    assert [round(g.centroid[0]) for g in found] == [10, 30, 50]
    assert [g.joins for g in found] == [(1, 2), (3, 4), (5, 6)]
    conf = [g.confidence for g in found]
    assert conf == sorted(conf, reverse=True) and 0 < conf[-1] < conf[0] < 1
    layer = viewer.layers[BRIDGED]
    assert layer.data[10, 18:22].tolist() == [1] * 4 and not layer.data[11, 4:14].any()
    assert _colour(layer, 1) == STATUS_COLOURS[UNREVIEWED] and _colour(layer, 0)[3] == 0
    layer.refresh()
    assert layer.data.size not in [n for _, n in relabelled]   # (the thumbnail's 256 values are cheap)

    # the first gap is shown at once; the keys walk the list and the view follows
    assert gaps.list.currentRow() == 0
    np.testing.assert_allclose(camera(viewer).center[-2:], found[0].centroid, atol=1e-6)
    press(viewer, GAP_KEYS["next"])
    assert gaps.list.currentRow() == 1
    np.testing.assert_allclose(camera(viewer).center[-2:], found[1].centroid, atol=1e-6)
    press(viewer, GAP_KEYS["previous"])
    assert gaps.list.currentRow() == 0
    press(viewer, GAP_KEYS["previous"])          # stays on the first
    assert gaps.list.currentRow() == 0

    # reject the first by key: drawn in the rejected colour, on to the next
    press(viewer, GAP_KEYS["reject"])
    assert gaps.list.currentRow() == 1 and "rejected" in gaps.list.item(0).text()
    assert _colour(layer, 1) == STATUS_COLOURS[REJECTED] and _colour(layer, 2) == STATUS_COLOURS[UNREVIEWED]

    # accept all at or above the second's confidence: the second only (the first stays rejected)
    # (the three confidences differ by less than the box's 0.01 steps: the threshold is given)
    assert gaps.accept_above(conf[1] - 1e-6) == 1
    assert list(layer.features["status"]) == ["background", REJECTED, ACCEPTED, UNREVIEWED]
    assert _colour(layer, 2) == STATUS_COLOURS[ACCEPTED] and _colour(layer, 3) == STATUS_COLOURS[UNREVIEWED]
    assert "accepted 1 gap" in gaps.status.value
    press(viewer, GAP_KEYS["accept"])            # the one shown (row 1) again: still accepted
    assert gaps.list.currentRow() == 2

    # the button, as a person uses it: at its default (0.8) these gaps (about 0.77) stay
    # unreviewed; with the box lowered to 0.75 the last one is accepted
    assert gaps.above.value == ACCEPT_ABOVE == 0.8 and conf[2] < ACCEPT_ABOVE
    gaps.accept_above_button.native.click()
    assert layer.features["status"][3] == UNREVIEWED and "accepted 0 gap(s)" in gaps.status.value
    gaps.above.value = 0.75
    gaps.accept_above_button.native.click()
    assert layer.features["status"][3] == ACCEPTED
    assert "accepted 1 gap(s) with confidence >= 0.75" in gaps.status.value

    # the Accept panel leaves the rejected gap out
    acc = dock(viewer, "Accept")
    acc.gaps.value = layer
    acc.accept()
    c = viewer.layers["curated"].data
    assert not c[10, 18:22].any() and c[30, 18:22].all() and c[50, 18:22].all()


def test_no_bridges_says_so(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    p, _ = _three_breaks()
    viewer.add_image(p, name="probability")
    viewer.add_image(p.copy(), name="refined")
    gaps = dock(viewer, "Bridged gaps")
    gaps.run_button.native.click()
    idle(qtbot, gaps)
    assert gaps._gaps == [] and gaps.list.count() == 0 and "no bridged gaps" in gaps.status.value
    press(viewer, GAP_KEYS["next"])              # nothing to walk: no error
    assert gaps.accept_above(0.0) == 0


def test_diffusion_panel_runs_the_default_method_to_its_completion(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    p, _ = _three_breaks()
    viewer.add_image(p, name="probability")
    diff = dock(viewer, "Diffusion")
    assert diff.method.value == RECOMMENDED_METHOD == "gated+dti"
    diff.steps.value = 4
    diff.run_button.native.click()
    idle(qtbot, diff)
    # four gated PDE steps, then DTI's completion as step 5, the end of `tubediff refine`'s run
    assert diff._history.steps == [0, 1, 2, 3, 4, 5] and diff._step == 5
    expected = refine(p, settings=RefineSettings(method="gated+dti", steps=4))
    np.testing.assert_allclose(viewer.layers[REFINED].data, expected, atol=1e-6)
    assert (viewer.layers[REFINED].data[[10, 30, 50]][:, 18:22] >= 0.5).all()
    # the last step is named: the completion, after the 4 PDE steps
    assert diff.status.value == "step 5 / 4+1 (the completion)"
    assert diff.scrub.value == "snapshot 6 of 6: step 5 / 4+1 (the completion)"
    # back to step 2 with the panel's slider (the refined layer shows it) and on again: the same end
    diff.scrubber.value = 2
    np.testing.assert_array_equal(viewer.layers[REFINED].data, diff._history.stack()[2])
    assert diff.scrub.value == "snapshot 3 of 6: step 2 / 4+1; the run is at step 5"
    diff.restore_button.native.click()
    assert diff._step == 2 and diff.status.value == "back at step 2"
    assert [lay.name for lay in viewer.layers] == ["probability", REFINED]  # no layer with a time axis
    diff.run_button.native.click()
    idle(qtbot, diff)
    assert diff._history.steps[-1] == 5
    np.testing.assert_allclose(viewer.layers[REFINED].data, expected, atol=1e-5)
    # Step at the end: nothing continues from the completion; it says so and changes nothing
    diff.step()
    assert diff.job is None and diff._step == 5 and "no step after the completion" in diff.status.value
    np.testing.assert_allclose(viewer.layers[REFINED].data, expected, atol=1e-5)
    # Run at the end starts over from the probability, and says so
    diff.run_button.native.click()
    assert diff.status.value.startswith("run ended at step 5 / 4+1 (the completion): starting over")
    idle(qtbot, diff)
    assert diff._history.steps == [0, 1, 2, 3, 4, 5]
