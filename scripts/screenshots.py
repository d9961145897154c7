"""Regenerate the user guide's screenshots (docs/images/*.png) from the real plugin.

    xvfb-run -a python scripts/screenshots.py [--out docs/images] [--only 3d]
    xvfb-run -a python scripts/screenshots.py --dock --only 2d   # the "Curate vessels" dock

With ``--dock`` every stage is shown on its tab of the one "Curate vessels" dock (the
window is 1000 pixels high, as on a 1080-pixel screen) and the files are named
``dock_*.png``; without it, each stage's own panel is docked alone.

Each stage of the annotator's loop is driven through the panels' own buttons, as in the
GUI tests, and the whole window is captured (``viewer.screenshot(canvas_only=False)``).
PNGs are saved with a 256-colour palette to stay small (< 300 KB each).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-tubediff"


def settle(seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait(widget, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while getattr(widget, "_worker", None) is not None:
        if time.monotonic() > end:
            raise TimeoutError(f"{type(widget).__name__} did not finish in {timeout} s")
        QApplication.processEvents()
        time.sleep(0.01)
    settle()


#: The Curate dock's step of each panel's dock name.
STEP = {"Bridged gaps": "gaps"}


class Shooter:
    def __init__(self, viewer, out: Path, dock: bool = False):
        self.viewer, self.out = viewer, out
        self.docks = {}
        self.curate = viewer.window.add_plugin_dock_widget(PLUGIN, "Curate vessels")[1] if dock else None

    def panel(self, name):
        """Dock ``name`` and show only it on the right (or its tab of the Curate dock)."""
        if self.curate is not None:
            step = STEP.get(name, name.lower())
            self.curate.show_step(step)
            settle()
            return self.curate.panels[step]
        if name not in self.docks:
            self.docks[name] = self.viewer.window.add_plugin_dock_widget(PLUGIN, name)
        for n, (dock, _) in self.docks.items():
            dock.setVisible(n == name)
        settle()
        return self.docks[name][1]

    def shot(self, name: str) -> Path:
        settle(0.5)
        rgba = self.viewer.screenshot(canvas_only=False, flash=False)
        path = self.out / f"{'dock_' if self.curate is not None else ''}{name}.png"
        img = Image.fromarray(np.asarray(rgba)[..., :3]).quantize(256, method=Image.Quantize.MEDIANCUT)
        img.save(path, optimize=True)
        print(f"{path}  {path.stat().st_size // 1024} KB")
        return path


def loop_2d(viewer, s: Shooter) -> None:
    """Stages 1-7: the annotator's loop on the 2D samples."""
    # 1. the retina-like sample, segmented through its green channel
    viewer.open_sample(PLUGIN, "retina")
    seg = s.panel("Segment")
    seg.fov.value = viewer.layers["retina fov"]
    seg.run_button.native.click()
    wait(seg)
    viewer.layers["probability"].opacity = 0.8
    viewer.reset_view()
    s.shot("01_segment_retina")

    # 2. the synthetic sample (a probability with breaks): directions
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "synthetic")
    prob = viewer.layers["synthetic probability"]
    dirs = s.panel("Directions")
    dirs.layer.value = prob
    dirs.step.value = 5
    dirs.run_button.native.click()
    wait(dirs)
    prob.opacity = 0.35
    viewer.layers["directions"].edge_width = 1.5
    cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    cam.center, cam.zoom = (110, 130), 6.0     # a crossing of vessels
    s.shot("02_directions")
    prob.opacity = 1.0
    viewer.layers["directions"].visible = False

    # 3. diffusion: a run of 30 steps, then scrub back to an early snapshot
    viewer.reset_view()
    diff = s.panel("Diffusion")
    diff.layer.value = prob
    # the sample's breaks have no backbone evidence: the default, gated+dti, bridges none of
    # them (0 gaps for the Gaps tab to show), the method description's PDE 3 (core.refine +
    # core.gaps.bridges on synthetic_vessels((256, 256), seed=0), 30 steps)
    diff.method.value = "faithful"
    diff.steps.value = 30
    diff.run_button.native.click()
    wait(diff)
    s.shot("03_diffusion_done")
    diff.scrubber.value = 0                     # the panel's step slider, back to step 0
    s.shot("04_diffusion_scrub")
    diff.scrubber.value = diff.scrubber.max     # the newest step: the refined layer the next panels use
    viewer.layers["refined"].visible = False

    # 4. bridged gaps: find them, go to the largest, reject it
    gaps = s.panel("Bridged gaps")
    gaps.probability.value = prob
    gaps.refined.value = viewer.layers["refined"]
    gaps.run_button.native.click()
    wait(gaps)
    gaps.list.setCurrentRow(0)
    settle()
    s.shot("05_gaps_review")

    # 5. accept into the curated labels (the largest gap rejected)
    gaps.reject_button.native.click()
    acc = s.panel("Accept")
    acc.accept_button.native.click()
    settle()
    for name in ("refined", "bridged", "synthetic probability"):
        viewer.layers[name].visible = False
    viewer.layers["curated"].opacity = 0.9
    viewer.reset_view()
    s.shot("06_accept")

    # 6. metrics of three layers against the truth
    met = s.panel("Metrics")
    met.predictions.value = [prob, viewer.layers["refined"], viewer.layers["curated"]]
    met.truth.value = viewer.layers["synthetic truth"]
    met.run_button.native.click()
    wait(met)
    s.shot("07_metrics")

    # 7. fine-tune the refiner on the corrected labels of the retina-like photograph, in a box
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "retina")
    box = viewer.add_shapes([np.array([[40, 40], [216, 216]])], shape_type="rectangle",
                            name="corrected part", edge_color="yellow", face_color="transparent",
                            edge_width=2)
    ft = s.panel("Fine-tune")
    ft.image.value = viewer.layers["retina"]
    ft.labels.value = viewer.layers["retina truth"]
    ft.region.value = box
    ft.fov.value = viewer.layers["retina fov"]
    ft.updates.value = 60
    ft.train_button.native.click()
    wait(ft)
    viewer.reset_view()
    s.shot("08_finetune")


def volume_3d(viewer, s: Shooter) -> None:
    """Stage 8: the 3D sample in napari's 3D view: directions, then the diffusion."""
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "synthetic3d")
    prob = viewer.layers["synthetic probability"]
    viewer.layers["synthetic volume"].visible = False
    dirs = s.panel("Directions")
    dirs.layer.value = prob
    dirs.run_button.native.click()
    wait(dirs)
    dirs.view3d.value = True                    # the panel's "3D view" box
    viewer.reset_view()
    cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    cam.angles = (-20, 30, 110)
    viewer.layers["directions"].edge_width = 2.0
    s.shot("09_volume_directions")
    viewer.layers["directions"].visible = False
    diff = s.panel("Diffusion")
    diff.layer.value = prob
    diff.steps.value = 30
    diff.run_button.native.click()
    wait(diff)
    prob.opacity = 0.5                          # the refined field (green) stands out where it bridged
    viewer.reset_view()                         # the whole volume, then the same tilt as above
    cam.angles = (-20, 30, 110)
    s.shot("10_volume_diffusion")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    ap.add_argument("--only", choices=["all", "2d", "3d"], default="all",
                    help="the 2D loop's stages (1-7), the volume's (8), or all")
    ap.add_argument("--dock", action="store_true", help="the stages on the Curate vessels dock's tabs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-tubediff")
    viewer.window._qt_window.resize(*((1600, 1000) if args.dock else (1280, 800)))
    s = Shooter(viewer, out, dock=args.dock)

    if args.only in ("all", "2d"):
        loop_2d(viewer, s)
    if args.only in ("all", "3d"):
        volume_3d(viewer, s)
    viewer.close()


if __name__ == "__main__":
    main()
