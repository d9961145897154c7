"""The user guide's screenshots of the 3D loop on a real volume (docs/images/11_*.png, 12_*.png).

    xvfb-run -a python scripts/screenshots_volume.py data/volumes/VesselExpress_napari_liver

The light-sheet liver crop (docs/data.md) is opened, segmented by the Segment panel with its
defaults (a volume: backbone region3d, vessel radius measured), then refined by the Diffusion
panel (10 steps) and shown in napari's 3D view, all through the panels' own buttons
(`scripts/screenshots.py`'s helpers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import napari
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import Shooter, wait  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="the VesselExpress_napari_liver folder (images/Raw_liver_1.tiff)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    volume = tifffile.imread(Path(args.folder) / "images" / "Raw_liver_1.tiff")

    viewer = napari.Viewer(title="napari-tubediff", ndisplay=3)
    viewer.window._qt_window.resize(1280, 800)
    s = Shooter(viewer, out)
    layer = viewer.add_image(volume, name="liver (light-sheet)", colormap="gray", rendering="mip")
    seg = s.panel("Segment")
    seg.image.value = layer
    seg.run_button.native.click()
    wait(seg)
    layer.visible = False
    cam = viewer.camera
    viewer.reset_view()
    cam.angles = (-15, 25, 100)
    s.shot("11_real_volume_segment")
    diff = s.panel("Diffusion")
    diff.layer.value = viewer.layers["probability"]
    diff.steps.value = 10
    diff.run_button.native.click()
    wait(diff)
    viewer.layers["probability"].opacity = 0.5
    cam.angles = (-15, 25, 100)
    s.shot("12_real_volume_diffusion")
    viewer.close()


if __name__ == "__main__":
    main()
