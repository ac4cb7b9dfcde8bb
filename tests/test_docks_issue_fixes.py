"""The docks as a user meets them: units, corrections keyed by the image, defaults, dead ends,
messages, looks and screen fit (one test per problem, each failing on the docks before it)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.cells import measure_cells, to_features

pytestmark = pytest.mark.gui
PLUGIN = "napari-nucleus-ai"


def _cells(n=4, size=120):
    labels = np.zeros((size, size), np.int32)
    for i in range(n):
        y, x = 20 + 25 * i, 15 + 22 * i
        labels[y - 6 : y + 6, x - 6 : x + 6] = i + 1
    return labels


def _classified(labels, scale=1.0, unit="px", source=None):
    table = measure_cells(labels, scale=scale, unit=unit)
    n = len(table)
    table["p_a"] = np.linspace(0.2, 0.9, n)
    table["p_b"] = 1 - table["p_a"]
    table["class"] = np.where(table["p_a"] > 0.5, "a", "b")
    table["uncertainty"] = 1 - np.abs(table["p_a"] - 0.5)
    if source is not None:
        table["source"] = source
    return table


def _review(viewer, qtbot):
    from napari_nucleus_ai.widgets.review import ReviewWidget

    w = ReviewWidget(viewer)
    w.open_outputs = False
    qtbot.addWidget(w)
    return w


# -- 1. one frame for a layer, its table and the markers ---------------------------------
def test_review_marks_cells_of_a_pixel_layer_whose_table_is_in_um(
    make_napari_viewer, qtbot, tmp_path
):
    """A wbc field: layer in pixels, table in um (pixel size from red cells)."""
    viewer = make_napari_viewer()
    labels = _cells()
    table = _classified(labels, scale=0.084, unit="um")
    layer = viewer.add_labels(
        labels, features=to_features(table), name="f classes", metadata={"pixel_size_um": 0.084}
    )
    w = _review(viewer, qtbot)
    w.set_project(str(tmp_path / "p"))
    assert w.layer is layer
    cell = w.queue.current
    ys, xs = np.nonzero(labels == cell)
    square = viewer.layers["current cell"]
    assert np.allclose(square.translate, (ys.mean(), xs.mean()), atol=0.6)
    assert (layer.features["unit"] == "px").all()  # the layer's table is in its own frame
    w.confirm()
    w.flush()
    w.refresh_marks()
    ring = viewer.layers["reviewed cells"].data[0]
    ys, xs = np.nonzero(labels == w.queue.order[0])
    assert np.allclose(ring, (ys.mean(), xs.mean()), atol=0.6)
    w.detach()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet
    from test_classifier_widget import TINY, blob

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


def test_classifier_keeps_the_table_in_the_layer_frame_and_the_image_link(
    make_napari_viewer, tmp_path, tiny_model, monkeypatch
):
    """Items 1, 2, 5: the classes table is in the layer's pixels, keeps its image file as
    ``source`` and the layer remembers its image and model files."""
    from PIL import Image

    from napari_nucleus_ai.widgets.classifier import FILE, ClassifierWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    labels = _cells(4, 120)
    rgb = np.full((120, 120, 3), 220, np.uint8)
    rgb[labels > 0] = (90, 40, 120)
    path = tmp_path / "field.png"
    Image.fromarray(rgb).save(path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    image = viewer.layers[-1]
    viewer.add_labels(labels, name="cells", metadata={"pixel_size_um": 0.5,
                                                      "source_layer": image.name})  # fmt: skip
    w = ClassifierWidget(viewer)
    w.model.value = FILE
    w.model_file.value = str(tiny_model)
    w.labels_layer.value, w.image_layer.value = "cells", image.name
    w.run()
    out = viewer.layers["cells classes"]
    feats = out.features
    assert (feats["unit"] == "px").all()
    ys, xs = np.nonzero(labels == 1)
    assert feats.loc[0, "centroid_y"] == pytest.approx(ys.mean())
    assert set(feats["source"]) == {str(path)}
    assert out.metadata["image_path"] == str(path)
    assert out.metadata["model_path"] == str(tiny_model)
    w.close()


# -- 2. corrections keyed by the image ----------------------------------------------------------
def _open_classified(viewer, path, labels):
    viewer.open(str(path), plugin=PLUGIN)
    image = viewer.layers[-1]
    table = _classified(labels)  # no source column: a hand-painted, classified layer
    return viewer.add_labels(
        labels, features=to_features(table), name="cells classes",
        metadata={"source_layer": image.name},
    )  # fmt: skip


def test_corrections_follow_the_image_not_the_layer_name(make_napari_viewer, qtbot, tmp_path):
    from PIL import Image

    from napari_nucleus_ai.review.store import STORE_NAME

    labels = _cells()
    paths = []
    for k, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "field.png")
        Image.fromarray(np.full((120, 120, 3), 100 + 50 * k, np.uint8)).save(paths[-1])
    v1 = make_napari_viewer()
    _open_classified(v1, paths[0], labels)
    w1 = _review(v1, qtbot)
    assert w1.image_id == "field.png"  # the file, relative to the store beside it
    w1.confirm()
    w1.confirm()
    assert w1.flush()
    assert (tmp_path / "a" / STORE_NAME).exists()  # beside the data
    w1.detach()
    # another image whose result layer has the same name inherits nothing
    v2 = make_napari_viewer()
    _open_classified(v2, paths[1], labels)
    w2 = _review(v2, qtbot)
    assert w2.queue.reviewed == 0
    w2.detach()
    # the same image opened again gets its corrections back
    v3 = make_napari_viewer()
    _open_classified(v3, paths[0], labels)
    w3 = _review(v3, qtbot)
    assert w3.queue.reviewed == 2
    w3.detach()


def test_images_without_a_file_are_keyed_by_their_pixels(make_napari_viewer, qtbot, tmp_path):
    labels = _cells()
    ids = []
    for value in (10, 200):
        viewer = make_napari_viewer()
        viewer.add_image(np.full((120, 120), value, np.uint8), name="img")
        viewer.add_labels(labels, features=to_features(_classified(labels)), name="cells classes",
                          metadata={"image_layer": "img"})  # fmt: skip
        w = _review(viewer, qtbot)
        ids.append(w.image_id)
        w.detach()
    assert ids[0] != ids[1] and all(i.startswith("sha1:") for i in ids)


# -- 3. undo after a fill ------------------------------------------------------------------------
def test_undo_after_fill_brings_back_the_row(make_napari_viewer, qtbot):
    from napari_nucleus_ai.widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    labels = _cells()
    layer = viewer.add_labels(labels.copy(), features=to_features(measure_cells(labels)), name="c")
    dock = SegmentWidget(viewer)
    dock._watch(layer, None)
    layer.fill((20, 15), 0)
    qtbot.waitUntil(lambda: 1 not in set(layer.features["label"]), timeout=3000)
    layer.undo()
    qtbot.waitUntil(lambda: 1 in set(layer.features["label"]), timeout=3000)
    assert len(layer.features) == 4


# -- 5. model pickers take files -------------------------------------------------------------------
def test_retrain_asks_for_a_model_file_and_infection_takes_files(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from magicgui.types import FileDialogMode
    from qtpy.QtWidgets import QFileDialog

    from napari_nucleus_ai.widgets import _review_outputs as outs
    from napari_nucleus_ai.widgets.infection import InfectionWidget

    asked = []
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *a, **k: asked.append("file") or ("", "")
    )
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", lambda *a, **k: asked.append("dir") or ""
    )
    viewer = make_napari_viewer()
    labels = _cells()
    viewer.add_labels(labels, features=to_features(_classified(labels)), name="cells classes")
    w = _review(viewer, qtbot)
    w.set_project(str(tmp_path / "p"))
    assert outs.retrain_dialog(w) is None
    assert asked == ["file"]
    w.detach()
    dock = InfectionWidget(viewer)
    assert dock.model.mode == FileDialogMode.EXISTING_FILE


# -- 6. no file, no folder, no model: the button says so, nothing runs on the cwd ------------------
def test_buttons_need_their_file_folder_or_model(make_napari_viewer, monkeypatch):
    from napari_nucleus_ai.widgets.classifier import ClassifierWidget
    from napari_nucleus_ai.widgets.generative import GenerativeWidget
    from napari_nucleus_ai.widgets.localizations import LocalizationsWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 40)), name="img")
    viewer.add_labels(_cells(2, 40), name="cells")
    cls = ClassifierWidget(viewer)
    started = []
    monkeypatch.setattr(type(cls), "start_job", lambda *a, **k: started.append(a))
    assert not cls.train_btn.enabled and cls.train_btn.tooltip == "choose a training folder first"
    assert cls.train_from_folder() is None and not started
    loc = LocalizationsWidget(viewer)
    assert not loc.open_btn.enabled
    assert loc.open_file() is None and loc.status.value == "choose a localization file first"
    gen = GenerativeWidget(viewer)
    assert not gen.counterfactual_btn.enabled
    assert gen.run_counterfactual() is None and "diffusion model" in gen.status.value


# -- 7. the classifier follows the Settings dock ------------------------------------------------------
def test_classifier_device_follows_settings(make_napari_viewer, monkeypatch):
    from napari_nucleus_ai.core.settings import set_setting
    from napari_nucleus_ai.widgets.classifier import ClassifierWidget

    set_setting("device", "cuda")
    viewer = make_napari_viewer()
    viewer.add_labels(_cells(2, 40), name="cells")
    w = ClassifierWidget(viewer)
    got = {}
    monkeypatch.setattr(type(w), "start_job", lambda *a, **k: got.update(k))
    w.run()
    assert got["device"] is None  # None: classify_cells / select_device read the setting
    assert w._train_options()["device"] is None
    set_setting("device", "auto")


# -- 8. slide loading follows the zoom and keeps units ---------------------------------------------
def test_slide_level_follows_zoom_and_loaded_layer_has_units(make_napari_viewer, monkeypatch):
    from napari_nucleus_ai.widgets.slide import SlideWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    base = np.random.default_rng(0).integers(0, 255, (2048, 2048), dtype=np.uint8)
    pyramid = [base[:: 2**k, :: 2**k] for k in range(4)]
    layer = viewer.add_image(pyramid, multiscale=True, name="slide", scale=(0.25, 0.25),
                             units="um", metadata={"pixel_size_um": [0.25, 0.25]})  # fmt: skip
    dock = SlideWidget(viewer)
    from napari_nucleus_ai.widgets._compat import set_view

    set_view(viewer, layer, center=(256.0, 256.0), zoom=1 / 0.25)  # 1 screen px = 1 slide px
    dock._update_view()
    assert dock.level.value() == 0
    dock.load()
    loaded = viewer.layers[-1]
    assert loaded.name.startswith("slide L0") and str(loaded.units[-1]) == "micrometer"
    assert min(loaded.data.shape) > 100  # what is on screen, not a 15 x 14 px block
    set_view(viewer, layer, zoom=1 / (0.25 * 8))  # 8 slide px per screen px
    dock._update_view()
    assert dock.level.value() == 3


# -- 9. the visible region is what the canvas shows ---------------------------------------------------
def test_visible_region_uses_the_real_canvas_size(make_napari_viewer):
    from napari_nucleus_ai.widgets._compat import canvas_hw
    from napari_nucleus_ai.widgets.segment import SegmentWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 1100)
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    layer = viewer.add_image(np.zeros((3000, 3000)), name="img")
    dock = SegmentWidget(viewer)
    from napari_nucleus_ai.widgets._compat import set_view

    set_view(viewer, layer, center=(1500, 1500), zoom=0.5)
    lo, hi = dock._visible_world(layer)
    h, w = canvas_hw(viewer)
    assert (h, w) != (600.0, 800.0)
    assert np.allclose(hi - lo, (h / 0.5, w / 0.5), rtol=0.02)


# -- 10. review waits for classified cells ------------------------------------------------------------
def test_review_ignores_a_bare_segmentation_and_takes_the_classes(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    labels = _cells()
    viewer.add_labels(labels, features=to_features(measure_cells(labels)), name="seg")
    w = _review(viewer, qtbot)
    w.set_project(str(tmp_path / "p"))
    assert w.layer is None and w.queue is None
    classes = viewer.add_labels(
        labels, features=to_features(_classified(labels)), name="seg classes"
    )
    assert w.layer is classes and len(w.queue) == 4
    w.detach()


# -- 11, 12. localizations: empty filters, ROI units, points, zoom layer ------------------------------
@pytest.fixture
def locs_csv(tmp_path):
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({
        "frame": rng.integers(1, 200, n), "x [nm]": rng.uniform(0, 5000, n),
        "y [nm]": rng.uniform(0, 5000, n), "intensity [photon]": rng.uniform(500, 3000, n),
        "uncertainty [nm]": rng.uniform(5, 20, n),
    })  # fmt: skip
    path = tmp_path / "locs.csv"
    df.to_csv(path, index=False)
    return path


def test_render_with_filters_that_leave_nothing_says_so(make_napari_viewer, locs_csv, monkeypatch):
    from napari_nucleus_ai.widgets.localizations import LocalizationsWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    w = LocalizationsWidget(viewer)
    w.open_file(path=str(locs_csv))
    w.first_frame.value, w.last_frame.value = 500, 100
    w.render()
    assert "no localization passes the filters" in w.status.value
    w.first_frame.value, w.last_frame.value = w.first_frame.min, w.last_frame.min  # off
    w.min_photons.value = 1e6
    w.render()
    assert "no localization passes the filters" in w.status.value


def test_roi_shapes_points_and_zoom_layers(make_napari_viewer, locs_csv, monkeypatch):
    from napari.layers import Points

    from napari_nucleus_ai.widgets.localizations import LocalizationsWidget

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    w = LocalizationsWidget(viewer)
    w.sync = True
    w.open_file(path=str(locs_csv))
    assert not [ly for ly in viewer.layers if isinstance(ly, Points)]  # no discs over the render
    shapes = viewer.add_shapes(name="ROI")
    assert str(shapes.units[-1]) == "nanometer"
    w.show_points()
    w.show_points()
    assert len([ly for ly in viewer.layers if isinstance(ly, Points)]) == 1
    w.update_zoom()
    viewer.layers.append(viewer.layers[0].__class__(np.zeros((4, 4)), name="x [zoom]",
                                                    metadata={"zoom_of": "x"}))  # fmt: skip
    w.zoom.value = False
    assert not [ly for ly in viewer.layers if "zoom_of" in (ly.metadata or {})]


# -- 13. the Generative dock has field labels --------------------------------------------------------
def test_generative_dock_shows_field_labels(make_napari_viewer):
    from napari_nucleus_ai.widgets.generative import GenerativeWidget

    viewer = make_napari_viewer()
    dock = GenerativeWidget(viewer)
    assert dock.labels is True  # magicgui's Container.labels, not a layer box
    assert dock.cells.label == "cells"


# -- 14. docks fit a 1366 x 768 laptop ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["Classifier", "Segmentation", "Review", "Localizations", "Slide"])
def test_docks_fit_a_laptop_screen(make_napari_viewer, name):
    viewer = make_napari_viewer()
    dock = viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]
    native = getattr(dock, "native", dock)  # what napari docks
    assert native.minimumSizeHint().height() <= 400  # scrolls instead of growing the window
    dock.say("x " * 400)  # a long status line wraps instead of widening the dock
    assert native.minimumSizeHint().width() <= 400


def test_classifier_train_section_is_folded(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Classifier")[1]
    assert dock.train_data.native.isHidden()
    dock.train_section.toggle_section()
    assert not dock.train_data.native.isHidden()


# -- 15. colours, batch colours, first track, retrain message -----------------------------------------
def test_no_class_colour_looks_like_unidentified():
    from napari_nucleus_ai.core.palette import PALETTE, UNIDENTIFIED, class_colours

    def rgb(h):
        return np.array([int(h[i : i + 2], 16) for i in (1, 3, 5)], float)

    for colour in PALETTE:
        assert np.abs(rgb(colour) - rgb(UNIDENTIFIED)).sum() > 90, colour
    pbc = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
           "neutrophil", "platelet"]  # fmt: skip
    assert class_colours(pbc)["platelet"] != "#7f7f7f"
    assert class_colours(pbc)["unidentified"] == UNIDENTIFIED


def test_batch_result_layer_is_class_coloured():
    from napari_nucleus_ai.widgets.batch import _class_look

    table = pd.DataFrame(
        {"label": [1, 2], "class": ["a", "b"], "p_a": [0.9, 0.2], "p_b": [0.1, 0.8]}
    )
    look = _class_look(table)
    cmap = look["colormap"]
    assert not np.allclose(cmap.map(1), cmap.map(2))


def test_infection_first_track_has_a_curve(make_napari_viewer):
    from napari_nucleus_ai.widgets.infection import InfectionWidget

    viewer = make_napari_viewer()
    dock = InfectionWidget(viewer)
    tracks = pd.DataFrame({"track_id": [1, 2, 2, 2], "t": [0, 0, 1, 2]})
    table = pd.DataFrame({"track_id": [1, 2], "infected": [True, True],
                          "p_infected_mean": [0.99, 0.8]})  # fmt: skip
    dock.result = SimpleNamespace(
        table=table, tracks=tracks, tracking=SimpleNamespace(seconds_per_frame=0.1)
    )
    shown = []
    dock.select_track = lambda tid, jump=True: shown.append(tid)
    dock._fill()
    assert shown == [2]


def test_retrain_message_says_how_many_cells():
    from napari_nucleus_ai.widgets._review_outputs import retrain_message

    text = retrain_message({"out": "m.zip", "before": 0.0, "after": 0.5, "n_test": 2})
    assert "on 2 held-out cells" in text and "too few" in text
