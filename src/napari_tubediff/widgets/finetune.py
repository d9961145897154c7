"""Fine-tune panel: train the refiner on the corrected labels on screen.

Thin: it gathers the image (2D, or a 3D volume: the 3D U-Net + 3D refiner pair), the
corrected Labels layer and an optional region (a Shapes layer's shapes or a Labels mask),
runs `training.finetune.finetune` in a worker, draws the loss as it falls, and makes the
new weights the session's active refiner (`models.session`), which the Directions and
Diffusion panels use at once.

Training runs in a separate process (`workers.process.run_in_child`), so its Python work
never holds the GUI's Python lock. Each training update is a frame of the panel's job
(`_common.Job`): the training loop posts it and waits until the panel has drawn it;
Cancel ends the process at once, and the previous weights stay.
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QFileDialog, QSizePolicy, QWidget

from ..models import session
from ..training.finetune import FinetuneConfig, default_pair
from ..workers import tasks
from ..workers.process import prewarm, release, run_in_child
from ._common import CANCELLED, RUNNING, Panel, QuietSlot, follow_layers, layers_of, worker_threads
from .segment import follow_fov


class LossCurve(QWidget):
    """The training loss, drawn as it arrives (a polyline, scaled to the panel)."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def clear(self):
        self.losses = []
        self.update()

    def add(self, loss: float):
        """Add a point (drawn at the next repaint: call ``update()``)."""
        self.losses.append(float(loss))

    def paintEvent(self, _event):  # noqa: N802 (Qt's name)
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor(30, 30, 34))
        if len(self.losses) >= 2:
            lo, hi = min(self.losses), max(self.losses)
            span = (hi - lo) or 1.0
            n = len(self.losses) - 1
            pts = [QPointF(4 + (w - 8) * i / n, h - 4 - (h - 8) * (v - lo) / span)
                   for i, v in enumerate(self.losses)]
            p.setPen(QPen(QColor(240, 160, 60), 1.5))
            for a, b in zip(pts, pts[1:], strict=False):
                p.drawLine(a, b)
            p.setPen(QColor(200, 200, 200))
            p.drawText(6, 14, f"loss {self.losses[-1]:.4f} (from {self.losses[0]:.4f})")
        p.end()


def region_mask(layer, shape: tuple[int, ...]) -> np.ndarray | None:
    """A bool mask from a Shapes layer (union of its shapes) or a Labels layer (> 0)."""
    if layer is None:
        return None
    if isinstance(layer, napari.layers.Shapes):
        if len(layer.data) == 0:
            raise ValueError(f"'{layer.name}' has no shapes: draw a rectangle around the corrected part")
        return np.asarray(layer.to_masks(mask_shape=shape)).any(axis=0)
    mask = np.asarray(layer.data) > 0
    if mask.shape != shape:
        raise ValueError(f"region '{layer.name}' {mask.shape} and image {shape} differ in shape")
    return mask


def _finetune_job(image, labels, region, fov, *, refiner, backbone, cfg, gate):
    """Worker body: `training.finetune.finetune` in a separate process (`workers.tasks.finetune`
    through `workers.process.run_in_child`), each update posted through ``gate``
    (`_common.Gate`: the training goes on once the panel has drawn it); Cancel ends the
    process at once. The training's Python work and torch's imports then never hold the
    GUI process's Python lock."""
    result = run_in_child(tasks.finetune, image, labels, region, fov, refiner=tasks.pack(refiner),
                          backbone=tasks.pack(backbone), cfg=cfg, on_frame=gate.post,
                          should_stop=lambda: gate.cancelled, threads=worker_threads())
    if result is not None:
        result.refiner, result.backbone = tasks.unpack(result.refiner), tasks.unpack(result.backbone)
    return result


def _metrics_line(name: str, m: dict) -> str:
    return f"{name}: Dice {m['dice']:.4f}  clDice {m['cldice']:.4f}  VCA {m['vca']:.3f}"


class FinetuneWidget(Panel):
    """Dock widget: image + corrected labels (+ region) -> fine-tuned refiner."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.unit = "update"
        d = FinetuneConfig()
        self.image = ComboBox(label="image", choices=lambda _w: layers_of(viewer, napari.layers.Image),
                              tooltip="the image the labels belong to (RGB: green channel)")
        self.labels = ComboBox(label="corrected labels",
                               choices=lambda _w: layers_of(viewer, napari.layers.Labels),
                               tooltip="your corrected vessel labels (> 0 is vessel), e.g. 'curated'")
        kinds = (napari.layers.Shapes, napari.layers.Labels)
        self.region = ComboBox(label="region", nullable=True, value=None,
                               choices=lambda _w: layers_of(viewer, *kinds),
                               tooltip="optional: only these pixels' labels are trusted (Shapes or Labels)")
        self.fov = ComboBox(label="field of view", nullable=True, value=None,
                            choices=lambda _w: layers_of(viewer, napari.layers.Labels),
                            tooltip="optional (fundus photographs): the backbone standardises inside it")
        self.updates = SpinBox(value=d.updates, min=1, max=10000, label="updates")
        self.lr = FloatSpinBox(value=d.lr, min=1e-5, max=1.0, step=1e-3, label="learning rate")
        self.loss = ComboBox(choices=["cldice", "bce", "dice"], value=d.loss, label="loss",
                             tooltip="cldice: (1 - a)(1 - Dice) + a (1 - soft clDice), a = 0.5")
        self.tune_backbone = CheckBox(value=False, label="also the U-Net's last layers",
                                      tooltip="train the backbone's last decoder block and output "
                                              "layer too (the Segment panel then uses it)")
        self.train_button = PushButton(text="Fine-tune")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.save_button = PushButton(text="Save weights...")
        self.load_button = PushButton(text="Load weights...")
        self.reset_button = PushButton(text="Reset to shipped weights")
        self.status = Label(value="")
        self.note = f"active refiner: {session.source()}"
        self.scores = Label(value="")
        self.extend([self.image, self.labels, self.region, self.fov, self.updates, self.lr, self.loss,
                     self.tune_backbone, self.train_button, self.cancel_button, self.save_button,
                     self.load_button, self.reset_button, self.status, self.scores])
        self.curve = LossCurve()
        self.native.layout().addWidget(self.curve)
        follow_layers(viewer, self.image, self.region, self.fov)
        follow_fov(self, viewer, self.fov)  # a DRIVE *_mask, a "fov" layer
        follow_layers(viewer, self.labels, prefer="curated")  # the Accept panel's layer, not the truth
        self.train_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.save_button.changed.connect(self._save_clicked)
        self.load_button.changed.connect(self._load_clicked)
        self.reset_button.changed.connect(self.reset)
        self.refresh()
        prewarm(worker_threads())  # the process training runs in: torch loads there meanwhile
        self.native.destroyed.connect(QuietSlot(release))  # the viewer closes: no idle process kept

    # -- training -----------------------------------------------------------------------
    def _inputs(self):
        img, lab = self.image.value, self.labels.value
        if img is None or lab is None:
            show_error("Choose the image and its corrected Labels layer (e.g. 'curated').")
            return None
        image = np.asarray(img.data)
        shape = image.shape[:-1] if img.rgb else image.shape
        if len(shape) not in (2, 3):
            show_error(f"'{img.name}' is {len(shape)}D: fine-tuning takes a 2D image or a 3D volume.")
            return None
        if len(shape) == 3 and self.tune_backbone.value:
            # the session holds one (2D) U-Net; the CLI writes a tuned 3D U-Net to a file
            show_error("The panel fine-tunes the 3D refiner only: untick 'also the U-Net's last layers', "
                       "or use tubediff finetune --tune-backbone for a volume.")
            return None
        try:
            region = region_mask(self.region.value, shape)
            # no FOV layer: found, as Segment does ("find FOV"); volumes have none
            fov = region_mask(self.fov.value, shape) if self.fov.value is not None else "auto"
        except ValueError as e:
            show_error(str(e))
            return None
        return image, np.asarray(lab.data), region, fov

    def run(self, *_):
        if self.busy:
            return
        inputs = self._inputs()
        if inputs is None:
            return
        image, labels, region, fov = inputs
        cfg = FinetuneConfig(updates=self.updates.value, lr=self.lr.value, loss=self.loss.value,
                             tune_backbone=self.tune_backbone.value)
        try:
            start, backbone = default_pair(np.ndim(labels))  # volumes: the 3D U-Net + 3D refiner
        except ValueError as e:
            show_error(str(e))
            return
        self.curve.clear()
        self.start(_finetune_job, image, labels, region, fov, refiner=start, backbone=backbone, cfg=cfg,
                   total=cfg.updates, desc="fine-tuning the refiner",
                   note="scoring the region, then training...",
                   on_frame=self._on_update, on_result=self._on_result, on_end=self._on_end,
                   on_error=lambda _job, e: show_error(f"Fine-tuning failed: {e}"))

    def cancel(self, *_):
        if self.busy:
            self.job.cancel()

    def show_controls(self):
        self.train_button.enabled = not self.busy
        self.cancel_button.enabled = self.job is not None and self.job.state == RUNNING

    def status_text(self) -> str:
        job = self.job
        if job is not None and job.state == CANCELLED:
            return f"cancelled at update {job.step}; active refiner: {session.source()} (unchanged)"
        return super().status_text()

    def show_frame(self):
        self.curve.update()

    def _on_update(self, job, frame):
        i, loss = frame
        self.curve.add(loss)
        job.step = i + 1

    def _on_end(self, job):
        if job.state == CANCELLED:
            show_info("Fine-tuning cancelled: the previous weights stay in use.")

    def _on_result(self, _job, result):
        if result is None:  # cancelled inside the training loop
            return
        session.set_refiner(result.refiner, source="fine-tuned")
        which = "Directions and Diffusion panels use"
        if result.backbone is not None:
            session.set_unet(result.backbone)
            which = "Segment, Directions and Diffusion panels use"
        self.done_text = (f"fine-tuned in {result.record['seconds_total']:.0f} s; the {which} "
                          "the new weights now")
        self.scores.value = (_metrics_line("before", result.before) + "\n"
                             + _metrics_line("after ", result.after) + "\n(inside the region)")

    # -- weights ---------------------------------------------------------------------------
    def save(self, path) -> Path | None:
        """Save the active refiner (and a fine-tuned U-Net beside it, NAME_unet.pt)."""
        try:
            out = session.save_weights(path)
        except (OSError, ValueError) as e:
            show_error(f"Could not save the weights: {e}")
            return None
        self.say("saved " + " and ".join(p.name for p in out))
        return out[0]

    def load(self, path) -> bool:
        try:
            session.load_refiner(path)
        except ValueError as e:
            show_error(f"Could not load {Path(path).name}: {e}")
            return False
        self.say(f"active refiner: {session.source()}")
        return True

    def reset(self, *_):
        session.reset_refiner()
        self.say("active refiner: shipped")
        self.scores.value = ""

    def _save_clicked(self, *_):
        path, _ = QFileDialog.getSaveFileName(self.native, "Save refiner weights", "refiner.pt",
                                              "torch weights (*.pt)")
        if path:
            self.save(path)

    def _load_clicked(self, *_):
        path, _ = QFileDialog.getOpenFileName(self.native, "Load refiner weights", "",
                                              "torch weights (*.pt)")
        if path:
            self.load(path)
