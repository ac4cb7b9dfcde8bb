"""Make docs/images/batch.png: the Batch dock after a run on two synthetic smear fields.

Run: ``xvfb-run -a .venv/bin/python benchmarks/batch_screenshot.py [--out docs/images/batch.png]``

Two synthetic smear fields (the smear simulator) are written as TIFFs and opened, plus a
broken file in an extra folder; the dock runs the batch on an in-process Dask cluster
and the labels come back as layers.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "docs/images/batch.png")
    )
    args = ap.parse_args()
    os.environ["NAPARI_NUCLEUS_AI_SYNC"] = "1"
    import distributed
    import napari
    import tifffile

    from napari_nucleus_ai.samples.smear import simulate_smear

    tmp = Path(tempfile.mkdtemp(prefix="batch_shot_"))
    (tmp / "more").mkdir()
    for i in range(2):
        tifffile.imwrite(
            tmp / f"field{i}.tif", simulate_smear(seed=10 + i, shape=(720, 960), n_wbc=5).image
        )
    (tmp / "more" / "corrupt.tif").write_bytes(b"II*\x00 truncated")
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.open(str(tmp / "field0.tif"), plugin="napari-nucleus-ai")
    viewer.open(str(tmp / "field1.tif"), plugin="napari-nucleus-ai")
    viewer.layers[-1].visible = False
    _, w = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Batch")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0", silence_logs=logging.ERROR) as cl:  # fmt: skip
        w.folder.value = tmp / "more"
        w.out.value = tmp / "out"
        w.scheduler.value = cl.scheduler_address
        w.run()
    viewer.layers[-1].visible = False  # field1's labels; field0's stay on top of field0
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    viewer.screenshot(args.out, canvas_only=False)
    print(args.out, w.status.value)
    viewer.close()


if __name__ == "__main__":
    main()
