"""The Segment panel's scale and field of view: found by default and shown; the user's own."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_tubediff.core.fov import fov_diameter, fov_mask  # noqa: E402
from napari_tubediff.data.fundus import synthetic_fundus  # noqa: E402


def dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-tubediff", name)[1]


def idle(qtbot, widget, timeout=120000):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout)


def test_segment_panel_finds_fov_and_scale_shows_them_and_takes_the_users(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    f = synthetic_fundus((120, 120), seed=6)
    viewer.add_image(f.image, name="eye", rgb=True)
    seg = dock(viewer, "Segment")
    assert seg.image.value.name == "eye" and seg.auto_scale.value and seg.find_fov.value
    assert not seg.scale.enabled  # auto: the field shows the value found, the user cannot edit it
    seg.backbone.value = "vesselness"  # no working scale: the factor stays 1
    seg.run_button.native.click()
    idle(qtbot, seg)
    p = viewer.layers["probability"]
    assert p.data.shape == (120, 120) and not p.data[~fov_mask(f.image)].any()
    assert seg.scale.value == 1.0 and "scale 1 (native)" in seg.status.value and "FOV" in seg.status.value

    seg.backbone.value = "unet"
    seg.run_button.native.click()
    idle(qtbot, seg)
    found = 800.0 / fov_diameter(fov_mask(f.image))
    assert seg.scale.value == pytest.approx(found, abs=0.006) and "(fov)" in seg.status.value  # 2 decimals
    assert p.metadata["scale"] == pytest.approx(found)

    # the user's own factor, and no FOV
    seg.auto_scale.value = False
    assert seg.scale.enabled
    seg.scale.value = 2.0
    seg.find_fov.value = False
    seg.run_button.native.click()
    idle(qtbot, seg)
    assert "scale 2 (given)" in seg.status.value and "no FOV" in seg.status.value
    assert viewer.layers["probability"].data.shape == (120, 120)
    assert viewer.layers["probability"].metadata["features"].shape[1:] == (240, 240)
    assert np.isfinite(viewer.layers["probability"].data).all()
