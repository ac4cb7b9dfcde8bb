"""The docks' shared base: layer boxes that pick a layer, run buttons that say what is missing,
result layers replaced rather than duplicated, and the public core API the docks use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-nucleus-ai"


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]


@pytest.mark.parametrize(
    ("name", "box", "add"),
    [
        ("Segmentation", "layer", lambda v: v.add_image(np.zeros((32, 32)), name="img")),
        ("Classifier", "labels_layer", lambda v: v.add_labels(np.zeros((32, 32), int), name="img")),
        ("Infection", "layer", lambda v: v.add_image(np.zeros((4, 32, 32)), name="img")),
    ],
)
def test_layer_box_takes_the_only_layer_opened_before_or_after(make_napari_viewer, name, box, add):
    viewer = make_napari_viewer()
    layer = add(viewer)  # opened before the dock
    dock = _dock(viewer, name)
    chosen = getattr(dock, box).value
    assert getattr(chosen, "name", chosen) == layer.name
    assert dock.run_btn.enabled
    viewer2 = make_napari_viewer()
    dock2 = _dock(viewer2, name)
    assert getattr(dock2, box).value is None and not dock2.run_btn.enabled
    layer2 = add(viewer2)  # opened after the dock
    chosen = getattr(dock2, box).value
    assert getattr(chosen, "name", chosen) == layer2.name
    assert dock2.run_btn.enabled


def test_layer_box_prefers_the_selected_layer_and_follows_renames(make_napari_viewer):
    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((32, 32)), name="a")
    b = viewer.add_image(np.zeros((32, 32)), name="b")
    viewer.layers.selection.active = a
    dock = _dock(viewer, "Segmentation")
    assert dock.layer.value.name == "a"  # selected, although not the last one
    viewer.layers.selection.active = b
    assert dock.layer.value.name == "a"  # a choice is kept
    # two images, none selected: nothing is guessed, and the button says what to choose
    from napari_nucleus_ai.widgets.segment import SegmentWidget

    viewer.layers.selection.clear()
    dock2 = SegmentWidget(viewer)
    assert dock2.layer.value is None
    assert not dock2.run_btn.enabled
    assert dock2.run_btn.tooltip == "choose an image or localization layer first"
    viewer.layers.selection.active = b  # selecting a layer fills the empty box
    assert dock2.layer.value is b and dock2.run_btn.enabled
    assert not dock2.run_btn.tooltip
    b.name = "renamed"
    assert "renamed" in [getattr(c, "name", None) for c in dock2.layer.choices]
    viewer.layers.remove(b)
    assert dock2.layer.value is a  # the only image left


def test_classifier_boxes_default_by_kind_and_name(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = _dock(viewer, "Classifier")
    assert not dock.run_btn.enabled
    assert dock.run_btn.tooltip == "choose a Labels layer of cells first"
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), rgb=True, name="smear")
    viewer.add_labels(np.zeros((32, 32), int), name="cells")
    assert dock.image_layer.value == "smear" and dock.labels_layer.value == "cells"
    assert dock.run_btn.enabled and dock.train_layers_btn.enabled


def test_review_dock_takes_a_layer_opened_after_it(make_napari_viewer):
    from napari_nucleus_ai.cells import measure_cells, to_features

    viewer = make_napari_viewer()
    dock = _dock(viewer, "Review")
    assert dock.queue is None
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15], labels[20:30, 20:30] = 1, 2
    table = measure_cells(labels)
    table["class"] = ["a", "b"]
    layer = viewer.add_labels(labels, features=to_features(table), name="cells")
    assert dock.layer.name == layer.name and len(dock.queue) == 2
    dock.detach()


def test_generative_result_layers_are_replaced_not_duplicated(make_napari_viewer):
    from napari_nucleus_ai.widgets.generative import GenerativeWidget

    viewer = make_napari_viewer()
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8], labels[10:18, 10:18] = 1, 2
    lab = viewer.add_labels(labels, name="cells")
    dock = GenerativeWidget(viewer)
    assert dock.cells.value == "cells" and dock.anomaly_btn.enabled
    assert not dock.generate_btn.enabled
    assert dock.generate_btn.tooltip == "choose a diffusion model first"
    lab.features = pd.DataFrame({"label": [1, 2], "anomaly": [0.1, 0.5]})
    dock.show_anomaly()
    first = viewer.layers["anomaly (cells)"]
    lab.features = pd.DataFrame({"label": [1, 2], "anomaly": [0.3, 2.0]})
    dock.show_anomaly()
    names = [ly.name for ly in viewer.layers]
    assert names == ["cells", "anomaly (cells)"]  # one result layer, updated
    assert viewer.layers["anomaly (cells)"] is first
    assert first.data[12, 12] == pytest.approx(2.0)
    assert first.contrast_limits[1] == pytest.approx(2.0)


def test_add_result_replaces_a_layer_it_cannot_update(make_napari_viewer):
    from napari_nucleus_ai.widgets.generative import GenerativeWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="below")
    dock = GenerativeWidget(viewer)
    grey = dock.add_result("image", np.zeros((8, 8)), name="out")
    viewer.add_image(np.zeros((8, 8)), name="above")
    rgb = dock.add_result("image", np.zeros((8, 8, 3), np.uint8), name="out", rgb=True)
    assert rgb is not grey and rgb.rgb
    assert [ly.name for ly in viewer.layers] == ["below", "out", "above"]  # at its place


def test_busy_state_and_cancel(make_napari_viewer, qtbot):
    """A job disables the run button and enables Cancel; cancelling ends it, no thread left."""
    import time

    from napari_nucleus_ai.core.progress import Progress

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16)), name="img")
    dock = _dock(viewer, "Segmentation")

    def slow():
        for i in range(200):
            time.sleep(0.01)
            yield Progress(i, 200)
        return "done"

    results = []
    worker = dock.start_job(slow, on_result=results.append, sync=False)
    assert not dock.run_btn.enabled and dock.cancel_btn.enabled and dock.busy
    dock.cancel_btn.native.click()
    qtbot.waitUntil(lambda: not dock.busy and not worker.is_running, timeout=10_000)
    assert dock.run_btn.enabled and not dock.cancel_btn.enabled
    assert results == [] and dock.cancelled and dock.status.value == "cancelled"


# -- the public core API the docks use instead of private state -----------------------------
def test_review_queue_public_rank_membership_and_take_label():
    from napari_nucleus_ai.review.queue import ReviewQueue, layer_classes, review_colours

    table = pd.DataFrame({"label": [1, 2, 3], "class": ["a", "b", "a"]})
    table["uncertainty"] = [0.1, 0.9, 0.5]
    q = ReviewQueue(table)
    assert q.rank(2) == 0 and q.rank(1) == 2
    assert 2 in q and 7 not in q and "x" not in q
    q.take_label(3, "b")
    assert q.final(3) == "b" and q.is_reviewed(3) and not q.can_undo
    q.take_label(3, None)
    assert not q.is_reviewed(3)
    card = {"classes": [{"name": "b", "colour": "#00ff00"}, {"name": "a", "colour": "#ff0000"}]}
    classes, given = layer_classes({"model_card": card}, table)
    assert classes == ["b", "a"] and given == {"b": "#00ff00", "a": "#ff0000"}
    assert layer_classes({}, table) == (["a", "b"], {})
    colours = review_colours(["b", "a", "unidentified"], given)
    assert colours["a"] == "#ff0000" and list(colours) == ["b", "a", "unidentified"]


def test_store_output_dir(tmp_path):
    from napari_nucleus_ai.review.store import output_dir

    out = output_dir(tmp_path / "project", "reports", "images/field 1.png")
    assert out.parent == tmp_path / "project" / "reports"
    assert out.name.startswith("field_1-")


def test_cell_table_for_any_labels():
    from napari_nucleus_ai.cells import cell_table_for

    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6], labels[10:15, 10:15] = 1, 3
    plain = cell_table_for(labels, None, scale=0.5, unit="um")
    assert plain["label"].tolist() == [1, 3] and (plain["unit"] == "um").all()
    assert plain.loc[0, "area"] == pytest.approx(16 * 0.25)
    feats = pd.DataFrame({"index": [1, 2, 3], "label": [1, 2, 3], "note": ["x", "gone", "z"]})
    kept = cell_table_for(labels, feats)
    assert kept["label"].tolist() == [1, 3] and kept["note"].tolist() == ["x", "z"]
    not_a_table = pd.DataFrame({"anything": [1.0, 2.0]})
    assert cell_table_for(labels, not_a_table)["label"].tolist() == [1, 3]


def test_input_placement_centres_the_network_view():
    from napari_nucleus_ai.models.framing import input_placement

    card = {"input": {"crop_size": 32, "field": 0.5}}
    scale, translate = input_placement(card, 64.0, (50.0, 40.0), (0.5, 0.5), (10.0, 0.0))
    assert scale == pytest.approx([0.5, 0.5])  # 32 of 64 * 0.5 source pixels: one each
    centre = translate + scale * (32 - 1) / 2
    assert centre == pytest.approx([10.0 + 0.5 * 50.0, 0.5 * 40.0])
