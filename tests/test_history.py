import numpy as np
import pytest

from napari_tubediff.core.history import SnapshotHistory, capacity_for


def test_keeps_everything_until_full_then_thins_to_an_even_grid_and_the_newest():
    h = SnapshotHistory(4)
    for step in range(1, 5):
        h.add(step, np.full((2, 3), step, np.float32))
    assert h.steps == [1, 2, 3, 4]
    h.add(5, np.full((2, 3), 5, np.float32))
    assert h.steps == [1, 3, 5]
    h.add(6, np.full((2, 3), 6, np.float32))
    assert h.steps == [1, 3, 5, 6]
    h.add(7, np.full((2, 3), 7, np.float32))  # 6 was kept only as the newest
    assert h.steps == [1, 3, 5, 7]
    h.add(8, np.full((2, 3), 8, np.float32))  # full: every 4th step from 1, and the newest
    assert h.steps == [1, 5, 8] and h.stride == 4
    stack = h.stack()
    assert stack.shape == (3, 2, 3)
    np.testing.assert_array_equal(stack[:, 0, 0], [1, 5, 8])  # data moved with the steps
    assert h.snapshot(-1)[0] == 8 and h.snapshot(0)[1][0, 0] == 1


def test_a_long_run_keeps_early_steps_at_an_even_spacing():
    # the panel's default: 50 snapshots kept, 200 steps from step 0 (issue 14 saw 0, 82, 107, ...)
    h = SnapshotHistory(50)
    for step in range(201):
        h.add(step, np.full((1, 1), step, np.float32))
    assert h.steps == list(range(0, 193, 8)) + [200]
    np.testing.assert_array_equal(h.stack()[:, 0, 0], h.steps)
    assert len(h) <= 50 and max(np.diff(h.steps)) <= 2 * 200 / 50


def test_stores_copies_and_clear():
    h = SnapshotHistory(3)
    a = np.zeros((2, 2), np.float32)
    h.add(0, a)
    a[:] = 1
    assert h.stack()[0].max() == 0
    h.clear()
    assert len(h) == 0
    with pytest.raises(ValueError, match="empty"):
        h.snapshot(0)


def test_new_shape_restarts():
    h = SnapshotHistory(3)
    h.add(0, np.zeros((2, 2)))
    h.add(1, np.zeros((4, 4)))
    assert h.steps == [1] and h.stack().shape == (1, 4, 4)


def test_capacity_for_by_hand():
    assert capacity_for((512, 512), 50, 10 * 2**20) == 10      # 1 MiB per float32 snapshot
    assert capacity_for((16, 16), 50, 10 * 2**20) == 50
    assert capacity_for((4096, 4096), 50, 1) == 2               # never below 2
    with pytest.raises(ValueError):
        SnapshotHistory(1)


def test_truncate_then_continue():
    h = SnapshotHistory(5)
    for step in range(4):
        h.add(step, np.full((1, 1), step, np.float32))
    h.truncate(2)
    h.add(9, np.full((1, 1), 9, np.float32))
    assert h.steps == [0, 1, 9]
    np.testing.assert_array_equal(h.stack()[:, 0, 0], [0, 1, 9])
