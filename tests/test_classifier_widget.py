"""The Classifier dock: classify a labelled image into class-coloured Labels + uncertainty, train."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.gui

from test_train_predict import TINY, blob  # noqa: E402


@pytest.fixture
def scene():
    image = np.full((100, 100, 3), 225, np.uint8)
    labels = np.zeros((100, 100), np.int32)
    yy, xx = np.mgrid[:100, :100]
    for i, (y, x, k) in enumerate([(25, 25, 0), (25, 75, 1), (75, 25, 1), (75, 75, 0)]):
        image[y - 20 : y + 20, x - 20 : x + 20] = blob(k, 10 + i)
        labels[(yy - y) ** 2 + (xx - x) ** 2 < 11**2] = i + 1
    return image, labels


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet

    ts = TrainingSet(
        [blob(i % 2, i) for i in range(16)],
        [i % 2 for i in range(16)],
        ["disc", "square"],
        "brightfield_rgb",
        pixel_size=0.5,
        unit="um",
    )
    out = tmp_path_factory.mktemp("m") / "tiny.zip"
    train(ts, out, seed=0, **TINY)
    return out


def test_dock_classifies_into_layers(make_napari_viewer, qtbot, scene, tiny_model, monkeypatch):
    from napari.utils.colormaps import DirectLabelColormap

    from napari_nucleus_ai.widgets.classifier import FILE, ClassifierWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    image, labels = scene
    viewer.add_image(image, name="smear", rgb=True, scale=(0.5, 0.5), units="um")
    viewer.add_labels(labels, name="cells", scale=(0.5, 0.5), units="um")
    w = ClassifierWidget(viewer)
    w.model.value = FILE
    w.model_file.value = str(tiny_model)
    assert "2 classes" in w.model_info.value
    w.labels_layer.value, w.image_layer.value = "cells", "smear"
    w.threshold.value = 1.0
    w.run()
    layer = viewer.layers["cells classes"]
    feats = layer.features
    assert feats["label"].tolist() == [1, 2, 3, 4]
    assert feats["class"].tolist() == ["disc", "square", "square", "disc"]
    assert {"probability", "p_disc", "p_square", "uncertainty", "index"} <= set(feats.columns)
    assert isinstance(layer.colormap, DirectLabelColormap)
    colour_disc = layer.colormap.map(1)
    assert np.allclose(colour_disc, layer.colormap.map(4)) and not np.allclose(
        colour_disc, layer.colormap.map(2)
    )
    assert tuple(layer.scale) == (0.5, 0.5)
    unc = viewer.layers["uncertainty"]
    assert unc.data[25, 25] == pytest.approx(feats.loc[0, "uncertainty"]) and unc.data[0, 0] == 0
    assert "disc:&nbsp;<b>2</b>" in w.legend.value and "square:&nbsp;<b>2</b>" in w.legend.value
    # hovering a cell reports its class and probability
    status = layer.get_status((12.5, 12.5), world=True)
    text = status["coordinates"] if isinstance(status, dict) else status
    assert "disc" in text
    # saliency over the selected cell
    layer.selected_label = 2
    sal = w.show_saliency()
    assert sal is not None and sal.data.max() == pytest.approx(1.0)
    assert np.allclose(
        np.asarray(sal.translate) + np.asarray(sal.scale) * np.array(sal.data.shape) / 2,
        [12.5, 37.5],
        atol=1.5,
    )
    w.close()


def test_dock_trains_with_live_curve(make_napari_viewer, qtbot, scene, tmp_path, monkeypatch):
    from napari_nucleus_ai.widgets.classifier import ClassifierWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    image, labels = scene
    viewer.add_image(image, name="smear", rgb=True, scale=(0.5, 0.5), units="um")
    layer = viewer.add_labels(labels, name="cells", scale=(0.5, 0.5), units="um")
    import pandas as pd

    layer.features = pd.DataFrame(
        {
            "index": [1, 2, 3, 4],
            "label": [1, 2, 3, 4],
            "class": ["disc", "square", "square", "disc"],
        }
    )
    w = ClassifierWidget(viewer)
    w.labels_layer.value, w.image_layer.value = "cells", "smear"
    w.arch.value = "smallcnn"  # trained by gradient descent: one plotted row per epoch
    w.epochs.value = 2
    w.train_out.value = str(tmp_path / "m.zip")
    w.train_from_layers()
    assert len(w.plot.rows) == 2 and "train_loss" in w.plot.rows[0]
    assert (tmp_path / "m.zip").is_file() and w.model_file.value.name == "m.zip"
    assert w.run_btn.enabled and not w.cancel_btn.enabled
    w.close()


def test_dock_default_morph_fit_is_one_plotted_point(
    make_napari_viewer, qtbot, scene, tmp_path, monkeypatch
):
    """`auto` on RGB cells is `morph`; with ImageNet features it has nothing to train by
    gradient descent, so the plot gets one record (the validation result), not none."""
    from napari_nucleus_ai.models.nets.imagenet import available
    from napari_nucleus_ai.widgets.classifier import ClassifierWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    image, labels = scene
    viewer.add_image(image, name="smear", rgb=True)
    layer = viewer.add_labels(labels, name="cells")
    import pandas as pd

    layer.features = pd.DataFrame(
        {"label": [1, 2, 3, 4], "class": ["disc", "square", "square", "disc"]}
    )
    w = ClassifierWidget(viewer)
    w.labels_layer.value, w.image_layer.value = "cells", "smear"
    assert w.imagenet.value == w.imagenet.enabled == available()  # on where installed
    w.imagenet.value = False
    assert w._train_options()["imagenet"] is None
    w.imagenet.value = available()
    w.epochs.value = 2
    w.train_out.value = str(tmp_path / "m.zip")
    w.train_from_layers()
    assert (tmp_path / "m.zip").is_file()
    params = w.package.card["architecture"]["params"]
    if available():
        assert params["imagenet"] == "efficientnet-lite0" and params["cnn"] is False
        assert len(w.plot.rows) == 1 and w.plot.rows[0]["epoch"] == 1
    else:  # morph with its CNN: epochs as before
        assert params["imagenet"] is None and len(w.plot.rows) == 2
    w.close()


def test_bad_initial_weights_file_is_one_notification_and_no_model(
    make_napari_viewer, qtbot, scene, tmp_path, monkeypatch
):
    """Threaded, as in use: the worker's error becomes one notification; nothing is saved."""
    import napari.utils.notifications as notes

    from napari_nucleus_ai.widgets.classifier import ClassifierWidget

    shown, relayed = [], []
    monkeypatch.setattr(notes, "show_error", shown.append)
    monkeypatch.setattr(  # napari's own relay of worker errors: must not fire a second time
        notes.notification_manager, "receive_error", lambda *a, **k: relayed.append(a)
    )
    viewer = make_napari_viewer()
    image, labels = scene
    viewer.add_image(image, name="smear", rgb=True)
    layer = viewer.add_labels(labels, name="cells")
    import pandas as pd

    layer.features = pd.DataFrame(
        {"index": [1, 2, 3, 4], "label": [1, 2, 3, 4], "class": ["a", "b", "b", "a"]}
    )
    bad = tmp_path / "imagenet.safetensors"
    bad.write_bytes(b"\x00garbage")
    w = ClassifierWidget(viewer)
    w.labels_layer.value, w.image_layer.value = "cells", "smear"
    w.epochs.value = 1
    w.init_weights.value = str(bad)
    w.train_out.value = str(tmp_path / "m.zip")
    assert w._train_options()["init_weights"] == str(bad)
    monkeypatch.delenv("NAPARI_NUCLEUS_AI_SYNC", raising=False)
    w.train_from_layers()
    qtbot.waitUntil(lambda: not w.busy and not w.worker.is_running, timeout=60000)
    assert len(shown) == 1 and "imagenet.safetensors" in shown[0]
    assert "not a readable weights file" in shown[0] and "\n" not in shown[0]
    assert relayed == []
    assert not (tmp_path / "m.zip").exists() and w.train_layers_btn.enabled
    w.close()


def test_dock_classifies_a_plain_labels_layer_from_the_button(
    make_napari_viewer, qtbot, scene, tiny_model, monkeypatch
):
    """Layers opened after the dock are chosen; a Labels layer without a cell table is
    measured; columns its features already have are kept; a re-run updates the result."""
    import pandas as pd

    from napari_nucleus_ai.widgets.classifier import FILE, ClassifierWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    w = ClassifierWidget(viewer)
    w.model.value = FILE
    w.model_file.value = str(tiny_model)
    image, labels = scene
    viewer.add_image(image, name="smear", rgb=True, scale=(0.5, 0.5), units="um")
    layer = viewer.add_labels(labels, name="painted", scale=(0.5, 0.5), units="um")
    assert len(layer.features) == 0
    assert w.labels_layer.value == "painted" and w.image_layer.value == "smear"
    w.run_btn.native.click()
    result = viewer.layers["painted classes"]
    assert result.features["label"].tolist() == [1, 2, 3, 4]
    assert {"centroid_y", "area", "class"} <= set(result.features.columns)
    # features with a column of their own: kept beside the predictions
    layer.features = pd.DataFrame({"label": [1, 2, 3, 4], "note": ["a", "b", "c", "d"]})
    w.run_btn.native.click()
    assert viewer.layers["painted classes"] is result  # updated, not re-added
    assert result.features["note"].tolist() == ["a", "b", "c", "d"]
    names = [ly.name for ly in viewer.layers]
    assert names.count("painted classes") == 1 and names.count("uncertainty") == 1
    w.close()


def test_threaded_result_is_shown_one_layer_per_turn_and_equals_the_sync_one(
    make_napari_viewer, qtbot, scene, tiny_model, monkeypatch
):
    """The worker builds the result layers; the GUI thread inserts them in separate
    event-loop turns (a timer ticks between them), and the layers, features, colours,
    metadata and legend are those of the synchronous path. The dock stays busy until
    the last step; no worker is left running."""
    from qtpy.QtCore import QTimer

    from napari_nucleus_ai.widgets.classifier import FILE, ClassifierWidget

    monkeypatch.delenv("NAPARI_NUCLEUS_AI_SYNC", raising=False)
    image, labels = scene
    runs = []
    for sync in (True, False):
        viewer = make_napari_viewer()
        viewer.add_image(image, name="smear", rgb=True, scale=(0.5, 0.5), units="um")
        viewer.add_labels(labels, name="cells", scale=(0.5, 0.5), units="um")
        w = ClassifierWidget(viewer)
        w.sync = sync
        w.model.value = FILE
        w.model_file.value = str(tiny_model)
        w.labels_layer.value, w.image_layer.value = "cells", "smear"
        w.threshold.value = 1.0
        ticks, inserted = [0], {}
        timer = QTimer()
        timer.timeout.connect(lambda t=ticks: t.__setitem__(0, t[0] + 1))
        viewer.layers.events.inserted.connect(
            lambda e, t=ticks, got=inserted: got.setdefault(e.value.name, t[0])
        )
        timer.start(5)
        try:
            worker = w.run()
            qtbot.waitUntil(lambda w=w, k=worker: not w.busy and not k.is_running, timeout=120_000)
        finally:
            timer.stop()
        runs.append((viewer, w, inserted))
    (v0, w0, _), (v1, w1, steps) = runs
    assert steps["cells classes"] < steps["uncertainty"], steps  # two event-loop turns
    a, b = v0.layers["cells classes"], v1.layers["cells classes"]
    assert v1.layers.selection.active is b
    assert a.features.equals(b.features) and np.array_equal(a.data, b.data)
    assert a.colormap.color_dict.keys() == b.colormap.color_dict.keys()
    for key in a.colormap.color_dict:
        assert np.allclose(a.colormap.map(key or 0), b.colormap.map(key or 0))
    assert a.metadata == b.metadata and a.metadata["model_path"] == str(tiny_model)
    assert np.array_equal(v0.layers["uncertainty"].data, v1.layers["uncertainty"].data)
    assert not v1.layers["uncertainty"].visible and b.opacity == pytest.approx(0.6)
    assert w0.legend.value == w1.legend.value and "disc" in w1.legend.value
    w0.close()
    w1.close()
