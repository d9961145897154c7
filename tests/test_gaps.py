import numpy as np
import pytest

from napari_tubediff.core.gaps import bridged_mask


def test_bridged_mask_is_what_crossed_the_threshold():
    p = np.zeros((3, 4), np.float32)
    r = p.copy()
    r[1, :3] = [0.5, 0.7, 0.4]          # 0.5 counts (>= threshold); 0.4 does not
    p[1, 1] = 0.6                       # already vessel before: not bridged
    np.testing.assert_array_equal(bridged_mask(p, r)[1], [True, False, False, False])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        bridged_mask(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="threshold"):
        bridged_mask(np.zeros((3, 3)), np.zeros((3, 3)), threshold=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bridged_mask(np.zeros((3, 3)), np.full((3, 3), 2.0))


# --- bridges(): only gaps that join components (or extend a vessel end) ---------------------

from napari_tubediff.core.gaps import FEATURES, bridges, confidence  # noqa: E402
from napari_tubediff.evaluation import score_gaps  # noqa: E402


def _bar(shape, rows, cols, value=0.9):
    a = np.zeros(shape, np.float32)
    a[rows, cols] = value
    return a


def test_collinear_segments_with_a_gap_give_one_bridge():
    p = _bar((15, 40), slice(6, 9), slice(2, 17)) + _bar((15, 40), slice(6, 9), slice(23, 38))
    r = p.copy()
    r[6:9, 17:23] = 0.6                         # the refinement closed the 6-pixel gap
    labels, gaps = bridges(p, r)
    assert len(gaps) == 1
    g = gaps[0]
    assert g.joins == (1, 2) and g.label == 1
    assert g.size == 6                          # the centre line across the gap, row 7
    assert (labels[7, 17:23] == 1).all() and labels[:, :17].max() == 0 and labels[:, 23:].max() == 0
    assert g.features[:2] == (0.0, 0.0)         # the backbone saw nothing there
    assert g.confidence == pytest.approx(confidence([g.features])[0])


def test_parallel_segments_widened_into_each_other_give_none():
    p = _bar((20, 40), slice(5, 8), slice(3, 37)) + _bar((20, 40), slice(11, 14), slice(3, 37))
    r = p.copy()
    r[8:11, 3:37] = 0.6                          # the fill between two parallel vessels
    labels, gaps = bridges(p, r)
    assert gaps == [] and not labels.any()
    assert bridged_mask(p, r).any()              # the pixels did cross the threshold


def test_thickened_vessel_gives_none():
    p = _bar((20, 40), slice(8, 11), slice(3, 37))
    r = p.copy()
    r[6:13, 2:38] = np.maximum(r[6:13, 2:38], 0.6)    # one to two pixels wider all round
    labels, gaps = bridges(p, r)
    assert gaps == [] and not labels.any()


def test_extension_along_a_vessel_end_and_not_sideways():
    p = _bar((20, 40), slice(9, 12), slice(2, 20))
    r = p.copy()
    r[9:12, 20:28] = 0.6                         # 8 pixels further along the vessel
    _, gaps = bridges(p, r)
    assert len(gaps) == 1 and gaps[0].joins == (1,) and gaps[0].size >= 5
    r = p.copy()
    r[12:19, 9:12] = 0.6                         # a spur out of the vessel's side
    assert bridges(p, r)[1] == []


def test_specks_do_not_make_bridges_and_rank_by_confidence():
    p = _bar((15, 60), slice(7, 8), slice(0, 12)) + _bar((15, 60), slice(7, 8), slice(16, 30))
    p += _bar((15, 60), slice(7, 8), slice(34, 48))
    p[7, 12:16] = 0.2                            # faint evidence in the first gap
    p[7, 30:34] = 0.4                            # stronger evidence in the second
    p[2, 50:52] = 0.9                            # a 2-pixel speck
    r = p.copy()
    r[7, 12:16] = r[7, 30:34] = 0.7
    r[2, 52:55] = 0.7                            # extends the speck: not listed
    labels, gaps = bridges(p, r)
    assert [round(g.features[0], 2) for g in gaps] == [0.4, 0.2]   # mean probability along each
    assert gaps[0].confidence > gaps[1].confidence
    assert labels[7, 31] == 1 and labels[7, 13] == 2


def test_score_gaps_precision_and_recall():
    p = _bar((15, 60), slice(7, 8), slice(0, 12)) + _bar((15, 60), slice(7, 8), slice(16, 30))
    p += _bar((15, 60), slice(7, 8), slice(34, 48))
    r = p.copy()
    r[7, 12:16] = r[7, 30:34] = 0.7
    labels, gaps = bridges(p, r)
    truth = p > 0
    truth[7, 12:16] = True                       # the truth joins the first gap only
    s = score_gaps(p, labels, gaps, truth)
    assert s["gaps"] == 2 and s["precision"] == 0.5
    assert s["breaks"] == 1 and s["recall"] == 1.0   # the truth's one join is closed
    truth[7, 30:34] = True
    s = score_gaps(p, labels, gaps, truth)
    assert s["precision"] == 1.0 and s["breaks"] == 2 and s["recall"] == 1.0
    s = score_gaps(p, np.zeros_like(labels), [], truth)
    assert s["gaps"] == 0 and s["recall"] == 0.0 and np.isnan(s["precision"])


def test_evaluate_dataset_scores_each_methods_gap_list():
    from types import SimpleNamespace

    from napari_tubediff.core.metrics import to_mask
    from napari_tubediff.evaluation import evaluate_dataset, format_table

    p = _bar((15, 60), slice(7, 8), slice(0, 12)) + _bar((15, 60), slice(7, 8), slice(16, 30))
    p[7, 12:16] = 0.4
    truth = p > 0
    item = SimpleNamespace(name="a", truth=lambda: truth, truth2=lambda: None,
                           fov=lambda: np.ones(p.shape, bool))
    closed = p.copy()
    closed[7, 12:16] = 0.9
    methods = {"raw": lambda prob, feats, fov: to_mask(prob),
               "closes": lambda prob, feats, fov: to_mask(closed)}
    res = evaluate_dataset([item], lambda it, fov: (p, None), methods, human=False, gaps=True)
    assert "gaps" not in res["raw"]
    assert res["closes"]["gaps"]["a"] == {"gaps": 1, "precision": 1.0, "precision_top": 1.0, "breaks": 1,
                                          "recall": 1.0}
    assert res["closes"]["gap_summary"]["median_gaps"] == 1.0
    assert "gap list" in format_table(res)


def test_bridge_features_and_calibrated_ranking():
    # two collinear breaks: a faint one (0.4) and an empty one (0.0) of the same length
    p = _bar((30, 40), slice(6, 9), slice(2, 17)) + _bar((30, 40), slice(6, 9), slice(23, 38))
    p += _bar((30, 40), slice(20, 23), slice(2, 17)) + _bar((30, 40), slice(20, 23), slice(23, 38))
    p[6:9, 17:23] = 0.4
    r = p.copy()
    r[6:9, 17:23] = r[20:23, 17:23] = 0.6
    labels, gaps = bridges(p, r)
    f = [dict(zip(FEATURES, g.features, strict=True)) for g in gaps]
    assert [round(g.centroid[0]) for g in gaps] == [7, 21]       # the faint one first
    assert f[0]["mean_probability"] == pytest.approx(0.4) and f[1]["mean_probability"] == 0
    assert f[0]["log_length"] == pytest.approx(np.log(6)) and f[0]["joins_two"] == 1
    assert f[0]["direction"] == pytest.approx(1.0)                 # straight along both axes
    assert f[0]["log_piece"] == pytest.approx(np.log(45))          # 3 x 15 pixels each side
    assert 0 < gaps[1].confidence < gaps[0].confidence < 1


def test_confidence_needs_every_feature():
    with pytest.raises(ValueError, match="features need 6 columns"):
        confidence([[0.5, 0.2]])
