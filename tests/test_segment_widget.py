"""The Segmentation dock: a Labels layer with the cell table as features, edits followed."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def smear():
    from napari_nucleus_ai.samples.smear import simulate_smear

    return simulate_smear(seed=2, shape=(360, 480), n_wbc=3)


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Segmentation")
    return widget


def test_dock_segments_smear_and_table_follows_edits(make_napari_viewer, qtbot, smear):
    viewer = make_napari_viewer()
    um = smear.pixel_size_um
    img = viewer.add_image(smear.image, rgb=True, scale=(um, um), units="micrometer", name="smear")
    dock = _dock(viewer)
    dock.layer.value = img
    assert dock.method.value == "wbc"  # RGB layer -> white cells
    assert dock.pixel.value == pytest.approx(um)
    dock.run(sync=True)
    labels = viewer.layers["smear wbc"]
    n_true = int(smear.cells.max())
    assert labels.data.shape == smear.image.shape[:2]
    assert tuple(labels.scale) == pytest.approx((um, um))
    feats = labels.features
    assert len(feats) == int(labels.data.max()) == n_true
    assert {"label", "index", "centroid_y", "area", "mean_r", "unit"} <= set(feats.columns)
    assert (feats["unit"] == "um").all()
    assert dock.count.value == str(n_true)
    # a prediction column survives edits; erasing a cell removes its row; painting a new one adds it
    feats = feats.copy()
    feats["class"] = "neutrophil"
    labels.features = feats
    first = int(feats["label"].iloc[0])
    labels.data = np.where(labels.data == first, 0, labels.data)
    table = dock.sync_table(labels, img)
    assert first not in set(table["label"]) and len(table) == n_true - 1
    assert (table["class"] == "neutrophil").all()
    labels.paint((5, 5), 99)  # brush in data coordinates
    table = dock.sync_table(labels, img)
    assert 99 in set(table["label"])
    assert table.loc[table["label"] == 99, "class"].isna().all()
    assert len(labels.features) == len(table)
    # a shapes ROI (world coordinates, um): only the cells whose centre is inside, placed right
    h, w = smear.image.shape[:2]
    roi = np.array([[0, 0], [0, w / 2], [h, w / 2], [h, 0]]) * um
    viewer.add_shapes([roi], shape_type="polygon", name="roi")
    dock.region.reset_choices()
    dock.region.value = "roi"
    dock.run(sync=True)
    part = viewer.layers["smear wbc"]
    cx = smear.table["centroid_x"].to_numpy()
    assert part.data.max() == int((cx < w / 2 * um).sum())
    assert (part.features["centroid_x"] < w / 2 * um + 1).all()
    dock.region.value = "visible region"
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (h / 2 * um, w / 2 * um)
    dock.run(sync=True)
    assert viewer.layers["smear wbc"].data.max() >= 1


def test_dock_nuclei_with_method_switch_and_error_message(make_napari_viewer, qtbot):
    from _segment_data import nuclei_image

    viewer = make_napari_viewer()
    img, centres = nuclei_image(3)
    layer = viewer.add_image(img, name="hoechst")
    dock = _dock(viewer)
    dock.layer.value = layer
    assert dock.method.value == "nuclei"
    dock.run(sync=True)
    assert viewer.layers["hoechst nuclei"].data.max() == len(centres)
    # wbc on a grey image: a one-line message, no layer
    dock.method.value = "wbc"
    dock.run(sync=True)
    assert "colour" in dock.status.value and "hoechst wbc" not in viewer.layers
    assert dock.run_btn.enabled


def test_dock_storm_nuclei_from_localization_layer(make_napari_viewer, qtbot):
    from napari_nucleus_ai.localizations.layers import table_layers
    from napari_nucleus_ai.localizations.table import from_dataframe
    from napari_nucleus_ai.samples.storm import simulate_field

    viewer = make_napari_viewer()
    df = simulate_field(n_nuclei=2, seed=1, n_localizations=15_000, field_nm=(25_000.0, 25_000.0))
    data, kwargs, _ = table_layers(from_dataframe(df), points=False, pixel_size_nm=50.0)[0]
    layer = viewer.add_image(data, **kwargs)
    dock = _dock(viewer)
    dock.layer.value = layer
    assert dock.method.value == "storm-nuclei"
    dock.run(sync=True)
    out = viewer.layers[f"{layer.name} storm-nuclei"]
    assert out.data.max() == 2 and (out.features["unit"] == "nm").all()
    assert tuple(out.scale) == pytest.approx((100.0, 100.0))
    assert "nucleus" in out.metadata["localizations"].columns
