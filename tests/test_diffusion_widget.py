"""Generative dock: generate grid, counterfactual for a selected cell, anomaly heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from _diffusion_data import tiny_package, toy_field  # noqa: E402

pytestmark = pytest.mark.gui


def test_generative_dock(make_napari_viewer, tmp_path):
    from napari_nucleus_ai.widgets.generative import GenerativeWidget

    pkg = tiny_package(tmp_path / "tiny")
    viewer = make_napari_viewer()
    img, labels, _ = toy_field()
    viewer.add_image(img, name="field", rgb=True, scale=(0.5, 0.5))
    lab = viewer.add_labels(labels, name="cells", scale=(0.5, 0.5))
    dock = GenerativeWidget(viewer)
    viewer.window.add_dock_widget(dock)  # napari then resets the dock's choices on layer changes
    dock.model.value = str(pkg)
    assert list(dock.klass.choices) == ["red blob", "blue ring", "green bar"]

    dock.klass.value = "blue ring"
    dock.n.value, dock.steps.value = 4, 5
    work = dock.run_generate(sync=True)
    assert work.error is None
    grid = viewer.layers["synthetic blue ring"]
    assert grid.rgb and grid.data.shape == (2 * 18 + 2, 2 * 18 + 2, 3)
    assert list(dock.klass.choices) == [
        "red blob",
        "blue ring",
        "green bar",
    ]  # survives a new layer
    assert set(dock.image.choices) - {None} == {"field", "synthetic blue ring"}

    dock.image.value, dock.cells.value = "field", "cells"
    lab.selected_label = 2
    assert dock.cell.value == 2
    work = dock.run_counterfactual(sync=True)
    assert work.error is None, work.error
    names = [ly.name for ly in viewer.layers]
    cf = next(viewer.layers[n] for n in names if n.startswith("counterfactual 2:"))
    assert cf.data.shape == (16, 16)
    # the map covers the cell's window: its world extent centres on the cell
    ys, xs = np.nonzero(labels == 2)
    centre = cf.translate + cf.scale * (np.array(cf.data.shape) - 1) / 2
    np.testing.assert_allclose(centre, 0.5 * np.array([ys.mean(), xs.mean()]), atol=1.0)
    assert any(n.startswith("cell 2 as ") for n in names)

    lab.features = pd.DataFrame({"label": [1, 2, 3], "anomaly": [0.1, 0.5, 2.0]})
    dock.show_anomaly()
    heat = viewer.layers["anomaly (cells)"].data
    assert heat[labels == 3].min() == pytest.approx(2.0) and np.isnan(heat[labels == 0]).all()


def test_dock_refuses_non_diffusion_models(make_napari_viewer, tmp_path):
    from napari_nucleus_ai.widgets.generative import GenerativeWidget

    dock = GenerativeWidget(make_napari_viewer())
    bad = tmp_path / "nope.zip"
    bad.write_bytes(b"not a zip")
    dock.model.value = str(bad)
    assert dock.klass.choices == () or list(dock.klass.choices) == []
    assert "nope.zip" in dock.status.value
    assert dock.run_generate(sync=True) is None
