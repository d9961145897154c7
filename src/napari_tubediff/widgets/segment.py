"""Segment panel: an image layer and a backbone in, the ``probability`` layer out.

Grey images (2D or 3D) are used as they are; RGB images through their green channel,
where retinal vessels have the most contrast. The backbone runs in a worker thread, through
`models.backbones.segment_image` (the CLI's path): the field of view is found in fundus
photographs unless a mask layer is chosen or "find FOV" is off, and 2D images are resampled
to the U-Net's working scale by the factor found ("auto scale"; shown in the scale field
after each run) or the user's own.

The backbones are those of `models.registry`; each takes 2D images, volumes or both
(`models.registry.backbone_ndims`). Choosing an image the current backbone cannot take switches to one
that can (a learned 3D backbone when the registry has one, else ``vesselness``), and
pressing Segment with a mismatched pair says so instead of failing in the worker.

The training-free ``vesselness`` backbone marks the strongest ``vessel fraction`` of the
pixels of a 2D image as vessel (`VESSEL_FRACTION`); on a volume it takes Otsu's threshold of
its response by default ("threshold from the data"), as from the CLI: no fixed fraction,
since vessels fill from under 1 % to over 40 % of real volumes. Untick it to give a fraction.

Cancel ends the run at once (the backbone's process is terminated) and writes nothing. While
a Diffusion run refines the ``probability`` layer, a new segmentation does not replace that
run's input: it goes to a new layer (``probability [1]``, ...), and the panel says so.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton
from napari.utils.notifications import show_error, show_warning

from ..core.checks import check_planes
from ..data.names import fov_like
from ..io_hooks import prefer_tubediff_readers
from ..models import registry, session
from ..models.classical import POLARITIES, VESSEL_FRACTION
from ..models.registry import available_backbones
from ..workers import tasks
from ..workers.process import prewarm, release, run_in_child
from ._common import (
    CANCELLED,
    CANCELLING,
    RUNNING,
    Panel,
    QuietSlot,
    follow_layers,
    layer_spacing,
    layers_of,
    put_image,
    spatial_ndim,
    worker_threads,
)

PROBABILITY = "probability"

#: Training-free backbones that take 2D images and volumes alike.
ND_BACKBONES = ("vesselness",)


def backbone_dims(name: str) -> tuple[int, ...]:
    """The numbers of spatial axes backbone ``name`` takes (`models.registry.backbone_ndims`).

    Examples
    --------
    >>> backbone_dims("vesselness"), backbone_dims("unet"), backbone_dims("unet3d")
    ((2, 3), (2,), (3,))
    """
    return registry.backbone_ndims(name)


def backbone_for(ndim: int, names, current: str | None = None) -> str | None:
    """``current`` if it takes ``ndim``-D images, else the best of ``names`` that does.

    For volumes the 3D default (``region3d``: docs/results.md, "Real volumes") comes first,
    then a learned 3D backbone, then a training-free one; for 2D images the U-Net first.
    None when no backbone takes ``ndim``-D images.

    Examples
    --------
    >>> backbone_for(3, ["unet", "vesselness"], "unet")
    'vesselness'
    >>> backbone_for(3, ["unet", "unet3d", "vesselness"], "unet"), backbone_for(2, ["unet"], "unet")
    ('unet3d', 'unet')
    """
    if current is not None and ndim in backbone_dims(current):
        return current
    able = [n for n in names if ndim in backbone_dims(n)]
    first = "unet" if ndim == 2 else registry.DEFAULT_3D
    able.sort(key=lambda n: (n != first, n in ND_BACKBONES, n))
    return able[0] if able else None


def _segment_job(name: str, image: np.ndarray, fov="auto", scale="auto", polarity: str = "auto",
                 spacing=None, child: bool = False, gate=None, **options):
    """``(Segmentation, polarity used)``: `segment_image` with the panel's choices (the CLI's
    ``tubediff segment`` path, `workers.tasks.segment`); learned backbones also give their
    features, which the Directions and Diffusion panels hand to the learned direction head.
    ``spacing`` is a volume's voxel spacing (the layer's ``scale``). ``options`` go to the
    backbone (e.g. ``vessel_fraction`` for vesselness). ``child``: in a separate process
    (`workers.process.run_in_child`; None when ``gate`` is cancelled), so the GUI process's
    Python lock stays free."""
    # "unet" is the session's U-Net: the shipped one, or one fine-tuned in this session
    unet = tasks.pack(session.active_unet()) if name == "unet" else None
    if not child:
        return tasks.segment(name, image, fov, scale, polarity, spacing, unet=unet, **options)
    return run_in_child(tasks.segment, name, image, fov, scale, polarity, spacing, unet=unet,
                        should_stop=lambda: gate is not None and gate.cancelled, threads=worker_threads(),
                        **options)


def diffusion_reads(viewer, layer) -> bool:
    """Whether a Diffusion panel docked in ``viewer`` is running (or paused) on ``layer``."""
    from .diffusion import DiffusionWidget

    try:
        panels = list(viewer.window.dock_widgets.values())
    except (AttributeError, RuntimeError):  # no window (a headless viewer), or it is closing
        return False
    return any(isinstance(p, DiffusionWidget) and p.busy
               and layer in (p.layer.value, getattr(p, "_source", None)) for p in panels)


def probability_target(viewer, name: str = PROBABILITY) -> str:
    """The layer a new probability goes to: ``name``, unless a Diffusion run reads that layer
    (replacing its data would put the run's result over another input): then the first free
    ``probability [n]``."""
    layers = viewer.layers
    if name not in layers or not diffusion_reads(viewer, layers[name]):
        return name
    n = 1
    while f"{PROBABILITY} [{n}]" in layers:
        n += 1
    return f"{PROBABILITY} [{n}]"


def follow_fov(panel: Panel, viewer, combo: ComboBox) -> None:
    """Offer a mask or FOV layer as ``combo``'s field of view: the newest one now (if the
    combo is empty), and each one added later. Any other choice is the user's to make."""

    def pick(layers):
        combo.reset_choices()
        named = [lay for lay in layers if fov_like(lay.name) and lay in combo.choices]
        if named:
            combo.value = named[-1]

    if combo.value is None:
        pick(list(viewer.layers))
    panel.listen(viewer.layers.events.inserted, lambda e: pick([e.value]))


class SegmentWidget(Panel):
    """Dock widget: choose an image and a backbone, press Segment."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.image = ComboBox(label="image", choices=lambda _w: layers_of(viewer, napari.layers.Image),
                              tooltip="grey (2D or 3D) or RGB; RGB images are read through the green channel")
        self.fov = ComboBox(label="field of view", nullable=True, value=None,
                            choices=lambda _w: layers_of(viewer, napari.layers.Labels),
                            tooltip="optional mask: the probability is zero outside it (none chosen: "
                                    "found automatically in fundus photographs, if 'find FOV' is on)")
        self.find_fov = CheckBox(value=True, text="find FOV",
                                 tooltip="no mask chosen: find the bright disc of a fundus photograph on "
                                         "its dark or flat grey surround (other images get no FOV)")
        self.auto_scale = CheckBox(value=True, text="auto scale",
                                   tooltip="resample to the U-Net's working scale by a factor found from "
                                           "the field of view's diameter (fundus) or the vessel width")
        self.scale = FloatSpinBox(value=1.0, min=1 / 16, max=16.0, step=0.05, label="scale",
                                  enabled=False,
                                  tooltip="the resampling factor: found (auto scale) or yours (auto "
                                          "scale off); 1 keeps the image as it is")
        # a TorchScript backbone needs a file: it is offered by the CLI and the Python API
        names = [n for n in available_backbones() if n not in registry.NEEDS_FILE]
        vol = ", ".join(n for n in names if 3 in backbone_dims(n))
        self.backbone = ComboBox(label="backbone", choices=names,
                                 value="unet" if "unet" in names else names[0],
                                 tooltip="unet: shipped fundus weights (2D); vesselness: no training "
                                         f"(2D and 3D). For volumes: {vol}")
        self.fraction = FloatSpinBox(value=VESSEL_FRACTION[2], min=0.001, max=0.5, step=0.005,
                                     label="vessel fraction",
                                     tooltip="vesselness: the expected fraction of vessel pixels, marked "
                                             ">= 0.5 (a retina photograph: about 0.12; a volume: "
                                             "0.005-0.02)")
        self.data_threshold = CheckBox(value=True, text="threshold from the data (Otsu)",
                                       tooltip="vesselness on a volume: Otsu's threshold of the response "
                                               "(as tubediff segment does); untick to mark a fixed fraction")
        self.polarity = ComboBox(label="vessels", choices=list(POLARITIES), value="auto",
                                 tooltip="auto: decided from the image (colour photographs: dark); dark: "
                                         "vessels darker than the background (fundus photographs); bright: "
                                         "brighter (angiograms, fluorescence microscopy)")
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="stop the segmentation now (nothing is written)")
        self.status = Label(value="")
        self.extend([self.image, self.fov, self.find_fov, self.backbone, self.data_threshold, self.fraction,
                     self.polarity,
                     self.auto_scale, self.scale, self.run_button, self.cancel_button, self.status])
        self.auto_scale.changed.connect(lambda v: setattr(self.scale, "enabled", not v))
        # open image and mask files with this plugin's reader unless the user chose another
        prefer_tubediff_readers()
        self._nd = 2
        follow_layers(viewer, self.image, self.fov)
        follow_fov(self, viewer, self.fov)  # a DRIVE *_mask, a "fov" layer
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.image.changed.connect(self._fit_backbone)
        self.backbone.changed.connect(self._show_options)
        self.data_threshold.changed.connect(self._show_options)
        self._fit_backbone()
        self._show_options()
        prewarm(worker_threads())  # the process the backbone runs in: torch loads there meanwhile
        self.native.destroyed.connect(QuietSlot(release))  # the viewer closes: no idle process kept

    def _show_options(self, *_):
        nd_backbone = self.backbone.value in ND_BACKBONES
        self.data_threshold.visible = nd_backbone and self._nd == 3
        self.fraction.visible = nd_backbone and not (self._nd == 3 and self.data_threshold.value)

    def _fit_backbone(self, *_):
        """Switch to a backbone that takes the chosen image's dimensions, and say so."""
        nd = spatial_ndim(self.image.value)
        if nd not in (2, 3):
            return
        if nd != self._nd:
            self._nd = nd
            self.fraction.value = VESSEL_FRACTION[nd]
            self._show_options()
        name = backbone_for(nd, list(self.backbone.choices), self.backbone.value)
        if name is not None and name != self.backbone.value:
            self.backbone.value = name
            kind = "a volume" if nd == 3 else "a 2D image"
            self.say(f"'{self.image.value.name}' is {kind}: backbone set to {name}")

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
        if layer.rgb and len(spatial) == 3:
            show_error(f"'{layer.name}' is an RGB volume: split its channels (layer list, right "
                       "click > Split RGB) and segment one of them.")
            return None
        try:  # a 2-4 plane slab is no volume (core.checks.check_planes)
            check_planes(spatial, f"'{layer.name}'")
        except ValueError as e:
            show_error(f"{e} (layer list: right click > Split Stack)")
            return None
        name = self.backbone.value
        if len(spatial) not in backbone_dims(name):
            able = [n for n in self.backbone.choices if len(spatial) in backbone_dims(n)]
            kind = "volumes (3D)" if len(spatial) == 3 else "2D images"
            show_error(f"The {name} backbone does not take {kind}, and '{layer.name}' {spatial} is one: "
                       f"choose {' or '.join(able) or 'another backbone'}.")
            return None
        fov = "auto" if self.find_fov.value else "none"
        if self.fov.value is not None:
            fov = np.asarray(self.fov.value.data) > 0
            if fov.shape != spatial:
                show_error(f"The field of view {fov.shape} does not match '{layer.name}' {spatial}.")
                return None
        return layer, image, fov

    def run(self, *_):
        if self.busy:
            return
        inputs = self._inputs()
        if inputs is None:
            return
        layer, image, fov = inputs
        name = self.backbone.value
        options = {}
        if name in ND_BACKBONES:  # a volume: Otsu's threshold of the response unless unticked
            data = self._nd == 3 and self.data_threshold.value
            options = {"vessel_fraction": None if data else self.fraction.value}
        self._source = layer
        self._target = self._check_target()
        scale = "auto" if self.auto_scale.value else float(self.scale.value)
        spacing = layer_spacing(layer)  # the layer's scale; 2D images ignore it
        self.start(_segment_job, name, image, fov, scale, self.polarity.value, spacing, **options,
                   child=True, gated=True,
                   desc=f"segmenting '{layer.name}' ({name})",
                   note=f"segmenting with {name}..." + self._into(), on_result=self._on_result,
                   on_error=lambda _job, e: show_error(f"Segmentation failed: {e}"))

    def cancel(self, *_):
        """Stop the run now: the backbone's process is terminated, nothing is written."""
        if self.busy:
            self.job.cancel()

    def _check_target(self, name: str = PROBABILITY) -> str:
        """The layer the result goes to (`probability_target`), with a warning when a Diffusion
        run reads ``name``."""
        target = probability_target(self._viewer, name)
        if target != name:
            show_warning(f"A Diffusion run is refining '{name}': the new probability goes to '{target}', "
                         f"so the run keeps its input (cancel the run to replace '{name}').")
        return target

    def _into(self) -> str:
        if self._target == PROBABILITY:
            return ""
        return f" (into '{self._target}': a Diffusion run reads '{PROBABILITY}')"

    def show_controls(self):
        self.run_button.enabled = not self.busy
        self.cancel_button.enabled = self.job is not None and self.job.state == RUNNING

    def status_text(self) -> str:
        job = self.job
        if job is not None and job.state == CANCELLING:
            return "cancelling..."
        if job is not None and job.state == CANCELLED:
            return "cancelled: no probability written"
        return super().status_text()

    def _on_result(self, _job, result):
        if result is None:  # cancelled in the child
            return
        seg, polarity = result
        prob = seg.prob
        # a Diffusion run may have begun on the target meanwhile
        self._target = self._check_target(self._target)
        layer = put_image(self._viewer, self._target, prob, like=self._source, colormap="magma",
                          contrast_limits=(0.0, 1.0), blending="additive")
        # the learned direction head reads these (Directions and Diffusion panels); at the
        # backbone's working scale when the image was resampled
        layer.metadata["features"] = seg.features
        layer.metadata["backbone"] = self.backbone.value
        layer.metadata["fov"] = seg.fov
        layer.metadata["scale"] = seg.factor
        # volumes (region3d): the scale is the vessel radius in voxels, measured or given
        value = seg.factor if seg.radius is None else min(seg.radius, self.scale.max)
        if self.auto_scale.value:
            self.scale.value = round(value, 3)  # the factor (or radius) it chose, to see and to change
        fov = "no FOV" if seg.fov is None else f"FOV {float(seg.fov.mean()):.0%} of the image"
        unit = "voxels" if layer_spacing(self._source) is None else "units of the layer's scale"
        size = (f"scale {seg.factor:.3g}" if seg.radius is None
                else f"vessel radius {seg.radius:.3g} {unit} (the scale field)")
        self.done_text = (f"{size} ({seg.how}), {fov}; probability{self._into()}: "
                          f"{float((prob >= 0.5).mean()):.1%} of pixels >= 0.5; vessels taken as {polarity}")
