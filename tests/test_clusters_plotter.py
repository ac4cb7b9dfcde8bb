"""napari-clusters-plotter plots the cell table a Labels layer carries in ``features`` (issue 19).

napari-clusters-plotter is an optional test dependency (it is not in ``[testing]``: it pulls
numba, umap-learn and matplotlib widgets). It reads any layer's ``features``; the cell table
(``cells.to_features``) is a plain DataFrame with napari's ``index`` column, so its numeric
columns become the plot's axes and each point is one cell.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

pytest.importorskip(
    "napari_clusters_plotter",
    reason="napari-clusters-plotter (optional test dependency) is not installed",
)


@pytest.fixture
def cells_layer():
    """A simulated smear field segmented by the plugin: labels + the cell table as features."""
    from napari.layers import Labels

    from napari_nucleus_ai.cells import to_features
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.samples.smear import simulate_smear_field
    from napari_nucleus_ai.segment.run import segment

    img, _, _ = simulate_smear_field(seed=5, n_wbc=6, shape=(500, 600))
    seg = run_sync(segment(img, "wbc", pixel_size_um=0.1))
    assert len(seg.table) >= 3
    layer = Labels(seg.labels, features=to_features(seg.table), scale=(0.1, 0.1), name="cells")
    return layer, seg.table


def test_plotter_plots_the_cell_table(make_napari_viewer, cells_layer):
    from napari_clusters_plotter import PlotterWidget

    layer, table = cells_layer
    viewer = make_napari_viewer()
    viewer.add_layer(layer)
    plotter = PlotterWidget(viewer)
    viewer.window.add_dock_widget(plotter, area="right")
    viewer.layers.selection.active = layer
    assert plotter.layers == [layer]

    x, y = "area", "eccentricity"  # measured by cells.measure_cells
    choices = [plotter._selectors["x"].itemText(i) for i in range(plotter._selectors["x"].count())]
    assert {x, y} <= set(choices)  # the table's measurements are offered as axes
    plotter.x_axis, plotter.y_axis = x, y
    plotter._replot()
    plotted = np.asarray(plotter.plotting_widget.active_artist.data)
    # one point per cell, at the cell's measurements
    np.testing.assert_allclose(plotted, table[[x, y]].to_numpy(float))
    # a manual cluster drawn in the plot goes back into the layer's features, per cell
    assert len(layer.features["MANUAL_CLUSTER_ID"]) == len(table)
