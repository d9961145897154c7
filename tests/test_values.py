"""One rule for integer probability maps and masks (core.values), in metrics.to_mask, the file
readers and the CLI."""

import warnings

import numpy as np
import pytest

from napari_tubediff.core.metrics import dice, to_mask
from napari_tubediff.core.values import AssumptionWarning, as_probability, integer_scale
from napari_tubediff.data.drive import binary_mask
from napari_tubediff.data.io import read_image, to_probability, write_image


@pytest.mark.parametrize("values, dtype, scale, says", [
    ([0, 1, 1], np.uint8, 1, "binary"),
    ([0, 128, 255], np.uint8, 255, None),
    ([0, 3, 253], np.uint8, 255, None),           # DRIVE's palette GIF read as grey
    ([0, 1, 1], np.uint16, 1, "binary"),
    ([0, 200, 255], np.uint16, 255, "read as 8-bit"),
    ([0, 1000, 65535], np.uint16, 65535, "full-range"),
    ([0, 70000], np.int32, 2 ** 31 - 1, "full-range"),
])
def test_integer_scale(values, dtype, scale, says):
    got, note = integer_scale(np.array(values, dtype))
    assert got == scale
    assert (note is None) if says is None else (says in note)


def test_negative_values_are_refused():
    with pytest.raises(ValueError, match="negative"):
        integer_scale(np.array([-1, 3], np.int16))


def test_the_same_masks_whatever_the_storage():
    truth = np.array([[0, 1, 1], [0, 0, 1]], bool)
    stored = {"0/1 uint8": truth.astype(np.uint8), "0/255 uint8": truth.astype(np.uint8) * 255,
              "3/253 grey GIF": np.where(truth, 253, 3).astype(np.uint8),
              "0/1 uint16": truth.astype(np.uint16), "0/255 uint16": truth.astype(np.uint16) * 255,
              "0/65535 uint16": truth.astype(np.uint16) * 65535, "float": truth.astype(np.float32)}
    for what, a in stored.items():
        np.testing.assert_array_equal(to_mask(a), truth, err_msg=what)      # metrics
        np.testing.assert_array_equal(binary_mask(a), truth, err_msg=what)  # the CLI's mask reading
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AssumptionWarning)
            np.testing.assert_array_equal(to_probability(a) >= 0.5, truth, err_msg=what)
    # the threshold between: 127 is out, 128 in (>= 0.5 of 255), as the old > 127 rule
    np.testing.assert_array_equal(to_mask(np.array([127, 128], np.uint8)), [False, True])
    assert dice(truth.astype(np.uint8), truth) == 1.0  # a 0/1 prediction is no longer empty


def test_the_assumption_is_said(tmp_path):
    write_image(tmp_path / "p.png", np.array([[0, 1], [1, 0]], np.uint8))  # a 0/1 PNG
    with pytest.warns(AssumptionWarning, match="p.png: values 0 and 1 only"):
        p = to_probability(read_image(tmp_path / "p.png"), "p.png")
    assert p.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary 8-bit map says nothing
        assert to_probability(np.array([0, 51, 255], np.uint8)).tolist() == pytest.approx([0, 0.2, 1])
    p, note = as_probability(np.array([0, 255], np.uint16))
    assert p.tolist() == [0.0, 1.0] and "uint16 values 0..255" in note
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_probability(np.array([0.0, 1.5]))
