"""The folder review queue (data.queue): resume after a restart, nothing saved is lost."""

import json

import numpy as np
import pytest

from napari_tubediff.data.io import read_image, write_image
from napari_tubediff.data.queue import DONE, REVIEWED, CurationQueue


def _folder(tmp_path, names=("01.png", "02.png", "03.tif")):
    for i, n in enumerate(names):
        write_image(tmp_path / n, np.full((8, 9), 10 * i, np.uint8))
    return tmp_path


def test_a_queue_survives_a_restart_mid_folder_with_nothing_lost(tmp_path):
    d = _folder(tmp_path)
    q = CurationQueue(d, user="ann")
    assert [p.name for p in q.images()] == ["01.png", "02.png", "03.tif"]
    first = q.next_unfinished()
    assert first.name == "01.png" and q.load(first) is None
    lab1 = np.zeros((8, 9), np.uint8)
    lab1[2:4, 1:7] = 1
    lab1[6, 6] = 3
    q.save(first, lab1, state=DONE, settings={"threshold": 0.5})
    second = q.next_unfinished(after=first)
    assert second.name == "02.png"
    q.load(second)
    lab2 = np.eye(8, 9, dtype=np.uint8) * 2
    q.save(second, lab2, state=REVIEWED)  # saved, not finished: the session ends here

    # restart: a new queue from the files alone
    r = CurationQueue(d, user="bob")
    assert r.progress() == (1, 3)
    nxt = r.next_unfinished()
    assert nxt.name == "02.png" and r.state(nxt) == REVIEWED
    np.testing.assert_array_equal(r.load(nxt), lab2)
    np.testing.assert_array_equal(r.load(first), lab1)  # label values kept
    st = r.status(first)
    assert st["state"] == DONE and st["by"] == "ann" and st["settings"] == {"threshold": 0.5}
    assert st["when"].endswith("+00:00")
    r.save(nxt, lab2, state=DONE)
    assert r.next_unfinished().name == "03.tif"
    assert json.loads(r.status_path(nxt).read_text())["by"] == "bob"
    # the user's folder holds only its images and the queue's folder
    assert sorted(p.name for p in d.iterdir()) == ["01.png", "02.png", "03.tif", "curated"]
    r.save(r.next_unfinished(), np.zeros((8, 9), np.uint8), state=DONE)
    assert r.next_unfinished() is None and r.progress() == (3, 3)


def test_saved_labels_are_never_overwritten_without_asking(tmp_path):
    d = _folder(tmp_path)
    a = CurationQueue(d, user="ann")
    img = a.images()[0]
    a.load(img)
    a.save(img, np.ones((8, 9), np.uint8))
    # another session saved since this one opened the image: refused
    b = CurationQueue(d, user="bob")
    b.load(img)
    b.save(img, np.full((8, 9), 2, np.uint8))
    with pytest.raises(ValueError, match="changed since"):
        a.save(img, np.zeros((8, 9), np.uint8))
    np.testing.assert_array_equal(read_image(a.labels_path(img)), 2)
    # a session that never opened it does not write over it either
    c = CurationQueue(d)
    with pytest.raises(ValueError, match="changed since"):
        c.save(img, np.zeros((8, 9), np.uint8))
    # a labels file tubediff did not write: refused; with overwrite: replaced
    img2 = a.images()[1]
    a.out.mkdir(exist_ok=True)
    write_image(a.labels_path(img2), np.ones((8, 9), np.uint8))
    a.load(img2)
    with pytest.raises(ValueError, match="did not write it"):
        a.save(img2, np.zeros((8, 9), np.uint8))
    a.save(img2, np.zeros((8, 9), np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_image(a.labels_path(img2)), 0)


def test_bad_folders_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        CurationQueue(tmp_path / "nope")
    with pytest.raises(ValueError, match="no images"):
        CurationQueue(tmp_path)
    _folder(tmp_path, ("x.png", "x.tif"))
    with pytest.raises(ValueError, match="share"):
        CurationQueue(tmp_path)
