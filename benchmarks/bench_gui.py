"""GUI responsiveness while the panels work: a 10 ms timer probe in a real napari.

Run from the repository root, under a display (a real one, or Xvfb):

    xvfb-run -a python benchmarks/bench_gui.py                 # DRIVE 21_training if present
    xvfb-run -a python benchmarks/bench_gui.py --steps 200 --updates 5 --json out.json
    xvfb-run -a python benchmarks/bench_gui.py --stages diffusion --profile diffusion
    xvfb-run -a python benchmarks/bench_gui.py --slow-events 120     # name the long events
    xvfb-run -a python benchmarks/bench_gui.py --again    # each stage twice: the loop's repeats
    xvfb-run -a python benchmarks/bench_gui.py --layer-costs    # napari's own work per layer

A QTimer fires every 10 ms in napari's event loop and records when it actually fires. While
a stage runs, its work is in a worker thread and the event loop only takes its frames in
and draws them; an interval far over 10 ms is a stall the annotator feels (a click or a
pan answered late). Each stage is driven through the "Curate vessels" dock's panels as a
person would (choose layers, click the button) on a DRIVE-sized image; the click is made
inside the probed event loop, so what its handler does (adding layers) counts too:

    Segment     the shipped U-Net on the photograph (FOV: the DRIVE mask)
    Directions  on the probability, default grid
    Diffusion   --steps steps (default 200), every step drawn as the panel throttles it
    Fine-tune   --updates updates (default 5) on the DRIVE manual labels as 'curated'

Per stage it prints the stage's wall time, the median, 99th percentile and maximum tick
interval (ms) and the percentage of ticks over 50 ms. The image is
``data/DRIVE/training/images/21_training.tif`` (or ``--drive ROOT``) when
present, else the synthetic fundus photograph (``data.fundus.synthetic_fundus``) at DRIVE's
size, 584 x 565.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

DRIVE = Path("data/DRIVE")
SHAPE = (584, 565)  # a DRIVE photograph


def load(root: Path):
    """(name, rgb image, truth, fov) of DRIVE's 21_training, or the synthetic fundus at its size."""
    img = root / "training" / "images" / "21_training.tif"
    if img.exists():
        from napari_tubediff.data.drive import binary_mask
        from napari_tubediff.data.io import read_image

        truth = binary_mask(read_image(root / "training" / "1st_manual" / "21_manual1.gif"))
        fov = binary_mask(read_image(root / "training" / "mask" / "21_training_mask.gif"))
        return "21_training (DRIVE)", read_image(img), truth, fov
    from napari_tubediff.data.fundus import synthetic_fundus

    f = synthetic_fundus(SHAPE, seed=0)
    return "synthetic fundus 584 x 565", f.image, f.truth, f.fov


class Probe:
    """Timestamps of a 10 ms QTimer's ticks in the GUI thread."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def run_until(self, start, done, timeout: float) -> tuple[list[float], float]:
        """Run the event loop, call ``start()`` in it (a click: its handler's time is measured
        too), then run until ``done()``; the tick intervals (ms) and the wall time (s)."""
        from qtpy.QtCore import QEventLoop, QTimer

        self.ticks = []
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(20)
        end = time.monotonic() + timeout
        started = []
        check.timeout.connect(lambda: ((started and done()) or time.monotonic() > end) and loop.quit())

        def press():
            started.append(True)
            start()

        began = time.perf_counter()
        self.timer.start()
        check.start()
        QTimer.singleShot(50, press)  # once the probe ticks
        loop.exec()
        check.stop()
        self.timer.stop()
        wall = time.perf_counter() - began
        if time.monotonic() > end:
            raise TimeoutError(f"the stage did not finish in {timeout:.0f} s")
        return list(np.diff(self.ticks) * 1000.0), wall


class SlowEvents:
    """An application event filter that names the Qt events after which the GUI thread was busy long.

    The filter sees when each event starts: a gap of more than ``ms`` between two starts
    is the first event's handling (with the probe ticking every 10 ms, idle gaps are short).
    An event handled inside another (``processEvents``) starts a new gap.
    """

    def __new__(cls, ms: float):
        from qtpy.QtCore import QEvent, QObject

        class _Filter(QObject):
            def __init__(self):
                super().__init__()
                self.limit = ms / 1000
                self.t0 = self.last = time.perf_counter()
                self.what = ""

            def eventFilter(self, obj, ev):  # noqa: N802 (Qt's name)
                now = time.perf_counter()
                if now - self.last > self.limit:
                    print(f"  {now - self.t0:8.2f}s {1000 * (now - self.last):6.0f} ms after {self.what}",
                          file=sys.stderr, flush=True)
                kind = QEvent.Type(ev.type())
                self.last, self.what = now, f"{type(obj).__name__} {getattr(kind, 'name', kind)}"
                return False

        return _Filter()


def layer_costs(viewer, image: np.ndarray) -> dict:
    """Milliseconds the GUI thread spends on napari's layer work the panels cause, each with
    the events and repaint it sets off: adding a hidden 2D Image layer and showing it, the
    Diffusion panel's refined layer (added with its look, then new data in place), a history
    stack (its new time slider: what the Diffusion panel no longer makes while a run goes),
    growing or shrinking the stack (the slider shown or hidden), a Vectors layer (napari
    imports pandas for its features table the first time: compare the second one)."""
    from qtpy.QtWidgets import QApplication

    def timed(f) -> float:
        t = time.perf_counter()
        f()
        for _ in range(5):
            QApplication.processEvents()
        return round(1000 * (time.perf_counter() - t), 1)

    field = np.random.default_rng(0).random(image.shape[:2]).astype(np.float32)
    vec = np.zeros((1690, 2, 2), np.float32)
    vec[:, 0] = np.random.default_rng(1).random((1690, 2)) * np.array(image.shape[:2])
    vec[:, 1] = 3
    from napari_tubediff.widgets.diffusion import PLANE_LOOK

    out, lay = {}, {}
    out["add image hidden"] = timed(lambda: lay.setdefault("i", viewer.add_image(field, visible=False)))
    out["show image"] = timed(lambda: setattr(lay["i"], "visible", True))
    # the Diffusion panel's one refined layer: added with its final look, then new data in place
    out["add refined (final look) hidden"] = timed(lambda: lay.setdefault(
        "r", viewer.add_image(field, visible=False, contrast_limits=(0, 1), **PLANE_LOOK)))
    out["show refined"] = timed(lambda: setattr(lay["r"], "visible", True))
    out["refined: new data in place"] = timed(lambda: setattr(lay["r"], "data", field * 0.5))
    out["refined: new data, hidden"] = timed(lambda: (setattr(lay["r"], "visible", False),
                                                       setattr(lay["r"], "data", field * 0.25)))
    lay["r"].visible = True
    out["add history (2 snapshots) hidden"] = timed(
        lambda: lay.setdefault("h", viewer.add_image(np.stack([field] * 2), visible=False)))
    out["show history"] = timed(lambda: setattr(lay["h"], "visible", True))
    out["history 2 -> 3"] = timed(lambda: setattr(lay["h"], "data", np.stack([field] * 3)))
    out["history 3 -> 1 (slider hidden)"] = timed(lambda: setattr(lay["h"], "data", field[None]))
    out["history 1 -> 2 (slider shown)"] = timed(lambda: setattr(lay["h"], "data", np.stack([field] * 2)))
    out["add vectors hidden"] = timed(lambda: lay.setdefault("v", viewer.add_vectors(vec, visible=False)))
    out["show vectors"] = timed(lambda: setattr(lay["v"], "visible", True))
    out["add vectors again hidden"] = timed(
        lambda: lay.setdefault("w", viewer.add_vectors(vec, visible=False)))
    for layer in lay.values():
        viewer.layers.remove(layer)
    return out


def figures(intervals: list[float], wall: float) -> dict:
    a = np.asarray(intervals)
    return {"wall_s": round(wall, 1), "ticks": int(a.size), "median_ms": round(float(np.median(a)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "max_ms": round(float(a.max()), 1),
            "over_50ms_pct": round(100.0 * float((a > 50).mean()), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drive", type=Path, default=DRIVE, help="DRIVE root (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=200, help="diffusion steps (default 200)")
    ap.add_argument("--updates", type=int, default=5, help="fine-tuning updates (default 5)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per stage at most")
    ap.add_argument("--stages", default="segment,directions,diffusion,fine-tune",
                    help="comma list of the stages to run (Segment always runs: the others need its "
                         "probability)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--layer-costs", action="store_true",
                    help="only time napari's layer work (adding, showing, a time slider appearing) in "
                         "this viewer, and exit")
    ap.add_argument("--again", action="store_true",
                    help="run the stages a second time (rows '... again'): the annotator's loop repeats "
                         "them, and a second run adds no layer (Diffusion: Reset, then Run)")
    ap.add_argument("--profile", action="append", default=[], metavar="STAGE",
                    choices=["segment", "directions", "diffusion", "fine-tune"],
                    help="print where the GUI thread spends its time during STAGE (cProfile, by own "
                         "time; repeatable)")
    ap.add_argument("--profile-dump", metavar="DIR",
                    help="also write each profiled stage's cProfile stats to DIR/STAGE.prof (for pstats)")
    ap.add_argument("--slow-events", type=float, metavar="MS",
                    help="print every Qt event the GUI thread took longer than MS ms to handle (what "
                         "received it, the event type, the Python function at the top of its work)")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    name, image, truth, fov = load(args.drive)
    viewer = napari.Viewer(title="bench_gui")
    viewer.window._qt_window.resize(1600, 1000)
    viewer.add_image(image, name="image", rgb=image.ndim == 3)
    viewer.add_labels(fov.astype(np.uint8), name="fov", opacity=0.2, visible=False)
    viewer.add_labels(truth.astype(np.uint8), name="curated", opacity=0.5, visible=False)
    if args.layer_costs:  # before the dock: pandas is not preloaded yet, as at a panel's first layer
        for _ in range(20):
            QApplication.processEvents()
        for what, ms in layer_costs(viewer, image).items():
            print(f"{what:<36} {ms:>8.1f} ms", flush=True)
        viewer.close()
        return 0
    dock = viewer.window.add_plugin_dock_widget("napari-tubediff", "Curate vessels")[1]
    p = dock.panels
    for _ in range(20):
        QApplication.processEvents()
    probe = Probe()
    if args.slow_events:
        watch = SlowEvents(args.slow_events)
        QApplication.instance().installEventFilter(watch)
    rows = {}

    stages = set(args.stages.split(",")) | {"segment"}

    def stage(label, step, panel, press):
        if step not in stages:
            return
        dock.show_step(step)
        prof = None
        if step in args.profile:
            import cProfile

            prof = cProfile.Profile()  # the GUI thread only: the worker thread is not profiled
            prof.enable()
        intervals, wall = probe.run_until(press, lambda: not panel.busy, args.timeout)
        if prof is not None:
            import pstats

            prof.disable()
            if args.profile_dump:
                Path(args.profile_dump).mkdir(parents=True, exist_ok=True)
                prof.dump_stats(str(Path(args.profile_dump) / f"{step}.prof"))
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        rows[label] = figures(intervals, wall)
        rows[label]["intervals_ms"] = [round(x, 1) for x in intervals]  # for a closer look (--json)
        rows[label]["status"] = panel.status.value
        r = rows[label]
        print(f"{label:<28} {r['wall_s']:>7.1f} {r['median_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['max_ms']:>8.1f} {r['over_50ms_pct']:>8.1f}   {r['status']}", flush=True)

    print(f"image: {name} {image.shape}; napari {napari.__version__}; {os.cpu_count()} CPUs; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'stage':<28} {'wall s':>7} {'median':>8} {'p99':>8} {'max':>8} {'% >50ms':>8}   status")
    seg = p["segment"]
    seg.image.value = viewer.layers["image"]
    seg.fov.value = viewer.layers["fov"]
    seg.backbone.value = "unet"
    d, f, t = p["directions"], p["diffusion"], p["fine-tune"]
    for again in ((False, True) if args.again else (False,)):
        tag = " again" if again else ""
        stage(f"Segment (unet){tag}", "segment", seg, seg.run_button.native.click)
        prob = viewer.layers["probability"]
        d.layer.value = prob
        stage(f"Directions{tag}", "directions", d, d.run_button.native.click)
        f.layer.value = prob
        f.steps.value = args.steps
        if again:
            f.reset()
        stage(f"Diffusion ({args.steps} steps){tag}", "diffusion", f, f.run_button.native.click)
        t.image.value = viewer.layers["image"]
        t.labels.value = viewer.layers["curated"]
        t.fov.value = viewer.layers["fov"]
        t.updates.value = args.updates
        stage(f"Fine-tune ({args.updates} updates){tag}", "fine-tune", t, t.train_button.native.click)
    viewer.close()
    if args.json:
        Path(args.json).write_text(json.dumps({"image": name, "machine": platform.platform(),
                                               "cpus": os.cpu_count(), "stages": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
