import numpy as np
import pytest

from napari_tubediff.core.scoring import prediction_mask, rows_to_csv, score_predictions


def line():
    gt = np.zeros((5, 9), bool)
    gt[2, 1:8] = True  # 7 pixels
    return gt


def test_prediction_mask_kinds():
    np.testing.assert_array_equal(prediction_mask(np.array([[0, 3, 1]], np.uint8)), [[0, 1, 1]])
    np.testing.assert_array_equal(prediction_mask(np.array([[0.2, 0.5, 0.9]])), [[0, 1, 1]])
    np.testing.assert_array_equal(prediction_mask(np.array([[0.2, 0.5, 0.9]]), 0.6), [[0, 0, 1]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prediction_mask(np.array([[0.0, 2.0]]))


def test_scores_by_hand():
    gt = line()
    half = gt.copy()
    half[2, 5:] = False  # 4 of 7 pixels
    broken = gt.copy()
    broken[2, 4] = False  # two pieces
    rows = score_predictions({"gt": gt.astype(np.uint8), "half": half, "broken": broken}, gt)
    assert [r["name"] for r in rows] == ["gt", "half", "broken"]
    assert rows[0]["dice"] == 1.0 and rows[0]["cldice"] == 1.0 and rows[0]["vca"] == 1.0
    assert rows[1]["dice"] == pytest.approx(2 * 4 / 11)
    assert rows[2]["dice"] == pytest.approx(2 * 6 / 13)
    assert rows[2]["vca"] == pytest.approx(3 / 2)  # (2 + 1) components over (1 + 1)


def test_fov_adds_vca_fov_and_cuts_dice():
    gt = line()
    pred = gt.copy()
    pred[0, 0] = True  # a false positive outside the FOV
    fov = np.zeros_like(gt)
    fov[1:4] = True
    (row,) = score_predictions({"p": pred}, gt, fov)
    assert row["dice"] == 1.0 and "vca_fov" in row


def test_shape_mismatch_names_the_layer():
    with pytest.raises(ValueError, match="'small'"):
        score_predictions({"small": np.zeros((3, 3), bool)}, line())


def test_csv_by_hand():
    text = rows_to_csv([{"name": "a", "dice": 0.5, "vca": 1.0}, {"name": "b", "dice": 1 / 3}])
    assert text == "name,dice,vca\na,0.5,1\nb,0.333333,\n"
