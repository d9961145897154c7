"""Segment panel: an image layer and a backbone in, the ``probability`` layer out.

Grey images (2D or 3D) are used as they are; RGB images through their green channel,
where retinal vessels have the most contrast. The backbone runs in a worker thread.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

from ..models import session
from ..models.registry import available_backbones, get_backbone
from ._common import follow_layers, layers_of, put_image

PROBABILITY = "probability"


def _segment_job(name: str, image: np.ndarray, fov: np.ndarray | None):
    """``(probability, features or None)``: learned backbones also give their features,
    which the Directions and Diffusion panels hand to the learned direction head."""
    # "unet" is the session's U-Net: the shipped one, or one fine-tuned in this session
    backbone = session.active_unet() if name == "unet" else get_backbone(name)
    if hasattr(backbone, "predict_with_features"):
        return backbone.predict_with_features(image, fov=fov)
    return backbone.predict(image, fov=fov), None


class SegmentWidget(Container):
    """Dock widget: choose an image and a backbone, press Segment."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self.image = ComboBox(label="image", choices=lambda _w: layers_of(viewer, napari.layers.Image),
                              tooltip="grey (2D or 3D) or RGB; RGB images are read through the green channel")
        self.fov = ComboBox(label="field of view", nullable=True, value=None,
                            choices=lambda _w: layers_of(viewer, napari.layers.Labels),
                            tooltip="optional mask: the probability is zero outside it")
        # a TorchScript backbone needs a file: it is offered by the CLI and the Python API
        names = [n for n in available_backbones() if n != "torchscript"]
        self.backbone = ComboBox(label="backbone", choices=names,
                                 value="unet" if "unet" in names else names[0],
                                 tooltip="unet: shipped DRIVE weights; vesselness: no training")
        self.run_button = PushButton(text="Segment")
        self.status = Label(value="")
        self.extend([self.image, self.fov, self.backbone, self.run_button, self.status])
        follow_layers(viewer, self.image, self.fov)
        self.run_button.changed.connect(self.run)

    def _inputs(self):
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer to segment (File > Open Sample > napari-tubediff).")
            return None
        if layer.multiscale:
            show_error(f"'{layer.name}' is multiscale: segment one resolution level as its own layer.")
            return None
        image = np.asarray(layer.data)
        spatial = image.shape[:-1] if layer.rgb else image.shape
        if len(spatial) not in (2, 3):
            show_error(f"'{layer.name}' is {len(spatial)}D: choose a 2D or 3D image.")
            return None
        fov = None
        if self.fov.value is not None:
            fov = np.asarray(self.fov.value.data) > 0
            if fov.shape != spatial:
                show_error(f"The field of view {fov.shape} does not match '{layer.name}' {spatial}.")
                return None
        return layer, image, fov

    def run(self, *_):
        if self._worker is not None:
            return
        inputs = self._inputs()
        if inputs is None:
            return
        layer, image, fov = inputs
        name = self.backbone.value
        self._source = layer
        self._worker = create_worker(_segment_job, name, image, fov, _ignore_errors=True,
                                     _progress={"desc": f"segmenting '{layer.name}' ({name})"})
        self._worker.returned.connect(self._on_result)
        self._worker.errored.connect(lambda e: show_error(f"Segmentation failed: {e}"))
        self._worker.finished.connect(self._on_finished)
        self.run_button.enabled = False
        self.status.value = f"segmenting with {name}..."
        self._worker.start()

    def _on_result(self, result):
        prob, feats = result
        layer = put_image(self._viewer, PROBABILITY, prob, like=self._source, colormap="magma",
                          contrast_limits=(0.0, 1.0), blending="additive")
        # the learned direction head reads these (Directions and Diffusion panels)
        layer.metadata["features"] = feats
        layer.metadata["backbone"] = self.backbone.value
        self.status.value = f"probability: {float((prob >= 0.5).mean()):.1%} of pixels >= 0.5"

    def _on_finished(self):
        self._worker = None
        self.run_button.enabled = True
        if self.status.value.startswith("segmenting"):
            self.status.value = "failed"
