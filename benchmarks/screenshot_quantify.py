"""Screenshot of the Localizations dock's Measure section on a real file (docs image).

::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/screenshot_quantify.py \\
        [--file /work/shared/data/smlm/colicoords/01_storm.csv] \\
        [--out docs/images/quantification-measure.png]

Opens the file in the dock, merges blinks (50 nm, 1 dark frame), measures NeNA and FRC,
clusters with DBSCAN (eps 20 nm, min 5), zooms into the densest 6 um and saves the window.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default="/work/shared/data/smlm/colicoords/01_storm.csv")
    ap.add_argument("--out", default="docs/images/quantification-measure.png")
    a = ap.parse_args(argv)
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)  # screenshot size only
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Localizations")
    dock.sync = True
    dock.native.setMinimumWidth(470)  # the whole dock in the picture, no sideways scrolling
    dock.open_file(path=a.file)
    dock.measure_section.native.click()
    dock.m_merge.value, dock.m_radius.value = True, 50.0
    dock.m_nena.value, dock.m_frc.value = True, True
    dock.m_cluster.value = "dbscan"
    dock.m_eps.value, dock.m_min.value = 20.0, 5
    dock.zoom.value = False  # the cluster points stay on top of the density image
    dock.measure()
    df = dock.last_measure.data
    h, xe, ye = np.histogram2d(df["x_nm"], df["y_nm"], bins=[20, 20])
    i, j = np.unravel_index(np.argmax(h), h.shape)
    centre = ((ye[j] + ye[j + 1]) / 2, (xe[i] + xe[i + 1]) / 2)
    viewer.camera.center = centre
    viewer.camera.zoom = 900 / 6000  # 6 um across about 900 screen pixels
    dock.native.verticalScrollBar().setValue(dock.native.verticalScrollBar().maximum())
    for _ in range(20):
        napari.qt.get_qapp().processEvents()
    viewer.screenshot(a.out, canvas_only=False)
    print(a.out, dock.m_result.value)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
