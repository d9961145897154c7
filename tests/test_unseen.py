"""Inputs the product had never seen (issue: unseen fundus cameras and microscopy files,
through the commands with their defaults). Each test failed on the old behaviour; the
cases and what the user now sees are rows of docs/reliability.md, "Unseen inputs".
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_tubediff.cli import main
from napari_tubediff.data.io import read_image
from napari_tubediff.data.outputs import image_shape


def _lines(shape=(48, 48)) -> np.ndarray:
    # bright lines on a dark background: a grey microscopy plane
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = 100 + 800 * (np.exp(-((xx - 16) / 2.0) ** 2) + np.exp(-((yy - 30) / 2.0) ** 2))
    return img.astype(np.uint16)


def test_a_one_plane_tiff_is_a_2d_image_everywhere(tmp_path):
    # a stack of one plane (tifffile and ImageJ write (1, H, W)): read_image gives (H, W), so
    # the header must say 2D too; it was taken for a volume, sent to region3d and refused
    plane = _lines()
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, plane[None])
    q = tmp_path / "one5d.ome.tif"
    tifffile.imwrite(q, plane[None, None, None], ome=True, metadata={"axes": "TCZYX"})
    assert read_image(p).shape == image_shape(p) == (48, 48)
    assert image_shape(q) == (48, 48)
    assert main(["segment", str(p), "--out", str(tmp_path / "o")]) == 0
    prob = read_image(tmp_path / "o/one_prob.tif")
    assert prob.shape == (48, 48) and (tmp_path / "o/one_prob.png").exists()
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    assert main(["refine", str(tmp_path / "o/one_prob.tif"), "--out", str(tmp_path / "r")]) == 0
    assert read_image(tmp_path / "r/one_mask.png").shape == (48, 48)
