"""The Fine-tune panel, driven as a person would: choose layers, press Fine-tune, watch, cancel,
save, load, reset."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_tubediff.data.fundus import synthetic_fundus  # noqa: E402
from napari_tubediff.models import session  # noqa: E402
from napari_tubediff.models.refiner import LearnedRefiner  # noqa: E402

pytestmark = pytest.mark.usefixtures("shipped_session")


@pytest.fixture
def panel(finetune_panel):
    # a 112-px crop inside the photograph: no FOV edge, so the working scale comes from the
    # vessel width (2.9: 323 px), not from the FOV (5.3: 853 px); the U-Net and the scores took
    # 2.1 s of the worker's CPU there and 0.5 s here, and these tests do not depend on the scale
    f = synthetic_fundus((160, 160), seed=3, n_breaks=10)
    crop = (slice(24, 136), slice(24, 136))
    return finetune_panel(f.image[crop], f.truth[crop], name="photo", rgb=True, region=[[8, 8], [104, 104]])


def test_finetune_panel_trains_shows_the_curve_and_swaps_the_weights(panel, qtbot, tmp_path):
    viewer, w = panel
    # 3 updates (not 12): each costs 0.4 s of CPU in the worker process, and the checks (every
    # update drawn, the weights swapped, saved with their count) hold for any count above one
    w.updates.value = 3
    version = session.version()
    w.train_button.native.click()
    assert not w.train_button.enabled and w.cancel_button.enabled
    qtbot.waitUntil(lambda: w._worker is None, timeout=300000)
    assert len(w.curve.losses) == 3  # the curve got every update
    assert session.version() == version + 1 and session.source() == "fine-tuned"
    assert "before: Dice" in w.scores.value and "after : Dice" in w.scores.value
    assert "use the new weights now" in w.status.value
    # Save, then Reset to the shipped weights, then Load what was saved
    path = w.save(tmp_path / "mine.pt")
    assert path.is_file() and LearnedRefiner(path).meta["updates"] == 3
    w.reset_button.native.click()
    assert session.source() == "shipped"
    assert w.load(path) and session.source() == "mine.pt"


def test_cancel_keeps_the_previous_weights(panel, qtbot):
    viewer, w = panel
    before = session.active_refiner()
    w.updates.value = 5000
    w.train_button.native.click()
    qtbot.waitUntil(lambda: len(w.curve.losses) >= 2, timeout=300000)
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: w._worker is None, timeout=300000)
    assert session.active_refiner() is before and session.source() == "shipped"
    assert w.status.value.startswith("cancelled")
    assert w.train_button.enabled and not w.cancel_button.enabled


def test_bad_choices_and_files_give_messages(panel, qtbot, tmp_path, monkeypatch):
    viewer, w = panel
    messages = []
    monkeypatch.setattr("napari_tubediff.widgets.finetune.show_error", messages.append)
    (tmp_path / "junk.pt").write_bytes(b"not weights")
    assert not w.load(tmp_path / "junk.pt")
    assert "junk.pt" in messages[-1] and session.source() == "shipped"
    viewer.layers["corrected part"].data = []
    w.run()
    assert "no shapes" in messages[-1] and w._worker is None
    viewer.layers.remove("curated")
    w.run()
    assert "corrected Labels" in messages[-1]


def test_corrected_labels_default_to_the_curated_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="photo")
    truth = viewer.add_labels(np.zeros((32, 32), np.uint8), name="truth")
    w = viewer.window.add_plugin_dock_widget("napari-tubediff", "Fine-tune")[1]
    assert w.labels.value is truth                      # nothing curated yet
    curated = viewer.add_labels(np.zeros((32, 32), np.uint8), name="curated")  # made by Accept
    assert w.labels.value is curated
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="other")
    assert w.labels.value is curated
