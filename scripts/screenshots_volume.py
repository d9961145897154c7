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
from qtpy.QtCore import Qt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import Shooter, settle, wait  # noqa: E402


def narrow(viewer, s: Shooter, name: str, width: int = 440) -> None:
    """Keep the panel ``name`` at ``width`` pixels, so that the canvas shows the volume."""
    viewer.window._qt_window.resizeDocks([s.docks[name][0]], [width], Qt.Horizontal)
    settle()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="a volume's folder: its first TIFF under images/ is opened (the user "
                                   "guide's shots: VesselExpress_napari_liver, images/Raw_liver_1.tiff)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    volume = tifffile.imread(sorted((Path(args.folder) / "images").glob("*.tif*"))[0])

    viewer = napari.Viewer(title="napari-tubediff")
    viewer.window._qt_window.resize(1280, 800)
    s = Shooter(viewer, out)
    name = "liver (light-sheet)" if "liver" in Path(args.folder).name else Path(args.folder).name
    layer = viewer.add_image(volume, name=name, colormap="gray")
    seg = s.panel("Segment")
    seg.status.native.setWordWrap(True)  # the status line is long: wrap it, keep the canvas wide
    narrow(viewer, s, "Segment")
    seg.image.value = layer
    seg.run_button.native.click()
    wait(seg)
    narrow(viewer, s, "Segment")
    # one plane: the image under the probability (magma, additive), vessels filled
    viewer.dims.set_current_step(0, volume.shape[0] // 2)
    viewer.layers["probability"].opacity = 0.6
    viewer.reset_view()
    s.shot("11_real_volume_segment")
    diff = s.panel("Diffusion")
    diff.status.native.setWordWrap(True)
    narrow(viewer, s, "Diffusion")
    diff.layer.value = viewer.layers["probability"]
    diff.steps.value = 10
    diff.run_button.native.click()
    wait(diff)
    narrow(viewer, s, "Diffusion")
    # the refined field's 0.5 surface in the 3D view, seen from above and tilted
    layer.visible = False
    viewer.layers["probability"].visible = False
    refined = viewer.layers["refined"]
    refined.rendering, refined.iso_threshold = "iso", 0.5
    diff.view3d.value = True                    # the panel's "3D view" box
    viewer.reset_view()
    viewer.camera.angles = (0, 25, 80)
    s.shot("12_real_volume_diffusion")
    viewer.close()


if __name__ == "__main__":
    main()
