"""The "Curate vessels" dock: the annotator's loop, step by step, in one dock.

The loop's panels (Segment, Directions, Diffusion, Gaps, Accept, Metrics, Fine-tune) are
the same classes as the separate docks, each on its own tab in the loop's order, so a
1080-pixel-high screen shows the whole dock: one step at a time, each tab scrolled if a
panel ever grows taller than the room left. Nothing of the panels is duplicated here; the
panels stay available on their own under Plugins.
"""

from __future__ import annotations

import napari
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QLabel, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .accept import AcceptWidget
from .diffusion import DiffusionWidget
from .directions import DirectionsWidget
from .finetune import FinetuneWidget
from .gaps import GapsWidget
from .metrics import MetricsWidget
from .segment import SegmentWidget

#: The loop's steps in order: (tab title, panel class).
STEPS = (
    ("1 Segment", SegmentWidget),
    ("2 Directions", DirectionsWidget),
    ("3 Diffusion", DiffusionWidget),
    ("4 Gaps", GapsWidget),
    ("5 Accept", AcceptWidget),
    ("6 Metrics", MetricsWidget),
    ("7 Fine-tune", FinetuneWidget),
)

#: The most height (screen pixels) a step's page asks for: with the tab bar, the dock
#: stays under 900 px, what a 1080-pixel screen leaves below napari's menu and title bars.
MAX_PAGE_HEIGHT = 820


class _Page(QScrollArea):
    """A step's tab: its panel, scrolled only when the panel is taller than the room left."""

    def __init__(self, panel):
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        # long status lines wrap rather than widen the panel beyond the dock (and so
        # scroll the controls' names out of sight); a scroll bar if it is still wider
        for label in panel.native.findChildren(QLabel):
            label.setWordWrap(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        layout = panel.native.layout()
        if hasattr(layout, "addStretch"):
            layout.addStretch(1)  # the controls stay together at the top of a tall tab
        self.setWidget(panel.native)

    def sizeHint(self) -> QSize:
        # QScrollArea's own hint is a fixed small box: ask for the panel's, within the cap
        hint = self.widget().sizeHint()
        bar = self.verticalScrollBar().sizeHint().width()
        return QSize(hint.width() + bar, min(hint.height(), MAX_PAGE_HEIGHT))


class CurateWidget(QWidget):
    """Dock widget "Curate vessels": one tab per step of the loop, each one of the panels.

    ``panels`` maps a step's name ("segment", "directions", ..., "fine-tune") to its panel,
    so code (and the tests) reach a panel's controls as in its own dock.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        self.panels = {}
        for title, cls in STEPS:
            panel = cls(viewer)
            self.tabs.addTab(_Page(panel), title)
            self.panels[title.split(" ", 1)[1].lower()] = panel
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

    def show_step(self, name: str) -> None:
        """Bring the tab of step ``name`` ("segment", ..., "fine-tune") to the front."""
        self.tabs.setCurrentIndex(list(self.panels).index(name))
