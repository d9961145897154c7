import json
import shutil
import subprocess
import sys

import pytest

import napari_tubediff
from napari_tubediff.cli import main


def test_importing_the_package_pulls_in_neither_napari_nor_qt_nor_torch():
    code = ("import sys, napari_tubediff, napari_tubediff.core, napari_tubediff.data.synthetic, "
            "napari_tubediff.data.io, napari_tubediff.sample_data; "
            "napari_tubediff.diffuse; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy', 'magicgui', 'torch', "
            "'dask', 'distributed', 'zarr')); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_sources_do_not_mention_napari_qt_or_dask():
    from pathlib import Path

    core = Path(napari_tubediff.__file__).parent / "core"
    for f in core.glob("*.py"):
        text = f.read_text()
        # dask lives in napari_tubediff.batch; the core stays numpy/scipy/scikit-image/torch
        for name in ("import napari", "from napari", "qtpy", "PyQt", "magicgui", "import dask", "from dask",
                     "distributed", "zarr"):
            assert name not in text, f"{f.name} mentions {name}"


def test_public_api():
    for name in ("fd_weights", "diffusion_tensor", "diffuse", "iter_diffusion", "estimate_directions"):
        assert callable(getattr(napari_tubediff, name))


@pytest.mark.skipif(shutil.which("npe2") is None, reason="npe2 is in the dev extra")
def test_manifest_validates_with_imports():
    out = subprocess.run(["npe2", "validate", "napari-tubediff", "--imports"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_console_script_help():
    exe = shutil.which("tubediff")
    assert exe, "the tubediff console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    for cmd in ("demo", "gui", "bench"):
        assert cmd in out.stdout


def test_demo_reports_reconnection_and_writes_outputs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "192", "--steps", "20"]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    raw, refined = rows[1], rows[2]
    assert refined["components"] < raw["components"]
    assert refined["gap_pixels_filled"] > raw["gap_pixels_filled"] + 0.3
    for name in ("image", "probability", "refined", "refined_mask", "truth"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert "components" in capsys.readouterr().out


def test_bench_command_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--cases", "drive", "--backends", "numba,numpy", "--min-time", "0",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    row = res["results"]["drive"]
    assert row["numba"] > 0 and row["numpy"] > 0
    assert "numpy/numba" in capsys.readouterr().out


def test_cli_errors_are_one_line_not_a_traceback(capsys):
    assert main(["bench", "--backends", "fortran", "--min-time", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tubediff: error:") and "Traceback" not in err
    assert main(["demo", "--dt", "-1"]) == 2
    assert "dt must be" in capsys.readouterr().err
