"""The Fine-tune panel on a volume: the 3D refiner fine-tunes and becomes the session's 3D
refiner, while images keep the 2D one."""

import pytest

napari = pytest.importorskip("napari")

from napari_tubediff.models import session  # noqa: E402
from napari_tubediff.training.synthetic3d import faded_image, straight_tube  # noqa: E402

pytestmark = pytest.mark.usefixtures("shipped_session")


@pytest.fixture
def panel(finetune_panel):
    t = straight_tube([0, 0, 1], (16, 24, 32), radius=2.5, gap=4, seed=0)
    return finetune_panel(faded_image(t.volume), t.volume.truth, name="volume")


def test_finetune_panel_on_a_volume_swaps_the_3d_refiner(panel, qtbot, tmp_path):
    viewer, w = panel
    shipped2d = session.active_refiner(2)
    w.updates.value = 3
    w.train_button.native.click()
    qtbot.waitUntil(lambda: w._worker is None, timeout=300000)
    assert len(w.curve.losses) == 3
    assert session.source() == "fine-tuned"
    tuned = session.active_refiner(3)
    assert tuned.ndim == 3 and tuned.meta["updates"] == 3
    # images keep the shipped 2D refiner
    assert session.active_refiner(2).ndim == 2 and session.active_refiner(2).weights == shipped2d.weights
    assert "before: Dice" in w.scores.value and "after : Dice" in w.scores.value


def test_the_panel_refuses_tuning_the_3d_unet(panel, monkeypatch):
    viewer, w = panel
    errors = []
    monkeypatch.setattr("napari_tubediff.widgets.finetune.show_error", errors.append)
    w.tune_backbone.value = True
    w.train_button.native.click()
    assert w._worker is None and session.source() == "shipped"
    assert errors and "tubediff finetune --tune-backbone" in errors[0]
