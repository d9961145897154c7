import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import euler_number

from napari_tubediff import betti_numbers, cldice, dice, evaluate, vca, vca_fov
from napari_tubediff.core.metrics import count_components, to_mask


def line(shape=(5, 9), row=2, cols=(1, 8)):
    m = np.zeros(shape, bool)
    m[row, cols[0]:cols[1]] = True
    return m


# --- Dice --------------------------------------------------------------------------
def test_dice_by_hand():
    p, g = np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]])
    assert dice(p, g) == pytest.approx(2 / 3)
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(2 * 4 / 16)


def test_dice_edge_cases():
    z = np.zeros((4, 4), bool)
    o = np.ones((4, 4), bool)
    assert dice(z, z) == 1.0  # both empty
    assert dice(o, z) == 0.0  # empty truth
    assert dice(z, o) == 0.0  # empty prediction
    assert dice(o, o) == 1.0  # all foreground


def test_dice_inside_the_fov_ignores_the_outside():
    gt = line()
    pred = gt.copy()
    pred[0, :] = True  # false positives in row 0
    fov = np.ones_like(gt)
    fov[0] = False
    assert dice(pred, gt) < 1.0
    assert dice(pred, gt, fov) == 1.0


def test_probabilities_are_thresholded_at_one_half_inclusive():
    u = np.array([[0.49, 0.5, 0.7]])
    np.testing.assert_array_equal(to_mask(u), [[False, True, True]])
    assert dice(u, np.array([[False, True, True]])) == 1.0


# --- clDice --------------------------------------------------------------------------
def test_cldice_by_hand_on_a_broken_line():
    gt = line()  # 7 pixels, its own skeleton
    pred = gt.copy()
    pred[2, 4] = False  # 6 pixels in two pieces
    # tprec = |S_P & L| / |S_P| = 6/6; tsens = |S_L & P| / |S_L| = 6/7
    expected = 2 * 1 * (6 / 7) / (1 + 6 / 7)
    assert cldice(pred, gt) == pytest.approx(expected)
    assert cldice(gt, pred) == pytest.approx(expected)  # symmetric by construction


def test_cldice_ignores_width_where_dice_does_not():
    gt = np.zeros((20, 40), bool)
    gt[9:12, 2:38] = True  # 3 px wide vessel
    fat = np.zeros_like(gt)
    fat[7:14, 2:38] = True  # same centre line, 7 px wide
    assert cldice(fat, gt) == 1.0
    assert dice(fat, gt) < 0.7


def test_cldice_edge_cases():
    z = np.zeros((6, 6), bool)
    assert cldice(z, z) == 1.0
    assert cldice(line((6, 6), 2, (1, 5)), z) == 0.0
    assert cldice(z, line((6, 6), 2, (1, 5))) == 0.0
    o = np.ones((6, 6), bool)
    assert cldice(o, o) == 1.0


def test_cldice_3d_tube():
    gt = np.zeros((20, 9, 9), bool)
    gt[1:19, 3:6, 3:6] = True
    broken = gt.copy()
    broken[9:11] = False
    assert cldice(gt, gt) == 1.0
    assert 0.5 < cldice(broken, gt) < 1.0


# --- VCA ---------------------------------------------------------------------------
def test_vca_by_hand_includes_the_background_label():
    gt = line()
    pred = gt.copy()
    pred[2, 4] = False
    assert vca(pred, gt) == (2 + 1) / (1 + 1)
    assert vca(gt, gt) == 1.0
    z = np.zeros_like(gt)
    assert vca(z, z) == 1.0
    assert vca(z, gt) == 1 / 2
    assert vca(gt, z) == 2 / 1


def test_vca_is_8_connected():
    diag = np.eye(6, dtype=bool)  # one 8-connected component, six 4-connected ones
    assert count_components(diag) == 1
    assert vca(diag, diag[::-1]) == 1.0


def test_vca_equals_the_reference_opencv_count():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for _ in range(10):
        pred = rng.random((40, 50)) > 0.7
        gt = rng.random((40, 50)) > 0.8
        n_p = cv2.connectedComponentsWithStats(pred.astype(np.uint8), connectivity=8)[0]
        n_g = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=8)[0]
        assert vca(pred, gt) == n_p / n_g  # OpenCV's counts include the background


def test_vca_ignores_the_fov_but_vca_fov_does_not():
    gt = line()
    pred = gt.copy()
    pred[0, 0] = True  # a speck outside the FOV
    fov = np.ones_like(gt)
    fov[0] = False
    assert vca(pred, gt) == 3 / 2
    assert vca_fov(pred, gt, fov) == 1.0


# --- Betti numbers -------------------------------------------------------------------
def test_betti_numbers_by_hand():
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    assert betti_numbers(ring) == (1, 1)
    two = np.hstack([ring, ring])
    assert betti_numbers(two) == (2, 2)
    # a ring closed only through a diagonal step is still closed (8-connected foreground,
    # 4-connected background)
    diag_ring = ring.copy()
    diag_ring[1, 1] = False
    assert betti_numbers(diag_ring) == (1, 1)
    assert betti_numbers(np.zeros((5, 5), bool)) == (0, 0)
    assert betti_numbers(np.ones((5, 5), bool)) == (1, 0)


def test_betti_numbers_agree_with_euler_characteristic_and_hole_filling():
    rng = np.random.default_rng(1)
    for _ in range(10):
        m = ndi.binary_opening(rng.random((60, 60)) > 0.45)
        b0, b1 = betti_numbers(m)
        assert b0 - b1 == euler_number(m, connectivity=2)
        holes = ndi.binary_fill_holes(m) & ~m
        assert b1 == ndi.label(holes)[1]  # 4-connected holes


def test_betti_numbers_3d():
    z, y, x = np.mgrid[-10:11, -10:11, -10:11]
    r = np.sqrt(x ** 2 + y ** 2)
    torus = (r - 6) ** 2 + z ** 2 <= 4
    assert betti_numbers(torus) == (1, 1, 0)
    d = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    shell = (d <= 8) & (d >= 5)
    assert betti_numbers(shell) == (1, 0, 1)


def test_evaluate_keys_and_betti_errors():
    gt = line((9, 12), 4, (1, 11))
    pred = gt.copy()
    pred[4, 5] = False
    r = evaluate(pred, gt)
    assert set(r) == {"dice", "cldice", "vca", "betti0_error", "betti1_error"}
    assert r["betti0_error"] == 1 and r["betti1_error"] == 0
    assert r["dice"] == pytest.approx(2 * 9 / 19)
    fov = np.ones_like(gt)
    assert "vca_fov" in evaluate(pred, gt, fov)
    vol = np.zeros((6, 6, 6), bool)
    vol[1:5, 3, 3] = True
    assert "betti2_error" in evaluate(vol, vol)


# --- invariances -------------------------------------------------------------------
def _vessels(seed):
    from napari_tubediff.data.synthetic import synthetic_vessels

    s = synthetic_vessels((128, 128), seed=seed, n_breaks=4)
    return s.probability >= 0.5, s.truth


@pytest.mark.parametrize("op", ["rot90", "rot180", "fliplr", "flipud", "transpose"])
def test_metrics_are_invariant_to_rotations_and_flips(op):
    pred, gt = _vessels(3)
    f = {"rot90": np.rot90, "rot180": lambda a: np.rot90(a, 2), "fliplr": np.fliplr,
         "flipud": np.flipud, "transpose": np.transpose}[op]
    a, b = evaluate(pred, gt), evaluate(f(pred), f(gt))
    for k in ("dice", "vca", "betti0_error", "betti1_error"):
        assert a[k] == b[k], k
    # skeletonize (Zhang's thinning) is not exactly rotation-equivariant: clDice agrees closely
    assert b["cldice"] == pytest.approx(a["cldice"], abs=0.01)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="field of view"):
        dice(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2D or 3D"):
        vca(np.zeros(3), np.zeros(3))


@pytest.mark.parametrize("thick", [(4, 4), (4, 5), (5, 4), (6, 6), (3, 3)])
def test_3d_cldice_of_a_perfect_tube_is_one_whatever_its_thickness(thick):
    # scikit-image's 3D thinning deletes objects an even number of voxels thick along the
    # first axis; a perfect prediction must still score clDice 1 and keep a centre line
    from napari_tubediff.core.metrics import cldice, skeleton

    tube = np.zeros((20, 24, 32), bool)
    tube[8:8 + thick[0], 10:10 + thick[1], 2:30] = True
    sk = skeleton(tube)
    assert sk.sum() >= 20 and (sk <= tube).all()  # about the tube's length, inside it
    assert cldice(tube, tube) == 1.0
    half = tube.copy()
    half[:, :, 16:] = False  # half the tube predicted: precision 1, sensitivity about 1/2
    assert cldice(half, tube) == pytest.approx(2 * 0.5 / 1.5, abs=0.06)
