"""Metrics panel: Dice, clDice, VCA and topology of any number of layers against a ground truth.

Predictions may be Image layers (probabilities in [0, 1], thresholded) or Labels layers
(non-zero is vessel), 2D or 3D; scoring (`core.scoring.score_predictions`) runs in a
worker. With "topology" the table also has each prediction's connected components
(8-connected in 2D, 26 in 3D) and the Betti-number errors (b0, b1; b2 for volumes). The
table can be exported as CSV (written atomically).
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, Select
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog, QTableWidget, QTableWidgetItem

from ..core.metrics import count_components
from ..core.scoring import prediction_mask, rows_to_csv, score_predictions
from ..core.values import as_probability
from ..data.io import atomic_write_text
from ..data.names import fov_like
from ._common import Panel, follow_layers, layers_of
from .segment import follow_fov

#: The loop's own layers (Segment, Diffusion, Accept): selected as predictions when they appear.
LOOP_OUTPUTS = ("probability", "refined", "curated")

#: Layers that are never the ground truth by default: the loop's own Labels layers.
NOT_TRUTH = ("curated", "bridged")


def truth_like(name: str) -> bool:
    """Whether a Labels layer named ``name`` may be offered as the ground truth: not a field of
    view (`data.names.fov_like`) and not one of the loop's own Labels layers.

    >>> [truth_like(n) for n in ("01_manual1", "im0255.ah", "11_h [1]", "11_h_mask", "curated", "bridged")]
    [True, True, True, False, False, False]
    """
    return not fov_like(name) and name.lower() not in NOT_TRUTH


def follow_truth(panel: Panel, viewer, predictions: Select, truth: ComboBox) -> None:
    """Default choices that score the loop at once: each of `LOOP_OUTPUTS` is added to the
    selected predictions when it appears, and the ground truth moves off a field-of-view mask or
    a loop layer to a layer that can be one (`truth_like`), unless the user chose it."""
    mine = {"chosen": False}

    def chosen(*_):  # the user picked it in the list (QComboBox.activated: user actions only)
        mine["chosen"] = True

    truth.native.activated.connect(chosen)

    def pick(layers):
        predictions.reset_choices()
        outputs = [lay for lay in layers if lay.name in LOOP_OUTPUTS and lay in predictions.choices]
        if outputs:
            predictions.value = list(predictions.value) + [o for o in outputs if o not in predictions.value]
        truth.reset_choices()
        if not mine["chosen"] and (truth.value is None or not truth_like(truth.value.name)):
            able = [lay for lay in truth.choices if lay is not None and truth_like(lay.name)]
            truth.value = able[0] if able else None

    pick(list(viewer.layers))
    panel.listen(viewer.layers.events.inserted, lambda e: pick([e.value]))

COLUMNS = {"name": "layer", "dice": "Dice", "cldice": "clDice", "vca": "VCA", "vca_fov": "VCA (FOV)",
           "components": "components", "betti0_error": "Betti 0 err", "betti1_error": "Betti 1 err",
           "betti2_error": "Betti 2 err"}


def _score_job(predictions: dict, truth, fov, threshold: float, topology: bool = False):
    """Score each prediction on its own, so one bad layer does not hide the others' scores."""
    rows, errors = [], []
    for name, a in predictions.items():
        try:
            rows += score_predictions({name: a}, truth, fov, threshold, topology=topology)
        except ValueError as e:
            errors.append(str(e))
    n_truth = None
    if topology and rows:  # the truth was read without error
        n_truth = count_components(prediction_mask(truth))
    return rows, errors, n_truth


class MetricsWidget(Panel):
    """Dock widget: choose prediction layers and a ground truth, Score, Export CSV."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.rows: list[dict] = []
        kinds = (napari.layers.Image, napari.layers.Labels)
        self.predictions = Select(label="predictions", choices=lambda _w: layers_of(viewer, *kinds),
                                  allow_multiple=True, value=[])
        labels = lambda _w: layers_of(viewer, napari.layers.Labels)  # noqa: E731
        # nullable: no Labels layer that can be the truth is better than a FOV mask taken for it
        self.truth = ComboBox(label="ground truth", choices=labels, nullable=True, value=None)
        self.fov = ComboBox(label="field of view", nullable=True, value=None, choices=labels)
        self.threshold = FloatSpinBox(value=0.5, min=0.01, max=1.0, step=0.05, label="threshold",
                                      tooltip="for probability (Image) layers")
        self.topology = CheckBox(text="topology", value=True,
                                 tooltip="also connected components (8 / 26-connected) and the errors "
                                         "of the Betti numbers b0, b1 (and b2 in 3D)")
        self.run_button = PushButton(text="Score")
        self.export_button = PushButton(text="Export CSV...", enabled=False)
        self.status = Label(value="")
        self.table = QTableWidget(0, 4)
        self.table.setMinimumHeight(140)
        self.extend([self.predictions, self.truth, self.fov, self.threshold, self.topology,
                     self.run_button])
        self.native.layout().addWidget(self.table)
        self.extend([self.export_button, self.status])
        follow_layers(viewer, self.predictions)
        follow_layers(viewer, self.truth, prefer="truth")
        follow_layers(viewer, self.fov)
        follow_fov(self, viewer, self.fov)  # a DRIVE *_mask, a "fov" layer
        follow_truth(self, viewer, self.predictions, self.truth)  # the loop's layers vs. the truth
        self.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self._export_dialog)

    def run(self, *_):
        if self.busy:
            return
        chosen = list(self.predictions.value)
        truth = self.truth.value
        if not chosen:
            show_error("Choose one or more prediction layers to score.")
            return
        if truth is None:
            show_error("Choose a ground-truth Labels layer (e.g. the sample's truth).")
            return
        preds, errors = {}, []
        for layer in chosen:
            if getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
                errors.append(f"'{layer.name}' is an RGB or multiscale image: it cannot be scored.")
            elif layer is truth:
                errors.append(f"'{layer.name}' is the ground truth itself.")
            elif isinstance(layer, napari.layers.Labels):
                preds[layer.name] = np.asarray(layer.data) > 0  # label ids: any label is vessel
            elif np.issubdtype(np.asarray(layer.data).dtype, np.integer):
                # an 8-bit probability image is 0..255, not label ids: the project's one value rule
                preds[layer.name] = as_probability(layer.data, layer.name)[0]
            else:
                preds[layer.name] = np.asarray(layer.data)
        fov = None if self.fov.value is None else np.asarray(self.fov.value.data)
        self._errors = errors
        if not preds:
            show_error(" ".join(errors))
            return
        self.start(_score_job, preds, np.asarray(truth.data), fov, self.threshold.value, self.topology.value,
                   desc="scoring", note="scoring...", on_result=self._on_result,
                   on_error=lambda _job, e: show_error(f"Scoring failed: {e}"))

    def show_controls(self):
        self.run_button.enabled = not self.busy
        self.export_button.enabled = bool(self.rows) and not self.busy

    def _on_result(self, _job, result):
        rows, errors, n_truth = result
        errors = self._errors + errors
        if errors:
            show_error(" ".join(errors))
        self.rows = rows
        cols = [c for c in COLUMNS if any(c in r for r in rows)] or list(COLUMNS)[:4]
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels([COLUMNS[c] for c in cols])
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                v = r.get(c, "")
                self.table.setItem(i, j, QTableWidgetItem(f"{v:.4f}" if isinstance(v, float) else str(v)))
        self.table.resizeColumnsToContents()
        self.done_text = (f"scored {len(rows)} layer(s)" + (f"; {len(errors)} skipped" if errors else "")
                          + (f"; the truth has {n_truth} component(s)" if n_truth is not None else ""))

    def export_csv(self, path) -> Path:
        """Write the table to ``path`` as CSV (atomically) and return the path."""
        if not self.rows:
            raise ValueError("nothing to export: press Score first")
        path = Path(path)
        atomic_write_text(path, rows_to_csv(self.rows))
        self.say(f"saved {path.name}")
        return path

    def _export_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(self.native, "Export metrics", "metrics.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            self.export_csv(path)
        except (OSError, ValueError) as e:
            show_error(f"Could not save {path}: {e}")
            return
        show_info(f"Metrics saved to {path}")
