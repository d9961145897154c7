"""The user's files are never lost (issue 11): every writing command plans its outputs before
any work, refuses inputs, collisions and files tubediff did not write (unless --overwrite),
checks the folder first, records its settings, and leaves no partial file on Ctrl-C or a full disk.

Each refusal test also proves that no compute happened: the expensive step is replaced by a
function that fails the test if it is called.
"""

from __future__ import annotations

import doctest
import errno
import json
import os

import numpy as np
import pytest

from napari_tubediff.cli import main
from napari_tubediff.data.io import read_image, write_image
from napari_tubediff.data.outputs import read_record

READ_ONLY = "/sys"  # mounted read-only for every user in containers and on most hosts


def _read_only_dir_available() -> bool:
    import tempfile

    try:
        fd, p = tempfile.mkstemp(dir=READ_ONLY)
    except OSError:
        return True
    os.close(fd)
    os.unlink(p)
    return False


def _prob(seed=0, shape=(32, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = np.zeros(shape, np.float32)
    u[shape[0] // 2 - 1: shape[0] // 2 + 2, 2:-2] = 0.9
    return np.clip(u + 0.05 * rng.random(shape, np.float32), 0, 1).astype(np.float32)


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if any image is refined (the refusal must come first)."""
    from napari_tubediff.batch import run

    def forbidden(*a, **kw):
        raise AssertionError("compute started before the refusal")

    monkeypatch.setattr(run, "_refine_image", forbidden)
    monkeypatch.setattr(run, "make_client", forbidden)
    return forbidden


def _messages(err: str) -> list[str]:
    # stderr less the progress bars (tqdm redraws with carriage returns)
    return [line for line in err.splitlines() if line and "\r" not in line and "%|" not in line]


def _one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err
    lines = _messages(err)
    assert len(lines) == 1 and lines[0].startswith("tubediff: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], err
    return lines[0]


# ------------------------------------------------------------------- the planner on its own

def test_doctests_of_the_output_modules():
    from napari_tubediff.data import outputs
    from napari_tubediff.models import registry, user_model

    for mod in (outputs, registry, user_model):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0


def test_names_do_not_double_up():
    from napari_tubediff.batch.run import outputs_for
    from napari_tubediff.data.outputs import output_path, output_stem

    assert [p.name for p in outputs_for("in/01_test_prob.tif", "o", 2)] == ["01_test_refined.tif",
                                                                           "01_test_mask.png"]
    assert output_path("01_test.tif", "o", "prob", ".tif").name == "01_test_prob.tif"
    assert output_stem("a_refined.tif") == "a" and output_stem("a_mask.png") == "a"
    assert output_stem("_prob.tif") == "_prob"  # nothing would be left: kept as it is
    assert output_stem("a_probe.tif") == "a_probe"  # only a whole role


# ------------------------------------------------------------------- 1. inputs and weights

def test_finetune_refuses_to_write_weights_over_an_input(tmp_path, capsys, monkeypatch):
    import napari_tubediff.training.finetune as ft

    monkeypatch.setattr(ft, "finetune", lambda *a, **kw: pytest.fail("trained before the refusal"))
    img, lab = tmp_path / "x.tif", tmp_path / "l.png"
    write_image(img, _prob())
    write_image(lab, _prob() > 0.5)
    before = img.read_bytes()
    for extra in ([], ["--overwrite"]):  # never over an input, --overwrite or not
        assert main(["finetune", "--images", str(img), "--labels", str(lab), "--out", str(img), *extra]) == 2
        _one_line_error(capsys, "x.tif", "is an input")
    assert main(["finetune", "--images", str(img), "--labels", str(lab), "--out", str(lab)]) == 2
    _one_line_error(capsys, "l.png", "is an input")
    assert img.read_bytes() == before


def test_finetune_refuses_an_existing_file_unless_overwrite(tmp_path, capsys, monkeypatch):
    import napari_tubediff.training.finetune as ft

    calls = []

    class Reached(Exception):
        pass

    def fake(*a, **kw):
        calls.append(1)
        raise Reached

    monkeypatch.setattr(ft, "finetune", fake)
    img, lab = tmp_path / "x.tif", tmp_path / "l.png"
    write_image(img, _prob())
    write_image(lab, _prob() > 0.5)
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"my weights")
    args = ["finetune", "--images", str(img), "--labels", str(lab), "--out", str(mine)]
    assert main(args) == 2
    _one_line_error(capsys, "mine.pt exists", "--overwrite")
    assert not calls and mine.read_bytes() == b"my weights"
    with pytest.raises(Reached):  # with --overwrite the training starts
        main([*args, "--overwrite"])
    # --tune-backbone also writes OUT_unet.pt: checked before as well
    (tmp_path / "new_unet.pt").write_bytes(b"my unet")
    assert main(["finetune", "--images", str(img), "--labels", str(lab), "--out", str(tmp_path / "new.pt"),
                 "--tune-backbone"]) == 2
    _one_line_error(capsys, "new_unet.pt exists")
    assert calls == [1]


def test_train_refuses_existing_out_and_a_file_of_its_data(tmp_path, capsys, monkeypatch):
    import napari_tubediff.training.train as tr

    monkeypatch.setattr(tr, "train_backbone", lambda *a, **kw: pytest.fail("trained before the refusal"))
    data = tmp_path / "drive"
    (data / "training/images").mkdir(parents=True)
    img = data / "training/images/21_training.tif"
    write_image(img, _prob())
    before = img.read_bytes()
    assert main(["train", "backbone", "--data", str(data), "--out", str(img), "--overwrite"]) == 2
    _one_line_error(capsys, "is an input")
    (tmp_path / "w.pt").write_bytes(b"weights of last week")
    assert main(["train", "backbone", "--data", str(data), "--out", str(tmp_path / "w.pt")]) == 2
    _one_line_error(capsys, "w.pt exists", "--overwrite")
    assert img.read_bytes() == before and (tmp_path / "w.pt").read_bytes() == b"weights of last week"


# ------------------------------------------------------------------- 2. single files: refine, segment

def test_refine_refuses_a_users_mask_before_any_work(tmp_path, capsys, no_compute, monkeypatch):
    write_image(tmp_path / "v.tif", _prob())
    user = tmp_path / "v_mask.png"
    write_image(user, np.eye(32, dtype=bool))
    before = user.read_bytes()
    assert main(["refine", str(tmp_path / "v.tif"), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "v_mask.png exists", "tubediff did not make it", "--overwrite")
    assert user.read_bytes() == before and not (tmp_path / "v_refined.tif").exists()

    monkeypatch.undo()  # now really refine: --overwrite replaces it
    args = ["refine", str(tmp_path / "v.tif"), "--out", str(tmp_path), "--steps", "2", "--overwrite"]
    assert main(args) == 0
    assert user.read_bytes() != before
    assert read_record(user)["settings"]["steps"] == 2


def test_refine_reruns_over_its_own_outputs_and_records_them(tmp_path, capsys):
    write_image(tmp_path / "v.tif", _prob())
    out = tmp_path / "out"
    for steps in ("2", "3"):  # tubediff's own outputs of the same input: replaced without --overwrite
        assert main(["refine", str(tmp_path / "v.tif"), "--out", str(out), "--steps", steps]) == 0
    rec = read_record(out / "v_refined.tif")
    assert rec["command"] == "refine" and rec["settings"]["steps"] == 3
    assert rec["input"]["path"] == str((tmp_path / "v.tif").resolve())
    assert read_record(out / "v_mask.png") == rec
    np.testing.assert_array_equal(read_image(out / "v_refined.tif").shape, (32, 32))
    assert "tubediff: note: replacing in" in capsys.readouterr().err  # the rerun said what it replaced
    # an output of ANOTHER input with the same name is not replaced
    (tmp_path / "b").mkdir()
    write_image(tmp_path / "b/v.tif", _prob(1))
    assert main(["refine", str(tmp_path / "b/v.tif"), "--out", str(out), "--steps", "2"]) == 2
    _one_line_error(capsys, "v_refined.tif", "tubediff did not make them")


@pytest.mark.parametrize("names", [("a/x.tif", "b/x.tif"), ("y.png", "y.tif"), ("z.tif", "z_prob.tif")])
def test_same_stem_inputs_are_refused_before_any_work(tmp_path, capsys, no_compute, names):
    paths = []
    for n in names:
        (tmp_path / n).parent.mkdir(exist_ok=True)
        write_image(tmp_path / n, _prob())
        paths.append(str(tmp_path / n))
    assert main(["refine", *paths, "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "would both write", "rename one of the inputs")
    assert not (tmp_path / "out").exists()
    assert main(["segment", *paths, "--out", str(tmp_path / "out"), "--backbone", "vesselness"]) == 2
    _one_line_error(capsys, "would both write")
    assert not (tmp_path / "out").exists()


def test_one_input_given_twice_is_refused(tmp_path, capsys, no_compute):
    write_image(tmp_path / "v.tif", _prob())
    assert main(["refine", str(tmp_path / "v.tif"), str(tmp_path / "./v.tif"), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "v.tif is given more than once")


def test_an_output_never_replaces_an_input(tmp_path, capsys, no_compute):
    # refining x_refined.tif into its own folder would write x_refined.tif
    write_image(tmp_path / "x_refined.tif", _prob())
    for extra in ([], ["--overwrite"]):
        assert main(["refine", str(tmp_path / "x_refined.tif"), "--out", str(tmp_path), *extra]) == 2
        _one_line_error(capsys, "x_refined.tif", "is an input")


def test_segment_refuses_a_users_file_and_writes_records(tmp_path, capsys, monkeypatch):
    import napari_tubediff.models as models

    real = models.get_backbone
    calls = []

    def counted(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(models, "get_backbone", counted)
    write_image(tmp_path / "img.png", (_prob() * 255).astype(np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out/img_prob.png").write_bytes(b"the user's own")
    args = ["segment", str(tmp_path / "img.png"), "--out", str(tmp_path / "out"), "--backbone", "vesselness"]
    assert main(args) == 2
    _one_line_error(capsys, "img_prob.png exists")
    assert calls == [] and (tmp_path / "out/img_prob.png").read_bytes() == b"the user's own"
    assert main([*args, "--overwrite"]) == 0
    rec = read_record(tmp_path / "out/img_prob.tif")
    assert rec["settings"] == {"backbone": "vesselness", "weights": None, "polarity": "auto", "scale": "auto",
                               "fov": "auto"}
    assert main(args) == 0  # its own outputs of the same image: a rerun needs no --overwrite


# ------------------------------------------------------------------- 3. folders: resume with records

@pytest.fixture
def inproc_client():
    from napari_tubediff.batch.run import make_client

    with make_client(workers=1, processes=False) as client:
        yield client
        client.cluster.close()


def test_a_resumed_folder_redoes_outputs_of_other_settings(tmp_path, inproc_client):
    from napari_tubediff.batch.run import BatchOptions, refine_folder
    from napari_tubediff.core.refine import refine

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for k in range(2):
        write_image(src / f"p{k}.tif", _prob(k))

    def run(steps):
        opts = BatchOptions(steps=steps)
        return refine_folder(src, out, client=inproc_client, options=opts, progress=False)

    assert run(3).done == ["p0.tif", "p1.tif"]
    again = run(3)
    assert again.skipped == ["p0.tif", "p1.tif"] and not again.done  # same settings: resumed
    other = run(2)  # other settings: made again, and said so
    assert other.done == ["p0.tif", "p1.tif"] and not other.skipped
    assert [why for _, why in other.redone] == ["steps 3 -> 2"] * 2
    assert "REDONE p0.tif: its outputs were made with other settings (steps 3 -> 2)" in other.summary()
    for k in range(2):
        np.testing.assert_array_equal(read_image(out / f"p{k}_refined.tif"), refine(_prob(k), steps=2))
        assert read_record(out / f"p{k}_refined.tif")["settings"]["steps"] == 2
    # an input changed since: its outputs are made again, the other is skipped
    write_image(src / "p1.tif", _prob(7))
    changed = run(2)
    assert changed.done == ["p1.tif"] and changed.skipped == ["p0.tif"]
    assert "the input changed" in changed.redone[0][1]
    np.testing.assert_array_equal(read_image(out / "p1_refined.tif"), refine(_prob(7), steps=2))


def test_a_folder_never_overwrites_a_file_without_a_record(tmp_path, capsys, no_compute):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    write_image(src / "p.tif", _prob())
    write_image(out / "p_refined.tif", _prob(3))  # the user's own, no record
    before = (out / "p_refined.tif").read_bytes()
    assert main(["refine", str(src), "--out", str(out)]) == 2
    _one_line_error(capsys, "p_refined.tif exists", "--overwrite")
    assert (out / "p_refined.tif").read_bytes() == before
    # two inputs with one stem: refused as a whole, before any work
    (out / "p_refined.tif").unlink()
    write_image(src / "p.png", _prob())
    assert main(["refine", str(src), "--out", str(out)]) == 2
    _one_line_error(capsys, "p.png and", "would both write")


def test_a_folder_with_overwrite_replaces_the_users_file(tmp_path, inproc_client):
    from napari_tubediff.batch.run import BatchOptions, refine_folder

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    write_image(src / "p.tif", _prob())
    (out / "p_mask.png").write_bytes(b"not tubediff's")
    with pytest.raises(ValueError, match="p_mask.png exists"):
        refine_folder(src, out, client=inproc_client, options=BatchOptions(steps=2), progress=False)
    rep = refine_folder(src, out, client=inproc_client, options=BatchOptions(steps=2), progress=False,
                        overwrite=True)
    assert rep.done == ["p.tif"] and read_record(out / "p_mask.png")["settings"]["steps"] == 2


# ------------------------------------------------------------------- 4. writability before work

def test_out_that_is_a_file_or_under_a_file_is_refused_first(tmp_path, capsys, no_compute):
    write_image(tmp_path / "v.tif", _prob())
    (tmp_path / "f").write_text("a file")
    assert main(["refine", str(tmp_path / "v.tif"), "--out", str(tmp_path / "f")]) == 2
    _one_line_error(capsys, "is a file, not a folder")
    assert main(["refine", str(tmp_path / "v.tif"), "--out", str(tmp_path / "f/sub")]) == 2
    _one_line_error(capsys, "is a file, not a folder")
    assert main(["train", "backbone", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "is a folder where a file is to be written")
    assert main(["finetune", "--images", str(tmp_path / "v.tif"), "--labels", str(tmp_path / "v.tif"),
                 "--out", str(tmp_path / "f/w.pt")]) == 2
    _one_line_error(capsys, "is a file, not a folder")


@pytest.mark.skipif(not _read_only_dir_available(), reason=f"{READ_ONLY} is writable here")
def test_a_read_only_out_is_refused_before_any_work(tmp_path, capsys, no_compute, monkeypatch):
    import napari_tubediff.training.finetune as ft
    import napari_tubediff.training.train as tr

    monkeypatch.setattr(ft, "finetune", lambda *a, **kw: pytest.fail("trained before the refusal"))
    monkeypatch.setattr(tr, "train_backbone", lambda *a, **kw: pytest.fail("trained before the refusal"))
    write_image(tmp_path / "v.tif", _prob())
    ro = f"{READ_ONLY}/tubediff-out"
    for args in (["refine", str(tmp_path / "v.tif"), "--out", ro],
                 ["refine", str(tmp_path), "--out", ro],
                 ["segment", str(tmp_path / "v.tif"), "--out", ro, "--backbone", "vesselness"],
                 ["train", "backbone", "--data", str(tmp_path), "--out", f"{ro}/w.pt"],
                 ["finetune", "--images", str(tmp_path / "v.tif"), "--labels", str(tmp_path / "v.tif"),
                  "--out", f"{ro}/w.pt"]):
        assert main(args) == 2, args
        _one_line_error(capsys, "is not writable", "choose another --out")


# ------------------------------------------------------------------- full disk, Ctrl-C

def test_a_full_disk_says_so_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    write_image(tmp_path / "v.tif", _prob())
    out = tmp_path / "out"

    def short_write(path, *a, **kw):  # what numpy's tofile says when the disk fills up
        with open(path, "wb") as f:
            f.write(b"II*\0partial")
        raise OSError("65536 requested and 14268 written")

    monkeypatch.setattr("tifffile.imwrite", short_write)
    assert main(["refine", str(tmp_path / "v.tif"), "--out", str(out), "--steps", "1"]) == 2
    err = _one_line_error(capsys, "the disk is full: could not write v_refined.tif", "free some space")
    assert "requested" not in err
    assert sorted(p.name for p in out.iterdir()) == ["v_mask.png"]  # complete, and no temporaries

    def enospc(path, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tifffile.imwrite", enospc)
    from napari_tubediff.data.io import DiskFullError

    with pytest.raises(DiskFullError, match="the disk is full"):
        write_image(out / "w.tif", _prob())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_not_enough_room_is_refused_before_any_work(tmp_path, capsys, no_compute, monkeypatch):
    import shutil

    from napari_tubediff.data import outputs

    write_image(tmp_path / "v.tif", _prob(shape=(64, 64)))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    assert main(["refine", str(tmp_path / "v.tif"), "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "the outputs need about 20.0 KB", "1000 B free")  # 64*64*(4 + 1) bytes


def test_ctrl_c_in_refine_file_prints_one_line_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    for k in range(2):
        write_image(tmp_path / f"v{k}.tif", _prob(k))
    out = tmp_path / "out"
    import tifffile

    real = tifffile.imwrite
    n = []

    def interrupted(path, *a, **kw):  # the second image is stopped halfway through its TIFF
        n.append(1)
        if len(n) == 2:
            with open(path, "wb") as f:
                f.write(b"II*\0half")
            raise KeyboardInterrupt
        return real(path, *a, **kw)

    monkeypatch.setattr("tifffile.imwrite", interrupted)
    assert main(["refine", str(tmp_path / "v0.tif"), str(tmp_path / "v1.tif"), "--out", str(out),
                 "--steps", "1"]) == 130
    err = capsys.readouterr().err
    assert _messages(err) == ["tubediff: interrupted: finished outputs are kept, no partial file is left"]
    assert "Traceback" not in err
    # the first image finished, the second left only its complete mask; nothing half-written
    assert sorted(p.name for p in out.iterdir()) == ["v0_mask.png", "v0_refined.tif", "v1_mask.png"]


def test_ctrl_c_in_refine_folder_prints_one_line_and_cleans_up(tmp_path, capsys, monkeypatch):
    import distributed

    from napari_tubediff.batch import run

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_image(src / "p.tif", _prob())
    real_client = run.make_client
    monkeypatch.setattr(run, "make_client", lambda *a, **kw: real_client(workers=1, processes=False))

    def interrupted(futures):
        # as a worker killed mid-write would leave it
        (out / ".p_refined.tif.ab12cd34.tif").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "as_completed", interrupted)
    assert main(["refine", str(src), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert _messages(err)[-1].startswith("tubediff: interrupted") and "Traceback" not in err
    # the planted temporary is gone; whatever the worker finished before the interrupt is whole
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    for p in out.iterdir():
        assert read_record(p)["settings"]["steps"] == 30  # the default with Hessian directions


# ------------------------------------------------------------------- --help, backbones from files

def _subparsers():
    import argparse

    from napari_tubediff.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_help_documents_every_option_with_its_default():
    import argparse

    for name, sp in _subparsers().items():
        text = " ".join(sp.format_help().split())
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
                continue
            assert a.help, f"{name} {a.option_strings or a.dest}: no help"
            if a.option_strings and a.default not in (None, False):
                assert f"default: {a.default}" in text or "default" in a.help, (name, a.option_strings)
        if name in ("segment", "refine", "train", "finetune", "demo", "bench"):
            assert "--overwrite" in text, name
    seg = _subparsers()["segment"].format_help()
    from napari_tubediff.models import available_backbones

    for b in available_backbones():
        assert f"{b}:" in seg
    assert "--backbone-file" in seg and ".pt2" in seg
    refine_help = " ".join(_subparsers()["refine"].format_help().split())
    assert "(default: images 30 with Hessian directions" in refine_help


def _tiny_net():
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return torch.sigmoid(self.conv(x))

    torch.manual_seed(0)
    return Tiny().eval()


def test_segment_with_a_torch_export_program_and_a_torchscript_file(tmp_path, capsys):
    import torch

    net = _tiny_net()
    dims = ({2: torch.export.Dim("h", min=4), 3: torch.export.Dim("w", min=4)},)
    torch.export.save(torch.export.export(net, (torch.zeros(1, 1, 16, 16),), dynamic_shapes=dims),
                      tmp_path / "mine.pt2")
    with pytest.warns(Warning):  # torch 2.13 deprecates TorchScript; still read
        torch.jit.script(net).save(str(tmp_path / "old.pt"))
    img = _prob(shape=(24, 20))
    write_image(tmp_path / "img.tif", img)
    from napari_tubediff.models.preprocess import preprocess

    with torch.no_grad():
        want = net(torch.from_numpy(preprocess(img))[None, None])[0, 0].numpy()
    for model, kind in (("mine.pt2", "exported"), ("old.pt", "torchscript")):
        out = tmp_path / kind
        assert main(["segment", str(tmp_path / "img.tif"), "--out", str(out),
                     "--backbone-file", str(tmp_path / model)]) == 0
        assert f"backbone {kind}" in capsys.readouterr().out
        np.testing.assert_allclose(read_image(out / "img_prob.tif"), want, atol=1e-6)
        assert read_record(out / "img_prob.tif")["settings"]["backbone"] == kind


def test_user_model_errors_are_one_line(tmp_path, capsys):
    write_image(tmp_path / "img.tif", _prob())
    assert main(["segment", str(tmp_path / "img.tif"), "--out", str(tmp_path / "o"), "--backbone",
                 "torchscript"]) == 2
    _one_line_error(capsys, "needs your model file: --backbone-file")
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    assert main(["segment", str(tmp_path / "img.tif"), "--out", str(tmp_path / "o"), "--backbone-file",
                 str(tmp_path / "junk.pt2")]) == 2
    _one_line_error(capsys, "cannot load junk.pt2 as a torch.export program")
    assert main(["segment", str(tmp_path / "img.tif"), "--out", str(tmp_path / "o"), "--backbone", "unet",
                 "--backbone-file", str(tmp_path / "junk.pt2")]) == 2
    _one_line_error(capsys, "--backbone-file goes with")
    assert not (tmp_path / "o").exists()


def test_bench_and_demo_outputs_are_planned_too(tmp_path, capsys):
    mine = tmp_path / "b.json"
    mine.write_text('{"my": "notes"}')
    assert main(["bench", "--cases", "drive", "--backends", "numpy", "--min-time", "0",
                 "--json", str(mine)]) == 2
    _one_line_error(capsys, "b.json exists")
    assert json.loads(mine.read_text()) == {"my": "notes"}
    (tmp_path / "d").mkdir()
    (tmp_path / "d/image.png").write_bytes(b"my picture")
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "48", "--steps", "1"]) == 2
    _one_line_error(capsys, "image.png exists")
    assert main(["demo", "--out", str(tmp_path / "d2"), "--size", "48", "--steps", "1"]) == 0
    assert main(["demo", "--out", str(tmp_path / "d2"), "--size", "48", "--steps", "2"]) == 0  # its own


def test_segment_writes_a_volume_as_tiff_only(tmp_path, capsys):
    from napari_tubediff.models import get_backbone

    vol = np.zeros((10, 16, 16), np.float32)
    vol[:, 7:9, 2:14] = 1.0
    write_image(tmp_path / "vol.tif", vol)
    assert main(["segment", str(tmp_path / "vol.tif"), "--out", str(tmp_path / "o"), "--backbone",
                 "vesselness"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["vol_prob.tif"]  # no PNG of a volume
    want = get_backbone("vesselness").predict(vol)
    np.testing.assert_array_equal(read_image(tmp_path / "o/vol_prob.tif"), want)


def test_a_program_exported_for_one_size_says_how_to_export(tmp_path, capsys):
    import torch

    torch.export.save(torch.export.export(_tiny_net(), (torch.zeros(1, 1, 16, 16),)), tmp_path / "fixed.pt2")
    write_image(tmp_path / "img.tif", _prob(shape=(24, 20)))
    assert main(["segment", str(tmp_path / "img.tif"), "--out", str(tmp_path / "o"), "--backbone-file",
                 str(tmp_path / "fixed.pt2")]) == 2
    _one_line_error(capsys, "fixed.pt2 does not take this image (shape (24, 20))", "dynamic_shapes")
    assert not (tmp_path / "o/img_prob.tif").exists()
