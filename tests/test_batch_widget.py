"""The Batch dock: the layers' source files, run through the batch core, results as layers."""

from __future__ import annotations

import pytest
import tifffile

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.gui


def test_batch_dock_runs_on_layer_sources(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import logging

    from napari_nucleus_ai.samples.smear import simulate_smear

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    src = tmp_path / "field.tif"
    tifffile.imwrite(src, simulate_smear(seed=1, shape=(360, 480), n_wbc=3).image)
    viewer = make_napari_viewer()
    viewer.open(str(src), plugin="napari-nucleus-ai")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Batch")
    assert widget.inputs.value == [str(src)]
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster:
        widget.out.value = tmp_path / "out"
        widget.scheduler.value = cluster.scheduler_address
        n_layers = len(viewer.layers)
        widget.run()
    assert widget.result is not None and widget.result.n_ok == 1
    assert "1 ok" in widget.status.value and widget.report_button.enabled
    assert (tmp_path / "out" / "field_labels.tif").is_file()
    assert len(viewer.layers) == n_layers + 1
    labels = viewer.layers[-1]
    assert labels.data.max() > 0 and "label" in labels.features.columns
    assert tuple(labels.scale) == tuple(viewer.layers[0].scale[-2:])
