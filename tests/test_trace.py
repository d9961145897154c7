"""Trace between two clicks and remove a false piece (core.trace): known answers."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from napari_tubediff.core.trace import paint_tube, path_cost, remove_piece, trace_path
from napari_tubediff.data.synthetic import synthetic_vessels


def _breaks_away_from_junctions(s, clear: float = 12.0):
    """(break mask, start, end): the two centre-line stubs just outside each isolated break."""
    comps, n = ndi.label(s.breaks, np.ones((3, 3)))
    sk = skeletonize(s.truth)
    junction = sk & (ndi.convolve(sk.astype(int), np.ones((3, 3), int), mode="constant") >= 4)
    dj = ndi.distance_transform_edt(~junction)
    for i in range(1, n + 1):
        b = comps == i
        if dj[b].min() < clear:
            continue  # near a junction the stubs may belong to another branch
        zone = ndi.binary_dilation(b, iterations=8) & ~ndi.binary_dilation(b, iterations=1)
        stubs, m = ndi.label(s.centerline & zone, np.ones((3, 3)))
        if m != 2:
            continue
        db = ndi.distance_transform_edt(~b)
        a, c = (np.argwhere(stubs == j)[np.argmax(db[stubs == j])] for j in (1, 2))
        yield b, a, c


def test_trace_across_synthetic_breaks_follows_the_hidden_centre_line():
    checked = 0
    for seed in range(4):
        s = synthetic_vessels((256, 256), seed=seed, n_breaks=8)
        off_centre = ndi.distance_transform_cdt(~s.centerline, metric="chessboard")
        for b, start, end in _breaks_away_from_junctions(s):
            t = trace_path(s.probability, start, end)
            assert tuple(t.path[0]) == tuple(start) and tuple(t.path[-1]) == tuple(end)
            # every step of the path is within one pixel of the true centre line ...
            assert off_centre[tuple(t.path.T)].max() <= 1, (seed, start, end)
            # ... and every hidden centre-line pixel in the break is within one pixel of the path
            on_path = np.zeros(s.truth.shape, bool)
            on_path[tuple(t.path.T)] = True
            near_path = ndi.distance_transform_cdt(~on_path, metric="chessboard")
            assert near_path[s.centerline & b].max() <= 1, (seed, start, end)
            # consecutive points are neighbours (a connected stroke)
            assert np.abs(np.diff(t.path, axis=0)).max() == 1
            assert t.mask[tuple(t.path.T)].all()
            checked += 1
    assert checked >= 8


def test_trace_paints_the_field_width_across_a_break_and_stays_inside_the_vessel():
    p = np.zeros((21, 60), np.float32)
    p[7:14, :] = 1.0          # a bar 7 px wide: the nearest outside pixel is 4 px from its axis
    p[:, 25:33] = 0.0         # an 8-px break
    t = trace_path(p, (10, 2), (10, 57))
    assert set(t.path[:, 0].tolist()) == {10}
    assert np.allclose(t.radius, 4, atol=0.01)
    truth = np.zeros_like(p, bool)
    truth[7:14, 2:58] = True
    # the painted tube is the bar between the clicks (plus the round caps beyond them)
    assert t.mask[truth].all()
    assert not t.mask[:7].any() and not t.mask[14:].any()
    # a given radius replaces the field's
    assert np.allclose(trace_path(p, (10, 2), (10, 57), radius=1).radius, 1)
    assert trace_path(p, (10, 2), (10, 57), radius=1).mask.sum() == 3 * 56 + 2


def test_trace_follows_a_bend_instead_of_cutting_the_corner():
    p = np.zeros((40, 40), np.float32)
    p[5:8, 5:35] = 1.0
    p[5:35, 32:35] = 1.0      # an L: the straight line between the ends crosses background
    t = trace_path(p, (6, 6), (33, 33))
    assert (p[tuple(t.path.T)] == 1).all()
    assert len(t.path) >= 50  # along both arms (55 points), not across (28)
    assert not (t.mask & ~ndi.binary_dilation(p > 0)).any()


def test_trace_prefers_the_centre_of_a_flat_topped_vessel():
    p = np.zeros((15, 50), np.float32)
    p[3:12, :] = 1.0          # flat probability: only the centre-ness tells the middle
    t = trace_path(p, (5, 1), (9, 48))
    rows = t.path[:, 0]
    assert (np.abs(rows[8:-8] - 7) <= 0).all()
    c = path_cost(p)
    assert c[7, 20] < c[5, 20] < c[3, 20] < c[1, 20]


def test_trace_in_3d_across_a_gap_with_anisotropic_spacing():
    p = np.zeros((20, 24, 40), np.float32)
    zz, yy = np.ogrid[:20, :24]
    tube = ((zz - 10) ** 2 + (yy - 12) ** 2 <= 9)[..., None] & np.ones(40, bool)
    p[tube] = 1.0
    p[..., 18:24] = 0.0
    t = trace_path(p, (10, 12, 1), (10, 12, 38))
    assert (t.path[:, :2] == [10, 12]).all()
    inner = tube.copy()
    inner[..., :2] = inner[..., 38:] = False
    assert t.mask[inner].all()  # the gap too is painted to the tube's width
    assert not (t.mask & ~ndi.binary_dilation(tube)).any()
    ts = trace_path(p, (10, 12, 1), (10, 12, 38), spacing=(2.0, 1.0, 1.0))
    assert (ts.path[:, :2] == [10, 12]).all()


def test_trace_refuses_points_outside_and_wrong_shapes():
    p = np.ones((10, 10), np.float32)
    with pytest.raises(ValueError, match="outside the field"):
        trace_path(p, (0, 0), (12, 3))
    with pytest.raises(ValueError, match="2 coordinates"):
        trace_path(p, (0, 0, 0), (3, 3))
    with pytest.raises(ValueError, match="2D or 3D"):
        trace_path(np.ones(5), (0,), (3,))
    with pytest.raises(ValueError, match="spacing"):
        trace_path(p, (0, 0), (3, 3), spacing=(1, 0))


def test_paint_tube_is_the_union_of_discs_of_each_point():
    m = paint_tube((11, 11), np.array([[5, 5]]), 3.0)
    yy, xx = np.mgrid[:11, :11]
    assert (m == ((yy - 5) ** 2 + (xx - 5) ** 2 <= 9)).all()


# ---------------------------------------------------------------- removal

def test_remove_component_takes_the_clicked_piece_and_no_other_value():
    lab = np.zeros((30, 30), np.uint16)
    lab[2:6, 2:20] = 1        # the false piece
    lab[10:14, 2:28] = 1      # another piece of the same value
    lab[4, 10:25] = 2         # a painted label of another value crossing the piece
    gone = remove_piece(lab, (3, 5))
    assert gone.sum() == ((lab == 1)[:9]).sum()
    assert not gone[lab == 2].any()
    assert not gone[10:14].any()
    # a click beside the piece snaps to it; a click on nothing says so
    assert (remove_piece(lab, (7, 5)) == gone).all()
    with pytest.raises(ValueError, match="nothing is labelled"):
        remove_piece(lab, (25, 25))


def test_remove_branch_leaves_the_trunk_and_the_other_branches_whole():
    lab = np.zeros((60, 60), np.uint8)
    lab[5:55, 28:33] = 1          # trunk, 5 wide
    lab[20:23, 33:55] = 1         # a side branch to the right, 3 wide
    lab[40:43, 5:28] = 1          # a side branch to the left
    lab[45:50, 40:45] = 3         # another label value nearby
    trunk = np.zeros_like(lab, bool)
    trunk[5:55, 28:33] = True
    left = np.zeros_like(lab, bool)
    left[40:43, 5:28] = True
    gone = remove_piece(lab, (21, 50), mode="branch")
    assert not gone[trunk].any(), "the trunk stays whole"
    assert not gone[left].any(), "the other branch stays whole"
    assert not gone[lab == 3].any()
    right = np.zeros_like(lab, bool)
    right[20:23, 36:55] = True
    assert gone[right].all(), "the clicked branch goes, up to the trunk's edge"
    assert gone[lab == 1].sum() == gone.sum()
    # component mode takes the whole tree
    assert remove_piece(lab, (21, 50)).sum() == (lab == 1).sum()


def test_remove_in_3d():
    lab = np.zeros((10, 20, 20), np.int32)
    lab[2:5, 2:5, 2:15] = 4
    lab[6:9, 10:13, 2:15] = 4
    gone = remove_piece(lab, (3, 3, 8))
    assert gone.sum() == 3 * 3 * 13
    assert not gone[6:9].any()
