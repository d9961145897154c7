"""Screenshots of the Curate tools panel for the user guide (docs/images/11_*.png, 12_*.png).

    xvfb-run -a python scripts/screenshots_tools.py [--out docs/images]

The synthetic sample (a probability field with breaks): its thresholded probability is
the curated mask; the panel's own methods trace across two breaks and remove a false
piece (the clicks a person makes, in data coordinates), then Measure fills the table
and the ``branches`` layer. The whole window is captured, as scripts/screenshots.py does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from screenshots import Shooter, settle  # noqa: E402


def main() -> None:
    import napari

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/images")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from napari_tubediff.data.synthetic import synthetic_vessels

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1800, 1000)
    s = Shooter(viewer, out)
    syn = synthetic_vessels((256, 256), seed=1, n_breaks=8)
    viewer.add_image(syn.probability, name="refined", colormap="gray")
    mask = (syn.probability >= 0.5).astype(np.uint8)
    # a false piece the annotator will remove
    mask[20:26, 20:40] = 1
    curated = viewer.add_labels(mask, name="curated", opacity=0.6)
    w = s.panel("Curate tools")
    w.curated.value = curated
    w.value.value = 2  # traces in another colour, to be seen
    w.table.native.setMinimumHeight(220)

    # trace across the two longest breaks far from junctions: the clicks are the centre-line
    # points just outside each break (as the test does)
    comps, n = ndi.label(syn.breaks, np.ones((3, 3)))
    sizes = ndi.sum(syn.breaks, comps, range(1, n + 1))
    done, first = 0, None
    far_from_edge = np.zeros(syn.breaks.shape, bool)
    far_from_edge[24:-24, 24:-24] = True
    for i in np.argsort(sizes)[::-1] + 1:
        b = comps == i
        if not (b & far_from_edge).any():
            continue
        zone = ndi.binary_dilation(b, iterations=8) & ~ndi.binary_dilation(b, iterations=1)
        stubs, m = ndi.label(syn.centerline & zone, np.ones((3, 3)))
        if m != 2:
            continue
        db = ndi.distance_transform_edt(~b)
        a, c = (np.argwhere(stubs == j)[np.argmax(db[stubs == j])] for j in (1, 2))
        w.tool.value = "trace"
        w.click(a)
        w.click(c)
        first = (a + c) / 2 if first is None else first
        done += 1
        if done == 2:
            break
    traced = w.status.value
    w.tool.value = "remove piece"
    w.click((22, 30))
    w.status.value = f"{traced}; then {w.status.value}"
    from napari_tubediff.widgets._common import camera

    cam = camera(viewer)
    cam.center = tuple(first)
    cam.zoom = 4
    settle()
    s.shot("11_tools_trace")

    w.tool.value = "off"
    w.measure()
    viewer.reset_view()
    settle()
    s.shot("12_tools_measure")
    viewer.close()


if __name__ == "__main__":
    main()
