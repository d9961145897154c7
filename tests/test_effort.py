"""The scripted annotator (core.effort) on hand-checkable masks."""

import numpy as np
import pytest

from napari_tubediff.core.effort import simulate_annotator
from napari_tubediff.core.metrics import cldice, vca

STRICT = {"vca_goal": 1.0, "cldice_goal": 0.95}  # one piece, as the truth; centre line almost whole


def bar(shape=(11, 50), rows=slice(4, 7), cols=slice(2, 48)):
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


def test_one_break_takes_one_trace_along_the_truth():
    truth = bar()
    pred = truth.copy()
    pred[:, 20:26] = False
    r = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    assert (r.actions, r.reached, r.stopped) == (1, True, "goal")
    (a,) = r.history
    assert a.kind == "join"
    # the clicks are the gap's two ends on the truth's centre line (row 5), next to each piece
    assert sorted(a.points) == [(5, 20), (5, 25)]
    assert r.start_vca == 1.5 and r.vca == 1.0
    assert r.mask[4:7, 20:26].all() and not r.mask[[0, 1, 2, 8, 9, 10]].any()
    assert not pred[:, 20:26].any()  # the input is left alone


def test_one_false_blob_takes_one_remove():
    truth = bar()
    pred = truth.copy()
    pred[8:11, 10:14] = False
    pred[9:11, 30:35] = True  # a blob off the vessel, its own piece
    r = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    assert (r.actions, r.reached) == (1, True)
    assert r.history[0].kind == "remove" and r.history[0].points == ((9, 30),)  # its first pixel
    assert np.array_equal(r.mask, truth)


def test_a_mask_that_meets_the_goal_needs_nothing():
    truth = bar()
    r = simulate_annotator(truth, truth, truth * 0.9)
    assert (r.actions, r.reached, r.stopped, r.history) == (0, True, "goal", [])
    # the default goal (VCA <= 3, clDice >= 0.85) tolerates a short break
    pred = truth.copy()
    pred[:, 24:26] = False
    assert simulate_annotator(pred, truth, truth * 0.9).actions == 0


def test_the_longer_gap_first_and_the_cap():
    truth = bar()
    pred = truth.copy()
    pred[:, 10:13] = False  # a 3-pixel break
    pred[:, 30:38] = False  # an 8-pixel break: traced first
    r = simulate_annotator(pred, truth, truth * 0.9, max_actions=1, **STRICT)
    assert (r.actions, r.reached, r.stopped) == (1, False, "cap")
    assert sorted(a[1] for a in r.history[0].points) == [30, 37]
    assert r.history[0].value == 8
    full = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    assert full.actions == 2 and [a.kind for a in full.history] == ["join", "join"]
    assert full.vca == vca(full.mask, truth) == 1.0


def test_a_missed_vessel_end_is_extended_when_cldice_is_short():
    truth = bar()
    pred = bar(cols=slice(2, 25))  # the right half of the vessel missed: one piece, clDice 2/3
    assert cldice(pred, truth) < 0.7
    r = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    assert r.actions == 1 and r.history[0].kind == "extend" and r.reached
    assert r.history[0].points[0] == (5, 25)  # from the vessel's end ...
    assert r.history[0].points[1][1] >= 45  # ... to the far end of the missed stretch


def test_a_truth_piece_missed_entirely_is_not_traced():
    # tracing it would add a piece: no action of the rules helps, the annotator is stuck
    truth = bar() | bar(rows=slice(9, 11), cols=slice(2, 48), shape=(11, 50))
    truth[7:9] = False
    pred = bar()
    r = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    assert (r.actions, r.reached, r.stopped) == (0, False, "stuck")


def test_deterministic_and_the_field_of_view():
    truth = bar()
    pred = truth.copy()
    pred[:, 20:26] = False
    pred[0:2, 30:34] = True
    a = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    b = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    assert [(x.kind, x.points) for x in a.history] == [(x.kind, x.points) for x in b.history]
    assert np.array_equal(a.mask, b.mask) and a.actions == 2
    # a break outside the field of view is not the annotator's business for clDice
    fov = np.zeros_like(truth)
    fov[:, :20] = True
    broken = truth & ~bar(cols=slice(30, 36))
    assert simulate_annotator(broken, truth, truth * 0.9, fov, vca_goal=1.5, cldice_goal=0.99).actions == 0
    assert simulate_annotator(broken, truth, truth * 0.9, vca_goal=1.5, cldice_goal=0.99).actions == 1


def test_bad_input_says_what_is_wrong():
    truth = bar()
    with pytest.raises(ValueError, match="one shape"):
        simulate_annotator(truth[:, :10], truth, truth * 0.9)
    with pytest.raises(ValueError, match="max_actions"):
        simulate_annotator(truth, truth, truth * 0.9, max_actions=-1)


def test_joins_come_before_extends_while_vca_is_short():
    truth = bar()
    pred = bar(cols=slice(2, 30))
    pred[:, 10:12] = False  # a 2-pixel break (join) and an 18-pixel missed end (extend)
    r = simulate_annotator(pred, truth, truth * 0.9, **STRICT)
    assert [a.kind for a in r.history] == ["join", "extend"] and r.reached
    assert r.history[1].value > r.history[0].value


def test_a_long_break_is_traced_in_steps_along_the_truth():
    truth = bar(shape=(11, 80), cols=slice(2, 78))
    pred = truth.copy()
    pred[:, 20:60] = False  # 40 pixels of centre line missing: two clicks of at most 25 along
    r = simulate_annotator(pred, truth, truth * 0.9, trace_step=25, **STRICT)
    assert [a.kind for a in r.history] == ["join", "join"] and r.reached
    assert r.history[0].points == ((5, 20), (5, 45))  # 25 pixels along the gap
    # the painted tube (radius 1.5 from the field) reaches col 46: cols 47..59 remain
    assert r.history[1].value == 13 and r.history[1].points == ((5, 47), (5, 59))


def test_doctests():
    import doctest

    from napari_tubediff.core import effort

    assert doctest.testmod(effort, optionflags=doctest.ELLIPSIS).failed == 0
