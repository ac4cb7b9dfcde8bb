"""Screenshot of the Generative dock for docs/generative.md.

    xvfb-run -a nice -n 10 .venv/bin/python benchmarks/diffusion_screenshot.py MODEL.zip docs/images/generative-dock.png

MODEL is a diffusion package trained on the PBC crops, e.g. the 64-px latent model of
``diffusion_latent.py package`` or
``napari-nucleus-ai train ../shared/data/smear/pbc --out MODEL.zip --arch latent-diffusion``.
Builds a 2 x 2 mosaic of real PBC crops (one per class shown) with a disc label per cell,
generates a grid of synthetic cells and the counterfactual of one cell, and saves the window.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PBC = (
    Path(os.environ.get("NAPARI_NUCLEUS_AI_SHARED_DATA", ROOT.parent / "shared" / "data"))
    / "smear"
    / "pbc"
)
SHOW = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def mosaic():
    import imageio.v3 as iio

    tiles = [iio.imread(sorted((PBC / c).glob("*.png"))[0])[..., :3] for c in SHOW]
    s = tiles[0].shape[0]
    img = np.zeros((2 * s, 2 * s, 3), np.uint8)
    labels = np.zeros((2 * s, 2 * s), np.uint16)
    yy, xx = np.mgrid[:s, :s]
    disc = np.hypot(yy - s / 2, xx - s / 2) < s * 0.3
    for i, t in enumerate(tiles):
        r, c = divmod(i, 2)
        img[r * s : (r + 1) * s, c * s : (c + 1) * s] = t[:s, :s]
        labels[r * s : (r + 1) * s, c * s : (c + 1) * s][disc] = i + 1
    return img, labels


def main(model: str, out: str, grid_out: str | None = None) -> None:
    os.environ["NAPARI_NUCLEUS_AI_SYNC"] = "1"
    import napari

    from napari_nucleus_ai.widgets.generative import GenerativeWidget

    viewer = napari.Viewer(show=True)
    img, labels = mosaic()
    viewer.add_image(img, name="PBC crops", rgb=True)
    lab = viewer.add_labels(labels, name="cells", opacity=0.25)
    dock = GenerativeWidget(viewer)
    dock.native.setMaximumWidth(420)
    viewer.window.add_dock_widget(dock, name="Generative", area="right")
    viewer.window._qt_window.resize(1500, 850)
    dock.model.value = model
    dock.klass.value = "eosinophil"
    dock.n.value, dock.steps.value, dock.guidance.value = 16, 50, 2.0
    dock.run_generate(sync=True)
    grid = viewer.layers["synthetic eosinophil"]
    grid.translate = (0, 2 * img.shape[1] + 40)
    grid.scale = (img.shape[0] / grid.data.shape[0] * 0.9,) * 2
    if grid_out:
        import imageio.v3 as iio

        iio.imwrite(grid_out, grid.data)
    dock.image.value, dock.cells.value = "PBC crops", "cells"
    lab.selected_label = 3  # the monocyte
    dock.run_counterfactual(sync=True)
    viewer.reset_view()
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
    viewer.window.screenshot(out, canvas_only=False)
    print(out, dock.status.value)
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
