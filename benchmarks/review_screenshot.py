"""Make docs/images/review.png: the Review dock on a segmented, classified synthetic smear.

Run: ``xvfb-run -a .venv/bin/python benchmarks/review_screenshot.py [--out docs/images/review.png]``

The pipeline is the real one: a synthetic smear (the smear simulator) is segmented
with ``segment_wbc``, classified by a small model trained here on simulated
white-cell crops (cached in the temp folder), and opened in the Review dock;
the first cells are confirmed and one is corrected, as an annotator would.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def small_model(cache: Path):
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.samples.smear import WBC_CLASSES, simulate_wbc_crop

    if (cache / "model").exists():
        return cache / "model"
    from PIL import Image

    for c in WBC_CLASSES:
        (cache / "crops" / c).mkdir(parents=True, exist_ok=True)
        for s in range(10):
            Image.fromarray(simulate_wbc_crop(c, seed=s, size=200)).save(
                cache / "crops" / c / f"{s}.png"
            )
    train(
        cache / "crops",
        cache / "model",
        epochs=8,
        crop_size=64,
        pixel_size=0.1,
        unit="um",
        seed=0,
        threads=2,
        tta=2,
    )
    return cache / "model"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "docs/images/review.png")
    )
    args = ap.parse_args()
    cache = Path(tempfile.gettempdir()) / "nucleus-ai-review-shot"
    model = small_model(cache)

    import napari
    from napari.utils import DirectLabelColormap
    from qtpy.QtWidgets import QApplication

    from napari_nucleus_ai.cells import measure_cells, to_features
    from napari_nucleus_ai.classify.cells import classify_cells
    from napari_nucleus_ai.samples.smear import simulate_smear
    from napari_nucleus_ai.segment.wbc import segment_wbc
    from napari_nucleus_ai.widgets.review import ReviewWidget, class_colors

    sim = simulate_smear(seed=5, shape=(900, 1200), n_wbc=14)
    um = sim.pixel_size_um
    labels = segment_wbc(sim.image, um)
    table = measure_cells(labels, sim.image, scale=um, unit="um")
    res = classify_cells(str(model), sim.image, labels, table, scale=um, unit="um")
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    viewer.add_image(sim.image, rgb=True, scale=(um, um), name="smear field")
    colors = class_colors(list(res.classes) + ["unidentified", "artefact"])
    cmap = {None: "transparent", 0: "transparent"}
    cmap.update(
        {
            int(lab): colors.get(cls, "#ffffff")
            for lab, cls in zip(res.table["label"], res.table["class"], strict=True)
        }
    )
    viewer.add_labels(
        labels,
        scale=(um, um),
        features=to_features(res.table),
        name="cells (classified)",
        opacity=0.35,
        colormap=DirectLabelColormap(color_dict=cmap),
        metadata={"classes": list(res.classes), "model": "smear-cnn (simulated crops)"},
    )
    w = ReviewWidget(viewer)
    w.open_outputs = False
    w.set_project(tempfile.mkdtemp(prefix="nucleus-ai-shot-"))
    viewer.window.add_dock_widget(w, name="Review", area="right")
    w.zoom_on.setChecked(False)
    for _ in range(4):
        w.confirm()
    w.set_class("artefact")
    w.flush()
    w._refresh_slow()
    w.show_current()
    viewer.reset_view()
    app = QApplication.instance()
    for _ in range(30):
        app.processEvents()
    img = viewer.screenshot(canvas_only=False, flash=False)
    from PIL import Image

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(img)).save(args.out)
    print(f"wrote {args.out}; {len(res.table)} cells, classes {res.counts()}")
    viewer.close()


if __name__ == "__main__":
    main()
